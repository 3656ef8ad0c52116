/* azure_auth.c - see azure_auth.h */
#include "azure_auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The published key of Azurite's development account: not a secret. */
#define DEV_KEY                                                                                    \
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#define MAX_QUERY_PARAMS   32
#define MAX_SIGNED_HEADERS 64

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

/* ------------------------------------------------------------ base64 */

static bool is_base64_char(int ch)
{
	return isalnum(ch) || ch == '+' || ch == '/';
}

/*
 * Strict: EVP_DecodeBlock skips blanks and does not report padding, so the
 * input is checked first and the padding subtracted. The result is owned by
 * the caller; free with free().
 */
static int base64_decode(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s), pad = 0;
	unsigned char *buf;
	int got;

	if (n == 0 || n % 4)
		return -EINVAL;
	while (pad < 2 && s[n - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < n - pad; i++)
		if (!is_base64_char((unsigned char)s[i]))
			return -EINVAL;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
	if (got < 0 || (size_t)got < pad) {
		OPENSSL_cleanse(buf, n / 4 * 3 + 1); /* it may hold part of a key */
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = (size_t)got - pad;
	return 0;
}

int azure_auth_base64(const void *buf, size_t len, char *out, size_t outlen)
{
	if ((len + 2) / 3 * 4 + 1 > outlen || len > 0x3fffffff)
		return -ENOSPC;
	EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
	return 0;
}

int azure_auth_hmac_base64(const unsigned char *key, size_t key_len, const char *msg, char *out,
			   size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (key_len > 0x7fffffff || !HMAC(EVP_sha256(), key, (int)key_len,
					  (const unsigned char *)msg, strlen(msg), mac, &mac_len))
		return -EIO;
	return azure_auth_base64(mac, mac_len, out, outlen) ? -EIO : 0;
}

int azure_auth_md5_base64(const void *buf, size_t len, char out[AZURE_MD5_BASE64_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!EVP_Digest(buf, len, md, &md_len, EVP_md5(), NULL))
		return -EIO;
	return azure_auth_base64(md, md_len, out, AZURE_MD5_BASE64_SIZE) ? -EIO : 0;
}

int azure_auth_uuid(char out[AZURE_UUID_SIZE])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, AZURE_UUID_SIZE,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return 0;
}

int azure_auth_random_hex(size_t nbytes, char *out)
{
	unsigned char b[64];

	if (nbytes > sizeof(b) || RAND_bytes(b, (int)nbytes) != 1)
		return -EIO;
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	out[2 * nbytes] = '\0';
	return 0;
}

void azure_auth_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}

/* ------------------------------------------------------------ credentials */

void azure_auth_free(struct azure_cred *c)
{
	free(c->endpoint);
	free(c->account);
	if (c->key)
		OPENSSL_cleanse(c->key, c->key_len);
	free(c->key);
	if (c->sas)
		OPENSSL_cleanse(c->sas, strlen(c->sas));
	free(c->sas);
	memset(c, 0, sizeof(*c));
}

/* Storage account names: 3 to 24 lowercase letters and digits. */
static bool valid_account(const char *a)
{
	size_t n = strlen(a);

	if (n < 3 || n > 24)
		return false;
	for (; *a; a++)
		if (!islower((unsigned char)*a) && !isdigit((unsigned char)*a))
			return false;
	return true;
}

