/* fence_scsi: the `scsi-pr` fence method.  Over LUNs: a pipeline that
 * runs each LUN against one deadline and reports every LUN's result (pure,
 * its clock a parameter); per LUN it opens a session as the node's
 * initiator and runs scsi/scsi_resv.c's join, keep or fence.  See
 * fence_scsi.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fencing/fence_scsi.h"
#include "lib/util.h"
#include "scsi/scsi_resv.h"

int fence_scsi_run(const char *action, const char *const *targets, size_t n, usec_t deadline,
                   fence_scsi_lun_fn fn, void *userdata, fence_scsi_clock_fn clock,
                   void *clock_userdata, struct fence_scsi_report *ret)
{
	usec_t t0, start;

	memset(ret, 0, sizeof(*ret));
	ret->failed = -1;
	if (n == 0 || n > FENCE_SCSI_LUNS_MAX) {
		ret->result = -EINVAL;
		return -EINVAL;
	}
	t0 = clock(clock_userdata);
	for (size_t i = 0; i < n; i++) {
		struct fence_scsi_step *s = &ret->steps[i];

		(void)str_copy(s->method, sizeof(s->method), FENCE_SCSI_METHOD);
		(void)str_copy(s->action, sizeof(s->action), action);
		(void)str_copy(s->target, sizeof(s->target), targets[i] ? targets[i] : "");
		start = clock(clock_userdata);
		if (start >= deadline) {
			s->result = -ETIMEDOUT;
			errbuf_set(s->detail, sizeof(s->detail),
			           "not tried: deadline already passed");
		} else {
			s->result = fn(userdata, i, deadline, s->detail, sizeof(s->detail));
			if (s->result > 0)
				s->result = 0;
		}
		s->duration = clock(clock_userdata) - start;
		if (s->result < 0 && ret->failed < 0) {
			ret->failed = (int)i;
			ret->result = s->result;
		}
		ret->n = i + 1;
	}
	ret->duration = clock(clock_userdata) - t0;
	return ret->result;
}

/* --- the whole method: one session per LUN --- */

struct method_ctx {
	const char *const *luns;
	const struct fence_scsi_options *opts;
	char initiator[SCSI_PR_IQN_MAX];
	uint64_t key, victim_key;
	bool fence;
	bool keep; /* fence_scsi_keep() */
	bool (*leader)(void *);
	void *leader_data;
	bool restored[FENCE_SCSI_LUNS_MAX];
	bool empty[FENCE_SCSI_LUNS_MAX];
};

static usec_t mono_clock(void *userdata)
{
	return clock_mono_usec();
}

static int method_lun(void *userdata, size_t i, usec_t deadline, char *detail, size_t len)
{
	struct method_ctx *m = userdata;
	struct scsi_pr_options so = {.isid_qualifier = m->opts ? m->opts->isid_qualifier : 0,
	                             .ua_retries = 5};
	struct scsi_pr_url url;
	struct scsi_pr *h = NULL;
	int r;

	r = scsi_pr_url_parse(m->luns[i], &url, detail, len);
	if (r < 0)
		return r;
	r = scsi_pr_open(&url, m->initiator, &so, deadline, &h, detail, len);
	if (r < 0)
		return r;
	if (m->keep)
		r = scsi_resv_keep(h, m->key, m->leader, m->leader_data, deadline, &m->restored[i],
		                   &m->empty[i], detail, len);
	else if (m->fence)
		r = scsi_resv_fence(h, m->key, m->victim_key, m->opts ? m->opts->inflight : 0,
		                    deadline, detail, len);
	else
		r = scsi_resv_join(h, m->key, deadline, detail, len);
	h = scsi_pr_close(h);
	return r;
}

static int method_run(const char *action, const char *self, const char *victim, size_t n,
                      usec_t deadline, struct fence_scsi_report *ret, struct method_ctx *m)
{
	const struct fence_scsi_options *opts = m->opts;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->failed = -1;
	m->fence = victim != NULL;
	if (opts && opts->initiator)
		r = str_copy(m->initiator, sizeof(m->initiator), opts->initiator);
	else
		r = scsi_pr_iqn_for_node(opts ? opts->iqn_prefix : NULL, self, m->initiator,
		                         sizeof(m->initiator));
	if (r == 0)
		r = scsi_pr_key_for_node(self, &m->key);
	if (r == 0 && victim)
		r = scsi_pr_key_for_node(victim, &m->victim_key);
	if (r < 0) {
		ret->result = r;
		return r;
	}
	return fence_scsi_run(action, m->luns, n, deadline, method_lun, m, mono_clock, NULL, ret);
}

/* These two do not log: the report goes back to the caller (the agent's
 * fencing loop or the CLI), which decides what to say. */
int fence_scsi_join(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, usec_t deadline,
                    struct fence_scsi_report *ret)
{
	struct method_ctx m = {.luns = luns, .opts = opts};

	return method_run("join", node, NULL, n, deadline, ret, &m);
}

int fence_scsi_keep(const char *node, const char *const *luns, size_t n,
                    const struct fence_scsi_options *opts, bool (*leader)(void *),
                    void *leader_data, usec_t deadline, struct fence_scsi_report *ret,
                    bool restored[static FENCE_SCSI_LUNS_MAX],
                    bool empty[static FENCE_SCSI_LUNS_MAX])
{
	struct method_ctx m = {.luns = luns,
	                       .opts = opts,
	                       .keep = true,
	                       .leader = leader,
	                       .leader_data = leader_data};
	int r = method_run("keep", node, NULL, n, deadline, ret, &m);

	memcpy(restored, m.restored, sizeof(m.restored));
	memcpy(empty, m.empty, sizeof(m.empty));
	return r;
}

int fence_scsi_fence(const char *self, const char *victim, const char *const *luns, size_t n,
                     const struct fence_scsi_options *opts, usec_t deadline,
                     struct fence_scsi_report *ret)
{
	if (!victim || !*victim) {
		memset(ret, 0, sizeof(*ret));
		ret->failed = -1;
		ret->result = -EINVAL;
		return -EINVAL;
	}
	struct method_ctx m = {.luns = luns, .opts = opts};

	return method_run("fence", self, victim, n, deadline, ret, &m);
}
