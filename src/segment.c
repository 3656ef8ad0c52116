/* segment.c - see segment.h */
#include "segment.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define POLL_NS (50 * 1000 * 1000)
/* A sink's own code: the segment has every byte it asked for, stop the transfer. */
#define SEGMENT_FULL (-EALREADY)

struct segment {
	struct segments *set; /* constant */
	unsigned index;	      /* constant */
	uint64_t start, end;  /* constant: the bytes [start, end) of the file */
	uint64_t done;	      /* guarded by set->lock: bytes from start in the temporary */
	bool ended;	      /* guarded by set->lock: the thread is done with it */
	int err;	      /* guarded by set->lock: once ended, 0 (complete) or why it gave up */
	bool joinable;	      /* constant once segments_start returned */
	pthread_t thread;
	double retry_after; /* the thread's own: what the origin last asked to wait */
	char error[256];    /* the thread's own: the last failure */
};

struct segments {
	char file[128];
	char url[1024];
	char etag[256];
	char last_modified[64];
	int fd;
	const struct config *cfg;
	int (*cancelled)(void *);
	void *cancel_ctx;
	_Atomic bool stop;
	pthread_mutex_t lock;
	pthread_cond_t moved; /* a segment moved on or ended */
	unsigned count;	      /* constant */
	struct segment seg[CONFIG_SEGMENTS_MAX];
	char error[256]; /* guarded by lock: the first failure */
};

static int seg_cancelled(void *ctx)
{
	struct segment *s = ctx;

	return atomic_load(&s->set->stop) || s->set->cancelled(s->set->cancel_ctx);
}

static bool same_version(const struct segments *set, const struct http_response *rs)
{
	if (set->etag[0] && rs->etag[0])
		return strcmp(set->etag, rs->etag) == 0;
	return set->last_modified[0] && strcmp(set->last_modified, rs->last_modified) == 0;
}

static int on_response(void *ctx, const struct http_response *rs)
{
	struct segment *s = ctx;

	/* If-Range answers 200 when the validator no longer matches: a new version. */
	if (rs->status != 206 || !same_version(s->set, rs)) {
		snprintf(s->error, sizeof(s->error), "the origin has a new version");
		return -ESTALE;
	}
	if ((uint64_t)rs->range_start != s->start + s->done) {
		snprintf(s->error, sizeof(s->error), "the origin sent bytes from %lld, not %llu",
			 (long long)rs->range_start, (unsigned long long)(s->start + s->done));
		return -EPROTO;
	}
	return 0;
}

