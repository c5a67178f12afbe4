/* orch_sm: the agent's orchestrator as a pure transition function.
 *
 *   sm_step(machine, event, now) -> new state of the machine + effects
 *
 * It performs nothing itself: no API call, no socket write, no clock read,
 * no lock.  The orchestrator (orchestrator.c) feeds it events — from the
 * elector, the control socket, the worker that runs slow effects, and ticks
 * of its own timer — and carries out the effects it returns.  Slow effects
 * (a fence run, a label PATCH, waiting for a process to exit) are jobs: the
 * worker runs them one at a time and posts each result back as an
 * SE_JOB_DONE event, so no state waits inside a retry loop and a stop or
 * the end of a term is acted on at once.
 *
 * States and the transitions of one term (mode = control socket):
 *
 *   FOLLOWER --STARTED N--> FENCING: a fence job per node the Lease owes a
 *      fence (fence-owed), each retried every fence_retry until confirmed
 *   FENCING --every one confirmed--> fence settled; CLAIMING: remove the
 *      role label from every other pod (epoch precondition)
 *   CLAIMING --done--> PROMOTE sent; PROMOTING (promote_timeout)
 *   PROMOTING --READY N--> LABELLING: label own pod, retried
 *   LABELLING --labelled--> MASTER
 *
 *   FENCING..MASTER --LOST N--> DEMOTING (DEMOTE was sent by the elector's
 *      callback already) --DEMOTED | FAILED | GONE--> FOLLOWER
 *   DEMOTING --demote_timeout--> KILLING: self-fence (kill, confirmed by a
 *      pidfd) --done--> FOLLOWER
 *   FENCING..MASTER --GONE--> RELEASING: wait up to 300 ms for the process to
 *      exit --> release ("service confirmed dead" only if it did) --> FOLLOWER
 *   PROMOTING --promote_timeout | FAILED--> DEMOTE sent, release --> DEMOTING
 *   LABELLING --the pod cannot be labelled--> DEMOTE sent, release --> DEMOTING
 *   MASTER --FAILED (it stepped down)--> CLAIMING again, same epoch: the
 *      term is still ours, so the service is promoted again (at most once
 *      a SM_REPROMOTE_INTERVAL) if nothing of its old open can still write:
 *      its store is a LUN of ours whose target lost its state since READY
 *      (the claim registers only there) --> PROMOTING ...; otherwise
 *      (JOB_CLAIM_NOT_LOST, JOB_CLAIM_FENCED) release --> FOLLOWER
 *   MASTER --FAILED again within SM_REPROMOTE_INTERVAL--> release --> FOLLOWER
 *
 *   SHUTDOWN sets a sticky flag: a promoted service is demoted (DEMOTING,
 *   then KILLING if it does not answer), and whenever the machine reaches
 *   FOLLOWER with the flag set it stops the elector (releasing the Lease)
 *   and enters STOPPED.
 *
 * Probe mode has FINDING (look up our own pod) in place of PROMOTING; with
 * no local service (mode none), the term itself is the product: MASTER
 * once the fences are settled.
 *
 * A term that began with no service connected (mode control; the
 * orchestrator asks for one only when agent.fence_without_service is set
 * and the Lease owes an expired-level fence) runs FENCING and CLAIMING as
 * any other; if no service connected meanwhile, it is released saying it
 * promoted nothing (the successor owes this node no fence) --> FOLLOWER. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/lease.h"
#include "nodeagent/control.h"
#include "nodeagent/elector.h"

enum sm_state {
	SM_FOLLOWER,
	SM_FENCING,
	SM_CLAIMING,
	SM_FINDING,
	SM_PROMOTING,
	SM_LABELLING,
	SM_MASTER,
	SM_RELEASING,
	SM_DEMOTING,
	SM_KILLING,
	SM_STOPPED,
	_SM_STATE_MAX,
};

enum sm_mode {
	SM_MODE_CONTROL, /* the service speaks the control protocol */
	SM_MODE_PROBE,   /* a health probe stands in for it */
	SM_MODE_NONE,    /* no local service */
};

