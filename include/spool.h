/*
 * spool.h - write-behind: a thread that writes a producer's output into its
 * file while the producer makes the next bytes.
 *
 * A decompression spends about a third of its time in the kernel copying its
 * output into the page cache; on another core that copy overlaps the
 * decoding. The producer hands over its output in file order from offset 0
 * with spool_put(), which copies it into one of SPOOL_SLOTS buffers and waits
 * only while all of them are full. After each write lands the spool's thread
 * calls landed(ctx, end): the bytes [0, end) are in the file. It also starts
 * their writeback as it goes (feed_flush_hint). Memory is bounded:
 * SPOOL_SLOTS * SPOOL_SLOT_BYTES.
 *
 * Locking: spool->lock guards the ring (head, count), the error and the
 * closing and stop flags; a slot's bytes belong to the producer until it is
 * queued and to the thread until it is written. landed() runs on the
 * spool's thread without the lock.
 */
#ifndef IMDBFS_SPOOL_H
#define IMDBFS_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_SLOTS	 4
#define SPOOL_SLOT_BYTES (256 * 1024)

struct spool;

/* Starts the thread writing into fd (not owned). NULL when out of memory or threads. */
struct spool *spool_new(int fd, void (*landed)(void *ctx, uint64_t end), void *ctx);

/*
 * The buffer of the next free slot (SPOOL_SLOT_BYTES), waiting for one, for a
 * producer that makes its output in place: spool_put() of it (or of its
 * beginning) then queues it without a copy. 0 with *buf, or the first
 * write's error.
 */
int spool_buffer(struct spool *s, void **buf);

/* Queues buf (copied unless it is spool_buffer()'s). 0, or the first write's error (-errno):
 * nothing more is written. */
int spool_put(struct spool *s, const void *buf, size_t len);

/* Waits until everything queued is written and ends the thread. 0 or the first error. */
int spool_finish(struct spool *s);

/* Ends the thread if spool_finish() did not (what is still queued is dropped), frees s. NULL ok. */
void spool_free(struct spool *s);

#endif
