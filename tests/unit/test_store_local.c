/*
 * test_store_local.c - the commit of a copy and its metadata under failures
 * and crashes.
 *
 * The unit-test binary is linked with --wrap for renameat, linkat and
 * unlinkat (see the Makefile), so that these calls can be made to fail:
 *   - one failure at the Nth call (fail_at): the commit returns an error,
 *     and the old copy with its old metadata must still be served;
 *   - every call from the Nth on fails (crash_at), a crash: what is on disk
 *     is what the first N calls did; a fresh store_local_open() then must
 *     find the old copy with its old metadata, or the new with the new.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"

int __real_renameat(int, const char *, int, const char *);
int __real_linkat(int, const char *, int, const char *, int);
int __real_unlinkat(int, const char *, int);
int __wrap_renameat(int, const char *, int, const char *);
int __wrap_linkat(int, const char *, int, const char *, int);
int __wrap_unlinkat(int, const char *, int);

static int calls;	  /* wrapped calls since the last reset */
static int fail_at = -1;  /* this one call fails */
static int crash_at = -1; /* this call and every later one fail */

static int injected(void)
{
	int n = calls++;

	if (n == fail_at || (crash_at >= 0 && n >= crash_at)) {
		errno = EIO;
		return 1;
	}
	return 0;
}

int __wrap_renameat(int a, const char *b, int c, const char *d)
{
	return injected() ? -1 : __real_renameat(a, b, c, d);
}

int __wrap_linkat(int a, const char *b, int c, const char *d, int e)
{
	return injected() ? -1 : __real_linkat(a, b, c, d, e);
}

int __wrap_unlinkat(int a, const char *b, int c)
{
	return injected() ? -1 : __real_unlinkat(a, b, c);
}

static void inject(int fail, int crash)
{
	calls = 0;
	fail_at = fail;
	crash_at = crash;
}

#define FILE_NAME "title.ratings.tsv.gz"
#define SIZE	  4096

struct rig {
	char dir[64];
	struct store *st;
};

static void version_bytes(int v, char *buf)
{
	memset(buf, 'a' + v, SIZE); /* the same size for every version: only the metadata tells */
}

static void version_meta(int v, struct meta *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->url, sizeof(m->url), "http://origin/" FILE_NAME);
	snprintf(m->etag, sizeof(m->etag), "\"v%d\"", v);
	m->size = SIZE;
	m->tsv_size = -1;
	m->fetched_at = 1000.0 + v;
}

static void open_store(struct rig *r)
{
	char err[256];

	assert_int_equal(store_local_open(r->dir, &r->st, err, sizeof(err)), 0);
}

/* Writes version v to a temporary and commits it, with inject(fail, crash); returns commit's
 * result. */
static int commit_version(struct rig *r, int v, int fail, int crash)
{
	char buf[SIZE];
	struct meta m;
	int fd, rc;

	version_bytes(v, buf);
	version_meta(v, &m);
	assert_int_equal(r->st->ops->create_temp(r->st, FILE_NAME, &fd), 0);
	assert_int_equal(pwrite(fd, buf, SIZE, 0), SIZE);
	inject(fail, crash);
	rc = r->st->ops->commit(r->st, FILE_NAME, fd, &m);
	fail_at = crash_at = -1;
	close(fd);
	return rc;
}

/* The version served: its metadata's and its bytes' must agree; 0 when none. */
static int served_version(struct rig *r)
{
	char want[SIZE], got[SIZE];
	struct meta m;
	int fd, v;

	if (r->st->ops->lookup(r->st, FILE_NAME, &m) != 0)
		return 0;
	assert_int_equal(sscanf(m.etag, "\"v%d\"", &v), 1);
	assert_int_equal(r->st->ops->open(r->st, FILE_NAME, &fd), 0);
	assert_int_equal(pread(fd, got, SIZE, 0), SIZE);
	close(fd);
	version_bytes(v, want);
	assert_memory_equal(got, want, SIZE);
	return v;
}

