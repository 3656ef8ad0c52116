/* gunzip.c - see gunzip.h */
#include "gunzip.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <zlib.h>

struct gunzip {
	z_stream zs;
	gunzip_sink sink;
	void *ctx;
	bool member_done; /* the last member ended; more input starts a new one */
	bool started;	  /* any input seen */
	uint64_t total_out;
	unsigned char out[GUNZIP_CHUNK];
};

struct gunzip *gunzip_new(gunzip_sink sink, void *ctx)
{
	struct gunzip *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	/* 16 + MAX_WBITS: gzip framing only, with its CRC-32 and ISIZE checked. */
	if (inflateInit2(&g->zs, 16 + MAX_WBITS) != Z_OK) {
		free(g);
		return NULL;
	}
	g->sink = sink;
	g->ctx = ctx;
	return g;
}

void gunzip_free(struct gunzip *g)
{
	if (!g)
		return;
	inflateEnd(&g->zs);
	free(g);
}

static int flush_out(struct gunzip *g)
{
	size_t n = sizeof(g->out) - g->zs.avail_out;
	int rc = 0;

	if (n && g->sink)
		rc = g->sink(g->ctx, g->out, n);
	g->total_out += n;
	g->zs.next_out = g->out;
	g->zs.avail_out = sizeof(g->out);
	return rc;
}

int gunzip_write(struct gunzip *g, const void *in, size_t len)
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
		g->zs.next_out = g->out;
		g->zs.avail_out = sizeof(g->out);
		zrc = inflate(&g->zs, Z_NO_FLUSH);
		if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
			return -EBADMSG;
		pending = g->zs.avail_out == 0 && zrc != Z_STREAM_END;
		if ((rc = flush_out(g)))
			return rc;
		if (zrc == Z_STREAM_END)
			g->member_done = true;
		else if (zrc == Z_BUF_ERROR && g->zs.avail_in == 0)
			pending = false;
	}
}

int gunzip_finish(struct gunzip *g)
{
	return g->started && g->member_done ? 0 : -EBADMSG;
}

uint64_t gunzip_total_out(const struct gunzip *g)
{
	return g->total_out;
}
