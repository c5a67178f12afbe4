/* check_ops_it: the operations surface against a real kube-apiserver.
 *
 * Runs inside the control plane of tests/harness/control-plane.sh (through
 * tests/integration/ops.test; its KF_IT_* variables must be set).  The agent
 * user's Role only covers Leases, so the first thing done, as admin, is a
 * Role and RoleBinding granting it `create` on events in KF_IT_NS -- the
 * rule the agent's manifests must carry.  Then: Events posted by the agent's
 * identity are listed back with their reason, type, message and involved
 * object; a user without that rule is refused, which is counted and logged
 * once, never waited on; a burst larger than the queue is dropped and
 * counted; and `kubefencectl status` reads a live /status endpoint (exit 0)
 * or reports nothing listening (exit 3). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lib/clock.h"
#include "lib/k8s.h"
#include "lib/util.h"
#include "nodeagent/events.h"
#include "nodeagent/http.h"
#include "nodeagent/metrics.h"
#include "tests/integration/it.h"
#include "tests/lib/kftest.h"

#define TIMEOUT_MS 10000L
#define RBAC_GV    "rbac.authorization.k8s.io/v1"
#define ROLE       "kubefence-agent-events"

static void create_ok(struct k8s_client *c, const char *coll, const char *json)
{
	char err[1024] = "";
	cJSON *obj = cJSON_Parse(json);
	int r;

	ck_assert_ptr_nonnull(obj);
	r = k8s_create(c, coll, obj, TIMEOUT_MS, NULL, err, sizeof(err));
	ck_assert_msg(r == 0 || r == -EEXIST, "POST %s: %s", coll, err);
	cJSON_Delete(obj);
}

/* The rule the agent needs for Events, as its manifests grant it; then wait
 * until the authorizer's cache has it (a probe Event by the agent). */
static void grant_events(void)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	const char *ns = it_env("KF_IT_NS");
	char coll[256], json[1024], err[1024] = "";
	usec_t deadline = clock_mono_usec() + 20 * USEC_PER_SEC;
	cJSON *probe;
	int r;

	ck_assert_int_gt(k8s_path(coll, sizeof(coll), RBAC_GV, ns, "roles", NULL), 0);
	create_ok(admin, coll,
	          "{\"apiVersion\":\"" RBAC_GV "\",\"kind\":\"Role\",\"metadata\":{\"name\":\"" ROLE
	          "\"},\"rules\":[{\"apiGroups\":[\"\"],\"resources\":[\"events\"],"
	          "\"verbs\":[\"create\"]}]}");
	ck_assert_int_gt(k8s_path(coll, sizeof(coll), RBAC_GV, ns, "rolebindings", NULL), 0);
	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"" RBAC_GV "\",\"kind\":\"RoleBinding\",\"metadata\":{\"name\":"
	         "\"" ROLE "\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":"
	         "\"Role\",\"name\":\"" ROLE "\"},\"subjects\":[{\"kind\":\"ServiceAccount\","
	         "\"name\":\"kubefence-agent\",\"namespace\":\"%s\"}]}",
	         ns);
	create_ok(admin, coll, json);

	ck_assert_int_gt(k8s_path(coll, sizeof(coll), "v1", ns, "events", NULL), 0);
	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"generateName\":"
	         "\"ops-it-probe.\"},\"involvedObject\":{\"kind\":\"Lease\",\"namespace\":\"%s\","
	         "\"name\":\"ops-it-probe\"},\"reason\":\"Probe\",\"type\":\"Normal\","
	         "\"message\":\"rbac probe\"}",
	         ns);
	probe = cJSON_Parse(json);
	do {
		r = k8s_create(agent, coll, probe, TIMEOUT_MS, NULL, err, sizeof(err));
		if (r == -EPERM)
			usleep(100 * 1000);
	} while (r == -EPERM && clock_mono_usec() < deadline);
	ck_assert_msg(r == 0, "the agent still cannot create events: %s", err);
	cJSON_Delete(probe);
	k8s_client_free(agent);
	k8s_client_free(admin);
}

