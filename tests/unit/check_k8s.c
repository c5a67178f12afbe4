/* check_k8s: unit tests of the kubeconfig loader and the REST client.
 *
 * Pure logic (status mapping, Status parsing, paths, kubeconfig files, the
 * watch stream parser) is tested directly; the request layer and the watch
 * loop run against a transport that replays recorded API responses from
 * tests/unit/data/k8s/, so no HTTP server is needed.  A few tests use real
 * libcurl against loopback sockets that refuse or never answer, to check
 * deadlines, refusal and stopping a blocked watch. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/k8s.h"
#include "lib/kubeconfig.h"
#include "lib/util.h"
#include "tests/lib/kftest.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "tests"
#endif
#define DATA TEST_SRCDIR "/unit/data/k8s"

/* Timing bounds stretch under valgrind (or when KF_TEST_SLOW is set). */
static usec_t slack(void)
{
	const char *preload = getenv("LD_PRELOAD");

	if (getenv("KF_TEST_SLOW") || (preload && strstr(preload, "valgrind")))
		return 10;
	return 1;
}

static char *read_fixture(const char *name, size_t *ret_len)
{
	char path[1024], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", DATA, name);
	f = fopen(path, "re");
	ck_assert_msg(f, "fixture %s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (ret_len)
		*ret_len = (size_t)n;
	return buf;
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "we");

	ck_assert_msg(f, "%s: %s", path, strerror(errno));
	fputs(content, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void make_tmpdir(char dir[static 64])
{
	strcpy(dir, "/tmp/check_k8s.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_rf(const char *dir)
{
	static const char *const names[] = {"token", "ca.crt", "namespace", "kubeconfig"};
	char p[256];

	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		(void)unlink(p);
	}
	(void)rmdir(dir);
}

/* ================================================================ status */

START_TEST(test_status_table)
{
	static const struct {
		long status;
		const char *reason;
		int r;
	} t[] = {
	        {200, NULL, 0},
	        {201, NULL, 0},
	        {400, "BadRequest", -EBADMSG},
	        {401, "Unauthorized", -EACCES},
	        {403, "Forbidden", -EPERM},
	        {404, "NotFound", -ENOENT},
	        {405, "MethodNotAllowed", -EOPNOTSUPP},
	        {409, "AlreadyExists", -EEXIST},
	        {409, "Conflict", -ESTALE},
	        {409, NULL, -ESTALE},
	        {409, "alreadyexists", -ESTALE},
	        {410, "Expired", -EIDRM},
	        {410, "Gone", -EIDRM},
	        {422, "Invalid", -EINVAL},
	        {429, "TooManyRequests", -EAGAIN},
	        {500, "InternalError", -EIO},
	        {501, NULL, -EIO},
	        {502, NULL, -EIO},
	        {503, "ServiceUnavailable", -EAGAIN},
	        {504, "Timeout", -ETIMEDOUT},
	        {599, NULL, -EIO},
	        {408, NULL, -ETIMEDOUT},
	        {413, "RequestEntityTooLarge", -EFBIG},
	        {415, "UnsupportedMediaType", -EOPNOTSUPP},
	        {418, NULL, -EPROTO},
	        {302, NULL, -EPROTO},
	        {100, NULL, -EPROTO},
	        {0, NULL, -EPROTO},
	};

	for (size_t i = 0; i < ELEMENTSOF(t); i++)
		ck_assert_msg(k8s_status_to_errno(t[i].status, t[i].reason) == t[i].r,
		              "%ld %s -> %d, want %d", t[i].status, t[i].reason ? t[i].reason : "",
		              k8s_status_to_errno(t[i].status, t[i].reason), t[i].r);
}
END_TEST

START_TEST(test_retryable)
{
	static const int yes[] = {EAGAIN,     ETIMEDOUT,    EIO,        ECONNREFUSED,
	                          ECONNRESET, EHOSTUNREACH, ENETUNREACH};
	static const int no[] = {0,     EPERM,  EACCES,  ENOENT,       EEXIST, ESTALE,
	                         EIDRM, EINVAL, EBADMSG, EKEYREJECTED, EFBIG,  EOPNOTSUPP};

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		ck_assert(k8s_error_is_retryable(-yes[i]));
		ck_assert(k8s_error_is_retryable(yes[i]));
	}
	for (size_t i = 0; i < ELEMENTSOF(no); i++)
		ck_assert_msg(!k8s_error_is_retryable(-no[i]), "%d", no[i]);
}
END_TEST

START_TEST(test_response_error_status_objects)
{
	char err[1024], *body;
	size_t len;
	int r;

	body = read_fixture("status-409-conflict.json", &len);
	r = k8s_response_error("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/kubefence",
	                       409, body, len, err, sizeof(err));
	ck_assert_int_eq(r, -ESTALE);
	ck_assert_str_eq(err,
	                 "PUT leases.coordination.k8s.io \"kubefence\" in \"ns\": 409 Conflict: "
	                 "Operation cannot be fulfilled on leases.coordination.k8s.io "
	                 "\"kubefence\": the object has been modified; please apply your "
	                 "changes to the latest version and try again");
	free(body);

	body = read_fixture("status-409-exists.json", &len);
	r = k8s_response_error("POST", "/apis/coordination.k8s.io/v1/namespaces/ns/leases", 409,
	                       body, len, err, sizeof(err));
	ck_assert_int_eq(r, -EEXIST);
	ck_assert_str_eq(err, "POST leases.coordination.k8s.io in \"ns\": 409 Conflict: "
	                      "leases.coordination.k8s.io \"kubefence\" already exists");
	free(body);

	body = read_fixture("status-403.json", &len);
	r = k8s_response_error("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/kubefence",
	                       403, body, len, err, sizeof(err));
	ck_assert_int_eq(r, -EPERM);
	ck_assert_str_eq(err,
	                 "PUT leases.coordination.k8s.io \"kubefence\" in \"ns\": 403 Forbidden: "
	                 "leases.coordination.k8s.io \"kubefence\" is forbidden: User "
	                 "\"system:serviceaccount:ns:agent\" cannot update resource "
	                 "\"leases\" in API group \"coordination.k8s.io\" in the namespace "
	                 "\"ns\"");
	free(body);

	/* Core group, cluster-scoped, with a query. */
	body = read_fixture("status-404.json", &len);
	r = k8s_response_error("GET", "/api/v1/nodes/n1?x=y", 404, body, len, err, sizeof(err));
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "GET nodes \"n1\": 404 Not Found: "));
	r = k8s_response_error("GET", "/api/v1/namespaces/ns/pods/p/status", 404, body, len, err,
	                       sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "GET pods/status \"p\" in \"ns\": 404 Not Found"));
	free(body);
}
END_TEST

START_TEST(test_response_error_malformed)
{
	static const struct {
		long status;
		const char *body;
		int r;
		const char *want;
	} t[] = {
	        {500, "<html><body>Internal</body></html>", -EIO, "not a Status object"},
	        {409, "{\"kind\":\"Status\",\"reason\":\"AlreadyExists\"", -ESTALE,
	         "not a Status object"},
	        {409, "[\"AlreadyExists\"]", -ESTALE, "not a Status object"},
	        {409, "{\"reason\":42,\"message\":[1]}", -ESTALE, "no message from the server"},
	        {409, "{\"reason\":\"AlreadyExists\",\"message\":null}", -EEXIST,
	         "no message from the server"},
	        {503, "", -EAGAIN, "no message from the server"},
	        {410, "null", -EIDRM, "not a Status object"},
	        {404, "\x01\x02\xff binary", -ENOENT, "not a Status object"},
	};
	char err[512];

	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		int r = k8s_response_error("GET", "/api/v1/namespaces/ns/configmaps/c", t[i].status,
		                           t[i].body, strlen(t[i].body), err, sizeof(err));

		ck_assert_msg(r == t[i].r, "case %zu: %d", i, r);
		ck_assert_msg(strstr(err, t[i].want), "case %zu: %s", i, err);
		ck_assert_msg(strstr(err, "GET configmaps \"c\" in \"ns\""), "case %zu: %s", i,
		              err);
	}
	/* NULL body and NULL error buffer are both fine. */
	ck_assert_int_eq(k8s_response_error("GET", "/x", 401, NULL, 0, NULL, 0), -EACCES);
	ck_assert_int_eq(k8s_response_error("GET", "/x", 401, NULL, 0, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "401 Unauthorized"));
}
END_TEST

