/* Interleavings that broke the first version of the orchestrator's state
 * machine (nodeagent/orch_sm.c) and of its effect runner: each test was
 * written against it, failed there, and asserts what the README promises.
 * The last two drive the real control socket and the real runner. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fencing/pipeline.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/control.h"
#include "nodeagent/elector.h"
#include "nodeagent/events.h"
#include "nodeagent/orch_sm.h"
#include "nodeagent/orchestrator.h"
#include "tests/lib/kftest.h"
#include "tests/unit/orch_rig.h"

#include <cjson/cJSON.h>

static void setup(void)
{
	init_mode(SM_MODE_CONTROL, true);
	hello_as("meta-a", "uid-a", 4242, 1);
}

/* Run the machine for `span` from NOW, ticking whenever it asks; true
 * when a JOB_KILL was issued. */
static bool kill_within(usec_t span)
{
	usec_t end = NOW + span;

	for (int i = 0; i < 1000; i++) {
		usec_t w = sm_wake_at(&S);
		if (w == USEC_INFINITY || w > end)
			return false;
		tick_at(w);
		if (fx_job(JOB_KILL))
			return true;
	}
	return false;
}

/* F1.  A service that never answers PROMOTE (hung in D state) is demoted
 * and released.  Its agent is still a candidate (svc_candidate is set by
 * STANDBY and not cleared by PROMOTE), so the elector takes the Lease
 * again at once (FREE, or OURS).  STARTED then arrives in DEMOTING:
 * started() has no guard for DEMOTING/KILLING, so the demotion is
 * forgotten: no kill ever, and sm_unconfirmed_demotion() turns false (the
 * watchdog is fed again) although the service never confirmed. */
START_TEST(test_started_while_demoting_keeps_the_demotion)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	tick_at(NOW + 5000 * MS); /* PROMOTE timed out: DEMOTE, release */
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert_int_eq(S.st, SM_DEMOTING);
	ck_assert(sm_unconfirmed_demotion(&S));

	NOW += 30 * MS; /* our own elector wins the free Lease again */
	started(6, "");
	/* the service has confirmed nothing: the watchdog must still wait */
	ck_assert_msg(sm_unconfirmed_demotion(&S),
	              "STARTED 6 in DEMOTING: state %s, demotion of epoch 5 forgotten "
	              "(watchdog fed again)",
	              sm_state_name(S.st));
}
END_TEST

START_TEST(test_started_while_demoting_still_kills)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	tick_at(NOW + 5000 * MS);
	ck_assert_int_eq(S.st, SM_DEMOTING);
	NOW += 30 * MS;
	started(6, "");
	/* the new term goes on: claim, PROMOTE 6 to the same hung service */
	e = fx_job(JOB_CLAIM);
	if (e)
		done(e, 0);
	ck_assert_msg(!fx(FX_SEND_PROMOTE),
	              "PROMOTE epoch=6 sent to a service that never confirmed DEMOTE 5");
	ck_assert_msg(kill_within(2500 * MS),
	              "demote_timeout passed without a kill of the unconfirmed service");
}
END_TEST

/* F2.  JOB_CANCELLED is taken to mean "LOST follows".  But job_fence /
 * job_claim return it whenever still_leading() is false, which
 * (elector_is_leader) reads pub_valid_until: a renewal that completes just
 * past the old validity (req_timeout rounds to >= 1 ms), or, with the
 * working-tree BOOTTIME check, any suspend, makes it false while the term
 * goes on.  Then FENCING/CLAIMING/FINDING have no timer and wait forever. */
START_TEST(test_cancelled_fence_without_lost_is_not_a_dead_end)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	done(e, JOB_CANCELLED);
	ck_assert_int_eq(S.st, SM_FENCING);
	ck_assert_msg(sm_wake_at(&S) != USEC_INFINITY,
	              "FENCING after JOB_CANCELLED: no job, no timer; only a LOST can move "
	              "it, and none comes while the term is renewed");
}
END_TEST

START_TEST(test_cancelled_claim_without_lost_is_not_a_dead_end)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, JOB_CANCELLED);
	ck_assert_int_eq(S.st, SM_CLAIMING);
	ck_assert_msg(sm_wake_at(&S) != USEC_INFINITY,
	              "CLAIMING after JOB_CANCELLED: no job, no timer");
}
END_TEST

/* F3.  FIFO order [JOB_DONE(claim), GONE(A), HELLO(B)], where B connected
 * before the orchestrator dequeued JOB_DONE.  The PROMOTE decided then is
 * for A's connection (gen 1): the control socket refuses to deliver it to
 * B (test_promote_reaches_a_new_connection), so B holds no grant of this
 * term, and A's confirmed exit is the whole truth. */
