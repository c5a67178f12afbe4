/* events: Kubernetes Events for what the agent did (fenced, promoted, ...).
 *
 * Events are for operators (`kubectl describe`, `kubectl get events`); the
 * agent's correctness never depends on them.  So events_post() never blocks
 * and never touches the network: it builds the core/v1 Event on the calling
 * thread (time-stamped then) and puts it in a bounded queue; one sender
 * thread POSTs each with its own deadline.  When the queue is full the new
 * Event is dropped; when the API refuses one (RBAC, validation, quota) or
 * does not answer in time, it is dropped too.  No retries: an Event late by
 * a retry back-off is worth less than a fresh one.  Every drop is counted
 * (events_stats(), and kubefence_events_dropped_total{reason} when a metrics
 * registry is given); each distinct failure (errno) is logged once, as a
 * warning, until a post succeeds again.
 *
 * RBAC: the agent's ServiceAccount needs `create` on `events` (apiGroup "",
 * core) in the namespace the Events are posted to:
 *
 *   rules:
 *   - apiGroups: [""]
 *     resources: ["events"]
 *     verbs: ["create"]
 *
 * An Event lives in the namespace of its involved object (the API requires
 * them to match); Events about a cluster-scoped object (a Node) go to
 * "default", which then needs the same rule there. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct k8s_client;
struct metrics;
struct events;

enum events_reason {
	EVENTS_FENCED,               /* Normal: the old master is fenced */
	EVENTS_FENCE_FAILED,         /* Warning: a fence run did not confirm */
	EVENTS_PROMOTED,             /* Normal: the local service became master */
	EVENTS_DEMOTED,              /* Warning: the local service stopped being master */
	EVENTS_RELEASED,             /* Normal: the Lease was released (shutdown) */
	EVENTS_RESERVATION_RESTORED, /* Warning: a LUN had lost its registration/reservation */
	EVENTS_CONFIG_RELOADED,      /* Normal: SIGHUP: the conf file was accepted */
	EVENTS_CONFIG_REFUSED,       /* Warning: SIGHUP: the conf file was refused, the old kept */
	_EVENTS_REASON_MAX,
};

/* "Fenced", "FenceFailed", ... (the Event's reason), and its type "Normal" or
 * "Warning".  NULL for a value out of range.  Pure. */
const char *events_reason_to_string(enum events_reason r);
const char *events_reason_type(enum events_reason r);

/* The object an Event is about (its involvedObject).  namespace and uid may
 * be NULL (a cluster-scoped object; no uid known). */
struct events_object {
	const char *api_version; /* e.g. "coordination.k8s.io/v1", "v1" */
	const char *kind;        /* e.g. "Lease", "Pod" */
	const char *namespace;
	const char *name;
	const char *uid;
};

#define EVENTS_QUEUE_DEFAULT      64
#define EVENTS_QUEUE_MAX          4096
#define EVENTS_TIMEOUT_MS_DEFAULT 5000
#define EVENTS_COMPONENT          "kubefence-agent"
#define EVENTS_MESSAGE_MAX        1024

struct events_options {
	struct k8s_client *client; /* borrowed; must outlive the sender */
	const char *node;          /* source.host and reportingInstance; required */
	const char *component;     /* source.component; NULL = EVENTS_COMPONENT */
	size_t queue_len;          /* 0 = EVENTS_QUEUE_DEFAULT; at most EVENTS_QUEUE_MAX */
	long timeout_ms;           /* per POST; 0 = EVENTS_TIMEOUT_MS_DEFAULT */
	struct metrics *metrics;   /* borrowed, may be NULL */
};

/* Start the sender thread.  Strings are copied.  Returns 0 and the handle in
 * *ret (stop with events_stop()), -EINVAL for a bad option (reason in err),
 * -ENOMEM, or the -errno of pthread_create().  Does not log. */
int events_start(const struct events_options *o, struct events **ret, char *err, size_t errlen);

/* Queue an Event about obj.  The message (printf format; truncated to
 * EVENTS_MESSAGE_MAX bytes) should say what happened with its measured
 * durations.  Returns 0 when queued, -ENOBUFS when the queue was full (the
 * Event is dropped and counted), -EINVAL for a bad obj or reason,
 * -ESHUTDOWN after events_stop() began, -ENOMEM.  Never blocks beyond a
 * mutex held for a pointer copy, never does I/O, never logs; safe from any
 * thread. */
int events_post(struct events *e, const struct events_object *obj, enum events_reason reason,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

struct events_stats {
	uint64_t queued;         /* accepted by events_post() */
	uint64_t posted;         /* created by the API server */
	uint64_t dropped_full;   /* refused by events_post(): queue full */
	uint64_t dropped_failed; /* refused by the API or no answer in time */
	uint64_t dropped_stop;   /* still queued when events_stop() gave up */
	int last_error;          /* -errno of the last failed POST, 0 if none */
};

/* A snapshot of the counters.  Thread-safe. */
void events_stats(struct events *e, struct events_stats *ret);

/* Wait until every queued Event has been posted or dropped.  Returns 0, or
 * -ETIMEDOUT after timeout_ms.  Blocks (for tests and orderly shutdown). */
int events_flush(struct events *e, long timeout_ms);

/* Stop: give the sender up to drain_ms to post what is queued (the POST in
 * flight always finishes within its own deadline), drop the rest (counted),
 * join the thread and free everything.  Accepts NULL; returns NULL.  Blocks
 * at most drain_ms + the per-POST deadline. */
struct events *events_stop(struct events *e, long drain_ms);
