/* config.c - see config.h */
#define FUSE_USE_VERSION 312
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fuse_opt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "gunzip.h"
#include "http.h"

enum opt_key {
	KEY_ORIGIN,
	KEY_CACHE_DIR,
	KEY_STORAGE,
	KEY_CONTAINER,
	KEY_CONCURRENCY,
	KEY_MAX_AGE,
	KEY_CAFILE,
	KEY_LOG_LEVEL,
	KEY_RETRIES,
	KEY_RETRY_DELAY,
	KEY_TIMEOUT,
	KEY_REFRESH_AT,
	KEY_REFRESH_EVERY,
	KEY_DECODER,
	KEY_SEGMENTS,
	KEY_MAX_SIZE,
	KEY_FAST_STAT,
	KEY_COUNT,
	KEY_FOREGROUND = KEY_COUNT,
	KEY_MAX_READ,
};

/* Option name, then the environment variables that stand in for it, in order. */
static const struct {
	const char *name;
	const char *env[3];
} options[KEY_COUNT] = {
    [KEY_ORIGIN] = {"origin", {"IMDBFS_ORIGIN"}},
    [KEY_CACHE_DIR] = {"cache_dir", {"IMDBFS_CACHE_DIR", "DOWNLOAD_DIR"}},
    [KEY_STORAGE] = {"storage", {"IMDBFS_STORAGE"}},
    [KEY_CONTAINER] = {"container", {"AZURE_CONTAINER_NAME"}},
    [KEY_CONCURRENCY] = {"concurrency", {"IMDBFS_CONCURRENCY"}},
    [KEY_MAX_AGE] = {"max_age", {"IMDBFS_MAX_AGE"}},
    [KEY_CAFILE] = {"cafile", {"IMDBFS_CAFILE"}},
    [KEY_LOG_LEVEL] = {"log_level", {"LOG_LEVEL"}},
    [KEY_RETRIES] = {"retries", {"IMDBFS_RETRIES"}},
    [KEY_RETRY_DELAY] = {"retry_delay", {"IMDBFS_RETRY_DELAY"}},
    [KEY_TIMEOUT] = {"timeout", {"IMDBFS_TIMEOUT"}},
    [KEY_REFRESH_AT] = {"refresh_at", {"IMDBFS_REFRESH_AT"}},
    [KEY_REFRESH_EVERY] = {"refresh_every", {"IMDBFS_REFRESH_EVERY"}},
    [KEY_DECODER] = {"decoder", {"IMDBFS_DECODER"}},
    [KEY_SEGMENTS] = {"segments", {"IMDBFS_SEGMENTS"}},
    [KEY_MAX_SIZE] = {"max_size", {"IMDBFS_MAX_SIZE"}},
    [KEY_FAST_STAT] = {"fast_stat", {"IMDBFS_FAST_STAT"}},
};

struct raw_opts {
	char *value[KEY_COUNT]; /* from the command line; owned */
	bool foreground;
	unsigned max_read; /* FUSE's -o max_read, which it keeps too */
	int positionals;   /* non-option arguments seen */
	char *first;	   /* the first of them, held back until we know it is no SOURCE */
};

