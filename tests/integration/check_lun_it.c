/* Integration tests of the raw-LUN backend (storage/backend_lun.c) against a
 * real iSCSI target: tgtd on 127.0.0.1 with two file-backed LUNs, started and
 * stopped by tests/integration/lun.test (tests/harness/tgtd.sh).  Node A and
 * node B are two initiators, each with its own libiscsi sessions; every test
 * starts from LUNs whose registrations and reservation have been CLEARed.
 *
 * Environment: KF_TGT_LUN_URLS (2 LUNs), KF_TGT_DIR (backing files
 * lun1.img, lun2.img). */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fencing/fence_scsi.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "scsi/scsi_pr.h"
#include "storage/backend_lun.h"
#include "storage/journal.h"
#include "storage/metastore.h"
#include "tests/lib/kft_lun.h"
#include "tests/lib/kftest.h"

#define DEADLINE() (clock_mono_usec() + 5 * USEC_PER_SEC)
#define N_RECORDS  200

static char lun1[SCSI_PR_URL_MAX], lun2[SCSI_PR_URL_MAX];

static void setup(void)
{
	kft_lun_urls("lun.test", lun1, lun2);
	log_max_level = LOG_LEVEL_WARNING;
	kft_lun_clear(lun1);
	kft_lun_clear(lun2);
}

static void key_of(int i, char *buf, size_t len)
{
	snprintf(buf, len, "/pods/key-%05d", i);
}

static struct metastore *open_store(const char *node, uint64_t epoch)
{
	struct metastore_options o = {.epoch = epoch};
	struct metastore *m = NULL;
	char err[1024];
	int r = metastore_open_lun(lun1, NULL, node, &o, &m, err, sizeof(err));

	ck_assert_msg(r == 0, "open as %s: %s", node, err);
	return m;
}

static void put(struct metastore *m, int i, int expect)
{
	char key[64], val[128], err[512];
	int r;

	key_of(i, key, sizeof(key));
	snprintf(val, sizeof(val), "value of %d", i);
	r = metastore_put(m, key, strlen(key), val, strlen(val), err, sizeof(err));
	ck_assert_msg(r == expect, "put %d: %d (%s), expected %d", i, r, err, expect);
}

static void expect_keys(struct metastore *m, int from, int to)
{
	for (int i = from; i < to; i++) {
		char key[64], want[128];
		void *v = NULL;
		size_t len = 0;

		key_of(i, key, sizeof(key));
		snprintf(want, sizeof(want), "value of %d", i);
		ck_assert_msg(metastore_get(m, key, strlen(key), &v, &len) == 0, "key %d lost", i);
		ck_assert_str_eq(v, want);
		free(v);
	}
}

static void format_lun(const char *url)
{
	char err[1024];
	int r = backend_lun_format(url, NULL, "node-a", true, err, sizeof(err));

	ck_assert_msg(r == 0, "format: %s", err);
}

