/* check_metrics: the agent's operations surface without a cluster.
 *
 * The Prometheus exposition is compared as whole texts, since scrapers are
 * strict about it; the HTTP endpoints are fetched with libcurl from a server
 * on 127.0.0.1 port 0; the Event sender runs against a k8s client whose
 * transport is replaced, so that a slow or refusing API server is exact and
 * instant. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "lib/clock.h"
#include "lib/k8s.h"
#include "lib/util.h"
#include "nodeagent/events.h"
#include "nodeagent/http.h"
#include "nodeagent/metrics.h"
#include "tests/lib/kftest.h"

#define KUBECONFIG TEST_SRCDIR "/unit/data/k8s/token.yaml"

static char *render(struct metrics *m)
{
	char *text = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_render(m, &text, &len), 0);
	ck_assert_uint_eq(len, strlen(text));
	return text;
}

#define ck_assert_render(m, expected)                                                              \
	do {                                                                                       \
		char *_t = render(m);                                                              \
		ck_assert_str_eq(_t, expected);                                                    \
		free(_t);                                                                          \
	} while (0)

/* ---------------------------------------------------------------- metrics */

START_TEST(test_gauge_text)
{
	struct metrics *m = NULL;
	struct metrics_family *g = NULL;

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(
	        metrics_register(m, METRICS_GAUGE, "kf_temp", "A gauge.", NULL, NULL, 0, &g), 0);
	ck_assert_render(m, "# HELP kf_temp A gauge.\n# TYPE kf_temp gauge\nkf_temp 0\n");
	ck_assert_int_eq(metrics_set(g, NULL, -2.5), 0);
	ck_assert_render(m, "# HELP kf_temp A gauge.\n# TYPE kf_temp gauge\nkf_temp -2.5\n");
	ck_assert_int_eq(metrics_add(g, NULL, 3.5), 0);
	ck_assert_render(m, "# HELP kf_temp A gauge.\n# TYPE kf_temp gauge\nkf_temp 1\n");
	ck_assert_int_eq(metrics_set(g, NULL, 1e12), 0);
	ck_assert_render(m, "# HELP kf_temp A gauge.\n# TYPE kf_temp gauge\nkf_temp 1e+12\n");
	/* Wrong use is refused, the value unchanged. */
	ck_assert_int_eq(metrics_set(g, "x", 1), -EINVAL);
	ck_assert_int_eq(metrics_observe(g, NULL, 1), -EINVAL);
	metrics_free(m);
}
END_TEST

START_TEST(test_counter_text_and_label_escaping)
{
	struct metrics *m = NULL;
	struct metrics_family *c = NULL, *u = NULL;
	double v = 0;

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_COUNTER, "kf_errors_total",
	                                  "Errors \\ by\ncode.", "code", NULL, 0, &c),
	                 0);
	ck_assert_int_eq(
	        metrics_register(m, METRICS_COUNTER, "kf_plain_total", "Plain.", NULL, NULL, 0, &u),
	        0);
	/* A labelled family has no series until one is recorded. */
	ck_assert_render(m, "# HELP kf_errors_total Errors \\\\ by\\ncode.\n"
	                    "# TYPE kf_errors_total counter\n"
	                    "# HELP kf_plain_total Plain.\n"
	                    "# TYPE kf_plain_total counter\n"
	                    "kf_plain_total 0\n");
	ck_assert_int_eq(metrics_add(c, "403", 1), 0);
	ck_assert_int_eq(metrics_add(c, "a\"b\\c\nd", 2), 0);
	ck_assert_int_eq(metrics_add(c, "403", 1), 0);
	ck_assert_int_eq(metrics_add(u, NULL, 0.5), 0);
	ck_assert_render(m, "# HELP kf_errors_total Errors \\\\ by\\ncode.\n"
	                    "# TYPE kf_errors_total counter\n"
	                    "kf_errors_total{code=\"403\"} 2\n"
	                    "kf_errors_total{code=\"a\\\"b\\\\c\\nd\"} 2\n"
	                    "# HELP kf_plain_total Plain.\n"
	                    "# TYPE kf_plain_total counter\n"
	                    "kf_plain_total 0.5\n");
	ck_assert_int_eq(metrics_get(c, "403", &v), 0);
	ck_assert(v == 2);
	ck_assert_int_eq(metrics_get(c, "404", &v), -ENOENT);
	/* Counters only go up; label presence must match the family. */
	ck_assert_int_eq(metrics_add(c, "403", -1), -EINVAL);
	ck_assert_int_eq(metrics_add(c, "403", NAN), -EINVAL);
	ck_assert_int_eq(metrics_add(c, NULL, 1), -EINVAL);
	ck_assert_int_eq(metrics_add(u, "x", 1), -EINVAL);
	ck_assert_int_eq(metrics_set(c, "403", 1), -EINVAL);
	metrics_free(m);
}
END_TEST

