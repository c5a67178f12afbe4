/* check_k8s_it: the REST client against a real kube-apiserver.
 *
 * Runs inside the control plane that tests/harness/control-plane.sh started
 * (etcd + kube-apiserver v1.20 with TLS, RBAC and bearer tokens); its
 * KF_IT_* variables must be in the environment, and a missing one fails the
 * test.  Checks the errno of each API outcome exactly, since callers decide
 * on them: -EEXIST vs -ESTALE, precondition failures, 403 with the verb and
 * resource named, TLS and connection errors, deadlines, and a watch loop
 * that sees other clients' changes.  Each test uses its own lease names. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/k8s.h"
#include "tests/integration/it.h"
#include "lib/kubeconfig.h"
#include "lib/util.h"
#include "tests/lib/kftest.h"

#define LEASE_GV   "coordination.k8s.io/v1"
#define TIMEOUT_MS 10000L

/* A name unique to this run and test. */
static void unique_name(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "k8s-it-%s-%d-%" PRId64, what, (int)getpid(),
	         clock_mono_usec() % 1000000);
}

static void lease_path(char *buf, size_t len, const char *name)
{
	ck_assert_int_gt(k8s_path(buf, len, LEASE_GV, it_env("KF_IT_NS"), "leases", name), 0);
}

static cJSON *lease_object(const char *name, const char *holder, const char *label)
{
	cJSON *o = cJSON_CreateObject(), *meta, *spec;

	cJSON_AddStringToObject(o, "apiVersion", LEASE_GV);
	cJSON_AddStringToObject(o, "kind", "Lease");
	meta = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(meta, "name", name);
	if (label)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "labels"), "kf-it-group",
		                        label);
	spec = cJSON_AddObjectToObject(o, "spec");
	cJSON_AddStringToObject(spec, "holderIdentity", holder);
	cJSON_AddNumberToObject(spec, "leaseDurationSeconds", 10);
	return o;
}

static const char *meta_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), key);

	ck_assert_msg(cJSON_IsString(v), "metadata.%s missing", key);
	return v->valuestring;
}

static const char *holder_of(const cJSON *obj)
{
	const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "holderIdentity");

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void create_lease(struct k8s_client *c, const char *name, const char *holder,
                         const char *label, cJSON **ret)
{
	char coll[256], err[1024] = "";
	cJSON *obj = lease_object(name, holder, label);

	lease_path(coll, sizeof(coll), NULL);
	ck_assert_msg(k8s_create(c, coll, obj, TIMEOUT_MS, ret, err, sizeof(err)) == 0, "%s", err);
	cJSON_Delete(obj);
}

static void delete_lease(struct k8s_client *c, const char *name)
{
	char path[256], err[1024] = "";
	int r;

	lease_path(path, sizeof(path), name);
	r = k8s_delete(c, path, 0, NULL, NULL, TIMEOUT_MS, err, sizeof(err));
	ck_assert_msg(r == 0 || r == -ENOENT, "%s", err);
}

/* A kubeconfig file in KF_IT_DIR with the given cluster and user bodies. */
static void write_kubeconfig(char *path, size_t len, const char *tag, const char *cluster,
                             const char *user)
{
	FILE *f;

	snprintf(path, len, "%s/k8s-it-%s-%d.kubeconfig", it_env("KF_IT_DIR"), tag, (int)getpid());
	f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "apiVersion: v1\nkind: Config\n"
	        "clusters:\n- name: c\n  cluster:\n%s"
	        "users:\n- name: u\n  user:\n%s"
	        "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: %s}\n"
	        "current-context: x\n",
	        cluster, user, it_env("KF_IT_NS"));
	ck_assert_int_eq(fclose(f), 0);
}

