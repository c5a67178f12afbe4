/* backend_lun: the metadata store on a raw iSCSI LUN; see backend_lun.h and
 * storage/FORMAT.md ("Raw LUN layout") for the layout.
 *
 * Write order, which recovery relies on:
 *   - journal blocks are written only into ring space that was zeroed (FUA)
 *     and recorded as zeroed in the state table (`zeroed_until`) before; so
 *     the bytes after a segment's last record are zeros or a torn batch of
 *     this lap, never stale records of an earlier lap;
 *   - a new segment is entered in the state table (FUA) before its first
 *     record is written;
 *   - a snapshot is written into the slot the table does not point to and
 *     becomes visible only when the table pointing to it is written (FUA);
 *   - the state table has two copies written alternately, each with a
 *     generation and a CRC: a torn table write leaves the other copy;
 *   - the epoch block is one block written with FUA (single-block writes
 *     are atomic on SCSI disks; its CRC catches anything else).
 * Each durable batch of appends ends on a block boundary with a PAD record,
 * so an acknowledged block is never rewritten.
 *
 * Locking: one mutex serialises every op, including the I/O of sync(); an
 * append that arrives during a sync waits for it (group commit still batches
 * the records queued before the sync starts). */
#include "config.h"

#include "storage/backend_lun.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "scsi/scsi_pr.h"
#include "scsi/scsi_resv.h"
#include "storage/journal.h"

#define LUN_VERSION     1
#define LUN_META_BYTES  4096               /* one state-table copy */
#define LUN_DATA_ALIGN  (1024 * 1024)      /* data regions start 1 MiB in */
#define LUN_PROBE_BYTES (4u * 1024 * 1024) /* read and probed before format */
#define LUN_ZERO_CHUNK  (1024u * 1024)     /* ring bytes zeroed ahead at once */
#define LUN_IO_MAX      (1024u * 1024)     /* bytes per SCSI command */
#define LUN_SEGS_MAX    ((LUN_META_BYTES - 64 - 4) / 16)
#define LUN_NO_SLOT     0xFFFFFFFFu
#define LUN_UA_RETRIES  3
#define LUN_IO_TIMEOUT  (10 * USEC_PER_SEC)

static const char SB_MAGIC[8] = "KFJRNLv1";
static const char EPOCH_MAGIC[8] = "KFEPOCH1";
static const char TABLE_MAGIC[8] = "KFLUNTB1";

struct lun_seg {
	uint64_t first_seq;
	uint64_t start; /* ring position (blocks, counting laps) */
};

/* The state table (one of two copies on the LUN). */
struct lun_table {
	uint64_t gen;
	uint64_t zeroed_until; /* ring position up to which blocks are zeroed */
	uint32_t snap_slot;    /* 0, 1 or LUN_NO_SLOT */
	uint64_t snap_seq;
	uint64_t snap_bytes;
	uint32_t nseg;
	struct lun_seg seg[LUN_SEGS_MAX];
};

struct backend_lun {
	struct backend b; /* first: the generic part */
	struct scsi_pr *h;
	pthread_mutex_t lock;
	/* A state-table write failed: it may have reached the LUN or not, so
	 * the table this process holds may no longer be the LUN's newest, and
	 * every choice made from it (the slot of the next snapshot, the copy
	 * of the next table) could overwrite what the LUN's table points to.
	 * Nothing more is written (the error, from then on); the next open
	 * reads the table the LUN has.  Atomic. */
	int table_err;
	usec_t io_timeout;
	uint32_t bs;
	uint64_t nblocks;
	uint8_t uuid[16];
	/* layout, in blocks */
	uint64_t table_lba[2], table_blocks;
	uint64_t snap_lba[2], snap_blocks;
	uint64_t ring_lba, ring_blocks;

	struct lun_table t;
	int t_copy; /* copy holding t (the next write goes to the other) */

	/* current segment */
	bool seg_open;
	uint64_t head; /* next free ring position */
	uint8_t *pend; /* appended since the last sync, not yet written */
	size_t pend_len, pend_cap;
	uint64_t epoch_hint; /* epoch for PAD records */

	/* snapshot being written */
	bool snap_open;
	uint32_t snap_slot;
	uint64_t snap_seq;
	uint64_t snap_off; /* bytes written to the slot */
	uint8_t *snap_buf; /* partial block */
	size_t snap_buf_len;
};

static struct backend_lun *LUNB(struct backend *b)
{
	return (struct backend_lun *)b;
}

static usec_t deadline(struct backend_lun *l)
{
	return clock_mono_usec() + l->io_timeout;
}

/* ------------------------------------------------------------ block I/O */

/* Map a failed write to "fenced" (-EBADE) when the target says so, retrying
 * plain UNIT ATTENTIONs a few times. */
static int lun_write(struct backend_lun *l, uint64_t lba, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int poisoned = __atomic_load_n(&l->table_err, __ATOMIC_ACQUIRE);

	if (poisoned < 0)
		return poisoned;

	while (len) {
		size_t n = len > LUN_IO_MAX ? LUN_IO_MAX : len;
		int r = 0;

		for (int i = 0; i <= LUN_UA_RETRIES; i++) {
			int st, key, asc, ascq;

			r = scsi_pr_write(l->h, lba, p, n, deadline(l), NULL, 0);
			if (r == 0)
				break;
			scsi_pr_last_sense(l->h, &st, &key, &asc, &ascq);
			r = scsi_resv_io_verdict(r, st, key, asc, ascq);
			if (r != -EAGAIN)
				break;
		}
		if (r < 0)
			return r;
		lba += n / l->bs;
		p += n;
		len -= n;
	}
	return 0;
}

