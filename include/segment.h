/*
 * segment.h - the extra connections of a segmented download: byte ranges of
 * one origin file fetched in parallel, each written in place into the
 * download's temporary.
 *
 * A CDN often caps one connection well below the link, so a large download
 * (see config_segments_for) splits the bytes it still needs, [from, total),
 * into segments. Segment 0 is not ours: the download's own connection keeps
 * streaming it (and verifying it, in order). Segments 1..n-1 each get a
 * thread that asks for `Range: bytes=a-b` with `If-Range: <validator>`, so a
 * changed file answers 200 and is never mixed in: the segment then ends with
 * -ESTALE and the download starts over. A segment that fails is asked again
 * from where it stopped, with the retry policy of config.h; one that gives up
 * ends with its error and the download fails as a whole. Each thread moves
 * one curl buffer at a time into the file with pwrite(): memory is bounded.
 *
 * The download follows the segments with segments_wait(), reads back the
 * bytes that became contiguous, verifies them and only then publishes them
 * to readers: a segment's bytes are never served before everything in front
 * of them arrived.
 *
 * Locking: set->lock guards each segment's done, err, ended and error, and
 * the set's error (see segment.c); it is a leaf lock. set->stop is atomic.
 * The threads end only through segments_stop(), which joins them.
 */
#ifndef IMDBFS_SEGMENT_H
#define IMDBFS_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct segments;

/* Segments are never made smaller than this: more connections would cost more than they give. */
#define SEGMENT_MIN_BYTES (1u << 20)

struct segments_spec {
	const char *file;	   /* for log lines */
	const char *url;	   /* what to GET */
	const char *etag;	   /* the version's ETag, or "" */
	const char *last_modified; /* its Last-Modified, or "" (one of the two is set) */
	int fd;			   /* the temporary, written with pwrite; not owned */
	uint64_t from, total;	   /* split [from, total) */
	unsigned count;		   /* segments wanted, segment 0 included (>= 2) */
	const struct config *cfg;  /* retries, timeouts, cafile; outlives the set */
	int (*cancelled)(void *);  /* the download's cancel check, polled by every thread */
	void *cancel_ctx;
};

/*
 * Splits [from, total) into at most spec->count segments of at least
 * SEGMENT_MIN_BYTES and starts a thread for each segment after the first.
 * 0 with *out (owned by the caller: end with segments_stop) or -errno (no
 * thread left running; -ERANGE when the range is too small to split).
 */
int segments_start(const struct segments_spec *spec, struct segments **out);

/* Where segment 0 ends: the download's own connection stops there. */
uint64_t segments_first_end(const struct segments *s);

/* How many segments there are, segment 0 included. */
unsigned segments_count(const struct segments *s);

/*
 * Blocks until the byte at off (>= segments_first_end) is in the temporary:
 * returns how many bytes from off are (> 0, all within one segment).
 * -ESTALE when a segment saw a new version, a segment's error when one gave
 * up, -ECANCELED when the set was stopped or the download cancelled.
 */
int64_t segments_wait(struct segments *s, uint64_t off);

/* Without blocking: 0 while no segment failed, else as segments_wait. */
int segments_check(struct segments *s);

/* The first failure, in words ("" when none). */
void segments_error(struct segments *s, char *buf, size_t len);

/* Stops every thread (promptly: their transfers are cancelled), joins them, frees s. NULL ok. */
void segments_stop(struct segments *s);

#endif
