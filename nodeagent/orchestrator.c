/* orchestrator: the agent's state machine (see orchestrator.h).
 *
 * Locking: `mu` guards what the callbacks (elector and control threads) and
 * the orchestrator thread share: the queue, the service's flags, the term
 * and the status snapshot.  Slow work (fencing, API calls) runs on the
 * orchestrator thread without the lock. */
#include "config.h"

#include "orchestrator.h"

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

#include "control.h"
#include "elector.h"
#include "events.h"
#include "failpoint.h"
#include "http.h"
#include "k8s.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "selffence.h"
#include "probe.h"
#include "util.h"

enum orch_state {
	ST_FOLLOWER,
	ST_FENCING,
	ST_PROMOTING,
	ST_MASTER,
	ST_DEMOTING,
};

static const char *const state_names[] = {
        [ST_FOLLOWER] = "follower", [ST_FENCING] = "fencing",   [ST_PROMOTING] = "promoting",
        [ST_MASTER] = "master",     [ST_DEMOTING] = "demoting",
};

enum ev_type {
	EV_STARTED,
	EV_STOPPED,
	EV_HELLO,
	EV_STANDBY,
	EV_READY,
	EV_FAILED,
	EV_DEMOTED,
	EV_GONE,
	EV_SHUTDOWN,
};

struct ev {
	enum ev_type type;
	usec_t at;
	struct elector_term term;
	struct control_msg msg;
	struct control_peer peer;
	int64_t epoch;
	char reason[512];
};

#define QUEUE_MAX    64
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
	char last_label_err[512]; /* orchestrator thread */
	char master_told[600];    /* the MASTER line last sent to our standby */
	char node[254], ns[254], label_key[64], label_value[64];
	struct elector *elector;
	struct control *control;

	pthread_mutex_t mu;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct ev queue[QUEUE_MAX];
	size_t q_head, q_len;
	pthread_t thread;
	bool started, shutting_down, stopped;
	char shutdown_reason[256];
	/* Sticky, never queued (a full queue cannot drop them): a stop
	 * request, and the newest term that ended.  dequeue() hands each out
	 * once, before anything queued.  Under mu. */
	bool shutdown_taken;
	int64_t lost_epoch, lost_taken;
	char lost_reason[512];

	/* shared with callbacks, under mu */
	bool svc_connected, svc_candidate;
	struct control_peer peer;
	bool leading;
	int64_t epoch;
	usec_t valid_until;
	int64_t promoted_epoch; /* epoch of the last PROMOTE sent; RENEW only for it */

	/* orchestrator thread; copied to the snapshot under mu */
	enum orch_state state;
	usec_t promote_deadline, demote_deadline;
	/* the watchdog: fed by wd_thread while the orchestrator thread makes
	 * progress (heartbeat, atomic) and may write */
	struct selffence_watchdog *wd;
	pthread_t wd_thread;
	bool wd_started, wd_stop; /* wd_stop under mu */
	usec_t heartbeat;         /* atomic */
	bool selffence_failed;    /* atomic: a killed service survived */
	char wd_why[128];         /* wd thread only: why it is not fed */
	struct tl_step timeline[TIMELINE_MAX];
	size_t n_timeline;
	usec_t tl_origin, tl_origin_wall, tl_end;
	char tl_from[254], tl_to[254];
	bool tl_ok;
	struct fence_run fences[FENCE_HISTORY];
	size_t n_fences; /* total ever; the ring holds the last FENCE_HISTORY */
	int64_t promotions, demotions;
};

/* ---------------------------------------------------------------- queue */

static void enqueue(struct orchestrator *o, const struct ev *ev)
{
	pthread_mutex_lock(&o->mu);
	if (o->q_len == QUEUE_MAX) {
		log_error("orchestrator queue full; dropping event %d", (int)ev->type);
	} else {
		o->queue[(o->q_head + o->q_len) % QUEUE_MAX] = *ev;
		o->queue[(o->q_head + o->q_len) % QUEUE_MAX].at = clock_mono_usec();
		o->q_len++;
		pthread_cond_broadcast(&o->cond);
	}
	pthread_mutex_unlock(&o->mu);
}

/* Wait for the next event until `deadline`.  Returns true with *ret, or
 * false on timeout. */
