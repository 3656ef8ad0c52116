/* azure_auth.c - see azure_auth.h */
#include "azure_auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure_crypto.h"

/* The published key of Azurite's development account: not a secret. */
#define DEV_KEY                                                                                    \
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

/* ------------------------------------------------------------ credentials */

void azure_auth_free(struct azure_cred *c)
{
	free(c->endpoint);
	free(c->account);
	if (c->key)
		azure_crypto_wipe(c->key, c->key_len);
	free(c->key);
	if (c->sas)
		azure_crypto_wipe(c->sas, strlen(c->sas));
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
	int rc = azure_crypto_base64_decode(key, &c->key, &c->key_len);

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
	azure_crypto_wipe(copy, strlen(connection_string));
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
