/* Election against a real kube-apiserver + etcd with TLS and RBAC: agents
 * run as real processes with tokens that only have the agent Role.  Each test
 * uses its own Lease, so they are independent.  Every agent a test starts is
 * stopped by that test (by PID).
 *
 * Timings used here: lease 2000 ms, renew deadline 1500 ms, retry 250 ms. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/k8s.h"
#include "tests/integration/it.h"
#include "tests/lib/kftest.h"

#define DURATION_MS 2000
#define RENEW_MS    1500
#define RETRY_MS    250
#define TIMINGS                                                                                    \
	"lease.duration_ms = 2000\nlease.renew_deadline_ms = 1500\nlease.retry_ms = 250\n"         \
	"kube.request_timeout_ms = 1000\n"                                                         \
	"service.probe = none\nhttp.listen =\n"

static const char *kubeconfig_of(int i)
{
	static const char *const v[] = {"KF_IT_AGENT_KUBECONFIG_A", "KF_IT_AGENT_KUBECONFIG_B",
	                                "KF_IT_AGENT_KUBECONFIG_C"};
	return it_env(v[i % 3]);
}

static const char *const NAMES[] = {"node-a", "node-b", "node-c"};

static int index_of(struct it_agent *ag, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ag[i].name, name) == 0)
			return (int)i;
	return -1;
}

static void stop_all(struct it_agent *ag, size_t n)
{
	for (size_t i = 0; i < n; i++)
		it_agent_reap(&ag[i]);
}

/* Watch a contended Lease for `ms`: a holder appears, and at every
 * observation the agents' own view agrees that at most one leads. */
static void contend(const char *lease, size_t n)
{
	struct k8s_client *c = it_admin_client();
	struct it_agent ag[3];
	struct lease_record r, first;
	usec_t t0 = clock_mono_usec(), seen;

	for (size_t i = 0; i < n; i++)
		it_agent_start(&ag[i], NAMES[i], kubeconfig_of((int)i), lease, TIMINGS);
	seen = it_lease_wait_holder(c, lease, NULL, 5000, &first);
	ck_assert_msg(seen, "nobody took lease '%s' within 5 s", lease);
	it_record(n == 2 ? "first-acquire-2-agents" : "first-acquire-3-agents",
	          (double)(seen - t0) / USEC_PER_SEC);
	ck_assert_int_ge(index_of(ag, n, first.holder), 0);

	/* Steady state for 3 s: the same holder, the same epoch. */
	for (int k = 0; k < 60; k++) {
		ck_assert_int_eq(it_lease_get(c, lease, &r), 0);
		ck_assert_str_eq(r.holder, first.holder);
		ck_assert_int_eq(r.transitions, first.transitions);
		usleep(50000);
	}
	it_assert_no_overlap(ag, n);
	/* exactly one agent logged that it leads */
	int leaders = 0;
	for (size_t i = 0; i < n; i++)
		leaders += it_log_count(&ag[i], NULL, "event=leading", NULL);
	ck_assert_int_eq(leaders, 1);
	stop_all(ag, n);
	k8s_client_free(c);
}

START_TEST(two_agents_contend)
{
	contend("contend-2", 2);
}
END_TEST

START_TEST(three_agents_contend)
{
	contend("contend-3", 3);
}
END_TEST

/* kill -9 of the holder: another agent holds within lease duration + one
 * retry period, with epoch + 1. */
START_TEST(kill_holder_takeover)
{
	const char *lease = "kill-9";
	struct k8s_client *c = it_admin_client();
	struct it_agent ag[3];
	struct lease_record before, after;
	usec_t seen;
	int h;

	for (int i = 0; i < 3; i++)
		it_agent_start(&ag[i], NAMES[i], kubeconfig_of(i), lease, TIMINGS);
	ck_assert(it_lease_wait_holder(c, lease, NULL, 5000, &before));
	usleep(3 * RETRY_MS * 1000); /* a few renewals */
	ck_assert_int_eq(it_lease_get(c, lease, &before), 0);
	h = index_of(ag, 3, before.holder);
	ck_assert_int_ge(h, 0);

	it_agent_signal(&ag[h], SIGKILL);
	seen = it_lease_wait_holder(c, lease, before.holder, 10000, &after);
	ck_assert_msg(seen, "no takeover within 10 s of kill -9 of %s", before.holder);
	double took = (double)(seen - ag[h].killed_at) / USEC_PER_SEC;
	it_record("takeover-after-kill-9", took);
	ck_assert_msg(took <= (DURATION_MS + RETRY_MS) / 1000.0,
	              "takeover took %.3f s > lease duration + retry", took);
	/* and not before the lease could have expired */
	ck_assert_msg(took >= (DURATION_MS - RETRY_MS) / 1000.0,
	              "takeover after %.3f s: before the lease expired", took);
	ck_assert_int_eq(after.transitions, before.transitions + 1);
	it_assert_no_overlap(ag, 3);
	stop_all(ag, 3);
	k8s_client_free(c);
}
END_TEST

