/* lease: leader election on a coordination.k8s.io/v1 Lease (see lease.h). */
#include "config.h"

#include "lib/lease.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/failpoint.h"
#include "lib/k8s.h"
#include "lib/util.h"

#define LEASE_GV "coordination.k8s.io/v1"

/* --------------------------------------------------------------- record */

static int get_string(const cJSON *parent, const char *key, bool required, char *dst, size_t n,
                      const char *where, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);

	dst[0] = '\0';
	if (!v || cJSON_IsNull(v)) {
		if (required) {
			errbuf_set(err, errlen, "Lease: %s.%s is missing", where, key);
			return -EBADMSG;
		}
		return 0;
	}
	if (!cJSON_IsString(v) || !v->valuestring) {
		errbuf_set(err, errlen, "Lease: %s.%s is not a string", where, key);
		return -EBADMSG;
	}
	if (str_copy(dst, n, v->valuestring) < 0) {
		errbuf_set(err, errlen, "Lease: %s.%s is too long", where, key);
		return -EBADMSG;
	}
	return 0;
}

static int get_int(const cJSON *parent, const char *key, int64_t *ret, const char *where, char *err,
                   size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);

	*ret = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)INT32_MAX ||
	    v->valuedouble != (double)(int64_t)v->valuedouble) {
		errbuf_set(err, errlen, "Lease: %s.%s is not a non-negative integer", where, key);
		return -EBADMSG;
	}
	*ret = (int64_t)v->valuedouble;
	return 0;
}

int lease_record_from_json(const cJSON *obj, struct lease_record *ret, char *err, size_t errlen)
{
	struct lease_record r = {0};
	const cJSON *meta, *spec, *ann;
	char dur[32];
	int64_t secs;
	int k;

	if (!cJSON_IsObject(obj)) {
		errbuf_set(err, errlen, "Lease: not a JSON object");
		return -EBADMSG;
	}
	meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	if (!cJSON_IsObject(meta)) {
		errbuf_set(err, errlen, "Lease: metadata is missing");
		return -EBADMSG;
	}
	if ((k = get_string(meta, "name", true, r.name, sizeof(r.name), "metadata", err, errlen)) <
	            0 ||
	    (k = get_string(meta, "uid", false, r.uid, sizeof(r.uid), "metadata", err, errlen)) <
	            0 ||
	    (k = get_string(meta, "resourceVersion", true, r.resource_version,
	                    sizeof(r.resource_version), "metadata", err, errlen)) < 0)
		return k;

	spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
	if (spec && !cJSON_IsNull(spec)) {
		if (!cJSON_IsObject(spec)) {
			errbuf_set(err, errlen, "Lease: spec is not an object");
			return -EBADMSG;
		}
		if ((k = get_string(spec, "holderIdentity", false, r.holder, sizeof(r.holder),
		                    "spec", err, errlen)) < 0 ||
		    (k = get_string(spec, "renewTime", false, r.renew_time, sizeof(r.renew_time),
		                    "spec", err, errlen)) < 0 ||
		    (k = get_int(spec, "leaseDurationSeconds", &secs, "spec", err, errlen)) < 0 ||
		    (k = get_int(spec, "leaseTransitions", &r.transitions, "spec", err, errlen)) <
		            0)
			return k;
		r.duration_ms = secs * 1000;
	}

	ann = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
	if (ann && !cJSON_IsNull(ann)) {
		if (!cJSON_IsObject(ann)) {
			errbuf_set(err, errlen, "Lease: metadata.annotations is not an object");
			return -EBADMSG;
		}
		if ((k = get_string(ann, LEASE_ANN_INCARNATION, false, r.incarnation,
		                    sizeof(r.incarnation), "annotations", err, errlen)) < 0 ||
		    (k = get_string(ann, LEASE_ANN_NODE, false, r.node, sizeof(r.node),
		                    "annotations", err, errlen)) < 0 ||
		    (k = get_string(ann, LEASE_ANN_RELEASE_REASON, false, r.release_reason,
		                    sizeof(r.release_reason), "annotations", err, errlen)) < 0 ||
		    (k = get_string(ann, LEASE_ANN_FENCE_OWED, false, r.fence_owed,
		                    sizeof(r.fence_owed), "annotations", err, errlen)) < 0 ||
		    (k = get_string(ann, LEASE_ANN_DURATION, false, dur, sizeof(dur), "annotations",
		                    err, errlen)) < 0)
			return k;
		{
			const cJSON *d =
			        cJSON_GetObjectItemCaseSensitive(ann, LEASE_ANN_RELEASE_DEAD);

			r.release_dead =
			        cJSON_IsString(d) && strcmp(d->valuestring, "confirmed") == 0;
			r.release_unpromoted =
			        cJSON_IsString(d) && strcmp(d->valuestring, "unpromoted") == 0;
		}
		if (dur[0]) {
			char *end;
			long long ms;

			errno = 0;
			ms = strtoll(dur, &end, 10);
			if (errno || *end || end == dur || ms <= 0 || ms > 3600000) {
				errbuf_set(err, errlen,
				           "Lease: annotation %s='%s' is not a duration",
				           LEASE_ANN_DURATION, dur);
				return -EBADMSG;
			}
			r.duration_ms = ms;
		}
	}
	*ret = r;
	return 0;
}

