/*
 * dataset_size.c - what is known of a data file's size before a byte of it
 * is read, and the requests parked until it is; see dataset.h.
 *
 * A .tsv.gz's size comes, best first, from its committed copy, from the
 * response a download is reading (the version actually served, whatever
 * was said before), or from what the probe at mount announced (the origin's
 * HEAD, or the container's blob metadata). A .tsv's exact size cannot be
 * known before its .tsv.gz has been inflated to the end: the verifier of
 * every download does that and counts the bytes (meta.tsv_size, kept in the
 * .meta and the container's metadata for good); ISIZE, the size modulo 2^32
 * of the last member only, is never taken for it.
 *
 * Part of the dataset layer: it takes the dataset lock (dataset_int.h).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dataset.h"
#include "dataset_engine.h"
#include "dataset_int.h"

bool dataset_size_known_locked(struct dataset *d, enum file_kind kind, int64_t *size,
			       int64_t *mtime)
{
	const struct meta *m = NULL;
	int64_t n = -1;

	assert(dataset_held(d));
	if (kind == KIND_GZ && d->cached) {
		m = &d->gz;
		n = m->size;
	} else if (kind == KIND_GZ && d->announced_by != DATASET_SOURCE_NONE) {
		m = &d->announced;
		n = m->size;
	} else if (kind == KIND_TSV && d->extracted) {
		m = &d->tsv;
		n = m->size;
	} else if (kind == KIND_TSV && d->cached) {
		/* The .tsv served next is extracted from the committed copy, not a newer one. */
		m = &d->gz;
		n = m->tsv_size;
	} else if (kind == KIND_TSV && d->announced_by != DATASET_SOURCE_NONE) {
		m = &d->announced;
		n = m->tsv_size;
	}
	if (n < 0)
		return false;
	*size = n;
	*mtime = m->mtime;
	return true;
}

bool dataset_size_known(int ds, enum file_kind kind, int64_t *size, int64_t *mtime)
{
	struct dataset *d = dataset_of(ds);
	bool known;

	pthread_mutex_lock(&d->lock);
	known = dataset_size_known_locked(d, kind, size, mtime);
	pthread_mutex_unlock(&d->lock);
	return known;
}

/* ---- size waiters ---------------------------------------------------------- */

/* What w comes to now: 0 (known), -EIO (its transfer ended without it), or -EINPROGRESS. */
static int sizer_answer_locked(struct dataset *d, struct dataset_size_waiter *w)
{
	int64_t size, mtime;

	assert(dataset_held(d));
	if (dataset_size_known_locked(d, w->kind, &size, &mtime))
		return 0;
	return w->t->done ? -EIO : -EINPROGRESS;
}

struct sizer_take {
	struct dataset *d;
	int rc; /* 0: those that can be answered; else all of them, with this */
};

/* park_take_locked()'s question; a waiter taken drops its transfer reference. */
static int64_t sizer_take(struct park_entry *e, void *ctx)
{
	struct dataset_size_waiter *w = (struct dataset_size_waiter *)e;
	const struct sizer_take *c = ctx;
	int rc = c->rc ? c->rc : sizer_answer_locked(c->d, w);

	if (rc == -EINPROGRESS)
		return PARK_WAIT;
	dataset_put_locked(w->t);
	w->t = NULL;
	return rc;
}

struct park_entry *dataset_take_sizers_locked(struct dataset *d, int rc)
{
	struct sizer_take c = {d, rc};
	struct park_entry *taken = NULL;

	assert(dataset_held(d));
	for (int k = KIND_GZ; k <= KIND_TSV; k++)
		taken = park_concat(taken, park_take_locked(&d->sizers[k], sizer_take, &c));
	return taken;
}

static void sizer_ready(struct park_entry *e, int64_t answer)
{
	struct dataset_size_waiter *w = (struct dataset_size_waiter *)e;

	w->ready(w, (int)answer);
}

