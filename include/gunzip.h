/*
 * gunzip.h - streaming gzip decoder over zlib, the only module that sees a
 * z_stream.
 *
 * Input arrives in pieces of any size; output is handed to a sink in pieces
 * of at most GUNZIP_CHUNK bytes. Several concatenated gzip members decode as
 * one stream, as gzip -dc does. zlib checks each member's CRC-32 and ISIZE;
 * gunzip_finish() then tells a stream that ended cleanly from a truncated one.
 * Memory is bounded: one output buffer and zlib's window, whatever the size.
 */
#ifndef IMDBFS_GUNZIP_H
#define IMDBFS_GUNZIP_H

#include <stddef.h>
#include <stdint.h>

#define GUNZIP_CHUNK (256 * 1024)

struct gunzip;

/* Receives decoded bytes; returns 0 or -errno to stop decoding. */
typedef int (*gunzip_sink)(void *ctx, const void *buf, size_t len);

/* Allocates a decoder; the caller frees it with gunzip_free(). NULL on ENOMEM. */
struct gunzip *gunzip_new(gunzip_sink sink, void *ctx);

void gunzip_free(struct gunzip *g);

/* Decodes all of in. 0, -EBADMSG for corrupt data, or the sink's error. */
int gunzip_write(struct gunzip *g, const void *in, size_t len);

/* 0 when the input ended exactly at the end of a member, else -EBADMSG. */
int gunzip_finish(struct gunzip *g);

/* Bytes decoded so far: the true size, not ISIZE modulo 2^32. */
uint64_t gunzip_total_out(const struct gunzip *g);

#endif
