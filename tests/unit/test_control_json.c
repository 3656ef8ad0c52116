/*
 * test_control_json.c - the pure renderers behind .control/files, status,
 * health and config, fed with hand-made dataset snapshots.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "control.h"
#include "version.h"
#include "unit.h"

/*
 * What the running test made, freed by the teardown even when an assertion
 * fails mid-test, so that ASan reports only real leaks.
 */
static cJSON *kept[4];
static size_t n_kept;
static char *kept_text;

static cJSON *keep(cJSON *o)
{
	assert_non_null(o);
	assert_true(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = o;
	return o;
}

static int free_kept(void **state)
{
	(void)state;
	while (n_kept)
		cJSON_Delete(kept[--n_kept]);
	free(kept_text);
	kept_text = NULL;
	return 0;
}

/* All seven datasets absent, nothing cached, nothing known. */
static void absent(struct dataset_info info[CATALOG_COUNT])
{
	memset(info, 0, sizeof(struct dataset_info) * CATALOG_COUNT);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		info[i].state = DS_ABSENT;
		info[i].bytes_total = -1;
		info[i].gz.tsv_size = -1;
		info[i].tsv.tsv_size = -1;
		info[i].size[KIND_GZ] = info[i].size[KIND_TSV] = -1;
	}
}

static void set_meta(struct meta *m, int64_t size, int64_t mtime, const char *etag)
{
	snprintf(m->url, sizeof(m->url), "https://datasets.imdbws.com/x.tsv.gz");
	snprintf(m->etag, sizeof(m->etag), "%s", etag);
	snprintf(m->last_modified, sizeof(m->last_modified), "Sun, 26 Oct 2025 02:00:00 GMT");
	m->mtime = mtime;
	m->size = size;
	m->fetched_at = 1700000000.25;
}

static const cJSON *item(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v)
		fail_msg("no \"%s\" in the object", key);
	return v;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = item(o, key);

	if (!cJSON_IsString(v))
		fail_msg("\"%s\" is not a string", key);
	return v->valuestring;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = item(o, key);

	if (!cJSON_IsNumber(v))
		fail_msg("\"%s\" is not a number", key);
	return v->valuedouble;
}

static void assert_num(const cJSON *o, const char *key, double want)
{
	double got = num(o, key);
	double diff = got > want ? got - want : want - got;

	if (diff > 1e-9 * (want > 1 ? want : 1))
		fail_msg("\"%s\" is %.17g, want %.17g", key, got, want);
}

static void assert_null_item(const cJSON *o, const char *key)
{
	if (!cJSON_IsNull(item(o, key)))
		fail_msg("\"%s\" is not null", key);
}

/* ---- files ------------------------------------------------------------- */

static void test_files_lists_only_cached_and_extracted(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *files, *f;
	cJSON *o;

	(void)state;
	absent(info);
	info[2].state = DS_CACHED;
	info[2].cached = true;
	set_meta(&info[2].gz, 1048576, 1761444000, "\"e-basics\"");
	info[6].state = DS_EXTRACTED;
	info[6].cached = true;
	info[6].extracted = true;
	set_meta(&info[6].gz, 5242880, 1761444000, "\"e-ratings\"");
	set_meta(&info[6].tsv, 1234567890, 0, "");
	info[4].state = DS_DOWNLOADING; /* in flight, not cached: not listed */
	o = keep(control_files_json(info, "/var/cache/imdbfs"));

	files = item(o, "files");
	assert_true(cJSON_IsArray(files));
	assert_int_equal(cJSON_GetArraySize(files), 3);
	assert_num(o, "total_files", 3);
	assert_string_equal(str(o, "directory"), "/var/cache/imdbfs");

	f = cJSON_GetArrayItem(files, 0);
	assert_string_equal(str(f, "name"), "title.basics.tsv.gz");
	assert_num(f, "size_bytes", 1048576);
	assert_num(f, "size_mb", 1.0);
	assert_string_equal(str(f, "last_modified"), "2025-10-26T02:00:00.000Z");
	assert_string_equal(str(f, "etag"), "\"e-basics\"");
	assert_string_equal(str(f, "content_type"), "application/gzip");
	assert_string_equal(str(f, "state"), "cached");

	f = cJSON_GetArrayItem(files, 1);
	assert_string_equal(str(f, "name"), "title.ratings.tsv.gz");
	assert_num(f, "size_bytes", 5242880);
	assert_num(f, "size_mb", 5.0);
	assert_string_equal(str(f, "content_type"), "application/gzip");
	assert_string_equal(str(f, "state"), "extracted");

	f = cJSON_GetArrayItem(files, 2);
	assert_string_equal(str(f, "name"), "title.ratings.tsv");
	assert_num(f, "size_bytes", 1234567890);
	assert_null_item(f, "last_modified"); /* mtime 0: unknown */
	assert_string_equal(str(f, "content_type"), "text/tab-separated-values");
}

