/*
 * http.h - HTTP(S) requests, the only module that sees libcurl.
 *
 * http_perform() is the engine: one request of any verb, with extra headers,
 * an optional body source, a sink for the body, connect, stall and total
 * timeouts, a cancel check, one stall detector and one classification of
 * transport errors. An error or redirect page is read for at most
 * HTTP_ERROR_BODY_MAX bytes, kept for the caller; one that never ends
 * cannot hold the request. The origin's GET (http_get) and the Azure client
 * (azure_request.c) are built on it.
 *
 * http_get() is one GET of the origin: conditional (If-None-Match, If-Modified-Since),
 * optionally ranged and tied to a version (Range + If-Range), with bounded
 * connect and stall timeouts and verified TLS. The body streams to a sink.
 * An error or redirect page is read for at most a few KiB (one that never
 * ends cannot hold the request). At most 5 redirects are followed, and from
 * an https URL only to https: never a downgrade.
 * Failures come back as a class the caller can act on, with one line of
 * text that never contains credentials:
 *
 *   0            200/206 body complete, or 304 Not Modified
 *   -EAGAIN      transient: connection refused/reset, timeout, stall,
 *                truncated body, 5xx, 429, 408 (worth retrying)
 *   -ENOENT      404, 410 (the origin does not have it)
 *   -EACCES      401, 403, TLS verification failure (permanent)
 *   -EPROTO      any other status or protocol error (permanent)
 *   -ECANCELED   the cancel check fired
 *   other        the sink's own error, passed through (a sink may stop a
 *                transfer it needs no more of with an error of its own)
 */
#ifndef IMDBFS_HTTP_H
#define IMDBFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_request {
	const char *url;
	const char *if_none_match;     /* ETag, or NULL */
	const char *if_modified_since; /* HTTP date, or NULL */
	uint64_t range_from;	       /* > 0: ask for the bytes from here on */
	uint64_t range_to;	       /* with range_from: the last byte wanted; 0: to the end */
	const char *if_range;	       /* with range_from: the ETag or date it continues */
	const char *cafile;	       /* NULL: system CAs */
	long stall_seconds;	       /* abort when under 1 KiB/s for this long; 0: 60 */
	long connect_seconds;	       /* connect timeout; 0: 20 */
	int (*cancelled)(void *ctx);   /* polled during the transfer; may be NULL */
	void *cancel_ctx;
	struct http_conn *conn; /* a kept-alive connection to reuse; NULL: a fresh one */
};

struct http_response {
	long status;
	char etag[256];
	char last_modified[64];
	int64_t mtime;	     /* Last-Modified as epoch seconds, 0 unknown */
	int64_t length;	     /* Content-Length of this response, -1 unknown */
	int64_t total;	     /* size of the whole file, -1 unknown */
	int64_t range_start; /* 206: offset of the first byte; else 0 */
	bool accept_ranges;
	double retry_after; /* seconds the server asked us to wait (Retry-After), 0 none */
};

struct http_sink {
	/* Status 200 or 206, headers complete, before any body. */
	int (*on_response)(void *ctx, const struct http_response *rs);
	int (*on_body)(void *ctx, const void *buf, size_t len);
	void *ctx;
};

/* Once, before any thread starts. 0 or -EIO. */
int http_global_init(void);
void http_global_cleanup(void);

/*
 * A connection kept open between requests (HTTP keep-alive, TLS session
 * reuse) for a thread that makes many: used by one thread at a time.
 * NULL when out of memory.
 */
struct http_conn *http_conn_new(void);
void http_conn_free(struct http_conn *c); /* NULL ok */

/* Performs rq; fills rs (always); see the header comment for the result. */
int http_get(const struct http_request *rq, struct http_response *rs, const struct http_sink *sink,
	     char *err, size_t errlen);

/* What an error page is read and kept for; past this its status is the answer. */
#define HTTP_ERROR_BODY_MAX (4 * 1024)

struct http_header {
	const char *name;
	const char *value;
};

