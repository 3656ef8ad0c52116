/* http.c - see http.h */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "version.h"

#define CONNECT_TIMEOUT_S 20
#define STALL_TIMEOUT_S	  60
#define BUFFER_BYTES	  (256 * 1024)
/* Redirects followed per request; only to https from an https origin (see setup). */
#define MAX_REDIRECTS	5
#define HEADER_LINE_MAX 1024

struct http_conn {
	CURL *curl;
};

/* One http_perform() under way. */
struct transfer {
	CURL *curl;
	const struct http_call *c;
	struct http_result *res;
	bool responded;	       /* on_response was called */
	bool cancelled;	       /* our cancel check stopped it */
	bool stalled;	       /* under 1 KiB/s for a whole stall window */
	int cb_err;	       /* a callback's error that stopped it */
	long page_status;      /* the status whose body on_progress is counting */
	curl_off_t page_mark;  /* bytes moved when that status was first seen */
	double mark_time;      /* start of the current stall window (monotonic), 0 none */
	curl_off_t mark_bytes; /* bytes moved when it started */
	int64_t body_sent;     /* of the request body */
};

int http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

static void reset_response(struct http_response *rs, long status)
{
	memset(rs, 0, sizeof(*rs));
	rs->status = status;
	rs->length = -1;
	rs->total = -1;
}

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
	return errno || end == v || n < 0 ? -1 : (int64_t)n;
}

/* "bytes START-END/TOTAL" */
static void parse_content_range(struct http_response *rs, const char *v)
{
	long long start, end, total;

	if (sscanf(v, "bytes %lld-%lld/%lld", &start, &end, &total) == 3 && start >= 0 &&
	    end >= start && total > end) {
		rs->range_start = start;
		rs->total = total;
	}
}

double http_parse_retry_after(const char *v)
{
	int64_t secs = parse_int64(v);
	time_t when;

	if (secs >= 0)
		return (double)secs;
	when = curl_getdate(v, NULL);
	return when > 0 && when > time(NULL) ? difftime(when, time(NULL)) : 0;
}

void http_parse_header(struct http_response *rs, const char *line, size_t n)
{
	char value[512];
	const char *colon = memchr(line, ':', n);
	size_t name_len, vlen;
	const char *v;

	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		const char *sp;

		copy_value(value, sizeof(value), line, n); /* curl does not NUL-terminate it */
		sp = strchr(value, ' ');
		reset_response(rs, sp ? strtol(sp + 1, NULL, 10) : 0);
		return;
	}
	if (!colon)
		return;
	name_len = (size_t)(colon - line);
	v = colon + 1;
	vlen = n - name_len - 1;
	while (vlen && isspace((unsigned char)*v))
		v++, vlen--;
	while (vlen && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	copy_value(value, sizeof(value), v, vlen);
#define IS(name) (name_len == sizeof(name) - 1 && strncasecmp(line, name, name_len) == 0)
	if (IS("etag")) {
		copy_value(rs->etag, sizeof(rs->etag), v, vlen);
	} else if (IS("last-modified")) {
		copy_value(rs->last_modified, sizeof(rs->last_modified), v, vlen);
		time_t t = curl_getdate(value, NULL);
		rs->mtime = t > 0 ? (int64_t)t : 0;
	} else if (IS("content-length")) {
		rs->length = parse_int64(value);
	} else if (IS("content-range")) {
		parse_content_range(rs, value);
	} else if (IS("retry-after")) {
		rs->retry_after = http_parse_retry_after(value);
	} else if (IS("accept-ranges")) {
		rs->accept_ranges = strcasecmp(value, "bytes") == 0;
	}
#undef IS
}

/* ------------------------------------------------------------ the engine */

static bool is_2xx(long status)
{
	return status >= 200 && status < 300;
}

