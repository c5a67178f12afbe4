/* proto: the client protocol of kubefence-metad, parser and encoder.
 *
 * Pure code (no I/O, no logging, no allocation except in struct pbuf) shared
 * by the server and the client, so both sides frame messages the same way
 * and the parser can be fuzzed on its own.  A message is a text line of at
 * most PROTO_LINE_MAX bytes ending in "\n" that announces the lengths of the
 * raw bytes that follow it ("PUT <klen> <vlen>\n<key><value>"), so a parser
 * never needs more than one line plus the announced, bounded payload.  The
 * wire format is documented in storage/metad/PROTOCOL.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_LINE_MAX  256                /* request and response lines, "\n" included */
#define PROTO_KEY_MAX   1024               /* = METASTORE_KEY_MAX */
#define PROTO_VALUE_MAX (64 * 1024)        /* = METASTORE_VALUE_MAX */
#define PROTO_SKIP_MAX  (16 * 1024 * 1024) /* larger payloads are not skipped: close */
#define PROTO_LIST_MAX  100000             /* most keys one LIST may return */
#define PROTO_STATS_MAX (64 * 1024)        /* STATS body */

/* A growable output buffer. */
struct pbuf {
	uint8_t *data;
	size_t len, cap;
};

/* Append bytes / a formatted string.  Return 0 or -ENOMEM. */
int pbuf_append(struct pbuf *b, const void *p, size_t n);
int pbuf_printf(struct pbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes. */
void pbuf_consume(struct pbuf *b, size_t n);
void pbuf_free(struct pbuf *b);

enum proto_op {
	PROTO_OP_NONE = 0,
	PROTO_OP_PUT,
	PROTO_OP_GET,
	PROTO_OP_DEL,
	PROTO_OP_LIST,
	PROTO_OP_STAT,
};

/* What proto_parse_request found at the start of the input. */
enum proto_parse_kind {
	PROTO_NEED_MORE = 0, /* incomplete: read more (nothing consumed) */
	PROTO_REQUEST,       /* a complete request in req */
	PROTO_BAD_LINE,      /* a bad line without payload: answer ERR, go on */
	PROTO_SKIP,          /* lengths over the limits: answer ERR, discard `skip` more
	                        bytes (the payload) and go on */
	PROTO_FATAL,         /* framing lost: answer ERR and close the connection */
};

struct proto_req {
	enum proto_op op;
	const uint8_t *key; /* into the parsed buffer; LIST: the prefix */
	size_t key_len;
	const uint8_t *value; /* PUT only */
	size_t value_len;
	uint32_t limit; /* LIST: most keys wanted (0: the server's maximum) */
};

struct proto_parse {
	enum proto_parse_kind kind;
	size_t consumed; /* bytes of the input used (REQUEST, BAD_LINE, SKIP, FATAL) */
	uint64_t skip;   /* SKIP: payload bytes still to discard after `consumed` */
	struct proto_req req;
	const char *code; /* error code for ERR: "badrequest", "toolarge", ... */
	char msg[128];    /* error message for ERR */
};

/* Parse the request at the start of buf[0..len).  Returns the kind (also in
 * ret->kind); never fails otherwise.  Pointers in ret->req point into buf. */
enum proto_parse_kind proto_parse_request(const void *buf, size_t len, struct proto_parse *ret);

/* Append one encoded request to out.  Return 0, -EINVAL (op without a key,
 * or a payload not allowed for op), -ENOMEM.  Sizes are not checked against
 * the limits here, so a client can test the server's checks. */
int proto_encode_request(struct pbuf *out, enum proto_op op, const void *key, size_t key_len,
                         const void *value, size_t value_len, uint32_t limit);

/* Responses. */
enum proto_resp_kind {
	PROTO_R_NONE = 0,
	PROTO_R_OK,        /* OK */
	PROTO_R_VALUE,     /* VALUE <len>\n<bytes> */
	PROTO_R_NOTFOUND,  /* NOTFOUND */
	PROTO_R_NOTMASTER, /* NOTMASTER master=<pod>@<host:port>|unknown */
	PROTO_R_ERR,       /* ERR <code> <message> */
	PROTO_R_KEYS,      /* KEYS <n> <more>, followed by n KEY entries */
	PROTO_R_KEY,       /* KEY <len>\n<bytes> (one LIST entry) */
	PROTO_R_STATS,     /* STATS <len>\n<text> */
};

struct proto_resp {
	enum proto_resp_kind kind;
	const uint8_t *data; /* VALUE, KEY, STATS: the payload, into the buffer */
	size_t len;
	uint64_t count;            /* KEYS: n */
	bool more;                 /* KEYS: the server had more keys than it returned */
	char text[PROTO_LINE_MAX]; /* NOTMASTER: the master ("unknown");
	                              ERR: "<code> <message>" */
};

/* What a client may conclude from the answer to a PUT or DEL (PROTOCOL.md,
 * "What a client may conclude").  kind/err_text: the answer (err_text is the
 * ERR line's "<code> <message>"), or PROTO_R_NONE when none came (a
 * time-out, a lost connection); sent: whether any byte of the request left.
 * OK (and NOTFOUND for DEL) is made; NOTMASTER and the ERR codes badrequest,
 * toolarge, busy, unavailable, deadline, io are not made; ERR indeterminate,
 * an unknown ERR code, an odd answer, or no answer after sending is unknown. */
enum proto_outcome {
	PROTO_MADE,
	PROTO_NOT_MADE,
	PROTO_UNKNOWN,
};
enum proto_outcome proto_write_outcome(enum proto_resp_kind kind, const char *err_text, bool sent);

/* Parse one response unit at the start of buf[0..len).  Returns the bytes it
 * used (> 0), 0 when more input is needed, or -EBADMSG when the input is not
 * a valid response (the connection must then be closed). */
int proto_parse_response(const void *buf, size_t len, struct proto_resp *ret);

/* Encoders of responses (append to out; 0 or -ENOMEM).  Messages and master
 * names are sanitised: control characters become '?' so a line stays one
 * line; they are cut to fit PROTO_LINE_MAX. */
int proto_encode_ok(struct pbuf *out);
int proto_encode_notfound(struct pbuf *out);
int proto_encode_value(struct pbuf *out, const void *value, size_t len);
int proto_encode_notmaster(struct pbuf *out, const char *master /* NULL: unknown */);
int proto_encode_err(struct pbuf *out, const char *code, const char *msg);
int proto_encode_keys(struct pbuf *out, uint64_t n, bool more);
int proto_encode_key(struct pbuf *out, const void *key, size_t len);
int proto_encode_stats(struct pbuf *out, const void *text, size_t len);

const char *proto_op_name(enum proto_op op);
