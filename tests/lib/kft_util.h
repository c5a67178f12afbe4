/* kft_util: the test helpers with no Check dependency, which the benchmarks
 * link too (kftest.h includes this header for the Check programs): the
 * environment a test's script exported, the `measured:` recorder and the
 * counting of log lines. */
#pragma once

#include <stdarg.h>

#include "lib/clock.h"

/* The value of environment variable name, or NULL when it is missing or
 * empty: what a test or benchmark is given by the script that runs it.
 * kft_env() (kftest.h) fails a Check test on NULL. */
const char *kft_getenv(const char *name);

/* Record one measurement: the line "what N.NNN" appended to dir/measurements
 * (dir NULL: none), and "measured: what N.NNN s" on stdout, which
 * tests/run.sh prints at its end. */
void kft_measured(const char *dir, const char *what, double seconds);

/* Count the lines of file path that contain every one of the NULL-ended
 * needles (at most 8 are used); with ret_mono, the "mono=S.US" stamp of the
 * first such line (0 when it has none) — the stamp lib/log.c writes.  A file
 * that cannot be opened has no lines.  kft_log_vcount() takes the needles as
 * a va_list, for wrappers. */
int kft_log_count(const char *path, usec_t *ret_mono, ...) __attribute__((sentinel));
int kft_log_vcount(const char *path, usec_t *ret_mono, va_list needles);

/* The "mono=S.US" stamp of a log line, or 0 when it has none. */
usec_t kft_log_mono(const char *line);
