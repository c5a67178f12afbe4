/* fence_volume: the `volume-detach` fence method and the out-of-service
 * taint.
 *
 * For the PersistentVolume bound to the service's PVC (PVC ->
 * spec.volumeName), delete every storage.k8s.io/v1 VolumeAttachment whose
 * spec.source.persistentVolumeName is that PV and whose spec.nodeName is the
 * victim node, then wait until they are gone.  A VolumeAttachment carries
 * the external attacher's finalizer: deleting it only sets its
 * deletionTimestamp, and it disappears once the attacher has detached the
 * volume from the node (ControllerUnpublishVolume) and removed the
 * finalizer.  That disappearance is the confirmation that the old node can
 * no longer write; it is awaited by polling (100 ms) up to the deadline.
 *
 * Optionally the victim Node gets the taint
 * `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` (non-graceful
 * node shutdown): controllers then force-delete its pods and force-detach
 * its volumes.  The taint list is replaced as a whole by a merge patch, so
 * the patch carries the resourceVersion that was read (optimistic
 * concurrency): a concurrent change (-ESTALE) is re-read and re-applied.
 * fence_volume_untaint_node() removes it once the node has recovered.
 *
 * Nothing here logs; errors are -errno with detail in the caller's buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "lib/clock.h"

struct k8s_client;

#define FENCE_OOS_TAINT_KEY    "node.kubernetes.io/out-of-service"
#define FENCE_OOS_TAINT_VALUE  "nodeshutdown"
#define FENCE_OOS_TAINT_EFFECT "NoExecute"

/* The PV bound to PVC ns/pvc.  Returns 0 with the name in ret (ret_len
 * bytes), -ENXIO when the claim is not bound (no spec.volumeName), or the
 * request's -errno; detail in err.  One request, bounded by deadline. */
int fence_volume_pv_of_pvc(struct k8s_client *c, const char *ns, const char *pvc, usec_t deadline,
                           char *ret, size_t ret_len, char *err, size_t errlen);

/* Delete the VolumeAttachments of PV `pv` on node `node` and wait until
 * they are gone or `deadline` passes.  With dry_run, only lists them.
 * Returns FENCE_CONFIRMED (0) when some were deleted and are now gone,
 * FENCE_ALREADY_GONE (1) when there were none, -ETIMEDOUT when some were
 * still present at the deadline (err names them and their finalizers), or
 * a request's -errno (-EPERM when RBAC forbids).  *ret_count (may be NULL)
 * gets how many were found, on success.  Blocks until then. */
int fence_volume_detach(struct k8s_client *c, const char *pv, const char *node, bool dry_run,
                        usec_t deadline, int *ret_count, char *err, size_t errlen);

/* Add the out-of-service taint to Node `node`, keeping its other taints.
 * Returns 0 when added, 1 when it was already there, or -errno (-ESTALE
 * only when concurrent writers kept winning until the deadline).  Blocks
 * until the deadline at most. */
int fence_volume_taint_node(struct k8s_client *c, const char *node, usec_t deadline, char *err,
                            size_t errlen);

/* Remove it again, keeping the other taints.  Returns 0 when removed, 1
 * when it was not there, or -errno.  Blocks until the deadline at most. */
int fence_volume_untaint_node(struct k8s_client *c, const char *node, usec_t deadline, char *err,
                              size_t errlen);
