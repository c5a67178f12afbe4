/* The Kubernetes fence methods, the pipeline and `kubefencectl fence`
 * against a real kube-apiserver with RBAC.  main() grants the agent's
 * ServiceAccount user exactly what fencing needs (fencing/README.md lists
 * each rule and why) and creates the ServiceAccount "default" (no
 * controller-manager runs here).  The tests then fence with an agent token;
 * the test itself plays the external attacher (it removes a
 * VolumeAttachment's finalizer from a thread) and the admin.  Each test
 * uses its own node, pod, PV and PVC names, so they are independent.
 * Durations are printed as `measured:` lines (it_record). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fencing/fence_pod.h"
#include "fencing/fence_volume.h"
#include "fencing/pipeline.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "nodeagent/agent_conf.h"
#include "tests/integration/it.h"
#include "tests/lib/kftest.h"

#define T_MS 5000 /* one admin request */

/* POST the JSON text (printf-style) to collection gv/ns/resource as admin
 * or whoever c is; -EEXIST is fine.  Returns the new object's uid in uid. */
static void create(struct k8s_client *c, const char *gv, const char *ns, const char *resource,
                   char *uid, size_t uidlen, const char *fmt, ...)
        __attribute__((format(printf, 7, 8)));

static void create(struct k8s_client *c, const char *gv, const char *ns, const char *resource,
                   char *uid, size_t uidlen, const char *fmt, ...)
{
	char path[512], err[1024] = "", *text = NULL;
	cJSON *obj, *ret = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	ck_assert_int_ge(vasprintf(&text, fmt, ap), 0);
	va_end(ap);
	obj = cJSON_Parse(text);
	ck_assert_msg(obj != NULL, "bad JSON: %s", text);
	ck_assert_int_ge(k8s_path(path, sizeof(path), gv, ns, resource, NULL), 0);
	r = k8s_create(c, path, obj, T_MS, &ret, err, sizeof(err));
	ck_assert_msg(r == 0 || r == -EEXIST, "create %s: %d %s", resource, r, err);
	if (uid && ret) {
		const cJSON *u = cJSON_GetObjectItem(cJSON_GetObjectItem(ret, "metadata"), "uid");

		snprintf(uid, uidlen, "%s", cJSON_IsString(u) ? u->valuestring : "");
	}
	cJSON_Delete(ret);
	cJSON_Delete(obj);
	free(text);
}

static void create_pod(struct k8s_client *c, const char *name, const char *app, const char *node,
                       char *uid, size_t uidlen)
{
	/* No token volume: the ServiceAccount admission plugin would want a
	 * token Secret, which no controller creates here. */
	create(c, "v1", it_env("KF_IT_NS"), "pods", uid, uidlen,
	       "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
	       "\"labels\":{\"app\":\"%s\"}},\"spec\":{\"nodeName\":\"%s\","
	       "\"automountServiceAccountToken\":false,"
	       "\"containers\":[{\"name\":\"c\",\"image\":\"registry.k8s.io/pause:3.2\"}]}}",
	       name, app, node);
}

static int get(struct k8s_client *c, const char *gv, const char *ns, const char *resource,
               const char *name, cJSON **ret)
{
	char path[512], err[1024] = "";

	ck_assert_int_ge(k8s_path(path, sizeof(path), gv, ns, resource, name), 0);
	return k8s_get(c, path, T_MS, ret, err, sizeof(err));
}

static const char *uid_of(const cJSON *obj)
{
	const cJSON *u = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "uid");

	return cJSON_IsString(u) ? u->valuestring : "";
}

static void create_node(struct k8s_client *admin, const char *node, const char *taints_json)
{
	create(admin, "v1", NULL, "nodes", NULL, 0,
	       "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"%s\"},"
	       "\"spec\":{\"taints\":%s}}",
	       node, taints_json ? taints_json : "[]");
}

/* A PV bound to a PVC (both sides set, as the binder would), and a
 * VolumeAttachment of it on node with the attacher's finalizer. */
static void create_volume(struct k8s_client *admin, const char *base, const char *node)
{
	const char *ns = it_env("KF_IT_NS");

	create(admin, "v1", NULL, "persistentvolumes", NULL, 0,
	       "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":"
	       "\"pv-%s\"},\"spec\":{\"capacity\":{\"storage\":\"1Gi\"},\"accessModes\":["
	       "\"ReadWriteOnce\"],\"persistentVolumeReclaimPolicy\":\"Retain\",\"csi\":{"
	       "\"driver\":\"fence.test.csi\",\"volumeHandle\":\"vol-%s\"},\"claimRef\":{"
	       "\"namespace\":\"%s\",\"name\":\"pvc-%s\"}}}",
	       base, base, ns, base);
	create(admin, "v1", ns, "persistentvolumeclaims", NULL, 0,
	       "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{\"name\":"
	       "\"pvc-%s\"},\"spec\":{\"accessModes\":[\"ReadWriteOnce\"],\"storageClassName\":"
	       "\"\",\"resources\":{\"requests\":{\"storage\":\"1Gi\"}},\"volumeName\":"
	       "\"pv-%s\"}}",
	       base, base);
	create(admin, "storage.k8s.io/v1", NULL, "volumeattachments", NULL, 0,
	       "{\"apiVersion\":\"storage.k8s.io/v1\",\"kind\":\"VolumeAttachment\",\"metadata\":"
	       "{\"name\":\"va-%s\",\"finalizers\":[\"external-attacher/fence-test-csi\"]},"
	       "\"spec\":{\"attacher\":\"fence.test.csi\",\"nodeName\":\"%s\",\"source\":{"
	       "\"persistentVolumeName\":\"pv-%s\"}}}",
	       base, node, base);
	/* A VolumeAttachment of the same PV on another node: never touched. */
	create(admin, "storage.k8s.io/v1", NULL, "volumeattachments", NULL, 0,
	       "{\"apiVersion\":\"storage.k8s.io/v1\",\"kind\":\"VolumeAttachment\",\"metadata\":"
	       "{\"name\":\"va-%s-other\"},\"spec\":{\"attacher\":\"fence.test.csi\",\"nodeName\":"
	       "\"other-node\",\"source\":{\"persistentVolumeName\":\"pv-%s\"}}}",
	       base, base);
}

