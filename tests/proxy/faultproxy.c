/* kf-faultproxy: an HTTPS proxy in front of a kube-apiserver that injects
 * faults at the instants that matter for a fencing agent.
 *
 * A test puts it between its clients and the real API server.  It ends the
 * clients' TLS with its own certificate, forwards each request unchanged
 * (bearer tokens included) over a verified TLS connection of its own, and
 * for the requests a rule selects it loses the response after the request
 * was applied, answers late, answers an error status without forwarding,
 * resets, truncates or garbles the response, or never answers — see
 * docs/fault-proxy.md and fp_rules.h.  The rules file is re-read when it
 * changes, checked at the start of every request, so a test that renames a
 * new file into place has it apply to its next request.  Every request
 * leaves one line in the --log file, written as soon as its outcome is
 * decided and before the client sees it, so a test can tell a fault fired.
 *
 * One thread per client connection, each with at most one upstream
 * connection of its own (keep-alive on both sides); every read and write has
 * a deadline.  It listens on loopback only: it is a test tool. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/proxy/fp_http.h"
#include "tests/proxy/fp_io.h"
#include "tests/proxy/fp_rules.h"

#define HEAD_MAX  (64 * 1024)
#define BODY_MAX  (64u * 1024 * 1024) /* the API server's own limit is 3 MiB */
#define LINE_MAX_ (4 * 1024)
#define IO_SLICE  (16 * 1024)

struct proxy {
	SSL_CTX *server_ctx;
	SSL_CTX *upstream_ctx;
	char upstream_host[256];
	struct sockaddr_storage up_addr;
	socklen_t up_addrlen;
	struct fp_rules *rules;
	int log_fd;
	long connect_timeout_ms;
	long idle_timeout_ms;
	long max_hold_ms;
	atomic_uint next_id;

	/* The live sessions, so that a stop can wake every blocked one. */
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct session *sessions;
	unsigned active;
	bool stopping;
};

struct session {
	struct proxy *p;
	unsigned id;
	int fd; /* the client socket, until the connection exists */
	struct fp_conn *client;
	struct fp_conn *up;
	bool reset_client;
	bool unwatched; /* `late`: the upstream exchange goes on without the client */
	struct session *prev, *next;
};

struct buf {
	char *d;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *t;

		while (cap < b->len + n)
			cap *= 2;
		t = realloc(b->d, cap);
		if (!t)
			return -ENOMEM;
		b->d = t;
		b->cap = cap;
	}
	memcpy(b->d + b->len, d, n);
	b->len += n;
	return 0;
}

static usec_t after_ms(long ms)
{
	return clock_mono_usec() + (usec_t)ms * USEC_PER_MSEC;
}

/* ------------------------------------------------------------ the log */

/* One line per request: realtime µs, connection, method, target, upstream
 * status or "-", the actions applied ("pass" for none), then details.  One
 * write() to an O_APPEND file, so lines of several threads never mix. */
static void access_log(struct session *s, const struct fp_http_head *req, int up_status,
                       const struct fp_verdict *v, const char *extra)
{
	char st[16] = "-", rule[24] = "";
	char *line = NULL;
	int n;

	if (s->p->log_fd < 0)
		return;
	if (up_status > 0)
		snprintf(st, sizeof(st), "%d", up_status);
	if (v->line)
		snprintf(rule, sizeof(rule), " rule=%d", v->line);
	n = asprintf(&line, "%lld c%u %s %s %s %s%s%s%s\n", (long long)clock_real_usec(), s->id,
	             req->method, req->target, st, v->text, rule, extra ? " " : "",
	             extra ? extra : "");
	if (n > 0 && write(s->p->log_fd, line, (size_t)n) != n)
		log_warning("cannot write the request log: %s", strerror(errno));
	free(line);
}

/* ------------------------------------------------------- the sessions */

static void session_set_up(struct session *s, struct fp_conn *up)
{
	struct fp_conn *old;

	/* Under the lock: a stop must not shut down a descriptor number that
	 * was closed and reused meanwhile. */
	pthread_mutex_lock(&s->p->lock);
	old = s->up;
	s->up = up;
	pthread_mutex_unlock(&s->p->lock);
	fp_conn_free(old, false);
}

