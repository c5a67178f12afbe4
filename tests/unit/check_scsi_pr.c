/* Unit tests of the pure parts of scsi/scsi_pr.c, scsi/scsi_resv.c and
 * fencing/fence_scsi.c: the key scheme (known vectors, magic, uniqueness,
 * reading keys back to node names), initiator IQNs, iscsi:// URL parsing,
 * the status/sense -> errno table, the PR IN parsers, the own-I/O verdict,
 * and the LUN pipeline of the fence with an injected clock. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "fencing/fence_scsi.h"
#include "scsi/scsi_pr.h"
#include "scsi/scsi_resv.h"
#include "tests/lib/kftest.h"

#define MS(x) ((usec_t)(x)*USEC_PER_MSEC)

/* ------------------------------------------------------------ keys */

START_TEST(key_known_vectors)
{
	uint64_t k;

	/* "kf" + the first 6 bytes of SHA-256 of the name */
	ck_assert_int_eq(scsi_pr_key_for_node("node-a", &k), 0);
	ck_assert_uint_eq(k, UINT64_C(0x6b6666570ff05a20));
	ck_assert_int_eq(scsi_pr_key_for_node("node-b", &k), 0);
	ck_assert_uint_eq(k, UINT64_C(0x6b6693ef37c61571));
	ck_assert_int_eq(scsi_pr_key_for_node("worker-1.example.com", &k), 0);
	ck_assert_uint_eq(k, UINT64_C(0x6b66357dd4545db0));
	ck_assert(scsi_pr_key_is_ours(k));
	ck_assert(!scsi_pr_key_is_ours(UINT64_C(0x1234567890abcdef)));
	ck_assert_int_eq(scsi_pr_key_for_node("", &k), -EINVAL);
	ck_assert_int_eq(scsi_pr_key_for_node(NULL, &k), -EINVAL);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(key_unique_and_stable)
{
	enum { N = 20000 };
	uint64_t *keys = calloc(N, sizeof(*keys));
	char name[64];

	ck_assert_ptr_nonnull(keys);
	for (int i = 0; i < N; i++) {
		uint64_t again;
		snprintf(name, sizeof(name), "node-%d", i);
		ck_assert_int_eq(scsi_pr_key_for_node(name, &keys[i]), 0);
		ck_assert_int_eq(scsi_pr_key_for_node(name, &again), 0);
		ck_assert_uint_eq(keys[i], again);
		ck_assert_uint_eq(keys[i] >> 48, 0x6b66);
	}
	qsort(keys, N, sizeof(*keys), cmp_u64);
	for (int i = 1; i < N; i++)
		ck_assert_uint_ne(keys[i], keys[i - 1]);
	free(keys);
}
END_TEST

START_TEST(key_back_to_node)
{
	const char *const nodes[] = {"node-a", "node-b", "node-c"};
	uint64_t k;

	ck_assert_int_eq(scsi_pr_key_for_node("node-c", &k), 0);
	ck_assert_int_eq(scsi_pr_key_to_node(k, nodes, 3), 2);
	ck_assert_int_eq(scsi_pr_key_to_node(k, nodes, 2), -ENOENT);
	ck_assert_int_eq(scsi_pr_key_to_node(UINT64_C(0xdeadbeef), nodes, 3), -EMEDIUMTYPE);
	ck_assert_int_eq(scsi_pr_key_to_node(k, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(iqn_for_node)
{
	char b[SCSI_PR_IQN_MAX], n[64];

	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, "node-a", b, sizeof(b)), 0);
	ck_assert_str_eq(b, "iqn.2026-11.io.kubefence:node-a");
	ck_assert_int_eq(scsi_pr_iqn_for_node("iqn.2020-01.org.x", "Node-B.lab", b, sizeof(b)), 0);
	ck_assert_str_eq(b, "iqn.2020-01.org.x:node-b.lab");
	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, "bad name", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, "a/b", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(scsi_pr_iqn_for_node("eui.1234", "x", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, "", b, sizeof(b)), -EINVAL);
	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, "node-a", b, 10), -ENAMETOOLONG);

	ck_assert_int_eq(
	        scsi_pr_node_from_iqn(NULL, "iqn.2026-11.io.kubefence:node-a", n, sizeof(n)), 0);
	ck_assert_str_eq(n, "node-a");
	ck_assert_int_eq(scsi_pr_node_from_iqn(NULL,
	                                       "iqn.2026-11.io.kubefence:node-b,i,0x23d000000001",
	                                       n, sizeof(n)),
	                 0);
	ck_assert_str_eq(n, "node-b");
	ck_assert_int_eq(scsi_pr_node_from_iqn(NULL, "iqn.1994-05.com.redhat:abc", n, sizeof(n)),
	                 -ENOENT);
	ck_assert_int_eq(scsi_pr_node_from_iqn(NULL, "iqn.2026-11.io.kubefence:", n, sizeof(n)),
	                 -ENOENT);
}
END_TEST

