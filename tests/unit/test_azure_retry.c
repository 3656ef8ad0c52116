/*
 * test_azure_retry.c - the container tier honours the service's Retry-After
 * through the one retry policy (retry.h), as the origin's downloads do: a
 * 503 ServerBusy or 429 from Azure says how long to back off, and the wait
 * before the next attempt is at least that (capped by the policy).
 *
 * Against a fake Blob service started here on loopback: it answers each
 * request on its own connection (as the client makes them), records when
 * each arrived, and is told which operation to refuse once with
 * "503 ServerBusy, Retry-After: N". No Azurite, no FUSE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "store_azure.h"
#include "tier.h"
#include "unit.h"

#define BUSY_S	   1	/* the Retry-After the fake service sends */
#define BASE_DELAY 0.05 /* retry_delay: far below BUSY_S; its cap (x60) is above it */
#define MAX_SEEN   32

struct fake {
	int lfd, port;
	pthread_t thread;
	const char *busy_op; /* "comp=block", "GET": refused once with 503 + Retry-After */
	int busy_left;
	int seen;		  /* requests answered */
	char line[MAX_SEEN][160]; /* their request lines */
	double at[MAX_SEEN];	  /* and when they arrived (clock_mono) */
	char proposed[64];	  /* the last x-ms-proposed-lease-id */
};

static void say(int fd, const char *text)
{
	size_t n = strlen(text);

	while (n) {
		ssize_t w = write(fd, text, n);

		if (w <= 0)
			return;
		text += w, n -= (size_t)w;
	}
}

/* Reads one request, headers and Content-Length bytes of body, into buf. */
static size_t read_request(int fd, char *buf, size_t cap)
{
	const char *end = NULL;
	size_t got = 0, want = 0;

	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (!end && (end = strstr(buf, "\r\n\r\n"))) {
			const char *cl = strcasestr(buf, "\r\nContent-Length:");

			want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (end && got >= want)
			break;
	}
	buf[got] = '\0';
	return got;
}

static void answer(struct fake *f, int fd, const char *req)
{
	const char *eol = strstr(req, "\r\n"), *id;
	char reply[512];

	if (f->seen < MAX_SEEN) {
		snprintf(f->line[f->seen], sizeof(f->line[0]), "%.*s", (int)(eol ? eol - req : 0),
			 req);
		f->at[f->seen] = clock_mono();
	}
	f->seen++;
	if ((id = strcasestr(req, "\r\nx-ms-proposed-lease-id:")) != NULL)
		sscanf(id + 26, " %63[^\r\n]", f->proposed);
	if (f->busy_left > 0 && eol &&
	    memmem(req, (size_t)(eol - req), f->busy_op, strlen(f->busy_op))) {
		f->busy_left--;
		snprintf(reply, sizeof(reply),
			 "HTTP/1.1 503 Server Busy\r\nRetry-After: %d\r\n"
			 "x-ms-error-code: ServerBusy\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n",
			 BUSY_S);
	} else if (strstr(req, "comp=list")) {
		static const char page[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
					   "<EnumerationResults><Blobs /></EnumerationResults>";
		snprintf(reply, sizeof(reply),
			 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 sizeof(page) - 1, page);
	} else if (strstr(req, "x-ms-lease-action: acquire")) {
		snprintf(reply, sizeof(reply),
			 "HTTP/1.1 201 Created\r\nx-ms-lease-id: %s\r\nContent-Length: 0\r\n"
			 "Connection: close\r\n\r\n",
			 f->proposed);
	} else if (strncmp(req, "PUT ", 4) == 0 && !strstr(req, "x-ms-lease-action")) {
		snprintf(reply, sizeof(reply),
			 "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	} else {
		snprintf(reply, sizeof(reply),
			 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	}
	say(fd, reply);
}

static void *serve(void *arg)
{
	struct fake *f = arg;
	static char req[64 * 1024];

	for (;;) {
		int fd = accept(f->lfd, NULL, NULL);

		if (fd < 0)
			return NULL; /* shut down */
		if (read_request(fd, req, sizeof(req)) > 0)
			answer(f, fd, req);
		close(fd);
	}
}

static const char *fake_env_value;

static const char *fake_env(const char *name)
{
	return strcmp(name, "AZURE_STORAGE_CONNECTION_STRING") == 0 ? fake_env_value : NULL;
}

/* Starts the fake service and opens the container tier on it. */
static void fake_start(struct fake *f, struct config *cfg, const char *busy_op)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	static char cs[256];
	char err[256];

	memset(f, 0, sizeof(*f));
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, serve, f), 0);

	memset(cfg, 0, sizeof(*cfg));
	cfg->retries = 2;
	cfg->retry_delay = BASE_DELAY;
	cfg->timeout = 10;
	cfg->container = "c";
	cfg->origin_shown = "https://datasets.example/";
	snprintf(cs, sizeof(cs),
		 "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
		 "BlobEndpoint=http://127.0.0.1:%d/devstoreaccount1",
		 f->port);
	fake_env_value = cs;
	assert_int_equal(store_azure_open(cfg, fake_env, err, sizeof(err)), 0);
	f->busy_op = busy_op; /* from here on: the opening requests went through */
	f->busy_left = 1;
}

