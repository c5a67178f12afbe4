/* metrics: the agent's Prometheus metrics.
 *
 * A tiny registry of metric families (gauges, counters, histograms with
 * fixed buckets), each with at most one label, rendered in the Prometheus
 * text exposition format 0.0.4 for GET /metrics.  One mutex guards a
 * registry: every setter takes it for a few arithmetic operations and never
 * does I/O, so the agent may call them from its critical path.  Families are
 * registered once at start-up; a label value seen for the first time
 * allocates its series (at most METRICS_SERIES_MAX per family, to bound
 * cardinality).
 *
 * The upper half is generic; the lower half (metrics_agent_new() and the
 * setters after it) declares kubefence's own metrics:
 *
 *   kubefence_role                          gauge      0 follower, 1 leader
 *   kubefence_epoch                         gauge      Lease epoch last seen
 *   kubefence_lease_transitions_total       counter    holder changes seen
 *   kubefence_fence_duration_seconds        histogram  {method}
 *   kubefence_fence_failures_total          counter    {method}
 *   kubefence_failover_duration_seconds     histogram  old master gone ->
 *                                                      new master labelled
 *   kubefence_api_errors_total              counter    {code}
 *   kubefence_service_connected             gauge      0/1
 *   kubefence_promotions_total              counter
 *   kubefence_demotions_total               counter
 *   kubefence_events_posted_total           counter
 *   kubefence_events_dropped_total          counter    {reason}
 *   kubefence_scsi_registered               gauge      {lun} 0/1
 *   kubefence_scsi_restored_total           counter    {lun}
 *   kubefence_config_reloads_total          counter    {result} SIGHUP reloads:
 *                                                      applied, refused, invalid
 *   kubefence_config_last_reload_success    gauge      0/1; 1 at start
 *   kubefence_failsafe_rounds_total         counter    {result}
 *   kubefence_failsafe_active               gauge      0/1
 *   kubefence_failsafe_promises_total       counter
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metrics_family;

/* Largest number of families in one registry, of series (label values) in
 * one family, and of buckets (without +Inf) in one histogram. */
#define METRICS_FAMILIES_MAX 32
#define METRICS_SERIES_MAX   32
#define METRICS_BUCKETS_MAX  24

enum metrics_type {
	METRICS_GAUGE,
	METRICS_COUNTER,
	METRICS_HISTOGRAM,
};

/* The bucket bounds of kubefence's duration histograms, in seconds:
 * 0.005 .. 60 (fencing and failover take milliseconds to tens of seconds). */
extern const double metrics_duration_buckets[];
extern const size_t metrics_duration_buckets_n;

/* An empty registry.  Returns 0 and it in *ret (free with metrics_free()),
 * or -ENOMEM. */
int metrics_new(struct metrics **ret);

/* Free a registry and its families; accepts NULL; returns NULL.  No other
 * thread may be using it. */
struct metrics *metrics_free(struct metrics *m);

/* Register a family.  `name` is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*),
 * `help` any text, `label` NULL or a label name ([a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__"; not "le" for a histogram).  Histograms take their
 * bucket upper bounds (finite, strictly increasing, 1..METRICS_BUCKETS_MAX);
 * other types pass NULL, 0.  An unlabelled family starts with its single
 * series at 0; a labelled one has no series until a value is recorded (or
 * metrics_declare() creates one).  The strings are copied.  Returns 0 and a
 * handle owned by the registry in *ret (may be NULL), -EINVAL for a bad
 * name, label or buckets, -EEXIST for a name already registered, -ENOSPC
 * past METRICS_FAMILIES_MAX, -ENOMEM.  Thread-safe; call it at start-up. */
int metrics_register(struct metrics *m, enum metrics_type type, const char *name, const char *help,
                     const char *label, const double *buckets, size_t n_buckets,
                     struct metrics_family **ret);

/* The recording functions.  `label_value` must be NULL for an unlabelled
 * family and non-NULL (any text; escaped when rendered) for a labelled one.
 * They return 0, -EINVAL (label mismatch, wrong type, a negative or NaN
 * counter increment), -ENOSPC when a new label value would pass
 * METRICS_SERIES_MAX (the value is dropped), or -ENOMEM.  Thread-safe; never
 * block beyond the registry's mutex. */

/* Gauge: set the value. */
int metrics_set(struct metrics_family *f, const char *label_value, double v);

/* Counter or gauge: add delta (>= 0 for a counter). */
int metrics_add(struct metrics_family *f, const char *label_value, double delta);

/* Histogram: record one observation. */
int metrics_observe(struct metrics_family *f, const char *label_value, double v);

/* Create the series of label_value at 0 if missing, so that it is exported
 * before its first event (rate() needs the zero).  As above. */
int metrics_declare(struct metrics_family *f, const char *label_value);

/* The current value of a gauge or counter series (for tests and /status).
 * Returns 0 and the value in *ret, -ENOENT when the series does not exist,
 * -EINVAL for a histogram. */
