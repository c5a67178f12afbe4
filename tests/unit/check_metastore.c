/* Unit tests of the metadata store (storage/metastore.c) on the directory
 * backend: the API and its limits, recovery (torn tails at every byte of the
 * last record, damage in every field of a middle record, damaged snapshots),
 * snapshots versus journal-only replay, the epoch barrier and stepping down,
 * group commit with several threads, and offline check/repair. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "storage/journal.h"
#include "storage/metastore.h"
#include "tests/lib/kftest.h"

static char tmpdir[256];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kf-metastore-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char fpdir[300];

	(void)nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	/* the fault point directory of a test, with its log of fired points */
	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	(void)nftw(fpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static struct metastore *open_store(const char *dir, uint64_t epoch)
{
	struct metastore_options o = {.epoch = epoch};
	struct metastore *m = NULL;
	char err[1024];
	int r = metastore_open_dir(dir, &o, &m, err, sizeof(err));

	ck_assert_msg(r == 0, "open failed: %d %s", r, err);
	return m;
}

static void put_str(struct metastore *m, const char *k, const char *v)
{
	char err[256];

	ck_assert_int_eq(metastore_put(m, k, strlen(k), v, strlen(v), err, sizeof(err)), 0);
}

static void assert_value(struct metastore *m, const char *k, const char *v)
{
	void *val = NULL;
	size_t len = 0;

	ck_assert_int_eq(metastore_get(m, k, strlen(k), &val, &len), 0);
	ck_assert_uint_eq(len, strlen(v));
	ck_assert_mem_eq(val, v, len);
	free(val);
}

static void assert_absent(struct metastore *m, const char *k)
{
	void *val = NULL;

	ck_assert_int_eq(metastore_get(m, k, strlen(k), &val, NULL), -ENOENT);
}

/* The path of the segment with the highest first seq (or the n-th lowest). */
static void segment_path(int nth, char *buf, size_t len)
{
	struct dirent **names;
	int n = scandir(tmpdir, &names, NULL, alphasort), seen = 0;

	buf[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strncmp(names[i]->d_name, "journal-", 8) == 0 &&
		    strstr(names[i]->d_name, ".log") && !strstr(names[i]->d_name, "corrupt")) {
			if (nth < 0 || seen++ == nth)
				snprintf(buf, len, "%s/%s", tmpdir, names[i]->d_name);
		}
		free(names[i]);
	}
	free(names);
	ck_assert_msg(buf[0], "no segment");
}

static off_t file_size(const char *p)
{
	struct stat st;

	ck_assert_int_eq(stat(p, &st), 0);
	return st.st_size;
}

/* -------------------------------------------------------------- basics */

START_TEST(put_get_delete_reopen)
{
	struct metastore *m = open_store(tmpdir, 1);
	char err[256];
	static const uint8_t bin[] = {0, 1, 2, 0, 255};
	void *v;
	size_t len;

	put_str(m, "a", "1");
	put_str(m, "b", "2");
	put_str(m, "a", "3");
	ck_assert_int_eq(metastore_put(m, bin, sizeof(bin), bin, sizeof(bin), err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_put(m, "empty", 5, NULL, 0, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_delete(m, "b", 1, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_delete(m, "b", 1, err, sizeof(err)), -ENOENT);
	assert_value(m, "a", "3");
	assert_absent(m, "b");
	m = metastore_close(m);

	m = open_store(tmpdir, 1);
	assert_value(m, "a", "3");
	assert_absent(m, "b");
	assert_value(m, "empty", "");
	ck_assert_int_eq(metastore_get(m, bin, sizeof(bin), &v, &len), 0);
	ck_assert_uint_eq(len, sizeof(bin));
	ck_assert_mem_eq(v, bin, sizeof(bin));
	free(v);
	metastore_close(m);
}
END_TEST

START_TEST(limits)
{
	struct metastore *m = open_store(tmpdir, 1);
	static uint8_t big[METASTORE_VALUE_MAX + 2];
	char err[256] = "";

	ck_assert_int_eq(metastore_put(m, big, METASTORE_KEY_MAX + 1, "v", 1, err, sizeof(err)),
	                 -ENAMETOOLONG);
	ck_assert_ptr_nonnull(strstr(err, "limit"));
	ck_assert_int_eq(metastore_put(m, "k", 1, big, METASTORE_VALUE_MAX + 1, err, sizeof(err)),
	                 -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "limit"));
	ck_assert_int_eq(metastore_put(m, "", 0, "v", 1, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(metastore_delete(m, big, METASTORE_KEY_MAX + 1, err, sizeof(err)),
	                 -ENAMETOOLONG);
	memset(big, 'k', METASTORE_KEY_MAX);
	ck_assert_int_eq(metastore_put(m, big, METASTORE_KEY_MAX, big, METASTORE_VALUE_MAX, err,
	                               sizeof(err)),
	                 0);
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	{
		void *v;
		size_t len;

		ck_assert_int_eq(metastore_get(m, big, METASTORE_KEY_MAX, &v, &len), 0);
		ck_assert_uint_eq(len, METASTORE_VALUE_MAX);
		free(v);
	}
	metastore_close(m);
}
END_TEST

struct collect {
	char keys[64][32];
	int n;
};

static int collect_cb(void *ud, const void *key, size_t klen, const void *v, size_t vlen)
{
	struct collect *c = ud;

	ck_assert_int_lt(c->n, 64);
	memcpy(c->keys[c->n], key, klen);
	c->keys[c->n][klen] = '\0';
	c->n++;
	return 0;
}

START_TEST(list_by_prefix)
{
	struct metastore *m = open_store(tmpdir, 1);
	static const char *keys[] = {"pods/b",   "pods/a", "pod",   "podsx",
	                             "nodes/n1", "pods/c", "pods/", "q"};
	struct collect c = {0};
	char err[64];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		put_str(m, keys[i], "v");
	ck_assert_int_eq(metastore_list(m, "pods/", 5, collect_cb, &c), 4);
	ck_assert_str_eq(c.keys[0], "pods/");
	ck_assert_str_eq(c.keys[1], "pods/a");
	ck_assert_str_eq(c.keys[2], "pods/b");
	ck_assert_str_eq(c.keys[3], "pods/c");
	ck_assert_int_eq(metastore_delete(m, "pods/b", 6, err, sizeof(err)), 0);
	c.n = 0;
	ck_assert_int_eq(metastore_list(m, "pods/", 5, collect_cb, &c), 3);
	c.n = 0;
	ck_assert_int_eq(metastore_list(m, "zzz", 3, collect_cb, &c), 0);
	c.n = 0;
	ck_assert_int_eq(metastore_list(m, NULL, 0, collect_cb, &c), 7);
	ck_assert_str_eq(c.keys[0], "nodes/n1");
	ck_assert_str_eq(c.keys[6], "q");
	/* the order survives recovery (the skip list is rebuilt by sorting) */
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	c.n = 0;
	ck_assert_int_eq(metastore_list(m, "pod", 3, collect_cb, &c), 5);
	ck_assert_str_eq(c.keys[0], "pod");
	ck_assert_str_eq(c.keys[4], "podsx");
	metastore_close(m);
}
END_TEST

/* ------------------------------------------------------------ recovery */

static void copy_prefix(const char *src, const char *dst, off_t len)
{
	int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char *buf = malloc((size_t)len + 1);

	ck_assert_int_ge(in, 0);
	ck_assert_int_ge(out, 0);
	ck_assert_int_eq(pread(in, buf, (size_t)len, 0), len);
	ck_assert_int_eq(write(out, buf, (size_t)len), len);
	close(in);
	close(out);
	free(buf);
}

/* The offset of the record of key in the segment at path (-1: none). */
static off_t record_offset(const char *path, const char *key)
{
	int fd = open(path, O_RDONLY);
	uint8_t *buf = malloc(1 << 20);
	ssize_t n = pread(fd, buf, 1 << 20, 0);
	off_t off = 0, at = -1;
	struct journal_record r;

	close(fd);
	while (n > 0 && off < n) {
		ssize_t k = journal_decode(buf + off, (size_t)(n - off), &r, NULL);

		if (k <= 0)
			break;
		if (r.key_len == strlen(key) && memcmp(r.key, key, r.key_len) == 0)
			at = off;
		off += k;
	}
	free(buf);
	return at;
}

START_TEST(torn_tail_every_offset)
{
	struct metastore *m = open_store(tmpdir, 1);
	char seg[512], sub[512], dst[600], err[1024];
	off_t full, last_len = (off_t)journal_record_size(4, 20);

	put_str(m, "k000", "first-value-00000000");
	put_str(m, "k001", "second-value-0000000");
	put_str(m, "k002", "the-last-value-00000");
	m = metastore_close(m);
	segment_path(-1, seg, sizeof(seg));
	/* the batch's COMMIT record may follow the last PUT: cut from the PUT */
	full = record_offset(seg, "k002") + last_len;
	ck_assert_int_gt(full, last_len);
	for (off_t cut = 0; cut < last_len; cut++) {
		struct metastore_options o = {.epoch = 1};
		struct metastore_stats st;
		char *base = strrchr(seg, '/') + 1;

		snprintf(sub, sizeof(sub), "%s/cut%03d", tmpdir, (int)cut);
		ck_assert_int_eq(mkdir(sub, 0700), 0);
		snprintf(dst, sizeof(dst), "%s/%s", sub, base);
		copy_prefix(seg, dst, full - last_len + cut);
		ck_assert_int_eq(metastore_open_dir(sub, &o, &m, err, sizeof(err)), 0);
		assert_value(m, "k000", "first-value-00000000");
		assert_value(m, "k001", "second-value-0000000");
		assert_absent(m, "k002");
		metastore_get_stats(m, &st);
		ck_assert_uint_eq(st.torn_bytes_cut, (uint64_t)cut);
		/* cut exactly at the last valid record */
		ck_assert_int_eq(file_size(dst), full - last_len);
		m = metastore_close(m);
	}
}
END_TEST

/* Fields of the middle record: offset within the record. */
static const struct {
	const char *name;
	int off;
} FIELDS[] = {
        {"magic", 0},     {"version", 4},     {"type", 5}, {"flags", 6},
        {"key_len", 8},   {"value_len", 13},  {"seq", 16}, {"epoch", 24},
        {"data_crc", 33}, {"header_crc", 38}, {"key", 41}, {"value", 50},
};

START_TEST(bit_flip_middle_record_refused)
{
	struct metastore *m = open_store(tmpdir, 1);
	struct metastore_options o = {.epoch = 1};
	char seg[512], err[1024] = "";
	off_t rec2;
	uint8_t byte;
	int fd;

	put_str(m, "k000", "value-0000000000");
	put_str(m, "k001", "value-1111111111");
	put_str(m, "k002", "value-2222222222");
	m = metastore_close(m);
	segment_path(-1, seg, sizeof(seg));
	/* barrier (48 bytes) + first put; the second put is the middle one */
	rec2 = (off_t)journal_record_size(0, 8) + (off_t)journal_record_size(4, 16);
	fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &byte, 1, rec2 + FIELDS[_i].off), 1);
	byte ^= 0x04;
	ck_assert_int_eq(pwrite(fd, &byte, 1, rec2 + FIELDS[_i].off), 1);
	close(fd);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -EUCLEAN);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, "kubefencectl journal check --data-dir") &&
	                      strstr(err, "kubefencectl journal repair --data-dir"),
	              "field %s: message '%s'", FIELDS[_i].name, err);
	ck_assert_ptr_nonnull(strstr(err, seg));
	/* read-only opening refuses too: damaged data is never served */
	o.read_only = true;
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -EUCLEAN);
}
END_TEST

