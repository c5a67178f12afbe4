/* failsafe: the agents' direct channel (see failsafe.h, docs/failsafe.md).
 *
 * Locking: `mu` protects the round in progress (round_active, round) and
 * the replay cache; the judge is called without it held.  The socket is
 * shared: the listener thread reads it, and both it and the election
 * thread's round send on it (sendto on a datagram socket is atomic). */
#include "config.h"

#include "nodeagent/failsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/http.h"
#include "nodeagent/metrics.h"

/* ------------------------------------------------------------------ conf */

static bool port_zero(const struct sockaddr_storage *ss)
{
	return (ss->ss_family == AF_INET && ((const struct sockaddr_in *)ss)->sin_port == 0) ||
	       (ss->ss_family == AF_INET6 && ((const struct sockaddr_in6 *)ss)->sin6_port == 0);
}

static int validate_listen(const union conf_value *v, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (v->str[0] == '\0')
		return 0;
	r = http_parse_listen(v->str, &ss, &len, err, errlen);
	if (r < 0)
		return r;
	if (port_zero(&ss)) {
		errbuf_set(err, errlen,
		           "'%s': port 0: the peers must know the port; give one in "
		           "1..65535",
		           v->str);
		return -EINVAL;
	}
	return 0;
}

static int validate_peers(const union conf_value *v, char *err, size_t errlen)
{
	struct failsafe_peer p[FAILSAFE_PEERS_MAX + 1];
	size_t n;

	/* self "" skips nothing: the whole list must parse */
	return failsafe_parse_peers(v->strv, "", p, ELEMENTSOF(p), &n, err, errlen);
}

#define F(field) offsetof(struct failsafe_conf, field)

const struct conf_key failsafe_conf_keys[] = {
        {.name = "failsafe.enabled",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(enabled),
         .help = "Failsafe mode (docs/failsafe.md), for a store without SCSI-3 PR: while the "
                 "API server does not answer its renewals, a leader keeps its term only as "
                 "long as every agent of failsafe.peers promised, over an authenticated UDP "
                 "exchange, not to take the Lease meanwhile; an agent promises only while it "
                 "cannot reach the API server either, and keeps its promise even if the API "
                 "comes back to it first. Off by default: it needs stable peer addresses "
                 "(hostNetwork or a hostPort), a UDP port and a key in a Secret. Where "
                 "agent.api_outage = ride-through applies (the service's "
                 "store on a scsi-pr LUN), that applies instead. Needs failsafe.listen, "
                 "failsafe.peers and failsafe.key_file, and lease timings under which a round "
                 "can extend the term before it lapses (docs/failsafe.md: with T = "
                 "min(kube.request_timeout_ms, renew_deadline/3), round = min(retry, "
                 "renew_deadline/4), margin = (duration - renew_deadline)/2: T + retry/2 + "
                 "round + max(retry, round + margin) < renew_deadline)."},
        {.name = "failsafe.listen",
         .type = CONF_STRING,
         .def = "",
         .offset = F(listen),
         .validate = validate_listen,
         .help = "This agent's UDP address for the failsafe exchange, as http.listen takes it "
                 "(`IPV4:PORT`, `[IPV6]:PORT`, `:PORT`); the address the other agents list "
                 "for it in failsafe.peers must reach it."},
        {.name = "failsafe.peers",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(peers),
         .validate = validate_peers,
         .help = "Every candidate agent of the Lease as `NAME=HOST:PORT` (NAME its "
                 "agent.identity, HOST:PORT its failsafe.listen, a numeric address), at most "
                 "16: the list must name every node that runs a candidate agent, this one "
                 "included (an agent whose identity is not listed refuses to start); each "
                 "agent skips its own entry, so one list serves every node. A node that joins "
                 "must be added to every agent's list, and every agent restarted (the key is "
                 "not live), before it runs an agent. The addresses must stay the same across "
                 "restarts (hostNetwork, or node IPs with a hostPort): a peer whose address "
                 "went stale is silent, and the term ends at its deadline as without "
                 "failsafe."},
        {.name = "failsafe.key_file",
         .type = CONF_STRING,
         .def = "",
         .offset = F(key_file),
         .help = "File holding the secret every agent of failsafe.peers shares (e.g. a "
                 "Secret's key mounted read-only): its bytes as they are, 32 to 1024 of "
                 "them. Every datagram, both ways, carries an HMAC-SHA256 made with it. Read "
                 "at start, not by --config-test."},
};

