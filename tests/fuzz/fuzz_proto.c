/* libFuzzer target for the kubefence-metad protocol codec
 * (storage/metad/proto.c): the request parser as the server drives it (a
 * stream of pipelined requests, skipped payloads, framing errors), the
 * response parser as the client drives it, and a re-encode/re-parse round
 * trip of every request found.  Built and run by tests/fuzz/proto.test;
 * longer runs: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Ilib
 * tests/fuzz/fuzz_proto.c storage/metad/proto.c && ./a.out -max_total_time=600 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/metad/proto.h"

static void roundtrip(const struct proto_req *q)
{
	struct pbuf b = {0};
	struct proto_parse p;

	if (proto_encode_request(&b, q->op, q->key, q->key_len, q->value, q->value_len, q->limit) <
	    0)
		abort();
	if (proto_parse_request(b.data, b.len, &p) != PROTO_REQUEST || p.consumed != b.len ||
	    p.req.op != q->op || p.req.key_len != q->key_len || p.req.value_len != q->value_len ||
	    (q->key_len && memcmp(p.req.key, q->key, q->key_len) != 0) ||
	    (q->value_len && memcmp(p.req.value, q->value, q->value_len) != 0))
		abort();
	pbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	uint64_t skip = 0;
	struct proto_parse p;
	struct proto_resp r;

	/* requests, as a server consumes a stream */
	while (off < size) {
		if (skip) {
			size_t n = size - off < skip ? size - off : (size_t)skip;
			off += n;
			skip -= n;
			continue;
		}
		enum proto_parse_kind k = proto_parse_request(data + off, size - off, &p);
		if (k == PROTO_NEED_MORE || k == PROTO_FATAL)
			break;
		if (p.consumed == 0 || p.consumed > size - off)
			abort(); /* no progress or overrun */
		if (k == PROTO_REQUEST) {
			if (p.req.key_len > PROTO_KEY_MAX || p.req.value_len > PROTO_VALUE_MAX)
				abort();
			roundtrip(&p.req);
		}
		if (k == PROTO_SKIP)
			skip = p.skip;
		off += p.consumed;
	}
	/* responses, as a client consumes a stream */
	off = 0;
	while (off < size) {
		int n = proto_parse_response(data + off, size - off, &r);
		if (n <= 0)
			break;
		if ((size_t)n > size - off)
			abort();
		off += (size_t)n;
	}
	return 0;
}
