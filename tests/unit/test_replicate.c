/* test_replicate.c - the upload queue with a fake store and uploader: newest wins, bound, stop. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "replicate.h"
#include "unit.h"

/* What the fakes saw and do; guarded by fake_lock. */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static char uploads[16][600]; /* "file@etag=outcome", in order */
static int n_uploads;
static bool gate_open;	      /* uploads of "slow" files wait for it (or their cancel) */
static char current_etag[64]; /* the version the fake store holds of every file */
static int released;	      /* leases released */
static char leases[8];	      /* their addresses stand for leases */

static struct store_azure_lease *lease(int i)
{
	return (struct store_azure_lease *)(void *)&leases[i];
}

static int fake_open(void *ctx, const char *file, const struct meta *m, int *fd)
{
	bool same;

	(void)ctx, (void)file;
	pthread_mutex_lock(&fake_lock);
	same = !current_etag[0] || strcmp(current_etag, m->etag) == 0;
	pthread_mutex_unlock(&fake_lock);
	if (!same)
		return -ESTALE;
	*fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

static int fake_upload(void *ctx, const char *file, int fd, const struct meta *m,
		       int (*cancelled)(void *), void *cancel_ctx, char *err, size_t errlen)
{
	int rc = 0;

	(void)ctx, (void)fd;
	for (;;) {
		pthread_mutex_lock(&fake_lock);
		bool go = gate_open || strncmp(file, "slow", 4) != 0;
		pthread_mutex_unlock(&fake_lock);
		if (cancelled(cancel_ctx)) { /* first: a cancel before the gate opened wins */
			rc = -ECANCELED;
			break;
		}
		if (go)
			break;
		usleep(1000);
	}
	pthread_mutex_lock(&fake_lock);
	if (n_uploads < 16)
		snprintf(uploads[n_uploads++], sizeof(uploads[0]), "%s@%s=%s", file, m->etag,
			 rc ? "cancelled" : "ok");
	pthread_mutex_unlock(&fake_lock);
	if (rc)
		snprintf(err, errlen, "cancelled");
	return rc;
}

static void fake_release(void *ctx, struct store_azure_lease *l)
{
	(void)ctx;
	pthread_mutex_lock(&fake_lock);
	/* Counted only when it is one of ours: a stray pointer shows as a wrong count. */
	released += (char *)(void *)l >= leases && (char *)(void *)l < leases + sizeof(leases);
	pthread_mutex_unlock(&fake_lock);
}

static const struct replicate_ops fake_ops = {
    .open_copy = fake_open, .upload = fake_upload, .release = fake_release};

static int setup(void **state)
{
	(void)state;
	pthread_mutex_lock(&fake_lock);
	n_uploads = released = 0;
	gate_open = false;
	current_etag[0] = '\0';
	pthread_mutex_unlock(&fake_lock);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	replicate_stop();
	return 0;
}

static struct meta version(const char *etag)
{
	struct meta m = {.size = 1, .tsv_size = -1};

	snprintf(m.etag, sizeof(m.etag), "%s", etag);
	return m;
}

static void wait_state(const char *file, enum replicate_state want)
{
	char err[256];

	for (int i = 0; i < 5000; i++) {
		if (replicate_status(file, err, sizeof(err)) == want)
			return;
		usleep(1000);
	}
	fail_msg("%s never reached %s", file, replicate_state_name(want));
}

static void wait_released(int want)
{
	for (int i = 0; i < 5000; i++) {
		pthread_mutex_lock(&fake_lock);
		int n = released;
		pthread_mutex_unlock(&fake_lock);
		if (n == want)
			return;
		usleep(1000);
	}
	fail_msg("%d leases released, not %d", released, want);
}

static void open_gate(void)
{
	pthread_mutex_lock(&fake_lock);
	gate_open = true;
	pthread_mutex_unlock(&fake_lock);
}

static void test_newest_wins(void **state)
{
	struct meta a1 = version("a1"), a2 = version("a2");
	struct meta b1 = version("b1"), b2 = version("b2"), b3 = version("b3");

	(void)state;
	assert_int_equal(replicate_init(&fake_ops, 4), 0);
	assert_int_equal(replicate_start(), 0);
	assert_int_equal(replicate_enqueue("slow.a", &a1, lease(0)), 0);
	wait_state("slow.a", REPL_UPLOADING);
	/* Three requests for b while the worker is busy: only the last is ever uploaded. */
	assert_int_equal(replicate_enqueue("slow.b", &b1, NULL), 0);
	assert_int_equal(replicate_enqueue("slow.b", &b2, lease(1)), 0);
	assert_int_equal(replicate_enqueue("slow.b", &b3, NULL), 0);
	assert_int_equal(replicate_status("slow.b", (char[8]){0}, 8), REPL_QUEUED);
	/* A newer a cancels the one in flight; it keeps a's lease for the newer request. */
	assert_int_equal(replicate_enqueue("slow.a", &a2, NULL), 0);
	wait_state("slow.a", REPL_QUEUED);
	open_gate();
	wait_state("slow.a", REPL_DONE);
	wait_state("slow.b", REPL_DONE);
	/* The worker is idle now (both done): the fakes' records are stable. */
	assert_int_equal(n_uploads, 3);
	assert_string_equal(uploads[0], "slow.a@a1=cancelled");
	assert_string_equal(uploads[1], "slow.b@b3=ok"); /* queued before a2 */
	assert_string_equal(uploads[2], "slow.a@a2=ok");
	wait_released(2); /* each lease once its file's newest upload ended */
}

static void test_bounded_and_refused_after_stop(void **state)
{
	struct meta v = version("v");

	(void)state;
	assert_int_equal(replicate_init(&fake_ops, 2), 0);
	/* No worker yet: requests wait. One record per file, two files at most. */
	assert_int_equal(replicate_enqueue("a", &v, lease(0)), 0);
	assert_int_equal(replicate_enqueue("b", &v, NULL), 0);
	assert_int_equal(replicate_enqueue("a", &v, NULL), 0);
	assert_int_equal(replicate_enqueue("c", &v, lease(1)), -ENOSPC);
	assert_int_equal(released, 1); /* the refused request's lease, at once */
	assert_int_equal(replicate_status("c", (char[8]){0}, 8), REPL_NONE);
	/* A lease handed over can be taken back by a new transfer of the file. */
	assert_ptr_equal(replicate_take_lease("a"), lease(0));
	assert_null(replicate_take_lease("a"));
	assert_int_equal(replicate_enqueue("a", &v, lease(2)), 0);
	replicate_stop(); /* the queued requests are dropped, their leases released */
	assert_int_equal(released, 2);
	assert_int_equal(n_uploads, 0);
	assert_int_equal(replicate_enqueue("a", &v, lease(3)), -ESHUTDOWN);
	assert_int_equal(released, 3);
	replicate_stop(); /* idempotent */
}

static void test_stop_cancels_the_upload_in_flight_and_joins(void **state)
{
	struct meta v = version("v");
	struct timespec t0, t1;

	(void)state;
	assert_int_equal(replicate_init(&fake_ops, 4), 0);
	assert_int_equal(replicate_start(), 0);
	assert_int_equal(replicate_enqueue("slow.a", &v, lease(0)), 0);
	assert_int_equal(replicate_enqueue("slow.b", &v, lease(1)), 0);
	wait_state("slow.a", REPL_UPLOADING);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	replicate_stop();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	/* Joined: the upload ended before stop returned, b never started, both leases freed. */
	assert_int_equal(n_uploads, 1);
	assert_string_equal(uploads[0], "slow.a@v=cancelled");
	assert_int_equal(released, 2);
}

static void test_cancel_drops_the_request_and_waits_for_the_upload(void **state)
{
	struct meta v = version("v");
	char err[256];

	(void)state;
	assert_int_equal(replicate_init(&fake_ops, 4), 0);
	assert_int_equal(replicate_start(), 0);
	assert_int_equal(replicate_enqueue("slow.a", &v, lease(0)), 0);
	assert_int_equal(replicate_enqueue("slow.b", &v, lease(1)), 0);
	wait_state("slow.a", REPL_UPLOADING);
	replicate_cancel("slow.b"); /* queued: dropped */
	replicate_cancel("slow.a"); /* in flight: returns once the upload ended */
	assert_int_equal(n_uploads, 1);
	assert_string_equal(uploads[0], "slow.a@v=cancelled");
	assert_int_equal(replicate_status("slow.a", err, sizeof(err)), REPL_DROPPED);
	assert_string_equal(err, "deleted before its upload ended");
	assert_int_equal(replicate_status("slow.b", err, sizeof(err)), REPL_DROPPED);
	wait_released(2);
	open_gate();
	usleep(20 * 1000);
	assert_int_equal(n_uploads, 1); /* neither comes back */
}

static void test_a_replaced_copy_is_dropped_not_uploaded(void **state)
{
	struct meta v1 = version("v1");

	(void)state;
	snprintf(current_etag, sizeof(current_etag), "v2"); /* refreshed before the upload ran */
	assert_int_equal(replicate_init(&fake_ops, 4), 0);
	assert_int_equal(replicate_start(), 0);
	assert_int_equal(replicate_enqueue("a", &v1, NULL), 0);
	wait_state("a", REPL_DROPPED);
	assert_int_equal(n_uploads, 0);
	char err[256];
	replicate_status("a", err, sizeof(err));
	assert_string_equal(err, "the copy was replaced before its upload");
}

int test_replicate_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_newest_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounded_and_refused_after_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_cancels_the_upload_in_flight_and_joins, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_drops_the_request_and_waits_for_the_upload,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_replaced_copy_is_dropped_not_uploaded, setup,
					    teardown),
	};

	return cmocka_run_group_tests_name("replicate", tests, NULL, NULL);
}
