/*
 * azure_crypto.h - the Azure client's uses of OpenSSL, and the only module
 * that sees OpenSSL: strict base64 (account keys), HMAC-SHA256 (SharedKey
 * signatures), MD5 (Content-MD5), random ids (lease UUIDs, upload ids) and
 * wiping secrets so that the compiler keeps the writes.
 *
 * Stateless: any thread may call any function at once, without a lock.
 * OpenSSL's own initialisation is implicit (1.1 and later).
 */
#ifndef IMDBFS_AZURE_CRYPTO_H
#define IMDBFS_AZURE_CRYPTO_H

#include <stddef.h>

/* base64 of len bytes into out; 0, or -ENOSPC when out is too small. */
int azure_crypto_base64(const void *buf, size_t len, char *out, size_t outlen);

/*
 * Strict base64 decoding (no blanks, padding only at the end, length a
 * multiple of 4) into *out, owned by the caller: wipe it with
 * azure_crypto_wipe() if it is a secret, then free(). 0, -EINVAL (not
 * base64) or -ENOMEM; *out is NULL on error.
 */
int azure_crypto_base64_decode(const char *s, unsigned char **out, size_t *outlen);

/* base64(HMAC-SHA256(key, msg)) into out (at least 45 bytes). 0 or -EIO. */
int azure_crypto_hmac_base64(const unsigned char *key, size_t key_len, const char *msg, char *out,
			     size_t outlen);

#define AZURE_MD5_BASE64_SIZE 25 /* 24 characters and a NUL */
/* base64(MD5(buf)), for Content-MD5. 0 or -EIO. */
int azure_crypto_md5_base64(const void *buf, size_t len, char out[AZURE_MD5_BASE64_SIZE]);

#define AZURE_UUID_SIZE 37
/* A random version-4 UUID, the form lease ids take. 0 or -EIO. */
int azure_crypto_uuid(char out[AZURE_UUID_SIZE]);

/* nbytes (at most 64) random bytes as 2 * nbytes lowercase hex digits and a NUL. 0 or -EIO. */
int azure_crypto_random_hex(size_t nbytes, char *out);

/* Overwrites n bytes at p in a way the compiler keeps (OPENSSL_cleanse), for secrets. */
void azure_crypto_wipe(void *p, size_t n);

#endif
