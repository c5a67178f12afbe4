/* fo: the end-to-end failover setup (see fo.h). */
#include "config.h"

#include "tests/failover/fo.h"
#include "tests/lib/kft_port.h"
#include "tests/lib/kft_util.h"
#include "tests/lib/kft_wire.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lib/k8s.h"
#include "lib/util.h"
#include "storage/metad/proto.h"

extern char **environ;

static const char *env(const char *name)
{
	const char *v = kft_getenv(name);

	FO_CHECK(v,
	         "%s is not set: run through tests/failover/failover.test or "
	         "bench/failover-proc.sh",
	         name);
	return v;
}

void fo_record(const char *what, double seconds)
{
	kft_measured(env("KF_IT_DIR"), what, seconds);
}

void fo_dump(const char *path)
{
	char line[4096];
	FILE *f = fopen(path, "r");

	fprintf(stderr, "----- %s\n", path);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

static int free_port(void)
{
	int port = kft_free_port();

	FO_CHECK(port > 0, "no free port on loopback: %s", strerror(errno));
	return port;
}

/* ----------------------------------------------------------- kubernetes */

static struct k8s_client *admin_client(void)
{
	struct k8s_client *c = NULL;
	char err[512] = "";
	int r = k8s_client_new(env("KF_IT_ADMIN_KUBECONFIG"), NULL, &c, err, sizeof(err));

	FO_CHECK(r == 0, "admin client: %s", err);
	return c;
}

static void create_json(struct k8s_client *c, const char *gv, const char *resource,
                        const char *json, cJSON **ret)
{
	char path[512], err[1024] = "";
	cJSON *obj = cJSON_Parse(json);
	int r;

	FO_CHECK(obj, "bad JSON: %s", json);
	FO_CHECK(k8s_path(path, sizeof(path), gv, env("KF_IT_NS"), resource, NULL) >= 0, "path");
	r = k8s_create(c, path, obj, 5000, ret, err, sizeof(err));
	cJSON_Delete(obj);
	FO_CHECK(r == 0 || (r == -EEXIST && !ret), "create %s: %s", resource, err);
}

void fo_prepare_rbac(void)
{
	struct k8s_client *c = admin_client();
	const char *ns = env("KF_IT_NS");
	char json[2048];

	create_json(c, "v1", "serviceaccounts",
	            "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\","
	            "\"metadata\":{\"name\":\"default\"}}",
	            NULL);
	create_json(c, "rbac.authorization.k8s.io/v1", "roles",
	            "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\","
	            "\"metadata\":{\"name\":\"kubefence-failover\"},\"rules\":["
	            "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],"
	            "\"verbs\":[\"get\",\"list\",\"patch\",\"delete\"]},"
	            "{\"apiGroups\":[\"\"],\"resources\":[\"events\"],\"verbs\":[\"create\"]},"
	            /* service.endpoints */
	            "{\"apiGroups\":[\"\"],\"resources\":[\"services\"],\"verbs\":[\"get\"]},"
	            "{\"apiGroups\":[\"\"],\"resources\":[\"endpoints\"],"
	            "\"verbs\":[\"get\",\"create\",\"patch\"]},"
	            "{\"apiGroups\":[\"discovery.k8s.io\"],\"resources\":[\"endpointslices\"],"
	            "\"verbs\":[\"get\",\"create\",\"patch\",\"list\",\"delete\"]}]}",
	            NULL);
	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\","
	         "\"metadata\":{\"name\":\"kubefence-failover\"},"
	         "\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\","
	         "\"name\":\"kubefence-failover\"},"
	         "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"kubefence-agent\","
	         "\"namespace\":\"%s\"}]}",
	         ns);
	create_json(c, "rbac.authorization.k8s.io/v1", "rolebindings", json, NULL);
	k8s_client_free(c);
}

/* Node i's pod's IP (status.podIP, set as the kubelet would): 10.99.0.i+1;
 * nothing listens there, the address only names the pod in the
 * Endpoints the agents write (service.endpoints). */
void fo_pod_ip(const struct fo_cluster *c, size_t i, char *buf, size_t len)
{
	(void)c;
	snprintf(buf, len, "10.99.0.%zu", i + 1);
}

static void create_pod(struct fo_cluster *c, struct fo_node *nd)
{
	char json[1024], path[600], ip[32], err[512] = "";
	cJSON *ret = NULL, *patch;
	const cJSON *uid;
	int r;

	snprintf(json, sizeof(json),
	         "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
	         "\"labels\":{\"app\":\"metaservice\",\"failover\":\"%s\"}},"
	         "\"spec\":{\"nodeName\":\"%s\",\"automountServiceAccountToken\":false,"
	         "\"containers\":[{\"name\":\"metad\",\"image\":\"kubefence/metad:test\","
	         "\"ports\":[{\"name\":\"client\",\"containerPort\":%d}]}]}}",
	         nd->pod, c->tag, nd->name, nd->port > 0 ? nd->port : 7480);
	create_json(c->admin, "v1", "pods", json, &ret);
	uid = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ret, "metadata"),
	                                       "uid");
	FO_CHECK(cJSON_IsString(uid), "pod %s has no uid", nd->pod);
	snprintf(nd->uid, sizeof(nd->uid), "%s", uid->valuestring);
	cJSON_Delete(ret);
	fo_pod_ip(c, (size_t)(nd - c->node), ip, sizeof(ip));
	snprintf(json, sizeof(json), "{\"status\":{\"podIP\":\"%s\",\"podIPs\":[{\"ip\":\"%s\"}]}}",
	         ip, ip);
	patch = cJSON_Parse(json);
	FO_CHECK(k8s_path(path, sizeof(path) - 8, "v1", env("KF_IT_NS"), "pods", nd->pod) >= 0,
	         "pod path");
	strcat(path, "/status");
	r = k8s_merge_patch(c->admin, path, patch, 5000, NULL, err, sizeof(err));
	cJSON_Delete(patch);
	FO_CHECK(r == 0, "setting the IP of pod %s: %s", nd->pod, err);
}

bool fo_pod_recreate(struct fo_cluster *c, size_t i)
{
	char path[512], err[512];
	cJSON *obj = NULL;
	int r;

	FO_CHECK(k8s_path(path, sizeof(path), "v1", env("KF_IT_NS"), "pods", c->node[i].pod) >= 0,
	         "pod path");
	r = k8s_get(c->admin, path, 5000, &obj, err, sizeof(err));
	cJSON_Delete(obj);
	if (r == 0)
		return false;
	FO_CHECK(r == -ENOENT, "GET pod %s: %s", c->node[i].pod, err);
	create_pod(c, &c->node[i]);
	return true;
}

/* Pods of an earlier run that failed half-way would keep their labels. */
static void delete_leftover_pods(struct fo_cluster *c)
{
	char path[512], err[512];
	cJSON *list = NULL, *it;

	FO_CHECK(k8s_path(path, sizeof(path), "v1", env("KF_IT_NS"), "pods", NULL) >= 0, "path");
	if (k8s_list(c->admin, path, "app=metaservice", NULL, 5000, &list, err, sizeof(err)) < 0)
		return;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(list, "items"))
	{
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(
		        cJSON_GetObjectItemCaseSensitive(it, "metadata"), "name");
		char p[512];
		if (cJSON_IsString(nm) &&
		    k8s_path(p, sizeof(p), "v1", env("KF_IT_NS"), "pods", nm->valuestring) >= 0)
			(void)k8s_delete(c->admin, p, 0, NULL, NULL, 5000, err, sizeof(err));
	}
	cJSON_Delete(list);
}

/* ------------------------------------------------------------ processes */

/* Whether environment entry e ("NAME=VALUE") sets the variable of entry
 * or name n ("NAME=..." or "NAME"). */
static bool env_same(const char *e, const char *n)
{
	size_t len = strcspn(n, "=");

	return strncmp(e, n, len) == 0 && e[len] == '=';
}

/* fork + exec with PR_SET_PDEATHSIG, stdout/stderr appended to log.  The
 * environment (ours, with POD_NAME/POD_UID and the NULL-ended `extra`
 * entries replacing what they name) is prepared before fork: the child only
 * calls async-signal-safe functions (other threads may hold malloc's
 * lock). */
