/* azure_blob.c - see azure_blob.h */
#include "azure_blob.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure_crypto.h"
#include "azure_listing.h"
#include "azure_request.h"
#include "http.h"

#define LIST_BODY_MAX (32 * 1024 * 1024) /* one page of 5000 blobs with metadata */

/* ------------------------------------------------------------ operations */

/* azure_request_perform() for a call its caller may send again: with the wait it asked for. */
static int perform_again(struct azure_request *r, double *retry_after, char *err, size_t errlen)
{
	int rc = azure_request_perform(r, err, errlen);

	*retry_after = rc == -EAGAIN ? r->retry_after : 0;
	return rc;
}

int azure_blob_create_container(const struct azure_blob_client *cl, const char *container,
				char *err, size_t errlen)
{
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, "create container", "PUT", container, NULL,
				 "restype=container");
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	azure_request_finish(r);
	free(r);
	return rc == -EEXIST ? 0 : rc;
}

int azure_blob_props(const struct azure_blob_client *cl, const char *container, const char *name,
		     struct azure_blob_props *p, char *err, size_t errlen)
{
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, "properties", "HEAD", container, name, NULL);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	*p = r->props;
	azure_request_finish(r);
	free(r);
	return rc;
}

int azure_blob_get(const struct azure_blob_client *cl, const char *container, const char *name,
		   const struct azure_blob_read *rd, double *retry_after, char *err, size_t errlen)
{
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	*retry_after = 0;
	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, "read", "GET", container, name, NULL);
	r->rd = rd;
	if (!rc && rd->length > 0)
		rc = azure_request_add_header(r, "x-ms-range", "bytes=%" PRIu64 "-%" PRIu64,
					      rd->offset, rd->offset + rd->length - 1);
	else if (!rc && rd->offset > 0)
		rc = azure_request_add_header(r, "x-ms-range", "bytes=%" PRIu64 "-", rd->offset);
	if (!rc && rd->if_match)
		rc = azure_request_add_header(r, "If-Match", "%s", rd->if_match);
	if (!rc)
		rc = perform_again(r, retry_after, err, errlen);
	else if (rc == -EINVAL)
		rc = azure_request_invalid(err, errlen, "read", "ETag too long");
	azure_request_finish(r);
	free(r);
	return rc;
}

/* The headers common to Put Blob and Put Block List. */
static int add_put_headers(struct azure_request *r, const struct azure_blob_put *o)
{
	const char *type = o && o->content_type ? o->content_type : "application/octet-stream";
	int rc = azure_request_add_header(r, "x-ms-blob-content-type", "%s", type);

	if (!rc && o && o->content_md5)
		rc = azure_request_add_header(r, "x-ms-blob-content-md5", "%s", o->content_md5);
	if (!rc && o && o->lease_id)
		rc = azure_request_add_header(r, "x-ms-lease-id", "%s", o->lease_id);
	if (!rc && o && o->if_absent)
		rc = azure_request_add_header(r, "If-None-Match", "*");
	if (!rc && o)
		rc = azure_request_add_meta_headers(r, o->meta);
	return rc;
}

int azure_blob_put(const struct azure_blob_client *cl, const char *container, const char *name,
		   const void *buf, size_t len, const struct azure_blob_put *o, char *err,
		   size_t errlen)
{
	char md5[AZURE_MD5_BASE64_SIZE];
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, "put", "PUT", container, name, NULL);
	r->body = buf;
	r->body_len = len;
	if (!rc && (rc = azure_crypto_md5_base64(buf, len, md5)) == 0)
		rc = azure_request_add_header(r, "Content-MD5", "%s", md5);
	if (!rc)
		rc = azure_request_add_header(r, "x-ms-blob-type", "BlockBlob");
	if (!rc && (rc = add_put_headers(r, o)) == -EINVAL)
		rc = azure_request_invalid(err, errlen, "put", "invalid metadata or header value");
	else if (!rc)
		rc = azure_request_perform(r, err, errlen);
	azure_request_finish(r);
	free(r);
	return rc;
}

int azure_blob_upload_id(char id[AZURE_UPLOAD_ID_SIZE])
{
	return azure_crypto_random_hex((AZURE_UPLOAD_ID_SIZE - 1) / 2, id);
}

int azure_blob_block_id(const char *upload_id, unsigned index, char id[AZURE_BLOCK_ID_SIZE])
{
	char plain[AZURE_UPLOAD_ID_SIZE + 16];
	size_t n = strlen(upload_id);

	if (n != AZURE_UPLOAD_ID_SIZE - 1 || strspn(upload_id, "0123456789abcdef") != n ||
	    index > AZURE_BLOCK_INDEX_MAX)
		return -EINVAL;
	snprintf(plain, sizeof(plain), "%s%09u", upload_id, index);
	return azure_crypto_base64(plain, n + 9, id, AZURE_BLOCK_ID_SIZE) ? -EINVAL : 0;
}

