/* agent_conf: the agent's key table, its validators and cross-key checks
 * (see agent_conf.h).  Parsing, line numbers, ${VAR} expansion and the
 * output formats are lib/conf's; what is here is what the keys mean. */
#include "config.h"

#include "fencing/pipeline.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/agent_conf.h"
#include "nodeagent/http.h"
#include "nodeagent/probe.h"
#include "scsi/scsi_pr.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define DNS1123_LABEL_MAX     63
#define DNS1123_SUBDOMAIN_MAX 253
/* As FENCE_SCSI_LUNS_MAX in fencing/fence_scsi.h. */
#define FENCE_SCSI_LUNS_CONF_MAX 16

/* Kubernetes' IsDNS1123Label/IsDNS1123Subdomain: lowercase alphanumerics and
 * '-', each label starting and ending with an alphanumeric; a subdomain is
 * labels joined by '.'.  Checked here so that a typo is reported at its
 * line instead of as an HTTP 422 from the API server at run time. */
static bool dns1123_valid(const char *s, size_t max, bool dots)
{
	size_t len = strlen(s);
	bool label_start = true;

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (ch == '.' && dots) {
			if (label_start || s[i - 1] == '-')
				return false;
			label_start = true;
			continue;
		}
		if (!alnum && !(ch == '-' && !label_start))
			return false;
		label_start = false;
	}
	return s[len - 1] != '-' && s[len - 1] != '.';
}

static int validate_subdomain(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_SUBDOMAIN_MAX, true))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and "
	           "'.', starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_SUBDOMAIN_MAX);
	return -EINVAL;
}

static int validate_label(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_LABEL_MAX, false))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 label (lowercase letters, digits and '-', "
	           "starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_LABEL_MAX);
	return -EINVAL;
}

static int validate_not_empty(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] != '\0')
		return 0;
	errbuf_set(err, errlen, "value is empty");
	return -EINVAL;
}

static int validate_subdomain_or_empty(const union conf_value *v, char *err, size_t errlen)
{
	return v->str[0] == '\0' ? 0 : validate_subdomain(v, err, errlen);
}

/* Fence methods: known names, each at most once (a list is an order). */
static int validate_methods(const union conf_value *v, char *err, size_t errlen)
{
	for (char *const *p = v->strv; *p; p++) {
		if (!fence_method_known(*p)) {
			errbuf_set(err, errlen, "unknown method '%s' (known: %s)", *p,
			           fence_method_names_joined());
			return -EINVAL;
		}
		for (char *const *q = v->strv; q < p; q++)
			if (strcmp(*q, *p) == 0) {
				errbuf_set(err, errlen, "method '%s' listed twice", *p);
				return -EINVAL;
			}
	}
	return 0;
}

static int validate_luns(const union conf_value *v, char *err, size_t errlen)
{
	size_t n = 0;

	for (char *const *p = v->strv; *p; p++, n++) {
		struct scsi_pr_url u;
		char why[256];

		if (scsi_pr_url_parse(*p, &u, why, sizeof(why)) < 0) {
			errbuf_set(err, errlen, "%s", why);
			return -EINVAL;
		}
	}
	if (n > FENCE_SCSI_LUNS_CONF_MAX) {
		errbuf_set(err, errlen, "%zu LUNs, at most %d", n, FENCE_SCSI_LUNS_CONF_MAX);
		return -EINVAL;
	}
	return 0;
}

static int validate_abs_path_or_empty(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] == '\0' || v->str[0] == '/')
		return 0;
	errbuf_set(err, errlen, "'%s' is not an absolute path", v->str);
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

/* HOST:PORT to listen on, or empty for none.  Read by the HTTP server's
 * own parser, so that a value accepted here is one the server binds; the
 * only rule added is that a conf file names its port: port 0 would bind one
 * picked at random, which no scraper or probe could find. */
