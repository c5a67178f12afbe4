/* endpoints: the agent writes the master's address into the Service's
 * Endpoints and EndpointSlice (service.endpoints), instead of the endpoints
 * controllers deriving them from the role label.
 *
 * Why: with a selector, a failover is two pod PATCHes (the old pod's label
 * off, the new pod's on) that the endpoints controllers turn into two
 * changes: [old] -> [] -> [new].  While the Service has no endpoint,
 * kube-proxy drops new connections to the ClusterIP (its REJECT rule), and a
 * client waits out its connect timeout.  Written by the agent, the switch is
 * one conditional write per object, [old] -> [new]: never empty, never two
 * addresses, and one controller hop shorter.  The agent writes them as its
 * term begins, before the fence (whose pod deletion takes the old address
 * away), naming its standby, which refuses clients (NOTMASTER) until it is
 * promoted.
 *
 * Each object carries the term that wrote it (annotation
 * kubefence.io/role-epoch); a write is a read, a check that no later term
 * wrote the object, and a write conditional on the resourceVersion just
 * read, so that a write of an older term delivered late fails instead of
 * routing clients back to the old master.  A term that ends writes nothing:
 * the address stays until the next master's write replaces it (a stopped
 * or standby service refuses clients quickly; an empty Service makes them
 * wait). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lib/clock.h"
#include "lib/k8s.h"

#define ENDPOINTS_PORTS_MAX 16
#define ENDPOINTS_EPOCH_ANN "kubefence.io/role-epoch"
/* The EndpointSlice's name is the Service's with this suffix; its
 * endpointslice.kubernetes.io/managed-by label is ENDPOINTS_MANAGER. */
#define ENDPOINTS_SLICE_SUFFIX "-kubefence"
#define ENDPOINTS_MANAGER      "kubefence.io"

struct endpoints_port {
	char name[64];
	char protocol[8];
	int port; /* the pod's port (the Service's targetPort, resolved) */
};

/* What one switch writes: the master pod's address and the Service's ports
 * resolved against that pod. */
struct endpoints_target {
	char service_uid[64]; /* the owner of what is written (garbage collection) */
	char ns[254], pod[254], uid[64], node[254], ip[64];
	struct endpoints_port ports[ENDPOINTS_PORTS_MAX];
	size_t n_ports;
};

/* Resolve `service` (a Service object) against `pod` (a Pod object) into
 * *ret.  -EINVAL with detail in err: the Service selects pods (its
 * endpoints are the endpoints controllers'), the pod has no IP, or a named
 * targetPort is no port of the pod's containers.  Pure. */
int endpoints_target_from(const cJSON *service, const cJSON *pod, struct endpoints_target *ret,
                          char *err, size_t errlen);

/* The body of the Endpoints object `name` naming t for term `epoch`: a whole
 * object (metadata.name set) for a create, or a merge patch carrying
 * resource_version as its precondition when resource_version is not NULL.
 * NULL when out of memory.  Pure. */
cJSON *endpoints_body(const char *name, const struct endpoints_target *t, int64_t epoch,
                      const char *resource_version);

/* The same for the EndpointSlice of Service `service` in API version
 * `group_version` ("discovery.k8s.io/v1" or "discovery.k8s.io/v1beta1").
 * Pure. */
cJSON *endpoints_slice_body(const char *service, const char *group_version,
                            const struct endpoints_target *t, int64_t epoch,
                            const char *resource_version);

/* The term that last wrote obj (its role-epoch annotation); 0 when none. */
int64_t endpoints_epoch_of(const cJSON *obj);

struct endpoints_writer;

/* A writer for Service `service` in namespace `ns`; every request has
 * timeout_ms.  The client is borrowed. */
int endpoints_writer_new(struct k8s_client *client, const char *ns, const char *service,
                         long timeout_ms, struct endpoints_writer **ret);
void endpoints_writer_free(struct endpoints_writer *w);

/* fn(data) is called by endpoints_switch() once the EndpointSlice names the
 * pod (what kube-proxy follows), before the Endpoints are written; also
 * when the server serves no EndpointSlice API. */
void endpoints_writer_on_slice(struct endpoints_writer *w, void (*fn)(void *data), void *data);

/* Resolve the Service against `pod` now (and learn the EndpointSlice API),
 * for a later endpoints_switch_prepared(): what a standby's agent does now
 * and then, so that the first write of its term needs neither a Service
 * nor a pod read.  0 or -errno. */
int endpoints_prepare(struct endpoints_writer *w, const cJSON *pod, char *err, size_t errlen);

/* endpoints_switch() with the target of the last resolution (a switch or
 * endpoints_prepare()), when it was for the pod of uid `uid` and is at most
 * max_age old; -ENOENT when there is none (the caller reads the pod and
 * calls endpoints_switch()).  Never tidies. */
int endpoints_switch_prepared(struct endpoints_writer *w, const char *uid, usec_t max_age,
                              int64_t epoch, bool *ret_wrote, char *err, size_t errlen);

/* Point the Service at `pod` (a Pod object just read) for term `epoch`:
 * its EndpointSlice first (what kube-proxy follows), then its Endpoints;
 * an object that names the pod for this term already is left alone.  With
 * `tidy` (one more LIST: not on a failover's path) the Service's slices
 * that Kubernetes' endpoint controllers left from when it had a selector
 * are deleted too (kube-proxy would route to them as well).
 * Returns 0 when both name the pod for this term (*ret_wrote, when not
 * NULL: something had to be written), 1 when a later term wrote one of
 * them (this term is over; nothing written), or -errno with detail in err
 * (-EINVAL: the Service or the pod cannot be used, see
 * endpoints_target_from; anything else may be retried). */
int endpoints_switch(struct endpoints_writer *w, const cJSON *pod, int64_t epoch, bool tidy,
                     bool *ret_wrote, char *err, size_t errlen);