/* A Lease to be the Events' involved object; its uid in uid. */
static void make_lease(struct k8s_client *admin, const char *name, char *uid, size_t len)
{
	char coll[256], json[512], err[1024] = "";
	cJSON *obj, *ret = NULL;
	int r;

	ck_assert_int_gt(k8s_path(coll, sizeof(coll), "coordination.k8s.io/v1", it_env("KF_IT_NS"),
	                          "leases", NULL),
	                 0);
	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
	         "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"holderIdentity\":\"it-node-a\"}}",
	         name);
	obj = cJSON_Parse(json);
	r = k8s_create(admin, coll, obj, TIMEOUT_MS, &ret, err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	snprintf(uid, len, "%s",
	         cJSON_GetStringValue(
	                 cJSON_GetObjectItem(cJSON_GetObjectItem(ret, "metadata"), "uid")));
	cJSON_Delete(obj);
	cJSON_Delete(ret);
}

static void unique_name(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "ops-it-%s-%d-%" PRId64, what, (int)getpid(),
	         clock_mono_usec() % 1000000);
}

static const char *jstr(const cJSON *o, const char *a, const char *b)
{
	if (b)
		o = cJSON_GetObjectItem(o, a);
	return cJSON_GetStringValue(cJSON_GetObjectItem(o, b ? b : a));
}

START_TEST(test_events_listed_back)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	const char *ns = it_env("KF_IT_NS");
	char lease[96], uid[64], coll[256], sel[256], err[1024] = "";
	struct events_options o = {.client = agent, .node = "it-node-a"};
	struct events *e = NULL;
	struct events_stats st;
	cJSON *list = NULL, *item;
	bool seen_fenced = false, seen_promoted = false;

	grant_events();
	unique_name(lease, sizeof(lease), "lease");
	make_lease(admin, lease, uid, sizeof(uid));
	struct events_object obj = {.api_version = "coordination.k8s.io/v1",
	                            .kind = "Lease",
	                            .namespace = ns,
	                            .name = lease,
	                            .uid = uid};

	ck_assert_msg(events_start(&o, &e, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(events_post(e, &obj, EVENTS_FENCED,
	                             "fenced it-node-b by pod in %d ms (delete %d ms, gone %d ms)",
	                             142, 31, 111),
	                 0);
	ck_assert_int_eq(events_post(e, &obj, EVENTS_PROMOTED,
	                             "promoted the local service in %d ms (failover %d ms)", 25,
	                             1870),
	                 0);
	ck_assert_int_eq(events_flush(e, 2 * TIMEOUT_MS), 0);
	events_stats(e, &st);
	ck_assert_msg(st.posted == 2, "posted %" PRIu64 ", failed %" PRIu64 " (last %d)", st.posted,
	              st.dropped_failed, st.last_error);
	ck_assert_ptr_null(events_stop(e, 1000));

	ck_assert_int_gt(k8s_path(coll, sizeof(coll), "v1", ns, "events", NULL), 0);
	snprintf(sel, sizeof(sel), "involvedObject.name=%s", lease);
	ck_assert_msg(k8s_list(admin, coll, NULL, sel, TIMEOUT_MS, &list, err, sizeof(err)) == 0,
	              "%s", err);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(list, "items")), 2);
	cJSON_ArrayForEach(item, cJSON_GetObjectItem(list, "items"))
	{
		const char *reason = jstr(item, "reason", NULL);

		ck_assert_str_eq(jstr(item, "involvedObject", "kind"), "Lease");
		ck_assert_str_eq(jstr(item, "involvedObject", "apiVersion"),
		                 "coordination.k8s.io/v1");
		ck_assert_str_eq(jstr(item, "involvedObject", "namespace"), ns);
		ck_assert_str_eq(jstr(item, "involvedObject", "uid"), uid);
		ck_assert_str_eq(jstr(item, "source", "component"), "kubefence-agent");
		ck_assert_str_eq(jstr(item, "source", "host"), "it-node-a");
		ck_assert_str_eq(jstr(item, "type", NULL), "Normal");
		ck_assert_int_eq(strncmp(jstr(item, "metadata", "name"), lease, strlen(lease)), 0);
		ck_assert_int_eq(cJSON_GetObjectItem(item, "count")->valueint, 1);
		ck_assert_ptr_nonnull(jstr(item, "firstTimestamp", NULL));
		if (strcmp(reason, "Fenced") == 0) {
			seen_fenced = true;
			ck_assert_str_eq(
			        jstr(item, "message", NULL),
			        "fenced it-node-b by pod in 142 ms (delete 31 ms, gone 111 ms)");
		} else if (strcmp(reason, "Promoted") == 0) {
			seen_promoted = true;
			ck_assert_str_eq(jstr(item, "message", NULL),
			                 "promoted the local service in 25 ms (failover 1870 ms)");
		}
	}
	ck_assert(seen_fenced && seen_promoted);
	cJSON_Delete(list);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* Count the lines of a file containing needle. */
