/* control: the agent's side of the control socket (see control.h). */
#include "config.h"

#include "nodeagent/control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/ctlproto.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"

/* ---------------------------------------------------------------- parse */

/* What the agent receives (docs/control-protocol.md): the fields, in the
 * order in which a missing one is named, and the service's verbs. */
enum {
	F_VERSION,
	F_POD,
	F_UID,
	F_PID,
	F_EPOCH,
	F_RECORDS,
	F_LAST_SEQ,
	F_RECOVERY_MS,
	F_REASON,
	F_MONO,
	F_SEQ,
	F_STORE,
	F_STORE_NODE,
};

static int check_version(uint64_t v, char *err, size_t errlen)
{
	if (v == CONTROL_VERSION)
		return 0;
	errbuf_set(err, errlen,
	           "HELLO: protocol version %" PRIu64 " is not supported (this agent speaks %d: "
	           "write grants are absolute CLOCK_MONOTONIC times, and PING must be answered "
	           "with PONG; upgrade the service)",
	           v, CONTROL_VERSION);
	return -EBADMSG;
}

#define TEXT_MAX(f) (sizeof(((struct control_msg *)0)->f) - 1)

static const struct ctlproto_field fields[] = {
        [F_VERSION] = {"version", CTLPROTO_U64, 0, INT64_MAX, check_version},
        [F_POD] = {"pod", CTLPROTO_TEXT, 1, TEXT_MAX(pod), NULL},
        [F_UID] = {"uid", CTLPROTO_TEXT, 1, TEXT_MAX(uid), NULL},
        [F_PID] = {"pid", CTLPROTO_U64, 1, INT32_MAX, NULL},
        [F_EPOCH] = {"epoch", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_RECORDS] = {"records", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_LAST_SEQ] = {"last_seq", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_RECOVERY_MS] = {"recovery_ms", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_REASON] = {"reason", CTLPROTO_REST, 1, TEXT_MAX(reason), NULL},
        [F_MONO] = {"mono_us", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_SEQ] = {"seq", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_STORE] = {"store", CTLPROTO_TEXT, 1, TEXT_MAX(store), NULL},
        [F_STORE_NODE] = {"store_node", CTLPROTO_TEXT, 1, TEXT_MAX(store_node), NULL},
};

#define F CTLPROTO_F

/* Every field a verb takes is required. */
static const struct ctlproto_verb verbs[] = {
        {"HELLO", CONTROL_HELLO, F(F_VERSION) | F(F_POD) | F(F_UID) | F(F_PID) | F(F_MONO),
         F(F_STORE) | F(F_STORE_NODE)},
        {"READY", CONTROL_READY, F(F_EPOCH) | F(F_RECORDS) | F(F_LAST_SEQ) | F(F_RECOVERY_MS), 0},
        {"FAILED", CONTROL_FAILED, F(F_EPOCH) | F(F_REASON), 0},
        {"DEMOTED", CONTROL_DEMOTED, F(F_EPOCH), 0},
        {"STANDBY", CONTROL_STANDBY, 0, 0},
        {"PONG", CONTROL_PONG, F(F_SEQ), 0},
        {"ERROR", CONTROL_ERROR, F(F_REASON), 0},
};

static const struct ctlproto_grammar grammar = {fields, ELEMENTSOF(fields), verbs,
                                                ELEMENTSOF(verbs)};

