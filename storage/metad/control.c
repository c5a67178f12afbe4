/* control: the control-socket client of kubefence-metad (see control.h and
 * docs/control-protocol.md).  One thread owns the connection's reads; writes
 * are serialised by a mutex so that the thread's answers and reports from
 * the server's threads never interleave within a line. */
#include "config.h"

#include "storage/metad/control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/ctlproto.h"
#include "lib/log.h"
#include "lib/util.h"

/* Between attempts to reach the agent.  A connect to a Unix socket costs
 * nothing, and a restarted agent can continue its term only once its
 * service is back: a lease is 2 s in the lab, so an attempt at most every
 * 200 ms (it was 2 s, doubling from 100 ms: an agent back 0.7 s after a
 * crash was found only at 1.5 s, close to the lease's end). */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 200
/* ... and to an agent that accepted the connection but refused us */
#define BACKOFF_REFUSED_MAX_MS 2000
#define SEND_TIMEOUT_MS        1000

struct metad_control {
	char *path, *pod, *uid, *store, *store_node;
	int welcome_timeout_ms;
	struct metad_control_hooks hooks;
	pthread_t thread;
	bool started;
	int wake[2];          /* a pipe: metad_control_stop writes to wake the thread */
	pthread_mutex_t lock; /* fd, conn_gen and writes */
	int fd;
	uint64_t conn_gen; /* bumped by every connection */
	bool stop;
	/* The promotion in flight, on a thread of its own so that the
	 * connection is served while its recovery runs (RENEW, DEMOTE, EOF).
	 * promo_epoch: its epoch while it runs, 0 once it answered (atomic);
	 * promo_started: promo_thread is to be joined (control thread only). */
	pthread_t promo_thread;
	bool promo_started;
	uint64_t promo_epoch;
};

struct promotion {
	struct metad_control *c;
	uint64_t epoch;
	usec_t until;
	uint64_t gen; /* the connection it came on, the only one to answer on */
};

/* ------------------------------------------------------------ parsing */

/* What the service receives (docs/control-protocol.md): the fields, in the
 * order in which a missing one is named, and the agent's verbs. */
enum {
	F_VERSION,
	F_NODE,
	F_MONO,
	F_EPOCH,
	F_UNTIL,
	F_POD,
	F_ADDR,
	F_SEQ,
	F_REASON,
};

static int check_version(uint64_t v, char *err, size_t errlen)
{
	if (v == METAD_CONTROL_VERSION)
		return 0;
	errbuf_set(err, errlen,
	           "WELCOME: the agent speaks protocol version %" PRIu64
	           ", this service %d (write grants as absolute CLOCK_MONOTONIC times, PING "
	           "answered with PONG); upgrade the agent",
	           v, METAD_CONTROL_VERSION);
	return -EBADMSG;
}

#define MSG_TEXT_MAX(f) (sizeof(((struct metad_control_msg *)0)->f) - 1)

static const struct ctlproto_field fields[] = {
        [F_VERSION] = {"version", CTLPROTO_U64, 0, UINT64_MAX, check_version},
        [F_NODE] = {"node", CTLPROTO_TEXT, 0, MSG_TEXT_MAX(node), NULL},
        [F_MONO] = {"mono_us", CTLPROTO_U64, 0, INT64_MAX, NULL},
        /* epoch 0 is no term's */
        [F_EPOCH] = {"epoch", CTLPROTO_U64, 1, UINT64_MAX, NULL},
        [F_UNTIL] = {"until_us", CTLPROTO_U64, 0, INT64_MAX, NULL},
        [F_POD] = {"pod", CTLPROTO_TEXT, 1, MSG_TEXT_MAX(pod), NULL},
        [F_ADDR] = {"addr", CTLPROTO_TEXT, 1, MSG_TEXT_MAX(addr), NULL},
        [F_SEQ] = {"seq", CTLPROTO_U64, 0, UINT64_MAX, NULL},
        /* informational: may be empty, and is cut to fit */
        [F_REASON] = {"reason", CTLPROTO_REST, 0, CTLPROTO_LINE_MAX, NULL},
};

#define F CTLPROTO_F

