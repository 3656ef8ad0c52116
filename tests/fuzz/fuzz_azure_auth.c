/*
 * fuzz_azure_auth.c - Azure credentials from the environment: connection
 * strings (azure_auth_parse), account + key and account + SAS token
 * (azure_auth_from_key, azure_auth_from_sas), and the redaction of secrets
 * in text bound for logs (azure_auth_redact).
 *
 * Input: byte 0 % 4 picks the parser; the rest is the connection string,
 * or ACCOUNT '\n' KEY-or-SAS, or the text to redact.
 *
 * Properties: a credential is built whole (an http(s) endpoint without a
 * trailing '/'; a key or a SAS, never both; an account unless a SAS came
 * with its own endpoint) and a key credential signs a request; a refusal is
 * one terminated line that does not quote the AccountKey or sig= value, and
 * leaves the credential empty. Redaction leaves nothing to redact: a second
 * pass changes nothing.
 */
#include <errno.h>
#include <strings.h>

#include "azure_auth.h"
#include "fuzz.h"

/* The value of the first "name=" in text (to the next ';' or '&'), or NULL. */
static char *value_of(const char *text, const char *name)
{
	const char *p = strcasestr(text, name);
	size_t n;

	if (!p)
		return NULL;
	p += strlen(name);
	n = strcspn(p, ";&");
	return fuzz_strndup((const uint8_t *)p, n);
}

/* Whether err quotes the secret (one that appears only once in the input, and is long). */
static bool quotes_secret(const char *err, const char *input, const char *name)
{
	char *v = value_of(input, name);
	bool leaked = false;

	if (v && strlen(v) >= 8) {
		const char *first = strstr(input, v);
		leaked = !strstr(first + 1, v) && strstr(err, v);
	}
	free(v);
	return leaked;
}

static void check_cred(int rc, const struct azure_cred *c, const char *err, const char *input)
{
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(!c->endpoint && !c->account && !c->key && !c->sas);
		if (rc == -EINVAL) {
			FUZZ_CHECK(memchr(err, '\0', 256) && err[0] && !strchr(err, '\n'));
			FUZZ_CHECK(!quotes_secret(err, input, "AccountKey="));
			FUZZ_CHECK(!quotes_secret(err, input, "sig="));
		}
		return;
	}
	FUZZ_CHECK(c->endpoint);
	FUZZ_CHECK(strncasecmp(c->endpoint, "http://", 7) == 0 ||
		   strncasecmp(c->endpoint, "https://", 8) == 0);
	FUZZ_CHECK(c->endpoint[strlen(c->endpoint) - 1] != '/');
	FUZZ_CHECK(!c->key != !c->sas);
	FUZZ_CHECK(c->account || c->sas);
	if (c->key) {
		static const struct azure_header h[] = {
		    {"x-ms-date", "Tue, 01 Dec 2026 13:20:05 GMT"},
		    {"x-ms-version", AZURE_API_VERSION}};
		char url[4096], auth[512];

		FUZZ_CHECK(c->account && c->key_len > 0);
		snprintf(url, sizeof(url), "%s/imdb-datasets/title.basics.tsv.gz?comp=lease",
			 c->endpoint);
		FUZZ_CHECK(azure_auth_sign(c, "PUT", url, h, 2, auth, sizeof(auth)) == 0);
		FUZZ_CHECK(strncmp(auth, "SharedKey ", 10) == 0);
	}
}

static void fuzz_redact(const char *text)
{
	size_t cap = 2 * strlen(text) + 64; /* no truncation: "sig=" becomes "sig=REDACTED" */
	char *once = malloc(cap), *twice = malloc(cap);

	FUZZ_CHECK(once && twice);
	azure_auth_redact(text, once, cap);
	azure_auth_redact(once, twice, cap);
	FUZZ_CHECK(strcmp(once, twice) == 0);
	free(once);
	free(twice);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct azure_cred c;
	char err[256], *text, *nl;
	int rc = 0;

	if (size < 1)
		return 0;
	text = fuzz_strndup(data + 1, size - 1);
	memset(err, 0, sizeof(err));
	switch (data[0] % 4) {
	case 0:
		rc = azure_auth_parse(text, &c, err, sizeof(err));
		break;
	case 1:
	case 2:
		nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		rc = data[0] % 4 == 1
			 ? azure_auth_from_key(text, nl ? nl + 1 : "", &c, err, sizeof(err))
			 : azure_auth_from_sas(text, nl ? nl + 1 : "", &c, err, sizeof(err));
		if (nl)
			*nl = '\n';
		break;
	default:
		fuzz_redact(text);
		free(text);
		return 0;
	}
	check_cred(rc, &c, err, text);
	if (!rc)
		azure_auth_free(&c);
	free(text);
	return 0;
}
