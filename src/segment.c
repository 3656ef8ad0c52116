/* segment.c - see segment.h */
#include "segment.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "feed.h"
#include "http.h"
#include "log.h"
#include "meta.h"
#include "metrics.h"
#include "retry.h"

#define POLL_NS (50 * 1000 * 1000)
/* A sink's own code: the piece has every byte it asked for, stop the transfer. */
#define PIECE_FULL (-EALREADY)
/* Room for the halves split off at the end, beyond the pieces cut at the start. */
#define SPLITS_MAX (4 * CONFIG_SEGMENTS_MAX)

struct piece {
	uint64_t start;	   /* constant */
	uint64_t end;	   /* guarded by set->lock: moves down when its second half is split off */
	uint64_t done;	   /* guarded by set->lock: bytes from start in the temporary */
	uint64_t reserved; /* guarded by set->lock: bytes from start written or being written */
};

struct worker {
	struct segments *set; /* constant */
	unsigned index;	      /* constant: 1.. (0 is the download's own connection) */
	bool held;	      /* constant: waits for segments_release() */
	bool joinable;	      /* constant once segments_start returned */
	pthread_t thread;
	struct http_conn *conn; /* the worker's own, kept alive across its pieces */
	struct piece *piece;	/* the worker's own: the piece it fetches */
	double retry_after;	/* the worker's own: what the origin last asked to wait */
	char error[256];	/* the worker's own: the last failure */
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
	pthread_cond_t moved; /* a piece moved on, a worker failed, or the set was released */
	unsigned count;	      /* constant: connections at a time, and the workers there are */
	struct worker workers[CONFIG_SEGMENTS_MAX];
	uint64_t from, piece_bytes; /* constant */
	size_t ncut;		    /* constant: pieces cut in file order; pieces[0] is not ours */
	size_t cap;		    /* constant: room in pieces */
	struct piece *pieces;	    /* never moves; see struct piece for the fields' locks */
	size_t npieces;		    /* guarded by lock: ncut plus the halves split off */
	size_t next;		    /* guarded by lock: the first cut piece no worker took */
	bool released;		    /* guarded by lock: piece 0's connection is done */
	int err;		    /* guarded by lock: the first failure, -ESTALE over any other */
	char error[256];	    /* guarded by lock: the first failure, in words */
};

static int worker_cancelled(void *ctx)
{
	struct worker *w = ctx;

	return atomic_load(&w->set->stop) || w->set->cancelled(w->set->cancel_ctx);
}

static bool same_version(const struct segments *set, const struct http_response *rs)
{
	return meta_validators_match(set->etag, set->last_modified, rs->etag, rs->last_modified);
}

static uint64_t piece_next_byte(struct segments *set, const struct piece *p)
{
	uint64_t at;

	pthread_mutex_lock(&set->lock);
	at = p->start + p->done;
	pthread_mutex_unlock(&set->lock);
	return at;
}

static int on_response(void *ctx, const struct http_response *rs)
{
	struct worker *w = ctx;
	uint64_t at = piece_next_byte(w->set, w->piece);

	/* If-Range answers 200 when the validator no longer matches: a new version. */
	if (rs->status != 206 || !same_version(w->set, rs)) {
		snprintf(w->error, sizeof(w->error), "the origin has a new version");
		return -ESTALE;
	}
	if ((uint64_t)rs->range_start != at) {
		snprintf(w->error, sizeof(w->error), "the origin sent bytes from %lld, not %llu",
			 (long long)rs->range_start, (unsigned long long)at);
		return -EPROTO;
	}
	return 0;
}

/* How much of len fits before the piece's end, reserved so that no split goes below it. */
static size_t reserve(struct segments *set, struct piece *p, size_t len, uint64_t *at)
{
	uint64_t room;

	pthread_mutex_lock(&set->lock);
	*at = p->start + p->done;
	room = p->end - *at;
	if (len > room)
		len = (size_t)room;
	p->reserved = p->done + len;
	pthread_mutex_unlock(&set->lock);
	return len;
}

