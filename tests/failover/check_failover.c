/* End-to-end failover of the agent with real processes: a real
 * kube-apiserver + etcd (TLS, RBAC) and a real tgtd, two nodes, each with a
 * kubefence-agent and a kubefence-metad on its control socket, both metads
 * on one shared data directory.  One scenario per TCase, each with its own
 * Lease, pods and directory (fo.h describes the setup).
 *
 * Throughout every scenario:
 *   - a watcher polls the pods every 20 ms and counts observations with more
 *     than one pod labelled role=master (must stay 0);
 *   - a client writes sequential keys to the last master that acknowledged,
 *     falling over to the other metad on NOTMASTER/ERR/connection errors,
 *     and probes the other metad every 20 writes; at the end fo_check()
 *     verifies that no acknowledged write is lost (read back on the final
 *     master) and that two masters never acknowledged in overlapping
 *     periods (epochs, from the agents' logs, never go back in ack order;
 *     no write is acknowledged in a term once a newer term started);
 *   - two more clients put, delete and read a few shared registers and read
 *     the writer's latest keys; every operation of every client (and the
 *     final read-back of every key written) is recorded in the scenario's
 *     history, which kf-lincheck must find linearizable (fo_check_history;
 *     a missing kf-lincheck fails under CI=true, and is a warning
 *     otherwise).
 *
 * Two scenarios arm fault points (lib/failpoint.h) in one process: the
 * master's metad crashing right after a write became durable (its client
 * sees a lost connection: an operation of unknown outcome), and the new
 * leader's agent crashing after fencing, before it promotes its service.
 *
 * Timings: lease 2000 ms, renew deadline 1500 ms, retry 250 ms, request
 * 1000 ms, write margin 250 ms.  Fencing: scsi-pr on the harness LUN (every
 * failover), pod-delete (only when the old Lease expired; a released Lease
 * with the service confirmed dead keeps the pod, so a restarted container
 * of the same pod comes back).  Times are measured and recorded, never
 * asserted, except the contract that a service stops writing by its own
 * deadline. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "lib/failpoint.h"
#include "lib/k8s.h"
#include "lib/lease.h"
#include "lib/util.h"
#include "nodeagent/endpoints.h"
#include "scsi/scsi_pr.h"
#include "storage/metad/proto.h"
#include "tests/failover/fo.h"
#include "tests/failover/scen.h"
#include "tests/lib/kftest.h"

/* orchestrator.h's ORCH_LIVE_STALE, in seconds */
#define ORCH_LIVE_S 10

/* A fault-point spec armed in one process from its first start. */
struct fp_arm {
	size_t node;
	enum fo_proc proc;
	const char *spec;
};

/* Node 0 master, writes flowing to it for 1 s; the processes named in arms
 * (n of them) started with their fault points armed. */
/* proxied: a node whose agent reaches the API server through
 * kf-faultproxy (-1: none). */
/* more conf lines for both agents of the next scen_start*() (NULL: none) */
static const char *scen_extra_conf;

/* proxied: the node whose agent goes through a kf-faultproxy, -1 none, or
 * SCEN_RIDE: both, with agent.api_outage = ride-through and the metads'
 * store on the harness's second LUN. */
#define SCEN_RIDE (-2)
/* Start the cluster set up in s->c, the watcher and the workload, and
 * return once node 0 has acknowledged writes for a second. */
static void scen_run(struct scen *s)
{
	usec_t t0;

	fo_watcher_start(&s->wa, &s->c);
	fo_cluster_start(&s->c);
	s->w.probe_every = 20;
	s->w.pause_us = 2000;
	s->w.mixed = 2;
	t0 = clock_mono_usec();
	fo_workload_start(&s->w, &s->c);
	ck_assert_msg(fo_wait_ack(&s->w, 0, t0, 5000), "no write acknowledged by %s",
	              s->c.node[0].name);
	usleep(1000 * 1000);
}

static void scen_start_full(struct scen *s, const char *tag, const struct fp_arm *arms, size_t n,
                            int proxied)
{
	memset(s, 0, sizeof(*s));
	fo_prepare_rbac();
	fo_cluster_init(&s->c, tag, 2);
	for (size_t i = 0; scen_extra_conf && i < 2; i++)
		fo_conf_extra(&s->c, i, scen_extra_conf);
	if (proxied >= 0)
		fo_proxy(&s->c, (size_t)proxied);
	if (proxied == SCEN_RIDE) {
		fo_use_store_lun(&s->c);
		s->c.ride_through = true;
		for (size_t i = 0; i < 2; i++) {
			fo_conf_extra(&s->c, i, "agent.api_outage = ride-through\n");
			fo_proxy(&s->c, i);
		}
	}
	for (size_t i = 0; i < n; i++)
		fo_arm(&s->c, arms[i].node, arms[i].proc, arms[i].spec);
	scen_run(s);
}

static void scen_start_armed(struct scen *s, const char *tag, const struct fp_arm *arms, size_t n)
{
	scen_start_full(s, tag, arms, n, -1);
}

static void scen_start(struct scen *s, const char *tag)
{
	scen_start_armed(s, tag, NULL, 0);
}

/* Whether node i's pod carries role=master now (read as admin). */
static bool labelled(struct scen *s, size_t i)
{
	char path[512], err[512];
	cJSON *pod = NULL, *labels;
	bool yes;

	ck_assert_int_ge(
	        k8s_path(path, sizeof(path), "v1", getenv("KF_IT_NS"), "pods", s->c.node[i].pod),
	        0);
	if (k8s_get(s->c.admin, path, 5000, &pod, err, sizeof(err)) < 0)
		return false;
	labels = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pod, "metadata"),
	                                          "labels");
	yes = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(labels, "role")) &&
	      strcmp(cJSON_GetObjectItemCaseSensitive(labels, "role")->valuestring, "master") == 0;
	cJSON_Delete(pod);
	return yes;
}

static bool wait_labelled(struct scen *s, size_t i, long ms)
{
	usec_t end = clock_mono_usec() + ms * USEC_PER_MSEC;

	while (clock_mono_usec() < end) {
		if (labelled(s, i))
			return true;
		usleep(20000);
	}
	return false;
}

static void scen_finish(struct scen *s)
{
	char why[2048] = "", hwhy[2048] = "";
	struct fo_verdict v;
	int final;
	bool ok, hok;

	usleep(500 * 1000);
	fo_workload_stop(&s->w);
	fo_watcher_stop(&s->wa);
	final = fo_wait_master(&s->c, -1, 5000);
	if (final < 0)
		dump_all(s);
	ck_assert_msg(final >= 0, "no master at the end");
	ok = fo_check(&s->c, &s->w, final, why, sizeof(why));
	hok = fo_check_history(&s->c, final, &v, hwhy, sizeof(hwhy));
	printf("%s: %zu writes acknowledged (node-a %zu, node-b %zu), %" PRIu64
	       " attempts, %" PRIu64 " NOTMASTER, %" PRIu64
	       " errors/timeouts; mixed clients: %" PRIu64 " ops, %" PRIu64
	       " answered; watcher: %" PRIu64 " observations, %" PRIu64 " failed lists, %" PRIu64
	       " with two masters\n",
	       s->c.tag, s->w.n_acks, fo_acks_count(&s->w, 0, 0), fo_acks_count(&s->w, 1, 0),
	       s->w.attempts, s->w.refused, s->w.errors, s->w.mixed_ops, s->w.mixed_ok,
	       s->wa.observations, s->wa.failed_lists, s->wa.violations);
	fflush(stdout);
	if (!ok || s->wa.violations)
		dump_all(s);
	ck_assert_msg(ok, "%s", why);
	ck_assert_msg(hok, "%s", hwhy);
	ck_assert_msg(s->wa.violations == 0, "%s", s->wa.violation);
	ck_assert_msg(s->wa.observations >= 50, "the watcher saw the pods only %" PRIu64 " times",
	              s->wa.observations);
	fo_workload_free(&s->w);
	fo_cluster_stop(&s->c);
}

/* ---- what the agents say about it: /metrics, /status, Events ---- */

/* Whether an Event with `reason` about node i's pod was posted, waiting up
 * to 5 s (Events are posted asynchronously); its message in msg. */
static bool event_posted(struct scen *s, size_t i, const char *reason, char *msg, size_t msglen)
{
	char path[256], field[200], err[512];
	usec_t end = clock_mono_usec() + 5 * USEC_PER_SEC;

	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", getenv("KF_IT_NS"));
	snprintf(field, sizeof(field), "involvedObject.name=%s,reason=%s", s->c.node[i].pod,
	         reason);
	do {
		cJSON *list = NULL;
		if (k8s_list(s->c.admin, path, NULL, field, 5000, &list, err, sizeof(err)) == 0) {
			const cJSON *it = cJSON_GetArrayItem(
			        cJSON_GetObjectItemCaseSensitive(list, "items"), 0);
			const char *m = cJSON_GetStringValue(
			        cJSON_GetObjectItemCaseSensitive(it, "message"));
			if (it) {
				str_copy(msg, msglen, m ? m : "");
				cJSON_Delete(list);
				return true;
			}
			cJSON_Delete(list);
		}
		usleep(100 * 1000);
	} while (clock_mono_usec() < end);
	return false;
}

/* Direct PUTs to node i for `ms` (client "hammer" of the history): how many
 * were acknowledged; the time of the first NOTMASTER in *first_nm (0:
 * none). */
static int hammer(struct scen *s, size_t i, long ms, int *notmaster, int *errs, usec_t *first_nm)
{
	struct fo_conn cn;
	usec_t end = clock_mono_usec() + ms * USEC_PER_MSEC;
	static unsigned calls;
	char key[64], value[64], txt[256];
	int ok = 0, k = 0;
	unsigned call = calls++;

	*notmaster = *errs = 0;
	*first_nm = 0;
	fo_conn_init(&cn, s->c.node[i].port);
	while (clock_mono_usec() < end) {
		/* values unique in the history, whatever the number of calls */
		snprintf(value, sizeof(value), "hammer-%u-%d", call, k);
		snprintf(key, sizeof(key), "h-%s-%d", s->c.tag, k++);
		switch (fo_op(&s->c, &cn, "hammer", PROTO_OP_PUT, key, value, 200, txt,
		              sizeof(txt))) {
		case FO_OK:
			ok++;
			break;
		case FO_NOTMASTER:
			if (!*first_nm)
				*first_nm = clock_mono_usec();
			(*notmaster)++;
			break;
		default:
			(*errs)++;
			usleep(5000);
			break;
		}
		usleep(2000);
	}
	fo_conn_close(&cn);
	return ok;
}

/* 1. kill -9 of the master metad; the agent sees EOF and releases at once;
 * the other node takes over; the killed one is restarted (same pod name and
 * uid) and stays standby. */
