/* The failsafe protocol (lib/fsproto.h) and its rounds (nodeagent/failsafe.h):
 * datagrams written and read back, every way a datagram is refused (a bad
 * MAC, a truncated line, a field the grammar refuses, a replayed nonce, an
 * answer to someone else, an unknown sender), the peer list and the key
 * file, and whole rounds between real UDP endpoints on loopback. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/fsproto.h"
#include "lib/util.h"
#include "nodeagent/failsafe.h"

static const uint8_t key[] = "0123456789abcdef0123456789abcdef-test-key";
#define KEYLEN (sizeof(key) - 1)
static const uint8_t other_key[] = "fedcba9876543210fedcba9876543210-other-key";
#define OTHER_KEYLEN (sizeof(other_key) - 1)

static struct fsproto_msg req_msg(void)
{
	struct fsproto_msg m = {.kind = FSPROTO_REQ, .epoch = 7, .grant_ms = 1500};

	strcpy(m.from, "node-a");
	strcpy(m.lease, "kubefence/metaservice");
	strcpy(m.nonce, "00112233445566778899aabbccddeeff");
	return m;
}

static struct fsproto_msg ans_msg(const char *from, const char *to, const char *nonce,
                                  int64_t epoch, enum fsproto_verdict v)
{
	struct fsproto_msg m = {.kind = FSPROTO_ANS, .epoch = epoch, .verdict = v};

	strcpy(m.from, from);
	strcpy(m.to, to);
	strcpy(m.nonce, nonce);
	strcpy(m.reason, v == FSPROTO_PROMISE ? "api-unreachable" : "api-reachable");
	return m;
}

/* body + " mac=" + its HMAC under key: a datagram whose MAC is right
 * whatever its fields say. */
static size_t sign(const char *body, char *out, size_t len)
{
	uint8_t md[32];
	unsigned mdlen = 0;
	size_t n;

	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)KEYLEN, (const unsigned char *)body,
	                           strlen(body), md, &mdlen));
	n = (size_t)snprintf(out, len, "%s mac=", body);
	for (unsigned i = 0; i < mdlen; i++)
		n += (size_t)snprintf(out + n, len - n, "%02x", md[i]);
	return n;
}

