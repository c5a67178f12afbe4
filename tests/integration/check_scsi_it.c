/* Integration tests of scsi/scsi_pr.c, fencing/fence_scsi.c and
 * `kubefencectl scsi` against a real iSCSI target: tgtd on 127.0.0.1 with
 * file-backed LUNs, started and stopped by tests/integration/iscsi.test
 * (tests/harness/tgtd.sh).  Node A and node B are two initiators, each with
 * its own libiscsi session; every test starts from a LUN whose
 * registrations and reservation have been CLEARed.
 *
 * Environment: KF_TGT_LUN_URLS (at least 2 LUNs), KF_TGT_DIR, KF_TGT_HARNESS,
 * KF_IT_CTL (kubefencectl), KF_IT_SILENT (silent_target). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "fencing/fence_scsi.h"
#include "lib/failpoint.h"
#include "lib/util.h"
#include "scsi/scsi_pr.h"
#include "scsi/scsi_resv.h"
#include "tests/lib/kft_lun.h"
#include "tests/lib/kftest.h"

#define MS(x)      ((usec_t)(x)*USEC_PER_MSEC)
#define DEADLINE() (clock_mono_usec() + MS(5000))

static char lun1[SCSI_PR_URL_MAX], lun2[SCSI_PR_URL_MAX], lun_missing[SCSI_PR_URL_MAX];
static uint64_t key_a, key_b;

/* Whatever a failed case left (a failed case runs no teardown): never a
 * frozen filesystem for the next. */
static void thaw(void)
{
	char cmd[600];
	const char *m = getenv("KF_TGT_LUN_MNT");

	if (m) {
		snprintf(cmd, sizeof(cmd), "fsfreeze -u '%s' 2>/dev/null", m);
		(void)!system(cmd);
	}
}

static void setup(void)
{
	const char *slash;

	thaw();
	kft_lun_urls("iscsi.test", lun1, lun2);
	slash = strrchr(lun1, '/');
	snprintf(lun_missing, sizeof(lun_missing), "%.*s/77", (int)(slash - lun1), lun1);
	ck_assert_int_eq(scsi_pr_key_for_node("node-a", &key_a), 0);
	ck_assert_int_eq(scsi_pr_key_for_node("node-b", &key_b), 0);
}

static int write_block(struct scsi_pr *h, uint64_t lba, char fill);

/* A write of a fenced node after the fence's LOGICAL UNIT RESET: the
 * reset's UNIT ATTENTION (29/xx) may come first; past it, the answer. */
static int write_past_reset(struct scsi_pr *h, uint64_t lba, char fill)
{
	int r, st, key, asc, ascq;

	for (int i = 0;; i++) {
		r = write_block(h, lba, fill);
		scsi_pr_last_sense(h, &st, &key, &asc, &ascq);
		if (r != -EAGAIN || asc != 0x29 || i >= 3)
			return r;
	}
}

static int write_block(struct scsi_pr *h, uint64_t lba, char fill)
{
	char buf[4096], err[512];
	size_t bs = scsi_pr_block_size(h);
	int r;

	ck_assert_uint_le(bs, sizeof(buf));
	memset(buf, fill, bs);
	r = scsi_pr_write(h, lba, buf, bs, DEADLINE(), err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "write: %s\n", err);
	return r;
}

static void last_sense(struct scsi_pr *h, int *st, int *key, int *asc, int *ascq)
{
	scsi_pr_last_sense(h, st, key, asc, ascq);
}

static bool only_key(const char *url, uint64_t key, size_t *ret_n)
{
	struct scsi_pr *h = kft_lun_open_as(url, "observer");
	struct scsi_pr_keys keys;
	char err[512];
	bool ok = true;

	ck_assert_msg(scsi_pr_read_keys(h, DEADLINE(), &keys, err, sizeof(err)) == 0, "%s", err);
	for (size_t i = 0; i < keys.n; i++)
		if (keys.keys[i] != key)
			ok = false;
	*ret_n = keys.n;
	scsi_pr_close(h);
	return ok && keys.n > 0;
}

static struct scsi_pr_reservation reservation(const char *url)
{
	struct scsi_pr *h = kft_lun_open_as(url, "observer");
	struct scsi_pr_reservation res;
	char err[512];

