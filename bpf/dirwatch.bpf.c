// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * dirwatch: reports directories made or renamed under the directories that
 * vigil watches, so that they are marked before anything inside them can be
 * opened. Three rungs of hooks, of which Go loads exactly one:
 *
 *   fentry   fexit/vfs_mkdir, fentry+fexit/vfs_rename
 *   kprobe   kprobe+kretprobe on vfs_mkdir and vfs_rename
 *   tracepoint  syscalls/sys_{enter,exit}_{mkdir,mkdirat,rename,renameat,renameat2}
 *
 * The first two see the parent inodes and filter in the kernel with the
 * watched map; the syscall rung sees only paths, reports successful calls
 * and leaves the filtering to Go, except where a single-component name
 * lets it check its base directory here.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "dirwatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Macros are not in BTF, so vmlinux.h lacks these uapi values. */
#define S_IFMT 00170000
#define S_IFDIR 0040000
#define AT_FDCWD -100
#define RENAME_EXCHANGE (1 << 1)
#define MAX_ERRNO 4095

/* Set by Go from kernel BTF: vfs_mkdir returns struct dentry * (6.15 on)
 * instead of int. */
volatile const __u8 mkdir_returns_dentry = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct dw_key);
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} events SEC(".maps");

/* Records that could not be written (ring buffer full, scratch busy). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* A record is built here: too large for the stack. busy guards against a
 * preempted program on the same CPU (tracing programs run preemptible). */
struct scratch {
	__u32 busy;
	__u32 _pad;
	struct dw_event ev;
	char data[2 * DW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* A kernel-rung record waiting for its call to return. */
struct pending_rec {
	struct dw_event ev;
	char data[2 * DW_NAME_MAX];
};

/* Calls nest (overlayfs calls vfs_mkdir again on its upper layer): key
 * pending records by thread and depth so an inner return cannot take the
 * outer call's record. */
struct call_key {
	__u64 id;
	__u32 depth;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u32);
} depths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct call_key);
	__type(value, struct pending_rec);
} pending SEC(".maps");

/* Syscall rung: arguments saved at sys_enter, read at sys_exit. */
struct sys_args {
	__u64 name;
	__u64 new_name;
	__s32 dfd;
	__s32 new_dfd;
	__u32 op;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct sys_args);
} sys_pending SEC(".maps");

/* struct renamedata (vfs_rename's argument since 5.12) carries the parent
 * inodes old_dir and new_dir on 6.1 and 6.12; newer kernels (6.18 here,
 * vmlinux.h's layout) carry the parent dentries old_parent and new_parent. */
struct renamedata___inodes {
	struct inode *old_dir;
	struct dentry *old_dentry;
	struct inode *new_dir;
	struct dentry *new_dentry;
	unsigned int flags;
} __attribute__((preserve_access_index));

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);

	if (!s)
		return NULL;
	if (__sync_val_compare_and_swap(&s->busy, 0, 1) != 0) {
		count_lost();
		return NULL;
	}
	__builtin_memset(&s->ev, 0, sizeof(s->ev));
	s->ev.pid = bpf_get_current_pid_tgid() >> 32;
	return s;
}

static __always_inline void put_scratch(struct scratch *s)
{
	/* Only this CPU contends: a compiler barrier is enough. */
	*(volatile __u32 *)&s->busy = 0;
}

static __always_inline void submit(struct dw_event *ev, __u64 name_max)
{
	__u64 n = ev->name_len, m = ev->new_name_len;

	if (n > name_max)
		n = name_max;
	if (m > name_max)
		m = name_max;
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev) + n + m, 0))
		count_lost();
}

static __always_inline void key_of(struct inode *inode, struct dw_key *k)
{
	k->ino = BPF_CORE_READ(inode, i_ino);
	k->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k->_pad = 0;
}

static __always_inline bool is_watched(struct dw_key *k)
{
	return bpf_map_lookup_elem(&watched, k) != NULL;
}

