/* Unit tests of the orchestrator's transition function (nodeagent/orch_sm.c)
 * with an injected clock: every transition of a term, and each fault the
 * agent must survive — a lost acquire answer, a stop while a term start is
 * queued, a term that ends mid-fence, a fence that keeps failing, a service
 * that never answers, a pod that cannot be labelled, a job result that
 * arrives after its term. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing/pipeline.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/events.h"
#include "nodeagent/orch_sm.h"
#include "tests/lib/kftest.h"
#include "tests/unit/orch_rig.h"

static void hello(void)
{
	hello_as("meta-a", "uid-a", 4242, 1);
	ck_assert_uint_eq(FX.n, 0);
}

static void setup(void)
{
	init_mode(SM_MODE_CONTROL, true);
	hello();
}

START_TEST(test_term_to_master)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	ck_assert_int_eq(S.st, SM_FENCING);
	ck_assert_ptr_nonnull(fx_metric(SMM_LEADER));
	ck_assert_ptr_nonnull(fx(FX_TL_BEGIN));
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "node-b");
	ck_assert_int_eq(e->level, FENCE_LEVEL_EXPIRED);
	ck_assert_int_eq(e->epoch, 5);
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));

	NOW += 50 * MS;
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
	ck_assert_int_eq(fx(FX_FENCE_SETTLED)->epoch, 5);
	ck_assert(!fx(FX_FENCE_SETTLED)->flag); /* our service answers for this node */
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "meta-a"); /* our own pod is left alone */
	ck_assert_int_eq(S.st, SM_CLAIMING);

	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(fx(FX_SEND_PROMOTE)->epoch, 5);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	ck_assert_int_eq(sm_wake_at(&S), NOW + 5000 * MS);
	/* the label goes on with PROMOTE, while the service recovers */
	e = fx_job(JOB_LABEL);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "meta-a");
	ck_assert_str_eq(e->b, "uid-a");
	struct sm_effect label = *e;

	struct sm_event r = {.type = SE_READY, .epoch = 5};
	r.msg.epoch = 5;
	r.msg.records = 7;
	r.msg.recovery_ms = 3;
	NOW += 20 * MS;
	feed(&r);
	ck_assert_int_eq(S.st, SM_LABELLING); /* its PATCH not answered yet */
	ck_assert_ptr_null(fx_job(JOB_LABEL));

	NOW += 30 * MS;
	done(&label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	ck_assert_ptr_nonnull(fx_metric(SMM_PROMOTION));
	ck_assert_double_eq_tol(fx_metric(SMM_PROMOTION)->seconds, 0.1, 1e-9);
	ck_assert_ptr_nonnull(fx_event(EVENTS_PROMOTED));
	ck_assert_ptr_nonnull(strstr(fx_event(EVENTS_PROMOTED)->text, "recovered 7 records"));
	ck_assert_int_eq(S.promotions, 1);
	ck_assert(!sm_unconfirmed_demotion(&S));
}
END_TEST

/* A lost answer to the acquire: the next poll sees the Lease already ours,
 * so "the previous holder" is ourselves.  The duty comes from the Lease's
 * fence-owed, which names the expired holder: it is fenced all the same. */
START_TEST(test_duty_from_lease_not_previous)
{
	const struct sm_effect *e;

	struct sm_event ev = {.type = SE_STARTED, .epoch = 9, .at = NOW};
	ev.term.epoch = 9;
	ev.term.verdict = LEASE_OURS;
	str_copy(ev.term.previous.node, sizeof(ev.term.previous.node), "node-a");
	str_copy(ev.term.fence_owed, sizeof(ev.term.fence_owed), "node-a:expired,node-b:expired");
	feed(&ev);
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "node-b"); /* never ourselves */
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
}
END_TEST

START_TEST(test_two_victims_in_order)
{
	const struct sm_effect *e;

	started(5, "node-b:released,node-c:expired");
	e = fx_job(JOB_FENCE);
	ck_assert_str_eq(e->a, "node-b");
	ck_assert_int_eq(e->level, FENCE_LEVEL_RELEASED);
	done(e, 0);
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "node-c");
	ck_assert_int_eq(e->level, FENCE_LEVEL_EXPIRED);
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
}
END_TEST

START_TEST(test_nothing_owed)
{
	started(5, "");
	ck_assert_ptr_null(fx_job(JOB_FENCE));
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
	ck_assert_ptr_nonnull(fx_job(JOB_CLAIM));
}
END_TEST

START_TEST(test_no_method_configured)
{
	init_mode(SM_MODE_CONTROL, false);
	hello();
	started(5, "node-b:expired");
	ck_assert_ptr_null(fx_job(JOB_FENCE));
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
	bool said = false;
	for (size_t i = 0; i < FX.n; i++)
		if (FX.v[i].type == FX_TL_ADD && strstr(FX.v[i].text, "no method is configured"))
			said = true;
	ck_assert(said);
}
END_TEST

/* A fence that fails is retried every fence_retry, and the duty is never
 * settled (the Lease keeps it) until a run confirms. */
START_TEST(test_fence_retry)
{
	const struct sm_effect *e;
	uint64_t first;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	first = e->job_id;
	done(e, -EHOSTUNREACH);
	ck_assert_uint_eq(FX.n, 0);
	ck_assert_int_eq(S.st, SM_FENCING);
	ck_assert_int_eq(sm_wake_at(&S), NOW + 1000 * MS);
	tick_at(NOW + 999 * MS);
	ck_assert_ptr_null(fx_job(JOB_FENCE));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "node-b");
	ck_assert_uint_gt(e->job_id, first);
	/* the old run's late answer is not this run's */
	done_id(JOB_FENCE, first, 0);
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
}
END_TEST

/* The term ends while the fence runs: nothing is settled, nothing
 * promoted, and the run's answer — arriving afterwards — changes nothing. */
START_TEST(test_term_ends_mid_fence)
{
	const struct sm_effect *e;
	struct sm_effect fence;

	started(5, "node-b:expired");
	fence = *fx_job(JOB_FENCE);
	simple(SE_LOST, 5, "renewal failed");
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_ptr_nonnull(fx_metric(SMM_FOLLOWER));
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	ck_assert_ptr_null(fx(FX_RELEASE));
	done(&fence, 0);
	ck_assert_uint_eq(FX.n, 0);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	/* a later term of ours starts over from its own record */
	started(7, "node-b:expired");
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	done(&fence, 0); /* term 5's answer, once more */
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	ck_assert_int_eq(S.st, SM_FENCING);
}
END_TEST