START_TEST(round_trip)
{
	struct fsproto_msg m = req_msg(), got;
	char buf[FSPROTO_DGRAM_MAX + 1], err[256];
	int n;

	n = fsproto_format(&m, key, KEYLEN, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_msg(strncmp(buf,
	                      "KFFS1 REQ from=node-a lease=kubefence/metaservice epoch=7 "
	                      "grant_ms=1500 nonce=00112233445566778899aabbccddeeff mac=",
	                      110) == 0,
	              "%s", buf);
	ck_assert_int_eq(fsproto_parse(buf, (size_t)n, key, KEYLEN, &got, err, sizeof(err)), 0);
	ck_assert_int_eq(got.kind, FSPROTO_REQ);
	ck_assert_str_eq(got.from, "node-a");
	ck_assert_str_eq(got.lease, "kubefence/metaservice");
	ck_assert_int_eq(got.epoch, 7);
	ck_assert_int_eq(got.grant_ms, 1500);
	ck_assert_str_eq(got.nonce, m.nonce);

	m = ans_msg("node-b", "node-a", m.nonce, 7, FSPROTO_PROMISE);
	n = fsproto_format(&m, key, KEYLEN, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(fsproto_parse(buf, (size_t)n, key, KEYLEN, &got, err, sizeof(err)), 0);
	ck_assert_int_eq(got.kind, FSPROTO_ANS);
	ck_assert_str_eq(got.from, "node-b");
	ck_assert_str_eq(got.to, "node-a");
	ck_assert_int_eq(got.verdict, FSPROTO_PROMISE);
	ck_assert_str_eq(got.reason, "api-unreachable");
}
END_TEST

/* A MAC made with another key, a flipped bit anywhere in the body or the
 * MAC: refused as a bad MAC (-EPERM). */
START_TEST(bad_mac_refused)
{
	struct fsproto_msg m = req_msg(), got;
	char buf[FSPROTO_DGRAM_MAX + 1], err[256];
	int n;

	n = fsproto_format(&m, other_key, OTHER_KEYLEN, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(fsproto_parse(buf, (size_t)n, key, KEYLEN, &got, err, sizeof(err)),
	                 -EPERM);
	ck_assert_str_eq(err, "bad mac");

	n = fsproto_format(&m, key, KEYLEN, buf, sizeof(buf));
	for (int i = 6; i < n; i++) {
		char copy[FSPROTO_DGRAM_MAX + 1];
		int r;

		memcpy(copy, buf, (size_t)n + 1);
		/* one character changed, staying printable and hex where it was */
		copy[i] = copy[i] == 'a' ? 'b' : copy[i] == '0' ? '1' : 'a';
		r = fsproto_parse(copy, (size_t)n, key, KEYLEN, &got, err, sizeof(err));
		ck_assert_msg(r == -EPERM || r == -EBADMSG, "offset %d: %d (%s)", i, r, copy);
		if (i < n - FSPROTO_MAC_HEX - 5)
			ck_assert_msg(r == -EPERM, "offset %d in the body: %d (%s)", i, r, err);
	}
}
END_TEST

/* Every proper prefix of a good datagram (a truncated line), and the good
 * one with something after its mac: refused, as malformed. */
START_TEST(truncated_refused)
{
	struct fsproto_msg m = ans_msg("node-b", "node-a", "00112233445566778899aabbccddeeff", 3,
	                               FSPROTO_REFUSE),
	                   got;
	char buf[FSPROTO_DGRAM_MAX + 1], err[256];
	int n = fsproto_format(&m, key, KEYLEN, buf, sizeof(buf));

	ck_assert_int_gt(n, 0);
	for (int len = 0; len < n; len++)
		ck_assert_msg(fsproto_parse(buf, (size_t)len, key, KEYLEN, &got, err,
		                            sizeof(err)) == -EBADMSG,
		              "a prefix of %d bytes was not refused as malformed", len);
	strcat(buf, " x=1");
	ck_assert_int_eq(fsproto_parse(buf, strlen(buf), key, KEYLEN, &got, err, sizeof(err)),
	                 -EBADMSG);
	buf[n] = '\n'; /* a newline: a control byte */
	ck_assert_int_eq(fsproto_parse(buf, (size_t)n + 1, key, KEYLEN, &got, err, sizeof(err)),
	                 -EBADMSG);
}
END_TEST

/* Datagrams whose MAC is right but whose fields are not: the grammar
 * refuses them. */
START_TEST(grammar_refused)
{
	static const char *const bodies[] = {
	        /* a field twice */
	        "KFFS1 REQ from=a from=b lease=n/l epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        /* missing grant_ms */
	        "KFFS1 REQ from=a lease=n/l epoch=1 nonce=00112233445566778899aabbccddeeff",
	        /* a field a REQ does not take */
	        "KFFS1 REQ from=a to=b lease=n/l epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        /* an unknown field */
	        "KFFS1 REQ from=a lease=n/l epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff extra=1",
	        /* an unknown verb */
	        "KFFS1 GRANT from=a lease=n/l epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        /* a short nonce, an upper-case one */
	        "KFFS1 REQ from=a lease=n/l epoch=1 grant_ms=1 nonce=0011",
	        "KFFS1 REQ from=a lease=n/l epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899AABBCCDDEEFF",
	        /* epoch 0, a negative epoch, a lease without a namespace */
	        "KFFS1 REQ from=a lease=n/l epoch=0 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        "KFFS1 REQ from=a lease=n/l epoch=-1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        "KFFS1 REQ from=a lease=nl epoch=1 grant_ms=1 "
	        "nonce=00112233445566778899aabbccddeeff",
	        /* a verdict that is neither */
	        "KFFS1 ANS from=b to=a nonce=00112233445566778899aabbccddeeff epoch=1 "
	        "verdict=maybe reason=x",
	        /* two spaces */
	        "KFFS1 ANS from=b  to=a nonce=00112233445566778899aabbccddeeff epoch=1 "
	        "verdict=promise reason=x",
	        /* another protocol version */
	        "KFFS2 ANS from=b to=a nonce=00112233445566778899aabbccddeeff epoch=1 "
	        "verdict=promise reason=x",
	};
	char buf[2048], err[256];
	struct fsproto_msg got;

	for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
		size_t n = sign(bodies[i], buf, sizeof(buf));

		ck_assert_msg(fsproto_parse(buf, n, key, KEYLEN, &got, err, sizeof(err)) ==
		                      -EBADMSG,
		              "accepted: %s", bodies[i]);
	}
	/* the same grammar accepts the right one */
	{
		size_t n = sign("KFFS1 ANS from=b to=a nonce=00112233445566778899aabbccddeeff "
		                "epoch=1 verdict=promise reason=x",
		                buf, sizeof(buf));
		ck_assert_int_eq(fsproto_parse(buf, n, key, KEYLEN, &got, err, sizeof(err)), 0);
	}
}
END_TEST

static struct failsafe_peer peers[2];

static void setup_peers(void)
{
	char err[256];

	ck_assert_int_eq(failsafe_parse_peer("node-b=127.0.0.1:7001", &peers[0], err, sizeof(err)),
	                 0);
	ck_assert_int_eq(failsafe_parse_peer("node-c=127.0.0.1:7002", &peers[1], err, sizeof(err)),
	                 0);
}

/* The leader's side: only answers of this round count.  A replayed answer
 * (another round's nonce), one addressed to another agent, one from an
 * agent that is no peer, one for another epoch: all refused, none counted. */
START_TEST(round_take)
{
	struct failsafe_round r1, r2;
	struct fsproto_msg a;
	char err[256];

	setup_peers();
	ck_assert_int_eq(failsafe_round_init(&r1, "node-a", peers, 2, 9), 0);
	ck_assert_int_eq(failsafe_round_init(&r2, "node-a", peers, 2, 9), 0);
	ck_assert_str_ne(r1.nonce, r2.nonce);

	a = ans_msg("node-b", "node-a", r1.nonce, 9, FSPROTO_PROMISE);
	ck_assert_int_eq(failsafe_round_take(&r1, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(r1.n_promised, 1);
	/* the same answer again: counted once */
	ck_assert_int_eq(failsafe_round_take(&r1, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(r1.n_promised, 1);
	/* round 1's promise replayed into round 2 */
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), -ESTALE);
	ck_assert_int_eq(r2.n_promised, 0);
	/* addressed to node-x */
	a = ans_msg("node-c", "node-x", r2.nonce, 9, FSPROTO_PROMISE);
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), -EXDEV);
	/* not a peer */
	a = ans_msg("node-z", "node-a", r2.nonce, 9, FSPROTO_PROMISE);
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), -ENOENT);
	/* another epoch */
	a = ans_msg("node-c", "node-a", r2.nonce, 8, FSPROTO_PROMISE);
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), -EPROTO);
	ck_assert_int_eq(r2.n_promised, 0);
	/* a request is no answer */
	a = req_msg();
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), -EINVAL);
	/* a refusal */
	a = ans_msg("node-c", "node-a", r2.nonce, 9, FSPROTO_REFUSE);
	ck_assert_int_eq(failsafe_round_take(&r2, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(r2.n_refused, 1);
}
END_TEST

START_TEST(replay_cache)
{
	struct failsafe_cache c = {0};
	struct failsafe_seen s = {.epoch = 4, .verdict = FSPROTO_PROMISE};

	strcpy(s.from, "node-a");
	strcpy(s.nonce, "00112233445566778899aabbccddeeff");
	ck_assert_ptr_null(failsafe_cache_find(&c, "node-a", s.nonce));
	failsafe_cache_add(&c, &s);
	ck_assert_ptr_nonnull(failsafe_cache_find(&c, "node-a", s.nonce));
	ck_assert_ptr_null(failsafe_cache_find(&c, "node-b", s.nonce));
	/* the oldest entry leaves once the ring is full */
	for (int i = 0; i < FAILSAFE_SEEN_MAX; i++) {
		struct failsafe_seen t = s;

		snprintf(t.nonce, sizeof(t.nonce), "%032x", i + 1);
		failsafe_cache_add(&c, &t);
	}
	ck_assert_ptr_null(failsafe_cache_find(&c, "node-a", s.nonce));
}
END_TEST

START_TEST(peers_and_key)
{
	char *list[] = {"node-a=127.0.0.1:7000", "node-b=10.0.0.2:7000", "node-c=[::1]:7000", NULL};
	char *dup[] = {"node-a=127.0.0.1:7000", "node-a=10.0.0.2:7000", NULL};
	char *alone[] = {"node-a=127.0.0.1:7000", NULL};
	struct failsafe_peer p[FAILSAFE_PEERS_MAX];
	char err[512], path[] = "/tmp/check_failsafe.XXXXXX";
	uint8_t k[FSPROTO_KEY_MAX];
	size_t n = 0, kl;
	int fd;

	ck_assert_int_eq(
	        failsafe_parse_peers(list, "node-a", p, FAILSAFE_PEERS_MAX, &n, err, sizeof(err)),
	        0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(p[0].name, "node-b");
	ck_assert_str_eq(p[1].name, "node-c");
	ck_assert_int_eq(
	        failsafe_parse_peers(dup, "x", p, FAILSAFE_PEERS_MAX, &n, err, sizeof(err)),
	        -EINVAL);
	ck_assert_int_eq(
	        failsafe_parse_peers(alone, "node-a", p, FAILSAFE_PEERS_MAX, &n, err, sizeof(err)),
	        -EINVAL);
	/* an agent whose identity the list does not name: a node added later
	 * (or a typo) would run as a candidate nobody asks for a promise */
	ck_assert_int_eq(
	        failsafe_parse_peers(list, "node-x", p, FAILSAFE_PEERS_MAX, &n, err, sizeof(err)),
	        -EINVAL);
	ck_assert_msg(strstr(err, "'node-x'") && strstr(err, "node-a, node-b, node-c"), "%s", err);
	ck_assert_int_eq(
	        failsafe_parse_peers(list, "node-", p, FAILSAFE_PEERS_MAX, &n, err, sizeof(err)),
	        -EINVAL);
	ck_assert_int_eq(failsafe_parse_peer("node-b", p, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(failsafe_parse_peer("node-b=10.0.0.1:0", p, err, sizeof(err)), -EINVAL);

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "short", 5), 5);
	ck_assert_int_eq(failsafe_read_key(path, k, sizeof(k), &kl, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(write(fd, key, KEYLEN), (ssize_t)KEYLEN);
	ck_assert_int_eq(failsafe_read_key(path, k, sizeof(k), &kl, err, sizeof(err)), 0);
	ck_assert_uint_eq(kl, 5 + KEYLEN);
	close(fd);
	unlink(path);
	ck_assert_int_lt(failsafe_read_key(path, k, sizeof(k), &kl, err, sizeof(err)), 0);
}
END_TEST

/* ------------------------------------------- the peer's decision, pure */

#define MS USEC_PER_MSEC

/* A follower that read node-a holding epoch 7, whose last answer from the
 * API came at 10 s; lease 2000/1500/250 ms (margin 250 ms). */
static struct failsafe_view view(void)
{
	return (struct failsafe_view){.observed = true,
	                              .holder = "node-a",
	                              .epoch = 7,
	                              .api_ok_at = 10 * USEC_PER_SEC,
	                              .renew_deadline = 1500 * MS,
	                              .retry = 250 * MS,
	                              .margin = 250 * MS};
}

static const char *decide(const struct failsafe_view *v, const struct fsproto_msg *m,
                          usec_t received, usec_t *until)
{
	*until = 0;
	return failsafe_decide(v, m, received, until);
}

/* Every refusal, each alone, then the promise and its end. */
START_TEST(decide_refusals_and_promise)
{
	struct fsproto_msg m = req_msg(); /* node-a, epoch 7, grant 1500 ms */
	usec_t late = 20 * USEC_PER_SEC, until;
	struct failsafe_view v;

	v = view();
	v.leading = true;
	ck_assert_str_eq(decide(&v, &m, late, &until), "holder");
	ck_assert_uint_eq(until, 0);
	v = view();
	v.observed = false;
	ck_assert_str_eq(decide(&v, &m, late, &until), "no-holder-seen");
	v = view();
	v.holder = ""; /* a free Lease, or none */
	ck_assert_str_eq(decide(&v, &m, late, &until), "no-holder-seen");
	v = view();
	v.holder = "node-c";
	ck_assert_str_eq(decide(&v, &m, late, &until), "not-the-holder");
	v = view();
	v.epoch = 8;
	ck_assert_str_eq(decide(&v, &m, late, &until), "other-epoch");
	v = view();
	m.grant_ms = 1501;
	ck_assert_str_eq(decide(&v, &m, late, &until), "grant-too-long");
	m.grant_ms = 1500; /* its own renew deadline: not too long */
	/* an answer from the API less than two retries ago */
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at + 2 * v.retry - 1, &until), "api-reachable");
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "api-reachable");
	ck_assert_uint_eq(until, 0);
	/* two retries after it: a promise, for grant + margin from receipt */
	ck_assert_ptr_null(decide(&v, &m, v.api_ok_at + 2 * v.retry, &until));
	ck_assert_uint_eq(until, v.api_ok_at + 2 * v.retry + 1500 * MS + 250 * MS);
	ck_assert_ptr_null(decide(&v, &m, late, &until));
	ck_assert_uint_eq(until, late + 1750 * MS);
	/* a shorter grant gives a shorter promise */
	m.grant_ms = 1000;
	ck_assert_ptr_null(decide(&v, &m, late, &until));
	ck_assert_uint_eq(until, late + 1250 * MS);
}
END_TEST

/* The refusals come in their order: a holder refuses as the holder
 * whatever else is wrong; the API check comes last. */
START_TEST(decide_order)
{
	struct fsproto_msg m = req_msg();
	struct failsafe_view v = view();
	usec_t until;

	m.grant_ms = 99999;
	m.epoch = 3;
	strcpy(m.from, "node-z");
	v.leading = true;
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "holder");
	v.leading = false;
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "not-the-holder");
	strcpy(m.from, "node-a");
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "other-epoch");
	m.epoch = 7;
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "grant-too-long");
	m.grant_ms = 1500;
	ck_assert_str_eq(decide(&v, &m, v.api_ok_at, &until), "api-reachable");
	/* an agent that never heard from the API (api_ok_at 0) */
	v.api_ok_at = 0;
	ck_assert_ptr_null(decide(&v, &m, 20 * USEC_PER_SEC, &until));
}
END_TEST

