/*
 * notify.c - see notify.h. Entry invalidations go through one thread of
 * their own: the kernel takes the root's lock for them, and whoever holds
 * that lock (an unlink, an O_CREAT open) may be waiting for a request that
 * only progresses once the thread that changed the file moves on. Requests
 * are idempotent, so a set of pending slots is the whole queue.
 *
 * Locking: notify_lock guards the pending set and the stop flag.
 */
#define FUSE_USE_VERSION 312
#include "notify.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "catalog.h"
#include "log.h"

static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t notify_wake = PTHREAD_COND_INITIALIZER;
static unsigned notify_pending; /* guarded by notify_lock: bit per slot */
static bool notify_stop;	/* guarded by notify_lock */
static bool notify_running;	/* written before the loop starts and after it ends */
static pthread_t notify_thread;

static void *notify_main(void *arg)
{
	struct fuse_session *se = arg;
	unsigned pending;

	pthread_mutex_lock(&notify_lock);
	while (!notify_stop) {
		if (!notify_pending) {
			pthread_cond_wait(&notify_wake, &notify_lock);
			continue;
		}
		pending = notify_pending;
		notify_pending = 0;
		pthread_mutex_unlock(&notify_lock);
		for (int slot = 0; slot < 2 * CATALOG_COUNT; slot++) {
			const char *file = catalog_file(slot / 2, (enum file_kind)(slot % 2));
			int rc;
			if (!(pending & (1u << slot)))
				continue;
			rc = fuse_lowlevel_notify_inval_entry(se, FUSE_ROOT_ID, file, strlen(file));
			if (rc && rc != -ENOENT)
				log_debug("invalidate %s: %s", file, strerror(-rc));
		}
		pthread_mutex_lock(&notify_lock);
	}
	pthread_mutex_unlock(&notify_lock);
	return NULL;
}

void notify_start(struct fuse_session *se)
{
	int rc = pthread_create(&notify_thread, NULL, notify_main, se);

	if (rc)
		log_warn("no invalidation thread (%s): names follow new versions within the entry "
			 "timeout",
			 strerror(rc));
	notify_running = rc == 0;
}

void notify_end(void)
{
	if (!notify_running)
		return;
	pthread_mutex_lock(&notify_lock);
	notify_stop = true;
	pthread_cond_signal(&notify_wake);
	pthread_mutex_unlock(&notify_lock);
	pthread_join(notify_thread, NULL);
	notify_running = false;
}

void notify_file_changed(const char *file)
{
	enum file_kind kind;
	int ds, slot;

	if (catalog_lookup_file(file, &ds, &kind))
		return;
	slot = ds * 2 + (int)kind;
	pthread_mutex_lock(&notify_lock);
	notify_pending |= 1u << slot;
	pthread_cond_signal(&notify_wake);
	pthread_mutex_unlock(&notify_lock);
}
