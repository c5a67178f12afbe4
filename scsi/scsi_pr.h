/* scsi_pr: SCSI block I/O and SCSI-3 persistent reservations on one iSCSI
 * LUN, through libiscsi, with a deadline on every call.
 *
 * This is the storage-level fence's only door to the LUN, shared by the
 * `scsi-pr` fence method (fencing/fence_scsi.c) and the raw-LUN journal
 * backend (storage/backend_lun.c), both through scsi/scsi_resv.h.  It parses
 * `iscsi://HOST[:PORT]/TARGET-IQN/LUN` URLs, logs in with a given initiator IQN, and issues
 * READ(16)/WRITE(16) (FUA), SYNCHRONIZE CACHE(16), PERSISTENT RESERVE OUT (REGISTER, REGISTER AND
 * IGNORE EXISTING KEY, RESERVE, RELEASE, PREEMPT, PREEMPT AND ABORT, CLEAR) and PERSISTENT RESERVE
 * IN (READ KEYS, READ RESERVATION, READ FULL STATUS).  SCSI status and sense data are turned into
 * -errno here and nowhere else (scsi_pr_status_to_errno()).
 *
 * Deadlines: libiscsi's synchronous calls wait without bound (a target that
 * accepts TCP and never answers hangs iscsi_full_connect_sync forever), so
 * every call here runs libiscsi's asynchronous API from its own poll() loop
 * that stops at the caller's deadline (CLOCK_MONOTONIC, usec_t).  A call that
 * times out leaves the session in an unknown state: the handle is then marked
 * broken and every later call returns -ENOTCONN until scsi_pr_reconnect().
 * Automatic reconnection in libiscsi is disabled: a lost session is reported
 * (-ECONNRESET) instead of being silently re-established on a new nexus.
 *
 * Key scheme.  Each node has an initiator IQN `PREFIX:NODE` (default prefix
 * `iqn.2026-11.io.kubefence`) and an 8-byte registration key derived from its
 * name alone, so it is stable across restarts and the same on every LUN:
 *
 *     key = 0x6b66 ("kf") << 48  |  first 6 bytes of SHA-256(node name)
 *
 * (big-endian, as the key travels in the CDB parameter list).  Two distinct
 * nodes collide with probability 2^-48; among n nodes the birthday bound is
 * about n^2 / 2^49 (1.8e-11 for 100 nodes, 1.8e-9 for 1000).  A key is read
 * back to a node name by recomputing the keys of candidate names the caller
 * supplies (e.g. the cluster's Node list), and, where READ FULL STATUS works,
 * from the registrant's initiator IQN.  Keys without the magic are foreign
 * (registered by something other than kubefence) and are shown as such.
 *
 * Registrations belong to an I_T nexus (initiator IQN + ISID), not to the
 * IQN: each handle is its own nexus, so a second process of the same node is
 * unregistered until it registers the node's key itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"

#define SCSI_PR_KEY_MAGIC          UINT64_C(0x6b66)
#define SCSI_PR_DEFAULT_PORT       3260
#define SCSI_PR_DEFAULT_IQN_PREFIX "iqn.2026-11.io.kubefence"
#define SCSI_PR_IQN_MAX            224 /* RFC 3720: at most 223 bytes */
#define SCSI_PR_HOST_MAX           256
#define SCSI_PR_URL_MAX            512
#define SCSI_PR_LUN_MAX            16383 /* flat space addressing */
#define SCSI_PR_KEYS_MAX           512   /* READ KEYS: more is an error, never a guess */
#define SCSI_PR_REGS_MAX           64    /* READ FULL STATUS entries kept (for display) */

