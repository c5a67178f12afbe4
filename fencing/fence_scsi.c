/* fence_scsi: the `scsi-pr` fence method.  Per LUN: join (register the
 * node's key, reserve WRITE EXCLUSIVE – REGISTRANTS ONLY when unreserved)
 * and fence (ensure our own registration, PREEMPT AND ABORT the victim's
 * key with a fallback to PREEMPT, confirm by reading the state back).  Over
 * LUNs: a pipeline that runs each LUN against one deadline and reports
 * every LUN's result; the pipeline is pure and takes its clock as a
 * parameter.  See fence_scsi.h. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "fence_scsi.h"
#include "util.h"

int fence_scsi_run(const char *action, const char *const *targets, size_t n, usec_t deadline,
                   fence_scsi_lun_fn fn, void *userdata, fence_scsi_clock_fn clock,
                   void *clock_userdata, struct fence_scsi_report *ret)
{
	usec_t t0, start;

	memset(ret, 0, sizeof(*ret));
	ret->failed = -1;
	if (n == 0 || n > FENCE_SCSI_LUNS_MAX) {
		ret->result = -EINVAL;
		return -EINVAL;
	}
	t0 = clock(clock_userdata);
	for (size_t i = 0; i < n; i++) {
		struct fence_scsi_step *s = &ret->steps[i];

		(void)str_copy(s->method, sizeof(s->method), FENCE_SCSI_METHOD);
		(void)str_copy(s->action, sizeof(s->action), action);
		(void)str_copy(s->target, sizeof(s->target), targets[i] ? targets[i] : "");
		start = clock(clock_userdata);
		if (start >= deadline) {
			s->result = -ETIMEDOUT;
			errbuf_set(s->detail, sizeof(s->detail),
			           "not tried: deadline already passed");
		} else {
			s->result = fn(userdata, i, deadline, s->detail, sizeof(s->detail));
			if (s->result > 0)
				s->result = 0;
		}
		s->duration = clock(clock_userdata) - start;
		if (s->result < 0 && ret->failed < 0) {
			ret->failed = (int)i;
			ret->result = s->result;
		}
		ret->n = i + 1;
	}
	ret->duration = clock(clock_userdata) - t0;
	return ret->result;
}

int fence_scsi_io_verdict(int io_result, int status, int sense_key, int asc, int ascq)
{
	if (io_result >= 0)
		return 0;
	if (io_result == -EBADE || status == SCSI_STATUS_RESERVATION_CONFLICT)
		return -EBADE;
	/* 2A/05 REGISTRATIONS PREEMPTED (SPC-4), or 2A/03 RESERVATIONS
	 * PREEMPTED (what tgt 1.0.85 sends to the preempted nexus): our key was
	 * removed by someone else.  Taking a 2A/03 that did not remove our key
	 * for a fence errs on the safe side: we stop writing. */
	if (status == SCSI_STATUS_CHECK_CONDITION && sense_key == SCSI_SENSE_UNIT_ATTENTION &&
	    asc == 0x2a && (ascq == 0x03 || ascq == 0x05))
		return -EBADE;
	if (io_result == -EAGAIN || io_result == -EBUSY)
		return -EAGAIN;
	return io_result;
}

static bool keys_has(const struct scsi_pr_keys *k, uint64_t key)
{
	for (size_t i = 0; i < k->n; i++)
		if (k->keys[i] == key)
			return true;
	return false;
}

/* Take the reservation when none is held.  Losing a race to another
 * registrant is fine: any registrant's WE-RO reservation serves us all. */
static int ensure_reservation(struct scsi_pr *h, uint64_t key, usec_t deadline, bool *ret_taken,
                              char *detail, size_t len)
{
	struct scsi_pr_reservation res;
	int r;

	*ret_taken = false;
	r = scsi_pr_read_reservation(h, deadline, &res, detail, len);
	if (r < 0 || res.held)
		return r;
	r = scsi_pr_reserve(h, key, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, deadline, detail, len);
	if (r == -EBADE) {
		/* someone reserved first: fine if it is held now */
		r = scsi_pr_read_reservation(h, deadline, &res, detail, len);
		if (r == 0 && !res.held)
			r = -EBADE;
		return r;
	}
	if (r == 0)
		*ret_taken = true;
	return r;
}

int fence_scsi_join_lun(struct scsi_pr *h, uint64_t key, usec_t deadline, char *detail, size_t len)
{
	struct scsi_pr_keys keys;
	bool taken = false;
	int r;

	r = scsi_pr_register_ignore(h, key, deadline, detail, len);
	if (r < 0)
		return r;
	r = ensure_reservation(h, key, deadline, &taken, detail, len);
	if (r < 0)
		return r;
	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	if (!keys_has(&keys, key)) {
		errbuf_set(detail, len, "key 0x%016llx missing after REGISTER",
		           (unsigned long long)key);
		return -EPROTO;
	}
	errbuf_set(detail, len, "registered 0x%016llx%s, %zu registration(s)",
	           (unsigned long long)key,
	           taken ? ", reserved WE-RO" : ", reservation already held", keys.total);
	return 0;
}