static int pwrite_all(int fd, const char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int on_body(void *ctx, const void *buf, size_t len)
{
	struct segment *s = ctx;
	struct segments *set = s->set;
	uint64_t at = s->start + s->done; /* only this thread moves done */
	uint64_t room = s->end - at;
	int rc;

	if (len > room)
		len = (size_t)room; /* never past the segment, whatever the origin sends */
	rc = pwrite_all(set->fd, buf, len, at);
	if (rc) {
		snprintf(s->error, sizeof(s->error), "cannot write the temporary: %s",
			 strerror(-rc));
		return rc;
	}
	metrics_add(M_ORIGIN_BYTES, len);
	pthread_mutex_lock(&set->lock);
	s->done += len;
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
	return s->start + s->done == s->end ? SEGMENT_FULL : 0;
}

/* One request for what the segment still lacks. */
static int fetch_range(struct segment *s)
{
	struct segments *set = s->set;
	struct http_sink sink = {on_response, on_body, s};
	struct http_request rq = {
	    .url = set->url,
	    .range_from = s->start + s->done,
	    .range_to = s->end - 1,
	    .if_range = set->etag[0] ? set->etag : set->last_modified,
	    .cafile = set->cfg->cafile,
	    .stall_seconds = set->cfg->timeout,
	    .connect_seconds = set->cfg->timeout < 20 ? set->cfg->timeout : 20,
	    .cancelled = seg_cancelled,
	    .cancel_ctx = s,
	};
	struct http_response rs;
	char err[256];
	int rc;

	s->error[0] = '\0';
	metrics_add(M_ORIGIN_REQUESTS, 1);
	rc = http_get(&rq, &rs, &sink, err, sizeof(err));
	s->retry_after = rs.retry_after;
	if (rc == SEGMENT_FULL || (rc == 0 && s->start + s->done == s->end))
		return 0;
	if (rc == 0 && rs.status == 304) {
		snprintf(s->error, sizeof(s->error), "unexpected 304 Not Modified");
		return -EPROTO;
	}
	if (rc == 0) {
		snprintf(s->error, sizeof(s->error), "short body: %llu of %llu bytes",
			 (unsigned long long)s->done, (unsigned long long)(s->end - s->start));
		return -EAGAIN;
	}
	if (!s->error[0])
		snprintf(s->error, sizeof(s->error), "%s", err);
	return rc;
}

/* Sleeps for seconds unless the set is stopped first; -ECANCELED then. */
static int wait_unless_stopped(struct segment *s, double seconds)
{
	struct segments *set = s->set;
	double until = clock_mono() + seconds;
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&set->lock);
	while (clock_mono() < until) {
		if (seg_cancelled(s)) {
			rc = -ECANCELED;
			break;
		}
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
		pthread_cond_timedwait(&set->moved, &set->lock, &ts);
	}
	pthread_mutex_unlock(&set->lock);
	return rc;
}

/* The download's retry policy, for one segment: resumes from where it stopped. */
static int fetch_segment(struct segment *s)
{
	int attempts = (int)s->set->cfg->retries + 1;

	for (int attempt = 1;; attempt++) {
		int rc = fetch_range(s);
		if (rc == 0 || rc == -ECANCELED || rc == -ESTALE)
			return rc;
		if (rc != -EAGAIN || attempt >= attempts)
			return rc;
		double wait = config_backoff(s->set->cfg, attempt, s->retry_after,
					     s->index * 7919u + (unsigned)s->start);
		log_warn("%s: segment %u: %s; retrying in %.2f s (attempt %d of %d)", s->set->file,
			 s->index, s->error, wait, attempt + 1, attempts);
		metrics_add(M_RETRIES, 1);
		if (wait_unless_stopped(s, wait))
			return -ECANCELED;
	}
}

static void *segment_main(void *arg)
{
	struct segment *s = arg;
	struct segments *set = s->set;
	int rc = fetch_segment(s);

	if (rc && rc != -ECANCELED && rc != -ESTALE)
		log_warn("%s: segment %u gave up: %s", set->file, s->index, s->error);
	else if (!rc)
		log_debug("%s: segment %u complete", set->file, s->index);
	pthread_mutex_lock(&set->lock);
	s->ended = true;
	s->err = rc;
	if (rc && !set->error[0])
		snprintf(set->error, sizeof(set->error), "segment %u: %.200s", s->index, s->error);
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
	return NULL;
}

/* A new version beats every other failure: it means starting over, not failing. */
static int failure_locked(const struct segments *set)
{
	int rc = 0;

	for (unsigned i = 1; i < set->count; i++) {
		const struct segment *s = &set->seg[i];
		if (s->ended && s->err == -ESTALE)
			return -ESTALE;
		if (s->ended && s->err && !rc)
			rc = s->err;
	}
	return rc;
}

