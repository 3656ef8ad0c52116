/*
 * test_feed.c - a file filled by one writer while readers wait on ranges:
 * counts, partial reads, clean and failed ends, interrupts, wake-ups from
 * another thread, and reference counting.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "feed.h"
#include "unit.h"

/* A feed over an unlinked temporary file: the feed owns the descriptor. */
static struct feed *temp_feed(int64_t size)
{
	char path[] = "/tmp/imdbfs-unit-feed-XXXXXX";
	int fd = mkstemp(path);
	struct feed *f;

	assert_true(fd >= 0);
	assert_int_equal(unlink(path), 0);
	f = feed_new(fd, size);
	assert_non_null(f);
	assert_int_equal(feed_fd(f), fd);
	return f;
}

/* The writer's side: pwrite n bytes of c at off, then publish [0, off+n). */
static void fill(struct feed *f, uint64_t off, size_t n, char c)
{
	char buf[4096];

	assert_true(n <= sizeof(buf));
	memset(buf, c, n);
	assert_int_equal(pwrite(feed_fd(f), buf, n, (off_t)off), (ssize_t)n);
	feed_grow(f, off + n);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int always_interrupted(void *ctx)
{
	int *calls = ctx;

	(*calls)++;
	return 1;
}

/* Ends a wait that would otherwise hang the suite; ctx is a clock_mono() deadline. */
static int past_deadline(void *ctx)
{
	return clock_mono() > *(const double *)ctx;
}

static int flag_interrupted(void *ctx)
{
	return atomic_load((atomic_int *)ctx);
}

/* A reader blocked in feed_wait() on its own thread, so that a test can rescue it. */
struct waiter {
	struct feed *f;
	uint64_t off;
	size_t len;
	int partial_ok;
	int (*interrupted)(void *);
	void *ctx;
	atomic_int started, done;
	int64_t rc;
	double woke; /* clock_mono() when feed_wait returned */
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->started, 1);
	w->rc = feed_wait(w->f, w->off, w->len, w->partial_ok, w->interrupted, w->ctx);
	w->woke = clock_mono();
	atomic_store(&w->done, 1);
	return NULL;
}

/*
 * Gives w up to secs to return by itself; if it does not, ends the feed to
 * free it, so that a broken feed fails the test instead of hanging the
 * suite. Joins the thread; true when w returned by itself.
 */
static bool join_waiter(pthread_t t, struct waiter *w, double secs)
{
	double until = clock_mono() + secs;
	bool returned;

	while (!atomic_load(&w->done) && clock_mono() < until)
		sleep_ms(1);
	returned = atomic_load(&w->done);
	if (!returned)
		feed_finish(w->f, -ECANCELED);
	assert_int_equal(pthread_join(t, NULL), 0);
	return returned;
}

/* feed_wait() guarded: a wait still blocked after 2 s fails the test instead of hanging. */
static int64_t wait_guarded(struct feed *f, uint64_t off, size_t len, int partial_ok,
			    int (*interrupted)(void *), void *ctx)
{
	struct waiter w = {.f = f,
			   .off = off,
			   .len = len,
			   .partial_ok = partial_ok,
			   .interrupted = interrupted,
			   .ctx = ctx};
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	if (!join_waiter(t, &w, 2.0))
		fail_msg("feed_wait(off %llu, len %zu) still blocked after 2 s",
			 (unsigned long long)off, len);
	return w.rc;
}

static void test_feed_wait_returns_available_count(void **state)
{
	struct feed *f = temp_feed(-1);

	(void)state;
	fill(f, 0, 100, 'a');
	assert_int_equal(feed_wait(f, 0, 50, 0, NULL, NULL), 50);
	assert_int_equal(feed_wait(f, 0, 100, 0, NULL, NULL), 100);
	assert_int_equal(feed_wait(f, 90, 10, 0, NULL, NULL), 10);
	assert_int_equal(feed_wait(f, 40, 4096, 1, NULL, NULL), 60);
	feed_unref(f);
}

static void test_feed_partial_ok_returns_what_is_there(void **state)
{
	struct feed *f = temp_feed(1000);

	(void)state;
	fill(f, 0, 10, 'a');
	assert_int_equal(feed_wait(f, 5, 100, 1, NULL, NULL), 5);
	assert_int_equal(feed_wait(f, 0, 100, 1, NULL, NULL), 10);
	feed_unref(f);
}

