/* metastore: recovery into the in-memory index (index.c), the write path
 * with group commit, snapshots and the offline check/repair.  See
 * metastore.h for the contract and storage/FORMAT.md for what is on the
 * volume.
 *
 * Recovery order: newest snapshot S (must be complete: SNAP_BEGIN, PUTs,
 * SNAP_END with the right count), then segments in first-seq order.  Segment
 * k covers seqs [first_k, first_k+1); records at or beyond first_k+1 were
 * written by a fenced writer after a new master started segment k+1 and are
 * discarded.  Within that range seqs must be consecutive and epochs must not
 * go backwards.  Only the last segment may end in a torn tail; it is cut back
 * to its last valid record.  Anything else is damage: startup stops and the
 * message names `kubefencectl journal check|repair`. */
#include "config.h"

#include "storage/metastore.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "storage/index.h"
#include "storage/journal.h"

#define DEFAULT_SNAP_BYTES   (64ull << 20)
#define DEFAULT_SNAP_RECORDS 1000000ull
#define DEFAULT_SNAP_MIN     4096ull
#define SNAP_BUF_SIZE        (1u << 20)
/* Recovery pre-sizes the hash table to one bucket per this many bytes of
 * journal and snapshot: a record is 40 bytes of header plus its key and
 * value, so this slightly over-counts stores of ~100-byte records (load
 * <= 1) without reserving a bucket per minimal 41-byte record (8x the
 * memory for typical stores). */
#define RECOVERY_BYTES_PER_KEY 128

/* Where recovery found damage, for messages and repair. */
enum damage_kind {
	DAMAGE_NONE = 0,
	DAMAGE_SEGMENT,  /* bad bytes in a segment at `offset` with valid records after */
	DAMAGE_SNAPSHOT, /* the newest snapshot is unusable */
	DAMAGE_GAP,      /* missing records before segment `unit` */
	DAMAGE_EPOCH,    /* the epoch cell is unreadable */
};

struct metastore {
	struct backend *b;
	struct metastore_options opts;
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* the live state: loaded by recovery, sealed before the store opens */
	struct index *ix;

	/* write state, under lock */
	uint64_t last_seq;    /* last record written */
	uint64_t synced_seq;  /* last record known durable */
	uint64_t commit_mark; /* the value of the last COMMIT record appended */
	bool syncing;         /* a sync (or a snapshot) is running */
	bool confirming;      /* a read's epoch check is running */
	int appends_held;     /* readers holding new appends back (read_barrier) */
	uint64_t confirms_begun, confirms_done; /* read epoch checks */
	usec_t read_check_failing_since;        /* mono; 0: the last check passed */
	int dead;                               /* 0, or the error every later write returns */
	char dead_why[160];                     /* why, for the answers of later calls */
	uint8_t *wbuf;
	struct metastore_stats st;
	uint64_t journal_records;
	/* after a failed automatic snapshot: every rule but the half-full
	 * ring waits until journal_records reaches this (0: no wait) */
	uint64_t snap_retry_records;
	uint64_t seg_first; /* first seq of the current segment */

	/* background snapshots (backends with clone), under lock */
	pthread_t snap_thread;
	bool snap_thread_started;
	bool snap_stop;     /* metastore_close: the builder gives up and ends */
	uint64_t snap_want; /* newest snapshot point cut (0: none) */
	uint64_t snap_done; /* newest snapshot point the builder finished with */
	int snap_result;    /* its outcome */
	char snap_err[512];

	/* recovery */
	uint64_t volume_epoch;
	uint64_t replay_epoch; /* newest epoch among the records replayed */
	enum damage_kind damage;
	struct backend_unit damage_unit;
	uint64_t damage_offset;
	uint64_t expected_seq; /* next seq recovery expects */
	uint64_t seg_limit;    /* first seq of the following segment */
	uint64_t leftover;     /* records of fenced writers discarded */
	uint64_t snap_seq, snap_count, snap_seen;
	uint64_t snap_covered;         /* seq the chosen snapshot holds (0: none) */
	uint64_t unit_epoch;           /* the epoch in the name of the unit being read */
	uint64_t stale_units;          /* units of fenced writers left out */
	uint64_t seg_commit;           /* the largest COMMIT value in the segment being read */
	struct backend_unit last_unit; /* the last segment recovery read */
	bool have_last_unit;
	bool snap_begun, snap_ended;
	uint64_t recover_limit; /* > 0: read only the units of seqs <= this */
	bool compacting;        /* a background snapshot's private store */
	const char *replay_error;
	char hint[9000];
};

/* --------------------------------------------------------------- recovery */

struct unit_reader {
	struct backend *b;
	const struct backend_unit *u;
};

static ssize_t unit_read(void *userdata, uint64_t off, void *buf, size_t len)
{
	struct unit_reader *ur = userdata;

	return ur->b->ops->read(ur->b, ur->u, off, buf, len);
}

static void note_epoch(struct metastore *m, uint64_t epoch)
{
	if (epoch > m->replay_epoch)
		m->replay_epoch = epoch;
	if (epoch > m->volume_epoch)
		m->volume_epoch = epoch;
}

/* Every this many records, recovery asks opts.cancelled again, so that a
 * long replay can be called off within it. */
#define RECOVERY_CANCEL_EVERY 65536

static bool replay_cancelled(struct metastore *m)
{
	return (m->st.records_replayed % RECOVERY_CANCEL_EVERY) == 0 && m->opts.cancelled &&
	       m->opts.cancelled(m->opts.cancelled_userdata);
}

static int snapshot_record(void *userdata, const struct journal_record *r, uint64_t off)
{
	struct metastore *m = userdata;

	if (r->seq != m->snap_seq) {
		m->replay_error = "record sequence differs from the snapshot's";
		return -EBADMSG;
	}
	if (m->unit_epoch && r->epoch != m->unit_epoch) {
		m->replay_error = "record epoch differs from the snapshot's";
		return -EBADMSG;
	}
	note_epoch(m, r->epoch);
	switch (r->type) {
	case JOURNAL_SNAP_BEGIN:
		if (m->snap_begun) {
			m->replay_error = "second SNAP_BEGIN";
			return -EBADMSG;
		}
		m->snap_begun = true;
		m->snap_count = journal_get_le64(r->value);
		return 0;
	case JOURNAL_PUT:
		if (!m->snap_begun || m->snap_ended) {
			m->replay_error = "PUT outside SNAP_BEGIN..SNAP_END";
			return -EBADMSG;
		}
		m->snap_seen++;
		m->st.records_replayed++;
		if (replay_cancelled(m))
			return -ECANCELED;
		return index_put(m->ix, r->key, r->key_len, r->value, r->value_len);
	case JOURNAL_SNAP_END:
		if (!m->snap_begun || m->snap_ended || journal_get_le64(r->value) != m->snap_seen ||
		    m->snap_seen != m->snap_count) {
			m->replay_error = "SNAP_END count mismatch";
			return -EBADMSG;
		}
		m->snap_ended = true;
		return 0;
	default:
		m->replay_error = "unexpected record type in a snapshot";
		return -EBADMSG;
	}
}

static int segment_record(void *userdata, const struct journal_record *r, uint64_t off)
{
	struct metastore *m = userdata;

	if (r->type == JOURNAL_PAD)
		return 0;
	if (r->type == JOURNAL_COMMIT) {
		uint64_t v = journal_get_le64(r->value);

		if (v > m->seg_commit)
			m->seg_commit = v;
		return 0;
	}
	if (m->unit_epoch && r->epoch != m->unit_epoch) {
		/* every record of a segment is its creator's */
		m->replay_error = "a record of another epoch than the segment's: two writers "
		                  "interleaved";
		m->damage_offset = off;
		return -EUCLEAN;
	}
	if (r->seq <= m->snap_covered)
		return 0; /* covered by the snapshot */
	if (r->seq < m->expected_seq) {
		/* never skipped: a record whose seq was replayed already means
		 * two writers appended to one segment */
		m->replay_error = "a sequence number seen before: two writers interleaved";
		m->damage_offset = off;
		return -EUCLEAN;
	}
	if (r->seq >= m->seg_limit) {
		m->leftover++;
		return 1; /* a fenced writer's late records: the next segment wins */
	}
	if (r->seq != m->expected_seq) {
		m->replay_error = "sequence gap";
		m->damage_offset = off;
		return -EUCLEAN;
	}
	if (r->epoch < m->replay_epoch) {
		m->replay_error = "epoch goes backwards";
		m->damage_offset = off;
		return -EUCLEAN;
	}
	note_epoch(m, r->epoch);
	m->expected_seq++;
	m->st.records_replayed++;
	if (replay_cancelled(m))
		return -ECANCELED;
	m->journal_records++;
	switch (r->type) {
	case JOURNAL_PUT:
		return index_put(m->ix, r->key, r->key_len, r->value, r->value_len);
	case JOURNAL_DEL: {
		int dr = index_delete(m->ix, r->key, r->key_len); /* in record order */

		return dr < 0 ? dr : 0;
	}
	case JOURNAL_BARRIER:
		return 0;
	default:
		m->replay_error = "snapshot record in a journal segment";
		m->damage_offset = off;
		return -EUCLEAN;
	}
}