START_TEST(kill9_master_metad)
{
	struct scen s;
	usec_t t_kill, t_ack, t_restart;
	int nm, er, ok;
	usec_t first_nm;

	scen_start(&s, "kill9");
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	t_ack = fo_wait_ack(&s.w, 1, t_kill, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 15 s of kill -9");
	fo_record("failover-kill9-metad-to-first-ack", secs(t_ack - t_kill));
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=released", "service",
	                               "died", NULL),
	                 1);
	/* node-a's key was registered (fo_cluster_start joined it): preempted */
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node-a",
	                               "scsi-pr confirmed", "PREEMPT", NULL),
	                 1);

	/* restarted as a kubelet would: same pod, same uid */
	t_restart = clock_mono_usec();
	fo_metad_start(&s.c, 0);
	usec_t end = clock_mono_usec() + 10 * USEC_PER_SEC;
	while (kft_log_count(s.c.node[0].agent_log, NULL, "service '", s.c.node[0].pod, "connected",
	                     NULL) < 2) {
		ck_assert_msg(clock_mono_usec() < end, "the restarted metad never reconnected");
		usleep(10000);
	}
	ck_assert(fo_wait_role(&s.c, 0, "standby", 5000));
	fo_record("kill9-restarted-metad-reconnected", secs(clock_mono_usec() - t_restart));

	/* What the agents report, as an operator reads it: counters, Events,
	 * kubefencectl status, all from the real agents. */
	{
		char msg[1024], cmd[4096];
		double v;

		/* node-a: its term (1) and node-b's (2); promoted once; its
		 * service died as master: one demotion */
		v = metric_of(&s, 0, "kubefence_lease_transitions_total");
		ck_assert_msg(v >= 2,
		              "node-a saw %.0f Lease transitions (its own term and node-b's)", v);
		ck_assert_double_eq(metric_of(&s, 0, "kubefence_promotions_total"), 1);
		ck_assert_double_eq(metric_of(&s, 0, "kubefence_demotions_total"), 1);
		ck_assert_double_eq(metric_of(&s, 0, "kubefence_role"), 0);
		/* node-b: the first observation (node-a's term) is the baseline;
		 * its own term is a transition */
		ck_assert_double_eq(metric_of(&s, 1, "kubefence_lease_transitions_total"), 1);
		ck_assert_double_eq(metric_of(&s, 1, "kubefence_promotions_total"), 1);
		ck_assert_double_eq(metric_of(&s, 1, "kubefence_demotions_total"), 0);
		ck_assert_double_eq(metric_of(&s, 1, "kubefence_role"), 1);
		ck_assert_msg(event_posted(&s, 0, "Released", msg, sizeof(msg)),
		              "no Released Event about node-a's pod");
		ck_assert_ptr_nonnull(strstr(msg, "died"));
		ck_assert_msg(event_posted(&s, 1, "Fenced", msg, sizeof(msg)),
		              "no Fenced Event about node-b's pod");
		ck_assert_ptr_nonnull(strstr(msg, "node node-a"));
		ck_assert_msg(event_posted(&s, 1, "Promoted", msg, sizeof(msg)),
		              "no Promoted Event about node-b's pod");
		ck_assert_ptr_nonnull(strstr(msg, "ms after the Lease was free"));
		snprintf(cmd, sizeof(cmd),
		         "'%s' status --agent 127.0.0.1:%d > '%s/status.out' 2>&1 && "
		         "grep -q 'master' '%s/status.out' && grep -q 'node-a' '%s/status.out' && "
		         "grep -q 'scsi-pr' '%s/status.out'",
		         getenv("KF_IT_CTL"), s.c.node[1].http_port, s.c.node[1].dir,
		         s.c.node[1].dir, s.c.node[1].dir, s.c.node[1].dir);
		if (system(cmd) != 0) {
			snprintf(cmd, sizeof(cmd), "cat '%s/status.out'", s.c.node[1].dir);
			(void)!system(cmd);
		}
		snprintf(cmd, sizeof(cmd),
		         "grep -q 'master' '%s/status.out' && grep -q 'node-a' '%s/status.out' && "
		         "grep -q 'scsi-pr' '%s/status.out'",
		         s.c.node[1].dir, s.c.node[1].dir, s.c.node[1].dir);
		ck_assert_msg(system(cmd) == 0,
		              "kubefencectl status of node-b does not show it master with its "
		              "fence of node-a");
	}
	ok = hammer(&s, 0, 1000, &nm, &er, &first_nm);
	printf("kill9: restarted node-a: %d OK, %d NOTMASTER, %d errors\n", ok, nm, er);
	ck_assert_int_eq(ok, 0);
	ck_assert_int_gt(nm, 0);
	usleep(1000 * 1000); /* more probes of the workload */
	fo_acks_dump(&s.w, 0, t_kill);
	ck_assert_msg(fo_acks_sent_after(&s.w, 0, t_kill) == 0,
	              "node-a acknowledged a write sent after it was killed");
	ck_assert(fo_wait_role(&s.c, 0, "standby", 100));
	scen_finish(&s);
}
END_TEST

/* SIGSTOP of the master's MetaService alone: its socket stays open, so no
 * EOF tells its agent; only the liveness exchange does (PING unanswered for
 * service.heartbeat_timeout_ms).  The agent kills it, confirms its death and
 * releases for the full fence; node-b takes over.  The stopped service
 * acknowledges nothing afterwards (it is dead), and the history checker
 * judges the whole run. */
static int metad_wait(struct scen *s, size_t i, long timeout_ms);

START_TEST(sigstop_master_metad)
{
	struct scen s;
	usec_t t_stop, t_frozen, t_ack, t_hung = 0;
	int status;

	/* the second run: a PING deadline shorter than two PING intervals */
	scen_extra_conf = _i == 1 ? "service.heartbeat_timeout_ms = 300\n" : NULL;
	scen_start(&s, _i == 0 ? "stopmetad" : "stopmetadfast");
	scen_extra_conf = NULL;
	t_stop = fo_metad_signal(&s.c, 0, SIGSTOP);
	/* seen stopped (fo_metad_signal waits for it): a write sent before
	 * then may still be answered */
	t_frozen = clock_mono_usec();
	t_ack = fo_wait_ack(&s.w, 1, t_stop, 10000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack,
	              "node-b acknowledged nothing within 10 s of SIGSTOP of node-a's service "
	              "(a hung service is never replaced)");
	if (_i == 0)
		fo_record("failover-sigstop-metad-to-first-ack", secs(t_ack - t_stop));
	ck_assert(wait_log(s.c.node[0].agent_log, 1, 0, &t_hung, "event=service-hung", NULL));
	printf("%s: hung verdict %.3f s after the stop\n", s.c.tag, secs(t_hung - t_stop));
	/* the deadline is the feature: the verdict comes one PING interval
	 * (the first PING the stopped service misses) and one deadline after
	 * the stop, plus scheduling; 1 s of slack */
	ck_assert_msg(_i == 0 || t_hung - t_stop < 1500 * USEC_PER_MSEC,
	              "node-a's agent found its stopped service hung %.3f s after the stop, "
	              "with a 0.3 s PING deadline every 0.2 s",
	              secs(t_hung - t_stop));
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=self-fenced", NULL), 1);
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'",
	                               "level=lease expired", NULL),
	                 1);
	fo_acks_dump(&s.w, 0, t_frozen);
	ck_assert_msg(fo_acks_sent_after(&s.w, 0, t_frozen) == 0,
	              "node-a's stopped service acknowledged a write sent after SIGSTOP");
	status = metad_wait(&s, 0, 5000);
	ck_assert_msg(status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	              "node-a's stopped service was not killed (status %d)", status);
	fo_metad_start(&s.c, 0);
	ck_assert(fo_wait_role(&s.c, 0, "standby", 5000));
	scen_finish(&s);
}
END_TEST

/* The single-replica topology: one MetaService (node-a's), its store on
 * the LUN; node-b's agent has no service (agent.fence_without_service).
 * Everything on node-a stops: node-b's agent takes the Lease only to fence
 * node-a (its key preempted on the LUN, its pod force-deleted), releases it
 * saying it promoted nothing; the replacement metad then starts on node-b,
 * its agent takes the Lease owing nobody, promotes it, and it recovers
 * every acknowledged write from the LUN.  Resumed, node-a acknowledges
 * nothing sent after the stop; the checker judges the whole history. */
START_TEST(single_replica_fenced_without_a_service)
{
	struct scen s;
	usec_t t_stop, t_frozen, t_fenced = 0, t_released = 0, t_ack;
	int nm, er, ok;
	usec_t first_nm;

	memset(&s, 0, sizeof(s));
	fo_prepare_rbac();
	fo_cluster_init(&s.c, "single", 2);
	fo_use_store_lun(&s.c);
	s.c.one_metad = true;
	fo_conf_extra(&s.c, 1, "agent.fence_without_service = true\n");
	scen_run(&s);
	/* with node-a's service healthy, node-b never takes the Lease */
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);

	t_stop = fo_agent_signal(&s.c, 0, SIGSTOP);
	fo_metad_signal(&s.c, 0, SIGSTOP);
	/* both seen stopped: the metad, stopped second, may answer a write
	 * sent before then (its grant is still running) */
	t_frozen = clock_mono_usec();
	if (!wait_log(s.c.node[1].agent_log, 1, 10000, &t_fenced, "event=fenced", "node-a"))
		dump_all(&s);
	ck_assert_msg(t_fenced, "node-b's agent, with no service of its own, never fenced the "
	                        "silent node-a: nobody takes over a single replica");
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node-a",
	                               "scsi-pr confirmed", "PREEMPT", NULL),
	                 1);
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 5000, &t_released, "event=released",
	                       "nothing promoted"),
	              "node-b's fence-only term was not released");
	fo_record("single-replica-freeze-to-fenced", secs(t_fenced - t_stop));

	/* the StatefulSet's replacement, on node-b */
	fo_metad_start(&s.c, 1);
	t_ack = fo_wait_ack(&s.w, 1, t_stop, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "the replacement on node-b acknowledged nothing within 15 s");
	fo_record("single-replica-replacement-start-to-first-ack",
	          secs(t_ack - s.c.node[1].metad_started));
	/* its term owed nobody: the fence-only term took the duty off */
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 2);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=fence-owed", NULL), 1);

	fo_metad_signal(&s.c, 0, SIGCONT);
	fo_agent_signal(&s.c, 0, SIGCONT);
	ok = hammer(&s, 0, 1000, &nm, &er, &first_nm);
	printf("single: resumed node-a: %d OK, %d NOTMASTER, %d errors\n", ok, nm, er);
	ck_assert_msg(ok == 0, "the resumed old master acknowledged %d writes", ok);
	fo_acks_dump(&s.w, 0, t_frozen);
	ck_assert_msg(fo_acks_sent_after(&s.w, 0, t_frozen) == 0,
	              "node-a acknowledged a write sent after it stopped");
	scen_finish(&s);
}
END_TEST

/* Three nodes; node-b cannot fence (every fence method fails there: its
 * path to the target is broken, say).  node-a's service is killed; node-b
 * takes the Lease first (node-c's agent is held back until it has), fails
 * to fence for agent.fence_give_up_ms, and releases the Lease with the duty
 * on it; node-c then fences node-a and serves.  With the give-up off,
 * node-b would hold the Lease for ever and nobody would serve. */
START_TEST(fence_given_up_lets_another_node_try)
{
	struct scen s;
	usec_t t_kill, t_given = 0, t_ack;

	memset(&s, 0, sizeof(s));
	fo_prepare_rbac();
	fo_cluster_init(&s.c, "giveup", 3);
	for (size_t i = 0; i < 3; i++)
		fo_conf_extra(&s.c, i, "agent.fence_give_up_ms = 1500\n");
	fo_arm(&s.c, 1, FO_AGENT, "fence.method.before=error(EHOSTUNREACH)");
	scen_run(&s);

	fo_agent_signal(&s.c, 2, SIGSTOP); /* node-b takes the Lease first */
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	if (!wait_log(s.c.node[1].agent_log, 1, 10000, NULL, "event=leading", NULL))
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL) >= 1,
	              "node-b never took the Lease");
	fo_agent_signal(&s.c, 2, SIGCONT);
	if (!wait_log(s.c.node[1].agent_log, 1, 10000, &t_given, "event=fence-given-up", NULL))
		dump_all(&s);
	ck_assert_msg(t_given, "node-b, unable to fence, never gave the Lease up");
	t_ack = fo_wait_ack(&s.w, 2, t_kill, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-c acknowledged nothing within 15 s of node-a's death");
	fo_record("fence-given-up-kill-to-first-ack-elsewhere", secs(t_ack - t_kill));
	ck_assert_int_ge(kft_log_count(s.c.node[2].agent_log, NULL, "event=fenced", "node-a", NULL),
	                 1);
	ck_assert_int_eq(fo_acks_count(&s.w, 1, 0), 0); /* node-b never served */
	scen_finish(&s);
}
END_TEST

/* 2. SIGSTOP of everything on the master node for longer than the lease,
 * then SIGCONT: the other node serves; the old metad accepts no write
 * after the new master's promotion and steps down. */
START_TEST(sigstop_master_node)
{
	struct scen s;
	usec_t t_stop, t_ack, t_cont, first_nm;
	int nm, er, ok;

	scen_start(&s, "stopnode");
	t_stop = fo_agent_signal(&s.c, 0, SIGSTOP);
	fo_metad_signal(&s.c, 0, SIGSTOP);
	t_ack = fo_wait_ack(&s.w, 1, t_stop, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 15 s of SIGSTOP");
	fo_record("failover-sigstop-node-to-first-ack", secs(t_ack - t_stop));
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading",
	                               "verdict=expired", NULL),
	                 1);
	/* stopped for longer than the lease, then resumed */
	clock_sleep_until(t_stop + (FO_LEASE_MS + 1500) * USEC_PER_MSEC);
	t_cont = clock_mono_usec();
	fo_metad_signal(&s.c, 0, SIGCONT);
	fo_agent_signal(&s.c, 0, SIGCONT);
	fo_record("sigstop-node-stopped-for", secs(t_cont - t_stop));
	ok = hammer(&s, 0, 1000, &nm, &er, &first_nm);
	printf("stopnode: resumed node-a: %d OK, %d NOTMASTER, %d errors (deadline)\n", ok, nm, er);
	ck_assert_msg(ok == 0, "the resumed old master acknowledged %d writes", ok);
	ck_assert_msg(fo_wait_role(&s.c, 0, "standby", 5000), "the old master stays master");
	if (first_nm)
		fo_record("sigstop-node-old-master-notmaster-after-sigcont",
		          secs(first_nm - t_cont));
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=stopped-leading", NULL),
	                 1);
	ck_assert_msg(fo_acks_count(&s.w, 0, t_stop) == 0 ||
	                      fo_last_ack(&s.w, 0) < fo_first_ack_after(&s.w, 1, t_stop),
	              "node-a acknowledged after node-b");
	scen_finish(&s);
}
END_TEST