static bool dequeue(struct orchestrator *o, usec_t deadline, struct ev *ret)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(deadline / USEC_PER_SEC),
	        .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};
	bool got = false;

	pthread_mutex_lock(&o->mu);
	while (o->q_len == 0 && !(o->shutting_down && !o->shutdown_taken) &&
	       o->lost_epoch <= o->lost_taken && clock_mono_usec() < deadline)
		if (pthread_cond_timedwait(&o->cond, &o->mu, &ts) == ETIMEDOUT)
			break;
	if (o->shutting_down && !o->shutdown_taken) {
		*ret = (struct ev){.type = EV_SHUTDOWN, .at = clock_mono_usec()};
		o->shutdown_taken = true;
		got = true;
	} else if (o->lost_epoch > o->lost_taken) {
		*ret = (struct ev){
		        .type = EV_STOPPED, .at = clock_mono_usec(), .epoch = o->lost_epoch};
		str_copy(ret->reason, sizeof(ret->reason), o->lost_reason);
		o->lost_taken = o->lost_epoch;
		got = true;
	} else if (o->q_len > 0) {
		*ret = o->queue[o->q_head];
		o->q_head = (o->q_head + 1) % QUEUE_MAX;
		o->q_len--;
		got = true;
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
	o->tl_end = clock_mono_usec();
	o->tl_ok = ok;
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

static void set_state(struct orchestrator *o, enum orch_state st)
{
	pthread_mutex_lock(&o->mu);
	o->state = st;
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
 * shutdown is pending (a SIGTERM must not wait behind a retry loop). */
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
 * -ESTALE when it was replaced (another uid); or another -errno. */
static int set_own_role(struct orchestrator *o, const char *pod, const char *uid, int64_t epoch,
                        bool set, char *err, size_t errlen)
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
		cJSON_Delete(obj);
		if (r != -ESTALE)
			return r;
		r = 0; /* changed since read: read again */
	}
	return r < 0 ? r : -EAGAIN;
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
		bool had = pod_labelled(o, item);
		int64_t re = pod_role_epoch(item);

		if (!cJSON_IsString(name) || (own_pod && strcmp(name->valuestring, own_pod) == 0))
			continue;
		if (re > epoch) {
			log_info("pod '%s/%s' was claimed by term %" PRId64 " (ours %" PRId64
			         "): this term is over",
			         o->ns, name->valuestring, re, epoch);
			r = 1;
			break;
		}
		if (re == epoch && !had)
			continue; /* claimed already */
		r = role_patch(o, item, epoch, false, err, sizeof(err));
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
static void unlabel_own(struct orchestrator *o, const struct control_peer *p)
{
	char err[1024] = "";
	usec_t until = clock_mono_usec() + 3 * USEC_PER_SEC;
	int64_t epoch;
	int r;

	if (!p->pod[0])
		return;
	pthread_mutex_lock(&o->mu);
	epoch = o->promoted_epoch;
	pthread_mutex_unlock(&o->mu);
	for (;;) {
		r = set_own_role(o, p->pod, p->uid, epoch, false, err, sizeof(err));
		if (r >= 0 || r == -ENOENT || r == -ESTALE || clock_mono_usec() >= until)
			break;
		clock_sleep_until(clock_mono_usec() + 200 * USEC_PER_MSEC);
	}
	if (r < 0 && r != -ENOENT && r != -ESTALE)
		log_warning("removing %s=%s from own pod '%s/%s' failed: %s", o->label_key,
		            o->label_value, o->ns, p->pod, err);
	else
		tl_add(o, "unlabelled", "%s", p->pod);
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

	if (!o->o.events || !p->pod[0])
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)events_post(o->o.events, &obj, reason, "%s", msg);
}

/* -------------------------------------------------------------- handlers */

/* Give the Lease up.  service_dead only when the service's process was
 * seen to exit (confirm_exit): a release of any other kind — a promotion
 * that timed out, a label that failed, a kill not confirmed, a service that
 * closed its socket but may still serve — makes the successor run the full
 * fence. */
static void release_as(struct orchestrator *o, const char *reason, bool service_dead)
{
	(void)FAILPOINT(AGENT_RELEASE_BEFORE);
	tl_add(o, "released", "%s%s", reason, service_dead ? " (service confirmed dead)" : "");
	elector_release(o->elector, reason, service_dead);
}

