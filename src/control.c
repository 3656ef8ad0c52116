/* control.c - see control.h */
#include "control.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "json.h"
#include "metrics.h"
#include "probe.h"
#include "replicate.h"
#include "schedule.h"
#include "secret_env.h"
#include "store.h"
#include "store_azure.h"
#include "version.h"

static const char *const names[CTL_COUNT] = {
    [CTL_HEALTH] = "health",	 [CTL_DATASETS] = "datasets", [CTL_FILES] = "files",
    [CTL_STATUS] = "status",	 [CTL_CONFIG] = "config",     [CTL_METRICS] = "metrics",
    [CTL_DOWNLOAD] = "download", [CTL_EXTRACT] = "extract",   [CTL_FULL_PROCESS] = "full-process",
    [CTL_DELETE] = "delete",
};

/* Set by control_init() before the mount; read-only afterwards. */
static const struct config *config;
static struct store *store;
static double mounted_at;

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *command_error; /* guarded by ctl_lock */

/*
 * Which secret variables were set (config shows them as "***"), seen here
 * at init: main then wipes them from the environment (secret_env_scrub).
 */
static bool secret_given[SECRET_ENV_COUNT];

void control_init(const struct config *cfg, struct store *st, double when)
{
	config = cfg;
	store = st;
	mounted_at = when;
	for (size_t i = 0; i < SECRET_ENV_COUNT; i++) {
		const char *v = getenv(secret_env_names[i]);

		secret_given[i] = v && *v;
	}
}

int control_lookup(const char *name)
{
	for (int i = 0; i < CTL_COUNT; i++) {
		if (strcmp(name, names[i]) == 0)
			return i;
	}
	return -ENOENT;
}

const char *control_name(enum control_file id)
{
	return names[id];
}

bool control_is_command(enum control_file id)
{
	return id >= CTL_DOWNLOAD;
}

/* ---- command parsing ------------------------------------------------------ */

static int refuse(char *err, size_t errlen, const char *fmt, const char *word)
{
	snprintf(err, errlen, fmt, word);
	return -EINVAL;
}

