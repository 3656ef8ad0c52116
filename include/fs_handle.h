/*
 * fs_handle.h - open files of the FUSE layer: opening data and control
 * files, reading them (parking reads that run ahead of a feed), command
 * writes, releases. fs.c's callbacks call into it; see fs_handle.c for the
 * handles, which version an open reads, parked requests and their locking.
 */
#ifndef IMDBFS_FS_HANDLE_H
#define IMDBFS_FS_HANDLE_H

#include "fs_inode.h"

/*
 * Who may change the mount: evict (rm), truncate, or write a command. Under
 * allow_other every local user reaches it, and reading stays open to them;
 * changes are the mounting user's (the daemon's uid) and root's, as the
 * modes shown say (root dir 0755 and command files 0644, owned by that user).
 * 0 or -EACCES.
 */
int fs_may_change(fuse_req_t req);

/* Opens ino (a data or control file, n what it stands for) and replies, now or once parked. */
void fs_handle_open(fuse_req_t req, fuse_ino_t ino, const struct fs_node *n,
		    struct fuse_file_info *fi);

/* Reads from the handle fi names and replies, now or once parked. */
void fs_handle_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);

/* A write to the handle fi names: a command for its control file. 0 or -errno; no reply. */
int fs_handle_write(fuse_req_t req, const char *buf, size_t size, struct fuse_file_info *fi);

/* Releases the handle fi names; its memory goes with the last request using it. No reply. */
void fs_handle_release(struct fuse_file_info *fi);

/*
 * Answers every read still parked with EIO (the loop has ended; destroy
 * calls it once more, after the transfers stopped).
 */
void fs_handle_answer_parked(void);

/* Frees the handles whose release never came (the kernel drops them at unmount). */
void fs_handle_free_all(void);

#endif
