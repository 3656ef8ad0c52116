/*
 * secret_env.h - the environment variables that carry secrets (the Azure
 * credentials): whether one is set, and their removal once read.
 *
 * secret_env_scrub() overwrites each value in place before unsetting it:
 * /proc/PID/environ shows the bytes of the initial environment, which
 * unsetenv() alone leaves, and children (fusermount3, which the mount runs)
 * inherit environ. Not thread-safe: main calls it before any thread starts.
 */
#ifndef IMDBFS_SECRET_ENV_H
#define IMDBFS_SECRET_ENV_H

#include <stddef.h>

#define SECRET_ENV_COUNT 3
/* AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN. */
extern const char *const secret_env_names[SECRET_ENV_COUNT];

/* Whether env (getenv, or a table in tests) has one of them set and not empty. */
int secret_env_any(const char *(*env)(const char *name));

/* Wipes and unsets each of them in the process's environment. */
void secret_env_scrub(void);

#endif
