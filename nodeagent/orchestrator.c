/* orchestrator: the agent's behaviour (see orchestrator.h), as three parts:
 *
 *   - the transition function (orch_sm.c): pure, unit-tested;
 *   - the orchestrator thread: takes one input at a time, steps the machine
 *     and carries out the quick effects (control-socket lines, Lease
 *     release, Events, metrics, the timeline); it never waits on the API;
 *   - the worker thread: runs the slow effects (jobs: a fence run, a label
 *     PATCH, waiting for a process to exit, a kill) one at a time and posts
 *     each result back as an input.
 *
 * Inputs never get lost: a stop, the newest term that began and the newest
 * that ended are sticky slots (the elector's callbacks must not block); the
 * service's messages and the jobs' results go through a FIFO whose
 * producers wait for room instead of dropping.
 *
 * Locking: `mu` guards the inputs, the service's flags, the term and the
 * status snapshot.  The machine itself belongs to the orchestrator thread. */
#include "config.h"

#include "nodeagent/orchestrator.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "fencing/fence_scsi.h"
#include "fencing/fence_volume.h"
#include "fencing/pipeline.h"
#include "fencing/selffence.h"
#include "lib/failpoint.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/control.h"
#include "nodeagent/elector.h"
#include "nodeagent/endpoints.h"
#include "nodeagent/events.h"
#include "nodeagent/http.h"
#include "nodeagent/metrics.h"
#include "nodeagent/orch_sm.h"
#include "nodeagent/probe.h"

#define QUEUE_MAX    64
#define JOBS_MAX     16
#define TIMELINE_MAX 24

struct tl_step {
	char step[32];
	usec_t at;
	char detail[256];
};

/* One run of the fence pipeline, kept for /status. */
#define FENCE_HISTORY 10
struct fence_run {
	usec_t started_wall;
	struct fence_report rep;
};

struct orchestrator {
	struct k8s_client *client;
	struct orch_options o;
	enum orch_service_mode mode;
	char probe_url[512], selector[512];
	pthread_t probe_thread;
	bool probe_started, probe_stop;
	char last_label_err[512]; /* worker thread */
	char master_told[600];    /* worker: the MASTER line last sent to our standby */
	char node[254], ns[254], label_key[64], label_value[64];
	struct endpoints_writer *endpoints; /* service.endpoints; NULL: none */
	/* one switch at a time (the worker's label job, the route thread);
	 * it guards the writer and the three fields below */
	pthread_mutex_t route_mu;
	char last_ep_err[512]; /* the endpoints error last logged */
	/* the term and pod uid the endpoints were last written (or found)
	 * for: the label's job does not write them again */
	int64_t routed_epoch;
	char routed_uid[64];
	usec_t route_prepared_at; /* worker: the standby's last prepare_route() */
	struct elector *elector;
	struct control *control;

	pthread_mutex_t mu;
	pthread_cond_t cond;  /* CLOCK_MONOTONIC; inputs arrived, or stop */
	pthread_cond_t space; /* room in the FIFO */
	pthread_t thread, worker;
	bool started, stopped, worker_started;
	/* Inputs, under mu.  Sticky: a stop; the newest term that began and
	 * the newest that ended, each handed out once, in epoch order. */
	bool shutting_down, shutdown_taken, shutdown_keep, shutdown_parting;
	char shutdown_reason[256];
	/* by arrival, not by epoch (a recreated Lease counts from 1 again):
	 * seq of the slot's input (0: empty), handed out once */
	uint64_t input_seq;
	uint64_t start_seq;
	struct elector_term start_term;
	usec_t start_at;
	uint64_t lost_seq;
	int64_t lost_epoch;
	char lost_reason[512];
	struct sm_event queue[QUEUE_MAX]; /* FIFO: service messages, job results */
	size_t q_head, q_len;
	bool orch_done; /* the orchestrator thread has exited: results are dropped */

	/* jobs for the worker, under mu */
	struct sm_effect jobs[JOBS_MAX];
	size_t j_head, j_len;
	bool worker_stop;
	/* service.endpoints: the route thread runs JOB_ROUTE (the machine has
	 * at most one out), beside the worker, so that a slow API delays no
	 * fence; route_pending: one queued (under mu) */
	pthread_t route_thread;
	bool route_started, route_stop, route_pending;
	struct sm_effect route_job;
	/* the term whose first route was queued, and the last term whose
	 * first route has its EndpointSlice written or was answered (under
	 * mu; route_done signals it); route_now_epoch: the term of the switch
	 * running now, whether it is a term's first (under route_mu) */
	int64_t route_first_epoch, route_done_epoch, route_now_epoch;
	bool route_now_first;
	pthread_cond_t route_done;

	/* shared with callbacks, under mu */
	bool svc_connected, svc_candidate;
	struct control_peer peer;
	bool leading;
	int64_t epoch;
	usec_t valid_until;
	int64_t promoted_epoch; /* epoch of the last PROMOTE sent; RENEW only for it */
	bool parting;           /* stopping with a parting renewal: no DEMOTE on the way out */
	uint64_t promoted_gen;  /* ... and the connection it went to */
	int64_t seen_epoch;     /* the newest term seen (-1: none yet): a transition each */

	/* the machine: orchestrator thread only */
	struct sm sm;
	/* its snapshot, under mu */
	enum sm_state state;
	bool unconfirmed;       /* a demotion not confirmed yet: the watchdog waits */
	bool pod_unusable;      /* sm.pod_unusable: no candidate */
	usec_t candidate_after; /* sm.candidate_after: no candidate before */
	int64_t promotions, demotions;

	/* the watchdog: fed by wd_thread while the orchestrator thread makes
	 * progress (heartbeat, atomic) and may write */
	struct selffence_watchdog *wd;
	pthread_t wd_thread;
	bool wd_started, wd_stop; /* wd_stop under mu */
	usec_t heartbeat;         /* atomic */
	usec_t job_since;         /* atomic: when the worker's current job began, 0: idle */
	enum sm_job job_kind;     /* under mu: the worker's current job */
	bool selffence_failed;    /* atomic: a killed service survived */
	char wd_why[128];         /* wd thread only: why it is not fed */
	struct tl_step timeline[TIMELINE_MAX];
	size_t n_timeline;
	usec_t tl_origin, tl_origin_wall, tl_end;
	char tl_from[254], tl_to[254];
	bool tl_ok;
	struct fence_run fences[FENCE_HISTORY];
	size_t n_fences; /* total ever; the ring holds the last FENCE_HISTORY */
	/* worker: the pods each duty's first pod-delete found (fence_pins),
	 * by term and victim */
	struct {
		int64_t epoch;
		char victim[254];
		struct fence_pins pins;
	} pins[4];
	size_t pins_next;
	/* worker: each LUN's last registration check (0 unknown, 1 ok, -errno) */
	int scsi_state[FENCE_SCSI_LUNS_MAX];
	/* when a registration check that found a LUN with no registration at
	 * all (the target lost its state) began, before it read the keys: 0
	 * never (the worker's own) */
	usec_t scsi_empty_at[FENCE_SCSI_LUNS_MAX];
};

/* --------------------------------------------------------------- inputs */

/* Append to the FIFO, waiting for room (a producer is slowed, an input is
 * never dropped).  Once the orchestrator thread is gone nothing reads it. */
static void enqueue(struct orchestrator *o, const struct sm_event *ev)
{
	pthread_mutex_lock(&o->mu);
	while (o->q_len == QUEUE_MAX && !o->orch_done)
		pthread_cond_wait(&o->space, &o->mu);
	if (!o->orch_done) {
		struct sm_event *q = &o->queue[(o->q_head + o->q_len) % QUEUE_MAX];
		*q = *ev;
		q->at = clock_mono_usec();
		o->q_len++;
		pthread_cond_broadcast(&o->cond);
	}
	pthread_mutex_unlock(&o->mu);
}

static bool input_pending_locked(struct orchestrator *o)
{
	return (o->shutting_down && !o->shutdown_taken) || o->start_seq || o->lost_seq ||
	       o->q_len > 0;
}

/* The next input, waiting until `deadline`: false on time-out.  Order: a
 * stop; then the pending term start and end, in the order they came; then
 * the FIFO. */
static bool dequeue(struct orchestrator *o, usec_t deadline, struct sm_event *ret)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(deadline / USEC_PER_SEC),
	        .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};
	bool got = true;
	bool start, lost;

	pthread_mutex_lock(&o->mu);
	while (!input_pending_locked(o) && clock_mono_usec() < deadline)
		if (pthread_cond_timedwait(&o->cond, &o->mu, &ts) == ETIMEDOUT)
			break;
	start = o->start_seq != 0;
	lost = o->lost_seq != 0;
	memset(ret, 0, sizeof(*ret));
	if (o->shutting_down && !o->shutdown_taken) {
		ret->type = SE_SHUTDOWN;
		ret->at = clock_mono_usec();
		ret->result = o->shutdown_keep ? 1 : 0;
		str_copy(ret->text, sizeof(ret->text), o->shutdown_reason);
		o->shutdown_taken = true;
	} else if (start && (!lost || o->start_seq < o->lost_seq)) {
		ret->type = SE_STARTED;
		ret->at = o->start_at;
		ret->epoch = o->start_term.epoch;
		ret->term = o->start_term;
		o->start_seq = 0;
	} else if (lost) {
		ret->type = SE_LOST;
		ret->at = clock_mono_usec();
		ret->epoch = o->lost_epoch;
		str_copy(ret->text, sizeof(ret->text), o->lost_reason);
		o->lost_seq = 0;
	} else if (o->q_len > 0) {
		*ret = o->queue[o->q_head];
		o->q_head = (o->q_head + 1) % QUEUE_MAX;
		o->q_len--;
		pthread_cond_broadcast(&o->space);
	} else {
		got = false;
	}
	pthread_mutex_unlock(&o->mu);
	return got;
}

/* ------------------------------------------------------------- timeline */

/* Start the timeline of a failover from `from` to `to`, which began at
 * mono time `origin`. */
static void tl_begin(struct orchestrator *o, usec_t origin, const char *from, const char *to)
{
	pthread_mutex_lock(&o->mu);
	o->n_timeline = 0;
	o->tl_origin = origin;
	o->tl_origin_wall = clock_real_usec() - (clock_mono_usec() - origin);
	o->tl_end = 0;
	o->tl_ok = false;
	str_copy(o->tl_from, sizeof(o->tl_from), from);
	str_copy(o->tl_to, sizeof(o->tl_to), to);
	pthread_mutex_unlock(&o->mu);
}

static void tl_finish(struct orchestrator *o, bool ok)
{
	pthread_mutex_lock(&o->mu);
	if (!o->tl_end) {
		o->tl_end = clock_mono_usec();
		o->tl_ok = ok;
	}
	pthread_mutex_unlock(&o->mu);
}

static void tl_add(struct orchestrator *o, const char *step, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void tl_add(struct orchestrator *o, const char *step, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&o->mu);
	if (o->n_timeline < TIMELINE_MAX) {
		struct tl_step *s = &o->timeline[o->n_timeline++];
		str_copy(s->step, sizeof(s->step), step);
		s->at = clock_mono_usec();
		va_start(ap, fmt);
		vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&o->mu);
}

/* ------------------------------------------------------------ helpers */