enum sm_event_type {
	SE_TICK,           /* the time sm_wake_at() asked for has come; result 1: the
	                    * agent itself did not run for half a heartbeat time-out */
	SE_STARTED,        /* term: a term began */
	SE_LOST,           /* epoch, text: a term ended */
	SE_SHUTDOWN,       /* text: stop (sticky); result 1: keep the term (agent.on_sigterm) */
	SE_HELLO,          /* peer: a service connected */
	SE_STANDBY,        /* the service is a candidate */
	SE_READY,          /* msg */
	SE_FAILED,         /* msg */
	SE_DEMOTED,        /* epoch */
	SE_GONE,           /* text: the service went away */
	SE_PROMOTE_UNSENT, /* epoch: PROMOTE could not be sent */
	SE_PONG,           /* seq: the service answered PING seq */
	SE_JOB_DONE,       /* job, job_id, result, peer (FIND) */
	_SE_MAX,
};

enum sm_job {
	JOB_FENCE,        /* epoch, victim, level: one fence pipeline run */
	JOB_CLAIM,        /* epoch, flag (again): the other pods' labels, our key on the LUNs */
	JOB_FIND_POD,     /* probe mode: our own pod */
	JOB_LABEL,        /* epoch, pod, uid: label our own pod */
	JOB_UNLABEL,      /* pod, uid: remove our own label */
	JOB_CONFIRM_EXIT, /* pid, timeout: wait for the process to exit */
	JOB_KILL,         /* pid: self-fence (kill, confirm) */
	JOB_TELL_MASTER,  /* tell our standby who the master is */
	JOB_SCSI_KEEP,    /* flag (reserve): keep our registration, the master's reservation */
	JOB_UNTAINT,      /* lift the out-of-service taint from our own node */
	JOB_ROUTE,        /* epoch, pod, uid, flag (the term's first): the endpoints name our pod */
	_JOB_MAX,
};

/* Results of jobs: 0 done; JOB_CANCELLED the term was over before it ran;
 * other negative errno: failed (retried where the state retries). */
#define JOB_CANCELLED (-ECANCELED)
/* JOB_CLAIM: a newer term has claimed a pod: ours is over. */
#define JOB_CLAIM_SUPERSEDED 1
/* JOB_CLAIM again (flag): our key is gone from a LUN while others are
 * registered there: this node was fenced; the term cannot go on. */
#define JOB_CLAIM_FENCED 2
/* JOB_CLAIM again: the old open may still write (its store is no LUN of
 * ours, the target kept its state, the term rides through an API outage):
 * the term is released, and the successor's fence stops what is queued. */
#define JOB_CLAIM_NOT_LOST 3
/* JOB_LABEL: 1, or -ENOENT/-EINVAL/-ESTALE, mean the pod cannot be
 * labelled (gone, replaced, or claimed by a newer term). */

struct sm_event {
	enum sm_event_type type;
	usec_t at; /* when the input arrived (mono) */
	int64_t epoch;
	struct elector_term term; /* STARTED */
	struct control_msg msg;   /* READY, FAILED */
	struct control_peer peer; /* HELLO; JOB_DONE of JOB_FIND_POD */
	enum sm_job job;          /* JOB_DONE */
	uint64_t job_id;
	int result;
	uint64_t seq;   /* PONG */
	char text[512]; /* reason, why */
};

