/* dataset.c - see dataset.h */
#include "dataset.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "dataset_engine.h"
#include "download.h"
#include "extract.h"
#include "fdshare.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define POLL_NS		(50 * 1000 * 1000)
#define SHUTDOWN_WAIT_S 10
#define RETIRED_KEPT	8 /* replaced copies whose attributes are remembered, per kind */

struct dataset;

/* What a generation that had a committed copy looked like. */
struct version_attr {
	uint64_t gen;
	int64_t size;
	int64_t mtime;
};

struct dataset {
	int index;		   /* constant */
	pthread_mutex_t lock;	   /* error-checking: see held() */
	enum ds_state state;	   /* guarded by lock; written only by set_state_locked() */
	pthread_cond_t changed;	   /* a transfer published a feed or ended */
	bool cached;		   /* guarded by lock */
	bool extracted;		   /* guarded by lock */
	bool failed;		   /* guarded by lock: the last transfer failed */
	struct meta gz;		   /* guarded by lock; valid when cached */
	struct meta tsv;	   /* guarded by lock; valid when extracted */
	double checked_at;	   /* guarded by lock: when gz was last known current */
	bool resume_pending;	   /* guarded by lock: a partial download waits in the store */
	bool retrying;		   /* guarded by lock: the download is backing off after a fault */
	uint64_t gen[2];	   /* guarded by lock: per kind, see dataset_generation() */
	struct fdshare *copy[2];   /* guarded by lock: per kind, the committed copy, or NULL */
	struct transfer *download; /* guarded by lock; in flight or NULL */
	struct transfer *extract;  /* guarded by lock; in flight or NULL */
	char error[256];	   /* guarded by lock */
	/* guarded by lock: the last few copies replaced, at gen % RETIRED_KEPT */
	struct version_attr retired[2][RETIRED_KEPT];
	struct park_list openers[2]; /* guarded by lock: per kind, opens parked */
};

static struct dataset sets[CATALOG_COUNT];

/* Set by datasets_init() before any thread exists; read-only afterwards. */
static const struct config *config;
static struct store *store;
static void (*change_hook)(const char *file);

/* Transfer threads, counted so that shutdown can wait for them. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t threads_gone = PTHREAD_COND_INITIALIZER;
static int threads_live;   /* guarded by threads_lock */
static bool shutting_down; /* guarded by threads_lock */

static const char *const state_names[] = {
    [DS_ABSENT] = "absent",	  [DS_QUEUED] = "queued", [DS_DOWNLOADING] = "downloading",
    [DS_VERIFYING] = "verifying", [DS_CACHED] = "cached", [DS_EXTRACTING] = "extracting",
    [DS_EXTRACTED] = "extracted", [DS_FAILED] = "failed",
};

const char *dataset_state_name(enum ds_state st)
{
	return state_names[st];
}

#ifndef NDEBUG
/*
 * True when the calling thread holds d->lock: an error-checking mutex
 * refuses to be locked twice by its owner (EDEADLK). For assert() only.
 */
static bool held(struct dataset *d)
{
	int rc = pthread_mutex_lock(&d->lock);

	if (rc == 0)
		pthread_mutex_unlock(&d->lock);
	return rc == EDEADLK;
}

#define S(st) (1u << (st))
/* Where a download's end leads: the committed copies' state, or the extraction it left running. */
#define DOWNLOAD_ENDED                                                                             \
	(S(DS_ABSENT) | S(DS_CACHED) | S(DS_EXTRACTED) | S(DS_FAILED) | S(DS_EXTRACTING))

/*
 * The edges of the diagram in dataset.h, per state: where it may go next.
 * A download may start in any state without one (-> queued), and a failed
 * commit is retried (verifying -> downloading); an eviction takes a copy
 * away (cached -> absent, extracted -> cached or absent).
 */
static const unsigned next_states[] = {
    [DS_ABSENT] = S(DS_QUEUED),
    [DS_QUEUED] = S(DS_DOWNLOADING) | DOWNLOAD_ENDED,
    [DS_DOWNLOADING] = S(DS_VERIFYING) | DOWNLOAD_ENDED,
    [DS_VERIFYING] = S(DS_DOWNLOADING) | DOWNLOAD_ENDED,
    [DS_CACHED] = S(DS_QUEUED) | S(DS_EXTRACTING) | S(DS_ABSENT),
    [DS_EXTRACTING] = S(DS_QUEUED) | S(DS_EXTRACTED) | S(DS_CACHED) | S(DS_ABSENT) | S(DS_FAILED),
    [DS_EXTRACTED] = S(DS_QUEUED) | S(DS_EXTRACTING) | S(DS_CACHED) | S(DS_ABSENT),
    [DS_FAILED] = S(DS_QUEUED) | S(DS_EXTRACTING) | S(DS_CACHED) | S(DS_ABSENT),
};

