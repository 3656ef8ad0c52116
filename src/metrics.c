/* metrics.c - see metrics.h */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t counters[M_COUNT];

/* Counters sharing a family stand next to each other, told apart by their labels. */
static const struct {
	const char *family;
	const char *labels;
	const char *help;
} info[M_COUNT] = {
    [M_ORIGIN_BYTES] = {"imdbfs_fetched_bytes_total", "source=\"origin\"",
			"Body bytes fetched, by source (the origin or the Azure container)."},
    [M_CONTAINER_BYTES] = {"imdbfs_fetched_bytes_total", "source=\"container\"", NULL},
    [M_UPLOADED_BYTES] = {"imdbfs_uploaded_bytes_total", "",
			  "Bytes uploaded to the Azure container."},
    [M_ORIGIN_REQUESTS] = {"imdbfs_origin_requests_total", "", "HTTP requests sent to the origin."},
    [M_ORIGIN_NOT_MODIFIED] = {"imdbfs_origin_not_modified_total", "",
			       "Conditional requests answered 304 Not Modified."},
    [M_DOWNLOADS_OK] = {"imdbfs_downloads_total", "outcome=\"ok\"",
			"Downloads that ended, by outcome (verified and committed, or failed)."},
    [M_DOWNLOADS_FAILED] = {"imdbfs_downloads_total", "outcome=\"failed\"", NULL},
    [M_RETRIES] = {"imdbfs_retries_total", "", "Transient faults retried."},
    [M_EXTRACTIONS_OK] = {"imdbfs_extractions_total", "outcome=\"ok\"",
			  "Decompressions to .tsv that ended, by outcome."},
    [M_EXTRACTIONS_FAILED] = {"imdbfs_extractions_total", "outcome=\"failed\"", NULL},
    [M_INFLATED_BYTES] = {"imdbfs_inflated_bytes_total", "", "Decompressed bytes produced."},
    [M_CACHE_HITS] = {"imdbfs_cache_hits_total", "", "Data file opens served from the cache."},
    [M_CACHE_MISSES] = {"imdbfs_cache_misses_total", "",
			"Data file opens that waited for a transfer."},
    [M_READS] = {"imdbfs_reads_total", "", "Read requests on data files."},
    [M_READ_BYTES] = {"imdbfs_read_bytes_total", "", "Bytes returned by reads of data files."},
    [M_READ_ERRORS] = {"imdbfs_read_errors_total", "", "Reads of data files that failed."},
    [M_EVICTIONS] = {"imdbfs_evictions_total", "", "Files evicted from the cache."},
    [M_UPLOADS_OK] =
	{"imdbfs_uploads_total", "outcome=\"ok\"",
	 "Uploads to the container that ended, by outcome (committed, failed, cancelled "
	 "by a newer copy or the unmount, or dropped before they started)."},
    [M_UPLOADS_FAILED] = {"imdbfs_uploads_total", "outcome=\"failed\"", NULL},
    [M_UPLOADS_CANCELLED] = {"imdbfs_uploads_total", "outcome=\"cancelled\"", NULL},
    [M_UPLOADS_DROPPED] = {"imdbfs_uploads_total", "outcome=\"dropped\"", NULL},
};

void metrics_add(enum metric m, uint64_t n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

uint64_t metrics_get(enum metric m)
{
	return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

static void append(struct metrics_page *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void append(struct metrics_page *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (p->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(p->text ? p->text + p->len : NULL, p->cap - p->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < p->cap - p->len) {
			p->len += (size_t)n;
			return;
		}
		size_t cap = p->cap ? p->cap * 2 : 4096;
		char *text = n < 0 ? NULL : realloc(p->text, cap);
		if (!text) {
			p->failed = true;
			return;
		}
		p->text = text;
		p->cap = cap;
	}
}

void metrics_family(struct metrics_page *p, const char *name, const char *type, const char *help)
{
	append(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(struct metrics_page *p, const char *name, const char *labels, double value)
{
	const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";

	/* Counters and sizes print as integers; only rates and times need a fraction. */
	if (fabs(value) < 9e15 && value == (double)(long long)value)
		append(p, "%s%s%s%s %lld\n", name, open, labels, close, (long long)value);
	else
		append(p, "%s%s%s%s %.15g\n", name, open, labels, close, value);
}

void metrics_counters(struct metrics_page *p)
{
	for (int i = 0; i < M_COUNT; i++) {
		if (info[i].help)
			metrics_family(p, info[i].family, "counter", info[i].help);
		metrics_sample(p, info[i].family, info[i].labels,
			       (double)metrics_get((enum metric)i));
	}
}

char *metrics_finish(struct metrics_page *p)
{
	if (p->failed || !p->text) {
		free(p->text);
		return NULL;
	}
	return p->text;
}
