/* kubefence-metad: the reference MetaService.  A small key -> value service
 * over TCP (storage/metad/PROTOCOL.md) on top of the durable metastore, made
 * master or standby by the node's kubefence-agent through the control socket
 * (docs/control-protocol.md), or run as master on its own with
 * --standalone.  This file only parses the command line, wires the control
 * socket's hooks to the server's role functions and waits for a signal. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "storage/metad/control.h"
#include "storage/metad/server.h"
#include "storage/store.h"

struct args {
	const char *listen, *store, *data_dir, *control_socket, *pod_name, *pod_uid;
	const char *node, *iqn_prefix;
	bool standalone, standby_reads, format_unused;
	uint64_t epoch;
	int max_clients, idle_timeout_ms, standby_refresh_ms;
	long list_max;
	long long snapshot_records, snapshot_min_records;
	struct store_spec spec;
};

struct metad {
	struct server *server;
	struct metad_control *control; /* NULL in standalone mode */
};

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: kubefence-metad --store URL [--listen HOST:PORT]\n"
	        "                       (--control-socket PATH | --standalone --epoch N) "
	        "[options]\n"
	        "\n"
	        "The reference MetaService: a durable key/value service that the kubefence\n"
	        "agent makes master (PROMOTE) or standby through the control socket.\n"
	        "\n"
	        "  --store URL             where the metadata lives (required):\n"
	        "                            dir:PATH  a directory the replicas share, fenced\n"
	        "                                      by the epoch barrier and the write grant\n"
	        "                            iscsi://HOST[:PORT]/TARGET-IQN/LUN  a raw LUN,\n"
	        "                                      fenced by the target (SCSI-3 PR)\n"
	        "  --data-dir DIR          the same as --store dir:DIR\n"
	        "  --node NAME             iscsi: this node's name, which gives the initiator\n"
	        "                          IQN (PREFIX:NAME) and the reservation key, as the\n"
	        "                          agent's scsi-pr fence derives them (default:\n"
	        "                          $NODE_NAME)\n"
	        "  --iqn-prefix PREFIX     iscsi: as the agent's fence.scsi_iqn_prefix (default\n"
	        "                          iqn.2026-11.io.kubefence)\n"
	        "  --format-unused-lun     iscsi: initialise the LUN at the first promotion when\n"
	        "                          it holds no store and was never written (its first\n"
	        "                          4 MiB all zero); anything else is never overwritten\n"
	        "  --listen HOST:PORT      client address (default 0.0.0.0:7480)\n"
	        "  --control-socket PATH   the agent's control socket; start as standby\n"
	        "  --pod-name NAME         pod name for HELLO (default: $POD_NAME, else the host "
	        "name)\n"
	        "  --pod-uid UID           pod uid for HELLO (default: $POD_UID, else '-')\n"
	        "  --standalone            master without an agent and without a write deadline\n"
	        "  --epoch N               the fencing epoch of --standalone (N >= 1)\n"
	        "  --standby-reads         a standby answers GET/LIST from a read-only copy that\n"
	        "                          may be stale (default: NOTMASTER)\n"
	        "  --standby-refresh-ms MS how old that copy may get (default 1000)\n"
	        "  --max-clients N         concurrent connections (default 256)\n"
	        "  --idle-timeout-ms MS    a client must send each request and read each answer\n"
	        "                          within MS, or it is disconnected (default 60000)\n"
	        "  --list-max N            most keys per LIST (default 10000)\n"
	        "  --snapshot-records N    journal records between automatic snapshots\n"
	        "                          (default 1000000; a snapshot also follows 64 MiB)\n"
	        "  --snapshot-min-records N\n"
	        "                          a snapshot also follows once the journal holds as\n"
	        "                          many records as there are live keys and at least N\n"
	        "                          (default 4096): recovery reads at most about twice\n"
	        "                          the live state, plus N records\n"
	        "  --log-level LEVEL       error, warning, info (default) or debug\n"
	        "  -h, --help              this text\n");
}