/* ----------------------------------------------------------- fence-owed */

bool lease_owed_next(const char **cursor, char *node, size_t nodelen, char *level, size_t levellen)
{
	const char *p = *cursor, *colon, *end;

	while (*p == ',')
		p++;
	if (!*p)
		return false;
	end = p + strcspn(p, ",");
	colon = memchr(p, ':', (size_t)(end - p));
	snprintf(node, nodelen, "%.*s", (int)((colon ? colon : end) - p), p);
	snprintf(level, levellen, "%.*s", colon ? (int)(end - colon - 1) : 7,
	         colon ? colon + 1 : "expired"); /* no level: the stronger */
	*cursor = end;
	return true;
}

void lease_owed_remove(char *list, const char *node)
{
	char out[LEASE_OWED_MAX] = "", n[254], l[16];
	const char *p = list;
	size_t used = 0;

	while (lease_owed_next(&p, n, sizeof(n), l, sizeof(l)))
		if (strcmp(n, node) != 0)
			used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s:%s",
			                         used ? "," : "", n, l);
	strcpy(list, out);
}

int lease_owed_add(char *list, size_t n, const char *node, const char *level)
{
	char cur[16] = "", name[254], l[16];
	const char *p = list;
	size_t len;

	if (!node[0] || strpbrk(node, ",: ") ||
	    (strcmp(level, "expired") != 0 && strcmp(level, "released") != 0))
		return -EINVAL;
	while (lease_owed_next(&p, name, sizeof(name), l, sizeof(l)))
		if (strcmp(name, node) == 0)
			str_copy(cur, sizeof(cur), l);
	if (strcmp(cur, "expired") == 0 || strcmp(cur, level) == 0)
		return 0; /* already owed, at least as strongly */
	lease_owed_remove(list, node);
	len = strlen(list);
	if (len + (len ? 1 : 0) + strlen(node) + 1 + strlen(level) + 1 > n)
		return -ENOSPC;
	snprintf(list + len, n - len, "%s%s:%s", len ? "," : "", node, level);
	return 0;
}

/* ---------------------------------------------------------------- state */

void lease_config_new_incarnation(struct lease_config *cfg)
{
	uint8_t b[8];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* getrandom() cannot fail for 8 bytes after boot; keep going with
		 * something unique per process anyway. */
		uint64_t x = (uint64_t)clock_mono_usec() ^ ((uint64_t)getpid() << 40);
		memcpy(b, &x, sizeof(b));
	}
	snprintf(cfg->incarnation, sizeof(cfg->incarnation), "%02x%02x%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
}

void lease_state_init(struct lease_state *s)
{
	memset(s, 0, sizeof(*s));
}

