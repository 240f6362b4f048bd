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
 * The watched map holds only the directories that cover the others: the top
 * of each watched tree, the first directory of each mount below it, and one
 * every so many levels (Go decides). A directory is covered when a watched
 * directory is its parent, or above it with DW_WATCH_TREE: the programs
 * climb the dentries' parents to find it, and report where the directory
 * is as a chain of names up to it (dirwatch.h), so that Go keeps no entry
 * per directory either.
 *
 * The first two rungs see the parent dentries and filter in the kernel; the
 * syscall rung sees only paths, reports successful calls and leaves the
 * filtering to Go, except where a single-component name lets it check its
 * base directory here; a record that no watch can be in, by its path, is
 * written without waking the reader (the prefixes map).
 *
 * Each CPU remembers the last directory it climbed from without finding a
 * watched one (struct uncovered), until a rename or a change of the
 * watched map: the next mkdirs there, or below it, climb no further.
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

/* The anchors (see above): a few per watch as a rule, so the map is not
 * preallocated; only user space updates it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dw_key);
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} events SEC(".maps");

/* dw_gen's counters: only the programs write DW_GEN_RENAMES, only Go
 * DW_GEN_ANCHORS, so that neither write can undo the other's. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} generations SEC(".maps");

/* Records that could not be written (ring buffer full, scratch busy). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Record data is written at offsets masked with DW_DATA_SIZE - 1, which
 * the verifier can bound; what the layout needs (two paths and two chains)
 * stays below it. */
#define DW_DATA_SIZE (4 * DW_PATH_MAX)

/* A kernel-rung call waiting for its return: the names as they were on
 * entry (a rename gives the moved dentry its new name) and the parent
 * dentries, whose chains are read on return. */
struct pending_rec {
	struct dw_event ev;
	__u64 dir;
	__u64 new_dir;
	char data[2 * DW_NAME_MAX];
};

/* The last directory on this CPU that a climb found no watched directory
 * covering: most mkdirs on a machine are in no watch, and many in a row
 * are made in one directory (a build, an unpacked archive). The entry
 * holds while the generations' sum stays what it was when that climb
 * began, and the dentry still has the inode it had then: a rename, or a
 * new watched directory, could put it under a watch; a freed dentry's
 * memory may come back as another directory's. */
struct uncovered {
	__u64 dentry;
	__u64 inode;
	__u64 gen;
	__u32 igen; /* the inode's i_generation */
	__u32 _pad;
};

/* The state of a climb from a directory to the watched one covering it. */
struct climb {
	__u64 dentry; /* the directory to look at next */
	__u64 gen;    /* the generations' sum when the climb began */
	__u32 at;     /* where in the scratch data the chain goes */
	__u32 len;    /* bytes of chain written */
	__u32 depth;  /* directories below the covering one */
	struct dw_key key;
	bool found;
};

/* The state of a scan of a path in the scratch data. */
struct scan {
	__u64 hash;  /* FNV-1a of the path up to the byte looked at */
	__u32 at;    /* where the path is */
	__u32 comp;  /* bytes of the component being read */
	__u32 dots;  /* of which dots */
	bool found;  /* a prefix is a tracked directory's path */
	bool clean;  /* no "//", "." or ".." so far */
	bool slash;  /* a slash was met */
};

/* A record is built here: too large for the stack. busy guards against a
 * preempted program on the same CPU (tracing programs run preemptible).
 * The bpf_loop callbacks keep their state here too, not in a context on
 * the caller's stack: Debian's 6.1 ran the same object to other results
 * with the prefix scan's state there (vmtest, TestLazyRoot), where 6.12
 * and 6.18 did not. */
