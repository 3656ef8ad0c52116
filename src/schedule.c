/* schedule.c - see schedule.h */
#include "schedule.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "clock.h"
#include "config.h"
#include "job.h"
#include "log.h"

#define DAY_S 86400.0

static pthread_mutex_t sched_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sched_wake = PTHREAD_COND_INITIALIZER;
static pthread_t sched_thread;
/* Written in the FUSE init and destroy callbacks, before and after every request. */
static bool started;
static int at_minute = -1;    /* constant while the thread runs */
static long every;	      /* constant while the thread runs */
static bool stopping;	      /* guarded by sched_lock */
static double next_due;	      /* guarded by sched_lock */
static double last_run;	      /* guarded by sched_lock; 0 before the first */
static unsigned runs;	      /* guarded by sched_lock */
static char last_outcome[96]; /* guarded by sched_lock */

double schedule_next_due(double after, int minute, long seconds, double base)
{
	double at = 0, next_every = 0;

	if (minute >= 0) {
		at = floor(after / DAY_S) * DAY_S + minute * 60.0;
		if (at <= after)
			at += DAY_S;
	}
	if (seconds > 0) {
		next_every = base + (double)seconds;
		if (next_every <= after) /* late (a suspended machine): at once, then re-based */
			next_every = after;
	}
	if (at && next_every)
		return at < next_every ? at : next_every;
	return at ? at : next_every;
}

/* Submits the refresh; the outcome goes to status. */
static void fire(double now)
{
	struct command c = {
	    .cmd = CMD_DOWNLOAD, .mask = (1u << CATALOG_COUNT) - 1, .scheduled = true};
	int rc = jobs_submit(&c, "all");

	pthread_mutex_lock(&sched_lock);
	last_run = now;
	runs++;
	if (rc)
		snprintf(last_outcome, sizeof(last_outcome), "not started: %s", strerror(-rc));
	else
		snprintf(last_outcome, sizeof(last_outcome), "started");
	next_due = schedule_next_due(now, at_minute, every, now);
	pthread_mutex_unlock(&sched_lock);
	if (rc)
		log_warn("scheduled refresh not started: %s", strerror(-rc));
}

static void *sched_main(void *arg)
{
	struct timespec ts;
	double due, now;

	(void)arg;
	pthread_mutex_lock(&sched_lock);
	while (!stopping) {
		due = next_due;
		ts.tv_sec = (time_t)due;
		ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
		pthread_cond_timedwait(&sched_wake, &sched_lock, &ts);
		now = clock_wall();
		if (stopping || now < due)
			continue;
		pthread_mutex_unlock(&sched_lock);
		log_info("scheduled refresh of all datasets");
		fire(now);
		pthread_mutex_lock(&sched_lock);
	}
	pthread_mutex_unlock(&sched_lock);
	return NULL;
}

int schedule_start(const struct config *cfg)
{
	double now = clock_wall();
	int rc;

	if (cfg->refresh_at < 0 && cfg->refresh_every <= 0)
		return 0;
	at_minute = cfg->refresh_at;
	every = cfg->refresh_every;
	pthread_mutex_lock(&sched_lock);
	stopping = false;
	next_due = schedule_next_due(now, at_minute, every, now);
	pthread_mutex_unlock(&sched_lock);
	/* pthread_cond_timedwait() measures CLOCK_REALTIME: HH:MM is wall time. */
	rc = pthread_create(&sched_thread, NULL, sched_main, NULL);
	if (rc) {
		log_error("cannot start the refresh schedule: %s", strerror(rc));
		return -rc;
	}
	started = true;
	return 0;
}

void schedule_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&sched_lock);
	stopping = true;
	pthread_cond_broadcast(&sched_wake);
	pthread_mutex_unlock(&sched_lock);
	pthread_join(sched_thread, NULL);
	started = false;
}

static void add_time(cJSON *o, const char *name, double t)
{
	char stamp[32];

	if (!t) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	clock_iso8601(t, stamp, sizeof(stamp));
	cJSON_AddStringToObject(o, name, stamp);
}

int schedule_add_status(cJSON *status)
{
	cJSON *o;

	if (!started)
		return cJSON_AddNullToObject(status, "schedule") ? 0 : -ENOMEM;
	o = cJSON_AddObjectToObject(status, "schedule");
	if (!o)
		return -ENOMEM;
	pthread_mutex_lock(&sched_lock);
	add_time(o, "next_at", next_due);
	add_time(o, "last_at", last_run);
	cJSON_AddNumberToObject(o, "runs", runs);
	if (runs)
		cJSON_AddStringToObject(o, "last_outcome", last_outcome);
	else
		cJSON_AddNullToObject(o, "last_outcome");
	pthread_mutex_unlock(&sched_lock);
	return 0;
}
