/*
 * test_azure_auth.c - Azure credentials and SharedKey signing: every
 * connection-string form and its errors (which must never quote a secret),
 * the string to sign for a few requests, signatures, redaction.
 *
 * The expected signatures were computed once, independently of this code,
 * with Debian's /usr/bin/python3:
 *   base64.b64encode(hmac.new(base64.b64decode(KEY), STRING_TO_SIGN.encode(),
 *                             hashlib.sha256).digest())
 * over the string-to-sign literals below, and pasted here as constants. The
 * HMAC vector ("bar", "foobarzoo") is the Azure Go SDK's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "azure_auth.h"
#include "azure_crypto.h"
#include "azure_sharedkey.h"
#include "secret_env.h"
#include "unit.h"

#define DEV_KEY                                                                                    \
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define DATE "Sun, 26 Oct 2025 02:00:00 GMT"

/* ------------------------------------------------------------ connection strings */

static void parse_ok(const char *cs, struct azure_cred *c)
{
	char err[256] = "";
	int rc = azure_auth_parse(cs, c, err, sizeof(err));

	if (rc)
		fail_msg("parse failed (%d): %s", rc, err);
}

static void test_full_form(void **state)
{
	struct azure_cred c;

	(void)state;
	parse_ok("DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey=YmFy;"
		 "EndpointSuffix=core.chinacloudapi.cn",
		 &c);
	assert_string_equal(c.endpoint, "https://myaccount.blob.core.chinacloudapi.cn");
	assert_string_equal(c.account, "myaccount");
	assert_int_equal(c.key_len, 3);
	assert_memory_equal(c.key, "bar", 3);
	assert_null(c.sas);
	azure_auth_free(&c);
	assert_null(c.endpoint);
}

static void test_defaults_and_case(void **state)
{
	struct azure_cred c;

	(void)state;
	/* Protocol and suffix default; key names in any case; blanks and empty parts ignored. */
	parse_ok(" accountname = myaccount ;; ACCOUNTKEY=YmFy; ", &c);
	assert_string_equal(c.endpoint, "https://myaccount.blob.core.windows.net");
	assert_string_equal(c.account, "myaccount");
	azure_auth_free(&c);
	parse_ok("DefaultEndpointsProtocol=http;AccountName=myaccount;AccountKey=YmFy", &c);
	assert_string_equal(c.endpoint, "http://myaccount.blob.core.windows.net");
	azure_auth_free(&c);
}

