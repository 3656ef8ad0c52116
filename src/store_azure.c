/*
 * store_azure.c - the shared tier in an Azure Blob container.
 */
#include "store_azure.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "azure_blob.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"

#define BLOCK_BYTES    (4u << 20) /* a few MiB per Put Block */
#define UPLOADERS      4	  /* blocks in flight; memory: UPLOADERS * BLOCK_BYTES */
#define CONTENT_GZIP   "application/gzip"
#define CONTENT_TSV    "text/tab-separated-values"
#define META_URL       "originurl"
#define META_ETAG      "originetag"
#define META_MODIFIED  "lastmodified"
#define META_MTIME     "mtime"
#define META_SIZE      "size"
#define META_TSV_SIZE  "tsvsize"
#define META_FETCHED   "fetchedat"
#define FUTURE_SLACK_S 86400 /* clocks of hosts differ; a day ahead is not sane */

/* Set once by store_azure_open before any other thread runs; read-only after. */
static struct azure_cred cred;
static struct azure_blob_client client;
static char container[64];
static char location[128];
static char
    our_origin[1024]; /* the origin URL (as shown: redacted) a copy's metadata must record */
static bool enabled;
static atomic_bool stopping;	   /* store_azure_stop: every request ends */
static struct retry_policy policy; /* for the upload's idempotent writes */

static pthread_mutex_t problem_lock = PTHREAD_MUTEX_INITIALIZER;
static char problem[256]; /* guarded by problem_lock */

/* Records how the last call went: rc 0 clears the problem, others set it. */
static int noted(int rc, const char *err)
{
	if (rc == -ENOENT || rc == -ECANCELED)
		return rc; /* answers, not faults */
	pthread_mutex_lock(&problem_lock);
	snprintf(problem, sizeof(problem), "%s", rc ? err : "");
	pthread_mutex_unlock(&problem_lock);
	return rc;
}

static int is_stopping(void *ctx)
{
	(void)ctx;
	return atomic_load(&stopping);
}

/*
 * After failed attempt n of a call that may be sent again as it is (Put
 * Block, Put Block List: the same bytes under the same lease): 0 to send it
 * again, having waited as the retry policy says (at least the service's
 * retry_after); else the answer to keep, rc itself (only transient failures
 * are retried) or -ECANCELED when the store was stopped meanwhile.
 */
static int send_again(int rc, int n, double retry_after, const char *file, char *err, size_t errlen,
		      unsigned salt)
{
	double wait;

	if (rc != -EAGAIN || !retry_again(&policy, n))
		return rc;
	wait = retry_backoff(&policy, n, retry_after, salt);
	log_warn("%s: %s; retrying in %.2f s (attempt %d of %d)", file, err, wait, n + 1,
		 policy.attempts);
	metrics_add(M_RETRIES, 1);
	if (retry_sleep(wait, is_stopping, NULL)) {
		snprintf(err, errlen, "%s: cancelled", file);
		return -ECANCELED;
	}
	return 0;
}

static int ignore_item(void *ctx, const struct azure_blob_item *it)
{
	(void)ctx;
	(void)it;
	return 0;
}

int store_azure_open(const struct config *cfg, config_env_fn env, char *err, size_t errlen)
{
	int rc = azure_auth_from_env(env, &cred, err, errlen);

	if (rc == -ENOENT)
		snprintf(err, errlen,
			 "storage=azure needs AZURE_STORAGE_CONNECTION_STRING, or "
			 "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or "
			 "AZURE_STORAGE_SAS_TOKEN");
	if (rc)
		return rc;
	client =
	    (struct azure_blob_client){.cred = &cred,
				       .cafile = cfg->cafile,
				       .connect_seconds = cfg->timeout < 20 ? cfg->timeout : 20,
				       .stall_seconds = cfg->timeout,
				       .cancelled = is_stopping};
	policy = retry_policy_of(cfg);
	snprintf(container, sizeof(container), "%s", cfg->container);
	snprintf(our_origin, sizeof(our_origin), "%s", cfg->origin_shown);
	snprintf(location, sizeof(location), "Azure Blob Container: %s", container);
	/* The cheap request that proves the account, key and container work. */
	rc = azure_blob_create_container(&client, container, err, errlen);
	if (!rc)
		rc = azure_blob_list(&client, container, "imdbfs-check/", 1, ignore_item, NULL, err,
				     errlen);
	if (rc) {
		azure_auth_free(&cred);
		return rc;
	}
	enabled = true;
	return 0;
}

