/* kftest: what every Check program of kubefence shares (tests/lib/).
 *
 * kft_main() runs a suite the project's way: CK_NORMAL output (CK_VERBOSE on
 * request), line-buffered stdout so that a test's own lines and Check's keep
 * their order in the log, an optional log level, fork mode forced where a
 * program's timeouts depend on it, and one machine-readable summary, a TAP
 * file that tests/summary.sh reads (see kft_main).  kft_add() adds one test
 * in its own TCase, kft_tcase() a TCase for several.  kft_env() and kft_measured() are the helpers
 * of the integration tests. */
#pragma once

#include <check.h>
#include <stdbool.h>

#include "tests/lib/kft_util.h"

struct kft_opts {
	bool verbose;      /* CK_VERBOSE: one line per test, for the long integration runs */
	bool fork;         /* force CK_FORK: timeouts hold only there, whatever CK_FORK says */
	int log_level;     /* log_max_level for the run; 0 leaves lib/log.c's default */
	const char *ident; /* log_set_ident(), or NULL */
};

/* Run suite s (the runner takes it over) with opts (NULL: the defaults) and
 * return the exit status for main(): EXIT_SUCCESS when every test passed,
 * EXIT_FAILURE otherwise.
 *
 * When KF_TEST_RESULTS names a directory (the test harness sets it per test
 * in AM_TESTS_ENVIRONMENT), the results go there as TAP, in
 * KF_TEST_RESULTS/PROGRAM.PID.tap: one file per run, so that a test script
 * that runs several Check programs keeps all their results.  The directory
 * is created when missing.  Blocks for the whole run. */
int kft_main(Suite *s, const struct kft_opts *opts);

/* Add to s an empty TCase named name, with a timeout of timeout_s seconds
 * (0: Check's default, CK_DEFAULT_TIMEOUT) and the checked fixtures setup
 * and teardown (each may be NULL), and return it: for a TCase that holds
 * several tests or loop tests. */
TCase *kft_tcase(Suite *s, const char *name, double timeout_s, SFun setup, SFun teardown);

/* kft_tcase(), then test t in it: one test in a TCase of its own.  Returns
 * the TCase, for more tests or fixtures. */
TCase *kft_add(Suite *s, const char *name, const TTest *t, double timeout_s, SFun setup,
               SFun teardown);

/* The value of environment variable name, which the test's script exported;
 * the test fails (never skips) when it is missing or empty, naming `script`
 * to run it through. */
const char *kft_env(const char *name, const char *script);