/* The end of the write permission to grant (CLOCK_MONOTONIC, usec): the
 * term's validity less the margin.  None is left when it is not after now. */
static usec_t grant_until(struct orchestrator *o, usec_t valid_until)
{
	return valid_until - o->o.write_margin;
}

/* Whether work for term `epoch` should go on: we still lead in it, and no
 * shutdown is pending (a SIGTERM must not wait behind a job). */
static bool still_leading(struct orchestrator *o, int64_t epoch)
{
	int64_t e;
	bool stopping;

	pthread_mutex_lock(&o->mu);
	stopping = o->shutting_down;
	pthread_mutex_unlock(&o->mu);
	return !stopping && elector_is_leader(o->elector, &e) && e == epoch;
}

/* The role label changes only under preconditions that a newer term
 * invalidates.  Every change writes the pod's kubefence.io/role-epoch
 * annotation with the term's epoch, and carries the pod's uid (a recreated
 * pod of the same name is never touched) and the resourceVersion just read,
 * whose role-epoch was no newer than the term.  A newer term's first step is
 * to write its epoch on every other pod of the service (label removed), so a
 * PATCH of an older term that reaches the API server after that — issued
 * just before its term ended, delivered late — fails on the resourceVersion
 * instead of putting the label back: the Service never selects two pods. */
#define ROLE_EPOCH_ANN "kubefence.io/role-epoch"

static int64_t pod_role_epoch(const cJSON *pod)
{
	const cJSON *ann = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "annotations");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(ann, ROLE_EPOCH_ANN);

	return cJSON_IsString(v) ? strtoll(v->valuestring, NULL, 10) : 0;
}

static bool pod_labelled(struct orchestrator *o, const cJSON *pod)
{
	const cJSON *labels = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "labels");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, o->label_key);

	return cJSON_IsString(v) && strcmp(v->valuestring, o->label_value) == 0;
}

/* One conditional PATCH of pod (an object just read): label set or removed,
 * role-epoch = epoch.  -ESTALE when the pod changed since it was read. */
static int role_patch(struct orchestrator *o, const cJSON *pod, int64_t epoch, bool set, char *err,
                      size_t errlen)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
	const cJSON *uid = cJSON_GetObjectItemCaseSensitive(m, "uid");
	const cJSON *rv = cJSON_GetObjectItemCaseSensitive(m, "resourceVersion");
	char path[512], e[32];
	cJSON *patch, *meta, *labels, *ann;
	int r;

	if (!cJSON_IsString(name) || !cJSON_IsString(uid) || !cJSON_IsString(rv)) {
		errbuf_set(err, errlen, "pod without name, uid or resourceVersion");
		return -EBADMSG;
	}
	r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", name->valuestring);
	if (r < 0)
		return r;
	snprintf(e, sizeof(e), "%" PRId64, epoch);
	patch = cJSON_CreateObject();
	meta = cJSON_AddObjectToObject(patch, "metadata");
	labels = meta ? cJSON_AddObjectToObject(meta, "labels") : NULL;
	ann = meta ? cJSON_AddObjectToObject(meta, "annotations") : NULL;
	if (!labels || !ann || !cJSON_AddStringToObject(meta, "uid", uid->valuestring) ||
	    !cJSON_AddStringToObject(meta, "resourceVersion", rv->valuestring) ||
	    !cJSON_AddStringToObject(ann, ROLE_EPOCH_ANN, e) ||
	    !(set ? cJSON_AddStringToObject(labels, o->label_key, o->label_value)
	          : cJSON_AddNullToObject(labels, o->label_key))) {
		cJSON_Delete(patch);
		return -ENOMEM;
	}
	r = set ? FAILPOINT(AGENT_LABEL_BEFORE_PATCH) : FAILPOINT(AGENT_UNLABEL_BEFORE_PATCH);
	if (r < 0)
		errbuf_set(err, errlen, "fault point: %s", strerror(-r));
	else
		r = k8s_merge_patch(o->client, path, patch, o->o.request_timeout_ms, NULL, err,
		                    errlen);
	cJSON_Delete(patch);
	if (r >= 0) {
		r = set ? FAILPOINT(AGENT_LABEL_AFTER_PATCH) : FAILPOINT(AGENT_UNLABEL_AFTER_PATCH);
		if (r < 0)
			errbuf_set(err, errlen, "fault point: the answer was lost: %s",
			           strerror(-r));
	}
	return r;
}

/* Set or remove the role label of this node's pod for term `epoch`: read
 * it, check it, patch it conditionally; a pod that changed meanwhile (a
 * status update) is read again.  Returns 0; 1 when a newer term owns the
 * pod (nothing done: this term is over); -ENOENT when the pod is gone,
 * -ESTALE when it was replaced (another uid); or another -errno.  On 0,
 * *ret_pod (when not NULL) is the pod as read right before the PATCH. */
static int set_own_role(struct orchestrator *o, const char *pod, const char *uid, int64_t epoch,
                        bool set, cJSON **ret_pod, char *err, size_t errlen)
{
	char path[512];
	int r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", pod);

	for (int attempt = 0; r >= 0 && attempt < 5; attempt++) {
		cJSON *obj = NULL;
		const cJSON *u;

		r = k8s_get(o->client, path, o->o.request_timeout_ms, &obj, err, errlen);
		if (r < 0)
			return r;
		u = cJSON_GetObjectItemCaseSensitive(
		        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "uid");
		if (uid && uid[0] && (!cJSON_IsString(u) || strcmp(u->valuestring, uid) != 0)) {
			errbuf_set(err, errlen, "pod '%s' was replaced (uid %s, not %s)", pod,
			           cJSON_IsString(u) ? u->valuestring : "?", uid);
			cJSON_Delete(obj);
			return -ESTALE;
		}
		if (pod_role_epoch(obj) > epoch) {
			errbuf_set(err, errlen,
			           "pod '%s' was claimed by term %" PRId64 " (ours %" PRId64 ")",
			           pod, pod_role_epoch(obj), epoch);
			cJSON_Delete(obj);
			return 1;
		}
		if (!set && !pod_labelled(o, obj)) {
			cJSON_Delete(obj);
			return 0; /* nothing to remove */
		}
		r = role_patch(o, obj, epoch, set, err, errlen);
		if (r == 0 && ret_pod) {
			*ret_pod = obj;
			obj = NULL;
		}
		cJSON_Delete(obj);
		if (r != -ESTALE)
			return r;
		r = 0; /* changed since read: read again */
	}
	return r < 0 ? r : -EAGAIN;
}

/* Claim one other pod, as listed (`pod`), for term `epoch`: 0 when it is
 * claimed (*ret_had: it carried the role label, now removed) or was
 * already, 1 when a later term claimed it, -errno otherwise.  A pod changed
 * since it was read (409) is read again and tried again at once: a
 * StatefulSet's replacement of a force-deleted pod changes often in its
 * first second, and a retry of the whole claim would wait a claim retry. */
static int claim_pod(struct orchestrator *o, const cJSON *pod, int64_t epoch, bool *ret_had,
                     char *err, size_t errlen)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "name");
	const cJSON *cur = pod;
	cJSON *fresh = NULL;
	char path[512];
	int r;

	*ret_had = false;
	for (int attempt = 0;; attempt++) {
		bool had = pod_labelled(o, cur);

		if (pod_role_epoch(cur) > epoch) {
			r = 1;
			break;
		}
		if (pod_role_epoch(cur) == epoch && !had) {
			r = 0; /* claimed already */
			break;
		}
		r = role_patch(o, cur, epoch, false, err, errlen);
		if (r >= 0)
			*ret_had = had;
		if (r != -ESTALE || attempt >= 3 || !cJSON_IsString(name))
			break;
		r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", name->valuestring);
		cJSON_Delete(fresh);
		fresh = NULL;
		if (r >= 0)
			r = k8s_get(o->client, path, o->o.request_timeout_ms, &fresh, err, errlen);
		if (r < 0)
			break;
		cur = fresh;
	}
	cJSON_Delete(fresh);
	return r;
}

/* Claim every other pod of the service for term `epoch`: remove the role
 * label and write the term's role-epoch, on labelled and unlabelled pods
 * alike, so that no older term's PATCH can land on them any more.  Returns
 * 0 when every other pod is claimed (*ret_removed: labels removed), 1 when
 * some pod belongs to a newer term (this term is over), or -errno (the
 * caller retries). */
static int claim_others(struct orchestrator *o, const char *own_pod, int64_t epoch,
                        int *ret_removed)
{
	char path[512], err[1024] = "";
	cJSON *list = NULL, *item;
	int r, removed = 0;

	r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", NULL);
	if (r < 0)
		return r;
	/* Only the service's own pods: the role label may mean something else
	 * to other workloads of the namespace. */
	r = k8s_list(o->client, path, o->selector, NULL, o->o.request_timeout_ms, &list, err,
	             sizeof(err));
	if (r < 0) {
		/* retried every 200 ms: say it once per distinct error */
		if (strcmp(err, o->last_label_err) != 0) {
			log_warning("listing the pods of '%s' in '%s' failed: %s; retrying",
			            o->selector, o->ns, err);
			str_copy(o->last_label_err, sizeof(o->last_label_err), err);
		}
		return r;
	}
	o->last_label_err[0] = '\0';
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items"))
	{
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
		bool had = false;

		if (!cJSON_IsString(name) || (own_pod && strcmp(name->valuestring, own_pod) == 0))
			continue;
		r = claim_pod(o, item, epoch, &had, err, sizeof(err));
		if (r == 1) {
			log_info("pod '%s/%s' was claimed by a later term (ours %" PRId64
			         "): this term is over",
			         o->ns, name->valuestring, epoch);
			break;
		}
		if (r < 0 && r != -ENOENT) {
			/* -ESTALE: it changed since the list; the next round reads it again */
			log_warning("claiming pod '%s/%s' for term %" PRId64
			            " failed: %s; retrying",
			            o->ns, name->valuestring, epoch, err);
			break;
		}
		if (r >= 0 && had) {
			removed++;
			log_info("removed %s=%s from pod '%s/%s'", o->label_key, o->label_value,
			         o->ns, name->valuestring);
		}
		r = 0;
	}
	cJSON_Delete(list);
	if (r == 0 && ret_removed)
		*ret_removed = removed;
	return r;
}

/* Remove the role label from our own pod (stepping down), retried for a
 * while: a label left behind would keep a dead master selected until the
 * successor claims the pod. */
static int unlabel_own(struct orchestrator *o, const char *pod, const char *uid, int64_t epoch)
{
	char err[1024] = "";
	usec_t until = clock_mono_usec() + 3 * USEC_PER_SEC;
	int r;

	if (!pod[0])
		return 0;
	for (;;) {
		r = set_own_role(o, pod, uid, epoch, false, NULL, err, sizeof(err));
		if (r >= 0 || r == -ENOENT || r == -ESTALE || clock_mono_usec() >= until)
			break;
		clock_sleep_until(clock_mono_usec() + 200 * USEC_PER_MSEC);
	}
	if (r < 0 && r != -ENOENT && r != -ESTALE)
		log_warning("removing %s=%s from own pod '%s/%s' failed: %s", o->label_key,
		            o->label_value, o->ns, pod, err);
	else
		tl_add(o, "unlabelled", "%s", pod);
	return r;
}