START_TEST(test_confirmed_dead_only_if_no_other_process_was_promoted)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_SEND_PROMOTE));
	ck_assert_uint_eq(fx(FX_SEND_PROMOTE)->seq, 1);  /* A's connection only */
	simple(SE_GONE, 0, "EOF on the control socket"); /* A's EOF */
	e = fx_job(JOB_CONFIRM_EXIT);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->pid, 4242); /* A's pid */
	uint64_t confirm = e->job_id;
	hello_as("meta-a", "uid-a", 5151, 2); /* B: same pod (restart in place) */
	simple(SE_STANDBY, 0, NULL);
	ready(5, 0); /* a READY of 5 can only be A's, which is gone: ignored */
	ck_assert_ptr_null(fx_job(JOB_LABEL));
	done_id(JOB_CONFIRM_EXIT, confirm, 0); /* A did exit */
	e = fx(FX_RELEASE);
	ck_assert_ptr_nonnull(e);
	ck_assert(e->flag);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* F4.  Two terms end and one begins before the orchestrator thread takes
 * the sticky slots: lost_epoch N+1 overwrote N, so dequeue() hands out
 * STARTED N+1 then LOST N+1; LOST N is never delivered.  started() accepts
 * STARTED in MASTER without demoting. */
START_TEST(test_started_while_master_demotes_first)
{
	to_master();
	started(6, "");
	ck_assert_msg(S.demotions == 1 || sm_unconfirmed_demotion(&S),
	              "STARTED 6 while MASTER of 5: no demotion counted, no DEMOTING, state %s",
	              sm_state_name(S.st));
}
END_TEST

/* F5.  The release is not bound to its term: elector_release(reason, dead)
 * takes no epoch.  In RELEASING the term may already have ended (LOST is
 * handled there only by clearing `leading`); the release still goes out,
 * and it ends whatever term the elector holds by the time it runs. */
START_TEST(test_no_release_after_the_term_ended)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_GONE, 0, "EOF");
	e = fx_job(JOB_CONFIRM_EXIT);
	uint64_t id = e->job_id;
	simple(SE_LOST, 5, "renew deadline passed");
	ck_assert(!S.leading);
	done_id(JOB_CONFIRM_EXIT, id, 0);
	ck_assert_msg(fx(FX_RELEASE) == NULL,
	              "FX_RELEASE (dead=%d) emitted for term 5 after LOST 5; "
	              "elector_release() has no epoch and would end the elector's next term",
	              fx(FX_RELEASE) ? fx(FX_RELEASE)->flag : -1);
}
END_TEST

/* F6.  A JOB_KILL the runner cannot queue comes back as -EAGAIN; KILLING
 * takes any result as the end of the kill and follows: the watchdog is fed
 * although nothing was killed (selffence_failed is only set by job_kill). */
START_TEST(test_unqueued_kill_is_not_a_kill)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_LOST, 5, "renew deadline passed");
	tick_at(NOW + 2000 * MS);
	e = fx_job(JOB_KILL);
	ck_assert_ptr_nonnull(e);
	done(e, -EAGAIN); /* run_effects: "too many jobs queued; kill failed" */
	ck_assert_msg(sm_unconfirmed_demotion(&S),
	              "a kill that never ran leaves KILLING: state %s, watchdog fed",
	              sm_state_name(S.st));
}
END_TEST

/* F7.  EOF while DEMOTING counts as confirmation (gone() -> follow), but
 * RELEASING insists that "EOF alone is no proof".  A demoted service that
 * closes its socket and keeps its grant leaves the watchdog fed. */
START_TEST(test_eof_while_demoting_is_not_proof)
{
	to_master();
	simple(SE_LOST, 5, "renew deadline passed");
	simple(SE_GONE, 0, "EOF");
	ck_assert_msg(sm_unconfirmed_demotion(&S) || fx_job(JOB_CONFIRM_EXIT),
	              "EOF taken as the end of the demotion without a pidfd confirmation");
}
END_TEST

/* F8.  A claim that finds a pod of a newer term (role-epoch > ours) ends
 * our part in the term, but the Lease is kept: FOLLOWER with leading=true,
 * renewed forever, nothing promoted.  A role-epoch can exceed every future
 * epoch of ours when the Lease was deleted and recreated (leaseTransitions
 * restarts at 1): then no term ever promotes and no other node may take
 * over.  Releasing instead would bump the epoch and converge. */
