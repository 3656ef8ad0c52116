/*
 * store.h - where verified copies live: one small interface, one
 * implementation per backend.
 *
 * A store holds, per file name, at most one committed copy with its
 * metadata, and at most one temporary being written. A temporary becomes the
 * committed copy only through commit(), which is atomic: after a crash at any
 * point, lookup() finds either the old copy or the new one, each with its own
 * metadata, never a half-written file (a copy whose metadata does not match
 * it is dropped, not served).
 *
 * Stores are safe to call from any thread; callers serialise work on one file
 * name (the dataset layer does).
 */
#ifndef IMDBFS_STORE_H
#define IMDBFS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"

struct store;

struct store_ops {
	/* Metadata of the committed copy; -ENOENT when none (or it was inconsistent). */
	int (*lookup)(struct store *st, const char *file, struct meta *m);
	/* A read-only descriptor on the committed copy; -ENOENT when none. */
	int (*open)(struct store *st, const char *file, int *fd);
	/* A new, empty temporary for file (replacing any earlier one), O_RDWR. */
	int (*create_temp)(struct store *st, const char *file, int *fd);
	/* Makes p->durable bytes of the temporary survive a crash, with p as its saved state. */
	int (*checkpoint)(struct store *st, const char *file, int fd, const struct meta_partial *p);
	/*
	 * Reopens a checkpointed temporary; *present is its length, which may
	 * exceed p->durable (bytes written after the last checkpoint, intact
	 * unless the machine crashed). -ENOENT when there is none.
	 */
	int (*resume)(struct store *st, const char *file, int *fd, struct meta_partial *p,
		      uint64_t *present);
	/* Durably replaces the committed copy by the temporary written through fd. */
	int (*commit)(struct store *st, const char *file, int fd, const struct meta *m);
	/* Drops the temporary and its saved state, if any. */
	void (*discard_temp)(struct store *st, const char *file);
	/* Drops the committed copy and its metadata; -ENOENT when there was none. */
	int (*evict)(struct store *st, const char *file);
	/* Where the copies are, for people: a directory or a container. */
	const char *(*location)(const struct store *st);
	void (*destroy)(struct store *st);
};

struct store {
	const struct store_ops *ops;
};

/*
 * Opens (creating if needed) a cache directory: checks it and its .partial
 * are the daemon's own (cachedir.h), takes its lock for the store's life
 * (-EBUSY when another daemon holds it), finishes or undoes commits that a
 * crash interrupted, keeps the temporaries of an earlier run that have a
 * valid saved state (they can resume) and removes the others. The store is
 * owned by the caller; free with ops->destroy. On error, -errno and one line
 * in err.
 */
int store_local_open(const char *dir, struct store **out, char *err, size_t errlen);

#endif