/* SIGTERM arrives while the start of a term is still queued (the stop is
 * handed out first): the term is not acted on, its duty stays in the Lease
 * for whoever holds it next. */
START_TEST(test_stop_before_queued_start)
{
	simple(SE_SHUTDOWN, 0, "SIGTERM");
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_str_eq(fx(FX_STOP_ELECTOR)->text, "SIGTERM");
	ck_assert_ptr_null(fx_event(EVENTS_RELEASED)); /* we did not lead */
	ck_assert_int_eq(S.st, SM_STOPPED);
	started(5, "node-b:expired");
	ck_assert_ptr_null(fx_job(JOB_FENCE));
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	ck_assert_uint_eq(FX.n, 0);
	simple(SE_LOST, 5, "released");
	ck_assert_uint_eq(FX.n, 0);
}
END_TEST

/* A stop while a failing fence waits for its retry is acted on at once. */
START_TEST(test_stop_during_fence_retry)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	done(e, -EIO);
	simple(SE_SHUTDOWN, 0, "SIGTERM");
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_ptr_nonnull(fx_event(EVENTS_RELEASED));
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	ck_assert_ptr_null(fx(FX_SEND_DEMOTE)); /* nothing was promoted */
	ck_assert_int_eq(S.st, SM_STOPPED);
	ck_assert_int_eq(sm_wake_at(&S), USEC_INFINITY);
}
END_TEST

/* An orderly stop of a master: DEMOTE, unlabel, and only once the service
 * confirmed, the release (with a Released Event). */
START_TEST(test_stop_master_confirmed)
{
	to_master();
	NOW += USEC_PER_SEC;
	simple(SE_SHUTDOWN, 0, "agent stopped");
	ck_assert_ptr_nonnull(fx(FX_SEND_DEMOTE));
	ck_assert_int_eq(fx(FX_SEND_DEMOTE)->epoch, 5);
	ck_assert_ptr_nonnull(fx_metric(SMM_DEMOTION));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx(FX_STOP_ELECTOR));
	ck_assert_int_eq(S.st, SM_DEMOTING);
	ck_assert(sm_unconfirmed_demotion(&S));
	NOW += 40 * MS;
	simple(SE_DEMOTED, 5, NULL);
	ck_assert_ptr_null(fx_metric(SMM_DEMOTION)); /* counted once, at the stop */
	ck_assert_ptr_nonnull(fx_event(EVENTS_DEMOTED));
	ck_assert_ptr_nonnull(strstr(fx_event(EVENTS_DEMOTED)->text, "40 ms"));
	ck_assert_ptr_nonnull(fx_event(EVENTS_RELEASED));
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_int_eq(S.st, SM_STOPPED);
}
END_TEST

/* A master that does not answer the stop's DEMOTE is killed (confirmed)
 * before the Lease is released. */
START_TEST(test_stop_master_unanswered_kill)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_SHUTDOWN, 0, "agent stopped");
	tick_at(NOW + 1999 * MS);
	ck_assert_ptr_null(fx_job(JOB_KILL));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_KILL);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->pid, 4242);
	ck_assert_int_eq(S.st, SM_KILLING);
	ck_assert(sm_unconfirmed_demotion(&S));
	ck_assert_ptr_null(fx(FX_STOP_ELECTOR));
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_int_eq(S.st, SM_STOPPED);
}
END_TEST

/* The term ends while master: unlabel, wait for DEMOTED (DEMOTE itself
 * went out from the elector's callback); no release (nothing to release). */
START_TEST(test_lost_as_master)
{
	to_master();
	simple(SE_LOST, 5, "renewal failed");
	ck_assert_ptr_nonnull(fx_metric(SMM_DEMOTION));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_ptr_null(fx(FX_SEND_DEMOTE));
	ck_assert_int_eq(S.st, SM_DEMOTING);
	simple(SE_DEMOTED, 4, NULL); /* an older term's answer */
	ck_assert_int_eq(S.st, SM_DEMOTING);
	simple(SE_DEMOTED, 5, NULL);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_int_eq(S.demotions, 1);
	ck_assert_ptr_null(fx(FX_STOP_ELECTOR));
}
END_TEST

START_TEST(test_lost_as_master_no_answer)
{
	to_master();
	simple(SE_LOST, 5, "renewal failed");
	tick_at(NOW + 2000 * MS);
	ck_assert_ptr_nonnull(fx_job(JOB_KILL));
	ck_assert_int_eq(S.st, SM_KILLING);
	/* a stop meanwhile waits for the kill's answer */
	simple(SE_SHUTDOWN, 0, "SIGTERM");
	ck_assert_ptr_null(fx(FX_STOP_ELECTOR));
	done_id(JOB_KILL, S.wait_job, -ESRCH);
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_int_eq(S.st, SM_STOPPED);
}
END_TEST

/* EOF while demoting is no proof: the exit is awaited, then a kill if it
 * did not come. */
START_TEST(test_gone_while_demoting)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_LOST, 5, "renewal failed");
	simple(SE_GONE, 0, "EOF");
	e = fx_job(JOB_CONFIRM_EXIT);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(S.st, SM_DEMOTING);
	ck_assert(sm_unconfirmed_demotion(&S));
	done(e, 0);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_int_eq(sm_wake_at(&S), USEC_INFINITY); /* no kill pending */

	/* the same, but the process does not exit: killed */
	hello();
	to_master();
	simple(SE_LOST, 5, "renewal failed");
	simple(SE_GONE, 0, "EOF");
	done(fx_job(JOB_CONFIRM_EXIT), -ETIMEDOUT);
	ck_assert_ptr_nonnull(fx_job(JOB_KILL));
	ck_assert_int_eq(S.st, SM_KILLING);
}
END_TEST

/* The service goes away while master: the release says "confirmed dead"
 * only when its process was seen to exit. */
START_TEST(test_gone_confirmed_dead)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_GONE, 0, "EOF");
	e = fx_job(JOB_CONFIRM_EXIT);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->pid, 4242);
	ck_assert_int_eq(e->timeout, 300 * MS);
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_int_eq(S.st, SM_RELEASING);
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(fx(FX_RELEASE)->flag);
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_nonnull(fx_event(EVENTS_RELEASED));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

START_TEST(test_gone_not_confirmed)
{
	const struct sm_effect *e;

	to_master();
	simple(SE_GONE, 0, "EOF");
	e = fx_job(JOB_CONFIRM_EXIT);
	done(e, -ETIMEDOUT);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag); /* the successor runs the full fence */
}
END_TEST