static int lun_read(struct backend_lun *l, uint64_t lba, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		size_t n = len > LUN_IO_MAX ? LUN_IO_MAX : len;
		int r = -EAGAIN;

		for (int i = 0; i <= LUN_UA_RETRIES && r == -EAGAIN; i++)
			r = scsi_pr_read(l->h, lba, p, n, deadline(l), NULL, 0);
		if (r < 0)
			return r;
		lba += n / l->bs;
		p += n;
		len -= n;
	}
	return 0;
}

/* Ring position -> LBA; runs of blocks are split at the ring's end. */
static uint64_t ring_lba(struct backend_lun *l, uint64_t pos)
{
	return l->ring_lba + pos % l->ring_blocks;
}

static int ring_io(struct backend_lun *l, bool write, uint64_t pos, void *buf, uint64_t blocks)
{
	uint8_t *p = buf;

	while (blocks) {
		uint64_t room = l->ring_blocks - pos % l->ring_blocks;
		uint64_t n = blocks < room ? blocks : room;
		int r = write ? lun_write(l, ring_lba(l, pos), p, n * l->bs)
		              : lun_read(l, ring_lba(l, pos), p, n * l->bs);

		if (r < 0)
			return r;
		pos += n;
		p += n * l->bs;
		blocks -= n;
	}
	return 0;
}

static int ring_zero(struct backend_lun *l, uint64_t from, uint64_t to)
{
	uint8_t *z = calloc(1, LUN_ZERO_CHUNK);
	int r = 0;

	if (!z)
		return -ENOMEM;
	while (from < to && r >= 0) {
		uint64_t n = to - from;

		if (n > LUN_ZERO_CHUNK / l->bs)
			n = LUN_ZERO_CHUNK / l->bs;
		r = ring_io(l, true, from, z, n);
		from += n;
	}
	free(z);
	return r;
}

/* Zero [from, to) where it is not zero already (a cut tail is usually all
 * zeros: reading it is cheaper than rewriting it). */
static int ring_zero_dirty(struct backend_lun *l, uint64_t from, uint64_t to)
{
	uint8_t *buf = malloc(LUN_ZERO_CHUNK);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (from < to && r >= 0) {
		uint64_t n = to - from;
		bool dirty = false;

		if (n > LUN_ZERO_CHUNK / l->bs)
			n = LUN_ZERO_CHUNK / l->bs;
		r = ring_io(l, false, from, buf, n);
		for (size_t i = 0; r >= 0 && !dirty && i < n * l->bs; i++)
			dirty = buf[i] != 0;
		if (r >= 0 && dirty)
			r = ring_zero(l, from, from + n);
		from += n;
	}
	free(buf);
	return r;
}

/* ------------------------------------------------------------ encodings */

static void put_sb(struct backend_lun *l, uint8_t *p)
{
	memset(p, 0, l->bs);
	memcpy(p, SB_MAGIC, 8);
	journal_put_le32(p + 8, LUN_VERSION);
	journal_put_le32(p + 12, l->bs);
	memcpy(p + 16, l->uuid, 16);
	journal_put_le64(p + 32, l->nblocks);
	journal_put_le64(p + 40, l->table_lba[0]);
	journal_put_le64(p + 48, l->table_lba[1]);
	journal_put_le64(p + 56, l->table_blocks);
	journal_put_le64(p + 64, l->snap_lba[0]);
	journal_put_le64(p + 72, l->snap_lba[1]);
	journal_put_le64(p + 80, l->snap_blocks);
	journal_put_le64(p + 88, l->ring_lba);
	journal_put_le64(p + 96, l->ring_blocks);
	journal_put_le32(p + 104, crc32c(0, p, 104));
}

static int get_sb(struct backend_lun *l, const uint8_t *p)
{
	if (memcmp(p, SB_MAGIC, 8) != 0)
		return -EMEDIUMTYPE;
	if (journal_get_le32(p + 104) != crc32c(0, p, 104))
		return -EBADMSG;
	if (journal_get_le32(p + 8) != LUN_VERSION || journal_get_le32(p + 12) != l->bs)
		return -EBADMSG;
	memcpy(l->uuid, p + 16, 16);
	l->table_lba[0] = journal_get_le64(p + 40);
	l->table_lba[1] = journal_get_le64(p + 48);
	l->table_blocks = journal_get_le64(p + 56);
	l->snap_lba[0] = journal_get_le64(p + 64);
	l->snap_lba[1] = journal_get_le64(p + 72);
	l->snap_blocks = journal_get_le64(p + 80);
	l->ring_lba = journal_get_le64(p + 88);
	l->ring_blocks = journal_get_le64(p + 96);
	if (journal_get_le64(p + 32) > l->nblocks || l->ring_blocks == 0 ||
	    l->ring_lba + l->ring_blocks > l->nblocks || l->table_blocks * l->bs != LUN_META_BYTES)
		return -EBADMSG;
	return 0;
}

static void put_table(struct backend_lun *l, const struct lun_table *t, uint8_t *p)
{
	memset(p, 0, LUN_META_BYTES);
	memcpy(p, TABLE_MAGIC, 8);
	journal_put_le64(p + 8, t->gen);
	journal_put_le64(p + 16, t->zeroed_until);
	journal_put_le32(p + 24, t->nseg);
	journal_put_le32(p + 28, t->snap_slot);
	journal_put_le64(p + 32, t->snap_seq);
	journal_put_le64(p + 40, t->snap_bytes);
	memcpy(p + 48, l->uuid, 16);
	for (uint32_t i = 0; i < t->nseg; i++) {
		journal_put_le64(p + 64 + 16 * i, t->seg[i].first_seq);
		journal_put_le64(p + 72 + 16 * i, t->seg[i].start);
	}
	journal_put_le32(p + LUN_META_BYTES - 4, crc32c(0, p, LUN_META_BYTES - 4));
}