/* ================================================================ paths */

START_TEST(test_path)
{
	char buf[256];

	ck_assert_int_eq(
	        k8s_path(buf, sizeof(buf), "coordination.k8s.io/v1", "ns", "leases", "name"),
	        (int)strlen("/apis/coordination.k8s.io/v1/namespaces/ns/leases/name"));
	ck_assert_str_eq(buf, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/name");
	ck_assert_int_ge(k8s_path(buf, sizeof(buf), "coordination.k8s.io/v1", "ns", "leases", NULL),
	                 0);
	ck_assert_str_eq(buf, "/apis/coordination.k8s.io/v1/namespaces/ns/leases");
	ck_assert_int_ge(k8s_path(buf, sizeof(buf), "v1", "ns", "pods", "p"), 0);
	ck_assert_str_eq(buf, "/api/v1/namespaces/ns/pods/p");
	ck_assert_int_ge(k8s_path(buf, sizeof(buf), "v1", NULL, "nodes", "n1"), 0);
	ck_assert_str_eq(buf, "/api/v1/nodes/n1");
	ck_assert_int_ge(k8s_path(buf, sizeof(buf), "v1", NULL, "namespaces", NULL), 0);
	ck_assert_str_eq(buf, "/api/v1/namespaces");

	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "ns", "pods", "a/b"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "ns", "pods", ".."), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "ns", "pods", "a?b"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "", "pods", "a"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "n s", "pods", "a"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "a/b/c", "ns", "pods", "a"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), "v1", "ns", NULL, "a"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, sizeof(buf), NULL, "ns", "pods", "a"), -EINVAL);
	ck_assert_int_eq(k8s_path(buf, 10, "v1", "ns", "pods", "a"), -ENAMETOOLONG);
}
END_TEST

/* ================================================================ kubeconfig */

static int load(const char *file, const char *context, struct kubeconfig **kc, char *err,
                size_t errlen)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", DATA, file);
	err[0] = '\0';
	return kubeconfig_load(path, context, kc, err, errlen);
}

START_TEST(test_kubeconfig_token_current_context)
{
	struct kubeconfig *kc = NULL;
	char err[512];

	ck_assert_int_eq(load("token.yaml", NULL, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->context, "ctx-static");
	/* The trailing slash is dropped so that paths can be appended. */
	ck_assert_str_eq(kc->server, "https://api.example.test:6443");
	ck_assert_str_eq(kc->namespace, "team-a");
	ck_assert_str_eq(kc->token, "fixture-static-token");
	ck_assert_ptr_null(kc->token_file);
	/* Relative to the kubeconfig's directory, not the working directory. */
	ck_assert_str_eq(kc->ca_file, DATA "/certs/ca.crt");
	ck_assert_ptr_null(kc->ca_data);
	ck_assert_ptr_null(kc->cert_file);
	kubeconfig_free(kc);
}
END_TEST

START_TEST(test_kubeconfig_token_file_explicit_context)
{
	struct kubeconfig *kc = NULL;
	char err[512], *ca;

	ck_assert_int_eq(load("token.yaml", "ctx-file", &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->context, "ctx-file");
	ck_assert_str_eq(kc->server, "https://[fd00::1]:443");
	ck_assert_ptr_null(kc->namespace);
	ck_assert_ptr_null(kc->token);
	ck_assert_str_eq(kc->token_file, DATA "/token-file.txt");
	ck_assert_ptr_null(kc->ca_file);
	ca = read_fixture("certs/ca.crt", NULL);
	ck_assert_uint_eq(kc->ca_data_len, strlen(ca));
	ck_assert_str_eq(kc->ca_data, ca);
	free(ca);
	kubeconfig_free(kc);
}
END_TEST

START_TEST(test_kubeconfig_relative_kubeconfig_path)
{
	struct kubeconfig *kc = NULL;
	char err[512], cwd[1024];

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(DATA "/certs"), 0);
	ck_assert_int_eq(kubeconfig_load("../token.yaml", NULL, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->ca_file, "../certs/ca.crt");
	kubeconfig_free(kc);
	ck_assert_int_eq(chdir(DATA), 0);
	ck_assert_int_eq(kubeconfig_load("token.yaml", NULL, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->ca_file, "certs/ca.crt");
	kubeconfig_free(kc);
	ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_kubeconfig_client_cert_files_and_data)
{
	struct kubeconfig *kc = NULL;
	char err[512], *crt, *key;

	ck_assert_int_eq(load("certs.yaml", NULL, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->ca_file, DATA "/./certs/ca.crt");
	ck_assert_str_eq(kc->cert_file, DATA "/certs/client.crt");
	ck_assert_str_eq(kc->key_file, DATA "/certs/client.key");
	ck_assert_ptr_null(kc->token);
	kubeconfig_free(kc);

	ck_assert_int_eq(load("certs.yaml", "blobs", &kc, err, sizeof(err)), 0);
	crt = read_fixture("certs/client.crt", NULL);
	key = read_fixture("certs/client.key", NULL);
	ck_assert_ptr_null(kc->cert_file);
	ck_assert_ptr_null(kc->key_file);
	ck_assert_str_eq(kc->cert_data, crt);
	ck_assert_uint_eq(kc->cert_data_len, strlen(crt));
	ck_assert_str_eq(kc->key_data, key);
	ck_assert_uint_eq(kc->key_data_len, strlen(key));
	free(crt);
	free(key);
	kubeconfig_free(kc);

	ck_assert_int_eq(load("certs.yaml", "half", &kc, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "needs both certificate and key"));
	ck_assert_int_eq(load("certs.yaml", "missing-key", &kc, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "client-key"));
	ck_assert_ptr_nonnull(strstr(err, "no-such.key"));
}
END_TEST

START_TEST(test_kubeconfig_json)
{
	struct kubeconfig *kc = NULL;
	char err[512];

	ck_assert_int_eq(load("json.kubeconfig", NULL, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->server, "https://10.0.0.1");
	ck_assert_str_eq(kc->token, "json-token");
	ck_assert_str_eq(kc->namespace, "json-ns");
	ck_assert_ptr_nonnull(kc->ca_data);
	kubeconfig_free(kc);
}
END_TEST

START_TEST(test_kubeconfig_errors)
{
	static const struct {
		const char *file, *context;
		int r;
		const char *want;
	} t[] = {
	        {"no-such-file.yaml", NULL, -ENOENT, "no-such-file.yaml: cannot read kubeconfig"},
	        {"broken.yaml", NULL, -EINVAL, "broken.yaml:8:1: YAML syntax error: "},
	        {"token.yaml", "nope", -EINVAL, "context 'nope' not found"},
	        {"missing-refs.yaml", NULL, -EINVAL, "no current-context"},
	        {"missing-refs.yaml", "no-cluster", -EINVAL,
	         "context 'no-cluster' names cluster 'absent', which is not defined"},
	        {"missing-refs.yaml", "no-user", -EINVAL,
	         "context 'no-user' names user 'absent', which is not defined"},
	        {"missing-refs.yaml", "no-server", -EINVAL, "cluster 'no-server' has no server"},
	        {"missing-refs.yaml", "plain-http", -EINVAL, "is not an https:// URL"},
	        {"missing-refs.yaml", "insecure", -EINVAL,
	         "insecure-skip-tls-verify is not supported"},
	        {"missing-refs.yaml", "exec", -EOPNOTSUPP, "user 'exec': exec credentials"},
	        {"missing-refs.yaml", "provider", -EOPNOTSUPP,
	         "user 'provider': auth-provider credentials"},
	        {"missing-refs.yaml", "basic", -EOPNOTSUPP, "basic-auth"},
	        {"missing-refs.yaml", "bad-b64", -EINVAL,
	         "client-certificate-data is not valid base64"},
	        {"missing-refs.yaml", "gone-token", -ENOENT, "tokenFile"},
	};
	struct kubeconfig *kc = NULL;
	char err[512];

	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		int r = load(t[i].file, t[i].context, &kc, err, sizeof(err));

		ck_assert_msg(r == t[i].r, "case %zu (%s): %d, want %d: %s", i, t[i].file, r,
		              t[i].r, err);
		ck_assert_msg(strstr(err, t[i].want), "case %zu: '%s' lacks '%s'", i, err,
		              t[i].want);
		ck_assert_ptr_null(kc);
	}
	/* The YAML syntax error says what is wrong, too. */
	ck_assert_int_eq(load("broken.yaml", NULL, &kc, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "while scanning a quoted scalar at line 6)"));
	/* insecure-skip-tls-verify names its line. */
	ck_assert_int_eq(load("missing-refs.yaml", "insecure", &kc, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "missing-refs.yaml:16:"));

	/* A context without a user is anonymous, and fine. */
	ck_assert_int_eq(load("missing-refs.yaml", "anonymous", &kc, err, sizeof(err)), 0);
	ck_assert_ptr_null(kc->token);
	ck_assert_ptr_null(kc->cert_file);
	kubeconfig_free(kc);
}
END_TEST

START_TEST(test_kubeconfig_odd_yaml)
{
	static const char *const bad[] = {
	        "",
	        "- a\n- b\n",
	        "clusters: &a [x]\ncontexts: *a\ncurrent-context: x\n",
	        "current-context: [1]\n",
	        "contexts: {name: x}\ncurrent-context: x\n",
	        "a: 1\n---\nb: 2\n",
	        "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	        "[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
	        "]]]]]]]]]]]]\n",
	        "\t- bad indent\n",
	};
	struct kubeconfig *kc = NULL;
	char dir[64], path[128], err[512];

	make_tmpdir(dir);
	snprintf(path, sizeof(path), "%s/kubeconfig", dir);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r;

		write_file(path, bad[i]);
		err[0] = '\0';
		r = kubeconfig_load(path, NULL, &kc, err, sizeof(err));
		ck_assert_msg(r == -EINVAL, "case %zu: %d %s", i, r, err);
		ck_assert_msg(err[0], "case %zu: no message", i);
		ck_assert_ptr_null(kc);
	}
	rm_rf(dir);
}
END_TEST

static void sa_dir_make(char dir[static 64], const char *token)
{
	char p[128];

	make_tmpdir(dir);
	snprintf(p, sizeof(p), "%s/token", dir);
	write_file(p, token);
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	write_file(p, "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n");
	snprintf(p, sizeof(p), "%s/namespace", dir);
	write_file(p, "kube-fence\n");
}

START_TEST(test_in_cluster)
{
	struct kubeconfig *kc = NULL;
	char dir[64], p[128], err[512];

	sa_dir_make(dir, "sa-token-1\n");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->server, "https://10.96.0.1:443");
	ck_assert_str_eq(kc->namespace, "kube-fence");
	snprintf(p, sizeof(p), "%s/token", dir);
	ck_assert_str_eq(kc->token_file, p);
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	ck_assert_str_eq(kc->ca_file, p);
	ck_assert_ptr_null(kc->token);
	kc = kubeconfig_free(kc);

	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), 0);
	ck_assert_str_eq(kc->server, "https://[fd00:10:96::1]:443");
	kc = kubeconfig_free(kc);

	/* No namespace file is fine. */
	snprintf(p, sizeof(p), "%s/namespace", dir);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), 0);
	ck_assert_ptr_null(kc->namespace);
	kc = kubeconfig_free(kc);

	setenv("KUBERNETES_SERVICE_PORT", "44x", 1);
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), -EINVAL);
	unsetenv("KUBERNETES_SERVICE_PORT");
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), -ENXIO);
	ck_assert_ptr_nonnull(strstr(err, "KUBERNETES_SERVICE_HOST"));
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);

	snprintf(p, sizeof(p), "%s/token", dir);
	write_file(p, "  \n");
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), -ENODATA);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(kubeconfig_load_in_cluster(dir, &kc, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "token"));
	ck_assert_int_eq(kubeconfig_load_in_cluster("/nonexistent-sa-dir", &kc, err, sizeof(err)),
	                 -ENOENT);
	ck_assert_ptr_null(kc);
	rm_rf(dir);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}