/* The service dies while our fence keeps failing: the term is given up at
 * once (nobody here to promote), not after the fence succeeds. */
START_TEST(test_gone_during_fence)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	done(e, -EIO);
	simple(SE_GONE, 0, "EOF");
	e = fx_job(JOB_CONFIRM_EXIT);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED)); /* the duty stays owed */
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	tick_at(NOW + 5000 * MS);
	ck_assert_ptr_null(fx_job(JOB_FENCE)); /* no retry after the term */
}
END_TEST

/* PROMOTE unanswered: DEMOTE, release (full fence for the successor), and
 * the death or the DEMOTED is still awaited. */
START_TEST(test_promote_timeout)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	tick_at(NOW + 4999 * MS);
	ck_assert_uint_eq(FX.n, 0);
	tick_at(NOW + 1 * MS);
	ck_assert_ptr_nonnull(fx(FX_SEND_DEMOTE));
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag);
	ck_assert_int_eq(S.st, SM_DEMOTING);
	/* a READY that comes after is not a promotion */
	ready(5, 0);
	ck_assert_ptr_null(fx_job(JOB_LABEL));
}
END_TEST

START_TEST(test_promote_unsent)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	simple(SE_PROMOTE_UNSENT, 5, NULL);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

START_TEST(test_promotion_refused)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	simple(SE_FAILED, 5, "a newer epoch holds the volume");
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag);
	ck_assert_ptr_nonnull(strstr(fx(FX_RELEASE)->text, "promotion failed"));
	ck_assert_ptr_nonnull(fx_event(EVENTS_DEMOTED));
	ck_assert_ptr_nonnull(fx_metric(SMM_DEMOTION));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL)); /* the label put on with PROMOTE */
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* A master whose service steps down by itself (its store failed a write:
 * the target restarted, its path broke) keeps its term: the claim runs
 * again with the registration check's rule (flag), then PROMOTE in the same
 * epoch; the pod keeps its label, nothing is released.  A second step-down
 * within SM_REPROMOTE_INTERVAL ends the term as before. */
START_TEST(test_master_steps_down)
{
	const struct sm_effect *e;
	uint64_t label;
	usec_t t_down;

	to_master();
	simple(SE_FAILED, 4, "old"); /* another term's */
	ck_assert_uint_eq(FX.n, 1);  /* only a log line */
	ck_assert_int_eq(S.st, SM_MASTER);
	t_down = NOW;
	simple(SE_FAILED, 5, "sync failed; the store accepts no more writes");
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_ptr_null(fx_job(JOB_UNLABEL));
	ck_assert_ptr_nonnull(fx_event(EVENTS_DEMOTED));
	ck_assert_ptr_nonnull(fx_metric(SMM_DEMOTION));
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert(e->flag); /* again: the keep rule on the LUNs */
	ck_assert_int_eq(e->epoch, 5);
	ck_assert_int_eq(S.st, SM_CLAIMING);
	/* a failed claim is retried with the same rule */
	done(e, -EAGAIN);
	tick_at(NOW + 200 * MS);
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert(e->flag);
	done(e, 0);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	e = fx(FX_SEND_PROMOTE);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->epoch, 5); /* the same term */
	label = fx_job(JOB_LABEL)->job_id;
	ready(5, 9);
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	/* again within the interval: the term ends, the label comes off */
	NOW = t_down + SM_REPROMOTE_INTERVAL - 1 * MS;
	simple(SE_FAILED, 5, "sync failed; the store accepts no more writes");
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx_job(JOB_CLAIM));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* Once the interval has passed, a step-down is promoted again once more;
 * the next term starts the count afresh. */
START_TEST(test_repromote_after_the_interval)
{
	usec_t t_ready2;

	to_master();
	simple(SE_FAILED, 5, "sync failed");
	done(fx_job(JOB_CLAIM), 0);
	{
		uint64_t label = fx_job(JOB_LABEL)->job_id;
		NOW += 300 * MS;
		t_ready2 = NOW;
		ready(5, 1);
		done_id(JOB_LABEL, label, 0);
	}
	ck_assert_int_eq(S.st, SM_MASTER);
	NOW += SM_REPROMOTE_INTERVAL;
	simple(SE_FAILED, 5, "sync failed");
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_ptr_nonnull(fx_job(JOB_CLAIM));
	/* the claim of the second round names the second open's READY */
	ck_assert_int_eq(fx_job(JOB_CLAIM)->at, t_ready2);
	ck_assert_int_eq(S.st, SM_CLAIMING);
}
END_TEST

/* The claim finds our key removed where others are registered: a fence;
 * the term ends (released), and the label we kept comes off. */
START_TEST(test_repromote_finds_a_fence)
{
	to_master();
	simple(SE_FAILED, 5, "the storage refused a write (RESERVATION CONFLICT)");
	done(fx_job(JOB_CLAIM), JOB_CLAIM_FENCED);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert_ptr_nonnull(strstr(fx(FX_RELEASE)->text, "fenced"));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* The claim finds that the old open may still write (the target kept its
 * state since READY, the store is no LUN of ours, the term rides through):
 * released as a step-down always was, the label off; the claim was told
 * when the store's open was READY. */
START_TEST(test_repromote_not_lost)
{
	const struct sm_effect *e;
	usec_t t_ready;
	uint64_t label;

	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	label = fx_job(JOB_LABEL)->job_id;
	NOW += 700 * MS; /* the recovery: READY comes later than the term began */
	t_ready = NOW;
	ready(5, 3);
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	NOW += 5000 * MS;
	simple(SE_FAILED, 5, "sync failed");
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->at, t_ready); /* READY's time, not the term's start */
	ck_assert_int_ne(e->at, S.origin);
	/* a retry of the claim carries it too */
	done(e, -EAGAIN);
	tick_at(NOW + 200 * MS);
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->at, t_ready);
	done(e, JOB_CLAIM_NOT_LOST);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag);
	ck_assert_ptr_nonnull(strstr(fx(FX_RELEASE)->text, "sync failed"));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_int_eq(S.demotions, 1);
}
END_TEST

/* A claim that keeps failing (the store's LUN does not answer: a path
 * that broke) is given up after SM_REPROMOTE_CLAIM_MAX: released as a
 * step-down always was, not held idle until fence_give_up. */
