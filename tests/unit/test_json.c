/*
 * test_json.c - every string imdbfs prints as JSON is valid UTF-8: the
 * repair of invalid sequences (one U+FFFD per maximal subpart, as Python's
 * decode(errors="replace")), overlong forms, surrogates, code points above
 * U+10FFFF, truncation at a character boundary, and the repair of a whole
 * object's keys and values at print; the exact bytes of a non-UTF-8 ETag
 * kept through the cache metadata.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "meta.h"
#include "unit.h"

#define R "\xef\xbf\xbd" /* U+FFFD */

static void assert_repaired(const char *in, size_t len, const char *want)
{
	char out[64];

	assert_false(json_utf8_valid(in, len));
	assert_int_equal(json_utf8_copy(out, sizeof(out), in, len), strlen(want));
	assert_string_equal(out, want);
	assert_true(json_utf8_valid(out, strlen(out)));
}

static void test_json_valid_utf8_is_copied_unchanged(void **state)
{
	static const char *const valid[] = {"",
					    "plain ascii",
					    "caf\xc3\xa9",
					    "\xe2\x82\xac",
					    "\xf0\x9f\x98\x80",
					    "\xf4\x8f\xbf\xbf",
					    R,
					    "\xed\x9f\xbf",
					    "\xee\x80\x80"};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		assert_true(json_utf8_valid(valid[i], strlen(valid[i])));
		assert_int_equal(json_utf8_copy(out, sizeof(out), valid[i], strlen(valid[i])),
				 strlen(valid[i]));
		assert_string_equal(out, valid[i]);
	}
}

static void test_json_invalid_bytes_become_replacement_characters(void **state)
{
	(void)state;
	assert_repaired("\x80", 1, R);	     /* a lone continuation byte */
	assert_repaired("\xff\xfe", 2, R R); /* never in UTF-8 */
	assert_repaired("\xc3", 1, R);	     /* a lead byte at the end */
	assert_repaired("\xc3"
			"A",
			2, R "A");		/* a lead byte without its continuation */
	assert_repaired("\xe2\x82x", 3, R "x"); /* a 3-byte form cut: one U+FFFD */
	assert_repaired("\xf0\x9f\x98", 3, R);	/* a 4-byte form cut at the end */
	assert_repaired("\xf5\x80", 2, R R);	/* leads above U+10FFFF's */
	assert_repaired("\xf8\x88\x80\x80\x80", 5, R R R R R); /* 5-byte forms do not exist */
	assert_repaired("a\xffz", 3, "a" R "z");
}

static void test_json_overlong_forms_and_surrogates_are_refused(void **state)
{
	(void)state;
	assert_repaired("\xc0\xaf", 2, R R); /* '/' in two bytes */
	assert_repaired("\xc1\xbf", 2, R R);
	assert_repaired("\xe0\x80\xaf", 3, R R R);	 /* '/' in three */
	assert_repaired("\xf0\x80\x80\xaf", 4, R R R R); /* '/' in four */
	assert_repaired("\xed\xa0\x80", 3, R R R);	 /* U+D800 */
	assert_repaired("\xed\xbf\xbf", 3, R R R);	 /* U+DFFF */
	assert_repaired("\xf4\x90\x80\x80", 4, R R R R); /* U+110000 */
}

static void test_json_truncation_never_cuts_a_character(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(json_utf8_copy(out, 3, "a\xc3\xa9", 3), 1); /* 'é' needs 2 + NUL */
	assert_string_equal(out, "a");
	assert_int_equal(json_utf8_copy(out, 4, "a\xc3\xa9", 3), 3);
	assert_string_equal(out, "a\xc3\xa9");
	assert_int_equal(json_utf8_copy(out, 4, "\xf0\x9f\x98\x80", 4), 0);
	assert_string_equal(out, "");
	assert_int_equal(json_utf8_copy(out, 5, "ab\xff", 3), 2); /* no room for U+FFFD */
	assert_string_equal(out, "ab");
	assert_int_equal(json_utf8_copy(out, 1, "abc", 3), 0);
	assert_string_equal(out, "");
	assert_int_equal(json_utf8_copy(out, sizeof(out), "ab\0cd", 5), 2); /* NUL ends it */
	assert_string_equal(out, "ab");
}

