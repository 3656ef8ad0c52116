/* test_retry.c - the retry policy: attempts, backoff bounds, Retry-After, a cancellable sleep. */
#include <errno.h>

#include "clock.h"
#include "retry.h"
#include "unit.h"

static void test_retry_attempts(void **state)
{
	struct retry_policy p = {.attempts = 3, .base_seconds = 1};

	(void)state;
	assert_true(retry_again(&p, 1));
	assert_true(retry_again(&p, 2));
	assert_false(retry_again(&p, 3));
	p.attempts = 1; /* retries=0: the first attempt is the last */
	assert_false(retry_again(&p, 1));
}

static void test_retry_backoff_doubles_with_jitter_and_a_cap(void **state)
{
	struct retry_policy p = {.attempts = 50, .base_seconds = 2};

	(void)state;
	for (unsigned salt = 0; salt < 50; salt++) {
		double w1 = retry_backoff(&p, 1, 0, salt), w3 = retry_backoff(&p, 3, 0, salt);
		double w40 = retry_backoff(&p, 40, 0, salt);

		assert_true(w1 >= 2 * 0.75 && w1 <= 2 * 1.25);
		assert_true(w3 >= 8 * 0.75 && w3 <= 8 * 1.25);
		assert_true(w40 >= 120 * 0.75 && w40 <= 120 * 1.25); /* capped at 60 x 2 s */
	}
}

static void test_retry_backoff_honours_retry_after_capped(void **state)
{
	struct retry_policy p = {.attempts = 5, .base_seconds = 0.1};

	(void)state;
	assert_true(retry_backoff(&p, 1, 5.0, 1) == 5.0);    /* longer than the backoff: honoured */
	assert_true(retry_backoff(&p, 1, 3600.0, 1) == 6.0); /* but never past the cap */
	assert_true(retry_backoff(&p, 1, 0.01, 1) >= 0.075); /* shorter: the backoff wins */
}

static int fire(void *ctx)
{
	return clock_mono() >= *(double *)ctx;
}

static void test_retry_sleep_ends_at_once_on_cancel(void **state)
{
	double start = clock_mono(), at = start + 0.1;

	(void)state;
	assert_int_equal(retry_sleep(30, fire, &at), -ECANCELED);
	assert_true(clock_mono() - start < 1.0);
	start = clock_mono();
	assert_int_equal(retry_sleep(0.12, NULL, NULL), 0);
	assert_true(clock_mono() - start >= 0.12);
}

int test_retry_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_attempts),
	    cmocka_unit_test(test_retry_backoff_doubles_with_jitter_and_a_cap),
	    cmocka_unit_test(test_retry_backoff_honours_retry_after_capped),
	    cmocka_unit_test(test_retry_sleep_ends_at_once_on_cancel),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
