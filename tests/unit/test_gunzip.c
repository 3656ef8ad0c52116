/*
 * test_gunzip.c - the streaming gzip decoder: any piece size, several
 * members, truncation and corruption refused with -EBADMSG, sink errors
 * passed through, outputs larger than one chunk.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gunzip.h"
#include "unit.h"

/* What the sink has received. */
struct collected {
	unsigned char *data;
	size_t len, cap;
	int calls;
	size_t largest;
	int fail_on_call; /* return fail_rc on this call (1-based); 0 never */
	int fail_rc;
};

static int collect(void *ctx, const void *buf, size_t len)
{
	struct collected *c = ctx;

	c->calls++;
	if (len > c->largest)
		c->largest = len;
	if (c->fail_on_call && c->calls == c->fail_on_call)
		return c->fail_rc;
	if (c->len + len > c->cap) {
		size_t cap = (c->len + len) * 2;
		unsigned char *p = realloc(c->data, cap);

		assert_non_null(p);
		c->data = p;
		c->cap = cap;
	}
	memcpy(c->data + c->len, buf, len);
	c->len += len;
	return 0;
}

/* gzip-compresses in with zlib; the caller frees the result. */
static unsigned char *gz(const void *in, size_t len, size_t *outlen)
{
	z_stream zs;
	unsigned char *out;
	size_t cap;

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	cap = deflateBound(&zs, len) + 64;
	out = malloc(cap);
	assert_non_null(out);
	zs.next_in = (unsigned char *)in;
	zs.avail_in = (unsigned)len;
	zs.next_out = out;
	zs.avail_out = (unsigned)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* Counts bytes and keeps none: for outputs too large to hold. */
static int count_only(void *ctx, const void *buf, size_t len)
{
	(void)buf;
	*(uint64_t *)ctx += len;
	return 0;
}

/* TSV-like text with enough variety that deflate emits real codes. */
static char *payload(size_t len, unsigned seed)
{
	char *p = malloc(len + 64);
	size_t n = 0;

	assert_non_null(p);
	for (unsigned i = 0; n < len; i++) {
		unsigned x = (i * 2654435761u) ^ seed;
		n += (size_t)sprintf(p + n, "tt%07u\tmovie\tTitle %u\t%u\t\\N\n", i, x % 9973,
				     1900 + x % 125);
	}
	return p; /* the first len bytes are the payload */
}

/* Feeds in to a new decoder in pieces of step bytes (0: all at once). */
static int decode(const unsigned char *in, size_t len, size_t step, struct collected *c,
		  uint64_t *total)
{
	struct gunzip *g = gunzip_new(collect, c);
	int rc = 0;

	assert_non_null(g);
	if (step == 0)
		step = len ? len : 1;
	for (size_t off = 0; off < len && rc == 0; off += step)
		rc = gunzip_write(g, in + off, len - off < step ? len - off : step);
	if (rc == 0)
		rc = gunzip_finish(g);
	if (total)
		*total = gunzip_total_out(g);
	gunzip_free(g);
	return rc;
}

static void check_round_trip(size_t plain_len, size_t step)
{
	char *plain = payload(plain_len, 7);
	size_t zlen;
	unsigned char *z = gz(plain, plain_len, &zlen);
	struct collected c = {0};
	uint64_t total = 0;

	assert_int_equal(decode(z, zlen, step, &c, &total), 0);
	assert_int_equal(c.len, plain_len);
	assert_memory_equal(c.data, plain, plain_len);
	assert_int_equal(total, plain_len);
	free(c.data);
	free(z);
	free(plain);
}

static void test_gunzip_one_byte_pieces(void **state)
{
	(void)state;
	check_round_trip(100000, 1);
}

static void test_gunzip_seven_byte_pieces(void **state)
{
	(void)state;
	check_round_trip(100000, 7);
}

static void test_gunzip_all_at_once(void **state)
{
	(void)state;
	check_round_trip(100000, 0);
}

static void test_gunzip_output_larger_than_chunk_arrives_complete(void **state)
{
	const size_t len = 3 * 1024 * 1024;
	char *plain = payload(len, 11);
	size_t zlen;
	unsigned char *z = gz(plain, len, &zlen);
	struct collected c = {0};
	uint64_t total = 0;

	(void)state;
	assert_true(zlen < len / 2); /* compressible: one input piece, many output chunks */
	assert_int_equal(decode(z, zlen, 0, &c, &total), 0);
	assert_int_equal(c.len, len);
	assert_memory_equal(c.data, plain, len);
	assert_int_equal(total, len);
	assert_true(c.calls >= (int)(len / GUNZIP_CHUNK));
	assert_true(c.largest <= GUNZIP_CHUNK);
	free(c.data);
	free(z);
	free(plain);
}

static void test_gunzip_highly_compressible_in_small_pieces(void **state)
{
	const size_t len = 3 * 1024 * 1024;
	char *zeros = calloc(1, len);
	size_t zlen;
	unsigned char *z;
	struct collected c = {0};

	(void)state;
	assert_non_null(zeros);
	z = gz(zeros, len, &zlen);
	assert_int_equal(decode(z, zlen, 3, &c, NULL), 0);
	assert_int_equal(c.len, len);
	assert_memory_equal(c.data, zeros, len);
	assert_true(c.largest <= GUNZIP_CHUNK);
	free(c.data);
	free(z);
	free(zeros);
}

/* Two members concatenated, fed in pieces of step bytes, decode to both payloads. */
static void check_two_members(size_t step)
{
	char *a = payload(50000, 1), *b = payload(70000, 2);
	size_t alen, blen;
	unsigned char *za = gz(a, 50000, &alen), *zb = gz(b, 70000, &blen);
	unsigned char *both = malloc(alen + blen);
	struct collected c = {0};
	uint64_t total = 0;

	assert_non_null(both);
	memcpy(both, za, alen);
	memcpy(both + alen, zb, blen);
	assert_int_equal(decode(both, alen + blen, step, &c, &total), 0);
	assert_int_equal(c.len, 120000);
	assert_memory_equal(c.data, a, 50000);
	assert_memory_equal(c.data + 50000, b, 70000);
	assert_int_equal(total, 120000);
	free(c.data);
	free(both);
	free(za);
	free(zb);
	free(a);
	free(b);
}

/* A member with every optional header field zlib can write, compressed from plain. */
static unsigned char *gz_with_header(const char *plain, size_t len, gz_header *head, size_t *outlen)
{
	unsigned char *out = malloc(len + 1024);
	z_stream zs;

	assert_non_null(out);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	assert_int_equal(deflateSetHeader(&zs, head), Z_OK);
	zs.next_in = (unsigned char *)plain;
	zs.avail_in = (unsigned)len;
	zs.next_out = out;
	zs.avail_out = (unsigned)len + 1024;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

static void test_gunzip_named_member_with_header_fields(void **state)
{
	static char name[] = "title.basics.tsv", comment[] = "imdbfs unit test";
	/* One subfield "XY" of 4 bytes: SI1 SI2 LEN(2, little-endian) DATA. */
	static unsigned char extra[] = {'X', 'Y', 4, 0, 'd', 'a', 't', 'a'};
	char *plain = payload(30000, 12);
	gz_header head;
	struct collected c = {0};
	size_t zlen;
	unsigned char *z;

	(void)state;
	memset(&head, 0, sizeof(head));
	head.name = (Bytef *)name;
	head.comment = (Bytef *)comment;
	head.extra = extra;
	head.extra_len = sizeof(extra);
	head.time = 1761444000;
	head.hcrc = 1;
	z = gz_with_header(plain, 30000, &head, &zlen);
	for (size_t step = 1; step <= zlen; step = step * 3 + 1) {
		c.len = 0;
		assert_int_equal(decode(z, zlen, step, &c, NULL), 0);
		assert_int_equal(c.len, 30000);
		assert_memory_equal(c.data, plain, 30000);
	}
	free(c.data);
	free(z);
	free(plain);
}

/*
 * One member that decompresses to more than 4 GiB: ISIZE holds the size
 * modulo 2^32, and gunzip_total_out() must still give the true count. The
 * member is made of one byte-aligned, self-contained deflate block (from a
 * full flush) repeated, so the test needs little memory.
 */
static void test_gunzip_member_over_4gib_counts_true_size(void **state)
{
	const size_t block = 64 << 20, copies = 65; /* 4160 MiB */
	const uint64_t total = (uint64_t)block * copies;
	static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
	unsigned char *zeros = calloc(1, block), *deflated, *member, *p;
	size_t dlen, cap;
	uLong crc1 = crc32(0, zeros, (uInt)block), crc = crc32(0, Z_NULL, 0);
	uint64_t got = 0;
	z_stream zs;
	struct gunzip *g;

	(void)state;
	assert_non_null(zeros);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	cap = deflateBound(&zs, block);
	deflated = malloc(cap);
	assert_non_null(deflated);
	zs.next_in = zeros;
	zs.avail_in = (uInt)block;
	zs.next_out = deflated;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FULL_FLUSH), Z_OK);
	assert_int_equal(zs.avail_in, 0);
	dlen = zs.total_out;
	deflateEnd(&zs);

	member = malloc(sizeof(head) + dlen * copies + 2 + 8);
	assert_non_null(member);
	p = member;
	memcpy(p, head, sizeof(head));
	p += sizeof(head);
	for (size_t i = 0; i < copies; i++, p += dlen) {
		memcpy(p, deflated, dlen);
		crc = crc32_combine(crc, crc1, (z_off_t)block);
	}
	*p++ = 0x03; /* an empty final fixed-Huffman block */
	*p++ = 0x00;
	for (int i = 0; i < 4; i++)
		*p++ = (unsigned char)(crc >> (8 * i));
	for (int i = 0; i < 4; i++)
		*p++ = (unsigned char)(total >> (8 * i)); /* ISIZE: total mod 2^32 */

	g = gunzip_new(count_only, &got);
	assert_non_null(g);
	assert_int_equal(gunzip_write(g, member, (size_t)(p - member)), 0);
	assert_int_equal(gunzip_finish(g), 0);
	assert_int_equal(gunzip_total_out(g), total);
	assert_int_equal(got, total);
	gunzip_free(g);
	free(member);
	free(deflated);
	free(zeros);
}

