/*
 * metrics.h - the counters behind .control/metrics, and the writer of the
 * Prometheus text format (version 0.0.4) that renders them and the gauges
 * control.c adds: every family once, HELP and TYPE before its samples.
 *
 * Each counter is a lock-free atomic; any thread may add to any counter. A
 * metrics_page belongs to the one thread that renders it.
 */
#ifndef IMDBFS_METRICS_H
#define IMDBFS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metric {
	M_ORIGIN_BYTES,	   /* body bytes received from the origin */
	M_CONTAINER_BYTES, /* body bytes read from the Azure container */
	M_UPLOADED_BYTES,  /* bytes uploaded to the Azure container */
	M_ORIGIN_REQUESTS, /* requests sent to the origin */
	M_ORIGIN_NOT_MODIFIED,
	M_DOWNLOADS_OK, /* verified downloads committed */
	M_DOWNLOADS_FAILED,
	M_RETRIES, /* transient faults retried */
	M_EXTRACTIONS_OK,
	M_EXTRACTIONS_FAILED,
	M_INFLATED_BYTES, /* .tsv bytes produced */
	M_CACHE_HITS,	  /* opens served from a committed copy */
	M_CACHE_MISSES,	  /* opens that had to wait for a transfer */
	M_READS,	  /* read requests on data files */
	M_READ_BYTES,
	M_READ_ERRORS,
	M_EVICTIONS,
	M_UPLOADS_OK, /* uploads to the container committed (replicate.h) */
	M_UPLOADS_FAILED,
	M_UPLOADS_CANCELLED, /* a newer copy was queued, or shutting down */
	M_UPLOADS_DROPPED,   /* replaced in the queue, copy gone, or another host uploading */
	M_COUNT
};

void metrics_add(enum metric m, uint64_t n);

uint64_t metrics_get(enum metric m);

/* A page of text under construction; zero-initialise it. */
struct metrics_page {
	char *text;
	size_t len, cap;
	bool failed; /* out of memory: the page is dropped */
};

/* Starts a family: its HELP and TYPE ("counter" or "gauge") lines. */
void metrics_family(struct metrics_page *p, const char *name, const char *type, const char *help);

/* One sample of the current family; labels is "" or `k="v",...` with values needing no escape. */
void metrics_sample(struct metrics_page *p, const char *name, const char *labels, double value);

/* Writes every counter as its family. */
void metrics_counters(struct metrics_page *p);

/* The finished text (the caller frees), or NULL on ENOMEM. */
char *metrics_finish(struct metrics_page *p);

#endif
