/*
 * feed.h - a file being filled by one writer while any number of readers
 * read it: the object that makes downloads and decompressions streamable.
 *
 * The writer pwrite()s into the file and then calls feed_grow() to publish
 * the bytes; readers call feed_wait() for the range they want and pread() the
 * file themselves. A reader blocks only until its own range is filled, the
 * feed ends, or its interrupt check fires. Once the feed has failed, a read
 * past the filled bytes gets the failure, never a silent end of file.
 *
 * A reader that must not block a thread parks a struct feed_waiter on the
 * feed instead (feed_park()): the writer's next feed_grow() or feed_finish()
 * that makes it answerable takes it off the feed and calls its ready() on the
 * writer's thread. Whoever takes a waiter off the feed (that writer, or
 * feed_unpark() returning true) answers it, exactly once; a waiter is never
 * answered while it is still on the feed.
 *
 * The feed owns its descriptor; the file may be renamed or unlinked while the
 * feed lives, and readers holding a reference keep reading the same bytes.
 *
 * Locking: every field, and the list of parked waiters with their state, is
 * guarded by feed->lock, a leaf lock (nothing else is taken while holding it).
 * ready() is called with no feed lock held; the writer calls feed_grow() and
 * feed_finish() with no lock of its own held, since ready() replies to the
 * kernel.
 */
#ifndef IMDBFS_FEED_H
#define IMDBFS_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parking.h"

struct feed;

/* Wraps fd (taken over) in a feed of expected size (-1 unknown); one reference. */
struct feed *feed_new(int fd, int64_t size);

void feed_ref(struct feed *f);

/* Drops a reference; the last one closes the descriptor and frees the feed. */
void feed_unref(struct feed *f);

int feed_fd(const struct feed *f);

/* Writer: bytes [0, filled) are now readable. */
void feed_grow(struct feed *f, uint64_t filled);

/* Writer: the total size became known (or changed). */
void feed_set_size(struct feed *f, int64_t size);

/* Writer: the feed ends, complete (err 0) or failed (-errno). Wakes every reader. */
void feed_finish(struct feed *f, int err);

/*
 * Reader: waits until [off, off+len) is filled, the feed ends, or
 * interrupted(ctx) returns non-zero (checked every few tens of milliseconds;
 * may be NULL). Returns the number of bytes readable at off (> 0), 0 at the
 * end of a complete feed, -EINTR, or the feed's error past its filled bytes.
 * With partial_ok, returns as soon as any byte at off is readable.
 */
int64_t feed_wait(struct feed *f, uint64_t off, size_t len, int partial_ok,
		  int (*interrupted)(void *), void *ctx);

/* A read parked on a feed (see parking.h); the caller owns the memory, freed once answered. */
struct feed_waiter {
	struct park_entry entry; /* the feed's, guarded by its lock */
	uint64_t off;		 /* constant once parked */
	size_t len;		 /* constant once parked */
	/*
	 * Called once, with no lock held, when a writer has taken the waiter off
	 * the feed: n is what feed_wait(off, len, partial_ok=1) would return.
	 */
	void (*ready)(struct feed_waiter *w, int64_t n);
};

/* Makes w fresh: off the feed, never cancelled. Call before the waiter can be seen elsewhere. */
void feed_waiter_init(struct feed_waiter *w, uint64_t off, size_t len,
		      void (*ready)(struct feed_waiter *w, int64_t n));

/*
 * Reader: answers at once when a byte at w->off is readable or the feed has
 * ended (the return value is then as feed_wait()'s with partial_ok), or with
 * -EINTR when feed_unpark() came first; else parks w and returns
 * -EINPROGRESS, and w->ready() or a true feed_unpark() follows.
 */
int64_t feed_park(struct feed *f, struct feed_waiter *w);

/*
 * Reader (an interrupt, a shutdown): takes w off the feed. true: it was
 * parked and the caller now answers it. false: a writer took it first (its
 * ready() runs or has run), or it was not parked yet, and then the coming
 * feed_park() returns -EINTR.
 */
bool feed_unpark(struct feed *f, struct feed_waiter *w);

/* Takes every waiter off the feed and calls its ready() with answer (a shutdown's -errno). */
void feed_unpark_all(struct feed *f, int64_t answer);

/* Writer: all of buf into fd at off (EINTR and short writes retried); 0 or -errno. */
int feed_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/*
 * Writer: once [*flushed, end) reaches FEED_FLUSH_BYTES, starts its
 * writeback to disk and moves *flushed to end, so that the fsync that makes
 * the file durable at its commit finds little left to write. Only a hint:
 * an I/O error shows up in that fsync.
 */
#define FEED_FLUSH_BYTES (8 * 1024 * 1024)
void feed_flush_hint(int fd, uint64_t *flushed, uint64_t end);

/* A consistent snapshot: bytes filled, size (-1 unknown), 1 when ended, error. */
void feed_progress(struct feed *f, uint64_t *filled, int64_t *size, int *ended, int *err);

#endif