static void test_gunzip_two_members_all_at_once(void **state)
{
	(void)state;
	check_two_members(0);
}

static void test_gunzip_two_members_one_byte_pieces(void **state)
{
	(void)state;
	check_two_members(1);
}

static void test_gunzip_member_then_empty_member(void **state)
{
	char *a = payload(1000, 3);
	size_t alen, elen;
	unsigned char *za = gz(a, 1000, &alen), *ze = gz("", 0, &elen);
	unsigned char *both = malloc(alen + elen);
	struct collected c = {0};

	(void)state;
	assert_non_null(both);
	memcpy(both, za, alen);
	memcpy(both + alen, ze, elen);
	assert_int_equal(decode(both, alen + elen, 0, &c, NULL), 0);
	assert_int_equal(c.len, 1000);
	assert_memory_equal(c.data, a, 1000);
	free(c.data);
	free(both);
	free(za);
	free(ze);
	free(a);
}

/* gunzip_write or gunzip_finish refuses z (len bytes) with -EBADMSG. */
static void check_refused(const unsigned char *z, size_t len, size_t step)
{
	struct collected c = {0};

	assert_int_equal(decode(z, len, step, &c, NULL), -EBADMSG);
	free(c.data);
}

static void test_gunzip_truncated_stream_fails_at_finish(void **state)
{
	char *plain = payload(100000, 5);
	size_t zlen;
	unsigned char *z = gz(plain, 100000, &zlen);
	const size_t cuts[] = {1, 4, 8, 9, zlen / 2, zlen - 10};

	(void)state;
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct collected c = {0};
		struct gunzip *g = gunzip_new(collect, &c);

		assert_non_null(g);
		assert_int_equal(gunzip_write(g, z, zlen - cuts[i]), 0);
		assert_int_equal(gunzip_finish(g), -EBADMSG);
		gunzip_free(g);
		free(c.data);
	}
	free(z);
	free(plain);
}