static int get_table(struct backend_lun *l, const uint8_t *p, struct lun_table *t)
{
	if (memcmp(p, TABLE_MAGIC, 8) != 0 ||
	    journal_get_le32(p + LUN_META_BYTES - 4) != crc32c(0, p, LUN_META_BYTES - 4) ||
	    memcmp(p + 48, l->uuid, 16) != 0)
		return -EBADMSG;
	t->gen = journal_get_le64(p + 8);
	t->zeroed_until = journal_get_le64(p + 16);
	t->nseg = journal_get_le32(p + 24);
	t->snap_slot = journal_get_le32(p + 28);
	t->snap_seq = journal_get_le64(p + 32);
	t->snap_bytes = journal_get_le64(p + 40);
	if (t->nseg > LUN_SEGS_MAX || (t->snap_slot > 1 && t->snap_slot != LUN_NO_SLOT) ||
	    (t->snap_slot <= 1 && t->snap_bytes > l->snap_blocks * l->bs))
		return -EBADMSG;
	for (uint32_t i = 0; i < t->nseg; i++) {
		t->seg[i].first_seq = journal_get_le64(p + 64 + 16 * i);
		t->seg[i].start = journal_get_le64(p + 72 + 16 * i);
		if (t->seg[i].start > t->zeroed_until ||
		    (i && (t->seg[i].start < t->seg[i - 1].start ||
		           t->seg[i].first_seq <= t->seg[i - 1].first_seq)))
			return -EBADMSG;
	}
	return 0;
}

/* Durably replace the state table with *t (generation + 1), into the copy
 * that does not hold the current one. */
static int table_write(struct backend_lun *l, struct lun_table *t)
{
	uint8_t *p = malloc(LUN_META_BYTES);
	int copy = 1 - l->t_copy, r;

	if (!p)
		return -ENOMEM;
	t->gen = l->t.gen + 1;
	put_table(l, t, p);
	r = lun_write(l, l->table_lba[copy], p, LUN_META_BYTES);
	free(p);
	if (r == 0)
		r = FAILPOINT(BACKEND_LUN_TABLE_AFTER_WRITE);
	if (r < 0) {
		int none = 0;

		if (__atomic_compare_exchange_n(&l->table_err, &none, r, false, __ATOMIC_ACQ_REL,
		                                __ATOMIC_ACQUIRE))
			log_error(
			        "'%s': a state-table write failed (%s): whether it reached the LUN "
			        "is unknown, so nothing more is written until the store is opened "
			        "again",
			        l->b.desc, strerror(-r));
		return r;
	}
	if (t != &l->t)
		l->t = *t;
	l->t_copy = copy;
	return 0;
}

/* -------------------------------------------------------------- epoch */

static int epoch_read(struct backend_lun *l, uint64_t *ret)
{
	uint8_t *p = malloc(l->bs);
	int r;

	if (!p)
		return -ENOMEM;
	r = lun_read(l, 1, p, l->bs);
	if (r < 0)
		goto out;
	if (memcmp(p, EPOCH_MAGIC, 8) != 0 || journal_get_le32(p + 16) != crc32c(0, p, 16)) {
		r = -EBADMSG;
		goto out;
	}
	*ret = journal_get_le64(p + 8);
out:
	free(p);
	return r;
}

static void put_epoch(uint8_t *p, size_t bs, uint64_t epoch)
{
	memset(p, 0, bs);
	memcpy(p, EPOCH_MAGIC, 8);
	journal_put_le64(p + 8, epoch);
	journal_put_le32(p + 16, crc32c(0, p, 16));
}

static int lun_epoch_get(struct backend *b, uint64_t *ret_epoch)
{
	struct backend_lun *l = LUNB(b);
	int r;

	pthread_mutex_lock(&l->lock);
	r = epoch_read(l, ret_epoch);
	pthread_mutex_unlock(&l->lock);
	return r;
}

static int lun_epoch_set(struct backend *b, uint64_t epoch)
{
	struct backend_lun *l = LUNB(b);
	uint8_t *p = malloc(l->bs);
	int r;

	if (!p)
		return -ENOMEM;
	put_epoch(p, l->bs, epoch);
	pthread_mutex_lock(&l->lock);
	r = lun_write(l, 1, p, l->bs);
	if (r >= 0)
		l->epoch_hint = epoch;
	pthread_mutex_unlock(&l->lock);
	free(p);
	return r;
}

/* ------------------------------------------------------------- units */

static uint64_t seg_end(struct backend_lun *l, uint32_t i)
{
	if (i + 1 < l->t.nseg)
		return l->t.seg[i + 1].start;
	return l->seg_open ? l->head : l->t.zeroed_until;
}

static void seg_unit(struct backend_lun *l, uint32_t i, struct backend_unit *u)
{
	u->kind = BACKEND_SEGMENT;
	u->id = l->t.seg[i].first_seq;
	u->size = (seg_end(l, i) - l->t.seg[i].start) * l->bs;
	snprintf(u->name, sizeof(u->name), "lun:journal-%016" PRIx64 "@%" PRIu64, u->id,
	         l->t.seg[i].start);
}

static int lun_list(struct backend *b, struct backend_unit **ret_units, size_t *ret_n)
{
	struct backend_lun *l = LUNB(b);
	struct backend_unit *u;
	size_t n = 0;

	pthread_mutex_lock(&l->lock);
	u = calloc(l->t.nseg + 1, sizeof(*u));
	if (!u) {
		pthread_mutex_unlock(&l->lock);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < l->t.nseg; i++)
		seg_unit(l, i, &u[n++]);
	if (l->t.snap_slot != LUN_NO_SLOT) {
		u[n].kind = BACKEND_SNAPSHOT;
		u[n].id = l->t.snap_seq;
		u[n].size = l->t.snap_bytes;
		snprintf(u[n].name, sizeof(u[n].name), "lun:snapshot-%016" PRIx64 "@slot%u",
		         l->t.snap_seq, l->t.snap_slot);
		n++;
	}
	pthread_mutex_unlock(&l->lock);
	*ret_units = u;
	*ret_n = n;
	return 0;
}

