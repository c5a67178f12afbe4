/* scsi_pr: SCSI block I/O and SCSI-3 persistent reservations on one iSCSI
 * LUN through libiscsi's asynchronous API, driven by a poll() loop that
 * stops at the caller's deadline.  Also the pure parts every user needs
 * without a session: URL parsing, the key scheme, the status/sense -> errno
 * table and the PR IN parameter data parsers.  See scsi_pr.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <openssl/evp.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "scsi/scsi_pr.h"

/* Logout at close gets this long; a dead target must not hold up a close. */
#define CLOSE_TIMEOUT (500 * USEC_PER_MSEC)
/* Poll at least this often, so a deadline is noticed even if the fd is
 * quiet and libiscsi's own timers get serviced. */
#define POLL_SLICE_MS      100
#define PRIN_KEYS_ALLOC    (8 + 8 * SCSI_PR_KEYS_MAX)
#define PRIN_FULL_ALLOC    24576
#define DEFAULT_UA_RETRIES 5

struct scsi_pr {
	struct iscsi_context *iscsi; /* NULL while disconnected */
	struct scsi_pr_url url;
	char initiator[SCSI_PR_IQN_MAX];
	struct scsi_pr_options opts;
	uint32_t block_size;
	uint64_t num_blocks;
	int last_status, last_key, last_asc, last_ascq;
};

/* ------------------------------------------------------------ pure parts */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int scsi_pr_url_parse(const char *url, struct scsi_pr_url *ret, char *err, size_t errlen)
{
	struct scsi_pr_url u;
	const char *p, *host_end, *slash, *lun_s;
	size_t hl, tl, i, o;
	char *end;
	long v;

	memset(&u, 0, sizeof(u));
	if (!url || !*url) {
		errbuf_set(err, errlen, "empty LUN URL");
		return -EINVAL;
	}
	if (str_copy(u.text, sizeof(u.text), url) < 0) {
		errbuf_set(err, errlen, "LUN URL longer than %d bytes", SCSI_PR_URL_MAX - 1);
		return -EINVAL;
	}
	if (strncmp(url, "iscsi://", 8) != 0) {
		errbuf_set(err, errlen, "'%s': not an iscsi:// URL (iscsi://HOST[:PORT]/IQN/LUN)",
		           url);
		return -EINVAL;
	}
	p = url + 8;
	slash = strchr(p, '/');
	if (!slash) {
		errbuf_set(err, errlen, "'%s': missing /TARGET-IQN/LUN after the host", url);
		return -EINVAL;
	}
	if (memchr(p, '@', (size_t)(slash - p))) {
		errbuf_set(err, errlen, "'%s': credentials in the URL are not supported", url);
		return -EINVAL;
	}
	u.port = SCSI_PR_DEFAULT_PORT;
	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(slash - p));
		if (!host_end || host_end == p + 1) {
			errbuf_set(err, errlen, "'%s': bad [IPv6] host", url);
			return -EINVAL;
		}
		hl = (size_t)(host_end - p - 1);
		memcpy(u.host, p + 1, hl < sizeof(u.host) ? hl : 0);
		p = host_end + 1;
		if (p != slash && *p != ':') {
			errbuf_set(err, errlen, "'%s': junk after ']'", url);
			return -EINVAL;
		}
	} else {
		host_end = memchr(p, ':', (size_t)(slash - p));
		if (!host_end)
			host_end = slash;
		hl = (size_t)(host_end - p);
		if (hl >= sizeof(u.host)) {
			errbuf_set(err, errlen, "'%s': host name too long", url);
			return -EINVAL;
		}
		memcpy(u.host, p, hl);
		p = host_end;
	}
	if (!u.host[0]) {
		errbuf_set(err, errlen, "'%s': empty host", url);
		return -EINVAL;
	}
	if (*p == ':') {
		errno = 0;
		v = strtol(p + 1, &end, 10);
		if (end == p + 1 || end != slash || errno || v < 1 || v > 65535) {
			errbuf_set(err, errlen, "'%s': bad port (1..65535)", url);
			return -EINVAL;
		}
		u.port = (int)v;
	}
	/* target IQN: up to the last '/', %XX-decoded */
	p = slash + 1;
	lun_s = strrchr(p, '/');
	if (!lun_s || lun_s == p) {
		errbuf_set(err, errlen,
		           "'%s': missing target IQN or LUN (iscsi://HOST[:PORT]/IQN/LUN)", url);
		return -EINVAL;
	}
	tl = (size_t)(lun_s - p);
	for (i = 0, o = 0; i < tl; i++) {
		int c = (unsigned char)p[i];
		if (c == '%') {
			int hi = i + 2 < tl ? hexval(p[i + 1]) : -1;
			int lo = i + 2 < tl ? hexval(p[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				errbuf_set(err, errlen, "'%s': bad %%XX escape in the target IQN",
				           url);
				return -EINVAL;
			}
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == '/' || c <= ' ' || c >= 0x7f) {
			errbuf_set(err, errlen, "'%s': bad character in the target IQN", url);
			return -EINVAL;
		}
		if (o + 1 >= sizeof(u.target)) {
			errbuf_set(err, errlen, "'%s': target IQN too long", url);
			return -EINVAL;
		}
		u.target[o++] = (char)c;
	}
	if (strncmp(u.target, "iqn.", 4) != 0 && strncmp(u.target, "eui.", 4) != 0 &&
	    strncmp(u.target, "naa.", 4) != 0) {
		errbuf_set(err, errlen, "'%s': target name '%s' is not an iqn./eui./naa. name", url,
		           u.target);
		return -EINVAL;
	}
	lun_s++;
	if (!isdigit((unsigned char)*lun_s)) {
		errbuf_set(err, errlen, "'%s': LUN must be a number 0..%d", url, SCSI_PR_LUN_MAX);
		return -EINVAL;
	}
	errno = 0;
	v = strtol(lun_s, &end, 10);
	if (*end || errno || v < 0 || v > SCSI_PR_LUN_MAX) {
		errbuf_set(err, errlen, "'%s': LUN must be a number 0..%d", url, SCSI_PR_LUN_MAX);
		return -EINVAL;
	}
	u.lun = (int)v;
	snprintf(u.portal, sizeof(u.portal), strchr(u.host, ':') ? "[%s]:%d" : "%s:%d", u.host,
	         u.port);
	*ret = u;
	return 0;
}