static void test_gunzip_truncated_second_member_fails(void **state)
{
	char *a = payload(5000, 1);
	size_t alen;
	unsigned char *za = gz(a, 5000, &alen);
	unsigned char *twice = malloc(2 * alen);

	(void)state;
	assert_non_null(twice);
	memcpy(twice, za, alen);
	memcpy(twice + alen, za, alen);
	check_refused(twice, alen + 1, 0);     /* one byte of the next header */
	check_refused(twice, alen + 10, 0);    /* header only */
	check_refused(twice, 2 * alen - 4, 0); /* no ISIZE */
	check_refused(twice, 2 * alen - 4, 1);
	free(twice);
	free(za);
	free(a);
}

static void test_gunzip_flipped_deflate_byte_fails(void **state)
{
	char *plain = payload(100000, 9);
	size_t zlen;
	unsigned char *z = gz(plain, 100000, &zlen);

	(void)state;
	/* Header is 10 bytes, trailer 8: flip bytes spread over the deflate data. */
	for (size_t at = 12; at < zlen - 8; at += (zlen - 20) / 7) {
		z[at] ^= 0x5a;
		check_refused(z, zlen, 0);
		check_refused(z, zlen, 7);
		z[at] ^= 0x5a;
	}
	free(z);
	free(plain);
}

