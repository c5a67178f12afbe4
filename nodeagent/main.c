/* kubefence-agent: the node agent.
 *
 * Reads the per-node conf file, connects to the API server (in-cluster or
 * through a kubeconfig) and contends for the Lease.  Signals are handled on
 * the main thread with sigwait(): SIGTERM and SIGINT release the Lease with
 * the reason recorded, so a follower takes over at once; SIGHUP reads the
 * conf file again and applies it when only live keys changed
 * (reload_conf()). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "fencing/pipeline.h"
#include "lib/failpoint.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/agent_conf.h"
#include "nodeagent/control.h"
#include "nodeagent/elector.h"
#include "nodeagent/failsafe.h"
#include "nodeagent/events.h"
#include "nodeagent/http.h"
#include "nodeagent/metrics.h"
#include "nodeagent/orchestrator.h"

#define EXIT_CONFIG 2

static void usage(FILE *out)
{
	fprintf(out, "Usage: kubefence-agent [--config FILE] [--config-test | --dump-config]\n"
	             "       kubefence-agent --config-reference | --version | --help\n"
	             "\n"
	             "  -c, --config FILE     the conf file (default " AGENT_CONF_DEFAULT_PATH ")\n"
	             "  -t, --config-test     check the conf file and exit: 0 valid, 2 invalid\n"
	             "  -d, --dump-config     print the effective configuration, defaults marked\n"
	             "      --config-reference  print the reference of every key (Markdown)\n"
	             "  -V, --version         print the version\n"
	             "  -h, --help            this text\n");
}

static int load_conf(const char *path, struct agent_conf **ret)
{
	struct conf_errors errs = {0};
	int r;

	r = agent_conf_load(path, ret, &errs);
	if (r < 0) {
		conf_errors_print(&errs, stderr);
		fprintf(stderr, "%s: %zu problem(s); the agent did not start\n", path,
		        conf_errors_count(&errs));
	}
	conf_errors_done(&errs);
	return r;
}

/* Configurations a reload replaced: other threads may still hold pointers
 * into them (strings copied at start), so they are freed only when the
 * agent exits. */
struct retired {
	struct agent_conf **v;
	size_t n;
};

static void retired_free(struct retired *r)
{
	for (size_t i = 0; i < r->n; i++)
		agent_conf_free(r->v[i]);
	free(r->v);
	*r = (struct retired){0};
}

/* Where a reload's outcome goes besides the log: the metrics
 * (kubefence_config_reloads_total{result}, kubefence_config_last_reload_success)
 * and an Event about the Lease (ConfigReloaded or ConfigRefused; no pod is
 * needed, so an agent without a service posts it too).  Either may be NULL. */
struct reload_report {
	struct metrics *metrics;
	struct events *events;
	struct events_object lease;
	const char *node;
};

static void reload_reported(const struct reload_report *rr, enum metrics_reload result,
                            const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reload_reported(const struct reload_report *rr, enum metrics_reload result,
                            const char *fmt, ...)
{
	char msg[EVENTS_MESSAGE_MAX];
	va_list ap;

	metrics_config_reload(rr->metrics, result);
	if (!rr->events)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)events_post(rr->events, &rr->lease,
	                  result == METRICS_RELOAD_APPLIED ? EVENTS_CONFIG_RELOADED
	                                                   : EVENTS_CONFIG_REFUSED,
	                  "agent on %s: SIGHUP: %s", rr->node, msg);
}

