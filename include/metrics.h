/*
 * metrics.h - counters for .control/metrics, in Prometheus text format.
 * Each counter is a lock-free atomic; any thread may add to any counter.
 */
#ifndef IMDBFS_METRICS_H
#define IMDBFS_METRICS_H

#include <stdint.h>

enum metric {
	M_ORIGIN_BYTES,	       /* body bytes received from the origin */
	M_ORIGIN_REQUESTS,     /* requests sent to the origin */
	M_ORIGIN_NOT_MODIFIED, /* 304 answers */
	M_DOWNLOADS_OK,	       /* verified downloads committed */
	M_DOWNLOADS_FAILED,    /* downloads that ended in failure */
	M_RETRIES,	       /* transient faults retried */
	M_EXTRACTIONS_OK,
	M_EXTRACTIONS_FAILED,
	M_INFLATED_BYTES, /* .tsv bytes produced */
	M_CACHE_HITS,	  /* opens served from a committed copy */
	M_CACHE_MISSES,	  /* opens that had to wait for a transfer */
	M_READS,	  /* read requests on data files */
	M_READ_BYTES,	  /* bytes returned by them */
	M_READ_ERRORS,	  /* reads that failed */
	M_EVICTIONS,
	M_COUNT
};

void metrics_add(enum metric m, uint64_t n);

uint64_t metrics_get(enum metric m);

/* Renders every counter with HELP and TYPE lines; the caller frees. NULL on ENOMEM. */
char *metrics_render(double uptime_s);

#endif
