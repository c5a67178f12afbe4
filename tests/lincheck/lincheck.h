/* lincheck: loads operation histories (lib/history.h, docs/history.md) and
 * decides whether they are linearizable for a map of independent registers.
 *
 * This is the pure logic behind kf-lincheck, kept apart from its main() so
 * that tests can build histories in memory and look at the verdict and the
 * minimised counterexample.  Usage:
 *
 *   struct lc_history *h;  lc_history_new(&h);
 *   lc_history_load(h, "a.hist", err, sizeof(err));   (as many files as wanted)
 *   struct lc_report *rep;  lc_check(h, NULL, &rep, err, sizeof(err));
 *   lc_report_verdict(rep) == LC_LINEARIZABLE ...
 *   lc_report_print(rep, stdout);
 *   rep = lc_report_free(rep);  h = lc_history_free(h);
 *
 * Nothing here logs; errors come back as -errno plus a message in the
 * caller's buffer ("FILE:LINE: reason" for a bad history).  Nothing blocks
 * except file reads.  Not thread-safe: one history and its reports belong to
 * one thread at a time. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/history.h"

struct lc_history;
struct lc_report;

/* A new, empty history.  Returns 0 and *ret, or -ENOMEM. */
int lc_history_new(struct lc_history **ret);

/* Append the operations of the history file at path ("-" reads stdin).
 * Lines starting with '#' and empty lines are skipped.  Returns 0, -EINVAL
 * for a malformed line (err: "PATH:LINE: reason"; nothing of the file is
 * kept then), -ENOMEM, or the -errno of open/read (err names the file). */
int lc_history_load(struct lc_history *h, const char *path, char *err, size_t errlen);

/* The same for a history held in memory; name stands for the file name in
 * messages. */
int lc_history_load_string(struct lc_history *h, const char *name, const char *text, char *err,
                           size_t errlen);

/* Add one operation directly, as if it were a line of file name at line;
 * value/master NULL mean "-".  Returns 0, -EINVAL (err says why: the same
 * checks as the loader), or -ENOMEM. */
int lc_history_add(struct lc_history *h, const char *client, enum hist_op op, const char *key,
                   const char *value, uint64_t invoke_us, uint64_t complete_us,
                   enum hist_result result, const char *master, char *err, size_t errlen);

/* Number of operations loaded so far. */
size_t lc_history_size(const struct lc_history *h);

/* Takes NULL; returns NULL. */
struct lc_history *lc_history_free(struct lc_history *h);

struct lc_options {
	/* Give up on a key (verdict LC_UNKNOWN) when one search explores more
	 * than this many (linearized set, state) configurations; 0: default
	 * (LC_DEFAULT_MAX_CONFIGS). */
	uint64_t max_configs;
	/* Do not minimise a counterexample window of more ops than this; 0:
	 * default (LC_DEFAULT_MINIMISE_OPS). */
	size_t minimise_ops;
};

#define LC_DEFAULT_MAX_CONFIGS  (4u * 1000 * 1000)
#define LC_DEFAULT_MINIMISE_OPS 400

enum lc_verdict {
	LC_LINEARIZABLE = 0,
	LC_VIOLATION = 1,
	/* A search hit max_configs and no key was found violating. */
	LC_UNKNOWN = 3,
};

/* Check every key of h.  opt may be NULL.  Returns 0 and *ret (whatever the
 * verdict), -EINVAL for a history error that only shows across lines (err:
 * "FILE:LINE: reason", e.g. a value written twice to one key), or -ENOMEM.
 * h must outlive the report (the report points into its strings). */
int lc_check(struct lc_history *h, const struct lc_options *opt, struct lc_report **ret, char *err,
             size_t errlen);

/* One operation as shown in a counterexample.  Strings belong to the
 * history; value is "-" for none.  For an info put or del, effect_by_us is
 * the instant by which it must have taken effect if it did at all (see
 * docs/history.md), and optional says whether never taking effect is still
 * allowed; for other operations effect_by_us == complete_us. */
struct lc_event {
	const char *client;
	const char *key;
	const char *value;
	const char *master;
	enum hist_op op;
	enum hist_result result;
	uint64_t invoke_us;
	uint64_t complete_us;
	uint64_t effect_by_us;
	int optional;
	const char *file;
	unsigned line;
};

/* A key whose sub-history has no linearization. */
struct lc_violation {
	const char *key;
	/* The segment (between two quiescent points) where every possible
	 * state ran out, and its size. */
	size_t segment_ops;
	/* The minimised counterexample, sorted by invocation: non-linearizable
	 * from the start states below, and 1-minimal (removing any op, with the
	 * reads that depend on it, makes it linearizable) unless its window was
	 * larger than minimise_ops. */
	size_t nops;
	const struct lc_event *ops;
	/* The possible register states before the first op of ops ("-": no
	 * value), and for each the operation that wrote it (NULL for "-"). */
	size_t nstart;
	const char *const *start_states;
	const struct lc_event *const *start_writers;
};

struct lc_stats {
	size_t ops;  /* every line loaded */
	size_t keys; /* distinct keys */
	size_t ok, fail, info;
	size_t info_dropped; /* info writes no read can tell from never done */
	size_t segments;     /* independent pieces searched */
	size_t max_segment;  /* ops in the largest one */
	uint64_t configs;    /* search configurations explored, in total */
	size_t undecided;    /* keys given up on (max_configs) */
	uint64_t first_us;   /* the first invocation; times are shown from it */
};

enum lc_verdict lc_report_verdict(const struct lc_report *r);
const struct lc_stats *lc_report_stats(const struct lc_report *r);
size_t lc_report_nviolations(const struct lc_report *r);
/* i < lc_report_nviolations(r); the pointer lives as long as r. */
const struct lc_violation *lc_report_violation(const struct lc_report *r, size_t i);

/* Print every violation (at most max_shown of them; 0: all) with its
 * counterexample, for a human. */
void lc_report_print(const struct lc_report *r, size_t max_shown, FILE *out);

/* The one-line summary: "lincheck: N ops, K keys, verdict linearizable". */
void lc_report_summary(const struct lc_report *r, FILE *out);

/* Write the JSON summary (ops, keys, ok/fail/info, verdict, violations with
 * key and counterexample) to path.  Returns 0 or -errno (err says which). */
int lc_report_write_json(const struct lc_report *r, const char *path, char *err, size_t errlen);

/* Takes NULL; returns NULL. */
struct lc_report *lc_report_free(struct lc_report *r);

/* "linearizable", "violation" or "unknown". */
const char *lc_verdict_name(enum lc_verdict v);