START_TEST(test_format_refuses_ext4)
{
	char img[1024], err[1024];
	pid_t pid;
	int st, r;

	/* mkfs on the backing file of LUN 2 (tgt's rdwr store keeps no cache) */
	snprintf(img, sizeof(img), "%s/lun2.img", kft_env("KF_TGT_DIR", "lun.test"));
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execlp("mkfs.ext4", "mkfs.ext4", "-q", "-F", img, (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mkfs.ext4 failed");
	r = backend_lun_format(lun2, NULL, "node-a", false, err, sizeof(err));
	ck_assert_int_eq(r, -EEXIST);
	ck_assert_msg(strstr(err, "ext4"), "err does not name ext4: %s", err);
	/* forced, it overwrites; then a second format sees a store */
	ck_assert_int_eq(backend_lun_format(lun2, NULL, "node-a", true, err, sizeof(err)), 0);
	r = backend_lun_format(lun2, NULL, "node-a", false, err, sizeof(err));
	ck_assert_int_eq(r, -EEXIST);
	ck_assert_msg(strstr(err, "kubefence"), "%s", err);
}
END_TEST

START_TEST(test_format_blank)
{
	struct scsi_pr *h = kft_lun_open_as(lun1, "node-a");
	size_t bs = scsi_pr_block_size(h);
	uint8_t *z = calloc(1, 4u << 20);
	char err[1024];
	uint64_t key;

	/* make it blank first (earlier tests formatted it) */
	ck_assert_int_eq(scsi_pr_key_for_node("node-a", &key), 0);
	ck_assert_int_eq(scsi_pr_register_ignore(h, key, DEADLINE(), err, sizeof(err)), 0);
	for (uint64_t off = 0; off < (4u << 20); off += 1u << 20)
		ck_assert_int_eq(
		        scsi_pr_write(h, off / bs, z, 1u << 20, DEADLINE(), err, sizeof(err)), 0);
	scsi_pr_close(h);
	free(z);
	ck_assert_msg(backend_lun_format(lun1, NULL, "node-a", false, err, sizeof(err)) == 0, "%s",
	              err);
}
END_TEST

START_TEST(test_failover)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct metastore_stats st;
	struct metastore *a, *b;
	uint64_t last_a;

	format_lun(lun1);
	a = open_store("node-a", 1);
	for (int i = 0; i < N_RECORDS; i++)
		put(a, i, 0);
	metastore_get_stats(a, &st);
	last_a = st.last_seq;

	/* B fences A at the storage, then takes over with epoch 2 */
	ck_assert_msg(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep) == 0,
	              "fence: %s", rep.steps[0].detail);
	b = open_store("node-b", 2);
	metastore_get_stats(b, &st);
	ck_assert_uint_eq(st.keys, N_RECORDS);
	ck_assert_uint_eq(st.last_seq, last_a + 1); /* + B's barrier */
	expect_keys(b, 0, N_RECORDS);

	/* A's next put is refused by the LUN: A steps down.  The put itself
	 * is answered "outcome unknown" (a refusal may come after part of a
	 * batch was written); the one after it was never attempted. */
	put(a, N_RECORDS, -EINPROGRESS);
	put(a, N_RECORDS + 1, -ESTALE);
	metastore_close(a);

	for (int i = N_RECORDS + 10; i < N_RECORDS + 60; i++)
		put(b, i, 0);
	ck_assert_int_eq(metastore_snapshot(b, NULL, 0), 0);
	for (int i = N_RECORDS + 60; i < N_RECORDS + 80; i++)
		put(b, i, 0);
	metastore_close(b);

	b = open_store("node-b", 2);
	metastore_get_stats(b, &st);
	ck_assert_uint_eq(st.keys, N_RECORDS + 70);
	expect_keys(b, 0, N_RECORDS);
	expect_keys(b, N_RECORDS + 10, N_RECORDS + 80);
	{
		char key[64];
		void *v;

		key_of(N_RECORDS, key, sizeof(key));
		ck_assert_int_eq(metastore_get(b, key, strlen(key), &v, NULL), -ENOENT);
	}
	metastore_close(b);
}
END_TEST

/* A master that stops right after a snapshot, before the first record of
 * the segment the snapshot started (SIGSTOP, a crash, a fence at that
 * instant): the next master recovers up to the snapshot's seq S and begins
 * its own segment at S+1, where the empty one begins too.  It must open
 * (the lab's SIGSTOP bench once wedged on 'cannot write the epoch barrier:
 * Invalid argument', every node, every term), and so must the one after. */
START_TEST(test_empty_segment_after_snapshot)
{
	struct metastore *a;
	struct metastore_stats st;
	char err[512] = "";

	format_lun(lun1);
	a = open_store("node-a", 1);
	for (int i = 0; i < 50; i++)
		put(a, i, 0);
	ck_assert_int_eq(metastore_snapshot(a, err, sizeof(err)), 0);
	metastore_close(a); /* nothing written after the snapshot */
	for (uint64_t epoch = 2; epoch <= 3; epoch++) {
		int r = metastore_open_lun(lun1, NULL, "node-a",
		                           &(struct metastore_options){.epoch = epoch}, &a, err,
		                           sizeof(err));

		ck_assert_msg(r == 0, "epoch %" PRIu64 " cannot open: %s", epoch, err);
		metastore_get_stats(a, &st);
		ck_assert_uint_eq(st.keys, 50 + epoch - 2); /* and the put of each open */
		expect_keys(a, 0, 50);
		if (epoch == 3)
			expect_keys(a, 102, 103);
		put(a, 100 + (int)epoch, 0);
		metastore_close(a);
	}
}
END_TEST

