/* replicate.c - see replicate.h */
#include "replicate.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "store_azure.h"

#define IDLE_NS	      (1000L * 1000 * 1000) /* the worker's wait is timed, as every wait */
#define CANCEL_WAIT_S 30		    /* an upload told to stop ends within a request */

struct record {
	char file[256];		    /* "" when the record is free */
	enum replicate_state state; /* see the diagram in replicate.h */
	struct meta m;		    /* the newest request's version */
	unsigned long seq; /* of the newest request: orders the queue, spots supersession */
	struct store_azure_lease *lease; /* handed over with a request, or NULL */
	char error[256];		 /* the last failure, "" when none */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t ended = PTHREAD_COND_INITIALIZER; /* the worker finished an upload */
/* All guarded by lock. */
static struct replicate_ops ops;
static struct record *records;
static unsigned capacity;
static unsigned long next_seq = 1;
static bool initialised, started, stopping;
static pthread_t worker;
static struct record *current; /* the record being uploaded, or NULL */
/* Polled by the upload in flight without the lock: a newer request or the stop. */
static atomic_bool cancel_current;

static void release_lease(struct store_azure_lease *l)
{
	if (l && ops.release)
		ops.release(ops.ctx, l);
}

int replicate_init(const struct replicate_ops *o, unsigned cap)
{
	struct record *r = calloc(cap ? cap : 1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	pthread_mutex_lock(&lock);
	assert(!initialised && !records);
	ops = *o;
	records = r;
	capacity = cap;
	stopping = started = false;
	current = NULL;
	initialised = true;
	pthread_mutex_unlock(&lock);
	return 0;
}

static struct record *find_locked(const char *file)
{
	for (unsigned i = 0; i < capacity; i++) {
		if (strcmp(records[i].file, file) == 0)
			return &records[i];
	}
	return NULL;
}

/* A free record, else the one that finished longest ago; NULL when all are busy. */
static struct record *claim_locked(void)
{
	struct record *best = NULL;

	for (unsigned i = 0; i < capacity; i++) {
		struct record *r = &records[i];
		if (!r->file[0])
			return r;
		if (r->state != REPL_QUEUED && r->state != REPL_UPLOADING &&
		    (!best || r->seq < best->seq))
			best = r;
	}
	return best;
}

int replicate_enqueue(const char *file, const struct meta *m, struct store_azure_lease *lease)
{
	struct store_azure_lease *old = NULL;
	struct record *r;
	int rc = 0;

	if (strlen(file) >= sizeof(r->file)) {
		release_lease(lease);
		return -ENAMETOOLONG;
	}
	pthread_mutex_lock(&lock);
	if (!initialised || stopping) {
		rc = stopping ? -ESHUTDOWN : -ENOTCONN;
	} else if (!(r = find_locked(file)) && !(r = claim_locked())) {
		rc = -ENOSPC;
	} else {
		if (strcmp(r->file, file) != 0)
			assert(!r->lease); /* a finished request's lease was released */
		else if (r->state == REPL_QUEUED)
			metrics_add(M_UPLOADS_DROPPED, 1); /* newest wins: never uploaded */
		if (r == current) /* its bytes are no longer the newest: cancel it */
			atomic_store(&cancel_current, true);
		snprintf(r->file, sizeof(r->file), "%s", file);
		r->m = *m;
		r->seq = next_seq++;
		r->state = REPL_QUEUED;
		r->error[0] = '\0';
		if (lease) {
			old = r->lease; /* an earlier request's, lost or expired: ours is newer */
			r->lease = lease;
		}
		pthread_cond_signal(&wake);
	}
	pthread_mutex_unlock(&lock);
	release_lease(old);
	if (rc) {
		release_lease(lease);
		if (rc == -ENOSPC || rc == -ESHUTDOWN) {
			metrics_add(M_UPLOADS_DROPPED, 1);
			log_warn("%s: not uploaded: %s", file,
				 rc == -ENOSPC ? "the upload queue is full" : "shutting down");
		}
	}
	return rc;
}

struct store_azure_lease *replicate_take_lease(const char *file)
{
	struct store_azure_lease *l = NULL;
	struct record *r;

	pthread_mutex_lock(&lock);
	if (initialised && (r = find_locked(file))) {
		l = r->lease;
		r->lease = NULL;
	}
	pthread_mutex_unlock(&lock);
	return l;
}

void replicate_cancel(const char *file)
{
	struct store_azure_lease *l = NULL;
	struct timespec ts;
	struct record *r;

	clock_deadline(CLOCK_REALTIME, &ts, CANCEL_WAIT_S * 1000000000L);
	pthread_mutex_lock(&lock);
	if (initialised && (r = find_locked(file)) &&
	    (r->state == REPL_QUEUED || r->state == REPL_UPLOADING)) {
		if (r->state == REPL_QUEUED)
			metrics_add(M_UPLOADS_DROPPED, 1);
		r->state = REPL_DROPPED;
		r->seq = next_seq++; /* the worker sees a superseded request, and leaves it */
		snprintf(r->error, sizeof(r->error), "deleted before its upload ended");
		l = r->lease;
		r->lease = NULL;
		if (r == current)
			atomic_store(&cancel_current, true);
		while (r == current && pthread_cond_timedwait(&ended, &lock, &ts) != ETIMEDOUT)
			;
		if (r == current)
			log_warn("%s: the upload did not stop in %d s", file, CANCEL_WAIT_S);
	}
	pthread_mutex_unlock(&lock);
	release_lease(l);
}

enum replicate_state replicate_status(const char *file, char *err, size_t errlen)
{
	enum replicate_state st = REPL_NONE;
	struct record *r;

	err[0] = '\0';
	pthread_mutex_lock(&lock);
	if (initialised && (r = find_locked(file))) {
		st = r->state;
		snprintf(err, errlen, "%s", r->error);
	}
	pthread_mutex_unlock(&lock);
	return st;
}

const char *replicate_state_name(enum replicate_state st)
{
	static const char *const names[] = {
	    [REPL_NONE] = NULL,	  [REPL_QUEUED] = "queued", [REPL_UPLOADING] = "uploading",
	    [REPL_DONE] = "done", [REPL_FAILED] = "failed", [REPL_DROPPED] = "dropped",
	};

	return names[st];
}

static int is_cancelled(void *ctx)
{
	(void)ctx;
	return atomic_load(&cancel_current);
}

/* The oldest queued request; NULL when none. */
static struct record *next_locked(void)
{
	struct record *best = NULL;

	for (unsigned i = 0; i < capacity; i++) {
		struct record *r = &records[i];
		if (r->file[0] && r->state == REPL_QUEUED && (!best || r->seq < best->seq))
			best = r;
	}
	return best;
}

/* Runs one request (a copy of its record taken under the lock); the outcome in *st and err. */
static int run(const struct record *job, enum replicate_state *st, char *err, size_t errlen)
{
	double t0 = clock_mono();
	int fd = -1;
	int rc = ops.open_copy(ops.ctx, job->file, &job->m, &fd);

	if (rc == -ESTALE || rc == -ENOENT) {
		snprintf(err, errlen, "the copy was %s before its upload",
			 rc == -ENOENT ? "evicted" : "replaced");
		*st = REPL_DROPPED;
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "cannot open the copy to upload: %s", strerror(-rc));
		*st = REPL_FAILED;
		return rc;
	}
	rc = ops.upload(ops.ctx, job->file, fd, &job->m, is_cancelled, NULL, err, errlen);
	close(fd);
	*st = rc == 0 ? REPL_DONE : rc == -EBUSY ? REPL_DROPPED : REPL_FAILED;
	if (rc == 0)
		log_info("%s: uploaded %lld bytes to the container in %.1f s", job->file,
			 (long long)job->m.size, clock_mono() - t0);
	return rc;
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		struct record *r = next_locked(), job;
		struct store_azure_lease *done_lease = NULL;
		enum replicate_state st;
		char err[256] = "";
		int rc;

		if (!r) {
			struct timespec ts;
			clock_deadline(CLOCK_REALTIME, &ts, IDLE_NS);
			pthread_cond_timedwait(&wake, &lock, &ts);
			continue;
		}
		r->state = REPL_UPLOADING;
		current = r;
		atomic_store(&cancel_current, false);
		job = *r;
		pthread_mutex_unlock(&lock);

		rc = run(&job, &st, err, sizeof(err));

		pthread_mutex_lock(&lock);
		current = NULL;
		pthread_cond_broadcast(&ended);
		if (r->seq != job.seq) {
			/* A newer request came meanwhile: it is queued in r, with r's lease. */
			metrics_add(rc ? M_UPLOADS_CANCELLED : M_UPLOADS_OK, 1);
			if (rc)
				log_info("%s: upload cancelled: %s", job.file,
					 r->state == REPL_DROPPED ? "deleted"
								  : "a newer copy is queued");
			continue;
		}
		if (stopping && st != REPL_DONE) {
			st = REPL_FAILED;
			snprintf(err, sizeof(err), "cancelled: shutting down");
			metrics_add(M_UPLOADS_CANCELLED, 1);
			log_info("%s: upload cancelled: shutting down", job.file);
		} else if (st == REPL_DONE) {
			metrics_add(M_UPLOADS_OK, 1);
		} else if (st == REPL_DROPPED) {
			metrics_add(M_UPLOADS_DROPPED, 1);
			log_info("%s: not uploaded: %s", job.file, err);
		} else {
			metrics_add(M_UPLOADS_FAILED, 1);
			log_error("%s: upload to the container failed: %s", job.file, err);
		}
		r->state = st;
		snprintf(r->error, sizeof(r->error), "%s", st == REPL_DONE ? "" : err);
		done_lease = r->lease;
		r->lease = NULL;
		if (done_lease) {
			/* Other hosts wait on it for this version: let them in now. */
			pthread_mutex_unlock(&lock);
			release_lease(done_lease);
			pthread_mutex_lock(&lock);
		}
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int replicate_start(void)
{
	int rc = 0;

	pthread_mutex_lock(&lock);
	if (initialised && !started && !stopping) {
		rc = -pthread_create(&worker, NULL, worker_main, NULL);
		started = rc == 0;
	}
	pthread_mutex_unlock(&lock);
	if (rc)
		log_error("cannot start the upload thread: %s", strerror(-rc));
	return rc;
}

void replicate_stop(void)
{
	struct record *r;
	unsigned n;
	bool join;

	pthread_mutex_lock(&lock);
	if (!initialised || stopping) { /* never initialised, stopped, or stopping */
		pthread_mutex_unlock(&lock);
		return;
	}
	stopping = true;
	atomic_store(&cancel_current, true);
	join = started;
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&lock);
	if (join)
		pthread_join(worker, NULL);
	/* No worker now; enqueue refuses while stopping, so nobody else touches the records. */
	pthread_mutex_lock(&lock);
	r = records;
	n = capacity;
	records = NULL;
	capacity = 0;
	initialised = started = false; /* stopping stays: later requests get -ESHUTDOWN */
	pthread_mutex_unlock(&lock);
	for (unsigned i = 0; i < n; i++) {
		if (r[i].file[0] && r[i].state == REPL_QUEUED) {
			metrics_add(M_UPLOADS_DROPPED, 1);
			log_info("%s: not uploaded: shutting down", r[i].file);
		}
		release_lease(r[i].lease);
	}
	free(r);
}

/* ---- the real ops: the local store and the container ------------------------------ */

static bool same_copy(const struct meta *a, const struct meta *b)
{
	return meta_same_version(a, b) && a->size == b->size;
}

static int store_open_copy(void *ctx, const char *file, const struct meta *m, int *fd)
{
	struct store *st = ctx;
	struct meta before, after;
	struct stat sb;
	int rc;

	*fd = -1;
	if ((rc = st->ops->lookup(st, file, &before)))
		return rc;
	if (!same_copy(&before, m))
		return -ESTALE;
	if ((rc = st->ops->open(st, file, fd)))
		return rc;
	/* A commit between the lookup and the open would show in a second lookup. */
	if (fstat(*fd, &sb) != 0 || sb.st_size != m->size ||
	    st->ops->lookup(st, file, &after) != 0 || !same_copy(&after, m)) {
		close(*fd);
		*fd = -1;
		return -ESTALE;
	}
	return 0;
}

static int azure_upload(void *ctx, const char *file, int fd, const struct meta *m,
			int (*cancelled)(void *), void *cancel_ctx, char *err, size_t errlen)
{
	(void)ctx;
	return store_azure_upload(file, fd, m, cancelled, cancel_ctx, err, errlen);
}

static void azure_release(void *ctx, struct store_azure_lease *l)
{
	(void)ctx;
	store_azure_unlock(l);
}

int replicate_init_azure(struct store *st)
{
	const struct replicate_ops o = {.open_copy = store_open_copy,
					.upload = azure_upload,
					.release = azure_release,
					.ctx = st};

	return replicate_init(&o, 2 * CATALOG_COUNT);
}
