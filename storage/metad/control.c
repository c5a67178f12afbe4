/* control: the control-socket client of kubefence-metad (see control.h and
 * docs/control-protocol.md).  One thread owns the connection's reads; writes
 * are serialised by a mutex so that the thread's answers and reports from
 * the server's threads never interleave within a line. */
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
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  2000
#define SEND_TIMEOUT_MS 1000

struct metad_control {
	char *path, *pod, *uid;
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

static int parse_u64_field(const char *v, uint64_t *ret)
{
	char *end;
	unsigned long long x;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = x;
	return 0;
}

int metad_control_parse_line(const char *line, struct metad_control_msg *ret, char *err,
                             size_t errlen)
{
	struct metad_control_msg m;
	char buf[METAD_CONTROL_LINE_MAX + 1];
	char *verb, *p, *save = NULL;
	bool have_epoch = false, have_valid = false, have_pod = false, have_addr = false,
	     have_version = false, have_node = false, have_mono = false, have_seq = false;
	int r = -EBADMSG;

	memset(&m, 0, sizeof(m));
	if (strlen(line) > METAD_CONTROL_LINE_MAX) {
		errbuf_set(err, errlen, "line longer than %d bytes", METAD_CONTROL_LINE_MAX);
		goto out;
	}
	strcpy(buf, line);
	/* reason= takes the rest of the line, spaces included */
	p = strstr(buf, " reason=");
	if (p) {
		*p = '\0';
		str_copy(m.reason, sizeof(m.reason), p + strlen(" reason="));
	}
	verb = strtok_r(buf, " ", &save);
	if (!verb) {
		errbuf_set(err, errlen, "empty line");
		goto out;
	}
	if (strcmp(verb, "WELCOME") == 0)
		m.verb = METAD_CONTROL_WELCOME;
	else if (strcmp(verb, "PROMOTE") == 0)
		m.verb = METAD_CONTROL_PROMOTE;
	else if (strcmp(verb, "RENEW") == 0)
		m.verb = METAD_CONTROL_RENEW;
	else if (strcmp(verb, "DEMOTE") == 0)
		m.verb = METAD_CONTROL_DEMOTE;
	else if (strcmp(verb, "MASTER") == 0)
		m.verb = METAD_CONTROL_MASTER;
	else if (strcmp(verb, "PING") == 0)
		m.verb = METAD_CONTROL_PING;
	else if (strcmp(verb, "ERROR") == 0)
		m.verb = METAD_CONTROL_ERROR;
	else {
		errbuf_set(err, errlen, "unknown verb '%.64s'", verb);
		goto out;
	}
	if (p && m.verb != METAD_CONTROL_DEMOTE && m.verb != METAD_CONTROL_ERROR) {
		errbuf_set(err, errlen, "%s takes no reason field", verb);
		goto out;
	}
	while ((p = strtok_r(NULL, " ", &save))) {
		char *eq = strchr(p, '=');
		const char *v;
		uint64_t x;

		if (!eq || eq == p) {
			errbuf_set(err, errlen, "%s: field '%.64s' is not key=value", verb, p);
			goto out;
		}
		*eq = '\0';
		v = eq + 1;
		if (strcmp(p, "seq") == 0 && m.verb == METAD_CONTROL_PING) {
			if (parse_u64_field(v, &m.seq) < 0) {
				errbuf_set(err, errlen, "%s: bad seq '%.64s'", verb, v);
				goto out;
			}
			have_seq = true;
		} else if (strcmp(p, "epoch") == 0 && m.verb != METAD_CONTROL_WELCOME &&
		           m.verb != METAD_CONTROL_ERROR && m.verb != METAD_CONTROL_PING) {
			if (parse_u64_field(v, &m.epoch) < 0 || m.epoch == 0) {
				errbuf_set(err, errlen, "%s: bad epoch '%.64s'", verb, v);
				goto out;
			}
			have_epoch = true;
		} else if (strcmp(p, "until_us") == 0 &&
		           (m.verb == METAD_CONTROL_PROMOTE || m.verb == METAD_CONTROL_RENEW)) {
			if (parse_u64_field(v, &x) < 0 || x > INT64_MAX) {
				errbuf_set(err, errlen, "%s: bad until_us '%.64s'", verb, v);
				goto out;
			}
			m.until_us = (int64_t)x;
			have_valid = true;
		} else if (strcmp(p, "mono_us") == 0 && m.verb == METAD_CONTROL_WELCOME) {
			if (parse_u64_field(v, &x) < 0 || x > INT64_MAX) {
				errbuf_set(err, errlen, "%s: bad mono_us '%.64s'", verb, v);
				goto out;
			}
			m.mono_us = (int64_t)x;
			have_mono = true;
		} else if (strcmp(p, "version") == 0 && m.verb == METAD_CONTROL_WELCOME) {
			if (parse_u64_field(v, &x) < 0 || x > 1000) {
				errbuf_set(err, errlen, "%s: bad version '%.64s'", verb, v);
				goto out;
			}
			m.version = (unsigned)x;
			have_version = true;
		} else if (strcmp(p, "node") == 0 && m.verb == METAD_CONTROL_WELCOME) {
			str_copy(m.node, sizeof(m.node), v);
			have_node = true;
		} else if (strcmp(p, "pod") == 0 && m.verb == METAD_CONTROL_MASTER) {
			str_copy(m.pod, sizeof(m.pod), v);
			have_pod = *v != '\0';
		} else if (strcmp(p, "addr") == 0 && m.verb == METAD_CONTROL_MASTER) {
			str_copy(m.addr, sizeof(m.addr), v);
			have_addr = *v != '\0';
		} else {
			errbuf_set(err, errlen, "%s: unknown field '%.64s'", verb, p);
			goto out;
		}
	}
	switch (m.verb) {
	case METAD_CONTROL_WELCOME:
		if (have_version && m.version != METAD_CONTROL_VERSION) {
			errbuf_set(err, errlen,
			           "WELCOME: the agent speaks protocol version %u, this service %d "
			           "(write grants as absolute CLOCK_MONOTONIC times, PING answered "
			           "with PONG); upgrade the agent",
			           m.version, METAD_CONTROL_VERSION);
			goto out;
		}
		if (!have_version || !have_node || !have_mono) {
			errbuf_set(err, errlen, "WELCOME needs version=%d, node= and mono_us=",
			           METAD_CONTROL_VERSION);
			goto out;
		}
		break;
	case METAD_CONTROL_PROMOTE:
	case METAD_CONTROL_RENEW:
		if (!have_epoch || !have_valid) {
			errbuf_set(err, errlen, "%s needs epoch= and until_us=", verb);
			goto out;
		}
		break;
	case METAD_CONTROL_DEMOTE:
		if (!have_epoch) {
			errbuf_set(err, errlen, "DEMOTE needs epoch=");
			goto out;
		}
		break;
	case METAD_CONTROL_MASTER:
		if (!have_epoch || !have_pod || !have_addr) {
			errbuf_set(err, errlen, "MASTER needs epoch=, pod= and addr=");
			goto out;
		}
		break;
	case METAD_CONTROL_PING:
		if (!have_seq) {
			errbuf_set(err, errlen, "PING needs seq=");
			goto out;
		}
		break;
	case METAD_CONTROL_ERROR:
		break;
	}
	*ret = m;
	r = 0;
out:
	return r;
}

/* ------------------------------------------------------------ connection */

/* Write all of buf within timeout_ms.  Called with c->lock held. */
static int write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	return fd_send_all(fd, buf, len, clock_mono_usec() + timeout_ms * USEC_PER_MSEC);
}

