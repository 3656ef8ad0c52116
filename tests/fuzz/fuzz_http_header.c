/*
 * fuzz_http_header.c - the origin's response headers (http_parse_header):
 * status lines, Content-Length, Content-Range (what a resumed or segmented
 * download checks its bytes against), ETag, Last-Modified, Retry-After,
 * Accept-Ranges.
 *
 * Input: header lines separated by '\n' (kept, as curl hands them over),
 * each passed in a buffer of exactly its size, not NUL-terminated, as curl
 * does not terminate them.
 *
 * Properties, after every line: the strings are terminated inside their
 * arrays; a length is -1 or >= 0; a Content-Range's total lies past its
 * first byte; Retry-After is finite and >= 0; mtime >= 0.
 */
#include <math.h>

#include "fuzz.h"
#include "http.h"

static void check(const struct http_response *rs)
{
	FUZZ_CHECK(memchr(rs->etag, '\0', sizeof(rs->etag)));
	FUZZ_CHECK(memchr(rs->last_modified, '\0', sizeof(rs->last_modified)));
	FUZZ_CHECK(rs->length >= -1);
	FUZZ_CHECK(rs->range_start >= 0);
	FUZZ_CHECK(rs->total == -1 || rs->total > rs->range_start);
	FUZZ_CHECK(isfinite(rs->retry_after) && rs->retry_after >= 0);
	FUZZ_CHECK(rs->mtime >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_response rs;
	size_t at = 0;

	http_parse_header(&rs, "HTTP/1.1 200 OK\r\n", 17);
	FUZZ_CHECK(rs.status == 200);
	check(&rs);
	while (at < size) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t n = nl ? (size_t)(nl - (data + at)) + 1 : size - at;
		char *line = malloc(n ? n : 1);

		FUZZ_CHECK(line);
		memcpy(line, data + at, n);
		http_parse_header(&rs, line, n);
		free(line);
		check(&rs);
		at += n;
	}
	return 0;
}
