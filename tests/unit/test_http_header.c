/*
 * test_http_header.c - http_parse_header(), the parser of the origin's
 * response header lines, which curl hands over without a terminating NUL;
 * the inputs the fuzzer (tests/fuzz/fuzz_http_header.c) found.
 */
#include <string.h>

#include "http.h"
#include "unit.h"

/* Parses the first n bytes of text, as curl would hand them over. */
static void parse(struct http_response *rs, const char *text, size_t n)
{
	http_parse_header(rs, text, n);
}

/*
 * A status line is read within its n bytes: curl's buffer is not
 * NUL-terminated, and the bytes after it (here "04") are not the line's.
 * Found by fuzz_http_header ("HTTP/ ", a heap-buffer-overflow in strtol).
 */
static void test_status_line_read_within_its_length(void **state)
{
	struct http_response rs;

	(void)state;
	parse(&rs, "HTTP/1.1 20004 OK", 12);
	assert_int_equal(rs.status, 200);
	parse(&rs, "HTTP/1.1 404", 9);
	assert_int_equal(rs.status, 0);
}

static void test_content_range_sets_start_and_total(void **state)
{
	static const char line[] = "Content-Range: bytes 1048576-2097151/8234567\r\n";
	struct http_response rs;

	(void)state;
	parse(&rs, "HTTP/1.1 206 Partial Content\r\n", 30);
	parse(&rs, line, strlen(line));
	assert_int_equal(rs.status, 206);
	assert_int_equal(rs.range_start, 1048576);
	assert_int_equal(rs.total, 8234567);
}

int test_http_header_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_line_read_within_its_length),
	    cmocka_unit_test(test_content_range_sets_start_and_total),
	};

	return cmocka_run_group_tests_name("http_header", tests, NULL, NULL);
}
