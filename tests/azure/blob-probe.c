/*
 * blob-probe - runs one azure_blob operation from the command line, for the
 * Azurite tests (tests/e2e/test_azure_blob.py). Credentials come from the
 * environment as for the daemon (AZURE_STORAGE_CONNECTION_STRING, ...),
 * never from argv. Results go to stdout as key=value lines; a failure is one
 * line "blob-probe: OP: ERRNO_NAME: message" on stderr and exit status 1
 * (2 for a usage error).
 *
 *   create-container C
 *   put C NAME FILE [options] [key=value ...]          Put Blob
 *   put-blocks C NAME FILE [options] [key=value ...]   Put Block + Put Block List
 *       options: --type TYPE  --lease ID  --if-absent  --block-size BYTES
 *   props C NAME
 *   get C NAME OUTFILE [--offset N] [--length N] [--if-match ETAG]   ('-': stdout)
 *   list C [--prefix P] [--page-size N]      one line per blob: name size type mtime meta
 *   delete C NAME [--lease ID]
 *   lease-acquire C NAME SECONDS             prints lease_id=ID
 *   lease-renew|lease-release C NAME ID
 *   lease-break C NAME [PERIOD]              prints remaining=S
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "azure_auth.h"
#include "azure_blob.h"
#include "http.h"

#define DEFAULT_BLOCK_BYTES (4u << 20)
#define MAX_BLOCKS	    10000

struct opts {
	const char *type, *lease, *if_match, *prefix;
	int if_absent;
	unsigned long long block_size, offset, length, page_size;
	struct azure_meta meta;
};

static int usage(void)
{
	fprintf(stderr,
		"usage: blob-probe OPERATION CONTAINER [ARGS] (see tests/azure/blob-probe.c)\n");
	return 2;
}

static int failed(const char *op, int rc, const char *err)
{
	const char *name = strerrorname_np(-rc);

	fprintf(stderr, "blob-probe: %s: %s: %s\n", op, name ? name : "E?", err);
	return 1;
}

static int parse_number(const char *s, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

/* Options and key=value metadata from argv[first] on. */
static int parse_opts(int argc, char **argv, int first, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->block_size = DEFAULT_BLOCK_BYTES;
	for (int i = first; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *eq;
		int bad = 0;

		if (strcmp(a, "--if-absent") == 0) {
			o->if_absent = 1;
			continue;
		}
		if (strncmp(a, "--", 2) == 0 && !v)
			return -1;
		if (strcmp(a, "--type") == 0)
			o->type = v;
		else if (strcmp(a, "--lease") == 0)
			o->lease = v;
		else if (strcmp(a, "--if-match") == 0)
			o->if_match = v;
		else if (strcmp(a, "--prefix") == 0)
			o->prefix = v;
		else if (strcmp(a, "--block-size") == 0)
			bad = parse_number(v, &o->block_size) || o->block_size == 0;
		else if (strcmp(a, "--offset") == 0)
			bad = parse_number(v, &o->offset);
		else if (strcmp(a, "--length") == 0)
			bad = parse_number(v, &o->length);
		else if (strcmp(a, "--page-size") == 0)
			bad = parse_number(v, &o->page_size);
		else if ((eq = strchr(a, '=')) != NULL) {
			*eq = '\0';
			bad = azure_meta_set(&o->meta, a, eq + 1) != 0;
			*eq = '=';
			i--; /* no value argument */
		} else
			return -1;
		if (bad)
			return -1;
		i++;
	}
	return 0;
}

static void print_meta(const struct azure_meta *m, const char *prefix, const char *sep)
{
	for (size_t i = 0; i < m->count; i++)
		printf("%s%s%s=%s", i ? sep : "", prefix, m->item[i].name, m->item[i].value);
}

/* Reads all of path; owned by the caller, free(). */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (!f)
		return NULL;
	do {
		char *grown = cap - *len < 65536 ? realloc(buf, cap = cap * 2 + 65536) : buf;

		if (!grown) {
			free(buf);
			fclose(f);
			return NULL;
		}
		buf = grown;
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
	} while (n > 0);
	if (ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf ? buf : malloc(1);
}

