/* control: the agent's side of the control socket (see control.h). */
#include "config.h"

#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "failpoint.h"
#include "log.h"
#include "util.h"

/* ---------------------------------------------------------------- parse */

enum {
	F_VERSION = 1 << 0,
	F_POD = 1 << 1,
	F_UID = 1 << 2,
	F_PID = 1 << 3,
	F_EPOCH = 1 << 4,
	F_RECORDS = 1 << 5,
	F_LAST_SEQ = 1 << 6,
	F_RECOVERY_MS = 1 << 7,
	F_REASON = 1 << 8,
	F_MONO = 1 << 9,
	F_SEQ = 1 << 10,
};

static const struct {
	const char *name;
	enum control_verb verb;
	unsigned required;
} verbs[] = {
        {"HELLO", CONTROL_HELLO, F_VERSION | F_POD | F_UID | F_PID | F_MONO},
        {"READY", CONTROL_READY, F_EPOCH | F_RECORDS | F_LAST_SEQ | F_RECOVERY_MS},
        {"FAILED", CONTROL_FAILED, F_EPOCH | F_REASON},
        {"DEMOTED", CONTROL_DEMOTED, F_EPOCH},
        {"STANDBY", CONTROL_STANDBY, 0},
        {"PONG", CONTROL_PONG, F_SEQ},
        {"ERROR", CONTROL_ERROR, F_REASON},
};

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int set_text(char *dst, size_t n, const char *v, const char *key, char *err, size_t errlen)
{
	if (!*v || str_copy(dst, n, v) < 0) {
		errbuf_set(err, errlen, "%s: empty or longer than %zu bytes", key, n - 1);
		return -EBADMSG;
	}
	return 0;
}

int control_parse(const char *line, struct control_msg *ret, char *err, size_t errlen)
{
	struct control_msg m = {0};
	char buf[CONTROL_LINE_MAX + 1], *p, *tok;
	unsigned seen = 0, required = 0;
	size_t i, len = strlen(line);

	if (len > CONTROL_LINE_MAX) {
		errbuf_set(err, errlen, "line longer than %d bytes", CONTROL_LINE_MAX);
		return -EBADMSG;
	}
	memcpy(buf, line, len + 1);
	p = buf;
	tok = strsep(&p, " ");
	for (i = 0; i < ELEMENTSOF(verbs); i++)
		if (strcmp(tok, verbs[i].name) == 0)
			break;
	if (i == ELEMENTSOF(verbs)) {
		errbuf_set(err, errlen, "unknown verb '%.32s'", tok);
		return -EBADMSG;
	}
	m.verb = verbs[i].verb;
	required = verbs[i].required;

	while (p && *p) {
		char *eq;
		unsigned f;
		uint64_t v;

		/* reason= takes the rest of the line, spaces included */
		if (strncmp(p, "reason=", 7) == 0) {
			tok = p;
			p = NULL;
		} else {
			tok = strsep(&p, " ");
		}
		eq = strchr(tok, '=');
		if (!eq || eq == tok) {
			errbuf_set(err, errlen, "'%.32s' is not key=value", tok);
			return -EBADMSG;
		}
		*eq++ = '\0';
		if (strcmp(tok, "version") == 0)
			f = F_VERSION;
		else if (strcmp(tok, "pod") == 0)
			f = F_POD;
		else if (strcmp(tok, "uid") == 0)
			f = F_UID;
		else if (strcmp(tok, "pid") == 0)
			f = F_PID;
		else if (strcmp(tok, "epoch") == 0)
			f = F_EPOCH;
		else if (strcmp(tok, "records") == 0)
			f = F_RECORDS;
		else if (strcmp(tok, "last_seq") == 0)
			f = F_LAST_SEQ;
		else if (strcmp(tok, "recovery_ms") == 0)
			f = F_RECOVERY_MS;
		else if (strcmp(tok, "reason") == 0)
			f = F_REASON;
		else if (strcmp(tok, "mono_us") == 0)
			f = F_MONO;
		else if (strcmp(tok, "seq") == 0)
			f = F_SEQ;
		else {
			errbuf_set(err, errlen, "%s: unknown field '%.32s'", verbs[i].name, tok);
			return -EBADMSG;
		}
		if (!(required & f)) {
			errbuf_set(err, errlen, "%s: field '%s' does not belong here",
			           verbs[i].name, tok);
			return -EBADMSG;
		}
		if (seen & f) {
			errbuf_set(err, errlen, "%s: field '%s' given twice", verbs[i].name, tok);
			return -EBADMSG;
		}
		seen |= f;
		switch (f) {
		case F_POD:
			if (set_text(m.pod, sizeof(m.pod), eq, tok, err, errlen) < 0)
				return -EBADMSG;
			continue;
		case F_UID:
			if (set_text(m.uid, sizeof(m.uid), eq, tok, err, errlen) < 0)
				return -EBADMSG;
			continue;
		case F_REASON:
			if (set_text(m.reason, sizeof(m.reason), eq, tok, err, errlen) < 0)
				return -EBADMSG;
			continue;
		default:
			break;
		}
		if (parse_u64(eq, f == F_PID ? (uint64_t)INT32_MAX : (uint64_t)INT64_MAX, &v) < 0 ||
		    (f == F_PID && v == 0)) {
			errbuf_set(err, errlen, "%s: '%.32s' is not a valid %s", verbs[i].name, eq,
			           tok);
			return -EBADMSG;
		}
		switch (f) {
		case F_VERSION:
			if (v != CONTROL_VERSION) {
				errbuf_set(err, errlen,
				           "HELLO: protocol version %" PRIu64
				           " is not supported (this agent speaks %d: write grants "
				           "are absolute CLOCK_MONOTONIC times, and PING must be "
				           "answered with PONG; upgrade the service)",
				           v, CONTROL_VERSION);
				return -EBADMSG;
			}
			m.version = (int)v;
			break;
		case F_MONO:
			m.mono_us = (int64_t)v;
			break;
		case F_SEQ:
			m.seq = v;
			break;
		case F_PID:
			m.pid = (pid_t)v;
			break;
		case F_EPOCH:
			m.epoch = (int64_t)v;
			break;
		case F_RECORDS:
			m.records = v;
			break;
		case F_LAST_SEQ:
			m.last_seq = v;
			break;
		case F_RECOVERY_MS:
			m.recovery_ms = v;
			break;
		}
	}
	if ((seen & required) != required) {
		static const char *const names[] = {"version", "pod",     "uid",      "pid",
		                                    "epoch",   "records", "last_seq", "recovery_ms",
		                                    "reason",  "mono_us", "seq"};
		for (i = 0; i < ELEMENTSOF(names); i++)
			if ((required & ~seen) & (1u << i))
				break;
		errbuf_set(err, errlen, "%s: field '%s' is missing", verbs[m.verb].name, names[i]);
		return -EBADMSG;
	}
	*ret = m;
	return 0;
}

