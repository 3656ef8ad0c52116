/*
 * azure_request.h - one request to the Blob service and its response, on
 * http.c's engine: the URL (endpoint, escaped container and blob, query,
 * the credential's SAS), the headers (x-ms-date, x-ms-version, the
 * SharedKey Authorization from azure_sharedkey.h), the response headers
 * folded into a struct azure_blob_props, the body kept (List Blobs) or
 * streamed to a read's callbacks, and one classification of the answer into
 * the -errno table of azure_blob.h. The operations (azure_blob.c) only say
 * what to send and read what came back.
 *
 * Life of a request: azure_request_start() (the URL), azure_request_add_*()
 * (the operation's own headers), set body/rd/body_max, then
 * azure_request_perform() (once), then azure_request_finish(), which frees
 * what the request owns and wipes its URL when it carries a SAS. A request
 * is owned by one thread for one call: no locks. The response is untrusted:
 * every header of any length leaves the fields terminated and in range.
 */
#ifndef IMDBFS_AZURE_REQUEST_H
#define IMDBFS_AZURE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "azure_blob.h"
#include "azure_sharedkey.h"

#define AZURE_REQUEST_HEADERS	   (AZURE_META_MAX + 16)
#define AZURE_REQUEST_HEADER_NAME  (AZURE_META_NAME + 16)
#define AZURE_REQUEST_HEADER_VALUE (AZURE_META_VALUE + 64)

struct azure_request {
	const struct azure_blob_client *cl;
	const char *op;	       /* for messages: "put block" */
	const char *verb;      /* GET, HEAD, PUT, DELETE */
	const char *container; /* for messages and the URL */
	const char *name;      /* NULL for a container operation */
	char where[1100];      /* "container/name", for messages */
	char *url;	       /* owned */
	struct azure_sharedkey_header h[AZURE_REQUEST_HEADERS];
	char names[AZURE_REQUEST_HEADERS][AZURE_REQUEST_HEADER_NAME];
	char values[AZURE_REQUEST_HEADERS][AZURE_REQUEST_HEADER_VALUE];
	size_t nh;

	/* Set by the operation before azure_request_perform(). */
	const char *body; /* PUT: the request body, not owned */
	size_t body_len;
	size_t body_sent;
	const struct azure_blob_read *rd; /* a streamed GET */
	size_t body_max;		  /* bytes of a 2xx body kept (List Blobs); 0: none */

	/* The response, filled by azure_request_perform(). */
	long status;
	struct azure_blob_props props;
	int64_t content_length; /* -1 unknown */
	int64_t range_total;	/* Content-Range's total; -1 unknown */
	char error_code[64];
	char lease_id[64];
	int lease_time;
	bool has_lease_time;
	double retry_after; /* Retry-After (503 ServerBusy, 429 ...), seconds; 0 none */
	bool body_overflow; /* the response body exceeded body_max */
	char *resp;	    /* kept response body, NUL-terminated; owned */
	size_t resp_len;
};

/*
 * Resets r and builds its URL: ENDPOINT/CONTAINER[/NAME][?query][&SAS],
 * query already escaped, name NULL for a container operation. 0 or -ENOMEM.
 * Call azure_request_finish() whatever it returns.
 */
int azure_request_start(struct azure_request *r, const struct azure_blob_client *cl, const char *op,
			const char *verb, const char *container, const char *name,
			const char *query);

/* One header, its value printf-formatted. -EINVAL when full or too long. */
int azure_request_add_header(struct azure_request *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* x-ms-meta-NAME for each item of m (NULL: none). -EINVAL for an item azure_meta_valid refuses. */
int azure_request_add_meta_headers(struct azure_request *r, const struct azure_meta *m);

/*
 * Dates, versions and signs r, sends it and reads the response into r.
 * 0 for a 2xx, else -errno as azure_blob.h's table says, with one line in err
 * (the operation, the blob, the status and x-ms-error-code; never a secret).
 */
int azure_request_perform(struct azure_request *r, char *err, size_t errlen);

/* Frees what r owns (its URL wiped first when it holds a SAS). */
void azure_request_finish(struct azure_request *r);

/* "Azure OP: WHAT" into err; returns -EINVAL (an argument refused, nothing sent). */
int azure_request_invalid(char *err, size_t errlen, const char *op, const char *what);

/*
 * The <Code> of an error body (NUL-terminated, untrusted) into code, which
 * holds cap bytes and is left as it is when the body has none; any
 * character but a letter or digit becomes '?', since it goes into log lines.
 * The request's error path; exported for the fuzzer.
 */
void azure_request_error_code(const char *body, char *code, size_t cap);

#endif
