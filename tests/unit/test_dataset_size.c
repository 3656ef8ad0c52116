/*
 * test_dataset_size.c - the dataset layer's sizes without FUSE (dataset.h,
 * dataset_size.c): what dataset_size_known() says from an announcement, and
 * the lifecycle of a parked size waiter (DESIGN.md invariants 8 and 13):
 * answered exactly once, by a true cancel or by datasets_cancel_opens(),
 * and refused with -EINTR when the cancel came first.
 *
 * The datasets run on a local store in a temporary directory, against an
 * origin that accepts connections and never answers, so that every fetch a
 * waiter starts stays under way until the test ends it. Runs last: its
 * datasets_shutdown() refuses transfers for the rest of the process.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "download.h"
#include "http.h"
#include "store.h"
#include "tier.h"
#include "unit.h"

static struct config cfg;
static struct store *store;
static int silent = -1; /* the origin's listening socket, never accepted */
static char dir[] = "/tmp/imdbfs-unit-size-XXXXXX";
static char origin[64];

static int setup(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	char err[256];

	(void)state;
	silent = socket(AF_INET, SOCK_STREAM, 0);
	if (silent < 0 || bind(silent, (struct sockaddr *)&a, sizeof(a)) || listen(silent, 64) ||
	    getsockname(silent, (struct sockaddr *)&a, &len))
		return -1;
	snprintf(origin, sizeof(origin), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	if (!mkdtemp(dir) || http_global_init() || store_local_open(dir, &store, err, sizeof(err)))
		return -1;
	cfg.origin = cfg.origin_shown = origin;
	cfg.cache_dir = dir;
	cfg.concurrency = 7;
	cfg.max_age = 86400;
	cfg.retries = 0;
	cfg.retry_delay = 0.01;
	cfg.timeout = 60;
	cfg.segments = 1;
	cfg.max_size = CONFIG_DEFAULT_MAX_SIZE;
	cfg.decoder = "zlib";
	download_use_origin(&tier_origin); /* the engines' tests, run before, put a fake one */
	return datasets_init(&cfg, store);
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	datasets_shutdown();
	store->ops->destroy(store);
	http_global_cleanup();
	close(silent);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A waiter that counts its answers. */
struct counted {
	struct dataset_size_waiter w;
	atomic_int calls;
	atomic_int rc;
};

static void counted_ready(struct dataset_size_waiter *w, int rc)
{
	struct counted *c = (struct counted *)w;

	atomic_store(&c->rc, rc);
	atomic_fetch_add(&c->calls, 1);
}

static void counted_init(struct counted *c, int ds, enum file_kind kind)
{
	dataset_size_waiter_init(&c->w, ds, kind, counted_ready);
	atomic_store(&c->calls, 0);
	atomic_store(&c->rc, 1);
}

/* The probe's announcement gives a .tsv.gz its size and mtime, and the .tsv its own when known. */
static void test_size_known_from_an_announcement(void **state)
{
	struct meta m = {.size = 123456, .tsv_size = 987654321012LL, .mtime = 1761444000};
	struct meta later = m;
	int64_t size = -5, mtime = -5;
	struct counted c;

	(void)state;
	snprintf(m.etag, sizeof(m.etag), "\"v1\"");
	assert_false(dataset_size_known(0, KIND_GZ, &size, &mtime));
	assert_false(dataset_size_known(0, KIND_TSV, &size, &mtime));
	assert_true(dataset_wants_probe(0));
	dataset_announce(0, &m);
	assert_false(dataset_wants_probe(0));
	assert_true(dataset_size_known(0, KIND_GZ, &size, &mtime));
	assert_int_equal(size, 123456);
	assert_int_equal(mtime, 1761444000);
	assert_true(dataset_size_known(0, KIND_TSV, &size, &mtime));
	assert_int_equal(size, 987654321012LL); /* past 2^32: a count, never ISIZE */
	/* Known now: a waiter is answered at once, parks nothing and starts no fetch. */
	counted_init(&c, 0, KIND_TSV);
	assert_int_equal(dataset_size_wait_start(&c.w), 0);
	assert_int_equal(atomic_load(&c.calls), 0);
	/* A second announcement of the probe does not replace the first. */
	later.size = 1;
	dataset_announce(0, &later);
	assert_true(dataset_size_known(0, KIND_GZ, &size, &mtime));
	assert_int_equal(size, 123456);
	/* A .tsv.gz announced without the .tsv's count leaves the .tsv unknown. */
	m.tsv_size = -1;
	dataset_announce(1, &m);
	assert_true(dataset_size_known(1, KIND_GZ, &size, &mtime));
	assert_false(dataset_size_known(1, KIND_TSV, &size, &mtime));
}

/* A waiter parked on a fetch that never ends is answered by a true cancel, and only by it. */
static void test_cancelled_waiter_is_the_callers_to_answer(void **state)
{
	struct counted c;

	(void)state;
	counted_init(&c, 2, KIND_GZ);
	assert_int_equal(dataset_size_wait_start(&c.w), -EINPROGRESS);
	usleep(100 * 1000);
	assert_int_equal(atomic_load(&c.calls), 0); /* the origin never answered */
	assert_true(dataset_size_wait_cancel(&c.w));
	assert_false(dataset_size_wait_cancel(&c.w)); /* taken once */
	datasets_cancel_opens();
	assert_int_equal(atomic_load(&c.calls), 0); /* not on the list any more */
}

/* A cancel that comes before the park (an interrupt at once) makes the start -EINTR. */
static void test_cancel_before_the_park_is_eintr(void **state)
{
	struct counted c;

	(void)state;
	counted_init(&c, 3, KIND_TSV);
	assert_false(dataset_size_wait_cancel(&c.w));
	assert_int_equal(dataset_size_wait_start(&c.w), -EINTR);
	assert_int_equal(atomic_load(&c.calls), 0);
}

/* The unmount answers every parked waiter, of both kinds, with -EIO, exactly once. */
static void test_unmount_answers_parked_waiters_with_eio(void **state)
{
	struct counted gz, tsv, again;
	struct counted *all[] = {&gz, &tsv, &again};

	(void)state;
	counted_init(&gz, 4, KIND_GZ);
	counted_init(&tsv, 4, KIND_TSV);
	counted_init(&again, 5, KIND_TSV);
	assert_int_equal(dataset_size_wait_start(&gz.w), -EINPROGRESS);
	assert_int_equal(dataset_size_wait_start(&tsv.w), -EINPROGRESS);
	assert_int_equal(dataset_size_wait_start(&again.w), -EINPROGRESS);
	datasets_cancel_opens();
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(atomic_load(&all[i]->calls), 1);
		assert_int_equal(atomic_load(&all[i]->rc), -EIO);
		assert_false(dataset_size_wait_cancel(&all[i]->w)); /* already answered */
	}
	datasets_cancel_opens();
	assert_int_equal(atomic_load(&gz.calls), 1);
}

int test_dataset_size_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_size_known_from_an_announcement),
	    cmocka_unit_test(test_cancelled_waiter_is_the_callers_to_answer),
	    cmocka_unit_test(test_cancel_before_the_park_is_eintr),
	    cmocka_unit_test(test_unmount_answers_parked_waiters_with_eio),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