static void test_azurite_form(void **state)
{
	struct azure_cred c;

	(void)state;
	parse_ok("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" DEV_KEY
		 ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
		 "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
		 "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
		 &c);
	assert_string_equal(c.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
	assert_string_equal(c.account, "devstoreaccount1");
	assert_int_equal(c.key_len, 64);
	azure_auth_free(&c);
}

static void test_development_storage(void **state)
{
	struct azure_cred c;

	(void)state;
	parse_ok("UseDevelopmentStorage=true", &c);
	assert_string_equal(c.endpoint, AZURE_DEV_ENDPOINT);
	assert_string_equal(c.account, AZURE_DEV_ACCOUNT);
	assert_int_equal(c.key_len, 64);
	assert_null(c.sas);
	azure_auth_free(&c);
}

static void test_sas_forms(void **state)
{
	struct azure_cred c;

	(void)state;
	parse_ok("BlobEndpoint=https://myaccount.blob.core.windows.net/;"
		 "SharedAccessSignature=sv=2024-05-04&ss=b&srt=sco&sp=rl&sig=abc%2Bdef",
		 &c);
	assert_string_equal(c.endpoint, "https://myaccount.blob.core.windows.net");
	assert_null(c.account);
	assert_null(c.key);
	assert_string_equal(c.sas, "sv=2024-05-04&ss=b&srt=sco&sp=rl&sig=abc%2Bdef");
	azure_auth_free(&c);
	parse_ok("AccountName=myaccount;SharedAccessSignature=?sv=2024-05-04&sig=abc", &c);
	assert_string_equal(c.endpoint, "https://myaccount.blob.core.windows.net");
	assert_string_equal(c.sas, "sv=2024-05-04&sig=abc");
	azure_auth_free(&c);
}

static const struct {
	const char *cs;
	const char *message; /* a part of the error */
	const char *secret;  /* must not be in the error; NULL: none */
} bad_strings[] = {
    {"AccountName=myaccount;AccountKey=not*base64!", "not base64", "not*base64"},
    {"AccountName=myaccount;AccountKey=YmF", "not base64", "YmF"},
    {"AccountName=myaccount;AccountKey=YmFy;Foo=bar", "unknown key 'Foo'", NULL},
    {"AccountName=myaccount;AccountKey=YmFy;Zm9v+YmFy/secret=1", "unknown key", "Zm9v"},
    {"AccountKey=c2VjcmV0a2V5", "no AccountName", "c2VjcmV0a2V5"},
    {"AccountName=myaccount", "neither AccountKey nor SharedAccessSignature", NULL},
    {"", "neither", NULL},
    {"AccountName=myaccount;AccountKey=c2VjcmV0a2V5;SharedAccessSignature=sig=s3cr3t", "both",
     "s3cr3t"},
    {"AccountName=myaccount;c2VjcmV0a2V5c2VjcmV0", "not Key=Value", "c2VjcmV0a2V5"},
    {"AccountName=myaccount;AccountName=other;AccountKey=YmFy", "AccountName twice", NULL},
    {"AccountName=myaccount;AccountKey=", "empty AccountKey", NULL},
    {"DefaultEndpointsProtocol=ftp;AccountName=myaccount;AccountKey=YmFy", "http or https", NULL},
    {"UseDevelopmentStorage=false", "must be true", NULL},
    {"UseDevelopmentStorage=true;AccountName=myaccount", "does not take AccountName", NULL},
    {"AccountName=myaccount;AccountKey=YmFy;BlobEndpoint=ftp://host/x", "BlobEndpoint", NULL},
    {"BlobEndpoint=https://h/;SharedAccessSignature=sv=1&sp=r", "no sig=", NULL},
    {"AccountName=My_Account;AccountKey=YmFy", "invalid account name", NULL},
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_strings) / sizeof(bad_strings[0]); i++) {
		struct azure_cred c;
		char err[256] = "";
		int rc = azure_auth_parse(bad_strings[i].cs, &c, err, sizeof(err));

		if (rc != -EINVAL || !strstr(err, bad_strings[i].message))
			fail_msg("'%s': rc %d, error '%s', wanted '%s'", bad_strings[i].cs, rc, err,
				 bad_strings[i].message);
		if (bad_strings[i].secret && strstr(err, bad_strings[i].secret))
			fail_msg("'%s': the error quotes the secret: %s", bad_strings[i].cs, err);
		assert_null(strchr(err, '\n'));
		assert_null(c.endpoint);
		assert_null(c.key);
	}
}

/*
 * An account name that is not one may be a secret pasted into the wrong
 * variable (a whole connection string as AZURE_STORAGE_ACCOUNT_NAME): it is
 * quoted only when it looks like a name. Found by fuzz_azure_auth.
 */
static void test_bad_account_name_quoted_only_when_name_like(void **state)
{
	static const char pasted[] =
	    "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=c2VjcmV0a2V5c2VjcmV0";
	struct azure_cred c;
	char err[256] = "";

	(void)state;
	assert_int_equal(azure_auth_from_key(pasted, "YmFy", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "invalid account name"));
	if (strstr(err, "c2VjcmV0a2V5c2VjcmV0"))
		fail_msg("the error quotes the key: %s", err);
	assert_int_equal(
	    azure_auth_from_sas("?sv=1&sig=c2lnbmF0dXJlc2ln", "sv=1&sig=abc", &c, err, sizeof(err)),
	    -EINVAL);
	if (strstr(err, "c2lnbmF0dXJlc2ln"))
		fail_msg("the error quotes the signature: %s", err);
	assert_int_equal(azure_auth_from_key("My_Account", "YmFy", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'My_Account'"));
}

static const char *const env_table[][2] = {
    {"AZURE_STORAGE_ACCOUNT_NAME", "myaccount"},
    {"AZURE_STORAGE_ACCOUNT_KEY", "YmFy"},
    {"AZURE_STORAGE_SAS_TOKEN", "sv=1&sig=abc"},
    {"AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true"},
};
static unsigned env_rows; /* bit i: row i of env_table is set */

static const char *table_env(const char *name)
{
	for (size_t i = 0; i < sizeof(env_table) / sizeof(env_table[0]); i++)
		if ((env_rows & (1u << i)) && strcmp(env_table[i][0], name) == 0)
			return env_table[i][1];
	return NULL;
}

static void test_from_env(void **state)
{
	struct azure_cred c;
	char err[256];

	(void)state;
	env_rows = 0;
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "AZURE_STORAGE_CONNECTION_STRING"));
	env_rows = 1 | 2; /* name + key */
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), 0);
	assert_string_equal(c.account, "myaccount");
	assert_int_equal(c.key_len, 3);
	azure_auth_free(&c);
	env_rows = 1 | 4; /* name + SAS */
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), 0);
	assert_string_equal(c.sas, "sv=1&sig=abc");
	assert_null(c.key);
	azure_auth_free(&c);
	env_rows = 4; /* a SAS without an account name */
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs an account name"));
	assert_null(strstr(err, "abc"));
	env_rows = 2; /* a key without an account name */
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "YmFy"));
	env_rows = 1 | 2 | 4 | 8; /* the connection string wins */
	assert_int_equal(azure_auth_from_env(table_env, &c, err, sizeof(err)), 0);
	assert_string_equal(c.account, AZURE_DEV_ACCOUNT);
	azure_auth_free(&c);
}

