/* failover-proc: the failover benchmark with real processes.
 *
 * The setup of tests/failover (fo.h): a real kube-apiserver + etcd and tgtd
 * (started by bench/failover-proc.sh), two nodes each with a kubefence-agent
 * and a kubefence-metad, one shared data directory, a client writing
 * sequential keys to whichever metad acknowledges.  It kills the master
 * metad with SIGKILL N times (each killed one is restarted at once as a
 * kubelet would restart the container: same pod name and uid, so it comes
 * back as standby) and measures for each the time from the kill to the first
 * write acknowledged by the new master.  Also taken from the agents' logs:
 * kill -> the new agent leads (the old agent saw EOF and released), and
 * kill -> the new agent logged event=promoted (fenced, unlabelled,
 * recovered, labelled role=master; the first write may be acknowledged
 * before the label is set).
 *
 * Two more clients (fo.h: the mixed clients) put, delete and read shared
 * registers and read the writer's latest keys; every operation is recorded
 * in the run's history, and kf-lincheck judges it at the end.
 *
 * Prints the samples and writes JSON (--out), with the history's verdict.
 * Never asserts timing; it fails only when the setup breaks or the safety
 * checks fail: fo_check() (a lost acknowledged write, overlapping masters),
 * the watcher (two pods labelled role=master), or kf-lincheck (a history
 * that is not linearizable; a missing kf-lincheck only under CI=true). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/failover/fo.h"

/* mono= stamp of the first line of `path` containing `needle` after t. */
static usec_t first_after(const char *path, const char *needle, usec_t t)
{
	char line[4096];
	usec_t r = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *m = strstr(line, " mono=");
		long long s, us;
		usec_t at;
		if (!strstr(line, needle) || !m || sscanf(m, " mono=%lld.%lld", &s, &us) != 2)
			continue;
		at = (usec_t)s * USEC_PER_SEC + us;
		if (at > t) {
			r = at;
			break;
		}
	}
	fclose(f);
	return r;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* nearest rank */
static double pct(const double *sorted, size_t n, double q)
{
	size_t k = (size_t)(q * (double)n);

	if ((double)k < q * (double)n)
		k++;
	if (n == 0)
		return NAN;
	if (k < 1)
		k = 1;
	return sorted[k - 1];
}