static void release(struct orchestrator *o, const char *reason)
{
	release_as(o, reason, false);
}

/* Whether the service's process was seen to exit within timeout (through a
 * pidfd: no pid, or no pidfd support, is no confirmation). */
static bool confirm_exit(pid_t pid, usec_t timeout)
{
	return selffence_wait_exit(pid, clock_mono_usec() + timeout) == 0;
}

static void on_ready(struct orchestrator *o, const struct control_msg *m);

/* Probe mode: find this node's pod of the service (selector + node). */
static int find_own_pod(struct orchestrator *o)
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

/* Fence `victim` at `level` for term `t`, retrying while the term lasts.
 * Returns true when every required method is confirmed, false when the term
 * ended (or a shutdown began) first. */
static bool fence_node(struct orchestrator *o, const struct elector_term *t, const char *victim,
                       enum fence_level level)
{
	struct control_peer peer;
	bool connected;

	for (;;) {
		struct fence_request req = {.node = victim};
		struct fence_report rep;
		char text[2048];

		if (!still_leading(o, t->epoch))
			return false;
		usec_t started_wall = clock_real_usec();
		fence_pipeline_run(o->o.fence_opts, o->o.methods->v, o->o.methods->n, level, &req,
		                   &rep);
		pthread_mutex_lock(&o->mu);
		o->fences[o->n_fences % FENCE_HISTORY] =
		        (struct fence_run){.started_wall = started_wall, .rep = rep};
		o->n_fences++;
		pthread_mutex_unlock(&o->mu);
		fence_report_format(&rep, text, sizeof(text));
		for (size_t i = 0; i < rep.n_steps; i++)
			if (!rep.steps[i].skipped)
				tl_add(o, "fenced", "%s %s: %s (%" PRId64 " ms)",
				       rep.steps[i].method, rep.steps[i].target,
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
		           "node %s, epoch %" PRId64 ", %" PRId64 " ms: %s", victim, t->epoch,
		           (int64_t)(rep.duration / USEC_PER_MSEC), text);
		if (rep.result >= 0) {
			log_info("event=fenced node='%s' level=%s epoch=%" PRId64
			         " duration_ms=%" PRId64 ": %s",
			         victim, fence_level_to_string(level), t->epoch,
			         (int64_t)(rep.duration / USEC_PER_MSEC), text);
			return true;
		}
		__atomic_store_n(&o->heartbeat, clock_mono_usec(), __ATOMIC_RELEASE);
		log_error("event=fence-failed node='%s' epoch=%" PRId64
		          ": %s; not promoting, retrying in %" PRId64 " ms",
		          victim, t->epoch, text, (int64_t)(o->o.fence_retry / USEC_PER_MSEC));
		clock_sleep_until(clock_mono_usec() + o->o.fence_retry);
	}
}

