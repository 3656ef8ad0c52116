/*
 * test_azure_blob.c - the parts of the Blob client that need no server: the
 * List Blobs page parser (untrusted XML: entities, encoded names, metadata,
 * paging markers, malformed pages), block ids, Content-MD5, lease ids and
 * the metadata rules. Requests themselves are tested against Azurite
 * (tests/e2e/test_azure_blob.py).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "azure_crypto.h"
#include "azure_blob.h"
#include "azure_listing.h"
#include "unit.h"

struct seen {
	int count;
	int stop_after; /* return 7 from the callback at this count; 0 never */
	struct azure_blob_item items[4];
};

static int collect(void *ctx, const struct azure_blob_item *it)
{
	struct seen *s = ctx;

	if (s->count < 4)
		s->items[s->count] = *it;
	s->count++;
	return s->count == s->stop_after ? 7 : 0;
}

#define PAGE(blobs, tail)                                                                          \
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>"                                               \
	"<EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" "         \
	"ContainerName=\"imdb\"><Prefix/><MaxResults>2</MaxResults><Blobs>" blobs "</Blobs>" tail  \
	"</EnumerationResults>"

#define BLOB(name, props, meta) "<Blob>" name "<Properties>" props "</Properties>" meta "</Blob>"

static const char two_blobs[] =
    PAGE(BLOB("<Name>title.basics.tsv.gz</Name>",
	      "<Creation-Time>Sun, 26 Oct 2025 01:00:00 GMT</Creation-Time>"
	      "<Last-Modified>Sun, 26 Oct 2025 02:00:00 GMT</Last-Modified>"
	      "<Etag>0x8DC</Etag><Content-Length>4700000000</Content-Length>"
	      "<Content-Type>application/gzip</Content-Type><BlobType>BlockBlob</BlobType>",
	      "<Metadata><etag>&quot;5f0c&quot;</etag><size>4700000000</size><empty /></Metadata>")
	     BLOB("<Name Encoded=\"true\">a%20b&amp;c</Name>",
		  "<Content-Length>0</Content-Length><Content-Type />", ""),
	 "<NextMarker>2!12!MDAwMDA-</NextMarker>");

static void test_listing_page(void **state)
{
	struct seen s = {0};
	char marker[64];

	(void)state;
	assert_int_equal(azure_listing_parse(two_blobs, strlen(two_blobs), collect, &s, marker, 64),
			 0);
	assert_int_equal(s.count, 2);
	assert_string_equal(marker, "2!12!MDAwMDA-");

	assert_string_equal(s.items[0].name, "title.basics.tsv.gz");
	assert_int_equal(s.items[0].size, 4700000000);
	assert_string_equal(s.items[0].etag, "0x8DC");
	assert_string_equal(s.items[0].content_type, "application/gzip");
	assert_string_equal(s.items[0].last_modified, "Sun, 26 Oct 2025 02:00:00 GMT");
	assert_int_equal(s.items[0].mtime, 1761444000);
	assert_int_equal(s.items[0].meta.count, 3);
	assert_string_equal(azure_meta_get(&s.items[0].meta, "etag"), "\"5f0c\"");
	assert_string_equal(azure_meta_get(&s.items[0].meta, "size"), "4700000000");
	assert_string_equal(azure_meta_get(&s.items[0].meta, "empty"), "");
	assert_false(s.items[0].meta.overflow);

	/* Entities first, then the percent-encoding of an Encoded name. */
	assert_string_equal(s.items[1].name, "a b&c");
	assert_int_equal(s.items[1].size, 0);
	assert_string_equal(s.items[1].content_type, "");
	assert_int_equal(s.items[1].meta.count, 0);
}

static void test_listing_last_and_empty_pages(void **state)
{
	static const char last[] = PAGE(
	    BLOB("<Name>x</Name>", "<Content-Length>1</Content-Length>", ""), "<NextMarker />");
	static const char empty[] = PAGE("", "<NextMarker/>");
	static const char no_blobs[] = "<EnumerationResults><NextMarker/></EnumerationResults>";
	struct seen s = {0};
	char marker[64] = "stale";

	(void)state;
	assert_int_equal(azure_listing_parse(last, strlen(last), collect, &s, marker, 64), 0);
	assert_int_equal(s.count, 1);
	assert_string_equal(marker, "");
	s.count = 0;
	assert_int_equal(azure_listing_parse(empty, strlen(empty), collect, &s, marker, 64), 0);
	assert_int_equal(azure_listing_parse(no_blobs, strlen(no_blobs), collect, &s, marker, 64),
			 0);
	assert_int_equal(s.count, 0);
}

static void test_listing_stops_on_request(void **state)
{
	struct seen s = {.stop_after = 1};
	char marker[64];

	(void)state;
	assert_int_equal(azure_listing_parse(two_blobs, strlen(two_blobs), collect, &s, marker, 64),
			 7);
	assert_int_equal(s.count, 1);
}

