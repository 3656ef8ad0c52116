/*
 * fuzz_control_json.c - the JSON of .control/files, status and health
 * (control_files_json, control_datasets_status_json, control_health_json)
 * rendered from dataset snapshots whose strings and figures come from
 * outside: ETags and Last-Modified from the origin, errors quoting it,
 * lengths from its headers.
 *
 * Input: per dataset, flags, a state, the figures (bytes done, total, the
 * transfer's seconds, sizes, times) and the strings (ETag, error), taken in
 * turn from the bytes; what is missing is zero.
 *
 * Properties: each renders, prints, and the text parses back as JSON; when
 * every string given was valid UTF-8, so is the text.
 */
#include <cjson/cJSON.h>

#include "catalog.h"
#include "config.h"
#include "control.h"
#include "dataset.h"
#include "fuzz.h"
#include "json.h"

struct input {
	const uint8_t *p;
	size_t n;
	bool utf8; /* every string taken so far was valid UTF-8 */
};

static uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

static void take_string(struct input *in, char *dst, size_t cap)
{
	size_t n = (size_t)take(in, 1);

	if (n >= cap)
		n = cap - 1;
	if (n > in->n)
		n = in->n;
	memcpy(dst, in->p, n);
	dst[n] = '\0';
	n = strlen(dst); /* a NUL ends it, as in a C string from a header */
	in->p += n, in->n -= n;
	in->utf8 = in->utf8 && fuzz_utf8_valid(dst, n);
}

static void take_meta(struct input *in, struct meta *m)
{
	snprintf(m->url, sizeof(m->url), "https://datasets.imdbws.com/title.basics.tsv.gz");
	take_string(in, m->etag, sizeof(m->etag));
	snprintf(m->last_modified, sizeof(m->last_modified), "Mon, 30 Nov 2026 13:19:44 GMT");
	m->mtime = (int64_t)(take(in, 5));
	m->size = (int64_t)(take(in, 8) >> 1);
	m->tsv_size = (int64_t)(take(in, 8) >> 1) - 1;
	m->fetched_at = (double)take(in, 5) / 1000.0;
}

static void take_info(struct input *in, struct dataset_info *d)
{
	uint64_t flags = take(in, 1);
	double secs;

	memset(d, 0, sizeof(*d));
	d->state = (enum ds_state)(flags % (DS_FAILED + 1));
	d->cached = flags & 8;
	d->extracted = flags & 16;
	d->retrying = flags & 32;
	take_meta(in, &d->gz);
	take_meta(in, &d->tsv);
	d->bytes_done = take(in, 7);			  /* what could have arrived: under 2^56 */
	d->bytes_total = (int64_t)(take(in, 8) >> 1) - 1; /* -1 unknown, else a Content-Length */
	/* As dataset.c computes it: bytes done over the transfer's seconds (> 0.05). */
	secs = 0.05 + (double)take(in, 5) / 1000.0;
	d->rate_bps = flags & 64 ? (double)d->bytes_done / secs : 0;
	take_string(in, d->error, sizeof(d->error));
}

static void check(cJSON *o, bool utf8)
{
	char *text = json_print_line(o);
	cJSON *back;

	FUZZ_CHECK(text);
	back = cJSON_Parse(text);
	FUZZ_CHECK(back);
	cJSON_Delete(back);
	if (utf8)
		FUZZ_CHECK(fuzz_utf8_valid(text, strlen(text)));
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dataset_info info[CATALOG_COUNT];
	struct input in = {data, size, true};
	struct config cfg = {.origin = "https://datasets.imdbws.com/", .storage = STORAGE_LOCAL};

	for (int i = 0; i < CATALOG_COUNT; i++)
		take_info(&in, &info[i]);
	check(control_files_json(info, "/var/cache/imdbfs"), in.utf8);
	check(control_datasets_status_json(info), in.utf8);
	check(control_health_json(info, &cfg, 1796048021.5, 1796040000.0), in.utf8);
	return 0;
}
