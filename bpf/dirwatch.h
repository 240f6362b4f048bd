/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The event ABI between bpf/dirwatch.bpf.c and internal/dirtrace.
 *
 * Each ring-buffer record is a struct dw_event followed by, in this order,
 * name_len bytes of name, chain_len bytes of chain, new_name_len bytes of
 * new_name and new_chain_len bytes of new_chain (names with their NUL; 0
 * bytes when absent).
 *
 * A chain says where a directory is without the watched map holding every
 * directory: the names of the directory and of those above it, each with
 * its NUL, from the directory up to, not including, the watched directory
 * that covers it (dev/ino). It is empty when the directory is that watched
 * one. A top chain (DW_F_TOP, DW_F_NEW_TOP) runs up to, not including, the
 * top of the directory's filesystem instead, and dev is that filesystem's:
 * where a directory moved out of every watch went.
 */
#ifndef DIRWATCH_H
#define DIRWATCH_H

#define DW_NAME_MAX 256  /* NAME_MAX + 1: one path component */
#define DW_PATH_MAX 4096 /* PATH_MAX: a syscall's path argument */
#define DW_CHAIN_MAX 3840 /* bytes of one chain */
#define DW_DEPTH_MAX 64  /* directories a chain climbs, the covering one included */

/* Values of the watched map: what a watched directory covers. */
enum dw_watch {
	/* The entries of this directory. */
	DW_WATCH_DIR = 1,
	/* Those of this directory and of every directory below it on the same
	 * filesystem, found by climbing the dentries' parents. */
	DW_WATCH_TREE = 2,
};

enum dw_op {
	DW_OP_MKDIR = 1,
	DW_OP_RENAME = 2,
};

enum dw_flags {
	/* Syscall rung: name and new_name are the syscall's path arguments,
	 * relative to dfd and new_dfd unless absolute. */
	DW_F_PATHS = 1 << 0,
	/* RENAME_EXCHANGE: the two entries swapped places. */
	DW_F_EXCHANGE = 1 << 1,
	/* Rename: the entry that was at name is a directory. */
	DW_F_DIR = 1 << 2,
	/* Exchange: the entry that was at new_name is a directory. */
	DW_F_NEW_DIR = 1 << 3,
	/* chain (new_chain) is set: for the parent directory of name, or for
	 * the syscall rung for the directory a relative path starts from. */
	DW_F_BASE = 1 << 4,
	DW_F_NEW_BASE = 1 << 5,
	/* A watched directory covers that directory: dev/ino (new_dev/new_ino)
	 * is the covering one. */
	DW_F_WATCHED = 1 << 6,
	DW_F_NEW_WATCHED = 1 << 7,
	/* Syscall rung: nothing says the record is in a watch (an absolute,
	 * clean path under no tracked directory's path), so it was written
	 * without waking the reader, which takes it with the next record or
	 * within its poll interval. */
	DW_F_LAZY = 1 << 8,
	/* Kernel rungs: no watched directory covers the side a directory
	 * moved to, and chain (new_chain) is its top chain. */
	DW_F_TOP = 1 << 9,
	DW_F_NEW_TOP = 1 << 10,
};

/* Slots of the generations map. Each counts changes that can put a
 * directory under a watch: the programs count renames, Go counts updates
 * of the watched map. A climb that found no watched directory is
 * remembered for the sum the two had when it began, and only for it. */
enum dw_gen {
	DW_GEN_RENAMES = 0,
	DW_GEN_ANCHORS = 1,
};

/* A directory the kernel side reports on: the key of the watched map. */
struct dw_key {
	__u64 ino;
	__u32 dev; /* the kernel's dev_t: major << 20 | minor */
	__u32 _pad;
};

struct dw_event {
	enum dw_op op;
	enum dw_flags flags;
	__u32 pid; /* thread group id */
	__s32 dfd; /* syscall rung: directory fd of name (AT_FDCWD for mkdir, rename) */
	__s32 new_dfd;
	__u32 dev; /* the watched directory covering chain */
	__u64 ino;
	__u32 new_dev; /* the watched directory covering new_chain */
	__u32 name_len;
	__u64 new_ino;
	__u64 target_ino; /* rename: inode of the entry that was at name; 0 unknown */
	__u32 new_name_len;
	__u32 chain_len;
	__u32 new_chain_len;
	__u32 _pad;
};

#endif /* DIRWATCH_H */