/* Quoted back only if it looks like a name: it may be a secret pasted into the wrong variable. */
static int bad_account(const char *a, char *err, size_t errlen)
{
	static const char name_chars[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
	size_t n = strlen(a);

	if (n > 32 || strspn(a, name_chars) != n)
		return fail(err, errlen, "%s",
			    "invalid account name: 3 to 24 lowercase letters and digits");
	return fail(err, errlen, "invalid account name '%s': 3 to 24 lowercase letters and digits",
		    a);
}

/* An http(s) URL with a host and no query, copied without trailing '/'. */
static int copy_endpoint(const char *url, char **out, char *err, size_t errlen)
{
	const char *host = NULL;
	size_t n = strlen(url);

	if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	if (!host || !*host || *host == '/' || strpbrk(url, "?# \t\r\n"))
		return fail(err, errlen, "invalid %s: must be an http:// or https:// URL",
			    "BlobEndpoint");
	while (n && url[n - 1] == '/')
		n--;
	*out = strndup(url, n);
	return *out ? 0 : -ENOMEM;
}

static int default_endpoint(const char *protocol, const char *account, const char *suffix,
			    char **out)
{
	if (asprintf(out, "%s://%s.blob.%s", protocol, account, suffix) < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* True if the query string has a sig= parameter. */
static bool has_signature(const char *q)
{
	for (const char *p = q; p; p = strchr(p, '&')) {
		if (*p == '&')
			p++;
		if (strncmp(p, "sig=", 4) == 0 && p[4] && p[4] != '&')
			return true;
	}
	return false;
}

static int set_sas(struct azure_cred *c, const char *sas, char *err, size_t errlen)
{
	if (*sas == '?')
		sas++;
	if (!has_signature(sas))
		return fail(err, errlen, "invalid %s: it has no sig= parameter", "SAS token");
	c->sas = strdup(sas);
	return c->sas ? 0 : -ENOMEM;
}

static int set_key(struct azure_cred *c, const char *key, char *err, size_t errlen)
{
	int rc = base64_decode(key, &c->key, &c->key_len);

	if (rc == -EINVAL)
		return fail(err, errlen, "invalid %s: not base64", "account key");
	return rc;
}

/* Fills c from the parts; exactly one of key and sas is set. */
static int build(struct azure_cred *c, const char *account, const char *key, const char *sas,
		 const char *endpoint, char *err, size_t errlen)
{
	int rc;

	memset(c, 0, sizeof(*c));
	if (account && !valid_account(account))
		rc = bad_account(account, err, errlen);
	else if (account && !(c->account = strdup(account)))
		rc = -ENOMEM;
	else if (endpoint)
		rc = copy_endpoint(endpoint, &c->endpoint, err, errlen);
	else
		rc = default_endpoint("https", account, "core.windows.net", &c->endpoint);
	if (!rc)
		rc = key ? set_key(c, key, err, errlen) : set_sas(c, sas, err, errlen);
	if (rc)
		azure_auth_free(c);
	return rc;
}

int azure_auth_from_key(const char *account, const char *key_base64, struct azure_cred *c,
			char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!account || !*account)
		return fail(err, errlen, "%s", "an account key needs an account name");
	return build(c, account, key_base64, NULL, NULL, err, errlen);
}

int azure_auth_from_sas(const char *account, const char *sas, struct azure_cred *c, char *err,
			size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!account || !*account)
		return fail(err, errlen, "%s", "a SAS token needs an account name");
	return build(c, account, NULL, sas, NULL, err, errlen);
}

/* ------------------------------------------------------------ connection strings */

enum cs_key {
	CS_PROTOCOL,
	CS_ACCOUNT,
	CS_KEY,
	CS_SUFFIX,
	CS_BLOB_ENDPOINT,
	CS_SAS,
	CS_DEV,
	CS_COUNT,
};

static const char *const cs_names[CS_COUNT] = {
    [CS_PROTOCOL] = "DefaultEndpointsProtocol",
    [CS_ACCOUNT] = "AccountName",
    [CS_KEY] = "AccountKey",
    [CS_SUFFIX] = "EndpointSuffix",
    [CS_BLOB_ENDPOINT] = "BlobEndpoint",
    [CS_SAS] = "SharedAccessSignature",
    [CS_DEV] = "UseDevelopmentStorage",
};

/* Keys for the other services: valid in a connection string, of no use to us. */
static const char *const cs_ignored[] = {
    "QueueEndpoint",
    "TableEndpoint",
    "FileEndpoint",
    "DfsEndpoint",
    "BlobSecondaryEndpoint",
    "QueueSecondaryEndpoint",
    "TableSecondaryEndpoint",
    "FileSecondaryEndpoint",
    "DevelopmentStorageProxyUri",
};

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static bool is_ignored(const char *name)
{
	for (size_t i = 0; i < sizeof(cs_ignored) / sizeof(cs_ignored[0]); i++)
		if (strcasecmp(name, cs_ignored[i]) == 0)
			return true;
	return false;
}

/* An unknown name is quoted only if it looks like a name, not like a secret's tail. */
static int unknown_key(const char *name, char *err, size_t errlen)
{
	size_t n = strlen(name);
	bool plain = n > 0 && n <= 32;

	for (size_t i = 0; plain && i < n; i++)
		plain = isalpha((unsigned char)name[i]);
	if (!plain)
		return fail(err, errlen, "%s", "connection string has an unknown key");
	return fail(err, errlen, "connection string has an unknown key '%s'", name);
}

/* Splits s (modified in place) into v[key]; values point into s. */
static int split(char *s, const char *v[CS_COUNT], char *err, size_t errlen)
{
	char *save = NULL;

	for (char *seg = strtok_r(s, ";", &save); seg; seg = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(seg, '='), *name, *value;
		int k;

		if (!*trim(seg))
			continue;
		if (!eq)
			return fail(err, errlen, "%s",
				    "malformed connection string: a part is not Key=Value");
		*eq = '\0';
		name = trim(seg);
		value = trim(eq + 1);
		for (k = 0; k < CS_COUNT && strcasecmp(name, cs_names[k]) != 0; k++)
			;
		if (k == CS_COUNT && is_ignored(name))
			continue;
		if (k == CS_COUNT)
			return unknown_key(name, err, errlen);
		if (v[k])
			return fail(err, errlen, "connection string has %s twice", cs_names[k]);
		if (!*value)
			return fail(err, errlen, "connection string has an empty %s", cs_names[k]);
		v[k] = value;
	}
	return 0;
}

static int from_dev_storage(const char *v[CS_COUNT], struct azure_cred *c, char *err, size_t errlen)
{
	if (strcasecmp(v[CS_DEV], "true") != 0)
		return fail(err, errlen, "%s", "UseDevelopmentStorage must be true");
	for (int k = 0; k < CS_COUNT; k++)
		if (k != CS_DEV && v[k])
			return fail(err, errlen, "UseDevelopmentStorage=true does not take %s",
				    cs_names[k]);
	return build(c, AZURE_DEV_ACCOUNT, DEV_KEY, NULL, AZURE_DEV_ENDPOINT, err, errlen);
}

static int from_parts(const char *v[CS_COUNT], struct azure_cred *c, char *err, size_t errlen)
{
	const char *protocol = v[CS_PROTOCOL] ? v[CS_PROTOCOL] : "https";
	char *endpoint = NULL;
	int rc;

	if (strcasecmp(protocol, "http") != 0 && strcasecmp(protocol, "https") != 0)
		return fail(err, errlen, "%s", "DefaultEndpointsProtocol must be http or https");
	if (v[CS_KEY] && v[CS_SAS])
		return fail(err, errlen, "%s",
			    "connection string has both AccountKey and SharedAccessSignature");
	if (!v[CS_KEY] && !v[CS_SAS])
		return fail(err, errlen, "%s",
			    "connection string has neither AccountKey nor SharedAccessSignature");
	if (!v[CS_ACCOUNT] && (v[CS_KEY] || !v[CS_BLOB_ENDPOINT]))
		return fail(err, errlen, "%s", "connection string has no AccountName");
	if (!v[CS_BLOB_ENDPOINT]) {
		rc = default_endpoint(protocol, v[CS_ACCOUNT],
				      v[CS_SUFFIX] ? v[CS_SUFFIX] : "core.windows.net", &endpoint);
		if (rc)
			return rc;
	}
	rc = build(c, v[CS_ACCOUNT], v[CS_KEY], v[CS_SAS],
		   v[CS_BLOB_ENDPOINT] ? v[CS_BLOB_ENDPOINT] : endpoint, err, errlen);
	free(endpoint);
	return rc;
}

int azure_auth_parse(const char *connection_string, struct azure_cred *c, char *err, size_t errlen)
{
	const char *v[CS_COUNT] = {0};
	char *copy;
	int rc;

	memset(c, 0, sizeof(*c));
	copy = strdup(connection_string);
	if (!copy)
		return -ENOMEM;
	rc = split(copy, v, err, errlen);
	if (!rc)
		rc =
		    v[CS_DEV] ? from_dev_storage(v, c, err, errlen) : from_parts(v, c, err, errlen);
	OPENSSL_cleanse(copy, strlen(connection_string));
	free(copy);
	return rc;
}

int azure_auth_from_env(azure_env_fn env, struct azure_cred *c, char *err, size_t errlen)
{
	const char *cs = env("AZURE_STORAGE_CONNECTION_STRING");
	const char *account = env("AZURE_STORAGE_ACCOUNT_NAME");
	const char *key = env("AZURE_STORAGE_ACCOUNT_KEY");
	const char *sas = env("AZURE_STORAGE_SAS_TOKEN");

	memset(c, 0, sizeof(*c));
	if (cs && *cs)
		return azure_auth_parse(cs, c, err, errlen);
	if (key && *key)
		return azure_auth_from_key(account, key, c, err, errlen);
	if (sas && *sas)
		return azure_auth_from_sas(account, sas, c, err, errlen);
	snprintf(err, errlen,
		 "no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or "
		 "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or "
		 "AZURE_STORAGE_SAS_TOKEN");
	return -ENOENT;
}

/* ------------------------------------------------------------ string to sign */

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
 * curl_easy_unescape would bring libcurl into this module for three lines.
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

static const char *find_header(const struct azure_header *h, size_t n, const char *name)
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
	const struct azure_header *x = a, *y = b;

	return strcasecmp(x->name, y->name);
}