START_TEST(test_superseded_claim_gives_the_lease_up)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, JOB_CLAIM_SUPERSEDED);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_msg(fx(FX_RELEASE) != NULL || !S.leading,
	              "superseded claim: the term is kept (leading, no release, no timer)");
}
END_TEST

/* F9.  A stop during a fence run: follow() emits FX_STOP_ELECTOR at once
 * (the Lease is released) while the fence job still runs on the worker;
 * the pipeline has no term check, so pod-delete / volume-detach / PREEMPT
 * against the victim go on after the release -- possibly into the
 * victim's own new term (it owes us a fence, we do not stop ours).  Before
 * the rewrite the release came after the run. */
START_TEST(test_stop_waits_for_the_running_fence)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	uint64_t id = e->job_id;
	simple(SE_SHUTDOWN, 0, "SIGTERM");
	ck_assert_msg(fx(FX_STOP_ELECTOR) == NULL,
	              "Lease released while fence job %llu of the term is still running",
	              (unsigned long long)id);
}
END_TEST

/* F11.  Probe mode claims the other pods before it finds its own: the pod
 * it leaves alone is the one FINDING found in an EARLIER term.  If that pod
 * was replaced by one with another name (a Deployment's), the old pod is
 * skipped by the claim and may keep a label our earlier term set (its
 * unlabel failed), while the new pod gets labelled: two pods selected. */
START_TEST(test_probe_claim_does_not_skip_a_stale_pod)
{
	const struct sm_effect *e;

	init_mode(SM_MODE_PROBE, true);
	simple(SE_HELLO, 0, NULL);
	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	e = fx_job(JOB_FIND_POD);
	struct sm_event ev = {.type = SE_JOB_DONE, .job = JOB_FIND_POD, .job_id = e->job_id};
	str_copy(ev.peer.pod, sizeof(ev.peer.pod), "web-old");
	feed(&ev);
	done(fx_job(JOB_LABEL), 0);
	simple(SE_LOST, 5, "renew deadline passed");
	started(6, "");
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert_msg(e->a[0] == 0, "term 6's claim leaves '%s' (found in term 5) alone", e->a);
}
END_TEST

/* ------------------------------------------- the runner's control socket */

static int gone_calls, hello_calls;
static void cb_hello(void *ud, const struct control_peer *p)
{
	(void)ud;
	(void)p;
	__atomic_add_fetch(&hello_calls, 1, __ATOMIC_SEQ_CST);
}
static void cb_gone(void *ud, const char *why)
{
	(void)ud;
	(void)why;
	__atomic_add_fetch(&gone_calls, 1, __ATOMIC_SEQ_CST);
}

static int client(const char *path, const char *pod)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char line[256];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(line, sizeof(line), "HELLO version=3 pod=%s uid=u pid=1 mono_us=%lld\n", pod,
	         (long long)clock_mono_usec());
	ck_assert_int_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	return fd;
}