START_TEST(test_histogram_text_and_bucket_edges)
{
	static const double b[] = {0.1, 1, 2.5};
	struct metrics *m = NULL;
	struct metrics_family *h = NULL;

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "kf_d_seconds", "Durations.",
	                                  "method", b, ELEMENTSOF(b), &h),
	                 0);
	ck_assert_int_eq(metrics_declare(h, "pod"), 0);
	ck_assert_render(m, "# HELP kf_d_seconds Durations.\n"
	                    "# TYPE kf_d_seconds histogram\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"0.1\"} 0\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"1\"} 0\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"2.5\"} 0\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"+Inf\"} 0\n"
	                    "kf_d_seconds_sum{method=\"pod\"} 0\n"
	                    "kf_d_seconds_count{method=\"pod\"} 0\n");
	/* A bound is inclusive (le = less or equal); just above goes up one. */
	ck_assert_int_eq(metrics_observe(h, "pod", 0.1), 0);
	ck_assert_int_eq(metrics_observe(h, "pod", nextafter(0.1, 1)), 0);
	ck_assert_int_eq(metrics_observe(h, "pod", 1), 0);
	ck_assert_int_eq(metrics_observe(h, "pod", 2.5), 0);
	ck_assert_int_eq(metrics_observe(h, "pod", 7.3), 0);
	ck_assert_int_eq(metrics_observe(h, "scsi", 0), 0);
	char *t = render(m);
	ck_assert_str_eq(t, "# HELP kf_d_seconds Durations.\n"
	                    "# TYPE kf_d_seconds histogram\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"0.1\"} 1\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"1\"} 3\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"2.5\"} 4\n"
	                    "kf_d_seconds_bucket{method=\"pod\",le=\"+Inf\"} 5\n"
	                    "kf_d_seconds_sum{method=\"pod\"} 11\n"
	                    "kf_d_seconds_count{method=\"pod\"} 5\n"
	                    "kf_d_seconds_bucket{method=\"scsi\",le=\"0.1\"} 1\n"
	                    "kf_d_seconds_bucket{method=\"scsi\",le=\"1\"} 1\n"
	                    "kf_d_seconds_bucket{method=\"scsi\",le=\"2.5\"} 1\n"
	                    "kf_d_seconds_bucket{method=\"scsi\",le=\"+Inf\"} 1\n"
	                    "kf_d_seconds_sum{method=\"scsi\"} 0\n"
	                    "kf_d_seconds_count{method=\"scsi\"} 1\n");
	free(t);
	ck_assert_int_eq(metrics_add(h, "pod", 1), -EINVAL);
	metrics_free(m);
}
END_TEST

START_TEST(test_histogram_unlabelled)
{
	static const double b[] = {0.005, 60};
	struct metrics *m = NULL;
	struct metrics_family *h = NULL;

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "kf_f_seconds", "F.", NULL, b,
	                                  ELEMENTSOF(b), &h),
	                 0);
	ck_assert_int_eq(metrics_observe(h, NULL, 0.25), 0);
	ck_assert_render(m, "# HELP kf_f_seconds F.\n"
	                    "# TYPE kf_f_seconds histogram\n"
	                    "kf_f_seconds_bucket{le=\"0.005\"} 0\n"
	                    "kf_f_seconds_bucket{le=\"60\"} 1\n"
	                    "kf_f_seconds_bucket{le=\"+Inf\"} 1\n"
	                    "kf_f_seconds_sum 0.25\n"
	                    "kf_f_seconds_count 1\n");
	metrics_free(m);
}
END_TEST

START_TEST(test_register_errors)
{
	static const double up[] = {1, 2}, flat[] = {1, 1}, down[] = {2, 1};
	const double inf[] = {1, INFINITY};
	struct metrics *m = NULL;
	struct metrics_family *f = NULL;
	char name[32];

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "", "h", NULL, NULL, 0, NULL), -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "1abc", "h", NULL, NULL, 0, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "a-b", "h", NULL, NULL, 0, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "a:b", "h", NULL, NULL, 0, NULL), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "a:b", "h", NULL, NULL, 0, NULL),
	                 -EEXIST);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "g", "h", "a:b", NULL, 0, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "g", "h", "__x", NULL, 0, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "g", "h", NULL, up, 2, NULL), -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, NULL, 0, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, flat, 2, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, down, 2, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, inf, 2, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", "le", up, 2, NULL),
	                 -EINVAL);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, up,
	                                  METRICS_BUCKETS_MAX + 1, NULL),
	                 -EINVAL);
	/* Bounded: families and series. */
	for (int i = 1; i < METRICS_FAMILIES_MAX; i++) {
		snprintf(name, sizeof(name), "g%d", i);
		ck_assert_int_eq(metrics_register(m, METRICS_COUNTER, name, "h", "l", NULL, 0,
		                                  i == 1 ? &f : NULL),
		                 0);
	}
	ck_assert_int_eq(metrics_register(m, METRICS_GAUGE, "one_more", "h", NULL, NULL, 0, NULL),
	                 -ENOSPC);
	for (int i = 0; i < METRICS_SERIES_MAX; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		ck_assert_int_eq(metrics_add(f, name, 1), 0);
	}
	ck_assert_int_eq(metrics_add(f, "v-new", 1), -ENOSPC);
	ck_assert_int_eq(metrics_add(f, "v0", 1), 0);
	metrics_free(m);
	ck_assert_ptr_null(metrics_free(NULL));
}
END_TEST

START_TEST(test_format_value)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
	        {0, "0"},
	        {1, "1"},
	        {0.005, "0.005"},
	        {0.1, "0.1"},
	        {2.5, "2.5"},
	        {60, "60"},
	        {-3, "-3"},
	        {1e-9, "1e-09"},
	        {123456789, "1.23456789e+08"},
	        {999999, "999999"},
	        {1e6, "1e+06"},
	        {0.0001, "0.0001"},
	        {0.00001, "1e-05"},
	        {0.30000000000000004, "0.30000000000000004"},
	};
	char buf[32];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		metrics_format_value(cases[i].v, buf);
		ck_assert_str_eq(buf, cases[i].text);
	}
	metrics_format_value(INFINITY, buf);
	ck_assert_str_eq(buf, "+Inf");
	metrics_format_value(-INFINITY, buf);
	ck_assert_str_eq(buf, "-Inf");
	metrics_format_value(NAN, buf);
	ck_assert_str_eq(buf, "NaN");
}
END_TEST

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

