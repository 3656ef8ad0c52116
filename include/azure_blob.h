/*
 * azure_blob.h - a small Azure Blob Storage REST client on http.c's engine.
 *
 * Just the operations a shared cache needs: create a container, read a
 * blob's properties, stream a range of it, upload it (Put Blob, or Put Block
 * + Put Block List, which makes the new version appear atomically), list and
 * delete blobs, and lease a blob (the cross-host lock). Requests are signed
 * with the credential's key (SharedKey) or carry its SAS.
 *
 * This header is the client's face; its parts are modules of their own:
 * azure_request.h (one signed request, its response headers, the error
 * classification below), azure_listing.h (List Blobs pages), azure_meta.h
 * (metadata rules), azure_sharedkey.h and azure_auth.h (signing,
 * credentials), azure_crypto.h (OpenSSL). azure_blob.c only says, per
 * operation, what to send and what to read back.
 *
 * Every call is one synchronous request (List Blobs: one per page) on its
 * own connection, with connect, stall and overall timeouts; a client is
 * read-only, so any thread may use it at once without a lock. http_global_init()
 * must have run first. Nothing is retried here: the caller owns the backoff
 * (retry.h). The calls that are sent again after a transient failure (reads,
 * Put Block, Put Block List) set *retry_after on -EAGAIN to what the service
 * asked to wait with Retry-After (a 503 ServerBusy, a 429), in seconds; it
 * is 0 when it asked nothing, and after any other result.
 *
 * An error response's body is read for at most a few KiB (HTTP_ERROR_BODY_MAX):
 * its status and code are the answer, and one that never ends cannot hold
 * the call.
 *
 * Results, each with one line in err that names the operation, the blob and
 * the Azure error code (x-ms-error-code), never a key, SAS or signature:
 *
 *   0         2xx
 *   -ENOENT   404 (no such container or blob)
 *   -EACCES   401, 403 (authentication or permission), TLS verification
 *   -EEXIST   409 ContainerAlreadyExists / BlobAlreadyExists
 *   -EBUSY    any other 409: a lease held by someone else, a lease id mismatch
 *   -ESTALE   412: a condition failed (If-Match, lease id missing or wrong)
 *   -ERANGE   416: a range past the end of the blob
 *   -EAGAIN   408, 429, 5xx, connection errors, timeouts, stalls (retry later)
 *   -EPROTO   anything else (400 ...), or a malformed response
 *   -EINVAL   a bad argument (metadata name, lease duration ...), nothing sent
 *   -ECANCELED the read's or the client's cancel check fired
 *   other     the read sink's own error, passed through
 */
#ifndef IMDBFS_AZURE_BLOB_H
#define IMDBFS_AZURE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "azure_auth.h"
#include "azure_crypto.h"
#include "azure_meta.h"

struct azure_blob_client {
	const struct azure_cred *cred; /* not owned; outlives the client's use */
	const char *cafile;	       /* NULL: the system's CAs */
	long connect_seconds;	       /* 0: 20 */
	long stall_seconds;	       /* abort under 1 KiB/s for this long; 0: 60 */
	long timeout_seconds;	       /* whole request except streamed reads; 0: 300 */
	/* Polled during every request, uploads included (may be NULL): when true, the call
	 * ends with -ECANCELED. Thread-safe. */
	int (*cancelled)(void *ctx);
	void *cancel_ctx;
};

struct azure_blob_props {
	int64_t size; /* of the whole blob; -1 unknown */
	char etag[128];
	char last_modified[64];
	int64_t mtime; /* Last-Modified as epoch seconds; 0 unknown */
	char content_type[128];
	char lease_state[16];  /* available, leased, expired, breaking, broken */
	char lease_status[16]; /* locked, unlocked */
	struct azure_meta meta;
};

/* Creates the container; one that already exists is fine (0). */
int azure_blob_create_container(const struct azure_blob_client *cl, const char *container,
				char *err, size_t errlen);

/* HEAD: the blob's size, ETag, dates, content type, lease state and metadata. */
int azure_blob_props(const struct azure_blob_client *cl, const char *container, const char *name,
		     struct azure_blob_props *p, char *err, size_t errlen);

struct azure_blob_read {
	uint64_t offset;
	uint64_t length;      /* 0: to the end */
	const char *if_match; /* the ETag the bytes must belong to (else -ESTALE), or NULL */
	/* Status 200/206 and headers seen, before any byte; may be NULL. */
	int (*on_props)(void *ctx, const struct azure_blob_props *p);
	/* Each piece of the body in order; 0, or -errno which ends the read with it. */
	int (*on_body)(void *ctx, const void *buf, size_t len);
	int (*cancelled)(void *ctx); /* polled during the transfer; may be NULL */
	void *ctx;
};

