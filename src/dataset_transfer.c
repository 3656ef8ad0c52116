/*
 * dataset_transfer.c - the transfers' lifecycle (threads, references, the
 * feed they publish, their end) and what the engines ask of the state
 * machine (dataset_engine.h); see dataset.h and dataset_int.h.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dataset.h"
#include "dataset_engine.h"
#include "dataset_int.h"
#include "download.h"
#include "extract.h"
#include "fdshare.h"
#include "feed.h"
#include "log.h"

#define SHUTDOWN_WAIT_S 10

/* Transfer threads, counted so that shutdown can wait for them. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t threads_gone = PTHREAD_COND_INITIALIZER;
static int threads_live;   /* guarded by threads_lock */
static bool shutting_down; /* guarded by threads_lock */

/* ---- transfer lifecycle --------------------------------------------------- */

static void thread_done(void)
{
	pthread_mutex_lock(&threads_lock);
	threads_live--;
	pthread_cond_broadcast(&threads_gone);
	pthread_mutex_unlock(&threads_lock);
}

static int spawn(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	pthread_mutex_lock(&threads_lock);
	if (shutting_down) {
		pthread_mutex_unlock(&threads_lock);
		return -ESHUTDOWN;
	}
	threads_live++;
	pthread_mutex_unlock(&threads_lock);
	rc = pthread_attr_init(&attr);
	if (!rc) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&th, &attr, fn, arg);
		pthread_attr_destroy(&attr);
	}
	if (rc) {
		thread_done();
		return -rc;
	}
	return 0;
}

/* Drops one reference; called with t->ds->lock held. */
void dataset_put_locked(struct transfer *t)
{
	assert(dataset_held(t->ds));
	assert(t->refs > 0);
	if (--t->refs > 0)
		return;
	if (t->src)
		dataset_put_locked(t->src);
	feed_unref(t->feed);
	free(t);
}

static void put(struct transfer *t)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	dataset_put_locked(t);
	pthread_mutex_unlock(&d->lock);
}

static void *download_thread(void *arg);
static void *extract_thread(void *arg);

/*
 * Starts a transfer of kind for d; called with d->lock held. The dataset and
 * the thread each hold a reference. NULL when no thread could be started.
 */
struct transfer *dataset_start_locked(struct dataset *d, enum file_kind kind, bool force)
{
	struct transfer *t = calloc(1, sizeof(*t));
	struct transfer **slot = kind == KIND_GZ ? &d->download : &d->extract;

	assert(dataset_held(d));
	if (!t)
		return NULL;
	t->ds = d;
	t->index = d->index;
	t->kind = kind;
	t->force = force;
	t->refs = 2;
	t->phase = kind == KIND_GZ ? DS_QUEUED : DS_EXTRACTING;
	if (kind == KIND_TSV && !d->cached) {
		t->src = d->download ? d->download : dataset_start_locked(d, KIND_GZ, false);
		if (!t->src) {
			free(t);
			return NULL;
		}
		t->src->refs++;
	}
	if (spawn(kind == KIND_GZ ? download_thread : extract_thread, t)) {
		if (t->src)
			dataset_put_locked(t->src);
		free(t);
		return NULL;
	}
	*slot = t;
	dataset_set_state_locked(d);
	return t;
}

void dataset_publish_feed(struct transfer *t, struct feed *f, enum ds_state phase)
{
	struct dataset *d = t->ds;
	struct park_entry *taken;
	struct feed *old;

	pthread_mutex_lock(&d->lock);
	old = t->feed;
	t->feed = f;
	if (f)
		dataset_attach_feed_locked(d, t->kind, f);
	t->phase = phase;
	t->body_started = clock_mono();
	dataset_set_state_locked(d);
	pthread_cond_broadcast(&d->changed);
	taken = dataset_take_parked_locked(d, 0);
	pthread_mutex_unlock(&d->lock);
	park_answer(taken);
	feed_unref(old);
}

void dataset_set_phase(struct transfer *t, enum ds_state phase)
{
	pthread_mutex_lock(&t->ds->lock);
	t->phase = phase;
	dataset_set_state_locked(t->ds);
	pthread_mutex_unlock(&t->ds->lock);
}

