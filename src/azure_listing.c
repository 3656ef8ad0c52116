/* azure_listing.c - see azure_listing.h */
#include "azure_listing.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "json.h"

static int64_t parse_int64(const char *v)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	return errno || end == v || *end || n < 0 ? -1 : (int64_t)n;
}

/* ------------------------------------------------------------ XML */

/* An element <tag attrs>inner</tag> or <tag attrs/> found in the response. */
struct xml_el {
	const char *attrs, *attrs_end;
	const char *in, *in_end;
	const char *after;
};

/*
 * The first element named tag in [p, end): 0, -ENOENT if there is none,
 * -EPROTO if it is not closed. By hand: the listing's schema is flat and
 * fixed, and an XML library for it would be the biggest dependency we have.
 * Elements of the same name do not nest in it.
 */
static int xml_find(const char *p, const char *end, const char *tag, struct xml_el *el)
{
	size_t n = strlen(tag);

	for (const char *s = p; s < end && (s = memchr(s, '<', (size_t)(end - s))); s++) {
		const char *gt, *close;

		if ((size_t)(end - s) < n + 2 || memcmp(s + 1, tag, n) != 0 ||
		    !(s[n + 1] == '>' || s[n + 1] == '/' || isspace((unsigned char)s[n + 1])))
			continue;
		gt = memchr(s + n + 1, '>', (size_t)(end - s - n - 1));
		if (!gt)
			return -EPROTO;
		el->attrs = s + n + 1;
		el->attrs_end = gt;
		el->in = el->in_end = el->after = gt + 1;
		if (gt[-1] == '/')
			return 0;
		for (close = gt + 1; close < end; close++)
			if ((size_t)(end - close) >= n + 3 && close[0] == '<' && close[1] == '/' &&
			    memcmp(close + 2, tag, n) == 0 && close[n + 2] == '>')
				break;
		if (close >= end)
			return -EPROTO;
		el->in_end = close;
		el->after = close + n + 3;
		return 0;
	}
	return -ENOENT;
}

