/*
 * store_azure.h - the shared tier: an Azure Blob container that several
 * hosts' mounts read from and upload to, between their local caches and the
 * origin (SPEC section 4).
 *
 * It is not behind store.h's interface: the local store hands out
 * descriptors of files on disk, this tier streams. A blob holds a verified
 * copy of one file, named as in the mount, with the copy's struct meta as its
 * metadata; uploads go through Put Block + Put Block List, so a new version
 * appears whole or not at all.
 *
 * Fencing: an upload leases the blob it writes (creating it empty first if
 * absent: an empty blob without our metadata reads as absent), and every
 * Put Block and the Put Block List carry that lease id, so a host whose
 * lease was broken, expired or taken over cannot commit, whenever its
 * requests arrive (the service refuses them with 412). Block ids carry a
 * random id of the upload, so a commit can only name its own upload's
 * blocks: two hosts never commit a mix. The "FILE.lock" lease (below) only
 * keeps two hosts from fetching the same file from the origin at once.
 *
 * The tier is opened once at mount (checking
 * the credentials with a cheap request) and is then read-only state: any
 * thread may call it. Its last failure, for health, is guarded by a lock
 * of its own. Secrets never reach its messages.
 */
#ifndef IMDBFS_STORE_AZURE_H
#define IMDBFS_STORE_AZURE_H

#include <stddef.h>
#include <stdint.h>

#include "azure_blob.h"
#include "config.h"
#include "http.h"
#include "meta.h"

/*
 * Reads the credentials from the environment (env: see config.h), creates
 * the container if needed and checks access. 0, or -errno and one line in err.
 */
int store_azure_open(const struct config *cfg, config_env_fn env, char *err, size_t errlen);
/*
 * Ends every request to the container at once (-ECANCELED) and refuses new
 * ones: an upload or lease call under way does not hold the unmount. Any
 * thread; before store_azure_close.
 */
void store_azure_stop(void);
void store_azure_close(void);
/* Whether storage=azure is on (store_azure_open succeeded). */
int store_azure_enabled(void);

/*
 * The version of file in the container; -ENOENT none (or none to trust: see
 * store_azure_meta_parse), -EAGAIN unreachable, -EACCES.
 */
int store_azure_lookup(const char *file, struct meta *m, char *err, size_t errlen);

/*
 * Blob metadata is untrusted input (anyone with write access to the
 * container can plant a blob): m is filled only from metadata that is whole
 * and sane, else -EPROTO with the reason in why. The origin URL must be
 * this host's copy of file (origin + the .tsv.gz's name), the size a whole
 * decimal number equal to blob_size, the decompressed size -1 or one in
 * [0, STORE_AZURE_SIZE_MAX], the times whole numbers from the epoch to a
 * day past now.
 */
#define STORE_AZURE_SIZE_MAX (1LL << 40)
int store_azure_meta_parse(const struct azure_meta *am, int64_t blob_size, const char *origin,
			   const char *file, double now, struct meta *m, char *why, size_t whylen);

/*
 * Streams file from byte offset on, as an origin response would arrive: the
 * sink sees status 200 (206 from a non-zero offset) with the origin's ETag
 * and Last-Modified from the blob's metadata, then the bytes. The bytes must
 * belong to version v (the blob's own ETag is pinned after the first look).
 * On -EAGAIN *retry_after is what the service asked to wait (Retry-After),
 * for the caller's retry policy; else 0.
 */
int store_azure_get(const char *file, const struct meta *v, uint64_t offset,
		    const struct http_sink *sink, int (*cancelled)(void *), void *cancel_ctx,
		    double *retry_after, char *err, size_t errlen);

/*
 * Uploads the committed copy read through fd, with m as its metadata, under
 * a lease on the blob. -EBUSY: another host is uploading it (nothing done);
 * -ESTALE: the lease was lost on the way and nothing was committed;
 * -ECANCELED: cancelled (may be NULL) said so, before the commit or during
 * any request, and nothing was committed.
 */
int store_azure_upload(const char *file, int fd, const struct meta *m, int (*cancelled)(void *),
		       void *cancel_ctx, char *err, size_t errlen);

/* Deletes file from the container; -ENOENT when it was not there. */
int store_azure_delete(const char *file, char *err, size_t errlen);

/*
 * The cross-host lock on fetching file from the origin: a lease on the blob
 * "FILE.lock", renewed by a thread of its own until unlocked. A holder that
 * dies stops renewing, and the lease expires within STORE_AZURE_LEASE_S.
 * 0 (locked), -EBUSY (another host holds it), or another failure.
 */
#define STORE_AZURE_LEASE_S 15
struct store_azure_lease;
int store_azure_lock(const char *file, struct store_azure_lease **out, char *err, size_t errlen);
void store_azure_unlock(struct store_azure_lease *l);

/* One blob of the container, as .control/files shows it. */
struct store_azure_item {
	char name[1025];
	char content_type[128];
	struct meta m; /* size and mtime are the blob's; the rest from its metadata */
};
/* Calls each for every copy in the container (not the locks), in name order. */
int store_azure_list(int (*each)(void *ctx, const struct store_azure_item *it), void *ctx,
		     char *err, size_t errlen);

/* "Azure Blob Container: NAME", for people. */
const char *store_azure_location(void);

/* The last failure talking to the container, "" when the last call worked. */
void store_azure_problem(char *buf, size_t len);

#endif
