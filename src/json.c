/* json.c - see json.h */
#include "json.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/*
 * The length of the well-formed sequence at s[0..len) (Unicode table 3-7),
 * or 0 with *maximal set to the bytes of its longest valid prefix (at least
 * 1): those are replaced by one U+FFFD.
 */
static size_t sequence(const unsigned char *s, size_t len, size_t *maximal)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need, i;

	*maximal = 1;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 4;
	else
		return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
	if (s[0] == 0xe0)
		lo = 0xa0; /* overlong below U+0800 */
	else if (s[0] == 0xed)
		hi = 0x9f; /* surrogates U+D800..DFFF */
	else if (s[0] == 0xf0)
		lo = 0x90; /* overlong below U+10000 */
	else if (s[0] == 0xf4)
		hi = 0x8f; /* above U+10FFFF */
	for (i = 1; i < need; i++) {
		if (i >= len || s[i] < lo || s[i] > hi) {
			*maximal = i;
			return 0;
		}
		lo = 0x80, hi = 0xbf;
	}
	return need;
}

bool json_utf8_valid(const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, n, skip;

	while (i < len) {
		if (!(n = sequence(s + i, len - i, &skip)))
			return false;
		i += n;
	}
	return true;
}

size_t json_utf8_copy(char *dst, size_t cap, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, out = 0, n, skip;

	while (i < len && s[i]) {
		const char *from = src + i;
		size_t m = n = sequence(s + i, len - i, &skip);
		if (!n) {
			from = REPLACEMENT;
			m = 3;
			n = skip;
		}
		if (out + m > cap - 1)
			break;
		memcpy(dst + out, from, m);
		out += m;
		i += n;
	}
	dst[out] = '\0';
	return out;
}

/* Replaces *s by its repaired copy when it is not valid UTF-8. 0 or -1 (ENOMEM). */
static int repair(char **s)
{
	size_t len, cap;
	char *fixed;

	if (!*s || json_utf8_valid(*s, len = strlen(*s)))
		return 0;
	if (len > (SIZE_MAX - 1) / 3)
		return -1;
	cap = 3 * len + 1; /* each invalid byte at most one U+FFFD */
	if (!(fixed = cJSON_malloc(cap)))
		return -1;
	json_utf8_copy(fixed, cap, *s, len);
	cJSON_free(*s);
	*s = fixed;
	return 0;
}

/* Repairs every key and string value under o (our objects hold no references). */
static int repair_tree(cJSON *o)
{
	for (; o; o = o->next) {
		if (!(o->type & cJSON_StringIsConst) && repair(&o->string))
			return -1;
		if ((cJSON_IsString(o) || cJSON_IsRaw(o)) && !(o->type & cJSON_IsReference) &&
		    repair(&o->valuestring))
			return -1;
		if (o->child && !(o->type & cJSON_IsReference) && repair_tree(o->child))
			return -1;
	}
	return 0;
}

char *json_print_line(cJSON *o)
{
	char *text = o && !repair_tree(o) ? cJSON_Print(o) : NULL;
	char *line;
	size_t n;

	cJSON_Delete(o);
	if (!text)
		return NULL;
	n = strlen(text);
	line = realloc(text, n + 2);
	if (!line) {
		free(text);
		return NULL;
	}
	memcpy(line + n, "\n", 2);
	return line;
}
