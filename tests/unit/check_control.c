/* Unit tests of the agent's control socket: the line grammar, and the
 * server over a real unix socket (HELLO/WELCOME, messages, EOF, refusals). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/clock.h"
#include "nodeagent/control.h"
#include "tests/lib/kftest.h"

START_TEST(parse_good)
{
	struct control_msg m;
	char err[256];

	ck_assert_int_eq(control_parse("PONG seq=77", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(m.verb, CONTROL_PONG);
	ck_assert_uint_eq(m.seq, 77);
	ck_assert_int_eq(
	        control_parse("HELLO version=3 pod=meta-0 uid=abc-1 pid=42 mono_us=123456789", &m,
	                      err, sizeof(err)),
	        0);
	ck_assert_int_eq(m.verb, CONTROL_HELLO);
	ck_assert_int_eq(m.mono_us, 123456789);
	ck_assert_str_eq(m.pod, "meta-0");
	ck_assert_str_eq(m.uid, "abc-1");
	ck_assert_int_eq(m.pid, 42);
	ck_assert_str_eq(m.store, "");
	ck_assert_int_eq(control_parse("HELLO version=3 pod=meta-0 uid=abc-1 pid=42 mono_us=1 "
	                               "store=iscsi://10.0.0.1/iqn.x:t/1 store_node=node-a",
	                               &m, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(m.store, "iscsi://10.0.0.1/iqn.x:t/1");
	ck_assert_str_eq(m.store_node, "node-a");

	ck_assert_int_eq(control_parse("READY epoch=7 records=1000 last_seq=1234 recovery_ms=12",
	                               &m, err, sizeof(err)),
	                 0);
	ck_assert_int_eq(m.verb, CONTROL_READY);
	ck_assert_int_eq(m.epoch, 7);
	ck_assert_uint_eq(m.records, 1000);
	ck_assert_uint_eq(m.last_seq, 1234);
	ck_assert_uint_eq(m.recovery_ms, 12);

	/* reason takes the rest of the line, spaces and '=' included */
	ck_assert_int_eq(control_parse("FAILED epoch=3 reason=volume holds epoch 4 > 3 (a=b)", &m,
	                               err, sizeof(err)),
	                 0);
	ck_assert_str_eq(m.reason, "volume holds epoch 4 > 3 (a=b)");
	ck_assert_int_eq(control_parse("STANDBY", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(control_parse("DEMOTED epoch=9", &m, err, sizeof(err)), 0);
	ck_assert_int_eq(m.epoch, 9);
}
END_TEST

static const struct {
	const char *line;
	const char *err;
} BAD[] = {
        {"", "unknown verb ''"},
        {"HELO version=1", "unknown verb 'HELO'"},
        {"HELLO version=1 pod=p uid=u pid=1",
         "HELLO: protocol version 1 is not supported (this agent speaks 3: write grants are "
         "absolute CLOCK_MONOTONIC times, and PING must be answered with PONG; upgrade the "
         "service)"},
        {"HELLO version=2 pod=p uid=u pid=1 mono_us=1",
         "HELLO: protocol version 2 is not supported (this agent speaks 3: write grants are "
         "absolute CLOCK_MONOTONIC times, and PING must be answered with PONG; upgrade the "
         "service)"},
        {"PONG", "PONG: field 'seq' is missing"},
        {"PONG seq=x", "PONG: 'x' is not a valid seq"},
        {"PONG seq=1 epoch=2", "PONG: field 'epoch' does not belong here"},
        {"HELLO version=3 pod=p uid=u pid=1", "HELLO: field 'mono_us' is missing"},
        {"HELLO version=3 pod=p uid=u pid=1 mono_us=x", "HELLO: 'x' is not a valid mono_us"},
        {"HELLO version=3 mono_us=1 pod=p uid=u", "HELLO: field 'pid' is missing"},
        {"HELLO version=3 mono_us=1 pod=p uid=u pid=0", "HELLO: '0' is not a valid pid"},
        {"HELLO version=3 mono_us=1 pod=p uid=u pid=-3", "HELLO: '-3' is not a valid pid"},
        {"HELLO version=3 mono_us=1 pod=p pod=q uid=u pid=1", "HELLO: field 'pod' given twice"},
        {"HELLO version=3 mono_us=1 pod= uid=u pid=1", "pod: empty or longer than 253 bytes"},
        {"HELLO version=3 mono_us=1 pod=p uid=u pid=1 color=red", "HELLO: unknown field 'color'"},
        {"READY epoch=1 records=2 last_seq=3", "READY: field 'recovery_ms' is missing"},
        {"READY epoch=x records=2 last_seq=3 recovery_ms=1", "READY: 'x' is not a valid epoch"},
        {"READY epoch=1 records=2 last_seq=3 recovery_ms=1 pod=p",
         "READY: field 'pod' does not belong here"},
        {"DEMOTED epoch=99999999999999999999", "DEMOTED: '99999999999999999999' is not a valid "
                                               "epoch"},
        {"DEMOTED epoch", "'epoch' is not key=value"},
        {"FAILED epoch=1", "FAILED: field 'reason' is missing"},
};

START_TEST(parse_bad)
{
	struct control_msg m;
	char err[256] = "";

	ck_assert_int_eq(control_parse(BAD[_i].line, &m, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, BAD[_i].err);
}
END_TEST

START_TEST(parse_too_long)
{
	char *line = malloc(CONTROL_LINE_MAX + 10);
	struct control_msg m;
	char err[128];

	memset(line, 'A', CONTROL_LINE_MAX + 9);
	line[CONTROL_LINE_MAX + 9] = '\0';
	ck_assert_int_eq(control_parse(line, &m, err, sizeof(err)), -EBADMSG);
	free(line);
}
END_TEST

/* --------------------------------------------------- server over a socket */

struct seen {
	pthread_mutex_t mu;
	int hello, standby, ready, gone;
	int64_t ready_epoch;
	char gone_why[128];
	char pod[254];
};

static void on_hello(void *ud, const struct control_peer *p)
{
	struct seen *s = ud;
	pthread_mutex_lock(&s->mu);
	s->hello++;
	snprintf(s->pod, sizeof(s->pod), "%s", p->pod);
	pthread_mutex_unlock(&s->mu);
}

static void on_standby(void *ud)
{
	struct seen *s = ud;
	pthread_mutex_lock(&s->mu);
	s->standby++;
	pthread_mutex_unlock(&s->mu);
}

static void on_ready(void *ud, const struct control_msg *m)
{
	struct seen *s = ud;
	pthread_mutex_lock(&s->mu);
	s->ready++;
	s->ready_epoch = m->epoch;
	pthread_mutex_unlock(&s->mu);
}

static void on_gone(void *ud, const char *why)
{
	struct seen *s = ud;
	pthread_mutex_lock(&s->mu);
	s->gone++;
	snprintf(s->gone_why, sizeof(s->gone_why), "%s", why);
	pthread_mutex_unlock(&s->mu);
}

static const struct control_callbacks CBS = {
        .hello = on_hello, .standby = on_standby, .ready = on_ready, .gone = on_gone};

static int dial(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void say(int fd, const char *line)
{
	ck_assert_int_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
}

/* HELLO as a service of this machine says it: version 2, our clock. */
static void hello(int fd, const char *pod, const char *uid, int pid)
{
	char line[256];

	snprintf(line, sizeof(line), "HELLO version=3 pod=%s uid=%s pid=%d mono_us=%lld\n", pod,
	         uid, pid, (long long)clock_mono_usec());
	say(fd, line);
}

/* Read one line with a 2 s deadline. */
static void hear(int fd, char *buf, size_t n)
{
	struct timeval tv = {.tv_sec = 2};
	size_t used = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (used + 1 < n) {
		ssize_t r = read(fd, buf + used, 1);
		ck_assert_int_eq(r, 1);
		if (buf[used] == '\n')
			break;
		used++;
	}
	buf[used] = '\0';
}

#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		usec_t end_ = clock_mono_usec() + 2 * USEC_PER_SEC;                                \
		for (;;) {                                                                         \
			pthread_mutex_lock(&s.mu);                                                 \
			bool ok_ = (cond);                                                         \
			pthread_mutex_unlock(&s.mu);                                               \
			if (ok_)                                                                   \
				break;                                                             \
			ck_assert_msg(clock_mono_usec() < end_, "timed out waiting for " #cond);   \
			usleep(1000);                                                              \
		}                                                                                  \
	} while (0)

START_TEST(server_session)
{
	char dir[] = "/tmp/check_control.XXXXXX", path[128], line[256], err[256];
	struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct control *c = NULL;
	int fd, fd2;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/control.sock", dir);
	ck_assert_int_eq(control_new(path, (uid_t)-1, "node-a", &CBS, &s, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(control_start(c), 0);
	ck_assert(!control_connected(c));
	ck_assert_int_eq(control_send_promote(c, 1, 1, 100), -ENOTCONN);

	fd = dial(path);
	/* speaking before HELLO closes the connection */
	say(fd, "STANDBY\n");
	ck_assert_int_eq(read(fd, line, sizeof(line)), 0);
	close(fd);

	fd = dial(path);
	/* a service on another CLOCK_MONOTONIC (a time namespace) is refused */
	say(fd, "HELLO version=3 pod=meta-0 uid=u-1 pid=4242 mono_us=1\n");
	hear(fd, line, sizeof(line));
	ck_assert_msg(strncmp(line, "ERROR reason=your CLOCK_MONOTONIC is ", 37) == 0, "%s", line);
	ck_assert_int_eq(read(fd, line, sizeof(line)), 0);
	close(fd);
	ck_assert_int_eq(s.hello, 0);

	fd = dial(path);
	hello(fd, "meta-0", "u-1", 4242);
	hear(fd, line, sizeof(line));
	ck_assert_msg(strncmp(line, "WELCOME version=3 node=node-a mono_us=", 38) == 0, "%s", line);
	WAIT_FOR(s.hello == 1);
	ck_assert_str_eq(s.pod, "meta-0");
	ck_assert(control_connected(c));

	/* a second service is refused while the first is connected */
	fd2 = dial(path);
	hear(fd2, line, sizeof(line));
	ck_assert_str_eq(line, "ERROR reason=another service is connected");
	close(fd2);

	/* a bad line is answered, the connection stays */
	say(fd, "READY epoch=1\n");
	hear(fd, line, sizeof(line));
	ck_assert_str_eq(line, "ERROR reason=READY: field 'records' is missing");

	say(fd, "STANDBY\n");
	WAIT_FOR(s.standby == 1);
	ck_assert_int_eq(control_send_promote(c, 2, 5, 1500000), -ESTALE); /* not this one */
	ck_assert_int_eq(control_send_promote(c, 1, 5, 1500000), 0);
	hear(fd, line, sizeof(line));
	ck_assert_str_eq(line, "PROMOTE epoch=5 until_us=1500000");
	/* two messages in one write */
	say(fd, "READY epoch=5 records=10 last_seq=11 recovery_ms=3\nSTANDBY\n");
	WAIT_FOR(s.ready == 1 && s.standby == 2);
	ck_assert_int_eq(s.ready_epoch, 5);
	ck_assert_int_eq(control_send_renew(c, 1, 5, 2400000), 0);
	hear(fd, line, sizeof(line));
	ck_assert_str_eq(line, "RENEW epoch=5 until_us=2400000");
	ck_assert_int_eq(control_send_demote(c, 5, "lost the lease"), 0);
	hear(fd, line, sizeof(line));
	ck_assert_str_eq(line, "DEMOTE epoch=5 reason=lost the lease");

	/* death is EOF */
	close(fd);
	WAIT_FOR(s.gone == 1);
	ck_assert_str_eq(s.gone_why, "EOF on the control socket");
	ck_assert(!control_connected(c));

	/* a line that never ends is cut off */
	fd = dial(path);
	hello(fd, "meta-1", "u-2", 1);
	hear(fd, line, sizeof(line));
	char big[CONTROL_LINE_MAX + 16];
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	WAIT_FOR(s.gone == 2);
	ck_assert_str_eq(s.gone_why, "line too long");
	close(fd);

	control_free(c);
	ck_assert_int_eq(access(path, F_OK), -1); /* the socket file is removed */
	rmdir(dir);
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc;

	tc = kft_tcase(s, "parse", 0, NULL, NULL);
	tcase_add_test(tc, parse_good);
	tcase_add_loop_test(tc, parse_bad, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
	tcase_add_test(tc, parse_too_long);

	kft_add(s, "server", server_session, 0, NULL, NULL);
	return s;
}

int main(void)
{
	return kft_main(control_suite(), NULL);
}