/* Records the outcome, wakes every waiter and drops the thread's reference. */
static void finish_transfer(struct transfer *t, int err, bool changed, const char *error)
{
	struct dataset *d = t->ds;
	struct transfer **slot = t->kind == KIND_GZ ? &d->download : &d->extract;
	struct feed *feed = t->feed;
	struct park_entry *taken;

	pthread_mutex_lock(&d->lock);
	t->done = true;
	t->res.err = err;
	t->res.changed = changed;
	snprintf(t->res.error, sizeof(t->res.error), "%s", err ? error : "");
	if (*slot == t) {
		*slot = NULL;
		t->refs--; /* the dataset's reference; the thread's is dropped below */
	}
	if (t->kind == KIND_GZ)
		d->retrying = false;
	if (err != -ECANCELED) {
		d->failed = err != 0;
		snprintf(d->error, sizeof(d->error), "%s", err ? error : "");
	}
	dataset_set_state_locked(d);
	pthread_cond_broadcast(&d->changed);
	taken = dataset_take_parked_locked(d, 0);
	if (feed)
		feed_ref(feed); /* t may go with dataset_put_locked() */
	dataset_put_locked(t);
	pthread_mutex_unlock(&d->lock);
	/*
	 * The feed ends after the dataset says how: a reader who gets the EIO
	 * finds the failure in status. Not under the lock: it answers parked reads.
	 */
	if (feed) {
		feed_finish(feed, err ? -EIO : 0);
		feed_unref(feed);
	}
	park_answer(taken); /* before thread_done(): shutdown waits for the answers */
	thread_done();
}

static void *download_thread(void *arg)
{
	struct transfer *t = arg;
	char error[256];
	bool changed = false;
	int rc = download_run(t, &changed, error, sizeof(error));

	finish_transfer(t, rc, changed, error);
	return NULL;
}

static void *extract_thread(void *arg)
{
	struct transfer *t = arg;
	char error[256];
	bool changed = false;
	int rc = extract_run(t, &changed, error, sizeof(error));

	finish_transfer(t, rc, changed, error);
	return NULL;
}

/* ---- what the download engine asks of the dataset ------------------------- */

void dataset_download_basis(struct transfer *t, bool *conditional, struct meta *old)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	*conditional = d->cached && !t->force;
	*old = d->gz;
	pthread_mutex_unlock(&d->lock);
}

void dataset_note_retry(struct transfer *t, const char *error)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	d->retrying = true;
	snprintf(d->error, sizeof(d->error), "%.200s (retrying)", error);
	pthread_mutex_unlock(&d->lock);
}

void dataset_mark_checked(struct transfer *t)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	d->checked_at = clock_wall();
	pthread_mutex_unlock(&d->lock);
}

void dataset_commit_gz(struct transfer *t, struct dataset_version *copy, const struct meta *m)
{
	struct dataset *d = t->ds;
	struct dataset_version *stale_tsv = NULL;
	struct park_entry *taken;
	bool reextract;

	pthread_mutex_lock(&d->lock);
	copy = dataset_swap_version_locked(d, KIND_GZ, copy, m);
	d->gz = *m;
	d->cached = true;
	d->checked_at = m->fetched_at;
	d->announced = *m;
	d->announced_by = DATASET_SOURCE_TRANSFER;
	/* The .tsv of the old version is no longer served: new opens follow its re-extraction. */
	if (d->extracted && !meta_same_version(&d->tsv, &d->gz)) {
		stale_tsv = dataset_swap_version_locked(d, KIND_TSV, NULL, NULL);
		d->extracted = false;
		reextract = !d->extract;
	} else {
		reextract = false;
	}
	dataset_set_state_locked(d);
	taken = dataset_take_sizers_locked(d, 0); /* the .tsv's, whose size the verifier counted */
	pthread_mutex_unlock(&d->lock);
	park_answer(taken);
	dataset_version_put(copy);
	dataset_version_put(stale_tsv);
	dataset_notify_change(transfer_file(t));
	/* A .tsv not extracted yet has the size the verifier counted now, or a stale one went. */
	if (stale_tsv || m->tsv_size >= 0)
		dataset_notify_change(catalog_file(d->index, KIND_TSV));
	if (reextract) {
		struct transfer *x = dataset_extract(d->index);
		if (x)
			put(x);
	}
}

/* ---- what the extraction engine asks of the dataset ------------------------- */

