/* kf-labclient: the MetaService client of the lab's end-to-end tests, demo,
 * benchmark and nemesis campaign (tests/e2e/e2e.test, lab/demo-lab.sh,
 * bench/failover-lab.sh, bench/nemesis.sh).
 *
 * Through the Service, two ways (--via):
 *   clusterip (the default)  connect to the Service's ClusterIP and port
 *            (read once from the Service object), as any client of a real
 *            cluster does: the lab's kube-proxy (iptables mode; the host
 *            routes the Service range through the lab's gateway) sends the
 *            connection to a ready endpoint.  On a connection error,
 *            NOTMASTER or ERR it reconnects to the same ClusterIP and
 *            retries, until its time-out.  The address it records is the
 *            ClusterIP's (which pod answered is kube-proxy's business).
 *   endpoints  what kube-proxy itself follows: read the Endpoints object of
 *            the Service (written by the promoting agent: service.endpoints)
 *            from the API server and connect to the address found there; on an
 *            error read the Endpoints again and retry.  It records the pod's
 *            address.  Comparing the two shows what kube-proxy adds.
 *
 *   kf-labclient [OPTIONS] put KEY VALUE      one acknowledged PUT; prints "ok ADDR"
 *   kf-labclient [OPTIONS] get KEY [VALUE]    prints the value; exit 1 when it differs
 *                                             from VALUE or is missing
 *   kf-labclient [OPTIONS] session            lines on stdin: "put K V", "get K [V]",
 *                                             "del K", "quit"; one answer line each
 *                                             ("ok ..." or "fail ..."), one connection
 *                                             kept across
 *   kf-labclient [OPTIONS] workload FILE      writes until SIGTERM, with --read-pct % GETs
 *                                             (and --del-pct % DELs) mixed in: keys
 *                                             PREFIXNNNNNNNN, one per write, or with
 *                                             --keys N the N keys PREFIXkNNNN overwritten
 *                                             again and again; values unique per write.
 *                                             Each acknowledged write is appended to FILE:
 *                                             "seq sent_us acked_us addr key value"; a
 *                                             summary on stdout
 *   kf-labclient [OPTIONS] check FILE...      GETs every key of the workload FILEs from
 *                                             the master: each must hold its last
 *                                             acknowledged value (by acked_us)
 *   kf-labclient [OPTIONS] pinned ADDR [FILE] a client that, like a node-local service,
 *                                             keeps one connection to the master it knows
 *                                             (ADDR, then the address a NOTMASTER names)
 *                                             and never asks the API: the same mix of
 *                                             operations as the workload, until SIGTERM;
 *                                             each operation is tried once (reconnecting
 *                                             to the same address after a lost connection;
 *                                             after 3 s of refusals it asks the Service's
 *                                             Endpoints once, when it has a kubeconfig)
 *   kf-labclient [OPTIONS] direct ADDR put|get|stat KEY [VALUE]
 *                                             one request to ADDR (HOST:PORT), no Endpoints;
 *                                             prints the answer (OK, VALUE v, NOTMASTER ...,
 *                                             ERR ..., CONN) and exits 0 only on OK/VALUE
 *   kf-labclient [OPTIONS] watch FILE         every --interval-ms: the pods labelled
 *                                             role=master and the Service's Endpoints; each
 *                                             change is appended to FILE ("realtime_us
 *                                             pods=a,b eps=ip,ip"); until SIGTERM, then
 *                                             "observations N violations N failed N
 *                                             two_endpoints N" on stdout; exit 1 when some
 *                                             observation saw two pods labelled role=master
 *                                             or two addresses in the Endpoints (which the
 *                                             agents write: service.endpoints), each also
 *                                             logged as VIOLATION or TWO-ENDPOINTS
 *   kf-labclient clockjump SECONDS HOLD_MS    step CLOCK_REALTIME by SECONDS (+/-), hold
 *                                             HOLD_MS, then set it back to what it would
 *                                             have been (measured on CLOCK_MONOTONIC), also
 *                                             on SIGTERM; root only
 *
 * Histories (--history FILE, --client ID; lib/history.h, docs/history.md):
 * session, workload, check, pinned, put and get append one record per
 * operation, whatever came of it.  The workload and pinned modes record
 * every try as an operation of its own (a retried PUT writes a new value,
 * suffixed ".rN"); in the other modes an operation spans all its tries
 * (invocation at the first, completion at the last), and a put or del is
 * "ok" only when its last try is done and no earlier try may have written
 * (a request given up on can still arrive later), "info" when some try may
 * have written, else "fail".  Per try:
 *
 *   OK, NOTFOUND (del)                         done
 *   ERR badrequest|toolarge|busy|unavailable|
 *       deadline|io                            certainly not done
 *   a connection that failed before sending    certainly not done
 *   ERR indeterminate, other ERR codes        indeterminate (PROTOCOL.md)
 *   NOTMASTER                                  certainly not done (a write whose outcome
 *                                              is unknown is answered ERR indeterminate)
 *   a time-out, a connection lost after the    indeterminate
 *   request was (partly) sent
 *
 * A get is ok with the value read (VALUE, or NOTFOUND as "-"), else fail.
 * MASTER is the address the (last) try was sent to.  Times are
 * CLOCK_REALTIME as it was when the process started, advanced on
 * CLOCK_MONOTONIC: a wall-clock step during a run (the nemesis' clock
 * jumps) does not reorder the records of processes started before it.
 *
 * Options: --kubeconfig FILE (default $KUBECONFIG), --namespace NS
 * (kubefence), --service NAME (metaservice), --timeout-ms N (overall, 30000),
 * --request-ms N (one try, 1000), --pause-us N (workload, pinned: between
 * operations, 2000), --retry-us N (between the tries of an operation
 * through the Service, 5000), --prefix P (workload keys, "w"), --keys N (0: a new key
 * per write), --read-pct N (workload, pinned: 20), --del-pct N (0), --seed N,
 * --history FILE, --client ID (default "labclient-PID"), --interval-ms N
 * (watch, 50), --selector S (watch, "role=master"), --via clusterip|endpoints
 * (how requests through the Service find the master, above; clusterip).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lib/clock.h"
#include "lib/history.h"
#include "lib/k8s.h"
#include "lib/util.h"
#include "storage/metad/proto.h"
#include "tests/lib/kft_wire.h"

static const char *opt_kubeconfig, *opt_ns = "kubefence", *opt_svc = "metaservice";
static bool opt_via_endpoints;
static const char *opt_prefix = "w", *opt_selector = "role=master";
static const char *opt_history, *opt_client;
static long opt_timeout_ms = 30000, opt_pause_us = 2000, opt_interval_ms = 50;
static long opt_request_ms = 1000, opt_keys = 0, opt_read_pct = 20, opt_del_pct = 0;
static long opt_retry_us = 5000;
static unsigned long opt_seed;
static volatile sig_atomic_t stopping;
static struct k8s_client *api;
static struct hist_writer *hw;
static char client_id[128];
static usec_t real_base, mono_base;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static usec_t now_mono(void)
{
	return clock_mono_usec();
}

/* CLOCK_REALTIME of the start, advanced on the monotonic clock: immune to
 * wall-clock steps while the process runs (see the file's comment). */
