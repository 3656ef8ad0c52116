/*
 * json.h - JSON text as imdbfs writes it everywhere (control files, cache
 * metadata): one cJSON object, pretty-printed, ending in a newline, and
 * always valid UTF-8.
 *
 * Strings from outside (an origin's ETag, a command written to .control/, a
 * path, an error text) may hold any bytes; JSON must not. Every string of a
 * printed object goes through json_utf8_copy() on the way out, so no caller
 * can forget one: an invalid sequence becomes U+FFFD, one per maximal
 * subpart as Unicode recommends (and Python's decode(errors="replace")
 * does), overlong forms and surrogates included.
 */
#ifndef IMDBFS_JSON_H
#define IMDBFS_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct cJSON;

/*
 * Prints o followed by a newline and deletes o (NULL is allowed, as from a
 * failed build). Strings that are not valid UTF-8 are printed repaired. The
 * text is owned by the caller, free with free(); NULL on ENOMEM.
 */
char *json_print_line(struct cJSON *o);

/* Whether src[0..len) is well-formed UTF-8. */
bool json_utf8_valid(const char *src, size_t len);

/*
 * Copies src[0..len) into dst as valid UTF-8 (invalid sequences replaced by
 * U+FFFD) and NUL-terminates it (cap >= 1). What does not fit in cap - 1
 * bytes is left out at a character boundary, never in the middle of one.
 * Returns the bytes written, without the NUL; a NUL in src ends the copy.
 */
size_t json_utf8_copy(char *dst, size_t cap, const char *src, size_t len);

#endif
