/* fence_scsi: the `scsi-pr` fence method — SCSI-3 persistent reservations
 * on every shared LUN, so a fenced node's writes are refused by the storage
 * itself (RESERVATION CONFLICT), whatever that node still believes.
 *
 * The per-LUN scheme (join, keep, fence, each confirmed by reading the
 * keys back) is scsi/scsi_resv.h's; this module runs it over every LUN of
 * the configuration, one session per LUN as the node's initiator.  A fence
 * succeeds only when it is confirmed on EVERY LUN; each LUN reports its own
 * result and duration.  Everything runs against one deadline and never
 * waits beyond it.
 *
 * A process that writes to the LUN through its own session must register
 * the node's key on that session too (scsi_resv_join() on its handle):
 * registrations belong to an I_T nexus, not to a node. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "lib/clock.h"
#include "scsi/scsi_pr.h"

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

/* --- whole method: opens one session per LUN as `node`'s initiator --- */

/* scsi_resv_keep() on every LUN as `node`; restored[i] and empty[i] (the
 * LUN held no registration at all when read) per LUN. */
int fence_scsi_keep(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, bool (*leader)(void *),
                    void *leader_data, usec_t deadline, struct fence_scsi_report *ret,
                    bool restored[static FENCE_SCSI_LUNS_MAX],
                    bool empty[static FENCE_SCSI_LUNS_MAX]);

/* Join `node` on every LUN.  Returns 0 when all joined; *ret has each LUN. */
int fence_scsi_join(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, usec_t deadline,
                    struct fence_scsi_report *ret);

/* Fence `victim` from every LUN, acting as `self`.  Returns 0 only when
 * confirmed on every LUN; *ret has each LUN's step. */
int fence_scsi_fence(const char *self, const char *victim, const char *const *luns, size_t n,
                     const struct fence_scsi_options *opts, usec_t deadline,
                     struct fence_scsi_report *ret);
