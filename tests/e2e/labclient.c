/* kf-labclient: the MetaService client of the lab's end-to-end tests, demo
 * and benchmark (tests/e2e/e2e.test, lab/demo-lab.sh, bench/failover-lab.sh).
 *
 * The lab has no kube-proxy, so a ClusterIP does not route.  This client
 * does what kube-proxy would program: it reads the Endpoints object of the
 * Service (kept by the endpoints controller from the pods that match the
 * selector app=metaservice,role=master) from the API server and connects to
 * the address found there.  On a connection error, NOTMASTER or ERR it
 * reads the Endpoints again and retries, until its time-out.
 *
 *   kf-labclient [OPTIONS] put KEY VALUE      one acknowledged PUT; prints "ok ADDR"
 *   kf-labclient [OPTIONS] get KEY [VALUE]    prints the value; exit 1 when it differs
 *                                             from VALUE or is missing
 *   kf-labclient [OPTIONS] session            lines on stdin: "put K V", "get K [V]",
 *                                             "quit"; one answer line each ("ok ..." or
 *                                             "fail ..."), one connection kept across
 *   kf-labclient [OPTIONS] workload FILE      writes keys PREFIXNNNNNNNN until SIGTERM;
 *                                             each acknowledged write is appended to FILE:
 *                                             "seq sent_us acked_us addr key value"
 *                                             (CLOCK_REALTIME µs); a summary on stdout
 *   kf-labclient [OPTIONS] check FILE         GETs every key of a workload FILE from the
 *                                             master: each must hold its acknowledged value
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
 *                                             (two addresses in the Endpoints are logged as
 *                                             TWO-ENDPOINTS and counted, not failed: that
 *                                             is the endpoints controller's lag)
 *
 * Options: --kubeconfig FILE (default $KUBECONFIG), --namespace NS
 * (kubefence), --service NAME (metaservice), --timeout-ms N (overall, 30000),
 * --pause-us N (workload: between acknowledged writes, 2000), --prefix P
 * (workload keys, "w"), --interval-ms N (watch, 50), --selector S (watch,
 * "role=master").
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

#include "clock.h"
#include "util.h"
#include "k8s.h"
#include "proto.h"

static const char *opt_kubeconfig, *opt_ns = "kubefence", *opt_svc = "metaservice";
static const char *opt_prefix = "w", *opt_selector = "role=master";
static long opt_timeout_ms = 30000, opt_pause_us = 2000, opt_interval_ms = 50;
static volatile sig_atomic_t stopping;
static struct k8s_client *api;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static usec_t now_real(void)
{
	return clock_real_usec();
}

static usec_t now_mono(void)
{
	return clock_mono_usec();
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
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
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

/* One request on an open connection; text gets the value / message. */
static int request(struct conn *c, enum proto_op op, const char *key, const char *value,
                   long timeout_ms, char *text, size_t textlen)
{
	usec_t deadline = now_mono() + timeout_ms * USEC_PER_MSEC;
	struct pbuf out = {0};
	struct proto_resp resp;
	int r, res;

	text[0] = '\0';
	if (proto_encode_request(&out, op, key, key ? strlen(key) : 0, value,
	                         value ? strlen(value) : 0, 0) < 0) {
		pbuf_free(&out);
		return RS_CONN;
	}
	if (fd_send_all(c->fd, out.data, out.len, deadline) < 0) {
		pbuf_free(&out);
		conn_close(c);
		return RS_CONN;
	}
	pbuf_free(&out);
	for (;;) {
		ssize_t k;
		r = proto_parse_response(c->buf, c->len, &resp);
		if (r > 0)
			break;
		if (r < 0 || c->len == sizeof(c->buf) || fd_wait(c->fd, POLLIN, deadline) < 0) {
			conn_close(c);
			return RS_CONN;
		}
		k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (k > 0)
			c->len += (size_t)k;
		else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
			conn_close(c);
			return RS_CONN;
		}
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
	memmove(c->buf, c->buf + r, c->len - (size_t)r);
	c->len -= (size_t)r;
	if (res == RS_CONN)
		conn_close(c);
	return res;
}

/* A request through the Service: connect to the Endpoints' address when
 * not connected; on CONN/NOTMASTER/ERR re-read the Endpoints and retry until
 * the deadline.  Returns the last result; *tries counts the refused tries. */
static int svc_request(struct conn *c, enum proto_op op, const char *key, const char *value,
                       usec_t deadline, char *text, size_t textlen, unsigned *tries)
{
	char eps[512];
	int r = RS_CONN;

	for (;;) {
		if (c->fd < 0) {
			int n = endpoints(eps, sizeof(eps));
			if (n > 0) {
				char *comma = strchr(eps, ',');
				if (comma)
					*comma = '\0';
				conn_open(c, eps, now_mono() + 500 * USEC_PER_MSEC);
			}
		}
		if (c->fd >= 0) {
			r = request(c, op, key, value, 1000, text, textlen);
			if (r == RS_OK || r == RS_VALUE || r == RS_NOTFOUND)
				return r;
			conn_close(c); /* re-resolve: the master may have moved */
		}
		if (tries)
			(*tries)++;
		if (now_mono() >= deadline || stopping)
			return r;
		usleep(5000);
	}
}

/* ---------------------------------------------------------------- modes */

