/* check_faultproxy: the fault proxy's rules and HTTP head parsing, without
 * a network: which requests a rule set picks (skip, count, prob, order),
 * that a bad file is refused whole with every bad line named, that a
 * changed file is reloaded and a bad one keeps the previous rules, and how
 * message framing is read from heads. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/kftest.h"
#include "tests/proxy/fp_http.h"
#include "tests/proxy/fp_rules.h"

#define LEASE "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l1"

static struct fp_ruleset *parse(const char *text, int *ret_n, char *err, size_t errlen)
{
	struct fp_ruleset *rs = NULL;
	FILE *f = fmemopen((void *)text, strlen(text), "r");

	ck_assert_ptr_nonnull(f);
	*ret_n = fp_ruleset_parse("rules", f, 7, 600000, &rs, err, errlen);
	fclose(f);
	return rs;
}

static const char *act(struct fp_ruleset *rs, const char *method, const char *target)
{
	static struct fp_verdict v;

	fp_ruleset_match(rs, method, target, &v);
	return v.text;
}

START_TEST(skip_then_count)
{
	char err[512] = "";
	int n;
	struct fp_ruleset *rs = parse("# a comment\n\n"
	                              "PUT ^/apis/coordination.k8s.io/v1/namespaces/[^/]+/leases/ "
	                              "skip=2 count=1 drop_response   # trailing\n",
	                              &n, err, sizeof(err));

	ck_assert_msg(n == 1, "%d: %s", n, err);
	ck_assert_str_eq(act(rs, "PUT", LEASE), "pass");
	ck_assert_str_eq(act(rs, "GET", LEASE), "pass"); /* not a match: not counted */
	ck_assert_str_eq(act(rs, "PUT", LEASE), "pass");
	ck_assert_str_eq(act(rs, "PUT", LEASE), "drop_response");
	ck_assert_str_eq(act(rs, "PUT", LEASE), "pass");
	ck_assert_str_eq(act(rs, "PUT", "/api/v1/pods"), "pass");
	fp_ruleset_free(rs);
}
END_TEST

START_TEST(late_is_an_action)
{
	char err[512] = "";
	int n;
	struct fp_ruleset *rs = parse("PATCH ^/api/v1/namespaces/[^/]+/pods/ count=1 late=2500\n",
	                              &n, err, sizeof(err));

	ck_assert_msg(n == 1, "%d: %s", n, err);
	ck_assert_str_eq(act(rs, "PATCH", "/api/v1/namespaces/ns/pods/p"), "late=2500");
	ck_assert_str_eq(act(rs, "PATCH", "/api/v1/namespaces/ns/pods/p"), "pass");
	fp_ruleset_free(rs);
}
END_TEST

START_TEST(first_applying_rule_wins)
{
	char err[512] = "";
	int n;
	struct fp_verdict v;
	struct fp_ruleset *rs = parse("* /leases/ count=1 status=503 retry_after=2\n"
	                              "GET watch=(1|true) malformed\n"
	                              "* /leases/ delay=150 delay_response=20\n",
	                              &n, err, sizeof(err));

	ck_assert_msg(n == 3, "%d: %s", n, err);
	fp_ruleset_match(rs, "GET", LEASE, &v);
	ck_assert_int_eq(v.action, FP_ACT_STATUS);
	ck_assert_int_eq(v.status, 503);
	ck_assert_int_eq(v.retry_after, 2);
	ck_assert_str_eq(v.reason, "ServiceUnavailable");
	ck_assert_int_eq(v.line, 1);
	ck_assert_str_eq(v.text, "status=503,retry_after=2");
	/* rule 1 is used up: rule 3 (rule 2 does not match) */
	fp_ruleset_match(rs, "GET", LEASE, &v);
	ck_assert_int_eq(v.action, FP_ACT_PASS);
	ck_assert_int_eq(v.delay_ms, 150);
	ck_assert_int_eq(v.line, 3);
	ck_assert_str_eq(v.text, "delay=150,delay_response=20");
	ck_assert_str_eq(act(rs, "GET", "/apis/coordination.k8s.io/v1/leases?watch=1"),
	                 "malformed");
	fp_ruleset_free(rs);
}
END_TEST