/* ------------------------------------------- the leader's extension, pure */

/* t0 + grant - margin, less the suspend during the round; never a revival,
 * never for grant <= margin, never shorter than the validity it had. */
START_TEST(extension_arithmetic)
{
	usec_t t0 = 100 * USEC_PER_SEC, b0 = 500 * USEC_PER_SEC, G = 1500 * MS, m = 250 * MS;
	usec_t now = t0 + 30 * MS, bnow = b0 + 30 * MS, valid = t0 + 400 * MS;

	/* no suspend: t0 + G - m */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, valid), t0 + 1250 * MS);
	/* BOOTTIME a little behind (read a moment earlier): no slip */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow - 5, G, m, valid), t0 + 1250 * MS);
	/* a 200 ms suspend during the round comes off it */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow + 200 * MS, G, m, valid),
	                  t0 + 1050 * MS);
	/* a suspend that leaves it no later than the validity: none */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow + 850 * MS, G, m, valid), 0);
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow + 900 * MS, G, m, valid), 0);
	/* a suspend longer than grant - margin, or than all of t0: none */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow + 1250 * MS, G, m, valid), 0);
	ck_assert_uint_eq(
	        failsafe_extension(t0, b0, now, bnow + t0 + 2 * USEC_PER_SEC, G, m, valid), 0);
	/* the term lapsed during the round: never revived */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, now), 0);
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, now - 1), 0);
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, now + 1), t0 + 1250 * MS);
	/* the validity already reaches past it: no extension */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, t0 + 1250 * MS), 0);
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, G, m, t0 + 1250 * MS - 1),
	                  t0 + 1250 * MS);
	/* grant <= margin: a round extends nothing */
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, 1000 * MS, 1000 * MS, valid), 0);
	ck_assert_uint_eq(failsafe_extension(t0, b0, now, bnow, 1000 * MS, 3500 * MS, valid), 0);
	/* the margin of the lease timings */
	ck_assert_uint_eq(failsafe_margin(4000 * MS, 3000 * MS), 500 * MS);
	ck_assert_uint_eq(failsafe_margin(3000 * MS, 3000 * MS), 0);
}
END_TEST