void store_azure_stop(void)
{
	atomic_store(&stopping, true);
}

void store_azure_close(void)
{
	if (!enabled)
		return;
	enabled = false;
	azure_auth_free(&cred);
}

int store_azure_enabled(void)
{
	return enabled;
}

const char *store_azure_location(void)
{
	return location;
}

void store_azure_problem(char *buf, size_t len)
{
	pthread_mutex_lock(&problem_lock);
	snprintf(buf, len, "%s", problem);
	pthread_mutex_unlock(&problem_lock);
}

/* A whole decimal integer in [lo, hi]; -EPROTO otherwise (junk, overflow, blanks). */
static int strict_int(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	long long n;

	if (!v || !*v || !(isdigit((unsigned char)*v) || *v == '-'))
		return -EPROTO;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || *end || n < lo || n > hi)
		return -EPROTO;
	*out = (int64_t)n;
	return 0;
}

/* The origin URL a copy of file on this host records: the .tsv's is its .tsv.gz's. */
static void expected_url(const char *origin, const char *file, char *out, size_t len)
{
	size_t n = strlen(file);
	bool tsv = n > 4 && strcmp(file + n - 4, ".tsv") == 0;

	snprintf(out, len, "%s%s%s", origin, file, tsv ? ".gz" : "");
}

int store_azure_meta_parse(const struct azure_meta *am, int64_t blob_size, const char *origin,
			   const char *file, double now, struct meta *m, char *why, size_t whylen)
{
	const char *url = azure_meta_get(am, META_URL);
	const char *etag = azure_meta_get(am, META_ETAG);
	const char *modified = azure_meta_get(am, META_MODIFIED);
	const char *fetched = azure_meta_get(am, META_FETCHED);
	int64_t latest = (int64_t)now + FUTURE_SLACK_S, size;
	char want[sizeof(m->url)], *end;

	memset(m, 0, sizeof(*m));
	m->tsv_size = -1;
#define BAD(...) (snprintf(why, whylen, __VA_ARGS__), -EPROTO)
	if (!url)
		return BAD("it has no imdbfs metadata");
	expected_url(origin, file, want, sizeof(want));
	if (strcmp(url, want) != 0)
		return BAD("it is a copy of another origin's file");
	if ((!etag || !*etag) && (!modified || !*modified))
		return BAD("it has neither the origin's ETag nor its Last-Modified");
	if (strict_int(azure_meta_get(am, META_SIZE), 0, STORE_AZURE_SIZE_MAX, &size) ||
	    size != blob_size)
		return BAD("its size metadata is not the blob's size");
	if (strict_int(azure_meta_get(am, META_TSV_SIZE), -1, STORE_AZURE_SIZE_MAX, &m->tsv_size))
		return BAD("its decompressed size is not a size");
	if (strict_int(azure_meta_get(am, META_MTIME), 0, latest, &m->mtime))
		return BAD("its modification time is not a time");
	errno = 0;
	m->fetched_at = fetched ? strtod(fetched, &end) : 0;
	if (!fetched || !*fetched || errno || *end || !(m->fetched_at > 0) ||
	    m->fetched_at > (double)latest)
		return BAD("its fetched time is not a time");
#undef BAD
	snprintf(m->url, sizeof(m->url), "%s", url);
	snprintf(m->etag, sizeof(m->etag), "%s", etag ? etag : "");
	snprintf(m->last_modified, sizeof(m->last_modified), "%s", modified ? modified : "");
	m->size = size;
	return 0;
}

