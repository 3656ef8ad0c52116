/*
 * clock.h - wall and monotonic time, and the one ISO-8601 rendering every
 * JSON file and log line uses ("2026-11-26T12:00:00.123Z", always UTC).
 */
#ifndef IMDBFS_CLOCK_H
#define IMDBFS_CLOCK_H

#include <stddef.h>
#include <time.h>

/* Seconds since the epoch, with sub-second precision. */
double clock_wall(void);

/* Seconds on a monotonic clock: for rates, timeouts and backoff. */
double clock_mono(void);

/* Fills *ts with the time ns nanoseconds from now on clock id, for timed waits. */
void clock_deadline(int id, struct timespec *ts, long ns);

/* Writes t (epoch seconds) as ISO-8601 UTC with milliseconds; buf needs 32 bytes. */
void clock_iso8601(double t, char *buf, size_t len);

#endif