/* Values of 6000 bytes: 200 of them make a snapshot larger than one SCSI
 * WRITE of the backend (1 MiB), so that a snapshot's data reaches its slot
 * before the commit. */
#define BIG_VALUE 6000

static int put_big(struct metastore *m, int i)
{
	char key[64], *val = malloc(BIG_VALUE);
	int n, r;

	ck_assert_ptr_nonnull(val);
	key_of(i, key, sizeof(key));
	n = snprintf(val, BIG_VALUE, "value of %d|", i);
	memset(val + n, 'x', BIG_VALUE - (size_t)n);
	r = metastore_put(m, key, strlen(key), val, BIG_VALUE, NULL, 0);
	free(val);
	return r;
}

static void expect_big(struct metastore *m, int from, int to)
{
	for (int i = from; i < to; i++) {
		char key[64], want[64];
		void *v = NULL;
		size_t len = 0;
		int n;

		key_of(i, key, sizeof(key));
		n = snprintf(want, sizeof(want), "value of %d|", i);
		ck_assert_msg(metastore_get(m, key, strlen(key), &v, &len) == 0, "key %d lost", i);
		ck_assert_uint_eq(len, BIG_VALUE);
		ck_assert_msg(memcmp(v, want, (size_t)n) == 0, "key %d has another value", i);
		free(v);
	}
}

/* A state-table write that reaches the LUN but is reported failed (an EIO,
 * a timeout after the target wrote it): the LUN's newest table then points
 * to the snapshot the writer believes uncommitted.  Nothing may be written
 * on the strength of the table the writer still holds: the next snapshot
 * would go into the slot the LUN's table points to, and a crash during it
 * (here: the snapshot abandoned after its data was written) leaves the only
 * listed snapshot damaged.  Every write acknowledged before must be
 * recovered on the next open. */