static usec_t now_real(void)
{
	return real_base + (now_mono() - mono_base);
}

/* ---------------------------------------------------------------- API */

static void api_open(void)
{
	char err[512];
	const char *kc = opt_kubeconfig ? opt_kubeconfig : getenv("KUBECONFIG");
	int r;

	if (!kc || !*kc) {
		fprintf(stderr, "kf-labclient: no kubeconfig (--kubeconfig or KUBECONFIG)\n");
		exit(2);
	}
	r = k8s_client_new(kc, NULL, &api, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kf-labclient: %s: %s\n", kc, err);
		exit(2);
	}
}

/* The Endpoints' ready addresses "ip:port" (comma-separated) into buf;
 * the number of addresses, or -errno. */
static int endpoints(char *buf, size_t len)
{
	char path[256], err[512];
	cJSON *o = NULL, *subsets, *s;
	int n = 0;
	size_t used = 0;
	int r;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/endpoints/%s", opt_ns, opt_svc);
	r = k8s_get(api, path, 2000, &o, err, sizeof(err));
	if (r < 0)
		return r;
	subsets = cJSON_GetObjectItemCaseSensitive(o, "subsets");
	cJSON_ArrayForEach(s, subsets)
	{
		cJSON *addrs = cJSON_GetObjectItemCaseSensitive(s, "addresses");
		cJSON *ports = cJSON_GetObjectItemCaseSensitive(s, "ports");
		cJSON *p0 = cJSON_GetArrayItem(ports, 0);
		cJSON *port = p0 ? cJSON_GetObjectItemCaseSensitive(p0, "port") : NULL;
		cJSON *a;

		if (!cJSON_IsNumber(port))
			continue;
		cJSON_ArrayForEach(a, addrs)
		{
			cJSON *ip = cJSON_GetObjectItemCaseSensitive(a, "ip");
			if (!cJSON_IsString(ip))
				continue;
			r = snprintf(buf + used, len - used, "%s%s:%d", n ? "," : "",
			             ip->valuestring, port->valueint);
			if (r > 0 && (size_t)r < len - used)
				used += (size_t)r;
			n++;
		}
	}
	cJSON_Delete(o);
	return n;
}

/* The Service's ClusterIP and first port "ip:port" into buf (read once: a
 * ClusterIP never changes); 0, or -errno (-ENOENT: the Service has none). */
static int service_addr(char *buf, size_t len)
{
	static char cached[64];
	char path[256], err[512];
	cJSON *o = NULL, *spec, *ip, *ports, *port;
	int r;

	if (cached[0]) {
		snprintf(buf, len, "%s", cached);
		return 0;
	}
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/services/%s", opt_ns, opt_svc);
	r = k8s_get(api, path, 2000, &o, err, sizeof(err));
	if (r < 0)
		return r;
	spec = cJSON_GetObjectItemCaseSensitive(o, "spec");
	ip = cJSON_GetObjectItemCaseSensitive(spec, "clusterIP");
	ports = cJSON_GetObjectItemCaseSensitive(spec, "ports");
	port = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ports, 0), "port");
	r = -ENOENT;
	if (cJSON_IsString(ip) && strcmp(ip->valuestring, "None") != 0 && ip->valuestring[0] &&
	    cJSON_IsNumber(port)) {
		snprintf(cached, sizeof(cached), "%s:%d", ip->valuestring, port->valueint);
		snprintf(buf, len, "%s", cached);
		r = 0;
	}
	cJSON_Delete(o);
	return r;
}

/* ---------------------------------------------------------------- history */

static void hist_start(void)
{
	int r;

	if (!opt_client) {
		snprintf(client_id, sizeof(client_id), "labclient-%lu", (unsigned long)getpid());
		opt_client = client_id;
	}
	if (!opt_history)
		return;
	r = hist_open(opt_history, &hw);
	if (r < 0) {
		fprintf(stderr, "kf-labclient: %s: %s\n", opt_history, strerror(-r));
		exit(2);
	}
}

static void record(enum hist_op op, const char *key, const char *value, usec_t invoke,
                   usec_t complete, enum hist_result res, const char *master)
{
	int r;

	if (!hw)
		return;
	r = hist_record(hw, opt_client, op, key, value && *value ? value : NULL, (uint64_t)invoke,
	                (uint64_t)complete, res, master && *master ? master : NULL);
	if (r < 0)
		fprintf(stderr, "kf-labclient: history %s: %s %s: %s\n", opt_history,
		        hist_op_name(op), key, strerror(-r));
}

/* ---------------------------------------------------------------- conn */

