/*
 * segment.h - the extra connections of a segmented download: pieces of one
 * origin file fetched in parallel, each written in place into the download's
 * temporary, nearly in file order.
 *
 * A CDN often caps one connection well below the link, so a large download
 * (see config_segments_for) spreads the bytes it still needs, [from, total),
 * over several connections. The bytes are cut into pieces of a few MiB that
 * the connections take in file order, so the bytes arrive close to in order
 * and the download's verifier, which can only go in order, keeps up with
 * them; when no piece is left, an idle connection takes over the second half
 * of the largest piece still arriving, so that all connections end together.
 *
 * Piece 0 is not ours: the download's own connection streams it (and
 * verifies it). The other connections are worker threads, each asking for
 * `Range: bytes=a-b` with `If-Range: <validator>` over a kept-alive
 * connection, so a changed file answers 200 and is never mixed in: the set
 * then fails with -ESTALE and the download starts over. A piece that fails is
 * asked again from where it stopped, with the retry policy of config.h; one
 * that gives up fails the set. Each worker moves one curl buffer at a time
 * into the file with pwrite(): memory is bounded.
 *
 * One worker waits for segments_release(): while the download's connection
 * is on piece 0, the set uses one connection less, so that there are never
 * more than `count` at a time.
 *
 * The download follows the pieces with segments_wait(), reads back the bytes
 * that became contiguous, verifies them and only then publishes them to
 * readers: bytes are never served before everything in front of them arrived.
 *
 * Locking: set->lock guards the pieces (their end, done and reserved), the
 * next piece to hand out, the released flag and the set's error (see
 * segment.c); it is a leaf lock. set->stop is atomic. The threads end only
 * through segments_stop(), which joins them.
 */
#ifndef IMDBFS_SEGMENT_H
#define IMDBFS_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct segments;

/* No piece is cut smaller than this (but the last). */
#define SEGMENT_MIN_BYTES (1u << 20)
/*
 * Nor larger than this (a piece's bytes wait for every piece before it),
 * unless the file is longer than SEGMENT_PIECES_MAX of them: the table of
 * pieces has a bound that no Content-Length can move.
 */
#define SEGMENT_MAX_PIECE  (16u << 20)
#define SEGMENT_PIECES_MAX 4096u

struct segments_spec {
	const char *file;	   /* for log lines */
	const char *url;	   /* what to GET */
	const char *etag;	   /* the version's ETag, or "" */
	const char *last_modified; /* its Last-Modified, or "" (one of the two is set) */
	int fd;			   /* the temporary, written with pwrite; not owned */
	uint64_t from, total;	   /* fetch [from, total) */
	unsigned count;		   /* connections wanted, the download's own included (>= 2) */
	const struct config *cfg;  /* retries, timeouts, cafile; outlives the set */
	int (*cancelled)(void *);  /* the download's cancel check, polled by every thread */
	void *cancel_ctx;
};

/*
 * Cuts [from, total) into pieces and starts a worker per connection, the
 * last of them waiting for segments_release(). 0 with *out (owned by the
 * caller: end with segments_stop) or -errno (no thread left running; -ERANGE
 * when the range is too small to share).
 */
int segments_start(const struct segments_spec *spec, struct segments **out);

/* Where piece 0 ends: the download's own connection stops there. */
uint64_t segments_first_end(const struct segments *s);

/* How many connections the set uses at a time, the download's own included. */
unsigned segments_count(const struct segments *s);

/*
 * The size of the pieces (but the last): about an eighth of each
 * connection's share, within [SEGMENT_MIN_BYTES, SEGMENT_MAX_PIECE], and
 * large enough that there are at most SEGMENT_PIECES_MAX.
 */
uint64_t segments_piece_bytes(const struct segments *s);

/* The download's connection is done with piece 0: the waiting worker starts. */
void segments_release(struct segments *s);

/*
 * Blocks until the byte at off (>= segments_first_end) is in the temporary:
 * returns how many bytes from off are (> 0, all within one piece). -ESTALE
 * when a worker saw a new version, a worker's error when one gave up,
 * -ECANCELED when the set was stopped or the download cancelled.
 */
int64_t segments_wait(struct segments *s, uint64_t off);

/* Without blocking: 0 while no worker failed, else as segments_wait. */
int segments_check(struct segments *s);

/* The first failure, in words ("" when none). */
void segments_error(struct segments *s, char *buf, size_t len);

/* Stops every thread (promptly: their transfers are cancelled), joins them, frees s. NULL ok. */
void segments_stop(struct segments *s);

#endif
