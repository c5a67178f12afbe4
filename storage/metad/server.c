/* server: connections, requests and the master/standby role of
 * kubefence-metad (see server.h).
 *
 * Locking: role_lock (a writer-preferring rwlock) guards the role, the epoch
 * and the store pointer.  Each request holds it for reading while it runs,
 * metastore_put included, so many writes are in flight together and group
 * commit batches them; promotion, demotion and the standby's read-only
 * refresh take it for writing, so the store is never closed under a request.
 * The write deadline is an atomic so that RENEW never waits for a write. */
#include "config.h"

#include "storage/metad/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "storage/metad/proto.h"
#include "storage/metastore.h"
#include "storage/store.h"

#define READ_CHUNK     (64 * 1024)
#define OUT_HIGH_WATER (1024 * 1024) /* flush answers before parsing more */
#define STOP_WAIT_MS   5000

enum role {
	ROLE_STANDBY = 0,
	ROLE_MASTER,
};

struct conn {
	struct server *s;
	int fd;
	char peer[80];
	struct conn *prev, *next;
};

struct server {
	char *listen;
	struct store_spec store_spec;
	char store_desc[SCSI_PR_URL_MAX + SCSI_PR_IQN_MAX + 32];
	bool standby_reads;
	int standby_refresh_ms, max_clients, idle_timeout_ms;
	uint32_t list_max;
	uint64_t snapshot_records, snapshot_min_records;
	void (*on_self_demote)(void *userdata, uint64_t epoch, const char *reason);
	void *userdata;

	int lfd;
	char addr[INET6_ADDRSTRLEN + 16];
	int wake[2];
	pthread_t accept_thread;
	bool started;
	bool stopping; /* atomic */

	pthread_mutex_t conns_lock;
	pthread_cond_t conns_cond;
	struct conn *conns;
	int nconns;

	pthread_mutex_t promote_lock; /* one promotion at a time */
	pthread_rwlock_t role_lock;
	enum role role;
	uint64_t epoch;
	uint64_t generation; /* bumped by every role change */
	struct metastore *store;
	struct metastore *ro; /* standby reads: read-only copy */
	usec_t ro_opened;
	usec_t deadline;      /* atomic */
	usec_t boot_deadline; /* atomic: the same on CLOCK_BOOTTIME (a suspend counts) */
	bool demoting;        /* atomic: a DEMOTE waits for the writes in flight */
	/* A promotion whose recovery runs: its epoch (under role_lock; 0:
	 * none), the grant it will start with (RENEWs meanwhile update it) and
	 * whether a DEMOTE called it off (both atomic). */
	uint64_t promoting_epoch;
	usec_t promote_deadline;
	bool promote_cancelled;

	pthread_mutex_t master_lock;
	char master[600];
	uint64_t master_epoch;

	uint64_t requests, refused_writes; /* atomic counters */
	uint64_t refusal_logged_gen;       /* atomic */
};

static usec_t deadline_get(struct server *s)
{
	return __atomic_load_n(&s->deadline, __ATOMIC_ACQUIRE);
}

/* The BOOTTIME twin is written first and read second, so a reader that
 * sees a new deadline sees its twin too. */
static void deadline_set(struct server *s, usec_t d)
{
	__atomic_store_n(&s->boot_deadline,
	                 clock_boot_until(d, clock_mono_usec(), clock_boot_usec()),
	                 __ATOMIC_RELEASE);
	__atomic_store_n(&s->deadline, d, __ATOMIC_RELEASE);
}

/* Whether the grant has run out at mono time `now`: on CLOCK_MONOTONIC,
 * or on CLOCK_BOOTTIME — which a system suspend does not stop, so a
 * master that resumes does not take the suspension as not having been. */
static bool grant_over(struct server *s, usec_t now)
{
	if (now > deadline_get(s))
		return true;
	return clock_boot_usec() > __atomic_load_n(&s->boot_deadline, __ATOMIC_ACQUIRE);
}

