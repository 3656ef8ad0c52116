/* parking.c - see parking.h */
#include "parking.h"

#include <stddef.h>

/* An entry's state: how far it has gone, guarded by the owner's lock. */
enum { P_NEW, P_PARKED, P_TAKEN, P_CANCELLED };

void park_entry_init(struct park_entry *e, void (*ready)(struct park_entry *e, int64_t answer))
{
	e->ready = ready;
	e->prev = e->next = NULL;
	e->state = P_NEW;
	e->answer = PARK_WAIT;
}

bool park_add_locked(struct park_list *l, struct park_entry *e)
{
	if (e->state == P_CANCELLED)
		return false;
	e->state = P_PARKED;
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	l->head = e;
	return true;
}

static void unlink_locked(struct park_list *l, struct park_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	e->prev = e->next = NULL;
	e->state = P_TAKEN;
}

bool park_cancel_locked(struct park_list *l, struct park_entry *e)
{
	if (e->state == P_PARKED) {
		unlink_locked(l, e);
		return true;
	}
	if (e->state == P_NEW)
		e->state = P_CANCELLED;
	return false;
}

struct park_entry *park_take_locked(struct park_list *l,
				    int64_t (*answer)(struct park_entry *e, void *ctx), void *ctx)
{
	struct park_entry *e, *next, *taken = NULL;

	for (e = l->head; e; e = next) {
		int64_t a = answer ? answer(e, ctx) : *(const int64_t *)ctx;
		next = e->next;
		if (a == PARK_WAIT)
			continue;
		unlink_locked(l, e);
		e->answer = a;
		e->next = taken;
		taken = e;
	}
	return taken;
}

struct park_entry *park_concat(struct park_entry *taken, struct park_entry *more)
{
	struct park_entry *last;

	if (!taken)
		return more;
	for (last = taken; last->next; last = last->next)
		;
	last->next = more;
	return taken;
}

void park_answer(struct park_entry *taken)
{
	while (taken) {
		struct park_entry *e = taken;
		taken = e->next; /* before ready(), which may free e */
		e->next = NULL;
		e->ready(e, e->answer);
	}
}
