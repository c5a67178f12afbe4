/* clock: monotonic and wall time in microseconds.
 *
 * Decisions about expiry are made on CLOCK_MONOTONIC only; wall time is for
 * what is written into API objects (renewTime) and logs.  Pure logic takes
 * `now` as a parameter so that tests drive it with an injected clock. */
#pragma once

#include <stdint.h>

typedef int64_t usec_t;

#define USEC_PER_MSEC ((usec_t)1000)
#define USEC_PER_SEC  ((usec_t)1000000)
#define USEC_INFINITY INT64_MAX

usec_t clock_mono_usec(void);
usec_t clock_real_usec(void);

/* CLOCK_BOOTTIME: like CLOCK_MONOTONIC, but it goes on running while the
 * system is suspended.  A permission measured on CLOCK_MONOTONIC (a term,
 * a write grant) must not outlive its length on this clock either, or a
 * node that resumes from a suspend would take the whole suspension as not
 * having happened: clock_boot_until() gives, for a CLOCK_MONOTONIC
 * deadline `mono_until` read at (mono_now, boot_now), the same deadline on
 * CLOCK_BOOTTIME.  (A paused VM stops both clocks: nothing inside the guest
 * can see that; only target-enforced fencing covers it.)  Pure. */
usec_t clock_boot_usec(void);
usec_t clock_boot_until(usec_t mono_until, usec_t mono_now, usec_t boot_now);

/* Format wall time `t` as RFC 3339 with microseconds ("MicroTime" in the
 * Kubernetes API): 2006-01-02T15:04:05.000000Z.  buf must hold 32 bytes. */
void clock_format_microtime(usec_t t, char buf[static 32]);

/* Sleep until `deadline` on the monotonic clock (returns at once if passed). */
void clock_sleep_until(usec_t deadline);