static void get_peer(struct orchestrator *o, struct control_peer *ret, bool *ret_connected)
{
	pthread_mutex_lock(&o->mu);
	*ret = o->peer;
	*ret_connected = o->svc_connected;
	pthread_mutex_unlock(&o->mu);
}

/* Post an Event about our service's pod (the object the operator looks
 * at); never blocks. */
static void post_event(struct orchestrator *o, const struct control_peer *p,
                       enum events_reason reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void post_event(struct orchestrator *o, const struct control_peer *p,
                       enum events_reason reason, const char *fmt, ...)
{
	struct events_object obj = {.api_version = "v1",
	                            .kind = "Pod",
	                            .namespace = o->ns,
	                            .name = p->pod,
	                            .uid = p->uid};
	char msg[EVENTS_MESSAGE_MAX];
	va_list ap;

	if (!o->o.events)
		return;
	if (!p->pod[0]) {
		/* no pod of ours (agent.fence_without_service): the Lease */
		if (!o->o.lease_name || !o->o.lease_namespace)
			return;
		obj = (struct events_object){.api_version = "coordination.k8s.io/v1",
		                             .kind = "Lease",
		                             .namespace = o->o.lease_namespace,
		                             .name = o->o.lease_name};
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)events_post(o->o.events, &obj, reason, "%s", msg);
}

/* Probe mode: find this node's pod of the service (selector + node). */
static int find_own_pod(struct orchestrator *o, struct control_peer *ret)
{
	char path[512], field[300], err[1024] = "";
	cJSON *list = NULL, *item;
	int r;

	r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", NULL);
	if (r < 0)
		return r;
	snprintf(field, sizeof(field), "spec.nodeName=%s", o->node);
	r = k8s_list(o->client, path, o->o.selector, field, o->o.request_timeout_ms, &list, err,
	             sizeof(err));
	if (r < 0) {
		log_warning("listing the service's pods on '%s' failed: %s", o->node, err);
		return r;
	}
	r = -ENOENT;
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items"))
	{
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(item, "metadata");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
		const cJSON *uid = cJSON_GetObjectItemCaseSensitive(meta, "uid");

		if (!cJSON_IsString(name) || !cJSON_IsString(uid))
			continue;
		str_copy(ret->pod, sizeof(ret->pod), name->valuestring);
		str_copy(ret->uid, sizeof(ret->uid), uid->valuestring);
		pthread_mutex_lock(&o->mu);
		str_copy(o->peer.pod, sizeof(o->peer.pod), name->valuestring);
		str_copy(o->peer.uid, sizeof(o->peer.uid), uid->valuestring);
		pthread_mutex_unlock(&o->mu);
		r = 0;
		break;
	}
	if (r < 0)
		log_warning("no pod matching '%s' runs on '%s'", o->o.selector, o->node);
	cJSON_Delete(list);
	return r;
}

struct term_check {
	struct orchestrator *o;
	int64_t epoch;
};

/* A fence run goes on only while its term does (checked before each
 * attempt of each method). */
static bool term_goes_on(void *data)
{
	const struct term_check *tc = data;

	return still_leading(tc->o, tc->epoch);
}

/* The fence methods that take the old master's pod (and its address)
 * away wait for this term's first route to be answered, for at most
 * FENCE_ROUTE_WAIT: a client the Service still sends to that address
 * would wait out its connect timeout, our standby refuses it at once.
 * scsi-pr does not wait. */
#define FENCE_ROUTE_WAIT (300 * USEC_PER_MSEC)

static void before_fence_method(void *data, const char *method)
{
	const struct term_check *tc = data;
	struct orchestrator *o = tc->o;
	usec_t began = clock_mono_usec(), deadline = began + FENCE_ROUTE_WAIT;
	struct timespec until = {.tv_sec = (time_t)(deadline / USEC_PER_SEC),
	                         .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000};

	if (strcmp(method, "pod-delete") != 0 && strcmp(method, "volume-detach") != 0)
		return;
	pthread_mutex_lock(&o->mu);
	while (o->route_first_epoch == tc->epoch && o->route_done_epoch < tc->epoch &&
	       pthread_cond_timedwait(&o->route_done, &o->mu, &until) == 0)
		;
	pthread_mutex_unlock(&o->mu);
	if (clock_mono_usec() - began >= USEC_PER_MSEC)
		log_debug("term %" PRId64 ": %s waited %" PRId64 " ms for the route", tc->epoch,
		          method, (int64_t)((clock_mono_usec() - began) / USEC_PER_MSEC));
}

/* One run of the fence pipeline against `victim` for term `epoch`.  The
 * machine retries a failed run after fence_retry, while the term lasts. */
static int job_fence(struct orchestrator *o, int64_t epoch, const char *victim,
                     enum fence_level level)
{
	struct fence_request req = {.node = victim};
	struct fence_report rep;
	size_t k;
	struct control_peer peer;
	bool connected;
	char text[2048];

	if (!still_leading(o, epoch))
		return JOB_CANCELLED;
	/* a retry of this term's duty deletes the pods its first run found,
	 * never a replacement made since */
	for (k = 0; k < 4; k++)
		if (o->pins[k].epoch == epoch && strcmp(o->pins[k].victim, victim) == 0)
			break;
	if (k == 4) {
		k = o->pins_next++ % 4;
		memset(&o->pins[k], 0, sizeof(o->pins[k]));
		o->pins[k].epoch = epoch;
		str_copy(o->pins[k].victim, sizeof(o->pins[k].victim), victim);
	}
	req.pins = &o->pins[k].pins;
	struct fence_pipeline_opts fo = *o->o.fence_opts;
	struct term_check tc = {o, epoch};
	fo.keep_going = term_goes_on;
	fo.keep_going_data = &tc;
	fo.before_method = before_fence_method;
	usec_t started_wall = clock_real_usec();
	fence_pipeline_run(&fo, o->o.methods->v, o->o.methods->n, level, &req, &rep);
	pthread_mutex_lock(&o->mu);
	o->fences[o->n_fences % FENCE_HISTORY] =
	        (struct fence_run){.started_wall = started_wall, .rep = rep};
	o->n_fences++;
	pthread_mutex_unlock(&o->mu);
	fence_report_format(&rep, text, sizeof(text));
	for (size_t i = 0; i < rep.n_steps; i++)
		if (!rep.steps[i].skipped)
			tl_add(o, "fenced", "%s %s: %s (%" PRId64 " ms)", rep.steps[i].method,
			       rep.steps[i].target,
			       rep.steps[i].result >= 0 ? "confirmed"
			                                : strerror(-rep.steps[i].result),
			       (int64_t)(rep.steps[i].duration / USEC_PER_MSEC));
	for (size_t i = 0; i < rep.n_steps; i++)
		if (!rep.steps[i].skipped)
			metrics_observe_fence(o->o.metrics, rep.steps[i].method,
			                      (double)rep.steps[i].duration / USEC_PER_SEC,
			                      rep.steps[i].result >= 0);
	get_peer(o, &peer, &connected);
	post_event(o, &peer, rep.result >= 0 ? EVENTS_FENCED : EVENTS_FENCE_FAILED,
	           "node %s, epoch %" PRId64 ", %" PRId64 " ms: %s", victim, epoch,
	           (int64_t)(rep.duration / USEC_PER_MSEC), text);
	if (rep.result >= 0) {
		log_info("event=fenced node='%s' level=%s epoch=%" PRId64 " duration_ms=%" PRId64
		         ": %s",
		         victim, fence_level_to_string(level), epoch,
		         (int64_t)(rep.duration / USEC_PER_MSEC), text);
		return 0;
	}
	log_error("event=fence-failed node='%s' epoch=%" PRId64
	          ": %s; not promoting, retrying in %" PRId64 " ms",
	          victim, epoch, text, (int64_t)(o->o.fence_retry / USEC_PER_MSEC));
	return rep.result < 0 ? rep.result : -EIO;
}

/* Register this node's key on the LUNs for the term.  The store the
 * service opens registers its own session only where the key already is
 * (scsi_resv_join_store), so that a PROMOTE reaching a fenced node late
 * opens nothing; the new master's key is put there here, by a node the
 * Lease confirms holds the term right before — after a fence that is a
 * no-op (the fence registered it), after a clean handover it is what lets
 * the new master's store open.  -EAGAIN: retried with the claim. */
static bool store_is_fenced_lun(const struct orchestrator *o, const struct control_peer *p);

static int job_scsi_keep(struct orchestrator *o, bool master, int64_t epoch, const char *only,
                         bool *ret_fenced);
static int lun_index(const struct orchestrator *o, const char *url);

/* The claim of a term whose service stepped down and is promoted again in
 * it.  Only where nothing of the old open can still write: the store is
 * one of our fenced LUNs, the term is not riding through an API outage,
 * and the target lost its state (a registration check found the LUN with
 * no registration at all) after `since`, when the store's open of this
 * term was READY — the old session's queued commands died with the target
 * then.  Otherwise (a path that broke while the target kept its state, a
 * directory store) commands of the old open may still be queued, and only
 * the successor's fence (PREEMPT AND ABORT, a LUN reset) stops them:
 * JOB_CLAIM_NOT_LOST, the term is released.  The LUN step is the
 * registration check's rule, not a join: register only on a LUN with no
 * registration, never where our key was removed while others are there
 * (a fence: JOB_CLAIM_FENCED). */
static int claim_again(struct orchestrator *o, int64_t epoch, const struct control_peer *peer,
                       usec_t since)
{
	bool fenced = false;
	int i, r;

	if (o->mode != ORCH_SERVICE_CONTROL || !store_is_fenced_lun(o, peer)) {
		log_warning("term %" PRId64
		            ": the service's store is not a LUN of fence.scsi_luns: "
		            "what its old open wrote may still be on its way; not promoting it "
		            "again",
		            epoch);
		return JOB_CLAIM_NOT_LOST;
	}
	if (elector_riding_since(o->elector)) {
		log_warning("term %" PRId64 ": riding through an API outage; not promoting the "
		            "service again",
		            epoch);
		return JOB_CLAIM_NOT_LOST;
	}
	i = lun_index(o, peer->store);
	r = job_scsi_keep(o, true, epoch, peer->store, &fenced);
	if (fenced)
		return JOB_CLAIM_FENCED;
	if (r < 0) {
		log_warning("term %" PRId64 ": the registration on LUN '%s' could not be checked "
		            "before promoting the service again; retrying",
		            epoch, peer->store);
		return -EAGAIN;
	}
	if (i < 0 || o->scsi_empty_at[i] <= since) {
		log_warning("term %" PRId64 ": LUN '%s' kept its registrations since the store "
		            "opened: commands of its old session may still be queued at the "
		            "target; not promoting it again",
		            epoch, peer->store);
		return JOB_CLAIM_NOT_LOST;
	}
	tl_add(o, "registered", "on LUN %s, which had lost every registration", peer->store);
	return 0;
}

static int claim_luns(struct orchestrator *o, int64_t epoch, bool again, usec_t since)
{
	struct fence_scsi_options so = {.iqn_prefix = o->o.scsi_iqn_prefix};
	struct fence_scsi_report rep;
	int r;

	struct control_peer peer;
	bool connected;

	get_peer(o, &peer, &connected);
	if (again)
		return claim_again(o, epoch, &peer, since);
	/* a fence-only term (no service here) promotes nothing: no key */
	if (!o->o.scsi_claim || (o->mode == ORCH_SERVICE_CONTROL && !connected))
		return 0;
	/* the service's own LUN when it named one of ours (the others are
	 * none of this promotion's business: one unreachable must not stop
	 * it); every LUN when the service cannot say (probe mode) */
	const char *own[1] = {peer.store};
	bool named = o->mode == ORCH_SERVICE_CONTROL;

	if (named && !store_is_fenced_lun(o, &peer))
		return 0;
	if (!elector_confirm_leader(o->elector, epoch)) {
		log_warning("term %" PRId64 ": the Lease could not be confirmed before registering "
		            "on the LUNs; retrying",
		            epoch);
		return -EAGAIN;
	}
	r = fence_scsi_join(o->node, named ? own : o->o.scsi_luns, named ? 1 : o->o.n_scsi_luns,
	                    &so, clock_mono_usec() + 5 * USEC_PER_SEC, &rep);
	for (size_t i = 0; i < rep.n; i++)
		if (rep.steps[i].result < 0)
			log_warning("term %" PRId64
			            ": registering on LUN '%s' failed: %s; retrying",
			            epoch, rep.steps[i].target, rep.steps[i].detail);
	if (r < 0)
		return -EAGAIN;
	tl_add(o, "registered", "on %zu LUN(s)", rep.n);
	return 0;
}

static int job_claim(struct orchestrator *o, int64_t epoch, const char *own_pod, bool again,
                     usec_t since)
{
	int removed = 0, k;

	if (!still_leading(o, epoch))
		return JOB_CANCELLED;
	k = claim_others(o, own_pod[0] ? own_pod : NULL, epoch, &removed);
	if (k == 0 && removed)
		tl_add(o, "unlabelled", "%d other pod(s)", removed);
	if (k == 0)
		k = claim_luns(o, epoch, again, since);
	return k;
}

/* How old the target a standby prepared may be for its term's first route
 * (it prepares one every ROUTE_PREPARE_EVERY while following). */
#define ROUTE_PREPARED_MAX_AGE (30 * USEC_PER_SEC)
#define ROUTE_PREPARE_EVERY    (10 * USEC_PER_SEC)

/* switch_endpoints, under route_mu.  pod NULL: the target prepared for
 * the pod of uid (-ENOENT, said nowhere, when there is none). */
static int switch_locked(struct orchestrator *o, const cJSON *pod, const char *uid, int64_t epoch,
                         bool check, bool first, bool *ret_wrote, char *err, size_t errlen)
{
	bool wrote = false;
	int r;

	o->route_now_epoch = epoch;
	o->route_now_first = first;
	r = pod ? endpoints_switch(o->endpoints, pod, epoch, check, &wrote, err, errlen)
	        : endpoints_switch_prepared(o->endpoints, uid, ROUTE_PREPARED_MAX_AGE, epoch,
	                                    &wrote, err, errlen);
	o->route_now_first = false;
	*ret_wrote = wrote;
	if (!pod && r == -ENOENT)
		return r;
	if (r == 0) {
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(
		        cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "uid");

		o->last_ep_err[0] = '\0';
		o->routed_epoch = epoch;
		str_copy(o->routed_uid, sizeof(o->routed_uid),
		         pod ? (cJSON_IsString(u) ? u->valuestring : "") : uid);
		if (!check)
			tl_add(o, "routed", "Service %s", o->o.endpoints);
		else if (wrote)
			log_warning("the endpoints of Service '%s/%s' did not name this master's "
			            "pod (term %" PRId64 "): written again",
			            o->ns, o->o.endpoints, epoch);
		return 0;
	}
	if (r == 1)
		return 1;
	if (strcmp(err, o->last_ep_err) != 0) {
		if (r == -EINVAL)
			log_error("service.endpoints: cannot point Service '%s/%s' at the master: "
			          "%s",
			          o->ns, o->o.endpoints, err);
		else
			log_warning("writing the endpoints of Service '%s/%s' failed: %s; retrying",
			            o->ns, o->o.endpoints, err);
		str_copy(o->last_ep_err, sizeof(o->last_ep_err), err);
	}
	return r == -EINVAL ? 0 : -EAGAIN;
}

/* Point the Service (service.endpoints) at our pod (`pod`, just read)
 * for term `epoch`.  0 (also when the Service cannot be used: said once,
 * and the term goes on, routed by whatever the Service selects, until the
 * master's check finds it usable), 1 when a later term wrote the endpoints
 * (this term is over), -EAGAIN to retry.  `check`: the master's periodic
 * check, where a write is a repair (logged) rather than a step of the
 * failover (timeline). */
static int switch_endpoints(struct orchestrator *o, const cJSON *pod, const char *uid,
                            int64_t epoch, bool check, bool first, char *ret_err, size_t ret_errlen)
{
	char err[1024] = "";
	bool wrote = false;
	int r;

	if (!still_leading(o, epoch))
		return JOB_CANCELLED;
	pthread_mutex_lock(&o->route_mu);
	r = switch_locked(o, pod, uid, epoch, check, first, &wrote, err, sizeof(err));
	pthread_mutex_unlock(&o->route_mu);
	if (r == 1) {
		log_warning("term %" PRId64 ": %s: this term is over", epoch, err);
		errbuf_set(ret_err, ret_errlen, "%s", err);
	}
	return r;
}

static int job_label(struct orchestrator *o, int64_t epoch, const char *pod, const char *uid,
                     char *err, size_t errlen)
{
	cJSON *obj = NULL;
	int r;

	if (!still_leading(o, epoch))
		return JOB_CANCELLED;
	r = set_own_role(o, pod, uid, epoch, true, o->endpoints ? &obj : NULL, err, errlen);
	if (r < 0 && r != -ENOENT && r != -EINVAL && r != -ESTALE)
		log_warning("labelling pod '%s/%s' %s=%s failed: %s; retrying", o->ns, pod,
		            o->label_key, o->label_value, err);
	/* Routed already by this term's first route, before its fence; else
	 * now.  Only a later term's write ends the term: any other failure is
	 * the master's route check's to repair (it comes a second after a
	 * failure), never a reason to hold the promotion back. */
	if (r == 0 && obj) {
		bool routed;

		pthread_mutex_lock(&o->route_mu);
		routed = o->routed_epoch == epoch && uid && strcmp(o->routed_uid, uid) == 0;
		pthread_mutex_unlock(&o->route_mu);
		if (!routed &&
		    switch_endpoints(o, obj, NULL, epoch, false, false, err, errlen) == 1)
			r = 1;
	}
	cJSON_Delete(obj);
	return r;
}

/* Our pod as it is now into *ret (the caller's to free); -ESTALE when it
 * was replaced (another uid than `uid`, unless that is empty: not the pod
 * this term promoted), else 0 or the GET's -errno. */
static int read_own_pod(struct orchestrator *o, const char *pod, const char *uid, cJSON **ret,
                        char *err, size_t errlen)
{
	char path[512];
	const cJSON *u;
	int r = k8s_path(path, sizeof(path), "v1", o->ns, "pods", pod);

	*ret = NULL;
	if (r >= 0)
		r = k8s_get(o->client, path, o->o.request_timeout_ms, ret, err, errlen);
	if (r < 0)
		return r;
	u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(*ret, "metadata"),
	                                     "uid");
	if (uid[0] && (!cJSON_IsString(u) || strcmp(u->valuestring, uid) != 0)) {
		errbuf_set(err, errlen, "pod '%s' was replaced", pod);
		cJSON_Delete(*ret);
		*ret = NULL;
		return -ESTALE;
	}
	return 0;
}

