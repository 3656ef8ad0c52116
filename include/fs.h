/*
 * fs.h - the FUSE layer: translates paths and calls into the catalogue,
 * dataset and control modules, and answers with -errno. No policy lives here
 * and no curl or zlib is seen here.
 *
 * The tree: "/" holds the 14 data files and ".control/"; data files are
 * read-only (rm evicts); command files in .control/ take one-line writes.
 *
 * fs.c holds the callbacks and the session; fs_inode.h the inodes (one per
 * version the kernel looked up), fs_handle.h the open files.
 */
#ifndef IMDBFS_FS_H
#define IMDBFS_FS_H

struct config;
struct fuse_args;

/* Mounts and serves until unmounted; returns the process exit status. */
int fs_main(struct fuse_args *args, const struct config *cfg);

#endif