/* The names of the changed keys, live ones or the others, as "a, b". */
static void key_names(const struct conf_key *const *changed, size_t n, bool live, char *buf,
                      size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++) {
		int w;

		if (changed[i]->live != live)
			continue;
		w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", changed[i]->name);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* SIGHUP: read `path` again and check it as --config-test does.  A file
 * with problems is refused (each problem logged) and the running
 * configuration kept.  Otherwise, when every key that changed is live
 * (agent_conf.h), the new configuration replaces the running one whole and
 * its live settings are applied (log.*: atomic stores that every thread's
 * next log line sees); when any changed key needs a restart, each such key
 * is named, and nothing at all is applied: the running configuration stays
 * exactly what the last accepted file said, never half of each.  Since
 * only live keys ever differ between the accepted configurations, what the
 * threads copied at start stays right.  Each outcome is also counted and
 * posted (reload_reported()).  Runs on the main thread; returns the
 * configuration in force. */
static const struct agent_conf *reload_conf(const char *path, const struct agent_conf *running,
                                            struct retired *retired, const struct reload_report *rr)
{
	struct conf_errors errs = {0};
	struct agent_conf *next = NULL, **v;
	const struct conf_key *changed[128];
	size_t n, n_restart, shown;
	char was[512], now[512], names[512];
	int r;

	r = agent_conf_load(path, &next, &errs);
	if (r < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_error("SIGHUP: %s", errs.msg[i]);
		log_warning("SIGHUP: '%s' refused: %zu problem(s); the running configuration is "
		            "kept",
		            path, conf_errors_count(&errs));
		reload_reported(rr, METRICS_RELOAD_INVALID,
		                "'%s' refused: %zu problem(s)%s%s; the running configuration is "
		                "kept",
		                path, conf_errors_count(&errs), errs.n ? ", the first: " : "",
		                errs.n ? errs.msg[0] : "");
		conf_errors_done(&errs);
		return running;
	}
	conf_errors_done(&errs);
	n = agent_conf_changes(running, next, changed, ELEMENTSOF(changed), &n_restart);
	shown = n < ELEMENTSOF(changed) ? n : ELEMENTSOF(changed);
	if (n == 0) {
		log_info("SIGHUP: '%s' read again: no key changed", path);
		reload_reported(rr, METRICS_RELOAD_APPLIED, "'%s' read again: no key changed",
		                path);
		agent_conf_free(next);
		return running;
	}
	if (n_restart > 0) {
		for (size_t i = 0; i < shown; i++) {
			if (changed[i]->live)
				continue;
			agent_conf_value(running, changed[i], was, sizeof(was));
			agent_conf_value(next, changed[i], now, sizeof(now));
			log_warning("SIGHUP: %s cannot change while the agent runs ('%s' -> '%s'); "
			            "restart the agent to apply it",
			            changed[i]->name, was, now);
		}
		log_warning("SIGHUP: '%s' refused: %zu key(s) need a restart; the running "
		            "configuration is kept whole (%zu live change(s) not applied either)",
		            path, n_restart, n - n_restart);
		key_names(changed, shown, false, names, sizeof(names));
		reload_reported(rr, METRICS_RELOAD_REFUSED,
		                "'%s' refused: %zu key(s) need a restart (%s); the running "
		                "configuration is kept whole",
		                path, n_restart, names);
		agent_conf_free(next);
		return running;
	}
	v = realloc(retired->v, (retired->n + 1) * sizeof(*v));
	if (!v) {
		log_error("SIGHUP: out of memory; the running configuration is kept");
		reload_reported(rr, METRICS_RELOAD_REFUSED,
		                "'%s' not applied: out of memory; the running configuration is "
		                "kept",
		                path);
		agent_conf_free(next);
		return running;
	}
	retired->v = v;
	/* kept alive until exit; `running` is either the caller's or in here */
	retired->v[retired->n++] = next;
	for (size_t i = 0; i < shown; i++) {
		agent_conf_value(running, changed[i], was, sizeof(was));
		agent_conf_value(next, changed[i], now, sizeof(now));
		log_info("SIGHUP: %s: '%s' -> '%s'", changed[i]->name, was, now);
	}
	log_info("SIGHUP: '%s' reloaded: %zu live key(s) applied", path, n);
	log_conf_apply(&next->log);
	key_names(changed, shown, true, names, sizeof(names));
	reload_reported(rr, METRICS_RELOAD_APPLIED, "'%s' reloaded: %zu live key(s) applied (%s)",
	                path, n, names);
	return next;
}

/* What the HTTP endpoints ask. */
struct agent {
	const struct agent_conf *conf;
	struct orchestrator *orch;
	struct elector *elector;
};

/* Alive: the orchestrator and election threads go round their loops, and
 * no job is stuck (orch_alive). */
static bool agent_healthy(void *userdata, char *reason, size_t len)
{
	struct agent *a = userdata;

	return orch_alive(a->orch, reason, len);
}

static bool agent_ready(void *userdata, char *reason, size_t len)
{
	struct agent *a = userdata;

	return orch_ready(a->orch, reason, len);
}

static int agent_status(void *userdata, cJSON *obj, char *err, size_t errlen)
{
	struct agent *a = userdata;
	cJSON *o = orch_status_json(a->orch), *item;

	(void)err;
	(void)errlen;
	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(obj, "identity", a->conf->agent.identity);
	{
		char holder[LEASE_IDENTITY_MAX];
		usec_t age;
		if (elector_observed(a->elector, holder, sizeof(holder), &age, NULL) >= 0) {
			cJSON_AddStringToObject(obj, "holder", holder);
			cJSON_AddNumberToObject(obj, "lease_age_ms", (double)(age / USEC_PER_MSEC));
		}
	}
	cJSON_AddStringToObject(obj, "lease", a->conf->lease.name);
	cJSON_AddStringToObject(obj, "lease_namespace", a->conf->lease.namespace);
	/* move the orchestrator's fields over */
	while ((item = o->child)) {
		cJSON_DetachItemViaPointer(o, item);
		cJSON_AddItemToObject(obj, item->string, item);
	}
	cJSON_Delete(o);
	return 0;
}

/* The control socket's directory is normally a hostPath the kubelet
 * created; create it when missing so that a bare-metal agent starts. */
static void ensure_parent_dir(const char *path)
{
	char dir[256];
	char *slash;

	if (str_copy(dir, sizeof(dir), path) < 0)
		return;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0750) == 0)
		log_info("created the control socket directory '%s'", dir);
}

