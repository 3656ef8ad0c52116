/* azure_blob.c - see azure_blob.h */
#include "azure_blob.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http.h"

#define REQUEST_TIMEOUT_S 300
#define MAX_HEADERS	  (AZURE_META_MAX + 16)
#define HEADER_NAME_MAX	  (AZURE_META_NAME + 16)
#define HEADER_VALUE_MAX  (AZURE_META_VALUE + 64)
#define LIST_BODY_MAX	  (32 * 1024 * 1024) /* one page of 5000 blobs with metadata */

/* One request and its response. Owned by one thread for one call. */
struct request {
	const struct azure_blob_client *cl;
	const char *op;	       /* for messages: "put block" */
	const char *verb;      /* GET, HEAD, PUT, DELETE */
	const char *container; /* for messages and the URL */
	const char *name;      /* NULL for a container operation */
	char where[1100];      /* "container/name", for messages */
	char *url;	       /* owned */
	struct azure_header h[MAX_HEADERS];
	char names[MAX_HEADERS][HEADER_NAME_MAX];
	char values[MAX_HEADERS][HEADER_VALUE_MAX];
	size_t nh;
	const char *body; /* PUT: the request body */
	size_t body_len;
	size_t body_sent;
	const struct azure_blob_read *rd; /* a streamed GET */
	size_t body_max;		  /* bytes of a 2xx body kept (List Blobs); 0: none */

	long status;
	struct azure_blob_props props;
	int64_t content_length; /* -1 unknown */
	int64_t range_total;	/* Content-Range's total; -1 unknown */
	char error_code[64];
	char lease_id[64];
	int lease_time;
	bool has_lease_time;
	bool body_overflow; /* the response body exceeded body_max */
	char *resp;	    /* kept response body, NUL-terminated; owned */
	size_t resp_len;
};

/* ------------------------------------------------------------ metadata */

static bool valid_meta_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len >= AZURE_META_NAME || !islower((unsigned char)*n))
		return false;
	for (; *n; n++)
		if (!islower((unsigned char)*n) && !isdigit((unsigned char)*n))
			return false;
	return true;
}

static bool valid_meta_value(const char *v)
{
	size_t len = strlen(v);

	if (len >= AZURE_META_VALUE || (len && (v[0] == ' ' || v[len - 1] == ' ')))
		return false;
	for (; *v; v++)
		if (*v < 0x20 || *v > 0x7e)
			return false;
	return true;
}

const char *azure_blob_meta_get(const struct azure_meta *m, const char *name)
{
	for (size_t i = 0; i < m->count; i++)
		if (strcasecmp(m->item[i].name, name) == 0)
			return m->item[i].value;
	return NULL;
}

/* Stores without validation (received metadata); false if it does not fit. */
static bool meta_store(struct azure_meta *m, const char *name, size_t name_len, const char *value)
{
	size_t i;

	if (name_len >= AZURE_META_NAME || strlen(value) >= AZURE_META_VALUE)
		return false;
	for (i = 0; i < m->count; i++)
		if (strlen(m->item[i].name) == name_len &&
		    strncasecmp(m->item[i].name, name, name_len) == 0)
			break;
	if (i == AZURE_META_MAX)
		return false;
	memcpy(m->item[i].name, name, name_len);
	m->item[i].name[name_len] = '\0';
	strcpy(m->item[i].value, value);
	if (i == m->count)
		m->count++;
	return true;
}

int azure_blob_meta_set(struct azure_meta *m, const char *name, const char *value)
{
	if (!valid_meta_name(name) || !valid_meta_value(value))
		return -EINVAL;
	return meta_store(m, name, strlen(name), value) ? 0 : -ENOSPC;
}

/* ------------------------------------------------------------ requests */

static int add_header(struct request *r, const char *name, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->nh == MAX_HEADERS || strlen(name) >= HEADER_NAME_MAX)
		return -EINVAL;
	va_start(ap, fmt);
	n = vsnprintf(r->values[r->nh], HEADER_VALUE_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= HEADER_VALUE_MAX)
		return -EINVAL;
	strcpy(r->names[r->nh], name);
	r->h[r->nh].name = r->names[r->nh];
	r->h[r->nh].value = r->values[r->nh];
	r->nh++;
	return 0;
}

static int add_meta_headers(struct request *r, const struct azure_meta *m)
{
	char name[HEADER_NAME_MAX];
	int rc = 0;

	for (size_t i = 0; m && !rc && i < m->count; i++) {
		if (!valid_meta_name(m->item[i].name) || !valid_meta_value(m->item[i].value))
			return -EINVAL;
		snprintf(name, sizeof(name), "x-ms-meta-%s", m->item[i].name);
		rc = add_header(r, name, "%s", m->item[i].value);
	}
	return rc;
}

