/* kft_wire: the MetaService response reader of the clients that must not
 * fail a Check test on a lost connection (the failover harness, the lab's
 * client): read from a socket into a fixed buffer until it holds one whole
 * response unit (storage/metad/PROTOCOL.md), within a deadline.  No Check
 * dependency: the benchmarks link it too.  kft_meta.h is the reader of the
 * tests that speak the protocol byte by byte and fail on any error. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "storage/metad/proto.h"

/* buf holds *len received bytes of cap; read more from fd (non-blocking or
 * not) until the first unit parses, then return its length in bytes (> 0)
 * with *ret describing it (pointing into buf): the caller copies what it
 * needs, then drops the unit with kft_wire_consume().  Returns -1 when
 * what arrived does not parse, the buffer filled without a whole unit, the
 * deadline (CLOCK_MONOTONIC) passed, or the connection ended or failed: the
 * caller closes it.  Blocks until the deadline at most. */
int kft_wire_read_unit(int fd, uint8_t *buf, size_t cap, size_t *len, usec_t deadline,
                       struct proto_resp *ret);

/* Drop the first n bytes of buf (a unit kft_wire_read_unit() returned). */
void kft_wire_consume(uint8_t *buf, size_t *len, size_t n);