static void test_json_print_line_repairs_every_key_and_value(void **state)
{
	cJSON *o = cJSON_CreateObject(), *a, *back;
	char *text;

	(void)state;
	assert_non_null(o);
	cJSON_AddStringToObject(o, "etag", "\"\xff\xfe\"");
	cJSON_AddStringToObject(o, "k\xc0\xaf", "ok");
	a = cJSON_AddArrayToObject(o, "list");
	cJSON_AddItemToArray(a, cJSON_CreateString("cut \xe2\x82"));
	cJSON_AddItemToArray(a, cJSON_CreateString("caf\xc3\xa9"));
	text = json_print_line(o);
	assert_non_null(text);
	assert_true(json_utf8_valid(text, strlen(text)));
	back = cJSON_Parse(text);
	assert_non_null(back);
	assert_string_equal(cJSON_GetObjectItem(back, "etag")->valuestring, "\"" R R "\"");
	assert_string_equal(cJSON_GetObjectItem(back, "k" R R)->valuestring, "ok");
	a = cJSON_GetObjectItem(back, "list");
	assert_string_equal(cJSON_GetArrayItem(a, 0)->valuestring, "cut " R);
	assert_string_equal(cJSON_GetArrayItem(a, 1)->valuestring, "caf\xc3\xa9");
	cJSON_Delete(back);
	free(text);
}

static void test_json_meta_keeps_exact_bytes_of_a_non_utf8_etag(void **state)
{
	struct meta m = {.size = 10, .tsv_size = -1, .fetched_at = 1.0}, back;
	char *text;

	(void)state;
	strcpy(m.url, "http://h/title.basics.tsv.gz");
	strcpy(m.etag, "\"\xff\xfe-v1\"");
	strcpy(m.last_modified, "Sun, 26 Oct 2025 02:00:00 GMT\x80");
	text = meta_to_json(&m);
	assert_non_null(text);
	assert_true(json_utf8_valid(text, strlen(text)));
	assert_non_null(strstr(text, "\"etag_hex\":\t\"22fffe2d763122\""));
	assert_null(strstr(text, "url_hex")); /* only where needed */
	assert_int_equal(meta_from_json(text, &back), 0);
	assert_string_equal(back.etag, m.etag);
	assert_string_equal(back.last_modified, m.last_modified);
	assert_string_equal(back.url, m.url);
	free(text);
}

static void test_json_meta_refuses_malformed_hex(void **state)
{
	static const char *const bad[] = {"\"2\"", "\"zz\"", "\"00\"", "\"2G\"", "\"FF\"", "1"};
	char text[512];
	struct meta m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
			 "{\"url\":\"u\",\"etag\":\"e\",\"etag_hex\":%s,\"last_modified\":\"\","
			 "\"mtime\":0,\"size\":1,\"tsv_size\":-1,\"fetched_at_epoch\":1}",
			 bad[i]);
		assert_int_equal(meta_from_json(text, &m), -EINVAL);
	}
	/* More bytes than the field holds. */
	memset(text, 0, sizeof(text));
	strcpy(text,
	       "{\"url\":\"u\",\"etag\":\"e\",\"last_modified\":\"\",\"last_modified_hex\":\"");
	for (int i = 0; i < 64; i++)
		strcat(text, "41");
	strcat(text, "\",\"mtime\":0,\"size\":1,\"tsv_size\":-1,\"fetched_at_epoch\":1}");
	assert_int_equal(meta_from_json(text, &m), -EINVAL);
}

int test_json_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_valid_utf8_is_copied_unchanged),
	    cmocka_unit_test(test_json_invalid_bytes_become_replacement_characters),
	    cmocka_unit_test(test_json_overlong_forms_and_surrogates_are_refused),
	    cmocka_unit_test(test_json_truncation_never_cuts_a_character),
	    cmocka_unit_test(test_json_print_line_repairs_every_key_and_value),
	    cmocka_unit_test(test_json_meta_keeps_exact_bytes_of_a_non_utf8_etag),
	    cmocka_unit_test(test_json_meta_refuses_malformed_hex),
	};

	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