END_TEST

/* ================================================================ replay transport */

struct step {
	const char *method;    /* expected; NULL = any */
	const char *url_has;   /* expected substring of the URL; NULL = any */
	const char *url_lacks; /* must not be in the URL; NULL = none */
	long status;
	const char *fixture; /* body from a file, or */
	const char *body;    /* an inline body */
	int error;           /* a transport error instead */
	size_t chunk;        /* feed in chunks of this size; 0 = at once */
	bool stop;           /* k8s_watch_stop() the replay's watch afterwards */
};

struct replay {
	const struct step *steps;
	size_t n, i;
	struct k8s_watch *w;
	char method[16], url[2048], auth[256], content_type[64], body[4096];
	long timeout_ms;
};

static int replay_transport(const struct k8s_http_request *req, k8s_sink_fn sink, void *sink_ctx,
                            long *ret_status, char *err, size_t errlen, void *userdata)
{
	struct replay *rp = userdata;
	const struct step *s;
	char *body = NULL;
	size_t len = 0;
	int r = 0;

	ck_assert_msg(rp->i < rp->n, "unexpected request %zu: %s %s", rp->i, req->method, req->url);
	s = &rp->steps[rp->i++];
	(void)str_copy(rp->method, sizeof(rp->method), req->method);
	(void)str_copy(rp->url, sizeof(rp->url), req->url);
	(void)str_copy(rp->auth, sizeof(rp->auth), req->authorization ? req->authorization : "");
	(void)str_copy(rp->content_type, sizeof(rp->content_type),
	               req->content_type ? req->content_type : "");
	ck_assert_uint_lt(req->body_len, sizeof(rp->body));
	memcpy(rp->body, req->body ? req->body : "", req->body_len);
	rp->body[req->body_len] = '\0';
	rp->timeout_ms = req->timeout_ms;
	if (s->method)
		ck_assert_str_eq(req->method, s->method);
	if (s->url_has)
		ck_assert_msg(strstr(req->url, s->url_has), "step %zu: %s lacks %s", rp->i - 1,
		              req->url, s->url_has);
	if (s->url_lacks)
		ck_assert_msg(!strstr(req->url, s->url_lacks), "step %zu: %s has %s", rp->i - 1,
		              req->url, s->url_lacks);

	if (s->error) {
		errbuf_set(err, errlen, "replayed transport error");
		r = s->error;
		goto out;
	}
	if (s->fixture)
		body = read_fixture(s->fixture, &len);
	else if (s->body) {
		body = strdup(s->body);
		len = strlen(body);
	}
	for (size_t o = 0; o < len && r == 0;) {
		size_t n = s->chunk && s->chunk < len - o ? s->chunk : len - o;

		r = sink(sink_ctx, s->status, body + o, n);
		o += n;
	}
	*ret_status = s->status;
out:
	if (s->stop)
		k8s_watch_stop(rp->w);
	free(body);
	return r;
}

static struct k8s_client *replay_client(const char *file, const char *context, struct replay *rp)
{
	struct k8s_client *c = NULL;
	char path[512], err[512] = "";

