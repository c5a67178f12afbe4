/* fo: the end-to-end failover setup shared by tests/failover/check_failover.c
 * and bench/failover.c.
 *
 * Runs inside the real control plane of tests/harness/control-plane.sh (its
 * DIR/env in the environment) and next to the tgtd of tests/harness/tgtd.sh
 * (its tgt.env).  One "cluster" is a set of nodes (node-a, node-b, node-c);
 * per node: a Pod object created as admin (spec.nodeName, app=metaservice;
 * no kubelet runs, the object only carries labels), an agent conf and log,
 * a kubefence-agent process and a kubefence-metad process on its control
 * socket.  Every metad serves the same data directory (the DIRECTORY
 * backend, fenced by the store's epoch barrier); the agents fence with
 * scsi-pr on the harness LUN and pod-delete.
 *
 * Every process is started here as a child with PR_SET_PDEATHSIG and stopped
 * by PID by fo_cluster_stop().  Failures call fo_fail(), which each program
 * defines (the test: ck_abort_msg; the benchmark: print and exit).
 *
 * Every operation a client of this harness sends (the workload threads, the
 * tests' direct writes, the final read-back) goes through fo_op(), which
 * records it in the cluster's history (lib/history.h, CLUSTER_BASE/history);
 * fo_check_history() then judges that history with kf-lincheck.  Per node,
 * a fault-point control directory (NODE_DIR/fp) and extra environment for
 * the next start of its agent or metad arm fault points (lib/failpoint.h)
 * in that one process. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/history.h"
#include "tests/lib/kft_util.h"

struct k8s_client;

/* Defined by the program that links fo.c; must not return. */
void fo_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define FO_CHECK(cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fo_fail(__VA_ARGS__);                                                      \
	} while (0)

/* Timings of every agent (ms). */
#define FO_LEASE_MS   2000
#define FO_RENEW_MS   1500
#define FO_RETRY_MS   250
#define FO_REQUEST_MS 1000
#define FO_MARGIN_MS  250

#define FO_MAX_NODES 3
#define FO_MAX_ENV   4 /* extra environment entries per process */
#define FO_MAX_MIXED 4 /* mixed clients per workload */

/* Which process of a node. */
enum fo_proc { FO_AGENT, FO_METAD };

struct fo_node {
	char name[16]; /* node-a */
	char dir[480];
	char conf[600], agent_log[600], metad_log[600], sock[600];
	char pod[64], uid[64];
	char fp_dir[600];     /* fault-point control directory (created by init) */
	char kubeconfig[700]; /* the agent's kubeconfig when not the harness's */
	char extra_conf[512]; /* more lines of the agent's conf (fo_conf_extra) */
	/* "NAME=VALUE" entries added to (or replacing in) the environment of
	 * the next start of the agent [FO_AGENT] or metad [FO_METAD]; "" is
	 * unused.  Set with fo_setenv() / fo_arm(). */
	char env[2][FO_MAX_ENV][600];
	int port, http_port;
	pid_t agent_pid, metad_pid;
	usec_t metad_started;
	/* fo_proxy(): the agent reaches the API server through kf-faultproxy */
	pid_t proxy_pid;
	char proxy_rules[600], proxy_log[600];
};

struct fo_cluster {
	char tag[32]; /* names the lease, the pods and the directory */
	char base[400], data[480];
	char lease[64];
	size_t n;
	struct fo_node node[FO_MAX_NODES];
	struct k8s_client *admin;
	/* "" (default): every metad serves the directory `data`; else this
	 * iscsi:// LUN (--store, as its node), which is also the agents'
	 * fence.scsi_luns.  Set between fo_cluster_init() and the starts. */
	char store_lun[512];
	/* agent.api_outage = ride-through on store_lun: one writer at a time
	 * is the target's (PREEMPT) and the epoch cell's, not the Lease's, so
	 * an old master may acknowledge writes sent after a newer term began,
	 * until that term's master acknowledges its first (fo_check) */
	bool ride_through;
	/* the single-replica topology: fo_cluster_start() starts node 0's
	 * metad only; the others have none until the test starts one (the
	 * StatefulSet's replacement on that node) */
	bool one_metad;
	char history[480];        /* base/history */
	struct hist_writer *hist; /* open from init to stop; shared by every thread */
	uint64_t hist_errors;     /* records that could not be written */
	char hist_error[256];     /* the first of them */
};