/*
 * The copy's metadata back from the blob's: -ENOENT when it is not a copy
 * this host may serve. A blob without our metadata (another host's upload
 * just begun) is quietly absent; one whose metadata is wrong is not
 * trusted, with a warning, and the file comes from the origin.
 */
static int meta_from_blob(const char *file, const struct azure_blob_props *p, struct meta *m)
{
	char why[128];

	if (store_azure_meta_parse(&p->meta, p->size, our_origin, file, clock_wall(), m, why,
				   sizeof(why)) == 0)
		return 0;
	if (p->meta.count > 0)
		log_warn("%s: the container's copy is not trusted: %s", file, why);
	return -ENOENT;
}

static int meta_to_blob(const struct meta *m, struct azure_meta *am)
{
	char n[32];
	int rc = 0;

	memset(am, 0, sizeof(*am));
	rc |= azure_meta_set(am, META_URL, m->url);
	if (m->etag[0])
		rc |= azure_meta_set(am, META_ETAG, m->etag);
	if (m->last_modified[0])
		rc |= azure_meta_set(am, META_MODIFIED, m->last_modified);
	snprintf(n, sizeof(n), "%" PRId64, m->mtime);
	rc |= azure_meta_set(am, META_MTIME, n);
	snprintf(n, sizeof(n), "%" PRId64, m->size);
	rc |= azure_meta_set(am, META_SIZE, n);
	snprintf(n, sizeof(n), "%" PRId64, m->tsv_size);
	rc |= azure_meta_set(am, META_TSV_SIZE, n);
	snprintf(n, sizeof(n), "%.3f", m->fetched_at);
	rc |= azure_meta_set(am, META_FETCHED, n);
	return rc ? -EINVAL : 0;
}

int store_azure_lookup(const char *file, struct meta *m, char *err, size_t errlen)
{
	struct azure_blob_props p;
	int rc = azure_blob_props(&client, container, file, &p, err, errlen);

	if (!rc && (rc = meta_from_blob(file, &p, m)))
		snprintf(err, errlen, "%s: the container holds no copy to trust", file);
	return noted(rc, err);
}

struct reading {
	const char *file;
	const struct meta *v;
	const struct http_sink *sink;
	uint64_t offset;
	int (*cancelled)(void *);
	void *cancel_ctx;
	char *err;
	size_t errlen;
};

static int reading_cancelled(void *ctx)
{
	struct reading *r = ctx;

	return r->cancelled ? r->cancelled(r->cancel_ctx) : 0;
}

/* The blob's headers as the origin's response for the same bytes. */
static int on_props(void *ctx, const struct azure_blob_props *p)
{
	struct reading *r = ctx;
	struct http_response rs = {.length = -1, .accept_ranges = true};
	struct meta m;

	if (meta_from_blob(r->file, p, &m) || !meta_same_version(&m, r->v)) {
		snprintf(r->err, r->errlen, "the blob changed version while being read");
		return -ESTALE;
	}
	rs.status = r->offset ? 206 : 200;
	snprintf(rs.etag, sizeof(rs.etag), "%s", m.etag);
	snprintf(rs.last_modified, sizeof(rs.last_modified), "%s", m.last_modified);
	rs.mtime = m.mtime;
	rs.total = m.size;
	rs.range_start = (int64_t)r->offset;
	rs.length = m.size - (int64_t)r->offset;
	return r->sink->on_response(r->sink->ctx, &rs);
}

static int on_bytes(void *ctx, const void *buf, size_t len)
{
	struct reading *r = ctx;

	return r->sink->on_body(r->sink->ctx, buf, len);
}

int store_azure_get(const char *file, const struct meta *v, uint64_t offset,
		    const struct http_sink *sink, int (*cancelled)(void *), void *cancel_ctx,
		    double *retry_after, char *err, size_t errlen)
{
	struct reading r = {file, v, sink, offset, cancelled, cancel_ctx, err, errlen};
	struct azure_blob_read rd = {.offset = offset,
				     .on_props = on_props,
				     .on_body = on_bytes,
				     .cancelled = reading_cancelled,
				     .ctx = &r};
	int rc;

	err[0] = '\0';
	rc = azure_blob_get(&client, container, file, &rd, retry_after, err, errlen);
	return noted(rc, err);
}