static const struct fuse_opt opt_spec[] = {
    FUSE_OPT_KEY("origin=", KEY_ORIGIN),
    FUSE_OPT_KEY("cache_dir=", KEY_CACHE_DIR),
    FUSE_OPT_KEY("storage=", KEY_STORAGE),
    FUSE_OPT_KEY("container=", KEY_CONTAINER),
    FUSE_OPT_KEY("concurrency=", KEY_CONCURRENCY),
    FUSE_OPT_KEY("max_age=", KEY_MAX_AGE),
    FUSE_OPT_KEY("cafile=", KEY_CAFILE),
    FUSE_OPT_KEY("log_level=", KEY_LOG_LEVEL),
    FUSE_OPT_KEY("retries=", KEY_RETRIES),
    FUSE_OPT_KEY("retry_delay=", KEY_RETRY_DELAY),
    FUSE_OPT_KEY("timeout=", KEY_TIMEOUT),
    FUSE_OPT_KEY("refresh_at=", KEY_REFRESH_AT),
    FUSE_OPT_KEY("refresh_every=", KEY_REFRESH_EVERY),
    FUSE_OPT_KEY("decoder=", KEY_DECODER),
    FUSE_OPT_KEY("segments=", KEY_SEGMENTS),
    FUSE_OPT_KEY("max_size=", KEY_MAX_SIZE),
    FUSE_OPT_KEY("fast_stat", KEY_FAST_STAT),
    FUSE_OPT_KEY("fast_stat=", KEY_FAST_STAT),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_FOREGROUND),
    FUSE_OPT_KEY("debug", KEY_FOREGROUND),
    FUSE_OPT_KEY("max_read=", KEY_MAX_READ),
    FUSE_OPT_END,
};

/*
 * mount(8) and mount.fuse3 run "imdbfs SOURCE MOUNTPOINT -o ...": with two
 * positional arguments the first is the source, which names nothing here.
 */
static int hold_positional(struct raw_opts *raw, const char *arg)
{
	if (++raw->positionals == 1) {
		raw->first = strdup(arg);
		return raw->first ? 0 : -1;
	}
	return raw->positionals == 2 ? 1 : -1;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct raw_opts *raw = data;
	const char *eq;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT)
		return hold_positional(raw, arg);
	if (key == KEY_MAX_READ) {
		/* libfuse 3.14 wants init() to repeat it, or it drops the session. */
		raw->max_read = (unsigned)strtoul(strchr(arg, '=') + 1, NULL, 10);
		return 1;
	}
	if (key == KEY_FOREGROUND) {
		raw->foreground = true;
		return 1; /* FUSE needs to see it too */
	}
	if (key < 0 || key >= KEY_COUNT)
		return 1;
	eq = strchr(arg, '=');
	free(raw->value[key]);
	raw->value[key] = strdup(eq ? eq + 1 : "1"); /* a flag given alone (fast_stat) is on */
	return raw->value[key] ? 0 : -1;
}

/* Command line, then each environment variable, then NULL. */
static const char *pick(const struct raw_opts *raw, int key, config_env_fn env)
{
	if (raw->value[key])
		return raw->value[key];
	for (int i = 0; i < 3 && options[key].env[i]; i++) {
		const char *v = env(options[key].env[i]);
		if (v && *v)
			return v;
	}
	return NULL;
}