START_TEST(test_repromote_claim_gives_up)
{
	usec_t t0;

	to_master();
	simple(SE_FAILED, 5, "sync failed");
	t0 = NOW;
	done(fx_job(JOB_CLAIM), -EAGAIN);
	ck_assert_int_eq(S.st, SM_CLAIMING);
	tick_at(t0 + SM_REPROMOTE_CLAIM_MAX - 1 * MS);
	done(fx_job(JOB_CLAIM), -EAGAIN);
	ck_assert_int_eq(S.st, SM_CLAIMING);
	ck_assert_ptr_null(fx(FX_RELEASE));
	tick_at(t0 + SM_REPROMOTE_CLAIM_MAX + 200 * MS); /* the next try (claim retry) */
	ck_assert_ptr_nonnull(fx_job(JOB_CLAIM));
	done(fx_job(JOB_CLAIM), -EAGAIN);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* The term ends while the service is promoted again — during the claim
 * (_i 0) or the recovery (_i 1): the label it kept comes off, as an early
 * label's does. */
START_TEST(test_repromote_term_ends)
{
	to_master();
	simple(SE_FAILED, 5, "sync failed");
	ck_assert_int_eq(S.st, SM_CLAIMING);
	if (_i == 1) {
		done(fx_job(JOB_CLAIM), 0);
		ck_assert_int_eq(S.st, SM_PROMOTING);
	}
	simple(SE_LOST, 5, "renewal failed");
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_int_eq(S.st, _i == 0 ? SM_FOLLOWER : SM_DEMOTING);
}
END_TEST

/* Failed promotions in a row keep this node out of the race for a while,
 * doubling, up to 30 s; one that completes clears it. */
START_TEST(test_failed_promotions_back_off)
{
	const struct sm_effect *e;

	ck_assert_int_eq(sm_failure_backoff(1), 500 * MS);
	ck_assert_int_eq(sm_failure_backoff(2), 1000 * MS);
	ck_assert_int_eq(sm_failure_backoff(4), 4000 * MS);
	ck_assert_int_eq(sm_failure_backoff(100), 8000 * MS);
	ck_assert_int_eq(S.candidate_after, 0);
	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	simple(SE_FAILED, 5, "cannot write the epoch barrier");
	ck_assert_int_eq(S.failures, 1);
	ck_assert_int_eq(S.candidate_after, NOW + 500 * MS);
	NOW += 600 * MS;
	started(6, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	simple(SE_FAILED, 6, "cannot write the epoch barrier");
	ck_assert_int_eq(S.failures, 2);
	ck_assert_int_eq(S.candidate_after, NOW + 1000 * MS);
	NOW += 61000 * MS; /* a minute later the count starts again */
	started(7, "");
	e = fx_job(JOB_CLAIM);
	done(e, 0);
	simple(SE_FAILED, 7, "cannot write the epoch barrier");
	ck_assert_int_eq(S.failures, 1);
	NOW += 1100 * MS;
	to_master();
	ck_assert_int_eq(S.failures, 0);
	ck_assert_int_eq(S.candidate_after, 0);
}
END_TEST

START_TEST(test_label_transient_retry)
{
	const struct sm_effect *e;
	uint64_t id;

	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	id = fx_job(JOB_LABEL)->job_id;
	ready(5, 0);
	done_id(JOB_LABEL, id, -EIO);
	ck_assert_int_eq(S.st, SM_LABELLING);
	ck_assert_int_eq(sm_wake_at(&S), NOW + 100 * MS);
	tick_at(NOW + 100 * MS);
	e = fx_job(JOB_LABEL);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
}
END_TEST

/* The pod was replaced (uid precondition) or claimed by a newer term: the
 * promoted service is demoted, the Lease released, never retried forever. */
START_TEST(test_label_fatal)
{
	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	uint64_t id = fx_job(JOB_LABEL)->job_id;
	ready(5, 0);
	done_id(JOB_LABEL, id, -ESTALE);
	ck_assert(S.pod_unusable); /* no candidate until the pod connects anew */
	ck_assert_ptr_nonnull(fx(FX_SEND_DEMOTE));
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag);
	ck_assert_int_eq(S.st, SM_DEMOTING);
	simple(SE_DEMOTED, 5, NULL);
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert(S.pod_unusable);
	hello(); /* the replacement pod's service */
	ck_assert(!S.pod_unusable);
}
END_TEST

START_TEST(test_claim_superseded_and_retry)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	done(e, -EIO);
	ck_assert_int_eq(S.st, SM_CLAIMING);
	tick_at(NOW + 200 * MS);
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	done(e, JOB_CLAIM_SUPERSEDED);
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

START_TEST(test_no_service_at_promotion)
{
	const struct sm_effect *e;

	started(5, "");
	e = fx_job(JOB_CLAIM);
	simple(SE_GONE, 0, "EOF"); /* gone while claiming: releasing */
	ck_assert_int_eq(S.st, SM_RELEASING);
	done(e, 0); /* the claim's answer is no longer awaited */
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
}
END_TEST

/* agent.fence_without_service: a term that began with no service of ours
 * connected fences what the Lease owes, removes the label from the old
 * master's pod, and is released saying it promoted nothing. */
START_TEST(test_fence_only_term)
{
	const struct sm_effect *e;

	init_mode(SM_MODE_CONTROL, true);
	started(5, "node-b:expired");
	ck_assert(S.fence_only);
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "node-b");
	ck_assert_int_eq(e->level, FENCE_LEVEL_EXPIRED);
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
	ck_assert(fx(FX_FENCE_SETTLED)->flag); /* our own node's entry stays */
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, ""); /* no pod of ours to spare */
	done(e, 0);
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	e = fx(FX_RELEASE);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->epoch, 5);
	ck_assert_int_eq(e->code, ELECTOR_RELEASE_UNPROMOTED);
	ck_assert(!e->flag);
	ck_assert_ptr_nonnull(strstr(e->text, "nothing promoted"));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert(!S.fence_only);
	ck_assert_int_eq(S.promotions, 0);
	ck_assert_int_eq(S.demotions, 0);
}
END_TEST

/* The replacement connects while the fence-only term fences: it is
 * promoted in that term, as in any other. */
START_TEST(test_fence_only_term_service_arrives)
{
	const struct sm_effect *e;

	init_mode(SM_MODE_CONTROL, true);
	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	hello_as("meta-0", "uid-new", 4343, 1);
	done(e, 0);
	e = fx_job(JOB_CLAIM);
	ck_assert_str_eq(e->a, "meta-0");
	done(e, 0);
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_ptr_nonnull(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_PROMOTING);
}
END_TEST