START_TEST(test_table_write_of_unknown_outcome)
{
	struct metastore *a;
	struct metastore_stats st;
	char err[512] = "";
	int acked = 0, r;

	format_lun(lun1);
	a = open_store("node-a", 1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(put_big(a, i), 0);
	ck_assert_int_eq(metastore_snapshot(a, err, sizeof(err)), 0);
	for (int i = 100; i < 200; i++)
		ck_assert_int_eq(put_big(a, i), 0);
	ck_assert_int_eq(failpoint_set("backend.lun.table.after_write=1*error(EIO)", NULL, 0), 0);
	r = metastore_snapshot(a, err, sizeof(err));
	ck_assert_msg(r < 0, "the snapshot whose table write failed was reported done");
	/* the next snapshot's data is written, then it is abandoned: a crash
	 * before its commit */
	ck_assert_int_eq(failpoint_set("metastore.snapshot.before_rename=1*error(EIO)", NULL, 0),
	                 0);
	for (int i = 200; i < 230; i++) {
		if (put_big(a, i) != 0)
			break;
		acked++;
	}
	r = metastore_snapshot(a, err, sizeof(err));
	printf("table-unknown: %d more writes acknowledged, then the snapshot: %d (%s)\n", acked, r,
	       err);
	(void)failpoint_set(NULL, NULL, 0);
	metastore_close(a);

	r = metastore_open_lun(lun1, NULL, "node-a", &(struct metastore_options){.epoch = 2}, &a,
	                       err, sizeof(err));
	ck_assert_msg(r == 0, "the store no longer opens: %s", err);
	metastore_get_stats(a, &st);
	ck_assert_uint_eq(st.keys, 200 + (uint64_t)acked);
	expect_big(a, 0, 200 + acked);
	metastore_close(a);
}
END_TEST

/* The ring's first segment starts at ring position 0: find where its valid
 * records end and write the first block of a longer record there, as a
 * crash in the middle of a multi-block write would leave it. */
START_TEST(test_torn_tail)
{
	struct metastore_stats st;
	struct metastore *m;
	struct scsi_pr *h;
	struct journal_scan_result res;
	struct journal_membuf mb;
	uint8_t sb[4096], *ring, rec[2048], val[1500];
	uint64_t ring_lba, key, bs;
	char err[512];
	ssize_t n;

	format_lun(lun1);
	m = open_store("node-a", 1);
	for (int i = 0; i < 50; i++)
		put(m, i, 0);
	metastore_close(m);

	h = kft_lun_open_as(lun1, "node-a");
	bs = scsi_pr_block_size(h);
	ck_assert_int_eq(scsi_pr_key_for_node("node-a", &key), 0);
	ck_assert_int_eq(scsi_pr_register_ignore(h, key, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_read(h, 0, sb, bs, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(memcmp(sb, "KFJRNLv1", 8), 0);
	ring_lba = journal_get_le64(sb + 88);
	ring = malloc(1u << 20);
	ck_assert_int_eq(scsi_pr_read(h, ring_lba, ring, 1u << 20, DEADLINE(), err, sizeof(err)),
	                 0);
	mb = (struct journal_membuf){ring, 1u << 20};
	ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, 1u << 20, NULL, NULL, &res), 0);
	ck_assert_int_eq(res.status, JOURNAL_SCAN_TORN);
	ck_assert_uint_eq(res.valid_end % bs, 0);
	memset(val, 'x', sizeof(val));
	n = journal_encode(rec, sizeof(rec), JOURNAL_PUT, 52, 1, "/torn", 5, val, sizeof(val));
	ck_assert_int_gt(n, 2 * (ssize_t)bs);
	ck_assert_int_eq(scsi_pr_write(h, ring_lba + res.valid_end / bs, rec, bs, DEADLINE(), err,
	                               sizeof(err)),
	                 0);
	scsi_pr_close(h);
	free(ring);

	m = open_store("node-a", 1);
	metastore_get_stats(m, &st);
	ck_assert_uint_gt(st.torn_bytes_cut, 0);
	ck_assert_uint_eq(st.keys, 50);
	expect_keys(m, 0, 50);
	for (int i = 50; i < 60; i++)
		put(m, i, 0);
	metastore_close(m);
	m = open_store("node-a", 1);
	metastore_get_stats(m, &st);
	ck_assert_uint_eq(st.torn_bytes_cut, 0);
	ck_assert_uint_eq(st.keys, 60);
	expect_keys(m, 0, 60);
	metastore_close(m);
}
END_TEST

static bool key_registered(const char *node)
{
	struct scsi_pr_keys keys;
	struct scsi_pr *h = kft_lun_open_as(lun1, "node-c");
	uint64_t key;
	char err[512];
	bool found = false;

	ck_assert_int_eq(scsi_pr_key_for_node(node, &key), 0);
	ck_assert_msg(scsi_pr_read_keys(h, DEADLINE(), &keys, err, sizeof(err)) == 0, "%s", err);
	for (size_t i = 0; i < keys.n; i++)
		found = found || keys.keys[i] == key;
	scsi_pr_close(h);
	return found;
}

/* A store opened for writing after its node was fenced (a PROMOTE that
 * reached a service late: its node frozen, its agent's term over) must not
 * register the node's key again: that would undo the fence, and the stale
 * master's writes would reach the LUN beside its successor's. */
START_TEST(test_fenced_open_refused)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct metastore_options o = {.epoch = 3};
	struct metastore *a, *b, *stale = NULL;
	char err[1024] = "";
	int r;

	format_lun(lun1);
	a = open_store("node-a", 1);
	for (int i = 0; i < 20; i++)
		put(a, i, 0);
	ck_assert_msg(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep) == 0,
	              "fence: %s", rep.steps[0].detail);
	ck_assert(!key_registered("node-a"));
	b = open_store("node-b", 2);

	/* even with an epoch above the successor's, the fenced node's open
	 * fails before it writes anything, and its key stays removed */
	r = metastore_open_lun(lun1, NULL, "node-a", &o, &stale, err, sizeof(err));
	ck_assert_msg(r < 0, "a fenced node opened the store for writing (epoch 3)");
	ck_assert_int_eq(r, -EBADE);
	ck_assert_msg(strstr(err, "fenced") != NULL, "unclear refusal: %s", err);
	ck_assert_msg(!key_registered("node-a"), "the fenced node's open registered its key again");
	put(a, 100, -EINPROGRESS);
	put(b, 101, 0);
	metastore_close(a);
	metastore_close(b);
}
END_TEST

