/*
 * fuzz_blob_meta.c - a blob's metadata as a host reads it from the container
 * (store_azure_meta_parse): anyone who may write the container can plant it.
 *
 * Input: the blob's size in decimal on the first line, the file's name on the
 * second, then its metadata, one NAME=VALUE per line (as the x-ms-meta-NAME
 * headers a HEAD or a listing gives).
 *
 * Properties: metadata accepted describes this host's copy of that file (its
 * URL is the origin's for the .tsv.gz), its size is the blob's, its numbers
 * are in their documented ranges and its strings fit their fields; a refusal
 * gives a reason on one line.
 */
#include <math.h>

#include "azure_blob.h"
#include "fuzz.h"
#include "meta.h"
#include "store_azure.h"

#define ORIGIN "https://datasets.imdbws.com/"
#define NOW    1764633600.0 /* 2025-12-02: a fixed clock, so that runs repeat */

static void check_accepted(const struct meta *m, int64_t blob_size, const char *file)
{
	size_t n = strlen(file);
	char want[1024];

	snprintf(want, sizeof(want), ORIGIN "%s%s", file,
		 n > 4 && strcmp(file + n - 4, ".tsv") == 0 ? ".gz" : "");
	FUZZ_CHECK(strcmp(m->url, want) == 0);
	FUZZ_CHECK(m->size == blob_size && m->size >= 0 && m->size <= STORE_AZURE_SIZE_MAX);
	FUZZ_CHECK(m->tsv_size >= -1 && m->tsv_size <= STORE_AZURE_SIZE_MAX);
	FUZZ_CHECK(m->mtime >= 0 && m->mtime <= (int64_t)NOW + 86400);
	FUZZ_CHECK(isfinite(m->fetched_at) && m->fetched_at > 0 && m->fetched_at <= NOW + 86400);
	FUZZ_CHECK(m->etag[0] || m->last_modified[0]);
	FUZZ_CHECK(memchr(m->etag, '\0', sizeof(m->etag)) &&
		   memchr(m->last_modified, '\0', sizeof(m->last_modified)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), *save = NULL, *line, *file, *end;
	struct azure_meta am = {0};
	struct meta m;
	char why[256];
	long long blob_size;

	line = strtok_r(text, "\n", &save);
	file = strtok_r(NULL, "\n", &save);
	if (!line || !file) {
		free(text);
		return 0;
	}
	blob_size = strtoll(line, &end, 10);
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		(void)azure_meta_set(&am, line, eq + 1); /* refused names are dropped */
	}
	why[0] = '\0';
	if (store_azure_meta_parse(&am, (int64_t)blob_size, ORIGIN, file, NOW, &m, why,
				   sizeof(why)) == 0)
		check_accepted(&m, (int64_t)blob_size, file);
	else
		FUZZ_CHECK(why[0] && !strpbrk(why, "\r\n"));
	free(text);
	return 0;
}
