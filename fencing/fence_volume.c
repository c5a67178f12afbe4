/* fence_volume: delete the victim node's VolumeAttachments of the service's
 * volume and wait until the attacher let them go; the out-of-service taint
 * (see fence_volume.h). */
#include "config.h"

#include "fencing/fence_volume.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fencing/pipeline.h"
#include "lib/k8s.h"
#include "lib/util.h"

#define POLL_USEC (100 * USEC_PER_MSEC)
/* The last look is taken this long before the deadline, so that its
 * request still has time to answer. */
#define LAST_LOOK_USEC (20 * USEC_PER_MSEC)
#define VA_MAX         16
#define VA_COLLECTION  "/apis/storage.k8s.io/v1/volumeattachments"

static long left_ms(usec_t deadline)
{
	usec_t left = deadline - clock_mono_usec();

	if (left <= 0)
		return 0;
	return left < USEC_PER_MSEC ? 1 : (long)(left / USEC_PER_MSEC);
}

static const cJSON *jget(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = jget(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int fence_volume_pv_of_pvc(struct k8s_client *c, const char *ns, const char *pvc, usec_t deadline,
                           char *ret, size_t ret_len, char *err, size_t errlen)
{
	char path[512];
	cJSON *obj = NULL;
	const char *vol;
	long ms = left_ms(deadline);
	int r;

	if (ms == 0) {
		errbuf_set(err, errlen, "deadline passed before reading PVC '%s/%s'", ns, pvc);
		return -ETIMEDOUT;
	}
	r = k8s_path(path, sizeof(path), "v1", ns, "persistentvolumeclaims", pvc);
	if (r < 0) {
		errbuf_set(err, errlen, "invalid PVC name '%s/%s'", ns, pvc);
		goto out;
	}
	r = k8s_get(c, path, ms, &obj, err, errlen);
	if (r < 0)
		goto out;
	vol = jstr(jget(obj, "spec"), "volumeName");
	if (!vol || !vol[0]) {
		errbuf_set(err, errlen, "PVC '%s/%s' is not bound to a PersistentVolume", ns, pvc);
		r = -ENXIO;
		goto out;
	}
	r = str_copy(ret, ret_len, vol);
	if (r < 0)
		errbuf_set(err, errlen, "PV name '%s' too long", vol);
out:
	cJSON_Delete(obj);
	return r;
}

struct va {
	char name[254];
	char uid[64];
	char finalizers[256];
	bool deleting;
};

/* List the VolumeAttachments of pv on node.  VolumeAttachments support no
 * field selector beyond metadata.name, so the filter is applied here. */
static int va_find(struct k8s_client *c, const char *pv, const char *node, usec_t deadline,
                   struct va out[static VA_MAX], char *err, size_t errlen)
{
	cJSON *list = NULL;
	const cJSON *item;
	long ms = left_ms(deadline);
	int r, n = 0;

	if (ms == 0) {
		errbuf_set(err, errlen, "deadline passed before listing VolumeAttachments");
		return -ETIMEDOUT;
	}
	r = k8s_list(c, VA_COLLECTION, NULL, NULL, ms, &list, err, errlen);
	if (r < 0)
		goto out;
	cJSON_ArrayForEach(item, jget(list, "items"))
	{
		const cJSON *md = jget(item, "metadata"), *spec = jget(item, "spec");
		const char *src_pv = jstr(jget(spec, "source"), "persistentVolumeName");
		const char *nn = jstr(spec, "nodeName"), *name = jstr(md, "name");
		const cJSON *f;
		size_t used = 0;

		if (!src_pv || !nn || !name || strcmp(src_pv, pv) != 0 || strcmp(nn, node) != 0)
			continue;
		if (n >= VA_MAX)
			break;
		(void)str_copy(out[n].name, sizeof(out[n].name), name);
		(void)str_copy(out[n].uid, sizeof(out[n].uid),
		               jstr(md, "uid") ? jstr(md, "uid") : "");
		out[n].deleting = jget(md, "deletionTimestamp") != NULL;
		out[n].finalizers[0] = '\0';
		cJSON_ArrayForEach(f, jget(md, "finalizers"))
		{
			int k;

			if (!cJSON_IsString(f) || used >= sizeof(out[n].finalizers))
				continue;
			k = snprintf(out[n].finalizers + used, sizeof(out[n].finalizers) - used,
			             "%s%s", used ? ", " : "", f->valuestring);
			used += k > 0 ? (size_t)k : 0;
		}
		n++;
	}
	r = n;
out:
	cJSON_Delete(list);
	return r;
}

int fence_volume_detach(struct k8s_client *c, const char *pv, const char *node, bool dry_run,
                        usec_t deadline, int *ret_count, char *err, size_t errlen)
{
	struct va v[VA_MAX];
	char path[512], e[512] = "";
	int n, r;

	n = va_find(c, pv, node, deadline, v, err, errlen);
	if (n < 0)
		return n;
	if (n == 0 || dry_run) {
		if (ret_count)
			*ret_count = n;
		return n == 0 ? FENCE_ALREADY_GONE : FENCE_CONFIRMED;
	}
	for (int i = 0; i < n; i++) {
		long ms = left_ms(deadline);

		if (ms == 0) {
			errbuf_set(err, errlen,
			           "deadline passed before deleting VolumeAttachment '%s'",
			           v[i].name);
			return -ETIMEDOUT;
		}
		r = k8s_path(path, sizeof(path), "storage.k8s.io/v1", NULL, "volumeattachments",
		             v[i].name);
		if (r < 0) {
			errbuf_set(err, errlen, "invalid VolumeAttachment name '%s'", v[i].name);
			return r;
		}
		/* Default grace; the uid pins the object that was listed. */
		r = k8s_delete(c, path, -1, v[i].uid[0] ? v[i].uid : NULL, NULL, ms, e, sizeof(e));
		if (r < 0 && r != -ENOENT && r != -ESTALE) {
			errbuf_set(err, errlen, "%s", e);
			return r;
		}
	}

	/* Wait until none is left: each lingers with its deletionTimestamp
	 * until the external attacher removed its finalizer. */
	for (;;) {
		struct va left[VA_MAX];
		int m = va_find(c, pv, node, deadline, left, e, sizeof(e));

		if (m == 0)
			break;
		if (m < 0 && m != -ETIMEDOUT && !k8s_error_is_retryable(m)) {
			errbuf_set(err, errlen, "confirming VolumeAttachments are gone: %s", e);
			return m;
		}
		if (clock_mono_usec() >= deadline - LAST_LOOK_USEC) {
			if (m > 0)
				errbuf_set(err, errlen,
				           "VolumeAttachment '%s' (PV '%s', node '%s') still "
				           "present at "
				           "the deadline%s%s%s: the attacher did not detach the "
				           "volume",
				           left[0].name, pv, node,
				           left[0].deleting ? ", deleting, held by finalizers ["
				                            : "",
				           left[0].deleting ? left[0].finalizers : "",
				           left[0].deleting ? "]" : "");
			else
				errbuf_set(err, errlen,
				           "VolumeAttachments of PV '%s' on node '%s' not "
				           "confirmed gone "
				           "at the deadline: %s",
				           pv, node, e);
			return -ETIMEDOUT;
		}
		clock_sleep_until(clock_mono_usec() + POLL_USEC < deadline - LAST_LOOK_USEC
		                          ? clock_mono_usec() + POLL_USEC
		                          : deadline - LAST_LOOK_USEC);
	}
	if (ret_count)
		*ret_count = n;
	return FENCE_CONFIRMED;
}

/* ------------------------------------------------------------------ taint */

static bool is_oos_taint(const cJSON *t)
{
	const char *key = jstr(t, "key"), *effect = jstr(t, "effect");

	return key && strcmp(key, FENCE_OOS_TAINT_KEY) == 0 && effect &&
	       strcmp(effect, FENCE_OOS_TAINT_EFFECT) == 0;
}

/* Read the node, build the new taint list, merge-patch it conditionally on
 * the resourceVersion read; re-read and retry while -ESTALE. */
static int set_taint(struct k8s_client *c, const char *node, bool add, usec_t deadline, char *err,
                     size_t errlen)
{
	char path[512];
	int r;

	r = k8s_path(path, sizeof(path), "v1", NULL, "nodes", node);
	if (r < 0) {
		errbuf_set(err, errlen, "invalid node name '%s'", node);
		return r;
	}
	for (;;) {
		cJSON *obj = NULL, *patch = NULL, *taints = NULL, *md, *spec;
		const cJSON *t;
		const char *rv;
		bool present = false;
		long ms = left_ms(deadline);

		if (ms == 0) {
			errbuf_set(err, errlen, "deadline passed before %s the taint of node '%s'",
			           add ? "adding" : "removing", node);
			return -ETIMEDOUT;
		}
		r = k8s_get(c, path, ms, &obj, err, errlen);
		if (r < 0)
			return r;
		rv = jstr(jget(obj, "metadata"), "resourceVersion");
		taints = cJSON_CreateArray();
		patch = cJSON_CreateObject();
		if (!taints || !patch || !rv) {
			r = rv ? -ENOMEM : -EBADMSG;
			errbuf_set(err, errlen, "node '%s': %s", node,
			           rv ? "out of memory" : "no metadata.resourceVersion");
			goto next;
		}
		cJSON_ArrayForEach(t, jget(jget(obj, "spec"), "taints"))
		{
			if (is_oos_taint(t)) {
				present = true;
				if (!add)
					continue;
			}
			cJSON_AddItemToArray(taints, cJSON_Duplicate(t, true));
		}
		if (present == add) {
			r = 1; /* nothing to change */
			goto next;
		}
		if (add) {
			cJSON *nt = cJSON_CreateObject();

			cJSON_AddStringToObject(nt, "key", FENCE_OOS_TAINT_KEY);
			cJSON_AddStringToObject(nt, "value", FENCE_OOS_TAINT_VALUE);
			cJSON_AddStringToObject(nt, "effect", FENCE_OOS_TAINT_EFFECT);
			cJSON_AddItemToArray(taints, nt);
		}
		md = cJSON_AddObjectToObject(patch, "metadata");
		spec = cJSON_AddObjectToObject(patch, "spec");
		cJSON_AddStringToObject(md, "resourceVersion", rv);
		/* An empty list would be kept as [] — null removes the field. */
		if (cJSON_GetArraySize(taints) == 0)
			cJSON_AddNullToObject(spec, "taints");
		else {
			cJSON_AddItemToObject(spec, "taints", taints);
			taints = NULL;
		}
		ms = left_ms(deadline);
		r = ms == 0 ? -ETIMEDOUT : k8s_merge_patch(c, path, patch, ms, NULL, err, errlen);
	next:
		cJSON_Delete(taints);
		cJSON_Delete(patch);
		cJSON_Delete(obj);
		if (r != -ESTALE)
			return r;
		/* Someone else changed the node meanwhile: read it again. */
	}
}

int fence_volume_taint_node(struct k8s_client *c, const char *node, usec_t deadline, char *err,
                            size_t errlen)
{
	return set_taint(c, node, true, deadline, err, errlen);
}

int fence_volume_untaint_node(struct k8s_client *c, const char *node, usec_t deadline, char *err,
                              size_t errlen)
{
	return set_taint(c, node, false, deadline, err, errlen);
}
