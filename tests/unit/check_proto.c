/* Unit tests of storage/metad/proto.c (the client protocol codec) and of the
 * control-socket line parser (storage/metad/control.c): every message both
 * ways, input split at every byte, limits, garbage, binary payloads. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/metad/control.h"
#include "storage/metad/proto.h"
#include "tests/lib/kftest.h"

static const uint8_t BIN_KEY[] = {'k', 0, '\n', 'e', 0xff, '\r', ' '};
static const uint8_t BIN_VAL[] = {0, '\n', 'P', 'U', 'T', ' ', '1', '\n', 0x80, 0};

/* Parse the request that fills buf exactly; check it is complete. */
static struct proto_parse parse_all(const uint8_t *buf, size_t len)
{
	struct proto_parse p;

	ck_assert_int_eq(proto_parse_request(buf, len, &p), PROTO_REQUEST);
	ck_assert_uint_eq(p.consumed, len);
	return p;
}

START_TEST(request_roundtrip)
{
	struct pbuf b = {0};
	struct proto_parse p;

	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_PUT, BIN_KEY, sizeof(BIN_KEY), BIN_VAL,
	                                      sizeof(BIN_VAL), 0),
	                 0);
	p = parse_all(b.data, b.len);
	ck_assert_int_eq(p.req.op, PROTO_OP_PUT);
	ck_assert_uint_eq(p.req.key_len, sizeof(BIN_KEY));
	ck_assert_mem_eq(p.req.key, BIN_KEY, sizeof(BIN_KEY));
	ck_assert_uint_eq(p.req.value_len, sizeof(BIN_VAL));
	ck_assert_mem_eq(p.req.value, BIN_VAL, sizeof(BIN_VAL));

	b.len = 0;
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_GET, "abc", 3, NULL, 0, 0), 0);
	ck_assert_mem_eq(b.data, "GET 3\nabc", 9);
	p = parse_all(b.data, b.len);
	ck_assert_int_eq(p.req.op, PROTO_OP_GET);
	ck_assert_mem_eq(p.req.key, "abc", 3);

	b.len = 0;
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_DEL, "x", 1, NULL, 0, 0), 0);
	p = parse_all(b.data, b.len);
	ck_assert_int_eq(p.req.op, PROTO_OP_DEL);

	b.len = 0;
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_LIST, "", 0, NULL, 0, 0), 0);
	p = parse_all(b.data, b.len);
	ck_assert_int_eq(p.req.op, PROTO_OP_LIST);
	ck_assert_uint_eq(p.req.key_len, 0);
	ck_assert_uint_eq(p.req.limit, 0);

	b.len = 0;
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_LIST, "pre", 3, NULL, 0, 7), 0);
	ck_assert_mem_eq(b.data, "LIST 3 7\npre", 12);
	p = parse_all(b.data, b.len);
	ck_assert_uint_eq(p.req.limit, 7);

	b.len = 0;
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_STAT, NULL, 0, NULL, 0, 0), 0);
	p = parse_all(b.data, b.len);
	ck_assert_int_eq(p.req.op, PROTO_OP_STAT);

	/* invalid encodings */
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_GET, "a", 1, "v", 1, 0), -EINVAL);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_STAT, "a", 1, NULL, 0, 0), -EINVAL);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_PUT, NULL, 3, NULL, 0, 0), -EINVAL);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_NONE, "a", 1, NULL, 0, 0), -EINVAL);
	pbuf_free(&b);
}
END_TEST

START_TEST(request_every_split)
{
	struct pbuf b = {0};
	struct proto_parse p;

	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_PUT, BIN_KEY, sizeof(BIN_KEY), BIN_VAL,
	                                      sizeof(BIN_VAL), 0),
	                 0);
	for (size_t i = 0; i < b.len; i++) {
		/* a prefix is never complete, never an error, consumes nothing */
		uint8_t *copy = malloc(i ? i : 1);

		memcpy(copy, b.data, i);
		ck_assert_int_eq(proto_parse_request(copy, i, &p), PROTO_NEED_MORE);
		ck_assert_uint_eq(p.consumed, 0);
		free(copy);
	}
	parse_all(b.data, b.len);
	pbuf_free(&b);
}
END_TEST