	ck_assert_msg(scsi_pr_read_reservation(h, DEADLINE(), &res, err, sizeof(err)) == 0, "%s",
	              err);
	scsi_pr_close(h);
	return res;
}

static void print_report(const char *what, const struct fence_scsi_report *rep)
{
	for (size_t i = 0; i < rep->n; i++)
		printf("  %s %s %s: %d in %.2f ms: %s\n", what, rep->steps[i].action,
		       rep->steps[i].target, rep->steps[i].result,
		       (double)rep->steps[i].duration / USEC_PER_MSEC, rep->steps[i].detail);
}

/* ------------------------------------------------------------ scenarios */

START_TEST(fence_then_victim_writes_fail)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct scsi_pr *ha, *hb;
	int st, key, asc, ascq, r;
	char detail[384], buf[4096], err[512];
	usec_t t0;
	size_t n;

	kft_lun_clear(lun1);
	ha = kft_lun_open_as(lun1, "node-a");
	t0 = clock_mono_usec();
	ck_assert_msg(scsi_resv_join(ha, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	printf("measured: scsi-pr join (open session, 1 LUN): %.2f ms (%s)\n",
	       (double)(clock_mono_usec() - t0) / USEC_PER_MSEC, detail);
	ck_assert_int_eq(write_block(ha, 0, 'A'), 0);

	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep), 0);
	print_report("fence", &rep);
	printf("measured: scsi-pr fence 1 LUN: %.2f ms (LUN step %.2f ms)\n",
	       (double)rep.duration / USEC_PER_MSEC, (double)rep.steps[0].duration / USEC_PER_MSEC);
	ck_assert_int_eq(rep.steps[0].result, 0);
	ck_assert_str_eq(rep.steps[0].method, "scsi-pr");

	/* A's next writes: first UNIT ATTENTION, then RESERVATION CONFLICT */
	r = write_block(ha, 1, 'A');
	last_sense(ha, &st, &key, &asc, &ascq);
	printf("  A after fence: %d, status 0x%x sense %d %02x/%02x\n", r, st, key, asc, ascq);
	ck_assert_int_eq(r, -EAGAIN);
	ck_assert_int_eq(st, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(key, SCSI_SENSE_UNIT_ATTENTION);
	/* tgt 1.0.85 says 2A/03 RESERVATIONS PREEMPTED (SPC-4 would say 2A/05;
	 * the own-I/O check takes either, see check_scsi_pr): exactly that */
	ck_assert_int_eq(asc, 0x2a);
	ck_assert_int_eq(ascq, 0x03);
	ck_assert_int_eq(scsi_resv_io_verdict(r, st, key, asc, ascq), -EBADE);
	r = write_past_reset(ha, 1, 'A');
	last_sense(ha, &st, &key, &asc, &ascq);
	ck_assert_int_eq(r, -EBADE);
	ck_assert_int_eq(st, SCSI_STATUS_RESERVATION_CONFLICT);
	ck_assert_int_eq(scsi_resv_io_verdict(r, st, key, asc, ascq), -EBADE);
	ck_assert_int_eq(write_block(ha, 1, 'A'), -EBADE);
	/* WRITE EXCLUSIVE: reading stays allowed for the fenced node */
	ck_assert_msg(
	        scsi_pr_read(ha, 0, buf, scsi_pr_block_size(ha), DEADLINE(), err, sizeof(err)) == 0,
	        "%s", err);
	ck_assert_int_eq(buf[0], 'A');

	ck_assert(only_key(lun1, key_b, &n));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(reservation(lun1).key, key_b);

	/* B writes through its own session, once registered on it */
	hb = kft_lun_open_as(lun1, "node-b");
	ck_assert_int_eq(write_block(hb, 2, 'B'), -EBADE);
	ck_assert_msg(scsi_resv_join(hb, key_b, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(write_block(hb, 2, 'B'), 0);
	ck_assert_int_eq(scsi_pr_sync_cache(hb, DEADLINE(), err, sizeof(err)), 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(
	        scsi_pr_read(hb, 2, buf, scsi_pr_block_size(hb), DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(buf[0], 'B');
	ck_assert_int_eq(buf[scsi_pr_block_size(hb) - 1], 'B');
	ck_assert(only_key(lun1, key_b, &n));
	scsi_pr_close(ha);
	scsi_pr_close(hb);
}
END_TEST

/* tgt refuses PREEMPT AND ABORT: after its plain PREEMPT the fence sends a
 * LOGICAL UNIT RESET and says so.  Where the target does not support that
 * either (a fault point makes it refuse), the fence waits `inflight` for
 * what the target may have queued from the victim, and says that. */
START_TEST(plain_preempt_then_lun_reset_or_wait)
{
	const char *luns[] = {lun1};
	struct fence_scsi_options o = {.inflight = 300 * USEC_PER_MSEC};
	struct fence_scsi_report rep;
	struct scsi_pr *ha;
	char detail[384];
	usec_t t0;

	kft_lun_clear(lun1);
	ha = kft_lun_open_as(lun1, "node-a");
	ck_assert_msg(scsi_resv_join(ha, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, &o, DEADLINE(), &rep), 0);
	print_report("fence", &rep);
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail,
	                             "PREEMPT (no PREEMPT AND ABORT); LOGICAL UNIT RESET: every "
	                             "queued command finished or aborted"));
	/* again, with the reset refused */
	ck_assert_msg(scsi_resv_join(ha, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(failpoint_set("scsi.lun_reset.before=error(95)", NULL, 0), 0);
	t0 = clock_mono_usec();
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, &o, DEADLINE(), &rep), 0);
	(void)failpoint_set(NULL, NULL, 0);
	print_report("fence", &rep);
	ck_assert_int_ge(clock_mono_usec() - t0, o.inflight);
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail,
	                             "LOGICAL UNIT RESET not supported: waited for the victim's "
	                             "queued commands"));
	{
		size_t n;

		ck_assert(only_key(lun1, key_b, &n));
	}
	scsi_pr_close(ha);
}
END_TEST

struct victim_write {
	struct scsi_pr *h;
	int r;
};

static void *victim_write_thread(void *arg)
{
	struct victim_write *v = arg;
	char buf[4096], err[512];

	memset(buf, 'A', scsi_pr_block_size(v->h));
	v->r = scsi_pr_write(v->h, 8, buf, scsi_pr_block_size(v->h),
	                     clock_mono_usec() + 30 * USEC_PER_SEC, err, sizeof(err));
	return NULL;
}

static void freeze(bool on)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "fsfreeze %s '%s'", on ? "-f" : "-u",
	         kft_env("KF_TGT_LUN_MNT", "iscsi.test"));
	ck_assert_int_eq(system(cmd), 0);
}

