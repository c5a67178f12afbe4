/* elector: the agent's election loop (see elector.h).
 *
 * Locking: `mu` protects the fields shared with other threads: the pending
 * watch observation, the published term (leading/valid_until/epoch) and the
 * stop flag.  The lease_state itself belongs to the election thread alone. */
#include "config.h"

#include "nodeagent/elector.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/failsafe.h"

struct elector {
	struct k8s_client *client;
	struct elector_params p;
	char ns[254], name[254];
	struct elector_callbacks cb;
	void *userdata;

	pthread_mutex_t mu;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	bool stopping;
	usec_t parting; /* elector_stop_parting(): the parting renewal's duration */
	char *release_reason;
	char *release_now;                     /* elector_release() request, owned */
	enum elector_release release_now_kind; /* ... and what it says of the service */
	int64_t release_now_epoch;             /* ... for this term only */
	int64_t settled_epoch;                 /* elector_fence_settled() request (0: none) */
	bool settled_keep_self;                /* ... keeping our own node's entries */
	cJSON *pending;                        /* latest watched object, owned */
	bool pending_set;                      /* pending holds news (NULL pending = deleted) */
	bool nudged;                           /* elector_nudge(): judge again now */
	bool pub_leading;
	usec_t pub_valid_until;
	usec_t pub_boot_until; /* pub_valid_until on CLOCK_BOOTTIME (a suspend counts) */
	int64_t pub_epoch;
	char pub_holder[LEASE_IDENTITY_MAX];
	usec_t pub_observed_at;
	int64_t pub_observed_epoch;

	struct k8s_watch *watch;
	pthread_t election_thread, watch_thread;
	bool started;
	usec_t heartbeat;        /* atomic: the election thread's last turn of its loop */
	bool ride_ok;            /* atomic: elector_set_ride_through() */
	usec_t pub_riding_since; /* under mu: 0 when not riding */

	/* failsafe (nodeagent/failsafe.h), under mu */
	usec_t pub_api_ok_at;                /* end of the last Lease request answered */
	usec_t pub_fs_since;                 /* the term goes on by promises since (0: not) */
	usec_t promise_until;                /* promised not to take the Lease before (0: none) */
	char promise_to[LEASE_IDENTITY_MAX]; /* ... to this holder */
	int64_t promise_epoch;               /* ... of this term */

	/* election thread only */
	struct lease_state st;
	bool unanswered;          /* the last renew got no answer about the Lease */
	usec_t riding_since;      /* riding through since (0: not) */
	usec_t read_failed_since; /* a follower's reads of the Lease fail since (0: not) */
	usec_t fs_since;          /* failsafe: extended by promises since (0: not) */
	int fs_last;              /* failsafe: the last round's result, -1 none */
	usec_t promise_logged;    /* failsafe: the promise last logged as holding us back */
	bool fs_skip_logged;      /* failsafe: "grant <= margin" logged (once) */
	char last_err[512];
	char last_holder[LEASE_IDENTITY_MAX + LEASE_INCARNATION_MAX + 2];
};

static void publish(struct elector *e)
{
	pthread_mutex_lock(&e->mu);
	e->pub_leading = e->st.leading;
	/* the BOOTTIME twin is computed once per validity, when it changes, so
	 * that a suspend between two publications is not forgiven */
	if (e->pub_valid_until != e->st.valid_until)
		e->pub_boot_until =
		        clock_boot_until(e->st.valid_until, clock_mono_usec(), clock_boot_usec());
	e->pub_valid_until = e->st.valid_until;
	e->pub_epoch = e->st.epoch;
	str_copy(e->pub_holder, sizeof(e->pub_holder), e->st.absent ? "" : e->st.rec.holder);
	e->pub_observed_at = e->st.have_record ? e->st.observed_at : 0;
	e->pub_observed_epoch = e->st.absent ? 0 : e->st.rec.transitions;
	e->pub_riding_since = e->riding_since;
	e->pub_fs_since = e->st.leading ? e->fs_since : 0;
	pthread_mutex_unlock(&e->mu);
}

usec_t elector_idle(struct elector *e)
{
	usec_t hb = __atomic_load_n(&e->heartbeat, __ATOMIC_ACQUIRE);

	return e->started && hb ? clock_mono_usec() - hb : 0;
}

int elector_observed(struct elector *e, char *holder, size_t holder_len, usec_t *ret_age,
                     int64_t *ret_epoch)
{
	int r = -ENODATA;

	pthread_mutex_lock(&e->mu);
	if (e->pub_observed_at) {
		str_copy(holder, holder_len, e->pub_holder);
		*ret_age = clock_mono_usec() - e->pub_observed_at;
		if (ret_epoch)
			*ret_epoch = e->pub_observed_epoch;
		r = 0;
	}
	pthread_mutex_unlock(&e->mu);
	return r;
}

