/* backend_dir: the metadata store on a directory of a mounted volume (a
 * Kubernetes PVC).  Segments and snapshots are plain files; every step that
 * makes something durable follows write -> fdatasync/fsync -> rename ->
 * fsync(dir), so after a crash a file is either absent or complete (snapshots,
 * the epoch cell) or a prefix of what was appended (segments).
 *
 * Write order, which recovery relies on:
 *   - a new segment file is created and the directory fsynced before its
 *     first record is acknowledged;
 *   - a snapshot becomes visible only by rename after its data is fsynced,
 *     and the directory is fsynced before any segment it covers is removed;
 *   - the epoch cell is replaced by rename of a fsynced temporary file.
 * epoch_check costs one stat(2): rename gives the cell a new inode, so the
 * file is re-read only when inode, size or mtime changed. */
#include "config.h"

#include "storage/backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "lib/util.h"
#include "storage/journal.h"

#define EPOCH_MAGIC   0x5045464Bu /* "KFEP" */
#define EPOCH_VERSION 1
#define EPOCH_SIZE    24

struct backend_dir {
	struct backend b; /* first: the generic part */
	char dir[4096];
	int dir_fd;
	int seg_fd; /* current append target, -1 when none */
	int snap_fd;
	uint64_t snap_seq;
	uint64_t snap_written, snap_flushed; /* bytes written, handed to writeback */
	char snap_tmp[96];                   /* the open snapshot's temporary name */
	int rd_fd;                           /* cached reader */
	char rd_name[128];
	/* epoch cell cache for epoch_check */
	bool epoch_cached;
	ino_t epoch_ino;
	off_t epoch_size;
	struct timespec epoch_mtim;
	uint64_t epoch_value;
};

static struct backend_dir *DIRB(struct backend *b)
{
	return (struct backend_dir *)b;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int path_of(struct backend_dir *d, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", d->dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Every unit's name carries the epoch of the writer that created it, so two
 * writers never compute the same name: a fenced writer's segment or snapshot
 * is a file of its own, never the newer master's. */
static void seg_name(uint64_t seq, uint64_t epoch, char buf[80])
{
	snprintf(buf, 80, "journal-%016" PRIx64 "-%016" PRIx64 ".log", seq, epoch);
}

static void snap_name(uint64_t seq, uint64_t epoch, char buf[80])
{
	snprintf(buf, 80, "snapshot-%016" PRIx64 "-%016" PRIx64 ".snap", seq, epoch);
}

static void marker_name(uint64_t epoch, char buf[32])
{
	snprintf(buf, 32, "epoch-%016" PRIx64, epoch);
}

static bool parse_hex16(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 16; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	*ret = v;
	return true;
}

/* Parse "<prefix><16 hex>-<16 hex><suffix>" (id, epoch), or the older
 * "<prefix><16 hex><suffix>" (epoch 0), exactly. */
static bool parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *ret_id,
                       uint64_t *ret_epoch)
{
	size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);

	if (nl < pl + 16 + sl || strncmp(name, prefix, pl) != 0 || strcmp(name + nl - sl, suffix))
		return false;
	if (nl == pl + 16 + sl) {
		*ret_epoch = 0;
		return parse_hex16(name + pl, ret_id);
	}
	return nl == pl + 33 + sl && name[pl + 16] == '-' && parse_hex16(name + pl, ret_id) &&
	       parse_hex16(name + pl + 17, ret_epoch);
}

static void dir_close(struct backend *b)
{
	struct backend_dir *d = DIRB(b);

	if (!d)
		return;
	if (d->seg_fd >= 0)
		(void)close(d->seg_fd);
	if (d->snap_fd >= 0)
		(void)close(d->snap_fd);
	if (d->rd_fd >= 0)
		(void)close(d->rd_fd);
	if (d->dir_fd >= 0)
		(void)close(d->dir_fd);
	free(d);
}

static size_t dir_block_size(struct backend *b)
{
	return 1;
}