static const char *repair_hint(struct metastore *m)
{
	const char *dir = backend_dir_path(m->b);

	snprintf(m->hint, sizeof(m->hint),
	         "inspect with 'kubefencectl journal check --data-dir %s' and repair with "
	         "'kubefencectl journal repair --data-dir %s' (damaged files are kept aside)",
	         dir ? dir : "DIR", dir ? dir : "DIR");
	return m->hint;
}

static void set_damage(struct metastore *m, enum damage_kind kind, const struct backend_unit *u,
                       uint64_t offset)
{
	m->damage = kind;
	if (u)
		m->damage_unit = *u;
	m->damage_offset = offset;
}

static int load_snapshot(struct metastore *m, const struct backend_unit *u, char *err,
                         size_t errlen)
{
	struct unit_reader ur = {m->b, u};
	struct journal_scan_result res;
	int r;

	m->snap_seq = u->id;
	m->replay_error = NULL;
	r = journal_scan(unit_read, &ur, u->size, snapshot_record, m, &res);
	if (r == -ENOMEM || (r < 0 && r != -EBADMSG)) {
		errbuf_set(err, errlen, "cannot read snapshot '%s': %s", u->name, strerror(-r));
		return r;
	}
	if (r == 0 && res.status == JOURNAL_SCAN_CLEAN && m->snap_ended)
		return 0;
	set_damage(m, DAMAGE_SNAPSHOT, u, r == 0 ? res.bad_offset : 0);
	errbuf_set(err, errlen,
	           "snapshot '%s' is damaged (%s at offset %" PRIu64 "); refusing to start; %s",
	           u->name,
	           m->replay_error ? m->replay_error
	           : res.why       ? res.why
	                           : "incomplete snapshot",
	           r == 0 ? res.bad_offset : res.valid_end, repair_hint(m));
	return -EBADMSG;
}

/* Are the bytes of u from `from` to its end all zeros (what a block backend
 * leaves after the last record)?  Read errors count as "no": the caller then
 * treats the bytes as a torn tail. */
static bool zero_tail(struct backend *b, const struct backend_unit *u, uint64_t from)
{
	static const uint8_t zeros[4096];
	uint8_t *buf = malloc(1u << 20);
	bool zero = buf != NULL;

	while (zero && from < u->size) {
		ssize_t n = b->ops->read(b, u, from, buf, 1u << 20);

		if (n <= 0) {
			zero = n == 0;
			break;
		}
		for (ssize_t i = 0; zero && i < n; i += (ssize_t)sizeof(zeros)) {
			size_t len =
			        (size_t)(n - i) < sizeof(zeros) ? (size_t)(n - i) : sizeof(zeros);

			zero = memcmp(buf + i, zeros, len) == 0;
		}
		from += (uint64_t)n;
	}
	free(buf);
	return zero;
}

/* Replay everything; fills the index, last_seq and volume_epoch. */
/* Which units make up the history.  Units carry the epoch of the writer
 * that created them, and a writer of epoch E begins its segment at the seq
 * after everything it recovered; so, in (first seq, epoch) order, a segment
 * of an epoch older than one already seen was created by a fenced writer
 * after a newer one began: none of its records was acknowledged, and it is
 * left out.  A snapshot is left out for the same reason when a segment of a
 * newer epoch begins at or before the seq it holds (a fenced writer took
 * it; it may hold records nobody acknowledged).  Returns the number of
 * segments kept in segs (in order) and the snapshot to start from. */
static size_t history_units(struct metastore *m, const struct backend_unit *units, size_t n,
                            const struct backend_unit **segs, const struct backend_unit **ret_snap)
{
	size_t nseg = 0;
	uint64_t maxe = 0;

	*ret_snap = NULL;
	for (size_t i = 0; i < n; i++) {
		if (units[i].kind != BACKEND_SEGMENT)
			continue;
		if (units[i].epoch < maxe) {
			log_warning("journal '%s' of epoch %" PRIu64
			            " was created after epoch %" PRIu64
			            " began: a fenced writer's, never acknowledged; left out",
			            units[i].name, units[i].epoch, maxe);
			m->stale_units++;
			continue;
		}
		maxe = units[i].epoch;
		segs[nseg++] = &units[i];
	}
	for (size_t i = n; i-- > 0;) {
		const struct backend_unit *u = &units[i];
		const struct backend_unit *newer = NULL;

		if (u->kind != BACKEND_SNAPSHOT)
			continue;
		for (size_t k = 0; k < nseg && !newer; k++)
			if (segs[k]->epoch > u->epoch && segs[k]->id <= u->id)
				newer = segs[k];
		if (!newer) {
			*ret_snap = u; /* sorted: the newest usable one */
			break;
		}
		log_warning("snapshot '%s' of epoch %" PRIu64 " covers seq %" PRIu64
		            " but epoch %" PRIu64 " began at seq %" PRIu64
		            " ('%s'): a fenced writer's; left out",
		            u->name, u->epoch, u->id, newer->epoch, newer->id, newer->name);
		m->stale_units++;
	}
	return nseg;
}

struct offset_reader {
	struct backend *b;
	const struct backend_unit *u;
	uint64_t base;
};

static ssize_t offset_read(void *userdata, uint64_t off, void *buf, size_t len)
{
	struct offset_reader * or = userdata;

	return or->b->ops->read(or->b, or->u, or->base + off, buf, len);
}

static int commit_record(void *userdata, const struct journal_record *r, uint64_t off)
{
	struct metastore *m = userdata;

	(void)off;
	if (r->type == JOURNAL_COMMIT && journal_get_le64(r->value) > m->seg_commit)
		m->seg_commit = journal_get_le64(r->value);
	return 0;
}

/* The largest COMMIT value anywhere in u from `from` on, across further
 * damage: what the writer knew durable when it wrote the batch in flight.
 * Returns 0 or -errno. */
static int commits_from(struct metastore *m, const struct backend_unit *u, uint64_t from)
{
	while (from < u->size) {
		struct offset_reader or = {m->b, u, from};
		struct journal_scan_result res;
		int r = journal_scan(offset_read, & or, u->size - from, commit_record, m, &res);

		if (r < 0)
			return r;
		if (res.status != JOURNAL_SCAN_CORRUPT || res.next_valid == 0)
			return 0;
		from += res.next_valid;
	}
	return 0;
}

static bool open_cancelled(struct metastore *m, char *err, size_t errlen)
{
	if (!m->opts.cancelled || !m->opts.cancelled(m->opts.cancelled_userdata))
		return false;
	errbuf_set(err, errlen, "opening '%s' was called off", m->b->desc);
	return true;
}

