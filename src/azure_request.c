/* azure_request.c - see azure_request.h */
#include "azure_request.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "azure_crypto.h"
#include "azure_sharedkey.h"
#include "http.h"

#define REQUEST_TIMEOUT_S 300

/* ------------------------------------------------------------ requests */

int azure_request_add_header(struct azure_request *r, const char *name, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->nh == AZURE_REQUEST_HEADERS || strlen(name) >= AZURE_REQUEST_HEADER_NAME)
		return -EINVAL;
	va_start(ap, fmt);
	n = vsnprintf(r->values[r->nh], AZURE_REQUEST_HEADER_VALUE, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= AZURE_REQUEST_HEADER_VALUE)
		return -EINVAL;
	strcpy(r->names[r->nh], name);
	r->h[r->nh].name = r->names[r->nh];
	r->h[r->nh].value = r->values[r->nh];
	r->nh++;
	return 0;
}

int azure_request_add_meta_headers(struct azure_request *r, const struct azure_meta *m)
{
	char name[AZURE_REQUEST_HEADER_NAME];
	int rc = 0;

	for (size_t i = 0; m && !rc && i < m->count; i++) {
		if (!azure_meta_valid(m->item[i].name, m->item[i].value))
			return -EINVAL;
		snprintf(name, sizeof(name), "x-ms-meta-%s", m->item[i].name);
		rc = azure_request_add_header(r, name, "%s", m->item[i].value);
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
static int build_url(struct azure_request *r, const char *query)
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

int azure_request_start(struct azure_request *r, const struct azure_blob_client *cl, const char *op,
			const char *verb, const char *container, const char *name,
			const char *query)
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

void azure_request_finish(struct azure_request *r)
{
	if (r->url && r->cl->cred->sas)
		azure_crypto_wipe(r->url, strlen(r->url)); /* it carries the SAS */
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

static void reset_response(struct azure_request *r, long status)
{
	r->status = status;
	memset(&r->props, 0, sizeof(r->props));
	r->props.size = -1;
	r->content_length = -1;
	r->range_total = -1;
	r->error_code[0] = r->lease_id[0] = '\0';
	r->has_lease_time = false;
	r->retry_after = 0;
}

static void parse_header(struct azure_request *r, const char *line, size_t n)
{
	struct azure_blob_props *p = &r->props;
	char v[AZURE_REQUEST_HEADER_VALUE];
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
		if (vlen >= AZURE_META_VALUE ||
		    !azure_meta_store(&p->meta, line + 10, name_len - 10, v))
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
	} else if (IS("retry-after")) {
		r->retry_after = http_parse_retry_after(v);
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
static void settle_props(struct azure_request *r)
{
	r->props.size = r->status == 206 ? r->range_total : r->content_length;
}

/* A 2xx: a streamed read hands its properties over before the first byte. */
static int on_response(void *ctx, long status)
{
	struct azure_request *r = ctx;

	(void)status;
	settle_props(r);
	return r->rd && r->rd->on_props ? r->rd->on_props(r->rd->ctx, &r->props) : 0;
}

static int keep_body(struct azure_request *r, const char *buf, size_t n)
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
	struct azure_request *r = ctx;

	return r->rd ? r->rd->on_body(r->rd->ctx, buf, n) : keep_body(r, buf, n);
}

static size_t body_read(void *ctx, char *buf, size_t cap)
{
	struct azure_request *r = ctx;
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
	const struct azure_request *r = ctx;

	return (r->rd && r->rd->cancelled && r->rd->cancelled(r->rd->ctx)) ||
	       (r->cl->cancelled && r->cl->cancelled(r->cl->cancel_ctx));
}

/* ------------------------------------------------------------ performing */

static int add_standard_headers(struct azure_request *r)
{
	char date[64];
	struct tm tm;
	time_t now = time(NULL);
	int rc;

	if (!gmtime_r(&now, &tm) || !strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm))
		return -EIO;
	rc = azure_request_add_header(r, "x-ms-date", "%s", date);
	if (!rc)
		rc = azure_request_add_header(r, "x-ms-version", "%s", AZURE_API_VERSION);
	if (!rc && strcmp(r->verb, "PUT") == 0)
		rc = azure_request_add_header(r, "Content-Length", "%zu", r->body_len);
	if (!rc && r->cl->cred->key) {
		char auth[AZURE_REQUEST_HEADER_VALUE];

		rc = azure_sharedkey_sign(r->cl->cred, r->verb, r->url, r->h, r->nh, auth,
					  sizeof(auth));
		if (!rc)
			rc = azure_request_add_header(r, "Authorization", "%s", auth);
	}
	return rc;
}

void azure_request_error_code(const char *body, char *code, size_t cap)
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

static int classify_status(const struct azure_request *r)
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
static int outcome(struct azure_request *r, const struct http_result *res, char *err, size_t errlen)
{
	int rc;

	if (is_success(r->status))
		return 0;
	/* The <Code> of an error body when the header did not carry it (HEAD has no body). */
	if (!r->error_code[0])
		azure_request_error_code(res->error_body, r->error_code, sizeof(r->error_code));
	rc = classify_status(r);
	snprintf(err, errlen, "Azure %s %s: HTTP %ld%s%s", r->op, r->where, r->status,
		 r->error_code[0] ? " " : "", r->error_code);
	return rc;
}

/* Signs and sends r; the response is in r. 0 or -errno with err set. */
int azure_request_perform(struct azure_request *r, char *err, size_t errlen)
{
	const struct azure_blob_client *cl = r->cl;
	long whole = cl->timeout_seconds > 0 ? cl->timeout_seconds : REQUEST_TIMEOUT_S;
	struct http_header h[AZURE_REQUEST_HEADERS];
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

int azure_request_invalid(char *err, size_t errlen, const char *op, const char *what)
{
	snprintf(err, errlen, "Azure %s: %s", op, what);
	return -EINVAL;
}
