/*
 * probe.h - what the origin and the container say of each .tsv.gz at
 * mount, before a byte of it is read, so that the first stat gives its
 * exact size and Last-Modified (issue 13).
 *
 * For each .tsv.gz that has no committed copy, one thread asks, all at
 * once: with storage=azure the container first (the blob's properties and
 * metadata, which carry the .tsv size its verifier counted), else or then
 * the origin, with a HEAD through http.c's engine. Each request is bounded
 * by PROBE_TOTAL_S, so that all of them end within that many seconds of the
 * mount whatever the network does; the mount does not wait for them (a stat
 * before they return shows what is known: dataset_size_known()). What they
 * learn goes to the datasets (dataset_announce()), which keep it only while
 * nothing better (a copy, a download's own response) is known. A failure is
 * no error: the file's size stays unknown until it is fetched, and health
 * says why (probe_snapshot()).
 *
 * Threads: probe_start() starts them (joinable) once the daemon runs;
 * probe_stop() cancels and joins them, before the container's client and
 * libcurl go. The results are guarded by a leaf lock of their own.
 */
#ifndef IMDBFS_PROBE_H
#define IMDBFS_PROBE_H

#include <stddef.h>

#include "catalog.h"

struct config;

#define PROBE_TOTAL_S 5 /* seconds any one request of the probe may take, all included */

enum probe_outcome {
	PROBE_NONE,    /* not probed: a copy was cached, or no probe ran */
	PROBE_RUNNING, /* a request is under way */
	PROBE_KNOWN,   /* the size came back */
	PROBE_FAILED,  /* no size: error says why */
};

struct probe_file {
	enum probe_outcome outcome;
	const char *source; /* "origin" or "container" once known; else NULL (static) */
	char error[200];    /* with PROBE_FAILED: why, "" otherwise */
};

/* Starts the requests for the files not cached; cfg must outlive probe_stop(). */
void probe_start(const struct config *cfg);

/* Cancels the requests under way and joins their threads. Idempotent. */
void probe_stop(void);

/* What the probe came to, per dataset (the .tsv.gz's), for health. Any thread. */
void probe_snapshot(struct probe_file out[CATALOG_COUNT]);

#endif
