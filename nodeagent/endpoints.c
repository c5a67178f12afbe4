/* endpoints: the master's address in the Service's Endpoints and
 * EndpointSlice, one conditional write each (endpoints.h says why). */
#include "config.h"

#include "nodeagent/endpoints.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"

#define SKIP_MIRROR_LABEL  "endpointslice.kubernetes.io/skip-mirror"
#define MANAGED_BY_LABEL   "endpointslice.kubernetes.io/managed-by"
#define SERVICE_NAME_LABEL "kubernetes.io/service-name"

static const cJSON *field(const cJSON *obj, const char *a, const char *b)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);

	return b ? cJSON_GetObjectItemCaseSensitive(v, b) : v;
}

static const char *str_or(const cJSON *v, const char *dflt)
{
	return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* The container port of pod named `name` for protocol `proto`; 0 when
 * none. */
static int named_port(const cJSON *pod, const char *name, const char *proto)
{
	const cJSON *c, *p;

	cJSON_ArrayForEach(c, field(pod, "spec", "containers"))
	{
		cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "ports"))
		{
			const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
			const cJSON *cp = cJSON_GetObjectItemCaseSensitive(p, "containerPort");
			const char *pr =
			        str_or(cJSON_GetObjectItemCaseSensitive(p, "protocol"), "TCP");

			if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 &&
			    cJSON_IsNumber(cp) && strcmp(pr, proto) == 0)
				return cp->valueint;
		}
	}
	return 0;
}

int endpoints_target_from(const cJSON *service, const cJSON *pod, struct endpoints_target *ret,
                          char *err, size_t errlen)
{
	const char *svc = str_or(field(service, "metadata", "name"), "?");
	const cJSON *sel = field(service, "spec", "selector");
	const cJSON *ports = field(service, "spec", "ports"), *p;
	const cJSON *name = field(pod, "metadata", "name"), *uid = field(pod, "metadata", "uid");
	const cJSON *ip = field(pod, "status", "podIP");

	memset(ret, 0, sizeof(*ret));
	if (cJSON_IsObject(sel) && sel->child) {
		errbuf_set(
		        err, errlen,
		        "Service '%s' selects pods (spec.selector), so its endpoints are the "
		        "endpoints controllers': remove its selector, or unset service.endpoints",
		        svc);
		return -EINVAL;
	}
	if (!cJSON_IsString(name) || !cJSON_IsString(uid)) {
		errbuf_set(err, errlen, "pod without name or uid");
		return -EINVAL;
	}
	str_copy(ret->pod, sizeof(ret->pod), name->valuestring);
	str_copy(ret->uid, sizeof(ret->uid), uid->valuestring);
	str_copy(ret->ns, sizeof(ret->ns), str_or(field(pod, "metadata", "namespace"), ""));
	str_copy(ret->service_uid, sizeof(ret->service_uid),
	         str_or(field(service, "metadata", "uid"), ""));
	str_copy(ret->node, sizeof(ret->node), str_or(field(pod, "spec", "nodeName"), ""));
	if (!cJSON_IsString(ip) || !ip->valuestring[0] ||
	    strlen(ip->valuestring) >= sizeof(ret->ip)) {
		errbuf_set(err, errlen, "pod '%s' has no IP (status.podIP) yet", ret->pod);
		return -EINVAL;
	}
	str_copy(ret->ip, sizeof(ret->ip), ip->valuestring);
	cJSON_ArrayForEach(p, ports)
	{
		struct endpoints_port *ep = &ret->ports[ret->n_ports];
		const cJSON *port = cJSON_GetObjectItemCaseSensitive(p, "port");
		const cJSON *target = cJSON_GetObjectItemCaseSensitive(p, "targetPort");

		if (ret->n_ports == ENDPOINTS_PORTS_MAX) {
			errbuf_set(err, errlen, "Service '%s' has more than %d ports", svc,
			           ENDPOINTS_PORTS_MAX);
			return -EINVAL;
		}
		str_copy(ep->name, sizeof(ep->name),
		         str_or(cJSON_GetObjectItemCaseSensitive(p, "name"), ""));
		str_copy(ep->protocol, sizeof(ep->protocol),
		         str_or(cJSON_GetObjectItemCaseSensitive(p, "protocol"), "TCP"));
		if (cJSON_IsString(target)) {
			ep->port = named_port(pod, target->valuestring, ep->protocol);
			if (ep->port <= 0) {
				errbuf_set(err, errlen,
				           "Service '%s' targets port '%s' (%s), which no "
				           "container of "
				           "pod '%s' names",
				           svc, target->valuestring, ep->protocol, ret->pod);
				return -EINVAL;
			}
		} else if (cJSON_IsNumber(target)) {
			ep->port = target->valueint;
		} else if (cJSON_IsNumber(port)) {
			ep->port = port->valueint;
		}
		if (ep->port <= 0 || ep->port > 65535) {
			errbuf_set(err, errlen, "Service '%s' has a port without a valid number",
			           svc);
			return -EINVAL;
		}
		ret->n_ports++;
	}
	if (ret->n_ports == 0) {
		errbuf_set(err, errlen, "Service '%s' has no ports", svc);
		return -EINVAL;
	}
	return 0;
}

