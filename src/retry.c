/* retry.c - see retry.h */
#include "retry.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

#define POLL_S 0.05

struct retry_policy retry_policy_of(const struct config *cfg)
{
	return (struct retry_policy){.attempts = (int)cfg->retries + 1,
				     .base_seconds = cfg->retry_delay};
}

bool retry_again(const struct retry_policy *p, int n)
{
	return n < p->attempts;
}

double retry_backoff(const struct retry_policy *p, int n, double retry_after, unsigned salt)
{
	double base = p->base_seconds * (double)(1u << (n < 16 ? (n > 1 ? n - 1 : 0) : 15));
	double cap = p->base_seconds * RETRY_CAP_FACTOR;
	/* Whole microseconds first: the monotonic clock outgrows an unsigned after 71 minutes. */
	unsigned seed = (unsigned)(uint64_t)(clock_mono() * 1e6) ^ salt;
	double wait;

	if (base > cap)
		base = cap;
	wait = base * (0.75 + 0.5 * (double)(rand_r(&seed) % 1000) / 1000.0);
	if (retry_after > wait)
		wait = retry_after < cap ? retry_after : cap;
	return wait;
}

int retry_sleep(double seconds, int (*cancelled)(void *ctx), void *ctx)
{
	double until = clock_mono() + seconds, left;

	while ((left = until - clock_mono()) > 0) {
		double step = left < POLL_S ? left : POLL_S;
		struct timespec ts = {0, (long)(step * 1e9)};

		if (cancelled && cancelled(ctx))
			return -ECANCELED;
		nanosleep(&ts, NULL);
	}
	return cancelled && cancelled(ctx) ? -ECANCELED : 0;
}