enum sm_fx_type {
	FX_JOB,           /* job, job_id, epoch, a (victim / pod), b (uid), level, pid, timeout */
	FX_SEND_PROMOTE,  /* epoch */
	FX_SEND_DEMOTE,   /* epoch, text */
	FX_RELEASE,       /* text, flag: service confirmed dead */
	FX_FENCE_SETTLED, /* epoch; flag: keep our own node's entries */
	FX_STOP_ELECTOR,  /* text; flag: keep the term (no release); code: its service serves */
	FX_EVENT,         /* code (enum events_reason), text */
	FX_TL_BEGIN,      /* at, a (from), b (to) */
	FX_TL_ADD,        /* a (step), text */
	FX_TL_FINISH,     /* flag: ok */
	FX_METRIC,        /* code (enum sm_metric), epoch, seconds */
	FX_LOG,           /* code (enum log_level), text */
	FX_SEND_PING,     /* seq */
};

enum sm_metric {
	SMM_LEADER,    /* role leader, epoch, a transition */
	SMM_FOLLOWER,  /* role follower */
	SMM_PROMOTION, /* seconds: the failover's duration */
	SMM_DEMOTION,  /* the local service stopped being master */
};

struct sm_effect {
	enum sm_fx_type type;
	enum sm_job job;
	uint64_t job_id;
	int64_t epoch;
	int code;
	int level; /* enum fence_level */
	pid_t pid;
	usec_t at, timeout;
	bool flag;
	uint64_t seq;
	double seconds;
	char a[254], b[254];
	char text[768];
};

#define SM_FX_MAX 16
struct sm_effects {
	size_t n;
	struct sm_effect v[SM_FX_MAX];
};

struct sm_config {
	enum sm_mode mode;
	char node[254];
	char ns[254];           /* the service's namespace (for the log) */
	char label[130];        /* "role=master" (for the log and Events) */
	bool have_methods;      /* a fence method is configured */
	usec_t promote_timeout; /* PROMOTE -> READY */
	usec_t demote_timeout;  /* DEMOTE -> DEMOTED, then kill */
	usec_t fence_retry;     /* between failed fence runs */
	/* a term whose fence has failed for this long is given up (released,
	 * the duty left on the Lease) and this node sits out the failure
	 * backoff, so that another node may try its own fence; 0: never */
	usec_t fence_give_up;
	usec_t claim_retry;   /* between failed claims of the other pods */
	usec_t label_retry;   /* between failed label PATCHes */
	usec_t exit_wait;     /* how long a gone service's exit is awaited */
	usec_t tell_interval; /* MASTER lines to a standby, at most this often */
	/* The liveness exchange (mode control): a PING every heartbeat (0: none);
	 * a service that leaves one unanswered for heartbeat_timeout is hung:
	 * killed (death confirmed), and a term it was part of released for the
	 * full fence. */
	usec_t heartbeat;
	usec_t heartbeat_timeout;
	/* scsi-pr: how often the registrations are checked (0: never) */
	usec_t scsi_check;
	/* the out-of-service taint is in use: lift it from our own node at
	 * start and whenever the machine is a follower again after a term
	 * (retried every untaint_retry until the API answers) */
	bool untaint;
	usec_t untaint_retry;
	usec_t untaint_recheck; /* a look while following, this often (0: never) */
	/* service.endpoints: while MASTER, check this often that the Service's
	 * endpoints still name our pod (rewritten when not: a Service created
	 * late, endpoints edited or deleted by hand); 0: never */
	usec_t route_check;
};

struct sm {
	struct sm_config cfg;
	enum sm_state st;
	int64_t epoch; /* of the current (or last) term */
	bool leading;
	bool stopping;
	bool keep_term;    /* the stop keeps the term for the next incarnation */
	bool keep_serving; /* ... and its service is serving in it (READY seen) */
	char stop_reason[256];
	bool svc_connected;
	struct control_peer peer;
	int64_t promoted_epoch; /* the term PROMOTE (or the label) was for; -1 none */
	/* The label went on with PROMOTE (label_early()): until MASTER, a term
	 * that ends takes it off again (follow()).  early_job: its PATCH, not
	 * answered yet (0: answered, with early_result). */
	bool early_label;
	uint64_t early_job;
	int early_result;