static int mode_put(const char *key, const char *value)
{
	struct conn c = {.fd = -1};
	char text[PROTO_LINE_MAX];
	unsigned tries = 0;
	int r = svc_request(&c, PROTO_OP_PUT, key, value,
	                    now_mono() + opt_timeout_ms * USEC_PER_MSEC, text, sizeof(text),
	                    &tries);

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
	int r = svc_request(&c, PROTO_OP_GET, key, NULL,
	                    now_mono() + opt_timeout_ms * USEC_PER_MSEC, text, sizeof(text), NULL);

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
			r = svc_request(&c, PROTO_OP_PUT, k, v, deadline, text, sizeof(text),
			                &tries);
			if (r == RS_OK)
				printf("ok put %s %s tries=%u\n", k, c.addr, tries);
			else
				printf("fail put %s %s %s\n", k, res_name(r), text);
		} else if (strcmp(verb, "get") == 0 && k) {
			r = svc_request(&c, PROTO_OP_GET, k, NULL, deadline, text, sizeof(text),
			                &tries);
			if (r == RS_VALUE && (!v || strcmp(v, text) == 0))
				printf("ok get %s %s %s tries=%u\n", k, text, c.addr, tries);
			else
				printf("fail get %s %s %s\n", k, res_name(r), text);
		} else {
			printf("fail usage: put K V | get K [V] | quit\n");
		}
	}
	conn_close(&c);
	return 0;
}

static int mode_workload(const char *path)
{
	struct conn c = {.fd = -1};
	FILE *f = fopen(path, "a");
	char key[64], value[64], text[PROTO_LINE_MAX];
	uint64_t seq = 0, acked = 0, refused = 0;
	unsigned long pid = (unsigned long)getpid();

	if (!f) {
		fprintf(stderr, "kf-labclient: %s: %s\n", path, strerror(errno));
		return 2;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	while (!stopping) {
		usec_t sent;
		unsigned tries = 0;
		int r;

		snprintf(key, sizeof(key), "%s%08" PRIu64, opt_prefix, seq);
		snprintf(value, sizeof(value), "v%" PRIu64 "-%lu", seq, pid);
		sent = now_real();
		/* No deadline of our own: retry until told to stop. */
		r = svc_request(&c, PROTO_OP_PUT, key, value, INT64_MAX, text, sizeof(text),
		                &tries);
		refused += tries;
		if (r != RS_OK)
			break; /* stopping */
		fprintf(f, "%" PRIu64 " %" PRId64 " %" PRId64 " %s %s %s\n", seq, (int64_t)sent,
		        (int64_t)now_real(), c.addr, key, value);
		acked++;
		seq++;
		if (opt_pause_us > 0)
			usleep((useconds_t)opt_pause_us);
	}
	fclose(f);
	conn_close(&c);
	printf("workload acked=%" PRIu64 " refused_tries=%" PRIu64 "\n", acked, refused);
	return 0;
}

static int mode_check(const char *path)
{
	struct conn c = {.fd = -1};
	FILE *f = fopen(path, "r");
	char line[512], addr[64], key[128], value[128];
	static char text[PROTO_VALUE_MAX + 1];
	uint64_t n = 0, bad = 0, seq;
	int64_t sent, acked;

	if (!f) {
		fprintf(stderr, "kf-labclient: %s: %s\n", path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		int r;
		if (sscanf(line, "%" SCNu64 " %" SCNd64 " %" SCNd64 " %63s %127s %127s", &seq,
		           &sent, &acked, addr, key, value) != 6)
			continue;
		n++;
		r = svc_request(&c, PROTO_OP_GET, key, NULL,
		                now_mono() + opt_timeout_ms * USEC_PER_MSEC, text, sizeof(text),
		                NULL);
		if (r != RS_VALUE || strcmp(text, value) != 0) {
			if (bad < 20)
				printf("LOST key %s acknowledged by %s: %s %s (want %s)\n", key,
				       addr, res_name(r), text, value);
			bad++;
		}
	}
	fclose(f);
	conn_close(&c);
	printf("check acknowledged=%" PRIu64 " lost_or_wrong=%" PRIu64 "\n", n, bad);
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
	            opt_timeout_ms, text, sizeof(text));
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
				/* Not kubefence's label: the endpoints controller lagging
				 * behind the label move (seen after an API server restart). */
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
	return viol ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: kf-labclient [--kubeconfig F] [--namespace NS] [--service S] "
	                "[--timeout-ms N] [--pause-us N] [--prefix P] [--interval-ms N] "
	                "[--selector S]\n"
	                "  put K V | get K [V] | session | workload FILE | check FILE |\n"
	                "  direct ADDR put|get|stat [K [V]] | watch FILE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	int i = 1;

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
		else if (!strcmp(o, "--pause-us"))
			opt_pause_us = atol(v);
		else if (!strcmp(o, "--prefix"))
			opt_prefix = v;
		else if (!strcmp(o, "--interval-ms"))
			opt_interval_ms = atol(v);
		else if (!strcmp(o, "--selector"))
			opt_selector = v;
		else
			usage();
	}
	if (i >= argc)
		usage();
	const char *m = argv[i];
	int left = argc - i - 1;
	char **a = argv + i + 1;

	if (!strcmp(m, "direct")) {
		if (left < 2)
			usage();
		return mode_direct(a[0], a[1], left > 2 ? a[2] : "x", left > 3 ? a[3] : "");
	}
	api_open();
	if (!strcmp(m, "put") && left == 2)
		return mode_put(a[0], a[1]);
	if (!strcmp(m, "get") && (left == 1 || left == 2))
		return mode_get(a[0], left == 2 ? a[1] : NULL);
	if (!strcmp(m, "session") && left == 0)
		return mode_session();
	if (!strcmp(m, "workload") && left == 1)
		return mode_workload(a[0]);
	if (!strcmp(m, "check") && left == 1)
		return mode_check(a[0]);
	if (!strcmp(m, "watch") && left == 1)
		return mode_watch(a[0]);
	usage();
	return 2;
}
