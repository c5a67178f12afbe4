/* scsi_resv: the reservation scheme of kubefence on one LUN, on an open
 * scsi_pr handle — what both the `scsi-pr` fence method
 * (fencing/fence_scsi.c) and the raw-LUN journal backend
 * (storage/backend_lun.c) run, so neither needs the other.
 *
 * Each node registers its key (scsi/scsi_pr.h: "kf" + 6 bytes of
 * SHA-256(node name)) on the LUN and the LUN carries a WRITE EXCLUSIVE –
 * REGISTRANTS ONLY reservation: every registrant may write, nobody else.
 * Fencing a node = removing its key with PREEMPT AND ABORT (PREEMPT where
 * the target refuses the former), then reading the keys and the reservation
 * back to confirm.
 *
 * Registrations belong to an I_T nexus (one libiscsi session): join
 * registers the key on the handle's session only.  Every function blocks
 * until done or its deadline and never waits beyond it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "scsi/scsi_pr.h"

/* Map the result of a write of our own to the LUN (with the handle's last
 * status/sense, scsi_pr_last_sense()) to a verdict: -EBADE when we have been
 * fenced (RESERVATION CONFLICT, or UNIT ATTENTION 2A/05 "registrations
 * preempted" or 2A/03 "reservations preempted", which tgt sends instead), -EAGAIN when a retry may
 * succeed, 0 when it succeeded, else io_result unchanged.  Pure. */
int scsi_resv_io_verdict(int io_result, int status, int sense_key, int asc, int ascq);

/* Register `key` on h's nexus (REGISTER AND IGNORE EXISTING KEY) and take a
 * WRITE EXCLUSIVE – REGISTRANTS ONLY reservation when none is held.  Blocks
 * until done or `deadline`.  Returns 0 or -errno; detail says what was done. */
int scsi_resv_join(struct scsi_pr *h, uint64_t key, usec_t deadline, char *detail, size_t len);

/* scsi_resv_join as a store opened for writing does it: only where this
 * node's key is registered already (by the agent's fence or claim for the
 * term, fence_scsi_join), or — allow_empty, for a master without an agent —
 * where no key at all is.  Without allow_empty a LUN with no key is refused
 * too: a target that lost every registration since a fence must not let the
 * fenced node's late PROMOTE in (only the leader's agent, the Lease
 * confirmed, registers there again).  A key missing while others are registered is a fence — the
 * target cannot tell it from a node nobody registered — so the store
 * refuses (-EBADE) instead of undoing it: a PROMOTE that reaches a service
 * after its node was fenced opens nothing.  Returns 0 or -errno; detail
 * says what. */
int scsi_resv_join_store(struct scsi_pr *h, uint64_t key, bool allow_empty, usec_t deadline,
                         char *detail, size_t len);

/* Ensure `key` is registered on h (re-registering and re-reserving when the
 * target lost its state), remove `victim_key` (PREEMPT AND ABORT, PREEMPT on
 * ILLEGAL REQUEST; unless PREEMPT AND ABORT ran, a LOGICAL UNIT RESET so
 * that the target has finished or aborted every command it had accepted
 * from the victim, or on a target without it a wait of `inflight`), then
 * confirm with READ KEYS and READ
 * RESERVATION that the victim's key is gone and a reservation is held by a
 * registrant.  Blocks until done or `deadline`.  Returns 0, -EPROTO when the
 * confirmation contradicts the commands, or another -errno. */
int scsi_resv_fence(struct scsi_pr *h, uint64_t key, uint64_t victim_key, usec_t inflight,
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
 * something was registered or reserved again.  *ret_empty: the LUN held no
 * registration at all when read (the target lost its state since someone
 * last registered: a restart).  Returns 0 (registered) or -errno; detail
 * says what. */
int scsi_resv_keep(struct scsi_pr *h, uint64_t key, bool (*leader)(void *), void *leader_data,
                   usec_t deadline, bool *ret_restored, bool *ret_empty, char *detail, size_t len);
