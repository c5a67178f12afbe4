/* check_conf: unit tests of lib/conf (the generic table-driven reader) and
 * nodeagent/agent_conf (the agent's keys and cross-key checks).
 *
 * Besides the TCases below, two corpora drive the tests: every file of
 * tests/unit/conf/good must load without a problem, and every file of
 * tests/unit/conf/bad must fail with exactly the messages its leading
 * `# expect: <message after "FILE:">` lines announce.  Each file is its own
 * loop iteration, so adding a file adds a case. */
#include "config.h"

#include "lib/conf.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/agent_conf.h"
#include "tests/lib/kftest.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_DIR   TEST_SRCDIR "/unit/conf"
#define DOC_PATH   TEST_SRCDIR "/../docs/configuration.md"
#define MAX_CORPUS 256

/* The corpus, listed once before the suite is built (sorted). */
static char *good_files[MAX_CORPUS], *bad_files[MAX_CORPUS];
static size_t n_good, n_bad;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t list_corpus(const char *dir, char **out)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "cannot open %s: %s\n", dir, strerror(errno));
		exit(EXIT_FAILURE);
	}
	while ((de = readdir(d)) && n < MAX_CORPUS) {
		size_t len = strlen(de->d_name);

		if (len > 5 && strcmp(de->d_name + len - 5, ".conf") == 0)
			out[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(out, n, sizeof(*out), cmp_str);
	return n;
}

static void corpus_free(void)
{
	for (size_t i = 0; i < n_good; i++)
		free(good_files[i]);
	for (size_t i = 0; i < n_bad; i++)
		free(bad_files[i]);
}

static void set_test_env(void)
{
	setenv("KF_TEST_NODE_NAME", "node-7", 1);
	setenv("KF_TEST_SUFFIX", "a", 1);
	unsetenv("KF_TEST_UNSET_VAR");
}

static char *corpus_path(const char *sub, const char *name)
{
	char *p = NULL;

	ck_assert_int_ge(asprintf(&p, "%s/%s/%s", CONF_DIR, sub, name), 0);
	return p;
}

/* Capture what a printing function writes. */
struct capture {
	char *buf;
	size_t len;
	FILE *f;
};

static void capture_start(struct capture *c)
{
	*c = (struct capture){0};
	c->f = open_memstream(&c->buf, &c->len);
	ck_assert_ptr_nonnull(c->f);
}

static char *capture_end(struct capture *c)
{
	ck_assert_int_eq(fclose(c->f), 0);
	return c->buf;
}

/* ------------------------------------------------------------ corpus */

START_TEST(test_good_file)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", good_files[_i]);
	int r;

	set_test_env();
	r = agent_conf_load(path, &c, &errs);
	if (r != 0)
		conf_errors_print(&errs, stderr);
	ck_assert_msg(r == 0, "%s: load returned %d", good_files[_i], r);
	ck_assert_uint_eq(conf_errors_count(&errs), 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_null(agent_conf_free(c));
	conf_errors_done(&errs);
	free(path);
}
END_TEST

START_TEST(test_bad_file)
{
	char *expected[64], *actual[64], *path = corpus_path("bad", bad_files[_i]);
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	size_t n_exp = 0, plen = strlen(path);
	char line[1024];
	FILE *f;
	int r;

	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) && strncmp(line, "# expect: ", 10) == 0) {
		line[strcspn(line, "\n")] = '\0';
		ck_assert_uint_lt(n_exp, ELEMENTSOF(expected));
		expected[n_exp++] = strdup(line + 10);
	}
	fclose(f);
	ck_assert_msg(n_exp > 0, "%s: no '# expect:' line first", bad_files[_i]);

	set_test_env();
	r = agent_conf_load(path, &c, &errs);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n_lost, 0);
	for (size_t i = 0; i < errs.n; i++) {
		const char *m = errs.msg[i];

		/* Strip `PATH:` and, for messages without a line, the blank. */
		ck_assert_msg(strncmp(m, path, plen) == 0 && m[plen] == ':', "bad prefix: %s", m);
		m += plen + 1;
		if (*m == ' ')
			m++;
		ck_assert_uint_lt(i, ELEMENTSOF(actual));
		actual[i] = (char *)m;
	}
	qsort(expected, n_exp, sizeof(*expected), cmp_str);
	qsort(actual, errs.n, sizeof(*actual), cmp_str);
	for (size_t i = 0; i < n_exp || i < errs.n; i++)
		ck_assert_msg(i < n_exp && i < errs.n && strcmp(expected[i], actual[i]) == 0,
		              "%s: expected '%s', got '%s'", bad_files[_i],
		              i < n_exp ? expected[i] : "(nothing)",
		              i < errs.n ? actual[i] : "(nothing)");
	for (size_t i = 0; i < n_exp; i++)
		free(expected[i]);
	conf_errors_done(&errs);
	free(path);
}
END_TEST

/* ------------------------------------------------------------ agent */

/* The value of `key` in a dump (the text after "KEY = " up to the end of
 * its line), copied into buf; false when the dump has no such line. */
static bool dump_value(const char *dump, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);
	const char *p = dump, *end;

	while ((p = strstr(p, key))) {
		if ((p == dump || p[-1] == '\n') && strncmp(p + klen, " = ", 3) == 0) {
			p += klen + 3;
			end = strchr(p, '\n');
			if (!end)
				end = p + strlen(p);
			snprintf(buf, len, "%.*s", (int)(end - p), p);
			return true;
		}
		p += klen;
	}
	return false;
}

