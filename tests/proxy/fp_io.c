/* fp_io: see fp_io.h. */
#include "config.h"

#include "tests/proxy/fp_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "lib/util.h"

#define BUF_INIT (16 * 1024)
/* The buffer only grows for a long head or line; bodies stream through. */
#define BUF_MAX (1024 * 1024)

static bool is_ip_literal(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static void ssl_errors(char *err, size_t errlen, const char *what)
{
	char e[256] = "";
	unsigned long code = ERR_get_error();

	if (code)
		ERR_error_string_n(code, e, sizeof(e));
	errbuf_set(err, errlen, "%s: %s", what, e[0] ? e : "connection closed");
	ERR_clear_error();
}

/* Poll c for ev until the deadline; when c watches another connection, its
 * departure ends the wait with -EPIPE.  A watched peer that sends data while
 * its buffer is full is no longer polled, so the loop cannot spin. */
static int conn_wait(struct fp_conn *c, short ev, usec_t deadline)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = c->fd, .events = ev}};
		struct fp_conn *w = c->watch;
		nfds_t n = 1;
		usec_t left = deadline - clock_mono_usec();
		int r;

		if (w && !w->eof && w->len < w->cap) {
			p[1].fd = w->fd;
			p[1].events = POLLIN;
			n = 2;
		}
		if (w && w->eof)
			return -EPIPE;
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(p, n, (int)((left + 999) / 1000));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		if (n == 2 && p[1].revents && fp_conn_peer_gone(w))
			return -EPIPE;
		if (p[0].revents)
			return 0;
	}
}

/* Read more into the buffer.  Returns the count, 0 at EOF, or -errno. */
static long conn_fill(struct fp_conn *c, usec_t deadline)
{
	if (c->eof)
		return 0;
	if (c->off == c->len)
		c->off = c->len = 0;
	if (c->len == c->cap) {
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		} else {
			size_t cap = c->cap * 2;
			char *b;

			if (cap > BUF_MAX)
				return -E2BIG;
			b = realloc(c->buf, cap);
			if (!b)
				return -ENOMEM;
			c->buf = b;
			c->cap = cap;
		}
	}
	for (;;) {
		int n, e, saved;
		short ev;

		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
		if (n > 0) {
			c->len += (size_t)n;
			return n;
		}
		saved = errno;
		e = SSL_get_error(c->ssl, n);
		switch (e) {
		case SSL_ERROR_WANT_READ:
			ev = POLLIN;
			break;
		case SSL_ERROR_WANT_WRITE:
			ev = POLLOUT;
			break;
		case SSL_ERROR_ZERO_RETURN:
			c->eof = true;
			return 0;
		case SSL_ERROR_SYSCALL:
			c->eof = true;
			ERR_clear_error();
			/* No close_notify: for the HTTP layer an EOF all the same. */
			return saved && saved != EPIPE ? -saved : 0;
		default:
			/* OpenSSL 3 reports a missing close_notify as an error. */
			c->eof = true;
			if (ERR_GET_REASON(ERR_peek_error()) ==
			    SSL_R_UNEXPECTED_EOF_WHILE_READING) {
				ERR_clear_error();
				return 0;
			}
			ERR_clear_error();
			return -EPROTO;
		}
		int r = conn_wait(c, ev, deadline);
		if (r < 0)
			return r;
	}
}

int fp_conn_new(SSL_CTX *ctx, int fd, bool server, const char *host, usec_t deadline,
                struct fp_conn **ret, char *err, size_t errlen)
{
	struct fp_conn *c = NULL;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		r = -ENOMEM;
		goto out;
	}
	c->fd = fd;
	c->cap = BUF_INIT;
	c->buf = malloc(c->cap);
	c->ssl = SSL_new(ctx);
	if (!c->buf || !c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		r = -ENOMEM;
		goto out;
	}
	if (!server && host) {
		if (is_ip_literal(host)) {
			/* SNI must not carry an IP literal (RFC 6066); the check
			 * is against the certificate's IP SANs. */
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1) {
				r = -EINVAL;
				goto out;
			}
		} else if (SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
		           SSL_set1_host(c->ssl, host) != 1) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (;;) {
		int n, e;

		ERR_clear_error();
		n = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
		if (n == 1)
			break;
		e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			r = fd_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (r < 0) {
				errbuf_set(err, errlen, "TLS handshake: deadline passed");
				goto out;
			}
			continue;
		}
		long vr = SSL_get_verify_result(c->ssl);
		if (!server && vr != X509_V_OK)
			errbuf_set(err, errlen, "TLS handshake: certificate not verified: %s",
			           X509_verify_cert_error_string(vr));
		else
			ssl_errors(err, errlen, "TLS handshake");
		ERR_clear_error();
		r = -EKEYREJECTED;
		goto out;
	}
	*ret = c;
	c = NULL;
	r = 0;