/* The base64 of a (small) file, as kubeconfig -data fields hold it. */
static char *file_base64(const char *path)
{
	static const char tab[] =
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char in[8192];
	size_t n, o = 0;
	char *out;
	FILE *f;

	f = fopen(path, "re");
	ck_assert_msg(f, "%s", path);
	n = fread(in, 1, sizeof(in), f);
	fclose(f);
	ck_assert(n > 0 && n < sizeof(in));
	out = malloc(n / 3 * 4 + 8);
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
		             (i + 2 < n ? in[i + 2] : 0);

		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static char *agent_token(void)
{
	struct kubeconfig *kc = NULL;
	char err[512] = "", *t;

	ck_assert_msg(kubeconfig_load(it_env("KF_IT_AGENT_KUBECONFIG_A"), NULL, &kc, err,
	                              sizeof(err)) == 0,
	              "%s", err);
	ck_assert_ptr_nonnull(kc->token);
	t = strdup(kc->token);
	kubeconfig_free(kc);
	return t;
}

/* ================================================================ objects */

START_TEST(test_get_create_update_patch)
{
	struct k8s_client *c = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	struct k8s_client *admin = it_admin_client();
	cJSON *got = NULL, *v1 = NULL, *v2 = NULL, *patch, *obj;
	char name[128], path[256], coll[256], err[1024] = "";
	char rv1[64];

	unique_name(name, sizeof(name), "crud");
	lease_path(path, sizeof(path), name);
	lease_path(coll, sizeof(coll), NULL);

	ck_assert_str_eq(k8s_client_namespace(c), it_env("KF_IT_NS"));
	ck_assert_str_eq(k8s_client_server(c), it_env("KF_IT_SERVER"));
	ck_assert_int_eq(k8s_get(c, path, TIMEOUT_MS, &got, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_null(got);
	ck_assert_msg(strstr(err, "404 Not Found") && strstr(err, "not found"), "%s", err);

	create_lease(c, name, "node-a", NULL, &v1);
	(void)str_copy(rv1, sizeof(rv1), meta_str(v1, "resourceVersion"));
	ck_assert_str_eq(meta_str(v1, "name"), name);

	/* Create again: AlreadyExists, not Conflict. */
	obj = lease_object(name, "node-b", NULL);
	ck_assert_int_eq(k8s_create(c, coll, obj, TIMEOUT_MS, &got, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_null(got);
	ck_assert_msg(strstr(err, "409 Conflict") && strstr(err, "already exists"), "%s", err);
	cJSON_Delete(obj);

	ck_assert_int_eq(k8s_get(c, path, TIMEOUT_MS, &got, err, sizeof(err)), 0);
	ck_assert_str_eq(holder_of(got), "node-a");
	cJSON_Delete(got);
	got = NULL;

	/* Update with the current resourceVersion succeeds... */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(v1, "spec"), "holderIdentity",
	                          cJSON_CreateString("node-b"));
	ck_assert_msg(k8s_update(c, path, v1, TIMEOUT_MS, &v2, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(holder_of(v2), "node-b");
	ck_assert_str_ne(meta_str(v2, "resourceVersion"), rv1);

	/* ...and the same update again, now stale, is -ESTALE. */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(v1, "spec"), "holderIdentity",
	                          cJSON_CreateString("node-c"));
	ck_assert_int_eq(k8s_update(c, path, v1, TIMEOUT_MS, &got, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_null(got);
	ck_assert_msg(strstr(err, "PUT leases.coordination.k8s.io \"") &&
	                      strstr(err, "409 Conflict: Operation cannot be fulfilled") &&
	                      strstr(err, "the object has been modified"),
	              "%s", err);

	/* Merge patch; null removes a field. */
	patch = cJSON_Parse(
	        "{\"spec\":{\"holderIdentity\":\"node-p\",\"leaseDurationSeconds\":null}}");
	ck_assert_msg(k8s_merge_patch(c, path, patch, TIMEOUT_MS, &got, err, sizeof(err)) == 0,
	              "%s", err);
	ck_assert_str_eq(holder_of(got), "node-p");
	ck_assert_ptr_null(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(got, "spec"), "leaseDurationSeconds"));
	cJSON_Delete(got);
	cJSON_Delete(patch);

	/* A body that does not decode is 400; one that fails validation 422. */
	obj = lease_object(name, "x", NULL);
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(obj, "spec"), "leaseDurationSeconds",
	                          cJSON_CreateString("not a number"));
	ck_assert_int_eq(k8s_update(c, path, obj, TIMEOUT_MS, NULL, err, sizeof(err)), -EBADMSG);
	ck_assert_msg(strstr(err, "400 Bad Request"), "%s", err);
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(obj, "spec"), "leaseDurationSeconds",
	                          cJSON_CreateNumber(-5));
	ck_assert_int_eq(k8s_update(c, path, obj, TIMEOUT_MS, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "422 Unprocessable Entity"), "%s", err);
	cJSON_Delete(obj);

	/* The agent Role has no delete. */
	ck_assert_int_eq(k8s_delete(c, path, -1, NULL, NULL, TIMEOUT_MS, err, sizeof(err)), -EPERM);
	ck_assert_msg(strstr(err, "cannot delete resource \"leases\""), "%s", err);

	delete_lease(admin, name);
	cJSON_Delete(v1);
	cJSON_Delete(v2);
	k8s_client_free(c);
	k8s_client_free(admin);
}
END_TEST

START_TEST(test_delete_preconditions)
{
	struct k8s_client *admin = it_admin_client();
	char name[128], path[256], err[1024] = "", uid[64], rv[64];
	cJSON *obj = NULL;

	unique_name(name, sizeof(name), "del");
	lease_path(path, sizeof(path), name);
	create_lease(admin, name, "node-a", NULL, &obj);
	(void)str_copy(uid, sizeof(uid), meta_str(obj, "uid"));
	(void)str_copy(rv, sizeof(rv), meta_str(obj, "resourceVersion"));
	cJSON_Delete(obj);

	/* A wrong uid: 409 Conflict (v1.20 words it "the UID in the precondition
	 * ... does not match"). */
	ck_assert_int_eq(k8s_delete(admin, path, 0, "00000000-0000-0000-0000-000000000000", NULL,
	                            TIMEOUT_MS, err, sizeof(err)),
	                 -ESTALE);
	ck_assert_msg(strstr(err, "DELETE leases.coordination.k8s.io \"") &&
	                      strstr(err, "409 Conflict: Operation cannot be fulfilled") &&
	                      strstr(err, "the UID in the precondition"),
	              "%s", err);
	/* A wrong resourceVersion, the right uid. */
	ck_assert_int_eq(k8s_delete(admin, path, 0, uid, "1", TIMEOUT_MS, err, sizeof(err)),
	                 -ESTALE);
	ck_assert_msg(strstr(err, "409 Conflict") && strstr(err, "ResourceVersion"), "%s", err);

	/* Both right, with a grace period. */
	ck_assert_msg(k8s_delete(admin, path, 5, uid, rv, TIMEOUT_MS, err, sizeof(err)) == 0, "%s",
	              err);
	ck_assert_int_eq(k8s_get(admin, path, TIMEOUT_MS, NULL, err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(k8s_delete(admin, path, 0, NULL, NULL, TIMEOUT_MS, err, sizeof(err)),
	                 -ENOENT);
	k8s_client_free(admin);
}
END_TEST

START_TEST(test_list_selectors)
{
	struct k8s_client *c = it_client_for("KF_IT_AGENT_KUBECONFIG_B");
	struct k8s_client *admin = it_admin_client();
	char group[128], other[128], n1[160], n2[160], n3[160], coll[256], sel[320];
	char err[1024] = "";
	cJSON *list = NULL;
	const cJSON *items;

	unique_name(group, sizeof(group), "g");
	unique_name(other, sizeof(other), "o");
	snprintf(n1, sizeof(n1), "%s-1", group);
	snprintf(n2, sizeof(n2), "%s-2", group);
	snprintf(n3, sizeof(n3), "%s-3", group);
	create_lease(admin, n1, "a", group, NULL);
	create_lease(admin, n2, "b", group, NULL);
	create_lease(admin, n3, "c", other, NULL);
	lease_path(coll, sizeof(coll), NULL);

	snprintf(sel, sizeof(sel), "kf-it-group=%s", group);
	ck_assert_msg(k8s_list(c, coll, sel, NULL, TIMEOUT_MS, &list, err, sizeof(err)) == 0, "%s",
	              err);
	items = cJSON_GetObjectItem(list, "items");
	ck_assert_int_eq(cJSON_GetArraySize(items), 2);
	ck_assert(strlen(meta_str(list, "resourceVersion")) > 0);
	cJSON_Delete(list);

	/* A set-based selector needs escaping: spaces, parentheses, commas. */
	snprintf(sel, sizeof(sel), "kf-it-group in (%s, %s)", group, other);
	ck_assert_msg(k8s_list(c, coll, sel, NULL, TIMEOUT_MS, &list, err, sizeof(err)) == 0, "%s",
	              err);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(list, "items")), 3);
	cJSON_Delete(list);

	snprintf(sel, sizeof(sel), "metadata.name=%s", n2);
	ck_assert_msg(k8s_list(c, coll, NULL, sel, TIMEOUT_MS, &list, err, sizeof(err)) == 0, "%s",
	              err);
	items = cJSON_GetObjectItem(list, "items");
	ck_assert_int_eq(cJSON_GetArraySize(items), 1);
	ck_assert_str_eq(meta_str(cJSON_GetArrayItem(items, 0), "name"), n2);
	cJSON_Delete(list);

	/* Both selectors; none match: items is an empty array. */
	snprintf(sel, sizeof(sel), "metadata.name=%s", n3);
	ck_assert_msg(k8s_list(c, coll, "kf-it-group=nothing-has-this", sel, TIMEOUT_MS, &list, err,
	                       sizeof(err)) == 0,
	              "%s", err);
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(list, "items")));
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(list, "items")), 0);
	cJSON_Delete(list);

	/* A malformed selector is the server's 400. */
	ck_assert_int_eq(k8s_list(c, coll, "a in (", NULL, TIMEOUT_MS, &list, err, sizeof(err)),
	                 -EBADMSG);

	delete_lease(admin, n1);
	delete_lease(admin, n2);
	delete_lease(admin, n3);
	k8s_client_free(c);
	k8s_client_free(admin);
}
END_TEST

