/* log: the one logging macro family of kubefence.
 *
 * Every line carries the level, the program, the pid and the function that
 * decided to log; the level is checked before any formatting happens.  Lines
 * go to stderr (the container runtime collects them).  A function either
 * logs its errors or returns them, never both. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/conf.h"

enum log_level {
	LOG_LEVEL_ERROR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* The process-wide level; one of the two mutable globals allowed.  Read
 * and written atomically (log_conf_apply() changes it while threads log). */
extern int log_max_level;

/* The log.* keys of a program's configuration, as their own table
 * (offsets into struct log_conf): a program that embeds the struct adds
 * the offset of its member to each row.  Both keys are live: applying a new
 * value while the program runs is one atomic store each. */
struct log_conf {
	int level; /* enum log_level */
	bool monotonic;
};
extern const struct conf_key log_conf_keys[];
extern const size_t log_conf_n_keys;

/* Make c the process's logging settings.  Thread-safe; never blocks. */
void log_conf_apply(const struct log_conf *c);

/* Program name shown in each line; set once from main(). */
void log_set_ident(const char *ident);

/* Prefix each line with CLOCK_MONOTONIC seconds too, so lines of several
 * processes on one node can be put on one time line. */
void log_set_monotonic(int on);

/* Parse "error", "warning", "info" or "debug".  Returns the level, or
 * -EINVAL for anything else. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

void log_internal(int level, const char *func, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_full(level, ...)                                                                       \
	do {                                                                                       \
		if (__atomic_load_n(&log_max_level, __ATOMIC_RELAXED) >= (level))                  \
			log_internal((level), __func__, __VA_ARGS__);                              \
	} while (0)

#define log_error(...)   log_full(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_full(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_full(LOG_LEVEL_DEBUG, __VA_ARGS__)
