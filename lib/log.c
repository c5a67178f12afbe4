/* log: formatting and output of log lines (see log.h). */
#include "config.h"

#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_max_level = LOG_LEVEL_INFO;
static const char *log_ident = "kubefence";
static int log_mono;

void log_set_ident(const char *ident)
{
	if (ident)
		log_ident = ident;
}

void log_set_monotonic(int on)
{
	__atomic_store_n(&log_mono, !!on, __ATOMIC_RELAXED);
}

static const struct conf_choice log_levels[] = {
        {"error", LOG_LEVEL_ERROR},
        {"warning", LOG_LEVEL_WARNING},
        {"info", LOG_LEVEL_INFO},
        {"debug", LOG_LEVEL_DEBUG},
        {NULL, 0},
};

const struct conf_key log_conf_keys[] = {
        {.name = "log.level",
         .type = CONF_ENUM,
         .def = "info",
         .choices = log_levels,
         .offset = offsetof(struct log_conf, level),
         .live = true,
         .help = "Most verbose level that is logged."},
        {.name = "log.monotonic",
         .type = CONF_BOOL,
         .def = "false",
         .offset = offsetof(struct log_conf, monotonic),
         .live = true,
         .help = "Prefix log lines with CLOCK_MONOTONIC seconds, to line up the logs of "
                 "several processes of one node."},
};
const size_t log_conf_n_keys = sizeof(log_conf_keys) / sizeof(log_conf_keys[0]);

void log_conf_apply(const struct log_conf *c)
{
	__atomic_store_n(&log_max_level, c->level, __ATOMIC_RELAXED);
	log_set_monotonic(c->monotonic);
}

static const char *const level_names[] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARNING] = "warning",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

int log_level_from_string(const char *s)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (level_names[i] && strcmp(level_names[i], s) == 0)
			return (int)i;
	return -EINVAL;
}

const char *log_level_to_string(int level)
{
	if (level < 0 || (size_t)level >= sizeof(level_names) / sizeof(level_names[0]) ||
	    !level_names[level])
		return "unknown";
	return level_names[level];
}

void log_internal(int level, const char *func, const char *fmt, ...)
{
	int saved_errno = errno;
	char msg[2048], stamp[64], mono[32] = "";
	struct timespec ts, mts;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (__atomic_load_n(&log_mono, __ATOMIC_RELAXED)) {
		clock_gettime(CLOCK_MONOTONIC, &mts);
		snprintf(mono, sizeof(mono), " mono=%lld.%06ld", (long long)mts.tv_sec,
		         mts.tv_nsec / 1000);
	}
	/* One fprintf per line so that lines of threads do not interleave. */
	fprintf(stderr, "%s.%03ldZ%s %s %s[%d] %s: %s\n", stamp, ts.tv_nsec / 1000000, mono,
	        log_level_to_string(level), log_ident, (int)getpid(), func, msg);
	errno = saved_errno;
}