START_TEST(check_and_repair)
{
	struct metastore *m = open_store(tmpdir, 1);
	struct backend *b;
	struct metastore_check_report rep;
	char seg[512], err[512];
	uint8_t byte;
	int fd;

	put_str(m, "k000", "value-0000000000");
	put_str(m, "k001", "value-1111111111");
	put_str(m, "k002", "value-2222222222");
	m = metastore_close(m);
	m = open_store(tmpdir, 1); /* a second segment after the damaged one */
	put_str(m, "k003", "value-3333333333");
	m = metastore_close(m);
	segment_path(0, seg, sizeof(seg));
	fd = open(seg, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &byte, 1, 48 + 56 + 45), 1);
	byte ^= 1;
	ck_assert_int_eq(pwrite(fd, &byte, 1, 48 + 56 + 45), 1);
	close(fd);

	ck_assert_int_eq(backend_dir_open(tmpdir, false, &b, err, sizeof(err)), 0);
	/* check: the damage, nothing changed */
	ck_assert_int_eq(metastore_check(b, false, &rep), 1);
	ck_assert_int_eq(rep.result, 1);
	ck_assert_uint_eq(rep.n, 1);
	ck_assert_int_eq(rep.entries[0].kind, METASTORE_FOUND_PROBLEM);
	ck_assert_msg(strstr(rep.entries[0].text, seg), "%s", rep.entries[0].text);
	metastore_check_report_done(&rep);
	/* repair: the damage, the damaged segment cut, the later one moved
	 * aside, then the store as it now recovers */
	ck_assert_int_eq(metastore_check(b, true, &rep), 0);
	ck_assert_uint_eq(rep.n, 4);
	ck_assert_int_eq(rep.entries[0].kind, METASTORE_FOUND_PROBLEM);
	ck_assert_int_eq(rep.entries[1].kind, METASTORE_FOUND_REPAIRED);
	ck_assert_msg(strstr(rep.entries[1].text, " and kept its first 108 bytes (valid records)"),
	              "%s", rep.entries[1].text);
	ck_assert_int_eq(rep.entries[2].kind, METASTORE_FOUND_REPAIRED);
	ck_assert_msg(strstr(rep.entries[2].text, "(not deleted)"), "%s", rep.entries[2].text);
	ck_assert_int_eq(rep.entries[3].kind, METASTORE_FOUND_OK);
	ck_assert_str_eq(rep.entries[3].text, "1 keys, last seq 2, epoch 1, 2 records replayed");
	ck_assert_uint_eq(rep.keys, 1);
	ck_assert_uint_eq(rep.last_seq, 2);
	ck_assert_uint_eq(rep.epoch, 1);
	metastore_check_report_done(&rep);
	ck_assert_uint_eq(rep.n, 0);
	ck_assert_ptr_null(rep.entries);
	ck_assert_int_eq(metastore_check(b, false, &rep), 0);
	ck_assert_uint_eq(rep.n, 1);
	ck_assert_int_eq(rep.entries[0].kind, METASTORE_FOUND_OK);
	metastore_check_report_done(&rep);
	b->ops->close(b);

	m = open_store(tmpdir, 1);
	assert_value(m, "k000", "value-0000000000");
	assert_absent(m, "k001");
	assert_absent(m, "k003"); /* moved aside with its segment, not deleted */
	metastore_close(m);
	{
		struct dirent **names;
		int n = scandir(tmpdir, &names, NULL, alphasort), corrupt = 0;

		for (int i = 0; i < n; i++) {
			corrupt += strstr(names[i]->d_name, ".corrupt-") != NULL;
			free(names[i]);
		}
		free(names);
		ck_assert_int_eq(corrupt, 2);
	}
}
END_TEST

