/* check_pipeline: unit tests of fencing/pipeline's pure logic — ordering,
 * the deadline of each step and of the whole run, retries, aggregation of
 * results, the refusal to fence the local node and the selection of steps
 * by fence level — with an injected clock and fake methods that "take"
 * time by advancing it.  Also the wiring from the agent's configuration. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing/pipeline.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/agent_conf.h"
#include "tests/lib/kftest.h"

#define MS USEC_PER_MSEC

/* ------------------------------------------------------------- fakes */

struct fake_clock {
	usec_t now;
	int sleeps;
};

static usec_t fake_now(void *data)
{
	return ((struct fake_clock *)data)->now;
}

static void fake_sleep_until(void *data, usec_t deadline)
{
	struct fake_clock *c = data;

	c->sleeps++;
	if (deadline > c->now)
		c->now = deadline;
}

/* Each call takes cost[i] (HANG = until its deadline) and returns res[i];
 * the last entry repeats. */
#define HANG (-1)
struct fake_method {
	struct fake_clock *clk;
	const char *name;
	int res[8];
	usec_t cost[8];
	int n;
	int calls;
	usec_t deadlines[8];
	char (*order)[16];
	int *n_order;
};

static int fake_run(void *data, const struct fence_request *req, usec_t deadline, char *target,
                    size_t targetlen, char *msg, size_t msglen)
{
	struct fake_method *m = data;
	int i = m->calls < m->n ? m->calls : m->n - 1;

	if (m->calls < 8)
		m->deadlines[m->calls] = deadline;
	m->calls++;
	if (m->order)
		snprintf(m->order[(*m->n_order)++], 16, "%s", m->name);
	snprintf(target, targetlen, "fake '%s'", req->node);
	if (m->cost[i] == HANG) {
		if (m->clk->now < deadline)
			m->clk->now = deadline;
		snprintf(msg, msglen, "no answer");
		return -ETIMEDOUT;
	}
	m->clk->now += m->cost[i];
	if (m->res[i] < 0)
		snprintf(msg, msglen, "fake failure %d", m->res[i]);
	return m->res[i];
}

struct rig {
	struct fake_clock clk;
	struct fence_clock fc;
	struct fence_pipeline_opts o;
	struct fake_method fm[FENCE_METHODS_MAX];
	struct fence_method m[FENCE_METHODS_MAX];
	char order[32][16];
	int n_order;
	struct fence_report rep;
};

static void rig_init(struct rig *r, size_t n)
{
	static const char *const names[] = {"scsi-pr", "pod-delete", "volume-detach", "m4", "m5"};

	memset(r, 0, sizeof(*r));
	r->clk.now = 1000 * USEC_PER_SEC; /* any origin */
	r->fc = (struct fence_clock){fake_now, fake_sleep_until, &r->clk};
	r->o = (struct fence_pipeline_opts){
	        .local_node = "node-self",
	        .step_timeout = 1000 * MS,
	        .total_timeout = 10000 * MS,
	        .retries = 2,
	        .retry_pause = 100 * MS,
	        .clock = &r->fc,
	};
	for (size_t i = 0; i < n; i++) {
		r->fm[i] = (struct fake_method){.clk = &r->clk,
		                                .name = names[i],
		                                .res = {FENCE_CONFIRMED},
		                                .cost = {10 * MS},
		                                .n = 1,
		                                .order = r->order,
		                                .n_order = &r->n_order};
		r->m[i] =
		        (struct fence_method){.name = names[i], .run = fake_run, .data = &r->fm[i]};
	}
}

static int rig_run(struct rig *r, size_t n, enum fence_level level, const char *node)
{
	struct fence_request req = {.node = node};

	return fence_pipeline_run(&r->o, r->m, n, level, &req, &r->rep);
}

/* ------------------------------------------------------------- tests */