void lease_state_done(struct lease_state *s)
{
	cJSON_Delete(s->obj);
	s->obj = NULL;
}

int lease_state_observe(struct lease_state *s, const cJSON *obj, usec_t now, char *err,
                        size_t errlen)
{
	struct lease_record r;
	cJSON *copy;
	bool changed;
	int k;

	if (!obj) {
		changed = !s->have_record || !s->absent;
		cJSON_Delete(s->obj);
		s->obj = NULL;
		memset(&s->rec, 0, sizeof(s->rec));
		s->have_record = true;
		s->absent = true;
		if (changed)
			s->observed_at = now;
		return changed;
	}
	k = lease_record_from_json(obj, &r, err, errlen);
	if (k < 0)
		return k;
	if (s->have_record && !s->absent && r.uid[0] && strcmp(r.uid, s->rec.uid) == 0 &&
	    (r.transitions < s->rec.transitions ||
	     (r.transitions == s->rec.transitions && !s->rec.holder[0] && r.holder[0])))
		return 0; /* older than what we hold: a late event */
	copy = cJSON_Duplicate(obj, true);
	if (!copy)
		return -ENOMEM;
	changed = !s->have_record || s->absent ||
	          strcmp(s->rec.resource_version, r.resource_version) != 0;
	cJSON_Delete(s->obj);
	s->obj = copy;
	s->rec = r;
	s->have_record = true;
	s->absent = false;
	if (changed)
		s->observed_at = now;
	return changed;
}

static bool held_by_us(const struct lease_config *cfg, const struct lease_record *r)
{
	return strcmp(r->holder, cfg->identity) == 0 &&
	       strcmp(r->incarnation, cfg->incarnation) == 0;
}

enum lease_verdict lease_judge(const struct lease_config *cfg, const struct lease_state *s,
                               usec_t now, usec_t *ret_expires_at)
{
	usec_t duration, expires;

	if (!s->have_record)
		return LEASE_UNKNOWN;
	if (s->absent)
		return LEASE_ABSENT;
	if (s->rec.holder[0] == '\0')
		return LEASE_FREE;
	if (held_by_us(cfg, &s->rec))
		return LEASE_OURS;
	duration = s->rec.duration_ms * USEC_PER_MSEC;
	if (duration < cfg->duration)
		duration = cfg->duration;
	expires = s->observed_at + duration;
	if (now >= expires)
		return LEASE_EXPIRED;
	if (ret_expires_at)
		*ret_expires_at = expires;
	return LEASE_HELD;
}

const char *lease_verdict_to_string(enum lease_verdict v)
{
	switch (v) {
	case LEASE_ABSENT:
		return "absent";
	case LEASE_FREE:
		return "free";
	case LEASE_OURS:
		return "ours";
	case LEASE_HELD:
		return "held";
	case LEASE_EXPIRED:
		return "expired";
	case LEASE_UNKNOWN:
		return "unknown";
	}
	return "invalid";
}

bool lease_state_is_leader(const struct lease_state *s, usec_t now)
{
	return s->leading && now < s->valid_until;
}

/* Get or add an object member. */
static cJSON *obj_child(cJSON *parent, const char *key)
{
	cJSON *c = cJSON_GetObjectItemCaseSensitive(parent, key);

	if (c && cJSON_IsObject(c))
		return c;
	if (c)
		cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
	return cJSON_AddObjectToObject(parent, key);
}

static int obj_set(cJSON *parent, const char *key, cJSON *value)
{
	if (!value)
		return -ENOMEM;
	if (cJSON_GetObjectItemCaseSensitive(parent, key))
		return cJSON_ReplaceItemInObjectCaseSensitive(parent, key, value) ? 0 : -ENOMEM;
	return cJSON_AddItemToObject(parent, key, value) ? 0 : -ENOMEM;
}

/* The fence-owed list a term started on the observed record would carry:
 * what the record owes, plus the previous holder's node (released only when
 * it gave the Lease up with its service confirmed dead, expired otherwise,
 * nothing when it promoted no service), never our own node.  -ENOSPC when
 * the list is full. */
