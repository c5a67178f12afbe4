/* events: a bounded queue of core/v1 Events and the thread that posts them;
 * see events.h.  The agent's threads only ever take `lock` to append a
 * pointer; the sender takes it to pop one and to update the counters, and
 * does the network I/O (and the logging) without it. */
#include "config.h"

#include "nodeagent/events.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "lib/clock.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/metrics.h"

/* Distinct errors remembered as logged until a post succeeds again. */
#define LOGGED_MAX   8
#define NAME_MAX_LEN 253

struct item {
	cJSON *event;
	char path[256]; /* the events collection of the Event's namespace */
};

struct events {
	struct k8s_client *client;
	char *node, *component;
	long timeout_ms;
	struct metrics *metrics;

	pthread_mutex_t lock;
	pthread_cond_t wake; /* the sender: an item or a stop */
	pthread_cond_t idle; /* events_flush(): queue empty, nothing in flight */
	struct item *ring;
	size_t cap, head, count;
	bool busy, stopping, thread_started;
	usec_t drain_deadline;
	uint64_t seq;
	bool full_unlogged; /* a queue-full drop the sender has yet to report */
	struct events_stats stats;
	pthread_t thread;

	/* Sender thread only. */
	int logged[LOGGED_MAX];
	size_t n_logged;
	uint64_t dropped_at_ok; /* drops counted at the last success */
};

static const struct {
	const char *reason, *type;
} reasons[_EVENTS_REASON_MAX] = {
        [EVENTS_FENCED] = {"Fenced", "Normal"},
        [EVENTS_FENCE_FAILED] = {"FenceFailed", "Warning"},
        [EVENTS_PROMOTED] = {"Promoted", "Normal"},
        [EVENTS_DEMOTED] = {"Demoted", "Warning"},
        [EVENTS_RELEASED] = {"Released", "Normal"},
        [EVENTS_RESERVATION_RESTORED] = {"ReservationRestored", "Warning"},
        [EVENTS_CONFIG_RELOADED] = {"ConfigReloaded", "Normal"},
        [EVENTS_CONFIG_REFUSED] = {"ConfigRefused", "Warning"},
};

const char *events_reason_to_string(enum events_reason r)
{
	return (unsigned)r < _EVENTS_REASON_MAX ? reasons[r].reason : NULL;
}

const char *events_reason_type(enum events_reason r)
{
	return (unsigned)r < _EVENTS_REASON_MAX ? reasons[r].type : NULL;
}

/* ---------------------------------------------------------------- sender */

/* Log err once per distinct value until a post succeeds; the first drop of
 * each kind says that further ones are only counted. */
static void note_failure(struct events *e, int r, const char *what)
{
	for (size_t i = 0; i < e->n_logged; i++)
		if (e->logged[i] == r)
			return;
	if (e->n_logged < LOGGED_MAX)
		e->logged[e->n_logged++] = r;
	log_warning("%s; Event dropped (further drops for this reason are counted in "
	            "kubefence_events_dropped_total, not logged)",
	            what);
}

static void note_success(struct events *e)
{
	uint64_t dropped;

	pthread_mutex_lock(&e->lock);
	dropped = e->stats.dropped_full + e->stats.dropped_failed;
	pthread_mutex_unlock(&e->lock);
	if (e->n_logged > 0)
		log_info("posting Events works again (%" PRIu64 " dropped meanwhile)",
		         dropped - e->dropped_at_ok);
	e->n_logged = 0;
	e->dropped_at_ok = dropped;
}

static void post_one(struct events *e, struct item *it)
{
	char err[1024] = "", what[1200];
	int r;

	r = k8s_create(e->client, it->path, it->event, e->timeout_ms, NULL, err, sizeof(err));
	pthread_mutex_lock(&e->lock);
	if (r >= 0) {
		e->stats.posted++;
	} else {
		e->stats.dropped_failed++;
		e->stats.last_error = r;
	}
	pthread_mutex_unlock(&e->lock);

	if (r >= 0) {
		metrics_event_posted(e->metrics);
		note_success(e);
		return;
	}
	/* An answer from the API (RBAC, validation) vs no answer in time. */
	metrics_event_dropped(e->metrics, k8s_error_is_retryable(r) ? METRICS_EVENT_DROP_FAILED
	                                                            : METRICS_EVENT_DROP_REFUSED);
	/* the failed POST itself is counted by the client's error hook
	 * (metrics_watch_api) with every other failed request */
	snprintf(what, sizeof(what), "posting Event '%s' failed: %s",
	         cJSON_GetStringValue(cJSON_GetObjectItem(it->event, "reason")),
	         *err ? err : strerror(-r));
	note_failure(e, r, what);
}

