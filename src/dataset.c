/* dataset.c - the state machine and registry of the datasets, their readers; see dataset.h */
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
#include "dataset_int.h"
#include "download.h"
#include "extract.h"
#include "fdshare.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "store.h"
#include "store_azure.h"

static struct dataset sets[CATALOG_COUNT];

/* Set by datasets_init() before any thread exists; read-only afterwards. */
static const struct config *config;
static struct store *store;
static void (*change_hook)(const char *file);

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

	assert(dataset_held(d));
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
void dataset_set_state_locked(struct dataset *d)
{
	enum ds_state next = state_of_locked(d);

	assert(next == d->state || (next_states[d->state] & S(next)));
	d->state = next;
}

/* ---- helpers ------------------------------------------------------------ */

void dataset_notify_change(const char *file)
{
	if (change_hook)
		change_hook(file);
}

/*
 * Readers share the dataset's own descriptor on a committed copy (see
 * fdshare.h), never a fresh open of its path: the path may already name the
 * next version while the dataset still shows this one.
 */
int dataset_dup_fd(int fd)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	return copy < 0 ? -errno : copy;
}

struct dataset *dataset_of(int ds)
{
	assert(ds >= 0 && ds < CATALOG_COUNT);
	return &sets[ds];
}

/* Size (0 while unknown) and modification time of kind as it is now; d->lock held. */
static void stat_locked(struct dataset *d, enum file_kind kind, int64_t *size, int64_t *mtime)
{
	assert(dataset_held(d));
	if (dataset_size_known_locked(d, kind, size, mtime))
		return;
	*size = 0;
	*mtime = d->cached ? d->gz.mtime : d->announced.mtime;
}

/*
 * The current version of kind (not referenced); d->lock held. An arriving
 * version is made when first asked for, with the feed of the transfer in
 * flight if it has one. NULL on ENOMEM.
 */
static struct dataset_version *current_locked(struct dataset *d, enum file_kind kind)
{
	struct dataset_version *v = d->cur[kind];
	struct transfer *t = kind == KIND_GZ ? d->download : d->extract;

	assert(dataset_held(d));
	if (v || !(v = dataset_version_new(NULL)))
		return v;
	v->ds = d->index;
	v->kind = kind;
	v->gen = d->gen[kind];
	d->cur[kind] = v;
	if (t && t->feed)
		dataset_attach_feed_locked(d, kind, t->feed);
	return v;
}

void dataset_attach_feed_locked(struct dataset *d, enum file_kind kind, struct feed *f)
{
	struct dataset_version *v = d->cur[kind];

	assert(dataset_held(d));
	if (!v || v->copy || v->feed == f)
		return; /* nobody asked yet, or a refresh: the committed copy stays served */
	feed_ref(f);
	feed_unref(v->feed);
	v->feed = f;
}

struct dataset_version *dataset_swap_version_locked(struct dataset *d, enum file_kind kind,
						    struct dataset_version *v, const struct meta *m)
{
	struct dataset_version *old = d->cur[kind];
	struct transfer *t = kind == KIND_GZ ? d->download : d->extract;
	int64_t size;

	assert(dataset_held(d));
	assert(!v || (v->copy && m));
	if (old && !old->copy) {
		stat_locked(d, kind, &size, &old->mtime); /* its feed gives the size from now on */
		if (v && t && old->feed && old->feed == t->feed) {
			old->mtime = m->mtime; /* it was these very bytes arriving */
			assert(!old->committed_as);
			old->committed_as = dataset_version_get(v);
		}
	}
	d->gen[kind]++;
	if (v) {
		v->ds = d->index;
		v->kind = kind;
		v->gen = d->gen[kind];
		v->meta = *m;
	}
	d->cur[kind] = v;
	return old;
}

/* ---- opens parked until their transfer publishes a feed -------------------- */

static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind);

/* Gives r a reference on v, counted among v's readers until dataset_close(). */
static void reader_take(struct dataset_reader *r, struct dataset_version *v)
{
	r->v = dataset_version_get(v);
	atomic_fetch_add(&v->readers, 1);
}

