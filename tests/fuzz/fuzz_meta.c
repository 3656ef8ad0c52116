/*
 * fuzz_meta.c - the cache's metadata files as read back from disk: a cached
 * file's NAME.meta (meta_from_json, store_local.c's lookup) and a partial
 * download's .state (meta_partial_from_json, its resume).
 *
 * Input: byte 0 bit 0 picks .meta (0) or .state (1); the rest is the file's
 * content, read as store_local.c reads it (up to its first NUL).
 *
 * Properties: what is accepted is in range (sizes and times >= 0, tsv_size
 * and total >= -1, durable <= total when total is known), and survives the
 * round trip: written again (meta_to_json) it is one JSON line that parses
 * back to the same values (fetched_at within DBL_EPSILON: cJSON writes 15
 * significant digits when they read back that close); when its strings are
 * valid UTF-8, so is the line.
 */
#include <float.h>
#include <math.h>

#include "fuzz.h"
#include "meta.h"

static bool same_meta(const struct meta *a, const struct meta *b)
{
	return strcmp(a->url, b->url) == 0 && strcmp(a->etag, b->etag) == 0 &&
	       strcmp(a->last_modified, b->last_modified) == 0 && a->mtime == b->mtime &&
	       a->size == b->size && a->tsv_size == b->tsv_size &&
	       fabs(a->fetched_at - b->fetched_at) <= 4 * DBL_EPSILON * fabs(a->fetched_at);
}

static bool utf8_strings(const struct meta *m)
{
	return fuzz_utf8_valid(m->url, strlen(m->url)) &&
	       fuzz_utf8_valid(m->etag, strlen(m->etag)) &&
	       fuzz_utf8_valid(m->last_modified, strlen(m->last_modified));
}

static void check_meta(const struct meta *m)
{
	FUZZ_CHECK(memchr(m->url, '\0', sizeof(m->url)));
	FUZZ_CHECK(memchr(m->etag, '\0', sizeof(m->etag)));
	FUZZ_CHECK(memchr(m->last_modified, '\0', sizeof(m->last_modified)));
	FUZZ_CHECK(m->mtime >= 0 && m->size >= 0 && m->tsv_size >= -1);
}

static void check_line(const char *text, const struct meta *m)
{
	size_t n;

	FUZZ_CHECK(text);
	n = strlen(text);
	FUZZ_CHECK(n > 0 && text[n - 1] == '\n');
	if (utf8_strings(m))
		FUZZ_CHECK(fuzz_utf8_valid(text, n));
}

static void fuzz_meta(const char *text)
{
	struct meta m, back;
	char *out;

	if (meta_from_json(text, &m))
		return;
	check_meta(&m);
	out = meta_to_json(&m);
	check_line(out, &m);
	FUZZ_CHECK(meta_from_json(out, &back) == 0 && same_meta(&m, &back));
	free(out);
}

static void fuzz_partial(const char *text)
{
	struct meta_partial p, back;
	char *out;

	if (meta_partial_from_json(text, &p))
		return;
	check_meta(&p.version);
	FUZZ_CHECK(p.total >= -1 && p.durable >= 0 && (p.total < 0 || p.durable <= p.total));
	out = meta_partial_to_json(&p);
	check_line(out, &p.version);
	FUZZ_CHECK(meta_partial_from_json(out, &back) == 0);
	FUZZ_CHECK(same_meta(&p.version, &back.version) && back.total == p.total &&
		   back.durable == p.durable && back.sparse == p.sparse);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size < 1)
		return 0;
	text = fuzz_strndup(data + 1, size - 1);
	if (data[0] & 1)
		fuzz_partial(text);
	else
		fuzz_meta(text);
	free(text);
	return 0;
}