/* Escapes each '/'-separated segment of path onto f. */
static int write_escaped_path(FILE *f, const char *path)
{
	for (;;) {
		size_t n = strcspn(path, "/");
		char *e = http_escape(path, n);

		if (!e)
			return -ENOMEM;
		fputs(e, f);
		free(e);
		if (!path[n])
			return 0;
		fputc('/', f);
		path += n + 1;
	}
}

/* ENDPOINT/CONTAINER[/NAME][?query][&SAS]; query is already escaped. */
static int build_url(struct request *r, const char *query)
{
	const struct azure_cred *c = r->cl->cred;
	size_t len = 0;
	FILE *f = open_memstream(&r->url, &len);
	int rc;

	if (!f)
		return -ENOMEM;
	fprintf(f, "%s/", c->endpoint);
	rc = write_escaped_path(f, r->container);
	if (!rc && r->name) {
		fputc('/', f);
		rc = write_escaped_path(f, r->name);
	}
	if (query && *query)
		fprintf(f, "?%s", query);
	if (c->sas)
		fprintf(f, "%c%s", query && *query ? '&' : '?', c->sas);
	if (ferror(f) && !rc)
		rc = -ENOMEM;
	if (fclose(f) != 0 && !rc)
		rc = -ENOMEM;
	return rc;
}

static int start(struct request *r, const struct azure_blob_client *cl, const char *op,
		 const char *verb, const char *container, const char *name, const char *query)
{
	memset(r, 0, sizeof(*r));
	r->cl = cl;
	r->op = op;
	r->verb = verb;
	r->container = container;
	r->name = name;
	snprintf(r->where, sizeof(r->where), "%s%s%s", container, name ? "/" : "",
		 name ? name : "");
	return build_url(r, query);
}

static void finish_request(struct request *r)
{
	if (r->url && r->cl->cred->sas)
		azure_auth_wipe(r->url, strlen(r->url)); /* it carries the SAS */
	free(r->url);
	free(r->resp);
	r->url = NULL;
	r->resp = NULL;
}

/* ------------------------------------------------------------ response headers */

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int64_t parse_int64(const char *v)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	return errno || end == v || *end || n < 0 ? -1 : (int64_t)n;
}

static void reset_response(struct request *r, long status)
{
	r->status = status;
	memset(&r->props, 0, sizeof(r->props));
	r->props.size = -1;
	r->content_length = -1;
	r->range_total = -1;
	r->error_code[0] = r->lease_id[0] = '\0';
	r->has_lease_time = false;
}

static void parse_header(struct request *r, const char *line, size_t n)
{
	struct azure_blob_props *p = &r->props;
	char v[HEADER_VALUE_MAX];
	const char *colon = memchr(line, ':', n), *s;
	size_t name_len, vlen;
	long long a, b, total;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		copy_value(v, sizeof(v), line, n); /* curl does not NUL-terminate it */
		s = strchr(v, ' ');
		reset_response(r, s ? strtol(s + 1, NULL, 10) : 0);
		return;
	}
	if (!colon)
		return;
	name_len = (size_t)(colon - line);
	for (s = colon + 1, vlen = n - name_len - 1; vlen && isspace((unsigned char)*s); s++)
		vlen--;
	while (vlen && isspace((unsigned char)s[vlen - 1]))
		vlen--;
	copy_value(v, sizeof(v), s, vlen);