bool elector_confirm_leader(struct elector *e, int64_t epoch)
{
	char path[512], err[512] = "";
	struct lease_record rec;
	cJSON *obj = NULL;
	int64_t ep;
	bool r;

	if (!elector_is_leader(e, &ep) || ep != epoch)
		return false;
	if (k8s_path(path, sizeof(path), "coordination.k8s.io/v1", e->ns, "leases", e->name) < 0 ||
	    k8s_get(e->client, path, e->p.request_timeout_ms, &obj, err, sizeof(err)) < 0 ||
	    lease_record_from_json(obj, &rec, err, sizeof(err)) < 0) {
		cJSON_Delete(obj);
		return false;
	}
	cJSON_Delete(obj);
	r = strcmp(rec.holder, e->p.lease.identity) == 0 &&
	    strcmp(rec.incarnation, e->p.lease.incarnation) == 0 && rec.transitions == epoch;
	/* and still within the term by our own clocks after the answer */
	return r && elector_is_leader(e, &ep) && ep == epoch;
}

void elector_set_ride_through(struct elector *e, bool ok)
{
	__atomic_store_n(&e->ride_ok, ok, __ATOMIC_RELEASE);
}

usec_t elector_riding_since(struct elector *e)
{
	usec_t r;

	pthread_mutex_lock(&e->mu);
	r = e->pub_leading ? e->pub_riding_since : 0;
	pthread_mutex_unlock(&e->mu);
	return r;
}

usec_t elector_failsafe_since(struct elector *e)
{
	usec_t r;

	pthread_mutex_lock(&e->mu);
	r = e->pub_leading ? e->pub_fs_since : 0;
	pthread_mutex_unlock(&e->mu);
	return r;
}

enum fsproto_verdict elector_failsafe_judge(void *userdata, const struct fsproto_msg *req,
                                            usec_t received, char *reason, size_t reasonlen)
{
	struct elector *e = userdata;
	struct failsafe_view v = {
	        .renew_deadline = e->p.lease.renew_deadline,
	        .retry = e->p.lease.retry,
	        .margin = failsafe_margin(e->p.lease.duration, e->p.lease.renew_deadline),
	};
	usec_t until = 0;
	const char *why;
	bool fresh;

	pthread_mutex_lock(&e->mu);
	v.leading = e->pub_leading;
	v.observed = e->pub_observed_at != 0;
	v.holder = e->pub_holder;
	v.epoch = e->pub_observed_epoch;
	v.api_ok_at = e->pub_api_ok_at;
	why = failsafe_decide(&v, req, received, &until);
	if (why) {
		pthread_mutex_unlock(&e->mu);
		str_copy(reason, reasonlen, why);
		log_debug("failsafe: refused '%s' epoch %" PRId64 ": %s", req->from, req->epoch,
		          why);
		return FSPROTO_REFUSE;
	}
	/* a promise that follows one still running continues it: logged
	 * once, at its start */
	fresh = e->promise_until < received || e->promise_epoch != req->epoch ||
	        strcmp(e->promise_to, req->from) != 0;
	if (until > e->promise_until)
		e->promise_until = until;
	str_copy(e->promise_to, sizeof(e->promise_to), req->from);
	e->promise_epoch = req->epoch;
	pthread_mutex_unlock(&e->mu);
	str_copy(reason, reasonlen, "api-unreachable");
	log_full(fresh ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
	         "failsafe: promised '%s' (epoch %" PRId64 ") not to take lease '%s/%s' "
	         "(until_mono=%.6f, %" PRId64 " ms)",
	         req->from, req->epoch, e->ns, e->name, (double)until / USEC_PER_SEC,
	         (int64_t)((until - received) / USEC_PER_MSEC));
	return FSPROTO_PROMISE;
}

bool elector_is_leader(struct elector *e, int64_t *ret_epoch)
{
	bool r;

	pthread_mutex_lock(&e->mu);
	r = e->pub_leading && clock_mono_usec() < e->pub_valid_until &&
	    clock_boot_usec() < e->pub_boot_until;
	if (r && ret_epoch)
		*ret_epoch = e->pub_epoch;
	pthread_mutex_unlock(&e->mu);
	return r;
}

/* Log an API error once per distinct message, so a persistent problem (a
 * missing RBAC permission) is one clear line, not one per retry. */
static void report_error(struct elector *e, const char *what, int r, const char *err,
                         const char *next)
{
	char line[sizeof(e->last_err)];

	snprintf(line, sizeof(line), "%s: %s", what, err[0] ? err : strerror(-r));
	if (strcmp(line, e->last_err) == 0) {
		log_debug("%s (again), %s", line, next);
		return;
	}
	str_copy(e->last_err, sizeof(e->last_err), line);
	if (r == -EPERM || r == -EACCES)
		log_error("%s; grant the permission to the agent's ServiceAccount, %s", line, next);
	else
		log_warning("%s, %s", line, next);
}

static void clear_error(struct elector *e)
{
	e->last_err[0] = '\0';
}

static void lost(struct elector *e, const char *reason)
{
	int64_t epoch = e->st.epoch;

	e->st.leading = false;
	e->riding_since = 0;
	e->unanswered = false;
	if (e->fs_since) {
		log_warning("event=failsafe-ended lease='%s/%s' epoch=%" PRId64 " after %" PRId64
		            " ms on the peers' promises without the API server",
		            e->ns, e->name, epoch,
		            (int64_t)((clock_mono_usec() - e->fs_since) / USEC_PER_MSEC));
		e->fs_since = 0;
		failsafe_set_active(e->p.failsafe, false);
	}
	e->fs_last = -1;
	publish(e);
	log_info("event=stopped-leading lease='%s/%s' epoch=%" PRId64 " reason='%s'", e->ns,
	         e->name, epoch, reason);
	if (e->cb.stopped_leading)
		e->cb.stopped_leading(e->userdata, epoch, reason);
}