struct conn {
	int fd;
	char addr[64];
	uint8_t buf[PROTO_VALUE_MAX + 512];
	size_t len;
};

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static int conn_open(struct conn *c, const char *addr, usec_t deadline)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(addr, ':');
	int r;

	conn_close(c);
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	r = tcp_connect((struct sockaddr *)&sa, sizeof(sa), deadline, &c->fd);
	if (r < 0) {
		c->fd = -1;
		return r;
	}
	return 0;
}

enum res { RS_OK = 1, RS_VALUE, RS_NOTFOUND, RS_NOTMASTER, RS_ERR, RS_CONN = -1 };

static const char *res_name(int r)
{
	switch (r) {
	case RS_OK:
		return "OK";
	case RS_VALUE:
		return "VALUE";
	case RS_NOTFOUND:
		return "NOTFOUND";
	case RS_NOTMASTER:
		return "NOTMASTER";
	case RS_ERR:
		return "ERR";
	default:
		return "CONN";
	}
}

/* One request on an open connection; text gets the value / message.  *sent
 * is set once any byte of the request may have reached the server. */
static int request(struct conn *c, enum proto_op op, const char *key, const char *value,
                   long timeout_ms, char *text, size_t textlen, bool *sent)
{
	usec_t deadline = now_mono() + timeout_ms * USEC_PER_MSEC;
	struct pbuf out = {0};
	struct proto_resp resp;
	int r, res;

	text[0] = '\0';
	if (sent)
		*sent = false;
	if (proto_encode_request(&out, op, key, key ? strlen(key) : 0, value,
	                         value ? strlen(value) : 0, 0) < 0) {
		pbuf_free(&out);
		return RS_CONN;
	}
	/* A send that fails may have put part of the request on the wire. */
	if (sent)
		*sent = true;
	if (fd_send_all(c->fd, out.data, out.len, deadline) < 0) {
		pbuf_free(&out);
		conn_close(c);
		return RS_CONN;
	}
	pbuf_free(&out);
	r = kft_wire_read_unit(c->fd, c->buf, sizeof(c->buf), &c->len, deadline, &resp);
	if (r < 0) {
		conn_close(c);
		return RS_CONN;
	}
	switch (resp.kind) {
	case PROTO_R_OK:
		res = RS_OK;
		break;
	case PROTO_R_VALUE:
	case PROTO_R_STATS:
		res = RS_VALUE;
		snprintf(text, textlen, "%.*s", (int)resp.len, (const char *)resp.data);
		break;
	case PROTO_R_NOTFOUND:
		res = RS_NOTFOUND;
		break;
	case PROTO_R_NOTMASTER:
		res = RS_NOTMASTER;
		snprintf(text, textlen, "%s", resp.text);
		break;
	case PROTO_R_ERR:
		res = RS_ERR;
		snprintf(text, textlen, "%s", resp.text);
		break;
	default:
		res = RS_CONN;
		break;
	}
	kft_wire_consume(c->buf, &c->len, (size_t)r);
	if (res == RS_CONN)
		conn_close(c);
	return res;
}

/* Whether a try of a put/del answered r (text: ERR's "code message") may
 * have written; sent: whether the request went out at all.  As PROTOCOL.md
 * says (proto_write_outcome): NOTMASTER, ERR deadline/io/... are "not made",
 * ERR indeterminate and an unanswered request after sending are unknown. */
static bool write_indeterminate(int r, const char *text, bool sent)
{
	enum proto_resp_kind kind;

	switch (r) {
	case RS_OK:
		kind = PROTO_R_OK;
		break;
	case RS_NOTFOUND:
		kind = PROTO_R_NOTFOUND;
		break;
	case RS_NOTMASTER:
		kind = PROTO_R_NOTMASTER;
		break;
	case RS_ERR:
		kind = PROTO_R_ERR;
		break;
	default:
		kind = PROTO_R_NONE;
		break;
	}
	return proto_write_outcome(kind, text, sent) == PROTO_UNKNOWN;
}

static bool is_write(enum proto_op op)
{
	return op == PROTO_OP_PUT || op == PROTO_OP_DEL;
}

static enum hist_op hist_op_of(enum proto_op op)
{
	return op == PROTO_OP_PUT ? HIST_PUT : op == PROTO_OP_DEL ? HIST_DEL : HIST_GET;
}

/* The history result of an operation whose last try answered r; maybe:
 * some try may have written without being answered.  A write answered OK
 * after such a try is indeterminate too: the earlier try's request may still
 * be on its way (a connection given up on during a partition delivers it
 * later, after the retry and after later operations). */
static enum hist_result classify(enum proto_op op, int r, bool maybe)
{
	if (is_write(op))
		return maybe                                                    ? HIST_INFO
		       : r == RS_OK || (op == PROTO_OP_DEL && r == RS_NOTFOUND) ? HIST_OK
		                                                                : HIST_FAIL;
	return r == RS_VALUE || r == RS_NOTFOUND ? HIST_OK : HIST_FAIL;
}

/* Record one operation of op on key (value: what a put writes) whose last
 * try answered r with text; master: where that try went. */
static void record_op(enum proto_op op, const char *key, const char *value, usec_t invoke, int r,
                      const char *text, bool maybe, const char *master)
{
	enum hist_result res = classify(op, r, maybe);
	const char *v = op == PROTO_OP_PUT                    ? value
	                : op == PROTO_OP_GET && r == RS_VALUE ? text
	                                                      : NULL;

	/* A read of an empty value cannot be told from "none" in the format. */
	if (op == PROTO_OP_GET && r == RS_VALUE && !*text)
		res = HIST_FAIL;
	record(hist_op_of(op), key, v, invoke, now_real(), res, master);
}

/* The answers of the recording clients, as they change, on stderr (the
 * campaign's logs say what made a write indeterminate).  Every answer that
 * is one (OK, VALUE, NOTFOUND) is one state, "answered": a workload that
 * mixes reads and writes would otherwise log each of its operations. */
