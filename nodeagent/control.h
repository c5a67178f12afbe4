/* control: the agent's side of the control socket (docs/control-protocol.md).
 *
 * A unix stream socket that the local MetaService connects to and keeps
 * open.  One service connection at a time: its death is an EOF that the
 * listener thread reports at once.  Peer credentials are checked on accept.
 * The send functions may be called from any thread; they never block for
 * long (a short write deadline), and fail with -ENOTCONN when no service is
 * connected (or c is NULL: no control socket is configured).
 *
 * The lines are parsed and written by lib/ctlproto; this module holds the
 * agent's grammar (what a service may send it) and what the messages mean.
 * control_parse is pure and shared by the tests. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/ctlproto.h"

#define CONTROL_LINE_MAX CTLPROTO_LINE_MAX

/* The protocol version (docs/control-protocol.md).  Version 1, whose grants
 * were relative to when the service read them, and version 2, which had no
 * liveness exchange (PING/PONG), are refused. */
#define CONTROL_VERSION CTLPROTO_VERSION
/* How far the service's CLOCK_MONOTONIC (HELLO mono_us) may be from ours:
 * grants are absolute times on it, so both must read the same clock. */
#define CONTROL_CLOCK_SKEW_MAX_USEC (500 * 1000)

enum control_verb {
	CONTROL_HELLO,
	CONTROL_READY,
	CONTROL_FAILED,
	CONTROL_DEMOTED,
	CONTROL_STANDBY,
	CONTROL_PONG,
	CONTROL_ERROR,
};

struct control_msg {
	enum control_verb verb;
	int version;
	int64_t mono_us; /* HELLO: the service's CLOCK_MONOTONIC when it sent it */
	char pod[254];
	char uid[64];
	pid_t pid;
	int64_t epoch;
	uint64_t records, last_seq, recovery_ms;
	uint64_t seq;         /* PONG: the PING it answers */
	char store[512];      /* HELLO, optional: where its data lives ("" unsaid) */
	char store_node[254]; /* HELLO, with store: the node whose key it registers */
	char reason[1024];
};

/* Parse one line (without its newline) sent by a service.  Returns 0, or
 * -EBADMSG with the reason in err: an unknown verb, an unknown, repeated,
 * missing or malformed field. */
int control_parse(const char *line, struct control_msg *ret, char *err, size_t errlen);

struct control_peer {
	char pod[254];
	char uid[64];
	pid_t pid;            /* as the service stated it */
	char store[512];      /* its store, as it stated it: "iscsi://..." or "" */
	char store_node[254]; /* the node whose reservation key it registers there */
	pid_t cred_pid;       /* from SO_PEERCRED */
	uid_t cred_uid;
	/* Which connection: counts up from 1 with each accepted HELLO, so a
	 * grant decided for one process never reaches the next one. */
	uint64_t gen;
};

struct control_callbacks {
	/* HELLO accepted (WELCOME sent). */
	void (*hello)(void *userdata, const struct control_peer *peer);
	void (*standby)(void *userdata);
	void (*ready)(void *userdata, const struct control_msg *m);
	void (*failed)(void *userdata, const struct control_msg *m);
	void (*demoted)(void *userdata, int64_t epoch);
	/* PONG seq=N: the service answered PING seq=N. */
	void (*pong)(void *userdata, uint64_t seq);
	/* The connection ended (EOF, error, protocol violation); why is for
	 * the log.  Called only for connections that said HELLO. */
	void (*gone)(void *userdata, const char *why);
};

struct control;

/* Create the socket at `path` (a stale socket file is replaced; the
 * directory must exist) with mode 0660.  Only peers with uid 0 or
 * `allowed_uid` (-1: root only) are accepted.  Returns 0 or -errno with
 * detail in err. */
int control_new(const char *path, uid_t allowed_uid, const char *node,
                const struct control_callbacks *cb, void *userdata, struct control **ret, char *err,
                size_t errlen);

/* Start the listener thread.  Returns 0 or -errno. */
int control_start(struct control *c);

/* Stop the thread, close the connection and remove the socket file. */
struct control *control_free(struct control *c);

bool control_connected(struct control *c);
int control_get_peer(struct control *c, struct control_peer *ret);

/* PROMOTE and RENEW carry the end of the write grant as an absolute
 * CLOCK_MONOTONIC time (`until`, usec), so a line that waits in the socket
 * can never extend the grant.  They go only to connection `gen` (the
 * peer's, from the hello callback): -ESTALE when another process is
 * connected now. */
int control_send_promote(struct control *c, uint64_t gen, int64_t epoch, int64_t until);
int control_send_renew(struct control *c, uint64_t gen, int64_t epoch, int64_t until);
int control_send_demote(struct control *c, int64_t epoch, const char *reason);
int control_send_master(struct control *c, int64_t epoch, const char *pod, const char *addr);
/* The liveness exchange: the service answers PING seq=N with PONG seq=N. */
int control_send_ping(struct control *c, uint64_t seq);