static int parse_words(enum job_command cmd, char *line, struct command *out, char *err,
		       size_t errlen)
{
	bool forceable = cmd == CMD_DOWNLOAD || cmd == CMD_FULL_PROCESS;
	char *save = NULL;
	int ds;

	for (char *w = strtok_r(line, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
		if (out->force)
			return refuse(err, errlen, "'force' must come last (found '%s' after it)",
				      w);
		if (strcmp(w, "force") == 0) {
			if (!forceable)
				return refuse(err, errlen, "'%s' takes no 'force'",
					      names[cmd + CTL_DOWNLOAD]);
			out->force = true;
		} else if (strcmp(w, "all") == 0) {
			out->mask = (1u << CATALOG_COUNT) - 1;
		} else if ((ds = catalog_lookup_dataset(w)) >= 0) {
			out->mask |= 1u << ds;
		} else {
			char word[65]; /* at most 64 bytes of it, cut between characters */
			json_utf8_copy(word, sizeof(word), w, strlen(w));
			return refuse(err, errlen,
				      "unknown dataset '%s': use 'all' or names like title.basics",
				      word);
		}
	}
	if (!out->mask)
		return refuse(err, errlen, "%s", "no dataset named: write 'all' or dataset names");
	return 0;
}

int control_parse_command(enum job_command cmd, const char *buf, size_t len, struct command *out,
			  char *err, size_t errlen)
{
	char line[CONTROL_MAX_WRITE + 1];

	memset(out, 0, sizeof(*out));
	out->cmd = cmd;
	if (len > CONTROL_MAX_WRITE)
		return refuse(err, errlen, "%s", "command too long");
	if (len && buf[len - 1] == '\n')
		len--;
	if (len && buf[len - 1] == '\r')
		len--;
	if (memchr(buf, '\n', len) || memchr(buf, '\0', len))
		return refuse(err, errlen, "%s", "one command per write, on one line");
	memcpy(line, buf, len);
	line[len] = '\0';
	return parse_words(cmd, line, out, err, errlen);
}

static void remember_error(enum control_file id, const char *buf, size_t len, const char *why)
{
	cJSON *e = cJSON_CreateObject();
	char stamp[32], input[101];
	size_t n = 0;

	if (!e)
		return;
	while (n < len && buf[n] != '\r' && buf[n] != '\n')
		n++;
	/* Its first line as UTF-8 (it may be any bytes), at most 100 bytes of it. */
	json_utf8_copy(input, sizeof(input), buf, n);
	clock_iso8601(clock_wall(), stamp, sizeof(stamp));
	cJSON_AddStringToObject(e, "file", names[id]);
	cJSON_AddStringToObject(e, "input", input);
	cJSON_AddStringToObject(e, "error", why);
	cJSON_AddStringToObject(e, "at", stamp);
	pthread_mutex_lock(&ctl_lock);
	cJSON_Delete(command_error);
	command_error = e;
	pthread_mutex_unlock(&ctl_lock);
}

int control_write(enum control_file id, const char *buf, size_t len)
{
	enum job_command cmd = (enum job_command)(id - CTL_DOWNLOAD);
	struct command c;
	char err[256], text[128];
	int rc;

	rc = control_parse_command(cmd, buf, len, &c, err, sizeof(err));
	if (rc) {
		remember_error(id, buf, len, err);
		return rc;
	}
	snprintf(text, sizeof(text), "%.*s", (int)(len < 120 ? len : 120), buf);
	text[strcspn(text, "\r\n")] = '\0';
	rc = jobs_submit(&c, text);
	if (rc == -EBUSY)
		remember_error(id, buf, len, "too many jobs running; try again when one ends");
	return rc;
}

/* ---- rendering ---------------------------------------------------------------- */

static void add_time(cJSON *o, const char *name, double t)
{
	char stamp[32];

	if (t <= 0) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	clock_iso8601(t, stamp, sizeof(stamp));
	cJSON_AddStringToObject(o, name, stamp);
}

static void add_string_or_null(cJSON *o, const char *name, const char *s)
{
	if (s && *s)
		cJSON_AddStringToObject(o, name, s);
	else
		cJSON_AddNullToObject(o, name);
}

static cJSON *file_json(const char *name, const struct meta *m, const char *type, const char *state)
{
	cJSON *f = cJSON_CreateObject();

	if (!f)
		return NULL;
	cJSON_AddStringToObject(f, "name", name);
	cJSON_AddNumberToObject(f, "size_bytes", (double)m->size);
	cJSON_AddNumberToObject(f, "size_mb", (double)llround((double)m->size / 10485.76) / 100.0);
	add_time(f, "last_modified", (double)m->mtime);
	add_string_or_null(f, "etag", m->etag);
	cJSON_AddStringToObject(f, "content_type", type);
	cJSON_AddStringToObject(f, "state", state);
	add_time(f, "fetched_at", m->fetched_at);
	return f;
}

cJSON *control_files_json(const struct dataset_info info[CATALOG_COUNT], const char *directory)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *files = cJSON_AddArrayToObject(o, "files");
	int n = 0;

	if (!o || !files) {
		cJSON_Delete(o);
		return NULL;
	}
	for (int i = 0; i < CATALOG_COUNT; i++) {
		const char *state = dataset_state_name(info[i].state);
		if (info[i].cached && ++n)
			cJSON_AddItemToArray(files, file_json(catalog_file(i, KIND_GZ), &info[i].gz,
							      "application/gzip", state));
		if (info[i].extracted && ++n)
			cJSON_AddItemToArray(files,
					     file_json(catalog_file(i, KIND_TSV), &info[i].tsv,
						       "text/tab-separated-values", state));
	}
	cJSON_AddNumberToObject(o, "total_files", n);
	cJSON_AddStringToObject(o, "directory", directory);
	return o;
}

static int add_blob(void *ctx, const struct store_azure_item *it)
{
	cJSON *f = file_json(it->name, &it->m, it->content_type, "stored");

	return f && cJSON_AddItemToArray(ctx, f) ? 0 : -ENOMEM;
}