	snprintf(path, sizeof(path), "%s/%s", DATA, file);
	ck_assert_msg(k8s_client_new(path, context, &c, err, sizeof(err)) == 0, "%s", err);
	k8s_client_set_transport(c, replay_transport, rp);
	return c;
}

#define LEASES "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
#define LEASE  LEASES "/kubefence"

START_TEST(test_request_get_and_shapes)
{
	static const struct step steps[] = {
	        {.method = "GET", .status = 200, .fixture = "lease.json", .chunk = 5},
	        {.status = 200, .body = "not json"},
	        {.status = 200, .body = "{\"kind\":\"Lease\",\"metadata\":{"},
	        {.status = 200, .body = "[1,2]"},
	        {.status = 200, .body = ""},
	        {.status = 200, .body = "{} trailing"},
	        {.status = 200, .body = "{}"},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	cJSON *obj = NULL, *sentinel = (cJSON *)&rp;
	char err[512];

	ck_assert_str_eq(k8s_client_server(c), "https://api.example.test:6443");
	ck_assert_str_eq(k8s_client_namespace(c), "team-a");
	ck_assert_int_eq(k8s_get(c, LEASE, 1500, &obj, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.url, "https://api.example.test:6443" LEASE);
	ck_assert_str_eq(rp.auth, "Bearer fixture-static-token");
	ck_assert_str_eq(rp.content_type, "");
	ck_assert_int_eq(rp.timeout_ms, 1500);
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "resourceVersion")
	                ->valuestring,
	        "4711");
	cJSON_Delete(obj);

	for (int i = 0; i < 5; i++) {
		obj = sentinel;
		ck_assert_int_eq(k8s_get(c, LEASE, 1000, &obj, err, sizeof(err)), -EBADMSG);
		ck_assert_ptr_eq(obj, sentinel); /* untouched on failure */
		ck_assert_ptr_nonnull(strstr(err, "GET leases.coordination.k8s.io \"kubefence\" in "
		                                  "\"ns\": 200 OK, but the response is not a JSON "
		                                  "object"));
	}
	/* Without ret, the body is not looked at. */
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, NULL, err, sizeof(err)), 0);

	ck_assert_int_eq(k8s_get(c, LEASE, 0, &obj, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(k8s_get(c, "relative", 10, &obj, err, sizeof(err)), -EINVAL);
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_client_free(c);
}
END_TEST

START_TEST(test_request_errors)
{
	static const struct step steps[] = {
	        {.method = "PUT", .status = 409, .fixture = "status-409-conflict.json", .chunk = 3},
	        {.method = "POST", .status = 409, .fixture = "status-409-exists.json"},
	        {.method = "PUT", .status = 403, .fixture = "status-403.json"},
	        {.status = 500, .body = "<html>oops</html>"},
	        {.status = 503, .body = ""},
	        {.error = -ETIMEDOUT},
	        {.error = -ECONNREFUSED},
	        {.status = 302, .body = ""},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	cJSON *obj =
	        cJSON_Parse("{\"metadata\":{\"name\":\"kubefence\",\"resourceVersion\":\"1\"}}");
	cJSON *got = NULL;
	char err[1024];

	ck_assert_int_eq(k8s_update(c, LEASE, obj, 1000, &got, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_null(got);
	ck_assert_str_eq(err,
	                 "PUT leases.coordination.k8s.io \"kubefence\" in \"ns\": 409 Conflict: "
	                 "Operation cannot be fulfilled on leases.coordination.k8s.io "
	                 "\"kubefence\": the object has been modified; please apply your "
	                 "changes to the latest version and try again");
	ck_assert_str_eq(rp.content_type, "application/json");
	ck_assert_int_eq(k8s_create(c, LEASES, obj, 1000, &got, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, "already exists"));
	ck_assert_int_eq(k8s_update(c, LEASE, obj, 1000, NULL, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "cannot update resource \"leases\" in API group "
	                                  "\"coordination.k8s.io\" in the namespace \"ns\""));
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &got, err, sizeof(err)), -EIO);
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &got, err, sizeof(err)), -EAGAIN);
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &got, err, sizeof(err)), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(err, "GET leases.coordination.k8s.io \"kubefence\" in \"ns\": "
	                                  "replayed transport error"));
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &got, err, sizeof(err)), -ECONNREFUSED);
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &got, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_null(got);
	/* A body must be an object. */
	ck_assert_int_eq(k8s_update(c, LEASE, NULL, 1000, NULL, err, sizeof(err)), -EINVAL);
	cJSON_Delete(obj);
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_client_free(c);
}
END_TEST

static int huge_transport(const struct k8s_http_request *req, k8s_sink_fn sink, void *sink_ctx,
                          long *ret_status, char *err, size_t errlen, void *userdata)
{
	static char chunk[1 << 20];
	long *status = userdata;
	int r = 0;

	(void)req;
	(void)err;
	(void)errlen;
	memset(chunk, ' ', sizeof(chunk));
	chunk[0] = '{';
	/* 17 MiB: more than the 16 MiB bound; the sink must refuse. */
	for (int i = 0; i < 17 && r == 0; i++)
		r = sink(sink_ctx, *status, chunk, sizeof(chunk));
	*ret_status = *status;
	return r;
}

START_TEST(test_request_too_large)
{
	struct k8s_client *c = NULL;
	long status = 200;
	cJSON *obj = NULL;
	char err[512];

	ck_assert_int_eq(k8s_client_new(DATA "/token.yaml", NULL, &c, err, sizeof(err)), 0);
	k8s_client_set_transport(c, huge_transport, &status);
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &obj, err, sizeof(err)), -EFBIG);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	ck_assert_ptr_null(obj);
	/* An error body is only read for its start; the status decides. */
	status = 500;
	ck_assert_int_eq(k8s_get(c, LEASE, 1000, &obj, err, sizeof(err)), -EIO);
	k8s_client_free(c);
}
END_TEST