static void on_started(struct orchestrator *o, const struct elector_term *t, usec_t at)
{
	const char *prev = t->previous.node[0] ? t->previous.node : t->previous.holder;
	const char *cursor = t->fence_owed;
	char victim[254], level[16];
	struct control_peer peer;
	bool connected, fenced_any = false;
	int removed = 0;

	metrics_set_role(o->o.metrics, METRICS_ROLE_LEADER);
	metrics_set_epoch(o->o.metrics, t->epoch);
	metrics_lease_transition(o->o.metrics);
	tl_begin(o, at, prev[0] ? prev : t->previous.holder, o->node);
	tl_add(o, "acquired", "epoch %" PRId64 ", lease %s, previous holder %s%s%s, fence owed: %s",
	       t->epoch, lease_verdict_to_string(t->verdict), prev[0] ? prev : "(none)",
	       t->previous.release_reason[0] ? ", released: " : "", t->previous.release_reason,
	       t->fence_owed[0] ? t->fence_owed : "none");
	set_state(o, ST_FENCING);

	/* The duty comes from the Lease record this term wrote (fence-owed),
	 * never from what this process remembers of its predecessor: a lost
	 * answer, a crash or a term that ended mid-fence leave it there for
	 * whoever holds the Lease next. */
	while (lease_owed_next(&cursor, victim, sizeof(victim), level, sizeof(level))) {
		if (strcmp(victim, o->node) == 0)
			continue;
		if (!o->o.methods || o->o.methods->n == 0) {
			tl_add(o, "fenced", "'%s' owed a fence, but no method is configured",
			       victim);
			continue;
		}
		if (!fence_node(o, t, victim,
		                strcmp(level, "released") == 0 ? FENCE_LEVEL_RELEASED
		                                               : FENCE_LEVEL_EXPIRED))
			goto abandoned;
		fenced_any = true;
	}
	if (!fenced_any)
		tl_add(o, "fenced", "nothing to fence (previous holder '%s' on '%s', owed: %s)",
		       t->previous.holder, prev[0] ? prev : "-",
		       t->fence_owed[0] ? t->fence_owed : "none");
	elector_fence_settled(o->elector, t->epoch);

	(void)FAILPOINT(AGENT_FENCE_BEFORE_PROMOTE);
	if (o->mode == ORCH_SERVICE_NONE) {
		/* No local service: the term itself is the product. */
		tl_add(o, "promoted", "no local service is managed (service.probe = none)");
		tl_finish(o, true);
		set_state(o, ST_MASTER);
		log_info("event=promoted pod='-' epoch=%" PRId64 " (no local service)", t->epoch);
		return;
	}
	/* The Service must never select two pods: the old label goes first. */
	get_peer(o, &peer, &connected);
	for (;;) {
		int k;

		if (!still_leading(o, t->epoch))
			goto abandoned;
		k = claim_others(o, peer.pod, t->epoch, &removed);
		if (k == 0)
			break;
		if (k == 1)
			goto abandoned; /* a newer term claimed a pod: ours is over */
		clock_sleep_until(clock_mono_usec() + 200 * USEC_PER_MSEC);
	}
	if (removed)
		tl_add(o, "unlabelled", "%d other pod(s)", removed);

	if (o->mode == ORCH_SERVICE_PROBE) {
		/* A service that does not integrate: promotion is the label. */
		struct control_msg m = {.verb = CONTROL_READY, .epoch = t->epoch};
		if (find_own_pod(o) < 0) {
			release(o, "the local service's pod was not found");
			set_state(o, ST_FOLLOWER);
			return;
		}
		pthread_mutex_lock(&o->mu);
		o->promoted_epoch = t->epoch;
		pthread_mutex_unlock(&o->mu);
		set_state(o, ST_PROMOTING);
		on_ready(o, &m);
		return;
	}
	get_peer(o, &peer, &connected);
	if (!connected) {
		release(o, "no local service to promote");
		set_state(o, ST_FOLLOWER);
		return;
	}
	pthread_mutex_lock(&o->mu);
	usec_t until = grant_until(o, o->valid_until);
	o->promoted_epoch = t->epoch;
	pthread_mutex_unlock(&o->mu);
	if (until <= clock_mono_usec() || control_send_promote(o->control, t->epoch, until) < 0) {
		release(o, "could not send PROMOTE to the local service");
		set_state(o, ST_FOLLOWER);
		return;
	}
	tl_add(o, "promote-sent", "PROMOTE epoch=%" PRId64 " (writes for %" PRId64 " ms) to '%s'",
	       t->epoch, (int64_t)((until - clock_mono_usec()) / USEC_PER_MSEC), peer.pod);
	o->promote_deadline = clock_mono_usec() + o->o.promote_timeout;
	set_state(o, ST_PROMOTING);
	return;

abandoned:
	log_info("term %" PRId64 " ended before the promotion; not promoting", t->epoch);
	set_state(o, ST_FOLLOWER);
}

