/* dataset.c - see dataset.h */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "config.h"
#include "dataset_engine.h"
#include "extract.h"
#include "fdshare.h"
#include "feed.h"
#include "gunzip.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "segment.h"
#include "store.h"
#include "store_azure.h"

#define CHUNK		 (256 * 1024)
#define CHECKPOINT_BYTES (8u << 20)
#define CHECKPOINT_S	 1.0
#define POLL_NS		 (50 * 1000 * 1000)
#define SHUTDOWN_WAIT_S	 10
#define RETIRED_KEPT	 8 /* replaced copies whose attributes are remembered, per kind */
#define MAX_RESTARTS	 3 /* new versions seen by segments before a download counts a fault */
/* on_body's own code: segment 0 is complete, the first connection stops there. */
#define SEGMENT0_DONE (-EALREADY)

struct dataset;

/* What a generation that had a committed copy looked like. */
struct version_attr {
	uint64_t gen;
	int64_t size;
	int64_t mtime;
};

struct dataset {
	int index; /* constant */
	pthread_mutex_t lock;
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

/* Download slots: at most config->concurrency downloads talk to the origin. */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_free = PTHREAD_COND_INITIALIZER;
static unsigned slots_used; /* guarded by slots_lock */

static const char *const state_names[] = {
    [DS_ABSENT] = "absent",	  [DS_QUEUED] = "queued", [DS_DOWNLOADING] = "downloading",
    [DS_VERIFYING] = "verifying", [DS_CACHED] = "cached", [DS_EXTRACTING] = "extracting",
    [DS_EXTRACTED] = "extracted", [DS_FAILED] = "failed",
};

const char *dataset_state_name(enum ds_state st)
{
	return state_names[st];
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

	if (old) {
		struct version_attr *v = &d->retired[kind][d->gen[kind] % RETIRED_KEPT];
		v->gen = d->gen[kind];
		stat_locked(d, kind, &v->size, &v->mtime);
	}
	d->copy[kind] = copy;
	d->gen[kind]++;
	return old;
}

/* Sleeps for seconds unless t is cancelled first; -ECANCELED then. */
static int sleep_unless_cancelled(struct transfer *t, double seconds)
{
	double until = clock_mono() + seconds;
	struct timespec ts = {0, POLL_NS};

	while (clock_mono() < until) {
		if (transfer_cancelled(t))
			return -ECANCELED;
		nanosleep(&ts, NULL);
	}
	return 0;
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

static void *download_main(void *arg);
static void *extract_thread(void *arg);

/*
 * Starts a transfer of kind for d; called with d->lock held. The dataset and
 * the thread each hold a reference. NULL when no thread could be started.
 */
static struct transfer *start_locked(struct dataset *d, enum file_kind kind, bool force)
{
	struct transfer *t = calloc(1, sizeof(*t));
	struct transfer **slot = kind == KIND_GZ ? &d->download : &d->extract;

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
	if (spawn(kind == KIND_GZ ? download_main : extract_thread, t)) {
		if (t->src)
			put_locked(t->src);
		free(t);
		return NULL;
	}
	*slot = t;
	return t;
}

/* ---- opens parked until their transfer publishes a feed -------------------- */

static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind);

/* What o's open comes to now (0 with o->r filled, -EIO), or -EINPROGRESS; d->lock held. */
static int opener_answer_locked(struct dataset *d, struct dataset_opener *o)
{
	struct transfer *t = o->t;

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
	pthread_cond_broadcast(&d->changed);
	taken = take_openers_locked(d, 0);
	put_locked(t);
	pthread_mutex_unlock(&d->lock);
	park_answer(taken); /* before thread_done(): shutdown waits for the answers */
	thread_done();
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

/* ---- what the extraction engine asks of the dataset ------------------------- */

/* Waits for the followed download to publish its feed or end; d->lock held. */
static int follow_locked(struct transfer *t, struct feed **feed, char *err, size_t errlen)
{
	struct transfer *src = t->src;
	struct timespec ts;

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
	pthread_mutex_unlock(&d->lock);
	fdshare_put(copy);
	notify_change(transfer_file(t));
	return 0;
}

/* ---- downloads -------------------------------------------------------------- */

struct fetch {
	struct transfer *t;
	bool conditional; /* old is a committed copy to revalidate */
	struct meta old;
	struct meta next;  /* the version being received */
	int64_t total;	   /* its size, -1 unknown */
	int fd;		   /* the temporary; owned by feed */
	struct feed *feed; /* owned by t->feed once published */
	bool published;	   /* readers can see feed: its version is confirmed */
	struct gunzip *gz; /* verifies the stream as it arrives */
	uint64_t written;  /* bytes of next in the temporary */
	uint64_t durable;  /* bytes covered by the last checkpoint */
	uint64_t flushed;  /* bytes whose writeback was started (feed_flush_hint) */
	double checkpointed_at;
	double retry_after;    /* the origin asked to wait this long (429/503) */
	bool from_blob;	       /* read the shared tier's copy (blob) instead of the origin */
	bool old_is_blob;      /* old is the container's copy, newer than the local one */
	struct meta blob;      /* the shared tier's version, when it has one */
	struct segments *segs; /* the other connections of a segmented download, or NULL */
	bool sparse;	       /* the temporary may hold bytes past `written` (segments) */
	bool segment_gave_up;  /* a segment used up its retries: the download fails */
	struct budget budget;  /* what the temporary may grow to */
	char url[1024];	       /* what is requested: may hold the origin's password */
	char shown[1024];      /* url as logged and stored (config->origin_shown) */
	char error[256];
};

static bool same_version(const struct meta *m, const struct http_response *rs)
{
	return meta_validators_match(m->etag, m->last_modified, rs->etag, rs->last_modified);
}

/* Ends the segment threads, if any: nothing writes the temporary afterwards. */
static void stop_segments(struct fetch *f)
{
	segments_stop(f->segs);
	f->segs = NULL;
}

/* Readers of an abandoned feed get EIO past what they could already read. */
static void abandon_feed(struct fetch *f)
{
	stop_segments(f);
	f->sparse = false;
	if (!f->feed)
		return;
	feed_finish(f->feed, -EIO);
	if (f->published)
		dataset_publish_feed(f->t, NULL, DS_DOWNLOADING);
	else
		feed_unref(f->feed);
	f->published = false;
	store->ops->discard_temp(store, transfer_file(f->t));
	f->feed = NULL;
	gunzip_free(f->gz);
	f->gz = NULL;
	f->written = f->durable = f->flushed = 0;
}

/* Saves how far the download got, so that it resumes after a restart. */
static void checkpoint(struct fetch *f)
{
	struct meta_partial p = {.version = f->next,
				 .total = f->total,
				 .durable = (int64_t)f->written,
				 .sparse = f->sparse};
	int rc = store->ops->checkpoint(store, transfer_file(f->t), f->fd, &p);

	f->checkpointed_at = clock_mono();
	if (rc)
		log_warn("%s: cannot checkpoint the download: %s", transfer_file(f->t),
			 strerror(-rc));
	else
		f->durable = f->written;
}

/*
 * Every CHECKPOINT_BYTES, at most once a CHECKPOINT_S; a segmented download
 * every CHECKPOINT_S, since its partial resumes only from the checkpoint.
 */
static void maybe_checkpoint(struct fetch *f)
{
	uint64_t ahead = f->written - f->durable;

	if ((ahead >= CHECKPOINT_BYTES || (f->sparse && ahead > 0)) &&
	    clock_mono() - f->checkpointed_at >= CHECKPOINT_S)
		checkpoint(f);
}

/* Feeds bytes [0, len) of fd to a fresh verifier; 0 when they are a valid gzip prefix. */
static int reverify(int fd, uint64_t len, struct gunzip **out)
{
	struct gunzip *gz = gunzip_new(NULL, NULL);
	char *buf = malloc(CHUNK);
	uint64_t off = 0;
	int rc = gz && buf ? 0 : -ENOMEM;

	while (!rc && off < len) {
		size_t want = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else if (!(rc = gunzip_write(gz, buf, (size_t)n)))
			off += (uint64_t)n;
	}
	free(buf);
	if (rc) {
		gunzip_free(gz);
		return rc;
	}
	*out = gz;
	return 0;
}

/*
 * Picks up a download that an earlier attempt or run left in the store. The
 * bytes written after the last checkpoint are kept when they still verify
 * (a killed daemon loses nothing); else the download restarts from the
 * checkpoint, and from scratch when even that does not verify.
 */
static void resume_partial(struct fetch *f)
{
	const char *file = transfer_file(f->t);
	struct meta_partial p;
	uint64_t present, keep;
	int fd;

	if (store->ops->resume(store, file, &fd, &p, &present))
		return;
	/* Past the verified prefix, a segmented download's temporary has holes. */
	keep = p.sparse ? (uint64_t)p.durable : present;
	if (p.sparse && ftruncate(fd, (off_t)keep) < 0)
		goto discard;
	if (strcmp(p.version.url, f->shown) != 0 ||
	    !(p.version.etag[0] || p.version.last_modified[0]))
		goto discard;
	if (reverify(fd, keep, &f->gz)) {
		keep = (uint64_t)p.durable;
		if (ftruncate(fd, (off_t)keep) < 0 || reverify(fd, keep, &f->gz))
			goto discard;
	}
	if (keep == 0) {
		gunzip_free(f->gz);
		f->gz = NULL;
		goto discard;
	}
	f->feed = feed_new(fd, p.total);
	if (!f->feed) {
		gunzip_free(f->gz);
		f->gz = NULL;
		goto discard;
	}
	f->fd = fd;
	f->next = p.version;
	f->total = p.total;
	f->written = f->durable = f->flushed = keep;
	feed_grow(f->feed, keep);
	/* Readers see it once the origin confirms the version (see on_response). */
	log_info("%s: resuming a partial download at byte %llu", file, (unsigned long long)keep);
	return;
discard:
	close(fd);
	store->ops->discard_temp(store, file);
}

static void publish(struct fetch *f)
{
	if (f->published)
		return;
	f->published = true;
	dataset_publish_feed(f->t, f->feed, DS_DOWNLOADING);
}

static int begin_body(struct fetch *f, const struct http_response *rs)
{
	struct feed *feed;
	int fd, rc;

	rc = store->ops->create_temp(store, transfer_file(f->t), &fd);
	if (rc) {
		snprintf(f->error, sizeof(f->error), "cannot create a temporary: %s",
			 strerror(-rc));
		return rc;
	}
	feed = feed_new(fd, rs->total);
	f->gz = gunzip_new(NULL, NULL);
	if (!feed || !f->gz) {
		if (feed)
			feed_unref(feed);
		else
			close(fd);
		snprintf(f->error, sizeof(f->error), "out of memory");
		return -ENOMEM;
	}
	memset(&f->next, 0, sizeof(f->next));
	snprintf(f->next.url, sizeof(f->next.url), "%s", f->shown);
	snprintf(f->next.etag, sizeof(f->next.etag), "%s", rs->etag);
	snprintf(f->next.last_modified, sizeof(f->next.last_modified), "%s", rs->last_modified);
	f->next.mtime = rs->mtime;
	f->total = rs->total;
	f->fd = fd;
	f->feed = feed;
	f->written = f->durable = f->flushed = 0;
	publish(f);
	if (f->next.etag[0] || f->next.last_modified[0])
		checkpoint(f); /* resumable from the first byte on */
	return 0;
}

/* A response to a download already under way: continue it, or start over on a new version. */
static int continue_body(struct fetch *f, const struct http_response *rs)
{
	if (rs->status == 206 && rs->range_start == (int64_t)f->written &&
	    same_version(&f->next, rs)) {
		publish(f);
		return 0;
	}
	if (rs->status == 200 && same_version(&f->next, rs)) {
		/* The same bytes again from the start: rewrite them under the readers. */
		gunzip_free(f->gz);
		f->gz = gunzip_new(NULL, NULL);
		f->written = 0;
		publish(f);
		return f->gz ? 0 : -ENOMEM;
	}
	log_info("%s: the origin has a new version; starting over", transfer_file(f->t));
	abandon_feed(f);
	return begin_body(f, rs);
}

/*
 * Only a response that runs to the end of a file of known size and known
 * version, from an origin that takes ranges, is split: the others could not
 * tie their ranges to it (If-Range) or could not ask for one at all.
 */
static bool splittable(const struct fetch *f, const struct http_response *rs)
{
	if (f->segs || f->from_blob || f->total <= 0 ||
	    !(f->next.etag[0] || f->next.last_modified[0]))
		return false;
	if (rs->status == 200)
		return rs->accept_ranges && f->written == 0;
	return rs->status == 206 && rs->range_start == (int64_t)f->written &&
	       rs->length == f->total - rs->range_start;
}

/* Starts the other connections of a large download; without them it goes on alone. */
static void plan_segments(struct fetch *f, const struct http_response *rs)
{
	struct segments_spec sp = {
	    .file = transfer_file(f->t),
	    .url = f->url,
	    .etag = f->next.etag,
	    .last_modified = f->next.last_modified,
	    .fd = f->fd,
	    .from = f->written,
	    .total = (uint64_t)f->total,
	    .count = config_segments_for(config, (uint64_t)f->total),
	    .cfg = config,
	    .cancelled = transfer_cancelled,
	    .cancel_ctx = f->t,
	};
	int rc;

	if (sp.count < 2 || !splittable(f, rs))
		return;
	rc = segments_start(&sp, &f->segs);
	if (rc == -ERANGE)
		return;
	if (rc) {
		log_warn("%s: cannot start segments (%s); one connection", sp.file, strerror(-rc));
		return;
	}
	f->sparse = true;
	log_info("%s: %u segments from byte %llu, pieces of %llu bytes; this connection ends "
		 "at %llu",
		 sp.file, segments_count(f->segs), (unsigned long long)sp.from,
		 (unsigned long long)segments_piece_bytes(f->segs),
		 (unsigned long long)segments_first_end(f->segs));
}

static int on_response(void *ctx, const struct http_response *rs)
{
	struct fetch *f = ctx;
	/* The whole file's announced size (a 200's Content-Length, a 206's Content-Range). */
	int rc =
	    budget_expect(&f->budget, rs->total, rs->status == 206 ? (uint64_t)rs->range_start : 0,
			  f->error, sizeof(f->error));

	if (!rc)
		rc = f->feed ? continue_body(f, rs) : begin_body(f, rs);
	if (!rc)
		plan_segments(f, rs);
	return rc;
}

/* A segment failed or saw a new version: this connection stops too. */
static int segments_failed(struct fetch *f)
{
	int rc = f->segs ? segments_check(f->segs) : 0;

	if (rc) {
		segments_error(f->segs, f->error, sizeof(f->error));
		f->segment_gave_up = rc != -ESTALE && rc != -ECANCELED;
	}
	return rc;
}

static int on_body(void *ctx, const void *buf, size_t len)
{
	struct fetch *f = ctx;
	uint64_t end = f->segs ? segments_first_end(f->segs) : UINT64_MAX;
	int rc;

	if ((rc = segments_failed(f)))
		return rc;
	if (len > end - f->written)
		len = (size_t)(end - f->written); /* the rest is another segment's */
	if ((rc = budget_grow(&f->budget, f->written + len, f->error, sizeof(f->error))))
		return rc;
	rc = feed_pwrite_all(f->fd, buf, len, f->written);
	if (rc) {
		snprintf(f->error, sizeof(f->error), "cannot write the temporary: %s",
			 strerror(-rc));
		return rc;
	}
	rc = gunzip_write(f->gz, buf, len);
	if (rc) {
		snprintf(f->error, sizeof(f->error), "corrupt gzip data at byte %llu",
			 (unsigned long long)f->written);
		return rc;
	}
	f->written += len;
	feed_grow(f->feed, f->written);
	metrics_add(f->from_blob ? M_CONTAINER_BYTES : M_ORIGIN_BYTES, len);
	feed_flush_hint(f->fd, &f->flushed, f->written);
	maybe_checkpoint(f);
	return f->written == end ? SEGMENT0_DONE : 0;
}

/* Verifies and publishes bytes [f->written, f->written + n) that the segments put in place. */
static int take_contiguous(struct fetch *f, char *buf, size_t n)
{
	ssize_t got = pread(f->fd, buf, n, (off_t)f->written);
	int rc;

	if (got <= 0) {
		rc = got < 0 ? -errno : -EIO;
		snprintf(f->error, sizeof(f->error), "cannot read the temporary back: %s",
			 strerror(-rc));
		return rc;
	}
	if ((rc = gunzip_write(f->gz, buf, (size_t)got))) {
		snprintf(f->error, sizeof(f->error), "corrupt gzip data near byte %llu",
			 (unsigned long long)f->written);
		return rc;
	}
	f->written += (uint64_t)got;
	feed_grow(f->feed, f->written);
	feed_flush_hint(f->fd, &f->flushed, f->written);
	maybe_checkpoint(f);
	return 0;
}

/*
 * Segment 0 is in: follows the other segments in order, verifying each byte
 * once everything before it arrived. The segments end here, whatever happens.
 */
static int follow_segments(struct fetch *f)
{
	char *buf = malloc(CHUNK);
	int64_t n;
	int rc = buf ? 0 : -ENOMEM;

	log_debug("%s: piece 0 complete; verifying the others in order", transfer_file(f->t));
	segments_release(f->segs); /* this connection is done: another one may start */
	while (!rc && f->written < (uint64_t)f->total) {
		n = segments_wait(f->segs, f->written);
		if (n < 0) {
			rc = (int)n;
			segments_error(f->segs, f->error, sizeof(f->error));
			f->segment_gave_up = rc != -ESTALE && rc != -ECANCELED;
		} else {
			rc = take_contiguous(f, buf, (size_t)(n < CHUNK ? n : CHUNK));
		}
	}
	if (!rc)
		log_debug("%s: every piece verified", transfer_file(f->t));
	if (rc == -ENOMEM && !buf)
		snprintf(f->error, sizeof(f->error), "out of memory");
	free(buf);
	stop_segments(f);
	return rc;
}

static int commit_download(struct fetch *f)
{
	struct transfer *t = f->t;
	struct dataset *d = t->ds;
	bool reextract;
	struct fdshare *keep, *stale_tsv = NULL;
	int rc = 0;

	if (f->total >= 0 && f->written != (uint64_t)f->total) {
		snprintf(f->error, sizeof(f->error), "short body: %llu of %lld bytes",
			 (unsigned long long)f->written, (long long)f->total);
		return -EAGAIN;
	}
	if (gunzip_finish(f->gz)) {
		snprintf(f->error, sizeof(f->error), "corrupt gzip data: the stream is truncated");
		return -EBADMSG;
	}
	dataset_set_phase(t, DS_VERIFYING);
	f->next.size = (int64_t)f->written;
	f->next.tsv_size = (int64_t)gunzip_total_out(f->gz);
	f->next.fetched_at = clock_wall();
	if (!(keep = dataset_share_dup(f->fd, &rc)) ||
	    (rc = store->ops->commit(store, transfer_file(t), f->fd, &f->next))) {
		fdshare_put(keep);
		snprintf(f->error, sizeof(f->error), "cannot store the download: %s",
			 strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&d->lock);
	keep = swap_fd_locked(d, KIND_GZ, keep);
	d->gz = f->next;
	d->cached = true;
	d->checked_at = f->next.fetched_at;
	/* The .tsv of the old version is no longer served: new opens follow its re-extraction. */
	if (d->extracted && !meta_same_version(&d->tsv, &d->gz)) {
		stale_tsv = swap_fd_locked(d, KIND_TSV, NULL);
		d->extracted = false;
	}
	reextract = stale_tsv && !d->extract;
	pthread_mutex_unlock(&d->lock);
	fdshare_put(keep);
	fdshare_put(stale_tsv);
	notify_change(transfer_file(t));
	if (stale_tsv)
		notify_change(catalog_file(d->index, KIND_TSV));
	if (reextract) {
		struct transfer *x = dataset_extract(d->index);
		if (x)
			put(x);
	}
	return 0;
}

static void build_request(struct fetch *f, struct http_request *rq)
{
	memset(rq, 0, sizeof(*rq));
	rq->url = f->url;
	rq->cafile = config->cafile;
	rq->stall_seconds = config->timeout;
	rq->connect_seconds = config->timeout < 20 ? config->timeout : 20;
	rq->cancelled = transfer_cancelled;
	rq->cancel_ctx = f->t;
	if (f->feed && f->written > 0) {
		/* Continue where the last attempt stopped, tied to the same version. */
		rq->range_from = f->written;
		if (f->segs) /* up to where the next segment starts */
			rq->range_to = segments_first_end(f->segs) - 1;
		rq->if_range = f->next.etag[0] ? f->next.etag : f->next.last_modified;
		if (!*rq->if_range)
			rq->range_from = rq->range_to = 0;
	} else if (f->conditional && !f->feed) {
		rq->if_none_match = f->old.etag;
		rq->if_modified_since = f->old.last_modified;
	}
}

/* One request; 0 with *unchanged set for a 304, or -errno with f->error. */
static int fetch_once(struct fetch *f, bool *unchanged)
{
	struct http_sink sink = {on_response, on_body, f};
	struct http_request rq;
	struct http_response rs;
	char err[256];
	int rc;

	if (f->segs && f->written == segments_first_end(f->segs)) {
		rc = follow_segments(f); /* segment 0 arrived before the fault */
		return rc ? rc : commit_download(f);
	}
	if (f->feed && f->total >= 0 && f->written == (uint64_t)f->total) {
		publish(f);
		return commit_download(f); /* every byte arrived before the fault */
	}
	f->error[0] = '\0';
	if (f->from_blob) {
		rc = store_azure_get(transfer_file(f->t), &f->blob, f->feed ? f->written : 0, &sink,
				     transfer_cancelled, f->t, err, sizeof(err));
		f->retry_after = 0;
		if (rc && !f->error[0])
			snprintf(f->error, sizeof(f->error), "%s", err);
		return rc ? rc : commit_download(f);
	}
	build_request(f, &rq);
	metrics_add(M_ORIGIN_REQUESTS, 1);
	rc = http_get(&rq, &rs, &sink, err, sizeof(err));
	f->retry_after = rs.retry_after;
	if (rc == SEGMENT0_DONE) {
		rc = follow_segments(f);
		return rc ? rc : commit_download(f);
	}
	if (rc) {
		if (!f->error[0])
			snprintf(f->error, sizeof(f->error), "%s", err);
		return rc;
	}
	if (rs.status == 304) {
		if (f->conditional && !f->feed) {
			metrics_add(M_ORIGIN_NOT_MODIFIED, 1);
			*unchanged = true;
			return 0;
		}
		snprintf(f->error, sizeof(f->error), "unexpected 304 Not Modified");
		return -EPROTO;
	}
	return commit_download(f);
}

/* A fault being retried shows in status and health before the download gives up. */
static void note_retry(struct transfer *t, const char *error)
{
	struct dataset *d = t->ds;

	pthread_mutex_lock(&d->lock);
	d->retrying = true;
	snprintf(d->error, sizeof(d->error), "%.200s (retrying)", error);
	pthread_mutex_unlock(&d->lock);
}

/* Exponential from retry_delay, capped, with +-25% jitter; at least what the origin asked. */
static double backoff_seconds(const struct fetch *f, int attempt)
{
	return config_backoff(config, attempt, f->retry_after, (unsigned)f->t->ds->index);
}

static bool transient(int rc)
{
	return rc == -EAGAIN || rc == -EBADMSG;
}

static int fetch_with_retries(struct fetch *f, bool *unchanged)
{
	const char *file = transfer_file(f->t);
	int attempts = (int)config->retries + 1;
	int rc;

	for (int attempt = 1, restarts = 0;; attempt++) {
		rc = fetch_once(f, unchanged);
		if (rc == 0 || rc == -ECANCELED)
			return rc;
		if (rc == -EBADMSG || rc == -ESTALE)
			abandon_feed(f); /* corrupt, or a new version: start from scratch */
		if (rc == -ESTALE && restarts++ < MAX_RESTARTS) {
			log_info("%s: %s; starting over", file, f->error);
			attempt--; /* as when the first connection sees the new version */
			continue;
		}
		if (rc == -ESTALE) {
			snprintf(f->error, sizeof(f->error), "the origin kept changing the file");
			rc = -EAGAIN;
		}
		if (!transient(rc) || attempt >= attempts || f->segment_gave_up)
			return rc;
		double wait = backoff_seconds(f, attempt);
		note_retry(f->t, f->error);
		log_warn("%s: %s; retrying in %.2f s (attempt %d of %d)", file, f->error, wait,
			 attempt + 1, attempts);
		metrics_add(M_RETRIES, 1);
		if (sleep_unless_cancelled(f->t, wait))
			return -ECANCELED;
	}
}

static int slot_acquire(struct transfer *t)
{
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&slots_lock);
	while (slots_used >= config->concurrency) {
		if (transfer_cancelled(t)) {
			rc = -ECANCELED;
			break;
		}
		clock_deadline(CLOCK_REALTIME, &ts, POLL_NS);
		pthread_cond_timedwait(&slots_free, &slots_lock, &ts);
	}
	if (!rc)
		slots_used++;
	pthread_mutex_unlock(&slots_lock);
	return rc;
}

static void slot_release(void)
{
	pthread_mutex_lock(&slots_lock);
	slots_used--;
	pthread_cond_signal(&slots_free);
	pthread_mutex_unlock(&slots_lock);
}

/*
 * With the shared tier: the newer of the local copy and the container's is
 * the version to revalidate; a cold file is read from the container without
 * asking the origin at all.
 */
static void consult_blob(struct fetch *f)
{
	char err[256];

	if (!store_azure_enabled() || f->t->force)
		return;
	if (store_azure_lookup(transfer_file(f->t), &f->blob, err, sizeof(err))) {
		f->blob.etag[0] = f->blob.last_modified[0] = '\0';
		return;
	}
	if (!f->conditional) {
		f->from_blob = true;
	} else if (!meta_same_version(&f->old, &f->blob) &&
		   f->blob.fetched_at > f->old.fetched_at) {
		f->old = f->blob;
		f->old_is_blob = true;
	}
}

static bool blob_known(const struct fetch *f)
{
	return f->blob.etag[0] || f->blob.last_modified[0];
}

/* Puts the committed copy of file into the container; a failure only degrades health. */
void upload_copy(const char *file, const struct meta *m)
{
	char err[256];
	int fd, rc;

	if (!store_azure_enabled() || store->ops->open(store, file, &fd))
		return;
	double started = clock_mono();
	rc = store_azure_upload(file, fd, m, err, sizeof(err));
	close(fd);
	if (rc == -EBUSY) /* another host is uploading it: its copy will do */
		log_info("%s: not uploaded: %s", file, err);
	else if (rc)
		log_error("%s: upload to the container failed: %s", file, err);
	else
		log_info("%s: uploaded %lld bytes to the container in %.1f s", file,
			 (long long)m->size, clock_mono() - started);
}

/*
 * Single flight across hosts: whoever holds the dataset's lease fetches from
 * the origin; the others wait for the version it puts in the container and
 * read it from there. Without a lease (the container failing) each goes alone.
 */
static struct store_azure_lease *take_turn(struct fetch *f)
{
	const char *file = transfer_file(f->t);
	struct store_azure_lease *l = NULL;
	struct meta now;
	char err[256];

	for (bool said = false;; said = true) {
		int rc = store_azure_lock(file, &l, err, sizeof(err));
		if (rc != -EBUSY && rc != 0)
			return NULL;
		/* Also once locked: the last holder may have just put a new version in. */
		if (store_azure_lookup(file, &now, err, sizeof(err)) == 0 &&
		    (!blob_known(f) || !meta_same_version(&now, &f->blob))) {
			store_azure_unlock(l);
			f->blob = now;
			f->from_blob = true;
			f->conditional = false;
			f->old_is_blob = false;
			return NULL;
		}
		if (rc == 0)
			return l;
		if (!said)
			log_info("%s: another host is fetching it; waiting for the container",
				 file);
		if (sleep_unless_cancelled(f->t, 1.0))
			return NULL;
	}
}

/* Runs the fetch, from the container when it has the version, else the origin. */
static int fetch_tiered(struct fetch *f, bool *unchanged)
{
	int rc = fetch_with_retries(f, unchanged);

	if (rc == 0 && *unchanged && f->old_is_blob) {
		/* The origin still has the container's version: read it from there. */
		*unchanged = false;
		f->conditional = false;
		f->from_blob = true;
		rc = fetch_with_retries(f, unchanged);
	}
	if (rc && rc != -ECANCELED && f->from_blob) {
		log_warn("%s: the container failed (%s); reading from the origin",
			 transfer_file(f->t), f->error);
		f->from_blob = false;
		rc = fetch_with_retries(f, unchanged);
	}
	return rc;
}

static void *download_main(void *arg)
{
	struct transfer *t = arg;
	struct dataset *d = t->ds;
	struct fetch f = {.t = t, .fd = -1, .total = -1};
	struct store_azure_lease *lease = NULL;
	bool unchanged = false;
	double started = clock_mono();
	int rc;

	snprintf(f.url, sizeof(f.url), "%s%s", config->origin, catalog_file(d->index, KIND_GZ));
	snprintf(f.shown, sizeof(f.shown), "%s%s", config->origin_shown,
		 catalog_file(d->index, KIND_GZ));
	budget_init(&f.budget, config->cache_dir, "download", config->max_size);
	pthread_mutex_lock(&d->lock);
	f.conditional = d->cached && !t->force;
	f.old = d->gz;
	pthread_mutex_unlock(&d->lock);
	rc = slot_acquire(t);
	if (rc == 0) {
		dataset_set_phase(t, DS_DOWNLOADING);
		consult_blob(&f);
		if (store_azure_enabled() && !f.from_blob)
			lease = take_turn(&f);
		resume_partial(&f);
		log_debug("%s: GET %s%s", transfer_file(t), f.from_blob ? "(container)" : f.shown,
			  f.conditional ? " (conditional)" : "");
		rc = fetch_tiered(&f, &unchanged);
		slot_release();
	} else {
		snprintf(f.error, sizeof(f.error), "cancelled");
	}
	stop_segments(&f); /* before the temporary is checkpointed or dropped */
	if (rc) {
		if (f.feed && (rc == -EAGAIN || rc == -ECANCELED) && f.written > 0 &&
		    (f.next.etag[0] || f.next.last_modified[0]))
			checkpoint(&f); /* the next attempt, or the next mount, resumes */
		else if (f.feed)
			store->ops->discard_temp(store, transfer_file(t));
		if (f.feed && !f.published)
			feed_unref(f.feed); /* a resumed feed nobody saw */
		metrics_add(M_DOWNLOADS_FAILED, 1);
		if (rc != -ECANCELED)
			log_error("%s: download failed after %llu bytes in %.1f s: %s",
				  transfer_file(t), (unsigned long long)f.written,
				  clock_mono() - started, f.error);
		else
			log_info("%s: download cancelled after %llu bytes in %.1f s",
				 transfer_file(t), (unsigned long long)f.written,
				 clock_mono() - started);
	} else if (unchanged) {
		pthread_mutex_lock(&d->lock);
		d->checked_at = clock_wall();
		pthread_mutex_unlock(&d->lock);
		log_info("%s: unchanged (304) in %.1f s", transfer_file(t), clock_mono() - started);
		if (store_azure_enabled() &&
		    (!blob_known(&f) || !meta_same_version(&f.old, &f.blob)))
			upload_copy(transfer_file(t), &f.old); /* the container lags behind */
	} else {
		metrics_add(M_DOWNLOADS_OK, 1);
		log_info("%s: downloaded %llu bytes from the %s in %.1f s", transfer_file(t),
			 (unsigned long long)f.written, f.from_blob ? "container" : "origin",
			 clock_mono() - started);
		if (!f.from_blob)
			upload_copy(transfer_file(t), &f.next);
	}
	store_azure_unlock(lease);
	gunzip_free(f.gz);
	finish_transfer(t, rc, rc == 0 && !unchanged, f.error);
	return NULL;
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
	pthread_condattr_t attr;
	int rc;

	d->index = index;
	if ((rc = pthread_mutex_init(&d->lock, NULL)))
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
	d->resume_pending = has_partial(index);
	return 0;
}

int datasets_init(const struct config *cfg, struct store *st)
{
	int rc;

	config = cfg;
	store = st;
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
	if (d->cached && !d->download && clock_wall() - d->checked_at > (double)config->max_age) {
		log_info("%s: older than max_age; revalidating", catalog_file(d->index, KIND_GZ));
		start_locked(d, KIND_GZ, false);
	}
}

/* d->lock held. */
static int open_committed_locked(struct dataset *d, struct dataset_reader *r, enum file_kind kind)
{
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
	t = d->download ? d->download : d->extract;
	if (t) {
		info->state = t->phase;
		info->bytes_total = -1;
		if (t->feed) {
			feed_progress(t->feed, &info->bytes_done, &info->bytes_total, &ended, &err);
			double secs = clock_mono() - t->body_started;
			info->rate_bps = secs > 0.05 ? (double)info->bytes_done / secs : 0;
		}
	} else {
		info->state = d->failed	     ? DS_FAILED
			      : d->extracted ? DS_EXTRACTED
			      : d->cached    ? DS_CACHED
					     : DS_ABSENT;
		info->bytes_total = d->cached ? d->gz.size : 0;
		info->bytes_done = (uint64_t)info->bytes_total;
	}
	pthread_mutex_unlock(&d->lock);
}