static __always_inline bool is_dir(struct inode *inode)
{
	if (!inode)
		return false;
	return (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFDIR;
}

/* read_name copies a dentry's name to dst (DW_NAME_MAX bytes) and returns
 * its length with the NUL, 0 when unreadable. */
static __always_inline __u32 read_name(char *dst, struct dentry *d)
{
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	long n = bpf_probe_read_kernel_str(dst, DW_NAME_MAX, name);

	if (n < 0)
		return 0;
	if (n > DW_NAME_MAX)
		n = DW_NAME_MAX;
	return n;
}

/* mkdir_event fills s for a mkdir in dir, or returns false when dir is
 * not watched. */
static __always_inline bool mkdir_event(struct scratch *s, struct inode *dir, struct dentry *dentry)
{
	struct dw_key k;

	key_of(dir, &k);
	if (!is_watched(&k))
		return false;
	s->ev.op = DW_OP_MKDIR;
	s->ev.flags = DW_F_BASE | DW_F_WATCHED;
	s->ev.dev = k.dev;
	s->ev.ino = k.ino;
	s->ev.name_len = read_name(s->data, dentry);
	return true;
}

/* rename_event fills s before a rename, or returns false when neither
 * parent is watched or no directory moves. */
static __always_inline bool rename_event(struct scratch *s, void *rd)
{
	struct inode *old_dir, *new_dir, *src, *dst;
	struct dentry *old_dentry, *new_dentry;
	unsigned int rflags;
	struct dw_key ok, nk;
	__u32 f = DW_F_BASE | DW_F_NEW_BASE;
	__u32 n;

	if (bpf_core_field_exists(struct renamedata___inodes, old_dir)) {
		struct renamedata___inodes *r = rd;

		old_dir = BPF_CORE_READ(r, old_dir);
		new_dir = BPF_CORE_READ(r, new_dir);
		old_dentry = BPF_CORE_READ(r, old_dentry);
		new_dentry = BPF_CORE_READ(r, new_dentry);
		rflags = BPF_CORE_READ(r, flags);
	} else {
		struct renamedata *r = rd;

		old_dir = BPF_CORE_READ(r, old_parent, d_inode);
		new_dir = BPF_CORE_READ(r, new_parent, d_inode);
		old_dentry = BPF_CORE_READ(r, old_dentry);
		new_dentry = BPF_CORE_READ(r, new_dentry);
		rflags = BPF_CORE_READ(r, flags);
	}

	src = BPF_CORE_READ(old_dentry, d_inode);
	dst = BPF_CORE_READ(new_dentry, d_inode);
	if (is_dir(src))
		f |= DW_F_DIR;
	if (rflags & RENAME_EXCHANGE) {
		f |= DW_F_EXCHANGE;
		if (is_dir(dst))
			f |= DW_F_NEW_DIR;
	}
	if (!(f & (DW_F_DIR | DW_F_NEW_DIR)))
		return false;

	key_of(old_dir, &ok);
	key_of(new_dir, &nk);
	if (is_watched(&ok))
		f |= DW_F_WATCHED;
	if (is_watched(&nk))
		f |= DW_F_NEW_WATCHED;
	if (!(f & (DW_F_WATCHED | DW_F_NEW_WATCHED)))
		return false;

	s->ev.op = DW_OP_RENAME;
	s->ev.flags = f;
	s->ev.dev = ok.dev;
	s->ev.ino = ok.ino;
	s->ev.new_dev = nk.dev;
	s->ev.new_ino = nk.ino;
	if (src)
		s->ev.target_ino = BPF_CORE_READ(src, i_ino);
	n = read_name(s->data, old_dentry);
	s->ev.name_len = n;
	/* Names are read now: after the rename old_dentry bears the new name. */
	s->ev.new_name_len = read_name(s->data + n, new_dentry);
	return true;
}

static __always_inline __u32 enter_call(__u64 id)
{
	__u32 *d = bpf_map_lookup_elem(&depths, &id);
	__u32 n = d ? *d + 1 : 1;

	bpf_map_update_elem(&depths, &id, &n, BPF_ANY);
	return n;
}

static __always_inline __u32 exit_call(__u64 id)
{
	__u32 *d = bpf_map_lookup_elem(&depths, &id);
	__u32 n, m;

	if (!d)
		return 0;
	n = *d;
	if (n <= 1) {
		bpf_map_delete_elem(&depths, &id);
	} else {
		m = n - 1;
		bpf_map_update_elem(&depths, &id, &m, BPF_ANY);
	}
	return n;
}

/* stash keeps s's record until the call returns (s may be NULL: the depth
 * is counted all the same, so that entries and returns pair up). */
static __always_inline void stash(struct scratch *s)
{
	struct call_key k = {};

	k.id = bpf_get_current_pid_tgid();
	k.depth = enter_call(k.id);
	if (s)
		bpf_map_update_elem(&pending, &k, &s->ev, BPF_ANY);
}

static __always_inline void unstash(bool ok)
{
	struct call_key k = {};
	struct pending_rec *r;

	k.id = bpf_get_current_pid_tgid();
	k.depth = exit_call(k.id);
	r = bpf_map_lookup_elem(&pending, &k);
	if (!r)
		return;
	if (ok)
		submit(&r->ev, DW_NAME_MAX);
	bpf_map_delete_elem(&pending, &k);
}

static __always_inline bool mkdir_ok(__u64 ret)
{
	if (mkdir_returns_dentry)
		return ret != 0 && ret < (__u64)-MAX_ERRNO;
	return (int)ret == 0;
}

static __always_inline void enter_mkdir(struct inode *dir, struct dentry *dentry)
{
	struct scratch *s = get_scratch();

	if (!s) {
		stash(NULL);
		return;
	}
	stash(mkdir_event(s, dir, dentry) ? s : NULL);
	put_scratch(s);
}

static __always_inline void enter_rename(void *rd)
{
	struct scratch *s = get_scratch();

	if (!s) {
		stash(NULL);
		return;
	}
	stash(rename_event(s, rd) ? s : NULL);
	put_scratch(s);
}

/* Rung fentry. vfs_mkdir's first argument is a user_namespace (6.1) or
 * mnt_idmap (6.3 on); dir and dentry keep their places. */
SEC("fexit/vfs_mkdir")
int BPF_PROG(fexit_vfs_mkdir, void *idmap, struct inode *dir, struct dentry *dentry, umode_t mode, __u64 ret)
{
	struct scratch *s;

	if (!mkdir_ok(ret))
		return 0;
	s = get_scratch();
	if (!s)
		return 0;
	if (mkdir_event(s, dir, dentry))
		submit(&s->ev, DW_NAME_MAX);
	put_scratch(s);
	return 0;
}

SEC("fentry/vfs_rename")
int BPF_PROG(fentry_vfs_rename, void *rd)
{
	enter_rename(rd);
	return 0;
}

SEC("fexit/vfs_rename")
int BPF_PROG(fexit_vfs_rename, void *rd, int ret)
{
	unstash(ret == 0);
	return 0;
}

/* Rung kprobe. */
SEC("kprobe/vfs_mkdir")
int BPF_KPROBE(kprobe_vfs_mkdir, void *idmap, struct inode *dir, struct dentry *dentry)
{
	enter_mkdir(dir, dentry);
	return 0;
}

SEC("kretprobe/vfs_mkdir")
int BPF_KRETPROBE(kretprobe_vfs_mkdir, __u64 ret)
{
	unstash(mkdir_ok(ret));
	return 0;
}

SEC("kprobe/vfs_rename")
int BPF_KPROBE(kprobe_vfs_rename, void *rd)
{
	enter_rename(rd);
	return 0;
}

SEC("kretprobe/vfs_rename")
int BPF_KRETPROBE(kretprobe_vfs_rename, int ret)
{
	unstash(ret == 0);
	return 0;
}

/* Rung tracepoint. */
static __always_inline int sys_enter(__u32 op, long dfd, long name, long new_dfd, long new_name, long flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct sys_args a = {};

	a.op = op;
	a.dfd = dfd;
	a.name = name;
	a.new_dfd = new_dfd;
	a.new_name = new_name;
	if (flags & RENAME_EXCHANGE)
		a.flags = DW_F_EXCHANGE;
	bpf_map_update_elem(&sys_pending, &id, &a, BPF_ANY);
	return 0;
}

/* dfd_inode returns the directory a relative path given with dfd starts
 * from: the task's cwd for AT_FDCWD, else the file at dfd. */
static __always_inline struct inode *dfd_inode(int dfd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;

	if (dfd == AT_FDCWD)
		return BPF_CORE_READ(t, fs, pwd.dentry, d_inode);
	if (dfd < 0)
		return NULL;
	fdt = BPF_CORE_READ(t, files, fdt);
	if ((unsigned int)dfd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[dfd]);
	if (!f)
		return NULL;
	return BPF_CORE_READ(f, f_path.dentry, d_inode);
}

struct slash_scan {
	const char *path;
	bool slash;
};

static long find_slash(__u64 i, struct slash_scan *c)
{
	char ch;

	if (i >= DW_NAME_MAX)
		return 1;
	ch = c->path[i];
	if (ch == 0)
		return 1;
	if (ch == '/') {
		c->slash = true;
		return 1;
	}
	return 0;
}

/* single reports whether path (len bytes with its NUL) is one relative
 * component: then the entry lives right in its base directory. bpf_loop
 * (5.17) keeps the scan from multiplying the verifier's states. */
static __always_inline bool single(const char *path, __u32 len)
{
	struct slash_scan c = {.path = path};

	if (len < 2 || len > DW_NAME_MAX || path[0] == '/')
		return false;
	bpf_loop(len, find_slash, &c, 0);
	return !c.slash;
}

/* base sets dev, ino and the flags for a relative path's start directory;
 * it returns true when the path is one component in an unwatched
 * directory, i.e. surely irrelevant. */
static __always_inline bool base(const char *path, __u32 len, int dfd, __u32 *dev, __u64 *ino, __u32 *flags,
				 __u32 fbase, __u32 fwatched)
{
	struct inode *dir;
	struct dw_key k;

	if (len == 0 || path[0] == '/')
		return false;
	dir = dfd_inode(dfd);
	if (!dir)
		return false;
	key_of(dir, &k);
	*dev = k.dev;
	*ino = k.ino;
	*flags |= fbase;
	if (is_watched(&k)) {
		*flags |= fwatched;
		return false;
	}
	return single(path, len);
}

static __always_inline int sys_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct sys_args *p = bpf_map_lookup_elem(&sys_pending, &id);
	struct sys_args a;
	struct scratch *s;
	__u32 flags, n, m = 0;
	long r;
	bool skip;

	if (!p)
		return 0;
	a = *p;
	bpf_map_delete_elem(&sys_pending, &id);
	if (ret != 0)
		return 0;
	s = get_scratch();
	if (!s)
		return 0;

	flags = DW_F_PATHS | a.flags;
	s->ev.op = a.op;
	s->ev.dfd = a.dfd;
	s->ev.new_dfd = a.new_dfd;
	r = bpf_probe_read_user_str(s->data, DW_PATH_MAX, (const char *)a.name);
	n = r < 0 ? 0 : r;
	if (n > DW_PATH_MAX)
		n = DW_PATH_MAX;
	s->ev.name_len = n;
	skip = base(s->data, n, a.dfd, &s->ev.dev, &s->ev.ino, &flags, DW_F_BASE, DW_F_WATCHED);

	if (a.op == DW_OP_RENAME) {
		r = bpf_probe_read_user_str(s->data + n, DW_PATH_MAX, (const char *)a.new_name);
		m = r < 0 ? 0 : r;
		if (m > DW_PATH_MAX)
			m = DW_PATH_MAX;
		s->ev.new_name_len = m;
		skip = base(s->data + n, m, a.new_dfd, &s->ev.new_dev, &s->ev.new_ino, &flags, DW_F_NEW_BASE,
			    DW_F_NEW_WATCHED) &&
		       skip;
	}
	s->ev.flags = flags;
	if (!skip)
		submit(&s->ev, DW_PATH_MAX);
	put_scratch(s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mkdir")
int tp_enter_mkdir(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(DW_OP_MKDIR, AT_FDCWD, ctx->args[0], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_mkdirat")
int tp_enter_mkdirat(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(DW_OP_MKDIR, ctx->args[0], ctx->args[1], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int tp_enter_rename(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(DW_OP_RENAME, AT_FDCWD, ctx->args[0], AT_FDCWD, ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int tp_enter_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(DW_OP_RENAME, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int tp_enter_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(DW_OP_RENAME, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_exit_mkdir")
int tp_exit_mkdir(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_mkdirat")
int tp_exit_mkdirat(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_rename")
int tp_exit_rename(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_renameat")
int tp_exit_renameat(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_renameat2")
int tp_exit_renameat2(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}