static void note_holder(struct elector *e)
{
	char key[sizeof(e->last_holder)];

	if (e->st.absent)
		snprintf(key, sizeof(key), "(absent)");
	else
		snprintf(key, sizeof(key), "%s/%s", e->st.rec.holder, e->st.rec.incarnation);
	if (strcmp(key, e->last_holder) == 0)
		return;
	str_copy(e->last_holder, sizeof(e->last_holder), key);
	if (e->st.absent) {
		log_info("lease '%s/%s' does not exist; creating it", e->ns, e->name);
		return;
	}
	if (e->st.rec.holder[0] == '\0')
		log_info("lease '%s/%s' is free (epoch %" PRId64 "), released: '%s'", e->ns,
		         e->name, e->st.rec.transitions,
		         e->st.rec.release_reason[0] ? e->st.rec.release_reason : "(no reason)");
	else if (!e->st.leading)
		log_info("lease '%s/%s' held by '%s' (epoch %" PRId64 ")", e->ns, e->name,
		         e->st.rec.holder, e->st.rec.transitions);
	if (e->cb.observed_holder && !e->st.leading)
		e->cb.observed_holder(e->userdata, &e->st.rec);
}

/* Take the latest watch observation, if any. */
static void take_pending(struct elector *e)
{
	cJSON *obj = NULL;
	bool have;
	char err[256] = "";

	pthread_mutex_lock(&e->mu);
	have = e->pending_set;
	obj = e->pending;
	e->pending = NULL;
	e->pending_set = false;
	pthread_mutex_unlock(&e->mu);
	if (!have)
		return;
	if (lease_state_observe(&e->st, obj, clock_mono_usec(), err, sizeof(err)) < 0)
		log_warning("ignoring a watched Lease: %s", err);
	cJSON_Delete(obj);
}

/* Wait until `deadline`, a watch event or a stop.  Returns true on stop. */
static bool wait_until(struct elector *e, usec_t deadline)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(deadline / USEC_PER_SEC),
	        .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};
	bool stop;

	pthread_mutex_lock(&e->mu);
	while (!e->stopping && !e->pending_set && !e->release_now && !e->nudged &&
	       clock_mono_usec() < deadline)
		if (pthread_cond_timedwait(&e->cond, &e->mu, &ts) == ETIMEDOUT)
			break;
	e->nudged = false;
	stop = e->stopping;
	pthread_mutex_unlock(&e->mu);
	return stop;
}

static bool unanswered(int r);

/* A Lease request just ended with r: when the API server answered it
 * (success, or an answer about the Lease or our rights), this agent reaches
 * the API now (what elector_failsafe_judge() asks).  pub_api_ok_at records
 * that end, the time the answer came, not the request's start. */
static void note_api(struct elector *e, int r)
{
	usec_t now = clock_mono_usec();

	if (r < 0 && unanswered(r))
		return;
	pthread_mutex_lock(&e->mu);
	e->pub_api_ok_at = now;
	pthread_mutex_unlock(&e->mu);
}

static long req_timeout(struct elector *e, usec_t now, usec_t limit)
{
	long t = e->p.request_timeout_ms;

	if (limit != USEC_INFINITY && (limit - now) / USEC_PER_MSEC < t)
		t = (long)((limit - now) / USEC_PER_MSEC);
	return t < 1 ? 1 : t;
}

/* Renewals that got no answer about the Lease at all: the API server (or the
 * way to it) is down or overloaded.  401/403 are answers (a configuration
 * problem): they do not let a term go on. */
static bool unanswered(int r)
{
	switch (r) {
	case -ETIMEDOUT:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EAGAIN: /* 429, 503 */
	case -EIO:    /* other 5xx, a transport error */
	/* a conflict after which the Lease, read again, still names us (our
	 * own renewal landed, its answer lost): nobody else holds it */
	case -ESTALE:
		return true;
	default:
		return false;
	}
}

/* agent.api_outage = ride-through, and the service's store is a LUN a
 * successor must preempt: the term goes on through a renewal that gets no
 * answer, as if it had been renewed when it was sent.  Safe because no
 * successor can write before its scsi-pr fence has made the target refuse
 * this node; the grant it feeds still ends the service's writes if this
 * thread stalls. */
static void ride(struct elector *e, usec_t now)
{
	usec_t until = now + e->p.lease.renew_deadline;

	if (until <= e->st.valid_until)
		return;
	if (!e->riding_since) {
		e->riding_since = now;
		log_warning("event=riding-through lease='%s/%s' epoch=%" PRId64
		            ": the API server does not answer; the term goes on, since the "
		            "service's LUN must be preempted before anyone else may write",
		            e->ns, e->name, e->st.epoch);
	}
	e->st.valid_until = until;
	publish(e);
	if (e->cb.renewed)
		e->cb.renewed(e->userdata, e->st.epoch, e->st.valid_until);
}

/* failsafe.enabled, ride-through not applying, and the last renewal got
 * no answer: ask every peer to promise not to take the Lease for a renew
 * deadline from now, and when every one did, extend the term to
 *
 *     t0 + renew_deadline - margin
 *
 * t0 read before the first request went out, so each promise (counted by
 * its peer from when it read the request, plus the margin) ends after this
 * extension does; a suspend during the round (CLOCK_BOOTTIME ran, the
 * monotonic clock did not) is taken off it.  A term whose validity ran out
 * during the round is never revived.  Any refusal, silence or bad answer
 * extends nothing: the term ends at its deadline as without failsafe. */
