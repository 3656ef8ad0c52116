/*
 * parking.h - requests parked on a list until they can be answered, each
 * answered exactly once. The list belongs to an owner (a feed, a dataset)
 * whose lock guards it and every entry's state; the owner decides when an
 * entry can be answered and what the answer is.
 *
 * The one rule: whoever takes an entry off the list answers it. The owner
 * takes the answerable ones (park_take_locked()) and, with its lock released,
 * calls their ready() (park_answer()); a canceller (an interrupt, a shutdown)
 * that gets true from park_cancel_locked() answers it itself. A cancel that
 * comes before the entry is parked marks it, and park_add_locked() then
 * refuses it, so an interrupt is never lost.
 *
 * Locking: every *_locked function runs under the owner's lock; ready() is
 * called with no lock held.
 */
#ifndef IMDBFS_PARKING_H
#define IMDBFS_PARKING_H

#include <stdbool.h>
#include <stdint.h>

/* An answer that is none yet: the entry stays parked (no byte count or -errno is this). */
#define PARK_WAIT INT64_MIN

struct park_entry {
	/* Called once, with no lock held, when the owner took the entry off its list. */
	void (*ready)(struct park_entry *e, int64_t answer);
	/* the rest is the owner's, guarded by its lock */
	struct park_entry *prev, *next;
	int state;
	int64_t answer;
};

struct park_list {
	struct park_entry *head; /* guarded by the owner's lock */
};

/* Makes e fresh; call before e can be seen by a canceller. */
void park_entry_init(struct park_entry *e, void (*ready)(struct park_entry *e, int64_t answer));

/* Parks e; false (and e is not parked) when a cancel came first. */
bool park_add_locked(struct park_list *l, struct park_entry *e);

/*
 * Takes e off l. true: it was parked and the caller now answers it. false: the
 * owner took it first (its ready() runs or has run), or it was not parked yet
 * and is now marked so that park_add_locked() refuses it.
 */
bool park_cancel_locked(struct park_list *l, struct park_entry *e);

/*
 * Takes off l every entry for which answer(e, ctx) is not PARK_WAIT (every
 * entry when answer is NULL, with ctx pointing to an int64_t answer), into a
 * list for park_answer(). answer() runs under the owner's lock and may act on
 * the entry's behalf (take references) since a non-PARK_WAIT answer takes it.
 */
struct park_entry *park_take_locked(struct park_list *l,
				    int64_t (*answer)(struct park_entry *e, void *ctx), void *ctx);

/* The entries park_take_locked() returned in taken, then those in more; returns the whole. */
struct park_entry *park_concat(struct park_entry *taken, struct park_entry *more);

/* Calls ready() of every entry park_take_locked() returned; no lock held. */
void park_answer(struct park_entry *taken);

#endif