START_TEST(test_order_and_success)
{
	struct rig r;

	rig_init(&r, 3);
	r.fm[1].res[0] = FENCE_ALREADY_GONE;
	ck_assert_int_eq(rig_run(&r, 3, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	ck_assert_int_eq(r.n_order, 3);
	ck_assert_str_eq(r.order[0], "scsi-pr");
	ck_assert_str_eq(r.order[1], "pod-delete");
	ck_assert_str_eq(r.order[2], "volume-detach");
	ck_assert_uint_eq(r.rep.n_steps, 3);
	ck_assert_str_eq(r.rep.steps[0].method, "scsi-pr");
	ck_assert_str_eq(r.rep.steps[1].method, "pod-delete");
	ck_assert_int_eq(r.rep.steps[1].result, FENCE_ALREADY_GONE);
	ck_assert_str_eq(r.rep.steps[2].target, "fake 'node-old'");
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(r.rep.steps[i].duration, 10 * MS);
		ck_assert_int_eq(r.rep.steps[i].attempts, 1);
		ck_assert(!r.rep.steps[i].skipped);
	}
	ck_assert_int_eq(r.rep.duration, 30 * MS);
	ck_assert_int_eq(r.rep.result, 0);
	ck_assert_str_eq(r.rep.node, "node-old");
	ck_assert_str_eq(r.rep.message, "");
}
END_TEST

/* A method that does not answer is cut at its own deadline; the next one
 * gets a fresh one. */
START_TEST(test_step_deadline)
{
	struct rig r;
	usec_t t0;

	rig_init(&r, 2);
	t0 = r.clk.now;
	r.o.retries = 0;
	r.fm[0].cost[0] = HANG;
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_EXPIRED, "node-old"), -ETIMEDOUT);
	ck_assert_int_eq(r.fm[0].deadlines[0], t0 + 1000 * MS);
	ck_assert_int_eq(r.rep.steps[0].result, -ETIMEDOUT);
	ck_assert_int_eq(r.rep.steps[0].duration, 1000 * MS);
	ck_assert_msg(strstr(r.rep.steps[0].message, "deadline of 1.000 s passed"), "%s",
	              r.rep.steps[0].message);
	/* The failure does not stop the rest. */
	ck_assert_int_eq(r.fm[1].calls, 1);
	ck_assert_int_eq(r.fm[1].deadlines[0], t0 + 2000 * MS);
	ck_assert_int_eq(r.rep.steps[1].result, 0);
	ck_assert_str_eq(r.rep.message, "node 'node-old' is NOT confirmed fenced");
}
END_TEST

/* The overall deadline caps each step and stops steps from starting. */
START_TEST(test_total_deadline)
{
	struct rig r;
	usec_t t0;

	rig_init(&r, 4);
	t0 = r.clk.now;
	r.o.total_timeout = 2500 * MS;
	for (int i = 0; i < 4; i++)
		r.fm[i].cost[0] = HANG;
	ck_assert_int_eq(rig_run(&r, 4, FENCE_LEVEL_EXPIRED, "node-old"), -ETIMEDOUT);
	ck_assert_int_eq(r.fm[0].deadlines[0], t0 + 1000 * MS);
	ck_assert_int_eq(r.fm[1].deadlines[0], t0 + 2000 * MS);
	ck_assert_int_eq(r.fm[2].deadlines[0], t0 + 2500 * MS); /* capped */
	ck_assert_int_eq(r.fm[3].calls, 0);
	ck_assert_int_eq(r.rep.steps[3].result, -ETIME);
	ck_assert_int_eq(r.rep.steps[3].attempts, 0);
	ck_assert_msg(strstr(r.rep.steps[3].message, "deadline of 2.500 s had passed"), "%s",
	              r.rep.steps[3].message);
	ck_assert_int_eq(r.rep.duration, 2500 * MS);
	/* A hang is not retried: no time is left for it. */
	ck_assert_int_eq(r.fm[0].calls, 1);
}
END_TEST

