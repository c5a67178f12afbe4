/* orch_rig: the harness of the orchestrator's state machine tests
 * (check_orch_sm, check_orch_faults): one machine S at an injected time
 * NOW, the effects FX of its last step, and helpers that feed it inputs and
 * look for effects.  Every step asserts that the effects fit with room to
 * spare (nothing cut). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "nodeagent/orch_sm.h"

#define MS USEC_PER_MSEC

extern struct sm S;
extern struct sm_effects FX;
extern usec_t NOW;

/* A machine of node-a (namespace kf, role=master) with the tests' timings
 * (promote 5 s, demote 2 s, fence retry 1 s, claim 200 ms, label 100 ms,
 * exit wait 300 ms, MASTER lines 1 s), at NOW = 1000 s. */
void init_mode(enum sm_mode mode, bool methods);

void feed(const struct sm_event *ev);
/* HELLO of a service: pod, uid, SO_PEERCRED pid, connection number. */
void hello_as(const char *pod, const char *uid, pid_t pid, uint64_t gen);
/* STARTED of term epoch (node-b held it, lease expired), owing `owed`. */
void started(int64_t epoch, const char *owed);
/* An input of type t with epoch and text (reason) set. */
void simple(enum sm_event_type t, int64_t epoch, const char *text);
void tick_at(usec_t t);
/* READY of epoch, `records` recovered. */
void ready(int64_t epoch, uint64_t records);
/* The answer of job j (as the runner posts it). */
void done(const struct sm_effect *job, int result);
void done_id(enum sm_job j, uint64_t id, int result);
/* Term 5 from its start to MASTER (a fence of node-b, the claim, READY
 * with 7 records, the label). */
void to_master(void);

/* The first effect of the last step of this kind, or NULL. */
const struct sm_effect *fx(enum sm_fx_type t);
const struct sm_effect *fx_job(enum sm_job j);
const struct sm_effect *fx_event(int reason);
const struct sm_effect *fx_metric(enum sm_metric m);