/* The only snapshot damaged: repair says what to do and changes nothing. */
START_TEST(check_report_unrepairable)
{
	struct metastore *m = open_store(tmpdir, 1);
	struct metastore_check_report rep;
	struct backend *b;
	char err[1024], path[600] = "";
	struct dirent **names;
	int n;

	put_str(m, "a", "1");
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	m = metastore_close(m);
	n = scandir(tmpdir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		if (strncmp(names[i]->d_name, "snapshot-", 9) == 0)
			snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]->d_name);
		free(names[i]);
	}
	free(names);
	ck_assert(path[0]);
	ck_assert_int_eq(truncate(path, file_size(path) - 10), 0);

	ck_assert_int_eq(backend_dir_open(tmpdir, false, &b, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_check(b, true, &rep), 1);
	ck_assert_int_eq(rep.result, 1);
	ck_assert_uint_eq(rep.n, 2);
	ck_assert_int_eq(rep.entries[0].kind, METASTORE_FOUND_PROBLEM);
	ck_assert_int_eq(rep.entries[1].kind, METASTORE_FOUND_UNREPAIRABLE);
	ck_assert_msg(strncmp(rep.entries[1].text, "cannot repair automatically: '", 30) == 0 &&
	                      strstr(rep.entries[1].text, "; restore it from a backup"),
	              "%s", rep.entries[1].text);
	metastore_check_report_done(&rep);
	b->ops->close(b);
	ck_assert_int_eq(access(path, F_OK), 0); /* left in place */
}
END_TEST

START_TEST(damaged_snapshot_refused)
{
	struct metastore *m = open_store(tmpdir, 1);
	struct metastore_options o = {.epoch = 1};
	char err[1024], path[600];
	struct dirent **names;
	int n, fd;

	put_str(m, "a", "1");
	put_str(m, "b", "2");
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	put_str(m, "c", "3");
	m = metastore_close(m);
	n = scandir(tmpdir, &names, NULL, alphasort);
	path[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strncmp(names[i]->d_name, "snapshot-", 9) == 0)
			snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]->d_name);
		free(names[i]);
	}
	free(names);
	ck_assert(path[0]);
	/* the snapshot is good: recovery works */
	m = open_store(tmpdir, 1);
	assert_value(m, "b", "2");
	assert_value(m, "c", "3");
	m = metastore_close(m);
	/* a truncated snapshot (SNAP_END missing) is refused */
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, file_size(path) - 10), 0);
	close(fd);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err, "kubefencectl journal repair --data-dir"));
}
END_TEST

/* ----------------------------------------------------------- snapshots */

struct model {
	char val[200][40];
	bool present[200];
};

static int dump_cb(void *ud, const void *key, size_t klen, const void *v, size_t vlen)
{
	FILE *f = ud;

	fwrite(key, 1, klen, f);
	fputc('=', f);
	fwrite(v, 1, vlen, f);
	fputc('\n', f);
	return 0;
}

static char *dump(struct metastore *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	metastore_list(m, NULL, 0, dump_cb, f);
	fclose(f);
	return buf;
}

/* A store with automatic snapshots off: every record stays in the journal. */
static const struct metastore_options no_auto_snapshots = {.epoch = 1,
                                                           .snapshot_records = UINT64_MAX,
                                                           .snapshot_bytes = UINT64_MAX,
                                                           .snapshot_min_records = UINT64_MAX};

/* Open (or reopen) two stores in tmpdir/a (options oa) and tmpdir/b (no
 * automatic snapshots), fed the same writes to compare. */
static void open_pair(const struct metastore_options *oa, struct metastore **ma,
                      struct metastore **mb)
{
	char a[300], b[300], err[256];

	snprintf(a, sizeof(a), "%s/a", tmpdir);
	snprintf(b, sizeof(b), "%s/b", tmpdir);
	ck_assert_int_eq(metastore_open_dir(a, oa, ma, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_open_dir(b, &no_auto_snapshots, mb, err, sizeof(err)), 0);
}

/* Both stores hold the same keys and values; both closed. */
static void assert_same_and_close(struct metastore *ma, struct metastore *mb)
{
	char *da = dump(ma), *db = dump(mb);

	ck_assert_str_eq(da, db);
	free(da);
	free(db);
	metastore_close(ma);
	metastore_close(mb);
}

START_TEST(snapshot_replay_equals_journal_replay)
{
	char a[300], err[256];
	struct metastore_options oa = {.epoch = 1, .snapshot_records = 37};
	struct metastore *ma, *mb;
	struct metastore_stats st;
	unsigned seed = 1000u + (unsigned)_i;
	char *da, *db;

	snprintf(a, sizeof(a), "%s/a", tmpdir);
	open_pair(&oa, &ma, &mb);
	for (int i = 0; i < 600; i++) {
		char k[32], v[64];
		int op = rand_r(&seed) % 10;

		snprintf(k, sizeof(k), "key/%03d", rand_r(&seed) % 150);
		snprintf(v, sizeof(v), "v%d-%0*d", i, rand_r(&seed) % 40, 7);
		if (op < 7) {
			put_str(ma, k, v);
			put_str(mb, k, v);
		} else {
			int ra = metastore_delete(ma, k, strlen(k), err, sizeof(err));

			ck_assert_int_eq(metastore_delete(mb, k, strlen(k), err, sizeof(err)), ra);
		}
		if (i == 300) { /* reopen halfway: recovery from snapshot + journal */
			ma = metastore_close(ma);
			ck_assert_int_eq(metastore_open_dir(a, &oa, &ma, err, sizeof(err)), 0);
		}
	}
	metastore_get_stats(ma, &st);
	ck_assert_uint_gt(st.snapshots, 0);
	da = dump(ma);
	db = dump(mb);
	ck_assert_str_eq(da, db);
	free(da);
	ma = metastore_close(ma);
	mb = metastore_close(mb);
	open_pair(&oa, &ma, &mb);
	da = dump(ma);
	ck_assert_str_eq(da, db);
	free(da);
	free(db);
	assert_same_and_close(ma, mb);
}
END_TEST

/* A journal that outgrew the live keys is snapshotted: recovery reads at
 * most about twice the live state plus the floor, however many writes
 * there were; with the rule off it reads every one of them. */
START_TEST(recovery_bounded_by_the_live_keys)
{
	struct metastore_options oa = {.epoch = 1, .snapshot_min_records = 64};
	struct metastore *ma, *mb;
	struct metastore_stats sa, sb;

	open_pair(&oa, &ma, &mb);
	for (int i = 0; i < 3000; i++) {
		char k[32], v[32];

		snprintf(k, sizeof(k), "key/%03d", i % 100);
		snprintf(v, sizeof(v), "v%d", i);
		put_str(ma, k, v);
		put_str(mb, k, v);
	}
	metastore_get_stats(ma, &sa);
	metastore_get_stats(mb, &sb);
	ck_assert_uint_ge(sa.snapshots, 25); /* one every 100 writes or so */
	ck_assert_uint_eq(sb.snapshots, 0);
	ma = metastore_close(ma);
	mb = metastore_close(mb);
	open_pair(&oa, &ma, &mb);
	metastore_get_stats(ma, &sa);
	metastore_get_stats(mb, &sb);
	ck_assert_uint_eq(sa.keys, 100);
	/* a snapshot of 100 keys and fewer than max(64, 100) records after it */
	ck_assert_uint_le(sa.records_replayed, 100 + 100 + 2);
	ck_assert_uint_ge(sb.records_replayed, 3000);
	assert_same_and_close(ma, mb);
}
END_TEST

START_TEST(snapshot_removes_covered_segments)
{
	struct metastore *m = open_store(tmpdir, 1);
	char err[256];
	struct dirent **names;
	int n, segs = 0, snaps = 0;

	for (int i = 0; i < 5; i++) {
		m = metastore_close(m);
		m = open_store(tmpdir, 1);
		put_str(m, "k", "v");
	}
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	n = scandir(tmpdir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		segs += strncmp(names[i]->d_name, "journal-", 8) == 0;
		snaps += strncmp(names[i]->d_name, "snapshot-", 9) == 0;
		free(names[i]);
	}
	free(names);
	ck_assert_int_eq(segs, 1);
	ck_assert_int_eq(snaps, 1);
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	assert_value(m, "k", "v");
	metastore_close(m);
}
END_TEST

/* --------------------------------------------------------------- epoch */

START_TEST(open_with_older_epoch_is_stale)
{
	struct metastore *m = open_store(tmpdir, 5);
	struct metastore_options o = {.epoch = 4};
	char err[512];

	put_str(m, "a", "1");
	m = metastore_close(m);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "epoch 5"));
	/* the same epoch may reopen (a restarted master) and a newer one too */
	m = open_store(tmpdir, 5);
	m = metastore_close(m);
	m = open_store(tmpdir, 6);
	assert_value(m, "a", "1");
	metastore_close(m);
	/* the barrier alone carries the epoch even if the epoch file is lost */
	{
		char p[300];

		snprintf(p, sizeof(p), "%s/epoch", tmpdir);
		ck_assert_int_eq(unlink(p), 0);
		o.epoch = 5;
		ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -ESTALE);
	}
}
END_TEST

