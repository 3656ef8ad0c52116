/*
 * azure_meta.h - a blob's metadata (x-ms-meta-* headers, <Metadata> in a
 * listing): a small fixed-size set of name/value pairs, and the rules for
 * what we send.
 *
 * What we send is validated (azure_meta_set, azure_meta_valid): names are
 * [a-z][a-z0-9]*, the only names that sign the same under Azure's
 * culture-aware header order and ours (azure_sharedkey.h), and values
 * printable ASCII without leading or trailing blanks. What we receive is
 * untrusted and stored as it came (azure_meta_store): an item that does not
 * fit is dropped and the set marked overflowed, never cut. Names compare
 * without regard to case, as the service treats them.
 *
 * A struct azure_meta is a plain value owned by whoever holds it; no locks.
 */
#ifndef IMDBFS_AZURE_META_H
#define IMDBFS_AZURE_META_H

#include <stdbool.h>
#include <stddef.h>

#define AZURE_META_MAX	 16
#define AZURE_META_NAME	 64
#define AZURE_META_VALUE 512
struct azure_meta {
	size_t count;
	bool overflow; /* received items that did not fit were dropped */
	struct {
		char name[AZURE_META_NAME];
		char value[AZURE_META_VALUE];
	} item[AZURE_META_MAX];
};

/* Adds or replaces name. 0, -EINVAL (bad name or value) or -ENOSPC (full). */
int azure_meta_set(struct azure_meta *m, const char *name, const char *value);
/* The value of name, or NULL. */
const char *azure_meta_get(const struct azure_meta *m, const char *name);

/* Whether name and value may be sent (the rules above). */
bool azure_meta_valid(const char *name, const char *value);

/*
 * Stores received metadata without validation: the name is name_len bytes
 * (not NUL-terminated), the value a string. Adds or replaces; false (m
 * unchanged) if either is too long or m is full.
 */
bool azure_meta_store(struct azure_meta *m, const char *name, size_t name_len, const char *value);

#endif