static void log_answer(const char *addr, int r, const char *text)
{
	static char last[256];
	char cur[256];
	bool answered = r == RS_OK || r == RS_VALUE || r == RS_NOTFOUND;

	snprintf(cur, sizeof(cur), "%s %s %.80s", addr, answered ? "answered" : res_name(r),
	         answered ? "" : text);
	if (strcmp(cur, last) != 0) {
		fprintf(stderr, "%" PRId64 " %s\n", (int64_t)now_real(), cur);
		snprintf(last, sizeof(last), "%s", cur);
	}
}

/* Connect for svc_request (500 ms at most); a failure goes to the answer
 * log like an answer (once per change), with how long a connect took when
 * it hung (a SYN to an address nobody answers any more), so that the log
 * shows where a client's wait went. */
static void conn_try(struct conn *c, const char *addr)
{
	usec_t t0 = now_mono(), took;
	int r = conn_open(c, addr, t0 + 500 * USEC_PER_MSEC);
	char why[160];

	if (r >= 0)
		return;
	took = now_mono() - t0;
	snprintf(why, sizeof(why), "connect: %s", strerror(-r));
	log_answer(addr, RS_CONN, why);
	if (took >= 50 * USEC_PER_MSEC)
		fprintf(stderr, "%" PRId64 " %s connect failed after %" PRId64 " ms: %s\n",
		        (int64_t)now_real(), addr, (int64_t)(took / USEC_PER_MSEC), strerror(-r));
}

/* A request through the Service: connect to the ClusterIP (--via clusterip)
 * or the Endpoints' address (--via endpoints) when not connected; on
 * CONN/NOTMASTER/ERR reconnect (re-reading the Endpoints) and retry until
 * the deadline.  Returns the last result; *tries counts the refused tries;
 * *maybe (when not NULL) tells whether some try of a write may have written
 * without being answered; master gets the address of the last try.
 * With per_try, every try sent is recorded as an operation of its own, and a
 * PUT's value (a buffer of valuelen bytes) gets a suffix ".rN" on the Nth
 * retry, so that values stay unique per write: the one written last is left
 * in value. */
static int svc_request(struct conn *c, enum proto_op op, const char *key, char *value,
                       size_t valuelen, bool per_try, usec_t deadline, char *text, size_t textlen,
                       unsigned *tries, bool *maybe, char *master, size_t masterlen)
{
	char eps[512], base[256] = "";
	int r = RS_CONN, ntry = 0;

	if (value)
		snprintf(base, sizeof(base), "%s", value);
	if (maybe)
		*maybe = false;
	if (master)
		master[0] = '\0';
	text[0] = '\0';
	for (;;) {
		if (c->fd < 0 && !opt_via_endpoints) {
			if (service_addr(eps, sizeof(eps)) == 0)
				conn_try(c, eps);
		} else if (c->fd < 0) {
			int n = endpoints(eps, sizeof(eps));
			if (n > 0) {
				char *comma = strchr(eps, ',');
				if (comma)
					*comma = '\0';
				conn_try(c, eps);
			}
		}
		if (c->fd >= 0) {
			bool sent = false, ind;
			usec_t invoke;

			if (master)
				snprintf(master, masterlen, "%s", c->addr);
			if (per_try && op == PROTO_OP_PUT && value && ntry > 0)
				snprintf(value, valuelen, "%s.r%d", base, ntry);
			invoke = now_real();
			r = request(c, op, key, op == PROTO_OP_PUT ? value : NULL, opt_request_ms,
			            text, textlen, &sent);
			ntry++;
			ind = is_write(op) && write_indeterminate(r, text, sent);
			if (per_try) {
				record_op(op, key, value, invoke, r, text, ind, c->addr);
				log_answer(c->addr, r, text);
			} else if (maybe && ind)
				*maybe = true;
			if (r == RS_OK || r == RS_VALUE || r == RS_NOTFOUND)
				return r;
			conn_close(c); /* re-resolve: the master may have moved */
		}
		if (tries)
			(*tries)++;
		if (now_mono() >= deadline || stopping)
			return r;
		usleep((useconds_t)opt_retry_us);
	}
}

/* svc_request of one operation (value given by the caller: the same for
 * every try) and its history record, spanning all the tries. */
static int svc_op(struct conn *c, enum proto_op op, const char *key, const char *value,
                  usec_t deadline, char *text, size_t textlen, unsigned *tries)
{
	char master[64], v[256];
	usec_t invoke = now_real();
	bool maybe;
	int r;

	snprintf(v, sizeof(v), "%s", value ? value : "");
	r = svc_request(c, op, key, value ? v : NULL, sizeof(v), false, deadline, text, textlen,
	                tries, &maybe, master, sizeof(master));
	record_op(op, key, value, invoke, r, text, maybe, master);
	return r;
}

/* ---------------------------------------------------------------- op mix */

static unsigned long rng_state;

static unsigned long rnd(unsigned long n)
{
	/* xorshift64*: reproducible from --seed, good enough for a mix */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return n ? (unsigned long)((rng_state * 2685821657736338717ull) >> 33) % n : 0;
}

static void rng_init(void)
{
	rng_state = (opt_seed ? opt_seed : (unsigned long)getpid() * 0x9E3779B97F4A7C15ull) | 1;
}

/* The next operation of the mix: its verb and key (seq: writes so far). */
static enum proto_op next_op(uint64_t seq, char *key, size_t keylen)
{
	unsigned long roll = rnd(100);
	enum proto_op op = roll < (unsigned long)opt_read_pct                   ? PROTO_OP_GET
	                   : roll < (unsigned long)(opt_read_pct + opt_del_pct) ? PROTO_OP_DEL
	                                                                        : PROTO_OP_PUT;

