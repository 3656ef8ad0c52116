/*
 * dataset.h - the per-dataset state machine, the transfers that move a
 * dataset between states, and the readers waiting on them.
 *
 * States (what .control/status shows), and who moves a dataset between them:
 *
 *                 dataset_download / a read
 *   absent ------------------------------------> queued      (download thread)
 *   queued --- a slot of `concurrency` free ---> downloading
 *   downloading --- body complete -------------> verifying
 *   verifying --- length, CRC, ISIZE ok -------> cached      (commit_download)
 *   cached --- dataset_extract / a .tsv read --> extracting  (extract thread)
 *   extracting --- stream ended cleanly -------> extracted   (commit_extract)
 *   any transfer --- permanent fault ----------> failed      (finish_transfer)
 *
 * A refresh of a cached dataset runs through the same states while the old
 * copy stays served; only a verified copy replaces it. Extraction may start
 * while the download is still running: it follows the download's feed, so a
 * .tsv streams as soon as the first compressed bytes arrive.
 *
 * At most one download and one extraction run per dataset: a second request
 * joins the one in flight. Readers of a file not yet committed read the
 * transfer's feed (see feed.h). An open that arrives before its transfer has
 * a feed parks on the dataset (dataset_open_start()) and is answered by the
 * transfer that publishes the feed or ends: no thread waits for it.
 *
 * The state is stored (what dataset_info() returns) and has one writer,
 * set_state_locked() in dataset.c, which every change of the fields it is
 * made of (the transfer in flight and its phase, the committed copies, the
 * last failure) calls before the lock is released, and which asserts that the
 * move is an edge of this diagram. Besides the edges drawn: a download may
 * start in any state that has none (-> queued); a commit that failed is
 * retried (verifying -> downloading); a download's end goes to whatever is
 * committed, or to the extraction it left running; an eviction takes copies
 * away (cached -> absent, extracted -> cached or absent, failed -> either).
 *
 * Sizes: what is known of a file's size before it is read (its copy, its
 * download's response, the probe at mount: probe.h) and the lookups parked
 * until it is known are in dataset_size.c (dataset_size_known()).
 *
 * Code: dataset.c is the state machine and the registry, and with
 * dataset_transfer.c and dataset_size.c the only code that takes a dataset
 * lock; the engines that run transfers, download.c
 * (with the tiers, tier.c) and extract.c, call into it through
 * dataset_engine.h.
 *
 * Locking: each dataset has one mutex guarding its fields and those of its
 * transfers, its parked opens and its arriving versions' feeds; a version's
 * reference count is atomic and the rest of it constant. Lock order: dataset lock, then feed lock;
 * dataset_evict() also calls the store's evict under it (so that no commit
 * lands between removing the files and forgetting them), so the store's own
 * locks come after it. Apart from that no dataset lock is held while calling
 * the store, the network or the kernel (invalidation, the replies of parked
 * opens). See DESIGN.md for the whole order.
 */
#ifndef IMDBFS_DATASET_H
#define IMDBFS_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "meta.h"
#include "parking.h"

struct config;
struct feed;
struct store;
struct transfer;

enum ds_state {
	DS_ABSENT,
	DS_QUEUED,
	DS_DOWNLOADING,
	DS_VERIFYING,
	DS_CACHED,
	DS_EXTRACTING,
	DS_EXTRACTED,
	DS_FAILED,
};

const char *dataset_state_name(enum ds_state st);

/* A snapshot of one dataset, for status and files. */
struct dataset_info {
	enum ds_state state;
	bool cached;	     /* a verified .tsv.gz is in the cache */
	bool extracted;	     /* a .tsv is in the cache */
	bool retrying;	     /* a download is backing off after a transient fault */
	struct meta gz;	     /* valid when cached */
	struct meta tsv;     /* valid when extracted */
	uint64_t bytes_done; /* of the running transfer, else of the cached copy */
	int64_t bytes_total; /* -1 unknown */
	double rate_bps;     /* of the running transfer, else 0 */
	int64_t size[2];     /* per kind, dataset_size_known()'s size, -1 unknown */
	char error[256];     /* the last failure, "" when none */
};

/* What one transfer came to, for a job's result. */
struct dataset_result {
	int err;	 /* 0 or -errno */
	bool changed;	 /* a new copy was committed (not 304, not already current) */
	char error[256]; /* the reason when err */
};

