/*
 * azure_sharedkey.h - SharedKey authorization of Blob requests: the
 * canonical "string to sign" (the standard header slots, the x-ms-* headers
 * canonicalized, the canonicalized resource) and its HMAC-SHA256 under the
 * credential's decoded account key.
 *
 * Pure functions of their arguments: a credential is immutable once built
 * (azure_auth.h), so any thread may sign with it at once, without a lock.
 * A credential with a SAS instead of a key signs nothing: its token rides
 * in every URL's query (azure_request.c puts it there).
 *
 * Canonicalization rules this module keeps (and its unit tests pin against
 * the service's documented examples):
 *   - a Content-Length of "0" signs as empty (x-ms-version >= 2015-02-21);
 *   - x-ms-* names are lower-cased and sorted byte-wise, which agrees with
 *     Azure's culture-aware order only for names of letters, digits and
 *     '-': the Blob client sends no others (azure_meta.h's name rule);
 *   - the resource is /ACCOUNT + the URL's path as encoded, then its query
 *     parameters decoded, names lower-cased, sorted, one "\nname:v1,v2"
 *     per distinct name.
 */
#ifndef IMDBFS_AZURE_SHAREDKEY_H
#define IMDBFS_AZURE_SHAREDKEY_H

#include <stddef.h>

#include "azure_auth.h"

/* One request header, as sent and as signed. */
struct azure_sharedkey_header {
	const char *name;
	const char *value;
};

/*
 * The SharedKey string to sign for a Blob request: verb, the standard header
 * slots, the x-ms-* headers, the resource (see above). headers are all the
 * headers the request sends, names in any case. The returned string is owned
 * by the caller; free with free(). 0, -EINVAL (no account, URL without a
 * path, too many query parameters or x-ms-* headers) or -ENOMEM.
 */
int azure_sharedkey_string_to_sign(const struct azure_cred *c, const char *verb, const char *url,
				   const struct azure_sharedkey_header *headers, size_t n,
				   char **out);

/*
 * The Authorization header value "SharedKey ACCOUNT:SIGNATURE" for the
 * request, into authorization (len bytes). -EINVAL for a credential without
 * a key (a SAS needs no header), -ENOSPC when it does not fit, or as above.
 */
int azure_sharedkey_sign(const struct azure_cred *c, const char *verb, const char *url,
			 const struct azure_sharedkey_header *headers, size_t n,
			 char *authorization, size_t len);

#endif
