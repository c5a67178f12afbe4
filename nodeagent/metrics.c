/* metrics: the registry and the text exposition of the agent's Prometheus
 * metrics; see metrics.h.  Values are doubles under one mutex per registry:
 * the agent records a few events a second at most, so contention is nil,
 * and rendering copies nothing but the text it writes. */
#include "config.h"

#include "nodeagent/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/k8s.h"
#include "lib/util.h"

struct series {
	char *label_value; /* NULL in an unlabelled family */
	double value;      /* gauge, counter */
	uint64_t *buckets; /* histogram: n_buckets cumulative-free counts */
	uint64_t count;
	double sum;
};

struct metrics_family {
	struct metrics *owner;
	enum metrics_type type;
	char *name, *help, *label;
	double bounds[METRICS_BUCKETS_MAX];
	size_t n_bounds;
	struct series series[METRICS_SERIES_MAX];
	size_t n_series;
};

struct metrics {
	pthread_mutex_t lock;
	struct metrics_family *families[METRICS_FAMILIES_MAX];
	size_t n_families;
	/* The kubefence families, when made by metrics_agent_new(). */
	struct {
		struct metrics_family *role, *epoch, *transitions, *fence_duration, *fence_failures,
		        *failover_duration, *api_errors, *service_connected, *promotions,
		        *demotions, *events_posted, *events_dropped, *scsi_registered,
		        *scsi_restored, *config_reloads, *config_reload_success, *failsafe_rounds,
		        *failsafe_active, *failsafe_promises;
	} agent;
};

const double metrics_duration_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,  5,     10,   20,  30,   60};
const size_t metrics_duration_buckets_n = ELEMENTSOF(metrics_duration_buckets);

int metrics_new(struct metrics **ret)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	*ret = m;
	return 0;
}

static void family_free(struct metrics_family *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_series; i++) {
		free(f->series[i].label_value);
		free(f->series[i].buckets);
	}
	free(f->name);
	free(f->help);
	free(f->label);
	free(f);
}

struct metrics *metrics_free(struct metrics *m)
{
	if (!m)
		return NULL;
	for (size_t i = 0; i < m->n_families; i++)
		family_free(m->families[i]);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

static bool name_valid(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		             (colon && *p == ':');
		bool digit = *p >= '0' && *p <= '9';

		if (!alpha && !(digit && p != s))
			return false;
	}
	return true;
}

static int series_init(struct metrics_family *f, struct series *s, const char *label_value)
{
	memset(s, 0, sizeof(*s));
	if (label_value) {
		s->label_value = strdup(label_value);
		if (!s->label_value)
			return -ENOMEM;
	}
	if (f->type == METRICS_HISTOGRAM) {
		s->buckets = calloc(f->n_bounds, sizeof(*s->buckets));
		if (!s->buckets) {
			s->label_value = mfree(s->label_value);
			return -ENOMEM;
		}
	}
	return 0;
}

int metrics_register(struct metrics *m, enum metrics_type type, const char *name, const char *help,
                     const char *label, const double *buckets, size_t n_buckets,
                     struct metrics_family **ret)
{
	struct metrics_family *f = NULL;
	int r;

	if (!m || !name_valid(name, true) || !help)
		return -EINVAL;
	if (label && (!name_valid(label, false) || strncmp(label, "__", 2) == 0))
		return -EINVAL;
	if (type == METRICS_HISTOGRAM) {
		if (!buckets || n_buckets == 0 || n_buckets > METRICS_BUCKETS_MAX ||
		    (label && strcmp(label, "le") == 0))
			return -EINVAL;
		for (size_t i = 0; i < n_buckets; i++)
			if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
				return -EINVAL;
	} else if (buckets || n_buckets) {
		return -EINVAL;
	}

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->owner = m;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help);
	f->label = label ? strdup(label) : NULL;
	if (!f->name || !f->help || (label && !f->label)) {
		r = -ENOMEM;
		goto out;
	}
	if (type == METRICS_HISTOGRAM) {
		memcpy(f->bounds, buckets, n_buckets * sizeof(*buckets));
		f->n_bounds = n_buckets;
	}
	if (!label) {
		r = series_init(f, &f->series[0], NULL);
		if (r < 0)
			goto out;
		f->n_series = 1;
	}

	pthread_mutex_lock(&m->lock);
	r = 0;
	for (size_t i = 0; i < m->n_families; i++)
		if (strcmp(m->families[i]->name, name) == 0)
			r = -EEXIST;
	if (r == 0 && m->n_families >= METRICS_FAMILIES_MAX)
		r = -ENOSPC;
	if (r == 0)
		m->families[m->n_families++] = f;
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		goto out;
	if (ret)
		*ret = f;
	f = NULL;