static const struct ctlproto_verb verbs[] = {
        {"WELCOME", METAD_CONTROL_WELCOME, F(F_VERSION) | F(F_NODE) | F(F_MONO), 0},
        {"PROMOTE", METAD_CONTROL_PROMOTE, F(F_EPOCH) | F(F_UNTIL), 0},
        {"RENEW", METAD_CONTROL_RENEW, F(F_EPOCH) | F(F_UNTIL), 0},
        {"DEMOTE", METAD_CONTROL_DEMOTE, F(F_EPOCH), F(F_REASON)},
        {"MASTER", METAD_CONTROL_MASTER, F(F_EPOCH) | F(F_POD) | F(F_ADDR), 0},
        {"PING", METAD_CONTROL_PING, F(F_SEQ), 0},
        {"ERROR", METAD_CONTROL_ERROR, 0, F(F_REASON)},
};

static const struct ctlproto_grammar grammar = {fields, ELEMENTSOF(fields), verbs,
                                                ELEMENTSOF(verbs)};

int metad_control_parse_line(const char *line, struct metad_control_msg *ret, char *err,
                             size_t errlen)
{
	struct ctlproto_line l;
	struct metad_control_msg m;

	if (ctlproto_parse(&grammar, line, &l, err, errlen) < 0)
		return -EBADMSG;
	memset(&m, 0, sizeof(m));
	m.verb = (enum metad_control_verb)l.verb->id;
	/* the grammar checked every length and bound */
	m.version = (unsigned)l.u64[F_VERSION];
	m.mono_us = (int64_t)l.u64[F_MONO];
	m.epoch = l.u64[F_EPOCH];
	m.until_us = (int64_t)l.u64[F_UNTIL];
	m.seq = l.u64[F_SEQ];
	if (ctlproto_has(&l, F_NODE))
		str_copy(m.node, sizeof(m.node), l.text[F_NODE]);
	if (ctlproto_has(&l, F_POD))
		str_copy(m.pod, sizeof(m.pod), l.text[F_POD]);
	if (ctlproto_has(&l, F_ADDR))
		str_copy(m.addr, sizeof(m.addr), l.text[F_ADDR]);
	if (ctlproto_has(&l, F_REASON))
		(void)str_copy(m.reason, sizeof(m.reason), l.text[F_REASON]);
	*ret = m;
	return 0;
}

/* ------------------------------------------------------------ connection */

/* Write all of buf within timeout_ms.  Called with c->lock held. */
static int write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	return fd_send_all(fd, buf, len, clock_mono_usec() + timeout_ms * USEC_PER_MSEC);
}

/* Send len bytes (one or more whole lines) on connection gen (0: whichever
 * is up). */