/* Waits for the followed download to publish its feed or end; d->lock held. */
static int follow_locked(struct transfer *t, struct feed **feed, char *err, size_t errlen)
{
	struct transfer *src = t->src;
	struct timespec ts;

	assert(dataset_held(t->ds));
	while (!src->feed && !src->done) {
		if (transfer_cancelled(t))
			return -ECANCELED;
		clock_deadline(CLOCK_MONOTONIC, &ts, DATASET_POLL_NS);
		pthread_cond_timedwait(&t->ds->changed, &t->ds->lock, &ts);
	}
	if (src->done && src->res.err) {
		snprintf(err, errlen, "download failed: %.200s", src->res.error);
		return -EIO;
	}
	if (src->feed && !src->done) {
		*feed = src->feed;
		feed_ref(*feed);
	}
	return 0;
}

int dataset_source_open(struct transfer *t, struct feed **feed, int *fd, struct meta *m, char *err,
			size_t errlen)
{
	struct dataset *d = t->ds;
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	if (t->src)
		rc = follow_locked(t, feed, err, errlen);
	if (!rc && !*feed) {
		if (!d->cached) {
			rc = -ENOENT;
		} else if ((*fd = dataset_dup_fd(fdshare_fd(d->cur[KIND_GZ]->copy))) < 0) {
			rc = *fd;
			*fd = -1;
			snprintf(err, errlen, "cannot open the download: %s", strerror(-rc));
		} else {
			*m = d->gz;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (rc == -ENOENT)
		snprintf(err, errlen, "not downloaded");
	return rc;
}

int dataset_source_settle(struct transfer *t, uint64_t in, struct meta *m)
{
	struct transfer *src = t->src;
	struct dataset *d = t->ds;
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	while (!src->done) {
		clock_deadline(CLOCK_MONOTONIC, &ts, DATASET_POLL_NS);
		pthread_cond_timedwait(&d->changed, &d->lock, &ts);
	}
	if (src->res.err || !d->cached || d->gz.size != (int64_t)in)
		rc = -EIO;
	else
		*m = d->gz;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

bool dataset_source_next_feed(struct transfer *t, struct feed **feed)
{
	struct transfer *src = t->src;
	struct dataset *d = t->ds;
	struct timespec ts;
	bool found = false;

	if (!src || !*feed)
		return false;
	pthread_mutex_lock(&d->lock);
	while (!src->done && (!src->feed || src->feed == *feed) && !transfer_cancelled(t)) {
		clock_deadline(CLOCK_MONOTONIC, &ts, DATASET_POLL_NS);
		pthread_cond_timedwait(&d->changed, &d->lock, &ts);
	}
	if (src->feed && src->feed != *feed && !src->res.err) {
		feed_unref(*feed);
		*feed = src->feed;
		feed_ref(*feed);
		found = true;
	}
	pthread_mutex_unlock(&d->lock);
	return found;
}

void dataset_source_error(struct transfer *t, char *err, size_t errlen)
{
	struct transfer *src = t->src;
	struct dataset *d = t->ds;
	struct timespec ts;

	if (!src) {
		snprintf(err, errlen, "cannot read the download");
		return;
	}
	pthread_mutex_lock(&d->lock);
	while (!src->done && !transfer_cancelled(t)) {
		clock_deadline(CLOCK_MONOTONIC, &ts, DATASET_POLL_NS);
		pthread_cond_timedwait(&d->changed, &d->lock, &ts);
	}
	snprintf(err, errlen, "download failed: %.200s", src->done ? src->res.error : "cancelled");
	pthread_mutex_unlock(&d->lock);
}

int dataset_commit_tsv(struct transfer *t, struct dataset_version *copy, const struct meta *m)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	if (!meta_same_version(m, &d->gz)) {
		pthread_mutex_unlock(&d->lock);
		dataset_version_put(copy);
		return -ESTALE;
	}
	copy = dataset_swap_version_locked(d, KIND_TSV, copy, m);
	d->tsv = *m;
	d->extracted = true;
	dataset_set_state_locked(d);
	pthread_mutex_unlock(&d->lock);
	dataset_version_put(copy);
	dataset_notify_change(transfer_file(t));
	return 0;
}

void dataset_transfers_refuse(void)
{
	pthread_mutex_lock(&threads_lock);
	shutting_down = true;
	pthread_mutex_unlock(&threads_lock);
}

void dataset_transfers_wait(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += SHUTDOWN_WAIT_S;
	pthread_mutex_lock(&threads_lock);
	while (threads_live > 0) {
		if (pthread_cond_timedwait(&threads_gone, &threads_lock, &ts) == ETIMEDOUT) {
			log_warn("shutdown: %d transfers did not stop in time", threads_live);
			break;
		}
	}
	pthread_mutex_unlock(&threads_lock);
}