/* ------------------------------------------- rounds between real sockets */

struct judge {
	enum fsproto_verdict v;
	int calls;
};

static enum fsproto_verdict judge_fn(void *ud, const struct fsproto_msg *req, usec_t received,
                                     char *reason, size_t len)
{
	struct judge *j = ud;

	(void)req;
	(void)received;
	__atomic_add_fetch(&j->calls, 1, __ATOMIC_SEQ_CST);
	str_copy(reason, len, j->v == FSPROTO_PROMISE ? "api-unreachable" : "api-reachable");
	return j->v;
}

/* An endpoint `self` on 127.0.0.1:port; with a judge, its listener runs. */
static struct failsafe *endpoint(const char *self, const char *peer_list, const uint8_t *k,
                                 size_t kl, uint16_t port, struct judge *j)
{
	char *items[4] = {0}, listen[32], err[512], copy[256];
	struct failsafe_peer p[FAILSAFE_PEERS_MAX];
	struct failsafe_options o = {.self = self,
	                             .listen = listen,
	                             .peers = p,
	                             .key = k,
	                             .keylen = kl,
	                             .lease = "ns/lease"};
	struct failsafe *fs = NULL;
	char *save = NULL;
	size_t ni = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	snprintf(copy, sizeof(copy), "%s", peer_list);
	for (char *t = strtok_r(copy, ",", &save); t && ni < 3; t = strtok_r(NULL, ",", &save))
		items[ni++] = t;
	ck_assert_int_eq(failsafe_parse_peers(items, self, p, FAILSAFE_PEERS_MAX, &o.n_peers, err,
	                                      sizeof(err)),
	                 0);
	ck_assert_msg(failsafe_new(&o, &fs, err, sizeof(err)) == 0, "%s", err);
	if (j) {
		failsafe_set_judge(fs, judge_fn, j);
		ck_assert_int_eq(failsafe_start(fs), 0);
	}
	return fs;
}