/* 3. SIGSTOP of only the master's agent: its metad stops writing by the
 * deadline of its last grant, and the other agent takes the Lease after
 * expiry. */
START_TEST(sigstop_master_agent)
{
	struct scen s;
	usec_t t_stop, t_ack, last_a;

	scen_start(&s, "stopagent");
	t_stop = fo_agent_signal(&s.c, 0, SIGSTOP);
	t_ack = fo_wait_ack(&s.w, 1, t_stop, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack,
	              "node-b acknowledged nothing within 15 s of SIGSTOP of node-a's agent");
	last_a = fo_last_ack(&s.w, 0);
	fo_record("failover-sigstop-agent-to-first-ack", secs(t_ack - t_stop));
	fo_record("sigstop-agent-old-master-last-ack-after-stop", secs(last_a - t_stop));
	printf("stopagent: old master's last ack %+.3f s after SIGSTOP (renew deadline %.3f s, "
	       "grant <= renew deadline - margin = %.3f s after the last renew); new master's "
	       "first ack %+.3f s\n",
	       secs(last_a - t_stop), FO_RENEW_MS / 1000.0, (FO_RENEW_MS - FO_MARGIN_MS) / 1000.0,
	       secs(t_ack - t_stop));
	ck_assert_msg(last_a <= t_stop + FO_RENEW_MS * USEC_PER_MSEC,
	              "node-a acknowledged %.3f s after its agent stopped: past the renew deadline",
	              secs(last_a - t_stop));
	ck_assert_msg(last_a < t_ack, "node-a acknowledged after node-b");
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading",
	                               "verdict=expired", NULL),
	                 1);
	usleep(500 * 1000);
	fo_agent_signal(&s.c, 0, SIGCONT);
	ck_assert_msg(fo_wait_role(&s.c, 0, "standby", 5000), "the old master stays master");
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=stopped-leading", NULL),
	                 1);
	scen_finish(&s);
}
END_TEST

/* 4. SIGTERM of the leader agent: demote, unlabel, release; the other node
 * serves within about a second. */
START_TEST(sigterm_leader_agent)
{
	struct scen s;
	usec_t t_term, t_ack, first_nm;
	int status, nm, er, ok;

	scen_start(&s, "sigterm");
	t_term = fo_agent_signal(&s.c, 0, SIGTERM);
	t_ack = fo_wait_ack(&s.w, 1, t_term, 10000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 10 s of SIGTERM");
	fo_record("failover-sigterm-agent-to-first-ack", secs(t_ack - t_term));
	status = fo_agent_wait(&s.c, 0, 5000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the stopped agent did not exit 0 (status %d)", status);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=released",
	                               "stopped by SIGTERM", NULL),
	                 1);
	ck_assert_int_ge(kft_log_count(s.c.node[0].metad_log, NULL, "demoted: epoch", NULL), 1);
	ck_assert_int_ge(
	        kft_log_count(s.c.node[1].agent_log, NULL, "is free", "stopped by SIGTERM", NULL),
	        1);
	{
		char msg[1024];

		/* the orderly handover says so, with how long the demotion took */
		ck_assert_msg(event_posted(&s, 0, "Released", msg, sizeof(msg)),
		              "the SIGTERM handover posted no Released Event");
		ck_assert_ptr_nonnull(strstr(msg, "SIGTERM"));
		ck_assert_msg(event_posted(&s, 0, "Demoted", msg, sizeof(msg)),
		              "the SIGTERM handover posted no Demoted Event");
		ck_assert_msg(strstr(msg, " ms after DEMOTE"), "Demoted without a duration: %s",
		              msg);
	}
	ck_assert(fo_wait_role(&s.c, 0, "standby", 1000));
	ok = hammer(&s, 0, 500, &nm, &er, &first_nm);
	ck_assert_int_eq(ok, 0);
	scen_finish(&s);
}
END_TEST

/* 4b. SIGTERM of the leader agent while its metad is hung (SIGSTOP): the
 * DEMOTE is never confirmed, so the agent self-fences (SIGKILL) the service
 * before it releases the Lease; the release would otherwise tell the next
 * master that the service stopped while it still held a write grant. */
START_TEST(sigterm_leader_agent_hung_service)
{
	struct scen s;
	usec_t t_term, t_ack, end;
	int status = 0;
	pid_t metad;

	scen_start(&s, "termhung");
	fo_metad_signal(&s.c, 0, SIGSTOP);
	t_term = fo_agent_signal(&s.c, 0, SIGTERM);
	t_ack = fo_wait_ack(&s.w, 1, t_term, 10000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 10 s of SIGTERM");
	fo_record("failover-sigterm-agent-hung-service-to-first-ack", secs(t_ack - t_term));
	status = fo_agent_wait(&s.c, 0, 5000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the stopped agent did not exit 0 (status %d)", status);
	ck_assert_int_eq(
	        kft_log_count(s.c.node[0].agent_log, NULL, "event=self-fence service", NULL), 1);
	/* the kill is confirmed, not assumed */
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=self-fenced",
	                               "confirmed dead", NULL),
	                 1);
	metad = s.c.node[0].metad_pid;
	end = clock_mono_usec() + 2 * USEC_PER_SEC;
	while (waitpid(metad, &status, WNOHANG) != metad) {
		ck_assert_msg(clock_mono_usec() < end, "the hung metad was not killed");
		usleep(10000);
	}
	s.c.node[0].metad_pid = 0;
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	usec_t t_kill_seen = 0, t_released = 0;
	kft_log_count(s.c.node[0].agent_log, &t_kill_seen, "disconnected", NULL);
	kft_log_count(s.c.node[0].agent_log, &t_released, "event=released", NULL);
	ck_assert_msg(t_kill_seen && t_released && t_kill_seen <= t_released,
	              "the Lease was released before the hung service was confirmed dead");
	scen_finish(&s);
}
END_TEST

/* Wait up to timeout_ms for node i's metad to exit; its wait status or -1. */
static int metad_wait(struct scen *s, size_t i, long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	pid_t pid = s->c.node[i].metad_pid;
	int status;

	while (pid > 0 && clock_mono_usec() < end) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			s->c.node[i].metad_pid = 0;
			return status;
		}
		usleep(5000);
	}
	return -1;
}

/* Of the puts and dels sent to `master` that the history has as info, how
 * many (*n_info), and how many puts whose value the client "final" read
 * (*n_seen). */
static void info_writes(const char *path, const char *master, int *n_info, int *n_seen)
{
	char line[4096], cl[1100], op[8], key[1100], val[1100], res[8], m[1100];
	char(*seen)[2][64] = calloc(4096, sizeof(*seen));
	size_t ns = 0;
	FILE *f = fopen(path, "r");

	*n_info = *n_seen = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(seen);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || sscanf(line, "%1099s %7s %1099s %1099s %*s %*s %7s %1099s",
		                             cl, op, key, val, res, m) != 6)
			continue;
		if (strcmp(op, "get") != 0 && strcmp(res, "info") == 0 && strcmp(m, master) == 0) {
			(*n_info)++;
			if (strcmp(op, "put") == 0 && ns < 4096) {
				snprintf(seen[ns][0], sizeof(seen[ns][0]), "%.63s", key);
				snprintf(seen[ns][1], sizeof(seen[ns][1]), "%.63s", val);
				ns++;
			}
		} else if (strcmp(cl, "final") == 0) {
			for (size_t i = 0; i < ns; i++)
				if (strcmp(seen[i][0], key) == 0 && strcmp(seen[i][1], val) == 0)
					(*n_seen)++;
		}
	}
	fclose(f);
	free(seen);
}

/* 5. Fault point metad.write.after_durable=crash in the master's metad: a
 * write is durable, and the process dies before it checks the deadline or
 * answers.  Its client sees the connection lost (info in the history); the
 * agent sees EOF and releases, the other node recovers the journal (with
 * that write) and serves; the final read-back shows the write, and the
 * history must stay linearizable. */
START_TEST(crash_after_durable)
{
	static const struct fp_arm arm[] = {
	        /* past the writes of scen_start's first second */
	        {0, FO_METAD, "metad.write.after_durable=400*off->crash"},
	};
	struct scen s;
	usec_t t_crash, t_ack;
	char history[480];
	int status, n_info, n_seen;

	scen_start_armed(&s, "crashdurable", arm, 1);
	status = metad_wait(&s, 0, 15000);
	if (status == -1)
		dump_all(&s);
	ck_assert_msg(status != -1, "node-a's metad did not crash at the fault point");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == FAILPOINT_CRASH_STATUS,
	              "node-a's metad ended with status %d, not the crash of the fault point",
	              status);
	ck_assert_int_eq(fo_fired(&s.c, 0, "metad.write.after_durable", &t_crash), 1);
	t_ack = fo_wait_ack(&s.w, 1, 0, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 15 s of the crash");
	fo_record("failover-crash-after-durable-to-first-ack", secs(t_ack - t_crash));
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=released", "service",
	                               "died", NULL),
	                 1);
	/* back without the fault point, as a restarted container: standby */
	fo_arm(&s.c, 0, FO_METAD, NULL);
	fo_metad_start(&s.c, 0);
	ck_assert_msg(fo_wait_role(&s.c, 0, "standby", 10000),
	              "the restarted metad is not standby");
	usleep(500 * 1000);
	snprintf(history, sizeof(history), "%s", s.c.history);
	scen_finish(&s);
	/* the write in flight at the crash: its client lost the connection
	 * after sending (info); being durable, the final read shows it unless
	 * a later write of its key (a register) hid it */
	info_writes(history, "node-a", &n_info, &n_seen);
	printf("crashdurable: %d info writes to node-a, %d of them read back by the final "
	       "read\n",
	       n_info, n_seen);
	ck_assert_int_ge(n_info, 1);
}
END_TEST

/* 6. Fault point agent.fence.before_promote=crash in node-b's agent: after
 * kill -9 of node-a's metad, node-b's agent takes the Lease, fences node-a,
 * and dies before it removes the old label or promotes its metad.  Nobody
 * serves until the Lease it holds expires; node-a's restarted metad then
 * becomes master again through its own agent (which fences node-b).  No
 * write may be acknowledged by node-b, and the history stays
 * linearizable. */
START_TEST(crash_before_promote)
{
	static const struct fp_arm arm[] = {
	        {1, FO_AGENT, "agent.fence.before_promote=crash"},
	};
	struct scen s;
	usec_t t_kill, t_ack;
	int status;

	scen_start_armed(&s, "crashpromote", arm, 1);
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	status = fo_agent_wait(&s.c, 1, 15000);
	if (status == -1)
		dump_all(&s);
	ck_assert_msg(status != -1, "node-b's agent did not crash at the fault point");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == FAILPOINT_CRASH_STATUS,
	              "node-b's agent ended with status %d, not the crash of the fault point",
	              status);
	ck_assert_int_eq(fo_fired(&s.c, 1, "agent.fence.before_promote", NULL), 1);
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 1);
	fo_metad_start(&s.c, 0);
	t_ack = fo_wait_ack(&s.w, 0, t_kill, 20000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-a acknowledged nothing within 20 s of the crash");
	fo_record("failover-crash-before-promote-to-first-ack", secs(t_ack - t_kill));
	ck_assert_msg(fo_acks_count(&s.w, 1, 0) == 0, "node-b acknowledged a write");
	ck_assert(!fo_wait_role(&s.c, 1, "master", 100));
	usleep(500 * 1000);
	scen_finish(&s);
}
END_TEST

/* The answer to the acquire is lost (a fault point after the API server
 * applied it): the next poll finds the Lease already ours and starts the
 * term again.  The expired holder must be fenced all the same: the duty to
 * fence is written into the Lease by the acquire itself, not remembered
 * from the answer. */
START_TEST(lost_acquire_response_still_fences)
{
	static const struct fp_arm arm[] = {
	        {1, FO_AGENT, "lease.acquire.after_send=1*error(ETIMEDOUT)"},
	};
	struct scen s;
	usec_t t_stop, t_ack, first_nm;
	int nm, er, ok;

	scen_start_armed(&s, "lostacquire", arm, 1);
	t_stop = fo_agent_signal(&s.c, 0, SIGSTOP);
	fo_metad_signal(&s.c, 0, SIGSTOP);
	t_ack = fo_wait_ack(&s.w, 1, t_stop, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 15 s of SIGSTOP");
	ck_assert_int_eq(fo_fired(&s.c, 1, "lease.acquire.after_send", NULL), 1);
	if (kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'", NULL) < 1)
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'",
	                            "level=lease expired", NULL) >= 1,
	              "node-b promoted itself without fencing node-a (the lost answer "
	              "made it its own predecessor)");
	clock_sleep_until(t_stop + (FO_LEASE_MS + 1500) * USEC_PER_MSEC);
	fo_metad_signal(&s.c, 0, SIGCONT);
	fo_agent_signal(&s.c, 0, SIGCONT);
	ok = hammer(&s, 0, 1000, &nm, &er, &first_nm);
	ck_assert_msg(ok == 0, "the resumed old master acknowledged %d writes", ok);
	scen_finish(&s);
}
END_TEST