out:
	fp_conn_free(c, false);
	return r;
}

struct fp_conn *fp_conn_free(struct fp_conn *c, bool reset)
{
	if (!c)
		return NULL;
	if (reset) {
		struct linger l = {.l_onoff = 1, .l_linger = 0};
		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
	return NULL;
}

/* Where the head starting at buf ends (just past its empty line), or 0. */
static size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

int fp_conn_read_head(struct fp_conn *c, size_t max, usec_t deadline, char **ret, size_t *ret_len)
{
	for (;;) {
		size_t end;
		long n;

		/* RFC 9112 2.2: empty lines before a request line are ignored. */
		while (c->off < c->len && (c->buf[c->off] == '\r' || c->buf[c->off] == '\n'))
			c->off++;
		end = head_end(c->buf + c->off, c->len - c->off);
		if (end) {
			char *h = malloc(end + 1);
			if (!h)
				return -ENOMEM;
			memcpy(h, c->buf + c->off, end);
			h[end] = '\0';
			c->off += end;
			*ret = h;
			*ret_len = end;
			return 0;
		}
		if (c->len - c->off >= max)
			return -E2BIG;
		n = conn_fill(c, deadline);
		if (n == 0)
			return c->len > c->off ? -EBADMSG : -ENODATA;
		if (n < 0)
			return (int)n;
	}
}

int fp_conn_read_line(struct fp_conn *c, char *buf, size_t len, usec_t deadline)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		long n;

		if (nl) {
			size_t l = (size_t)(nl - (c->buf + c->off)) + 1;
			if (l >= len)
				return -E2BIG;
			memcpy(buf, c->buf + c->off, l);
			buf[l] = '\0';
			c->off += l;
			return (int)l;
		}
		if (c->len - c->off >= len)
			return -E2BIG;
		n = conn_fill(c, deadline);
		if (n == 0)
			return -EBADMSG;
		if (n < 0)
			return (int)n;
	}
}

long fp_conn_read_upto(struct fp_conn *c, size_t max, usec_t deadline, const char **ret)
{
	size_t n;

	if (c->off == c->len) {
		long r = conn_fill(c, deadline);
		if (r <= 0)
			return r;
	}
	n = c->len - c->off;
	if (n > max)
		n = max;
	*ret = c->buf + c->off;
	c->off += n;
	return (long)n;
}

int fp_conn_write(struct fp_conn *c, const void *data, size_t n, usec_t deadline)
{
	const char *p = data;

	while (n > 0) {
		int chunk = n > (1u << 30) ? (1 << 30) : (int)n, w, e, r, saved;

		ERR_clear_error();
		errno = 0;
		w = SSL_write(c->ssl, p, chunk);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		saved = errno;
		e = SSL_get_error(c->ssl, w);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			r = fd_wait(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
			if (r < 0)
				return r;
			continue;
		}
		ERR_clear_error();
		return e == SSL_ERROR_SYSCALL && saved ? -saved : -EPIPE;
	}
	return 0;
}

bool fp_conn_peer_gone(struct fp_conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	long n;

	if (c->eof)
		return true;
	if (c->len > c->off || SSL_pending(c->ssl) > 0)
		return false;
	if (poll(&p, 1, 0) <= 0)
		return false;
	/* A deadline already passed: reads what is there, never waits. */
	n = conn_fill(c, 0);
	return n == 0 || (n < 0 && n != -ETIMEDOUT && n != -E2BIG);
}

int fp_conn_wait_gone(struct fp_conn *c, usec_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		usec_t left;

		if (fp_conn_peer_gone(c))
			return 0;
		c->off = c->len = 0; /* what it sent is not going anywhere */
		left = deadline - clock_mono_usec();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((left + 999) / 1000)) < 0 && errno != EINTR)
			return -errno;
	}
}
