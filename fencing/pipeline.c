/* pipeline: ordering, deadlines, retries and aggregation of the fence
 * methods (see pipeline.h).  The first half is pure logic over an injected
 * clock and a table of methods; the second half wires the real methods
 * (fence_pod, fence_volume, the scsi-pr adapter) from fencing's own
 * configuration (fence_conf.h). */
#include "config.h"

#include "fencing/pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fencing/fence_pod.h"
#include "fencing/fence_scsi.h"
#include "fencing/fence_volume.h"
#include "lib/failpoint.h"
#include "lib/k8s.h"
#include "lib/log.h"
#include "lib/util.h"

const char *const fence_method_names[] = {"scsi-pr", "out-of-service", "pod-delete",
                                          "volume-detach", NULL};

bool fence_method_known(const char *name)
{
	for (size_t i = 0; fence_method_names[i]; i++)
		if (strcmp(fence_method_names[i], name) == 0)
			return true;
	return false;
}

const char *fence_method_names_joined(void)
{
	return "scsi-pr, out-of-service, pod-delete, volume-detach";
}

bool fence_error_is_retryable(int r)
{
	if (r > 0)
		r = -r;
	return k8s_error_is_retryable(r) || r == -EBUSY;
}

const char *fence_level_to_string(enum fence_level level)
{
	switch (level) {
	case FENCE_LEVEL_RELEASED:
		return "lease released";
	case FENCE_LEVEL_EXPIRED:
		return "lease expired";
	}
	return "?";
}

/* ------------------------------------------------------------ pure logic */

static usec_t real_now(void *data)
{
	(void)data;
	return clock_mono_usec();
}

static void real_sleep_until(void *data, usec_t deadline)
{
	(void)data;
	clock_sleep_until(deadline);
}

static const struct fence_clock real_clock = {real_now, real_sleep_until, NULL};

static bool strv_contains(char *const *v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
			return true;
	return false;
}

static bool step_required(const struct fence_pipeline_opts *o, const struct fence_method *m,
                          enum fence_level level)
{
	return level == FENCE_LEVEL_EXPIRED || m->storage ||
	       strv_contains(o->released_methods, m->name);
}

static double secs(usec_t u)
{
	return (double)u / (double)USEC_PER_SEC;
}

static const char *result_word(const struct fence_step *s)
{
	if (s->skipped)
		return "skipped";
	if (s->result == FENCE_CONFIRMED)
		return "confirmed";
	if (s->result == FENCE_ALREADY_GONE)
		return "confirmed (already gone)";
	return "FAILED";
}

/* Run one step: attempts until confirmed, not retryable, out of attempts
 * or out of time. */
static void run_step(const struct fence_pipeline_opts *o, const struct fence_clock *clk,
                     const struct fence_method *m, const struct fence_request *req, usec_t deadline,
                     struct fence_step *st)
{
	usec_t start = clk->now(clk->data);
	int r;

	if (o->before_method)
		o->before_method(o->keep_going_data, m->name);
	for (;;) {
		st->target[0] = '\0';
		st->message[0] = '\0';
		if (o->keep_going && !o->keep_going(o->keep_going_data)) {
			r = -ECANCELED;
			snprintf(st->message, sizeof(st->message),
			         "stopped before attempt %d: the term it ran for is over",
			         st->attempts + 1);
			break;
		}
		st->attempts++;
		r = FAILPOINT(FENCE_METHOD_BEFORE);
		if (r < 0)
			snprintf(st->message, sizeof(st->message), "fault point: %s", strerror(-r));
		else
			r = m->run(m->data, req, deadline, st->target, sizeof(st->target),
			           st->message, sizeof(st->message));
		if (r >= 0) {
			int fp = FAILPOINT(FENCE_METHOD_AFTER);

			if (fp < 0) {
				snprintf(st->message, sizeof(st->message), "fault point: %s",
				         strerror(-fp));
				r = fp;
			}
		}
		if (r >= 0)
			break;
		if (!fence_error_is_retryable(r))
			break;
		if (st->attempts > o->retries)
			break;
		/* No time left for a pause and another attempt. */
		if (clk->now(clk->data) + o->retry_pause >= deadline)
			break;
		log_warning("fence node '%s': %s attempt %d failed: %s; retrying in %.3f s",
		            req->node, m->name, st->attempts,
		            st->message[0] ? st->message : strerror(-r), secs(o->retry_pause));
		clk->sleep_until(clk->data, clk->now(clk->data) + o->retry_pause);
	}
	st->result = r > FENCE_ALREADY_GONE ? FENCE_CONFIRMED : r;
	st->duration = clk->now(clk->data) - start;
	if (r < 0 && st->message[0] == '\0')
		snprintf(st->message, sizeof(st->message), "%s", strerror(-r));
	if (r < 0 && clk->now(clk->data) >= deadline && r == -ETIMEDOUT &&
	    !strstr(st->message, "deadline")) {
		size_t l = strlen(st->message);

		snprintf(st->message + l, sizeof(st->message) - l, " (deadline of %.3f s passed)",
		         secs(deadline - start));
	}
}