int64_t endpoints_epoch_of(const cJSON *obj)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(field(obj, "metadata", "annotations"),
	                                                  ENDPOINTS_EPOCH_ANN);

	return cJSON_IsString(v) ? strtoll(v->valuestring, NULL, 10) : 0;
}

/* metadata of a body: name (create) or resourceVersion (patch), the labels,
 * the term, and Service `service` as the owner (deleted with it; a Service
 * created again under the name is another owner).  NULL when out of
 * memory. */
static cJSON *add_meta(cJSON *body, const struct endpoints_target *t, const char *service,
                       const char *name, const char *rv, int64_t epoch, const char *label_key,
                       const char *label_value, const char *label2_key, const char *label2_value)
{
	cJSON *meta = cJSON_AddObjectToObject(body, "metadata");
	cJSON *labels = meta ? cJSON_AddObjectToObject(meta, "labels") : NULL;
	cJSON *ann = meta ? cJSON_AddObjectToObject(meta, "annotations") : NULL;
	char e[32];

	snprintf(e, sizeof(e), "%" PRId64, epoch);
	if (!labels || !ann || !cJSON_AddStringToObject(labels, label_key, label_value) ||
	    (label2_key && !cJSON_AddStringToObject(labels, label2_key, label2_value)) ||
	    !cJSON_AddStringToObject(ann, ENDPOINTS_EPOCH_ANN, e) ||
	    (rv && !cJSON_AddStringToObject(meta, "resourceVersion", rv)) ||
	    (!rv && !cJSON_AddStringToObject(meta, "name", name)))
		return NULL;
	if (t->service_uid[0]) {
		cJSON *owners = cJSON_AddArrayToObject(meta, "ownerReferences");
		cJSON *o = cJSON_CreateObject();

		if (!owners || !o || !cJSON_AddItemToArray(owners, o)) {
			cJSON_Delete(o);
			return NULL;
		}
		if (!cJSON_AddStringToObject(o, "apiVersion", "v1") ||
		    !cJSON_AddStringToObject(o, "kind", "Service") ||
		    !cJSON_AddStringToObject(o, "name", service) ||
		    !cJSON_AddStringToObject(o, "uid", t->service_uid))
			return NULL;
	}
	return meta;
}

static cJSON *target_ref(const struct endpoints_target *t)
{
	cJSON *ref = cJSON_CreateObject();

	if (ref && cJSON_AddStringToObject(ref, "kind", "Pod") &&
	    (!t->ns[0] || cJSON_AddStringToObject(ref, "namespace", t->ns)) &&
	    cJSON_AddStringToObject(ref, "name", t->pod) &&
	    cJSON_AddStringToObject(ref, "uid", t->uid))
		return ref;
	cJSON_Delete(ref);
	return NULL;
}

static cJSON *ports_array(const struct endpoints_target *t)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && i < t->n_ports; i++) {
		cJSON *p = cJSON_CreateObject();

		if (!p || !cJSON_AddItemToArray(a, p) ||
		    (t->ports[i].name[0] &&
		     !cJSON_AddStringToObject(p, "name", t->ports[i].name)) ||
		    !cJSON_AddNumberToObject(p, "port", t->ports[i].port) ||
		    !cJSON_AddStringToObject(p, "protocol", t->ports[i].protocol)) {
			cJSON_Delete(a);
			return NULL;
		}
	}
	return a;
}

