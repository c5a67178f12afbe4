/* ctl_scsi: `kubefencectl scsi` — look at and act on the SCSI-3 persistent
 * reservations of shared LUNs by hand: list registrations and the
 * reservation (each key shown with the node it belongs to), join a node,
 * fence a node, probe whether the target refuses an unregistered writer.
 * Built on fencing/fence_scsi.c; every command runs against
 * one deadline (--timeout-ms).
 *
 * Exit codes (see ctl.h): 0 confirmed success; 2 bad usage or input; 3 the
 * operation failed on at least one LUN; 4 the deadline passed first; probe:
 * 1 when a LUN accepted the unregistered write. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing/fence_scsi.h"
#include "lib/util.h"
#include "nodeagent/ctl.h"

#define DEFAULT_TIMEOUT_MS 10000
#define NODES_MAX          256

struct args {
	const char *cmd;
	const char *luns[FENCE_SCSI_LUNS_MAX];
	size_t n_luns;
	const char *initiator, *node, *victim, *prefix;
	char *nodes_buf;
	const char *nodes[NODES_MAX];
	size_t n_nodes;
	long timeout_ms;
	long inflight_ms;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: kubefencectl scsi keys  --lun URL... [--initiator IQN] [--nodes A,B,...]\n"
	        "       kubefencectl scsi join  --lun URL... --node NODE [--initiator IQN]\n"
	        "       kubefencectl scsi fence --lun URL... --node NODE --victim NODE "
	        "[--initiator IQN]\n"
	        "       kubefencectl scsi probe --lun URL... [--initiator IQN]\n"
	        "\n"
	        "  probe: as an initiator that registers nothing (default\n"
	        "  %s:kubefencectl-probe), send each LUN a WRITE of no\n"
	        "  block (it writes nothing) and say whether the target refuses it:\n"
	        "  RESERVATION CONFLICT means a reservation is held and enforced, so a\n"
	        "  node whose key was removed is refused too.  Exit 0 when every LUN\n"
	        "  refused it, 1 when one accepted it (no reservation keeps writers out).\n"
	        "\n"
	        "  --lun URL          iscsi://HOST[:PORT]/TARGET-IQN/LUN (repeat for several)\n"
	        "  --initiator IQN    initiator name (default %s:NODE)\n"
	        "  --iqn-prefix P     prefix of the per-node initiator names\n"
	        "  --node NODE        the node acting (its key: 'kf' + SHA-256(NODE))\n"
	        "  --victim NODE      the node to fence\n"
	        "  --nodes A,B,...    node names to map keys back to (keys)\n"
	        "  --timeout-ms MS    deadline for the whole command (default %d)\n"
	        "  --inflight-ms MS   fence: on a target with neither PREEMPT AND ABORT nor\n"
	        "                     LOGICAL UNIT RESET, wait MS for the victim's queued\n"
	        "                     commands, as the agent's fence.scsi_inflight_ms (500)\n"
	        "\n"
	        "Exit: 0 confirmed, 2 bad usage, 3 failed on a LUN, 4 deadline passed.\n",
	        SCSI_PR_DEFAULT_IQN_PREFIX, SCSI_PR_DEFAULT_IQN_PREFIX, DEFAULT_TIMEOUT_MS);
}

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
	        {"lun", required_argument, NULL, 'l'},
	        {"initiator", required_argument, NULL, 'i'},
	        {"iqn-prefix", required_argument, NULL, 'p'},
	        {"node", required_argument, NULL, 'n'},
	        {"victim", required_argument, NULL, 'v'},
	        {"nodes", required_argument, NULL, 'N'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"inflight-ms", required_argument, NULL, 'I'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	char *end, *tok, *save = NULL;
	int c;

	a->timeout_ms = DEFAULT_TIMEOUT_MS;
	a->inflight_ms = 500;
	if (argc < 2) {
		usage(stderr);
		return -EINVAL;
	}
	a->cmd = argv[1];
	if (strcmp(a->cmd, "--help") == 0 || strcmp(a->cmd, "-h") == 0) {
		usage(stdout);
		return 1;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (a->n_luns >= FENCE_SCSI_LUNS_MAX) {
				fprintf(stderr, "kubefencectl scsi: at most %d --lun\n",
				        FENCE_SCSI_LUNS_MAX);
				return -EINVAL;
			}
			a->luns[a->n_luns++] = optarg;
			break;
		case 'i':
			a->initiator = optarg;
			break;
		case 'p':
			a->prefix = optarg;
			break;
		case 'n':
			a->node = optarg;
			break;
		case 'v':
			a->victim = optarg;
			break;
		case 'N':
			free(a->nodes_buf);
			a->nodes_buf = strdup(optarg);
			if (!a->nodes_buf)
				return -ENOMEM;
			a->n_nodes = 0;
			for (tok = strtok_r(a->nodes_buf, ",", &save);
			     tok && a->n_nodes < NODES_MAX; tok = strtok_r(NULL, ",", &save))
				a->nodes[a->n_nodes++] = tok;
			break;
		case 't':
			errno = 0;
			a->timeout_ms = strtol(optarg, &end, 10);
			if (*end || errno || a->timeout_ms < 1 || a->timeout_ms > 3600000) {
				fprintf(stderr,
				        "kubefencectl scsi: --timeout-ms: '%s' is not 1..3600000\n",
				        optarg);
				return -EINVAL;
			}
			break;
		case 'I':
			errno = 0;
			a->inflight_ms = strtol(optarg, &end, 10);
			if (*end || errno || end == optarg || a->inflight_ms < 0 ||
			    a->inflight_ms > 60000) {
				fprintf(stderr,
				        "kubefencectl scsi: --inflight-ms: '%s' is not 0..60000\n",
				        optarg);
				return -EINVAL;
			}
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubefencectl scsi: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (a->n_luns == 0) {
		fprintf(stderr, "kubefencectl scsi %s: at least one --lun URL is needed\n", a->cmd);
		return -EINVAL;
	}
	for (size_t i = 0; i < a->n_luns; i++) {
		struct scsi_pr_url u;
		char err[256];
		if (scsi_pr_url_parse(a->luns[i], &u, err, sizeof(err)) < 0) {
			fprintf(stderr, "kubefencectl scsi %s: --lun: %s\n", a->cmd, err);
			return -EINVAL;
		}
	}
	return 0;
}

static void describe_key(uint64_t key, const struct args *a, char *buf, size_t len)
{
	int i = scsi_pr_key_to_node(key, a->nodes, a->n_nodes);

	if (i >= 0)
		snprintf(buf, len, "node '%s'", a->nodes[i]);
	else if (i == -EMEDIUMTYPE)
		snprintf(buf, len, "foreign key");
	else
		snprintf(buf, len, "kubefence key, node not in --nodes");
}

static int exit_for(int r)
{
	return r == -ETIMEDOUT ? 4 : 3;
}

static int cmd_keys(const struct args *a)
{
	char initiator[SCSI_PR_IQN_MAX];
	struct scsi_pr_full_status *fs = NULL;
	int rc = 0;

	if (a->initiator)
		(void)str_copy(initiator, sizeof(initiator), a->initiator);
	else
		(void)scsi_pr_iqn_for_node(a->prefix, a->node ? a->node : "kubefencectl", initiator,
		                           sizeof(initiator));
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return 3;
	usec_t deadline = clock_mono_usec() + a->timeout_ms * USEC_PER_MSEC;
	for (size_t i = 0; i < a->n_luns; i++) {
		struct scsi_pr_options so = {.ua_retries = 5};
		struct scsi_pr_url url;
		struct scsi_pr_keys keys;
		struct scsi_pr_reservation res;
		struct scsi_pr *h = NULL;
		char err[512], fserr[512], who[96], node[SCSI_PR_IQN_MAX];
		bool full;
		int r;

		(void)scsi_pr_url_parse(a->luns[i], &url, NULL, 0);
		printf("LUN %s\n", a->luns[i]);
		r = scsi_pr_open(&url, initiator, &so, deadline, &h, err, sizeof(err));
		if (r == 0)
			r = scsi_pr_read_keys(h, deadline, &keys, err, sizeof(err));
		if (r == 0)
			r = scsi_pr_read_reservation(h, deadline, &res, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "kubefencectl scsi keys: %s\n", err);
			rc = exit_for(r);
			h = scsi_pr_close(h);
			continue;
		}
		full = scsi_pr_read_full_status(h, deadline, fs, fserr, sizeof(fserr)) == 0;
		printf("  generation %u, %zu registration(s)\n", keys.generation, keys.total);
		if (!full)
			printf("  no initiator names: %s\n", fserr);
		for (size_t k = 0; k < keys.n; k++) {
			describe_key(keys.keys[k], a, who, sizeof(who));
			printf("  key 0x%016llx  %s\n", (unsigned long long)keys.keys[k], who);
		}
		for (size_t k = 0; full && k < fs->n; k++) {
			const struct scsi_pr_registrant *g = &fs->regs[k];
			bool named = scsi_pr_node_from_iqn(a->prefix, g->initiator, node,
			                                   sizeof(node)) == 0;
			printf("  nexus %s  key 0x%016llx%s%s%s%s\n", g->initiator,
			       (unsigned long long)g->key, named ? "  node '" : "",
			       named ? node : "", named ? "'" : "",
			       g->holder ? "  [reservation holder]" : "");
		}
		if (res.held) {
			describe_key(res.key, a, who, sizeof(who));
			printf("  reservation %s (type %d) by key 0x%016llx  %s\n",
			       scsi_pr_type_name(res.type), res.type, (unsigned long long)res.key,
			       res.key ? who : "(all registrants)");
		} else {
			printf("  no reservation\n");
		}
		h = scsi_pr_close(h);
	}
	free(fs);
	return rc;
}

/* probe: a WRITE of no block from a nexus that registers nothing. */
static int cmd_probe(const struct args *a)
{
	char initiator[SCSI_PR_IQN_MAX];
	int rc = 0;

	if (a->initiator)
		(void)str_copy(initiator, sizeof(initiator), a->initiator);
	else
		(void)scsi_pr_iqn_for_node(a->prefix, "kubefencectl-probe", initiator,
		                           sizeof(initiator));
	usec_t deadline = clock_mono_usec() + a->timeout_ms * USEC_PER_MSEC;
	for (size_t i = 0; i < a->n_luns; i++) {
		struct scsi_pr_options so = {.ua_retries = 5};
		struct scsi_pr_url url;
		struct scsi_pr *h = NULL;
		char err[512];
		int r;

		(void)scsi_pr_url_parse(a->luns[i], &url, NULL, 0);
		r = scsi_pr_open(&url, initiator, &so, deadline, &h, err, sizeof(err));
		if (r == 0) {
			/* a UNIT ATTENTION (a reset, a reservation change) is
			 * news of the past, not the answer: send again */
			for (int k = 0; k < 5; k++) {
				r = scsi_pr_write_probe(h, deadline, err, sizeof(err));
				if (r != -EAGAIN)
					break;
			}
		}
		if (r == 0) {
			printf("LUN %s: ACCEPTED a write from %s, which is not registered: no "
			       "reservation keeps other writers out\n",
			       a->luns[i], initiator);
			if (rc == 0)
				rc = 1;
		} else if (r == -EBADE) {
			printf("LUN %s: refused a write from %s (RESERVATION CONFLICT): a "
			       "reservation is held and enforced\n",
			       a->luns[i], initiator);
		} else {
			fprintf(stderr, "kubefencectl scsi probe: %s\n", err);
			rc = exit_for(r);
		}
		h = scsi_pr_close(h);
	}
	return rc;
}