/* ================================================================ watch */

struct seen {
	pthread_mutex_t lock;
	const char *name;
	char log[4096];
	int syncs;
	bool deleted;
};

static int on_event(enum k8s_event type, const cJSON *obj, void *userdata)
{
	static const char *const names[] = {"SYNC", "ADDED", "MODIFIED", "DELETED"};
	struct seen *s = userdata;
	const cJSON *name = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "name");
	size_t l;

	pthread_mutex_lock(&s->lock);
	l = strlen(s->log);
	if (type == K8S_EVENT_SYNC) {
		s->syncs++;
		snprintf(s->log + l, sizeof(s->log) - l, "SYNC %d;",
		         cJSON_GetArraySize(cJSON_GetObjectItem(obj, "items")));
	} else if (cJSON_IsString(name) && strcmp(name->valuestring, s->name) == 0) {
		snprintf(s->log + l, sizeof(s->log) - l, "%s %s;", names[type],
		         holder_of(obj) ? holder_of(obj) : "-");
		if (type == K8S_EVENT_DELETED)
			s->deleted = true;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

struct loop_args {
	struct k8s_client *c;
	struct k8s_watch *w;
	const char *coll;
	struct k8s_watch_opts opts;
	struct seen *seen;
	int r;
	char err[1024];
};

static void *loop_thread(void *arg)
{
	struct loop_args *a = arg;

	a->r = k8s_watch_loop(a->c, a->w, a->coll, &a->opts, on_event, a->seen, a->err,
	                      sizeof(a->err));
	return NULL;
}

static bool wait_for(struct seen *s, bool (*cond)(struct seen *), long timeout_ms)
{
	usec_t end = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;
	bool ok = false;

	while (!ok && clock_mono_usec() < end) {
		pthread_mutex_lock(&s->lock);
		ok = cond(s);
		pthread_mutex_unlock(&s->lock);
		if (!ok)
			usleep(10000);
	}
	return ok;
}

static bool synced(struct seen *s)
{
	return s->syncs > 0;
}

static bool deleted(struct seen *s)
{
	return s->deleted;
}

START_TEST(test_watch_loop_sees_changes)
{
	struct k8s_client *admin = it_admin_client();
	struct seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct loop_args a = {0};
	char name[128], label[128], sel[200], coll[256], path[256], err[1024] = "";
	cJSON *obj = NULL, *patch;
	pthread_t t;
	usec_t t0;

	unique_name(name, sizeof(name), "watch");
	unique_name(label, sizeof(label), "wl");
	snprintf(sel, sizeof(sel), "kf-it-group=%s", label);
	lease_path(coll, sizeof(coll), NULL);
	lease_path(path, sizeof(path), name);
	seen.name = name;

	a.c = it_client_for("KF_IT_AGENT_KUBECONFIG_C");
	a.coll = coll;
	a.opts.label_selector = sel;
	a.opts.timeout_seconds = 2; /* exercise resuming after the server ends a watch */
	a.seen = &seen;
	ck_assert_int_eq(k8s_watch_new(&a.w), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, loop_thread, &a), 0);
	ck_assert_msg(wait_for(&seen, synced, 10000), "no initial list");

	create_lease(admin, name, "node-a", label, &obj);
	cJSON_Delete(obj);
	/* Across at least one server-side end of the watch. */
	usleep(2500000);
	patch = cJSON_Parse("{\"spec\":{\"holderIdentity\":\"node-b\"}}");
	ck_assert_msg(k8s_merge_patch(admin, path, patch, TIMEOUT_MS, NULL, err, sizeof(err)) == 0,
	              "%s", err);
	cJSON_Delete(patch);
	ck_assert_msg(k8s_delete(admin, path, 0, NULL, NULL, TIMEOUT_MS, err, sizeof(err)) == 0,
	              "%s", err);
	ck_assert_msg(wait_for(&seen, deleted, 10000), "saw only: %s", seen.log);

	t0 = clock_mono_usec();
	k8s_watch_stop(a.w);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(clock_mono_usec() - t0 < 500 * USEC_PER_MSEC, "stop took %" PRId64 " us",
	              clock_mono_usec() - t0);
	ck_assert_msg(a.r == 0, "loop: %d %s", a.r, a.err);
	/* Exactly one of each, in order, and no relist (no 410, no error). */
	ck_assert_str_eq(seen.log, "SYNC 0;ADDED node-a;MODIFIED node-b;DELETED node-b;");

	k8s_watch_free(a.w);
	k8s_client_free(a.c);
	k8s_client_free(admin);
}
END_TEST

