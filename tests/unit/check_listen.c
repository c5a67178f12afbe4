/* check_listen: `http.listen` means the same to the config check and to the
 * HTTP server.
 *
 * Every address of the table goes through both readers: the conf file
 * (agent_conf_load(), what --config-test runs) and http_parse_listen() (what
 * http_start() runs).  An address one accepts the other must accept, and a
 * refusal must read the same in both, so that a value --config-test passes
 * can never stop the agent at start.  The one difference is policy, not
 * syntax: a conf file may not ask for port 0, which would bind a port
 * picked at random that no scraper can find.  Accepted forms are then bound
 * for real on loopback. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/conf.h"
#include "lib/util.h"
#include "nodeagent/agent_conf.h"
#include "nodeagent/http.h"
#include "tests/lib/kftest.h"

struct listen_case {
	const char *in;
	bool ok;          /* both readers accept it */
	const char *says; /* when refused: part of the reason */
	int family;       /* when accepted */
	const char *host;
	unsigned port;
};

#define GOOD(in, family, host, port)                                                               \
	{                                                                                          \
		in, true, NULL, family, host, port                                                 \
	}
#define BAD(in, says)                                                                              \
	{                                                                                          \
		in, false, says, AF_UNSPEC, NULL, 0                                                \
	}

static const struct listen_case cases[] = {
        GOOD("127.0.0.1:9464", AF_INET, "127.0.0.1", 9464),
        GOOD("0.0.0.0:9464", AF_INET, "0.0.0.0", 9464),
        GOOD(":9464", AF_INET, "0.0.0.0", 9464),
        GOOD("*:9464", AF_INET, "0.0.0.0", 9464),
        GOOD("localhost:9464", AF_INET, "127.0.0.1", 9464),
        GOOD("10.1.2.3:1", AF_INET, "10.1.2.3", 1),
        GOOD("127.0.0.1:65535", AF_INET, "127.0.0.1", 65535),
        GOOD("[::1]:9464", AF_INET6, "::1", 9464),
        GOOD("[::]:9100", AF_INET6, "::", 9100),
        GOOD("[fe80::1:2]:80", AF_INET6, "fe80::1:2", 80),
        BAD("9464", "is not HOST:PORT"),
        BAD("127.0.0.1", "is not HOST:PORT"),
        BAD("127.0.0.1:", "the port is missing"),
        BAD("127.0.0.1:http", "is not a number"),
        BAD("127.0.0.1:-1", "is not a number"),
        BAD("127.0.0.1:65536", "not in 0..65535"),
        BAD("127.0.0.1:99999999999999999999", "not in 0..65535"),
        BAD("::1:9464", "needs brackets"),
        BAD("::9464", "needs brackets"),
        BAD("example.com:80", "not resolved"),
        BAD("my-host:9464", "not resolved"),
        BAD("1.2.3:80", "not an IPv4 address"),
        BAD("256.1.1.1:80", "not an IPv4 address"),
        BAD("[::1]", "want ':PORT' after ']'"),
        BAD("[::1]9464", "want ':PORT' after ']'"),
        BAD("[::1:9464", "missing ']'"),
        BAD("[::1]:", "the port is missing"),
        BAD("[]:80", "not an IPv6 address"),
        BAD("[1.2.3.4]:80", "not an IPv6 address"),
        BAD("[::g]:80", "not an IPv6 address"),
        BAD("[example.com]:80", "not an IPv6 address"),
};

/* Load a conf file of node.name and http.listen = in.  Returns what
 * agent_conf_load() returned; on failure the one message, with its
 * `PATH:LINE: ` prefix replaced by `LINE: `, in msg. */
static int conf_load_listen(const char *in, struct agent_conf **ret, char *msg, size_t msglen)
{
	char path[] = "/tmp/check_listen.XXXXXX";
	struct conf_errors errs = {0};
	size_t plen = strlen(path);
	FILE *f;
	int fd, r;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "node.name = node-1\nhttp.listen = %s\n", in);
	ck_assert_int_eq(fclose(f), 0);
	*ret = NULL;
	msg[0] = '\0';
	r = agent_conf_load(path, ret, &errs);
	if (r < 0) {
		ck_assert_msg(errs.n == 1, "'%s': %zu messages, want 1", in, errs.n);
		ck_assert_msg(strncmp(errs.msg[0], path, plen) == 0 && errs.msg[0][plen] == ':',
		              "bad prefix: %s", errs.msg[0]);
		snprintf(msg, msglen, "%s", errs.msg[0] + plen + 1);
	}
	conf_errors_done(&errs);
	(void)unlink(path);
	return r;
}