START_TEST(test_request_verbs)
{
	static const struct step steps[] = {
	        {.method = "POST", .url_has = LEASES, .status = 201, .fixture = "lease.json"},
	        {.method = "PATCH", .url_has = LEASE, .status = 200, .fixture = "lease.json"},
	        {.method = "DELETE", .url_has = LEASE, .status = 200, .body = "{}"},
	        {.method = "DELETE",
	         .url_has = LEASE,
	         .status = 409,
	         .body = "{\"kind\":\"Status\",\"reason\":\"Conflict\",\"message\":\"Precondition "
	                 "failed: UID in precondition: x, UID in object meta: y\",\"code\":409}"},
	        {.method = "GET", .status = 200, .fixture = "lease-list.json"},
	        {.method = "GET",
	         .url_lacks = "?",
	         .status = 200,
	         .fixture = "lease-list-null.json"},
	        {.method = "GET", .status = 200, .body = "{\"items\":{}}"},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	cJSON *obj = cJSON_Parse("{\"metadata\":{\"name\":\"kubefence\"},\"spec\":{}}");
	cJSON *patch = cJSON_Parse("{\"spec\":{\"holderIdentity\":null}}");
	cJSON *got = NULL, *body;
	char err[1024];

	ck_assert_int_eq(k8s_create(c, LEASES, obj, 1000, &got, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.content_type, "application/json");
	body = cJSON_Parse(rp.body);
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(body, "metadata"), "name")->valuestring,
	        "kubefence");
	cJSON_Delete(body);
	cJSON_Delete(got);

	ck_assert_int_eq(k8s_merge_patch(c, LEASE, patch, 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.content_type, "application/merge-patch+json");
	ck_assert_str_eq(rp.body, "{\"spec\":{\"holderIdentity\":null}}");

	ck_assert_int_eq(k8s_delete(c, LEASE, 0, "uid-1", "42", 1000, err, sizeof(err)), 0);
	body = cJSON_Parse(rp.body);
	ck_assert_str_eq(cJSON_GetObjectItem(body, "kind")->valuestring, "DeleteOptions");
	ck_assert_int_eq(cJSON_GetObjectItem(body, "gracePeriodSeconds")->valueint, 0);
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(body, "preconditions"), "uid")->valuestring,
	        "uid-1");
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(body, "preconditions"), "resourceVersion")
	                ->valuestring,
	        "42");
	cJSON_Delete(body);

	ck_assert_int_eq(k8s_delete(c, LEASE, -1, "x", NULL, 1000, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "409 Conflict: Precondition failed"));
	body = cJSON_Parse(rp.body);
	ck_assert_ptr_null(cJSON_GetObjectItem(body, "gracePeriodSeconds"));
	ck_assert_ptr_null(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(body, "preconditions"), "resourceVersion"));
	cJSON_Delete(body);

	ck_assert_int_eq(k8s_list(c, LEASES, "app=kubefence,role in (a,b)",
	                          "metadata.name=kubefence", 1000, &got, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(rp.url, "https://api.example.test:6443" LEASES
	                         "?labelSelector=app%3Dkubefence%2Crole%20in%20%28a%2Cb%29"
	                         "&fieldSelector=metadata.name%3Dkubefence");
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(got, "items")), 1);
	cJSON_Delete(got);
	ck_assert_int_eq(k8s_list(c, LEASES, NULL, NULL, 1000, &got, err, sizeof(err)), 0);
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(got, "items")));
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(got, "items")), 0);
	cJSON_Delete(got);
	got = NULL;
	ck_assert_int_eq(k8s_list(c, LEASES, NULL, NULL, 1000, &got, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_null(got);

	cJSON_Delete(obj);
	cJSON_Delete(patch);
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_client_free(c);
}
END_TEST

START_TEST(test_token_rotation)
{
	static const struct step steps[] = {
	        {.status = 200, .body = "{}"}, {.status = 200, .body = "{}"},
	        {.status = 200, .body = "{}"}, {.status = 200, .body = "{}"},
	        {.status = 200, .body = "{}"},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = NULL;
	char dir[64], kcpath[128], tok[128], err[512], tmp[140];

	make_tmpdir(dir);
	snprintf(kcpath, sizeof(kcpath), "%s/kubeconfig", dir);
	snprintf(tok, sizeof(tok), "%s/token", dir);
	write_file(tok, "token-one\n");
	/* A relative tokenFile: resolved against the kubeconfig's directory. */
	write_file(kcpath, "clusters: [{name: c, cluster: {server: 'https://k.test'}}]\n"
	                   "users: [{name: u, user: {tokenFile: token}}]\n"
	                   "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
	                   "current-context: x\n");
	ck_assert_msg(k8s_client_new(kcpath, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	k8s_client_set_transport(c, replay_transport, &rp);

	ck_assert_int_eq(k8s_get(c, "/api/v1/nodes", 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.auth, "Bearer token-one");

	/* Same size, new content: the kubelet rewrites bound tokens in place
	 * or swaps a symlink; either changes mtime or inode. */
	usleep(20000);
	write_file(tok, "token-two\n");
	usleep(1100000);
	ck_assert_int_eq(k8s_get(c, "/api/v1/nodes", 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.auth, "Bearer token-two");

	/* Atomic replacement by rename, with a new inode. */
	snprintf(tmp, sizeof(tmp), "%s.new", tok);
	write_file(tmp, "token-three-longer\n");
	ck_assert_int_eq(rename(tmp, tok), 0);
	usleep(1100000);
	ck_assert_int_eq(k8s_get(c, "/api/v1/nodes", 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.auth, "Bearer token-three-longer");

	/* A file that vanishes keeps the last token rather than failing. */
	ck_assert_int_eq(unlink(tok), 0);
	usleep(1100000);
	ck_assert_int_eq(k8s_get(c, "/api/v1/nodes", 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.auth, "Bearer token-three-longer");
	write_file(tok, "token-four\n");
	usleep(1100000);
	ck_assert_int_eq(k8s_get(c, "/api/v1/nodes", 1000, NULL, err, sizeof(err)), 0);
	ck_assert_str_eq(rp.auth, "Bearer token-four");

	k8s_client_free(c);
	rm_rf(dir);
}
END_TEST

START_TEST(test_in_cluster_client)
{
	static const struct step steps[] = {{.status = 200, .body = "{}"}};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = NULL;
	char dir[64], err[512];

	sa_dir_make(dir, "sa-token\n");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	ck_assert_msg(k8s_client_new_in_cluster(dir, &c, err, sizeof(err)) == 0, "%s", err);
	k8s_client_set_transport(c, replay_transport, &rp);
	ck_assert_str_eq(k8s_client_namespace(c), "kube-fence");
	ck_assert_int_eq(k8s_get(c, "/api/v1/namespaces/kube-fence", 1000, NULL, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(rp.url, "https://10.96.0.1:443/api/v1/namespaces/kube-fence");
	ck_assert_str_eq(rp.auth, "Bearer sa-token");
	k8s_client_free(c);
	/* k8s_client_new() with "in-cluster" uses the standard directory. */
	ck_assert_int_lt(k8s_client_new(K8S_IN_CLUSTER, NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_client_new(NULL, NULL, &c, err, sizeof(err)), -EINVAL);
	rm_rf(dir);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}
END_TEST

/* ================================================================ watch parser */

struct events {
	char log[4096];
	int fail_on; /* fail the n-th delivery (1-based) with -ENOTCONN; 0 = never */
	int n;
};

static int record_event(enum k8s_event type, const cJSON *obj, void *userdata)
{
	static const char *const names[] = {"SYNC", "ADDED", "MODIFIED", "DELETED"};
	struct events *ev = userdata;
	const cJSON *meta = cJSON_GetObjectItem(obj, "metadata");
	const cJSON *name = cJSON_GetObjectItem(meta, "name");
	const cJSON *rv = cJSON_GetObjectItem(meta, "resourceVersion");
	size_t l = strlen(ev->log);

	if (++ev->n == ev->fail_on)
		return -ENOTCONN;
	if (type == K8S_EVENT_SYNC)
		snprintf(ev->log + l, sizeof(ev->log) - l, "SYNC %d@%s;",
		         cJSON_GetArraySize(cJSON_GetObjectItem(obj, "items")),
		         cJSON_IsString(rv) ? rv->valuestring : "?");
	else
		snprintf(ev->log + l, sizeof(ev->log) - l, "%s %s@%s;", names[type],
		         cJSON_IsString(name) ? name->valuestring : "?",
		         cJSON_IsString(rv) ? rv->valuestring : "?");
	return 0;
}

#define STREAM_EVENTS "ADDED a@5001;MODIFIED a@5002;DELETED a@5011;"

START_TEST(test_parser_every_split)
{
	char *stream, err[512];
	size_t len;

	stream = read_fixture("watch-stream.jsonl", &len);
	for (size_t i = 0; i <= len; i++) {
		struct k8s_watch_parser *p = NULL;
		struct events ev = {0};

		ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
		ck_assert_int_eq(k8s_watch_parser_feed(p, stream, i, err, sizeof(err)), 0);
		ck_assert_int_eq(k8s_watch_parser_feed(p, stream + i, len - i, err, sizeof(err)),
		                 0);
		ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), 0);
		ck_assert_msg(strcmp(ev.log, STREAM_EVENTS) == 0, "split at %zu: %s", i, ev.log);
		/* The bookmark advanced the version without being delivered. */
		ck_assert_str_eq(k8s_watch_parser_rv(p), "5011");
		k8s_watch_parser_free(p);
	}
	free(stream);
}
END_TEST

START_TEST(test_parser_byte_by_byte_and_whole)
{
	struct k8s_watch_parser *p = NULL;
	struct events ev = {0};
	char *stream, err[512];
	size_t len;

	stream = read_fixture("watch-stream.jsonl", &len);
	ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
	for (size_t i = 0; i < len; i++)
		ck_assert_int_eq(k8s_watch_parser_feed(p, stream + i, 1, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), 0);
	ck_assert_str_eq(ev.log, STREAM_EVENTS);
	k8s_watch_parser_free(p);

	/* All events in one chunk, twice, with blank and CRLF lines around. */
	memset(&ev, 0, sizeof(ev));
	ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, "\n\r\n", 3, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, stream, len, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, stream, len, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), 0);
	ck_assert_str_eq(ev.log, STREAM_EVENTS STREAM_EVENTS);
	k8s_watch_parser_free(p);

	/* A last event without its newline still counts when it is whole. */
	memset(&ev, 0, sizeof(ev));
	ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, stream, len - 1, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), 0);
	ck_assert_str_eq(ev.log, STREAM_EVENTS);
	k8s_watch_parser_free(p);
	free(stream);
}
END_TEST

START_TEST(test_parser_truncated)
{
	char *stream, err[512];
	size_t len, cut;

	stream = read_fixture("watch-stream.jsonl", &len);
	/* Cut in the middle of the last (DELETED) event. */
	cut = (size_t)(strstr(stream, "{\"type\":\"DELETED\"") - stream) + 30;
	for (size_t i = cut; i < len - 2; i += 7) {
		struct k8s_watch_parser *p = NULL;
		struct events ev = {0};

		ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
		ck_assert_int_eq(k8s_watch_parser_feed(p, stream, i, err, sizeof(err)), 0);
		ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), -EBADMSG);
		ck_assert_ptr_nonnull(strstr(err, "stream ended inside an event"));
		ck_assert_str_eq(ev.log, "ADDED a@5001;MODIFIED a@5002;");
		ck_assert_str_eq(k8s_watch_parser_rv(p), "5010");
		k8s_watch_parser_free(p);
	}
	free(stream);
}
END_TEST

START_TEST(test_parser_malformed)
{
	static const char *const bad[] = {
	        "not json\n",
	        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"\n",
	        "[\"ADDED\"]\n",
	        "{\"type\":\"ADDED\",\"object\":\"str\"}\n",
	        "{\"type\":\"ADDED\"}\n",
	        "{\"type\":7,\"object\":{}}\n",
	        "{\"type\":\"WHAT\",\"object\":{}}\n",
	        "{\"type\":\"ADDED\",\"object\":{}} trailing\n",
	        "{\"type\":\"ADDED\",\"object\":{}}{\"type\":\"ADDED\",\"object\":{}}\n",
	        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":5}}}\n",
	        "\"string\"\n",
	        "null\n",
	};
	char err[512];

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct k8s_watch_parser *p = NULL;
		struct events ev = {0};
		const char *good = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"g\","
		                   "\"resourceVersion\":\"1\"}}}\n";
		char chunk[512];

		/* A good event, then the bad one, in one chunk. */
		snprintf(chunk, sizeof(chunk), "%s%s", good, bad[i]);
		ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
		err[0] = '\0';
		ck_assert_msg(k8s_watch_parser_feed(p, chunk, strlen(chunk), err, sizeof(err)) ==
		                      -EBADMSG,
		              "case %zu", i);
		ck_assert_msg(err[0], "case %zu: no message", i);
		ck_assert_str_eq(ev.log, "ADDED g@1;");
		ck_assert_str_eq(k8s_watch_parser_rv(p), "1");
		ck_assert(!k8s_watch_parser_callback_failed(p));
		/* Sticky: the stream is not trusted after that. */
		ck_assert_int_eq(k8s_watch_parser_feed(p, good, strlen(good), err, sizeof(err)),
		                 -EBADMSG);
		ck_assert_int_eq(k8s_watch_parser_finish(p, err, sizeof(err)), -EBADMSG);
		ck_assert_str_eq(ev.log, "ADDED g@1;");
		k8s_watch_parser_free(p);
	}
}
END_TEST

START_TEST(test_parser_oversized)
{
	struct k8s_watch_parser *p = NULL;
	struct events ev = {0};
	char line[200], err[512];

	memset(line, ' ', sizeof(line));
	memcpy(line, "{\"type\":\"ADDED\",\"object\":{}}", 28);
	line[sizeof(line) - 1] = '\n';

	/* Whole in one chunk. */
	ck_assert_int_eq(k8s_watch_parser_new(64, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line, sizeof(line), err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "larger than 64 bytes"));
	k8s_watch_parser_free(p);

	/* Growing across chunks, never reaching a newline. */
	ck_assert_int_eq(k8s_watch_parser_new(64, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line, 40, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line + 40, 24, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line + 64, 1, err, sizeof(err)), -EBADMSG);
	k8s_watch_parser_free(p);

	/* Exactly at the bound is fine (the newline does not count). */
	memset(line, ' ', sizeof(line));
	memcpy(line, "{\"type\":\"ADDED\",\"object\":{}}", 28);
	line[64] = '\n';
	ck_assert_int_eq(k8s_watch_parser_new(64, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line, 30, err, sizeof(err)), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, line + 30, 35, err, sizeof(err)), 0);
	ck_assert_str_eq(ev.log, "ADDED ?@?;");
	k8s_watch_parser_free(p);
	ck_assert_uint_eq(K8S_WATCH_EVENT_MAX, 4u * 1024 * 1024);
}
END_TEST

START_TEST(test_parser_error_events)
{
	struct k8s_watch_parser *p = NULL;
	struct events ev = {0};
	char *e410, err[512];
	size_t len;
	static const struct {
		const char *line;
		int r;
	} t[] = {
	        {"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500,\"message\":"
	         "\"x\"}}\n",
	         -EIO},
	        {"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"message\":\"no code\"}}\n",
	         -EIO},
	        {"{\"type\":\"ERROR\",\"object\":{\"code\":403,\"reason\":\"Forbidden\"}}\n",
	         -EPERM},
	        {"{\"type\":\"ERROR\",\"object\":{\"code\":200}}\n", -EIO},
	};

	e410 = read_fixture("watch-error-410.jsonl", &len);
	for (size_t split = 0; split <= len; split += 13) {
		ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
		ck_assert_int_eq(k8s_watch_parser_feed(p, e410, split, err, sizeof(err)), 0);
		ck_assert_int_eq(
		        k8s_watch_parser_feed(p, e410 + split, len - split, err, sizeof(err)),
		        -EIDRM);
		ck_assert_str_eq(err,
		                 "ERROR event: 410 Gone: too old resource version: 100 (4711)");
		k8s_watch_parser_free(p);
	}
	free(e410);
	ck_assert_str_eq(ev.log, "");

	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
		ck_assert_msg(k8s_watch_parser_feed(p, t[i].line, strlen(t[i].line), err,
		                                    sizeof(err)) == t[i].r,
		              "case %zu", i);
		k8s_watch_parser_free(p);
	}
}
END_TEST

