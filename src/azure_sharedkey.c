/* azure_sharedkey.c - see azure_sharedkey.h */
#include "azure_sharedkey.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure_crypto.h"

#define MAX_QUERY_PARAMS   32
#define MAX_SIGNED_HEADERS 64

/* ------------------------------------------------------------ the resource */

struct param {
	char *name; /* lower-cased, decoded */
	char *value;
};

static int hex_value(int ch)
{
	if (isdigit(ch))
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/*
 * Percent-decodes [s, s+n) into a new string owned by the caller. By hand:
 * http_unescape would tie signing to http.c for three lines.
 */
static char *percent_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi = i + 2 < n && s[i] == '%' ? hex_value((unsigned char)s[i + 1]) : -1;
		int lo = hi >= 0 ? hex_value((unsigned char)s[i + 2]) : -1;

		if (lo >= 0) {
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

static int compare_params(const void *a, const void *b)
{
	const struct param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

static void free_params(struct param *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
}

/* Splits the query q (up to '#' or the end) into decoded, sorted parameters. */
static int parse_query(const char *q, struct param *p, size_t *count)
{
	size_t n = 0;

	while (q && *q && *q != '#') {
		size_t len = strcspn(q, "&#");
		const char *eq = memchr(q, '=', len);
		size_t name_len = eq ? (size_t)(eq - q) : len;

		if (len > 0) {
			if (n == MAX_QUERY_PARAMS)
				return -EINVAL;
			p[n].name = percent_decode(q, name_len);
			p[n].value = eq ? percent_decode(eq + 1, len - name_len - 1) : strdup("");
			n++;
			if (!p[n - 1].name || !p[n - 1].value) {
				*count = n;
				return -ENOMEM;
			}
			for (char *s = p[n - 1].name; *s; s++)
				*s = (char)tolower((unsigned char)*s);
		}
		q += len;
		if (*q == '&')
			q++;
	}
	*count = n;
	qsort(p, n, sizeof(*p), compare_params);
	return 0;
}

/* "\nname:v1,v2" per distinct name; the params are sorted. */
static void write_params(FILE *f, const struct param *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(p[i].name, p[i - 1].name) == 0)
			fprintf(f, ",%s", p[i].value);
		else
			fprintf(f, "\n%s:%s", p[i].name, p[i].value);
	}
}

static int write_resource(FILE *f, const char *account, const char *url)
{
	struct param params[MAX_QUERY_PARAMS];
	const char *scheme = strstr(url, "://");
	const char *path = scheme ? strchr(scheme + 3, '/') : NULL;
	size_t path_len, n = 0;
	int rc;

	if (!path)
		return -EINVAL;
	path_len = strcspn(path, "?#");
	fprintf(f, "/%s%.*s", account, (int)path_len, path);
	rc = parse_query(path[path_len] == '?' ? path + path_len + 1 : NULL, params, &n);
	if (!rc)
		write_params(f, params, n);
	free_params(params, n);
	return rc;
}

/* ------------------------------------------------------------ the headers */

static const char *find_header(const struct azure_sharedkey_header *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(h[i].name, name) == 0)
			return h[i].value;
	return NULL;
}

/* The value as signed: trimmed; a Content-Length of 0 is empty (versions >= 2015-02-21). */
static void write_value(FILE *f, const char *name, const char *v)
{
	size_t n;

	if (!v)
		return;
	while (isspace((unsigned char)*v))
		v++;
	n = strlen(v);
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	if (strcasecmp(name, "Content-Length") == 0 && n == 1 && *v == '0')
		return;
	fprintf(f, "%.*s", (int)n, v);
}

static int compare_headers(const void *a, const void *b)
{
	const struct azure_sharedkey_header *x = a, *y = b;

	return strcasecmp(x->name, y->name);
}

/*
 * x-ms-* headers in lower case, sorted. Azure orders them culture-aware,
 * which agrees with this byte order for names of letters, digits and '-';
 * the Blob client only sends such names.
 */
static int write_ms_headers(FILE *f, const struct azure_sharedkey_header *h, size_t n)
{
	struct azure_sharedkey_header ms[MAX_SIGNED_HEADERS];
	size_t count = 0;

	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(h[i].name, "x-ms-", 5) != 0)
			continue;
		if (count == MAX_SIGNED_HEADERS)
			return -EINVAL;
		ms[count++] = h[i];
	}
	qsort(ms, count, sizeof(ms[0]), compare_headers);
	for (size_t i = 0; i < count; i++) {
		for (const char *s = ms[i].name; *s; s++)
			fputc(tolower((unsigned char)*s), f);
		fputc(':', f);
		write_value(f, ms[i].name, ms[i].value);
		fputc('\n', f);
	}
	return 0;
}

/* ------------------------------------------------------------ signing */

static const char *const standard_headers[] = {
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-MD5",
    "Content-Type",
    "Date",
    "If-Modified-Since",
    "If-Match",
    "If-None-Match",
    "If-Unmodified-Since",
    "Range",
};

int azure_sharedkey_string_to_sign(const struct azure_cred *c, const char *verb, const char *url,
				   const struct azure_sharedkey_header *headers, size_t n,
				   char **out)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	*out = NULL;
	if (!c->account)
		return -EINVAL;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "%s\n", verb);
	for (size_t i = 0; i < sizeof(standard_headers) / sizeof(standard_headers[0]); i++) {
		write_value(f, standard_headers[i], find_header(headers, n, standard_headers[i]));
		fputc('\n', f);
	}
	rc = write_ms_headers(f, headers, n);
	if (!rc)
		rc = write_resource(f, c->account, url);
	if (ferror(f) && !rc)
		rc = -ENOMEM;
	if (fclose(f) != 0 && !rc)
		rc = -ENOMEM;
	if (rc)
		free(buf);
	else
		*out = buf;
	return rc;
}

int azure_sharedkey_sign(const struct azure_cred *c, const char *verb, const char *url,
			 const struct azure_sharedkey_header *headers, size_t n,
			 char *authorization, size_t len)
{
	char sig[64];
	char *sts;
	int rc;

	if (!c->key || !c->account)
		return -EINVAL;
	rc = azure_sharedkey_string_to_sign(c, verb, url, headers, n, &sts);
	if (rc)
		return rc;
	rc = azure_crypto_hmac_base64(c->key, c->key_len, sts, sig, sizeof(sig));
	free(sts);
	if (rc)
		return rc;
	if ((size_t)snprintf(authorization, len, "SharedKey %s:%s", c->account, sig) >= len)
		return -ENOSPC;
	return 0;
}