#undef F

const size_t failsafe_conf_n_keys = ELEMENTSOF(failsafe_conf_keys);

int failsafe_parse_peer(const char *item, struct failsafe_peer *ret, char *err, size_t errlen)
{
	const char *eq = strchr(item, '=');
	struct failsafe_peer p = {0};
	char why[256];
	size_t nl;

	if (!eq || eq == item) {
		errbuf_set(err, errlen, "'%s' is not NAME=HOST:PORT", item);
		return -EINVAL;
	}
	nl = (size_t)(eq - item);
	if (nl >= sizeof(p.name)) {
		errbuf_set(err, errlen, "'%.*s...': name longer than %d bytes", 32, item,
		           FSPROTO_NAME_MAX - 1);
		return -EINVAL;
	}
	memcpy(p.name, item, nl);
	p.name[nl] = '\0';
	for (const char *c = p.name; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == '=') {
			errbuf_set(err, errlen, "'%s': the name must be one printable token", item);
			return -EINVAL;
		}
	if (http_parse_listen(eq + 1, &p.addr, &p.addrlen, why, sizeof(why)) < 0) {
		errbuf_set(err, errlen, "'%s': %s", item, why);
		return -EINVAL;
	}
	if (port_zero(&p.addr)) {
		errbuf_set(err, errlen, "'%s': port 0", item);
		return -EINVAL;
	}
	if (str_copy(p.addr_text, sizeof(p.addr_text), eq + 1) < 0) {
		errbuf_set(err, errlen, "'%s': address too long", item);
		return -EINVAL;
	}
	*ret = p;
	return 0;
}

int failsafe_parse_peers(char *const *list, const char *self, struct failsafe_peer *out, size_t max,
                         size_t *ret_n, char *err, size_t errlen)
{
	size_t n = 0;
	bool self_listed = false;

	for (char *const *it = list; it && *it; it++) {
		struct failsafe_peer p;

		if (failsafe_parse_peer(*it, &p, err, errlen) < 0)
			return -EINVAL;
		for (char *const *q = list; q < it; q++)
			if (strncmp(*q, p.name, strlen(p.name)) == 0 &&
			    (*q)[strlen(p.name)] == '=') {
				errbuf_set(err, errlen, "'%s' listed twice", p.name);
				return -EINVAL;
			}
		if (strcmp(p.name, self) == 0) {
			self_listed = true;
			continue;
		}
		if (n >= max || n >= FAILSAFE_PEERS_MAX) {
			errbuf_set(err, errlen, "more than %d peers", FAILSAFE_PEERS_MAX);
			return -EINVAL;
		}
		out[n++] = p;
	}
	/* The list must name every candidate, this one included: an agent
	 * that is not listed is asked for no promise by the others, so it
	 * could take the Lease while a leader rides on their promises. */
	if (self[0] && !self_listed) {
		char names[512] = "";
		size_t used = 0;

		for (char *const *it = list; it && *it && used + 1 < sizeof(names); it++) {
			const char *eq = strchr(*it, '=');
			int w = snprintf(names + used, sizeof(names) - used, "%s%.*s",
			                 used ? ", " : "", (int)(eq - *it), *it);

			if (w < 0)
				break;
			used += (size_t)w < sizeof(names) - used ? (size_t)w
			                                         : sizeof(names) - used - 1;
		}
		errbuf_set(err, errlen,
		           "this agent's identity '%s' is not in failsafe.peers (%s): the list "
		           "must name every node that runs a candidate agent, this one included",
		           self, names[0] ? names : "empty");
		return -EINVAL;
	}
	if (self[0] && n == 0) {
		errbuf_set(err, errlen,
		           "no agent besides '%s': the failsafe needs every other candidate "
		           "listed",
		           self);
		return -EINVAL;
	}
	*ret_n = n;
	return 0;
}