START_TEST(test_agent_metrics)
{
	struct metrics *m = NULL;
	char *t;

	ck_assert_int_eq(metrics_agent_new(&m), 0);
	metrics_set_role(m, METRICS_ROLE_LEADER);
	metrics_set_epoch(m, 42);
	metrics_set_service_connected(m, true);
	metrics_lease_transition(m);
	metrics_promotion(m);
	metrics_demotion(m);
	metrics_declare_fence_method(m, "scsi-pr");
	metrics_observe_fence(m, "pod", 0.2, true);
	metrics_observe_fence(m, "pod", 75, false);
	metrics_observe_failover(m, 1.5);
	metrics_api_error(m, -EPERM);
	metrics_api_error(m, -ETIMEDOUT);
	metrics_api_error(m, -EPERM);
	metrics_event_posted(m);
	metrics_event_dropped(m, METRICS_EVENT_DROP_QUEUE_FULL);
	t = render(m);
	static const char *const lines[] = {
	        "# TYPE kubefence_role gauge",
	        "kubefence_role 1",
	        "kubefence_epoch 42",
	        "# TYPE kubefence_lease_transitions_total counter",
	        "kubefence_lease_transitions_total 1",
	        "kubefence_promotions_total 1",
	        "kubefence_demotions_total 1",
	        "kubefence_service_connected 1",
	        "# TYPE kubefence_fence_duration_seconds histogram",
	        "kubefence_fence_duration_seconds_bucket{method=\"scsi-pr\",le=\"+Inf\"} 0",
	        "kubefence_fence_duration_seconds_bucket{method=\"pod\",le=\"0.005\"} 0",
	        "kubefence_fence_duration_seconds_bucket{method=\"pod\",le=\"0.25\"} 1",
	        "kubefence_fence_duration_seconds_bucket{method=\"pod\",le=\"60\"} 1",
	        "kubefence_fence_duration_seconds_bucket{method=\"pod\",le=\"+Inf\"} 2",
	        "kubefence_fence_duration_seconds_sum{method=\"pod\"} 75.2",
	        "kubefence_fence_failures_total{method=\"scsi-pr\"} 0",
	        "kubefence_fence_failures_total{method=\"pod\"} 1",
	        "kubefence_failover_duration_seconds_bucket{le=\"1\"} 0",
	        "kubefence_failover_duration_seconds_bucket{le=\"2.5\"} 1",
	        "kubefence_failover_duration_seconds_count 1",
	        "kubefence_api_errors_total{code=\"403\"} 2",
	        "kubefence_api_errors_total{code=\"timeout\"} 1",
	        "kubefence_events_posted_total 1",
	        "kubefence_events_dropped_total{reason=\"queue_full\"} 1",
	};
	for (size_t i = 0; i < ELEMENTSOF(lines); i++)
		if (!has_line(t, lines[i])) {
			fprintf(stderr, "%s", t);
			ck_abort_msg("missing line '%s'", lines[i]);
		}
	free(t);
	metrics_free(m);

	/* Without a registry the setters do nothing. */
	metrics_set_role(NULL, METRICS_ROLE_LEADER);
	metrics_observe_fence(NULL, "pod", 1, false);
	metrics_api_error(NULL, -EPERM);
}
END_TEST

/* kubefence_config_reloads_total{result} and the last reload's success:
 * every result exported from the start, success 1 until a reload fails and
 * again once one is applied. */
START_TEST(test_reload_metrics)
{
	static const char *const start[] = {
	        "# TYPE kubefence_config_reloads_total counter",
	        "kubefence_config_reloads_total{result=\"applied\"} 0",
	        "kubefence_config_reloads_total{result=\"refused\"} 0",
	        "kubefence_config_reloads_total{result=\"invalid\"} 0",
	        "# TYPE kubefence_config_last_reload_success gauge",
	        "kubefence_config_last_reload_success 1",
	};
	static const struct {
		enum metrics_reload result;
		const char *count, *success;
	} steps[] = {
	        {METRICS_RELOAD_APPLIED, "kubefence_config_reloads_total{result=\"applied\"} 1",
	         "kubefence_config_last_reload_success 1"},
	        {METRICS_RELOAD_REFUSED, "kubefence_config_reloads_total{result=\"refused\"} 1",
	         "kubefence_config_last_reload_success 0"},
	        {METRICS_RELOAD_INVALID, "kubefence_config_reloads_total{result=\"invalid\"} 1",
	         "kubefence_config_last_reload_success 0"},
	        {METRICS_RELOAD_APPLIED, "kubefence_config_reloads_total{result=\"applied\"} 2",
	         "kubefence_config_last_reload_success 1"},
	};
	struct metrics *m = NULL;
	char *t;

	ck_assert_int_eq(metrics_agent_new(&m), 0);
	t = render(m);
	for (size_t i = 0; i < ELEMENTSOF(start); i++)
		ck_assert_msg(has_line(t, start[i]), "missing line '%s' in:\n%s", start[i], t);
	free(t);
	for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
		metrics_config_reload(m, steps[i].result);
		t = render(m);
		ck_assert_msg(has_line(t, steps[i].count), "step %zu: missing '%s' in:\n%s", i,
		              steps[i].count, t);
		ck_assert_msg(has_line(t, steps[i].success), "step %zu: missing '%s' in:\n%s", i,
		              steps[i].success, t);
		free(t);
	}
	metrics_free(m);
	metrics_config_reload(NULL, METRICS_RELOAD_INVALID);
}
END_TEST

START_TEST(test_api_error_codes)
{
	ck_assert_str_eq(metrics_api_error_code(-EBADMSG), "400");
	ck_assert_str_eq(metrics_api_error_code(-EACCES), "401");
	ck_assert_str_eq(metrics_api_error_code(-EPERM), "403");
	ck_assert_str_eq(metrics_api_error_code(EPERM), "403");
	ck_assert_str_eq(metrics_api_error_code(-ENOENT), "404");
	ck_assert_str_eq(metrics_api_error_code(-ESTALE), "409");
	ck_assert_str_eq(metrics_api_error_code(-EEXIST), "409");
	ck_assert_str_eq(metrics_api_error_code(-EIDRM), "410");
	ck_assert_str_eq(metrics_api_error_code(-EINVAL), "422");
	ck_assert_str_eq(metrics_api_error_code(-EAGAIN), "429_503");
	ck_assert_str_eq(metrics_api_error_code(-EIO), "5xx");
	ck_assert_str_eq(metrics_api_error_code(-ETIMEDOUT), "timeout");
	ck_assert_str_eq(metrics_api_error_code(-ECONNREFUSED), "connect");
	ck_assert_str_eq(metrics_api_error_code(-EKEYREJECTED), "tls");
	ck_assert_str_eq(metrics_api_error_code(-ENOSYS), "other");
}
END_TEST