static void log_step(const struct fence_report *rep, size_t i)
{
	const struct fence_step *s = &rep->steps[i];

	if (s->result < 0)
		log_error(
		        "fence node '%s' step %zu/%zu %s %s: FAILED after %.3f s, %d attempt%s: %s",
		        rep->node, i + 1, rep->n_steps, s->method, s->target, secs(s->duration),
		        s->attempts, s->attempts == 1 ? "" : "s", s->message);
	else
		log_info("fence node '%s' step %zu/%zu %s %s: %s in %.3f s%s%s%s", rep->node, i + 1,
		         rep->n_steps, s->method, s->target, result_word(s), secs(s->duration),
		         s->message[0] ? " (" : "", s->message, s->message[0] ? ")" : "");
}

int fence_pipeline_run(const struct fence_pipeline_opts *o, const struct fence_method *methods,
                       size_t n, enum fence_level level, const struct fence_request *req,
                       struct fence_report *rep)
{
	const struct fence_clock *clk = o->clock ? o->clock : &real_clock;
	usec_t start = clk->now(clk->data), end = start + o->total_timeout;
	int r = 0;

	memset(rep, 0, sizeof(*rep));
	rep->level = level;
	rep->dry_run = req->dry_run;
	if (!req->node || req->node[0] == '\0' || n > FENCE_METHODS_MAX) {
		snprintf(rep->message, sizeof(rep->message),
		         !req->node || !req->node[0] ? "no victim node given"
		                                     : "too many fence methods (%zu, at most %d)",
		         n, FENCE_METHODS_MAX);
		r = -EINVAL;
		log_error("fence: %s", rep->message);
		goto out;
	}
	(void)str_copy(rep->node, sizeof(rep->node), req->node);
	if (o->local_node && strcmp(o->local_node, req->node) == 0) {
		snprintf(
		        rep->message, sizeof(rep->message),
		        "refusing to fence node '%s': it is the local node (this agent runs there)",
		        req->node);
		r = -EPERM;
		log_error("fence: %s", rep->message);
		goto out;
	}
	if (n == 0)
		log_warning("fence node '%s': no fence method configured (fence.methods is empty); "
		            "nothing to confirm",
		            req->node);

	for (size_t i = 0; i < n; i++) {
		const struct fence_method *m = &methods[i];
		struct fence_step *st = &rep->steps[rep->n_steps++];
		usec_t now = clk->now(clk->data), deadline;

		(void)str_copy(st->method, sizeof(st->method), m->name);
		snprintf(st->target, sizeof(st->target), "node '%s'", req->node);
		if (!step_required(o, m, level)) {
			st->skipped = true;
			snprintf(st->message, sizeof(st->message),
			         "not required when the %s (service confirmed dead)",
			         fence_level_to_string(level));
		} else if (now >= end) {
			st->result = -ETIME;
			snprintf(st->message, sizeof(st->message),
			         "not run: the pipeline's deadline of %.3f s had passed",
			         secs(o->total_timeout));
		} else {
			deadline = now + o->step_timeout < end ? now + o->step_timeout : end;
			run_step(o, clk, m, req, deadline, st);
		}
		log_step(rep, i);
		if (st->result < 0 && r == 0)
			r = st->result;
	}
	rep->duration = clk->now(clk->data) - start;
	if (r < 0)
		snprintf(rep->message, sizeof(rep->message), "node '%s' is NOT confirmed fenced",
		         req->node);
	if (r < 0)
		log_error("fence node '%s' (%s)%s: NOT confirmed after %.3f s", req->node,
		          fence_level_to_string(level), req->dry_run ? " [dry run]" : "",
		          secs(rep->duration));
	else
		log_info("fence node '%s' (%s)%s: confirmed in %.3f s", req->node,
		         fence_level_to_string(level), req->dry_run ? " [dry run]" : "",
		         secs(rep->duration));
out:
	rep->result = r;
	return r;
}