/* A label PATCH that reaches the API server late: node-b's first
 * labelling PATCH is held by the API fault proxy for 2.5 s and then
 * delivered although node-b's client gave up after 1 s (it retried and
 * labelled its pod).  Meanwhile node-b's service dies, node-a takes over,
 * removes the label from node-b's pod and labels its own.  The late PATCH
 * must not put role=master back on node-b's pod. */
START_TEST(late_label_patch_never_makes_two_masters)
{
	struct scen s;
	char rules[512];
	usec_t t_kill;

	scen_start_full(&s, "latelabel", NULL, 0, 1);
	snprintf(rules, sizeof(rules),
	         "PATCH ^/api/v1/namespaces/[^/]+/pods/%s$ count=1 late=2500\n", s.c.node[1].pod);
	fo_proxy_rules(&s.c, 1, rules);
	/* node-a's service dies: node-b takes over and labels (the second try).
	 * node-a's service comes back only once node-b leads: restarted at
	 * once, it made node-a a candidate for the Lease node-a had just
	 * released, and node-a could win it back (not this test's subject). */
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	(void)wait_log(s.c.node[1].agent_log, 1, 5000, NULL, "event=leading", NULL);
	fo_metad_start(&s.c, 0);
	if (!wait_labelled(&s, 1, 8000))
		dump_all(&s);
	ck_assert_msg(labelled(&s, 1), "node-b never labelled its pod");
	ck_assert_msg(clock_mono_usec() - t_kill < 2500 * USEC_PER_MSEC,
	              "node-b labelled too late for this test (%.3f s)",
	              secs(clock_mono_usec() - t_kill));
	/* node-b's service dies: node-a takes over before the late PATCH lands */
	fo_metad_signal(&s.c, 1, SIGKILL);
	ck_assert_msg(wait_labelled(&s, 0, 8000), "node-a never labelled its pod");
	printf("latelabel: node-a labelled %.3f s after the first kill\n",
	       secs(clock_mono_usec() - t_kill));
	fo_metad_start(&s.c, 1);
	/* the late PATCH has been delivered by now */
	clock_sleep_until(t_kill + 4000 * USEC_PER_MSEC);
	ck_assert_int_ge(kft_log_count(s.c.node[1].proxy_log, NULL, "late=2500", NULL), 1);
	{
		char cmd[800];

		snprintf(cmd, sizeof(cmd), "grep -h 'PATCH' '%s' | head -5", s.c.node[1].proxy_log);
		(void)!system(cmd);
	}
	ck_assert_msg(labelled(&s, 0), "node-a lost its label");
	/* the PATCH the proxy held is a failed API request of node-b's agent */
	ck_assert_msg(metric_of(&s, 1, "kubefence_api_errors_total{code=\"timeout\"}") >= 1,
	              "node-b's timed-out label PATCH is not in kubefence_api_errors_total");
	ck_assert_msg(!labelled(&s, 1),
	              "two pods carry role=master: node-b's late PATCH relabelled its pod");
	scen_finish(&s);
}
END_TEST

/* ---------------------------------------------------- service.endpoints */

#define EP_SVC "endpoints-rw"

static struct k8s_client *test_admin(void)
{
	struct k8s_client *c = NULL;
	char err[512] = "";

	ck_assert_msg(
	        k8s_client_new(getenv("KF_IT_ADMIN_KUBECONFIG"), NULL, &c, err, sizeof(err)) == 0,
	        "admin client: %s", err);
	return c;
}

/* A Service without a selector: the agents write its endpoints. */
static void create_rw_service(struct k8s_client *c, const char *name)
{
	char path[512], err[512] = "", json[512];
	cJSON *obj;
	int r;

	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\"},"
	         "\"spec\":{\"ports\":[{\"name\":\"client\",\"port\":7480,"
	         "\"targetPort\":\"client\"}]}}",
	         name);
	obj = cJSON_Parse(json);
	ck_assert_int_ge(k8s_path(path, sizeof(path), "v1", getenv("KF_IT_NS"), "services", NULL),
	                 0);
	r = k8s_create(c, path, obj, 5000, NULL, err, sizeof(err));
	cJSON_Delete(obj);
	ck_assert_msg(r == 0 || r == -EEXIST, "creating Service %s: %s", name, err);
}

/* An EndpointSlice of Service svc named name, managed by `by`, with one
 * address (as Kubernetes' controller left it when the Service had a
 * selector); its API version found as read_route does. */
static void create_slice(struct k8s_client *c, const char *svc, const char *name, const char *by)
{
	static const char *const gvs[] = {"discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"};
	char path[512], err[512] = "", json[1024];
	int r = -ENOENT;

	for (size_t i = 0; i < 2 && r == -ENOENT; i++) {
		cJSON *obj;

		snprintf(json, sizeof(json),
		         "{\"apiVersion\":\"%s\",\"kind\":\"EndpointSlice\",\"addressType\":"
		         "\"IPv4\","
		         "\"metadata\":{\"name\":\"%s\",\"labels\":{\"kubernetes.io/service-name\":"
		         "\"%s\",\"endpointslice.kubernetes.io/managed-by\":\"%s\"}},"
		         "\"endpoints\":[{\"addresses\":[\"10.99.9.9\"]}],"
		         "\"ports\":[{\"name\":\"client\",\"port\":7480,\"protocol\":\"TCP\"}]}",
		         gvs[i], name, svc, by);
		obj = cJSON_Parse(json);
		ck_assert_int_ge(k8s_path(path, sizeof(path), gvs[i], getenv("KF_IT_NS"),
		                          "endpointslices", NULL),
		                 0);
		r = k8s_create(c, path, obj, 5000, NULL, err, sizeof(err));
		cJSON_Delete(obj);
	}
	ck_assert_msg(r == 0 || r == -EEXIST, "creating EndpointSlice %s: %s", name, err);
}

/* Whether EndpointSlice name exists (either API version). */
static bool slice_exists(struct k8s_client *c, const char *name)
{
	static const char *const gvs[] = {"discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"};
	char path[512], err[512];

	for (size_t i = 0; i < 2; i++) {
		cJSON *obj = NULL;
		int r;

		ck_assert_int_ge(k8s_path(path, sizeof(path), gvs[i], getenv("KF_IT_NS"),
		                          "endpointslices", name),
		                 0);
		r = k8s_get(c, path, 2000, &obj, err, sizeof(err));
		cJSON_Delete(obj);
		if (r == 0)
			return true;
	}
	return false;
}

/* What the Service routes to: the addresses of its Endpoints and of the
 * agents' EndpointSlice (the first of each), how many, and the terms that
 * wrote them. */
struct route {
	int n_ep, n_slice;
	char ep_ip[64], slice_ip[64];
	int64_t ep_epoch, slice_epoch;
};

static void count_ips(const cJSON *list, const char *key, int *n, char *first, size_t len)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, list)
	{
		const cJSON *a, *ips = cJSON_GetObjectItemCaseSensitive(it, key);

		cJSON_ArrayForEach(a, ips)
		{
			const cJSON *ip =
			        cJSON_IsString(a) ? a : cJSON_GetObjectItemCaseSensitive(a, "ip");

			if (cJSON_IsString(ip) && (*n)++ == 0)
				snprintf(first, len, "%s", ip->valuestring);
		}
	}
}

static void read_route(struct k8s_client *c, const char *svc, struct route *rt)
{
	static const char *const gvs[] = {"discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"};
	char path[512], name[128], err[512];
	cJSON *obj = NULL;

	memset(rt, 0, sizeof(*rt));
	ck_assert_int_ge(k8s_path(path, sizeof(path), "v1", getenv("KF_IT_NS"), "endpoints", svc),
	                 0);
	if (k8s_get(c, path, 2000, &obj, err, sizeof(err)) == 0) {
		const cJSON *subsets = cJSON_GetObjectItemCaseSensitive(obj, "subsets");

		count_ips(subsets, "addresses", &rt->n_ep, rt->ep_ip, sizeof(rt->ep_ip));
		count_ips(subsets, "notReadyAddresses", &rt->n_ep, rt->ep_ip, sizeof(rt->ep_ip));
		rt->ep_epoch = endpoints_epoch_of(obj);
	}
	cJSON_Delete(obj);
	snprintf(name, sizeof(name), "%s%s", svc, ENDPOINTS_SLICE_SUFFIX);
	for (size_t i = 0; i < 2; i++) {
		obj = NULL;
		ck_assert_int_ge(k8s_path(path, sizeof(path), gvs[i], getenv("KF_IT_NS"),
		                          "endpointslices", name),
		                 0);
		if (k8s_get(c, path, 2000, &obj, err, sizeof(err)) == 0) {
			count_ips(cJSON_GetObjectItemCaseSensitive(obj, "endpoints"), "addresses",
			          &rt->n_slice, rt->slice_ip, sizeof(rt->slice_ip));
			rt->slice_epoch = endpoints_epoch_of(obj);
			cJSON_Delete(obj);
			break;
		}
		cJSON_Delete(obj);
	}
}

/* Observations of the route once it was first written that were not
 * exactly one address in each object (never empty, never two). */
static uint64_t route_bad, route_seen;
static char route_bad_what[256];

/* Poll (20 ms) until both objects name ip alone; every observation once
 * the Service was first routed is counted in route_seen / route_bad. */
static bool wait_route(struct k8s_client *c, const char *svc, const char *ip, long ms,
                       struct route *rt)
{
	usec_t end = clock_mono_usec() + ms * USEC_PER_MSEC;

	for (;;) {
		read_route(c, svc, rt);
		if (rt->n_ep || rt->n_slice || route_seen) {
			route_seen++;
			if ((rt->n_ep != 1 || rt->n_slice != 1) && route_bad++ == 0)
				snprintf(route_bad_what, sizeof(route_bad_what),
				         "Endpoints with %d address(es), EndpointSlice with %d",
				         rt->n_ep, rt->n_slice);
		}
		if (rt->n_ep == 1 && rt->n_slice == 1 && strcmp(rt->ep_ip, ip) == 0 &&
		    strcmp(rt->slice_ip, ip) == 0)
			return true;
		if (clock_mono_usec() >= end)
			return false;
		usleep(20 * 1000);
	}
}

/* service.endpoints: the Service follows the master through its
 * Endpoints and EndpointSlice, written by the agents, never empty and never
 * two addresses once written; and a write of an older term that reaches
 * the API server late (node-b's first EndpointSlice PATCH, held by the
 * fault proxy for 4 s and delivered after node-b's client gave up and
 * after node-a took over again) fails on its resourceVersion instead of
 * routing clients back to node-b. */