static uint16_t base_port(void)
{
	return (uint16_t)(20000 + (getpid() % 20000));
}

START_TEST(rounds_on_loopback)
{
	uint16_t b = base_port();
	char list[256];
	struct judge jb = {.v = FSPROTO_PROMISE}, jc = {.v = FSPROTO_PROMISE};
	struct failsafe *a, *nb, *nc;
	char detail[512];
	usec_t t0;

	snprintf(list, sizeof(list), "node-a=127.0.0.1:%u,node-b=127.0.0.1:%u,node-c=127.0.0.1:%u",
	         b, b + 1, b + 2);
	a = endpoint("node-a", list, key, KEYLEN, b, NULL);
	ck_assert_int_eq(failsafe_start(a), 0); /* answers come to its listener */
	nb = endpoint("node-b", list, key, KEYLEN, (uint16_t)(b + 1), &jb);
	nc = endpoint("node-c", list, key, KEYLEN, (uint16_t)(b + 2), &jc);

	/* both promise */
	ck_assert_int_eq(failsafe_ask(a, 5, 1500, clock_mono_usec() + 500 * USEC_PER_MSEC, detail,
	                              sizeof(detail)),
	                 FAILSAFE_PROMISED);
	ck_assert_int_eq(jb.calls, 1);
	ck_assert_int_eq(jc.calls, 1);
	/* one refuses */
	jc.v = FSPROTO_REFUSE;
	ck_assert_int_eq(failsafe_ask(a, 5, 1500, clock_mono_usec() + 500 * USEC_PER_MSEC, detail,
	                              sizeof(detail)),
	                 FAILSAFE_REFUSED);
	ck_assert_msg(strstr(detail, "'node-c' refused (api-reachable)"), "%s", detail);
	/* one is gone: silence until the deadline, retransmitted meanwhile.
	 * A bare socket on its port counts the copies that reach it. */
	jc.v = FSPROTO_PROMISE;
	nc = failsafe_free(nc);
	{
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)(b + 2)),
		                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), copies = 0;
		char dg[FSPROTO_DGRAM_MAX + 1];

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		t0 = clock_mono_usec();
		ck_assert_int_eq(
		        failsafe_ask(a, 5, 1500, t0 + 200 * USEC_PER_MSEC, detail, sizeof(detail)),
		        FAILSAFE_SILENT);
		ck_assert_uint_ge(clock_mono_usec() - t0, 200 * USEC_PER_MSEC);
		ck_assert_msg(strstr(detail, "'node-c' did not answer"), "%s", detail);
		while (recv(fd, dg, sizeof(dg), 0) > 0)
			copies++;
		close(fd);
		ck_assert_int_ge(copies, 2); /* sent, then sent again */
	}
	/* node-b's judge ran once per round.  That is all it shows: copies of
	 * a request node-b already answered would be answered from its replay
	 * cache without calling the judge, so a retransmission to node-b
	 * would go unseen here (what it does show: no copy gave a second
	 * promise). */
	ck_assert_int_eq(jb.calls, 3);
	/* a peer with another key: its answers do not verify (bad mac) */
	jc.calls = 0;
	nc = endpoint("node-c", list, other_key, OTHER_KEYLEN, (uint16_t)(b + 2), &jc);
	ck_assert_int_eq(failsafe_ask(a, 5, 1500, clock_mono_usec() + 200 * USEC_PER_MSEC, detail,
	                              sizeof(detail)),
	                 FAILSAFE_SILENT);
	ck_assert_int_eq(jc.calls, 0); /* nor did the requests it got */
	failsafe_free(nc);
	failsafe_free(nb);
	failsafe_free(a);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("failsafe");
	TCase *tc = tcase_create("proto");

	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, bad_mac_refused);
	tcase_add_test(tc, truncated_refused);
	tcase_add_test(tc, grammar_refused);
	tcase_add_test(tc, round_take);
	tcase_add_test(tc, replay_cache);
	tcase_add_test(tc, peers_and_key);
	suite_add_tcase(s, tc);
	tc = tcase_create("pure");
	tcase_add_test(tc, decide_refusals_and_promise);
	tcase_add_test(tc, decide_order);
	tcase_add_test(tc, extension_arithmetic);
	suite_add_tcase(s, tc);
	tc = tcase_create("loopback");
	tcase_add_test(tc, rounds_on_loopback);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
