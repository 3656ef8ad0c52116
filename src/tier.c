/* tier.c - the origin and the container behind one interface; see tier.h */
#include "tier.h"

#include <errno.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "retry.h"
#include "store_azure.h"

/* Set by tier_init() before any thread exists; read-only afterwards. */
static const struct config *config;

void tier_init(const struct config *cfg)
{
	config = cfg;
}

static int origin_get(const struct tier_get *g, const struct http_sink *sink, long *status,
		      double *retry_after, char *err, size_t errlen)
{
	struct http_request rq;
	struct http_response rs;
	int rc;

	memset(&rq, 0, sizeof(rq));
	rq.url = g->url;
	rq.cafile = config->cafile;
	rq.stall_seconds = config->timeout;
	rq.connect_seconds = config->timeout < 20 ? config->timeout : 20;
	rq.cancelled = g->cancelled;
	rq.cancel_ctx = g->cancel_ctx;
	rq.if_none_match = g->if_none_match;
	rq.if_modified_since = g->if_modified_since;
	/* Without a validator a range cannot be tied to its version: ask for it all. */
	if (g->from > 0 && g->if_range && *g->if_range) {
		rq.range_from = g->from;
		rq.range_to = g->to;
		rq.if_range = g->if_range;
	}
	metrics_add(M_ORIGIN_REQUESTS, 1);
	rc = http_get(&rq, &rs, sink, err, errlen);
	*status = rs.status;
	*retry_after = rs.retry_after;
	return rc;
}

static int container_get(const struct tier_get *g, const struct http_sink *sink, long *status,
			 double *retry_after, char *err, size_t errlen)
{
	*status = 200;
	return store_azure_get(g->file, g->version, g->from, sink, g->cancelled, g->cancel_ctx,
			       retry_after, err, errlen);
}

const struct tier tier_origin = {
    .name = "origin",
    .bytes = M_ORIGIN_BYTES,
    .splits = true,
    .replicated = true,
    .get = origin_get,
};

const struct tier tier_container = {
    .name = "container",
    .bytes = M_CONTAINER_BYTES,
    .splits = false,
    .replicated = false,
    .get = container_get,
};

void tier_plan_consult(struct tier_plan *p, const char *file, bool force)
{
	char err[256];

	if (!store_azure_enabled() || force)
		return;
	if (store_azure_lookup(file, &p->blob, err, sizeof(err))) {
		p->blob.etag[0] = p->blob.last_modified[0] = '\0';
		return;
	}
	if (!p->conditional) {
		p->tier = &tier_container;
	} else if (!meta_same_version(&p->old, &p->blob) &&
		   p->blob.fetched_at > p->old.fetched_at) {
		p->old = p->blob;
		p->old_is_blob = true;
	}
}

bool tier_plan_blob_known(const struct tier_plan *p)
{
	return p->blob.etag[0] || p->blob.last_modified[0];
}

struct store_azure_lease *tier_plan_take_turn(struct tier_plan *p, const char *file,
					      int (*cancelled)(void *), void *ctx)
{
	struct store_azure_lease *l = NULL;
	struct meta now;
	char err[256];

	for (bool said = false;; said = true) {
		int rc = store_azure_lock(file, &l, err, sizeof(err));
		if (rc != -EBUSY && rc != 0)
			return NULL;
		/* Also once locked: the last holder may have just put a new version in. */
		if (store_azure_lookup(file, &now, err, sizeof(err)) == 0 &&
		    (!tier_plan_blob_known(p) || !meta_same_version(&now, &p->blob))) {
			store_azure_unlock(l);
			p->blob = now;
			p->tier = &tier_container;
			p->conditional = false;
			p->old_is_blob = false;
			return NULL;
		}
		if (rc == 0)
			return l;
		if (!said)
			log_info("%s: another host is fetching it; waiting for the container",
				 file);
		if (retry_sleep(1.0, cancelled, ctx))
			return NULL;
	}
}
