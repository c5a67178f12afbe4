/* Unit tests of lib/failpoint.c: the specification syntax and its errors,
 * counts and chains, every action (a crash in a forked child, a pause
 * released through the control directory by another thread, a delay, an
 * error), re-arming from the control directory's spec file, and the
 * generated reference docs/failpoints.md. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "tests/lib/kftest.h"

#define DOC_PATH TEST_SRCDIR "/../docs/failpoints.md"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/kf-fp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(failpoint_set_dir(NULL), 0);
	ck_assert_int_eq(failpoint_set(NULL, NULL, 0), 0);
}

static void teardown(void)
{
	char cmd[128];

	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

START_TEST(off_by_default)
{
	ck_assert_int_eq(failpoint_active_, 0);
	ck_assert_int_eq(FAILPOINT(LEASE_ACQUIRE_AFTER_SEND), 0);
	/* not even counted: the slow path is never entered */
	ck_assert_uint_eq(failpoint_hits(FP_LEASE_ACQUIRE_AFTER_SEND), 0);
}
END_TEST

START_TEST(names_round_trip)
{
	for (int i = 0; i < FP__COUNT; i++) {
		const char *n = failpoint_name((enum failpoint_id)i);

		ck_assert_ptr_nonnull(n);
		ck_assert_int_eq(failpoint_from_name(n), i);
	}
	ck_assert_int_eq(failpoint_from_name("no.such.point"), -ENOENT);
}
END_TEST

static const struct {
	const char *spec, *why;
} BAD[] = {
        {"no.such.point=crash", "unknown fault point"},
        {"lease.renew.before_send", "expected NAME=ACTION"},
        {"=crash", "expected NAME=ACTION"},
        {"lease.renew.before_send=explode", "unknown action"},
        {"lease.renew.before_send=delay", "needs an argument"},
        {"lease.renew.before_send=delay(x)", "delay takes milliseconds"},
        {"lease.renew.before_send=delay(-1)", "delay takes milliseconds"},
        {"lease.renew.before_send=error(EWHAT)", "errno name"},
        {"lease.renew.before_send=error(0)", "errno name"},
        {"lease.renew.before_send=crash(3)", "takes no argument"},
        {"lease.renew.before_send=0*crash", "count before '*'"},
        {"lease.renew.before_send=x*crash", "count before '*'"},
        {"lease.renew.before_send=pause", "needs a control directory"},
        {"lease.renew.before_send=print;lease.renew.before_send=crash", "given twice"},
        {"lease.renew.before_send=off->off->off->off->off->off->off->off->off", "at most"},
};

START_TEST(bad_specs_are_refused_whole)
{
	char err[256] = "";

	ck_assert_int_eq(failpoint_set("lease.renew.after_send=error(EIO)", err, sizeof(err)), 0);
	ck_assert_int_eq(failpoint_set(BAD[_i].spec, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, BAD[_i].why) != NULL, "'%s': got '%s', want '%s'", BAD[_i].spec,
	              err, BAD[_i].why);
	/* all or nothing: the previous set is still armed */
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_AFTER_SEND), -EIO);
}
END_TEST

START_TEST(counts_and_chains)
{
	char err[256] = "";

	ck_assert_int_eq(failpoint_set(" # a comment line\n"
	                               "lease.renew.before_send=2*off->1*error(ETIMEDOUT)->"
	                               "error(5) ;\n"
	                               "lease.release.before_send=1*error(ESTALE)",
	                               err, sizeof(err)),
	                 0);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_BEFORE_SEND), 0);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_BEFORE_SEND), 0);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_BEFORE_SEND), -ETIMEDOUT);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_BEFORE_SEND), -EIO);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_BEFORE_SEND), -EIO);
	ck_assert_uint_eq(failpoint_hits(FP_LEASE_RENEW_BEFORE_SEND), 5);
	ck_assert_int_eq(FAILPOINT(LEASE_RELEASE_BEFORE_SEND), -ESTALE);
	/* the last term used up: off again */
	ck_assert_int_eq(FAILPOINT(LEASE_RELEASE_BEFORE_SEND), 0);
	/* an unarmed point is a no-op even while others are armed */
	ck_assert_int_eq(FAILPOINT(LEASE_ACQUIRE_BEFORE_SEND), 0);
	/* disarming everything makes the fast path skip the slow one again */
	ck_assert_int_eq(failpoint_set("", err, sizeof(err)), 0);
	ck_assert_int_eq(failpoint_active_, 0);
}
END_TEST