/* The value of line `line` of file `path` when that line sets `key`, as
 * conf_dump() would write it for a key of type `type` (booleans as
 * true/false, lists joined by ", "); false when the line sets another key. */
static bool file_value(const char *path, int line, const char *key, const char *type, char *buf,
                       size_t len)
{
	char text[1024], *v, *e;
	FILE *f = fopen(path, "re");
	size_t klen = strlen(key);
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(text, sizeof(text), f) && ++n < line)
		;
	fclose(f);
	if (n != line || strncmp(text, key, klen) != 0)
		return false;
	v = text + klen + strspn(text + klen, " \t");
	if (*v != '=')
		return false;
	v += 1 + strspn(v + 1, " \t");
	e = v + strlen(v);
	while (e > v && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	if (strcmp(type, "boolean") == 0) {
		static const char *const yes[] = {"true", "yes", "on", "1"};
		static const char *const no[] = {"false", "no", "off", "0"};

		snprintf(buf, len, "%s", v);
		for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
			if (strcasecmp(v, yes[i]) == 0)
				snprintf(buf, len, "true");
			if (strcasecmp(v, no[i]) == 0)
				snprintf(buf, len, "false");
		}
	} else if (strcmp(type, "list") == 0) {
		size_t o = 0;

		buf[0] = '\0';
		for (char *save = NULL, *t = strtok_r(v, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			char *te = t + strlen(t);

			t += strspn(t, " \t");
			while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
				*--te = '\0';
			o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%s", o ? ", " : "",
			                      t);
		}
	} else {
		snprintf(buf, len, "%s", v);
	}
	return true;
}

/* Every key of the agent's table: all_keys.conf sets it, away from its
 * default, and the agent read exactly the value the file gives.  The keys
 * come from the table itself (its reference, printed by the program), so a
 * new key that this file does not set fails here. */