static void test_files_empty_cache_lists_nothing(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	cJSON *o;

	(void)state;
	absent(info);
	o = keep(control_files_json(info, "dir"));
	assert_int_equal(cJSON_GetArraySize(item(o, "files")), 0);
	assert_num(o, "total_files", 0);
	assert_string_equal(str(o, "directory"), "dir");
}

static void test_files_sizes_above_4gib_exact(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *f;
	cJSON *o;

	(void)state;
	absent(info);
	info[1].state = DS_EXTRACTED;
	info[1].cached = info[1].extracted = true;
	set_meta(&info[1].gz, 440401920, 1761444000, "\"a\"");
	set_meta(&info[1].tsv, 4699979776, 1761444000, "\"a\""); /* 4482.25 MiB */
	o = keep(control_files_json(info, "d"));
	f = cJSON_GetArrayItem(item(o, "files"), 1);
	assert_string_equal(str(f, "name"), "title.akas.tsv");
	assert_num(f, "size_bytes", 4699979776.0);
	assert_num(f, "size_mb", 4482.25);
	f = cJSON_GetArrayItem(item(o, "files"), 0);
	assert_num(f, "size_mb", 420.0);
}

/* The seed's own example: 292318780 bytes is 278.7769 MiB, shown as 278.78. */
static void test_files_size_mb_rounds_like_seed(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	cJSON *o;

	(void)state;
	absent(info);
	info[0].state = DS_CACHED;
	info[0].cached = true;
	set_meta(&info[0].gz, 292318780, 1761444000, "\"n\"");
	o = keep(control_files_json(info, "d"));
	assert_num(cJSON_GetArrayItem(item(o, "files"), 0), "size_mb", 278.78);
}

/* ---- status ------------------------------------------------------------ */

static void test_status_has_seven_datasets_with_state_names(void **state)
{
	static const char *const want[] = {"absent", "queued",	   "downloading", "verifying",
					   "cached", "extracting", "extracted"};
	struct dataset_info info[CATALOG_COUNT];
	cJSON *o;

	(void)state;
	absent(info);
	for (int i = 0; i < CATALOG_COUNT; i++)
		info[i].state = (enum ds_state)i;
	o = keep(control_datasets_status_json(info));
	assert_int_equal(cJSON_GetArraySize(o), CATALOG_COUNT);
	for (int i = 0; i < CATALOG_COUNT; i++)
		assert_string_equal(str(item(o, catalog_name(i)), "state"), want[i]);

	info[3].state = DS_FAILED;
	o = keep(control_datasets_status_json(info));
	assert_string_equal(str(item(o, "title.crew"), "state"), "failed");
}

static void test_status_unknown_total_is_null_and_no_eta(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *d;
	cJSON *o;

	(void)state;
	absent(info);
	info[2].state = DS_DOWNLOADING;
	info[2].bytes_done = 5000;
	info[2].bytes_total = -1;
	info[2].rate_bps = 1000;
	o = keep(control_datasets_status_json(info));
	d = item(o, "title.basics");
	assert_num(d, "bytes_done", 5000);
	assert_null_item(d, "bytes_total");
	assert_null_item(d, "eta_s");
	assert_null_item(d, "error");
}

static void test_status_eta_from_rate_and_remaining_bytes(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *d;
	cJSON *o;

	(void)state;
	absent(info);
	info[5].state = DS_DOWNLOADING;
	info[5].bytes_done = 200;
	info[5].bytes_total = 1200;
	info[5].rate_bps = 100;
	info[6].state = DS_DOWNLOADING;
	info[6].bytes_done = 1000000000;
	info[6].bytes_total = 5000000000; /* above 2^32 */
	info[6].rate_bps = 2000000;
	o = keep(control_datasets_status_json(info));
	d = item(o, "title.principals");
	assert_num(d, "bytes_done", 200);
	assert_num(d, "bytes_total", 1200);
	assert_num(d, "rate_bps", 100);
	assert_num(d, "eta_s", 10);
	d = item(o, "title.ratings");
	assert_num(d, "bytes_total", 5000000000.0);
	assert_num(d, "eta_s", 2000);
	d = item(o, "name.basics"); /* not transferring: no rate, no eta */
	assert_num(d, "rate_bps", 0);
	assert_null_item(d, "eta_s");
}

/*
 * A hostile Content-Length near 2^63 read at under a byte a second: the eta
 * is far beyond a long long, and is still a positive number of seconds (the
 * cast was undefined and gave -2^63). Found by fuzz_control_json.
 */