static pid_t spawn(const char *log, char *const argv[], const char *pod, const char *uid,
                   char (*extra)[600])
{
	size_t n = 0, k = 0;
	char **envp, podenv[128], uidenv[128];
	pid_t parent = getpid(), pid;

	while (environ[n])
		n++;
	envp = calloc(n + 3 + FO_MAX_ENV, sizeof(*envp));
	FO_CHECK(envp, "ENOMEM");
	for (size_t i = 0; i < n; i++) {
		bool replaced = false;
		for (size_t j = 0; extra && j < FO_MAX_ENV; j++)
			if (extra[j][0] && env_same(environ[i], extra[j]))
				replaced = true;
		if (!replaced && strncmp(environ[i], "POD_NAME=", 9) != 0 &&
		    strncmp(environ[i], "POD_UID=", 8) != 0)
			envp[k++] = environ[i];
	}
	if (pod) {
		snprintf(podenv, sizeof(podenv), "POD_NAME=%s", pod);
		snprintf(uidenv, sizeof(uidenv), "POD_UID=%s", uid);
		envp[k++] = podenv;
		envp[k++] = uidenv;
	}
	for (size_t j = 0; extra && j < FO_MAX_ENV; j++)
		if (extra[j][0])
			envp[k++] = extra[j];
	envp[k] = NULL;
	pid = fork();
	FO_CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execve(argv[0], argv, envp);
		_exit(127);
	}
	free(envp);
	return pid;
}

void fo_setenv(struct fo_cluster *c, size_t i, enum fo_proc p, const char *name, const char *value)
{
	char(*e)[600] = c->node[i].env[p];
	int slot = -1;

	for (int j = 0; j < FO_MAX_ENV; j++)
		if (e[j][0] && env_same(e[j], name)) {
			e[j][0] = '\0';
			if (slot < 0)
				slot = j;
		}
	if (!value)
		return;
	for (int j = 0; slot < 0 && j < FO_MAX_ENV; j++)
		if (!e[j][0])
			slot = j;
	FO_CHECK(slot >= 0, "more than %d extra environment entries for %s", FO_MAX_ENV,
	         c->node[i].name);
	FO_CHECK((size_t)snprintf(e[slot], sizeof(e[slot]), "%s=%s", name, value) < sizeof(e[slot]),
	         "environment entry %s too long", name);
}

void fo_arm(struct fo_cluster *c, size_t i, enum fo_proc p, const char *spec)
{
	fo_setenv(c, i, p, "KUBEFENCE_FAILPOINTS", spec);
	fo_setenv(c, i, p, "KUBEFENCE_FAILPOINT_DIR", spec ? c->node[i].fp_dir : NULL);
}

void fo_arm_running(struct fo_cluster *c, size_t i, const char *spec)
{
	char tmp[700], path[700];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/failpoints.tmp", c->node[i].fp_dir);
	snprintf(path, sizeof(path), "%s/failpoints", c->node[i].fp_dir);
	f = fopen(tmp, "w");
	FO_CHECK(f, "%s: %s", tmp, strerror(errno));
	fprintf(f, "%s\n", spec ? spec : "");
	FO_CHECK(fclose(f) == 0 && rename(tmp, path) == 0, "%s: %s", path, strerror(errno));
}

int fo_fired(const struct fo_cluster *c, size_t i, const char *name, usec_t *ret_mono)
{
	char path[700], line[1024], pt[256];
	unsigned long long us;
	int n = 0;
	FILE *f;

	if (ret_mono)
		*ret_mono = 0;

	snprintf(path, sizeof(path), "%s/fired", c->node[i].fp_dir);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* "REALTIME_US PID NAME ACTION" */
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llu %*s %255s", &us, pt) != 2 || strcmp(pt, name) != 0)
			continue;
		/* the file has CLOCK_REALTIME; the harness measures on the
		 * monotonic clock */
		if (n++ == 0 && ret_mono)
			*ret_mono = (usec_t)((int64_t)clock_mono_usec() -
			                     ((int64_t)hist_now_us() - (int64_t)us));
	}
	fclose(f);
	return n;
}

static void write_conf(struct fo_cluster *c, struct fo_node *nd, size_t i);

void fo_use_store_lun(struct fo_cluster *c)
{
	char lun[512], cmd[1200];
	const char *sp;

	snprintf(lun, sizeof(lun), "%s", env("KF_TGT_LUN_URLS"));
	sp = strchr(lun, ' ');
	FO_CHECK(sp && sp[1], "the harness target has no second LUN: '%s'", lun);
	snprintf(cmd, sizeof(cmd),
	         "dd if=/dev/zero of='%s/lun2.img' bs=1M count=8 conv=notrunc status=none",
	         env("KF_TGT_DIR"));
	FO_CHECK(system(cmd) == 0, "cannot zero the second LUN");
	snprintf(c->store_lun, sizeof(c->store_lun), "%s", sp + 1);
	/* every agent's fence.scsi_luns names the store's LUN (written at
	 * init with the first one) */
	for (size_t i = 0; i < c->n; i++)
		write_conf(c, &c->node[i], i);
}

static void write_conf(struct fo_cluster *c, struct fo_node *nd, size_t i)
{
	static const char *const kc[] = {"KF_IT_AGENT_KUBECONFIG_A", "KF_IT_AGENT_KUBECONFIG_B",
	                                 "KF_IT_AGENT_KUBECONFIG_C"};
	char lun[512];
	const char *sp;
	FILE *f;

	/* the first LUN of the harness target, or the metads' own */
	snprintf(lun, sizeof(lun), "%s", c->store_lun[0] ? c->store_lun : env("KF_TGT_LUN_URLS"));
	sp = strchr(lun, ' ');
	if (sp)
		lun[sp - lun] = '\0';
	f = fopen(nd->conf, "w");
	FO_CHECK(f, "%s: %s", nd->conf, strerror(errno));
	fprintf(f,
	        "# written by tests/failover (fo.c)\n"
	        "node.name = %s\n"
	        "kube.config = %s\n"
	        "kube.request_timeout_ms = %d\n"
	        "lease.name = %s\n"
	        "lease.namespace = %s\n"
	        "lease.duration_ms = %d\n"
	        "lease.renew_deadline_ms = %d\n"
	        "lease.retry_ms = %d\n"
	        "agent.control_socket = %s\n"
	        "agent.write_margin_ms = %d\n"
	        "agent.promote_timeout_ms = 5000\n"
	        "http.listen = 127.0.0.1:%d\n"
	        "service.namespace = %s\n"
	        "service.selector = app=metaservice\n"
	        "fence.methods = scsi-pr, pod-delete\n"
	        "fence.scsi_luns = %s\n"
	        "fence.timeout_ms = 3000\n"
	        "fence.total_timeout_ms = 6000\n"
	        "fence.retries = 2\n"
	        "fence.retry_ms = 100\n"
	        "fence.scsi_inflight_ms = 100\n"
	        "selffence.stop_timeout_ms = 1000\n"
	        "selffence.watchdog_device = %s/watchdog\n"
	        "agent.lock_file = %s/agent.lock\n"
	        "log.level = info\n"
	        "log.monotonic = true\n",
	        nd->name, nd->kubeconfig[0] ? nd->kubeconfig : env(kc[i]), FO_REQUEST_MS, c->lease,
	        env("KF_IT_NS"), FO_LEASE_MS, FO_RENEW_MS, FO_RETRY_MS, nd->sock, FO_MARGIN_MS,
	        nd->http_port, env("KF_IT_NS"), lun, nd->dir, nd->dir);
	fputs(nd->extra_conf, f);
	fclose(f);
}

void fo_conf_extra(struct fo_cluster *c, size_t i, const char *lines)
{
	str_copy(c->node[i].extra_conf, sizeof(c->node[i].extra_conf), lines);
	write_conf(c, &c->node[i], i);
}

/* A free UDP port on loopback: bound to port 0 and read back.  (The
 * kernel may hand it out again before the agent binds it; the agent then
 * fails to start, loudly.) */
static int free_udp_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), port = -1;

	FO_CHECK(fd >= 0, "socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	FO_CHECK(port > 0, "no free UDP port on loopback: %s", strerror(errno));
	return port;
}

