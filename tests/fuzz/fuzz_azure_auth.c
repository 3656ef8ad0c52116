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
#include <string.h>
#include <strings.h>

#include "azure_auth.h"
#include "azure_sharedkey.h"
#include "fuzz.h"

static int parse(int mode, char *text, struct azure_cred *c, char *err, size_t errlen)
{
	char *nl;
	int rc;

	if (mode == 0)
		return azure_auth_parse(text, c, err, errlen);
	nl = strchr(text, '\n');
	if (nl)
		*nl = '\0';
	rc = mode == 1 ? azure_auth_from_key(text, nl ? nl + 1 : "", c, err, errlen)
		       : azure_auth_from_sas(text, nl ? nl + 1 : "", c, err, errlen);
	if (nl)
		*nl = '\n';
	return rc;
}

/* Each letter or digit of [s, s + n) replaced by the next of its kind: the same shape. */
static void rotate(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch >= 'a' && ch <= 'z')
			s[i] = (char)('a' + (ch - 'a' + 1) % 26);
		else if (ch >= 'A' && ch <= 'Z')
			s[i] = (char)('A' + (ch - 'A' + 1) % 26);
		else if (ch >= '0' && ch <= '9')
			s[i] = (char)('0' + (ch - '0' + 1) % 10);
	}
}

/*
 * Whether the refusal err of text quotes the value of its first "name=" (to
 * the next ';' or '&'): it does if the same text with that value rotated is
 * refused with the rotated value in its error (and not only words of the
 * message that happen to be the value).
 */
static bool quotes_secret(int mode, const char *text, const char *err, const char *name)
{
	const char *p = strcasestr(text, name);
	char *copy, *value, err2[256] = "";
	struct azure_cred c;
	bool quoted;
	size_t n;

	if (!p)
		return false;
	p += strlen(name);
	n = strcspn(p, ";&");
	if (n < 4)
		return false;
	value = fuzz_strndup((const uint8_t *)p, n);
	copy = fuzz_strndup((const uint8_t *)text, strlen(text));
	rotate(copy + (p - text), n);
	if (parse(mode, copy, &c, err2, sizeof(err2)) == 0)
		azure_auth_free(&c);
	quoted = strstr(err, value) && memmem(err2, strlen(err2), copy + (p - text), n);
	free(value);
	free(copy);
	return quoted;
}

static void check_cred(int mode, int rc, const struct azure_cred *c, const char *err,
		       const char *input)
{
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(!c->endpoint && !c->account && !c->key && !c->sas);
		if (rc == -EINVAL) {
			FUZZ_CHECK(memchr(err, '\0', 256) && err[0] && !strchr(err, '\n'));
			FUZZ_CHECK(!quotes_secret(mode, input, err, "AccountKey="));
			FUZZ_CHECK(!quotes_secret(mode, input, err, "sig="));
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
		static const struct azure_sharedkey_header h[] = {
		    {"x-ms-date", "Tue, 01 Dec 2026 13:20:05 GMT"},
		    {"x-ms-version", AZURE_API_VERSION}};
		char url[4096], auth[512];

		FUZZ_CHECK(c->account && c->key_len > 0);
		snprintf(url, sizeof(url), "%s/imdb-datasets/title.basics.tsv.gz?comp=lease",
			 c->endpoint);
		FUZZ_CHECK(azure_sharedkey_sign(c, "PUT", url, h, 2, auth, sizeof(auth)) == 0);
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
	char err[256], *text;
	int mode, rc;

	if (size < 1)
		return 0;
	text = fuzz_strndup(data + 1, size - 1);
	mode = data[0] % 4;
	if (mode == 3) {
		fuzz_redact(text);
	} else {
		memset(err, 0, sizeof(err));
		rc = parse(mode, text, &c, err, sizeof(err));
		check_cred(mode, rc, &c, err, text);
		if (!rc)
			azure_auth_free(&c);
	}
	free(text);
	return 0;
}
