/* test_catalog.c - the fixed catalogue: 7 datasets, 14 file names, nothing else. */
#include <errno.h>
#include <string.h>

#include "catalog.h"
#include "unit.h"

static const struct {
	const char *file;
	int ds;
	enum file_kind kind;
} all_files[] = {
    {"name.basics.tsv.gz", 0, KIND_GZ},	     {"name.basics.tsv", 0, KIND_TSV},
    {"title.akas.tsv.gz", 1, KIND_GZ},	     {"title.akas.tsv", 1, KIND_TSV},
    {"title.basics.tsv.gz", 2, KIND_GZ},     {"title.basics.tsv", 2, KIND_TSV},
    {"title.crew.tsv.gz", 3, KIND_GZ},	     {"title.crew.tsv", 3, KIND_TSV},
    {"title.episode.tsv.gz", 4, KIND_GZ},    {"title.episode.tsv", 4, KIND_TSV},
    {"title.principals.tsv.gz", 5, KIND_GZ}, {"title.principals.tsv", 5, KIND_TSV},
    {"title.ratings.tsv.gz", 6, KIND_GZ},    {"title.ratings.tsv", 6, KIND_TSV},
};

static const char *const dataset_names[CATALOG_COUNT] = {
    "name.basics",   "title.akas",	 "title.basics",  "title.crew",
    "title.episode", "title.principals", "title.ratings",
};

static void test_catalog_names_in_order(void **state)
{
	(void)state;
	for (int i = 0; i < CATALOG_COUNT; i++)
		assert_string_equal(catalog_name(i), dataset_names[i]);
}

static void test_catalog_all_14_files_resolve(void **state)
{
	(void)state;
	assert_int_equal(sizeof(all_files) / sizeof(all_files[0]), 2 * CATALOG_COUNT);
	for (size_t i = 0; i < sizeof(all_files) / sizeof(all_files[0]); i++) {
		int ds = -1;
		enum file_kind kind = KIND_TSV + 1;

		assert_int_equal(catalog_lookup_file(all_files[i].file, &ds, &kind), 0);
		assert_int_equal(ds, all_files[i].ds);
		assert_int_equal(kind, all_files[i].kind);
		assert_string_equal(catalog_file(ds, kind), all_files[i].file);
	}
}

static void test_catalog_lookup_file_rejects_unknown(void **state)
{
	static const char *const bad[] = {
	    "",
	    "title.basics",
	    "title.basics.tsv.gz.meta",
	    "TITLE.BASICS.TSV.GZ",
	    "title.basics.tsv.gz/",
	    "/title.basics.tsv",
	    "title.basics.tsv.",
	    "title.basic.tsv",
	    ".control",
	    "name.basics.tsv.gz.tmp",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ds = 99;
		enum file_kind kind = KIND_GZ;

		if (catalog_lookup_file(bad[i], &ds, &kind) != -ENOENT)
			fail_msg("catalog_lookup_file accepted '%s'", bad[i]);
	}
}

static void test_catalog_dataset_accepts_name_and_gz_file(void **state)
{
	(void)state;
	for (int i = 0; i < CATALOG_COUNT; i++) {
		assert_int_equal(catalog_lookup_dataset(dataset_names[i]), i);
		assert_int_equal(catalog_lookup_dataset(catalog_file(i, KIND_GZ)), i);
	}
	assert_int_equal(catalog_lookup_dataset("title.basics"), 2);
	assert_int_equal(catalog_lookup_dataset("title.basics.tsv.gz"), 2);
}

static void test_catalog_dataset_rejects_tsv_case_empty_meta(void **state)
{
	static const char *const bad[] = {
	    "title.basics.tsv",
	    "TITLE.BASICS",
	    "",
	    "title.basics.tsv.gz.meta",
	    "Title.Basics",
	    " title.basics",
	    "all",
	    "force",
	    "title",
	    "title.basics.",
	    "basics",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (catalog_lookup_dataset(bad[i]) != -ENOENT)
			fail_msg("catalog_lookup_dataset accepted '%s'", bad[i]);
	}
}

int test_catalog_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_catalog_names_in_order),
	    cmocka_unit_test(test_catalog_all_14_files_resolve),
	    cmocka_unit_test(test_catalog_lookup_file_rejects_unknown),
	    cmocka_unit_test(test_catalog_dataset_accepts_name_and_gz_file),
	    cmocka_unit_test(test_catalog_dataset_rejects_tsv_case_empty_meta),
	};

	return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