/* The external attacher's part: drop the finalizers of a VolumeAttachment. */
static int remove_finalizers(struct k8s_client *admin, const char *va)
{
	char path[512], err[1024] = "";
	cJSON *patch = cJSON_Parse("{\"metadata\":{\"finalizers\":null}}");
	int r;

	k8s_path(path, sizeof(path), "storage.k8s.io/v1", NULL, "volumeattachments", va);
	r = k8s_merge_patch(admin, path, patch, T_MS, NULL, err, sizeof(err));
	cJSON_Delete(patch);
	return r;
}

struct attacher {
	char va[128];
	long delay_ms;
	int result;
	usec_t sent_at; /* the finalizers' removal was sent */
	usec_t done_at; /* and answered */
};

static void *attacher_thread(void *arg)
{
	struct attacher *a = arg;
	struct k8s_client *admin = NULL;
	char err[512] = "";

	usleep((useconds_t)a->delay_ms * 1000);
	a->result =
	        k8s_client_new(getenv("KF_IT_ADMIN_KUBECONFIG"), NULL, &admin, err, sizeof(err));
	a->sent_at = clock_mono_usec();
	if (a->result == 0)
		a->result = remove_finalizers(admin, a->va);
	a->done_at = clock_mono_usec();
	k8s_client_free(admin);
	return NULL;
}

/* Write a conf for the pipeline with the agent's token, then load it. */
static struct agent_conf *load_conf(const char *name, const char *kubeconfig_env, const char *extra)
{
	char path[512];
	struct conf_errors errs = {0};
	struct agent_conf *conf = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/fence-%s.conf", it_env("KF_IT_DIR"), name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "node.name = node-self\n"
	        "kube.config = %s\n"
	        "kube.request_timeout_ms = 2000\n"
	        "service.namespace = %s\n"
	        "%s\n",
	        it_env(kubeconfig_env), it_env("KF_IT_NS"), extra);
	fclose(f);
	if (agent_conf_load(path, &conf, &errs) < 0)
		conf_errors_print(&errs, stderr);
	ck_assert_ptr_nonnull(conf);
	conf_errors_done(&errs);
	return conf;
}

/* Run conf's pipeline against node with client c (pins: the duty's pods,
 * or NULL). */
static int run_pipeline_pinned(struct agent_conf *conf, struct k8s_client *c, const char *node,
                               const char *pod, const char *uid, struct fence_pins *pins,
                               struct fence_report *rep)
{
	struct fence_methods m = {0};
	struct fence_pipeline_opts o;
	struct fence_request req = {.node = node, .pod = pod, .pod_uid = uid, .pins = pins};
	char err[512] = "", line[4096];
	int r;

	ck_assert_msg(fence_methods_from_conf(&conf->fence, c, &m, err, sizeof(err)) == 0, "%s",
	              err);
	fence_pipeline_opts_from_conf(&conf->fence, &o);
	r = fence_pipeline_run(&o, m.v, m.n, FENCE_LEVEL_EXPIRED, &req, rep);
	fence_report_format(rep, line, sizeof(line));
	printf("  %s\n", line);
	fflush(stdout);
	fence_methods_done(&m);
	return r;
}

static int run_pipeline(struct agent_conf *conf, struct k8s_client *c, const char *node,
                        const char *pod, const char *uid, struct fence_report *rep)
{
	return run_pipeline_pinned(conf, c, node, pod, uid, NULL, rep);
}

static double secs(usec_t u)
{
	return (double)u / USEC_PER_SEC;
}

/* ------------------------------------------------------------ pod-delete */

/* A pod deleted and recreated under the same name before the fence ran is
 * a new pod: the fence reports the victim gone and leaves it alone. */