START_TEST(test_retries_then_success)
{
	struct rig r;
	usec_t t0;

	rig_init(&r, 1);
	t0 = r.clk.now;
	r.fm[0] = (struct fake_method){.clk = &r.clk,
	                               .name = "pod-delete",
	                               .res = {-EAGAIN, -ECONNREFUSED, FENCE_CONFIRMED},
	                               .cost = {50 * MS, 50 * MS, 50 * MS},
	                               .n = 3};
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	ck_assert_int_eq(r.fm[0].calls, 3);
	ck_assert_int_eq(r.rep.steps[0].attempts, 3);
	/* Three attempts and two pauses; every attempt shares the step deadline. */
	ck_assert_int_eq(r.rep.steps[0].duration, 3 * 50 * MS + 2 * 100 * MS);
	ck_assert_int_eq(r.fm[0].deadlines[2], t0 + 1000 * MS);
	ck_assert_int_eq(r.clk.sleeps, 2);
}
END_TEST

/* keep_going is asked before every attempt: once the term the run is for
 * is over, no method acts again (the step fails -ECANCELED). */
static int keep_calls, keep_until;
static bool keep(void *data)
{
	(void)data;
	return ++keep_calls <= keep_until;
}

START_TEST(test_keep_going_stops_the_run)
{
	struct rig r;

	rig_init(&r, 2);
	r.fm[0] = (struct fake_method){.clk = &r.clk,
	                               .name = "scsi-pr",
	                               .res = {-EAGAIN, FENCE_CONFIRMED},
	                               .cost = {50 * MS, 50 * MS},
	                               .n = 2};
	r.o.keep_going = keep;
	keep_calls = 0;
	keep_until = 1; /* the first attempt only */
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_EXPIRED, "node-old"), -ECANCELED);
	ck_assert_int_eq(r.fm[0].calls, 1);
	ck_assert_int_eq(r.fm[1].calls, 0);
	ck_assert_int_eq(r.rep.steps[0].result, -ECANCELED);
	ck_assert_ptr_nonnull(strstr(r.rep.steps[0].message, "term it ran for is over"));
	ck_assert_int_eq(r.rep.steps[1].result, -ECANCELED);
}
END_TEST

/* before_method is called once per method that runs, before its first
 * attempt (not before retries), with its name and keep_going_data; a
 * method skipped at the level gets no call. */
static char before_seen[8][32];
static int n_before;
static void before(void *data, const char *method)
{
	ck_assert_ptr_eq(data, &n_before);
	if (n_before < 8)
		snprintf(before_seen[n_before++], sizeof(before_seen[0]), "%s", method);
}

START_TEST(test_before_method)
{
	struct rig r;

	rig_init(&r, 3);
	r.fm[1].res[0] = -EAGAIN; /* pod-delete: one retry */
	r.fm[1].res[1] = FENCE_CONFIRMED;
	r.fm[1].cost[1] = 10 * MS;
	r.fm[1].n = 2;
	r.o.before_method = before;
	r.o.keep_going_data = &n_before;
	n_before = 0;
	ck_assert_int_eq(rig_run(&r, 3, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	ck_assert_int_eq(r.fm[1].calls, 2);
	ck_assert_int_eq(n_before, 3);
	ck_assert_str_eq(before_seen[0], "scsi-pr");
	ck_assert_str_eq(before_seen[1], "pod-delete");
	ck_assert_str_eq(before_seen[2], "volume-detach");
}
END_TEST

START_TEST(test_retries_exhausted)
{
	struct rig r;

	rig_init(&r, 1);
	r.o.retries = 1;
	r.fm[0].res[0] = -EAGAIN;
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, "node-old"), -EAGAIN);
	ck_assert_int_eq(r.fm[0].calls, 2);
	ck_assert_str_eq(r.rep.steps[0].message, "fake failure -11");
}
END_TEST