/* With storage=azure, the seed's Azure shape: what the container holds. */
static cJSON *container_files_json(void)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *files = cJSON_AddArrayToObject(o, "files");
	char err[256];

	if (!o || !files) {
		cJSON_Delete(o);
		return NULL;
	}
	if (store_azure_list(add_blob, files, err, sizeof(err)))
		cJSON_AddStringToObject(o, "error", err);
	cJSON_AddNumberToObject(o, "total_files", cJSON_GetArraySize(files));
	cJSON_AddStringToObject(o, "directory", store_azure_location());
	return o;
}

static cJSON *dataset_status_json(const struct dataset_info *in)
{
	cJSON *o = cJSON_CreateObject();
	double left;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "state", dataset_state_name(in->state));
	cJSON_AddBoolToObject(o, "cached", in->cached);
	cJSON_AddBoolToObject(o, "extracted", in->extracted);
	cJSON_AddBoolToObject(o, "retrying", in->retrying);
	cJSON_AddNumberToObject(o, "bytes_done", (double)in->bytes_done);
	if (in->bytes_total >= 0)
		cJSON_AddNumberToObject(o, "bytes_total", (double)in->bytes_total);
	else
		cJSON_AddNullToObject(o, "bytes_total");
	/* Whole numbers by trunc(), not a cast: a hostile length makes them exceed a long long. */
	cJSON_AddNumberToObject(o, "rate_bps", trunc(in->rate_bps));
	left = (double)in->bytes_total - (double)in->bytes_done;
	if (in->rate_bps > 0 && in->bytes_total >= 0)
		cJSON_AddNumberToObject(o, "eta_s", trunc(left / in->rate_bps + 0.5));
	else
		cJSON_AddNullToObject(o, "eta_s");
	add_string_or_null(o, "error", in->error);
	add_string_or_null(o, "etag", in->cached ? in->gz.etag : NULL);
	add_time(o, "fetched_at", in->cached ? in->gz.fetched_at : 0);
	if (in->cached)
		cJSON_AddNumberToObject(o, "size_bytes", (double)in->gz.size);
	if (in->extracted)
		cJSON_AddNumberToObject(o, "tsv_size_bytes", (double)in->tsv.size);
	return o;
}

/*
 * The dataset's upload to the container (replicate.h): of its two files,
 * the one running or waiting, else a failure, else the last outcome.
 */
static void add_upload(cJSON *o, int ds)
{
	static const int rank[] = {[REPL_NONE] = 0,   [REPL_DROPPED] = 1, [REPL_DONE] = 2,
				   [REPL_FAILED] = 3, [REPL_QUEUED] = 4,  [REPL_UPLOADING] = 5};
	enum replicate_state best = REPL_NONE;
	char err[256], best_err[256] = "";

	if (!o)
		return;
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		enum replicate_state st =
		    replicate_status(catalog_file(ds, (enum file_kind)k), err, sizeof(err));
		if (rank[st] > rank[best]) {
			best = st;
			snprintf(best_err, sizeof(best_err), "%s", err);
		}
	}
	add_string_or_null(o, "upload", replicate_state_name(best));
	add_string_or_null(o, "upload_error", best_err);
}

cJSON *control_datasets_status_json(const struct dataset_info info[CATALOG_COUNT])
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	for (int i = 0; i < CATALOG_COUNT; i++) {
		cJSON *d = dataset_status_json(&info[i]);
		add_upload(d, i);
		cJSON_AddItemToObject(o, catalog_name(i), d);
	}
	return o;
}

/* What makes health "degraded": failing datasets and a failing container. */
static cJSON *problems_json(const struct dataset_info info[CATALOG_COUNT], const struct config *cfg)
{
	cJSON *problems = cJSON_CreateArray();
	char line[400];

	if (!problems)
		return NULL;
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (info[i].state != DS_FAILED && !info[i].retrying)
			continue;
		snprintf(line, sizeof(line), "%s: %s", catalog_name(i), info[i].error);
		cJSON_AddItemToArray(problems, cJSON_CreateString(line));
	}
	if (cfg->storage == STORAGE_AZURE) {
		char why[300];
		store_azure_problem(why, sizeof(why));
		if (why[0]) {
			snprintf(line, sizeof(line), "container: %s", why);
			cJSON_AddItemToArray(problems, cJSON_CreateString(line));
		}
	}
	return problems;
}

