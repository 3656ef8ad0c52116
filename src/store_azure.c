/*
 * store_azure.c - the shared tier in an Azure Blob container.
 */
#include "store_azure.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
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

#define BLOCK_BYTES   (4u << 20) /* a few MiB per Put Block */
#define UPLOADERS     4		 /* blocks in flight; memory: UPLOADERS * BLOCK_BYTES */
#define CONTENT_GZIP  "application/gzip"
#define CONTENT_TSV   "text/tab-separated-values"
#define META_URL      "originurl"
#define META_ETAG     "originetag"
#define META_MODIFIED "lastmodified"
#define META_MTIME    "mtime"
#define META_SIZE     "size"
#define META_TSV_SIZE "tsvsize"
#define META_FETCHED  "fetchedat"

/* Set once by store_azure_open before any other thread runs; read-only after. */
static struct azure_cred cred;
static struct azure_blob_client client;
static char container[64];
static char location[128];
static bool enabled;

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
				       .stall_seconds = cfg->timeout};
	snprintf(container, sizeof(container), "%s", cfg->container);
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

static int64_t meta_number(const struct azure_meta *am, const char *name, int64_t dflt)
{
	const char *v = azure_blob_meta_get(am, name);

	return v ? strtoll(v, NULL, 10) : dflt;
}

/* The copy's metadata back from the blob's; -EPROTO when it is not ours. */
static int meta_from_blob(const struct azure_blob_props *p, struct meta *m)
{
	const char *url = azure_blob_meta_get(&p->meta, META_URL);
	const char *etag = azure_blob_meta_get(&p->meta, META_ETAG);
	const char *modified = azure_blob_meta_get(&p->meta, META_MODIFIED);
	const char *fetched = azure_blob_meta_get(&p->meta, META_FETCHED);

	if (!url || (!etag && !modified))
		return -EPROTO;
	memset(m, 0, sizeof(*m));
	snprintf(m->url, sizeof(m->url), "%s", url);
	snprintf(m->etag, sizeof(m->etag), "%s", etag ? etag : "");
	snprintf(m->last_modified, sizeof(m->last_modified), "%s", modified ? modified : "");
	m->mtime = meta_number(&p->meta, META_MTIME, 0);
	m->size = p->size;
	m->tsv_size = meta_number(&p->meta, META_TSV_SIZE, -1);
	m->fetched_at = fetched ? strtod(fetched, NULL) : 0;
	return m->size == meta_number(&p->meta, META_SIZE, -2) ? 0 : -EPROTO;
}

static int meta_to_blob(const struct meta *m, struct azure_meta *am)
{
	char n[32];
	int rc = 0;

	memset(am, 0, sizeof(*am));
	rc |= azure_blob_meta_set(am, META_URL, m->url);
	if (m->etag[0])
		rc |= azure_blob_meta_set(am, META_ETAG, m->etag);
	if (m->last_modified[0])
		rc |= azure_blob_meta_set(am, META_MODIFIED, m->last_modified);
	snprintf(n, sizeof(n), "%" PRId64, m->mtime);
	rc |= azure_blob_meta_set(am, META_MTIME, n);
	snprintf(n, sizeof(n), "%" PRId64, m->size);
	rc |= azure_blob_meta_set(am, META_SIZE, n);
	snprintf(n, sizeof(n), "%" PRId64, m->tsv_size);
	rc |= azure_blob_meta_set(am, META_TSV_SIZE, n);
	snprintf(n, sizeof(n), "%.3f", m->fetched_at);
	rc |= azure_blob_meta_set(am, META_FETCHED, n);
	return rc ? -EINVAL : 0;
}

int store_azure_lookup(const char *file, struct meta *m, char *err, size_t errlen)
{
	struct azure_blob_props p;
	int rc = azure_blob_props(&client, container, file, &p, err, errlen);

	if (!rc && (rc = meta_from_blob(&p, m)))
		snprintf(err, errlen, "%s: the blob's metadata is not an imdbfs copy's", file);
	return noted(rc, err);
}

struct reading {
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

