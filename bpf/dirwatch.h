/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The event ABI between bpf/dirwatch.bpf.c and internal/dirtrace.
 *
 * Each ring-buffer record is a struct dw_event followed by name_len bytes of
 * name and new_name_len bytes of new_name (each with its NUL, 0 when absent).
 */
#ifndef DIRWATCH_H
#define DIRWATCH_H

#define DW_NAME_MAX 256  /* NAME_MAX + 1: one path component */
#define DW_PATH_MAX 4096 /* PATH_MAX: a syscall's path argument */

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
	/* dev/ino (new_dev/new_ino) are set: the parent directory, or for the
	 * syscall rung the directory a relative path starts from. */
	DW_F_BASE = 1 << 4,
	DW_F_NEW_BASE = 1 << 5,
	/* That directory is in the watched map. */
	DW_F_WATCHED = 1 << 6,
	DW_F_NEW_WATCHED = 1 << 7,
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
	__u32 dev; /* parent directory of name (syscall rung: base of a relative name) */
	__u64 ino;
	__u32 new_dev; /* parent directory of new_name */
	__u32 name_len;
	__u64 new_ino;
	__u64 target_ino; /* rename: inode of the entry that was at name; 0 unknown */
	__u32 new_name_len;
	__u32 _pad;
};

#endif /* DIRWATCH_H */
