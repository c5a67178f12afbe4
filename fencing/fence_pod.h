/* fence_pod: the `pod-delete` fence method.
 *
 * Force-deletes the old master pod (gracePeriodSeconds 0) with a uid
 * precondition, so that a pod recreated under the same name since the
 * victim was observed is never hit, then confirms it is gone: a GET answers
 * 404, or returns a pod of that name with another uid (a replacement; the
 * victim itself is gone).  A force delete removes the object from the API at
 * once and lets the kubelet (if it still lives) kill the containers; with
 * the node silent it is what lets a StatefulSet start the replacement.
 *
 * The victim pod is either given (name + uid the agent observed) or found
 * by listing the service's pods with its label selector and the field
 * selector spec.nodeName=NODE.  Nothing here logs: errors return -errno with
 * the API's message (naming the verb and resource) in the caller's buffer. */
#pragma once

#include <stddef.h>

#include "lib/clock.h"

struct k8s_client;

#define FENCE_POD_MAX 8

struct fence_pod_victim {
	char name[254];
	char uid[64];
};

/* List the pods of namespace ns matching label selector `selector` that are
 * on node `node`.  Returns the number found (0..FENCE_POD_MAX, more are
 * ignored) with them in ret[], or -errno with detail in err.  Blocks up to
 * the deadline (one request). */
int fence_pod_find(struct k8s_client *c, const char *ns, const char *selector, const char *node,
                   usec_t deadline, struct fence_pod_victim ret[static FENCE_POD_MAX], char *err,
                   size_t errlen);

/* Force-delete pod ns/name whose uid is `uid` (NULL or "" = read the
 * current uid first) and wait until it is confirmed gone, polling every
 * 100 ms, until `deadline` (mono usec).  Does not retry failed requests
 * (the pipeline does).  Returns FENCE_CONFIRMED (0) when this call deleted
 * it, FENCE_ALREADY_GONE (1) when it was already gone (404, or the name now
 * belongs to another uid: the new pod is left alone), -ETIMEDOUT when it
 * was still there at the deadline (e.g. held by a finalizer), or the
 * request's -errno (k8s.h: -EPERM when RBAC forbids) — detail in err. */
int fence_pod_delete(struct k8s_client *c, const char *ns, const char *name, const char *uid,
                     usec_t deadline, char *err, size_t errlen);