int scsi_pr_key_for_node(const char *node, uint64_t *ret_key)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint64_t key = SCSI_PR_KEY_MAGIC << 48;

	if (!node || !*node)
		return -EINVAL;
	if (EVP_Digest(node, strlen(node), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 6)
		return -EIO;
	for (int i = 0; i < 6; i++)
		key |= (uint64_t)md[i] << (40 - 8 * i);
	*ret_key = key;
	return 0;
}

bool scsi_pr_key_is_ours(uint64_t key)
{
	return (key >> 48) == SCSI_PR_KEY_MAGIC;
}

int scsi_pr_key_to_node(uint64_t key, const char *const *candidates, size_t n)
{
	if (!scsi_pr_key_is_ours(key))
		return -EMEDIUMTYPE;
	for (size_t i = 0; i < n; i++) {
		uint64_t k;
		if (candidates[i] && scsi_pr_key_for_node(candidates[i], &k) == 0 && k == key)
			return (int)i;
	}
	return -ENOENT;
}

int scsi_pr_iqn_for_node(const char *prefix, const char *node, char *buf, size_t len)
{
	char name[SCSI_PR_IQN_MAX];
	size_t i;

	if (!prefix)
		prefix = SCSI_PR_DEFAULT_IQN_PREFIX;
	if (!node || !*node || strncmp(prefix, "iqn.", 4) != 0)
		return -EINVAL;
	for (i = 0; node[i]; i++) {
		int c = tolower((unsigned char)node[i]);
		if (!(isalnum(c) || c == '.' || c == '-'))
			return -EINVAL;
		if (i + 1 >= sizeof(name))
			return -ENAMETOOLONG;
		name[i] = (char)c;
	}
	name[i] = 0;
	if ((size_t)snprintf(buf, len, "%s:%s", prefix, name) >= len ||
	    strlen(prefix) + 1 + i >= SCSI_PR_IQN_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int scsi_pr_node_from_iqn(const char *prefix, const char *iqn, char *buf, size_t len)
{
	size_t pl, nl;
	const char *node, *end;

	if (!prefix)
		prefix = SCSI_PR_DEFAULT_IQN_PREFIX;
	pl = strlen(prefix);
	if (!iqn || strncasecmp(iqn, prefix, pl) != 0 || iqn[pl] != ':' || !iqn[pl + 1])
		return -ENOENT;
	node = iqn + pl + 1;
	end = strchr(node, ',');
	nl = end ? (size_t)(end - node) : strlen(node);
	if (nl == 0)
		return -ENOENT;
	if (nl >= len)
		return -ENAMETOOLONG;
	memcpy(buf, node, nl);
	buf[nl] = 0;
	return 0;
}

int scsi_pr_status_to_errno(int status, int sense_key, int asc, int ascq)
{
	switch (status) {
	case SCSI_STATUS_GOOD:
	case SCSI_STATUS_CONDITION_MET:
		return 0;
	case SCSI_STATUS_RESERVATION_CONFLICT:
		return -EBADE;
	case SCSI_STATUS_BUSY:
	case SCSI_STATUS_TASK_SET_FULL:
		return -EBUSY;
	case SCSI_STATUS_TASK_ABORTED:
	case SCSI_STATUS_CANCELLED:
		return -ECANCELED;
	case SCSI_STATUS_TIMEOUT:
		return -ETIMEDOUT;
	case SCSI_STATUS_ERROR:
		return -ECONNRESET;
	case SCSI_STATUS_ACA_ACTIVE:
		return -EBUSY;
	case SCSI_STATUS_CHECK_CONDITION:
		break;
	default:
		return -EIO;
	}
	switch (sense_key) {
	case SCSI_SENSE_RECOVERED_ERROR:
		return 0;
	case SCSI_SENSE_UNIT_ATTENTION:
		return -EAGAIN;
	case SCSI_SENSE_NOT_READY:
		return asc == 0x3a ? -ENOMEDIUM : -EAGAIN;
	case SCSI_SENSE_ILLEGAL_REQUEST:
		switch (asc) {
		case 0x20: /* INVALID COMMAND OPERATION CODE */
			return -EOPNOTSUPP;
		case 0x1a: /* PARAMETER LIST LENGTH ERROR */
		case 0x24: /* INVALID FIELD IN CDB */
		case 0x26: /* INVALID FIELD IN PARAMETER LIST */
			return -EINVAL;
		case 0x21: /* LBA OUT OF RANGE */
			return -ERANGE;
		case 0x25: /* LOGICAL UNIT NOT SUPPORTED */
			return -ENXIO;
		default:
			return -EOPNOTSUPP;
		}
	case SCSI_SENSE_DATA_PROTECTION:
		return asc == 0x27 ? -EROFS : -EACCES;
	case SCSI_SENSE_COMMAND_ABORTED:
		return -ECANCELED;
	case SCSI_SENSE_MISCOMPARE:
		return -EILSEQ;
	default: /* NO SENSE, MEDIUM ERROR, HARDWARE ERROR, ... */
		(void)ascq;
		return -EIO;
	}
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int scsi_pr_parse_read_keys(const uint8_t *data, size_t len, struct scsi_pr_keys *ret)
{
	struct scsi_pr_keys k;
	size_t avail;

	if (len < 8)
		return -EBADMSG;
	memset(&k, 0, sizeof(k));
	k.generation = be32(data);
	k.total = be32(data + 4) / 8;
	avail = (len - 8) / 8;
	k.n = k.total < avail ? k.total : avail;
	if (k.n > SCSI_PR_KEYS_MAX)
		k.n = SCSI_PR_KEYS_MAX;
	for (size_t i = 0; i < k.n; i++)
		k.keys[i] = be64(data + 8 + 8 * i);
	*ret = k;
	return 0;
}

int scsi_pr_parse_read_reservation(const uint8_t *data, size_t len, struct scsi_pr_reservation *ret)
{
	struct scsi_pr_reservation r;

	if (len < 8)
		return -EBADMSG;
	memset(&r, 0, sizeof(r));
	r.generation = be32(data);
	if (be32(data + 4) >= 16) {
		if (len < 24)
			return -EBADMSG;
		r.held = true;
		r.key = be64(data + 8);
		r.scope = data[21] >> 4;
		r.type = data[21] & 0x0f;
	}
	*ret = r;
	return 0;
}

int scsi_pr_parse_full_status(const uint8_t *data, size_t len, struct scsi_pr_full_status *ret)
{
	struct scsi_pr_full_status *f;
	size_t end, off;
	int r = 0;

	if (len < 8)
		return -EBADMSG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->generation = be32(data);
	end = 8 + (size_t)be32(data + 4);
	if (end > len)
		end = len; /* truncated by the allocation length: parse what came */
	for (off = 8; off + 24 <= end; f->total++) {
		size_t dl = be32(data + off + 20);
		const uint8_t *tid = data + off + 24;

		if (off + 24 + dl > end && end == 8 + (size_t)be32(data + 4)) {
			r = -EBADMSG;
			goto finish;
		}
		if (off + 24 + dl > end)
			break;
		if (f->n < SCSI_PR_REGS_MAX) {
			struct scsi_pr_registrant *g = &f->regs[f->n++];
			g->key = be64(data + off);
			g->all_tg_pt = data[off + 12] & 0x02;
			g->holder = data[off + 12] & 0x01;
			g->scope = data[off + 13] >> 4;
			g->type = data[off + 13] & 0x0f;
			g->rel_tgt_port = (uint16_t)(data[off + 18] << 8 | data[off + 19]);
			/* iSCSI TransportID (protocol 5): 2 bytes length at 2, name at 4 */
			if (dl >= 4 && (tid[0] & 0x0f) == 5) {
				size_t nl = (size_t)(tid[2] << 8 | tid[3]);
				if (nl > dl - 4)
					nl = dl - 4;
				if (nl >= sizeof(g->initiator))
					nl = sizeof(g->initiator) - 1;
				memcpy(g->initiator, tid + 4, nl);
				g->initiator[nl] = 0; /* the name is NUL-padded */
			}
		}
		off += 24 + dl;
	}
	*ret = *f;
finish:
	free(f);
	return r;
}

const char *scsi_pr_type_name(int type)
{
	switch (type) {
	case SCSI_PR_TYPE_WRITE_EXCLUSIVE:
		return "WE";
	case SCSI_PR_TYPE_EXCLUSIVE_ACCESS:
		return "EA";
	case SCSI_PR_TYPE_WE_REGISTRANTS_ONLY:
		return "WE-RO";
	case SCSI_PR_TYPE_EA_REGISTRANTS_ONLY:
		return "EA-RO";
	case SCSI_PR_TYPE_WE_ALL_REGISTRANTS:
		return "WE-AR";
	case SCSI_PR_TYPE_EA_ALL_REGISTRANTS:
		return "EA-AR";
	default:
		return "?";
	}
}

/* ------------------------------------------------------------ sessions */

struct waiter {
	bool done;
	int status;
};

static void waiter_cb(struct iscsi_context *iscsi, int status, void *command_data,
                      void *private_data)
{
	struct waiter *w = private_data;

	w->done = true;
	w->status = status;
}

/* Drop the libiscsi context.  Callbacks of commands in flight run now (with
 * CANCELLED), while their waiters are still alive on our callers' stacks. */
static void teardown(struct scsi_pr *h)
{
	if (h->iscsi) {
		(void)iscsi_destroy_context(h->iscsi);
		h->iscsi = NULL;
	}
}

/* Service the context until w->done or the deadline.  Returns 0 when done,
 * -ETIMEDOUT, or -ECONNREFUSED/-ECONNRESET/-errno when the socket failed. */
static int pump(struct scsi_pr *h, struct waiter *w, usec_t deadline)
{
	while (!w->done) {
		usec_t now = clock_mono_usec();
		struct pollfd p;
		int ev, n, ms;

		if (now >= deadline)
			return -ETIMEDOUT;
		ms = (int)((deadline - now + 999) / 1000);
		if (ms > POLL_SLICE_MS)
			ms = POLL_SLICE_MS;
		ev = iscsi_which_events(h->iscsi);
		if (ev == 0) {
			/* libiscsi waits between reconnect attempts: nothing to poll */
			(void)poll(NULL, 0, ms);
			continue;
		}
		p.fd = iscsi_get_fd(h->iscsi);
		p.events = (short)ev;
		p.revents = 0;
		n = poll(&p, 1, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n > 0 && (p.revents & (POLLERR | POLLHUP))) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
				return soerr == ECONNREFUSED ? -ECONNREFUSED : -soerr;
		}
		if (iscsi_service(h->iscsi, n > 0 ? p.revents : 0) < 0)
			return -ECONNRESET;
	}
	return 0;
}

enum op {
	OP_TUR,
	OP_READCAP16,
	OP_READ16,
	OP_WRITE16,
	OP_SYNC16,
	OP_PRIN,
	OP_PROUT,
};

struct cmd {
	enum op op;
	const char *name;
	uint64_t lba;
	const void *out;
	size_t len;
	int sa, type;
	struct scsi_persistent_reserve_out_basic prout;
	int ua_retries;
};

static struct scsi_task *issue(struct scsi_pr *h, const struct cmd *c, struct waiter *w)
{
	int lun = h->url.lun;

	switch (c->op) {
	case OP_TUR:
		return iscsi_testunitready_task(h->iscsi, lun, waiter_cb, w);
	case OP_READCAP16:
		return iscsi_readcapacity16_task(h->iscsi, lun, waiter_cb, w);
	case OP_READ16:
		return iscsi_read16_task(h->iscsi, lun, c->lba, (uint32_t)c->len,
		                         (int)h->block_size, 0, 0, 0, 0, 0, waiter_cb, w);
	case OP_WRITE16:
		return iscsi_write16_task(h->iscsi, lun, c->lba, (unsigned char *)c->out,
		                          (uint32_t)c->len, (int)h->block_size, 0, 0, 1, 0, 0,
		                          waiter_cb, w);
	case OP_SYNC16:
		return iscsi_synchronizecache16_task(h->iscsi, lun, 0, 0, 0, 0, waiter_cb, w);
	case OP_PRIN:
		return iscsi_persistent_reserve_in_task(h->iscsi, lun, c->sa, (uint16_t)c->len,
		                                        waiter_cb, w);
	case OP_PROUT:
		return iscsi_persistent_reserve_out_task(h->iscsi, lun, c->sa,
		                                         SCSI_PERSISTENT_RESERVE_SCOPE_LU, c->type,
		                                         (void *)&c->prout, waiter_cb, w);
	}
	return NULL;
}

static const char *status_name(int status)
{
	switch (status) {
	case SCSI_STATUS_GOOD:
		return "GOOD";
	case SCSI_STATUS_CHECK_CONDITION:
		return "CHECK CONDITION";
	case SCSI_STATUS_BUSY:
		return "BUSY";
	case SCSI_STATUS_RESERVATION_CONFLICT:
		return "RESERVATION CONFLICT";
	case SCSI_STATUS_TASK_SET_FULL:
		return "TASK SET FULL";
	case SCSI_STATUS_TASK_ABORTED:
		return "TASK ABORTED";
	case SCSI_STATUS_CANCELLED:
		return "cancelled";
	case SCSI_STATUS_TIMEOUT:
		return "timed out";
	case SCSI_STATUS_ERROR:
		return "transport error";
	default:
		return "unknown status";
	}
}

/* libiscsi names only some ASC/ASCQ pairs; add the ones PR produces. */
static const char *sense_text(int ascq)
{
	const char *s;

	switch (ascq) {
	case 0x2a03:
		return "RESERVATIONS PREEMPTED";
	case 0x2a04:
		return "RESERVATIONS RELEASED";
	case 0x2a05:
		return "REGISTRATIONS PREEMPTED";
	default:
		s = scsi_sense_ascq_str(ascq);
		return s ? s : "";
	}
}

/* Run one command to completion or the deadline.  On success *ret_task (if
 * not NULL) owns the completed task.  A failure of the transport or the
 * deadline tears the session down (its state is unknown afterwards). */
static int exec(struct scsi_pr *h, const struct cmd *c, usec_t deadline,
                struct scsi_task **ret_task, char *err, size_t errlen)
{
	struct scsi_task *task = NULL;
	int r;

	for (int attempt = 0;; attempt++) {
		struct waiter w = {false, 0};

		if (!h->iscsi) {
			errbuf_set(err, errlen, "'%s': %s: not connected", h->url.text, c->name);
			return -ENOTCONN;
		}
		h->last_status = h->last_key = h->last_asc = h->last_ascq = 0;
		task = issue(h, c, &w);
		if (!task) {
			errbuf_set(err, errlen, "'%s': %s: cannot queue: %s", h->url.text, c->name,
			           iscsi_get_error(h->iscsi));
			teardown(h);
			return -ENOMEM;
		}
		r = pump(h, &w, deadline);
		if (r < 0) {
			errbuf_set(err, errlen, "'%s': %s: %s%s%s", h->url.text, c->name,
			           r == -ETIMEDOUT ? "no answer before the deadline" : strerror(-r),
			           r == -ETIMEDOUT ? "" : ": ",
			           r == -ETIMEDOUT ? "" : iscsi_get_error(h->iscsi));
			teardown(h);
			scsi_free_scsi_task(task);
			return r;
		}
		/* libiscsi cancels what is in flight when the connection drops
		 * (automatic reconnection is off); we cancel only in teardown(),
		 * so a cancelled command here means the session is gone. */
		if (w.status == SCSI_STATUS_CANCELLED) {
			errbuf_set(err, errlen, "'%s': %s: session lost: %s", h->url.text, c->name,
			           iscsi_get_error(h->iscsi));
			teardown(h);
			scsi_free_scsi_task(task);
			return -ECONNRESET;
		}
		h->last_status = w.status;
		if (w.status == SCSI_STATUS_CHECK_CONDITION) {
			h->last_key = task->sense.key;
			h->last_asc = (task->sense.ascq >> 8) & 0xff;
			h->last_ascq = task->sense.ascq & 0xff;
		}
		r = scsi_pr_status_to_errno(w.status, h->last_key, h->last_asc, h->last_ascq);
		if (r == -EAGAIN && h->last_key == SCSI_SENSE_UNIT_ATTENTION &&
		    attempt < c->ua_retries && clock_mono_usec() < deadline) {
			log_debug("'%s': %s: UNIT ATTENTION %02x/%02x, resending", h->url.text,
			          c->name, h->last_asc, h->last_ascq);
			scsi_free_scsi_task(task);
			continue;
		}
		break;
	}
	if (r < 0) {
		if (h->last_status == SCSI_STATUS_CHECK_CONDITION)
			errbuf_set(err, errlen, "'%s': %s: CHECK CONDITION %s, %s (%02x/%02x)",
			           h->url.text, c->name, scsi_sense_key_str(h->last_key),
			           sense_text(task->sense.ascq), h->last_asc, h->last_ascq);
		else
			errbuf_set(err, errlen, "'%s': %s: %s%s%s", h->url.text, c->name,
			           status_name(h->last_status),
			           h->last_status == SCSI_STATUS_ERROR ? ": " : "",
			           h->last_status == SCSI_STATUS_ERROR ? iscsi_get_error(h->iscsi)
			                                               : "");
		if (h->last_status == SCSI_STATUS_ERROR || h->last_status == SCSI_STATUS_TIMEOUT)
			teardown(h);
		scsi_free_scsi_task(task);
		return r;
	}
	if (ret_task)
		*ret_task = task;
	else
		scsi_free_scsi_task(task);
	return 0;
}

/* Run a connect or login step to completion or the deadline. */
static int step(struct scsi_pr *h, const char *what, struct waiter *w, int queued, usec_t deadline,
                char *err, size_t errlen)
{
	int r;

	if (queued < 0) {
		errbuf_set(err, errlen, "'%s': %s: %s", h->url.text, what,
		           iscsi_get_error(h->iscsi));
		return -EIO;
	}
	r = pump(h, w, deadline);
	if (r == -ETIMEDOUT) {
		errbuf_set(err, errlen, "'%s': %s: no answer from %s before the deadline",
		           h->url.text, what, h->url.portal);
		return r;
	}
	if (r < 0) {
		errbuf_set(err, errlen, "'%s': %s: %s", h->url.text, what, strerror(-r));
		return r;
	}
	if (w->status != SCSI_STATUS_GOOD) {
		errbuf_set(err, errlen, "'%s': %s failed: %s", h->url.text, what,
		           iscsi_get_error(h->iscsi));
		return -ECONNRESET;
	}
	return 0;
}

static int session_start(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen)
{
	struct scsi_task *task = NULL;
	struct waiter w = {false, 0};
	struct cmd tur = {
	        .op = OP_TUR, .name = "TEST UNIT READY", .ua_retries = h->opts.ua_retries};
	struct cmd cap = {
	        .op = OP_READCAP16, .name = "READ CAPACITY(16)", .ua_retries = h->opts.ua_retries};
	int r;

	h->iscsi = iscsi_create_context(h->initiator);
	if (!h->iscsi) {
		errbuf_set(err, errlen, "'%s': cannot create an iSCSI context for '%s'",
		           h->url.text, h->initiator);
		return -ENOMEM;
	}
	if (iscsi_set_targetname(h->iscsi, h->url.target) < 0 ||
	    iscsi_set_session_type(h->iscsi, ISCSI_SESSION_NORMAL) < 0 ||
	    iscsi_set_header_digest(h->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C) < 0) {
		errbuf_set(err, errlen, "'%s': %s", h->url.text, iscsi_get_error(h->iscsi));
		r = -EINVAL;
		goto finish;
	}
	/* A lost session is reported, never silently re-established. */
	iscsi_set_noautoreconnect(h->iscsi, 1);
	if (h->opts.isid_qualifier) {
		uint64_t k = 0;
		(void)scsi_pr_key_for_node(h->initiator, &k);
		(void)iscsi_set_isid_random(h->iscsi, (uint32_t)(k & 0xffffff),
		                            h->opts.isid_qualifier);
	}
	r = step(h, "connect", &w, iscsi_connect_async(h->iscsi, h->url.portal, waiter_cb, &w),
	         deadline, err, errlen);
	if (r < 0)
		goto finish;
	w.done = false;
	r = step(h, "login", &w, iscsi_login_async(h->iscsi, waiter_cb, &w), deadline, err, errlen);
	if (r == -ECONNRESET)
		r = -EACCES; /* the target answered and refused */
	if (r < 0)
		goto finish;
	r = exec(h, &tur, deadline, NULL, err, errlen);
	if (r < 0)
		goto finish;
	r = exec(h, &cap, deadline, &task, err, errlen);
	if (r < 0)
		goto finish;
	if (task->datain.size < 12) {
		errbuf_set(err, errlen, "'%s': READ CAPACITY(16): short answer", h->url.text);
		r = -EBADMSG;
		goto finish;
	}
	h->num_blocks = be64(task->datain.data) + 1;
	h->block_size = be32(task->datain.data + 8);
	if (h->block_size == 0 || h->block_size > 65536) {
		errbuf_set(err, errlen, "'%s': odd block size %u", h->url.text, h->block_size);
		r = -EBADMSG;
		goto finish;
	}
	r = 0;
finish:
	if (task)
		scsi_free_scsi_task(task);
	if (r < 0)
		teardown(h);
	return r;
}

int scsi_pr_open(const struct scsi_pr_url *url, const char *initiator_iqn,
                 const struct scsi_pr_options *opts, usec_t deadline, struct scsi_pr **ret,
                 char *err, size_t errlen)
{
	struct scsi_pr *h;
	int r;

	if (!url || !initiator_iqn || !*initiator_iqn)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->url = *url;
	if (str_copy(h->initiator, sizeof(h->initiator), initiator_iqn) < 0) {
		errbuf_set(err, errlen, "initiator IQN too long");
		free(h);
		return -ENAMETOOLONG;
	}
	if (opts)
		h->opts = *opts;
	else
		h->opts.ua_retries = DEFAULT_UA_RETRIES;
	r = session_start(h, deadline, err, errlen);
	if (r < 0) {
		free(h);
		return r;
	}
	*ret = h;
	return 0;
}

int scsi_pr_reconnect(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen)
{
	teardown(h);
	return session_start(h, deadline, err, errlen);
}

struct scsi_pr *scsi_pr_close(struct scsi_pr *h)
{
	if (!h)
		return NULL;
	if (h->iscsi) {
		struct waiter w = {false, 0};
		if (iscsi_logout_async(h->iscsi, waiter_cb, &w) == 0)
			(void)pump(h, &w, clock_mono_usec() + CLOSE_TIMEOUT);
		teardown(h);
	}
	free(h);
	return NULL;
}

const struct scsi_pr_url *scsi_pr_get_url(const struct scsi_pr *h)
{
	return &h->url;
}

const char *scsi_pr_get_initiator(const struct scsi_pr *h)
{
	return h->initiator;
}

uint32_t scsi_pr_block_size(const struct scsi_pr *h)
{
	return h->block_size;
}

uint64_t scsi_pr_num_blocks(const struct scsi_pr *h)
{
	return h->num_blocks;
}

void scsi_pr_last_sense(const struct scsi_pr *h, int *status, int *key, int *asc, int *ascq)
{
	if (status)
		*status = h->last_status;
	if (key)
		*key = h->last_key;
	if (asc)
		*asc = h->last_asc;
	if (ascq)
		*ascq = h->last_ascq;
}

static int check_io(const struct scsi_pr *h, uint64_t lba, size_t len, char *err, size_t errlen)
{
	if (!h->block_size || len == 0 || len % h->block_size || len > (size_t)UINT32_MAX ||
	    lba + len / h->block_size > h->num_blocks) {
		errbuf_set(err, errlen,
		           "'%s': bad I/O range lba %llu len %zu (block %u, %llu blocks)",
		           h->url.text, (unsigned long long)lba, len, h->block_size,
		           (unsigned long long)h->num_blocks);
		return -EINVAL;
	}
	return 0;
}

int scsi_pr_read(struct scsi_pr *h, uint64_t lba, void *buf, size_t len, usec_t deadline, char *err,
                 size_t errlen)
{
	struct cmd c = {.op = OP_READ16, .name = "READ(16)", .lba = lba, .len = len};
	struct scsi_task *task = NULL;
	int r;

	r = check_io(h, lba, len, err, errlen);
	if (r < 0)
		return r;
	r = exec(h, &c, deadline, &task, err, errlen);
	if (r < 0)
		return r;
	if ((size_t)task->datain.size != len) {
		errbuf_set(err, errlen, "'%s': READ(16): %d bytes instead of %zu", h->url.text,
		           task->datain.size, len);
		r = -EIO;
	} else {
		memcpy(buf, task->datain.data, len);
	}
	scsi_free_scsi_task(task);
	return r;
}

int scsi_pr_write(struct scsi_pr *h, uint64_t lba, const void *buf, size_t len, usec_t deadline,
                  char *err, size_t errlen)
{
	struct cmd c = {.op = OP_WRITE16, .name = "WRITE(16)", .lba = lba, .out = buf, .len = len};
	int r = check_io(h, lba, len, err, errlen);

	return r < 0 ? r : exec(h, &c, deadline, NULL, err, errlen);
}

int scsi_pr_write_probe(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen)
{
	struct cmd c = {.op = OP_WRITE16, .name = "WRITE(16) of no block", .lba = 0, .len = 0};

	return exec(h, &c, deadline, NULL, err, errlen);
}

int scsi_pr_sync_cache(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen)
{
	struct cmd c = {.op = OP_SYNC16, .name = "SYNCHRONIZE CACHE(16)"};

	return exec(h, &c, deadline, NULL, err, errlen);
}

struct tmf_waiter {
	struct waiter w; /* first: pump() waits on it */
	uint32_t response;
};

static void tmf_cb(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct tmf_waiter *t = private_data;

	(void)iscsi;
	t->response = status == SCSI_STATUS_GOOD && command_data ? *(uint32_t *)command_data
	                                                         : ISCSI_TMR_FUNC_REJECTED;
	t->w.status = status;
	t->w.done = true;
}

int scsi_pr_lun_reset(struct scsi_pr *h, usec_t deadline, char *err, size_t errlen)
{
	struct tmf_waiter t = {{false, 0}, ISCSI_TMR_FUNC_REJECTED};
	int r;

	if (!h->iscsi) {
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: not connected", h->url.text);
		return -ENOTCONN;
	}
	r = FAILPOINT(SCSI_LUN_RESET_BEFORE);
	if (r < 0) {
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: fault point: %s", h->url.text,
		           strerror(-r));
		return r;
	}
	if (iscsi_task_mgmt_lun_reset_async(h->iscsi, (uint32_t)h->url.lun, tmf_cb, &t) < 0) {
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: cannot queue: %s", h->url.text,
		           iscsi_get_error(h->iscsi));
		teardown(h);
		return -ENOMEM;
	}
	r = pump(h, &t.w, deadline);
	if (r < 0) {
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: %s", h->url.text,
		           r == -ETIMEDOUT ? "no answer before the deadline (tasks still running)"
		                           : strerror(-r));
		teardown(h);
		return r;
	}
	if (t.w.status != SCSI_STATUS_GOOD) {
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: %s", h->url.text,
		           iscsi_get_error(h->iscsi));
		teardown(h);
		return -ECONNRESET;
	}
	switch (t.response) {
	case ISCSI_TMR_FUNC_COMPLETE:
		return 0;
	case ISCSI_TMR_TMF_NOT_SUPPORTED:
	case ISCSI_TMR_FUNC_REJECTED:
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: %s", h->url.text,
		           t.response == ISCSI_TMR_FUNC_REJECTED ? "rejected" : "not supported");
		return -EOPNOTSUPP;
	default:
		errbuf_set(err, errlen, "'%s': LOGICAL UNIT RESET: response %u", h->url.text,
		           (unsigned)t.response);
		return -EIO;
	}
}