static void print_stats(FILE *f, const char *name, const double *v, size_t n, bool last)
{
	double *s = malloc(n * sizeof(*s));
	double sum = 0;

	FO_CHECK(s, "ENOMEM");
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	fprintf(f,
	        "  \"%s\": {\"p50_s\": %.3f, \"p99_s\": %.3f, \"max_s\": %.3f, \"min_s\": %.3f, "
	        "\"mean_s\": %.3f}%s\n",
	        name, pct(s, n, 0.5), pct(s, n, 0.99), s[n - 1], s[0], sum / (double)n,
	        last ? "" : ",");
	free(s);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: failover-proc [-n KILLS] [--fault kill9|sigstop] [--out FILE]\n"
	           "  kill9    kill -9 of the master's metad (EOF on its control socket)\n"
	           "  sigstop  SIGSTOP of it: its socket stays open, only the liveness\n"
	           "           exchange (PING/PONG) finds it hung; its agent kills it\n"
	           "Run by bench/failover-proc.sh (make bench-failover), which starts the\n"
	           "control plane and tgtd.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"kills", required_argument, NULL, 'n'},
	        {"fault", required_argument, NULL, 'f'},
	        {"out", required_argument, NULL, 'o'},
	        {"help", no_argument, NULL, 'h'},
	        {0},
	};
	struct fo_cluster c;
	struct fo_workload w;
	struct fo_watcher wa;
	const char *out = NULL;
	int n = 25, opt, final;
	bool stop = false; /* --fault sigstop */
	double *samples, *lead, *promoted;
	struct fo_verdict v;
	struct utsname un;
	FILE *f;

	while ((opt = getopt_long(argc, argv, "n:f:o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			if (strcmp(optarg, "sigstop") == 0)
				stop = true;
			else if (strcmp(optarg, "kill9") != 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (n < 1 || n > 10000) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	samples = calloc((size_t)n, sizeof(double));
	lead = calloc((size_t)n, sizeof(double));
	promoted = calloc((size_t)n, sizeof(double));
	FO_CHECK(samples && lead && promoted, "ENOMEM");

	fo_prepare_rbac();
	fo_cluster_init(&c, "bench", 2);
	fo_watcher_start(&wa, &c);
	fo_cluster_start(&c);
	memset(&w, 0, sizeof(w));
	w.probe_every = 50;
	w.pause_us = 1000;
	w.mixed = 2;
	fo_workload_start(&w, &c);
	FO_CHECK(fo_wait_ack(&w, 0, 0, 5000), "no write acknowledged by node-a");

	for (int k = 0; k < n; k++) {
		int m = fo_wait_master(&c, -1, 10000), o;
		usec_t t_kill, t_ack, t_lead, t_prom, end;
		int conns;

		FO_CHECK(m >= 0, "no master before kill %d", k + 1);
		o = 1 - m;
		/* steady state: the master acknowledges, the other metad is
		 * connected to its agent as a candidate, a few renewals passed */
		FO_CHECK(fo_wait_ack(&w, m, clock_mono_usec(), 5000),
		         "master %s acknowledges nothing", c.node[m].name);
		usleep(1200 * 1000);

		t_kill = fo_metad_signal(&c, (size_t)m, stop ? SIGSTOP : SIGKILL);
		t_ack = fo_wait_ack(&w, o, t_kill, 15000);
		if (!t_ack) {
			fo_dump(c.node[m].agent_log);
			fo_dump(c.node[o].agent_log);
			fo_fail("kill %d: %s acknowledged nothing within 15 s", k + 1,
			        c.node[o].name);
		}
		samples[k] = (double)(t_ack - t_kill) / USEC_PER_SEC;
		if (stop) {
			/* its agent killed it: reap it (it must be dead by now) */
			pid_t pid = c.node[m].metad_pid;
			int st;
			usec_t dl = clock_mono_usec() + 10 * USEC_PER_SEC;

			while (waitpid(pid, &st, WNOHANG) != pid) {
				FO_CHECK(clock_mono_usec() < dl,
				         "kill %d: the stopped metad of %s was not killed by its "
				         "agent",
				         k + 1, c.node[m].name);
				usleep(5000);
			}
			c.node[m].metad_pid = 0;
			/* the full fence force-deleted its pod: the StatefulSet's
			 * replacement (same name, new uid) */
			(void)fo_pod_recreate(&c, (size_t)m);
		}

		/* restart the killed one: same pod, back as standby */
		conns = kft_log_count(c.node[m].agent_log, NULL, "service '", c.node[m].pod,
		                      "connected", NULL);
		fo_metad_start(&c, (size_t)m);
		end = clock_mono_usec() + 10 * USEC_PER_SEC;
		while (kft_log_count(c.node[m].agent_log, NULL, "service '", c.node[m].pod,
		                     "connected", NULL) <= conns) {
			FO_CHECK(clock_mono_usec() < end, "restarted metad %s did not reconnect",
			         c.node[m].name);
			usleep(10000);
		}
		FO_CHECK(fo_wait_role(&c, (size_t)m, "standby", 5000),
		         "restarted %s is not standby", c.node[m].name);

		/* the new agent's log lines of this failover (event=promoted
		 * comes after the label, which may follow the first ack) */
		t_lead = first_after(c.node[o].agent_log, "event=leading", t_kill);
		t_prom = first_after(c.node[o].agent_log, "event=promoted", t_kill);
		FO_CHECK(t_lead && t_prom, "kill %d: %s logged no event=leading/promoted", k + 1,
		         c.node[o].name);
		lead[k] = (double)(t_lead - t_kill) / USEC_PER_SEC;
		promoted[k] = (double)(t_prom - t_kill) / USEC_PER_SEC;
		printf("kill %2d: %s -> %s: new agent leads %+.3f s, first ack %+.3f s, "
		       "promoted+labelled %+.3f s\n",
		       k + 1, c.node[m].name, c.node[o].name, lead[k], samples[k], promoted[k]);
	}

	final = fo_finish_checks(&c, &w, &wa, 5000, &v);
	printf("checks: %zu acknowledged writes all readable on %s; watcher: %" PRIu64
	       " observations, none with two role=master pods; mixed clients: %" PRIu64
	       " ops; history: %s\n",
	       w.n_acks, c.node[final].name, wa.observations, w.mixed_ops,
	       v.judged ? v.verdict : "not judged (kf-lincheck not built)");

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && !out)
			break;
		f = pass == 0 ? stdout : fopen(out, "w");
		FO_CHECK(f, "%s: %s", out, strerror(errno));
		double *s = malloc((size_t)n * sizeof(double));
		FO_CHECK(s, "ENOMEM");
		memcpy(s, samples, (size_t)n * sizeof(double));
		qsort(s, (size_t)n, sizeof(double), cmp_double);
		uname(&un);
		fprintf(f, "{\n");
		fprintf(f, "  \"benchmark\": \"%s\",\n",
		        stop ? "failover-proc-sigstop" : "failover-proc");
		fprintf(f,
		        "  \"what\": \"%s of the master kubefence-metad -> first write "
		        "acknowledged by the new master (client-observed)\",\n",
		        stop ? "SIGSTOP (hung: PING unanswered for service.heartbeat_timeout_ms "
		               "1000, killed by its agent)"
		             : "kill -9");
		fprintf(f, "  \"n\": %d,\n", n);
		fprintf(f, "  \"p50_s\": %.3f,\n  \"p99_s\": %.3f,\n  \"max_s\": %.3f,\n",
		        pct(s, n, 0.5), pct(s, n, 0.99), s[n - 1]);
		fprintf(f, "  \"min_s\": %.3f,\n", s[0]);
		fprintf(f, "  \"samples\": [");
		for (int i = 0; i < n; i++)
			fprintf(f, "%s%.3f", i ? ", " : "", samples[i]);
		fprintf(f, "],\n");
		fprintf(f, "  \"phases\": {\n");
		print_stats(f, "kill_to_new_leader", lead, (size_t)n, false);
		print_stats(f, "kill_to_promoted_and_labelled", promoted, (size_t)n, true);
		fprintf(f, "  },\n");
		fprintf(f,
		        "  \"lease\": {\"duration_ms\": %d, \"renew_deadline_ms\": %d, "
		        "\"retry_ms\": "
		        "%d, \"request_timeout_ms\": %d, \"write_margin_ms\": %d},\n",
		        FO_LEASE_MS, FO_RENEW_MS, FO_RETRY_MS, FO_REQUEST_MS, FO_MARGIN_MS);
		fprintf(f, "  \"fence_methods\": \"scsi-pr, pod-delete (a released Lease runs "
		           "scsi-pr only)\",\n");
		fprintf(f, "  \"setup\": \"2 nodes as processes on one machine; kube-apiserver "
		           "v1.20 + etcd (--unsafe-no-fsync) on loopback with TLS and RBAC; tgtd "
		           "file-backed LUN; directory store on one shared data dir; client "
		           "pausing 1 ms between writes; 2 mixed clients (put/del/get of shared "
		           "registers, gets of the writer's keys) pausing 2 ms\",\n");
		fprintf(f,
		        "  \"checks\": {\"acknowledged_writes\": %zu, \"lost\": 0, "
		        "\"overlapping_masters\": 0, \"watcher_observations\": %" PRIu64
		        ", \"two_role_master_pods\": 0},\n",
		        w.n_acks, wa.observations);
		fprintf(f,
		        "  \"history\": {\"checker\": \"kf-lincheck\", \"judged\": %s, \"ops\": "
		        "%ld, "
		        "\"ok\": %ld, \"fail\": %ld, \"info\": %ld, \"info_unobservable\": %ld, "
		        "\"final_reads\": %ld, \"mixed_client_ops\": %" PRIu64
		        ", \"verdict\": \"%s\"},\n",
		        v.judged ? "true" : "false", v.ops, v.ok, v.fail, v.info, v.info_dropped,
		        v.final_reads, w.mixed_ops,
		        v.judged ? (v.verdict[0] ? v.verdict : "linearizable") : "not judged");
		fprintf(f, "  \"machine\": {\"nproc\": %ld, \"kernel\": \"%s %s\"}\n",
		        sysconf(_SC_NPROCESSORS_ONLN), un.sysname, un.release);
		fprintf(f, "}\n");
		free(s);
		if (pass == 1)
			fclose(f);
	}
	fo_workload_free(&w);
	fo_cluster_stop(&c);
	free(samples);
	free(lead);
	free(promoted);
	return 0;
}
