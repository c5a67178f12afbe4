/* failpoint: named fault points compiled into every kubefence program.
 *
 * A fault point marks an instant where a pause, a crash, a delay or an
 * error changes what happens next (a Lease write whose answer is lost, a
 * writer paused inside a snapshot commit).  Tests arm points by name at run
 * time, so they hit an exact instant instead of hoping a random fault lands
 * there; the same binaries run in production, where no point is armed and
 * each costs one predictable branch on a global.
 *
 *   KUBEFENCE_FAILPOINTS="name=SPEC[;name=SPEC...]"
 *   SPEC  = TERM[->TERM...]      terms are used in order; when a term's count
 *                                is used up the next one applies; after the
 *                                last, the point is off again
 *   TERM  = [N*]ACTION           N: how many hits this term takes (default:
 *                                every hit)
 *   ACTION = off | print | pause | stop | crash | delay(MS) | error(ERRNO)
 *
 *   KUBEFENCE_FAILPOINT_DIR=DIR  the control directory.  `pause` needs it: a
 *                                paused thread creates DIR/NAME.PID.paused and
 *                                waits until that file is removed.  Every
 *                                action that fires appends a line
 *                                "REALTIME_US PID NAME ACTION" to DIR/fired.
 *                                DIR/failpoints, when present, holds a SPEC
 *                                list that replaces the environment's and is
 *                                re-read whenever it changes (at each hit of
 *                                any point), so tests re-arm running programs.
 *
 * docs/failpoints.md lists every point (generated: kubefencectl failpoints).
 * Thread-safe. */
#pragma once

#include <stdio.h>

#include "lib/failpoint_table.h"

enum failpoint_id {
#define FP_ENUM_(id, name, help) FP_##id,
	KF_FAILPOINTS(FP_ENUM_)
#undef FP_ENUM_
	        FP__COUNT
};

/* Exit status of the `crash` action (_exit, no atexit handlers, no flush). */
#define FAILPOINT_CRASH_STATUS 97

/* Nonzero while any point may fire: something is armed or a control
 * directory is set.  Written only by failpoint_setup()/failpoint_set(). */
extern int failpoint_active_;

/* The slow path: apply the point's current term.  Returns 0 to go on, or the
 * -errno of an `error` action.  May block (pause, delay) or not return
 * (crash, stop until SIGCONT). */
int failpoint_hit_(enum failpoint_id id);

/* Evaluate fault point ID (an identifier of failpoint_table.h).  Returns 0,
 * or -errno when an `error(ERRNO)` action fired: the caller fails its
 * operation there as if that error had happened.  Call sites without an
 * operation to fail cast the result to (void). */
#define FAILPOINT(id) (__builtin_expect(failpoint_active_ != 0, 0) ? failpoint_hit_(FP_##id) : 0)

/* Arm the points from KUBEFENCE_FAILPOINTS and KUBEFENCE_FAILPOINT_DIR.
 * Nothing set: returns 0 and arms nothing.  A bad spec (unknown point, bad
 * action, `pause` without a control directory) returns -EINVAL with the
 * reason in err and arms nothing; programs then refuse to start. */
int failpoint_setup(char *err, size_t errlen);

/* Replace the armed set with `spec` (the KUBEFENCE_FAILPOINTS syntax; ';' or
 * newlines separate entries, '#' starts a comment line; NULL or "" disarms
 * every point).  All or nothing: on -EINVAL the previous set stays armed. */
int failpoint_set(const char *spec, char *err, size_t errlen);

/* Set (or with NULL, clear) the control directory.  Returns 0 or -EINVAL
 * (a path too long). */
int failpoint_set_dir(const char *dir);

/* How often point `id` was reached since it was last armed, whether an
 * action fired or not (every hit counts only while failpoint_active_). */
unsigned long failpoint_hits(enum failpoint_id id);

/* The name of a point, and the point of a name (-ENOENT). */
const char *failpoint_name(enum failpoint_id id);
int failpoint_from_name(const char *name);

/* Write the Markdown reference of every point (docs/failpoints.md). */
void failpoint_print_reference(FILE *out);