START_TEST(test_watch_deadline)
{
	struct k8s_client *c = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	struct seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .name = "none"};
	struct k8s_watch_opts opts = {.label_selector = "kf-it-group=quiet-nothing-here"};
	char coll[256], rv[K8S_RV_MAX], err[1024] = "";
	cJSON *list = NULL;
	usec_t t0, dt;
	int r;

	lease_path(coll, sizeof(coll), NULL);
	ck_assert_msg(k8s_list(c, coll, opts.label_selector, NULL, TIMEOUT_MS, &list, err,
	                       sizeof(err)) == 0,
	              "%s", err);
	(void)str_copy(rv, sizeof(rv), meta_str(list, "resourceVersion"));
	cJSON_Delete(list);

	t0 = clock_mono_usec();
	r = k8s_watch_once(c, NULL, coll, &opts, rv, 300, on_event, &seen, err, sizeof(err));
	dt = clock_mono_usec() - t0;
	ck_assert_msg(r == -ETIMEDOUT, "%d: %s", r, err);
	ck_assert_msg(dt >= 250 * USEC_PER_MSEC && dt < 1000 * USEC_PER_MSEC, "took %" PRId64 " us",
	              dt);
	ck_assert_str_eq(seen.log, "");
	k8s_client_free(c);
}
END_TEST

