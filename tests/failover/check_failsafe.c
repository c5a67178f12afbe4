/* failsafe.enabled with real processes (docs/failsafe.md): the setup of
 * tests/failover (fo.h) — a real kube-apiserver + etcd and tgtd, two nodes
 * each with a kubefence-agent behind its own kf-faultproxy and a
 * kubefence-metad — with the metads on the shared DIRECTORY store (no
 * SCSI-3 PR on the store: agent.api_outage = ride-through cannot apply) and
 * both agents in failsafe mode, talking over UDP on loopback with a shared
 * key.  Every scenario runs the workload of check_failover (a writer, two
 * mixed clients, every operation recorded and judged by kf-lincheck), the
 * role-label watcher and fo_check() (no acknowledged write lost, no two
 * masters acknowledging in overlapping terms).
 *
 *   api-outage         the whole API unreachable (held, or 503) for four
 *                      lease durations: the master keeps acknowledging,
 *                      same holder, same epoch
 *   partial-partition  only the leader's API path cut: node-b refuses to
 *                      promise, exactly one failover
 *   promise-kept       node-b promised, then gets the API back before
 *                      node-a: it sees the Lease expired but takes it only
 *                      after its promise ended, and after node-a's term did
 *   peer-down          node-b's agent killed, then the API cut: node-a gets
 *                      no promise from it and steps down at its deadline
 *   restarted-peer     node-b promised, is killed and restarted with the API
 *                      back for it only: it takes the Lease only after
 *                      node-a's term and every promise of its predecessor
 *                      ended
 *   unlisted           an agent whose identity failsafe.peers does not
 *                      name refuses to start
 *
 * KF_FAILSAFE_OFF=1 runs the same scenarios with failsafe.enabled = false
 * (the agents as they were before failsafe mode): api-outage then fails,
 * its master pausing for the rest of the outage. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "lib/k8s.h"
#include "lib/util.h"
#include "tests/failover/fo.h"
#include "tests/failover/scen.h"
#include "tests/lib/kftest.h"

static bool failsafe_off(void)
{
	const char *v = getenv("KF_FAILSAFE_OFF");

	return v && strcmp(v, "1") == 0;
}

/* Two nodes on the directory store, each agent behind its own proxy, in
 * failsafe mode (unless KF_FAILSAFE_OFF=1); node 0 master, writes flowing
 * for a second. */
static void scen_start(struct scen *s, const char *tag)
{
	usec_t t0;

	memset(s, 0, sizeof(*s));
	fo_prepare_rbac();
	fo_cluster_init(&s->c, tag, 2);
	for (size_t i = 0; i < 2; i++)
		fo_proxy(&s->c, i);
	fo_use_failsafe(&s->c, !failsafe_off());
	fo_watcher_start(&s->wa, &s->c);
	fo_cluster_start(&s->c);
	s->w.probe_every = 20;
	s->w.pause_us = 2000;
	s->w.mixed = 2;
	t0 = clock_mono_usec();
	fo_workload_start(&s->w, &s->c);
	ck_assert_msg(fo_wait_ack(&s->w, 0, t0, 5000), "no write acknowledged by node-a");
	usleep(1000 * 1000);
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
	final = fo_wait_master(&s->c, -1, 10000);
	if (final < 0) {
		/* a fence deleted a pod: as its StatefulSet would, create it
		 * again and restart its MetaService as the new pod */
		for (size_t i = 0; i < 2; i++)
			if (fo_pod_recreate(&s->c, i)) {
				(void)fo_metad_signal(&s->c, i, SIGKILL);
				fo_metad_start(&s->c, i);
			}
		final = fo_wait_master(&s->c, -1, 10000);
	}
	if (final < 0)
		dump_all(s);
	ck_assert_msg(final >= 0, "no master at the end");
	ok = fo_check(&s->c, &s->w, final, why, sizeof(why));
	hok = fo_check_history(&s->c, final, &v, hwhy, sizeof(hwhy));
	printf("%s: %zu writes acknowledged (node-a %zu, node-b %zu), %" PRIu64
	       " attempts; mixed clients: %" PRIu64 " ops; watcher: %" PRIu64
	       " observations, %" PRIu64 " with two masters; history: %s (%ld ops)\n",
	       s->c.tag, s->w.n_acks, fo_acks_count(&s->w, 0, 0), fo_acks_count(&s->w, 1, 0),
	       s->w.attempts, s->w.mixed_ops, s->wa.observations, s->wa.violations,
	       v.judged ? v.verdict : "not judged", v.ops);
	fflush(stdout);
	if (!ok || s->wa.violations)
		dump_all(s);
	ck_assert_msg(ok, "%s", why);
	ck_assert_msg(hok, "%s", hwhy);
	ck_assert_msg(s->wa.violations == 0, "%s", s->wa.violation);
	fo_workload_free(&s->w);
	fo_cluster_stop(&s->c);
}