START_TEST(test_no_retry_when_not_retryable)
{
	struct rig r;

	rig_init(&r, 1);
	r.fm[0].res[0] = -EPERM;
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, "node-old"), -EPERM);
	ck_assert_int_eq(r.fm[0].calls, 1);
	ck_assert_int_eq(r.clk.sleeps, 0);
}
END_TEST

/* A pause that would end past the deadline is not taken. */
START_TEST(test_no_retry_without_time)
{
	struct rig r;

	rig_init(&r, 1);
	r.o.retries = 10;
	r.fm[0].res[0] = -EAGAIN;
	r.fm[0].cost[0] = 400 * MS;
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, "node-old"), -EAGAIN);
	/* 400 + 100 + 400 = 900; another pause would reach 1000. */
	ck_assert_int_eq(r.fm[0].calls, 2);
	ck_assert_int_le(r.rep.steps[0].duration, 1000 * MS);
}
END_TEST

/* Success only when every step is confirmed; the first failure is what
 * the run returns; every step still runs. */
START_TEST(test_aggregation)
{
	struct rig r;

	rig_init(&r, 3);
	r.fm[0].res[0] = -EPERM;
	r.fm[1].res[0] = FENCE_ALREADY_GONE;
	r.fm[2].res[0] = -ENXIO;
	ck_assert_int_eq(rig_run(&r, 3, FENCE_LEVEL_EXPIRED, "node-old"), -EPERM);
	ck_assert_int_eq(r.rep.result, -EPERM);
	ck_assert_int_eq(r.n_order, 3);
	ck_assert_int_eq(r.rep.steps[0].result, -EPERM);
	ck_assert_int_eq(r.rep.steps[1].result, FENCE_ALREADY_GONE);
	ck_assert_int_eq(r.rep.steps[2].result, -ENXIO);

	rig_init(&r, 2);
	r.fm[1].res[0] = -ENXIO;
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_EXPIRED, "node-old"), -ENXIO);
}
END_TEST

START_TEST(test_refuse_local_node)
{
	struct rig r;

	rig_init(&r, 2);
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_EXPIRED, "node-self"), -EPERM);
	ck_assert_int_eq(r.n_order, 0);
	ck_assert_uint_eq(r.rep.n_steps, 0);
	ck_assert_str_eq(r.rep.message,
	                 "refusing to fence node 'node-self': it is the local node (this agent "
	                 "runs there)");
	ck_assert_int_eq(r.rep.result, -EPERM);
}
END_TEST

START_TEST(test_bad_input)
{
	struct rig r;

	rig_init(&r, 1);
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, ""), -EINVAL);
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_EXPIRED, NULL), -EINVAL);
	ck_assert_str_eq(r.rep.message, "no victim node given");
	ck_assert_int_eq(rig_run(&r, FENCE_METHODS_MAX + 1, FENCE_LEVEL_EXPIRED, "n"), -EINVAL);
	ck_assert_int_eq(r.n_order, 0);
	/* No method configured: nothing to confirm, and that is success. */
	ck_assert_int_eq(rig_run(&r, 0, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	ck_assert_uint_eq(r.rep.n_steps, 0);
}
END_TEST

/* Released: the storage fence and the released methods only. */
START_TEST(test_level_released)
{
	char *released[] = {"volume-detach", NULL};
	struct rig r;

	rig_init(&r, 3);
	r.m[0].storage = true; /* scsi-pr */
	r.o.released_methods = released;
	r.fm[1].res[0] = -EPERM; /* would fail if run */
	ck_assert_int_eq(rig_run(&r, 3, FENCE_LEVEL_RELEASED, "node-old"), 0);
	ck_assert_int_eq(r.n_order, 2);
	ck_assert_str_eq(r.order[0], "scsi-pr");
	ck_assert_str_eq(r.order[1], "volume-detach");
	ck_assert(!r.rep.steps[0].skipped);
	ck_assert(r.rep.steps[1].skipped);
	ck_assert_int_eq(r.rep.steps[1].attempts, 0);
	ck_assert_int_eq(r.rep.steps[1].result, 0);
	ck_assert_msg(strstr(r.rep.steps[1].message, "not required when the lease released"), "%s",
	              r.rep.steps[1].message);
	ck_assert(!r.rep.steps[2].skipped);

	/* Without a storage method or released methods nothing runs. */
	rig_init(&r, 2);
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_RELEASED, "node-old"), 0);
	ck_assert_int_eq(r.n_order, 0);
	ck_assert(r.rep.steps[0].skipped && r.rep.steps[1].skipped);
}
END_TEST

