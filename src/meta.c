/* meta.c - see meta.h */
#include "meta.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json.h"

/*
 * An origin's ETag may hold any bytes (HTTP allows obs-text), and a
 * revalidation must send them back exactly, but JSON holds UTF-8 only: a
 * value that is not valid UTF-8 is written readable (repaired) under key
 * and exact, in hex, under key "_hex".
 */
static bool add_exact(cJSON *o, const char *key, const char *v)
{
	size_t len = strlen(v);
	char name[32], hex[2 * sizeof(((struct meta *)0)->url) + 1];

	if (!cJSON_AddStringToObject(o, key, v))
		return false;
	if (json_utf8_valid(v, len))
		return true;
	assert(len < sizeof(hex) / 2); /* every field of struct meta fits */
	for (size_t i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", (unsigned char)v[i]);
	snprintf(name, sizeof(name), "%s_hex", key);
	return cJSON_AddStringToObject(o, name, hex) != NULL;
}

static cJSON *meta_object(const struct meta *m)
{
	cJSON *o = cJSON_CreateObject();
	char stamp[32];

	if (!o)
		return NULL;
	clock_iso8601(m->fetched_at, stamp, sizeof(stamp));
	if (!add_exact(o, "url", m->url) || !add_exact(o, "etag", m->etag) ||
	    !add_exact(o, "last_modified", m->last_modified) ||
	    !cJSON_AddNumberToObject(o, "mtime", (double)m->mtime) ||
	    !cJSON_AddNumberToObject(o, "size", (double)m->size) ||
	    !cJSON_AddNumberToObject(o, "tsv_size", (double)m->tsv_size) ||
	    !cJSON_AddNumberToObject(o, "fetched_at_epoch", m->fetched_at) ||
	    !cJSON_AddStringToObject(o, "fetched_at", stamp)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

char *meta_to_json(const struct meta *m)
{
	return json_print_line(meta_object(m));
}

char *meta_partial_to_json(const struct meta_partial *p)
{
	cJSON *o = meta_object(&p->version);

	if (o && (!cJSON_AddNumberToObject(o, "total", (double)p->total) ||
		  !cJSON_AddNumberToObject(o, "durable", (double)p->durable) ||
		  !cJSON_AddBoolToObject(o, "sparse", p->sparse))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return json_print_line(o);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The exact bytes add_exact() wrote as hex: no NUL, fits cap with its own. */
static int get_hex(const char *hex, char *dst, size_t cap)
{
	size_t len = strlen(hex), i;

	if (len % 2 || len / 2 >= cap)
		return -EINVAL;
	for (i = 0; i < len / 2; i++) {
		int a = hex_digit(hex[2 * i]), b = hex_digit(hex[2 * i + 1]);
		if (a < 0 || b < 0 || (a | b) == 0)
			return -EINVAL;
		dst[i] = (char)(a << 4 | b);
	}
	dst[i] = '\0';
	return 0;
}

static int get_string(const cJSON *o, const char *key, char *dst, size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	const cJSON *exact;
	char name[32];

	if (!cJSON_IsString(v))
		return -EINVAL;
	/* The exact bytes when the text is a repair: U+FFFD may have made it longer than dst. */
	snprintf(name, sizeof(name), "%s_hex", key);
	exact = cJSON_GetObjectItemCaseSensitive(o, name);
	if (exact)
		return cJSON_IsString(exact) ? get_hex(exact->valuestring, dst, cap) : -EINVAL;
	if (strlen(v->valuestring) >= cap)
		return -EINVAL;
	strcpy(dst, v->valuestring);
	return 0;
}

/*
 * Integral numbers only: sizes and times must survive the round trip
 * exactly. cJSON prints numbers with 15 significant digits when they read
 * back within DBL_EPSILON, so 16 digits would not.
 */
#define META_INT_MAX 999999999999999.0
static int get_int(const cJSON *o, const char *key, int64_t lo, int64_t *dst)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	double d;

	if (!cJSON_IsNumber(v))
		return -EINVAL;
	d = v->valuedouble;
	if (d != floor(d) || d < (double)lo || d > META_INT_MAX)
		return -EINVAL;
	*dst = (int64_t)d;
	return 0;
}

static int meta_from_object(const cJSON *o, struct meta *m)
{
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "fetched_at_epoch");

	memset(m, 0, sizeof(*m));
	if (!cJSON_IsObject(o) || get_string(o, "url", m->url, sizeof(m->url)) ||
	    get_string(o, "etag", m->etag, sizeof(m->etag)) ||
	    get_string(o, "last_modified", m->last_modified, sizeof(m->last_modified)) ||
	    get_int(o, "mtime", 0, &m->mtime) || get_int(o, "size", 0, &m->size) ||
	    !cJSON_IsNumber(at))
		return -EINVAL;
	/* Absent from a .meta written before its verifier's count was kept: unknown, -1. */
	m->tsv_size = -1;
	if (cJSON_GetObjectItemCaseSensitive(o, "tsv_size") &&
	    get_int(o, "tsv_size", -1, &m->tsv_size))
		return -EINVAL;
	/* As get_int's range: an infinity would be written back as null, a huge time as no date. */
	if (!(at->valuedouble >= 0 && at->valuedouble <= META_INT_MAX))
		return -EINVAL;
	m->fetched_at = at->valuedouble;
	return 0;
}

int meta_from_json(const char *text, struct meta *m)
{
	cJSON *o = cJSON_Parse(text);
	int rc = meta_from_object(o, m);

	cJSON_Delete(o);
	return rc;
}

int meta_partial_from_json(const char *text, struct meta_partial *p)
{
	cJSON *o = cJSON_Parse(text);
	int rc = meta_from_object(o, &p->version);
	const cJSON *sparse = cJSON_GetObjectItemCaseSensitive(o, "sparse");

	/* Absent in the partials of earlier versions: those have no holes. */
	p->sparse = cJSON_IsTrue(sparse);
	if (sparse && !cJSON_IsBool(sparse))
		rc = -EINVAL;
	if (!rc && (get_int(o, "total", -1, &p->total) || get_int(o, "durable", 0, &p->durable) ||
		    (p->total >= 0 && p->durable > p->total)))
		rc = -EINVAL;
	cJSON_Delete(o);
	return rc;
}

bool meta_validators_match(const char *etag_a, const char *last_modified_a, const char *etag_b,
			   const char *last_modified_b)
{
	if (etag_a[0] && etag_b[0])
		return strcmp(etag_a, etag_b) == 0;
	return last_modified_a[0] && strcmp(last_modified_a, last_modified_b) == 0;
}

int meta_same_version(const struct meta *a, const struct meta *b)
{
	return meta_validators_match(a->etag, a->last_modified, b->etag, b->last_modified);
}