/* ------------------------------------------------------------ URLs */

START_TEST(url_good)
{
	struct scsi_pr_url u;
	char err[256];

	ck_assert_int_eq(scsi_pr_url_parse("iscsi://127.0.0.1:3261/iqn.2026-11.io.x:t/1", &u, err,
	                                   sizeof(err)),
	                 0);
	ck_assert_str_eq(u.host, "127.0.0.1");
	ck_assert_int_eq(u.port, 3261);
	ck_assert_str_eq(u.portal, "127.0.0.1:3261");
	ck_assert_str_eq(u.target, "iqn.2026-11.io.x:t");
	ck_assert_int_eq(u.lun, 1);

	ck_assert_int_eq(scsi_pr_url_parse("iscsi://san.example/iqn.2026-11.io.x%3At/0", &u, err,
	                                   sizeof(err)),
	                 0);
	ck_assert_int_eq(u.port, 3260);
	ck_assert_str_eq(u.portal, "san.example:3260");
	ck_assert_str_eq(u.target, "iqn.2026-11.io.x:t");
	ck_assert_int_eq(u.lun, 0);

	ck_assert_int_eq(scsi_pr_url_parse("iscsi://[::1]:3262/iqn.2026-11.io.x:t/16383", &u, err,
	                                   sizeof(err)),
	                 0);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_str_eq(u.portal, "[::1]:3262");
	ck_assert_int_eq(u.lun, 16383);
}
END_TEST

static const struct {
	const char *url, *why;
} BAD_URLS[] = {
        {"", "empty"},
        {"http://h/iqn.2026-11.x:t/1", "iscsi://"},
        {"iscsi://", "missing"},
        {"iscsi://host", "missing"},
        {"iscsi:///iqn.2026-11.x:t/1", "empty host"},
        {"iscsi://h:0/iqn.2026-11.x:t/1", "port"},
        {"iscsi://h:70000/iqn.2026-11.x:t/1", "port"},
        {"iscsi://h:x1/iqn.2026-11.x:t/1", "port"},
        {"iscsi://h/iqn.2026-11.x:t", "missing target IQN or LUN"},
        {"iscsi://h//1", "missing target IQN or LUN"},
        {"iscsi://h/iqn.2026-11.x:t/", "LUN"},
        {"iscsi://h/iqn.2026-11.x:t/-1", "LUN"},
        {"iscsi://h/iqn.2026-11.x:t/16384", "LUN"},
        {"iscsi://h/iqn.2026-11.x:t/1x", "LUN"},
        {"iscsi://h/target/1", "not an iqn."},
        {"iscsi://h/iqn.2026-11.x%3/1", "escape"},
        {"iscsi://user%pw@h/iqn.2026-11.x:t/1", "credentials"},
        {"iscsi://[::1/iqn.2026-11.x:t/1", "IPv6"},
        {"iscsi://h/iqn.2026 11.x:t/1", "bad character"},
};

