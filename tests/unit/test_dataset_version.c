/*
 * test_dataset_version.c - a version of a data file as an object: a
 * committed version holds its own descriptor (a dup of the file it was made
 * from), every reference keeps it, the last put closes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "dataset.h"
#include "dataset_engine.h"
#include "dataset_int.h"
#include "fdshare.h"
#include "unit.h"

static void test_dataset_version_last_put_closes_its_copy(void **state)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC), rc = 0, copy;
	struct dataset_version *v;

	(void)state;
	assert_true(fd >= 0);
	v = dataset_version_dup(fd, &rc);
	assert_non_null(v);
	copy = fdshare_fd(v->copy);
	assert_true(copy >= 0 && copy != fd); /* its own descriptor, not the transfer's */
	assert_ptr_equal(dataset_version_get(v), v);
	dataset_version_put(v);
	assert_true(fcntl(copy, F_GETFD) >= 0); /* one reference left: still open */
	dataset_version_put(v);
	errno = 0;
	assert_int_equal(fcntl(copy, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_true(fcntl(fd, F_GETFD) >= 0); /* the file it was made from is the caller's */
	close(fd);
	dataset_version_put(NULL); /* harmless */
}

static void test_dataset_version_dup_of_a_bad_descriptor_fails(void **state)
{
	int rc = 0;

	(void)state;
	assert_null(dataset_version_dup(-1, &rc));
	assert_int_equal(rc, -EBADF);
}

int test_dataset_version_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dataset_version_last_put_closes_its_copy),
	    cmocka_unit_test(test_dataset_version_dup_of_a_bad_descriptor_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