/* A Kubernetes Status object as the whole response. */
static int send_status(struct session *s, int code, const char *reason, int retry_after,
                       const char *message, bool close)
{
	char head[512], body[1024], msg[512];
	int hn, bn;
	size_t i;

	/* Keep the message valid inside a JSON string without an escaper. */
	for (i = 0; message[i] && i + 1 < sizeof(msg); i++)
		msg[i] = (message[i] == '"' || message[i] == '\\' ||
		          (unsigned char)message[i] < 0x20)
		                 ? ' '
		                 : message[i];
	msg[i] = '\0';
	bn = snprintf(body, sizeof(body),
	              "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
	              "\"status\":\"%s\",\"message\":\"%s\",\"reason\":\"%s\",\"code\":%d}\n",
	              code < 400 ? "Success" : "Failure", msg, reason, code);
	if (retry_after >= 0)
		hn = snprintf(head, sizeof(head),
		              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		              "Content-Length: %d\r\nRetry-After: %d\r\n%s\r\n",
		              code, fp_http_phrase(code), bn, retry_after,
		              close ? "Connection: close\r\n" : "");
	else
		hn = snprintf(head, sizeof(head),
		              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		              "Content-Length: %d\r\n%s\r\n",
		              code, fp_http_phrase(code), bn, close ? "Connection: close\r\n" : "");
	usec_t deadline = after_ms(s->p->idle_timeout_ms);
	int r = fp_conn_write(s->client, head, (size_t)hn, deadline);
	return r < 0 ? r : fp_conn_write(s->client, body, (size_t)bn, deadline);
}

/* The request body exactly as it came (chunk framing included), since it
 * is forwarded unchanged.  Returns 0 or -errno (-EFBIG over BODY_MAX,
 * -EBADMSG for bad chunk framing). */
