/* fp_rules: see fp_rules.h. */
#include "config.h"

#include "tests/proxy/fp_rules.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

struct rule {
	int line;
	char method[24]; /* "" = any */
	regex_t re;
	bool re_ok;
	uint64_t skip;
	uint64_t count; /* 0 = unlimited (count=0 is refused) */
	double prob;
	struct fp_verdict v;
	uint64_t seen;    /* requests it was tried on and matched */
	uint64_t applied; /* of those, the ones it decided */
};

struct fp_ruleset {
	struct rule *rules;
	size_t n;
	uint64_t rng;
};

/* splitmix64: small, seedable, and the same sequence on every machine. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Append one "name:line: reason" line to err (as far as it fits). */
static void __attribute__((format(printf, 5, 6)))
add_error(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
{
	size_t used = err ? strnlen(err, errlen) : 0;
	va_list ap;
	int n;

	if (!err || used + 1 >= errlen)
		return;
	n = snprintf(err + used, errlen - used, "%s%s:%d: ", used ? "\n" : "", name, line);
	if (n < 0 || (size_t)n >= errlen - used)
		return;
	used += (size_t)n;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static const char *default_reason(int status)
{
	switch (status) {
	case 400:
		return "BadRequest";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "NotFound";
	case 405:
		return "MethodNotAllowed";
	case 409:
		return "Conflict";
	case 410:
		return "Expired";
	case 422:
		return "Invalid";
	case 429:
		return "TooManyRequests";
	case 500:
		return "InternalError";
	case 503:
		return "ServiceUnavailable";
	case 504:
		return "Timeout";
	default:
		return "";
	}
}

/* The log text of a rule's actions, in a fixed order. */
static void describe(struct fp_verdict *v)
{
	char *t = v->text;
	size_t len = sizeof(v->text), n = 0;

#define PUT(...) n += (size_t)snprintf(t + n, n < len ? len - n : 0, __VA_ARGS__)
	if (v->delay_ms)
		PUT("%sdelay=%ld", n ? "," : "", v->delay_ms);
	if (v->late_ms)
		PUT("%slate=%ld", n ? "," : "", v->late_ms);
	switch (v->action) {
	case FP_ACT_PASS:
		if (!v->delay_ms && !v->late_ms && !v->delay_response_ms)
			PUT("pass");
		break;
	case FP_ACT_DROP_RESPONSE:
		PUT("%sdrop_response", n ? "," : "");
		if (v->drop_after_ms)
			PUT(",drop_response_after=%ld", v->drop_after_ms);
		break;
	case FP_ACT_STATUS:
		PUT("%sstatus=%d", n ? "," : "", v->status);
		if (v->retry_after >= 0)
			PUT(",retry_after=%d", v->retry_after);
		break;
	case FP_ACT_RESET:
		PUT("%sreset", n ? "," : "");
		break;
	case FP_ACT_TRUNCATE:
		PUT("%struncate=%llu%s", n ? "," : "", (unsigned long long)v->truncate,
		    v->reframe ? ",reframe" : "");
		break;
	case FP_ACT_MALFORMED:
		PUT("%smalformed", n ? "," : "");
		break;
	case FP_ACT_BLACKHOLE:
		PUT("%sblackhole", n ? "," : "");
		break;
	}
	if (v->delay_response_ms)
		PUT("%sdelay_response=%ld", n ? "," : "", v->delay_response_ms);
#undef PUT
}

/* Parse one rule line (already without comment); 0 or -EINVAL with err. */
static int parse_rule(char *s, int lineno, long max_ms, struct rule *ru, const char *name,
                      char *err, size_t errlen)
{
	char *save = NULL, *tok, *method, *regex;
	bool have_count = false, have_prob = false, have_skip = false, any_action = false;
	bool have_reframe = false;
	const char *outcome = NULL;
	struct fp_verdict *v = &ru->v;
	uint64_t u;
	int r;

	memset(ru, 0, sizeof(*ru));
	ru->line = lineno;
	ru->prob = 1.0;
	v->line = lineno;
	v->retry_after = -1;

	method = strtok_r(s, " \t", &save);
	regex = strtok_r(NULL, " \t", &save);
	if (!regex) {
		add_error(err, errlen, name, lineno, "expected METHOD REGEX ACTION...");
		return -EINVAL;
	}
	if (strcmp(method, "*") != 0) {
		if (strlen(method) >= sizeof(ru->method)) {
			add_error(err, errlen, name, lineno, "method '%s' too long", method);
			return -EINVAL;
		}
		for (const char *p = method; *p; p++)
			if (*p < 'A' || *p > 'Z') {
				add_error(err, errlen, name, lineno,
				          "method '%s' is not upper-case letters or '*'", method);
				return -EINVAL;
			}
		strcpy(ru->method, method);
	}
	r = regcomp(&ru->re, regex, REG_EXTENDED | REG_NOSUB);
	if (r != 0) {
		char m[128];

		regerror(r, &ru->re, m, sizeof(m));
		add_error(err, errlen, name, lineno, "regex '%s': %s", regex, m);
		return -EINVAL;
	}
	ru->re_ok = true;

	while ((tok = strtok_r(NULL, " \t", &save))) {
		char *val = strchr(tok, '=');
		const char *key = tok;
		const char *new_outcome = NULL;
		long *ms = NULL;

		if (val)
			*val++ = '\0';
#define NEEDS_VALUE                                                                                \
	do {                                                                                       \
		if (!val) {                                                                        \
			add_error(err, errlen, name, lineno, "'%s' needs a value", key);           \
			return -EINVAL;                                                            \
		}                                                                                  \
	} while (0)
#define NO_VALUE                                                                                   \
	do {                                                                                       \
		if (val) {                                                                         \
			add_error(err, errlen, name, lineno, "'%s' takes no value", key);          \
			return -EINVAL;                                                            \
		}                                                                                  \
	} while (0)
		if (strcmp(key, "skip") == 0 || strcmp(key, "count") == 0) {
			bool is_skip = key[0] == 's';

			NEEDS_VALUE;
			if ((is_skip ? have_skip : have_count) ||
			    parse_u64(val, UINT32_MAX, &u) < 0 || (!is_skip && u == 0)) {
				add_error(err, errlen, name, lineno,
				          "%s=%s: want one number in %s..4294967295", key, val,
				          is_skip ? "0" : "1");
				return -EINVAL;
			}
			if (is_skip) {
				have_skip = true;
				ru->skip = u;
			} else {
				have_count = true;
				ru->count = u;
			}
			continue;
		}
		if (strcmp(key, "prob") == 0) {
			char *end;

			NEEDS_VALUE;
			errno = 0;
			ru->prob = strtod(val, &end);
			if (have_prob || errno || *end || end == val || !(ru->prob >= 0.0) ||
			    ru->prob > 1.0) {
				add_error(err, errlen, name, lineno,
				          "prob=%s: want one probability in 0..1", val);
				return -EINVAL;
			}
			have_prob = true;
			continue;
		}
		if (strcmp(key, "delay") == 0)
			ms = &v->delay_ms;
		else if (strcmp(key, "late") == 0)
			ms = &v->late_ms;
		else if (strcmp(key, "delay_response") == 0)
			ms = &v->delay_response_ms;
		else if (strcmp(key, "drop_response_after") == 0) {
			ms = &v->drop_after_ms;
			new_outcome = "drop_response";
		}
		if (ms) {
			NEEDS_VALUE;
			if (*ms || parse_u64(val, (uint64_t)max_ms, &u) < 0) {
				add_error(err, errlen, name, lineno,
				          "%s=%s: want one time in 0..%ld ms", key, val, max_ms);
				return -EINVAL;
			}
			*ms = (long)u;
			any_action = true;
			if (new_outcome) {
				if (outcome && strcmp(outcome, new_outcome) != 0)
					goto two_outcomes;
				outcome = new_outcome;
				v->action = FP_ACT_DROP_RESPONSE;
			}
			continue;
		}
		if (strcmp(key, "retry_after") == 0) {
			NEEDS_VALUE;
			if (v->retry_after >= 0 || parse_u64(val, 86400, &u) < 0) {
				add_error(err, errlen, name, lineno,
				          "retry_after=%s: want one time in 0..86400 s", val);
				return -EINVAL;
			}
			v->retry_after = (int)u;
			continue;
		}
		if (strcmp(key, "reason") == 0) {
			NEEDS_VALUE;
			if (v->reason[0] || strlen(val) >= sizeof(v->reason) ||
			    strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") !=
			            strlen(val) ||
			    !*val) {
				add_error(err, errlen, name, lineno,
				          "reason=%s: want one word of letters", val);
				return -EINVAL;
			}
			strcpy(v->reason, val);
			continue;
		}
		if (strcmp(key, "reframe") == 0) {
			NO_VALUE;
			have_reframe = true;
			continue;
		}

		/* The outcomes: at most one per rule. */
		if (strcmp(key, "pass") == 0) {
			NO_VALUE;
			new_outcome = "pass";
			v->action = FP_ACT_PASS;
		} else if (strcmp(key, "drop_response") == 0) {
			NO_VALUE;
			new_outcome = key;
			v->action = FP_ACT_DROP_RESPONSE;
		} else if (strcmp(key, "status") == 0) {
			NEEDS_VALUE;
			if (parse_u64(val, 599, &u) < 0 || u < 200) {
				add_error(err, errlen, name, lineno,
				          "status=%s: want an HTTP status in 200..599", val);
				return -EINVAL;
			}
			new_outcome = key;
			v->action = FP_ACT_STATUS;
			v->status = (int)u;
		} else if (strcmp(key, "reset") == 0) {
			NO_VALUE;
			new_outcome = key;
			v->action = FP_ACT_RESET;
		} else if (strcmp(key, "truncate") == 0) {
			NEEDS_VALUE;
			if (parse_u64(val, UINT32_MAX, &u) < 0) {
				add_error(err, errlen, name, lineno,
				          "truncate=%s: want a byte count in 0..4294967295", val);
				return -EINVAL;
			}
			new_outcome = key;
			v->action = FP_ACT_TRUNCATE;
			v->truncate = u;
		} else if (strcmp(key, "malformed") == 0) {
			NO_VALUE;
			new_outcome = key;
			v->action = FP_ACT_MALFORMED;
		} else if (strcmp(key, "blackhole") == 0) {
			NO_VALUE;
			new_outcome = key;
			v->action = FP_ACT_BLACKHOLE;
		} else {
			add_error(err, errlen, name, lineno, "unknown option '%s'", key);
			return -EINVAL;
		}
#undef NEEDS_VALUE
#undef NO_VALUE
		if (outcome && !(strcmp(outcome, "drop_response") == 0 &&
		                 strcmp(new_outcome, "drop_response") == 0))
			goto two_outcomes;
		outcome = new_outcome;
		any_action = true;
	}

	if (!any_action) {
		add_error(err, errlen, name, lineno, "no action (say 'pass' for none)");
		return -EINVAL;
	}
	if ((v->retry_after >= 0 || v->reason[0]) && v->action != FP_ACT_STATUS) {
		add_error(err, errlen, name, lineno, "retry_after and reason need status=");
		return -EINVAL;
	}
	if (v->delay_response_ms && v->action != FP_ACT_PASS && v->action != FP_ACT_TRUNCATE &&
	    v->action != FP_ACT_MALFORMED) {
		/* drop_response has drop_response_after; the others send no
		 * upstream response to hold. */
		add_error(err, errlen, name, lineno,
		          "delay_response goes with pass, truncate or malformed only");
		return -EINVAL;
	}
	if (have_reframe && v->action != FP_ACT_TRUNCATE) {
		add_error(err, errlen, name, lineno, "reframe needs truncate=");
		return -EINVAL;
	}
	if (v->action == FP_ACT_STATUS && !v->reason[0])
		strcpy(v->reason, default_reason(v->status));
	v->reframe = have_reframe;
	describe(v);
	return 0;

two_outcomes:
	add_error(err, errlen, name, lineno, "two outcomes ('%s' and '%s'); a rule has at most one",
	          outcome, v->action == FP_ACT_DROP_RESPONSE ? "drop_response" : tok);
	return -EINVAL;
}

static void rule_done(struct rule *ru)
{
	if (ru->re_ok)
		regfree(&ru->re);
	ru->re_ok = false;
}

int fp_ruleset_parse(const char *name, FILE *f, uint64_t seed, long max_ms, struct fp_ruleset **ret,
                     char *err, size_t errlen)
{
	struct fp_ruleset *rs = NULL;
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, bad = 0, r;
	ssize_t len;

	if (err && errlen)
		err[0] = '\0';
	rs = calloc(1, sizeof(*rs));
	if (!rs) {
		r = -ENOMEM;
		goto out;
	}
	rs->rng = seed;
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *hash = strchr(line, '#'), *p;
		struct rule ru, *grown;

		lineno++;
		if (hash)
			*hash = '\0';
		p = line + strspn(line, " \t\r\n");
		if (!*p)
			continue;
		p[strcspn(p, "\r\n")] = '\0';
		if (parse_rule(p, lineno, max_ms, &ru, name, err, errlen) < 0) {
			rule_done(&ru);
			bad++;
			continue;
		}
		grown = realloc(rs->rules, (rs->n + 1) * sizeof(*grown));
		if (!grown) {
			rule_done(&ru);
			r = -ENOMEM;
			goto out;
		}
		rs->rules = grown;
		rs->rules[rs->n++] = ru;
	}
	if (ferror(f)) {
		r = -EIO;
		add_error(err, errlen, name, lineno + 1, "read error");
		goto out;
	}
	if (bad) {
		r = -EINVAL;
		goto out;
	}
	r = (int)rs->n;
	*ret = rs;
	rs = NULL;
out:
	free(line);
	fp_ruleset_free(rs);
	return r;
}

struct fp_ruleset *fp_ruleset_free(struct fp_ruleset *rs)
{
	if (!rs)
		return NULL;
	for (size_t i = 0; i < rs->n; i++)
		rule_done(&rs->rules[i]);
	free(rs->rules);
	free(rs);
	return NULL;
}

size_t fp_ruleset_count(const struct fp_ruleset *rs)
{
	return rs ? rs->n : 0;
}

static void verdict_pass(struct fp_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->retry_after = -1;
	strcpy(v->text, "pass");
}

void fp_ruleset_match(struct fp_ruleset *rs, const char *method, const char *target,
                      struct fp_verdict *ret)
{
	for (size_t i = 0; rs && i < rs->n; i++) {
		struct rule *ru = &rs->rules[i];

		if (ru->method[0] && strcmp(ru->method, method) != 0)
			continue;
		if (regexec(&ru->re, target, 0, NULL, 0) != 0)
			continue;
		if (++ru->seen <= ru->skip)
			continue;
		if (ru->count && ru->applied >= ru->count)
			continue;
		/* 53 random bits: a double in [0, 1) with every value equally likely. */
		if (ru->prob < 1.0 && (double)(rng_next(&rs->rng) >> 11) * 0x1.0p-53 >= ru->prob)
			continue;
		ru->applied++;
		*ret = ru->v;
		return;
	}
	verdict_pass(ret);
}

/* ------------------------------------------------------------ reloading */

/* The file's identity and its bytes: file times are only as fine as the
 * kernel's coarse clock (a few ms), so two rewrites of one size in a row
 * could look alike by stat() alone; the content tells them apart. */
struct file_sig {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	char *text; /* malloc'ed content, NUL-terminated */
	size_t len;
};

struct fp_rules {
	char *path;
	uint64_t seed;
	long max_ms;
	pthread_mutex_t lock;
	struct fp_ruleset *set; /* may be NULL: no rules */
	struct file_sig seen;   /* of the file last looked at, good or bad */
};

/* Rules files are a few lines; this only stops a wrong path from eating
 * memory. */
#define RULES_FILE_MAX (1024 * 1024)

static void sig_clear(struct file_sig *s)
{
	free(s->text);
	*s = (struct file_sig){.exists = false};
}

static bool sig_eq(const struct file_sig *a, const struct file_sig *b)
{
	if (a->exists != b->exists)
		return false;
	return !a->exists ||
	       (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	        a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	        a->len == b->len && memcmp(a->text, b->text, a->len) == 0);
}

/* Read the file's signature and content.  A missing file is 0 with
 * exists = false.  Returns 0 or -errno with the reason in err. */
static int read_sig(const char *path, struct file_sig *ret, char *err, size_t errlen)
{
	struct file_sig s = {.exists = false};
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT) {
			*ret = s;
			return 0;
		}
		errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_size > RULES_FILE_MAX) {
		r = -EFBIG;
		goto fail;
	}
	s.exists = true;
	s.dev = st.st_dev;
	s.ino = st.st_ino;
	s.size = st.st_size;
	s.mtime = st.st_mtim;
	s.text = malloc((size_t)st.st_size + 1);
	if (!s.text) {
		r = -ENOMEM;
		goto fail;
	}
	/* Read to EOF, not to st_size: the file may be written meanwhile
	 * (then the next request sees another signature and reads again). */
	for (;;) {
		ssize_t n = read(fd, s.text + s.len, (size_t)st.st_size - s.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto fail;
		}
		if (n == 0 || s.len + (size_t)n == (size_t)st.st_size) {
			s.len += (size_t)n;
			break;
		}
		s.len += (size_t)n;
	}
	s.text[s.len] = '\0';
	close(fd);
	*ret = s;
	return 0;