static void test_status_eta_of_a_huge_length_at_a_trickle(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *eta;
	cJSON *o;

	(void)state;
	absent(info);
	info[0].state = DS_DOWNLOADING;
	info[0].bytes_done = 1;
	info[0].bytes_total = INT64_MAX;
	info[0].rate_bps = 0.5;
	o = keep(control_datasets_status_json(info));
	eta = cJSON_GetObjectItemCaseSensitive(item(o, catalog_name(0)), "eta_s");
	assert_true(cJSON_IsNumber(eta));
	if (!(eta->valuedouble > 1.8e19))
		fail_msg("eta_s %g, wanted about 1.8e19", eta->valuedouble);
}

static void test_status_error_null_when_empty_text_when_set(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	cJSON *o;

	(void)state;
	absent(info);
	info[3].state = DS_FAILED;
	snprintf(info[3].error, sizeof(info[3].error), "HTTP 404 from origin");
	o = keep(control_datasets_status_json(info));
	assert_string_equal(str(item(o, "title.crew"), "error"), "HTTP 404 from origin");
	assert_null_item(item(o, "title.akas"), "error");
}

static void test_status_cached_shows_etag_and_fetched_at(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	const cJSON *d;
	cJSON *o;

	(void)state;
	absent(info);
	info[0].state = DS_CACHED;
	info[0].cached = true;
	set_meta(&info[0].gz, 1000, 1761444000, "\"v1\"");
	o = keep(control_datasets_status_json(info));
	d = item(o, "name.basics");
	assert_string_equal(str(d, "etag"), "\"v1\"");
	assert_string_equal(str(d, "fetched_at"), "2023-11-14T22:13:20.250Z");
	d = item(o, "title.akas");
	assert_null_item(d, "etag");
	assert_null_item(d, "fetched_at");
}

/* ---- health ------------------------------------------------------------ */

static struct config sample_config(void)
{
	struct config cfg = {
	    .origin = "http://origin.test/",
	    .origin_shown = "http://origin.test/",
	    .cache_dir = "/var/cache/imdbfs",
	    .storage = STORAGE_LOCAL,
	    .container = "imdb-datasets",
	    .concurrency = 7,
	    .max_age = 86400,
	    .cafile = NULL,
	    .log_level = LOGL_INFO,
	};

	return cfg;
}

static void test_health_healthy_without_failures(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	struct config cfg = sample_config();
	cJSON *o;

	(void)state;
	absent(info);
	info[1].state = DS_DOWNLOADING;
	o = keep(control_health_json(info, &cfg, 1700000100.9, 1700000000.0));
	assert_string_equal(str(o, "status"), "healthy");
	assert_true(strlen(str(o, "message")) > 0);
	assert_string_equal(str(o, "version"), IMDBFS_VERSION);
	assert_string_equal(str(o, "timestamp"), "2023-11-14T22:15:00.900Z");
	assert_num(o, "uptime_s", 100);
	assert_string_equal(str(o, "storage"), "local");
	assert_string_equal(str(o, "origin"), "http://origin.test/");
	assert_true(cJSON_IsArray(item(o, "problems")));
	assert_int_equal(cJSON_GetArraySize(item(o, "problems")), 0);
}

static void test_health_degraded_names_failing_dataset(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	struct config cfg = sample_config();
	const cJSON *problems;
	const char *p;
	cJSON *o;

	(void)state;
	absent(info);
	info[3].state = DS_FAILED;
	snprintf(info[3].error, sizeof(info[3].error), "origin unreachable: connection refused");
	o = keep(control_health_json(info, &cfg, 1700000100.0, 1700000000.0));
	assert_string_equal(str(o, "status"), "degraded");
	problems = item(o, "problems");
	assert_int_equal(cJSON_GetArraySize(problems), 1);
	p = cJSON_GetStringValue(cJSON_GetArrayItem(problems, 0));
	assert_non_null(p);
	assert_non_null(strstr(p, "title.crew"));
	assert_non_null(strstr(p, "origin unreachable: connection refused"));
}

/* health's sizes: the .tsv.gz files whose size is not known, and the mount stays healthy. */
static void test_health_sizes_lists_the_unknown_without_degrading(void **state)
{
	struct dataset_info info[CATALOG_COUNT];
	struct config cfg = sample_config();
	const cJSON *sizes, *unknown;
	cJSON *o;

	(void)state;
	absent(info);
	for (int i = 0; i < CATALOG_COUNT; i++)
		info[i].size[KIND_GZ] = 1000 + i;
	info[2].size[KIND_GZ] = -1;
	o = keep(control_health_json(info, &cfg, 1700000100.0, 1700000000.0));
	assert_string_equal(str(o, "status"), "healthy");
	sizes = item(o, "sizes");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(sizes, "probing")));
	unknown = cJSON_GetObjectItemCaseSensitive(sizes, "unknown");
	assert_int_equal(cJSON_GetArraySize(unknown), 1);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(unknown, 0)),
			    catalog_file(2, KIND_GZ));
	/* No probe ran in this process: nothing to say why. */
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sizes, "errors")), 0);
}