START_TEST(test_both_readers_agree)
{
	const struct listen_case *c = &cases[_i];
	struct sockaddr_storage ss;
	struct agent_conf *conf = NULL;
	char perr[256] = "", cmsg[512], want[512], host[INET6_ADDRSTRLEN];
	socklen_t len = 0;
	int pr, cr;

	pr = http_parse_listen(c->in, &ss, &len, perr, sizeof(perr));
	cr = conf_load_listen(c->in, &conf, cmsg, sizeof(cmsg));

	if (c->ok) {
		ck_assert_msg(pr == 0, "server refuses '%s': %s", c->in, perr);
		ck_assert_msg(cr == 0, "--config-test refuses '%s': %s", c->in, cmsg);
		ck_assert_str_eq(conf->http.listen, c->in);
		ck_assert_int_eq(ss.ss_family, c->family);
		if (c->family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

			ck_assert_uint_eq(len, sizeof(*sin));
			ck_assert_uint_eq(ntohs(sin->sin_port), c->port);
			ck_assert_ptr_nonnull(
			        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)));
		} else {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

			ck_assert_uint_eq(len, sizeof(*sin6));
			ck_assert_uint_eq(ntohs(sin6->sin6_port), c->port);
			ck_assert_ptr_nonnull(
			        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)));
		}
		ck_assert_str_eq(host, c->host);
	} else {
		ck_assert_msg(pr == -EINVAL, "server accepts '%s' (%d)", c->in, pr);
		ck_assert_msg(cr == -EINVAL, "--config-test accepts '%s' (%d)", c->in, cr);
		ck_assert_msg(strstr(perr, c->says), "'%s': '%s' lacks '%s'", c->in, perr, c->says);
		ck_assert_msg(strstr(perr, c->in), "'%s': '%s' does not name it", c->in, perr);
		/* The conf reports the parser's own words at the key's line. */
		snprintf(want, sizeof(want), "2: http.listen: %s", perr);
		ck_assert_str_eq(cmsg, want);
	}
	ck_assert_ptr_null(agent_conf_free(conf));
}
END_TEST

/* Port 0 parses (tests bind a free port that way) but a conf file may not
 * ask for it: nothing could scrape a port picked at random. */
START_TEST(test_conf_refuses_port_0)
{
	static const char *const zero[] = {"127.0.0.1:0", ":0", "[::1]:0"};
	struct sockaddr_storage ss;
	struct agent_conf *conf = NULL;
	char perr[256], cmsg[512];
	socklen_t len;

	for (size_t i = 0; i < ELEMENTSOF(zero); i++) {
		ck_assert_int_eq(http_parse_listen(zero[i], &ss, &len, perr, sizeof(perr)), 0);
		ck_assert_int_eq(conf_load_listen(zero[i], &conf, cmsg, sizeof(cmsg)), -EINVAL);
		ck_assert_msg(strstr(cmsg, "2: http.listen: '") == cmsg && strstr(cmsg, zero[i]) &&
		                      strstr(cmsg, "port 0") && strstr(cmsg, "1..65535"),
		              "%s", cmsg);
	}
}
END_TEST

/* An empty value turns the endpoint off; it is not an address. */
START_TEST(test_conf_empty_is_off)
{
	struct sockaddr_storage ss;
	struct agent_conf *conf = NULL;
	char perr[256], cmsg[512];
	socklen_t len;

	ck_assert_int_eq(conf_load_listen("", &conf, cmsg, sizeof(cmsg)), 0);
	ck_assert_str_eq(conf->http.listen, "");
	ck_assert_ptr_null(agent_conf_free(conf));
	ck_assert_int_eq(http_parse_listen("", &ss, &len, perr, sizeof(perr)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(perr, "empty"));
}
END_TEST

/* The accepted forms really bind (on loopback or any address, port 0). */
START_TEST(test_accepted_forms_bind)
{
	static const char *const forms[] = {"127.0.0.1:0", "localhost:0", ":0", "*:0", "[::1]:0"};
	const char *in = forms[_i];
	struct http_options o = {.listen = in};
	struct http_server *s = NULL;
	char err[256] = "";
	int r;

	r = http_start(&o, &s, err, sizeof(err));
	if (r == -EAFNOSUPPORT || r == -EADDRNOTAVAIL) {
		/* A machine without IPv6 on loopback: the form parsed, the
		 * kernel has no such address. */
		ck_assert_msg(in[0] == '[', "'%s': %s", in, err);
		return;
	}
	ck_assert_msg(r == 0, "'%s': %d %s", in, r, err);
	ck_assert_uint_gt(http_port(s), 0);
	ck_assert_ptr_null(http_stop(s));
}
END_TEST

static Suite *listen_suite(void)
{
	Suite *s = suite_create("listen");
	TCase *tc;

	tc = tcase_create("both_readers_agree");
	tcase_add_loop_test(tc, test_both_readers_agree, 0, (int)ELEMENTSOF(cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("conf_policy");
	tcase_add_test(tc, test_conf_refuses_port_0);
	tcase_add_test(tc, test_conf_empty_is_off);
	suite_add_tcase(s, tc);

	tc = tcase_create("bind");
	tcase_add_loop_test(tc, test_accepted_forms_bind, 0, 5);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(listen_suite(), NULL);
}