static int on_body(void *ctx, const void *buf, size_t len)
{
	struct worker *w = ctx;
	struct segments *set = w->set;
	struct piece *p = w->piece;
	uint64_t at;
	bool full;
	int rc;

	len = reserve(set, p, len, &at);
	if (len > 0 && (rc = feed_pwrite_all(set->fd, buf, len, at))) {
		snprintf(w->error, sizeof(w->error), "cannot write the temporary: %s",
			 strerror(-rc));
		return rc;
	}
	metrics_add(M_ORIGIN_BYTES, len);
	pthread_mutex_lock(&set->lock);
	p->done += len;
	full = p->start + p->done >= p->end;
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
	return full ? PIECE_FULL : 0;
}

/* One request for what the piece still lacks. */
static int fetch_range(struct worker *w)
{
	struct segments *set = w->set;
	struct piece *p = w->piece;
	struct http_sink sink = {on_response, on_body, w};
	struct http_request rq = {
	    .url = set->url,
	    .if_range = set->etag[0] ? set->etag : set->last_modified,
	    .cafile = set->cfg->cafile,
	    .stall_seconds = set->cfg->timeout,
	    .connect_seconds = set->cfg->timeout < 20 ? set->cfg->timeout : 20,
	    .cancelled = worker_cancelled,
	    .cancel_ctx = w,
	    .conn = w->conn,
	};
	struct http_response rs;
	uint64_t done, want;
	char err[256];
	int rc;

	pthread_mutex_lock(&set->lock);
	rq.range_from = p->start + p->done;
	rq.range_to = p->end - 1;
	pthread_mutex_unlock(&set->lock);
	if (rq.range_from > rq.range_to)
		return 0; /* a split left it nothing more to fetch */
	w->error[0] = '\0';
	metrics_add(M_ORIGIN_REQUESTS, 1);
	rc = http_get(&rq, &rs, &sink, err, sizeof(err));
	w->retry_after = rs.retry_after;
	pthread_mutex_lock(&set->lock);
	done = p->done;
	want = p->end - p->start;
	pthread_mutex_unlock(&set->lock);
	if (rc == PIECE_FULL || done == want)
		return 0;
	if (rc == 0 && rs.status == 304) {
		snprintf(w->error, sizeof(w->error), "unexpected 304 Not Modified");
		return -EPROTO;
	}
	if (rc == 0) {
		snprintf(w->error, sizeof(w->error), "short body: %llu of %llu bytes",
			 (unsigned long long)done, (unsigned long long)want);
		return -EAGAIN;
	}
	if (!w->error[0])
		snprintf(w->error, sizeof(w->error), "%s", err);
	return rc;
}

/* The download's retry policy, for one piece: resumes from where it stopped. */
static int fetch_piece(struct worker *w)
{
	struct retry_policy rp = retry_policy_of(w->set->cfg);

	for (int attempt = 1;; attempt++) {
		int rc = fetch_range(w);
		if (rc == 0 || rc == -ECANCELED || rc == -ESTALE)
			return rc;
		if (rc != -EAGAIN || !retry_again(&rp, attempt))
			return rc;
		double wait = retry_backoff(&rp, attempt, w->retry_after,
					    w->index * 7919u + (unsigned)w->piece->start);
		log_warn("%s: connection %u, bytes from %llu: %s; retrying in %.2f s (attempt %d "
			 "of %d)",
			 w->set->file, w->index,
			 (unsigned long long)piece_next_byte(w->set, w->piece), w->error, wait,
			 attempt + 1, rp.attempts);
		metrics_add(M_RETRIES, 1);
		if (retry_sleep(wait, worker_cancelled, w))
			return -ECANCELED;
	}
}

/* A split is worth its request when the piece still has half a piece to come, and at least this. */
#define SPLIT_MIN_BYTES (512u * 1024)

static uint64_t split_min(const struct segments *set)
{
	uint64_t half = set->piece_bytes / 2;

	return half > SPLIT_MIN_BYTES ? half : SPLIT_MIN_BYTES;
}

/* The second half of the piece with the most bytes still to come, or NULL when none is worth it. */
static struct piece *split_largest_locked(struct segments *set)
{
	struct piece *big = NULL, *half;
	uint64_t most = 0;

