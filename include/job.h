/*
 * job.h - the commands written to .control/ (download, extract,
 * full-process, delete) and the jobs that carry them out.
 *
 * Each accepted command becomes a job with its own thread; the write that
 * submitted it returns at once. A job starts or joins per-dataset transfers
 * (dataset.h) and records its result in the seed's JSON shape as each
 * dataset completes, so reading the command file shows progress and then the
 * outcome. delete is immediate and runs in the writer's thread.
 *
 * Locking: jobs_lock guards the job history, every job's result object and
 * the running count. It is never held while waiting on a transfer.
 */
#ifndef IMDBFS_JOB_H
#define IMDBFS_JOB_H

#include <stdbool.h>

struct cJSON;

enum job_command { CMD_DOWNLOAD, CMD_EXTRACT, CMD_FULL_PROCESS, CMD_DELETE, CMD_COUNT };

#define JOBS_MAX_RUNNING 8

/* A parsed command: which datasets (bit i for dataset i) and how. */
struct command {
	enum job_command cmd;
	unsigned mask;
	bool force;
	bool scheduled; /* submitted by schedule.h rather than written by a user */
};

const char *job_command_name(enum job_command cmd);

/* Starts a job for c; text is the command as written, for status. 0 or -EBUSY/-ENOMEM. */
int jobs_submit(const struct command *c, const char *text);

/* The latest result for a command file as JSON text; the caller frees. NULL on ENOMEM. */
char *jobs_result(enum job_command cmd);

/* Adds "job", "jobs" and "jobs_running" to a status object. 0 or -ENOMEM. */
int jobs_add_status(struct cJSON *status);

/* Jobs still running. */
int jobs_running(void);

/* Waits (bounded) for job threads to end; call after datasets_shutdown(). */
void jobs_shutdown(void);

#endif
