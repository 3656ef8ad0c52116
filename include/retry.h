/*
 * retry.h - the one retry policy: how many attempts a transfer makes, how
 * long it waits between two, and the wait itself, which ends at once when
 * the caller's cancel check fires. Downloads (download.c), segments
 * (segment.c) and the container tier's reads, block uploads and lease waits
 * (tier.c, store_azure.c) use it. Retry-After comes from the origin
 * (http.c) and from the Blob service (azure_request.c) alike.
 *
 * The wait after failed attempt n (n >= 1) is base_seconds doubled each
 * attempt, capped at RETRY_CAP_FACTOR times base_seconds, with +-25% jitter
 * (a salt decorrelates threads that failed together), and at least what the
 * server asked for with Retry-After (also capped).
 */
#ifndef IMDBFS_RETRY_H
#define IMDBFS_RETRY_H

#include <stdbool.h>

#include "config.h"

#define RETRY_CAP_FACTOR 60.0 /* the longest wait, as a multiple of base_seconds */

struct retry_policy {
	int attempts;	     /* in all, the first one included; at least 1 */
	double base_seconds; /* the first wait; >= 0 */
};

/* The policy of cfg's retries= and retry_delay=. */
struct retry_policy retry_policy_of(const struct config *cfg);

/* Whether another attempt may follow failed attempt n (1-based). */
bool retry_again(const struct retry_policy *p, int n);

/* The wait after failed attempt n (see above); finite, >= 0. */
double retry_backoff(const struct retry_policy *p, int n, double retry_after, unsigned salt);

/*
 * Sleeps seconds unless cancelled(ctx) fires first (polled every 50 ms;
 * NULL: never). 0, or -ECANCELED as soon as it fires.
 */
int retry_sleep(double seconds, int (*cancelled)(void *ctx), void *ctx);

#endif
