/*
 * extract.h - the extraction engine: turns a dataset's .tsv.gz into its .tsv.
 *
 * It reads the committed .tsv.gz, or follows the feed of the download still
 * writing it (so that a .tsv streams from the first compressed bytes on),
 * inflates every member through gunzip.h into a temporary that the spool
 * (spool.h) writes behind the decoder, publishes that temporary as the
 * transfer's feed, and commits it through the state machine once the stream
 * ended cleanly and the download it followed committed the very bytes read.
 * A download that starts over on a new version makes it start over too. A
 * gzip bomb stops at the disk budget (budget.h).
 *
 * It runs on the transfer's thread and owns its temporary, its spool and its
 * decoder; everything shared goes through dataset_engine.h.
 */
#ifndef IMDBFS_EXTRACT_H
#define IMDBFS_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct store;
struct transfer;

/* Sets what every extraction uses; both must outlive them. Call before any transfer. */
void extract_init(const struct config *cfg, struct store *st);

/*
 * Runs the decompression of t to its end: 0 (committed; *changed set), or
 * -errno with the reason in error (-ECANCELED when t was cancelled).
 */
int extract_run(struct transfer *t, bool *changed, char *error, size_t errlen);

#endif