static void count(uint64_t *c)
{
	__atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ role */

/* The store's in_term: the write grant has not run out. */
static bool grant_running(void *userdata)
{
	struct server *s = userdata;

	return !grant_over(s, clock_mono_usec());
}

/* The store's cancelled: a DEMOTE (or a lost control connection) called
 * the promotion off while its recovery ran. */
static bool promotion_cancelled(void *userdata)
{
	struct server *s = userdata;

	return __atomic_load_n(&s->promote_cancelled, __ATOMIC_ACQUIRE);
}

int server_promote(struct server *s, uint64_t epoch, usec_t deadline, uint64_t *ret_records,
                   uint64_t *ret_last_seq, uint64_t *ret_recovery_ms, char *err, size_t errlen)
{
	/* Reads are confirmed against the epoch cell: a stale master whose
	 * grant has not run out yet still serves no read once a newer one
	 * claimed the store (and on a LUN, none at all: see metastore.h). */
	struct metastore_options o = {.epoch = epoch,
	                              .snapshot_records = s->snapshot_records,
	                              .snapshot_min_records = s->snapshot_min_records,
	                              .confirm_reads = true,
	                              .in_term = grant_running,
	                              .in_term_userdata = s,
	                              .cancelled = promotion_cancelled,
	                              .cancelled_userdata = s};
	struct metastore_stats st;
	struct metastore *m = NULL, *old = NULL, *old_ro = NULL;
	usec_t t0, t1;
	int r;

	pthread_mutex_lock(&s->promote_lock);
	pthread_rwlock_wrlock(&s->role_lock);
	if (s->role == ROLE_MASTER && s->epoch == epoch) {
		deadline_set(s, deadline);
		metastore_get_stats(s->store, &st);
		pthread_rwlock_unlock(&s->role_lock);
		log_info("already master of epoch %" PRIu64 "; new write deadline", epoch);
		t0 = t1 = 0;
		goto done;
	}
	if (s->role == ROLE_MASTER)
		log_info("demoted: epoch %" PRIu64 " replaced by a promotion to epoch %" PRIu64,
		         s->epoch, epoch);
	old = s->store;
	old_ro = s->ro;
	s->store = s->ro = NULL;
	s->role = ROLE_STANDBY;
	s->generation++;
	deadline_set(s, 0);
	s->promoting_epoch = epoch;
	__atomic_store_n(&s->promote_deadline, deadline, __ATOMIC_RELEASE);
	__atomic_store_n(&s->promote_cancelled, false, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&s->role_lock);
	old = metastore_close(old);
	old_ro = metastore_close(old_ro);

	/* Recovery runs without the role lock: requests are answered (as a
	 * standby) meanwhile, and so is the control socket: a RENEW updates
	 * promote_deadline, a DEMOTE sets promote_cancelled, which the store
	 * checks before each unit and before its barrier. */
	t0 = clock_mono_usec();
	r = FAILPOINT(METAD_PROMOTE_BEFORE_CLAIM);
	if (r < 0)
		errbuf_set(err, errlen, "fault point: %s", strerror(-r));
	else
		r = store_open(&s->store_spec, &o, &m, err, errlen);
	t1 = clock_mono_usec();
	pthread_rwlock_wrlock(&s->role_lock);
	s->promoting_epoch = 0;
	if (r >= 0 && promotion_cancelled(s)) {
		/* called off after the barrier: never master */
		old = m;
		m = NULL;
		errbuf_set(err, errlen, "called off during recovery");
		r = -ECANCELED;
	}
	if (r < 0) {
		pthread_rwlock_unlock(&s->role_lock);
		old = metastore_close(old);
		log_error("promotion to epoch %" PRIu64 " failed after %" PRId64 " ms: %s; standby",
		          epoch, (t1 - t0) / USEC_PER_MSEC, err && *err ? err : strerror(-r));
		goto out;
	}
	metastore_get_stats(m, &st);
	s->store = m;
	s->epoch = epoch;
	s->role = ROLE_MASTER;
	s->generation++;
	deadline = __atomic_load_n(&s->promote_deadline, __ATOMIC_ACQUIRE);
	deadline_set(s, deadline);
	pthread_rwlock_unlock(&s->role_lock);
	log_info("promoted: epoch %" PRIu64 " after recovering %" PRIu64
	         " records (last seq %" PRIu64 ", volume epoch %" PRIu64 ") in %" PRId64 " ms; %s",
	         epoch, st.records_replayed, st.last_seq, st.volume_epoch,
	         (t1 - t0) / USEC_PER_MSEC,
	         deadline == USEC_INFINITY ? "no write deadline"
	                                   : "writes allowed until the grant runs out");
done:
	if (ret_records)
		*ret_records = st.records_replayed;
	if (ret_last_seq)
		*ret_last_seq = st.last_seq;
	if (ret_recovery_ms)
		*ret_recovery_ms = (uint64_t)((t1 - t0) / USEC_PER_MSEC);
	r = 0;
out:
	pthread_mutex_unlock(&s->promote_lock);
	return r;
}

void server_renew(struct server *s, uint64_t epoch, usec_t deadline)
{
	pthread_rwlock_rdlock(&s->role_lock);
	if (s->role == ROLE_MASTER && s->epoch == epoch)
		deadline_set(s, deadline);
	else if (s->promoting_epoch == epoch)
		__atomic_store_n(&s->promote_deadline, deadline, __ATOMIC_RELEASE);
	else
		log_debug("RENEW for epoch %" PRIu64 " ignored: not its master", epoch);
	pthread_rwlock_unlock(&s->role_lock);
}

/* Demote when still master of `epoch` (0: any) and, with gen != 0, when no
 * role change happened since generation gen.  Returns 1 when demoted. */
static int demote(struct server *s, uint64_t epoch, uint64_t gen, const char *reason)
{
	struct metastore *m = NULL;
	uint64_t was = 0;
	int r = 0;

	__atomic_store_n(&s->demoting, true, __ATOMIC_RELEASE);
	pthread_rwlock_wrlock(&s->role_lock);
	if (s->role == ROLE_MASTER && (epoch == 0 || s->epoch == epoch) &&
	    (gen == 0 || s->generation == gen)) {
		m = s->store;
		s->store = NULL;
		was = s->epoch;
		s->role = ROLE_STANDBY;
		s->generation++;
		deadline_set(s, 0);
		r = 1;
	}
	if (gen == 0 && s->promoting_epoch && (epoch == 0 || s->promoting_epoch == epoch) &&
	    !promotion_cancelled(s)) {
		__atomic_store_n(&s->promote_cancelled, true, __ATOMIC_RELEASE);
		log_info("promotion to epoch %" PRIu64 " called off during recovery: %s",
		         s->promoting_epoch, reason);
	}
	__atomic_store_n(&s->demoting, false, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&s->role_lock);
	if (r) {
		(void)metastore_close(m);
		log_info("demoted: epoch %" PRIu64 ": %s; standby", was, reason);
	}
	return r;
}

int server_demote(struct server *s, uint64_t epoch, const char *reason)
{
	return demote(s, epoch, 0, reason && *reason ? reason : "asked by the agent");
}

static void self_demote(struct server *s, uint64_t epoch, uint64_t gen, const char *reason)
{
	if (demote(s, epoch, gen, reason) && s->on_self_demote)
		s->on_self_demote(s->userdata, epoch, reason);
}

void server_set_master(struct server *s, uint64_t epoch, const char *pod, const char *addr)
{
	pthread_mutex_lock(&s->master_lock);
	if (epoch >= s->master_epoch) {
		s->master_epoch = epoch;
		snprintf(s->master, sizeof(s->master), "%s@%s", pod, addr);
	}
	pthread_mutex_unlock(&s->master_lock);
}

/* ------------------------------------------------------------ requests */

static void answer_notmaster(struct server *s, struct pbuf *out)
{
	char m[sizeof(s->master)];

	pthread_mutex_lock(&s->master_lock);
	memcpy(m, s->master, sizeof(m));
	pthread_mutex_unlock(&s->master_lock);
	(void)proto_encode_notmaster(out, m[0] ? m : NULL);
}

/* Called with role_lock held for reading: the store a GET/LIST may read,
 * or NULL after answering the refusal. */
static struct metastore *read_store(struct server *s, struct pbuf *out)
{
	if (s->role == ROLE_MASTER) {
		if (grant_over(s, clock_mono_usec())) {
			(void)proto_encode_err(
			        out, "deadline",
			        "write deadline passed: reads stopped until renewed");
			return NULL;
		}
		return s->store;
	}
	if (s->standby_reads && s->ro)
		return s->ro;
	if (s->standby_reads)
		(void)proto_encode_err(out, "unavailable", "standby copy not loaded");
	else
		answer_notmaster(s, out);
	return NULL;
}

/* Standby reads: (re)load the read-only copy when missing or too old. */
/* After a read from the master's store: was it made inside the term?  The
 * deadline is checked again after the read, as a write's is after it is
 * durable, so a read delayed past the grant (when another master may
 * already write) is not served; and a store that stepped down serves
 * nothing.  Returns true when the read may be answered; otherwise the
 * refusal is in out.  A read the store failed for good (it died: its
 * epoch check could not be made, a sync failed, a newer epoch holds it)
 * puts the reason the master must step down in stepdown, like a failed
 * write's, for the caller to act on once the role lock is released:
 * otherwise a read-only load would leave a master that serves nothing and
 * never says so (a store's iSCSI session lost with its target is never
 * re-established in place; only the agent's promotion opens a new one).
 * Role lock held for reading. */
static bool read_in_term(struct server *s, struct metastore *m, int r, struct pbuf *out,
                         char *stepdown, size_t stepdownlen)
{
	if (m != s->store)
		return true; /* a standby's read-only copy: no term */
	if (r < 0 && r != -ENOENT && r != -ENOMEM && r != -EINVAL && r != -ENAMETOOLONG) {
		int dead = metastore_failed(m);
		char msg[320];

		if (r == -ESTALE || dead == -ESTALE) {
			snprintf(stepdown, stepdownlen,
			         "stepped down: a read found a newer epoch holding the volume");
			answer_notmaster(s, out);
			return false;
		}
		if (dead) {
			snprintf(stepdown, stepdownlen, "store failed: a read: %s",
			         strerror(-dead));
			(void)proto_encode_err(out, "io", stepdown);
			return false;
		}
		/* a check that may pass (the target busy or not ready): this
		 * read only; the store gives up if it lasts */
		snprintf(msg, sizeof(msg),
		         "the store could not check this read's epoch (%s); not read",
		         strerror(-r));
		(void)proto_encode_err(out, "io", msg);
		return false;
	}
	if (grant_over(s, clock_mono_usec())) {
		(void)proto_encode_err(out, "deadline",
		                       "write deadline passed: reads stopped until renewed");
		return false;
	}
	return true;
}

static void refresh_ro(struct server *s)
{
	struct metastore_options o = {.read_only = true, .epoch = UINT64_MAX};
	struct metastore *old = NULL, *m = NULL;
	char err[512] = "";
	usec_t now = clock_mono_usec();
	int r;

	pthread_rwlock_wrlock(&s->role_lock);
	if (s->role != ROLE_STANDBY ||
	    (s->ro && now - s->ro_opened < s->standby_refresh_ms * USEC_PER_MSEC))
		goto out;
	r = store_open(&s->store_spec, &o, &m, err, sizeof(err));
	if (r < 0) {
		/* The master writes on meanwhile: a snapshot that removes what
		 * this read listed looks like damage to a reader.  The next read
		 * tries again; only what persists is worth a look. */
		log_warning("standby reads: cannot load the %s: %s; keeping the previous copy "
		            "(a read that raced the master's snapshot fails like this and is "
		            "tried again at the next read; only a failure that persists needs "
		            "`kubefencectl journal check`)",
		            s->store_desc, err[0] ? err : strerror(-r));
		goto out;
	}
	old = s->ro;
	s->ro = m;
	s->ro_opened = clock_mono_usec();
out:
	pthread_rwlock_unlock(&s->role_lock);
	(void)metastore_close(old);
}

struct list_ctx {
	struct pbuf *body;
	uint64_t n, limit;
	bool more;
	int err;
};

static int list_cb(void *userdata, const void *key, size_t key_len, const void *value,
                   size_t value_len)
{
	struct list_ctx *c = userdata;

	if (c->n >= c->limit) {
		c->more = true;
		return 1;
	}
	c->err = proto_encode_key(c->body, key, key_len);
	if (c->err < 0)
		return 1;
	c->n++;
	return 0;
}

static void do_stat(struct server *s, struct pbuf *out)
{
	struct metastore_stats st;
	struct pbuf b = {0};
	char master[sizeof(s->master)];
	usec_t d = deadline_get(s), now = clock_mono_usec();
	struct metastore *m;
	int nconns;

	pthread_mutex_lock(&s->master_lock);
	memcpy(master, s->master, sizeof(master));
	pthread_mutex_unlock(&s->master_lock);
	pthread_mutex_lock(&s->conns_lock);
	nconns = s->nconns;
	pthread_mutex_unlock(&s->conns_lock);

	(void)pbuf_printf(&b, "role=%s\nepoch=%" PRIu64 "\n",
	                  s->role == ROLE_MASTER ? "master" : "standby",
	                  s->role == ROLE_MASTER ? s->epoch : 0);
	if (s->role == ROLE_MASTER)
		(void)pbuf_printf(&b, "deadline_ms=%" PRId64 "\n",
		                  d == USEC_INFINITY ? (int64_t)-1
		                                     : (d > now ? (d - now) / USEC_PER_MSEC : 0));
	(void)pbuf_printf(&b, "master=%s\n", master[0] ? master : "unknown");
	m = s->role == ROLE_MASTER ? s->store : s->ro;
	if (m) {
		metastore_get_stats(m, &st);
		(void)pbuf_printf(&b,
		                  "keys=%" PRIu64 "\nlast_seq=%" PRIu64 "\nvolume_epoch=%" PRIu64
		                  "\nrecords_replayed=%" PRIu64 "\nsyncs=%" PRIu64
		                  "\nwrites=%" PRIu64 "\nsnapshots=%" PRIu64
		                  "\njournal_bytes=%" PRIu64 "\n",
		                  st.keys, st.last_seq, st.volume_epoch, st.records_replayed,
		                  st.syncs, st.writes, st.snapshots, st.journal_bytes);
	}
	(void)pbuf_printf(&b, "connections=%d\nrequests=%" PRIu64 "\nrefused_writes=%" PRIu64 "\n",
	                  nconns, __atomic_load_n(&s->requests, __ATOMIC_RELAXED),
	                  __atomic_load_n(&s->refused_writes, __ATOMIC_RELAXED));
	(void)proto_encode_stats(out, b.data, b.len);
	pbuf_free(&b);
}

static void refuse_write(struct server *s, struct conn *c, struct pbuf *out)
{
	uint64_t gen = s->generation;

	count(&s->refused_writes);
	/* one line per role, not one per request */
	if (__atomic_exchange_n(&s->refusal_logged_gen, gen + 1, __ATOMIC_RELAXED) != gen + 1)
		log_info("refused write from %s: not master (further refusals not logged)",
		         c->peer);
	answer_notmaster(s, out);
}

static void do_write(struct server *s, struct conn *c, const struct proto_req *q, struct pbuf *out)
{
	char err[512] = "", reason[640];
	uint64_t epoch, gen;
	usec_t done;
	int r;

	pthread_rwlock_rdlock(&s->role_lock);
	if (s->role != ROLE_MASTER) {
		refuse_write(s, c, out);
		pthread_rwlock_unlock(&s->role_lock);
		return;
	}
	epoch = s->epoch;
	gen = s->generation;
	if (grant_over(s, clock_mono_usec())) {
		count(&s->refused_writes);
		pthread_rwlock_unlock(&s->role_lock);
		(void)proto_encode_err(out, "deadline", "write deadline passed; not written");
		return;
	}
	if (q->op == PROTO_OP_PUT)
		r = metastore_put(s->store, q->key, q->key_len, q->value, q->value_len, err,
		                  sizeof(err));
	else
		r = metastore_delete(s->store, q->key, q->key_len, err, sizeof(err));
	pthread_rwlock_unlock(&s->role_lock);
	if (r == 0 || r == -ENOENT)
		(void)FAILPOINT(METAD_WRITE_AFTER_DURABLE);
	done = clock_mono_usec();

	switch (r) {
	case 0:
	case -ENOENT:
		break;
	case -EINVAL:
	case -ENAMETOOLONG:
	case -E2BIG:
		(void)proto_encode_err(out, r == -EINVAL ? "badrequest" : "toolarge",
		                       err[0] ? err : strerror(-r));
		return;
	case -ESTALE:
		/* refused before anything was written: certainly not made */
		snprintf(reason, sizeof(reason), "%s%s",
		         strncmp(err, "stepped down", 12) == 0 ? "" : "stepped down: ",
		         err[0] ? err : "a newer epoch holds the volume");
		self_demote(s, epoch, gen, reason);
		answer_notmaster(s, out);
		return;
	case -EINPROGRESS:
		/* written, but not confirmed under our epoch: a newer master may
		 * have recovered it, so "not made" would be a lie */
		snprintf(reason, sizeof(reason), "%s%s",
		         strncmp(err, "stepped down", 12) == 0 ? "" : "stepped down: ",
		         err[0] ? err : strerror(-r));
		self_demote(s, epoch, gen, reason);
		(void)proto_encode_err(out, "indeterminate", reason);
		return;
	default:
		snprintf(reason, sizeof(reason), "store failed: %s", err[0] ? err : strerror(-r));
		self_demote(s, epoch, gen, reason);
		(void)proto_encode_err(out, "io", reason);
		return;
	}
	if (__atomic_load_n(&s->demoting, __ATOMIC_ACQUIRE)) {
		/* durable, but the agent asked us to stop: not acknowledged, and
		 * made all the same (the next master recovers it) */
		(void)proto_encode_err(
		        out, "indeterminate",
		        "durable, but this master is stepping down; not acknowledged");
		return;
	}
	if (grant_over(s, done)) {
		self_demote(s, epoch, gen, "a write became durable after the write deadline");
		(void)proto_encode_err(
		        out, "indeterminate",
		        "durable after the write deadline; not acknowledged, demoted");
		return;
	}
	(void)FAILPOINT(METAD_WRITE_BEFORE_OK);
	if (r == -ENOENT)
		(void)proto_encode_notfound(out);
	else
		(void)proto_encode_ok(out);
}

static void handle(struct server *s, struct conn *c, const struct proto_req *q, struct pbuf *out)
{
	struct metastore *m;
	void *v = NULL;
	size_t vlen = 0;
	char stepdown[320] = "";
	uint64_t epoch = 0, gen = 0;
	int r;

	count(&s->requests);
	if (q->op == PROTO_OP_PUT || q->op == PROTO_OP_DEL) {
		do_write(s, c, q, out);
		return;
	}
	if (s->standby_reads && q->op != PROTO_OP_STAT) {
		bool stale;

		pthread_rwlock_rdlock(&s->role_lock);
		stale = s->role == ROLE_STANDBY &&
		        (!s->ro ||
		         clock_mono_usec() - s->ro_opened >= s->standby_refresh_ms * USEC_PER_MSEC);
		pthread_rwlock_unlock(&s->role_lock);
		if (stale)
			refresh_ro(s);
	}
	pthread_rwlock_rdlock(&s->role_lock);
	if (q->op == PROTO_OP_STAT) {
		do_stat(s, out);
		goto out;
	}
	m = read_store(s, out);
	if (!m)
		goto out;
	epoch = s->epoch;
	gen = s->generation;
	if (q->op == PROTO_OP_GET) {
		r = metastore_get(m, q->key, q->key_len, &v, &vlen);
		if (!read_in_term(s, m, r, out, stepdown, sizeof(stepdown)))
			; /* answered */
		else if (r == -ENOENT)
			(void)proto_encode_notfound(out);
		else if (r < 0)
			(void)proto_encode_err(out, r == -ENOMEM ? "nomem" : "badrequest",
			                       strerror(-r));
		else
			(void)proto_encode_value(out, v, vlen);
		free(v);
	} else {
		struct pbuf body = {0};
		struct list_ctx lc = {.body = &body, .limit = s->list_max};

		if (q->limit && q->limit < lc.limit)
			lc.limit = q->limit;
		r = metastore_list(m, q->key, q->key_len, list_cb, &lc);
		if (!read_in_term(s, m, r < 0 ? r : 0, out, stepdown, sizeof(stepdown))) {
			/* answered */
		} else if (lc.err < 0) {
			(void)proto_encode_err(out, "nomem", "out of memory");
		} else {
			(void)proto_encode_keys(out, lc.n, lc.more);
			(void)pbuf_append(out, body.data, body.len);
		}
		pbuf_free(&body);
	}
out:
	pthread_rwlock_unlock(&s->role_lock);
	if (stepdown[0])
		self_demote(s, epoch, gen, stepdown);
}

/* ------------------------------------------------------------ connections */

/* Write all of out before deadline.  Returns 0 or -errno. */
static int flush(int fd, struct pbuf *out, usec_t deadline)
{
	size_t off = 0;
	int r = 0;

	while (off < out->len) {
		ssize_t n = send(fd, out->data + off, out->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			r = -errno;
			break;
		}
		usec_t left = deadline - clock_mono_usec();
		if (left <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		(void)poll(&pfd, 1, (int)((left + 999) / 1000));
	}
	pbuf_consume(out, off);
	return r;
}

static void conn_serve(struct server *s, struct conn *c)
{
	struct pbuf in = {0}, out = {0};
	usec_t deadline = clock_mono_usec() + s->idle_timeout_ms * USEC_PER_MSEC;
	uint64_t skip = 0;
	bool close_after = false;
	int r;

	for (;;) {
		struct proto_parse p;
		size_t used = 0;

		/* answer every complete request in the buffer (pipelining) */
		while (!close_after && out.len < OUT_HIGH_WATER) {
			if (skip > 0) {
				size_t n = in.len - used < skip ? in.len - used : (size_t)skip;

				used += n;
				skip -= n;
				if (skip > 0)
					break;
				deadline = clock_mono_usec() + s->idle_timeout_ms * USEC_PER_MSEC;
			}
			switch (proto_parse_request(in.data + used, in.len - used, &p)) {
			case PROTO_NEED_MORE:
				break;
			case PROTO_REQUEST:
				handle(s, c, &p.req, &out);
				deadline = clock_mono_usec() + s->idle_timeout_ms * USEC_PER_MSEC;
				used += p.consumed;
				continue;
			case PROTO_BAD_LINE:
				(void)proto_encode_err(&out, p.code, p.msg);
				used += p.consumed;
				continue;
			case PROTO_SKIP:
				(void)proto_encode_err(&out, p.code, p.msg);
				used += p.consumed;
				skip = p.skip;
				continue;
			case PROTO_FATAL:
				log_debug("closing the connection of %s: %s", c->peer, p.msg);
				(void)proto_encode_err(&out, p.code, p.msg);
				close_after = true;
				break;
			}
			break;
		}
		pbuf_consume(&in, used);
		if (out.len > 0) {
			r = flush(c->fd, &out,
			          clock_mono_usec() + s->idle_timeout_ms * USEC_PER_MSEC);
			if (r < 0) {
				log_debug("closing the connection of %s: %s", c->peer,
				          strerror(-r));
				break;
			}
			if (!close_after && in.len > 0 && skip == 0)
				continue; /* more complete requests may wait in `in` */
		}
		if (close_after || __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
			break;

		usec_t left = deadline - clock_mono_usec();
		if (left <= 0) {
			log_debug("closing the connection of %s: idle for %d ms", c->peer,
			          s->idle_timeout_ms);
			break;
		}
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		r = poll(&pfd, 1, (int)((left + 999) / 1000));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (in.cap - in.len < READ_CHUNK) {
			uint8_t *d = realloc(in.data, in.len + READ_CHUNK);

			if (!d)
				break;
			in.data = d;
			in.cap = in.len + READ_CHUNK;
		}
		ssize_t n = read(c->fd, in.data + in.len, READ_CHUNK);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break;
		}
		in.len += (size_t)n;
	}
	pbuf_free(&in);
	pbuf_free(&out);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct server *s = c->s;

	conn_serve(s, c);
	pthread_mutex_lock(&s->conns_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	close(c->fd);
	pthread_cond_broadcast(&s->conns_cond);
	pthread_mutex_unlock(&s->conns_lock);
	free(c);
	return NULL;
}

static void peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else {
		snprintf(buf, len, "?");
	}
}

static void accept_one(struct server *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	pthread_attr_t attr;
	pthread_t t;
	struct conn *c;
	int fd, one = 1, r;

	fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	if (fd < 0)
		return; /* EAGAIN, ECONNABORTED, EMFILE: the next poll round tries again */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&s->conns_lock);
	if (s->nconns >= s->max_clients) {
		static const char busy[] = "ERR busy too many connections\n";

		pthread_mutex_unlock(&s->conns_lock);
		log_warning("refused a connection: %d clients already (--max-clients)",
		            s->max_clients);
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&s->conns_lock);
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	peer_name(&ss, c->peer, sizeof(c->peer));
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	r = pthread_create(&t, &attr, conn_main, c);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		pthread_mutex_unlock(&s->conns_lock);
		log_warning("cannot start a thread for %s: %s; connection closed", c->peer,
		            strerror(r));
		close(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	pthread_mutex_unlock(&s->conns_lock);
}

static void *accept_main(void *arg)
{
	struct server *s = arg;

	while (!__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd[2] = {{.fd = s->lfd, .events = POLLIN},
		                        {.fd = s->wake[0], .events = POLLIN}};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents)
			accept_one(s);
	}
	return NULL;
}

/* ------------------------------------------------------------ life cycle */

static int bind_listen(struct server *s, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], *colon;
	const char *port;
	int r, fd = -1, one = 1;

	if (str_copy(host, sizeof(host), s->listen) < 0 || !(colon = strrchr(host, ':')) ||
	    !colon[1]) {
		errbuf_set(err, errlen, "listen address '%s' is not HOST:PORT", s->listen);
		r = -EINVAL;
		goto out;
	}
	*colon = '\0';
	port = colon + 1;
	if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r != 0) {
		errbuf_set(err, errlen, "listen address '%s': %s", s->listen, gai_strerror(r));
		r = -EINVAL;
		goto out;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "socket: %s", strerror(-r));
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "cannot listen on '%s': %s", s->listen, strerror(-r));
		goto out;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		peer_name(&ss, s->addr, sizeof(s->addr));
	s->lfd = fd;
	fd = -1;
	r = 0;
