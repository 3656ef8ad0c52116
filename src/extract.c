/* extract.c - the extraction engine; see extract.h */
#include "extract.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "config.h"
#include "dataset_engine.h"
#include "feed.h"
#include "gunzip.h"
#include "log.h"
#include "metrics.h"
#include "replicate.h"
#include "spool.h"
#include "store.h"

#define CHUNK		    (256 * 1024)
#define MAX_SOURCE_SWITCHES 3

/* Set by extract_init() before any thread exists; read-only afterwards. */
static const struct config *config;
static struct store *store;

void extract_init(const struct config *cfg, struct store *st)
{
	config = cfg;
	store = st;
}

struct extract {
	struct transfer *t;
	int src_fd;	       /* the committed .tsv.gz, or -1 when following a download */
	struct feed *src_feed; /* the download's feed when following; a reference */
	struct meta src;       /* version of the source, once known */
	int fd;		       /* the temporary .tsv; owned by feed */
	struct feed *feed;     /* owned by t->feed */
	struct spool *spool;   /* writes the .tsv behind the decoder */
	uint64_t in, out;      /* bytes of .tsv.gz read, bytes of .tsv handed to the spool */
	struct budget budget;  /* what the .tsv may grow to: a gzip bomb stops here */
	char error[256];
};

/* On the spool's thread: the bytes [0, end) of the .tsv are in its temporary. */
static void landed(void *ctx, uint64_t end)
{
	struct extract *x = ctx;

	feed_grow(x->feed, end);
}

_Static_assert(SPOOL_SLOT_BYTES >= GUNZIP_CHUNK, "the decoder decodes into the spool's slots");

/* The decoder decodes straight into the spool's next free slot. */
static int out_buffer(void *ctx, void **buf)
{
	struct extract *x = ctx;
	int rc = spool_buffer(x->spool, buf);

	if (rc)
		snprintf(x->error, sizeof(x->error), "cannot write the temporary: %s",
			 strerror(-rc));
	return rc;
}

static int write_out(void *ctx, const void *buf, size_t len)
{
	struct extract *x = ctx;
	int rc = budget_grow(&x->budget, x->out + len, x->error, sizeof(x->error));

	if (rc)
		return rc;
	if ((rc = spool_put(x->spool, buf, len))) {
		snprintf(x->error, sizeof(x->error), "cannot write the temporary: %s",
			 strerror(-rc));
		return rc;
	}
	x->out += len;
	metrics_add(M_INFLATED_BYTES, len);
	return 0;
}

static int pick_source(struct extract *x)
{
	return dataset_source_open(x->t, &x->src_feed, &x->src_fd, &x->src, x->error,
				   sizeof(x->error));
}

static ssize_t read_source(struct extract *x, void *buf)
{
	int64_t n;

	if (x->src_fd >= 0) {
		ssize_t r = pread(x->src_fd, buf, CHUNK, (off_t)x->in);
		return r < 0 ? -errno : r;
	}
	n = feed_wait(x->src_feed, x->in, CHUNK, 1, transfer_cancelled, x->t);
	if (n <= 0)
		return n;
	n = pread(feed_fd(x->src_feed), buf, (size_t)n, (off_t)x->in);
	return n < 0 ? -errno : n;
}

/* After following a download: the version it committed must be what we read. */
static int settle_source(struct extract *x)
{
	int rc;

	if (!x->src_feed)
		return 0;
	if ((rc = dataset_source_settle(x->t, x->in, &x->src)))
		snprintf(x->error, sizeof(x->error), "the download did not complete");
	return rc;
}

static int decompress(struct extract *x)
{
	struct gunzip *gz = gunzip_new(write_out, x);
	char *buf = malloc(CHUNK);
	ssize_t n;
	int rc = -ENOMEM;

	x->spool = spool_new(x->fd, landed, x);
	if (!gz || !buf || !x->spool) {
		snprintf(x->error, sizeof(x->error), "out of memory");
		goto out;
	}
	gunzip_output(gz, out_buffer);
	while ((n = read_source(x, buf)) > 0) {
		if ((rc = gunzip_write(gz, buf, (size_t)n))) {
			if (rc == -EBADMSG)
				snprintf(x->error, sizeof(x->error),
					 "corrupt gzip data near byte %llu",
					 (unsigned long long)x->in);
			goto out;
		}
		x->in += (uint64_t)n;
	}
	if (n < 0) {
		rc = (int)n;
		if (rc == -ECANCELED || rc == -EINTR)
			rc = -ECANCELED;
		else if (x->src_feed && dataset_source_next_feed(x->t, &x->src_feed))
			rc = -ESTALE; /* the download abandoned its feed (see abandon_feed) */
		else
			dataset_source_error(x->t, x->error, sizeof(x->error));
		goto out;
	}
	rc = gunzip_finish(gz);
	if (rc)
		snprintf(x->error, sizeof(x->error), "corrupt gzip data: the stream is truncated");
	else if ((rc = spool_finish(x->spool)))
		snprintf(x->error, sizeof(x->error), "cannot write the temporary: %s",
			 strerror(-rc));
out:
	if (transfer_cancelled(x->t))
		rc = -ECANCELED;
	spool_free(x->spool);
	x->spool = NULL;
	free(buf);
	gunzip_free(gz);
	return rc;
}