static struct azure_blob_put put_options(const struct opts *o)
{
	struct azure_blob_put p = {
	    .content_type = o->type,
	    .lease_id = o->lease,
	    .if_absent = o->if_absent,
	    .meta = &o->meta,
	};
	return p;
}

static int do_put(const struct azure_blob_client *cl, const char *c, const char *name,
		  const char *file, const struct opts *o, int blocks, char *err, size_t errlen)
{
	struct azure_blob_put p = put_options(o);
	static char ids[MAX_BLOCKS][AZURE_BLOCK_ID_SIZE];
	char upload[AZURE_UPLOAD_ID_SIZE];
	const char *idp[MAX_BLOCKS];
	size_t len, count = 0;
	char *data = read_file(file, &len);
	double retry_after; /* the probe sends each request once */
	int rc = 0;

	if (!data) {
		snprintf(err, errlen, "cannot read %s", file);
		return -EIO;
	}
	if (!blocks) {
		rc = azure_blob_put(cl, c, name, data, len, &p, err, errlen);
		goto out;
	}
	if (azure_blob_upload_id(upload)) {
		snprintf(err, errlen, "no random upload id");
		rc = -EIO;
	}
	for (size_t off = 0; !rc && off < len; off += o->block_size, count++) {
		size_t n = len - off < o->block_size ? len - off : o->block_size;

		if (count == MAX_BLOCKS ||
		    azure_blob_block_id(upload, (unsigned)count, ids[count])) {
			snprintf(err, errlen, "too many blocks");
			rc = -E2BIG;
			break;
		}
		idp[count] = ids[count];
		rc = azure_blob_put_block(cl, c, name, ids[count], data + off, n, o->lease,
					  &retry_after, err, errlen);
	}
	if (!rc)
		rc = azure_blob_put_block_list(cl, c, name, idp, count, &p, &retry_after, err,
					       errlen);
	if (!rc)
		printf("blocks=%zu\n", count);
out:
	free(data);
	return rc;
}

static void print_props(const struct azure_blob_props *p)
{
	printf("size=%" PRId64 "\netag=%s\nlast_modified=%s\nmtime=%" PRId64
	       "\ncontent_type=%s\nlease_state=%s\nlease_status=%s\n",
	       p->size, p->etag, p->last_modified, p->mtime, p->content_type, p->lease_state,
	       p->lease_status);
	for (size_t i = 0; i < p->meta.count; i++)
		printf("meta.%s=%s\n", p->meta.item[i].name, p->meta.item[i].value);
}

struct get_ctx {
	FILE *out;
	struct azure_blob_props props;
	uint64_t bytes;
};

static int get_props(void *ctx, const struct azure_blob_props *p)
{
	((struct get_ctx *)ctx)->props = *p;
	return 0;
}

static int get_body(void *ctx, const void *buf, size_t len)
{
	struct get_ctx *g = ctx;

	g->bytes += len;
	return fwrite(buf, 1, len, g->out) == len ? 0 : -EIO;
}