START_TEST(test_all_keys_values)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL, *d = NULL;
	char *path = corpus_path("good", "all_keys.conf");
	char *minimal = corpus_path("good", "minimal.conf");
	char *ref, *dump, *defaults, *p, *save = NULL;
	struct capture cap;
	size_t n_keys = 0, n_dump = 0, n_file = 0;
	char text[1024];
	FILE *f;

	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	ck_assert_int_eq(agent_conf_load(minimal, &d, &errs), 0);
	capture_start(&cap);
	agent_conf_print_reference(cap.f);
	ref = capture_end(&cap);
	capture_start(&cap);
	agent_conf_dump(c, cap.f);
	dump = capture_end(&cap);
	capture_start(&cap);
	agent_conf_dump(d, cap.f);
	defaults = capture_end(&cap);

	/* The reference's key table: "| `KEY` | TYPE | ...", one row per key. */
	p = strstr(ref, "\n| Key | Type |");
	ck_assert_ptr_nonnull(p);
	for (char *row = strtok_r(p, "\n", &save); row; row = strtok_r(NULL, "\n", &save)) {
		char key[128], type[32], got[1024], want[1024], def[1024];
		int line;

		if (sscanf(row, "| `%127[^`]` | %31[a-z] |", key, type) != 2)
			continue;
		n_keys++;
		line = conf_key_line(c->source, key);
		ck_assert_msg(line > 0, "%s: all_keys.conf does not set it", key);
		ck_assert_msg(dump_value(dump, key, got, sizeof(got)), "%s: not in the dump", key);
		ck_assert_msg(!strstr(got, "  # "), "%s: dumped as '%s'", key, got);
		ck_assert_msg(file_value(path, line, key, type, want, sizeof(want)),
		              "%s: line %d of all_keys.conf does not set it", key, line);
		ck_assert_msg(strcmp(got, want) == 0,
		              "%s (%s): the file says '%s', the agent read '%s'", key, type, want,
		              got);
		ck_assert_msg(dump_value(defaults, key, def, sizeof(def)), "%s: not in the dump",
		              key);
		def[strcspn(def, "#")] = '\0';
		for (size_t l = strlen(def); l > 0 && def[l - 1] == ' '; l--)
			def[l - 1] = '\0';
		/* a key whose other value excludes another key's setting */
		if (strcmp(key, "agent.fence_without_service") != 0)
			ck_assert_msg(strcmp(got, def) != 0,
			              "%s: all_keys.conf sets its default '%s'", key, def);
	}
	/* as many keys as the dump has lines (after its heading) and the file
	 * has settings: none missed, none extra */
	for (p = dump; (p = strchr(p, '\n')) && p[1]; p++)
		n_dump++;
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(text, sizeof(text), f))
		n_file += text[0] != '#' && strchr(text, '=') != NULL;
	fclose(f);
	ck_assert_uint_gt(n_keys, 0);
	ck_assert_uint_eq(n_dump, n_keys);
	ck_assert_uint_eq(n_file, n_keys);

	/* The typed fields behind the keys, one by one. */
	ck_assert_str_eq(c->node.name, "worker-1.example");
	ck_assert_str_eq(c->agent.identity, "worker-1-agent");
	ck_assert_str_eq(c->agent.control_socket, "/var/run/kubefence/agent.sock");
	ck_assert_int_eq(c->agent.control_uid, 1000);
	ck_assert_int_eq(c->agent.write_margin_ms, 500);
	ck_assert_int_eq(c->agent.promote_timeout_ms, 30000);
	ck_assert_str_eq(c->lease.name, "db-primary");
	ck_assert_str_eq(c->lease.namespace, "databases");
	ck_assert_int_eq(c->lease.duration_ms, 10000);
	ck_assert_int_eq(c->lease.renew_deadline_ms, 8000);
	ck_assert_int_eq(c->lease.retry_ms, 1000);
	ck_assert_str_eq(c->kube.config, "/etc/kubefence/kubeconfig");
	ck_assert_str_eq(c->kube.context, "prod");
	ck_assert_int_eq(c->kube.request_timeout_ms, 5000);
	ck_assert_int_eq(c->log.level, LOG_LEVEL_DEBUG);
	ck_assert(c->log.monotonic);
	ck_assert_str_eq(c->http.listen, "[::1]:9100");
	ck_assert_str_eq(c->service.namespace, "metadata");
	ck_assert_str_eq(c->service.selector, "app=metaservice,role in (master)");
	ck_assert_str_eq(c->service.role_label, "kubefence.io-role=primary");
	ck_assert_str_eq(c->service.endpoints, "metaservice-rw");
	ck_assert_str_eq(c->service.probe, "http://127.0.0.1:7480/healthz");
	ck_assert(!c->agent.fence_without_service);
	ck_assert_int_eq(c->agent.fence_give_up_ms, 60000);
	ck_assert_int_eq(c->agent.restart_grace_ms, 45000);
	ck_assert_int_eq(c->service.probe_interval_ms, 1000);
	ck_assert_str_eq(c->fence.methods[0], "scsi-pr");
	ck_assert_str_eq(c->fence.methods[1], "out-of-service");
	ck_assert_str_eq(c->fence.methods[2], "pod-delete");
	ck_assert_str_eq(c->fence.methods[3], "volume-detach");
	ck_assert_ptr_null(c->fence.methods[4]);
	ck_assert_str_eq(c->fence.released_methods[0], "volume-detach");
	ck_assert_ptr_null(c->fence.released_methods[1]);
	ck_assert_int_eq(c->fence.timeout_ms, 5000);
	ck_assert_int_eq(c->fence.total_timeout_ms, 12000);
	ck_assert_int_eq(c->fence.retries, 1);
	ck_assert_int_eq(c->fence.retry_ms, 250);
	ck_assert_str_eq(c->fence.pvc, "metaservice-data");
	ck_assert(c->fence.out_of_service_taint);
	ck_assert_str_eq(c->fence.scsi_luns[0], "iscsi://10.0.0.5/iqn.2003-01.org.example:meta/1");
	ck_assert_str_eq(c->fence.scsi_luns[1],
	                 "iscsi://10.0.0.6:3261/iqn.2003-01.org.example:meta/2");
	ck_assert_ptr_null(c->fence.scsi_luns[2]);
	ck_assert_str_eq(c->fence.scsi_iqn_prefix, "iqn.2024-01.example.kubefence");
	ck_assert_int_eq(c->selffence.stop_timeout_ms, 1500);
	ck_assert_int_eq(c->selffence.kill_timeout_ms, 3000);
	ck_assert_str_eq(c->selffence.watchdog_device, "/dev/watchdog0");
	ck_assert(c->failsafe.enabled);
	ck_assert_str_eq(c->failsafe.listen, "10.0.0.7:7946");
	ck_assert_str_eq(c->failsafe.peers[0], "worker-1-agent=10.0.0.7:7946");
	ck_assert_str_eq(c->failsafe.peers[1], "worker-2-agent=10.0.0.8:7946");
	ck_assert_ptr_null(c->failsafe.peers[2]);
	ck_assert_str_eq(c->failsafe.key_file, "/etc/kubefence/failsafe/key");
	ck_assert_int_eq(conf_key_line(c->source, "node.name"), 2);
	ck_assert_int_eq(conf_key_line(c->source, "log.monotonic"), 13);
	free(defaults);
	free(dump);
	free(ref);
	agent_conf_free(d);
	agent_conf_free(c);
	free(minimal);
	free(path);
}
END_TEST

START_TEST(test_minimal_defaults)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", "minimal.conf");

	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	ck_assert_str_eq(c->node.name, "node-1");
	ck_assert_str_eq(c->agent.identity, "node-1"); /* derived after load */
	ck_assert_str_eq(c->lease.name, "kubefence");
	ck_assert_str_eq(c->lease.namespace, "kubefence");
	ck_assert_int_eq(c->lease.duration_ms, 4000);
	ck_assert_int_eq(c->lease.renew_deadline_ms, 3000);
	ck_assert_int_eq(c->lease.retry_ms, 500);
	ck_assert_str_eq(c->kube.config, "in-cluster");
	ck_assert_str_eq(c->kube.context, "");
	ck_assert_int_eq(c->kube.request_timeout_ms, 2000);
	ck_assert_int_eq(c->log.level, LOG_LEVEL_INFO);
	ck_assert(!c->log.monotonic);
	ck_assert_int_eq(conf_key_line(c->source, "node.name"), 1);
	ck_assert_int_eq(conf_key_line(c->source, "lease.name"), 0);
	ck_assert_int_eq(conf_key_line(c->source, "no.such.key"), -ENOENT);
	agent_conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_env_expansion)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", "env.conf");

	set_test_env();
	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	ck_assert_str_eq(c->node.name, "node-7");
	ck_assert_str_eq(c->agent.identity, "node-7-a");
	ck_assert_str_eq(c->kube.context, "${ctx}-$5");
	agent_conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_comments_and_blanks)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", "comments.conf");

	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	ck_assert_str_eq(c->node.name, "node-2");
	ck_assert_str_eq(c->lease.name, "lease-a");
	ck_assert_int_eq(c->log.level, LOG_LEVEL_WARNING);
	ck_assert_str_eq(c->kube.config, "/etc/k8s/a#b.conf");
	ck_assert_int_eq(conf_key_line(c->source, "node.name"), 3);
	agent_conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_cannot_open)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = (struct agent_conf *)&errs; /* must stay untouched */

	ck_assert_int_eq(agent_conf_load(CONF_DIR "/no-such.conf", &c, &errs), -ENOENT);
	ck_assert_ptr_eq(c, (struct agent_conf *)&errs);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0],
	                 CONF_DIR "/no-such.conf: cannot open: No such file or directory");
	conf_errors_done(&errs);
}
END_TEST