static int send_bytes(struct metad_control *c, uint64_t gen, const char *line, size_t len)
{
	int r;

	pthread_mutex_lock(&c->lock);
	if (c->fd < 0 || (gen && gen != c->conn_gen)) {
		r = -ENOTCONN;
	} else {
		r = write_all(c->fd, line, len, SEND_TIMEOUT_MS);
		if (r < 0)
			/* the reader sees the shut-down socket and reconnects */
			(void)shutdown(c->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Send the line o on connection gen (0: whichever is up). */
static int send_out(struct metad_control *c, uint64_t gen, struct ctlproto_out *o)
{
	int n = ctlproto_out_end(o);

	if (n < 0)
		return n;
	return send_bytes(c, gen, o->buf, (size_t)n);
}

/* A line of its verb alone (STANDBY). */
static int send_verb(struct metad_control *c, uint64_t gen, const char *verb)
{
	struct ctlproto_out o;

	ctlproto_out_begin(&o, verb);
	return send_out(c, gen, &o);
}

/* FAILED epoch=E reason=R: a promotion that did not happen. */
static int send_failed(struct metad_control *c, uint64_t gen, uint64_t epoch, const char *reason)
{
	struct ctlproto_out o;

	ctlproto_out_begin(&o, "FAILED");
	ctlproto_out_u64(&o, "epoch", epoch);
	ctlproto_out_rest(&o, "reason", reason);
	return send_out(c, gen, &o);
}

/* ERROR reason=R: the agent's last line was refused. */
static int send_error(struct metad_control *c, const char *reason)
{
	struct ctlproto_out o;

	ctlproto_out_begin(&o, "ERROR");
	ctlproto_out_rest(&o, "reason", reason);
	return send_out(c, 0, &o);
}

int metad_control_send_failed(struct metad_control *c, uint64_t epoch, const char *reason)
{
	return send_failed(c, 0, epoch, reason);
}

int metad_control_send_standby(struct metad_control *c)
{
	return send_verb(c, 0, "STANDBY");
}

/* The promotion thread: the whole recovery, then READY or FAILED on the
 * connection the PROMOTE came on (none when it has closed since: the agent
 * took that EOF for the end of this service's part, and a new connection
 * starts as standby). */
static void *promotion_main(void *arg)
{
	struct promotion *p = arg;
	struct metad_control *c = p->c;
	struct metad_control_ready ready;
	char reason[512] = "";
	int r;

	/* the grant is absolute: however long this line waited in the
	 * socket, it never lets writes go on past the agent's term */
	r = c->hooks.promote(c->hooks.userdata, p->epoch, p->until, &ready, reason, sizeof(reason));
	if (r < 0) {
		(void)send_failed(c, p->gen, p->epoch, reason[0] ? reason : strerror(-r));
		(void)send_verb(c, p->gen, "STANDBY");
	} else {
		struct ctlproto_out o;

		ctlproto_out_begin(&o, "READY");
		ctlproto_out_u64(&o, "epoch", p->epoch);
		ctlproto_out_u64(&o, "records", ready.records);
		ctlproto_out_u64(&o, "last_seq", ready.last_seq);
		ctlproto_out_u64(&o, "recovery_ms", ready.recovery_ms);
		(void)send_out(c, p->gen, &o);
	}
	__atomic_store_n(&c->promo_epoch, 0, __ATOMIC_RELEASE);
	free(p);
	return NULL;
}

/* Wait for the promotion thread, if any (it is called off first when
 * `cancel` names why). */
static void promotion_join(struct metad_control *c, const char *cancel)
{
	uint64_t e = __atomic_load_n(&c->promo_epoch, __ATOMIC_ACQUIRE);

	if (!c->promo_started)
		return;
	if (cancel && e)
		c->hooks.demote(c->hooks.userdata, e, cancel);
	pthread_join(c->promo_thread, NULL);
	c->promo_started = false;
}

static void promotion_start(struct metad_control *c, const struct metad_control_msg *m)
{
	struct promotion *p = malloc(sizeof(*p));
	uint64_t running = __atomic_load_n(&c->promo_epoch, __ATOMIC_ACQUIRE);
	int r;

	if (running == m->epoch) {
		/* the same promotion again: only its grant is news */
		c->hooks.renew(c->hooks.userdata, m->epoch, m->until_us);
		free(p);
		return;
	}
	promotion_join(c, running ? "replaced by a promotion to a newer epoch" : NULL);
	if (!p) {
		(void)send_failed(c, 0, m->epoch, "out of memory");
		return;
	}
	pthread_mutex_lock(&c->lock);
	*p = (struct promotion){c, m->epoch, m->until_us, c->conn_gen};
	pthread_mutex_unlock(&c->lock);
	__atomic_store_n(&c->promo_epoch, m->epoch, __ATOMIC_RELEASE);
	r = -pthread_create(&c->promo_thread, NULL, promotion_main, p);
	if (r < 0) {
		__atomic_store_n(&c->promo_epoch, 0, __ATOMIC_RELEASE);
		free(p);
		log_error("cannot start the promotion to epoch %" PRIu64 ": %s", m->epoch,
		          strerror(-r));
		(void)send_failed(c, 0, m->epoch, strerror(-r));
		(void)send_verb(c, 0, "STANDBY");
		return;
	}
	c->promo_started = true;
}

/* Sleep ms, or less when woken.  Returns true when asked to stop. */
static bool pause_ms(struct metad_control *c, int ms)
{
	struct pollfd pfd = {.fd = c->wake[0], .events = POLLIN};

	if (poll(&pfd, 1, ms) > 0)
		return true;
	return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

static int connect_agent(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* a unix connect does not wait for the peer's accept() */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static void handle_line(struct metad_control *c, const char *line, bool *welcomed)
{
	struct metad_control_msg m;
	char err[512];

	if (metad_control_parse_line(line, &m, err, sizeof(err)) < 0) {
		log_warning("bad line from the agent: %s; answering ERROR", err);
		(void)send_error(c, err);
		return;
	}
	if (!*welcomed && m.verb != METAD_CONTROL_WELCOME && m.verb != METAD_CONTROL_ERROR) {
		log_warning("agent sent a command before WELCOME; answering ERROR");
		(void)send_error(c, "expected WELCOME");
		return;
	}
	switch (m.verb) {
	case METAD_CONTROL_WELCOME: {
		int64_t skew = clock_mono_usec() - m.mono_us;

		if (skew < -METAD_CONTROL_CLOCK_SKEW_MAX_US ||
		    skew > METAD_CONTROL_CLOCK_SKEW_MAX_US) {
			/* its grants would be times on another clock: never master */
			log_error("the agent on node '%s' reads CLOCK_MONOTONIC %" PRId64
			          " ms away from ours (another time namespace?); staying standby",
			          m.node, skew / 1000);
			char why[128];

			snprintf(why, sizeof(why),
			         "CLOCK_MONOTONIC differs by %" PRId64 " ms; refusing write grants",
			         skew / 1000);
			(void)send_error(c, why);
			return;
		}
		log_info("agent on node '%s' accepted us; standby", m.node);
		*welcomed = true;
		(void)send_verb(c, 0, "STANDBY");
		break;
	}
	case METAD_CONTROL_PROMOTE:
		/* recovery runs on its own thread; this one goes on reading */
		promotion_start(c, &m);
		break;
	case METAD_CONTROL_RENEW:
		c->hooks.renew(c->hooks.userdata, m.epoch, m.until_us);
		break;
	case METAD_CONTROL_DEMOTE:
		c->hooks.demote(c->hooks.userdata, m.epoch, m.reason);
		{
			struct ctlproto_out o;

			ctlproto_out_begin(&o, "DEMOTED");
			ctlproto_out_u64(&o, "epoch", m.epoch);
			(void)send_out(c, 0, &o);
		}
		break;
	case METAD_CONTROL_MASTER:
		c->hooks.master(c->hooks.userdata, m.epoch, m.pod, m.addr);
		break;
	case METAD_CONTROL_PING:
		/* the liveness exchange: answered by this thread, which a stopped
		 * or wedged process does not run */
		{
			struct ctlproto_out o;

			ctlproto_out_begin(&o, "PONG");
			ctlproto_out_u64(&o, "seq", m.seq);
			(void)send_out(c, 0, &o);
		}
		break;
	case METAD_CONTROL_ERROR:
		/* never answered, or two sides could ping-pong errors */
		log_warning("the agent refused our last line: %s", m.reason);
		break;
	}
}

/* Serve one connection until it ends or we are stopped.  Returns whether
 * the agent welcomed us on it. */
static bool serve(struct metad_control *c, int fd)
{
	char buf[METAD_CONTROL_LINE_MAX + 1];
	size_t len = 0;
	bool welcomed = false;
	usec_t welcome_by = clock_mono_usec() + c->welcome_timeout_ms * USEC_PER_MSEC;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN},
		                        {.fd = c->wake[0], .events = POLLIN}};
		int timeout = 1000;
		ssize_t n;
		char *nl;

		if (!welcomed) {
			usec_t left = welcome_by - clock_mono_usec();

			if (left <= 0) {
				log_warning("no WELCOME from the agent within %d ms, reconnecting",
				            c->welcome_timeout_ms);
				return welcomed;
			}
			timeout = (int)((left + 999) / 1000);
		}
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			return welcomed;
		if (pfd[1].revents)
			return welcomed;
		if (!pfd[0].revents)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n == 0) {
			log_warning("the agent closed the control connection, reconnecting");
			return welcomed;
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_warning("control connection: %s, reconnecting", strerror(errno));
			return welcomed;
		}
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = memchr(buf, '\n', len))) {
			size_t l = (size_t)(nl - buf) + 1;

			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			handle_line(c, buf, &welcomed);
			memmove(buf, buf + l, len - l);
			len -= l;
			buf[len] = '\0';
		}
		if (len >= METAD_CONTROL_LINE_MAX) {
			log_warning("line from the agent longer than %d bytes; reconnecting",
			            METAD_CONTROL_LINE_MAX);
			return welcomed;
		}
	}
}