/* The agents' stamps in spec.acquireTime are their CLOCK_REALTIME when
 * they built the acquire, before sending it; converted to CLOCK_MONOTONIC
 * with the offset this process reads (the same host's clocks, which drift
 * apart only by NTP's slewing, at most 500 ppm: well under this slack over
 * the seconds in between). */
#define CLOCK_SLACK_US 2000

/* An RFC 3339 MicroTime ("2026-01-02T03:04:05.123456Z") as CLOCK_MONOTONIC
 * µs; 0 when it does not parse. */
static usec_t microtime_mono(const char *t)
{
	struct tm tm = {0};
	int us = 0, n = 0;
	usec_t real;

	if (!t ||
	    sscanf(t, "%d-%d-%dT%d:%d:%d.%6d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
	           &tm.tm_min, &tm.tm_sec, &us, &n) != 7 ||
	    strcmp(t + n, "Z") != 0)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	real = (usec_t)timegm(&tm) * USEC_PER_SEC + us;
	return real - (clock_real_usec() - clock_mono_usec());
}

/* The Lease's holder and epoch, read as admin (directly, not through any
 * proxy); with acquired, when its holder's acquire began (its
 * acquireTime, on this process's monotonic clock). */
static void lease_read(struct scen *s, char *holder, size_t len, int64_t *epoch, usec_t *acquired)
{
	char path[512], err[512];
	cJSON *obj = NULL, *spec, *h, *t, *a;

	ck_assert_int_ge(k8s_path(path, sizeof(path), "coordination.k8s.io/v1", getenv("KF_IT_NS"),
	                          "leases", s->c.lease),
	                 0);
	ck_assert_msg(k8s_get(s->c.admin, path, 5000, &obj, err, sizeof(err)) >= 0, "GET %s: %s",
	              path, err);
	spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
	h = cJSON_GetObjectItemCaseSensitive(spec, "holderIdentity");
	t = cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions");
	a = cJSON_GetObjectItemCaseSensitive(spec, "acquireTime");
	str_copy(holder, len, cJSON_IsString(h) ? h->valuestring : "");
	*epoch = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : -1;
	if (acquired) {
		*acquired = microtime_mono(cJSON_IsString(a) ? a->valuestring : NULL);
		ck_assert_msg(*acquired > 0, "the Lease's acquireTime '%s' does not parse",
		              cJSON_IsString(a) ? a->valuestring : "(none)");
	}
	cJSON_Delete(obj);
}

static void lease_holder(struct scen *s, char *holder, size_t len, int64_t *epoch)
{
	lease_read(s, holder, len, epoch, NULL);
}

/* The until_mono= of the last line of path with needle (0: none): the
 * latest end of a promise the agent logged. */
static usec_t until_mono(const char *path, const char *needle)
{
	char line[4096];
	usec_t r = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *u = strstr(line, "until_mono=");
		long long sec, us;

		if (strstr(line, needle) && u && sscanf(u, "until_mono=%lld.%lld", &sec, &us) == 2)
			r = (usec_t)sec * USEC_PER_SEC + (usec_t)us;
	}
	fclose(f);
	return r;
}

