/* agent_conf: the node agent's configuration.
 *
 * The keys of /etc/kubefence/agent.conf live in one table in agent_conf.c
 * (type, default, bounds, help); lib/conf reads the file against it into a
 * `struct agent_conf`.  This module adds what the generic reader cannot
 * know: validators for Kubernetes names, the checks between keys (a renew
 * deadline shorter than the lease, longer than a retry and than one API
 * request), and values derived after load (agent.identity).  A later key is
 * one table row plus one field here. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fencing/fence_conf.h"
#include "lib/conf.h"

/* Used when --config is not given.  Deliberately not under SYSCONFDIR: the
 * agent runs in a container image where the ConfigMap is mounted here. */
#define AGENT_CONF_DEFAULT_PATH "/etc/kubefence/agent.conf"

/* Every field is filled after a successful load; strings are owned by the
 * struct and never NULL. */
enum {
	AGENT_SIGTERM_HANDOVER, /* DEMOTE, unlabel, release: another node takes over */
	AGENT_SIGTERM_KEEP,     /* stop, keep the term: the next incarnation continues it */
};

enum {
	AGENT_API_OUTAGE_DEMOTE,       /* the renew deadline ends the term, as always */
	AGENT_API_OUTAGE_RIDE_THROUGH, /* a target-fenced master keeps serving */
};

struct agent_conf {
	struct {
		char *name; /* this node; a DNS-1123 subdomain */
	} node;
	struct {
		char *identity; /* holderIdentity in the Lease; node.name unless set */
		char *control_socket;
		int64_t control_uid; /* -1: root only */
		int64_t write_margin_ms;
		int64_t promote_timeout_ms;
		char *lock_file; /* held for the process's life; "" = none */
		int on_sigterm;  /* AGENT_SIGTERM_* */
		int api_outage;  /* AGENT_API_OUTAGE_* */
	} agent;
	struct {
		char *listen; /* "" = off */
	} http;
	struct {
		char *name;
		char *namespace;
		int64_t duration_ms;
		int64_t renew_deadline_ms;
		int64_t retry_ms;
	} lease;
	struct {
		char *config;  /* kubeconfig path, or "in-cluster" */
		char *context; /* "" = the kubeconfig's current-context */
		int64_t request_timeout_ms;
	} kube;
	struct {
		int level; /* enum log_level */
		bool monotonic;
	} log;
	struct {
		char *namespace;  /* where the service's pods and PVC live */
		char *selector;   /* label selector of its master pod; "" = unset */
		char *role_label; /* KEY=VALUE the ClusterIP Service selects */
		char *probe;      /* "", "none" or a probe URL */
		int64_t probe_interval_ms;
		int64_t heartbeat_ms;         /* PING interval on the control socket; 0: none */
		int64_t heartbeat_timeout_ms; /* an unanswered PING this old: hung */
	} service;
	/* fencing's settings; local_node, namespace and selector point at
	 * node.name, service.namespace and service.selector */
	struct fence_conf fence;
	struct {
		int64_t stop_timeout_ms;
		int64_t kill_timeout_ms;
		char *watchdog_device; /* "" = no watchdog */
	} selffence;

	struct conf_source *source; /* where each value came from */
};

/* Read and check the file at `path`.  Returns 0 and *ret (free with
 * agent_conf_free()); -EINVAL when the file has problems; the -errno of
 * open/read failures; -ENOMEM.  On failure every problem has been appended
 * to errs (see conf.h for the message format) and nothing was logged: the
 * caller prints them.  Blocks on file I/O only. */
int agent_conf_load(const char *path, struct agent_conf **ret, struct conf_errors *errs);

/* NULL-safe; returns NULL. */
struct agent_conf *agent_conf_free(struct agent_conf *c);

/* --dump-config: every key with its effective value, defaults marked. */
void agent_conf_dump(const struct agent_conf *c, FILE *out);

/* --config-reference: the Markdown document committed as
 * docs/configuration.md. */
void agent_conf_print_reference(FILE *out);