/*
 * What is known of the sizes (probe.h): whether the probe at mount still
 * runs, the .tsv.gz files whose size is not known, and why not. An
 * unreachable origin is no problem of the mount: it is said here only.
 */
static cJSON *sizes_json(const struct dataset_info info[CATALOG_COUNT])
{
	cJSON *o = cJSON_CreateObject(), *unknown = cJSON_CreateArray(),
	      *errors = cJSON_CreateArray();
	struct probe_file probe[CATALOG_COUNT];
	bool probing = false;
	char line[400];

	if (!o || !unknown || !errors) {
		cJSON_Delete(o);
		cJSON_Delete(unknown);
		cJSON_Delete(errors);
		return NULL;
	}
	probe_snapshot(probe);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		probing |= probe[i].outcome == PROBE_RUNNING;
		if (info[i].size[KIND_GZ] >= 0)
			continue;
		cJSON_AddItemToArray(unknown, cJSON_CreateString(catalog_file(i, KIND_GZ)));
		if (probe[i].outcome == PROBE_FAILED) {
			snprintf(line, sizeof(line), "%s: %s", catalog_file(i, KIND_GZ),
				 probe[i].error);
			cJSON_AddItemToArray(errors, cJSON_CreateString(line));
		}
	}
	cJSON_AddBoolToObject(o, "probing", probing);
	cJSON_AddItemToObject(o, "unknown", unknown);
	cJSON_AddItemToObject(o, "errors", errors);
	return o;
}

cJSON *control_health_json(const struct dataset_info info[CATALOG_COUNT], const struct config *cfg,
			   double now, double started)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *problems = problems_json(info, cfg);

	if (!o || !problems) {
		cJSON_Delete(o);
		cJSON_Delete(problems);
		return NULL;
	}
	cJSON_AddStringToObject(o, "status", cJSON_GetArraySize(problems) ? "degraded" : "healthy");
	cJSON_AddStringToObject(o, "message", "imdbfs: the IMDb datasets as files");
	cJSON_AddStringToObject(o, "version", IMDBFS_VERSION);
	add_time(o, "timestamp", now);
	cJSON_AddStringToObject(o, "storage", config_storage_name(cfg->storage));
	cJSON_AddStringToObject(o, "origin", cfg->origin_shown);
	cJSON_AddNumberToObject(o, "uptime_s", (double)(long long)(now - started));
	cJSON_AddItemToObject(o, "problems", problems);
	cJSON_AddItemToObject(o, "sizes", sizes_json(info));
	return o;
}

static bool env_set(const char *(*env)(const char *), const char *name)
{
	const char *v = env(name);

	return v && *v;
}

static void add_refresh(cJSON *o, const struct config *cfg)
{
	char at[16];

	if (cfg->refresh_at >= 0)
		cJSON_AddStringToObject(o, "refresh_at", config_hhmm(cfg->refresh_at, at));
	else
		cJSON_AddNullToObject(o, "refresh_at");
	if (cfg->refresh_every > 0)
		cJSON_AddNumberToObject(o, "refresh_every", (double)cfg->refresh_every);
	else
		cJSON_AddNullToObject(o, "refresh_every");
}