/* (a) The whole API unreachable for four lease durations — every request
 * of both agents held without an answer (0), or answered 503 (1).  The
 * store is a directory: nothing but the Lease's timing stops an old
 * master, so only the peers' promises let node-a's term go on.  node-b
 * cannot reach the API either, so it promises; node-a extends its term
 * round by round and its master goes on acknowledging writes; node-b never
 * takes over, and node-a's next renewal resumes the term, same holder,
 * same epoch.  With failsafe off (KF_FAILSAFE_OFF=1) node-a steps down at
 * the renew deadline and writes pause for the rest of the outage. */
START_TEST(api_outage_rides_on_promises)
{
	static const char *const rules[] = {"* . blackhole\n", "* . status=503\n"};
	struct scen s;
	char role[16], holder[64];
	int64_t epoch_before, epoch_after, lease_epoch;
	usec_t t_out, t_back, pause;

	scen_start(&s, _i == 0 ? "fshang" : "fs503");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	ck_assert_str_eq(role, "master");
	t_out = clock_mono_usec();
	fo_proxy_rules(&s.c, 0, rules[_i]);
	fo_proxy_rules(&s.c, 1, rules[_i]);
	usleep(4 * FO_LEASE_MS * 1000);
	t_back = clock_mono_usec();
	pause = longest_pause(&s, 0, t_out, t_back);
	printf("%s: %.1f s outage: the master's longest write pause %.3f s, %zu writes "
	       "acknowledged during it%s\n",
	       s.c.tag, secs(t_back - t_out), secs(pause), fo_acks_count(&s.w, 0, t_out),
	       failsafe_off() ? " (failsafe off)" : "");
	fflush(stdout);
	fo_proxy_rules(&s.c, 0, "");
	fo_proxy_rules(&s.c, 1, "");
	fo_record(_i == 0 ? "failsafe-outage-hang-longest-write-pause"
	                  : "failsafe-outage-503-longest-write-pause",
	          secs(pause));
	/* writes went on: no stop at the renew deadline */
	ck_assert_msg(pause < FO_RENEW_MS * USEC_PER_MSEC,
	              "the master paused %.3f s during the outage", secs(pause));
	ck_assert_msg(wait_log(s.c.node[0].agent_log, 1, 5000, NULL, "event=resumed", "failsafe"),
	              "node-a's term did not resume after the outage");
	usleep(2 * FO_LEASE_MS * 1000); /* node-b had every chance to take over */
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL, "event=failsafe-riding", NULL),
	                 1);
	ck_assert_int_ge(
	        kft_log_count(s.c.node[1].agent_log, NULL, "failsafe: promised 'node-a'", NULL), 1);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=stopped-leading", NULL),
	                 0);
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_after), 0);
	ck_assert_str_eq(role, "master");
	ck_assert_int_eq(epoch_after, epoch_before); /* the same term */
	lease_holder(&s, holder, sizeof(holder), &lease_epoch);
	ck_assert_str_eq(holder, "node-a");
	ck_assert_int_eq(lease_epoch, epoch_before);
	ck_assert_msg(metric_of(&s, 0, "kubefence_failsafe_rounds_total{result=\"promised\"}") >= 1,
	              "no promised round counted");
	ck_assert_msg(metric_of(&s, 0, "kubefence_failsafe_active") == 0,
	              "still active after the outage");
	ck_assert_msg(metric_of(&s, 1, "kubefence_failsafe_promises_total") >= 1,
	              "node-b counted no promise");
	scen_finish(&s);
}
END_TEST

/* (b) A partial partition: only node-a (the leader) loses the API.  node-b
 * reads the Lease fine, so it refuses to promise (api-reachable): node-a
 * gets no extension and steps down at its renew deadline, node-b takes
 * the Lease when it expires and fences node-a.  Exactly one failover, and
 * never two masters (fo_check, the watcher, kf-lincheck). */
