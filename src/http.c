/* http.c - see http.h */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "version.h"

#define CONNECT_TIMEOUT_S 20
#define BUFFER_BYTES	  (256 * 1024)
/* An error page is read this far, then the transfer ends: its status is the answer. */
#define ERROR_BODY_MAX (4 * 1024)
/* Redirects followed per request; only to https from an https origin (see setup). */
#define MAX_REDIRECTS 5

struct http_conn {
	CURL *curl;
};

struct transfer {
	CURL *curl;
	const struct http_request *rq;
	struct http_response *rs;
	const struct http_sink *sink;
	bool responded;	       /* on_response was called */
	bool cancelled;	       /* our cancel check stopped it */
	bool stalled;	       /* under 1 KiB/s for a whole stall window */
	bool error_cut;	       /* an error or redirect page was cut at ERROR_BODY_MAX */
	size_t error_bytes;    /* of the error page so far */
	long page_status;      /* the status whose body on_progress is counting */
	curl_off_t page_mark;  /* bytes moved when that status was first seen */
	int sink_err;	       /* the sink's error that stopped it */
	double mark_time;      /* start of the current stall window (monotonic), 0 none */
	curl_off_t mark_bytes; /* bytes moved when it started */
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

/* Retry-After is delay-seconds or an HTTP date. */
static double parse_retry_after(const char *v)
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
		rs->retry_after = parse_retry_after(value);
	} else if (IS("accept-ranges")) {
		rs->accept_ranges = strcasecmp(value, "bytes") == 0;
	}
#undef IS
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct transfer *t = userdata;

	http_parse_header(t->rs, buf, size * nitems);
	return size * nitems;
}

static bool is_success(long status)
{
	return status == 200 || status == 206;
}

static int respond(struct transfer *t)
{
	struct http_response *rs = t->rs;

	t->responded = true;
	if (rs->status == 200)
		rs->total = rs->length;
	return t->sink->on_response ? t->sink->on_response(t->sink->ctx, rs) : 0;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct transfer *t = userdata;
	size_t n = size * nmemb;
	int rc;

	if (!is_success(t->rs->status)) {
		/* An error page is not ours to keep, nor to wait for: one that never ends is cut.
		 */
		t->error_bytes += n;
		if (t->error_bytes <= ERROR_BODY_MAX)
			return n;
		t->error_cut = true;
		return CURL_WRITEFUNC_ERROR;
	}
	if (t->rq->cancelled && t->rq->cancelled(t->rq->cancel_ctx)) {
		t->cancelled = true;
		return CURL_WRITEFUNC_ERROR;
	}
	if (!t->responded && (rc = respond(t))) {
		t->sink_err = rc;
		return CURL_WRITEFUNC_ERROR;
	}
	if ((rc = t->sink->on_body(t->sink->ctx, buf, n))) {
		t->sink_err = rc;
		return CURL_WRITEFUNC_ERROR;
	}
	return n;
}

/*
 * A stall is under 1 KiB/s over a whole window of stall_seconds. curl's own
 * low-speed check averages over a few seconds, so a burst before a stall
 * hides it for longer than asked.
 */
static bool is_stalled(struct transfer *t, curl_off_t now_bytes)
{
	long window = t->rq->stall_seconds > 0 ? t->rq->stall_seconds : 60;
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
	long status = t->rs->status;

	if (status != t->page_status) {
		t->page_status = status;
		t->page_mark = dlnow;
	}
	return status != 0 && !is_success(status) && dlnow - t->page_mark > ERROR_BODY_MAX;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct transfer *t = userdata;

	(void)dltotal, (void)ultotal;
	if (t->rq->cancelled && t->rq->cancelled(t->rq->cancel_ctx)) {
		t->cancelled = true;
		return 1;
	}
	if (page_too_long(t, dlnow)) {
		t->error_cut = true;
		return 1;
	}
	if (is_stalled(t, dlnow + ulnow)) {
		t->stalled = true;
		return 1;
	}
	return 0;
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
	char line[512];
	struct curl_slist *l;

	snprintf(line, sizeof(line), "%s: %s", name, value);
	l = curl_slist_append(*list, line);
	if (!l)
		return -ENOMEM;
	*list = l;
	return 0;
}