static bool cancel_fired(struct transfer *t)
{
	if (!t->cancelled && t->c->cancelled && t->c->cancelled(t->c->cancel_ctx))
		t->cancelled = true;
	return t->cancelled;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct transfer *t = userdata;
	size_t n = size * nitems;

	if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		char line[64];
		const char *sp;

		copy_value(line, sizeof(line), buf, n); /* curl does not NUL-terminate it */
		sp = strchr(line, ' ');
		t->res->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		t->res->error_len = 0;
		t->res->error_body[0] = '\0';
	}
	if (t->c->on_header)
		t->c->on_header(t->c->ctx, buf, n);
	return n;
}

static int respond(struct transfer *t)
{
	t->responded = true;
	return t->c->on_response ? t->c->on_response(t->c->ctx, t->res->status) : 0;
}

/* An error page is not ours to keep, nor to wait for: one that never ends is cut. */
static size_t keep_error_page(struct transfer *t, const char *buf, size_t n)
{
	struct http_result *res = t->res;
	size_t room = HTTP_ERROR_BODY_MAX - res->error_len, keep = n < room ? n : room;

	memcpy(res->error_body + res->error_len, buf, keep);
	res->error_len += keep;
	res->error_body[res->error_len] = '\0';
	if (keep < n) {
		res->error_cut = true;
		return CURL_WRITEFUNC_ERROR;
	}
	return n;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t n = size * nmemb;
	int rc;

	if (!is_2xx(t->res->status))
		return keep_error_page(t, buf, n);
	if (cancel_fired(t))
		return CURL_WRITEFUNC_ERROR;
	if (!t->responded && (rc = respond(t))) {
		t->cb_err = rc;
		return CURL_WRITEFUNC_ERROR;
	}
	if (t->c->on_body && (rc = t->c->on_body(t->c->ctx, buf, n))) {
		t->cb_err = rc;
		return CURL_WRITEFUNC_ERROR;
	}
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct transfer *t = userdata;
	size_t cap = size * nitems, n;

	if (cancel_fired(t))
		return CURL_READFUNC_ABORT;
	if ((uint64_t)(t->c->body_len - t->body_sent) < cap)
		cap = (size_t)(t->c->body_len - t->body_sent);
	n = cap && t->c->body_read ? t->c->body_read(t->c->ctx, buf, cap) : 0;
	t->body_sent += (int64_t)n;
	return n;
}

/*
 * A stall is under 1 KiB/s over a whole window of stall_seconds, bytes in
 * either direction. curl's own low-speed check averages over a few seconds,
 * so a burst before a stall hides it for longer than asked.
 */
static bool is_stalled(struct transfer *t, curl_off_t now_bytes)
{
	long window = t->c->stall_seconds > 0 ? t->c->stall_seconds : STALL_TIMEOUT_S;
	double now = clock_mono();

	if (t->mark_time == 0 || now_bytes - t->mark_bytes >= 1024 * (curl_off_t)window) {
		t->mark_time = now;
		t->mark_bytes = now_bytes;
		return false;
	}
	return now - t->mark_time >= (double)window;
}

/*
 * The body of a redirect that curl follows never reaches on_body: curl reads
 * it to keep the connection, for ever when it never ends. Counted here.
 */
static bool page_too_long(struct transfer *t, curl_off_t dlnow)
{
	long status = t->res->status;

	if (status != t->page_status) {
		t->page_status = status;
		t->page_mark = dlnow;
	}
	return status != 0 && !is_2xx(status) && dlnow - t->page_mark > HTTP_ERROR_BODY_MAX;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct transfer *t = userdata;

	(void)dltotal, (void)ultotal;
	if (cancel_fired(t))
		return 1;
	if (page_too_long(t, dlnow)) {
		t->res->error_cut = true;
		return 1;
	}
	if (is_stalled(t, dlnow + ulnow)) {
		t->stalled = true;
		return 1;
	}
	return 0;
}