static void *sender(void *arg)
{
	struct events *e = arg;
	struct item it;
	bool full;

	pthread_mutex_lock(&e->lock);
	for (;;) {
		while (e->count == 0 && !e->stopping && !e->full_unlogged)
			pthread_cond_wait(&e->wake, &e->lock);
		full = e->full_unlogged;
		e->full_unlogged = false;
		if (full) {
			size_t cap = e->cap;

			pthread_mutex_unlock(&e->lock);
			char what[160];
			snprintf(what, sizeof(what), "the Event queue is full (%zu queued)", cap);
			note_failure(e, -ENOBUFS, what);
			pthread_mutex_lock(&e->lock);
			continue;
		}
		if (e->count == 0)
			break; /* stopping, and nothing left */
		if (e->stopping && clock_mono_usec() >= e->drain_deadline)
			break; /* the rest is dropped by events_stop() */
		it = e->ring[e->head];
		e->head = (e->head + 1) % e->cap;
		e->count--;
		e->busy = true;
		pthread_mutex_unlock(&e->lock);

		post_one(e, &it);
		cJSON_Delete(it.event);

		pthread_mutex_lock(&e->lock);
		e->busy = false;
		if (e->count == 0)
			pthread_cond_broadcast(&e->idle);
	}
	e->busy = false;
	pthread_cond_broadcast(&e->idle);
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

/* ---------------------------------------------------------------- public */

static struct events *events_free(struct events *e)
{
	if (!e)
		return NULL;
	for (size_t i = 0; i < e->count; i++)
		cJSON_Delete(e->ring[(e->head + i) % e->cap].event);
	free(e->ring);
	free(e->node);
	free(e->component);
	pthread_cond_destroy(&e->wake);
	pthread_cond_destroy(&e->idle);
	pthread_mutex_destroy(&e->lock);
	free(e);
	return NULL;
}

int events_start(const struct events_options *o, struct events **ret, char *err, size_t errlen)
{
	struct events *e = NULL;
	pthread_condattr_t ca;
	int r;

	if (!o->client) {
		errbuf_set(err, errlen, "events: no API client");
		return -EINVAL;
	}
	if (!o->node || !*o->node) {
		errbuf_set(err, errlen, "events: the node name (source.host) is required");
		return -EINVAL;
	}
	if (o->queue_len > EVENTS_QUEUE_MAX) {
		errbuf_set(err, errlen, "events: queue length %zu is over the maximum %d",
		           o->queue_len, EVENTS_QUEUE_MAX);
		return -EINVAL;
	}
	if (o->timeout_ms < 0) {
		errbuf_set(err, errlen, "events: timeout %ld ms is negative", o->timeout_ms);
		return -EINVAL;
	}

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &ca);
	pthread_cond_init(&e->idle, &ca);
	pthread_condattr_destroy(&ca);
	e->client = o->client;
	e->metrics = o->metrics;
	e->timeout_ms = o->timeout_ms ? o->timeout_ms : EVENTS_TIMEOUT_MS_DEFAULT;
	e->cap = o->queue_len ? o->queue_len : EVENTS_QUEUE_DEFAULT;
	e->ring = calloc(e->cap, sizeof(*e->ring));
	e->node = strdup(o->node);
	e->component = strdup(o->component ? o->component : EVENTS_COMPONENT);
	if (!e->ring || !e->node || !e->component) {
		r = -ENOMEM;
		goto out;
	}
	r = -pthread_create(&e->thread, NULL, sender, e);
	if (r < 0) {
		errbuf_set(err, errlen, "events: cannot start the sender thread: %s", strerror(-r));
		goto out;
	}
	e->thread_started = true;
	*ret = e;
	e = NULL;
out:
	events_free(e);
	return r;
}

