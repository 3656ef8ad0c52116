/* job.c - see job.h */
#include "job.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "clock.h"
#include "dataset.h"
#include "json.h"
#include "log.h"
#include "replicate.h"
#include "store_azure.h"

#define JOB_HISTORY	16
#define SHUTDOWN_WAIT_S 15

struct job {
	unsigned id;	  /* constant */
	struct command c; /* constant */
	char text[128];	  /* constant: the command as written */
	double started;	  /* constant */
	double finished;  /* guarded by jobs_lock */
	bool running;	  /* guarded by jobs_lock */
	bool failed;	  /* guarded by jobs_lock */
	bool in_history;  /* guarded by jobs_lock; freed when neither flag holds */
	cJSON *result;	  /* guarded by jobs_lock */
	/* Downloads started before the command's write returns; the job thread's. */
	struct transfer *queued[CATALOG_COUNT];
};

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jobs_idle = PTHREAD_COND_INITIALIZER;
static struct job *history[JOB_HISTORY]; /* guarded by jobs_lock; by id modulo size */
static struct job *latest[CMD_COUNT];	 /* guarded by jobs_lock */
static unsigned next_id = 1;		 /* guarded by jobs_lock */
static int running;			 /* guarded by jobs_lock */

static const char *const command_names[CMD_COUNT] = {"download", "extract", "full-process",
						     "delete"};

const char *job_command_name(enum job_command cmd)
{
	return command_names[cmd];
}

static void free_job_locked(struct job *j)
{
	if (!j || j->running || j->in_history)
		return;
	for (int i = 0; i < CMD_COUNT; i++) {
		if (latest[i] == j)
			return; /* still the answer to a read of its command file */
	}
	cJSON_Delete(j->result);
	free(j);
}

/* ---- results in the seed's shapes ------------------------------------------ */

static cJSON *add_array(cJSON *o, const char *name)
{
	return cJSON_AddArrayToObject(o, name);
}

static cJSON *new_download_result(void)
{
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddStringToObject(o, "message", "Download in progress") ||
	    !add_array(o, "downloaded_files") || !add_array(o, "unchanged_files") ||
	    !add_array(o, "failed_downloads") || !cJSON_AddNumberToObject(o, "total_files", 0) ||
	    !cJSON_AddNumberToObject(o, "successful_downloads", 0)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *new_extract_result(void)
{
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddStringToObject(o, "message", "Extraction in progress") ||
	    !add_array(o, "extracted_files") || !add_array(o, "failed_extractions") ||
	    !cJSON_AddNumberToObject(o, "total_files", 0) ||
	    !cJSON_AddNumberToObject(o, "successful_extractions", 0)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *new_result(enum job_command cmd)
{
	cJSON *o, *dl, *ex;

	switch (cmd) {
	case CMD_DOWNLOAD:
		return new_download_result();
	case CMD_EXTRACT:
		return new_extract_result();
	case CMD_FULL_PROCESS:
		o = cJSON_CreateObject();
		dl = new_download_result();
		ex = new_extract_result();
		if (!o || !dl || !ex ||
		    !cJSON_AddStringToObject(o, "message", "Full data processing in progress")) {
			cJSON_Delete(o), cJSON_Delete(dl), cJSON_Delete(ex);
			return NULL;
		}
		cJSON_AddItemToObject(o, "download", dl);
		cJSON_AddItemToObject(o, "extract", ex);
		return o;
	case CMD_DELETE:
		o = cJSON_CreateObject();
		if (!o || !cJSON_AddStringToObject(o, "message", "Deletion in progress") ||
		    !add_array(o, "deleted_files") ||
		    !cJSON_AddNumberToObject(o, "total_deleted", 0)) {
			cJSON_Delete(o);
			return NULL;
		}
		return o;
	default:
		return NULL;
	}
}

static void set_number(cJSON *o, const char *name, double v)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(o, name);

	if (n)
		cJSON_SetNumberValue(n, v);
}

static void bump(cJSON *o, const char *name)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(o, name);

	if (n)
		cJSON_SetNumberValue(n, n->valuedouble + 1);
}