/* Send a line on connection gen (0: whichever is up). */
static int control_vsend(struct metad_control *c, uint64_t gen, const char *fmt, va_list ap)
{
	char line[METAD_CONTROL_LINE_MAX + 2];
	int n, r;

	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n > METAD_CONTROL_LINE_MAX - 1)
		n = METAD_CONTROL_LINE_MAX - 1;
	line[n++] = '\n';
	pthread_mutex_lock(&c->lock);
	if (c->fd < 0 || (gen && gen != c->conn_gen)) {
		r = -ENOTCONN;
	} else {
		r = write_all(c->fd, line, (size_t)n, SEND_TIMEOUT_MS);
		if (r < 0)
			/* the reader sees the shut-down socket and reconnects */
			(void)shutdown(c->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int metad_control_send(struct metad_control *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = control_vsend(c, 0, fmt, ap);
	va_end(ap);
	return r;
}

static int __attribute__((format(printf, 3, 4)))
send_on(struct metad_control *c, uint64_t gen, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = control_vsend(c, gen, fmt, ap);
	va_end(ap);
	return r;
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
		(void)send_on(c, p->gen, "FAILED epoch=%" PRIu64 " reason=%s", p->epoch,
		              reason[0] ? reason : strerror(-r));
		(void)send_on(c, p->gen, "STANDBY");
	} else {
		(void)send_on(c, p->gen,
		              "READY epoch=%" PRIu64 " records=%" PRIu64 " last_seq=%" PRIu64
		              " recovery_ms=%" PRIu64,
		              p->epoch, ready.records, ready.last_seq, ready.recovery_ms);
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
		(void)metad_control_send(c, "FAILED epoch=%" PRIu64 " reason=out of memory",
		                         m->epoch);
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
		(void)metad_control_send(c, "FAILED epoch=%" PRIu64 " reason=%s", m->epoch,
		                         strerror(-r));
		(void)metad_control_send(c, "STANDBY");
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
		(void)metad_control_send(c, "ERROR reason=%s", err);
		return;
	}
	if (!*welcomed && m.verb != METAD_CONTROL_WELCOME && m.verb != METAD_CONTROL_ERROR) {
		log_warning("agent sent a command before WELCOME; answering ERROR");
		(void)metad_control_send(c, "ERROR reason=expected WELCOME");
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
			(void)metad_control_send(c,
			                         "ERROR reason=CLOCK_MONOTONIC differs by %" PRId64
			                         " ms; refusing write grants",
			                         skew / 1000);
			return;
		}
		log_info("agent on node '%s' accepted us; standby", m.node);
		*welcomed = true;
		(void)metad_control_send(c, "STANDBY");
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
		(void)metad_control_send(c, "DEMOTED epoch=%" PRIu64, m.epoch);
		break;
	case METAD_CONTROL_MASTER:
		c->hooks.master(c->hooks.userdata, m.epoch, m.pod, m.addr);
		break;
	case METAD_CONTROL_PING:
		/* the liveness exchange: answered by this thread, which a stopped
		 * or wedged process does not run */
		(void)metad_control_send(c, "PONG seq=%" PRIu64, m.seq);
		break;
	case METAD_CONTROL_ERROR:
		/* never answered, or two sides could ping-pong errors */
		log_warning("the agent refused our last line: %s", m.reason);
		break;
	}
}