START_TEST(endpoints_follow_the_master_late_write_never_lands)
{
	struct k8s_client *adm = test_admin();
	struct scen s;
	struct route rt;
	char rules[512], ip_a[32], ip_b[32];
	usec_t t_kill;
	int64_t epoch_b;

	route_bad = route_seen = 0;
	create_rw_service(adm, EP_SVC);
	/* left by Kubernetes' controller from when the Service had a selector
	 * (deleted by the first master), and one of some other tool (kept) */
	create_slice(adm, EP_SVC, EP_SVC "-old1", "endpointslice-controller.k8s.io");
	create_slice(adm, EP_SVC, EP_SVC "-other", "someone.example.com");
	scen_extra_conf = "service.endpoints = " EP_SVC "\n";
	scen_start_full(&s, "endpoints", NULL, 0, 1);
	scen_extra_conf = NULL;
	fo_pod_ip(&s.c, 0, ip_a, sizeof(ip_a));
	fo_pod_ip(&s.c, 1, ip_b, sizeof(ip_b));
	for (int i = 0; i < 100 && slice_exists(adm, EP_SVC "-old1"); i++)
		usleep(50 * 1000);
	ck_assert_msg(!slice_exists(adm, EP_SVC "-old1"),
	              "the EndpointSlice Kubernetes' controller left is still there");
	ck_assert_msg(slice_exists(adm, EP_SVC "-other"), "another tool's EndpointSlice is gone");
	ck_assert_msg(wait_route(adm, EP_SVC, ip_a, 5000, &rt),
	              "node-a's term never routed Service %s to its pod: Endpoints %d (%s), "
	              "slice %d (%s)",
	              EP_SVC, rt.n_ep, rt.ep_ip, rt.n_slice, rt.slice_ip);
	snprintf(rules, sizeof(rules),
	         "PATCH ^/apis/discovery.k8s.io/[^/]+/namespaces/[^/]+/endpointslices/" EP_SVC
	         "%s$ count=1 late=4000\n",
	         ENDPOINTS_SLICE_SUFFIX);
	fo_proxy_rules(&s.c, 1, rules);
	/* node-a's service dies: node-b takes over; its first slice PATCH is
	 * held, it tries again and routes the Service to its pod */
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	(void)wait_log(s.c.node[1].agent_log, 1, 5000, NULL, "event=leading", NULL);
	fo_metad_start(&s.c, 0);
	if (!wait_route(adm, EP_SVC, ip_b, 8000, &rt))
		dump_all(&s);
	ck_assert_msg(rt.n_slice == 1 && strcmp(rt.slice_ip, ip_b) == 0,
	              "node-b never routed the Service to its pod (slice: %d, %s)", rt.n_slice,
	              rt.slice_ip);
	epoch_b = rt.slice_epoch;
	printf("endpoints: node-b routed %.3f s after the first kill (term %" PRId64 ")\n",
	       secs(clock_mono_usec() - t_kill), epoch_b);
	ck_assert_msg(clock_mono_usec() - t_kill < 4000 * USEC_PER_MSEC,
	              "node-b routed too late for this test (%.3f s)",
	              secs(clock_mono_usec() - t_kill));
	/* node-b's service dies: node-a takes over before the late PATCH lands */
	fo_metad_signal(&s.c, 1, SIGKILL);
	ck_assert_msg(wait_route(adm, EP_SVC, ip_a, 8000, &rt),
	              "node-a never routed the Service back to its pod");
	printf("endpoints: node-a routed %.3f s after the first kill (term %" PRId64 ")\n",
	       secs(clock_mono_usec() - t_kill), rt.slice_epoch);
	fo_metad_start(&s.c, 1);
	/* the late PATCH has been delivered by now */
	clock_sleep_until(t_kill + 6000 * USEC_PER_MSEC);
	ck_assert_int_ge(kft_log_count(s.c.node[1].proxy_log, NULL, "late=4000", NULL), 1);
	{
		char cmd[2400];

		snprintf(
		        cmd, sizeof(cmd),
		        "grep -h 'endpointslices' '%s' | head -5; grep -hE 'endpoints|routed' '%s' "
		        "'%s' | head -20",
		        s.c.node[1].proxy_log, s.c.node[0].agent_log, s.c.node[1].agent_log);
		(void)!system(cmd);
	}
	(void)wait_route(adm, EP_SVC, ip_a, 0, &rt);
	ck_assert_msg(rt.n_slice == 1 && strcmp(rt.slice_ip, ip_a) == 0,
	              "the EndpointSlice routes to %s (%d addresses), not node-a's %s: node-b's "
	              "late PATCH landed",
	              rt.slice_ip, rt.n_slice, ip_a);
	ck_assert_msg(rt.n_ep == 1 && strcmp(rt.ep_ip, ip_a) == 0,
	              "the Endpoints route to %s (%d addresses), not node-a's %s", rt.ep_ip,
	              rt.n_ep, ip_a);
	ck_assert_msg(rt.slice_epoch > epoch_b && rt.ep_epoch == rt.slice_epoch,
	              "the route's terms: slice %" PRId64 ", Endpoints %" PRId64
	              ", node-b's was %" PRId64,
	              rt.slice_epoch, rt.ep_epoch, epoch_b);
	printf("endpoints: %" PRIu64 " observations of the route, %" PRIu64 " not one address\n",
	       route_seen, route_bad);
	ck_assert_msg(route_bad == 0, "the Service was not routed to exactly one pod: %s",
	              route_bad_what);
	k8s_client_free(adm);
	scen_finish(&s);
}
END_TEST

/* A release is not a confirmed death: node-b's service takes PROMOTE and
 * then hangs (a fault point pauses it before it claims the store), so
 * node-b's agent gives the Lease up when the promotion times out.  The
 * service may still come back and serve; node-a must run the full fence
 * (pod-delete included), not the lighter one of an orderly release. */
START_TEST(release_without_confirmed_death_gets_the_full_fence)
{
	static const struct fp_arm arm[] = {
	        {1, FO_METAD, "metad.promote.before_claim=1*pause"},
	};
	struct scen s;
	usec_t t_kill, t_ack, first_nm;
	int nm, er, ok;
	char cmd[800];

	scen_start_armed(&s, "promotetimeout", arm, 1);
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	/* node-a's service comes back only once node-b holds the Lease */
	ck_assert(wait_log(s.c.node[1].agent_log, 1, 5000, NULL, "event=leading", NULL));
	fo_metad_start(&s.c, 0);
	/* node-b takes over, its service hangs in PROMOTE, its agent gives up
	 * after agent.promote_timeout_ms; node-a takes over again */
	t_ack = fo_wait_ack(&s.w, 0, t_kill + 500 * USEC_PER_MSEC, 25000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-a acknowledged nothing within 25 s");
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "did not answer PROMOTE", NULL),
	                 1);
	if (kft_log_count(s.c.node[0].agent_log, NULL, "event=fenced", "node='node-b'",
	                  "level=lease expired", NULL) < 1)
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[0].agent_log, NULL, "event=fenced", "node='node-b'",
	                            "level=lease expired", NULL) >= 1,
	              "node-a fenced node-b as an orderly release, although node-b's service "
	              "was never confirmed dead");
	/* the hung service comes back: it must not serve as master */
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/*.paused", s.c.node[1].fp_dir);
	ck_assert_int_eq(system(cmd), 0);
	ok = hammer(&s, 1, 1000, &nm, &er, &first_nm);
	ck_assert_msg(ok == 0, "node-b's resumed service acknowledged %d writes", ok);
	scen_finish(&s);
}
END_TEST

/* The orchestrator never waits inside a retry loop: node-b takes over from
 * node-a, but every fence run of node-b fails (a fault point), so node-b
 * retries without promoting.  Then node-b's own service dies.  node-b's
 * agent must give the term up at once — it has nobody to promote, and the
 * Lease keeps the unsettled duty for the next holder — instead of holding
 * the Lease until a fence succeeds (before the state machine, the service's
 * EOF waited in the queue behind the fence-retry loop). */
START_TEST(service_dies_while_fence_fails)
{
	static const struct fp_arm arm[] = {
	        {1, FO_AGENT, "fence.method.before=error(EIO)"},
	};
	struct scen s;
	usec_t t_kill, t_rel = 0, t_ack;
	bool ok;

	scen_start_armed(&s, "fencefails", arm, 1);
	fo_metad_signal(&s.c, 0, SIGKILL);
	ok = wait_log(s.c.node[1].agent_log, 2, 10000, NULL, "event=fence-failed", NULL);
	if (!ok)
		dump_all(&s);
	ck_assert_msg(ok, "node-b never tried (and failed) to fence node-a");
	t_kill = fo_metad_signal(&s.c, 1, SIGKILL);
	ok = wait_log(s.c.node[1].agent_log, 1, 3000, &t_rel, "event=released", "died");
	if (!ok)
		dump_all(&s);
	ck_assert_msg(ok, "node-b's agent still holds the Lease 3 s after its service died: the "
	                  "service's EOF waits behind the fence retries");
	printf("fencefails: node-b released %.3f s after its service died\n", secs(t_rel - t_kill));
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", NULL), 0);
	/* both services come back; node-a (whose fence works) takes over.
	 * node-b's comes back only once node-a leads: back at once, it made
	 * node-b a candidate for the Lease it had just released, and node-b,
	 * whose every fence fails here, could win it and hold it unused */
	fo_metad_start(&s.c, 0);
	ck_assert(wait_log(s.c.node[0].agent_log, 2, 10000, NULL, "event=leading", NULL));
	fo_metad_start(&s.c, 1);
	t_ack = fo_wait_ack(&s.w, 0, t_kill, 20000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-a acknowledged nothing within 20 s");
	ck_assert_int_ge(
	        kft_log_count(s.c.node[0].agent_log, NULL, "event=fenced", "node='node-b'", NULL),
	        1);
	scen_finish(&s);
}
END_TEST

/* GET node i's /healthz: its HTTP status, the body in body. */
static long healthz(struct scen *s, size_t i, char *body, size_t len)
{
	long code;
	char *b = agent_http(s, i, "/healthz", &code);

	str_copy(body, len, b ? b : "");
	free(b);
	return code;
}

/* /healthz means the agent works, not only that its HTTP thread answers:
 * node-b's orchestrator thread is held at a fault point (after the fence,
 * before the promotion) while everything else of the agent runs; /healthz
 * turns 503 naming the orchestrator, and 200 again once it resumes and
 * promotes. */
START_TEST(healthz_reports_a_wedged_orchestrator)
{
	static const struct fp_arm arm[] = {
	        {1, FO_AGENT, "agent.fence.before_promote=1*pause"},
	};
	struct scen s;
	char body[512];
	usec_t t_kill, end;
	long code;
	char cmd[800];

	scen_start_armed(&s, "healthz", arm, 1);
	ck_assert_int_eq(healthz(&s, 1, body, sizeof(body)), 200);
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	end = t_kill + (ORCH_LIVE_S + 8) * USEC_PER_SEC;
	do {
		code = healthz(&s, 1, body, sizeof(body));
		if (code == 503)
			break;
		usleep(200 * 1000);
	} while (clock_mono_usec() < end);
	if (code != 503)
		dump_all(&s);
	ck_assert_msg(code == 503, "node-b's /healthz said %ld (%s) with its orchestrator held",
	              code, body);
	ck_assert_ptr_nonnull(strstr(body, "orchestrator"));
	printf("healthz: 503 '%s' %.3f s after the kill\n", body, secs(clock_mono_usec() - t_kill));
	ck_assert_int_eq(fo_fired(&s.c, 1, "agent.fence.before_promote", NULL), 1);
	fo_metad_start(&s.c, 0);
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/*.paused", s.c.node[1].fp_dir);
	ck_assert_int_eq(system(cmd), 0);
	end = clock_mono_usec() + 5 * USEC_PER_SEC;
	while ((code = healthz(&s, 1, body, sizeof(body))) != 200 && clock_mono_usec() < end)
		usleep(100 * 1000);
	ck_assert_msg(code == 200, "node-b's /healthz said %ld (%s) after it resumed", code, body);
	scen_finish(&s);
}
END_TEST

/* The LUN as an independent initiator sees it: node i's key registered?
 * reservation held?  Opens its own session (not a node's). */
static int lun_look(bool *a_reg, bool *b_reg, bool *held, int *write_result)
{
	char url_s[512], err[512];
	struct scsi_pr_url url;
	struct scsi_pr *h = NULL;
	struct scsi_pr_keys keys;
	struct scsi_pr_reservation res;
	struct scsi_pr_options so = {.ua_retries = 5};
	uint64_t ka, kb;
	usec_t dl = clock_mono_usec() + 3 * USEC_PER_SEC;
	char *sp;
	int r;

	str_copy(url_s, sizeof(url_s), getenv("KF_TGT_LUN_URLS"));
	sp = strchr(url_s, ' ');
	if (sp)
		*sp = '\0';
	ck_assert_int_eq(scsi_pr_url_parse(url_s, &url, err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_key_for_node("node-a", &ka), 0);
	ck_assert_int_eq(scsi_pr_key_for_node("node-b", &kb), 0);
	r = scsi_pr_open(&url, "iqn.2026-11.io.kubefence.test:observer", &so, dl, &h, err,
	                 sizeof(err));
	if (r < 0)
		return r;
	r = scsi_pr_read_keys(h, dl, &keys, err, sizeof(err));
	if (r == 0)
		r = scsi_pr_read_reservation(h, dl, &res, err, sizeof(err));
	if (r == 0) {
		*a_reg = *b_reg = false;
		for (size_t i = 0; i < keys.n; i++) {
			*a_reg |= keys.keys[i] == ka;
			*b_reg |= keys.keys[i] == kb;
		}
		*held = res.held;
		if (write_result) {
			/* an unregistered initiator: WE-RO must refuse it */
			static uint8_t block[4096];
			*write_result = scsi_pr_write(h, scsi_pr_num_blocks(h) - 8, block,
			                              scsi_pr_block_size(h), dl, err, sizeof(err));
		}
	}
	scsi_pr_close(h);
	return r;
}

/* A restart of the iSCSI target loses every registration and the
 * reservation (tgt keeps them in memory): the leader's node, confirmed by
 * the Lease, registers again and takes the reservation again, within
 * seconds, with an Event and a metric.  The standby does not register (the
 * target cannot tell its lost key from a fenced one; it registers through
 * its own fence when it takes over).  A fence afterwards still removes the
 * old master's key, and the fenced node does not register itself again. */
START_TEST(tgtd_restart_restores_reservations)
{
	struct scen s;
	bool a, b, held;
	int wr = 0, r;
	usec_t t_restart, end, t_kill;
	char cmd[1200], msg[1024];

	scen_start(&s, "tgtrestart");
	ck_assert_int_eq(lun_look(&a, &b, &held, NULL), 0);
	ck_assert_msg(a && b && held, "before the restart: node-a %d node-b %d held %d", a, b,
	              held);
	snprintf(cmd, sizeof(cmd), "bash '%s' restart '%s' >/dev/null", getenv("KF_TGT_HARNESS"),
	         getenv("KF_TGT_DIR"));
	t_restart = clock_mono_usec();
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(lun_look(&a, &b, &held, NULL), 0);
	printf("tgtrestart: right after the restart: node-a %d node-b %d reservation %d\n", a, b,
	       held);
	end = t_restart + 15 * USEC_PER_SEC;
	do {
		r = lun_look(&a, &b, &held, NULL);
		if (r == 0 && a && held)
			break;
		usleep(100 * 1000);
	} while (clock_mono_usec() < end);
	if (!(a && held))
		dump_all(&s);
	ck_assert_msg(a && held,
	              "15 s after the target restart: the leader node-a registered %d, "
	              "reservation held %d",
	              a, held);
	ck_assert_msg(!b, "the standby node-b registered itself after the restart");
	fo_record("tgtd-restart-to-reservations-restored", secs(clock_mono_usec() - t_restart));
	ck_assert_int_eq(lun_look(&a, &b, &held, &wr), 0);
	ck_assert_msg(wr == -EBADE,
	              "an unregistered initiator's WRITE: %d (want -EBADE, "
	              "RESERVATION CONFLICT)",
	              wr);
	ck_assert_msg(event_posted(&s, 0, "ReservationRestored", msg, sizeof(msg)),
	              "no ReservationRestored Event about node-a's pod");
	{
		char series[700], lun[512], *sp;

		str_copy(lun, sizeof(lun), getenv("KF_TGT_LUN_URLS"));
		sp = strchr(lun, ' ');
		if (sp)
			*sp = '\0';
		snprintf(series, sizeof(series), "kubefence_scsi_restored_total{lun=\"%s\"}", lun);
		ck_assert_msg(metric_of(&s, 0, series) >= 1, "%s on node-a: %.0f", series,
		              metric_of(&s, 0, series));
		snprintf(series, sizeof(series), "kubefence_scsi_registered{lun=\"%s\"}", lun);
		ck_assert_double_eq(metric_of(&s, 0, series), 1);
	}
	/* the fence still works on the restored LUN */
	t_kill = fo_metad_signal(&s.c, 0, SIGKILL);
	ck_assert_msg(fo_wait_ack(&s.w, 1, t_kill, 15000), "node-b never took over");
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'",
	                               "scsi-pr confirmed", NULL),
	                 1);
	fo_metad_start(&s.c, 0);
	/* node-a's agent goes on checking: a key a fence removed stays away */
	usleep(5 * 1000 * 1000);
	ck_assert_int_eq(lun_look(&a, &b, &held, NULL), 0);
	ck_assert_msg(!a && b && held,
	              "after node-a was fenced: node-a registered %d (must stay 0), node-b %d, "
	              "held %d",
	              a, b, held);
	ck_assert_int_ge(
	        kft_log_count(s.c.node[0].agent_log, NULL, "only the leader registers again", NULL),
	        1);
	scen_finish(&s);
}
END_TEST

/* Same-node succession: kill -9 of the leader's agent, then a new
 * incarnation of it on the same node (as the kubelet restarts it).  It takes
 * the node lock (its predecessor is dead), continues the term — same epoch —
 * and its service keeps its role: no failover, node-b never leads, and the
 * master's writes pause for less than a lease duration. */
START_TEST(agent_kill9_is_no_failover)
{
	struct scen s;
	usec_t t_kill, t_back = 0, pause;
	int64_t epoch_before = 0, epoch_after = 0;
	char role[32];

	scen_start(&s, "agentkill");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	t_kill = fo_agent_signal(&s.c, 0, SIGKILL); /* reaped */
	fo_agent_start(&s.c, 0);
	if (!wait_log(s.c.node[0].agent_log, 1, 10000, &t_back, "succession=continued", NULL))
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[0].agent_log, NULL, "succession=continued", NULL) >= 1,
	              "the new agent on node-a did not continue its predecessor's term");
	ck_assert_msg(fo_wait_ack(&s.w, 0, clock_mono_usec(), 5000),
	              "node-a acknowledged nothing after its agent came back");
	usleep(2 * 1000 * 1000);
	pause = longest_pause(&s, 0, t_kill, clock_mono_usec());
	printf("agentkill: the master's longest write pause %.3f s (agent back after %.3f s)\n",
	       secs(pause), secs(t_back - t_kill));
	fo_record("agent-kill9-longest-write-pause", secs(pause));
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_after), 0);
	ck_assert_str_eq(role, "master");
	ck_assert_int_eq(epoch_after, epoch_before); /* the same term */
	ck_assert_msg(pause < FO_LEASE_MS * USEC_PER_MSEC,
	              "the master paused %.3f s: no better than a failover", secs(pause));
	scen_finish(&s);
}
END_TEST