/* Expired: every method, whatever the released list says. */
START_TEST(test_level_expired)
{
	char *released[] = {"volume-detach", NULL};
	struct rig r;

	rig_init(&r, 3);
	r.m[0].storage = true;
	r.o.released_methods = released;
	ck_assert_int_eq(rig_run(&r, 3, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	ck_assert_int_eq(r.n_order, 3);
	for (int i = 0; i < 3; i++)
		ck_assert(!r.rep.steps[i].skipped);
}
END_TEST

START_TEST(test_report_format)
{
	char buf[1024];
	struct rig r;

	rig_init(&r, 2);
	r.fm[1].res[0] = FENCE_ALREADY_GONE;
	ck_assert_int_eq(rig_run(&r, 2, FENCE_LEVEL_EXPIRED, "node-old"), 0);
	fence_report_format(&r.rep, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	                 "fenced node 'node-old' (lease expired) in 0.020 s: scsi-pr "
	                 "confirmed in 0.010 s; pod-delete confirmed (already gone) in 0.010 s");

	rig_init(&r, 1);
	r.fm[0].res[0] = -EPERM;
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_RELEASED, "node-old"), 0); /* skipped */
	r.m[0].storage = true;
	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_RELEASED, "node-old"), -EPERM);
	fence_report_format(&r.rep, buf, sizeof(buf));
	ck_assert_str_eq(buf, "FAILED to fence node 'node-old' (lease released) in 0.010 s: "
	                      "scsi-pr FAILED in 0.010 s (fake failure -1)");

	ck_assert_int_eq(rig_run(&r, 1, FENCE_LEVEL_RELEASED, "node-self"), -EPERM);
	fence_report_format(&r.rep, buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "fence refused: refusing to fence node 'node-self'", 49) == 0,
	              "%s", buf);

	/* Truncation is safe. */
	fence_report_format(&r.rep, buf, 8);
	ck_assert_str_eq(buf, "fence r");
}
END_TEST

START_TEST(test_names_and_retryable)
{
	ck_assert(fence_method_known("scsi-pr"));
	ck_assert(fence_method_known("pod-delete"));
	ck_assert(fence_method_known("volume-detach"));
	ck_assert(!fence_method_known("power-off"));
	ck_assert(!fence_method_known(""));
	ck_assert_str_eq(fence_method_names_joined(),
	                 "scsi-pr, out-of-service, pod-delete, volume-detach");
	ck_assert(fence_error_is_retryable(-EAGAIN));
	ck_assert(fence_error_is_retryable(EAGAIN));
	ck_assert(fence_error_is_retryable(-ETIMEDOUT));
	ck_assert(fence_error_is_retryable(-EBUSY));
	ck_assert(!fence_error_is_retryable(-EPERM));
	ck_assert(!fence_error_is_retryable(-ESTALE));
	ck_assert(!fence_error_is_retryable(-ENXIO));
}
END_TEST

