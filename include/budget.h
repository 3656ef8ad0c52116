/*
 * budget.h - how much a transfer may write into the cache: the disk budget.
 *
 * Nothing from the network decides alone how many bytes land on the cache's
 * filesystem. Two bounds apply to every file a download or a decompression
 * writes there:
 *
 *   max_size   (-o max_size) no file is longer, whatever the origin says or
 *              a gzip stream inflates to: a response announcing more is
 *              refused before its first byte, a body or an output of
 *              unknown length is stopped when it passes it (-EFBIG);
 *   free space the filesystem keeps a margin free (BUDGET_MARGIN): a size
 *              known in advance must fit in what is free beyond it, and a
 *              file growing is checked against it every BUDGET_CHECK_BYTES
 *              as it goes (-ENOSPC, before the disk is full: a gzip bomb's
 *              size is only known once inflated).
 *
 * Concurrent transfers are each checked against the same free space; the
 * checks as they grow are what keeps the margin when together they would
 * not fit. A failure is one line for status and the job result; the caller
 * drops its temporary, so the copy cached before stays served.
 *
 * A budget is one transfer's own (no locking); budget_* only reads
 * statvfs(3) of the cache directory.
 */
#ifndef IMDBFS_BUDGET_H
#define IMDBFS_BUDGET_H

#include <stddef.h>
#include <stdint.h>

/* Free space kept: a sixteenth of the filesystem, at most this. */
#define BUDGET_MARGIN_MAX (256ull << 20)
/* A growing file is checked against the free space this often. */
#define BUDGET_CHECK_BYTES (1u << 20)

struct budget {
	const char *dir;     /* on the filesystem of the cache; not owned, outlives the budget */
	const char *what;    /* "download" or "decompression", for messages; static */
	uint64_t max_size;   /* the longest file */
	uint64_t next_check; /* written bytes at which the free space is checked again */
};

void budget_init(struct budget *b, const char *dir, const char *what, uint64_t max_size);

/*
 * A file of size bytes (-1: unknown, nothing to check) is about to be
 * written from byte `from` on: 0 when it is within max_size and the rest
 * fits in the free space beyond the margin; -EFBIG or -ENOSPC with the
 * reason in err; -errno of statvfs.
 */
int budget_expect(struct budget *b, int64_t size, uint64_t from, char *err, size_t errlen);

/*
 * The file has grown to `written` bytes: -EFBIG past max_size, -ENOSPC when
 * the free space fell under the margin (checked every BUDGET_CHECK_BYTES),
 * with the reason in err; else 0.
 */
int budget_grow(struct budget *b, uint64_t written, char *err, size_t errlen);

/* The margin kept free on a filesystem of fs_bytes. */
uint64_t budget_margin(uint64_t fs_bytes);

#endif
