/* orchestrator: the agent's behaviour, tying election, the local service,
 * fencing and the role label together.
 *
 * The states and transitions are orch_sm.h's pure transition function;
 * this module feeds it inputs and carries out its effects:
 *
 *   - the orchestrator thread takes one input at a time (sticky slots for a
 *     stop and for the newest term start and end; a FIFO that never drops
 *     for the service's messages and the jobs' results), steps the machine,
 *     and does the quick effects: control-socket lines, the Lease release,
 *     Events, metrics, the failover timeline;
 *   - one worker thread runs the slow effects (a fence pipeline run, the
 *     claim and label PATCHes, waiting for a process to exit, a kill) one
 *     at a time and posts each result back;
 *   - RENEW and DEMOTE are sent straight from the elector's callbacks, never
 *     queued behind anything; write permission reaches the service as
 *     PROMOTE/RENEW until_us (an absolute CLOCK_MONOTONIC time: a line that
 *     waits in the socket cannot extend it), the term's validity less a
 *     margin;
 *   - a watchdog thread (when configured) feeds the device once a second
 *     while the orchestrator thread makes progress and no demotion is
 *     unconfirmed.
 *
 * Only a node whose service is connected and STANDBY contends for the
 * Lease. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"

struct k8s_client;
struct elector;
struct control;
struct fence_methods;
struct fence_pipeline_opts;
struct events;
struct metrics;

enum orch_service_mode {
	ORCH_SERVICE_CONTROL, /* the service connects to the control socket */
	ORCH_SERVICE_PROBE,   /* a service that does not integrate: health probe */
	ORCH_SERVICE_NONE,    /* no local service: election and fencing only */
};

struct orch_options {
	const char *node;
	const char *selector; /* the service's pods (probe mode finds its own) */
	const char *probe;    /* "" (control socket), "none", or a probe URL */
	usec_t probe_interval;
	const char *service_namespace;
	const char *label_key;   /* "role" */
	const char *label_value; /* "master" */
	const char *endpoints;   /* service.endpoints: Service to write; NULL or "" none */
	long request_timeout_ms;
	usec_t write_margin;      /* subtracted from the term's validity for until_us */
	usec_t restart_grace;     /* agent.restart_grace_ms: keep's parting renewal (0: none) */
	usec_t promote_timeout;   /* PROMOTE → READY */
	usec_t demote_timeout;    /* DEMOTE → DEMOTED, then kill */
	usec_t kill_timeout;      /* the killed service's death must be confirmed by then */
	usec_t heartbeat;         /* PING the service this often (0: never) */
	usec_t heartbeat_timeout; /* an unanswered PING this old: the service is hung */
	/* A watchdog device fed while this node may write (selffence.h), ""
	 * or NULL: none.  Fed every second while the orchestrator makes
	 * progress, its service is not in an unconfirmed demotion, and no
	 * self-fence failed; never fed again once a killed service survived. */
	const char *watchdog_device;
	usec_t fence_retry;   /* pause between failed fence runs while leading */
	usec_t fence_give_up; /* agent.fence_give_up_ms (0: never) */
	/* NULL when no fence method is configured */
	const struct fence_methods *methods;
	/* scsi-pr's LUNs (NULL/0: none) and IQN prefix (NULL: the default),
	 * whose registrations are checked every scsi_check (0: never) */
	const char *const *scsi_luns;
	size_t n_scsi_luns;
	/* agent.api_outage = ride-through: the elector may ride through an
	 * API outage while our service is master on one of scsi_luns (it said
	 * store=URL in HELLO) */
	bool ride_through;
	/* agent.fence_without_service: with no service connected, take a
	 * Lease owed an expired-level fence, fence, and release it saying
	 * nothing was promoted */
	bool fence_without_service;
	/* lift the out-of-service taint from this node when it is back (at
	 * start, and as a follower again after a term) */
	bool untaint;
	/* scsi-pr is a fence method: a term's claim registers this node's key
	 * on scsi_luns, the Lease confirmed right before (the store registers
	 * only where its node's key already is: scsi_resv_join_store) */
	bool scsi_claim;
	const char *scsi_iqn_prefix;
	usec_t scsi_check;
	const struct fence_pipeline_opts *fence_opts;
	struct events *events; /* NULL: no Kubernetes Events */
	/* the Lease: what an Event is about when no pod of ours is (a term
	 * held only to fence); NULL: such Events are not posted */
	const char *lease_namespace, *lease_name;
	struct metrics *metrics; /* NULL: no metrics */
};

struct orchestrator;

int orch_new(struct k8s_client *client, const struct orch_options *opts, struct orchestrator **ret);

/* The elector and the control socket are created by the caller with the
 * callbacks from orch_elector_callbacks()/orch_control_callbacks() and this
 * orchestrator as userdata, then attached here before orch_start(). */
void orch_attach(struct orchestrator *o, struct elector *e, struct control *c);
const struct elector_callbacks *orch_elector_callbacks(void);
const struct control_callbacks *orch_control_callbacks(void);

int orch_start(struct orchestrator *o);

/* Orderly handover (SIGTERM): demote the local service, remove its label,
 * stop the elector releasing the Lease with `reason`.  Blocks up to the
 * demote timeout plus two requests. */
void orch_shutdown(struct orchestrator *o, const char *reason);

/* agent.on_sigterm = keep: stop without DEMOTE, unlabel or release; the
 * service writes on until its grant ends, and the next incarnation of the
 * agent on this node continues the term (elector_params.succession). */
void orch_stop_keeping_term(struct orchestrator *o, const char *reason);

/* The same for a restart (SIGTERM with agent.on_sigterm = keep): with
 * restart_grace set and the service promoted in the term held, first the
 * parting renewal (elector_stop_parting()), whose longer validity the
 * service is granted, so that it writes on until the next incarnation. */
void orch_stop_for_restart(struct orchestrator *o, const char *reason);

struct orchestrator *orch_free(struct orchestrator *o);

/* A snapshot for /status (JSON object, caller frees). */
struct cJSON *orch_status_json(struct orchestrator *o);

/* Whether the agent is alive: for /healthz.  False (with the reason) when
 * the orchestrator thread has not been through its loop for
 * ORCH_LIVE_STALE, a job has run for longer than ORCH_JOB_STALE, or the
 * election thread has been idle for ORCH_LIVE_STALE: a wedged agent, which
 * the kubelet's liveness probe then restarts. */
#define ORCH_LIVE_STALE (10 * USEC_PER_SEC)
#define ORCH_JOB_STALE  (120 * USEC_PER_SEC)
bool orch_alive(struct orchestrator *o, char *why, size_t whylen);

/* Whether the agent is ready: for /readyz. */
bool orch_ready(struct orchestrator *o, char *why, size_t whylen);