void dataset_size_waiter_init(struct dataset_size_waiter *w, int ds, enum file_kind kind,
			      void (*ready)(struct dataset_size_waiter *w, int rc))
{
	memset(w, 0, sizeof(*w));
	park_entry_init(&w->entry, sizer_ready);
	w->ds = ds;
	w->kind = kind;
	w->ready = ready;
}

int dataset_size_wait_start(struct dataset_size_waiter *w)
{
	struct dataset *d = dataset_of(w->ds);
	struct transfer *t;
	int64_t size, mtime;
	int rc;

	pthread_mutex_lock(&d->lock);
	if (dataset_size_known_locked(d, w->kind, &size, &mtime)) {
		rc = 0;
	} else if (!(t = w->kind == KIND_GZ ? d->download : d->extract) &&
		   !(t = dataset_start_locked(d, w->kind, false))) {
		rc = -EIO;
	} else {
		w->t = t;
		t->refs++;
		rc = sizer_answer_locked(d, w);
		if (rc == -EINPROGRESS && !park_add_locked(&d->sizers[w->kind], &w->entry))
			rc = -EINTR;
		if (rc != -EINPROGRESS) {
			dataset_put_locked(t);
			w->t = NULL;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

bool dataset_size_wait_cancel(struct dataset_size_waiter *w)
{
	struct dataset *d = dataset_of(w->ds);
	bool mine;

	pthread_mutex_lock(&d->lock);
	if ((mine = park_cancel_locked(&d->sizers[w->kind], &w->entry))) {
		dataset_put_locked(w->t);
		w->t = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	return mine;
}

/* ---- announcements ------------------------------------------------------- */

/*
 * Makes m d's announced version (from source), keeping the .tsv size known
 * for that version; answers the waiters it can. true when what a stat says
 * changed. d->lock held.
 */
static bool announce_locked(struct dataset *d, const struct meta *m, enum dataset_source source,
			    struct park_entry **taken)
{
	struct meta next = *m;
	bool known = d->announced_by != DATASET_SOURCE_NONE;
	bool same = known && meta_same_version(&d->announced, m);
	bool changed;

	assert(dataset_held(d));
	if (next.size < 0 && same)
		next.size = d->announced.size; /* a chunked body of the version HEAD saw */
	if (next.tsv_size < 0 && same)
		next.tsv_size = d->announced.tsv_size; /* the container knew it */
	changed = !same || next.size != d->announced.size || next.tsv_size != d->announced.tsv_size;
	d->announced = next;
	d->announced_by = source;
	*taken = dataset_take_sizers_locked(d, 0);
	return changed && !d->cached;
}

/* The kernel drops what it cached of both files: their sizes are known now. */
static void notify_sizes(const struct dataset *d)
{
	dataset_notify_change(catalog_file(d->index, KIND_GZ));
	dataset_notify_change(catalog_file(d->index, KIND_TSV));
}

void dataset_announce_download(struct transfer *t, const struct meta *m)
{
	struct dataset *d = t->ds;
	struct park_entry *taken;
	bool changed;

	pthread_mutex_lock(&d->lock);
	changed = announce_locked(d, m, DATASET_SOURCE_TRANSFER, &taken);
	pthread_mutex_unlock(&d->lock);
	park_answer(taken);
	if (changed)
		notify_sizes(d);
}

bool dataset_wants_probe(int ds)
{
	struct dataset *d = dataset_of(ds);
	bool wants;

	pthread_mutex_lock(&d->lock);
	wants = !d->cached && d->announced_by == DATASET_SOURCE_NONE;
	pthread_mutex_unlock(&d->lock);
	return wants;
}

void dataset_announce(int ds, const struct meta *m)
{
	struct dataset *d = dataset_of(ds);
	struct park_entry *taken = NULL;
	bool changed = false;

	pthread_mutex_lock(&d->lock);
	if (!d->cached && d->announced_by == DATASET_SOURCE_NONE)
		changed = announce_locked(d, m, DATASET_SOURCE_PROBE, &taken);
	pthread_mutex_unlock(&d->lock);
	park_answer(taken);
	if (changed)
		notify_sizes(d);
}