START_TEST(test_empty_file)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;

	ck_assert_int_eq(agent_conf_load("/dev/null", &c, &errs), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], "/dev/null: node.name: required key is missing");
	conf_errors_done(&errs);
}
END_TEST

/* Errors accumulate over several loads into one list. */
START_TEST(test_errors_accumulate)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;

	ck_assert_int_eq(agent_conf_load("/dev/null", &c, &errs), -EINVAL);
	ck_assert_int_eq(agent_conf_load("/dev/null", &c, &errs), -EINVAL);
	ck_assert_uint_eq(conf_errors_count(&errs), 2);
	conf_errors_done(&errs);
	ck_assert_uint_eq(conf_errors_count(&errs), 0);
	ck_assert_ptr_null(errs.msg);
	conf_errors_done(NULL);
}
END_TEST

START_TEST(test_free_null)
{
	ck_assert_ptr_null(agent_conf_free(NULL));
	ck_assert_ptr_null(conf_source_free(NULL));
	conf_target_free(NULL, 0, NULL);
}
END_TEST

START_TEST(test_dump_marks_defaults)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", "minimal.conf");
	struct capture cap;
	char *out, *expected = NULL;

	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	capture_start(&cap);
	agent_conf_dump(c, cap.f);
	out = capture_end(&cap);
	ck_assert_int_ge(asprintf(&expected,
	                          "# effective configuration read from %s\n"
	                          "node.name = node-1\n"
	                          "agent.identity = node-1  # derived: the value of node.name\n"
	                          "agent.control_socket = /run/kubefence/control.sock  # default\n"
	                          "agent.control_uid = -1  # default\n"
	                          "agent.write_margin_ms = 250  # default\n"
	                          "agent.lock_file =   # default\n"
	                          "agent.on_sigterm = handover  # default\n"
	                          "agent.restart_grace_ms = 0  # default\n"
	                          "agent.api_outage = demote  # default\n"
	                          "agent.fence_without_service = false  # default\n"
	                          "agent.fence_give_up_ms = 30000  # default\n"
	                          "agent.promote_timeout_ms = 15000  # default\n"
	                          "lease.name = kubefence  # default\n"
	                          "lease.namespace = kubefence  # default\n"
	                          "lease.duration_ms = 4000  # default\n"
	                          "lease.renew_deadline_ms = 3000  # default\n"
	                          "lease.retry_ms = 500  # default\n"
	                          "kube.config = in-cluster  # default\n"
	                          "kube.context =   # default\n"
	                          "kube.request_timeout_ms = 2000  # default\n"
	                          "log.level = info  # default\n"
	                          "log.monotonic = false  # default\n"
	                          "http.listen = 0.0.0.0:9464  # default\n"
	                          "service.namespace = default  # default\n"
	                          "service.selector =   # default\n"
	                          "service.role_label = role=master  # default\n"
	                          "service.endpoints =   # default\n"
	                          "service.probe =   # default\n"
	                          "service.probe_interval_ms = 500  # default\n"
	                          "service.heartbeat_ms = 200  # default\n"
	                          "service.heartbeat_timeout_ms = 1000  # default\n"
	                          "fence.methods =   # default\n"
	                          "fence.released_methods =   # default\n"
	                          "fence.timeout_ms = 10000  # default\n"
	                          "fence.total_timeout_ms = 30000  # default\n"
	                          "fence.retries = 3  # default\n"
	                          "fence.retry_ms = 500  # default\n"
	                          "fence.pvc =   # default\n"
	                          "fence.out_of_service_taint = false  # default\n"
	                          "fence.scsi_luns =   # default\n"
	                          "fence.scsi_iqn_prefix =   # default\n"
	                          "fence.scsi_check_ms = 2000  # default\n"
	                          "fence.scsi_inflight_ms = 500  # default\n"
	                          "selffence.stop_timeout_ms = 2000  # default\n"
	                          "selffence.kill_timeout_ms = 5000  # default\n"
	                          "selffence.watchdog_device =   # default\n"
	                          "failsafe.enabled = false  # default\n"
	                          "failsafe.listen =   # default\n"
	                          "failsafe.peers =   # default\n"
	                          "failsafe.key_file =   # default\n",
	                          path),
	                 0);
	ck_assert_str_eq(out, expected);
	free(expected);
	free(out);
	agent_conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_dump_set_values)
{
	struct conf_errors errs = {0};
	struct agent_conf *c = NULL;
	char *path = corpus_path("good", "all_keys.conf");
	struct capture cap;
	char *out;

	ck_assert_int_eq(agent_conf_load(path, &c, &errs), 0);
	capture_start(&cap);
	agent_conf_dump(c, cap.f);
	out = capture_end(&cap);
	/* Every key is set by this file: no marker at all. */
	ck_assert_ptr_null(strstr(out, "# default"));
	ck_assert_ptr_null(strstr(out, "# derived"));
	ck_assert_ptr_nonnull(strstr(out, "\nlease.duration_ms = 10000\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nlog.level = debug\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nlog.monotonic = true\n"));
	free(out);
	agent_conf_free(c);
	free(path);
}
END_TEST