static void test_gunzip_flipped_crc_or_isize_fails(void **state)
{
	char *plain = payload(20000, 4);
	size_t zlen;
	unsigned char *z = gz(plain, 20000, &zlen);

	(void)state;
	for (size_t back = 1; back <= 8; back++) { /* CRC-32 is zlen-8..-5, ISIZE -4..-1 */
		z[zlen - back] ^= 0x01;
		check_refused(z, zlen, 0);
		check_refused(z, zlen, 1);
		z[zlen - back] ^= 0x01;
	}
	free(z);
	free(plain);
}

/* The header's own CRC (FHCRC) and its reserved flag bits are checked too. */
static void test_gunzip_bad_header_fails(void **state)
{
	char *plain = payload(5000, 13);
	gz_header head;
	size_t zlen;
	unsigned char *z;

	(void)state;
	memset(&head, 0, sizeof(head));
	head.hcrc = 1;
	z = gz_with_header(plain, 5000, &head, &zlen);
	z[10] ^= 0x01; /* the FHCRC field follows the fixed 10 bytes */
	check_refused(z, zlen, 0);
	check_refused(z, zlen, 1);
	z[10] ^= 0x01;
	z[3] |= 0x80; /* a reserved flag */
	check_refused(z, zlen, 0);
	free(z);
	free(plain);
}

/* Bytes after the last member that are not another member are refused. */
static void test_gunzip_trailing_garbage_fails(void **state)
{
	char *plain = payload(5000, 14);
	size_t zlen;
	unsigned char *z = gz(plain, 5000, &zlen);
	unsigned char *more = malloc(zlen + 16);

	(void)state;
	assert_non_null(more);
	memcpy(more, z, zlen);
	memcpy(more + zlen, "not gzip at all!", 16);
	check_refused(more, zlen + 16, 0);
	check_refused(more, zlen + 16, 1);
	free(more);
	free(z);
	free(plain);
}

static void test_gunzip_not_gzip_fails(void **state)
{
	static const char text[] = "tconst\ttitleType\nplain text, not gzip\n";

	(void)state;
	check_refused((const unsigned char *)text, sizeof(text) - 1, 0);
}

static void test_gunzip_empty_input_fails_at_finish(void **state)
{
	struct collected c = {0};
	struct gunzip *g = gunzip_new(collect, &c);

	(void)state;
	assert_non_null(g);
	assert_int_equal(gunzip_finish(g), -EBADMSG);
	assert_int_equal(gunzip_write(g, "", 0), 0);
	assert_int_equal(gunzip_finish(g), -EBADMSG);
	assert_int_equal(gunzip_total_out(g), 0);
	assert_int_equal(c.calls, 0);
	gunzip_free(g);
}

static void test_gunzip_sink_error_stops_decoding(void **state)
{
	char *plain = payload(100000, 6);
	size_t zlen;
	unsigned char *z = gz(plain, 100000, &zlen);
	struct collected c = {.fail_on_call = 1, .fail_rc = -ENOSPC};
	struct gunzip *g = gunzip_new(collect, &c);

	(void)state;
	assert_non_null(g);
	assert_int_equal(gunzip_write(g, z, zlen), -ENOSPC);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.len, 0);
	gunzip_free(g);
	free(z);
	free(plain);
}

static void test_gunzip_sink_error_mid_stream_is_returned(void **state)
{
	const size_t len = 3 * 1024 * 1024;
	char *plain = payload(len, 8);
	size_t zlen;
	unsigned char *z = gz(plain, len, &zlen);
	struct collected c = {.fail_on_call = 2, .fail_rc = -EIO};
	struct gunzip *g = gunzip_new(collect, &c);

	(void)state;
	assert_non_null(g);
	assert_int_equal(gunzip_write(g, z, zlen), -EIO);
	assert_int_equal(c.calls, 2); /* nothing after the refusal */
	assert_true(c.len > 0 && c.len < len);
	gunzip_free(g);
	free(c.data);
	free(z);
	free(plain);
}

/* A sink that lends the decoder its buffers, in turn, and checks it decodes into them. */
struct lender {
	struct collected c;
	unsigned char *bufs[3];
	unsigned next, lent;
	int fail_on_lend; /* return -ENOSPC on this lend (1-based); 0 never */
};

