/*
 * test_http_engine.c - http_perform()'s classification against a loopback
 * server started here: error pages kept and cut at HTTP_ERROR_BODY_MAX, a
 * stall, a cancel check, a refused connection, an upload, and the status
 * table. The server answers one connection with a canned behaviour.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "unit.h"

enum mode { ENDLESS_503, SHORT_404, STALL_200, BODY_200, ECHO_PUT };

struct server {
	int lfd;
	int port;
	enum mode mode;
	pthread_t thread;
	char got[8192]; /* the request as received */
	size_t got_len;
};

/* Reads the request: headers, then Content-Length bytes of body. */
static void read_request(struct server *s, int fd)
{
	const char *end = NULL;
	size_t want = 0;

	while (s->got_len < sizeof(s->got) - 1) {
		ssize_t n = read(fd, s->got + s->got_len, sizeof(s->got) - 1 - s->got_len);

		if (n <= 0)
			return;
		s->got_len += (size_t)n;
		s->got[s->got_len] = '\0';
		if (!end && (end = strstr(s->got, "\r\n\r\n"))) {
			const char *cl = strcasestr(s->got, "Content-Length:");

			want = (size_t)(end + 4 - s->got) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (end && s->got_len >= want)
			return;
	}
}

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

static void *serve(void *arg)
{
	struct server *s = arg;
	char page[1024];
	int fd = accept(s->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	read_request(s, fd);
	memset(page, 'x', sizeof(page));
	switch (s->mode) {
	case ENDLESS_503:
		say(fd, "HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n");
		while (write(fd, page, sizeof(page)) > 0)
			;
		break;
	case SHORT_404:
		say(fd, "HTTP/1.1 404 No\r\nContent-Length: 25\r\n\r\n<Error><Code>X</Code></Er");
		break;
	case STALL_200:
	case BODY_200:
		say(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabcd");
		/* Until the client hangs up (a stall) or 5 s. */
		poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 5000);
		break;
	case ECHO_PUT:
		say(fd, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
		break;
	}
	close(fd);
	return NULL;
}

static void server_start(struct server *s, enum mode mode)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 1), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	assert_int_equal(pthread_join(s->thread, NULL), 0);
	close(s->lfd);
}

struct sink {
	long responded; /* the status on_response saw */
	size_t body;
	int cancel_after; /* bytes; 0: never */
};

static int on_response(void *ctx, long status)
{
	((struct sink *)ctx)->responded = status;
	return 0;
}

static int on_body(void *ctx, const void *buf, size_t len)
{
	(void)buf;
	((struct sink *)ctx)->body += len;
	return 0;
}

static int cancelled(void *ctx)
{
	struct sink *k = ctx;

	return k->cancel_after && k->body >= (size_t)k->cancel_after;
}

static size_t body_read(void *ctx, char *buf, size_t cap)
{
	(void)ctx;
	memset(buf, 'p', cap);
	return cap;
}

static int perform(struct server *s, const char *verb, int64_t body_len, struct sink *k,
		   struct http_result *res, char *err)
{
	char url[64];
	struct http_header h = {"X-Test", "1"};
	struct http_call c = {.verb = verb,
			      .url = url,
			      .headers = &h,
			      .nheaders = 1,
			      .body_len = body_len,
			      .body_read = body_read,
			      .stall_seconds = 1,
			      .total_seconds = 20,
			      .cancelled = cancelled,
			      .cancel_ctx = k,
			      .on_response = on_response,
			      .on_body = on_body,
			      .ctx = k};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/c/b", s->port);
	return http_perform(&c, res, err, 256);
}

static struct http_result res;

static void test_http_engine_endless_error_page_is_cut(void **state)
{
	struct server s;
	struct sink k = {0};
	char err[256];

	(void)state;
	server_start(&s, ENDLESS_503);
	assert_int_equal(perform(&s, "GET", -1, &k, &res, err), 0);
	server_stop(&s);
	assert_int_equal(res.status, 503);
	assert_true(res.error_cut);
	assert_int_equal(res.error_len, HTTP_ERROR_BODY_MAX);
	assert_int_equal(k.responded, 0); /* an error page never reaches the sink */
	assert_int_equal(http_status_errno(res.status), -EAGAIN);
	assert_non_null(strstr(s.got, "X-Test: 1\r\n"));
}

static void test_http_engine_error_page_is_kept(void **state)
{
	struct server s;
	struct sink k = {0};
	char err[256];

	(void)state;
	server_start(&s, SHORT_404);
	assert_int_equal(perform(&s, "DELETE", -1, &k, &res, err), 0);
	server_stop(&s);
	assert_int_equal(res.status, 404);
	assert_false(res.error_cut);
	assert_string_equal(res.error_body, "<Error><Code>X</Code></Er");
	assert_int_equal(strncmp(s.got, "DELETE /c/b ", 12), 0);
}

static void test_http_engine_stall_is_eagain(void **state)
{
	struct server s;
	struct sink k = {0};
	char err[256];

	(void)state;
	server_start(&s, STALL_200);
	assert_int_equal(perform(&s, "GET", -1, &k, &res, err), -EAGAIN);
	server_stop(&s);
	assert_non_null(strstr(err, "stalled"));
	assert_int_equal(k.responded, 200);
	assert_int_equal(k.body, 4);
}

static void test_http_engine_cancel_is_ecanceled(void **state)
{
	struct server s;
	struct sink k = {.cancel_after = 1};
	char err[256];

	(void)state;
	server_start(&s, BODY_200);
	assert_int_equal(perform(&s, "GET", -1, &k, &res, err), -ECANCELED);
	server_stop(&s);
	assert_string_equal(err, "cancelled");
}

static void test_http_engine_upload_sends_the_body(void **state)
{
	struct server s;
	struct sink k = {0};
	char err[256];

	(void)state;
	server_start(&s, ECHO_PUT);
	assert_int_equal(perform(&s, "PUT", 3000, &k, &res, err), 0);
	server_stop(&s);
	assert_int_equal(res.status, 201);
	assert_int_equal(k.responded, 201); /* a 2xx without a body is answered at its end */
	assert_non_null(strstr(s.got, "Content-Length: 3000\r\n"));
	assert_null(strstr(s.got, "Expect:"));
	assert_int_equal(s.got_len - (size_t)(strstr(s.got, "\r\n\r\n") + 4 - s.got), 3000);
}

static void test_http_engine_refused_is_eagain(void **state)
{
	struct server s;
	struct sink k = {0};
	char err[256];
	int port;

	(void)state;
	server_start(&s, ECHO_PUT);
	port = s.port;
	/* Connect once so the thread ends, then close: the port refuses from now on. */
	assert_int_equal(perform(&s, "PUT", 0, &k, &res, err), 0);
	server_stop(&s);
	s.port = port;
	assert_int_equal(perform(&s, "GET", -1, &k, &res, err), -EAGAIN);
	assert_int_equal(res.status, 0);
}

static void test_http_engine_status_table(void **state)
{
	(void)state;
	assert_int_equal(http_status_errno(200), 0);
	assert_int_equal(http_status_errno(204), 0);
	assert_int_equal(http_status_errno(304), 0);
	assert_int_equal(http_status_errno(404), -ENOENT);
	assert_int_equal(http_status_errno(410), -ENOENT);
	assert_int_equal(http_status_errno(401), -EACCES);
	assert_int_equal(http_status_errno(403), -EACCES);
	assert_int_equal(http_status_errno(408), -EAGAIN);
	assert_int_equal(http_status_errno(429), -EAGAIN);
	assert_int_equal(http_status_errno(500), -EAGAIN);
	assert_int_equal(http_status_errno(400), -EPROTO);
	assert_int_equal(http_status_errno(302), -EPROTO);
}

static void test_http_engine_escape_and_date(void **state)
{
	size_t len;
	char *e, *u;

	(void)state;
	e = http_escape("a b/c", 5);
	assert_non_null(e);
	assert_string_equal(e, "a%20b%2Fc");
	u = http_unescape(e, &len);
	assert_non_null(u);
	assert_string_equal(u, "a b/c");
	assert_int_equal(len, 5);
	free(e);
	free(u);
	assert_int_equal(http_parse_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
	assert_int_equal(http_parse_date("not a date"), 0);
}

int test_http_engine_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_http_engine_endless_error_page_is_cut),
	    cmocka_unit_test(test_http_engine_error_page_is_kept),
	    cmocka_unit_test(test_http_engine_stall_is_eagain),
	    cmocka_unit_test(test_http_engine_cancel_is_ecanceled),
	    cmocka_unit_test(test_http_engine_upload_sends_the_body),
	    cmocka_unit_test(test_http_engine_refused_is_eagain),
	    cmocka_unit_test(test_http_engine_status_table),
	    cmocka_unit_test(test_http_engine_escape_and_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