START_TEST(delay_sleeps)
{
	usec_t t0;

	ck_assert_int_eq(failpoint_set("metad.write.before_ok=1*delay(120)", NULL, 0), 0);
	t0 = clock_mono_usec();
	ck_assert_int_eq(FAILPOINT(METAD_WRITE_BEFORE_OK), 0);
	ck_assert_int_ge(clock_mono_usec() - t0, 120 * USEC_PER_MSEC);
	t0 = clock_mono_usec();
	ck_assert_int_eq(FAILPOINT(METAD_WRITE_BEFORE_OK), 0);
	ck_assert_int_lt(clock_mono_usec() - t0, 100 * USEC_PER_MSEC);
}
END_TEST

START_TEST(crash_exits_at_once)
{
	pid_t pid;
	int st;

	ck_assert_int_eq(failpoint_set("metastore.snapshot.before_rename=crash", NULL, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		(void)FAILPOINT(METASTORE_SNAPSHOT_BEFORE_RENAME);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), FAILPOINT_CRASH_STATUS);
}
END_TEST

static pthread_barrier_t crash_barrier;

static void *crash_thread(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&crash_barrier);
	(void)FAILPOINT(METASTORE_SNAPSHOT_BEFORE_RENAME);
	return NULL;
}

/* Threads that reach a crash together: one crash, one line in `fired`
 * (the rest wait for the exit), in each of 20 processes. */
START_TEST(crash_fires_once_per_process)
{
	char cdir[] = "/tmp/kf-fp-crash.XXXXXX", path[64], line[256];
	int lines = 0;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(cdir));
	ck_assert_int_eq(failpoint_set_dir(cdir), 0);
	ck_assert_int_eq(failpoint_set("metastore.snapshot.before_rename=crash", NULL, 0), 0);
	for (int k = 0; k < 20; k++) {
		pid_t pid = fork();
		int st;

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			pthread_t t[16];

			pthread_barrier_init(&crash_barrier, NULL, 16);
			for (int i = 0; i < 16; i++)
				if (pthread_create(&t[i], NULL, crash_thread, NULL) != 0)
					_exit(1);
			for (int i = 0; i < 16; i++)
				pthread_join(t[i], NULL);
			_exit(0);
		}
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st));
		ck_assert_int_eq(WEXITSTATUS(st), FAILPOINT_CRASH_STATUS);
	}
	snprintf(path, sizeof(path), "%s/fired", cdir);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		lines++;
	fclose(f);
	ck_assert_int_eq(lines, 20);
	(void)unlink(path);
	(void)rmdir(cdir);
	(void)failpoint_set(NULL, NULL, 0);
	(void)failpoint_set_dir(NULL);
}
END_TEST

START_TEST(stop_stops_the_process)
{
	pid_t pid;
	int st;

	ck_assert_int_eq(failpoint_set("agent.release.before=stop", NULL, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		(void)FAILPOINT(AGENT_RELEASE_BEFORE);
		_exit(7);
	}
	ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(st));
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 7);
}
END_TEST

static volatile int passed;

static void *hit_thread(void *arg)
{
	(void)arg;
	(void)FAILPOINT(METAD_PROMOTE_BEFORE_CLAIM);
	__atomic_store_n(&passed, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool wait_file(const char *path, bool present, long ms)
{
	for (long i = 0; i < ms; i++) {
		if ((access(path, F_OK) == 0) == present)
			return true;
		usleep(1000);
	}
	return false;
}

START_TEST(pause_until_released)
{
	char marker[128], fired[128], line[256] = "";
	pthread_t th;
	FILE *f;

	ck_assert_int_eq(failpoint_set_dir(dir), 0);
	ck_assert_int_eq(failpoint_set("metad.promote.before_claim=1*pause", NULL, 0), 0);
	snprintf(marker, sizeof(marker), "%s/metad.promote.before_claim.%ld.paused", dir,
	         (long)getpid());
	passed = 0;
	ck_assert_int_eq(pthread_create(&th, NULL, hit_thread, NULL), 0);
	ck_assert_msg(wait_file(marker, true, 5000), "the pause marker never appeared");
	usleep(50000);
	ck_assert_int_eq(__atomic_load_n(&passed, __ATOMIC_ACQUIRE), 0); /* still paused */
	ck_assert_int_eq(unlink(marker), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(passed, 1);
	/* the fired log names the point and the action */
	snprintf(fired, sizeof(fired), "%s/fired", dir);
	f = fopen(fired, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_ptr_nonnull(strstr(line, " metad.promote.before_claim pause"));
	/* one pause only: the next hit passes */
	ck_assert_int_eq(FAILPOINT(METAD_PROMOTE_BEFORE_CLAIM), 0);
}
END_TEST

static void write_spec(const char *text)
{
	char tmp[128], path[128];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/failpoints.tmp", dir);
	snprintf(path, sizeof(path), "%s/failpoints", dir);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(spec_file_rearms_at_run_time)
{
	ck_assert_int_eq(failpoint_set_dir(dir), 0);
	ck_assert_int_eq(failpoint_set("lease.renew.after_send=error(EIO)", NULL, 0), 0);
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_AFTER_SEND), -EIO);
	write_spec("lease.renew.after_send=error(ETIMEDOUT)\n");
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_AFTER_SEND), -ETIMEDOUT);
	/* a bad file keeps what is armed */
	write_spec("lease.renew.after_send=error(NOPE)\n");
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_AFTER_SEND), -ETIMEDOUT);
	write_spec("");
	ck_assert_int_eq(FAILPOINT(LEASE_RENEW_AFTER_SEND), 0);
}
END_TEST