/* A term with a service connected is never released as unpromoted, even
 * when the service goes away before PROMOTE: its exit is confirmed first
 * (RELEASING), as before. */
START_TEST(test_term_with_service_is_not_fence_only)
{
	started(5, "");
	ck_assert(!S.fence_only);
	simple(SE_GONE, 0, "EOF");
	ck_assert_int_eq(S.st, SM_RELEASING);
	ck_assert(fx(FX_RELEASE) == NULL || fx(FX_RELEASE)->code != ELECTOR_RELEASE_UNPROMOTED);
}
END_TEST

/* The out-of-service taint: lifted at start, retried while the API fails,
 * and again whenever a term (or a demotion) ends. */
START_TEST(test_untaint_at_start_and_after_terms)
{
	const struct sm_effect *e;
	struct sm_config c = S.cfg;

	c.untaint = true;
	c.untaint_retry = 2000 * MS;
	c.untaint_recheck = 10000 * MS;
	sm_init(&S, &c);
	ck_assert_int_eq(sm_wake_at(&S), 0); /* at once */
	tick_at(NOW);
	e = fx_job(JOB_UNTAINT);
	ck_assert_ptr_nonnull(e);
	tick_at(NOW + 10 * MS); /* one at a time */
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
	done(e, -ETIMEDOUT);
	ck_assert_int_eq(sm_wake_at(&S) <= NOW + 2000 * MS, 1);
	tick_at(NOW + 1999 * MS);
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_UNTAINT);
	ck_assert_ptr_nonnull(e);
	done(e, 1); /* not tainted */
	tick_at(NOW + 5000 * MS);
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
	/* another node may taint us later: a look every untaint_recheck */
	tick_at(NOW + 5000 * MS);
	e = fx_job(JOB_UNTAINT);
	ck_assert_ptr_nonnull(e);
	done(e, 1);

	hello();
	started(6, "");
	tick_at(NOW + 10 * MS); /* not while leading */
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
	simple(SE_LOST, 6, "renew deadline passed");
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	tick_at(NOW);
	ck_assert_ptr_nonnull(fx_job(JOB_UNTAINT));
}
END_TEST

START_TEST(test_no_untaint_unless_configured)
{
	tick_at(NOW);
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
	started(6, "");
	simple(SE_LOST, 6, "renew deadline passed");
	tick_at(NOW);
	ck_assert_ptr_null(fx_job(JOB_UNTAINT));
}
END_TEST

/* A fence that keeps failing for agent.fence_give_up_ms: the term is
 * released with the duty still on the Lease (nothing settled), as one that
 * promoted nothing, and this node sits out the failure backoff. */
START_TEST(test_fence_given_up)
{
	const struct sm_effect *e;
	struct sm_config c = S.cfg;

	c.fence_give_up = 5000 * MS;
	sm_init(&S, &c);
	hello();
	started(5, "node-b:expired");
	for (int i = 0; i < 3; i++) { /* runs failing at 0.5, 2.0, 3.5 s */
		e = fx_job(JOB_FENCE);
		ck_assert_ptr_nonnull(e);
		NOW += 500 * MS;
		done(e, -EIO);
		ck_assert_ptr_null(fx(FX_RELEASE));
		ck_assert_int_eq(S.st, SM_FENCING);
		tick_at(NOW + 1000 * MS);
	}
	/* the fourth fails at 5.1 s, past the 5 s */
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	NOW += 600 * MS;
	done(e, -EIO);
	e = fx(FX_RELEASE);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->code, ELECTOR_RELEASE_UNPROMOTED);
	ck_assert_ptr_nonnull(strstr(e->text, "could not fence 'node-b'"));
	ck_assert_ptr_null(fx(FX_FENCE_SETTLED));
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_int_eq(S.candidate_after, NOW + sm_failure_backoff(1));
	ck_assert_int_eq(sm_failure_backoff(1), 500 * MS);
}
END_TEST

/* A claim that keeps failing (the other pods' labels, the LUN
 * registration) for agent.fence_give_up_ms is given up as a fence is: the
 * term is released as one that promoted nothing, PROMOTE never sent, and
 * this node sits out the failure backoff.  Before, it held the Lease and
 * retried for ever. */