/* docs/configuration.md is generated from the table and must match it. */
START_TEST(test_reference_doc_current)
{
	struct capture cap;
	char *gen, *doc = NULL;
	size_t cap_len = 0;
	ssize_t n;
	FILE *f;

	capture_start(&cap);
	agent_conf_print_reference(cap.f);
	gen = capture_end(&cap);

	f = fopen(DOC_PATH, "re");
	ck_assert_msg(f != NULL, "cannot open %s: %s", DOC_PATH, strerror(errno));
	n = getdelim(&doc, &cap_len, '\0', f);
	fclose(f);
	ck_assert_int_gt(n, 0);
	ck_assert_msg(strcmp(gen, doc) == 0,
	              "docs/configuration.md is stale: regenerate it with 'make config-reference' "
	              "(kubefence-agent --config-reference)");
	/* Every key of the table is documented. */
	ck_assert_ptr_nonnull(strstr(gen, "| `lease.renew_deadline_ms` | integer | `3000` | "
	                                  "[500, 300000] |"));
	ck_assert_ptr_nonnull(strstr(gen, "| `node.name` | string | *required* |"));
	ck_assert_ptr_nonnull(strstr(
	        gen, "| `log.level` | enum | `info` | `error`, `warning`, `info`, `debug` |"));
	free(doc);
	free(gen);
}
END_TEST

/* ------------------------------------------------------------ engine */

/* A table of its own, to exercise what the agent table does not use. */
struct demo {
	char *name;
	char *opt;
	char **methods;
	int64_t count;
	bool flag;
	int color;
};

static const struct conf_choice demo_colors[] = {
        {"red", 1},
        {"green", 2},
        {NULL, 0},
};

static int demo_no_x(const union conf_value *v, char *err, size_t errlen)
{
	for (char *const *p = v->strv; *p; p++)
		if (strcmp(*p, "x") == 0) {
			errbuf_set(err, errlen, "'x' is not a method");
			return -EINVAL;
		}
	return 0;
}

static const struct conf_key demo_keys[] = {
        {.name = "demo.name",
         .type = CONF_STRING,
         .offset = offsetof(struct demo, name),
         .help = "n"},
        {.name = "demo.opt",
         .type = CONF_STRING,
         .def = "o|p",
         .offset = offsetof(struct demo, opt),
         .help = "with | pipe"},
        {.name = "demo.methods",
         .type = CONF_STRLIST,
         .def = "a, b",
         .offset = offsetof(struct demo, methods),
         .validate = demo_no_x,
         .help = "m"},
        {.name = "demo.count",
         .type = CONF_INT,
         .def = "-5",
         .min = -10,
         .max = 10,
         .offset = offsetof(struct demo, count),
         .help = "c"},
        {.name = "demo.flag",
         .type = CONF_BOOL,
         .def = "on",
         .offset = offsetof(struct demo, flag),
         .help = "f"},
        {.name = "demo.color",
         .type = CONF_ENUM,
         .def = "green",
         .choices = demo_colors,
         .offset = offsetof(struct demo, color),
         .live = true,
         .help = "c"},
};

/* Load `text` as file "t.conf" into d; returns what the load returned. */
static int demo_load(const char *text, struct demo *d, struct conf_source **ret_s,
                     struct conf_errors *errs)
{
	struct conf_source *s = NULL;
	FILE *f;
	int r;

	*d = (struct demo){0};
	ck_assert_int_eq(conf_source_new(demo_keys, ELEMENTSOF(demo_keys), "t.conf", &s), 0);
	f = fmemopen((void *)text, strlen(text), "r");
	ck_assert_ptr_nonnull(f);
	r = conf_source_load_stream(s, f, d, errs);
	fclose(f);
	*ret_s = s;
	return r;
}

static void demo_done(struct demo *d, struct conf_source *s, struct conf_errors *errs)
{
	conf_target_free(demo_keys, ELEMENTSOF(demo_keys), d);
	conf_source_free(s);
	conf_errors_done(errs);
}

/* Assert the errors are exactly the NULL-terminated list, in order. */
static void assert_errors(const struct conf_errors *errs, const char *const *want)
{
	size_t n = 0;

	for (; want[n]; n++) {
		ck_assert_msg(n < errs->n, "missing error '%s'", want[n]);
		ck_assert_str_eq(errs->msg[n], want[n]);
	}
	ck_assert_msg(errs->n == n, "unexpected error '%s'", errs->n > n ? errs->msg[n] : "");
}