struct scratch {
	__u32 busy;
	__u32 _pad;
	struct dw_event ev;
	/* Slack past DW_DATA_SIZE: one read at a masked offset. */
	char data[DW_DATA_SIZE + DW_PATH_MAX];
	struct pending_rec rec; /* staged for the pending map */
	struct climb climb;
	struct scan scan;
	struct uncovered uncovered;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

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

/* Syscall rung: FNV-1a hashes of the tracked directories' paths. An
 * absolute path none of whose prefixes is here is outside the watches
 * unless a symlink leads in, which user space resolves; its record does
 * not wake the reader (DW_F_LAZY). Waking a reader costs a writer on a
 * virtual machine more than the rest of the program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} prefixes SEC(".maps");

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
	__builtin_memset(&s->rec.ev, 0, sizeof(s->rec.ev));
	s->rec.dir = 0;
	s->rec.new_dir = 0;
	s->ev.pid = bpf_get_current_pid_tgid() >> 32;
	return s;
}

static __always_inline void put_scratch(struct scratch *s)
{
	/* Only this CPU contends: a compiler barrier is enough. */
	*(volatile __u32 *)&s->busy = 0;
}

static __always_inline void submit(struct scratch *s)
{
	__u64 n = (__u64)s->ev.name_len + s->ev.chain_len + s->ev.new_name_len + s->ev.new_chain_len;
	__u64 flags = s->ev.flags & DW_F_LAZY ? BPF_RB_NO_WAKEUP : 0;

	if (n > DW_DATA_SIZE)
		n = DW_DATA_SIZE;
	if (bpf_ringbuf_output(&events, &s->ev, sizeof(s->ev) + n, flags))
		count_lost();
}

static __always_inline void key_of(struct inode *inode, struct dw_key *k)
{
	k->ino = BPF_CORE_READ(inode, i_ino);
	k->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k->_pad = 0;
}

/* generation returns the sum of the generations map's counters. */
static __always_inline __u64 generation(void)
{
	__u32 renames = DW_GEN_RENAMES, anchors = DW_GEN_ANCHORS;
	__u64 *r = bpf_map_lookup_elem(&generations, &renames);
	__u64 *a = bpf_map_lookup_elem(&generations, &anchors);

	return (r ? *r : 0) + (a ? *a : 0);
}

/* renamed counts a rename that succeeded: it may have moved a directory
 * that no watch covered under one. */
static __always_inline void renamed(void)
{
	__u32 renames = DW_GEN_RENAMES;
	__u64 *r = bpf_map_lookup_elem(&generations, &renames);

	if (r)
		__sync_fetch_and_add(r, 1);
}

/* known_uncovered reports whether d is the directory s remembers as
 * covered by no watched directory, and still is. */
static __always_inline bool known_uncovered(struct scratch *s, struct dentry *d)
{
	struct uncovered *u = &s->uncovered;
	struct inode *inode;

	if (u->dentry != (__u64)d || u->gen != s->climb.gen)
		return false;
	inode = BPF_CORE_READ(d, d_inode);
	return u->inode == (__u64)inode && u->igen == BPF_CORE_READ(inode, i_generation);
}