	for (size_t i = 1; i < set->npieces; i++) {
		struct piece *p = &set->pieces[i];
		uint64_t left = p->end - (p->start + p->reserved);
		if (left > most) {
			most = left;
			big = p;
		}
	}
	if (!big || most < split_min(set) || set->npieces == set->cap)
		return NULL;
	half = &set->pieces[set->npieces++];
	half->start = big->end - most / 2;
	log_debug("%s: bytes %llu-%llu split off a piece still arriving", set->file,
		  (unsigned long long)half->start, (unsigned long long)big->end - 1);
	half->end = big->end;
	half->done = half->reserved = 0;
	big->end = half->start;
	return half;
}

/* The next piece in file order; at the end, half of one still arriving. NULL: nothing left. */
static struct piece *claim(struct segments *set)
{
	struct piece *p = NULL;

	pthread_mutex_lock(&set->lock);
	if (!set->err && !atomic_load(&set->stop)) {
		if (set->next < set->ncut)
			p = &set->pieces[set->next++];
		else
			p = split_largest_locked(set);
	}
	pthread_mutex_unlock(&set->lock);
	return p;
}

static int wait_for_release(struct worker *w)
{
	struct segments *set = w->set;
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&set->lock);
	while (!set->released && !(rc = worker_cancelled(w) ? -ECANCELED : 0)) {
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
		pthread_cond_timedwait(&set->moved, &set->lock, &ts);
	}
	pthread_mutex_unlock(&set->lock);
	return rc;
}

static void fail_set(struct worker *w, int rc)
{
	struct segments *set = w->set;

	if (rc != -ECANCELED && rc != -ESTALE)
		log_warn("%s: connection %u gave up: %s", set->file, w->index, w->error);
	pthread_mutex_lock(&set->lock);
	if (!set->err || rc == -ESTALE)
		set->err = rc;
	if (!set->error[0])
		snprintf(set->error, sizeof(set->error), "connection %u: %.200s", w->index,
			 w->error[0] ? w->error : strerror(-rc));
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int rc = w->held ? wait_for_release(w) : 0;

	while (!rc && (w->piece = claim(w->set)))
		rc = fetch_piece(w);
	if (rc)
		fail_set(w, rc);
	log_debug("%s: connection %u done", w->set->file, w->index);
	return NULL;
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

/*
 * About an eighth of each connection's share, within [SEGMENT_MIN_BYTES,
 * SEGMENT_MAX_PIECE], but never more than SEGMENT_PIECES_MAX pieces.
 */
static uint64_t piece_bytes_for(uint64_t from, uint64_t total, unsigned count)
{
	const uint64_t align = 64 * 1024;
	uint64_t left = total > from ? total - from : 0;
	uint64_t piece = count ? left / count / 8 : left;
	uint64_t fewest = left / SEGMENT_PIECES_MAX + 1;

	if (piece < SEGMENT_MIN_BYTES)
		piece = SEGMENT_MIN_BYTES;
	if (piece > SEGMENT_MAX_PIECE)
		piece = SEGMENT_MAX_PIECE;
	if (piece < fewest)
		piece = fewest;
	return (piece + align - 1) / align * align;
}

/* Pieces of piece_bytes from `from`, the last one taking what is left. */
static int cut(struct segments *set, uint64_t total)
{
	uint64_t left = total - set->from;

	set->ncut = (size_t)((left + set->piece_bytes - 1) / set->piece_bytes);
	set->cap = set->ncut + SPLITS_MAX;
	if (!(set->pieces = calloc(set->cap, sizeof(*set->pieces))))
		return -ENOMEM;
	for (size_t i = 0; i < set->ncut; i++) {
		struct piece *p = &set->pieces[i];
		p->start = set->from + set->piece_bytes * i;
		p->end = i + 1 == set->ncut ? total : p->start + set->piece_bytes;
	}
	set->npieces = set->ncut;
	set->next = 1;
	return 0;
}

static unsigned fit_count(const struct segments_spec *sp)
{
	uint64_t most = (sp->total - sp->from) / SEGMENT_MIN_BYTES;
	unsigned n = sp->count < CONFIG_SEGMENTS_MAX ? sp->count : CONFIG_SEGMENTS_MAX;

	return most < n ? (unsigned)most : n;
}

static void free_set(struct segments *set)
{
	for (unsigned i = 0; i < set->count; i++)
		http_conn_free(set->workers[i].conn);
	pthread_cond_destroy(&set->moved);
	pthread_mutex_destroy(&set->lock);
	free(set->pieces);
	free(set);
}

static struct segments *new_set(const struct segments_spec *sp, unsigned count)
{
	struct segments *set = calloc(1, sizeof(*set));

	if (!set)
		return NULL;
	if (init_sync(set)) {
		free(set);
		return NULL;
	}
	snprintf(set->file, sizeof(set->file), "%s", sp->file);
	snprintf(set->url, sizeof(set->url), "%s", sp->url);
	snprintf(set->etag, sizeof(set->etag), "%s", sp->etag);
	snprintf(set->last_modified, sizeof(set->last_modified), "%s", sp->last_modified);
	set->fd = sp->fd;
	set->cfg = sp->cfg;
	set->cancelled = sp->cancelled;
	set->cancel_ctx = sp->cancel_ctx;
	set->count = count;
	set->from = sp->from;
	set->piece_bytes = piece_bytes_for(sp->from, sp->total, count);
	if (cut(set, sp->total)) {
		free_set(set);
		return NULL;
	}
	/* count - 1 work beside piece 0's connection, and one more once it is done. */
	for (unsigned i = 0; i < set->count; i++) {
		struct worker *w = &set->workers[i];
		w->set = set;
		w->index = i + 1;
		w->held = i + 1 == set->count;
		if (!(w->conn = http_conn_new())) {
			free_set(set);
			return NULL;
		}
	}
	return set;
}

int segments_start(const struct segments_spec *sp, struct segments **out)
{
	struct segments *set;
	unsigned n = sp->total > sp->from ? fit_count(sp) : 0;
	int rc;

	*out = NULL;
	if (n < 2)
		return -ERANGE;
	if (!(set = new_set(sp, n)))
		return -ENOMEM;
	for (unsigned i = 0; i < set->count; i++) {
		struct worker *w = &set->workers[i];
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w))) {
			segments_stop(set);
			return -rc;
		}
		w->joinable = true;
	}
	*out = set;
	return 0;
}