cJSON *control_config_json(const struct config *cfg, const char *(*env)(const char *))
{
	cJSON *o = cJSON_CreateObject();
	cJSON *creds;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "origin", cfg->origin_shown);
	cJSON_AddStringToObject(o, "cache_dir", cfg->cache_dir);
	cJSON_AddStringToObject(o, "storage", config_storage_name(cfg->storage));
	cJSON_AddStringToObject(o, "container", cfg->container);
	cJSON_AddNumberToObject(o, "concurrency", cfg->concurrency);
	cJSON_AddNumberToObject(o, "max_age", (double)cfg->max_age);
	cJSON_AddNumberToObject(o, "retries", cfg->retries);
	cJSON_AddNumberToObject(o, "retry_delay", cfg->retry_delay);
	cJSON_AddNumberToObject(o, "timeout", (double)cfg->timeout);
	add_string_or_null(o, "cafile", cfg->cafile);
	cJSON_AddStringToObject(o, "log_level", log_level_name(cfg->log_level));
	add_refresh(o, cfg);
	cJSON_AddStringToObject(o, "decoder", cfg->decoder);
	if (cfg->segments > 0)
		cJSON_AddNumberToObject(o, "segments", cfg->segments);
	else
		cJSON_AddStringToObject(o, "segments", "auto");
	cJSON_AddNumberToObject(o, "max_size", (double)cfg->max_size);
	creds = cJSON_AddObjectToObject(o, "azure_credentials");
	for (size_t i = 0; creds && i < SECRET_ENV_COUNT; i++) {
		if (env_set(env, secret_env_names[i]))
			cJSON_AddStringToObject(creds, secret_env_names[i], "***");
		else
			cJSON_AddNullToObject(creds, secret_env_names[i]);
	}
	if (creds)
		add_string_or_null(creds, "AZURE_STORAGE_ACCOUNT_NAME",
				   env("AZURE_STORAGE_ACCOUNT_NAME"));
	return o;
}

/* The environment as it was at init for the secrets (gone from it since), else as it is. */
static const char *real_env(const char *name)
{
	for (size_t i = 0; i < SECRET_ENV_COUNT; i++)
		if (strcmp(name, secret_env_names[i]) == 0)
			return secret_given[i] ? "***" : NULL;
	return getenv(name);
}

static void snapshot(struct dataset_info info[CATALOG_COUNT])
{
	for (int i = 0; i < CATALOG_COUNT; i++)
		dataset_info(i, &info[i]);
}

static cJSON *status_json(void)
{
	struct dataset_info info[CATALOG_COUNT];
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	snapshot(info);
	cJSON_AddItemToObject(o, "datasets", control_datasets_status_json(info));
	if (jobs_add_status(o) || schedule_add_status(o)) {
		cJSON_Delete(o);
		return NULL;
	}
	pthread_mutex_lock(&ctl_lock);
	if (command_error)
		cJSON_AddItemToObject(o, "command_error", cJSON_Duplicate(command_error, 1));
	else
		cJSON_AddNullToObject(o, "command_error");
	pthread_mutex_unlock(&ctl_lock);
	return o;
}

static cJSON *datasets_json(void)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(o, "datasets");

	if (!o || !list) {
		cJSON_Delete(o);
		return NULL;
	}
	for (int i = 0; i < CATALOG_COUNT; i++)
		cJSON_AddItemToArray(list, cJSON_CreateString(catalog_file(i, KIND_GZ)));
	cJSON_AddNumberToObject(o, "total_count", CATALOG_COUNT);
	return o;
}

static cJSON *build(enum control_file id)
{
	struct dataset_info info[CATALOG_COUNT];

	switch (id) {
	case CTL_HEALTH:
		snapshot(info);
		return control_health_json(info, config, clock_wall(), mounted_at);
	case CTL_DATASETS:
		return datasets_json();
	case CTL_FILES:
		if (store_azure_enabled())
			return container_files_json();
		snapshot(info);
		return control_files_json(info, store->ops->location(store));
	case CTL_STATUS:
		return status_json();
	case CTL_CONFIG:
		return control_config_json(config, real_env);
	default:
		return NULL;
	}
}

