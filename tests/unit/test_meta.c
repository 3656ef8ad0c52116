/*
 * test_meta.c - the metadata beside each cached file: its JSON round trip,
 * the refusal of malformed metadata, and version comparison.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"
#include "unit.h"

static void sample(struct meta *m)
{
	memset(m, 0, sizeof(*m));
	strcpy(m->url, "https://datasets.imdbws.com/title.basics.tsv.gz");
	strcpy(m->etag, "\"5f0c-63a2\\\"quoted\\\"\"");
	strcpy(m->last_modified, "Sun, 26 Oct 2025 02:00:00 GMT");
	m->mtime = 1761444000;
	m->size = 4700000000; /* above 2^32 */
	m->tsv_size = -1;     /* unknown */
	m->fetched_at = 1700000000.25;
}

static void assert_meta_equal(const struct meta *a, const struct meta *b)
{
	assert_string_equal(a->url, b->url);
	assert_string_equal(a->etag, b->etag);
	assert_string_equal(a->last_modified, b->last_modified);
	assert_int_equal(a->mtime, b->mtime);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->tsv_size, b->tsv_size);
	assert_true(a->fetched_at == b->fetched_at);
}

/* Renders m, lets edit change the JSON object, and parses the result back. */
static int reparse_edited(const struct meta *m, void (*edit)(cJSON *o, const void *arg),
			  const void *arg, struct meta *out)
{
	char *text = meta_to_json(m);
	cJSON *o;
	char *edited;
	int rc;

	assert_non_null(text);
	o = cJSON_Parse(text);
	free(text);
	assert_non_null(o);
	edit(o, arg);
	edited = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	assert_non_null(edited);
	rc = meta_from_json(edited, out);
	free(edited);
	return rc;
}

static void remove_key(cJSON *o, const void *key)
{
	cJSON_DeleteItemFromObjectCaseSensitive(o, key);
}

struct replacement {
	const char *key;
	const char *json; /* the new value, as JSON text */
};

static void replace_key(cJSON *o, const void *arg)
{
	const struct replacement *r = arg;
	cJSON *v = cJSON_Parse(r->json);

	assert_non_null(v);
	assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, r->key, v));
}

static void test_meta_round_trip_every_field(void **state)
{
	struct meta in, out;
	char *text;

	(void)state;
	sample(&in);
	text = meta_to_json(&in);
	assert_non_null(text);
	assert_int_equal(text[strlen(text) - 1], '\n');
	memset(&out, 0x55, sizeof(out));
	assert_int_equal(meta_from_json(text, &out), 0);
	free(text);
	assert_meta_equal(&in, &out);
}

/* U+FFFD takes 3 bytes for each invalid one: the repaired text outgrows the field, the hex not. */
static void test_meta_round_trip_non_utf8_etag_longer_once_repaired(void **state)
{
	struct meta in, out;
	char *text;

	(void)state;
	sample(&in);
	memset(in.etag, 0xff, 100);
	in.etag[100] = '\0';
	memset(in.last_modified, 0xfe, 60);
	in.last_modified[60] = '\0';
	text = meta_to_json(&in);
	assert_non_null(text);
	memset(&out, 0x55, sizeof(out));
	assert_int_equal(meta_from_json(text, &out), 0);
	free(text);
	assert_meta_equal(&in, &out);
}

static void test_meta_round_trip_large_tsv_size_and_empty_strings(void **state)
{
	struct meta in, out;
	char *text;

	(void)state;
	sample(&in);
	in.etag[0] = '\0';
	in.last_modified[0] = '\0';
	in.mtime = 0;
	in.size = 0;
	in.tsv_size = 9000000000123LL; /* far above 2^32, still exact in a double */
	in.fetched_at = 1761444000.125;
	text = meta_to_json(&in);
	assert_non_null(text);
	assert_int_equal(meta_from_json(text, &out), 0);
	free(text);
	assert_meta_equal(&in, &out);
}

static void test_meta_json_carries_iso_fetched_at(void **state)
{
	struct meta in;
	cJSON *o;
	char *text;

	(void)state;
	sample(&in);
	text = meta_to_json(&in);
	assert_non_null(text);
	o = cJSON_Parse(text);
	free(text);
	assert_non_null(o);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "fetched_at")),
			    "2023-11-14T22:13:20.250Z");
	assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "size")) == 4700000000.0);
	cJSON_Delete(o);
}

static void test_meta_rejects_text_that_is_not_json(void **state)
{
	static const char *const bad[] = {"", "not json", "{", "[]", "42", "null", "\"str\""};
	struct meta out;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (meta_from_json(bad[i], &out) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
}

static void test_meta_rejects_each_missing_field(void **state)
{
	static const char *const keys[] = {"url",   "etag", "last_modified",
					   "mtime", "size", "fetched_at_epoch"};
	struct meta in, out;

	(void)state;
	sample(&in);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (reparse_edited(&in, remove_key, keys[i], &out) != -EINVAL)
			fail_msg("accepted metadata without '%s'", keys[i]);
	}
}