START_TEST(url_bad)
{
	struct scsi_pr_url u;
	char err[256] = "";

	ck_assert_int_eq(scsi_pr_url_parse(BAD_URLS[_i].url, &u, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, BAD_URLS[_i].why), "'%s': '%s' lacks '%s'", BAD_URLS[_i].url, err,
	              BAD_URLS[_i].why);
}
END_TEST

/* ------------------------------------------------------------ errno table */

static const struct {
	int status, key, asc, ascq, want;
} STATUS_TABLE[] = {
        {SCSI_STATUS_GOOD, 0, 0, 0, 0},
        {SCSI_STATUS_CONDITION_MET, 0, 0, 0, 0},
        {SCSI_STATUS_RESERVATION_CONFLICT, 0, 0, 0, -EBADE},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_UNIT_ATTENTION, 0x2a, 0x05, -EAGAIN},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_UNIT_ATTENTION, 0x29, 0x00, -EAGAIN},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_NOT_READY, 0x04, 0x01, -EAGAIN},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_NOT_READY, 0x3a, 0x00, -ENOMEDIUM},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x20, 0x00, -EOPNOTSUPP},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0x00, -EINVAL},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x26, 0x00, -EINVAL},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x1a, 0x00, -EINVAL},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0x00, -ERANGE},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x25, 0x00, -ENXIO},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_ILLEGAL_REQUEST, 0x55, 0x00, -EOPNOTSUPP},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_MEDIUM_ERROR, 0x11, 0x00, -EIO},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_HARDWARE_ERROR, 0x44, 0x00, -EIO},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_RECOVERED_ERROR, 0x00, 0x00, 0},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_DATA_PROTECTION, 0x27, 0x00, -EROFS},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_DATA_PROTECTION, 0x20, 0x02, -EACCES},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_COMMAND_ABORTED, 0x47, 0x00, -ECANCELED},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_MISCOMPARE, 0x1d, 0x00, -EILSEQ},
        {SCSI_STATUS_CHECK_CONDITION, SCSI_SENSE_NO_SENSE, 0x00, 0x00, -EIO},
        {SCSI_STATUS_BUSY, 0, 0, 0, -EBUSY},
        {SCSI_STATUS_TASK_SET_FULL, 0, 0, 0, -EBUSY},
        {SCSI_STATUS_TASK_ABORTED, 0, 0, 0, -ECANCELED},
        {SCSI_STATUS_TIMEOUT, 0, 0, 0, -ETIMEDOUT},
        {SCSI_STATUS_CANCELLED, 0, 0, 0, -ECANCELED},
        {SCSI_STATUS_ERROR, 0, 0, 0, -ECONNRESET},
        {0x7e, 0, 0, 0, -EIO},
};

START_TEST(status_to_errno)
{
	ck_assert_int_eq(scsi_pr_status_to_errno(STATUS_TABLE[_i].status, STATUS_TABLE[_i].key,
	                                         STATUS_TABLE[_i].asc, STATUS_TABLE[_i].ascq),
	                 STATUS_TABLE[_i].want);
}
END_TEST

START_TEST(io_verdict)
{
	ck_assert_int_eq(scsi_resv_io_verdict(0, 0, 0, 0, 0), 0);
	ck_assert_int_eq(scsi_resv_io_verdict(-EBADE, SCSI_STATUS_RESERVATION_CONFLICT, 0, 0, 0),
	                 -EBADE);
	/* REGISTRATIONS PREEMPTED: someone removed our key */
	ck_assert_int_eq(scsi_resv_io_verdict(-EAGAIN, SCSI_STATUS_CHECK_CONDITION,
	                                      SCSI_SENSE_UNIT_ATTENTION, 0x2a, 0x05),
	                 -EBADE);
	/* tgt sends RESERVATIONS PREEMPTED to the preempted nexus */
	ck_assert_int_eq(scsi_resv_io_verdict(-EAGAIN, SCSI_STATUS_CHECK_CONDITION,
	                                      SCSI_SENSE_UNIT_ATTENTION, 0x2a, 0x03),
	                 -EBADE);
	/* other unit attentions: retry */
	ck_assert_int_eq(scsi_resv_io_verdict(-EAGAIN, SCSI_STATUS_CHECK_CONDITION,
	                                      SCSI_SENSE_UNIT_ATTENTION, 0x29, 0x00),
	                 -EAGAIN);
	ck_assert_int_eq(scsi_resv_io_verdict(-EBUSY, SCSI_STATUS_BUSY, 0, 0, 0), -EAGAIN);
	ck_assert_int_eq(scsi_resv_io_verdict(-EIO, SCSI_STATUS_CHECK_CONDITION,
	                                      SCSI_SENSE_MEDIUM_ERROR, 0x11, 0),
	                 -EIO);
	ck_assert_int_eq(scsi_resv_io_verdict(-ETIMEDOUT, 0, 0, 0, 0), -ETIMEDOUT);
}
END_TEST

