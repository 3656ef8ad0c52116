/* feed.c - see feed.h */
#include "feed.h"

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
	pthread_cond_t grown; /* signalled on every grow and at the end */
	int fd;		      /* constant after feed_new */
	int refs;	      /* guarded by lock */
	uint64_t filled;      /* guarded by lock */
	int64_t size;	      /* guarded by lock */
	bool ended;	      /* guarded by lock */
	int err;	      /* guarded by lock; valid once ended */
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
	f->refs++;
	pthread_mutex_unlock(&f->lock);
}

void feed_unref(struct feed *f)
{
	int left;

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	left = --f->refs;
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

void feed_grow(struct feed *f, uint64_t filled)
{
	pthread_mutex_lock(&f->lock);
	if (filled > f->filled) {
		f->filled = filled;
		pthread_cond_broadcast(&f->grown);
	}
	pthread_mutex_unlock(&f->lock);
}

void feed_set_size(struct feed *f, int64_t size)
{
	pthread_mutex_lock(&f->lock);
	f->size = size;
	pthread_mutex_unlock(&f->lock);
}

void feed_finish(struct feed *f, int err)
{
	pthread_mutex_lock(&f->lock);
	f->ended = true;
	f->err = err;
	if (err == 0)
		f->size = (int64_t)f->filled;
	pthread_cond_broadcast(&f->grown);
	pthread_mutex_unlock(&f->lock);
}

int64_t feed_wait(struct feed *f, uint64_t off, size_t len, int partial_ok,
		  int (*interrupted)(void *), void *ctx)
{
	uint64_t want = off + len;
	struct timespec ts;
	int64_t rc;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		if (f->filled >= want || (partial_ok && f->filled > off)) {
			rc = (int64_t)((f->filled < want ? f->filled : want) - off);
			break;
		}
		if (f->ended) {
			if (f->filled > off)
				rc = (int64_t)(f->filled - off);
			else
				rc = f->err ? f->err : 0;
			break;
		}
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
