/* fsproto: the datagrams of the failsafe protocol between node agents
 * (docs/failsafe.md), formatted and parsed in one place.
 *
 * One text datagram each way, without a newline:
 *
 *   KFFS1 REQ from=LEADER lease=NS/NAME epoch=E grant_ms=D nonce=HEX32 mac=HEX64
 *   KFFS1 ANS from=PEER to=LEADER nonce=HEX32 epoch=E verdict=promise|refuse
 *         reason=TOKEN mac=HEX64
 *
 * mac is HMAC-SHA256, keyed with the shared secret, over every byte before
 * " mac=", in lower-case hex; it is always the last field.  The fields
 * between the verb and the mac are the control socket's `key=value` grammar
 * (lib/ctlproto.h): unknown, repeated, missing and out-of-bounds fields are
 * errors, and so is anything else the grammar refuses.  The MAC is checked
 * (in constant time) before any field is looked at, so a sender without the
 * key learns nothing from the answers to its guesses.
 *
 * What the fields mean (who may send which, whether a nonce is the one
 * awaited, whether the leader is the Lease's holder) is for the caller:
 * this module only proves that a datagram is well formed and was made by
 * someone who knows the key.  Pure but for fsproto_nonce(), which reads the
 * kernel's random source; no allocation, no logging; thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FSPROTO_MAGIC     "KFFS1"
#define FSPROTO_NONCE_HEX 32 /* 16 random bytes */
#define FSPROTO_MAC_HEX   64 /* HMAC-SHA256 */
#define FSPROTO_KEY_MIN   32 /* bytes of shared secret, at least */
#define FSPROTO_KEY_MAX   1024
/* The longest datagram accepted or written: below any path MTU, so that a
 * datagram is never fragmented. */
#define FSPROTO_DGRAM_MAX  1200
#define FSPROTO_NAME_MAX   254 /* an agent identity: a DNS-1123 subdomain, NUL */
#define FSPROTO_LEASE_MAX  512 /* NS/NAME, NUL */
#define FSPROTO_REASON_MAX 48

enum fsproto_kind {
	FSPROTO_REQ = 1, /* a leader asks for a promise */
	FSPROTO_ANS,     /* a peer answers it */
};

enum fsproto_verdict {
	FSPROTO_PROMISE = 1, /* it will not take the Lease for grant_ms from receipt (+ margin) */
	FSPROTO_REFUSE,      /* it promises nothing; reason says why */
};

struct fsproto_msg {
	enum fsproto_kind kind;
	char from[FSPROTO_NAME_MAX];
	char to[FSPROTO_NAME_MAX];     /* ANS only */
	char lease[FSPROTO_LEASE_MAX]; /* REQ only: NS/NAME */
	int64_t epoch;                 /* the term (leaseTransitions) asked about */
	int64_t grant_ms;              /* REQ only: the grant the leader means to take */
	char nonce[FSPROTO_NONCE_HEX + 1];
	enum fsproto_verdict verdict;    /* ANS only */
	char reason[FSPROTO_REASON_MAX]; /* ANS only: [a-z0-9-]+ */
};

/* Write m, MAC'd with key, into buf (NUL-terminated, no newline).  Returns
 * the datagram's length, -EINVAL for a field that cannot be written (a
 * name with a space, a nonce that is not 32 hex digits, a negative epoch,
 * a reason outside [a-z0-9-]), -EMSGSIZE when it would be longer than
 * FSPROTO_DGRAM_MAX or len - 1. */
int fsproto_format(const struct fsproto_msg *m, const uint8_t *key, size_t keylen, char *buf,
                   size_t len);

/* Parse one datagram of len bytes (it need not be NUL-terminated).
 * Returns 0 and fills *ret; -EBADMSG for a malformed datagram (too long, a
 * NUL or control byte, not KFFS1, no mac as last field, a field the grammar
 * refuses) and -EPERM for a MAC that does not verify; the reason in err
 * either way. */
int fsproto_parse(const char *dgram, size_t len, const uint8_t *key, size_t keylen,
                  struct fsproto_msg *ret, char *err, size_t errlen);

/* 16 bytes from getrandom(2), as 32 lower-case hex digits and a NUL.
 * Returns 0 or -errno (then out is unusable). */
int fsproto_nonce(char out[static FSPROTO_NONCE_HEX + 1]);

const char *fsproto_verdict_name(enum fsproto_verdict v);