static void on_ready(struct orchestrator *o, const struct control_msg *m)
{
	struct control_peer peer;
	bool connected;
	char err[1024] = "";
	int r;

	if (o->state != ST_PROMOTING || m->epoch != o->promoted_epoch) {
		log_warning("READY epoch=%" PRId64 " while %s (promoted epoch %" PRId64
		            "); ignored",
		            m->epoch, state_names[o->state], o->promoted_epoch);
		return;
	}
	tl_add(o, "recovered", "%" PRIu64 " records up to seq %" PRIu64 " in %" PRIu64 " ms",
	       m->records, m->last_seq, m->recovery_ms);
	get_peer(o, &peer, &connected);
	for (;;) {
		if (!still_leading(o, m->epoch)) {
			log_info("term %" PRId64 " ended before labelling; not labelling",
			         m->epoch);
			set_state(o, ST_FOLLOWER);
			return;
		}
		r = set_own_role(o, peer.pod, peer.uid, m->epoch, true, err, sizeof(err));
		if (r == 0)
			break;
		if (r == 1 || r == -ENOENT || r == -EINVAL || r == -ESTALE) {
			/* The pod is gone or was replaced (uid precondition): the
			 * service we promoted is not the one the Service would
			 * select.  Give the term up rather than retry forever. */
			char reason[1200];
			snprintf(reason, sizeof(reason), "cannot label own pod %.100s: %.900s",
			         peer.pod, err);
			log_error("%s; releasing", reason);
			control_send_demote(o->control, m->epoch, "own pod cannot be labelled");
			release(o, reason);
			set_state(o, ST_FOLLOWER);
			return;
		}
		log_warning("labelling pod '%s/%s' %s=%s failed: %s; retrying", o->ns, peer.pod,
		            o->label_key, o->label_value, err);
		clock_sleep_until(clock_mono_usec() + 100 * USEC_PER_MSEC);
	}
	tl_add(o, "labelled", "%s=%s on '%s'", o->label_key, o->label_value, peer.pod);
	tl_finish(o, true);
	set_state(o, ST_MASTER);
	pthread_mutex_lock(&o->mu);
	o->promotions++;
	usec_t took = clock_mono_usec() - o->tl_origin;
	pthread_mutex_unlock(&o->mu);
	metrics_promotion(o->o.metrics);
	metrics_observe_failover(o->o.metrics, (double)took / USEC_PER_SEC);
	post_event(o, &peer, EVENTS_PROMOTED,
	           "epoch %" PRId64 ": recovered %" PRIu64 " records in %" PRIu64
	           " ms, labelled %s=%s, %" PRId64 " ms after the Lease was free",
	           m->epoch, m->records, m->recovery_ms, o->label_key, o->label_value,
	           (int64_t)(took / USEC_PER_MSEC));
	log_info("event=promoted pod='%s/%s' epoch=%" PRId64 " records=%" PRIu64
	         " failover_ms=%" PRId64,
	         o->ns, peer.pod, m->epoch, m->records, (int64_t)(took / USEC_PER_MSEC));
}

static void on_gone(struct orchestrator *o, const char *why)
{
	struct control_peer peer;
	bool connected;
	char reason[512];

	get_peer(o, &peer, &connected);
	if (o->state == ST_FENCING || o->state == ST_PROMOTING || o->state == ST_MASTER) {
		tl_begin(o, clock_mono_usec(), o->node, "");
		tl_add(o, "detected", "service '%s' gone: %s", peer.pod, why);
		/* Release first: the successor removes a stale label itself before
		 * it labels its own pod, so the Service never selects two pods,
		 * and the dead service's label costs no failover time. */
		snprintf(reason, sizeof(reason), "service %.100s on %.100s died: %.200s", peer.pod,
		         o->node, why);
		/* EOF alone is no proof: a service can close its socket and go
		 * on serving.  Its process must be seen to exit. */
		release_as(o, reason, confirm_exit(peer.cred_pid, 300 * USEC_PER_MSEC));
		unlabel_own(o, &peer);
		post_event(o, &peer, EVENTS_RELEASED, "%s", reason);
	}
	set_state(o, ST_FOLLOWER);
}

static void on_stopped(struct orchestrator *o, int64_t epoch, const char *reason)
{
	struct control_peer peer;
	bool connected;

	metrics_set_role(o->o.metrics, METRICS_ROLE_FOLLOWER);
	if (o->state == ST_PROMOTING || o->state == ST_MASTER || o->state == ST_FENCING) {
		/* DEMOTE was sent by the callback already. */
		tl_add(o, "demote-sent", "term %" PRId64 " ended: %s", epoch, reason);
		get_peer(o, &peer, &connected);
		o->demote_deadline = clock_mono_usec() + o->o.demote_timeout;
		/* only a service on the control socket answers DEMOTE */
		set_state(o,
		          connected && o->mode == ORCH_SERVICE_CONTROL ? ST_DEMOTING : ST_FOLLOWER);
		unlabel_own(o, &peer);
	}
}

