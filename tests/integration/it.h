/* it: helpers shared by the integration tests, which run against the real
 * control plane that tests/harness/control-plane.sh started (its DIR/env is
 * in the environment).  Agents run as real processes, each with its own conf
 * file and log; every process a test starts is stopped by that test. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/lease.h"

struct k8s_client;

/* The value of an environment variable the harness exported; the test
 * fails (never skips) when it is missing. */
const char *it_env(const char *name);

/* A client with the admin kubeconfig. */
struct k8s_client *it_admin_client(void);

/* A client with the kubeconfig that environment variable kubeconfig_env
 * names (one of the harness's identities); fails the test on error. */
struct k8s_client *it_client_for(const char *kubeconfig_env);

struct it_agent {
	char name[32];
	char conf[512];
	char log[512];
	pid_t pid;
	usec_t killed_at; /* mono time of a SIGKILL sent by the test, or 0 */
};

/* Write a conf file for agent `name` (node name and identity) with the given
 * kubeconfig and lease, plus `extra` lines, and start kubefence-agent on it
 * with stderr to its log.  Fails the test on error. */
void it_agent_start(struct it_agent *a, const char *name, const char *kubeconfig,
                    const char *lease_name, const char *extra);

/* Send a signal; SIGKILL is time-stamped. */
void it_agent_signal(struct it_agent *a, int sig);

/* Wait up to timeout_ms for the agent to exit; returns its wait status, or
 * -1 on timeout (then it is SIGKILLed and reaped, and the test should fail). */
int it_agent_wait(struct it_agent *a, long timeout_ms);

/* Stop the agent if it still runs (SIGKILL) and reap it. */
void it_agent_reap(struct it_agent *a);

/* Read lease `name` in KF_IT_NS.  Returns 0, -ENOENT or the -errno. */
int it_lease_get(struct k8s_client *c, const char *name, struct lease_record *ret);

/* Poll the lease every 10 ms until its holder is non-empty and differs from
 * `not_holder` (NULL: any).  Returns the mono time it was seen, or 0 on
 * timeout. */
usec_t it_lease_wait_holder(struct k8s_client *c, const char *name, const char *not_holder,
                            long timeout_ms, struct lease_record *ret);

/* Count lines of the agent's log containing every one of the NULL-ended
 * needles; with ret_mono, the mono= stamp of the first such line. */
int it_log_count(const struct it_agent *a, usec_t *ret_mono, ...) __attribute__((sentinel));

/* Leadership intervals from an agent's log ("event=leading" to
 * "event=stopped-leading", or to its kill time, or to `now`). */
struct it_interval {
	usec_t from, to;
	int64_t epoch;
	const char *who;
};
size_t it_leadership(const struct it_agent *a, struct it_interval *out, size_t max, usec_t now);

/* Fail the test when two agents' leadership intervals overlap. */
void it_assert_no_overlap(struct it_agent *agents, size_t n);

/* Print an agent's log to stderr (for failures). */
void it_agent_dump(const struct it_agent *a);

/* Append one benchmark-style measurement line to $KF_IT_DIR/measurements
 * and print it as a measured: line (kft_measured). */
void it_record(const char *what, double seconds);
