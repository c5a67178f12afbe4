/* check_selffence: unit tests of fencing/selffence with real child
 * processes (one that obeys the stop request, one that ignores it and must
 * be killed within the deadline) and, for the watchdog protocol, a regular
 * file standing in for the device: a real /dev/watchdog cannot be tested
 * here, since starving it would reset the machine running the tests. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fencing/selffence.h"
#include "lib/log.h"
#include "tests/lib/kftest.h"

#define MS USEC_PER_MSEC

/* A child that ignores SIGTERM (the "stop writes" request) or, obedient,
 * dies of it.  The parent waits until the child's disposition is set: the
 * child inherits the test runner's own SIGTERM handler until then. */
static pid_t spawn_child(bool obedient)
{
	int p[2];
	pid_t pid;
	char b;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		signal(SIGTERM, obedient ? SIG_DFL : SIG_IGN);
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &b, 1), 1);
	close(p[0]);
	return pid;
}

static pid_t spawn_stubborn(void)
{
	return spawn_child(false);
}

static pid_t spawn_obedient(void)
{
	return spawn_child(true);
}

/* The stop-writes callback of the tests: SIGTERM the service, then wait
 * until it exited (it is our child: reap it) or the deadline. */
struct stop_data {
	pid_t pid;
	int status;
	bool reaped;
};

static int stop_by_sigterm(void *data, usec_t deadline)
{
	struct stop_data *d = data;

	if (kill(d->pid, SIGTERM) < 0)
		return -errno;
	while (clock_mono_usec() < deadline) {
		if (waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
			d->reaped = true;
			return 0;
		}
		usleep(5000);
	}
	return -ETIMEDOUT;
}

static int stop_hangs(void *data, usec_t deadline)
{
	(void)data;
	(void)deadline;
	sleep(2); /* ignores its deadline: must be abandoned */
	return 0;
}

START_TEST(test_stop_confirmed)
{
	struct stop_data d = {.pid = spawn_obedient()};
	struct selffence_opts o = {.stop_writes = stop_by_sigterm,
	                           .data = &d,
	                           .pid = d.pid,
	                           .stop_timeout = 2000 * MS,
	                           .kill_timeout = 2000 * MS};

	ck_assert_int_eq(selffence_run(&o), SELFFENCE_STOPPED);
	ck_assert(d.reaped);
	ck_assert(WIFSIGNALED(d.status) && WTERMSIG(d.status) == SIGTERM);
}
END_TEST

