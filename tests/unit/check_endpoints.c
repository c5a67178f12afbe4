/* Unit tests of the pure part of nodeagent/endpoints.c: resolving a
 * Service's ports against the master pod, refusing what cannot be used, and
 * the bodies written (a create, and a merge patch that carries the
 * resourceVersion precondition).  The writes themselves run against a real
 * API server in tests/failover (endpoints_follow_the_master). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lib/util.h"
#include "nodeagent/endpoints.h"
#include "tests/lib/kftest.h"

static const char *const SERVICE =
        "{\"metadata\":{\"name\":\"metaservice\",\"uid\":\"s-1\"},\"spec\":{\"ports\":["
        "{\"name\":\"client\",\"port\":7480,\"targetPort\":\"client\",\"protocol\":\"TCP\"},"
        "{\"name\":\"admin\",\"port\":80,\"targetPort\":9000},"
        "{\"name\":\"plain\",\"port\":81,\"protocol\":\"UDP\"}]}}";

static const char *const POD =
        "{\"metadata\":{\"name\":\"metaservice-1\",\"namespace\":\"kf\",\"uid\":\"u-1\"},"
        "\"spec\":{\"nodeName\":\"node-b\",\"containers\":["
        "{\"name\":\"side\",\"ports\":[{\"name\":\"metrics\",\"containerPort\":9100}]},"
        "{\"name\":\"metad\",\"ports\":[{\"name\":\"client\",\"containerPort\":7481}]}]},"
        "\"status\":{\"podIP\":\"10.244.1.7\"}}";

static int resolve(const char *svc, const char *pod, struct endpoints_target *t, char *err,
                   size_t errlen)
{
	cJSON *s = cJSON_Parse(svc), *p = cJSON_Parse(pod);
	int r;

	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(p);
	r = endpoints_target_from(s, p, t, err, errlen);
	cJSON_Delete(s);
	cJSON_Delete(p);
	return r;
}

START_TEST(ports_resolve_against_the_pod)
{
	struct endpoints_target t;
	char err[512] = "";

	ck_assert_int_eq(resolve(SERVICE, POD, &t, err, sizeof(err)), 0);
	ck_assert_str_eq(t.pod, "metaservice-1");
	ck_assert_str_eq(t.ns, "kf");
	ck_assert_str_eq(t.service_uid, "s-1");
	ck_assert_str_eq(t.uid, "u-1");
	ck_assert_str_eq(t.node, "node-b");
	ck_assert_str_eq(t.ip, "10.244.1.7");
	ck_assert_uint_eq(t.n_ports, 3);
	/* a named targetPort is the container port of that name */
	ck_assert_str_eq(t.ports[0].name, "client");
	ck_assert_int_eq(t.ports[0].port, 7481);
	ck_assert_str_eq(t.ports[0].protocol, "TCP");
	/* a numbered one is itself; none is the Service's port */
	ck_assert_int_eq(t.ports[1].port, 9000);
	ck_assert_str_eq(t.ports[1].protocol, "TCP");
	ck_assert_int_eq(t.ports[2].port, 81);
	ck_assert_str_eq(t.ports[2].protocol, "UDP");
}
END_TEST

static const struct {
	const char *svc, *pod, *err;
} BAD[] = {
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"selector\":{\"app\":\"x\"},"
         "\"ports\":[{\"port\":1}]}}",
         NULL, "Service 's' selects pods (spec.selector)"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"ports\":[{\"port\":1}]}}",
         "{\"metadata\":{\"name\":\"p\",\"uid\":\"u\"},\"status\":{}}",
         "pod 'p' has no IP (status.podIP) yet"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"ports\":[{\"port\":1,"
         "\"targetPort\":\"nope\"}]}}",
         NULL, "Service 's' targets port 'nope' (TCP), which no container of pod 'metaservice-1'"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"ports\":[{\"port\":1,"
         "\"targetPort\":\"client\",\"protocol\":\"UDP\"}]}}",
         NULL, "Service 's' targets port 'client' (UDP), which no container"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{}}", NULL, "Service 's' has no ports"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"ports\":[{\"targetPort\":70000}]}}", NULL,
         "Service 's' has a port without a valid number"},
        {"{\"metadata\":{\"name\":\"s\"},\"spec\":{\"ports\":[{\"port\":1}]}}",
         "{\"metadata\":{\"name\":\"p\"}}", "pod without name or uid"},
};

