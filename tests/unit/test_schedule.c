/*
 * test_schedule.c - schedule_next_due: the next HH:MM UTC (strictly later,
 * rolling over midnight), the next interval from its base (at once when
 * late), the earlier of the two, and nothing when both are off.
 */
#include "schedule.h"
#include "unit.h"

/* 2026-11-26T00:00:00Z */
#define DAY0 1795651200.0

static void test_schedule_refresh_at_later_today_or_tomorrow(void **state)
{
	(void)state;
	/* 10:00 asked at 09:00 -> today; at 10:00 exactly and at 11:00 -> tomorrow */
	assert_true(schedule_next_due(DAY0 + 9 * 3600, 600, 0, 0) == DAY0 + 10 * 3600);
	assert_true(schedule_next_due(DAY0 + 10 * 3600, 600, 0, 0) == DAY0 + 86400 + 10 * 3600);
	assert_true(schedule_next_due(DAY0 + 11 * 3600, 600, 0, 0) == DAY0 + 86400 + 10 * 3600);
	/* 00:00 asked at 23:59:30 -> in 30 s */
	assert_true(schedule_next_due(DAY0 + 86370, 0, 0, 0) == DAY0 + 86400);
}

static void test_schedule_refresh_every_from_its_base(void **state)
{
	(void)state;
	assert_true(schedule_next_due(DAY0 + 5, -1, 60, DAY0) == DAY0 + 60);
	/* late by more than the interval (a suspended machine): at once */
	assert_true(schedule_next_due(DAY0 + 500, -1, 60, DAY0) == DAY0 + 500);
}

static void test_schedule_earlier_of_both_and_none_when_off(void **state)
{
	(void)state;
	assert_true(schedule_next_due(DAY0, 1, 3600, DAY0) == DAY0 + 60);
	assert_true(schedule_next_due(DAY0, 120, 3600, DAY0) == DAY0 + 3600);
	assert_true(schedule_next_due(DAY0, -1, 0, DAY0) == 0);
}

int test_schedule_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_schedule_refresh_at_later_today_or_tomorrow),
	    cmocka_unit_test(test_schedule_refresh_every_from_its_base),
	    cmocka_unit_test(test_schedule_earlier_of_both_and_none_when_off),
	};

	return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