static int lend(void *ctx, void **buf)
{
	struct lender *l = ctx;

	if (l->fail_on_lend && (int)l->lent + 1 == l->fail_on_lend)
		return -ENOSPC;
	l->lent++;
	*buf = l->bufs[l->next];
	l->next = (l->next + 1) % 3;
	return 0;
}

static int collect_lent(void *ctx, const void *buf, size_t len)
{
	struct lender *l = ctx;
	unsigned last = (l->next + 2) % 3; /* the buffer lent last */

	assert_ptr_equal(buf, l->bufs[last]);
	return collect(&l->c, buf, len);
}

static void test_gunzip_decodes_into_lent_buffers(void **state)
{
	const size_t len = 2 * 1024 * 1024 + 123;
	char *plain = payload(len, 9);
	size_t zlen;
	unsigned char *z = gz(plain, len, &zlen);
	struct lender l = {0};
	struct gunzip *g;

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_non_null(l.bufs[i] = malloc(GUNZIP_CHUNK));
	assert_non_null(g = gunzip_new(collect_lent, &l));
	gunzip_output(g, lend);
	for (size_t off = 0; off < zlen; off += 4096)
		assert_int_equal(gunzip_write(g, z + off, zlen - off < 4096 ? zlen - off : 4096),
				 0);
	assert_int_equal(gunzip_finish(g), 0);
	assert_int_equal(l.c.len, len);
	assert_memory_equal(l.c.data, plain, len);
	assert_true(l.lent >= len / GUNZIP_CHUNK);
	gunzip_free(g);
	g = gunzip_new(collect_lent, &l);
	gunzip_output(g, lend);
	l.fail_on_lend = (int)l.lent + 3;
	assert_int_equal(gunzip_write(g, z, zlen), -ENOSPC); /* a refused loan stops decoding */
	gunzip_free(g);
	for (int i = 0; i < 3; i++)
		free(l.bufs[i]);
	free(l.c.data);
	free(z);
	free(plain);
}

int test_gunzip_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gunzip_one_byte_pieces),
	    cmocka_unit_test(test_gunzip_seven_byte_pieces),
	    cmocka_unit_test(test_gunzip_all_at_once),
	    cmocka_unit_test(test_gunzip_output_larger_than_chunk_arrives_complete),
	    cmocka_unit_test(test_gunzip_highly_compressible_in_small_pieces),
	    cmocka_unit_test(test_gunzip_named_member_with_header_fields),
	    cmocka_unit_test(test_gunzip_member_over_4gib_counts_true_size),
	    cmocka_unit_test(test_gunzip_two_members_all_at_once),
	    cmocka_unit_test(test_gunzip_two_members_one_byte_pieces),
	    cmocka_unit_test(test_gunzip_member_then_empty_member),
	    cmocka_unit_test(test_gunzip_truncated_stream_fails_at_finish),
	    cmocka_unit_test(test_gunzip_truncated_second_member_fails),
	    cmocka_unit_test(test_gunzip_flipped_deflate_byte_fails),
	    cmocka_unit_test(test_gunzip_flipped_crc_or_isize_fails),
	    cmocka_unit_test(test_gunzip_not_gzip_fails),
	    cmocka_unit_test(test_gunzip_empty_input_fails_at_finish),
	    cmocka_unit_test(test_gunzip_sink_error_stops_decoding),
	    cmocka_unit_test(test_gunzip_sink_error_mid_stream_is_returned),
	    cmocka_unit_test(test_gunzip_decodes_into_lent_buffers),
	    cmocka_unit_test(test_gunzip_bad_header_fails),
	    cmocka_unit_test(test_gunzip_trailing_garbage_fails),
	};
	const char *const default_decoder = gunzip_decoder();
	int failed = 0;

	assert_int_equal(gunzip_select("brotli"), -EINVAL);
	/* Every test runs with each decoder this build has. */
	if (gunzip_select("zlib") == 0)
		failed += cmocka_run_group_tests_name("gunzip (zlib)", tests, NULL, NULL);
	if (gunzip_select("isal") == 0)
		failed += cmocka_run_group_tests_name("gunzip (isal)", tests, NULL, NULL);
	else
		fprintf(stderr, "unit tests: gunzip: this build has no ISA-L; zlib only\n");
	gunzip_select(default_decoder);
	return failed;
}
