/*
 * test_fdshare.c - shared per-version descriptors (the last reference closes
 * the descriptor) and the descriptor budget (the soft limit raised to the
 * hard one, handles bounded by the limit minus the reserve).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fdshare.h"
#include "unit.h"

static void test_fdshare_last_put_closes(void **state)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct fdshare *s;

	(void)state;
	assert_true(fd >= 0);
	s = fdshare_new(fd);
	assert_non_null(s);
	assert_ptr_equal(fdshare_get(s), s);
	assert_int_equal(fdshare_fd(s), fd);
	fdshare_put(s);
	assert_true(fcntl(fd, F_GETFD) >= 0); /* one reference left: still open */
	fdshare_put(s);
	errno = 0;
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	fdshare_put(NULL); /* harmless */
}

static void test_fdshare_raises_soft_limit_and_bounds_handles(void **state)
{
	struct rlimit saved, low, now;
	long limit;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 512)
		skip(); /* cannot make soft < hard with room for the reserve */
	low = saved;
	low.rlim_cur = 300;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(fdshare_handle_bound(), 300 - FDSHARE_RESERVE);
	assert_int_equal(fdshare_raise_limit(&limit), 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_true(now.rlim_cur == saved.rlim_max);
	assert_true(limit > 300);
	low.rlim_cur = 100; /* below the reserve: no handle at all */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(fdshare_handle_bound(), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

int test_fdshare_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fdshare_last_put_closes),
	    cmocka_unit_test(test_fdshare_raises_soft_limit_and_bounds_handles),
	};

	return cmocka_run_group_tests_name("fdshare", tests, NULL, NULL);
}