START_TEST(test_engine_defaults)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	ck_assert_int_eq(demo_load("demo.name = n\n", &d, &s, &errs), 0);
	ck_assert_str_eq(d.opt, "o|p");
	ck_assert_str_eq(d.methods[0], "a");
	ck_assert_str_eq(d.methods[1], "b");
	ck_assert_ptr_null(d.methods[2]);
	ck_assert_int_eq(d.count, -5);
	ck_assert(d.flag);
	ck_assert_int_eq(d.color, 2);
	ck_assert_int_eq(conf_key_line(s, "demo.name"), 1);
	ck_assert_int_eq(conf_key_line(s, "demo.opt"), 0);
	ck_assert(!conf_key_rejected(s, "demo.name"));
	ck_assert_str_eq(conf_source_path(s), "t.conf");
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_strlist)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.methods =  scsi-pr ,pod-delete,  y \n", &d,
	                           &s, &errs),
	                 0);
	ck_assert_str_eq(d.methods[0], "scsi-pr");
	ck_assert_str_eq(d.methods[1], "pod-delete");
	ck_assert_str_eq(d.methods[2], "y");
	ck_assert_ptr_null(d.methods[3]);
	demo_done(&d, s, &errs);

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.methods =\n", &d, &s, &errs), 0);
	ck_assert_ptr_null(d.methods[0]); /* empty value: empty list */
	demo_done(&d, s, &errs);

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.methods = a,,b\n", &d, &s, &errs), -EINVAL);
	assert_errors(&errs, (const char *const[]){
	                             "t.conf:2: demo.methods: empty item in list 'a,,b'", NULL});
	ck_assert(conf_key_rejected(s, "demo.methods"));
	ck_assert_str_eq(d.methods[0], "a"); /* default kept */
	demo_done(&d, s, &errs);

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.methods = a, x\n", &d, &s, &errs), -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){"t.conf:2: demo.methods: 'x' is not a method", NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_int)
{
	static const char *const bad[] = {"+5", " ", "5 5", "0x5", "--1", "1e3", ""};
	static const char *const why[] = {
	        "t.conf:2: demo.count: '+5' is not an integer",
	        "t.conf:2: demo.count: value is empty", /* blanks are trimmed away */
	        "t.conf:2: demo.count: '5 5' is not an integer",
	        "t.conf:2: demo.count: '0x5' is not an integer",
	        "t.conf:2: demo.count: '--1' is not an integer",
	        "t.conf:2: demo.count: '1e3' is not an integer",
	        "t.conf:2: demo.count: value is empty",
	};
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;
	char text[128];

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.count = -10\n", &d, &s, &errs), 0);
	ck_assert_int_eq(d.count, -10);
	demo_done(&d, s, &errs);
	ck_assert_int_eq(demo_load("demo.name = n\ndemo.count = 10\n", &d, &s, &errs), 0);
	ck_assert_int_eq(d.count, 10);
	demo_done(&d, s, &errs);
	ck_assert_int_eq(demo_load("demo.name = n\ndemo.count = -11\n", &d, &s, &errs), -EINVAL);
	assert_errors(&errs, (const char *const[]){
	                             "t.conf:2: demo.count: -11 is out of range [-10, 10]", NULL});
	demo_done(&d, s, &errs);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		snprintf(text, sizeof(text), "demo.name = n\ndemo.count = %s\n", bad[i]);
		ck_assert_int_eq(demo_load(text, &d, &s, &errs), -EINVAL);
		assert_errors(&errs, (const char *const[]){why[i], NULL});
		demo_done(&d, s, &errs);
	}
}
END_TEST