	if (opt_keys > 0) {
		snprintf(key, keylen, "%sk%04lu", opt_prefix, rnd((unsigned long)opt_keys));
		return op;
	}
	/* A key per write: no deletes (the acknowledged values stay to be
	 * checked); a read is of one of the last 256 keys written or being
	 * written. */
	if (op != PROTO_OP_GET || seq == 0) {
		snprintf(key, keylen, "%s%08" PRIu64, opt_prefix, seq);
		return PROTO_OP_PUT;
	}
	snprintf(key, keylen, "%s%08" PRIu64, opt_prefix, seq - 1 - rnd(seq < 256 ? seq : 256));
	return op;
}

/* ---------------------------------------------------------------- modes */

static int mode_put(const char *key, const char *value)
{
	struct conn c = {.fd = -1};
	char text[PROTO_LINE_MAX];
	unsigned tries = 0;
	int r = svc_op(&c, PROTO_OP_PUT, key, value, now_mono() + opt_timeout_ms * USEC_PER_MSEC,
	               text, sizeof(text), &tries);

	if (r != RS_OK) {
		printf("fail %s %s\n", res_name(r), text);
		return 1;
	}
	printf("ok %s tries=%u\n", c.addr, tries);
	conn_close(&c);
	return 0;
}

static int mode_get(const char *key, const char *want)
{
	struct conn c = {.fd = -1};
	static char text[PROTO_VALUE_MAX + 1];
	int r = svc_op(&c, PROTO_OP_GET, key, NULL, now_mono() + opt_timeout_ms * USEC_PER_MSEC,
	               text, sizeof(text), NULL);

	if (r != RS_VALUE) {
		printf("fail %s %s\n", res_name(r), text);
		return 1;
	}
	printf("%s\n", text);
	conn_close(&c);
	return want && strcmp(want, text) != 0 ? 1 : 0;
}

static int mode_session(void)
{
	struct conn c = {.fd = -1};
	static char line[4096], text[PROTO_VALUE_MAX + 1];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		char *verb = strtok(line, " \t\r\n"), *k = strtok(NULL, " \t\r\n"),
		     *v = strtok(NULL, " \t\r\n");
		usec_t deadline = now_mono() + opt_timeout_ms * USEC_PER_MSEC;
		unsigned tries = 0;
		int r;

		if (!verb)
			continue;
		if (strcmp(verb, "quit") == 0)
			break;
		if (strcmp(verb, "put") == 0 && k && v) {
			r = svc_op(&c, PROTO_OP_PUT, k, v, deadline, text, sizeof(text), &tries);
			if (r == RS_OK)
				printf("ok put %s %s tries=%u\n", k, c.addr, tries);
			else
				printf("fail put %s %s %s\n", k, res_name(r), text);
		} else if (strcmp(verb, "del") == 0 && k) {
			r = svc_op(&c, PROTO_OP_DEL, k, NULL, deadline, text, sizeof(text), &tries);
			if (r == RS_OK || r == RS_NOTFOUND)
				printf("ok del %s %s %s tries=%u\n", k, res_name(r), c.addr, tries);
			else
				printf("fail del %s %s %s\n", k, res_name(r), text);
		} else if (strcmp(verb, "get") == 0 && k) {
			r = svc_op(&c, PROTO_OP_GET, k, NULL, deadline, text, sizeof(text), &tries);
			if (r == RS_VALUE && (!v || strcmp(v, text) == 0))
				printf("ok get %s %s %s tries=%u\n", k, text, c.addr, tries);
			else if (r == RS_NOTFOUND && !v)
				printf("ok get %s NOTFOUND %s tries=%u\n", k, c.addr, tries);
			else
				printf("fail get %s %s %s\n", k, res_name(r), text);
		} else {
			printf("fail usage: put K V | get K [V] | del K | quit\n");
		}
	}
	conn_close(&c);
	return 0;
}

struct tally {
	uint64_t ops, ok, fail, info, acked;
};

static void tally_add(struct tally *t, enum proto_op op, int r, bool maybe)
{
	enum hist_result res = classify(op, r, maybe);

	t->ops++;
	if (res == HIST_OK)
		t->ok++;
	else if (res == HIST_FAIL)
		t->fail++;
	else
		t->info++;
}