/* curl's list of c's headers; "Expect:" with a body: no 100-continue round trip. */
static int build_headers(const struct http_call *c, struct curl_slist **list)
{
	char line[HEADER_LINE_MAX];
	struct curl_slist *l;
	size_t n = c->nheaders + (c->body_len >= 0);

	for (size_t i = 0; i < n; i++) {
		int len = i < c->nheaders ? snprintf(line, sizeof(line), "%s: %s",
						     c->headers[i].name, c->headers[i].value)
					  : snprintf(line, sizeof(line), "Expect:");

		if (len < 0 || (size_t)len >= sizeof(line))
			return -EINVAL;
		l = curl_slist_append(*list, line);
		if (!l)
			return -ENOMEM;
		*list = l;
	}
	return 0;
}

static bool is_https(const char *url)
{
	return strncasecmp(url, "https://", 8) == 0;
}

/* The schemes a request for url may use, redirects included. */
static const char *schemes(const char *url)
{
	return is_https(url) ? "https" : "http,https";
}

static int set_verb(CURL *h, const struct http_call *c)
{
	int bad = 0;

	if (c->body_len >= 0) {
		/* Upload mode even for an empty body, so that Content-Length: 0 is sent. */
		bad |= curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		bad |= curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body_len);
		bad |= curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		if (strcmp(c->verb, "PUT") != 0)
			bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->verb);
	} else if (strcmp(c->verb, "HEAD") == 0) {
		bad |= curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(c->verb, "GET") != 0) {
		bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->verb);
	}
	return bad;
}

static int setup(struct transfer *t, struct curl_slist *headers, char *errbuf)
{
	const struct http_call *c = t->c;
	CURL *h = t->curl;
	long connect = c->connect_seconds > 0 ? c->connect_seconds : CONNECT_TIMEOUT_S;
	int bad = 0;

	if (curl_easy_setopt(h, CURLOPT_URL, c->url) != CURLE_OK)
		return -EPROTO;
	/* From https, never a downgrade: neither the request nor a redirect may leave TLS. */
	if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, schemes(c->url)) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, schemes(c->url)) != CURLE_OK)
		return -EPROTO;
	bad |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, c->follow ? 1L : 0L);
	bad |= curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect);
	bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT, c->total_seconds > 0 ? c->total_seconds : 0L);
	bad |= curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)BUFFER_BYTES);
	bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "imdbfs/" IMDBFS_VERSION);
	bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	bad |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	bad |= curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
	bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	bad |= curl_easy_setopt(h, CURLOPT_READDATA, t);
	bad |= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	bad |= curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
	bad |= curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	bad |= set_verb(h, c);
	if (c->cafile)
		bad |= curl_easy_setopt(h, CURLOPT_CAINFO, c->cafile);
	return bad ? -EPROTO : 0;
}

int http_status_errno(long status)
{
	if (is_2xx(status) || status == 304)
		return 0;
	if (status == 404 || status == 410)
		return -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status >= 500 || status == 429 || status == 408)
		return -EAGAIN;
	return -EPROTO;
}

static int classify_curl(const struct transfer *t, CURLcode cc, const char *detail, char *err,
			 size_t errlen)
{
	long status = t->res->status;

	if (cc == CURLE_UNSUPPORTED_PROTOCOL && status >= 300 && status < 400) {
		snprintf(err, errlen, "HTTP %ld: refused a redirect %s", status,
			 is_https(t->c->url)
			     ? "away from https (an https origin is never downgraded)"
			     : "to a scheme other than http and https");
		return -EPROTO;
	}
	if (cc == CURLE_TOO_MANY_REDIRECTS) {
		snprintf(err, errlen, "more than %d redirects", MAX_REDIRECTS);
		return -EPROTO;
	}
	snprintf(err, errlen, "%s", *detail ? detail : curl_easy_strerror(cc));
	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return -EACCES;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return -EPROTO;
	default:
		return -EAGAIN;
	}
}