static void failsafe_step(struct elector *e)
{
	usec_t t0 = clock_mono_usec(), b0 = clock_boot_usec(), now, deadline, until;
	usec_t grant = e->p.lease.renew_deadline;
	usec_t margin = failsafe_margin(e->p.lease.duration, e->p.lease.renew_deadline);
	usec_t round = e->p.lease.retry < grant / 4 ? e->p.lease.retry : grant / 4;
	enum failsafe_result r;
	char detail[1024];

	deadline = t0 + round < e->st.valid_until ? t0 + round : e->st.valid_until;
	if (grant <= margin) {
		/* the conf check refuses such timings; said once if they get here */
		if (!e->fs_skip_logged)
			log_warning("failsafe: no round for lease '%s/%s': the grant (%" PRId64
			            " ms) is not longer than the margin (%" PRId64
			            " ms), so a round could extend nothing; the term ends at its "
			            "deadline as without failsafe",
			            e->ns, e->name, (int64_t)(grant / USEC_PER_MSEC),
			            (int64_t)(margin / USEC_PER_MSEC));
		e->fs_skip_logged = true;
		return;
	}
	if (deadline <= t0)
		return;
	r = failsafe_ask(e->p.failsafe, e->st.epoch, (int64_t)(grant / USEC_PER_MSEC), deadline,
	                 detail, sizeof(detail));
	now = clock_mono_usec();
	if (r != FAILSAFE_PROMISED) {
		if (e->fs_last != (int)r)
			log_warning("failsafe round for lease '%s/%s' epoch %" PRId64
			            ": %s (%s): no extension; the term ends in %" PRId64
			            " ms unless a renewal succeeds",
			            e->ns, e->name, e->st.epoch, failsafe_result_name(r), detail,
			            (int64_t)(e->st.valid_until > now
			                              ? (e->st.valid_until - now) / USEC_PER_MSEC
			                              : 0));
		else
			log_debug("failsafe round: %s (%s)", failsafe_result_name(r), detail);
		e->fs_last = (int)r;
		return;
	}
	e->fs_last = (int)r;
	until = failsafe_extension(t0, b0, now, clock_boot_usec(), grant, margin,
	                           e->st.valid_until);
	if (!until)
		return;
	if (!e->fs_since) {
		e->fs_since = t0;
		failsafe_set_active(e->p.failsafe, true);
		log_warning("event=failsafe-riding lease='%s/%s' epoch=%" PRId64
		            ": the API server does not answer; every peer promised not to take the "
		            "Lease, so the term goes on (each round extends it to %" PRId64
		            " ms after the round began)",
		            e->ns, e->name, e->st.epoch,
		            (int64_t)((grant - margin) / USEC_PER_MSEC));
	}
	e->st.valid_until = until;
	publish(e);
	if (e->cb.renewed)
		e->cb.renewed(e->userdata, e->st.epoch, e->st.valid_until);
}

/* A fence this term confirmed (elector_fence_settled()) is taken off the
 * Lease by the next write of the record that term makes — a renewal, the
 * release, the parting renewal — whichever comes first: the settle is moved
 * into the state that write is built from.  `epoch`: the term the write is
 * for.  The request is used up either way, never carried to a later term of
 * the same epoch.  Called with e->mu held. */
static void take_settle_locked(struct elector *e, int64_t epoch)
{
	if (e->settled_epoch && e->settled_epoch == epoch && e->settled_epoch == e->st.epoch &&
	    e->st.rec.fence_owed[0]) {
		e->st.settle_fence = true;
		e->st.settle_keep_self = e->settled_keep_self;
	}
	e->settled_epoch = 0;
}