static int mode_workload(const char *path)
{
	struct conn c = {.fd = -1};
	FILE *f = fopen(path, "a");
	char key[64], value[128], master[64];
	static char text[PROTO_VALUE_MAX + 1];
	uint64_t seq = 0, refused = 0;
	unsigned long pid = (unsigned long)getpid();
	struct tally t = {0};

	if (!f) {
		fprintf(stderr, "kf-labclient: %s: %s\n", path, strerror(errno));
		return 2;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	rng_init();
	while (!stopping) {
		enum proto_op op = next_op(seq, key, sizeof(key));
		usec_t sent;
		unsigned tries = 0;
		bool maybe;
		int r;

		snprintf(value, sizeof(value), "v%" PRIu64 "-%lu-%s", seq, pid, opt_client);
		sent = now_real();
		/* No deadline of our own: retry until told to stop; every try is
		 * an operation of the history. */
		r = svc_request(&c, op, key, op == PROTO_OP_PUT ? value : NULL, sizeof(value), true,
		                INT64_MAX, text, sizeof(text), &tries, &maybe, master,
		                sizeof(master));
		refused += tries;
		tally_add(&t, op, r, false);
		if (is_write(op) && classify(op, r, false) == HIST_OK) {
			fprintf(f, "%" PRIu64 " %" PRId64 " %" PRId64 " %s %s %s\n", seq,
			        (int64_t)sent, (int64_t)now_real(), c.addr, key,
			        op == PROTO_OP_PUT ? value : "-");
			t.acked++;
		}
		if (op == PROTO_OP_PUT)
			seq++;
		if (r != RS_OK && r != RS_VALUE && r != RS_NOTFOUND)
			break; /* stopping */
		if (opt_pause_us > 0)
			usleep((useconds_t)opt_pause_us);
	}
	fclose(f);
	conn_close(&c);
	printf("workload acked=%" PRIu64 " refused_tries=%" PRIu64 " ops=%" PRIu64 " ok=%" PRIu64
	       " fail=%" PRIu64 " info=%" PRIu64 "\n",
	       t.acked, refused, t.ops, t.ok, t.fail, t.info);
	return 0;
}

/* "host:port" of a NOTMASTER's "[master=]pod@host:port" into out; false
 * when it names none. */
static bool hint_addr(const char *text, char *out, size_t outlen)
{
	const char *at = strchr(text, '@');

	if (!at || !at[1] || strchr(at + 1, ' '))
		return false;
	snprintf(out, outlen, "%s", at + 1);
	return strchr(out, ':') != NULL;
}

/* The pinned client's fallback: the Service's first endpoint into addr
 * when there is one and it differs.  Without a kubeconfig, or when the API
 * cannot be reached (the node cut off), nothing changes. */
static bool rediscover(char *addr, size_t addrlen)
{
	const char *kc = opt_kubeconfig ? opt_kubeconfig : getenv("KUBECONFIG");
	char eps[512], err[512];
	char *comma;

	if (!api && kc && *kc && k8s_client_new(kc, NULL, &api, err, sizeof(err)) < 0)
		api = NULL;
	if (!api || endpoints(eps, sizeof(eps)) <= 0)
		return false;
	comma = strchr(eps, ',');
	if (comma)
		*comma = '\0';
	if (strcmp(eps, addr) == 0 || strlen(eps) >= addrlen)
		return false;
	fprintf(stderr, "%" PRId64 " rediscovered %s (was %s)\n", (int64_t)now_real(), eps, addr);
	memcpy(addr, eps, strlen(eps) + 1);
	return true;
}

static int mode_pinned(const char *addr0, const char *path)
{
	struct conn c = {.fd = -1};
	FILE *f = path ? fopen(path, "a") : NULL;
	char addr[64], key[64], value[128], hint[64], answer[256], last_answer[256] = "";
	static char text[PROTO_VALUE_MAX + 1];
	uint64_t seq = 0, switches = 0, conn_fail = 0, rediscoveries = 0;
	usec_t refused_since = 0;
	unsigned long pid = (unsigned long)getpid();
	struct tally t = {0};

	if (path && !f) {
		fprintf(stderr, "kf-labclient: %s: %s\n", path, strerror(errno));
		return 2;
	}
	if (f)
		setvbuf(f, NULL, _IOLBF, 0);
	snprintf(addr, sizeof(addr), "%s", addr0);
	rng_init();
	while (!stopping) {
		enum proto_op op;
		usec_t invoke;
		bool sent = false;
		int r;

		/* Refused or unreachable for 3 s: the pod may be gone for good (a
		 * recreated pod has a new address), so ask the Service once, as a
		 * node-local service would ask its agent. */
		if (refused_since && now_mono() - refused_since > 3 * USEC_PER_SEC) {
			refused_since = now_mono();
			if (rediscover(addr, sizeof(addr))) {
				conn_close(&c);
				rediscoveries++;
			}
		}
		if (c.fd < 0 &&
		    conn_open(&c, addr, now_mono() + opt_request_ms * USEC_PER_MSEC) < 0) {
			conn_fail++;
			if (!refused_since)
				refused_since = now_mono();
			usleep(100000); /* nothing sent: nothing to record */
			continue;
		}
		op = next_op(seq, key, sizeof(key));
		snprintf(value, sizeof(value), "p%" PRIu64 "-%lu-%s", seq, pid, opt_client);
		invoke = now_real();
		r = request(&c, op, key, op == PROTO_OP_PUT ? value : NULL, opt_request_ms, text,
		            sizeof(text), &sent);
		record_op(op, key, value, invoke, r, text, write_indeterminate(r, text, sent),
		          addr);
		tally_add(&t, op, r, write_indeterminate(r, text, sent));
		if (is_write(op) && classify(op, r, false) == HIST_OK) {
			if (f)
				fprintf(f, "%" PRIu64 " %" PRId64 " %" PRId64 " %s %s %s\n", seq,
				        (int64_t)invoke, (int64_t)now_real(), addr, key,
				        op == PROTO_OP_PUT ? value : "-");
			t.acked++;
		}
		if (op == PROTO_OP_PUT)
			seq++;
		/* The answers, as they change, for the campaign's logs. */
		snprintf(answer, sizeof(answer), "%s %s %.80s", addr, res_name(r),
		         r == RS_VALUE ? "" : text);
		if (strcmp(answer, last_answer) != 0) {
			fprintf(stderr, "%" PRId64 " %s\n", (int64_t)now_real(), answer);
			snprintf(last_answer, sizeof(last_answer), "%s", answer);
		}
		if (r == RS_NOTMASTER && hint_addr(text, hint, sizeof(hint)) &&
		    strcmp(hint, addr) != 0) {
			snprintf(addr, sizeof(addr), "%s", hint);
			conn_close(&c);
			switches++;
		}
		if (r == RS_CONN || r == RS_NOTMASTER || r == RS_ERR) {
			if (!refused_since)
				refused_since = now_mono();
			usleep(50000);
		} else {
			refused_since = 0;
			if (opt_pause_us > 0)
				usleep((useconds_t)opt_pause_us);
		}
	}
	if (f)
		fclose(f);
	conn_close(&c);
	printf("pinned ops=%" PRIu64 " ok=%" PRIu64 " fail=%" PRIu64 " info=%" PRIu64
	       " acked=%" PRIu64 " switches=%" PRIu64 " rediscoveries=%" PRIu64
	       " connect_failures=%" PRIu64 " last=%s\n",
	       t.ops, t.ok, t.fail, t.info, t.acked, switches, rediscoveries, conn_fail, addr);
	return 0;
}

struct ack {
	char key[128], value[128], addr[64];
	int64_t acked;
};

static int ack_cmp(const void *a, const void *b)
{
	const struct ack *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c)
		return c;
	return x->acked < y->acked ? -1 : x->acked > y->acked;
}