/* The largest epoch among the markers epoch-<hex> (0 when none). */
static int max_marker(struct backend_dir *d, uint64_t *ret)
{
	uint64_t mx = 0, v;
	struct dirent *de;
	DIR *dh;
	int fd;

	fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dh = fdopendir(fd);
	if (!dh) {
		int r = -errno;

		(void)close(fd);
		return r;
	}
	while ((de = readdir(dh)))
		if (strncmp(de->d_name, "epoch-", 6) == 0 && strlen(de->d_name) == 22 &&
		    parse_hex16(de->d_name + 6, &v) && v > mx)
			mx = v;
	(void)closedir(dh);
	*ret = mx;
	return 0;
}

static int dir_epoch_get(struct backend *b, uint64_t *ret_epoch)
{
	struct backend_dir *d = DIRB(b);
	uint8_t buf[EPOCH_SIZE];
	int fd, r;
	ssize_t n;
	struct stat st;

	uint64_t mk = 0;

	r = max_marker(d, &mk);
	if (r < 0)
		return r;
	fd = openat(d->dir_fd, "epoch", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*ret_epoch = mk;
			d->epoch_cached = false;
			return 0;
		}
		return -errno;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if (n != EPOCH_SIZE || journal_get_le32(buf) != EPOCH_MAGIC ||
	    journal_get_le32(buf + 4) != EPOCH_VERSION ||
	    journal_get_le32(buf + 20) != crc32c(0, buf, 20)) {
		r = -EBADMSG;
		goto out;
	}
	d->epoch_value = journal_get_le64(buf + 8);
	if (mk > d->epoch_value)
		d->epoch_value = mk;
	d->epoch_ino = st.st_ino;
	d->epoch_size = st.st_size;
	d->epoch_mtim = st.st_mtim;
	d->epoch_cached = true;
	*ret_epoch = d->epoch_value;
	r = 0;
out:
	(void)close(fd);
	return r;
}

/* Claim `epoch`.  A rename cannot compare-and-set: two claims racing on the
 * cell could leave the older one's value in it.  So each claim first creates
 * its own marker epoch-<hex> (exclusively, never removed by a newer writer),
 * and the volume's epoch is the largest of the cell and the markers
 * (dir_epoch_get): a claim never lowers it, and a claimer that finds a
 * larger marker before or after writing the cell gets -ESTALE.  The cell
 * remains what the per-commit check looks at (one stat); a changed cell
 * makes that check read the markers too. */