/* PERSISTENT RESERVE OUT reservation types (SPC-4 table 5.13). */
enum {
	SCSI_PR_TYPE_WRITE_EXCLUSIVE = 1,
	SCSI_PR_TYPE_EXCLUSIVE_ACCESS = 3,
	SCSI_PR_TYPE_WE_REGISTRANTS_ONLY = 5,
	SCSI_PR_TYPE_EA_REGISTRANTS_ONLY = 6,
	SCSI_PR_TYPE_WE_ALL_REGISTRANTS = 7,
	SCSI_PR_TYPE_EA_ALL_REGISTRANTS = 8,
};

/* A parsed iscsi:// URL. */
struct scsi_pr_url {
	char host[SCSI_PR_HOST_MAX];       /* without brackets for IPv6 */
	int port;                          /* 1..65535, default 3260 */
	char portal[SCSI_PR_HOST_MAX + 8]; /* "host:port" or "[v6]:port" */
	char target[SCSI_PR_IQN_MAX];      /* %XX decoded */
	int lun;                           /* 0..SCSI_PR_LUN_MAX */
	char text[SCSI_PR_URL_MAX];        /* the URL as given, for messages */
};

/* Parse `iscsi://HOST[:PORT]/TARGET-IQN/LUN` (HOST may be `[IPv6]`; the IQN
 * may use %XX escapes; user credentials are refused).  Pure.  Returns 0 and
 * fills *ret, or -EINVAL with the reason in err. */
int scsi_pr_url_parse(const char *url, struct scsi_pr_url *ret, char *err, size_t errlen);

/* The registration key of `node` (see the key scheme above).  Pure.
 * Returns 0, or -EINVAL for an empty name. */
int scsi_pr_key_for_node(const char *node, uint64_t *ret_key);

/* Whether `key` carries the kubefence magic. */
bool scsi_pr_key_is_ours(uint64_t key);

/* The index in candidates[0..n) of the node whose key is `key`.  Returns the
 * index, -ENOENT when no candidate matches, -EMEDIUMTYPE for a foreign key. */
int scsi_pr_key_to_node(uint64_t key, const char *const *candidates, size_t n);

/* Initiator IQN of `node`: "PREFIX:NODE" (prefix NULL = the default).  The
 * node name must be a valid iSCSI name part (lowercase letters, digits, '.',
 * '-'; uppercase is lowered).  Returns 0, -EINVAL or -ENAMETOOLONG. */
int scsi_pr_iqn_for_node(const char *prefix, const char *node, char *buf, size_t len);

/* The node name of an initiator IQN "PREFIX:NODE[,i,0xISID]" into buf.
 * Returns 0, or -ENOENT when the IQN does not start with PREFIX:. */
int scsi_pr_node_from_iqn(const char *prefix, const char *iqn, char *buf, size_t len);

/* Map a SCSI status and sense to -errno.  Pure.
 *   GOOD, CONDITION MET, CHECK CONDITION/RECOVERED ERROR -> 0
 *   RESERVATION CONFLICT                   -> -EBADE  ("we are fenced")
 *   UNIT ATTENTION                         -> -EAGAIN (retry)
 *   NOT READY                              -> -EAGAIN, MEDIUM NOT PRESENT -ENOMEDIUM
 *   ILLEGAL REQUEST: invalid opcode -EOPNOTSUPP, invalid field in CDB or
 *     parameter list / list length -EINVAL, LBA out of range -ERANGE,
 *     LU not supported -ENXIO, others -EOPNOTSUPP
 *   DATA PROTECT: write protected -EROFS, others -EACCES
 *   MEDIUM ERROR, HARDWARE ERROR, others   -> -EIO
 *   ABORTED COMMAND                        -> -ECANCELED
 *   MISCOMPARE                             -> -EILSEQ
 *   BUSY, TASK SET FULL                    -> -EBUSY
 *   TASK ABORTED                           -> -ECANCELED
 *   libiscsi: TIMEOUT -ETIMEDOUT, CANCELLED -ECANCELED, ERROR -ECONNRESET */
int scsi_pr_status_to_errno(int status, int sense_key, int asc, int ascq);