/* The Service's route to our pod: the term's first, before its fence
 * (`first`), or the master's check that it still routes there.  The pod is
 * read again: the address is the pod's as it is now. */
static int job_route(struct orchestrator *o, int64_t epoch, const char *pod, const char *uid,
                     bool first)
{
	char err[1024] = "";
	cJSON *obj = NULL;
	int r;

	if (!o->endpoints)
		return 0;
	if (!still_leading(o, epoch))
		return JOB_CANCELLED;
	/* a term's first: with what this standby prepared, no read first */
	if (first) {
		r = switch_endpoints(o, NULL, uid, epoch, false, true, NULL, 0);
		if (r != -ENOENT)
			return r;
	}
	r = read_own_pod(o, pod, uid, &obj, err, sizeof(err));
	if (r < 0) {
		log_debug("checking the endpoints of Service '%s/%s': %s", o->ns, o->o.endpoints,
		          err);
		return r;
	}
	r = switch_endpoints(o, obj, NULL, epoch, !first, first, NULL, 0);
	cJSON_Delete(obj);
	return r;
}

/* The registration check (fence_scsi_keep): say so when a LUN's state
 * changes, and when something was registered or reserved again. */
/* Asked by fence_scsi_keep() right before it registers or reserves: the
 * Lease must show this process holding the term the job was queued in. */
static bool keep_leader(void *data)
{
	const struct term_check *tc = data;

	return still_leading(tc->o, tc->epoch) && elector_confirm_leader(tc->o->elector, tc->epoch);
}

static int lun_index(const struct orchestrator *o, const char *url)
{
	for (size_t i = 0; i < o->o.n_scsi_luns; i++)
		if (strcmp(o->o.scsi_luns[i], url) == 0)
			return (int)i;
	return -1;
}

/* The registration check on every LUN of fence.scsi_luns, or on `only`
 * (one of them) when not NULL.  *ret_fenced (if not NULL): a LUN holds
 * others' keys but not ours. */
static int job_scsi_keep(struct orchestrator *o, bool master, int64_t epoch, const char *only,
                         bool *ret_fenced)
{
	struct fence_scsi_options so = {.iqn_prefix = o->o.scsi_iqn_prefix};
	struct fence_scsi_report rep;
	bool restored[FENCE_SCSI_LUNS_MAX] = {false}, empty[FENCE_SCSI_LUNS_MAX] = {false};
	struct control_peer peer;
	struct term_check tc = {o, epoch};
	const char *one[1] = {only};
	/* taken before the keys are read: "empty at or after this time" is
	 * what claim_again relies on, never later than the read */
	usec_t began = clock_mono_usec();
	bool connected;
	int r;

	r = fence_scsi_keep(o->node, only ? one : o->o.scsi_luns, only ? 1 : o->o.n_scsi_luns, &so,
	                    master ? keep_leader : NULL, &tc, clock_mono_usec() + 2 * USEC_PER_SEC,
	                    &rep, restored, empty);
	get_peer(o, &peer, &connected);
	for (size_t k = 0; k < rep.n; k++) {
		const struct fence_scsi_step *st = &rep.steps[k];
		int i = only ? lun_index(o, only) : (int)k;
		int now = st->result < 0 ? st->result : 1;

		if (i < 0)
			continue;
		if (empty[k])
			o->scsi_empty_at[i] = began;

		metrics_scsi_registered(o->o.metrics, st->target, st->result >= 0);
		if (restored[k]) {
			log_warning("event=reservation-restored lun='%s': %s", st->target,
			            st->detail);
			metrics_scsi_restored(o->o.metrics, st->target);
			post_event(o, &peer, EVENTS_RESERVATION_RESTORED, "LUN %s: %s", st->target,
			           st->detail);
		} else if (now != o->scsi_state[i]) {
			if (st->result < 0 && st->result != -ENOKEY)
				log_warning("registration on LUN '%s': %s", st->target, st->detail);
			else
				log_info("registration on LUN '%s': %s", st->target, st->detail);
		}
		o->scsi_state[i] = now;
		if (ret_fenced && st->result == -EBADE)
			*ret_fenced = true;
	}
	return r;
}