#define IS(h) (name_len == sizeof(h) - 1 && strncasecmp(line, h, name_len) == 0)
	if (name_len > 10 && strncasecmp(line, "x-ms-meta-", 10) == 0) {
		if (vlen >= AZURE_META_VALUE || !meta_store(&p->meta, line + 10, name_len - 10, v))
			p->meta.overflow = true;
	} else if (IS("etag")) {
		copy_value(p->etag, sizeof(p->etag), s, vlen);
	} else if (IS("last-modified")) {
		copy_value(p->last_modified, sizeof(p->last_modified), s, vlen);
		p->mtime = http_parse_date(v);
	} else if (IS("content-length")) {
		r->content_length = parse_int64(v);
	} else if (IS("content-range")) {
		if (sscanf(v, "bytes %lld-%lld/%lld", &a, &b, &total) == 3 && total > 0)
			r->range_total = total;
	} else if (IS("content-type")) {
		copy_value(p->content_type, sizeof(p->content_type), s, vlen);
	} else if (IS("x-ms-lease-state")) {
		copy_value(p->lease_state, sizeof(p->lease_state), s, vlen);
	} else if (IS("x-ms-lease-status")) {
		copy_value(p->lease_status, sizeof(p->lease_status), s, vlen);
	} else if (IS("x-ms-lease-id")) {
		copy_value(r->lease_id, sizeof(r->lease_id), s, vlen);
	} else if (IS("x-ms-lease-time")) {
		int64_t t = parse_int64(v);
		/* A lease lasts 60 s at most: anything else is no answer. */
		r->has_lease_time = t >= 0 && t <= 60;
		r->lease_time = r->has_lease_time ? (int)t : 0;
	} else if (IS("x-ms-error-code")) {
		copy_value(r->error_code, sizeof(r->error_code), s, vlen);
	}
#undef IS
}

static void on_header(void *ctx, const char *line, size_t n)
{
	parse_header(ctx, line, n);
}

/* ------------------------------------------------------------ bodies */

static bool is_success(long status)
{
	return status >= 200 && status < 300;
}

/* The whole blob's size: Content-Range's total for a 206, else Content-Length. */
static void settle_props(struct request *r)
{
	r->props.size = r->status == 206 ? r->range_total : r->content_length;
}

/* A 2xx: a streamed read hands its properties over before the first byte. */
static int on_response(void *ctx, long status)
{
	struct request *r = ctx;

	(void)status;
	settle_props(r);
	return r->rd && r->rd->on_props ? r->rd->on_props(r->rd->ctx, &r->props) : 0;
}

static int keep_body(struct request *r, const char *buf, size_t n)
{
	char *grown;

	if (r->resp_len + n > r->body_max) {
		r->body_overflow = true;
		return -EPROTO;
	}
	grown = realloc(r->resp, r->resp_len + n + 1);
	if (!grown)
		return -ENOMEM;
	memcpy(grown + r->resp_len, buf, n);
	r->resp = grown;
	r->resp_len += n;
	r->resp[r->resp_len] = '\0';
	return 0;
}

static int on_body(void *ctx, const void *buf, size_t n)
{
	struct request *r = ctx;

	return r->rd ? r->rd->on_body(r->rd->ctx, buf, n) : keep_body(r, buf, n);
}

static size_t body_read(void *ctx, char *buf, size_t cap)
{
	struct request *r = ctx;
	size_t n = r->body_len - r->body_sent;

	if (n > cap)
		n = cap;
	memcpy(buf, r->body + r->body_sent, n);
	r->body_sent += n;
	return n;
}

/* The read's own check, and the client's (an unmount stops uploads and leases too). */
static int cancelled(void *ctx)
{
	const struct request *r = ctx;

	return (r->rd && r->rd->cancelled && r->rd->cancelled(r->rd->ctx)) ||
	       (r->cl->cancelled && r->cl->cancelled(r->cl->cancel_ctx));
}

/* ------------------------------------------------------------ performing */

static int add_standard_headers(struct request *r)
{
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	int rc;

	if (!gmtime_r(&now, &tm) || !strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm))
		return -EIO;
	rc = add_header(r, "x-ms-date", "%s", date);
	if (!rc)
		rc = add_header(r, "x-ms-version", "%s", AZURE_API_VERSION);
	if (!rc && strcmp(r->verb, "PUT") == 0)
		rc = add_header(r, "Content-Length", "%zu", r->body_len);
	if (!rc && r->cl->cred->key) {
		char auth[HEADER_VALUE_MAX];

		rc = azure_auth_sign(r->cl->cred, r->verb, r->url, r->h, r->nh, auth, sizeof(auth));
		if (!rc)
			rc = add_header(r, "Authorization", "%s", auth);
	}
	return rc;
}

void azure_blob_error_code(const char *body, char *code, size_t cap)
{
	const char *s, *e;

	if (!(s = strstr(body, "<Code>")))
		return;
	s += 6;
	e = strstr(s, "</Code>");
	if (e)
		copy_value(code, cap, s, (size_t)(e - s));
	for (char *p = code; *p; p++)
		if (!isalnum((unsigned char)*p))
			*p = '?'; /* it goes into a log line */
}

