/* outage-proc: API server outages with real processes (make bench-outage).
 *
 * The setup of tests/failover (fo.h): a real kube-apiserver + etcd and tgtd
 * (started by bench/failover-proc.sh), two nodes each with a
 * kubefence-agent behind its own kf-faultproxy and a kubefence-metad whose
 * store is the harness's second LUN (--store iscsi://..., fenced by
 * scsi-pr on that LUN), a client writing sequential keys and two mixed
 * clients, every operation recorded in a history that kf-lincheck judges.
 *
 * Three outages, each --seconds long (default 60), one after the other on
 * one cluster:
 *   hang     every request of both agents held without an answer
 *   503      every request of both agents answered 503
 *   partial  only the leader's requests held (a partial partition)
 * For each: the longest gap between two writes any master acknowledged
 * during the outage and the 10 s after it, and how many terms began (a
 * failover is one).  --mode demote runs the same with agent.api_outage =
 * demote, the behaviour before ride-through, for comparison.  --mode
 * failsafe runs them on the DIRECTORY store (no SCSI-3 PR on the store, so
 * ride-through cannot apply) with both agents in failsafe mode
 * (failsafe.enabled, docs/failsafe.md): the leader rides on its peer's
 * promises.
 *
 * Prints the figures and writes JSON (--out).  Never asserts timing; fails
 * only when the setup breaks or the safety checks fail (fo_check, the
 * label watcher, kf-lincheck). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/failover/fo.h"

/* The longest gap between two acknowledged writes (any server) in
 * [from, to]. */
static usec_t longest_gap(struct fo_workload *w, usec_t from, usec_t to)
{
	usec_t last = from, worst = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t k = 0; k < w->n_acks; k++) {
		const struct fo_ack *a = &w->acks[k];

		if (a->probe || a->acked < from || a->acked > to)
			continue;
		if (a->acked - last > worst)
			worst = a->acked - last;
		last = a->acked;
	}
	pthread_mutex_unlock(&w->mu);
	if (to - last > worst)
		worst = to - last;
	return worst;
}

static int terms(struct fo_cluster *c)
{
	return kft_log_count(c->node[0].agent_log, NULL, "event=leading", NULL) +
	       kft_log_count(c->node[1].agent_log, NULL, "event=leading", NULL);
}