static void lead_step(struct elector *e, usec_t *next_renew)
{
	usec_t now = clock_mono_usec(), limit;
	char err[1024] = "";
	char reason[1200];
	int r;

	if (now >= e->st.valid_until) {
		snprintf(reason, sizeof(reason),
		         "renew deadline passed: no successful renew for %" PRId64
		         " ms (deadline %" PRId64 " ms)",
		         (int64_t)((now - e->st.valid_until + e->p.lease.renew_deadline) /
		                   USEC_PER_MSEC),
		         (int64_t)(e->p.lease.renew_deadline / USEC_PER_MSEC));
		lost(e, reason);
		return;
	}
	if (now < *next_renew)
		return;
	pthread_mutex_lock(&e->mu);
	take_settle_locked(e, e->st.epoch);
	pthread_mutex_unlock(&e->mu);
	limit = e->st.valid_until;
	if (e->p.ride_through && __atomic_load_n(&e->ride_ok, __ATOMIC_ACQUIRE)) {
		if (e->unanswered)
			ride(e, now);
		/* a renewal that hangs must fail early enough for the next
		 * attempt to extend the term before the grant runs out */
		if (limit > now + e->p.lease.renew_deadline / 3)
			limit = now + e->p.lease.renew_deadline / 3;
	} else if (e->p.failsafe) {
		if (e->unanswered) {
			failsafe_step(e);
			now = clock_mono_usec();
			if (now >= e->st.valid_until)
				return; /* the next turn ends the term */
			limit = e->st.valid_until;
		}
		/* the same: the next round must come before the extension ends */
		if (limit > now + e->p.lease.renew_deadline / 3)
			limit = now + e->p.lease.renew_deadline / 3;
	}
	r = lease_renew(e->client, &e->p.lease, e->ns, e->name, &e->st, req_timeout(e, now, limit),
	                err, sizeof(err));
	e->unanswered = r < 0 && unanswered(r);
	note_api(e, r);
	if (r >= 0) {
		clear_error(e);
		if (e->riding_since)
			log_info("event=resumed lease='%s/%s' epoch=%" PRId64
			         " after riding through %" PRId64 " ms without the API server",
			         e->ns, e->name, e->st.epoch,
			         (int64_t)((clock_mono_usec() - e->riding_since) / USEC_PER_MSEC));
		if (e->fs_since) {
			log_info("event=resumed lease='%s/%s' epoch=%" PRId64 " after %" PRId64
			         " ms on the peers' promises (failsafe) without the "
			         "API server",
			         e->ns, e->name, e->st.epoch,
			         (int64_t)((clock_mono_usec() - e->fs_since) / USEC_PER_MSEC));
			failsafe_set_active(e->p.failsafe, false);
		}
		e->fs_since = 0;
		e->fs_last = -1;
		e->riding_since = 0;
		publish(e);
		*next_renew = now + e->p.lease.retry;
		log_debug("renewed lease '%s/%s' epoch %" PRId64 ", valid for %" PRId64 " ms",
		          e->ns, e->name, e->st.epoch,
		          (int64_t)((e->st.valid_until - clock_mono_usec()) / USEC_PER_MSEC));
		if (e->cb.renewed)
			e->cb.renewed(e->userdata, e->st.epoch, e->st.valid_until);
		return;
	}
	if (r == -ENOLCK) {
		snprintf(reason, sizeof(reason), "lease taken: %s", err);
		lost(e, reason);
		return;
	}
	/* Retry soon, but never past the validity: lead_step runs again at
	 * valid_until at the latest. */
	*next_renew = now + e->p.lease.retry / 2;
	{
		char next[128];
		snprintf(next, sizeof(next), "retrying; leadership valid for %" PRId64 " ms more",
		         (int64_t)((e->st.valid_until - now) / USEC_PER_MSEC));
		report_error(e, "renew failed", r, err, next);
	}
}