int failsafe_read_key(const char *path, uint8_t *key, size_t max, size_t *ret_len, char *err,
                      size_t errlen)
{
	size_t got = 0;
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "'%s': %s", path, strerror(errno));
		return r;
	}
	for (;;) {
		uint8_t b[256];

		n = read(fd, b, sizeof(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			errbuf_set(err, errlen, "'%s': %s", path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (got + (size_t)n > max || got + (size_t)n > FSPROTO_KEY_MAX) {
			r = -EINVAL;
			errbuf_set(err, errlen, "'%s': longer than %d bytes", path,
			           FSPROTO_KEY_MAX);
			OPENSSL_cleanse(b, sizeof(b));
			break;
		}
		memcpy(key + got, b, (size_t)n);
		got += (size_t)n;
		OPENSSL_cleanse(b, sizeof(b));
	}
	close(fd);
	if (r == 0 && got < FSPROTO_KEY_MIN) {
		r = -EINVAL;
		errbuf_set(err, errlen, "'%s': %zu bytes, at least %d needed", path, got,
		           FSPROTO_KEY_MIN);
	}
	if (r < 0) {
		OPENSSL_cleanse(key, max);
		return r;
	}
	*ret_len = got;
	return 0;
}

usec_t failsafe_margin(usec_t duration, usec_t renew_deadline)
{
	return duration > renew_deadline ? (duration - renew_deadline) / 2 : 0;
}

const char *failsafe_decide(const struct failsafe_view *v, const struct fsproto_msg *req,
                            usec_t received, usec_t *ret_until)
{
	usec_t grant = (usec_t)req->grant_ms * USEC_PER_MSEC;

	if (v->leading)
		return "holder";
	if (!v->observed || !v->holder || !v->holder[0])
		return "no-holder-seen";
	if (strcmp(req->from, v->holder) != 0)
		return "not-the-holder";
	if (req->epoch != v->epoch)
		return "other-epoch";
	if (req->grant_ms < 0 || grant > v->renew_deadline)
		return "grant-too-long";
	if (received < v->api_ok_at + 2 * v->retry)
		return "api-reachable";
	*ret_until = received + grant + v->margin;
	return NULL;
}

usec_t failsafe_extension(usec_t t0, usec_t b0, usec_t now, usec_t bnow, usec_t grant,
                          usec_t margin, usec_t valid_until)
{
	usec_t slip, until;

	if (grant <= margin || now >= valid_until)
		return 0;
	slip = bnow - b0;
	slip = slip > now - t0 ? slip - (now - t0) : 0;
	until = t0 + grant - margin - slip;
	if (until <= valid_until)
		return 0;
	return until;
}

/* ------------------------------------------------------------- the round */

int failsafe_round_init(struct failsafe_round *r, const char *self,
                        const struct failsafe_peer *peers, size_t n, int64_t epoch)
{
	int k;

	memset(r, 0, sizeof(*r));
	if (n > FAILSAFE_PEERS_MAX)
		return -EINVAL;
	r->self = self;
	r->peers = peers;
	r->n = n;
	r->epoch = epoch;
	k = fsproto_nonce(r->nonce);
	return k;
}

int failsafe_round_take(struct failsafe_round *r, const struct fsproto_msg *m, char *err,
                        size_t errlen)
{
	size_t i;

	if (m->kind != FSPROTO_ANS) {
		errbuf_set(err, errlen, "not an answer");
		return -EINVAL;
	}
	for (i = 0; i < r->n; i++)
		if (strcmp(r->peers[i].name, m->from) == 0)
			break;
	if (i == r->n) {
		errbuf_set(err, errlen, "an answer from '%s', who is no peer", m->from);
		return -ENOENT;
	}
	if (strcmp(m->to, r->self) != 0) {
		errbuf_set(err, errlen, "an answer of '%s' addressed to '%s', not to us", m->from,
		           m->to);
		return -EXDEV;
	}
	if (strcmp(m->nonce, r->nonce) != 0) {
		errbuf_set(
		        err, errlen,
		        "an answer of '%s' to another request (nonce %.8s...): replayed, or late",
		        m->from, m->nonce);
		return -ESTALE;
	}
	if (m->epoch != r->epoch) {
		errbuf_set(err, errlen, "an answer of '%s' for epoch %" PRId64 ", asked %" PRId64,
		           m->from, m->epoch, r->epoch);
		return -EPROTO;
	}
	if (r->answered[i])
		return 0;
	r->answered[i] = true;
	r->verdict[i] = m->verdict;
	str_copy(r->reason[i], sizeof(r->reason[i]), m->reason);
	if (m->verdict == FSPROTO_PROMISE)
		r->n_promised++;
	else
		r->n_refused++;
	return 0;
}

const struct failsafe_seen *failsafe_cache_find(const struct failsafe_cache *c, const char *from,
                                                const char *nonce)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].nonce, nonce) == 0 && strcmp(c->e[i].from, from) == 0)
			return &c->e[i];
	return NULL;
}