/* The node lock (agent.lock_file): held for the whole life of this
 * process, released by the kernel when it exits however it exits, and kept
 * by a predecessor that is only paused.  Waits for it, answering SIGTERM /
 * SIGINT (in `set`, blocked) meanwhile.  Returns the fd (>= 0), -ECANCELED
 * when a signal came first, or -errno. */
static int take_node_lock(const char *path, const sigset_t *set)
{
	const struct timespec tick = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
	usec_t waiting_since = 0, said = 0;
	int fd;

	ensure_parent_dir(path);
reopen:
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("cannot open the node lock '%s': %s", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			struct stat a, b;

			/* the lock proves something only on the file the path names
			 * now: one unlinked or replaced meanwhile may still be held
			 * by a live predecessor */
			if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_dev != b.st_dev ||
			    a.st_ino != b.st_ino) {
				log_warning("the node lock '%s' was replaced while being taken; "
				            "taking it again",
				            path);
				close(fd);
				goto reopen;
			}
			if (waiting_since)
				log_info("took the node lock '%s' after %" PRId64
				         " ms: the previous incarnation is gone",
				         path,
				         (int64_t)((clock_mono_usec() - waiting_since) /
				                   USEC_PER_MSEC));
			return fd;
		}
		if (errno != EWOULDBLOCK && errno != EINTR) {
			log_error("cannot lock '%s': %s", path, strerror(errno));
			close(fd);
			return -errno;
		}
		if (!waiting_since)
			waiting_since = clock_mono_usec();
		if (clock_mono_usec() - said > 10 * USEC_PER_SEC) {
			log_warning(
			        "another incarnation of the agent on this node holds '%s' (it may "
			        "be paused): waiting for it",
			        path);
			said = clock_mono_usec();
		}
		if (sigtimedwait(set, NULL, &tick) > 0) {
			close(fd);
			return -ECANCELED;
		}
	}
}