static int outcome(struct transfer *t, CURLcode cc, const char *detail, char *err, size_t errlen)
{
	struct http_result *res = t->res;

	if (t->cancelled) {
		snprintf(err, errlen, "cancelled");
		return -ECANCELED;
	}
	if (t->cb_err) {
		snprintf(err, errlen, "stopped by the receiver");
		return t->cb_err;
	}
	if (t->stalled) {
		snprintf(err, errlen, "stalled: under 1 KiB/s for %ld s",
			 t->c->stall_seconds > 0 ? t->c->stall_seconds : STALL_TIMEOUT_S);
		return -EAGAIN;
	}
	if (res->error_cut && t->c->follow && res->status >= 300 && res->status < 400) {
		snprintf(err, errlen, "HTTP %ld: a redirect whose body does not end", res->status);
		return -EPROTO;
	}
	if (res->error_cut) /* the status is known; the rest of the page does not matter */
		return 0;
	if (cc != CURLE_OK)
		return classify_curl(t, cc, detail, err, errlen);
	if (is_2xx(res->status) && !t->responded && (t->cb_err = respond(t)))
		return t->cb_err;
	return 0;
}

int http_perform(const struct http_call *c, struct http_result *res, char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL;
	struct transfer t = {.c = c, .res = res};
	int rc;

	res->status = 0;
	res->error_cut = false;
	res->error_len = 0;
	res->error_body[0] = '\0';
	snprintf(err, errlen, "ok");
	t.curl = c->conn ? c->conn->curl : curl_easy_init();
	if (!t.curl) {
		snprintf(err, errlen, "cannot start a transfer");
		return -ENOMEM;
	}
	if ((rc = build_headers(c, &headers)) || (rc = setup(&t, headers, errbuf))) {
		snprintf(err, errlen, "cannot set up the request");
		goto out;
	}
	rc = outcome(&t, curl_easy_perform(t.curl), errbuf, err, errlen);
out:
	curl_slist_free_all(headers);
	/* A kept handle forgets this request (its buffers die here) but keeps the connection. */
	if (c->conn)
		curl_easy_reset(t.curl);
	else
		curl_easy_cleanup(t.curl);
	return rc;
}

struct http_conn *http_conn_new(void)
{
	struct http_conn *c = calloc(1, sizeof(*c));

	if (c && !(c->curl = curl_easy_init())) {
		free(c);
		return NULL;
	}
	return c;
}