/* Kill the service that did not confirm DEMOTE, and confirm its death
 * (pidfd) within kill_timeout; otherwise the watchdog is starved so that
 * the node resets.  The pid is the one the kernel reported for the
 * socket's peer (SO_PEERCRED), in our PID namespace. */
/* A node that was fenced with the out-of-service taint is back once its
 * agent runs as a follower: lift the taint (non-graceful shutdown is over),
 * so that pods may be scheduled here again. */
static int job_untaint(struct orchestrator *o)
{
	char err[640] = "";
	int r = fence_volume_untaint_node(
	        o->client, o->node, clock_mono_usec() + o->o.request_timeout_ms * USEC_PER_MSEC,
	        err, sizeof(err));

	if (r == 0)
		log_info("removed the out-of-service taint from node '%s': it is back", o->node);
	else if (r == -ENOENT)
		r = 1; /* no Node object: nothing to lift */
	else if (r < 0)
		log_warning("cannot check node '%s' for the out-of-service taint: %s; again soon",
		            o->node, err[0] ? err : strerror(-r));
	return r;
}

static int job_kill(struct orchestrator *o, pid_t pid)
{
	struct selffence_opts so = {.pid = pid, .kill_timeout = o->o.kill_timeout};
	int r = selffence_run(&so);

	if (r >= 0) {
		log_info("event=self-fenced pid=%d outcome=%s", (int)pid,
		         r == SELFFENCE_GONE ? "gone" : "killed, confirmed dead");
		return 0;
	}
	__atomic_store_n(&o->selffence_failed, true, __ATOMIC_RELEASE);
	log_error("event=self-fence-failed pid=%d: %s; %s", (int)pid, strerror(-r),
	          o->wd ? "the watchdog is not fed any more: this node resets"
	                : "no watchdog (selffence.watchdog_device) to reset the node");
	if (o->wd)
		selffence_watchdog_starve(o->wd);
	return r;
}

/* A standby's agent resolves its route now and then (its pod, the
 * Service), so that its term's first route is two requests. */
static void prepare_route(struct orchestrator *o, const struct control_peer *peer)
{
	char err[1024] = "";
	cJSON *obj = NULL;
	usec_t now = clock_mono_usec();

	if (!o->endpoints || !peer->pod[0] ||
	    (o->route_prepared_at && now - o->route_prepared_at < ROUTE_PREPARE_EVERY))
		return;
	o->route_prepared_at = now;
	if (read_own_pod(o, peer->pod, peer->uid, &obj, err, sizeof(err)) == 0) {
		pthread_mutex_lock(&o->route_mu);
		if (endpoints_prepare(o->endpoints, obj, err, sizeof(err)) < 0)
			log_debug("preparing the route of pod '%s': %s", peer->pod, err);
		pthread_mutex_unlock(&o->route_mu);
	} else {
		log_debug("preparing the route of pod '%s': %s", peer->pod, err);
	}
	cJSON_Delete(obj);
}

/* Tell our standby service who the master is, so that it can name it when
 * it refuses a write: the pod of the service carrying the role label, its
 * IP and its first container port.  Sent when it changes; looked up about
 * once a second while following (one LIST). */
static void tell_master(struct orchestrator *o)
{
	char path[512], sel[700], err[1024] = "", line[600], holder[LEASE_IDENTITY_MAX];
	cJSON *list = NULL;
	const cJSON *pod, *meta, *spec, *status, *name, *ip, *port = NULL, *c;
	struct control_peer peer;
	bool connected;
	usec_t age;
	int64_t epoch;

	get_peer(o, &peer, &connected);
	if (connected && o->mode == ORCH_SERVICE_CONTROL)
		prepare_route(o, &peer);
	if (!connected || o->mode != ORCH_SERVICE_CONTROL || !o->elector ||
	    elector_observed(o->elector, holder, sizeof(holder), &age, &epoch) < 0 || !holder[0])
		return;
	if (k8s_path(path, sizeof(path), "v1", o->ns, "pods", NULL) < 0)
		return;
	snprintf(sel, sizeof(sel), "%s%s%s=%s", o->selector, o->selector[0] ? "," : "",
	         o->label_key, o->label_value);
	if (k8s_list(o->client, path, sel, NULL, o->o.request_timeout_ms, &list, err, sizeof(err)) <
	    0) {
		log_debug("looking up the master pod: %s", err);
		return;
	}
	pod = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(list, "items"), 0);
	meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
	spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
	status = cJSON_GetObjectItemCaseSensitive(pod, "status");
	name = cJSON_GetObjectItemCaseSensitive(meta, "name");
	ip = cJSON_GetObjectItemCaseSensitive(status, "podIP");
	c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(spec, "containers"), 0);
	port = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "ports"), 0);
	port = cJSON_GetObjectItemCaseSensitive(port, "containerPort");
	if (cJSON_IsString(name) && strcmp(name->valuestring, peer.pod) != 0) {
		char addr[300] = "-";
		if (cJSON_IsString(ip) && cJSON_IsNumber(port))
			snprintf(addr, sizeof(addr), "%s:%d", ip->valuestring, port->valueint);
		/* The observed Lease's epoch: a follower that never led has no
		 * term of its own (o->epoch 0, which the service refuses). */
		snprintf(line, sizeof(line), "%" PRId64 " %s %s", epoch, name->valuestring, addr);
		if (epoch > 0 && strcmp(line, o->master_told) != 0 &&
		    control_send_master(o->control, epoch, name->valuestring, addr) >= 0) {
			str_copy(o->master_told, sizeof(o->master_told), line);
			log_debug("told the standby: master is '%s' at %s", name->valuestring,
			          addr);
		}
	}
	cJSON_Delete(list);
}

/* --------------------------------------------------------------- worker */

static void *worker_main(void *arg)
{
	struct orchestrator *o = arg;

	for (;;) {
		struct sm_effect j;
		struct sm_event res = {.type = SE_JOB_DONE};

		pthread_mutex_lock(&o->mu);
		while (o->j_len == 0 && !o->worker_stop)
			pthread_cond_wait(&o->cond, &o->mu);
		if (o->j_len == 0) {
			pthread_mutex_unlock(&o->mu);
			return NULL; /* stopped, and every queued job done */
		}
		j = o->jobs[o->j_head];
		o->j_head = (o->j_head + 1) % JOBS_MAX;
		o->j_len--;
		o->job_kind = j.job;
		__atomic_store_n(&o->job_since, clock_mono_usec(), __ATOMIC_RELEASE);
		pthread_mutex_unlock(&o->mu);

		res.job = j.job;
		res.job_id = j.job_id;
		res.epoch = j.epoch;
		switch (j.job) {
		case JOB_FENCE:
			res.result = job_fence(o, j.epoch, j.a, (enum fence_level)j.level);
			break;
		case JOB_CLAIM:
			res.result = job_claim(o, j.epoch, j.a, j.flag, j.at);
			break;
		case JOB_FIND_POD:
			res.result = find_own_pod(o, &res.peer);
			break;
		case JOB_LABEL:
			res.result = job_label(o, j.epoch, j.a, j.b, res.text, sizeof(res.text));
			break;
		case JOB_UNLABEL:
			res.result = unlabel_own(o, j.a, j.b, j.epoch);
			break;
		case JOB_CONFIRM_EXIT:
			/* no pid, or no pidfd support, is no confirmation */
			res.result = selffence_wait_exit(j.pid, clock_mono_usec() + j.timeout);
			break;
		case JOB_KILL:
			res.result = job_kill(o, j.pid);
			break;
		case JOB_TELL_MASTER:
			tell_master(o);
			res.result = 0;
			break;
		case JOB_SCSI_KEEP:
			res.result = job_scsi_keep(o, j.flag, j.epoch, NULL, NULL);
			break;
		case JOB_UNTAINT:
			res.result = job_untaint(o);
			break;
		default:
			res.result = -EINVAL;
			break;
		}
		__atomic_store_n(&o->job_since, 0, __ATOMIC_RELEASE);
		enqueue(o, &res);
	}
}

/* A term's first route has its EndpointSlice written (or is over): the
 * pod-removing fence methods of that term may go on. */
static void first_routed(struct orchestrator *o, int64_t epoch)
{
	pthread_mutex_lock(&o->mu);
	if (epoch > o->route_done_epoch)
		o->route_done_epoch = epoch;
	pthread_cond_broadcast(&o->route_done);
	pthread_mutex_unlock(&o->mu);
}

/* endpoints_switch()'s hook, under route_mu. */
static void slice_written(void *data)
{
	struct orchestrator *o = data;

	if (o->route_now_first)
		first_routed(o, o->route_now_epoch);
}

/* The route thread: JOB_ROUTE, one at a time, beside the worker. */
static void *route_main(void *arg)
{
	struct orchestrator *o = arg;

	for (;;) {
		struct sm_effect j;
		struct sm_event res = {.type = SE_JOB_DONE};

		pthread_mutex_lock(&o->mu);
		while (!o->route_pending && !o->route_stop)
			pthread_cond_wait(&o->cond, &o->mu);
		if (!o->route_pending) {
			pthread_mutex_unlock(&o->mu);
			return NULL;
		}
		j = o->route_job;
		o->route_pending = false;
		pthread_mutex_unlock(&o->mu);
		res.job = j.job;
		res.job_id = j.job_id;
		res.epoch = j.epoch;
		res.result = job_route(o, j.epoch, j.a, j.b, j.flag);
		if (j.flag)
			first_routed(o, j.epoch);
		enqueue(o, &res);
	}
}

/* ------------------------------------------------------------- effects */

/* Carry out the machine's effects, in order.  Inputs that an effect
 * produces at once (a job that could not be queued, a PROMOTE that could
 * not be sent) go to `more`. */