/* SIGTERM of the holder: it releases with a reason, and a follower, woken by
 * its watch, holds within one second with epoch + 1. */
START_TEST(sigterm_holder_handover)
{
	const char *lease = "sigterm";
	struct k8s_client *c = it_admin_client();
	struct it_agent ag[2];
	struct lease_record before, after;
	usec_t t0, seen;
	int h, status;

	for (int i = 0; i < 2; i++)
		it_agent_start(&ag[i], NAMES[i], kubeconfig_of(i), lease, TIMINGS);
	ck_assert(it_lease_wait_holder(c, lease, NULL, 5000, &before));
	usleep(2 * RETRY_MS * 1000);
	ck_assert_int_eq(it_lease_get(c, lease, &before), 0);
	h = index_of(ag, 2, before.holder);
	ck_assert_int_ge(h, 0);

	t0 = clock_mono_usec();
	it_agent_signal(&ag[h], SIGTERM);
	seen = it_lease_wait_holder(c, lease, before.holder, 5000, &after);
	ck_assert(seen);
	double took = (double)(seen - t0) / USEC_PER_SEC;
	it_record("takeover-after-sigterm", took);
	ck_assert_msg(took < 1.0, "handover took %.3f s", took);
	ck_assert_int_eq(after.transitions, before.transitions + 1);

	status = it_agent_wait(&ag[h], 3000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the stopped agent did not exit 0 (status %d)", status);
	ck_assert_int_eq(it_log_count(&ag[h], NULL, "event=released", "stopped by SIGTERM", NULL),
	                 1);
	/* the follower saw the release and its reason */
	ck_assert_int_ge(it_log_count(&ag[1 - h], NULL, "is free", "stopped by SIGTERM", NULL), 1);
	it_assert_no_overlap(ag, 2);
	stop_all(ag, 2);
	k8s_client_free(c);
}
END_TEST

/* The same identity restarted at once (new incarnation) must not reuse the
 * old term: it waits for expiry like anyone else and takes a new epoch. */
START_TEST(restarted_identity_waits_for_expiry)
{
	const char *lease = "restart";
	struct k8s_client *c = it_admin_client();
	struct it_agent a;
	struct lease_record before, after;
	usec_t killed;

	it_agent_start(&a, "node-a", kubeconfig_of(0), lease, TIMINGS);
	ck_assert(it_lease_wait_holder(c, lease, NULL, 5000, &before));
	usleep(2 * RETRY_MS * 1000);
	ck_assert_int_eq(it_lease_get(c, lease, &before), 0);
	it_agent_signal(&a, SIGKILL);
	killed = a.killed_at;
	it_agent_wait(&a, 2000);
	it_agent_start(&a, "node-a", kubeconfig_of(0), lease, TIMINGS);
	for (;;) {
		ck_assert_int_eq(it_lease_get(c, lease, &after), 0);
		if (strcmp(after.incarnation, before.incarnation) != 0)
			break;
		ck_assert_msg(clock_mono_usec() - killed < 10 * USEC_PER_SEC, "never re-acquired");
		usleep(10000);
	}
	double took = (double)(clock_mono_usec() - killed) / USEC_PER_SEC;
	it_record("same-identity-restart-reacquire", took);
	ck_assert_msg(took >= (DURATION_MS - RETRY_MS) / 1000.0,
	              "a new incarnation took the lease after %.3f s, before it expired", took);
	ck_assert_str_eq(after.holder, "node-a");
	ck_assert_int_eq(after.transitions, before.transitions + 1);
	it_agent_reap(&a);
	k8s_client_free(c);
}
END_TEST

/* The API server stops for longer than the renew deadline: the leader
 * reports lost leadership within its renew deadline, long before anyone
 * else could take the lease; after the outage one agent leads again. */
START_TEST(apiserver_outage_leader_steps_down)
{
	const char *lease = "outage";
	struct k8s_client *c = it_admin_client();
	struct it_agent ag[2];
	struct lease_record before, after;
	char cmd[1024];
	usec_t t_stop, t_lost = 0;
	int h;

	for (int i = 0; i < 2; i++)
		it_agent_start(&ag[i], NAMES[i], kubeconfig_of(i), lease, TIMINGS);
	ck_assert(it_lease_wait_holder(c, lease, NULL, 5000, &before));
	usleep(3 * RETRY_MS * 1000);
	ck_assert_int_eq(it_lease_get(c, lease, &before), 0);
	h = index_of(ag, 2, before.holder);
	ck_assert_int_ge(h, 0);

	snprintf(cmd, sizeof(cmd), "bash '%s' stop-apiserver '%s'", it_env("KF_IT_HARNESS"),
	         it_env("KF_IT_DIR"));
	/* t_stop is taken before the stop: the last renew the leader could get
	 * through started before the server went away. */
	t_stop = clock_mono_usec();
	ck_assert_int_eq(system(cmd), 0);
	usleep((RENEW_MS + 1500) * 1000);

	ck_assert_int_eq(it_log_count(&ag[h], &t_lost, "event=stopped-leading",
	                              "renew deadline passed", NULL),
	                 1);
	double lost_after = (double)(t_lost - t_stop) / USEC_PER_SEC;
	it_record("leader-stepped-down-after-apiserver-stop", lost_after);
	ck_assert_msg(lost_after <= (RENEW_MS + 100) / 1000.0,
	              "leader kept leading %.3f s into the outage (renew deadline %.1f s)",
	              lost_after, RENEW_MS / 1000.0);
	ck_assert_msg(lost_after < DURATION_MS / 1000.0, "not before the lease could expire");
	/* nobody leads during the outage */
	ck_assert_int_eq(it_log_count(&ag[1 - h], NULL, "event=leading", NULL), 0);

	snprintf(cmd, sizeof(cmd), "bash '%s' start-apiserver '%s'", it_env("KF_IT_HARNESS"),
	         it_env("KF_IT_DIR"));
	ck_assert_int_eq(system(cmd), 0);
	/* someone leads again, with a new epoch */
	usec_t end = clock_mono_usec() + 20 * USEC_PER_SEC;
	for (;;) {
		if (it_lease_get(c, lease, &after) == 0 && after.holder[0] &&
		    after.transitions > before.transitions)
			break;
		ck_assert_msg(clock_mono_usec() < end, "nobody leads after the outage");
		usleep(50000);
	}
	usleep(2 * RETRY_MS * 1000);
	it_assert_no_overlap(ag, 2);
	stop_all(ag, 2);
	k8s_client_free(c);
}
END_TEST

/* An agent whose Role lacks `update` on leases: one clear error line naming
 * the verb and the resource, however long it keeps trying. */
START_TEST(missing_rbac_permission_is_one_clear_line)
{
	const char *lease = "rbac";
	struct k8s_client *c = it_admin_client();
	struct it_agent a;
	char path[512], err[512] = "";
	cJSON *obj;
	int status;

	/* A free Lease exists, so taking it needs `update`. */
	obj = cJSON_Parse("{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
	                  "\"metadata\":{\"name\":\"rbac\"},\"spec\":{\"holderIdentity\":\"\"}}");
	ck_assert_int_ge(k8s_path(path, sizeof(path), "coordination.k8s.io/v1", it_env("KF_IT_NS"),
	                          "leases", NULL),
	                 0);
	ck_assert_msg(k8s_create(c, path, obj, 2000, NULL, err, sizeof(err)) == 0, "%s", err);
	cJSON_Delete(obj);

	it_agent_start(&a, "node-a", it_env("KF_IT_NORBAC_KUBECONFIG"), lease, TIMINGS);
	usleep(3000 * 1000); /* about a dozen attempts */
	it_agent_signal(&a, SIGTERM);
	status = it_agent_wait(&a, 3000);
	ck_assert(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int n = it_log_count(&a, NULL, " error kubefence-agent[", "forbidden", "update", "leases",
	                     NULL);
	if (n != 1)
		it_agent_dump(&a);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(it_log_count(&a, NULL, "event=leading", NULL), 0);
	k8s_client_free(c);
}
END_TEST

static Suite *election_suite(void)
{
	Suite *s = suite_create("election-it");
	TCase *tc;

	tc = tcase_create("contend");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, two_agents_contend);
	tcase_add_test(tc, three_agents_contend);
	suite_add_tcase(s, tc);

	tc = tcase_create("takeover");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, kill_holder_takeover);
	tcase_add_test(tc, sigterm_holder_handover);
	tcase_add_test(tc, restarted_identity_waits_for_expiry);
	suite_add_tcase(s, tc);

	tc = tcase_create("rbac");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, missing_rbac_permission_is_one_clear_line);
	suite_add_tcase(s, tc);

	/* last: it restarts the API server */
	tc = tcase_create("outage");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, apiserver_outage_leader_steps_down);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	static const struct kft_opts opts = {.verbose = true};

	return kft_main(election_suite(), &opts);
}