static void put_utf8(char *o, size_t *k, unsigned long cp)
{
	if (cp < 0x80) {
		o[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		o[(*k)++] = (char)(0xc0 | (cp >> 6));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		o[(*k)++] = (char)(0xe0 | (cp >> 12));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		o[(*k)++] = (char)(0xf0 | (cp >> 18));
		o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* One entity at s (after '&'); its length through ';' in *used, 0 if malformed. */
static unsigned long xml_entity(const char *s, const char *end, size_t *used)
{
	static const struct {
		const char *name;
		char ch;
	} named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
	const char *semi = memchr(s, ';', (size_t)(end - s));
	unsigned long cp;
	char *stop;

	*used = 0;
	if (!semi || semi - s > 10)
		return 0;
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (strncmp(s, named[i].name, strlen(named[i].name)) == 0) {
			*used = strlen(named[i].name);
			return (unsigned long)named[i].ch;
		}
	if (*s != '#')
		return 0;
	cp = s[1] == 'x' ? strtoul(s + 2, &stop, 16) : strtoul(s + 1, &stop, 10);
	if (stop != semi || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*used = (size_t)(semi - s) + 1;
	return cp;
}

/* The text of [s, end) with entities decoded into out. -EPROTO if malformed or too long. */
static int xml_text(const char *s, const char *end, char *out, size_t cap)
{
	size_t k = 0;

	for (; s < end; s++) {
		char u[4];
		size_t un = 0, used = 0;

		if (*s == '&') {
			unsigned long cp = xml_entity(s + 1, end, &used);

			if (!used)
				return -EPROTO;
			put_utf8(u, &un, cp);
			s += used;
		} else {
			u[un++] = *s;
		}
		if (k + un >= cap)
			return -EPROTO;
		memcpy(out + k, u, un);
		k += un;
	}
	out[k] = '\0';
	return 0;
}

static int xml_field(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
	struct xml_el el;
	int rc = xml_find(p, end, tag, &el);

	out[0] = '\0';
	return rc == -ENOENT ? 0 : rc ? rc : xml_text(el.in, el.in_end, out, cap);
}

/* Names with characters XML cannot carry come percent-encoded (Encoded="true"). */
static int decode_name(const struct xml_el *el, char *name, size_t cap)
{
	char *plain;
	size_t len;
	size_t alen = (size_t)(el->attrs_end - el->attrs);

	if (!memmem(el->attrs, alen, "Encoded=\"true\"", 14))
		return 0;
	plain = http_unescape(name, &len);
	if (!plain)
		return -ENOMEM;
	snprintf(name, cap, "%.*s", (int)(len < cap ? len : cap), plain);
	free(plain);
	return len < cap ? 0 : -EPROTO;
}

/* ------------------------------------------------------------ a page */

static int parse_metadata(const char *p, const char *end, struct azure_meta *m)
{
	char tag[AZURE_META_NAME], value[AZURE_META_VALUE];
	struct xml_el el;

	while ((p = memchr(p, '<', (size_t)(end - p))) != NULL) {
		size_t n = strcspn(p + 1, "> /\t\r\n");

		if (n == 0 || n >= sizeof(tag) || p + 1 + n >= end)
			return -EPROTO;
		snprintf(tag, sizeof(tag), "%.*s", (int)n, p + 1);
		if (xml_find(p, end, tag, &el))
			return -EPROTO;
		if (xml_text(el.in, el.in_end, value, sizeof(value)) ||
		    !azure_meta_store(m, tag, n, value))
			m->overflow = true;
		p = el.after;
	}
	return 0;
}

static int parse_blob(const char *p, const char *end, struct azure_blob_item *it)
{
	char size[32];
	struct xml_el el;
	int rc;

	memset(it, 0, sizeof(*it));
	if (xml_find(p, end, "Name", &el) || xml_text(el.in, el.in_end, it->name, sizeof(it->name)))
		return -EPROTO;
	if ((rc = decode_name(&el, it->name, sizeof(it->name))))
		return rc;
	if (!json_utf8_valid(it->name, strlen(it->name)))
		return -EPROTO;
	if (xml_find(p, end, "Properties", &el) ||
	    xml_field(el.in, el.in_end, "Content-Length", size, sizeof(size)) ||
	    xml_field(el.in, el.in_end, "Etag", it->etag, sizeof(it->etag)) ||
	    xml_field(el.in, el.in_end, "Last-Modified", it->last_modified,
		      sizeof(it->last_modified)) ||
	    xml_field(el.in, el.in_end, "Content-Type", it->content_type, sizeof(it->content_type)))
		return -EPROTO;
	it->size = parse_int64(size);
	if (it->size < 0)
		return -EPROTO;
	if (it->last_modified[0])
		it->mtime = http_parse_date(it->last_modified);
	rc = xml_find(p, end, "Metadata", &el);
	return rc == -ENOENT ? 0 : rc ? rc : parse_metadata(el.in, el.in_end, &it->meta);
}

static int parse_blobs(const char *p, const char *end, struct azure_blob_item *it,
		       int (*each)(void *ctx, const struct azure_blob_item *it), void *ctx)
{
	struct xml_el el;
	int rc;

	while ((rc = xml_find(p, end, "Blob", &el)) == 0) {
		if ((rc = parse_blob(el.in, el.in_end, it)) || (rc = each(ctx, it)))
			return rc;
		p = el.after;
	}
	return rc == -ENOENT ? 0 : rc;
}

int azure_listing_parse(const char *body, size_t len,
			int (*each)(void *ctx, const struct azure_blob_item *it), void *ctx,
			char *marker, size_t markcap)
{
	const char *end = body + len;
	struct azure_blob_item *it;
	struct xml_el page, blobs;
	int rc;

	marker[0] = '\0';
	if (xml_find(body, end, "EnumerationResults", &page))
		return -EPROTO;
	rc = xml_field(page.in, page.in_end, "NextMarker", marker, markcap);
	if (rc)
		return rc;
	rc = xml_find(page.in, page.in_end, "Blobs", &blobs);
	if (rc)
		return rc == -ENOENT ? 0 : rc; /* no <Blobs>: an empty page */
	it = malloc(sizeof(*it));
	if (!it)
		return -ENOMEM;
	rc = parse_blobs(blobs.in, blobs.in_end, it, each, ctx);
	free(it);
	return rc;
}