/* Once per process: the ServiceAccount `default` and the agent's Role for
 * pods (get/list/patch/delete), events (create), and for service.endpoints
 * services (get), endpoints and endpointslices (get/create/patch), bound
 * to its ServiceAccount.  Existing objects are fine. */
void fo_prepare_rbac(void);

/* Node i's pod IP (status.podIP, set when the pod is created). */
void fo_pod_ip(const struct fo_cluster *c, size_t i, char *buf, size_t len);

/* Directories, pods, confs for n nodes; nothing started yet. */
void fo_cluster_init(struct fo_cluster *c, const char *tag, size_t n);
/* Stop every process (SIGKILL by PID, SIGCONT first), delete the pods,
 * free the admin client. */
void fo_cluster_stop(struct fo_cluster *c);

/* The metads' store becomes the harness target's second LUN (zeroed first,
 * so the first master initialises it); call between fo_cluster_init() and
 * the starts.  Fails when the target has no second LUN. */
void fo_use_store_lun(struct fo_cluster *c);

/* Lines appended to node i's agent conf (written at its next start; call
 * between fo_cluster_init() and fo_cluster_start()). */
void fo_conf_extra(struct fo_cluster *c, size_t i, const char *lines);

/* Failsafe mode (nodeagent/failsafe.h) on every node, failsafe.enabled =
 * `enabled`: a shared key in base/failsafe.key, a UDP port on loopback per
 * node, every agent's failsafe.peers naming all of them.  The lines are
 * added to each node's extra conf lines: call it after fo_conf_extra()
 * and before the agents start. */
void fo_use_failsafe(struct fo_cluster *c, bool enabled);

/* Add (or replace) NAME=VALUE in the environment of the next start of node
 * i's agent or metad; value NULL removes NAME.  Fails the test when more
 * than FO_MAX_ENV names are set. */
void fo_setenv(struct fo_cluster *c, size_t i, enum fo_proc p, const char *name, const char *value);
/* Arm fault points in that process from its start: KUBEFENCE_FAILPOINTS=spec
 * and KUBEFENCE_FAILPOINT_DIR=the node's fp_dir; spec NULL disarms (both
 * removed). */
void fo_arm(struct fo_cluster *c, size_t i, enum fo_proc p, const char *spec);
/* Re-arm the running processes of node i that were started with fo_arm():
 * writes spec to fp_dir/failpoints (atomically, by rename), which they
 * re-read at their next hit of any point. */
void fo_arm_running(struct fo_cluster *c, size_t i, const char *spec);
/* How many times point `name` fired on node i (lines of fp_dir/fired);
 * with ret_mono, the monotonic time of the first (0: none). */
int fo_fired(const struct fo_cluster *c, size_t i, const char *name, usec_t *ret_mono);

/* Put a kf-faultproxy (tests/proxy, $KF_FAULTPROXY) between node i's agent
 * and the API server, with an empty rules file node->proxy_rules: the agent's
 * conf is rewritten to a kubeconfig naming the proxy.  Call before the
 * agent starts; the proxy is stopped by fo_cluster_stop(). */
void fo_proxy(struct fo_cluster *c, size_t i);
/* Replace node i's proxy rules (docs/fault-proxy.md), atomically: the next
 * request is judged by them. */
void fo_proxy_rules(struct fo_cluster *c, size_t i, const char *rules);

void fo_agent_start(struct fo_cluster *c, size_t i);
void fo_metad_start(struct fo_cluster *c, size_t i);
/* As a StatefulSet would after a force delete: create node i's pod again
 * (same name, new uid) when it is gone.  Returns true when it did. */
bool fo_pod_recreate(struct fo_cluster *c, size_t i);
/* Signal a node's agent / metad; SIGKILL reaps. Returns the mono time of the
 * signal. */
usec_t fo_agent_signal(struct fo_cluster *c, size_t i, int sig);
usec_t fo_metad_signal(struct fo_cluster *c, size_t i, int sig);
/* Wait for the agent to exit; its wait status or -1 on timeout. */
int fo_agent_wait(struct fo_cluster *c, size_t i, long timeout_ms);

/* Start all agents, then node 0's metad; once it is master, the other
 * metads.  Returns with node 0 master and the others connected standby. */
void fo_cluster_start(struct fo_cluster *c);

/* STAT of a node's metad (timeout 300 ms): role ("master"/"standby"),
 * epoch.  Returns 0 or -errno. */