START_TEST(newer_writer_makes_old_step_down)
{
	struct metastore *old = open_store(tmpdir, 1), *nw;
	char err[256];

	put_str(old, "a", "old");
	nw = open_store(tmpdir, 2);
	/* written, then found fenced: the outcome is unknown, never "not made" */
	ck_assert_int_eq(metastore_put(old, "b", 1, "x", 1, err, sizeof(err)), -EINPROGRESS);
	ck_assert_ptr_nonnull(strstr(err, "stepped down"));
	ck_assert_int_eq(metastore_put(old, "c", 1, "x", 1, err, sizeof(err)), -ESTALE);
	ck_assert_int_eq(metastore_delete(old, "a", 1, err, sizeof(err)), -ESTALE);
	ck_assert_int_eq(metastore_snapshot(old, err, sizeof(err)), -ESTALE);
	put_str(nw, "a", "new");
	old = metastore_close(old);
	nw = metastore_close(nw);
	nw = open_store(tmpdir, 2);
	assert_value(nw, "a", "new");
	assert_absent(nw, "b"); /* never acknowledged, written after the cut */
	assert_absent(nw, "c");
	metastore_close(nw);
}
END_TEST

static int (*real_sync)(struct backend *b);
static int refuse_sync(struct backend *b)
{
	(void)real_sync(b);
	return -EBADE; /* e.g. RESERVATION CONFLICT */
}

START_TEST(backend_refusal_steps_down)
{
	struct metastore_options o = {.epoch = 1};
	static struct backend_ops ops;
	struct metastore *m;
	struct backend *b;
	char err[256];

	ck_assert_int_eq(backend_dir_open(tmpdir, true, &b, err, sizeof(err)), 0);
	ck_assert_int_eq(metastore_open(b, &o, &m, err, sizeof(err)), 0);
	put_str(m, "a", "1");
	ops = *b->ops;
	real_sync = ops.sync;
	ops.sync = refuse_sync;
	b->ops = &ops;
	ck_assert_int_eq(metastore_put(m, "b", 1, "2", 1, err, sizeof(err)), -EINPROGRESS);
	ck_assert_int_eq(metastore_put(m, "c", 1, "3", 1, err, sizeof(err)), -ESTALE);
	metastore_close(m);
}
END_TEST

/* -------------------------------------------------------- group commit */

struct gc_arg {
	struct metastore *m;
	int id;
};

static void *gc_thread(void *p)
{
	struct gc_arg *a = p;

	for (int i = 0; i < 150; i++) {
		char k[32], v[32];

		snprintf(k, sizeof(k), "t%d/%04d", a->id, i);
		snprintf(v, sizeof(v), "v-%d-%d", a->id, i);
		if (metastore_put(a->m, k, strlen(k), v, strlen(v), NULL, 0) != 0)
			return (void *)1;
	}
	return NULL;
}

START_TEST(group_commit_threads)
{
	struct metastore_options o = {.epoch = 1, .no_group_commit = _i == 1};
	struct gc_arg args[4];
	pthread_t th[4];
	struct metastore *m;
	struct metastore_stats st;
	char err[256];

	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), 0);
	for (int t = 0; t < 4; t++) {
		args[t] = (struct gc_arg){m, t};
		ck_assert_int_eq(pthread_create(&th[t], NULL, gc_thread, &args[t]), 0);
	}
	for (int t = 0; t < 4; t++) {
		void *ret;

		ck_assert_int_eq(pthread_join(th[t], &ret), 0);
		ck_assert_ptr_null(ret);
	}
	metastore_get_stats(m, &st);
	ck_assert_uint_eq(st.writes, 600);
	if (o.no_group_commit)
		ck_assert_uint_eq(st.syncs, 600);
	else /* four writers at once: commits must have been shared */
		ck_assert_msg(st.syncs < 600, "group commit never coalesced: %" PRIu64 " syncs",
		              st.syncs);
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < 150; i++) {
			char k[32], v[32];

			snprintf(k, sizeof(k), "t%d/%04d", t, i);
			snprintf(v, sizeof(v), "v-%d-%d", t, i);
			assert_value(m, k, v);
		}
	metastore_close(m);
}
END_TEST

/* ------------------------------------------------------- fenced writers */

/* Append one encoded record to the file at path (created when missing). */
static void append_record(const char *path, uint8_t type, uint64_t seq, uint64_t epoch,
                          const char *key, const char *value)
{
	static const uint8_t zero8[8];
	bool barrier = type == JOURNAL_BARRIER; /* its value: the last seq recovered */
	uint8_t buf[4096];
	ssize_t n = journal_encode(buf, sizeof(buf), type, seq, epoch, key, key ? strlen(key) : 0,
	                           barrier ? (const void *)zero8 : value,
	                           barrier ? 8
	                           : value ? strlen(value)
	                                   : 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);

	ck_assert_int_gt(n, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, (size_t)n), n);
	close(fd);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void unit_path(char *buf, size_t len, const char *kind, uint64_t seq, uint64_t epoch,
                      const char *suffix)
{
	snprintf(buf, len, "%s/%s-%016" PRIx64 "-%016" PRIx64 "%s", tmpdir, kind, seq, epoch,
	         suffix);
}

START_TEST(fenced_writers_units_are_left_out)
{
	struct metastore *m = open_store(tmpdir, 1);
	struct metastore_stats st;
	char path[512], err[512];
	uint8_t cnt[8];

	/* epoch 1: barrier (seq 1) and a (seq 2); epoch 2: barrier (seq 3), b (4) */
	put_str(m, "a", "va");
	m = metastore_close(m);
	m = open_store(tmpdir, 2);
	put_str(m, "b", "vb");
	metastore_get_stats(m, &st);
	ck_assert_uint_eq(st.last_seq, 4);
	m = metastore_close(m);
	/* what a fenced epoch-1 writer leaves when it resumes after epoch 2
	 * began: a segment after epoch 2's first record, and a snapshot that
	 * covers seq 3 but holds a write nobody acknowledged */
	unit_path(path, sizeof(path), "journal", 4, 1, ".log");
	append_record(path, JOURNAL_PUT, 4, 1, "phantom", "x");
	append_record(path, JOURNAL_PUT, 5, 1, "phantom2", "y");
	unit_path(path, sizeof(path), "snapshot", 3, 1, ".snap");
	put_le64(cnt, 2);
	{
		uint8_t buf[4096];
		ssize_t n;
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

		ck_assert_int_ge(fd, 0);
		n = journal_encode(buf, sizeof(buf), JOURNAL_SNAP_BEGIN, 3, 1, NULL, 0, cnt, 8);
		ck_assert_int_eq(write(fd, buf, (size_t)n), n);
		n = journal_encode(buf, sizeof(buf), JOURNAL_PUT, 3, 1, "a", 1, "va", 2);
		ck_assert_int_eq(write(fd, buf, (size_t)n), n);
		n = journal_encode(buf, sizeof(buf), JOURNAL_PUT, 3, 1, "phantom3", 8, "z", 1);
		ck_assert_int_eq(write(fd, buf, (size_t)n), n);
		n = journal_encode(buf, sizeof(buf), JOURNAL_SNAP_END, 3, 1, NULL, 0, cnt, 8);
		ck_assert_int_eq(write(fd, buf, (size_t)n), n);
		close(fd);
	}
	m = open_store(tmpdir, 3);
	assert_value(m, "a", "va");
	assert_value(m, "b", "vb");
	assert_absent(m, "phantom");
	assert_absent(m, "phantom2");
	assert_absent(m, "phantom3");
	metastore_get_stats(m, &st);
	ck_assert_uint_eq(st.last_seq, 5); /* epoch 3's barrier follows b */
	/* the next snapshot removes the fenced writer's units */
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	unit_path(path, sizeof(path), "journal", 4, 1, ".log");
	ck_assert_int_eq(access(path, F_OK), -1);
	unit_path(path, sizeof(path), "snapshot", 3, 1, ".snap");
	ck_assert_int_eq(access(path, F_OK), -1);
	m = metastore_close(m);
	m = open_store(tmpdir, 4);
	assert_value(m, "b", "vb");
	assert_absent(m, "phantom3");
	metastore_close(m);
}
END_TEST