/* Names left in .partial other than the temporary and its saved state. */
static int stray_temporaries(struct rig *r)
{
	char path[128];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/.partial", r->dir);
	assert_non_null(d = opendir(path));
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && strcmp(de->d_name, FILE_NAME) != 0 &&
		    strcmp(de->d_name, FILE_NAME ".state") != 0)
			n++;
	closedir(d);
	return n;
}

static int setup(void **state)
{
	struct rig *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	snprintf(r->dir, sizeof(r->dir), "/tmp/imdbfs-unit-store-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	inject(-1, -1);
	open_store(r);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;
	char cmd[128];

	inject(-1, -1);
	if (r->st)
		r->st->ops->destroy(r->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
	assert_int_equal(system(cmd), 0);
	free(r);
	return 0;
}

static void test_commit_then_lookup(void **state)
{
	struct rig *r = *state;

	assert_int_equal(served_version(r), 0);
	assert_int_equal(commit_version(r, 1, -1, -1), 0);
	assert_int_equal(served_version(r), 1);
	assert_int_equal(commit_version(r, 2, -1, -1), 0);
	assert_int_equal(served_version(r), 2);
	assert_int_equal(stray_temporaries(r), 0);
}

/* A failure of any one call of a commit: the old copy with its old metadata stays served. */
static void test_failed_commit_keeps_the_old_copy(void **state)
{
	struct rig *r = *state;
	int n, total;

	assert_int_equal(commit_version(r, 1, -1, -1), 0);
	assert_int_equal(commit_version(r, 2, -1, -1), 0);
	total = calls;
	assert_true(total > 0);
	assert_int_equal(commit_version(r, 1, -1, -1), 0);
	for (n = 0; n < total; n++) {
		int from = served_version(r), rc;

		rc = commit_version(r, from == 1 ? 2 : 1, n, -1);
		if (rc == 0) { /* a failed clean-up: the next start finishes it */
			assert_int_equal(served_version(r), from == 1 ? 2 : 1);
			r->st->ops->destroy(r->st);
			open_store(r);
		}
		assert_int_equal(served_version(r), rc == 0 ? (from == 1 ? 2 : 1) : from);
		assert_int_equal(stray_temporaries(r), 0);
	}
}

/* A crash after any call of a commit: the next start finds the old pair or the new one. */
static void test_crash_during_commit_recovers_a_whole_pair(void **state)
{
	struct rig *r = *state;
	int n, total;

	assert_int_equal(commit_version(r, 1, -1, -1), 0);
	assert_int_equal(commit_version(r, 2, -1, -1), 0);
	total = calls;
	for (n = 0; n <= total; n++) {
		int from = served_version(r), to = from == 1 ? 2 : 1, got;

		commit_version(r, to, -1, n);
		r->st->ops->destroy(r->st);
		open_store(r);
		got = served_version(r);
		if (got != from && got != to)
			fail_msg("crash after %d of %d calls: served version %d, not %d or %d", n,
				 total, got, from, to);
		assert_int_equal(stray_temporaries(r), 0);
	}
}

/* The first commit of a file, failed or crashed at any call: the new pair, or nothing. */
static void test_first_commit_is_whole_or_absent(void **state)
{
	struct rig *r = *state;
	int n, total;

	assert_int_equal(commit_version(r, 1, -1, -1), 0);
	total = calls;
	for (n = 0; n <= 2 * total; n++) {
		int rc, got;

		assert_int_equal(r->st->ops->evict(r->st, FILE_NAME), 0);
		rc = n < total ? commit_version(r, 1, n, -1) : commit_version(r, 1, -1, n - total);
		got = served_version(r);
		if (rc)
			assert_int_equal(got, 0);
		r->st->ops->destroy(r->st);
		open_store(r);
		got = served_version(r);
		assert_true(got == 0 || got == 1);
		assert_int_equal(stray_temporaries(r), 0);
		if (got == 0)
			assert_int_equal(commit_version(r, 1, -1, -1), 0);
	}
}

int test_store_local_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_commit_then_lookup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_commit_keeps_the_old_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_during_commit_recovers_a_whole_pair, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_first_commit_is_whole_or_absent, setup, teardown),
	};

	return cmocka_run_group_tests_name("store_local", tests, NULL, NULL);
}