int fo_stat(const struct fo_cluster *c, size_t i, char *role, size_t rolelen, int64_t *epoch);
/* Poll until some metad reports role=master (other than `not`, -1 = any);
 * its index or -1 on timeout. */
int fo_wait_master(struct fo_cluster *c, int not, long timeout_ms);
/* Poll until metad i reports `role`; true when it did. */
bool fo_wait_role(struct fo_cluster *c, size_t i, const char *role, long timeout_ms);

/* ------------------------------------------------------------ client */

struct fo_conn {
	int fd;
	int port;
	uint8_t buf[8192];
	size_t len;
	/* fo_request: whether any byte of the last request may have reached
	 * the server (a lost connection after that is an unknown outcome) */
	bool sent;
};

enum fo_result {
	FO_OK = 1,
	FO_VALUE,
	FO_NOTFOUND,
	FO_NOTMASTER,
	FO_ERR,      /* ERR deadline / io / ... (text in resp) */
	FO_CONN = -1 /* connect/send/receive failed or timed out */
};

void fo_conn_init(struct fo_conn *cn, int port);
void fo_conn_close(struct fo_conn *cn);
/* One request; the value of GET into val (NUL-terminated, cut to vallen-1),
 * the ERR/NOTMASTER text too. */
enum fo_result fo_request(struct fo_conn *cn, int op /* enum proto_op */, const char *key,
                          const char *value, long timeout_ms, char *val, size_t vallen);

/* fo_request() of a PUT, GET or DEL by client `client` (a history token:
 * "c0", "hammer", "final"), recorded in c's history: invocation and
 * completion times, the value written (PUT) or read (GET answered VALUE),
 * the node name of cn's port as MASTER, and the result classified by
 * fo_classify().  key and value must be history tokens and a PUT's value
 * unique in the history.  Thread-safe for distinct cn. */
enum fo_result fo_op(struct fo_cluster *c, struct fo_conn *cn, const char *client, int op,
                     const char *key, const char *value, long timeout_ms, char *val, size_t vallen);

/* The history result (enum hist_result) of an answer r to op: for PUT/DEL,
 * what proto_write_outcome() says (made: ok, not made: fail, unknown: info;
 * PROTOCOL.md, "What a client may conclude"); a connection that failed
 * before any byte was sent is fail, after sending info.  For GET:
 * VALUE/NOTFOUND are ok, anything else fail.  text is the ERR text ("CODE
 * message"). */
enum hist_result fo_classify(int op, enum fo_result r, const char *text, bool sent);

/* ---------------------------------------------------------- workload */

struct fo_ack {
	uint64_t seq;
	char key[32];
	char value[64];
	int srv;
	bool probe;
	usec_t sent, acked;
};

/* A thread (client "c0") writing sequential keys "wNNNNNNNN" with values
 * "c0-N" unique in the history: it tries the last server
 * that acknowledged first and the next ones on NOTMASTER, ERR or
 * connection errors, and records each acknowledged write.  Every
 * `probe_every` acknowledged writes it also PUTs a probe key to each other
 * server; an OK there is recorded too (it must never overlap). */
/* With `mixed` > 0 (at most FO_MAX_MIXED), that many more client threads
 * ("c1", "c2", ...) run next to the writer ("c0"): PUTs and DELs of a few
 * registers shared by all of them (keys "rGEN-SLOT", GEN advancing every
 * 2 s so that each key's history stays short), GETs of those and of the
 * writer's last acknowledged keys, each thread following whichever metad
 * answered last.  Only the history judges them (fo_check_history). */
struct fo_workload {
	struct fo_cluster *c;
	pthread_t thread;
	int mixed;
	pthread_t mixed_thread[FO_MAX_MIXED];
	uint64_t mixed_ops, mixed_ok;
	volatile bool stop;
	int probe_every;
	long timeout_ms;
	long pause_us; /* between acknowledged writes */
	/* while set, no client writes: the writer ("c0") waits, the mixed
	 * clients only GET (a read-only load, a cache's metadata read path) */
	volatile bool reads_only;
	pthread_mutex_t mu;
	struct fo_ack *acks;
	size_t n_acks, cap;
	uint64_t attempts, refused, errors;
	int current;
	uint64_t next_seq, next_probe;
};

void fo_workload_start(struct fo_workload *w, struct fo_cluster *c);
void fo_workload_stop(struct fo_workload *w);
void fo_workload_free(struct fo_workload *w);
/* First ack from server srv (-1: any) acknowledged at or after t; its mono
 * ack time or 0.  last: the last ack from srv, 0 if none. */