static void follow_step(struct elector *e, usec_t *next_poll, usec_t *ret_wake)
{
	usec_t now = clock_mono_usec(), expires = USEC_INFINITY;
	char err[1024] = "";
	enum lease_verdict v;
	int r;

	if (now >= *next_poll || !e->st.have_record) {
		r = lease_fetch(e->client, e->ns, e->name, &e->st,
		                req_timeout(e, now, USEC_INFINITY), err, sizeof(err));
		note_api(e, r);
		*next_poll = clock_mono_usec() + e->p.lease.retry;
		if (r < 0) {
			report_error(e, "reading the lease failed", r, err, "retrying");
			if (!e->read_failed_since)
				e->read_failed_since = now;
			*ret_wake = *next_poll;
			return;
		}
		/* Only after failures long enough for a holder to have ridden
		 * through them (past a renew deadline): an API that fails now
		 * and then must not postpone the takeover of a dead holder. */
		if (e->read_failed_since && e->p.ride_through && !e->st.absent &&
		    e->st.rec.holder[0] &&
		    clock_mono_usec() - e->read_failed_since >= e->p.lease.renew_deadline) {
			/* The holder may have ridden through the same outage:
			 * count its lease from now, not from before it. */
			e->st.observed_at = clock_mono_usec();
			log_info("read lease '%s/%s' again after failures: holder '%s' gets a "
			         "full lease duration from now (agent.api_outage = ride-through)",
			         e->ns, e->name, e->st.rec.holder);
		}
		e->read_failed_since = 0;
	} else if (e->read_failed_since) {
		/* woken (a watch event, elector_nudge) while the last reads
		 * failed: judge only after one that succeeds, which gives a
		 * holder that may have ridden through the outage its full
		 * lease (above) */
		*ret_wake = *next_poll;
		return;
	}
	note_holder(e);
	now = clock_mono_usec();
	v = lease_judge(&e->p.lease, &e->st, now, &expires);
	bool succeed = e->p.succession && (v == LEASE_HELD || v == LEASE_EXPIRED) &&
	               lease_succession_possible(&e->p.lease, &e->st);
	if (v == LEASE_HELD && !succeed) {
		*ret_wake = expires < *next_poll ? expires : *next_poll;
		return;
	}
	if (v == LEASE_UNKNOWN) {
		*ret_wake = *next_poll;
		return;
	}
	{
		struct elector_term term = {.verdict = v};
		int64_t unseen = (int64_t)((now - e->st.observed_at) / USEC_PER_MSEC);

		/* A term this node's predecessor still holds is continued only
		 * by a candidate with a service to continue it, never to run a
		 * fence it owes (agent.fence_without_service): its service may
		 * be writing under the predecessor's grant — the parting one
		 * lasts agent.restart_grace_ms — and a fence-only term has
		 * nothing to promote, so it would release the term to another
		 * node at once.  Once the Lease has expired, the grant has too. */
		bool owes = !(succeed && v == LEASE_HELD) &&
		            lease_acquire_owes_expired(&e->p.lease, &e->st, NULL, 0);
		usec_t promised;
		char promised_to[LEASE_IDENTITY_MAX];
		int64_t promised_epoch;

		/* failsafe: a promise given to a leader holds, whatever the
		 * Lease looks like now: no term (so no fence) before it ends.
		 * Kept in memory only, which is enough: a promise lasts at most
		 * renew deadline + margin < lease.duration_ms from the moment
		 * its request was read, and an agent that restarts after
		 * giving it starts counting any holder's lease from its own
		 * first read of the Lease (lease_state_observe() on a fresh
		 * state: observed_at is that read), which comes after the
		 * restart, so after the promise was given: it waits a whole
		 * lease.duration_ms from then before it may take a Lease still
		 * held, past the end of any promise of its predecessor.  (A
		 * Lease seen free was released by its holder, whose term is
		 * then over; same-node succession continues only this node's
		 * own terms, never the leader's that was promised.)  Not
		 * covered: a Lease a restarted agent reads as ABSENT (deleted
		 * by an admin) is created at once, since there is no holder to
		 * wait out.  That is the hazard of deleting a held Lease
		 * without failsafe too, and bounded the same way: the new
		 * holder refuses every later round ("holder"), so the old
		 * leader's extension ends within a grant of its last round. */
		pthread_mutex_lock(&e->mu);
		promised = e->promise_until;
		str_copy(promised_to, sizeof(promised_to), e->promise_to);
		promised_epoch = e->promise_epoch;
		pthread_mutex_unlock(&e->mu);
		if (promised && now < promised) {
			if (e->promise_logged != promised)
				log_info(
				        "event=failsafe-holding lease='%s/%s' verdict=%s: promised "
				        "'%s' (epoch %" PRId64 ") not to take it for %" PRId64
				        " ms more (until_mono=%.6f)",
				        e->ns, e->name, lease_verdict_to_string(v), promised_to,
				        promised_epoch, (int64_t)((promised - now) / USEC_PER_MSEC),
				        (double)promised / USEC_PER_SEC);
			e->promise_logged = promised;
			*ret_wake = promised < *next_poll ? promised : *next_poll;
			return;
		}

		if (e->cb.may_acquire && !e->cb.may_acquire(e->userdata, owes)) {
			log_debug("lease '%s/%s' is %s, but this node is no candidate now", e->ns,
			          e->name, lease_verdict_to_string(v));
			*ret_wake = *next_poll;
			return;
		}
		if (!e->st.absent)
			term.previous = e->st.rec;
		if (succeed)
			r = lease_succeed(e->client, &e->p.lease, e->ns, e->name, &e->st,
			                  req_timeout(e, now, USEC_INFINITY), err, sizeof(err));
		else
			r = lease_acquire(e->client, &e->p.lease, e->ns, e->name, &e->st,
			                  req_timeout(e, now, USEC_INFINITY), err, sizeof(err));
		if (r >= 0) {
			clear_error(e);
			pthread_mutex_lock(&e->mu);
			e->settled_epoch = 0; /* a settle asked for an earlier term */
			pthread_mutex_unlock(&e->mu);
			publish(e);
			term.continued = succeed;
			log_info(
			        "event=leading lease='%s/%s' epoch=%" PRId64
			        " previous='%s' verdict=%s unseen_ms=%" PRId64 "%s",
			        e->ns, e->name, e->st.epoch, term.previous.holder,
			        lease_verdict_to_string(v), unseen,
			        succeed ? " succession=continued (a predecessor on this node, gone)"
			                : "");
			term.epoch = e->st.epoch;
			term.valid_until = e->st.valid_until;
			str_copy(term.fence_owed, sizeof(term.fence_owed), e->st.rec.fence_owed);
			if (term.fence_owed[0])
				log_info("event=fence-owed lease='%s/%s' epoch=%" PRId64
				         " owed='%s'",
				         e->ns, e->name, e->st.epoch, term.fence_owed);
			if (e->cb.started_leading)
				e->cb.started_leading(e->userdata, &term);
			*ret_wake = now;
			return;
		}
		if (r == -ESTALE || r == -EEXIST) {
			log_info("lost the race for lease '%s/%s' (%s); following", e->ns, e->name,
			         lease_verdict_to_string(v));
			*ret_wake = clock_mono_usec();
			return;
		}
		report_error(e, "acquiring the lease failed", r, err, "retrying");
		*ret_wake = *next_poll;
	}
}

/* End our term: report the end, then release the Lease recording `reason`
 * when still valid (NULL: just stop).  The report comes first: once the
 * API server has applied the release another candidate may lead at once
 * (its watch wakes it within a millisecond), so "stopped leading" — the log
 * line, the published state, the orchestrator's callback (DEMOTE) — must
 * never come after it. */