static int find_seg(struct backend_lun *l, uint64_t id)
{
	for (uint32_t i = 0; i < l->t.nseg; i++)
		if (l->t.seg[i].first_seq == id)
			return (int)i;
	return -ENOENT;
}

static ssize_t lun_read_unit(struct backend *b, const struct backend_unit *u, uint64_t off,
                             void *buf, size_t len)
{
	struct backend_lun *l = LUNB(b);
	uint64_t size, first, blocks, start;
	uint8_t *tmp = NULL;
	bool ring;
	ssize_t r;
	int i;

	pthread_mutex_lock(&l->lock);
	if (u->kind == BACKEND_SEGMENT) {
		i = find_seg(l, u->id);
		if (i < 0) {
			r = i;
			goto out;
		}
		start = l->t.seg[i].start;
		size = (seg_end(l, (uint32_t)i) - start) * l->bs;
		ring = true;
	} else {
		if (l->t.snap_slot == LUN_NO_SLOT || l->t.snap_seq != u->id) {
			r = -ENOENT;
			goto out;
		}
		start = l->snap_lba[l->t.snap_slot];
		size = l->t.snap_bytes;
		ring = false;
	}
	if (off >= size) {
		r = 0;
		goto out;
	}
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > LUN_IO_MAX)
		len = LUN_IO_MAX;
	first = off / l->bs;
	blocks = (off + len + l->bs - 1) / l->bs - first;
	tmp = malloc(blocks * l->bs);
	if (!tmp) {
		r = -ENOMEM;
		goto out;
	}
	r = ring ? ring_io(l, false, start + first, tmp, blocks)
	         : lun_read(l, start + first, tmp, blocks * l->bs);
	if (r < 0)
		goto out;
	memcpy(buf, tmp + off % l->bs, len);
	r = (ssize_t)len;
out:
	pthread_mutex_unlock(&l->lock);
	free(tmp);
	return r;
}

/* Cut the last segment back to `size` bytes: the rest of its block and every
 * block up to zeroed_until become zeros again, so the next segment starts in
 * clean space. */
/* Immediately before the table is changed (a segment started, cut or
 * removed, a snapshot committed): refuse with -ESTALE once a newer epoch
 * holds the LUN.  This narrows a paused writer's window to the time of one
 * table write; the fence closes it: the target refuses a preempted writer's
 * later WRITEs, and one it had already accepted is aborted or finished
 * before the fence is confirmed (PREEMPT AND ABORT, or the LOGICAL UNIT
 * RESET that follows a plain PREEMPT: fencing/SCSI-PR.md). */
static int lun_guard(struct backend *b)
{
	uint64_t cur = 0;
	int r;

	if (!b->epoch)
		return 0;
	r = lun_epoch_get(b, &cur);
	if (r < 0)
		return r;
	return cur > b->epoch ? -ESTALE : 0;
}

static int lun_truncate(struct backend *b, const struct backend_unit *u, uint64_t size)
{
	struct backend_lun *l = LUNB(b);
	uint8_t *blk = NULL;
	uint64_t pos;
	int i, r;
	int fp = FAILPOINT(BACKEND_UNIT_BEFORE_TRUNCATE);

	if (fp < 0)
		return fp;
	fp = lun_guard(b);
	if (fp < 0)
		return fp;
	pthread_mutex_lock(&l->lock);
	i = find_seg(l, u->id);
	if (i < 0 || (uint32_t)i + 1 != l->t.nseg || l->seg_open) {
		r = i < 0 ? i : -EINVAL; /* only the last, closed segment */
		goto out;
	}
	pos = l->t.seg[i].start + size / l->bs;
	if (size % l->bs) {
		blk = malloc(l->bs);
		r = blk ? ring_io(l, false, pos, blk, 1) : -ENOMEM;
		if (r < 0)
			goto out;
		memset(blk + size % l->bs, 0, l->bs - size % l->bs);
		r = ring_io(l, true, pos, blk, 1);
		if (r < 0)
			goto out;
		pos++;
	}
	r = ring_zero_dirty(l, pos, l->t.zeroed_until);
	if (r < 0)
		goto out;
	l->head = pos;
out:
	pthread_mutex_unlock(&l->lock);
	free(blk);
	return r;
}