/* Serve one connection until it ends or we are stopped. */
static void serve(struct metad_control *c, int fd)
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
				return;
			}
			timeout = (int)((left + 999) / 1000);
		}
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			return;
		if (pfd[1].revents)
			return;
		if (!pfd[0].revents)
			continue;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n == 0) {
			log_warning("the agent closed the control connection, reconnecting");
			return;
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_warning("control connection: %s, reconnecting", strerror(errno));
			return;
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
			return;
		}
	}
}

static void *metad_control_main(void *arg)
{
	struct metad_control *c = arg;
	int backoff = BACKOFF_MIN_MS, last_err = 0;

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
		backoff = BACKOFF_MIN_MS;
		log_info("connected to the agent at '%s'", c->path);
		c->hooks.connected(c->hooks.userdata);
		pthread_mutex_lock(&c->lock);
		c->fd = fd;
		c->conn_gen++;
		pthread_mutex_unlock(&c->lock);
		(void)metad_control_send(c,
		                         "HELLO version=%d pod=%s uid=%s pid=%d mono_us=%" PRId64,
		                         METAD_CONTROL_VERSION, c->pod, c->uid, (int)getpid(),
		                         (int64_t)clock_mono_usec());
		serve(c, fd);
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
		if (pause_ms(c, BACKOFF_MIN_MS))
			break;
	}
	return NULL;
}

/* Values of HELLO are single tokens. */
static char *token_dup(const char *s)
{
	char *d = strdup(s && *s ? s : "-");

	if (d)
		for (char *p = d; *p; p++)
			if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
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
	if (!c->path || !c->pod || !c->uid)
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
	free(c);
	return NULL;
}