void failsafe_cache_add(struct failsafe_cache *c, const struct failsafe_seen *s)
{
	c->e[c->next] = *s;
	c->next = (c->next + 1) % FAILSAFE_SEEN_MAX;
	if (c->n < FAILSAFE_SEEN_MAX)
		c->n++;
}

/* ---------------------------------------------------------- the endpoint */

/* A log line per kind of dropped datagram at most every 10 s, saying how
 * many were dropped meanwhile. */
enum drop_kind { DROP_MALFORMED, DROP_MAC, DROP_SENDER, DROP_ANSWER, DROP_KINDS };

struct failsafe {
	char self[FSPROTO_NAME_MAX];
	char lease[FSPROTO_LEASE_MAX];
	struct failsafe_peer peers[FAILSAFE_PEERS_MAX];
	size_t n_peers;
	uint8_t key[FSPROTO_KEY_MAX];
	size_t keylen;
	struct metrics *metrics;
	int fd, stop_fd;
	uint16_t port;

	failsafe_judge_fn judge;
	void *judge_ud;

	pthread_t thread;
	bool started;

	pthread_mutex_t mu;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; an answer arrived */
	bool round_active;
	struct failsafe_round round;
	struct failsafe_cache cache;
	usec_t drop_logged[DROP_KINDS];
	uint64_t drop_quiet[DROP_KINDS];
};

static void drop(struct failsafe *fs, enum drop_kind k, const char *src, const char *why)
{
	static const char *const what[] = {"malformed", "bad mac", "unknown sender",
	                                   "unexpected answer"};
	usec_t now = clock_mono_usec();
	uint64_t quiet;

	pthread_mutex_lock(&fs->mu);
	if (fs->drop_logged[k] && now - fs->drop_logged[k] < 10 * USEC_PER_SEC) {
		fs->drop_quiet[k]++;
		pthread_mutex_unlock(&fs->mu);
		log_debug("failsafe: dropped a datagram from %s (%s): %s", src, what[k], why);
		return;
	}
	quiet = fs->drop_quiet[k];
	fs->drop_quiet[k] = 0;
	fs->drop_logged[k] = now;
	pthread_mutex_unlock(&fs->mu);
	if (quiet)
		log_warning("failsafe: dropped a datagram from %s (%s): %s (and %" PRIu64
		            " more of this kind in the last 10 s)",
		            src, what[k], why, quiet);
	else
		log_warning("failsafe: dropped a datagram from %s (%s): %s", src, what[k], why);
}

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[64] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}

static const struct failsafe_peer *find_peer(const struct failsafe *fs, const char *name)
{
	for (size_t i = 0; i < fs->n_peers; i++)
		if (strcmp(fs->peers[i].name, name) == 0)
			return &fs->peers[i];
	return NULL;
}

static void send_to(struct failsafe *fs, const struct failsafe_peer *p, const char *buf, int n)
{
	if (sendto(fs->fd, buf, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&p->addr,
	           p->addrlen) < 0)
		log_debug("failsafe: sending to '%s' (%s) failed: %s", p->name, p->addr_text,
		          strerror(errno));
}