static void on_demote_timeout(struct orchestrator *o)
{
	struct control_peer peer;
	bool connected;

	get_peer(o, &peer, &connected);
	/* The pid the kernel reported for the socket's peer (SO_PEERCRED) is in
	 * our PID namespace; the one the service stated in HELLO is in its own
	 * (often 1 in a container) and may name another process here. */
	if (connected && peer.cred_pid > 0) {
		struct selffence_opts so = {.pid = peer.cred_pid,
		                            .kill_timeout = o->o.kill_timeout};
		int r;

		log_error("event=self-fence service '%s' did not confirm DEMOTE within %" PRId64
		          " ms; killing pid %d",
		          peer.pod, (int64_t)(o->o.demote_timeout / USEC_PER_MSEC),
		          (int)peer.cred_pid);
		/* the kill is confirmed (pidfd) or the node is left to its
		 * watchdog: a service that survives SIGKILL may still write */
		r = selffence_run(&so);
		if (r >= 0) {
			log_info("event=self-fenced pid=%d outcome=%s", (int)peer.cred_pid,
			         r == SELFFENCE_GONE ? "gone" : "killed, confirmed dead");
			tl_add(o, "self-fenced", "pid %d %s", (int)peer.cred_pid,
			       r == SELFFENCE_GONE ? "gone" : "killed, confirmed dead");
		} else {
			__atomic_store_n(&o->selffence_failed, true, __ATOMIC_RELEASE);
			log_error("event=self-fence-failed pid=%d: %s; %s", (int)peer.cred_pid,
			          strerror(-r),
			          o->wd ? "the watchdog is not fed any more: this node resets"
			                : "no watchdog (selffence.watchdog_device) to reset the "
			                  "node");
			if (o->wd)
				selffence_watchdog_starve(o->wd);
			tl_add(o, "self-fence-failed", "pid %d: %s", (int)peer.cred_pid,
			       strerror(-r));
		}
	}
	set_state(o, ST_FOLLOWER);
}

static void shutdown_now(struct orchestrator *o)
{
	struct control_peer peer;
	bool connected;
	int64_t epoch;
	struct ev ev;

	get_peer(o, &peer, &connected);
	pthread_mutex_lock(&o->mu);
	epoch = o->promoted_epoch;
	pthread_mutex_unlock(&o->mu);
	if (o->state == ST_PROMOTING || o->state == ST_MASTER || o->state == ST_FENCING) {
		usec_t end = clock_mono_usec() + o->o.demote_timeout;
		bool confirmed = false;
		if (connected && control_send_demote(o->control, epoch, o->shutdown_reason) >= 0) {
			while (dequeue(o, end, &ev))
				if ((ev.type == EV_DEMOTED && ev.epoch == epoch) ||
				    ev.type == EV_GONE) {
					confirmed = true;
					break;
				}
		}
		/* The release tells the next master that this service stopped:
		 * one that did not confirm may still hold a write grant, so it
		 * is self-fenced first (as on a lost Lease), and its death is
		 * confirmed by EOF on the control socket. */
		if (!confirmed && connected) {
			on_demote_timeout(o);
			end = clock_mono_usec() + o->o.demote_timeout;
			while (dequeue(o, end, &ev))
				if (ev.type == EV_GONE)
					break;
		}
		unlabel_own(o, &peer);
	}
	elector_stop(o->elector, o->shutdown_reason);
	set_state(o, ST_FOLLOWER);
}

/* FAILED: a refused promotion, or (unsolicited) a master of our term that
 * stepped down by itself: a newer epoch holds the volume, the store
 * failed, or a write became durable after its deadline.  Either way this
 * node cannot serve: give the Lease up with the reason. */