/* Reads the cache; no threads are started. The config and store must outlive the datasets. */
int datasets_init(const struct config *cfg, struct store *store);

/*
 * Restarts the downloads an earlier run left unfinished, and asks the sizes
 * of the files not cached (probe.h); call once the daemon runs.
 */
void datasets_resume(void);

/* Cancels every transfer and the probe, and waits (bounded) for their threads to end. */
void datasets_shutdown(void);

/*
 * Answers every parked open (dataset_open_start()) and size waiter
 * (dataset_size_wait_start()) with -EIO: the mount is going away.
 */
void datasets_cancel_opens(void);

/* Called, with no lock held, after a committed file changes or goes away. */
void datasets_on_change(void (*fn)(const char *file));

/*
 * Versions. Each data file is, at any time, one version object of the
 * dataset layer: refcounted, handed out by reference, freed by its last put.
 *   - A committed version holds a committed copy: its descriptor (shared,
 *     see fdshare.h), its metadata, size and mtime, its generation. It never
 *     changes: whoever holds it reads those bytes and sees that size, after
 *     any number of refreshes, evictions or removals of the file.
 *   - An arriving version is its sibling for a file with no committed copy:
 *     it holds the feed of the transfer bringing the file (once one exists)
 *     and takes a new transfer's feed while it is current (a retry, a
 *     download that starts over). Once its generation has moved on it keeps
 *     the feed it had, which readers follow to its end.
 * The dataset holds a reference on the current version of each file; the
 * FUSE layer holds one per inode and every reader one on the version it
 * reads, so any number of versions of one file can be alive at once.
 *
 * A data file's generation moves on, under the dataset lock, each time its
 * committed copy appears, is replaced or goes away: one generation is one
 * version object, and two opens that see the same generation read the same
 * bytes.
 */
struct dataset_version;

uint64_t dataset_generation(int ds, enum file_kind kind);

/* The current version of a file, a reference for the caller: 0, or -ENOMEM. */
int dataset_current(int ds, enum file_kind kind, struct dataset_version **v);

/* Another reference on v, which the caller holds one of; returns v. */
struct dataset_version *dataset_version_get(struct dataset_version *v);

/* Drops a reference (NULL is a no-op); the last one frees v, its copy or feed reference. */
void dataset_version_put(struct dataset_version *v);

uint64_t dataset_version_gen(const struct dataset_version *v);

/* Whether v is a committed copy (whose attributes never change), not an arriving one. */
bool dataset_version_committed(const struct dataset_version *v);

/*
 * Size (0 while unknown) and modification time of v: a committed version's
 * own; an arriving one's as far as known (its feed's, and while it is
 * current the size announced for the file).
 */
void dataset_version_stat(struct dataset_version *v, int64_t *size, int64_t *mtime);

/* An open data file: one version, read through its committed copy (fd >= 0) or a feed. */
struct dataset_reader {
	struct dataset_version *v; /* a reference on the version read */
	int fd;			   /* v's copy's descriptor, shared: never close it; or -1 */
	struct feed *feed;	   /* a reference on the feed read, or NULL */
};

/*
 * An open waiting, with no thread, until its file's first bytes can be read.
 * Whoever takes it off the dataset answers it, exactly once: the transfer
 * that publishes its feed or ends (calling ready() with no lock held), or a
 * true dataset_open_cancel(). The caller owns the memory.
 */
struct dataset_opener {
	struct park_entry entry; /* the dataset's, guarded by its lock (see parking.h) */
	int ds;			 /* constant */
	enum file_kind kind;	 /* constant */
	/* rc: 0 (the reader is open) or -EIO */
	void (*ready)(struct dataset_opener *o, int rc);
	struct dataset_reader *r; /* guarded by the dataset lock */
	struct transfer *t;	  /* guarded by the dataset lock; referenced while parked */
};

/* Makes o fresh; call before o can be seen by an interrupt. */
void dataset_opener_init(struct dataset_opener *o, int ds, enum file_kind kind,
			 void (*ready)(struct dataset_opener *o, int rc));

