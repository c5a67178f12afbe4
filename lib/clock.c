/* clock: see clock.h. */
#include "config.h"

#include "lib/clock.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

static usec_t ts_to_usec(const struct timespec *ts)
{
	return (usec_t)ts->tv_sec * USEC_PER_SEC + ts->tv_nsec / 1000;
}

usec_t clock_mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts_to_usec(&ts);
}

usec_t clock_boot_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts_to_usec(&ts);
}

usec_t clock_boot_until(usec_t mono_until, usec_t mono_now, usec_t boot_now)
{
	if (mono_until == USEC_INFINITY)
		return USEC_INFINITY;
	return boot_now + (mono_until - mono_now);
}

usec_t clock_real_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_to_usec(&ts);
}

void clock_format_microtime(usec_t t, char buf[static 32])
{
	time_t sec = (time_t)(t / USEC_PER_SEC);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, 24, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%06ldZ", (long)(t % USEC_PER_SEC));
}

void clock_sleep_until(usec_t deadline)
{
	struct timespec ts = {
	        .tv_sec = (time_t)(deadline / USEC_PER_SEC),
	        .tv_nsec = (long)(deadline % USEC_PER_SEC) * 1000,
	};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}
