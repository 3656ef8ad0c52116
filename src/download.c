/* download.c - the download engine; see download.h */
#include "download.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "config.h"
#include "dataset_engine.h"
#include "feed.h"
#include "gunzip.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "replicate.h"
#include "retry.h"
#include "segment.h"
#include "store.h"
#include "store_azure.h"
#include "tier.h"

#define CHUNK		 (256 * 1024)
#define CHECKPOINT_BYTES (8u << 20)
#define CHECKPOINT_S	 1.0
#define POLL_NS		 (50 * 1000 * 1000)
#define MAX_RESTARTS	 3 /* new versions seen by segments before a download counts a fault */
/* on_body's own code: segment 0 is complete, the first connection stops there. */
#define SEGMENT0_DONE (-EALREADY)

/* Set by download_init() before any thread exists; read-only afterwards. */
static const struct config *config;
static struct store *store;

/* Download slots: at most config->concurrency downloads talk to the origin. */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_free = PTHREAD_COND_INITIALIZER;
static unsigned slots_used;			 /* guarded by slots_lock */
static const struct tier *origin = &tier_origin; /* see download_use_origin() */

void download_init(const struct config *cfg, struct store *st)
{
	config = cfg;
	store = st;
	tier_init(cfg);
}

void download_use_origin(const struct tier *t)
{
	origin = t;
}

struct fetch {
	struct transfer *t;
	struct tier_plan plan; /* the tier read, the version revalidated */
	struct meta next;      /* the version being received */
	int64_t total;	       /* its size, -1 unknown */
	int fd;		       /* the temporary; owned by feed */
	struct feed *feed;     /* owned by t->feed once published */
	bool published;	       /* readers can see feed: its version is confirmed */
	struct gunzip *gz;     /* verifies the stream as it arrives */
	uint64_t written;      /* bytes of next in the temporary */
	uint64_t durable;      /* bytes covered by the last checkpoint */
	uint64_t flushed;      /* bytes whose writeback was started (feed_flush_hint) */
	double checkpointed_at;
	double retry_after;    /* the origin asked to wait this long (429/503) */
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
	struct meta served = f->next;