/*
 * tsv_size, the byte count the verifier of a .tsv.gz counted (what a stat
 * of its .tsv gives before it is extracted): kept exactly, and a .meta
 * written without it is still the copy's metadata, with the size unknown
 * (-1) until the next verify, rather than a copy to drop and fetch again.
 */
static void test_meta_tsv_size_round_trips_and_may_be_absent(void **state)
{
	static const int64_t sizes[] = {-1, 0, 4294967295LL, 4294967296LL + 17, 999999999999999LL};
	struct meta in, out;
	char *text;

	(void)state;
	sample(&in);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		in.tsv_size = sizes[i];
		text = meta_to_json(&in);
		assert_non_null(text);
		assert_int_equal(meta_from_json(text, &out), 0);
		assert_int_equal(out.tsv_size, sizes[i]);
		free(text);
	}
	in.tsv_size = 12345;
	assert_int_equal(reparse_edited(&in, remove_key, "tsv_size", &out), 0);
	assert_int_equal(out.tsv_size, -1);
	assert_int_equal(out.size, in.size);
	assert_string_equal(out.etag, in.etag);
}

static void test_meta_rejects_wrong_types(void **state)
{
	static const struct replacement bad[] = {
	    {"url", "5"},
	    {"etag", "null"},
	    {"last_modified", "[]"},
	    {"mtime", "\"0\""},
	    {"size", "\"4700000000\""},
	    {"tsv_size", "true"},
	    {"fetched_at_epoch", "\"1700000000\""},
	};
	struct meta in, out;

	(void)state;
	sample(&in);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (reparse_edited(&in, replace_key, &bad[i], &out) != -EINVAL)
			fail_msg("accepted %s = %s", bad[i].key, bad[i].json);
	}
}

static void test_meta_rejects_negative_sizes(void **state)
{
	static const struct replacement bad[] = {
	    {"size", "-1"}, {"tsv_size", "-2"}, {"mtime", "-5"}, {"size", "-4700000000"}};
	struct meta in, out;

	(void)state;
	sample(&in);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (reparse_edited(&in, replace_key, &bad[i], &out) != -EINVAL)
			fail_msg("accepted %s = %s", bad[i].key, bad[i].json);
	}
}

static void test_meta_rejects_non_integral_and_huge_sizes(void **state)
{
	static const struct replacement bad[] = {
	    {"size", "1.5"}, {"tsv_size", "100.25"}, {"mtime", "1761444000.5"}, {"size", "1e300"}};
	struct meta in, out;

	(void)state;
	sample(&in);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (reparse_edited(&in, replace_key, &bad[i], &out) != -EINVAL)
			fail_msg("accepted %s = %s", bad[i].key, bad[i].json);
	}
}

/*
 * A fetched_at_epoch that cannot be written back (1e999 parses as infinity,
 * which cJSON prints as null) or rendered as a date is malformed, so that
 * what is accepted survives its round trip. Found by fuzz_meta.
 */
static void test_meta_rejects_fetched_at_out_of_range(void **state)
{
	static const char *const bad[] = {"1e999", "-1e999", "1e300", "-1"};
	struct meta m;
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
			 "{\"url\":\"z\",\"etag\":\"\",\"last_modified\":\"\",\"mtime\":7,"
			 "\"size\":25,\"tsv_size\":1,\"fetched_at_epoch\":%s}",
			 bad[i]);
		if (meta_from_json(text, &m) != -EINVAL)
			fail_msg("accepted fetched_at_epoch = %s", bad[i]);
	}
}

/*
 * cJSON prints a number with 15 significant digits when that reads back
 * within DBL_EPSILON: 8999999999999999 would be written back as 9e+15, so a
 * size or time of 16 digits cannot survive the round trip and is malformed.
 * Found by fuzz_meta.
 */
static void test_meta_rejects_integers_json_cannot_carry_exactly(void **state)
{
	static const char *const bad[] = {"\"size\":8999999999999999,\"mtime\":7",
					  "\"size\":1,\"mtime\":1000000000000001"};
	struct meta m;
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
			 "{\"url\":\"z\",\"etag\":\"\",\"last_modified\":\"\",%s,"
			 "\"tsv_size\":1,\"fetched_at_epoch\":1}",
			 bad[i]);
		if (meta_from_json(text, &m) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
	}
	snprintf(text, sizeof(text),
		 "{\"url\":\"z\",\"etag\":\"\",\"last_modified\":\"\",\"size\":999999999999999,"
		 "\"mtime\":7,\"tsv_size\":1,\"fetched_at_epoch\":1}");
	assert_int_equal(meta_from_json(text, &m), 0);
	assert_int_equal(m.size, 999999999999999);
}

static void test_meta_etag_of_255_chars_fits_256_does_not(void **state)
{
	struct meta in, out;
	char json[400];
	struct replacement r = {"etag", json};

	(void)state;
	sample(&in);
	json[0] = '"';
	memset(json + 1, 'e', 255);
	strcpy(json + 256, "\"");
	assert_int_equal(reparse_edited(&in, replace_key, &r, &out), 0);
	assert_int_equal(strlen(out.etag), 255);

	memset(json + 1, 'e', 256);
	strcpy(json + 257, "\"");
	assert_int_equal(reparse_edited(&in, replace_key, &r, &out), -EINVAL);
}

