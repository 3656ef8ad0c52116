/*
 * schedule.h - refresh without cron: with refresh_at=HH:MM (UTC, daily)
 * and/or refresh_every=SECONDS, a thread submits a conditional "download all"
 * job at each due time, exactly as `echo all > .control/download` would
 * (transfers already running are joined, unchanged files cost one 304).
 *
 * The next due time is computed by schedule_next_due(), a pure function.
 *
 * Locking: sched_lock (internal) guards the due times, the run count, the
 * last run's outcome and the stop flag.
 */
#ifndef IMDBFS_SCHEDULE_H
#define IMDBFS_SCHEDULE_H

#include <stdbool.h>

struct cJSON;
struct config;

/*
 * The first due time after `after` (epoch seconds): the next HH:MM UTC for
 * at_minute (minutes past midnight; -1 when off), or every_base + every
 * seconds (every 0 when off), whichever comes first. 0 when both are off.
 */
double schedule_next_due(double after, int at_minute, long every, double every_base);

/* Starts the thread when cfg asks for a schedule; 0 or -errno. */
int schedule_start(const struct config *cfg);

/* Stops and joins the thread, if any. */
void schedule_stop(void);

/* Adds "schedule" to a status object: null when off. 0 or -ENOMEM. */
int schedule_add_status(struct cJSON *status);

#endif
