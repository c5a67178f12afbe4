/* agent_conf: the agent's key table, its validators and cross-key checks
 * (see agent_conf.h).  Parsing, line numbers, ${VAR} expansion and the
 * output formats are lib/conf's; what is here is what the keys mean. */
#include "config.h"

#include "agent_conf.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define DNS1123_LABEL_MAX     63
#define DNS1123_SUBDOMAIN_MAX 253

/* Kubernetes' IsDNS1123Label/IsDNS1123Subdomain: lowercase alphanumerics and
 * '-', each label starting and ending with an alphanumeric; a subdomain is
 * labels joined by '.'.  Checked here so that a typo is reported at its
 * line instead of as an HTTP 422 from the API server at run time. */
static bool dns1123_valid(const char *s, size_t max, bool dots)
{
	size_t len = strlen(s);
	bool label_start = true;

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (ch == '.' && dots) {
			if (label_start || s[i - 1] == '-')
				return false;
			label_start = true;
			continue;
		}
		if (!alnum && !(ch == '-' && !label_start))
			return false;
		label_start = false;
	}
	return s[len - 1] != '-' && s[len - 1] != '.';
}

static int validate_subdomain(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_SUBDOMAIN_MAX, true))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and "
	           "'.', starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_SUBDOMAIN_MAX);
	return -EINVAL;
}

static int validate_label(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_LABEL_MAX, false))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 label (lowercase letters, digits and '-', "
	           "starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_LABEL_MAX);
	return -EINVAL;
}

static int validate_not_empty(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] != '\0')
		return 0;
	errbuf_set(err, errlen, "value is empty");
	return -EINVAL;
}

static const struct conf_choice log_levels[] = {
        {"error", LOG_LEVEL_ERROR},
        {"warning", LOG_LEVEL_WARNING},
        {"info", LOG_LEVEL_INFO},
        {"debug", LOG_LEVEL_DEBUG},
        {NULL, 0},
};

#define F(field) offsetof(struct agent_conf, field)

/* The one description of every key: the reader, --dump-config and
 * docs/configuration.md all come from here. */
static const struct conf_key agent_keys[] = {
        {.name = "node.name",
         .type = CONF_STRING,
         .def = NULL,
         .offset = F(node.name),
         .validate = validate_subdomain,
         .help = "Name of this node as in its Node object, usually `${NODE_NAME}` set from "
                 "the Downward API (`spec.nodeName`). A DNS-1123 subdomain."},
        {.name = "agent.identity",
         .type = CONF_STRING,
         .def = "",
         .offset = F(agent.identity),
         .derived = "the value of node.name",
         .help = "Holder identity this agent writes into the Lease; empty means node.name."},
        {.name = "lease.name",
         .type = CONF_STRING,
         .def = "kubefence",
         .offset = F(lease.name),
         .validate = validate_subdomain,
         .help = "Name of the Lease the agents compete for (a DNS-1123 subdomain)."},
        {.name = "lease.namespace",
         .type = CONF_STRING,
         .def = "kubefence",
         .offset = F(lease.namespace),
         .validate = validate_label,
         .help = "Namespace of that Lease (a DNS-1123 label)."},
        {.name = "lease.duration_ms",
         .type = CONF_INT,
         .def = "4000",
         .min = 1000,
         .max = 300000,
         .offset = F(lease.duration_ms),
         .help = "How long the Lease stays valid after its last renewal; another node takes "
                 "over only after that."},
        {.name = "lease.renew_deadline_ms",
         .type = CONF_INT,
         .def = "3000",
         .min = 500,
         .max = 300000,
         .offset = F(lease.renew_deadline_ms),
         .help = "A leader that could not renew for this long steps down. Less than "
                 "lease.duration_ms, more than 1.2 x lease.retry_ms."},
        {.name = "lease.retry_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 100,
         .max = 60000,
         .offset = F(lease.retry_ms),
         .help = "Pause between two attempts to acquire or renew the Lease."},
        {.name = "kube.config",
         .type = CONF_STRING,
         .def = "in-cluster",
         .offset = F(kube.config),
         .validate = validate_not_empty,
         .help = "Path of a kubeconfig file, or `in-cluster` for the pod's service account."},
        {.name = "kube.context",
         .type = CONF_STRING,
         .def = "",
         .offset = F(kube.context),
         .help = "Context of the kubeconfig to use; empty means its current-context."},
        {.name = "kube.request_timeout_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 100,
         .max = 60000,
         .offset = F(kube.request_timeout_ms),
         .help = "Deadline of one API request; at most lease.renew_deadline_ms."},
        {.name = "log.level",
         .type = CONF_ENUM,
         .def = "info",
         .choices = log_levels,
         .offset = F(log.level),
         .help = "Most verbose level that is logged."},
        {.name = "log.monotonic",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(log.monotonic),
         .help = "Prefix log lines with CLOCK_MONOTONIC seconds, to line up the logs of "
                 "several processes of one node."},
};