/* ------------------------------------------------------------ PR IN parsers */

START_TEST(parse_keys)
{
	static const uint8_t d[] = {0, 0, 0, 7, 0, 0, 0, 16, 0x6b, 0x66, 1, 2,
	                            3, 4, 5, 6, 1, 2, 3, 4,  5,    6,    7, 8};
	struct scsi_pr_keys k;

	ck_assert_int_eq(scsi_pr_parse_read_keys(d, sizeof(d), &k), 0);
	ck_assert_uint_eq(k.generation, 7);
	ck_assert_uint_eq(k.n, 2);
	ck_assert_uint_eq(k.total, 2);
	ck_assert_uint_eq(k.keys[0], UINT64_C(0x6b66010203040506));
	ck_assert_uint_eq(k.keys[1], UINT64_C(0x0102030405060708));
	/* truncated answer: total says 2, one came */
	ck_assert_int_eq(scsi_pr_parse_read_keys(d, 16, &k), 0);
	ck_assert_uint_eq(k.n, 1);
	ck_assert_uint_eq(k.total, 2);
	ck_assert_int_eq(scsi_pr_parse_read_keys(d, 7, &k), -EBADMSG);
}
END_TEST

START_TEST(parse_reservation)
{
	uint8_t d[24] = {0, 0, 0, 3, 0, 0, 0, 16, 0x6b, 0x66, 1, 2, 3, 4, 5, 6};
	struct scsi_pr_reservation r;

	d[21] = 0x05;
	ck_assert_int_eq(scsi_pr_parse_read_reservation(d, sizeof(d), &r), 0);
	ck_assert(r.held);
	ck_assert_uint_eq(r.key, UINT64_C(0x6b66010203040506));
	ck_assert_int_eq(r.type, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY);
	ck_assert_uint_eq(r.generation, 3);
	d[7] = 0;
	ck_assert_int_eq(scsi_pr_parse_read_reservation(d, 8, &r), 0);
	ck_assert(!r.held);
	d[7] = 16;
	ck_assert_int_eq(scsi_pr_parse_read_reservation(d, 20, &r), -EBADMSG);
}
END_TEST