START_TEST(request_pipelined)
{
	struct pbuf b = {0};
	struct proto_parse p;
	size_t off = 0;
	enum proto_op ops[] = {PROTO_OP_PUT, PROTO_OP_GET, PROTO_OP_STAT, PROTO_OP_DEL};

	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_PUT, "k", 1, "v\n", 2, 0), 0);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_GET, "k", 1, NULL, 0, 0), 0);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_STAT, NULL, 0, NULL, 0, 0), 0);
	ck_assert_int_eq(proto_encode_request(&b, PROTO_OP_DEL, "k", 1, NULL, 0, 0), 0);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_int_eq(proto_parse_request(b.data + off, b.len - off, &p), PROTO_REQUEST);
		ck_assert_int_eq(p.req.op, ops[i]);
		off += p.consumed;
	}
	ck_assert_uint_eq(off, b.len);
	ck_assert_int_eq(proto_parse_request(b.data + off, 0, &p), PROTO_NEED_MORE);
	pbuf_free(&b);
}
END_TEST

START_TEST(request_limits)
{
	struct proto_parse p;
	char line[64];

	/* the largest valid key and value */
	size_t n =
	        (size_t)snprintf(line, sizeof(line), "PUT %d %d\n", PROTO_KEY_MAX, PROTO_VALUE_MAX);
	uint8_t *buf = calloc(1, n + PROTO_KEY_MAX + PROTO_VALUE_MAX);
	memcpy(buf, line, n);
	memset(buf + n, 'k', PROTO_KEY_MAX);
	ck_assert_int_eq(proto_parse_request(buf, n + 10, &p), PROTO_NEED_MORE);
	parse_all(buf, n + PROTO_KEY_MAX + PROTO_VALUE_MAX);
	free(buf);

	/* one byte over: refused before the payload arrives, payload skipped */
	n = (size_t)snprintf(line, sizeof(line), "PUT %d 5\n", PROTO_KEY_MAX + 1);
	ck_assert_int_eq(proto_parse_request(line, n, &p), PROTO_SKIP);
	ck_assert_str_eq(p.code, "toolarge");
	ck_assert_uint_eq(p.consumed, n);
	ck_assert_uint_eq(p.skip, PROTO_KEY_MAX + 1 + 5);

	n = (size_t)snprintf(line, sizeof(line), "PUT 1 %d\n", PROTO_VALUE_MAX + 1);
	ck_assert_int_eq(proto_parse_request(line, n, &p), PROTO_SKIP);
	ck_assert_uint_eq(p.skip, PROTO_VALUE_MAX + 2);
	ck_assert_ptr_nonnull(strstr(p.msg, "value"));

	n = (size_t)snprintf(line, sizeof(line), "GET %d\n", PROTO_KEY_MAX + 1);
	ck_assert_int_eq(proto_parse_request(line, n, &p), PROTO_SKIP);
	n = (size_t)snprintf(line, sizeof(line), "LIST %d\n", PROTO_KEY_MAX + 1);
	ck_assert_int_eq(proto_parse_request(line, n, &p), PROTO_SKIP);

	/* too large to skip: framing given up */
	n = (size_t)snprintf(line, sizeof(line), "PUT 1 %d\n", PROTO_SKIP_MAX);
	ck_assert_int_eq(proto_parse_request(line, n, &p), PROTO_FATAL);
	ck_assert_str_eq(p.code, "toolarge");
	ck_assert_int_eq(
	        proto_parse_request("PUT 18446744073709551615 18446744073709551615\n", 46, &p),
	        PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("GET 99999999999999999999999\n", 28, &p), PROTO_FATAL);

	/* empty key: an error, its value skipped */
	ck_assert_int_eq(proto_parse_request("PUT 0 3\nabc", 11, &p), PROTO_SKIP);
	ck_assert_str_eq(p.code, "badrequest");
	ck_assert_uint_eq(p.skip, 3);
	ck_assert_int_eq(proto_parse_request("GET 0\n", 6, &p), PROTO_SKIP);
	ck_assert_uint_eq(p.skip, 0);
}
END_TEST