static void append(char *buf, size_t len, size_t *used, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*used >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (n > 0)
		*used += (size_t)n < len - *used ? (size_t)n : len - *used - 1;
}

void fence_report_format(const struct fence_report *rep, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (rep->n_steps == 0 && rep->result < 0) {
		append(buf, len, &used, "fence refused: %s", rep->message);
		return;
	}
	append(buf, len, &used,
	       "%s node '%s' (%s)%s in %.3f s:", rep->result == 0 ? "fenced" : "FAILED to fence",
	       rep->node, fence_level_to_string(rep->level), rep->dry_run ? " [dry run]" : "",
	       secs(rep->duration));
	for (size_t i = 0; i < rep->n_steps; i++) {
		const struct fence_step *s = &rep->steps[i];

		append(buf, len, &used, "%s %s %s", i ? ";" : "", s->method, result_word(s));
		if (!s->skipped)
			append(buf, len, &used, " in %.3f s", secs(s->duration));
		if (s->message[0])
			append(buf, len, &used, " (%s)", s->message);
	}
	if (rep->n_steps == 0)
		append(buf, len, &used, " no method configured");
}

/* ---------------------------------------------------------------- wiring */

struct method_ctx {
	const struct fence_conf *conf;
	struct k8s_client *client;
};

/* pod-delete: the given pod, or every pod of the selector on the node. */
static int method_pod_delete(void *data, const struct fence_request *req, usec_t deadline,
                             char *target, size_t targetlen, char *msg, size_t msglen)
{
	const struct method_ctx *mc = data;
	const char *ns = mc->conf->namespace;
	struct fence_pod_victim v[FENCE_POD_MAX];
	int n, r = FENCE_ALREADY_GONE;
	size_t used = 0;

	if (req->pod && req->pod[0]) {
		n = 1;
		(void)str_copy(v[0].name, sizeof(v[0].name), req->pod);
		(void)str_copy(v[0].uid, sizeof(v[0].uid), req->pod_uid ? req->pod_uid : "");
	} else if (req->pins && req->pins->set) {
		/* this duty's pods, as its first run found them */
		n = req->pins->n;
		for (int i = 0; i < n; i++) {
			(void)str_copy(v[i].name, sizeof(v[i].name), req->pins->name[i]);
			(void)str_copy(v[i].uid, sizeof(v[i].uid), req->pins->uid[i]);
		}
		if (n == 0) {
			snprintf(target, targetlen, "pods '%s' in '%s' on node '%s'",
			         mc->conf->selector, ns, req->node);
			snprintf(msg, msglen, "no such pod on the node when this fence began");
			return FENCE_ALREADY_GONE;
		}
	} else {
		n = fence_pod_find(mc->client, ns, mc->conf->selector, req->node, deadline, v, msg,
		                   msglen);
		if (n < 0) {
			snprintf(target, targetlen, "pods '%s' on node '%s'", mc->conf->selector,
			         req->node);
			return n;
		}
		if (req->pins && !req->dry_run) {
			req->pins->n = n < FENCE_PINS_MAX ? n : FENCE_PINS_MAX;
			for (int i = 0; i < req->pins->n; i++) {
				(void)str_copy(req->pins->name[i], sizeof(req->pins->name[i]),
				               v[i].name);
				(void)str_copy(req->pins->uid[i], sizeof(req->pins->uid[i]),
				               v[i].uid);
			}
			req->pins->set = true;
		}
		if (n == 0) {
			snprintf(target, targetlen, "pods '%s' in '%s' on node '%s'",
			         mc->conf->selector, ns, req->node);
			snprintf(msg, msglen, "no such pod on the node");
			return FENCE_ALREADY_GONE;
		}
	}
	target[0] = '\0';
	for (int i = 0; i < n; i++)
		append(target, targetlen, &used, "%s'%s/%s' uid %s", i ? ", " : "", ns, v[i].name,
		       v[i].uid[0] ? v[i].uid : "(current)");
	if (req->dry_run) {
		snprintf(msg, msglen, "dry run: would force-delete %d pod%s", n, n == 1 ? "" : "s");
		return FENCE_CONFIRMED;
	}
	used = 0;
	msg[0] = '\0';
	for (int i = 0; i < n; i++) {
		char err[512] = "";
		int q = fence_pod_delete(mc->client, ns, v[i].name, v[i].uid, deadline, err,
		                         sizeof(err));

		if (q < 0) {
			snprintf(msg, msglen, "%s", err);
			return q;
		}
		if (q == FENCE_CONFIRMED)
			r = FENCE_CONFIRMED;
		append(msg, msglen, &used, "%s%s", i ? "; " : "",
		       q == FENCE_CONFIRMED ? "force-deleted, confirmed gone" : err);
	}
	return r;
}

