/*
 * replicate.h - replication to the shared tier as a background queue (the
 * model is redis bio.c): a transfer ends at its local commit, and asks this
 * module to put the committed copy into the container later.
 *
 * What it owns: one record per file name (at most `capacity`, set at init),
 * each holding the newest upload request for that file, its state for
 * .control/status and the lease handed over with the request; and one
 * worker thread, started once the daemon runs (replicate_start) and joined
 * by replicate_stop, which the daemon calls before the store and the
 * container's credentials are freed.
 *
 * States of a record (what status shows as the dataset's "upload"):
 *
 *   (none) --- replicate_enqueue ------------------------> queued
 *   queued --- the worker takes it (oldest first) ------> uploading
 *   uploading --- committed in the container -----------> done
 *   uploading --- the service or the network failed ----> failed
 *   uploading --- the copy was evicted or replaced,
 *                 or another host is uploading it ------> dropped
 *   any --- replicate_enqueue of a newer version -------> queued
 *   queued, uploading --- replicate_cancel (a delete) ---> dropped
 *
 * Invariants:
 *  1. Newest wins: a record holds one request. A newer request for the same
 *     file replaces a queued one (which is dropped, never uploaded) and
 *     cancels the one in flight (which then commits nothing).
 *  2. An upload reads the committed copy through a descriptor it opened
 *     itself when it started, after checking that the store still holds
 *     the requested version: an eviction or a refresh meanwhile cannot make
 *     it upload other bytes under the request's metadata.
 *  3. Bounded: at most `capacity` records; a request for a new file when
 *     every record holds a request not yet finished is refused (-ENOSPC).
 *  4. After replicate_stop returns, no upload runs and no lease handed over
 *     is still held; later requests are refused (-ESHUTDOWN) and their
 *     lease released at once.
 *
 * Locking: one mutex guards the records and the worker's state; it is a
 * leaf (no other lock is taken under it) and is never held while calling
 * the ops (store, network). Any thread may call any function.
 */
#ifndef IMDBFS_REPLICATE_H
#define IMDBFS_REPLICATE_H

#include <stddef.h>

#include "meta.h"

struct store;
struct store_azure_lease;

/* What the worker calls; tests pass fakes. */
struct replicate_ops {
	/*
	 * Opens the committed copy of file if it is still version m: 0 and a
	 * read-only *fd the worker closes, -ESTALE when it was replaced, -ENOENT
	 * when it was evicted.
	 */
	int (*open_copy)(void *ctx, const char *file, const struct meta *m, int *fd);
	/* Uploads the copy read through fd, polling cancelled: 0, -ECANCELED, -EBUSY, -errno. */
	int (*upload)(void *ctx, const char *file, int fd, const struct meta *m,
		      int (*cancelled)(void *), void *cancel_ctx, char *err, size_t errlen);
	/* Releases a lease handed over with a request (NULL never passed). */
	void (*release)(void *ctx, struct store_azure_lease *l);
	void *ctx;
};

enum replicate_state {
	REPL_NONE,
	REPL_QUEUED,
	REPL_UPLOADING,
	REPL_DONE,
	REPL_FAILED,
	REPL_DROPPED,
};

/* Records capacity requests at most; ops is copied. No thread is started. 0 or -errno. */
int replicate_init(const struct replicate_ops *ops, unsigned capacity);

/* replicate_init with the real ops: copies from st, uploads to the container. */
int replicate_init_azure(struct store *st);

/* Starts the worker (after the daemon forked); requests queued before wait for it. */
int replicate_start(void);

/*
 * Cancels the upload in flight, joins the worker, drops the requests still
 * queued (their copies stay in the local cache; the next refresh uploads
 * them) and releases their leases. Idempotent; a no-op before init.
 */
void replicate_stop(void);

/*
 * Asks for the committed copy of file, version m, to be uploaded. Takes
 * ownership of lease (may be NULL): it is released once that upload ended
 * or was dropped, so that other hosts waiting on it find the version in the
 * container. 0, or -ENOSPC / -ESHUTDOWN / -ENOTCONN (no container) with
 * the lease released.
 */
int replicate_enqueue(const char *file, const struct meta *m, struct store_azure_lease *lease);

/*
 * Takes back the lease handed over with file's request, if any: a new
 * transfer of file that would otherwise wait for it. The request stays.
 * Owned by the caller.
 */
struct store_azure_lease *replicate_take_lease(const char *file);

/*
 * Forgets file's request (a delete): a queued one is dropped, the one in
 * flight cancelled and waited for (bounded), so that nothing uploads file
 * after this returns. Its lease is released.
 */
void replicate_cancel(const char *file);

/* The state of file's upload, and its last failure ("" if none) in err. */
enum replicate_state replicate_status(const char *file, char *err, size_t errlen);

/* "queued", ..., NULL for REPL_NONE. */
const char *replicate_state_name(enum replicate_state st);

#endif