static int recover(struct metastore *m, char *err, size_t errlen)
{
	struct backend_unit *units = NULL;
	const struct backend_unit **segs = NULL;
	size_t n = 0, nseg = 0;
	const struct backend_unit *snap = NULL;
	uint64_t first_needed;
	int r;

	r = m->b->ops->list(m->b, &units, &n);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot list '%s': %s", m->b->desc, strerror(-r));
		goto out;
	}
	if (m->recover_limit) {
		/* a background snapshot at S: the sealed units, none after S */
		size_t kept = 0;

		for (size_t i = 0; i < n; i++)
			if (units[i].id <= m->recover_limit)
				units[kept++] = units[i];
		n = kept;
	}
	segs = calloc(n ? n : 1, sizeof(*segs));
	if (!segs) {
		r = -ENOMEM;
		errbuf_set(err, errlen, "out of memory");
		goto out;
	}
	nseg = history_units(m, units, n, segs, &snap);
	/* Size the hash table once for what the units can hold: one key per
	 * RECOVERY_BYTES_PER_KEY bytes (a 40-byte header plus a small key and
	 * value); the table still grows if the guess is low. */
	{
		uint64_t bytes = 0;

		for (size_t i = 0; i < n; i++)
			bytes += units[i].size;
		index_presize(m->ix, bytes / RECOVERY_BYTES_PER_KEY);
	}
	m->expected_seq = 1;
	m->snap_covered = 0;
	if (snap) {
		if (!m->compacting)
			(void)FAILPOINT(METASTORE_RECOVER_UNIT);
		m->unit_epoch = snap->epoch;
		r = load_snapshot(m, snap, err, errlen);
		if (r < 0)
			goto out;
		m->expected_seq = snap->id + 1;
		m->snap_covered = snap->id;
	}
	first_needed = m->expected_seq;
	for (size_t k = 0; k < nseg; k++) {
		const struct backend_unit *u = segs[k];
		struct unit_reader ur = {m->b, u};
		struct journal_scan_result res;
		bool last = k + 1 == nseg;

		m->unit_epoch = u->epoch;
		m->seg_commit = 0;
		m->last_unit = *u;
		m->have_last_unit = true;
		m->seg_limit = last ? UINT64_MAX : segs[k + 1]->id;
		if (m->seg_limit <= first_needed)
			continue; /* wholly covered by the snapshot */
		if (u->id > m->expected_seq) {
			set_damage(m, DAMAGE_GAP, u, 0);
			errbuf_set(err, errlen,
			           "journal '%s' starts at seq %" PRIu64 " but seq %" PRIu64
			           " is missing (a segment or snapshot is lost); refusing to "
			           "start; %s",
			           u->name, u->id, m->expected_seq, repair_hint(m));
			r = -EUCLEAN;
			goto out;
		}
		m->replay_error = NULL;
		m->leftover = 0;
		if (!m->compacting)
			(void)FAILPOINT(METASTORE_RECOVER_UNIT);
		if (open_cancelled(m, err, errlen)) {
			r = -ECANCELED;
			goto out;
		}
		r = journal_scan(unit_read, &ur, u->size, segment_record, m, &res);
		if (r == -EUCLEAN) {
			set_damage(m, DAMAGE_SEGMENT, u, m->damage_offset);
			errbuf_set(err, errlen,
			           "journal '%s' is damaged at offset %" PRIu64
			           " (%s); refusing to start; %s",
			           u->name, m->damage_offset, m->replay_error, repair_hint(m));
			goto out;
		}
		if (r < 0) {
			errbuf_set(err, errlen, "cannot replay journal '%s': %s", u->name,
			           strerror(-r));
			goto out;
		}
		m->st.bytes_replayed += res.valid_end;
		m->st.journal_bytes += res.valid_end;
		if (m->leftover)
			log_warning("journal '%s': discarding records from seq %" PRIu64
			            " on, written by a fenced writer after '%s' began",
			            u->name, m->seg_limit, segs[k + 1]->name);
		if (res.status == JOURNAL_SCAN_CORRUPT && last) {
			/* Valid records after bad bytes: damage to what was
			 * acknowledged, or a power cut that kept the later bytes
			 * of the unsynced batch in flight but not earlier ones?
			 * Each group commit appends COMMIT(last seq durable
			 * before it); if no COMMIT, even after the bad bytes,
			 * names a seq beyond what replayed cleanly, everything
			 * from the bad bytes on belongs to a batch that was never
			 * synced, never acknowledged: a tail to cut, not damage. */
			r = commits_from(m, u, res.next_valid);
			if (r < 0) {
				errbuf_set(err, errlen, "cannot read journal '%s': %s", u->name,
				           strerror(-r));
				goto out;
			}
			if (m->seg_commit <= m->expected_seq - 1) {
				log_warning(
				        "journal '%s': bad bytes at offset %" PRIu64
				        " (%s) with valid records after them, all past seq %" PRIu64
				        ", the last one known durable: an unsynced batch that "
				        "a power cut kept in part",
				        u->name, res.bad_offset, res.why, m->seg_commit);
				res.status = JOURNAL_SCAN_TORN;
			}
		}
		if (res.status == JOURNAL_SCAN_CORRUPT) {
			set_damage(m, DAMAGE_SEGMENT, u, res.bad_offset);
			errbuf_set(err, errlen,
			           "journal '%s' is damaged at offset %" PRIu64
			           " (%s) and valid records follow at offset %" PRIu64
			           "; refusing to start; %s",
			           u->name, res.bad_offset, res.why, res.next_valid,
			           repair_hint(m));
			r = -EUCLEAN;
			goto out;
		}
		if (res.status == JOURNAL_SCAN_TORN && last && !m->opts.read_only &&
		    m->b->ops->block_size(m->b) > 1 && zero_tail(m->b, u, res.valid_end)) {
			/* a block backend's zeroed space after the last record:
			 * the end of the stream, not a torn write */
			r = m->b->ops->truncate(m->b, u, res.valid_end);
			if (r < 0) {
				errbuf_set(err, errlen, "cannot cut '%s' at its end: %s", u->name,
				           strerror(-r));
				goto out;
			}
		} else if (res.status == JOURNAL_SCAN_TORN) {
			uint64_t cut = u->size - res.valid_end;

			if (!last) {
				/* fine only if the next segment continues exactly here;
				 * the gap check of the next iteration decides */
				log_warning("journal '%s': ignoring %" PRIu64
				            " invalid bytes at offset %" PRIu64 " (%s)",
				            u->name, cut, res.valid_end, res.why);
			} else if (m->opts.read_only) {
				log_warning("journal '%s': torn tail at offset %" PRIu64
				            " (%s), %" PRIu64 " bytes; not cut (read-only)",
				            u->name, res.valid_end, res.why, cut);
				m->st.torn_bytes_cut = cut;
			} else {
				log_warning("journal '%s': torn tail at offset %" PRIu64
				            " (%s), cutting %" PRIu64
				            " bytes (an unacknowledged write)",
				            u->name, res.valid_end, res.why, cut);
				r = m->b->ops->truncate(m->b, u, res.valid_end);
				if (r < 0) {
					errbuf_set(err, errlen, "cannot cut torn tail of '%s': %s",
					           u->name, strerror(-r));
					goto out;
				}
				m->st.torn_bytes_cut = cut;
			}
		}
	}
	m->last_seq = m->expected_seq - 1;
	m->synced_seq = m->last_seq;
	r = index_seal(m->ix);
	if (r < 0)
		errbuf_set(err, errlen, "out of memory building the index");
out:
	free(segs);
	free(units);
	return r;
}

/* ------------------------------------------------------------------ open */

static struct metastore *store_new(struct backend *b, const struct metastore_options *opts)
{
	struct metastore *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->b = b;
	if (opts)
		m->opts = *opts;
	if (!m->opts.snapshot_bytes)
		m->opts.snapshot_bytes = DEFAULT_SNAP_BYTES;
	if (!m->opts.snapshot_records)
		m->opts.snapshot_records = DEFAULT_SNAP_RECORDS;
	if (!m->opts.snapshot_min_records)
		m->opts.snapshot_min_records = DEFAULT_SNAP_MIN;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->ix = index_new();
	m->wbuf = malloc(JOURNAL_RECORD_MAX);
	if (!m->ix || !m->wbuf)
		return metastore_close(m);
	return m;
}

struct metastore *metastore_close(struct metastore *m)
{
	if (!m)
		return NULL;
	if (m->snap_thread_started) {
		pthread_mutex_lock(&m->lock);
		__atomic_store_n(&m->snap_stop, true, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		(void)pthread_join(m->snap_thread, NULL);
	}
	index_free(m->ix);
	free(m->wbuf);
	if (m->b)
		m->b->ops->close(m->b);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
	return NULL;
}

static int write_barrier(struct metastore *m, char *err, size_t errlen)
{
	uint8_t prev[8];
	uint64_t seq = m->last_seq + 1, cur = 0;
	ssize_t n;
	int r;

	journal_put_le64(prev, m->last_seq);
	n = journal_encode(m->wbuf, JOURNAL_RECORD_MAX, JOURNAL_BARRIER, seq, m->opts.epoch, NULL,
	                   0, prev, sizeof(prev));
	if (n < 0)
		return (int)n;
	r = m->b->ops->segment_start(m->b, seq);
	if (r >= 0)
		r = m->b->ops->append(m->b, m->wbuf, (size_t)n, true);
	if (r >= 0)
		r = m->b->ops->epoch_check(m->b, &cur);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot write the epoch barrier to '%s': %s", m->b->desc,
		           strerror(-r));
		return r == -EACCES || r == -EBADE ? -ESTALE : r;
	}
	if (cur > m->opts.epoch) {
		errbuf_set(err, errlen, "'%s' was taken over by epoch %" PRIu64 " while opening",
		           m->b->desc, cur);
		return -ESTALE;
	}
	m->last_seq = m->synced_seq = seq;
	m->seg_first = seq;
	m->st.journal_bytes += (uint64_t)n;
	return 0;
}