static int count_lines(const char *path, const char *needle)
{
	char line[4096];
	FILE *f = fopen(path, "re");
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

START_TEST(test_refused_counted_logged_once)
{
	struct k8s_client *norbac = it_client_for("KF_IT_NORBAC_KUBECONFIG");
	struct events_options o = {.client = norbac, .node = "it-node-n"};
	struct events_object obj = {.api_version = "coordination.k8s.io/v1",
	                            .kind = "Lease",
	                            .namespace = it_env("KF_IT_NS"),
	                            .name = "ops-it-norbac"};
	struct metrics *m = NULL;
	struct events *e = NULL;
	struct events_stats st;
	char logpath[512], *text = NULL;
	int saved, fd;
	usec_t t0, worst = 0;

	/* The sender logs to stderr: capture it (this test runs in its own
	 * process). */
	snprintf(logpath, sizeof(logpath), "%s/ops-it-refused-%d.log", it_env("KF_IT_DIR"),
	         (int)getpid());
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);

	ck_assert_int_eq(metrics_agent_new(&m), 0);
	metrics_watch_api(m, norbac);
	o.metrics = m;
	ck_assert_int_eq(events_start(&o, &e, NULL, 0), 0);
	for (int i = 0; i < 5; i++) {
		t0 = clock_mono_usec();
		ck_assert_int_eq(events_post(e, &obj, EVENTS_FENCE_FAILED, "attempt %d", i), 0);
		if (clock_mono_usec() - t0 > worst)
			worst = clock_mono_usec() - t0;
	}
	ck_assert_int_eq(events_flush(e, 2 * TIMEOUT_MS), 0);
	events_stats(e, &st);
	ck_assert_ptr_null(events_stop(e, 0));
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	/* Never waited on: a post is a queue append. */
	ck_assert_int_lt(worst, 50 * USEC_PER_MSEC);
	ck_assert_uint_eq(st.posted, 0);
	ck_assert_uint_eq(st.dropped_failed, 5);
	ck_assert_int_eq(st.last_error, -EPERM);
	ck_assert_int_eq(count_lines(logpath, "posting Event 'FenceFailed' failed"), 1);
	ck_assert_int_eq(count_lines(logpath, "403 Forbidden"), 1);
	ck_assert_int_eq(metrics_render(m, &text, NULL), 0);
	ck_assert_ptr_nonnull(
	        strstr(text, "\nkubefence_events_dropped_total{reason=\"refused\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nkubefence_api_errors_total{code=\"403\"} 5\n"));
	free(text);
	metrics_free(m);
	k8s_client_free(norbac);
}
END_TEST

