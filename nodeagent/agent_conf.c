/* agent_conf: the agent's key table, its validators and cross-key checks
 * (see agent_conf.h).  Parsing, line numbers, ${VAR} expansion and the
 * output formats are lib/conf's; what is here is what the keys mean. */
#include "config.h"

#include "nodeagent/agent_conf.h"

#include "fencing/pipeline.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/probe.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static int validate_not_empty(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] != '\0')
		return 0;
	errbuf_set(err, errlen, "value is empty");
	return -EINVAL;
}

/* A unix socket path: absolute, and short enough for sockaddr_un. */
static int validate_socket_path(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] != '/') {
		errbuf_set(err, errlen, "'%s' is not an absolute path", v->str);
		return -EINVAL;
	}
	if (strlen(v->str) > 107) {
		errbuf_set(err, errlen, "longer than the 107 bytes a unix socket path may have");
		return -EINVAL;
	}
	return 0;
}

/* A Service name (a DNS-1123 label), or empty. */
static int validate_service_name(const union conf_value *v, char *err, size_t errlen)
{
	return v->str[0] ? k8s_conf_validate_label(v, err, errlen) : 0;
}

/* KEY=VALUE of a Kubernetes label (simple keys: no prefix). */
static int validate_role_label(const union conf_value *v, char *err, size_t errlen)
{
	const char *eq = strchr(v->str, '=');
	size_t klen = eq ? (size_t)(eq - v->str) : 0;
	bool ok = eq && klen > 0 && klen <= 63 && strlen(eq + 1) > 0 && strlen(eq + 1) <= 63;

	for (const char *p = v->str; ok && *p; p++) {
		bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		             (*p >= '0' && *p <= '9');
		if (p == eq)
			continue;
		if (!alnum && *p != '-' && *p != '_' && *p != '.')
			ok = false;
	}
	if (ok &&
	    (!((eq[-1] >= 'a' && eq[-1] <= 'z') || (eq[-1] >= '0' && eq[-1] <= '9') ||
	       (eq[-1] >= 'A' && eq[-1] <= 'Z')) ||
	     !(eq[1] &&
	       strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", eq[1]))))
		ok = false;
	if (ok)
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a label KEY=VALUE (letters, digits, '-', '_' and '.', at most 63 "
	           "characters each)",
	           v->str);
	return -EINVAL;
}

/* "", "none" or a probe URL (probe.h). */
static int validate_probe(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] == '\0' || strcmp(v->str, "none") == 0)
		return 0;
	return probe_parse(v->str, err, errlen);
}

static const struct conf_choice api_outage_modes[] = {
        {"demote", AGENT_API_OUTAGE_DEMOTE},
        {"ride-through", AGENT_API_OUTAGE_RIDE_THROUGH},
        {NULL, 0},
};

static const struct conf_choice sigterm_modes[] = {
        {"handover", AGENT_SIGTERM_HANDOVER},
        {"keep", AGENT_SIGTERM_KEEP},
        {NULL, 0},
};

static int validate_lock_file(const union conf_value *v, char *err, size_t errlen)
{
	if (strcmp(v->str, "none") != 0 && v->str[0] != '/') {
		errbuf_set(err, errlen, "'%s' is not an absolute path (nor `none`)", v->str);
		return -EINVAL;
	}
	return 0;
}

#define F(field) offsetof(struct agent_conf, field)

/* The agent's own keys: this node, the agent process, the Lease and the
 * API client.  None is live: they are the node's identity in the
 * election, paths bound at start, and the timing the election's safety
 * argument rests on (lease.*, kube.request_timeout_ms). */
static const struct conf_key agent_keys[] = {
        {.name = "node.name",
         .type = CONF_STRING,
         .def = NULL,
         .offset = F(node.name),
         .validate = k8s_conf_validate_subdomain,
         .help = "Name of this node as in its Node object, usually `${NODE_NAME}` set from "
                 "the Downward API (`spec.nodeName`). A DNS-1123 subdomain."},
        {.name = "agent.identity",
         .type = CONF_STRING,
         .def = "",
         .offset = F(agent.identity),
         .derived = "the value of node.name",
         .help = "Holder identity this agent writes into the Lease; empty means node.name."},
        {.name = "agent.control_socket",
         .type = CONF_STRING,
         .def = "/run/kubefence/control.sock",
         .offset = F(agent.control_socket),
         .validate = validate_socket_path,
         .help = "Unix socket the local service connects to (docs/control-protocol.md); its "
                 "directory is shared with the service pod through a hostPath."},
        {.name = "agent.control_uid",
         .type = CONF_INT,
         .def = "-1",
         .min = -1,
         .max = 2147483647,
         .offset = F(agent.control_uid),
         .help = "Uid, besides root, allowed to connect to the control socket; -1: root only."},
        {.name = "agent.write_margin_ms",
         .type = CONF_INT,
         .def = "250",
         .min = 0,
         .max = 60000,
         .offset = F(agent.write_margin_ms),
         .help = "Subtracted from the term's remaining validity when granting the service its "
                 "write deadline (PROMOTE/RENEW until_us). Less than "
                 "lease.renew_deadline_ms."},
        {.name = "agent.lock_file",
         .type = CONF_STRING,
         .def = "none",
         .offset = F(agent.lock_file),
         .validate = validate_lock_file,
         .help = "A file the agent holds locked (flock) for its whole life, in the hostPath "
                 "directory its incarnations on this node share (and no other node's: "
                 "e.g. /run/kubefence/agent.lock beside the control socket). A new "
                 "incarnation waits for it; once it has it, its predecessor is gone, and a "
                 "term this node still holds is continued (same epoch, promoted again on "
                 "this node) instead of failed over. `none`: no lock, no succession (a new "
                 "incarnation waits for the Lease to expire)."},
        {.name = "agent.on_sigterm",
         .type = CONF_ENUM,
         .def = "handover",
         .choices = sigterm_modes,
         .offset = F(agent.on_sigterm),
         .help = "What SIGTERM does to a term this node holds. `handover`: DEMOTE, unlabel, "
                 "release (another node takes over at once). `keep`: stop without a word, "
                 "the service keeps its grant, and the next incarnation on this node "
                 "(agent.lock_file) continues the term (a rolling update of the DaemonSet "
                 "without a failover); if none comes, the Lease expires and another node "
                 "fences this one as usual."},
        {.name = "agent.restart_grace_ms",
         .type = CONF_INT,
         .def = "0",
         .min = 0,
         .max = 600000,
         .offset = F(agent.restart_grace_ms),
         .help = "With agent.on_sigterm = keep: on SIGTERM the leader renews the Lease one "
                 "last time for this long (leaseDurationSeconds and the duration annotation; "
                 "the other agents wait that long, from when they see it, before they may "
                 "take it) and grants its service writes for the same share of it as a "
                 "renewal grants of a lease (lease.renew_deadline_ms / lease.duration_ms, "
                 "minus agent.write_margin_ms), so the master goes on writing while the "
                 "next incarnation is on its way (a DaemonSet deletes the old pod before "
                 "it creates the new one). The next incarnation continues the term and "
                 "writes the lease's own duration again. The price: every SIGTERM does it, so "
                 "whenever no next incarnation follows (the node dies, is drained or shut "
                 "down, the new agent never starts) the failover waits up to this long. "
                 "Only a term whose service is serving (READY) parts: a SIGTERM during a "
                 "promotion leaves the Lease to expire as usual. "
                 "0: off, the "
                 "term lasts only as long as the last renewal's. At least "
                 "lease.duration_ms; needs agent.on_sigterm = keep and agent.lock_file."},
        {.name = "agent.api_outage",
         .type = CONF_ENUM,
         .def = "demote",
         .choices = api_outage_modes,
         .offset = F(agent.api_outage),
         .help = "What a leader does while the API server does not answer its renewals. "
                 "`demote`: its term ends at the renew deadline and its service stops. "
                 "`ride-through`: when its service's store is one of fence.scsi_luns, "
                 "registered with this node's key (the service says both in HELLO), the "
                 "term goes on while every renewal fails "
                 "without an answer that someone else holds the Lease: the service keeps "
                 "serving, because a successor must PREEMPT its key on that LUN (scsi-pr) "
                 "before it can write, and the target then refuses this node's writes. "
                 "A follower that could not read the Lease either waits a full "
                 "lease.duration_ms from when it reads it again before taking over, so an "
                 "outage of the whole API is no failover. Needs scsi-pr in fence.methods "
                 "(it runs on every takeover)."},
        {.name = "agent.fence_without_service",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(agent.fence_without_service),
         .help = "Whether this node fences a silent master even when no service of its own "
                 "is connected to take over: the single-replica "
                 "topology, where the one "
                 "MetaService pod can run on any node. When the Lease is owed a fence at "
                 "level expired (its holder stopped renewing, or released with its service "
                 "not confirmed dead), the agent takes it, runs fence.methods against the "
                 "old node (list `out-of-service` before `pod-delete`, so that the "
                 "StatefulSet's replacement is not scheduled there), and releases it saying "
                 "that it promoted nothing, so the successor owes it no fence. The agent of "
                 "the node the replacement lands on then promotes it. A release with the "
                 "service confirmed dead (its container was killed and is restarted in "
                 "place) is left to the node of the service, and a node whose own earlier "
                 "term may still have a service serving releases such a term for the full "
                 "fence of itself. Needs fence.methods and a control-socket service "
                 "(service.probe empty)."},
        {.name = "agent.fence_give_up_ms",
         .type = CONF_INT,
         .def = "30000",
         .min = 0,
         .max = 3600000,
         .offset = F(agent.fence_give_up_ms),
         .help = "A leader whose fence of the old node, or whose claim of the term (the "
                 "other pods' role labels, its key on fence.scsi_luns), has failed for "
                 "this long releases the Lease (after a fence, with the duty still on it) and is "
                 "no "
                 "candidate for a moment (0.5 s, doubling with each failure in a row up to "
                 "8 s), so that another node (whose path to the storage or the API may "
                 "work) can try; nothing is promoted meanwhile. 0: hold the Lease and "
                 "retry for ever."},
        {.name = "agent.promote_timeout_ms",
         .type = CONF_INT,
         .def = "15000",
         .min = 100,
         .max = 600000,
         .offset = F(agent.promote_timeout_ms),
         .help = "How long the service may take from PROMOTE to READY (recovery included) "
                 "before the agent gives the Lease up."},
        {.name = "lease.name",
         .type = CONF_STRING,
         .def = "kubefence",
         .offset = F(lease.name),
         .validate = k8s_conf_validate_subdomain,
         .help = "Name of the Lease the agents compete for (a DNS-1123 subdomain)."},
        {.name = "lease.namespace",
         .type = CONF_STRING,
         .def = "kubefence",
         .offset = F(lease.namespace),
         .validate = k8s_conf_validate_label,
         .help = "Namespace of that Lease (a DNS-1123 label)."},
        {.name = "lease.duration_ms",
         .type = CONF_INT,
         .def = "4000",
         .min = 1000,
         .max = 300000,
         .offset = F(lease.duration_ms),
         .help = "How long the Lease stays valid after its last renewal; another node takes "
                 "over only after that."},
        {.name = "lease.renew_deadline_ms",
         .type = CONF_INT,
         .def = "3000",
         .min = 500,
         .max = 300000,
         .offset = F(lease.renew_deadline_ms),
         .help = "A leader that could not renew for this long steps down. Less than "
                 "lease.duration_ms, more than 1.2 x lease.retry_ms."},
        {.name = "lease.retry_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 100,
         .max = 60000,
         .offset = F(lease.retry_ms),
         .help = "Pause between two attempts to acquire or renew the Lease."},
        {.name = "kube.config",
         .type = CONF_STRING,
         .def = "in-cluster",
         .offset = F(kube.config),
         .validate = validate_not_empty,
         .help = "Path of a kubeconfig file, or `in-cluster` for the pod's service account."},
        {.name = "kube.context",
         .type = CONF_STRING,
         .def = "",
         .offset = F(kube.context),
         .help = "Context of the kubeconfig to use; empty means its current-context."},
        {.name = "kube.request_timeout_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 100,
         .max = 60000,
         .offset = F(kube.request_timeout_ms),
         .help = "Deadline of one API request; at most lease.renew_deadline_ms."},
};

/* The service the agent supervises: how it is found, labelled and watched.
 * None is live: they say which pods the agent acts on. */
static const struct conf_key service_keys[] = {
        {.name = "service.namespace",
         .type = CONF_STRING,
         .def = "default",
         .offset = F(service.namespace),
         .validate = k8s_conf_validate_label,
         .help = "Namespace of the single-writer service's pods and of its PVC (a DNS-1123 "
                 "label)."},
        {.name = "service.selector",
         .type = CONF_STRING,
         .def = "",
         .offset = F(service.selector),
         .help = "Label selector of the service's pods, e.g. `app=metaservice`; with "
                 "`spec.nodeName=NODE` it finds the master pod on a node. Required by "
                 "`pod-delete`."},
        {.name = "service.role_label",
         .type = CONF_STRING,
         .def = "role=master",
         .offset = F(service.role_label),
         .validate = validate_role_label,
         .help = "The label that marks the master pod; the agent puts it on the promoted "
                 "pod after removing it from every other pod. Without service.endpoints the "
                 "Service selects the master by it."},
        {.name = "service.endpoints",
         .type = CONF_STRING,
         .def = "",
         .offset = F(service.endpoints),
         .validate = validate_service_name,
         .help = "Name of a Service without a selector, in service.namespace, whose "
                 "EndpointSlice (`NAME-kubefence`) and Endpoints the agent writes: the "
                 "promoted pod's address, switched from the old master's in one conditional "
                 "write, so the Service is never empty or double during a failover. The "
                 "address stays until the next master's write replaces it. Empty: the "
                 "Service selects by service.role_label."},
        {.name = "service.probe",
         .type = CONF_STRING,
         .def = "",
         .offset = F(service.probe),
         .validate = validate_probe,
         .help = "Empty: the service connects to the control socket. `tcp://HOST:PORT` or "
                 "`http://HOST:PORT/PATH`: a service that does not integrate, a candidate "
                 "while the probe passes and promoted by the label alone (no write deadline). "
                 "`none`: no local service (election and fencing only)."},
        {.name = "service.probe_interval_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 50,
         .max = 60000,
         .offset = F(service.probe_interval_ms),
         .help = "How often the health probe runs."},
        {.name = "service.heartbeat_ms",
         .type = CONF_INT,
         .def = "200",
         .min = 0,
         .max = 10000,
         .offset = F(service.heartbeat_ms),
         .help = "How often the agent sends PING on the control socket; the service answers "
                 "PONG. 0: no liveness exchange (a hung service is then never replaced)."},
        {.name = "service.heartbeat_timeout_ms",
         .type = CONF_INT,
         .def = "1000",
         .min = 100,
         .max = 600000,
         .offset = F(service.heartbeat_timeout_ms),
         .help = "A service that leaves a PING unanswered this long is hung (stopped, "
                 "wedged): the agent kills it, confirms its death, and if it was part of "
                 "the term releases the Lease for the full fence. More than "
                 "service.heartbeat_ms."},
};

#undef F

/* The one description of every key, in the order of the reference and of
 * --dump-config: the agent's, then each subsystem's table with the offset
 * of its member in struct agent_conf added to every row.  Built once. */
static const struct {
	const struct conf_key *keys;
	const size_t *n;
	size_t n_static; /* for the agent's own tables (sizes known here) */
	size_t base;
} key_parts[] = {
        {agent_keys, NULL, ELEMENTSOF(agent_keys), 0},
        {log_conf_keys, &log_conf_n_keys, 0, offsetof(struct agent_conf, log)},
        {http_conf_keys, &http_conf_n_keys, 0, offsetof(struct agent_conf, http)},
        {service_keys, NULL, ELEMENTSOF(service_keys), 0},
        {fence_conf_keys, &fence_conf_n_keys, 0, offsetof(struct agent_conf, fence)},
        {selffence_conf_keys, &selffence_conf_n_keys, 0, offsetof(struct agent_conf, selffence)},
        {failsafe_conf_keys, &failsafe_conf_n_keys, 0, offsetof(struct agent_conf, failsafe)},
};

#define ALL_KEYS_MAX 96
static struct conf_key all_keys[ALL_KEYS_MAX];
static size_t n_all_keys;
static pthread_once_t all_keys_once = PTHREAD_ONCE_INIT;

static void all_keys_build(void)
{
	for (size_t i = 0; i < ELEMENTSOF(key_parts); i++) {
		size_t n = key_parts[i].n ? *key_parts[i].n : key_parts[i].n_static;

		for (size_t j = 0; j < n && n_all_keys < ALL_KEYS_MAX; j++) {
			all_keys[n_all_keys] = key_parts[i].keys[j];
			all_keys[n_all_keys].offset += key_parts[i].base;
			n_all_keys++;
		}
	}
}

const struct conf_key *agent_conf_keys(size_t *ret_n)
{
	pthread_once(&all_keys_once, all_keys_build);
	*ret_n = n_all_keys;
	return all_keys;
}

/* ------------------------------------------------------- cross-key checks */

/* 1.2 x v, written exactly (one decimal at most). */
static void times_1_2(int64_t v, char *buf, size_t len)
{
	int64_t tenths = v * 12;

	if (tenths % 10 == 0)
		snprintf(buf, len, "%" PRId64, tenths / 10);
	else
		snprintf(buf, len, "%" PRId64 ".%" PRId64, tenths / 10, tenths % 10);
}

static bool strv_has(char *const *v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
			return true;
	return false;
}

/* pod-delete needs the selector fencing borrows from service.*: reported
 * at fence.methods (where it was asked for), or without a line when that
 * is a default.  fence_conf_check() has fencing's own rules. */
static void check_fence(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	int lm = conf_key_line(s, "fence.methods");

	if (conf_key_rejected(s, "fence.methods") || conf_key_rejected(s, "service.selector"))
		return;
	if (strv_has(c->fence.methods, "pod-delete") && !c->service.selector[0])
		(void)conf_errors_addf(errs, conf_source_path(s), (unsigned)(lm > 0 ? lm : 0),
		                       "fence.methods", "%s needs %s (%s)", "pod-delete",
		                       "service.selector", "to find the old master pod");
}

/* ride-through is safe only because a successor must preempt the
 * service's LUN: scsi-pr must run on every takeover. */
static void check_ride_through(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	int l = conf_key_line(s, "agent.api_outage");

	if (c->agent.api_outage != AGENT_API_OUTAGE_RIDE_THROUGH ||
	    conf_key_rejected(s, "agent.api_outage") || conf_key_rejected(s, "fence.methods"))
		return;
	if (!strv_has(c->fence.methods, "scsi-pr"))
		(void)conf_errors_addf(errs, conf_source_path(s), (unsigned)(l > 0 ? l : 0),
		                       "agent.api_outage",
		                       "ride-through needs scsi-pr in fence.methods: a successor "
		                       "must preempt the old master's LUN before it writes, or two "
		                       "masters would write at once");
}

/* agent.restart_grace_ms: a parting renewal only where the next incarnation
 * can continue the term, and never shorter than the lease itself. */
static void check_restart_grace(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	int l = conf_key_line(s, "agent.restart_grace_ms");
	unsigned line = (unsigned)(l > 0 ? l : 0);

	if (c->agent.restart_grace_ms == 0 || conf_key_rejected(s, "agent.restart_grace_ms"))
		return;
	if (c->agent.on_sigterm != AGENT_SIGTERM_KEEP && !conf_key_rejected(s, "agent.on_sigterm"))
		(void)conf_errors_addf(errs, conf_source_path(s), line, "agent.restart_grace_ms",
		                       "needs agent.on_sigterm = keep: with handover a SIGTERM "
		                       "releases the Lease, and there is no term to keep");
	else if ((!c->agent.lock_file || !c->agent.lock_file[0] ||
	          strcmp(c->agent.lock_file, "none") == 0) &&
	         !conf_key_rejected(s, "agent.lock_file"))
		(void)conf_errors_addf(errs, conf_source_path(s), line, "agent.restart_grace_ms",
		                       "needs agent.lock_file: without the node lock no next "
		                       "incarnation continues the term, and the grace would only "
		                       "delay the failover");
	if (c->agent.restart_grace_ms < c->lease.duration_ms &&
	    !conf_key_rejected(s, "lease.duration_ms"))
		(void)conf_errors_addf(errs, conf_source_path(s), line, "agent.restart_grace_ms",
		                       "%" PRId64 " is shorter than lease.duration_ms (%" PRId64
		                       "): a parting renewal may not shorten the lease",
		                       c->agent.restart_grace_ms, c->lease.duration_ms);
}

/* v µs as milliseconds, exactly: "750", "375.25". */
static void ms_text(int64_t v, char *buf, size_t len)
{
	int64_t frac = v % 1000;
	int digits = 3;

	if (frac == 0) {
		snprintf(buf, len, "%" PRId64, v / 1000);
		return;
	}
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	snprintf(buf, len, "%" PRId64 ".%0*" PRId64, v / 1000, digits, frac);
}

/* Failsafe mode extends a term only if a round can be answered before the
 * term lapses, first after the last renewal that succeeded, then after each
 * extension.  The schedule of nodeagent/elector.c (lead_step(),
 * failsafe_step()), R = renew deadline, D = duration, r = retry:
 *
 *   T      = min(kube.request_timeout_ms, R/3): the longest a renewal waits
 *            in failsafe mode (req_timeout() with limit now + R/3)
 *   round  = min(r, R/4): the longest a round that ends promised takes
 *   margin = (D - R)/2 (failsafe_margin()); an extension lasts R - margin
 *            from the round's start t0
 *
 *   first round: the renewal after the last success at s starts at s + r,
 *     fails at s + r + T, the round starts r/2 later and must be answered
 *     before the term's end s + R:  r + T + r/2 + round < R
 *   each next:   a round at t0 (answered by t0 + round) extends to
 *     t0 + R - margin; the renewal after it takes T, the next round starts
 *     r/2 later and must be answered before that:
 *                round + T + r/2 + round < R - margin
 *
 * together: T + r/2 + round + max(r, round + margin) < R.  Timings that
 * break it pass every other check but leave failsafe inert (a grant no
 * longer than the margin, a first round that can never start, extensions
 * that lapse between rounds): refused, since the mode would promise an
 * availability it cannot give. */
static void check_failsafe_timings(const struct agent_conf *c, struct conf_errors *errs, int line)
{
	static const char *const keys[] = {"lease.duration_ms", "lease.renew_deadline_ms",
	                                   "lease.retry_ms", "kube.request_timeout_ms"};
	const struct conf_source *s = c->source;
	int64_t R = c->lease.renew_deadline_ms * 1000, D = c->lease.duration_ms * 1000;
	int64_t r = c->lease.retry_ms * 1000, req = c->kube.request_timeout_ms;
	int64_t T, round, margin, half, tail, sum;
	char t[5][32], total[32], rd[32];

	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (conf_key_rejected(s, keys[i]))
			return;
	if (R >= D)
		return; /* reported by check_consistency() */
	T = (req < R / 1000 / 3 ? req : R / 1000 / 3) * 1000;
	round = r < R / 4 ? r : R / 4;
	margin = (D - R) / 2;
	half = r / 2;
	tail = r > round + margin ? r : round + margin;
	sum = T + half + round + tail;
	if (sum < R)
		return;
	ms_text(T, t[0], sizeof(t[0]));
	ms_text(half, t[1], sizeof(t[1]));
	ms_text(round, t[2], sizeof(t[2]));
	ms_text(r, t[3], sizeof(t[3]));
	ms_text(margin, t[4], sizeof(t[4]));
	ms_text(sum, total, sizeof(total));
	ms_text(R, rd, sizeof(rd));
	(void)conf_errors_addf(errs, conf_source_path(s), (unsigned)(line > 0 ? line : 0),
	                       "failsafe.enabled",
	                       "a failsafe round could not extend the term before it lapses: "
	                       "T + retry/2 + round + max(retry, round + margin) = %s + %s + %s + "
	                       "max(%s, %s + %s) = %s ms must be less than "
	                       "lease.renew_deadline_ms (%s), where T = "
	                       "min(kube.request_timeout_ms, renew_deadline/3) is a renewal's "
	                       "longest wait, round = min(retry, renew_deadline/4) a round's, "
	                       "margin = (duration - renew_deadline)/2",
	                       t[0], t[1], t[2], t[3], t[2], t[4], total, rd);
}

/* failsafe.enabled needs its socket, its peers and its secret.  (Whether
 * the list names an agent besides this one is checked at start, once
 * agent.identity is known; the key file is read at start too: a Secret
 * may not be there where --config-test runs.) */
static void check_failsafe(const struct agent_conf *c, struct conf_errors *errs)
{
	static const char *const needs[] = {"failsafe.listen", "failsafe.peers",
	                                    "failsafe.key_file"};
	const struct conf_source *s = c->source;
	int l = conf_key_line(s, "failsafe.enabled");

	if (!c->failsafe.enabled || conf_key_rejected(s, "failsafe.enabled"))
		return;
	for (size_t i = 0; i < ELEMENTSOF(needs); i++) {
		bool set = i == 0   ? c->failsafe.listen[0] != '\0'
		           : i == 1 ? c->failsafe.peers && c->failsafe.peers[0]
		                    : c->failsafe.key_file[0] != '\0';

		if (!set && !conf_key_rejected(s, needs[i]))
			(void)conf_errors_addf(errs, conf_source_path(s), (unsigned)(l > 0 ? l : 0),
			                       "failsafe.enabled", "needs %s", needs[i]);
	}
	check_failsafe_timings(c, errs, l);
}

static void check_consistency(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	const char *path = conf_source_path(s);
	int64_t renew = c->lease.renew_deadline_ms, dur = c->lease.duration_ms;
	int64_t retry = c->lease.retry_ms, req = c->kube.request_timeout_ms;
	struct conf_blame b;
	char x12[32];

	/* A leader must give up before anyone else may take over. */
	if (renew >= dur && conf_blame(s, "lease.renew_deadline_ms", "lease.duration_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(
			        errs, path, (unsigned)b.line, b.key,
			        "%" PRId64 " must be less than lease.duration_ms (%" PRId64 ", %s)",
			        renew, dur, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be greater than lease.renew_deadline_ms "
			                       "(%" PRId64 ", %s)",
			                       dur, renew, b.other);
	}

	/* Leave room for at least one retry with some slack before stepping
	 * down; integer form of renew > 1.2 * retry. */
	if (renew * 10 <= retry * 12 &&
	    conf_blame(s, "lease.renew_deadline_ms", "lease.retry_ms", &b)) {
		times_1_2(retry, x12, sizeof(x12));
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be greater than 1.2 x lease.retry_ms "
			                       "(%" PRId64 ", %s) = %s",
			                       renew, retry, b.other, x12);
		else
			(void)conf_errors_addf(
			        errs, path, (unsigned)b.line, b.key,
			        "%" PRId64 " is too large: 1.2 x %" PRId64 " = %s must be "
			        "less than lease.renew_deadline_ms (%" PRId64 ", %s)",
			        retry, retry, x12, renew, b.other);
	}

	if (c->service.heartbeat_ms > 0 &&
	    c->service.heartbeat_timeout_ms <= c->service.heartbeat_ms &&
	    conf_blame(s, "service.heartbeat_timeout_ms", "service.heartbeat_ms", &b))
		(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
		                       "service.heartbeat_timeout_ms (%" PRId64
		                       ") must be greater than service.heartbeat_ms (%" PRId64
		                       ", %s): every PING would count as unanswered",
		                       c->service.heartbeat_timeout_ms, c->service.heartbeat_ms,
		                       b.other);
	check_fence(c, errs);
	fence_conf_check(&c->fence, s, errs);
	check_ride_through(c, errs);
	check_restart_grace(c, errs);
	check_failsafe(c, errs);
	if (c->agent.fence_without_service &&
	    !conf_key_rejected(s, "agent.fence_without_service")) {
		int line = conf_key_line(s, "agent.fence_without_service");

		if (strcmp(c->service.probe, "none") == 0 && !conf_key_rejected(s, "service.probe"))
			(void)conf_errors_addf(errs, path, (unsigned)(line > 0 ? line : 0),
			                       "agent.fence_without_service",
			                       "has no effect with service.probe = none: an agent "
			                       "without a local service is always a candidate");
		else if (c->service.probe[0] && !conf_key_rejected(s, "service.probe"))
			(void)conf_errors_addf(
			        errs, path, (unsigned)(line > 0 ? line : 0),
			        "agent.fence_without_service",
			        "needs a control-socket service: a probed service that "
			        "fails its probe may still serve, so its node could "
			        "never say it promoted nothing");
		else if ((!c->fence.methods || !c->fence.methods[0]) &&
		         !conf_key_rejected(s, "fence.methods"))
			(void)conf_errors_addf(
			        errs, path, (unsigned)(line > 0 ? line : 0),
			        "agent.fence_without_service",
			        "needs fence.methods: a term taken only to fence would "
			        "fence nothing");
	}

	/* A probed service is found by its pods' selector and this node. */
	if (c->service.probe[0] && strcmp(c->service.probe, "none") != 0 &&
	    !c->service.selector[0] && !conf_key_rejected(s, "service.probe")) {
		int line = conf_key_line(s, "service.probe");
		(void)conf_errors_addf(errs, path, (unsigned)(line > 0 ? line : 0), "service.probe",
		                       "a probed service needs service.selector, to find its pod "
		                       "on this node");
	}

	/* The write grant is the term's remaining validity minus the margin:
	 * a margin as long as the renew deadline would never grant anything. */
	if (c->agent.write_margin_ms >= renew &&
	    conf_blame(s, "agent.write_margin_ms", "lease.renew_deadline_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be less than lease.renew_deadline_ms "
			                       "(%" PRId64 ", %s)",
			                       c->agent.write_margin_ms, renew, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be greater than agent.write_margin_ms "
			                       "(%" PRId64 ", %s)",
			                       renew, c->agent.write_margin_ms, b.other);
	}

	/* One request may not outlive the renew deadline, or a hung API server
	 * would keep a leader that should already have stepped down. */
	if (req > renew &&
	    conf_blame(s, "kube.request_timeout_ms", "lease.renew_deadline_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must not exceed lease.renew_deadline_ms "
			                       "(%" PRId64 ", %s)",
			                       req, renew, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must not be less than kube.request_timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       renew, req, b.other);
	}
}