static const char *const malformed[] = {
    "",
    "<Error><Code>x</Code></Error>",
    PAGE("<Blob><Name>x</Name><Properties><Content-Length>1</Content-Length></Properties>", ""),
    PAGE(BLOB("<Name>x</Name>", "<Content-Length>12ab</Content-Length>", ""), ""),
    PAGE(BLOB("<Name>x</Name>", "<Content-Length>-1</Content-Length>", ""), ""),
    PAGE(BLOB("<Name>a&bogus;b</Name>", "<Content-Length>1</Content-Length>", ""), ""),
    PAGE(BLOB("<Name>a&#0;b</Name>", "<Content-Length>1</Content-Length>", ""), ""),
    PAGE(BLOB("<Name>x</Name>", "", ""), ""),			  /* no size */
    PAGE(BLOB("", "<Content-Length>1</Content-Length>", ""), ""), /* no name */
    PAGE(BLOB("<Name>x</Name>", "<Content-Length>1</Content-Length>", "<Metadata><k>v</Metadata>"),
	 ""),
    /* Names not UTF-8: raw, percent-encoded, a surrogate (found by fuzz_azure_blob). */
    PAGE(BLOB("<Name>a\xff"
	      "b</Name>",
	      "<Content-Length>1</Content-Length>", ""),
	 ""),
    PAGE(BLOB("<Name Encoded=\"true\">it%9Et</Name>", "<Content-Length>1</Content-Length>", ""),
	 ""),
    PAGE(BLOB("<Name>a&#xD800;b</Name>", "<Content-Length>1</Content-Length>", ""), ""),
};

static void test_listing_malformed(void **state)
{
	char marker[64];

	(void)state;
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		struct seen s = {0};
		int rc = azure_listing_parse(malformed[i], strlen(malformed[i]), collect, &s,
					     marker, sizeof(marker));

		if (rc != -EPROTO)
			fail_msg("page %zu: %d, wanted -EPROTO: %s", i, rc, malformed[i]);
	}
}

/*
 * The parser reads only the len bytes it is given: a page cut right after a
 * '<' is malformed, and the byte after it is not looked at (an exact-size
 * heap copy, so that check-asan sees any read past it). Found by
 * fuzz_azure_blob (a heap-buffer-overflow in xml_find).
 */
static void test_listing_reads_within_len(void **state)
{
	static const char *const cut[] = {"<EnumerationResults><", "<EnumerationResults><Blobs><",
					  "<EnumerationResults>x<"};
	char marker[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		size_t n = strlen(cut[i]);
		char *page = malloc(n);
		struct seen s = {0};

		assert_non_null(page);
		memcpy(page, cut[i], n);
		assert_int_equal(azure_listing_parse(page, n, collect, &s, marker, 64), -EPROTO);
		free(page);
	}
}

static void test_listing_limits(void **state)
{
	char page[8192], meta[4096] = "", marker[8];
	struct seen s = {0};
	size_t n = 0;

	(void)state;
	for (int i = 0; i <= AZURE_META_MAX; i++)
		n += (size_t)snprintf(meta + n, sizeof(meta) - n, "<k%d>v</k%d>", i, i);
	snprintf(page, sizeof(page),
		 PAGE(BLOB("<Name>x</Name>", "<Content-Length>1</Content-Length>",
			   "<Metadata>%s</Metadata>"),
		      "<NextMarker>longer than eight</NextMarker>"),
		 meta);
	/* A marker longer than its buffer is an error, not a truncated marker. */
	assert_int_equal(azure_listing_parse(page, strlen(page), collect, &s, marker, 8), -EPROTO);
	snprintf(page, sizeof(page),
		 PAGE(BLOB("<Name>x</Name>", "<Content-Length>1</Content-Length>",
			   "<Metadata>%s</Metadata>"),
		      ""),
		 meta);
	assert_int_equal(azure_listing_parse(page, strlen(page), collect, &s, marker, 8), 0);
	assert_int_equal(s.items[0].meta.count, AZURE_META_MAX);
	assert_true(s.items[0].meta.overflow);
}

/*
 * A page that ends in '<' inside an open element: the search for its end
 * tag stops at the last byte. Found by fuzz_azure_blob (a heap-buffer-
 * overflow of one byte under ASan: the page is not NUL-terminated).
 */
static void test_listing_ending_in_a_bracket(void **state)
{
	static const char text[] = "<EnumerationResults><Blobs><Blob><Name>a</Name><";
	size_t len = sizeof(text) - 1;
	char *page = malloc(len), marker[8];
	struct seen s = {0};

	(void)state;
	assert_non_null(page);
	memcpy(page, text, len); /* no NUL after it, as the fuzzer hands it over */
	assert_int_equal(azure_listing_parse(page, len, collect, &s, marker, sizeof(marker)),
			 -EPROTO);
	assert_int_equal(s.count, 0);
	free(page);
}

