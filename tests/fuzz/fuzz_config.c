/*
 * fuzz_config.c - the mount's options and their environment variables
 * (config_load): -o values, positional arguments and every variable
 * config.c reads.
 *
 * Input: the command line's arguments after "imdbfs", one per line, then a
 * NUL byte and the environment, one NAME=VALUE per line.
 *
 * Properties: a configuration accepted is in its documented ranges (an
 * http(s) origin ending in '/', 3-63 character container, concurrency 1-64,
 * and so on) and its policies give sane figures (config_backoff finite and
 * capped, config_segments_for 1-16); a refusal is one terminated line.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_opt.h>
#include <math.h>

#include "config.h"
#include "fuzz.h"
#include "retry.h"

#define MAX_ARGS 32
#define MAX_ENV	 32

static char *env_names[MAX_ENV], *env_values[MAX_ENV];
static size_t env_count;

static const char *env(const char *name)
{
	for (size_t i = 0; i < env_count; i++)
		if (strcmp(env_names[i], name) == 0)
			return env_values[i];
	return strcmp(name, "HOME") == 0 ? "/home/fuzz" : NULL;
}

static void check_config(const struct config *c)
{
	size_t n;

	FUZZ_CHECK(c->origin && (strncmp(c->origin, "http://", 7) == 0 ||
				 strncmp(c->origin, "https://", 8) == 0));
	n = strlen(c->origin);
	FUZZ_CHECK(c->origin[n - 1] == '/' && !strpbrk(c->origin, " \t\r\n"));
	FUZZ_CHECK(c->cache_dir && c->cache_dir[0]);
	FUZZ_CHECK(c->container && strlen(c->container) >= 3 && strlen(c->container) <= 63);
	FUZZ_CHECK(c->storage == STORAGE_LOCAL || c->storage == STORAGE_AZURE);
	FUZZ_CHECK(c->concurrency >= 1 && c->concurrency <= 64);
	FUZZ_CHECK(c->max_age >= 0 && c->retries <= 100 && c->timeout >= 1 && c->timeout <= 86400);
	FUZZ_CHECK(c->retry_delay >= 0 && c->retry_delay <= 3600);
	FUZZ_CHECK(c->refresh_at >= -1 && c->refresh_at < 24 * 60 && c->refresh_every >= 0);
	FUZZ_CHECK(c->segments <= CONFIG_SEGMENTS_MAX);
	FUZZ_CHECK(c->decoder &&
		   (strcmp(c->decoder, "zlib") == 0 || strcmp(c->decoder, "isal") == 0));
	FUZZ_CHECK(c->log_level >= LOGL_ERROR && c->log_level <= LOGL_DEBUG);
	for (int attempt = 1; attempt < 40; attempt += 7) {
		struct retry_policy rp = retry_policy_of(c);
		double w = retry_backoff(&rp, attempt, attempt * 100.0, 7);
		FUZZ_CHECK(isfinite(w) && w >= 0 && w <= c->retry_delay * RETRY_CAP_FACTOR * 1.25);
	}
	FUZZ_CHECK(config_segments_for(c, 0) >= 1 && config_segments_for(c, UINT64_MAX) <= 16);
}

/* Splits s at sep into at most max pieces (s is modified). */
static size_t split(char *s, char sep, char **out, size_t max)
{
	size_t n = 0;

	while (s && n < max) {
		char *next = strchr(s, sep);

		if (next)
			*next++ = '\0';
		out[n++] = s;
		s = next;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), *argv[MAX_ARGS + 1] = {"imdbfs"}, *lines[MAX_ENV];
	const uint8_t *nul = memchr(data, '\0', size);
	struct fuse_args args;
	struct config cfg;
	char err[256];
	size_t argc;
	int rc;

	argc = 1 + (size ? split(text, '\n', argv + 1, MAX_ARGS - 1) : 0);
	env_count = 0;
	if (nul) {
		size_t n = split(text + (nul - data) + 1, '\n', lines, MAX_ENV);

		for (size_t i = 0; i < n; i++) {
			char *eq = strchr(lines[i], '=');
			if (!eq)
				continue;
			*eq = '\0';
			env_names[env_count] = lines[i];
			env_values[env_count++] = eq + 1;
		}
	}
	argv[argc] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT((int)argc, argv);
	memset(err, 0, sizeof(err));
	rc = config_load(&cfg, &args, env, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) && err[0]);
		FUZZ_CHECK(!strpbrk(err, "\r\n"));
	} else {
		check_config(&cfg);
		config_free(&cfg);
	}
	fuse_opt_free_args(&args);
	free(text);
	return 0;
}