/* What o's open comes to now (0 with o->r filled, -EIO), or -EINPROGRESS; d->lock held. */
static int opener_answer_locked(struct dataset *d, struct dataset_opener *o)
{
	struct transfer *t = o->t;

	assert(dataset_held(d));
	if (o->kind == KIND_GZ ? d->cached : d->extracted)
		return open_committed_locked(d, o->r, o->kind);
	if (t->feed && !t->res.err) {
		struct dataset_version *v = current_locked(d, o->kind);
		if (!v)
			return -ENOMEM;
		dataset_attach_feed_locked(d, o->kind, t->feed);
		reader_take(o->r, v);
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
	dataset_put_locked(o->t);
	o->t = NULL;
	return rc;
}

struct park_entry *dataset_take_parked_locked(struct dataset *d, int rc)
{
	struct opener_take c = {d, rc};
	struct park_entry *taken = NULL;

	assert(dataset_held(d));
	for (int k = KIND_GZ; k <= KIND_TSV; k++)
		taken = park_concat(taken, park_take_locked(&d->openers[k], opener_take, &c));
	return park_concat(taken, dataset_take_sizers_locked(d, rc));
}

static void opener_ready(struct park_entry *e, int64_t answer)
{
	struct dataset_opener *o = (struct dataset_opener *)e;

	o->ready(o, (int)answer);
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
static bool open_cached(struct dataset *d, enum file_kind kind, struct meta *m)
{
	const char *file = catalog_file(d->index, kind);
	struct dataset_version *v;
	struct fdshare *copy;
	int fd;

	if (store->ops->lookup(store, file, m) || store->ops->open(store, file, &fd))
		return false;
	if (!(copy = fdshare_new(fd))) {
		close(fd);
		return false;
	}
	if (!(v = dataset_version_new(copy))) {
		fdshare_put(copy);
		return false;
	}
	pthread_mutex_lock(&d->lock);
	dataset_version_put(dataset_swap_version_locked(d, kind, v, m));
	pthread_mutex_unlock(&d->lock);
	return true;
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
	d->cur[KIND_GZ] = d->cur[KIND_TSV] = NULL;
	d->cached = open_cached(d, KIND_GZ, &d->gz);
	d->extracted = open_cached(d, KIND_TSV, &d->tsv);
	if (d->cached && d->extracted && !meta_same_version(&d->gz, &d->tsv)) {
		log_info("%s: decompression of an older version; dropping it",
			 catalog_file(index, KIND_TSV));
		store->ops->evict(store, catalog_file(index, KIND_TSV));
		pthread_mutex_lock(&d->lock);
		dataset_version_put(dataset_swap_version_locked(d, KIND_TSV, NULL, NULL));
		pthread_mutex_unlock(&d->lock);
		d->extracted = false;
	}
	d->checked_at = d->cached ? d->gz.fetched_at : 0;
	d->state = d->extracted ? DS_EXTRACTED : d->cached ? DS_CACHED : DS_ABSENT;
	d->resume_pending = has_partial(index);
	d->announced.size = d->announced.tsv_size = -1;
	if (d->cached) {
		d->announced = d->gz;
		d->announced_by = DATASET_SOURCE_TRANSFER;
	}
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
			dataset_start_locked(d, KIND_GZ, false);
		}
		d->resume_pending = false;
		pthread_mutex_unlock(&d->lock);
	}
	probe_start(config); /* the sizes of the files not cached, in the background */
}

void datasets_on_change(void (*fn)(const char *file))
{
	change_hook = fn;
}

void datasets_shutdown(void)
{
	dataset_transfers_refuse();
	for (int i = 0; i < CATALOG_COUNT; i++) {
		struct dataset *d = &sets[i];
		pthread_mutex_lock(&d->lock);
		if (d->download)
			atomic_store(&d->download->cancel, true);
		if (d->extract)
			atomic_store(&d->extract->cancel, true);
		pthread_mutex_unlock(&d->lock);
	}
	store_azure_stop(); /* an upload or a lease call under way ends too */
	probe_stop();
	dataset_transfers_wait();
	datasets_cancel_opens(); /* those of a transfer that did not stop in time */
}

void datasets_cancel_opens(void)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		struct park_entry *taken;
		pthread_mutex_lock(&sets[i].lock);
		taken = dataset_take_parked_locked(&sets[i], -EIO);
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

int dataset_current(int ds, enum file_kind kind, struct dataset_version **v)
{
	struct dataset *d = &sets[ds];

	pthread_mutex_lock(&d->lock);
	if ((*v = current_locked(d, kind)))
		dataset_version_get(*v);
	pthread_mutex_unlock(&d->lock);
	return *v ? 0 : -ENOMEM;
}

