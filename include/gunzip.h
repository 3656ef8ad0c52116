/*
 * gunzip.h - streaming gzip decoder, the only module that sees a z_stream
 * or an ISA-L inflate_state.
 *
 * Two decoders do the same job: zlib, the reference, and Intel's ISA-L
 * (several times faster) when imdbfs is built with it. gunzip_select()
 * picks one for the whole process before any thread starts.
 *
 * Input arrives in pieces of any size; output is handed to a sink in pieces
 * of at most GUNZIP_CHUNK bytes, decoded into the decoder's buffer or into
 * one the sink provides (gunzip_output), which saves the sink a copy. Several concatenated gzip
 * members decode as one stream, as gzip -dc does. Each member's CRC-32 and ISIZE are checked;
 * gunzip_finish() then tells a stream that ended cleanly from a truncated
 * one. Memory is bounded: one output buffer and the decoder's window.
 */
#ifndef IMDBFS_GUNZIP_H
#define IMDBFS_GUNZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUNZIP_CHUNK (256 * 1024)

struct gunzip;

/* Receives decoded bytes; returns 0 or -errno to stop decoding. */
typedef int (*gunzip_sink)(void *ctx, const void *buf, size_t len);

/*
 * Where the next output goes, GUNZIP_CHUNK bytes, for a sink that would
 * otherwise copy it: 0 with *buf, or -errno to stop decoding.
 */
typedef int (*gunzip_buffer)(void *ctx, void **buf);

/* Whether this build has the decoder: "zlib" always, "isal" when built with ISA-L. */
bool gunzip_has(const char *name);

/* Selects a decoder gunzip_has(); -EINVAL for another name. Call before threads start. */
int gunzip_select(const char *name);

/* The decoder gunzip_new() uses: "isal" when built with ISA-L, else "zlib", unless selected. */
const char *gunzip_decoder(void);

/* Allocates a decoder; the caller frees it with gunzip_free(). NULL on ENOMEM. */
struct gunzip *gunzip_new(gunzip_sink sink, void *ctx);

void gunzip_free(struct gunzip *g);

/* Decodes into next_buffer's buffers from now on, instead of the decoder's own. */
void gunzip_output(struct gunzip *g, gunzip_buffer next_buffer);

/* Decodes all of in. 0, -EBADMSG for corrupt data, or the sink's error. */
int gunzip_write(struct gunzip *g, const void *in, size_t len);

/* 0 when the input ended exactly at the end of a member, else -EBADMSG. */
int gunzip_finish(struct gunzip *g);

/* Bytes decoded so far: the true size, not ISIZE modulo 2^32. */
uint64_t gunzip_total_out(const struct gunzip *g);

#endif