/* ================================================================ errors */

START_TEST(test_forbidden_names_verb_and_resource)
{
	struct k8s_client *c = it_client_for("KF_IT_NORBAC_KUBECONFIG");
	struct k8s_client *admin = it_admin_client();
	char name[128], path[256], err[1024] = "", want[512];
	cJSON *obj = NULL;

	unique_name(name, sizeof(name), "norbac");
	lease_path(path, sizeof(path), name);
	/* This Role may create but not update. */
	create_lease(c, name, "node-a", NULL, &obj);
	ck_assert_int_eq(k8s_update(c, path, obj, TIMEOUT_MS, NULL, err, sizeof(err)), -EPERM);
	snprintf(want, sizeof(want),
	         "PUT leases.coordination.k8s.io \"%s\" in \"%s\": 403 Forbidden: "
	         "leases.coordination.k8s.io \"%s\" is forbidden: User "
	         "\"system:serviceaccount:%s:kubefence-norbac\" cannot update resource \"leases\" "
	         "in API group \"coordination.k8s.io\" in the namespace \"%s\"",
	         name, it_env("KF_IT_NS"), name, it_env("KF_IT_NS"), it_env("KF_IT_NS"));
	ck_assert_str_eq(err, want);
	ck_assert(!k8s_error_is_retryable(-EPERM));
	cJSON_Delete(obj);
	delete_lease(admin, name);
	k8s_client_free(c);
	k8s_client_free(admin);
}
END_TEST

