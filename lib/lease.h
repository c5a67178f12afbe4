/* lease: leader election on a coordination.k8s.io/v1 Lease.
 *
 * Two layers.  The pure layer (lease_record_*, lease_state_*, lease_judge,
 * lease_build_*) decides from an observed record and an injected monotonic
 * `now`; it does no I/O and is what the unit tests drive.  The I/O layer
 * (lease_fetch, lease_acquire, lease_renew, lease_release) performs one API
 * round trip each through a k8s_client, with optimistic concurrency on the
 * record's resourceVersion.
 *
 * Rules this module enforces:
 *  - Expiry is judged on the local monotonic clock from the moment the record
 *    was last seen to change (its resourceVersion), never by comparing the
 *    record's renewTime with the local wall clock.
 *  - The epoch is spec.leaseTransitions.  Every new term increments it: a
 *    holder change, and also the same identity coming back in a new process
 *    (incarnation), because a restarted agent must not reuse the fencing token
 *    of its previous life.  A term's epoch is the fencing token.
 *  - A leader is valid until the START of its last successful write plus the
 *    renew deadline.  Since a follower starts its expiry clock only after it
 *    saw that write, and renew deadline < lease duration, the leader's
 *    validity always ends before any follower may take over; the difference
 *    is the margin for clock-rate differences between nodes.
 *  - A record held by our own identity but another incarnation is treated
 *    like a foreign holder: it must expire or be released first, so an old
 *    agent process that still runs (paused, not dead) is never overlapped.
 *
 * Annotations kept on the Lease (all under kubefence.io/):
 *   lease-duration-ms  the holder's exact duration (spec only has seconds)
 *   incarnation        random id of the holding agent process
 *   release-reason     why the last holder released (cleared on acquire)
 *   release-dead       "confirmed" when the releaser saw its service's
 *                      process exit: only then does the successor owe the
 *                      lighter fence of an orderly release; "unpromoted"
 *                      when no service of the releaser was promoted in its
 *                      term (a term held only to fence, with no local
 *                      service): the successor owes it nothing (cleared on
 *                      acquire).  A reader that knows neither value takes
 *                      the release as unconfirmed: the full fence.
 *   node               the node the holder runs on (the fencing target)
 *   fence-owed         the duty to fence: "node:level,node:level" (level
 *                      expired or released), the nodes whose fence is not
 *                      yet confirmed.  The acquire that starts a term adds
 *                      the previous holder to it in the same conditional
 *                      update, and only the holder's renewal after every
 *                      required method was confirmed clears it; so the duty
 *                      outlives a lost answer, a crash or a term that ends
 *                      part-way through a fence: whoever holds the Lease
 *                      next inherits it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lib/clock.h"

struct k8s_client;

#define LEASE_ANN_DURATION       "kubefence.io/lease-duration-ms"
#define LEASE_ANN_INCARNATION    "kubefence.io/incarnation"
#define LEASE_ANN_RELEASE_REASON "kubefence.io/release-reason"
#define LEASE_ANN_NODE           "kubefence.io/node"
#define LEASE_ANN_FENCE_OWED     "kubefence.io/fence-owed"
#define LEASE_ANN_RELEASE_DEAD   "kubefence.io/release-dead"
#define LEASE_OWED_MAX           1024

#define LEASE_IDENTITY_MAX    254
#define LEASE_INCARNATION_MAX 40

struct lease_record {
	char name[254];
	char uid[64]; /* metadata.uid: which incarnation of the object ("" unknown) */
	char resource_version[64];
	char holder[LEASE_IDENTITY_MAX];         /* "" when nobody holds it */
	char incarnation[LEASE_INCARNATION_MAX]; /* "" when not set */
	char node[254];                          /* the holder's node, "" when not set */
	char release_reason[256];
	bool release_dead;               /* the releaser confirmed its service dead */
	bool release_unpromoted;         /* the releaser promoted no service in its term */
	char fence_owed[LEASE_OWED_MAX]; /* "node:level,..."; "" when nothing is owed */
	char renew_time[40];             /* as written by the holder; informational only */
	int64_t duration_ms;             /* 0 when the record states none */
	int64_t transitions;
};

/* Parse a Lease object.  Returns 0, or -EBADMSG with detail in err when a
 * field is missing (metadata.name, metadata.resourceVersion) or of the wrong
 * type.  Unknown fields are ignored. */
int lease_record_from_json(const cJSON *obj, struct lease_record *ret, char *err, size_t errlen);

