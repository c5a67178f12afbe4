/* scsi_resv: the reservation scheme kubefence runs on one LUN, over an open
 * scsi_pr handle: join (register the node's key, take a WRITE EXCLUSIVE –
 * REGISTRANTS ONLY reservation when none is held), keep (the registration
 * after the target lost its state), fence (remove another node's key with
 * PREEMPT AND ABORT, PREEMPT where the target refuses the former, and
 * confirm by reading the keys and the reservation back), and the verdict on
 * a failed write of our own.  See scsi_resv.h. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "lib/util.h"
#include "scsi/scsi_resv.h"

int scsi_resv_io_verdict(int io_result, int status, int sense_key, int asc, int ascq)
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

int scsi_resv_join(struct scsi_pr *h, uint64_t key, usec_t deadline, char *detail, size_t len)
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

int scsi_resv_join_store(struct scsi_pr *h, uint64_t key, bool allow_empty, usec_t deadline,
                         char *detail, size_t len)
{
	struct scsi_pr_keys keys;
	int r;

	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	if (!keys_has(&keys, key) && keys.total == 0 && !allow_empty) {
		errbuf_set(detail, len,
		           "key 0x%016llx not registered, nor any other: no agent claimed the LUN "
		           "for this term (after a target lost its state, the leader's agent "
		           "registers again); not registering",
		           (unsigned long long)key);
		return -EBADE;
	}
	if (!keys_has(&keys, key) && keys.total > 0) {
		errbuf_set(detail, len,
		           "key 0x%016llx not registered while %zu other registration(s) are: this "
		           "node was fenced, or no agent claimed the LUN for its term; not "
		           "registering again",
		           (unsigned long long)key, keys.total);
		return -EBADE;
	}
	return scsi_resv_join(h, key, deadline, detail, len);
}

int scsi_resv_keep(struct scsi_pr *h, uint64_t key, bool (*leader)(void *), void *leader_data,
                   usec_t deadline, bool *ret_restored, bool *ret_empty, char *detail, size_t len)
{
	struct scsi_pr_keys keys;
	bool taken = false, registered = false;
	int r;

	*ret_restored = false;
	*ret_empty = false;
	r = scsi_pr_read_keys(h, deadline, &keys, detail, len);
	if (r < 0)
		return r;
	*ret_empty = keys.total == 0;
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

int scsi_resv_fence(struct scsi_pr *h, uint64_t key, uint64_t victim_key, usec_t inflight,
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
