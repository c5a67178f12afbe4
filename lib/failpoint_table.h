/* failpoint_table: every fault point of kubefence, in one table.
 *
 * X(ID, "name", "where it sits, and what an action there exercises").  The
 * table is the single source of the points' identifiers (FP_ID, used with
 * FAILPOINT(ID)), of the names that KUBEFENCE_FAILPOINTS accepts, and of the
 * reference docs/failpoints.md (kubefencectl failpoints).  Keep the entries
 * grouped by program area; `error(E)` notes say what fails where a point has
 * an operation to fail. */
#pragma once

/* clang-format off */
#define KF_FAILPOINTS(X)                                                                           \
	X(LEASE_ACQUIRE_BEFORE_SEND, "lease.acquire.before_send",                                  \
	  "Agent: the conditional create/update that acquires the Lease is built, not yet sent. "   \
	  "error(E): the acquire fails without reaching the API server.")                          \
	X(LEASE_ACQUIRE_AFTER_SEND, "lease.acquire.after_send",                                    \
	  "Agent: the API server answered the acquire; its answer is not yet used. "                \
	  "error(E): the write landed but its response is lost (outcome unknown to the agent).")   \
	X(LEASE_RENEW_BEFORE_SEND, "lease.renew.before_send",                                      \
	  "Agent: a renewal of the held Lease, not yet sent. error(E): the renewal fails unsent.") \
	X(LEASE_RENEW_AFTER_SEND, "lease.renew.after_send",                                        \
	  "Agent: the API server answered a renewal; not yet used. "                                \
	  "error(E): the renewal landed but its response is lost.")                                \
	X(LEASE_RELEASE_BEFORE_SEND, "lease.release.before_send",                                  \
	  "Agent: the update that releases the Lease (holder cleared, reason recorded), not yet "  \
	  "sent. error(E): the release fails unsent.")                                             \
	X(LEASE_RELEASE_AFTER_SEND, "lease.release.after_send",                                    \
	  "Agent: the API server answered the release; not yet used. "                              \
	  "error(E): the release landed but its response is lost.")                                \
	X(AGENT_FENCE_BEFORE_PROMOTE, "agent.fence.before_promote",                                \
	  "Agent: every required fence method is confirmed (or nothing needed fencing); the old "  \
	  "label is not yet removed and PROMOTE not yet sent.")                                    \
	X(AGENT_UNLABEL_BEFORE_PATCH, "agent.unlabel.before_patch",                                \
	  "Agent: before each PATCH that removes the role label from a pod (another pod before "   \
	  "promotion, or its own pod when stepping down). error(E): the PATCH fails unsent.")      \
	X(AGENT_UNLABEL_AFTER_PATCH, "agent.unlabel.after_patch",                                  \
	  "Agent: the PATCH removing a role label was answered. error(E): it landed but the "      \
	  "answer is lost.")                                                                       \
	X(AGENT_LABEL_BEFORE_PATCH, "agent.label.before_patch",                                    \
	  "Agent: PROMOTE was sent (or READY came after a failed label); the PATCH that puts "    \
	  "the role label on its pod is not yet sent. error(E): the PATCH fails unsent.")          \
	X(AGENT_LABEL_AFTER_PATCH, "agent.label.after_patch",                                      \
	  "Agent: the labelling PATCH was answered. error(E): it landed but the answer is lost.")  \
	X(AGENT_ENDPOINTS_BEFORE_WRITE, "agent.endpoints.before_write",                            \
	  "Agent (service.endpoints): the master's address is built for the Service's "           \
	  "EndpointSlice or Endpoints, read just before; the conditional write is not yet sent. "  \
	  "error(E): the write fails unsent.")                                                     \
	X(AGENT_RELEASE_BEFORE, "agent.release.before",                                            \
	  "Agent: the orchestrator decided to give the Lease up (its service died, failed, or "    \
	  "the agent shuts down) and has done any unlabelling that comes first; the release is "   \
	  "not yet requested.")                                                                    \
	X(AGENT_CONTROL_BEFORE_PROMOTE, "agent.control.before_promote",                            \
	  "Agent: before PROMOTE is written to the local service's control socket. "                \
	  "error(E): the send fails.")                                                             \
	X(AGENT_CONTROL_BEFORE_RENEW, "agent.control.before_renew",                                \
	  "Agent: before a RENEW (a new write grant) is written to the control socket. "            \
	  "error(E): the send fails.")                                                             \
	X(AGENT_CONTROL_BEFORE_DEMOTE, "agent.control.before_demote",                              \
	  "Agent: before DEMOTE is written to the control socket. error(E): the send fails.")      \
	X(FENCE_METHOD_BEFORE, "fence.method.before",                                              \
	  "Agent and kubefencectl: before each fence method (scsi-pr, pod-delete, volume-detach) " \
	  "runs. error(E): the method fails without acting.")                                      \
	X(FENCE_METHOD_AFTER, "fence.method.after",                                                \
	  "Agent and kubefencectl: a fence method returned (confirmed or not); its result is not " \
	  "yet recorded. error(E): a confirmed method is reported failed.")                        \
	X(METAD_PROMOTE_BEFORE_CLAIM, "metad.promote.before_claim",                                \
	  "MetaService: PROMOTE was read from the control socket; the store is not yet opened, "   \
	  "the epoch not yet claimed. error(E): the promotion fails (FAILED).")                    \
	X(METASTORE_OPEN_AFTER_CLAIM, "metastore.open.after_claim",                                \
	  "Store: the new epoch is stored in the epoch cell; recovery has not read anything.")     \
	X(METASTORE_RECOVER_UNIT, "metastore.recover.unit",                                        \
	  "Store: inside recovery, before each snapshot or journal segment is read.")              \
	X(METASTORE_OPEN_BEFORE_BARRIER, "metastore.open.before_barrier",                          \
	  "Store: recovery finished; the epoch barrier record is not yet written. "                 \
	  "error(E): the barrier write fails.")                                                    \
	X(METASTORE_COMMIT_BEFORE_SYNC, "metastore.commit.before_sync",                            \
	  "Store: a group commit is about to sync the records appended so far (they are in the "   \
	  "index already). error(E): the sync fails.")                                             \
	X(METASTORE_COMMIT_BEFORE_CHECK, "metastore.commit.before_check",                          \
	  "Store: a group commit's records are durable; the epoch is not yet re-checked, so "      \
	  "nothing is acknowledged yet.")                                                          \
	X(METASTORE_READ_BEFORE_CHECK, "metastore.read.before_check",                              \
	  "Store: a read's epoch check (confirm_reads) is about to read the epoch on the volume. "  \
	  "error(E): the check fails with E.")                                                     \
	X(METAD_WRITE_AFTER_DURABLE, "metad.write.after_durable",                                  \
	  "MetaService: a PUT/DEL is durable; the write deadline is not yet checked.")             \
	X(METAD_WRITE_BEFORE_OK, "metad.write.before_ok",                                          \
	  "MetaService: a durable write passed the deadline check; OK is not yet queued for the "  \
	  "client.")                                                                               \
	X(METAD_SHUTDOWN_BETWEEN, "metad.shutdown.between",                                        \
	  "MetaService shutting down (SIGTERM, SIGINT): between its two steps, serving clients "   \
	  "stopped and the control connection closed.  The agent takes EOF for the service's "     \
	  "death, so serving must stop first.")                                                    \
	X(METASTORE_SNAPSHOT_AFTER_CUT, "metastore.snapshot.after_cut",                            \
	  "Store: at a snapshot point the writer synced its journal and started the next "         \
	  "segment; the snapshot thread has not yet read anything (directory backend).")           \
	X(METASTORE_SNAPSHOT_BEFORE_RENAME, "metastore.snapshot.before_rename",                    \
	  "Store: a snapshot's data is written; it is not yet committed (renamed into place). "    \
	  "error(E): the commit fails.")                                                           \
	X(METASTORE_SNAPSHOT_AFTER_RENAME, "metastore.snapshot.after_rename",                      \
	  "Store: a snapshot is committed; the next journal segment is not yet started and "       \
	  "covered units not yet removed.")                                                        \
	X(BACKEND_LUN_TABLE_AFTER_WRITE, "backend.lun.table.after_write",                          \
	  "LUN backend: a state-table copy was written (a segment started, cut or removed, a "    \
	  "snapshot committed); the new table is not yet in use. error(E): the write landed but " \
	  "is reported failed (its outcome unknown to the writer).")                              \
	X(BACKEND_SEGMENT_BEFORE_CREATE, "backend.segment.before_create",                          \
	  "Store backend: before a new journal segment is created. error(E): creation fails.")     \
	X(BACKEND_UNIT_BEFORE_TRUNCATE, "backend.unit.before_truncate",                            \
	  "Store backend: before a journal unit is truncated (a torn tail in recovery). "           \
	  "error(E): the truncation fails.")                                                       \
	X(BACKEND_UNIT_BEFORE_REMOVE, "backend.unit.before_remove",                                \
	  "Store backend: before a segment or snapshot covered by a newer snapshot is removed. "   \
	  "error(E): the removal fails.")                                                          \
	X(SCSI_LUN_RESET_BEFORE, "scsi.lun_reset.before",                                          \
	  "scsi-pr fence: after a plain PREEMPT, before the LOGICAL UNIT RESET is sent. "          \
	  "error(95): the target does not support it (the fence then waits "                       \
	  "fence.scsi_inflight_ms).")
/* clang-format on */