static int run(const char *path, const struct agent_conf *conf)
{
	const struct agent_conf *current = conf;
	struct retired retired = {0};
	struct k8s_client *client = NULL;
	struct elector *el = NULL;
	struct failsafe *fs = NULL;
	struct control *ctl = NULL;
	struct orchestrator *orch = NULL;
	struct metrics *metrics = NULL;
	struct events *events = NULL;
	struct http_server *http = NULL;
	struct fence_methods methods = {0};
	struct fence_pipeline_opts fopts = {0};
	struct elector_params p = {0};
	struct orch_options oo = {0};
	struct agent agent = {.conf = conf};
	char err[1024] = "", label_key[64] = "", *label_value;
	sigset_t set;
	int sig = 0, r, lock_fd = -1;

	/* Block the signals before any thread exists, so that every thread
	 * inherits the mask and only sigwait() below sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (conf->agent.lock_file[0]) {
		lock_fd = take_node_lock(conf->agent.lock_file, &set);
		if (lock_fd == -ECANCELED) {
			log_info("stopped while waiting for the node lock");
			return EXIT_SUCCESS;
		}
		if (lock_fd < 0)
			return EXIT_FAILURE;
		/* a term of this node under another incarnation is a gone
		 * predecessor's: continue it (same epoch) instead of waiting it out */
		p.succession = true;
	}

	r = k8s_client_new(conf->kube.config, conf->kube.context[0] ? conf->kube.context : NULL,
	                   &client, err, sizeof(err));
	if (r < 0) {
		log_error("cannot configure the Kubernetes client from '%s': %s", conf->kube.config,
		          err[0] ? err : strerror(-r));
		return EXIT_FAILURE;
	}
	r = metrics_agent_new(&metrics);
	if (r < 0)
		goto out;
	metrics_watch_api(metrics, client);
	r = fence_methods_from_conf(&conf->fence, client, &methods, err, sizeof(err));
	if (r < 0) {
		log_error("cannot set up the fence methods: %s", err);
		goto out;
	}
	for (size_t i = 0; i < methods.n; i++)
		metrics_declare_fence_method(metrics, methods.v[i].name);
	fence_pipeline_opts_from_conf(&conf->fence, &fopts);
	{
		struct events_options eo = {
		        .client = client, .node = conf->node.name, .metrics = metrics};
		r = events_start(&eo, &events, err, sizeof(err));
		if (r < 0) {
			log_warning("Kubernetes Events are off: %s", err);
			events = NULL;
		}
	}

	/* service.role_label is KEY=VALUE (checked by the conf) */
	str_copy(label_key, sizeof(label_key), conf->service.role_label);
	label_value = strchr(label_key, '=');
	*label_value++ = '\0';
	oo.node = conf->node.name;
	oo.selector = conf->service.selector;
	oo.probe = conf->service.probe;
	oo.probe_interval = conf->service.probe_interval_ms * USEC_PER_MSEC;
	oo.service_namespace = conf->service.namespace;
	oo.label_key = label_key;
	oo.label_value = label_value;
	oo.endpoints = conf->service.endpoints;
	oo.request_timeout_ms = (long)conf->kube.request_timeout_ms;
	oo.write_margin = conf->agent.write_margin_ms * USEC_PER_MSEC;
	oo.restart_grace = conf->agent.restart_grace_ms * USEC_PER_MSEC;
	oo.promote_timeout = conf->agent.promote_timeout_ms * USEC_PER_MSEC;
	oo.demote_timeout = conf->selffence.stop_timeout_ms * USEC_PER_MSEC;
	oo.kill_timeout = conf->selffence.kill_timeout_ms * USEC_PER_MSEC;
	oo.watchdog_device = conf->selffence.watchdog_device;
	oo.scsi_luns = (const char *const *)conf->fence.scsi_luns;
	for (char **l = conf->fence.scsi_luns; l && *l; l++)
		oo.n_scsi_luns++;
	oo.scsi_iqn_prefix = conf->fence.scsi_iqn_prefix && conf->fence.scsi_iqn_prefix[0]
	                             ? conf->fence.scsi_iqn_prefix
	                             : NULL;
	/* only where scsi-pr is a fence method */
	bool scsi_pr = false, oos = false;
	for (char **mth = conf->fence.methods; mth && *mth; mth++) {
		scsi_pr |= strcmp(*mth, "scsi-pr") == 0;
		oos |= strcmp(*mth, "out-of-service") == 0;
	}
	oo.scsi_claim = scsi_pr && oo.n_scsi_luns > 0;
	oo.scsi_check = scsi_pr ? conf->fence.scsi_check_ms * USEC_PER_MSEC : 0;
	oo.ride_through = scsi_pr && conf->agent.api_outage == AGENT_API_OUTAGE_RIDE_THROUGH;
	oo.fence_without_service = conf->agent.fence_without_service;
	oo.untaint = conf->fence.out_of_service_taint || oos;
	oo.heartbeat = conf->service.heartbeat_ms * USEC_PER_MSEC;
	oo.heartbeat_timeout = conf->service.heartbeat_timeout_ms * USEC_PER_MSEC;
	oo.fence_retry = conf->fence.retry_ms * USEC_PER_MSEC;
	oo.fence_give_up = conf->agent.fence_give_up_ms * USEC_PER_MSEC;
	oo.methods = methods.n ? &methods : NULL;
	oo.fence_opts = &fopts;
	oo.events = events;
	oo.lease_namespace = conf->lease.namespace;
	oo.lease_name = conf->lease.name;
	oo.metrics = metrics;
	r = orch_new(client, &oo, &orch);
	if (r < 0)
		goto out;
	agent.orch = orch;

	/* Only a service that integrates uses the control socket. */
	if (!conf->service.probe[0]) {
		ensure_parent_dir(conf->agent.control_socket);
		r = control_new(conf->agent.control_socket, (uid_t)conf->agent.control_uid,
		                conf->node.name, orch_control_callbacks(), orch, &ctl, err,
		                sizeof(err));
		if (r < 0) {
			log_error("cannot open the control socket: %s", err);
			goto out;
		}
	}

	str_copy(p.lease.identity, sizeof(p.lease.identity), conf->agent.identity);
	str_copy(p.lease.node, sizeof(p.lease.node), conf->node.name);
	lease_config_new_incarnation(&p.lease);
	p.lease.duration = conf->lease.duration_ms * USEC_PER_MSEC;
	p.lease.renew_deadline = conf->lease.renew_deadline_ms * USEC_PER_MSEC;
	p.lease.retry = conf->lease.retry_ms * USEC_PER_MSEC;
	p.namespace = conf->lease.namespace;
	p.name = conf->lease.name;
	p.request_timeout_ms = (long)conf->kube.request_timeout_ms;
	p.ride_through = oo.ride_through;
	if (conf->failsafe.enabled) {
		struct failsafe_peer peers[FAILSAFE_PEERS_MAX];
		uint8_t key[FSPROTO_KEY_MAX];
		char lease[FSPROTO_LEASE_MAX];
		struct failsafe_options fo = {
		        .self = conf->agent.identity,
		        .listen = conf->failsafe.listen,
		        .peers = peers,
		        .lease = lease,
		        .metrics = metrics,
		};

		snprintf(lease, sizeof(lease), "%s/%s", conf->lease.namespace, conf->lease.name);
		r = failsafe_parse_peers(conf->failsafe.peers, conf->agent.identity, peers,
		                         ELEMENTSOF(peers), &fo.n_peers, err, sizeof(err));
		if (r >= 0)
			r = failsafe_read_key(conf->failsafe.key_file, key, sizeof(key), &fo.keylen,
			                      err, sizeof(err));
		if (r >= 0) {
			fo.key = key;
			r = failsafe_new(&fo, &fs, err, sizeof(err));
		}
		OPENSSL_cleanse(key, sizeof(key));
		if (r < 0) {
			log_error("failsafe: %s", err);
			goto out;
		}
		log_info("failsafe: listening on %s (udp); failsafe.peers lists %zu agent(s), "
		         "'%s' included: %zu peer(s); a leader whose renewals get no answer goes "
		         "on only while every one of them promises",
		         conf->failsafe.listen, fo.n_peers + 1, conf->agent.identity, fo.n_peers);
		p.failsafe = fs;
	}
	r = elector_new(client, &p, orch_elector_callbacks(), orch, &el);
	if (r < 0)
		goto out;
	if (fs)
		failsafe_set_judge(fs, elector_failsafe_judge, el);
	agent.elector = el;
	orch_attach(orch, el, ctl);

	if (conf->http.listen[0]) {
		struct http_options ho = {
		        .listen = conf->http.listen,
		        .healthy = agent_healthy,
		        .ready = agent_ready,
		        .status = agent_status,
		        .userdata = &agent,
		        .metrics = metrics,
		};
		r = http_start(&ho, &http, err, sizeof(err));
		if (r < 0) {
			log_error("cannot serve HTTP on '%s': %s", conf->http.listen, err);
			goto out;
		}
	}

	if ((r = orch_start(orch)) < 0 || (ctl && (r = control_start(ctl)) < 0) ||
	    (fs && (r = failsafe_start(fs)) < 0) || (r = elector_start(el)) < 0) {
		log_error("cannot start: %s", strerror(-r));
		goto out;
	}
	log_info("started: node '%s', identity '%s' (incarnation %s), lease '%s/%s', server %s, "
	         "service %s, %zu fence method(s)",
	         conf->node.name, conf->agent.identity, p.lease.incarnation, conf->lease.namespace,
	         conf->lease.name, k8s_client_server(client),
	         conf->service.probe[0] ? conf->service.probe : conf->agent.control_socket,
	         methods.n);

	bool lock_lost = false;
	for (;;) {
		const struct timespec second = {.tv_sec = 1};

		sig = sigtimedwait(&set, NULL, &second);
		if (sig < 0 && lock_fd >= 0) {
			/* the node lock must still be the file its path names: if
			 * it was removed or replaced, a next incarnation could take
			 * "it" while this one lives; stop now, keeping the term */
			struct stat a, b;

			if (fstat(lock_fd, &a) < 0 || stat(conf->agent.lock_file, &b) < 0 ||
			    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
				log_error("the node lock '%s' was removed or replaced while this "
				          "agent "
				          "held it: stopping (a new incarnation may take it)",
				          conf->agent.lock_file);
				lock_lost = true;
				break;
			}
			continue;
		}
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			const struct reload_report rr = {
			        .metrics = metrics,
			        .events = events,
			        .lease = {.api_version = "coordination.k8s.io/v1",
			                  .kind = "Lease",
			                  .namespace = conf->lease.namespace,
			                  .name = conf->lease.name},
			        .node = conf->node.name,
			};

			current = reload_conf(path, current, &retired, &rr);
			continue;
		}
		break;
	}
	{
		char reason[300];
		snprintf(reason, sizeof(reason), "agent on %s stopped by %s", conf->node.name,
		         sig == SIGTERM ? "SIGTERM" : "SIGINT");
		if (lock_lost) {
			snprintf(reason, sizeof(reason), "agent on %s lost its node lock",
			         conf->node.name);
			orch_stop_keeping_term(orch, reason);
		} else if (conf->agent.on_sigterm == AGENT_SIGTERM_KEEP && sig == SIGTERM) {
			log_info(
			        "%s; keeping the term for the next incarnation (agent.on_sigterm = "
			        "keep)",
			        reason);
			orch_stop_for_restart(orch, reason);
		} else {
			log_info("%s; handing over", reason);
			/* demote the service, unlabel, release: see orchestrator.h */
			orch_shutdown(orch, reason);
		}
	}
	r = 0;