/* agent.on_sigterm = keep: SIGTERM of the leader's agent (a rolling update
 * of the DaemonSet) says nothing to the service and releases nothing; the
 * next incarnation continues the term.  No failover. */
START_TEST(sigterm_keep_is_no_failover)
{
	struct scen s;
	usec_t t_term;
	int status;

	scen_extra_conf = "agent.on_sigterm = keep\n";
	scen_start(&s, "sigtermkeep");
	scen_extra_conf = NULL;
	t_term = fo_agent_signal(&s.c, 0, SIGTERM);
	status = fo_agent_wait(&s.c, 0, 5000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the agent did not exit 0 on SIGTERM (status %d)", status);
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "keeping the term", NULL), 1);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=released", NULL), 0);
	fo_agent_start(&s.c, 0);
	ck_assert_msg(wait_log(s.c.node[0].agent_log, 1, 10000, NULL, "succession=continued", NULL),
	              "the next agent on node-a did not continue the term");
	ck_assert_msg(fo_wait_ack(&s.w, 0, clock_mono_usec(), 5000), "node-a acknowledges nothing");
	usleep(1000 * 1000);
	printf("sigtermkeep: the master's longest write pause %.3f s\n",
	       secs(longest_pause(&s, 0, t_term, clock_mono_usec())));
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	scen_finish(&s);
}
END_TEST

/* agent.on_sigterm = keep with agent.restart_grace_ms: the next incarnation
 * comes only after twice the lease duration, as on Kubernetes, where a
 * DaemonSet's rolling update deletes the old pod before it creates the new
 * one.  The parting renewal keeps node-b from taking the Lease and the
 * master writing through the gap: acknowledged writes while no agent runs,
 * after the last ordinary renewal's grant has ended; then the same term
 * continued.  Without the grace, node-b takes over after the lease.  The
 * second run loses the parting renewal's answer (the fault proxy): it
 * landed, so the agent tries again, gets a 409 that still names it, and
 * renews once more with the fresh resourceVersion. */
START_TEST(sigterm_keep_grace_covers_restart)
{
	struct scen s;
	usec_t t_term, gap_ack, pause;
	int64_t epoch_before = 0, epoch_after = 0;
	char role[32];
	int status;

	scen_extra_conf = "agent.on_sigterm = keep\nagent.restart_grace_ms = 8000\n";
	scen_start_full(&s, _i == 0 ? "keepgrace" : "keepgracelost", NULL, 0, _i == 0 ? -1 : 0);
	scen_extra_conf = NULL;
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	if (_i == 1) /* the parting renewal lands, its answer is lost */
		fo_proxy_rules(&s.c, 0,
		               "PUT ^/apis/coordination.k8s.io/v1/namespaces/[^/]+/leases/ count=1 "
		               "drop_response\n");
	t_term = fo_agent_signal(&s.c, 0, SIGTERM);
	status = fo_agent_wait(&s.c, 0, 5000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the agent did not exit 0 on SIGTERM (status %d)", status);
	usleep(2 * FO_LEASE_MS * 1000);
	/* no agent on node-a for two lease durations: its last ordinary
	 * renewal's grant ended at the latest a renew deadline after t_term */
	gap_ack = fo_first_ack_after(&s.w, 0, t_term + FO_RENEW_MS * USEC_PER_MSEC);
	if (kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL) != 0)
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL) == 0,
	              "node-b took the Lease while node-a's agent restarted");
	ck_assert_msg(gap_ack != 0 && gap_ack < clock_mono_usec(),
	              "node-a acknowledged nothing once its last renewal's grant was over");
	ck_assert_msg(kft_log_count(s.c.node[0].agent_log, NULL, "event=parting ", NULL) == 1,
	              "no parting renewal logged");
	fo_agent_start(&s.c, 0);
	ck_assert_msg(wait_log(s.c.node[0].agent_log, 1, 10000, NULL, "succession=continued", NULL),
	              "the next agent on node-a did not continue the term");
	ck_assert_msg(fo_wait_ack(&s.w, 0, clock_mono_usec(), 5000), "node-a acknowledges nothing");
	usleep(1000 * 1000);
	pause = longest_pause(&s, 0, t_term, clock_mono_usec());
	printf("%s: the master's longest write pause %.3f s over a %.1f s restart\n", s.c.tag,
	       secs(pause), 2.0 * FO_LEASE_MS / 1000.0);
	if (_i == 0)
		fo_record("sigterm-keep-grace-longest-write-pause", secs(pause));
	else {
		ck_assert_int_eq(kft_log_count(s.c.node[0].proxy_log, NULL, "drop_response", NULL),
		                 1);
		printf("%s: parting renewals tried again: %d\n", s.c.tag,
		       kft_log_count(s.c.node[0].agent_log, NULL, "the parting renewal failed",
		                     NULL));
	}
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_after), 0);
	ck_assert_str_eq(role, "master");
	ck_assert_int_eq(epoch_after, epoch_before);
	ck_assert_msg(pause < FO_LEASE_MS * USEC_PER_MSEC,
	              "the master paused %.3f s: the grant did not cover the restart", secs(pause));
	scen_finish(&s);
}
END_TEST

/* The Lease's kubefence.io/fence-owed as an admin reads it now ("" when
 * none), into out. */
static void lease_owed(struct scen *s, char *out, size_t len)
{
	char path[512], err[512];
	cJSON *lease = NULL, *ann, *v;

	ck_assert_int_ge(k8s_path(path, sizeof(path), "coordination.k8s.io/v1", getenv("KF_IT_NS"),
	                          "leases", s->c.lease),
	                 0);
	if (k8s_get(s->c.admin, path, 5000, &lease, err, sizeof(err)) < 0)
		ck_abort_msg("reading the Lease: %s", err);
	ann = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lease, "metadata"),
	                                       "annotations");
	v = cJSON_GetObjectItemCaseSensitive(ann, LEASE_ANN_FENCE_OWED);
	str_copy(out, len, cJSON_IsString(v) ? v->valuestring : "");
	cJSON_Delete(lease);
}

/* Node 0's agent and service killed: node 1 takes the Lease once it
 * expires, owing node 0 the full fence. */
static void kill_node_a(struct scen *s)
{
	fo_agent_signal(&s->c, 0, SIGKILL);
	fo_metad_signal(&s->c, 0, SIGKILL);
}

/* The parting renewal carries the settle of a fence the term confirmed,
 * like every other write of the record.  node-b takes over from a dead
 * node-a (owing it the full fence) and its agent's SIGTERM comes after the
 * fence was confirmed but before any renewal wrote that off: the first
 * renewal is paused (a fault point) from before the fence ends (another
 * delays it) until after the SIGTERM.  Left on the Lease for the grace, the
 * owed fence made node-b's next agent, started while its service had not
 * reconnected (agent.fence_without_service), a fence-only candidate: it
 * continued the term, had nothing to promote and released it, while the
 * old service still wrote under the parting grant.  A term held by this
 * node's predecessor is continued only with a service to continue it. */