#undef F

/* ------------------------------------------------------- cross-key checks */

/* Which of two keys a problem between them is reported at: the first when
 * the file set it, else the second when the file set that one, else the
 * first without a line (both defaults: a bug in the table). */
struct blame {
	bool first; /* report at the first key */
	const char *key;
	int line;
	char other[64]; /* where the other key's value came from */
};

static bool blame_pick(const struct conf_source *s, const char *a, const char *b, struct blame *ret)
{
	int la = conf_key_line(s, a), lb = conf_key_line(s, b);
	int lother;

	/* A rejected value was reported already; the field holds the default. */
	if (conf_key_rejected(s, a) || conf_key_rejected(s, b))
		return false;
	ret->first = la > 0 || lb <= 0;
	ret->key = ret->first ? a : b;
	ret->line = ret->first ? la : lb;
	lother = ret->first ? lb : la;
	if (lother > 0)
		snprintf(ret->other, sizeof(ret->other), "line %d", lother);
	else
		snprintf(ret->other, sizeof(ret->other), "default");
	return true;
}

/* 1.2 x v, written exactly (one decimal at most). */
static void times_1_2(int64_t v, char *buf, size_t len)
{
	int64_t tenths = v * 12;

	if (tenths % 10 == 0)
		snprintf(buf, len, "%" PRId64, tenths / 10);
	else
		snprintf(buf, len, "%" PRId64 ".%" PRId64, tenths / 10, tenths % 10);
}

static void check_consistency(const struct agent_conf *c, struct conf_errors *errs)
{
	const struct conf_source *s = c->source;
	const char *path = conf_source_path(s);
	int64_t renew = c->lease.renew_deadline_ms, dur = c->lease.duration_ms;
	int64_t retry = c->lease.retry_ms, req = c->kube.request_timeout_ms;
	struct blame b;
	char x12[32];

	/* A leader must give up before anyone else may take over. */
	if (renew >= dur && blame_pick(s, "lease.renew_deadline_ms", "lease.duration_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(
			        errs, path, (unsigned)b.line, b.key,
			        "%" PRId64 " must be less than lease.duration_ms (%" PRId64 ", %s)",
			        renew, dur, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be greater than lease.renew_deadline_ms "
			                       "(%" PRId64 ", %s)",
			                       dur, renew, b.other);
	}

	/* Leave room for at least one retry with some slack before stepping
	 * down; integer form of renew > 1.2 * retry. */
	if (renew * 10 <= retry * 12 &&
	    blame_pick(s, "lease.renew_deadline_ms", "lease.retry_ms", &b)) {
		times_1_2(retry, x12, sizeof(x12));
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must be greater than 1.2 x lease.retry_ms "
			                       "(%" PRId64 ", %s) = %s",
			                       renew, retry, b.other, x12);
		else
			(void)conf_errors_addf(
			        errs, path, (unsigned)b.line, b.key,
			        "%" PRId64 " is too large: 1.2 x %" PRId64 " = %s must be "
			        "less than lease.renew_deadline_ms (%" PRId64 ", %s)",
			        retry, retry, x12, renew, b.other);
	}

	/* One request may not outlive the renew deadline, or a hung API server
	 * would keep a leader that should already have stepped down. */
	if (req > renew &&
	    blame_pick(s, "kube.request_timeout_ms", "lease.renew_deadline_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must not exceed lease.renew_deadline_ms "
			                       "(%" PRId64 ", %s)",
			                       req, renew, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64
			                       " must not be less than kube.request_timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       renew, req, b.other);
	}
}