START_TEST(prob_is_seeded)
{
	char err[256] = "", a[201] = "", b[201] = "";
	int n, hits = 0;

	for (int round = 0; round < 2; round++) {
		struct fp_ruleset *rs = parse("* . prob=0.5 reset\n", &n, err, sizeof(err));
		ck_assert_int_eq(n, 1);
		for (int i = 0; i < 200; i++) {
			bool hit = strcmp(act(rs, "GET", "/x"), "reset") == 0;
			(round ? b : a)[i] = hit ? '1' : '0';
			hits += hit && round == 0;
		}
		fp_ruleset_free(rs);
	}
	ck_assert_str_eq(a, b); /* the same seed draws the same sequence */
	ck_assert_int_gt(hits, 60);
	ck_assert_int_lt(hits, 140);
}
END_TEST

START_TEST(bad_lines_refuse_the_file)
{
	char err[2048] = "";
	int n;
	struct fp_ruleset *rs = parse("PUT /leases/ drop_response\n"
	                              "put /x pass\n"
	                              "PUT ( pass\n"
	                              "PUT /x status=abc\n"
	                              "PUT /x reset status=500\n"
	                              "PUT /x count=1\n"
	                              "PUT /x frobnicate\n"
	                              "PUT\n"
	                              "PUT /x prob=1.5 reset\n"
	                              "PUT /x retry_after=1 reset\n"
	                              "PUT /x reframe malformed\n"
	                              "PUT /x delay_response=5 status=503\n",
	                              &n, err, sizeof(err));

	ck_assert_int_eq(n, -EINVAL);
	ck_assert_ptr_null(rs);
	for (int line = 2; line <= 12; line++) {
		char want[32];
		snprintf(want, sizeof(want), "rules:%d: ", line);
		ck_assert_msg(strstr(err, want), "no '%s' in:\n%s", want, err);
	}
	ck_assert_ptr_null(strstr(err, "rules:1:"));
	ck_assert_ptr_nonnull(strstr(err, "unknown option 'frobnicate'"));
	ck_assert_ptr_nonnull(strstr(err, "no action"));
}
END_TEST

