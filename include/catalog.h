/*
 * catalog.h - the seven IMDb datasets and the fourteen file names they show
 * as. The catalogue is constant: the mount lists every name whether or not
 * it is cached, and no other data file can exist.
 */
#ifndef IMDBFS_CATALOG_H
#define IMDBFS_CATALOG_H

#include <stdbool.h>

#define CATALOG_COUNT 7

/* Each dataset appears as its origin file (.tsv.gz) and its decompression (.tsv). */
enum file_kind { KIND_GZ, KIND_TSV };

/* "title.basics" for dataset 0..CATALOG_COUNT-1. */
const char *catalog_name(int ds);

/* "title.basics.tsv.gz" or "title.basics.tsv". */
const char *catalog_file(int ds, enum file_kind kind);

/* Maps a file name (no slash) to its dataset and kind; -ENOENT if not in the catalogue. */
int catalog_lookup_file(const char *name, int *ds, enum file_kind *kind);

/*
 * Maps a dataset named in a command to its index: "title.basics" and
 * "title.basics.tsv.gz" are both accepted. -ENOENT otherwise.
 */
int catalog_lookup_dataset(const char *word);

#endif
