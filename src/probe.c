/* probe.c - the sizes of the files not cached, asked at mount; see probe.h */
#include "probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dataset.h"
#include "http.h"
#include "log.h"
#include "meta.h"
#include "store_azure.h"

/* Set by probe_start() before the threads exist; read-only while they run. */
static const struct config *config;
static _Atomic bool cancel;

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static struct probe_file results[CATALOG_COUNT]; /* guarded by probe_lock */

/* Written by probe_start() and probe_stop() only (the main and FUSE init/destroy threads). */
static pthread_t threads[CATALOG_COUNT];
static bool started[CATALOG_COUNT];

static int probe_cancelled(void *ctx)
{
	(void)ctx;
	return atomic_load(&cancel);
}

static void head_header(void *ctx, const char *line, size_t n)
{
	http_parse_header(ctx, line, n);
}

/* The origin's HEAD of file into m; 0, or -errno with the reason in err. */
static int ask_origin(const char *file, struct meta *m, char *err, size_t errlen)
{
	struct http_response rs = {.length = -1, .total = -1};
	struct http_result *res = malloc(sizeof(*res));
	char url[1024], why[200];
	struct http_call c = {
	    .verb = "HEAD",
	    .url = url,
	    .body_len = -1,
	    .follow = true,
	    .cafile = config->cafile,
	    .connect_seconds = PROBE_TOTAL_S,
	    .stall_seconds = PROBE_TOTAL_S,
	    .total_seconds = PROBE_TOTAL_S,
	    .cancelled = probe_cancelled,
	    .on_header = head_header,
	    .ctx = &rs,
	};
	int rc;

	if (!res) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "%s%s", config->origin, file);
	rc = http_perform(&c, res, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "the origin's HEAD failed: %.160s", why);
	} else if (res->status != 200) {
		snprintf(err, errlen, "the origin's HEAD answered HTTP %ld", res->status);
		rc = -EPROTO;
	} else if (rs.length < 0) {
		snprintf(err, errlen, "the origin's HEAD gave no Content-Length");
		rc = -EPROTO;
	}
	free(res);
	if (rc)
		return rc;
	memset(m, 0, sizeof(*m));
	snprintf(m->url, sizeof(m->url), "%s%s", config->origin_shown, file);
	snprintf(m->etag, sizeof(m->etag), "%s", rs.etag);
	snprintf(m->last_modified, sizeof(m->last_modified), "%s", rs.last_modified);
	m->mtime = rs.mtime;
	m->size = rs.length;
	m->tsv_size = -1; /* only inflating every byte tells */
	return 0;
}

static void note(int ds, enum probe_outcome outcome, const char *source, const char *error)
{
	pthread_mutex_lock(&probe_lock);
	results[ds].outcome = outcome;
	results[ds].source = source;
	snprintf(results[ds].error, sizeof(results[ds].error), "%s", error);
	pthread_mutex_unlock(&probe_lock);
}

static void *probe_thread(void *arg)
{
	int ds = (int)(intptr_t)arg;
	const char *file = catalog_file(ds, KIND_GZ), *source = "container", *how = "metadata";
	char err[200] = "", azure_err[200] = "";
	struct meta m;
	int rc = -ENOENT;

	/* The container's copy is the one a cold read gets (tier.h), and it knows the .tsv size. */
	if (store_azure_enabled())
		rc = store_azure_lookup(file, &m, azure_err, sizeof(azure_err));
	if (rc && !probe_cancelled(NULL)) {
		source = "origin";
		how = "HEAD";
		rc = ask_origin(file, &m, err, sizeof(err));
		if (rc && azure_err[0] && rc != -ECANCELED)
			log_debug("%s: container: %s", file, azure_err);
	}
	if (rc) {
		if (!err[0])
			snprintf(err, sizeof(err), "cancelled");
		if (rc != -ECANCELED && !probe_cancelled(NULL))
			log_warn("%s: size unknown until it is read: %s", file, err);
		note(ds, PROBE_FAILED, NULL, err);
		return NULL;
	}
	log_debug("%s: %lld bytes, .tsv %lld (the %s's %s)", file, (long long)m.size,
		  (long long)m.tsv_size, source, how);
	dataset_announce(ds, &m);
	note(ds, PROBE_KNOWN, source, "");
	return NULL;
}

void probe_start(const struct config *cfg)
{
	config = cfg;
	atomic_store(&cancel, false);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		int rc;
		if (started[i] || !dataset_wants_probe(i))
			continue;
		note(i, PROBE_RUNNING, NULL, "");
		rc = pthread_create(&threads[i], NULL, probe_thread, (void *)(intptr_t)i);
		started[i] = rc == 0;
		if (rc) {
			log_warn("%s: no thread to ask its size: %s", catalog_file(i, KIND_GZ),
				 strerror(rc));
			note(i, PROBE_FAILED, NULL, "no thread to ask it");
		}
	}
}

void probe_stop(void)
{
	atomic_store(&cancel, true);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (started[i])
			pthread_join(threads[i], NULL);
		started[i] = false;
	}
}

void probe_snapshot(struct probe_file out[CATALOG_COUNT])
{
	pthread_mutex_lock(&probe_lock);
	memcpy(out, results, sizeof(results));
	pthread_mutex_unlock(&probe_lock);
}
