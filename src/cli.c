/* cli.c - see cli.h */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "clock.h"

#define STATUS_MAX (1024 * 1024)
#define BAR_WIDTH  24

/* Reads MOUNT/.control/status; NULL with a message on stderr when it cannot. */
static cJSON *read_status(const char *mount)
{
	char path[4096];
	char *buf = malloc(STATUS_MAX);
	size_t n = 0;
	cJSON *o = NULL;
	FILE *f;

	if (!buf)
		return NULL;
	snprintf(path, sizeof(path), "%s/.control/status", mount);
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "imdbfs: %s: %s (is an imdbfs mounted there?)\n", path,
			strerror(errno));
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, STATUS_MAX - 1, f);
	fclose(f);
	buf[n] = '\0';
	o = cJSON_Parse(buf);
	free(buf);
	if (!cJSON_IsObject(o)) {
		fprintf(stderr, "imdbfs: %s: not a status file\n", path);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static double number(const cJSON *o, const char *name, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *string(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void human(double bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (bytes >= 1024 && u < 4)
		bytes /= 1024, u++;
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

static void print_dataset(const char *name, const cJSON *d, bool tty)
{
	const char *state = string(d, "state");
	const char *error = string(d, "error");
	double done = number(d, "bytes_done", 0), total = number(d, "bytes_total", -1);
	double rate = number(d, "rate_bps", 0), eta = number(d, "eta_s", -1);
	char sdone[32], stotal[32], srate[32], bar[BAR_WIDTH + 1];
	/* Clamped: the bar below is BAR_WIDTH long whatever the figures say. */
	int pct = total > 0 ? (int)(100.0 * fmin(fmax(done / total, 0.0), 1.0)) : -1;

	human(done, sdone, sizeof(sdone));
	human(total, stotal, sizeof(stotal));
	human(rate, srate, sizeof(srate));
	printf("%-17s %-11s", name, state ? state : "?");
	if (tty) {
		int fill = pct < 0 ? 0 : pct * BAR_WIDTH / 100;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '-', (size_t)(BAR_WIDTH - fill));
		bar[BAR_WIDTH] = '\0';
		printf(" [%s]", bar);
	}
	if (pct >= 0)
		printf(" %3d%% %s / %s", pct, sdone, stotal);
	else
		printf("      %s", sdone);
	if (rate > 0)
		printf("  %s/s", srate);
	if (eta >= 0 && rate > 0)
		printf("  eta %.0fs", eta);
	if (error)
		printf("  error: %s", error);
	printf("\n");
}

static bool print_status(const cJSON *st, bool tty)
{
	const cJSON *sets = cJSON_GetObjectItemCaseSensitive(st, "datasets");
	const cJSON *job = cJSON_GetObjectItemCaseSensitive(st, "job");
	bool busy = false;

	for (int i = 0; i < CATALOG_COUNT; i++) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(sets, catalog_name(i));
		const char *state = string(d, "state");
		print_dataset(catalog_name(i), d, tty);
		if (state && (strcmp(state, "queued") == 0 || strcmp(state, "downloading") == 0 ||
			      strcmp(state, "verifying") == 0 || strcmp(state, "extracting") == 0))
			busy = true;
	}
	if (cJSON_IsObject(job))
		printf("job %.0f: %s %s: %s\n", number(job, "id", 0), string(job, "command"),
		       string(job, "args"), string(job, "state"));
	return busy || number(st, "jobs_running", 0) > 0;
}

int cli_status(int argc, char *argv[])
{
	bool watch = false, tty = isatty(STDOUT_FILENO);
	const char *mount = NULL;
	struct timespec second = {1, 0};

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--watch") == 0 || strcmp(argv[i], "-w") == 0)
			watch = true;
		else if (!mount && argv[i][0] != '-')
			mount = argv[i];
		else
			mount = NULL, i = argc;
	}
	if (!mount) {
		fprintf(stderr, "usage: imdbfs status MOUNTPOINT [--watch]\n");
		return 2;
	}
	for (int lines = 0;;) {
		cJSON *st = read_status(mount);
		bool busy;
		if (!st)
			return 1;
		if (tty && lines)
			printf("\033[%dA\033[J", lines);
		busy = print_status(st, tty);
		lines =
		    CATALOG_COUNT + (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(st, "job")));
		cJSON_Delete(st);
		fflush(stdout);
		if (!watch || !busy)
			return 0;
		nanosleep(&second, NULL);
		if (!tty)
			printf("\n");
	}
}

/* The jobs to wait for: those running now, else the latest one. */
static int collect_jobs(const cJSON *st, double *ids, int cap)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(st, "jobs");
	const cJSON *j, *latest = cJSON_GetObjectItemCaseSensitive(st, "job");
	int n = 0;

	cJSON_ArrayForEach(j, list)
	{
		const char *state = string(j, "state");
		if (n < cap && state && strcmp(state, "running") == 0)
			ids[n++] = number(j, "id", 0);
	}
	if (n == 0 && cJSON_IsObject(latest))
		ids[n++] = number(latest, "id", 0);
	return n;
}

/* 1 while any of ids runs, 0 when all ended well, -1 when one failed. */
static int jobs_outcome(const cJSON *st, const double *ids, int n)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(st, "jobs");
	const cJSON *j;
	bool running = false, failed = false;

	cJSON_ArrayForEach(j, list)
	{
		const char *state = string(j, "state");
		for (int i = 0; i < n; i++) {
			if (number(j, "id", -1) != ids[i] || !state)
				continue;
			running |= strcmp(state, "running") == 0;
			failed |= strcmp(state, "failed") == 0;
		}
	}
	return running ? 1 : failed ? -1 : 0;
}

int cli_wait(int argc, char *argv[])
{
	/* Short: a status read costs the daemon microseconds; scripts time what they wait for. */
	struct timespec tick = {0, 20 * 1000 * 1000};
	const char *mount = NULL;
	double timeout = 0, deadline, ids[64];
	int n, outcome;
	cJSON *st;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout = atof(argv[++i]);
		else if (!mount && argv[i][0] != '-')
			mount = argv[i];
		else
			mount = NULL, i = argc;
	}
	if (!mount) {
		fprintf(stderr, "usage: imdbfs wait MOUNTPOINT [--timeout SECONDS]\n");
		return 2;
	}
	if (!(st = read_status(mount)))
		return 2;
	n = collect_jobs(st, ids, 64);
	deadline = clock_mono() + timeout;
	for (;;) {
		outcome = jobs_outcome(st, ids, n);
		cJSON_Delete(st);
		if (outcome <= 0)
			return outcome < 0 ? 1 : 0;
		if (timeout > 0 && clock_mono() > deadline) {
			fprintf(stderr, "imdbfs: wait: still running after %.0f s\n", timeout);
			return 2;
		}
		nanosleep(&tick, NULL);
		if (!(st = read_status(mount)))
			return 2;
	}
}