static int prout(struct scsi_pr *h, const char *name, int sa, int type, uint64_t key,
                 uint64_t sa_key, usec_t deadline, char *err, size_t errlen)
{
	struct cmd c = {.op = OP_PROUT,
	                .name = name,
	                .sa = sa,
	                .type = type,
	                .ua_retries = h->opts.ua_retries};

	c.prout.reservation_key = key;
	c.prout.service_action_reservation_key = sa_key;
	return exec(h, &c, deadline, NULL, err, errlen);
}

int scsi_pr_register(struct scsi_pr *h, uint64_t old_key, uint64_t new_key, usec_t deadline,
                     char *err, size_t errlen)
{
	return prout(h, "PR OUT REGISTER", SCSI_PERSISTENT_RESERVE_REGISTER, 0, old_key, new_key,
	             deadline, err, errlen);
}

int scsi_pr_register_ignore(struct scsi_pr *h, uint64_t new_key, usec_t deadline, char *err,
                            size_t errlen)
{
	return prout(h, "PR OUT REGISTER AND IGNORE EXISTING KEY",
	             SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, new_key,
	             deadline, err, errlen);
}

int scsi_pr_reserve(struct scsi_pr *h, uint64_t key, int type, usec_t deadline, char *err,
                    size_t errlen)
{
	return prout(h, "PR OUT RESERVE", SCSI_PERSISTENT_RESERVE_RESERVE, type, key, 0, deadline,
	             err, errlen);
}