static int commit_extract(struct extract *x)
{
	struct meta m = x->src;
	struct dataset_version *keep;
	int rc = 0;

	m.size = (int64_t)x->out;
	m.tsv_size = -1;
	m.fetched_at = clock_wall();
	if (!(keep = dataset_version_dup(x->fd, &rc)) ||
	    (rc = store->ops->commit(store, transfer_file(x->t), x->fd, &m))) {
		dataset_version_put(keep);
		snprintf(x->error, sizeof(x->error), "cannot store the decompression: %s",
			 strerror(-rc));
		return rc;
	}
	if (dataset_commit_tsv(x->t, keep, &m)) {
		/* A download committed a newer .tsv.gz meanwhile: never pair it with this .tsv. */
		store->ops->evict(store, transfer_file(x->t));
		snprintf(x->error, sizeof(x->error),
			 "superseded: a newer download arrived meanwhile");
		return -ESTALE;
	}
	replicate_enqueue(transfer_file(x->t), &m, NULL); /* as the seed did; never read back */
	return 0;
}

static int begin_output(struct extract *x)
{
	/* The size is known from the verified .tsv.gz, unless following its download. */
	int rc = budget_expect(&x->budget, x->src_feed ? -1 : x->src.tsv_size, 0, x->error,
			       sizeof(x->error));

	if (rc)
		return rc;
	if ((rc = store->ops->create_temp(store, transfer_file(x->t), &x->fd))) {
		snprintf(x->error, sizeof(x->error), "cannot create a temporary: %s",
			 strerror(-rc));
		return rc;
	}
	x->feed = feed_new(x->fd, x->src_feed ? -1 : x->src.tsv_size);
	if (!x->feed) {
		close(x->fd);
		snprintf(x->error, sizeof(x->error), "out of memory");
		return -ENOMEM;
	}
	x->in = x->out = 0;
	dataset_publish_feed(x->t, x->feed, DS_EXTRACTING);
	return 0;
}

static int run_extract(struct extract *x)
{
	int rc;

	if ((rc = pick_source(x)))
		return rc;
	for (int switches = 0;; switches++) {
		if ((rc = begin_output(x)))
			return rc;
		rc = decompress(x);
		if (rc != -ESTALE || switches == MAX_SOURCE_SWITCHES)
			break;
		log_info(
		    "%s: the download started over on a new version; so does the decompression",
		    transfer_file(x->t));
		feed_finish(x->feed, -EIO);
		dataset_publish_feed(x->t, NULL, DS_EXTRACTING);
		x->feed = NULL;
	}
	if (rc == -ESTALE)
		snprintf(x->error, sizeof(x->error), "the origin kept changing the file");
	if (rc || (rc = settle_source(x)))
		return rc;
	return commit_extract(x);
}

int extract_run(struct transfer *t, bool *changed, char *error, size_t errlen)
{
	struct extract x = {.t = t, .src_fd = -1, .fd = -1};
	double started = clock_mono();
	int rc;

	budget_init(&x.budget, config->cache_dir, "decompression", config->max_size);
	rc = run_extract(&x);

	if (x.src_fd >= 0)
		close(x.src_fd);
	feed_unref(x.src_feed);
	if (rc) {
		if (x.feed)
			store->ops->discard_temp(store, transfer_file(t));
		metrics_add(M_EXTRACTIONS_FAILED, 1);
		if (rc != -ECANCELED)
			log_error("%s: decompression failed after %llu bytes in %.1f s: %s",
				  transfer_file(t), (unsigned long long)x.out,
				  clock_mono() - started, x.error);
	} else {
		metrics_add(M_EXTRACTIONS_OK, 1);
		log_info("%s: decompressed %llu bytes in %.1f s", transfer_file(t),
			 (unsigned long long)x.out, clock_mono() - started);
	}
	*changed = rc == 0;
	snprintf(error, errlen, "%s", x.error);
	return rc;
}