void fo_use_failsafe(struct fo_cluster *c, bool enabled)
{
	char key[600], peers[256] = "", lines[sizeof(c->node[0].extra_conf)];
	int port[FO_MAX_NODES];
	size_t used = 0;
	FILE *f;

	snprintf(key, sizeof(key), "%s/failsafe.key", c->base);
	f = fopen(key, "w");
	FO_CHECK(f &&
	                 fprintf(f, "%s: the shared secret of this cluster's agents, 0123456789\n",
	                         c->tag) > 0 &&
	                 fclose(f) == 0,
	         "%s: %s", key, strerror(errno));
	for (size_t i = 0; i < c->n; i++) {
		port[i] = free_udp_port();
		used += (size_t)snprintf(peers + used, sizeof(peers) - used, "%s%s=127.0.0.1:%d",
		                         i ? ", " : "", c->node[i].name, port[i]);
	}
	for (size_t i = 0; i < c->n; i++) {
		int n = snprintf(lines, sizeof(lines),
		                 "%sfailsafe.enabled = %s\n"
		                 "failsafe.listen = 127.0.0.1:%d\n"
		                 "failsafe.peers = %s\n"
		                 "failsafe.key_file = %s\n",
		                 c->node[i].extra_conf, enabled ? "yes" : "no", port[i], peers,
		                 key);

		FO_CHECK(n > 0 && (size_t)n < sizeof(lines), "%s: the conf lines are too long",
		         c->node[i].name);
		fo_conf_extra(c, i, lines);
	}
}

void fo_cluster_init(struct fo_cluster *c, const char *tag, size_t n)
{
	char d[600];

	FO_CHECK(n >= 2 && n <= FO_MAX_NODES, "bad node count %zu", n);
	memset(c, 0, sizeof(*c));
	snprintf(c->tag, sizeof(c->tag), "%s", tag);
	snprintf(c->lease, sizeof(c->lease), "failover-%s", tag);
	snprintf(d, sizeof(d), "%s/failover", env("KF_IT_DIR"));
	mkdir(d, 0755);
	snprintf(c->base, sizeof(c->base), "%s/failover/%s", env("KF_IT_DIR"), tag);
	if (mkdir(c->base, 0755) < 0 && errno == EEXIST) {
		/* a run before in the same control plane: keep its logs and
		 * data aside, the checkers read this run's only */
		char old[600];
		snprintf(old, sizeof(old), "%s.%" PRId64, c->base, (int64_t)clock_mono_usec());
		FO_CHECK(rename(c->base, old) == 0 && mkdir(c->base, 0755) == 0, "mkdir %s: %s",
		         c->base, strerror(errno));
	}
	FO_CHECK(access(c->base, W_OK) == 0, "%s: %s", c->base, strerror(errno));
	snprintf(c->data, sizeof(c->data), "%s/data", c->base);
	FO_CHECK(mkdir(c->data, 0755) == 0 || errno == EEXIST, "mkdir %s", c->data);
	snprintf(c->history, sizeof(c->history), "%s/history", c->base);
	{
		int r = hist_open(c->history, &c->hist);
		FO_CHECK(r == 0, "history %s: %s", c->history, strerror(-r));
	}
	c->n = n;
	c->admin = admin_client();
	delete_leftover_pods(c);
	for (size_t i = 0; i < n; i++) {
		struct fo_node *nd = &c->node[i];
		snprintf(nd->name, sizeof(nd->name), "node-%c", (char)('a' + i));
		snprintf(nd->dir, sizeof(nd->dir), "%s/%s", c->base, nd->name);
		FO_CHECK(mkdir(nd->dir, 0755) == 0 || errno == EEXIST, "mkdir %s", nd->dir);
		snprintf(nd->conf, sizeof(nd->conf), "%s/agent.conf", nd->dir);
		snprintf(nd->agent_log, sizeof(nd->agent_log), "%s/agent.log", nd->dir);
		snprintf(nd->metad_log, sizeof(nd->metad_log), "%s/metad.log", nd->dir);
		snprintf(nd->sock, sizeof(nd->sock), "%s/control.sock", nd->dir);
		{
			/* a regular file stands in for /dev/watchdog: the agent's
			 * feeding is what the tests read */
			char wd[620];
			FILE *f;

			snprintf(wd, sizeof(wd), "%s/watchdog", nd->dir);
			f = fopen(wd, "w");
			FO_CHECK(f && fclose(f) == 0, "%s: %s", wd, strerror(errno));
		}
		snprintf(nd->fp_dir, sizeof(nd->fp_dir), "%s/fp", nd->dir);
		FO_CHECK(mkdir(nd->fp_dir, 0755) == 0 || errno == EEXIST, "mkdir %s", nd->fp_dir);
		snprintf(nd->pod, sizeof(nd->pod), "%s-meta-%c", tag, (char)('a' + i));
		nd->port = free_port();
		nd->http_port = free_port();
		create_pod(c, nd);
		write_conf(c, nd, i);
	}
}

void fo_proxy_rules(struct fo_cluster *c, size_t i, const char *rules)
{
	struct fo_node *nd = &c->node[i];
	char tmp[620];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", nd->proxy_rules);
	f = fopen(tmp, "w");
	FO_CHECK(f && fputs(rules, f) >= 0 && fclose(f) == 0, "%s: %s", tmp, strerror(errno));
	FO_CHECK(rename(tmp, nd->proxy_rules) == 0, "rename %s: %s", tmp, strerror(errno));
}

void fo_proxy(struct fo_cluster *c, size_t i)
{
	static const char *const kc[] = {"KF_IT_AGENT_KUBECONFIG_A", "KF_IT_AGENT_KUBECONFIG_B",
	                                 "KF_IT_AGENT_KUBECONFIG_C"};
	struct fo_node *nd = &c->node[i];
	char pki[600], cert[700], key[700], portf[700], cmd[2200], line[1024], url[64];
	const char *ca = env("KF_IT_CA"), *bin = env("KF_FAULTPROXY");
	FILE *in, *out;
	int port = 0;
	char dir[480];

	snprintf(dir, sizeof(dir), "%s", nd->dir); /* not to alias nd's fields */
	/* the harness CA (DIR/pki/ca.*) signs the proxy's certificate */
	snprintf(pki, sizeof(pki), "%s", ca);
	*strrchr(pki, '/') = '\0';
	*strrchr(pki, '/') = '\0';
	snprintf(cert, sizeof(cert), "%s/proxy.crt", dir);
	snprintf(key, sizeof(key), "%s/proxy.key", dir);
	snprintf(cmd, sizeof(cmd), "bash '%s/tests/proxy/mkcert.sh' '%s' '%s' >/dev/null 2>&1",
	         env("top_srcdir"), pki, dir);
	FO_CHECK(system(cmd) == 0 && access(cert, R_OK) == 0, "mkcert for %s failed", nd->name);
	snprintf(nd->proxy_rules, sizeof(nd->proxy_rules), "%s/proxy.rules", dir);
	snprintf(nd->proxy_log, sizeof(nd->proxy_log), "%s/proxy.log", dir);
	snprintf(portf, sizeof(portf), "%s/proxy.port", dir);
	fo_proxy_rules(c, i, "# no rule: every request passes\n");
	{
		char *argv[] = {(char *)bin,
		                "--listen",
		                "127.0.0.1:0",
		                "--port-file",
		                portf,
		                "--cert",
		                cert,
		                "--key",
		                key,
		                "--upstream",
		                (char *)env("KF_IT_SERVER"),
		                "--upstream-ca",
		                (char *)ca,
		                "--rules",
		                nd->proxy_rules,
		                "--log",
		                nd->proxy_log,
		                NULL};
		char plog[700];

		snprintf(plog, sizeof(plog), "%s/proxy.stderr", dir);
		nd->proxy_pid = spawn(plog, argv, NULL, NULL, NULL);
	}
	for (int t = 0; t < 500 && !port; t++) {
		FILE *pf = fopen(portf, "r");

		if (pf) {
			if (fscanf(pf, "%d", &port) != 1)
				port = 0;
			fclose(pf);
		}
		if (!port)
			usleep(10000);
	}
	FO_CHECK(port > 0, "kf-faultproxy for %s did not start", nd->name);
	/* the agent's own kubeconfig, its server replaced by the proxy */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", port);
	snprintf(nd->kubeconfig, sizeof(nd->kubeconfig), "%s/proxy.kubeconfig", dir);
	in = fopen(env(kc[i]), "r");
	out = fopen(nd->kubeconfig, "w");
	FO_CHECK(in && out, "kubeconfig copy: %s", strerror(errno));
	while (fgets(line, sizeof(line), in)) {
		const char *srv = strstr(line, "server:");

		if (srv)
			fprintf(out, "%.*sserver: %s\n", (int)(srv - line), line, url);
		else
			fputs(line, out);
	}
	fclose(in);
	fclose(out);
	write_conf(c, nd, i);
}