out:
	if (res)
		freeaddrinfo(res);
	if (fd >= 0)
		close(fd);
	return r;
}

int server_new(const struct server_options *o, struct server **ret, char *err, size_t errlen)
{
	struct server *s = calloc(1, sizeof(*s));
	pthread_rwlockattr_t ra;
	pthread_condattr_t ca;
	int r = -ENOMEM;

	if (!s)
		return -ENOMEM;
	s->lfd = -1;
	s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->conns_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->conns_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->promote_lock, NULL);
	pthread_mutex_init(&s->master_lock, NULL);
	pthread_rwlockattr_init(&ra);
	/* a DEMOTE must not starve behind a stream of requests */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->role_lock, &ra);
	pthread_rwlockattr_destroy(&ra);

	s->listen = strdup(o->listen);
	s->store_spec = *o->store;
	(void)store_spec_describe(&s->store_spec, s->store_desc, sizeof(s->store_desc));
	if (!s->listen) {
		errbuf_set(err, errlen, "out of memory");
		goto fail;
	}
	s->standby_reads = o->standby_reads;
	s->standby_refresh_ms = o->standby_refresh_ms > 0 ? o->standby_refresh_ms : 1000;
	s->max_clients = o->max_clients > 0 ? o->max_clients : 256;
	s->idle_timeout_ms = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 60000;
	s->list_max = o->list_max > 0 ? o->list_max : 10000;
	s->snapshot_records = o->snapshot_records;
	s->snapshot_min_records = o->snapshot_min_records;
	if (s->list_max > PROTO_LIST_MAX)
		s->list_max = PROTO_LIST_MAX;
	s->on_self_demote = o->on_self_demote;
	s->userdata = o->userdata;
	if (pipe2(s->wake, O_CLOEXEC) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "pipe: %s", strerror(-r));
		goto fail;
	}
	r = bind_listen(s, err, errlen);
	if (r < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	server_free(s);
	return r;
}

