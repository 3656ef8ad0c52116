/* metrics.c - see metrics.h */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static _Atomic uint64_t counters[M_COUNT];

static const struct {
	const char *name;
	const char *help;
} info[M_COUNT] = {
    [M_ORIGIN_BYTES] = {"imdbfs_origin_bytes_total", "Body bytes received from the origin."},
    [M_ORIGIN_REQUESTS] = {"imdbfs_origin_requests_total", "HTTP requests sent to the origin."},
    [M_ORIGIN_NOT_MODIFIED] = {"imdbfs_origin_not_modified_total",
			       "Conditional requests answered 304 Not Modified."},
    [M_DOWNLOADS_OK] = {"imdbfs_downloads_total", "Verified downloads committed to the cache."},
    [M_DOWNLOADS_FAILED] = {"imdbfs_download_failures_total", "Downloads that failed."},
    [M_RETRIES] = {"imdbfs_retries_total", "Transient faults retried."},
    [M_EXTRACTIONS_OK] = {"imdbfs_extractions_total", "Decompressions committed to the cache."},
    [M_EXTRACTIONS_FAILED] = {"imdbfs_extraction_failures_total", "Decompressions that failed."},
    [M_INFLATED_BYTES] = {"imdbfs_inflated_bytes_total", "Decompressed bytes produced."},
    [M_CACHE_HITS] = {"imdbfs_cache_hits_total", "Data file opens served from the cache."},
    [M_CACHE_MISSES] = {"imdbfs_cache_misses_total", "Data file opens that waited for a transfer."},
    [M_READS] = {"imdbfs_reads_total", "Read requests on data files."},
    [M_READ_BYTES] = {"imdbfs_read_bytes_total", "Bytes returned by reads of data files."},
    [M_READ_ERRORS] = {"imdbfs_read_errors_total", "Reads of data files that failed."},
    [M_EVICTIONS] = {"imdbfs_evictions_total", "Files evicted from the cache."},
};

void metrics_add(enum metric m, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

uint64_t metrics_get(enum metric m)
{
	return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

char *metrics_render(double uptime_s)
{
	size_t cap = 256 * (M_COUNT + 1), len = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	for (int i = 0; i < M_COUNT; i++)
		len += (size_t)snprintf(out + len, cap - len,
					"# HELP %s %s\n# TYPE %s counter\n%s %llu\n", info[i].name,
					info[i].help, info[i].name, info[i].name,
					(unsigned long long)metrics_get((enum metric)i));
	snprintf(out + len, cap - len,
		 "# HELP imdbfs_uptime_seconds Seconds since the mount.\n"
		 "# TYPE imdbfs_uptime_seconds gauge\nimdbfs_uptime_seconds %.3f\n",
		 uptime_s);
	return out;
}
