/* proto: parser and encoder of the kubefence-metad client protocol (see
 * proto.h and PROTOCOL.md).  The parser looks at most PROTO_LINE_MAX bytes
 * ahead for a line end and checks every announced length against the limits
 * before it waits for the payload, so the memory a connection needs is
 * bounded by one line plus the largest valid request. */
#include "config.h"

#include "storage/metad/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int pbuf_append(struct pbuf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *d;

		while (cap < b->len + n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int pbuf_printf(struct pbuf *b, const char *fmt, ...)
{
	char tmp[PROTO_LINE_MAX * 2];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	return pbuf_append(b, tmp, (size_t)n);
}

void pbuf_consume(struct pbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void pbuf_free(struct pbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

const char *proto_op_name(enum proto_op op)
{
	switch (op) {
	case PROTO_OP_PUT:
		return "PUT";
	case PROTO_OP_GET:
		return "GET";
	case PROTO_OP_DEL:
		return "DEL";
	case PROTO_OP_LIST:
		return "LIST";
	case PROTO_OP_STAT:
		return "STAT";
	default:
		return "NONE";
	}
}

/* Copy s into dst (of n bytes) as one printable line. */
static void sanitise(char *dst, size_t n, const char *s, size_t slen)
{
	size_t i;

	for (i = 0; i < slen && i + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[i] = '\0';
}

/* Parse a decimal length: digits only, at most 20 of them, no overflow. */
static int parse_u64(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = v;
	return 0;
}

struct tok {
	const char *p;
	size_t n;
};

/* Split a line at spaces (runs of spaces count as one).  Returns the number
 * of tokens, up to max; max + 1 means "more than max". */
static size_t split(const char *line, size_t len, struct tok *t, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len) {
		size_t start;

		while (i < len && line[i] == ' ')
			i++;
		if (i >= len)
			break;
		start = i;
		while (i < len && line[i] != ' ')
			i++;
		if (n == max)
			return max + 1;
		t[n].p = line + start;
		t[n].n = i - start;
		n++;
	}
	return n;
}

static enum proto_parse_kind set_error(struct proto_parse *r, enum proto_parse_kind kind,
                                       const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static enum proto_parse_kind set_error(struct proto_parse *r, enum proto_parse_kind kind,
                                       const char *code, const char *fmt, ...)
{
	va_list ap;

	r->kind = kind;
	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	return kind;
}

static bool tok_is(const struct tok *t, const char *word)
{
	return t->n == strlen(word) && strncasecmp(t->p, word, t->n) == 0;
}

/* Payload lengths announced by a line: decide between a request, an error
 * whose payload is skipped, and lost framing. */
static enum proto_parse_kind check_payload(struct proto_parse *r, uint64_t klen, uint64_t vlen,
                                           size_t line_len, size_t avail, bool key_may_be_empty)
{
	uint64_t total = klen + vlen; /* both <= 10^20 / 2 after the parse: no wrap below */

	if (klen > UINT64_MAX / 2 || vlen > UINT64_MAX / 2 || total > PROTO_SKIP_MAX)
		return set_error(r, PROTO_FATAL, "toolarge",
		                 "payload of %llu bytes is over %d: closing the connection",
		                 (unsigned long long)(klen > UINT64_MAX / 2 || vlen > UINT64_MAX / 2
		                                              ? UINT64_MAX
		                                              : total),
		                 PROTO_SKIP_MAX);
	r->consumed = line_len;
	r->skip = total;
	if (klen > PROTO_KEY_MAX)
		return set_error(r, PROTO_SKIP, "toolarge", "key of %llu bytes is over %d",
		                 (unsigned long long)klen, PROTO_KEY_MAX);
	if (vlen > PROTO_VALUE_MAX)
		return set_error(r, PROTO_SKIP, "toolarge", "value of %llu bytes is over %d",
		                 (unsigned long long)vlen, PROTO_VALUE_MAX);
	if (klen == 0 && !key_may_be_empty)
		return set_error(r, PROTO_SKIP, "badrequest", "empty key");
	if (avail < line_len + total) {
		r->consumed = 0;
		r->skip = 0;
		r->kind = PROTO_NEED_MORE;
		return PROTO_NEED_MORE;
	}
	r->skip = 0;
	r->consumed = line_len + (size_t)total;
	r->kind = PROTO_REQUEST;
	return PROTO_REQUEST;
}

enum proto_parse_kind proto_parse_request(const void *buf, size_t len, struct proto_parse *r)
{
	const uint8_t *b = buf;
	const uint8_t *nl;
	const char *line = buf;
	size_t scan = len < PROTO_LINE_MAX ? len : PROTO_LINE_MAX;
	size_t line_len, text_len, ntok;
	struct tok t[4];
	uint64_t klen = 0, vlen = 0, limit = 0;
	enum proto_parse_kind k;
	char verb[32];

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return PROTO_NEED_MORE; /* buf may be NULL */
	nl = memchr(b, '\n', scan);
	if (!nl) {
		if (len >= PROTO_LINE_MAX)
			return set_error(r, PROTO_FATAL, "badrequest",
			                 "line longer than %d bytes: closing the connection",
			                 PROTO_LINE_MAX);
		return PROTO_NEED_MORE;
	}
	line_len = (size_t)(nl - b) + 1;
	text_len = line_len - 1;
	if (text_len > 0 && line[text_len - 1] == '\r')
		text_len--;
	r->consumed = line_len;

	for (size_t i = 0; i < text_len; i++)
		if (b[i] < 0x20 || b[i] == 0x7f)
			return set_error(r, PROTO_BAD_LINE, "badrequest",
			                 "control character in the command line");
	ntok = split(line, text_len, t, 3);
	if (ntok == 0)
		return set_error(r, PROTO_BAD_LINE, "badrequest", "empty line");
	sanitise(verb, t[0].n + 1 < sizeof(verb) ? t[0].n + 1 : sizeof(verb), t[0].p, t[0].n);

	if (tok_is(&t[0], "STAT")) {
		if (ntok != 1)
			return set_error(r, PROTO_BAD_LINE, "badrequest", "usage: STAT");
		r->req.op = PROTO_OP_STAT;
		r->kind = PROTO_REQUEST;
		return PROTO_REQUEST;
	}
	if (tok_is(&t[0], "GET") || tok_is(&t[0], "DEL")) {
		r->req.op = tok_is(&t[0], "GET") ? PROTO_OP_GET : PROTO_OP_DEL;
		if (ntok != 2 || parse_u64(t[1].p, t[1].n, &klen) < 0)
			return set_error(r, PROTO_FATAL, "badrequest",
			                 "usage: %s <key-length>: closing the connection", verb);
		k = check_payload(r, klen, 0, line_len, len, false);
	} else if (tok_is(&t[0], "PUT")) {
		r->req.op = PROTO_OP_PUT;
		if (ntok != 3 || parse_u64(t[1].p, t[1].n, &klen) < 0 ||
		    parse_u64(t[2].p, t[2].n, &vlen) < 0)
			return set_error(
			        r, PROTO_FATAL, "badrequest",
			        "usage: PUT <key-length> <value-length>: closing the connection");
		k = check_payload(r, klen, vlen, line_len, len, false);
	} else if (tok_is(&t[0], "LIST")) {
		r->req.op = PROTO_OP_LIST;
		if (ntok < 2 || ntok > 3 || parse_u64(t[1].p, t[1].n, &klen) < 0)
			return set_error(r, PROTO_FATAL, "badrequest",
			                 "usage: LIST <prefix-length> [<limit>]: closing the "
			                 "connection");
		k = check_payload(r, klen, 0, line_len, len, true);
		if (k == PROTO_REQUEST && ntok == 3 &&
		    (parse_u64(t[2].p, t[2].n, &limit) < 0 || limit > UINT32_MAX)) {
			r->consumed = line_len;
			r->skip = klen;
			return set_error(r, PROTO_SKIP, "badrequest", "bad LIST limit");
		}
	} else {
		return set_error(r, PROTO_BAD_LINE, "badrequest", "unknown command '%s'", verb);
	}
	if (k != PROTO_REQUEST)
		return k;
	r->req.key = b + line_len;
	r->req.key_len = (size_t)klen;
	r->req.limit = (uint32_t)limit;
	if (r->req.op == PROTO_OP_PUT) {
		r->req.value = b + line_len + klen;
		r->req.value_len = (size_t)vlen;
	}
	return PROTO_REQUEST;
}

int proto_encode_request(struct pbuf *out, enum proto_op op, const void *key, size_t key_len,
                         const void *value, size_t value_len, uint32_t limit)
{
	size_t old = out->len;
	int r;

	if ((key_len && !key) || (value_len && !value))
		return -EINVAL;
	switch (op) {
	case PROTO_OP_PUT:
		r = pbuf_printf(out, "PUT %zu %zu\n", key_len, value_len);
		break;
	case PROTO_OP_GET:
	case PROTO_OP_DEL:
		if (value_len)
			return -EINVAL;
		r = pbuf_printf(out, "%s %zu\n", proto_op_name(op), key_len);
		break;
	case PROTO_OP_LIST:
		if (value_len)
			return -EINVAL;
		if (limit)
			r = pbuf_printf(out, "LIST %zu %u\n", key_len, limit);
		else
			r = pbuf_printf(out, "LIST %zu\n", key_len);
		break;
	case PROTO_OP_STAT:
		if (key_len || value_len)
			return -EINVAL;
		return pbuf_printf(out, "STAT\n");
	default:
		return -EINVAL;
	}
	if (r >= 0)
		r = pbuf_append(out, key, key_len);
	if (r >= 0)
		r = pbuf_append(out, value, value_len);
	if (r < 0)
		out->len = old;
	return r;
}

int proto_encode_ok(struct pbuf *out)
{
	return pbuf_append(out, "OK\n", 3);
}

int proto_encode_notfound(struct pbuf *out)
{
	return pbuf_append(out, "NOTFOUND\n", 9);
}

static int encode_counted(struct pbuf *out, const char *word, const void *p, size_t len)
{
	size_t old = out->len;
	int r = pbuf_printf(out, "%s %zu\n", word, len);

	if (r >= 0)
		r = pbuf_append(out, p, len);
	if (r < 0)
		out->len = old;
	return r;
}

int proto_encode_value(struct pbuf *out, const void *value, size_t len)
{
	return encode_counted(out, "VALUE", value, len);
}

int proto_encode_key(struct pbuf *out, const void *key, size_t len)
{
	return encode_counted(out, "KEY", key, len);
}

int proto_encode_stats(struct pbuf *out, const void *text, size_t len)
{
	return encode_counted(out, "STATS", text, len);
}

int proto_encode_notmaster(struct pbuf *out, const char *master)
{
	char m[PROTO_LINE_MAX - 32];

	if (!master || !*master)
		master = "unknown";
	sanitise(m, sizeof(m), master, strlen(master));
	/* the master name is one token */
	for (char *c = m; *c; c++)
		if (*c == ' ')
			*c = '_';
	return pbuf_printf(out, "NOTMASTER master=%s\n", m);
}

int proto_encode_err(struct pbuf *out, const char *code, const char *msg)
{
	char c[32], m[PROTO_LINE_MAX - 48];

	sanitise(c, sizeof(c), code, strlen(code));
	for (char *p = c; *p; p++)
		if (*p == ' ')
			*p = '_';
	sanitise(m, sizeof(m), msg, strlen(msg));
	return pbuf_printf(out, "ERR %s %s\n", c[0] ? c : "error", m);
}

int proto_encode_keys(struct pbuf *out, uint64_t n, bool more)
{
	return pbuf_printf(out, "KEYS %llu %d\n", (unsigned long long)n, more ? 1 : 0);
}

/* "WORD <len>\n<payload>" with len <= max. */
static int parse_counted(const uint8_t *b, size_t len, size_t line_len, const struct tok *t,
                         size_t ntok, size_t max, struct proto_resp *r)
{
	uint64_t n;

	if (ntok != 2 || parse_u64(t[1].p, t[1].n, &n) < 0 || n > max)
		return -EBADMSG;
	if (len < line_len + n)
		return 0;
	r->data = b + line_len;
	r->len = (size_t)n;
	return (int)(line_len + n);
}

int proto_parse_response(const void *buf, size_t len, struct proto_resp *r)
{
	const uint8_t *b = buf;
	const char *line = buf;
	size_t scan = len < PROTO_LINE_MAX ? len : PROTO_LINE_MAX;
	const uint8_t *nl;
	size_t line_len, text_len, ntok;
	struct tok t[4];
	uint64_t n, more;

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return 0; /* buf may be NULL */
	nl = memchr(b, '\n', scan);
	if (!nl)
		return len >= PROTO_LINE_MAX ? -EBADMSG : 0;
	line_len = (size_t)(nl - b) + 1;
	text_len = line_len - 1;
	for (size_t i = 0; i < text_len; i++)
		if (b[i] < 0x20 || b[i] == 0x7f)
			return -EBADMSG;
	ntok = split(line, text_len, t, 3);
	if (ntok == 0)
		return -EBADMSG;
	if (tok_is(&t[0], "OK") && ntok == 1) {
		r->kind = PROTO_R_OK;
	} else if (tok_is(&t[0], "NOTFOUND") && ntok == 1) {
		r->kind = PROTO_R_NOTFOUND;
	} else if (tok_is(&t[0], "NOTMASTER")) {
		if (ntok != 2 || t[1].n < 7 || memcmp(t[1].p, "master=", 7) != 0)
			return -EBADMSG;
		r->kind = PROTO_R_NOTMASTER;
		sanitise(r->text, sizeof(r->text), t[1].p + 7, t[1].n - 7);
	} else if (tok_is(&t[0], "ERR")) {
		if (ntok < 2)
			return -EBADMSG;
		r->kind = PROTO_R_ERR;
		sanitise(r->text, sizeof(r->text), t[1].p, text_len - (size_t)(t[1].p - line));
	} else if (tok_is(&t[0], "KEYS")) {
		if (ntok != 3 || parse_u64(t[1].p, t[1].n, &n) < 0 || n > PROTO_LIST_MAX ||
		    parse_u64(t[2].p, t[2].n, &more) < 0 || more > 1)
			return -EBADMSG;
		r->kind = PROTO_R_KEYS;
		r->count = n;
		r->more = more == 1;
	} else if (tok_is(&t[0], "VALUE")) {
		r->kind = PROTO_R_VALUE;
		return parse_counted(b, len, line_len, t, ntok, PROTO_VALUE_MAX, r);
	} else if (tok_is(&t[0], "KEY")) {
		r->kind = PROTO_R_KEY;
		return parse_counted(b, len, line_len, t, ntok, PROTO_KEY_MAX, r);
	} else if (tok_is(&t[0], "STATS")) {
		r->kind = PROTO_R_STATS;
		return parse_counted(b, len, line_len, t, ntok, PROTO_STATS_MAX, r);
	} else {
		return -EBADMSG;
	}
	return (int)line_len;
}

enum proto_outcome proto_write_outcome(enum proto_resp_kind kind, const char *err_text, bool sent)
{
	static const char *const not_made[] = {"badrequest",  "toolarge", "busy",
	                                       "unavailable", "deadline", "io"};

	switch (kind) {
	case PROTO_R_OK:
	case PROTO_R_NOTFOUND:
		return PROTO_MADE;
	case PROTO_R_NOTMASTER:
		return PROTO_NOT_MADE;
	case PROTO_R_NONE:
		return sent ? PROTO_UNKNOWN : PROTO_NOT_MADE;
	case PROTO_R_ERR:
		for (size_t i = 0; err_text && i < sizeof(not_made) / sizeof(not_made[0]); i++) {
			size_t n = strlen(not_made[i]);

			if (strncmp(err_text, not_made[i], n) == 0 &&
			    (err_text[n] == ' ' || err_text[n] == '\0'))
				return PROTO_NOT_MADE;
		}
		return PROTO_UNKNOWN; /* indeterminate, or a code this client does not know */
	default:
		return PROTO_UNKNOWN; /* VALUE, KEYS or STATS to a write: a confused server */
	}
}