START_TEST(test_pod_recreated_survives)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	const char *ns = it_env("KF_IT_NS");
	char uid1[64] = "", uid2[64] = "", path[512], err[1024] = "";
	struct agent_conf *conf;
	struct fence_report rep;
	cJSON *obj = NULL;
	int r;

	create_pod(admin, "meta-recreated", "meta-recreated", "node-r", uid1, sizeof(uid1));
	k8s_path(path, sizeof(path), "v1", ns, "pods", "meta-recreated");
	ck_assert_int_eq(k8s_delete(admin, path, 0, NULL, NULL, T_MS, err, sizeof(err)), 0);
	create_pod(admin, "meta-recreated", "meta-recreated", "node-r", uid2, sizeof(uid2));
	ck_assert_str_ne(uid1, uid2);

	r = fence_pod_delete(agent, ns, "meta-recreated", uid1,
	                     clock_mono_usec() + 3000 * USEC_PER_MSEC, err, sizeof(err));
	ck_assert_msg(r == FENCE_ALREADY_GONE, "%d: %s", r, err);
	ck_assert_msg(strstr(err, "now belongs to a new pod"), "%s", err);
	ck_assert_msg(strstr(err, uid2), "%s", err);

	/* The same through the pipeline, the agent naming the pod it saw. */
	conf = load_conf("recreated", "KF_IT_AGENT_KUBECONFIG_A",
	                 "service.selector = app=meta-recreated\nfence.methods = pod-delete\n");
	ck_assert_int_eq(run_pipeline(conf, agent, "node-r", "meta-recreated", uid1, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_ALREADY_GONE);

	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-recreated", &obj), 0);
	ck_assert_str_eq(uid_of(obj), uid2); /* the new pod survived */
	cJSON_Delete(obj);
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* A duty's retry deletes only the pods its first run found: the first run
 * force-deletes the victim's pod (and a later method fails, so the duty is
 * retried); meanwhile the StatefulSet has made a replacement of the same
 * name on the node.  The retry leaves the replacement alone (before, each
 * run listed the node's pods afresh and deleted whatever it found). */
START_TEST(test_duty_retry_spares_replacement)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	const char *ns = it_env("KF_IT_NS");
	char uid1[64] = "", uid2[64] = "";
	struct fence_pins pins = {0};
	struct agent_conf *conf;
	struct fence_report rep;
	cJSON *obj = NULL;

	create_pod(admin, "meta-rep", "meta-rep", "node-rep", uid1, sizeof(uid1));
	conf = load_conf("replacement", "KF_IT_AGENT_KUBECONFIG_A",
	                 "service.selector = app=meta-rep\nfence.methods = pod-delete\n"
	                 "fence.timeout_ms = 5000\n");
	ck_assert_int_eq(run_pipeline_pinned(conf, agent, "node-rep", NULL, NULL, &pins, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_CONFIRMED);
	ck_assert(pins.set);
	ck_assert_int_eq(pins.n, 1);
	ck_assert_str_eq(pins.uid[0], uid1);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-rep", NULL), -ENOENT);

	create_pod(admin, "meta-rep", "meta-rep", "node-rep", uid2, sizeof(uid2));
	ck_assert_str_ne(uid1, uid2);
	ck_assert_int_eq(run_pipeline_pinned(conf, agent, "node-rep", NULL, NULL, &pins, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_ALREADY_GONE);
	ck_assert_msg(strstr(rep.steps[0].target, uid1), "%s", rep.steps[0].target);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-rep", &obj), 0);
	ck_assert_str_eq(uid_of(obj), uid2); /* the replacement survived */
	cJSON_Delete(obj);

	/* a duty that found no pod at its start touches none later either */
	struct fence_pins none = {0};
	ck_assert_int_eq(
	        run_pipeline_pinned(conf, agent, "node-rep-empty", NULL, NULL, &none, &rep), 0);
	ck_assert(none.set);
	ck_assert_int_eq(none.n, 0);
	create_pod(admin, "meta-rep-late", "meta-rep", "node-rep-empty", NULL, 0);
	ck_assert_int_eq(
	        run_pipeline_pinned(conf, agent, "node-rep-empty", NULL, NULL, &none, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_ALREADY_GONE);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-rep-late", NULL), 0);
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* The master pod found by selector on the victim node is force-deleted and
 * confirmed gone; a pod of the same app on another node is not touched. */
START_TEST(test_pod_force_delete_confirmed)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_B");
	const char *ns = it_env("KF_IT_NS");
	struct agent_conf *conf;
	struct fence_report rep;
	cJSON *obj = NULL;

	create_pod(admin, "meta-0", "meta-fd", "node-fd-old", NULL, 0);
	create_pod(admin, "meta-1", "meta-fd", "node-fd-new", NULL, 0);
	conf = load_conf("force", "KF_IT_AGENT_KUBECONFIG_B",
	                 "service.selector = app=meta-fd\nfence.methods = pod-delete\n"
	                 "fence.timeout_ms = 5000\n");
	ck_assert_int_eq(run_pipeline(conf, agent, "node-fd-old", NULL, NULL, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_CONFIRMED);
	ck_assert_msg(strstr(rep.steps[0].target, "meta-0"), "%s", rep.steps[0].target);
	it_record("pod-delete", secs(rep.steps[0].duration));
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-0", NULL), -ENOENT);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-1", &obj), 0);
	cJSON_Delete(obj);

	/* Nothing left on the node: confirmed without acting. */
	ck_assert_int_eq(run_pipeline(conf, agent, "node-fd-old", NULL, NULL, &rep), 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_ALREADY_GONE);
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* ---------------------------------------------------------- volume-detach */

static bool node_has_taint(struct k8s_client *admin, const char *node, const char *key)
{
	cJSON *obj = NULL;
	const cJSON *t;
	bool found = false;

	ck_assert_int_eq(get(admin, "v1", NULL, "nodes", node, &obj), 0);
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "taints"))
	{
		const cJSON *k = cJSON_GetObjectItem(t, "key");

		found |= cJSON_IsString(k) && strcmp(k->valuestring, key) == 0;
	}
	cJSON_Delete(obj);
	return found;
}

/* The whole pipeline: pod-delete then volume-detach, while the test plays
 * the external attacher that removes the finalizer after ~700 ms. */
START_TEST(test_pipeline_with_attacher)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	const char *ns = it_env("KF_IT_NS");
	struct attacher at = {.va = "va-att", .delay_ms = 700};
	struct agent_conf *conf;
	struct fence_report rep;
	pthread_t th;
	usec_t t0, returned_at;
	cJSON *obj = NULL;
	int r;

	create_node(admin, "node-att", NULL);
	create_volume(admin, "att", "node-att");
	create_pod(admin, "meta-att-0", "meta-att", "node-att", NULL, 0);
	conf = load_conf("attacher", "KF_IT_AGENT_KUBECONFIG_A",
	                 "service.selector = app=meta-att\n"
	                 "fence.methods = pod-delete, volume-detach\n"
	                 "fence.pvc = pvc-att\nfence.out_of_service_taint = true\n"
	                 "fence.timeout_ms = 5000\nfence.total_timeout_ms = 10000\n");
	t0 = clock_mono_usec();
	ck_assert_int_eq(pthread_create(&th, NULL, attacher_thread, &at), 0);
	r = run_pipeline(conf, agent, "node-att", NULL, NULL, &rep);
	returned_at = clock_mono_usec();
	pthread_join(th, NULL);
	ck_assert_int_eq(at.result, 0);
	ck_assert_msg(r == 0, "%d: %s", r, rep.steps[1].message);
	ck_assert_uint_eq(rep.n_steps, 2);
	ck_assert_str_eq(rep.steps[1].method, "volume-detach");
	ck_assert_int_eq(rep.steps[1].result, FENCE_CONFIRMED);
	ck_assert_msg(strstr(rep.steps[1].message, "1 VolumeAttachment deleted"), "%s",
	              rep.steps[1].message);
	ck_assert_msg(strstr(rep.steps[1].message, "tainted out-of-service"), "%s",
	              rep.steps[1].message);
	/* It waited for the attacher: the pipeline returned only after the
	 * finalizers' removal was sent (the VolumeAttachment cannot vanish
	 * before), so no fixed pause can pass for it.  And no longer than
	 * needed: within a few 100 ms polls and the taint after the answer. */
	ck_assert_int_ge(rep.duration, 600 * USEC_PER_MSEC);
	ck_assert_msg(returned_at >= at.sent_at,
	              "the pipeline returned %.3f s after start, before the attacher removed "
	              "the finalizers at %.3f s",
	              secs(returned_at - t0), secs(at.sent_at - t0));
	ck_assert_msg(returned_at - at.done_at < 1000 * USEC_PER_MSEC,
	              "the pipeline returned %.3f s after the finalizers were removed",
	              secs(returned_at - at.done_at));
	ck_assert_int_lt(rep.steps[1].duration, 5000 * USEC_PER_MSEC);
	it_record("pod-delete-in-pipeline", secs(rep.steps[0].duration));
	it_record("volume-detach-attacher-700ms", secs(rep.steps[1].duration));
	it_record("fence-pipeline-pod-and-volume", secs(rep.duration));

	ck_assert_int_eq(get(admin, "storage.k8s.io/v1", NULL, "volumeattachments", "va-att", NULL),
	                 -ENOENT);
	ck_assert_int_eq(
	        get(admin, "storage.k8s.io/v1", NULL, "volumeattachments", "va-att-other", &obj),
	        0);
	cJSON_Delete(obj);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-att-0", NULL), -ENOENT);
	ck_assert(node_has_taint(admin, "node-att", FENCE_OOS_TAINT_KEY));
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* Without the attacher the VolumeAttachment lingers: the fence fails at its
 * deadline and says which object and which finalizer hold it. */
START_TEST(test_volume_detach_deadline)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_C");
	struct agent_conf *conf;
	struct fence_report rep;
	cJSON *obj = NULL;
	int r;

	create_node(admin, "node-stuck", NULL);
	create_volume(admin, "stuck", "node-stuck");
	conf = load_conf("stuck", "KF_IT_AGENT_KUBECONFIG_C",
	                 "fence.methods = volume-detach\nfence.pvc = pvc-stuck\n"
	                 "fence.timeout_ms = 1500\nfence.total_timeout_ms = 1500\n");
	r = run_pipeline(conf, agent, "node-stuck", NULL, NULL, &rep);
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_msg(strstr(rep.steps[0].message,
	                     "VolumeAttachment 'va-stuck' (PV 'pv-stuck', node 'node-stuck') still "
	                     "present at the deadline, deleting, held by finalizers "
	                     "[external-attacher/fence-test-csi]: the attacher did not detach "
	                     "the volume"),
	              "%s", rep.steps[0].message);
	ck_assert_int_ge(rep.steps[0].duration, 1300 * USEC_PER_MSEC);
	ck_assert_int_lt(rep.steps[0].duration, 2500 * USEC_PER_MSEC);
	it_record("volume-detach-deadline-1500ms", secs(rep.steps[0].duration));
	/* Still there, marked for deletion. */
	ck_assert_int_eq(
	        get(admin, "storage.k8s.io/v1", NULL, "volumeattachments", "va-stuck", &obj), 0);
	ck_assert_ptr_nonnull(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "deletionTimestamp"));
	cJSON_Delete(obj);
	ck_assert_int_eq(remove_finalizers(admin, "va-stuck"), 0);
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* The taint joins the node's taints and leaves again, keeping the others. */
START_TEST(test_out_of_service_taint)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_B");
	usec_t dl = clock_mono_usec() + 5000 * USEC_PER_MSEC;
	char err[1024] = "";
	cJSON *obj = NULL;
	const cJSON *taints, *last;
	int n, n_before;

	create_node(admin, "node-taint",
	            "[{\"key\":\"example.com/keep\",\"value\":\"x\",\"effect\":\"NoSchedule\"}]");
	ck_assert_int_eq(get(admin, "v1", NULL, "nodes", "node-taint", &obj), 0);
	n_before =
	        cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "taints"));
	ck_assert_int_ge(n_before, 1);
	cJSON_Delete(obj);
	obj = NULL;
	ck_assert_msg(fence_volume_taint_node(agent, "node-taint", dl, err, sizeof(err)) == 0, "%s",
	              err);
	/* The server's own taints (TaintNodesByCondition adds not-ready to a
	 * new Node) stay too: exactly one more, appended. */
	ck_assert_int_eq(get(admin, "v1", NULL, "nodes", "node-taint", &obj), 0);
	taints = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "taints");
	n = cJSON_GetArraySize(taints);
	ck_assert_int_eq(n, n_before + 1);
	ck_assert(node_has_taint(admin, "node-taint", "example.com/keep"));
	last = cJSON_GetArrayItem(taints, n - 1);
	ck_assert_str_eq(cJSON_GetObjectItem(last, "key")->valuestring, FENCE_OOS_TAINT_KEY);
	ck_assert_str_eq(cJSON_GetObjectItem(last, "value")->valuestring, "nodeshutdown");
	ck_assert_str_eq(cJSON_GetObjectItem(last, "effect")->valuestring, "NoExecute");
	cJSON_Delete(obj);
	ck_assert_int_eq(fence_volume_taint_node(agent, "node-taint", dl, err, sizeof(err)), 1);

	ck_assert_msg(fence_volume_untaint_node(agent, "node-taint", dl, err, sizeof(err)) == 0,
	              "%s", err);
	ck_assert(!node_has_taint(admin, "node-taint", FENCE_OOS_TAINT_KEY));
	ck_assert(node_has_taint(admin, "node-taint", "example.com/keep"));
	ck_assert_int_eq(fence_volume_untaint_node(agent, "node-taint", dl, err, sizeof(err)), 1);

	/* The only taint: removing it leaves none. */
	create_node(admin, "node-taint-2", NULL);
	ck_assert_int_eq(fence_volume_taint_node(agent, "node-taint-2", dl, err, sizeof(err)), 0);
	ck_assert_int_eq(fence_volume_untaint_node(agent, "node-taint-2", dl, err, sizeof(err)), 0);
	ck_assert(!node_has_taint(admin, "node-taint-2", FENCE_OOS_TAINT_KEY));
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* The out-of-service method alone (no PVC: the single-replica topology on
 * a LUN): the real API server's Node gets the taint, its other taints kept;
 * a second run finds it there; a Node that does not exist schedules
 * nothing and is confirmed without acting. */