out:
	family_free(f);
	return r;
}

/* The series of label_value, created when missing.  Called locked. */
static int series_get(struct metrics_family *f, const char *label_value, struct series **ret)
{
	int r;

	if (!f->label != !label_value)
		return -EINVAL;
	if (!f->label) {
		*ret = &f->series[0];
		return 0;
	}
	for (size_t i = 0; i < f->n_series; i++)
		if (strcmp(f->series[i].label_value, label_value) == 0) {
			*ret = &f->series[i];
			return 0;
		}
	if (f->n_series >= METRICS_SERIES_MAX)
		return -ENOSPC;
	r = series_init(f, &f->series[f->n_series], label_value);
	if (r < 0)
		return r;
	*ret = &f->series[f->n_series++];
	return 0;
}

enum op { OP_SET, OP_ADD, OP_OBSERVE, OP_DECLARE };

static int record(struct metrics_family *f, const char *label_value, enum op op, double v)
{
	struct series *s;
	int r;

	if (!f)
		return -EINVAL;
	switch (op) {
	case OP_SET:
		if (f->type != METRICS_GAUGE)
			return -EINVAL;
		break;
	case OP_ADD:
		if (f->type == METRICS_HISTOGRAM || isnan(v) ||
		    (f->type == METRICS_COUNTER && v < 0))
			return -EINVAL;
		break;
	case OP_OBSERVE:
		if (f->type != METRICS_HISTOGRAM)
			return -EINVAL;
		break;
	case OP_DECLARE:
		break;
	}

	pthread_mutex_lock(&f->owner->lock);
	r = series_get(f, label_value, &s);
	if (r < 0)
		goto out;
	switch (op) {
	case OP_SET:
		s->value = v;
		break;
	case OP_ADD:
		s->value += v;
		break;
	case OP_OBSERVE:
		/* Stored per bucket; cumulated when rendered.  An observation
		 * above the last bound only counts in +Inf (= count). */
		for (size_t i = 0; i < f->n_bounds; i++)
			if (v <= f->bounds[i]) {
				s->buckets[i]++;
				break;
			}
		s->count++;
		s->sum += v;
		break;
	case OP_DECLARE:
		break;
	}
out:
	pthread_mutex_unlock(&f->owner->lock);
	return r;
}

int metrics_set(struct metrics_family *f, const char *label_value, double v)
{
	return record(f, label_value, OP_SET, v);
}

int metrics_add(struct metrics_family *f, const char *label_value, double delta)
{
	return record(f, label_value, OP_ADD, delta);
}

int metrics_observe(struct metrics_family *f, const char *label_value, double v)
{
	return record(f, label_value, OP_OBSERVE, v);
}

int metrics_declare(struct metrics_family *f, const char *label_value)
{
	return record(f, label_value, OP_DECLARE, 0);
}