struct result {
	const char *name, *what;
	double gap_s;
	int failovers;
	size_t acks;
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"seconds", required_argument, NULL, 's'},
	        {"mode", required_argument, NULL, 'm'},
	        {"out", required_argument, NULL, 'o'},
	        {"help", no_argument, NULL, 'h'},
	        {0},
	};
	struct result res[3] = {
	        {.name = "hang", .what = "every API request of both agents held without an answer"},
	        {.name = "503", .what = "every API request of both agents answered 503"},
	        {.name = "partial",
	         .what = "only the leader's API requests held (a partial partition)"},
	};
	struct fo_cluster c;
	struct fo_workload w;
	struct fo_watcher wa;
	struct fo_verdict v;
	const char *out = NULL, *mode = "ride-through";
	char conf[128];
	int seconds = 60, opt;
	bool failsafe;
	FILE *f;

	while ((opt = getopt_long(argc, argv, "s:m:o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			seconds = atoi(optarg);
			break;
		case 'm':
			mode = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'h':
			printf("Usage: outage-proc [--seconds N] [--mode "
			       "ride-through|demote|failsafe] "
			       "[--out FILE]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (seconds < 1 || seconds > 3600 ||
	    (strcmp(mode, "ride-through") != 0 && strcmp(mode, "demote") != 0 &&
	     strcmp(mode, "failsafe") != 0)) {
		fprintf(stderr,
		        "outage-proc: --seconds 1..3600, --mode ride-through|demote|failsafe\n");
		return 2;
	}
	failsafe = strcmp(mode, "failsafe") == 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	fo_prepare_rbac();
	fo_cluster_init(&c, "outage", 2);
	if (!failsafe)
		fo_use_store_lun(&c);
	c.ride_through = strcmp(mode, "ride-through") == 0;
	snprintf(conf, sizeof(conf), "agent.api_outage = %s\n", failsafe ? "demote" : mode);
	for (size_t i = 0; i < 2; i++) {
		fo_conf_extra(&c, i, conf);
		fo_proxy(&c, i);
	}
	if (failsafe)
		fo_use_failsafe(&c, true);
	fo_watcher_start(&wa, &c);
	fo_cluster_start(&c);
	memset(&w, 0, sizeof(w));
	w.probe_every = 50;
	w.pause_us = 1000;
	w.mixed = 2;
	fo_workload_start(&w, &c);
	FO_CHECK(fo_wait_ack(&w, 0, 0, 5000), "no write acknowledged by node-a");

	for (int k = 0; k < 3; k++) {
		int m = fo_wait_master(&c, -1, 30000), before;
		usec_t t0, t1;

		FO_CHECK(m >= 0, "no master before the %s outage", res[k].name);
		FO_CHECK(fo_wait_ack(&w, m, clock_mono_usec(), 10000), "%s acknowledges nothing",
		         c.node[m].name);
		usleep(2000 * 1000);
		before = terms(&c);
		t0 = clock_mono_usec();
		if (k == 2) {
			fo_proxy_rules(&c, (size_t)m, "* . blackhole\n");
		} else {
			for (size_t i = 0; i < 2; i++)
				fo_proxy_rules(&c, i,
				               k == 0 ? "* . blackhole\n" : "* . status=503\n");
		}
		usleep((useconds_t)seconds * 1000 * 1000);
		for (size_t i = 0; i < 2; i++)
			fo_proxy_rules(&c, i, "");
		t1 = clock_mono_usec();
		usleep(10 * 1000 * 1000);
		res[k].gap_s = (double)longest_gap(&w, t0, clock_mono_usec()) / USEC_PER_SEC;
		/* a fence force-deleted a pod: as its StatefulSet would, create
		 * it again, and restart its MetaService as the new pod */
		for (size_t i = 0; i < 2; i++)
			if (fo_pod_recreate(&c, i)) {
				(void)fo_metad_signal(&c, i, SIGKILL);
				fo_metad_start(&c, i);
			}
		res[k].failovers = terms(&c) - before;
		res[k].acks = fo_acks_count(&w, -1, t0);
		printf("%-8s %s: %d s outage: longest write pause %.3f s, %d new term(s), %zu "
		       "writes acknowledged since it began\n",
		       res[k].name, mode, (int)((t1 - t0) / USEC_PER_SEC), res[k].gap_s,
		       res[k].failovers, res[k].acks);
	}

	(void)fo_finish_checks(&c, &w, &wa, 30000, &v);
	printf("checks: %zu acknowledged writes all readable; watcher: %" PRIu64
	       " observations, none with two role=master pods; history: %s (%ld ops)\n",
	       w.n_acks, wa.observations, v.judged ? v.verdict : "not judged", v.ops);

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && !out)
			break;
		f = pass == 0 ? stdout : fopen(out, "w");
		FO_CHECK(f, "%s: %s", out, strerror(errno));
		fprintf(f, "{\n  \"benchmark\": \"api-outage\",\n  \"mode\": \"%s\",\n", mode);
		fprintf(f, "  \"outage_s\": %d,\n  \"outages\": [\n", seconds);
		for (int k = 0; k < 3; k++)
			fprintf(f,
			        "    {\"name\": \"%s\", \"what\": \"%s\", "
			        "\"longest_write_pause_s\": "
			        "%.3f, \"new_terms\": %d, \"acks_since_start\": %zu}%s\n",
			        res[k].name, res[k].what, res[k].gap_s, res[k].failovers,
			        res[k].acks, k < 2 ? "," : "");
		fprintf(f, "  ],\n");
		fprintf(f,
		        "  \"lease\": {\"duration_ms\": %d, \"renew_deadline_ms\": %d, "
		        "\"retry_ms\": %d, \"request_timeout_ms\": %d},\n",
		        FO_LEASE_MS, FO_RENEW_MS, FO_RETRY_MS, FO_REQUEST_MS);
		fprintf(f,
		        "  \"setup\": \"2 nodes as processes on one machine; kube-apiserver "
		        "v1.20 + etcd on loopback behind one kf-faultproxy per agent; %s; a writer "
		        "pausing 1 ms and 2 mixed clients; pause measured over the outage and the "
		        "10 s after\",\n",
		        failsafe ? "the MetaServices on a shared directory (--data-dir, no SCSI-3 "
		                   "PR on the store), the agents in failsafe mode over UDP on "
		                   "loopback (failsafe.enabled); tgtd's LUN only for the scsi-pr "
		                   "fence"
		                 : "tgtd file-backed LUN as the MetaService's store (--store "
		                   "iscsi://) and the scsi-pr fence's LUN");
		fprintf(f,
		        "  \"checks\": {\"acknowledged_writes\": %zu, \"lost\": 0, "
		        "\"two_role_master_pods\": 0, \"history\": \"%s\", \"ops\": %ld}\n}\n",
		        w.n_acks, v.judged ? v.verdict : "not judged", v.ops);
		if (pass == 1)
			fclose(f);
	}
	fo_cluster_stop(&c);
	return 0;
}
