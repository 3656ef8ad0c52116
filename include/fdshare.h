/*
 * fdshare.h - the daemon's file descriptors as a budget: one refcounted
 * descriptor per committed version, shared by the dataset and every reader
 * of that version, and the bound on open data handles that keeps a reserve
 * of descriptors for transfers (sockets, temporaries) and the cache.
 *
 * A reader never costs a descriptor of its own: the committed version
 * (struct dataset_version, dataset.h) holds its one struct fdshare, and any
 * number of handles and inodes hold that version. A handle can still pin a
 * version the dataset has replaced, so in the worst case every handle holds a
 * different descriptor: bounding handles by the descriptor limit minus
 * FDSHARE_RESERVE is what keeps a download from ever failing with EMFILE. An
 * inode the kernel holds with no handle open (an O_PATH descriptor, a cached
 * entry) pins its version too, until the kernel forgets it.
 *
 * Locking: the reference count is atomic; the descriptor is constant.
 */
#ifndef IMDBFS_FDSHARE_H
#define IMDBFS_FDSHARE_H

/* Descriptors kept out of the handles' reach, for transfers and the cache. */
#define FDSHARE_RESERVE 128

struct fdshare;

/* Wraps fd (taken over only on success) with one reference; NULL on ENOMEM. */
struct fdshare *fdshare_new(int fd);

/* Another reference on s, which the caller already holds one of; returns s. */
struct fdshare *fdshare_get(struct fdshare *s);

/* Drops a reference (NULL is a no-op); the last one closes the descriptor and frees s. */
void fdshare_put(struct fdshare *s);

int fdshare_fd(const struct fdshare *s);

/* Raises the soft RLIMIT_NOFILE to the hard limit; 0 or -errno. *limit is the limit after. */
int fdshare_raise_limit(long *limit);

/* How many data handles may be open at once now: the soft limit minus FDSHARE_RESERVE. */
long fdshare_handle_bound(void);

#endif