#define RENEW_S (STORE_AZURE_LEASE_S / 3)

/*
 * A lease on one blob, renewed by a thread of its own. The service, not
 * this struct, is the fence: a write that carries a lease id the blob no
 * longer has fails there (412), however late it arrives. lost only saves
 * the requests that would fail anyway.
 */
struct store_azure_lease {
	char blob[300];
	char id[AZURE_UUID_SIZE];
	pthread_t renewer;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;	   /* guarded by lock */
	_Atomic bool lost; /* the service said the lease is no longer ours */
};

static void *renew_main(void *arg)
{
	struct store_azure_lease *l = arg;
	struct timespec ts;
	char err[256];
	int rc;

	pthread_mutex_lock(&l->lock);
	while (!l->stop && !atomic_load(&l->lost)) {
		clock_deadline(CLOCK_REALTIME, &ts, RENEW_S * 1000000000L);
		if (pthread_cond_timedwait(&l->wake, &l->lock, &ts) == 0 || l->stop)
			continue;
		pthread_mutex_unlock(&l->lock);
		rc = noted(
		    azure_blob_lease_renew(&client, container, l->blob, l->id, err, sizeof(err)),
		    err);
		if (rc == -EBUSY || rc == -ESTALE || rc == -ENOENT) {
			/* Broken, expired and taken, or the blob deleted: it will not come back. */
			atomic_store(&l->lost, true);
			log_warn("%s: lost the lease (%s)", l->blob, err);
		} else if (rc) {
			log_warn("%s: %s", l->blob, err); /* transient: the next renewal may do */
		}
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/*
 * Leases blob, creating it empty first if absent (a lease needs a blob):
 * 0, -EBUSY (another host holds it) or another failure, with err set.
 */
static int lease_take(const char *blob, struct store_azure_lease **out, char *err, size_t errlen)
{
	struct azure_blob_put o = {.if_absent = true};
	struct store_azure_lease *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	snprintf(l->blob, sizeof(l->blob), "%s", blob);
	/* Created once; a leased blob answers 412 to If-None-Match too. */
	rc = azure_blob_put(&client, container, l->blob, "", 0, &o, err, errlen);
	if (rc == 0 || rc == -EEXIST || rc == -ESTALE)
		rc = azure_blob_lease_acquire(&client, container, l->blob, STORE_AZURE_LEASE_S,
					      l->id, err, errlen);
	if (rc == 0) {
		pthread_mutex_init(&l->lock, NULL);
		pthread_cond_init(&l->wake, NULL);
		if (pthread_create(&l->renewer, NULL, renew_main, l) == 0) {
			*out = l;
			return noted(0, err);
		}
		azure_blob_lease_release(&client, container, l->blob, l->id, err, errlen);
		pthread_cond_destroy(&l->wake);
		pthread_mutex_destroy(&l->lock);
		rc = -EAGAIN;
		snprintf(err, errlen, "%s: no thread to renew the lease", l->blob);
	}
	free(l);
	return rc == -EBUSY ? rc : noted(rc, err);
}

/* Stops renewing and releases the lease, unless it was lost already. */
static void lease_drop(struct store_azure_lease *l)
{
	char err[256];

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->wake);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->renewer, NULL);
	if (!atomic_load(&l->lost) &&
	    noted(azure_blob_lease_release(&client, container, l->blob, l->id, err, sizeof(err)),
		  err))
		log_warn("%s: %s", l->blob, err);
	pthread_cond_destroy(&l->wake);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

struct upload {
	struct azure_blob_client cl; /* the tier's client, with the upload's cancel check */
	const char *file;
	int fd;
	uint64_t size;
	unsigned blocks;
	struct store_azure_lease *lease; /* on the blob itself: every write carries its id */
	char upload_id[AZURE_UPLOAD_ID_SIZE];
	pthread_mutex_t lock;
	unsigned next; /* guarded by lock: the next block to send */
	int rc;	       /* guarded by lock: the first failure */
	char err[256]; /* guarded by lock */
	char (*ids)[AZURE_BLOCK_ID_SIZE];
};

static int send_block(struct upload *u, unsigned i, char *buf, char *err, size_t errlen)
{
	uint64_t off = (uint64_t)i * BLOCK_BYTES;
	size_t len = u->size - off < BLOCK_BYTES ? (size_t)(u->size - off) : BLOCK_BYTES;
	size_t got = 0;
	int rc;

	if (atomic_load(&u->lease->lost)) {
		snprintf(err, errlen, "the renewal was refused");
		return -ESTALE;
	}
	while (got < len) {
		ssize_t n = pread(u->fd, buf + got, len - got, (off_t)(off + got));
		if (n <= 0) {
			snprintf(err, errlen, "%s: cannot read the copy to upload", u->file);
			return n < 0 ? -errno : -EIO;
		}
		got += (size_t)n;
	}
	if (azure_blob_block_id(u->upload_id, i, u->ids[i]))
		return -EINVAL;
	for (int n = 1;; n++) {
		double retry_after;

		rc = azure_blob_put_block(&u->cl, container, u->file, u->ids[i], buf, len,
					  u->lease->id, &retry_after, err, errlen);
		if (!rc || (rc = send_again(rc, n, retry_after, u->file, err, errlen, i)))
			break;
	}
	if (!rc)
		metrics_add(M_UPLOADED_BYTES, len);
	return rc;
}

static void *uploader(void *arg)
{
	struct upload *u = arg;
	char *buf = malloc(BLOCK_BYTES);
	char err[256];
	int rc = buf ? 0 : -ENOMEM;

	snprintf(err, sizeof(err), "out of memory");
	for (;;) {
		unsigned i;
		pthread_mutex_lock(&u->lock);
		if (!rc && u->rc == 0 && u->next < u->blocks)
			i = u->next++;
		else
			i = u->blocks;
		if (rc && u->rc == 0) {
			u->rc = rc;
			snprintf(u->err, sizeof(u->err), "%s", err);
		}
		pthread_mutex_unlock(&u->lock);
		if (i == u->blocks)
			break;
		rc = send_block(u, i, buf, err, sizeof(err));
	}
	free(buf);
	return NULL;
}

/* Stages every block, UPLOADERS at a time; 0 or the first failure in u->err. */
static int stage_blocks(struct upload *u)
{
	pthread_t th[UPLOADERS];
	int n = 0;

	for (; n < UPLOADERS && (unsigned)n < u->blocks; n++) {
		if (pthread_create(&th[n], NULL, uploader, u))
			break;
	}
	if (n == 0 && u->blocks > 0)
		uploader(u); /* no thread to spare: this one sends them all */
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	return u->rc;
}

/* Stages the blocks and commits them, every write under the lease u->lease. */
static int upload_leased(struct upload *u, const struct azure_meta *am, char *err, size_t errlen)
{
	struct azure_blob_put o = {.meta = am, .lease_id = u->lease->id};
	const char **ids = calloc(u->blocks ? u->blocks : 1, sizeof(*ids));
	int rc;

	if (!ids) {
		snprintf(err, errlen, "%s: cannot prepare the upload", u->file);
		return -ENOMEM;
	}
	rc = stage_blocks(u);
	if (rc) {
		snprintf(err, errlen, "%s", u->err);
	} else {
		for (unsigned i = 0; i < u->blocks; i++)
			ids[i] = u->ids[i];
		o.content_type = strstr(u->file, ".gz") ? CONTENT_GZIP : CONTENT_TSV;
		for (int n = 1;; n++) {
			double retry_after;

			rc = azure_blob_put_block_list(&u->cl, container, u->file, ids, u->blocks,
						       &o, &retry_after, err, errlen);
			if (!rc ||
			    (rc = send_again(rc, n, retry_after, u->file, err, errlen, u->blocks)))
				break;
		}
	}
	free(ids);
	return rc;
}

int store_azure_upload(const char *file, int fd, const struct meta *m, int (*cancelled)(void *),
		       void *cancel_ctx, char *err, size_t errlen)
{
	struct upload u = {.cl = client, .file = file, .fd = fd, .size = (uint64_t)m->size};
	struct azure_meta am;
	char why[256];
	int rc;

	u.blocks = (unsigned)((u.size + BLOCK_BYTES - 1) / BLOCK_BYTES);
	u.ids = calloc(u.blocks ? u.blocks : 1, sizeof(*u.ids));
	if (!u.ids || meta_to_blob(m, &am) || azure_blob_upload_id(u.upload_id)) {
		free(u.ids);
		snprintf(err, errlen, "%s: cannot prepare the upload", file);
		return -ENOMEM;
	}
	rc = lease_take(file, &u.lease, err, errlen);
	if (rc == -EBUSY) {
		snprintf(err, errlen, "another host is uploading %s", file);
		free(u.ids);
		return rc; /* its copy will do: not a fault */
	}
	if (rc) {
		free(u.ids);
		return rc;
	}
	u.cl.cancelled = cancelled;
	u.cl.cancel_ctx = cancel_ctx;
	pthread_mutex_init(&u.lock, NULL);
	rc = upload_leased(&u, &am, why, sizeof(why));
	if (rc == -ECANCELED) {
		snprintf(err, errlen, "cancelled; nothing committed");
	} else if (rc == -ESTALE || rc == -EBUSY || (rc && atomic_load(&u.lease->lost))) {
		/* 412/409: the blob's lease is no longer ours, and the service refused the write.
		 */
		snprintf(err, errlen,
			 "lost the lease on the blob (broken or taken over by another host); "
			 "nothing committed: %s",
			 why);
		atomic_store(&u.lease->lost, true);
		rc = -ESTALE;
	} else if (rc) {
		snprintf(err, errlen, "%s", why);
	}
	lease_drop(u.lease);
	pthread_mutex_destroy(&u.lock);
	free(u.ids);
	return noted(rc, err);
}

struct listing {
	int (*each)(void *ctx, const struct store_azure_item *it);
	void *ctx;
};

static int list_one(void *ctx, const struct azure_blob_item *it)
{
	struct listing *l = ctx;
	struct store_azure_item out = {0};
	struct azure_blob_props p = {.size = it->size};
	size_t n = strlen(it->name);
	char why[128];

	if (n > 5 && strcmp(it->name + n - 5, ".lock") == 0)
		return 0;
	p.meta = it->meta;
	if (store_azure_meta_parse(&p.meta, p.size, our_origin, it->name, clock_wall(), &out.m, why,
				   sizeof(why)))
		memset(&out.m, 0, sizeof(out.m)); /* listed as the container has it, not trusted */
	out.m.size = it->size;
	out.m.mtime = it->mtime;
	snprintf(out.name, sizeof(out.name), "%s", it->name);
	snprintf(out.content_type, sizeof(out.content_type), "%s", it->content_type);
	return l->each(l->ctx, &out);
}

int store_azure_list(int (*each)(void *ctx, const struct store_azure_item *it), void *ctx,
		     char *err, size_t errlen)
{
	struct listing l = {each, ctx};

	return noted(azure_blob_list(&client, container, NULL, 0, list_one, &l, err, errlen), err);
}

int store_azure_delete(const char *file, char *err, size_t errlen)
{
	return noted(azure_blob_delete(&client, container, file, NULL, err, errlen), err);
}

int store_azure_lock(const char *file, struct store_azure_lease **out, char *err, size_t errlen)
{
	char blob[300];

	snprintf(blob, sizeof(blob), "%s.lock", file);
	return lease_take(blob, out, err, errlen);
}

void store_azure_unlock(struct store_azure_lease *l)
{
	lease_drop(l);
}