START_TEST(unusable_service_or_pod_is_refused)
{
	struct endpoints_target t;
	char err[512] = "";

	ck_assert_int_eq(
	        resolve(BAD[_i].svc, BAD[_i].pod ? BAD[_i].pod : POD, &t, err, sizeof(err)),
	        -EINVAL);
	ck_assert_msg(strstr(err, BAD[_i].err), "error '%s' lacks '%s'", err, BAD[_i].err);
}
END_TEST

static struct endpoints_target target(void)
{
	struct endpoints_target t;
	char err[512] = "";

	ck_assert_int_eq(resolve(SERVICE, POD, &t, err, sizeof(err)), 0);
	return t;
}

static const char *str_at(const cJSON *obj, const char *const *path)
{
	for (; *path; path++)
		obj = cJSON_IsArray(obj) ? cJSON_GetArrayItem(obj, atoi(*path))
		                         : cJSON_GetObjectItemCaseSensitive(obj, *path);
	return cJSON_IsString(obj) ? obj->valuestring : NULL;
}

#define AT(obj, ...) str_at(obj, (const char *const[]){__VA_ARGS__, NULL})

START_TEST(endpoints_create_and_patch)
{
	struct endpoints_target t = target();
	cJSON *c = endpoints_body("metaservice", &t, 7, NULL);
	cJSON *p = endpoints_body("metaservice", &t, 8, "123");
	char *json;

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(AT(c, "kind"), "Endpoints");
	ck_assert_str_eq(AT(c, "metadata", "name"), "metaservice");
	ck_assert_ptr_null(AT(c, "metadata", "resourceVersion"));
	ck_assert_str_eq(AT(c, "metadata", "annotations", ENDPOINTS_EPOCH_ANN), "7");
	/* the agent writes the slice itself: no mirrored second one */
	ck_assert_str_eq(AT(c, "metadata", "labels", "endpointslice.kubernetes.io/skip-mirror"),
	                 "true");
	ck_assert_str_eq(AT(c, "subsets", "0", "addresses", "0", "ip"), "10.244.1.7");
	ck_assert_str_eq(AT(c, "subsets", "0", "addresses", "0", "nodeName"), "node-b");
	ck_assert_str_eq(AT(c, "subsets", "0", "addresses", "0", "targetRef", "uid"), "u-1");
	ck_assert_str_eq(AT(c, "subsets", "0", "addresses", "0", "targetRef", "namespace"), "kf");
	/* owned by the Service: deleted with it */
	ck_assert_str_eq(AT(c, "metadata", "ownerReferences", "0", "kind"), "Service");
	ck_assert_str_eq(AT(c, "metadata", "ownerReferences", "0", "uid"), "s-1");
	ck_assert_int_eq(
	        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
	                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "subsets"), 0),
	                "addresses")),
	        1);
	ck_assert_str_eq(AT(c, "subsets", "0", "ports", "0", "name"), "client");
	/* a patch: the precondition, no name, no kind (a merge patch) */
	ck_assert_str_eq(AT(p, "metadata", "resourceVersion"), "123");
	ck_assert_ptr_null(AT(p, "metadata", "name"));
	ck_assert_ptr_null(AT(p, "kind"));
	ck_assert_str_eq(AT(p, "metadata", "annotations", ENDPOINTS_EPOCH_ANN), "8");
	ck_assert_int_eq(endpoints_epoch_of(p), 8);
	json = cJSON_PrintUnformatted(p);
	ck_assert_ptr_nonnull(strstr(json, "\"port\":7481"));
	cJSON_free(json);
	cJSON_Delete(c);
	cJSON_Delete(p);
}
END_TEST