/* ------------------------------------------------------------------ API */

int agent_conf_load(const char *path, struct agent_conf **ret, struct conf_errors *errs)
{
	struct agent_conf *c = NULL;
	size_t before = conf_errors_count(errs);
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	r = conf_source_new(agent_keys, ELEMENTSOF(agent_keys), path, &c->source);
	if (r < 0)
		goto out;
	r = conf_source_load(c->source, c, errs);
	if (r < 0 && r != -EINVAL)
		goto out;
	/* Keys that parsed are checked against each other even when others
	 * did not, so that one run reports every problem. */
	check_consistency(c, errs);

	if (c->node.name && c->agent.identity && c->agent.identity[0] == '\0') {
		char *id = strdup(c->node.name);

		if (!id) {
			r = -ENOMEM;
			goto out;
		}
		free(c->agent.identity);
		c->agent.identity = id;
	}
	if (conf_errors_count(errs) > before) {
		r = -EINVAL;
		goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	agent_conf_free(c);
	return r;
}

struct agent_conf *agent_conf_free(struct agent_conf *c)
{
	if (!c)
		return NULL;
	conf_target_free(agent_keys, ELEMENTSOF(agent_keys), c);
	conf_source_free(c->source);
	free(c);
	return NULL;
}

void agent_conf_dump(const struct agent_conf *c, FILE *out)
{
	fprintf(out, "# effective configuration read from %s\n", conf_source_path(c->source));
	conf_dump(c->source, c, out);
}

void agent_conf_print_reference(FILE *out)
{
	fputs("# kubefence-agent configuration\n"
	      "\n"
	      "<!-- Generated by `kubefence-agent --config-reference` (make config-reference) "
	      "from the key\n"
	      "     table in nodeagent/agent_conf.c; do not edit: a unit test fails when this "
	      "file is stale. -->\n"
	      "\n"
	      "`kubefence-agent` reads `" AGENT_CONF_DEFAULT_PATH "`, or the file given with "
	      "`--config FILE`.\n"
	      "`--dump-config` prints the value every key ends up with, marking those left at "
	      "their default.\n"
	      "\n"
	      "A minimal file names the node; everything else has a default:\n"
	      "\n"
	      "```\n"
	      "# /etc/kubefence/agent.conf\n"
	      "node.name = ${NODE_NAME}\n"
	      "```\n"
	      "\n",
	      out);
	conf_print_reference(agent_keys, ELEMENTSOF(agent_keys), out);
	fputs("\n"
	      "## Consistency rules\n"
	      "\n"
	      "Checked after every key has been read; a violation is reported at the line of "
	      "the key that\n"
	      "was set (at `lease.renew_deadline_ms` or `kube.request_timeout_ms` when both "
	      "were), or as\n"
	      "`FILE: KEY: reason` when both are defaults.\n"
	      "\n"
	      "* `lease.renew_deadline_ms` < `lease.duration_ms`: a leader gives up before "
	      "another node may\n"
	      "  take the Lease over.\n"
	      "* `lease.renew_deadline_ms` > 1.2 x `lease.retry_ms`: there is room for at "
	      "least one more\n"
	      "  renewal attempt before stepping down.\n"
	      "* `kube.request_timeout_ms` <= `lease.renew_deadline_ms`: a single API request "
	      "cannot outlive\n"
	      "  the renew deadline.\n"
	      "\n"
	      "`agent.identity`, when empty, is replaced by `node.name` once the file is read; "
	      "`kube.context`,\n"
	      "when empty, means the current-context of the kubeconfig.\n",
	      out);
}