static int parse_num(const char *opt, const char *v, long long min, long long max, long long *ret)
{
	char *end;
	long long x;

	errno = 0;
	x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < min || x > max) {
		fprintf(stderr, "kubefence-metad: %s: '%s' is not a number in [%lld, %lld]\n", opt,
		        v, min, max);
		return -EINVAL;
	}
	*ret = x;
	return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	enum {
		O_LISTEN = 256,
		O_DATA,
		O_STORE,
		O_NODE,
		O_IQNP,
		O_FMT,
		O_CONTROL,
		O_POD,
		O_UID,
		O_STANDALONE,
		O_EPOCH,
		O_SREADS,
		O_SREFRESH,
		O_MAXCL,
		O_IDLE,
		O_LISTMAX,
		O_SNAPREC,
		O_SNAPMIN,
		O_LOG,
	};
	static const struct option opts[] = {
	        {"listen", required_argument, NULL, O_LISTEN},
	        {"data-dir", required_argument, NULL, O_DATA},
	        {"store", required_argument, NULL, O_STORE},
	        {"node", required_argument, NULL, O_NODE},
	        {"iqn-prefix", required_argument, NULL, O_IQNP},
	        {"format-unused-lun", no_argument, NULL, O_FMT},
	        {"control-socket", required_argument, NULL, O_CONTROL},
	        {"pod-name", required_argument, NULL, O_POD},
	        {"pod-uid", required_argument, NULL, O_UID},
	        {"standalone", no_argument, NULL, O_STANDALONE},
	        {"epoch", required_argument, NULL, O_EPOCH},
	        {"standby-reads", no_argument, NULL, O_SREADS},
	        {"standby-refresh-ms", required_argument, NULL, O_SREFRESH},
	        {"max-clients", required_argument, NULL, O_MAXCL},
	        {"idle-timeout-ms", required_argument, NULL, O_IDLE},
	        {"list-max", required_argument, NULL, O_LISTMAX},
	        {"snapshot-records", required_argument, NULL, O_SNAPREC},
	        {"snapshot-min-records", required_argument, NULL, O_SNAPMIN},
	        {"log-level", required_argument, NULL, O_LOG},
	        {"help", no_argument, NULL, 'h'},
	        {0},
	};
	long long x;
	int c, lvl;

	memset(a, 0, sizeof(*a));
	a->listen = "0.0.0.0:7480";
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
			a->listen = optarg;
			break;
		case O_DATA:
			a->data_dir = optarg;
			break;
		case O_STORE:
			a->store = optarg;
			break;
		case O_NODE:
			a->node = optarg;
			break;
		case O_IQNP:
			a->iqn_prefix = optarg;
			break;
		case O_FMT:
			a->format_unused = true;
			break;
		case O_CONTROL:
			a->control_socket = optarg;
			break;
		case O_POD:
			a->pod_name = optarg;
			break;
		case O_UID:
			a->pod_uid = optarg;
			break;
		case O_STANDALONE:
			a->standalone = true;
			break;
		case O_EPOCH:
			if (parse_num("--epoch", optarg, 1, LLONG_MAX, &x) < 0)
				return -EINVAL;
			a->epoch = (uint64_t)x;
			break;
		case O_SREADS:
			a->standby_reads = true;
			break;
		case O_SREFRESH:
			if (parse_num("--standby-refresh-ms", optarg, 1, 3600000, &x) < 0)
				return -EINVAL;
			a->standby_refresh_ms = (int)x;
			break;
		case O_MAXCL:
			if (parse_num("--max-clients", optarg, 1, 100000, &x) < 0)
				return -EINVAL;
			a->max_clients = (int)x;
			break;
		case O_IDLE:
			if (parse_num("--idle-timeout-ms", optarg, 10, 86400000, &x) < 0)
				return -EINVAL;
			a->idle_timeout_ms = (int)x;
			break;
		case O_LISTMAX:
			if (parse_num("--list-max", optarg, 1, 100000, &x) < 0)
				return -EINVAL;
			a->list_max = (long)x;
			break;
		case O_SNAPREC:
			if (parse_num("--snapshot-records", optarg, 1, 1000000000LL, &x) < 0)
				return -EINVAL;
			a->snapshot_records = x;
			break;
		case O_SNAPMIN:
			if (parse_num("--snapshot-min-records", optarg, 1, 1000000000LL, &x) < 0)
				return -EINVAL;
			a->snapshot_min_records = x;
			break;
		case O_LOG:
			lvl = log_level_from_string(optarg);
			if (lvl < 0) {
				fprintf(stderr,
				        "kubefence-metad: --log-level: '%s' is not error, warning, "
				        "info or debug\n",
				        optarg);
				return -EINVAL;
			}
			log_max_level = lvl;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubefence-metad: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!a->data_dir == !a->store) {
		fprintf(stderr, "kubefence-metad: give exactly one of --store and --data-dir\n");
		return -EINVAL;
	}
	{
		char text[PATH_MAX + 8], err[512];

		if (a->data_dir && a->data_dir[0] != '/') {
			fprintf(stderr,
			        "kubefence-metad: --data-dir: '%s' is not an absolute path\n",
			        a->data_dir);
			return -EINVAL;
		}
		snprintf(text, sizeof(text), "%s%s", a->data_dir ? "dir:" : "",
		         a->data_dir ? a->data_dir : a->store);
		if (!a->node)
			a->node = getenv("NODE_NAME");
		if (store_spec_parse(text, a->node, a->iqn_prefix, &a->spec, err, sizeof(err)) <
		    0) {
			fprintf(stderr, "kubefence-metad: --store: %s\n", err);
			return -EINVAL;
		}
		if (a->spec.kind != STORE_LUN && (a->format_unused || a->iqn_prefix)) {
			fprintf(stderr, "kubefence-metad: --format-unused-lun and --iqn-prefix are "
			                "for an iscsi:// store\n");
			return -EINVAL;
		}
		a->spec.format_unused = a->format_unused;
		a->spec.join_empty = a->standalone;
	}
	if (a->standalone == !!a->control_socket) {
		fprintf(stderr,
		        "kubefence-metad: give exactly one of --control-socket and --standalone\n");
		return -EINVAL;
	}
	if (a->standalone && a->epoch == 0) {
		fprintf(stderr, "kubefence-metad: --standalone needs --epoch N\n");
		return -EINVAL;
	}
	if (!a->standalone && a->epoch) {
		fprintf(stderr, "kubefence-metad: --epoch is for --standalone only (the agent "
		                "gives the epoch)\n");
		return -EINVAL;
	}
	return 0;
}