void fo_agent_start(struct fo_cluster *c, size_t i)
{
	struct fo_node *nd = &c->node[i];
	char *argv[] = {(char *)env("KF_IT_AGENT"), "--config", nd->conf, NULL};

	FO_CHECK(nd->agent_pid <= 0, "agent %s already runs", nd->name);
	nd->agent_pid = spawn(nd->agent_log, argv, NULL, NULL, nd->env[FO_AGENT]);
}

void fo_metad_start(struct fo_cluster *c, size_t i)
{
	struct fo_node *nd = &c->node[i];
	char listen[64];
	char *argv[] = {(char *)env("KF_METAD"),
	                "--control-socket",
	                nd->sock,
	                "--data-dir",
	                c->data,
	                "--listen",
	                listen,
	                "--idle-timeout-ms",
	                "10000",
	                NULL,
	                NULL,
	                NULL,
	                NULL};

	if (c->store_lun[0]) {
		argv[3] = "--store";
		argv[4] = c->store_lun;
		argv[9] = "--node";
		argv[10] = nd->name;
		argv[11] = "--format-unused-lun";
	}

	FO_CHECK(nd->metad_pid <= 0, "metad %s already runs", nd->name);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", nd->port);
	nd->metad_pid = spawn(nd->metad_log, argv, nd->pod, nd->uid, nd->env[FO_METAD]);
	nd->metad_started = clock_mono_usec();
}

/* Whether every thread of pid is in the stopped state ("T" in
 * /proc/PID/task/TID/stat). */
static bool all_threads_stopped(pid_t pid)
{
	char path[64], buf[512];
	struct dirent *de;
	bool all = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return false;
	while (all && (de = readdir(d))) {
		char sp[128];
		const char *rp;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(sp, sizeof(sp), "/proc/%d/task/%.20s/stat", (int)pid, de->d_name);
		f = fopen(sp, "r");
		if (!f)
			continue; /* the thread is gone */
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
		rp = strrchr(buf, ')');
		all = rp && rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
	}
	closedir(d);
	return all;
}

static usec_t signal_pid(pid_t *pid, int sig, const char *what)
{
	usec_t t, end;

	FO_CHECK(*pid > 0, "%s does not run", what);
	t = clock_mono_usec();
	FO_CHECK(kill(*pid, sig) == 0, "kill %s: %s", what, strerror(errno));
	if (sig == SIGKILL) {
		waitpid(*pid, NULL, 0);
		*pid = 0;
	} else if (sig == SIGSTOP) {
		/* kill() returns before the stop: a thread running on another
		 * CPU goes on until it is interrupted.  Tests that act right
		 * after a SIGSTOP must act on a stopped process. */
		end = clock_mono_usec() + USEC_PER_SEC;
		while (!all_threads_stopped(*pid)) {
			FO_CHECK(clock_mono_usec() < end, "%s did not stop within 1 s of SIGSTOP",
			         what);
			usleep(200);
		}
	}
	return t;
}

usec_t fo_agent_signal(struct fo_cluster *c, size_t i, int sig)
{
	return signal_pid(&c->node[i].agent_pid, sig, "agent");
}

usec_t fo_metad_signal(struct fo_cluster *c, size_t i, int sig)
{
	return signal_pid(&c->node[i].metad_pid, sig, "metad");
}

int fo_agent_wait(struct fo_cluster *c, size_t i, long timeout_ms)
{
	struct fo_node *nd = &c->node[i];
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	int status;

	while (nd->agent_pid > 0 && clock_mono_usec() < end) {
		if (waitpid(nd->agent_pid, &status, WNOHANG) == nd->agent_pid) {
			nd->agent_pid = 0;
			return status;
		}
		usleep(10000);
	}
	return -1;
}

static void stop_pid(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGCONT);
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

void fo_cluster_stop(struct fo_cluster *c)
{
	char path[512], err[512];

	for (size_t i = 0; i < c->n; i++) {
		stop_pid(&c->node[i].agent_pid);
		stop_pid(&c->node[i].metad_pid);
		stop_pid(&c->node[i].proxy_pid);
	}
	for (size_t i = 0; c->admin && i < c->n; i++)
		if (k8s_path(path, sizeof(path), "v1", env("KF_IT_NS"), "pods", c->node[i].pod) >=
		    0)
			(void)k8s_delete(c->admin, path, 0, NULL, NULL, 5000, err, sizeof(err));
	c->admin = k8s_client_free(c->admin);
	c->hist = hist_close(c->hist);
}

/* Register node i's key on the LUN (kubefencectl scsi join), as a node that
 * writes to the LUN would be: a fence then has a key to preempt. */
static void scsi_join(struct fo_cluster *c, size_t i)
{
	char lun[512], log[600];
	char *argv[] = {(char *)env("KF_IT_CTL"), "scsi", "join", "--lun", lun, "--node",
	                c->node[i].name,          NULL};
	const char *sp;
	int status;
	pid_t pid;

	snprintf(lun, sizeof(lun), "%s", env("KF_TGT_LUN_URLS"));
	sp = strchr(lun, ' ');
	if (sp)
		lun[sp - lun] = '\0';
	snprintf(log, sizeof(log), "%s/scsi-join.log", c->node[i].dir);
	pid = spawn(log, argv, NULL, NULL, NULL);
	FO_CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	         "kubefencectl scsi join --node %s failed (status %d, see %s)", c->node[i].name,
	         status, log);
}

void fo_cluster_start(struct fo_cluster *c)
{
	struct stat st;
	usec_t end;

	for (size_t i = 0; i < c->n; i++)
		scsi_join(c, i);
	for (size_t i = 0; i < c->n; i++)
		fo_agent_start(c, i);
	end = clock_mono_usec() + 10 * USEC_PER_SEC;
	for (size_t i = 0; i < c->n; i++)
		while (stat(c->node[i].sock, &st) < 0) {
			if (clock_mono_usec() > end) {
				fo_dump(c->node[i].agent_log);
				fo_fail("agent %s did not create its control socket",
				        c->node[i].name);
			}
			usleep(10000);
		}
	fo_metad_start(c, 0);
	if (fo_wait_master(c, -1, 15000) != 0) {
		fo_dump(c->node[0].agent_log);
		fo_dump(c->node[0].metad_log);
		fo_fail("%s did not become master", c->node[0].name);
	}
	if (c->one_metad)
		return;
	for (size_t i = 1; i < c->n; i++)
		fo_metad_start(c, i);
	end = clock_mono_usec() + 10 * USEC_PER_SEC;
	for (size_t i = 1; i < c->n; i++)
		while (kft_log_count(c->node[i].agent_log, NULL, "service '", c->node[i].pod,
		                     "connected", NULL) < 1) {
			FO_CHECK(clock_mono_usec() < end, "metad %s never connected to its agent",
			         c->node[i].name);
			usleep(10000);
		}
}

/* --------------------------------------------------------------- client */

void fo_conn_init(struct fo_conn *cn, int port)
{
	cn->fd = -1;
	cn->port = port;
	cn->len = 0;
}

void fo_conn_close(struct fo_conn *cn)
{
	if (cn->fd >= 0)
		close(cn->fd);
	cn->fd = -1;
	cn->len = 0;
}

static int conn_open(struct fo_conn *cn, usec_t deadline)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)cn->port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int r = tcp_connect((struct sockaddr *)&a, sizeof(a), deadline, &cn->fd);

	cn->len = 0;
	if (r < 0)
		cn->fd = -1;
	return r;
}