#endif

/*
 * The state the diagram gives d's fields: the phase of the transfer in
 * flight (the download's first), else what is committed; d->lock held.
 */
static enum ds_state state_of_locked(struct dataset *d)
{
	struct transfer *t = d->download ? d->download : d->extract;

	assert(held(d));
	if (t)
		return t->phase;
	return d->failed      ? DS_FAILED
	       : d->extracted ? DS_EXTRACTED
	       : d->cached    ? DS_CACHED
			      : DS_ABSENT;
}

/*
 * The one writer of d->state, called by every change of the fields it is
 * made of before the lock is released; asserts that the move is an edge of
 * the diagram. d->lock held.
 */
static void set_state_locked(struct dataset *d)
{
	enum ds_state next = state_of_locked(d);

	assert(next == d->state || (next_states[d->state] & S(next)));
	d->state = next;
}

/* ---- helpers ------------------------------------------------------------ */

static void notify_change(const char *file)
{
	if (change_hook)
		change_hook(file);
}

/*
 * Readers share the dataset's own descriptor on a committed copy (see
 * fdshare.h), never a fresh open of its path: the path may already name the
 * next version while the dataset still shows this one.
 */
static int dup_fd(int fd)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	return copy < 0 ? -errno : copy;
}

/* Size (0 while unknown) and modification time of kind as it is now; d->lock held. */
static void stat_locked(struct dataset *d, enum file_kind kind, int64_t *size, int64_t *mtime)
{
	struct transfer *t;
	uint64_t filled;
	int ended, err;

	assert(held(d));
	*size = 0;
	*mtime = d->cached ? d->gz.mtime : 0;
	if (kind == KIND_GZ && d->cached) {
		*size = d->gz.size;
	} else if (kind == KIND_TSV && d->extracted) {
		*size = d->tsv.size;
		*mtime = d->tsv.mtime;
	} else if (kind == KIND_TSV && d->cached && d->gz.tsv_size >= 0) {
		*size = d->gz.tsv_size;
	} else if ((t = kind == KIND_GZ ? d->download : d->extract) && t->feed) {
		feed_progress(t->feed, &filled, size, &ended, &err);
		if (*size < 0)
			*size = 0;
	}
}

struct fdshare *dataset_share_dup(int fd, int *rc)
{
	struct fdshare *s;
	int copy = dup_fd(fd);

	if (copy < 0) {
		*rc = copy;
		return NULL;
	}
	if (!(s = fdshare_new(copy))) {
		close(copy);
		*rc = -ENOMEM;
	}
	return s;
}

/*
 * Makes copy (taken over; NULL for none) the committed copy of kind; d->lock
 * held, and the dataset's metadata still the old copy's. Returns the old one
 * to put.
 */
static struct fdshare *swap_fd_locked(struct dataset *d, enum file_kind kind, struct fdshare *copy)
{
	struct fdshare *old = d->copy[kind];

	assert(held(d));
	if (old) {
		struct version_attr *v = &d->retired[kind][d->gen[kind] % RETIRED_KEPT];
		v->gen = d->gen[kind];
		stat_locked(d, kind, &v->size, &v->mtime);
	}
	d->copy[kind] = copy;
	d->gen[kind]++;
	return old;
}

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
static void put_locked(struct transfer *t)
{
	assert(held(t->ds));
	assert(t->refs > 0);
	if (--t->refs > 0)
		return;
	if (t->src)
		put_locked(t->src);
	feed_unref(t->feed);
	free(t);
}

static void put(struct transfer *t)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	put_locked(t);
	pthread_mutex_unlock(&d->lock);
}

static void *download_thread(void *arg);
static void *extract_thread(void *arg);

/*
 * Starts a transfer of kind for d; called with d->lock held. The dataset and
 * the thread each hold a reference. NULL when no thread could be started.
 */
static struct transfer *start_locked(struct dataset *d, enum file_kind kind, bool force)
{
	struct transfer *t = calloc(1, sizeof(*t));
	struct transfer **slot = kind == KIND_GZ ? &d->download : &d->extract;