int scsi_pr_release(struct scsi_pr *h, uint64_t key, int type, usec_t deadline, char *err,
                    size_t errlen)
{
	return prout(h, "PR OUT RELEASE", SCSI_PERSISTENT_RESERVE_RELEASE, type, key, 0, deadline,
	             err, errlen);
}

int scsi_pr_preempt(struct scsi_pr *h, uint64_t key, uint64_t victim_key, int type, bool abort,
                    usec_t deadline, char *err, size_t errlen)
{
	return prout(h, abort ? "PR OUT PREEMPT AND ABORT" : "PR OUT PREEMPT",
	             abort ? SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT
	                   : SCSI_PERSISTENT_RESERVE_PREEMPT,
	             type, key, victim_key, deadline, err, errlen);
}

int scsi_pr_clear(struct scsi_pr *h, uint64_t key, usec_t deadline, char *err, size_t errlen)
{
	return prout(h, "PR OUT CLEAR", SCSI_PERSISTENT_RESERVE_CLEAR, 0, key, 0, deadline, err,
	             errlen);
}

static int prin(struct scsi_pr *h, const char *name, int sa, size_t alloc, usec_t deadline,
                struct scsi_task **ret_task, char *err, size_t errlen)
{
	struct cmd c = {.op = OP_PRIN,
	                .name = name,
	                .sa = sa,
	                .len = alloc,
	                .ua_retries = h->opts.ua_retries};