START_TEST(test_out_of_service_method)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_A");
	struct agent_conf *conf;
	struct fence_report rep;
	int r;

	create_node(admin, "node-oos",
	            "[{\"key\":\"example.com/keep\",\"value\":\"x\",\"effect\":\"NoSchedule\"}]");
	conf = load_conf("oos", "KF_IT_AGENT_KUBECONFIG_A", "fence.methods = out-of-service\n");
	r = run_pipeline(conf, agent, "node-oos", NULL, NULL, &rep);
	ck_assert_msg(r == 0, "%d: %s", r, rep.steps[0].message);
	ck_assert_uint_eq(rep.n_steps, 1);
	ck_assert_str_eq(rep.steps[0].method, "out-of-service");
	ck_assert_int_eq(rep.steps[0].result, FENCE_CONFIRMED);
	ck_assert_str_eq(rep.steps[0].message, "tainted out-of-service");
	ck_assert(node_has_taint(admin, "node-oos", FENCE_OOS_TAINT_KEY));
	ck_assert(node_has_taint(admin, "node-oos", "example.com/keep"));
	r = run_pipeline(conf, agent, "node-oos", NULL, NULL, &rep);
	ck_assert_int_eq(r, 0);
	ck_assert_str_eq(rep.steps[0].message, "tainted out-of-service (already)");
	r = run_pipeline(conf, agent, "node-never-was", NULL, NULL, &rep);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(rep.steps[0].result, FENCE_ALREADY_GONE);
	ck_assert_msg(strstr(rep.steps[0].message, "no Node object"), "%s", rep.steps[0].message);
	agent_conf_free(conf);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* A node fenced with the out-of-service taint has recovered once its agent
 * runs again: the agent lifts the taint at start, keeping the others. */