static bool read_has(int fd, const char *what)
{
	char buf[4096];
	size_t used = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (used < sizeof(buf) - 1 && poll(&p, 1, 1000) > 0) {
		ssize_t n = read(fd, buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		buf[used] = 0;
		if (strstr(buf, what))
			return true;
	}
	return false;
}

/* A PROMOTE decided for service A (connection 1) never reaches B, which
 * connected after A's EOF (before, it did: the send had no notion of a
 * connection). */
START_TEST(test_promote_reaches_a_new_connection)
{
	static const struct control_callbacks cbs = {.hello = cb_hello, .gone = cb_gone};
	char path[108], err[256], dir[] = "/tmp/kf-orch-faults.XXXXXX";
	struct control *c = NULL;
	int a, b;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	ck_assert_int_eq(control_new(path, (uid_t)-1, "node-a", &cbs, NULL, &c, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(control_start(c), 0);
	a = client(path, "meta-a");
	ck_assert(read_has(a, "WELCOME"));
	close(a); /* A: EOF */
	for (int i = 0; i < 200 && __atomic_load_n(&gone_calls, __ATOMIC_SEQ_CST) < 1; i++)
		usleep(5000);
	b = client(path, "meta-a"); /* B */
	ck_assert(read_has(b, "WELCOME"));
	/* what run_effects does for FX_SEND_PROMOTE decided while A was the peer */
	ck_assert_int_eq(control_send_promote(c, 1, 5, (int64_t)clock_mono_usec() + 1000000),
	                 -ESTALE);
	ck_assert_msg(!read_has(b, "PROMOTE epoch=5"),
	              "PROMOTE epoch=5, decided for service A, was delivered to B");
	/* B's own (connection 2) goes through */
	ck_assert_int_eq(control_send_promote(c, 2, 6, (int64_t)clock_mono_usec() + 1000000), 0);
	ck_assert(read_has(b, "PROMOTE epoch=6"));
	close(b);
	control_free(c);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static const char *state_of(struct orchestrator *o, char *buf, size_t n)
{
	cJSON *j = orch_status_json(o);
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "state");
	str_copy(buf, n, cJSON_IsString(s) ? s->valuestring : "?");
	cJSON_Delete(j);
	return buf;
}

static bool wait_state(struct orchestrator *o, const char *want)
{
	char b[32];
	for (int i = 0; i < 100; i++) {
		if (strcmp(state_of(o, b, sizeof(b)), want) == 0)
			return true;
		usleep(10000);
	}
	return false;
}

/* A Lease deleted and recreated (or an etcd restored) counts its terms
 * from 1 again: the runner's sticky slots once dropped every term not above
 * the highest seen, so the elector held the Lease while the machine never
 * heard of the term. */
START_TEST(test_term_after_lease_recreated_is_acted_on)
{
	struct orch_options oo = {.node = "node-a",
	                          .selector = "app=x",
	                          .probe = "none",
	                          .service_namespace = "kf",
	                          .label_key = "role",
	                          .label_value = "master",
	                          .request_timeout_ms = 1000,
	                          .promote_timeout = 5 * USEC_PER_SEC,
	                          .demote_timeout = 2 * USEC_PER_SEC,
	                          .kill_timeout = USEC_PER_SEC,
	                          .fence_retry = USEC_PER_SEC};
	struct elector_params ep = {.namespace = "kf", .name = "lease", .request_timeout_ms = 1000};
	struct orchestrator *o = NULL;
	struct elector *el = NULL;
	const struct elector_callbacks *cb = orch_elector_callbacks();
	struct elector_term t = {.verdict = LEASE_FREE};
	char b[32];

	ck_assert_int_eq(orch_new(NULL, &oo, &o), 0);
	ck_assert_int_eq(elector_new(NULL, &ep, cb, o, &el), 0);
	orch_attach(o, el, NULL);
	ck_assert_int_eq(orch_start(o), 0);

	t.epoch = 57;
	t.valid_until = clock_mono_usec() + 10 * USEC_PER_SEC;
	cb->started_leading(o, &t);
	ck_assert(wait_state(o, "master"));
	cb->stopped_leading(o, 57, "renew deadline passed");
	ck_assert(wait_state(o, "follower"));

	/* the Lease was deleted and created again: epoch 1 */
	t.epoch = 1;
	t.valid_until = clock_mono_usec() + 10 * USEC_PER_SEC;
	cb->started_leading(o, &t);
	bool acted = wait_state(o, "master");
	ck_assert_msg(acted,
	              "term 1 (after epoch 57) never reached the machine: state %s "
	              "while the elector leads",
	              state_of(o, b, sizeof(b)));
	orch_shutdown(o, "test");
	elector_free(el);
	orch_free(o);
}
END_TEST

static Suite *review_suite(void)
{
	Suite *s = suite_create("orch_faults");
	TCase *tc = tcase_create("machine");
	TCase *rt = tcase_create("runner");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_started_while_demoting_keeps_the_demotion);
	tcase_add_test(tc, test_started_while_demoting_still_kills);
	tcase_add_test(tc, test_cancelled_fence_without_lost_is_not_a_dead_end);
	tcase_add_test(tc, test_cancelled_claim_without_lost_is_not_a_dead_end);
	tcase_add_test(tc, test_confirmed_dead_only_if_no_other_process_was_promoted);
	tcase_add_test(tc, test_started_while_master_demotes_first);
	tcase_add_test(tc, test_no_release_after_the_term_ended);
	tcase_add_test(tc, test_unqueued_kill_is_not_a_kill);
	tcase_add_test(tc, test_eof_while_demoting_is_not_proof);
	tcase_add_test(tc, test_superseded_claim_gives_the_lease_up);
	tcase_add_test(tc, test_stop_waits_for_the_running_fence);
	tcase_add_test(tc, test_probe_claim_does_not_skip_a_stale_pod);
	suite_add_tcase(s, tc);
	tcase_add_test(rt, test_promote_reaches_a_new_connection);
	tcase_add_test(rt, test_term_after_lease_recreated_is_acted_on);
	suite_add_tcase(s, rt);
	return s;
}

int main(void)
{
	static const struct kft_opts opts = {.fork = true};

	return kft_main(review_suite(), &opts);
}