static void end_term(struct elector *e, const char *reason)
{
	usec_t now = clock_mono_usec();
	int64_t epoch = e->st.epoch;
	bool release = reason && now < e->st.valid_until;
	char err[1024] = "";
	int r;

	lost(e, reason ? reason : "elector stopped");
	if (release) {
		r = lease_release(e->client, &e->p.lease, e->ns, e->name, &e->st, reason,
		                  req_timeout(e, now, e->st.valid_until), err, sizeof(err));
		if (r < 0)
			log_warning("releasing lease '%s/%s' failed: %s; followers take over "
			            "when it expires",
			            e->ns, e->name, err[0] ? err : strerror(-r));
		else
			log_info("event=released lease='%s/%s' epoch=%" PRId64 " reason='%s'",
			         e->ns, e->name, epoch, reason);
	}
}

/* The parting renewal (elector_stop_parting()): the Lease renewed for
 * `grace`, and the term's new validity reported as a renewal, so that the
 * service writes on until the next incarnation continues the term.  A
 * failure changes nothing: the term then ends as it would have. */
static void part(struct elector *e, usec_t grace)
{
	usec_t now = clock_mono_usec();
	char err[1024] = "";
	int r;

	pthread_mutex_lock(&e->mu);
	take_settle_locked(e, e->st.epoch);
	pthread_mutex_unlock(&e->mu);
	/* There is no next turn to retry in: a failure is tried again while
	 * the term is valid.  A renewal whose answer was lost may have landed;
	 * the next try then gets a 409, re-reads the Lease (lease_renew), and
	 * while it still names us the try after that has the fresh
	 * resourceVersion. */
	for (int attempt = 0;; attempt++) {
		if (now >= e->st.valid_until)
			return;
		r = lease_renew_parting(e->client, &e->p.lease, e->ns, e->name, &e->st, grace,
		                        req_timeout(e, now, e->st.valid_until), err, sizeof(err));
		note_api(e, r);
		if (r >= 0 || r == -ENOLCK || r == -EINVAL || attempt >= 2 || !e->st.leading)
			break;
		log_info("the parting renewal failed (%s); trying again",
		         err[0] ? err : strerror(-r));
		err[0] = '\0';
		now = clock_mono_usec();
	}
	if (r == -ENOLCK) {
		char reason[1200];

		snprintf(reason, sizeof(reason), "lease taken: %s", err);
		lost(e, reason);
		return;
	}
	if (r < 0) {
		log_warning("event=parting-failed lease='%s/%s' epoch=%" PRId64
		            ": the parting renewal for %" PRId64 " ms failed: %s; the term "
		            "ends with the last renewal's grant",
		            e->ns, e->name, e->st.epoch, (int64_t)(grace / USEC_PER_MSEC),
		            err[0] ? err : strerror(-r));
		return;
	}
	log_info("event=parting lease='%s/%s' epoch=%" PRId64 " duration_ms=%" PRId64
	         " valid_ms=%" PRId64 ": renewed for the next incarnation on this node",
	         e->ns, e->name, e->st.epoch, (int64_t)(grace / USEC_PER_MSEC),
	         (int64_t)((e->st.valid_until - clock_mono_usec()) / USEC_PER_MSEC));
	publish(e);
	if (e->cb.renewed)
		e->cb.renewed(e->userdata, e->st.epoch, e->st.valid_until);
}

static char *take_release_request(struct elector *e, int64_t *ret_epoch)
{
	char *r;

	pthread_mutex_lock(&e->mu);
	r = e->release_now;
	e->release_now = NULL;
	e->st.release_dead = r && e->release_now_kind == ELECTOR_RELEASE_DEAD;
	e->st.release_unpromoted = r && e->release_now_kind == ELECTOR_RELEASE_UNPROMOTED;
	*ret_epoch = e->release_now_epoch;
	if (r)
		take_settle_locked(e, e->release_now_epoch);
	pthread_mutex_unlock(&e->mu);
	return r;
}

static void *election_main(void *arg)
{
	struct elector *e = arg;
	usec_t next_poll = 0, next_renew = 0;
	int64_t rel_epoch;
	char *reason;

	for (;;) {
		usec_t wake;

		__atomic_store_n(&e->heartbeat, clock_mono_usec(), __ATOMIC_RELEASE);
		take_pending(e);
		reason = take_release_request(e, &rel_epoch);
		if (reason) {
			if (e->st.leading && e->st.epoch == rel_epoch) {
				end_term(e, reason);
				next_poll = 0;
			} else if (e->st.leading) {
				log_info("release of term %" PRId64
				         " ignored: this term is %" PRId64,
				         rel_epoch, e->st.epoch);
				e->st.release_dead = false;
				e->st.release_unpromoted = false;
			}
			free(reason);
		}
		if (e->st.leading) {
			lead_step(e, &next_renew);
			if (e->st.leading) {
				wake = next_renew < e->st.valid_until ? next_renew
				                                      : e->st.valid_until;
			} else {
				next_poll = 0; /* learn the new holder at once */
				wake = clock_mono_usec();
			}
		} else {
			follow_step(e, &next_poll, &wake);
			if (e->st.leading) {
				next_renew = clock_mono_usec() + e->p.lease.retry;
				wake = next_renew;
			}
		}
		publish(e);
		if (wait_until(e, wake))
			break;
	}

	/* Stopping.  Leadership ends here, released or not. */
	pthread_mutex_lock(&e->mu);
	reason = e->release_reason;
	e->release_reason = NULL;
	pthread_mutex_unlock(&e->mu);
	e->st.release_dead = false; /* stopping says nothing of the service */
	e->st.release_unpromoted = false;
	if (e->st.leading && !reason && e->parting)
		part(e, e->parting);
	if (e->st.leading)
		end_term(e, reason);
	free(reason);
	return NULL;
}

