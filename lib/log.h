/* log: the one logging macro family of kubefence.
 *
 * Every line carries the level, the program, the pid and the function that
 * decided to log; the level is checked before any formatting happens.  Lines
 * go to stderr (the container runtime collects them).  A function either
 * logs its errors or returns them, never both. */
#pragma once

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERROR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* The process-wide level; one of the two mutable globals allowed. */
extern int log_max_level;

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
		if (log_max_level >= (level))                                                      \
			log_internal((level), __func__, __VA_ARGS__);                              \
	} while (0)

#define log_error(...)   log_full(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_full(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_full(LOG_LEVEL_DEBUG, __VA_ARGS__)