static void print_report(const char *what, const char *subject, int r,
                         const struct fence_scsi_report *rep)
{
	for (size_t i = 0; i < rep->n; i++) {
		const struct fence_scsi_step *s = &rep->steps[i];
		printf("%s %s %s: %s in %.1f ms: %s\n", s->method, s->action, s->target,
		       s->result == 0 ? "OK" : strerror(-s->result),
		       (double)s->duration / USEC_PER_MSEC, s->detail);
	}
	if (r == 0)
		printf("%s of '%s': CONFIRMED on %zu/%zu LUN(s) in %.1f ms\n", what, subject,
		       rep->n, rep->n, (double)rep->duration / USEC_PER_MSEC);
	else
		fprintf(stderr, "kubefencectl scsi: %s of '%s' FAILED on %s: %s (%s)\n", what,
		        subject, rep->failed >= 0 ? rep->steps[rep->failed].target : "(no LUN)",
		        rep->failed >= 0 ? rep->steps[rep->failed].detail : "bad node name",
		        strerror(-r));
}

int ctl_scsi_main(int argc, char **argv)
{
	struct args a;
	struct fence_scsi_options o = {0};
	struct fence_scsi_report *rep = NULL;
	usec_t deadline;
	int r, rc;

	memset(&a, 0, sizeof(a));
	r = parse_args(argc, argv, &a);
	if (r != 0) {
		rc = r > 0 ? 0 : 2;
		goto finish;
	}
	o.iqn_prefix = a.prefix;
	o.initiator = a.initiator;
	o.inflight = (usec_t)a.inflight_ms * USEC_PER_MSEC;
	if (strcmp(a.cmd, "keys") == 0) {
		rc = cmd_keys(&a);
		goto finish;
	}
	if (strcmp(a.cmd, "probe") == 0) {
		rc = cmd_probe(&a);
		goto finish;
	}
	if (strcmp(a.cmd, "join") != 0 && strcmp(a.cmd, "fence") != 0) {
		fprintf(stderr, "kubefencectl scsi: unknown command '%s'\n", a.cmd);
		usage(stderr);
		rc = 2;
		goto finish;
	}
	if (!a.node || (strcmp(a.cmd, "fence") == 0 && !a.victim)) {
		fprintf(stderr, "kubefencectl scsi %s: --node%s is needed\n", a.cmd,
		        strcmp(a.cmd, "fence") == 0 ? " and --victim" : "");
		rc = 2;
		goto finish;
	}
	rep = calloc(1, sizeof(*rep));
	if (!rep) {
		rc = 3;
		goto finish;
	}
	deadline = clock_mono_usec() + a.timeout_ms * USEC_PER_MSEC;
	if (strcmp(a.cmd, "join") == 0) {
		r = fence_scsi_join(a.node, a.luns, a.n_luns, &o, deadline, rep);
		print_report("join", a.node, r, rep);
	} else {
		r = fence_scsi_fence(a.node, a.victim, a.luns, a.n_luns, &o, deadline, rep);
		print_report("fence", a.victim, r, rep);
	}
	rc = r == 0 ? 0 : r == -EINVAL && rep->failed < 0 ? 2 : exit_for(r);
finish:
	free(rep);
	free(a.nodes_buf);
	return rc;
}
