/*
 * fs_inode.h - the kernel's inodes: what each inode number stands for, the
 * inode objects of data files, and the attributes every inode shows.
 *
 * Inode numbers:
 *   1               the root
 *   2               .control/
 *   3 + id          .control/<id>
 *   64 + 16g + s    generation g of data file slot s (s = 2 * dataset + kind)
 *
 * One data file inode per version (libfuse's example/passthrough_ll.c
 * idiom): a lookup makes, or finds, the inode object of the file's current
 * version (dataset_current()) and counts one kernel lookup on it (nlookup);
 * forget gives the kernel's lookups back, and the object, with its reference
 * on the version, goes when the last one does. So an inode's attributes are
 * always its own version's (DESIGN.md invariant 5), an open through it reads
 * that version while a reader holds it (see fs_handle.c), and memory is bounded by what the kernel
 * holds: an inode the kernel forgot frees its version reference. Handles do
 * not hold the inode: each holds its own reference on the version it reads.
 *
 * The root, .control/ and its files have fixed numbers and no object.
 *
 * Locking: inodes_lock (fs_inode.c) guards the table and every object's
 * nlookup; the version reference an object holds is constant. It is a leaf:
 * a version is asked for (dataset_current(), which takes the dataset lock)
 * before inodes_lock is taken and put after it is released; only the atomic
 * dataset_version_get() runs under it.
 */
#ifndef IMDBFS_FS_INODE_H
#define IMDBFS_FS_INODE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/stat.h>

#include "catalog.h"
#include "control.h"

#define FS_INO_ROOT	    1
#define FS_INO_CONTROL_DIR  2
#define FS_INO_CONTROL_BASE 3

struct dataset_version;

enum fs_node_type { NODE_ROOT, NODE_CONTROL_DIR, NODE_DATA, NODE_CONTROL };

/* What an inode number stands for. */
struct fs_node {
	enum fs_node_type type;
	int ds;		       /* NODE_DATA */
	enum file_kind kind;   /* NODE_DATA */
	enum control_file ctl; /* NODE_CONTROL */
};

/* Sets what the directories and control files show as their mtime (the mount's start). */
void fs_inode_init(double mounted_at);

/* The inode number of generation gen of a data file (for readdir: no lookup counted). */
fuse_ino_t fs_inode_data_ino(int ds, enum file_kind kind, uint64_t gen);

/* What ino stands for; -ENOENT when nothing. */
int fs_inode_node(fuse_ino_t ino, struct fs_node *n);

/*
 * Counts one kernel lookup on the inode of a data file's current version,
 * made if need be: 0 with *ino and *v (a reference for the caller), or
 * -ENOMEM.
 */
int fs_inode_lookup(int ds, enum file_kind kind, fuse_ino_t *ino, struct dataset_version **v);

/* The version a data inode stands for, a reference for the caller; NULL when not looked up. */
struct dataset_version *fs_inode_version(fuse_ino_t ino);

/* Gives back nlookup of the kernel's lookups on ino; the last frees the inode object. */
void fs_inode_forget(fuse_ino_t ino, uint64_t nlookup);

/* Frees every inode object left (the kernel forgets nothing at unmount). */
void fs_inode_forget_all(void);

/*
 * The attributes of ino: v is the version of a data inode (fs_inode_version()),
 * NULL for the others; command files are the mounting user's, writable.
 */
void fs_inode_attr(fuse_ino_t ino, const struct fs_node *n, struct dataset_version *v,
		   struct stat *st);

/* The attributes of ino as fs_inode_attr(), looked up: 0 or -ENOENT. */
int fs_inode_stat(fuse_ino_t ino, struct stat *st);

#endif
