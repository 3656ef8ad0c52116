/*
 * test_budget.c - the disk budget: a size known in advance is refused past
 * max_size (-EFBIG) or past the free space less the margin (-ENOSPC), a
 * growing file is stopped past max_size, and each refusal says why with the
 * numbers. The free space is the real one of the test's directory.
 */
#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

#include "budget.h"
#include "unit.h"

static uint64_t free_of(const char *dir)
{
	struct statvfs sv;

	assert_int_equal(statvfs(dir, &sv), 0);
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static void test_budget_margin_is_a_sixteenth_capped(void **state)
{
	(void)state;
	assert_true(budget_margin(64ull << 20) == 4ull << 20);
	assert_true(budget_margin(1ull << 20) == 64ull << 10);
	assert_true(budget_margin(1ull << 40) == BUDGET_MARGIN_MAX);
	assert_true(budget_margin(0) == 0);
}

static void test_budget_known_size_past_max_size_is_efbig(void **state)
{
	struct budget b;
	char err[256];

	(void)state;
	budget_init(&b, "/tmp", "download", 4u << 20);
	assert_int_equal(budget_expect(&b, (4 << 20) + 1, 0, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "download refused: 4194305 bytes"));
	assert_non_null(strstr(err, "max_size=4194304"));
	assert_int_equal(budget_expect(&b, 4 << 20, 0, err, sizeof(err)), 0);
	assert_int_equal(budget_expect(&b, -1, 0, err, sizeof(err)), 0); /* unknown: later */
}

static void test_budget_known_size_past_free_space_is_enospc(void **state)
{
	uint64_t avail = free_of("/tmp");
	struct budget b;
	char err[256];

	(void)state;
	budget_init(&b, "/tmp", "decompression", 1ull << 60);
	assert_int_equal(budget_expect(&b, (int64_t)avail + 1, 0, err, sizeof(err)), -ENOSPC);
	assert_non_null(strstr(err, "No space left on device: decompression refused"));
	assert_non_null(strstr(err, "free in /tmp"));
	/* What is already written does not count again. */
	assert_int_equal(budget_expect(&b, (int64_t)avail + 1, avail, err, sizeof(err)), 0);
	assert_int_equal(budget_expect(&b, 1, 0, err, sizeof(err)), 0);
}

static void test_budget_growing_file_stops_past_max_size(void **state)
{
	struct budget b;
	char err[256];

	(void)state;
	budget_init(&b, "/tmp", "download", 4u << 20);
	for (uint64_t n = 0; n <= 4u << 20; n += 64 * 1024)
		assert_int_equal(budget_grow(&b, n, err, sizeof(err)), 0);
	assert_int_equal(budget_grow(&b, (4u << 20) + 1, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "download stopped at max_size=4194304 bytes"));
}

static void test_budget_missing_directory_is_an_error(void **state)
{
	struct budget b;
	char err[256];

	(void)state;
	budget_init(&b, "/nonexistent/imdbfs", "download", 1u << 30);
	assert_int_equal(budget_expect(&b, 1, 0, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot see the free space"));
	assert_int_equal(budget_grow(&b, BUDGET_CHECK_BYTES, err, sizeof(err)), -ENOENT);
}

int test_budget_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_budget_margin_is_a_sixteenth_capped),
	    cmocka_unit_test(test_budget_known_size_past_max_size_is_efbig),
	    cmocka_unit_test(test_budget_known_size_past_free_space_is_enospc),
	    cmocka_unit_test(test_budget_growing_file_stops_past_max_size),
	    cmocka_unit_test(test_budget_missing_directory_is_an_error),
	};

	return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