START_TEST(test_unauthenticated)
{
	struct k8s_client *c = NULL;
	char kc[512], cluster[1024], err[1024] = "";

	snprintf(cluster, sizeof(cluster), "    server: %s\n    certificate-authority: %s\n",
	         it_env("KF_IT_SERVER"), it_env("KF_IT_CA"));
	write_kubeconfig(kc, sizeof(kc), "badtoken", cluster, "    token: not-a-valid-token\n");
	ck_assert_int_eq(k8s_client_new(kc, NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(
	        k8s_get(c, "/api/v1/namespaces/default", TIMEOUT_MS, NULL, err, sizeof(err)),
	        -EACCES);
	ck_assert_msg(strstr(err, "401 Unauthorized"), "%s", err);
	k8s_client_free(c);
	unlink(kc);
}
END_TEST

START_TEST(test_wrong_ca)
{
	struct k8s_client *c = NULL;
	char kc[512], cluster[1024], err[1024] = "";
	int r;

	/* A valid CA bundle that does not contain the cluster's CA. */
	snprintf(cluster, sizeof(cluster),
	         "    server: %s\n    certificate-authority: /etc/ssl/certs/ca-certificates.crt\n",
	         it_env("KF_IT_SERVER"));
	write_kubeconfig(kc, sizeof(kc), "wrongca", cluster, "    token: x\n");
	ck_assert_int_eq(k8s_client_new(kc, NULL, &c, err, sizeof(err)), 0);
	r = k8s_get(c, "/api/v1/namespaces/default", TIMEOUT_MS, NULL, err, sizeof(err));
	ck_assert_msg(r == -EKEYREJECTED, "%d: %s", r, err);
	ck_assert_msg(strstr(err, "TLS verification of the API server failed"), "%s", err);
	ck_assert(!k8s_error_is_retryable(r));
	k8s_client_free(c);
	unlink(kc);
}
END_TEST

START_TEST(test_blobs_and_token_file_rotation)
{
	struct kubeconfig *admin_kc = NULL;
	struct k8s_client *c = NULL;
	char kc[512], tok[512], cluster[8192], user[16384], err[1024] = "", *token;
	char *ca_b64, *crt_b64, *key_b64;
	FILE *f;
	int r;

	/* The admin's certificate, key and CA as -data blobs. */
	ck_assert_int_eq(kubeconfig_load(it_env("KF_IT_ADMIN_KUBECONFIG"), NULL, &admin_kc, err,
	                                 sizeof(err)),
	                 0);
	ca_b64 = file_base64(admin_kc->ca_file);
	crt_b64 = file_base64(admin_kc->cert_file);
	key_b64 = file_base64(admin_kc->key_file);
	snprintf(cluster, sizeof(cluster), "    server: %s\n    certificate-authority-data: %s\n",
	         it_env("KF_IT_SERVER"), ca_b64);
	snprintf(user, sizeof(user), "    client-certificate-data: %s\n    client-key-data: %s\n",
	         crt_b64, key_b64);
	write_kubeconfig(kc, sizeof(kc), "blobs", cluster, user);
	ck_assert_int_eq(k8s_client_new(kc, NULL, &c, err, sizeof(err)), 0);
	r = k8s_get(c, "/api/v1/namespaces/default", TIMEOUT_MS, NULL, err, sizeof(err));
	ck_assert_msg(r == 0, "%d: %s", r, err);
	c = k8s_client_free(c);
	unlink(kc);

	/* A token file that starts wrong and is then rotated to a good one. */
	snprintf(tok, sizeof(tok), "%s/k8s-it-token-%d", it_env("KF_IT_DIR"), (int)getpid());
	f = fopen(tok, "we");
	ck_assert_ptr_nonnull(f);
	fputs("not-a-valid-token\n", f);
	fclose(f);
	snprintf(user, sizeof(user), "    tokenFile: %s\n", tok);
	write_kubeconfig(kc, sizeof(kc), "tokenfile", cluster, user);
	ck_assert_int_eq(k8s_client_new(kc, NULL, &c, err, sizeof(err)), 0);
	{
		char coll[256];

		lease_path(coll, sizeof(coll), NULL);
		ck_assert_int_eq(k8s_list(c, coll, NULL, NULL, TIMEOUT_MS, NULL, err, sizeof(err)),
		                 -EACCES);
	}
	token = agent_token();
	f = fopen(tok, "we");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", token);
	fclose(f);
	usleep(1100000);
	{
		char coll[256];

		lease_path(coll, sizeof(coll), NULL);
		r = k8s_list(c, coll, NULL, NULL, TIMEOUT_MS, NULL, err, sizeof(err));
		ck_assert_msg(r == 0, "after rotation: %d %s", r, err);
	}
	free(token);
	k8s_client_free(c);
	kubeconfig_free(admin_kc);
	free(ca_b64);
	free(crt_b64);
	free(key_b64);
	unlink(kc);
	unlink(tok);
}
END_TEST

START_TEST(test_connection_refused)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	struct k8s_client *c = NULL;
	char kc[512], cluster[1024], err[1024] = "";
	int fd, r;
	usec_t t0;

	/* A port that was just free: bind, read it back, close. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	snprintf(cluster, sizeof(cluster),
	         "    server: https://127.0.0.1:%d\n    certificate-authority: %s\n",
	         ntohs(a.sin_port), it_env("KF_IT_CA"));
	write_kubeconfig(kc, sizeof(kc), "refused", cluster, "    token: x\n");
	ck_assert_int_eq(k8s_client_new(kc, NULL, &c, err, sizeof(err)), 0);
	t0 = clock_mono_usec();
	r = k8s_get(c, "/api/v1/namespaces/default", TIMEOUT_MS, NULL, err, sizeof(err));
	ck_assert_msg(r == -ECONNREFUSED, "%d: %s", r, err);
	ck_assert_int_lt(clock_mono_usec() - t0, 1000 * USEC_PER_MSEC);
	ck_assert(k8s_error_is_retryable(r));
	k8s_client_free(c);
	unlink(kc);
}
END_TEST

static Suite *k8s_it_suite(void)
{
	Suite *s = suite_create("k8s_it");

	kft_add(s, "get_create_update_patch", test_get_create_update_patch, 60, NULL, NULL);
	kft_add(s, "delete_preconditions", test_delete_preconditions, 60, NULL, NULL);
	kft_add(s, "list_selectors", test_list_selectors, 60, NULL, NULL);
	kft_add(s, "watch_loop_sees_changes", test_watch_loop_sees_changes, 60, NULL, NULL);
	kft_add(s, "watch_deadline", test_watch_deadline, 60, NULL, NULL);
	kft_add(s, "forbidden_names_verb_and_resource", test_forbidden_names_verb_and_resource, 60,
	        NULL, NULL);
	kft_add(s, "unauthenticated", test_unauthenticated, 60, NULL, NULL);
	kft_add(s, "wrong_ca", test_wrong_ca, 60, NULL, NULL);
	kft_add(s, "blobs_and_token_file_rotation", test_blobs_and_token_file_rotation, 60, NULL,
	        NULL);
	kft_add(s, "connection_refused", test_connection_refused, 60, NULL, NULL);
	return s;
}

int main(void)
{
	return kft_main(k8s_it_suite(), NULL);
}