/* A record whose seq was replayed already, or a record of another epoch
 * than its segment's, means two writers appended to one file: refused,
 * never skipped. */
START_TEST(interleaved_writers_refused)
{
	struct metastore_options o = {.epoch = 5};
	struct metastore *m = NULL;
	char path[512], err[1024] = "";

	unit_path(path, sizeof(path), "journal", 1, 1, ".log");
	append_record(path, JOURNAL_BARRIER, 1, 1, NULL, NULL);
	append_record(path, JOURNAL_PUT, 2, 1, "k", "first");
	if (_i == 0)
		append_record(path, JOURNAL_PUT, 2, 1, "k", "second"); /* seq 2 again */
	else
		append_record(path, JOURNAL_PUT, 3, 2, "k", "other"); /* epoch 2 in epoch 1's */
	append_record(path, JOURNAL_PUT, _i == 0 ? 3 : 4, 1, "j", "v");
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -EUCLEAN);
	ck_assert_msg(strstr(err, "two writers interleaved") != NULL, "got: %s", err);
	ck_assert_ptr_null(m);
}
END_TEST

/* Two claims racing on the epoch cell cannot lower the volume's epoch: the
 * markers keep the largest, so a writer of an older epoch stays out even
 * when the cell was overwritten with its value. */
START_TEST(claim_never_lowers_the_epoch)
{
	struct metastore_options o = {.epoch = 2};
	struct metastore *m = open_store(tmpdir, 3);
	char path[512], err[1024] = "";
	uint8_t cell[24] = {'K', 'F', 'E', 'P', 1, 0, 0, 0};
	uint32_t crc;
	int fd;

	put_str(m, "k", "v");
	m = metastore_close(m);
	/* the cell as a slower claim of epoch 2 would leave it */
	put_le64(cell + 8, 2);
	crc = crc32c(0, cell, 20);
	for (int i = 0; i < 4; i++)
		cell[20 + i] = (uint8_t)(crc >> (8 * i));
	snprintf(path, sizeof(path), "%s/epoch", tmpdir);
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, cell, sizeof(cell)), (ssize_t)sizeof(cell));
	close(fd);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "epoch 3"));
	m = open_store(tmpdir, 4);
	assert_value(m, "k", "v");
	metastore_close(m);
}
END_TEST

/* Wait up to timeout_ms until the fault point `name` holds a thread of this
 * process; marker gets the pause file's path. */
static void wait_paused(const char *fpdir, const char *name, long timeout_ms, char *marker,
                        size_t len)
{
	snprintf(marker, len, "%s/%s.%ld.paused", fpdir, name, (long)getpid());
	for (long i = 0; i < timeout_ms && access(marker, F_OK) != 0; i++)
		usleep(1000);
	ck_assert_msg(access(marker, F_OK) == 0, "'%s' never paused", name);
}

/* ------------------------------------------------------ durable reads */

struct get_ctx {
	struct metastore *m;
	int r;
	char value[32];
	volatile int done;
};

static void *get_thread(void *arg)
{
	struct get_ctx *g = arg;
	void *v = NULL;
	size_t len = 0;

	g->r = metastore_get(g->m, "k", 1, &v, &len);
	if (g->r == 0)
		snprintf(g->value, sizeof(g->value), "%.*s", (int)len, (const char *)v);
	free(v);
	__atomic_store_n(&g->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *put_thread(void *arg)
{
	struct metastore *m = arg;
	char err[256];
	intptr_t r = metastore_put(m, "k", 1, "new", 3, err, sizeof(err));

	return (void *)r;
}

/* A read returns only durable state: while the group commit that holds a
 * write is paused before its sync, a GET of that key waits for it instead
 * of returning a value no master may have after a crash. */
START_TEST(read_waits_for_the_commit)
{
	char fpdir[300], marker[512];
	struct metastore *m;
	struct get_ctx g = {0};
	pthread_t tp, tg;
	void *ret;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	m = open_store(tmpdir, 1);
	put_str(m, "k", "old");
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(failpoint_set("metastore.commit.before_sync=1*pause", NULL, 0), 0);
	ck_assert_int_eq(pthread_create(&tp, NULL, put_thread, m), 0);
	wait_paused(fpdir, "metastore.commit.before_sync", 5000, marker, sizeof(marker));
	g.m = m;
	ck_assert_int_eq(pthread_create(&tg, NULL, get_thread, &g), 0);
	usleep(200000);
	ck_assert_msg(!__atomic_load_n(&g.done, __ATOMIC_ACQUIRE),
	              "GET returned '%s' while the write was not durable", g.value);
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(tp, &ret), 0);
	ck_assert_int_eq((intptr_t)ret, 0);
	ck_assert_int_eq(pthread_join(tg, NULL), 0);
	ck_assert_int_eq(g.r, 0);
	ck_assert_str_eq(g.value, "new");
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	metastore_close(m);
	rmdir(fpdir);
}
END_TEST

static void *put_v2_thread(void *arg)
{
	struct metastore *m = arg;
	char err[256];
	intptr_t r = metastore_put(m, "k", 1, "v2", 2, err, sizeof(err));

	return (void *)r;
}

/* A write appended while a read waits for an earlier commit is waited for
 * too.  Here the read waits for the paused commit of "new"; meanwhile "v2"
 * is appended, and its own sync fails, so "v2" is never durable (its put is
 * indeterminate).  The read must not return "v2": a value a failover can
 * take back. */
START_TEST(read_waits_for_writes_appended_meanwhile)
{
	char fpdir[300], marker[512];
	struct metastore *m;
	struct metastore_stats st;
	struct get_ctx g = {0};
	pthread_t tp, tp2, tg;
	uint64_t before;
	void *ret;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	m = open_store(tmpdir, 1);
	put_str(m, "k", "old");
	metastore_get_stats(m, &st);
	before = st.last_seq;
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(
	        failpoint_set("metastore.commit.before_sync=1*pause->1*error(EIO)", NULL, 0), 0);
	ck_assert_int_eq(pthread_create(&tp, NULL, put_thread, m), 0);
	wait_paused(fpdir, "metastore.commit.before_sync", 5000, marker, sizeof(marker));
	g.m = m;
	ck_assert_int_eq(pthread_create(&tg, NULL, get_thread, &g), 0);
	usleep(50000); /* the read is waiting for the paused commit */
	ck_assert_int_eq(pthread_create(&tp2, NULL, put_v2_thread, m), 0);
	for (int i = 0; i < 5000; i++) {
		metastore_get_stats(m, &st);
		if (st.last_seq == before + 2)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.last_seq, before + 2); /* "v2" is in the index */
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(tp, &ret), 0);
	ck_assert_int_eq((intptr_t)ret, 0);
	ck_assert_int_eq(pthread_join(tp2, &ret), 0);
	ck_assert_int_eq((intptr_t)ret, -EINPROGRESS);
	ck_assert_int_eq(pthread_join(tg, NULL), 0);
	ck_assert_msg(!(g.r == 0 && strcmp(g.value, "v2") == 0),
	              "GET returned 'v2', whose write never became durable");
	ck_assert_int_lt(g.r, 0); /* the store failed before the read was confirmed */
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	metastore_close(m);
	rmdir(fpdir);
}
END_TEST

/* confirm_reads: once a newer master has claimed the store, the old one
 * answers no read, even though it wrote nothing since and so never saw the
 * claim in a sync.  Without confirm_reads it serves what it has in memory,
 * which is what a stale master's grant would otherwise have to bound. */