struct hammer {
	struct metrics_family *c, *h;
};

static void *hammer_thread(void *arg)
{
	struct hammer *hm = arg;

	for (int i = 0; i < 10000; i++) {
		(void)metrics_add(hm->c, i % 2 ? "a" : "b", 1);
		(void)metrics_observe(hm->h, NULL, 0.01);
	}
	return NULL;
}

START_TEST(test_thread_safety)
{
	static const double b[] = {1};
	struct metrics *m = NULL;
	struct hammer hm;
	pthread_t th[4];
	double a = 0, bb = 0;
	char *t;

	ck_assert_int_eq(metrics_new(&m), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_COUNTER, "c", "c", "l", NULL, 0, &hm.c), 0);
	ck_assert_int_eq(metrics_register(m, METRICS_HISTOGRAM, "h", "h", NULL, b, 1, &hm.h), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_thread, &hm), 0);
	for (int i = 0; i < 50; i++)
		free(render(m));
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(metrics_get(hm.c, "a", &a), 0);
	ck_assert_int_eq(metrics_get(hm.c, "b", &bb), 0);
	ck_assert(a == 20000 && bb == 20000);
	t = render(m);
	ck_assert(has_line(t, "h_count 40000"));
	ck_assert(has_line(t, "h_bucket{le=\"1\"} 40000"));
	free(t);
	metrics_free(m);
}
END_TEST

/* ---------------------------------------------------------------- listen */

START_TEST(test_parse_listen_good)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256], host[64];

	ck_assert_int_eq(http_parse_listen("127.0.0.1:9464", &ss, &len, err, sizeof(err)), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
	ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9464);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
	ck_assert_str_eq(host, "127.0.0.1");

	ck_assert_int_eq(http_parse_listen(":0", &ss, &len, err, sizeof(err)), 0);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
	ck_assert_str_eq(host, "0.0.0.0");
	ck_assert_int_eq(http_parse_listen("*:65535", &ss, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 65535);
	ck_assert_int_eq(http_parse_listen("localhost:80", &ss, &len, err, sizeof(err)), 0);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
	ck_assert_str_eq(host, "127.0.0.1");

	ck_assert_int_eq(http_parse_listen("[::1]:8080", &ss, &len, err, sizeof(err)), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_uint_eq(len, sizeof(struct sockaddr_in6));
	ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);
	ck_assert_int_eq(http_parse_listen("[::]:1", &ss, &len, err, sizeof(err)), 0);
	ck_assert_int_eq(http_parse_listen("[fe80::1:2]:1", &ss, &len, err, sizeof(err)), 0);
}
END_TEST

static const struct {
	const char *in, *says;
} bad_listen[] = {
        {"", "empty"},
        {"127.0.0.1", "is not HOST:PORT"},
        {"127.0.0.1:", "port is missing"},
        {"127.0.0.1:http", "not a number"},
        {"127.0.0.1:65536", "not in 0..65535"},
        {"127.0.0.1:99999999999999999999", "not in 0..65535"},
        {"127.0.0.1:-1", "not a number"},
        {"127.0.0.1:80 ", "not a number"},
        {"1.2.3:80", "not an IPv4 address"},
        {"example.com:80", "not resolved"},
        {"::1:9464", "needs brackets"},
        {"[::1:9464", "missing ']'"},
        {"[::1]9464", "want ':PORT'"},
        {"[::1]:", "port is missing"},
        {"[]:80", "not an IPv6 address"},
        {"[1.2.3.4]:80", "not an IPv6 address"},
        {"[::g]:80", "not an IPv6 address"},
};

START_TEST(test_parse_listen_bad)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256] = "";

	ck_assert_int_eq(http_parse_listen(bad_listen[_i].in, &ss, &len, err, sizeof(err)),
	                 -EINVAL);
	ck_assert_msg(strstr(err, bad_listen[_i].says), "'%s': error '%s' lacks '%s'",
	              bad_listen[_i].in, err, bad_listen[_i].says);
	if (*bad_listen[_i].in)
		ck_assert_msg(strstr(err, bad_listen[_i].in), "error '%s' does not name the input",
		              err);
}
END_TEST

/* ---------------------------------------------------------------- http */

struct reply {
	long code;
	char type[128];
	char *body;
	size_t len;
	char allow[64];
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;

	r->body = realloc(r->body, r->len + size * n + 1);
	memcpy(r->body + r->len, p, size * n);
	r->len += size * n;
	r->body[r->len] = '\0';
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct reply *r = ud;

	if (strncasecmp(p, "Allow:", 6) == 0)
		snprintf(r->allow, sizeof(r->allow), "%.*s", (int)(size * n - 6), p + 6);
	return size * n;
}