struct lease_config {
	char identity[LEASE_IDENTITY_MAX];
	char node[254]; /* recorded so that a successor knows whom to fence */
	char incarnation[LEASE_INCARNATION_MAX];
	usec_t duration;
	usec_t renew_deadline;
	usec_t retry;
};

/* Fill cfg->incarnation with a fresh random id (hex). */
void lease_config_new_incarnation(struct lease_config *cfg);

/* What this process knows of the Lease and of its own term. */
struct lease_state {
	bool have_record; /* a record has been observed */
	bool absent;      /* the Lease was observed not to exist */
	struct lease_record rec;
	cJSON *obj;              /* the last observed object, owned */
	usec_t observed_at;      /* mono time the record was last seen to change */
	bool leading;            /* we hold a term ... */
	usec_t valid_until;      /* ... valid until this mono time */
	int64_t epoch;           /* the epoch of our current or last term */
	bool settle_fence;       /* the next renewal clears the fence-owed duty ... */
	bool settle_keep_self;   /* ... except the holder's own node's entries */
	bool release_dead;       /* a release writes release-dead=confirmed */
	bool release_unpromoted; /* ... release-dead=unpromoted (wins over release_dead) */
};

/* Whether starting a term on the observed record would owe a fence of
 * another node at level "expired" (a holder that went silent, or one that
 * released with its service unconfirmed): the duty an agent without a local
 * service may take the Lease for (agent.fence_without_service).  Writes the
 * first such node into node (may be NULL). */
bool lease_acquire_owes_expired(const struct lease_config *cfg, const struct lease_state *s,
                                char *node, size_t nodelen);

/* The fence-owed list: add node with level ("expired" or "released"; an
 * entry of the same node keeps the stronger, expired), remove a node, and
 * walk the entries (*cursor starts at the list; returns false at its end).
 * add returns 0, -EINVAL for a name that cannot be listed, or -ENOSPC. */
int lease_owed_add(char *list, size_t n, const char *node, const char *level);
void lease_owed_remove(char *list, const char *node);
bool lease_owed_next(const char **cursor, char *node, size_t nodelen, char *level, size_t levellen);

void lease_state_init(struct lease_state *s);
void lease_state_done(struct lease_state *s);

/* Record an observation made at `now`: the object (NULL when the Lease does
 * not exist).  The expiry clock restarts only when the resourceVersion (or
 * existence) changed.  Returns true when it changed.  On a parse error
 * returns -EBADMSG and leaves the state as it was.
 *
 * An observation older than the one held is ignored (returns 0): a watch
 * event can arrive after the answer to our own newer write.  resourceVersion
 * is opaque, so age is judged from the Lease's own fields, for the same
 * object (metadata.uid): fewer leaseTransitions is an older term; and a
 * held record of a term already seen released is older than the release. */
int lease_state_observe(struct lease_state *s, const cJSON *obj, usec_t now, char *err,
                        size_t errlen);

enum lease_verdict {
	LEASE_ABSENT,  /* no Lease object: create it */
	LEASE_FREE,    /* released: nobody holds it */
	LEASE_OURS,    /* held by this incarnation */
	LEASE_HELD,    /* held by another identity or incarnation, not expired */
	LEASE_EXPIRED, /* held, but not seen to change for a whole duration */
	LEASE_UNKNOWN, /* nothing observed yet */
};

/* Judge the observed record at `now`.  For LEASE_HELD, *ret_expires_at (may
 * be NULL) gets the mono time at which it would expire if it does not change.
 * The duration waited is the longer of the holder's stated one and ours, so
 * that a follower never cuts a holder short of what that holder was promised. */
enum lease_verdict lease_judge(const struct lease_config *cfg, const struct lease_state *s,
                               usec_t now, usec_t *ret_expires_at);

const char *lease_verdict_to_string(enum lease_verdict v);

/* Whether we may act as leader at `now`: leading and now < valid_until. */
bool lease_state_is_leader(const struct lease_state *s, usec_t now);

/* Build the object to write.  `wall` is the wall-clock time for
 * acquireTime/renewTime.  The result is a new object (caller frees) based on
 * the observed one, so that labels and foreign annotations survive.
 *  - acquire: holder = us, transitions + 1 (1 when creating), acquire and
 *    renew time = wall, release reason cleared, the previous holder's node
 *    added to fence-owed (released only when it gave the Lease up with
 *    its service confirmed dead, expired otherwise, nothing when it
 *    released saying it promoted nothing; not when the record is our own
 *    incarnation's).  Our own node's entry is kept: the term never fences
 *    itself, but only a settle with a service of ours connected answers for
 *    an earlier incarnation's service here; NULL when the list is full;
 *  - renew: renewTime = wall, fence-owed removed when s->settle_fence
 *    (but for the holder's own node's entries with s->settle_keep_self);
 *  - release: holder cleared, reason recorded, duration 1 s so that clients
 *    that only read the spec also see it free soon; fence-owed removed when
 *    s->settle_fence (the duty was discharged in this term), the same way. */
