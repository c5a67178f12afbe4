/* ctl_fence: `kubefencectl fence --config FILE --victim NODE [--dry-run]`.
 *
 * Reads the agent's configuration, builds the same fence pipeline the agent
 * runs before a promotion, runs it once against NODE and prints every step
 * with its target, outcome and duration.  The default level is "lease
 * expired" (every configured method), since an operator fencing by hand
 * knows nothing of the victim; --level released runs what a clean release
 * requires.  --dry-run only reads (finds the pod, the PV, the
 * VolumeAttachments) and says what would be done. */
#include "config.h"

#include "nodeagent/ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing/pipeline.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "nodeagent/agent_conf.h"

enum {
	EXIT_FENCED = 0,
	EXIT_USAGE = 2,
	EXIT_NOT_FENCED = 3,
	EXIT_REFUSED = 4,
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: kubefencectl fence --config FILE --victim NODE [--dry-run]\n"
	        "                          [--level expired|released] [--pod NAME [--pod-uid "
	        "UID]]\n"
	        "\n"
	        "Run the fence pipeline of FILE (fence.methods, in order) once against NODE and\n"
	        "print each step.  --level expired (default) runs every method; released runs\n"
	        "the storage fence and fence.released_methods.  --pod names the victim's master\n"
	        "pod instead of finding it with service.selector on NODE.  --dry-run only reads.\n"
	        "\n"
	        "Exit: 0 confirmed fenced, 2 bad usage or configuration, 3 not confirmed,\n"
	        "4 refused (NODE is this node, node.name).\n");
}

int ctl_fence_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'}, {"victim", required_argument, NULL, 'v'},
	        {"dry-run", no_argument, NULL, 'n'},      {"level", required_argument, NULL, 'l'},
	        {"pod", required_argument, NULL, 'p'},    {"pod-uid", required_argument, NULL, 'u'},
	        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *config = NULL;
	struct fence_request req = {0};
	enum fence_level level = FENCE_LEVEL_EXPIRED;
	struct conf_errors errs = {0};
	struct agent_conf *conf = NULL;
	struct k8s_client *client = NULL;
	struct fence_methods methods = {0};
	struct fence_pipeline_opts opts;
	struct fence_report *rep = NULL;
	char err[1024] = "";
	int c, r, rc = EXIT_USAGE;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:v:nl:p:u:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'v':
			req.node = optarg;
			break;
		case 'n':
			req.dry_run = true;
			break;
		case 'l':
			if (strcmp(optarg, "expired") == 0)
				level = FENCE_LEVEL_EXPIRED;
			else if (strcmp(optarg, "released") == 0)
				level = FENCE_LEVEL_RELEASED;
			else {
				fprintf(stderr,
				        "kubefencectl fence: --level: '%s' is not one of: "
				        "expired, released\n",
				        optarg);
				goto out;
			}
			break;
		case 'p':
			req.pod = optarg;
			break;
		case 'u':
			req.pod_uid = optarg;
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind < argc || !config || !req.node || !req.node[0] || (req.pod_uid && !req.pod)) {
		fprintf(stderr, "kubefencectl fence: %s\n",
		        optind < argc ? "unexpected argument"
		        : !config     ? "--config FILE is required"
		        : req.pod_uid && req.node && req.node[0] && !req.pod
		                ? "--pod-uid needs --pod"
		                : "--victim NODE is required");
		usage(stderr);
		goto out;
	}

	r = agent_conf_load(config, &conf, &errs);
	if (r < 0) {
		conf_errors_print(&errs, stderr);
		goto out;
	}
	log_max_level = conf->log.level < LOG_LEVEL_WARNING ? conf->log.level : LOG_LEVEL_WARNING;
	/* Refuse before touching the network. */
	if (strcmp(req.node, conf->node.name) == 0) {
		fprintf(stderr,
		        "kubefencectl fence: refusing to fence node '%s': it is this node "
		        "(node.name in %s)\n",
		        req.node, config);
		rc = EXIT_REFUSED;
		goto out;
	}
	r = k8s_client_new(conf->kube.config, conf->kube.context[0] ? conf->kube.context : NULL,
	                   &client, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kubefencectl fence: kube.config '%s': %s\n", conf->kube.config,
		        err);
		goto out;
	}
	r = fence_methods_from_conf(&conf->fence, client, &methods, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kubefencectl fence: %s: %s\n", config, err);
		goto out;
	}
	rep = calloc(1, sizeof(*rep));
	if (!rep) {
		fprintf(stderr, "kubefencectl fence: out of memory\n");
		rc = EXIT_NOT_FENCED;
		goto out;
	}
	fence_pipeline_opts_from_conf(&conf->fence, &opts);
	printf("fencing node '%s' (%s)%s with %zu method%s\n", req.node,
	       fence_level_to_string(level), req.dry_run ? " [dry run]" : "", methods.n,
	       methods.n == 1 ? "" : "s");
	r = fence_pipeline_run(&opts, methods.v, methods.n, level, &req, rep);
	for (size_t i = 0; i < rep->n_steps; i++) {
		const struct fence_step *s = &rep->steps[i];
		const char *what = s->skipped                        ? "skipped"
		                   : s->result == FENCE_ALREADY_GONE ? "confirmed (already gone)"
		                   : s->result >= 0                  ? "confirmed"
		                                                     : "FAILED";

		printf("step %zu/%zu %s %s: %s in %.3f s", i + 1, rep->n_steps, s->method,
		       s->target, what, (double)s->duration / USEC_PER_SEC);
		if (s->attempts > 1)
			printf(", %d attempts", s->attempts);
		printf("%s%s%s\n", s->message[0] ? " (" : "", s->message, s->message[0] ? ")" : "");
	}
	if (r == -EPERM && rep->n_steps == 0) {
		fprintf(stderr, "kubefencectl fence: %s\n", rep->message);
		rc = EXIT_REFUSED;
	} else if (r < 0) {
		const char *why = strerror(-r);

		for (size_t i = 0; i < rep->n_steps; i++)
			if (rep->steps[i].result < 0) {
				why = rep->steps[i].method;
				break;
			}
		fprintf(stderr,
		        "kubefencectl fence: node '%s' is NOT confirmed fenced: %s failed\n",
		        req.node, why);
		rc = EXIT_NOT_FENCED;
	} else {
		printf("%s node '%s' in %.3f s\n",
		       req.dry_run ? "dry run complete for" : "confirmed fenced:", req.node,
		       (double)rep->duration / USEC_PER_SEC);
		rc = EXIT_FENCED;
	}
out:
	free(rep);
	fence_methods_done(&methods);
	k8s_client_free(client);
	agent_conf_free(conf);
	conf_errors_done(&errs);
	return rc;
}
