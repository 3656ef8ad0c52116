/*
 * azure_auth.h - Azure Storage credentials: where the Blob service is and
 * how requests are authorized, and keeping the secrets out of logs.
 *
 * A credential says where the Blob service is (endpoint) and how requests
 * are authorized: SharedKey (an account key; the signing is
 * azure_sharedkey.h's) or a SAS token appended to every query. It comes
 * from a connection string (every documented form), an account name + key,
 * or an account name + SAS token. A credential is immutable once built, so
 * any thread may sign with it without a lock; its secrets are wiped
 * (azure_crypto_wipe) when it is freed.
 *
 * Secrets never leave this module in text meant for people: parse errors are
 * one line that names the offending key or rule, never a key or signature,
 * and azure_auth_redact() masks them in anything that might be logged.
 *
 * The modules of the Azure client, bottom up: azure_crypto (OpenSSL),
 * azure_auth (credentials), azure_sharedkey (signing), azure_meta (blob
 * metadata rules), azure_request (one signed request on http.c's engine),
 * azure_listing (List Blobs pages), azure_blob (the operations).
 */
#ifndef IMDBFS_AZURE_AUTH_H
#define IMDBFS_AZURE_AUTH_H

#include <stddef.h>

/* x-ms-version of every request: Azurite 3.30 to 3.36 accept it. */
#define AZURE_API_VERSION "2024-05-04"

/* Azurite's well-known development account (UseDevelopmentStorage=true). */
#define AZURE_DEV_ACCOUNT  "devstoreaccount1"
#define AZURE_DEV_ENDPOINT "http://127.0.0.1:10000/devstoreaccount1"

struct azure_cred {
	char *endpoint;	    /* Blob service base URL, no trailing '/' */
	char *account;	    /* account name; NULL only for a SAS with a BlobEndpoint */
	unsigned char *key; /* decoded AccountKey; NULL with a SAS */
	size_t key_len;
	char *sas; /* SAS query without the leading '?'; NULL with a key */
};

/* Looks up an environment variable (getenv, or a table in tests). */
typedef const char *(*azure_env_fn)(const char *name);

/*
 * Each fills c (owned by the caller; free with azure_auth_free) and returns
 * 0, or -EINVAL with one line in err (-ENOMEM without). c is left empty on
 * error. The endpoint of an account without a BlobEndpoint is
 * https://ACCOUNT.blob.core.windows.net.
 */
int azure_auth_parse(const char *connection_string, struct azure_cred *c, char *err, size_t errlen);
int azure_auth_from_key(const char *account, const char *key_base64, struct azure_cred *c,
			char *err, size_t errlen);
int azure_auth_from_sas(const char *account, const char *sas, struct azure_cred *c, char *err,
			size_t errlen);

/*
 * AZURE_STORAGE_CONNECTION_STRING, else AZURE_STORAGE_ACCOUNT_NAME with
 * AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN. -ENOENT when none is
 * set, else as above.
 */
int azure_auth_from_env(azure_env_fn env, struct azure_cred *c, char *err, size_t errlen);

void azure_auth_free(struct azure_cred *c);

/*
 * Copies text to out with the value of every sig= query parameter and
 * AccountKey= connection-string key replaced by "REDACTED"; truncates to
 * outlen. For anything that may carry a URL or connection string to a log.
 */
void azure_auth_redact(const char *text, char *out, size_t outlen);

#endif