START_TEST(test_overflow_drops_and_counts)
{
	struct k8s_client *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	struct events_options o = {.client = agent, .node = "it-node-a", .queue_len = 2};
	struct events_object obj = {.api_version = "coordination.k8s.io/v1",
	                            .kind = "Lease",
	                            .namespace = it_env("KF_IT_NS"),
	                            .name = "ops-it-burst"};
	struct metrics *m = NULL;
	struct events *e = NULL;
	struct events_stats st;
	int queued = 0, full = 0;
	char *text = NULL, line[128];
	usec_t t0;

	grant_events();
	ck_assert_int_eq(metrics_agent_new(&m), 0);
	o.metrics = m;
	ck_assert_int_eq(events_start(&o, &e, NULL, 0), 0);
	t0 = clock_mono_usec();
	for (int i = 0; i < 50; i++) {
		int r = events_post(e, &obj, EVENTS_DEMOTED, "burst %d", i);

		ck_assert(r == 0 || r == -ENOBUFS);
		queued += r == 0;
		full += r == -ENOBUFS;
	}
	/* 50 posts take no network time: the API round trips happen later. */
	ck_assert_int_lt(clock_mono_usec() - t0, 100 * USEC_PER_MSEC);
	ck_assert_int_gt(full, 0);
	ck_assert_int_eq(queued + full, 50);
	ck_assert_int_eq(events_flush(e, 2 * TIMEOUT_MS), 0);
	events_stats(e, &st);
	ck_assert_uint_eq(st.dropped_full, (uint64_t)full);
	ck_assert_uint_eq(st.posted, (uint64_t)queued);
	ck_assert_ptr_null(events_stop(e, 1000));
	ck_assert_int_eq(metrics_render(m, &text, NULL), 0);
	snprintf(line, sizeof(line), "\nkubefence_events_dropped_total{reason=\"queue_full\"} %d\n",
	         full);
	ck_assert_ptr_nonnull(strstr(text, line));
	free(text);
	metrics_free(m);
	k8s_client_free(agent);
}
END_TEST

/* ------------------------------------------------------- kubefencectl status */

static int fill_status(void *userdata, cJSON *obj, char *err, size_t errlen)
{
	cJSON *svc, *fo, *steps, *fences, *f;

	cJSON_AddStringToObject(obj, "node", "it-node-a");
	cJSON_AddStringToObject(obj, "identity", "it-node-a");
	cJSON_AddStringToObject(obj, "role", "leader");
	cJSON_AddStringToObject(obj, "holder", "it-node-a");
	cJSON_AddNumberToObject(obj, "epoch", 12);
	cJSON_AddNumberToObject(obj, "lease_age_ms", 850);
	svc = cJSON_AddObjectToObject(obj, "service");
	cJSON_AddStringToObject(svc, "state", "primary");
	cJSON_AddBoolToObject(svc, "connected", true);
	fo = cJSON_AddObjectToObject(obj, "last_failover");
	cJSON_AddStringToObject(fo, "from", "it-node-b");
	cJSON_AddStringToObject(fo, "to", "it-node-a");
	cJSON_AddStringToObject(fo, "started_at", "2024-01-02T03:04:05.000000Z");
	cJSON_AddNumberToObject(fo, "total_ms", 1870);
	cJSON_AddBoolToObject(fo, "ok", true);
	steps = cJSON_AddArrayToObject(fo, "steps");
	http_status_step(steps, "detect-lease-expired", 0, 0, "holder it-node-b silent 10 s");
	http_status_step(steps, "acquire-lease", 3, 41, "epoch 12");
	http_status_step(steps, "fence", 44, 1800, "pod it-node-b deleted");
	http_status_step(steps, "promote", 1844, 20, NULL);
	http_status_step(steps, "label-master", 1864, 6, NULL);
	fences = cJSON_AddArrayToObject(obj, "fences");
	f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "target", "it-node-b");
	cJSON_AddStringToObject(f, "method", "pod");
	cJSON_AddBoolToObject(f, "ok", true);
	cJSON_AddStringToObject(f, "started_at", "2024-01-02T03:04:05.044000Z");
	cJSON_AddNumberToObject(f, "total_ms", 1800);
	steps = cJSON_AddArrayToObject(f, "steps");
	http_status_step(steps, "delete-pod", 0, 30, NULL);
	http_status_step(steps, "confirm-gone", 30, 1770, NULL);
	cJSON_AddItemToArray(fences, f);
	return 0;
}

/* Run kubefencectl with args; stdout and stderr to files; returns the exit
 * status. */