/* ---------------------------------------------------------- control hooks */

static int hook_promote(void *u, uint64_t epoch, usec_t deadline, struct metad_control_ready *ret,
                        char *reason, size_t reasonlen)
{
	struct metad *d = u;

	return server_promote(d->server, epoch, deadline, &ret->records, &ret->last_seq,
	                      &ret->recovery_ms, reason, reasonlen);
}

static void hook_renew(void *u, uint64_t epoch, usec_t deadline)
{
	struct metad *d = u;

	server_renew(d->server, epoch, deadline);
}

static void hook_demote(void *u, uint64_t epoch, const char *reason)
{
	struct metad *d = u;

	(void)server_demote(d->server, epoch, reason);
}

static void hook_master(void *u, uint64_t epoch, const char *pod, const char *addr)
{
	struct metad *d = u;

	server_set_master(d->server, epoch, pod, addr);
}

static void hook_connected(void *u)
{
	struct metad *d = u;

	/* a new connection starts as standby, whatever happened before */
	(void)server_demote(d->server, 0, "new connection to the agent");
}

/* The server stepped down by itself: tell the agent, which then knows that
 * this pod no longer serves its term. */
static void on_self_demote(void *u, uint64_t epoch, const char *reason)
{
	struct metad *d = u;
	/* set by main once the control thread runs, which may promote first */
	struct metad_control *c = __atomic_load_n(&d->control, __ATOMIC_ACQUIRE);

	if (!c)
		return;
	(void)metad_control_send_failed(c, epoch, reason);
	(void)metad_control_send_standby(c);
}