/* ------------------------------------------------------------ signing */

static void test_hmac_vector(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(azure_crypto_hmac_base64((const unsigned char *)"bar", 3, "foobarzoo", out,
						  sizeof(out)),
			 0);
	assert_string_equal(out, "h5U0ATVX6SpbFX1H6GNuxIMeXXCILLoIvhflPtuQZ30=");
}

struct sign_case {
	const char *connection_string;
	const char *verb;
	const char *url;
	struct azure_sharedkey_header headers[8];
	size_t n;
	const char *string_to_sign;
	const char *signature; /* from python3, see the top */
};

static const struct sign_case sign_cases[] = {
    {
	/* A ranged read tied to an ETag, Azurite path-style: the account appears twice. */
	"UseDevelopmentStorage=true",
	"GET",
	"http://127.0.0.1:10000/devstoreaccount1/imdb/title.basics.tsv.gz",
	{{"x-ms-version", "2024-05-04"},
	 {"x-ms-date", DATE},
	 {"If-Match", "\"0x8DC\""},
	 {"x-ms-range", "bytes=0-99"},
	 {"User-Agent", "imdbfs"}},
	5,
	"GET\n\n\n\n\n\n\n\n\"0x8DC\"\n\n\n\n"
	"x-ms-date:" DATE "\nx-ms-range:bytes=0-99\nx-ms-version:2024-05-04\n"
	"/devstoreaccount1/devstoreaccount1/imdb/title.basics.tsv.gz",
	"ACqn2RTyeB0jrN0+QJ/Bfs85I8xLxgL2iZKoejYcG0Q=",
    },
    {
	/* Put Block: length and MD5 slots, header names lower-cased, the query decoded. */
	"AccountName=myaccount;AccountKey=YmFy",
	"PUT",
	"https://myaccount.blob.core.windows.net/mycontainer/my%20blob?comp=block&blockid=eA%3D%3D",
	{{"Content-Length", "4"},
	 {"Content-MD5", "kAFQmDzST7DWlj99KOF/cg=="},
	 {"X-MS-Lease-Id", " 0f8fad5b-d9cb-469f-a165-70867728950e "},
	 {"x-ms-date", DATE},
	 {"x-ms-version", "2024-05-04"}},
	5,
	"PUT\n\n\n4\nkAFQmDzST7DWlj99KOF/cg==\n\n\n\n\n\n\n\n"
	"x-ms-date:" DATE "\nx-ms-lease-id:0f8fad5b-d9cb-469f-a165-70867728950e\n"
	"x-ms-version:2024-05-04\n"
	"/myaccount/mycontainer/my%20blob\nblockid:eA==\ncomp:block",
	"BZl3xAl3Kf3q0FW0YMx1mV90xaobxlKFWCIdyq58dtU=",
    },
    {
	/* Create container: Content-Length 0 signs as empty. */
	"UseDevelopmentStorage=true",
	"PUT",
	"http://127.0.0.1:10000/devstoreaccount1/imdb?restype=container",
	{{"Content-Length", "0"}, {"x-ms-date", DATE}, {"x-ms-version", "2024-05-04"}},
	3,
	"PUT\n\n\n\n\n\n\n\n\n\n\n\n"
	"x-ms-date:" DATE "\nx-ms-version:2024-05-04\n"
	"/devstoreaccount1/devstoreaccount1/imdb\nrestype:container",
	"LZykThJqUMJy6ZPUkINjZeT5FCRPVJTeuvauvYZmKwc=",
    },
    {
	/* List: parameters sorted by lower-cased name, repeated ones joined with ','. */
	"AccountName=myaccount;AccountKey=YmFy",
	"GET",
	"https://myaccount.blob.core.windows.net/mycontainer?restype=container&comp=list&"
	"Include=snapshots&include=metadata&marker=a%20b%2Fc",
	{{"x-ms-date", DATE}, {"x-ms-version", "2024-05-04"}},
	2,
	"GET\n\n\n\n\n\n\n\n\n\n\n\n"
	"x-ms-date:" DATE "\nx-ms-version:2024-05-04\n"
	"/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots\nmarker:a b/c\n"
	"restype:container",
	"YSZxKKU6/5/c75sWEZ2+pNUpBBJoh1nqmCXhl93i9D8=",
    },
};