START_TEST(partial_partition_is_one_failover)
{
	struct scen s;
	usec_t t_cut, t_stop = 0, t_lead = 0;

	scen_start(&s, "fspart");
	t_cut = clock_mono_usec();
	fo_proxy_rules(&s.c, 0, "* . blackhole\n");
	ck_assert_msg(fo_wait_ack(&s.w, 1, t_cut, 15000), "node-b never took over");
	fo_record("failsafe-partial-partition-to-first-ack-on-node-b",
	          secs(fo_first_ack_after(&s.w, 1, t_cut) - t_cut));
	usleep(2 * FO_LEASE_MS * 1000);
	fo_proxy_rules(&s.c, 0, "");
	usleep(2 * FO_LEASE_MS * 1000);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, &t_lead, "event=leading", NULL), 1);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=leading", NULL), 1);
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL,
	                               "'node-b' refused (api-reachable)", NULL),
	                 1);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=failsafe-riding", NULL),
	                 0);
	ck_assert_int_eq(kft_log_count(s.c.node[1].agent_log, NULL, "failsafe: promised", NULL), 0);
	/* its term ended (at the renew deadline, or a moment before when its
	 * service's grant ran out mid-write and it stepped down) before
	 * node-b's began */
	ck_assert_int_ge(
	        kft_log_count(s.c.node[0].agent_log, &t_stop, "event=stopped-leading", NULL), 1);
	ck_assert_msg(t_stop < t_lead, "node-b led (%.3f) before node-a's term ended (%.3f)",
	              secs(t_lead), secs(t_stop));
	ck_assert_int_ge(
	        kft_log_count(s.c.node[1].agent_log, NULL, "event=fenced", "node='node-a'", NULL),
	        1);
	scen_finish(&s);
}
END_TEST

/* (c) node-b promised during a whole-API outage, then gets the API back
 * before node-a.  It reads the Lease, which looks expired (nobody renewed
 * it for seconds), but it keeps its promise: it takes nothing until the
 * promise ends.  Meanwhile it refuses node-a's next rounds (it can reach
 * the API now), so node-a's term ends at its last extension, before
 * node-b's promise does; only then does node-b take over. */