usec_t fo_first_ack_after(struct fo_workload *w, int srv, usec_t t);
usec_t fo_last_ack(struct fo_workload *w, int srv);
size_t fo_acks_count(struct fo_workload *w, int srv, usec_t from);
/* Acks from srv to requests sent at or after t.  A signal is delivered
 * after kill() returns, and a response already written reaches the client
 * later still: "acknowledged after the kill" is only a fault when the
 * request itself was sent after it. */
size_t fo_acks_sent_after(struct fo_workload *w, int srv, usec_t t);
/* Prints srv's acks received at or after t, with sent/acked relative to t. */
void fo_acks_dump(struct fo_workload *w, int srv, usec_t t);
/* Wait until server srv acknowledged a write after t (0 on timeout). */
usec_t fo_wait_ack(struct fo_workload *w, int srv, usec_t t, long timeout_ms);

/* ----------------------------------------------------------- watcher */

/* Polls the pods labelled role=master (admin client, every interval) and
 * counts the observations with more than one. */
struct fo_watcher {
	struct fo_cluster *c;
	pthread_t thread;
	volatile bool stop;
	long interval_ms;
	pthread_mutex_t mu;
	uint64_t observations, failed_lists, violations;
	char violation[512];
	char last_master[64];
	usec_t last_change;
};

void fo_watcher_start(struct fo_watcher *wa, struct fo_cluster *c);
void fo_watcher_stop(struct fo_watcher *wa);

/* --------------------------------------------------------- checkers */

/* Terms from the agents' logs: each "event=leading" line (mono, epoch). */
struct fo_term {
	usec_t from;
	int64_t epoch;
	int node;
	bool continued; /* a later incarnation of that node's agent took the term over */
};
size_t fo_terms(const struct fo_cluster *c, struct fo_term *out, size_t max);

/* Every acknowledged write: its server led a term at that time (from the
 * agent logs), epochs never go back in ack order, one epoch has one server
 * (so two masters never acknowledged in overlapping periods), and each
 * acknowledged key reads back its acknowledged value on the master
 * `final`.  With c->ride_through, "a newer term began" is "a newer term's
 * master acknowledged a write".  On failure, fills why and returns false. */
bool fo_check(struct fo_cluster *c, struct fo_workload *w, int final, char *why, size_t whylen);

/* The verdict of kf-lincheck on a cluster's history. */
struct fo_verdict {
	bool judged; /* false: kf-lincheck missing (allowed outside CI) */
	int status;  /* its exit status: 0 linearizable, 1 violation, 2 bad input */
	long ops;    /* operations it read (-1: unknown) */
	long ok, fail, info, info_dropped; /* by result (its JSON; -1: unknown) */
	long final_reads;                  /* GETs recorded by the final read-back */
	char verdict[32];                  /* "linearizable", "violation", ... ("" unknown) */
	char output[600];                  /* path of its stdout+stderr */
};

/* The end of a scenario, after fo_check() (whose read-back of every
 * acknowledged key is recorded as client "final"): GET from the master
 * `final` every other key the history wrote (recorded too), then run
 * $KF_LINCHECK --json base/lincheck.json base/history.  Returns true when
 * the history is linearizable (or, outside CI=true, kf-lincheck is not
 * built: v->judged false, a warning printed); false with why otherwise (a
 * violation: kf-lincheck's output is printed to stderr; bad input; a
 * missing kf-lincheck under CI=true).  Blocks up to 5 minutes. */
bool fo_check_history(struct fo_cluster *c, int final, struct fo_verdict *v, char *why,
                      size_t whylen);

/* The end of a benchmark run: stop the workload and the watcher, wait up to
 * wait_ms for a master, then fo_check(), the watcher's count and
 * fo_check_history() into *v; any failure is fo_fail().  Returns the final
 * master's index. */
int fo_finish_checks(struct fo_cluster *c, struct fo_workload *w, struct fo_watcher *wa,
                     long wait_ms, struct fo_verdict *v);

/* The lines of a node's log that hold given words: kft_log_count()
 * (tests/lib/kft_util.h). */

/* kft_measured() into $KF_IT_DIR: append "what seconds" to
 * $KF_IT_DIR/measurements and print it. */
void fo_record(const char *what, double seconds);
/* Print a file to stderr (for failures). */
void fo_dump(const char *path);