	assert(held(d));
	if (!t)
		return NULL;
	t->ds = d;
	t->index = d->index;
	t->kind = kind;
	t->force = force;
	t->refs = 2;
	t->phase = kind == KIND_GZ ? DS_QUEUED : DS_EXTRACTING;
	if (kind == KIND_TSV && !d->cached) {
		t->src = d->download ? d->download : start_locked(d, KIND_GZ, false);
		if (!t->src) {
			free(t);
			return NULL;
		}
		t->src->refs++;
	}
	if (spawn(kind == KIND_GZ ? download_thread : extract_thread, t)) {
		if (t->src)
			put_locked(t->src);
		free(t);
		return NULL;
	}
	*slot = t;
	set_state_locked(d);
	return t;
}

/* ---- opens parked until their transfer publishes a feed -------------------- */

static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind);

/* What o's open comes to now (0 with o->r filled, -EIO), or -EINPROGRESS; d->lock held. */
static int opener_answer_locked(struct dataset *d, struct dataset_opener *o)
{
	struct transfer *t = o->t;

	assert(held(d));
	o->r->gen = d->gen[o->kind];
	if (o->kind == KIND_GZ ? d->cached : d->extracted)
		return open_committed_locked(d, o->r, o->kind);
	if (t->feed && !t->res.err) {
		o->r->feed = t->feed;
		feed_ref(o->r->feed);
		metrics_add(M_CACHE_MISSES, 1);
		return 0;
	}
	return t->done ? -EIO : -EINPROGRESS; /* failed, or it came and went (evicted) */
}

struct opener_take {
	struct dataset *d;
	int rc; /* 0: those that can be answered; else all of them, with this */
};

/* park_take_locked()'s question; an open taken drops its transfer reference. */
static int64_t opener_take(struct park_entry *e, void *ctx)
{
	struct dataset_opener *o = (struct dataset_opener *)e;
	const struct opener_take *c = ctx;
	int rc = c->rc ? c->rc : opener_answer_locked(c->d, o);

	if (rc == -EINPROGRESS)
		return PARK_WAIT;
	put_locked(o->t);
	o->t = NULL;
	return rc;
}

/* The opens of d that can be answered now (all, with rc, when rc is not 0); d->lock held. */
static struct park_entry *take_openers_locked(struct dataset *d, int rc)
{
	struct opener_take c = {d, rc};
	struct park_entry *taken = NULL, *more, *last;

	assert(held(d));
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		if (!(more = park_take_locked(&d->openers[k], opener_take, &c)))
			continue;
		for (last = more; last->next; last = last->next)
			;
		last->next = taken;
		taken = more;
	}
	return taken;
}

static void opener_ready(struct park_entry *e, int64_t answer)
{
	struct dataset_opener *o = (struct dataset_opener *)e;

	o->ready(o, (int)answer);
}

void dataset_publish_feed(struct transfer *t, struct feed *f, enum ds_state phase)
{
	struct dataset *d = t->ds;
	struct park_entry *taken;
	struct feed *old;

	pthread_mutex_lock(&d->lock);
	old = t->feed;
	t->feed = f;
	t->phase = phase;
	t->body_started = clock_mono();
	set_state_locked(d);
	pthread_cond_broadcast(&d->changed);
	taken = take_openers_locked(d, 0);
	pthread_mutex_unlock(&d->lock);
	park_answer(taken);
	feed_unref(old);
}

void dataset_set_phase(struct transfer *t, enum ds_state phase)
{
	pthread_mutex_lock(&t->ds->lock);
	t->phase = phase;
	set_state_locked(t->ds);
	pthread_mutex_unlock(&t->ds->lock);
}

