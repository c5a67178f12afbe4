/* fsproto: the failsafe protocol's datagrams (see fsproto.h). */
#include "config.h"

#include "lib/fsproto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/ctlproto.h"
#include "lib/util.h"

/* The fields, in the order of fsproto.h. */
enum {
	F_FROM,
	F_TO,
	F_LEASE,
	F_EPOCH,
	F_GRANT,
	F_NONCE,
	F_VERDICT,
	F_REASON,
	F_MAC,
};

static const struct ctlproto_field fields[] = {
        [F_FROM] = {"from", CTLPROTO_TEXT, 1, FSPROTO_NAME_MAX - 1, NULL},
        [F_TO] = {"to", CTLPROTO_TEXT, 1, FSPROTO_NAME_MAX - 1, NULL},
        [F_LEASE] = {"lease", CTLPROTO_TEXT, 3, FSPROTO_LEASE_MAX - 1, NULL},
        [F_EPOCH] = {"epoch", CTLPROTO_U64, 1, INT32_MAX, NULL},
        [F_GRANT] = {"grant_ms", CTLPROTO_U64, 1, 3600000, NULL},
        [F_NONCE] = {"nonce", CTLPROTO_TEXT, FSPROTO_NONCE_HEX, FSPROTO_NONCE_HEX, NULL},
        [F_VERDICT] = {"verdict", CTLPROTO_TEXT, 1, 16, NULL},
        [F_REASON] = {"reason", CTLPROTO_TEXT, 1, FSPROTO_REASON_MAX - 1, NULL},
        [F_MAC] = {"mac", CTLPROTO_TEXT, FSPROTO_MAC_HEX, FSPROTO_MAC_HEX, NULL},
};

#define F(x) CTLPROTO_F(x)
static const struct ctlproto_verb verbs[] = {
        {"REQ", FSPROTO_REQ,
         F(F_FROM) | F(F_LEASE) | F(F_EPOCH) | F(F_GRANT) | F(F_NONCE) | F(F_MAC), 0},
        {"ANS", FSPROTO_ANS,
         F(F_FROM) | F(F_TO) | F(F_NONCE) | F(F_EPOCH) | F(F_VERDICT) | F(F_REASON) | F(F_MAC), 0},
};
#undef F

static const struct ctlproto_grammar grammar = {fields, ELEMENTSOF(fields), verbs,
                                                ELEMENTSOF(verbs)};

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0' || s[n] == ' ';
}

