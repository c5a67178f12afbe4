/* fp_io: buffered TLS connections with deadlines, for the fault proxy.
 *
 * A `struct fp_conn` is one non-blocking TCP socket with an OpenSSL session
 * on it and a read buffer, so the HTTP layer can read a head, a chunk-size
 * line or "up to n body bytes" without caring how TLS records were cut.
 * Every call takes a monotonic deadline (usec) and returns -ETIMEDOUT when it
 * passes: nothing here waits forever.  A connection may name a second one to
 * `watch` while it waits (the proxy's client while it reads upstream), so a
 * client that gives up ends the wait with -EPIPE at once instead of at the
 * deadline.  Nothing here logs; detail goes to the caller's error buffer.
 * A connection is used by one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lib/clock.h"

struct fp_conn {
	int fd;
	SSL *ssl;
	char *buf;
	size_t off, len, cap;  /* unread bytes are buf[off, len) */
	bool eof;              /* the peer closed (cleanly or not) */
	struct fp_conn *watch; /* peer whose departure aborts our waits, or NULL */
};

/* Wrap the connected socket fd (taken over, also on failure) in a new SSL
 * of ctx and finish the handshake as server (`server`) or client before the
 * deadline.  For a client, `host` (not NULL) is both the SNI name (when not
 * an IP literal) and the name or IP the certificate must be valid for.
 * Returns 0 and *ret (free with fp_conn_free()), or -errno: -EKEYREJECTED for
 * a failed verification or handshake, -ETIMEDOUT, -ENOMEM. */
int fp_conn_new(SSL_CTX *ctx, int fd, bool server, const char *host, usec_t deadline,
                struct fp_conn **ret, char *err, size_t errlen);

/* Close and free; accepts NULL; returns NULL.  `reset` closes with SO_LINGER
 * 0 (the peer sees a TCP reset); otherwise the socket is just closed, with
 * no TLS close_notify, as a crashing server would. */
struct fp_conn *fp_conn_free(struct fp_conn *c, bool reset);

/* Read a message head up to and including the empty line that ends it
 * (CRLF CRLF, or LF LF), at most `max` bytes.  *ret is a NUL-terminated
 * malloc'ed copy, *ret_len its length.  Returns 0, -ENODATA when the peer
 * closed before sending a byte (an idle keep-alive connection ending),
 * -EBADMSG when it closed mid-head, -E2BIG when over max, -ETIMEDOUT,
 * -EPIPE (the watched peer left), or a transport -errno. */
int fp_conn_read_head(struct fp_conn *c, size_t max, usec_t deadline, char **ret, size_t *ret_len);

/* Read one line (through LF) of at most len-1 bytes into buf, NUL-ended.
 * Returns its length, -EBADMSG on EOF first, -E2BIG, or as above. */
int fp_conn_read_line(struct fp_conn *c, char *buf, size_t len, usec_t deadline);

/* Give at most `max` (> 0) buffered bytes, reading if none is buffered:
 * *ret points into the buffer (valid until the next call on c).  Returns
 * the count (> 0), 0 at EOF, or as above. */
long fp_conn_read_upto(struct fp_conn *c, size_t max, usec_t deadline, const char **ret);

/* Write all n bytes before the deadline.  Returns 0 or -errno (-EPIPE,
 * -ECONNRESET, -ETIMEDOUT, ...). */
int fp_conn_write(struct fp_conn *c, const void *data, size_t n, usec_t deadline);

/* Whether the peer has closed, without blocking: data already sent by it
 * is kept in the buffer.  A connection with buffered data is not gone. */
bool fp_conn_peer_gone(struct fp_conn *c);

/* Wait until the peer closes (returns 0) or the deadline (-ETIMEDOUT);
 * whatever it sends meanwhile is discarded. */
int fp_conn_wait_gone(struct fp_conn *c, usec_t deadline);