	if (f->published)
		return;
	f->published = true;
	/* Its size is the one a stat gives from now on, whatever the HEAD at mount said. */
	served.size = f->total;
	served.tsv_size = -1;
	dataset_announce_download(f->t, &served);
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
	if (f->segs || !f->plan.tier->splits || f->total <= 0 ||
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
	metrics_add(f->plan.tier->bytes, len);
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
	struct dataset_version *keep;
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
	if (!(keep = dataset_version_dup(f->fd, &rc)) ||
	    (rc = store->ops->commit(store, transfer_file(t), f->fd, &f->next))) {
		dataset_version_put(keep);
		snprintf(f->error, sizeof(f->error), "cannot store the download: %s",
			 strerror(-rc));
		return rc;
	}
	dataset_commit_gz(t, keep, &f->next);
	return 0;
}

/* The next GET of f: where the last attempt stopped, tied to its version, or conditional. */
static void build_get(struct fetch *f, struct tier_get *g)
{
	memset(g, 0, sizeof(*g));
	g->file = transfer_file(f->t);
	g->url = f->url;
	g->version = &f->plan.blob;
	g->cancelled = transfer_cancelled;
	g->cancel_ctx = f->t;
	if (f->feed && f->written > 0) {
		g->from = f->written;
		if (f->segs) /* up to where the next segment starts */
			g->to = segments_first_end(f->segs) - 1;
		g->if_range = f->next.etag[0] ? f->next.etag : f->next.last_modified;
	} else if (f->plan.conditional && !f->feed) {
		g->if_none_match = f->plan.old.etag;
		g->if_modified_since = f->plan.old.last_modified;
	}
}

/* One request; 0 with *unchanged set for a 304, or -errno with f->error. */
static int fetch_once(struct fetch *f, bool *unchanged)
{
	struct http_sink sink = {on_response, on_body, f};
	struct tier_get g;
	char err[256];
	long status;
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
	build_get(f, &g);
	rc = f->plan.tier->get(&g, &sink, &status, &f->retry_after, err, sizeof(err));
	if (rc == SEGMENT0_DONE) {
		rc = follow_segments(f);
		return rc ? rc : commit_download(f);
	}
	if (rc) {
		if (!f->error[0])
			snprintf(f->error, sizeof(f->error), "%s", err);
		return rc;
	}
	if (status == 304) {
		if (f->plan.conditional && !f->feed) {
			metrics_add(M_ORIGIN_NOT_MODIFIED, 1);
			*unchanged = true;
			return 0;
		}
		snprintf(f->error, sizeof(f->error), "unexpected 304 Not Modified");
		return -EPROTO;
	}
	return commit_download(f);
}

static bool transient(int rc)
{
	return rc == -EAGAIN || rc == -EBADMSG;
}

static int fetch_with_retries(struct fetch *f, bool *unchanged)
{
	const char *file = transfer_file(f->t);
	struct retry_policy rp = retry_policy_of(config);
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
		if (!transient(rc) || !retry_again(&rp, attempt) || f->segment_gave_up)
			return rc;
		double wait = retry_backoff(&rp, attempt, f->retry_after, (unsigned)f->t->index);
		dataset_note_retry(f->t, f->error);
		log_warn("%s: %s; retrying in %.2f s (attempt %d of %d)", file, f->error, wait,
			 attempt + 1, rp.attempts);
		metrics_add(M_RETRIES, 1);
		if (retry_sleep(wait, transfer_cancelled, f->t))
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

/* Runs the fetch, from the container when it has the version, else the origin. */
static int fetch_tiered(struct fetch *f, bool *unchanged)
{
	int rc = fetch_with_retries(f, unchanged);

	if (rc == 0 && *unchanged && f->plan.old_is_blob) {
		/* The origin still has the container's version: read it from there. */
		*unchanged = false;
		f->plan.conditional = false;
		f->plan.tier = &tier_container;
		rc = fetch_with_retries(f, unchanged);
	}
	if (rc && rc != -ECANCELED && f->plan.tier == &tier_container) {
		log_warn("%s: the container failed (%s); reading from the origin",
			 transfer_file(f->t), f->error);
		f->plan.tier = origin;
		rc = fetch_with_retries(f, unchanged);
	}
	return rc;
}

int download_run(struct transfer *t, bool *changed, char *error, size_t errlen)
{
	struct fetch f = {.t = t, .fd = -1, .total = -1, .plan = {.tier = origin}};
	struct store_azure_lease *lease = NULL;
	bool unchanged = false;
	double started = clock_mono();
	int rc;

	snprintf(f.url, sizeof(f.url), "%s%s", config->origin, transfer_file(t));
	snprintf(f.shown, sizeof(f.shown), "%s%s", config->origin_shown, transfer_file(t));
	budget_init(&f.budget, config->cache_dir, "download", config->max_size);
	dataset_download_basis(t, &f.plan.conditional, &f.plan.old);
	rc = slot_acquire(t);
	if (rc == 0) {
		dataset_set_phase(t, DS_DOWNLOADING);
		tier_plan_consult(&f.plan, transfer_file(t), t->force);
		/* Our own upload of file may hold the lease: take it back, newest wins. */
		if (store_azure_enabled() && f.plan.tier == origin &&
		    !(lease = replicate_take_lease(transfer_file(t))))
			lease =
			    tier_plan_take_turn(&f.plan, transfer_file(t), transfer_cancelled, t);
		resume_partial(&f);
		log_debug("%s: GET %s%s", transfer_file(t),
			  f.plan.tier == &tier_container ? "(container)" : f.shown,
			  f.plan.conditional ? " (conditional)" : "");
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
		dataset_mark_checked(t);
		log_info("%s: unchanged (304) in %.1f s", transfer_file(t), clock_mono() - started);
		if (store_azure_enabled() && (!tier_plan_blob_known(&f.plan) ||
					      !meta_same_version(&f.plan.old, &f.plan.blob))) {
			replicate_enqueue(transfer_file(t), &f.plan.old,
					  lease); /* the container lags */
			lease = NULL; /* handed over: released once the container has it */
		}
	} else {
		metrics_add(M_DOWNLOADS_OK, 1);
		log_info("%s: downloaded %llu bytes from the %s in %.1f s", transfer_file(t),
			 (unsigned long long)f.written, f.plan.tier->name, clock_mono() - started);
		if (f.plan.tier->replicated) {
			replicate_enqueue(transfer_file(t), &f.next, lease);
			lease = NULL;
		}
	}
	store_azure_unlock(lease);
	gunzip_free(f.gz);
	*changed = rc == 0 && !unchanged;
	snprintf(error, errlen, "%s", f.error);
	return rc;
}