START_TEST(parse_full_status)
{
	static const char name[] = "iqn.2026-11.io.kubefence:node-a,i,0x23d000000001";
	uint8_t d[8 + 24 + 4 + 52 + 24 + 8];
	struct scsi_pr_full_status *f = calloc(1, sizeof(*f));
	size_t o = 8, tl = 4 + 52; /* name + NUL, padded to a multiple of 4 */

	ck_assert_ptr_nonnull(f);
	memset(d, 0, sizeof(d));
	d[3] = 9;
	d[7] = (uint8_t)(sizeof(d) - 8);
	/* descriptor 1: holder, iSCSI TransportID with ISID */
	d[o] = 0x6b, d[o + 1] = 0x66, d[o + 7] = 1;
	d[o + 12] = 0x01;
	d[o + 13] = 0x05;
	d[o + 19] = 1;
	d[o + 23] = (uint8_t)tl;
	d[o + 24] = 0x45; /* format 01, protocol 5 */
	d[o + 27] = 52;
	memcpy(d + o + 28, name, sizeof(name));
	o += 24 + tl;
	/* descriptor 2: foreign key, a non-iSCSI TransportID */
	d[o + 7] = 0x42;
	d[o + 23] = 8;
	d[o + 24] = 0x00;
	ck_assert_int_eq(scsi_pr_parse_full_status(d, sizeof(d), f), 0);
	ck_assert_uint_eq(f->generation, 9);
	ck_assert_uint_eq(f->n, 2);
	ck_assert_uint_eq(f->regs[0].key, UINT64_C(0x6b66000000000001));
	ck_assert(f->regs[0].holder);
	ck_assert_int_eq(f->regs[0].type, 5);
	ck_assert_int_eq(f->regs[0].rel_tgt_port, 1);
	ck_assert_str_eq(f->regs[0].initiator, name);
	ck_assert_uint_eq(f->regs[1].key, 0x42);
	ck_assert(!f->regs[1].holder);
	ck_assert_str_eq(f->regs[1].initiator, "");
	/* a descriptor claiming more than the list holds */
	d[8 + 23] = 200;
	ck_assert_int_eq(scsi_pr_parse_full_status(d, sizeof(d), f), -EBADMSG);
	free(f);
}
END_TEST

/* ------------------------------------------------------------ LUN pipeline */

struct fake {
	usec_t now;
	usec_t cost[8]; /* how long each LUN's work takes */
	int result[8];  /* what it returns */
	int calls[8];
	usec_t seen_deadline;
};

static usec_t fake_clock(void *ud)
{
	return ((struct fake *)ud)->now;
}

static int fake_lun(void *ud, size_t i, usec_t deadline, char *detail, size_t len)
{
	struct fake *f = ud;

	f->calls[i]++;
	f->seen_deadline = deadline;
	/* the work honours the deadline, as the real one does */
	if (f->now + f->cost[i] > deadline) {
		f->now = deadline;
		snprintf(detail, len, "no answer before the deadline");
		return -ETIMEDOUT;
	}
	f->now += f->cost[i];
	snprintf(detail, len, "lun %zu: %d", i, f->result[i]);
	return f->result[i];
}

static const char *const LUNS[] = {"iscsi://h/iqn.2026-11.x:t/1", "iscsi://h/iqn.2026-11.x:t/2",
                                   "iscsi://h/iqn.2026-11.x:t/3"};

START_TEST(pipeline_all_ok)
{
	struct fake f = {.now = MS(1000), .cost = {MS(10), MS(20), MS(30)}};
	struct fence_scsi_report rep;

	ck_assert_int_eq(
	        fence_scsi_run("fence", LUNS, 3, MS(5000), fake_lun, &f, fake_clock, &f, &rep), 0);
	ck_assert_int_eq(rep.result, 0);
	ck_assert_int_eq(rep.failed, -1);
	ck_assert_uint_eq(rep.n, 3);
	ck_assert_int_eq(rep.duration, MS(60));
	ck_assert_int_eq(rep.steps[0].duration, MS(10));
	ck_assert_int_eq(rep.steps[1].duration, MS(20));
	ck_assert_int_eq(rep.steps[2].duration, MS(30));
	ck_assert_str_eq(rep.steps[1].method, "scsi-pr");
	ck_assert_str_eq(rep.steps[1].action, "fence");
	ck_assert_str_eq(rep.steps[1].target, LUNS[1]);
	ck_assert_int_eq(f.seen_deadline, MS(5000));
}
END_TEST