static int lun_remove(struct backend *b, const struct backend_unit *u)
{
	struct backend_lun *l = LUNB(b);
	struct lun_table t;
	int i, r = 0;
	int fp = FAILPOINT(BACKEND_UNIT_BEFORE_REMOVE);

	if (fp < 0)
		return fp;
	fp = lun_guard(b);
	if (fp < 0)
		return fp;
	pthread_mutex_lock(&l->lock);
	t = l->t;
	if (u->kind == BACKEND_SNAPSHOT) {
		/* only the table's snapshot exists; an older one was replaced */
		if (t.snap_slot != LUN_NO_SLOT && t.snap_seq == u->id) {
			t.snap_slot = LUN_NO_SLOT;
			r = table_write(l, &t);
		}
		goto out;
	}
	i = find_seg(l, u->id);
	if (i < 0 || (l->seg_open && (uint32_t)i + 1 == t.nseg)) {
		r = i < 0 ? 0 : -EBUSY; /* never the append target */
		goto out;
	}
	memmove(&t.seg[i], &t.seg[i + 1], (t.nseg - (uint32_t)i - 1) * sizeof(t.seg[0]));
	t.nseg--;
	r = table_write(l, &t);
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* A LUN keeps no second copy: a damaged unit is cut to its valid prefix
 * (keep > 0) or taken out of the table; its blocks stay until reused. */
static int lun_quarantine(struct backend *b, const struct backend_unit *u, uint64_t keep,
                          char *ret_name, size_t namelen)
{
	if (ret_name)
		snprintf(ret_name, namelen, "%s (dropped from the table)", u->name);
	if (keep > 0 && u->kind == BACKEND_SEGMENT)
		return lun_truncate(b, u, keep);
	return lun_remove(b, u);
}

/* ---------------------------------------------------------- appending */

static int lun_segment_start(struct backend *b, uint64_t first_seq)
{
	struct backend_lun *l = LUNB(b);
	struct lun_table t;
	int r;
	int fp = FAILPOINT(BACKEND_SEGMENT_BEFORE_CREATE);

	if (fp < 0)
		return fp;
	fp = lun_guard(b);
	if (fp < 0)
		return fp;
	pthread_mutex_lock(&l->lock);
	t = l->t;
	if (l->pend_len) {
		r = -EINVAL; /* the caller must sync first */
		goto out;
	}
	if (t.nseg == LUN_SEGS_MAX) {
		r = -ENOSPC;
		goto out;
	}
	if (t.nseg && first_seq == t.seg[t.nseg - 1].first_seq) {
		/* The last segment holds no record: it begins at first_seq and
		 * the store holds everything before it (recovery replayed up to
		 * first_seq - 1; a snapshot's cut asks for the segment after its
		 * seq).  An earlier writer started it and stopped before its
		 * first record: a snapshot's cut, then a crash, a stop or a
		 * fence; or two snapshots came with nothing written between
		 * them.  It is this segment, begun again at the head. */
		t.seg[t.nseg - 1].start = l->head;
		r = table_write(l, &t);
		if (r >= 0)
			l->seg_open = true;
		goto out;
	}
	if (t.nseg && first_seq < t.seg[t.nseg - 1].first_seq) {
		r = -EINVAL;
		goto out;
	}
	t.seg[t.nseg++] = (struct lun_seg){first_seq, l->head};
	r = table_write(l, &t);
	if (r >= 0)
		l->seg_open = true;
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

static int lun_append_locked(struct backend_lun *l, const void *buf, size_t len)
{
	if (l->pend_len + len + l->bs + JOURNAL_HEADER_SIZE > l->pend_cap) {
		size_t cap = (l->pend_len + len + l->bs + JOURNAL_HEADER_SIZE) * 2;
		uint8_t *p = realloc(l->pend, cap);

		if (!p)
			return -ENOMEM;
		l->pend = p;
		l->pend_cap = cap;
	}
	memcpy(l->pend + l->pend_len, buf, len);
	l->pend_len += len;
	return 0;
}

/* Write the pending bytes as whole blocks (ended by a PAD record) at head,
 * zeroing ring space ahead first when needed. */
static int lun_sync_locked(struct backend_lun *l)
{
	uint64_t blocks, oldest, zu;
	size_t rest;
	int r;

	if (!l->pend_len)
		return 0;
	if (!l->seg_open)
		return -EINVAL;
	rest = l->pend_len % l->bs;
	if (rest) {
		size_t pad = l->bs - rest;

		if (pad < JOURNAL_HEADER_SIZE)
			pad += l->bs;
		r = (int)journal_encode_pad(l->pend + l->pend_len, pad, l->epoch_hint);
		if (r < 0)
			return r;
		l->pend_len += pad;
	}
	blocks = l->pend_len / l->bs;
	oldest = l->t.nseg ? l->t.seg[0].start : l->head;
	if (l->head + blocks > oldest + l->ring_blocks)
		return -ENOSPC;
	if (l->head + blocks > l->t.zeroed_until) {
		struct lun_table t = l->t;

		zu = l->head + blocks + LUN_ZERO_CHUNK / l->bs;
		if (zu > oldest + l->ring_blocks)
			zu = oldest + l->ring_blocks;
		r = ring_zero(l, t.zeroed_until, zu);
		if (r < 0)
			return r;
		t.zeroed_until = zu;
		r = table_write(l, &t);
		if (r < 0)
			return r;
	}
	r = ring_io(l, true, l->head, l->pend, blocks);
	if (r < 0)
		return r;
	l->head += blocks;
	l->pend_len = 0;
	return 0;
}

static int lun_append(struct backend *b, const void *buf, size_t len, bool durable)
{
	struct backend_lun *l = LUNB(b);
	int r;

	pthread_mutex_lock(&l->lock);
	if (len >= JOURNAL_HEADER_SIZE)
		l->epoch_hint = journal_get_le64((const uint8_t *)buf + 24);
	r = lun_append_locked(l, buf, len);
	if (r >= 0 && durable)
		r = lun_sync_locked(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

static int lun_sync(struct backend *b)
{
	struct backend_lun *l = LUNB(b);
	int r;

	pthread_mutex_lock(&l->lock);
	r = lun_sync_locked(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* ---------------------------------------------------------- snapshots */

static int lun_snapshot_begin(struct backend *b, uint64_t seq)
{
	struct backend_lun *l = LUNB(b);

	pthread_mutex_lock(&l->lock);
	l->snap_open = true;
	l->snap_slot = l->t.snap_slot == 0 ? 1 : 0;
	l->snap_seq = seq;
	l->snap_off = 0;
	l->snap_buf_len = 0;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int lun_snapshot_write(struct backend *b, const void *buf, size_t len)
{
	struct backend_lun *l = LUNB(b);
	const uint8_t *p = buf;
	int r = 0;

	pthread_mutex_lock(&l->lock);
	if (!l->snap_open) {
		r = -EINVAL;
		goto out;
	}
	if (l->snap_off + l->snap_buf_len + len > l->snap_blocks * l->bs) {
		r = -ENOSPC;
		goto out;
	}
	while (len && r >= 0) {
		size_t n = LUN_IO_MAX - l->snap_buf_len;

		if (n > len)
			n = len;
		memcpy(l->snap_buf + l->snap_buf_len, p, n);
		l->snap_buf_len += n;
		p += n;
		len -= n;
		if (l->snap_buf_len == LUN_IO_MAX) {
			r = lun_write(l, l->snap_lba[l->snap_slot] + l->snap_off / l->bs,
			              l->snap_buf, LUN_IO_MAX);
			l->snap_off += LUN_IO_MAX;
			l->snap_buf_len = 0;
		}
	}
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

static void lun_snapshot_abort(struct backend *b);

/* Every WRITE reaches the LUN with FUA: what is on it is durable already. */
static int lun_sync_unit(struct backend *b, const struct backend_unit *u)
{
	(void)b;
	(void)u;
	return 0;
}

static int lun_snapshot_commit(struct backend *b)
{
	struct backend_lun *l = LUNB(b);
	struct lun_table t;
	int r = lun_guard(b);

	if (r < 0) {
		lun_snapshot_abort(b);
		return r;
	}
	pthread_mutex_lock(&l->lock);
	if (!l->snap_open) {
		r = -EINVAL;
		goto out;
	}
	if (l->snap_buf_len) {
		size_t whole = (l->snap_buf_len + l->bs - 1) / l->bs * l->bs;

		memset(l->snap_buf + l->snap_buf_len, 0, whole - l->snap_buf_len);
		r = lun_write(l, l->snap_lba[l->snap_slot] + l->snap_off / l->bs, l->snap_buf,
		              whole);
		if (r < 0)
			goto out;
	}
	t = l->t;
	t.snap_slot = l->snap_slot;
	t.snap_seq = l->snap_seq;
	t.snap_bytes = l->snap_off + l->snap_buf_len;
	r = table_write(l, &t);
	l->snap_open = false;
out:
	pthread_mutex_unlock(&l->lock);
	return r;
}

static void lun_snapshot_abort(struct backend *b)
{
	struct backend_lun *l = LUNB(b);

	pthread_mutex_lock(&l->lock);
	l->snap_open = false;
	pthread_mutex_unlock(&l->lock);
}

/* ------------------------------------------------------------ open/close */

static void lun_journal_room(struct backend *b, uint64_t *ret_used, uint64_t *ret_capacity)
{
	struct backend_lun *l = LUNB(b);
	uint64_t oldest;

	pthread_mutex_lock(&l->lock);
	oldest = l->t.nseg ? l->t.seg[0].start : l->head;
	*ret_used = (l->head - oldest) * l->bs + l->pend_len;
	*ret_capacity = l->ring_blocks * l->bs;
	pthread_mutex_unlock(&l->lock);
}

static size_t lun_block_size(struct backend *b)
{
	return LUNB(b)->bs;
}

static int lun_epoch_check(struct backend *b, uint64_t *ret_epoch)
{
	return lun_epoch_get(b, ret_epoch);
}

static void lun_close(struct backend *b)
{
	struct backend_lun *l = LUNB(b);

	if (!l)
		return;
	scsi_pr_close(l->h);
	pthread_mutex_destroy(&l->lock);
	free(l->pend);
	free(l->snap_buf);
	free(l);
}

static const struct backend_ops lun_ops = {
        .name = "lun",
        .close = lun_close,
        .block_size = lun_block_size,
        .epoch_get = lun_epoch_get,
        .epoch_set = lun_epoch_set,
        .epoch_check = lun_epoch_check,
        .list = lun_list,
        .read = lun_read_unit,
        .truncate = lun_truncate,
        .remove = lun_remove,
        .quarantine = lun_quarantine,
        .segment_start = lun_segment_start,
        .append = lun_append,
        .sync = lun_sync,
        .sync_unit = lun_sync_unit,
        .snapshot_begin = lun_snapshot_begin,
        .snapshot_write = lun_snapshot_write,
        .snapshot_commit = lun_snapshot_commit,
        .snapshot_abort = lun_snapshot_abort,
        .journal_room = lun_journal_room,
};

enum lun_join {
	LUN_JOIN_NONE,           /* read-only: register nothing */
	LUN_JOIN_ALWAYS,         /* format: the operator's command registers */
	LUN_JOIN_STORE,          /* a writable open: scsi_resv_join_store's rule */
	LUN_JOIN_STORE_OR_EMPTY, /* the same, or a LUN with no key (no agent) */
};

/* Log in and register node's key on this session as `join` says. */
static int lun_connect(const char *url, const char *initiator, const char *node, enum lun_join join,
                       usec_t io_timeout, struct backend_lun **ret, char *err, size_t errlen)
{
	struct scsi_pr_options so = {.ua_retries = 5};
	struct backend_lun *l = NULL;
	struct scsi_pr_url u;
	char iqn[SCSI_PR_IQN_MAX], detail[384];
	uint64_t key;
	int r;

	r = scsi_pr_url_parse(url, &u, err, errlen);
	if (r < 0)
		goto fail;
	if (!initiator) {
		r = scsi_pr_iqn_for_node(NULL, node, iqn, sizeof(iqn));
		if (r < 0) {
			errbuf_set(err, errlen, "no initiator IQN for node '%s'", node);
			goto fail;
		}
		initiator = iqn;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		r = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->b.ops = &lun_ops;
	l->io_timeout = io_timeout ? io_timeout : LUN_IO_TIMEOUT;
	snprintf(l->b.desc, sizeof(l->b.desc), "lun:%s", url);
	l->t_copy = 1;
	l->t.snap_slot = LUN_NO_SLOT;
	r = scsi_pr_open(&u, initiator, &so, deadline(l), &l->h, err, errlen);
	if (r < 0)
		goto fail;
	l->bs = scsi_pr_block_size(l->h);
	l->nblocks = scsi_pr_num_blocks(l->h);
	if (l->bs < 512 || l->bs > LUN_META_BYTES || (l->bs & (l->bs - 1))) {
		errbuf_set(err, errlen, "'%s' has %u-byte blocks; 512..4096 supported", url, l->bs);
		r = -EINVAL;
		goto fail;
	}
	l->snap_buf = malloc(LUN_IO_MAX);
	if (!l->snap_buf) {
		r = -ENOMEM;
		goto fail;
	}
	if (join != LUN_JOIN_NONE) {
		r = scsi_pr_key_for_node(node, &key);
		if (r >= 0 && (join == LUN_JOIN_STORE || join == LUN_JOIN_STORE_OR_EMPTY))
			r = scsi_resv_join_store(l->h, key, join == LUN_JOIN_STORE_OR_EMPTY,
			                         deadline(l), detail, sizeof(detail));
		else if (r >= 0)
			r = scsi_resv_join(l->h, key, deadline(l), detail, sizeof(detail));
		if (r < 0) {
			errbuf_set(err, errlen,
			           "cannot join the reservation of '%s' as '%s': %s (%s)", url,
			           node, strerror(-r), detail);
			goto fail;
		}
	}
	*ret = l;
	return 0;
fail:
	if (l)
		lun_close(&l->b);
	return r;
}

enum format_mode {
	FORMAT_BLANK,  /* refuse what libblkid recognises */
	FORMAT_FORCE,  /* overwrite anything, with a warning */
	FORMAT_UNUSED, /* refuse unless the probed part is all zero */
};

/* Is the first part of the LUN blank?  libblkid probes a memfd copy. */
static int probe_blank(struct backend_lun *l, const char *url, enum format_mode mode, char *err,
                       size_t errlen)
{
	size_t len = LUN_PROBE_BYTES;
	uint8_t *buf = NULL;
	char what[256] = "";
	blkid_probe pr = NULL;
	int fd = -1, r;

	if (len > l->nblocks * l->bs)
		len = (size_t)(l->nblocks * l->bs);
	buf = malloc(len);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	r = lun_read(l, 0, buf, len);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot read '%s': %s", url, strerror(-r));
		goto out;
	}
	if (memcmp(buf, SB_MAGIC, 8) == 0) {
		snprintf(what, sizeof(what), "already a kubefence journal");
		goto found;
	}
	if (mode == FORMAT_UNUSED) {
		for (size_t i = 0; i < len; i++) {
			if (buf[i]) {
				errbuf_set(
				        err, errlen,
				        "'%s' holds no kubefence store but was used (a non-zero "
				        "byte at offset %zu): not initialising it automatically; "
				        "look at what it holds, then initialise it explicitly",
				        url, i);
				r = -EEXIST;
				goto out;
			}
		}
	}
	fd = memfd_create("kf-lun-probe", MFD_CLOEXEC);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		r = -errno;
		errbuf_set(err, errlen, "cannot stage '%s' for probing: %s", url, strerror(-r));
		goto out;
	}
	pr = blkid_new_probe();
	if (!pr || blkid_probe_set_device(pr, fd, 0, (blkid_loff_t)len) < 0) {
		r = -ENOMEM;
		errbuf_set(err, errlen, "cannot probe '%s'", url);
		goto out;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
	r = blkid_do_safeprobe(pr);
	if (r == 1) {
		r = 0;
		goto out;
	}
	if (r == -2) {
		snprintf(what, sizeof(what), "several conflicting signatures");
	} else if (r < 0) {
		r = -EIO;
		errbuf_set(err, errlen, "probing '%s' failed", url);
		goto out;
	} else {
		const char *type = NULL, *uuid = NULL;

		if (blkid_probe_lookup_value(pr, "TYPE", &type, NULL) < 0 &&
		    blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL) < 0)
			type = "an unknown";
		(void)blkid_probe_lookup_value(pr, "UUID", &uuid, NULL);
		snprintf(what, sizeof(what), "%s signature%s%s", type, uuid ? ", UUID " : "",
		         uuid ? uuid : "");
	}
found:
	if (mode == FORMAT_FORCE) {
		log_warning("'%s' holds %s; overwriting it as forced", url, what);
		r = 0;
		goto out;
	}
	errbuf_set(err, errlen,
	           "'%s' is not blank: it holds %s; refusing to initialise it (force to "
	           "overwrite)",
	           url, what);
	r = -EEXIST;
out:
	if (pr)
		blkid_free_probe(pr);
	if (fd >= 0)
		(void)close(fd);
	free(buf);
	return r;
}

static int format_lun(const char *url, const char *initiator, const char *node,
                      enum format_mode mode, enum lun_join join, char *err, size_t errlen)
{
	struct backend_lun *l = NULL;
	uint8_t *p = NULL, *z = NULL;
	uint64_t data, align;
	int r;

	/* the operator's format registers; a MetaService's own, at its first
	 * promotion, joins as its store's open would */
	r = lun_connect(url, initiator, node, mode != FORMAT_UNUSED ? LUN_JOIN_ALWAYS : join, 0, &l,
	                err, errlen);
	if (r < 0)
		return r;
	r = probe_blank(l, url, mode, err, errlen);
	if (r < 0)
		goto out;
	align = LUN_DATA_ALIGN / l->bs;
	if (l->nblocks < align + 64) {
		errbuf_set(err, errlen, "'%s' is too small (%" PRIu64 " blocks)", url, l->nblocks);
		r = -EINVAL;
		goto out;
	}
	l->table_blocks = LUN_META_BYTES / l->bs;
	l->table_lba[0] = 2;
	l->table_lba[1] = 2 + l->table_blocks;
	data = l->nblocks - align;
	l->snap_blocks = data / 4;
	l->snap_lba[0] = align;
	l->snap_lba[1] = align + l->snap_blocks;
	l->ring_lba = align + 2 * l->snap_blocks;
	l->ring_blocks = l->nblocks - l->ring_lba;
	if (getrandom(l->uuid, sizeof(l->uuid), 0) != (ssize_t)sizeof(l->uuid)) {
		r = -errno;
		goto out;
	}
	l->uuid[6] = (uint8_t)((l->uuid[6] & 0x0f) | 0x40);
	l->uuid[8] = (uint8_t)((l->uuid[8] & 0x3f) | 0x80);
	/* Order: wipe the metadata megabyte (old superblock first, so a crash
	 * never leaves an old superblock over new tables), then the empty
	 * table and the epoch, the superblock last. */
	z = calloc(1, LUN_DATA_ALIGN);
	p = malloc(LUN_META_BYTES);
	if (!z || !p) {
		r = -ENOMEM;
		goto out;
	}
	r = lun_write(l, 0, z, LUN_DATA_ALIGN);
	if (r >= 0) {
		l->t.gen = 0;
		l->t_copy = 1;
		r = table_write(l, &l->t); /* gen 1 into copy 0 */
	}
	if (r >= 0) {
		put_epoch(p, l->bs, 0);
		r = lun_write(l, 1, p, l->bs);
	}
	if (r >= 0) {
		put_sb(l, p);
		r = lun_write(l, 0, p, l->bs);
	}
	if (r < 0) {
		errbuf_set(err, errlen, "cannot initialise '%s': %s", url, strerror(-r));
		goto out;
	}
	log_info("initialised '%s': %" PRIu64 " blocks of %u bytes, journal ring %" PRIu64
	         " blocks, snapshot slots 2 x %" PRIu64 " blocks",
	         url, l->nblocks, l->bs, l->ring_blocks, l->snap_blocks);
out:
	free(z);
	free(p);
	lun_close(&l->b);
	return r;
}

int backend_lun_format(const char *url, const char *initiator, const char *node, bool force,
                       char *err, size_t errlen)
{
	return format_lun(url, initiator, node, force ? FORMAT_FORCE : FORMAT_BLANK,
	                  LUN_JOIN_ALWAYS, err, errlen);
}

int backend_lun_format_unused(const char *url, const char *initiator, const char *node,
                              bool join_empty, char *err, size_t errlen)
{
	return format_lun(url, initiator, node, FORMAT_UNUSED,
	                  join_empty ? LUN_JOIN_STORE_OR_EMPTY : LUN_JOIN_STORE, err, errlen);
}

int backend_lun_open(const char *url, const char *initiator, const char *node,
                     const struct backend_lun_options *opts, struct backend **ret, char *err,
                     size_t errlen)
{
	struct backend_lun_options o = opts ? *opts : (struct backend_lun_options){0};
	struct backend_lun *l = NULL;
	struct lun_table t[2];
	uint8_t *p = NULL;
	int r, ok[2];

	r = lun_connect(url, initiator, node,
	                o.no_join      ? LUN_JOIN_NONE
	                : o.join_empty ? LUN_JOIN_STORE_OR_EMPTY
	                               : LUN_JOIN_STORE,
	                o.io_timeout, &l, err, errlen);
	if (r < 0)
		return r;
	p = malloc(LUN_META_BYTES);
	if (!p) {
		r = -ENOMEM;
		goto fail;
	}
	r = lun_read(l, 0, p, l->bs);
	if (r >= 0)
		r = get_sb(l, p);
	if (r < 0) {
		errbuf_set(err, errlen,
		           r == -EMEDIUMTYPE ? "'%s' holds no kubefence store; format it first"
		           : r == -EBADMSG   ? "the superblock of '%s' is damaged"
		                             : "cannot read the superblock of '%s'",
		           url);
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		r = lun_read(l, l->table_lba[i], p, LUN_META_BYTES);
		if (r < 0) {
			errbuf_set(err, errlen, "cannot read the state table of '%s': %s", url,
			           strerror(-r));
			goto fail;
		}
		ok[i] = get_table(l, p, &t[i]) == 0;
	}
	if (!ok[0] && !ok[1]) {
		errbuf_set(err, errlen, "both state-table copies of '%s' are damaged", url);
		r = -EBADMSG;
		goto fail;
	}
	l->t_copy = ok[0] && (!ok[1] || t[0].gen > t[1].gen) ? 0 : 1;
	l->t = t[l->t_copy];
	l->head = l->t.zeroed_until;
	free(p);
	*ret = &l->b;
	return 0;
fail:
	free(p);
	lun_close(&l->b);
	return r;
}

int metastore_open_lun(const char *url, const char *initiator_iqn, const char *node,
                       const struct metastore_options *opts, struct metastore **ret, char *err,
                       size_t errlen)
{
	return metastore_open_lun_join(url, initiator_iqn, node, false, opts, ret, err, errlen);
}

int metastore_open_lun_join(const char *url, const char *initiator_iqn, const char *node,
                            bool join_empty, const struct metastore_options *opts,
                            struct metastore **ret, char *err, size_t errlen)
{
	struct backend_lun_options lo = {.no_join = opts && opts->read_only,
	                                 .join_empty = join_empty};
	struct backend *b;
	int r;

	r = backend_lun_open(url, initiator_iqn, node, &lo, &b, err, errlen);
	if (r < 0)
		return r;
	return metastore_open(b, opts, ret, err, errlen);
}