const char *server_address(struct server *s)
{
	return s->addr;
}

int server_start(struct server *s)
{
	int r = -pthread_create(&s->accept_thread, NULL, accept_main, s);

	if (r == 0)
		s->started = true;
	return r;
}

bool server_stop(struct server *s)
{
	struct timespec ts;
	bool idle;

	if (!s)
		return true;
	/* No write is acknowledged from here on: a new one is refused (not
	 * made), one already in the store ends as "durable after the
	 * deadline" (ERR indeterminate). */
	deadline_set(s, 0);
	if (!__atomic_exchange_n(&s->stopping, true, __ATOMIC_ACQ_REL) && s->started) {
		(void)!write(s->wake[1], "x", 1);
		pthread_join(s->accept_thread, NULL);
	}
	pthread_mutex_lock(&s->conns_lock);
	for (struct conn *c = s->conns; c; c = c->next)
		(void)shutdown(c->fd, SHUT_RDWR);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += STOP_WAIT_MS / 1000;
	while (s->nconns > 0)
		if (pthread_cond_timedwait(&s->conns_cond, &s->conns_lock, &ts) == ETIMEDOUT)
			break;
	idle = s->nconns == 0;
	pthread_mutex_unlock(&s->conns_lock);
	return idle;
}

struct server *server_free(struct server *s)
{
	if (!s)
		return NULL;
	if (!server_stop(s)) {
		/* a request is stuck in the store: leave it all to exit() */
		log_warning("%d connections still busy after %d ms; not closing the store",
		            s->nconns, STOP_WAIT_MS);
		return NULL;
	}
	s->store = metastore_close(s->store);
	s->ro = metastore_close(s->ro);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	pthread_rwlock_destroy(&s->role_lock);
	pthread_mutex_destroy(&s->conns_lock);
	pthread_cond_destroy(&s->conns_cond);
	pthread_mutex_destroy(&s->promote_lock);
	pthread_mutex_destroy(&s->master_lock);
	free(s->listen);
	free(s);
	return NULL;
}