START_TEST(sigterm_keep_grace_carries_the_settle)
{
	/* node-b's service takes 300 ms more to promote: its pod is labelled
	 * early, well before READY */
	static const struct fp_arm arm[] = {
	        {1, FO_AGENT, "fence.method.before=1*delay(300);lease.renew.before_send=1*pause"},
	        {1, FO_METAD, "metad.promote.before_claim=1*delay(300)"},
	};
	struct scen s;
	char owed[LEASE_OWED_MAX], cmd[800];
	int status;

	scen_extra_conf = "agent.on_sigterm = keep\nagent.restart_grace_ms = 8000\n"
	                  "agent.fence_without_service = true\n";
	scen_start_armed(&s, "graceowed", arm, 2);
	scen_extra_conf = NULL;
	kill_node_a(&s);
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 8000, NULL, "event=fence-owed",
	                       "node-a:expired"),
	              "node-b never took the Lease owing node-a's fence");
	ck_assert_msg(wait_labelled(&s, 1, 8000), "node-b never labelled its pod");
	/* the label may come before the service is READY (it is taken off
	 * again if the term ends first); a SIGTERM before READY parts with
	 * nothing, by design (sigterm-keep-grace-promoting) */
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 8000, NULL, "event=promoted", "epoch=2"),
	              "node-b never promoted its service");
	ck_assert_msg(fo_fired(&s.c, 1, "lease.renew.before_send", NULL) == 1,
	              "node-b's first renewal was not held before the SIGTERM");
	fo_agent_signal(&s.c, 1, SIGTERM);
	usleep(100 * 1000);
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/lease.renew.before_send.*.paused",
	         s.c.node[1].fp_dir);
	ck_assert_int_eq(system(cmd), 0);
	status = fo_agent_wait(&s.c, 1, 5000);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the agent did not exit 0 on SIGTERM (status %d)", status);
	if (kft_log_count(s.c.node[1].agent_log, NULL, "event=parting ", NULL) != 1)
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=parting ", NULL) == 1,
	              "no parting renewal (the held renewal may have come after the renew "
	              "deadline: a slow machine)");
	lease_owed(&s, owed, sizeof(owed));
	ck_assert_msg(owed[0] == '\0',
	              "the parting renewal left fence-owed '%s' on the Lease, a fence node-b "
	              "had confirmed",
	              owed);

	/* the next agent, while the service has not reconnected */
	fo_metad_signal(&s.c, 1, SIGSTOP);
	fo_arm(&s.c, 1, FO_AGENT, NULL);
	fo_agent_start(&s.c, 1);
	usleep(3 * FO_LEASE_MS * 1000);
	if (kft_log_count(s.c.node[1].agent_log, NULL, "event=released", NULL) != 0)
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=released", NULL) == 0,
	              "node-b's next agent released the term its service still writes in");
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "succession=continued", NULL),
	                 0);
	fo_metad_signal(&s.c, 1, SIGCONT);
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 10000, NULL, "succession=continued", NULL),
	              "node-b's next agent did not continue the term once its service came back");
	ck_assert_msg(fo_wait_ack(&s.w, 1, clock_mono_usec(), 5000), "node-b acknowledges nothing");
	scen_finish(&s);
}
END_TEST

/* A SIGTERM while the service is still recovering (PROMOTE sent, no READY)
 * leaves nothing for a next incarnation to continue: no parting renewal,
 * so that a node-b whose agent is gone for good (a drain) holds the others
 * off for no more than a lease, not the grace.  node-b's service is held
 * in PROMOTE by a fault point. */
START_TEST(sigterm_keep_grace_mid_promotion_does_not_part)
{
	static const struct fp_arm arm[] = {
	        {1, FO_METAD, "metad.promote.before_claim=1*pause"},
	};
	struct scen s;
	usec_t t_exit, t_led = 0;
	char cmd[800];
	int status;

	scen_extra_conf = "agent.on_sigterm = keep\nagent.restart_grace_ms = 8000\n";
	scen_start_armed(&s, "gracepromo", arm, 1);
	scen_extra_conf = NULL;
	kill_node_a(&s);
	for (int i = 0; i < 800 && fo_fired(&s.c, 1, "metad.promote.before_claim", NULL) < 1; i++)
		usleep(10000);
	ck_assert_msg(fo_fired(&s.c, 1, "metad.promote.before_claim", NULL) == 1,
	              "node-b's service was never held in PROMOTE");
	fo_agent_signal(&s.c, 1, SIGTERM);
	status = fo_agent_wait(&s.c, 1, 5000);
	t_exit = clock_mono_usec();
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the agent did not exit 0 on SIGTERM (status %d)", status);
	(void)fo_pod_recreate(&s.c, 0); /* node-b's fence deleted it */
	fo_metad_start(&s.c, 0);
	fo_agent_start(&s.c, 0);
	/* the second incarnation's "event=leading" (wait_log times the first) */
	if (wait_log(s.c.node[0].agent_log, 2, 2 * FO_LEASE_MS + 2000, NULL, "event=leading", NULL))
		t_led = clock_mono_usec();
	else
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[1].agent_log, NULL, "event=parting ", NULL) == 0,
	              "node-b's agent renewed the Lease for the grace with its service still "
	              "recovering");
	ck_assert_msg(t_led, "node-a did not take over within a lease of node-b's agent's exit");
	printf("gracepromo: node-a led %.3f s after node-b's agent exited\n", secs(t_led - t_exit));
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/*.paused", s.c.node[1].fp_dir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_msg(fo_wait_ack(&s.w, 0, t_led, 10000), "node-a acknowledges nothing");
	scen_finish(&s);
}
END_TEST

/* agent.api_outage = ride-through, the metads on the harness's second LUN
 * (fo_use_store_lun), each agent behind its own kf-faultproxy. */
static void scen_start_ride(struct scen *s, const char *tag)
{
	scen_start_full(s, tag, NULL, 0, SCEN_RIDE);
}

/* The whole API is unreachable for four lease durations — every request
 * held without an answer (0), or answered 503 (1).  The master's store is a
 * LUN a successor would have to preempt, so its term rides through: it goes
 * on acknowledging writes, node-b never takes over (when it can read the
 * Lease again it counts a full lease from then), and node-a's next renewal
 * resumes the term, same epoch.  With agent.api_outage = demote the master
 * stops at the renew deadline and writes pause for the rest of the
 * outage. */
START_TEST(api_outage_rides_through)
{
	static const char *const rules[] = {"* . blackhole\n", "* . status=503\n"};
	struct scen s;
	char role[16];
	int64_t epoch_before, epoch_after;
	usec_t t_out, t_back, pause;

	scen_start_ride(&s, _i == 0 ? "ridehang" : "ride503");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	ck_assert_str_eq(role, "master");
	t_out = clock_mono_usec();
	fo_proxy_rules(&s.c, 0, rules[_i]);
	fo_proxy_rules(&s.c, 1, rules[_i]);
	usleep(4 * FO_LEASE_MS * 1000);
	fo_proxy_rules(&s.c, 0, "");
	fo_proxy_rules(&s.c, 1, "");
	t_back = clock_mono_usec();
	ck_assert_msg(wait_log(s.c.node[0].agent_log, 1, 5000, NULL, "event=resumed", NULL),
	              "node-a's term did not resume after the outage");
	usleep(3 * FO_LEASE_MS * 1000); /* node-b had every chance to take over */
	pause = longest_pause(&s, 0, t_out, t_back);
	printf("%s: %.1f s outage: the master's longest write pause %.3f s, %zu writes "
	       "acknowledged during it\n",
	       s.c.tag, secs(t_back - t_out), secs(pause), fo_acks_count(&s.w, 0, t_out));
	fo_record(_i == 0 ? "api-outage-hang-longest-write-pause"
	                  : "api-outage-503-longest-write-pause",
	          secs(pause));
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=riding-through", NULL),
	                 1);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=stopped-leading", NULL),
	                 0);
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_after), 0);
	ck_assert_str_eq(role, "master");
	ck_assert_int_eq(epoch_after, epoch_before); /* the same term */
	/* writes went on: no stop at the renew deadline */
	ck_assert_msg(pause < FO_RENEW_MS * USEC_PER_MSEC,
	              "the master paused %.3f s during the outage", secs(pause));
	scen_finish(&s);
}
END_TEST

/* A partial partition: only the leader loses the API.  node-b sees the
 * Lease expire, fences node-a (PREEMPT on the LUN) and takes over: exactly
 * one failover.  node-a, riding through, keeps its service up, but the
 * target refuses its writes and the epoch cell its reads, so the history
 * stays linearizable and no acknowledged write is lost; the watcher never
 * sees two pods labelled. */
START_TEST(partial_partition_is_one_failover)
{
	struct scen s;
	usec_t t_cut;

	scen_start_ride(&s, "ridepart");
	t_cut = clock_mono_usec();
	fo_proxy_rules(&s.c, 0, "* . blackhole\n");
	ck_assert_msg(fo_wait_ack(&s.w, 1, t_cut, 15000), "node-b never took over");
	fo_record("partial-partition-to-first-ack-on-node-b",
	          secs(fo_first_ack_after(&s.w, 1, t_cut) - t_cut));
	usleep(2 * FO_LEASE_MS * 1000);
	fo_proxy_rules(&s.c, 0, "");
	usleep(2 * FO_LEASE_MS * 1000);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 1);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=leading", NULL), 1);
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'",
	                               "scsi-pr confirmed", NULL),
	                 1);
	scen_finish(&s);
}
END_TEST

/* The master's store is on a LUN of the target, and the target restarts:
 * its session breaks mid-write and the store steps down (a write whose
 * outcome is unknown).  Nothing of the term is lost: the Lease is renewed
 * throughout, and the target holds no other node's key.  So the master's
 * agent takes the term's claim again (the Lease read, its key registered
 * and the reservation taken on the restarted target) and promotes its own
 * service again in the same epoch, which recovers the store: no failover,
 * node-b never leads, and every acknowledged write is still there. */
START_TEST(tgtd_restart_under_the_store_is_no_failover)
{
	struct scen s;
	char role[16], cmd[1200];
	int64_t epoch_before, epoch_after;
	usec_t t_restart, t_back, pause;

	scen_start_ride(&s, "tgtstore");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	ck_assert_str_eq(role, "master");
	snprintf(cmd, sizeof(cmd), "bash '%s' restart '%s' >/dev/null", getenv("KF_TGT_HARNESS"),
	         getenv("KF_TGT_DIR"));
	t_restart = clock_mono_usec();
	ck_assert_int_eq(system(cmd), 0);
	t_back = clock_mono_usec();
	ck_assert_msg(fo_wait_ack(&s.w, 0, t_back, 10000),
	              "node-a acknowledged nothing within 10 s of the target's restart");
	usleep(3 * FO_LEASE_MS * 1000); /* node-b had every chance to take over */
	pause = longest_pause(&s, 0, t_restart, clock_mono_usec());
	printf("%s: target down %.3f s; the master's longest write pause %.3f s\n", s.c.tag,
	       secs(t_back - t_restart), secs(pause));
	fo_record("tgtd-restart-under-the-store-longest-write-pause", secs(pause));
	/* the store did step down (a write in flight as the target went),
	 * and its agent promoted it again rather than release the term */
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=service-stepped-down",
	                               "promoting it again in this term", NULL),
	                 1);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=stopped-leading", NULL),
	                 0);
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_after), 0);
	ck_assert_str_eq(role, "master");
	ck_assert_int_eq(epoch_after, epoch_before); /* the same term */
	scen_finish(&s);
}
END_TEST

/* The target restarts while the clients only read.  Every read of the
 * master's store checks the epoch on the LUN first (confirm_reads), and the
 * store's iSCSI session is gone with the target: the reads fail, and no
 * write comes to make the store step down.  The master must not stay
 * master of a store it can no longer read: it steps down, and its agent
 * promotes it again in its term (the target lost every registration) or
 * releases it.  Either way a read is answered again soon after the target
 * is back. */
START_TEST(tgtd_restart_under_a_read_only_load_is_served_again)
{
	struct scen s;
	struct fo_conn cn[2];
	char cmd[1200], key[32] = "", val[512], why[512] = "";
	usec_t t_back, t_read = 0, end;
	int who = -1;

	scen_start_ride(&s, "tgtreads");
	s.w.reads_only = true;
	usleep(300 * 1000); /* the writes in flight are answered */
	pthread_mutex_lock(&s.w.mu);
	ck_assert_uint_gt(s.w.n_acks, 0);
	snprintf(key, sizeof(key), "%s", s.w.acks[s.w.n_acks - 1].key);
	pthread_mutex_unlock(&s.w.mu);
	snprintf(cmd, sizeof(cmd), "bash '%s' restart '%s' >/dev/null", getenv("KF_TGT_HARNESS"),
	         getenv("KF_TGT_DIR"));
	ck_assert_int_eq(system(cmd), 0);
	t_back = clock_mono_usec();
	for (int i = 0; i < 2; i++)
		fo_conn_init(&cn[i], s.c.node[i].port);
	end = t_back + 15 * USEC_PER_SEC;
	while (!t_read && clock_mono_usec() < end) {
		for (int i = 0; i < 2 && !t_read; i++) {
			enum fo_result r = fo_op(&s.c, &cn[i], "rd", PROTO_OP_GET, key, NULL, 500,
			                         val, sizeof(val));
			if (r == FO_VALUE || r == FO_NOTFOUND) {
				t_read = clock_mono_usec();
				who = i;
			} else if (i == 0) {
				snprintf(why, sizeof(why), "%s", val);
			}
		}
		usleep(20000);
	}
	for (int i = 0; i < 2; i++)
		fo_conn_close(&cn[i]);
	if (!t_read)
		dump_all(&s);
	ck_assert_msg(t_read,
	              "no read answered within 15 s of the target's restart (node-a's last "
	              "answer: '%s')",
	              why);
	printf("%s: a read answered by %s %.3f s after the target was back\n", s.c.tag,
	       s.c.node[who].name, secs(t_read - t_back));
	fo_record("tgtd-restart-read-only-load-to-first-read", secs(t_read - t_back));
	/* a read stepped the store down, and the term was kept: the target
	 * lost every registration, so node-a was promoted again */
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=service-stepped-down",
	                               "a read", NULL),
	                 1);
	ck_assert_int_eq(who, 0);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	s.w.reads_only = false;
	ck_assert_msg(fo_wait_ack(&s.w, -1, clock_mono_usec(), 10000),
	              "no write acknowledged after the reads resumed");
	scen_finish(&s);
}
END_TEST