/* Records the outcome, wakes every waiter and drops the thread's reference. */
static void finish_transfer(struct transfer *t, int err, bool changed, const char *error)
{
	struct dataset *d = t->ds;
	struct transfer **slot = t->kind == KIND_GZ ? &d->download : &d->extract;
	struct park_entry *taken;

	if (t->feed)
		feed_finish(t->feed, err ? -EIO : 0);
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
	set_state_locked(d);
	pthread_cond_broadcast(&d->changed);
	taken = take_openers_locked(d, 0);
	put_locked(t);
	pthread_mutex_unlock(&d->lock);
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

void dataset_commit_gz(struct transfer *t, struct fdshare *copy, const struct meta *m)
{
	struct dataset *d = t->ds;
	struct fdshare *stale_tsv = NULL;
	bool reextract;

	pthread_mutex_lock(&d->lock);
	copy = swap_fd_locked(d, KIND_GZ, copy);
	d->gz = *m;
	d->cached = true;
	d->checked_at = m->fetched_at;
	/* The .tsv of the old version is no longer served: new opens follow its re-extraction. */
	if (d->extracted && !meta_same_version(&d->tsv, &d->gz)) {
		stale_tsv = swap_fd_locked(d, KIND_TSV, NULL);
		d->extracted = false;
	}
	reextract = stale_tsv && !d->extract;
	set_state_locked(d);
	pthread_mutex_unlock(&d->lock);
	fdshare_put(copy);
	fdshare_put(stale_tsv);
	notify_change(transfer_file(t));
	if (stale_tsv)
		notify_change(catalog_file(d->index, KIND_TSV));
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

	assert(held(t->ds));
	while (!src->feed && !src->done) {
		if (transfer_cancelled(t))
			return -ECANCELED;
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
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
		} else if ((*fd = dup_fd(fdshare_fd(d->copy[KIND_GZ]))) < 0) {
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
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
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
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
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
		clock_deadline(CLOCK_MONOTONIC, &ts, POLL_NS);
		pthread_cond_timedwait(&d->changed, &d->lock, &ts);
	}
	snprintf(err, errlen, "download failed: %.200s", src->done ? src->res.error : "cancelled");
	pthread_mutex_unlock(&d->lock);
}

int dataset_commit_tsv(struct transfer *t, struct fdshare *copy, const struct meta *m)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	if (!meta_same_version(m, &d->gz)) {
		pthread_mutex_unlock(&d->lock);
		fdshare_put(copy);
		return -ESTALE;
	}
	copy = swap_fd_locked(d, KIND_TSV, copy);
	d->tsv = *m;
	d->extracted = true;
	set_state_locked(d);
	pthread_mutex_unlock(&d->lock);
	fdshare_put(copy);
	notify_change(transfer_file(t));
	return 0;
}

/* ---- the public interface -------------------------------------------------------- */

static bool has_partial(int index)
{
	struct meta_partial p;
	uint64_t present;
	int fd;

	if (store->ops->resume(store, catalog_file(index, KIND_GZ), &fd, &p, &present))
		return false;
	close(fd);
	return true;
}

/* Looks up a committed copy left by an earlier run and opens it; true when usable. */
static bool open_cached(int index, enum file_kind kind, struct meta *m, struct fdshare **copy)
{
	const char *file = catalog_file(index, kind);
	int fd;

	if (store->ops->lookup(store, file, m) || store->ops->open(store, file, &fd))
		return false;
	if (!(*copy = fdshare_new(fd)))
		close(fd);
	return *copy != NULL;
}

static int init_dataset(struct dataset *d, int index)
{
	pthread_mutexattr_t mattr;
	pthread_condattr_t attr;
	int rc;

	d->index = index;
	if ((rc = pthread_mutexattr_init(&mattr)))
		return -rc;
	rc = pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ERRORCHECK);
	if (!rc)
		rc = pthread_mutex_init(&d->lock, &mattr);
	pthread_mutexattr_destroy(&mattr);
	if (rc)
		return -rc;
	if ((rc = pthread_condattr_init(&attr)))
		return -rc;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&d->changed, &attr);
	pthread_condattr_destroy(&attr);
	if (rc)
		return -rc;
	d->copy[KIND_GZ] = d->copy[KIND_TSV] = NULL;
	for (int k = KIND_GZ; k <= KIND_TSV; k++)
		for (int i = 0; i < RETIRED_KEPT; i++)
			d->retired[k][i].gen = UINT64_MAX; /* none yet */
	d->cached = open_cached(index, KIND_GZ, &d->gz, &d->copy[KIND_GZ]);
	d->extracted = open_cached(index, KIND_TSV, &d->tsv, &d->copy[KIND_TSV]);
	if (d->cached && d->extracted && !meta_same_version(&d->gz, &d->tsv)) {
		log_info("%s: decompression of an older version; dropping it",
			 catalog_file(index, KIND_TSV));
		store->ops->evict(store, catalog_file(index, KIND_TSV));
		fdshare_put(d->copy[KIND_TSV]);
		d->copy[KIND_TSV] = NULL;
		d->extracted = false;
	}
	d->checked_at = d->cached ? d->gz.fetched_at : 0;
	d->state = d->extracted ? DS_EXTRACTED : d->cached ? DS_CACHED : DS_ABSENT;
	d->resume_pending = has_partial(index);
	return 0;
}

