/* scen: the scenario helpers the failover test programs share (Check
 * programs over fo.h: check_failover, check_failsafe).  fo_fail() fails the
 * running Check test; the rest read what a scenario's processes wrote or
 * answered.  Each program keeps its own scenario start and finish. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "lib/clock.h"
#include "tests/failover/fo.h"

struct scen {
	struct fo_cluster c;
	struct fo_workload w;
	struct fo_watcher wa;
};

/* d in seconds, for messages. */
double secs(usec_t d);

/* Wait up to `ms` until path holds at least `count` lines with needle
 * (and needle2 unless NULL); true, with the first such line's mono= stamp in
 * *ret_mono (may be NULL). */
bool wait_log(const char *path, int count, long ms, usec_t *ret_mono, const char *needle,
              const char *needle2);

/* Every node's agent and metad log, to the test's output. */
void dump_all(struct scen *s);

/* GET http://127.0.0.1:<node i's http.listen><path>: the body (caller
 * frees; NULL when none) and the HTTP status in *ret_code (0: no answer). */
char *agent_http(struct scen *s, size_t i, const char *path, long *ret_code);

/* agent_http that fails the test unless answered 200 with a body. */
char *agent_get(struct scen *s, size_t i, const char *path);

/* The value of one series of node i's /metrics ("name" or
 * "name{label=\"v\"}"); -1 when absent. */
double metric_of(struct scen *s, size_t i, const char *series);

/* The longest gap between two writes node srv acknowledged in [from, to]
 * (the pause a client of that master saw). */
usec_t longest_pause(struct scen *s, int srv, usec_t from, usec_t to);
