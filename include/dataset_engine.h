/*
 * dataset_engine.h - what the engines that move a dataset between states (the
 * download engine, download.c, and the extraction engine, extract.c) see of
 * a transfer, and the calls they make into the state machine (dataset.c).
 *
 * Not for fs.c or control.c: they use dataset.h. The state machine owns every
 * dataset and transfer field guarded by the dataset lock, and is the only
 * code that takes that lock; an engine reads the constant fields of its
 * transfer and its cancel flag, and asks dataset.c for the rest with the
 * calls below. None of them may be called with a lock held: they take the
 * dataset lock, and some notify the kernel or answer parked opens.
 */
#ifndef IMDBFS_DATASET_ENGINE_H
#define IMDBFS_DATASET_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "dataset.h"
#include "meta.h"

struct dataset;
struct dataset_version;
struct fdshare;
struct feed;

struct transfer {
	struct dataset *ds;   /* constant; opaque outside dataset.c */
	int index;	      /* the dataset's catalog index; constant */
	enum file_kind kind;  /* KIND_GZ: a download; KIND_TSV: a decompression */
	bool force;	      /* constant */
	struct transfer *src; /* a decompression's download, followed; constant */
	_Atomic bool cancel;
	/* The rest is guarded by the dataset lock: only dataset.c touches it. */
	int refs;
	bool done;
	enum ds_state phase;
	struct feed *feed;	   /* holds a reference */
	double body_started;	   /* monotonic */
	struct dataset_result res; /* final once done */
};

/* The transfer's file name ("title.basics.tsv.gz"). */
static inline const char *transfer_file(const struct transfer *t)
{
	return catalog_file(t->index, t->kind);
}

/* Non-zero once the transfer is cancelled; an interrupt check for feed, http, segments. */
static inline int transfer_cancelled(void *ctx)
{
	struct transfer *t = ctx;

	return atomic_load(&t->cancel);
}

/*
 * A version holding a dup of fd's file, to commit as a copy; NULL and *rc on
 * failure. The caller owns the reference: give it to a commit, or put it.
 */
struct dataset_version *dataset_version_dup(int fd, int *rc);

/* Publishes the feed readers should follow (or none, NULL), and the phase status shows. */
void dataset_publish_feed(struct transfer *t, struct feed *f, enum ds_state phase);

/* The phase status shows (see the diagram in dataset.h). */
void dataset_set_phase(struct transfer *t, enum ds_state phase);

/* ---- for the download engine ---- */

/* What a download starts from: whether a committed copy is to revalidate, and its metadata. */
void dataset_download_basis(struct transfer *t, bool *conditional, struct meta *old);

/*
 * m is the version the download reads (its size in m->size, -1 unknown):
 * what a stat of the .tsv.gz says until a copy is committed, whatever the
 * HEAD at mount said before.
 */
void dataset_announce_download(struct transfer *t, const struct meta *m);

/* A fault being retried shows in status and health before the download gives up. */
void dataset_note_retry(struct transfer *t, const char *error);

/* The origin confirmed the committed copy (a 304): it is current now. */
void dataset_mark_checked(struct transfer *t);

/*
 * Makes copy (taken over) with metadata m the committed .tsv.gz: a .tsv of
 * another version stops being served and is extracted again.
 */
void dataset_commit_gz(struct transfer *t, struct dataset_version *copy, const struct meta *m);

/* ---- for the extraction engine ---- */

/*
 * Where a decompression reads from: the feed of the download it follows (a
 * reference in *feed), or a descriptor of the committed .tsv.gz (*fd, owned
 * by the caller) with its metadata in *m. 0, or -errno with the reason in err.
 */
int dataset_source_open(struct transfer *t, struct feed **feed, int *fd, struct meta *m, char *err,
			size_t errlen);

/*
 * After following a download to the end of its feed (in bytes read): waits
 * for it to end; 0 with *m the version it committed, or -EIO when that is
 * not what was read.
 */
int dataset_source_settle(struct transfer *t, uint64_t in, struct meta *m);

/*
 * The followed download abandoned *feed for a new version of the file:
 * waits for the new feed and swaps the reference. false when there is none.
 */
bool dataset_source_next_feed(struct transfer *t, struct feed **feed);

/* The followed download failed: its reason, in err, once it has ended. */
void dataset_source_error(struct transfer *t, char *err, size_t errlen);

/*
 * Makes copy (taken over) with metadata m the committed .tsv. -ESTALE when a
 * download committed another .tsv.gz meanwhile: copy is dropped then.
 */
int dataset_commit_tsv(struct transfer *t, struct dataset_version *copy, const struct meta *m);

#endif
