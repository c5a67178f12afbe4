/* orch_rig: see orch_rig.h. */
#include "config.h"

#include "tests/unit/orch_rig.h"

#include <check.h>

#include "lib/util.h"

struct sm S;
struct sm_effects FX;
usec_t NOW;

void init_mode(enum sm_mode mode, bool methods)
{
	struct sm_config c = {
	        .mode = mode,
	        .have_methods = methods,
	        .promote_timeout = 5000 * MS,
	        .demote_timeout = 2000 * MS,
	        .fence_retry = 1000 * MS,
	        .claim_retry = 200 * MS,
	        .label_retry = 100 * MS,
	        .exit_wait = 300 * MS,
	        .tell_interval = 1000 * MS,
	};
	str_copy(c.node, sizeof(c.node), "node-a");
	str_copy(c.ns, sizeof(c.ns), "kf");
	str_copy(c.label, sizeof(c.label), "role=master");
	sm_init(&S, &c);
	NOW = 1000 * USEC_PER_SEC;
}

void feed(const struct sm_event *ev)
{
	sm_step(&S, ev, NOW, &FX);
	ck_assert_uint_lt(FX.n, SM_FX_MAX); /* room to spare: nothing cut */
}

void hello_as(const char *pod, const char *uid, pid_t pid, uint64_t gen)
{
	struct sm_event ev = {.type = SE_HELLO};

	str_copy(ev.peer.pod, sizeof(ev.peer.pod), pod);
	str_copy(ev.peer.uid, sizeof(ev.peer.uid), uid);
	ev.peer.cred_pid = pid;
	ev.peer.gen = gen;
	feed(&ev);
}

void started(int64_t epoch, const char *owed)
{
	struct sm_event ev = {.type = SE_STARTED, .epoch = epoch, .at = NOW};

	ev.term.epoch = epoch;
	ev.term.verdict = LEASE_EXPIRED;
	str_copy(ev.term.previous.holder, sizeof(ev.term.previous.holder), "agent-b");
	str_copy(ev.term.previous.node, sizeof(ev.term.previous.node), "node-b");
	str_copy(ev.term.fence_owed, sizeof(ev.term.fence_owed), owed);
	feed(&ev);
}

void simple(enum sm_event_type t, int64_t epoch, const char *text)
{
	struct sm_event ev = {.type = t, .epoch = epoch};

	ev.msg.epoch = epoch;
	if (text) {
		str_copy(ev.text, sizeof(ev.text), text);
		str_copy(ev.msg.reason, sizeof(ev.msg.reason), text);
	}
	feed(&ev);
}

void tick_at(usec_t t)
{
	NOW = t;
	simple(SE_TICK, 0, NULL);
}

void ready(int64_t epoch, uint64_t records)
{
	struct sm_event r = {.type = SE_READY, .epoch = epoch};

	r.msg.epoch = epoch;
	r.msg.records = records;
	feed(&r);
}

void done(const struct sm_effect *job, int result)
{
	struct sm_event ev = {.type = SE_JOB_DONE,
	                      .job = job->job,
	                      .job_id = job->job_id,
	                      .epoch = job->epoch,
	                      .result = result};
	feed(&ev);
}

void done_id(enum sm_job j, uint64_t id, int result)
{
	struct sm_event ev = {.type = SE_JOB_DONE, .job = j, .job_id = id, .result = result};
	feed(&ev);
}

void to_master(void)
{
	const struct sm_effect *e;

	started(5, "node-b:expired");
	e = fx_job(JOB_FENCE);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	e = fx_job(JOB_CLAIM);
	ck_assert_ptr_nonnull(e);
	done(e, 0);
	ck_assert_int_eq(S.st, SM_PROMOTING);
	e = fx_job(JOB_LABEL); /* the label goes on with PROMOTE */
	ck_assert_ptr_nonnull(e);
	uint64_t label = e->job_id;
	ready(5, 7);
	ck_assert_int_eq(S.st, SM_LABELLING); /* READY waits for its answer */
	done_id(JOB_LABEL, label, 0);
	ck_assert_int_eq(S.st, SM_MASTER);
}

/* The first effect of FX matching type t and, when `code` >= 0, whose job
 * (FX_JOB) or code (FX_EVENT, FX_METRIC) is `code`. */
static const struct sm_effect *find(enum sm_fx_type t, int code)
{
	for (size_t i = 0; i < FX.n; i++) {
		const struct sm_effect *e = &FX.v[i];

		if (e->type != t)
			continue;
		if (code < 0 || (t == FX_JOB ? (int)e->job : e->code) == code)
			return e;
	}
	return NULL;
}

const struct sm_effect *fx(enum sm_fx_type t)
{
	return find(t, -1);
}

const struct sm_effect *fx_job(enum sm_job j)
{
	return find(FX_JOB, (int)j);
}

const struct sm_effect *fx_event(int reason)
{
	return find(FX_EVENT, reason);
}

const struct sm_effect *fx_metric(enum sm_metric m)
{
	return find(FX_METRIC, (int)m);
}