static int do_get(const struct azure_blob_client *cl, const char *c, const char *name,
		  const char *path, const struct opts *o, char *err, size_t errlen)
{
	struct get_ctx g = {.out = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb")};
	struct azure_blob_read rd = {
	    .offset = o->offset,
	    .length = o->length,
	    .if_match = o->if_match,
	    .on_props = get_props,
	    .on_body = get_body,
	    .ctx = &g,
	};
	double retry_after; /* the probe sends each request once */
	int rc;

	if (!g.out) {
		snprintf(err, errlen, "cannot create %s", path);
		return -EIO;
	}
	rc = azure_blob_get(cl, c, name, &rd, &retry_after, err, errlen);
	if (g.out != stdout && fclose(g.out) != 0 && !rc) {
		snprintf(err, errlen, "cannot write %s", path);
		rc = -EIO;
	}
	if (!rc && g.out != stdout)
		printf("bytes=%" PRIu64 "\nsize=%" PRId64 "\netag=%s\n", g.bytes, g.props.size,
		       g.props.etag);
	return rc;
}

static int print_item(void *ctx, const struct azure_blob_item *it)
{
	(void)ctx;
	printf("%s\t%" PRId64 "\t%s\t%" PRId64 "\t", it->name, it->size, it->content_type,
	       it->mtime);
	print_meta(&it->meta, "", ";");
	printf("\n");
	return 0;
}

static int run(const struct azure_blob_client *cl, int argc, char **argv, char *err, size_t errlen)
{
	const char *op = argv[1], *c = argv[2], *name = argc > 3 ? argv[3] : NULL;
	char id[AZURE_UUID_SIZE];
	struct azure_blob_props p;
	struct opts o;
	int rc, remaining;
	unsigned long long n = 0;

#define NEED(k, first)                                                                             \
	if (argc < (k) || parse_opts(argc, argv, (first), &o))                                     \
		return -EINVAL;
	if (strcmp(op, "create-container") == 0) {
		return azure_blob_create_container(cl, c, err, errlen);
	} else if (strcmp(op, "put") == 0 || strcmp(op, "put-blocks") == 0) {
		NEED(5, 5);
		return do_put(cl, c, name, argv[4], &o, op[3] == '-', err, errlen);
	} else if (strcmp(op, "props") == 0) {
		NEED(4, 4);
		rc = azure_blob_props(cl, c, name, &p, err, errlen);
		if (!rc)
			print_props(&p);
		return rc;
	} else if (strcmp(op, "get") == 0) {
		NEED(5, 5);
		return do_get(cl, c, name, argv[4], &o, err, errlen);
	} else if (strcmp(op, "list") == 0) {
		NEED(3, 3);
		return azure_blob_list(cl, c, o.prefix, (unsigned)o.page_size, print_item, NULL,
				       err, errlen);
	} else if (strcmp(op, "delete") == 0) {
		NEED(4, 4);
		return azure_blob_delete(cl, c, name, o.lease, err, errlen);
	} else if (strcmp(op, "lease-acquire") == 0) {
		if (argc != 5 || parse_number(argv[4], &n) || n > 3600)
			return -EINVAL;
		rc = azure_blob_lease_acquire(cl, c, name, (int)n, id, err, errlen);
		if (!rc)
			printf("lease_id=%s\n", id);
		return rc;
	} else if (strcmp(op, "lease-renew") == 0 && argc == 5) {
		return azure_blob_lease_renew(cl, c, name, argv[4], err, errlen);
	} else if (strcmp(op, "lease-release") == 0 && argc == 5) {
		return azure_blob_lease_release(cl, c, name, argv[4], err, errlen);
	} else if (strcmp(op, "lease-break") == 0 && (argc == 4 || argc == 5)) {
		if (argc == 5 && (parse_number(argv[4], &n) || n > 60))
			return -EINVAL;
		rc = azure_blob_lease_break(cl, c, name, argc == 5 ? (int)n : -1, &remaining, err,
					    errlen);
		if (!rc)
			printf("remaining=%d\n", remaining);
		return rc;
	}
#undef NEED
	return -EINVAL;
}

static const char *env(const char *name)
{
	return getenv(name);
}

int main(int argc, char **argv)
{
	struct azure_cred cred;
	struct azure_blob_client cl = {.cred = &cred, .timeout_seconds = 60};
	char err[512] = "";
	int rc;

	if (argc < 3)
		return usage();
	rc = azure_auth_from_env(env, &cred, err, sizeof(err));
	if (rc)
		return failed("credentials", rc, err);
	if (http_global_init() != 0) {
		azure_auth_free(&cred);
		return failed("init", -EIO, "cannot initialise libcurl");
	}
	rc = run(&cl, argc, argv, err, sizeof(err));
	http_global_cleanup();
	azure_auth_free(&cred);
	if (rc == -EINVAL && !err[0])
		return usage();
	if (fflush(stdout) != 0)
		return failed(argv[1], -EIO, "cannot write the output");
	return rc ? failed(argv[1], rc, err) : 0;
}