/* GET of a range (x-ms-range), streamed to rd's callbacks; no overall timeout. */
int azure_blob_get(const struct azure_blob_client *cl, const char *container, const char *name,
		   const struct azure_blob_read *rd, double *retry_after, char *err, size_t errlen);

struct azure_blob_put {
	const char *content_type;      /* x-ms-blob-content-type; NULL: application/octet-stream */
	const char *content_md5;       /* base64 MD5 of the whole blob to store, or NULL */
	const char *lease_id;	       /* needed when the blob is leased; NULL otherwise */
	bool if_absent;		       /* fail with -EEXIST if the blob exists (If-None-Match: *) */
	const struct azure_meta *meta; /* replaces the blob's metadata; NULL: none */
};

/* Put Blob: the whole blob in one request, with Content-MD5. o may be NULL. */
int azure_blob_put(const struct azure_blob_client *cl, const char *container, const char *name,
		   const void *buf, size_t len, const struct azure_blob_put *o, char *err,
		   size_t errlen);

/*
 * Block ids: base64 of the upload's id (24 random hex digits) followed by
 * the block's index in 9 decimal digits. All ids of a blob have the same
 * length (the service requires it); ids of two uploads of the same blob
 * never meet, so a commit can only name the blocks its own upload staged;
 * and the base64 of hex and decimal digits is alphanumeric (no '+', '/' or
 * '=' to escape).
 */
#define AZURE_UPLOAD_ID_SIZE  25 /* 24 hex digits and a NUL */
#define AZURE_BLOCK_ID_SIZE   45 /* base64 of 33 characters: 44, and a NUL */
#define AZURE_BLOCK_INDEX_MAX 999999999u
/* A new random upload id. 0 or -EIO. */
int azure_blob_upload_id(char id[AZURE_UPLOAD_ID_SIZE]);
/* 0, or -EINVAL when upload_id is not 24 hex digits or index > AZURE_BLOCK_INDEX_MAX. */
int azure_blob_block_id(const char *upload_id, unsigned index, char id[AZURE_BLOCK_ID_SIZE]);

/* Put Block: stages one block (with its Content-MD5) of an uncommitted blob. */
int azure_blob_put_block(const struct azure_blob_client *cl, const char *container,
			 const char *name, const char *block_id, const void *buf, size_t len,
			 const char *lease_id, double *retry_after, char *err, size_t errlen);

/* Put Block List: commits the blocks, in order, as the blob's new content. o may be NULL. */
int azure_blob_put_block_list(const struct azure_blob_client *cl, const char *container,
			      const char *name, const char *const *block_ids, size_t count,
			      const struct azure_blob_put *o, double *retry_after, char *err,
			      size_t errlen);

/* Delete Blob; lease_id is needed when the blob is leased, else NULL. */
int azure_blob_delete(const struct azure_blob_client *cl, const char *container, const char *name,
		      const char *lease_id, char *err, size_t errlen);

struct azure_blob_item {
	char name[1025]; /* blob names are at most 1024 characters */
	int64_t size;
	char etag[128];
	char last_modified[64];
	int64_t mtime;
	char content_type[128];
	struct azure_meta meta;
};

/*
 * List Blobs with their metadata, following NextMarker across pages of at
 * most page_size blobs (0: the service's default, 5000). each() is called
 * per blob in name order; a non-zero return stops the listing with it.
 */
int azure_blob_list(const struct azure_blob_client *cl, const char *container, const char *prefix,
		    unsigned page_size, int (*each)(void *ctx, const struct azure_blob_item *it),
		    void *ctx, char *err, size_t errlen);

/*
 * Leases (the blob must exist). Acquire for 15..60 seconds; id gets the
 * lease id (a random UUID we propose). Conflicts are -EBUSY: the blob is
 * leased by another id, or (renew) our lease was lost.
 */
int azure_blob_lease_acquire(const struct azure_blob_client *cl, const char *container,
			     const char *name, int seconds, char id[AZURE_UUID_SIZE], char *err,
			     size_t errlen);
int azure_blob_lease_renew(const struct azure_blob_client *cl, const char *container,
			   const char *name, const char *id, char *err, size_t errlen);
int azure_blob_lease_release(const struct azure_blob_client *cl, const char *container,
			     const char *name, const char *id, char *err, size_t errlen);
/*
 * Breaks whoever's lease after break_seconds (0: at once; -1: the lease's
 * remaining time); *remaining gets the seconds until it is broken.
 */
int azure_blob_lease_break(const struct azure_blob_client *cl, const char *container,
			   const char *name, int break_seconds, int *remaining, char *err,
			   size_t errlen);

#endif