static int init_sync(struct segments *set)
{
	pthread_condattr_t attr;
	int rc;

	if ((rc = pthread_mutex_init(&set->lock, NULL)))
		return -rc;
	if ((rc = pthread_condattr_init(&attr)) == 0) {
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		rc = pthread_cond_init(&set->moved, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (rc)
		pthread_mutex_destroy(&set->lock);
	return -rc;
}

/* Equal shares of [from, total), the last one taking the remainder. */
static void split(struct segments *set, uint64_t from, uint64_t total)
{
	uint64_t share = (total - from) / set->count;

	for (unsigned i = 0; i < set->count; i++) {
		struct segment *s = &set->seg[i];
		s->set = set;
		s->index = i;
		s->start = from + share * i;
		s->end = i + 1 == set->count ? total : s->start + share;
	}
}

static unsigned fit_count(const struct segments_spec *sp)
{
	uint64_t most = (sp->total - sp->from) / SEGMENT_MIN_BYTES;
	unsigned n = sp->count < CONFIG_SEGMENTS_MAX ? sp->count : CONFIG_SEGMENTS_MAX;

	return most < n ? (unsigned)most : n;
}

int segments_start(const struct segments_spec *sp, struct segments **out)
{
	struct segments *set;
	unsigned n = sp->total > sp->from ? fit_count(sp) : 0;
	int rc;

	*out = NULL;
	if (n < 2)
		return -ERANGE;
	if (!(set = calloc(1, sizeof(*set))))
		return -ENOMEM;
	if ((rc = init_sync(set))) {
		free(set);
		return rc;
	}
	snprintf(set->file, sizeof(set->file), "%s", sp->file);
	snprintf(set->url, sizeof(set->url), "%s", sp->url);
	snprintf(set->etag, sizeof(set->etag), "%s", sp->etag);
	snprintf(set->last_modified, sizeof(set->last_modified), "%s", sp->last_modified);
	set->fd = sp->fd;
	set->cfg = sp->cfg;
	set->cancelled = sp->cancelled;
	set->cancel_ctx = sp->cancel_ctx;
	set->count = n;
	split(set, sp->from, sp->total);
	for (unsigned i = 1; i < n; i++) {
		if ((rc = pthread_create(&set->seg[i].thread, NULL, segment_main, &set->seg[i]))) {
			segments_stop(set);
			return -rc;
		}
		set->seg[i].joinable = true;
	}
	*out = set;
	return 0;
}

uint64_t segments_first_end(const struct segments *s)
{
	return s->seg[0].end;
}

unsigned segments_count(const struct segments *s)
{
	return s->count;
}

static struct segment *segment_at(struct segments *set, uint64_t off)
{
	for (unsigned i = 1; i < set->count; i++) {
		if (off >= set->seg[i].start && off < set->seg[i].end)
			return &set->seg[i];
	}
	return NULL;
}

int64_t segments_wait(struct segments *set, uint64_t off)
{
	struct segment *s = segment_at(set, off);
	struct timespec ts;
	int64_t rc = 0;

	if (!s)
		return -ERANGE;
	pthread_mutex_lock(&set->lock);
	while (!rc && s->start + s->done <= off) {
		if ((rc = failure_locked(set)))
			break;
		if (atomic_load(&set->stop) || set->cancelled(set->cancel_ctx)) {
			rc = -ECANCELED;
			break;
		}
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
		pthread_cond_timedwait(&set->moved, &set->lock, &ts);
	}
	if (!rc)
		rc = (int64_t)(s->start + s->done - off);
	pthread_mutex_unlock(&set->lock);
	return rc;
}

int segments_check(struct segments *set)
{
	int rc;

	pthread_mutex_lock(&set->lock);
	rc = failure_locked(set);
	pthread_mutex_unlock(&set->lock);
	return rc;
}

void segments_error(struct segments *set, char *buf, size_t len)
{
	pthread_mutex_lock(&set->lock);
	snprintf(buf, len, "%s", set->error);
	pthread_mutex_unlock(&set->lock);
}

void segments_stop(struct segments *set)
{
	if (!set)
		return;
	atomic_store(&set->stop, true);
	pthread_mutex_lock(&set->lock);
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
	for (unsigned i = 1; i < set->count; i++) {
		if (set->seg[i].joinable)
			pthread_join(set->seg[i].thread, NULL);
	}
	pthread_cond_destroy(&set->moved);
	pthread_mutex_destroy(&set->lock);
	free(set);
}