int main(int argc, char **argv)
{
	struct args a;
	struct metad d = {0};
	struct server_options so;
	char err[1024] = "", host[256], desc[SCSI_PR_URL_MAX + SCSI_PR_IQN_MAX + 32];
	sigset_t set;
	int r, sig = 0, ret = 1;

	log_set_ident("kubefence-metad");
	{
		char fperr[512];

		if (failpoint_setup(fperr, sizeof(fperr)) < 0) {
			fprintf(stderr, "kubefence-metad: fault points: %s\n", fperr);
			return 2;
		}
	}
	if (parse_args(argc, argv, &a) < 0) {
		usage(stderr);
		return 2;
	}
	/* threads inherit the mask: only sigwait() below sees these */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	so = (struct server_options){
	        .listen = a.listen,
	        .store = &a.spec,
	        .standby_reads = a.standby_reads,
	        .standby_refresh_ms = a.standby_refresh_ms,
	        .max_clients = a.max_clients,
	        .idle_timeout_ms = a.idle_timeout_ms,
	        .list_max = (uint32_t)a.list_max,
	        .snapshot_records = (uint64_t)a.snapshot_records,
	        .snapshot_min_records = (uint64_t)a.snapshot_min_records,
	        .on_self_demote = on_self_demote,
	        .userdata = &d,
	};
	r = server_new(&so, &d.server, err, sizeof(err));
	if (r < 0) {
		log_error("%s; exiting", err);
		goto out;
	}
	if (a.standalone) {
		r = server_promote(d.server, a.epoch, USEC_INFINITY, NULL, NULL, NULL, err,
		                   sizeof(err));
		if (r < 0)
			goto out; /* logged by server_promote */
	}
	r = server_start(d.server);
	if (r < 0) {
		log_error("cannot start the accept thread: %s; exiting", strerror(-r));
		goto out;
	}
	log_info("listening on %s (%s, %s%s)", server_address(d.server),
	         store_spec_describe(&a.spec, desc, sizeof(desc)),
	         a.standalone ? "standalone master" : "standby until promoted",
	         a.standby_reads ? ", standby reads" : "");
	if (a.control_socket) {
		struct metad_control_options co = {.path = a.control_socket};
		struct metad_control_hooks h = {
		        .userdata = &d,
		        .promote = hook_promote,
		        .renew = hook_renew,
		        .demote = hook_demote,
		        .master = hook_master,
		        .connected = hook_connected,
		};
		struct metad_control *c = NULL;

		co.pod_name = a.pod_name ? a.pod_name : getenv("POD_NAME");
		if (!co.pod_name || !*co.pod_name) {
			if (gethostname(host, sizeof(host)) < 0)
				str_copy(host, sizeof(host), "-");
			host[sizeof(host) - 1] = '\0';
			co.pod_name = host;
		}
		co.pod_uid = a.pod_uid ? a.pod_uid : getenv("POD_UID");
		if (store_spec_target_fenced(&a.spec)) {
			co.store = a.spec.url;
			co.store_node = a.spec.node;
		}
		r = metad_control_start(&co, &h, &c);
		__atomic_store_n(&d.control, c, __ATOMIC_RELEASE);
		if (r < 0) {
			log_error("cannot start the control thread: %s; exiting", strerror(-r));
			goto out;
		}
	}
	if (sigwait(&set, &sig) == 0)
		log_info("signal %s: shutting down", strsignal(sig));
	ret = 0;
out:
	/* The agent takes EOF on the control socket for this service's death
	 * (and may let the next master skip the pod fence), so serving stops
	 * first: by the time the control connection closes, nothing is
	 * acknowledged any more.  The server's threads may report through
	 * d.control meanwhile, and the control thread calls into the server:
	 * both are freed only after the control thread stopped. */
	(void)server_stop(d.server);
	(void)FAILPOINT(METAD_SHUTDOWN_BETWEEN);
	metad_control_stop(d.control);
	d.server = server_free(d.server);
	d.control = metad_control_free(d.control);
	return ret;
}
