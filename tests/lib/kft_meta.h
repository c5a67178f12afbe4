/* kft_meta: a raw client of the MetaService's binary protocol
 * (storage/metad/PROTOCOL.md) for tests that speak it byte by byte: a TCP
 * connection on loopback and a reader of whole response units.  Each call
 * fails the test on error, unless it says otherwise. */
#pragma once

#include <stddef.h>

#include "storage/metad/proto.h"

struct kft_meta {
	int fd;         /* -1 once closed */
	struct pbuf in; /* received bytes not yet parsed */
};

/* Connect to 127.0.0.1:port with TCP_NODELAY.  Returns the socket, or -1
 * when nothing accepts there (never fails the test: callers poll with it). */
int kft_meta_connect(int port);

/* Open r on 127.0.0.1:port; kft_meta_close() frees it. */
void kft_meta_open(struct kft_meta *r, int port);
void kft_meta_close(struct kft_meta *r);

/* Send n raw bytes (a test's own, possibly malformed, frames). */
void kft_meta_send(struct kft_meta *r, const void *p, size_t n);

/* Encode and send one request. */
void kft_meta_request(struct kft_meta *r, enum proto_op op, const void *k, size_t kl, const void *v,
                      size_t vl);

/* Read the next response unit, waiting up to 10 s; its payload is copied to
 * data when non-NULL, and u (when non-NULL) gets the parsed unit.  Returns
 * the unit's kind, or 0 on EOF or timeout.  A unit that does not parse
 * fails the test. */
enum proto_resp_kind kft_meta_reply(struct kft_meta *r, struct proto_resp *u, struct pbuf *data);