static void on_failed(struct orchestrator *o, const struct control_msg *m)
{
	struct control_peer peer;
	bool connected;
	char reason[1100];

	if ((o->state != ST_PROMOTING && o->state != ST_MASTER) || m->epoch != o->promoted_epoch) {
		log_info("FAILED epoch=%" PRId64 " while %s: %s", m->epoch, state_names[o->state],
		         m->reason);
		return;
	}
	snprintf(reason, sizeof(reason), "%s on %.100s: %.200s",
	         o->state == ST_PROMOTING ? "promotion failed" : "the service stepped down",
	         o->node, m->reason);
	log_error("event=%s epoch=%" PRId64 ": %s",
	          o->state == ST_PROMOTING ? "promote-failed" : "service-stepped-down", m->epoch,
	          m->reason);
	get_peer(o, &peer, &connected);
	if (o->state == ST_MASTER)
		unlabel_own(o, &peer);
	release(o, reason);
	post_event(o, &peer, EVENTS_DEMOTED, "%s", reason);
	set_state(o, ST_FOLLOWER);
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

static void *orch_main(void *arg)
{
	struct orchestrator *o = arg;
	struct ev ev;

	for (;;) {
		usec_t deadline = clock_mono_usec() + USEC_PER_SEC;

		__atomic_store_n(&o->heartbeat, clock_mono_usec(), __ATOMIC_RELEASE);
		if (o->state == ST_PROMOTING && o->promote_deadline < deadline)
			deadline = o->promote_deadline;
		if (o->state == ST_DEMOTING && o->demote_deadline < deadline)
			deadline = o->demote_deadline;
		if (!dequeue(o, deadline, &ev)) {
			usec_t now = clock_mono_usec();
			if (o->state == ST_PROMOTING && now >= o->promote_deadline) {
				release(o, "the local service did not answer PROMOTE in time");
				set_state(o, ST_FOLLOWER);
			} else if (o->state == ST_DEMOTING && now >= o->demote_deadline) {
				on_demote_timeout(o);
			} else if (o->state == ST_FOLLOWER) {
				tell_master(o);
			}
			continue;
		}
		switch (ev.type) {
		case EV_STARTED:
			on_started(o, &ev.term, ev.at);
			break;
		case EV_STOPPED:
			on_stopped(o, ev.epoch, ev.reason);
			break;
		case EV_READY:
			on_ready(o, &ev.msg);
			break;
		case EV_FAILED:
			on_failed(o, &ev.msg);
			break;
		case EV_DEMOTED:
			if (o->state == ST_DEMOTING) {
				tl_add(o, "demoted", "epoch %" PRId64, ev.epoch);
				pthread_mutex_lock(&o->mu);
				o->demotions++;
				pthread_mutex_unlock(&o->mu);
				log_info("event=demoted epoch=%" PRId64, ev.epoch);
				metrics_demotion(o->o.metrics);
				{
					struct control_peer p;
					bool c;
					get_peer(o, &p, &c);
					post_event(o, &p, EVENTS_DEMOTED,
					           "epoch %" PRId64 " demoted", ev.epoch);
				}
				set_state(o, ST_FOLLOWER);
			}
			break;
		case EV_GONE:
			on_gone(o, ev.reason);
			break;
		case EV_HELLO:
		case EV_STANDBY:
			break;
		case EV_SHUTDOWN:
			shutdown_now(o);
			return NULL;
		}
	}
}

/* ------------------------------------------------------------ callbacks */

static bool cb_may_acquire(void *ud)
{
	struct orchestrator *o = ud;
	bool r;

	pthread_mutex_lock(&o->mu);
	r = (o->mode == ORCH_SERVICE_NONE || (o->svc_connected && o->svc_candidate)) &&
	    !o->shutting_down;
	pthread_mutex_unlock(&o->mu);
	return r;
}

static void cb_started(void *ud, const struct elector_term *term)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_STARTED, .term = *term, .epoch = term->epoch};

	pthread_mutex_lock(&o->mu);
	o->leading = true;
	o->epoch = term->epoch;
	o->valid_until = term->valid_until;
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_renewed(void *ud, int64_t epoch, usec_t valid_until)
{
	struct orchestrator *o = ud;
	usec_t until;

	pthread_mutex_lock(&o->mu);
	o->valid_until = valid_until;
	until = grant_until(o, valid_until);
	if (o->promoted_epoch == epoch && o->leading && until > clock_mono_usec())
		(void)control_send_renew(o->control, epoch, until);
	pthread_mutex_unlock(&o->mu);
}