START_TEST(test_recovered_node_lifts_taint)
{
	struct k8s_client *admin = it_admin_client(),
	                  *agent = it_client_for("KF_IT_AGENT_KUBECONFIG_B");
	usec_t dl = clock_mono_usec() + 5000 * USEC_PER_MSEC;
	struct it_agent a;
	char err[1024] = "";
	int status;

	create_node(admin, "node-back",
	            "[{\"key\":\"example.com/keep\",\"value\":\"x\",\"effect\":\"NoSchedule\"}]");
	ck_assert_int_eq(fence_volume_taint_node(agent, "node-back", dl, err, sizeof(err)), 0);
	ck_assert(node_has_taint(admin, "node-back", FENCE_OOS_TAINT_KEY));

	it_agent_start(&a, "node-back", it_env("KF_IT_AGENT_KUBECONFIG_B"), "taint-lift",
	               "fence.methods = volume-detach\nfence.pvc = data\n"
	               "fence.out_of_service_taint = true\nservice.probe = none\nhttp.listen =\n");
	while (node_has_taint(admin, "node-back", FENCE_OOS_TAINT_KEY)) {
		if (clock_mono_usec() > dl)
			it_agent_dump(&a);
		ck_assert_msg(clock_mono_usec() < dl, "the taint is still there after 5 s");
		usleep(20000);
	}
	ck_assert(node_has_taint(admin, "node-back", "example.com/keep"));
	/* the agent logs once the PATCH has answered: the taint can be seen
	 * gone a moment before the line is written */
	while (it_log_count(&a, NULL, "removed the out-of-service taint", NULL) == 0 &&
	       clock_mono_usec() < dl + 2 * USEC_PER_SEC)
		usleep(20000);
	ck_assert_int_eq(it_log_count(&a, NULL, "removed the out-of-service taint", NULL), 1);
	it_agent_signal(&a, SIGTERM);
	status = it_agent_wait(&a, 5000);
	ck_assert(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	k8s_client_free(agent);
	k8s_client_free(admin);
}
END_TEST

/* ------------------------------------------------------------------ RBAC */

START_TEST(test_rbac_errors_named)
{
	struct k8s_client *admin = it_admin_client(),
	                  *nor = it_client_for("KF_IT_NORBAC_KUBECONFIG");
	const char *ns = it_env("KF_IT_NS");
	char uid[64] = "", err[1024] = "", want[512];
	struct agent_conf *conf;
	struct fence_report rep;
	int r;

	create_pod(admin, "meta-rbac", "meta-rbac", "node-rbac", uid, sizeof(uid));
	r = fence_pod_delete(nor, ns, "meta-rbac", uid, clock_mono_usec() + 3000 * USEC_PER_MSEC,
	                     err, sizeof(err));
	ck_assert_int_eq(r, -EPERM);
	snprintf(want, sizeof(want),
	         "User \"system:serviceaccount:%s:kubefence-norbac\" cannot delete resource "
	         "\"pods\"",
	         ns);
	ck_assert_msg(strstr(err, want), "%s", err);
	ck_assert_msg(strstr(err, "DELETE pods \"meta-rbac\""), "%s", err);

	conf = load_conf("norbac", "KF_IT_NORBAC_KUBECONFIG",
	                 "service.selector = app=meta-rbac\n"
	                 "fence.methods = pod-delete, volume-detach\nfence.pvc = pvc-att\n"
	                 "fence.timeout_ms = 2000\n");
	ck_assert_int_eq(run_pipeline(conf, nor, "node-rbac", NULL, NULL, &rep), -EPERM);
	ck_assert_int_eq(rep.steps[0].result, -EPERM);
	ck_assert_int_eq(rep.steps[0].attempts, 1); /* not retried */
	ck_assert_msg(strstr(rep.steps[0].message, "cannot list resource \"pods\""), "%s",
	              rep.steps[0].message);
	ck_assert_int_eq(rep.steps[1].result, -EPERM);
	ck_assert_msg(
	        strstr(rep.steps[1].message, "cannot get resource \"persistentvolumeclaims\""),
	        "%s", rep.steps[1].message);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-rbac", NULL), 0);
	agent_conf_free(conf);
	k8s_client_free(nor);
	k8s_client_free(admin);
}
END_TEST

/* ------------------------------------------------------------------- CLI */

/* Run kubefencectl with args; stdout and stderr into out/errbuf. */
static int run_ctl(char *out, size_t outlen, char *errbuf, size_t errlen, const char *const *args)
{
	char po[512], pe[512];
	const char *argv[16];
	size_t n = 0;
	pid_t pid;
	int status;
	FILE *f;

	snprintf(po, sizeof(po), "%s/ctl.out", it_env("KF_IT_DIR"));
	snprintf(pe, sizeof(pe), "%s/ctl.err", it_env("KF_IT_DIR"));
	argv[n++] = "kubefencectl";
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fo, STDOUT_FILENO);
		dup2(fe, STDERR_FILENO);
		execv(getenv("KF_IT_CTL"), (char *const *)argv);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	f = fopen(po, "r");
	out[fread(out, 1, outlen - 1, f)] = '\0';
	fclose(f);
	f = fopen(pe, "r");
	errbuf[fread(errbuf, 1, errlen - 1, f)] = '\0';
	fclose(f);
	printf("  $ kubefencectl ...: exit %d\n%s%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       out, errbuf);
	fflush(stdout);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_ctl_fence)
{
	struct k8s_client *admin = it_admin_client();
	const char *ns = it_env("KF_IT_NS");
	char conf[512], out[8192], err[8192];
	usec_t t0;
	FILE *f;

	it_env("KF_IT_CTL");
	create_node(admin, "node-cli", NULL);
	create_volume(admin, "cli", "node-cli");
	ck_assert_int_eq(remove_finalizers(admin, "va-cli"), 0); /* an attacher that is quick */
	create_pod(admin, "meta-cli-0", "meta-cli", "node-cli", NULL, 0);
	snprintf(conf, sizeof(conf), "%s/ctl-fence.conf", it_env("KF_IT_DIR"));
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "node.name = node-cli-self\nkube.config = %s\nservice.namespace = %s\n"
	        "service.selector = app=meta-cli\nfence.methods = pod-delete, volume-detach\n"
	        "fence.pvc = pvc-cli\nfence.timeout_ms = 5000\n",
	        it_env("KF_IT_AGENT_KUBECONFIG_C"), ns);
	fclose(f);

	/* Dry run: says what it would do, changes nothing. */
	ck_assert_int_eq(run_ctl(out, sizeof(out), err, sizeof(err),
	                         (const char *const[]){"fence", "--config", conf, "--victim",
	                                               "node-cli", "--dry-run", NULL}),
	                 0);
	ck_assert_msg(strstr(out, "step 1/2 pod-delete 'kubefence-it/meta-cli-0'"), "%s", out);
	ck_assert_msg(strstr(out, "dry run: would force-delete 1 pod"), "%s", out);
	ck_assert_msg(strstr(out, "dry run: would delete 1 VolumeAttachment"), "%s", out);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-cli-0", NULL), 0);

	t0 = clock_mono_usec();
	ck_assert_int_eq(run_ctl(out, sizeof(out), err, sizeof(err),
	                         (const char *const[]){"fence", "--config", conf, "--victim",
	                                               "node-cli", NULL}),
	                 0);
	it_record("kubefencectl-fence-end-to-end", secs(clock_mono_usec() - t0));
	ck_assert_msg(strstr(out, "step 1/2 pod-delete 'kubefence-it/meta-cli-0' uid "), "%s", out);
	ck_assert_msg(strstr(out, ": confirmed in "), "%s", out);
	ck_assert_msg(strstr(out, "step 2/2 volume-detach PV 'pv-cli' (PVC 'kubefence-it/pvc-cli') "
	                          "on node 'node-cli': confirmed in "),
	              "%s", out);
	ck_assert_msg(strstr(out, "confirmed fenced: node 'node-cli' in "), "%s", out);
	ck_assert_int_eq(get(admin, "v1", ns, "pods", "meta-cli-0", NULL), -ENOENT);

	/* The local node is refused, before any request. */
	ck_assert_int_eq(run_ctl(out, sizeof(out), err, sizeof(err),
	                         (const char *const[]){"fence", "--config", conf, "--victim",
	                                               "node-cli-self", NULL}),
	                 4);
	ck_assert_msg(strstr(err, "refusing to fence node 'node-cli-self': it is this node"), "%s",
	              err);

	/* A pod named by the caller that is gone already: confirmed. */
	ck_assert_int_eq(
	        run_ctl(out, sizeof(out), err, sizeof(err),
	                (const char *const[]){"fence", "--config", conf, "--victim", "node-nothing",
	                                      "--pod", "no-such-pod", NULL}),
	        0);
	ck_assert_msg(strstr(out, "confirmed (already gone)"), "%s", out);

	/* Usage errors. */
	ck_assert_int_eq(run_ctl(out, sizeof(out), err, sizeof(err),
	                         (const char *const[]){"fence", "--config", conf, NULL}),
	                 2);
	ck_assert_msg(strstr(err, "--victim NODE is required"), "%s", err);
	k8s_client_free(admin);
}
END_TEST