int metrics_get(struct metrics_family *f, const char *label_value, double *ret)
{
	int r = -ENOENT;

	if (!f || f->type == METRICS_HISTOGRAM || !f->label != !label_value)
		return -EINVAL;
	pthread_mutex_lock(&f->owner->lock);
	for (size_t i = 0; i < f->n_series; i++) {
		const struct series *s = &f->series[i];

		if (!f->label || strcmp(s->label_value, label_value) == 0) {
			*ret = s->value;
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&f->owner->lock);
	return r;
}

/* ---------------------------------------------------------------- render */

void metrics_format_value(double v, char buf[static 32])
{
	int digits, exp;

	if (isnan(v)) {
		snprintf(buf, 32, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, 32, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/* As Prometheus' own clients (Go's 'g' with the shortest precision):
	 * the fewest significant digits that read back exactly, in exponent
	 * form only below 1e-4 or from 1e6 on; so 60 is "60", not "6e+01". */
	for (digits = 1; digits < 17; digits++) {
		snprintf(buf, 32, "%.*e", digits - 1, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	snprintf(buf, 32, "%.*e", digits - 1, v);
	exp = atoi(strchr(buf, 'e') + 1);
	if (exp < -4 || exp >= 6)
		return;
	snprintf(buf, 32, "%.*f", digits - 1 - exp > 0 ? digits - 1 - exp : 0, v);
}

struct buf {
	char *data;
	size_t len, cap;
	bool oom;
};

static void buf_reserve(struct buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->data = p;
	b->cap = cap;
}

static void buf_putc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	if (b->oom)
		return;
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	size_t n = strlen(s);

	buf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->data + b->len, s, n + 1);
	b->len += n;
}

/* HELP text escapes backslash and newline; a label value also the double
 * quote (exposition format 0.0.4). */
static void buf_put_escaped(struct buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else if (quote && *s == '"')
			buf_puts(b, "\\\"");
		else
			buf_putc(b, *s);
	}
}

/* NAME[SUFFIX]{LABEL="VALUE"[,le="LE"]} VALUE\n */
static void put_sample(struct buf *b, const struct metrics_family *f, const char *suffix,
                       const struct series *s, const char *le, double v)
{
	char num[32];

	buf_puts(b, f->name);
	buf_puts(b, suffix);
	if (f->label || le) {
		buf_putc(b, '{');
		if (f->label) {
			buf_puts(b, f->label);
			buf_puts(b, "=\"");
			buf_put_escaped(b, s->label_value, true);
			buf_putc(b, '"');
		}
		if (le) {
			buf_puts(b, f->label ? ",le=\"" : "le=\"");
			buf_puts(b, le);
			buf_putc(b, '"');
		}
		buf_putc(b, '}');
	}
	buf_putc(b, ' ');
	metrics_format_value(v, num);
	buf_puts(b, num);
	buf_putc(b, '\n');
}

static void render_family(struct buf *b, const struct metrics_family *f)
{
	static const char *const type_names[] = {
	        [METRICS_GAUGE] = "gauge",
	        [METRICS_COUNTER] = "counter",
	        [METRICS_HISTOGRAM] = "histogram",
	};
	char le[32];

	buf_puts(b, "# HELP ");
	buf_puts(b, f->name);
	buf_putc(b, ' ');
	buf_put_escaped(b, f->help, false);
	buf_puts(b, "\n# TYPE ");
	buf_puts(b, f->name);
	buf_putc(b, ' ');
	buf_puts(b, type_names[f->type]);
	buf_putc(b, '\n');
	for (size_t i = 0; i < f->n_series; i++) {
		const struct series *s = &f->series[i];
		uint64_t cum = 0;

		if (f->type != METRICS_HISTOGRAM) {
			put_sample(b, f, "", s, NULL, s->value);
			continue;
		}
		for (size_t j = 0; j < f->n_bounds; j++) {
			cum += s->buckets[j];
			metrics_format_value(f->bounds[j], le);
			put_sample(b, f, "_bucket", s, le, (double)cum);
		}
		put_sample(b, f, "_bucket", s, "+Inf", (double)s->count);
		put_sample(b, f, "_sum", s, NULL, s->sum);
		put_sample(b, f, "_count", s, NULL, (double)s->count);
	}
}

int metrics_render(struct metrics *m, char **ret, size_t *ret_len)
{
	struct buf b = {0};

	buf_reserve(&b, 0);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_families; i++)
		render_family(&b, m->families[i]);
	pthread_mutex_unlock(&m->lock);
	if (b.oom) {
		free(b.data);
		return -ENOMEM;
	}
	*ret = b.data;
	if (ret_len)
		*ret_len = b.len;
	return 0;
}

/* ------------------------------------------------------ kubefence metrics */

/* The `result` label of kubefence_config_reloads_total, by enum
 * metrics_reload. */
static const char *const reload_results[] = {
        [METRICS_RELOAD_APPLIED] = "applied",
        [METRICS_RELOAD_REFUSED] = "refused",
        [METRICS_RELOAD_INVALID] = "invalid",
};

int metrics_agent_new(struct metrics **ret)
{
	struct metrics *m = NULL;
	int r;

	r = metrics_new(&m);
	if (r < 0)
		return r;

	const struct {
		struct metrics_family **slot;
		enum metrics_type type;
		const char *name, *help, *label;
	} table[] = {
	        {&m->agent.role, METRICS_GAUGE, "kubefence_role",
	         "Role of this agent: 0 follower, 1 leader (holds the Lease).", NULL},
	        {&m->agent.epoch, METRICS_GAUGE, "kubefence_epoch", "Epoch of the Lease last seen.",
	         NULL},
	        {&m->agent.transitions, METRICS_COUNTER, "kubefence_lease_transitions_total",
	         "Changes of the Lease holder seen by this agent: new terms, its own or another "
	         "agent's (the first observation is the baseline).",
	         NULL},
	        {&m->agent.promotions, METRICS_COUNTER, "kubefence_promotions_total",
	         "Times the local service was promoted to master.", NULL},
	        {&m->agent.demotions, METRICS_COUNTER, "kubefence_demotions_total",
	         "Times the local service stopped being master: each term in which it was sent "
	         "PROMOTE ends (demoted, stepped down, died, killed or stopped).",
	         NULL},
	        {&m->agent.service_connected, METRICS_GAUGE, "kubefence_service_connected",
	         "Whether the agent is connected to the local service (0/1).", NULL},
	        {&m->agent.fence_duration, METRICS_HISTOGRAM, "kubefence_fence_duration_seconds",
	         "Duration of fence runs, by method.", "method"},
	        {&m->agent.fence_failures, METRICS_COUNTER, "kubefence_fence_failures_total",
	         "Fence runs that did not confirm the old master fenced, by method.", "method"},
	        {&m->agent.failover_duration, METRICS_HISTOGRAM,
	         "kubefence_failover_duration_seconds",
	         "Failovers: from detecting the old master gone to the new master labelled.", NULL},
	        {&m->agent.api_errors, METRICS_COUNTER, "kubefence_api_errors_total",
	         "Failed Kubernetes API requests of this agent (Lease, pods, Events, fencing; not "
	         "watch streams), by HTTP status or transport error.",
	         "code"},
	        {&m->agent.events_posted, METRICS_COUNTER, "kubefence_events_posted_total",
	         "Kubernetes Events posted.", NULL},
	        {&m->agent.events_dropped, METRICS_COUNTER, "kubefence_events_dropped_total",
	         "Kubernetes Events not posted, by reason.", "reason"},
	        {&m->agent.scsi_registered, METRICS_GAUGE, "kubefence_scsi_registered",
	         "scsi-pr: whether this node's key is registered on the LUN at the last check "
	         "(fence.scsi_check_ms), 0/1.",
	         "lun"},
	        {&m->agent.scsi_restored, METRICS_COUNTER, "kubefence_scsi_restored_total",
	         "scsi-pr: times this node's registration, or the master's reservation, was "
	         "taken again after the target had lost it (a target restart).",
	         "lun"},
	        {&m->agent.config_reloads, METRICS_COUNTER, "kubefence_config_reloads_total",
	         "SIGHUP reloads of the conf file, by result: applied (only live keys changed, "
	         "or none), refused (a key that needs a restart changed: nothing applied), "
	         "invalid (the file has problems).",
	         "result"},
	        {&m->agent.config_reload_success, METRICS_GAUGE,
	         "kubefence_config_last_reload_success",
	         "Whether the last SIGHUP reload was applied (0/1); 1 before any: the file read "
	         "at start was valid.",
	         NULL},
	        {&m->agent.failsafe_rounds, METRICS_COUNTER, "kubefence_failsafe_rounds_total",
	         "failsafe.enabled: rounds in which this leader asked its peers for a promise "
	         "while the API server did not answer, by result (promised: every peer did, the "
	         "term was extended; refused; silent; error).",
	         "result"},
	        {&m->agent.failsafe_active, METRICS_GAUGE, "kubefence_failsafe_active",
	         "failsafe.enabled: whether this leader's term goes on by its peers' promises "
	         "now, the API server not answering (0/1).",
	         NULL},
	        {&m->agent.failsafe_promises, METRICS_COUNTER, "kubefence_failsafe_promises_total",
	         "failsafe.enabled: promises this agent gave a leader not to take the Lease.",
	         NULL},
	};

	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		bool hist = table[i].type == METRICS_HISTOGRAM;

		r = metrics_register(m, table[i].type, table[i].name, table[i].help, table[i].label,
		                     hist ? metrics_duration_buckets : NULL,
		                     hist ? metrics_duration_buckets_n : 0, table[i].slot);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < ELEMENTSOF(reload_results); i++) {
		r = metrics_declare(m->agent.config_reloads, reload_results[i]);
		if (r < 0)
			goto out;
	}
	r = metrics_set(m->agent.config_reload_success, NULL, 1);
	if (r < 0)
		goto out;
	*ret = m;
	m = NULL;
out:
	metrics_free(m);
	return r;
}