static int validate_listen(const union conf_value *v, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (v->str[0] == '\0')
		return 0;
	r = http_parse_listen(v->str, &ss, &len, err, errlen);
	if (r < 0)
		return r;
	if ((ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_port == 0) ||
	    (ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_port == 0)) {
		errbuf_set(err, errlen,
		           "'%s': port 0 would listen on a port picked at random; give one in "
		           "1..65535",
		           v->str);
		return -EINVAL;
	}
	return 0;
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

static const struct conf_choice log_levels[] = {
        {"error", LOG_LEVEL_ERROR},
        {"warning", LOG_LEVEL_WARNING},
        {"info", LOG_LEVEL_INFO},
        {"debug", LOG_LEVEL_DEBUG},
        {NULL, 0},
};

#define F(field) offsetof(struct agent_conf, field)

/* The one description of every key: the reader, --dump-config and
 * docs/configuration.md all come from here. */
static const struct conf_key agent_keys[] = {
        {.name = "node.name",
         .type = CONF_STRING,
         .def = NULL,
         .offset = F(node.name),
         .validate = validate_subdomain,
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
        {.name = "agent.api_outage",
         .type = CONF_ENUM,
         .def = "demote",
         .choices = api_outage_modes,
         .offset = F(agent.api_outage),
         .help = "What a leader does while the API server does not answer its renewals. "
                 "`demote`: its term ends at the renew deadline and its service stops. "
                 "`ride-through`: when its service's store is one of fence.scsi_luns (the "
                 "service says so in HELLO), the term goes on while every renewal fails "
                 "without an answer that someone else holds the Lease: the service keeps "
                 "serving, because a successor must PREEMPT its key on that LUN (scsi-pr) "
                 "before it can write, and the target then refuses this node's writes. "
                 "A follower that could not read the Lease either waits a full "
                 "lease.duration_ms from when it reads it again before taking over, so an "
                 "outage of the whole API is no failover. Needs scsi-pr in fence.methods "
                 "(it runs on every takeover)."},
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
         .validate = validate_subdomain,
         .help = "Name of the Lease the agents compete for (a DNS-1123 subdomain)."},
        {.name = "lease.namespace",
         .type = CONF_STRING,
         .def = "kubefence",
         .offset = F(lease.namespace),
         .validate = validate_label,
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
        {.name = "log.level",
         .type = CONF_ENUM,
         .def = "info",
         .choices = log_levels,
         .offset = F(log.level),
         .help = "Most verbose level that is logged."},
        {.name = "log.monotonic",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(log.monotonic),
         .help = "Prefix log lines with CLOCK_MONOTONIC seconds, to line up the logs of "
                 "several processes of one node."},
        {.name = "http.listen",
         .type = CONF_STRING,
         .def = "0.0.0.0:9464",
         .offset = F(http.listen),
         .validate = validate_listen,
         .help = "Address of /healthz, /readyz, /metrics and /status: `IPV4:PORT`, "
                 "`[IPV6]:PORT`, `localhost:PORT`, or `:PORT` (every IPv4 address); PORT "
                 "1..65535; host names are not resolved. Empty: no HTTP endpoint."},
        {.name = "service.namespace",
         .type = CONF_STRING,
         .def = "default",
         .offset = F(service.namespace),
         .validate = validate_label,
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
         .help = "The label the Service selects the master by; the agent puts it on the "
                 "promoted pod after removing it from every other pod."},
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
        {.name = "fence.methods",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(fence.methods),
         .validate = validate_methods,
         .help = "Fence methods, run in this order before a new master is promoted: "
                 "`scsi-pr`, `pod-delete`, `volume-detach`. Empty: no fencing (failover "
                 "then relies on the Lease alone)."},
        {.name = "fence.released_methods",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(fence.released_methods),
         .validate = validate_methods,
         .help = "Methods of fence.methods also run when the old master released the Lease "
                 "with its service confirmed dead (`scsi-pr` always runs when configured); "
                 "when the Lease expired every method runs."},
        {.name = "fence.timeout_ms",
         .type = CONF_INT,
         .def = "10000",
         .min = 100,
         .max = 600000,
         .offset = F(fence.timeout_ms),
         .help = "Deadline of one fence method, its retries included."},
        {.name = "fence.total_timeout_ms",
         .type = CONF_INT,
         .def = "30000",
         .min = 100,
         .max = 3600000,
         .offset = F(fence.total_timeout_ms),
         .help = "Deadline of the whole fence pipeline; at least fence.timeout_ms."},
        {.name = "fence.retries",
         .type = CONF_INT,
         .def = "3",
         .min = 0,
         .max = 100,
         .offset = F(fence.retries),
         .help = "Extra attempts of a method after a transient failure (throttling, "
                 "unavailable server, timeout), within its deadline."},
        {.name = "fence.retry_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 10,
         .max = 60000,
         .offset = F(fence.retry_ms),
         .help = "Pause before each retry of a method."},
        {.name = "fence.pvc",
         .type = CONF_STRING,
         .def = "",
         .offset = F(fence.pvc),
         .validate = validate_subdomain_or_empty,
         .help = "`volume-detach`: the service's PersistentVolumeClaim in service.namespace; "
                 "the VolumeAttachments of its PV on the old node are deleted. Required by "
                 "`volume-detach`."},
        {.name = "fence.out_of_service_taint",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(fence.out_of_service_taint),
         .help = "`volume-detach`: also taint the old node "
                 "`node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` (non-graceful "
                 "node shutdown); remove it once the node has recovered."},
        {.name = "fence.scsi_luns",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(fence.scsi_luns),
         .validate = validate_luns,
         .help = "`scsi-pr`: the shared LUNs, `iscsi://HOST[:PORT]/TARGET-IQN/LUN`, at most "
                 "16. Required by `scsi-pr`."},
        {.name = "fence.scsi_iqn_prefix",
         .type = CONF_STRING,
         .def = "",
         .offset = F(fence.scsi_iqn_prefix),
         .help = "`scsi-pr`: initiator IQN prefix (the IQN is PREFIX:NODE); empty means "
                 "`iqn.2026-11.io.kubefence`."},
        {.name = "fence.scsi_check_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 0,
         .max = 600000,
         .offset = F(fence.scsi_check_ms),
         .help = "`scsi-pr`: how often this node checks its registration on every LUN "
                 "(READ KEYS). When a target restart lost every registration, the leader's "
                 "node, confirmed by reading the Lease right before, registers again and "
                 "takes the reservation again (Event ReservationRestored). A standby never "
                 "registers here (the target cannot tell its lost key from one a fence "
                 "removed): it registers through its own fence when it takes over. 0: no "
                 "check."},
        {.name = "fence.scsi_inflight_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 0,
         .max = 60000,
         .offset = F(fence.scsi_inflight_ms),
         .help = "`scsi-pr`: only for a target with neither PREEMPT AND ABORT nor LOGICAL "
                 "UNIT RESET: how long a command it accepted from the victim before the "
                 "PREEMPT may still take to run. The fence waits this long before it is "
                 "confirmed, so that a late write of the victim cannot land on what the new "
                 "master writes. (Where the target has either, it aborts or finishes such "
                 "commands itself before answering, and nothing is waited.) 0: no wait."},
        {.name = "selffence.stop_timeout_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 10,
         .max = 60000,
         .offset = F(selffence.stop_timeout_ms),
         .help = "On lost leadership: how long the local service may take to confirm it "
                 "stopped writing before it is killed (SIGKILL)."},
        {.name = "selffence.kill_timeout_ms",
         .type = CONF_INT,
         .def = "5000",
         .min = 10,
         .max = 60000,
         .offset = F(selffence.kill_timeout_ms),
         .help = "How long a killed service process may take to be confirmed dead."},
        {.name = "selffence.watchdog_device",
         .type = CONF_STRING,
         .def = "",
         .offset = F(selffence.watchdog_device),
         .validate = validate_abs_path_or_empty,
         .help = "Watchdog device fed while the agent is healthy and starved on "
                 "self-fencing, so the node resets, e.g. `/dev/watchdog`; empty = off."},
};

#undef F

/* ------------------------------------------------------- cross-key checks */

/* Which of two keys a problem between them is reported at: the first when
 * the file set it, else the second when the file set that one, else the
 * first without a line (both defaults: a bug in the table). */
struct blame {
	bool first; /* report at the first key */
	const char *key;
	int line;
	char other[64]; /* where the other key's value came from */
};

static bool blame_pick(const struct conf_source *s, const char *a, const char *b, struct blame *ret)
{
	int la = conf_key_line(s, a), lb = conf_key_line(s, b);
	int lother;

	/* A rejected value was reported already; the field holds the default. */
	if (conf_key_rejected(s, a) || conf_key_rejected(s, b))
		return false;
	ret->first = la > 0 || lb <= 0;
	ret->key = ret->first ? a : b;
	ret->line = ret->first ? la : lb;
	lother = ret->first ? lb : la;
	if (lother > 0)
		snprintf(ret->other, sizeof(ret->other), "line %d", lother);
	else
		snprintf(ret->other, sizeof(ret->other), "default");
	return true;
}

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

/* A method needs its key: reported at fence.methods (where it was asked
 * for), or without a line when that is a default. */
static void check_fence(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	const char *path = conf_source_path(s);
	int lm = conf_key_line(s, "fence.methods"), lr = conf_key_line(s, "fence.released_methods");
	static const struct {
		const char *method, *key, *why;
	} needs[] = {
	        {"pod-delete", "service.selector", "to find the old master pod"},
	        {"volume-detach", "fence.pvc", "to find the volume"},
	        {"scsi-pr", "fence.scsi_luns", "to know the LUNs"},
	};

	if (!conf_key_rejected(s, "fence.methods"))
		for (size_t i = 0; i < ELEMENTSOF(needs); i++) {
			const char *v = NULL;

			if (!strv_has(c->fence.methods, needs[i].method) ||
			    conf_key_rejected(s, needs[i].key))
				continue;
			if (strcmp(needs[i].key, "service.selector") == 0)
				v = c->service.selector;
			else if (strcmp(needs[i].key, "fence.pvc") == 0)
				v = c->fence.pvc;
			else
				v = c->fence.scsi_luns && c->fence.scsi_luns[0] ? "set" : "";
			if (v && v[0] == '\0')
				(void)conf_errors_addf(errs, path, (unsigned)(lm > 0 ? lm : 0),
				                       "fence.methods", "%s needs %s (%s)",
				                       needs[i].method, needs[i].key, needs[i].why);
		}
	if (!conf_key_rejected(s, "fence.methods") &&
	    !conf_key_rejected(s, "fence.released_methods"))
		for (char **p = c->fence.released_methods; p && *p; p++)
			if (!strv_has(c->fence.methods, *p))
				(void)conf_errors_addf(errs, path, (unsigned)(lr > 0 ? lr : 0),
				                       "fence.released_methods",
				                       "'%s' is not in fence.methods", *p);
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

static void check_consistency(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	const char *path = conf_source_path(s);
	int64_t renew = c->lease.renew_deadline_ms, dur = c->lease.duration_ms;
	int64_t retry = c->lease.retry_ms, req = c->kube.request_timeout_ms;
	struct blame b;
	char x12[32];

	/* A leader must give up before anyone else may take over. */
	if (renew >= dur && blame_pick(s, "lease.renew_deadline_ms", "lease.duration_ms", &b)) {
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
	    blame_pick(s, "lease.renew_deadline_ms", "lease.retry_ms", &b)) {
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

	/* The pipeline's deadline must leave room for one whole method. */
	if (c->fence.total_timeout_ms < c->fence.timeout_ms &&
	    blame_pick(s, "fence.total_timeout_ms", "fence.timeout_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64 " must not be less than fence.timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       c->fence.total_timeout_ms, c->fence.timeout_ms,
			                       b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64 " must not exceed fence.total_timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       c->fence.timeout_ms, c->fence.total_timeout_ms,
			                       b.other);
	}
	if (c->service.heartbeat_ms > 0 &&
	    c->service.heartbeat_timeout_ms <= c->service.heartbeat_ms &&
	    blame_pick(s, "service.heartbeat_timeout_ms", "service.heartbeat_ms", &b))
		(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
		                       "service.heartbeat_timeout_ms (%" PRId64
		                       ") must be greater than service.heartbeat_ms (%" PRId64
		                       ", %s): every PING would count as unanswered",
		                       c->service.heartbeat_timeout_ms, c->service.heartbeat_ms,
		                       b.other);
	check_fence(c, errs);
	check_ride_through(c, errs);

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
	    blame_pick(s, "agent.write_margin_ms", "lease.renew_deadline_ms", &b)) {
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
	    blame_pick(s, "kube.request_timeout_ms", "lease.renew_deadline_ms", &b)) {
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
	size_t before = conf_errors_count(errs);
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	r = conf_source_new(agent_keys, ELEMENTSOF(agent_keys), path, &c->source);
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
	if (!c)
		return NULL;
	conf_target_free(agent_keys, ELEMENTSOF(agent_keys), c);
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
	      "     table in nodeagent/agent_conf.c; do not edit: a unit test fails when this "
	      "file is stale. -->\n"
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
	conf_print_reference(agent_keys, ELEMENTSOF(agent_keys), out);
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
	      "when empty, means the current-context of the kubeconfig.\n",
	      out);
}