uint64_t segments_first_end(const struct segments *s)
{
	return s->pieces[0].end;
}

unsigned segments_count(const struct segments *s)
{
	return s->count;
}

uint64_t segments_piece_bytes(const struct segments *s)
{
	return s->piece_bytes;
}

void segments_release(struct segments *set)
{
	pthread_mutex_lock(&set->lock);
	set->released = true;
	pthread_cond_broadcast(&set->moved);
	pthread_mutex_unlock(&set->lock);
}

/* The piece holding off now (a split moves the second half of one into another). */
static const struct piece *piece_at_locked(const struct segments *set, uint64_t off)
{
	size_t i = (size_t)((off - set->from) / set->piece_bytes);

	if (i < set->ncut && off >= set->pieces[i].start && off < set->pieces[i].end)
		return &set->pieces[i];
	for (i = set->ncut; i < set->npieces; i++) {
		if (off >= set->pieces[i].start && off < set->pieces[i].end)
			return &set->pieces[i];
	}
	return NULL;
}

int64_t segments_wait(struct segments *set, uint64_t off)
{
	const struct piece *p;
	struct timespec ts;
	int64_t rc = 0;

	if (off < segments_first_end(set))
		return -ERANGE;
	pthread_mutex_lock(&set->lock);
	while (!rc) {
		if (!(p = piece_at_locked(set, off)))
			rc = -ERANGE;
		else if (p->start + p->done > off)
			rc = (int64_t)(p->start + p->done - off);
		else if (set->err)
			rc = set->err;
		else if (atomic_load(&set->stop) || set->cancelled(set->cancel_ctx))
			rc = -ECANCELED;
		else {
			clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
			pthread_cond_timedwait(&set->moved, &set->lock, &ts);
		}
	}
	pthread_mutex_unlock(&set->lock);
	return rc;
}

int segments_check(struct segments *set)
{
	int rc;

	pthread_mutex_lock(&set->lock);
	rc = set->err;
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
	for (unsigned i = 0; i < set->count; i++) {
		if (set->workers[i].joinable)
			pthread_join(set->workers[i].thread, NULL);
	}
	free_set(set);
}
