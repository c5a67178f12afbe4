/* pipeline: runs the configured fence methods against one victim node, in
 * order, each within a deadline and with retries, and says whether the
 * victim is confirmed fenced.
 *
 * The pipeline is pure logic over an open table of methods: it knows method
 * names, ordering, deadlines (per step and overall), retries, the fence
 * level and how results aggregate, but not what a method does.  A method is
 * a `struct fence_method` (name + run function + its data); the agent and
 * kubefencectl build the real table with fence_pipeline_method_table() (the
 * Kubernetes methods and the `scsi-pr` adapter), the unit tests pass fakes
 * and an injected clock.  Adding a method is one row in fence_method_names[]
 * (pipeline.c) and one adapter.
 *
 * Levels.  What must be done depends on what is known of the old master:
 *   FENCE_LEVEL_RELEASED  it released the Lease with its service confirmed
 *                         dead: run the storage fence (methods flagged
 *                         `storage`, i.e. scsi-pr) whenever configured, plus
 *                         the methods listed in fence.released_methods;
 *   FENCE_LEVEL_EXPIRED   its Lease expired on a silent node: run every
 *                         configured method.
 *
 * Every step is recorded (method, target, duration, result, message) in a
 * `struct fence_report`, logged one line per step here, and can be turned
 * into one Event message with fence_report_format(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "fencing/fence_conf.h"
#include "lib/clock.h"

#define FENCE_METHODS_MAX 8
#define FENCE_NAME_MAX    32
#define FENCE_TARGET_MAX  320
#define FENCE_MESSAGE_MAX 768

/* What a method returns besides -errno: both mean "confirmed fenced". */
enum {
	FENCE_CONFIRMED = 0,    /* the method acted and confirmed the effect */
	FENCE_ALREADY_GONE = 1, /* nothing left to fence: confirmed without acting */
};

enum fence_level {
	FENCE_LEVEL_RELEASED,
	FENCE_LEVEL_EXPIRED,
};

/* Who is fenced.  Strings are borrowed for the duration of the run. */
/* The victim's pods as the first pod-delete of a duty found them.  Every
 * later run of the same duty deletes exactly these, by uid, so a pod
 * created meanwhile — a replacement of the same name with a new uid, which
 * the StatefulSet makes once the old one is gone — survives.  Zero it when
 * the duty begins; pod-delete fills it. */
#define FENCE_PINS_MAX 8
struct fence_pins {
	bool set;
	int n;
	char name[FENCE_PINS_MAX][254];
	char uid[FENCE_PINS_MAX][64];
};

struct fence_request {
	const char *node;    /* the victim node; required */
	const char *pod;     /* its master pod's name, when the caller knows it; NULL = find it */
	const char *pod_uid; /* and that pod's uid (with pod); NULL = take the uid found */
	/* without pod: the pods found by the duty's first run (NULL: found
	 * afresh at every run) */
	struct fence_pins *pins;
	bool dry_run; /* methods only read and say what they would do */
};

/* Run one attempt of a method.  Must return by `deadline` (mono usec):
 * FENCE_CONFIRMED, FENCE_ALREADY_GONE or -errno.  Writes what it acted on
 * into target (e.g. "'ns/pod' uid ...") and a human-readable outcome or
 * failure reason into msg.  Must not log its own failures (the pipeline
 * logs each step once). */
typedef int (*fence_method_fn)(void *data, const struct fence_request *req, usec_t deadline,
                               char *target, size_t targetlen, char *msg, size_t msglen);

struct fence_method {
	const char *name; /* one of fence_method_names[] for the real table */
	bool storage;     /* run at FENCE_LEVEL_RELEASED too, whenever configured */
	fence_method_fn run;
	void *data;
};

/* An injected clock: the real one is clock_mono_usec()/clock_sleep_until(). */
struct fence_clock {
	usec_t (*now)(void *data);
	void (*sleep_until)(void *data, usec_t deadline);
	void *data;
};