static void fake_stop(struct fake *f)
{
	store_azure_close();
	shutdown(f->lfd, SHUT_RDWR);
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	close(f->lfd);
}

/* The index of the n-th (0-based) request whose line holds what, or -1. */
static int nth(const struct fake *f, const char *what, int n)
{
	for (int i = 0; i < f->seen && i < MAX_SEEN; i++)
		if (strstr(f->line[i], what) && n-- == 0)
			return i;
	return -1;
}

/* A Put Block refused with 503 ServerBusy is sent again after Retry-After, not after the
 * policy's own (much shorter) backoff. */
static void test_upload_waits_for_retry_after(void **state)
{
	struct meta m = {
	    .size = 100, .tsv_size = -1, .mtime = 1795999000, .fetched_at = 1795999500.0};
	char path[] = "/tmp/imdbfs-unit-azure-retry-XXXXXX", data[100], err[256];
	struct config cfg;
	struct fake f;
	int fd, first, again;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	memset(data, 'x', sizeof(data));
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	snprintf(m.url, sizeof(m.url), "https://datasets.example/title.ratings.tsv.gz");
	snprintf(m.etag, sizeof(m.etag), "\"abc\"");

	fake_start(&f, &cfg, "comp=block&");
	assert_int_equal(
	    store_azure_upload("title.ratings.tsv.gz", fd, &m, NULL, NULL, err, sizeof(err)), 0);
	fake_stop(&f);
	close(fd);

	first = nth(&f, "comp=block&", 0);
	again = nth(&f, "comp=block&", 1);
	assert_true(first >= 0 && again > first);
	assert_int_equal(nth(&f, "comp=block&", 2), -1);
	assert_true(nth(&f, "comp=blocklist", 0) > again); /* committed after the block */
	/* The policy alone would have waited BASE_DELAY +-25%. */
	assert_true(f.at[again] - f.at[first] >= BUSY_S - 0.05);
}

static int never(void *ctx)
{
	(void)ctx;
	return 0;
}

static int no_response(void *ctx, const struct http_response *rs)
{
	(void)ctx;
	(void)rs;
	return -EPROTO; /* the read is refused before it starts */
}

static int no_body(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return -EPROTO;
}

/* A read from the container refused with 503 ServerBusy hands the download's retry loop
 * the wait the service asked for (the origin's tier does the same: tier.h). */
static void test_container_read_reports_retry_after(void **state)
{
	struct meta v = {.size = 100};
	struct tier_get g = {.file = "title.ratings.tsv.gz", .version = &v, .cancelled = never};
	struct http_sink sink = {no_response, no_body, NULL};
	struct config cfg;
	struct fake f;
	double retry_after = -1;
	long status = 0;
	char err[256];

	(void)state;
	fake_start(&f, &cfg, "GET /devstoreaccount1/c/title.ratings.tsv.gz");
	assert_int_equal(tier_container.get(&g, &sink, &status, &retry_after, err, sizeof(err)),
			 -EAGAIN);
	fake_stop(&f);
	assert_true(strstr(err, "503") != NULL);
	assert_true(retry_after == BUSY_S);
}

int test_azure_retry_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upload_waits_for_retry_after),
	    cmocka_unit_test(test_container_read_reports_retry_after),
	};
	return cmocka_run_group_tests_name("azure_retry", tests, NULL, NULL);
}