int metastore_open(struct backend *b, const struct metastore_options *opts, struct metastore **ret,
                   char *err, size_t errlen)
{
	struct metastore *m;
	uint64_t cell = 0;
	int r;

	m = store_new(b, opts);
	if (!m) {
		b->ops->close(b);
		errbuf_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* from here on the backend creates units of this epoch only and
	 * touches nothing of a newer one */
	b->epoch = opts->read_only ? 0 : opts->epoch;
	r = b->ops->epoch_get(b, &cell);
	if (r < 0) {
		if (r == -EBADMSG) {
			set_damage(m, DAMAGE_EPOCH, NULL, 0);
			errbuf_set(err, errlen, "the epoch cell of '%s' is damaged; %s", b->desc,
			           repair_hint(m));
		} else {
			errbuf_set(err, errlen, "cannot read the epoch of '%s': %s", b->desc,
			           strerror(-r));
		}
		goto fail;
	}
	/* Claim the volume BEFORE reading it.  A fenced writer re-checks the
	 * epoch cell after each sync and acknowledges nothing once it has
	 * changed; so every write it did acknowledge was durable before this
	 * store was claimed, and the recovery below reads it.  Claiming after
	 * the recovery would leave a window in which the old writer
	 * acknowledges a record that the new master never read. */
	if (cell > m->opts.epoch && !m->opts.read_only) {
		errbuf_set(err, errlen,
		           "'%s' holds epoch %" PRIu64 ", newer than ours (%" PRIu64
		           "): another master took over",
		           b->desc, cell, m->opts.epoch);
		r = -ESTALE;
		goto fail;
	}
	if (open_cancelled(m, err, errlen)) {
		r = -ECANCELED;
		goto fail;
	}
	if (!m->opts.read_only && m->opts.epoch > cell) {
		r = b->ops->epoch_set(b, m->opts.epoch);
		if (r < 0) {
			errbuf_set(err, errlen, "cannot store epoch %" PRIu64 " in '%s': %s",
			           m->opts.epoch, b->desc, strerror(-r));
			if (r == -EACCES || r == -EBADE)
				r = -ESTALE;
			goto fail;
		}
	}
	(void)FAILPOINT(METASTORE_OPEN_AFTER_CLAIM);
	r = recover(m, err, errlen);
	note_epoch(m, cell);
	if (r < 0)
		goto fail;
	m->st.volume_epoch = m->volume_epoch;
	if (m->opts.epoch < m->volume_epoch && !m->opts.read_only) {
		errbuf_set(err, errlen,
		           "'%s' holds epoch %" PRIu64 ", newer than ours (%" PRIu64
		           "): another master took over",
		           b->desc, m->volume_epoch, m->opts.epoch);
		r = -ESTALE;
		goto fail;
	}
	/* The previous writer's last batch may be in the page cache only; this
	 * writer builds on it, so it must not vanish in a power cut now. */
	if (!m->opts.read_only && m->have_last_unit && m->b->ops->sync_unit) {
		r = m->b->ops->sync_unit(m->b, &m->last_unit);
		if (r < 0) {
			errbuf_set(err, errlen, "cannot sync '%s': %s", m->last_unit.name,
			           strerror(-r));
			goto fail;
		}
	}
	if (!m->opts.read_only) {
		r = FAILPOINT(METASTORE_OPEN_BEFORE_BARRIER);
		if (r < 0)
			errbuf_set(err, errlen, "fault point: %s", strerror(-r));
		else if (open_cancelled(m, err, errlen))
			r = -ECANCELED;
		else
			r = write_barrier(m, err, errlen);
		if (r < 0)
			goto fail;
	}
	log_info("opened '%s' at epoch %" PRIu64 ": %zu keys, last seq %" PRIu64 ", %" PRIu64
	         " records replayed",
	         b->desc, m->opts.epoch, index_count(m->ix), m->last_seq, m->st.records_replayed);
	*ret = m;
	return 0;
fail:
	metastore_close(m);
	return r;
}

int metastore_open_dir(const char *dir, const struct metastore_options *opts,
                       struct metastore **ret, char *err, size_t errlen)
{
	struct backend *b;
	int r;

	r = backend_dir_open(dir, !(opts && opts->read_only), &b, err, errlen);
	if (r < 0)
		return r;
	return metastore_open(b, opts, ret, err, errlen);
}

/* ------------------------------------------------------------ write path */

/* The store cannot write any more; called with the lock held. */
static void store_die(struct metastore *m, int r, const char *what)
{
	if (m->dead)
		return;
	if (r == -EBADE || r == -EACCES) {
		/* -EBADE is the LUN backend's RESERVATION CONFLICT */
		m->dead = -ESTALE;
		snprintf(m->dead_why, sizeof(m->dead_why),
		         "stepped down: the storage refused a %s (%s): this node was fenced", what,
		         r == -EBADE ? "RESERVATION CONFLICT" : "access denied");
		log_error("'%s': stepped down at seq %" PRIu64 ": the storage refused the %s (%s: "
		          "this node was fenced); every later write fails with ESTALE",
		          m->b->desc, m->synced_seq, what,
		          r == -EBADE ? "RESERVATION CONFLICT" : "access denied");
	} else if (r == -ESTALE) {
		m->dead = -ESTALE;
		snprintf(m->dead_why, sizeof(m->dead_why),
		         "stepped down: a newer epoch owns the store");
		log_error("'%s': stepped down at seq %" PRIu64 " (%s: a newer epoch owns the "
		          "store); every later write fails with ESTALE",
		          m->b->desc, m->synced_seq, what);
	} else if (r == -ENOSPC && m->b->ops->journal_room) {
		/* a bounded journal (a LUN's ring) full: the snapshots that
		 * would have emptied it do not fit either */
		m->dead = r;
		snprintf(m->dead_why, sizeof(m->dead_why),
		         "the store is full: its device is too small for the data it holds");
		log_error(
		        "'%s': %s failed at seq %" PRIu64 ": the journal ring is full and no "
		        "snapshot of the data fits the device (see the snapshot warnings): the "
		        "device is too small for this data set; the store accepts no more writes. "
		        "Give it a larger LUN (storage/FORMAT.md, 'How large a LUN')",
		        m->b->desc, what, m->synced_seq);
	} else {
		m->dead = r;
		log_error("'%s': %s failed: %s; the store accepts no more writes", m->b->desc, what,
		          strerror(-r));
	}
	pthread_cond_broadcast(&m->cond);
}

/* The backend's epoch check: 0 while the volume holds no epoch newer than
 * ours, -ESTALE (logged) once it does, or the check's own error.  Needs no
 * lock (opts.epoch never changes); may block on the backend. */
static int epoch_is_ours(struct metastore *m)
{
	uint64_t cur = 0;
	int r = m->b->ops->epoch_check(m->b, &cur);

	if (r >= 0 && cur > m->opts.epoch) {
		log_warning("'%s' now holds epoch %" PRIu64 " (ours %" PRIu64 ")", m->b->desc, cur,
		            m->opts.epoch);
		r = -ESTALE;
	}
	return r;
}

/* One sync + epoch check; lock held on entry and exit, released during the
 * sync when group commit is on. */
static int sync_once(struct metastore *m)
{
	uint64_t target = m->last_seq;
	bool group = !m->opts.no_group_commit;
	int r;

	/* COMMIT(what is durable already) goes into this batch: recovery
	 * learns from it that bad bytes after those records are an unsynced
	 * batch's, not damage (see recover()). */
	if (m->synced_seq > m->commit_mark && !m->dead) {
		uint8_t c[JOURNAL_HEADER_SIZE + 8], v[8];
		ssize_t n;

		journal_put_le64(v, m->synced_seq);
		n = journal_encode(c, sizeof(c), JOURNAL_COMMIT, 0, m->opts.epoch, NULL, 0, v,
		                   sizeof(v));
		if (n > 0 && m->b->ops->append(m->b, c, (size_t)n, false) >= 0) {
			m->commit_mark = m->synced_seq;
			m->st.journal_bytes += (uint64_t)n;
		}
	}
	m->syncing = true;
	if (group)
		pthread_mutex_unlock(&m->lock);
	r = FAILPOINT(METASTORE_COMMIT_BEFORE_SYNC);
	if (r >= 0)
		r = m->b->ops->sync(m->b);
	if (r >= 0) {
		(void)FAILPOINT(METASTORE_COMMIT_BEFORE_CHECK);
		r = epoch_is_ours(m);
	}
	if (group)
		pthread_mutex_lock(&m->lock);
	m->syncing = false;
	if (r < 0)
		store_die(m, r, "sync");
	else if (target > m->synced_seq)
		m->synced_seq = target;
	m->st.syncs++;
	pthread_cond_broadcast(&m->cond);
	return r;
}

/* Wait until seq is durable: the first waiter syncs for all queued. */
static int commit_wait(struct metastore *m, uint64_t seq)
{
	while (m->synced_seq < seq) {
		if (m->dead)
			return m->dead;
		if (!m->syncing)
			(void)sync_once(m);
		else
			pthread_cond_wait(&m->cond, &m->lock);
	}
	return 0;
}

static int snapshot_locked(struct metastore *m, bool wait, char *err, size_t errlen);

static int check_key(const void *key, size_t klen, char *err, size_t errlen)
{
	if (!key || klen == 0) {
		errbuf_set(err, errlen, "empty key");
		return -EINVAL;
	}
	if (klen > METASTORE_KEY_MAX) {
		errbuf_set(err, errlen, "key of %zu bytes exceeds the limit of %d bytes", klen,
		           METASTORE_KEY_MAX);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* A bounded journal (a LUN's ring) half full: time to snapshot, or the ring
 * fills and the store stops.  Lock held. */
static bool journal_half_full(struct metastore *m)
{
	uint64_t used = 0, cap = 0;

	if (!m->b->ops->journal_room)
		return false;
	m->b->ops->journal_room(m->b, &used, &cap);
	return cap && used >= cap / 2;
}

/* The journal records after which the live-keys rule asks for a snapshot:
 * as many as there are live keys, and at least snapshot_min_records. */
static uint64_t live_rule_records(struct metastore *m)
{
	uint64_t k = index_count(m->ix);

	return k > m->opts.snapshot_min_records ? k : m->opts.snapshot_min_records;
}

/* Time for an automatic snapshot (metastore_options).  Lock held. */
static bool snapshot_due(struct metastore *m)
{
	uint64_t n = m->journal_records;

	/* a ring half full cannot wait: that is retried at every write */
	if (n < m->snap_retry_records)
		return journal_half_full(m);
	if (m->st.journal_bytes >= m->opts.snapshot_bytes || n >= m->opts.snapshot_records)
		return true;
	/* the journal outgrew the live state: recovery would read more
	 * records than a snapshot holds */
	if (n >= live_rule_records(m))
		return true;
	return journal_half_full(m);
}

static int store_write(struct metastore *m, uint8_t type, const void *key, size_t klen,
                       const void *value, size_t vlen, char *err, size_t errlen)
{
	uint64_t seq;
	ssize_t n;
	int r;

	pthread_mutex_lock(&m->lock);
	/* a reader starved by writes holds appends back until it has read */
	while (m->appends_held > 0 && !m->dead)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->opts.read_only) {
		errbuf_set(err, errlen, "store opened read-only");
		r = -EROFS;
		goto out;
	}
	if (m->dead) {
		r = m->dead;
		if (r == -ESTALE)
			errbuf_set(err, errlen, "%s", m->dead_why);
		else
			errbuf_set(err, errlen, "'%s' failed earlier; reopen the store",
			           m->b->desc);
		goto out;
	}
	if (type == JOURNAL_DEL && !index_get(m->ix, key, klen, NULL, NULL)) {
		r = -ENOENT;
		goto out;
	}
	seq = m->last_seq + 1;
	n = journal_encode(m->wbuf, JOURNAL_RECORD_MAX, type, seq, m->opts.epoch, key, klen, value,
	                   vlen);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	/* From here on the record may be on the medium whatever fails: a
	 * newer master may recover it.  Such failures are -EINPROGRESS, the
	 * outcome unknown, never a definite "not written". */
	r = m->b->ops->append(m->b, m->wbuf, (size_t)n, false);
	if (r < 0) {
		store_die(m, r, "append");
		errbuf_set(err, errlen, "write to '%s' failed: %s", m->b->desc, strerror(-m->dead));
		r = -EINPROGRESS;
		goto out;
	}
	m->last_seq = seq;
	m->st.journal_bytes += (uint64_t)n;
	m->journal_records++;
	if (type == JOURNAL_PUT)
		r = index_put(m->ix, key, klen, value, vlen);
	else
		r = index_delete(m->ix, key, klen) < 0 ? -ENOMEM : 0; /* sealed: cannot fail */
	if (r < 0) {
		store_die(m, r, "index update");
		errbuf_set(err, errlen, "index update failed: %s", strerror(-r));
		r = -EINPROGRESS;
		goto out;
	}
	r = commit_wait(m, seq);
	if (r < 0) {
		if (r == -ESTALE)
			errbuf_set(err, errlen, "%s", m->dead_why);
		else
			errbuf_set(err, errlen,
			           "sync of '%s' failed; the store accepts no more writes",
			           m->b->desc);
		r = -EINPROGRESS;
		goto out;
	}
	m->st.writes++;
	if (snapshot_due(m)) {
		char serr[512];

		/* the write is durable either way; a failed snapshot is retried
		 * later */
		if (snapshot_locked(m, false, serr, sizeof(serr)) < 0) {
			/* not again at every write (each try writes the whole
			 * state): after as many records as the rule waits for */
			uint64_t wait = live_rule_records(m);

			m->snap_retry_records = wait > UINT64_MAX - m->journal_records
			                                ? UINT64_MAX
			                                : m->journal_records + wait;
			log_warning("automatic snapshot failed: %s; next try after %" PRIu64
			            " more records",
			            serr, m->snap_retry_records - m->journal_records);
		}
	}
	r = 0;
out:
	pthread_mutex_unlock(&m->lock);
	return r;
}

int metastore_put(struct metastore *m, const void *key, size_t key_len, const void *value,
                  size_t value_len, char *err, size_t errlen)
{
	int r = check_key(key, key_len, err, errlen);

	if (r < 0)
		return r;
	if (value_len > METASTORE_VALUE_MAX) {
		errbuf_set(err, errlen, "value of %zu bytes exceeds the limit of %d bytes",
		           value_len, METASTORE_VALUE_MAX);
		return -E2BIG;
	}
	if (!value && value_len) {
		errbuf_set(err, errlen, "NULL value");
		return -EINVAL;
	}
	return store_write(m, JOURNAL_PUT, key, key_len, value, value_len, err, errlen);
}

int metastore_delete(struct metastore *m, const void *key, size_t key_len, char *err, size_t errlen)
{
	int r = check_key(key, key_len, err, errlen);

	if (r < 0)
		return r;
	return store_write(m, JOURNAL_DEL, key, key_len, NULL, 0, err, errlen);
}

/* How long a read's epoch checks may keep failing with a passing error
 * (below) before the store gives up. */
#define READ_CHECK_FAILING_MAX (1 * USEC_PER_SEC)

/* Whether a read's failed epoch check may pass by itself: the target was
 * busy or not ready (SCSI BUSY, TASK SET FULL, NOT READY, a UNIT ATTENTION
 * that stayed), memory ran short.  Anything else leaves no store to read:
 * a fence (RESERVATION CONFLICT, a newer epoch), a lost session (the LUN
 * backend's is never re-established in place: every later command fails),
 * an I/O error. */
static bool read_check_may_pass(int r)
{
	return r == -EAGAIN || r == -EBUSY || r == -ENOMEM || r == -EINTR;
}

/* confirm_reads: wait for an epoch check that began after the call (one
 * under way began too early); the first waiter runs it for all, without
 * the lock.  A failed check kills the store unless its error may pass and
 * the checks have failed for less than READ_CHECK_FAILING_MAX: a master
 * whose reads can no longer be checked must step down (metastore_failed),
 * or a load of reads alone would keep it master of nothing.  Lock held.
 * Returns 0, or the error of the check or the one the store died of. */
static int confirm_read(struct metastore *m)
{
	uint64_t need = m->confirms_begun + 1;
	int r;

	while (m->confirms_done < need) {
		uint64_t mine;

		if (m->dead)
			return m->dead;
		if (m->confirming) {
			pthread_cond_wait(&m->cond, &m->lock);
			continue;
		}
		m->confirming = true;
		mine = ++m->confirms_begun;
		pthread_mutex_unlock(&m->lock);
		r = FAILPOINT(METASTORE_READ_BEFORE_CHECK);
		if (r >= 0)
			r = epoch_is_ours(m);
		pthread_mutex_lock(&m->lock);
		m->confirming = false;
		m->st.read_checks++;
		pthread_cond_broadcast(&m->cond);
		if (r < 0) {
			usec_t now = clock_mono_usec();

			if (!m->read_check_failing_since)
				m->read_check_failing_since = now;
			if (!read_check_may_pass(r) ||
			    now - m->read_check_failing_since >= READ_CHECK_FAILING_MAX) {
				store_die(m, r, "read's epoch check");
				return m->dead;
			}
			return r; /* this read fails; the next one checks again */
		}
		m->read_check_failing_since = 0;
		m->confirms_done = mine;
	}
	return 0;
}

/* Reads see only durable state.  The index takes a write before its group
 * commit's sync (so that the commit can batch), so a read waits until every
 * record in the index is durable and confirmed under this epoch: a value
 * read is one that no crash or failover can take back.  Writes appended
 * while the reader waits are waited for too; a reader that has waited two
 * rounds holds new appends back until it has read, so a stream of writes
 * cannot starve it.  With confirm_reads, an epoch check that began after
 * the call comes first (see metastore_options).  Lock held; returns with it
 * held and nothing undurable in the index, or the error the store died of
 * (-ESTALE when fenced) or of the check.  A caller that got 0 calls
 * read_done() after reading. */
static int read_barrier(struct metastore *m, bool *ret_held)
{
	int r, rounds = 0;

	*ret_held = false;
	if (m->opts.read_only)
		return 0;
	if (m->dead)
		return m->dead;
	if (m->opts.confirm_reads) {
		r = confirm_read(m);
		if (r < 0)
			return r;
	}
	while (m->synced_seq < m->last_seq) {
		if (++rounds > 2 && !*ret_held) {
			m->appends_held++;
			*ret_held = true;
		}
		r = commit_wait(m, m->last_seq);
		if (r < 0)
			goto fail;
	}
	if (m->dead) {
		r = m->dead;
		goto fail;
	}
	return 0;
fail:
	if (*ret_held) {
		m->appends_held--;
		*ret_held = false;
		pthread_cond_broadcast(&m->cond);
	}
	return r;
}

static void read_done(struct metastore *m, bool held)
{
	if (held) {
		m->appends_held--;
		pthread_cond_broadcast(&m->cond);
	}
}

int metastore_get(struct metastore *m, const void *key, size_t key_len, void **ret_value,
                  size_t *ret_len)
{
	const void *value;
	uint8_t *copy = NULL;
	size_t len = 0;
	bool held = false;
	int r = check_key(key, key_len, NULL, 0);

	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	r = read_barrier(m, &held);
	if (r < 0)
		goto out;
	if (!index_get(m->ix, key, key_len, &value, &len)) {
		r = -ENOENT;
		goto out;
	}
	copy = malloc(len + 1);
	if (!copy) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(copy, value, len + 1); /* with the index's NUL */
	r = 0;
out:
	read_done(m, held);
	pthread_mutex_unlock(&m->lock);
	if (r == 0) {
		*ret_value = copy;
		if (ret_len)
			*ret_len = len;
	}
	return r;
}

int metastore_list(struct metastore *m, const void *prefix, size_t prefix_len, metastore_list_fn cb,
                   void *userdata)
{
	bool held = false;
	int r;

	pthread_mutex_lock(&m->lock);
	r = read_barrier(m, &held);
	if (r >= 0)
		r = index_walk(m->ix, prefix, prefix_len, cb, userdata);
	read_done(m, held);
	pthread_mutex_unlock(&m->lock);
	return r;
}

int metastore_failed(struct metastore *m)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = m->dead;
	pthread_mutex_unlock(&m->lock);
	return r;
}

void metastore_get_stats(struct metastore *m, struct metastore_stats *ret)
{
	pthread_mutex_lock(&m->lock);
	*ret = m->st;
	ret->keys = index_count(m->ix);
	ret->last_seq = m->last_seq;
	pthread_mutex_unlock(&m->lock);
}

/* -------------------------------------------------------------- snapshots */

struct snap_writer {
	struct metastore *m;
	uint8_t *buf;
	size_t len;
	const bool *stop; /* snap_write_index's */
	size_t visited;
};

static int snap_emit(struct snap_writer *w, uint8_t type, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
	ssize_t n;
	int r;

	if (w->len + journal_record_size(klen, vlen) > SNAP_BUF_SIZE) {
		r = w->m->b->ops->snapshot_write(w->m->b, w->buf, w->len);
		if (r < 0)
			return r;
		w->len = 0;
	}
	n = journal_encode(w->buf + w->len, SNAP_BUF_SIZE - w->len, type, w->m->last_seq,
	                   w->m->opts.epoch, key, klen, val, vlen);
	if (n < 0)
		return (int)n;
	w->len += (size_t)n;
	return 0;
}

/* One PUT of the snapshot body (an index walk's callback). */
static int snap_emit_put(void *userdata, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct snap_writer *w = userdata;

	if (w->stop && (++w->visited & 4095) == 0 && __atomic_load_n(w->stop, __ATOMIC_RELAXED))
		return -ECANCELED;
	return snap_emit(w, JOURNAL_PUT, key, klen, val, vlen);
}

/* Emit the whole index of w->m as a snapshot body (SNAP_BEGIN, the PUTs in
 * key order, SNAP_END) through the backend's snapshot_write.  stop, when
 * set, is polled now and then: once true, gives up with -ECANCELED. */
static int snap_write_index(struct snap_writer *w, const bool *stop)
{
	struct metastore *m = w->m;
	uint8_t cnt[8];
	int r;

	w->stop = stop;
	w->visited = 0;
	journal_put_le64(cnt, index_count(m->ix));
	r = snap_emit(w, JOURNAL_SNAP_BEGIN, NULL, 0, cnt, 8);
	if (r >= 0) {
		r = index_walk(m->ix, NULL, 0, snap_emit_put, w);
		if (r > 0)
			r = 0; /* the number of keys */
	}
	if (r >= 0)
		r = snap_emit(w, JOURNAL_SNAP_END, NULL, 0, cnt, 8);
	if (r >= 0 && w->len)
		r = m->b->ops->snapshot_write(m->b, w->buf, w->len);
	return r;
}

/* After snapshot S of epoch `epoch` is durable: remove the segments it
 * covers, older snapshots and every unit of an older epoch (this writer's
 * first segment began after all records of older epochs it recovered, so
 * such a unit is either covered by S or a fenced writer's leftover; units
 * whose epoch the backend does not record, 0, go only by their seq).  The
 * backend re-checks the epoch before each removal.  Failures are logged
 * and retried at the next snapshot. */
static void remove_covered(struct backend *b, uint64_t epoch, uint64_t S)
{
	struct backend_unit *units = NULL;
	size_t n = 0;
	int r = b->ops->list(b, &units, &n);

	for (size_t i = 0; r >= 0 && i < n; i++)
		if ((units[i].kind == BACKEND_SEGMENT && units[i].id <= S) ||
		    (units[i].kind == BACKEND_SNAPSHOT && units[i].id < S) ||
		    (units[i].epoch && units[i].epoch < epoch))
			r = b->ops->remove(b, &units[i]);
	if (r < 0)
		log_warning("'%s': cannot remove units covered by snapshot %" PRIu64
		            ": %s; will retry at the next snapshot",
		            b->desc, S, strerror(-r));
	free(units);
}

/* Foreground snapshot, for backends without clone (the raw LUN).
 * Write order: (1) journal synced up to S; (2) snapshot S written, made
 * durable and visible (snapshot_commit); (3) segment S+1 started; (4) only
 * now segments < S+1 and older snapshots are removed.  A crash between any
 * two steps leaves a recoverable store.  Writers wait throughout. */
static int snapshot_fg_locked(struct metastore *m, char *err, size_t errlen)
{
	struct snap_writer w = {.m = m};
	uint64_t S;
	int r;

	if (m->opts.read_only)
		return -EROFS;
	while (m->syncing && !m->dead)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->dead) {
		errbuf_set(err, errlen, "store is stepped down or failed");
		return m->dead;
	}
	/* (1): a plain sync under the lock, keeping everyone else out */
	{
		bool saved = m->opts.no_group_commit;

		m->opts.no_group_commit = true;
		r = sync_once(m);
		m->opts.no_group_commit = saved;
	}
	if (r < 0) {
		errbuf_set(err, errlen, "sync before snapshot failed: %s", strerror(-r));
		return m->dead;
	}
	m->syncing = true; /* keep group-commit leaders out while we rotate */
	S = m->last_seq;
	w.buf = malloc(SNAP_BUF_SIZE);
	if (!w.buf) {
		r = -ENOMEM;
		goto out;
	}
	r = m->b->ops->snapshot_begin(m->b, S);
	if (r < 0)
		goto fail_write;
	r = snap_write_index(&w, NULL);
	if (r < 0) {
		m->b->ops->snapshot_abort(m->b);
		goto fail_write;
	}
	r = FAILPOINT(METASTORE_SNAPSHOT_BEFORE_RENAME);
	if (r >= 0 && m->opts.in_term && !m->opts.in_term(m->opts.in_term_userdata))
		r = -ETIME; /* outlived its term: commit nothing (the epoch is
		               re-checked by the backend, just before the rename) */
	if (r < 0) {
		m->b->ops->snapshot_abort(m->b);
		goto fail_write;
	}
	r = m->b->ops->snapshot_commit(m->b);
	if (r < 0)
		goto fail_write;
	(void)FAILPOINT(METASTORE_SNAPSHOT_AFTER_RENAME);
	if (m->opts.in_term && !m->opts.in_term(m->opts.in_term_userdata)) {
		/* The term ended after the commit: start nothing, remove
		 * nothing.  Later records go on into the current segment, which
		 * S covers only in part; the next snapshot removes it once it
		 * covers it whole (it starts its own segment first). */
		log_info("'%s': snapshot at seq %" PRIu64 " committed as the term ended; "
		         "no new segment",
		         m->b->desc, S);
		m->st.snapshots++;
		r = 0;
		goto out;
	}
	/* (3) */
	r = m->b->ops->segment_start(m->b, S + 1);
	if (r < 0) {
		store_die(m, r, "starting a new segment");
		errbuf_set(err, errlen, "cannot start a new segment: %s", strerror(-r));
		r = m->dead;
		goto out;
	}
	m->seg_first = S + 1;
	/* (4) */
	/* Every unit of an older epoch goes too: this writer's first segment
	 * began after all records of older epochs it recovered, so such a
	 * unit is either covered by S or a fenced writer's leftover.  (Units
	 * whose epoch the backend does not record, 0, only by their seq.) */
	remove_covered(m->b, m->opts.epoch, S);
	m->st.snapshots++;
	m->st.journal_bytes = 0;
	m->journal_records = 0;
	m->snap_retry_records = 0;
	log_info("'%s': snapshot at seq %" PRIu64 " with %zu keys", m->b->desc, S,
	         index_count(m->ix));
	r = 0;
	goto out;
fail_write:
	errbuf_set(err, errlen, "cannot write snapshot %" PRIu64 " of '%s': %s", S, m->b->desc,
	           strerror(-r));
	if (r == -EACCES || r == -EBADE || r == -ESTALE)
		store_die(m, r, "snapshot");
out:
	m->syncing = false;
	pthread_cond_broadcast(&m->cond);
	free(w.buf);
	return r;
}

/* Background snapshot S, on the builder thread, without the store's lock:
 * everything it reads is a file.  A private read-only store on a clone of
 * the backend recovers the newest snapshot and the segments of seqs <= S
 * (sealed: the writer has moved on to segment S+1), so the state after S is
 * rebuilt from what is durable, never from the live index.  Then: write the
 * snapshot, check the writer's term and the store's health under the lock,
 * commit (the backend re-checks the epoch just before the rename), and
 * remove what S covers.  Returns 0 or -errno with the reason in err. */
/* The builder's private store gives up when the writer's store closes. */
static bool store_closing(void *userdata)
{
	struct metastore *m = userdata;

	return __atomic_load_n(&m->snap_stop, __ATOMIC_RELAXED);
}

static int snapshot_build(struct metastore *m, uint64_t S, char *err, size_t errlen)
{
	struct metastore_options o = {.read_only = true,
	                              .epoch = m->opts.epoch,
	                              .cancelled = store_closing,
	                              .cancelled_userdata = m};
	struct backend *b = NULL;
	struct metastore *t = NULL;
	struct snap_writer w = {0};
	bool begun = false;
	uint64_t cur = 0;
	int r;

	(void)FAILPOINT(METASTORE_SNAPSHOT_AFTER_CUT);
	r = m->b->ops->clone(m->b, &b);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot open a second handle on '%s': %s", m->b->desc,
		           strerror(-r));
		goto out;
	}
	t = store_new(b, &o);
	if (!t) {
		b->ops->close(b);
		r = -ENOMEM;
		errbuf_set(err, errlen, "out of memory");
		goto out;
	}
	t->compacting = true;
	t->recover_limit = S;
	r = recover(t, err, errlen);
	if (r >= 0 && t->last_seq != S) {
		errbuf_set(err, errlen, "the units up to seq %" PRIu64 " replay to seq %" PRIu64, S,
		           t->last_seq);
		r = -EUCLEAN;
	}
	if (r < 0 && b->ops->epoch_check(b, &cur) >= 0 && cur > m->opts.epoch) {
		errbuf_set(err, errlen, "epoch %" PRIu64 " holds '%s'", cur, m->b->desc);
		r = -ESTALE; /* what a successor did to the units, not damage */
	}
	if (r < 0)
		goto out;
	w.m = t;
	w.buf = malloc(SNAP_BUF_SIZE);
	if (!w.buf) {
		r = -ENOMEM;
		errbuf_set(err, errlen, "out of memory");
		goto out;
	}
	r = b->ops->snapshot_begin(b, S);
	begun = r >= 0;
	if (r >= 0)
		r = snap_write_index(&w, &m->snap_stop);
	if (r >= 0)
		r = FAILPOINT(METASTORE_SNAPSHOT_BEFORE_RENAME);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot write snapshot %" PRIu64 " of '%s': %s", S,
		           m->b->desc, strerror(-r));
		goto out;
	}
	pthread_mutex_lock(&m->lock);
	if (m->dead) {
		r = m->dead;
		errbuf_set(err, errlen, "the store stepped down or failed meanwhile");
	} else if (m->snap_stop) {
		r = -ECANCELED;
		errbuf_set(err, errlen, "the store is closing");
	} else if (m->opts.in_term && !m->opts.in_term(m->opts.in_term_userdata)) {
		r = -ETIME; /* outlived the writer's term: commit nothing */
		errbuf_set(err, errlen, "the writer's term ended while it was written");
	}
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		goto out;
	begun = false;
	r = b->ops->snapshot_commit(b);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot commit snapshot %" PRIu64 " of '%s': %s", S,
		           m->b->desc, strerror(-r));
		goto out;
	}
	(void)FAILPOINT(METASTORE_SNAPSHOT_AFTER_RENAME);
	remove_covered(b, m->opts.epoch, S);
	log_info("'%s': snapshot at seq %" PRIu64 " with %zu keys (built beside the writers)",
	         m->b->desc, S, index_count(t->ix));