/* ------------------------------------------------------------------ API */

int agent_conf_load(const char *path, struct agent_conf **ret, struct conf_errors *errs)
{
	struct agent_conf *c = NULL;
	size_t before = conf_errors_count(errs), n_keys;
	const struct conf_key *keys;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	keys = agent_conf_keys(&n_keys);
	r = conf_source_new(keys, n_keys, path, &c->source);
	if (r < 0)
		goto out;
	r = conf_source_load(c->source, c, errs);
	if (r < 0 && r != -EINVAL)
		goto out;
	/* Keys that parsed are checked against each other even when others
	 * did not, so that one run reports every problem. */
	check_consistency(c, errs);

	if (c->node.name && c->agent.identity && c->agent.identity[0] == '\0') {
		char *id = strdup(c->node.name);

		if (!id) {
			r = -ENOMEM;
			goto out;
		}
		free(c->agent.identity);
		c->agent.identity = id;
	}
	if (c->agent.lock_file && strcmp(c->agent.lock_file, "none") == 0)
		c->agent.lock_file[0] = '\0';
	/* what fencing borrows from the rest of the file */
	c->fence.local_node = c->node.name;
	c->fence.namespace = c->service.namespace;
	c->fence.selector = c->service.selector;
	if (conf_errors_count(errs) > before) {
		r = -EINVAL;
		goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	agent_conf_free(c);
	return r;
}

struct agent_conf *agent_conf_free(struct agent_conf *c)
{
	const struct conf_key *keys;
	size_t n_keys;

	if (!c)
		return NULL;
	keys = agent_conf_keys(&n_keys);
	conf_target_free(keys, n_keys, c);
	conf_source_free(c->source);
	free(c);
	return NULL;
}

void agent_conf_dump(const struct agent_conf *c, FILE *out)
{
	fprintf(out, "# effective configuration read from %s\n", conf_source_path(c->source));
	conf_dump(c->source, c, out);
}

void agent_conf_print_reference(FILE *out)
{
	fputs("# kubefence-agent configuration\n"
	      "\n"
	      "<!-- Generated by `kubefence-agent --config-reference` (make config-reference) "
	      "from the key\n"
	      "     tables the agent concatenates (nodeagent/agent_conf.c); do not edit: a\n"
	      "     unit test fails when this file is stale. -->\n"
	      "\n"
	      "`kubefence-agent` reads `" AGENT_CONF_DEFAULT_PATH "`, or the file given with "
	      "`--config FILE`.\n"
	      "`--dump-config` prints the value every key ends up with, marking those left at "
	      "their default.\n"
	      "\n"
	      "A minimal file names the node; everything else has a default:\n"
	      "\n"
	      "```\n"
	      "# /etc/kubefence/agent.conf\n"
	      "node.name = ${NODE_NAME}\n"
	      "```\n"
	      "\n",
	      out);
	size_t n_keys;
	const struct conf_key *keys = agent_conf_keys(&n_keys);

	conf_print_reference(keys, n_keys, out);
	fputs("\n"
	      "## Consistency rules\n"
	      "\n"
	      "Checked after every key has been read; a violation is reported at the line of "
	      "the key that\n"
	      "was set (at `lease.renew_deadline_ms` or `kube.request_timeout_ms` when both "
	      "were), or as\n"
	      "`FILE: KEY: reason` when both are defaults.\n"
	      "\n"
	      "* `lease.renew_deadline_ms` < `lease.duration_ms`: a leader gives up before "
	      "another node may\n"
	      "  take the Lease over.\n"
	      "* `lease.renew_deadline_ms` > 1.2 x `lease.retry_ms`: there is room for at "
	      "least one more\n"
	      "  renewal attempt before stepping down.\n"
	      "* `kube.request_timeout_ms` <= `lease.renew_deadline_ms`: a single API request "
	      "cannot outlive\n"
	      "  the renew deadline.\n"
	      "\n"
	      "* `fence.total_timeout_ms` >= `fence.timeout_ms`: the pipeline has room for one "
	      "whole method.\n"
	      "* Each fence method needs its key: `pod-delete` needs `service.selector`, "
	      "`volume-detach`\n"
	      "  needs `fence.pvc`, `scsi-pr` needs `fence.scsi_luns`; every method of "
	      "`fence.released_methods`\n"
	      "  is also in `fence.methods`.  Reported at the line of the list.\n"
	      "\n"
	      "`agent.identity`, when empty, is replaced by `node.name` once the file is read; "
	      "`kube.context`,\n"
	      "when empty, means the current-context of the kubeconfig.\n"
	      "\n"
	      "## Reload (SIGHUP)\n"
	      "\n"
	      "On SIGHUP the agent reads its file again and checks it as `--config-test` does. "
	      "The\n"
	      "Reload column above says which keys are *live*: a running agent applies a new "
	      "value\n"
	      "(atomically: every thread sees the old value or the new one).  The others need a "
	      "restart:\n"
	      "they are the node's identity in the election, paths and sockets bound at start, "
	      "the\n"
	      "timing the election's safety rests on, and what fences a node.\n"
	      "\n"
	      "* A file with problems is refused, each problem logged as `FILE:LINE: KEY: "
	      "reason`;\n"
	      "  the running configuration is kept.\n"
	      "* When only live keys changed, they are applied and each change is logged\n"
	      "  (`SIGHUP: log.level: 'info' -> 'debug'`).\n"
	      "* When any key that needs a restart changed, each such key is logged by name "
	      "and\n"
	      "  nothing is applied, the live changes of the same file included: the running\n"
	      "  configuration stays exactly the last file accepted, so what an operator "
	      "reads in a\n"
	      "  file is what runs, never half of an edit.  Restart the agent to apply it.\n"
	      "\n"
	      "Each reload is counted in `kubefence_config_reloads_total{result=\"applied|refused|"
	      "invalid\"}`,\n"
	      "`kubefence_config_last_reload_success` says whether the last one was applied, "
	      "and an Event\n"
	      "about the Lease (`ConfigReloaded` or `ConfigRefused`) names the keys or the "
	      "first problem.\n",
	      out);
}

/* ----------------------------------------------------------------- reload */

static bool strv_equal(char *const *a, char *const *b)
{
	for (; a && *a && b && *b; a++, b++)
		if (strcmp(*a, *b) != 0)
			return false;
	return !(a && *a) && !(b && *b);
}

static bool key_equal(const struct agent_conf *x, const struct agent_conf *y,
                      const struct conf_key *k)
{
	const char *px = (const char *)x + k->offset, *py = (const char *)y + k->offset;

	switch (k->type) {
	case CONF_STRING: {
		const char *a = *(char *const *)px, *b = *(char *const *)py;

		return strcmp(a ? a : "", b ? b : "") == 0;
	}
	case CONF_INT:
		return *(const int64_t *)px == *(const int64_t *)py;
	case CONF_BOOL:
		return *(const bool *)px == *(const bool *)py;
	case CONF_ENUM:
		return *(const int *)px == *(const int *)py;
	case CONF_STRLIST:
		return strv_equal(*(char **const *)px, *(char **const *)py);
	}
	return false;
}

size_t agent_conf_changes(const struct agent_conf *running, const struct agent_conf *next,
                          const struct conf_key **changed, size_t max, size_t *ret_n_restart)
{
	size_t n_keys, n = 0, n_restart = 0;
	const struct conf_key *keys = agent_conf_keys(&n_keys);

	for (size_t i = 0; i < n_keys; i++) {
		if (key_equal(running, next, &keys[i]))
			continue;
		if (n < max)
			changed[n] = &keys[i];
		n++;
		if (!keys[i].live)
			n_restart++;
	}
	*ret_n_restart = n_restart;
	return n;
}

void agent_conf_value(const struct agent_conf *c, const struct conf_key *k, char *buf, size_t len)
{
	const char *p = (const char *)c + k->offset;
	size_t used = 0;

	buf[0] = '\0';
	switch (k->type) {
	case CONF_STRING:
		snprintf(buf, len, "%s", *(char *const *)p ? *(char *const *)p : "");
		break;
	case CONF_INT:
		snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
		break;
	case CONF_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
		break;
	case CONF_ENUM:
		for (const struct conf_choice *ch = k->choices; ch && ch->name; ch++)
			if (ch->value == *(const int *)p)
				snprintf(buf, len, "%s", ch->name);
		break;
	case CONF_STRLIST:
		for (char **v = *(char **const *)p; v && *v && used < len; v++) {
			int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", *v);

			if (w < 0)
				break;
			used += (size_t)w;
		}
		break;
	}
}