int azure_blob_put_block(const struct azure_blob_client *cl, const char *container,
			 const char *name, const char *block_id, const void *buf, size_t len,
			 const char *lease_id, double *retry_after, char *err, size_t errlen)
{
	char md5[AZURE_MD5_BASE64_SIZE], query[256];
	char *id = http_escape(block_id, strlen(block_id));
	struct azure_request *r = malloc(sizeof(*r));
	int rc = -ENOMEM;

	*retry_after = 0;
	if (!r || !id)
		goto out;
	if ((size_t)snprintf(query, sizeof(query), "comp=block&blockid=%s", id) >= sizeof(query)) {
		rc = azure_request_invalid(err, errlen, "put block", "block id too long");
		goto out;
	}
	rc = azure_request_start(r, cl, "put block", "PUT", container, name, query);
	r->body = buf;
	r->body_len = len;
	if (!rc && (rc = azure_crypto_md5_base64(buf, len, md5)) == 0)
		rc = azure_request_add_header(r, "Content-MD5", "%s", md5);
	if (!rc && lease_id)
		rc = azure_request_add_header(r, "x-ms-lease-id", "%s", lease_id);
	if (!rc)
		rc = perform_again(r, retry_after, err, errlen);
	azure_request_finish(r);
out:
	free(r);
	free(id);
	return rc;
}

/* <BlockList><Latest>ID</Latest>...</BlockList>; owned by the caller, free(). */
static char *block_list_xml(const char *const *ids, size_t count, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	bool bad;

	if (!f)
		return NULL;
	fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>", f);
	for (size_t i = 0; i < count; i++)
		fprintf(f, "<Latest>%s</Latest>", ids[i]);
	fputs("</BlockList>", f);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(buf);
		return NULL;
	}
	return buf;
}

static bool valid_block_id(const char *id)
{
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && !strchr("+/=", *id))
			return false;
	return true;
}

int azure_blob_put_block_list(const struct azure_blob_client *cl, const char *container,
			      const char *name, const char *const *block_ids, size_t count,
			      const struct azure_blob_put *o, double *retry_after, char *err,
			      size_t errlen)
{
	struct azure_request *r;
	size_t len = 0;
	char *xml;
	int rc;

	*retry_after = 0;
	for (size_t i = 0; i < count; i++)
		if (!valid_block_id(block_ids[i]))
			return azure_request_invalid(err, errlen, "put block list",
						     "a block id is not base64");
	xml = block_list_xml(block_ids, count, &len);
	r = malloc(sizeof(*r));
	rc = r && xml ? azure_request_start(r, cl, "put block list", "PUT", container, name,
					    "comp=blocklist")
		      : -ENOMEM;
	if (!rc) {
		r->body = xml;
		r->body_len = len;
		if ((rc = add_put_headers(r, o)) == -EINVAL)
			rc = azure_request_invalid(err, errlen, "put block list",
						   "invalid metadata or header value");
		else if (!rc)
			rc = perform_again(r, retry_after, err, errlen);
		azure_request_finish(r);
	}
	free(r);
	free(xml);
	return rc;
}

int azure_blob_delete(const struct azure_blob_client *cl, const char *container, const char *name,
		      const char *lease_id, char *err, size_t errlen)
{
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, "delete", "DELETE", container, name, NULL);
	if (!rc && lease_id)
		rc = azure_request_add_header(r, "x-ms-lease-id", "%s", lease_id);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	azure_request_finish(r);
	free(r);
	return rc;
}

/* ------------------------------------------------------------ leases */

/* A lease request; r is started by the caller with its action's headers to come. */
static int lease_request(struct azure_request **out, const struct azure_blob_client *cl,
			 const char *op, const char *container, const char *name,
			 const char *action)
{
	struct azure_request *r = malloc(sizeof(*r));
	int rc;

	*out = r;
	if (!r)
		return -ENOMEM;
	rc = azure_request_start(r, cl, op, "PUT", container, name, "comp=lease");
	return rc ? rc : azure_request_add_header(r, "x-ms-lease-action", "%s", action);
}

static void lease_done(struct azure_request *r)
{
	if (r)
		azure_request_finish(r);
	free(r);
}

int azure_blob_lease_acquire(const struct azure_blob_client *cl, const char *container,
			     const char *name, int seconds, char id[AZURE_UUID_SIZE], char *err,
			     size_t errlen)
{
	struct azure_request *r;
	char proposed[AZURE_UUID_SIZE];
	int rc;

	id[0] = '\0';
	if (seconds < 15 || seconds > 60)
		return azure_request_invalid(err, errlen, "lease acquire",
					     "duration must be 15 to 60 seconds");
	rc = lease_request(&r, cl, "lease acquire", container, name, "acquire");
	if (!rc)
		rc = azure_crypto_uuid(proposed);
	/* Always with a duration: Azurite breaks the blob on an acquire without one. */
	if (!rc)
		rc = azure_request_add_header(r, "x-ms-lease-duration", "%d", seconds);
	if (!rc)
		rc = azure_request_add_header(r, "x-ms-proposed-lease-id", "%s", proposed);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	if (!rc && strcmp(r->lease_id, proposed) != 0) {
		snprintf(err, errlen, "Azure lease acquire %s/%s: the service returned another id",
			 container, name);
		rc = -EPROTO;
	}
	if (!rc)
		memcpy(id, proposed, AZURE_UUID_SIZE);
	lease_done(r);
	return rc;
}