/* The configuration becomes the table and the options. */
START_TEST(test_from_conf)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	struct fence_methods m = {0};
	struct fence_pipeline_opts o;
	char err[256] = "";

	ck_assert_int_eq(agent_conf_load(TEST_SRCDIR "/unit/conf/good/all_keys.conf", &c, &errs),
	                 0);
	ck_assert_int_eq(fence_methods_from_conf(&c->fence, NULL, &m, err, sizeof(err)), 0);
	ck_assert_uint_eq(m.n, 4);
	ck_assert_str_eq(m.v[0].name, "scsi-pr");
	ck_assert(m.v[0].storage);
	ck_assert_str_eq(m.v[1].name, "out-of-service");
	ck_assert(!m.v[1].storage);
	ck_assert_str_eq(m.v[2].name, "pod-delete");
	ck_assert(!m.v[2].storage);
	ck_assert_str_eq(m.v[3].name, "volume-detach");
	fence_pipeline_opts_from_conf(&c->fence, &o);
	ck_assert_str_eq(o.local_node, "worker-1.example");
	ck_assert_int_eq(o.step_timeout, 5000 * MS);
	ck_assert_int_eq(o.total_timeout, 12000 * MS);
	ck_assert_int_eq(o.retries, 1);
	ck_assert_int_eq(o.retry_pause, 250 * MS);
	ck_assert_str_eq(o.released_methods[0], "volume-detach");
	ck_assert_ptr_null(o.released_methods[1]);
	ck_assert_str_eq(c->service.namespace, "metadata");
	ck_assert_str_eq(c->service.selector, "app=metaservice,role in (master)");
	ck_assert_str_eq(c->fence.pvc, "metaservice-data");
	ck_assert(c->fence.out_of_service_taint);
	ck_assert_str_eq(c->fence.scsi_luns[1],
	                 "iscsi://10.0.0.6:3261/iqn.2003-01.org.example:meta/2");
	ck_assert_int_eq(c->selffence.stop_timeout_ms, 1500);
	ck_assert_int_eq(c->selffence.kill_timeout_ms, 3000);
	ck_assert_str_eq(c->selffence.watchdog_device, "/dev/watchdog0");
	fence_methods_done(&m);
	fence_methods_done(&m); /* idempotent */
	agent_conf_free(c);
	conf_errors_done(&errs);
}
END_TEST

static Suite *pipeline_suite(void)
{
	Suite *s = suite_create("pipeline");

	kft_add(s, "order_and_success", test_order_and_success, 0, NULL, NULL);
	kft_add(s, "step_deadline", test_step_deadline, 0, NULL, NULL);
	kft_add(s, "total_deadline", test_total_deadline, 0, NULL, NULL);
	kft_add(s, "retries_then_success", test_retries_then_success, 0, NULL, NULL);
	kft_add(s, "retries_exhausted", test_retries_exhausted, 0, NULL, NULL);
	kft_add(s, "keep_going_stops_the_run", test_keep_going_stops_the_run, 0, NULL, NULL);
	kft_add(s, "before_method", test_before_method, 0, NULL, NULL);
	kft_add(s, "no_retry_when_not_retryable", test_no_retry_when_not_retryable, 0, NULL, NULL);
	kft_add(s, "no_retry_without_time", test_no_retry_without_time, 0, NULL, NULL);
	kft_add(s, "aggregation", test_aggregation, 0, NULL, NULL);
	kft_add(s, "refuse_local_node", test_refuse_local_node, 0, NULL, NULL);
	kft_add(s, "bad_input", test_bad_input, 0, NULL, NULL);
	kft_add(s, "level_released", test_level_released, 0, NULL, NULL);
	kft_add(s, "level_expired", test_level_expired, 0, NULL, NULL);
	kft_add(s, "report_format", test_report_format, 0, NULL, NULL);
	kft_add(s, "names_and_retryable", test_names_and_retryable, 0, NULL, NULL);
	kft_add(s, "from_conf", test_from_conf, 0, NULL, NULL);
	return s;
}

int main(void)
{
	/* the pipeline's step lines are not under test */
	static const struct kft_opts opts = {.log_level = LOG_LEVEL_ERROR - 1};

	return kft_main(pipeline_suite(), &opts);
}