void metrics_set_role(struct metrics *m, enum metrics_role role)
{
	if (m)
		(void)metrics_set(m->agent.role, NULL, role);
}

void metrics_set_epoch(struct metrics *m, int64_t epoch)
{
	if (m)
		(void)metrics_set(m->agent.epoch, NULL, (double)epoch);
}

void metrics_set_service_connected(struct metrics *m, bool connected)
{
	if (m)
		(void)metrics_set(m->agent.service_connected, NULL, connected ? 1 : 0);
}

void metrics_lease_transition(struct metrics *m)
{
	if (m)
		(void)metrics_add(m->agent.transitions, NULL, 1);
}

void metrics_promotion(struct metrics *m)
{
	if (m)
		(void)metrics_add(m->agent.promotions, NULL, 1);
}

void metrics_demotion(struct metrics *m)
{
	if (m)
		(void)metrics_add(m->agent.demotions, NULL, 1);
}

void metrics_declare_fence_method(struct metrics *m, const char *method)
{
	if (!m || !method)
		return;
	(void)metrics_declare(m->agent.fence_duration, method);
	(void)metrics_declare(m->agent.fence_failures, method);
}

void metrics_observe_fence(struct metrics *m, const char *method, double seconds, bool ok)
{
	if (!m || !method)
		return;
	(void)metrics_observe(m->agent.fence_duration, method, seconds);
	if (ok)
		(void)metrics_declare(m->agent.fence_failures, method);
	else
		(void)metrics_add(m->agent.fence_failures, method, 1);
}