static int mode_check(int nfiles, char **paths)
{
	struct conn c = {.fd = -1};
	char line[512];
	static char text[PROTO_VALUE_MAX + 1];
	struct ack *acks = NULL;
	size_t n = 0, cap = 0, keys = 0;
	uint64_t bad = 0, seq;
	int64_t sent;

	for (int i = 0; i < nfiles; i++) {
		FILE *f = fopen(paths[i], "r");

		if (!f) {
			fprintf(stderr, "kf-labclient: %s: %s\n", paths[i], strerror(errno));
			free(acks);
			return 2;
		}
		while (fgets(line, sizeof(line), f)) {
			struct ack a;
			if (sscanf(line, "%" SCNu64 " %" SCNd64 " %" SCNd64 " %63s %127s %127s",
			           &seq, &sent, &a.acked, a.addr, a.key, a.value) != 6)
				continue;
			if (n == cap) {
				struct ack *m;
				cap = cap ? 2 * cap : 1024;
				m = realloc(acks, cap * sizeof(*acks));
				if (!m) {
					fprintf(stderr, "kf-labclient: out of memory\n");
					free(acks);
					fclose(f);
					return 2;
				}
				acks = m;
			}
			acks[n++] = a;
		}
		fclose(f);
	}
	if (n)
		qsort(acks, n, sizeof(*acks), ack_cmp);
	for (size_t i = 0; i < n; i++) {
		const struct ack *a = &acks[i];
		bool want_none = strcmp(a->value, "-") == 0;
		int r;

		if (i + 1 < n && strcmp(acks[i + 1].key, a->key) == 0)
			continue; /* only the last acknowledged write of each key */
		keys++;
		r = svc_op(&c, PROTO_OP_GET, a->key, NULL,
		           now_mono() + opt_timeout_ms * USEC_PER_MSEC, text, sizeof(text), NULL);
		if (want_none ? r != RS_NOTFOUND : r != RS_VALUE || strcmp(text, a->value) != 0) {
			if (bad < 20)
				printf("LOST key %s acknowledged by %s: %s %s (want %s)\n", a->key,
				       a->addr, res_name(r), text, a->value);
			bad++;
		}
	}
	free(acks);
	conn_close(&c);
	printf("check acknowledged=%zu keys=%zu lost_or_wrong=%" PRIu64 "\n", n, keys, bad);
	return bad || n == 0 ? 1 : 0;
}

static int mode_direct(const char *addr, const char *verb, const char *key, const char *value)
{
	struct conn c = {.fd = -1};
	static char text[PROTO_VALUE_MAX + 1];
	enum proto_op op = strcmp(verb, "put") == 0   ? PROTO_OP_PUT
	                   : strcmp(verb, "get") == 0 ? PROTO_OP_GET
	                                              : PROTO_OP_STAT;
	int r;

	if (conn_open(&c, addr, now_mono() + opt_timeout_ms * USEC_PER_MSEC) < 0) {
		printf("CONN\n");
		return 1;
	}
	r = request(&c, op, op == PROTO_OP_STAT ? NULL : key, op == PROTO_OP_PUT ? value : NULL,
	            opt_timeout_ms, text, sizeof(text), NULL);
	conn_close(&c);
	if (r == RS_VALUE && op == PROTO_OP_STAT) {
		for (char *p = text; *p; p++)
			if (*p == '\n')
				*p = ' ';
	}
	printf("%s%s%s\n", res_name(r), *text ? " " : "", text);
	return r == RS_OK || r == RS_VALUE ? 0 : 1;
}

