/*
 * meta.h - what the cache knows about one cached file, and its JSON form.
 *
 * Each cached file has a metadata file beside it (NAME.meta) describing the
 * origin version it holds. A .tsv carries the ETag and Last-Modified of the
 * .tsv.gz it was decompressed from, so a stale decompression is recognised.
 */
#ifndef IMDBFS_META_H
#define IMDBFS_META_H

#include <stdbool.h>
#include <stdint.h>

struct meta {
	char url[1024];		/* where the .tsv.gz came from */
	char etag[256];		/* origin ETag, "" when the origin gave none */
	char last_modified[64]; /* origin Last-Modified, as sent */
	int64_t mtime;		/* Last-Modified in epoch seconds, 0 unknown */
	int64_t size;		/* bytes of this file */
	int64_t tsv_size;	/* .tsv.gz only: bytes once decompressed, -1 unknown */
	double fetched_at;	/* when this copy was stored (epoch seconds) */
};

/* Renders m as a JSON object followed by a newline; NULL on ENOMEM. Caller frees. */
char *meta_to_json(const struct meta *m);

/* Parses text into m; -EINVAL when it is not a well-formed metadata object. */
int meta_from_json(const char *text, struct meta *m);

/*
 * A download in progress, saved beside its temporary so that it can resume
 * after a restart: the version being received and how much of it is on disk.
 */
struct meta_partial {
	struct meta version; /* url, etag, last_modified, mtime */
	int64_t total;	     /* size of the whole file, -1 unknown */
	int64_t durable;     /* bytes fsynced to the temporary, verified */
	bool sparse;	     /* a segmented download: past durable, only holes and bytes
				not yet verified, to be dropped on resume */
};

/* As meta_to_json / meta_from_json, for a partial download's state. */
char *meta_partial_to_json(const struct meta_partial *p);
int meta_partial_from_json(const char *text, struct meta_partial *p);

/*
 * The same version of the origin file, from two sets of validators (a
 * meta's, a response's): the ETags when both have one, else Last-Modified.
 */
bool meta_validators_match(const char *etag_a, const char *last_modified_a, const char *etag_b,
			   const char *last_modified_b);

/* meta_validators_match() of two metas. */
int meta_same_version(const struct meta *a, const struct meta *b);

#endif
