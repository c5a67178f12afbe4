/* orch_sm: the orchestrator's transition function (see orch_sm.h).  Pure:
 * everything it knows comes in the event and `now`, everything it does
 * goes out as effects. */
#include "config.h"

#include "nodeagent/orch_sm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fencing/pipeline.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/events.h"

static const char *const state_names[] = {
        [SM_FOLLOWER] = "follower", [SM_FENCING] = "fencing",     [SM_CLAIMING] = "claiming",
        [SM_FINDING] = "finding",   [SM_PROMOTING] = "promoting", [SM_LABELLING] = "labelling",
        [SM_MASTER] = "master",     [SM_RELEASING] = "releasing", [SM_DEMOTING] = "demoting",
        [SM_KILLING] = "killing",   [SM_STOPPED] = "stopped",
};

static const char *const job_names[] = {
        [JOB_FENCE] = "fence",         [JOB_CLAIM] = "claim",
        [JOB_FIND_POD] = "find-pod",   [JOB_LABEL] = "label",
        [JOB_UNLABEL] = "unlabel",     [JOB_CONFIRM_EXIT] = "confirm-exit",
        [JOB_KILL] = "kill",           [JOB_TELL_MASTER] = "tell-master",
        [JOB_SCSI_KEEP] = "scsi-keep", [JOB_UNTAINT] = "untaint",
        [JOB_ROUTE] = "route",
};

const char *sm_state_name(enum sm_state st)
{
	return st < _SM_STATE_MAX ? state_names[st] : "?";
}

const char *sm_job_name(enum sm_job j)
{
	return j < _JOB_MAX ? job_names[j] : "?";
}

void sm_init(struct sm *s, const struct sm_config *cfg)
{
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->st = SM_FOLLOWER;
	s->promoted_epoch = -1;
	s->next_job_id = 1;
	s->svc_connected = cfg->mode == SM_MODE_NONE;
	s->untaint_pending = cfg->untaint; /* a node back from a fence */
}

bool sm_unconfirmed_demotion(const struct sm *s)
{
	return s->st == SM_DEMOTING || s->st == SM_KILLING;
}

/* Whether the liveness exchange runs: a control-socket service is
 * connected and not already being killed or stopped. */
static bool pinging(const struct sm *s)
{
	return s->cfg.mode == SM_MODE_CONTROL && s->cfg.heartbeat > 0 && s->svc_connected &&
	       s->st != SM_KILLING && s->st != SM_STOPPED;
}

/* Whether silence is judged now: not while a promotion recovers or a
 * demotion waits for writes in flight (the service's control thread may
 * wait with them; agent.promote_timeout_ms and selffence.stop_timeout_ms
 * bound those). */
static bool judging(const struct sm *s)
{
	return pinging(s) && s->st != SM_PROMOTING && s->st != SM_DEMOTING;
}

/* The master's endpoints check is due when route_at comes. */
static bool routing(const struct sm *s)
{
	return s->cfg.route_check && s->st == SM_MASTER && s->leading && !s->route_busy &&
	       s->peer.pod[0];
}

usec_t sm_wake_at(const struct sm *s)
{
	usec_t w = USEC_INFINITY;

	if (s->retry_at && s->retry_at < w)
		w = s->retry_at;
	if (s->deadline && s->deadline < w)
		w = s->deadline;
	if (s->st == SM_FOLLOWER && s->cfg.mode == SM_MODE_CONTROL && s->svc_connected &&
	    !s->tell_busy && s->tell_at < w)
		w = s->tell_at;
	if (s->cfg.scsi_check && !s->scsi_busy && s->st != SM_STOPPED && s->scsi_at < w)
		w = s->scsi_at;
	if (routing(s) && s->route_at < w)
		w = s->route_at;
	if (s->untaint_pending && !s->untaint_busy && s->st == SM_FOLLOWER && s->untaint_at < w)
		w = s->untaint_at;
	if (s->cfg.untaint && s->cfg.untaint_recheck && !s->untaint_pending && !s->untaint_busy &&
	    s->st == SM_FOLLOWER && s->untaint_at + s->cfg.untaint_recheck < w)
		w = s->untaint_at + s->cfg.untaint_recheck;
	if (pinging(s)) {
		if (s->ping_at < w)
			w = s->ping_at;
		if (judging(s) && s->unanswered_since &&
		    s->unanswered_since + s->cfg.heartbeat_timeout < w)
			w = s->unanswered_since + s->cfg.heartbeat_timeout;
	}
	return w;
}

/* ------------------------------------------------------------- effects */

static struct sm_effect *fx_add(struct sm_effects *fx, enum sm_fx_type type)
{
	static struct sm_effect overflow;
	struct sm_effect *e;

