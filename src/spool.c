/* spool.c - see spool.h */
#include "spool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"

struct spool {
	int fd;					 /* constant */
	void (*landed)(void *ctx, uint64_t end); /* constant */
	void *ctx;				 /* constant */
	char *mem;				 /* constant: the slots' buffers */
	size_t len[SPOOL_SLOTS];		 /* see spool.h: with the slot's bytes */
	pthread_t thread;
	bool joined;	  /* the producer's own */
	uint64_t end;	  /* the thread's own: bytes written */
	uint64_t flushed; /* the thread's own: bytes whose writeback was started */
	pthread_mutex_t lock;
	pthread_cond_t changed; /* a slot was queued or written, or the spool is ending */
	unsigned head, count;	/* guarded by lock: the oldest queued slot, how many are */
	bool closing;		/* guarded by lock: write what is queued, then end */
	bool stop;		/* guarded by lock: end now */
	int err;		/* guarded by lock: the first write's error */
};

static char *slot(struct spool *s, unsigned i)
{
	return s->mem + (size_t)i * SPOOL_SLOT_BYTES;
}

/* Writes one slot; after a failure, only drops it so that the producer never waits forever. */
static void write_slot(struct spool *s, unsigned i, bool failed)
{
	int rc;

	if (failed)
		return;
	if ((rc = feed_pwrite_all(s->fd, slot(s, i), s->len[i], s->end))) {
		pthread_mutex_lock(&s->lock);
		s->err = rc;
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->end += s->len[i];
	s->landed(s->ctx, s->end);
	feed_flush_hint(s->fd, &s->flushed, s->end);
}

static void *spool_main(void *arg)
{
	struct spool *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->count && !s->closing && !s->stop)
			pthread_cond_wait(&s->changed, &s->lock);
		if (s->stop || !s->count)
			break;
		unsigned i = s->head;
		bool failed = s->err != 0;
		pthread_mutex_unlock(&s->lock);
		write_slot(s, i, failed);
		pthread_mutex_lock(&s->lock);
		s->head = (s->head + 1) % SPOOL_SLOTS;
		s->count--;
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct spool *spool_new(int fd, void (*landed)(void *ctx, uint64_t end), void *ctx)
{
	struct spool *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->fd = fd;
	s->landed = landed;
	s->ctx = ctx;
	if (!(s->mem = malloc((size_t)SPOOL_SLOTS * SPOOL_SLOT_BYTES)))
		goto fail_mem;
	if (pthread_mutex_init(&s->lock, NULL))
		goto fail_mem;
	if (pthread_cond_init(&s->changed, NULL))
		goto fail_lock;
	if (pthread_create(&s->thread, NULL, spool_main, s))
		goto fail_cond;
	return s;
fail_cond:
	pthread_cond_destroy(&s->changed);
fail_lock:
	pthread_mutex_destroy(&s->lock);
fail_mem:
	free(s->mem);
	free(s);
	return NULL;
}

/* A free slot, waiting for one; -errno once a write failed. */
static int free_slot(struct spool *s, unsigned *i)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	while (s->count == SPOOL_SLOTS && !s->err)
		pthread_cond_wait(&s->changed, &s->lock);
	rc = s->err;
	*i = (s->head + s->count) % SPOOL_SLOTS;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int spool_buffer(struct spool *s, void **buf)
{
	unsigned i;
	int rc = free_slot(s, &i);

	*buf = rc ? NULL : slot(s, i);
	return rc;
}

int spool_put(struct spool *s, const void *buf, size_t len)
{
	const char *p = buf;
	unsigned i;
	int rc;

	while (len > 0) {
		size_t n = len < SPOOL_SLOT_BYTES ? len : SPOOL_SLOT_BYTES;
		if ((rc = free_slot(s, &i)))
			return rc;
		if (p != slot(s, i)) /* else spool_buffer() lent it: the bytes are in place */
			memcpy(slot(s, i), p, n);
		s->len[i] = n;
		pthread_mutex_lock(&s->lock);
		s->count++;
		pthread_cond_broadcast(&s->changed);
		pthread_mutex_unlock(&s->lock);
		p += n;
		len -= n;
	}
	return 0;
}

static void end_thread(struct spool *s, bool drop)
{
	if (s->joined)
		return;
	pthread_mutex_lock(&s->lock);
	s->closing = true;
	s->stop = drop;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->joined = true;
}

int spool_finish(struct spool *s)
{
	end_thread(s, false);
	return s->err; /* the thread is gone: nothing else writes it */
}

void spool_free(struct spool *s)
{
	if (!s)
		return;
	end_thread(s, true);
	pthread_cond_destroy(&s->changed);
	pthread_mutex_destroy(&s->lock);
	free(s->mem);
	free(s);
}