/* PR IN data, parsed.  Pure parsers of the raw parameter data. */
struct scsi_pr_keys {
	uint32_t generation;
	size_t n;     /* entries in keys[] */
	size_t total; /* registrations the target reported (may exceed n) */
	uint64_t keys[SCSI_PR_KEYS_MAX];
};

struct scsi_pr_reservation {
	uint32_t generation;
	bool held;
	uint64_t key; /* holder's key; 0 for the all-registrants types */
	int type;     /* SCSI_PR_TYPE_* */
	int scope;
};

struct scsi_pr_registrant {
	uint64_t key;
	bool holder; /* R_HOLDER: this nexus holds the reservation */
	bool all_tg_pt;
	int type, scope; /* valid when holder */
	uint16_t rel_tgt_port;
	char initiator[SCSI_PR_IQN_MAX + 24]; /* iSCSI name, with ",i,0xISID" if sent */
};

struct scsi_pr_full_status {
	uint32_t generation;
	size_t n, total;
	struct scsi_pr_registrant regs[SCSI_PR_REGS_MAX];
};

int scsi_pr_parse_read_keys(const uint8_t *data, size_t len, struct scsi_pr_keys *ret);
int scsi_pr_parse_read_reservation(const uint8_t *data, size_t len,
                                   struct scsi_pr_reservation *ret);
int scsi_pr_parse_full_status(const uint8_t *data, size_t len, struct scsi_pr_full_status *ret);

/* ------------------------------------------------------------ sessions */

struct scsi_pr;

struct scsi_pr_options {
	/* 0 = a random ISID (a new nexus per handle, libiscsi's default);
	 * otherwise a stable ISID derived from the initiator IQN and this
	 * qualifier, so a restarted process gets its old nexus back on a
	 * target that names the nexus by ISID (tgt does not: it ties a
	 * registration to the session, and a new session adds one).  Two
	 * live handles must never share one (the target would drop the older
	 * session when the newer logs in). */
	uint16_t isid_qualifier;
	/* How many times a command answered UNIT ATTENTION is resent inside
	 * the deadline by the PR and connect paths (block I/O never retries:
	 * the first UA after a PREEMPT is information for the caller). */
	int ua_retries;
};

/* Connect to url->portal as `initiator_iqn`, log in to url->target, and
 * check url->lun with TEST UNIT READY and READ CAPACITY(16).  Blocks until
 * done or `deadline` (CLOCK_MONOTONIC).  On success *ret owns a new handle
 * (free with scsi_pr_close()).  Returns 0, -ETIMEDOUT, -ECONNREFUSED,
 * -ECONNRESET, -EACCES (login refused), -ENXIO (no such LUN), or another
 * -errno; detail in err. */
int scsi_pr_open(const struct scsi_pr_url *url, const char *initiator_iqn,
                 const struct scsi_pr_options *opts, usec_t deadline, struct scsi_pr **ret,
                 char *err, size_t errlen);

/* Log out (bounded by a short internal deadline) and free.  NULL allowed.
 * Returns NULL. */
struct scsi_pr *scsi_pr_close(struct scsi_pr *h);

/* Drop the session and log in again (same ISID, so the same nexus).  Blocks
 * until `deadline`.  Returns as scsi_pr_open(). */
int scsi_pr_reconnect(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen);

const struct scsi_pr_url *scsi_pr_get_url(const struct scsi_pr *h);
const char *scsi_pr_get_initiator(const struct scsi_pr *h);
uint32_t scsi_pr_block_size(const struct scsi_pr *h);
uint64_t scsi_pr_num_blocks(const struct scsi_pr *h);

/* The status and sense of the last command the handle completed (for
 * scsi_resv_io_verdict()); zeros when it did not reach the target. */
void scsi_pr_last_sense(const struct scsi_pr *h, int *status, int *key, int *asc, int *ascq);