START_TEST(slice_bodies_per_api_version)
{
	struct endpoints_target t = target();
	cJSON *v1 = endpoints_slice_body("metaservice", "discovery.k8s.io/v1", &t, 3, NULL);
	cJSON *b1 = endpoints_slice_body("metaservice", "discovery.k8s.io/v1beta1", &t, 3, NULL);
	const cJSON *ready;

	ck_assert_ptr_nonnull(v1);
	ck_assert_ptr_nonnull(b1);
	ck_assert_str_eq(AT(v1, "metadata", "name"), "metaservice" ENDPOINTS_SLICE_SUFFIX);
	ck_assert_str_eq(AT(v1, "metadata", "labels", "kubernetes.io/service-name"), "metaservice");
	ck_assert_str_eq(AT(v1, "metadata", "labels", "endpointslice.kubernetes.io/managed-by"),
	                 ENDPOINTS_MANAGER);
	ck_assert_str_eq(AT(v1, "addressType"), "IPv4");
	ck_assert_str_eq(AT(v1, "metadata", "ownerReferences", "0", "name"), "metaservice");
	ck_assert_str_eq(AT(v1, "endpoints", "0", "addresses", "0"), "10.244.1.7");
	ready = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(
	                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v1, "endpoints"), 0),
	                "conditions"),
	        "ready");
	ck_assert(cJSON_IsTrue(ready));
	/* the node: nodeName in v1, the hostname topology in v1beta1 */
	ck_assert_str_eq(AT(v1, "endpoints", "0", "nodeName"), "node-b");
	ck_assert_ptr_null(AT(b1, "endpoints", "0", "nodeName"));
	ck_assert_str_eq(AT(b1, "endpoints", "0", "topology", "kubernetes.io/hostname"), "node-b");
	ck_assert_str_eq(AT(b1, "apiVersion"), "discovery.k8s.io/v1beta1");
	ck_assert_str_eq(AT(v1, "ports", "2", "protocol"), "UDP");
	cJSON_Delete(v1);
	cJSON_Delete(b1);
}
END_TEST

START_TEST(ipv6_pod_is_an_ipv6_slice)
{
	struct endpoints_target t = target();
	cJSON *s;

	str_copy(t.ip, sizeof(t.ip), "fd00::7");
	s = endpoints_slice_body("metaservice", "discovery.k8s.io/v1", &t, 1, NULL);
	ck_assert_str_eq(AT(s, "addressType"), "IPv6");
	cJSON_Delete(s);
}
END_TEST

/* Nothing prepared: the caller is told to read the pod (no request made:
 * the writer has no client). */
START_TEST(nothing_prepared_is_enoent)
{
	struct endpoints_writer *w = NULL;
	bool wrote = true;
	char err[256] = "";

	ck_assert_int_eq(endpoints_writer_new(NULL, "kf", "metaservice", 1000, &w), 0);
	ck_assert_int_eq(
	        endpoints_switch_prepared(w, "u-1", 30 * USEC_PER_SEC, 5, &wrote, err, sizeof(err)),
	        -ENOENT);
	ck_assert(!wrote);
	endpoints_writer_free(w);
}
END_TEST

static Suite *endpoints_suite(void)
{
	Suite *s = suite_create("endpoints");
	TCase *tc = tcase_create("pure");

	tcase_add_test(tc, ports_resolve_against_the_pod);
	tcase_add_loop_test(tc, unusable_service_or_pod_is_refused, 0,
	                    (int)(sizeof(BAD) / sizeof(BAD[0])));
	tcase_add_test(tc, endpoints_create_and_patch);
	tcase_add_test(tc, slice_bodies_per_api_version);
	tcase_add_test(tc, ipv6_pod_is_an_ipv6_slice);
	tcase_add_test(tc, nothing_prepared_is_enoent);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(endpoints_suite(), NULL);
}
