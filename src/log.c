/* log.c - see log.h */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "clock.h"

/* Written once by log_init() before threads exist; read-only after. */
static enum log_level max_level = LOGL_INFO;
static bool to_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(enum log_level level, bool use_syslog)
{
	max_level = level;
	to_syslog = use_syslog;
	if (use_syslog)
		openlog("imdbfs", LOG_PID, LOG_DAEMON);
}

int log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOGL_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	return level_names[level];
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *const tags[] = {"ERROR", "WARN", "INFO", "DEBUG"};
	char line[1024];
	char stamp[32];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (to_syslog) {
		syslog(priorities[level], "%s", line);
		return;
	}
	clock_iso8601(clock_wall(), stamp, sizeof(stamp));
	fprintf(stderr, "%s %s %s\n", stamp, tags[level], line);
}