/* ---- config ------------------------------------------------------------ */

static const char *secret_env(const char *name)
{
	static const struct {
		const char *name, *value;
	} env[] = {
	    {"AZURE_STORAGE_ACCOUNT_NAME", "myaccount"},
	    {"AZURE_STORAGE_ACCOUNT_KEY", "secretkey123"},
	    {"AZURE_STORAGE_CONNECTION_STRING",
	     "DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey=abc/def+ghi==;"
	     "EndpointSuffix=core.windows.net"},
	};

	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
		if (strcmp(env[i].name, name) == 0)
			return env[i].value;
	}
	return NULL;
}

static const char *empty_env(const char *name)
{
	(void)name;
	return NULL;
}

static void test_config_json_masks_secrets(void **state)
{
	struct config cfg = sample_config();
	const cJSON *creds;
	cJSON *o;
	char *text;

	(void)state;
	cfg.storage = STORAGE_AZURE;
	o = keep(control_config_json(&cfg, secret_env));
	text = kept_text = cJSON_PrintUnformatted(o);
	assert_non_null(text);
	assert_null(strstr(text, "secretkey123"));
	assert_null(strstr(text, "abc"));
	assert_null(strstr(text, "AccountKey="));
	assert_null(strstr(text, "DefaultEndpointsProtocol"));
	creds = item(o, "azure_credentials");
	assert_string_equal(str(creds, "AZURE_STORAGE_ACCOUNT_KEY"), "***");
	assert_string_equal(str(creds, "AZURE_STORAGE_CONNECTION_STRING"), "***");
	assert_null_item(creds, "AZURE_STORAGE_SAS_TOKEN");
}

static void test_config_json_shows_effective_settings(void **state)
{
	struct config cfg = sample_config();
	cJSON *o;

	(void)state;
	cfg.concurrency = 3;
	cfg.max_age = 60;
	cfg.log_level = LOGL_DEBUG;
	cfg.cafile = "/etc/ca.pem";
	o = keep(control_config_json(&cfg, empty_env));
	assert_string_equal(str(o, "origin"), "http://origin.test/");
	assert_string_equal(str(o, "cache_dir"), "/var/cache/imdbfs");
	assert_string_equal(str(o, "storage"), "local");
	assert_string_equal(str(o, "container"), "imdb-datasets");
	assert_num(o, "concurrency", 3);
	assert_num(o, "max_age", 60);
	assert_string_equal(str(o, "cafile"), "/etc/ca.pem");
	assert_string_equal(str(o, "log_level"), "debug");
	assert_null_item(item(o, "azure_credentials"), "AZURE_STORAGE_ACCOUNT_KEY");
	assert_null_item(item(o, "azure_credentials"), "AZURE_STORAGE_CONNECTION_STRING");
}

int test_control_json_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_files_lists_only_cached_and_extracted, free_kept),
	    cmocka_unit_test_teardown(test_files_empty_cache_lists_nothing, free_kept),
	    cmocka_unit_test_teardown(test_files_sizes_above_4gib_exact, free_kept),
	    cmocka_unit_test_teardown(test_files_size_mb_rounds_like_seed, free_kept),
	    cmocka_unit_test_teardown(test_status_has_seven_datasets_with_state_names, free_kept),
	    cmocka_unit_test_teardown(test_status_unknown_total_is_null_and_no_eta, free_kept),
	    cmocka_unit_test_teardown(test_status_eta_from_rate_and_remaining_bytes, free_kept),
	    cmocka_unit_test_teardown(test_status_eta_of_a_huge_length_at_a_trickle, free_kept),
	    cmocka_unit_test_teardown(test_status_error_null_when_empty_text_when_set, free_kept),
	    cmocka_unit_test_teardown(test_status_cached_shows_etag_and_fetched_at, free_kept),
	    cmocka_unit_test_teardown(test_health_healthy_without_failures, free_kept),
	    cmocka_unit_test_teardown(test_health_degraded_names_failing_dataset, free_kept),
	    cmocka_unit_test_teardown(test_health_sizes_lists_the_unknown_without_degrading,
				      free_kept),
	    cmocka_unit_test_teardown(test_config_json_masks_secrets, free_kept),
	    cmocka_unit_test_teardown(test_config_json_shows_effective_settings, free_kept),
	};

	return cmocka_run_group_tests_name("control_json", tests, NULL, NULL);
}