static int read_request_body(struct fp_conn *c, const struct fp_http_head *h, struct buf *b,
                             usec_t deadline)
{
	char line[LINE_MAX_];
	uint64_t total = 0;
	const char *d;
	long n;
	int r;

	if (h->body == FP_BODY_LENGTH) {
		if (h->length > BODY_MAX)
			return -EFBIG;
		for (uint64_t left = h->length; left > 0; left -= (uint64_t)n) {
			n = fp_conn_read_upto(c, left < IO_SLICE ? left : IO_SLICE, deadline, &d);
			if (n <= 0)
				return n == 0 ? -EBADMSG : (int)n;
			r = buf_add(b, d, (size_t)n);
			if (r < 0)
				return r;
		}
		return 0;
	}
	if (h->body != FP_BODY_CHUNKED)
		return 0;
	for (;;) {
		unsigned long long size;
		char *end;

		r = fp_conn_read_line(c, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		if ((r = buf_add(b, line, strlen(line))) < 0)
			return r;
		errno = 0;
		size = strtoull(line, &end, 16);
		if (errno || end == line || (*end != ';' && *end != '\r' && *end != '\n'))
			return -EBADMSG;
		total += size;
		if (total > BODY_MAX)
			return -EFBIG;
		if (size == 0)
			break;
		for (uint64_t left = size; left > 0; left -= (uint64_t)n) {
			n = fp_conn_read_upto(c, left < IO_SLICE ? left : IO_SLICE, deadline, &d);
			if (n <= 0)
				return n == 0 ? -EBADMSG : (int)n;
			if ((r = buf_add(b, d, (size_t)n)) < 0)
				return r;
		}
		r = fp_conn_read_line(c, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		if (strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0)
			return -EBADMSG;
		if ((r = buf_add(b, line, strlen(line))) < 0)
			return r;
	}
	/* Trailer fields, up to the empty line. */
	do {
		r = fp_conn_read_line(c, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		if ((r = buf_add(b, line, strlen(line))) < 0)
			return r;
	} while (strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0);
	return 0;
}

/* ------------------------------------------------- the response relay */

enum relay_mode {
	RELAY_PASS,
	RELAY_DISCARD, /* drop_response: read it all, send nothing */
	RELAY_GARBLE,  /* malformed */
	RELAY_TRUNCATE,
};

struct relay {
	struct session *s;
	enum relay_mode mode;
	uint64_t budget; /* RELAY_TRUNCATE: body bytes still to send */
	bool reframe;
	char scratch[IO_SLICE];
};

/* Send body bytes as the mode says.  Returns 0, 1 when a truncation is
 * complete (stop reading), or -errno. */
static int relay_data(struct relay *rl, const char *d, size_t n)
{
	usec_t deadline = after_ms(rl->s->p->idle_timeout_ms);

	switch (rl->mode) {
	case RELAY_DISCARD:
		return 0;
	case RELAY_PASS:
		return fp_conn_write(rl->s->client, d, n, deadline);
	case RELAY_GARBLE:
		/* '#' starts no JSON value, and keeping the newlines keeps a
		 * watch stream's lines: each event is one bad line. */
		for (size_t i = 0; i < n; i++)
			rl->scratch[i] = d[i] == '\n' ? '\n' : '#';
		return fp_conn_write(rl->s->client, rl->scratch, n, deadline);
	case RELAY_TRUNCATE:
		if (n > rl->budget)
			n = (size_t)rl->budget;
		rl->budget -= n;
		int r = n ? fp_conn_write(rl->s->client, d, n, deadline) : 0;
		return r < 0 ? r : rl->budget == 0;
	}
	return -EINVAL;
}

static int relay_raw(struct relay *rl, const char *d, size_t n)
{
	if (rl->mode == RELAY_DISCARD)
		return 0;
	return fp_conn_write(rl->s->client, d, n, after_ms(rl->s->p->idle_timeout_ms));
}

/* Relay `left` body bytes (or until EOF when `to_eof`) from upstream. */
static int relay_bytes(struct relay *rl, uint64_t left, bool to_eof)
{
	struct fp_conn *up = rl->s->up;

	while (to_eof || left > 0) {
		const char *d;
		size_t want = to_eof || left > IO_SLICE ? IO_SLICE : (size_t)left;
		long n = fp_conn_read_upto(up, want, after_ms(rl->s->p->idle_timeout_ms), &d);
		int r;

		if (n == 0 && to_eof)
			return 0;
		if (n <= 0)
			return n == 0 ? -EPROTO : (int)n;
		left -= to_eof ? 0 : (uint64_t)n;
		r = relay_data(rl, d, (size_t)n);
		if (r != 0)
			return r;
	}
	return 0;
}

/* A chunked body, chunk by chunk as it arrives (watch streams stay open
 * for minutes and must not be buffered). */
static int relay_chunked(struct relay *rl)
{
	struct fp_conn *up = rl->s->up;
	char line[LINE_MAX_];
	int r;

	for (;;) {
		unsigned long long size;
		char *end;
		usec_t deadline = after_ms(rl->s->p->idle_timeout_ms);

		r = fp_conn_read_line(up, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		errno = 0;
		size = strtoull(line, &end, 16);
		if (errno || end == line || (*end != ';' && *end != '\r' && *end != '\n'))
			return -EBADMSG;
		if (size == 0)
			break;
		if (rl->mode == RELAY_TRUNCATE) {
			if (rl->budget == 0)
				return 1;
			if (rl->reframe) {
				char h[32];
				int hn = snprintf(
				        h, sizeof(h), "%llx\r\n",
				        size < rl->budget ? size : (unsigned long long)rl->budget);
				r = relay_raw(rl, h, (size_t)hn);
			} else {
				r = relay_raw(rl, line, strlen(line));
			}
		} else {
			r = relay_raw(rl, line, strlen(line));
		}
		if (r < 0)
			return r;
		r = relay_bytes(rl, size, false);
		if (r < 0)
			return r;
		if (r == 1) {
			/* Truncated here.  Reframed, the message ends properly;
			 * else the client is left short of the chunk. */
			if (rl->reframe)
				return relay_raw(rl, "\r\n0\r\n\r\n", 7) < 0 ? -EPIPE : 1;
			return 1;
		}
		r = fp_conn_read_line(up, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		if (strcmp(line, "\r\n") != 0 && strcmp(line, "\n") != 0)
			return -EBADMSG;
		r = relay_raw(rl, "\r\n", 2);
		if (r < 0)
			return r;
	}
	/* The last chunk and the trailer fields. */
	r = relay_raw(rl, line, strlen(line));
	while (r >= 0) {
		r = fp_conn_read_line(up, line, sizeof(line), after_ms(rl->s->p->idle_timeout_ms));
		if (r < 0)
			return r;
		r = relay_raw(rl, line, strlen(line));
		if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
			break;
	}
	return r < 0 ? r : 0;
}

static int relay_body(struct relay *rl, const struct fp_http_head *resp)
{
	switch (resp->body) {
	case FP_BODY_NONE:
		return 0;
	case FP_BODY_LENGTH:
		return relay_bytes(rl, resp->length, false);
	case FP_BODY_CHUNKED:
		return relay_chunked(rl);
	case FP_BODY_CLOSE:
		return relay_bytes(rl, 0, true);
	}
	return -EINVAL;
}

/* ------------------------------------------------------- one request */

static int upstream_open(struct session *s, char *err, size_t errlen)
{
	struct proxy *p = s->p;
	usec_t deadline = after_ms(p->connect_timeout_ms);
	struct fp_conn *c = NULL;
	int fd = -1, r;

	r = tcp_connect((const struct sockaddr *)&p->up_addr, p->up_addrlen, deadline, &fd);
	if (r < 0) {
		errbuf_set(err, errlen, "connect: %s", strerror(-r));
		return r;
	}
	r = fp_conn_new(p->upstream_ctx, fd, false, p->upstream_host, deadline, &c, err, errlen);
	if (r < 0)
		return r;
	c->watch = s->unwatched ? NULL : s->client;
	session_set_up(s, c);
	return 0;
}

/* Send the request upstream, on the kept connection if it still stands.
 * A write that fails on a kept connection means the server had closed it
 * before reading anything, so it is sent once more on a new one; a request
 * is never sent twice once it may have been read. */
static int upstream_send(struct session *s, const char *head, size_t hlen, const struct buf *body,
                         char *err, size_t errlen)
{
	for (int attempt = 0;; attempt++) {
		bool kept = s->up != NULL;
		usec_t deadline = after_ms(s->p->idle_timeout_ms);
		int r;

		if (s->up && fp_conn_peer_gone(s->up)) {
			session_set_up(s, NULL);
			kept = false;
		}
		if (!s->up) {
			r = upstream_open(s, err, errlen);
			if (r < 0)
				return r;
		}
		r = fp_conn_write(s->up, head, hlen, deadline);
		if (r >= 0 && body->len)
			r = fp_conn_write(s->up, body->d, body->len, deadline);
		if (r >= 0)
			return 0;
		session_set_up(s, NULL);
		errbuf_set(err, errlen, "sending the request: %s", strerror(-r));
		if (!kept || attempt > 0)
			return r;
	}
}

/* The response head, forwarding interim 1xx responses unless the response
 * is to be dropped. */
static int upstream_head(struct session *s, const struct fp_http_head *req, bool forward_1xx,
                         char **ret, size_t *ret_len, struct fp_http_head *resp, char *err,
                         size_t errlen)
{
	for (;;) {
		char *raw = NULL;
		size_t len;
		int r;

		r = fp_conn_read_head(s->up, HEAD_MAX, after_ms(s->p->idle_timeout_ms), &raw, &len);
		if (r < 0) {
			errbuf_set(err, errlen, "reading the response: %s",
			           r == -ENODATA ? "connection closed" : strerror(-r));
			return r;
		}
		r = fp_http_parse_response(raw, len, req->method, resp, err, errlen);
		if (r < 0) {
			free(raw);
			return r;
		}
		if (resp->status / 100 != 1) {
			*ret = raw;
			*ret_len = len;
			return 0;
		}
		if (resp->status == 101) {
			free(raw);
			errbuf_set(err, errlen, "protocol upgrades are not supported");
			return -EOPNOTSUPP;
		}
		r = forward_1xx
		            ? fp_conn_write(s->client, raw, len, after_ms(s->p->idle_timeout_ms))
		            : 0;
		free(raw);
		if (r < 0)
			return -EPIPE;
	}
}

/* Hold for ms while watching the client.  Returns 0 when the time passed,
 * -EPIPE when the client went away first. */
static int hold(struct session *s, long ms)
{
	return fp_conn_wait_gone(s->client, after_ms(ms)) == 0 ? -EPIPE : 0;
}

/* Forward one request and deliver (or not) its response.  Returns 1 to
 * keep the client connection, 0 to close it. */
static int forward(struct session *s, const struct fp_http_head *req, const char *head, size_t hlen,
                   const struct buf *body, const struct fp_verdict *v)
{
	struct fp_http_head resp = {0};
	struct relay *rl = NULL;
	char err[512] = "", extra[600];
	char *rhead = NULL, *reframed = NULL;
	size_t rlen = 0;
	int r, keep = 0;

	r = upstream_send(s, head, hlen, body, err, sizeof(err));
	if (r >= 0)
		r = upstream_head(s, req, v->action != FP_ACT_DROP_RESPONSE, &rhead, &rlen, &resp,
		                  err, sizeof(err));
	if (r < 0) {
		session_set_up(s, NULL);
		if (r == -EPIPE || fp_conn_peer_gone(s->client)) {
			access_log(s, req, 0, v, "client-gone");
			goto out;
		}
		snprintf(extra, sizeof(extra), "sent=502 error=upstream");
		access_log(s, req, 0, v, extra);
		log_warning("c%u %s %s: upstream %s: %s; answering 502", s->id, req->method,
		            req->target, s->p->upstream_host, err);
		snprintf(extra, sizeof(extra), "kf-faultproxy: upstream: %s", err);
		keep = send_status(s, 502, "", -1, extra, req->close) >= 0 && !req->close;
		goto out;
	}
	access_log(s, req, resp.status, v, NULL);

	rl = calloc(1, sizeof(*rl));
	if (!rl)
		goto out;
	rl->s = s;
	if (v->action == FP_ACT_DROP_RESPONSE) {
		/* Read it all, so the server is done with the request before
		 * the client learns nothing of it. */
		rl->mode = RELAY_DISCARD;
		r = relay_body(rl, &resp);
		if (r < 0)
			log_warning("c%u %s %s: reading the response to drop: %s", s->id,
			            req->method, req->target, strerror(-r));
		if (v->drop_after_ms)
			(void)hold(s, v->drop_after_ms);
		goto out;
	}
	if (v->delay_response_ms && hold(s, v->delay_response_ms) < 0)
		goto out;

	if (v->action == FP_ACT_TRUNCATE) {
		rl->mode = RELAY_TRUNCATE;
		rl->budget = v->truncate;
		rl->reframe = v->reframe;
		if (v->reframe && resp.body == FP_BODY_LENGTH) {
			r = fp_http_reframe(rhead, rlen,
			                    resp.length < v->truncate ? resp.length : v->truncate,
			                    true, &reframed, &rlen);
			if (r < 0)
				goto out;
		}
	} else if (v->action == FP_ACT_MALFORMED) {
		rl->mode = RELAY_GARBLE;
	}
	r = fp_conn_write(s->client, reframed ? reframed : rhead, rlen,
	                  after_ms(s->p->idle_timeout_ms));
	if (r < 0)
		goto out;
	r = relay_body(rl, &resp);
	if (r < 0 && r != -EPIPE)
		log_warning("c%u %s %s: relaying the response: %s; closing", s->id, req->method,
		            req->target, strerror(-r));
	if (r != 0 || v->action == FP_ACT_TRUNCATE)
		goto out;
	if (resp.close)
		session_set_up(s, NULL);
	keep = !req->close && !resp.close;
out:
	free(rl);
	free(reframed);
	free(rhead);
	return keep;
}

/* Serve one request.  Returns 1 to go on with the connection, 0 to end. */
static int serve_one(struct session *s)
{
	struct proxy *p = s->p;
	struct fp_http_head req = {0};
	struct fp_verdict v;
	struct buf body = {0};
	char *head = NULL, err[256] = "";
	size_t hlen = 0;
	int r, keep = 0;

	r = fp_conn_read_head(s->client, HEAD_MAX, after_ms(p->idle_timeout_ms), &head, &hlen);
	if (r < 0) {
		if (r == -E2BIG)
			(void)send_status(s, 431, "", -1, "kf-faultproxy: request head too large",
			                  true);
		goto out;
	}
	r = fp_http_parse_request(head, hlen, &req, err, sizeof(err));
	if (r < 0) {
		log_warning("c%u: bad request: %s; closing", s->id, err);
		(void)send_status(s, 400, "BadRequest", -1, err, true);
		goto out;
	}
	r = read_request_body(s->client, &req, &body, after_ms(p->idle_timeout_ms));
	if (r < 0) {
		if (r == -EFBIG)
			(void)send_status(s, 413, "RequestEntityTooLarge", -1,
			                  "kf-faultproxy: request body too large", true);
		goto out;
	}

	if (s->unwatched) { /* the last request was `late`: its upstream goes */
		session_set_up(s, NULL);
		s->unwatched = false;
	}
	fp_rules_match(p->rules, req.method, req.target, &v);
	if (v.delay_ms && hold(s, v.delay_ms) < 0) {
		access_log(s, &req, 0, &v, "client-gone");
		goto out;
	}
	if (v.late_ms) {
		/* the request is on its way already: it reaches the server late,
		 * whether or not its sender still waits for the answer */
		struct timespec ts = {v.late_ms / 1000, (v.late_ms % 1000) * 1000000L};

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		/* on a connection of its own (the kept one may have been
		 * closed by the server meanwhile) that does not end when the
		 * client does */
		session_set_up(s, NULL);
		s->unwatched = true;
	}
	switch (v.action) {
	case FP_ACT_STATUS: {
		char msg[128];

		access_log(s, &req, 0, &v, NULL);
		snprintf(msg, sizeof(msg), "injected by kf-faultproxy (rule %d): %d", v.line,
		         v.status);
		keep = send_status(s, v.status, v.reason, v.retry_after, msg, req.close) >= 0 &&
		       !req.close;
		break;
	}
	case FP_ACT_RESET:
		access_log(s, &req, 0, &v, NULL);
		s->reset_client = true;
		break;
	case FP_ACT_BLACKHOLE:
		access_log(s, &req, 0, &v, NULL);
		(void)fp_conn_wait_gone(s->client, after_ms(p->max_hold_ms));
		break;
	default:
		keep = forward(s, &req, head, hlen, &body, &v);
		break;
	}
out:
	free(body.d);
	free(head);
	fp_http_head_clear(&req);
	return keep;
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	struct proxy *p = s->p;
	char err[256] = "";
	struct fp_conn *c = NULL;
	int r;

	r = fp_conn_new(p->server_ctx, s->fd, true, NULL, after_ms(p->connect_timeout_ms), &c, err,
	                sizeof(err));
	pthread_mutex_lock(&p->lock);
	s->fd = -1;
	s->client = c;
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		log_debug("c%u: %s", s->id, err);
	else
		while (serve_one(s) > 0)
			;

	pthread_mutex_lock(&p->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		p->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	c = s->client;
	s->client = NULL;
	pthread_mutex_unlock(&p->lock);
	session_set_up(s, NULL);
	fp_conn_free(c, s->reset_client);

	pthread_mutex_lock(&p->lock);
	p->active--;
	pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
	free(s);
	return NULL;
}

/* ------------------------------------------------------------ startup */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
	/* HTTP/1.1 only: a client offering h2 falls back to it. */
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *o = NULL;

	if (SSL_select_next_proto(&o, outlen, h1, sizeof(h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL's reason for the last failure, which a missing file leaves unset. */
static const char *ssl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_get_error());

	ERR_clear_error();
	return r ? r : "cannot be read";
}

static int tls_setup(struct proxy *p, const char *cert, const char *key, const char *ca,
                     const char *up_cert, const char *up_key, char *err, size_t errlen)
{
	p->server_ctx = SSL_CTX_new(TLS_server_method());
	p->upstream_ctx = SSL_CTX_new(TLS_client_method());
	if (!p->server_ctx || !p->upstream_ctx) {
		errbuf_set(err, errlen, "cannot create TLS contexts");
		return -ENOMEM;
	}
	(void)SSL_CTX_set_min_proto_version(p->server_ctx, TLS1_2_VERSION);
	(void)SSL_CTX_set_min_proto_version(p->upstream_ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(p->server_ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(p->server_ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(p->server_ctx) != 1) {
		errbuf_set(err, errlen, "--cert '%s' / --key '%s': %s", cert, key, ssl_reason());
		return -EINVAL;
	}
	SSL_CTX_set_alpn_select_cb(p->server_ctx, alpn_select, NULL);
	/* The upstream is always verified: there is no switch to turn it off. */
	SSL_CTX_set_verify(p->upstream_ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(p->upstream_ctx, ca, NULL) != 1) {
		errbuf_set(err, errlen, "--upstream-ca '%s': %s", ca, ssl_reason());
		return -EINVAL;
	}
	if (up_cert &&
	    (SSL_CTX_use_certificate_chain_file(p->upstream_ctx, up_cert) != 1 ||
	     SSL_CTX_use_PrivateKey_file(p->upstream_ctx, up_key, SSL_FILETYPE_PEM) != 1 ||
	     SSL_CTX_check_private_key(p->upstream_ctx) != 1)) {
		errbuf_set(err, errlen, "--upstream-cert '%s' / --upstream-key '%s': %s", up_cert,
		           up_key, ssl_reason());
		return -EINVAL;
	}
	ERR_clear_error();
	return 0;
}

/* "https://HOST:PORT" (an optional "/" after it); [v6] literals allowed. */
static int upstream_setup(struct proxy *p, const char *url, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	char host[256], port[16];
	const char *h, *colon, *end;
	int r;

	if (strncmp(url, "https://", 8) != 0)
		goto bad;
	h = url + 8;
	if (*h == '[') {
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			goto bad;
		colon = end + 1;
		h++;
	} else {
		colon = strrchr(h, ':');
		if (!colon)
			goto bad;
		end = colon;
	}
	if (end == h || (size_t)(end - h) >= sizeof(host) || strlen(colon + 1) >= sizeof(port))
		goto bad;
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);
	port[strcspn(port, "/")] = '\0';
	if (!*port || strspn(port, "0123456789") != strlen(port) ||
	    (strchr(colon + 1, '/') && strcmp(strchr(colon + 1, '/'), "/") != 0))
		goto bad;
	r = getaddrinfo(host, port, &hints, &ai);
	if (r != 0) {
		errbuf_set(err, errlen, "--upstream '%s': %s", url, gai_strerror(r));
		return -EINVAL;
	}
	memcpy(&p->up_addr, ai->ai_addr, ai->ai_addrlen);
	p->up_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(p->upstream_host, sizeof(p->upstream_host), "%s", host);
	return 0;
bad:
	errbuf_set(err, errlen, "--upstream '%s': want https://HOST:PORT (no path)", url);
	return -EINVAL;
}

/* Bind the loopback address "IP:PORT" or "[::1]:PORT"; anything that is
 * not loopback is refused. */
static int listen_setup(const char *spec, int *ret_fd, int *ret_port, char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	char host[64];
	const char *colon;
	unsigned long port;
	char *end;
	int fd = -1, one = 1, r;

	colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		goto bad;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port > 65535)
		goto bad;
	if (host[0] == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		size_t hl = strlen(host);

		if (hl < 3 || host[hl - 1] != ']')
			goto bad;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1 ||
		    !IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
			goto bad;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		if (inet_pton(AF_INET, host, &a->sin_addr) != 1 ||
		    (ntohl(a->sin_addr.s_addr) >> 24) != 127)
			goto bad;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		sl = sizeof(*a);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "--listen '%s': %s", spec, strerror(-r));
		close(fd);
		return r;
	}
	sl = sizeof(ss);
	(void)getsockname(fd, (struct sockaddr *)&ss, &sl);
	*ret_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
	*ret_fd = fd;
	return 0;
bad:
	errbuf_set(err, errlen, "--listen '%s': want a loopback IP:PORT (127.0.0.1:0, [::1]:0)",
	           spec);
	return -EINVAL;
}

/* Write the port so that a reader never sees a partial file. */
static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;
	int r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	if (fprintf(f, "%d\n", port) < 0)
		r = -EIO;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

static void stop_sessions(struct proxy *p)
{
	struct timespec until;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	/* Wake every blocked session: its poll sees the shut-down socket. */
	for (struct session *s = p->sessions; s; s = s->next) {
		if (s->fd >= 0)
			(void)shutdown(s->fd, SHUT_RDWR);
		if (s->client)
			(void)shutdown(s->client->fd, SHUT_RDWR);
		if (s->up)
			(void)shutdown(s->up->fd, SHUT_RDWR);
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 3;
	while (p->active > 0)
		if (pthread_cond_timedwait(&p->idle, &p->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&p->lock);
}

static void usage(FILE *f)
{
	fputs("Usage: kf-faultproxy --cert FILE --key FILE --upstream https://HOST:PORT\n"
	      "                     --upstream-ca FILE [options]\n"
	      "       kf-faultproxy --check-rules FILE\n"
	      "An HTTPS proxy for a kube-apiserver that injects faults by rule.\n\n"
	      "  --listen IP:PORT         loopback address to listen on (127.0.0.1:0;\n"
	      "                           port 0 picks one, printed on stdout)\n"
	      "  --port-file FILE         also write the port there (atomically)\n"
	      "  --cert FILE, --key FILE  the proxy's server certificate chain and key\n"
	      "  --upstream URL           the API server, https://HOST:PORT\n"
	      "  --upstream-ca FILE       CA bundle the API server is verified with\n"
	      "  --upstream-cert FILE, --upstream-key FILE\n"
	      "                           client identity presented upstream\n"
	      "  --rules FILE             the rules; re-read when it changes\n"
	      "  --log FILE               one line per request (appended)\n"
	      "  --seed N                 seed of prob= draws (1)\n"
	      "  --connect-timeout MS     upstream connect and TLS handshakes (5000)\n"
	      "  --idle-timeout MS        longest wait for any read or write (600000)\n"
	      "  --max-hold MS            how long blackhole holds, bound of delays (600000)\n"
	      "  --log-level LEVEL        error, warning, info, debug (info)\n"
	      "  --check-rules FILE       check a rules file and exit (0 good, 1 bad)\n",
	      f);
}

static int parse_ms(const char *opt, const char *s, long *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v <= 0 || v > 24L * 3600 * 1000) {
		log_error("%s '%s': want milliseconds in 1..86400000", opt, s);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int check_rules(const char *path, long max_ms)
{
	struct fp_ruleset *rs = NULL;
	char err[8192] = "";
	FILE *f = fopen(path, "re");
	int n;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 1;
	}
	n = fp_ruleset_parse(path, f, 1, max_ms, &rs, err, sizeof(err));
	fclose(f);
	if (n < 0) {
		fprintf(stderr, "%s\n", err[0] ? err : strerror(-n));
		return 1;
	}
	printf("%s: %d rule(s)\n", path, n);
	fp_ruleset_free(rs);
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_LISTEN = 256,
		O_PORT_FILE,
		O_CERT,
		O_KEY,
		O_UPSTREAM,
		O_UPSTREAM_CA,
		O_UPSTREAM_CERT,
		O_UPSTREAM_KEY,
		O_RULES,
		O_LOG,
		O_SEED,
		O_CONNECT_TIMEOUT,
		O_IDLE_TIMEOUT,
		O_MAX_HOLD,
		O_LOG_LEVEL,
		O_CHECK_RULES,
	};
	static const struct option opts[] = {
	        {"listen", required_argument, NULL, O_LISTEN},
	        {"port-file", required_argument, NULL, O_PORT_FILE},
	        {"cert", required_argument, NULL, O_CERT},
	        {"key", required_argument, NULL, O_KEY},
	        {"upstream", required_argument, NULL, O_UPSTREAM},
	        {"upstream-ca", required_argument, NULL, O_UPSTREAM_CA},
	        {"upstream-cert", required_argument, NULL, O_UPSTREAM_CERT},
	        {"upstream-key", required_argument, NULL, O_UPSTREAM_KEY},
	        {"rules", required_argument, NULL, O_RULES},
	        {"log", required_argument, NULL, O_LOG},
	        {"seed", required_argument, NULL, O_SEED},
	        {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
	        {"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
	        {"max-hold", required_argument, NULL, O_MAX_HOLD},
	        {"log-level", required_argument, NULL, O_LOG_LEVEL},
	        {"check-rules", required_argument, NULL, O_CHECK_RULES},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *listen_spec = "127.0.0.1:0", *port_file = NULL, *cert = NULL, *key = NULL;
	const char *upstream = NULL, *ca = NULL, *up_cert = NULL, *up_key = NULL;
	const char *rules_path = NULL, *log_path = NULL, *check = NULL;
	unsigned long long seed = 1;
	struct proxy p = {.log_fd = -1,
	                  .connect_timeout_ms = 5000,
	                  .idle_timeout_ms = 600000,
	                  .max_hold_ms = 600000};
	char err[4096] = "";
	int listen_fd = -1, sig_fd = -1, port = 0, o, r, ret = 1;
	sigset_t mask;

	log_set_ident("kf-faultproxy");
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.idle, NULL);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_LISTEN:
			listen_spec = optarg;
			break;
		case O_PORT_FILE:
			port_file = optarg;
			break;
		case O_CERT:
			cert = optarg;
			break;
		case O_KEY:
			key = optarg;
			break;
		case O_UPSTREAM:
			upstream = optarg;
			break;
		case O_UPSTREAM_CA:
			ca = optarg;
			break;
		case O_UPSTREAM_CERT:
			up_cert = optarg;
			break;
		case O_UPSTREAM_KEY:
			up_key = optarg;
			break;
		case O_RULES:
			rules_path = optarg;
			break;
		case O_LOG:
			log_path = optarg;
			break;
		case O_SEED: {
			char *end;
			errno = 0;
			seed = strtoull(optarg, &end, 0);
			if (errno || *end || end == optarg) {
				log_error("--seed '%s': want an unsigned integer", optarg);
				return 2;
			}
			break;
		}
		case O_CONNECT_TIMEOUT:
			if (parse_ms("--connect-timeout", optarg, &p.connect_timeout_ms) < 0)
				return 2;
			break;
		case O_IDLE_TIMEOUT:
			if (parse_ms("--idle-timeout", optarg, &p.idle_timeout_ms) < 0)
				return 2;
			break;
		case O_MAX_HOLD:
			if (parse_ms("--max-hold", optarg, &p.max_hold_ms) < 0)
				return 2;
			break;
		case O_LOG_LEVEL:
			r = log_level_from_string(optarg);
			if (r < 0) {
				log_error("--log-level '%s': want error, warning, info or debug",
				          optarg);
				return 2;
			}
			log_max_level = r;
			break;
		case O_CHECK_RULES:
			check = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (check)
		return check_rules(check, p.max_hold_ms);
	if (!cert || !key || !upstream || !ca || (!up_cert != !up_key)) {
		log_error("--cert, --key, --upstream and --upstream-ca are required, and "
		          "--upstream-cert goes with --upstream-key");
		usage(stderr);
		return 2;
	}

	/* Signals are taken by the main loop only; a peer's close must never
	 * kill the process. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		goto out;
	}

	r = tls_setup(&p, cert, key, ca, up_cert, up_key, err, sizeof(err));
	if (r >= 0)
		r = upstream_setup(&p, upstream, err, sizeof(err));
	if (r >= 0)
		r = fp_rules_new(rules_path, seed, p.max_hold_ms, &p.rules, err, sizeof(err));
	if (r >= 0)
		r = listen_setup(listen_spec, &listen_fd, &port, err, sizeof(err));
	if (r < 0) {
		for (char *save = NULL, *l = strtok_r(err, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save))
			log_error("%s", l);
		log_error("not starting");
		goto out;
	}
	if (log_path) {
		p.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (p.log_fd < 0) {
			log_error("--log '%s': %s; not starting", log_path, strerror(errno));
			goto out;
		}
	}
	if (port_file && (r = write_port_file(port_file, port)) < 0) {
		log_error("--port-file '%s': %s; not starting", port_file, strerror(-r));
		goto out;
	}
	printf("%d\n", port);
	fflush(stdout);
	log_info("listening on %s (port %d), forwarding to %s, rules %s", listen_spec, port,
	         upstream, rules_path ? rules_path : "(none)");

	for (;;) {
		struct pollfd pf[2] = {{.fd = listen_fd, .events = POLLIN},
		                       {.fd = sig_fd, .events = POLLIN}};
		struct session *s;
		pthread_attr_t attr;
		pthread_t t;
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			goto out;
		}
		if (pf[1].revents) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
				log_info("stopping on %s", strsignal((int)si.ssi_signo));
			break;
		}
		if (!pf[0].revents)
			continue;
		fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warning("accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000); /* let sessions end rather than spin */
			continue;
		}
		/* Heads and bodies go out in separate writes: without this,
		 * Nagle and the client's delayed ACK add 40 ms to each. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
		s = calloc(1, sizeof(*s));
		if (!s) {
			close(fd);
			continue;
		}
		s->p = &p;
		s->fd = fd;
		s->id = atomic_fetch_add(&p.next_id, 1) + 1;
		pthread_mutex_lock(&p.lock);
		s->next = p.sessions;
		if (p.sessions)
			p.sessions->prev = s;
		p.sessions = s;
		p.active++;
		pthread_mutex_unlock(&p.lock);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		r = pthread_create(&t, &attr, session_main, s);
		pthread_attr_destroy(&attr);
		if (r != 0) {
			log_warning("cannot start a session thread: %s; closing the connection",
			            strerror(r));
			pthread_mutex_lock(&p.lock);
			p.sessions = s->next;
			if (s->next)
				s->next->prev = NULL;
			p.active--;
			pthread_mutex_unlock(&p.lock);
			close(fd);
			free(s);
		}
	}
	close(listen_fd);
	listen_fd = -1;
	stop_sessions(&p);
	if (p.active > 0) {
		/* A session that did not end within the grace time still uses
		 * the contexts below; leave them to the process exit. */
		log_warning("%u connection(s) still open; exiting anyway", p.active);
		_exit(0);
	}
	ret = 0;
out:
	if (listen_fd >= 0)
		close(listen_fd);
	if (sig_fd >= 0)
		close(sig_fd);
	if (p.log_fd >= 0)
		close(p.log_fd);
	fp_rules_free(p.rules);
	SSL_CTX_free(p.server_ctx);
	SSL_CTX_free(p.upstream_ctx);
	return ret;
}
