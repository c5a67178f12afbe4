/* failsafe: the agents' direct channel that lets a leader ride through an
 * API server outage on a store without SCSI-3 PR (docs/failsafe.md).
 *
 * While its renewals get no answer, the leader asks every other candidate
 * agent (failsafe.peers), over UDP, to promise that it will not take the
 * Lease for the next grant_ms; only when every one of them promised before
 * the round's end does it extend its term, to
 *
 *     t0 + grant - margin      (t0: read before the first datagram was sent)
 *
 * A peer promises only when it is not the holder, the leader is the holder
 * and epoch it last read in the Lease, and it cannot reach the API server
 * itself; it then takes nothing (no acquire, so no fence) until
 *
 *     receipt + grant + margin
 *
 * on its own clock, even when the API comes back to it first and the Lease
 * looks expired.  margin = (lease.duration_ms - lease.renew_deadline_ms) / 2
 * (failsafe_margin()): the leader's extension ends before any promise it
 * rests on, as long as the peer's clock runs at most (grant + margin) /
 * (grant - margin) times as fast as the leader's (3500/2500 = 1.4 with the
 * defaults), and grant + margin stays below
 * lease.duration_ms, which is what makes a promise survive the restart of
 * the agent that gave it (see elector.c, follow_step()).
 *
 * Every datagram is MAC'd with a shared secret (lib/fsproto.h), in both
 * directions; an answer counts only for the round whose nonce it carries.
 *
 * This module owns the socket, the listener thread (which answers
 * requests through the judge callback the elector provides, and hands
 * answers to the round waiting for them) and the round itself.  The pure
 * parts (failsafe_round_take(), the replay cache, the parsers) are exposed
 * for the unit tests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/clock.h"
#include "lib/conf.h"
#include "lib/fsproto.h"

struct metrics;
struct failsafe;

/* The failsafe.* keys of the agent's file (nodeagent/agent_conf.c
 * concatenates the table). */
struct failsafe_conf {
	bool enabled;
	char *listen;   /* HOST:PORT of this agent's UDP socket ("" unset) */
	char **peers;   /* NAME=HOST:PORT, every candidate agent, this one included */
	char *key_file; /* the shared secret, >= FSPROTO_KEY_MIN bytes ("" unset) */
};
extern const struct conf_key failsafe_conf_keys[];
extern const size_t failsafe_conf_n_keys;

#define FAILSAFE_PEERS_MAX 16

struct failsafe_peer {
	char name[FSPROTO_NAME_MAX]; /* its agent.identity (the Lease's holderIdentity) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[96]; /* HOST:PORT as configured */
};

/* One item of failsafe.peers, NAME=HOST:PORT (HOST as http.listen takes
 * it; PORT 1..65535).  Returns 0 or -EINVAL with the reason in err.  Pure. */
int failsafe_parse_peer(const char *item, struct failsafe_peer *ret, char *err, size_t errlen);

/* Every item of list but the one named self, into out[0 .. max).  Returns
 * 0 and *ret_n, or -EINVAL (a bad item, a name given twice, more than max,
 * self not listed, no peer besides self) with the reason in err.  self ""
 * only parses the list (--config-test: agent.identity may differ per
 * node).  Pure. */
int failsafe_parse_peers(char *const *list, const char *self, struct failsafe_peer *out, size_t max,
                         size_t *ret_n, char *err, size_t errlen);

/* Read the shared secret: the file's bytes as they are (a trailing newline
 * included), FSPROTO_KEY_MIN to FSPROTO_KEY_MAX of them.  Returns 0, or
 * -errno / -EINVAL (too short, too long) with the reason in err. */
int failsafe_read_key(const char *path, uint8_t *key, size_t max, size_t *ret_len, char *err,
                      size_t errlen);

/* The drift margin of both sides (see above). */
usec_t failsafe_margin(usec_t duration, usec_t renew_deadline);

/* ------------------------------------------- the peer's decision, pure */

/* What a peer knows when a request comes (elector_failsafe_judge() fills
 * it from what it published). */
struct failsafe_view {
	bool leading;          /* this agent holds the Lease */
	bool observed;         /* it has read the Lease (a record, or its absence) */
	const char *holder;    /* the holder it last read ("": none, or no Lease) */
	int64_t epoch;         /* the leaseTransitions it last read */
	usec_t api_ok_at;      /* end of its last Lease request the API answered (0: none) */
	usec_t renew_deadline; /* its lease.renew_deadline_ms */
	usec_t retry;          /* its lease.retry_ms */
	usec_t margin;         /* failsafe_margin() of its lease timings */
};

/* The decision on req, read at `received` (mono).  Returns NULL for a
 * promise, with *ret_until = received + grant + margin, the end of the
 * promise; else the refusal's reason: "holder" (this agent holds the
 * Lease), "no-holder-seen", "not-the-holder" (req is not from the holder
 * last read), "other-epoch", "grant-too-long" (more than its own renew
 * deadline), "api-reachable" (an answer from the API within the last two
 * retries), in that order.  Pure. */
const char *failsafe_decide(const struct failsafe_view *v, const struct fsproto_msg *req,
                            usec_t received, usec_t *ret_until);