static void answer(struct failsafe *fs, const struct fsproto_msg *req, usec_t received)
{
	const struct failsafe_peer *p = find_peer(fs, req->from);
	struct fsproto_msg ans = {.kind = FSPROTO_ANS, .epoch = req->epoch};
	const struct failsafe_seen *seen;
	struct failsafe_seen rec = {0};
	char buf[FSPROTO_DGRAM_MAX + 1];
	bool again = false;
	int n;

	str_copy(ans.from, sizeof(ans.from), fs->self);
	str_copy(ans.to, sizeof(ans.to), req->from);
	str_copy(ans.nonce, sizeof(ans.nonce), req->nonce);
	pthread_mutex_lock(&fs->mu);
	seen = failsafe_cache_find(&fs->cache, req->from, req->nonce);
	if (seen && seen->epoch == req->epoch) {
		ans.verdict = seen->verdict;
		str_copy(ans.reason, sizeof(ans.reason), seen->reason);
		again = true;
	}
	pthread_mutex_unlock(&fs->mu);
	if (!again) {
		if (strcmp(req->lease, fs->lease) != 0) {
			ans.verdict = FSPROTO_REFUSE;
			str_copy(ans.reason, sizeof(ans.reason), "other-lease");
		} else if (!fs->judge) {
			ans.verdict = FSPROTO_REFUSE;
			str_copy(ans.reason, sizeof(ans.reason), "not-ready");
		} else {
			ans.verdict = fs->judge(fs->judge_ud, req, received, ans.reason,
			                        sizeof(ans.reason));
		}
		if (!ans.reason[0])
			str_copy(ans.reason, sizeof(ans.reason), "none");
		str_copy(rec.from, sizeof(rec.from), req->from);
		str_copy(rec.nonce, sizeof(rec.nonce), req->nonce);
		rec.epoch = req->epoch;
		rec.verdict = ans.verdict;
		str_copy(rec.reason, sizeof(rec.reason), ans.reason);
		pthread_mutex_lock(&fs->mu);
		failsafe_cache_add(&fs->cache, &rec);
		pthread_mutex_unlock(&fs->mu);
		if (ans.verdict == FSPROTO_PROMISE)
			metrics_failsafe_promise(fs->metrics);
	}
	n = fsproto_format(&ans, fs->key, fs->keylen, buf, sizeof(buf));
	if (n < 0) {
		log_warning("failsafe: cannot write an answer to '%s': %s", req->from,
		            strerror(-n));
		return;
	}
	log_debug("failsafe: %s '%s' epoch %" PRId64 " (%s)%s", fsproto_verdict_name(ans.verdict),
	          req->from, req->epoch, ans.reason, again ? ", again" : "");
	send_to(fs, p, buf, n);
}

