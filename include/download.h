/*
 * download.h - the download engine: brings a dataset's .tsv.gz from the
 * origin or the container into the cache.
 *
 * One download holds one of `concurrency` slots while it talks to a tier. It
 * writes a temporary that readers follow as the transfer's feed once its
 * version is confirmed, verifies every byte as it arrives (gunzip.h), and
 * commits it through the state machine only when the length, CRC and ISIZE
 * are right. It checkpoints the temporary (how far it got, of which version)
 * so that an interrupted download resumes after a retry or a restart, splits
 * a large file into segments (segment.h), retries transient faults with
 * backoff, starts over when the origin's version changes, and stops at the
 * disk budget (budget.h). With the shared tier it reads the container's copy
 * when that is the version wanted, takes the dataset's lease so that one host
 * fetches from the origin, and uploads what it fetched from the origin.
 *
 * It runs on the transfer's thread and owns its temporary, its verifier and
 * its segments; everything shared goes through dataset_engine.h. Lock order:
 * the slots lock is a leaf.
 */
#ifndef IMDBFS_DOWNLOAD_H
#define IMDBFS_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct store;
struct tier;
struct transfer;

/* Sets what every download uses; both must outlive them. Call before any transfer. */
void download_init(const struct config *cfg, struct store *st);

/*
 * The tier that stands for the origin (tier.h): tier_origin unless this sets
 * another, before any transfer. The daemon never calls it; the unit tests
 * (tests/unit/test_download.c) put a fake origin serving bytes from memory.
 */
void download_use_origin(const struct tier *t);

/*
 * Runs the download of t to its end: 0 (committed, *changed set; or the
 * copy is current, *changed clear), or -errno with the reason in error
 * (-ECANCELED when t was cancelled).
 */
int download_run(struct transfer *t, bool *changed, char *error, size_t errlen);

#endif
