/*
 * dataset_version.c - one version of a data file as a refcounted object (see
 * dataset.h, "Versions"): its creation, its references, its end.
 *
 * A committed version is immutable from the moment the dataset publishes it
 * (dataset_swap_version_locked()); an arriving one has one field that moves,
 * its feed, guarded by its dataset's lock. The reference count is atomic: the
 * last put may come from any thread with no lock held, and by then nothing
 * else can reach the object (the dataset holds a reference on its current
 * version, inodes and readers hold theirs).
 */
#include "dataset.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "dataset_engine.h"
#include "dataset_int.h"
#include "fdshare.h"
#include "feed.h"

struct dataset_version *dataset_version_new(struct fdshare *copy)
{
	struct dataset_version *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	atomic_init(&v->refs, 1);
	atomic_init(&v->readers, 0);
	v->copy = copy;
	return v;
}

struct dataset_version *dataset_version_dup(int fd, int *rc)
{
	struct dataset_version *v;
	struct fdshare *s;
	int copy = dataset_dup_fd(fd);

	if (copy < 0) {
		*rc = copy;
		return NULL;
	}
	if (!(s = fdshare_new(copy))) {
		close(copy);
		*rc = -ENOMEM;
		return NULL;
	}
	if (!(v = dataset_version_new(s))) {
		fdshare_put(s);
		*rc = -ENOMEM;
	}
	return v;
}

struct dataset_version *dataset_version_get(struct dataset_version *v)
{
	long before = atomic_fetch_add(&v->refs, 1);

	assert(before > 0); /* the caller holds one */
	(void)before;
	return v;
}

void dataset_version_put(struct dataset_version *v)
{
	long before;

	if (!v)
		return;
	before = atomic_fetch_sub(&v->refs, 1);
	assert(before > 0);
	if (before > 1)
		return;
	fdshare_put(v->copy);
	feed_unref(v->feed);
	dataset_version_put(v->committed_as);
	free(v);
}

uint64_t dataset_version_gen(const struct dataset_version *v)
{
	return v->gen;
}

bool dataset_version_committed(const struct dataset_version *v)
{
	return v->copy != NULL; /* constant */
}