static void cb_stopped(void *ud, int64_t epoch, const char *reason)
{
	struct orchestrator *o = ud;

	pthread_mutex_lock(&o->mu);
	o->leading = false;
	/* Stop the service's writes now, not after whatever the orchestrator
	 * thread is busy with; its own deadline is the backstop. */
	if (o->promoted_epoch == epoch)
		(void)control_send_demote(o->control, epoch, reason);
	/* sticky: the end of a term is never lost to a full queue */
	if (epoch > o->lost_epoch) {
		o->lost_epoch = epoch;
		str_copy(o->lost_reason, sizeof(o->lost_reason), reason);
	}
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
}

static void cb_hello(void *ud, const struct control_peer *peer)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_HELLO, .peer = *peer};

	pthread_mutex_lock(&o->mu);
	o->peer = *peer;
	o->svc_connected = true;
	o->svc_candidate = false;
	pthread_mutex_unlock(&o->mu);
	metrics_set_service_connected(o->o.metrics, true);
	enqueue(o, &ev);
}

static void cb_standby(void *ud)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_STANDBY};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true;
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_ready(void *ud, const struct control_msg *m)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_READY, .msg = *m, .epoch = m->epoch};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = false; /* a master is no standby */
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_failed(void *ud, const struct control_msg *m)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_FAILED, .msg = *m, .epoch = m->epoch};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true; /* it stays standby */
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_demoted(void *ud, int64_t epoch)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_DEMOTED, .epoch = epoch};

	pthread_mutex_lock(&o->mu);
	o->svc_candidate = true;
	pthread_mutex_unlock(&o->mu);
	enqueue(o, &ev);
}

static void cb_gone(void *ud, const char *why)
{
	struct orchestrator *o = ud;
	struct ev ev = {.type = EV_GONE};

	str_copy(ev.reason, sizeof(ev.reason), why);
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
};

static const struct control_callbacks control_cbs = {
        .hello = cb_hello,
        .standby = cb_standby,
        .ready = cb_ready,
        .failed = cb_failed,
        .demoted = cb_demoted,
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
		if (healthy_before && !healthy) {
			struct ev ev = {.type = EV_GONE};
			snprintf(ev.reason, sizeof(ev.reason), "health probe failed: %.400s", err);
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
	pthread_mutex_init(&o->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
	o->promoted_epoch = -1;
	*ret = o;
	return 0;
}

void orch_attach(struct orchestrator *o, struct elector *e, struct control *c)
{
	o->elector = e;
	o->control = c;
}

/* How long the orchestrator thread may go without a turn of its loop (or of
 * a fence retry) before the watchdog is no longer fed. */
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
		else if (o->state == ST_DEMOTING)
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

void orch_shutdown(struct orchestrator *o, const char *reason)
{
	if (!o->started || o->stopped)
		return;
	pthread_mutex_lock(&o->mu);
	o->shutting_down = true;
	str_copy(o->shutdown_reason, sizeof(o->shutdown_reason), reason);
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->thread, NULL);
	o->stopped = true;
	if (o->probe_started) {
		pthread_mutex_lock(&o->mu);
		o->probe_stop = true;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->mu);
		pthread_join(o->probe_thread, NULL);
		o->probe_started = false;
	}
}

struct orchestrator *orch_free(struct orchestrator *o)
{
	if (!o)
		return NULL;
	if (o->started && !o->stopped)
		orch_shutdown(o, "agent stopped");
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
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->mu);
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
	static const char *const svc_states[] = {
	        [ST_FOLLOWER] = "standby", [ST_FENCING] = "standby",   [ST_PROMOTING] = "promoting",
	        [ST_MASTER] = "master",    [ST_DEMOTING] = "demoting",
	};
	usec_t now = clock_mono_usec();

	if (!j)
		return NULL;
	pthread_mutex_lock(&o->mu);
	cJSON_AddStringToObject(j, "node", o->node);
	cJSON_AddStringToObject(j, "role", o->leading ? "leader" : "follower");
	cJSON_AddStringToObject(j, "state", state_names[o->state]);
	cJSON_AddNumberToObject(j, "epoch", (double)o->epoch);
	cJSON_AddNumberToObject(j, "promotions", (double)o->promotions);
	cJSON_AddNumberToObject(j, "demotions", (double)o->demotions);
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