	/* FENCING */
	char owed[LEASE_OWED_MAX];
	size_t owed_pos;
	bool fenced_any;
	char victim[254];
	int level;

	uint64_t next_job_id;
	uint64_t wait_job; /* the job the state waits for; 0 none */
	usec_t retry_at;   /* when to run the state's job again; 0 none */
	usec_t deadline;   /* PROMOTING/DEMOTING time-out; 0 none */
	usec_t demote_sent;
	usec_t tell_at;
	bool tell_busy;
	usec_t origin; /* start of the current failover (mono) */
	char release_reason[512];
	uint64_t ready_records, ready_recovery_ms; /* the last READY */
	/* liveness */
	uint64_t ping_seq;       /* the last PING sent */
	usec_t ping_at;          /* when the next PING is due */
	usec_t ping_last;        /* when the last PING went out */
	usec_t unanswered_since; /* the oldest PING not answered yet; 0: none */
	bool release_after_kill; /* KILLING a hung service of a term: release then */
	/* our own pod is gone or was replaced (a label PATCH said so): the
	 * service's identity is stale, no candidate until a new HELLO */
	bool pod_unusable;
	usec_t scsi_at; /* the next registration check */
	bool scsi_busy;
	usec_t route_at; /* the next endpoints check (MASTER) */
	bool route_busy;
	/* this term began with no service connected (agent.fence_without_service):
	 * if none connects by the end of the claim, it is released as one that
	 * promoted nothing */
	bool fence_only;
	bool continued;     /* this term continues a predecessor's on this node */
	usec_t fence_began; /* when this term's first fence run started */
	usec_t claim_began; /* when the claim's first run started */
	/* the service stepped down by itself in this term and is being (or
	 * was, at repromoted_at) promoted again in it; 0: not in this term */
	bool again;
	usec_t repromoted_at;
	usec_t ready_at;        /* READY of this term's last promotion */
	char again_reason[256]; /* why the service stepped down */
	bool untaint_pending, untaint_busy;
	usec_t untaint_at;
	int64_t promotions, demotions;
	/* After promotions that failed in a row (FAILED while promoting, or a
	 * master that stepped down), this node is no candidate until then:
	 * 0.5 s doubling per failure up to 8 s, so that two nodes whose
	 * service cannot serve do not pass the Lease back and forth at the
	 * API server's speed.  Cleared by a promotion that completes; a
	 * minute without a failure starts the count again. */
	int failures;
	usec_t candidate_after, last_failure;
};

/* A master whose service stepped down by itself is promoted again in the
 * same term at most once in this long; a second step-down within it ends
 * the term.  Defence in depth: a promotion again needs a target that lost
 * its state since the store opened, so a store that keeps failing on a
 * target that keeps it (a full LUN, a bad path) is released at once; this
 * bounds a target whose registrations never stay (one recovery per
 * interval, not one per write). */
#define SM_REPROMOTE_INTERVAL (10 * USEC_PER_SEC)
/* ... and its claim is tried again for at most this long (a target still
 * restarting does not answer); then the term is released as before, so
 * that a node whose path to the storage broke does not hold it idle. */
#define SM_REPROMOTE_CLAIM_MAX (10 * USEC_PER_SEC)

/* The pause after `failures` failed promotions in a row. */
usec_t sm_failure_backoff(int failures);

void sm_init(struct sm *s, const struct sm_config *cfg);

/* Apply one event at time `now`; fx is reset and receives the effects, in
 * the order they are to be carried out. */
void sm_step(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx);

/* When the machine needs an SE_TICK next (mono usec); USEC_INFINITY: no
 * timer is pending. */
usec_t sm_wake_at(const struct sm *s);

const char *sm_state_name(enum sm_state st);
const char *sm_job_name(enum sm_job j);

/* Whether a service of ours may hold a write grant that it has not
 * confirmed giving up (the watchdog is not fed meanwhile). */
bool sm_unconfirmed_demotion(const struct sm *s);