struct fence_pipeline_opts {
	const char *local_node;          /* this node: never fenced */
	usec_t step_timeout;             /* deadline of one method, all attempts included */
	usec_t total_timeout;            /* deadline of the whole pipeline */
	int retries;                     /* extra attempts after a retryable failure */
	usec_t retry_pause;              /* pause before each retry */
	char *const *released_methods;   /* NULL-terminated; NULL = none */
	const struct fence_clock *clock; /* NULL = the real monotonic clock */
	/* Checked before each attempt: false stops the run there (the step
	 * fails with -ECANCELED), e.g. when the term it runs for is over.
	 * NULL: always go on. */
	bool (*keep_going)(void *data);
	void *keep_going_data;
	/* Called once before each method that runs (its first attempt), with
	 * the method's name and keep_going_data; it may wait.  NULL: none. */
	void (*before_method)(void *data, const char *method);
};

struct fence_step {
	char method[FENCE_NAME_MAX];
	char target[FENCE_TARGET_MAX];
	char message[FENCE_MESSAGE_MAX];
	usec_t duration; /* all attempts and pauses */
	int result;      /* FENCE_CONFIRMED, FENCE_ALREADY_GONE or -errno */
	int attempts;    /* 0 when skipped */
	bool skipped;    /* not required at this level (result 0) */
};

struct fence_report {
	char node[254];
	enum fence_level level;
	bool dry_run;
	struct fence_step steps[FENCE_METHODS_MAX];
	size_t n_steps;
	usec_t duration;
	int result; /* 0 when every required step is confirmed, else the first -errno */
	char message[FENCE_MESSAGE_MAX]; /* why the pipeline refused or failed, "" on success */
};

/* The names the configuration accepts, in their canonical order, NULL-ended:
 * "scsi-pr", "pod-delete", "volume-detach". */
extern const char *const fence_method_names[];

/* Whether name is one of fence_method_names[].  Pure. */
bool fence_method_known(const char *name);

/* "scsi-pr, pod-delete, volume-detach", for messages. */
const char *fence_method_names_joined(void);

/* Whether an attempt that failed with r (sign ignored) may succeed later:
 * transient API and transport errors (see k8s_error_is_retryable()) and
 * -EBUSY.  A deadline that passed (-ETIMEDOUT) is retryable only while the
 * step has time left.  Pure. */
bool fence_error_is_retryable(int r);

const char *fence_level_to_string(enum fence_level level);

/* Run `methods[0..n-1]` in that order against req->node at `level`.
 * Refuses (-EPERM, nothing run) to fence opts->local_node and (-EINVAL) an
 * empty node or n > FENCE_METHODS_MAX.  Each step gets the deadline
 * min(step start + step_timeout, pipeline start + total_timeout); a failed
 * attempt is retried after retry_pause while it is retryable, attempts
 * remain and the deadline allows.  A failing step does not stop the steps
 * after it (more fencing is never less safe), but steps whose start finds
 * the overall deadline passed are not run (-ETIME).  Returns 0 when every
 * step required at this level is confirmed, else the first failure's
 * -errno; `report` (caller-owned, always filled, even on failure) holds
 * every step.  Logs one line per step and one summary.  Blocks for at most
 * about total_timeout (methods must honour their deadline). */
int fence_pipeline_run(const struct fence_pipeline_opts *opts, const struct fence_method *methods,
                       size_t n, enum fence_level level, const struct fence_request *req,
                       struct fence_report *report);

/* One line for a Kubernetes Event or a log: "fenced node 'n' (lease
 * expired) in 1.234 s: pod-delete confirmed in 0.120 s ('ns/p' ...); ...".
 * Truncated to len.  Pure. */
void fence_report_format(const struct fence_report *report, char *buf, size_t len);

/* ---------------------------------------------------------------- wiring */

struct k8s_client;

/* The real methods, configured from conf and talking through client.
 * Holds pointers into conf and client (which must outlive it). */
struct fence_methods {
	struct fence_method v[FENCE_METHODS_MAX];
	size_t n;
	void *priv; /* per-method data, owned */
};

/* Build the table of conf->methods in order.  Returns 0, -ENOMEM, or
 * -EOPNOTSUPP with the reason in err when a configured method is not built
 * in.  Free with fence_methods_done().  Does no I/O. */
int fence_methods_from_conf(const struct fence_conf *conf, struct k8s_client *client,
                            struct fence_methods *ret, char *err, size_t errlen);
void fence_methods_done(struct fence_methods *m);

/* opts from conf (timeouts, retries, released methods, local node). */
void fence_pipeline_opts_from_conf(const struct fence_conf *conf, struct fence_pipeline_opts *ret);