void elector_nudge(struct elector *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->nudged = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->mu);
}

void elector_fence_settled(struct elector *e, int64_t epoch, bool keep_self)
{
	pthread_mutex_lock(&e->mu);
	e->settled_epoch = epoch;
	e->settled_keep_self = keep_self;
	pthread_mutex_unlock(&e->mu);
}

void elector_release(struct elector *e, int64_t epoch, const char *reason,
                     enum elector_release kind)
{
	char *copy = strdup(reason ? reason : "released");

	if (!copy)
		return;
	pthread_mutex_lock(&e->mu);
	free(e->release_now);
	e->release_now = copy;
	e->release_now_kind = kind;
	e->release_now_epoch = epoch;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->mu);
}

/* Hand the newest state of our Lease to the election thread: a later
 * observation replaces an unread earlier one, only the latest matters. */
static int hand_over(struct elector *e, const cJSON *object)
{
	cJSON *copy = NULL;

	if (object) {
		copy = cJSON_Duplicate(object, true);
		if (!copy)
			return -ENOMEM;
	}
	pthread_mutex_lock(&e->mu);
	cJSON_Delete(e->pending);
	e->pending = copy;
	e->pending_set = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

static bool is_ours(const struct elector *e, const cJSON *object)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(object, "metadata");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");

	return cJSON_IsString(name) && strcmp(name->valuestring, e->name) == 0;
}

static int on_watch(enum k8s_event type, const cJSON *object, void *userdata)
{
	struct elector *e = userdata;
	const cJSON *item;

	switch (type) {
	case K8S_EVENT_SYNC:
		/* A (re)list: the complete state.  No item means no Lease. */
		cJSON_ArrayForEach(
		        item,
		        cJSON_GetObjectItemCaseSensitive(
		                object, "items")) if (is_ours(e, item)) return hand_over(e, item);
		return hand_over(e, NULL);
	case K8S_EVENT_ADDED:
	case K8S_EVENT_MODIFIED:
		return is_ours(e, object) ? hand_over(e, object) : 0;
	case K8S_EVENT_DELETED:
		return is_ours(e, object) ? hand_over(e, NULL) : 0;
	}
	return 0;
}

static void *watch_main(void *arg)
{
	struct elector *e = arg;
	char path[512], field[300];
	char err[1024] = "";
	struct k8s_watch_opts opts = {0};
	int r;

	if (k8s_path(path, sizeof(path), "coordination.k8s.io/v1", e->ns, "leases", NULL) < 0)
		return NULL;
	snprintf(field, sizeof(field), "metadata.name=%s", e->name);
	opts.field_selector = field;
	opts.request_timeout_ms = e->p.request_timeout_ms;
	r = k8s_watch_loop(e->client, e->watch, path, &opts, on_watch, e, err, sizeof(err));
	if (r < 0)
		log_warning("watching lease '%s/%s' ended: %s; polling every %" PRId64 " ms only",
		            e->ns, e->name, err[0] ? err : strerror(-r),
		            (int64_t)(e->p.lease.retry / USEC_PER_MSEC));
	return NULL;
}

int elector_new(struct k8s_client *client, const struct elector_params *p,
                const struct elector_callbacks *cb, void *userdata, struct elector **ret)
{
	struct elector *e;
	pthread_condattr_t ca;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->client = client;
	e->p = *p;
	str_copy(e->ns, sizeof(e->ns), p->namespace);
	str_copy(e->name, sizeof(e->name), p->name);
	e->p.namespace = e->ns;
	e->p.name = e->name;
	if (cb)
		e->cb = *cb;
	e->userdata = userdata;
	e->fs_last = -1;
	lease_state_init(&e->st);
	pthread_mutex_init(&e->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (k8s_watch_new(&e->watch) < 0) {
		elector_free(e);
		return -ENOMEM;
	}
	*ret = e;
	return 0;
}

int elector_start(struct elector *e)
{
	int r;

	r = pthread_create(&e->watch_thread, NULL, watch_main, e);
	if (r)
		return -r;
	r = pthread_create(&e->election_thread, NULL, election_main, e);
	if (r) {
		k8s_watch_stop(e->watch);
		pthread_join(e->watch_thread, NULL);
		return -r;
	}
	e->started = true;
	return 0;
}

static void stop(struct elector *e, const char *reason, usec_t parting)
{
	if (!e || !e->started)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	e->parting = parting;
	free(e->release_reason);
	e->release_reason = reason ? strdup(reason) : NULL;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->mu);
	k8s_watch_stop(e->watch);
	pthread_join(e->election_thread, NULL);
	pthread_join(e->watch_thread, NULL);
	e->started = false;
}

void elector_stop(struct elector *e, const char *reason)
{
	stop(e, reason, 0);
}

void elector_stop_parting(struct elector *e, usec_t grace)
{
	stop(e, NULL, grace);
}

struct elector *elector_free(struct elector *e)
{
	if (!e)
		return NULL;
	elector_stop(e, NULL);
	e->watch = k8s_watch_free(e->watch);
	lease_state_done(&e->st);
	cJSON_Delete(e->pending);
	free(e->release_reason);
	free(e->release_now);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->mu);
	free(e);
	return NULL;
}
