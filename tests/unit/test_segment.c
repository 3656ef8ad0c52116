/*
 * test_segment.c - the table of pieces of a segmented download has a bound
 * that no announced length can move: a file of 2^50 bytes gets at most
 * SEGMENT_PIECES_MAX pieces (larger ones), a small one keeps the usual
 * sizes. The workers ask a closed port and give up at once.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "segment.h"
#include "unit.h"

static int never(void *ctx)
{
	(void)ctx;
	return 0;
}

static struct segments *start(uint64_t total, unsigned count)
{
	static struct config cfg = {.retries = 0, .retry_delay = 0, .timeout = 1};
	struct segments_spec sp = {
	    .file = "test",
	    .url = "http://127.0.0.1:1/test.tsv.gz",
	    .etag = "\"e\"",
	    .last_modified = "",
	    .fd = -1,
	    .from = 0,
	    .total = total,
	    .count = count,
	    .cfg = &cfg,
	    .cancelled = never,
	};
	struct segments *s = NULL;

	assert_int_equal(segments_start(&sp, &s), 0);
	return s;
}

static void test_segment_pieces_bounded_whatever_the_length(void **state)
{
	const uint64_t huge = 1ull << 50;
	struct segments *s = start(huge, 4);
	uint64_t piece = segments_piece_bytes(s);

	(void)state;
	assert_true(piece > SEGMENT_MAX_PIECE);
	assert_true((huge + piece - 1) / piece <= SEGMENT_PIECES_MAX);
	assert_true(piece % (64 * 1024) == 0);
	assert_true(segments_first_end(s) == piece);
	segments_stop(s);
}

static void test_segment_usual_sizes_unchanged(void **state)
{
	struct segments *s;

	(void)state;
	s = start(10u << 20, 4); /* an eighth of a share is under the smallest piece */
	assert_true(segments_piece_bytes(s) == SEGMENT_MIN_BYTES);
	segments_stop(s);
	s = start(4ull << 30, 4); /* an eighth of a share is over the largest */
	assert_true(segments_piece_bytes(s) == SEGMENT_MAX_PIECE);
	segments_stop(s);
}

int test_segment_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_segment_pieces_bounded_whatever_the_length),
	    cmocka_unit_test(test_segment_usual_sizes_unchanged),
	};

	return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
