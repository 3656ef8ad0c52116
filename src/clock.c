/* clock.c - see clock.h */
#include "clock.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

double clock_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double clock_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void clock_deadline(int id, struct timespec *ts, long ns)
{
	clock_gettime((clockid_t)id, ts);
	ts->tv_sec += ns / 1000000000L;
	ts->tv_nsec += ns % 1000000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void clock_iso8601(double t, char *buf, size_t len)
{
	long long total_ms = llround(t * 1000.0);
	time_t secs = (time_t)(total_ms / 1000);
	int ms = (int)(total_ms % 1000);
	struct tm tm;

	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}
