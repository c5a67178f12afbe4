/* selffence: what a node does to itself when it lost leadership.
 *
 * Self-fencing is the half of STONITH that needs no one else: before the
 * Lease can pass to another node, the old master stops writing.  First it
 * asks politely — a "stop writes" callback the agent wires to its local
 * service — and waits for the confirmation up to a deadline; when none
 * comes, it SIGKILLs the service's process and confirms that it died
 * (through a pidfd when the kernel has them, which also rules out pid
 * reuse; else waitpid()/kill(pid, 0) polling).
 *
 * As a last line, a watchdog device (/dev/watchdog) can be fed while the
 * agent is healthy; self-fencing stops the feeding so the machine resets
 * when the watchdog timer runs out, even if the agent itself hangs.  An
 * orderly shutdown writes the magic close character 'V' so that closing the
 * device disarms it.  Only the protocol is tested here, with a regular file
 * standing in for the device: a real /dev/watchdog would reset the test
 * machine. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/clock.h"
#include "lib/conf.h"

/* Ask the service to stop writing and return 0 once it confirmed, or
 * -errno.  Runs on a thread of its own; should return by `deadline` (mono
 * usec), but a callback that hangs does not hold selffence_run() up: it is
 * abandoned (its thread keeps running until it returns, and `data` must
 * stay valid until then). */
typedef int (*selffence_stop_fn)(void *data, usec_t deadline);

/* The selffence.* keys of the agent's file, as this module's own struct and
 * table (offsets into struct selffence_conf); none is live.  Strings owned
 * by whoever loaded them. */
struct selffence_conf {
	int64_t stop_timeout_ms;
	int64_t kill_timeout_ms;
	char *watchdog_device; /* "" = no watchdog */
};
extern const struct conf_key selffence_conf_keys[];
extern const size_t selffence_conf_n_keys;

struct selffence_opts {
	selffence_stop_fn stop_writes; /* NULL = go straight to the kill */
	void *data;
	pid_t pid;           /* the service's process; <= 0 = none to kill */
	usec_t stop_timeout; /* how long to wait for stop_writes */
	usec_t kill_timeout; /* how long to wait for the process to die */
};

enum selffence_outcome {
	SELFFENCE_STOPPED = 0, /* stop_writes confirmed */
	SELFFENCE_KILLED = 1,  /* not confirmed: the process was killed and died */
	SELFFENCE_GONE = 2,    /* not confirmed, and the process was already gone */
};

/* Fence this node's service.  Returns a selffence_outcome (>= 0) once
 * writes are known stopped, or -errno: -ETIMEDOUT when the process
 * survived SIGKILL past kill_timeout (uninterruptible sleep on dead
 * storage: only the watchdog helps then), -EPERM when it may not be
 * signalled, -EINVAL when there is neither a callback nor a pid.  Logs the
 * decision.  Blocks at most stop_timeout + kill_timeout. */
int selffence_run(const struct selffence_opts *opts);

/* Whether process pid exists and is not a zombie.  Pure read of /proc. */
bool selffence_pid_alive(pid_t pid);

/* Wait until process pid has exited (a zombie counts), seen through a
 * pidfd, or the monotonic deadline passes.  Returns 0 when it exited (or is
 * gone already), -ETIMEDOUT, -ENOSYS without pidfd support (no proof that
 * a recycled pid cannot fake), -EINVAL for pid <= 0.  Blocks. */
int selffence_wait_exit(pid_t pid, usec_t deadline);

/* -------------------------------------------------------------- watchdog */

struct selffence_watchdog;

/* Open the watchdog device at path (opening arms it).  Returns 0 and
 * *ret, or -errno with detail in err. */
int selffence_watchdog_open(const char *path, struct selffence_watchdog **ret, char *err,
                            size_t errlen);

/* Feed (keep alive) — the agent calls it while every check is healthy.
 * Returns 0, -ECANCELED once selffence_watchdog_starve() was called, or the
 * write's -errno.  Thread-safe; does not block (one write). */
int selffence_watchdog_feed(struct selffence_watchdog *w);

/* Stop feeding for good: the node resets when the timer runs out.
 * Thread-safe, async-signal-unsafe. */
void selffence_watchdog_starve(struct selffence_watchdog *w);

/* Close.  orderly = true writes the magic close 'V' first (disarm; refused
 * after a starve, which must not be undone); false closes without it, which
 * leaves a real watchdog armed.  Accepts NULL; returns NULL. */
struct selffence_watchdog *selffence_watchdog_close(struct selffence_watchdog *w, bool orderly);