static int classify_status(const struct request *r)
{
	long st = r->status;
	int rc;

	if (st == 409)
		return strcmp(r->error_code, "ContainerAlreadyExists") == 0 ||
			       strcmp(r->error_code, "BlobAlreadyExists") == 0
			   ? -EEXIST
			   : -EBUSY;
	if (st == 412)
		return -ESTALE;
	if (st == 416)
		return -ERANGE;
	if (st == 404) /* http's table also has 410, which the service never sends */
		return -ENOENT;
	rc = http_status_errno(st);
	return rc ? rc : -EPROTO; /* a 304 or no status: not an answer we asked for */
}

/* The answer of a response that arrived (rc of http_perform 0). */
static int outcome(struct request *r, const struct http_result *res, char *err, size_t errlen)
{
	int rc;

	if (is_success(r->status))
		return 0;
	/* The <Code> of an error body when the header did not carry it (HEAD has no body). */
	if (!r->error_code[0])
		azure_blob_error_code(res->error_body, r->error_code, sizeof(r->error_code));
	rc = classify_status(r);
	snprintf(err, errlen, "Azure %s %s: HTTP %ld%s%s", r->op, r->where, r->status,
		 r->error_code[0] ? " " : "", r->error_code);
	return rc;
}

/* Signs and sends r; the response is in r. 0 or -errno with err set. */
static int perform(struct request *r, char *err, size_t errlen)
{
	const struct azure_blob_client *cl = r->cl;
	long whole = cl->timeout_seconds > 0 ? cl->timeout_seconds : REQUEST_TIMEOUT_S;
	struct http_header h[MAX_HEADERS];
	struct http_call c = {
	    .verb = r->verb,
	    .url = r->url,
	    .headers = h,
	    .body_len = strcmp(r->verb, "PUT") == 0 ? (int64_t)r->body_len : -1,
	    .body_read = body_read,
	    .cafile = cl->cafile,
	    .connect_seconds = cl->connect_seconds,
	    .stall_seconds = cl->stall_seconds,
	    .total_seconds = r->rd ? 0 : whole, /* a streamed read lasts what the blob takes */
	    .cancelled = cancelled,
	    .cancel_ctx = r,
	    .on_header = on_header,
	    .on_response = on_response,
	    .on_body = on_body,
	    .ctx = r,
	};
	char inner[512];
	struct http_result *res;
	int rc;

	snprintf(err, errlen, "ok");
	reset_response(r, 0);
	rc = add_standard_headers(r);
	if (rc) {
		snprintf(err, errlen, "Azure %s %s: cannot sign the request", r->op, r->where);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	/* Content-Length is curl's to send, from the body's length. */
	for (size_t i = 0; i < r->nh; i++)
		if (strcasecmp(r->h[i].name, "Content-Length") != 0)
			h[c.nheaders++] = (struct http_header){r->h[i].name, r->h[i].value};
	res = malloc(sizeof(*res));
	if (!res) {
		snprintf(err, errlen, "Azure %s: cannot start a transfer", r->op);
		return -ENOMEM;
	}
	rc = http_perform(&c, res, inner, sizeof(inner));
	if (rc == -EPROTO && r->body_overflow) {
		snprintf(err, errlen, "Azure %s %s: response larger than %zu bytes", r->op,
			 r->where, r->body_max);
	} else if (rc) {
		char clean[sizeof(inner) + 64];

		azure_auth_redact(inner, clean, sizeof(clean)); /* curl's text may hold the URL */
		snprintf(err, errlen, "Azure %s %s: %s", r->op, r->where, clean);
	} else {
		rc = outcome(r, res, err, errlen);
	}
	free(res);
	return rc;
}

static int invalid(char *err, size_t errlen, const char *op, const char *what)
{
	snprintf(err, errlen, "Azure %s: %s", op, what);
	return -EINVAL;
}

/* ------------------------------------------------------------ operations */

int azure_blob_create_container(const struct azure_blob_client *cl, const char *container,
				char *err, size_t errlen)
{
	struct request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = start(r, cl, "create container", "PUT", container, NULL, "restype=container");
	if (!rc)
		rc = perform(r, err, errlen);
	finish_request(r);
	free(r);
	return rc == -EEXIST ? 0 : rc;
}

int azure_blob_props(const struct azure_blob_client *cl, const char *container, const char *name,
		     struct azure_blob_props *p, char *err, size_t errlen)
{
	struct request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = start(r, cl, "properties", "HEAD", container, name, NULL);
	if (!rc)
		rc = perform(r, err, errlen);
	*p = r->props;
	finish_request(r);
	free(r);
	return rc;
}

int azure_blob_get(const struct azure_blob_client *cl, const char *container, const char *name,
		   const struct azure_blob_read *rd, char *err, size_t errlen)
{
	struct request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = start(r, cl, "read", "GET", container, name, NULL);
	r->rd = rd;
	if (!rc && rd->length > 0)
		rc = add_header(r, "x-ms-range", "bytes=%" PRIu64 "-%" PRIu64, rd->offset,
				rd->offset + rd->length - 1);
	else if (!rc && rd->offset > 0)
		rc = add_header(r, "x-ms-range", "bytes=%" PRIu64 "-", rd->offset);
	if (!rc && rd->if_match)
		rc = add_header(r, "If-Match", "%s", rd->if_match);
	if (!rc)
		rc = perform(r, err, errlen);
	else if (rc == -EINVAL)
		rc = invalid(err, errlen, "read", "ETag too long");
	finish_request(r);
	free(r);
	return rc;
}

/* The headers common to Put Blob and Put Block List. */
static int add_put_headers(struct request *r, const struct azure_blob_put *o)
{
	const char *type = o && o->content_type ? o->content_type : "application/octet-stream";
	int rc = add_header(r, "x-ms-blob-content-type", "%s", type);

	if (!rc && o && o->content_md5)
		rc = add_header(r, "x-ms-blob-content-md5", "%s", o->content_md5);
	if (!rc && o && o->lease_id)
		rc = add_header(r, "x-ms-lease-id", "%s", o->lease_id);
	if (!rc && o && o->if_absent)
		rc = add_header(r, "If-None-Match", "*");
	if (!rc && o)
		rc = add_meta_headers(r, o->meta);
	return rc;
}

int azure_blob_put(const struct azure_blob_client *cl, const char *container, const char *name,
		   const void *buf, size_t len, const struct azure_blob_put *o, char *err,
		   size_t errlen)
{
	char md5[AZURE_MD5_BASE64_SIZE];
	struct request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = start(r, cl, "put", "PUT", container, name, NULL);
	r->body = buf;
	r->body_len = len;
	if (!rc && (rc = azure_auth_md5_base64(buf, len, md5)) == 0)
		rc = add_header(r, "Content-MD5", "%s", md5);
	if (!rc)
		rc = add_header(r, "x-ms-blob-type", "BlockBlob");
	if (!rc && (rc = add_put_headers(r, o)) == -EINVAL)
		rc = invalid(err, errlen, "put", "invalid metadata or header value");
	else if (!rc)
		rc = perform(r, err, errlen);
	finish_request(r);
	free(r);
	return rc;
}

int azure_blob_upload_id(char id[AZURE_UPLOAD_ID_SIZE])
{
	return azure_auth_random_hex((AZURE_UPLOAD_ID_SIZE - 1) / 2, id);
}

int azure_blob_block_id(const char *upload_id, unsigned index, char id[AZURE_BLOCK_ID_SIZE])
{
	char plain[AZURE_UPLOAD_ID_SIZE + 16];
	size_t n = strlen(upload_id);

	if (n != AZURE_UPLOAD_ID_SIZE - 1 || strspn(upload_id, "0123456789abcdef") != n ||
	    index > AZURE_BLOCK_INDEX_MAX)
		return -EINVAL;
	snprintf(plain, sizeof(plain), "%s%09u", upload_id, index);
	return azure_auth_base64(plain, n + 9, id, AZURE_BLOCK_ID_SIZE) ? -EINVAL : 0;
}

int azure_blob_put_block(const struct azure_blob_client *cl, const char *container,
			 const char *name, const char *block_id, const void *buf, size_t len,
			 const char *lease_id, char *err, size_t errlen)
{
	char md5[AZURE_MD5_BASE64_SIZE], query[256];
	char *id = http_escape(block_id, strlen(block_id));
	struct request *r = malloc(sizeof(*r));
	int rc = -ENOMEM;

	if (!r || !id)
		goto out;
	if ((size_t)snprintf(query, sizeof(query), "comp=block&blockid=%s", id) >= sizeof(query)) {
		rc = invalid(err, errlen, "put block", "block id too long");
		goto out;
	}
	rc = start(r, cl, "put block", "PUT", container, name, query);
	r->body = buf;
	r->body_len = len;
	if (!rc && (rc = azure_auth_md5_base64(buf, len, md5)) == 0)
		rc = add_header(r, "Content-MD5", "%s", md5);
	if (!rc && lease_id)
		rc = add_header(r, "x-ms-lease-id", "%s", lease_id);
	if (!rc)
		rc = perform(r, err, errlen);
	finish_request(r);
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
			      const struct azure_blob_put *o, char *err, size_t errlen)
{
	struct request *r;
	size_t len = 0;
	char *xml;
	int rc;

	for (size_t i = 0; i < count; i++)
		if (!valid_block_id(block_ids[i]))
			return invalid(err, errlen, "put block list", "a block id is not base64");
	xml = block_list_xml(block_ids, count, &len);
	r = malloc(sizeof(*r));
	rc = r && xml ? start(r, cl, "put block list", "PUT", container, name, "comp=blocklist")
		      : -ENOMEM;
	if (!rc) {
		r->body = xml;
		r->body_len = len;
		if ((rc = add_put_headers(r, o)) == -EINVAL)
			rc = invalid(err, errlen, "put block list",
				     "invalid metadata or header value");
		else if (!rc)
			rc = perform(r, err, errlen);
		finish_request(r);
	}
	free(r);
	free(xml);
	return rc;
}

int azure_blob_delete(const struct azure_blob_client *cl, const char *container, const char *name,
		      const char *lease_id, char *err, size_t errlen)
{
	struct request *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = start(r, cl, "delete", "DELETE", container, name, NULL);
	if (!rc && lease_id)
		rc = add_header(r, "x-ms-lease-id", "%s", lease_id);
	if (!rc)
		rc = perform(r, err, errlen);
	finish_request(r);
	free(r);
	return rc;
}

/* ------------------------------------------------------------ leases */

/* A lease request; r is started by the caller with its action's headers to come. */
static int lease_request(struct request **out, const struct azure_blob_client *cl, const char *op,
			 const char *container, const char *name, const char *action)
{
	struct request *r = malloc(sizeof(*r));
	int rc;

	*out = r;
	if (!r)
		return -ENOMEM;
	rc = start(r, cl, op, "PUT", container, name, "comp=lease");
	return rc ? rc : add_header(r, "x-ms-lease-action", "%s", action);
}

static void lease_done(struct request *r)
{
	if (r)
		finish_request(r);
	free(r);
}

int azure_blob_lease_acquire(const struct azure_blob_client *cl, const char *container,
			     const char *name, int seconds, char id[AZURE_UUID_SIZE], char *err,
			     size_t errlen)
{
	struct request *r;
	char proposed[AZURE_UUID_SIZE];
	int rc;

	id[0] = '\0';
	if (seconds < 15 || seconds > 60)
		return invalid(err, errlen, "lease acquire", "duration must be 15 to 60 seconds");
	rc = lease_request(&r, cl, "lease acquire", container, name, "acquire");
	if (!rc)
		rc = azure_auth_uuid(proposed);
	/* Always with a duration: Azurite breaks the blob on an acquire without one. */
	if (!rc)
		rc = add_header(r, "x-ms-lease-duration", "%d", seconds);
	if (!rc)
		rc = add_header(r, "x-ms-proposed-lease-id", "%s", proposed);
	if (!rc)
		rc = perform(r, err, errlen);
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
	struct request *r;
	int rc = lease_request(&r, cl, "lease renew", container, name, "renew");

	if (!rc)
		rc = add_header(r, "x-ms-lease-id", "%s", id);
	if (!rc)
		rc = perform(r, err, errlen);
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
	struct request *r;
	int rc = lease_request(&r, cl, "lease release", container, name, "release");

	if (!rc)
		rc = add_header(r, "x-ms-lease-id", "%s", id);
	if (!rc)
		rc = perform(r, err, errlen);
	lease_done(r);
	return rc;
}

int azure_blob_lease_break(const struct azure_blob_client *cl, const char *container,
			   const char *name, int break_seconds, int *remaining, char *err,
			   size_t errlen)
{
	struct request *r;
	int rc;

	*remaining = 0;
	if (break_seconds > 60)
		return invalid(err, errlen, "lease break", "break period must be 0 to 60 seconds");
	rc = lease_request(&r, cl, "lease break", container, name, "break");
	if (!rc && break_seconds >= 0)
		rc = add_header(r, "x-ms-lease-break-period", "%d", break_seconds);
	if (!rc)
		rc = perform(r, err, errlen);
	if (!rc)
		*remaining = r->has_lease_time ? r->lease_time : 0;
	lease_done(r);
	return rc;
}

/* ------------------------------------------------------------ listing */

/* An element <tag attrs>inner</tag> or <tag attrs/> found in the response. */
struct xml_el {
	const char *attrs, *attrs_end;
	const char *in, *in_end;
	const char *after;
};

/*
 * The first element named tag in [p, end): 0, -ENOENT if there is none,
 * -EPROTO if it is not closed. By hand: the listing's schema is flat and
 * fixed, and an XML library for it would be the biggest dependency we have.
 * Elements of the same name do not nest in it.
 */
static int xml_find(const char *p, const char *end, const char *tag, struct xml_el *el)
{
	size_t n = strlen(tag);

	for (const char *s = p; s < end && (s = memchr(s, '<', (size_t)(end - s))); s++) {
		const char *gt, *close;

		if ((size_t)(end - s) < n + 2 || memcmp(s + 1, tag, n) != 0 ||
		    !(s[n + 1] == '>' || s[n + 1] == '/' || isspace((unsigned char)s[n + 1])))
			continue;
		gt = memchr(s + n + 1, '>', (size_t)(end - s - n - 1));
		if (!gt)
			return -EPROTO;
		el->attrs = s + n + 1;
		el->attrs_end = gt;
		el->in = el->in_end = el->after = gt + 1;
		if (gt[-1] == '/')
			return 0;
		for (close = gt + 1; close < end; close++)
			if ((size_t)(end - close) >= n + 3 && close[0] == '<' && close[1] == '/' &&
			    memcmp(close + 2, tag, n) == 0 && close[n + 2] == '>')
				break;
		if (close >= end)
			return -EPROTO;
		el->in_end = close;
		el->after = close + n + 3;
		return 0;
	}
	return -ENOENT;
}

static void put_utf8(char *o, size_t *k, unsigned long cp)
{
	if (cp < 0x80) {
		o[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		o[(*k)++] = (char)(0xc0 | (cp >> 6));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		o[(*k)++] = (char)(0xe0 | (cp >> 12));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		o[(*k)++] = (char)(0xf0 | (cp >> 18));
		o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* One entity at s (after '&'); its length through ';' in *used, 0 if malformed. */
static unsigned long xml_entity(const char *s, const char *end, size_t *used)
{
	static const struct {
		const char *name;
		char ch;
	} named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
	const char *semi = memchr(s, ';', (size_t)(end - s));
	unsigned long cp;
	char *stop;

	*used = 0;
	if (!semi || semi - s > 10)
		return 0;
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (strncmp(s, named[i].name, strlen(named[i].name)) == 0) {
			*used = strlen(named[i].name);
			return (unsigned long)named[i].ch;
		}
	if (*s != '#')
		return 0;
	cp = s[1] == 'x' ? strtoul(s + 2, &stop, 16) : strtoul(s + 1, &stop, 10);
	if (stop != semi || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*used = (size_t)(semi - s) + 1;
	return cp;
}

/* The text of [s, end) with entities decoded into out. -EPROTO if malformed or too long. */
static int xml_text(const char *s, const char *end, char *out, size_t cap)
{
	size_t k = 0;

	for (; s < end; s++) {
		char u[4];
		size_t un = 0, used = 0;

		if (*s == '&') {
			unsigned long cp = xml_entity(s + 1, end, &used);

			if (!used)
				return -EPROTO;
			put_utf8(u, &un, cp);
			s += used;
		} else {
			u[un++] = *s;
		}
		if (k + un >= cap)
			return -EPROTO;
		memcpy(out + k, u, un);
		k += un;
	}
	out[k] = '\0';
	return 0;
}

static int xml_field(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
	struct xml_el el;
	int rc = xml_find(p, end, tag, &el);

	out[0] = '\0';
	return rc == -ENOENT ? 0 : rc ? rc : xml_text(el.in, el.in_end, out, cap);
}

/* Names with characters XML cannot carry come percent-encoded (Encoded="true"). */
static int decode_name(const struct xml_el *el, char *name, size_t cap)
{
	char *plain;
	size_t len;
	size_t alen = (size_t)(el->attrs_end - el->attrs);

	if (!memmem(el->attrs, alen, "Encoded=\"true\"", 14))
		return 0;
	plain = http_unescape(name, &len);
	if (!plain)
		return -ENOMEM;
	copy_value(name, cap, plain, len);
	free(plain);
	return len < cap ? 0 : -EPROTO;
}

/* The length of the UTF-8 sequence that c starts, 0 if it starts none. */
static unsigned utf8_length(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	return c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/* Well-formed UTF-8 (RFC 3629), as every blob name is: no overlong forms, no surrogates. */
static bool valid_utf8(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned len = utf8_length(*s);
		uint32_t cp = len == 1 ? *s : *s & (0x7fu >> len);

		if (!len)
			return false;
		for (unsigned k = 1; k < len; k++) {
			if ((s[k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		s += len;
	}
	return true;
}

static int parse_metadata(const char *p, const char *end, struct azure_meta *m)
{
	char tag[AZURE_META_NAME], value[AZURE_META_VALUE];
	struct xml_el el;

	while ((p = memchr(p, '<', (size_t)(end - p))) != NULL) {
		size_t n = strcspn(p + 1, "> /\t\r\n");

		if (n == 0 || n >= sizeof(tag) || p + 1 + n >= end)
			return -EPROTO;
		copy_value(tag, sizeof(tag), p + 1, n);
		if (xml_find(p, end, tag, &el))
			return -EPROTO;
		if (xml_text(el.in, el.in_end, value, sizeof(value)) ||
		    !meta_store(m, tag, n, value))
			m->overflow = true;
		p = el.after;
	}
	return 0;
}

static int parse_blob(const char *p, const char *end, struct azure_blob_item *it)
{
	char size[32];
	struct xml_el el;
	int rc;

	memset(it, 0, sizeof(*it));
	if (xml_find(p, end, "Name", &el) || xml_text(el.in, el.in_end, it->name, sizeof(it->name)))
		return -EPROTO;
	if ((rc = decode_name(&el, it->name, sizeof(it->name))))
		return rc;
	if (!valid_utf8(it->name))
		return -EPROTO;
	if (xml_find(p, end, "Properties", &el) ||
	    xml_field(el.in, el.in_end, "Content-Length", size, sizeof(size)) ||
	    xml_field(el.in, el.in_end, "Etag", it->etag, sizeof(it->etag)) ||
	    xml_field(el.in, el.in_end, "Last-Modified", it->last_modified,
		      sizeof(it->last_modified)) ||
	    xml_field(el.in, el.in_end, "Content-Type", it->content_type, sizeof(it->content_type)))
		return -EPROTO;
	it->size = parse_int64(size);
	if (it->size < 0)
		return -EPROTO;
	if (it->last_modified[0])
		it->mtime = http_parse_date(it->last_modified);
	rc = xml_find(p, end, "Metadata", &el);
	return rc == -ENOENT ? 0 : rc ? rc : parse_metadata(el.in, el.in_end, &it->meta);
}

static int parse_blobs(const char *p, const char *end, struct azure_blob_item *it,
		       int (*each)(void *ctx, const struct azure_blob_item *it), void *ctx)
{
	struct xml_el el;
	int rc;

	while ((rc = xml_find(p, end, "Blob", &el)) == 0) {
		if ((rc = parse_blob(el.in, el.in_end, it)) || (rc = each(ctx, it)))
			return rc;
		p = el.after;
	}
	return rc == -ENOENT ? 0 : rc;
}

int azure_blob_parse_listing(const char *body, size_t len,
			     int (*each)(void *ctx, const struct azure_blob_item *it), void *ctx,
			     char *marker, size_t markcap)
{
	const char *end = body + len;
	struct azure_blob_item *it;
	struct xml_el page, blobs;
	int rc;

	marker[0] = '\0';
	if (xml_find(body, end, "EnumerationResults", &page))
		return -EPROTO;
	rc = xml_field(page.in, page.in_end, "NextMarker", marker, markcap);
	if (rc)
		return rc;
	rc = xml_find(page.in, page.in_end, "Blobs", &blobs);
	if (rc)
		return rc == -ENOENT ? 0 : rc; /* no <Blobs>: an empty page */
	it = malloc(sizeof(*it));
	if (!it)
		return -ENOMEM;
	rc = parse_blobs(blobs.in, blobs.in_end, it, each, ctx);
	free(it);
	return rc;
}

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
	struct request *r = malloc(sizeof(*r));
	char marker[1024] = "";
	int rc = 0;

	if (!r)
		return -ENOMEM;
	do {
		char *query = list_query(prefix, page_size, marker);

		rc = query ? start(r, cl, "list", "GET", container, NULL, query) : -ENOMEM;
		free(query);
		r->body_max = LIST_BODY_MAX;
		if (!rc)
			rc = perform(r, err, errlen);
		if (!rc)
			rc = azure_blob_parse_listing(r->resp ? r->resp : "", r->resp_len,
						      list_each, &stop, marker, sizeof(marker));
		if (rc == -EPROTO && !stop.rc)
			snprintf(err, errlen, "Azure list %s: malformed listing", container);
		finish_request(r);
	} while (!rc && marker[0]);
	free(r);
	return stop.rc ? stop.rc : rc;
}
