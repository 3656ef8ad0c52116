/*
 * notify.h - tells the kernel that a name in the root now stands for another
 * inode (a new version, an eviction), from a thread of its own (see
 * notify.c for why), so that new lookups find the current version at once.
 */
#ifndef IMDBFS_NOTIFY_H
#define IMDBFS_NOTIFY_H

struct fuse_session;

/* Starts the thread (in init); without it, names follow within the entry timeout. */
void notify_start(struct fuse_session *se);

/* Stops and joins the thread (in destroy). */
void notify_end(void);

/* A committed data file changed or went: queue its invalidation. Any thread, no lock held. */
void notify_file_changed(const char *file);

#endif