fail:
	errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
	close(fd);
	sig_clear(&s);
	return r;
}

/* Parse sig's content; a missing file is no rules.  Returns 0 and *ret, or
 * -errno with the lines in err. */
static int parse_sig(const struct fp_rules *r, const struct file_sig *sig, struct fp_ruleset **ret,
                     char *err, size_t errlen)
{
	FILE *f;
	int n;

	*ret = NULL;
	if (!sig->exists || sig->len == 0)
		return 0;
	f = fmemopen(sig->text, sig->len, "r");
	if (!f)
		return -ENOMEM;
	n = fp_ruleset_parse(r->path, f, r->seed, r->max_ms, ret, err, errlen);
	fclose(f);
	return n < 0 ? n : 0;
}

int fp_rules_new(const char *path, uint64_t seed, long max_ms, struct fp_rules **ret, char *err,
                 size_t errlen)
{
	struct fp_rules *r = calloc(1, sizeof(*r));
	int n;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->seed = seed;
	r->max_ms = max_ms;
	if (path) {
		r->path = strdup(path);
		if (!r->path) {
			fp_rules_free(r);
			return -ENOMEM;
		}
		n = read_sig(path, &r->seen, err, errlen);
		if (n >= 0)
			n = parse_sig(r, &r->seen, &r->set, err, errlen);
		if (n < 0) {
			fp_rules_free(r);
			return n;
		}
	}
	*ret = r;
	return 0;
}

