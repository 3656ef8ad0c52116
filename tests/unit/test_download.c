/*
 * test_download.c - the download engine (download.c) driven through the
 * dataset layer over a fake origin and a fake store (engine_fixture.h), no
 * FUSE, no server: what it commits is byte for byte what the origin served;
 * an interrupted download resumes from where it got, asking for the rest
 * with Range + If-Range (DESIGN.md invariant 11); a new version mid-download
 * starts it over and the copy is the new version, never a mix (invariant 3);
 * a corrupt member commits nothing and keeps the old copy (invariant 2); a
 * cancel at every step ends it with -ECANCELED, nothing committed, and no
 * temporary left but the checkpointed partial a later attempt resumes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "dataset.h"
#include "dataset_engine.h"
#include "engine_fixture.h"
#include "unit.h"

#define DS    2 /* any dataset: each test starts with nothing cached */
#define OTHER 4

/* The committed .tsv.gz of DS is exactly v, with etag and its inflated size. */
static void assert_committed(const struct fx_version *v, const char *etag)
{
	struct meta m;

	fx_assert_committed(catalog_file(DS, KIND_GZ), v->gz, v->gz_len, etag, &m);
	assert_int_equal(m.tsv_size, (int64_t)v->plain_len);
}

static void assert_no_temp(int ds)
{
	struct meta_partial p;

	assert_false(fx_store_temp(catalog_file(ds, KIND_GZ), NULL, NULL, &p));
}

static void test_commits_what_the_origin_served(void **state)
{
	struct fx_version v = fx_version_make(600 * 1024, 3, 1);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;
	struct dataset_info info;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_true(res.changed);
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	assert_int_equal(fx_requests(rq), 1);
	assert_int_equal(rq[0].from, 0);
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_CACHED);

	/* A second download revalidates: a 304, nothing written again. */
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_false(res.changed);
	assert_int_equal(fx_requests(rq), 2);
	assert_string_equal(rq[1].if_none_match, "\"v1\"");
	assert_int_equal(rq[1].status, 304);
	assert_committed(&v, "\"v1\"");
	fx_version_free(&v);
}

/* DESIGN.md invariant 11: a dropped connection continues with Range + If-Range. */
static void test_dropped_connection_resumes_with_if_range(void **state)
{
	struct fx_version v = fx_version_make(600 * 1024, 2, 2);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;
	const uint64_t at = 100001; /* not on a piece boundary */

	(void)state;
	assert_true(v.gz_len > at + 1000);
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_drop_at(at, 1, NULL, 0, NULL);
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_int_equal(fx_requests(rq), 2);
	assert_int_equal(rq[0].from, 0);
	assert_int_equal(rq[1].from, at);
	assert_string_equal(rq[1].if_range, "\"v1\"");
	assert_int_equal(rq[1].status, 206);
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	fx_version_free(&v);
}

/* Invariant 11: the partial an earlier run checkpointed is continued, not fetched again. */
static void test_checkpointed_partial_of_an_earlier_run_resumes(void **state)
{
	struct fx_version v = fx_version_make(600 * 1024, 3, 3);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct meta_partial p = {.total = 0};
	struct dataset_result res;
	const size_t durable = 150000, present = 200000;

	(void)state;
	fx_url_of(catalog_file(DS, KIND_GZ), p.version.url, sizeof(p.version.url));
	strcpy(p.version.etag, "\"v1\"");
	p.total = (int64_t)v.gz_len;
	p.durable = (int64_t)durable;
	/* Bytes past the checkpoint that still verify are kept too (a killed daemon loses none). */
	fx_store_put_partial(catalog_file(DS, KIND_GZ), v.gz, present, &p);
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_int_equal(fx_requests(rq), 1);
	assert_int_equal(rq[0].from, present);
	assert_string_equal(rq[0].if_range, "\"v1\"");
	assert_int_equal(rq[0].status, 206);
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	fx_version_free(&v);
}

/* Invariant 3: the origin changes the file mid-download; the copy is all new version. */
static void test_new_version_mid_download_starts_over(void **state)
{
	struct fx_version v1 = fx_version_make(600 * 1024, 2, 4),
			  v2 = fx_version_make(500 * 1024, 3, 5);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;

	(void)state;
	fx_origin_serve(v1.gz, v1.gz_len, "\"v1\"");
	fx_origin_drop_at(200000, 1, v2.gz, v2.gz_len, "\"v2\"");
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_int_equal(fx_requests(rq), 2);
	assert_int_equal(rq[1].from, 200000);
	assert_string_equal(rq[1].if_range, "\"v1\"");
	assert_int_equal(rq[1].status, 200); /* If-Range failed: the whole new version */
	assert_committed(&v2, "\"v2\"");
	assert_no_temp(DS);
	fx_version_free(&v1);
	fx_version_free(&v2);
}