static int run_ctl(const char *const *args, const char *out, const char *errf)
{
	const char *bin = TEST_BUILDDIR "/nodeagent/kubefencectl";
	char *argv[16];
	size_t n = 0;
	pid_t pid;
	int st;

	argv[n++] = (char *)bin;
	for (; *args && n < ELEMENTSOF(argv) - 1; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (o < 0 || e < 0)
			_exit(127);
		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		execv(bin, argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = calloc(1, 65536);
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(test_ctl_status)
{
	struct http_options o = {.listen = "127.0.0.1:0", .status = fill_status};
	struct http_server *s = NULL;
	char agent[64], out[512], errf[512], err[256] = "", *text;
	const char *dir = it_env("KF_IT_DIR");
	cJSON *json;
	int rc;

	snprintf(out, sizeof(out), "%s/ops-it-ctl-%d.out", dir, (int)getpid());
	snprintf(errf, sizeof(errf), "%s/ops-it-ctl-%d.err", dir, (int)getpid());
	ck_assert_msg(http_start(&o, &s, err, sizeof(err)) == 0, "%s", err);
	snprintf(agent, sizeof(agent), "127.0.0.1:%u", http_port(s));

	rc = run_ctl((const char *const[]){"status", "--agent", agent, NULL}, out, errf);
	text = slurp(out);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, text);
	static const char *const expect[] = {
	        "holder:        it-node-a\n",
	        "epoch:         12\n",
	        "lease age:     850 ms\n",
	        "role:          leader\n",
	        "service:       primary, connected\n",
	        "last failover: it-node-b -> it-node-a, started 2024-01-02T03:04:05.000000Z, ok, "
	        "1870 ms total\n",
	        "detect-lease-expired",
	        "fence                     1800 ms  pod it-node-b deleted\n",
	        "label-master                 6 ms\n",
	        "fence history (1, newest first):\n",
	        "ok fenced it-node-b by pod, 1800 ms\n",
	        "confirm-gone",
	};
	for (size_t i = 0; i < ELEMENTSOF(expect); i++)
		ck_assert_msg(strstr(text, expect[i]), "no '%s' in:\n%s", expect[i], text);
	free(text);

	rc = run_ctl((const char *const[]){"status", "--agent", agent, "--json", NULL}, out, errf);
	ck_assert_int_eq(rc, 0);
	text = slurp(out);
	json = cJSON_Parse(text);
	ck_assert_ptr_nonnull(json);
	ck_assert_int_eq(cJSON_GetObjectItem(json, "epoch")->valueint, 12);
	cJSON_Delete(json);
	free(text);

	/* Bad usage: 2, with the reason. */
	rc = run_ctl((const char *const[]){"status", "--agent", "nohostport", NULL}, out, errf);
	ck_assert_int_eq(rc, 2);
	text = slurp(errf);
	ck_assert_ptr_nonnull(strstr(text, "--agent 'nohostport'"));
	free(text);
	rc = run_ctl((const char *const[]){"status", "--frobnicate", NULL}, out, errf);
	ck_assert_int_eq(rc, 2);
	rc = run_ctl((const char *const[]){"status", "--timeout-ms", "0", NULL}, out, errf);
	ck_assert_int_eq(rc, 2);

	/* Nothing listens any more: 3, and says so. */
	http_stop(s);
	rc = run_ctl(
	        (const char *const[]){"status", "--agent", agent, "--timeout-ms", "2000", NULL},
	        out, errf);
	ck_assert_int_eq(rc, 3);
	text = slurp(errf);
	ck_assert_msg(strstr(text, "unreachable"), "%s", text);
	ck_assert_ptr_nonnull(strstr(text, agent));
	free(text);
}
END_TEST

static Suite *ops_it_suite(void)
{
	Suite *s = suite_create("ops_it");
	TCase *tc;

	tc = tcase_create("events");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_events_listed_back);
	tcase_add_test(tc, test_refused_counted_logged_once);
	tcase_add_test(tc, test_overflow_drops_and_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("ctl_status");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ctl_status);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(ops_it_suite(), NULL);
}