static void test_block_ids_and_digests(void **state)
{
	char id[AZURE_BLOCK_ID_SIZE], md5[AZURE_MD5_BASE64_SIZE], uuid[AZURE_UUID_SIZE];
	char uuid2[AZURE_UUID_SIZE], up[AZURE_UPLOAD_ID_SIZE], up2[AZURE_UPLOAD_ID_SIZE];
	const char *fixed = "0123456789abcdef01234567";

	(void)state;
	/* base64 of the upload id and 9 digits (python3 base64.b64encode). */
	assert_int_equal(azure_blob_block_id(fixed, 0, id), 0);
	assert_string_equal(id, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3MDAwMDAwMDAw");
	assert_int_equal(azure_blob_block_id(fixed, 42, id), 0);
	assert_string_equal(id, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3MDAwMDAwMDQy");
	assert_int_equal(azure_blob_block_id("ffffffffffffffffffffffff", AZURE_BLOCK_INDEX_MAX, id),
			 0);
	assert_string_equal(id, "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmOTk5OTk5OTk5");
	assert_int_equal(azure_blob_block_id(fixed, AZURE_BLOCK_INDEX_MAX + 1, id), -EINVAL);
	assert_int_equal(azure_blob_block_id("0123", 0, id), -EINVAL);
	assert_int_equal(azure_blob_block_id("0123456789abcdef0123456g", 0, id), -EINVAL);
	/* Two uploads: ids of the same index differ, and have the same length. */
	assert_int_equal(azure_blob_upload_id(up), 0);
	assert_int_equal(azure_blob_upload_id(up2), 0);
	assert_int_equal(strlen(up), AZURE_UPLOAD_ID_SIZE - 1);
	assert_string_not_equal(up, up2);
	assert_int_equal(azure_blob_block_id(up, 7, id), 0);
	assert_int_equal(strlen(id), AZURE_BLOCK_ID_SIZE - 1);
	assert_int_equal(
	    strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
	    AZURE_BLOCK_ID_SIZE - 1);
	/* base64(md5(b"hello")) from python3 hashlib. */
	assert_int_equal(azure_crypto_md5_base64("hello", 5, md5), 0);
	assert_string_equal(md5, "XUFAKrxLKna5cZ2REBfFkg==");
	assert_int_equal(azure_crypto_uuid(uuid), 0);
	assert_int_equal(azure_crypto_uuid(uuid2), 0);
	assert_int_equal(strlen(uuid), 36);
	assert_int_equal(uuid[14], '4');
	assert_int_equal(strspn(uuid, "0123456789abcdef-"), 36);
	assert_string_not_equal(uuid, uuid2);
}

static void test_meta_rules(void **state)
{
	struct azure_meta m = {0};
	char name[16];

	(void)state;
	assert_int_equal(azure_meta_set(&m, "etag", "\"abc\""), 0);
	assert_int_equal(azure_meta_set(&m, "etag", "\"def\""), 0); /* replaces */
	assert_int_equal(m.count, 1);
	assert_string_equal(azure_meta_get(&m, "ETag"), "\"def\"");
	assert_null(azure_meta_get(&m, "size"));
	/* Only [a-z][a-z0-9]*: other names sign differently under Azure's header order. */
	assert_int_equal(azure_meta_set(&m, "Bad", "x"), -EINVAL);
	assert_int_equal(azure_meta_set(&m, "tsv_size", "x"), -EINVAL);
	assert_int_equal(azure_meta_set(&m, "1st", "x"), -EINVAL);
	assert_int_equal(azure_meta_set(&m, "ok", " padded"), -EINVAL);
	assert_int_equal(azure_meta_set(&m, "ok", "two\nlines"), -EINVAL);
	for (int i = 1; i < AZURE_META_MAX; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		assert_int_equal(azure_meta_set(&m, name, "v"), 0);
	}
	assert_int_equal(azure_meta_set(&m, "full", "v"), -ENOSPC);
}

int test_azure_blob_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_listing_page),
	    cmocka_unit_test(test_listing_last_and_empty_pages),
	    cmocka_unit_test(test_listing_stops_on_request),
	    cmocka_unit_test(test_listing_malformed),
	    cmocka_unit_test(test_listing_reads_within_len),
	    cmocka_unit_test(test_listing_limits),
	    cmocka_unit_test(test_listing_ending_in_a_bracket),
	    cmocka_unit_test(test_block_ids_and_digests),
	    cmocka_unit_test(test_meta_rules),
	};
	return cmocka_run_group_tests_name("azure_blob", tests, NULL, NULL);
}
