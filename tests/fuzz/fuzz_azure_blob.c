/*
 * fuzz_azure_blob.c - what the Blob service (or whoever answers in its
 * place) sends back as XML: a List Blobs page (azure_listing_parse) and
 * an error body's <Code> (azure_request_error_code).
 *
 * Input: byte 0 bit 0 picks the listing (0) or the error body (1); the rest
 * is the body, a listing passed in a buffer of exactly its length, not
 * NUL-terminated (the parser is given a length), an error body as the
 * client keeps it, NUL-terminated.
 *
 * Properties: a page parses to 0, -EPROTO or the callback's own return;
 * each blob has terminated fields, a size >= 0, at most AZURE_META_MAX
 * metadata items; the marker is terminated; with a valid UTF-8 page the
 * decoded names are valid UTF-8 too. An error code is terminated and only
 * letters, digits and '?'.
 */
#include <ctype.h>
#include <errno.h>

#include "azure_listing.h"
#include "azure_request.h"
#include "fuzz.h"

#define STOP 77 /* the callback's own error, which the parser must pass through */

struct seen {
	int count;
	bool utf8_page;
};

static void check_string(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, '\0', cap));
}

static int each(void *ctx, const struct azure_blob_item *it)
{
	struct seen *s = ctx;

	check_string(it->name, sizeof(it->name));
	check_string(it->etag, sizeof(it->etag));
	check_string(it->last_modified, sizeof(it->last_modified));
	check_string(it->content_type, sizeof(it->content_type));
	FUZZ_CHECK(it->size >= 0 && it->mtime >= 0);
	FUZZ_CHECK(it->meta.count <= AZURE_META_MAX);
	for (size_t i = 0; i < it->meta.count; i++) {
		check_string(it->meta.item[i].name, sizeof(it->meta.item[i].name));
		check_string(it->meta.item[i].value, sizeof(it->meta.item[i].value));
	}
	if (s->utf8_page)
		FUZZ_CHECK(fuzz_utf8_valid(it->name, strlen(it->name)));
	return ++s->count == 50 ? STOP : 0;
}

static void fuzz_listing(const uint8_t *data, size_t size)
{
	struct seen s = {.utf8_page = fuzz_utf8_valid((const char *)data, size)};
	char *page = malloc(size ? size : 1);
	char marker[256];
	int rc;

	FUZZ_CHECK(page);
	memcpy(page, data, size);
	rc = azure_listing_parse(page, size, each, &s, marker, sizeof(marker));
	FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -ENOMEM || (rc == STOP && s.count == 50));
	check_string(marker, sizeof(marker));
	free(page);
}

static void fuzz_error_body(const uint8_t *data, size_t size)
{
	char *body = fuzz_strndup(data, size);
	char code[64] = "";

	azure_request_error_code(body, code, sizeof(code));
	check_string(code, sizeof(code));
	for (const char *p = code; *p; p++)
		FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '?');
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_error_body(data + 1, size - 1);
	else
		fuzz_listing(data + 1, size - 1);
	return 0;
}
