/*
 * cachedir.h - whether a cache directory may be trusted, and who holds it.
 *
 * A cache directory is trusted only when it is the daemon's own, as ssh's
 * StrictModes trusts ~/.ssh: a real directory (not a symbolic link), owned
 * by the daemon's effective uid, not writable by group or others. Its
 * parents are not checked. A lock file in it, flock()ed for the daemon's
 * life, keeps a second daemon out. Each function fails with -errno and one
 * line in err naming the directory and the reason.
 */
#ifndef IMDBFS_CACHEDIR_H
#define IMDBFS_CACHEDIR_H

#include <stddef.h>

/* Creates path (and its parents, 0700) if needed and opens it, checked; *fd is the caller's. */
int cachedir_open(const char *path, int *fd, char *err, size_t errlen);

/* Likewise for the subdirectory name of dirfd (the directory path, for messages). */
int cachedir_open_sub(int dirfd, const char *path, const char *name, int *fd, char *err,
		      size_t errlen);

/*
 * Takes the lock: dirfd/name, created if needed, flock()ed exclusively.
 * -EBUSY when another process holds it. The lock belongs to the open file
 * description, so it survives fork() (fuse_daemonize) and ends when the last
 * copy of *fd is closed. On a filesystem without locks: a warning, and 0.
 */
int cachedir_lock(int dirfd, const char *path, const char *name, int *fd, char *err, size_t errlen);

#endif
