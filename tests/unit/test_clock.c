/* test_clock.c - the one ISO-8601 rendering used by every JSON file and log line. */
#include <string.h>

#include "clock.h"
#include "unit.h"

static void test_clock_iso8601_fixed_epoch_with_quarter_second(void **state)
{
	char buf[32];

	(void)state;
	clock_iso8601(1700000000.25, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.250Z");
}

static void test_clock_iso8601_epoch_zero(void **state)
{
	char buf[32];

	(void)state;
	clock_iso8601(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
}

static void test_clock_iso8601_whole_second_is_utc(void **state)
{
	char buf[32];

	(void)state;
	/* Sun, 26 Oct 2025 02:00:00 GMT, the seed's example Last-Modified. */
	clock_iso8601(1761444000, buf, sizeof(buf));
	assert_string_equal(buf, "2025-10-26T02:00:00.000Z");
}

/*
 * 1700000000.123 is stored as 1700000000.1229999...: truncating to whole
 * milliseconds shows .122, one millisecond off the value written.
 */
static void test_clock_iso8601_milliseconds_round_to_nearest(void **state)
{
	char buf[32];

	(void)state;
	clock_iso8601(1700000000.123, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
	clock_iso8601(1700000000.001, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.001Z");
}

static void test_clock_iso8601_just_below_next_second_stays_in_range(void **state)
{
	char buf[32];

	(void)state;
	/* Rounding must never print ".1000Z" or step back a second. */
	clock_iso8601(1700000000.9996, buf, sizeof(buf));
	assert_true(strcmp(buf, "2023-11-14T22:13:20.999Z") == 0 ||
		    strcmp(buf, "2023-11-14T22:13:21.000Z") == 0);
}

static void test_clock_iso8601_respects_small_buffer(void **state)
{
	char buf[8];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	clock_iso8601(1700000000.25, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11");
}

int test_clock_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clock_iso8601_fixed_epoch_with_quarter_second),
	    cmocka_unit_test(test_clock_iso8601_epoch_zero),
	    cmocka_unit_test(test_clock_iso8601_whole_second_is_utc),
	    cmocka_unit_test(test_clock_iso8601_milliseconds_round_to_nearest),
	    cmocka_unit_test(test_clock_iso8601_just_below_next_second_stays_in_range),
	    cmocka_unit_test(test_clock_iso8601_respects_small_buffer),
	};

	return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