START_TEST(pipeline_one_lun_fails)
{
	struct fake f = {.now = 0, .cost = {MS(10), MS(20), MS(30)}, .result = {0, -EBADE, 0}};
	struct fence_scsi_report rep;

	/* overall failure names the failing LUN; the others still run and report */
	ck_assert_int_eq(
	        fence_scsi_run("fence", LUNS, 3, MS(5000), fake_lun, &f, fake_clock, &f, &rep),
	        -EBADE);
	ck_assert_int_eq(rep.failed, 1);
	ck_assert_str_eq(rep.steps[rep.failed].target, LUNS[1]);
	ck_assert_int_eq(rep.steps[0].result, 0);
	ck_assert_int_eq(rep.steps[1].result, -EBADE);
	ck_assert_int_eq(rep.steps[2].result, 0);
	ck_assert_int_eq(f.calls[2], 1);
	ck_assert_uint_eq(rep.n, 3);
}
END_TEST

START_TEST(pipeline_deadline)
{
	struct fake f = {.now = MS(100), .cost = {MS(10), MS(900), MS(10)}};
	struct fence_scsi_report rep;

	/* LUN 2 eats the deadline; LUN 3 is not tried */
	ck_assert_int_eq(
	        fence_scsi_run("join", LUNS, 3, MS(600), fake_lun, &f, fake_clock, &f, &rep),
	        -ETIMEDOUT);
	ck_assert_int_eq(rep.failed, 1);
	ck_assert_int_eq(rep.steps[1].duration, MS(490));
	ck_assert_int_eq(rep.steps[2].result, -ETIMEDOUT);
	ck_assert_int_eq(f.calls[2], 0);
	ck_assert_ptr_nonnull(strstr(rep.steps[2].detail, "not tried"));
	ck_assert_int_eq(rep.duration, MS(500));
}
END_TEST

START_TEST(pipeline_bad_count)
{
	struct fake f = {0};
	struct fence_scsi_report rep;

	ck_assert_int_eq(
	        fence_scsi_run("fence", LUNS, 0, MS(1), fake_lun, &f, fake_clock, &f, &rep),
	        -EINVAL);
	ck_assert_int_eq(fence_scsi_run("fence", LUNS, FENCE_SCSI_LUNS_MAX + 1, MS(1), fake_lun, &f,
	                                fake_clock, &f, &rep),
	                 -EINVAL);
}
END_TEST

START_TEST(method_rejects_bad_names)
{
	struct fence_scsi_report rep;

	ck_assert_int_eq(fence_scsi_fence("node-a", "", LUNS, 1, NULL, MS(1), &rep), -EINVAL);
	ck_assert_int_eq(fence_scsi_join("bad name", LUNS, 1, NULL, MS(1), &rep), -EINVAL);
	ck_assert_int_eq(rep.failed, -1);
}
END_TEST

static Suite *scsi_pr_suite(void)
{
	Suite *s = suite_create("scsi_pr");
	TCase *tc;

	tc = tcase_create("keys");
	tcase_add_test(tc, key_known_vectors);
	tcase_add_test(tc, key_unique_and_stable);
	tcase_add_test(tc, key_back_to_node);
	tcase_add_test(tc, iqn_for_node);
	suite_add_tcase(s, tc);

	tc = tcase_create("url");
	tcase_add_test(tc, url_good);
	tcase_add_loop_test(tc, url_bad, 0, (int)(sizeof(BAD_URLS) / sizeof(BAD_URLS[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("errno");
	tcase_add_loop_test(tc, status_to_errno, 0,
	                    (int)(sizeof(STATUS_TABLE) / sizeof(STATUS_TABLE[0])));
	tcase_add_test(tc, io_verdict);
	suite_add_tcase(s, tc);

	tc = tcase_create("prin");
	tcase_add_test(tc, parse_keys);
	tcase_add_test(tc, parse_reservation);
	tcase_add_test(tc, parse_full_status);
	suite_add_tcase(s, tc);

	tc = tcase_create("pipeline");
	tcase_add_test(tc, pipeline_all_ok);
	tcase_add_test(tc, pipeline_one_lun_fails);
	tcase_add_test(tc, pipeline_deadline);
	tcase_add_test(tc, pipeline_bad_count);
	tcase_add_test(tc, method_rejects_bad_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(scsi_pr_suite(), NULL);
}