static int mode_watch(const char *path)
{
	FILE *f = fopen(path, "a");
	char last[1024] = "", cur[1024], pods[512], eps[512], err[512], coll[256];
	uint64_t obs = 0, viol = 0, failed = 0, eps2 = 0;

	if (!f) {
		fprintf(stderr, "kf-labclient: %s: %s\n", path, strerror(errno));
		return 2;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/pods", opt_ns);
	while (!stopping) {
		usec_t t0 = now_mono();
		cJSON *list = NULL, *items, *it;
		int np = 0, ne;
		size_t used = 0;

		pods[0] = '\0';
		if (k8s_list(api, coll, opt_selector, NULL, 2000, &list, err, sizeof(err)) < 0) {
			failed++;
		} else {
			items = cJSON_GetObjectItemCaseSensitive(list, "items");
			cJSON_ArrayForEach(it, items)
			{
				cJSON *md = cJSON_GetObjectItemCaseSensitive(it, "metadata");
				cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
				int r;
				if (!cJSON_IsString(name))
					continue;
				r = snprintf(pods + used, sizeof(pods) - used, "%s%s",
				             np ? "," : "", name->valuestring);
				if (r > 0 && (size_t)r < sizeof(pods) - used)
					used += (size_t)r;
				np++;
			}
			cJSON_Delete(list);
			ne = endpoints(eps, sizeof(eps));
			if (ne < 0) {
				failed++;
				snprintf(eps, sizeof(eps), "?");
				ne = 0;
			}
			obs++;
			snprintf(cur, sizeof(cur), "pods=%s eps=%s", np ? pods : "-",
			         *eps ? eps : "-");
			if (np > 1) {
				viol++;
				fprintf(f, "%" PRId64 " VIOLATION %s\n", (int64_t)now_real(), cur);
			} else if (ne > 1) {
				/* The agents write one address (service.endpoints): two
				 * are a master switch that was not one write. */
				eps2++;
				fprintf(f, "%" PRId64 " TWO-ENDPOINTS %s\n", (int64_t)now_real(),
				        cur);
			}
			if (strcmp(cur, last) != 0) {
				fprintf(f, "%" PRId64 " %s\n", (int64_t)now_real(), cur);
				snprintf(last, sizeof(last), "%s", cur);
			}
		}
		usec_t next = t0 + opt_interval_ms * USEC_PER_MSEC;
		while (!stopping && now_mono() < next)
			usleep(2000);
	}
	fclose(f);
	printf("observations %" PRIu64 " violations %" PRIu64 " failed %" PRIu64
	       " two_endpoints %" PRIu64 "\n",
	       obs, viol, failed, eps2);
	return viol || eps2 ? 1 : 0;
}

/* Step the wall clock by secs, hold, then set it to the time it would show
 * had it never been stepped (the monotonic clock measures the hold). */
static int mode_clockjump(const char *secs_s, const char *hold_s)
{
	struct timespec r0, m0, m1, set;
	long secs = strtol(secs_s, NULL, 10), hold_ms = atol(hold_s);
	int64_t target_ns;

	clock_gettime(CLOCK_MONOTONIC, &m0);
	clock_gettime(CLOCK_REALTIME, &r0);
	set = r0;
	set.tv_sec += secs;
	if (clock_settime(CLOCK_REALTIME, &set) < 0) {
		fprintf(stderr, "kf-labclient: clock_settime: %s\n", strerror(errno));
		return 1;
	}
	for (long waited = 0; waited < hold_ms && !stopping; waited += 5)
		usleep(5000);
	clock_gettime(CLOCK_MONOTONIC, &m1);
	target_ns = (int64_t)r0.tv_sec * 1000000000 + r0.tv_nsec +
	            ((int64_t)m1.tv_sec - m0.tv_sec) * 1000000000 + (m1.tv_nsec - m0.tv_nsec);
	set.tv_sec = (time_t)(target_ns / 1000000000);
	set.tv_nsec = (long)(target_ns % 1000000000);
	if (clock_settime(CLOCK_REALTIME, &set) < 0) {
		fprintf(stderr, "kf-labclient: clock_settime (undo): %s\n", strerror(errno));
		return 1;
	}
	printf("clockjump %+lds held %ld ms, undone\n", secs, hold_ms);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: kf-labclient [--kubeconfig F] [--namespace NS] [--service S] "
	                "[--timeout-ms N] [--request-ms N] [--pause-us N] [--retry-us N] [--prefix "
	                "P] [--keys N] "
	                "[--read-pct N] [--del-pct N] [--seed N] [--history F] [--client ID] "
	                "[--interval-ms N] [--selector S] [--via clusterip|endpoints]\n"
	                "  put K V | get K [V] | session | workload FILE | check FILE... |\n"
	                "  pinned ADDR [FILE] | direct ADDR put|get|stat [K [V]] | watch FILE |\n"
	                "  clockjump SECONDS HOLD_MS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	int i = 1;

	real_base = clock_real_usec();
	mono_base = clock_mono_usec();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (!strcmp(o, "--kubeconfig"))
			opt_kubeconfig = v;
		else if (!strcmp(o, "--namespace"))
			opt_ns = v;
		else if (!strcmp(o, "--service"))
			opt_svc = v;
		else if (!strcmp(o, "--timeout-ms"))
			opt_timeout_ms = atol(v);
		else if (!strcmp(o, "--request-ms"))
			opt_request_ms = atol(v);
		else if (!strcmp(o, "--pause-us"))
			opt_pause_us = atol(v);
		else if (!strcmp(o, "--retry-us"))
			opt_retry_us = atol(v);
		else if (!strcmp(o, "--prefix"))
			opt_prefix = v;
		else if (!strcmp(o, "--keys"))
			opt_keys = atol(v);
		else if (!strcmp(o, "--read-pct"))
			opt_read_pct = atol(v);
		else if (!strcmp(o, "--del-pct"))
			opt_del_pct = atol(v);
		else if (!strcmp(o, "--seed"))
			opt_seed = strtoul(v, NULL, 10);
		else if (!strcmp(o, "--history"))
			opt_history = v;
		else if (!strcmp(o, "--client"))
			opt_client = v;
		else if (!strcmp(o, "--interval-ms"))
			opt_interval_ms = atol(v);
		else if (!strcmp(o, "--selector"))
			opt_selector = v;
		else if (!strcmp(o, "--via") &&
		         (!strcmp(v, "clusterip") || !strcmp(v, "endpoints")))
			opt_via_endpoints = !strcmp(v, "endpoints");
		else
			usage();
	}
	if (i >= argc)
		usage();
	if (opt_read_pct < 0 || opt_del_pct < 0 || opt_read_pct + opt_del_pct > 100 ||
	    opt_keys < 0 || opt_keys > 9999 || opt_request_ms <= 0 || opt_retry_us < 0)
		usage();
	const char *m = argv[i];
	int left = argc - i - 1;
	char **a = argv + i + 1;

	if (!strcmp(m, "clockjump") && left == 2)
		return mode_clockjump(a[0], a[1]);
	if (!strcmp(m, "direct")) {
		if (left < 2)
			usage();
		return mode_direct(a[0], a[1], left > 2 ? a[2] : "x", left > 3 ? a[3] : "");
	}
	hist_start();
	if (!strcmp(m, "pinned") && (left == 1 || left == 2))
		return mode_pinned(a[0], left == 2 ? a[1] : NULL);
	api_open();
	if (!strcmp(m, "put") && left == 2)
		return mode_put(a[0], a[1]);
	if (!strcmp(m, "get") && (left == 1 || left == 2))
		return mode_get(a[0], left == 2 ? a[1] : NULL);
	if (!strcmp(m, "session") && left == 0)
		return mode_session();
	if (!strcmp(m, "workload") && left == 1)
		return mode_workload(a[0]);
	if (!strcmp(m, "check") && left >= 1)
		return mode_check(left, a);
	if (!strcmp(m, "watch") && left == 1)
		return mode_watch(a[0]);
	usage();
	return 2;
}