/* A WRITE the target accepted from the victim before the PREEMPT is still
 * running in its backing store (the filesystem under the LUN's file is
 * frozen).  tgt has no PREEMPT AND ABORT, so the fence sends a LOGICAL UNIT
 * RESET, which the target answers only once that WRITE is done: no fence is
 * confirmed while it may still land on what the new master writes.  Once
 * it has completed, the fence is confirmed, and node-b's write of the same
 * block is the one that stays. */
START_TEST(fence_waits_for_a_write_in_flight)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct victim_write v = {0};
	struct scsi_pr *hb;
	pthread_t t;
	char detail[384], buf[4096], err[512];

	kft_lun_clear(lun1);
	v.h = kft_lun_open_as(lun1, "node-a");
	ck_assert_msg(scsi_resv_join(v.h, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	freeze(true);
	ck_assert_int_eq(pthread_create(&t, NULL, victim_write_thread, &v), 0);
	usleep(300 * 1000); /* the WRITE is in the target's backing store */
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, NULL,
	                                  clock_mono_usec() + 2 * USEC_PER_SEC, &rep),
	                 -ETIMEDOUT);
	print_report("fence (write in flight)", &rep);
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail, "LOGICAL UNIT RESET: no answer"));
	freeze(false);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	printf("  the victim's WRITE: %d\n", v.r);
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep), 0);
	print_report("fence", &rep);
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail, "LOGICAL UNIT RESET: every queued"));
	hb = kft_lun_open_as(lun1, "node-b");
	ck_assert_msg(scsi_resv_join(hb, key_b, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(write_block(hb, 8, 'B'), 0);
	usleep(200 * 1000);
	ck_assert_int_eq(
	        scsi_pr_read(hb, 8, buf, scsi_pr_block_size(hb), DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(buf[0], 'B');
	scsi_pr_close(hb);
	scsi_pr_close(v.h);
}
END_TEST

static void run_harness(const char *cmd)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execlp("bash", "bash", kft_env("KF_TGT_HARNESS", "iscsi.test"), cmd,
		       kft_env("KF_TGT_DIR", "iscsi.test"), (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tgtd.sh %s failed", cmd);
}

START_TEST(fence_after_target_restart)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct scsi_pr *ha;
	struct scsi_pr_reservation res;
	char detail[384], err[512];
	int r, tries;
	size_t n;

	kft_lun_clear(lun1);
	ha = kft_lun_open_as(lun1, "node-a");
	ck_assert_msg(scsi_resv_join(ha, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(write_block(ha, 3, 'A'), 0);

	/* tgtd restarts: registrations and reservation are gone, data stays */
	run_harness("restart");

	/* B's fence finds nothing registered: it registers itself, takes the
	 * reservation, finds A unregistered, and confirms */
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep), 0);
	print_report("fence-after-restart", &rep);
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail, "our key was missing"));
	ck_assert_ptr_nonnull(strstr(rep.steps[0].detail, "victim was not registered"));
	ck_assert(only_key(lun1, key_b, &n));
	res = reservation(lun1);
	ck_assert(res.held);
	ck_assert_uint_eq(res.key, key_b);
	ck_assert_int_eq(res.type, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY);

	/* A's old session died with tgtd: it learns so on its next write */
	r = write_block(ha, 3, 'A');
	ck_assert_int_eq(r, -ECONNRESET);
	ck_assert_int_eq(write_block(ha, 3, 'A'), -ENOTCONN);
	/* A logs in again but does NOT re-register (as a node that missed the
	 * restart): its writes are refused.  A UNIT ATTENTION (power on/reset)
	 * may come first. */
	ck_assert_msg(scsi_pr_reconnect(ha, DEADLINE(), err, sizeof(err)) == 0, "%s", err);
	for (tries = 0; tries < 3; tries++) {
		r = write_block(ha, 3, 'A');
		if (r != -EAGAIN)
			break;
	}
	ck_assert_int_eq(r, -EBADE);
	/* the data written before the restart survived */
	{
		char buf[4096];
		ck_assert_int_eq(scsi_pr_read(ha, 3, buf, scsi_pr_block_size(ha), DEADLINE(), err,
		                              sizeof(err)),
		                 0);
		ck_assert_int_eq(buf[0], 'A');
	}
	scsi_pr_close(ha);
}
END_TEST

START_TEST(two_luns_all_or_nothing)
{
	const char *both[] = {lun1, lun2};
	const char *one_missing[] = {lun1, lun_missing};
	struct fence_scsi_report rep;
	size_t n;

	kft_lun_clear(lun1);
	kft_lun_clear(lun2);
	ck_assert_int_eq(fence_scsi_join("node-a", both, 2, NULL, DEADLINE(), &rep), 0);
	print_report("join", &rep);
	printf("measured: scsi-pr join 2 LUNs: %.2f ms (%.2f + %.2f)\n",
	       (double)rep.duration / USEC_PER_MSEC, (double)rep.steps[0].duration / USEC_PER_MSEC,
	       (double)rep.steps[1].duration / USEC_PER_MSEC);
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", both, 2, NULL, DEADLINE(), &rep), 0);
	print_report("fence", &rep);
	printf("measured: scsi-pr fence 2 LUNs: %.2f ms (%.2f + %.2f)\n",
	       (double)rep.duration / USEC_PER_MSEC, (double)rep.steps[0].duration / USEC_PER_MSEC,
	       (double)rep.steps[1].duration / USEC_PER_MSEC);
	ck_assert_uint_eq(rep.n, 2);
	ck_assert_int_eq(rep.steps[0].result, 0);
	ck_assert_int_eq(rep.steps[1].result, 0);
	ck_assert(only_key(lun1, key_b, &n));
	ck_assert(only_key(lun2, key_b, &n));

	/* one LUN that does not exist: overall failure naming that LUN */
	kft_lun_clear(lun1);
	ck_assert_int_eq(fence_scsi_join("node-a", both, 1, NULL, DEADLINE(), &rep), 0);
	ck_assert_int_eq(
	        fence_scsi_fence("node-b", "node-a", one_missing, 2, NULL, DEADLINE(), &rep),
	        -ENXIO);
	print_report("fence", &rep);
	ck_assert_int_eq(rep.failed, 1);
	ck_assert_str_eq(rep.steps[rep.failed].target, lun_missing);
	ck_assert_int_eq(rep.steps[0].result, 0);
	ck_assert_int_eq(rep.steps[1].result, -ENXIO);
	ck_assert_ptr_nonnull(strstr(rep.steps[1].detail, "/77"));
}
END_TEST

static pid_t start_silent(int *ret_port)
{
	char dir[] = "/tmp/kf-silent.XXXXXX", pf[64];
	pid_t pid;
	FILE *f = NULL;
	int port = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(pf, sizeof(pf), "%s/port", dir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(kft_env("KF_IT_SILENT", "iscsi.test"), "silent_target", pf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && port == 0; i++) {
		usleep(20000);
		f = fopen(pf, "r");
		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
	}
	ck_assert_int_gt(port, 0);
	unlink(pf);
	rmdir(dir);
	*ret_port = port;
	return pid;
}

static void stop_silent(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

START_TEST(silent_target_deadline)
{
	struct fence_scsi_report rep;
	struct scsi_pr_url u;
	struct scsi_pr *h = NULL;
	char url[SCSI_PR_URL_MAX], err[512];
	const char *luns[] = {url};
	usec_t t0, elapsed, dl = MS(1500);
	int port, r;
	pid_t pid = start_silent(&port);

	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%d/iqn.2026-11.io.kubefence.test:silent/1",
	         port);
	t0 = clock_mono_usec();
	r = fence_scsi_fence("node-b", "node-a", luns, 1, NULL, t0 + dl, &rep);
	elapsed = clock_mono_usec() - t0;
	print_report("fence-silent", &rep);
	printf("measured: scsi-pr fence against a silent target: failed after %.1f ms "
	       "(deadline %.0f ms)\n",
	       (double)elapsed / USEC_PER_MSEC, (double)dl / USEC_PER_MSEC);
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_int_eq(rep.failed, 0);
	ck_assert_int_ge(elapsed, dl - MS(50));
	ck_assert_int_lt(elapsed, dl + MS(500));

	/* a plain open fails the same way */
	ck_assert_int_eq(scsi_pr_url_parse(url, &u, err, sizeof(err)), 0);
	t0 = clock_mono_usec();
	r = scsi_pr_open(&u, "iqn.2026-11.io.kubefence:node-b", NULL, t0 + MS(300), &h, err,
	                 sizeof(err));
	elapsed = clock_mono_usec() - t0;
	ck_assert_int_eq(r, -ETIMEDOUT);
	ck_assert_int_lt(elapsed, MS(800));
	ck_assert_ptr_null(h);
	stop_silent(pid);

	/* nothing listens there any more: refused, at once */
	t0 = clock_mono_usec();
	r = scsi_pr_open(&u, "iqn.2026-11.io.kubefence:node-b", NULL, t0 + MS(2000), &h, err,
	                 sizeof(err));
	ck_assert_msg(r == -ECONNREFUSED, "got %d: %s", r, err);
	ck_assert_int_lt(clock_mono_usec() - t0, MS(1000));
}
END_TEST

START_TEST(second_process_of_same_node)
{
	struct scsi_pr *h1, *h2;
	char detail[384], err[512];
	struct scsi_pr_keys keys;
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;

	kft_lun_clear(lun1);
	h1 = kft_lun_open_as(lun1, "node-a");
	h2 = kft_lun_open_as(lun1, "node-a"); /* same IQN, its own ISID: another I_T nexus */
	ck_assert_msg(scsi_resv_join(h1, key_a, DEADLINE(), detail, sizeof(detail)) == 0, "%s",
	              detail);
	ck_assert_int_eq(write_block(h1, 4, '1'), 0);
	ck_assert_int_eq(write_block(h2, 4, '2'), -EBADE);
	ck_assert_int_eq(scsi_pr_register_ignore(h2, key_a, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(write_block(h2, 4, '2'), 0);
	ck_assert_int_eq(scsi_pr_read_keys(h2, DEADLINE(), &keys, err, sizeof(err)), 0);
	ck_assert_uint_eq(keys.n, 2);
	ck_assert_uint_eq(keys.keys[0], key_a);
	ck_assert_uint_eq(keys.keys[1], key_a);

	/* one PREEMPT removes the key from every nexus of node A */
	ck_assert_int_eq(fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep), 0);
	ck_assert_int_eq(write_block(h1, 4, '1'), -EAGAIN);
	ck_assert_int_eq(write_past_reset(h1, 4, '1'), -EBADE);
	ck_assert_int_eq(write_block(h2, 4, '2'), -EAGAIN);
	ck_assert_int_eq(write_past_reset(h2, 4, '2'), -EBADE);
	scsi_pr_close(h1);
	scsi_pr_close(h2);
}
END_TEST

/* Whether exactly nodes a and b are registered on the LUN. */
static bool keys_are_a_and_b(const char *url)
{
	struct scsi_pr *h = kft_lun_open_as(url, "observer");
	struct scsi_pr_keys keys;
	char err[512];
	bool a = false, b = false;

	ck_assert_msg(scsi_pr_read_keys(h, DEADLINE(), &keys, err, sizeof(err)) == 0, "%s", err);
	scsi_pr_close(h);
	for (size_t i = 0; i < keys.n; i++) {
		a |= keys.keys[i] == key_a;
		b |= keys.keys[i] == key_b;
	}
	return keys.n == 2 && a && b;
}

/* What the target (tgt 1.0.85, Debian 12's, started by tests/harness/tgtd.sh)
 * does with the commands the method depends on, asserted exactly.
 *
 * The method needs REGISTER AND IGNORE EXISTING KEY, RESERVE, PREEMPT,
 * READ KEYS and READ RESERVATION.  It uses READ FULL STATUS and PREEMPT
 * AND ABORT where they work, and needs neither: keys map to nodes by
 * candidate names, and a PREEMPT AND ABORT refused with ILLEGAL REQUEST
 * falls back to PREEMPT, which is only right when the refused command
 * changed nothing.  tgt 1.0.85 refuses both with ILLEGAL REQUEST, INVALID
 * FIELD IN CDB (24/00), which scsi_pr maps to -EINVAL.  A target that
 * answers otherwise fails here: update fencing/SCSI-PR.md's table and this
 * test together. */
START_TEST(target_capabilities)
{
	struct scsi_pr *ha, *hb;
	struct scsi_pr_full_status *fs = calloc(1, sizeof(*fs));
	struct scsi_pr_reservation res;
	int st, key, asc, ascq, r;
	char err[512];
	size_t n;

	ck_assert_ptr_nonnull(fs);
	kft_lun_clear(lun1);
	ha = kft_lun_open_as(lun1, "node-a");
	hb = kft_lun_open_as(lun1, "node-b");
	ck_assert_int_eq(scsi_pr_register_ignore(ha, key_a, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_register_ignore(hb, key_b, DEADLINE(), err, sizeof(err)), 0);

	r = scsi_pr_read_full_status(ha, DEADLINE(), fs, err, sizeof(err));
	last_sense(ha, &st, &key, &asc, &ascq);
	printf("  tgt READ FULL STATUS: %d %s\n", r, r < 0 ? err : "");
	ck_assert_msg(r == -EINVAL, "READ FULL STATUS: %d (%s); tgt 1.0.85 refuses it (-EINVAL)", r,
	              r < 0 ? err : "answered");
	ck_assert_int_eq(st, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(key, SCSI_SENSE_ILLEGAL_REQUEST);
	ck_assert_int_eq(asc, 0x24);
	ck_assert_int_eq(ascq, 0x00);

	ck_assert_int_eq(scsi_pr_reserve(ha, key_a, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, DEADLINE(),
	                                 err, sizeof(err)),
	                 0);
	r = scsi_pr_preempt(hb, key_b, key_a, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, true, DEADLINE(),
	                    err, sizeof(err));
	last_sense(hb, &st, &key, &asc, &ascq);
	printf("  tgt PREEMPT AND ABORT: %d %s\n", r, r < 0 ? err : "");
	ck_assert_msg(r == -EINVAL, "PREEMPT AND ABORT: %d (%s); tgt 1.0.85 refuses it (-EINVAL)",
	              r, r < 0 ? err : "done");
	ck_assert_int_eq(st, SCSI_STATUS_CHECK_CONDITION);
	ck_assert_int_eq(key, SCSI_SENSE_ILLEGAL_REQUEST);
	ck_assert_int_eq(asc, 0x24);
	ck_assert_int_eq(ascq, 0x00);
	/* the refusal changed nothing: A still registered and holding WE-RO */
	ck_assert(keys_are_a_and_b(lun1));
	res = reservation(lun1);
	ck_assert(res.held);
	ck_assert_int_eq(res.type, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY);
	ck_assert_uint_eq(res.key, key_a);
	/* so the fallback the method takes: PREEMPT removes A, B holds WE-RO */
	r = scsi_pr_preempt(hb, key_b, key_a, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, false, DEADLINE(),
	                    err, sizeof(err));
	ck_assert_msg(r == 0, "PREEMPT: %d %s", r, err);
	ck_assert(only_key(lun1, key_b, &n));
	ck_assert_uint_eq(n, 1);
	res = reservation(lun1);
	ck_assert(res.held);
	ck_assert_int_eq(res.type, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY);
	ck_assert_uint_eq(res.key, key_b);

	/* all-registrants reservation: PREEMPT of one registrant's key */
	kft_lun_clear(lun1);
	ck_assert_int_eq(scsi_pr_register_ignore(ha, key_a, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_register_ignore(hb, key_b, DEADLINE(), err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_reserve(ha, key_a, SCSI_PR_TYPE_WE_ALL_REGISTRANTS, DEADLINE(),
	                                 err, sizeof(err)),
	                 0);
	r = scsi_pr_preempt(hb, key_b, key_a, SCSI_PR_TYPE_WE_REGISTRANTS_ONLY, false, DEADLINE(),
	                    err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	res = reservation(lun1);
	printf("  tgt PREEMPT under WE-AR: reservation held %d type %d key 0x%016llx; "
	       "only B registered: %d\n",
	       res.held, res.type, (unsigned long long)res.key, only_key(lun1, key_b, &n));
	ck_assert(only_key(lun1, key_b, &n));
	ck_assert(res.held);
	scsi_pr_close(ha);
	scsi_pr_close(hb);
	free(fs);
}
END_TEST

/* ------------------------------------------------------------ the CLI */

static int run_ctl(char *out, size_t outlen, const char *const *args)
{
	const char *argv[32];
	int p[2], status;
	size_t n = 0, k = 0;
	ssize_t got;
	pid_t pid;

	argv[k++] = kft_env("KF_IT_CTL", "iscsi.test");
	argv[k++] = "scsi";
	for (; *args && k < ELEMENTSOF(argv) - 1; args++)
		argv[k++] = *args;
	argv[k] = NULL;
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	while (n + 1 < outlen && (got = read(p[0], out + n, outlen - 1 - n)) > 0)
		n += (size_t)got;
	out[n] = 0;
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	printf("  $ kubefencectl scsi %s ... -> %d\n%s", argv[2], WEXITSTATUS(status), out);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

START_TEST(ctl_end_to_end)
{
	char out[16384], silent[SCSI_PR_URL_MAX];
	int port;
	pid_t pid;

	kft_lun_clear(lun1);
	kft_lun_clear(lun2);
	{
		const char *a[] = {"join", "--lun", lun1, "--lun", lun2, "--node", "node-a", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 0);
		ck_assert_ptr_nonnull(strstr(out, "join of 'node-a': CONFIRMED on 2/2 LUN(s)"));
	}
	{
		const char *a[] = {"keys", "--lun", lun1, "--nodes", "node-b,node-a", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 0);
		ck_assert_ptr_nonnull(strstr(out, "key 0x6b6666570ff05a20  node 'node-a'"));
		ck_assert_ptr_nonnull(strstr(out, "reservation WE-RO"));
	}
	{
		const char *a[] = {"fence",  "--lun",    lun1,     "--lun",        lun2,   "--node",
		                   "node-b", "--victim", "node-a", "--timeout-ms", "5000", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 0);
		ck_assert_ptr_nonnull(strstr(out, "scsi-pr fence iscsi://"));
		ck_assert_ptr_nonnull(strstr(out, "fence of 'node-a': CONFIRMED on 2/2 LUN(s)"));
	}
	{
		const char *a[] = {"keys", "--lun", lun2, "--nodes", "node-a,node-b", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 0);
		ck_assert_ptr_nonnull(strstr(out, "node 'node-b'"));
		ck_assert_ptr_null(strstr(out, "node 'node-a'"));
	}
	{ /* a LUN that does not exist: failure naming it */
		const char *a[] = {"fence",  "--lun",  lun1,       "--lun",  lun_missing,
		                   "--node", "node-b", "--victim", "node-a", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 3);
		ck_assert_ptr_nonnull(strstr(out, "FAILED on"));
		ck_assert_ptr_nonnull(strstr(out, lun_missing));
	}
	{ /* bad usage */
		const char *a[] = {"fence",  "--lun",    "iscsi://h/x/1", "--node",
		                   "node-b", "--victim", "node-a",        NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 2);
		ck_assert_ptr_nonnull(strstr(out, "not an iqn."));
		const char *b[] = {"fence", "--lun", lun1, "--node", "node-b", NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), b), 2);
		const char *c[] = {"bogus", "--lun", lun1, NULL};
		ck_assert_int_eq(run_ctl(out, sizeof(out), c), 2);
	}
	/* a silent target: deadline passed */
	pid = start_silent(&port);
	snprintf(silent, sizeof(silent), "iscsi://127.0.0.1:%d/iqn.2026-11.io.kubefence.test:s/1",
	         port);
	{
		const char *a[] = {"fence",    "--lun",  silent,         "--node", "node-b",
		                   "--victim", "node-a", "--timeout-ms", "700",    NULL};
		usec_t t0 = clock_mono_usec();
		ck_assert_int_eq(run_ctl(out, sizeof(out), a), 4);
		ck_assert_int_lt(clock_mono_usec() - t0, MS(700 + 500));
	}
	stop_silent(pid);
}
END_TEST

/* More registrations than READ KEYS reads (tgt keeps every nexus's after
 * logout: CLI sessions, fences, store opens): the victim's key beyond the
 * list must not pass for gone.  Every judgement fails closed instead. */
START_TEST(many_registrations_fail_closed)
{
	const char *luns[] = {lun1};
	struct fence_scsi_report rep;
	struct scsi_pr_keys keys;
	struct scsi_pr *h;
	uint64_t filler;
	char err[512];
	int r;

	kft_lun_clear(lun1);
	/* the fencer's key early in the list, the victim's past its end */
	h = kft_lun_open_as(lun1, "node-b");
	ck_assert_msg(scsi_pr_register_ignore(h, key_b, DEADLINE(), err, sizeof(err)) == 0, "%s",
	              err);
	scsi_pr_close(h);
	ck_assert_int_eq(scsi_pr_key_for_node("filler", &filler), 0);
	for (int i = 0; i < SCSI_PR_KEYS_MAX + 8; i++) {
		h = kft_lun_open_as(lun1, "filler");
		ck_assert_msg(scsi_pr_register_ignore(h, filler, DEADLINE(), err, sizeof(err)) == 0,
		              "%s", err);
		scsi_pr_close(h);
	}
	h = kft_lun_open_as(lun1, "node-a");
	ck_assert_msg(scsi_pr_register_ignore(h, key_a, DEADLINE(), err, sizeof(err)) == 0, "%s",
	              err);
	ck_assert_int_eq(scsi_pr_read_keys(h, DEADLINE(), &keys, err, sizeof(err)), -EOVERFLOW);
	printf("  %zu registrations, %zu read: %s\n", keys.total, keys.n, err);
	scsi_pr_close(h);
	r = fence_scsi_fence("node-b", "node-a", luns, 1, NULL, DEADLINE(), &rep);
	print_report("fence", &rep);
	ck_assert_msg(r < 0, "a fence confirmed node-a gone with its key beyond the list read");
	kft_lun_clear(lun1);
}
END_TEST

static Suite *scsi_it_suite(void)
{
	Suite *s = suite_create("scsi_it");
	TCase *tc;

	tc = tcase_create("fence");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fence_then_victim_writes_fail);
	tcase_add_test(tc, plain_preempt_then_lun_reset_or_wait);
	tcase_add_test(tc, fence_waits_for_a_write_in_flight);
	tcase_add_test(tc, second_process_of_same_node);
	tcase_add_test(tc, two_luns_all_or_nothing);
	tcase_add_test(tc, target_capabilities);
	tcase_add_test(tc, fence_after_target_restart);
	tcase_add_test(tc, many_registrations_fail_closed);
	suite_add_tcase(s, tc);

	tc = tcase_create("deadline");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, silent_target_deadline);
	suite_add_tcase(s, tc);

	tc = tcase_create("ctl");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ctl_end_to_end);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(scsi_it_suite(), NULL);
}