int datasets_init(const struct config *cfg, struct store *st)
{
	int rc;

	config = cfg;
	store = st;
	download_init(cfg, st);
	extract_init(cfg, st);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if ((rc = init_dataset(&sets[i], i)))
			return rc;
	}
	return 0;
}

void datasets_resume(void)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		struct dataset *d = &sets[i];
		pthread_mutex_lock(&d->lock);
		if (d->resume_pending && !d->download) {
			log_info("%s: resuming the download an earlier run left",
				 catalog_file(i, KIND_GZ));
			start_locked(d, KIND_GZ, false);
		}
		d->resume_pending = false;
		pthread_mutex_unlock(&d->lock);
	}
}

void datasets_on_change(void (*fn)(const char *file))
{
	change_hook = fn;
}

void datasets_shutdown(void)
{
	struct timespec ts;

	pthread_mutex_lock(&threads_lock);
	shutting_down = true;
	pthread_mutex_unlock(&threads_lock);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		struct dataset *d = &sets[i];
		pthread_mutex_lock(&d->lock);
		if (d->download)
			atomic_store(&d->download->cancel, true);
		if (d->extract)
			atomic_store(&d->extract->cancel, true);
		pthread_mutex_unlock(&d->lock);
	}
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
	datasets_cancel_opens(); /* those of a transfer that did not stop in time */
}

void datasets_cancel_opens(void)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		struct park_entry *taken;
		pthread_mutex_lock(&sets[i].lock);
		taken = take_openers_locked(&sets[i], -EIO);
		pthread_mutex_unlock(&sets[i].lock);
		park_answer(taken);
	}
}

uint64_t dataset_generation(int ds, enum file_kind kind)
{
	struct dataset *d = &sets[ds];
	uint64_t gen;

	pthread_mutex_lock(&d->lock);
	gen = d->gen[kind];
	pthread_mutex_unlock(&d->lock);
	return gen;
}

bool dataset_stat(int ds, enum file_kind kind, uint64_t gen, int64_t *size, int64_t *mtime)
{
	struct dataset *d = &sets[ds];
	const struct version_attr *v = &d->retired[kind][gen % RETIRED_KEPT];
	bool known = true;

	pthread_mutex_lock(&d->lock);
	if (v->gen == gen) {
		*size = v->size;
		*mtime = v->mtime;
	} else {
		stat_locked(d, kind, size, mtime);
		known = gen == d->gen[kind];
	}
	pthread_mutex_unlock(&d->lock);
	return known;
}

/* A stale copy is served at once while a conditional refresh runs behind it. */
static void revalidate_if_stale_locked(struct dataset *d)
{
	assert(held(d));
	if (d->cached && !d->download && clock_wall() - d->checked_at > (double)config->max_age) {
		log_info("%s: older than max_age; revalidating", catalog_file(d->index, KIND_GZ));
		start_locked(d, KIND_GZ, false);
	}
}

/* d->lock held. */
static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind)
{
	assert(held(d));
	r->copy = fdshare_get(d->copy[kind]);
	r->fd = fdshare_fd(r->copy);
	metrics_add(M_CACHE_HITS, 1);
	return 0;
}

void dataset_opener_init(struct dataset_opener *o, int ds, enum file_kind kind,
			 void (*ready)(struct dataset_opener *o, int rc))
{
	memset(o, 0, sizeof(*o));
	park_entry_init(&o->entry, opener_ready);
	o->ds = ds;
	o->kind = kind;
	o->ready = ready;
}