START_TEST(confirmed_reads_stop_at_a_newer_claim)
{
	struct metastore_options o1 = {.epoch = 1, .confirm_reads = _i == 1};
	struct metastore *m1 = NULL, *m2;
	struct metastore_stats st;
	char err[512];
	void *v = NULL;
	size_t len;

	ck_assert_int_eq(metastore_open_dir(tmpdir, &o1, &m1, err, sizeof(err)), 0);
	put_str(m1, "k", "old");
	ck_assert_int_eq(metastore_get(m1, "k", 1, &v, &len), 0);
	free(v);
	v = NULL;
	m2 = open_store(tmpdir, 2);
	put_str(m2, "k", "new");
	if (_i == 1) {
		ck_assert_int_eq(metastore_get(m1, "k", 1, &v, &len), -ESTALE);
		ck_assert_ptr_null(v);
		metastore_get_stats(m1, &st);
		ck_assert_uint_ge(st.read_checks, 2);
	} else {
		/* the unconfirmed store answers from memory: "old", stale */
		ck_assert_int_eq(metastore_get(m1, "k", 1, &v, &len), 0);
		ck_assert_mem_eq(v, "old", 3);
		free(v);
	}
	metastore_close(m2);
	metastore_close(m1);
}
END_TEST

/* confirm_reads: a read's epoch check that fails with an error that may
 * pass (EAGAIN: the target not ready) fails that read only; one that
 * cannot (EIO), or a passing one that lasts a second, kills the store, so
 * that its master steps down (metastore_failed) instead of answering
 * every read with an error, which is all a store whose session is gone can
 * do.  _i: 0 passing, 1 for good, 2 passing but lasting. */
START_TEST(read_check_failure_kills_the_store_unless_it_passes)
{
	static const char *const spec[] = {
	        "metastore.read.before_check=1*error(EAGAIN)",
	        "metastore.read.before_check=1*error(EIO)",
	        "metastore.read.before_check=error(EAGAIN)",
	};
	struct metastore_options o = {.epoch = 1, .confirm_reads = true};
	struct metastore *m = NULL;
	char err[512], fpdir[PATH_MAX];
	void *v = NULL;
	size_t len;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), 0);
	put_str(m, "k", "v");
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(failpoint_set(spec[_i], NULL, 0), 0);
	ck_assert_int_eq(metastore_get(m, "k", 1, &v, &len), _i == 1 ? -EIO : -EAGAIN);
	ck_assert_ptr_null(v);
	if (_i == 0) {
		ck_assert_int_eq(metastore_failed(m), 0);
		ck_assert_int_eq(metastore_get(m, "k", 1, &v, &len), 0);
		ck_assert_mem_eq(v, "v", 1);
		free(v);
	} else if (_i == 1) {
		ck_assert_int_eq(metastore_failed(m), -EIO);
		ck_assert_int_eq(metastore_get(m, "k", 1, &v, &len), -EIO);
		ck_assert_int_lt(metastore_put(m, "k", 1, "w", 1, err, sizeof(err)), 0);
	} else {
		ck_assert_int_eq(metastore_failed(m), 0); /* not yet */
		for (int i = 0; i < 60 && !metastore_failed(m); i++) {
			usleep(50000);
			ck_assert_int_eq(metastore_get(m, "k", 1, &v, &len), -EAGAIN);
		}
		ck_assert_int_eq(metastore_failed(m), -EAGAIN); /* within 3 s */
		ck_assert_int_eq(metastore_get(m, "k", 1, &v, &len), -EAGAIN);
	}
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	metastore_close(m);
	rmdir(fpdir);
}
END_TEST

/* ------------------------------------------------------------ power cut */

struct pc_put {
	struct metastore *m;
	const char *key;
	size_t vlen;
};

static void *pc_put_thread(void *arg)
{
	struct pc_put *p = arg;
	char err[256];
	char *v = malloc(p->vlen);

	memset(v, 'v', p->vlen);
	(void)metastore_put(p->m, p->key, strlen(p->key), v, p->vlen, err, sizeof(err));
	free(v);
	return NULL;
}

/* A power cut keeps an unsynced batch's bytes in any order: here the first
 * record of the batch in flight is lost while the second one reached the
 * disk.  Nothing of that batch was acknowledged, so recovery cuts it and
 * starts, keeping every acknowledged write; only damage to acknowledged
 * records makes it refuse.  The batch is made for real: a writer process
 * pauses in its commit before the sync (a fault point), a second write
 * joins the batch, and the process is killed there. */
START_TEST(power_cut_unsynced_batch_is_cut)
{
	char fpdir[300], marker[512], seg[512], err[1024] = "";
	struct metastore *m;
	pid_t pid;
	int st;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct pc_put a = {.key = "a", .vlen = 3000}, b = {.key = "b", .vlen = 10};
		pthread_t ta, tb;

		m = open_store(tmpdir, 1);
		put_str(m, "k1", "v1");
		put_str(m, "k2", "v2");
		failpoint_set_dir(fpdir);
		failpoint_set("metastore.commit.before_sync=1*pause", NULL, 0);
		a.m = b.m = m;
		pthread_create(&ta, NULL, pc_put_thread, &a);
		usleep(100000);
		pthread_create(&tb, NULL, pc_put_thread, &b);
		pause();
		_exit(0);
	}
	snprintf(marker, sizeof(marker), "%s/metastore.commit.before_sync.%ld.paused", fpdir,
	         (long)pid);
	for (int i = 0; i < 5000 && access(marker, F_OK) != 0; i++)
		usleep(1000);
	ck_assert_msg(access(marker, F_OK) == 0, "the commit never paused");
	usleep(300000); /* b joins the batch */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	unlink(marker);
	rmdir(fpdir);

	/* the power cut: a's record (the first of the batch) half lost, b's
	 * record after it intact */
	segment_path(-1, seg, sizeof(seg));
	{
		int fd = open(seg, O_RDWR);
		uint8_t *buf = malloc(1 << 20), zero[512] = {0};
		ssize_t n = pread(fd, buf, 1 << 20, 0);
		size_t off = 0, a_off = 0;
		struct journal_record r;
		bool found_b = false;

		ck_assert_int_gt(n, 0);
		while (off < (size_t)n) {
			ssize_t k = journal_decode(buf + off, (size_t)n - off, &r, NULL);

			ck_assert_int_gt(k, 0);
			if (r.key_len == 1 && r.key[0] == 'a')
				a_off = off;
			if (r.key_len == 1 && r.key[0] == 'b')
				found_b = true;
			off += (size_t)k;
		}
		ck_assert_msg(a_off && found_b, "the batch is not in the segment");
		ck_assert_int_eq(pwrite(fd, zero, sizeof(zero), (off_t)(a_off + 1000)),
		                 (ssize_t)sizeof(zero));
		close(fd);
		free(buf);
	}
	{
		struct metastore_options o = {.epoch = 2};

		m = NULL;
		ck_assert_msg(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)) == 0,
		              "an unsynced batch made the store refuse to start: %s", err);
	}
	assert_value(m, "k1", "v1");
	assert_value(m, "k2", "v2");
	assert_absent(m, "a");
	assert_absent(m, "b");
	metastore_close(m);
}
END_TEST

static bool term_over(void *userdata)
{
	return !__atomic_load_n((bool *)userdata, __ATOMIC_ACQUIRE);
}

/* An automatic snapshot that fails is not tried again at every write (each
 * try writes the whole state), but after as many records as the rule
 * waits for: here a term over, so every try fails at once. */
static bool term_over_counted(void *userdata)
{
	__atomic_add_fetch((int *)userdata, 1, __ATOMIC_ACQ_REL);
	return false;
}