START_TEST(test_parser_callback_failure)
{
	struct k8s_watch_parser *p = NULL;
	struct events ev = {.fail_on = 2};
	char *stream, err[512];
	size_t len;

	stream = read_fixture("watch-stream.jsonl", &len);
	ck_assert_int_eq(k8s_watch_parser_new(0, record_event, &ev, &p), 0);
	ck_assert_int_eq(k8s_watch_parser_feed(p, stream, len, err, sizeof(err)), -ENOTCONN);
	ck_assert(k8s_watch_parser_callback_failed(p));
	ck_assert_str_eq(ev.log, "ADDED a@5001;");
	/* The failed event was not consumed: a resumed watch sees it again. */
	ck_assert_str_eq(k8s_watch_parser_rv(p), "5001");
	k8s_watch_parser_free(p);
	free(stream);
}
END_TEST

/* ================================================================ watch over replay */

START_TEST(test_watch_once)
{
	static const struct step steps[] = {
	        {.url_has = LEASES "?watch=1&allowWatchBookmarks=true&timeoutSeconds=60",
	         .url_lacks = "resourceVersion",
	         .status = 200,
	         .fixture = "watch-stream.jsonl",
	         .chunk = 11},
	        {.url_has = "?watch=1&resourceVersion=5011&allowWatchBookmarks=true&timeoutSeconds="
	                    "7&labelSelector=a%3Db",
	         .status = 200,
	         .fixture = "watch-error-410.jsonl"},
	        {.status = 403, .fixture = "status-403.json"},
	        {.status = 200, .body = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\""},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	struct k8s_watch_opts opts = {.label_selector = "a=b", .timeout_seconds = 7};
	struct events ev = {0};
	char rv[K8S_RV_MAX] = "", err[1024];

	ck_assert_int_eq(k8s_watch_once(c, NULL, LEASES, NULL, rv, 5000, record_event, &ev, err,
	                                sizeof(err)),
	                 0);
	ck_assert_str_eq(ev.log, STREAM_EVENTS);
	ck_assert_str_eq(rv, "5011");
	ck_assert_int_eq(rp.timeout_ms, 5000);

	ck_assert_int_eq(k8s_watch_once(c, NULL, LEASES, &opts, rv, 5000, record_event, &ev, err,
	                                sizeof(err)),
	                 -EIDRM);
	ck_assert_ptr_nonnull(strstr(err, "GET leases.coordination.k8s.io in \"ns\": watch: ERROR "
	                                  "event: 410 Gone: too old resource version"));
	ck_assert_str_eq(rv, "5011");

	ck_assert_int_eq(k8s_watch_once(c, NULL, LEASES, &opts, rv, 5000, record_event, &ev, err,
	                                sizeof(err)),
	                 -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "403 Forbidden"));

	ck_assert_int_eq(k8s_watch_once(c, NULL, LEASES, &opts, rv, 5000, record_event, &ev, err,
	                                sizeof(err)),
	                 -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "stream ended inside an event"));
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_client_free(c);
}
END_TEST