void metrics_scsi_registered(struct metrics *m, const char *lun, bool registered)
{
	if (m && lun)
		(void)metrics_set(m->agent.scsi_registered, lun, registered ? 1 : 0);
}

void metrics_scsi_restored(struct metrics *m, const char *lun)
{
	if (m && lun)
		(void)metrics_add(m->agent.scsi_restored, lun, 1);
}

void metrics_config_reload(struct metrics *m, enum metrics_reload result)
{
	if (!m || (unsigned)result >= ELEMENTSOF(reload_results))
		return;
	(void)metrics_add(m->agent.config_reloads, reload_results[result], 1);
	(void)metrics_set(m->agent.config_reload_success, NULL,
	                  result == METRICS_RELOAD_APPLIED ? 1 : 0);
}

void metrics_failsafe_round(struct metrics *m, const char *result)
{
	if (m && result)
		(void)metrics_add(m->agent.failsafe_rounds, result, 1);
}

void metrics_set_failsafe_active(struct metrics *m, bool active)
{
	if (m)
		(void)metrics_set(m->agent.failsafe_active, NULL, active ? 1 : 0);
}

void metrics_failsafe_promise(struct metrics *m)
{
	if (m)
		(void)metrics_add(m->agent.failsafe_promises, NULL, 1);
}

void metrics_observe_failover(struct metrics *m, double seconds)
{
	if (m)
		(void)metrics_observe(m->agent.failover_duration, NULL, seconds);
}

const char *metrics_api_error_code(int r)
{
	switch (r < 0 ? -r : r) {
	case EBADMSG:
		return "400";
	case EACCES:
		return "401";
	case EPERM:
		return "403";
	case ENOENT:
		return "404";
	case EEXIST:
	case ESTALE:
		return "409";
	case EIDRM:
		return "410";
	case EFBIG:
		return "413";
	case EINVAL:
		return "422";
	case EAGAIN:
		return "429_503";
	case EIO:
		return "5xx";
	case ETIMEDOUT:
		return "timeout";
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return "connect";
	case EKEYREJECTED:
		return "tls";
	default:
		return "other";
	}
}

void metrics_api_error(struct metrics *m, int r)
{
	if (m)
		(void)metrics_add(m->agent.api_errors, metrics_api_error_code(r), 1);
}

static void api_error_hook(void *userdata, int r)
{
	metrics_api_error(userdata, r);
}

void metrics_watch_api(struct metrics *m, struct k8s_client *client)
{
	if (m && client)
		k8s_client_set_error_hook(client, api_error_hook, m);
}

void metrics_event_posted(struct metrics *m)
{
	if (m)
		(void)metrics_add(m->agent.events_posted, NULL, 1);
}

void metrics_event_dropped(struct metrics *m, enum metrics_event_drop why)
{
	static const char *const names[] = {
	        [METRICS_EVENT_DROP_QUEUE_FULL] = "queue_full",
	        [METRICS_EVENT_DROP_REFUSED] = "refused",
	        [METRICS_EVENT_DROP_FAILED] = "failed",
	        [METRICS_EVENT_DROP_SHUTDOWN] = "shutdown",
	};

	if (m && (size_t)why < ELEMENTSOF(names))
		(void)metrics_add(m->agent.events_dropped, names[why], 1);
}