/* One request for http_perform(). */
struct http_call {
	const char *verb; /* GET, HEAD, PUT, DELETE ... */
	const char *url;
	const struct http_header *headers; /* sent as given (curl adds Host, Content-Length) */
	size_t nheaders;
	/* >= 0: a request body of this many bytes, from body_read; -1: none. */
	int64_t body_len;
	/* Copies the next bytes of the body into buf (at most cap); 0 once all are given. */
	size_t (*body_read)(void *ctx, char *buf, size_t cap);
	bool follow;	      /* follow redirects: at most 5, from https only to https */
	const char *cafile;   /* NULL: system CAs */
	long connect_seconds; /* 0: 20 */
	long stall_seconds;   /* abort when under 1 KiB/s (either way) for this long; 0: 60 */
	long total_seconds;   /* the whole request; 0: no limit */
	int (*cancelled)(void *ctx); /* polled during the transfer, uploads too; may be NULL */
	void *cancel_ctx;
	struct http_conn *conn; /* a kept-alive connection to reuse; NULL: a fresh one */
	/* Every response header line, status lines included (n bytes, no NUL); may be NULL. */
	void (*on_header)(void *ctx, const char *line, size_t n);
	/* A 2xx, headers complete, before any of its body (or at its end when it has none). */
	int (*on_response)(void *ctx, long status);
	/* The pieces of a 2xx body in order; may be NULL (discarded). */
	int (*on_body)(void *ctx, const void *buf, size_t len);
	void *ctx;
};

struct http_result {
	long status;	  /* of the final response; 0 when none arrived */
	bool error_cut;	  /* a non-2xx body was longer than HTTP_ERROR_BODY_MAX: cut there */
	size_t error_len; /* bytes of the non-2xx body kept in error_body */
	char error_body[HTTP_ERROR_BODY_MAX + 1]; /* NUL-terminated */
};

/*
 * Performs c. 0 when a response arrived (any status: res->status; classify
 * it with http_status_errno() or the caller's own rules), else the failure
 * with one line in err: -ECANCELED (the cancel check fired), -EAGAIN (a
 * stall, timeout, refused or reset connection, truncated body), -EACCES (TLS
 * verification), -EPROTO (a refused or endless redirect, too many redirects,
 * a malformed URL), -ENOMEM, or a callback's own non-zero return.
 */
int http_perform(const struct http_call *c, struct http_result *res, char *err, size_t errlen);

/* The class of a final status: 0 for 2xx and 304, else as in the table above. */
int http_status_errno(long status);

/* s[0..n) percent-encoded for a URL path or query (all but A-Za-z0-9-._~). free(); NULL: ENOMEM. */
char *http_escape(const char *s, size_t n);
/* The percent-decoding of s; *len its length. free(); NULL: ENOMEM. */
char *http_unescape(const char *s, size_t *len);
/* An HTTP date (RFC 7231, or the obsolete forms) as epoch seconds; 0 when not a date. */
int64_t http_parse_date(const char *s);
/* A Retry-After value (delay-seconds or an HTTP date) as seconds from now; 0 when neither. */
double http_parse_retry_after(const char *value);

/* What a redacted credential is shown as. */
#define HTTP_REDACTED "***"

/*
 * The URL as it may be shown or stored (logs, .control/, cache metadata):
 * a password in it replaced by "***", or a user name without a password
 * (often a token) by "***". Requests keep using the URL itself. *out is
 * owned by the caller, free with free(). 0, -EINVAL (not a URL curl can
 * parse) or -ENOMEM.
 */
int http_url_redact(const char *url, char **out);

/*
 * Folds one response header line (n bytes, not NUL-terminated, CRLF
 * included or not) into rs: a status line resets rs to that status; ETag,
 * Last-Modified, Content-Length, Content-Range, Retry-After and
 * Accept-Ranges set their fields; any other line is ignored. The origin's
 * bytes are untrusted: every line, of any length and content, leaves rs
 * well-formed (strings NUL-terminated; length -1 or >= 0; total -1 or past
 * range_start; retry_after >= 0). http_get's header callback; exported for
 * the fuzzer.
 */
void http_parse_header(struct http_response *rs, const char *line, size_t n);

#endif