START_TEST(test_claim_given_up)
{
	const struct sm_effect *e;
	struct sm_config c = S.cfg;

	c.fence_give_up = 5000 * MS;
	sm_init(&S, &c);
	hello();
	started(5, "");
	for (int i = 0; i < 3; i++) {
		e = fx_job(JOB_CLAIM);
		ck_assert_ptr_nonnull(e);
		NOW += 500 * MS;
		done(e, -EAGAIN);
		ck_assert_ptr_null(fx(FX_RELEASE));
		ck_assert_int_eq(S.st, SM_CLAIMING);
		tick_at(NOW + c.claim_retry);
	}
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	NOW += 5000 * MS;
	done(e, -EAGAIN);
	e = fx(FX_RELEASE);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->code, ELECTOR_RELEASE_UNPROMOTED);
	ck_assert_ptr_nonnull(strstr(e->text, "could not claim the term"));
	ck_assert_ptr_null(fx(FX_SEND_PROMOTE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_int_eq(S.candidate_after, NOW + sm_failure_backoff(1));
}
END_TEST

/* A cancelled run (the term is ending) never counts as a give-up. */
START_TEST(test_fence_cancel_is_no_give_up)
{
	const struct sm_effect *e;
	struct sm_config c = S.cfg;

	c.fence_give_up = 1000 * MS;
	sm_init(&S, &c);
	hello();
	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	NOW += 2000 * MS;
	done(e, JOB_CANCELLED);
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_int_eq(S.st, SM_FENCING);
}
END_TEST

START_TEST(test_mode_none)
{
	init_mode(SM_MODE_NONE, true);
	started(5, "");
	ck_assert_ptr_nonnull(fx(FX_FENCE_SETTLED));
	ck_assert_ptr_null(fx_job(JOB_CLAIM));
	ck_assert_int_eq(S.st, SM_MASTER);
	simple(SE_LOST, 5, "x");
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	ck_assert_ptr_null(fx_job(JOB_UNLABEL));
}
END_TEST

START_TEST(test_mode_probe)
{
	const struct sm_effect *e;

	init_mode(SM_MODE_PROBE, true);
	simple(SE_HELLO, 0, NULL);
	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	e = fx_job(JOB_FIND_POD);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(S.st, SM_FINDING);
	struct sm_event ev = {.type = SE_JOB_DONE, .job = JOB_FIND_POD, .job_id = e->job_id};
	str_copy(ev.peer.pod, sizeof(ev.peer.pod), "web-0");
	str_copy(ev.peer.uid, sizeof(ev.peer.uid), "uid-w");
	feed(&ev);
	e = fx_job(JOB_LABEL);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, "web-0");
	done(e, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	/* the probe fails: there is no process to confirm, so no "dead" */
	simple(SE_GONE, 0, "probe failed");
	e = fx_job(JOB_CONFIRM_EXIT);
	ck_assert_ptr_nonnull(e);
	done(e, -ESRCH);
	ck_assert(!fx(FX_RELEASE)->flag);
}
END_TEST

START_TEST(test_tell_master)
{
	const struct sm_effect *e;

	tick_at(NOW);
	e = fx_job(JOB_TELL_MASTER);
	ck_assert_ptr_nonnull(e);
	tick_at(NOW + 2000 * MS);
	ck_assert_ptr_null(fx_job(JOB_TELL_MASTER)); /* the last one still runs */
	done(e, 0);
	tick_at(NOW + 1 * MS);
	ck_assert_ptr_nonnull(fx_job(JOB_TELL_MASTER));
}
END_TEST

/* The index of the first job j among the last step's effects; -1 none. */
static int job_index(enum sm_job j)
{
	for (size_t i = 0; i < FX.n; i++)
		if (FX.v[i].type == FX_JOB && FX.v[i].job == j)
			return (int)i;
	return -1;
}

/* service.endpoints: a term moves the Service's route to its pod first,
 * before its fence (queued ahead of it); the master then checks its route
 * every route_check, one check at a time, with its pod and term, and only
 * while it is the master. */
START_TEST(test_route_check_while_master)
{
	const struct sm_effect *e;
	struct sm_config c = S.cfg;

	c.route_check = 5000 * MS;
	sm_init(&S, &c);
	hello();
	tick_at(NOW + 10000 * MS); /* a follower has no route to check */
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
	started(5, "node-b:expired");
	e = fx_job(JOB_ROUTE);
	ck_assert_ptr_nonnull(e);
	ck_assert(e->flag); /* the term's first */
	ck_assert_int_eq(e->epoch, 5);
	ck_assert_int_ge(job_index(JOB_FENCE), 0);
	ck_assert_int_lt(job_index(JOB_ROUTE), job_index(JOB_FENCE));
	ck_assert_int_eq(S.st, SM_FENCING); /* the fence waits for nothing of it */
	uint64_t fence = fx_job(JOB_FENCE)->job_id;
	done(e, -ETIMEDOUT); /* a failed route is no failed term */
	ck_assert_int_eq(S.st, SM_FENCING);
	done_id(JOB_FENCE, fence, 0);
	done(fx_job(JOB_CLAIM), 0);
	e = fx_job(JOB_LABEL); /* which routes again */
	ck_assert_ptr_nonnull(e);
	uint64_t label = e->job_id;
	ready(5, 7);
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	tick_at(NOW + 999 * MS); /* the first check a second after MASTER */
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_ROUTE);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->a, S.peer.pod);
	ck_assert_str_eq(e->b, S.peer.uid);
	ck_assert_int_eq(e->epoch, 5);
	ck_assert(!e->flag);
	tick_at(NOW + 6000 * MS);
	ck_assert_ptr_null(fx_job(JOB_ROUTE)); /* the last one still runs */
	done(e, -ETIMEDOUT);
	ck_assert_int_eq(S.st, SM_MASTER); /* a failed check is no end of term */
	tick_at(NOW + 999 * MS);           /* and is tried again within a second */
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_ROUTE);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	tick_at(NOW + 4999 * MS); /* after a success, route_check again */
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
	tick_at(NOW + 1 * MS);
	e = fx_job(JOB_ROUTE);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	simple(SE_LOST, 5, "renew deadline passed");
	tick_at(NOW + 10000 * MS);
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
}
END_TEST

START_TEST(test_no_route_check_unless_configured)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	ck_assert_ptr_null(fx_job(JOB_ROUTE));
	done(fx_job(JOB_FENCE), 0);
	done(fx_job(JOB_CLAIM), 0);
	e = fx_job(JOB_LABEL);
	ck_assert_ptr_nonnull(e);
	uint64_t label = e->job_id;
	ready(5, 7);
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
	for (int i = 0; i < 5; i++) {
		tick_at(NOW + 5000 * MS);
		ck_assert_ptr_null(fx_job(JOB_ROUTE));
	}
}
END_TEST

/* A stop during a demotion of a lost term: the demotion finishes first. */
START_TEST(test_stop_while_demoting)
{
	to_master();
	simple(SE_LOST, 5, "taken");
	simple(SE_SHUTDOWN, 0, "SIGTERM");
	ck_assert_ptr_null(fx(FX_STOP_ELECTOR));
	ck_assert_ptr_null(fx(FX_SEND_DEMOTE)); /* sent already */
	simple(SE_DEMOTED, 5, NULL);
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert_ptr_null(fx_event(EVENTS_RELEASED)); /* the term had ended */
	ck_assert_int_eq(S.st, SM_STOPPED);
}
END_TEST

/* ---- the liveness exchange ---- */

static void setup_ping(void)
{
	S.cfg.heartbeat = 200 * MS;
	S.cfg.heartbeat_timeout = 1000 * MS;
	hello(); /* the first PING is due at once */
}

static void pong(uint64_t seq)
{
	struct sm_event ev = {.type = SE_PONG, .seq = seq};
	feed(&ev);
}