START_TEST(request_garbage)
{
	struct proto_parse p;
	char longline[PROTO_LINE_MAX + 10];

	/* bad lines without a payload: the connection goes on */
	ck_assert_int_eq(proto_parse_request("HELLO\n", 6, &p), PROTO_BAD_LINE);
	ck_assert_uint_eq(p.consumed, 6);
	ck_assert_ptr_nonnull(strstr(p.msg, "HELLO"));
	ck_assert_int_eq(proto_parse_request("\n", 1, &p), PROTO_BAD_LINE);
	ck_assert_int_eq(proto_parse_request("\r\n", 2, &p), PROTO_BAD_LINE);
	ck_assert_int_eq(proto_parse_request("   \n", 4, &p), PROTO_BAD_LINE);
	ck_assert_int_eq(proto_parse_request("STAT x\n", 7, &p), PROTO_BAD_LINE);
	ck_assert_int_eq(proto_parse_request("ST\0T\n", 5, &p), PROTO_BAD_LINE);
	ck_assert_int_eq(proto_parse_request("\x01\x02\n", 3, &p), PROTO_BAD_LINE);

	/* known verbs with unusable lengths lose the framing */
	ck_assert_int_eq(proto_parse_request("GET\n", 4, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("GET x\n", 6, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("GET -1\n", 7, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("GET +1\n", 7, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("GET 1 2\n", 8, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("PUT 1\n", 6, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("PUT 1 2 3\n", 10, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("LIST\n", 5, &p), PROTO_FATAL);
	ck_assert_int_eq(proto_parse_request("LIST 1 2 3\n", 11, &p), PROTO_FATAL);
	/* a bad LIST limit with a known prefix length: skip the prefix */
	ck_assert_int_eq(proto_parse_request("LIST 1 x\na", 10, &p), PROTO_SKIP);
	ck_assert_uint_eq(p.skip, 1);

	/* a line that never ends */
	memset(longline, 'A', sizeof(longline));
	ck_assert_int_eq(proto_parse_request(longline, PROTO_LINE_MAX - 1, &p), PROTO_NEED_MORE);
	ck_assert_int_eq(proto_parse_request(longline, PROTO_LINE_MAX, &p), PROTO_FATAL);

	/* case-insensitive verbs, CRLF and extra spaces are accepted */
	ck_assert_int_eq(proto_parse_request("get  1\r\nk", 9, &p), PROTO_REQUEST);
	ck_assert_int_eq(p.req.op, PROTO_OP_GET);
	ck_assert_int_eq(proto_parse_request("stat\r\n", 6, &p), PROTO_REQUEST);
}
END_TEST

/* Parse a whole response stream at every split point; return the units. */
static void check_response_splits(const struct pbuf *b, const enum proto_resp_kind *kinds,
                                  size_t nkinds)
{
	for (size_t split = 0; split <= b->len; split++) {
		struct pbuf in = {0};
		struct proto_resp r;
		size_t k = 0;
		int n;

		ck_assert_int_eq(pbuf_append(&in, b->data, split), 0);
		for (int pass = 0; pass < 2; pass++) {
			while ((n = proto_parse_response(in.data, in.len, &r)) > 0) {
				ck_assert_uint_lt(k, nkinds);
				ck_assert_int_eq(r.kind, kinds[k]);
				k++;
				pbuf_consume(&in, (size_t)n);
			}
			ck_assert_int_eq(n, 0);
			if (pass == 0)
				ck_assert_int_eq(pbuf_append(&in, b->data + split, b->len - split),
				                 0);
		}
		ck_assert_uint_eq(k, nkinds);
		ck_assert_uint_eq(in.len, 0);
		pbuf_free(&in);
	}
}

START_TEST(response_roundtrip)
{
	struct pbuf b = {0};
	struct proto_resp r;
	int n;
	static const enum proto_resp_kind kinds[] = {
	        PROTO_R_OK,        PROTO_R_VALUE, PROTO_R_NOTFOUND, PROTO_R_NOTMASTER,
	        PROTO_R_NOTMASTER, PROTO_R_ERR,   PROTO_R_KEYS,     PROTO_R_KEY,
	        PROTO_R_KEY,       PROTO_R_STATS, PROTO_R_VALUE,
	};

	ck_assert_int_eq(proto_encode_ok(&b), 0);
	ck_assert_int_eq(proto_encode_value(&b, BIN_VAL, sizeof(BIN_VAL)), 0);
	ck_assert_int_eq(proto_encode_notfound(&b), 0);
	ck_assert_int_eq(proto_encode_notmaster(&b, "pod-b@10.0.0.2:7480"), 0);
	ck_assert_int_eq(proto_encode_notmaster(&b, NULL), 0);
	ck_assert_int_eq(proto_encode_err(&b, "deadline", "write deadline\npassed"), 0);
	ck_assert_int_eq(proto_encode_keys(&b, 2, true), 0);
	ck_assert_int_eq(proto_encode_key(&b, BIN_KEY, sizeof(BIN_KEY)), 0);
	ck_assert_int_eq(proto_encode_key(&b, "", 0), 0);
	ck_assert_int_eq(proto_encode_stats(&b, "role=master\n", 12), 0);
	ck_assert_int_eq(proto_encode_value(&b, "", 0), 0);
	check_response_splits(&b, kinds, sizeof(kinds) / sizeof(kinds[0]));

	/* contents */
	size_t off = 0;
	n = proto_parse_response(b.data, b.len, &r);
	ck_assert_int_eq(n, 3);
	off += (size_t)n;
	n = proto_parse_response(b.data + off, b.len - off, &r);
	ck_assert_uint_eq(r.len, sizeof(BIN_VAL));
	ck_assert_mem_eq(r.data, BIN_VAL, sizeof(BIN_VAL));
	off += (size_t)n;
	off += (size_t)proto_parse_response(b.data + off, b.len - off, &r);
	n = proto_parse_response(b.data + off, b.len - off, &r);
	ck_assert_str_eq(r.text, "pod-b@10.0.0.2:7480");
	off += (size_t)n;
	n = proto_parse_response(b.data + off, b.len - off, &r);
	ck_assert_str_eq(r.text, "unknown");
	off += (size_t)n;
	n = proto_parse_response(b.data + off, b.len - off, &r);
	/* a newline in a message never breaks the line */
	ck_assert_str_eq(r.text, "deadline write deadline?passed");
	off += (size_t)n;
	n = proto_parse_response(b.data + off, b.len - off, &r);
	ck_assert_uint_eq(r.count, 2);
	ck_assert(r.more);
	off += (size_t)n;
	n = proto_parse_response(b.data + off, b.len - off, &r);
	ck_assert_mem_eq(r.data, BIN_KEY, sizeof(BIN_KEY));
	pbuf_free(&b);
}
END_TEST

START_TEST(response_garbage)
{
	struct proto_resp r;
	char big[PROTO_LINE_MAX + 1];
	char line[64];

	ck_assert_int_eq(proto_parse_response("HUH\n", 4, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("\n", 1, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("OK x\n", 5, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("NOTMASTER\n", 10, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("NOTMASTER pod\n", 14, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("ERR\n", 4, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("KEYS 1\n", 7, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("KEYS 1 2\n", 9, &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response("VALUE x\n", 8, &r), -EBADMSG);
	snprintf(line, sizeof(line), "VALUE %d\n", PROTO_VALUE_MAX + 1);
	ck_assert_int_eq(proto_parse_response(line, strlen(line), &r), -EBADMSG);
	snprintf(line, sizeof(line), "KEY %d\n", PROTO_KEY_MAX + 1);
	ck_assert_int_eq(proto_parse_response(line, strlen(line), &r), -EBADMSG);
	memset(big, 'O', sizeof(big));
	ck_assert_int_eq(proto_parse_response(big, sizeof(big), &r), -EBADMSG);
	ck_assert_int_eq(proto_parse_response(big, 10, &r), 0);
	ck_assert_int_eq(proto_parse_response("VALUE 5\nab", 10, &r), 0);
}
END_TEST

START_TEST(encode_sanitises)
{
	struct pbuf b = {0};
	struct proto_resp r;
	char longmsg[1000];

	memset(longmsg, 'm', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	ck_assert_int_eq(proto_encode_err(&b, "bad code", longmsg), 0);
	ck_assert_uint_le(b.len, PROTO_LINE_MAX);
	ck_assert_int_gt(proto_parse_response(b.data, b.len, &r), 0);
	ck_assert_int_eq(strncmp(r.text, "bad_code mmm", 12), 0);
	b.len = 0;
	ck_assert_int_eq(proto_encode_notmaster(&b, "a b\nc"), 0);
	ck_assert_int_gt(proto_parse_response(b.data, b.len, &r), 0);
	ck_assert_str_eq(r.text, "a_b?c");
	pbuf_free(&b);
}
END_TEST

/* ------------------------------------------------------------ control */

START_TEST(metad_control_lines)
{
	struct metad_control_msg m;
	char err[256];

	ck_assert_int_eq(metad_control_parse_line("PING seq=12", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_PING);
	ck_assert_uint_eq(m.seq, 12);
	ck_assert_int_eq(metad_control_parse_line("WELCOME version=3 node=n1 mono_us=77", &m, err,
	                                          sizeof(err)),
	                 0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_WELCOME);
	ck_assert_str_eq(m.node, "n1");
	ck_assert_int_eq(m.mono_us, 77);
	ck_assert_int_eq(
	        metad_control_parse_line("PROMOTE epoch=5 until_us=1500000", &m, err, sizeof(err)),
	        0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_PROMOTE);
	ck_assert_uint_eq(m.epoch, 5);
	ck_assert_int_eq(m.until_us, 1500000);
	ck_assert_int_eq(metad_control_parse_line("RENEW until_us=0 epoch=7", &m, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_RENEW);
	ck_assert_uint_eq(m.epoch, 7);
	ck_assert_int_eq(metad_control_parse_line("DEMOTE epoch=5 reason=lost the lease: api down",
	                                          &m, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_DEMOTE);
	ck_assert_str_eq(m.reason, "lost the lease: api down");
	ck_assert_int_eq(metad_control_parse_line("DEMOTE epoch=5", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(metad_control_parse_line("MASTER epoch=6 pod=meta-1 addr=10.0.0.2:7480",
	                                          &m, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(m.pod, "meta-1");
	ck_assert_str_eq(m.addr, "10.0.0.2:7480");
	ck_assert_int_eq(metad_control_parse_line("ERROR reason=bad HELLO", &m, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(m.verb, METAD_CONTROL_ERROR);
}
END_TEST

START_TEST(metad_control_bad_lines)
{
	static const char *const bad[] = {
	        "",
	        "PING",
	        "PROMOTE epoch=5",
	        "PROMOTE until_us=5",
	        "PROMOTE epoch=0 until_us=5",
	        "PROMOTE epoch=-1 until_us=5",
	        "PROMOTE epoch=x until_us=5",
	        "PROMOTE epoch=5 until_us=99999999999999999999",
	        "PROMOTE epoch=5 until_us=5 color=red",
	        "PROMOTE epoch=5 until_us=5 reason=x",
	        "PROMOTE epoch=5 valid_ms=5", /* protocol version 1 */
	        "RENEW epoch=5 until_us=1x",
	        "DEMOTE",
	        "MASTER epoch=5 pod=p",
	        "MASTER epoch=5 pod= addr=a",
	        "WELCOME version=1 node=n mono_us=1",
	        "WELCOME version=2 node=n mono_us=1", /* no PING/PONG */
	        "PING",
	        "PING seq=x",
	        "PING seq=1 epoch=2",
	        "PING seq=1 reason=x",
	        "WELCOME version=3 node=n",
	        "WELCOME node=n mono_us=1",
	        "WELCOME version=3 node=n mono_us=1 epoch=3",
	        "PROMOTE epoch5 until_us=5",
	        "PROMOTE =5 until_us=5",
	};
	struct metad_control_msg m;
	char err[256], *huge;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(metad_control_parse_line(bad[i], &m, err, sizeof(err)) == -EBADMSG,
		              "accepted '%s'", bad[i]);
		ck_assert_msg(err[0] != '\0', "no reason for '%s'", bad[i]);
	}
	huge = malloc(METAD_CONTROL_LINE_MAX + 10);
	memset(huge, 'A', METAD_CONTROL_LINE_MAX + 9);
	huge[METAD_CONTROL_LINE_MAX + 9] = '\0';
	ck_assert_int_eq(metad_control_parse_line(huge, &m, err, sizeof(err)), -EBADMSG);
	free(huge);
}
END_TEST

/* PROTOCOL.md's "What a client may conclude", as code. */
START_TEST(write_outcomes)
{
	ck_assert_int_eq(proto_write_outcome(PROTO_R_OK, NULL, true), PROTO_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_NOTFOUND, NULL, true), PROTO_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_NOTMASTER, "unknown", true), PROTO_NOT_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "deadline write deadline passed", true),
	                 PROTO_NOT_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "io the store failed", true),
	                 PROTO_NOT_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "busy", true), PROTO_NOT_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "indeterminate durable after", true),
	                 PROTO_UNKNOWN);
	/* a code this client does not know, or a prefix of a known one */
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "iox", true), PROTO_UNKNOWN);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_ERR, "newcode msg", true), PROTO_UNKNOWN);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_NONE, NULL, true), PROTO_UNKNOWN);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_NONE, NULL, false), PROTO_NOT_MADE);
	ck_assert_int_eq(proto_write_outcome(PROTO_R_VALUE, NULL, true), PROTO_UNKNOWN);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = kft_tcase(s, "requests", 0, NULL, NULL);
	tcase_add_test(tc, request_roundtrip);
	tcase_add_test(tc, request_every_split);
	tcase_add_test(tc, request_pipelined);
	tcase_add_test(tc, request_limits);
	tcase_add_test(tc, request_garbage);
	tc = kft_tcase(s, "responses", 0, NULL, NULL);
	tcase_add_test(tc, response_roundtrip);
	tcase_add_test(tc, response_garbage);
	tcase_add_test(tc, encode_sanitises);
	tc = kft_tcase(s, "control", 0, NULL, NULL);
	tcase_add_test(tc, metad_control_lines);
	tcase_add_test(tc, metad_control_bad_lines);
	tcase_add_test(tc, write_outcomes);
	return s;
}

int main(void)
{
	return kft_main(proto_suite(), NULL);
}
