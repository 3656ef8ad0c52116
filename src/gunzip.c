/* gunzip.c - see gunzip.h */
#include "gunzip.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

enum decoder { DEC_ZLIB, DEC_ISAL };

#ifdef HAVE_ISAL
static enum decoder decoder = DEC_ISAL; /* set before threads start; read-only after */
#else
static enum decoder decoder = DEC_ZLIB;
#endif

/* Where the reading of a member's header stands (ISA-L only). */
enum hdr_step { HDR_FIXED, HDR_XLEN, HDR_EXTRA, HDR_NAME, HDR_COMMENT, HDR_HCRC, HDR_DONE };

struct header {
	enum hdr_step step;
	uint8_t flags;
	uint32_t pos;	/* header bytes read */
	uint32_t left;	/* FEXTRA bytes to skip, or FHCRC bytes read */
	uint32_t check; /* the FHCRC field */
	uint32_t crc;	/* CRC-32 of the header so far */
};

struct gunzip {
	enum decoder kind;
	gunzip_sink sink;
	gunzip_buffer next_buffer; /* NULL: decode into out */
	void *ctx;
	unsigned char *cur; /* where the current round decodes into: out or the sink's buffer */
	bool member_done;   /* the last member ended; more input starts a new one */
	bool started;	    /* any input seen */
	uint64_t total_out;
	z_stream zs;
#ifdef HAVE_ISAL
	struct inflate_state *is;
	struct header head;
#endif
	unsigned char out[GUNZIP_CHUNK];
};

bool gunzip_has(const char *name)
{
#ifdef HAVE_ISAL
	if (strcmp(name, "isal") == 0)
		return true;
#endif
	return strcmp(name, "zlib") == 0;
}

int gunzip_select(const char *name)
{
	if (!gunzip_has(name))
		return -EINVAL;
	decoder = strcmp(name, "isal") == 0 ? DEC_ISAL : DEC_ZLIB;
	return 0;
}

const char *gunzip_decoder(void)
{
	return decoder == DEC_ISAL ? "isal" : "zlib";
}

static int start_isal(struct gunzip *g)
{
#ifdef HAVE_ISAL
	g->is = malloc(sizeof(*g->is));
	if (!g->is)
		return -ENOMEM;
	isal_inflate_init(g->is);
	return 0;
#else
	(void)g;
	return -ENOTSUP;
#endif
}

struct gunzip *gunzip_new(gunzip_sink sink, void *ctx)
{
	struct gunzip *g = calloc(1, sizeof(*g));
	int rc;

	if (!g)
		return NULL;
	g->kind = decoder;
	g->sink = sink;
	g->ctx = ctx;
	if (g->kind == DEC_ISAL)
		rc = start_isal(g);
	else /* 16 + MAX_WBITS: gzip framing only, with its CRC-32 and ISIZE checked. */
		rc = inflateInit2(&g->zs, 16 + MAX_WBITS) == Z_OK ? 0 : -ENOMEM;
	if (rc) {
		free(g);
		return NULL;
	}
	return g;
}

void gunzip_free(struct gunzip *g)
{
	if (!g)
		return;
#ifdef HAVE_ISAL
	free(g->is);
#endif
	if (g->kind == DEC_ZLIB)
		inflateEnd(&g->zs);
	free(g);
}

void gunzip_output(struct gunzip *g, gunzip_buffer next_buffer)
{
	g->next_buffer = next_buffer;
}

static int take_buffer(struct gunzip *g)
{
	void *buf;
	int rc;

	if (!g->next_buffer) {
		g->cur = g->out;
		return 0;
	}
	if ((rc = g->next_buffer(g->ctx, &buf)))
		return rc;
	g->cur = buf;
	return 0;
}

static int emit(struct gunzip *g, size_t n)
{
	g->total_out += n;
	return n && g->sink ? g->sink(g->ctx, g->cur, n) : 0;
}

static int zlib_write(struct gunzip *g, const unsigned char *in, size_t len)
{
	bool pending = false; /* zlib filled the buffer and may hold more output */
	int zrc, rc;

	g->zs.next_in = (unsigned char *)in;
	g->zs.avail_in = 0;
	for (;;) {
		if (g->zs.avail_in == 0 && len > 0) {
			g->zs.avail_in = len > UINT_MAX ? UINT_MAX : (unsigned)len;
			len -= g->zs.avail_in;
			g->started = true;
		}
		if (g->zs.avail_in == 0 && !pending)
			return 0;
		if (g->member_done) {
			if (inflateReset(&g->zs) != Z_OK)
				return -EBADMSG;
			g->member_done = false;
		}
		if ((rc = take_buffer(g)))
			return rc;
		g->zs.next_out = g->cur;
		g->zs.avail_out = GUNZIP_CHUNK;
		zrc = inflate(&g->zs, Z_NO_FLUSH);
		if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
			return -EBADMSG;
		pending = g->zs.avail_out == 0 && zrc != Z_STREAM_END;
		if ((rc = emit(g, GUNZIP_CHUNK - g->zs.avail_out)))
			return rc;
		if (zrc == Z_STREAM_END)
			g->member_done = true;
		else if (zrc == Z_BUF_ERROR && g->zs.avail_in == 0)
			pending = false;
	}
}