START_TEST(failed_automatic_snapshot_backs_off)
{
	int tries = 0;
	struct metastore_options o = {.epoch = 1,
	                              .snapshot_min_records = 10,
	                              .in_term = term_over_counted,
	                              .in_term_userdata = &tries};
	struct metastore *m = NULL;
	struct metastore_stats st;
	char err[256];

	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), 0);
	tries = 0;
	for (int i = 0; i < 200; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%d", i % 5);
		put_str(m, k, "v"); /* durable whatever the snapshot did */
	}
	metastore_get_stats(m, &st);
	ck_assert_uint_eq(st.snapshots, 0);
	ck_assert_uint_eq(st.writes, 200);
	/* first at the 10th record, then every 10 more: 19; at every write
	 * from the 10th on it would be 191 */
	ck_assert_int_ge(tries, 10);
	ck_assert_int_le(tries, 25);
	metastore_close(m);
}
END_TEST

/* A snapshot that outlives its writer's term commits nothing. */
START_TEST(snapshot_after_the_term_commits_nothing)
{
	bool over = false;
	struct metastore_options o = {.epoch = 1, .in_term = term_over, .in_term_userdata = &over};
	struct metastore *m = NULL;
	char err[1024];
	struct dirent **names;
	int n, snaps = 0;

	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), 0);
	put_str(m, "k", "v");
	over = true;
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), -ETIME);
	n = scandir(tmpdir, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		snaps += strncmp(names[i]->d_name, "snapshot-", 9) == 0;
		free(names[i]);
	}
	free(names);
	ck_assert_int_eq(snaps, 0);
	over = false;
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	metastore_close(m);
}
END_TEST

/* ------------------------------------------- snapshots beside writers */

static int count_files(const char *prefix, const char *suffix)
{
	struct dirent **names;
	int n = scandir(tmpdir, &names, NULL, alphasort), count = 0;

	for (int i = 0; i < n; i++) {
		size_t l = strlen(names[i]->d_name), sl = strlen(suffix);

		count += strncmp(names[i]->d_name, prefix, strlen(prefix)) == 0 && l >= sl &&
		         strcmp(names[i]->d_name + l - sl, suffix) == 0;
		free(names[i]);
	}
	free(names);
	return count;
}

struct snap_ctx {
	struct metastore *m;
	int r;
	char err[1024];
};

static void *snap_thread(void *arg)
{
	struct snap_ctx *c = arg;

	c->r = metastore_snapshot(c->m, c->err, sizeof(c->err));
	return NULL;
}

/* A snapshot does not hold writers up: while one is paused with its data
 * written but not yet committed, puts and deletes are acknowledged and
 * readable, and afterwards both the snapshot and those writes survive a
 * reopen.  (Writers that wait for the snapshot hang here until the test's
 * timeout.) */
START_TEST(writers_proceed_during_snapshot)
{
	char fpdir[300], marker[512], k[32], v[32];
	struct snap_ctx c = {0};
	struct metastore *m;
	pthread_t th;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	m = open_store(tmpdir, 1);
	for (int i = 0; i < 50; i++) {
		snprintf(k, sizeof(k), "before/%02d", i);
		put_str(m, k, "b");
	}
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(failpoint_set("metastore.snapshot.before_rename=1*pause", NULL, 0), 0);
	c.m = m;
	ck_assert_int_eq(pthread_create(&th, NULL, snap_thread, &c), 0);
	wait_paused(fpdir, "metastore.snapshot.before_rename", 10000, marker, sizeof(marker));
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "during/%03d", i);
		snprintf(v, sizeof(v), "d%d", i);
		put_str(m, k, v);
	}
	ck_assert_int_eq(metastore_delete(m, "before/00", 9, NULL, 0), 0);
	assert_value(m, "during/199", "d199");
	assert_absent(m, "before/00");
	ck_assert_int_eq(count_files("snapshot-", ".snap"), 0); /* not committed yet */
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(c.r == 0, "snapshot: %d %s", c.r, c.err);
	ck_assert_int_eq(count_files("snapshot-", ".snap"), 1);
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	assert_absent(m, "before/00");
	assert_value(m, "before/49", "b");
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "during/%03d", i);
		snprintf(v, sizeof(v), "d%d", i);
		assert_value(m, k, v);
	}
	metastore_close(m);
	rmdir(fpdir);
}
END_TEST

/* A snapshot whose writer's term ends (_i 0: the grant runs out; 1: a newer
 * epoch claims the volume) while it is being built commits nothing and
 * removes nothing: no snapshot file, every segment still there, and the
 * store recovers every write. */
START_TEST(snapshot_outliving_its_term_commits_nothing)
{
	bool over = false;
	struct metastore_options o = {.epoch = 1, .in_term = term_over, .in_term_userdata = &over};
	char fpdir[300], marker[512], err[1024], k[32];
	struct snap_ctx c = {0};
	struct metastore *m = NULL, *nw = NULL;
	pthread_t th;
	int segs;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	ck_assert_int_eq(metastore_open_dir(tmpdir, &o, &m, err, sizeof(err)), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "k/%02d", i);
		put_str(m, k, "v");
	}
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(failpoint_set("metastore.snapshot.before_rename=1*pause", NULL, 0), 0);
	c.m = m;
	ck_assert_int_eq(pthread_create(&th, NULL, snap_thread, &c), 0);
	wait_paused(fpdir, "metastore.snapshot.before_rename", 10000, marker, sizeof(marker));
	if (_i == 0)
		__atomic_store_n(&over, true, __ATOMIC_RELEASE);
	else
		nw = open_store(tmpdir, 2);
	segs = count_files("journal-", ".log");
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(c.r == (_i == 0 ? -ETIME : -ESTALE), "snapshot: %d %s", c.r, c.err);
	ck_assert_int_eq(count_files("snapshot-", ".snap"), 0);
	ck_assert_int_eq(count_files("snapshot-", ".tmp"), 0);
	ck_assert_int_eq(count_files("journal-", ".log"), segs);
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	if (_i == 0) { /* a new term, nothing written since: the same point again */
		__atomic_store_n(&over, false, __ATOMIC_RELEASE);
		ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
		ck_assert_int_eq(count_files("snapshot-", ".snap"), 1);
	}
	m = metastore_close(m);
	if (nw) {
		put_str(nw, "new", "2");
		nw = metastore_close(nw);
	}
	m = open_store(tmpdir, 3);
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "k/%02d", i);
		assert_value(m, k, "v");
	}
	if (_i == 1)
		assert_value(m, "new", "2");
	metastore_close(m);
	rmdir(fpdir);
}
END_TEST

/* Backends without a second handle (the raw LUN) snapshot in the
 * foreground; here the directory backend without its clone op plays one.
 * When the writer's term ends between the commit and the next segment, the
 * snapshot stands but no segment is started and nothing is removed; the
 * writes that follow go into the current segment, and both a reopen and
 * the next snapshot keep every one of them. */
START_TEST(foreground_snapshot_term_ends_after_commit)
{
	bool over = false;
	struct metastore_options o = {.epoch = 1, .in_term = term_over, .in_term_userdata = &over};
	static struct backend_ops ops;
	char fpdir[300], marker[512], err[1024], k[32], seg[512], now[512];
	struct snap_ctx c = {0};
	struct metastore *m = NULL;
	struct backend *b;
	pthread_t th;
	int segs;

	snprintf(fpdir, sizeof(fpdir), "%s.fp", tmpdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	ck_assert_int_eq(backend_dir_open(tmpdir, true, &b, err, sizeof(err)), 0);
	ops = *b->ops;
	ops.clone = NULL;
	b->ops = &ops;
	ck_assert_int_eq(metastore_open(b, &o, &m, err, sizeof(err)), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "a/%02d", i);
		put_str(m, k, k);
	}
	segs = count_files("journal-", ".log");
	segment_path(-1, seg, sizeof(seg));
	ck_assert_int_eq(failpoint_set_dir(fpdir), 0);
	ck_assert_int_eq(failpoint_set("metastore.snapshot.after_rename=1*pause", NULL, 0), 0);
	c.m = m;
	ck_assert_int_eq(pthread_create(&th, NULL, snap_thread, &c), 0);
	wait_paused(fpdir, "metastore.snapshot.after_rename", 10000, marker, sizeof(marker));
	__atomic_store_n(&over, true, __ATOMIC_RELEASE);
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(c.r == 0, "snapshot: %d %s", c.r, c.err);
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	ck_assert_int_eq(count_files("snapshot-", ".snap"), 1);
	/* none started, none removed: the newest segment is still the one
	 * written before the snapshot */
	ck_assert_int_eq(count_files("journal-", ".log"), segs);
	segment_path(-1, now, sizeof(now));
	ck_assert_str_eq(now, seg);
	__atomic_store_n(&over, false, __ATOMIC_RELEASE);
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "b/%02d", i);
		put_str(m, k, k);
	}
	m = metastore_close(m);
	m = open_store(tmpdir, 1);
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "a/%02d", i);
		assert_value(m, k, k);
		snprintf(k, sizeof(k), "b/%02d", i);
		assert_value(m, k, k);
	}
	ck_assert_int_eq(metastore_snapshot(m, err, sizeof(err)), 0);
	put_str(m, "c", "c");
	m = metastore_close(m);
	m = open_store(tmpdir, 2);
	assert_value(m, "a/00", "a/00");
	assert_value(m, "b/09", "b/09");
	assert_value(m, "c", "c");
	metastore_close(m);
}
END_TEST