/*
 * Opens a data file for reading into r. Through via (the version an inode
 * stands for, or NULL) when via is no longer current: via itself, if any of
 * it arrived and a reader still holds it (a version nobody reads is gone).
 * Else the current version, starting its fetch or decompression
 * when it is not cached. 0 when it can be read now, -EIO when its transfer
 * failed or cannot start, -EINTR when dataset_open_cancel() came first, or
 * -EINPROGRESS: o is parked until the first bytes can be read, and ready()
 * or a true dataset_open_cancel() follows. Release r with dataset_close().
 */
int dataset_open_start(struct dataset_opener *o, struct dataset_version *via,
		       struct dataset_reader *r);

/*
 * Takes a parked open off its dataset. true: the caller answers it. false: a
 * transfer took it first (its ready() runs or has run), or it was not parked
 * yet, and then dataset_open_start() returns -EINTR.
 */
bool dataset_open_cancel(struct dataset_opener *o);

void dataset_close(struct dataset_reader *r);

/*
 * The size and Last-Modified (epoch seconds, 0 unknown) of (ds, kind)'s
 * current version as far as known without reading it: the committed copy's;
 * else, for a .tsv.gz, its metadata's (the version a download in flight is
 * receiving, the container's blob metadata, or the HEAD sent at mount: see
 * probe.h); for a .tsv, the byte count the verifier of its committed (or
 * announced) .tsv.gz counted, never ISIZE. false when not known yet.
 */
bool dataset_size_known(int ds, enum file_kind kind, int64_t *size, int64_t *mtime);

/*
 * A lookup or getattr waiting, with no thread, until its file's size is
 * known (dataset_size_known() true). Answered exactly once as a parked open
 * is (struct dataset_opener): by the transfer that makes the size known or
 * ends (ready() with no lock held), by a true dataset_size_wait_cancel(),
 * or by datasets_cancel_opens(). The caller owns the memory.
 */
struct dataset_size_waiter {
	struct park_entry entry; /* the dataset's, guarded by its lock (see parking.h) */
	int ds;			 /* constant */
	enum file_kind kind;	 /* constant */
	/* rc: 0 (the size is known now) or -EIO (the fetch failed, or the mount goes away) */
	void (*ready)(struct dataset_size_waiter *w, int rc);
	struct transfer *t; /* guarded by the dataset lock; referenced while parked */
};

/* Makes w fresh; call before w can be seen by an interrupt. */
void dataset_size_waiter_init(struct dataset_size_waiter *w, int ds, enum file_kind kind,
			      void (*ready)(struct dataset_size_waiter *w, int rc));

/*
 * 0 when the size is known now; -EIO when the fetch failed or cannot start;
 * -EINTR when dataset_size_wait_cancel() came first; or -EINPROGRESS: w is
 * parked and ready() or a true dataset_size_wait_cancel() follows. Starts
 * the fetch a read would when needed (the .tsv.gz's download; for a .tsv,
 * its decompression, which downloads first).
 */
int dataset_size_wait_start(struct dataset_size_waiter *w);

/* As dataset_open_cancel(), for a size waiter. */
bool dataset_size_wait_cancel(struct dataset_size_waiter *w);

/*
 * What the probe at mount (probe.h) tells the datasets. A .tsv.gz is worth
 * probing while nothing better is known of it: no committed copy, no
 * download under way that saw its version.
 */
bool dataset_wants_probe(int ds);

/*
 * m (url, validators, mtime, size; tsv_size or -1) is the .tsv.gz's current
 * version as the origin's HEAD or the container's metadata gave it. Ignored
 * once a copy or a download knows better; else the size waiters it answers
 * are answered and the kernel told. No lock held.
 */
void dataset_announce(int ds, const struct meta *m);

/* Starts a download (or joins the one in flight). NULL on ENOMEM; wait with dataset_wait. */
struct transfer *dataset_download(int ds, bool force);

/* Starts a decompression (downloading first if needed), or joins one in flight. */
struct transfer *dataset_extract(int ds);

/* Blocks until t ends, fills res, and releases t. */
void dataset_wait(struct transfer *t, struct dataset_result *res);

/*
 * Evicts a committed copy (.tsv.gz takes the .tsv with it). Returns the kinds
 * removed as bits (1 << KIND_GZ, 1 << KIND_TSV); 0 when nothing was cached.
 * A transfer in flight is not cancelled: its readers keep reading.
 */
int dataset_evict(int ds, enum file_kind kind);

void dataset_info(int ds, struct dataset_info *info);

#endif
