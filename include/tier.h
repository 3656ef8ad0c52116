/*
 * tier.h - where a download reads a .tsv.gz from: the origin (HTTP) or the
 * shared tier (the Azure container with storage=azure), behind one
 * interface, so that the download engine names the tier it reads rather than
 * testing flags.
 *
 * A tier answers one ranged or conditional GET into an http_sink (the
 * download engine's), and says what the engine may do with what it gives:
 * split it into segments (only ranges tied to a version by If-Range can be),
 * and whether a copy read from it is to be replicated into the container.
 * The policy that picks a tier for one download (struct tier_plan) lives
 * here too: with storage=azure the newer of the local copy and the
 * container's is the version revalidated, a cold file is read from the
 * container, one host at a time fetches from the origin (the dataset's
 * lease), and what one host fetched from the origin is to be uploaded
 * (the download queues it: replicate.h). The tiers hold no state of their
 * own; the container's client (store_azure.h) keeps its connection and its
 * health.
 */
#ifndef IMDBFS_TIER_H
#define IMDBFS_TIER_H

#include <stdbool.h>
#include <stdint.h>

#include "meta.h"
#include "metrics.h"

struct config;
struct http_sink;
struct store_azure_lease;

/* One GET, as the download engine asks for it. */
struct tier_get {
	const char *file;	       /* the catalog name */
	const char *url;	       /* the origin's URL for file (may hold a password) */
	const struct meta *version;    /* the container's version to read */
	uint64_t from;		       /* > 0: the bytes from here on */
	uint64_t to;		       /* with from: the last byte wanted; 0: to the end */
	const char *if_range;	       /* with from: the ETag or date the range continues */
	const char *if_none_match;     /* a conditional GET (origin), or NULL */
	const char *if_modified_since; /* likewise */
	int (*cancelled)(void *ctx);   /* polled during the transfer */
	void *cancel_ctx;
};

struct tier {
	const char *name;  /* "origin", "container": as logged */
	enum metric bytes; /* the counter the bytes read from it add to */
	bool splits;	   /* its responses may be split into segments */
	bool replicated;   /* a copy read from it is put into the container */
	/*
	 * One GET into sink: 0 with *status (200, 206, 304), or -errno with the
	 * reason in err; *retry_after is what the tier asked to wait, 0 none.
	 */
	int (*get)(const struct tier_get *g, const struct http_sink *sink, long *status,
		   double *retry_after, char *err, size_t errlen);
};

extern const struct tier tier_origin;
extern const struct tier tier_container;

/* Sets the config (CA file, timeouts) the tiers use; it must outlive them. */
void tier_init(const struct config *cfg);

/* Which tier one download reads, and which version it revalidates. Owned by the download. */
struct tier_plan {
	const struct tier *tier; /* where the bytes come from now */
	bool conditional;	 /* old is a copy to revalidate */
	struct meta old;	 /* the committed copy, or the container's when newer */
	bool old_is_blob;	 /* old is the container's copy, newer than the local one */
	struct meta blob;	 /* the container's version, when it has one */
};

/*
 * With the shared tier (and not forced): the newer of the local copy and the
 * container's becomes the version to revalidate, and a cold file is read from
 * the container without asking the origin at all.
 */
void tier_plan_consult(struct tier_plan *p, const char *file, bool force);

/* The container has a version of the file (p->blob is valid). */
bool tier_plan_blob_known(const struct tier_plan *p);

/*
 * Single flight across hosts: returns the file's lease (release it with
 * store_azure_unlock()) when this host is to fetch from the origin; NULL when
 * the container got the version meanwhile (p then reads it), when it has no
 * lease to give (each host goes alone), or once cancelled(ctx).
 */
struct store_azure_lease *tier_plan_take_turn(struct tier_plan *p, const char *file,
					      int (*cancelled)(void *), void *ctx);

#endif