START_TEST(test_engine_bool)
{
	static const char *const yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
	static const char *const no[] = {"false", "False", "no", "NO", "off", "0"};
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;
	char text[128];

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		snprintf(text, sizeof(text), "demo.name = n\ndemo.flag = %s\n", yes[i]);
		ck_assert_int_eq(demo_load(text, &d, &s, &errs), 0);
		ck_assert(d.flag);
		demo_done(&d, s, &errs);
		snprintf(text, sizeof(text), "demo.name = n\ndemo.flag = %s\n", no[i]);
		ck_assert_int_eq(demo_load(text, &d, &s, &errs), 0);
		ck_assert(!d.flag);
		demo_done(&d, s, &errs);
	}
	ck_assert_int_eq(demo_load("demo.name = n\ndemo.flag = 2\n", &d, &s, &errs), -EINVAL);
	assert_errors(&errs, (const char *const[]){
	                             "t.conf:2: demo.flag: '2' is not a boolean (true/false, "
	                             "yes/no, on/off, 1/0)",
	                             NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_enum_exact)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.color = red\n", &d, &s, &errs), 0);
	ck_assert_int_eq(d.color, 1);
	demo_done(&d, s, &errs);
	ck_assert_int_eq(demo_load("demo.name = n\ndemo.color = Red\n", &d, &s, &errs), -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){"t.conf:2: demo.color: 'Red' is not one of: red, green",
	                                    NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_env)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	setenv("KF_TEST_EMPTY", "", 1);
	setenv("KF_TEST_X", "x$y${z}", 1);
	/* The value of a variable is not expanded again. */
	ck_assert_int_eq(demo_load("demo.name = <${KF_TEST_X}>\ndemo.opt = ${KF_TEST_EMPTY}\n", &d,
	                           &s, &errs),
	                 0);
	ck_assert_str_eq(d.name, "<x$y${z}>");
	ck_assert_str_eq(d.opt, "");
	demo_done(&d, s, &errs);

	ck_assert_int_eq(demo_load("demo.name = ${KF_TEST_EMPTY}\ndemo.opt = a${}b\n"
	                           "demo.count = ${KF_TEST_X\n",
	                           &d, &s, &errs),
	                 -EINVAL);
	assert_errors(
	        &errs,
	        (const char *const[]){
	                "t.conf:1: demo.name: value is empty",
	                "t.conf:2: demo.opt: '${}' is not a valid environment variable reference",
	                "t.conf:3: demo.count: unterminated '${' in '${KF_TEST_X'", NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_syntax)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	/* inih alone would take ':' as a separator, continue indented lines
	 * and keep `#` inside values: none of it here. */
	ck_assert_int_eq(demo_load("\xEF\xBB\xBF"
	                           "demo.name = a;b#c ;d\n"
	                           "  demo.opt = x = y  ; comment\n"
	                           "; demo.count = 1\n"
	                           "#demo.count = 1\n",
	                           &d, &s, &errs),
	                 0);
	ck_assert_str_eq(d.name, "a;b#c");
	ck_assert_str_eq(d.opt, "x = y");
	ck_assert_int_eq(conf_key_line(s, "demo.opt"), 2);
	demo_done(&d, s, &errs);

	ck_assert_int_eq(
	        demo_load("demo.name = n\n[demo]\ncount: 1\nnothing here\n=3\n", &d, &s, &errs),
	        -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){
	                      "t.conf:2: section headers are not supported; write dotted keys "
	                      "such as 'section.key = value'",
	                      "t.conf:3: expected 'key = value', found no '=' in 'count: 1'",
	                      "t.conf:4: expected 'key = value', found no '=' in 'nothing here'",
	                      "t.conf:5: missing key before '='", NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_long_line)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	char text[512];
	struct demo d;

	/* 199 characters is the longest line; a long comment does not count. */
	snprintf(text, sizeof(text), "demo.name = %0187d   # %0200d\n", 0, 0);
	ck_assert_int_eq(demo_load(text, &d, &s, &errs), 0);
	ck_assert_uint_eq(strlen(d.name), 187);
	demo_done(&d, s, &errs);

	snprintf(text, sizeof(text), "demo.name = %0188d\n", 0);
	ck_assert_int_eq(demo_load(text, &d, &s, &errs), -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){"t.conf:1: line is longer than 199 characters "
	                                    "(comments and blanks aside)",
	                                    "t.conf: demo.name: required key is missing", NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_duplicate_rejected)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	/* A rejected first setting still counts: the second is a duplicate,
	 * and the required key is not also reported missing. */
	ck_assert_int_eq(demo_load("demo.count = zz\ndemo.count = 1\ndemo.name =\n", &d, &s, &errs),
	                 -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){"t.conf:1: demo.count: 'zz' is not an integer",
	                                    "t.conf:2: demo.count: set twice (first at line 1)",
	                                    "t.conf:3: demo.name: value is empty", NULL});
	ck_assert_int_eq(conf_key_line(s, "demo.count"), 1);
	ck_assert(conf_key_rejected(s, "demo.count"));
	ck_assert_int_eq(d.count, -5);
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_suggestion)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct demo d;

	ck_assert_int_eq(demo_load("demo.name = n\ndemo.colour = red\ndemo.xyz = red\n"
	                           "Demo.Flag = on\n",
	                           &d, &s, &errs),
	                 -EINVAL);
	assert_errors(&errs,
	              (const char *const[]){
	                      "t.conf:2: demo.colour: unknown key (did you mean 'demo.color'?)",
	                      "t.conf:3: demo.xyz: unknown key",
	                      "t.conf:4: Demo.Flag: unknown key (did you mean 'demo.flag'?)",
	                      NULL});
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_dump_escapes)
{
	struct conf_errors errs = {0};
	struct conf_source *s;
	struct capture cap;
	struct demo d;
	char *out;

	ck_assert_int_eq(demo_load("demo.name = a$${b}\ndemo.methods = p, q\ndemo.color = red\n",
	                           &d, &s, &errs),
	                 0);
	ck_assert_str_eq(d.name, "a${b}");
	capture_start(&cap);
	conf_dump(s, &d, cap.f);
	out = capture_end(&cap);
	ck_assert_str_eq(out, "demo.name = a$${b}\n"
	                      "demo.opt = o|p  # default\n"
	                      "demo.methods = p, q\n"
	                      "demo.count = -5  # default\n"
	                      "demo.flag = true  # default\n"
	                      "demo.color = red\n");
	free(out);
	demo_done(&d, s, &errs);
}
END_TEST

START_TEST(test_engine_reference_table)
{
	struct capture cap;
	char *out;

	capture_start(&cap);
	conf_print_reference(demo_keys, ELEMENTSOF(demo_keys), cap.f);
	out = capture_end(&cap);
	ck_assert_ptr_nonnull(strstr(
	        out, "| Key | Type | Default | Bounds / choices | Reload | Description |\n"));
	ck_assert_ptr_nonnull(
	        strstr(out, "| `demo.name` | string | *required* |  | restart | n |\n"));
	ck_assert_ptr_nonnull(
	        strstr(out, "| `demo.opt` | string | `o\\|p` |  | restart | with \\| pipe |\n"));
	ck_assert_ptr_nonnull(
	        strstr(out, "| `demo.count` | integer | `-5` | [-10, 10] | restart | c |\n"));
	ck_assert_ptr_nonnull(
	        strstr(out, "| `demo.color` | enum | `green` | `red`, `green` | live | c |\n"));
	ck_assert_ptr_nonnull(strstr(out, "| `demo.methods` | list | `a, b` |  | restart | m |\n"));
	free(out);
}
END_TEST

START_TEST(test_errors_format)
{
	struct conf_errors errs = {0};

	ck_assert_int_eq(conf_errors_addf(&errs, "f", 3, "k", "r %d", 1), 0);
	ck_assert_int_eq(conf_errors_addf(&errs, "f", 0, "k", "r"), 0);
	ck_assert_int_eq(conf_errors_addf(&errs, "f", 4, NULL, "r"), 0);
	ck_assert_int_eq(conf_errors_addf(&errs, "f", 0, NULL, "r"), 0);
	ck_assert_int_eq(conf_errors_add(&errs, "plain"), 0);
	assert_errors(&errs, (const char *const[]){"f:3: k: r 1", "f: k: r", "f:4: r", "f: r",
	                                           "plain", NULL});
	conf_errors_done(&errs);
}
END_TEST