START_TEST(test_watch_loop_relist_and_resume)
{
	static const struct step steps[] = {
	        /* list, then watch from its version */
	        {.url_has = LEASES "?labelSelector=app%3Dx",
	         .url_lacks = "watch",
	         .status = 200,
	         .fixture = "lease-list.json"},
	        {.url_has = "watch=1&resourceVersion=5000&",
	         .status = 200,
	         .fixture = "watch-stream.jsonl",
	         .chunk = 7},
	        /* the server ended that watch: resume from the last version */
	        {.url_has = "watch=1&resourceVersion=5011&",
	         .status = 200,
	         .fixture = "watch-error-410.jsonl"},
	        /* expired: relist */
	        {.url_lacks = "watch", .status = 200, .fixture = "lease-list-null.json"},
	        {.url_has = "resourceVersion=5001&", .error = -ECONNRESET},
	        {.url_has = "resourceVersion=5001&", .status = 503, .body = ""},
	        /* malformed stream: relist after a back-off */
	        {.url_has = "resourceVersion=5001&", .status = 200, .body = "garbage\n"},
	        {.url_lacks = "watch", .status = 200, .fixture = "lease-list.json"},
	        /* an error no retry fixes ends the loop */
	        {.url_has = "resourceVersion=5000&", .status = 403, .fixture = "status-403.json"},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	struct k8s_watch_opts opts = {.label_selector = "app=x"};
	struct k8s_watch *w = NULL;
	struct events ev = {0};
	char err[1024] = "";
	usec_t t0;

	ck_assert_int_eq(k8s_watch_new(&w), 0);
	rp.w = w;
	t0 = clock_mono_usec();
	ck_assert_int_eq(k8s_watch_loop(c, w, LEASES, &opts, record_event, &ev, err, sizeof(err)),
	                 -EPERM);
	ck_assert_str_eq(ev.log, "SYNC 1@5000;" STREAM_EVENTS "SYNC 0@5001;SYNC 1@5000;");
	ck_assert_ptr_nonnull(strstr(err, "cannot update resource \"leases\""));
	/* Back-offs of 200, 400 and 800 ms for the three failures. */
	ck_assert_int_ge(clock_mono_usec() - t0, 1300 * USEC_PER_MSEC);
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_watch_free(w);
	k8s_client_free(c);
}
END_TEST

START_TEST(test_watch_loop_stop_and_callback_error)
{
	static const struct step steps[] = {
	        {.status = 200, .fixture = "lease-list.json"},
	        {.status = 200, .fixture = "watch-stream.jsonl", .stop = true},
	        {.status = 200, .fixture = "lease-list.json"},
	        {.status = 200, .fixture = "watch-stream.jsonl"},
	};
	struct replay rp = {.steps = steps, .n = ELEMENTSOF(steps)};
	struct k8s_client *c = replay_client("token.yaml", NULL, &rp);
	struct k8s_watch *w = NULL;
	struct events ev = {0};
	char err[1024] = "";

	ck_assert_int_eq(k8s_watch_new(&w), 0);
	rp.w = w;
	ck_assert(!k8s_watch_is_stopped(w));
	ck_assert_int_eq(k8s_watch_loop(c, w, LEASES, NULL, record_event, &ev, err, sizeof(err)),
	                 0);
	ck_assert(k8s_watch_is_stopped(w));
	ck_assert_str_eq(ev.log, "SYNC 1@5000;" STREAM_EVENTS);
	/* A stopped handle stays stopped. */
	ck_assert_int_eq(k8s_watch_loop(c, w, LEASES, NULL, record_event, &ev, err, sizeof(err)),
	                 0);
	k8s_watch_free(w);

	/* The callback's error ends the loop with its value. */
	ck_assert_int_eq(k8s_watch_new(&w), 0);
	rp.w = w;
	memset(&ev, 0, sizeof(ev));
	ev.fail_on = 3;
	ck_assert_int_eq(k8s_watch_loop(c, w, LEASES, NULL, record_event, &ev, err, sizeof(err)),
	                 -ENOTCONN);
	ck_assert_str_eq(ev.log, "SYNC 1@5000;ADDED a@5001;");
	ck_assert_uint_eq(rp.i, rp.n);
	k8s_watch_free(w);
	k8s_client_free(c);
}
END_TEST

/* ================================================================ real curl, loopback */

/* A kubeconfig for https://127.0.0.1:port with the system trust store. */
static struct k8s_client *loopback_client(int port, char dir[static 64])
{
	struct k8s_client *c = NULL;
	char path[128], text[512], err[512] = "";

	make_tmpdir(dir);
	snprintf(path, sizeof(path), "%s/kubeconfig", dir);
	snprintf(text, sizeof(text),
	         "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:%d'}}]\n"
	         "users: [{name: u, user: {token: t}}]\n"
	         "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
	         "current-context: x\n",
	         port);
	write_file(path, text);
	ck_assert_msg(k8s_client_new(path, NULL, &c, err, sizeof(err)) == 0, "%s", err);
	return c;
}

/* A listening socket that never accepts: connects succeed, TLS never
 * answers.  Returns the fd; *ret_port its port. */
static int silent_listener(int *ret_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

START_TEST(test_curl_refused)
{
	struct k8s_client *c;
	char dir[64], err[1024];
	int port, fd;

	/* A port that was just free and has no listener. */
	fd = silent_listener(&port);
	close(fd);
	c = loopback_client(port, dir);
	ck_assert_int_eq(k8s_get(c, LEASE, 2000, NULL, err, sizeof(err)), -ECONNREFUSED);
	ck_assert_ptr_nonnull(strstr(err, "connection refused (curl error 7"));
	k8s_client_free(c);
	rm_rf(dir);
}
END_TEST

START_TEST(test_curl_deadline)
{
	struct k8s_client *c;
	char dir[64], err[1024], rv[K8S_RV_MAX] = "1";
	struct events ev = {0};
	int port, fd;
	usec_t t0, dt;

	fd = silent_listener(&port);
	c = loopback_client(port, dir);
	t0 = clock_mono_usec();
	ck_assert_int_eq(k8s_get(c, LEASE, 300, NULL, err, sizeof(err)), -ETIMEDOUT);
	dt = clock_mono_usec() - t0;
	ck_assert_msg(dt >= 250 * USEC_PER_MSEC && dt < 1000 * USEC_PER_MSEC * slack(),
	              "%" PRId64 " us", dt);
	ck_assert_ptr_nonnull(strstr(err, "deadline passed (curl error 28"));

	t0 = clock_mono_usec();
	ck_assert_int_eq(
	        k8s_watch_once(c, NULL, LEASES, NULL, rv, 300, record_event, &ev, err, sizeof(err)),
	        -ETIMEDOUT);
	ck_assert_int_lt(clock_mono_usec() - t0, 1000 * USEC_PER_MSEC * slack());
	ck_assert_str_eq(rv, "1");
	k8s_client_free(c);
	close(fd);
	rm_rf(dir);
}
END_TEST

struct stopper {
	struct k8s_watch *w;
	usec_t delay, stopped_at;
};

static void *stop_later(void *arg)
{
	struct stopper *s = arg;

	usleep((useconds_t)s->delay);
	s->stopped_at = clock_mono_usec();
	k8s_watch_stop(s->w);
	return NULL;
}

START_TEST(test_curl_stop_blocked_watch)
{
	struct k8s_watch_opts opts = {.request_timeout_ms = 30000};
	struct stopper s = {.delay = 300 * USEC_PER_MSEC};
	struct k8s_client *c;
	struct events ev = {0};
	char dir[64], err[1024], rv[K8S_RV_MAX] = "1";
	pthread_t t;
	int port, fd;
	usec_t done;

	fd = silent_listener(&port);
	c = loopback_client(port, dir);

	/* The loop blocks in its list (30 s deadline); stop ends it at once. */
	ck_assert_int_eq(k8s_watch_new(&s.w), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, stop_later, &s), 0);
	ck_assert_int_eq(k8s_watch_loop(c, s.w, LEASES, &opts, record_event, &ev, err, sizeof(err)),
	                 0);
	done = clock_mono_usec();
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(done - s.stopped_at < 150 * USEC_PER_MSEC * slack(),
	              "stopped after %" PRId64 " us", done - s.stopped_at);
	s.w = k8s_watch_free(s.w);

	/* The same for a single watch request. */
	ck_assert_int_eq(k8s_watch_new(&s.w), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, stop_later, &s), 0);
	ck_assert_int_eq(k8s_watch_once(c, s.w, LEASES, NULL, rv, 30000, record_event, &ev, err,
	                                sizeof(err)),
	                 -ECANCELED);
	done = clock_mono_usec();
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(done - s.stopped_at < 150 * USEC_PER_MSEC * slack(),
	              "stopped after %" PRId64 " us", done - s.stopped_at);
	k8s_watch_free(s.w);
	ck_assert_str_eq(ev.log, "");

	k8s_client_free(c);
	close(fd);
	rm_rf(dir);
}
END_TEST