/* A member `key` of parent: an array holding one new object, which is
 * returned; NULL when !ok or out of memory. */
static cJSON *add_one(cJSON *parent, const char *key, bool ok)
{
	cJSON *a = ok ? cJSON_AddArrayToObject(parent, key) : NULL;
	cJSON *o = a ? cJSON_CreateObject() : NULL;

	if (o && !cJSON_AddItemToArray(a, o)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* The end both bodies share: the pod's targetRef on the address `at`, the
 * ports on `ports_at`.  body, or NULL (body freed) when out of memory or
 * !ok. */
static cJSON *finish(cJSON *body, bool ok, cJSON *at, cJSON *ports_at,
                     const struct endpoints_target *t)
{
	cJSON *ref = ok ? target_ref(t) : NULL, *ports = NULL;

	ok = ref && cJSON_AddItemToObject(at, "targetRef", ref);
	if (!ok)
		cJSON_Delete(ref);
	ports = ok ? ports_array(t) : NULL;
	ok = ports && cJSON_AddItemToObject(ports_at, "ports", ports);
	if (!ok) {
		cJSON_Delete(ports);
		cJSON_Delete(body);
		return NULL;
	}
	return body;
}

cJSON *endpoints_body(const char *name, const struct endpoints_target *t, int64_t epoch,
                      const char *resource_version)
{
	cJSON *body = cJSON_CreateObject(), *subset, *addr;
	bool ok;

	/* The agent writes the EndpointSlice itself: the mirroring controller
	 * must not make a second one from this object. */
	ok = body &&
	     (resource_version || (cJSON_AddStringToObject(body, "apiVersion", "v1") &&
	                           cJSON_AddStringToObject(body, "kind", "Endpoints"))) &&
	     add_meta(body, t, name, name, resource_version, epoch, SKIP_MIRROR_LABEL, "true", NULL,
	              NULL);
	subset = add_one(body, "subsets", ok);
	addr = add_one(subset, "addresses", subset != NULL);
	ok = addr && cJSON_AddStringToObject(addr, "ip", t->ip) &&
	     (!t->node[0] || cJSON_AddStringToObject(addr, "nodeName", t->node));
	return finish(body, ok, addr, subset, t);
}

cJSON *endpoints_slice_body(const char *service, const char *group_version,
                            const struct endpoints_target *t, int64_t epoch,
                            const char *resource_version)
{
	char name[300];
	cJSON *body = cJSON_CreateObject(), *ep, *addrs, *cond, *topo;
	bool v1 = strcmp(group_version, "discovery.k8s.io/v1") == 0, ok;

	snprintf(name, sizeof(name), "%s%s", service, ENDPOINTS_SLICE_SUFFIX);
	ok = body &&
	     (resource_version ||
	      (cJSON_AddStringToObject(body, "apiVersion", group_version) &&
	       cJSON_AddStringToObject(body, "kind", "EndpointSlice") &&
	       cJSON_AddStringToObject(body, "addressType",
	                               strchr(t->ip, ':') ? "IPv6" : "IPv4"))) &&
	     add_meta(body, t, service, name, resource_version, epoch, SERVICE_NAME_LABEL, service,
	              MANAGED_BY_LABEL, ENDPOINTS_MANAGER);
	ep = add_one(body, "endpoints", ok);
	ok = ep != NULL;
	addrs = ok ? cJSON_AddArrayToObject(ep, "addresses") : NULL;
	ok = addrs && cJSON_AddItemToArray(addrs, cJSON_CreateString(t->ip));
	cond = ok ? cJSON_AddObjectToObject(ep, "conditions") : NULL;
	ok = cond && cJSON_AddTrueToObject(cond, "ready");
	if (ok && t->node[0]) {
		if (v1) {
			ok = cJSON_AddStringToObject(ep, "nodeName", t->node) != NULL;
		} else {
			topo = cJSON_AddObjectToObject(ep, "topology");
			ok = topo &&
			     cJSON_AddStringToObject(topo, "kubernetes.io/hostname", t->node);
		}
	}
	return finish(body, ok, ep, body, t);
}

/* ---------------------------------------------------------------- writer */

struct endpoints_writer {
	struct k8s_client *client;
	char ns[254], service[254];
	long timeout_ms;
	/* the EndpointSlice API the server serves: "" not known yet */
	char slice_gv[64];
	void (*on_slice)(void *data);
	void *on_slice_data;
	/* the last target resolved (a switch, endpoints_prepare) and when */
	struct endpoints_target prepared;
	usec_t prepared_at;
};

void endpoints_writer_on_slice(struct endpoints_writer *w, void (*fn)(void *data), void *data)
{
	w->on_slice = fn;
	w->on_slice_data = data;
}

int endpoints_writer_new(struct k8s_client *client, const char *ns, const char *service,
                         long timeout_ms, struct endpoints_writer **ret)
{
	struct endpoints_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->client = client;
	str_copy(w->ns, sizeof(w->ns), ns);
	str_copy(w->service, sizeof(w->service), service);
	w->timeout_ms = timeout_ms;
	*ret = w;
	return 0;
}

void endpoints_writer_free(struct endpoints_writer *w)
{
	free(w);
}

/* Which EndpointSlice API the server serves (asked until one answers):
 * v1 since Kubernetes 1.21, v1beta1 before 1.25.  0, 1 (none), -errno. */
static int slice_api(struct endpoints_writer *w, char *err, size_t errlen)
{
	static const char *const gvs[] = {"discovery.k8s.io/v1", "discovery.k8s.io/v1beta1"};

	if (w->slice_gv[0])
		return 0;
	for (size_t i = 0; i < 2; i++) {
		char path[128];
		int r;

		snprintf(path, sizeof(path), "/apis/%s", gvs[i]);
		r = k8s_get(w->client, path, w->timeout_ms, NULL, err, errlen);
		if (r == 0) {
			str_copy(w->slice_gv, sizeof(w->slice_gv), gvs[i]);
			log_info("the Service's EndpointSlice is written as %s", gvs[i]);
			return 0;
		}
		if (r != -ENOENT)
			return r;
	}
	/* not remembered: asked again at the next switch (an API server
	 * being upgraded may serve it soon) */
	log_warning("the API server serves no EndpointSlice API: only the Endpoints of "
	            "Service '%s' are written",
	            w->service);
	return 1;
}

typedef cJSON *(*body_fn)(struct endpoints_writer *w, const struct endpoints_target *t,
                          int64_t epoch, const char *rv);

static cJSON *ep_body(struct endpoints_writer *w, const struct endpoints_target *t, int64_t epoch,
                      const char *rv)
{
	return endpoints_body(w->service, t, epoch, rv);
}

static cJSON *slice_body(struct endpoints_writer *w, const struct endpoints_target *t,
                         int64_t epoch, const char *rv)
{
	return endpoints_slice_body(w->service, w->slice_gv, t, epoch, rv);
}

/* Whether `have` holds everything `want` says: every member of an object,
 * arrays of the same length whose every element is covered by one of
 * `have`'s (in any order), equal scalars.  Fields the
 * API server adds (defaults, other writers' annotations) do not matter. */
static bool covers(const cJSON *have, const cJSON *want)
{
	const cJSON *w;

	if (cJSON_IsObject(want)) {
		if (!cJSON_IsObject(have))
			return false;
		cJSON_ArrayForEach(w, want)
		{
			if (!covers(cJSON_GetObjectItemCaseSensitive(have, w->string), w))
				return false;
		}
		return true;
	}
	if (cJSON_IsArray(want)) {
		/* in any order: the API server keeps an Endpoints' ports and
		 * addresses sorted (its canonical form) */
		const cJSON *h;

		if (!cJSON_IsArray(have) || cJSON_GetArraySize(have) != cJSON_GetArraySize(want))
			return false;
		cJSON_ArrayForEach(w, want)
		{
			bool found = false;

			cJSON_ArrayForEach(h, have)
			{
				if (covers(h, w)) {
					found = true;
					break;
				}
			}
			if (!found)
				return false;
		}
		return true;
	}
	return cJSON_Compare(have, want, true);
}

/* The object already says what body would write, for this term (the
 * precondition aside): nothing to write. */
static bool up_to_date(const cJSON *cur, const cJSON *body, int64_t epoch)
{
	const cJSON *f;

	if (endpoints_epoch_of(cur) != epoch)
		return false;
	if (!covers(field(cur, "metadata", "labels"), field(body, "metadata", "labels")))
		return false;
	cJSON_ArrayForEach(f, body)
	{
		if (strcmp(f->string, "metadata") != 0 &&
		    !covers(cJSON_GetObjectItemCaseSensitive(cur, f->string), f))
			return false;
	}
	return true;
}

/* Read the object, check no later term wrote it, write it conditionally
 * (create when missing) unless it says so already; a write that lost a
 * race is read and tried again.  0 (*wrote: a write was made), 1 (a later
 * term's), or -errno. */
static int cas_write(struct endpoints_writer *w, const char *gv, const char *resource,
                     const char *name, body_fn build, const struct endpoints_target *t,
                     int64_t epoch, bool *wrote, char *err, size_t errlen)
{
	char coll[512], path[600];
	int r = k8s_path(coll, sizeof(coll), gv, w->ns, resource, NULL);

	if (r >= 0)
		r = k8s_path(path, sizeof(path), gv, w->ns, resource, name);
	for (int attempt = 0; r >= 0 && attempt < 5; attempt++) {
		cJSON *cur = NULL, *body;
		const char *rv = NULL;

		r = k8s_get(w->client, path, w->timeout_ms, &cur, err, errlen);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r == 0 && endpoints_epoch_of(cur) > epoch) {
			errbuf_set(err, errlen,
			           "%s '%s' was written by term %" PRId64 " (ours %" PRId64 ")",
			           resource, name, endpoints_epoch_of(cur), epoch);
			cJSON_Delete(cur);
			return 1;
		}
		if (r == 0) {
			rv = str_or(field(cur, "metadata", "resourceVersion"), NULL);
			if (!rv) {
				errbuf_set(err, errlen, "%s '%s' has no resourceVersion", resource,
				           name);
				cJSON_Delete(cur);
				return -EBADMSG;
			}
		}
		body = build(w, t, epoch, rv);
		if (body && rv && up_to_date(cur, body, epoch)) {
			cJSON_Delete(body);
			cJSON_Delete(cur);
			return 0;
		}
		r = body ? FAILPOINT(AGENT_ENDPOINTS_BEFORE_WRITE) : -ENOMEM;
		if (!body)
			errbuf_set(err, errlen, "out of memory");
		else if (r < 0)
			errbuf_set(err, errlen, "fault point: %s", strerror(-r));
		else if (rv)
			r = k8s_merge_patch(w->client, path, body, w->timeout_ms, NULL, err,
			                    errlen);
		else
			r = k8s_create(w->client, coll, body, w->timeout_ms, NULL, err, errlen);
		cJSON_Delete(body);
		cJSON_Delete(cur);
		if (r == 0)
			*wrote = true;
		if (r != -ESTALE && r != -EEXIST)
			return r;
		r = 0; /* another write came first: read again */
	}
	if (r >= 0)
		errbuf_set(err, errlen, "%s '%s' kept changing under the write", resource, name);
	return r < 0 ? r : -EAGAIN;
}

/* EndpointSlices of the Service that Kubernetes' controllers made while it
 * had a selector (or before the Endpoints said skip-mirror): they do not
 * remove them once it has none, and kube-proxy would route to their
 * addresses as well as to ours.  Slices of any other manager are left
 * alone (and said). */
static int drop_foreign_slices(struct endpoints_writer *w, const char *ours, char *err,
                               size_t errlen)
{
	char coll[512], sel[400];
	cJSON *list = NULL;
	const cJSON *it;
	int r = k8s_path(coll, sizeof(coll), w->slice_gv, w->ns, "endpointslices", NULL);

	snprintf(sel, sizeof(sel), SERVICE_NAME_LABEL "=%s", w->service);
	if (r >= 0)
		r = k8s_list(w->client, coll, sel, NULL, w->timeout_ms, &list, err, errlen);
	if (r < 0)
		return r;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(list, "items"))
	{
		const char *name = str_or(field(it, "metadata", "name"), "");
		const char *uid = str_or(field(it, "metadata", "uid"), NULL);
		const char *by = str_or(cJSON_GetObjectItemCaseSensitive(
		                                field(it, "metadata", "labels"), MANAGED_BY_LABEL),
		                        "");
		char path[600];

		if (!name[0] || strcmp(name, ours) == 0)
			continue;
		if (strcmp(by, "endpointslice-controller.k8s.io") != 0 &&
		    strcmp(by, "endpointslicemirroring-controller.k8s.io") != 0) {
			log_warning("EndpointSlice '%s/%s' of Service '%s' is managed by '%s': "
			            "kube-proxy routes to its addresses too",
			            w->ns, name, w->service, by[0] ? by : "nobody");
			continue;
		}
		r = k8s_path(path, sizeof(path), w->slice_gv, w->ns, "endpointslices", name);
		if (r >= 0)
			r = k8s_delete(w->client, path, -1, uid, NULL, w->timeout_ms, err, errlen);
		if (r < 0 && r != -ENOENT && r != -ESTALE)
			break;
		r = 0;
		log_info("removed EndpointSlice '%s/%s' of Service '%s', left by %s", w->ns, name,
		         w->service, by);
	}
	cJSON_Delete(list);
	return r;
}

