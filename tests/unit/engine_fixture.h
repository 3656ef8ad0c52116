/*
 * engine_fixture.h - what test_download.c and test_extract.c drive the
 * download and extraction engines with, without FUSE or an HTTP server: the
 * real dataset layer (dataset.h) over a fake store and a fake origin.
 *
 * The fake origin is a struct tier (tier.h) put in with
 * download_use_origin(): its get() serves a version held in memory, honours
 * Range with If-Range and If-None-Match as an origin does, and can be told to
 * drop the connection at an offset (a transient fault), to switch to a new
 * version when it does, or to stall at an offset until the transfer is
 * cancelled or the test releases it. Every request is recorded.
 *
 * The fake store (store.h) keeps each temporary and committed copy in a
 * memfd, so that the test can read back what was committed, what a
 * checkpoint saved, and whether a temporary was left behind.
 */
#ifndef IMDBFS_TESTS_ENGINE_FIXTURE_H
#define IMDBFS_TESTS_ENGINE_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset_engine.h"
#include "meta.h"

/* One GET as the fake origin saw it. */
struct fx_request {
	uint64_t from;	   /* > 0: a ranged request */
	char if_range[64]; /* "" when none */
	char if_none_match[64];
	long status; /* what it answered: 200, 206, 304; 0 when it failed first */
};

#define FX_REQUESTS_MAX 32

/*
 * Per test (cmocka setup): the dataset layer over the fake store and origin
 * (initialised once per process), with nothing cached, nothing recorded and
 * no fault armed. Returns 0.
 */
int fx_setup(void **state);

/*
 * Per test (cmocka teardown): evicts every copy, drops what the fake store
 * holds, and checks that the descriptors open are those open at fx_setup()
 * (no temporary or copy leaked). Returns 0.
 */
int fx_teardown(void **state);

/* The version the origin serves from now on (body owned by the caller, kept alive). */
void fx_origin_serve(const unsigned char *body, size_t len, const char *etag);

/*
 * The next `times` requests drop the connection (-EAGAIN) once they have
 * served the file up to offset `at`; with next set, the origin has that
 * version from the first drop on.
 */
void fx_origin_drop_at(uint64_t at, int times, const unsigned char *next, size_t next_len,
		       const char *next_etag);

/*
 * The next request that reaches offset `at` of the file (0: before its
 * response headers) stops there until the transfer is cancelled (it returns
 * -ECANCELED, as http_get does) or fx_origin_release().
 */
void fx_origin_stall_at(uint64_t at);
/* Waits up to 5 s for a request to be stalled; true when one is. */
bool fx_origin_wait_stalled(void);
void fx_origin_release(void);

/* The requests seen since fx_setup(); returns how many (at most FX_REQUESTS_MAX). */
int fx_requests(struct fx_request *out);

/* The committed copy of file in the fake store (malloc'd in *buf), or false when none. */
bool fx_store_committed(const char *file, unsigned char **buf, size_t *len, struct meta *m);

/*
 * The temporary of file in the fake store (malloc'd in *buf; NULL to skip),
 * with its checkpoint in *p (p->durable -1 when never checkpointed); false
 * when there is none.
 */
bool fx_store_temp(const char *file, unsigned char **buf, size_t *len, struct meta_partial *p);

/* The committed copy of file is want[0, len) with etag and size len; its metadata in *m. */
void fx_assert_committed(const char *file, const unsigned char *want, size_t len, const char *etag,
			 struct meta *m);

/* Puts a temporary for file with a checkpoint, as an earlier run left it. */
void fx_store_put_partial(const char *file, const unsigned char *bytes, size_t len,
			  const struct meta_partial *p);

/* Called (no lock held) at the start of every commit of the fake store; NULL for none. */
void fx_store_on_commit(void (*fn)(const char *file));

/* The URL the engine records for file (the fake origin's base + file). */
void fx_url_of(const char *file, char *out, size_t outlen);

/* ---- data ---- */

/* len bytes of TSV-like text, different for each seed; malloc'd. */
unsigned char *fx_text(size_t len, unsigned seed);

/* data gzipped as `members` concatenated gzip members (RFC 1952); malloc'd. */
unsigned char *fx_gzip(const unsigned char *data, size_t len, int members, size_t *out_len);

/* What zlib's inflate makes of every member of gz; malloc'd. */
unsigned char *fx_inflate(const unsigned char *gz, size_t len, size_t *out_len);

/* One version of a file: its text, its gzip, and zlib's inflate of that gzip. */
struct fx_version {
	unsigned char *plain, *gz, *inflated;
	size_t plain_len, gz_len, inflated_len;
};

/* plain_len bytes of fx_text(seed), gzipped as `members` members. */
struct fx_version fx_version_make(size_t plain_len, int members, unsigned seed);
void fx_version_free(struct fx_version *v);

/* Starts a download (force) or extraction of ds and waits for it to end. */
struct dataset_result fx_download(int ds, bool force);
struct dataset_result fx_extract(int ds);

#endif