struct hammer {
	struct k8s_client *c;
	int failures;
};

static int ok_transport(const struct k8s_http_request *req, k8s_sink_fn sink, void *sink_ctx,
                        long *ret_status, char *err, size_t errlen, void *userdata)
{
	static const char body[] = "{\"kind\":\"Lease\"}";

	(void)req;
	(void)err;
	(void)errlen;
	(void)userdata;
	*ret_status = 200;
	return sink(sink_ctx, 200, body, sizeof(body) - 1);
}

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;

	for (int i = 0; i < 200; i++) {
		cJSON *obj = NULL;
		char err[256];

		if (k8s_get(h->c, LEASE, 1000, &obj, err, sizeof(err)) < 0)
			h->failures++;
		cJSON_Delete(obj);
	}
	return NULL;
}

START_TEST(test_threads_share_client)
{
	struct hammer h[4];
	pthread_t t[4];
	struct k8s_client *c = NULL;
	char err[512];

	ck_assert_int_eq(k8s_client_new(DATA "/token.yaml", "ctx-file", &c, err, sizeof(err)), 0);
	k8s_client_set_transport(c, ok_transport, NULL);
	for (int i = 0; i < 4; i++) {
		h[i] = (struct hammer){.c = c};
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(h[i].failures, 0);
	}
	k8s_client_free(c);
}
END_TEST

static Suite *k8s_suite(void)
{
	Suite *s = suite_create("k8s");

	kft_add(s, "status_table", test_status_table, 60, NULL, NULL);
	kft_add(s, "retryable", test_retryable, 60, NULL, NULL);
	kft_add(s, "response_error_status_objects", test_response_error_status_objects, 60, NULL,
	        NULL);
	kft_add(s, "response_error_malformed", test_response_error_malformed, 60, NULL, NULL);
	kft_add(s, "path", test_path, 60, NULL, NULL);
	kft_add(s, "kubeconfig_token_current_context", test_kubeconfig_token_current_context, 60,
	        NULL, NULL);
	kft_add(s, "kubeconfig_token_file_explicit_context",
	        test_kubeconfig_token_file_explicit_context, 60, NULL, NULL);
	kft_add(s, "kubeconfig_relative_kubeconfig_path", test_kubeconfig_relative_kubeconfig_path,
	        60, NULL, NULL);
	kft_add(s, "kubeconfig_client_cert_files_and_data",
	        test_kubeconfig_client_cert_files_and_data, 60, NULL, NULL);
	kft_add(s, "kubeconfig_json", test_kubeconfig_json, 60, NULL, NULL);
	kft_add(s, "kubeconfig_errors", test_kubeconfig_errors, 60, NULL, NULL);
	kft_add(s, "kubeconfig_odd_yaml", test_kubeconfig_odd_yaml, 60, NULL, NULL);
	kft_add(s, "in_cluster", test_in_cluster, 60, NULL, NULL);
	kft_add(s, "request_get_and_shapes", test_request_get_and_shapes, 60, NULL, NULL);
	kft_add(s, "request_errors", test_request_errors, 60, NULL, NULL);
	kft_add(s, "request_too_large", test_request_too_large, 60, NULL, NULL);
	kft_add(s, "request_verbs", test_request_verbs, 60, NULL, NULL);
	kft_add(s, "token_rotation", test_token_rotation, 60, NULL, NULL);
	kft_add(s, "in_cluster_client", test_in_cluster_client, 60, NULL, NULL);
	kft_add(s, "parser_every_split", test_parser_every_split, 60, NULL, NULL);
	kft_add(s, "parser_byte_by_byte_and_whole", test_parser_byte_by_byte_and_whole, 60, NULL,
	        NULL);
	kft_add(s, "parser_truncated", test_parser_truncated, 60, NULL, NULL);
	kft_add(s, "parser_malformed", test_parser_malformed, 60, NULL, NULL);
	kft_add(s, "parser_oversized", test_parser_oversized, 60, NULL, NULL);
	kft_add(s, "parser_error_events", test_parser_error_events, 60, NULL, NULL);
	kft_add(s, "parser_callback_failure", test_parser_callback_failure, 60, NULL, NULL);
	kft_add(s, "watch_once", test_watch_once, 60, NULL, NULL);
	kft_add(s, "watch_loop_relist_and_resume", test_watch_loop_relist_and_resume, 60, NULL,
	        NULL);
	kft_add(s, "watch_loop_stop_and_callback_error", test_watch_loop_stop_and_callback_error,
	        60, NULL, NULL);
	kft_add(s, "curl_refused", test_curl_refused, 60, NULL, NULL);
	kft_add(s, "curl_deadline", test_curl_deadline, 60, NULL, NULL);
	kft_add(s, "curl_stop_blocked_watch", test_curl_stop_blocked_watch, 60, NULL, NULL);
	kft_add(s, "threads_share_client", test_threads_share_client, 60, NULL, NULL);
	return s;
}

int main(void)
{
	return kft_main(k8s_suite(), NULL);
}
