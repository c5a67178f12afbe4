/* it: helpers for the integration tests (see it.h). */
#include "config.h"

#include "tests/integration/it.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/k8s.h"
#include "lib/util.h"
#include "tests/lib/kftest.h"

const char *it_env(const char *name)
{
	return kft_env(name, "tests/integration/control-plane.test (make check)");
}

struct k8s_client *it_client_for(const char *kubeconfig_env)
{
	struct k8s_client *c = NULL;
	char err[512] = "";

	ck_assert_msg(k8s_client_new(it_env(kubeconfig_env), NULL, &c, err, sizeof(err)) == 0,
	              "%s: %s", kubeconfig_env, err);
	return c;
}

struct k8s_client *it_admin_client(void)
{
	struct k8s_client *c = NULL;
	char err[512] = "";
	int r = k8s_client_new(it_env("KF_IT_ADMIN_KUBECONFIG"), NULL, &c, err, sizeof(err));

	ck_assert_msg(r == 0, "admin client: %s", err);
	return c;
}

void it_agent_start(struct it_agent *a, const char *name, const char *kubeconfig,
                    const char *lease_name, const char *extra)
{
	const char *dir = it_env("KF_IT_DIR");
	const char *agent = it_env("KF_IT_AGENT");
	FILE *f;
	pid_t pid, parent;

	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	mkdir(dir, 0755);
	snprintf(a->conf, sizeof(a->conf), "%s/agents", dir);
	mkdir(a->conf, 0755);
	snprintf(a->conf, sizeof(a->conf), "%s/agents/%s-%s.conf", dir, lease_name, name);
	snprintf(a->log, sizeof(a->log), "%s/agents/%s-%s.log", dir, lease_name, name);
	f = fopen(a->conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "# written by the integration test\n"
	        "node.name = %s\n"
	        "kube.config = %s\n"
	        "lease.name = %s\n"
	        "lease.namespace = %s\n"
	        "log.level = debug\n"
	        "log.monotonic = true\n"
	        "%s\n",
	        name, kubeconfig, lease_name, it_env("KF_IT_NS"), extra ? extra : "");
	fclose(f);

	parent = getpid();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* A failed assertion ends the test process at once; its agents
		 * must not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		execl(agent, "kubefence-agent", "--config", a->conf, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", agent, strerror(errno));
		_exit(127);
	}
	a->pid = pid;
}

void it_agent_signal(struct it_agent *a, int sig)
{
	ck_assert_int_gt(a->pid, 0);
	if (sig == SIGKILL)
		a->killed_at = clock_mono_usec();
	ck_assert_int_eq(kill(a->pid, sig), 0);
}

int it_agent_wait(struct it_agent *a, long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	int status;

	if (a->pid <= 0)
		return -1;
	while (clock_mono_usec() < end) {
		pid_t r = waitpid(a->pid, &status, WNOHANG);
		if (r == a->pid) {
			a->pid = 0;
			return status;
		}
		usleep(10000);
	}
	it_agent_reap(a);
	return -1;
}

void it_agent_reap(struct it_agent *a)
{
	if (a->pid <= 0)
		return;
	if (!a->killed_at)
		a->killed_at = clock_mono_usec();
	kill(a->pid, SIGKILL);
	waitpid(a->pid, NULL, 0);
	a->pid = 0;
}

int it_lease_get(struct k8s_client *c, const char *name, struct lease_record *ret)
{
	char path[512], err[512] = "";
	cJSON *obj = NULL;
	int r;

	r = k8s_path(path, sizeof(path), "coordination.k8s.io/v1", it_env("KF_IT_NS"), "leases",
	             name);
	ck_assert_int_ge(r, 0);
	r = k8s_get(c, path, 2000, &obj, err, sizeof(err));
	if (r >= 0) {
		r = lease_record_from_json(obj, ret, err, sizeof(err));
		ck_assert_msg(r == 0, "lease '%s': %s", name, err);
	}
	cJSON_Delete(obj);
	return r;
}

usec_t it_lease_wait_holder(struct k8s_client *c, const char *name, const char *not_holder,
                            long timeout_ms, struct lease_record *ret)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	struct lease_record r;

	while (clock_mono_usec() < end) {
		if (it_lease_get(c, name, &r) == 0 && r.holder[0] &&
		    (!not_holder || strcmp(r.holder, not_holder) != 0)) {
			if (ret)
				*ret = r;
			return clock_mono_usec();
		}
		usleep(10000);
	}
	return 0;
}

int it_log_count(const struct it_agent *a, usec_t *ret_mono, ...)
{
	va_list ap;
	int count;

	va_start(ap, ret_mono);
	count = kft_log_vcount(a->log, ret_mono, ap);
	va_end(ap);
	return count;
}

size_t it_leadership(const struct it_agent *a, struct it_interval *out, size_t max, usec_t now)
{
	char line[4096];
	size_t n = 0;
	bool open_iv = false;
	FILE *f = fopen(a->log, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f) && n < max) {
		const char *ep;
		if (strstr(line, "event=leading")) {
			out[n].from = kft_log_mono(line);
			out[n].who = a->name;
			ep = strstr(line, "epoch=");
			out[n].epoch = ep ? atoll(ep + 6) : -1;
			open_iv = true;
		} else if (open_iv && strstr(line, "event=stopped-leading")) {
			out[n++].to = kft_log_mono(line);
			open_iv = false;
		}
	}
	fclose(f);
	if (open_iv && n < max)
		out[n++].to = a->killed_at ? a->killed_at : now;
	return n;
}

void it_assert_no_overlap(struct it_agent *agents, size_t n)
{
	struct it_interval iv[256];
	size_t k = 0;
	usec_t now = clock_mono_usec();

	for (size_t i = 0; i < n; i++)
		k += it_leadership(&agents[i], iv + k, ELEMENTSOF(iv) - k, now);
	for (size_t i = 0; i < k; i++) {
		ck_assert_msg(iv[i].from > 0 && iv[i].to >= iv[i].from,
		              "bad interval for %s (log without mono stamps?)", iv[i].who);
		for (size_t j = i + 1; j < k; j++) {
			bool overlap = iv[i].from < iv[j].to && iv[j].from < iv[i].to;
			if (overlap)
				for (size_t m = 0; m < n; m++)
					it_agent_dump(&agents[m]);
			ck_assert_msg(!overlap,
			              "leadership overlaps: %s epoch %lld [%lld, %lld] and %s "
			              "epoch %lld [%lld, %lld] (mono us)",
			              iv[i].who, (long long)iv[i].epoch, (long long)iv[i].from,
			              (long long)iv[i].to, iv[j].who, (long long)iv[j].epoch,
			              (long long)iv[j].from, (long long)iv[j].to);
			ck_assert_msg(iv[i].epoch != iv[j].epoch, "epoch %lld used twice",
			              (long long)iv[i].epoch);
		}
	}
}

void it_agent_dump(const struct it_agent *a)
{
	char line[4096];
	FILE *f = fopen(a->log, "r");

	fprintf(stderr, "----- log of agent %s (%s)\n", a->name, a->log);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

void it_record(const char *what, double seconds)
{
	kft_measured(it_env("KF_IT_DIR"), what, seconds);
}