/* The value is quoted as given, but the reason stays one line: control characters show as '?'. */
static int fail(char *err, size_t errlen, const char *fmt, const char *name, const char *value)
{
	snprintf(err, errlen, fmt, name, value);
	for (char *p = err; errlen && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return -EINVAL;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int resolve_origin(struct config *cfg, const char *v, char *err, size_t errlen)
{
	/* An error line must not show a password either. */
	const char *shown = v && strchr(v, '@') ? "(with credentials, not shown)" : v;
	size_t n;
	const char *host;
	int rc;

	if (!v)
		v = shown = CONFIG_DEFAULT_ORIGIN;
	if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else
		return fail(err, errlen, "invalid %s '%s': must be an http:// or https:// URL",
			    "origin", shown);
	if (*host == '\0' || *host == '/' || strpbrk(v, " \t\r\n?#"))
		return fail(err, errlen, "invalid %s '%s': must be an http:// or https:// URL",
			    "origin", shown);
	n = strlen(v);
	cfg->origin = malloc(n + 2);
	if (!cfg->origin)
		return -ENOMEM;
	memcpy(cfg->origin, v, n + 1);
	if (v[n - 1] != '/')
		strcpy(cfg->origin + n, "/");
	rc = http_url_redact(cfg->origin, &cfg->origin_shown);
	if (rc == -EINVAL)
		return fail(err, errlen, "invalid %s '%s': not a valid URL", "origin", shown);
	return rc;
}

static int resolve_cache_dir(struct config *cfg, const char *v, config_env_fn env, char *err,
			     size_t errlen)
{
	char buf[PATH_MAX];
	const char *base;

	if (v && !*v)
		return fail(err, errlen, "invalid %s '%s': must be a directory", "cache_dir", v);
	if (v) {
		cfg->cache_dir = strdup(v);
		return cfg->cache_dir ? 0 : -ENOMEM;
	}
	if ((base = env("XDG_CACHE_HOME")) && *base)
		snprintf(buf, sizeof(buf), "%s/imdbfs", base);
	else if ((base = env("HOME")) && *base)
		snprintf(buf, sizeof(buf), "%s/.cache/imdbfs", base);
	else
		return fail(err, errlen, "no %s given and %s unset: pass -o cache_dir=DIR",
			    "cache_dir", "HOME");
	cfg->cache_dir = strdup(buf);
	return cfg->cache_dir ? 0 : -ENOMEM;
}

static int resolve_storage(struct config *cfg, const char *v, config_env_fn env, char *err,
			   size_t errlen)
{
	const char *azure = env("USE_AZURE_BLOB");

	if (!v)
		v = azure && strcasecmp(azure, "true") == 0 ? "azure" : "local";
	if (strcmp(v, "local") == 0)
		cfg->storage = STORAGE_LOCAL;
	else if (strcmp(v, "azure") == 0)
		cfg->storage = STORAGE_AZURE;
	else
		return fail(err, errlen, "invalid %s '%s': must be local or azure", "storage", v);
	return 0;
}

static int resolve_container(struct config *cfg, const char *v, char *err, size_t errlen)
{
	size_t n;

	if (!v)
		v = "imdb-datasets";
	n = strlen(v);
	if (n < 3 || n > 63 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != n ||
	    v[0] == '-' || strstr(v, "--"))
		return fail(err, errlen,
			    "invalid %s '%s': 3-63 lower-case letters, digits and single hyphens",
			    "container", v);
	cfg->container = strdup(v);
	return cfg->container ? 0 : -ENOMEM;
}

static int resolve_retry_numbers(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
				 char *err, size_t errlen)
{
	const char *v;
	char *end;
	long n;

	v = pick(raw, KEY_RETRIES, env);
	cfg->retries = 4;
	if (v) {
		if (parse_long(v, 0, 100, &n))
			return fail(err, errlen,
				    "invalid %s '%s': must be an integer from 0 to 100", "retries",
				    v);
		cfg->retries = (unsigned)n;
	}
	v = pick(raw, KEY_RETRY_DELAY, env);
	cfg->retry_delay = 1.0;
	if (v) {
		errno = 0;
		cfg->retry_delay = strtod(v, &end);
		if (errno || end == v || *end ||
		    !(cfg->retry_delay >= 0 && cfg->retry_delay <= 3600))
			return fail(err, errlen, "invalid %s '%s': must be seconds from 0 to 3600",
				    "retry_delay", v);
	}
	v = pick(raw, KEY_TIMEOUT, env);
	cfg->timeout = 60;
	if (v) {
		if (parse_long(v, 1, 86400, &n))
			return fail(err, errlen, "invalid %s '%s': must be seconds from 1 to 86400",
				    "timeout", v);
		cfg->timeout = n;
	}
	return 0;
}

static int resolve_numbers(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
			   char *err, size_t errlen)
{
	const char *v;
	long n;

	v = pick(raw, KEY_CONCURRENCY, env);
	cfg->concurrency = 7;
	if (v) {
		if (parse_long(v, 1, 64, &n))
			return fail(err, errlen, "invalid %s '%s': must be an integer from 1 to 64",
				    "concurrency", v);
		cfg->concurrency = (unsigned)n;
	}
	v = pick(raw, KEY_MAX_AGE, env);
	cfg->max_age = 86400;
	if (v) {
		if (parse_long(v, 0, 10L * 365 * 86400, &n))
			return fail(err, errlen, "invalid %s '%s': must be a number of seconds",
				    "max_age", v);
		cfg->max_age = n;
	}
	return resolve_retry_numbers(cfg, raw, env, err, errlen);
}

static bool two_digits(const char *s, int *out)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return false;
	*out = (s[0] - '0') * 10 + (s[1] - '0');
	return true;
}

/* refresh_at=HH:MM, two digits each, UTC. */
static int parse_hhmm(const char *s, int *minute)
{
	int h, m;

	if (strlen(s) != 5 || s[2] != ':' || !two_digits(s, &h) || !two_digits(s + 3, &m) ||
	    h > 23 || m > 59)
		return -EINVAL;
	*minute = h * 60 + m;
	return 0;
}

static int resolve_refresh(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
			   char *err, size_t errlen)
{
	const char *v;

	cfg->refresh_at = -1;
	if ((v = pick(raw, KEY_REFRESH_AT, env)) && parse_hhmm(v, &cfg->refresh_at))
		return fail(err, errlen, "invalid %s '%s': must be HH:MM (UTC, 00:00 to 23:59)",
			    "refresh_at", v);
	cfg->refresh_every = 0;
	if ((v = pick(raw, KEY_REFRESH_EVERY, env)) &&
	    parse_long(v, 1, 10L * 365 * 86400, &cfg->refresh_every))
		return fail(err, errlen, "invalid %s '%s': must be a positive number of seconds",
			    "refresh_every", v);
	return 0;
}

static int resolve_segments(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
			    char *err, size_t errlen)
{
	const char *v = pick(raw, KEY_SEGMENTS, env);
	long n;

	cfg->segments = 0;
	if (v && parse_long(v, 1, CONFIG_SEGMENTS_MAX, &n))
		return fail(err, errlen, "invalid %s '%s': must be an integer from 1 to 16",
			    "segments", v);
	if (v)
		cfg->segments = (unsigned)n;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTP";
	unsigned long long v;
	const char *u;
	char *end;
	int shift = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL; /* strtoull would take "-1" and " 1" */
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end && (u = strchr(units, toupper((unsigned char)*end))) && end[1] == '\0') {
		shift = 10 * (int)(u - units + 1);
		end++;
	}
	if (*end || v == 0 || v > (CONFIG_MAX_SIZE_LIMIT >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int resolve_max_size(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
			    char *err, size_t errlen)
{
	const char *v = pick(raw, KEY_MAX_SIZE, env);

	cfg->max_size = CONFIG_DEFAULT_MAX_SIZE;
	if (v && config_parse_size(v, &cfg->max_size))
		return fail(err, errlen,
			    "invalid %s '%s': must be a number of bytes from 1 to 2^60, "
			    "optionally followed by K, M, G, T or P",
			    "max_size", v);
	return 0;
}

/* fast_stat, or fast_stat=1|0|true|false|yes|no (and its environment variable likewise). */
static int resolve_fast_stat(struct config *cfg, const struct raw_opts *raw, config_env_fn env,
			     char *err, size_t errlen)
{
	static const char *const on[] = {"1", "true", "yes", "on"}, *const off[] = {"0", "false",
										    "no", "off"};
	const char *v = pick(raw, KEY_FAST_STAT, env);

	cfg->fast_stat = false;
	if (!v)
		return 0;
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		if (strcasecmp(v, on[i]) == 0) {
			cfg->fast_stat = true;
			return 0;
		}
		if (strcasecmp(v, off[i]) == 0)
			return 0;
	}
	return fail(err, errlen, "invalid %s '%s': must be 1 or 0 (true/false, yes/no, on/off)",
		    "fast_stat", v);
}

static int resolve(struct config *cfg, const struct raw_opts *raw, config_env_fn env, char *err,
		   size_t errlen)
{
	const char *v;
	int rc;

	if ((rc = resolve_origin(cfg, pick(raw, KEY_ORIGIN, env), err, errlen)) ||
	    (rc = resolve_cache_dir(cfg, pick(raw, KEY_CACHE_DIR, env), env, err, errlen)) ||
	    (rc = resolve_storage(cfg, pick(raw, KEY_STORAGE, env), env, err, errlen)) ||
	    (rc = resolve_container(cfg, pick(raw, KEY_CONTAINER, env), err, errlen)) ||
	    (rc = resolve_numbers(cfg, raw, env, err, errlen)) ||
	    (rc = resolve_refresh(cfg, raw, env, err, errlen)) ||
	    (rc = resolve_segments(cfg, raw, env, err, errlen)) ||
	    (rc = resolve_max_size(cfg, raw, env, err, errlen)) ||
	    (rc = resolve_fast_stat(cfg, raw, env, err, errlen)))
		return rc;
	v = pick(raw, KEY_DECODER, env);
	cfg->decoder = gunzip_decoder();
	if (v && !gunzip_has(v))
		return fail(err, errlen,
			    strcmp(v, "isal") == 0
				? "invalid %s '%s': this build has no ISA-L (libisal-dev); use zlib"
				: "invalid %s '%s': must be isal or zlib",
			    "decoder", v);
	if (v)
		cfg->decoder = strcmp(v, "isal") == 0 ? "isal" : "zlib";
	v = pick(raw, KEY_LOG_LEVEL, env);
	cfg->log_level = LOGL_INFO;
	if (v && log_level_parse(v, &cfg->log_level))
		return fail(err, errlen, "invalid %s '%s': must be error, warn, info or debug",
			    "log_level", v);
	if ((v = pick(raw, KEY_CAFILE, env)) && !(cfg->cafile = strdup(v)))
		return -ENOMEM;
	return 0;
}

int config_load(struct config *cfg, struct fuse_args *args, config_env_fn env, char *err,
		size_t errlen)
{
	struct raw_opts raw = {0};
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (fuse_opt_parse(args, &raw, opt_spec, opt_proc) != 0) {
		snprintf(err, errlen,
			 raw.positionals > 2 ? "too many arguments: [SOURCE] MOUNTPOINT expected"
					     : "cannot parse options");
		rc = -EINVAL;
		goto out;
	}
	if (raw.positionals == 1 && fuse_opt_add_arg(args, raw.first)) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cfg->foreground = raw.foreground;
	cfg->max_read = raw.max_read;
	rc = resolve(cfg, &raw, env, err, errlen);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
out:
	for (int i = 0; i < KEY_COUNT; i++)
		free(raw.value[i]);
	free(raw.first);
	if (rc)
		config_free(cfg);
	return rc;
}

void config_free(struct config *cfg)
{
	free(cfg->origin);
	free(cfg->origin_shown);
	free(cfg->cache_dir);
	free(cfg->container);
	free(cfg->cafile);
	memset(cfg, 0, sizeof(*cfg));
}

const char *config_hhmm(int minute, char buf[16])
{
	snprintf(buf, 16, "%02d:%02d", minute / 60 % 24, minute % 60);
	return buf;
}

const char *config_storage_name(enum storage_kind kind)
{
	return kind == STORAGE_AZURE ? "azure" : "local";
}

unsigned config_segments_for(const struct config *cfg, uint64_t size)
{
	uint64_t n;

	if (cfg->segments > 0)
		return cfg->segments;
	n = 1 + size / CONFIG_SEGMENT_AUTO_BYTES;
	return n < CONFIG_SEGMENTS_AUTO_MAX ? (unsigned)n : CONFIG_SEGMENTS_AUTO_MAX;
}

void config_hide_argv(int argc, char *argv[])
{
	for (int i = 1; i < argc; i++) {
		for (char *p = argv[i]; (p = strstr(p, "://"));) {
			char *start = p += 3, *end = start + strcspn(start, "/?#,"), *at = NULL;
			char *colon;
			for (char *q = start; q < end; q++)
				if (*q == '@')
					at = q;
			if (!at)
				continue;
			colon = memchr(start, ':', (size_t)(at - start));
			/* The password, or a user name without one (a token). */
			if (colon)
				start = colon + 1;
			memset(start, '*', (size_t)(at - start));
		}
	}
}
