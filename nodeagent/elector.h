/* elector: the agent's election loop around lib/lease.
 *
 * Two threads.  The election thread acquires, renews and releases the Lease
 * and is the only one that writes it; the watch thread streams changes of the
 * Lease and wakes the election thread at once, so a release is acted on
 * within one API round trip.  The election thread also polls every retry
 * period, as a fallback when the watch is broken.
 *
 * Leadership is a time-bounded claim: elector_is_leader() checks the
 * monotonic clock against the end of the current term's validity itself, so
 * it answers correctly even when the election thread is stalled.  The
 * stopped_leading callback fires no later than that instant (give or take
 * scheduling), and the term is over for every caller from that instant. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/fsproto.h"
#include "lib/lease.h"

struct k8s_client;
struct elector;

/* A new term and what was known of the Lease when it began. */
struct elector_term {
	int64_t epoch;
	usec_t valid_until;           /* mono time; extended by renewals */
	enum lease_verdict verdict;   /* ABSENT, FREE, EXPIRED or OURS */
	bool continued;               /* a predecessor's term on this node, continued */
	struct lease_record previous; /* the record replaced (holder, node, reason) */
	/* The duty this term inherits, as its own record states it (lib/lease.h,
	 * fence-owed): the nodes to fence before promoting.  It comes from the
	 * Lease, not from `previous`, so a lost answer to the acquire (the next
	 * poll then sees the Lease already ours) loses nothing. */
	char fence_owed[LEASE_OWED_MAX];
};

struct elector_callbacks {
	/* Whether we may start a term now (e.g. the local service is
	 * connected and healthy).  owes_expired: the term would owe a fence
	 * of another node at level expired (lease_acquire_owes_expired).
	 * NULL: always.  Must not block. */
	bool (*may_acquire)(void *userdata, bool owes_expired);
	/* A new term began.  Called on the election thread; must not block. */
	void (*started_leading)(void *userdata, const struct elector_term *term);
	/* The term was renewed and is now valid until valid_until (mono). */
	void (*renewed)(void *userdata, int64_t epoch, usec_t valid_until);
	/* Our term ended (deadline passed, taken, released).  reason is for
	 * the log. */
	void (*stopped_leading)(void *userdata, int64_t epoch, const char *reason);
	/* Another holder (or nobody: holder "") was observed. */
	void (*observed_holder)(void *userdata, const struct lease_record *rec);
};

struct elector_params {
	struct lease_config lease;
	const char *namespace;
	const char *name;
	long request_timeout_ms;
	/* This process holds the node lock (agent.lock_file): a term of this
	 * node held under another incarnation is a dead predecessor's, and is
	 * continued (lease_succeed) instead of waited out. */
	bool succession;
	/* agent.api_outage = ride-through: while elector_set_ride_through()
	 * says the service's store is target-fenced, a renewal that gets no
	 * answer (time-out, refused, 5xx) extends the term as if renewed; a
	 * follower whose reads of the Lease failed counts a full lease from its
	 * next successful read. */
	bool ride_through;
	/* failsafe.enabled (nodeagent/failsafe.h; NULL: off).  Where
	 * ride_through does not apply, a renewal that gets no answer makes
	 * the leader ask every peer for a promise, and the term is extended
	 * (to the round's start + renew deadline - the margin) only when all
	 * of them promised; as a follower, this agent answers the peers'
	 * requests (elector_failsafe_judge()) and keeps what it promised. */
	struct failsafe *failsafe;
};

/* Create an elector; nothing runs until elector_start().  The client and
 * callbacks must outlive it.  Returns 0 or -ENOMEM. */
int elector_new(struct k8s_client *client, const struct elector_params *p,
                const struct elector_callbacks *cb, void *userdata, struct elector **ret);

/* Start the threads.  Returns 0 or -errno from pthread_create. */
int elector_start(struct elector *e);

/* Stop the threads; when leading, release the Lease recording `reason`
 * (NULL: do not release, just stop renewing).  Blocks up to one request
 * timeout.  Safe to call more than once. */
void elector_stop(struct elector *e, const char *reason);