static int owed_after_acquire(const struct lease_config *cfg, const struct lease_state *s,
                              char *owed, size_t n)
{
	const char *self = cfg->node[0] ? cfg->node : cfg->identity;
	const char *prev = s->rec.node[0] ? s->rec.node : s->rec.holder;
	bool own_record = strcmp(s->rec.holder, cfg->identity) == 0 &&
	                  strcmp(s->rec.incarnation, cfg->incarnation) == 0;
	bool released = !s->rec.holder[0];
	int k = 0;

	str_copy(owed, n, s->rec.fence_owed);
	/* the lighter fence only after a release whose service was confirmed
	 * dead; any other release may leave it serving; a release that says
	 * its term promoted nothing owes nothing */
	if (prev[0] && !own_record && !(released && s->rec.release_unpromoted))
		k = lease_owed_add(owed, n, prev,
		                   released && s->rec.release_dead ? "released" : "expired");
	if (k == -ENOSPC)
		return k;
	/* Our own node's entry stays: a node never fences itself (the term
	 * skips it), but a service of an earlier incarnation here may still
	 * serve, and only the settle of a term with a service of ours
	 * connected (elector_fence_settled, keep_self false) answers for it;
	 * otherwise it goes on to the successor. */
	(void)self;
	return 0;
}

/* The entries of `list` for `node` only (keep) or none of them. */
static void owed_filter_node(char *list, size_t n, const char *node, bool keep)
{
	char out[LEASE_OWED_MAX] = "", name[254], level[32];
	const char *cur = list;

	while (lease_owed_next(&cur, name, sizeof(name), level, sizeof(level)))
		if (keep && node[0] && strcmp(name, node) == 0)
			(void)lease_owed_add(out, sizeof(out), name, level);
	str_copy(list, n, out);
}

/* Settle: what fence-owed becomes (the holder's own entries when kept). */
static int settle_owed(const struct lease_state *s, cJSON *ann)
{
	char left[LEASE_OWED_MAX];

	str_copy(left, sizeof(left), s->rec.fence_owed);
	owed_filter_node(left, sizeof(left), s->rec.node, s->settle_keep_self);
	if (!left[0]) {
		cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_FENCE_OWED);
		return 0;
	}
	return obj_set(ann, LEASE_ANN_FENCE_OWED, cJSON_CreateString(left));
}

bool lease_acquire_owes_expired(const struct lease_config *cfg, const struct lease_state *s,
                                char *node, size_t nodelen)
{
	char owed[LEASE_OWED_MAX], n[254], level[32];
	const char *cur = owed;

	if (!s->have_record || s->absent || !s->obj)
		return false;
	if (owed_after_acquire(cfg, s, owed, sizeof(owed)) < 0)
		str_copy(owed, sizeof(owed), s->rec.fence_owed); /* full: what it says */
	while (lease_owed_next(&cur, n, sizeof(n), level, sizeof(level)))
		if (strcmp(level, "expired") == 0 &&
		    strcmp(n, cfg->node[0] ? cfg->node : cfg->identity) != 0) {
			if (node)
				str_copy(node, nodelen, n);
			return true;
		}
	return false;
}