	if (fx->n == SM_FX_MAX) {
		/* a programming error the unit tests catch: say so loudly,
		 * never write past the array */
		memset(&overflow, 0, sizeof(overflow));
		return &overflow;
	}
	e = &fx->v[fx->n++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	return e;
}

static void fx_text(struct sm_effect *e, const char *fmt, va_list ap)
{
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
}

static void tl(struct sm_effects *fx, const char *step, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void tl(struct sm_effects *fx, const char *step, const char *fmt, ...)
{
	struct sm_effect *e = fx_add(fx, FX_TL_ADD);
	va_list ap;

	str_copy(e->a, sizeof(e->a), step);
	va_start(ap, fmt);
	fx_text(e, fmt, ap);
	va_end(ap);
}

static void say(struct sm_effects *fx, enum log_level lvl, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void say(struct sm_effects *fx, enum log_level lvl, const char *fmt, ...)
{
	struct sm_effect *e = fx_add(fx, FX_LOG);
	va_list ap;

	e->code = (int)lvl;
	va_start(ap, fmt);
	fx_text(e, fmt, ap);
	va_end(ap);
}

static void event(struct sm_effects *fx, int reason, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void event(struct sm_effects *fx, int reason, const char *fmt, ...)
{
	struct sm_effect *e = fx_add(fx, FX_EVENT);
	va_list ap;

	e->code = reason;
	va_start(ap, fmt);
	fx_text(e, fmt, ap);
	va_end(ap);
}

static void metric(struct sm_effects *fx, enum sm_metric m, int64_t epoch, double seconds)
{
	struct sm_effect *e = fx_add(fx, FX_METRIC);

	e->code = (int)m;
	e->epoch = epoch;
	e->seconds = seconds;
}

static void release(struct sm *s, struct sm_effects *fx, enum elector_release kind, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
/* Give the Lease of the current term up — only while we lead in it: a
 * release that comes after the term ended must not end a later one (the
 * elector also checks the epoch).  kind: what the release says of our
 * service (false/true: unconfirmed/dead). */
static void release(struct sm *s, struct sm_effects *fx, enum elector_release kind, const char *fmt,
                    ...)
{
	char text[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	str_copy(s->release_reason, sizeof(s->release_reason), text);
	if (!s->leading)
		return;
	struct sm_effect *e = fx_add(fx, FX_RELEASE);
	e->flag = kind == ELECTOR_RELEASE_DEAD;
	e->code = (int)kind;
	e->epoch = s->epoch;
	str_copy(e->text, sizeof(e->text), text);
}

static void send_demote(struct sm *s, struct sm_effects *fx, usec_t now, const char *reason)
{
	struct sm_effect *e = fx_add(fx, FX_SEND_DEMOTE);

	e->epoch = s->promoted_epoch;
	str_copy(e->text, sizeof(e->text), reason);
	s->demote_sent = now;
}

/* Queue a job; `wait`: the state waits for its result (a newer wait
 * replaces it, so the result of an abandoned job is ignored). */
static struct sm_effect *job(struct sm *s, struct sm_effects *fx, enum sm_job j, bool wait)
{
	struct sm_effect *e = fx_add(fx, FX_JOB);

	e->job = j;
	e->job_id = s->next_job_id++;
	e->epoch = s->epoch;
	if (wait) {
		s->wait_job = e->job_id;
		s->retry_at = 0;
	}
	return e;
}

/* A job about our own pod (a = pod, b = uid). */
static struct sm_effect *pod_job(struct sm *s, struct sm_effects *fx, enum sm_job j, bool wait)
{
	struct sm_effect *e = job(s, fx, j, wait);

	str_copy(e->a, sizeof(e->a), s->peer.pod);
	str_copy(e->b, sizeof(e->b), s->peer.uid);
	return e;
}

/* service.endpoints: a JOB_ROUTE, the term's first or the master's check. */
static void route(struct sm *s, struct sm_effects *fx, bool first)
{
	pod_job(s, fx, JOB_ROUTE, false)->flag = first;
	s->route_busy = true;
}

/* The master's check comes this soon after the term's first route, and
 * after a failed check. */
static usec_t route_soon(const struct sm *s)
{
	return s->cfg.route_check > USEC_PER_SEC ? USEC_PER_SEC : s->cfg.route_check;
}

static void unlabel(struct sm *s, struct sm_effects *fx)
{
	s->early_label = false; /* an early label's answer, if still out, is moot */
	s->early_job = 0;
	if (s->cfg.mode == SM_MODE_NONE || !s->peer.pod[0])
		return;
	pod_job(s, fx, JOB_UNLABEL, false);
}

/* -------------------------------------------------------------- states */

/* Enter st: its timers start afresh; the job the state waits for (set by
 * job(..., true)) is kept, except in FOLLOWER and STOPPED, which wait for
 * none. */
static void enter(struct sm *s, enum sm_state st)
{
	s->st = st;
	s->retry_at = 0;
	s->deadline = 0;
	if (st == SM_FOLLOWER || st == SM_STOPPED)
		s->wait_job = 0;
}

/* FOLLOWER, or — once a stop is pending — stop: the elector releases the
 * Lease if we still lead (the successor then runs the full fence: a
 * release at a stop never says the service is confirmed dead). */
static void follow(struct sm *s, struct sm_effects *fx)
{
	/* back from a term (or a demotion): if this node was fenced with the
	 * out-of-service taint meanwhile, it is back now */
	if (s->st != SM_FOLLOWER && s->cfg.untaint)
		s->untaint_pending = true;
	s->fence_only = false;
	/* a term that ends before READY took its pod's early label: off again
	 * (the queue runs the PATCH after the label's, and a successor's claim
	 * makes it a no-op) */
	if (s->early_label)
		unlabel(s, fx);
	enter(s, SM_FOLLOWER);
	if (!s->stopping)
		return;
	if (s->leading && !s->keep_term)
		event(fx, EVENTS_RELEASED, "epoch %" PRId64 " released: %s", s->epoch,
		      s->stop_reason);
	struct sm_effect *e = fx_add(fx, FX_STOP_ELECTOR);
	str_copy(e->text, sizeof(e->text), s->stop_reason);
	e->flag = s->keep_term;
	e->code = s->keep_term && s->keep_serving;
	s->leading = false;
	enter(s, SM_STOPPED);
}

/* The term was released (release() above): its timeline ends, unfinished,
 * and the machine follows. */
static void released(struct sm *s, struct sm_effects *fx)
{
	tl(fx, "released", "%s", s->release_reason);
	fx_add(fx, FX_TL_FINISH)->flag = false;
	follow(s, fx);
}

/* A term in which PROMOTE was sent ends: the service stops being master
 * (kubefence_demotions_total), however it ends. */
static void count_demotion(struct sm *s, struct sm_effects *fx)
{
	s->demotions++;
	metric(fx, SMM_DEMOTION, s->epoch, 0);
}

static void demoting(struct sm *s, usec_t now)
{
	enter(s, SM_DEMOTING);
	s->deadline = now + s->cfg.demote_timeout;
}

static void promote(struct sm *s, struct sm_effects *fx, usec_t now, bool again);

/* The next node the term owes a fence, or — none left — the duty is
 * settled and the promotion begins. */
static void next_fence(struct sm *s, struct sm_effects *fx, usec_t now)
{
	const char *cursor = s->owed + s->owed_pos;
	char victim[254], level[16];

	while (lease_owed_next(&cursor, victim, sizeof(victim), level, sizeof(level))) {
		s->owed_pos = (size_t)(cursor - s->owed);
		if (strcmp(victim, s->cfg.node) == 0)
			continue;
		if (!s->cfg.have_methods) {
			tl(fx, "fenced", "'%s' owed a fence, but no method is configured", victim);
			continue;
		}
		str_copy(s->victim, sizeof(s->victim), victim);
		s->level =
		        strcmp(level, "released") == 0 ? FENCE_LEVEL_RELEASED : FENCE_LEVEL_EXPIRED;
		struct sm_effect *e = job(s, fx, JOB_FENCE, true);
		str_copy(e->a, sizeof(e->a), s->victim);
		e->level = s->level;
		return;
	}
	if (!s->fenced_any)
		tl(fx, "fenced", "nothing to fence (owed: %s)", s->owed[0] ? s->owed : "none");
	struct sm_effect *st = fx_add(fx, FX_FENCE_SETTLED);
	st->epoch = s->epoch;
	/* no service of ours connected to answer for an earlier one here:
	 * our own node's entry (if any) stays on the Lease */
	st->flag = s->cfg.mode != SM_MODE_NONE && !s->svc_connected;
	promote(s, fx, now, false);
}

/* The claim's job, its first run or a retry: our pod (control mode), and
 * for a promotion again in the term (s->again) when the store's open was
 * READY, which claim_again() checks the LUN's loss against. */
static void claim_job(struct sm *s, struct sm_effects *fx)
{
	struct sm_effect *e = job(s, fx, JOB_CLAIM, true);

	if (s->cfg.mode == SM_MODE_CONTROL)
		str_copy(e->a, sizeof(e->a), s->peer.pod);
	e->flag = s->again;
	e->at = s->again ? s->ready_at : 0;
}

static void promote(struct sm *s, struct sm_effects *fx, usec_t now, bool again)
{
	if (s->cfg.mode == SM_MODE_NONE) {
		tl(fx, "promoted", "no local service is managed (service.probe = none)");
		fx_add(fx, FX_TL_FINISH)->flag = true;
		say(fx, LOG_LEVEL_INFO,
		    "event=promoted pod='-' epoch=%" PRId64 " (no local service)", s->epoch);
		enter(s, SM_MASTER);
		return;
	}
	/* The Service must never select two pods: the old label goes first.
	 * Probe mode finds its own pod only afterwards: every pod is claimed
	 * (one found in an earlier term may have been replaced since). */
	s->again = again;
	claim_job(s, fx);
	s->claim_began = now;
	enter(s, SM_CLAIMING);
}

static void label(struct sm *s, struct sm_effects *fx)
{
	pod_job(s, fx, JOB_LABEL, true);
	enter(s, SM_LABELLING);
}

/* The label goes on as PROMOTE goes out, not after READY: the Service's
 * Endpoints and every node's proxy rules (a third of a second in the lab)
 * follow it while the service recovers instead of after.  The label is a
 * route, not a fence: the claim took it off every other pod, and what keeps
 * a stale master from writing is the store's fence and epoch.  A client
 * that comes early gets NOTMASTER until READY.  READY waits for this
 * PATCH's answer (ready()); a failed one is tried again then. */
static void label_early(struct sm *s, struct sm_effects *fx)
{
	struct sm_effect *e;

	if (!s->peer.pod[0])
		return;
	e = pod_job(s, fx, JOB_LABEL, false);
	s->early_label = true;
	s->early_job = e->job_id;
	s->early_result = 0;
}

static bool promoted_state(enum sm_state st)
{
	return st == SM_PROMOTING || st == SM_LABELLING || st == SM_MASTER;
}

static bool term_state(enum sm_state st)
{
	return st == SM_FENCING || st == SM_CLAIMING || st == SM_FINDING || promoted_state(st);
}

static void lost(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx);

static void started(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	const struct elector_term *t = &ev->term;
	const char *prev = t->previous.node[0] ? t->previous.node : t->previous.holder;

	if (s->stopping || s->st == SM_STOPPED) {
		/* The duty stays in the Lease for whoever holds it next. */
		say(fx, LOG_LEVEL_INFO, "term %" PRId64 " began while stopping; not acting on it",
		    t->epoch);
		return;
	}
	if (promoted_state(s->st) && s->leading && t->epoch != s->epoch) {
		/* the end of our last term was never seen (two ended before
		 * the inputs were read): it ends now, demotion first */
		struct sm_event end = {.type = SE_LOST, .epoch = s->epoch};
		str_copy(end.text, sizeof(end.text), "a newer term began");
		lost(s, &end, now, fx);
	}
	if (s->st == SM_DEMOTING || s->st == SM_KILLING || s->st == SM_RELEASING) {
		/* A service that has not confirmed it stopped may not be
		 * promoted again, nor the watchdog fed: the new term is given
		 * up at once (the successor fences us fully) and the demotion
		 * goes on. */
		say(fx, LOG_LEVEL_WARNING,
		    "term %" PRId64 " began while %s (epoch %" PRId64 " not confirmed stopped); "
		    "releasing it",
		    t->epoch, sm_state_name(s->st), s->promoted_epoch);
		s->leading = true;
		s->epoch = t->epoch;
		struct sm_effect *r = fx_add(fx, FX_RELEASE);
		r->epoch = t->epoch;
		snprintf(r->text, sizeof(r->text),
		         "term began while the service of epoch %" PRId64
		         " was not confirmed stopped",
		         s->promoted_epoch);
		return;
	}
	if (term_state(s->st))
		say(fx, LOG_LEVEL_WARNING, "term %" PRId64 " began while %s in term %" PRId64,
		    t->epoch, sm_state_name(s->st), s->epoch);
	s->leading = true;
	s->epoch = t->epoch;
	s->origin = ev->at ? ev->at : now;
	s->fence_only = s->cfg.mode == SM_MODE_CONTROL && !s->svc_connected && !t->continued;
	s->continued = t->continued;
	s->again = false;
	s->repromoted_at = 0;
	s->fence_began = now;
	str_copy(s->owed, sizeof(s->owed), t->fence_owed);
	s->owed_pos = 0;
	s->fenced_any = false;
	metric(fx, SMM_LEADER, t->epoch, 0);
	struct sm_effect *b = fx_add(fx, FX_TL_BEGIN);
	b->at = s->origin;
	str_copy(b->a, sizeof(b->a), prev[0] ? prev : t->previous.holder);
	str_copy(b->b, sizeof(b->b), s->cfg.node);
	tl(fx, "acquired", "epoch %" PRId64 ", lease %s, previous holder %s%s%s, fence owed: %s",
	   t->epoch, lease_verdict_to_string(t->verdict), prev[0] ? prev : "(none)",
	   t->previous.release_reason[0] ? ", released: " : "", t->previous.release_reason,
	   t->fence_owed[0] ? t->fence_owed : "none");
	/* service.endpoints: the Service's route moves to our pod before the
	 * fence.  A fence that deletes the old master's pod takes its address
	 * away, and a client sent there would wait out a connect timeout; our
	 * standby refuses it at once (NOTMASTER) until it is promoted.  The
	 * route is no fence: the old master is stopped by its grant, the
	 * store's epoch and the target, not by losing its clients. */
	if (s->cfg.route_check && s->cfg.mode == SM_MODE_CONTROL && s->svc_connected &&
	    s->peer.pod[0] && !s->route_busy)
		route(s, fx, true); /* the term's first: a step of the failover */
	enter(s, SM_FENCING);
	/* The duty comes from the Lease record this term wrote (fence-owed),
	 * never from what this process remembers of its predecessor. */
	next_fence(s, fx, now);
}

static void lost(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	if (ev->epoch != s->epoch || !s->leading)
		return; /* a term already over for us */
	s->leading = false;
	metric(fx, SMM_FOLLOWER, ev->epoch, 0);
	if (promoted_state(s->st)) {
		/* DEMOTE was sent by the elector's callback already. */
		tl(fx, "demote-sent", "term %" PRId64 " ended: %s", ev->epoch, ev->text);
		s->demote_sent = now;
		count_demotion(s, fx);
		unlabel(s, fx);
		if (s->cfg.mode == SM_MODE_CONTROL && s->svc_connected)
			demoting(s, now);
		else
			follow(s, fx);
	} else if (term_state(s->st)) {
		say(fx, LOG_LEVEL_INFO,
		    "term %" PRId64 " ended before the promotion (%s); not promoting", ev->epoch,
		    ev->text);
		tl(fx, "abandoned", "term %" PRId64 " ended: %s", ev->epoch, ev->text);
		fx_add(fx, FX_TL_FINISH)->flag = false;
		follow(s, fx);
	}
	/* RELEASING, DEMOTING, KILLING: already stepping down */
}

static void shutdown(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	if (s->stopping)
		return;
	s->stopping = true;
	str_copy(s->stop_reason, sizeof(s->stop_reason), ev->text[0] ? ev->text : "agent stopped");
	if (ev->result == 1 && (term_state(s->st) || s->st == SM_FOLLOWER)) {
		/* keep the term: no DEMOTE, no unlabel, no release.  The service
		 * writes on until its grant ends; the next incarnation on this
		 * node continues the term (or the Lease expires). */
		s->keep_term = s->leading;
		/* READY was seen in this term: only then is there a service
		 * for a parting renewal to keep writing (one still recovering
		 * stops with the agent's connection) */
		s->keep_serving = s->st == SM_LABELLING || s->st == SM_MASTER;
		say(fx, LOG_LEVEL_INFO,
		    "stopping and keeping %s for the next incarnation on this node: %s",
		    s->leading ? "the term" : "nothing (no term held)", s->stop_reason);
		if (s->leading)
			tl(fx, "kept", "term %" PRId64 " left to the next incarnation: %s",
			   s->epoch, s->stop_reason);
		follow(s, fx);
		return;
	}
	if (promoted_state(s->st)) {
		count_demotion(s, fx);
		unlabel(s, fx);
		if (s->cfg.mode == SM_MODE_CONTROL && s->svc_connected) {
			send_demote(s, fx, now, s->stop_reason);
			tl(fx, "demote-sent", "stopping: %s", s->stop_reason);
			demoting(s, now);
			return;
		}
		follow(s, fx);
	} else if (s->st == SM_FENCING && s->wait_job) {
		/* a fence run is in flight: the Lease is kept until it ends (it
		 * stops at its next attempt), so that it never acts after our
		 * release, in a term of its victim's */
		tl(fx, "abandoned", "the agent is stopping once the fence run ends: %s",
		   s->stop_reason);
		fx_add(fx, FX_TL_FINISH)->flag = false;
	} else if (term_state(s->st)) {
		tl(fx, "abandoned", "the agent is stopping: %s", s->stop_reason);
		fx_add(fx, FX_TL_FINISH)->flag = false;
		follow(s, fx);
	} else if (s->st == SM_FOLLOWER) {
		follow(s, fx);
	}
	/* RELEASING, DEMOTING, KILLING: follow() stops once they end */
}

/* The service went away (EOF, or its probe failed). */
static void gone(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	bool was_connected = s->svc_connected;

	(void)now;
	if (s->cfg.mode != SM_MODE_NONE)
		s->svc_connected = false;
	s->unanswered_since = 0;
	if (s->st == SM_DEMOTING) {
		/* EOF is no proof that it stopped writing (its grant may still
		 * run): its exit must be seen, or it is killed */
		tl(fx, "detected", "service '%s' gone while demoting: %s", s->peer.pod, ev->text);
		if (s->peer.cred_pid <= 0 || s->wait_job) {
			if (!s->wait_job)
				follow(s, fx);
			return;
		}
		struct sm_effect *e = job(s, fx, JOB_CONFIRM_EXIT, true);
		e->pid = s->peer.cred_pid;
		e->timeout = s->cfg.exit_wait;
		return;
	}
	if (!term_state(s->st) || !was_connected)
		return;
	struct sm_effect *b = fx_add(fx, FX_TL_BEGIN);
	b->at = now;
	str_copy(b->a, sizeof(b->a), s->cfg.node);
	tl(fx, "detected", "service '%s' gone: %s", s->peer.pod, ev->text);
	snprintf(s->release_reason, sizeof(s->release_reason),
	         "service %.100s on %.100s died: %.200s", s->peer.pod, s->cfg.node, ev->text);
	if (promoted_state(s->st))
		count_demotion(s, fx);
	/* EOF alone is no proof: a service can close its socket and go on
	 * serving.  Its process must be seen to exit. */
	struct sm_effect *e = job(s, fx, JOB_CONFIRM_EXIT, true);
	e->pid = s->peer.cred_pid;
	e->timeout = s->cfg.exit_wait;
	enter(s, SM_RELEASING);
}

/* READY seen and our pod labelled: the term's service is the master. */
static void labelled(struct sm *s, struct sm_effects *fx, usec_t now)
{
	int64_t took = (int64_t)((now - s->origin) / USEC_PER_MSEC);

	tl(fx, "labelled", "%s on '%s'", s->cfg.label, s->peer.pod);
	fx_add(fx, FX_TL_FINISH)->flag = true;
	s->promotions++;
	s->failures = 0;
	s->candidate_after = 0;
	s->early_label = false; /* the label is the master's now */
	s->early_job = 0;
	/* routed as the term began; the first check (which also removes what
	 * Kubernetes' controllers left) comes soon after */
	s->route_at = now + route_soon(s);
	metric(fx, SMM_PROMOTION, s->epoch, (double)took / 1000.0);
	event(fx, EVENTS_PROMOTED,
	      "epoch %" PRId64 ": recovered %" PRIu64 " records in %" PRIu64
	      " ms, labelled %s, %" PRId64 " ms after the Lease was free",
	      s->epoch, s->ready_records, s->ready_recovery_ms, s->cfg.label, took);
	say(fx, LOG_LEVEL_INFO,
	    "event=promoted pod='%s/%s' epoch=%" PRId64 " records=%" PRIu64 " failover_ms=%" PRId64,
	    s->cfg.ns, s->peer.pod, s->epoch, s->ready_records, took);
	enter(s, SM_MASTER);
}

static void ready(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	const struct control_msg *m = &ev->msg;

	if (s->st != SM_PROMOTING || m->epoch != s->promoted_epoch) {
		say(fx, LOG_LEVEL_WARNING,
		    "READY epoch=%" PRId64 " while %s (promoted epoch %" PRId64 "); ignored",
		    m->epoch, sm_state_name(s->st), s->promoted_epoch);
		return;
	}
	tl(fx, "recovered", "%" PRIu64 " records up to seq %" PRIu64 " in %" PRIu64 " ms",
	   m->records, m->last_seq, m->recovery_ms);
	s->ready_at = now;
	s->ready_records = m->records;
	s->ready_recovery_ms = m->recovery_ms;
	if (s->early_label && s->early_job) {
		/* the early label's PATCH is still out: its answer decides */
		enter(s, SM_LABELLING);
		s->wait_job = s->early_job;
	} else if (s->early_label && s->early_result == 0) {
		enter(s, SM_LABELLING);
		labelled(s, fx, now);
	} else {
		label(s, fx); /* none went on early, or it failed: now */
	}
}

usec_t sm_failure_backoff(int failures)
{
	usec_t d = 500 * USEC_PER_MSEC;

	for (int i = 1; i < failures && d < 8 * USEC_PER_SEC; i++)
		d *= 2;
	return d < 8 * USEC_PER_SEC ? d : 8 * USEC_PER_SEC;
}

/* One more failure in a row (a minute without one starts the count
 * again): no candidate for sm_failure_backoff() of the count. */
static void count_failure(struct sm *s, usec_t now)
{
	if (s->last_failure && now - s->last_failure > 60 * USEC_PER_SEC)
		s->failures = 0;
	s->last_failure = now;
	s->failures++;
	s->candidate_after = now + sm_failure_backoff(s->failures);
}

/* The fence of this term, or its claim (the other pods' labels, the LUN
 * registration), has failed for agent.fence_give_up_ms: this node cannot
 * complete the takeover (its path to the storage or to the API is broken,
 * say), and holding the Lease would keep every other node from trying.
 * The term is released as one that promoted nothing — PROMOTE is never sent
 * before both are done — a fence's duty still on the Lease when the fence
 * failed (nothing was settled; a claim comes after the settling), and this
 * node sits out the failure backoff
 * (sm_failure_backoff), so that another node may take it first.  `event`
 * and `what` name the step for the log and the release reason. */
static void give_up(struct sm *s, struct sm_effects *fx, usec_t now, int result, usec_t began,
                    const char *event, const char *what)
{
	int64_t tried = (int64_t)((now - began) / USEC_PER_MSEC);

	/* a failure in a row as a failed promotion is: long enough for
	 * another candidate to take the free Lease, short enough not to keep
	 * this node from trying again soon when it is the only one */
	count_failure(s, now);
	say(fx, LOG_LEVEL_ERROR,
	    "event=%s epoch=%" PRId64 ": could not %s for %" PRId64
	    " ms (last: %s); releasing the Lease, no candidate for %" PRId64 " ms",
	    event, s->epoch, what, tried, strerror(result < 0 ? -result : result),
	    (int64_t)(sm_failure_backoff(s->failures) / USEC_PER_MSEC));
	release(s, fx,
	        s->cfg.mode == SM_MODE_CONTROL && !s->continued && s->promoted_epoch != s->epoch
	                ? ELECTOR_RELEASE_UNPROMOTED
	                : ELECTOR_RELEASE_UNCONFIRMED,
	        "could not %.120s for %" PRId64 " ms; another node may", what, tried);
	released(s, fx);
}

/* The term of a service that failed its promotion or stepped down ends:
 * released (unconfirmed: the successor fences in full), unlabelled. */
static void step_down_release(struct sm *s, usec_t now, struct sm_effects *fx, bool promoting,
                              bool counted, const char *reason)
{
	count_failure(s, now);
	say(fx, LOG_LEVEL_ERROR,
	    "event=%s epoch=%" PRId64 ": %s; no candidate for %" PRId64 " ms (%d in a row)",
	    promoting ? "promote-failed" : "service-stepped-down", s->epoch, reason,
	    (int64_t)(sm_failure_backoff(s->failures) / USEC_PER_MSEC), s->failures);
	release(s, fx, false, "%s on %.100s: %.200s",
	        promoting ? "promotion failed" : "the service stepped down", s->cfg.node, reason);
	event(fx, EVENTS_DEMOTED, "epoch %" PRId64 ": %s after %" PRId64 " ms in the term",
	      s->epoch, s->release_reason, (int64_t)((now - s->origin) / USEC_PER_MSEC));
	if (!counted)
		count_demotion(s, fx);
	if (!promoting)
		unlabel(s, fx);
	released(s, fx);
}

/* A master of our term whose service stepped down by itself (its store
 * failed a write whose outcome it cannot know: the target restarted, the
 * path to it broke).  The term is still ours — the Lease is renewed, and a
 * successor would first have to take it — so releasing it would be a
 * failover for nothing.  Promote the service again in the same epoch
 * instead: the claim runs again (the Lease read, the other pods' labels,
 * and on the LUNs only what a keep may do: register where the target lost
 * every registration, never where our key was removed while others are
 * there — that is a fence, and ends the term), then PROMOTE, whose
 * recovery reads back what the store holds.  The pod keeps its label
 * meanwhile (it answers NOTMASTER until READY); a term that ends before
 * READY takes it off, as it does an early label. */
static void repromote(struct sm *s, const struct control_msg *m, usec_t now, struct sm_effects *fx)
{
	say(fx, LOG_LEVEL_ERROR,
	    "event=service-stepped-down epoch=%" PRId64 ": %s; the term is still ours: "
	    "promoting it again in this term",
	    m->epoch, m->reason);
	event(fx, EVENTS_DEMOTED,
	      "epoch %" PRId64 ": the service stepped down (%.200s); promoting it again in the "
	      "same term",
	      m->epoch, m->reason);
	count_demotion(s, fx);
	str_copy(s->again_reason, sizeof(s->again_reason), m->reason);
	s->repromoted_at = now;
	s->origin = now;
	s->early_label = true; /* ours already: off again if the term ends first */
	s->early_job = 0;
	s->early_result = 0;
	struct sm_effect *b = fx_add(fx, FX_TL_BEGIN);
	b->at = now;
	str_copy(b->a, sizeof(b->a), s->cfg.node);
	str_copy(b->b, sizeof(b->b), s->cfg.node);
	tl(fx, "stepped-down", "epoch %" PRId64 ": %s", m->epoch, m->reason);
	promote(s, fx, now, true);
}

/* FAILED: a refused promotion, or (unsolicited) a master of our term that
 * stepped down by itself.  Either way this node cannot serve. */
static void failed(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	const struct control_msg *m = &ev->msg;
	bool promoting = s->st == SM_PROMOTING;

	if (s->st == SM_DEMOTING && m->epoch == s->promoted_epoch) {
		/* it stepped down by itself: as good as DEMOTED */
		tl(fx, "demoted", "epoch %" PRId64 " stepped down: %s", m->epoch, m->reason);
		follow(s, fx);
		return;
	}
	if (!promoted_state(s->st) || m->epoch != s->promoted_epoch) {
		say(fx, LOG_LEVEL_INFO, "FAILED epoch=%" PRId64 " while %s: %s", m->epoch,
		    sm_state_name(s->st), m->reason);
		return;
	}
	if (!promoting && s->st == SM_MASTER && s->cfg.mode == SM_MODE_CONTROL && s->leading &&
	    !s->stopping && s->svc_connected &&
	    (!s->repromoted_at || now - s->repromoted_at >= SM_REPROMOTE_INTERVAL)) {
		repromote(s, m, now, fx);
		return;
	}
	step_down_release(s, now, fx, promoting, false, m->reason);
}

static void demoted(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	if (s->st != SM_DEMOTING || ev->epoch != s->promoted_epoch) {
		say(fx, LOG_LEVEL_INFO, "DEMOTED epoch=%" PRId64 " while %s; ignored", ev->epoch,
		    sm_state_name(s->st));
		return;
	}
	int64_t took = (int64_t)((now - s->demote_sent) / USEC_PER_MSEC);
	tl(fx, "demoted", "epoch %" PRId64 " in %" PRId64 " ms", ev->epoch, took);
	say(fx, LOG_LEVEL_INFO, "event=demoted epoch=%" PRId64 " demote_ms=%" PRId64, ev->epoch,
	    took);
	event(fx, EVENTS_DEMOTED,
	      "epoch %" PRId64 " demoted: confirmed %" PRId64 " ms after DEMOTE", ev->epoch, took);
	follow(s, fx);
}

/* The service left a PING unanswered for heartbeat_timeout: a stopped or
 * wedged process, its socket still open.  It is killed, its death
 * confirmed; a term it was part of is given up for the full fence (a
 * confirmed kill is no orderly stop: what it had in flight is unknown). */
static void hung(struct sm *s, usec_t now, struct sm_effects *fx)
{
	int64_t quiet = (int64_t)((now - s->unanswered_since) / USEC_PER_MSEC);

	say(fx, LOG_LEVEL_ERROR,
	    "event=service-hung service '%s' left PING unanswered for %" PRId64
	    " ms; killing pid %d",
	    s->peer.pod, quiet, (int)s->peer.cred_pid);
	s->release_after_kill = false;
	if (term_state(s->st)) {
		struct sm_effect *b = fx_add(fx, FX_TL_BEGIN);
		b->at = now;
		str_copy(b->a, sizeof(b->a), s->cfg.node);
		tl(fx, "detected", "service '%s' hung: no PONG for %" PRId64 " ms", s->peer.pod,
		   quiet);
		snprintf(s->release_reason, sizeof(s->release_reason),
		         "service %.100s on %.100s hung: no PONG for %" PRId64 " ms", s->peer.pod,
		         s->cfg.node, quiet);
		if (promoted_state(s->st)) {
			count_demotion(s, fx);
			/* its grant may still run: DEMOTE in case it wakes first */
			send_demote(s, fx, now, "hung: no PONG");
			unlabel(s, fx);
		}
		s->release_after_kill = true;
	}
	s->unanswered_since = 0;
	if (s->peer.cred_pid <= 0) {
		/* nothing to kill: the release cannot say it is dead */
		if (s->release_after_kill) {
			release(s, fx, false, "%s", s->release_reason);
			tl(fx, "released", "%s (no pid to kill)", s->release_reason);
			fx_add(fx, FX_TL_FINISH)->flag = false;
			event(fx, EVENTS_RELEASED, "epoch %" PRId64 ": %s", s->epoch,
			      s->release_reason);
		}
		follow(s, fx);
		return;
	}
	struct sm_effect *e = job(s, fx, JOB_KILL, true);
	e->pid = s->peer.cred_pid;
	str_copy(e->a, sizeof(e->a), s->peer.pod);
	enter(s, SM_KILLING);
}

static void tick(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	if (s->retry_at && now >= s->retry_at) {
		s->retry_at = 0;
		switch (s->st) {
		case SM_FENCING: {
			struct sm_effect *e = job(s, fx, JOB_FENCE, true);
			str_copy(e->a, sizeof(e->a), s->victim);
			e->level = s->level;
			break;
		}
		case SM_CLAIMING:
			claim_job(s, fx);
			break;
		case SM_FINDING:
			job(s, fx, JOB_FIND_POD, true);
			break;
		case SM_KILLING: {
			struct sm_effect *e = job(s, fx, JOB_KILL, true);
			e->pid = s->peer.cred_pid;
			str_copy(e->a, sizeof(e->a), s->peer.pod);
			break;
		}
		case SM_LABELLING:
			label(s, fx);
			break;
		default:
			break;
		}
	}
	if (s->deadline && now >= s->deadline) {
		s->deadline = 0;
		if (s->st == SM_PROMOTING) {
			say(fx, LOG_LEVEL_ERROR,
			    "the local service did not answer PROMOTE epoch=%" PRId64 " in time; "
			    "demoting and releasing",
			    s->promoted_epoch);
			send_demote(s, fx, now, "PROMOTE timed out");
			count_demotion(s, fx);
			release(s, fx, false, "the local service did not answer PROMOTE in time");
			tl(fx, "released", "%s", s->release_reason);
			fx_add(fx, FX_TL_FINISH)->flag = false;
			demoting(s, now);
		} else if (s->st == SM_DEMOTING && s->wait_job) {
			/* the exit confirmation answers (then a kill if need be) */
		} else if (s->st == SM_DEMOTING) {
			if (s->svc_connected && s->peer.cred_pid > 0) {
				say(fx, LOG_LEVEL_ERROR,
				    "event=self-fence service '%s' did not confirm DEMOTE within "
				    "%" PRId64 " ms; killing pid %d",
				    s->peer.pod, (int64_t)(s->cfg.demote_timeout / USEC_PER_MSEC),
				    (int)s->peer.cred_pid);
				struct sm_effect *e = job(s, fx, JOB_KILL, true);
				e->pid = s->peer.cred_pid;
				str_copy(e->a, sizeof(e->a), s->peer.pod);
				enter(s, SM_KILLING);
			} else {
				follow(s, fx);
			}
		}
	}
	/* another node may taint this one after our last look (a fence of a
	 * term we released): look again now and then while following */
	if (s->cfg.untaint && s->cfg.untaint_recheck && !s->untaint_pending && !s->untaint_busy &&
	    s->st == SM_FOLLOWER && now >= s->untaint_at + s->cfg.untaint_recheck) {
		s->untaint_pending = true;
		s->untaint_at = now;
	}
	if (s->untaint_pending && !s->untaint_busy && s->st == SM_FOLLOWER &&
	    now >= s->untaint_at) {
		job(s, fx, JOB_UNTAINT, false);
		s->untaint_busy = true;
	}
	if (s->cfg.scsi_check && !s->scsi_busy && now >= s->scsi_at) {
		/* after a target restart (reservations lost) the registrations
		 * come back; the master's node takes the reservation again */
		struct sm_effect *e = job(s, fx, JOB_SCSI_KEEP, false);
		e->flag = s->st == SM_MASTER && s->leading;
		s->scsi_busy = true;
	}
	if (ev->result == 1 && s->unanswered_since) {
		/* the agent itself did not run for a while: the silence it
		 * would judge is its own; measure again from now */
		s->unanswered_since = now;
	}
	if (judging(s) && s->unanswered_since &&
	    now >= s->unanswered_since + s->cfg.heartbeat_timeout) {
		hung(s, now, fx);
		return;
	}
	if (!judging(s))
		s->unanswered_since = 0; /* counted afresh once judged again */
	if (pinging(s) && now >= s->ping_at) {
		struct sm_effect *e = fx_add(fx, FX_SEND_PING);
		e->seq = ++s->ping_seq;
		s->ping_last = now;
		s->ping_at = now + s->cfg.heartbeat;
		if (!s->unanswered_since)
			s->unanswered_since = now;
	}
	if (routing(s) && now >= s->route_at)
		route(s, fx, false);
	if (s->st == SM_FOLLOWER && s->cfg.mode == SM_MODE_CONTROL && s->svc_connected &&
	    !s->tell_busy && now >= s->tell_at) {
		job(s, fx, JOB_TELL_MASTER, false);
		s->tell_busy = true;
		s->tell_at = now + s->cfg.tell_interval;
	}
}

static void job_done(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	if (ev->job == JOB_TELL_MASTER) {
		s->tell_busy = false;
		return;
	}
	if (ev->job == JOB_ROUTE) {
		/* a failed route is tried again soon */
		bool failed = ev->result < 0 && ev->result != JOB_CANCELLED;

		s->route_busy = false;
		s->route_at = now + (failed ? route_soon(s) : s->cfg.route_check);
		return;
	}
	if (ev->job == JOB_SCSI_KEEP) {
		s->scsi_busy = false;
		s->scsi_at = now + s->cfg.scsi_check;
		return;
	}
	if (ev->job == JOB_UNTAINT) {
		s->untaint_busy = false;
		if (ev->result >= 0)
			s->untaint_pending = false;
		/* a failure is retried soon; after an answer, the next look
		 * comes untaint_recheck from now */
		s->untaint_at = ev->result >= 0 ? now : now + s->cfg.untaint_retry;
		return;
	}
	if (ev->job == JOB_LABEL && ev->job_id && ev->job_id == s->early_job) {
		s->early_job = 0;
		if (ev->job_id != s->wait_job) {
			s->early_result = ev->result; /* answered before READY: for ready() */
			return;
		}
	}
	if (ev->job_id != s->wait_job || !ev->job_id)
		return; /* an abandoned job's result, or one nobody waits for */
	s->wait_job = 0;
	switch (s->st) {
	case SM_FENCING:
		if (s->stopping) {
			/* the stop waited for this run to end */
			follow(s, fx);
		} else if (ev->result >= 0) {
			s->fenced_any = true;
			next_fence(s, fx, now);
		} else if (s->cfg.fence_give_up && ev->result != JOB_CANCELLED &&
		           now - s->fence_began >= s->cfg.fence_give_up) {
			{
				char what[300];

				snprintf(what, sizeof(what), "fence '%s'", s->victim);
				give_up(s, fx, now, ev->result, s->fence_began, "fence-given-up",
				        what);
			}
		} else {
			/* not promoting; the Lease keeps the duty; again soon (also
			 * when the run was cancelled: LOST ends the term if it is
			 * over, but the elector can briefly say "not leader" within
			 * a term that goes on) */
			s->retry_at = now + s->cfg.fence_retry;
		}
		break;
	case SM_CLAIMING:
		if (ev->result == 0) {
			if (!s->svc_connected && s->fence_only) {
				release(s, fx, ELECTOR_RELEASE_UNPROMOTED,
				        "fenced without a local service "
				        "(agent.fence_without_service); nothing promoted here");
				released(s, fx);
			} else if (s->cfg.mode == SM_MODE_PROBE) {
				job(s, fx, JOB_FIND_POD, true);
				enter(s, SM_FINDING);
			} else if (!s->svc_connected) {
				release(s, fx, false, "no local service to promote");
				released(s, fx);
			} else {
				s->promoted_epoch = s->epoch;
				struct sm_effect *p = fx_add(fx, FX_SEND_PROMOTE);
				p->epoch = s->epoch;
				p->seq = s->peer.gen; /* to this connection only */
				enter(s, SM_PROMOTING);
				s->deadline = now + s->cfg.promote_timeout;
				label_early(s, fx);
			}
		} else if (ev->result == JOB_CLAIM_NOT_LOST && s->again) {
			/* as a step-down always ended the term (its demotion was
			 * counted when it was to be promoted again) */
			step_down_release(s, now, fx, false, true, s->again_reason);
		} else if (ev->result == JOB_CLAIM_FENCED) {
			say(fx, LOG_LEVEL_ERROR,
			    "term %" PRId64 ": our key is gone from a LUN where others are "
			    "registered: this node was fenced; releasing",
			    s->epoch);
			release(s, fx, false, "this node was fenced on the LUN (term %" PRId64 ")",
			        s->epoch);
			released(s, fx);
		} else if (ev->result == JOB_CLAIM_SUPERSEDED) {
			/* The Lease goes too: kept, it would be renewed with nothing
			 * promoted (a pod can carry a role-epoch above every epoch
			 * this Lease will give, e.g. after it was recreated); the
			 * next terms climb past it. */
			say(fx, LOG_LEVEL_WARNING,
			    "term %" PRId64 ": a pod carries a newer term's claim; releasing",
			    s->epoch);
			release(s, fx, false, "term %" PRId64 " was superseded on a pod", s->epoch);
			fx_add(fx, FX_TL_FINISH)->flag = false;
			follow(s, fx);
		} else if (s->again && ev->result != JOB_CANCELLED &&
		           now - s->claim_began >= SM_REPROMOTE_CLAIM_MAX) {
			step_down_release(s, now, fx, false, true, s->again_reason);
		} else if (s->cfg.fence_give_up && ev->result != JOB_CANCELLED &&
		           now - s->claim_began >= s->cfg.fence_give_up) {
			give_up(s, fx, now, ev->result, s->claim_began, "claim-given-up",
			        "claim the term (the other pods' labels, the LUN registration)");
		} else {
			s->retry_at = now + s->cfg.claim_retry;
		}
		break;
	case SM_FINDING:
		if (ev->result == 0) {
			str_copy(s->peer.pod, sizeof(s->peer.pod), ev->peer.pod);
			str_copy(s->peer.uid, sizeof(s->peer.uid), ev->peer.uid);
			s->promoted_epoch = s->epoch;
			label(s, fx);
		} else if (ev->result == JOB_CANCELLED) {
			s->retry_at = now + s->cfg.claim_retry;
		} else {
			release(s, fx, false, "the local service's pod was not found");
			released(s, fx);
		}
		break;
	case SM_LABELLING:
		if (ev->result == 0) {
			labelled(s, fx, now);
		} else if (ev->result == 1 || ev->result == -ENOENT || ev->result == -EINVAL ||
		           ev->result == -ESTALE) {
			/* The pod is gone or was replaced: the service we promoted
			 * is not the one the Service would select.  Give the term
			 * up rather than retry forever. */
			say(fx, LOG_LEVEL_ERROR, "cannot label own pod '%s' (%s); releasing",
			    s->peer.pod, strerror(ev->result > 0 ? ESTALE : -ev->result));
			/* gone or replaced: this service is no candidate again
			 * until it connects as the pod that exists now (else
			 * every new term fails the same way, at once) */
			if (ev->result == -ENOENT || ev->result == -ESTALE)
				s->pod_unusable = true;
			send_demote(s, fx, now, "own pod cannot be labelled");
			release(s, fx, false, "cannot label own pod %.100s: %.300s", s->peer.pod,
			        ev->text[0] ? ev->text
			                    : strerror(ev->result > 0 ? ESTALE : -ev->result));
			tl(fx, "released", "%s", s->release_reason);
			fx_add(fx, FX_TL_FINISH)->flag = false;
			event(fx, EVENTS_DEMOTED, "epoch %" PRId64 ": %s", s->epoch,
			      s->release_reason);
			count_demotion(s, fx);
			if (s->cfg.mode == SM_MODE_CONTROL && s->svc_connected)
				demoting(s, now);
			else
				follow(s, fx);
		} else {
			/* transient (or the term ended: LOST follows) */
			s->retry_at = now + s->cfg.label_retry;
		}
		break;
	case SM_RELEASING: {
		bool dead = ev->result == 0;
		release(s, fx, dead, "%s", s->release_reason);
		tl(fx, "released", "%s%s", s->release_reason,
		   dead ? " (service confirmed dead)" : "");
		fx_add(fx, FX_TL_FINISH)->flag = false;
		unlabel(s, fx);
		event(fx, EVENTS_RELEASED, "epoch %" PRId64 ": %s%s", s->epoch, s->release_reason,
		      dead ? " (service confirmed dead)" : " (exit not confirmed: full fence)");
		follow(s, fx);
		break;
	}
	case SM_DEMOTING:
		/* the service's EOF while demoting: its exit, seen or not */
		if (ev->job == JOB_CONFIRM_EXIT && ev->result == 0) {
			tl(fx, "demoted", "pid %d exited", (int)s->peer.cred_pid);
			follow(s, fx);
		} else if (ev->job == JOB_CONFIRM_EXIT) {
			say(fx, LOG_LEVEL_ERROR,
			    "event=self-fence service '%s' closed its socket while demoting but "
			    "pid "
			    "%d did not exit; killing it",
			    s->peer.pod, (int)s->peer.cred_pid);
			struct sm_effect *e = job(s, fx, JOB_KILL, true);
			e->pid = s->peer.cred_pid;
			str_copy(e->a, sizeof(e->a), s->peer.pod);
			enter(s, SM_KILLING);
		}
		break;
	case SM_KILLING:
		if (ev->result == -EAGAIN) {
			/* the kill never ran (no room for the job): again */
			s->retry_at = now + 100 * USEC_PER_MSEC;
			break;
		}
		/* the job confirmed the death or starved the watchdog */
		tl(fx, ev->result >= 0 ? "self-fenced" : "self-fence-failed", "pid %d: %s",
		   (int)s->peer.cred_pid,
		   ev->result >= 0 ? "confirmed dead" : strerror(-ev->result));
		if (s->release_after_kill) {
			s->release_after_kill = false;
			release(s, fx, false, "%s", s->release_reason);
			tl(fx, "released", "%s", s->release_reason);
			fx_add(fx, FX_TL_FINISH)->flag = false;
			event(fx, EVENTS_RELEASED, "epoch %" PRId64 ": %s (killed%s; full fence)",
			      s->epoch, s->release_reason,
			      ev->result >= 0 ? ", confirmed dead" : ", death not confirmed");
		}
		follow(s, fx);
		break;
	default:
		break;
	}
}

void sm_step(struct sm *s, const struct sm_event *ev, usec_t now, struct sm_effects *fx)
{
	fx->n = 0;
	if (s->st == SM_STOPPED && ev->type != SE_JOB_DONE)
		return;
	switch (ev->type) {
	case SE_TICK:
		tick(s, ev, now, fx);
		break;
	case SE_STARTED:
		started(s, ev, now, fx);
		break;
	case SE_LOST:
		lost(s, ev, now, fx);
		break;
	case SE_SHUTDOWN:
		shutdown(s, ev, now, fx);
		break;
	case SE_HELLO:
		s->svc_connected = true;
		s->pod_unusable = false;
		s->unanswered_since = 0;
		s->ping_at = now; /* the first PING at once */
		/* probe mode: "healthy"; the pod is what FINDING found */
		if (s->cfg.mode == SM_MODE_CONTROL)
			s->peer = ev->peer;
		break;
	case SE_STANDBY:
		break;
	case SE_PONG:
		/* an answer to the latest PING clears the clock; to an older one,
		 * the later PINGs are counted from the last sent (never early) */
		if (ev->seq == s->ping_seq)
			s->unanswered_since = 0;
		else if (ev->seq < s->ping_seq && s->unanswered_since)
			s->unanswered_since = s->ping_last;
		break;
	case SE_READY:
		ready(s, ev, now, fx);
		break;
	case SE_FAILED:
		failed(s, ev, now, fx);
		break;
	case SE_DEMOTED:
		demoted(s, ev, now, fx);
		break;
	case SE_GONE:
		gone(s, ev, now, fx);
		break;
	case SE_PROMOTE_UNSENT:
		if (s->st == SM_PROMOTING && ev->epoch == s->promoted_epoch) {
			release(s, fx, false, "could not send PROMOTE to the local service");
			released(s, fx);
		}
		break;
	case SE_JOB_DONE:
		job_done(s, ev, now, fx);
		break;
	default:
		break;
	}
}