/* volume-detach: optional out-of-service taint first (it makes the
 * controllers force-detach), then the VolumeAttachments. */
static int method_volume_detach(void *data, const struct fence_request *req, usec_t deadline,
                                char *target, size_t targetlen, char *msg, size_t msglen)
{
	const struct method_ctx *mc = data;
	const char *ns = mc->conf->namespace, *pvc = mc->conf->pvc;
	char pv[254], err[640] = "", taint_note[128] = "";
	int r, count = 0;

	snprintf(target, targetlen, "PVC '%s/%s' on node '%s'", ns, pvc, req->node);
	r = fence_volume_pv_of_pvc(mc->client, ns, pvc, deadline, pv, sizeof(pv), msg, msglen);
	if (r < 0)
		return r;
	snprintf(target, targetlen, "PV '%s' (PVC '%s/%s') on node '%s'", pv, ns, pvc, req->node);
	if (mc->conf->out_of_service_taint && !req->dry_run) {
		r = fence_volume_taint_node(mc->client, req->node, deadline, err, sizeof(err));
		if (r == -EINVAL || r == -EOPNOTSUPP)
			/* A server that refuses the taint: the detach below still
			 * fences; say so. */
			snprintf(taint_note, sizeof(taint_note),
			         "; out-of-service taint refused (%s)", strerror(-r));
		else if (r < 0) {
			snprintf(msg, msglen, "out-of-service taint: %s", err);
			return r;
		} else
			snprintf(taint_note, sizeof(taint_note), "; node tainted out-of-service%s",
			         r == 1 ? " (already)" : "");
	}
	r = fence_volume_detach(mc->client, pv, req->node, req->dry_run, deadline, &count, err,
	                        sizeof(err));
	if (r < 0) {
		snprintf(msg, msglen, "%s", err);
		return r;
	}
	if (req->dry_run)
		snprintf(msg, msglen, "dry run: would delete %d VolumeAttachment%s%s", count,
		         count == 1 ? "" : "s",
		         mc->conf->out_of_service_taint ? " and taint the node out-of-service"
		                                        : "");
	else if (r == FENCE_ALREADY_GONE)
		snprintf(msg, msglen, "no VolumeAttachment on the node%s", taint_note);
	else
		snprintf(msg, msglen, "%d VolumeAttachment%s deleted, confirmed gone%s", count,
		         count == 1 ? "" : "s", taint_note);
	return r;
}

/* out-of-service: the victim Node gets the taint
 * node.kubernetes.io/out-of-service=nodeshutdown:NoExecute, confirmed by the
 * answer of the PATCH that carried it.  Nothing new is scheduled there (the
 * StatefulSet's replacement of a force-deleted pod lands elsewhere), and
 * the controllers of Kubernetes 1.26+ force-detach its volumes; the node's
 * own agent lifts it when it is back. */
static int method_out_of_service(void *data, const struct fence_request *req, usec_t deadline,
                                 char *target, size_t targetlen, char *msg, size_t msglen)
{
	const struct method_ctx *mc = data;
	char err[640] = "";
	int r;

	snprintf(target, targetlen, "node '%s'", req->node);
	if (req->dry_run) {
		snprintf(msg, msglen, "dry run: would taint the node out-of-service");
		return FENCE_CONFIRMED;
	}
	r = fence_volume_taint_node(mc->client, req->node, deadline, err, sizeof(err));
	if (r == -ENOENT) {
		/* a deleted Node schedules nothing */
		snprintf(msg, msglen, "no Node object '%s': nothing to taint", req->node);
		return FENCE_ALREADY_GONE;
	}
	if (r < 0) {
		snprintf(msg, msglen, "%s", err);
		return r;
	}
	snprintf(msg, msglen, "%s",
	         r == 1 ? "tainted out-of-service (already)" : "tainted out-of-service");
	return FENCE_CONFIRMED;
}