int fence_scsi_keep_lun(struct scsi_pr *h, uint64_t key, bool (*leader)(void *), void *leader_data,
                        usec_t deadline, bool *ret_restored, char *detail, size_t len)
{
	struct scsi_pr_keys keys;
	bool taken = false, registered = false;
	int r;

	*ret_restored = false;
	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	if (!keys_has(&keys, key)) {
		/* The target cannot say why a key is missing: a restart lost it,
		 * or a fence removed it.  Only the leader, confirmed by the
		 * Lease right now, registers again, and only on a target with no
		 * registration at all; a standby registers through its own fence
		 * when it takes over. */
		if (keys.total > 0 && leader) {
			errbuf_set(detail, len,
			           "key 0x%016llx not registered while %zu other registration(s) "
			           "are: this node was fenced; not registering again",
			           (unsigned long long)key, keys.total);
			return -EBADE;
		}
		if (!leader || keys.total > 0 || !leader(leader_data)) {
			errbuf_set(detail, len,
			           "key 0x%016llx not registered (%zu registration(s)); only the "
			           "leader registers again, a standby through its fence",
			           (unsigned long long)key, keys.total);
			return -ENOKEY;
		}
		r = scsi_pr_register_ignore(h, key, deadline, detail, len);
		if (r < 0)
			return r;
		registered = true;
	}
	if (leader && (registered || leader(leader_data))) {
		r = ensure_reservation(h, key, deadline, &taken, detail, len);
		if (r < 0)
			return r;
	}
	*ret_restored = registered || taken;
	errbuf_set(detail, len, "key 0x%016llx %s%s", (unsigned long long)key,
	           registered ? "registered again (the target had lost every registration)"
	                      : "registered",
	           taken    ? "; WE-RO reservation taken again"
	           : leader ? "; reservation held"
	                    : "");
	return 0;
}

int fence_scsi_fence_lun(struct scsi_pr *h, uint64_t key, uint64_t victim_key, usec_t inflight,
                         usec_t deadline, char *detail, size_t len)
{
	usec_t waited = 0;
	struct scsi_pr_keys keys;
	struct scsi_pr_reservation res;
	bool had_self, had_victim, taken = false, abort_used = true, aborted = false;
	bool reset = false;
	const char *how;
	int r;

	if (key == victim_key) {
		errbuf_set(detail, len, "refusing to fence our own key 0x%016llx",
		           (unsigned long long)key);
		return -EINVAL;
	}
	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	had_self = keys_has(&keys, key);
	had_victim = keys_has(&keys, victim_key);
	/* Our own nexus must be registered to PREEMPT; a target that restarted
	 * has dropped every registration and reservation: join again. */
	r = scsi_pr_register_ignore(h, key, deadline, detail, len);
	if (r < 0)
		return r;
	r = ensure_reservation(h, key, deadline, &taken, detail, len);
	if (r < 0)
		return r;
	if (had_victim) {
		r = scsi_pr_preempt(h, key, victim_key, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, true,
		                    deadline, detail, len);
		if (r == -EOPNOTSUPP || r == -EINVAL) {
			/* ILLEGAL REQUEST: this target has no PREEMPT AND ABORT */
			abort_used = false;
			r = scsi_pr_preempt(h, key, victim_key, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY,
			                    false, deadline, detail, len);
		}
		/* The victim's key vanished between our READ KEYS and PREEMPT
		 * (it left on its own): a conflict then is not a failure; the
		 * read-back below decides. */
		if (r < 0 && r != -EBADE)
			return r;
		aborted = abort_used && r == 0;
	}
	/* A plain PREEMPT refuses the victim's later commands only; one the
	 * target accepted before may still run, and land on what the new
	 * master writes.  Unless PREEMPT AND ABORT just aborted them, a
	 * LOGICAL UNIT RESET makes the target abort or finish every such task
	 * before it answers (also on a retry that finds the key already gone:
	 * an earlier attempt may have preempted it a moment ago).  A target
	 * without it gets the configured wait instead, whole, even past the
	 * deadline. */
	if (!aborted) {
		char rd[256] = "";

		r = scsi_pr_lun_reset(h, deadline, rd, sizeof(rd));
		if (r == 0) {
			reset = true;
		} else if (r == -EOPNOTSUPP) {
			if (inflight > 0) {
				clock_sleep_until(clock_mono_usec() + inflight);
				waited = inflight;
			}
		} else {
			errbuf_set(detail, len, "%s", rd);
			return r;
		}
	}
	/* confirm */
	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	r = scsi_pr_read_reservation(h, deadline, &res, detail, len);
	if (r < 0)
		return r;
	if (keys_has(&keys, victim_key)) {
		errbuf_set(detail, len, "victim key 0x%016llx still registered after PREEMPT",
		           (unsigned long long)victim_key);
		return -EPROTO;
	}
	if (!keys_has(&keys, key)) {
		errbuf_set(detail, len, "our key 0x%016llx not registered after REGISTER",
		           (unsigned long long)key);
		return -EPROTO;
	}
	if (!res.held) {
		errbuf_set(detail, len, "no reservation held after fencing");
		return -EPROTO;
	}
	if (res.type != SCSI_PR_TYPE_WE_ALL_REGISTRANTS &&
	    res.type != SCSI_PR_TYPE_EA_ALL_REGISTRANTS && !keys_has(&keys, res.key)) {
		errbuf_set(detail, len, "reservation held by unregistered key 0x%016llx",
		           (unsigned long long)res.key);
		return -EPROTO;
	}
	how = !had_victim  ? "victim was not registered"
	      : abort_used ? "PREEMPT AND ABORT"
	                   : "PREEMPT (no PREEMPT AND ABORT)";
	errbuf_set(detail, len,
	           "%s%s%s%s; confirmed: %zu registration(s), reservation %s by 0x%016llx",
	           had_self ? "" : "registered (our key was missing); ", taken ? "reserved; " : "",
	           how,
	           reset    ? "; LOGICAL UNIT RESET: every queued command finished or aborted"
	           : waited ? "; LOGICAL UNIT RESET not supported: waited for the victim's queued "
	                      "commands (fence.scsi_inflight_ms)"
	                    : "",
	           keys.total, scsi_pr_type_name(res.type), (unsigned long long)res.key);
	return 0;
}

