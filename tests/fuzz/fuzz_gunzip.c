/*
 * fuzz_gunzip.c - the gzip decoders (gunzip.c): zlib's, and ISA-L's with our
 * own member-header parser, fed the same stream.
 *
 * Input: two control bytes, then the gzip stream. Byte 0 seeds the sizes of
 * the pieces the stream is written in, byte 1 bit 0 makes the decoders write
 * into buffers the sink lends (gunzip_output) rather than their own.
 *
 * Properties: each decoder counts exactly the bytes it hands its sink
 * (gunzip_total_out); zlib fed everything at once, zlib fed in pieces and
 * ISA-L fed in pieces agree on whether the stream is valid and on every byte
 * decoded; a failed stream's output is a prefix of the others'.
 */
#include <errno.h>

#include "fuzz.h"
#include "gunzip.h"

#define OUT_CAP (1u << 20) /* a bomb stops here: the sink refuses more */

struct run {
	unsigned char *out;  /* OUT_CAP bytes */
	size_t len;	     /* bytes kept in out */
	uint64_t seen;	     /* bytes the sink was handed, kept or refused */
	bool capped;	     /* the sink refused output past OUT_CAP */
	unsigned char *lent; /* the buffer gunzip_output lends, GUNZIP_CHUNK bytes */
	int rc;		     /* first error of write or finish; 0 valid */
};

static int sink(void *ctx, const void *buf, size_t len)
{
	struct run *r = ctx;

	FUZZ_CHECK(len > 0 && len <= GUNZIP_CHUNK);
	FUZZ_CHECK(!r->lent || buf == r->lent);
	r->seen += len;
	if (r->len + len > OUT_CAP) {
		r->capped = true;
		return -EFBIG;
	}
	memcpy(r->out + r->len, buf, len);
	r->len += len;
	return 0;
}

static int lend(void *ctx, void **buf)
{
	struct run *r = ctx;

	*buf = r->lent;
	return 0;
}

static uint32_t next_size(uint32_t *state, size_t left)
{
	uint32_t x = *state, n;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	n = x % 8 == 0 ? 1 : x % 512 + 1; /* single bytes now and then: headers split anywhere */
	return n < left ? n : (uint32_t)left;
}

/* Decodes data with decoder, in pieces from seed (0: all at once). */
static void decode(const char *decoder, const uint8_t *data, size_t size, uint32_t seed, bool lent,
		   unsigned char *out, struct run *r)
{
	static unsigned char lent_buffer[GUNZIP_CHUNK];
	struct gunzip *g;
	size_t at = 0;

	memset(r, 0, sizeof(*r));
	r->out = out;
	r->lent = lent ? lent_buffer : NULL;
	FUZZ_CHECK(gunzip_select(decoder) == 0);
	g = gunzip_new(sink, r);
	FUZZ_CHECK(g);
	if (lent)
		gunzip_output(g, lend);
	while (at < size && !r->rc) {
		size_t n = seed ? next_size(&seed, size - at) : size - at;

		r->rc = gunzip_write(g, data + at, n);
		at += n;
	}
	if (!r->rc)
		r->rc = gunzip_finish(g);
	FUZZ_CHECK(r->rc == 0 || r->rc == -EBADMSG || (r->rc == -EFBIG && r->capped));
	FUZZ_CHECK(gunzip_total_out(g) == r->seen);
	gunzip_free(g);
}

/* b agrees with the reference a. */
static void agree(const struct run *a, const struct run *b)
{
	size_t common = a->len < b->len ? a->len : b->len;

	FUZZ_CHECK(memcmp(a->out, b->out, common) == 0);
	if (a->capped || b->capped)
		return; /* one stopped early: only the bytes both have can be compared */
	FUZZ_CHECK(a->rc == b->rc);
	if (a->rc == 0)
		FUZZ_CHECK(a->len == b->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char out[3][OUT_CAP];
	struct run whole, zlib, isal;
	uint32_t seed;
	bool lent;

	if (size < 2)
		return 0;
	seed = 0x9e3779b9u ^ data[0];
	lent = data[1] & 1;
	data += 2, size -= 2;
	decode("zlib", data, size, 0, false, out[0], &whole);
	decode("zlib", data, size, seed, lent, out[1], &zlib);
	agree(&whole, &zlib);
	if (gunzip_has("isal")) {
		decode("isal", data, size, seed, lent, out[2], &isal);
		agree(&whole, &isal);
	}
	return 0;
}