static void run_effects(struct orchestrator *o, const struct sm_effects *fx, struct sm_event *more,
                        size_t *n_more)
{
	for (size_t i = 0; i < fx->n; i++) {
		const struct sm_effect *e = &fx->v[i];
		struct control_peer *p = &o->sm.peer;

		switch (e->type) {
		case FX_JOB:
			pthread_mutex_lock(&o->mu);
			if (e->job == JOB_ROUTE) {
				/* the machine has one out at a time: the slot is free */
				o->route_job = *e;
				o->route_pending = true;
				if (e->flag)
					o->route_first_epoch = e->epoch;
				pthread_cond_broadcast(&o->cond);
				pthread_mutex_unlock(&o->mu);
			} else if (o->j_len < JOBS_MAX && e->job == JOB_KILL) {
				/* a kill waits for nothing queued (an unlabel's retries) */
				o->j_head = (o->j_head + JOBS_MAX - 1) % JOBS_MAX;
				o->jobs[o->j_head] = *e;
				o->j_len++;
				pthread_cond_broadcast(&o->cond);
				pthread_mutex_unlock(&o->mu);
			} else if (o->j_len < JOBS_MAX) {
				o->jobs[(o->j_head + o->j_len) % JOBS_MAX] = *e;
				o->j_len++;
				pthread_cond_broadcast(&o->cond);
				pthread_mutex_unlock(&o->mu);
			} else {
				pthread_mutex_unlock(&o->mu);
				log_error("too many jobs queued; %s failed", sm_job_name(e->job));
				if (*n_more < 4)
					more[(*n_more)++] = (struct sm_event){.type = SE_JOB_DONE,
					                                      .job = e->job,
					                                      .job_id = e->job_id,
					                                      .result = -EAGAIN};
			}
			break;
		case FX_SEND_PROMOTE: {
			usec_t until, now = clock_mono_usec();
			int r = -ETIME;

			/* under mu: no RENEW of this term can overtake its PROMOTE;
			 * only to the connection the machine decided for */
			pthread_mutex_lock(&o->mu);
			until = grant_until(o, o->valid_until);
			o->promoted_epoch = e->epoch;
			o->promoted_gen = e->seq;
			o->svc_candidate = false; /* promoted: no candidate any more */
			if (until > now && o->leading && o->epoch == e->epoch)
				r = control_send_promote(o->control, e->seq, e->epoch, until);
			pthread_mutex_unlock(&o->mu);
			if (r < 0) {
				if (*n_more < 4)
					more[(*n_more)++] = (struct sm_event){
					        .type = SE_PROMOTE_UNSENT, .epoch = e->epoch};
			} else {
				tl_add(o, "promote-sent",
				       "PROMOTE epoch=%" PRId64 " (writes for %" PRId64
				       " ms) to '%s'",
				       e->epoch, (int64_t)((until - now) / USEC_PER_MSEC), p->pod);
			}
			break;
		}
		case FX_SEND_DEMOTE:
			/* no RENEW of that term after its DEMOTE */
			pthread_mutex_lock(&o->mu);
			if (o->promoted_epoch == e->epoch)
				o->promoted_epoch = -1;
			pthread_mutex_unlock(&o->mu);
			if (o->mode == ORCH_SERVICE_CONTROL)
				(void)control_send_demote(o->control, e->epoch, e->text);
			break;
		case FX_RELEASE:
			pthread_mutex_lock(&o->mu);
			if (o->promoted_epoch == e->epoch)
				o->promoted_epoch = -1;
			pthread_mutex_unlock(&o->mu);
			(void)FAILPOINT(AGENT_RELEASE_BEFORE);
			elector_release(o->elector, e->epoch, e->text,
			                (enum elector_release)e->code);
			break;
		case FX_FENCE_SETTLED:
			elector_fence_settled(o->elector, e->epoch, e->flag);
			(void)FAILPOINT(AGENT_FENCE_BEFORE_PROMOTE);
			break;
		case FX_STOP_ELECTOR: {
			/* keep: stop renewing, no release, and no DEMOTE when the
			 * elector ends the term on its way out.  With a restart
			 * grace and a service serving in this term, renew for the
			 * next incarnation first, grant the service as much
			 * (cb_renewed) and end without a DEMOTE (o->parting). */
			bool part = false;

			pthread_mutex_lock(&o->mu);
			if (e->flag && e->code && o->o.restart_grace && o->shutdown_parting)
				part = o->promoted_epoch >= 0 && o->promoted_epoch == o->epoch &&
				       o->leading;
			o->parting = part;
			if (e->flag && !part)
				o->promoted_epoch = -1;
			pthread_mutex_unlock(&o->mu);
			if (part)
				elector_stop_parting(o->elector, o->o.restart_grace);
			else
				elector_stop(o->elector, e->flag ? NULL : e->text);
			pthread_mutex_lock(&o->mu);
			if (e->flag)
				o->promoted_epoch = -1;
			pthread_mutex_unlock(&o->mu);
			break;
		}
		case FX_EVENT:
			post_event(o, p, (enum events_reason)e->code, "%s", e->text);
			break;
		case FX_TL_BEGIN:
			tl_begin(o, e->at, e->a, e->b);
			break;
		case FX_TL_ADD:
			tl_add(o, e->a, "%s", e->text);
			break;
		case FX_TL_FINISH:
			tl_finish(o, e->flag);
			break;
		case FX_METRIC:
			switch ((enum sm_metric)e->code) {
			case SMM_LEADER:
				metrics_set_role(o->o.metrics, METRICS_ROLE_LEADER);
				metrics_set_epoch(o->o.metrics, e->epoch);
				break;
			case SMM_FOLLOWER:
				metrics_set_role(o->o.metrics, METRICS_ROLE_FOLLOWER);
				break;
			case SMM_PROMOTION:
				metrics_promotion(o->o.metrics);
				metrics_observe_failover(o->o.metrics, e->seconds);
				break;
			case SMM_DEMOTION:
				metrics_demotion(o->o.metrics);
				break;
			}
			break;
		case FX_LOG:
			log_full(e->code, "%s", e->text);
			break;
		case FX_SEND_PING:
			(void)control_send_ping(o->control, e->seq);
			break;
		}
	}
}

/* Whether the service's store (HELLO store=, store_node=) is one of the
 * LUNs scsi-pr preempts, registered with this node's key: a successor
 * preempts the key of the node the Lease names, so a store that registered
 * another node's key would not be cut off. */
static bool store_is_fenced_lun(const struct orchestrator *o, const struct control_peer *p)
{
	const char *store = p->store;

	if (!store[0] || strcmp(p->store_node, o->node) != 0)
		return false;
	for (size_t i = 0; i < o->o.n_scsi_luns; i++)
		if (strcmp(o->o.scsi_luns[i], store) == 0)
			return true;
	return false;
}

static void step(struct orchestrator *o, const struct sm_event *ev)
{
	struct sm_event more[4];
	size_t n_more = 0;
	struct sm_effects fx;

	sm_step(&o->sm, ev, clock_mono_usec(), &fx);
	run_effects(o, &fx, more, &n_more);
	/* inputs the effects produced at once; each of these yields at most
	 * a release or a retry timer, never another immediate input */
	for (size_t i = 0; i < n_more; i++) {
		struct sm_event extra[4];
		size_t n_extra = 0;

		more[i].at = clock_mono_usec();
		sm_step(&o->sm, &more[i], more[i].at, &fx);
		run_effects(o, &fx, extra, &n_extra);
		if (n_extra)
			log_error("orchestrator: %zu input(s) of a failed effect dropped", n_extra);
	}
	pthread_mutex_lock(&o->mu);
	o->state = o->sm.st;
	if (o->elector)
		elector_set_ride_through(o->elector, o->o.ride_through && o->sm.st == SM_MASTER &&
		                                             o->svc_connected &&
		                                             store_is_fenced_lun(o, &o->peer));
	o->unconfirmed = sm_unconfirmed_demotion(&o->sm);
	o->pod_unusable = o->sm.pod_unusable;
	o->candidate_after = o->sm.candidate_after;
	o->promotions = o->sm.promotions;
	o->demotions = o->sm.demotions;
	pthread_mutex_unlock(&o->mu);
}

static void *orch_main(void *arg)
{
	struct orchestrator *o = arg;
	struct sm_event ev;
	usec_t planned = 0; /* when this thread meant to run next (0: not yet) */

	while (o->sm.st != SM_STOPPED) {
		usec_t now = clock_mono_usec(), deadline = now + USEC_PER_SEC,
		       wake = sm_wake_at(&o->sm);

		/* this thread's own lateness: how long after it meant to run it
		 * does (the agent stopped, starved); silence measured meanwhile
		 * proves nothing.  A wait it chose, for its next timer, is no
		 * stall: counting one as such (the time since the last turn,
		 * one PING interval when idle) reset the liveness clock at every
		 * PING once service.heartbeat_timeout_ms was at most twice
		 * service.heartbeat_ms, and a hung service went undetected. */
		usec_t late = planned && now > planned ? now - planned : 0;
		planned = now; /* a turn that does not wait: late if it runs long */
		__atomic_store_n(&o->heartbeat, now, __ATOMIC_RELEASE);
		/* a due timer: first the inputs already queued (a PONG that came
		 * while this thread did not run), a bounded number, so that a
		 * steady stream of inputs cannot hold the timer off either */
		if (now >= wake) {
			size_t queued;

			pthread_mutex_lock(&o->mu);
			queued = o->q_len;
			pthread_mutex_unlock(&o->mu);
			for (size_t k = 0; k < queued && dequeue(o, now, &ev); k++)
				step(o, &ev);
			step(o, &(struct sm_event){.type = SE_TICK,
			                           .result = late > o->o.heartbeat_timeout / 2 &&
			                                     o->o.heartbeat_timeout > 0});
			continue;
		}
		if (wake < deadline)
			deadline = wake;
		planned = deadline;
		if (dequeue(o, deadline, &ev))
			step(o, &ev);
	}
	pthread_mutex_lock(&o->mu);
	o->orch_done = true;
	pthread_cond_broadcast(&o->space);
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

/* ------------------------------------------------------------ callbacks */

static bool cb_may_acquire(void *ud, bool owes_expired)
{
	struct orchestrator *o = ud;
	bool r;

	pthread_mutex_lock(&o->mu);
	/* never while a service of ours has not confirmed it stopped: it may
	 * not be promoted again, and the watchdog must not be fed.  With no
	 * service connected, only to fence a silent holder when so configured
	 * (agent.fence_without_service). */
	r = (o->mode == ORCH_SERVICE_NONE || (o->svc_connected && o->svc_candidate) ||
	     (o->o.fence_without_service && o->mode == ORCH_SERVICE_CONTROL && !o->svc_connected &&
	      owes_expired)) &&
	    !o->shutting_down && !o->unconfirmed && !o->pod_unusable && o->state != SM_RELEASING &&
	    clock_mono_usec() >= o->candidate_after;
	pthread_mutex_unlock(&o->mu);
	return r;
}

/* kubefence_lease_transitions_total: a change of holder is a new term (the
 * Lease's epoch grows by one per acquisition), seen in an observation of
 * another holder or in our own acquisition; the first observation is the
 * baseline, not a change. */
static void note_epoch(struct orchestrator *o, int64_t epoch, bool ours)
{
	if (epoch > o->seen_epoch) {
		if (o->seen_epoch >= 0 || ours)
			metrics_lease_transition(o->o.metrics);
		o->seen_epoch = epoch;
	}
}

static void cb_observed(void *ud, const struct lease_record *rec)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	if (rec->holder[0])
		note_epoch(o, rec->transitions, false);
	else if (o->seen_epoch < 0)
		o->seen_epoch = rec->transitions; /* free: the baseline */
	pthread_mutex_unlock(&o->mu);
}

static void cb_started(void *ud, const struct elector_term *term)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	note_epoch(o, term->epoch, true);
	o->leading = true;
	o->epoch = term->epoch;
	o->valid_until = term->valid_until;
	/* sticky: the newest term that began; never blocks the elector */
	o->start_seq = ++o->input_seq;
	o->start_term = *term;
	o->start_at = clock_mono_usec();
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
}

static void cb_renewed(void *ud, int64_t epoch, usec_t valid_until)
{
	struct orchestrator *o = ud;
	usec_t until;

	pthread_mutex_lock(&o->mu);
	o->valid_until = valid_until;
	until = grant_until(o, valid_until);
	if (o->promoted_epoch == epoch && o->leading && until > clock_mono_usec())
		(void)control_send_renew(o->control, o->promoted_gen, epoch, until);
	pthread_mutex_unlock(&o->mu);
}