static void write_file(const char *path, const char *text)
{
	char tmp[512];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(reload_and_keep_on_error)
{
	char dir[] = "/tmp/check_faultproxy.XXXXXX", path[512], err[512] = "";
	struct fp_rules *r = NULL;
	struct fp_verdict v;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rules", dir);
	/* a missing file: no rules, until it appears */
	ck_assert_int_eq(fp_rules_new(path, 1, 1000, &r, err, sizeof(err)), 0);
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "pass");

	write_file(path, "GET ^/a count=2 reset\n");
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "reset");

	/* bad: the old rule stays, with its counter (one of two left) */
	write_file(path, "GET ^/a status=42\n");
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "reset");
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "pass");

	/* the same rule again: a new file, so the counter starts again */
	write_file(path, "GET ^/a count=2 reset\n");
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "reset");

	/* rewritten in place at once, same size: told apart by content */
	FILE *f;

	write_file(path, "GET ^/a count=1 status=500\n");
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "status=500");
	f = fopen(path, "r+");
	ck_assert_ptr_nonnull(f);
	fputs("GET ^/a count=1 status=503\n", f);
	fclose(f);
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "status=503");

	unlink(path);
	fp_rules_match(r, "GET", "/a", &v);
	ck_assert_str_eq(v.text, "pass");
	fp_rules_free(r);
	rmdir(dir);

	/* a bad file at start is an error */
	ck_assert_ptr_nonnull(mkdtemp(strcpy(dir, "/tmp/check_faultproxy.XXXXXX")));
	snprintf(path, sizeof(path), "%s/rules", dir);
	write_file(path, "GET /a\n");
	r = NULL;
	ck_assert_int_eq(fp_rules_new(path, 1, 1000, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_ptr_nonnull(strstr(err, ":1: "));
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(request_heads)
{
	struct fp_http_head h;
	char err[256];
	const char *put = "PUT /apis/x?y=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n\r\n";
	const char *chunked = "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	                      "Connection: close\r\n\r\n";

	ck_assert_int_eq(fp_http_parse_request(put, strlen(put), &h, err, sizeof(err)), 0);
	ck_assert_str_eq(h.method, "PUT");
	ck_assert_str_eq(h.target, "/apis/x?y=1");
	ck_assert_int_eq(h.body, FP_BODY_LENGTH);
	ck_assert_uint_eq(h.length, 12);
	ck_assert(!h.close);
	fp_http_head_clear(&h);

	ck_assert_int_eq(fp_http_parse_request(chunked, strlen(chunked), &h, err, sizeof(err)), 0);
	ck_assert_int_eq(h.body, FP_BODY_CHUNKED);
	ck_assert(h.close);
	fp_http_head_clear(&h);

	const char *bad[] = {
	        "GET /x\r\n\r\n",
	        "get /x HTTP/1.1\r\n\r\n",
	        "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	        "GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	        "GET /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
	        "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	        "GET /x HTTP/1.1\r\n folded\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(fp_http_parse_request(bad[i], strlen(bad[i]), &h, err, sizeof(err)) ==
		                      -EBADMSG,
		              "accepted: %s", bad[i]);
		fp_http_head_clear(&h);
	}
}
END_TEST

START_TEST(response_heads)
{
	struct fp_http_head h;
	char err[256], *out = NULL;
	size_t len;
	const char *cl = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	                 "Content-Length: 300\r\n\r\n";
	const char *watch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	const char *eof = "HTTP/1.0 200 OK\r\n\r\n";
	const char *nc = "HTTP/1.1 304 Not Modified\r\nContent-Length: 300\r\n\r\n";

	ck_assert_int_eq(fp_http_parse_response(cl, strlen(cl), "GET", &h, err, sizeof(err)), 0);
	ck_assert_int_eq(h.status, 200);
	ck_assert_int_eq(h.body, FP_BODY_LENGTH);
	ck_assert_uint_eq(h.length, 300);
	ck_assert_int_eq(fp_http_parse_response(cl, strlen(cl), "HEAD", &h, err, sizeof(err)), 0);
	ck_assert_int_eq(h.body, FP_BODY_NONE);
	ck_assert_int_eq(fp_http_parse_response(watch, strlen(watch), "GET", &h, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(h.body, FP_BODY_CHUNKED);
	ck_assert_int_eq(fp_http_parse_response(eof, strlen(eof), "GET", &h, err, sizeof(err)), 0);
	ck_assert_int_eq(h.body, FP_BODY_CLOSE);
	ck_assert(h.close);
	ck_assert_int_eq(fp_http_parse_response(nc, strlen(nc), "GET", &h, err, sizeof(err)), 0);
	ck_assert_int_eq(h.body, FP_BODY_NONE);
	ck_assert_int_eq(
	        fp_http_parse_response("HTTP/1.1 20 OK\r\n\r\n", 18, "GET", &h, err, sizeof(err)),
	        -EBADMSG);

	ck_assert_int_eq(fp_http_reframe(watch, strlen(watch), 5, true, &out, &len), 0);
	ck_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
	ck_assert_uint_eq(len, strlen(out));
	free(out);
	ck_assert_int_eq(fp_http_reframe(cl, strlen(cl), 7, false, &out, &len), 0);
	ck_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	                      "Content-Length: 7\r\n\r\n");
	free(out);
}
END_TEST

static Suite *faultproxy_suite(void)
{
	Suite *s = suite_create("faultproxy");
	TCase *tc;

	tc = tcase_create("rules");
	tcase_add_test(tc, skip_then_count);
	tcase_add_test(tc, late_is_an_action);
	tcase_add_test(tc, first_applying_rule_wins);
	tcase_add_test(tc, prob_is_seeded);
	tcase_add_test(tc, bad_lines_refuse_the_file);
	tcase_add_test(tc, reload_and_keep_on_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("http");
	tcase_add_test(tc, request_heads);
	tcase_add_test(tc, response_heads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(faultproxy_suite(), NULL);
}