enum fo_result fo_request(struct fo_conn *cn, int op, const char *key, const char *value,
                          long timeout_ms, char *val, size_t vallen)
{
	usec_t deadline = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	struct pbuf out = {0};
	struct proto_resp resp;
	int r;

	if (val && vallen)
		val[0] = '\0';
	cn->sent = false;
	if (cn->fd < 0 && conn_open(cn, deadline) < 0)
		return FO_CONN;
	r = proto_encode_request(&out, (enum proto_op)op, key, key ? strlen(key) : 0, value,
	                         value ? strlen(value) : 0, 0);
	if (r < 0) {
		pbuf_free(&out);
		return FO_CONN;
	}
	/* from here on the server may have the request, or a part of it:
	 * fd_send_all() does not say how much went out before a failure */
	cn->sent = true;
	if (fd_send_all(cn->fd, out.data, out.len, deadline) < 0) {
		pbuf_free(&out);
		fo_conn_close(cn);
		return FO_CONN;
	}
	pbuf_free(&out);
	r = kft_wire_read_unit(cn->fd, cn->buf, sizeof(cn->buf), &cn->len, deadline, &resp);
	if (r < 0) {
		fo_conn_close(cn);
		return FO_CONN;
	}
	enum fo_result res;
	switch (resp.kind) {
	case PROTO_R_OK:
		res = FO_OK;
		break;
	case PROTO_R_VALUE:
	case PROTO_R_STATS:
		res = FO_VALUE;
		if (val && vallen) {
			size_t n = resp.len < vallen - 1 ? resp.len : vallen - 1;
			memcpy(val, resp.data, n);
			val[n] = '\0';
		}
		break;
	case PROTO_R_NOTFOUND:
		res = FO_NOTFOUND;
		break;
	case PROTO_R_NOTMASTER:
		res = FO_NOTMASTER;
		if (val && vallen)
			snprintf(val, vallen, "%s", resp.text);
		break;
	case PROTO_R_ERR:
		res = FO_ERR;
		if (val && vallen)
			snprintf(val, vallen, "%s", resp.text);
		break;
	default:
		fo_conn_close(cn);
		return FO_CONN;
	}
	kft_wire_consume(cn->buf, &cn->len, (size_t)r);
	return res;
}

enum hist_result fo_classify(int op, enum fo_result r, const char *text, bool sent)
{
	static const enum hist_result of[] = {
	        [PROTO_MADE] = HIST_OK, [PROTO_NOT_MADE] = HIST_FAIL, [PROTO_UNKNOWN] = HIST_INFO};
	enum proto_resp_kind kind;

	if (op == PROTO_OP_GET)
		return r == FO_VALUE || r == FO_NOTFOUND ? HIST_OK : HIST_FAIL;
	switch (r) {
	case FO_OK:
		kind = PROTO_R_OK;
		break;
	case FO_NOTFOUND:
		kind = PROTO_R_NOTFOUND;
		break;
	case FO_NOTMASTER:
		kind = PROTO_R_NOTMASTER;
		break;
	case FO_ERR:
		kind = PROTO_R_ERR;
		break;
	case FO_CONN:
		kind = PROTO_R_NONE;
		break;
	default:
		kind = PROTO_R_VALUE; /* a value to a write: a confused server */
		break;
	}
	/* PROTOCOL.md, "What a client may conclude" */
	return of[proto_write_outcome(kind, text, sent)];
}

/* The name a history gives the server on port: its node, or the address. */
static void master_name(const struct fo_cluster *c, int port, char *buf, size_t len)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->node[i].port == port) {
			snprintf(buf, len, "%s", c->node[i].name);
			return;
		}
	snprintf(buf, len, "127.0.0.1:%d", port);
}

enum fo_result fo_op(struct fo_cluster *c, struct fo_conn *cn, const char *client, int op,
                     const char *key, const char *value, long timeout_ms, char *val, size_t vallen)
{
	char master[64], got[1100];
	enum hist_op hop = op == PROTO_OP_PUT ? HIST_PUT : op == PROTO_OP_GET ? HIST_GET : HIST_DEL;
	enum hist_result res;
	enum fo_result r;
	uint64_t t0, t1;
	int k;

	FO_CHECK(op == PROTO_OP_PUT || op == PROTO_OP_GET || op == PROTO_OP_DEL,
	         "fo_op: op %d is not PUT/GET/DEL", op);
	t0 = hist_now_us();
	r = fo_request(cn, op, key, value, timeout_ms, got, sizeof(got));
	t1 = hist_now_us();
	res = fo_classify(op, r, got, cn->sent);
	if (!c->hist)
		goto out;
	master_name(c, cn->port, master, sizeof(master));
	k = hist_record(c->hist, client, hop, key,
	                op == PROTO_OP_PUT                    ? value
	                : op == PROTO_OP_GET && r == FO_VALUE ? got
	                                                      : NULL,
	                t0, t1, res, master);
	/* A record missing makes the history unjudgeable; workload threads
	 * must not abort, so fo_check_history() reports it. */
	if (k < 0 && __atomic_fetch_add(&c->hist_errors, 1, __ATOMIC_RELAXED) == 0)
		snprintf(c->hist_error, sizeof(c->hist_error), "cannot record %s %s '%.64s': %s",
		         client, hist_op_name(hop), key, strerror(-k));
out:
	if (val && vallen)
		snprintf(val, vallen, "%s", got);
	return r;
}

int fo_stat(const struct fo_cluster *c, size_t i, char *role, size_t rolelen, int64_t *epoch)
{
	struct fo_conn cn;
	char text[4096];
	const char *p;
	enum fo_result r;

	fo_conn_init(&cn, c->node[i].port);
	r = fo_request(&cn, PROTO_OP_STAT, NULL, NULL, 300, text, sizeof(text));
	fo_conn_close(&cn);
	if (r != FO_VALUE)
		return -EIO;
	if (role && rolelen) {
		role[0] = '\0';
		p = strstr(text, "role=");
		if (p)
			snprintf(role, rolelen, "%.*s", (int)strcspn(p + 5, "\n"), p + 5);
	}
	if (epoch) {
		p = strstr(text, "\nepoch=");
		*epoch = p ? atoll(p + 7) : -1;
	}
	return 0;
}

int fo_wait_master(struct fo_cluster *c, int not, long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	char role[32];

	do {
		for (size_t i = 0; i < c->n; i++)
			if ((int)i != not &&c->node[i].metad_pid > 0 &&
			    fo_stat(c, i, role, sizeof(role), NULL) == 0 &&
			    strcmp(role, "master") == 0)
				return (int)i;
		usleep(20000);
	} while (clock_mono_usec() < end);
	return -1;
}

bool fo_wait_role(struct fo_cluster *c, size_t i, const char *want, long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	char role[32];

	do {
		if (fo_stat(c, i, role, sizeof(role), NULL) == 0 && strcmp(role, want) == 0)
			return true;
		usleep(20000);
	} while (clock_mono_usec() < end);
	return false;
}

/* ------------------------------------------------------------- workload */

static void add_ack(struct fo_workload *w, const struct fo_ack *a)
{
	pthread_mutex_lock(&w->mu);
	if (w->n_acks == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		struct fo_ack *v = realloc(w->acks, cap * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&w->mu);
			return;
		}
		w->acks = v;
		w->cap = cap;
	}
	w->acks[w->n_acks++] = *a;
	pthread_mutex_unlock(&w->mu);
}

