/* feed.c - see feed.h */
#include "feed.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

struct feed {
	pthread_mutex_t lock;
	pthread_cond_t grown;	 /* signalled on every grow and at the end */
	int fd;			 /* constant after feed_new */
	int refs;		 /* guarded by lock */
	uint64_t filled;	 /* guarded by lock */
	int64_t size;		 /* guarded by lock */
	bool ended;		 /* guarded by lock */
	int err;		 /* guarded by lock; valid once ended */
	struct park_list parked; /* guarded by lock: waiters of feed_park() */
};

/* How often a blocked reader looks at its interrupt check. */
#define POLL_NS (50 * 1000 * 1000)

struct feed *feed_new(int fd, int64_t size)
{
	struct feed *f = calloc(1, sizeof(*f));
	pthread_condattr_t attr;

	if (!f)
		return NULL;
	if (pthread_condattr_init(&attr))
		goto fail;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_cond_init(&f->grown, &attr)) {
		pthread_condattr_destroy(&attr);
		goto fail;
	}
	pthread_condattr_destroy(&attr);
	if (pthread_mutex_init(&f->lock, NULL)) {
		pthread_cond_destroy(&f->grown);
		goto fail;
	}
	f->fd = fd;
	f->size = size;
	f->refs = 1;
	return f;
fail:
	free(f);
	return NULL;
}

void feed_ref(struct feed *f)
{
	pthread_mutex_lock(&f->lock);
	assert(f->refs > 0); /* a reference is taken only from one already held */
	f->refs++;
	pthread_mutex_unlock(&f->lock);
}

void feed_unref(struct feed *f)
{
	int left;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	assert(f->refs > 0);
	left = --f->refs;
	assert(left > 0 || !f->parked.head);
	pthread_mutex_unlock(&f->lock);
	if (left)
		return;
	close(f->fd);
	pthread_cond_destroy(&f->grown);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

int feed_fd(const struct feed *f)
{
	return f->fd;
}

/* What a read of up to len bytes at off gets now, or PARK_WAIT; lock held. */
static int64_t answer_locked(const struct feed *f, uint64_t off, size_t len, int partial_ok)
{
	uint64_t want = off + len;

	if (f->filled >= want || (partial_ok && f->filled > off))
		return (int64_t)((f->filled < want ? f->filled : want) - off);
	if (f->ended)
		return f->filled > off ? (int64_t)(f->filled - off) : f->err ? f->err : 0;
	return PARK_WAIT;
}

/* park_take_locked()'s question for a parked read of the feed ctx. */
static int64_t waiter_answer(struct park_entry *e, void *ctx)
{
	const struct feed_waiter *w = (const struct feed_waiter *)e;

	return answer_locked(ctx, w->off, w->len, 1);
}

static void waiter_ready(struct park_entry *e, int64_t answer)
{
	struct feed_waiter *w = (struct feed_waiter *)e;

	w->ready(w, answer);
}

void feed_grow(struct feed *f, uint64_t filled)
{
	struct park_entry *taken = NULL;

	pthread_mutex_lock(&f->lock);
	if (filled > f->filled) {
		f->filled = filled;
		pthread_cond_broadcast(&f->grown);
		taken = park_take_locked(&f->parked, waiter_answer, f);
	}
	pthread_mutex_unlock(&f->lock);
	park_answer(taken);
}

void feed_set_size(struct feed *f, int64_t size)
{
	pthread_mutex_lock(&f->lock);
	f->size = size;
	pthread_mutex_unlock(&f->lock);
}

void feed_finish(struct feed *f, int err)
{
	struct park_entry *taken;

	pthread_mutex_lock(&f->lock);
	f->ended = true;
	f->err = err;
	if (err == 0)
		f->size = (int64_t)f->filled;
	pthread_cond_broadcast(&f->grown);
	taken = park_take_locked(&f->parked, waiter_answer, f);
	pthread_mutex_unlock(&f->lock);
	park_answer(taken);
}

void feed_waiter_init(struct feed_waiter *w, uint64_t off, size_t len,
		      void (*ready)(struct feed_waiter *w, int64_t n))
{
	park_entry_init(&w->entry, waiter_ready);
	w->off = off;
	w->len = len;
	w->ready = ready;
}

int64_t feed_park(struct feed *f, struct feed_waiter *w)
{
	int64_t rc;

	pthread_mutex_lock(&f->lock);
	if ((rc = answer_locked(f, w->off, w->len, 1)) == PARK_WAIT)
		rc = park_add_locked(&f->parked, &w->entry) ? -EINPROGRESS : -EINTR;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

bool feed_unpark(struct feed *f, struct feed_waiter *w)
{
	bool mine;

	pthread_mutex_lock(&f->lock);
	mine = park_cancel_locked(&f->parked, &w->entry);
	pthread_mutex_unlock(&f->lock);
	return mine;
}

void feed_unpark_all(struct feed *f, int64_t answer)
{
	struct park_entry *taken;

	pthread_mutex_lock(&f->lock);
	taken = park_take_locked(&f->parked, NULL, &answer);
	pthread_mutex_unlock(&f->lock);
	park_answer(taken);
}

int64_t feed_wait(struct feed *f, uint64_t off, size_t len, int partial_ok,
		  int (*interrupted)(void *), void *ctx)
{
	struct timespec ts;
	int64_t rc;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		if ((rc = answer_locked(f, off, len, partial_ok)) != PARK_WAIT)
			break;
		if (interrupted && interrupted(ctx)) {
			rc = -EINTR;
			break;
		}
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
		pthread_cond_timedwait(&f->grown, &f->lock, &ts);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void feed_progress(struct feed *f, uint64_t *filled, int64_t *size, int *ended, int *err)
{
	pthread_mutex_lock(&f->lock);
	*filled = f->filled;
	*size = f->size;
	*ended = f->ended;
	*err = f->err;
	pthread_mutex_unlock(&f->lock);
}

int feed_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

void feed_flush_hint(int fd, uint64_t *flushed, uint64_t end)
{
	if (end < *flushed + FEED_FLUSH_BYTES)
		return;
	(void)sync_file_range(fd, (off_t)*flushed, (off_t)(end - *flushed), SYNC_FILE_RANGE_WRITE);
	*flushed = end;
}