static void test_meta_rejects_over_long_url_and_last_modified(void **state)
{
	static char url[1100], lm[100];
	struct replacement r_url = {"url", url}, r_lm = {"last_modified", lm};
	struct meta in, out;

	(void)state;
	sample(&in);
	url[0] = '"';
	memset(url + 1, 'u', 1024);
	strcpy(url + 1025, "\"");
	assert_int_equal(reparse_edited(&in, replace_key, &r_url, &out), -EINVAL);
	lm[0] = '"';
	memset(lm + 1, 'l', 64);
	strcpy(lm + 65, "\"");
	assert_int_equal(reparse_edited(&in, replace_key, &r_lm, &out), -EINVAL);
}

/* A segmented partial says so; one written before segments existed parses as not sparse. */
static void test_meta_partial_sparse_round_trip_and_default(void **state)
{
	struct meta_partial p = {.total = 5000000, .durable = 1234, .sparse = true}, q;
	cJSON *o;
	char *text;

	(void)state;
	sample(&p.version);
	text = meta_partial_to_json(&p);
	assert_non_null(text);
	assert_int_equal(meta_partial_from_json(text, &q), 0);
	assert_true(q.sparse);
	assert_int_equal(q.durable, 1234);
	assert_meta_equal(&p.version, &q.version);
	o = cJSON_Parse(text);
	free(text);
	assert_non_null(o);
	cJSON_DeleteItemFromObject(o, "sparse");
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	assert_non_null(text);
	assert_int_equal(meta_partial_from_json(text, &q), 0);
	assert_false(q.sparse);
	free(text);
}

static void test_meta_same_version_compares_etags(void **state)
{
	struct meta a, b;

	(void)state;
	sample(&a);
	sample(&b);
	assert_true(meta_same_version(&a, &b));
	strcpy(b.etag, "\"other\"");
	assert_false(meta_same_version(&a, &b)); /* same Last-Modified, different ETag */
	strcpy(b.etag, a.etag);
	strcpy(b.last_modified, "Mon, 27 Oct 2025 02:00:00 GMT");
	assert_true(meta_same_version(&a, &b)); /* ETags decide when both have one */
}

static void test_meta_same_version_falls_back_to_last_modified(void **state)
{
	struct meta a, b;

	(void)state;
	sample(&a);
	sample(&b);
	a.etag[0] = '\0';
	assert_true(meta_same_version(&a, &b));
	assert_true(meta_same_version(&b, &a));
	strcpy(b.last_modified, "Mon, 27 Oct 2025 02:00:00 GMT");
	assert_false(meta_same_version(&a, &b));
	assert_false(meta_same_version(&b, &a));
}

static void test_meta_same_version_nothing_to_compare_is_not_same(void **state)
{
	struct meta a, b;

	(void)state;
	sample(&a);
	sample(&b);
	a.etag[0] = b.etag[0] = '\0';
	a.last_modified[0] = b.last_modified[0] = '\0';
	assert_false(meta_same_version(&a, &b));
	strcpy(b.last_modified, "Sun, 26 Oct 2025 02:00:00 GMT");
	assert_false(meta_same_version(&a, &b));
	assert_false(meta_same_version(&b, &a));
}

int test_meta_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_meta_round_trip_every_field),
	    cmocka_unit_test(test_meta_round_trip_non_utf8_etag_longer_once_repaired),
	    cmocka_unit_test(test_meta_partial_sparse_round_trip_and_default),
	    cmocka_unit_test(test_meta_round_trip_large_tsv_size_and_empty_strings),
	    cmocka_unit_test(test_meta_tsv_size_round_trips_and_may_be_absent),
	    cmocka_unit_test(test_meta_json_carries_iso_fetched_at),
	    cmocka_unit_test(test_meta_rejects_text_that_is_not_json),
	    cmocka_unit_test(test_meta_rejects_each_missing_field),
	    cmocka_unit_test(test_meta_rejects_wrong_types),
	    cmocka_unit_test(test_meta_rejects_negative_sizes),
	    cmocka_unit_test(test_meta_rejects_non_integral_and_huge_sizes),
	    cmocka_unit_test(test_meta_rejects_fetched_at_out_of_range),
	    cmocka_unit_test(test_meta_rejects_integers_json_cannot_carry_exactly),
	    cmocka_unit_test(test_meta_etag_of_255_chars_fits_256_does_not),
	    cmocka_unit_test(test_meta_rejects_over_long_url_and_last_modified),
	    cmocka_unit_test(test_meta_same_version_compares_etags),
	    cmocka_unit_test(test_meta_same_version_falls_back_to_last_modified),
	    cmocka_unit_test(test_meta_same_version_nothing_to_compare_is_not_same),
	};

	return cmocka_run_group_tests_name("meta", tests, NULL, NULL);
}