int metrics_get(struct metrics_family *f, const char *label_value, double *ret);

/* Render every family, in registration order, series in creation order.
 * Returns 0 and a NUL-terminated text in *ret (free()), its length in
 * *ret_len (may be NULL), or -ENOMEM.  Thread-safe. */
int metrics_render(struct metrics *m, char **ret, size_t *ret_len);

/* Format a sample value as Prometheus does: the shortest text that reads
 * back as the same double; "+Inf", "-Inf", "NaN".  buf must hold 32 bytes.
 * Pure. */
void metrics_format_value(double v, char buf[static 32]);

/* ------------------------------------------------------ kubefence metrics */

enum metrics_role {
	METRICS_ROLE_FOLLOWER = 0,
	METRICS_ROLE_LEADER = 1,
};

/* Why an Event was not posted (label `reason` of
 * kubefence_events_dropped_total). */
enum metrics_event_drop {
	METRICS_EVENT_DROP_QUEUE_FULL, /* "queue_full" */
	METRICS_EVENT_DROP_REFUSED,    /* "refused": the API answered an error */
	METRICS_EVENT_DROP_FAILED,     /* "failed": no answer (transport, deadline) */
	METRICS_EVENT_DROP_SHUTDOWN,   /* "shutdown": left in the queue at exit */
};

/* A registry holding the kubefence metrics of the table at the top of this
 * file.  Returns 0 and it in *ret (free with metrics_free()), or -ENOMEM.
 * The setters below accept m == NULL and then do nothing, so a component can
 * run without metrics; they ignore the registry's errors (a metric that
 * cannot be recorded must not disturb fencing). */
int metrics_agent_new(struct metrics **ret);

void metrics_set_role(struct metrics *m, enum metrics_role role);
void metrics_set_epoch(struct metrics *m, int64_t epoch);
void metrics_set_service_connected(struct metrics *m, bool connected);

/* The Lease changed holder (seen by any agent, leader or not). */
void metrics_lease_transition(struct metrics *m);
void metrics_promotion(struct metrics *m);
void metrics_demotion(struct metrics *m);

/* Export the series of a configured fence method before its first run. */
void metrics_declare_fence_method(struct metrics *m, const char *method);

/* One fence run by `method` took `seconds`; ok = false also counts a
 * failure. */
void metrics_observe_fence(struct metrics *m, const char *method, double seconds, bool ok);

/* One failover: from detecting the old master gone to the new master
 * labelled. */
void metrics_observe_failover(struct metrics *m, double seconds);

/* scsi-pr: whether this node's key is registered on `lun` at the last
 * check, and each time it (or the master's reservation) had to be taken
 * again after the target lost its state. */
void metrics_scsi_registered(struct metrics *m, const char *lun, bool registered);
void metrics_scsi_restored(struct metrics *m, const char *lun);

/* An API call failed with r (a k8s_*() -errno).  The label `code` is the
 * HTTP status when r maps back to one status (see metrics_api_error_code()). */
void metrics_api_error(struct metrics *m, int r);

/* Count every failed request of `client` (k8s_client_set_error_hook). */
struct k8s_client;
void metrics_watch_api(struct metrics *m, struct k8s_client *client);

/* The `code` label of r: "400" -EBADMSG, "401" -EACCES, "403" -EPERM, "404"
 * -ENOENT, "409" -EEXIST and -ESTALE, "410" -EIDRM, "413" -EFBIG, "422"
 * -EINVAL, "429_503" -EAGAIN, "5xx" -EIO, "timeout" -ETIMEDOUT, "connect"
 * -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -ENETUNREACH, "tls"
 * -EKEYREJECTED, "other" anything else.  The sign of r is ignored.  Pure. */
const char *metrics_api_error_code(int r);

/* The outcome of a SIGHUP reload (label `result` of
 * kubefence_config_reloads_total). */
enum metrics_reload {
	METRICS_RELOAD_APPLIED, /* "applied": the file was accepted (live changes, or none) */
	METRICS_RELOAD_REFUSED, /* "refused": a valid file changed keys that need a restart */
	METRICS_RELOAD_INVALID, /* "invalid": the file has problems (as --config-test says) */
};

/* One reload: counts it by result and sets
 * kubefence_config_last_reload_success (1 for applied, else 0; the running
 * configuration is then the last one accepted). */
void metrics_config_reload(struct metrics *m, enum metrics_reload result);
/* failsafe.enabled (nodeagent/failsafe.h): one round of a leader by its
 * result ("promised", "refused", "silent", "error"); whether its term goes
 * on by promises now; one promise given to a leader. */
void metrics_failsafe_round(struct metrics *m, const char *result);
void metrics_set_failsafe_active(struct metrics *m, bool active);
void metrics_failsafe_promise(struct metrics *m);

void metrics_event_posted(struct metrics *m);
void metrics_event_dropped(struct metrics *m, enum metrics_event_drop why);