/* A victim the pipeline cannot fence: exit 3 with the reason. */
START_TEST(test_ctl_fence_failure)
{
	char conf[512], out[8192], err[8192];
	FILE *f;

	it_env("KF_IT_CTL");
	snprintf(conf, sizeof(conf), "%s/ctl-fail.conf", it_env("KF_IT_DIR"));
	f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	        "node.name = node-cli-self\nkube.config = %s\nservice.namespace = %s\n"
	        "fence.methods = volume-detach\nfence.pvc = pvc-missing\nfence.timeout_ms = 2000\n",
	        it_env("KF_IT_AGENT_KUBECONFIG_C"), it_env("KF_IT_NS"));
	fclose(f);
	ck_assert_int_eq(run_ctl(out, sizeof(out), err, sizeof(err),
	                         (const char *const[]){"fence", "--config", conf, "--victim",
	                                               "node-x", NULL}),
	                 3);
	ck_assert_msg(strstr(out, "step 1/1 volume-detach PVC 'kubefence-it/pvc-missing' on node "
	                          "'node-x': FAILED"),
	              "%s", out);
	ck_assert_msg(strstr(out, "404 Not Found"), "%s", out);
	ck_assert_msg(strstr(err, "node 'node-x' is NOT confirmed fenced: volume-detach failed"),
	              "%s", err);
}
END_TEST

