/* fp_rules: the fault proxy's rules: which requests get which fault.
 *
 * A rules file has one rule per line (blank lines and `#` comments are
 * ignored):
 *
 *     METHOD REGEX [skip=N] [count=N] [prob=P] ACTION...
 *
 * METHOD is an upper-case HTTP method or `*`; REGEX a POSIX extended regular
 * expression matched against the request target (path and query string, as
 * sent; it must not contain white space).  The actions (see
 * docs/fault-proxy.md) are `pass`, `delay=MS`, `delay_response=MS`,
 * `drop_response`, `drop_response_after=MS`, `status=CODE` (with
 * `retry_after=S`, `reason=WORD`), `reset`, `truncate=N` (with `reframe`),
 * `malformed` and `blackhole`; at most one of drop_response, status, reset,
 * truncate, malformed, blackhole per rule.
 *
 * Rules are tried in file order and the first that applies decides.  A rule
 * counts every request it is tried on and matches; it applies to none of the
 * first `skip` of them, then to `count` of them (default: all), each with
 * probability `prob` (drawn from a generator seeded with the proxy's seed
 * when the rules are loaded).  A rule that does not apply leaves the request
 * to the rules below it.  Loading a new file starts every counter again.
 *
 * A file is applied whole or not at all: one bad line and it is refused,
 * with every bad line reported as `FILE:LINE: reason`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum fp_action {
	FP_ACT_PASS,
	FP_ACT_DROP_RESPONSE,
	FP_ACT_STATUS,
	FP_ACT_RESET,
	FP_ACT_TRUNCATE,
	FP_ACT_MALFORMED,
	FP_ACT_BLACKHOLE,
};

/* What to do with one request. */
struct fp_verdict {
	enum fp_action action;
	int line; /* the rule's line, 0 when no rule applied */
	long delay_ms;
	long late_ms; /* held, then forwarded even when the client gave up meanwhile */
	long delay_response_ms;
	long drop_after_ms;
	int status;
	int retry_after; /* seconds, -1 = no Retry-After header */
	char reason[48]; /* Status reason, "" = the usual one for `status` */
	uint64_t truncate;
	bool reframe;
	char text[160]; /* the actions as written in the log: "pass", "status=503" */
};

struct fp_ruleset;

/* Parse rules from f; `name` is the file name used in messages.  Times are
 * bounded by max_ms.  Returns the number of rules and *ret, or -EINVAL with
 * one `name:LINE: reason` line per bad line in err (newline-separated; as
 * many as fit), or -ENOMEM / the -errno of reading. */
int fp_ruleset_parse(const char *name, FILE *f, uint64_t seed, long max_ms, struct fp_ruleset **ret,
                     char *err, size_t errlen);

struct fp_ruleset *fp_ruleset_free(struct fp_ruleset *rs);

size_t fp_ruleset_count(const struct fp_ruleset *rs);

/* Decide the verdict for one request and advance the counters.  Not
 * thread-safe: the caller serialises. */
void fp_ruleset_match(struct fp_ruleset *rs, const char *method, const char *target,
                      struct fp_verdict *ret);

/* A rules file that is re-read when it changes. */
struct fp_rules;

/* Load `path` (NULL = no file: every request passes).  A missing file is an
 * empty rule set (the file may appear later); a bad one is -EINVAL with the
 * lines in err.  Returns 0 and *ret, or -errno. */
int fp_rules_new(const char *path, uint64_t seed, long max_ms, struct fp_rules **ret, char *err,
                 size_t errlen);

struct fp_rules *fp_rules_free(struct fp_rules *r);

/* Read the file, and when its inode, size, mtime or content differ from
 * what was last looked at, load it (logging what was loaded, or each bad
 * line and that the previous rules stay); then fp_ruleset_match().  The
 * content is compared too because file times are only as fine as the
 * kernel's coarse clock.  Thread-safe; blocks only on the file read. */
void fp_rules_match(struct fp_rules *r, const char *method, const char *target,
                    struct fp_verdict *ret);