/* The master's store fails a sync while the target keeps its state (a
 * fault point: error(EIO) before a group commit's sync).  Its session may
 * still have commands queued at the target, which only a fence (PREEMPT AND
 * ABORT, a LUN reset) stops, so its agent does not promote it again in the
 * term: the LUN kept its registrations since the store opened.  It releases
 * the Lease, node-b fences node-a and takes over, and every acknowledged
 * write is still there. */
START_TEST(store_fails_with_the_target_up_is_a_failover)
{
	static const struct fp_arm arm[] = {
	        {0, FO_METAD, "metastore.commit.before_sync=400*off->1*error(EIO)"},
	};
	struct scen s;
	usec_t t_fail = 0, t_ack, end;

	scen_start_full(&s, "syncfail", arm, 1, SCEN_RIDE);
	end = clock_mono_usec() + 15 * USEC_PER_SEC;
	while (fo_fired(&s.c, 0, "metastore.commit.before_sync", &t_fail) < 1 &&
	       clock_mono_usec() < end)
		usleep(20000);
	ck_assert_msg(t_fail, "the fault point never fired in node-a's metad");
	t_ack = fo_wait_ack(&s.w, 1, t_fail, 15000);
	if (!t_ack)
		dump_all(&s);
	ck_assert_msg(t_ack, "node-b acknowledged nothing within 15 s of node-a's failed sync");
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "kept its registrations",
	                               "not promoting it again", NULL),
	                 1);
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=released", NULL), 1);
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'",
	                               "scsi-pr confirmed", NULL),
	                 1);
	scen_finish(&s);
}
END_TEST

static off_t watchdog_size(struct scen *s, size_t i)
{
	char path[700];
	struct stat st;

	snprintf(path, sizeof(path), "%s/watchdog", s->c.node[i].dir);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Self-fencing's last line: the agent feeds its watchdog (a file stands in
 * for the device) only while its process runs; a stopped agent stops
 * feeding, so a real watchdog would reset the node. */
START_TEST(watchdog_fed_only_while_the_agent_runs)
{
	struct scen s;
	off_t a0, a1, a2;

	scen_start(&s, "watchdog");
	a0 = watchdog_size(&s, 0);
	usleep(2500 * 1000);
	a1 = watchdog_size(&s, 0);
	ck_assert_msg(a1 > a0, "node-a's agent does not feed its watchdog (%lld -> %lld)",
	              (long long)a0, (long long)a1);
	fo_agent_signal(&s.c, 0, SIGSTOP);
	usleep(200 * 1000);
	a1 = watchdog_size(&s, 0);
	usleep(2500 * 1000);
	a2 = watchdog_size(&s, 0);
	ck_assert_msg(a2 == a1, "a stopped agent fed its watchdog (%lld -> %lld)", (long long)a1,
	              (long long)a2);
	fo_agent_signal(&s.c, 0, SIGCONT);
	usleep(2500 * 1000);
	ck_assert_msg(watchdog_size(&s, 0) > a2, "the resumed agent does not feed again");
	scen_finish(&s);
}
END_TEST

/* The checker itself: made-up agent logs and acks must be refused. */
static void fake_log(struct fo_node *nd, const char *dir, const char *name, double mono, int epoch)
{
	FILE *f;

	snprintf(nd->name, sizeof(nd->name), "%s", name);
	snprintf(nd->agent_log, sizeof(nd->agent_log), "%s/%s.log", dir, name);
	f = fopen(nd->agent_log, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "2026-01-01T00:00:00.000Z mono=%.6f info kubefence-agent[1] follow_step: "
	        "event=leading lease='ns/l' epoch=%d previous='' verdict=free unseen_ms=0\n",
	        mono, epoch);
	fclose(f);
}

static bool check_fake(struct fo_cluster *c, struct fo_ack *acks, size_t n, char *why,
                       size_t whylen)
{
	struct fo_workload w;

	memset(&w, 0, sizeof(w));
	w.acks = acks;
	w.n_acks = n;
	return fo_check(c, &w, 1, why, whylen);
}

#define ACK(srv_, sent_, acked_)                                                                   \
	{                                                                                          \
		.key = "k", .value = "v", .srv = (srv_), .sent = (sent_)*USEC_PER_SEC,             \
		.acked = (acked_)*USEC_PER_SEC                                                     \
	}

START_TEST(checker_refuses_overlaps)
{
	struct fo_cluster c;
	char dir[512], why[1024];

	memset(&c, 0, sizeof(c));
	snprintf(dir, sizeof(dir), "%s/checker",
	         getenv("KF_IT_DIR") ? getenv("KF_IT_DIR") : "/tmp");
	(void)mkdir(dir, 0755);
	c.n = 2;
	fake_log(&c.node[0], dir, "node-a", 10.0, 1);
	fake_log(&c.node[1], dir, "node-b", 20.0, 2);
	{ /* b acknowledged at 25, then a (sent before b led) at 26 */
		struct fo_ack a[] = {ACK(0, 14, 15), ACK(1, 24, 25), ACK(0, 19.5, 26)};
		ck_assert(!check_fake(&c, a, 3, why, sizeof(why)));
		ck_assert_ptr_nonnull(strstr(why, "after node-b acknowledged"));
	}
	{ /* a acknowledged a write sent after node-b's term started */
		struct fo_ack a[] = {ACK(0, 14, 15), ACK(0, 21, 22)};
		ck_assert(!check_fake(&c, a, 2, why, sizeof(why)));
		ck_assert_ptr_nonnull(strstr(why, "after node-b started epoch 2"));
	}
	{ /* b acknowledged before it ever led */
		struct fo_ack a[] = {ACK(1, 14, 15)};
		ck_assert(!check_fake(&c, a, 1, why, sizeof(why)));
		ck_assert_ptr_nonnull(strstr(why, "without ever leading"));
	}
	{ /* one epoch led by two nodes */
		fake_log(&c.node[1], dir, "node-b", 20.0, 1);
		struct fo_ack a[] = {ACK(0, 14, 15)};
		ck_assert(!check_fake(&c, a, 1, why, sizeof(why)));
		ck_assert_ptr_nonnull(strstr(why, "led twice"));
	}
}
END_TEST

/* The history judge itself: a read that misses an acknowledged write must
 * fail the scenario, with kf-lincheck's counterexample; a clean history
 * passes.  No servers: the final read-back finds every key read already. */
START_TEST(history_checker_refuses_stale_read)
{
	struct fo_cluster c;
	struct fo_verdict v;
	char why[2048];
	uint64_t t = hist_now_us();
	bool ok;

	memset(&c, 0, sizeof(c));
	c.n = 2;
	snprintf(c.base, sizeof(c.base), "%s/checker-history",
	         getenv("KF_IT_DIR") ? getenv("KF_IT_DIR") : "/tmp");
	(void)mkdir(c.base, 0755);
	snprintf(c.history, sizeof(c.history), "%s/history", c.base);
	snprintf(c.tag, sizeof(c.tag), "checker");
	(void)unlink(c.history);
	ck_assert_int_eq(hist_open(c.history, &c.hist), 0);
	ck_assert_int_eq(
	        hist_record(c.hist, "c0", HIST_PUT, "k", "c0-0", t, t + 10, HIST_OK, "node-a"), 0);
	ck_assert_int_eq(hist_record(c.hist, "final", HIST_GET, "k", "c0-0", t + 20, t + 30,
	                             HIST_OK, "node-b"),
	                 0);
	ok = fo_check_history(&c, 1, &v, why, sizeof(why));
	ck_assert_msg(ok, "%s", why);
	if (!v.judged) {
		/* outside CI without kf-lincheck: fo_check_history said so */
		c.hist = hist_close(c.hist);
		return;
	}
	ck_assert_int_eq(v.status, 0);
	ck_assert_int_eq(v.ops, 2);
	/* node-a, deposed, answers a read after node-b read the value */
	ck_assert_int_eq(
	        hist_record(c.hist, "c1", HIST_GET, "k", NULL, t + 40, t + 50, HIST_OK, "node-a"),
	        0);
	ok = fo_check_history(&c, 1, &v, why, sizeof(why));
	ck_assert(!ok);
	ck_assert_int_eq(v.status, 1);
	ck_assert_ptr_nonnull(strstr(why, "found a violation"));
	c.hist = hist_close(c.hist);
}
END_TEST

/* every scenario in a TCase of its own, each within this */
#define FO_TC_TIMEOUT_S 90

static Suite *failover_suite(void)
{
	Suite *s = suite_create("failover");

	TCase *checker = kft_tcase(s, "checker", FO_TC_TIMEOUT_S, NULL, NULL);

	tcase_add_test(checker, checker_refuses_overlaps);
	tcase_add_test(checker, history_checker_refuses_stale_read);
	kft_add(s, "kill9-metad", kill9_master_metad, FO_TC_TIMEOUT_S, NULL, NULL);
	tcase_add_loop_test(kft_tcase(s, "sigstop-metad", FO_TC_TIMEOUT_S, NULL, NULL),
	                    sigstop_master_metad, 0, 2);
	kft_add(s, "sigstop-node", sigstop_master_node, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "single-replica", single_replica_fenced_without_a_service, FO_TC_TIMEOUT_S, NULL,
	        NULL);
	kft_add(s, "fence-give-up", fence_given_up_lets_another_node_try, FO_TC_TIMEOUT_S, NULL,
	        NULL);
	kft_add(s, "sigstop-agent", sigstop_master_agent, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "sigterm-agent", sigterm_leader_agent, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "sigterm-agent-hung-service", sigterm_leader_agent_hung_service, FO_TC_TIMEOUT_S,
	        NULL, NULL);
	kft_add(s, "crash-after-durable", crash_after_durable, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "crash-before-promote", crash_before_promote, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "lost-acquire-response", lost_acquire_response_still_fences, FO_TC_TIMEOUT_S,
	        NULL, NULL);
	kft_add(s, "late-label-patch", late_label_patch_never_makes_two_masters, FO_TC_TIMEOUT_S,
	        NULL, NULL);
	kft_add(s, "endpoints", endpoints_follow_the_master_late_write_never_lands, FO_TC_TIMEOUT_S,
	        NULL, NULL);
	kft_add(s, "release-not-dead", release_without_confirmed_death_gets_the_full_fence,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "watchdog", watchdog_fed_only_while_the_agent_runs, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "service-dies-while-fence-fails", service_dies_while_fence_fails,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "healthz", healthz_reports_a_wedged_orchestrator, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "tgtd-restart", tgtd_restart_restores_reservations, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "tgtd-restart-store", tgtd_restart_under_the_store_is_no_failover,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "tgtd-restart-reads", tgtd_restart_under_a_read_only_load_is_served_again,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "store-fails-target-up", store_fails_with_the_target_up_is_a_failover,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "agent-kill9", agent_kill9_is_no_failover, FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "sigterm-keep", sigterm_keep_is_no_failover, FO_TC_TIMEOUT_S, NULL, NULL);
	tcase_add_loop_test(kft_tcase(s, "sigterm-keep-grace", FO_TC_TIMEOUT_S, NULL, NULL),
	                    sigterm_keep_grace_covers_restart, 0, 2);
	kft_add(s, "sigterm-keep-grace-settle", sigterm_keep_grace_carries_the_settle,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "sigterm-keep-grace-promoting", sigterm_keep_grace_mid_promotion_does_not_part,
	        FO_TC_TIMEOUT_S, NULL, NULL);
	tcase_add_loop_test(kft_tcase(s, "api-outage", FO_TC_TIMEOUT_S, NULL, NULL),
	                    api_outage_rides_through, 0, 2);
	kft_add(s, "partial-partition", partial_partition_is_one_failover, FO_TC_TIMEOUT_S, NULL,
	        NULL);
	return s;
}

int main(void)
{
	static const struct kft_opts opts = {.verbose = true};

	return kft_main(failover_suite(), &opts);
}
