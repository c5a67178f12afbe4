/* control: the service side of the agent <-> MetaService control socket
 * (docs/control-protocol.md).
 *
 * The lines are parsed and written by lib/ctlproto; metad_control_parse_line()
 * applies this side's grammar (what the agent may send) to one.  The rest is
 * one thread that connects to the agent's unix socket (retrying with
 * back-off while the agent is absent), says HELLO, answers WELCOME with
 * STANDBY and turns each agent message into a call of the hooks; the hooks
 * decide and the thread answers READY/FAILED/DEMOTED.  PROMOTE's hook (the
 * whole recovery) runs on a thread of its own, which answers READY or
 * FAILED, so the connection is served meanwhile: RENEW and DEMOTE reach
 * their hooks during a recovery, and the end of the connection calls the
 * demote hook for a promotion still running.  Other threads report
 * through metad_control_send_failed() (e.g. when the service stepped down by
 * itself).  The service does not depend on the agent being there: while
 * disconnected it keeps its current write deadline, which simply runs out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "lib/ctlproto.h"

#define METAD_CONTROL_LINE_MAX CTLPROTO_LINE_MAX

/* The control protocol's version (docs/control-protocol.md).  Write grants
 * are absolute CLOCK_MONOTONIC times, which agent and service read from the
 * one kernel; the WELCOME's mono_us must be within this of ours. */
#define METAD_CONTROL_VERSION           CTLPROTO_VERSION
#define METAD_CONTROL_CLOCK_SKEW_MAX_US (500 * 1000)

enum metad_control_verb {
	METAD_CONTROL_WELCOME = 1,
	METAD_CONTROL_PROMOTE,
	METAD_CONTROL_RENEW,
	METAD_CONTROL_DEMOTE,
	METAD_CONTROL_MASTER,
	METAD_CONTROL_PING,
	METAD_CONTROL_ERROR,
};

struct metad_control_msg {
	enum metad_control_verb verb;
	unsigned version;  /* WELCOME */
	int64_t mono_us;   /* WELCOME: the agent's CLOCK_MONOTONIC when it sent it */
	uint64_t epoch;    /* PROMOTE, RENEW, DEMOTE, MASTER */
	uint64_t seq;      /* PING */
	int64_t until_us;  /* PROMOTE, RENEW: end of the write grant (CLOCK_MONOTONIC) */
	char node[256];    /* WELCOME */
	char pod[256];     /* MASTER */
	char addr[256];    /* MASTER */
	char reason[1024]; /* DEMOTE, ERROR (may be empty) */
};

/* Parse one line from the agent (without its "\n").  Returns 0, or -EBADMSG
 * with the reason in err (unknown verb or field, missing or bad field). */
int metad_control_parse_line(const char *line, struct metad_control_msg *ret, char *err,
                             size_t errlen);

/* What PROMOTE reports in READY. */
struct metad_control_ready {
	uint64_t records;
	uint64_t last_seq;
	uint64_t recovery_ms;
};

/* The decisions, made by the service; called from the control thread. */
struct metad_control_hooks {
	void *userdata;
	/* Become master of `epoch`; writes allowed until `deadline` (mono).
	 * Returns 0 and *ret, or -errno with the reason in reason.  Called on
	 * the promotion thread; renew and demote (of this epoch) may be called
	 * from the control thread while it runs, and demote must then call
	 * the promotion off. */
	int (*promote)(void *userdata, uint64_t epoch, usec_t deadline,
	               struct metad_control_ready *ret, char *reason, size_t reasonlen);
	void (*renew)(void *userdata, uint64_t epoch, usec_t deadline);
	void (*demote)(void *userdata, uint64_t epoch, const char *reason);
	void (*master)(void *userdata, uint64_t epoch, const char *pod, const char *addr);
	/* A new connection is up (before HELLO): become standby. */
	void (*connected)(void *userdata);
};

struct metad_control_options {
	const char *path;
	const char *pod_name;
	const char *pod_uid;
	/* HELLO store=: a target-fenced store's URL (iscsi://...), which lets
	 * the agent ride through an API outage; NULL for a directory */
	const char *store;
	const char *store_node; /* with store: the node whose key it registers */
	int welcome_timeout_ms; /* 0: 5000 */
};

struct metad_control;

/* Start the control thread.  Strings are copied.  Returns 0 and *ret, or
 * -ENOMEM / the error of pthread_create.  Never blocks. */
int metad_control_start(const struct metad_control_options *opts,
                        const struct metad_control_hooks *hooks, struct metad_control **ret);

/* Stop the thread and close the connection; metad_control_send_*() then return
 * -ENOTCONN.  A promotion still running is called off (demote hook) and
 * waited for.  Accepts NULL; may be called twice.  Blocks until the threads
 * have returned from their current hooks. */
void metad_control_stop(struct metad_control *c);

/* metad_control_stop, then free; accepts NULL; returns NULL. */
struct metad_control *metad_control_free(struct metad_control *c);

/* Send, from any thread, a report decided elsewhere (a master that stepped
 * down by itself), written by lib/ctlproto like every other line: FAILED
 * epoch=E reason=R (control characters of reason become spaces), or
 * STANDBY.  Returns 0, -ENOTCONN when not connected, -ETIMEDOUT when the
 * agent did not read within 1 s (the connection is then dropped),
 * -EMSGSIZE for a line longer than CTLPROTO_LINE_MAX, or another -errno.
 * Blocks at most 1 s. */
int metad_control_send_failed(struct metad_control *c, uint64_t epoch, const char *reason);
int metad_control_send_standby(struct metad_control *c);