static void *metad_control_main(void *arg)
{
	struct metad_control *c = arg;
	int backoff = BACKOFF_MIN_MS, last_err = 0;
	bool welcomed;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		int fd = connect_agent(c->path);

		if (fd < 0) {
			/* log when the reason changes, not on every attempt */
			if (fd != last_err)
				log_warning(
				        "cannot connect to the agent at '%s': %s; retrying every "
				        "%d ms at most",
				        c->path, strerror(-fd), BACKOFF_MAX_MS);
			last_err = fd;
			if (pause_ms(c, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		last_err = 0;
		log_info("connected to the agent at '%s'", c->path);
		c->hooks.connected(c->hooks.userdata);
		pthread_mutex_lock(&c->lock);
		c->fd = fd;
		c->conn_gen++;
		pthread_mutex_unlock(&c->lock);
		{
			struct ctlproto_out o;

			ctlproto_out_begin(&o, "HELLO");
			ctlproto_out_u64(&o, "version", METAD_CONTROL_VERSION);
			ctlproto_out_text(&o, "pod", c->pod);
			ctlproto_out_text(&o, "uid", c->uid);
			if (c->store) {
				ctlproto_out_text(&o, "store", c->store);
				ctlproto_out_text(&o, "store_node", c->store_node);
			}
			ctlproto_out_i64(&o, "pid", getpid());
			ctlproto_out_i64(&o, "mono_us", clock_mono_usec());
			(void)send_out(c, 0, &o);
		}
		welcomed = serve(c, fd);
		pthread_mutex_lock(&c->lock);
		c->fd = -1;
		close(fd);
		pthread_mutex_unlock(&c->lock);
		{
			uint64_t e = __atomic_load_n(&c->promo_epoch, __ATOMIC_ACQUIRE);

			/* the agent takes EOF for this service's end: a promotion
			 * it asked for on that connection must not go on */
			if (e)
				c->hooks.demote(c->hooks.userdata, e,
				                "the control connection closed during recovery");
		}
		/* an agent that closes without a WELCOME (it refused us: another
		 * service is connected, a uid it does not allow) is asked again
		 * less and less often; one that welcomed us, at once */
		if (welcomed)
			backoff = BACKOFF_MIN_MS;
		if (pause_ms(c, welcomed ? BACKOFF_MIN_MS : backoff))
			break;
		if (!welcomed)
			backoff = backoff * 2 > BACKOFF_REFUSED_MAX_MS ? BACKOFF_REFUSED_MAX_MS
			                                               : backoff * 2;
	}
	return NULL;
}

/* Values of HELLO are single tokens (no space, no control character). */
static char *token_dup(const char *s)
{
	char *d = strdup(s && *s ? s : "-");

	if (d)
		for (char *p = d; *p; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				*p = '_';
	return d;
}

int metad_control_start(const struct metad_control_options *opts,
                        const struct metad_control_hooks *hooks, struct metad_control **ret)
{
	struct metad_control *c = calloc(1, sizeof(*c));
	int r = -ENOMEM;

	if (!c)
		goto fail;
	c->fd = -1;
	c->wake[0] = c->wake[1] = -1;
	pthread_mutex_init(&c->lock, NULL);
	c->hooks = *hooks;
	c->welcome_timeout_ms = opts->welcome_timeout_ms > 0 ? opts->welcome_timeout_ms : 5000;
	c->path = strdup(opts->path);
	c->pod = token_dup(opts->pod_name);
	c->uid = token_dup(opts->pod_uid);
	c->store = opts->store ? token_dup(opts->store) : NULL;
	c->store_node = opts->store ? token_dup(opts->store_node) : NULL;
	if (!c->path || !c->pod || !c->uid || (opts->store && (!c->store || !c->store_node)))
		goto fail;
	if (pipe2(c->wake, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	r = -pthread_create(&c->thread, NULL, metad_control_main, c);
	if (r < 0)
		goto fail;
	c->started = true;
	*ret = c;
	return 0;
fail:
	metad_control_free(c);
	return r;
}

void metad_control_stop(struct metad_control *c)
{
	if (!c || !c->started)
		return;
	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	(void)!write(c->wake[1], "x", 1);
	pthread_join(c->thread, NULL);
	c->started = false;
	promotion_join(c, "the service is shutting down");
}

struct metad_control *metad_control_free(struct metad_control *c)
{
	if (!c)
		return NULL;
	metad_control_stop(c);
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c->pod);
	free(c->uid);
	free(c->store);
	free(c->store_node);
	free(c);
	return NULL;
}
