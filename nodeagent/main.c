/* kubefence-agent: the node agent.
 *
 * Reads the per-node conf file, connects to the API server (in-cluster or
 * through a kubeconfig) and contends for the Lease.  Signals are handled on
 * the main thread with sigwait(): SIGTERM and SIGINT release the Lease with
 * the reason recorded, so a follower takes over at once. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_conf.h"
#include "elector.h"
#include "k8s.h"
#include "log.h"
#include "util.h"

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

static int run(const struct agent_conf *conf)
{
	struct k8s_client *client = NULL;
	struct elector *el = NULL;
	struct elector_params p = {0};
	char err[1024] = "";
	sigset_t set;
	int sig = 0, r;

	/* Block the signals before any thread exists, so that every thread
	 * inherits the mask and only sigwait() below sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = k8s_client_new(conf->kube.config, conf->kube.context[0] ? conf->kube.context : NULL,
	                   &client, err, sizeof(err));
	if (r < 0) {
		log_error("cannot configure the Kubernetes client from '%s': %s", conf->kube.config,
		          err[0] ? err : strerror(-r));
		return EXIT_FAILURE;
	}

	str_copy(p.lease.identity, sizeof(p.lease.identity), conf->agent.identity);
	lease_config_new_incarnation(&p.lease);
	p.lease.duration = conf->lease.duration_ms * USEC_PER_MSEC;
	p.lease.renew_deadline = conf->lease.renew_deadline_ms * USEC_PER_MSEC;
	p.lease.retry = conf->lease.retry_ms * USEC_PER_MSEC;
	p.namespace = conf->lease.namespace;
	p.name = conf->lease.name;
	p.request_timeout_ms = (long)conf->kube.request_timeout_ms;

	r = elector_new(client, &p, NULL, NULL, &el);
	if (r >= 0)
		r = elector_start(el);
	if (r < 0) {
		log_error("cannot start the election: %s", strerror(-r));
		goto out;
	}
	log_info("started: node '%s', identity '%s' (incarnation %s), lease '%s/%s', server %s",
	         conf->node.name, conf->agent.identity, p.lease.incarnation, conf->lease.namespace,
	         conf->lease.name, k8s_client_server(client));

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_warning(
			        "SIGHUP: reloading is not supported; restart the agent to apply a "
			        "changed conf file");
			continue;
		}
		break;
	}
	{
		char reason[64];
		snprintf(reason, sizeof(reason), "agent on %s stopped by %s", conf->node.name,
		         sig == SIGTERM ? "SIGTERM" : "SIGINT");
		log_info("%s; handing over", reason);
		elector_stop(el, reason);
	}
	r = 0;
out:
	elector_free(el);
	k8s_client_free(client);
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
	log_max_level = conf->log.level;
	log_set_monotonic(conf->log.monotonic);
	r = run(conf);
	agent_conf_free(conf);
	return r;
}