void dataset_version_stat(struct dataset_version *v, int64_t *size, int64_t *mtime)
{
	struct dataset *d = &sets[v->ds];
	uint64_t filled;
	int ended, err;

	if (v->copy) { /* constant */
		*size = v->meta.size;
		*mtime = v->meta.mtime;
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (v == d->cur[v->kind]) {
		stat_locked(d, v->kind, size, mtime);
	} else {
		*size = 0;
		*mtime = v->mtime;
		if (v->feed) {
			feed_progress(v->feed, &filled, size, &ended, &err);
			if (*size < 0)
				*size = (int64_t)filled;
		}
	}
	pthread_mutex_unlock(&d->lock);
}

/* A stale copy is served at once while a conditional refresh runs behind it. */
static void revalidate_if_stale_locked(struct dataset *d)
{
	assert(dataset_held(d));
	if (d->cached && !d->download && clock_wall() - d->checked_at > (double)config->max_age) {
		log_info("%s: older than max_age; revalidating", catalog_file(d->index, KIND_GZ));
		dataset_start_locked(d, KIND_GZ, false);
	}
}

/* d->lock held. */
static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind)
{
	assert(dataset_held(d));
	reader_take(r, d->cur[kind]);
	r->fd = fdshare_fd(r->v->copy);
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

/* Opens v, a version that is no longer current, if it can be read; d->lock held. */
static bool open_old_locked(struct dataset *d, struct dataset_version *v, struct dataset_reader *r)
{
	assert(dataset_held(d));
	assert(v != d->cur[v->kind]);
	if (!v->copy && !v->feed)
		return false; /* went before any bytes arrived: nothing of it to read */
	/*
	 * A version nobody reads any more (nor the committed copy its bytes
	 * became) is gone: its inode's open gets the current one, as the name
	 * would. Else a name the kernel still resolves
	 * to the old inode within its entry timeout would bring back what rm
	 * removed or a refresh replaced.
	 */
	if (atomic_load(&v->readers) == 0 &&
	    !(v->committed_as && atomic_load(&v->committed_as->readers) > 0))
		return false;
	reader_take(r, v);
	if (v->copy) {
		r->fd = fdshare_fd(v->copy);
	} else {
		r->feed = v->feed;
		feed_ref(r->feed);
	}
	return true;
}

int dataset_open_start(struct dataset_opener *o, struct dataset_version *via,
		       struct dataset_reader *r)
{
	struct dataset *d = &sets[o->ds];
	struct transfer *t;
	int rc;

	r->v = NULL;
	r->fd = -1;
	r->feed = NULL;
	o->r = r;
	assert(!via || (via->ds == o->ds && via->kind == o->kind));
	pthread_mutex_lock(&d->lock);
	if (via && via != d->cur[o->kind] && open_old_locked(d, via, r)) {
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	revalidate_if_stale_locked(d);
	if (o->kind == KIND_GZ ? d->cached : d->extracted) {
		rc = open_committed_locked(d, r, o->kind);
	} else if (!(t = o->kind == KIND_GZ ? d->download : d->extract) &&
		   !(t = dataset_start_locked(d, o->kind, false))) {
		rc = -EIO;
	} else {
		o->t = t;
		t->refs++;
		rc = opener_answer_locked(d, o);
		if (rc == -EINPROGRESS && !park_add_locked(&d->openers[o->kind], &o->entry))
			rc = -EINTR;
		if (rc != -EINPROGRESS) {
			dataset_put_locked(t);
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
		dataset_put_locked(o->t);
		o->t = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	return mine;
}

void dataset_close(struct dataset_reader *r)
{
	feed_unref(r->feed);
	if (r->v) {
		long before = atomic_fetch_sub(&r->v->readers, 1);
		assert(before > 0);
		(void)before;
	}
	dataset_version_put(r->v);
	r->v = NULL;
	r->fd = -1;
	r->feed = NULL;
}

struct transfer *dataset_download(int ds, bool force)
{
	struct dataset *d = &sets[ds];
	struct transfer *t;

	pthread_mutex_lock(&d->lock);
	t = d->download ? d->download : dataset_start_locked(d, KIND_GZ, force);
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
	} else if ((t = dataset_start_locked(d, KIND_TSV, false))) {
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
	dataset_put_locked(t);
	pthread_mutex_unlock(&d->lock);
}

int dataset_evict(int ds, enum file_kind kind)
{
	struct dataset *d = &sets[ds];
	int removed = 0;

	struct dataset_version *old[2] = {NULL, NULL};

	pthread_mutex_lock(&d->lock);
	if (kind == KIND_GZ) {
		if (store->ops->evict(store, catalog_file(ds, KIND_GZ)) == 0)
			removed |= 1 << KIND_GZ;
		if (d->cached)
			old[KIND_GZ] = dataset_swap_version_locked(d, KIND_GZ, NULL, NULL);
		d->cached = false;
	}
	if (store->ops->evict(store, catalog_file(ds, KIND_TSV)) == 0)
		removed |= 1 << KIND_TSV;
	if (d->extracted)
		old[KIND_TSV] = dataset_swap_version_locked(d, KIND_TSV, NULL, NULL);
	d->extracted = false;
	d->failed = false;
	d->error[0] = '\0';
	dataset_set_state_locked(d);
	pthread_mutex_unlock(&d->lock);
	dataset_version_put(old[KIND_GZ]);
	dataset_version_put(old[KIND_TSV]);
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		if (removed & (1 << k)) {
			metrics_add(M_EVICTIONS, 1);
			dataset_notify_change(catalog_file(ds, (enum file_kind)k));
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
	assert(d->state == state_of_locked(d)); /* no change went past dataset_set_state_locked() */
	info->state = d->state;
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		int64_t mtime;
		if (!dataset_size_known_locked(d, (enum file_kind)k, &info->size[k], &mtime))
			info->size[k] = -1;
	}
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