/* What a SIGHUP reload would change: every key between the minimal file
 * and all_keys.conf (which sets each away from its default), nothing
 * between a file and itself; only log.* is live, so every other change
 * needs a restart. */
START_TEST(test_reload_changes)
{
	struct conf_errors errs = {0};
	struct agent_conf *all = NULL, *min = NULL, *again = NULL;
	char *path = corpus_path("good", "all_keys.conf");
	char *minimal = corpus_path("good", "minimal.conf");
	const struct conf_key *changed[128], *keys;
	size_t n, n_keys, n_restart = 99, n_live = 0;
	char was[512], now[512];

	ck_assert_int_eq(agent_conf_load(path, &all, &errs), 0);
	ck_assert_int_eq(agent_conf_load(path, &again, &errs), 0);
	ck_assert_int_eq(agent_conf_load(minimal, &min, &errs), 0);
	keys = agent_conf_keys(&n_keys);
	ck_assert_uint_lt(n_keys, ELEMENTSOF(changed));
	for (size_t i = 0; i < n_keys; i++)
		if (keys[i].live) {
			n_live++;
			ck_assert_msg(strncmp(keys[i].name, "log.", 4) == 0,
			              "%s is live: only log.* may change while the agent runs",
			              keys[i].name);
		}
	ck_assert_uint_eq(n_live, 2);

	n = agent_conf_changes(all, again, changed, ELEMENTSOF(changed), &n_restart);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(n_restart, 0);

	n = agent_conf_changes(min, all, changed, ELEMENTSOF(changed), &n_restart);
	/* all but agent.fence_without_service, set to its default there */
	ck_assert_uint_eq(n, n_keys - 1);
	ck_assert_uint_eq(n_restart, n_keys - 1 - n_live);
	for (size_t i = 0, k = 0; i < n; i++, k++) { /* table order */
		if (strcmp(keys[k].name, "agent.fence_without_service") == 0)
			k++;
		ck_assert_ptr_eq(changed[i], &keys[k]);
	}
	/* only max are stored, all are counted */
	ck_assert_uint_eq(agent_conf_changes(min, all, changed, 1, &n_restart), n_keys - 1);

	for (size_t i = 0; i < n_keys; i++)
		if (strcmp(keys[i].name, "log.level") == 0) {
			agent_conf_value(min, &keys[i], was, sizeof(was));
			agent_conf_value(all, &keys[i], now, sizeof(now));
			ck_assert_str_eq(was, "info");
			ck_assert_str_eq(now, "debug");
		} else if (strcmp(keys[i].name, "fence.methods") == 0) {
			agent_conf_value(all, &keys[i], now, sizeof(now));
			ck_assert_str_eq(now, "scsi-pr, out-of-service, pod-delete, volume-detach");
		}
	agent_conf_free(all);
	agent_conf_free(again);
	agent_conf_free(min);
	free(path);
	free(minimal);
}
END_TEST

/* ------------------------------------------------------------ suite */

static void add(Suite *s, const char *name, const TTest *t)
{
	TCase *tc = tcase_create(name);

	tcase_add_test(tc, t);
	suite_add_tcase(s, tc);
}

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

	tc = tcase_create("good_corpus");
	tcase_add_loop_test(tc, test_good_file, 0, (int)n_good);
	suite_add_tcase(s, tc);
	tc = tcase_create("bad_corpus");
	tcase_add_loop_test(tc, test_bad_file, 0, (int)n_bad);
	suite_add_tcase(s, tc);

	add(s, "all_keys_values", test_all_keys_values);
	add(s, "minimal_defaults", test_minimal_defaults);
	add(s, "env_expansion", test_env_expansion);
	add(s, "comments_and_blanks", test_comments_and_blanks);
	add(s, "cannot_open", test_cannot_open);
	add(s, "empty_file", test_empty_file);
	add(s, "errors_accumulate", test_errors_accumulate);
	add(s, "free_null", test_free_null);
	add(s, "dump_marks_defaults", test_dump_marks_defaults);
	add(s, "dump_set_values", test_dump_set_values);
	add(s, "reference_doc_current", test_reference_doc_current);
	add(s, "engine_defaults", test_engine_defaults);
	add(s, "engine_strlist", test_engine_strlist);
	add(s, "engine_int", test_engine_int);
	add(s, "engine_bool", test_engine_bool);
	add(s, "engine_enum_exact", test_engine_enum_exact);
	add(s, "engine_env", test_engine_env);
	add(s, "engine_syntax", test_engine_syntax);
	add(s, "engine_long_line", test_engine_long_line);
	add(s, "engine_duplicate_rejected", test_engine_duplicate_rejected);
	add(s, "engine_suggestion", test_engine_suggestion);
	add(s, "engine_dump_escapes", test_engine_dump_escapes);
	add(s, "engine_reference_table", test_engine_reference_table);
	add(s, "errors_format", test_errors_format);
	add(s, "reload_changes", test_reload_changes);
	return s;
}

int main(void)
{
	int status;

	n_good = list_corpus(CONF_DIR "/good", good_files);
	n_bad = list_corpus(CONF_DIR "/bad", bad_files);
	status = kft_main(conf_suite(), NULL);
	corpus_free();
	return status;
}