static int build_headers(const struct http_request *rq, struct curl_slist **list)
{
	char range[64];
	int rc = 0;

	if (rq->if_none_match && *rq->if_none_match)
		rc = add_header(list, "If-None-Match", rq->if_none_match);
	if (!rc && rq->if_modified_since && *rq->if_modified_since)
		rc = add_header(list, "If-Modified-Since", rq->if_modified_since);
	if (!rc && rq->range_from > 0) {
		if (rq->range_to >= rq->range_from)
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, rq->range_from,
				 rq->range_to);
		else
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", rq->range_from);
		rc = add_header(list, "Range", range);
		if (!rc && rq->if_range && *rq->if_range)
			rc = add_header(list, "If-Range", rq->if_range);
	}
	return rc;
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

static int setup(struct transfer *t, struct curl_slist *headers, char *errbuf)
{
	const struct http_request *rq = t->rq;
	CURL *c = t->curl;
	long connect = rq->connect_seconds > 0 ? rq->connect_seconds : CONNECT_TIMEOUT_S;

	if (curl_easy_setopt(c, CURLOPT_URL, rq->url) != CURLE_OK)
		return -EPROTO;
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	/* From https, never a downgrade: neither the request nor a redirect may leave TLS. */
	if (curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, schemes(rq->url)) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, schemes(rq->url)) != CURLE_OK)
		return -EPROTO;
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)BUFFER_BYTES);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "imdbfs/" IMDBFS_VERSION);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	if (rq->cafile && curl_easy_setopt(c, CURLOPT_CAINFO, rq->cafile) != CURLE_OK)
		return -EPROTO;
	return 0;
}

static int classify_status(long status, char *err, size_t errlen)
{
	snprintf(err, errlen, "HTTP %ld", status);
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
	long status = t->rs->status;

	if (cc == CURLE_UNSUPPORTED_PROTOCOL && status >= 300 && status < 400) {
		snprintf(err, errlen, "HTTP %ld: refused a redirect %s", status,
			 is_https(t->rq->url)
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
	case CURLE_TOO_MANY_REDIRECTS:
		return -EPROTO;
	default:
		return -EAGAIN;
	}
}

static int finish(struct transfer *t, CURLcode cc, const char *detail, char *err, size_t errlen)
{
	struct http_response *rs = t->rs;

	if (t->cancelled) {
		snprintf(err, errlen, "cancelled");
		return -ECANCELED;
	}
	if (t->sink_err)
		return t->sink_err;
	if (t->stalled) {
		snprintf(err, errlen, "stalled: under 1 KiB/s for %ld s", t->rq->stall_seconds);
		return -EAGAIN;
	}
	if (t->error_cut && rs->status >= 300 && rs->status < 400) {
		snprintf(err, errlen, "HTTP %ld: a redirect whose body does not end", rs->status);
		return -EPROTO;
	}
	if (t->error_cut) /* the status is known; the rest of the page does not matter */
		return classify_status(rs->status, err, errlen);
	if (cc != CURLE_OK)
		return classify_curl(t, cc, detail, err, errlen);
	if (rs->status == 304)
		return 0;
	if (!is_success(rs->status))
		return classify_status(rs->status, err, errlen);
	if (!t->responded && (t->sink_err = respond(t)))
		return t->sink_err;
	return 0;
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

int http_get(const struct http_request *rq, struct http_response *rs, const struct http_sink *sink,
	     char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL;
	struct transfer t = {.rq = rq, .rs = rs, .sink = sink};
	CURLcode cc;
	int rc;

	reset_response(rs, 0);
	snprintf(err, errlen, "ok");
	t.curl = rq->conn ? rq->conn->curl : curl_easy_init();
	if (!t.curl) {
		snprintf(err, errlen, "cannot start a transfer");
		return -ENOMEM;
	}
	if ((rc = build_headers(rq, &headers)) || (rc = setup(&t, headers, errbuf))) {
		snprintf(err, errlen, "cannot set up the request");
		goto out;
	}
	cc = curl_easy_perform(t.curl);
	rc = finish(&t, cc, errbuf, err, errlen);
out:
	curl_slist_free_all(headers);
	/* A kept handle forgets this request (its buffers die here) but keeps the connection. */
	if (rq->conn)
		curl_easy_reset(t.curl);
	else
		curl_easy_cleanup(t.curl);
	return rc;
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