/* ------------------------------------------------------------------ setup */

/* Admin calls outside any test: failures end the program. */
static void must_create(struct k8s_client *admin, const char *collection, const char *json)
{
	char err[1024] = "";
	cJSON *obj = cJSON_Parse(json);
	int r;

	if (!obj) {
		fprintf(stderr, "setup: bad JSON %s\n", json);
		exit(EXIT_FAILURE);
	}
	r = k8s_create(admin, collection, obj, T_MS, NULL, err, sizeof(err));
	cJSON_Delete(obj);
	if (r < 0 && r != -EEXIST) {
		fprintf(stderr, "setup: POST %s: %s\n", collection, err);
		exit(EXIT_FAILURE);
	}
}

/* Exactly what fencing needs (fencing/README.md says why, rule by rule). */
static void setup_rbac(void)
{
	const char *ns = getenv("KF_IT_NS");
	struct k8s_client *admin = NULL;
	char err[512] = "", buf[4096], coll[256];

	if (!ns ||
	    k8s_client_new(getenv("KF_IT_ADMIN_KUBECONFIG"), NULL, &admin, err, sizeof(err)) < 0) {
		fprintf(stderr, "setup: no control plane (%s): run through fence.test\n", err);
		exit(EXIT_FAILURE);
	}
	snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/serviceaccounts", ns);
	must_create(admin, coll,
	            "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":"
	            "\"default\"}}");
	snprintf(coll, sizeof(coll), "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles", ns);
	must_create(admin, coll,
	            "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\","
	            "\"metadata\":{\"name\":\"kubefence-fence\"},\"rules\":["
	            "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],"
	            "\"verbs\":[\"get\",\"list\",\"delete\"]},"
	            "{\"apiGroups\":[\"\"],\"resources\":[\"persistentvolumeclaims\"],"
	            "\"verbs\":[\"get\"]}]}");
	snprintf(coll, sizeof(coll),
	         "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings", ns);
	snprintf(buf, sizeof(buf),
	         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\","
	         "\"metadata\":{\"name\":\"kubefence-fence\"},\"roleRef\":{\"apiGroup\":"
	         "\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"kubefence-fence\"},"
	         "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"kubefence-agent\","
	         "\"namespace\":\"%s\"}]}",
	         ns);
	must_create(admin, coll, buf);
	must_create(admin, "/apis/rbac.authorization.k8s.io/v1/clusterroles",
	            "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\","
	            "\"metadata\":{\"name\":\"kubefence-fence\"},\"rules\":["
	            "{\"apiGroups\":[\"\"],\"resources\":[\"persistentvolumes\"],"
	            "\"verbs\":[\"get\"]},"
	            "{\"apiGroups\":[\"storage.k8s.io\"],\"resources\":[\"volumeattachments\"],"
	            "\"verbs\":[\"get\",\"list\",\"watch\",\"delete\"]},"
	            "{\"apiGroups\":[\"\"],\"resources\":[\"nodes\"],"
	            "\"verbs\":[\"get\",\"patch\",\"update\"]}]}");
	snprintf(buf, sizeof(buf),
	         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\","
	         "\"metadata\":{\"name\":\"kubefence-fence\"},\"roleRef\":{\"apiGroup\":"
	         "\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":"
	         "\"kubefence-fence\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":"
	         "\"kubefence-agent\",\"namespace\":\"%s\"}]}",
	         ns);
	must_create(admin, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", buf);
	k8s_client_free(admin);
}

static Suite *fence_it_suite(void)
{
	Suite *s = suite_create("fence_it");

	kft_add(s, "pod_recreated_survives", test_pod_recreated_survives, 60, NULL, NULL);
	kft_add(s, "duty_retry_spares_replacement", test_duty_retry_spares_replacement, 60, NULL,
	        NULL);
	kft_add(s, "pod_force_delete_confirmed", test_pod_force_delete_confirmed, 60, NULL, NULL);
	kft_add(s, "pipeline_with_attacher", test_pipeline_with_attacher, 60, NULL, NULL);
	kft_add(s, "volume_detach_deadline", test_volume_detach_deadline, 60, NULL, NULL);
	kft_add(s, "out_of_service_taint", test_out_of_service_taint, 60, NULL, NULL);
	kft_add(s, "out_of_service_method", test_out_of_service_method, 60, NULL, NULL);
	kft_add(s, "recovered_node_lifts_taint", test_recovered_node_lifts_taint, 60, NULL, NULL);
	kft_add(s, "rbac_errors_named", test_rbac_errors_named, 60, NULL, NULL);
	kft_add(s, "ctl_fence", test_ctl_fence, 60, NULL, NULL);
	kft_add(s, "ctl_fence_failure", test_ctl_fence_failure, 60, NULL, NULL);
	return s;
}

int main(void)
{
	static const struct kft_opts opts = {.ident = "check_fence_it",
	                                     .log_level = LOG_LEVEL_INFO};

	/* before the runner: setup_rbac() logs under the same ident and level */
	log_set_ident(opts.ident);
	log_max_level = opts.log_level;
	setup_rbac();
	return kft_main(fence_it_suite(), &opts);
}