cJSON *lease_build_acquire(const struct lease_config *cfg, const struct lease_state *s,
                           const char *ns, const char *name, usec_t wall)
{
	cJSON *o, *meta, *spec, *ann;
	char t[32], dur[32], owed[LEASE_OWED_MAX] = "";
	int64_t secs = (cfg->duration + USEC_PER_SEC - 1) / USEC_PER_SEC;
	int64_t transitions = s->absent || !s->obj ? 1 : s->rec.transitions + 1;

	/* The duty to fence goes into the very update that starts the term. */
	if (s->obj && !s->absent && owed_after_acquire(cfg, s, owed, sizeof(owed)) < 0)
		return NULL;

	if (s->obj && !s->absent) {
		o = cJSON_Duplicate(s->obj, true);
	} else {
		o = cJSON_CreateObject();
		if (o && (!cJSON_AddStringToObject(o, "apiVersion", LEASE_GV) ||
		          !cJSON_AddStringToObject(o, "kind", "Lease"))) {
			cJSON_Delete(o);
			o = NULL;
		}
	}
	if (!o)
		return NULL;
	clock_format_microtime(wall, t);
	snprintf(dur, sizeof(dur), "%" PRId64, (int64_t)(cfg->duration / USEC_PER_MSEC));

	meta = obj_child(o, "metadata");
	spec = obj_child(o, "spec");
	ann = meta ? obj_child(meta, "annotations") : NULL;
	if (!meta || !spec || !ann || obj_set(meta, "name", cJSON_CreateString(name)) < 0 ||
	    obj_set(meta, "namespace", cJSON_CreateString(ns)) < 0 ||
	    obj_set(ann, LEASE_ANN_DURATION, cJSON_CreateString(dur)) < 0 ||
	    obj_set(ann, LEASE_ANN_INCARNATION, cJSON_CreateString(cfg->incarnation)) < 0 ||
	    obj_set(ann, LEASE_ANN_NODE,
	            cJSON_CreateString(cfg->node[0] ? cfg->node : cfg->identity)) < 0 ||
	    obj_set(spec, "holderIdentity", cJSON_CreateString(cfg->identity)) < 0 ||
	    obj_set(spec, "leaseDurationSeconds", cJSON_CreateNumber((double)secs)) < 0 ||
	    obj_set(spec, "acquireTime", cJSON_CreateString(t)) < 0 ||
	    obj_set(spec, "renewTime", cJSON_CreateString(t)) < 0 ||
	    obj_set(spec, "leaseTransitions", cJSON_CreateNumber((double)transitions)) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_RELEASE_REASON);
	cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_RELEASE_DEAD);
	if (!owed[0])
		cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_FENCE_OWED);
	else if (obj_set(ann, LEASE_ANN_FENCE_OWED, cJSON_CreateString(owed)) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *lease_build_renew(const struct lease_state *s, usec_t wall)
{
	cJSON *o, *spec;
	char t[32];

	if (!s->obj)
		return NULL;
	o = cJSON_Duplicate(s->obj, true);
	if (!o)
		return NULL;
	clock_format_microtime(wall, t);
	spec = obj_child(o, "spec");
	if (!spec || obj_set(spec, "renewTime", cJSON_CreateString(t)) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	if (s->settle_fence) {
		cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "metadata");
		cJSON *ann = meta ? cJSON_GetObjectItemCaseSensitive(meta, "annotations") : NULL;

		if (ann && settle_owed(s, ann) < 0) {
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

/* The record's duration, both ways it is read: whole seconds in the spec
 * (rounded up, for clients that read only that) and exact milliseconds in
 * the annotation. */
static int set_duration(cJSON *o, usec_t duration)
{
	cJSON *spec = obj_child(o, "spec"), *meta = obj_child(o, "metadata");
	cJSON *ann = meta ? obj_child(meta, "annotations") : NULL;
	int64_t ms = (int64_t)(duration / USEC_PER_MSEC);
	char dur[32];

	snprintf(dur, sizeof(dur), "%" PRId64, ms);
	if (!spec || !ann ||
	    obj_set(spec, "leaseDurationSeconds", cJSON_CreateNumber((double)((ms + 999) / 1000))) <
	            0 ||
	    obj_set(ann, LEASE_ANN_DURATION, cJSON_CreateString(dur)) < 0)
		return -ENOMEM;
	return 0;
}

cJSON *lease_build_parting(const struct lease_state *s, usec_t wall, usec_t duration)
{
	cJSON *o = lease_build_renew(s, wall);

	if (o && set_duration(o, duration) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *lease_build_release(const struct lease_state *s, const char *reason, usec_t wall)
{
	cJSON *o, *spec, *meta, *ann;
	char t[32];
	/* Bounded so that every reader can parse the record back. */
	char bounded[sizeof(((struct lease_record *)0)->release_reason)];

	snprintf(bounded, sizeof(bounded), "%s", reason ? reason : "");

	if (!s->obj)
		return NULL;
	o = cJSON_Duplicate(s->obj, true);
	if (!o)
		return NULL;
	clock_format_microtime(wall, t);
	meta = obj_child(o, "metadata");
	spec = obj_child(o, "spec");
	ann = meta ? obj_child(meta, "annotations") : NULL;
	if (!spec || !ann || obj_set(spec, "holderIdentity", cJSON_CreateString("")) < 0 ||
	    obj_set(spec, "leaseDurationSeconds", cJSON_CreateNumber(1)) < 0 ||
	    obj_set(spec, "renewTime", cJSON_CreateString(t)) < 0 ||
	    obj_set(ann, LEASE_ANN_RELEASE_REASON, cJSON_CreateString(bounded)) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_INCARNATION);
	if (s->settle_fence && settle_owed(s, ann) < 0) { /* discharged: not handed on */
		cJSON_Delete(o);
		return NULL;
	}
	if (!s->release_dead && !s->release_unpromoted)
		cJSON_DeleteItemFromObjectCaseSensitive(ann, LEASE_ANN_RELEASE_DEAD);
	else if (obj_set(ann, LEASE_ANN_RELEASE_DEAD,
	                 cJSON_CreateString(s->release_unpromoted ? "unpromoted" : "confirmed")) <
	         0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int lease_state_won(struct lease_state *s, const struct lease_config *cfg, const cJSON *obj,
                    usec_t started, usec_t now, char *err, size_t errlen)
{
	int k = lease_state_observe(s, obj, now, err, errlen);

	if (k < 0)
		return k;
	if (!held_by_us(cfg, &s->rec)) {
		errbuf_set(err, errlen, "the server's answer names holder '%s', not us",
		           s->rec.holder);
		s->leading = false;
		return -EBADMSG;
	}
	s->leading = true;
	s->epoch = s->rec.transitions;
	s->valid_until = started + cfg->renew_deadline;
	return 0;
}

/* ------------------------------------------------------------------ I/O */

int lease_fetch(struct k8s_client *c, const char *ns, const char *name, struct lease_state *s,
                long timeout_ms, char *err, size_t errlen)
{
	char path[512];
	cJSON *obj = NULL;
	usec_t now;
	int r;

	r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", name);
	if (r < 0)
		return r;
	r = k8s_get(c, path, timeout_ms, &obj, err, errlen);
	now = clock_mono_usec();
	if (r == -ENOENT)
		r = lease_state_observe(s, NULL, now, err, errlen);
	else if (r >= 0)
		r = lease_state_observe(s, obj, now, err, errlen);
	cJSON_Delete(obj);
	return r < 0 ? r : 0;
}

/* A fault point after a write was answered: an error there stands for the
 * answer being lost on its way back, so the write landed but the caller
 * only learns `fp`.  Returns fp (0: nothing happened). */
static int lost_response(int fp, cJSON **got, char *err, size_t errlen)
{
	if (fp < 0) {
		cJSON_Delete(*got);
		*got = NULL;
		errbuf_set(err, errlen, "fault point: the answer was lost: %s", strerror(-fp));
	}
	return fp;
}

int lease_acquire(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, long timeout_ms, char *err,
                  size_t errlen)
{
	enum lease_verdict v;
	char path[512];
	cJSON *want = NULL, *got = NULL;
	usec_t started = clock_mono_usec();
	int r;

	v = lease_judge(cfg, s, started, NULL);
	if (v == LEASE_HELD || v == LEASE_UNKNOWN) {
		errbuf_set(err, errlen, "the Lease is %s", lease_verdict_to_string(v));
		return -EBUSY;
	}
	want = lease_build_acquire(cfg, s, ns, name, clock_real_usec());
	if (!want)
		return -ENOMEM;
	r = FAILPOINT(LEASE_ACQUIRE_BEFORE_SEND);
	if (r < 0)
		errbuf_set(err, errlen, "fault point: %s", strerror(-r));
	else if (v == LEASE_ABSENT) {
		r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", NULL);
		if (r >= 0)
			r = k8s_create(c, path, want, timeout_ms, &got, err, errlen);
	} else {
		r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", name);
		if (r >= 0)
			r = k8s_update(c, path, want, timeout_ms, &got, err, errlen);
	}
	if (r >= 0)
		r = lost_response(FAILPOINT(LEASE_ACQUIRE_AFTER_SEND), &got, err, errlen);
	if (r >= 0) {
		r = lease_state_won(s, cfg, got, started, clock_mono_usec(), err, errlen);
		s->settle_fence = false; /* a new term owes what its record says */
		s->settle_keep_self = false;
	} else if (r == -ESTALE || r == -EEXIST) {
		/* Someone else wrote first: learn what they wrote.  The error the
		 * caller sees stays the race, not the refresh's outcome. */
		(void)lease_fetch(c, ns, name, s, timeout_ms, NULL, 0);
	}
	cJSON_Delete(want);
	cJSON_Delete(got);
	return r;
}

bool lease_succession_possible(const struct lease_config *cfg, const struct lease_state *s)
{
	return s->have_record && !s->absent && s->obj && s->rec.holder[0] && cfg->node[0] &&
	       strcmp(s->rec.node, cfg->node) == 0 &&
	       strcmp(s->rec.incarnation, cfg->incarnation) != 0;
}

int lease_succeed(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, long timeout_ms, char *err,
                  size_t errlen)
{
	cJSON *want, *got = NULL, *meta, *spec, *ann;
	usec_t started = clock_mono_usec();
	char path[512], t[32];
	int r;

	if (!lease_succession_possible(cfg, s)) {
		errbuf_set(err, errlen, "the Lease is not held by a predecessor on this node");
		return -EBUSY;
	}
	want = cJSON_Duplicate(s->obj, true); /* its resourceVersion: conditional */
	if (!want)
		return -ENOMEM;
	clock_format_microtime(clock_real_usec(), t);
	meta = obj_child(want, "metadata");
	spec = obj_child(want, "spec");
	ann = meta ? obj_child(meta, "annotations") : NULL;
	if (!meta || !spec || !ann ||
	    obj_set(ann, LEASE_ANN_INCARNATION, cJSON_CreateString(cfg->incarnation)) < 0 ||
	    obj_set(spec, "holderIdentity", cJSON_CreateString(cfg->identity)) < 0 ||
	    obj_set(spec, "renewTime", cJSON_CreateString(t)) < 0 ||
	    /* the lease's own duration again, after a predecessor's parting one */
	    set_duration(want, cfg->duration) < 0) {
		cJSON_Delete(want);
		return -ENOMEM;
	}
	r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", name);
	if (r >= 0)
		r = k8s_update(c, path, want, timeout_ms, &got, err, errlen);
	if (r >= 0) {
		r = lease_state_won(s, cfg, got, started, clock_mono_usec(), err, errlen);
		s->settle_fence = false; /* the duty stays what the record says */
		s->settle_keep_self = false;
	} else if (r == -ESTALE || r == -EEXIST) {
		(void)lease_fetch(c, ns, name, s, timeout_ms, NULL, 0);
	}
	cJSON_Delete(want);
	cJSON_Delete(got);
	return r;
}

/* A renewal; with `parting` (non-zero) the parting one of that duration. */
static int renew(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                 const char *name, struct lease_state *s, usec_t parting, long timeout_ms,
                 char *err, size_t errlen)
{
	char path[512];
	cJSON *want = NULL, *got = NULL;
	usec_t started = clock_mono_usec();
	int r;

	if (!s->leading || !held_by_us(cfg, &s->rec)) {
		s->leading = false;
		errbuf_set(err, errlen, "not the holder");
		return -ENOLCK;
	}
	r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", name);
	if (r < 0)
		return r;
	want = parting ? lease_build_parting(s, clock_real_usec(), parting)
	               : lease_build_renew(s, clock_real_usec());
	if (!want)
		return -ENOMEM;
	r = FAILPOINT(LEASE_RENEW_BEFORE_SEND);
	if (r < 0)
		errbuf_set(err, errlen, "fault point: %s", strerror(-r));
	else
		r = k8s_update(c, path, want, timeout_ms, &got, err, errlen);
	if (r >= 0)
		r = lost_response(FAILPOINT(LEASE_RENEW_AFTER_SEND), &got, err, errlen);
	if (r >= 0) {
		r = lease_state_won(s, cfg, got, started, clock_mono_usec(), err, errlen);
		if (r >= 0 && parting)
			s->valid_until =
			        started + (usec_t)((double)parting * (double)cfg->renew_deadline /
			                           (double)cfg->duration);
		if (r >= 0 && s->settle_fence) {
			char left[LEASE_OWED_MAX];

			/* what the settle leaves is all that is left */
			str_copy(left, sizeof(left), s->rec.fence_owed);
			owed_filter_node(left, sizeof(left), s->rec.node, s->settle_keep_self);
			if (strcmp(left, s->rec.fence_owed) == 0)
				s->settle_fence = false; /* the duty is off the Lease */
		}
	} else if (r == -ESTALE || r == -ENOENT) {
		/* The record changed under us.  If it still names this incarnation
		 * (our own earlier write landed after a timeout) the next renew
		 * uses the fresh resourceVersion; otherwise we have lost it. */
		int k = lease_fetch(c, ns, name, s, timeout_ms, NULL, 0);
		if (k >= 0 && (s->absent || !held_by_us(cfg, &s->rec))) {
			s->leading = false;
			errbuf_set(err, errlen, "the Lease now names holder '%s'",
			           s->absent ? "(deleted)" : s->rec.holder);
			r = -ENOLCK;
		}
	}
	cJSON_Delete(want);
	cJSON_Delete(got);
	return r;
}

int lease_renew(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                const char *name, struct lease_state *s, long timeout_ms, char *err, size_t errlen)
{
	return renew(c, cfg, ns, name, s, 0, timeout_ms, err, errlen);
}

int lease_renew_parting(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                        const char *name, struct lease_state *s, usec_t duration, long timeout_ms,
                        char *err, size_t errlen)
{
	if (duration < cfg->duration) {
		errbuf_set(err, errlen, "a parting renewal may not shorten the lease");
		return -EINVAL;
	}
	return renew(c, cfg, ns, name, s, duration, timeout_ms, err, errlen);
}

int lease_release(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, const char *reason, long timeout_ms,
                  char *err, size_t errlen)
{
	char path[512];
	cJSON *want = NULL, *got = NULL;
	int r;

	/* Whatever happens below, we stop acting as leader now. */
	s->leading = false;
	if (!s->have_record || s->absent || !held_by_us(cfg, &s->rec)) {
		errbuf_set(err, errlen, "not the holder");
		return -ENOLCK;
	}
	r = k8s_path(path, sizeof(path), LEASE_GV, ns, "leases", name);
	if (r < 0)
		return r;
	want = lease_build_release(s, reason, clock_real_usec());
	if (!want)
		return -ENOMEM;
	r = FAILPOINT(LEASE_RELEASE_BEFORE_SEND);
	if (r < 0)
		errbuf_set(err, errlen, "fault point: %s", strerror(-r));
	else
		r = k8s_update(c, path, want, timeout_ms, &got, err, errlen);
	if (r >= 0)
		r = lost_response(FAILPOINT(LEASE_RELEASE_AFTER_SEND), &got, err, errlen);
	if (r >= 0)
		r = lease_state_observe(s, got, clock_mono_usec(), err, errlen);
	cJSON_Delete(want);
	cJSON_Delete(got);
	return r < 0 ? r : 0;
}
