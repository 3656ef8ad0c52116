/* catalog.c - see catalog.h */
#include "catalog.h"

#include <errno.h>
#include <string.h>

static const char *const names[CATALOG_COUNT] = {
    "name.basics",   "title.akas",	 "title.basics",  "title.crew",
    "title.episode", "title.principals", "title.ratings",
};

static const char *const files[CATALOG_COUNT][2] = {
    {"name.basics.tsv.gz", "name.basics.tsv"},
    {"title.akas.tsv.gz", "title.akas.tsv"},
    {"title.basics.tsv.gz", "title.basics.tsv"},
    {"title.crew.tsv.gz", "title.crew.tsv"},
    {"title.episode.tsv.gz", "title.episode.tsv"},
    {"title.principals.tsv.gz", "title.principals.tsv"},
    {"title.ratings.tsv.gz", "title.ratings.tsv"},
};

const char *catalog_name(int ds)
{
	return names[ds];
}

const char *catalog_file(int ds, enum file_kind kind)
{
	return files[ds][kind];
}

int catalog_lookup_file(const char *name, int *ds, enum file_kind *kind)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		for (int k = KIND_GZ; k <= KIND_TSV; k++) {
			if (strcmp(name, files[i][k]) == 0) {
				*ds = i;
				*kind = (enum file_kind)k;
				return 0;
			}
		}
	}
	return -ENOENT;
}

int catalog_lookup_dataset(const char *word)
{
	for (int i = 0; i < CATALOG_COUNT; i++) {
		if (strcmp(word, names[i]) == 0 || strcmp(word, files[i][KIND_GZ]) == 0)
			return i;
	}
	return -ENOENT;
}