cJSON *lease_build_acquire(const struct lease_config *cfg, const struct lease_state *s,
                           const char *ns, const char *name, usec_t wall);
cJSON *lease_build_renew(const struct lease_state *s, usec_t wall);
/* A renewal that also sets the record's duration (leaseDurationSeconds,
 * rounded up, and the exact duration annotation) to `duration`. */
cJSON *lease_build_parting(const struct lease_state *s, usec_t wall, usec_t duration);
cJSON *lease_build_release(const struct lease_state *s, const char *reason, usec_t wall);

/* Account for a successful write of ours, issued at mono time `started`,
 * whose answer `obj` the server returned at `now`. */
int lease_state_won(struct lease_state *s, const struct lease_config *cfg, const cJSON *obj,
                    usec_t started, usec_t now, char *err, size_t errlen);

/* ------------------------------------------------------------------ I/O */

/* GET the Lease and observe it (404 observes absence).  Returns 0, or the
 * -errno of the request (see k8s.h).  Blocks up to timeout_ms. */
int lease_fetch(struct k8s_client *c, const char *ns, const char *name, struct lease_state *s,
                long timeout_ms, char *err, size_t errlen);

/* Try to start a term.  Requires a verdict of ABSENT, FREE, EXPIRED or OURS
 * at the time of the call (else -EBUSY).  OURS while not leading means our
 * previous term lapsed (renew deadline passed) or our write landed but its
 * answer was lost: a new term with a new epoch is safe then, because the old
 * one is over on our side and the write is conditional on the version seen.  Returns 0 when we now
 * lead (s->epoch is the new epoch), -ESTALE when another writer got there first (the state was
 * refreshed from the server), -EEXIST when the Lease was created by someone
 * else meanwhile, or the request's -errno. */
int lease_acquire(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, long timeout_ms, char *err,
                  size_t errlen);

/* Same-node succession.  Whether the observed record is a term held by
 * this node (its node annotation is cfg->node) under another incarnation
 * of this agent: a predecessor of ours on this node.  Only a process that
 * knows that predecessor is gone (the agent's node lock: a dead process
 * releases it, a paused one still holds it) may continue its term. */
bool lease_succession_possible(const struct lease_config *cfg, const struct lease_state *s);

/* Continue that term: a conditional update (the resourceVersion observed)
 * that records our identity and incarnation and renews it, keeping its
 * epoch (leaseTransitions), acquireTime and fence-owed: this node's service
 * is promoted again in that epoch, and no other node takes part.  Returns as lease_acquire(): 0
 * when we now lead (s->epoch the continued epoch), -ESTALE/-EEXIST when another writer got there
 * first, -EBUSY when the record is no predecessor's. */
int lease_succeed(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, long timeout_ms, char *err,
                  size_t errlen);

/* Renew our term.  Returns 0 (valid_until extended), -ENOLCK when the record
 * shows we no longer hold it (leadership is then cleared), or the request's
 * -errno (leadership stays until valid_until; the caller retries). */
int lease_renew(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                const char *name, struct lease_state *s, long timeout_ms, char *err, size_t errlen);

/* The parting renewal of a leader that stops and leaves its term to its
 * next incarnation on this node (agent.restart_grace_ms): a renewal that
 * writes `duration` (at least cfg->duration) as the record's duration, so
 * that every other candidate waits that long, from when it sees the record,
 * before it may take the Lease.  On success the term is valid until
 * started + duration * renew_deadline / cfg->duration: the share of the
 * lease a renewal grants, so the margin against clock rates and delays
 * stays the configured one.  Returns as lease_renew(); -EINVAL for a
 * duration shorter than the lease's. */
int lease_renew_parting(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                        const char *name, struct lease_state *s, usec_t duration, long timeout_ms,
                        char *err, size_t errlen);

/* Release our term with a reason.  Leadership ends at the call, whatever the
 * outcome.  Returns 0, -ENOLCK when we did not hold it, or the -errno. */
int lease_release(struct k8s_client *c, const struct lease_config *cfg, const char *ns,
                  const char *name, struct lease_state *s, const char *reason, long timeout_ms,
                  char *err, size_t errlen);