/*
 * x-ms-* headers in lower case, sorted. Azure orders them culture-aware,
 * which agrees with this byte order for names of letters, digits and '-';
 * the Blob client only sends such names.
 */
static int write_ms_headers(FILE *f, const struct azure_header *h, size_t n)
{
	struct azure_header ms[MAX_SIGNED_HEADERS];
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

int azure_auth_string_to_sign(const struct azure_cred *c, const char *verb, const char *url,
			      const struct azure_header *headers, size_t n, char **out)
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

int azure_auth_sign(const struct azure_cred *c, const char *verb, const char *url,
		    const struct azure_header *headers, size_t n, char *authorization, size_t len)
{
	char sig[64];
	char *sts;
	int rc;

	if (!c->key || !c->account)
		return -EINVAL;
	rc = azure_auth_string_to_sign(c, verb, url, headers, n, &sts);
	if (rc)
		return rc;
	rc = azure_auth_hmac_base64(c->key, c->key_len, sts, sig, sizeof(sig));
	free(sts);
	if (rc)
		return rc;
	if ((size_t)snprintf(authorization, len, "SharedKey %s:%s", c->account, sig) >= len)
		return -ENOSPC;
	return 0;
}

/* ------------------------------------------------------------ redaction */

/* Length of the secret starting at s, if s starts a sig= or AccountKey= value. */
static size_t secret_at(const char *text, const char *s, size_t *prefix)
{
	bool boundary = s == text || strchr("?&; \t\"'", s[-1]);

	if (boundary && strncasecmp(s, "sig=", 4) == 0)
		*prefix = 4;
	else if (boundary && strncasecmp(s, "AccountKey=", 11) == 0)
		*prefix = 11;
	else
		return 0;
	return strcspn(s + *prefix, "&; \t\r\n\"'");
}

void azure_auth_redact(const char *text, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	for (const char *s = text; *s && o + 1 < outlen;) {
		size_t prefix = 0, secret = secret_at(text, s, &prefix);

		if (prefix) {
			o += (size_t)snprintf(out + o, outlen - o, "%.*sREDACTED", (int)prefix, s);
			o = o < outlen ? o : outlen - 1;
			s += prefix + secret;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
}
