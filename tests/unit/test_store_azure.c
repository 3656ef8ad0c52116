/* test_store_azure.c - the shared tier's check of blob metadata (untrusted input). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

#include "store_azure.h"

#define ORIGIN "https://datasets.example/"
#define NOW    1796000000.0

/* The metadata this host uploads for a 1234-byte title.ratings.tsv.gz. */
static void good(struct azure_meta *am)
{
	memset(am, 0, sizeof(*am));
	assert_int_equal(azure_meta_set(am, "originurl", ORIGIN "title.ratings.tsv.gz"), 0);
	assert_int_equal(azure_meta_set(am, "originetag", "\"abc\""), 0);
	assert_int_equal(azure_meta_set(am, "lastmodified", "Mon, 30 Nov 2026 10:00:00 GMT"), 0);
	assert_int_equal(azure_meta_set(am, "mtime", "1795999000"), 0);
	assert_int_equal(azure_meta_set(am, "size", "1234"), 0);
	assert_int_equal(azure_meta_set(am, "tsvsize", "5678"), 0);
	assert_int_equal(azure_meta_set(am, "fetchedat", "1795999500.250"), 0);
}

static int parse(const struct azure_meta *am, const char *file, struct meta *m)
{
	char why[128] = "";
	int rc = store_azure_meta_parse(am, 1234, ORIGIN, file, NOW, m, why, sizeof(why));

	assert_true(rc == 0 ? why[0] == '\0' : why[0] != '\0');
	return rc;
}

static void test_good_metadata_is_taken(void **state)
{
	struct azure_meta am;
	struct meta m;

	(void)state;
	good(&am);
	assert_int_equal(parse(&am, "title.ratings.tsv.gz", &m), 0);
	assert_string_equal(m.url, ORIGIN "title.ratings.tsv.gz");
	assert_string_equal(m.etag, "\"abc\"");
	assert_int_equal(m.size, 1234);
	assert_int_equal(m.tsv_size, 5678);
	assert_int_equal(m.mtime, 1795999000);
	assert_true(m.fetched_at > 1795999500.2 && m.fetched_at < 1795999500.3);
	/* A .tsv records the URL of the .tsv.gz it came from; -1: size unknown. */
	assert_int_equal(azure_meta_set(&am, "tsvsize", "-1"), 0);
	assert_int_equal(parse(&am, "title.ratings.tsv", &m), 0);
	assert_int_equal(m.tsv_size, -1);
}

static void test_bad_metadata_is_refused(void **state)
{
	static const struct {
		const char *name, *value;
	} bad[] = {
	    {"originurl", "http://other.example/title.ratings.tsv.gz"},
	    {"originurl", ORIGIN "title.crew.tsv.gz"},
	    {"size", "1235"},
	    {"size", "1234abc"},
	    {"size", "+1234"},
	    {"size", "-1234"},
	    {"size", "99999999999999999999"},
	    {"tsvsize", "-2"},
	    {"tsvsize", "9223372036854775807"},
	    {"tsvsize", "0x10"},
	    {"mtime", "yesterday"},
	    {"mtime", "-1"},
	    {"mtime", "1796090000"}, /* over a day ahead */
	    {"fetchedat", "-5"},
	    {"fetchedat", "nan"},
	    {"fetchedat", "inf"},
	    {"fetchedat", "1e300"},
	    {"fetchedat", "12x"},
	    {"fetchedat", ""},
	};
	struct azure_meta am;
	struct meta m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		good(&am);
		assert_int_equal(azure_meta_set(&am, bad[i].name, bad[i].value), 0);
		if (parse(&am, "title.ratings.tsv.gz", &m) != -EPROTO)
			fail_msg("accepted %s=%s", bad[i].name, bad[i].value);
	}
	/* Missing fields, and no metadata at all (an upload just begun). */
	memset(&am, 0, sizeof(am));
	assert_int_equal(parse(&am, "title.ratings.tsv.gz", &m), -EPROTO);
	good(&am);
	am.count = 4; /* drops size, tsvsize, fetchedat */
	assert_int_equal(parse(&am, "title.ratings.tsv.gz", &m), -EPROTO);
	/* Empty validators are none: such a copy could never be told from another (fuzz_blob_meta).
	 */
	good(&am);
	assert_int_equal(azure_meta_set(&am, "originetag", ""), 0);
	assert_int_equal(azure_meta_set(&am, "lastmodified", ""), 0);
	assert_int_equal(parse(&am, "title.ratings.tsv.gz", &m), -EPROTO);
}

int test_store_azure_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_metadata_is_taken),
	    cmocka_unit_test(test_bad_metadata_is_refused),
	};
	return cmocka_run_group_tests_name("store_azure", tests, NULL, NULL);
}
