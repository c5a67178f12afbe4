/* fence_scsi: the `scsi-pr` fence method — SCSI-3 persistent reservations
 * on every shared LUN, so a fenced node's writes are refused by the storage
 * itself (RESERVATION CONFLICT), whatever that node still believes.
 *
 * Each node registers its key (storage/scsi_pr.h: "kf" + 6 bytes of
 * SHA-256(node name)) on every LUN and the LUN carries a WRITE EXCLUSIVE –
 * REGISTRANTS ONLY reservation: every registrant may write, nobody else.
 * Fencing a node = removing its key with PREEMPT AND ABORT (PREEMPT where
 * the target refuses the former), then reading the keys and the reservation
 * back to confirm.  A fence succeeds only when it is confirmed on EVERY LUN;
 * each LUN reports its own result and duration.  Everything runs against
 * one deadline and never waits beyond it.
 *
 * Registrations belong to an I_T nexus (one libiscsi session): join
 * registers the key on the joining session only.  A process that writes to
 * the LUN through its own session must register the node's key on that
 * session too (fence_scsi_join_lun() on its handle). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "storage/scsi_pr.h"

#define FENCE_SCSI_METHOD   "scsi-pr"
#define FENCE_SCSI_LUNS_MAX 16

/* What happened on one LUN. */
struct fence_scsi_step {
	char method[16];              /* FENCE_SCSI_METHOD */
	char action[16];              /* "join" or "fence" */
	char target[SCSI_PR_URL_MAX]; /* the LUN URL */
	usec_t duration;
	int result;       /* 0 or -errno */
	char detail[384]; /* what was done, or why it failed */
};

/* The result over all LUNs. */
struct fence_scsi_report {
	int result; /* 0 only if every LUN succeeded; else the first failure */
	int failed; /* index of the first failed LUN, -1 if none */
	usec_t duration;
	size_t n;
	struct fence_scsi_step steps[FENCE_SCSI_LUNS_MAX];
};

/* Settings of the method. */
struct fence_scsi_options {
	const char *iqn_prefix;  /* NULL = SCSI_PR_DEFAULT_IQN_PREFIX */
	const char *initiator;   /* NULL = PREFIX:NODE; else this IQN */
	uint16_t isid_qualifier; /* see struct scsi_pr_options; 0 = random */
	/* where the target has neither PREEMPT AND ABORT nor LOGICAL UNIT
	 * RESET, wait this long for the victim's commands the target had
	 * already accepted (0: do not wait) */
	usec_t inflight;
};

/* --- pure pipeline (unit-tested with an injected clock) --- */

typedef usec_t (*fence_scsi_clock_fn)(void *userdata);
/* One LUN's work: returns 0 or -errno, writes detail. */
typedef int (*fence_scsi_lun_fn)(void *userdata, size_t i, usec_t deadline, char *detail,
                                 size_t len);

/* Run fn on targets[0..n) in order, each bounded by `deadline`, recording
 * one step per LUN (a LUN reached after the deadline is not tried and gets
 * -ETIMEDOUT).  Fills *ret.  Returns 0 when every LUN succeeded, else the
 * first failure; -EINVAL for n == 0 or n > FENCE_SCSI_LUNS_MAX.  Does not
 * block beyond what fn does. */
int fence_scsi_run(const char *action, const char *const *targets, size_t n, usec_t deadline,
                   fence_scsi_lun_fn fn, void *userdata, fence_scsi_clock_fn clock,
                   void *clock_userdata, struct fence_scsi_report *ret);

/* Map the result of a write of our own to the LUN (with the handle's last
 * status/sense, scsi_pr_last_sense()) to a verdict: -EBADE when we have been
 * fenced (RESERVATION CONFLICT, or UNIT ATTENTION 2A/05 "registrations
 * preempted" or 2A/03 "reservations preempted", which tgt sends instead), -EAGAIN when a retry may
 * succeed, 0 when it succeeded, else io_result unchanged.  Pure. */
int fence_scsi_io_verdict(int io_result, int status, int sense_key, int asc, int ascq);

/* --- on open handles (one LUN) --- */

/* Register `key` on h's nexus (REGISTER AND IGNORE EXISTING KEY) and take a
 * WRITE EXCLUSIVE – REGISTRANTS ONLY reservation when none is held.  Blocks
 * until done or `deadline`.  Returns 0 or -errno; detail says what was done. */
int fence_scsi_join_lun(struct scsi_pr *h, uint64_t key, usec_t deadline, char *detail, size_t len);

/* Ensure `key` is registered on h (re-registering and re-reserving when the
 * target lost its state), remove `victim_key` (PREEMPT AND ABORT, PREEMPT on
 * ILLEGAL REQUEST; unless PREEMPT AND ABORT ran, a LOGICAL UNIT RESET so
 * that the target has finished or aborted every command it had accepted
 * from the victim, or on a target without it a wait of `inflight`), then
 * confirm with READ KEYS and READ RESERVATION that the
 * victim's key is gone and a reservation is held by a registrant.  Blocks
 * until done or `deadline`.  Returns 0, -EPROTO when the confirmation
 * contradicts the commands, or another -errno. */
int fence_scsi_fence_lun(struct scsi_pr *h, uint64_t key, uint64_t victim_key, usec_t inflight,
                         usec_t deadline, char *detail, size_t len);

/* Keep the reservation after the target lost its state (a restart: tgt
 * keeps reservations in memory only).  READ KEYS; `leader` (NULL: this node
 * is no leader) is asked right before anything is written, and must confirm
 * from the Lease that this node holds the term now.  The leader whose key
 * is missing on a LUN with no registration at all registers it again; the
 * leader takes the WE-RO reservation again when none is held.  Nothing else
 * is ever registered here: the target cannot tell a lost key from one a
 * fence removed, so a key missing while others are registered is a fence
 * (-EBADE), and a standby's missing key stays missing (-ENOKEY: it
 * registers through its own fence when it takes over).  *ret_restored:
 * something was registered or reserved again.  Returns 0 (registered) or
 * -errno; detail says what. */
int fence_scsi_keep_lun(struct scsi_pr *h, uint64_t key, bool (*leader)(void *), void *leader_data,
                        usec_t deadline, bool *ret_restored, char *detail, size_t len);

/* --- whole method: opens one session per LUN as `node`'s initiator --- */

/* fence_scsi_keep_lun() on every LUN as `node`; restored[i] per LUN. */
int fence_scsi_keep(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, bool (*leader)(void *),
                    void *leader_data, usec_t deadline, struct fence_scsi_report *ret,
                    bool restored[static FENCE_SCSI_LUNS_MAX]);

/* Join `node` on every LUN.  Returns 0 when all joined; *ret has each LUN. */
int fence_scsi_join(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, usec_t deadline,
                    struct fence_scsi_report *ret);

/* Fence `victim` from every LUN, acting as `self`.  Returns 0 only when
 * confirmed on every LUN; *ret has each LUN's step. */
int fence_scsi_fence(const char *self, const char *victim, const char *const *luns, size_t n,
                     const struct fence_scsi_options *opts, usec_t deadline,
                     struct fence_scsi_report *ret);

/* The CLI: `kubefencectl scsi ...` (nodeagent/ctl_scsi.c). */
int ctl_scsi_main(int argc, char **argv);