static void test_string_to_sign_and_signature(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
		const struct sign_case *t = &sign_cases[i];
		char auth[256], want[256];
		struct azure_cred c;
		char *sts;

		parse_ok(t->connection_string, &c);
		assert_int_equal(
		    azure_sharedkey_string_to_sign(&c, t->verb, t->url, t->headers, t->n, &sts), 0);
		assert_string_equal(sts, t->string_to_sign);
		free(sts);
		assert_int_equal(
		    azure_sharedkey_sign(&c, t->verb, t->url, t->headers, t->n, auth, sizeof(auth)),
		    0);
		snprintf(want, sizeof(want), "SharedKey %s:%s", c.account, t->signature);
		assert_string_equal(auth, want);
		azure_auth_free(&c);
	}
}

static void test_sign_needs_key(void **state)
{
	struct azure_cred c;
	char auth[128];

	(void)state;
	parse_ok("AccountName=myaccount;SharedAccessSignature=sv=1&sig=abc", &c);
	assert_int_equal(
	    azure_sharedkey_sign(&c, "GET", "https://h/c/b", NULL, 0, auth, sizeof(auth)), -EINVAL);
	azure_auth_free(&c);
}

/* ------------------------------------------------------------ redaction */

static void test_redact(void **state)
{
	char out[256];

	(void)state;
	azure_auth_redact("GET https://a.blob.core.windows.net/c/b?sv=1&sig=abc%2Bdef&se=2 failed",
			  out, sizeof(out));
	assert_string_equal(out, "GET https://a.blob.core.windows.net/c/b?sv=1&sig=REDACTED&se=2 "
				 "failed");
	azure_auth_redact("?sig=x", out, sizeof(out));
	assert_string_equal(out, "?sig=REDACTED");
	azure_auth_redact("AccountName=a;AccountKey=c2VjcmV0==;BlobEndpoint=x", out, sizeof(out));
	assert_string_equal(out, "AccountName=a;AccountKey=REDACTED;BlobEndpoint=x");
	azure_auth_redact("design=1&resig=2", out, sizeof(out));
	assert_string_equal(out, "design=1&resig=2");
	azure_auth_redact("x?sig=secret", out, 8); /* truncated, still no secret */
	assert_string_equal(out, "x?sig=R");
}

static const char *no_env(const char *name)
{
	(void)name;
	return NULL;
}

static const char *process_env(const char *name)
{
	return getenv(name);
}

/* The secrets leave the environment, and their bytes are overwritten where they were. */
static void test_scrub_environ(void **state)
{
	char *v;
	size_t n;

	(void)state;
	assert_false(secret_env_any(no_env));
	assert_int_equal(setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2024&sig=c2VjcmV0", 1), 0);
	assert_int_equal(setenv("AZURE_STORAGE_ACCOUNT_NAME", "account", 1), 0);
	assert_true(secret_env_any(process_env));
	v = getenv("AZURE_STORAGE_SAS_TOKEN");
	n = strlen(v);
	secret_env_scrub();
	assert_null(getenv("AZURE_STORAGE_SAS_TOKEN"));
	for (size_t i = 0; i < n; i++) /* glibc keeps what setenv allocated */
		assert_int_equal(v[i], 0);
	assert_false(secret_env_any(process_env));
	assert_string_equal(getenv("AZURE_STORAGE_ACCOUNT_NAME"), "account"); /* not a secret */
	assert_int_equal(unsetenv("AZURE_STORAGE_ACCOUNT_NAME"), 0);
}

int test_azure_auth_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_form),
	    cmocka_unit_test(test_defaults_and_case),
	    cmocka_unit_test(test_azurite_form),
	    cmocka_unit_test(test_development_storage),
	    cmocka_unit_test(test_sas_forms),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_bad_account_name_quoted_only_when_name_like),
	    cmocka_unit_test(test_from_env),
	    cmocka_unit_test(test_hmac_vector),
	    cmocka_unit_test(test_string_to_sign_and_signature),
	    cmocka_unit_test(test_sign_needs_key),
	    cmocka_unit_test(test_redact),
	    cmocka_unit_test(test_scrub_environ),
	};
	return cmocka_run_group_tests_name("azure_auth", tests, NULL, NULL);
}