START_TEST(setup_from_environment)
{
	char err[256] = "";

	setenv("KUBEFENCE_FAILPOINTS", "lease.acquire.after_send=1*error(ETIMEDOUT)", 1);
	unsetenv("KUBEFENCE_FAILPOINT_DIR");
	ck_assert_int_eq(failpoint_setup(err, sizeof(err)), 0);
	ck_assert_int_eq(FAILPOINT(LEASE_ACQUIRE_AFTER_SEND), -ETIMEDOUT);
	ck_assert_int_eq(FAILPOINT(LEASE_ACQUIRE_AFTER_SEND), 0);
	setenv("KUBEFENCE_FAILPOINTS", "lease.acquire.after_send=pause", 1);
	ck_assert_int_eq(failpoint_setup(err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "control directory"));
	setenv("KUBEFENCE_FAILPOINT_DIR", dir, 1);
	ck_assert_int_eq(failpoint_setup(err, sizeof(err)), 0);
	unsetenv("KUBEFENCE_FAILPOINTS");
	unsetenv("KUBEFENCE_FAILPOINT_DIR");
}
END_TEST

START_TEST(reference_is_current)
{
	char *gen = NULL, *doc = NULL;
	size_t genlen = 0, cap = 0;
	FILE *mem = open_memstream(&gen, &genlen), *f;

	ck_assert_ptr_nonnull(mem);
	failpoint_print_reference(mem);
	fclose(mem);
	for (int i = 0; i < FP__COUNT; i++) {
		char want[160];

		snprintf(want, sizeof(want), "| `%s` | ", failpoint_name((enum failpoint_id)i));
		ck_assert_msg(strstr(gen, want) != NULL, "%s is not documented", want);
	}
	f = fopen(DOC_PATH, "re");
	ck_assert_msg(f != NULL, "cannot open %s", DOC_PATH);
	ck_assert_int_gt(getdelim(&doc, &cap, '\0', f), 0);
	fclose(f);
	ck_assert_msg(strcmp(gen, doc) == 0,
	              "docs/failpoints.md is stale: regenerate it with 'make failpoint-reference' "
	              "(kubefencectl failpoints)");
	free(gen);
	free(doc);
}
END_TEST

static Suite *failpoint_suite(void)
{
	Suite *s = suite_create("failpoint");
	TCase *tc;

	tc = tcase_create("syntax");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, off_by_default);
	tcase_add_test(tc, names_round_trip);
	tcase_add_loop_test(tc, bad_specs_are_refused_whole, 0,
	                    (int)(sizeof(BAD) / sizeof(BAD[0])));
	tcase_add_test(tc, counts_and_chains);
	tcase_add_test(tc, setup_from_environment);
	suite_add_tcase(s, tc);

	tc = tcase_create("actions");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, delay_sleeps);
	tcase_add_test(tc, crash_exits_at_once);
	tcase_add_test(tc, crash_fires_once_per_process);
	tcase_add_test(tc, stop_stops_the_process);
	tcase_add_test(tc, pause_until_released);
	tcase_add_test(tc, spec_file_rearms_at_run_time);
	suite_add_tcase(s, tc);

	tc = tcase_create("reference");
	tcase_add_test(tc, reference_is_current);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(failpoint_suite(), NULL);
}
