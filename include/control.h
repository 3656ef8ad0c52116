/*
 * control.h - the .control/ directory: JSON status files rendered on open,
 * and command files whose writes are parsed here and handed to job.h.
 *
 * Rendering is split in two: pure functions that turn snapshots into JSON
 * (unit-tested), and control_render(), which takes the snapshots and calls
 * them. A malformed command is refused with -EINVAL before anything starts;
 * its reason is kept for .control/status ("command_error").
 *
 * Locking: ctl_lock (internal) guards the last command error only.
 */
#ifndef IMDBFS_CONTROL_H
#define IMDBFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "dataset.h"
#include "job.h"

struct cJSON;
struct config;
struct store;

enum control_file {
	CTL_HEALTH,
	CTL_DATASETS,
	CTL_FILES,
	CTL_STATUS,
	CTL_CONFIG,
	CTL_METRICS,
	CTL_DOWNLOAD,
	CTL_EXTRACT,
	CTL_FULL_PROCESS,
	CTL_DELETE,
	CTL_COUNT
};

#define CONTROL_DIR	  ".control"
#define CONTROL_MAX_WRITE 4096

/* Keeps what the renderers need; both must outlive the mount. */
void control_init(const struct config *cfg, struct store *store, double mounted_at);

/* The file's id for a name inside .control/, or -ENOENT. */
int control_lookup(const char *name);

const char *control_name(enum control_file id);

/* Command files take writes; the others are read-only. */
bool control_is_command(enum control_file id);

/* Renders the file's current content; *out is owned by the caller. 0 or -ENOMEM. */
int control_render(enum control_file id, char **out, size_t *len);

/* Carries out a command written to a command file. 0, -EINVAL, -EBUSY or -ENOMEM. */
int control_write(enum control_file id, const char *buf, size_t len);

/*
 * Parses one command line for cmd: "all" or dataset names separated by
 * spaces or commas, optionally ending in "force" (download, full-process).
 * 0, or -EINVAL with the reason in err.
 */
int control_parse_command(enum job_command cmd, const char *buf, size_t len, struct command *out,
			  char *err, size_t errlen);

/* Pure renderers; each returns a new object owned by the caller, NULL on ENOMEM. */
struct cJSON *control_files_json(const struct dataset_info info[CATALOG_COUNT],
				 const char *directory);
struct cJSON *control_datasets_status_json(const struct dataset_info info[CATALOG_COUNT]);
struct cJSON *control_health_json(const struct dataset_info info[CATALOG_COUNT],
				  const struct config *cfg, double now, double mounted_at);
struct cJSON *control_config_json(const struct config *cfg, const char *(*env)(const char *));

#endif