/* Per-dataset gauges: one state series per state (1 for the current one), sizes, times. */
static void dataset_gauges(struct metrics_page *p, const struct dataset_info info[CATALOG_COUNT])
{
	char labels[128];

	metrics_family(p, "imdbfs_dataset_state", "gauge",
		       "1 for the state each dataset is in, 0 for the others.");
	for (int i = 0; i < CATALOG_COUNT; i++) {
		for (int st = DS_ABSENT; st <= DS_FAILED; st++) {
			snprintf(labels, sizeof(labels), "dataset=\"%s\",state=\"%s\"",
				 catalog_name(i), dataset_state_name((enum ds_state)st));
			metrics_sample(p, "imdbfs_dataset_state", labels, (int)info[i].state == st);
		}
	}
	metrics_family(p, "imdbfs_cached_bytes", "gauge",
		       "Bytes of the cached copy of each data file.");
	for (int i = 0; i < CATALOG_COUNT; i++) {
		snprintf(labels, sizeof(labels), "file=\"%s\"", catalog_file(i, KIND_GZ));
		metrics_sample(p, "imdbfs_cached_bytes", labels,
			       info[i].cached ? (double)info[i].gz.size : 0);
		snprintf(labels, sizeof(labels), "file=\"%s\"", catalog_file(i, KIND_TSV));
		metrics_sample(p, "imdbfs_cached_bytes", labels,
			       info[i].extracted ? (double)info[i].tsv.size : 0);
	}
	metrics_family(p, "imdbfs_dataset_fetched_timestamp_seconds", "gauge",
		       "When the cached .tsv.gz of each dataset was stored (absent: not cached).");
	for (int i = 0; i < CATALOG_COUNT; i++) {
		snprintf(labels, sizeof(labels), "dataset=\"%s\"", catalog_name(i));
		if (info[i].cached)
			metrics_sample(p, "imdbfs_dataset_fetched_timestamp_seconds", labels,
				       info[i].gz.fetched_at);
	}
	metrics_family(p, "imdbfs_dataset_last_modified_timestamp_seconds", "gauge",
		       "The origin's Last-Modified of each cached .tsv.gz.");
	for (int i = 0; i < CATALOG_COUNT; i++) {
		snprintf(labels, sizeof(labels), "dataset=\"%s\"", catalog_name(i));
		if (info[i].cached && info[i].gz.mtime)
			metrics_sample(p, "imdbfs_dataset_last_modified_timestamp_seconds", labels,
				       (double)info[i].gz.mtime);
	}
}

static char *metrics_text(void)
{
	struct dataset_info info[CATALOG_COUNT];
	struct metrics_page p = {0};
	cJSON *problems;
	double now = clock_wall();

	snapshot(info);
	problems = problems_json(info, config);
	metrics_counters(&p);
	dataset_gauges(&p, info);
	metrics_family(&p, "imdbfs_jobs_running", "gauge",
		       "Jobs started from .control/ still running.");
	metrics_sample(&p, "imdbfs_jobs_running", "", jobs_running());
	metrics_family(&p, "imdbfs_healthy", "gauge",
		       "1 when .control/health says healthy, 0 when degraded.");
	metrics_sample(&p, "imdbfs_healthy", "", problems && !cJSON_GetArraySize(problems));
	metrics_family(&p, "imdbfs_uptime_seconds", "gauge", "Seconds since the mount.");
	metrics_sample(&p, "imdbfs_uptime_seconds", "", now - mounted_at);
	metrics_family(&p, "imdbfs_build_info", "gauge", "Always 1; the version as a label.");
	metrics_sample(&p, "imdbfs_build_info", "version=\"" IMDBFS_VERSION "\"", 1);
	cJSON_Delete(problems);
	return metrics_finish(&p);
}

static int json_line(cJSON *o, char **out, size_t *len)
{
	*out = json_print_line(o);
	if (!*out)
		return -ENOMEM;
	*len = strlen(*out);
	return 0;
}

int control_render(enum control_file id, char **out, size_t *len)
{
	char *text;

	if (id == CTL_METRICS)
		text = metrics_text();
	else if (control_is_command(id))
		text = jobs_result((enum job_command)(id - CTL_DOWNLOAD));
	else
		return json_line(build(id), out, len);
	if (!text)
		return -ENOMEM;
	*out = text;
	*len = strlen(text);
	return 0;
}
