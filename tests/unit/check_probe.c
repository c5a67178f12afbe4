/* Unit tests of the health probe (nodeagent/probe.c): URL checks, and
 * probes against real listeners on loopback (TCP accept, HTTP 200/500,
 * refused, silent). */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/clock.h"
#include "nodeagent/probe.h"
#include "tests/lib/kftest.h"

static const char *const GOOD[] = {
        "tcp://127.0.0.1:7480",
        "http://127.0.0.1:7480/healthz",
        "http://localhost:80/",
        "http://[::1]:8080/ready",
};

START_TEST(parse_good)
{
	char err[256] = "";

	ck_assert_msg(probe_parse(GOOD[_i], err, sizeof(err)) == 0, "%s: %s", GOOD[_i], err);
}
END_TEST

static const struct {
	const char *url, *err;
} BAD[] = {
        {"127.0.0.1:7480", "'127.0.0.1:7480' is not tcp://HOST:PORT or http://HOST:PORT/PATH"},
        {"tcp://127.0.0.1", "'tcp://127.0.0.1' lacks HOST:PORT"},
        {"tcp://:80", "'tcp://:80' lacks HOST:PORT"},
        {"tcp://127.0.0.1:0", "'tcp://127.0.0.1:0': the port is not a number in 1..65535"},
        {"tcp://127.0.0.1:70000", "'tcp://127.0.0.1:70000': the port is not a number in 1..65535"},
        {"tcp://127.0.0.1:80x", "'tcp://127.0.0.1:80x': the port is not a number in 1..65535"},
        {"tcp://127.0.0.1:80/x", "'tcp://127.0.0.1:80/x': a tcp probe has no path"},
        {"https://127.0.0.1:443/", "'https://127.0.0.1:443/' is not tcp://HOST:PORT or "
                                   "http://HOST:PORT/PATH"},
};

START_TEST(parse_bad)
{
	char err[256] = "";

	ck_assert_int_eq(probe_parse(BAD[_i].url, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, BAD[_i].err);
	/* probe_check refuses the same way, without any I/O */
	ck_assert_int_eq(probe_check(BAD[_i].url, 100, err, sizeof(err)), -EINVAL);
}
END_TEST

/* A listener on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(int *ret_port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

struct server {
	int fd;
	const char *answer; /* NULL: accept and say nothing */
};

static void *serve_one(void *arg)
{
	struct server *s = arg;
	char buf[1024];
	int c = accept(s->fd, NULL, NULL);

	if (c < 0)
		return NULL;
	if (s->answer) {
		(void)!read(c, buf, sizeof(buf));
		(void)!write(c, s->answer, strlen(s->answer));
	} else {
		usleep(600 * 1000);
	}
	close(c);
	return NULL;
}

/* Probe PREFIX:PORT/PATH served by a one-shot server answering `answer`. */
static int probe_against(const char *prefix, const char *path, const char *answer, char *err,
                         size_t n)
{
	struct server s = {.answer = answer};
	char url[128];
	pthread_t t;
	int port, r;

	s.fd = listen_any(&port);
	snprintf(url, sizeof(url), "%s:%d%s", prefix, port, path);
	ck_assert_int_eq(pthread_create(&t, NULL, serve_one, &s), 0);
	r = probe_check(url, 300, err, n);
	pthread_join(t, NULL);
	close(s.fd);
	return r;
}

START_TEST(tcp_accepting_is_healthy)
{
	char err[256] = "";

	ck_assert_int_eq(probe_against("tcp://127.0.0.1", "", "", err, sizeof(err)), 0);
}
END_TEST

START_TEST(http_200_is_healthy)
{
	char err[256] = "";

	ck_assert_int_eq(probe_against("http://127.0.0.1", "/healthz",
	                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", err,
	                               sizeof(err)),
	                 0);
}
END_TEST

START_TEST(http_500_is_unhealthy)
{
	char err[256] = "";

	ck_assert_int_eq(
	        probe_against("http://127.0.0.1", "/healthz",
	                      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
	                      err, sizeof(err)),
	        -EIO);
	ck_assert_ptr_nonnull(strstr(err, "HTTP 500"));
}
END_TEST

START_TEST(http_silent_times_out)
{
	char err[256] = "";
	usec_t t0 = clock_mono_usec();

	ck_assert_int_eq(probe_against("http://127.0.0.1", "/", NULL, err, sizeof(err)),
	                 -ETIMEDOUT);
	/* within its deadline (300 ms), not the server's 600 ms */
	ck_assert_int_lt(clock_mono_usec() - t0, 800 * USEC_PER_MSEC);
	ck_assert_ptr_nonnull(strstr(err, "no answer within 300 ms"));
}
END_TEST

START_TEST(refused_is_unhealthy)
{
	char url[64], err[256] = "";
	int port, fd = listen_any(&port);

	close(fd); /* nothing listens there now */
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	ck_assert_int_eq(probe_check(url, 300, err, sizeof(err)), -ECONNREFUSED);
	ck_assert_ptr_nonnull(strstr(err, "connection refused"));
}
END_TEST

static Suite *probe_suite(void)
{
	Suite *s = suite_create("probe");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, parse_good, 0, (int)(sizeof(GOOD) / sizeof(GOOD[0])));
	tcase_add_loop_test(tc, parse_bad, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_test(tc, tcp_accepting_is_healthy);
	tcase_add_test(tc, http_200_is_healthy);
	tcase_add_test(tc, http_500_is_unhealthy);
	tcase_add_test(tc, http_silent_times_out);
	tcase_add_test(tc, refused_is_unhealthy);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(probe_suite(), NULL);
}