/* scsi-pr: an adapter to fencing/fence_scsi.c, which confirms the victim's
 * key is gone from every LUN; each LUN's outcome goes into the message. */
static int method_scsi_pr(void *data, const struct fence_request *req, usec_t deadline,
                          char *target, size_t targetlen, char *msg, size_t msglen)
{
	const struct method_ctx *mc = data;
	const char *luns[FENCE_SCSI_LUNS_MAX];
	struct fence_scsi_options so = {0};
	struct fence_scsi_report *rep = NULL;
	size_t n = 0, used = 0;
	int r;

	for (char **p = mc->conf->scsi_luns; p && *p && n < FENCE_SCSI_LUNS_MAX; p++)
		luns[n++] = *p;
	snprintf(target, targetlen, "%s'%s'%s", n == 1 ? "LUN " : "LUNs ", n ? luns[0] : "",
	         n > 1 ? " and more" : "");
	if (req->dry_run) {
		snprintf(msg, msglen, "dry run: would preempt node '%s''s key on %zu LUN%s",
		         req->node, n, n == 1 ? "" : "s");
		return FENCE_CONFIRMED;
	}
	rep = calloc(1, sizeof(*rep));
	if (!rep) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	so.iqn_prefix = mc->conf->scsi_iqn_prefix && mc->conf->scsi_iqn_prefix[0]
	                        ? mc->conf->scsi_iqn_prefix
	                        : NULL;
	so.inflight = mc->conf->scsi_inflight_ms * USEC_PER_MSEC;
	r = fence_scsi_fence(mc->conf->local_node, req->node, luns, n, &so, deadline, rep);
	msg[0] = '\0';
	for (size_t i = 0; i < rep->n; i++)
		append(msg, msglen, &used, "%s%s: %s %.3f s%s%s", i ? "; " : "",
		       rep->steps[i].target, rep->steps[i].result < 0 ? "failed" : "ok",
		       secs(rep->steps[i].duration), rep->steps[i].detail[0] ? ", " : "",
		       rep->steps[i].detail);
	free(rep);
	return r < 0 ? r : FENCE_CONFIRMED;
}

int fence_methods_from_conf(const struct fence_conf *conf, struct k8s_client *client,
                            struct fence_methods *ret, char *err, size_t errlen)
{
	struct method_ctx *mc = NULL;
	struct fence_methods m = {0};
	int r;

	mc = calloc(1, sizeof(*mc));
	if (!mc) {
		r = -ENOMEM;
		goto out;
	}
	mc->conf = conf;
	mc->client = client;
	for (char **p = conf->methods; p && *p; p++) {
		struct fence_method *f = &m.v[m.n];

		if (m.n >= FENCE_METHODS_MAX) {
			errbuf_set(err, errlen, "too many fence methods (at most %d)",
			           FENCE_METHODS_MAX);
			r = -EINVAL;
			goto out;
		}
		f->name = *p;
		f->data = mc;
		if (strcmp(*p, "scsi-pr") == 0) {
			f->run = method_scsi_pr;
			f->storage = true;
		} else if (strcmp(*p, "out-of-service") == 0)
			f->run = method_out_of_service;
		else if (strcmp(*p, "pod-delete") == 0)
			f->run = method_pod_delete;
		else if (strcmp(*p, "volume-detach") == 0)
			f->run = method_volume_detach;
		else {
			errbuf_set(err, errlen, "fence method '%s' is not built into this program",
			           *p);
			r = -EOPNOTSUPP;
			goto out;
		}
		m.n++;
	}
	m.priv = mc;
	mc = NULL;
	*ret = m;
	r = 0;
out:
	free(mc);
	return r;
}

void fence_methods_done(struct fence_methods *m)
{
	if (!m)
		return;
	free(m->priv);
	*m = (struct fence_methods){0};
}

void fence_pipeline_opts_from_conf(const struct fence_conf *conf, struct fence_pipeline_opts *ret)
{
	*ret = (struct fence_pipeline_opts){
	        .local_node = conf->local_node,
	        .step_timeout = conf->timeout_ms * USEC_PER_MSEC,
	        .total_timeout = conf->total_timeout_ms * USEC_PER_MSEC,
	        .retries = (int)conf->retries,
	        .retry_pause = conf->retry_ms * USEC_PER_MSEC,
	        .released_methods = conf->released_methods,
	        .clock = NULL,
	};
}