int azure_blob_lease_renew(const struct azure_blob_client *cl, const char *container,
			   const char *name, const char *id, char *err, size_t errlen)
{
	struct azure_request *r;
	int rc = lease_request(&r, cl, "lease renew", container, name, "renew");

	if (!rc)
		rc = azure_request_add_header(r, "x-ms-lease-id", "%s", id);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	/* Azurite renews an expired lease for a wrong id: the id returned tells. */
	if (!rc && strcasecmp(r->lease_id, id) != 0) {
		snprintf(err, errlen, "Azure lease renew %s/%s: the lease was lost", container,
			 name);
		rc = -EBUSY;
	}
	lease_done(r);
	return rc;
}

int azure_blob_lease_release(const struct azure_blob_client *cl, const char *container,
			     const char *name, const char *id, char *err, size_t errlen)
{
	struct azure_request *r;
	int rc = lease_request(&r, cl, "lease release", container, name, "release");

	if (!rc)
		rc = azure_request_add_header(r, "x-ms-lease-id", "%s", id);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	lease_done(r);
	return rc;
}

int azure_blob_lease_break(const struct azure_blob_client *cl, const char *container,
			   const char *name, int break_seconds, int *remaining, char *err,
			   size_t errlen)
{
	struct azure_request *r;
	int rc;

	*remaining = 0;
	if (break_seconds > 60)
		return azure_request_invalid(err, errlen, "lease break",
					     "break period must be 0 to 60 seconds");
	rc = lease_request(&r, cl, "lease break", container, name, "break");
	if (!rc && break_seconds >= 0)
		rc = azure_request_add_header(r, "x-ms-lease-break-period", "%d", break_seconds);
	if (!rc)
		rc = azure_request_perform(r, err, errlen);
	if (!rc)
		*remaining = r->has_lease_time ? r->lease_time : 0;
	lease_done(r);
	return rc;
}

/* ------------------------------------------------------------ listing */

/* restype=container&comp=list&include=metadata[&prefix=..][&maxresults=..][&marker=..] */
static char *list_query(const char *prefix, unsigned page_size, const char *marker)
{
	char *q = NULL, *p = prefix ? http_escape(prefix, strlen(prefix)) : NULL;
	char *m = *marker ? http_escape(marker, strlen(marker)) : NULL;
	char size[32] = "";

	if ((!prefix || p) && (!*marker || m)) {
		if (page_size)
			snprintf(size, sizeof(size), "&maxresults=%u", page_size);
		if (asprintf(&q, "restype=container&comp=list&include=metadata%s%s%s%s%s",
			     p ? "&prefix=" : "", p ? p : "", size, m ? "&marker=" : "",
			     m ? m : "") < 0)
			q = NULL;
	}
	free(p);
	free(m);
	return q;
}

struct list_stop {
	int (*each)(void *ctx, const struct azure_blob_item *it);
	void *ctx;
	int rc; /* each's non-zero return */
};

static int list_each(void *ctx, const struct azure_blob_item *it)
{
	struct list_stop *s = ctx;

	s->rc = s->each(s->ctx, it);
	return s->rc;
}

int azure_blob_list(const struct azure_blob_client *cl, const char *container, const char *prefix,
		    unsigned page_size, int (*each)(void *ctx, const struct azure_blob_item *it),
		    void *ctx, char *err, size_t errlen)
{
	struct list_stop stop = {.each = each, .ctx = ctx};
	struct azure_request *r = malloc(sizeof(*r));
	char marker[1024] = "";
	int rc = 0;

	if (!r)
		return -ENOMEM;
	do {
		char *query = list_query(prefix, page_size, marker);

		rc = query ? azure_request_start(r, cl, "list", "GET", container, NULL, query)
			   : -ENOMEM;
		free(query);
		r->body_max = LIST_BODY_MAX;
		if (!rc)
			rc = azure_request_perform(r, err, errlen);
		if (!rc)
			rc = azure_listing_parse(r->resp ? r->resp : "", r->resp_len, list_each,
						 &stop, marker, sizeof(marker));
		if (rc == -EPROTO && !stop.rc)
			snprintf(err, errlen, "Azure list %s: malformed listing", container);
		azure_request_finish(r);
	} while (!rc && marker[0]);
	free(r);
	return stop.rc ? stop.rc : rc;
}