static bool is_reason(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

/* A value token: printable ASCII without a space. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int mac_hex(const uint8_t *key, size_t keylen, const char *data, size_t n,
                   char out[static FSPROTO_MAC_HEX + 1])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (keylen < FSPROTO_KEY_MIN || keylen > FSPROTO_KEY_MAX)
		return -EINVAL;
	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, n, md, &mdlen) ||
	    mdlen != FSPROTO_MAC_HEX / 2)
		return -EIO;
	to_hex(md, mdlen, out);
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

const char *fsproto_verdict_name(enum fsproto_verdict v)
{
	return v == FSPROTO_PROMISE ? "promise" : v == FSPROTO_REFUSE ? "refuse" : "?";
}

int fsproto_format(const struct fsproto_msg *m, const uint8_t *key, size_t keylen, char *buf,
                   size_t len)
{
	char mac[FSPROTO_MAC_HEX + 1];
	char body[FSPROTO_DGRAM_MAX + 1];
	int n, r;

	if (!is_token(m->from) || m->epoch < 1 || m->epoch > INT32_MAX ||
	    strlen(m->nonce) != FSPROTO_NONCE_HEX || !is_hex(m->nonce, FSPROTO_NONCE_HEX))
		return -EINVAL;
	if (m->kind == FSPROTO_REQ) {
		if (!is_token(m->lease) || !strchr(m->lease, '/') || m->grant_ms < 1 ||
		    m->grant_ms > 3600000)
			return -EINVAL;
		n = snprintf(body, sizeof(body),
		             FSPROTO_MAGIC " REQ from=%s lease=%s epoch=%" PRId64
		                           " grant_ms=%" PRId64 " nonce=%s",
		             m->from, m->lease, m->epoch, m->grant_ms, m->nonce);
	} else if (m->kind == FSPROTO_ANS) {
		if (!is_token(m->to) || !is_reason(m->reason) ||
		    (m->verdict != FSPROTO_PROMISE && m->verdict != FSPROTO_REFUSE))
			return -EINVAL;
		n = snprintf(body, sizeof(body),
		             FSPROTO_MAGIC " ANS from=%s to=%s nonce=%s epoch=%" PRId64
		                           " verdict=%s reason=%s",
		             m->from, m->to, m->nonce, m->epoch, fsproto_verdict_name(m->verdict),
		             m->reason);
	} else {
		return -EINVAL;
	}
	if (n < 0 || (size_t)n + 5 + FSPROTO_MAC_HEX > FSPROTO_DGRAM_MAX)
		return -EMSGSIZE;
	r = mac_hex(key, keylen, body, (size_t)n, mac);
	if (r < 0)
		return r;
	if ((size_t)n + 5 + FSPROTO_MAC_HEX >= len)
		return -EMSGSIZE;
	return snprintf(buf, len, "%s mac=%s", body, mac);
}

int fsproto_parse(const char *dgram, size_t len, const uint8_t *key, size_t keylen,
                  struct fsproto_msg *ret, char *err, size_t errlen)
{
	static const char magic[] = FSPROTO_MAGIC " ";
	char line[FSPROTO_DGRAM_MAX + 1], want[FSPROTO_MAC_HEX + 1];
	struct ctlproto_line pl;
	struct fsproto_msg m = {0};
	const char *mac;
	size_t body;
	int r;

	if (len > FSPROTO_DGRAM_MAX) {
		errbuf_set(err, errlen, "datagram longer than %d bytes", FSPROTO_DGRAM_MAX);
		return -EBADMSG;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)dgram[i] < ' ' || (unsigned char)dgram[i] >= 0x7f) {
			errbuf_set(err, errlen, "a control or non-ASCII byte at offset %zu", i);
			return -EBADMSG;
		}
	memcpy(line, dgram, len);
	line[len] = '\0';
	if (len < sizeof(magic) - 1 || memcmp(line, magic, sizeof(magic) - 1) != 0) {
		errbuf_set(err, errlen, "not a " FSPROTO_MAGIC " datagram");
		return -EBADMSG;
	}
	/* the mac is the last field: " mac=" and exactly 64 hex digits */
	if (len < sizeof(magic) - 1 + 5 + FSPROTO_MAC_HEX) {
		errbuf_set(err, errlen, "truncated: no mac");
		return -EBADMSG;
	}
	body = len - FSPROTO_MAC_HEX - 5;
	mac = line + body;
	if (strncmp(mac, " mac=", 5) != 0 || !is_hex(mac + 5, FSPROTO_MAC_HEX)) {
		errbuf_set(err, errlen, "truncated: no mac as the last field");
		return -EBADMSG;
	}
	r = mac_hex(key, keylen, line, body, want);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot compute the mac: %s", strerror(-r));
		return r == -EINVAL ? -EINVAL : -EIO;
	}
	if (CRYPTO_memcmp(want, mac + 5, FSPROTO_MAC_HEX) != 0) {
		errbuf_set(err, errlen, "bad mac");
		return -EPERM;
	}
	r = ctlproto_parse(&grammar, line + sizeof(magic) - 1, &pl, err, errlen);
	if (r < 0)
		return -EBADMSG;
	m.kind = pl.verb->id;
	str_copy(m.from, sizeof(m.from), pl.text[F_FROM]);
	m.epoch = (int64_t)pl.u64[F_EPOCH];
	str_copy(m.nonce, sizeof(m.nonce), pl.text[F_NONCE]);
	if (!is_hex(m.nonce, FSPROTO_NONCE_HEX)) {
		errbuf_set(err, errlen, "nonce: not %d lower-case hex digits", FSPROTO_NONCE_HEX);
		return -EBADMSG;
	}
	if (m.kind == FSPROTO_REQ) {
		str_copy(m.lease, sizeof(m.lease), pl.text[F_LEASE]);
		m.grant_ms = (int64_t)pl.u64[F_GRANT];
		if (!strchr(m.lease, '/')) {
			errbuf_set(err, errlen, "lease: not NAMESPACE/NAME");
			return -EBADMSG;
		}
	} else {
		str_copy(m.to, sizeof(m.to), pl.text[F_TO]);
		if (strcmp(pl.text[F_VERDICT], "promise") == 0)
			m.verdict = FSPROTO_PROMISE;
		else if (strcmp(pl.text[F_VERDICT], "refuse") == 0)
			m.verdict = FSPROTO_REFUSE;
		else {
			errbuf_set(err, errlen, "verdict: '%.16s' is neither promise nor refuse",
			           pl.text[F_VERDICT]);
			return -EBADMSG;
		}
		if (!is_reason(pl.text[F_REASON])) {
			errbuf_set(err, errlen, "reason: not [a-z0-9-]+");
			return -EBADMSG;
		}
		str_copy(m.reason, sizeof(m.reason), pl.text[F_REASON]);
	}
	*ret = m;
	return 0;
}

int fsproto_nonce(char out[static FSPROTO_NONCE_HEX + 1])
{
	uint8_t b[FSPROTO_NONCE_HEX / 2];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	to_hex(b, sizeof(b), out);
	return 0;
}