static void on_datagram(struct failsafe *fs, const char *buf, size_t len,
                        const struct sockaddr_storage *src, usec_t received)
{
	struct fsproto_msg m;
	char err[640] = "", from[128];
	int r;

	addr_text(src, from, sizeof(from));
	r = fsproto_parse(buf, len, fs->key, fs->keylen, &m, err, sizeof(err));
	if (r == -EPERM) {
		drop(fs, DROP_MAC, from, err);
		return;
	}
	if (r < 0) {
		drop(fs, DROP_MALFORMED, from, err);
		return;
	}
	if (!find_peer(fs, m.from)) {
		snprintf(err, sizeof(err), "'%s' is not in failsafe.peers", m.from);
		drop(fs, DROP_SENDER, from, err);
		return;
	}
	if (m.kind == FSPROTO_REQ) {
		answer(fs, &m, received);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	if (!fs->round_active) {
		/* an answer to a copy of a request, after its round ended (or a
		 * replay): nothing waits for it, and it is no news */
		pthread_mutex_unlock(&fs->mu);
		log_debug("failsafe: an answer of '%s' from %s while no round runs: ignored",
		          m.from, from);
		return;
	}
	r = failsafe_round_take(&fs->round, &m, err, sizeof(err));
	pthread_cond_broadcast(&fs->cond);
	pthread_mutex_unlock(&fs->mu);
	if (r < 0)
		drop(fs, DROP_ANSWER, from, err);
}

static void *listener_main(void *arg)
{
	struct failsafe *fs = arg;
	char buf[FSPROTO_DGRAM_MAX + 2];

	for (;;) {
		struct pollfd pfd[2] = {{.fd = fs->fd, .events = POLLIN},
		                        {.fd = fs->stop_fd, .events = POLLIN}};
		struct sockaddr_storage src;
		socklen_t srclen = sizeof(src);
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("failsafe: poll: %s; the listener stops", strerror(errno));
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		if (!(pfd[0].revents & POLLIN))
			continue;
		n = recvfrom(fs->fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&src,
		             &srclen);
		if (n < 0)
			continue;
		on_datagram(fs, buf, (size_t)n, &src, clock_mono_usec());
	}
}

int failsafe_new(const struct failsafe_options *o, struct failsafe **ret, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	pthread_condattr_t ca;
	struct failsafe *fs;
	int r;

	if (o->n_peers > FAILSAFE_PEERS_MAX || o->keylen < FSPROTO_KEY_MIN ||
	    o->keylen > FSPROTO_KEY_MAX) {
		errbuf_set(err, errlen, "bad options");
		return -EINVAL;
	}
	r = http_parse_listen(o->listen, &ss, &sslen, err, errlen);
	if (r < 0)
		return r;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->fd = fs->stop_fd = -1;
	str_copy(fs->self, sizeof(fs->self), o->self);
	str_copy(fs->lease, sizeof(fs->lease), o->lease);
	memcpy(fs->peers, o->peers, o->n_peers * sizeof(*o->peers));
	fs->n_peers = o->n_peers;
	memcpy(fs->key, o->key, o->keylen);
	fs->keylen = o->keylen;
	fs->metrics = o->metrics;
	pthread_mutex_init(&fs->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->cond, &ca);
	pthread_condattr_destroy(&ca);
	fs->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	fs->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->fd < 0 || fs->stop_fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	if (bind(fs->fd, (struct sockaddr *)&ss, sslen) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "bind '%s': %s", o->listen, strerror(errno));
		goto fail;
	}
	sslen = sizeof(ss);
	if (getsockname(fs->fd, (struct sockaddr *)&ss, &sslen) == 0)
		fs->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                          : ((struct sockaddr_in *)&ss)->sin_port);
	metrics_set_failsafe_active(fs->metrics, false);
	*ret = fs;
	return 0;
fail:
	failsafe_free(fs);
	return r;
}

void failsafe_set_judge(struct failsafe *fs, failsafe_judge_fn fn, void *userdata)
{
	fs->judge = fn;
	fs->judge_ud = userdata;
}

int failsafe_start(struct failsafe *fs)
{
	int r = pthread_create(&fs->thread, NULL, listener_main, fs);

	if (r)
		return -r;
	fs->started = true;
	return 0;
}

uint16_t failsafe_port(const struct failsafe *fs)
{
	return fs->port;
}

void failsafe_stop(struct failsafe *fs)
{
	uint64_t one = 1;

	if (!fs || !fs->started)
		return;
	if (write(fs->stop_fd, &one, sizeof(one)) < 0)
		log_warning("failsafe: cannot stop the listener: %s", strerror(errno));
	pthread_join(fs->thread, NULL);
	fs->started = false;
}

struct failsafe *failsafe_free(struct failsafe *fs)
{
	if (!fs)
		return NULL;
	failsafe_stop(fs);
	if (fs->fd >= 0)
		close(fs->fd);
	if (fs->stop_fd >= 0)
		close(fs->stop_fd);
	OPENSSL_cleanse(fs->key, sizeof(fs->key));
	pthread_cond_destroy(&fs->cond);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
	return NULL;
}

const char *failsafe_result_name(enum failsafe_result r)
{
	switch (r) {
	case FAILSAFE_PROMISED:
		return "promised";
	case FAILSAFE_REFUSED:
		return "refused";
	case FAILSAFE_SILENT:
		return "silent";
	case FAILSAFE_ERROR:
		return "error";
	}
	return "?";
}

/* ", 'NAME' refused (REASON)" or ", 'NAME' did not answer" (reason NULL). */
static void append(char *buf, size_t len, const char *name, const char *reason)
{
	size_t used = strlen(buf);

	if (used + 1 >= len)
		return;
	if (reason)
		snprintf(buf + used, len - used, "%s'%s' refused (%s)", used ? ", " : "", name,
		         reason);
	else
		snprintf(buf + used, len - used, "%s'%s' did not answer", used ? ", " : "", name);
}