static void *wl_main(void *arg)
{
	struct fo_workload *w = arg;
	struct fo_cluster *c = w->c;
	struct fo_conn cn[FO_MAX_NODES];
	uint64_t since_probe = 0, vseq = 0;
	char txt[512];

	for (size_t i = 0; i < c->n; i++)
		fo_conn_init(&cn[i], c->node[i].port);
	while (!w->stop) {
		bool acked = false;

		if (w->reads_only) {
			usleep(10000);
			continue;
		}
		for (size_t k = 0; k < c->n && !w->stop; k++) {
			int s = (int)((__atomic_load_n(&w->current, __ATOMIC_RELAXED) + k) % c->n);
			struct fo_ack a = {.seq = w->next_seq++, .srv = s};
			enum fo_result r;

			/* a new key per attempt: a timed-out write that lands
			 * late can never overwrite an acknowledged one */
			snprintf(a.key, sizeof(a.key), "w%010" PRIu64, a.seq);
			snprintf(a.value, sizeof(a.value), "c0-%" PRIu64, vseq++);
			a.sent = clock_mono_usec();
			r = fo_op(c, &cn[s], "c0", PROTO_OP_PUT, a.key, a.value, w->timeout_ms, txt,
			          sizeof(txt));
			__atomic_add_fetch(&w->attempts, 1, __ATOMIC_RELAXED);
			if (r == FO_OK) {
				a.acked = clock_mono_usec();
				add_ack(w, &a);
				__atomic_store_n(&w->current, s, __ATOMIC_RELAXED);
				acked = true;
				break;
			}
			if (r == FO_NOTMASTER)
				__atomic_add_fetch(&w->refused, 1, __ATOMIC_RELAXED);
			else
				__atomic_add_fetch(&w->errors, 1, __ATOMIC_RELAXED);
		}
		if (!acked) {
			usleep(1000);
			continue;
		}
		if (w->probe_every > 0 && ++since_probe >= (uint64_t)w->probe_every) {
			since_probe = 0;
			for (size_t s = 0; s < c->n; s++) {
				struct fo_ack a = {
				        .seq = w->next_probe++, .srv = (int)s, .probe = true};
				if ((int)s == w->current)
					continue;
				snprintf(a.key, sizeof(a.key), "p%010" PRIu64, a.seq);
				snprintf(a.value, sizeof(a.value), "c0-%" PRIu64, vseq++);
				a.sent = clock_mono_usec();
				if (fo_op(c, &cn[s], "c0", PROTO_OP_PUT, a.key, a.value, 100, txt,
				          sizeof(txt)) == FO_OK) {
					a.acked = clock_mono_usec();
					add_ack(w, &a);
				}
			}
		}
		if (w->pause_us > 0)
			usleep((useconds_t)w->pause_us);
	}
	for (size_t i = 0; i < c->n; i++)
		fo_conn_close(&cn[i]);
	return NULL;
}

struct mixed_arg {
	struct fo_workload *w;
	int id;
};

/* A recently acknowledged key of the writer (one of its last 16), or false
 * when it acknowledged nothing yet. */
static bool recent_ack(struct fo_workload *w, uint64_t rnd, char *key, size_t keylen)
{
	bool found = false;

	pthread_mutex_lock(&w->mu);
	if (w->n_acks > 0) {
		size_t back = (size_t)(rnd % 16);
		if (back >= w->n_acks)
			back = w->n_acks - 1;
		snprintf(key, keylen, "%s", w->acks[w->n_acks - 1 - back].key);
		found = true;
	}
	pthread_mutex_unlock(&w->mu);
	return found;
}

static void *mixed_main(void *arg)
{
	struct mixed_arg *x = arg;
	struct fo_workload *w = x->w;
	struct fo_cluster *c = w->c;
	struct fo_conn cn[FO_MAX_NODES];
	char client[16], key[64], value[64], txt[512];
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(x->id + 1), vseq = 0;
	usec_t t0 = clock_mono_usec();
	int s = __atomic_load_n(&w->current, __ATOMIC_RELAXED);

	snprintf(client, sizeof(client), "c%d", x->id);
	for (size_t i = 0; i < c->n; i++)
		fo_conn_init(&cn[i], c->node[i].port);
	while (!w->stop) {
		uint64_t gen = (clock_mono_usec() - t0) / (2 * USEC_PER_SEC);
		int op = PROTO_OP_GET, pick;
		enum fo_result r;

		/* xorshift64: reproducible per client, no shared state */
		rnd ^= rnd << 13;
		rnd ^= rnd >> 7;
		rnd ^= rnd << 17;
		pick = (int)(rnd % 10);
		snprintf(key, sizeof(key), "r%" PRIu64 "-%d", gen, (int)((rnd >> 8) % 8));
		if (w->reads_only && pick < 7) {
			pick = 7; /* a GET of a recent key of the writer */
		}
		if (pick < 3) {
			op = PROTO_OP_PUT;
			snprintf(value, sizeof(value), "%s-%" PRIu64, client, vseq++);
		} else if (pick == 3) {
			op = PROTO_OP_DEL;
		} else if (pick >= 7 && !recent_ack(w, rnd >> 16, key, sizeof(key))) {
			snprintf(key, sizeof(key), "r%" PRIu64 "-0", gen);
		}
		r = fo_op(c, &cn[s], client, op, key, op == PROTO_OP_PUT ? value : NULL,
		          w->timeout_ms, txt, sizeof(txt));
		__atomic_add_fetch(&w->mixed_ops, 1, __ATOMIC_RELAXED);
		if (r == FO_OK || r == FO_VALUE || r == FO_NOTFOUND) {
			__atomic_add_fetch(&w->mixed_ok, 1, __ATOMIC_RELAXED);
		} else {
			/* follow the writer, or try the next metad */
			int cur = __atomic_load_n(&w->current, __ATOMIC_RELAXED);
			s = cur != s ? cur : (s + 1) % (int)c->n;
			usleep(1000);
		}
		usleep(w->pause_us > 0 ? (useconds_t)w->pause_us * 2 : 2000);
	}
	for (size_t i = 0; i < c->n; i++)
		fo_conn_close(&cn[i]);
	free(x);
	return NULL;
}

void fo_workload_start(struct fo_workload *w, struct fo_cluster *c)
{
	/* the caller may have set probe_every, timeout_ms, pause_us, current,
	 * mixed */
	w->c = c;
	w->stop = false;
	if (!w->timeout_ms)
		w->timeout_ms = 200;
	FO_CHECK(w->mixed >= 0 && w->mixed <= FO_MAX_MIXED, "bad mixed client count %d", w->mixed);
	pthread_mutex_init(&w->mu, NULL);
	FO_CHECK(pthread_create(&w->thread, NULL, wl_main, w) == 0, "pthread_create");
	for (int i = 0; i < w->mixed; i++) {
		struct mixed_arg *x = calloc(1, sizeof(*x));
		FO_CHECK(x, "ENOMEM");
		x->w = w;
		x->id = i + 1;
		FO_CHECK(pthread_create(&w->mixed_thread[i], NULL, mixed_main, x) == 0,
		         "pthread_create");
	}
}

void fo_workload_stop(struct fo_workload *w)
{
	w->stop = true;
	pthread_join(w->thread, NULL);
	for (int i = 0; i < w->mixed; i++)
		pthread_join(w->mixed_thread[i], NULL);
}

void fo_workload_free(struct fo_workload *w)
{
	free(w->acks);
	w->acks = NULL;
	w->n_acks = w->cap = 0;
	pthread_mutex_destroy(&w->mu);
}

usec_t fo_first_ack_after(struct fo_workload *w, int srv, usec_t t)
{
	usec_t r = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_acks; i++)
		if ((srv < 0 || w->acks[i].srv == srv) && w->acks[i].acked >= t) {
			r = w->acks[i].acked;
			break;
		}
	pthread_mutex_unlock(&w->mu);
	return r;
}

usec_t fo_last_ack(struct fo_workload *w, int srv)
{
	usec_t r = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t i = w->n_acks; i-- > 0;)
		if (srv < 0 || w->acks[i].srv == srv) {
			r = w->acks[i].acked;
			break;
		}
	pthread_mutex_unlock(&w->mu);
	return r;
}

size_t fo_acks_count(struct fo_workload *w, int srv, usec_t from)
{
	size_t n = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_acks; i++)
		if ((srv < 0 || w->acks[i].srv == srv) && w->acks[i].acked >= from)
			n++;
	pthread_mutex_unlock(&w->mu);
	return n;
}

size_t fo_acks_sent_after(struct fo_workload *w, int srv, usec_t t)
{
	size_t n = 0;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_acks; i++)
		if ((srv < 0 || w->acks[i].srv == srv) && w->acks[i].sent >= t)
			n++;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void fo_acks_dump(struct fo_workload *w, int srv, usec_t t)
{
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_acks; i++)
		if ((srv < 0 || w->acks[i].srv == srv) && w->acks[i].acked >= t)
			printf("ack srv=%d key=%s sent=%+.6f s acked=%+.6f s\n", w->acks[i].srv,
			       w->acks[i].key, ((double)w->acks[i].sent - (double)t) / 1e6,
			       ((double)w->acks[i].acked - (double)t) / 1e6);
	pthread_mutex_unlock(&w->mu);
}

usec_t fo_wait_ack(struct fo_workload *w, int srv, usec_t t, long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC, r;

	while (!(r = fo_first_ack_after(w, srv, t))) {
		if (clock_mono_usec() > end)
			return 0;
		usleep(1000);
	}
	return r;
}

