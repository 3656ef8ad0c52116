/* azure_crypto.c - see azure_crypto.h */
#include "azure_crypto.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_base64_char(int ch)
{
	return isalnum(ch) || ch == '+' || ch == '/';
}

/* Strict: EVP_DecodeBlock skips blanks and does not report padding, so the
 * input is checked first and the padding subtracted. */
int azure_crypto_base64_decode(const char *s, unsigned char **out, size_t *outlen)
{
	size_t n = strlen(s), pad = 0;
	unsigned char *buf;
	int got;

	*out = NULL;
	*outlen = 0;
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

int azure_crypto_base64(const void *buf, size_t len, char *out, size_t outlen)
{
	if ((len + 2) / 3 * 4 + 1 > outlen || len > 0x3fffffff)
		return -ENOSPC;
	EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
	return 0;
}

int azure_crypto_hmac_base64(const unsigned char *key, size_t key_len, const char *msg, char *out,
			     size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (key_len > 0x7fffffff || !HMAC(EVP_sha256(), key, (int)key_len,
					  (const unsigned char *)msg, strlen(msg), mac, &mac_len))
		return -EIO;
	return azure_crypto_base64(mac, mac_len, out, outlen) ? -EIO : 0;
}

int azure_crypto_md5_base64(const void *buf, size_t len, char out[AZURE_MD5_BASE64_SIZE])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (!EVP_Digest(buf, len, md, &md_len, EVP_md5(), NULL))
		return -EIO;
	return azure_crypto_base64(md, md_len, out, AZURE_MD5_BASE64_SIZE) ? -EIO : 0;
}

int azure_crypto_uuid(char out[AZURE_UUID_SIZE])
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

int azure_crypto_random_hex(size_t nbytes, char *out)
{
	unsigned char b[64];

	if (nbytes > sizeof(b) || RAND_bytes(b, (int)nbytes) != 1)
		return -EIO;
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	out[2 * nbytes] = '\0';
	return 0;
}

void azure_crypto_wipe(void *p, size_t n)
{
	OPENSSL_cleanse(p, n);
}