/* The validity a promised round extends a term to, or 0 for no extension.
 * t0, b0: CLOCK_MONOTONIC and CLOCK_BOOTTIME read before the round's
 * first datagram; now, bnow: both read after it ended; valid_until: the
 * term's validity (mono) before it.  The extension is
 *
 *     t0 + grant - margin - slip,   slip = (bnow - b0) - (now - t0)
 *
 * slip the time the node was suspended during the round (BOOTTIME ran,
 * MONOTONIC did not).  None (0) when grant <= margin, when the term lapsed
 * during the round (now >= valid_until: never revived), when the slip
 * eats the whole of grant - margin, or when it would not end later than
 * valid_until.  Pure. */
usec_t failsafe_extension(usec_t t0, usec_t b0, usec_t now, usec_t bnow, usec_t grant,
                          usec_t margin, usec_t valid_until);

/* ---------------------------------------------------- a round, pure part */

struct failsafe_round {
	int64_t epoch;
	char nonce[FSPROTO_NONCE_HEX + 1];
	const char *self;
	const struct failsafe_peer *peers;
	size_t n;
	bool answered[FAILSAFE_PEERS_MAX];
	enum fsproto_verdict verdict[FAILSAFE_PEERS_MAX];
	char reason[FAILSAFE_PEERS_MAX][FSPROTO_REASON_MAX];
	size_t n_promised, n_refused;
};

/* Start a round for epoch with a fresh nonce.  Returns 0 or -errno. */
int failsafe_round_init(struct failsafe_round *r, const char *self,
                        const struct failsafe_peer *peers, size_t n, int64_t epoch);

/* Judge one answer (parsed, its MAC verified) for round r and record it.
 * Returns 0 (recorded; a repeated answer of the same peer changes
 * nothing), -ENOENT (the sender is no peer), -EXDEV (addressed to another
 * agent: to= is not self), -ESTALE (another nonce: a replay, or an answer
 * to an earlier round), -EPROTO (the same nonce but another epoch), or
 * -EINVAL (not an ANS); the reason in err.  Pure. */
int failsafe_round_take(struct failsafe_round *r, const struct fsproto_msg *m, char *err,
                        size_t errlen);

/* ------------------------------------------------- the peer's replay cache */

#define FAILSAFE_SEEN_MAX 64

/* The answers given lately, by (sender, nonce): a request that comes again
 * (the leader retransmits it, or someone replays it) gets the same answer
 * again, and no new promise. */
struct failsafe_seen {
	char from[FSPROTO_NAME_MAX];
	char nonce[FSPROTO_NONCE_HEX + 1];
	int64_t epoch;
	enum fsproto_verdict verdict;
	char reason[FSPROTO_REASON_MAX];
};
struct failsafe_cache {
	struct failsafe_seen e[FAILSAFE_SEEN_MAX];
	size_t next, n;
};

const struct failsafe_seen *failsafe_cache_find(const struct failsafe_cache *c, const char *from,
                                                const char *nonce);
void failsafe_cache_add(struct failsafe_cache *c, const struct failsafe_seen *s);

/* --------------------------------------------------------- the endpoint */

/* The peer's decision on a request (listener thread; must not block).
 * received: mono time the datagram was read.  Writes reason
 * ([a-z0-9-]+). */
typedef enum fsproto_verdict (*failsafe_judge_fn)(void *userdata, const struct fsproto_msg *req,
                                                  usec_t received, char *reason, size_t reasonlen);

struct failsafe_options {
	const char *self;   /* this agent's name: agent.identity */
	const char *listen; /* failsafe.listen */
	const struct failsafe_peer *peers;
	size_t n_peers;
	const uint8_t *key;
	size_t keylen;
	const char *lease;       /* NS/NAME: requests about another Lease are refused */
	struct metrics *metrics; /* may be NULL */
};

/* Bind the socket (nothing runs yet).  Options are copied.  Returns 0 and
 * *ret, or -errno with the reason in err. */
int failsafe_new(const struct failsafe_options *o, struct failsafe **ret, char *err, size_t errlen);
/* Set the judge before failsafe_start(); without one every request is
 * refused. */
void failsafe_set_judge(struct failsafe *fs, failsafe_judge_fn fn, void *userdata);
/* Start the listener thread.  Returns 0 or -errno. */
int failsafe_start(struct failsafe *fs);
/* Stop the listener thread (and join it): no judge runs after this.
 * Rounds still run, and hear nothing.  Idempotent; NULL-safe. */
void failsafe_stop(struct failsafe *fs);
/* Stop the thread, close the socket.  NULL-safe; returns NULL. */
struct failsafe *failsafe_free(struct failsafe *fs);
/* The port bound (for a listen port 0). */
uint16_t failsafe_port(const struct failsafe *fs);

enum failsafe_result {
	FAILSAFE_PROMISED, /* every peer promised */
	FAILSAFE_REFUSED,  /* some peer refused */
	FAILSAFE_SILENT,   /* some peer did not answer in time */
	FAILSAFE_ERROR,    /* the round could not be run (a send failed, no randomness) */
};
const char *failsafe_result_name(enum failsafe_result r);

/* One round: ask every peer to promise not to take the Lease for grant_ms
 * of term epoch, sending the request again to those that did not answer
 * (every quarter of the time left, at least every 20 ms), until each one
 * answered, one refused, or `deadline` (mono).  Blocks until then; one
 * round at a time (the election thread's).  Counts the result in
 * kubefence_failsafe_rounds_total; detail says who refused or was silent. */
enum failsafe_result failsafe_ask(struct failsafe *fs, int64_t epoch, int64_t grant_ms,
                                  usec_t deadline, char *detail, size_t detaillen);

/* kubefence_failsafe_active: whether this leader's term is extended by
 * promises now. */
void failsafe_set_active(struct failsafe *fs, bool active);