void http_conn_free(struct http_conn *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

/* ------------------------------------------------------------ the origin's GET */

/* One http_get() on the engine. */
struct get {
	const struct http_request *rq;
	struct http_response *rs;
	const struct http_sink *sink;
	bool odd_status; /* a 2xx other than 200 and 206 */
};

static void get_header(void *ctx, const char *line, size_t n)
{
	struct get *g = ctx;

	http_parse_header(g->rs, line, n);
}

static int get_response(void *ctx, long status)
{
	struct get *g = ctx;

	if (status != 200 && status != 206) {
		g->odd_status = true;
		return -EPROTO;
	}
	if (status == 200)
		g->rs->total = g->rs->length;
	return g->sink->on_response ? g->sink->on_response(g->sink->ctx, g->rs) : 0;
}

static int get_body(void *ctx, const void *buf, size_t len)
{
	struct get *g = ctx;

	return g->sink->on_body(g->sink->ctx, buf, len);
}

/* If-None-Match, If-Modified-Since, Range, If-Range: into h (4), their count. */
static size_t get_headers(const struct http_request *rq, struct http_header *h, char *range,
			  size_t rangecap)
{
	size_t n = 0;

	if (rq->if_none_match && *rq->if_none_match)
		h[n++] = (struct http_header){"If-None-Match", rq->if_none_match};
	if (rq->if_modified_since && *rq->if_modified_since)
		h[n++] = (struct http_header){"If-Modified-Since", rq->if_modified_since};
	if (rq->range_from > 0) {
		if (rq->range_to >= rq->range_from)
			snprintf(range, rangecap, "bytes=%" PRIu64 "-%" PRIu64, rq->range_from,
				 rq->range_to);
		else
			snprintf(range, rangecap, "bytes=%" PRIu64 "-", rq->range_from);
		h[n++] = (struct http_header){"Range", range};
		if (rq->if_range && *rq->if_range)
			h[n++] = (struct http_header){"If-Range", rq->if_range};
	}
	return n;
}

static int status_error(long status, char *err, size_t errlen)
{
	snprintf(err, errlen, "HTTP %ld", status);
	return http_status_errno(status);
}

int http_get(const struct http_request *rq, struct http_response *rs, const struct http_sink *sink,
	     char *err, size_t errlen)
{
	struct get g = {.rq = rq, .rs = rs, .sink = sink};
	struct http_header h[4];
	char range[64];
	struct http_call c = {
	    .verb = "GET",
	    .url = rq->url,
	    .headers = h,
	    .nheaders = get_headers(rq, h, range, sizeof(range)),
	    .body_len = -1,
	    .follow = true,
	    .cafile = rq->cafile,
	    .connect_seconds = rq->connect_seconds,
	    .stall_seconds = rq->stall_seconds,
	    .cancelled = rq->cancelled,
	    .cancel_ctx = rq->cancel_ctx,
	    .conn = rq->conn,
	    .on_header = get_header,
	    .on_response = get_response,
	    .on_body = get_body,
	    .ctx = &g,
	};
	struct http_result *res = malloc(sizeof(*res));
	int rc;

	reset_response(rs, 0);
	if (!res) {
		snprintf(err, errlen, "cannot start a transfer");
		return -ENOMEM;
	}
	rc = http_perform(&c, res, err, errlen);
	if (g.odd_status || (!rc && res->status != 304 && !is_2xx(res->status)))
		rc = status_error(res->status, err, errlen);
	free(res);
	return rc;
}

/* ------------------------------------------------------------ helpers */

char *http_escape(const char *s, size_t n)
{
	char *e = n <= INT_MAX ? curl_easy_escape(NULL, s, (int)n) : NULL;
	char *out = e ? strdup(e) : NULL;

	curl_free(e);
	return out;
}

char *http_unescape(const char *s, size_t *len)
{
	int n = 0;
	char *e = curl_easy_unescape(NULL, s, 0, &n);
	char *out = e ? malloc((size_t)n + 1) : NULL;

	if (out) {
		memcpy(out, e, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
	curl_free(e);
	return out;
}

int64_t http_parse_date(const char *s)
{
	time_t t = curl_getdate(s, NULL);

	return t > 0 ? (int64_t)t : 0;
}

/* Whether u has the part: 1, 0, or -1 when curl failed to say. */
static int has_part(CURLU *u, CURLUPart part, CURLUcode absent, char **value)
{
	CURLUcode uc = curl_url_get(u, part, value, 0);

	return uc == CURLUE_OK ? 1 : uc == absent ? 0 : -1;
}

/*
 * curl takes the URL apart, so that what counts as the userinfo is what it
 * will send; a URL without credentials is kept as written (the metadata of
 * existing caches holds it so).
 */
int http_url_redact(const char *url, char **out)
{
	CURLU *u = curl_url();
	char *user = NULL, *password = NULL, *shown = NULL;
	int has_user, has_password, rc = -EINVAL;

	*out = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    (has_user = has_part(u, CURLUPART_USER, CURLUE_NO_USER, &user)) < 0 ||
	    (has_password = has_part(u, CURLUPART_PASSWORD, CURLUE_NO_PASSWORD, &password)) < 0)
		goto out;
	if (!has_user && !has_password) {
		rc = (*out = strdup(url)) ? 0 : -ENOMEM;
		goto out;
	}
	/* A user name without a password is often a token: that is hidden instead. */
	if (curl_url_set(u, has_password ? CURLUPART_PASSWORD : CURLUPART_USER, HTTP_REDACTED, 0) !=
		CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &shown, 0) != CURLUE_OK)
		goto out;
	rc = (*out = strdup(shown)) ? 0 : -ENOMEM;
out:
	curl_free(user);
	curl_free(password);
	curl_free(shown);
	curl_url_cleanup(u);
	return rc;
}
