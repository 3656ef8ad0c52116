/*
 * config.h - the effective configuration: command-line options, then their
 * environment variables, then defaults (command line beats environment beats
 * default). Validated once at start-up, read-only afterwards, so any thread
 * may read it without a lock.
 */
#ifndef IMDBFS_CONFIG_H
#define IMDBFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct fuse_args;

enum storage_kind { STORAGE_LOCAL, STORAGE_AZURE };

struct config {
	char *origin;	    /* base URL, always ends in '/'; may hold a password */
	char *origin_shown; /* origin with its credentials as "***" (http_url_redact()): the
			       only form that logs, .control/ and cache metadata see */
	char *cache_dir;    /* local cache directory */
	enum storage_kind storage;
	char *container; /* Azure container name */
	unsigned concurrency;
	long max_age;	    /* seconds before a cached copy is revalidated */
	unsigned retries;   /* retries of a transient fault after the first attempt */
	double retry_delay; /* seconds: base of the exponential backoff */
	long timeout;	    /* seconds under 1 KiB/s before a transfer counts as stalled */
	char *cafile;	    /* NULL: the system's CAs */
	enum log_level log_level;
	const char *decoder; /* "isal" or "zlib" (static strings) */
	int refresh_at;	     /* minutes past midnight UTC of a daily refresh; -1 when off */
	long refresh_every;  /* seconds between refreshes; 0 when off */
	unsigned segments;   /* connections per origin download, 1..16; 0: by size */
	uint64_t max_size;   /* bytes: the longest body downloaded, the largest .tsv written */
	bool fast_stat;	     /* -o fast_stat: a .tsv of unknown size stats as 0, never waits */
	bool foreground;     /* -f or -d given */
	unsigned max_read;   /* FUSE's -o max_read, 0 when not given */
};

#define CONFIG_DEFAULT_ORIGIN "https://datasets.imdbws.com/"
#define CONFIG_SEGMENTS_MAX   16
/* segments=0 (the default): one more segment per this many bytes, at most ..._AUTO_MAX. */
#define CONFIG_SEGMENT_AUTO_BYTES (64ull << 20)
#define CONFIG_SEGMENTS_AUTO_MAX  4u
/* Four times the largest real file (title.principals.tsv, ~4 GB); more is refused as hostile. */
#define CONFIG_DEFAULT_MAX_SIZE (16ull << 30)
#define CONFIG_MAX_SIZE_LIMIT	(1ull << 60)

/* Looks up an environment variable; getenv() in the daemon, a table in tests. */
typedef const char *(*config_env_fn)(const char *name);

/*
 * Takes imdbfs's own options out of args (FUSE's stay), resolves each
 * against env and the defaults, and validates. On error returns -EINVAL with
 * a one-line reason in err. The strings in cfg are owned by cfg; free them
 * with config_free().
 */
int config_load(struct config *cfg, struct fuse_args *args, config_env_fn env, char *err,
		size_t errlen);

void config_free(struct config *cfg);

/*
 * Overwrites with '*' the password (or a lone user name) of every URL in
 * argv[1..argc), so that /proc/PID/cmdline and ps no longer show one given
 * with -o origin=...; call once config_load() has taken its copies.
 */
void config_hide_argv(int argc, char *argv[]);

/*
 * How many segments (parallel ranged connections) a download of size bytes
 * uses: the segments option, or by default 1 below 64 MiB, then one more per
 * 64 MiB, at most 4. The caller may use fewer (very small segments).
 */
unsigned config_segments_for(const struct config *cfg, uint64_t size);

const char *config_storage_name(enum storage_kind kind);

/*
 * A size in bytes: digits, optionally followed by K, M, G, T or P (powers of
 * 1024, either case). 0 with *out in [1, CONFIG_MAX_SIZE_LIMIT], else -EINVAL.
 */
int config_parse_size(const char *s, uint64_t *out);

/* Writes refresh_at's minutes past midnight as "HH:MM"; returns buf. */
const char *config_hhmm(int minute, char buf[16]);

#endif