/* --------------------------------------------------------------- server */

struct control {
	char path[108];
	char node[254];
	uid_t allowed_uid;
	struct control_callbacks cb;
	void *userdata;

	int listen_fd;
	int wake[2];
	pthread_t thread;
	bool started;

	pthread_mutex_t mu; /* conn_fd for senders, peer, hello_done */
	int conn_fd;
	bool hello_done;
	struct control_peer peer;
	uint64_t gens; /* accepted HELLOs so far */
};

int control_new(const char *path, uid_t allowed_uid, const char *node,
                const struct control_callbacks *cb, void *userdata, struct control **ret, char *err,
                size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct control *c;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errbuf_set(err, errlen, "socket path '%s' is longer than %zu bytes", path,
		           sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->listen_fd = c->conn_fd = c->wake[0] = c->wake[1] = -1;
	pthread_mutex_init(&c->mu, NULL);
	str_copy(c->path, sizeof(c->path), path);
	str_copy(c->node, sizeof(c->node), node);
	c->allowed_uid = allowed_uid;
	if (cb)
		c->cb = *cb;
	c->userdata = userdata;

	strcpy(sa.sun_path, path);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->listen_fd < 0 || pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "socket: %s", strerror(-r));
		goto fail;
	}
	/* A stale socket of a previous agent would make bind fail. */
	if (unlink(path) < 0 && errno != ENOENT) {
		r = -errno;
		errbuf_set(err, errlen, "cannot remove the old '%s': %s", path, strerror(-r));
		goto fail;
	}
	if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(c->listen_fd, 4) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "cannot listen on '%s': %s", path, strerror(-r));
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	control_free(c);
	return r;
}

/* Write a whole line within 200 ms, to a peer that said HELLO unless
 * `any_peer`.  Caller holds mu. */
static int vsend_locked(struct control *c, bool any_peer, const char *fmt, va_list ap)
{
	char line[CONTROL_LINE_MAX + 2];
	size_t len;
	int n;

	if (c->conn_fd < 0 || (!c->hello_done && !any_peer))
		return -ENOTCONN;
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	if (n < 0 || (size_t)n > CONTROL_LINE_MAX)
		return -EMSGSIZE;
	len = (size_t)n;
	line[len++] = '\n';
	return fd_send_all(c->conn_fd, line, len, clock_mono_usec() + 200 * USEC_PER_MSEC);
}