/* The child ignores the stop request: killed right after the deadline. */
START_TEST(test_stubborn_child_killed)
{
	static struct stop_data d; /* outlives nothing here, but keep it simple */
	struct selffence_opts o = {.stop_writes = stop_by_sigterm,
	                           .data = &d,
	                           .stop_timeout = 300 * MS,
	                           .kill_timeout = 2000 * MS};
	usec_t t0, took;
	int status;

	d = (struct stop_data){.pid = spawn_stubborn()};
	o.pid = d.pid;
	t0 = clock_mono_usec();
	ck_assert_int_eq(selffence_run(&o), SELFFENCE_KILLED);
	took = clock_mono_usec() - t0;
	ck_assert_int_ge(took, 300 * MS);
	ck_assert_msg(took < 1000 * MS, "took %lld us", (long long)took);
	ck_assert(!selffence_pid_alive(d.pid)); /* a zombie until reaped */
	ck_assert_int_eq(waitpid(d.pid, &status, 0), d.pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

/* A callback that hangs is abandoned at the deadline. */
START_TEST(test_hanging_callback_abandoned)
{
	pid_t pid = spawn_stubborn();
	struct selffence_opts o = {.stop_writes = stop_hangs,
	                           .pid = pid,
	                           .stop_timeout = 200 * MS,
	                           .kill_timeout = 2000 * MS};
	usec_t t0 = clock_mono_usec();
	int status;

	ck_assert_int_eq(selffence_run(&o), SELFFENCE_KILLED);
	ck_assert_int_lt(clock_mono_usec() - t0, 1000 * MS);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

/* No callback: straight to the kill. */
START_TEST(test_kill_only)
{
	pid_t pid = spawn_stubborn();
	struct selffence_opts o = {.pid = pid, .kill_timeout = 2000 * MS};
	int status;

	ck_assert_int_eq(selffence_run(&o), SELFFENCE_KILLED);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

START_TEST(test_already_gone)
{
	pid_t pid = fork();
	struct selffence_opts o = {.kill_timeout = 1000 * MS};

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	o.pid = pid;
	ck_assert_int_eq(selffence_run(&o), SELFFENCE_GONE);
}
END_TEST

START_TEST(test_nothing_to_do)
{
	struct selffence_opts o = {0};

	ck_assert_int_eq(selffence_run(&o), -EINVAL);
	ck_assert(selffence_pid_alive(getpid()));
}
END_TEST

/* ------------------------------------------------------------ watchdog */

static void tmp_device(char *path, size_t len)
{
	int fd;

	snprintf(path, len, "/tmp/kf-watchdog-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

static void assert_contents(const char *path, const char *want)
{
	char buf[64] = "";
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	ck_assert_str_eq(buf, want);
}

START_TEST(test_watchdog_orderly_close)
{
	struct selffence_watchdog *w = NULL;
	char path[64], err[256] = "";

	tmp_device(path, sizeof(path));
	ck_assert_int_eq(selffence_watchdog_open(path, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(selffence_watchdog_feed(w), 0);
	ck_assert_int_eq(selffence_watchdog_feed(w), 0);
	ck_assert_ptr_null(selffence_watchdog_close(w, true));
	assert_contents(path, "kkV"); /* keep-alives, then the magic close */
	unlink(path);
}
END_TEST

START_TEST(test_watchdog_starved)
{
	struct selffence_watchdog *w = NULL;
	char path[64], err[256] = "";

	tmp_device(path, sizeof(path));
	ck_assert_int_eq(selffence_watchdog_open(path, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(selffence_watchdog_feed(w), 0);
	selffence_watchdog_starve(w);
	selffence_watchdog_starve(w); /* idempotent */
	ck_assert_int_eq(selffence_watchdog_feed(w), -ECANCELED);
	/* A starved watchdog is never disarmed, even by an orderly close. */
	ck_assert_ptr_null(selffence_watchdog_close(w, true));
	assert_contents(path, "k");
	unlink(path);
}
END_TEST

START_TEST(test_watchdog_abrupt_close_and_errors)
{
	struct selffence_watchdog *w = NULL;
	char path[64], err[256] = "";

	tmp_device(path, sizeof(path));
	ck_assert_int_eq(selffence_watchdog_open(path, &w, err, sizeof(err)), 0);
	ck_assert_int_eq(selffence_watchdog_feed(w), 0);
	ck_assert_ptr_null(selffence_watchdog_close(w, false));
	assert_contents(path, "k"); /* no 'V': a real device stays armed */
	unlink(path);
	ck_assert_ptr_null(selffence_watchdog_close(NULL, true));

	w = NULL;
	ck_assert_int_eq(selffence_watchdog_open("/nonexistent/watchdog", &w, err, sizeof(err)),
	                 -ENOENT);
	ck_assert_ptr_null(w);
	ck_assert_str_eq(err, "cannot open watchdog device '/nonexistent/watchdog': No such file "
	                      "or directory");
}
END_TEST

static Suite *selffence_suite(void)
{
	Suite *s = suite_create("selffence");

	kft_add(s, "stop_confirmed", test_stop_confirmed, 0, NULL, NULL);
	kft_add(s, "stubborn_child_killed", test_stubborn_child_killed, 0, NULL, NULL);
	kft_add(s, "hanging_callback_abandoned", test_hanging_callback_abandoned, 0, NULL, NULL);
	kft_add(s, "kill_only", test_kill_only, 0, NULL, NULL);
	kft_add(s, "already_gone", test_already_gone, 0, NULL, NULL);
	kft_add(s, "nothing_to_do", test_nothing_to_do, 0, NULL, NULL);
	kft_add(s, "watchdog_orderly_close", test_watchdog_orderly_close, 0, NULL, NULL);
	kft_add(s, "watchdog_starved", test_watchdog_starved, 0, NULL, NULL);
	kft_add(s, "watchdog_abrupt_close_and_errors", test_watchdog_abrupt_close_and_errors, 0,
	        NULL, NULL);
	return s;
}

int main(void)
{
	static const struct kft_opts opts = {.log_level = LOG_LEVEL_ERROR - 1};

	return kft_main(selffence_suite(), &opts);
}