out:
	if (begun)
		b->ops->snapshot_abort(b);
	free(w.buf);
	metastore_close(t); /* closes the clone too */
	return r;
}

static void *snapshot_main(void *arg)
{
	struct metastore *m = arg;
	char err[sizeof(m->snap_err)];

	pthread_mutex_lock(&m->lock);
	for (;;) {
		uint64_t S;
		int r;

		while (!m->snap_stop && m->snap_want <= m->snap_done)
			pthread_cond_wait(&m->cond, &m->lock);
		if (m->snap_stop)
			break;
		S = m->snap_want;
		pthread_mutex_unlock(&m->lock);
		err[0] = '\0';
		r = snapshot_build(m, S, err, sizeof(err));
		pthread_mutex_lock(&m->lock);
		if (r < 0 && r != -ECANCELED)
			log_warning("'%s': snapshot at seq %" PRIu64 " not made: %s", m->b->desc, S,
			            err);
		if (r == -EACCES || r == -EBADE || r == -ESTALE)
			store_die(m, r, "snapshot");
		if (r >= 0)
			m->st.snapshots++;
		m->snap_done = S;
		m->snap_result = r;
		memcpy(m->snap_err, err, sizeof(err));
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* A snapshot point S = the last seq written, without writing the snapshot:
 * sync the journal, check the term, start segment S+1 (the backend
 * re-checks the epoch before it creates it) and hand S to the builder
 * thread.  Lock held; costs one sync and one file creation.  With wait,
 * also waits (releasing the lock, so writers go on) until the builder is
 * done with S and returns its outcome. */
static int snapshot_cut_locked(struct metastore *m, bool wait, char *err, size_t errlen)
{
	uint64_t S;
	bool saved;
	int r;

	while (m->syncing && !m->dead)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->dead) {
		errbuf_set(err, errlen, "store is stepped down or failed");
		return m->dead;
	}
	if (m->opts.in_term && !m->opts.in_term(m->opts.in_term_userdata)) {
		errbuf_set(err, errlen, "the writer's term has ended: no snapshot");
		return -ETIME;
	}
	saved = m->opts.no_group_commit;
	m->opts.no_group_commit = true; /* a plain sync under the lock */
	r = sync_once(m);
	m->opts.no_group_commit = saved;
	if (r < 0) {
		errbuf_set(err, errlen, "sync before snapshot failed: %s", strerror(-r));
		return m->dead;
	}
	S = m->last_seq;
	if (m->seg_first != S + 1) {
		r = m->b->ops->segment_start(m->b, S + 1);
		if (r < 0) {
			store_die(m, r, "starting a new segment");
			errbuf_set(err, errlen, "cannot start a new segment: %s", strerror(-r));
			return m->dead;
		}
		m->seg_first = S + 1;
	}
	m->st.journal_bytes = 0;
	m->journal_records = 0;
	m->snap_retry_records = 0;
	if (!m->snap_thread_started) {
		r = -pthread_create(&m->snap_thread, NULL, snapshot_main, m);
		if (r < 0) {
			errbuf_set(err, errlen, "cannot start the snapshot thread: %s",
			           strerror(-r));
			return r;
		}
		m->snap_thread_started = true;
	}
	if (S == m->snap_done && m->snap_result < 0)
		m->snap_done = 0; /* nothing written since a failed build of S: again */
	if (S > m->snap_want || m->snap_done < S)
		m->snap_want = S;
	pthread_cond_broadcast(&m->cond);
	if (!wait)
		return 0;
	while (m->snap_done < S)
		pthread_cond_wait(&m->cond, &m->lock);
	if (m->snap_result < 0)
		errbuf_set(err, errlen, "%s", m->snap_err);
	return m->snap_result;
}

static int snapshot_locked(struct metastore *m, bool wait, char *err, size_t errlen)
{
	if (m->opts.read_only)
		return -EROFS;
	if (!m->b->ops->clone)
		return snapshot_fg_locked(m, err, errlen);
	return snapshot_cut_locked(m, wait, err, errlen);
}

int metastore_snapshot(struct metastore *m, char *err, size_t errlen)
{
	int r;

	pthread_mutex_lock(&m->lock);
	r = snapshot_locked(m, true, err, errlen);
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* ---------------------------------------------------------- check/repair */

/* Append one finding to the report.  Returns 0 or -ENOMEM. */
static int __attribute__((format(printf, 3, 4)))
report_add(struct metastore_check_report *rep, enum metastore_finding kind, const char *fmt, ...)
{
	struct metastore_check_entry *e;
	va_list ap;

	if (rep->n == rep->cap) {
		size_t cap = rep->cap ? rep->cap * 2 : 8;

		e = realloc(rep->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		rep->entries = e;
		rep->cap = cap;
	}
	e = &rep->entries[rep->n++];
	e->kind = kind;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	return 0;
}

/* One round: recover read-only; report the store or the damage.  Returns
 * 0 (healthy), -errno (the check failed), or 1 with the damage in *kind,
 * *bad and *off. */
static int check_round(struct backend *b, struct metastore_check_report *rep,
                       enum damage_kind *kind, struct backend_unit *bad, uint64_t *off)
{
	struct metastore_options o = {.read_only = true, .epoch = UINT64_MAX};
	struct metastore *m = store_new(b, &o);
	char err[1024] = "";
	uint64_t cell = 0;
	int r, ar;

	if (!m)
		return -ENOMEM;
	r = b->ops->epoch_get(b, &cell);
	if (r == -EBADMSG) {
		m->damage = DAMAGE_EPOCH;
		snprintf(err, sizeof(err), "the epoch cell is damaged");
	} else if (r >= 0) {
		r = recover(m, err, sizeof(err));
	}
	*kind = m->damage;
	*bad = m->damage_unit;
	*off = m->damage_offset;
	if (r >= 0) {
		rep->keys = index_count(m->ix);
		rep->last_seq = m->last_seq;
		rep->epoch = cell > m->volume_epoch ? cell : m->volume_epoch;
		rep->records_replayed = m->st.records_replayed;
		rep->torn_tail = m->st.torn_bytes_cut > 0;
		ar = report_add(rep, METASTORE_FOUND_OK,
		                "%zu keys, last seq %" PRIu64 ", epoch %" PRIu64 ", %" PRIu64
		                " records replayed%s",
		                rep->keys, rep->last_seq, rep->epoch, rep->records_replayed,
		                rep->torn_tail ? " (torn tail: cut at next open)" : "");
	} else if (*kind == DAMAGE_NONE) {
		ar = report_add(rep, METASTORE_FOUND_ERROR, "%s", err);
	} else {
		ar = report_add(rep, METASTORE_FOUND_PROBLEM, "%s", err);
		r = 1;
	}
	m->b = NULL; /* keep the backend */
	metastore_close(m);
	return ar < 0 ? ar : r;
}

/* Move the damaged unit aside keeping its valid prefix, and every later
 * segment, which cannot be replayed after the cut.  Returns 0, 1 when it
 * cannot be done automatically, or -errno. */
static int repair_round(struct backend *b, struct metastore_check_report *rep,
                        enum damage_kind kind, const struct backend_unit *bad, uint64_t off)
{
	struct backend_unit *units = NULL;
	size_t n = 0;
	int r = 0, ar = 0;

	if (kind == DAMAGE_SNAPSHOT) {
		bool older = false;

		r = b->ops->list(b, &units, &n);
		for (size_t i = 0; r >= 0 && i < n; i++)
			older |= units[i].kind == BACKEND_SNAPSHOT && units[i].id < bad->id;
		units = mfree(units);
		if (!older) {
			ar = report_add(rep, METASTORE_FOUND_UNREPAIRABLE,
			                "cannot repair automatically: '%s' holds the only copy of "
			                "the records up to seq %" PRIu64
			                "; restore it from a backup",
			                bad->name, bad->id);
			return ar < 0 ? ar : 1;
		}
	}
	if (kind == DAMAGE_EPOCH) {
		ar = report_add(
		        rep, METASTORE_FOUND_UNREPAIRABLE,
		        "cannot repair the epoch cell automatically: restore it or remove it "
		        "and reopen with the current lease epoch");
		return ar < 0 ? ar : 1;
	}
	r = b->ops->list(b, &units, &n);
	for (size_t i = 0; r >= 0 && ar >= 0 && i < n; i++) {
		const struct backend_unit *u = &units[i];
		char aside[512];
		uint64_t keep = 0;
		bool hit = strcmp(u->name, bad->name) == 0;

		if (hit && kind == DAMAGE_SEGMENT)
			keep = off;
		else if (!hit && !(u->kind == BACKEND_SEGMENT && bad->kind == BACKEND_SEGMENT &&
		                   u->id > bad->id))
			continue;
		r = b->ops->quarantine(b, u, keep, aside, sizeof(aside));
		if (r < 0)
			ar = report_add(rep, METASTORE_FOUND_ERROR, "cannot move '%s' aside: %s",
			                u->name, strerror(-r));
		else if (keep)
			ar = report_add(rep, METASTORE_FOUND_REPAIRED,
			                "moved '%s' to '%s' and kept its first %" PRIu64
			                " bytes (valid records) in place",
			                u->name, aside, keep);
		else
			ar = report_add(rep, METASTORE_FOUND_REPAIRED,
			                "moved '%s' to '%s' (not deleted)", u->name, aside);
	}
	free(units);
	return ar < 0 ? ar : r < 0 ? r : 0;
}

int metastore_check(struct backend *b, bool repair, struct metastore_check_report *ret)
{
	int r;

	*ret = (struct metastore_check_report){0};
	for (int round = 0; round < 64; round++) {
		enum damage_kind kind;
		struct backend_unit bad;
		uint64_t off;

		r = check_round(b, ret, &kind, &bad, &off);
		if (r <= 0)
			goto out; /* healthy, or the check failed */
		if (!repair)
			goto out;
		r = repair_round(b, ret, kind, &bad, off);
		if (r != 0)
			goto out;
	}
	r = report_add(ret, METASTORE_FOUND_ERROR, "repair did not converge");
	if (r >= 0)
		r = 1;
out:
	ret->result = r;
	return r;
}

void metastore_check_report_done(struct metastore_check_report *rep)
{
	if (!rep)
		return;
	free(rep->entries);
	*rep = (struct metastore_check_report){0};
}