static void format_time(usec_t t, char buf[static 32])
{
	time_t sec = (time_t)(t / USEC_PER_SEC);
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Build the Event; returns NULL on a bad object or out of memory. */
static cJSON *build_event(struct events *e, const struct events_object *obj,
                          enum events_reason reason, const char *message, const char *ns,
                          uint64_t seq)
{
	usec_t now = clock_real_usec();
	char name[NAME_MAX_LEN + 1], ts[32];
	cJSON *ev = NULL, *meta, *io, *src;
	size_t nlen = strlen(obj->name);

	/* client-go's scheme, NAME.<hex nanoseconds>; the low digits carry a
	 * per-process sequence so two Events in one microsecond differ. */
	if (nlen > NAME_MAX_LEN - 17)
		nlen = NAME_MAX_LEN - 17;
	snprintf(name, sizeof(name), "%.*s.%" PRIx64, (int)nlen, obj->name,
	         (uint64_t)now * 1000 + seq % 1000);
	format_time(now, ts);

	ev = cJSON_CreateObject();
	if (!ev)
		return NULL;
	cJSON_AddStringToObject(ev, "apiVersion", "v1");
	cJSON_AddStringToObject(ev, "kind", "Event");
	meta = cJSON_AddObjectToObject(ev, "metadata");
	if (meta) {
		cJSON_AddStringToObject(meta, "name", name);
		cJSON_AddStringToObject(meta, "namespace", ns);
	}
	io = cJSON_AddObjectToObject(ev, "involvedObject");
	if (io) {
		cJSON_AddStringToObject(io, "apiVersion", obj->api_version);
		cJSON_AddStringToObject(io, "kind", obj->kind);
		if (obj->namespace)
			cJSON_AddStringToObject(io, "namespace", obj->namespace);
		cJSON_AddStringToObject(io, "name", obj->name);
		if (obj->uid && *obj->uid)
			cJSON_AddStringToObject(io, "uid", obj->uid);
	}
	cJSON_AddStringToObject(ev, "reason", reasons[reason].reason);
	cJSON_AddStringToObject(ev, "type", reasons[reason].type);
	cJSON_AddStringToObject(ev, "message", message);
	src = cJSON_AddObjectToObject(ev, "source");
	if (src) {
		cJSON_AddStringToObject(src, "component", e->component);
		cJSON_AddStringToObject(src, "host", e->node);
	}
	cJSON_AddStringToObject(ev, "firstTimestamp", ts);
	cJSON_AddStringToObject(ev, "lastTimestamp", ts);
	cJSON_AddNumberToObject(ev, "count", 1);
	cJSON_AddStringToObject(ev, "reportingComponent", e->component);
	cJSON_AddStringToObject(ev, "reportingInstance", e->node);
	/* cJSON's Add* return NULL on allocation failure; check once at the
	 * end rather than after each. */
	if (!meta || !io || !src || !cJSON_GetObjectItem(ev, "reportingInstance") ||
	    !cJSON_GetObjectItem(meta, "namespace") || !cJSON_GetObjectItem(io, "name") ||
	    !cJSON_GetObjectItem(src, "host")) {
		cJSON_Delete(ev);
		return NULL;
	}
	return ev;
}

int events_post(struct events *e, const struct events_object *obj, enum events_reason reason,
                const char *fmt, ...)
{
	const char *ns = obj && obj->namespace && *obj->namespace ? obj->namespace : "default";
	char message[EVENTS_MESSAGE_MAX], path[256];
	cJSON *ev = NULL;
	uint64_t seq;
	va_list ap;
	int r;

	if (!e || !obj || !obj->api_version || !*obj->api_version || !obj->kind || !*obj->kind ||
	    !obj->name || !*obj->name || (unsigned)reason >= _EVENTS_REASON_MAX || !fmt)
		return -EINVAL;
	r = k8s_path(path, sizeof(path), "v1", ns, "events", NULL);
	if (r < 0)
		return r == -ENAMETOOLONG ? -EINVAL : r;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&e->lock);
	seq = e->seq++;
	pthread_mutex_unlock(&e->lock);
	ev = build_event(e, obj, reason, message, ns, seq);
	if (!ev)
		return -ENOMEM;

	pthread_mutex_lock(&e->lock);
	if (e->stopping) {
		r = -ESHUTDOWN;
	} else if (e->count == e->cap) {
		e->stats.dropped_full++;
		e->full_unlogged = true;
		pthread_cond_signal(&e->wake);
		r = -ENOBUFS;
	} else {
		struct item *it = &e->ring[(e->head + e->count) % e->cap];

		it->event = ev;
		memcpy(it->path, path, sizeof(path));
		ev = NULL;
		e->count++;
		e->stats.queued++;
		pthread_cond_signal(&e->wake);
		r = 0;
	}
	pthread_mutex_unlock(&e->lock);
	if (r == -ENOBUFS)
		metrics_event_dropped(e->metrics, METRICS_EVENT_DROP_QUEUE_FULL);
	cJSON_Delete(ev);
	return r;
}

void events_stats(struct events *e, struct events_stats *ret)
{
	pthread_mutex_lock(&e->lock);
	*ret = e->stats;
	pthread_mutex_unlock(&e->lock);
}

static struct timespec deadline_ts(usec_t deadline)
{
	return (struct timespec){
	        .tv_sec = (time_t)(deadline / USEC_PER_SEC),
	        .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};
}

int events_flush(struct events *e, long timeout_ms)
{
	struct timespec ts = deadline_ts(clock_mono_usec() + (usec_t)timeout_ms * USEC_PER_MSEC);
	int r = 0;

	pthread_mutex_lock(&e->lock);
	while ((e->count > 0 || e->busy) && r == 0)
		if (pthread_cond_timedwait(&e->idle, &e->lock, &ts) == ETIMEDOUT)
			r = -ETIMEDOUT;
	if (r == -ETIMEDOUT && e->count == 0 && !e->busy)
		r = 0;
	pthread_mutex_unlock(&e->lock);
	return r;
}

struct events *events_stop(struct events *e, long drain_ms)
{
	uint64_t left;

	if (!e)
		return NULL;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	e->drain_deadline =
	        clock_mono_usec() + (usec_t)(drain_ms > 0 ? drain_ms : 0) * USEC_PER_MSEC;
	pthread_cond_broadcast(&e->wake);
	pthread_mutex_unlock(&e->lock);
	if (e->thread_started)
		(void)pthread_join(e->thread, NULL);

	left = e->count;
	if (left > 0) {
		e->stats.dropped_stop += left;
		for (uint64_t i = 0; i < left; i++)
			metrics_event_dropped(e->metrics, METRICS_EVENT_DROP_SHUTDOWN);
		log_warning("stopping: %" PRIu64 " queued Event(s) dropped", left);
	}
	return events_free(e);
}