/* The points at which a writer process is crashed during a snapshot. */
static const char *const SNAP_CRASH[] = {
        "backend.segment.before_create=1*crash",     /* cutting the segment */
        "metastore.snapshot.after_cut=1*crash",      /* cut, nothing read yet */
        "metastore.snapshot.before_rename=1*crash",  /* data written, not committed */
        "metastore.snapshot.after_rename=1*crash",   /* committed, nothing removed */
        "backend.unit.before_remove=1*crash",        /* before the first removal */
        "backend.unit.before_remove=1*off->1*crash", /* between two removals */
};

struct ack_writer {
	struct metastore *m;
	int fd;
};

/* Put keys forever, writing each one to fd after its put returned. */
static void *ack_thread(void *arg)
{
	struct ack_writer *w = arg;
	char k[32], line[40];

	for (int i = 0;; i++) {
		int len;

		snprintf(k, sizeof(k), "w/%06d", i);
		if (metastore_put(w->m, k, strlen(k), k, strlen(k), NULL, 0) != 0)
			_exit(3);
		len = snprintf(line, sizeof(line), "%s\n", k);
		if (write(w->fd, line, (size_t)len) != len)
			_exit(4);
	}
	return NULL;
}

/* A writer crashed at each step of a snapshot, with another thread writing
 * meanwhile: the reopened store holds every acknowledged key. */
START_TEST(crash_at_each_snapshot_step)
{
	char acks[300], line[64];
	struct metastore *m;
	pid_t pid;
	int st;
	long acked = 0;
	FILE *f;

	snprintf(acks, sizeof(acks), "%s.acks", tmpdir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct ack_writer w;
		pthread_t th;
		char k[32];

		m = open_store(tmpdir, 1);
		for (int round = 0; round < 2; round++) {
			for (int i = 0; i < 300; i++) {
				snprintf(k, sizeof(k), "r%d/%03d", round, i);
				put_str(m, k, k);
			}
			if (round == 0 && metastore_snapshot(m, NULL, 0) != 0)
				_exit(5);
			m = metastore_close(m); /* two segments, one snapshot */
			m = open_store(tmpdir, 1);
		}
		w.m = m;
		w.fd = open(acks, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		if (w.fd < 0 || failpoint_set(SNAP_CRASH[_i], NULL, 0) != 0)
			_exit(6);
		pthread_create(&th, NULL, ack_thread, &w);
		usleep(20000);
		(void)metastore_snapshot(m, NULL, 0);
		_exit(7); /* the crash point was never reached */
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == FAILPOINT_CRASH_STATUS,
	              "'%s': the writer did not crash there (status %d)", SNAP_CRASH[_i], st);
	m = open_store(tmpdir, 2);
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 300; i++) {
			snprintf(line, sizeof(line), "r%d/%03d", round, i);
			assert_value(m, line, line);
		}
	f = fopen(acks, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);

		if (len == 0 || line[len - 1] != '\n')
			continue; /* cut while being written */
		line[len - 1] = '\0';
		assert_value(m, line, line);
		acked++;
	}
	fclose(f);
	unlink(acks);
	ck_assert_int_gt(acked, 0);
	/* and the store goes on: a snapshot of the recovered state works and
	 * clears what the crash left half-written */
	ck_assert_int_eq(metastore_snapshot(m, NULL, 0), 0);
	ck_assert_int_eq(count_files("snapshot-", ".tmp"), 0);
	ck_assert_int_eq(count_files("snapshot-", ".snap"), 1);
	metastore_close(m);
}
END_TEST

static Suite *metastore_suite(void)
{
	Suite *s = suite_create("metastore");
	TCase *tc;

	tc = kft_tcase(s, "api", 60, setup, teardown);
	tcase_add_test(tc, put_get_delete_reopen);
	tc = kft_tcase(s, "limits", 60, setup, teardown);
	tcase_add_test(tc, limits);
	tc = kft_tcase(s, "list", 60, setup, teardown);
	tcase_add_test(tc, list_by_prefix);
	tc = kft_tcase(s, "torn_tail", 60, setup, teardown);
	tcase_add_test(tc, torn_tail_every_offset);
	tc = kft_tcase(s, "corruption", 60, setup, teardown);
	tcase_add_loop_test(tc, bit_flip_middle_record_refused, 0,
	                    (int)(sizeof(FIELDS) / sizeof(FIELDS[0])));
	tcase_add_test(tc, damaged_snapshot_refused);
	tc = kft_tcase(s, "repair", 60, setup, teardown);
	tcase_add_test(tc, check_and_repair);
	tcase_add_test(tc, check_report_unrepairable);
	tc = kft_tcase(s, "snapshot", 60, setup, teardown);
	tcase_add_loop_test(tc, snapshot_replay_equals_journal_replay, 0, 4);
	tcase_add_test(tc, snapshot_removes_covered_segments);
	tcase_add_test(tc, recovery_bounded_by_the_live_keys);
	tcase_add_test(tc, failed_automatic_snapshot_backs_off);
	tcase_add_test(tc, snapshot_after_the_term_commits_nothing);
	tc = kft_tcase(s, "snapshot_beside_writers", 60, setup, teardown);
	tcase_add_test(tc, writers_proceed_during_snapshot);
	tcase_add_loop_test(tc, snapshot_outliving_its_term_commits_nothing, 0, 2);
	tcase_add_test(tc, foreground_snapshot_term_ends_after_commit);
	tcase_add_loop_test(tc, crash_at_each_snapshot_step, 0,
	                    (int)(sizeof(SNAP_CRASH) / sizeof(SNAP_CRASH[0])));
	tc = kft_tcase(s, "epoch", 60, setup, teardown);
	tcase_add_test(tc, open_with_older_epoch_is_stale);
	tcase_add_test(tc, newer_writer_makes_old_step_down);
	tcase_add_test(tc, backend_refusal_steps_down);
	tc = kft_tcase(s, "fenced_writers", 60, setup, teardown);
	tcase_add_test(tc, fenced_writers_units_are_left_out);
	tcase_add_loop_test(tc, interleaved_writers_refused, 0, 2);
	tcase_add_test(tc, claim_never_lowers_the_epoch);
	tc = kft_tcase(s, "power_cut", 60, setup, teardown);
	tcase_add_test(tc, power_cut_unsynced_batch_is_cut);
	tc = kft_tcase(s, "durable_reads", 60, setup, teardown);
	tcase_add_test(tc, read_waits_for_the_commit);
	tcase_add_test(tc, read_waits_for_writes_appended_meanwhile);
	tcase_add_loop_test(tc, confirmed_reads_stop_at_a_newer_claim, 0, 2);
	tcase_add_loop_test(tc, read_check_failure_kills_the_store_unless_it_passes, 0, 3);
	tc = kft_tcase(s, "group_commit", 60, setup, teardown);
	tcase_add_loop_test(tc, group_commit_threads, 0, 2);
	return s;
}

int main(void)
{
	return kft_main(metastore_suite(), NULL);
}