START_TEST(promise_kept_when_the_api_returns_first)
{
	struct scen s;
	usec_t t_hold = 0, promise_end, hold_end, t_read, t_lead = 0, t_stop = 0, t_back, t_acq;
	char holder[64];
	int64_t epoch_before, lease_epoch;
	char role[16];

	scen_start(&s, "fskept");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	fo_proxy_rules(&s.c, 0, "* . status=503\n");
	fo_proxy_rules(&s.c, 1, "* . status=503\n");
	if (!wait_log(s.c.node[0].agent_log, 1, 5000, NULL, "event=failsafe-riding", NULL))
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[0].agent_log, NULL, "event=failsafe-riding", NULL) >=
	                      1,
	              "node-a never rode on promises");
	usleep(FO_LEASE_MS * 1000); /* past the Lease's expiry as node-b counts it */
	t_back = clock_mono_usec();
	fo_proxy_rules(&s.c, 1, ""); /* node-b first */
	ck_assert_msg(
	        wait_log(s.c.node[1].agent_log, 1, 5000, &t_hold, "event=failsafe-holding", NULL),
	        "node-b did not hold back for its promise");
	/* while it holds back: the Lease still names node-a, same epoch.  The
	 * read must end before the promise does, or it would show nothing of
	 * what the promise holds back. */
	lease_holder(&s, holder, sizeof(holder), &lease_epoch);
	t_read = clock_mono_usec();
	hold_end = until_mono(s.c.node[1].agent_log, "event=failsafe-holding");
	ck_assert_uint_gt(hold_end, 0);
	ck_assert_msg(t_read < hold_end,
	              "the Lease was read %.3f s after node-b's promise ended: nothing to judge",
	              secs(t_read - hold_end));
	ck_assert_str_eq(holder, "node-a");
	ck_assert_int_eq(lease_epoch, epoch_before);
	ck_assert_int_ge(kft_log_count(s.c.node[1].agent_log, NULL, "event=failsafe-holding",
	                               "verdict=expired", NULL),
	                 1);
	/* node-b takes over once the promise ended */
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 10000, &t_lead, "event=leading", NULL),
	              "node-b never took over");
	ck_assert_msg(
	        kft_log_count(s.c.node[0].agent_log, &t_stop, "event=stopped-leading", NULL) >= 1,
	        "node-a's term did not end");
	/* the latest promise that held it back (the last such line: one per
	 * promise, and a later one may have extended an earlier) */
	promise_end = until_mono(s.c.node[1].agent_log, "event=failsafe-holding");
	ck_assert_uint_ge(promise_end, hold_end);
	/* when node-b's acquire began: t_lead is logged only once it was
	 * answered, so it bounds the acquire's end, not its start */
	lease_read(&s, holder, sizeof(holder), &lease_epoch, &t_acq);
	ck_assert_str_eq(holder, "node-b");
	printf("fskept: API back for node-b at +0; it held back from +%.3f s until its promise "
	       "ended at +%.3f s; node-a's term ended at +%.3f s; node-b led at +%.3f s\n",
	       secs(t_hold - t_back), secs(promise_end - t_back), secs(t_stop - t_back),
	       secs(t_lead - t_back));
	printf("fskept: node-b's acquire began at +%.3f s\n", secs(t_acq - t_back));
	ck_assert_msg(t_acq + CLOCK_SLACK_US >= promise_end,
	              "node-b began to take the Lease %.3f s before its promise ended",
	              secs(promise_end - t_acq));
	ck_assert_msg(t_lead >= promise_end, "node-b led %.3f s before its promise ended",
	              secs(promise_end - t_lead));
	ck_assert_msg(t_stop < promise_end, "node-a's term ended after node-b's promise did");
	ck_assert_msg(t_stop < t_acq, "node-b began to take the Lease before node-a's term ended");
	ck_assert_msg(t_stop < t_lead, "node-b led before node-a's term ended");
	ck_assert_int_ge(kft_log_count(s.c.node[0].agent_log, NULL,
	                               "'node-b' refused (api-reachable)", NULL),
	                 1);
	fo_proxy_rules(&s.c, 0, "");
	ck_assert_msg(fo_wait_ack(&s.w, 1, t_lead, 10000), "node-b acknowledged nothing");
	lease_holder(&s, holder, sizeof(holder), &lease_epoch);
	ck_assert_str_eq(holder, "node-b");
	ck_assert_int_gt(lease_epoch, epoch_before);
	scen_finish(&s);
}
END_TEST

/* (f) node-b promised during a whole-API outage, then its agent is killed
 * (SIGKILL: its promises die with it) and restarted while the API is back
 * for node-b only.  The new incarnation knows nothing of its
 * predecessor's promises; what keeps them is that it counts node-a's
 * lease from its own first read, after the restart: it waits a whole
 * lease duration, past the end of any promise given before the kill
 * (grant + margin after its receipt) and past node-a's last extension
 * (node-a, silent rounds from the kill on, then refusals, extends nothing
 * more).  Only then does it take the Lease; the history stays
 * linearizable. */
