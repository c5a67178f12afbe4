/* server: the TCP side and the role of kubefence-metad.
 *
 * One accept thread and one thread per client connection (capped by
 * max_clients): a thread blocks in metastore_put while its write syncs, so
 * concurrent writers of different connections share one group commit
 * instead of queueing behind each other.  A connection may pipeline
 * requests; it must complete each request within idle_timeout_ms of the
 * previous answer (or of connecting) and read its answers within the same
 * time, or it is closed.
 *
 * The role (standby or master of one epoch, with a write deadline on
 * CLOCK_MONOTONIC) is changed by server_promote/renew/demote, which the
 * control socket or --standalone calls.  A master checks the deadline
 * before each write and again after it is durable and before answering OK;
 * a write that became durable too late, or that the store refused with
 * -ESTALE (a newer epoch on the volume) or an I/O error, makes the server
 * demote itself and call the on_self_demote hook. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "storage/store.h"

struct server_options {
	const char *listen;             /* "HOST:PORT" ("[v6]:PORT" for IPv6) */
	const struct store_spec *store; /* where the metadata lives (copied) */
	bool standby_reads;             /* a standby serves GET/LIST from a read-only copy */
	int standby_refresh_ms;         /* how old that copy may get (0: 1000) */
	int max_clients;                /* 0: 256 */
	int idle_timeout_ms;            /* 0: 60000 */
	uint32_t list_max;              /* most keys per LIST (0: 10000; at most PROTO_LIST_MAX) */
	uint64_t
	        snapshot_records; /* records between automatic snapshots (0: the store's default) */
	uint64_t snapshot_min_records; /* metastore_options.snapshot_min_records (0: its default) */
	/* The server stepped down by itself (stale epoch, I/O error, write
	 * durable after the deadline).  Called from a connection thread without
	 * any server lock held; may be NULL. */
	void (*on_self_demote)(void *userdata, uint64_t epoch, const char *reason);
	void *userdata;
};

struct server;

/* Bind the listening socket.  Strings are copied.  Returns 0 and *ret;
 * -EINVAL (bad listen address, detail in err), or the error of
 * getaddrinfo/bind/listen.  Does not block. */
int server_new(const struct server_options *opts, struct server **ret, char *err, size_t errlen);

/* The bound address as "HOST:PORT" (useful with port 0). */
const char *server_address(struct server *s);

/* Start accepting.  Returns 0 or -errno of pthread_create. */
int server_start(struct server *s);

/* Stop accepting, close every connection, wait up to 5 s for their threads,
 * close the store, free.  Accepts NULL; returns NULL. */
struct server *server_free(struct server *s);

/* Stop serving: no write is acknowledged any more (new ones are refused,
 * one already under way is answered ERR indeterminate), the listener and
 * every client connection are closed, and their threads are waited for (up
 * to 5 s).  The store stays open and the role unchanged, so the control
 * socket may still be served until server_free().  Returns true when every
 * connection ended.  Idempotent; accepts NULL. */
bool server_stop(struct server *s);

/* Become master of `epoch`, with writes allowed until `deadline` (mono;
 * USEC_INFINITY: no deadline): open the store with the epoch (recovery,
 * barrier).  Already master of `epoch`: only the deadline changes.  Returns
 * 0 with the recovered records, last seq and recovery time in ret (may be
 * NULL); or -ESTALE (the volume holds a newer epoch), -ECANCELED (a
 * server_demote of this epoch or of 0 during the recovery called it off:
 * the store is left before its barrier, never master), another error of
 * store_open; the reason is in err.  Logs the decision.  Blocks for
 * the recovery; server_renew and server_demote may be called from other
 * threads meanwhile. */
int server_promote(struct server *s, uint64_t epoch, usec_t deadline, uint64_t *ret_records,
                   uint64_t *ret_last_seq, uint64_t *ret_recovery_ms, char *err, size_t errlen);

/* New write deadline for `epoch`; ignored unless master of that epoch or
 * promoting to it (the promotion then starts with this deadline). */
void server_renew(struct server *s, uint64_t epoch, usec_t deadline);

/* Stop being master of `epoch` (0: of any epoch), waiting for the writes in
 * flight; a promotion to it whose recovery runs is called off.  Returns 1
 * when it was master, 0 otherwise.  Logs the decision. */
int server_demote(struct server *s, uint64_t epoch, const char *reason);

/* Who the master is, named in NOTMASTER answers.  Older epochs than the
 * last one given are ignored. */
void server_set_master(struct server *s, uint64_t epoch, const char *pod, const char *addr);
