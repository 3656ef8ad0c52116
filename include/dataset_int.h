/*
 * dataset_int.h - what the parts of the state machine share: the registry
 * and readers (dataset.c), the transfers' lifecycle with the calls the
 * engines make (dataset_transfer.c), and the sizes known before a read with
 * their waiters (dataset_size.c). Nothing else includes it: together they
 * are the only code that takes a dataset's lock.
 */
#ifndef IMDBFS_DATASET_INT_H
#define IMDBFS_DATASET_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "dataset.h"
#include "meta.h"
#include "parking.h"

#define DATASET_POLL_NS (50 * 1000 * 1000) /* how often a timed wait checks a cancel */

struct fdshare;
struct park_entry;
struct transfer;

/*
 * One version of a data file (see dataset.h, "Versions"). Constant once
 * published, but for an arriving version's feed and mtime.
 */
struct dataset_version {
	atomic_long refs;    /* the dataset's while current, each inode's and reader's */
	atomic_long readers; /* among them the open readers' (dataset_open_start()) */
	/*
	 * Arriving only, set once under the dataset lock: the committed version
	 * its very bytes became (a reference), NULL if none. The same content
	 * under another object, whose readers hold this one too (open_old_locked()).
	 */
	struct dataset_version *committed_as;
	int ds;		      /* constant */
	enum file_kind kind;  /* constant */
	uint64_t gen;	      /* constant: the generation it is */
	struct fdshare *copy; /* constant: the committed copy; NULL for an arriving version */
	struct meta meta;     /* constant: the committed copy's metadata (with copy) */
	/*
	 * Arriving only, guarded by the dataset lock: the feed of the transfer
	 * bringing it, a reference (NULL until one is published). Replaced while
	 * the version is current (a transfer that starts over, a retry), frozen
	 * once its generation has moved on: the feed it was read through.
	 */
	struct feed *feed;
	int64_t
	    mtime; /* arriving only, guarded by the dataset lock: set when it stops being current */
};

struct dataset {
	int index;		/* constant */
	pthread_mutex_t lock;	/* error-checking: see dataset_held() */
	enum ds_state state;	/* guarded by lock; written only by dataset_set_state_locked() */
	pthread_cond_t changed; /* a transfer published a feed or ended */
	bool cached;		/* guarded by lock */
	bool extracted;		/* guarded by lock */
	bool failed;		/* guarded by lock: the last transfer failed */
	struct meta gz;		/* guarded by lock; valid when cached */
	struct meta tsv;	/* guarded by lock; valid when extracted */
	double checked_at;	/* guarded by lock: when gz was last known current */
	bool resume_pending;	/* guarded by lock: a partial download waits in the store */
	bool retrying;		/* guarded by lock: the download is backing off after a fault */
	uint64_t gen[2];	/* guarded by lock: per kind, see dataset_generation() */
	/*
	 * guarded by lock: per kind, the current version (a reference), of
	 * generation gen[kind]: the committed copy when cached (extracted),
	 * else the arriving version, or NULL until someone asks for it.
	 */
	struct dataset_version *cur[2];
	struct transfer *download;   /* guarded by lock; in flight or NULL */
	struct transfer *extract;    /* guarded by lock; in flight or NULL */
	char error[256];	     /* guarded by lock */
	struct park_list openers[2]; /* guarded by lock: per kind, opens parked */
	/*
	 * guarded by lock: the .tsv.gz version last announced without a copy
	 * (size -1 unknown, tsv_size -1 unknown), and by whom (enum
	 * dataset_source); see dataset_size.c.
	 */
	struct meta announced;
	int announced_by;
	struct park_list sizers[2]; /* guarded by lock: per kind, size waiters parked */
};

/* Who announced d->announced: a later source never gives way to an earlier one. */
enum dataset_source {
	DATASET_SOURCE_NONE,
	DATASET_SOURCE_PROBE,	 /* the HEAD or the container's metadata at mount */
	DATASET_SOURCE_TRANSFER, /* the response a download is reading, or its commit */
};

#ifndef NDEBUG
/*
 * True when the calling thread holds d->lock: an error-checking mutex
 * refuses to be locked twice by its owner (EDEADLK). For assert() only.
 */
static inline bool dataset_held(struct dataset *d)
{
	int rc = pthread_mutex_lock(&d->lock);

	if (rc == 0)
		pthread_mutex_unlock(&d->lock);
	return rc == EDEADLK;
}
#endif

/* ---- dataset.c ---- */

/* The dataset at catalog index ds. */
struct dataset *dataset_of(int ds);

/*
 * The one writer of d->state, called by every change of the fields it is
 * made of before the lock is released; asserts that the move is an edge of
 * the diagram in dataset.h. d->lock held.
 */
void dataset_set_state_locked(struct dataset *d);

/*
 * Makes v (a committed version, its reference taken over; NULL for none) the
 * current version of kind, of the next generation; d->lock held, and the
 * dataset's metadata still the old copy's. Returns the old current version,
 * a reference to put with no lock held (NULL when there was none).
 */
struct dataset_version *dataset_swap_version_locked(struct dataset *d, enum file_kind kind,
						    struct dataset_version *v,
						    const struct meta *m);

/* The feed that t publishes becomes its file's arriving version's, if it has one; d->lock held. */
void dataset_attach_feed_locked(struct dataset *d, enum file_kind kind, struct feed *f);

/* ---- dataset_version.c ---- */

/* A version of no generation yet holding copy (taken over on success; NULL: arriving). */
struct dataset_version *dataset_version_new(struct fdshare *copy);

/*
 * The opens and size waiters of d that can be answered now (all, with rc,
 * when rc is not 0), for park_answer(); d->lock held.
 */
struct park_entry *dataset_take_parked_locked(struct dataset *d, int rc);

/* Tells the kernel's invalidation that file's committed copy changed; no lock held. */
void dataset_notify_change(const char *file);

/* A new descriptor on fd's file (close-on-exec); -errno on failure. */
int dataset_dup_fd(int fd);

/* ---- dataset_size.c ---- */

/* dataset_size_known() of d; d->lock held. */
bool dataset_size_known_locked(struct dataset *d, enum file_kind kind, int64_t *size,
			       int64_t *mtime);

/* The size waiters of d that can be answered now (all, with rc, when rc is not 0). */
struct park_entry *dataset_take_sizers_locked(struct dataset *d, int rc);

/* ---- dataset_transfer.c ---- */

/*
 * Starts a transfer of kind for d; d->lock held. The dataset and the thread
 * each hold a reference. NULL when no thread could be started.
 */
struct transfer *dataset_start_locked(struct dataset *d, enum file_kind kind, bool force);

/* Drops one reference on t; t->ds->lock held. */
void dataset_put_locked(struct transfer *t);

/* From now on no transfer thread starts (shutdown). */
void dataset_transfers_refuse(void);

/* Waits, bounded, for every transfer thread to end. */
void dataset_transfers_wait(void);

#endif