out:
	if (r < 0 && r != -EINVAL)
		log_error("the agent stops: %s", strerror(-r));
	/* Order matters: the orchestrator's shutdown still uses the elector and
	 * the control socket; their threads call back into the orchestrator, so
	 * it is freed last. */
	http = http_stop(http);
	if (orch)
		orch_shutdown(orch, "agent stopped");
	control_free(ctl);
	failsafe_stop(fs); /* its judge is the elector's */
	elector_free(el);
	fs = failsafe_free(fs);
	orch_free(orch);
	events = events_stop(events, 2000);
	fence_methods_done(&methods);
	metrics_free(metrics);
	k8s_client_free(client);
	retired_free(&retired);
	return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	enum { OPT_REFERENCE = 0x100 };
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"config-test", no_argument, NULL, 't'},
	        {"dump-config", no_argument, NULL, 'd'},
	        {"config-reference", no_argument, NULL, OPT_REFERENCE},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *path = AGENT_CONF_DEFAULT_PATH;
	struct agent_conf *conf = NULL;
	bool test = false, dump = false;
	int c, r;

	log_set_ident("kubefence-agent");
	{
		char fperr[512];

		if (failpoint_setup(fperr, sizeof(fperr)) < 0) {
			fprintf(stderr, "kubefence-agent: fault points: %s\n", fperr);
			return 2;
		}
	}
	while ((c = getopt_long(argc, argv, "c:tdVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'd':
			dump = true;
			break;
		case OPT_REFERENCE:
			agent_conf_print_reference(stdout);
			return EXIT_SUCCESS;
		case 'V':
			printf("kubefence-agent %s\n", PACKAGE_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubefence-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}

	if (load_conf(path, &conf) < 0)
		return EXIT_CONFIG;
	if (test) {
		printf("%s: configuration is valid\n", path);
		agent_conf_free(conf);
		return EXIT_SUCCESS;
	}
	if (dump) {
		agent_conf_dump(conf, stdout);
		agent_conf_free(conf);
		return EXIT_SUCCESS;
	}
	log_conf_apply(&conf->log);
	r = run(path, conf);
	agent_conf_free(conf);
	return r;
}