START_TEST(test_ping_answered)
{
	usec_t t0;

	setup_ping();
	t0 = NOW;
	ck_assert_int_le(sm_wake_at(&S), t0);
	tick_at(t0);
	ck_assert_ptr_nonnull(fx(FX_SEND_PING));
	ck_assert_uint_eq(fx(FX_SEND_PING)->seq, 1);
	NOW = t0 + 5 * MS;
	pong(1);
	ck_assert_int_eq(sm_wake_at(&S) <= t0 + 200 * MS, 1);
	for (int i = 1; i <= 20; i++) {
		tick_at(t0 + i * 200 * MS);
		ck_assert_ptr_nonnull(fx(FX_SEND_PING));
		ck_assert_ptr_null(fx_job(JOB_KILL));
		NOW += 10 * MS;
		pong(fx(FX_SEND_PING) ? (uint64_t)(i + 1) : 0);
	}
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* SIGSTOP of a master: its socket stays open, no EOF, no PONG.  After
 * heartbeat_timeout it is killed (death confirmed by the job), DEMOTE goes
 * out in case it wakes first, the label comes off, and the Lease is
 * released for the full fence. */
START_TEST(test_hung_master_killed_and_released)
{
	const struct sm_effect *e;
	usec_t t0;

	to_master();
	setup_ping();
	t0 = NOW;
	tick_at(t0); /* PING 1, never answered */
	for (int i = 1; i < 5; i++) {
		tick_at(t0 + i * 200 * MS);
		ck_assert_ptr_null(fx_job(JOB_KILL));
	}
	tick_at(t0 + 999 * MS);
	ck_assert_ptr_null(fx_job(JOB_KILL));
	ck_assert_int_eq(sm_wake_at(&S), t0 + 1000 * MS);
	tick_at(t0 + 1000 * MS);
	e = fx_job(JOB_KILL);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->pid, 4242);
	ck_assert_ptr_nonnull(fx(FX_SEND_DEMOTE));
	ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
	ck_assert_ptr_nonnull(fx_metric(SMM_DEMOTION));
	ck_assert_ptr_null(fx(FX_RELEASE)); /* not before the death is known */
	ck_assert_int_eq(S.st, SM_KILLING);
	ck_assert(sm_unconfirmed_demotion(&S));
	tick_at(t0 + 1400 * MS);
	ck_assert_ptr_null(fx(FX_SEND_PING)); /* no PING to a service being killed */
	done(e, 0);
	ck_assert_ptr_nonnull(fx(FX_RELEASE));
	ck_assert(!fx(FX_RELEASE)->flag); /* a kill is no orderly stop: full fence */
	ck_assert_ptr_nonnull(strstr(fx(FX_RELEASE)->text, "hung"));
	ck_assert_ptr_nonnull(fx_event(EVENTS_RELEASED));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
	simple(SE_GONE, 0, "EOF"); /* the killed process's socket closes */
	ck_assert_ptr_null(fx(FX_RELEASE));
}
END_TEST

/* A hung standby is killed too (its pod restarts), with nothing to release. */
START_TEST(test_hung_standby_killed)
{
	const struct sm_effect *e;

	setup_ping();
	tick_at(NOW);
	tick_at(NOW + 1000 * MS);
	e = fx_job(JOB_KILL);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_int_eq(S.st, SM_FOLLOWER);
}
END_TEST

/* An answer to an older PING does not clear the clock of the later ones
 * (counted from the last one sent: never a kill too early). */
START_TEST(test_old_pong_keeps_clock)
{
	usec_t t0;

	setup_ping();
	t0 = NOW;
	tick_at(t0);            /* PING 1 */
	tick_at(t0 + 200 * MS); /* PING 2 */
	NOW = t0 + 300 * MS;
	pong(1);
	tick_at(t0 + 1100 * MS); /* PINGs 3..; 2 unanswered since +200 */
	ck_assert_ptr_null(fx_job(JOB_KILL));
	tick_at(t0 + 1200 * MS);
	ck_assert_ptr_nonnull(fx_job(JOB_KILL));
}
END_TEST

/* A new connection starts a fresh exchange. */
START_TEST(test_reconnect_resets_clock)
{
	usec_t t0;

	setup_ping();
	t0 = NOW;
	tick_at(t0);
	NOW = t0 + 900 * MS;
	simple(SE_GONE, 0, "EOF");
	hello();
	tick_at(t0 + 1100 * MS);
	ck_assert_ptr_nonnull(fx(FX_SEND_PING));
	ck_assert_ptr_null(fx_job(JOB_KILL));
	tick_at(t0 + 2099 * MS);
	ck_assert_ptr_null(fx_job(JOB_KILL));
}
END_TEST

/* agent.on_sigterm = keep: a master's stop says nothing to the service,
 * removes no label and releases nothing: the next incarnation continues. */
/* The agent's own stall is not the service's silence: a TICK that says
 * the agent did not run starts the measure again (its PONG may still be
 * on the way). */
START_TEST(test_own_stall_is_no_hang)
{
	usec_t t0;

	to_master();
	setup_ping();
	t0 = NOW;
	tick_at(t0); /* PING */
	NOW = t0 + 1500 * MS;
	struct sm_event stalled = {.type = SE_TICK, .result = 1};
	feed(&stalled);
	ck_assert_ptr_null(fx_job(JOB_KILL));
	tick_at(t0 + 2400 * MS);
	ck_assert_ptr_null(fx_job(JOB_KILL));
	tick_at(t0 + 2500 * MS); /* a full time-out from the stall's end */
	ck_assert_ptr_nonnull(fx_job(JOB_KILL));
}
END_TEST

/* No hung verdict while a promotion recovers or a demotion waits: the
 * service's control thread may wait with them, and PROMOTE's and DEMOTE's
 * own time-outs bound those states. */
START_TEST(test_no_hang_verdict_while_promoting_or_demoting)
{
	setup_ping();
	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	uint64_t label = fx_job(JOB_LABEL)->job_id;
	for (int i = 0; i < 20; i++) {
		tick_at(NOW + 200 * MS);
		ck_assert_ptr_null(fx_job(JOB_KILL));
	}
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_PROMOTING); /* labelled, still recovering */
	ready(5, 0);
	ck_assert_int_eq(S.st, SM_MASTER); /* the label was on already */
	ck_assert_ptr_null(fx_job(JOB_LABEL));
	simple(SE_LOST, 5, "renewal failed");
	ck_assert_int_eq(S.st, SM_DEMOTING);
	for (int i = 0; i < 9; i++) {
		tick_at(NOW + 200 * MS);
		ck_assert_ptr_null(fx_job(JOB_KILL));
	}
}
END_TEST

START_TEST(test_stop_keeping_the_term)
{
	to_master();
	struct sm_event ev = {.type = SE_SHUTDOWN, .result = 1};
	str_copy(ev.text, sizeof(ev.text), "SIGTERM");
	feed(&ev);
	ck_assert_ptr_null(fx(FX_SEND_DEMOTE));
	ck_assert_ptr_null(fx_job(JOB_UNLABEL));
	ck_assert_ptr_null(fx(FX_RELEASE));
	ck_assert_ptr_null(fx_event(EVENTS_RELEASED));
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert(fx(FX_STOP_ELECTOR)->flag); /* no release */
	ck_assert_int_eq(S.st, SM_STOPPED);
}
END_TEST

