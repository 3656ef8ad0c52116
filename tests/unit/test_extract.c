/*
 * test_extract.c - the extraction engine (extract.c) driven through the
 * dataset layer over a fake origin and a fake store (engine_fixture.h), no
 * FUSE, no server: the .tsv of a multi-member .tsv.gz is exactly what zlib's
 * inflate makes of it; a decompression follows the feed of the download
 * still running (its .tsv grows before the .tsv.gz is complete) and starts
 * over with it on a new version, the .tsv then being the new version's
 * (DESIGN.md invariants 3 and 4); a cancel during the decompression ends it
 * with -ECANCELED, its temporary dropped, nothing committed.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "dataset.h"
#include "dataset_engine.h"
#include "engine_fixture.h"
#include "unit.h"

#define DS 5

/* The committed .tsv of DS is zlib's inflate of v, extracted from the .tsv.gz tagged etag. */
static void assert_extracted(const struct fx_version *v, const char *etag)
{
	struct meta m;

	fx_assert_committed(catalog_file(DS, KIND_TSV), v->inflated, v->inflated_len, etag, &m);
	assert_int_equal(m.tsv_size, -1);
	fx_assert_committed(catalog_file(DS, KIND_GZ), v->gz, v->gz_len, etag, &m);
	assert_int_equal(m.tsv_size, (int64_t)v->inflated_len);
}

static void assert_no_temps(void)
{
	struct meta_partial p;

	assert_false(fx_store_temp(catalog_file(DS, KIND_GZ), NULL, NULL, &p));
	assert_false(fx_store_temp(catalog_file(DS, KIND_TSV), NULL, NULL, &p));
}

/* Waits up to 5 s for the .tsv's temporary to hold bytes; checks they are a prefix of want. */
static bool tsv_temp_grows(const unsigned char *want, size_t want_len)
{
	for (int tries = 0; tries < 500; tries++) {
		struct meta_partial p;
		unsigned char *got = NULL;
		size_t len = 0;
		if (fx_store_temp(catalog_file(DS, KIND_TSV), &got, &len, &p) && len > 0) {
			assert_true(len <= want_len);
			assert_memory_equal(got, want, len);
			free(got);
			return true;
		}
		free(got);
		usleep(10 * 1000);
	}
	return false;
}

/*
 * Starts the decompression of a cold DS with the origin serving v and
 * stalling at offset at; returns once the .tsv grew while the download stalls.
 */
static struct transfer *start_following(const struct fx_version *v, uint64_t at, const char *etag)
{
	struct transfer *x;

	fx_origin_serve(v->gz, v->gz_len, etag);
	fx_origin_stall_at(at);
	x = dataset_extract(DS);
	assert_non_null(x);
	assert_true(fx_origin_wait_stalled());
	assert_true(tsv_temp_grows(v->inflated, v->inflated_len));
	return x;
}

static void test_multi_member_equals_zlib_inflate(void **state)
{
	struct fx_version v = fx_version_make(900 * 1024, 7, 21);
	struct dataset_result res;
	struct dataset_info info;

	(void)state;
	assert_int_equal(v.inflated_len, v.plain_len);
	assert_memory_equal(v.inflated, v.plain, v.plain_len);
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	assert_int_equal(fx_download(DS, false).err, 0);
	res = fx_extract(DS);
	assert_int_equal(res.err, 0);
	assert_true(res.changed);
	assert_extracted(&v, "\"v1\"");
	assert_no_temps();
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_EXTRACTED);
	fx_version_free(&v);
}

/* A cold .tsv streams from the first compressed bytes: it grows while the download stalls. */
static void test_follows_the_download_feed(void **state)
{
	struct fx_version v = fx_version_make(900 * 1024, 3, 22);
	struct dataset_result res;
	struct transfer *x;

	(void)state;
	x = start_following(&v, v.gz_len / 2, "\"v1\"");
	fx_origin_release();
	dataset_wait(x, &res);
	assert_int_equal(res.err, 0);
	assert_extracted(&v, "\"v1\"");
	assert_no_temps();
	fx_version_free(&v);
}

/* Invariants 3 and 4: the followed download starts over on a new version; so does the .tsv. */
static void test_following_starts_over_on_a_new_version(void **state)
{
	struct fx_version v1 = fx_version_make(900 * 1024, 3, 23),
			  v2 = fx_version_make(700 * 1024, 2, 24);
	struct dataset_result res;
	struct transfer *x;
	const uint64_t at = 200000;

	(void)state;
	assert_true(v1.gz_len > at);
	x = start_following(&v1, at, "\"v1\""); /* it follows v1 */
	fx_origin_drop_at(at, 1, v2.gz, v2.gz_len, "\"v2\"");
	fx_origin_release();
	dataset_wait(x, &res);
	assert_int_equal(res.err, 0);
	assert_extracted(&v2, "\"v2\"");
	assert_no_temps();
	fx_version_free(&v1);
	fx_version_free(&v2);
}

/* Cancelled while it follows a stalled download: -ECANCELED, its temporary dropped. */
static void test_cancel_during_extraction(void **state)
{
	struct fx_version v = fx_version_make(900 * 1024, 3, 25);
	struct dataset_result res;
	struct dataset_info info;
	struct meta_partial p;
	struct transfer *x, *dl;
	unsigned char *got;
	size_t len;
	struct meta m;

	(void)state;
	x = start_following(&v, v.gz_len / 2, "\"v1\"");
	dl = dataset_download(DS, false); /* joins the download the extraction started */
	assert_non_null(dl);
	atomic_store(&x->cancel, true);
	dataset_wait(x, &res);
	assert_int_equal(res.err, -ECANCELED);
	assert_false(res.changed);
	assert_false(fx_store_committed(catalog_file(DS, KIND_TSV), &got, &len, &m));
	assert_false(fx_store_temp(catalog_file(DS, KIND_TSV), NULL, NULL, &p));
	/* The download it followed was not cancelled: it ends, committed. */
	fx_origin_release();
	dataset_wait(dl, &res);
	assert_int_equal(res.err, 0);
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_CACHED);
	assert_false(info.extracted);
	assert_no_temps();
	fx_version_free(&v);
}

/* A decompression whose download fails (a corrupt member) fails with its reason; no .tsv. */
static void test_followed_download_failing_fails_it(void **state)
{
	struct fx_version v = fx_version_make(600 * 1024, 3, 26);
	struct dataset_result res;
	unsigned char *got;
	size_t len;
	struct meta m;

	(void)state;
	v.gz[v.gz_len - 6] ^= 0x01; /* the last member's CRC-32 */
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	res = fx_extract(DS);
	assert_true(res.err < 0);
	assert_non_null(strstr(res.error, "corrupt gzip data"));
	assert_false(fx_store_committed(catalog_file(DS, KIND_TSV), &got, &len, &m));
	assert_false(fx_store_committed(catalog_file(DS, KIND_GZ), &got, &len, &m));
	assert_no_temps();
	fx_version_free(&v);
}

int test_extract_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_multi_member_equals_zlib_inflate, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_follows_the_download_feed, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_following_starts_over_on_a_new_version, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_during_extraction, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_followed_download_failing_fails_it, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests_name("extract", tests, NULL, NULL);
}