static void test_feed_without_partial_ok_blocks_for_whole_range(void **state)
{
	struct feed *f = temp_feed(1000);
	int calls = 0;

	(void)state;
	fill(f, 0, 10, 'a');
	/* The range is not all there: it must block, so the interrupt check runs. */
	assert_int_equal(wait_guarded(f, 5, 100, 0, always_interrupted, &calls), -EINTR);
	assert_true(calls >= 1);
	/* partial_ok with nothing at off blocks as well. */
	calls = 0;
	assert_int_equal(wait_guarded(f, 10, 100, 1, always_interrupted, &calls), -EINTR);
	assert_true(calls >= 1);
	/* A satisfiable wait never consults the interrupt check. */
	calls = 0;
	assert_int_equal(feed_wait(f, 0, 10, 0, always_interrupted, &calls), 10);
	assert_int_equal(calls, 0);
	feed_unref(f);
}

static void test_feed_complete_end_gives_eof_and_tail(void **state)
{
	struct feed *f = temp_feed(-1);
	uint64_t filled;
	int64_t size;
	int ended, err;

	(void)state;
	fill(f, 0, 10, 'a');
	feed_finish(f, 0);
	assert_int_equal(feed_wait(f, 10, 5, 0, NULL, NULL), 0);
	assert_int_equal(feed_wait(f, 20, 1, 0, NULL, NULL), 0);
	assert_int_equal(feed_wait(f, 8, 5, 0, NULL, NULL), 2); /* the tail, short */
	feed_progress(f, &filled, &size, &ended, &err);
	assert_int_equal(filled, 10);
	assert_int_equal(size, 10); /* a complete feed's size is what was filled */
	assert_int_equal(ended, 1);
	assert_int_equal(err, 0);
	feed_unref(f);
}

static void test_feed_failed_end_serves_filled_then_error(void **state)
{
	struct feed *f = temp_feed(1000);
	uint64_t filled;
	int64_t size;
	int ended, err;

	(void)state;
	fill(f, 0, 10, 'a');
	feed_finish(f, -EIO);
	assert_int_equal(feed_wait(f, 0, 5, 0, NULL, NULL), 5);
	assert_int_equal(feed_wait(f, 5, 10, 0, NULL, NULL), 5); /* inside, then short */
	assert_int_equal(feed_wait(f, 10, 1, 0, NULL, NULL), -EIO);
	assert_int_equal(feed_wait(f, 500, 1, 1, NULL, NULL), -EIO);
	feed_progress(f, &filled, &size, &ended, &err);
	assert_int_equal(filled, 10);
	assert_int_equal(ended, 1);
	assert_int_equal(err, -EIO);
	feed_unref(f);
}

static void test_feed_progress_tracks_grow_and_set_size(void **state)
{
	struct feed *f = temp_feed(-1);
	uint64_t filled;
	int64_t size;
	int ended, err;

	(void)state;
	feed_progress(f, &filled, &size, &ended, &err);
	assert_int_equal(filled, 0);
	assert_int_equal(size, -1);
	assert_int_equal(ended, 0);
	feed_set_size(f, 4700000000);
	fill(f, 0, 100, 'b');
	feed_grow(f, 50); /* never shrinks */
	feed_progress(f, &filled, &size, &ended, &err);
	assert_int_equal(filled, 100);
	assert_int_equal(size, 4700000000);
	assert_int_equal(ended, 0);
	feed_unref(f);
}

static void test_feed_interrupt_returns_eintr_at_once(void **state)
{
	struct feed *f = temp_feed(-1);
	int calls = 0;
	double start;

	(void)state;
	fill(f, 0, 10, 'a');
	start = clock_mono();
	assert_int_equal(wait_guarded(f, 10, 1, 0, always_interrupted, &calls), -EINTR);
	assert_true(clock_mono() - start < 0.5);
	assert_int_equal(calls, 1);
	feed_unref(f);
}

static void test_feed_interrupt_ends_blocked_wait(void **state)
{
	struct feed *f = temp_feed(-1);
	atomic_int flag = 0;
	struct waiter w = {.f = f, .len = 1, .interrupted = flag_interrupted, .ctx = &flag};
	pthread_t t;
	double set_at;
	bool blocked, returned;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	sleep_ms(150);
	blocked = !atomic_load(&w.done); /* nothing to read: it must still wait */
	set_at = clock_mono();
	atomic_store(&flag, 1);
	returned = join_waiter(t, &w, 2.0);
	feed_unref(f);
	assert_true(blocked);
	assert_true(returned);
	assert_int_equal(w.rc, -EINTR);
	assert_true(w.woke - set_at < 0.5); /* noticed within a few poll periods */
}