/* --- the whole method: one session per LUN --- */

struct method_ctx {
	const char *const *luns;
	const struct fence_scsi_options *opts;
	char initiator[SCSI_PR_IQN_MAX];
	uint64_t key, victim_key;
	bool fence;
	bool keep; /* fence_scsi_keep() */
	bool (*leader)(void *);
	void *leader_data;
	bool restored[FENCE_SCSI_LUNS_MAX];
};

static usec_t mono_clock(void *userdata)
{
	return clock_mono_usec();
}

static int method_lun(void *userdata, size_t i, usec_t deadline, char *detail, size_t len)
{
	struct method_ctx *m = userdata;
	struct scsi_pr_options so = {.isid_qualifier = m->opts ? m->opts->isid_qualifier : 0,
	                             .ua_retries = 5};
	struct scsi_pr_url url;
	struct scsi_pr *h = NULL;
	int r;

	r = scsi_pr_url_parse(m->luns[i], &url, detail, len);
	if (r < 0)
		return r;
	r = scsi_pr_open(&url, m->initiator, &so, deadline, &h, detail, len);
	if (r < 0)
		return r;
	if (m->keep)
		r = fence_scsi_keep_lun(h, m->key, m->leader, m->leader_data, deadline,
		                        &m->restored[i], detail, len);
	else if (m->fence)
		r = fence_scsi_fence_lun(h, m->key, m->victim_key, m->opts ? m->opts->inflight : 0,
		                         deadline, detail, len);
	else
		r = fence_scsi_join_lun(h, m->key, deadline, detail, len);
	h = scsi_pr_close(h);
	return r;
}

static int method_run(const char *action, const char *self, const char *victim, size_t n,
                      usec_t deadline, struct fence_scsi_report *ret, struct method_ctx *m)
{
	const struct fence_scsi_options *opts = m->opts;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->failed = -1;
	m->fence = victim != NULL;
	if (opts && opts->initiator)
		r = str_copy(m->initiator, sizeof(m->initiator), opts->initiator);
	else
		r = scsi_pr_iqn_for_node(opts ? opts->iqn_prefix : NULL, self, m->initiator,
		                         sizeof(m->initiator));
	if (r == 0)
		r = scsi_pr_key_for_node(self, &m->key);
	if (r == 0 && victim)
		r = scsi_pr_key_for_node(victim, &m->victim_key);
	if (r < 0) {
		ret->result = r;
		return r;
	}
	return fence_scsi_run(action, m->luns, n, deadline, method_lun, m, mono_clock, NULL, ret);
}

/* These two do not log: the report goes back to the caller (the agent's
 * fencing loop or the CLI), which decides what to say. */
int fence_scsi_join(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, usec_t deadline,
                    struct fence_scsi_report *ret)
{
	struct method_ctx m = {.luns = luns, .opts = opts};

	return method_run("join", node, NULL, n, deadline, ret, &m);
}

int fence_scsi_keep(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, bool (*leader)(void *),
                    void *leader_data, usec_t deadline, struct fence_scsi_report *ret,
                    bool restored[static FENCE_SCSI_LUNS_MAX])
{
	struct method_ctx m = {.luns = luns,
	                       .opts = opts,
	                       .keep = true,
	                       .leader = leader,
	                       .leader_data = leader_data};
	int r = method_run("keep", node, NULL, n, deadline, ret, &m);

	memcpy(restored, m.restored, sizeof(m.restored));
	return r;
}

int fence_scsi_fence(const char *self, const char *victim, const char *const *luns, size_t n,
                     const struct fence_scsi_options *opts, usec_t deadline,
                     struct fence_scsi_report *ret)
{
	if (!victim || !*victim) {
		memset(ret, 0, sizeof(*ret));
		ret->failed = -1;
		ret->result = -EINVAL;
		return -EINVAL;
	}
	struct method_ctx m = {.luns = luns, .opts = opts};

	return method_run("fence", self, victim, n, deadline, ret, &m);
}