START_TEST(restarted_peer_waits_out_its_predecessors_promise)
{
	struct scen s;
	usec_t t_dead, t_restart, t_lead = 0, t_stop = 0, t_acq, t_ended = 0, promise_bound;
	int64_t epoch_before, lease_epoch;
	char holder[64], role[16];
	int promised_before;

	scen_start(&s, "fsrestart");
	ck_assert_int_eq(fo_stat(&s.c, 0, role, sizeof(role), &epoch_before), 0);
	fo_proxy_rules(&s.c, 0, "* . status=503\n");
	fo_proxy_rules(&s.c, 1, "* . status=503\n");
	if (!wait_log(s.c.node[0].agent_log, 1, 5000, NULL, "event=failsafe-riding", NULL))
		dump_all(&s);
	ck_assert_msg(kft_log_count(s.c.node[0].agent_log, NULL, "event=failsafe-riding", NULL) >=
	                      1,
	              "node-a never rode on promises");
	ck_assert_int_ge(
	        kft_log_count(s.c.node[1].agent_log, NULL, "failsafe: promised 'node-a'", NULL), 1);
	usleep(300 * 1000); /* a few more rounds: node-b's last promise is fresh */
	(void)fo_agent_signal(&s.c, 1, SIGKILL);
	promised_before =
	        kft_log_count(s.c.node[1].agent_log, NULL, "failsafe: promised 'node-a'", NULL);
	t_dead = clock_mono_usec(); /* reaped: every promise it gave was read before */
	promise_bound = t_dead + (FO_RENEW_MS + (FO_LEASE_MS - FO_RENEW_MS) / 2) * USEC_PER_MSEC;
	fo_proxy_rules(&s.c, 1, ""); /* the API back, for node-b only */
	fo_agent_start(&s.c, 1);
	t_restart = clock_mono_usec();
	ck_assert_msg(wait_log(s.c.node[1].agent_log, 1, 15000, &t_lead, "event=leading", NULL),
	              "node-b never took over");
	ck_assert_msg(
	        kft_log_count(s.c.node[0].agent_log, &t_stop, "event=stopped-leading", NULL) >= 1,
	        "node-a's term did not end");
	ck_assert_int_eq(
	        kft_log_count(s.c.node[0].agent_log, &t_ended, "event=failsafe-ended", NULL), 1);
	/* when node-b's acquire began (t_lead is logged after its answer) */
	lease_read(&s, holder, sizeof(holder), &lease_epoch, &t_acq);
	ck_assert_str_eq(holder, "node-b");
	ck_assert_int_gt(lease_epoch, epoch_before);
	printf("fsrestart: node-b's agent killed at +0; restarted at +%.3f s; node-a's term "
	       "ended at +%.3f s; any promise of the killed agent ended by +%.3f s; node-b's "
	       "acquire began at +%.3f s, it led at +%.3f s\n",
	       secs(t_restart - t_dead), secs(t_stop - t_dead), secs(promise_bound - t_dead),
	       secs(t_acq - t_dead), secs(t_lead - t_dead));
	/* node-a's last extension ended before it logged the end of its term,
	 * and that before node-b's acquire began */
	ck_assert_msg(t_stop < t_acq,
	              "node-b began to take the Lease %.3f s before node-a's term "
	              "ended",
	              secs(t_stop - t_acq));
	ck_assert_msg(t_ended <= t_stop, "failsafe ended after the term");
	/* past every promise of the killed incarnation */
	ck_assert_msg(t_acq + CLOCK_SLACK_US >= promise_bound,
	              "node-b began to take the Lease %.3f s before its predecessor's promises "
	              "surely ended",
	              secs(promise_bound - t_acq));
	/* by waiting a whole lease duration from its first read, after the
	 * restart */
	ck_assert_msg(t_acq + CLOCK_SLACK_US >= t_restart + FO_LEASE_MS * USEC_PER_MSEC,
	              "node-b took the Lease %.3f s after its restart, less than a lease duration",
	              secs(t_acq - t_restart));
	/* the new incarnation reaches the API: it promised nothing (a fresh
	 * promise is logged at info, so the count would have grown) */
	ck_assert_int_eq(
	        kft_log_count(s.c.node[1].agent_log, NULL, "failsafe: promised 'node-a'", NULL),
	        promised_before);
	fo_proxy_rules(&s.c, 0, "");
	ck_assert_msg(fo_wait_ack(&s.w, 1, t_lead, 10000), "node-b acknowledged nothing");
	lease_holder(&s, holder, sizeof(holder), &lease_epoch);
	ck_assert_str_eq(holder, "node-b");
	scen_finish(&s);
}
END_TEST

/* (d) node-b's agent is down (killed), then the API is cut: node-a asks,
 * nobody answers for node-b, so it never has every promise, extends
 * nothing and steps down at its renew deadline; its master acknowledges no
 * write sent after that.  Then the API and node-b's agent come back, and
 * the cluster has one master again. */