/* A node whose key nobody registered for its term (no fence, no agent's
 * claim: a clean handover is claimed by the agent, fence_scsi_join) is
 * refused the same way while another node is registered; once joined, it
 * opens. */
START_TEST(test_open_needs_join)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct metastore_options o = {.epoch = 2};
	struct metastore *a, *b = NULL;
	char err[1024] = "";

	format_lun(lun1);
	a = open_store("node-a", 1);
	put(a, 0, 0);
	metastore_close(a);
	ck_assert_int_eq(metastore_open_lun(lun1, NULL, "node-b", &o, &b, err, sizeof(err)),
	                 -EBADE);
	ck_assert_msg(strstr(err, "fenced, or no agent claimed") != NULL, "unclear refusal: %s",
	              err);
	ck_assert(!key_registered("node-b"));
	ck_assert_msg(fence_scsi_join("node-b", luns, 1, NULL, DEADLINE(), &rep) == 0, "join: %s",
	              rep.steps[0].detail);
	b = open_store("node-b", 2);
	expect_keys(b, 0, 1);
	metastore_close(b);
}
END_TEST

/* A target that lost every registration (a restart) after a fence: the
 * fenced node's late open must not register there either — only the
 * leader's agent does, its Lease confirmed.  A master without an agent
 * (--standalone: join_empty) may; so may a node its agent registered. */
START_TEST(test_empty_lun_needs_claim)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct metastore_options o = {.epoch = 3};
	struct metastore *a, *m = NULL;
	char err[1024] = "";

	format_lun(lun1);
	a = open_store("node-a", 1);
	put(a, 0, 0);
	metastore_close(a);
	kft_lun_clear(lun1); /* as a tgtd restart leaves it */
	ck_assert_int_eq(metastore_open_lun(lun1, NULL, "node-a", &o, &m, err, sizeof(err)),
	                 -EBADE);
	ck_assert_msg(strstr(err, "nor any other") != NULL, "unclear refusal: %s", err);
	ck_assert(!key_registered("node-a"));
	ck_assert_int_eq(
	        metastore_open_lun_join(lun1, NULL, "node-a", true, &o, &m, err, sizeof(err)), 0);
	expect_keys(m, 0, 1);
	metastore_close(m);
	kft_lun_clear(lun1);
	ck_assert_msg(fence_scsi_join("node-a", luns, 1, NULL, DEADLINE(), &rep) == 0, "join: %s",
	              rep.steps[0].detail);
	m = open_store("node-a", 4);
	expect_keys(m, 0, 1);
	metastore_close(m);
}
END_TEST

static Suite *lun_suite(void)
{
	Suite *s = suite_create("lun");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
	        {"format_refuses_ext4", test_format_refuses_ext4},
	        {"format_blank", test_format_blank},
	        {"failover", test_failover},
	        {"torn_tail", test_torn_tail},
	        {"empty_segment_after_snapshot", test_empty_segment_after_snapshot},
	        {"table_write_of_unknown_outcome", test_table_write_of_unknown_outcome},
	        {"fenced_open_refused", test_fenced_open_refused},
	        {"open_needs_join", test_open_needs_join},
	        {"empty_lun_needs_claim", test_empty_lun_needs_claim},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);

		tcase_add_checked_fixture(tc, setup, NULL);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	/* Each test in its own process: Check enforces the 60 s timeouts only
	 * there, so a hung iSCSI exchange fails its test instead of hanging
	 * the run (and CK_FORK=no in the environment cannot switch that off). */
	static const struct kft_opts opts = {.fork = true};

	return kft_main(lun_suite(), &opts);
}