/* An earlier run's partial of a version the origin no longer has: the new one, whole. */
static void test_partial_of_an_old_version_is_not_continued(void **state)
{
	struct fx_version v1 = fx_version_make(600 * 1024, 2, 6),
			  v2 = fx_version_make(600 * 1024, 2, 7);
	struct meta_partial p = {.total = 0};
	struct dataset_result res;

	(void)state;
	fx_url_of(catalog_file(DS, KIND_GZ), p.version.url, sizeof(p.version.url));
	strcpy(p.version.etag, "\"v1\"");
	p.total = (int64_t)v1.gz_len;
	p.durable = 300000;
	fx_store_put_partial(catalog_file(DS, KIND_GZ), v1.gz, 300000, &p);
	fx_origin_serve(v2.gz, v2.gz_len, "\"v2\"");
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_committed(&v2, "\"v2\"");
	fx_version_free(&v1);
	fx_version_free(&v2);
}

/*
 * A corrupt member (the CRC of the second of three) is found, retried from
 * scratch, and fails: nothing committed, the old copy kept (invariant 2).
 */
static void test_corrupt_member_commits_nothing(void **state)
{
	struct fx_version good = fx_version_make(300 * 1024, 1, 8);
	struct fx_version m[3] = {fx_version_make(200 * 1024, 1, 9),
				  fx_version_make(200 * 1024, 1, 10),
				  fx_version_make(200 * 1024, 1, 11)};
	size_t len = m[0].gz_len + m[1].gz_len + m[2].gz_len;
	unsigned char *bad = malloc(len);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;
	struct dataset_info info;
	int n;

	(void)state;
	assert_non_null(bad);
	memcpy(bad, m[0].gz, m[0].gz_len);
	memcpy(bad + m[0].gz_len, m[1].gz, m[1].gz_len);
	memcpy(bad + m[0].gz_len + m[1].gz_len, m[2].gz, m[2].gz_len);
	bad[m[0].gz_len + m[1].gz_len - 8] ^= 0x55; /* member 2's CRC-32 */

	fx_origin_serve(good.gz, good.gz_len, "\"good\"");
	assert_int_equal(fx_download(DS, false).err, 0);
	fx_origin_serve(bad, len, "\"bad\"");
	res = fx_download(DS, true);
	assert_int_equal(res.err, -EBADMSG);
	assert_non_null(strstr(res.error, "corrupt gzip data"));
	assert_committed(&good, "\"good\"");
	assert_no_temp(DS);
	/* Each retry starts from scratch: a corrupt prefix is never resumed. */
	n = fx_requests(rq);
	assert_int_equal(n, 1 + 4); /* the good one, then the first attempt and 3 retries */
	for (int i = 1; i < n; i++)
		assert_int_equal(rq[i].from, 0);
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_FAILED);
	assert_true(info.cached);
	assert_non_null(strstr(info.error, "corrupt gzip data"));
	free(bad);
	for (int i = 0; i < 3; i++)
		fx_version_free(&m[i]);
	fx_version_free(&good);
}

/* Starts a download of ds, waits until the origin stalls it, cancels it; its result. */
static struct dataset_result cancel_when_stalled(int ds)
{
	struct dataset_result res;
	struct transfer *t = dataset_download(ds, false);

	assert_non_null(t);
	assert_true(fx_origin_wait_stalled());
	atomic_store(&t->cancel, true);
	dataset_wait(t, &res);
	return res;
}

static void assert_cancelled_clean(const struct dataset_result *res, int ds)
{
	struct dataset_info info;
	unsigned char *got;
	size_t len;
	struct meta m;

	assert_int_equal(res->err, -ECANCELED);
	assert_false(res->changed);
	assert_false(fx_store_committed(catalog_file(ds, KIND_GZ), &got, &len, &m));
	dataset_info(ds, &info);
	assert_int_equal(info.state, DS_ABSENT); /* a cancel is no failure */
}

static void test_cancel_before_the_first_byte(void **state)
{
	struct fx_version v = fx_version_make(100 * 1024, 1, 12);
	struct dataset_result res;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_stall_at(0); /* before the response headers */
	res = cancel_when_stalled(DS);
	assert_cancelled_clean(&res, DS);
	assert_no_temp(DS);
	fx_version_free(&v);
}

