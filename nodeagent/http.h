/* http: the agent's operations endpoints, served by libmicrohttpd on one
 * internal polling thread.
 *
 *   GET /healthz  200 "ok" while the agent's threads are alive (the
 *                 orchestrator and election loops turn, no job is stuck), else 503
 *                 with the reason (a liveness probe: failing restarts the pod)
 *   GET /readyz   200 "ok" when the agent is ready (connected to the API
 *                 server and, if configured, to the local service), else 503
 *                 with the reason (a readiness probe)
 *   GET /metrics  the Prometheus text exposition 0.0.4 of a metrics registry
 *   GET /status   the agent's view as JSON (schema below), read by
 *                 `kubefencectl status`
 *
 * HEAD is answered like GET; other methods get 405 with "Allow: GET, HEAD",
 * other paths 404.  Nothing here changes the agent's state, and no endpoint
 * needs authentication: the answers carry no secrets.  A connection idle for
 * HTTP_CONNECTION_TIMEOUT_S is closed and at most HTTP_CONNECTIONS_MAX are
 * served at once, so a slow or hostile client cannot hold the server.
 *
 * The /status object (version 1; every member optional except "version"):
 *
 *   {"version": 1, "node": "n1", "identity": "n1",
 *    "role": "leader" | "follower" | ...,
 *    "holder": "n2", "epoch": 7,
 *    "lease_age_ms": 850,                 -- since the Lease was last renewed
 *    "service": {"state": "primary", "connected": true, "detail": "..."},
 *    "last_failover": {"from": "n2", "to": "n1",
 *                      "started_at": "2024-01-02T03:04:05.000000Z",
 *                      "total_ms": 2310, "ok": true,
 *                      "steps": [STEP...]} | null,
 *    "fences": [{"target": "n2", "method": "pod", "ok": true,
 *                "started_at": "...", "total_ms": 120, "steps": [STEP...]}...]}
 *
 *   "fences" holds the agent's last fence runs (at most 10), newest first:
 *   element 0 is the run that started last.  `kubefencectl status` prints
 *   them in that order and says so.
 *
 *   STEP = {"step": "detect", "at_ms": 0, "duration_ms": 12, "detail": "..."}
 *          at_ms counts from the start of the failover or fence run.
 *
 * http_status_step() builds a STEP so that the agent and the CLI agree. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "lib/conf.h"

struct metrics;
struct http_server;

#define HTTP_STATUS_VERSION       1
#define HTTP_CONNECTION_TIMEOUT_S 10
#define HTTP_CONNECTIONS_MAX      32

/* Callbacks run on the server's thread, one request at a time, while the
 * agent's threads run: they must only read state that is safe to read
 * concurrently (take the agent's lock) and must not block for long.
 *
 * A check writes a short reason (for 503) into reason (reason_len bytes,
 * pre-set to "") and returns true for healthy/ready. */
typedef bool (*http_check_fn)(void *userdata, char *reason, size_t reason_len);

/* Fill `obj` (an empty JSON object owned by the server; "version" is added
 * afterwards) with the members of the schema above.  Return 0, or -errno for
 * 500 with detail (if any) in err. */
typedef int (*http_status_fn)(void *userdata, cJSON *obj, char *err, size_t errlen);

/* The http.* keys of the agent's file, as this module's own struct and
 * table (offsets into struct http_conf).  http.listen is not live: the
 * server binds once. */
struct http_conf {
	char *listen; /* "" = off */
};
extern const struct conf_key http_conf_keys[];
extern const size_t http_conf_n_keys;

struct http_options {
	/* "HOST:PORT" (see http_parse_listen()). */
	const char *listen;
	/* NULL: /healthz answers 200 as long as the server runs. */
	http_check_fn healthy;
	/* NULL: /readyz answers 200 as long as the server runs. */
	http_check_fn ready;
	/* NULL: /status answers 404. */
	http_status_fn status;
	void *userdata;
	/* Borrowed; must outlive the server.  NULL: /metrics answers 404. */
	struct metrics *metrics;
};

/* Parse a listen address, the one reader of `http.listen` (the conf check
 * calls it too, so a value --config-test accepts is one http_start() binds):
 *
 *   IPV4:PORT     a numeric IPv4 address, e.g. 127.0.0.1:9464
 *   [IPV6]:PORT   a numeric IPv6 address in brackets, e.g. [::1]:9464, [::]:9464
 *   localhost:PORT  127.0.0.1
 *   *:PORT, :PORT   every IPv4 address (0.0.0.0)
 *
 * Host names other than localhost are refused, not resolved (resolving
 * could block, and a name of several addresses would leave the choice to
 * chance); so is an IPv6 address without brackets.  PORT is decimal
 * 0..65535, 0 picking a free port.  Returns 0 with the address in *ret and
 * its length in *ret_len, or -EINVAL with the reason in err: one sentence
 * that quotes the whole text, fit to follow "FILE:LINE: KEY: ".  Pure. */
int http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err,
                      size_t errlen);

/* Start serving on o->listen.  The options are copied except the borrowed
 * userdata and metrics.  Returns 0 and the server in *ret (stop with
 * http_stop()), -EINVAL for a bad address (reason in err), -EADDRINUSE,
 * -EACCES (privileged port), -EADDRNOTAVAIL (not a local address) or -EIO
 * with detail in err.  Does not log.  Binds before returning: a client may
 * connect as soon as this returns. */
int http_start(const struct http_options *o, struct http_server **ret, char *err, size_t errlen);

/* The port the server listens on (the one picked, for port 0). */
uint16_t http_port(const struct http_server *s);

/* Stop: close the listening socket and every connection, and join the
 * server's thread (a callback running is waited for).  Accepts NULL;
 * returns NULL.  Blocks at most as long as the slowest callback. */
struct http_server *http_stop(struct http_server *s);

/* Append a STEP {step, at_ms, duration_ms, detail} to the JSON array
 * `steps`; detail may be NULL.  Returns 0 or -ENOMEM. */
int http_status_step(cJSON *steps, const char *step, int64_t at_ms, int64_t duration_ms,
                     const char *detail);
