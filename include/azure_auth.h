/*
 * azure_auth.h - Azure Storage credentials and request signing; the only
 * module that sees OpenSSL.
 *
 * A credential says where the Blob service is (endpoint) and how requests
 * are authorized: SharedKey, an HMAC-SHA256 of a canonical "string to sign"
 * under the decoded account key, or a SAS token appended to every query. It
 * comes from a connection string (every documented form), an account name +
 * key, or an account name + SAS token. A credential is immutable once built,
 * so any thread may sign with it without a lock.
 *
 * Secrets never leave this module in text meant for people: parse errors are
 * one line that names the offending key or rule, never a key or signature,
 * and azure_auth_redact() masks them in anything that might be logged.
 *
 * The Blob client's other uses of OpenSSL (base64, MD5, random lease ids)
 * are here too, so that OpenSSL stays in one module.
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

struct azure_header {
	const char *name;
	const char *value;
};

/*
 * The SharedKey string to sign for a Blob request: verb, the standard header
 * slots (Content-Length "0" signs as empty), the x-ms-* headers lower-cased
 * and sorted, then /ACCOUNT + the URL's path as encoded + its query
 * parameters decoded, sorted, one "\nname:value" each. headers are all the
 * headers the request sends, names in any case. The returned string is owned
 * by the caller; free with free(). 0, -EINVAL (no account, URL without a
 * path) or -ENOMEM.
 */
int azure_auth_string_to_sign(const struct azure_cred *c, const char *verb, const char *url,
			      const struct azure_header *headers, size_t n, char **out);

/*
 * The Authorization header value "SharedKey ACCOUNT:SIGNATURE" for the
 * request. -EINVAL for a credential without a key (a SAS needs no header).
 */
int azure_auth_sign(const struct azure_cred *c, const char *verb, const char *url,
		    const struct azure_header *headers, size_t n, char *authorization, size_t len);

/* base64(HMAC-SHA256(key, msg)) into out (at least 45 bytes). 0 or -EIO. */
int azure_auth_hmac_base64(const unsigned char *key, size_t key_len, const char *msg, char *out,
			   size_t outlen);

/*
 * Copies text to out with the value of every sig= query parameter and
 * AccountKey= connection-string key replaced by "REDACTED"; truncates to
 * outlen. For anything that may carry a URL or connection string to a log.
 */
void azure_auth_redact(const char *text, char *out, size_t outlen);

/* base64 of len bytes into out; 0, or -ENOSPC when out is too small. */
int azure_auth_base64(const void *buf, size_t len, char *out, size_t outlen);

#define AZURE_MD5_BASE64_SIZE 25 /* 24 characters and a NUL */
/* base64(MD5(buf)), for Content-MD5. 0 or -EIO. */
int azure_auth_md5_base64(const void *buf, size_t len, char out[AZURE_MD5_BASE64_SIZE]);

#define AZURE_UUID_SIZE 37
/* A random version-4 UUID, the form lease ids take. 0 or -EIO. */
int azure_auth_uuid(char out[AZURE_UUID_SIZE]);

/* nbytes random bytes (RAND_bytes) as 2 * nbytes lowercase hex digits and a NUL. 0 or -EIO. */
int azure_auth_random_hex(size_t nbytes, char *out);

/* Overwrites n bytes at p in a way the compiler keeps (OPENSSL_cleanse), for secrets. */
void azure_auth_wipe(void *p, size_t n);

#endif