/* The Service's ports resolved against pod, into *t (the Service read
 * now).  -EINVAL: it cannot be used. */
static int resolve(struct endpoints_writer *w, const cJSON *pod, struct endpoints_target *t,
                   char *err, size_t errlen)
{
	char path[512];
	cJSON *svc = NULL;
	int r;

	r = k8s_path(path, sizeof(path), "v1", w->ns, "services", w->service);
	if (r >= 0)
		r = k8s_get(w->client, path, w->timeout_ms, &svc, err, errlen);
	if (r == -ENOENT) {
		errbuf_set(err, errlen, "Service '%s/%s' does not exist", w->ns, w->service);
		return -EINVAL;
	}
	if (r < 0)
		return r;
	r = endpoints_target_from(svc, pod, t, err, errlen);
	cJSON_Delete(svc);
	if (r == 0) {
		w->prepared = *t;
		w->prepared_at = clock_mono_usec();
	}
	return r;
}

/* The writes of one switch to t. */
static int write_target(struct endpoints_writer *w, const struct endpoints_target *t, int64_t epoch,
                        bool tidy, bool *ret_wrote, char *err, size_t errlen)
{
	bool wrote = false;
	char slice[300];
	int r = slice_api(w, err, errlen);

	if (r < 0)
		return r;
	snprintf(slice, sizeof(slice), "%s%s", w->service, ENDPOINTS_SLICE_SUFFIX);
	if (r == 0)
		r = cas_write(w, w->slice_gv, "endpointslices", slice, slice_body, t, epoch, &wrote,
		              err, errlen);
	else
		r = 0; /* no EndpointSlice API: the Endpoints alone */
	if (r == 0 && w->on_slice)
		w->on_slice(w->on_slice_data);
	if (r == 0)
		r = cas_write(w, "v1", "endpoints", w->service, ep_body, t, epoch, &wrote, err,
		              errlen);
	if (r == 0 && tidy && w->slice_gv[0])
		r = drop_foreign_slices(w, slice, err, errlen);
	if (ret_wrote)
		*ret_wrote = wrote;
	return r;
}