enum failsafe_result failsafe_ask(struct failsafe *fs, int64_t epoch, int64_t grant_ms,
                                  usec_t deadline, char *detail, size_t detaillen)
{
	struct fsproto_msg req = {.kind = FSPROTO_REQ, .epoch = epoch, .grant_ms = grant_ms};
	char buf[FSPROTO_DGRAM_MAX + 1];
	enum failsafe_result res;
	int n;

	detail[0] = '\0';
	pthread_mutex_lock(&fs->mu);
	n = failsafe_round_init(&fs->round, fs->self, fs->peers, fs->n_peers, epoch);
	fs->round_active = n == 0;
	pthread_mutex_unlock(&fs->mu);
	if (n < 0) {
		errbuf_set(detail, detaillen, "no nonce: %s", strerror(-n));
		metrics_failsafe_round(fs->metrics, failsafe_result_name(FAILSAFE_ERROR));
		return FAILSAFE_ERROR;
	}
	str_copy(req.from, sizeof(req.from), fs->self);
	str_copy(req.lease, sizeof(req.lease), fs->lease);
	str_copy(req.nonce, sizeof(req.nonce), fs->round.nonce);
	n = fsproto_format(&req, fs->key, fs->keylen, buf, sizeof(buf));
	if (n < 0) {
		pthread_mutex_lock(&fs->mu);
		fs->round_active = false;
		pthread_mutex_unlock(&fs->mu);
		errbuf_set(detail, detaillen, "cannot write the request: %s", strerror(-n));
		metrics_failsafe_round(fs->metrics, failsafe_result_name(FAILSAFE_ERROR));
		return FAILSAFE_ERROR;
	}

	pthread_mutex_lock(&fs->mu);
	for (;;) {
		usec_t now = clock_mono_usec(), step, next;
		struct timespec ts;
		bool unanswered[FAILSAFE_PEERS_MAX];

		if (fs->round.n_refused || fs->round.n_promised == fs->n_peers || now >= deadline)
			break;
		for (size_t i = 0; i < fs->n_peers; i++)
			unanswered[i] = !fs->round.answered[i];
		pthread_mutex_unlock(&fs->mu);
		for (size_t i = 0; i < fs->n_peers; i++)
			if (unanswered[i])
				send_to(fs, &fs->peers[i], buf, n);
		pthread_mutex_lock(&fs->mu);
		step = (deadline - now) / 4;
		if (step < 20 * USEC_PER_MSEC)
			step = 20 * USEC_PER_MSEC;
		next = now + step < deadline ? now + step : deadline;
		ts.tv_sec = (time_t)(next / USEC_PER_SEC);
		ts.tv_nsec = (long)(next % USEC_PER_SEC) * 1000;
		while (!fs->round.n_refused && fs->round.n_promised < fs->n_peers &&
		       clock_mono_usec() < next)
			if (pthread_cond_timedwait(&fs->cond, &fs->mu, &ts) == ETIMEDOUT)
				break;
	}
	fs->round_active = false;
	if (fs->round.n_promised == fs->n_peers) {
		res = FAILSAFE_PROMISED;
	} else if (fs->round.n_refused) {
		res = FAILSAFE_REFUSED;
		for (size_t i = 0; i < fs->n_peers; i++)
			if (fs->round.answered[i] && fs->round.verdict[i] == FSPROTO_REFUSE)
				append(detail, detaillen, fs->peers[i].name, fs->round.reason[i]);
	} else {
		res = FAILSAFE_SILENT;
		for (size_t i = 0; i < fs->n_peers; i++)
			if (!fs->round.answered[i])
				append(detail, detaillen, fs->peers[i].name, NULL);
	}
	pthread_mutex_unlock(&fs->mu);
	metrics_failsafe_round(fs->metrics, failsafe_result_name(res));
	return res;
}

void failsafe_set_active(struct failsafe *fs, bool active)
{
	if (fs)
		metrics_set_failsafe_active(fs->metrics, active);
}