static void set_message(cJSON *o, const char *text)
{
	cJSON_ReplaceItemInObjectCaseSensitive(o, "message", cJSON_CreateString(text));
}

static void append_name(cJSON *o, const char *array, const char *name)
{
	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, array), cJSON_CreateString(name));
}

static void append_failure(cJSON *o, const char *array, const char *file, const char *error)
{
	cJSON *f = cJSON_CreateObject();

	if (!f)
		return;
	cJSON_AddStringToObject(f, "file", file);
	cJSON_AddStringToObject(f, "error", error);
	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, array), f);
}

static int count(unsigned mask)
{
	return __builtin_popcount(mask);
}

/* ---- running jobs -------------------------------------------------------------- */

static void record_download(struct job *j, cJSON *res, int ds, const struct dataset_result *r)
{
	const char *file = catalog_file(ds, KIND_GZ);

	pthread_mutex_lock(&jobs_lock);
	if (r->err) {
		append_failure(res, "failed_downloads", file, r->error);
		j->failed = true;
	} else {
		append_name(res, r->changed ? "downloaded_files" : "unchanged_files", file);
		bump(res, "successful_downloads");
	}
	pthread_mutex_unlock(&jobs_lock);
}

/* Downloads every dataset in mask at once; returns the mask of those now cached. */
/*
 * Queued before the write of the command returns, so that whoever reads the
 * status right after it sees the datasets queued, never still "cached".
 */
static void start_downloads(struct job *j)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (j->c.mask & (1u << i))
			j->queued[i] = dataset_download(i, j->c.force);
	}
}

static unsigned run_download(struct job *j, cJSON *res, unsigned mask)
{
	struct dataset_result r;
	unsigned ok = 0;

	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (j->queued[i]) {
			dataset_wait(j->queued[i], &r);
			j->queued[i] = NULL;
		} else {
			r = (struct dataset_result){.err = -ENOMEM};
			snprintf(r.error, sizeof(r.error), "cannot start the download");
		}
		record_download(j, res, i, &r);
		if (!r.err)
			ok |= 1u << i;
	}
	pthread_mutex_lock(&jobs_lock);
	set_message(res, ok == mask ? "Download completed"
			 : ok	    ? "Download completed with errors"
				    : "Download failed");
	pthread_mutex_unlock(&jobs_lock);
	return ok;
}

static void record_extract(struct job *j, cJSON *res, int ds, const struct dataset_result *r)
{
	const char *file = catalog_file(ds, KIND_TSV);

	pthread_mutex_lock(&jobs_lock);
	if (r->err) {
		append_failure(res, "failed_extractions", file, r->error);
		j->failed = true;
	} else {
		append_name(res, "extracted_files", file);
		bump(res, "successful_extractions");
	}
	pthread_mutex_unlock(&jobs_lock);
}

/* A dataset can be extracted when its download is cached or on its way. */
static bool extractable(int ds)
{
	struct dataset_info info;

	dataset_info(ds, &info);
	return info.cached || info.state == DS_QUEUED || info.state == DS_DOWNLOADING ||
	       info.state == DS_VERIFYING;
}

static void run_extract(struct job *j, cJSON *res, unsigned mask)
{
	struct transfer *t[CATALOG_COUNT] = {0};
	struct dataset_result r;
	bool started[CATALOG_COUNT] = {0};
	unsigned ok = 0;

	for (int i = 0; i < CATALOG_COUNT; i++) {
		if ((mask & (1u << i)) && extractable(i)) {
			t[i] = dataset_extract(i);
			started[i] = true;
		}
	}
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (!(mask & (1u << i)))
			continue;
		if (t[i]) {
			dataset_wait(t[i], &r);
		} else {
			r = (struct dataset_result){.err = -ENOENT};
			snprintf(r.error, sizeof(r.error), "%s",
				 started[i] ? "cannot start the extraction"
					    : "not downloaded: write its name to .control/download "
					      "first");
		}
		record_extract(j, res, i, &r);
		if (!r.err)
			ok |= 1u << i;
	}
	pthread_mutex_lock(&jobs_lock);
	set_message(res, ok == mask ? "Extraction completed"
			 : ok	    ? "Extraction completed with errors"
				    : "Extraction failed");
	pthread_mutex_unlock(&jobs_lock);
}