static __always_inline bool is_dir(struct inode *inode)
{
	if (!inode)
		return false;
	return (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFDIR;
}

/* find_step looks at one directory of a climb for the watched one that
 * covers where the climb started. Most mkdirs on a machine are covered by
 * none: this pass reads no names. */
static long find_step(__u64 i, void *unused)
{
	struct dentry *d, *parent;
	struct scratch *s;
	struct climb *c;
	struct dw_key k;
	__u32 zero = 0;
	__u8 *mode;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 1;
	c = &s->climb;
	d = (struct dentry *)c->dentry;
	/* Remembered as covered by nothing: no watched directory is here, or
	 * above within a climb's reach from here, so none covers what is
	 * below either. A mkdir in a new directory stops at its parent. */
	if (known_uncovered(s, d))
		return 1;
	key_of(BPF_CORE_READ(d, d_inode), &k);
	mode = bpf_map_lookup_elem(&watched, &k);
	if (mode && (i == 0 || *mode == DW_WATCH_TREE)) {
		c->key = k;
		c->depth = i;
		c->found = true;
		return 1;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (!parent || parent == d)
		return 1; /* the top of the filesystem */
	c->dentry = (__u64)parent;
	return 0;
}

/* chain_name writes d's name at the end of the chain being climbed, and
 * returns false when it cannot: unreadable, or too long a chain. */
static __always_inline bool chain_name(struct scratch *s, struct climb *c, struct dentry *d)
{
	long n;

	if (c->len > DW_CHAIN_MAX - DW_NAME_MAX)
		return false;
	n = bpf_probe_read_kernel_str(&s->data[(c->at + c->len) & (DW_DATA_SIZE - 1)], DW_NAME_MAX,
				      BPF_CORE_READ(d, d_name.name));
	if (n <= 0)
		return false;
	c->len += n;
	return true;
}

/* name_step writes the name of one directory below the covering one into
 * the chain. */
static long name_step(__u64 i, void *unused)
{
	struct scratch *s;
	struct dentry *d;
	struct climb *c;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 1;
	c = &s->climb;
	d = (struct dentry *)c->dentry;
	if (!chain_name(s, c, d)) {
		c->found = false;
		return 1;
	}
	c->dentry = (__u64)BPF_CORE_READ(d, d_parent);
	return 0;
}

/* top_step writes the name of one directory below the top of the
 * filesystem into a top chain. */
static long top_step(__u64 i, void *unused)
{
	struct dentry *d, *parent;
	struct scratch *s;
	struct climb *c;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 1;
	c = &s->climb;
	d = (struct dentry *)c->dentry;
	parent = BPF_CORE_READ(d, d_parent);
	if (!parent || parent == d) {
		c->found = true; /* the top: its name is "/" */
		return 1;
	}
	if (!chain_name(s, c, d))
		return 1;
	c->dentry = (__u64)parent;
	return 0;
}

/* top_chain writes dir's top chain (dirwatch.h) at data + at in s and
 * returns its length, or -1 when the top is more than DW_DEPTH_MAX levels
 * up; dev is set to dir's filesystem. Only a directory moved out of every
 * watch needs it: the walk that follows removes the marks at its new
 * place. */
static __always_inline long top_chain(struct scratch *s, struct dentry *dir, __u32 at, __u32 *dev)
{
	struct dw_key k;

	if (!dir)
		return -1;
	s->climb.dentry = (__u64)dir;
	s->climb.at = at;
	s->climb.len = 0;
	s->climb.found = false;
	bpf_loop(DW_DEPTH_MAX, top_step, NULL, 0);
	if (!s->climb.found)
		return -1;
	key_of(BPF_CORE_READ(dir, d_inode), &k);
	*dev = k.dev;
	return s->climb.len;
}

/* chain writes dir's chain (dirwatch.h) at data + at in s, this CPU's
 * scratch, and returns its length, or -1 when no watched directory covers
 * dir within DW_DEPTH_MAX levels. It climbs twice: for the covering
 * directory, then, when there is one, for the names below it. bpf_loop
 * (5.17) keeps the climbs from multiplying the verifier's states. */
static __always_inline long chain(struct scratch *s, struct dentry *dir, __u32 at, struct dw_key *k)
{
	struct inode *inode;

	if (!dir)
		return -1;
	s->climb.dentry = (__u64)dir;
	/* Read before the climb: a change made while it climbs leaves the
	 * result unremembered. */
	s->climb.gen = generation();
	s->climb.at = at;
	s->climb.len = 0;
	s->climb.depth = 0;
	s->climb.found = false;
	bpf_loop(DW_DEPTH_MAX, find_step, NULL, 0);
	if (!s->climb.found) {
		inode = BPF_CORE_READ(dir, d_inode);
		s->uncovered.dentry = (__u64)dir;
		s->uncovered.inode = (__u64)inode;
		s->uncovered.igen = BPF_CORE_READ(inode, i_generation);
		s->uncovered.gen = s->climb.gen;
		return -1;
	}
	/* Found: climb again for the names, as many as there are directories
	 * below the covering one. */
	s->climb.dentry = (__u64)dir;
	if (s->climb.depth > 0)
		bpf_loop(s->climb.depth, name_step, NULL, 0);
	if (!s->climb.found)
		return -1;
	*k = s->climb.key;
	return s->climb.len;
}

/* mkdir_event fills s for a directory made in parent under the name at
 * name (kernel memory), or returns false when no watched directory covers
 * parent. */
static __always_inline bool mkdir_event(struct scratch *s, struct dentry *parent, const void *name)
{
	struct dw_key k;
	long n, c;

	n = bpf_probe_read_kernel_str(s->data, DW_NAME_MAX, name);
	if (n <= 0)
		return false;
	c = chain(s, parent, n, &k);
	if (c < 0)
		return false;
	s->ev.op = DW_OP_MKDIR;
	s->ev.flags = DW_F_BASE | DW_F_WATCHED;
	s->ev.dev = k.dev;
	s->ev.ino = k.ino;
	s->ev.name_len = n;
	s->ev.chain_len = c;
	return true;
}

/* rename_event fills s for the rename r, or returns false when no watched
 * directory covers either parent. */
static __always_inline bool rename_event(struct scratch *s, struct pending_rec *r)
{
	__u32 f = r->ev.flags, at;
	struct dw_key k;
	long n, c, m, d;

	n = bpf_probe_read_kernel_str(s->data, DW_NAME_MAX, r->data);
	if (n <= 0)
		return false;
	c = chain(s, (struct dentry *)r->dir, n, &k);
	if (c >= 0) {
		f |= DW_F_WATCHED;
		s->ev.dev = k.dev;
		s->ev.ino = k.ino;
	} else if ((f & DW_F_NEW_DIR) && (c = top_chain(s, (struct dentry *)r->dir, n, &s->ev.dev)) >= 0) {
		/* An exchange that may move a directory out: known once the
		 * other side is climbed. */
		f |= DW_F_TOP;
	} else {
		c = 0;
	}
	at = (n + c) & (DW_DATA_SIZE - 1);
	m = bpf_probe_read_kernel_str(&s->data[at], DW_NAME_MAX, r->data + DW_NAME_MAX);
	if (m <= 0)
		return false;
	d = chain(s, (struct dentry *)r->new_dir, at + m, &k);
	if (d >= 0) {
		f |= DW_F_NEW_WATCHED;
		s->ev.new_dev = k.dev;
		s->ev.new_ino = k.ino;
	} else if ((f & DW_F_DIR) && (f & DW_F_WATCHED) &&
		   (d = top_chain(s, (struct dentry *)r->new_dir, at + m, &s->ev.new_dev)) >= 0) {
		f |= DW_F_NEW_TOP; /* a directory moved out */
	} else {
		d = 0;
	}
	if (!(f & (DW_F_WATCHED | DW_F_NEW_WATCHED)))
		return false;
	s->ev.op = DW_OP_RENAME;
	s->ev.flags = f;
	s->ev.target_ino = r->ev.target_ino;
	s->ev.name_len = n;
	s->ev.chain_len = c;
	s->ev.new_name_len = m;
	s->ev.new_chain_len = d;
	return true;
}

/* read_name copies a dentry's name to dst (DW_NAME_MAX bytes); an
 * unreadable one is left empty, and the return drops the record. */
static __always_inline void read_name(char *dst, struct dentry *d)
{
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);

	if (bpf_probe_read_kernel_str(dst, DW_NAME_MAX, name) < 0)
		dst[0] = 0;
}

/* stage_rename fills r on entry to a rename, or returns false when no
 * directory moves. Names are read now: after the rename the moved dentry
 * bears the new name. */
static __always_inline bool stage_rename(struct pending_rec *r, void *rd)
{
	struct dentry *old_dentry, *new_dentry, *old_parent, *new_parent;
	struct inode *src, *dst;
	unsigned int rflags;
	__u32 f = DW_F_BASE | DW_F_NEW_BASE;

	if (bpf_core_field_exists(struct renamedata___inodes, old_dir)) {
		struct renamedata___inodes *rdi = rd;

		old_dentry = BPF_CORE_READ(rdi, old_dentry);
		new_dentry = BPF_CORE_READ(rdi, new_dentry);
		rflags = BPF_CORE_READ(rdi, flags);
	} else {
		struct renamedata *rdd = rd;

		old_dentry = BPF_CORE_READ(rdd, old_dentry);
		new_dentry = BPF_CORE_READ(rdd, new_dentry);
		rflags = BPF_CORE_READ(rdd, flags);
	}
	/* The callers hold both parents locked: these are the parents. */
	old_parent = BPF_CORE_READ(old_dentry, d_parent);
	new_parent = BPF_CORE_READ(new_dentry, d_parent);

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

	r->ev.op = DW_OP_RENAME;
	r->ev.flags = f;
	if (src)
		r->ev.target_ino = BPF_CORE_READ(src, i_ino);
	r->dir = (__u64)old_parent;
	r->new_dir = (__u64)new_parent;
	read_name(r->data, old_dentry);
	read_name(r->data + DW_NAME_MAX, new_dentry);
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

/* stash keeps r until the call returns (r may be NULL: the depth is
 * counted all the same, so that entries and returns pair up). */
static __always_inline void stash(struct pending_rec *r)
{
	struct call_key k = {};

	k.id = bpf_get_current_pid_tgid();
	k.depth = enter_call(k.id);
	if (r)
		bpf_map_update_elem(&pending, &k, r, BPF_ANY);
}

/* unstash reports the call stashed on entry when it succeeded (ok). */
static __always_inline void unstash(bool ok)
{
	struct call_key k = {};
	struct pending_rec *r;
	struct scratch *s;
	bool report;

	k.id = bpf_get_current_pid_tgid();
	k.depth = exit_call(k.id);
	r = bpf_map_lookup_elem(&pending, &k);
	if (!r)
		return;
	if (ok && r->ev.op == DW_OP_RENAME)
		renamed();
	if (ok) {
		s = get_scratch();
		if (s) {
			if (r->ev.op == DW_OP_MKDIR)
				report = mkdir_event(s, (struct dentry *)r->dir, r->data);
			else
				report = rename_event(s, r);
			if (report)
				submit(s);
			put_scratch(s);
		}
	}
	bpf_map_delete_elem(&pending, &k);
}

static __always_inline bool mkdir_ok(__u64 ret)
{
	if (mkdir_returns_dentry)
		return ret != 0 && ret < (__u64)-MAX_ERRNO;
	return (int)ret == 0;
}

static __always_inline void enter_mkdir(struct dentry *dentry)
{
	struct scratch *s = get_scratch();

	if (!s) {
		stash(NULL);
		return;
	}
	s->rec.ev.op = DW_OP_MKDIR;
	/* The caller holds the parent locked: it stays the parent. */
	s->rec.dir = (__u64)BPF_CORE_READ(dentry, d_parent);
	read_name(s->rec.data, dentry);
	stash(&s->rec);
	put_scratch(s);
}

static __always_inline void enter_rename(void *rd)
{
	struct scratch *s = get_scratch();

	if (!s) {
		stash(NULL);
		return;
	}
	stash(stage_rename(&s->rec, rd) ? &s->rec : NULL);
	put_scratch(s);
}

/* Rung fentry. vfs_mkdir's first argument is a user_namespace (6.1) or
 * mnt_idmap (6.3 on); dir and dentry keep their places. */
SEC("fexit/vfs_mkdir")
int BPF_PROG(fexit_vfs_mkdir, void *idmap, struct inode *dir, struct dentry *dentry, umode_t mode, __u64 ret)
{
	struct dentry *made = dentry;
	struct scratch *s;

	if (!mkdir_ok(ret))
		return 0;
	/* From 6.15 the directory may come back in another dentry, and the
	 * one passed in is then dropped. */
	if (mkdir_returns_dentry)
		made = (struct dentry *)ret;
	s = get_scratch();
	if (!s)
		return 0;
	if (mkdir_event(s, BPF_CORE_READ(made, d_parent), BPF_CORE_READ(made, d_name.name)))
		submit(s);
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
	enter_mkdir(dentry);
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

/* dfd_dentry returns the directory a relative path given with dfd starts
 * from: the task's cwd for AT_FDCWD, else the file at dfd. */
static __always_inline struct dentry *dfd_dentry(int dfd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;

	if (dfd == AT_FDCWD)
		return BPF_CORE_READ(t, fs, pwd.dentry);
	if (dfd < 0)
		return NULL;
	fdt = BPF_CORE_READ(t, files, fdt);
	if ((unsigned int)dfd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[dfd]);
	if (!f)
		return NULL;
	return BPF_CORE_READ(f, f_path.dentry);
}

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static long prefix_step(__u64 i, void *unused)
{
	struct scratch *s;
	__u32 zero = 0;
	struct scan *c;
	char ch;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || i >= DW_PATH_MAX)
		return 1;
	c = &s->scan;
	ch = s->data[(c->at + i) & (DW_DATA_SIZE - 1)];
	if (ch == '/' || ch == 0) {
		if (i > 0) {
			if (c->comp == 0 || (c->comp == c->dots && c->dots <= 2)) {
				c->clean = false;
				return 1;
			}
			if (bpf_map_lookup_elem(&prefixes, &c->hash)) {
				c->found = true;
				return 1;
			}
		}
		if (ch == 0)
			return 1;
		c->comp = 0;
		c->dots = 0;
	} else {
		c->comp++;
		if (ch == '.')
			c->dots++;
	}
	c->hash = (c->hash ^ (__u8)ch) * FNV_PRIME;
	return 0;
}

/* outside reports whether the absolute path at data + at in s (len bytes
 * with its NUL) is clean and under no tracked directory's path, "/"
 * included. */
static __always_inline bool outside(struct scratch *s, __u32 at, __u32 len)
{
	__u64 root = (FNV_OFFSET ^ '/') * FNV_PRIME;

	if (len < 2 || len > DW_PATH_MAX || s->data[at & (DW_DATA_SIZE - 1)] != '/')
		return false;
	if (bpf_map_lookup_elem(&prefixes, &root))
		return false;
	s->scan.hash = FNV_OFFSET;
	s->scan.at = at;
	s->scan.comp = 0;
	s->scan.dots = 0;
	s->scan.found = false;
	s->scan.clean = true;
	bpf_loop(len, prefix_step, NULL, 0);
	return s->scan.clean && !s->scan.found;
}

static long find_slash(__u64 i, void *unused)
{
	struct scratch *s;
	__u32 zero = 0;
	char ch;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || i >= DW_NAME_MAX)
		return 1;
	ch = s->data[(s->scan.at + i) & (DW_DATA_SIZE - 1)];
	if (ch == 0)
		return 1;
	if (ch == '/') {
		s->scan.slash = true;
		return 1;
	}
	return 0;
}

/* single reports whether the path at data + at in s (len bytes with its
 * NUL) is one relative component: then the entry lives right in its base
 * directory. bpf_loop (5.17) keeps the scan from multiplying the
 * verifier's states. */
static __always_inline bool single(struct scratch *s, __u32 at, __u32 len)
{
	if (len < 2 || len > DW_NAME_MAX || s->data[at & (DW_DATA_SIZE - 1)] == '/')
		return false;
	s->scan.at = at;
	s->scan.slash = false;
	bpf_loop(len, find_slash, NULL, 0);
	return !s->scan.slash;
}

/* side is one path argument of a system call, in the scratch data. */
struct side {
	__u32 at;  /* where the path is */
	__u32 len; /* its bytes with the NUL */
	int dfd;
};

/* base writes the chain of a relative path's start directory right after
 * the path, sets dev, ino and the flags for it, and returns the chain's
 * length; skip is set when the path is one component in a directory no
 * watch covers, i.e. surely irrelevant. */
static __always_inline __u32 base(struct scratch *s, struct side p, __u32 *dev, __u64 *ino, __u32 *flags,
				  __u32 fbase, __u32 fwatched, bool *skip)
{
	const char *path = &s->data[p.at & (DW_DATA_SIZE - 1)];
	struct dentry *dir;
	struct dw_key k;
	long c;

	*skip = false;
	if (p.len == 0 || path[0] == '/')
		return 0;
	dir = dfd_dentry(p.dfd);
	if (!dir)
		return 0;
	*flags |= fbase;
	c = chain(s, dir, p.at + p.len, &k);
	if (c >= 0) {
		*dev = k.dev;
		*ino = k.ino;
		*flags |= fwatched;
		return c;
	}
	*skip = single(s, p.at, p.len);
	return 0;
}

/* read_path copies a system call's path argument to data + at and returns
 * its bytes with the NUL, 0 when unreadable. */
static __always_inline __u32 read_path(struct scratch *s, __u32 at, __u64 user)
{
	long r = bpf_probe_read_user_str(&s->data[at & (DW_DATA_SIZE - 1)], DW_PATH_MAX, (const char *)user);

	if (r < 0)
		return 0;
	if (r > DW_PATH_MAX)
		r = DW_PATH_MAX;
	return r;
}

static __always_inline int sys_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct sys_args *p = bpf_map_lookup_elem(&sys_pending, &id);
	struct side old = {}, new = {};
	struct sys_args a;
	struct scratch *s;
	bool skip, new_skip, lazy;
	__u32 flags;

	if (!p)
		return 0;
	a = *p;
	bpf_map_delete_elem(&sys_pending, &id);
	if (ret != 0)
		return 0;
	if (a.op == DW_OP_RENAME)
		renamed();
	s = get_scratch();
	if (!s)
		return 0;

	flags = DW_F_PATHS | a.flags;
	s->ev.op = a.op;
	s->ev.dfd = a.dfd;
	s->ev.new_dfd = a.new_dfd;
	old.dfd = a.dfd;
	old.len = read_path(s, 0, a.name);
	s->ev.name_len = old.len;
	s->ev.chain_len = base(s, old, &s->ev.dev, &s->ev.ino, &flags, DW_F_BASE, DW_F_WATCHED, &skip);
	lazy = outside(s, 0, old.len);

	if (a.op == DW_OP_RENAME) {
		new.dfd = a.new_dfd;
		new.at = (old.len + s->ev.chain_len) & (DW_DATA_SIZE - 1);
		new.len = read_path(s, new.at, a.new_name);
		s->ev.new_name_len = new.len;
		s->ev.new_chain_len = base(s, new, &s->ev.new_dev, &s->ev.new_ino, &flags, DW_F_NEW_BASE,
					   DW_F_NEW_WATCHED, &new_skip);
		skip = skip && new_skip;
		lazy = lazy && outside(s, new.at, new.len);
	}
	if (lazy)
		flags |= DW_F_LAZY;
	s->ev.flags = flags;
	if (!skip)
		submit(s);
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

/* One program for every exit: the exits' contexts are alike (the
 * system call's number and return value), and the verifier checks each
 * program loaded on its own, some 25 ms for this one here. The loader
 * attaches it to sys_exit_mkdir, sys_exit_mkdirat, sys_exit_rename,
 * sys_exit_renameat and sys_exit_renameat2; the section names the first. */
SEC("tracepoint/syscalls/sys_exit_mkdir")
int tp_exit(struct trace_event_raw_sys_exit *ctx)
{
	return sys_exit(ctx->ret);
}