/* Perform one request; returns the curl result. */
static CURLcode request(const char *method, const char *url, struct reply *r)
{
	CURL *h = curl_easy_init();
	char *ct = NULL;
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	r->body = strdup("");
	ck_assert_ptr_nonnull(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "POST") == 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "x=1");
	else if (strcmp(method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
	if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		snprintf(r->type, sizeof(r->type), "%s", ct);
	curl_easy_cleanup(h);
	return cc;
}

struct agent_view {
	bool healthy, ready, status_fails;
	int status_calls;
};

static bool check_healthy(void *ud, char *reason, size_t len)
{
	struct agent_view *v = ud;

	if (!v->healthy)
		snprintf(reason, len, "elector thread stalled for 12 s");
	return v->healthy;
}

static bool check_ready(void *ud, char *reason, size_t len)
{
	struct agent_view *v = ud;

	if (!v->ready)
		snprintf(reason, len, "API server not reached yet");
	return v->ready;
}

static int fill_status(void *ud, cJSON *obj, char *err, size_t errlen)
{
	struct agent_view *v = ud;
	cJSON *fo, *steps;

	v->status_calls++;
	if (v->status_fails) {
		errbuf_set(err, errlen, "agent state locked");
		return -EBUSY;
	}
	cJSON_AddStringToObject(obj, "node", "n1");
	cJSON_AddStringToObject(obj, "role", "leader");
	cJSON_AddNumberToObject(obj, "epoch", 7);
	cJSON_AddNumberToObject(obj, "version", 99); /* replaced by the server */
	fo = cJSON_AddObjectToObject(obj, "last_failover");
	steps = cJSON_AddArrayToObject(fo, "steps");
	ck_assert_int_eq(http_status_step(steps, "detect", 0, 12, "lease expired"), 0);
	ck_assert_int_eq(http_status_step(steps, "label", 12, 3, NULL), 0);
	return 0;
}

static struct http_server *start_server(struct http_options *o)
{
	struct http_server *s = NULL;
	char err[256] = "";

	o->listen = "127.0.0.1:0";
	ck_assert_msg(http_start(o, &s, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_gt(http_port(s), 0);
	return s;
}

static void url_of(struct http_server *s, const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "http://127.0.0.1:%u%s", http_port(s), path);
}

START_TEST(test_http_endpoints)
{
	struct agent_view v = {.healthy = true, .ready = true};
	struct metrics *m = NULL;
	struct http_options o = {.healthy = check_healthy,
	                         .ready = check_ready,
	                         .status = fill_status,
	                         .userdata = &v};
	struct http_server *s;
	struct reply r;
	char url[128];
	cJSON *st;

	ck_assert_int_eq(metrics_agent_new(&m), 0);
	metrics_set_epoch(m, 7);
	o.metrics = m;
	s = start_server(&o);

	url_of(s, "/healthz", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.type, "text/plain; charset=utf-8");
	ck_assert_str_eq(r.body, "ok\n");
	free(r.body);
	v.healthy = false;
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 503);
	ck_assert_str_eq(r.body, "not healthy: elector thread stalled for 12 s\n");
	free(r.body);

	url_of(s, "/readyz", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	free(r.body);
	v.ready = false;
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 503);
	ck_assert_str_eq(r.body, "not ready: API server not reached yet\n");
	free(r.body);

	url_of(s, "/metrics", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.type, "text/plain; version=0.0.4; charset=utf-8");
	ck_assert(has_line(r.body, "kubefence_epoch 7"));
	free(r.body);

	url_of(s, "/status", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.type, "application/json");
	st = cJSON_Parse(r.body);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(cJSON_GetObjectItem(st, "version")->valueint, HTTP_STATUS_VERSION);
	ck_assert_str_eq(cJSON_GetObjectItem(st, "node")->valuestring, "n1");
	const cJSON *steps = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "last_failover"), "steps");
	ck_assert_int_eq(cJSON_GetArraySize(steps), 2);
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 0), "detail")->valuestring,
	                 "lease expired");
	ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 1), "at_ms")->valueint, 12);
	ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetArrayItem(steps, 1), "detail"));
	cJSON_Delete(st);
	free(r.body);
	v.status_fails = true;
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 500);
	ck_assert_str_eq(r.body, "status failed: agent state locked\n");
	free(r.body);

	/* HEAD like GET without a body; other methods 405; other paths 404. */
	url_of(s, "/healthz", url, sizeof(url));
	ck_assert_int_eq(request("HEAD", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 503);
	ck_assert_uint_eq(r.len, 0);
	free(r.body);
	ck_assert_int_eq(request("POST", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 405);
	ck_assert_ptr_nonnull(strstr(r.allow, "GET, HEAD"));
	free(r.body);
	ck_assert_int_eq(request("DELETE", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 405);
	ck_assert_str_eq(r.body, "method DELETE not allowed\n");
	free(r.body);
	static const char *const missing[] = {"/", "/metrics/", "/healthzz", "/status/x",
	                                      "/favicon.ico"};
	for (size_t i = 0; i < ELEMENTSOF(missing); i++) {
		url_of(s, missing[i], url, sizeof(url));
		ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
		ck_assert_msg(r.code == 404, "%s: %ld", missing[i], r.code);
		free(r.body);
	}
	/* A query string does not change the path. */
	url_of(s, "/metrics?x=1", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	free(r.body);

	ck_assert_ptr_null(http_stop(s));
	metrics_free(m);
}
END_TEST

START_TEST(test_http_defaults_without_callbacks)
{
	struct http_options o = {0};
	struct http_server *s = start_server(&o);
	uint16_t port = http_port(s);
	struct reply r;
	char url[128];

	url_of(s, "/healthz", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	free(r.body);
	url_of(s, "/readyz", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	free(r.body);
	url_of(s, "/metrics", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 404);
	free(r.body);
	url_of(s, "/status", url, sizeof(url));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 404);
	free(r.body);
	ck_assert_ptr_null(http_stop(s));
	ck_assert_ptr_null(http_stop(NULL));

	snprintf(url, sizeof(url), "http://127.0.0.1:%u/healthz", port);
	ck_assert_int_eq(request("GET", url, &r), CURLE_COULDNT_CONNECT);
	free(r.body);
}
END_TEST

START_TEST(test_http_start_errors)
{
	struct http_options o = {0};
	struct http_server *s = start_server(&o), *s2 = NULL;
	char listen_s[64], err[256] = "";

	/* The port is taken. */
	snprintf(listen_s, sizeof(listen_s), "127.0.0.1:%u", http_port(s));
	o.listen = listen_s;
	ck_assert_int_eq(http_start(&o, &s2, err, sizeof(err)), -EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(err, listen_s));
	ck_assert_ptr_null(s2);
	/* Not an address of this host. */
	o.listen = "192.0.2.1:0";
	ck_assert_int_eq(http_start(&o, &s2, err, sizeof(err)), -EADDRNOTAVAIL);
	/* Not an address at all. */
	o.listen = "127.0.0.1";
	ck_assert_int_eq(http_start(&o, &s2, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "is not HOST:PORT"));
	http_stop(s);
}
END_TEST

START_TEST(test_http_ipv6)
{
	struct http_options o = {.listen = "[::1]:0"};
	struct http_server *s = NULL;
	struct reply r;
	char url[128], err[256] = "";
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 probe = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool have_v6 = fd >= 0 && bind(fd, (struct sockaddr *)&probe, sizeof(probe)) == 0;

	if (fd >= 0)
		close(fd);
	if (!have_v6) {
		/* No IPv6 loopback in this sandbox: the error must say so. */
		ck_assert_int_lt(http_start(&o, &s, err, sizeof(err)), 0);
		ck_assert_ptr_nonnull(strstr(err, "[::1]:0"));
		return;
	}
	ck_assert_msg(http_start(&o, &s, err, sizeof(err)) == 0, "%s", err);
	snprintf(url, sizeof(url), "http://[::1]:%u/healthz", http_port(s));
	ck_assert_int_eq(request("GET", url, &r), CURLE_OK);
	ck_assert_int_eq(r.code, 200);
	free(r.body);
	http_stop(s);
}
END_TEST

/* ---------------------------------------------------------------- events */

/* A fake API server: records each POST body; answers `status`; while
 * `hold` is set, requests wait (a slow API server). */
struct fake_api {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hold;
	long status;
	int n_requests;
	cJSON *bodies[64];
	int n_bodies;
	char last_url[512];
};

static int fake_transport(const struct k8s_http_request *req, k8s_sink_fn sink, void *sink_ctx,
                          long *ret_status, char *err, size_t errlen, void *userdata)
{
	static const char forbidden[] =
	        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
	        "\"message\":\"events is forbidden: User \\\"x\\\" cannot create resource "
	        "\\\"events\\\"\",\"reason\":\"Forbidden\",\"code\":403}";
	struct fake_api *f = userdata;
	long status;
	int r;

	pthread_mutex_lock(&f->lock);
	f->n_requests++;
	while (f->hold)
		pthread_cond_wait(&f->cond, &f->lock);
	status = f->status;
	snprintf(f->last_url, sizeof(f->last_url), "%s %s", req->method, req->url);
	if (f->n_bodies < (int)ELEMENTSOF(f->bodies))
		f->bodies[f->n_bodies++] = cJSON_ParseWithLength(req->body, req->body_len);
	pthread_mutex_unlock(&f->lock);
	if (status == 201)
		r = sink(sink_ctx, status, req->body, req->body_len);
	else
		r = sink(sink_ctx, status, forbidden, sizeof(forbidden) - 1);
	*ret_status = status;
	return r;
}

static void fake_init(struct fake_api *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->status = 201;
}

static void fake_release(struct fake_api *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold = false;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void fake_done(struct fake_api *f)
{
	for (int i = 0; i < f->n_bodies; i++)
		cJSON_Delete(f->bodies[i]);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
}

static struct k8s_client *fake_client(struct fake_api *f)
{
	struct k8s_client *c = NULL;
	char err[512] = "";

	ck_assert_msg(k8s_client_new(KUBECONFIG, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	k8s_client_set_transport(c, fake_transport, f);
	return c;
}

static const struct events_object LEASE_OBJ = {
        .api_version = "coordination.k8s.io/v1",
        .kind = "Lease",
        .namespace = "ns1",
        .name = "db",
        .uid = "0b6e5f8a-1111-2222-3333-444455556666",
};

static const char *jstr(const cJSON *o, const char *path)
{
	char key[64];
	const char *dot;

	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		o = cJSON_GetObjectItem(o, key);
		path = dot + 1;
	}
	return cJSON_GetStringValue(cJSON_GetObjectItem(o, path));
}

START_TEST(test_events_body)
{
	struct fake_api f;
	struct k8s_client *c;
	struct events *e = NULL;
	struct events_options o = {.node = "node-a"};
	struct events_stats st;
	char err[256] = "";
	const cJSON *ev;

	fake_init(&f);
	c = fake_client(&f);
	o.client = c;
	ck_assert_msg(events_start(&o, &e, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(events_post(e, &LEASE_OBJ, EVENTS_FENCED,
	                             "fenced node-b by pod in %d ms (delete %d ms, confirm %d ms)",
	                             120, 100, 20),
	                 0);
	ck_assert_int_eq(events_post(e, &LEASE_OBJ, EVENTS_FENCE_FAILED, "x"), 0);
	ck_assert_int_eq(events_flush(e, 5000), 0);
	events_stats(e, &st);
	ck_assert_uint_eq(st.queued, 2);
	ck_assert_uint_eq(st.posted, 2);
	ck_assert_uint_eq(st.dropped_failed + st.dropped_full, 0);
	ck_assert_int_eq(f.n_bodies, 2);
	ck_assert_ptr_nonnull(strstr(f.last_url, "POST "));
	ck_assert_ptr_nonnull(strstr(f.last_url, "/api/v1/namespaces/ns1/events"));

	ev = f.bodies[0];
	ck_assert_str_eq(jstr(ev, "apiVersion"), "v1");
	ck_assert_str_eq(jstr(ev, "kind"), "Event");
	ck_assert_str_eq(jstr(ev, "metadata.namespace"), "ns1");
	ck_assert_str_eq(jstr(ev, "involvedObject.kind"), "Lease");
	ck_assert_str_eq(jstr(ev, "involvedObject.apiVersion"), "coordination.k8s.io/v1");
	ck_assert_str_eq(jstr(ev, "involvedObject.namespace"), "ns1");
	ck_assert_str_eq(jstr(ev, "involvedObject.name"), "db");
	ck_assert_str_eq(jstr(ev, "involvedObject.uid"), LEASE_OBJ.uid);
	ck_assert_str_eq(jstr(ev, "reason"), "Fenced");
	ck_assert_str_eq(jstr(ev, "type"), "Normal");
	ck_assert_str_eq(jstr(ev, "message"),
	                 "fenced node-b by pod in 120 ms (delete 100 ms, confirm 20 ms)");
	ck_assert_str_eq(jstr(ev, "source.component"), "kubefence-agent");
	ck_assert_str_eq(jstr(ev, "source.host"), "node-a");
	ck_assert_int_eq(cJSON_GetObjectItem(ev, "count")->valueint, 1);
	const char *ts = jstr(ev, "firstTimestamp");
	ck_assert_uint_eq(strlen(ts), 20); /* 2006-01-02T15:04:05Z */
	ck_assert(ts[4] == '-' && ts[10] == 'T' && ts[19] == 'Z');
	ck_assert_str_eq(ts, jstr(ev, "lastTimestamp"));
	const char *name = jstr(ev, "metadata.name");
	ck_assert_int_eq(strncmp(name, "db.", 3), 0);
	ck_assert_uint_eq(strspn(name + 3, "0123456789abcdef"), strlen(name + 3));
	ck_assert_str_ne(name, jstr(f.bodies[1], "metadata.name"));
	ck_assert_str_eq(jstr(f.bodies[1], "reason"), "FenceFailed");
	ck_assert_str_eq(jstr(f.bodies[1], "type"), "Warning");

	/* A cluster-scoped object's Events go to "default". */
	struct events_object node = {.api_version = "v1", .kind = "Node", .name = "node-b"};
	ck_assert_int_eq(events_post(e, &node, EVENTS_DEMOTED, "demoted"), 0);
	ck_assert_int_eq(events_flush(e, 5000), 0);
	ck_assert_ptr_nonnull(strstr(f.last_url, "/api/v1/namespaces/default/events"));
	ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetObjectItem(f.bodies[2], "involvedObject"),
	                                       "namespace"));

	/* Bad input. */
	struct events_object bad = LEASE_OBJ;
	bad.name = "";
	ck_assert_int_eq(events_post(e, &bad, EVENTS_FENCED, "x"), -EINVAL);
	ck_assert_int_eq(events_post(e, &LEASE_OBJ, _EVENTS_REASON_MAX, "x"), -EINVAL);
	bad = LEASE_OBJ;
	bad.namespace = "a/b";
	ck_assert_int_eq(events_post(e, &bad, EVENTS_FENCED, "x"), -EINVAL);

	ck_assert_ptr_null(events_stop(e, 1000));
	k8s_client_free(c);
	fake_done(&f);
}
END_TEST

START_TEST(test_events_reasons)
{
	static const char *const names[][2] = {
	        {"Fenced", "Normal"},         {"FenceFailed", "Warning"},
	        {"Promoted", "Normal"},       {"Demoted", "Warning"},
	        {"Released", "Normal"},       {"ReservationRestored", "Warning"},
	        {"ConfigReloaded", "Normal"}, {"ConfigRefused", "Warning"},
	};

	for (int i = 0; i < _EVENTS_REASON_MAX; i++) {
		ck_assert_str_eq(events_reason_to_string(i), names[i][0]);
		ck_assert_str_eq(events_reason_type(i), names[i][1]);
	}
	ck_assert_ptr_null(events_reason_to_string(_EVENTS_REASON_MAX));
	ck_assert_ptr_null(events_reason_type(-1));
}
END_TEST

START_TEST(test_events_overflow_never_blocks)
{
	struct fake_api f;
	struct k8s_client *c;
	struct metrics *m = NULL;
	struct events *e = NULL;
	struct events_options o = {.node = "node-a", .queue_len = 4};
	struct events_stats st;
	int queued = 0, full = 0;
	usec_t t0;
	char *t;

	fake_init(&f);
	f.hold = true; /* the API server hangs */
	c = fake_client(&f);
	ck_assert_int_eq(metrics_agent_new(&m), 0);
	o.client = c;
	o.metrics = m;
	ck_assert_int_eq(events_start(&o, &e, NULL, 0), 0);
	t0 = clock_mono_usec();
	for (int i = 0; i < 20; i++) {
		int r = events_post(e, &LEASE_OBJ, EVENTS_PROMOTED, "promoted %d", i);

		ck_assert(r == 0 || r == -ENOBUFS);
		queued += r == 0;
		full += r == -ENOBUFS;
	}
	/* 20 posts with a hung API server: no waiting at all. */
	ck_assert_int_lt(clock_mono_usec() - t0, 500 * USEC_PER_MSEC);
	/* 4 in the queue, perhaps 1 more taken by the sender into its POST. */
	ck_assert_int_ge(queued, 4);
	ck_assert_int_le(queued, 5);
	ck_assert_int_eq(queued + full, 20);
	ck_assert_int_eq(events_flush(e, 50), -ETIMEDOUT);
	events_stats(e, &st);
	ck_assert_uint_eq(st.dropped_full, (uint64_t)full);

	fake_release(&f);
	ck_assert_int_eq(events_flush(e, 5000), 0);
	events_stats(e, &st);
	ck_assert_uint_eq(st.posted, (uint64_t)queued);
	t = render(m);
	char line[128];
	snprintf(line, sizeof(line), "kubefence_events_dropped_total{reason=\"queue_full\"} %d",
	         full);
	ck_assert_msg(has_line(t, line), "no '%s'", line);
	snprintf(line, sizeof(line), "kubefence_events_posted_total %d", queued);
	ck_assert(has_line(t, line));
	free(t);

	events_stop(e, 1000);
	metrics_free(m);
	k8s_client_free(c);
	fake_done(&f);
}
END_TEST

START_TEST(test_events_refused_counted)
{
	struct fake_api f;
	struct k8s_client *c;
	struct metrics *m = NULL;
	struct events *e = NULL;
	struct events_options o = {.node = "node-a"};
	struct events_stats st;
	char *t;

	fake_init(&f);
	f.status = 403;
	c = fake_client(&f);
	ck_assert_int_eq(metrics_agent_new(&m), 0);
	metrics_watch_api(m, c);
	o.client = c;
	o.metrics = m;
	ck_assert_int_eq(events_start(&o, &e, NULL, 0), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(events_post(e, &LEASE_OBJ, EVENTS_RELEASED, "released"), 0);
	ck_assert_int_eq(events_flush(e, 5000), 0);
	events_stats(e, &st);
	ck_assert_uint_eq(st.posted, 0);
	ck_assert_uint_eq(st.dropped_failed, 3);
	ck_assert_int_eq(st.last_error, -EPERM);
	t = render(m);
	ck_assert(has_line(t, "kubefence_events_dropped_total{reason=\"refused\"} 3"));
	ck_assert(has_line(t, "kubefence_api_errors_total{code=\"403\"} 3"));
	free(t);
	/* any other failed request of the same client counts too, once */
	{
		cJSON *obj = NULL;
		char err[256];
		ck_assert_int_eq(
		        k8s_get(c, "/api/v1/namespaces/kf/pods/p", 1000, &obj, err, sizeof(err)),
		        -EPERM);
	}
	t = render(m);
	ck_assert(has_line(t, "kubefence_api_errors_total{code=\"403\"} 4"));
	free(t);
	events_stop(e, 0);
	metrics_free(m);
	k8s_client_free(c);
	fake_done(&f);
}
END_TEST

static void *release_later(void *arg)
{
	usleep(100 * 1000);
	fake_release(arg);
	return NULL;
}

START_TEST(test_events_stop_drops_rest)
{
	struct fake_api f;
	struct k8s_client *c;
	struct metrics *m = NULL;
	struct events *e = NULL;
	struct events_options o = {.node = "node-a"};
	pthread_t releaser;
	usec_t t0;
	int n = 0;
	char *t;

	fake_init(&f);
	f.hold = true;
	c = fake_client(&f);
	ck_assert_int_eq(metrics_agent_new(&m), 0);
	o.client = c;
	o.metrics = m;
	ck_assert_int_eq(events_start(&o, &e, NULL, 0), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(events_post(e, &LEASE_OBJ, EVENTS_DEMOTED, "d"), 0);
	/* Wait for the sender to take one into its (hung) POST. */
	for (int i = 0; i < 400 && n == 0; i++) {
		pthread_mutex_lock(&f.lock);
		n = f.n_requests;
		pthread_mutex_unlock(&f.lock);
		if (n == 0)
			usleep(5000);
	}
	ck_assert_int_eq(n, 1);
	/* The API answers after 100 ms; stop waits for that POST only and
	 * drops the 4 still queued. */
	ck_assert_int_eq(pthread_create(&releaser, NULL, release_later, &f), 0);
	t0 = clock_mono_usec();
	ck_assert_ptr_null(events_stop(e, 0));
	ck_assert_int_lt(clock_mono_usec() - t0, 2 * USEC_PER_SEC);
	pthread_join(releaser, NULL);
	ck_assert_int_eq(f.n_requests, 1);
	t = render(m);
	ck_assert(has_line(t, "kubefence_events_dropped_total{reason=\"shutdown\"} 4"));
	ck_assert(has_line(t, "kubefence_events_posted_total 1"));
	free(t);
	metrics_free(m);
	k8s_client_free(c);
	fake_done(&f);
}
END_TEST

START_TEST(test_events_options)
{
	struct fake_api f;
	struct k8s_client *c;
	struct events *e = NULL;
	struct events_options o = {0};
	char err[256] = "";

	fake_init(&f);
	c = fake_client(&f);
	ck_assert_int_eq(events_start(&o, &e, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "client"));
	o.client = c;
	ck_assert_int_eq(events_start(&o, &e, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "node"));
	o.node = "n";
	o.queue_len = EVENTS_QUEUE_MAX + 1;
	ck_assert_int_eq(events_start(&o, &e, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "queue length"));
	o.queue_len = 0;
	o.timeout_ms = -1;
	ck_assert_int_eq(events_start(&o, &e, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(e);
	ck_assert_ptr_null(events_stop(NULL, 0));
	k8s_client_free(c);
	fake_done(&f);
}
END_TEST

static Suite *ops_suite(void)
{
	Suite *s = suite_create("ops");
	TCase *tc;

	tc = tcase_create("metrics");
	tcase_add_test(tc, test_gauge_text);
	tcase_add_test(tc, test_counter_text_and_label_escaping);
	tcase_add_test(tc, test_histogram_text_and_bucket_edges);
	tcase_add_test(tc, test_histogram_unlabelled);
	tcase_add_test(tc, test_register_errors);
	tcase_add_test(tc, test_format_value);
	tcase_add_test(tc, test_agent_metrics);
	tcase_add_test(tc, test_reload_metrics);
	tcase_add_test(tc, test_api_error_codes);
	tcase_add_test(tc, test_thread_safety);
	suite_add_tcase(s, tc);

	tc = tcase_create("listen");
	tcase_add_test(tc, test_parse_listen_good);
	tcase_add_loop_test(tc, test_parse_listen_bad, 0, (int)ELEMENTSOF(bad_listen));
	suite_add_tcase(s, tc);

	tc = tcase_create("http");
	tcase_add_test(tc, test_http_endpoints);
	tcase_add_test(tc, test_http_defaults_without_callbacks);
	tcase_add_test(tc, test_http_start_errors);
	tcase_add_test(tc, test_http_ipv6);
	suite_add_tcase(s, tc);

	tc = tcase_create("events");
	tcase_add_test(tc, test_events_reasons);
	tcase_add_test(tc, test_events_body);
	tcase_add_test(tc, test_events_overflow_never_blocks);
	tcase_add_test(tc, test_events_refused_counted);
	tcase_add_test(tc, test_events_stop_drops_rest);
	tcase_add_test(tc, test_events_options);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	int status;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	status = kft_main(ops_suite(), NULL);
	curl_global_cleanup();
	return status;
}