static void run_full_process(struct job *j, cJSON *res)
{
	cJSON *dl = cJSON_GetObjectItemCaseSensitive(res, "download");
	cJSON *ex = cJSON_GetObjectItemCaseSensitive(res, "extract");
	unsigned ok = run_download(j, dl, j->c.mask);

	pthread_mutex_lock(&jobs_lock);
	set_number(ex, "total_files", count(ok));
	pthread_mutex_unlock(&jobs_lock);
	run_extract(j, ex, ok);
	pthread_mutex_lock(&jobs_lock);
	set_message(res, j->failed ? "Full data processing completed with errors"
				   : "Full data processing completed");
	pthread_mutex_unlock(&jobs_lock);
}

/* As the seed's DELETE /files: the container's copies go too (rm evicts only the local ones). */
static int delete_from_container(int ds)
{
	char err[256];
	int removed = 0;

	if (!store_azure_enabled())
		return 0;
	for (int k = KIND_GZ; k <= KIND_TSV; k++) {
		replicate_cancel(catalog_file(ds, (enum file_kind)k)); /* or it comes back */
		int rc = store_azure_delete(catalog_file(ds, (enum file_kind)k), err, sizeof(err));
		if (rc == 0)
			removed |= 1 << k;
		else if (rc != -ENOENT)
			log_error("delete: %s", err);
	}
	return removed;
}

static void run_delete(struct job *j, cJSON *res)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (!(j->c.mask & (1u << i)))
			continue;
		int removed = dataset_evict(i, KIND_GZ) | delete_from_container(i);
		pthread_mutex_lock(&jobs_lock);
		for (int k = KIND_GZ; k <= KIND_TSV; k++) {
			if (removed & (1 << k)) {
				append_name(res, "deleted_files",
					    catalog_file(i, (enum file_kind)k));
				bump(res, "total_deleted");
			}
		}
		pthread_mutex_unlock(&jobs_lock);
	}
	pthread_mutex_lock(&jobs_lock);
	set_message(res, j->c.mask == (1u << CATALOG_COUNT) - 1 ? "All files deleted successfully"
								: "Files deleted successfully");
	pthread_mutex_unlock(&jobs_lock);
}

static void finish_job(struct job *j)
{
	pthread_mutex_lock(&jobs_lock);
	j->running = false;
	j->finished = clock_wall();
	running--;
	log_info("job %u (%s %s) %s in %.1f s", j->id, job_command_name(j->c.cmd), j->text,
		 j->failed ? "failed" : "succeeded", j->finished - j->started);
	pthread_cond_broadcast(&jobs_idle);
	free_job_locked(j);
	pthread_mutex_unlock(&jobs_lock);
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	switch (j->c.cmd) {
	case CMD_DOWNLOAD:
		run_download(j, j->result, j->c.mask);
		break;
	case CMD_EXTRACT:
		run_extract(j, j->result, j->c.mask);
		break;
	case CMD_FULL_PROCESS:
		run_full_process(j, j->result);
		break;
	default:
		break;
	}
	finish_job(j);
	return NULL;
}

static struct job *new_job(const struct command *c, const char *text)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->result = new_result(c->cmd);
	if (!j->result) {
		free(j);
		return NULL;
	}
	j->c = *c;
	snprintf(j->text, sizeof(j->text), "%s", text);
	j->started = clock_wall();
	j->running = true;
	j->in_history = true;
	set_number(j->result, "total_files", count(c->mask));
	if (c->cmd == CMD_FULL_PROCESS)
		set_number(cJSON_GetObjectItemCaseSensitive(j->result, "download"), "total_files",
			   count(c->mask));
	return j;
}

/* Makes j the newest job; jobs_lock held. */
static void enter_history_locked(struct job *j)
{
	struct job **slot;
	struct job *old, *prev;

	j->id = next_id++;
	slot = &history[j->id % JOB_HISTORY];
	old = *slot;
	*slot = j;
	prev = latest[j->c.cmd];
	latest[j->c.cmd] = j;
	running++;
	if (old) {
		old->in_history = false;
		free_job_locked(old);
	}
	if (prev && prev != old)
		free_job_locked(prev);
}