static int dir_epoch_set(struct backend *b, uint64_t epoch)
{
	struct backend_dir *d = DIRB(b);
	uint8_t buf[EPOCH_SIZE] = {0};
	char marker[32], tmp[48];
	uint64_t mx = 0;
	int fd, r;

	marker_name(epoch, marker);
	fd = openat(d->dir_fd, marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST)
		return -errno;
	if (fd >= 0)
		(void)close(fd);
	if (fsync(d->dir_fd) < 0)
		return -errno;
	r = max_marker(d, &mx);
	if (r < 0)
		return r;
	if (mx > epoch)
		return -ESTALE;
	journal_put_le32(buf, EPOCH_MAGIC);
	journal_put_le32(buf + 4, EPOCH_VERSION);
	journal_put_le64(buf + 8, epoch);
	journal_put_le32(buf + 20, crc32c(0, buf, 20));
	snprintf(tmp, sizeof(tmp), "epoch.tmp-%016" PRIx64, epoch);
	fd = openat(d->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = write_all(fd, buf, sizeof(buf));
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	(void)close(fd);
	if (r < 0)
		return r;
	if (renameat(d->dir_fd, tmp, d->dir_fd, "epoch") < 0)
		return -errno;
	if (fsync(d->dir_fd) < 0)
		return -errno;
	d->epoch_cached = false;
	r = max_marker(d, &mx);
	if (r < 0)
		return r;
	if (mx > epoch)
		return -ESTALE;
	/* older markers say nothing any more; a failure here costs nothing */
	for (uint64_t e = epoch > 64 ? epoch - 64 : 1; e < epoch; e++) {
		marker_name(e, marker);
		(void)unlinkat(d->dir_fd, marker, 0);
	}
	return 0;
}

static int dir_epoch_check(struct backend *b, uint64_t *ret_epoch)
{
	struct backend_dir *d = DIRB(b);
	struct stat st;

	if (fstatat(d->dir_fd, "epoch", &st, 0) < 0)
		return errno == ENOENT ? (*ret_epoch = 0, 0) : -errno;
	if (d->epoch_cached && st.st_ino == d->epoch_ino && st.st_size == d->epoch_size &&
	    st.st_mtim.tv_sec == d->epoch_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == d->epoch_mtim.tv_nsec) {
		*ret_epoch = d->epoch_value;
		return 0;
	}
	return dir_epoch_get(b, ret_epoch);
}

/* Immediately before a unit is created, cut, renamed or removed: refuse
 * (-ESTALE) when the unit belongs to a newer epoch or a newer epoch holds
 * the volume.  Nothing to check for readers and offline tools (epoch 0). */
static int guard(struct backend_dir *d, uint64_t unit_epoch)
{
	uint64_t cur = 0;
	int r;

	if (!d->b.epoch)
		return 0;
	if (unit_epoch > d->b.epoch)
		return -ESTALE;
	r = dir_epoch_check(&d->b, &cur);
	if (r < 0)
		return r;
	return cur > d->b.epoch ? -ESTALE : 0;
}

static int unit_cmp(const void *a, const void *b)
{
	const struct backend_unit *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

static int dir_list(struct backend *b, struct backend_unit **ret_units, size_t *ret_n)
{
	struct backend_dir *d = DIRB(b);
	struct backend_unit *units = NULL;
	size_t n = 0, cap = 0;
	DIR *dh = NULL;
	struct dirent *de;
	int fd, r;

	fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dh = fdopendir(fd);
	if (!dh) {
		r = -errno;
		(void)close(fd);
		return r;
	}
	while ((de = readdir(dh))) {
		struct backend_unit u = {0};
		struct stat st;

		if (parse_name(de->d_name, "journal-", ".log", &u.id, &u.epoch))
			u.kind = BACKEND_SEGMENT;
		else if (parse_name(de->d_name, "snapshot-", ".snap", &u.id, &u.epoch))
			u.kind = BACKEND_SNAPSHOT;
		else
			continue;
		if (fstatat(d->dir_fd, de->d_name, &st, 0) < 0) {
			r = -errno;
			goto fail;
		}
		u.size = (uint64_t)st.st_size;
		r = path_of(d, de->d_name, u.name, sizeof(u.name));
		if (r < 0)
			goto fail;
		if (n == cap) {
			struct backend_unit *nu;

			cap = cap ? cap * 2 : 16;
			nu = realloc(units, cap * sizeof(*units));
			if (!nu) {
				r = -ENOMEM;
				goto fail;
			}
			units = nu;
		}
		units[n++] = u;
	}
	(void)closedir(dh);
	if (n)
		qsort(units, n, sizeof(*units), unit_cmp);
	*ret_units = units;
	*ret_n = n;
	return 0;
fail:
	(void)closedir(dh);
	free(units);
	return r;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static ssize_t dir_read(struct backend *b, const struct backend_unit *u, uint64_t off, void *buf,
                        size_t len)
{
	struct backend_dir *d = DIRB(b);
	ssize_t n;

	if (d->rd_fd < 0 || strcmp(d->rd_name, u->name) != 0) {
		if (d->rd_fd >= 0)
			(void)close(d->rd_fd);
		d->rd_fd = openat(d->dir_fd, base_name(u->name), O_RDONLY | O_CLOEXEC);
		if (d->rd_fd < 0)
			return -errno;
		(void)str_copy(d->rd_name, sizeof(d->rd_name), u->name);
		(void)posix_fadvise(d->rd_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	do
		n = pread(d->rd_fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static void drop_reader(struct backend_dir *d)
{
	if (d->rd_fd >= 0)
		(void)close(d->rd_fd);
	d->rd_fd = -1;
	d->rd_name[0] = '\0';
}

static int dir_truncate(struct backend *b, const struct backend_unit *u, uint64_t size)
{
	struct backend_dir *d = DIRB(b);
	int fd, r = 0;
	int fp = FAILPOINT(BACKEND_UNIT_BEFORE_TRUNCATE);

	if (fp < 0)
		return fp;
	r = guard(d, u->epoch);
	if (r < 0)
		return r;
	fd = openat(d->dir_fd, base_name(u->name), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0)
		r = -errno;
	(void)close(fd);
	drop_reader(d);
	return r;
}

static int dir_remove(struct backend *b, const struct backend_unit *u)
{
	struct backend_dir *d = DIRB(b);
	int fp = FAILPOINT(BACKEND_UNIT_BEFORE_REMOVE);

	if (fp < 0)
		return fp;
	fp = guard(d, u->epoch);
	if (fp < 0)
		return fp;
	drop_reader(d);
	if (unlinkat(d->dir_fd, base_name(u->name), 0) < 0 && errno != ENOENT)
		return -errno;
	return fsync(d->dir_fd) < 0 ? -errno : 0;
}

static int dir_quarantine(struct backend *b, const struct backend_unit *u, uint64_t keep,
                          char *ret_name, size_t namelen)
{
	struct backend_dir *d = DIRB(b);
	const char *name = base_name(u->name);
	char aside[256], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int src = -1, dst = -1, r;
	uint8_t *buf = NULL;

	r = guard(d, u->epoch);
	if (r < 0)
		return r;
	drop_reader(d);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(aside, sizeof(aside), "%s.corrupt-%s", name, stamp);
	if (renameat(d->dir_fd, name, d->dir_fd, aside) < 0) {
		r = -errno;
		goto out;
	}
	if (keep > 0) {
		uint64_t off = 0;

		buf = malloc(1 << 20);
		if (!buf) {
			r = -ENOMEM;
			goto out;
		}
		src = openat(d->dir_fd, aside, O_RDONLY | O_CLOEXEC);
		dst = openat(d->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (src < 0 || dst < 0) {
			r = -errno;
			goto out;
		}
		while (off < keep) {
			size_t want = keep - off > (1 << 20) ? (1 << 20) : (size_t)(keep - off);
			ssize_t n = pread(src, buf, want, (off_t)off);

			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				goto out;
			}
			r = write_all(dst, buf, (size_t)n);
			if (r < 0)
				goto out;
			off += (uint64_t)n;
		}
		if (fsync(dst) < 0) {
			r = -errno;
			goto out;
		}
	}
	if (fsync(d->dir_fd) < 0) {
		r = -errno;
		goto out;
	}
	if (ret_name)
		snprintf(ret_name, namelen, "%s/%s", d->dir, aside);
	r = 0;
out:
	if (src >= 0)
		(void)close(src);
	if (dst >= 0)
		(void)close(dst);
	free(buf);
	return r;
}

static int dir_segment_start(struct backend *b, uint64_t first_seq)
{
	struct backend_dir *d = DIRB(b);
	char name[80];
	int fd;
	int fp = FAILPOINT(BACKEND_SEGMENT_BEFORE_CREATE);

	if (fp < 0)
		return fp;
	fp = guard(d, 0);
	if (fp < 0)
		return fp;
	/* Exclusive creation: a file of another epoch is never touched (the
	 * names differ).  The one file that may exist is this writer's own
	 * (same seq, same epoch), left by an earlier run of this epoch that
	 * stopped early in it: recovery replayed it to first_seq - 1, so it
	 * holds no record of this seq or later (at most COMMIT, PAD or a torn
	 * record) and is cut. */
	seg_name(first_seq, d->b.epoch, name);
	fd = openat(d->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		fd = openat(d->dir_fd, name, O_WRONLY | O_TRUNC | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* the new name must be durable before a record in it is acknowledged */
	if (fsync(d->dir_fd) < 0) {
		int r = -errno;

		(void)close(fd);
		return r;
	}
	if (d->seg_fd >= 0)
		(void)close(d->seg_fd);
	d->seg_fd = fd;
	return 0;
}

static int dir_sync(struct backend *b)
{
	struct backend_dir *d = DIRB(b);

	if (d->seg_fd < 0)
		return -EBADF;
	return fdatasync(d->seg_fd) < 0 ? -errno : 0;
}

static int dir_sync_unit(struct backend *b, const struct backend_unit *u)
{
	struct backend_dir *d = DIRB(b);
	int fd = openat(d->dir_fd, base_name(u->name), O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	(void)close(fd);
	return r;
}

static int dir_append(struct backend *b, const void *buf, size_t len, bool durable)
{
	struct backend_dir *d = DIRB(b);
	int r;

	if (d->seg_fd < 0)
		return -EBADF;
	r = write_all(d->seg_fd, buf, len);
	if (r < 0)
		return r;
	return durable ? dir_sync(b) : 0;
}

/* Remove the temporary files of snapshots that were never committed (a
 * writer killed while building one), of this epoch or an older one: each
 * may be as large as the store.  A newer epoch's are never touched.  The
 * caller has just checked the epoch.  Failures are harmless. */
static void remove_stale_tmps(struct backend_dir *d)
{
	struct dirent *de;
	DIR *dh;
	int fd = openat(d->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	dh = fdopendir(fd);
	if (!dh) {
		(void)close(fd);
		return;
	}
	while ((de = readdir(dh))) {
		char unit[128];
		size_t len = strlen(de->d_name);
		uint64_t id, epoch;

		if (len < 4 || len >= sizeof(unit) || strcmp(de->d_name + len - 4, ".tmp") != 0)
			continue;
		memcpy(unit, de->d_name, len - 4);
		unit[len - 4] = '\0';
		if (parse_name(unit, "snapshot-", ".snap", &id, &epoch) && epoch <= d->b.epoch)
			(void)unlinkat(d->dir_fd, de->d_name, 0);
	}
	(void)closedir(dh);
}

static int dir_snapshot_begin(struct backend *b, uint64_t seq)
{
	struct backend_dir *d = DIRB(b);
	char name[80];
	int r;

	if (d->snap_fd >= 0)
		return -EBUSY;
	r = guard(d, 0);
	if (r < 0)
		return r;
	snap_name(seq, d->b.epoch, name);
	snprintf(d->snap_tmp, sizeof(d->snap_tmp), "%s.tmp", name);
	/* this name and older ones are this writer's or a fenced writer's:
	 * leftovers of a crash during a snapshot */
	remove_stale_tmps(d);
	d->snap_fd = openat(d->dir_fd, d->snap_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (d->snap_fd < 0)
		return -errno;
	d->snap_seq = seq;
	d->snap_written = d->snap_flushed = 0;
	return 0;
}

/* A snapshot is written beside the writers, whose fdatasync shares the file
 * system with it: one fsync of the whole snapshot at the end would make a
 * writer's sync wait for hundreds of MB.  So writeback is started every
 * SNAP_FLUSH_BYTES and the range before that waited for, which keeps the
 * dirty part small; the final fsync then has little left to do. */
#define SNAP_FLUSH_BYTES (8u << 20)

static int dir_snapshot_write(struct backend *b, const void *buf, size_t len)
{
	struct backend_dir *d = DIRB(b);
	int r;

	if (d->snap_fd < 0)
		return -EBADF;
	r = write_all(d->snap_fd, buf, len);
	if (r < 0)
		return r;
	d->snap_written += len;
	if (d->snap_written - d->snap_flushed >= SNAP_FLUSH_BYTES) {
		/* a hint to the kernel: errors show up again in the final fsync */
		if (d->snap_flushed)
			(void)sync_file_range(d->snap_fd, 0, (off_t)d->snap_flushed,
			                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			                              SYNC_FILE_RANGE_WAIT_AFTER);
		(void)sync_file_range(d->snap_fd, (off_t)d->snap_flushed,
		                      (off_t)(d->snap_written - d->snap_flushed),
		                      SYNC_FILE_RANGE_WRITE);
		d->snap_flushed = d->snap_written;
	}
	return 0;
}

static void dir_snapshot_abort(struct backend *b)
{
	struct backend_dir *d = DIRB(b);

	if (d->snap_fd < 0)
		return;
	(void)close(d->snap_fd);
	d->snap_fd = -1;
	(void)unlinkat(d->dir_fd, d->snap_tmp, 0);
}

static int dir_snapshot_commit(struct backend *b)
{
	struct backend_dir *d = DIRB(b);
	char name[80];
	int r;

	if (d->snap_fd < 0)
		return -EBADF;
	if (fsync(d->snap_fd) < 0) {
		r = -errno;
		dir_snapshot_abort(b);
		return r;
	}
	/* a snapshot that outlived its writer's term commits nothing */
	r = guard(d, 0);
	if (r < 0) {
		dir_snapshot_abort(b);
		return r;
	}
	(void)close(d->snap_fd);
	d->snap_fd = -1;
	snap_name(d->snap_seq, d->b.epoch, name);
	if (renameat2(d->dir_fd, d->snap_tmp, d->dir_fd, name, RENAME_NOREPLACE) < 0) {
		/* EEXIST: this writer committed the state at this seq already
		 * (the same records, so the same snapshot); keep that one */
		r = errno == EEXIST ? 0 : -errno;
		(void)unlinkat(d->dir_fd, d->snap_tmp, 0);
		return r;
	}
	return fsync(d->dir_fd) < 0 ? -errno : 0;
}

static int dir_clone(struct backend *b, struct backend **ret)
{
	struct backend *c;
	int r = backend_dir_open(DIRB(b)->dir, false, &c, NULL, 0);

	if (r < 0)
		return r;
	c->epoch = b->epoch;
	*ret = c;
	return 0;
}

static const struct backend_ops dir_ops = {
        .name = "dir",
        .close = dir_close,
        .block_size = dir_block_size,
        .epoch_get = dir_epoch_get,
        .epoch_set = dir_epoch_set,
        .epoch_check = dir_epoch_check,
        .list = dir_list,
        .read = dir_read,
        .truncate = dir_truncate,
        .remove = dir_remove,
        .quarantine = dir_quarantine,
        .segment_start = dir_segment_start,
        .append = dir_append,
        .sync = dir_sync,
        .sync_unit = dir_sync_unit,
        .snapshot_begin = dir_snapshot_begin,
        .snapshot_write = dir_snapshot_write,
        .snapshot_commit = dir_snapshot_commit,
        .snapshot_abort = dir_snapshot_abort,
        .clone = dir_clone,
};

int backend_dir_open(const char *dir, bool create, struct backend **ret, char *err, size_t errlen)
{
	struct backend_dir *d;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->b.ops = &dir_ops;
	d->dir_fd = d->seg_fd = d->snap_fd = d->rd_fd = -1;
	if (str_copy(d->dir, sizeof(d->dir), dir) < 0) {
		errbuf_set(err, errlen, "data directory path too long");
		r = -ENAMETOOLONG;
		goto fail;
	}
	snprintf(d->b.desc, sizeof(d->b.desc), "dir:%s", dir);
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		errbuf_set(err, errlen, "cannot create data directory '%s': %s", dir, strerror(-r));
		goto fail;
	}
	d->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dir_fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "cannot open data directory '%s': %s", dir, strerror(-r));
		goto fail;
	}
	*ret = &d->b;
	return 0;
fail:
	dir_close(&d->b);
	return r;
}

const char *backend_dir_path(const struct backend *b)
{
	return b && b->ops == &dir_ops ? ((const struct backend_dir *)b)->dir : NULL;
}