static void cb_stopped(void *ud, int64_t epoch, const char *reason)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	o->leading = false;
	/* Stop the service's writes now, not after whatever the orchestrator
	 * thread is busy with; its own deadline is the backstop. */
	if (o->promoted_epoch == epoch && !o->parting)
		(void)control_send_demote(o->control, epoch, reason);
	/* sticky: the end of a term is never lost (the newest one's) */
	o->lost_seq = ++o->input_seq;
	o->lost_epoch = epoch;
	str_copy(o->lost_reason, sizeof(o->lost_reason), reason);
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
}

static void cb_hello(void *ud, const struct control_peer *peer)
{
	struct orchestrator *o = ud;
	struct sm_event ev = {.type = SE_HELLO, .peer = *peer};

	pthread_mutex_lock(&o->mu);
	o->peer = *peer;
	o->svc_connected = true;
	o->svc_candidate = false;
	if (strncmp(peer->store, "iscsi://", 8) == 0 &&
	    (!o->o.scsi_claim || !store_is_fenced_lun(o, peer)))
		log_warning("service '%s' keeps its data on the LUN '%s' as node '%s', which this "
		            "agent does not claim (scsi-pr in fence.methods, the LUN in "
		            "fence.scsi_luns, node '%s'): its store registers only where its "
		            "node's key already is, so a promotion after a handover will fail",
		            peer->pod, peer->store, peer->store_node, o->node);
	else if (o->o.ride_through && !store_is_fenced_lun(o, peer))
		log_warning("service '%s' %s%s%s%s: it will not ride through an API outage "
		            "(agent.api_outage = ride-through needs its store on one of "
		            "fence.scsi_luns, registered as node '%s')",
		            peer->pod, peer->store[0] ? "keeps its data on '" : "named no store",
		            peer->store, peer->store[0] ? "' as node '" : "",
		            peer->store[0] ? peer->store_node : "", o->node);
	pthread_mutex_unlock(&o->mu);
	metrics_set_service_connected(o->o.metrics, true);
	enqueue(o, &ev);
}

static void cb_standby(void *ud)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true;
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &(struct sm_event){.type = SE_STANDBY});
	/* a candidate now: a term this node may take or continue is taken at
	 * once (a restarted agent continuing its predecessor's term has at
	 * most what is left of its lease) */
	elector_nudge(o->elector);
}

static void cb_ready(void *ud, const struct control_msg *m)
{
	struct orchestrator *o = ud;
	struct sm_event ev = {.type = SE_READY, .msg = *m, .epoch = m->epoch};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = false; /* a master is no standby */
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_failed(void *ud, const struct control_msg *m)
{
	struct orchestrator *o = ud;
	struct sm_event ev = {.type = SE_FAILED, .msg = *m, .epoch = m->epoch};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true; /* it stays standby */
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_demoted(void *ud, int64_t epoch)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true;
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &(struct sm_event){.type = SE_DEMOTED, .epoch = epoch});
}

static void cb_pong(void *ud, uint64_t seq)
{
	struct orchestrator *o = ud;

	enqueue(o, &(struct sm_event){.type = SE_PONG, .seq = seq});
}

static void cb_gone(void *ud, const char *why)
{
	struct orchestrator *o = ud;
	struct sm_event ev = {.type = SE_GONE};

	str_copy(ev.text, sizeof(ev.text), why);
	pthread_mutex_lock(&o->mu);
	o->svc_connected = false;
	o->svc_candidate = false;
	pthread_mutex_unlock(&o->mu);
	metrics_set_service_connected(o->o.metrics, false);
	enqueue(o, &ev);
}

static const struct elector_callbacks elector_cbs = {
        .may_acquire = cb_may_acquire,
        .started_leading = cb_started,
        .renewed = cb_renewed,
        .stopped_leading = cb_stopped,
        .observed_holder = cb_observed,
};

static const struct control_callbacks control_cbs = {
        .hello = cb_hello,
        .standby = cb_standby,
        .ready = cb_ready,
        .failed = cb_failed,
        .demoted = cb_demoted,
        .pong = cb_pong,
        .gone = cb_gone,
};

const struct elector_callbacks *orch_elector_callbacks(void)
{
	return &elector_cbs;
}

const struct control_callbacks *orch_control_callbacks(void)
{
	return &control_cbs;
}

/* ---------------------------------------------------------------- probe */

/* Probe mode: the probe's verdict stands in for the control connection. */
static void *probe_main(void *arg)
{
	struct orchestrator *o = arg;
	long timeout = (long)(o->o.probe_interval / USEC_PER_MSEC);
	bool healthy_before = false, first = true;

	if (timeout > 1000)
		timeout = 1000;
	for (;;) {
		char err[512] = "";
		bool healthy = probe_check(o->probe_url, timeout, err, sizeof(err)) >= 0;
		usec_t next = clock_mono_usec() + o->o.probe_interval;
		struct timespec ts = {.tv_sec = (time_t)(next / USEC_PER_SEC),
		                      .tv_nsec = (long)(next % USEC_PER_SEC) * 1000};
		bool stop;

		if (first || healthy != healthy_before) {
			if (healthy)
				log_info("service probe %s passes: this node is a candidate",
				         o->probe_url);
			else
				log_warning("service probe failed: %s", err);
		}
		pthread_mutex_lock(&o->mu);
		o->svc_connected = o->svc_candidate = healthy;
		pthread_mutex_unlock(&o->mu);
		metrics_set_service_connected(o->o.metrics, healthy);
		if (healthy && !healthy_before) {
			enqueue(o, &(struct sm_event){.type = SE_HELLO});
			elector_nudge(o->elector); /* a candidate now (cb_standby) */
		}
		if (healthy_before && !healthy) {
			struct sm_event ev = {.type = SE_GONE};
			snprintf(ev.text, sizeof(ev.text), "health probe failed: %.400s", err);
			enqueue(o, &ev);
		}
		healthy_before = healthy;
		first = false;

		pthread_mutex_lock(&o->mu);
		while (!o->probe_stop && clock_mono_usec() < next)
			if (pthread_cond_timedwait(&o->cond, &o->mu, &ts) == ETIMEDOUT)
				break;
		stop = o->probe_stop;
		pthread_mutex_unlock(&o->mu);
		if (stop)
			return NULL;
	}
}

/* ----------------------------------------------------------------- life */

int orch_new(struct k8s_client *client, const struct orch_options *opts, struct orchestrator **ret)
{
	struct orchestrator *o = calloc(1, sizeof(*o));
	pthread_condattr_t ca;
	struct sm_config sc = {0};

	if (!o)
		return -ENOMEM;
	o->client = client;
	o->o = *opts;
	str_copy(o->node, sizeof(o->node), opts->node);
	str_copy(o->ns, sizeof(o->ns), opts->service_namespace);
	str_copy(o->label_key, sizeof(o->label_key), opts->label_key);
	str_copy(o->label_value, sizeof(o->label_value), opts->label_value);
	str_copy(o->selector, sizeof(o->selector), opts->selector ? opts->selector : "");
	o->o.selector = o->selector;
	if (!opts->probe || !opts->probe[0]) {
		o->mode = ORCH_SERVICE_CONTROL;
	} else if (strcmp(opts->probe, "none") == 0) {
		o->mode = ORCH_SERVICE_NONE;
	} else {
		o->mode = ORCH_SERVICE_PROBE;
		str_copy(o->probe_url, sizeof(o->probe_url), opts->probe);
	}
	o->o.probe = NULL;
	if (opts->endpoints && opts->endpoints[0]) {
		if (endpoints_writer_new(client, o->ns, opts->endpoints, opts->request_timeout_ms,
		                         &o->endpoints) < 0) {
			free(o);
			return -ENOMEM;
		}
		endpoints_writer_on_slice(o->endpoints, slice_written, o);
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_mutex_init(&o->route_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&o->space, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->route_done, &ca);
	pthread_condattr_destroy(&ca);
	o->promoted_epoch = -1;
	o->seen_epoch = -1;

	sc.mode = o->mode == ORCH_SERVICE_CONTROL ? SM_MODE_CONTROL
	          : o->mode == ORCH_SERVICE_PROBE ? SM_MODE_PROBE
	                                          : SM_MODE_NONE;
	str_copy(sc.node, sizeof(sc.node), o->node);
	str_copy(sc.ns, sizeof(sc.ns), o->ns);
	snprintf(sc.label, sizeof(sc.label), "%s=%s", o->label_key, o->label_value);
	sc.have_methods = opts->methods && opts->methods->n > 0;
	sc.promote_timeout = opts->promote_timeout;
	sc.demote_timeout = opts->demote_timeout;
	sc.fence_retry = opts->fence_retry;
	sc.fence_give_up = opts->fence_give_up;
	sc.claim_retry = 200 * USEC_PER_MSEC;
	sc.label_retry = 100 * USEC_PER_MSEC;
	sc.exit_wait = 300 * USEC_PER_MSEC;
	sc.tell_interval = USEC_PER_SEC;
	sc.scsi_check = opts->n_scsi_luns ? opts->scsi_check : 0;
	sc.heartbeat = opts->heartbeat;
	sc.heartbeat_timeout = opts->heartbeat_timeout;
	sc.untaint = opts->untaint;
	sc.untaint_retry = 2 * USEC_PER_SEC;
	sc.untaint_recheck = 10 * USEC_PER_SEC;
	sc.route_check = o->endpoints ? 5 * USEC_PER_SEC : 0;
	sm_init(&o->sm, &sc);
	o->state = o->sm.st;
	*ret = o;
	return 0;
}

void orch_attach(struct orchestrator *o, struct elector *e, struct control *c)
{
	o->elector = e;
	o->control = c;
}

/* How long the orchestrator thread may go without a turn of its loop
 * before the watchdog is no longer fed. */
#define WD_STALE (30 * USEC_PER_SEC)

static void *wd_main(void *arg)
{
	struct orchestrator *o = arg;

	for (;;) {
		usec_t now = clock_mono_usec(),
		       hb = __atomic_load_n(&o->heartbeat, __ATOMIC_ACQUIRE);
		const char *why = NULL;
		struct timespec ts;
		bool stop;

		pthread_mutex_lock(&o->mu);
		if (__atomic_load_n(&o->selffence_failed, __ATOMIC_ACQUIRE))
			why = "a killed service survived";
		else if (o->unconfirmed)
			why = "the service has not confirmed it stopped writing";
		pthread_mutex_unlock(&o->mu);
		if (!why && now - hb > WD_STALE)
			why = "the orchestrator makes no progress";
		if (!why && selffence_watchdog_feed(o->wd) < 0)
			why = "feeding failed";
		if (why && strcmp(why, o->wd_why) != 0)
			log_warning("watchdog not fed: %s", why);
		else if (!why && o->wd_why[0])
			log_info("watchdog fed again");
		str_copy(o->wd_why, sizeof(o->wd_why), why ? why : "");
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_mutex_lock(&o->mu);
		if (!o->wd_stop)
			pthread_cond_timedwait(&o->cond, &o->mu, &ts);
		stop = o->wd_stop;
		pthread_mutex_unlock(&o->mu);
		if (stop)
			return NULL;
	}
}

int orch_start(struct orchestrator *o)
{
	int r;

	__atomic_store_n(&o->heartbeat, clock_mono_usec(), __ATOMIC_RELEASE);
	if (o->o.watchdog_device && o->o.watchdog_device[0]) {
		char err[512] = "";

		r = selffence_watchdog_open(o->o.watchdog_device, &o->wd, err, sizeof(err));
		if (r < 0) {
			log_error("cannot open the watchdog '%s': %s", o->o.watchdog_device, err);
			return r;
		}
		r = pthread_create(&o->wd_thread, NULL, wd_main, o);
		if (r)
			return -r;
		o->wd_started = true;
		log_info("feeding the watchdog '%s' while this node may write",
		         o->o.watchdog_device);
	}
	r = pthread_create(&o->worker, NULL, worker_main, o);
	if (r)
		return -r;
	o->worker_started = true;
	r = pthread_create(&o->route_thread, NULL, route_main, o);
	if (r)
		return -r;
	o->route_started = true;
	r = pthread_create(&o->thread, NULL, orch_main, o);
	if (r)
		return -r;
	o->started = true;
	if (o->mode == ORCH_SERVICE_PROBE) {
		r = pthread_create(&o->probe_thread, NULL, probe_main, o);
		if (r)
			return -r;
		o->probe_started = true;
	}
	return 0;
}

static void stop_worker(struct orchestrator *o)
{
	if (o->route_started) {
		pthread_mutex_lock(&o->mu);
		o->route_stop = true;
		o->route_pending = false; /* a route of a stopping agent is moot */
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->route_thread, NULL);
		o->route_started = false;
	}
	if (!o->worker_started)
		return;
	pthread_mutex_lock(&o->mu);
	o->worker_stop = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
	/* it finishes the jobs queued (an unlabel, a fence run: each bounded
	 * by its request time-outs) */
	pthread_join(o->worker, NULL);
	o->worker_started = false;
}