/* -------------------------------------------------------------- watcher */

struct wa_args {
	struct fo_watcher *wa;
	struct k8s_client *client;
};

static void *wa_main(void *arg)
{
	struct wa_args *x = arg;
	struct fo_watcher *wa = x->wa;
	char path[512], err[512];

	(void)k8s_path(path, sizeof(path), "v1", env("KF_IT_NS"), "pods", NULL);
	while (!wa->stop) {
		cJSON *list = NULL, *items, *it;
		int r = k8s_list(x->client, path, "role=master", NULL, 1000, &list, err,
		                 sizeof(err));
		usec_t now = clock_mono_usec();

		pthread_mutex_lock(&wa->mu);
		if (r < 0) {
			wa->failed_lists++;
		} else {
			char names[400] = "";
			int n = 0;
			items = cJSON_GetObjectItemCaseSensitive(list, "items");
			cJSON_ArrayForEach(it, items)
			{
				const cJSON *nm = cJSON_GetObjectItemCaseSensitive(
				        cJSON_GetObjectItemCaseSensitive(it, "metadata"), "name");
				size_t l = strlen(names);
				if (cJSON_IsString(nm))
					snprintf(names + l, sizeof(names) - l, "%s%s", n ? "," : "",
					         nm->valuestring);
				n++;
			}
			wa->observations++;
			if (n > 1) {
				wa->violations++;
				snprintf(wa->violation, sizeof(wa->violation),
				         "%d pods labelled role=master at mono %" PRId64 ": %s", n,
				         (int64_t)now, names);
			}
			if (strcmp(names, wa->last_master) != 0) {
				snprintf(wa->last_master, sizeof(wa->last_master), "%s", names);
				wa->last_change = now;
			}
		}
		pthread_mutex_unlock(&wa->mu);
		cJSON_Delete(list);
		usleep((useconds_t)wa->interval_ms * 1000);
	}
	k8s_client_free(x->client);
	free(x);
	return NULL;
}

void fo_watcher_start(struct fo_watcher *wa, struct fo_cluster *c)
{
	struct wa_args *x = calloc(1, sizeof(*x));

	FO_CHECK(x, "ENOMEM");
	memset(wa, 0, sizeof(*wa));
	wa->c = c;
	wa->interval_ms = 20;
	pthread_mutex_init(&wa->mu, NULL);
	x->wa = wa;
	x->client = admin_client();
	FO_CHECK(pthread_create(&wa->thread, NULL, wa_main, x) == 0, "pthread_create");
}

void fo_watcher_stop(struct fo_watcher *wa)
{
	wa->stop = true;
	pthread_join(wa->thread, NULL);
	pthread_mutex_destroy(&wa->mu);
}

/* ------------------------------------------------------------- checkers */

size_t fo_terms(const struct fo_cluster *c, struct fo_term *out, size_t max)
{
	size_t n = 0;
	char line[4096];

	for (size_t i = 0; i < c->n; i++) {
		FILE *f = fopen(c->node[i].agent_log, "r");
		if (!f)
			continue;
		while (n < max && fgets(line, sizeof(line), f)) {
			const char *m, *ep;
			long long s, us;
			if (!strstr(line, "event=leading"))
				continue;
			m = strstr(line, " mono=");
			ep = strstr(line, " epoch=");
			if (!m || !ep || sscanf(m, " mono=%lld.%lld", &s, &us) != 2)
				continue;
			out[n].from = (usec_t)s * USEC_PER_SEC + us;
			out[n].epoch = atoll(ep + 7);
			out[n].node = (int)i;
			out[n].continued = strstr(line, "succession=continued") != NULL;
			n++;
		}
		fclose(f);
	}
	return n;
}

#define WHY(...)                                                                                   \
	do {                                                                                       \
		snprintf(why, whylen, __VA_ARGS__);                                                \
		ok = false;                                                                        \
		goto out;                                                                          \
	} while (0)

/* The term an ack was given in: its server's latest term begun before it
 * (NULL: none). */
static const struct fo_term *term_of(const struct fo_term *terms, size_t nt, const struct fo_ack *a)
{
	const struct fo_term *t = NULL;

	for (size_t j = 0; j < nt; j++)
		if (terms[j].node == a->srv && terms[j].from <= a->acked &&
		    (!t || terms[j].from > t->from))
			t = &terms[j];
	return t;
}

/* The first ack of a write in `epoch`, or USEC_INFINITY. */
static usec_t first_ack_of(const struct fo_workload *w, const struct fo_term *terms, size_t nt,
                           int64_t epoch)
{
	usec_t first = USEC_INFINITY;

	for (size_t i = 0; i < w->n_acks; i++) {
		const struct fo_term *t = term_of(terms, nt, &w->acks[i]);

		if (t && t->epoch == epoch && w->acks[i].acked < first)
			first = w->acks[i].acked;
	}
	return first;
}

bool fo_check(struct fo_cluster *c, struct fo_workload *w, int final, char *why, size_t whylen)
{
	struct fo_term terms[256];
	size_t nt = fo_terms(c, terms, 256);
	usec_t newer_from[256]; /* when term j counts as begun, for older masters */
	int64_t max_epoch = -1;
	const struct fo_ack *max_ack = NULL;
	struct fo_conn cn;
	char val[256];
	bool ok = true;

	fo_conn_init(&cn, c->node[final].port);
	/* one leader per epoch: only the same node may take its own term
	 * over (a new incarnation of its agent: same-node succession) */
	for (size_t i = 0; i < nt; i++)
		for (size_t j = i + 1; j < nt; j++)
			if (terms[i].epoch == terms[j].epoch &&
			    !((terms[i].continued || terms[j].continued) &&
			      terms[i].node == terms[j].node))
				WHY("epoch %" PRId64 " led twice (%s and %s)", terms[i].epoch,
				    c->node[terms[i].node].name, c->node[terms[j].node].name);
	/* riding through, a newer term counts from its first ack */
	for (size_t j = 0; j < nt; j++)
		newer_from[j] = c->ride_through ? first_ack_of(w, terms, nt, terms[j].epoch)
		                                : terms[j].from;
	for (size_t i = 0; i < w->n_acks; i++) {
		const struct fo_ack *a = &w->acks[i];
		const struct fo_term *t = term_of(terms, nt, a);

		if (!t)
			WHY("%s acknowledged '%s' at mono %" PRId64 " without ever leading before",
			    c->node[a->srv].name, a->key, (int64_t)a->acked);
		/* no newer term had started when the write was sent (riding
		 * through: no newer term's master had acknowledged one) */
		for (size_t j = 0; j < nt; j++)
			if (terms[j].epoch > t->epoch && newer_from[j] < a->sent)
				WHY("%s acknowledged '%s' (sent at mono %" PRId64
				    ") in epoch %" PRId64 ", after %s started epoch %" PRId64
				    " at mono %" PRId64,
				    c->node[a->srv].name, a->key, (int64_t)a->sent, t->epoch,
				    c->node[terms[j].node].name, terms[j].epoch,
				    (int64_t)terms[j].from);
		/* epochs never go back in ack order: once a newer master acknowledged,
		 * an older one never does again */
		if (t->epoch < max_epoch)
			WHY("%s acknowledged '%s' at mono %" PRId64 " in epoch %" PRId64
			    " after %s acknowledged '%s' at mono %" PRId64 " in epoch %" PRId64,
			    c->node[a->srv].name, a->key, (int64_t)a->acked, t->epoch,
			    c->node[max_ack->srv].name, max_ack->key, (int64_t)max_ack->acked,
			    max_epoch);
		if (t->epoch > max_epoch) {
			max_epoch = t->epoch;
			max_ack = a;
		}
	}
	/* every acknowledged write is on the final master */
	for (size_t i = 0; i < w->n_acks; i++) {
		const struct fo_ack *a = &w->acks[i];
		enum fo_result r =
		        fo_op(c, &cn, "final", PROTO_OP_GET, a->key, NULL, 2000, val, sizeof(val));
		if (r != FO_VALUE || strcmp(val, a->value) != 0)
			WHY("acknowledged write '%s'='%s' (%s, mono %" PRId64
			    ") lost on the final master %s: %s '%s'",
			    a->key, a->value, c->node[a->srv].name, (int64_t)a->acked,
			    c->node[final].name,
			    r == FO_VALUE      ? "reads"
			    : r == FO_NOTFOUND ? "not found"
			                       : "error",
			    val);
	}
out:
	fo_conn_close(&cn);
	return ok;
}