#ifdef HAVE_ISAL
/*
 * A member's header, read here from pieces of any size as RFC 1952 lays it
 * out: ISA-L 2.30 parses headers too, but refuses a valid FHCRC header that
 * arrives in pieces. Its deflate decoding and trailer checks are used alone.
 */
enum { FHCRC = 2, FEXTRA = 4, FNAME = 8, FCOMMENT = 16, FRESERVED = 0xe0 };

static void next_header_step(struct header *h)
{
	static const uint8_t needs[] = {[HDR_XLEN] = FEXTRA,
					[HDR_EXTRA] = FEXTRA,
					[HDR_NAME] = FNAME,
					[HDR_COMMENT] = FCOMMENT,
					[HDR_HCRC] = FHCRC};

	do
		h->step++;
	while (h->step < HDR_DONE &&
	       (!(h->flags & needs[h->step]) || (h->step == HDR_EXTRA && h->left == 0)));
	if (h->step == HDR_HCRC)
		h->left = 0;
}

static bool header_byte(struct header *h, uint8_t c)
{
	if (h->step != HDR_HCRC)
		h->crc = (uint32_t)crc32(h->crc, &c, 1);
	h->pos++;
	switch (h->step) {
	case HDR_FIXED:
		if ((h->pos == 1 && c != 0x1f) || (h->pos == 2 && c != 0x8b) ||
		    (h->pos == 3 && c != Z_DEFLATED) || (h->pos == 4 && (c & FRESERVED)))
			return false;
		if (h->pos == 4)
			h->flags = c;
		if (h->pos == 10)
			next_header_step(h);
		break;
	case HDR_XLEN:
		h->left |= (uint32_t)c << (8 * (h->pos - 11));
		if (h->pos == 12)
			next_header_step(h);
		break;
	case HDR_EXTRA:
		if (--h->left == 0)
			next_header_step(h);
		break;
	case HDR_HCRC:
		h->check |= (uint32_t)c << (8 * h->left++);
		if (h->left == 2) {
			if (h->check != (h->crc & 0xffff))
				return false;
			next_header_step(h);
		}
		break;
	default: /* the NUL-terminated name and comment */
		if (c == 0)
			next_header_step(h);
		break;
	}
	return true;
}

/* Consumes header bytes; 1 once the header is complete, 0 for more input, -EBADMSG. */
static int read_header(struct gunzip *g)
{
	struct inflate_state *s = g->is;

	while (s->avail_in && g->head.step != HDR_DONE) {
		if (!header_byte(&g->head, *s->next_in))
			return -EBADMSG;
		s->next_in++;
		s->avail_in--;
	}
	if (g->head.step != HDR_DONE)
		return 0;
	isal_inflate_reset(s);
	s->crc_flag = ISAL_GZIP_NO_HDR_VER; /* the trailer's CRC-32 and ISIZE checked */
	return 1;
}

/* As zlib_write(); at a member's end ISA-L hands back the input it did not use. */
static int isal_write(struct gunzip *g, const unsigned char *in, size_t len)
{
	struct inflate_state *s = g->is;
	bool pending = false; /* the buffer filled and ISA-L may hold more output */
	size_t n;
	int rc;

	s->next_in = (uint8_t *)in;
	s->avail_in = 0;
	for (;;) {
		if (s->avail_in == 0 && len > 0) {
			s->avail_in = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
			len -= s->avail_in;
			g->started = true;
		}
		if (s->avail_in == 0 && !pending)
			return 0;
		if (g->member_done) {
			memset(&g->head, 0, sizeof(g->head));
			g->member_done = false;
		}
		if (g->head.step != HDR_DONE) {
			if ((rc = read_header(g)) <= 0) {
				if (rc < 0)
					return rc;
				continue;
			}
		}
		if ((rc = take_buffer(g)))
			return rc;
		s->next_out = g->cur;
		s->avail_out = GUNZIP_CHUNK;
		if (isal_inflate(s) != ISAL_DECOMP_OK)
			return -EBADMSG;
		n = GUNZIP_CHUNK - s->avail_out;
		pending = s->avail_out == 0 && s->block_state != ISAL_BLOCK_FINISH;
		if ((rc = emit(g, n)))
			return rc;
		if (s->block_state == ISAL_BLOCK_FINISH)
			g->member_done = true;
		else if (n == 0 && s->avail_in == 0)
			pending = false;
	}
}
#endif

int gunzip_write(struct gunzip *g, const void *in, size_t len)
{
#ifdef HAVE_ISAL
	if (g->kind == DEC_ISAL)
		return isal_write(g, in, len);
#endif
	return zlib_write(g, in, len);
}

int gunzip_finish(struct gunzip *g)
{
	return g->started && g->member_done ? 0 : -EBADMSG;
}

uint64_t gunzip_total_out(const struct gunzip *g)
{
	return g->total_out;
}