struct fp_rules *fp_rules_free(struct fp_rules *r)
{
	if (!r)
		return NULL;
	fp_ruleset_free(r->set);
	sig_clear(&r->seen);
	pthread_mutex_destroy(&r->lock);
	free(r->path);
	free(r);
	return NULL;
}

/* Under r->lock: reload when the file changed; log the outcome. */
static void maybe_reload(struct fp_rules *r)
{
	struct file_sig now = {.exists = false};
	struct fp_ruleset *set = NULL;
	char err[4096] = "";
	int n;

	n = read_sig(r->path, &now, err, sizeof(err));
	if (n < 0) {
		log_error("%s; the previous %zu rule(s) stay in force", err,
		          fp_ruleset_count(r->set));
		return;
	}
	if (sig_eq(&now, &r->seen)) {
		sig_clear(&now);
		return;
	}
	n = parse_sig(r, &now, &set, err, sizeof(err));
	/* Remember what was looked at even when it is bad: its errors are
	 * logged once, not at every request. */
	sig_clear(&r->seen);
	r->seen = now;
	if (n < 0) {
		for (char *save = NULL, *l = strtok_r(err, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save))
			log_error("%s", l);
		log_error("rules file '%s' refused; the previous %zu rule(s) stay in force",
		          r->path, fp_ruleset_count(r->set));
		return;
	}
	fp_ruleset_free(r->set);
	r->set = set;
	if (!now.exists) {
		log_info("rules file '%s' is gone: every request passes", r->path);
		return;
	}
	log_info("rules file '%s' loaded: %zu rule(s), counters start again", r->path,
	         fp_ruleset_count(set));
}

void fp_rules_match(struct fp_rules *r, const char *method, const char *target,
                    struct fp_verdict *ret)
{
	pthread_mutex_lock(&r->lock);
	if (r->path)
		maybe_reload(r);
	fp_ruleset_match(r->set, method, target, ret);
	pthread_mutex_unlock(&r->lock);
}