int jobs_submit(const struct command *c, const char *text)
{
	pthread_attr_t attr;
	pthread_t th;
	struct job *j;
	int rc;

	pthread_mutex_lock(&jobs_lock);
	if (running >= JOBS_MAX_RUNNING) {
		pthread_mutex_unlock(&jobs_lock);
		return -EBUSY;
	}
	j = new_job(c, text);
	if (!j) {
		pthread_mutex_unlock(&jobs_lock);
		return -ENOMEM;
	}
	enter_history_locked(j);
	pthread_mutex_unlock(&jobs_lock);
	log_info("job %u: %s %s", j->id, job_command_name(c->cmd), text);
	if (c->cmd == CMD_DELETE) {
		run_delete(j, j->result);
		finish_job(j);
		return 0;
	}
	if (c->cmd == CMD_DOWNLOAD || c->cmd == CMD_FULL_PROCESS)
		start_downloads(j);
	rc = pthread_attr_init(&attr);
	if (!rc) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = pthread_create(&th, &attr, job_main, j);
		pthread_attr_destroy(&attr);
	}
	if (rc) {
		/* The downloads are under way: the writer waits for the job instead. */
		log_warn("job %u: no thread (%s); running it in the writer", j->id, strerror(rc));
		job_main(j);
	}
	return 0;
}

static cJSON *job_json_locked(const struct job *j)
{
	cJSON *o = cJSON_CreateObject();
	char stamp[32];

	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "id", j->id);
	cJSON_AddStringToObject(o, "command", job_command_name(j->c.cmd));
	cJSON_AddStringToObject(o, "args", j->text);
	cJSON_AddStringToObject(o, "trigger", j->c.scheduled ? "schedule" : "command");
	cJSON_AddStringToObject(o, "state",
				j->running  ? "running"
				: j->failed ? "failed"
					    : "succeeded");
	clock_iso8601(j->started, stamp, sizeof(stamp));
	cJSON_AddStringToObject(o, "started_at", stamp);
	if (j->running) {
		cJSON_AddNullToObject(o, "finished_at");
	} else {
		clock_iso8601(j->finished, stamp, sizeof(stamp));
		cJSON_AddStringToObject(o, "finished_at", stamp);
	}
	return o;
}

char *jobs_result(enum job_command cmd)
{
	cJSON *o;

	pthread_mutex_lock(&jobs_lock);
	if (latest[cmd]) {
		o = cJSON_Duplicate(latest[cmd]->result, 1);
		if (o)
			cJSON_AddItemToObject(o, "job", job_json_locked(latest[cmd]));
	} else {
		o = new_result(cmd);
		if (o)
			set_message(o, "No job has run yet");
	}
	pthread_mutex_unlock(&jobs_lock);
	return json_print_line(o);
}

int jobs_add_status(cJSON *status)
{
	cJSON *list = cJSON_AddArrayToObject(status, "jobs");
	struct job *newest = NULL;

	if (!list)
		return -ENOMEM;
	pthread_mutex_lock(&jobs_lock);
	for (unsigned id = next_id > JOB_HISTORY ? next_id - JOB_HISTORY : 1; id < next_id; id++) {
		struct job *j = history[id % JOB_HISTORY];
		if (j && j->id == id) {
			cJSON_AddItemToArray(list, job_json_locked(j));
			newest = j;
		}
	}
	if (newest)
		cJSON_AddItemToObject(status, "job", job_json_locked(newest));
	else
		cJSON_AddNullToObject(status, "job");
	cJSON_AddNumberToObject(status, "jobs_running", running);
	pthread_mutex_unlock(&jobs_lock);
	return 0;
}

int jobs_running(void)
{
	int n;

	pthread_mutex_lock(&jobs_lock);
	n = running;
	pthread_mutex_unlock(&jobs_lock);
	return n;
}

void jobs_shutdown(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += SHUTDOWN_WAIT_S;
	pthread_mutex_lock(&jobs_lock);
	while (running > 0) {
		if (pthread_cond_timedwait(&jobs_idle, &jobs_lock, &ts) != 0)
			break;
	}
	pthread_mutex_unlock(&jobs_lock);
}
