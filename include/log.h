/*
 * log.h - leveled logging: one line per event, to stderr in the foreground
 * and to syslog when daemonized. Never exits, never allocates.
 *
 * The level and the destination are set once by log_init() before any
 * thread starts and are read-only afterwards.
 */
#ifndef IMDBFS_LOG_H
#define IMDBFS_LOG_H

#include <stdbool.h>

enum log_level { LOGL_ERROR, LOGL_WARN, LOGL_INFO, LOGL_DEBUG };

void log_init(enum log_level level, bool use_syslog);

/* Parses "error", "warn", "info" or "debug"; 0 or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);

const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOGL_DEBUG, __VA_ARGS__)

#endif