	if (meta_from_blob(p, &m) || !meta_same_version(&m, r->v)) {
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
		    char *err, size_t errlen)
{
	struct reading r = {v, sink, offset, cancelled, cancel_ctx, err, errlen};
	struct azure_blob_read rd = {.offset = offset,
				     .on_props = on_props,
				     .on_body = on_bytes,
				     .cancelled = reading_cancelled,
				     .ctx = &r};
	int rc;

	err[0] = '\0';
	rc = azure_blob_get(&client, container, file, &rd, err, errlen);
	return noted(rc, err);
}

struct upload {
	const char *file;
	int fd;
	uint64_t size;
	unsigned blocks;
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

	while (got < len) {
		ssize_t n = pread(u->fd, buf + got, len - got, (off_t)(off + got));
		if (n <= 0) {
			snprintf(err, errlen, "%s: cannot read the copy to upload", u->file);
			return n < 0 ? -errno : -EIO;
		}
		got += (size_t)n;
	}
	if (azure_blob_block_id(i, u->ids[i]))
		return -EINVAL;
	rc = azure_blob_put_block(&client, container, u->file, u->ids[i], buf, len, NULL, err,
				  errlen);
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

int store_azure_upload(const char *file, int fd, const struct meta *m, char *err, size_t errlen)
{
	struct upload u = {.file = file, .fd = fd, .size = (uint64_t)m->size};
	struct azure_blob_put o = {0};
	struct azure_meta am;
	const char **ids = NULL;
	int rc;

	u.blocks = (unsigned)((u.size + BLOCK_BYTES - 1) / BLOCK_BYTES);
	u.ids = calloc(u.blocks ? u.blocks : 1, sizeof(*u.ids));
	ids = calloc(u.blocks ? u.blocks : 1, sizeof(*ids));
	if (!u.ids || !ids || meta_to_blob(m, &am)) {
		free(u.ids);
		free(ids);
		snprintf(err, errlen, "%s: cannot prepare the upload", file);
		return -ENOMEM;
	}
	pthread_mutex_init(&u.lock, NULL);
	rc = stage_blocks(&u);
	if (rc) {
		snprintf(err, errlen, "%s", u.err);
	} else {
		for (unsigned i = 0; i < u.blocks; i++)
			ids[i] = u.ids[i];
		o.content_type = strstr(file, ".gz") ? CONTENT_GZIP : CONTENT_TSV;
		o.meta = &am;
		rc = azure_blob_put_block_list(&client, container, file, ids, u.blocks, &o, err,
					       errlen);
	}
	pthread_mutex_destroy(&u.lock);
	free(u.ids);
	free(ids);
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

	if (n > 5 && strcmp(it->name + n - 5, ".lock") == 0)
		return 0;
	p.meta = it->meta;
	if (meta_from_blob(&p, &out.m))
		memset(&out.m, 0, sizeof(out.m));
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

#define RENEW_S (STORE_AZURE_LEASE_S / 3)

struct store_azure_lease {
	char blob[300];
	char id[AZURE_UUID_SIZE];
	pthread_t renewer;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop; /* guarded by lock */
};

static void *renew_main(void *arg)
{
	struct store_azure_lease *l = arg;
	struct timespec ts;
	char err[256];

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		clock_deadline(CLOCK_REALTIME, &ts, RENEW_S * 1000000000L);
		if (pthread_cond_timedwait(&l->wake, &l->lock, &ts) == 0 || l->stop)
			continue;
		pthread_mutex_unlock(&l->lock);
		if (noted(azure_blob_lease_renew(&client, container, l->blob, l->id, err,
						 sizeof(err)),
			  err))
			log_warn("%s: %s", l->blob, err);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int store_azure_lock(const char *file, struct store_azure_lease **out, char *err, size_t errlen)
{
	struct azure_blob_put o = {.if_absent = true};
	struct store_azure_lease *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	snprintf(l->blob, sizeof(l->blob), "%s.lock", file);
	/* The lock blob exists once; a leased one answers 412 to If-None-Match too. */
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

void store_azure_unlock(struct store_azure_lease *l)
{
	char err[256];

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->wake);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->renewer, NULL);
	if (noted(azure_blob_lease_release(&client, container, l->blob, l->id, err, sizeof(err)),
		  err))
		log_warn("%s: %s", l->blob, err);
	pthread_cond_destroy(&l->wake);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