static void test_feed_grow_wakes_blocked_reader_at_once(void **state)
{
	double best = 1e9;

	(void)state;
	for (int i = 0; i < 5; i++) {
		struct feed *f = temp_feed(-1);
		double deadline = clock_mono() + 5;
		struct waiter w = {
		    .f = f, .len = 1, .interrupted = past_deadline, .ctx = &deadline};
		pthread_t t;
		double grown_at;
		bool returned;

		assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
		while (!atomic_load(&w.started))
			sleep_ms(1);
		sleep_ms(10); /* now inside its timed wait */
		grown_at = clock_mono();
		fill(f, 0, 1, 'x');
		returned = join_waiter(t, &w, 2.0);
		feed_unref(f);
		assert_true(returned);
		assert_int_equal(w.rc, 1);
		if (w.woke - grown_at < best)
			best = w.woke - grown_at;
	}
	/* Polling alone would take some 40 ms every time; a wake-up takes far less. */
	assert_true(best < 0.02);
}

struct reader {
	struct feed *f;
	double deadline;
	uint64_t off;
	size_t len;
	int64_t rc;
	char data[4096];
};

static void *read_range(void *arg)
{
	struct reader *r = arg;

	r->rc = feed_wait(r->f, r->off, r->len, 0, past_deadline, &r->deadline);
	if (r->rc > 0 && pread(feed_fd(r->f), r->data, (size_t)r->rc, (off_t)r->off) != r->rc)
		r->rc = -EIO;
	return NULL;
}

static void test_feed_writer_wakes_blocked_reader(void **state)
{
	struct feed *f = temp_feed(4096);
	struct reader r = {.f = f, .deadline = clock_mono() + 10, .off = 1024, .len = 2048};
	pthread_t t;
	uint64_t filled;
	int64_t size;
	int ended, err;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, read_range, &r), 0);
	sleep_ms(30);
	for (int i = 0; i < 4; i++) { /* four 1 KiB pieces, one letter each */
		fill(f, (uint64_t)i * 1024, 1024, (char)('a' + i));
		sleep_ms(10);
	}
	feed_finish(f, 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.rc, 2048);
	for (int i = 0; i < 2048; i++)
		assert_int_equal(r.data[i], i < 1024 ? 'b' : 'c');
	feed_progress(f, &filled, &size, &ended, &err);
	assert_int_equal(filled, 4096);
	feed_unref(f);
}

struct writer {
	struct feed *f;
	int pieces;
};

static void *write_pieces(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < w->pieces; i++) {
		fill(w->f, (uint64_t)i * 100, 100, (char)('A' + i % 26));
		sleep_ms(2);
	}
	feed_finish(w->f, 0);
	return NULL;
}

static void test_feed_reader_follows_growing_writer_to_eof(void **state)
{
	struct feed *f = temp_feed(-1);
	struct writer w = {f, 40};
	pthread_t t;
	uint64_t off = 0;
	int64_t n;
	char buf[4096];
	double deadline = clock_mono() + 10;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, write_pieces, &w), 0);
	while ((n = feed_wait(f, off, 150, 1, past_deadline, &deadline)) > 0) {
		assert_true(n <= 150);
		assert_int_equal(pread(feed_fd(f), buf, (size_t)n, (off_t)off), n);
		for (int64_t i = 0; i < n; i++)
			assert_int_equal(buf[i], 'A' + (int)((off + (uint64_t)i) / 100) % 26);
		off += (uint64_t)n;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(n, 0);
	assert_int_equal(off, 4000);
	feed_unref(f);
}

static void test_feed_last_unref_closes_descriptor(void **state)
{
	struct feed *f = temp_feed(-1);
	int fd = feed_fd(f);

	(void)state;
	feed_ref(f);
	feed_unref(f);
	assert_true(fcntl(fd, F_GETFD) >= 0); /* one reference left: still open */
	fill(f, 0, 1, 'x');
	assert_int_equal(feed_wait(f, 0, 1, 0, NULL, NULL), 1);
	feed_unref(f);
	errno = 0;
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	feed_unref(NULL); /* harmless */
}

/* A parked waiter that records the answers it got. */
struct probe {
	struct feed_waiter w;
	int calls;
	int64_t n;
};

static void probe_ready(struct feed_waiter *w, int64_t n)
{
	struct probe *p = (struct probe *)w;

	p->calls++;
	p->n = n;
}

static void test_feed_park_answers_at_once_when_readable(void **state)
{
	struct feed *f = temp_feed(-1);
	struct probe p = {0};

	(void)state;
	fill(f, 0, 100, 'a');
	feed_waiter_init(&p.w, 40, 200, probe_ready);
	assert_int_equal(feed_park(f, &p.w), 60); /* partial: what is there at 40 */
	assert_int_equal(p.calls, 0);
	feed_unref(f);
}