/* SIGTERM with keep: FX_STOP_ELECTOR says whether the term's service is
 * serving (a parting renewal is for that case only): yes once READY was
 * seen, no while it still recovers. */
START_TEST(test_stop_keeping_says_whether_serving)
{
	struct sm_event ev = {.type = SE_SHUTDOWN, .result = 1};

	str_copy(ev.text, sizeof(ev.text), "SIGTERM");
	if (_i == 0) {
		to_master();
	} else {
		started(5, "");
		done(fx_job(JOB_CLAIM), 0);
		ck_assert_int_eq(S.st, SM_PROMOTING);
	}
	feed(&ev);
	ck_assert_ptr_nonnull(fx(FX_STOP_ELECTOR));
	ck_assert(fx(FX_STOP_ELECTOR)->flag);
	ck_assert_int_eq(fx(FX_STOP_ELECTOR)->code, _i == 0 ? 1 : 0);
	/* a recovering service's early label comes off; a master's stays */
	if (_i == 0)
		ck_assert_ptr_null(fx_job(JOB_UNLABEL));
	else
		ck_assert_ptr_nonnull(fx_job(JOB_UNLABEL));
}
END_TEST

/* The early label of a term that ends before READY comes off; one that
 * failed before READY is tried again at READY. */
START_TEST(test_early_label_off_or_again)
{
	const struct sm_effect *e;
	uint64_t id;

	started(5, "");
	done(fx_job(JOB_CLAIM), 0);
	id = fx_job(JOB_LABEL)->job_id;
	if (_i == 0) {
		done_id(JOB_LABEL, id, 0);
		simple(SE_FAILED, 5, "cannot read the store");
		ck_assert_ptr_nonnull(fx(FX_RELEASE));
		e = fx_job(JOB_UNLABEL);
		ck_assert_ptr_nonnull(e);
		ck_assert_str_eq(e->a, "meta-a");
		ck_assert_int_eq(S.st, SM_FOLLOWER);
	} else {
		done_id(JOB_LABEL, id, -EIO);
		ck_assert_int_eq(S.st, SM_PROMOTING);
		ready(5, 0);
		ck_assert_int_eq(S.st, SM_LABELLING);
		e = fx_job(JOB_LABEL);
		ck_assert_ptr_nonnull(e);
		ck_assert_uint_ne(e->job_id, id);
		done(e, 0);
		ck_assert_int_eq(S.st, SM_MASTER);
	}
}
END_TEST

START_TEST(test_names)
{
	for (int i = 0; i < _SM_STATE_MAX; i++)
		ck_assert_str_ne(sm_state_name((enum sm_state)i), "?");
	for (int i = 0; i < _JOB_MAX; i++)
		ck_assert_ptr_nonnull(sm_job_name((enum sm_job)i));
	ck_assert_str_eq(sm_state_name(_SM_STATE_MAX), "?");
}
END_TEST

static Suite *sm_suite(void)
{
	Suite *s = suite_create("orch_sm");
	TCase *tc = tcase_create("transitions");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_term_to_master);
	tcase_add_test(tc, test_duty_from_lease_not_previous);
	tcase_add_test(tc, test_two_victims_in_order);
	tcase_add_test(tc, test_nothing_owed);
	tcase_add_test(tc, test_no_method_configured);
	tcase_add_test(tc, test_fence_retry);
	tcase_add_test(tc, test_term_ends_mid_fence);
	tcase_add_test(tc, test_stop_before_queued_start);
	tcase_add_test(tc, test_stop_during_fence_retry);
	tcase_add_test(tc, test_stop_master_confirmed);
	tcase_add_test(tc, test_stop_master_unanswered_kill);
	tcase_add_test(tc, test_lost_as_master);
	tcase_add_test(tc, test_lost_as_master_no_answer);
	tcase_add_test(tc, test_gone_while_demoting);
	tcase_add_test(tc, test_gone_confirmed_dead);
	tcase_add_test(tc, test_gone_not_confirmed);
	tcase_add_test(tc, test_gone_during_fence);
	tcase_add_test(tc, test_promote_timeout);
	tcase_add_test(tc, test_promote_unsent);
	tcase_add_test(tc, test_promotion_refused);
	tcase_add_test(tc, test_master_steps_down);
	tcase_add_test(tc, test_repromote_after_the_interval);
	tcase_add_test(tc, test_repromote_finds_a_fence);
	tcase_add_test(tc, test_repromote_not_lost);
	tcase_add_test(tc, test_repromote_claim_gives_up);
	tcase_add_loop_test(tc, test_repromote_term_ends, 0, 2);
	tcase_add_test(tc, test_failed_promotions_back_off);
	tcase_add_test(tc, test_label_transient_retry);
	tcase_add_test(tc, test_label_fatal);
	tcase_add_test(tc, test_claim_superseded_and_retry);
	tcase_add_test(tc, test_no_service_at_promotion);
	tcase_add_test(tc, test_fence_only_term);
	tcase_add_test(tc, test_fence_only_term_service_arrives);
	tcase_add_test(tc, test_term_with_service_is_not_fence_only);
	tcase_add_test(tc, test_untaint_at_start_and_after_terms);
	tcase_add_test(tc, test_no_untaint_unless_configured);
	tcase_add_test(tc, test_fence_given_up);
	tcase_add_test(tc, test_fence_cancel_is_no_give_up);
	tcase_add_test(tc, test_claim_given_up);
	tcase_add_test(tc, test_mode_none);
	tcase_add_test(tc, test_mode_probe);
	tcase_add_test(tc, test_tell_master);
	tcase_add_test(tc, test_route_check_while_master);
	tcase_add_test(tc, test_no_route_check_unless_configured);
	tcase_add_test(tc, test_stop_while_demoting);
	tcase_add_test(tc, test_ping_answered);
	tcase_add_test(tc, test_hung_master_killed_and_released);
	tcase_add_test(tc, test_hung_standby_killed);
	tcase_add_test(tc, test_old_pong_keeps_clock);
	tcase_add_test(tc, test_reconnect_resets_clock);
	tcase_add_test(tc, test_own_stall_is_no_hang);
	tcase_add_test(tc, test_no_hang_verdict_while_promoting_or_demoting);
	tcase_add_test(tc, test_stop_keeping_the_term);
	tcase_add_loop_test(tc, test_stop_keeping_says_whether_serving, 0, 2);
	tcase_add_loop_test(tc, test_early_label_off_or_again, 0, 2);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(sm_suite(), NULL);
}