int fo_finish_checks(struct fo_cluster *c, struct fo_workload *w, struct fo_watcher *wa,
                     long wait_ms, struct fo_verdict *v)
{
	char why[2048] = "";
	int final;

	usleep(500 * 1000);
	fo_workload_stop(w);
	fo_watcher_stop(wa);
	final = fo_wait_master(c, -1, wait_ms);
	FO_CHECK(final >= 0, "no master at the end");
	if (!fo_check(c, w, final, why, sizeof(why)))
		fo_fail("safety check failed: %s", why);
	FO_CHECK(wa->violations == 0, "%s", wa->violation);
	if (!fo_check_history(c, final, v, why, sizeof(why)))
		fo_fail("history check failed: %s", why);
	return final;
}

/* ------------------------------------------------------------ histories */

struct keyset {
	char **v;
	size_t n, cap;
};

static void keyset_add(struct keyset *k, const char *key)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 1024;
		char **v = realloc(k->v, cap * sizeof(*v));
		FO_CHECK(v, "ENOMEM");
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n] = strdup(key);
	FO_CHECK(k->v[k->n], "ENOMEM");
	k->n++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, without duplicates. */
static void keyset_sort(struct keyset *k)
{
	size_t j = 0;

	if (k->n)
		qsort(k->v, k->n, sizeof(*k->v), cmp_str);
	for (size_t i = 0; i < k->n; i++) {
		if (j > 0 && strcmp(k->v[j - 1], k->v[i]) == 0) {
			free(k->v[i]);
			continue;
		}
		k->v[j++] = k->v[i];
	}
	k->n = j;
}

static bool keyset_has(const struct keyset *k, const char *key)
{
	return k->n && bsearch(&key, k->v, k->n, sizeof(*k->v), cmp_str);
}

static void keyset_free(struct keyset *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

/* GET from the master `final` every key the history wrote that the client
 * "final" has not read yet, recorded.  Returns the reads made. */
static long final_reads(struct fo_cluster *c, int final)
{
	struct keyset written = {0}, read = {0};
	char line[4096], client[1100], op[8], key[1100], val[256];
	struct fo_conn cn;
	long n = 0;
	FILE *f = fopen(c->history, "r");

	FO_CHECK(f, "%s: %s", c->history, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || sscanf(line, "%1099s %7s %1099s", client, op, key) != 3)
			continue;
		if (strcmp(op, "put") == 0 || strcmp(op, "del") == 0)
			keyset_add(&written, key);
		else if (strcmp(client, "final") == 0)
			keyset_add(&read, key);
	}
	fclose(f);
	keyset_sort(&written);
	keyset_sort(&read);
	fo_conn_init(&cn, c->node[final].port);
	for (size_t i = 0; i < written.n; i++) {
		if (keyset_has(&read, written.v[i]))
			continue;
		(void)fo_op(c, &cn, "final", PROTO_OP_GET, written.v[i], NULL, 2000, val,
		            sizeof(val));
		n++;
	}
	fo_conn_close(&cn);
	keyset_free(&written);
	keyset_free(&read);
	return n;
}

/* "lincheck: N ops, ..., verdict V" from kf-lincheck's output. */
static void read_summary(struct fo_verdict *v)
{
	char line[4096];
	FILE *f = fopen(v->output, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "lincheck: "), *vd;
		long ops;
		if (!p)
			continue;
		if (sscanf(p, "lincheck: %ld ops", &ops) == 1)
			v->ops = ops;
		vd = strstr(p, "verdict ");
		if (vd)
			snprintf(v->verdict, sizeof(v->verdict), "%.*s",
			         (int)strcspn(vd + 8, " ,\n"), vd + 8);
	}
	fclose(f);
}

/* Counts and the verdict from kf-lincheck's --json file. */
static void read_json(struct fo_verdict *v, const char *path)
{
	static const struct {
		const char *name;
		size_t off;
	} nums[] = {
	        {"ops", offsetof(struct fo_verdict, ops)},
	        {"ok", offsetof(struct fo_verdict, ok)},
	        {"fail", offsetof(struct fo_verdict, fail)},
	        {"info", offsetof(struct fo_verdict, info)},
	        {"info_dropped", offsetof(struct fo_verdict, info_dropped)},
	};
	char *text = NULL;
	size_t len = 0;
	cJSON *j, *it;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	if (getdelim(&text, &len, '\0', f) < 0) {
		free(text);
		fclose(f);
		return;
	}
	fclose(f);
	j = cJSON_Parse(text);
	free(text);
	for (size_t i = 0; j && i < sizeof(nums) / sizeof(nums[0]); i++) {
		it = cJSON_GetObjectItemCaseSensitive(j, nums[i].name);
		if (cJSON_IsNumber(it))
			*(long *)((char *)v + nums[i].off) = (long)it->valuedouble;
	}
	it = cJSON_GetObjectItemCaseSensitive(j, "verdict");
	if (cJSON_IsString(it))
		snprintf(v->verdict, sizeof(v->verdict), "%s", it->valuestring);
	cJSON_Delete(j);
}

bool fo_check_history(struct fo_cluster *c, int final, struct fo_verdict *v, char *why,
                      size_t whylen)
{
	const char *lc = getenv("KF_LINCHECK"), *ci = getenv("CI");
	char json[600];
	char *argv[] = {(char *)lc, "--json", json, c->history, NULL};
	usec_t end;
	int status = 0;
	pid_t pid;

	memset(v, 0, sizeof(*v));
	v->ops = v->ok = v->fail = v->info = v->info_dropped = -1;
	v->status = -1;
	if (c->hist_errors) {
		snprintf(why, whylen, "history %s: %" PRIu64 " records missing; the first: %s",
		         c->history, c->hist_errors, c->hist_error);
		return false;
	}
	v->final_reads = final_reads(c, final);
	if (c->hist_errors) {
		snprintf(why, whylen, "history %s: %" PRIu64 " records missing; the first: %s",
		         c->history, c->hist_errors, c->hist_error);
		return false;
	}
	if (!lc || !*lc || access(lc, X_OK) != 0) {
		if (ci && strcmp(ci, "true") == 0) {
			snprintf(why, whylen,
			         "kf-lincheck is not there (KF_LINCHECK='%s'): the history %s "
			         "cannot be judged, and CI=true",
			         lc ? lc : "", c->history);
			return false;
		}
		printf("%s: WARNING: kf-lincheck is not built (KF_LINCHECK='%s'); history %s "
		       "NOT judged\n",
		       c->tag, lc ? lc : "", c->history);
		fflush(stdout);
		return true;
	}
	snprintf(json, sizeof(json), "%s/lincheck.json", c->base);
	snprintf(v->output, sizeof(v->output), "%s/lincheck.out", c->base);
	(void)unlink(v->output);
	(void)unlink(json);
	pid = spawn(v->output, argv, NULL, NULL, NULL);
	end = clock_mono_usec() + 300 * USEC_PER_SEC;
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (clock_mono_usec() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			snprintf(why, whylen, "kf-lincheck took more than 300 s on %s", c->history);
			return false;
		}
		usleep(20000);
	}
	v->judged = true;
	v->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	read_summary(v);
	read_json(v, json);
	if (v->status == 0) {
		printf("%s: history %s: %ld ops (%ld ok, %ld fail, %ld info of which %ld never "
		       "observable; %ld final reads), verdict %s\n",
		       c->tag, c->history, v->ops, v->ok, v->fail, v->info, v->info_dropped,
		       v->final_reads, v->verdict[0] ? v->verdict : "?");
		fflush(stdout);
		return true;
	}
	fo_dump(v->output);
	snprintf(why, whylen,
	         "kf-lincheck %s: exit %d (%s) on %s (%ld ops); its output is above "
	         "and in %s",
	         v->status == 1 ? "found a violation" : "could not judge", v->status,
	         v->verdict[0]    ? v->verdict
	         : v->status == 2 ? "bad input"
	                          : "?",
	         c->history, v->ops, v->output);
	return false;
}