int control_parse(const char *line, struct control_msg *ret, char *err, size_t errlen)
{
	struct ctlproto_line l;
	struct control_msg m = {0};

	if (ctlproto_parse(&grammar, line, &l, err, errlen) < 0)
		return -EBADMSG;
	m.verb = (enum control_verb)l.verb->id;
	/* the grammar checked every length and bound */
	if (ctlproto_has(&l, F_VERSION))
		m.version = (int)l.u64[F_VERSION];
	if (ctlproto_has(&l, F_POD))
		str_copy(m.pod, sizeof(m.pod), l.text[F_POD]);
	if (ctlproto_has(&l, F_UID))
		str_copy(m.uid, sizeof(m.uid), l.text[F_UID]);
	if (ctlproto_has(&l, F_PID))
		m.pid = (pid_t)l.u64[F_PID];
	if (ctlproto_has(&l, F_REASON))
		str_copy(m.reason, sizeof(m.reason), l.text[F_REASON]);
	if (ctlproto_has(&l, F_STORE))
		str_copy(m.store, sizeof(m.store), l.text[F_STORE]);
	if (ctlproto_has(&l, F_STORE_NODE))
		str_copy(m.store_node, sizeof(m.store_node), l.text[F_STORE_NODE]);
	m.mono_us = (int64_t)l.u64[F_MONO];
	m.epoch = (int64_t)l.u64[F_EPOCH];
	m.records = l.u64[F_RECORDS];
	m.last_seq = l.u64[F_LAST_SEQ];
	m.recovery_ms = l.u64[F_RECOVERY_MS];
	m.seq = l.u64[F_SEQ];
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

/* Write the line o within 200 ms, to a peer that said HELLO unless
 * `any_peer`.  Caller holds mu. */
static int send_out_locked(struct control *c, bool any_peer, struct ctlproto_out *o)
{
	int n;

	if (c->conn_fd < 0 || (!c->hello_done && !any_peer))
		return -ENOTCONN;
	n = ctlproto_out_end(o);
	if (n < 0)
		return n;
	return fd_send_all(c->conn_fd, o->buf, (size_t)n, clock_mono_usec() + 200 * USEC_PER_MSEC);
}

/* "VERB epoch=E until_us=T" (PROMOTE, RENEW) */
static int send_grant_locked(struct control *c, const char *verb, int64_t epoch, int64_t until)
{
	struct ctlproto_out o;

	ctlproto_out_begin(&o, verb);
	ctlproto_out_i64(&o, "epoch", epoch);
	ctlproto_out_i64(&o, "until_us", until);
	return send_out_locked(c, false, &o);
}

/* "ERROR reason=..." to the connected peer, HELLO or not.  Caller holds mu. */
static int send_error_locked(struct control *c, const char *reason)
{
	struct ctlproto_out o;

	ctlproto_out_begin(&o, "ERROR");
	ctlproto_out_rest(&o, "reason", reason);
	return send_out_locked(c, true, &o);
}

/* The same to a peer that is refused before it becomes the connection. */
static void refuse(int fd, const char *reason)
{
	struct ctlproto_out o;
	int n;

	ctlproto_out_begin(&o, "ERROR");
	ctlproto_out_rest(&o, "reason", reason);
	n = ctlproto_out_end(&o);
	if (n > 0)
		(void)!write(fd, o.buf, (size_t)n);
	close(fd);
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
		refuse(fd, "peer uid not allowed");
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (c->conn_fd >= 0) {
		pthread_mutex_unlock(&c->mu);
		log_warning("control: refusing pid %d: service '%s' is already connected",
		            (int)cred.pid, c->peer.pod);
		refuse(fd, "another service is connected");
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
		(void)send_error_locked(c, err);
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
				char why[128];

				snprintf(why, sizeof(why),
				         "your CLOCK_MONOTONIC is %" PRId64
				         " ms away from the agent's; write grants are times on it",
				         skew / 1000);
				(void)send_error_locked(c, why);
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
		str_copy(c->peer.store, sizeof(c->peer.store), m.store);
		str_copy(c->peer.store_node, sizeof(c->peer.store_node), m.store_node);
		c->peer.pid = m.pid;
		c->peer.gen = ++c->gens;
		c->hello_done = true;
		{
			struct ctlproto_out o;

			ctlproto_out_begin(&o, "WELCOME");
			ctlproto_out_u64(&o, "version", CONTROL_VERSION);
			ctlproto_out_text(&o, "node", c->node);
			ctlproto_out_i64(&o, "mono_us", clock_mono_usec());
			(void)send_out_locked(c, false, &o);
		}
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
	r = c->hello_done && c->peer.gen != gen ? -ESTALE
	                                        : send_grant_locked(c, "PROMOTE", epoch, until);
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
	r = c->hello_done && c->peer.gen != gen ? -ESTALE
	                                        : send_grant_locked(c, "RENEW", epoch, until);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_ping(struct control *c, uint64_t seq)
{
	struct ctlproto_out o;
	int r;

	if (!c)
		return -ENOTCONN;
	ctlproto_out_begin(&o, "PING");
	ctlproto_out_u64(&o, "seq", seq);
	pthread_mutex_lock(&c->mu);
	r = send_out_locked(c, false, &o);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_demote(struct control *c, int64_t epoch, const char *reason)
{
	struct ctlproto_out o;
	int r;

	if (!c)
		return -ENOTCONN;

	r = FAILPOINT(AGENT_CONTROL_BEFORE_DEMOTE);
	if (r < 0)
		return r;
	ctlproto_out_begin(&o, "DEMOTE");
	ctlproto_out_i64(&o, "epoch", epoch);
	ctlproto_out_rest(&o, "reason", reason);
	pthread_mutex_lock(&c->mu);
	r = send_out_locked(c, false, &o);
	pthread_mutex_unlock(&c->mu);
	return r;
}

int control_send_master(struct control *c, int64_t epoch, const char *pod, const char *addr)
{
	struct ctlproto_out o;
	int r;

	if (!c)
		return -ENOTCONN;

	ctlproto_out_begin(&o, "MASTER");
	ctlproto_out_i64(&o, "epoch", epoch);
	ctlproto_out_text(&o, "pod", pod);
	ctlproto_out_text(&o, "addr", addr);
	pthread_mutex_lock(&c->mu);
	r = send_out_locked(c, false, &o);
	pthread_mutex_unlock(&c->mu);
	return r;
}