static void test_feed_parked_waiter_is_answered_once_by_grow(void **state)
{
	struct feed *f = temp_feed(-1);
	struct probe p = {0}, q = {0};

	(void)state;
	feed_waiter_init(&p.w, 100, 50, probe_ready);
	feed_waiter_init(&q.w, 300, 50, probe_ready);
	assert_int_equal(feed_park(f, &p.w), -EINPROGRESS);
	assert_int_equal(feed_park(f, &q.w), -EINPROGRESS);
	fill(f, 0, 100, 'a'); /* not yet a byte at 100 */
	assert_int_equal(p.calls, 0);
	fill(f, 100, 20, 'b');
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.n, 20);
	assert_int_equal(q.calls, 0);
	assert_false(feed_unpark(f, &p.w)); /* the writer took it: the caller must not answer */
	fill(f, 120, 10, 'c');
	assert_int_equal(p.calls, 1);	   /* never twice */
	assert_true(feed_unpark(f, &q.w)); /* still parked: the caller answers it */
	feed_finish(f, 0);
	assert_int_equal(q.calls, 0);
	feed_unref(f);
}

static void test_feed_finish_answers_parked_with_eof_or_error(void **state)
{
	struct feed *f = temp_feed(-1), *g = temp_feed(-1);
	struct probe p = {0}, q = {0};

	(void)state;
	fill(f, 0, 10, 'a');
	fill(g, 0, 10, 'a');
	feed_waiter_init(&p.w, 10, 50, probe_ready);
	feed_waiter_init(&q.w, 10, 50, probe_ready);
	assert_int_equal(feed_park(f, &p.w), -EINPROGRESS);
	assert_int_equal(feed_park(g, &q.w), -EINPROGRESS);
	feed_finish(f, 0);
	feed_finish(g, -EIO);
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.n, 0);
	assert_int_equal(q.calls, 1);
	assert_int_equal(q.n, -EIO);
	feed_unref(f);
	feed_unref(g);
}

static void test_feed_unpark_before_park_cancels_it(void **state)
{
	struct feed *f = temp_feed(-1);
	struct probe p = {0};

	(void)state;
	feed_waiter_init(&p.w, 0, 10, probe_ready);
	assert_false(feed_unpark(f, &p.w)); /* an interrupt before the park */
	assert_int_equal(feed_park(f, &p.w), -EINTR);
	fill(f, 0, 10, 'a');
	assert_int_equal(p.calls, 0);
	feed_unref(f);
}

static void test_feed_unpark_all_answers_every_waiter(void **state)
{
	struct feed *f = temp_feed(-1);
	struct probe p[3];

	(void)state;
	memset(p, 0, sizeof(p));
	for (int i = 0; i < 3; i++) {
		feed_waiter_init(&p[i].w, (uint64_t)i * 10, 10, probe_ready);
		assert_int_equal(feed_park(f, &p[i].w), -EINPROGRESS);
	}
	assert_true(feed_unpark(f, &p[1].w)); /* from the middle of the list */
	feed_unpark_all(f, -EIO);
	assert_int_equal(p[0].calls, 1);
	assert_int_equal(p[0].n, -EIO);
	assert_int_equal(p[1].calls, 0);
	assert_int_equal(p[2].calls, 1);
	feed_unpark_all(f, -EIO); /* nothing left */
	assert_int_equal(p[2].calls, 1);
	feed_unref(f);
}

int test_feed_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_feed_wait_returns_available_count),
	    cmocka_unit_test(test_feed_partial_ok_returns_what_is_there),
	    cmocka_unit_test(test_feed_without_partial_ok_blocks_for_whole_range),
	    cmocka_unit_test(test_feed_complete_end_gives_eof_and_tail),
	    cmocka_unit_test(test_feed_failed_end_serves_filled_then_error),
	    cmocka_unit_test(test_feed_progress_tracks_grow_and_set_size),
	    cmocka_unit_test(test_feed_interrupt_returns_eintr_at_once),
	    cmocka_unit_test(test_feed_interrupt_ends_blocked_wait),
	    cmocka_unit_test(test_feed_grow_wakes_blocked_reader_at_once),
	    cmocka_unit_test(test_feed_writer_wakes_blocked_reader),
	    cmocka_unit_test(test_feed_reader_follows_growing_writer_to_eof),
	    cmocka_unit_test(test_feed_last_unref_closes_descriptor),
	    cmocka_unit_test(test_feed_park_answers_at_once_when_readable),
	    cmocka_unit_test(test_feed_parked_waiter_is_answered_once_by_grow),
	    cmocka_unit_test(test_feed_finish_answers_parked_with_eof_or_error),
	    cmocka_unit_test(test_feed_unpark_before_park_cancels_it),
	    cmocka_unit_test(test_feed_unpark_all_answers_every_waiter),
	};

	return cmocka_run_group_tests_name("feed", tests, NULL, NULL);
}