static int send_locked(struct control *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int send_locked(struct control *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsend_locked(c, false, fmt, ap);
	va_end(ap);
	return r;
}

static int send_any_locked(struct control *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int send_any_locked(struct control *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsend_locked(c, true, fmt, ap);
	va_end(ap);
	return r;
}

static void close_conn(struct control *c, const char *why)
{
	bool had_hello;

	pthread_mutex_lock(&c->mu);
	had_hello = c->hello_done;
	if (c->conn_fd >= 0)
		close(c->conn_fd);
	c->conn_fd = -1;
	c->hello_done = false;
	pthread_mutex_unlock(&c->mu);
	if (had_hello) {
		log_info("service '%s' (pid %d) disconnected: %s", c->peer.pod, (int)c->peer.pid,
		         why);
		if (c->cb.gone)
			c->cb.gone(c->userdata, why);
	} else {
		log_info("a control connection closed before HELLO: %s", why);
	}
}

static void accept_one(struct control *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd;

	fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warning("control: cannot read peer credentials: %s; refusing", strerror(errno));
		close(fd);
		return;
	}
	if (cred.uid != 0 && (c->allowed_uid == (uid_t)-1 || cred.uid != c->allowed_uid)) {
		log_warning("control: refusing pid %d with uid %u (allowed: root%s)", (int)cred.pid,
		            (unsigned)cred.uid,
		            c->allowed_uid == (uid_t)-1 ? "" : " and agent.control_uid");
		(void)!write(fd, "ERROR reason=peer uid not allowed\n", 34);
		close(fd);
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (c->conn_fd >= 0) {
		pthread_mutex_unlock(&c->mu);
		log_warning("control: refusing pid %d: service '%s' is already connected",
		            (int)cred.pid, c->peer.pod);
		(void)!write(fd, "ERROR reason=another service is connected\n", 42);
		close(fd);
		return;
	}
	c->conn_fd = fd;
	c->hello_done = false;
	memset(&c->peer, 0, sizeof(c->peer));
	c->peer.cred_pid = cred.pid;
	c->peer.cred_uid = cred.uid;
	pthread_mutex_unlock(&c->mu);
}

static void handle_line(struct control *c, const char *line)
{
	struct control_msg m;
	char err[256];

	if (control_parse(line, &m, err, sizeof(err)) < 0) {
		log_warning("control: invalid line from pid %d: %s", (int)c->peer.cred_pid, err);
		pthread_mutex_lock(&c->mu);
		(void)send_any_locked(c, "ERROR reason=%s", err);
		pthread_mutex_unlock(&c->mu);
		return;
	}
	if (!c->hello_done && m.verb != CONTROL_HELLO) {
		log_warning("control: pid %d spoke before HELLO; closing", (int)c->peer.cred_pid);
		close_conn(c, "message before HELLO");
		return;
	}
	switch (m.verb) {
	case CONTROL_HELLO:
		pthread_mutex_lock(&c->mu);
		if (c->hello_done) {
			pthread_mutex_unlock(&c->mu);
			log_warning("control: second HELLO from '%s' ignored", c->peer.pod);
			return;
		}
		{
			int64_t skew = clock_mono_usec() - m.mono_us;

			if (skew < -CONTROL_CLOCK_SKEW_MAX_USEC ||
			    skew > CONTROL_CLOCK_SKEW_MAX_USEC) {
				/* not said HELLO yet: the answer goes to any peer */
				(void)send_any_locked(
				        c,
				        "ERROR reason=your CLOCK_MONOTONIC is %" PRId64
				        " ms away from the agent's; write grants are "
				        "times on it",
				        skew / 1000);
				pthread_mutex_unlock(&c->mu);
				log_error("control: service '%s' reads CLOCK_MONOTONIC %" PRId64
				          " ms away from ours (another time namespace?): its write "
				          "grants would be wrong; refusing it",
				          m.pod, skew / 1000);
				close_conn(c, "CLOCK_MONOTONIC differs");
				return;
			}
		}
		str_copy(c->peer.pod, sizeof(c->peer.pod), m.pod);
		str_copy(c->peer.uid, sizeof(c->peer.uid), m.uid);
		c->peer.pid = m.pid;
		c->peer.gen = ++c->gens;
		c->hello_done = true;
		(void)send_locked(c, "WELCOME version=%d node=%s mono_us=%" PRId64, CONTROL_VERSION,
		                  c->node, (int64_t)clock_mono_usec());
		pthread_mutex_unlock(&c->mu);
		log_info("service '%s' (uid %s, pid %d) connected", m.pod, m.uid, (int)m.pid);
		if (c->cb.hello)
			c->cb.hello(c->userdata, &c->peer);
		break;
	case CONTROL_STANDBY:
		if (c->cb.standby)
			c->cb.standby(c->userdata);
		break;
	case CONTROL_READY:
		if (c->cb.ready)
			c->cb.ready(c->userdata, &m);
		break;
	case CONTROL_FAILED:
		if (c->cb.failed)
			c->cb.failed(c->userdata, &m);
		break;
	case CONTROL_DEMOTED:
		if (c->cb.demoted)
			c->cb.demoted(c->userdata, m.epoch);
		break;
	case CONTROL_PONG:
		if (c->cb.pong)
			c->cb.pong(c->userdata, m.seq);
		break;
	case CONTROL_ERROR:
		log_warning("control: service '%s' reports an error: %s", c->peer.pod, m.reason);
		break;
	}
}

static void *control_main(void *arg)
{
	struct control *c = arg;
	char buf[CONTROL_LINE_MAX + 1];
	size_t used = 0;

	for (;;) {
		struct pollfd pfd[3] = {
		        {.fd = c->wake[0], .events = POLLIN},
		        {.fd = c->listen_fd, .events = POLLIN},
		        {.fd = c->conn_fd, .events = POLLIN},
		};
		int n = poll(pfd, c->conn_fd >= 0 ? 3 : 2, -1);

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			bool had = c->conn_fd >= 0;
			accept_one(c);
			if (!had && c->conn_fd >= 0)
				used = 0;
		}
		if (c->conn_fd < 0 || !(pfd[2].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		ssize_t r = recv(c->conn_fd, buf + used, sizeof(buf) - 1 - used, 0);
		if (r == 0) {
			close_conn(c, "EOF on the control socket");
			continue;
		}
		if (r < 0) {
			if (errno != EAGAIN && errno != EINTR)
				close_conn(c, strerror(errno));
			continue;
		}
		used += (size_t)r;
		for (;;) {
			char *nl = memchr(buf, '\n', used);
			if (!nl)
				break;
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			handle_line(c, buf);
			if (c->conn_fd < 0) {
				used = 0;
				break;
			}
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used);
		}
		if (used >= sizeof(buf) - 1) {
			log_warning("control: a line from '%s' exceeds %d bytes; closing",
			            c->peer.pod[0] ? c->peer.pod : "(no HELLO yet)",
			            CONTROL_LINE_MAX);
			close_conn(c, "line too long");
			used = 0;
		}
	}
	return NULL;
}

int control_start(struct control *c)
{
	int r = pthread_create(&c->thread, NULL, control_main, c);
	if (r)
		return -r;
	c->started = true;
	return 0;
}

struct control *control_free(struct control *c)
{
	if (!c)
		return NULL;
	if (c->started) {
		(void)!write(c->wake[1], "x", 1);
		pthread_join(c->thread, NULL);
	}
	if (c->conn_fd >= 0)
		close(c->conn_fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		(void)unlink(c->path);
	}
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return NULL;
}

bool control_connected(struct control *c)
{
	bool r;

	if (!c)
		return false;
	pthread_mutex_lock(&c->mu);
	r = c->conn_fd >= 0 && c->hello_done;
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_get_peer(struct control *c, struct control_peer *ret)
{
	int r = -ENOTCONN;

	pthread_mutex_lock(&c->mu);
	if (c->conn_fd >= 0 && c->hello_done) {
		*ret = c->peer;
		r = 0;
	}
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_promote(struct control *c, uint64_t gen, int64_t epoch, int64_t until)
{
	int r;

	if (!c)
		return -ENOTCONN;

	r = FAILPOINT(AGENT_CONTROL_BEFORE_PROMOTE);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->mu);
	r = c->hello_done && c->peer.gen != gen
	            ? -ESTALE
	            : send_locked(c, "PROMOTE epoch=%" PRId64 " until_us=%" PRId64, epoch, until);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_renew(struct control *c, uint64_t gen, int64_t epoch, int64_t until)
{
	int r;

	if (!c)
		return -ENOTCONN;

	r = FAILPOINT(AGENT_CONTROL_BEFORE_RENEW);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->mu);
	r = c->hello_done && c->peer.gen != gen
	            ? -ESTALE
	            : send_locked(c, "RENEW epoch=%" PRId64 " until_us=%" PRId64, epoch, until);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_ping(struct control *c, uint64_t seq)
{
	int r;

	if (!c)
		return -ENOTCONN;
	pthread_mutex_lock(&c->mu);
	r = send_locked(c, "PING seq=%" PRIu64, seq);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_demote(struct control *c, int64_t epoch, const char *reason)
{
	int r;

	if (!c)
		return -ENOTCONN;

	r = FAILPOINT(AGENT_CONTROL_BEFORE_DEMOTE);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->mu);
	r = send_locked(c, "DEMOTE epoch=%" PRId64 " reason=%s", epoch, reason);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_master(struct control *c, int64_t epoch, const char *pod, const char *addr)
{
	int r;

	if (!c)
		return -ENOTCONN;

	pthread_mutex_lock(&c->mu);
	r = send_locked(c, "MASTER epoch=%" PRId64 " pod=%s addr=%s", epoch, pod, addr);
	pthread_mutex_unlock(&c->mu);
	return r;
}
