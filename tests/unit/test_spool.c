/*
 * test_spool.c - write-behind: the file holds exactly what was put, in order,
 * across chunks larger and smaller than a slot; landed() reports growing ends
 * up to the total; a failing write reaches the producer as its errno and
 * never blocks it; freeing without finishing drops what is queued; a slot
 * lent with spool_buffer() and filled in place is queued as it is.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "unit.h"

struct landing {
	uint64_t last;
	int calls;
	int backwards; /* ends that did not grow */
};

static void on_landed(void *ctx, uint64_t end)
{
	struct landing *l = ctx;

	if (end <= l->last)
		l->backwards++;
	l->last = end;
	l->calls++;
}

static int temp_fd(void)
{
	char path[] = "/tmp/imdbfs-unit-spool-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(unlink(path), 0);
	return fd;
}

/* A byte pattern that shows any reordering or loss. */
static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 2654435761u >> 13);
}

static void test_writes_everything_in_order(void **state)
{
	static const size_t sizes[] = {
	    1, 4096, SPOOL_SLOT_BYTES, SPOOL_SLOT_BYTES + 7, 3 * SPOOL_SLOT_BYTES + 1, 100, 65536};
	size_t total = 0, off = 0;
	struct landing l = {0};
	int fd = temp_fd();
	struct spool *s = spool_new(fd, on_landed, &l);
	unsigned char *want, *got;

	(void)state;
	assert_non_null(s);
	for (int round = 0; round < 20; round++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			total += sizes[i];
	want = malloc(total);
	got = malloc(total);
	assert_true(want && got);
	for (size_t i = 0; i < total; i++)
		want[i] = pattern(i);
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			assert_int_equal(spool_put(s, want + off, sizes[i]), 0);
			off += sizes[i];
		}
	}
	assert_int_equal(spool_finish(s), 0);
	assert_int_equal(l.last, total);
	assert_int_equal(l.backwards, 0);
	assert_true(l.calls >= 20);
	assert_int_equal(pread(fd, got, total, 0), (ssize_t)total);
	assert_memory_equal(got, want, total);
	spool_free(s);
	close(fd);
	free(want);
	free(got);
}

static void test_write_error_reaches_the_producer(void **state)
{
	struct landing l = {0};
	int fd = open("/dev/null", O_RDONLY); /* every pwrite fails with EBADF */
	struct spool *s;
	char buf[4096] = {0};
	int rc = 0;

	(void)state;
	assert_true(fd >= 0);
	s = spool_new(fd, on_landed, &l);
	assert_non_null(s);
	/* Far more than the slots hold: the producer must see the error, not wait forever. */
	for (int i = 0; i < 10000 && !rc; i++)
		rc = spool_put(s, buf, sizeof(buf));
	assert_int_equal(rc, -EBADF);
	assert_int_equal(spool_finish(s), -EBADF);
	assert_int_equal(l.calls, 0);
	spool_free(s);
	close(fd);
}

static void test_free_without_finish(void **state)
{
	struct landing l = {0};
	int fd = temp_fd();
	struct spool *s = spool_new(fd, on_landed, &l);
	char *buf = calloc(1, SPOOL_SLOT_BYTES);
	struct stat st;

	(void)state;
	assert_true(s && buf);
	for (int i = 0; i < 2 * SPOOL_SLOTS; i++)
		assert_int_equal(spool_put(s, buf, SPOOL_SLOT_BYTES), 0);
	spool_free(s); /* drops what is queued; must not hang or leak */
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_size <= 2 * SPOOL_SLOTS * SPOOL_SLOT_BYTES);
	assert_int_equal((uint64_t)st.st_size, l.last);
	spool_free(NULL);
	close(fd);
	free(buf);
}

static void test_lent_slots_are_queued_in_place(void **state)
{
	const size_t n = 1000, rounds = 3 * SPOOL_SLOTS;
	struct landing l = {0};
	int fd = temp_fd();
	struct spool *s = spool_new(fd, on_landed, &l);
	unsigned char *got = malloc(n * rounds);

	(void)state;
	assert_true(s && got);
	for (size_t r = 0; r < rounds; r++) {
		void *buf;
		assert_int_equal(spool_buffer(s, &buf), 0);
		for (size_t i = 0; i < n; i++)
			((unsigned char *)buf)[i] = pattern(r * n + i);
		assert_int_equal(spool_put(s, buf, n), 0);
	}
	assert_int_equal(spool_finish(s), 0);
	assert_int_equal(pread(fd, got, n * rounds, 0), (ssize_t)(n * rounds));
	for (size_t i = 0; i < n * rounds; i++)
		assert_int_equal(got[i], pattern(i));
	spool_free(s);
	close(fd);
	free(got);
}

int test_spool_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_writes_everything_in_order),
	    cmocka_unit_test(test_write_error_reaches_the_producer),
	    cmocka_unit_test(test_free_without_finish),
	    cmocka_unit_test(test_lent_slots_are_queued_in_place),
	};

	return cmocka_run_group_tests_name("spool", tests, NULL, NULL);
}