	return exec(h, &c, deadline, ret_task, err, errlen);
}

int scsi_pr_read_keys(struct scsi_pr *h, usec_t deadline, struct scsi_pr_keys *ret, char *err,
                      size_t errlen)
{
	struct scsi_task *t = NULL;
	int r = prin(h, "PR IN READ KEYS", SCSI_PERSISTENT_RESERVE_READ_KEYS, PRIN_KEYS_ALLOC,
	             deadline, &t, err, errlen);

	if (r < 0)
		return r;
	r = scsi_pr_parse_read_keys(t->datain.data, (size_t)t->datain.size, ret);
	if (r < 0)
		errbuf_set(err, errlen, "'%s': PR IN READ KEYS: malformed answer", h->url.text);
	else if (ret->n < ret->total) {
		errbuf_set(err, errlen,
		           "'%s': PR IN READ KEYS: %zu registrations, more than the %zu read: "
		           "cannot tell which keys are registered (stale registrations: see "
		           "fencing/SCSI-PR.md, \"Nexus, not node\")",
		           h->url.text, ret->total, ret->n);
		r = -EOVERFLOW;
	}
	scsi_free_scsi_task(t);
	return r;
}

int scsi_pr_read_reservation(struct scsi_pr *h, usec_t deadline, struct scsi_pr_reservation *ret,
                             char *err, size_t errlen)
{
	struct scsi_task *t = NULL;
	int r = prin(h, "PR IN READ RESERVATION", SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 24,
	             deadline, &t, err, errlen);

	if (r < 0)
		return r;
	r = scsi_pr_parse_read_reservation(t->datain.data, (size_t)t->datain.size, ret);
	if (r < 0)
		errbuf_set(err, errlen, "'%s': PR IN READ RESERVATION: malformed answer",
		           h->url.text);
	scsi_free_scsi_task(t);
	return r;
}

int scsi_pr_read_full_status(struct scsi_pr *h, usec_t deadline, struct scsi_pr_full_status *ret,
                             char *err, size_t errlen)
{
	struct scsi_task *t = NULL;
	int r = prin(h, "PR IN READ FULL STATUS", SCSI_PERSISTENT_RESERVE_READ_FULL_STATUS,
	             PRIN_FULL_ALLOC, deadline, &t, err, errlen);

	if (r < 0)
		return r;
	r = scsi_pr_parse_full_status(t->datain.data, (size_t)t->datain.size, ret);
	if (r < 0)
		errbuf_set(err, errlen, "'%s': PR IN READ FULL STATUS: malformed answer",
		           h->url.text);
	scsi_free_scsi_task(t);
	return r;
}