/* Stop without releasing, leaving the term to the next incarnation on this
 * node: if we still lead, renew the Lease one last time for `grace` (at
 * least the lease's duration: lease_renew_parting()) and report the longer
 * validity through the renewed callback before stopped_leading.  Blocks
 * like elector_stop(). */
void elector_stop_parting(struct elector *e, usec_t grace);

/* Judge the Lease again now, not at the next poll (lease.retry_ms later):
 * what may_acquire answers has changed (the service became a candidate).
 * The judgement is the one a poll makes, on the last Lease seen (the
 * watch keeps it current; a take is a write conditional on its
 * resourceVersion).  Thread-safe, never blocks. */
void elector_nudge(struct elector *e);

/* Every fence term `epoch` owed is confirmed: its next renewal removes the
 * duty from the Lease — but for our own node's entries with keep_self (no
 * service of ours is connected to answer for an earlier incarnation's:
 * they go on to the successor).  Ignored when that term is over.
 * Thread-safe, never blocks. */
void elector_fence_settled(struct elector *e, int64_t epoch, bool keep_self);

/* What a release says of the local service (lib/lease.h, release-dead). */
enum elector_release {
	ELECTOR_RELEASE_UNCONFIRMED, /* it may still serve: the successor runs the full fence */
	ELECTOR_RELEASE_DEAD,        /* its process was seen to exit (pidfd): the lighter one */
	ELECTOR_RELEASE_UNPROMOTED,  /* no service was promoted in this term: no fence of us */
};

/* Release the Lease now with `reason` if we lead in term `epoch` (a
 * request for a term already over is ignored: it must not end the next
 * one), and go on following.  A fence of this term that was confirmed
 * (elector_fence_settled) is taken off the Lease by the same update.  Does
 * not block: the election thread does it at once. */
void elector_release(struct elector *e, int64_t epoch, const char *reason,
                     enum elector_release kind);

/* The holder last observed, how long ago the Lease was last seen to change,
 * and its epoch (ret_epoch may be NULL).  Returns 0, or -ENODATA before the
 * first observation. */
int elector_observed(struct elector *e, char *holder, size_t holder_len, usec_t *ret_age,
                     int64_t *ret_epoch);

/* How long the election thread has not been through its loop (0 before it
 * started): it goes round at least once per retry period, or one request
 * time-out when the API does not answer.  For /healthz. */
usec_t elector_idle(struct elector *e);

/* Whether the Lease itself, read now from the API server, shows this
 * process holding term `epoch` (and our clocks agree it goes on).  Blocks
 * up to one request time-out; false on any doubt.  For actions that must
 * not be taken by a node that lost its term without knowing it (a paused
 * VM), such as registering a SCSI-3 key again. */
bool elector_confirm_leader(struct elector *e, int64_t epoch);

/* Whether the service behind this agent is target-fenced now (its store is
 * a LUN that scsi-pr preempts on every takeover): only then does
 * ride_through apply.  Thread-safe, never blocks. */
void elector_set_ride_through(struct elector *e, bool ok);

/* Since when (mono) the current term rides through an API outage; 0 when
 * it does not (or no term). */
usec_t elector_riding_since(struct elector *e);

/* The failsafe judge (failsafe_judge_fn): whether this agent promises the
 * leader of `req` not to take the Lease for req->grant_ms from `received`
 * (plus the margin), and if so records that promise, which follow_step()
 * then keeps.  Promises only when this agent does not lead, req names the
 * holder and epoch it last read in the Lease, the grant is at most its
 * own renew deadline, and none of its own reads of the Lease started in
 * the last two retry periods succeeded (it cannot reach the API server
 * either: a peer that can refuses, so that a leader cut off alone from
 * the API steps down and the others take over, one failover).
 * Thread-safe, never blocks. */
enum fsproto_verdict elector_failsafe_judge(void *userdata, const struct fsproto_msg *req,
                                            usec_t received, char *reason, size_t reasonlen);

/* Since when (mono) the current term goes on by failsafe promises; 0 when
 * it does not. */
usec_t elector_failsafe_since(struct elector *e);

/* Whether we lead right now; *ret_epoch gets the term's epoch if so. */
bool elector_is_leader(struct elector *e, int64_t *ret_epoch);

struct elector *elector_free(struct elector *e);
