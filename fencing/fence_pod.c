/* fence_pod: force-delete the old master pod with a uid precondition and
 * confirm it is gone (see fence_pod.h). */
#include "config.h"

#include "fencing/fence_pod.h"

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

/* What is left of the deadline as one request's timeout; 0 when passed. */
static long left_ms(usec_t deadline)
{
	usec_t left = deadline - clock_mono_usec();

	if (left <= 0)
		return 0;
	return left < USEC_PER_MSEC ? 1 : (long)(left / USEC_PER_MSEC);
}

static const char *json_str(const cJSON *obj, const char *a, const char *b)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, a);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, b);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int fence_pod_find(struct k8s_client *c, const char *ns, const char *selector, const char *node,
                   usec_t deadline, struct fence_pod_victim ret[static FENCE_POD_MAX], char *err,
                   size_t errlen)
{
	char path[512], field[300];
	cJSON *list = NULL;
	const cJSON *item;
	long ms = left_ms(deadline);
	int r, n = 0;

	if (ms == 0) {
		errbuf_set(err, errlen, "deadline passed before listing pods");
		return -ETIMEDOUT;
	}
	r = k8s_path(path, sizeof(path), "v1", ns, "pods", NULL);
	if (r < 0) {
		errbuf_set(err, errlen, "invalid namespace '%s'", ns);
		goto out;
	}
	snprintf(field, sizeof(field), "spec.nodeName=%s", node);
	r = k8s_list(c, path, selector && selector[0] ? selector : NULL, field, ms, &list, err,
	             errlen);
	if (r < 0)
		goto out;
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(list, "items"))
	{
		const char *name = json_str(item, "metadata", "name");
		const char *uid = json_str(item, "metadata", "uid");

		if (!name || !uid || n >= FENCE_POD_MAX)
			continue;
		(void)str_copy(ret[n].name, sizeof(ret[n].name), name);
		(void)str_copy(ret[n].uid, sizeof(ret[n].uid), uid);
		n++;
	}
	r = n;
out:
	cJSON_Delete(list);
	return r;
}

/* GET the pod: 1 = the victim (uid) is still there, 0 = gone (404 or
 * another uid, named in err), or -errno. */
static int victim_present(struct k8s_client *c, const char *path, const char *ns, const char *name,
                          const char *uid, usec_t deadline, char *err, size_t errlen)
{
	cJSON *obj = NULL;
	const char *cur;
	long ms = left_ms(deadline);
	int r;

	if (ms == 0)
		return -ETIMEDOUT;
	r = k8s_get(c, path, ms, &obj, err, errlen);
	if (r == -ENOENT) {
		errbuf_set(err, errlen, "pod '%s/%s' is gone (404)", ns, name);
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	cur = json_str(obj, "metadata", "uid");
	if (cur && strcmp(cur, uid) != 0) {
		errbuf_set(
		        err, errlen,
		        "pod '%s/%s' uid %s is gone; the name now belongs to a new pod (uid %s), "
		        "left alone",
		        ns, name, uid, cur);
		r = 0;
		goto out;
	}
	r = 1;
out:
	cJSON_Delete(obj);
	return r;
}

int fence_pod_delete(struct k8s_client *c, const char *ns, const char *name, const char *uid,
                     usec_t deadline, char *err, size_t errlen)
{
	char path[512], cur_uid[64] = "", e[512] = "";
	cJSON *obj = NULL;
	int r;

	r = k8s_path(path, sizeof(path), "v1", ns, "pods", name);
	if (r < 0) {
		errbuf_set(err, errlen, "invalid pod name '%s/%s'", ns, name);
		goto out;
	}
	if (!uid || uid[0] == '\0') {
		/* No uid observed: pin the one present now, so the delete and
		 * the confirmation still concern one object. */
		long ms = left_ms(deadline);

		if (ms == 0) {
			r = -ETIMEDOUT;
			errbuf_set(err, errlen, "deadline passed before reading pod '%s/%s'", ns,
			           name);
			goto out;
		}
		r = k8s_get(c, path, ms, &obj, err, errlen);
		if (r == -ENOENT) {
			errbuf_set(err, errlen, "pod '%s/%s' is gone (404)", ns, name);
			r = FENCE_ALREADY_GONE;
			goto out;
		}
		if (r < 0)
			goto out;
		if (!json_str(obj, "metadata", "uid")) {
			errbuf_set(err, errlen, "pod '%s/%s' has no metadata.uid", ns, name);
			r = -EBADMSG;
			goto out;
		}
		(void)str_copy(cur_uid, sizeof(cur_uid), json_str(obj, "metadata", "uid"));
		uid = cur_uid;
	}

	{
		long ms = left_ms(deadline);

		if (ms == 0) {
			r = -ETIMEDOUT;
			errbuf_set(err, errlen, "deadline passed before deleting pod '%s/%s'", ns,
			           name);
			goto out;
		}
		r = k8s_delete(c, path, 0, uid, NULL, ms, e, sizeof(e));
	}
	if (r == -ENOENT) {
		errbuf_set(err, errlen, "pod '%s/%s' uid %s is gone (404)", ns, name, uid);
		r = FENCE_ALREADY_GONE;
		goto out;
	}
	if (r == -ESTALE) {
		/* The uid precondition failed: the name belongs to another pod.
		 * Confirm that reading, so a transient conflict is not taken
		 * for a replacement. */
		r = victim_present(c, path, ns, name, uid, deadline, err, errlen);
		if (r == 0)
			r = FENCE_ALREADY_GONE;
		else if (r > 0) {
			errbuf_set(err, errlen, "%s", e);
			r = -ESTALE;
		}
		goto out;
	}
	if (r < 0) {
		errbuf_set(err, errlen, "%s", e);
		goto out;
	}

	/* Deleted: wait until the object is gone (a finalizer may hold it). */
	for (;;) {
		r = victim_present(c, path, ns, name, uid, deadline, e, sizeof(e));
		if (r == 0) {
			errbuf_set(err, errlen, "%s", e);
			r = FENCE_CONFIRMED;
			goto out;
		}
		if (r < 0 && r != -ETIMEDOUT && !k8s_error_is_retryable(r)) {
			errbuf_set(err, errlen, "confirming pod '%s/%s' is gone: %s", ns, name, e);
			goto out;
		}
		if (clock_mono_usec() >= deadline - LAST_LOOK_USEC) {
			errbuf_set(
			        err, errlen,
			        "pod '%s/%s' uid %s still present at the deadline after its force "
			        "delete (a finalizer holds it?)",
			        ns, name, uid);
			r = -ETIMEDOUT;
			goto out;
		}
		clock_sleep_until(clock_mono_usec() + POLL_USEC < deadline - LAST_LOOK_USEC
		                          ? clock_mono_usec() + POLL_USEC
		                          : deadline - LAST_LOOK_USEC);
	}
out:
	cJSON_Delete(obj);
	return r;
}