START_TEST(peer_down_no_extension)
{
	struct scen s;
	usec_t t_out, t_stop = 0;
	size_t late;

	scen_start(&s, "fsdown");
	(void)fo_agent_signal(&s.c, 1, SIGKILL);
	usleep(500 * 1000);
	t_out = clock_mono_usec();
	fo_proxy_rules(&s.c, 0, "* . status=503\n");
	fo_proxy_rules(&s.c, 1, "* . status=503\n");
	/* at its renew deadline (or as its service's grant ran out mid-write) */
	ck_assert_msg(
	        wait_log(s.c.node[0].agent_log, 1, 5000, &t_stop, "event=stopped-leading", NULL),
	        "node-a did not step down");
	usleep(FO_LEASE_MS * 1000);
	late = fo_acks_sent_after(&s.w, 0, t_out + FO_RENEW_MS * USEC_PER_MSEC);
	printf("fsdown: node-a stepped down %.3f s after the outage began; %zu writes it "
	       "acknowledged were sent after its renew deadline\n",
	       secs(t_stop - t_out), late);
	ck_assert_int_ge(
	        kft_log_count(s.c.node[0].agent_log, NULL, "'node-b' did not answer", NULL), 1);
	ck_assert_int_eq(kft_log_count(s.c.node[0].agent_log, NULL, "event=failsafe-riding", NULL),
	                 0);
	ck_assert_uint_eq(late, 0);
	ck_assert_msg(metric_of(&s, 0, "kubefence_failsafe_rounds_total{result=\"silent\"}") >= 1,
	              "no silent round counted");
	fo_proxy_rules(&s.c, 0, "");
	fo_proxy_rules(&s.c, 1, "");
	fo_agent_start(&s.c, 1);
	ck_assert_msg(fo_wait_master(&s.c, -1, 15000) >= 0, "no master after the outage");
	scen_finish(&s);
}
END_TEST

/* (e) An agent whose identity failsafe.peers does not name (a node added
 * later, a typo) would be asked for no promise by the others, and could
 * take the Lease while a leader rides on theirs: it refuses to start,
 * naming its identity and the list. */
START_TEST(unlisted_agent_refuses_to_start)
{
	struct fo_cluster c;
	char lines[sizeof(c.node[1].extra_conf) + 64];
	int status;

	fo_prepare_rbac();
	fo_cluster_init(&c, "fsunlisted", 2);
	fo_use_failsafe(&c, true);
	FO_CHECK(snprintf(lines, sizeof(lines), "%sagent.identity = node-x\n",
	                  c.node[1].extra_conf) < (int)sizeof(c.node[1].extra_conf),
	         "the conf lines are too long");
	fo_conf_extra(&c, 1, lines);
	fo_agent_start(&c, 1);
	status = fo_agent_wait(&c, 1, 10000);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 0)
		fo_dump(c.node[1].agent_log);
	ck_assert_msg(status != -1, "the agent still runs");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != 0, "wait status %d", status);
	ck_assert_int_eq(kft_log_count(c.node[1].agent_log, NULL,
	                               "this agent's identity 'node-x' is not in failsafe.peers "
	                               "(node-a, node-b)",
	                               NULL),
	                 1);
	ck_assert_int_eq(kft_log_count(c.node[1].agent_log, NULL, "event=leading", NULL), 0);
	fo_cluster_stop(&c);
}
END_TEST

#define FS_TC_TIMEOUT_S 120

int main(void)
{
	static const struct kft_opts opts = {.verbose = true};
	Suite *s = suite_create("failsafe");

	tcase_add_loop_test(kft_tcase(s, "api-outage", FS_TC_TIMEOUT_S, NULL, NULL),
	                    api_outage_rides_on_promises, 0, 2);
	kft_add(s, "partial-partition", partial_partition_is_one_failover, FS_TC_TIMEOUT_S, NULL,
	        NULL);
	kft_add(s, "promise-kept", promise_kept_when_the_api_returns_first, FS_TC_TIMEOUT_S, NULL,
	        NULL);
	kft_add(s, "peer-down", peer_down_no_extension, FS_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "restarted-peer", restarted_peer_waits_out_its_predecessors_promise,
	        FS_TC_TIMEOUT_S, NULL, NULL);
	kft_add(s, "unlisted", unlisted_agent_refuses_to_start, FS_TC_TIMEOUT_S, NULL, NULL);
	return kft_main(s, &opts);
}