/* Block I/O.  `len` must be a multiple of the block size.  Writes use FUA.
 * No UNIT ATTENTION retry (see scsi_pr_options).  Block until done or
 * `deadline`.  Return 0 or -errno per scsi_pr_status_to_errno(). */
int scsi_pr_read(struct scsi_pr *h, uint64_t lba, void *buf, size_t len, usec_t deadline, char *err,
                 size_t errlen);
int scsi_pr_write(struct scsi_pr *h, uint64_t lba, const void *buf, size_t len, usec_t deadline,
                  char *err, size_t errlen);
int scsi_pr_sync_cache(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen);
/* A WRITE(16) of no block at LBA 0: nothing is written (SBC: a transfer
 * length of 0 is no error), but the target applies its reservation rules to
 * it, so it tells whether this nexus may write: 0 when the target accepts
 * it, -EBADE on RESERVATION CONFLICT (kubefencectl scsi probe). */
int scsi_pr_write_probe(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen);

/* LOGICAL UNIT RESET (an iSCSI task management function) on the handle's
 * LUN: the target aborts every task of every initiator on it, and answers
 * only once each one is aborted or has completed (SAM; tgt holds the answer
 * while a command is still on its backing-store threads).  Persistent
 * reservations survive it; every nexus gets a UNIT ATTENTION.  Returns 0
 * (function complete), -EOPNOTSUPP (the target does not support or rejects
 * it), -ETIMEDOUT (no answer before the deadline: tasks still running; the
 * session is then torn down), or another -errno. */
int scsi_pr_lun_reset(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen);

/* PERSISTENT RESERVE OUT.  `key` is the caller's own key.  Block until done
 * or `deadline`; UNIT ATTENTION is retried opts->ua_retries times.  A
 * RESERVATION CONFLICT (-EBADE) means the nexus is not registered with `key`
 * (or, for RESERVE, another reservation is held). */
int scsi_pr_register(struct scsi_pr *h, uint64_t old_key, uint64_t new_key, usec_t deadline,
                     char *err, size_t errlen);
int scsi_pr_register_ignore(struct scsi_pr *h, uint64_t new_key, usec_t deadline, char *err,
                            size_t errlen);
int scsi_pr_reserve(struct scsi_pr *h, uint64_t key, int type, usec_t deadline, char *err,
                    size_t errlen);
int scsi_pr_release(struct scsi_pr *h, uint64_t key, int type, usec_t deadline, char *err,
                    size_t errlen);
/* PREEMPT (abort = false) or PREEMPT AND ABORT (abort = true): remove every
 * registration holding `victim_key`; if the victim held the reservation it
 * passes to this nexus with `type`. */
int scsi_pr_preempt(struct scsi_pr *h, uint64_t key, uint64_t victim_key, int type, bool abort,
                    usec_t deadline, char *err, size_t errlen);
int scsi_pr_clear(struct scsi_pr *h, uint64_t key, usec_t deadline, char *err, size_t errlen);

/* PERSISTENT RESERVE IN.  Block until done or `deadline`.  READ FULL
 * STATUS returns -EOPNOTSUPP/-EINVAL where the target lacks it.  READ KEYS
 * returns -EOVERFLOW when the target holds more registrations than it read
 * (SCSI_PR_KEYS_MAX): every caller decides from the whole list (is a key
 * registered, is a victim gone), and a truncated one would make it guess. */
int scsi_pr_read_keys(struct scsi_pr *h, usec_t deadline, struct scsi_pr_keys *ret, char *err,
                      size_t errlen);
int scsi_pr_read_reservation(struct scsi_pr *h, usec_t deadline, struct scsi_pr_reservation *ret,
                             char *err, size_t errlen);
int scsi_pr_read_full_status(struct scsi_pr *h, usec_t deadline, struct scsi_pr_full_status *ret,
                             char *err, size_t errlen);

/* A short name of a PR type ("WE-RO"...), for messages. */
const char *scsi_pr_type_name(int type);