/* A download waiting for one of `concurrency` (1) slots ends at its cancel without a request. */
static void test_cancel_while_queued_for_a_slot(void **state)
{
	struct fx_version v = fx_version_make(300 * 1024, 1, 13);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;
	struct transfer *first, *queued;
	struct dataset_info info;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_stall_at(50000);
	first = dataset_download(OTHER, false);
	assert_non_null(first);
	assert_true(fx_origin_wait_stalled());
	queued = dataset_download(DS, false);
	assert_non_null(queued);
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_QUEUED);
	atomic_store(&queued->cancel, true);
	dataset_wait(queued, &res);
	assert_cancelled_clean(&res, DS);
	assert_no_temp(DS);
	assert_int_equal(fx_requests(rq), 1); /* the first download's only */
	fx_origin_release();
	dataset_wait(first, &res);
	assert_int_equal(res.err, 0);
	fx_version_free(&v);
}

/*
 * Cancelled mid-body (an unmount): nothing committed, and the bytes that
 * arrived are checkpointed, of their version, for the next attempt, which
 * asks only for the rest (invariant 11).
 */
static void test_cancel_mid_body_checkpoints_and_resumes(void **state)
{
	struct fx_version v = fx_version_make(600 * 1024, 2, 14);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct meta_partial p;
	struct dataset_result res;
	unsigned char *part;
	size_t len;
	const uint64_t at = 123457;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_stall_at(at);
	res = cancel_when_stalled(DS);
	assert_cancelled_clean(&res, DS);
	assert_true(fx_store_temp(catalog_file(DS, KIND_GZ), &part, &len, &p));
	assert_int_equal(p.durable, (int64_t)at);
	assert_int_equal(p.total, (int64_t)v.gz_len);
	assert_string_equal(p.version.etag, "\"v1\"");
	assert_int_equal(len, at);
	assert_memory_equal(part, v.gz, len);
	free(part);

	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_int_equal(fx_requests(rq), 2);
	assert_int_equal(rq[1].from, at);
	assert_string_equal(rq[1].if_range, "\"v1\"");
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	fx_version_free(&v);
}

/*
 * Cancelled once every byte arrived, before it is verified to its end and
 * committed: nothing committed; the next attempt verifies and commits the
 * partial without asking the origin again.
 */
static void test_cancel_before_verify_then_commit_without_a_request(void **state)
{
	struct fx_version v = fx_version_make(300 * 1024, 2, 15);
	struct fx_request rq[FX_REQUESTS_MAX];
	struct dataset_result res;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_stall_at(v.gz_len);
	res = cancel_when_stalled(DS);
	assert_cancelled_clean(&res, DS);
	res = fx_download(DS, false);
	assert_int_equal(res.err, 0);
	assert_int_equal(fx_requests(rq), 1);
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	fx_version_free(&v);
}

static struct transfer *committing; /* the download test_cancel_during_commit cancels */

static void cancel_on_commit(const char *file)
{
	if (strcmp(file, catalog_file(DS, KIND_GZ)) == 0)
		atomic_store(&committing->cancel, true);
}

/*
 * A cancel that arrives while the store commits comes too late to stop it:
 * the commit is atomic, and the result is the whole new copy, committed and
 * served, with no temporary left.
 */
static void test_cancel_during_commit_is_too_late(void **state)
{
	struct fx_version v = fx_version_make(300 * 1024, 2, 16);
	struct dataset_result res;
	struct dataset_info info;

	(void)state;
	fx_origin_serve(v.gz, v.gz_len, "\"v1\"");
	fx_origin_stall_at(1000); /* so that committing is set before the commit */
	committing = dataset_download(DS, false);
	assert_non_null(committing);
	assert_true(fx_origin_wait_stalled());
	fx_store_on_commit(cancel_on_commit);
	fx_origin_release();
	dataset_wait(committing, &res);
	assert_int_equal(res.err, 0);
	assert_true(res.changed);
	assert_committed(&v, "\"v1\"");
	assert_no_temp(DS);
	dataset_info(DS, &info);
	assert_int_equal(info.state, DS_CACHED);
	fx_version_free(&v);
}

int test_download_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_commits_what_the_origin_served, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_dropped_connection_resumes_with_if_range, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_checkpointed_partial_of_an_earlier_run_resumes,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_new_version_mid_download_starts_over, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_partial_of_an_old_version_is_not_continued,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_member_commits_nothing, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_before_the_first_byte, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_while_queued_for_a_slot, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_mid_body_checkpoints_and_resumes, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_before_verify_then_commit_without_a_request,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_during_commit_is_too_late, fx_setup,
					    fx_teardown),
	};

	return cmocka_run_group_tests_name("download", tests, NULL, NULL);
}
