/* fdshare.c - see fdshare.h */
#include "fdshare.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* Whatever the limit says, more handles than this are never needed. */
#define HANDLES_MAX (1L << 20)

struct fdshare {
	int fd; /* constant */
	atomic_int refs;
};

struct fdshare *fdshare_new(int fd)
{
	struct fdshare *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	s->fd = fd;
	atomic_init(&s->refs, 1);
	return s;
}

struct fdshare *fdshare_get(struct fdshare *s)
{
	int was = atomic_fetch_add(&s->refs, 1);

	assert(was > 0); /* a reference is taken only from one already held */
	(void)was;
	return s;
}

void fdshare_put(struct fdshare *s)
{
	int was;

	if (!s)
		return;
	was = atomic_fetch_sub(&s->refs, 1);
	assert(was > 0);
	if (was > 1)
		return;
	close(s->fd);
	free(s);
}

int fdshare_fd(const struct fdshare *s)
{
	return s->fd;
}

static long as_long(rlim_t v)
{
	return v == RLIM_INFINITY || v > (rlim_t)HANDLES_MAX * 2 ? HANDLES_MAX * 2 : (long)v;
}

int fdshare_raise_limit(long *limit)
{
	struct rlimit rl;
	int rc = 0;

	*limit = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			rc = -errno;
			rl.rlim_cur = was;
		}
	}
	*limit = as_long(rl.rlim_cur);
	return rc;
}

long fdshare_handle_bound(void)
{
	struct rlimit rl;
	long bound;

	/* Read each time: an administrator may lower it on the running daemon (prlimit). */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return HANDLES_MAX;
	bound = as_long(rl.rlim_cur) - FDSHARE_RESERVE;
	if (bound < 0)
		return 0;
	return bound < HANDLES_MAX ? bound : HANDLES_MAX;
}