int endpoints_switch(struct endpoints_writer *w, const cJSON *pod, int64_t epoch, bool tidy,
                     bool *ret_wrote, char *err, size_t errlen)
{
	struct endpoints_target t;
	int r = resolve(w, pod, &t, err, errlen);

	if (ret_wrote)
		*ret_wrote = false;
	return r < 0 ? r : write_target(w, &t, epoch, tidy, ret_wrote, err, errlen);
}

int endpoints_prepare(struct endpoints_writer *w, const cJSON *pod, char *err, size_t errlen)
{
	struct endpoints_target t;
	int r = resolve(w, pod, &t, err, errlen);

	return r < 0 ? r : slice_api(w, err, errlen) < 0 ? -EAGAIN : 0;
}

int endpoints_switch_prepared(struct endpoints_writer *w, const char *uid, usec_t max_age,
                              int64_t epoch, bool *ret_wrote, char *err, size_t errlen)
{
	struct endpoints_target t = w->prepared;

	if (ret_wrote)
		*ret_wrote = false;
	if (!w->prepared_at || clock_mono_usec() - w->prepared_at > max_age || !uid[0] ||
	    strcmp(t.uid, uid) != 0)
		return -ENOENT;
	return write_target(w, &t, epoch, false, ret_wrote, err, errlen);
}
