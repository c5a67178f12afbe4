/* agent_conf: the node agent's configuration.
 *
 * Each subsystem owns the keys of its part of /etc/kubefence/agent.conf as
 * a table (name, type, default, bounds, help, and whether it is live: a
 * reload may change it) with offsets into its own struct: lib/log.h
 * (log.*), nodeagent/http.h (http.*), fencing/fence_conf.h (fence.*),
 * fencing/selffence.h (selffence.*), nodeagent/failsafe.h (failsafe.*); the agent's own (node.*,
 * agent.*, lease.*, kube.*, service.*) are here.  The agent embeds each struct and concatenates the
 * tables, each row's offset moved by its member's, into the one table lib/conf reads the file
 * against into a `struct agent_conf`. This module adds what the generic reader cannot know: the
 * checks between keys (a renew deadline shorter than the lease, longer than a retry and than one
 * API request; each fence method's key), values derived after load (agent.identity), and what a
 * reload would change (agent_conf_changes()). A later key is one row in its subsystem's table plus
 * one field there. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fencing/fence_conf.h"
#include "fencing/selffence.h"
#include "lib/conf.h"
#include "lib/log.h"
#include "nodeagent/failsafe.h"
#include "nodeagent/http.h"

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
		char *lock_file;            /* held for the process's life; "" = none */
		int on_sigterm;             /* AGENT_SIGTERM_* */
		int64_t restart_grace_ms;   /* keep: the parting renewal's duration; 0 off */
		int api_outage;             /* AGENT_API_OUTAGE_* */
		bool fence_without_service; /* take a Lease owed an expired fence to fence */
		int64_t fence_give_up_ms;   /* release a term whose fence keeps failing; 0 never */
	} agent;
	struct http_conf http; /* nodeagent/http.h */
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
	struct log_conf log; /* lib/log.h */
	struct {
		char *namespace;  /* where the service's pods and PVC live */
		char *selector;   /* label selector of its master pod; "" = unset */
		char *role_label; /* KEY=VALUE the ClusterIP Service selects */
		char *endpoints;  /* Service whose endpoints the agent writes; "" = none */
		char *probe;      /* "", "none" or a probe URL */
		int64_t probe_interval_ms;
		int64_t heartbeat_ms;         /* PING interval on the control socket; 0: none */
		int64_t heartbeat_timeout_ms; /* an unanswered PING this old: hung */
	} service;
	/* fencing's settings; local_node, namespace and selector point at
	 * node.name, service.namespace and service.selector */
	struct fence_conf fence;
	struct selffence_conf selffence; /* fencing/selffence.h */
	struct failsafe_conf failsafe;   /* nodeagent/failsafe.h */

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

/* The concatenated table (see above): every key, in reference order.
 * Built once; thread-safe; never NULL. */
const struct conf_key *agent_conf_keys(size_t *ret_n);

/* What a reload of `next` over `running` would change: the keys whose
 * values differ, in table order, into changed[0 .. max), and how many of
 * them are not live (*ret_n_restart).  Returns the number of changed keys
 * (may exceed max: only max are stored).  Pure. */
size_t agent_conf_changes(const struct agent_conf *running, const struct agent_conf *next,
                          const struct conf_key **changed, size_t max, size_t *ret_n_restart);

/* The value of key k in c, as it would be written in the file, into buf. */
void agent_conf_value(const struct agent_conf *c, const struct conf_key *k, char *buf, size_t len);