int dataset_open_start(struct dataset_opener *o, struct dataset_reader *r)
{
	struct dataset *d = &sets[o->ds];
	struct transfer *t;
	int rc;

	r->fd = -1;
	r->copy = NULL;
	r->feed = NULL;
	o->r = r;
	pthread_mutex_lock(&d->lock);
	revalidate_if_stale_locked(d);
	r->gen = d->gen[o->kind];
	if (o->kind == KIND_GZ ? d->cached : d->extracted) {
		rc = open_committed_locked(d, r, o->kind);
	} else if (!(t = o->kind == KIND_GZ ? d->download : d->extract) &&
		   !(t = start_locked(d, o->kind, false))) {
		rc = -EIO;
	} else {
		o->t = t;
		t->refs++;
		rc = opener_answer_locked(d, o);
		if (rc == -EINPROGRESS && !park_add_locked(&d->openers[o->kind], &o->entry))
			rc = -EINTR;
		if (rc != -EINPROGRESS) {
			put_locked(t);
			o->t = NULL;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

bool dataset_open_cancel(struct dataset_opener *o)
{
	struct dataset *d = &sets[o->ds];
	bool mine;

	pthread_mutex_lock(&d->lock);
	if ((mine = park_cancel_locked(&d->openers[o->kind], &o->entry))) {
		put_locked(o->t);
		o->t = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	return mine;
}

void dataset_close(struct dataset_reader *r)
{
	fdshare_put(r->copy);
	feed_unref(r->feed);
	r->fd = -1;
	r->copy = NULL;
	r->feed = NULL;
}

struct transfer *dataset_download(int ds, bool force)
{
	struct dataset *d = &sets[ds];
	struct transfer *t;

	pthread_mutex_lock(&d->lock);
	t = d->download ? d->download : start_locked(d, KIND_GZ, force);
	if (t)
		t->refs++;
	pthread_mutex_unlock(&d->lock);
	return t;
}

/* A transfer that has nothing to do: the decompression is already current. */
static struct transfer *already_done(struct dataset *d)
{
	struct transfer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ds = d;
	t->index = d->index;
	t->kind = KIND_TSV;
	t->refs = 1;
	t->done = true;
	return t;
}

struct transfer *dataset_extract(int ds)
{
	struct dataset *d = &sets[ds];
	struct transfer *t;

	pthread_mutex_lock(&d->lock);
	if (d->extract) {
		t = d->extract;
		t->refs++;
	} else if (d->extracted && d->cached && meta_same_version(&d->tsv, &d->gz)) {
		t = already_done(d);
	} else if ((t = start_locked(d, KIND_TSV, false))) {
		t->refs++;
	}
	pthread_mutex_unlock(&d->lock);
	return t;
}

void dataset_wait(struct transfer *t, struct dataset_result *res)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	while (!t->done)
		pthread_cond_wait(&d->changed, &d->lock);
	*res = t->res;
	put_locked(t);
	pthread_mutex_unlock(&d->lock);
}

int dataset_evict(int ds, enum file_kind kind)
{
	struct dataset *d = &sets[ds];
	int removed = 0;

	struct fdshare *old[2] = {NULL, NULL};

	pthread_mutex_lock(&d->lock);
	if (kind == KIND_GZ) {
		if (store->ops->evict(store, catalog_file(ds, KIND_GZ)) == 0)
			removed |= 1 << KIND_GZ;
		if (d->cached)
			old[KIND_GZ] = swap_fd_locked(d, KIND_GZ, NULL);
		d->cached = false;
	}
	if (store->ops->evict(store, catalog_file(ds, KIND_TSV)) == 0)
		removed |= 1 << KIND_TSV;
	if (d->extracted)
		old[KIND_TSV] = swap_fd_locked(d, KIND_TSV, NULL);
	d->extracted = false;
	d->failed = false;
	d->error[0] = '\0';
	set_state_locked(d);
	pthread_mutex_unlock(&d->lock);
	fdshare_put(old[KIND_GZ]);
	fdshare_put(old[KIND_TSV]);
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		if (removed & (1 << k)) {
			metrics_add(M_EVICTIONS, 1);
			notify_change(catalog_file(ds, (enum file_kind)k));
		}
	}
	return removed;
}

void dataset_info(int ds, struct dataset_info *info)
{
	struct dataset *d = &sets[ds];
	struct transfer *t;
	int ended, err;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&d->lock);
	info->cached = d->cached;
	info->extracted = d->extracted;
	info->retrying = d->retrying;
	info->gz = d->gz;
	info->tsv = d->tsv;
	snprintf(info->error, sizeof(info->error), "%s", d->error);
	assert(d->state == state_of_locked(d)); /* no change went past set_state_locked() */
	info->state = d->state;
	t = d->download ? d->download : d->extract;
	if (t) {
		info->bytes_total = -1;
		if (t->feed) {
			feed_progress(t->feed, &info->bytes_done, &info->bytes_total, &ended, &err);
			double secs = clock_mono() - t->body_started;
			info->rate_bps = secs > 0.05 ? (double)info->bytes_done / secs : 0;
		}
	} else {
		info->bytes_total = d->cached ? d->gz.size : 0;
		info->bytes_done = (uint64_t)info->bytes_total;
	}
	pthread_mutex_unlock(&d->lock);
}