static void shutdown_as(struct orchestrator *o, const char *reason, bool keep, bool parting)
{
	if (!o->started || o->stopped)
		return;
	pthread_mutex_lock(&o->mu);
	o->shutting_down = true;
	o->shutdown_keep = keep;
	o->shutdown_parting = parting;
	str_copy(o->shutdown_reason, sizeof(o->shutdown_reason), reason);
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->thread, NULL);
	o->stopped = true;
	if (o->probe_started) {
		pthread_mutex_lock(&o->mu);
		o->probe_stop = true;
		pthread_cond_broadcast(&o->cond);
		pthread_cond_broadcast(&o->space);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->probe_thread, NULL);
		o->probe_started = false;
	}
	stop_worker(o);
}

void orch_shutdown(struct orchestrator *o, const char *reason)
{
	shutdown_as(o, reason, false, false);
}

void orch_stop_keeping_term(struct orchestrator *o, const char *reason)
{
	shutdown_as(o, reason, true, false);
}

void orch_stop_for_restart(struct orchestrator *o, const char *reason)
{
	shutdown_as(o, reason, true, true);
}

struct orchestrator *orch_free(struct orchestrator *o)
{
	if (!o)
		return NULL;
	if (o->started && !o->stopped)
		orch_shutdown(o, "agent stopped");
	stop_worker(o);
	if (o->wd_started) {
		pthread_mutex_lock(&o->mu);
		o->wd_stop = true;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->wd_thread, NULL);
	}
	/* disarmed only when no self-fence failed: a starved watchdog must go
	 * on to reset the node */
	o->wd = selffence_watchdog_close(o->wd,
	                                 !__atomic_load_n(&o->selffence_failed, __ATOMIC_ACQUIRE));
	pthread_cond_destroy(&o->space);
	pthread_cond_destroy(&o->route_done);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->mu);
	pthread_mutex_destroy(&o->route_mu);
	endpoints_writer_free(o->endpoints);
	free(o);
	return NULL;
}

static void add_wall(cJSON *obj, const char *key, usec_t wall)
{
	char t[32];

	clock_format_microtime(wall, t);
	cJSON_AddStringToObject(obj, key, t);
}

/* The schema is documented in http.h (version 1).  Steps are timed from
 * the start of the failover; each step's duration is the time since the
 * step before it. */
cJSON *orch_status_json(struct orchestrator *o)
{
	cJSON *j = cJSON_CreateObject(), *svc, *fo, *steps, *fences;
	/* the service's side of each state */
	static const char *const svc_states[] = {
	        [SM_FOLLOWER] = "standby",    [SM_FENCING] = "standby",
	        [SM_CLAIMING] = "standby",    [SM_FINDING] = "standby",
	        [SM_PROMOTING] = "promoting", [SM_LABELLING] = "promoting",
	        [SM_MASTER] = "master",       [SM_RELEASING] = "standby",
	        [SM_DEMOTING] = "demoting",   [SM_KILLING] = "demoting",
	        [SM_STOPPED] = "standby",
	};
	usec_t now = clock_mono_usec();

	if (!j)
		return NULL;
	pthread_mutex_lock(&o->mu);
	cJSON_AddStringToObject(j, "node", o->node);
	cJSON_AddStringToObject(j, "role", o->leading ? "leader" : "follower");
	cJSON_AddStringToObject(j, "state", sm_state_name(o->state));
	cJSON_AddNumberToObject(j, "epoch", (double)o->epoch);
	cJSON_AddNumberToObject(j, "promotions", (double)o->promotions);
	cJSON_AddNumberToObject(j, "demotions", (double)o->demotions);
	if (o->elector) {
		usec_t since = elector_riding_since(o->elector);

		if (since)
			cJSON_AddNumberToObject(j, "riding_through_ms",
			                        (double)((now - since) / USEC_PER_MSEC));
		since = elector_failsafe_since(o->elector);
		if (since)
			cJSON_AddNumberToObject(j, "failsafe_riding_ms",
			                        (double)((now - since) / USEC_PER_MSEC));
	}
	svc = cJSON_AddObjectToObject(j, "service");
	if (svc) {
		char detail[320];
		cJSON_AddStringToObject(svc, "state",
		                        o->svc_connected ? svc_states[o->state] : "disconnected");
		cJSON_AddBoolToObject(svc, "connected", o->svc_connected);
		snprintf(detail, sizeof(detail), "pod %s, pid %d%s",
		         o->peer.pod[0] ? o->peer.pod : "-", (int)o->peer.pid,
		         o->svc_candidate ? ", candidate" : "");
		cJSON_AddStringToObject(svc, "detail", detail);
	}
	if (o->n_timeline > 0) {
		fo = cJSON_AddObjectToObject(j, "last_failover");
		cJSON_AddStringToObject(fo, "from", o->tl_from);
		cJSON_AddStringToObject(fo, "to", o->tl_to);
		add_wall(fo, "started_at", o->tl_origin_wall);
		cJSON_AddNumberToObject(
		        fo, "total_ms",
		        (double)(((o->tl_end ? o->tl_end : now) - o->tl_origin) / USEC_PER_MSEC));
		cJSON_AddBoolToObject(fo, "ok", o->tl_ok);
		steps = cJSON_AddArrayToObject(fo, "steps");
		for (size_t i = 0; steps && i < o->n_timeline; i++) {
			usec_t prev = i ? o->timeline[i - 1].at : o->tl_origin;
			http_status_step(
			        steps, o->timeline[i].step,
			        (int64_t)((o->timeline[i].at - o->tl_origin) / USEC_PER_MSEC),
			        (int64_t)((o->timeline[i].at - prev) / USEC_PER_MSEC),
			        o->timeline[i].detail);
		}
	}
	fences = cJSON_AddArrayToObject(j, "fences");
	for (size_t k = 0; fences && k < o->n_fences && k < FENCE_HISTORY; k++) {
		/* newest first */
		const struct fence_run *fr = &o->fences[(o->n_fences - 1 - k) % FENCE_HISTORY];
		cJSON *f = cJSON_CreateObject();
		char methods[256] = "";
		int64_t at = 0;

		for (size_t i = 0; i < fr->rep.n_steps; i++) {
			if (fr->rep.steps[i].skipped)
				continue;
			if (methods[0])
				strncat(methods, ",", sizeof(methods) - strlen(methods) - 1);
			strncat(methods, fr->rep.steps[i].method,
			        sizeof(methods) - strlen(methods) - 1);
		}
		cJSON_AddStringToObject(f, "target", fr->rep.node);
		cJSON_AddStringToObject(f, "method", methods[0] ? methods : "(none required)");
		cJSON_AddBoolToObject(f, "ok", fr->rep.result >= 0);
		add_wall(f, "started_at", fr->started_wall);
		cJSON_AddNumberToObject(f, "total_ms", (double)(fr->rep.duration / USEC_PER_MSEC));
		steps = cJSON_AddArrayToObject(f, "steps");
		for (size_t i = 0; steps && i < fr->rep.n_steps; i++) {
			const struct fence_step *st = &fr->rep.steps[i];
			char detail[FENCE_MESSAGE_MAX + FENCE_TARGET_MAX + 64];
			snprintf(detail, sizeof(detail), "%s: %s%s%s", st->target,
			         st->skipped       ? "skipped"
			         : st->result >= 0 ? "confirmed"
			                           : "failed",
			         st->message[0] ? " - " : "", st->message);
			http_status_step(steps, st->method, at,
			                 (int64_t)(st->duration / USEC_PER_MSEC), detail);
			at += (int64_t)(st->duration / USEC_PER_MSEC);
		}
		cJSON_AddItemToArray(fences, f);
	}
	pthread_mutex_unlock(&o->mu);
	return j;
}

bool orch_alive(struct orchestrator *o, char *why, size_t whylen)
{
	usec_t now = clock_mono_usec(), hb = __atomic_load_n(&o->heartbeat, __ATOMIC_ACQUIRE),
	       js = __atomic_load_n(&o->job_since, __ATOMIC_ACQUIRE), idle;
	enum sm_job kind;

	if (o->started && !o->stopped && now - hb > ORCH_LIVE_STALE) {
		errbuf_set(why, whylen, "the orchestrator thread has not run for %" PRId64 " s",
		           (int64_t)((now - hb) / USEC_PER_SEC));
		return false;
	}
	if (js && now - js > ORCH_JOB_STALE) {
		pthread_mutex_lock(&o->mu);
		kind = o->job_kind;
		pthread_mutex_unlock(&o->mu);
		errbuf_set(why, whylen, "the %s job has run for %" PRId64 " s", sm_job_name(kind),
		           (int64_t)((now - js) / USEC_PER_SEC));
		return false;
	}
	idle = o->elector && !o->stopped ? elector_idle(o->elector) : 0;
	if (idle > ORCH_LIVE_STALE) {
		errbuf_set(why, whylen, "the election thread has not run for %" PRId64 " s",
		           (int64_t)(idle / USEC_PER_SEC));
		return false;
	}
	return true;
}

bool orch_ready(struct orchestrator *o, char *why, size_t whylen)
{
	bool r;

	pthread_mutex_lock(&o->mu);
	r = o->mode == ORCH_SERVICE_NONE || o->svc_connected;
	if (!r)
		errbuf_set(why, whylen,
		           o->mode == ORCH_SERVICE_PROBE
		                   ? "the local service's health probe fails"
		                   : "no local service is connected to the control socket");
	pthread_mutex_unlock(&o->mu);
	return r;
}
