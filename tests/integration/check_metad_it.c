/* Integration tests of kubefence-metad and kubefence-meta as real processes
 * on 127.0.0.1: the standalone master through the CLI and a raw socket,
 * recovery after a restart and after kill -9 in a stream of writes, the
 * control socket with the test playing the agent (promotion, the write
 * deadline, renewal, demotion, a refused promotion, reconnection), two
 * services on one data directory, batch mode, and the operation history
 * that kubefence-meta --history records.  Every process a test
 * starts is stopped by that test by PID (and dies with it: PDEATHSIG). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "storage/metad/proto.h"
#include "tests/lib/kft_meta.h"
#include "tests/lib/kft_port.h"
#include "tests/lib/kftest.h"

static char workdir[256];

static const char *metad_path(void)
{
	const char *p = getenv("KF_METAD");
	return p ? p : TEST_BUILDDIR "/storage/metad/kubefence-metad";
}

static const char *meta_path(void)
{
	const char *p = getenv("KF_META");
	return p ? p : TEST_BUILDDIR "/storage/metad/kubefence-meta";
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN); /* a dead service must fail a test, not kill it */
	snprintf(workdir, sizeof(workdir), "/tmp/kf-metad-it.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(workdir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", workdir);
}

static int free_port(void)
{
	int port = kft_free_port();

	ck_assert_int_gt(port, 0);
	return port;
}

/* ------------------------------------------------------------ processes */

struct metad {
	pid_t pid;
	int port;
	char log[300];
	char addr[64];
};

static void metad_dump(const struct metad *m)
{
	char buf[4096];
	FILE *f = fopen(m->log, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- %s\n", m->log);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fclose(f);
}

/* Start kubefence-metad with --listen 127.0.0.1:<port> and the NULL-ended
 * arguments; wait until it accepts connections. */
static void metad_start(struct metad *m, const char *name, int port, ...)
{
	const char *argv[32];
	int argc = 0, fd;
	va_list ap;
	usec_t until;

	m->port = port ? port : free_port();
	snprintf(m->addr, sizeof(m->addr), "127.0.0.1:%d", m->port);
	snprintf(m->log, sizeof(m->log), "%s/%s.log", workdir, name);
	argv[argc++] = metad_path();
	argv[argc++] = "--listen";
	argv[argc++] = m->addr;
	va_start(ap, port);
	while (argc < 31 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	m->pid = fork();
	ck_assert_int_ge(m->pid, 0);
	if (m->pid == 0) {
		int lfd = open(m->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(lfd, 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	until = clock_mono_usec() + 10 * USEC_PER_SEC;
	while ((fd = kft_meta_connect(m->port)) < 0) {
		int st;

		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			metad_dump(m);
			ck_abort_msg("kubefence-metad exited at start");
		}
		ck_assert_msg(clock_mono_usec() < until, "kubefence-metad does not listen");
		usleep(20000);
	}
	close(fd);
}

/* Stop by PID with sig and reap; returns the wait status. */
static int metad_stop(struct metad *m, int sig)
{
	int st = 0;
	usec_t until = clock_mono_usec() + 10 * USEC_PER_SEC;

	if (m->pid <= 0)
		return 0;
	kill(m->pid, sig);
	while (waitpid(m->pid, &st, WNOHANG) == 0) {
		if (clock_mono_usec() > until) {
			kill(m->pid, SIGKILL);
			waitpid(m->pid, &st, 0);
			m->pid = 0;
			metad_dump(m);
			ck_abort_msg("kubefence-metad did not stop on signal %d", sig);
		}
		usleep(10000);
	}
	m->pid = 0;
	return st;
}

/* Run kubefence-meta --server <addr> ARGS... with `in` on stdin; its stdout
 * goes to out.  Returns the exit code. */
static int meta_run(const char *addr, const char *in, char *out, size_t outlen, ...)
{
	const char *argv[32];
	int argc = 0, inp[2], outp[2], st;
	size_t got = 0;
	va_list ap;
	pid_t pid;

	argv[argc++] = meta_path();
	argv[argc++] = "--server";
	argv[argc++] = addr;
	va_start(ap, outlen);
	while (argc < 31 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	ck_assert_int_eq(pipe(inp), 0);
	ck_assert_int_eq(pipe(outp), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(inp[0], 0);
		dup2(outp[1], 1);
		close(inp[1]);
		close(outp[0]);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(inp[0]);
	close(outp[1]);
	signal(SIGPIPE, SIG_IGN);
	if (in)
		ck_assert_int_eq(write(inp[1], in, strlen(in)), (ssize_t)strlen(in));
	close(inp[1]);
	for (;;) {
		struct pollfd pfd = {.fd = outp[0], .events = POLLIN};
		char sink[4096];
		ssize_t n;

		if (poll(&pfd, 1, 20000) <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			ck_abort_msg("kubefence-meta did not finish");
		}
		if (out && got + 1 < outlen)
			n = read(outp[0], out + got, outlen - 1 - got);
		else
			n = read(outp[0], sink, sizeof(sink));
		if (n <= 0)
			break;
		if (out && got + 1 < outlen)
			got += (size_t)n;
	}
	if (out)
		out[got] = '\0';
	close(outp[0]);
	waitpid(pid, &st, 0);
	ck_assert_msg(WIFEXITED(st), "kubefence-meta died");
	return WEXITSTATUS(st);
}

/* ------------------------------------------------------------ raw client */

static enum proto_resp_kind raw_put(struct kft_meta *r, const char *k, const char *v,
                                    struct proto_resp *u)
{
	kft_meta_request(r, PROTO_OP_PUT, k, strlen(k), v, strlen(v));
	return kft_meta_reply(r, u, NULL);
}

/* One-shot request on a new connection. */
static enum proto_resp_kind once(int port, enum proto_op op, const char *k, const char *v,
                                 struct proto_resp *u)
{
	struct kft_meta r;
	enum proto_resp_kind kind;

	kft_meta_open(&r, port);
	kft_meta_request(&r, op, k, k ? strlen(k) : 0, v, v ? strlen(v) : 0);
	kind = kft_meta_reply(&r, u, NULL);
	kft_meta_close(&r);
	return kind;
}

/* ------------------------------------------------------------ fake agent */

struct agent {
	int lfd, fd;
	char path[300];
	char buf[8192];
	size_t len;
};

static void agent_listen(struct agent *a, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	memset(a, 0, sizeof(*a));
	a->fd = -1;
	snprintf(a->path, sizeof(a->path), "%s/%s.sock", workdir, name);
	strcpy(sa.sun_path, a->path);
	a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(a->lfd, 4), 0);
}

static void agent_accept(struct agent *a)
{
	struct pollfd pfd = {.fd = a->lfd, .events = POLLIN};

	ck_assert_msg(poll(&pfd, 1, 10000) == 1, "the service did not connect");
	a->fd = accept(a->lfd, NULL, NULL);
	ck_assert_int_ge(a->fd, 0);
	a->len = 0;
}

/* Next line from the service (without "\n") into line; false on timeout. */
static bool agent_read(struct agent *a, char *line, size_t n, int timeout_ms)
{
	usec_t until = clock_mono_usec() + timeout_ms * USEC_PER_MSEC;

	for (;;) {
		char *nl = memchr(a->buf, '\n', a->len);

		if (nl) {
			size_t l = (size_t)(nl - a->buf);

			ck_assert_uint_lt(l, n);
			memcpy(line, a->buf, l);
			line[l] = '\0';
			memmove(a->buf, nl + 1, a->len - l - 1);
			a->len -= l + 1;
			return true;
		}
		struct pollfd pfd = {.fd = a->fd, .events = POLLIN};
		usec_t left = until - clock_mono_usec();
		if (left <= 0 || poll(&pfd, 1, (int)(left / 1000) + 1) <= 0)
			return false;
		ssize_t got = read(a->fd, a->buf + a->len, sizeof(a->buf) - a->len);
		if (got <= 0)
			return false;
		a->len += (size_t)got;
	}
}

static void agent_expect(struct agent *a, const char *prefix, char *line, size_t n)
{
	char tmp[4200];

	if (!line) {
		line = tmp;
		n = sizeof(tmp);
	}
	ck_assert_msg(agent_read(a, line, n, 15000), "no line from the service (wanted %s)",
	              prefix);
	ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0, "got '%s', wanted '%s...'", line,
	              prefix);
}

static void agent_send(struct agent *a, const char *fmt, ...)
{
	char line[4200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	ck_assert_int_eq(write(a->fd, line, (size_t)n), n);
}

static void agent_close(struct agent *a)
{
	if (a->fd >= 0)
		close(a->fd);
	if (a->lfd >= 0)
		close(a->lfd);
	a->fd = a->lfd = -1;
	unlink(a->path);
}

/* PROMOTE or RENEW granting writes for `ms` from now: an absolute
 * CLOCK_MONOTONIC time, as the agent sends it. */
static void agent_grant(struct agent *a, const char *verb, int epoch, long ms)
{
	agent_send(a, "%s epoch=%d until_us=%" PRId64, verb, epoch,
	           (int64_t)(clock_mono_usec() + ms * USEC_PER_MSEC));
}

/* Accept, check HELLO, WELCOME, expect STANDBY. */
static void agent_handshake(struct agent *a, const struct metad *m, const char *pod)
{
	char line[4200], want[64];

	agent_accept(a);
	agent_expect(a, "HELLO version=3 ", line, sizeof(line));
	ck_assert_msg(strstr(line, " mono_us="), "HELLO without mono_us: %s", line);
	snprintf(want, sizeof(want), " pid=%d", (int)m->pid);
	ck_assert_msg(strstr(line, want), "HELLO without %s: %s", want, line);
	snprintf(want, sizeof(want), "pod=%s ", pod);
	ck_assert_msg(strstr(line, want), "HELLO without %s: %s", want, line);
	ck_assert_msg(strstr(line, "uid=uid-1"), "HELLO without uid: %s", line);
	agent_send(a, "WELCOME version=3 node=node-a mono_us=%" PRId64, (int64_t)clock_mono_usec());
	agent_expect(a, "STANDBY", NULL, 0);
	/* the liveness exchange, answered by the real service */
	agent_send(a, "PING seq=41");
	agent_expect(a, "PONG seq=41", NULL, 0);
}

static const char *dir_of(const char *name)
{
	static char d[4][300];
	static int i;

	i = (i + 1) % 4;
	snprintf(d[i], sizeof(d[i]), "%s/%s", workdir, name);
	return d[i];
}

/* ------------------------------------------------------------ tests */

START_TEST(standalone_cli)
{
	struct metad m;
	char out[65536], bad[64], vf[300];
	uint8_t bin[3000];
	FILE *f;

	metad_start(&m, "a", 0, "--standalone", "--epoch", "1", "--data-dir", dir_of("data"), NULL);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "put", "k1", "hello world", NULL),
	                 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k1", NULL), 0);
	ck_assert_str_eq(out, "hello world");
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "put", "k2", "v2", NULL), 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "put", "other", "v3", NULL), 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "list", "k", NULL), 0);
	ck_assert_str_eq(out, "k1\nk2\n");
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "list", NULL), 0);
	ck_assert_str_eq(out, "k1\nk2\nother\n");
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "stat", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "role=master\n"));
	ck_assert_ptr_nonnull(strstr(out, "epoch=1\n"));
	ck_assert_ptr_nonnull(strstr(out, "keys=3\n"));
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "del", "k1", NULL), 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k1", NULL), 1);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "remove", "k1", NULL), 1);

	/* binary value through --value-file, NULs and newlines included */
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7);
	snprintf(vf, sizeof(vf), "%s/bin", workdir);
	f = fopen(vf, "wb");
	fwrite(bin, 1, sizeof(bin), f);
	fclose(f);
	ck_assert_int_eq(
	        meta_run(m.addr, NULL, out, sizeof(out), "--value-file", vf, "put", "b", NULL), 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "b", NULL), 0);
	ck_assert_mem_eq(out, bin, sizeof(bin));

	/* errors: usage, server error, refused connection */
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "frob", NULL), 2);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", NULL), 2);
	ck_assert_int_eq(
	        meta_run(m.addr, NULL, out, sizeof(out), "--timeout-ms", "x", "stat", NULL), 2);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "--nope", "stat", NULL), 2);
	{
		char longkey[PROTO_KEY_MAX + 2];

		memset(longkey, 'k', sizeof(longkey) - 1);
		longkey[sizeof(longkey) - 1] = '\0';
		ck_assert_int_eq(
		        meta_run(m.addr, NULL, out, sizeof(out), "put", longkey, "v", NULL), 2);
	}
	snprintf(bad, sizeof(bad), "127.0.0.1:%d", free_port());
	ck_assert_int_eq(meta_run(bad, NULL, out, sizeof(out), "stat", NULL), 2);
	ck_assert_int_eq(meta_run("nonsense", NULL, out, sizeof(out), "stat", NULL), 2);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(standalone_raw)
{
	static const uint8_t key[] = {'a', 0, '\n', 'b'};
	static const uint8_t val[] = {0, 'P', 'U', 'T', ' ', '1', ' ', '1', '\n', 'x', 0};
	struct metad m;
	struct kft_meta r;
	struct proto_resp u;
	struct pbuf data = {0}, big = {0};
	char line[64];

	metad_start(&m, "a", 0, "--standalone", "--epoch", "2", "--data-dir", dir_of("data"),
	            "--idle-timeout-ms", "1500", NULL);
	kft_meta_open(&r, m.port);
	/* pipelined: PUT, GET, LIST, garbage, GET of a missing key */
	{
		struct pbuf b = {0};

		proto_encode_request(&b, PROTO_OP_PUT, key, sizeof(key), val, sizeof(val), 0);
		proto_encode_request(&b, PROTO_OP_GET, key, sizeof(key), NULL, 0, 0);
		proto_encode_request(&b, PROTO_OP_LIST, "a", 1, NULL, 0, 0);
		pbuf_append(&b, "FROB 12\n", 8);
		proto_encode_request(&b, PROTO_OP_GET, "zz", 2, NULL, 0, 0);
		kft_meta_send(&r, b.data, b.len);
		pbuf_free(&b);
	}
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_OK);
	ck_assert_int_eq(kft_meta_reply(&r, &u, &data), PROTO_R_VALUE);
	ck_assert_uint_eq(data.len, sizeof(val));
	ck_assert_mem_eq(data.data, val, sizeof(val));
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_KEYS);
	ck_assert_uint_eq(u.count, 1);
	ck_assert_int_eq(kft_meta_reply(&r, &u, &data), PROTO_R_KEY);
	ck_assert_mem_eq(data.data, key, sizeof(key));
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_ERR);
	ck_assert_ptr_nonnull(strstr(u.text, "unknown command"));
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_NOTFOUND);

	/* too large: refused before the payload, which is skipped; usable after */
	snprintf(line, sizeof(line), "PUT 3 %d\n", PROTO_VALUE_MAX + 1);
	pbuf_append(&big, line, strlen(line));
	for (int i = 0; i < 3 + PROTO_VALUE_MAX + 1; i++)
		pbuf_append(&big, "Z", 1);
	kft_meta_send(&r, big.data, big.len);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "toolarge ", 9) == 0, "%s", u.text);
	ck_assert_int_eq(raw_put(&r, "after", "big", &u), PROTO_R_OK);
	snprintf(line, sizeof(line), "GET %d\n", PROTO_KEY_MAX + 1);
	kft_meta_send(&r, line, strlen(line));
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "toolarge ", 9) == 0, "%s", u.text);
	big.len = 0;
	for (int i = 0; i < PROTO_KEY_MAX + 1; i++)
		pbuf_append(&big, "K", 1);
	kft_meta_send(&r, big.data, big.len);
	kft_meta_request(&r, PROTO_OP_GET, "after", 5, NULL, 0);
	ck_assert_int_eq(kft_meta_reply(&r, &u, &data), PROTO_R_VALUE);
	ck_assert_mem_eq(data.data, "big", 3);

	/* framing lost: ERR, then the server closes */
	kft_meta_send(&r, "PUT x y\n", 8);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_ERR);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), 0);
	kft_meta_close(&r);

	/* an idle client is disconnected after --idle-timeout-ms */
	kft_meta_open(&r, m.port);
	{
		usec_t t0 = clock_mono_usec();
		char c;
		struct pollfd pfd = {.fd = r.fd, .events = POLLIN};

		kft_meta_send(&r, "GE", 2); /* half a request does not keep it alive */
		ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
		ck_assert_int_eq(read(r.fd, &c, 1), 0);
		ck_assert_int_ge(clock_mono_usec() - t0, 1400 * USEC_PER_MSEC);
	}
	kft_meta_close(&r);
	pbuf_free(&data);
	pbuf_free(&big);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(restart_recovers)
{
	struct metad m;
	struct kft_meta r;
	struct proto_resp u;
	struct pbuf data = {0};
	char k[32], v[32];
	const char *d = dir_of("data");

	metad_start(&m, "a", 0, "--standalone", "--epoch", "1", "--data-dir", d, NULL);
	kft_meta_open(&r, m.port);
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "key/%03d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		ck_assert_int_eq(raw_put(&r, k, v, &u), PROTO_R_OK);
	}
	kft_meta_request(&r, PROTO_OP_DEL, "key/007", 7, NULL, 0);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_OK);
	kft_meta_close(&r);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);

	metad_start(&m, "a", m.port, "--standalone", "--epoch", "2", "--data-dir", d, NULL);
	kft_meta_open(&r, m.port);
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "key/%03d", i);
		snprintf(v, sizeof(v), "value-%d", i);
		kft_meta_request(&r, PROTO_OP_GET, k, strlen(k), NULL, 0);
		if (i == 7) {
			ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_NOTFOUND);
			continue;
		}
		ck_assert_int_eq(kft_meta_reply(&r, &u, &data), PROTO_R_VALUE);
		ck_assert_uint_eq(data.len, strlen(v));
		ck_assert_mem_eq(data.data, v, data.len);
	}
	kft_meta_close(&r);
	pbuf_free(&data);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
	/* an older epoch than the volume's cannot start */
	{
		int st;
		pid_t pid = fork();

		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			int devnull = open("/dev/null", O_WRONLY);
			dup2(devnull, 2);
			execl(metad_path(), metad_path(), "--listen", "127.0.0.1:0", "--standalone",
			      "--epoch", "1", "--data-dir", d, (char *)NULL);
			_exit(127);
		}
		waitpid(pid, &st, 0);
		ck_assert(WIFEXITED(st));
		ck_assert_int_eq(WEXITSTATUS(st), 1);
	}
}
END_TEST

START_TEST(kill9_keeps_acked)
{
	enum { WINDOW = 16, KILL_AFTER = 400, MAXK = 100000 };
	struct metad m;
	struct kft_meta r;
	struct proto_resp u;
	struct pbuf data = {0};
	static bool acked[MAXK];
	const char *d = dir_of("data");
	int sent = 0, answered = 0, nacked = 0;
	char k[32], v[64];

	memset(acked, 0, sizeof(acked));
	metad_start(&m, "a", 0, "--standalone", "--epoch", "1", "--data-dir", d, NULL);
	kft_meta_open(&r, m.port);
	for (;;) {
		while (sent - answered < WINDOW && sent < MAXK) {
			snprintf(k, sizeof(k), "k%06d", sent);
			snprintf(v, sizeof(v), "v%06d-payload", sent);
			if (send(r.fd, "", 0, MSG_NOSIGNAL) < 0)
				break;
			struct pbuf b = {0};
			proto_encode_request(&b, PROTO_OP_PUT, k, strlen(k), v, strlen(v), 0);
			size_t len = b.len;
			ssize_t n = send(r.fd, b.data, len, MSG_NOSIGNAL);
			pbuf_free(&b);
			if (n != (ssize_t)len)
				break;
			sent++;
		}
		enum proto_resp_kind kind = kft_meta_reply(&r, &u, NULL);
		if (kind == 0)
			break; /* the server died */
		if (kind == PROTO_R_OK) {
			acked[answered] = true;
			nacked++;
		}
		answered++;
		if (answered == KILL_AFTER)
			kill(m.pid, SIGKILL); /* with WINDOW puts in flight */
	}
	kft_meta_close(&r);
	metad_stop(&m, SIGKILL);
	ck_assert_int_ge(nacked, KILL_AFTER - 1);

	metad_start(&m, "a", m.port, "--standalone", "--epoch", "2", "--data-dir", d, NULL);
	kft_meta_open(&r, m.port);
	for (int i = 0; i < sent; i++) {
		if (!acked[i])
			continue;
		snprintf(k, sizeof(k), "k%06d", i);
		snprintf(v, sizeof(v), "v%06d-payload", i);
		kft_meta_request(&r, PROTO_OP_GET, k, strlen(k), NULL, 0);
		ck_assert_msg(kft_meta_reply(&r, &u, &data) == PROTO_R_VALUE,
		              "acknowledged put %s lost after kill -9", k);
		ck_assert_mem_eq(data.data, v, strlen(v));
	}
	fprintf(stderr, "kill9: %d puts sent, %d acknowledged, all present after restart\n", sent,
	        nacked);
	kft_meta_close(&r);
	pbuf_free(&data);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(control_roles)
{
	struct metad m, s;
	struct agent a;
	struct kft_meta r;
	struct proto_resp u;
	char line[4200], out[4096];
	const char *d = dir_of("data");
	usec_t t_promote;
	unsigned long records = 0;

	/* data from an earlier term */
	metad_start(&s, "seed", 0, "--standalone", "--epoch", "2", "--data-dir", d, NULL);
	for (int i = 0; i < 10; i++) {
		char k[16];

		snprintf(k, sizeof(k), "seed%d", i);
		ck_assert_int_eq(once(s.port, PROTO_OP_PUT, k, "x", &u), PROTO_R_OK);
	}
	ck_assert_int_eq(metad_stop(&s, SIGTERM), 0);

	agent_listen(&a, "agent");
	metad_start(&m, "svc", 0, "--control-socket", a.path, "--data-dir", d, "--pod-name",
	            "meta-0", "--pod-uid", "uid-1", NULL);
	agent_handshake(&a, &m, "meta-0");

	/* standby: no writes, no reads, master unknown */
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v", &u), PROTO_R_NOTMASTER);
	ck_assert_str_eq(u.text, "unknown");
	ck_assert_int_eq(once(m.port, PROTO_OP_GET, "seed1", NULL, &u), PROTO_R_NOTMASTER);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "put", "k", "v", NULL), 3);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k", NULL), 3);

	/* a bad line is answered with ERROR, the connection stays */
	agent_send(&a, "PROMOTE epoch=banana until_us=5");
	agent_expect(&a, "ERROR reason=", NULL, 0);

	/* promotion: READY with the recovered records */
	t_promote = clock_mono_usec();
	agent_grant(&a, "PROMOTE", 5, 1500);
	agent_expect(&a, "READY epoch=5 ", line, sizeof(line));
	ck_assert_msg(sscanf(strstr(line, "records="), "records=%lu", &records) == 1, "%s", line);
	ck_assert_uint_ge(records, 10);
	ck_assert_ptr_nonnull(strstr(line, "last_seq="));
	ck_assert_ptr_nonnull(strstr(line, "recovery_ms="));
	kft_meta_open(&r, m.port);
	ck_assert_int_eq(raw_put(&r, "k", "v1", &u), PROTO_R_OK);
	kft_meta_request(&r, PROTO_OP_GET, "seed3", 5, NULL, 0);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_VALUE);

	/* no RENEW: the grant runs out and writes stop by themselves */
	clock_sleep_until(t_promote + 1600 * USEC_PER_MSEC);
	ck_assert_int_eq(raw_put(&r, "k", "v2", &u), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "deadline", 8) == 0, "%s", u.text);
	kft_meta_request(&r, PROTO_OP_GET, "k", 1, NULL, 0);
	ck_assert_int_eq(kft_meta_reply(&r, &u, NULL), PROTO_R_ERR);

	/* RENEW of another epoch is ignored; of ours, extends */
	agent_grant(&a, "RENEW", 4, 5000);
	usleep(100000);
	ck_assert_int_eq(raw_put(&r, "k", "v2", &u), PROTO_R_ERR);
	agent_grant(&a, "RENEW", 5, 5000);
	usleep(100000);
	ck_assert_int_eq(raw_put(&r, "k", "v3", &u), PROTO_R_OK);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k", NULL), 0);
	ck_assert_str_eq(out, "v3");

	/* MASTER then DEMOTE: refused with the master's name */
	agent_send(&a, "MASTER epoch=6 pod=meta-1 addr=10.1.2.3:7480");
	agent_send(&a, "DEMOTE epoch=5 reason=handover");
	agent_expect(&a, "DEMOTED epoch=5", NULL, 0);
	ck_assert_int_eq(raw_put(&r, "k", "v4", &u), PROTO_R_NOTMASTER);
	ck_assert_str_eq(u.text, "meta-1@10.1.2.3:7480");
	kft_meta_close(&r);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "del", "k", NULL), 3);

	/* a promotion with an older epoch than the volume's fails */
	agent_grant(&a, "PROMOTE", 3, 5000);
	agent_expect(&a, "FAILED epoch=3 reason=", line, sizeof(line));
	agent_expect(&a, "STANDBY", NULL, 0);
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v", &u), PROTO_R_NOTMASTER);

	/* a newer one works again, with our last write recovered */
	agent_grant(&a, "PROMOTE", 7, 5000);
	agent_expect(&a, "READY epoch=7 ", NULL, 0);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k", NULL), 0);
	ck_assert_str_eq(out, "v3");

	/* the agent goes away: writes go on until the grant ends, then stop */
	agent_grant(&a, "RENEW", 7, 800);
	usleep(50000);
	agent_close(&a);
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v5", &u), PROTO_R_OK);
	usleep(900000);
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v6", &u), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "deadline", 8) == 0, "%s", u.text);
	/* on reconnection the service starts as standby again */
	agent_listen(&a, "agent");
	agent_handshake(&a, &m, "meta-0");
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v7", &u), PROTO_R_NOTMASTER);

	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(control_agent_absent)
{
	struct metad m;
	struct agent a;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[300];

	/* start before the agent exists: the service retries */
	snprintf(path, sizeof(path), "%s/late.sock", workdir);
	metad_start(&m, "svc", 0, "--control-socket", path, "--data-dir", dir_of("data"), NULL);
	setenv("POD_NAME", "unused", 1);
	usleep(600000);
	memset(&a, 0, sizeof(a));
	a.fd = -1;
	strcpy(a.path, path);
	strcpy(sa.sun_path, path);
	a.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(a.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(a.lfd, 4), 0);
	agent_accept(&a);
	agent_expect(&a, "HELLO version=3 pod=", NULL, 0);
	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

/* SIGTERM: the agent takes EOF on the control socket for the service's
 * death (and lets the next master skip the pod fence), so by the time it
 * sees EOF the service must acknowledge nothing any more.  A fault point
 * holds the shutdown between its two steps for a second. */
START_TEST(sigterm_stops_serving_before_eof)
{
	struct metad m;
	struct agent a;
	struct kft_meta r;
	struct proto_resp u;
	char line[4200];
	enum proto_resp_kind k;
	usec_t t0;

	agent_listen(&a, "agent-t");
	setenv("KUBEFENCE_FAILPOINTS", "metad.shutdown.between=delay(1000)", 1);
	metad_start(&m, "svc-t", 0, "--control-socket", a.path, "--data-dir", dir_of("term"),
	            "--pod-name", "meta-t", "--pod-uid", "uid-1", NULL);
	unsetenv("KUBEFENCE_FAILPOINTS");
	agent_handshake(&a, &m, "meta-t");
	agent_grant(&a, "PROMOTE", 3, 30000);
	agent_expect(&a, "READY epoch=3 ", NULL, 0);
	kft_meta_open(&r, m.port);
	ck_assert_int_eq(raw_put(&r, "k", "v1", &u), PROTO_R_OK);
	ck_assert_int_eq(kill(m.pid, SIGTERM), 0);
	t0 = clock_mono_usec();
	while (agent_read(&a, line, sizeof(line), 5000))
		; /* whatever it says before it goes */
	ck_assert_msg(clock_mono_usec() - t0 < 4 * USEC_PER_SEC, "no EOF after SIGTERM");
	k = raw_put(&r, "k", "v2", &u);
	ck_assert_msg(k != PROTO_R_OK, "the service acknowledged a write after its agent saw EOF");
	kft_meta_close(&r);
	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

/* A grant given while a long recovery runs (a fault point stretches it to
 * 1.5 s) must still end where the agent's term ends, however late it is
 * applied: grants are absolute times.  And the service refuses an agent of protocol
 * version 1, or one whose CLOCK_MONOTONIC is not its own. */
START_TEST(grant_read_late_ends_on_time)
{
	struct metad m;
	struct agent a;
	struct proto_resp u;
	char line[4200];

	agent_listen(&a, "agent-g");
	setenv("KUBEFENCE_FAILPOINTS", "metad.promote.before_claim=1*delay(1500)", 1);
	metad_start(&m, "svc-g", 0, "--control-socket", a.path, "--data-dir", dir_of("grant"),
	            "--pod-name", "meta-g", "--pod-uid", "uid-1", NULL);
	unsetenv("KUBEFENCE_FAILPOINTS");
	agent_handshake(&a, &m, "meta-g");
	agent_grant(&a, "PROMOTE", 3, 600);
	usleep(100000);
	agent_grant(&a, "RENEW", 3, 500); /* the term ends 600 ms after PROMOTE */
	agent_expect(&a, "READY epoch=3 ", line, sizeof(line));
	usleep(100000); /* the RENEW is read by now */
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "late", &u), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "deadline", 8) == 0, "%s", u.text);
	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

/* Wait (bounded) for the service's thread to pause at fault point `name`
 * (the marker is in fpdir), then return the marker's path. */
static void fp_wait_paused(const char *fpdir, const struct metad *m, const char *name, char *marker,
                           size_t len)
{
	snprintf(marker, len, "%s/%s.%ld.paused", fpdir, name, (long)m->pid);
	for (int i = 0; i < 1500 && access(marker, F_OK) != 0; i++)
		usleep(10000);
	ck_assert_msg(access(marker, F_OK) == 0, "the service never paused at '%s'", name);
}

/* Does the data directory hold a journal segment of `epoch` (the barrier of
 * a store opened for writing)? */
static bool has_segment_of(const char *dir, int epoch)
{
	char suffix[40], cmd[600], out[4096] = "";
	FILE *p;
	size_t n;

	snprintf(suffix, sizeof(suffix), "-%016x.log", epoch);
	snprintf(cmd, sizeof(cmd), "ls '%s'", dir);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	return strstr(out, suffix) != NULL;
}

/* The control connection is served while a promotion's recovery runs (a
 * fault point holds the recovery): a DEMOTE is answered at once and calls
 * the promotion off, so the store is never opened for writing (no barrier
 * of that epoch) and the service stays standby; a RENEW during the
 * recovery is the grant the master starts with; and the end of the
 * connection during a recovery calls that promotion off too. */
START_TEST(control_served_during_recovery)
{
	struct metad m;
	struct agent a;
	struct proto_resp u;
	char fpdir[300], marker[512], line[4200];
	const char *d = dir_of("rec");
	usec_t t0;

	snprintf(fpdir, sizeof(fpdir), "%s/fp", workdir);
	ck_assert_int_eq(mkdir(fpdir, 0700), 0);
	agent_listen(&a, "agent-r");
	setenv("KUBEFENCE_FAILPOINTS", "metastore.open.after_claim=pause", 1);
	setenv("KUBEFENCE_FAILPOINT_DIR", fpdir, 1);
	metad_start(&m, "svc-r", 0, "--control-socket", a.path, "--data-dir", d, "--pod-name",
	            "meta-r", "--pod-uid", "uid-1", NULL);
	unsetenv("KUBEFENCE_FAILPOINTS");
	unsetenv("KUBEFENCE_FAILPOINT_DIR");
	agent_handshake(&a, &m, "meta-r");

	/* DEMOTE during the recovery: answered while it is held */
	agent_grant(&a, "PROMOTE", 3, 60000);
	fp_wait_paused(fpdir, &m, "metastore.open.after_claim", marker, sizeof(marker));
	agent_send(&a, "DEMOTE epoch=3 reason=lost the lease");
	agent_expect(&a, "DEMOTED epoch=3", NULL, 0);
	ck_assert_int_eq(unlink(marker), 0);
	agent_expect(&a, "FAILED epoch=3 reason=", line, sizeof(line));
	agent_expect(&a, "STANDBY", NULL, 0);
	ck_assert_msg(!has_segment_of(d, 3), "the called-off promotion wrote its barrier");
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v", &u), PROTO_R_NOTMASTER);

	/* RENEW during the recovery: the grant that PROMOTE gave has run out
	 * when the recovery ends, the renewed one has not */
	t0 = clock_mono_usec();
	agent_grant(&a, "PROMOTE", 4, 1000);
	fp_wait_paused(fpdir, &m, "metastore.open.after_claim", marker, sizeof(marker));
	agent_grant(&a, "RENEW", 4, 60000);
	clock_sleep_until(t0 + 1200 * USEC_PER_MSEC);
	ck_assert_int_eq(unlink(marker), 0);
	agent_expect(&a, "READY epoch=4 ", NULL, 0);
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v4", &u), PROTO_R_OK);

	/* EOF during the recovery: called off; the service reconnects as
	 * standby, and a later promotion recovers the last write */
	agent_grant(&a, "PROMOTE", 5, 60000);
	fp_wait_paused(fpdir, &m, "metastore.open.after_claim", marker, sizeof(marker));
	close(a.fd);
	a.fd = -1;
	agent_handshake(&a, &m, "meta-r");
	ck_assert_int_eq(unlink(marker), 0);
	agent_grant(&a, "PROMOTE", 6, 60000);
	fp_wait_paused(fpdir, &m, "metastore.open.after_claim", marker, sizeof(marker));
	ck_assert_int_eq(unlink(marker), 0);
	agent_expect(&a, "READY epoch=6 ", NULL, 0);
	ck_assert_msg(!has_segment_of(d, 5), "the promotion whose connection closed went on");
	ck_assert_msg(has_segment_of(d, 6), "no barrier of epoch 6");
	ck_assert_int_eq(once(m.port, PROTO_OP_GET, "k", NULL, &u), PROTO_R_VALUE);

	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(old_protocol_and_foreign_clock_refused)
{
	struct metad m;
	struct agent a;
	struct proto_resp u;
	char line[4200];

	agent_listen(&a, "agent-v");
	metad_start(&m, "svc-v", 0, "--control-socket", a.path, "--data-dir", dir_of("ver"),
	            "--pod-name", "meta-v", "--pod-uid", "uid-1", NULL);
	agent_accept(&a);
	agent_expect(&a, "HELLO version=3 ", NULL, 0);
	agent_send(&a, "WELCOME version=1 node=node-a");
	agent_expect(&a, "ERROR reason=", line, sizeof(line));
	ck_assert_msg(strstr(line, "version 1"), "%s", line);
	/* a clock 10 s away: refused, never welcomed, never master */
	agent_send(&a, "WELCOME version=3 node=node-a mono_us=%" PRId64,
	           (int64_t)(clock_mono_usec() - 10 * USEC_PER_SEC));
	agent_expect(&a, "ERROR reason=CLOCK_MONOTONIC differs", NULL, 0);
	agent_grant(&a, "PROMOTE", 3, 30000);
	agent_expect(&a, "ERROR reason=expected WELCOME", NULL, 0);
	ck_assert_int_eq(once(m.port, PROTO_OP_PUT, "k", "v", &u), PROTO_R_NOTMASTER);
	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(two_services_one_volume)
{
	struct metad ma, mb;
	struct agent aa, ab;
	struct proto_resp u;
	char line[4200], out[256];
	const char *d = dir_of("shared");

	agent_listen(&aa, "agent-a");
	agent_listen(&ab, "agent-b");
	metad_start(&ma, "svc-a", 0, "--control-socket", aa.path, "--data-dir", d, "--pod-name",
	            "meta-a", "--pod-uid", "uid-1", NULL);
	metad_start(&mb, "svc-b", 0, "--control-socket", ab.path, "--data-dir", d, "--pod-name",
	            "meta-b", "--pod-uid", "uid-1", NULL);
	agent_handshake(&aa, &ma, "meta-a");
	agent_handshake(&ab, &mb, "meta-b");

	agent_grant(&aa, "PROMOTE", 5, 30000);
	agent_expect(&aa, "READY epoch=5 ", NULL, 0);
	ck_assert_int_eq(once(ma.port, PROTO_OP_PUT, "a", "1", &u), PROTO_R_OK);

	/* B takes over with a newer epoch while A still believes it is master */
	agent_grant(&ab, "PROMOTE", 6, 30000);
	agent_expect(&ab, "READY epoch=6 ", NULL, 0);
	ck_assert_int_eq(once(mb.port, PROTO_OP_GET, "a", NULL, &u), PROTO_R_VALUE);

	/* A's next write is written, then found fenced in its commit: its
	 * outcome is unknown (never "not made"); A demotes itself and says so */
	ck_assert_int_eq(once(ma.port, PROTO_OP_PUT, "a", "2", &u), PROTO_R_ERR);
	ck_assert_msg(strncmp(u.text, "indeterminate", 13) == 0, "%s", u.text);
	agent_expect(&aa, "FAILED epoch=5 reason=", line, sizeof(line));
	agent_expect(&aa, "STANDBY", NULL, 0);
	ck_assert_int_eq(once(ma.port, PROTO_OP_PUT, "a", "3", &u), PROTO_R_NOTMASTER);
	ck_assert_int_eq(once(ma.port, PROTO_OP_GET, "a", NULL, &u), PROTO_R_NOTMASTER);

	/* B is unaffected; A's write, left in A's segment after B's began, was
	 * never acknowledged nor kept */
	ck_assert_int_eq(once(mb.port, PROTO_OP_PUT, "b", "1", &u), PROTO_R_OK);
	ck_assert_int_eq(meta_run(mb.addr, NULL, out, sizeof(out), "get", "a", NULL), 0);
	ck_assert_str_eq(out, "1");
	ck_assert_int_eq(metad_stop(&mb, SIGTERM), 0);
	ck_assert_int_eq(metad_stop(&ma, SIGTERM), 0);
	agent_close(&aa);
	agent_close(&ab);
}
END_TEST

START_TEST(standby_reads)
{
	struct metad s, m;
	struct agent a;
	struct proto_resp u;
	char out[256];
	const char *d = dir_of("data");

	metad_start(&s, "seed", 0, "--standalone", "--epoch", "1", "--data-dir", d, NULL);
	ck_assert_int_eq(once(s.port, PROTO_OP_PUT, "k", "old", &u), PROTO_R_OK);
	ck_assert_int_eq(metad_stop(&s, SIGTERM), 0);
	agent_listen(&a, "agent");
	metad_start(&m, "svc", 0, "--control-socket", a.path, "--data-dir", d, "--standby-reads",
	            "--pod-name", "meta-0", "--pod-uid", "uid-1", NULL);
	agent_handshake(&a, &m, "meta-0");
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k", NULL), 0);
	ck_assert_str_eq(out, "old");
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "put", "k", "new", NULL), 3);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "stat", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "role=standby"));
	agent_close(&a);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

START_TEST(batch_mode)
{
	struct metad m;
	struct pbuf in = {0};
	static char out[1 << 20];
	char *p, *save = NULL;
	int lines = 0, ok = 0, values = 0;

	metad_start(&m, "a", 0, "--standalone", "--epoch", "1", "--data-dir", dir_of("data"), NULL);
	for (int i = 0; i < 500; i++)
		pbuf_printf(&in, "put key%d value %d with spaces\n", i, i);
	for (int i = 0; i < 499; i++)
		pbuf_printf(&in, "get key%d\n", i);
	pbuf_printf(&in, "get nokey\n");
	pbuf_append(&in, "", 1);
	ck_assert_int_eq(meta_run(m.addr, (char *)in.data, out, sizeof(out), "--batch", NULL), 0);
	for (p = strtok_r(out, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		lines++;
		if (strcmp(p, "OK") == 0)
			ok++;
		else if (strncmp(p, "VALUE value ", 12) == 0)
			values++;
	}
	ck_assert_int_eq(lines, 1000);
	ck_assert_int_eq(ok, 500);
	ck_assert_int_eq(values, 499);

	/* timed: one latency column per line, percentiles on stderr */
	in.len = 0;
	for (int i = 0; i < 1000; i++)
		pbuf_printf(&in, "put t%d %d\n", i, i);
	pbuf_append(&in, "", 1);
	ck_assert_int_eq(
	        meta_run(m.addr, (char *)in.data, out, sizeof(out), "--batch", "--timing", NULL),
	        0);
	lines = 0;
	save = NULL;
	for (p = strtok_r(out, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(p, '\t');

		ck_assert_ptr_nonnull(tab);
		ck_assert_str_eq(tab + 1, "OK");
		lines++;
	}
	ck_assert_int_eq(lines, 1000);
	pbuf_free(&in);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

/* Split one history record into its 8 fields (in place); false when it
 * has another number of fields. */
static bool hist_fields(char *line, char **f)
{
	char *save = NULL, *p;
	int n = 0;

	for (p = strtok_r(line, " ", &save); p; p = strtok_r(NULL, " ", &save)) {
		if (n == 8)
			return false;
		f[n++] = p;
	}
	return n == 8;
}

/* The records of history file path (comments skipped), at most max, each
 * split into fields; returns how many. */
static int hist_read(const char *path, char lines[][512], char *fields[][8], int max)
{
	FILE *f = fopen(path, "r");
	char buf[512];
	int n = 0;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	ck_assert_str_eq(buf, "# kfhistory 1\n");
	while (n < max && fgets(lines[n], sizeof(lines[n]), f)) {
		lines[n][strcspn(lines[n], "\n")] = '\0';
		if (lines[n][0] == '#')
			continue;
		ck_assert_msg(hist_fields(lines[n], fields[n]), "bad history record %d", n);
		n++;
	}
	fclose(f);
	return n;
}

/* Field by field: client, op, key, value, result, master; times sane. */
static void hist_expect(char **f, const char *client, const char *op, const char *key,
                        const char *value, const char *result, const char *master)
{
	unsigned long long t0 = strtoull(f[4], NULL, 10), t1 = strtoull(f[5], NULL, 10);

	ck_assert_str_eq(f[0], client);
	ck_assert_str_eq(f[1], op);
	ck_assert_str_eq(f[2], key);
	ck_assert_str_eq(f[3], value);
	ck_assert_str_eq(f[6], result);
	ck_assert_str_eq(f[7], master);
	/* CLOCK_REALTIME microseconds, invocation before completion */
	ck_assert_uint_gt(t0, 1600000000ull * 1000000ull);
	ck_assert_uint_le(t0, t1);
}

START_TEST(batch_history)
{
	static char lines[32][512];
	static char *f[32][8];
	struct metad m, sb;
	char out[4096], hist[300], sock[300];
	int n;

	snprintf(hist, sizeof(hist), "%s/history", workdir);
	metad_start(&m, "a", 0, "--standalone", "--epoch", "1", "--data-dir", dir_of("data"), NULL);
	ck_assert_int_eq(meta_run(m.addr,
	                          "put k1 v1\n"
	                          "get k1\n"
	                          "get nokey\n"
	                          "put k2 two words\n" /* not a token: refused, not sent */
	                          "list\n"
	                          "stat\n"
	                          "del k1\n"
	                          "del k1\n"
	                          "get k2\n",
	                          out, sizeof(out), "--batch", "--history", hist, "--client", "cA",
	                          NULL),
	                 0);
	ck_assert_ptr_nonnull(strstr(out, "OK\nVALUE v1\nNOTFOUND\nERR usage --history:"));
	/* one command, the default client name meta-PID */
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "--history", hist, "put", "k3",
	                          "v3", NULL),
	                 0);
	/* a value the history cannot carry is refused unsent */
	ck_assert_int_eq(
	        meta_run(m.addr, NULL, out, sizeof(out), "--history", hist, "put", "k4", "-", NULL),
	        2);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "get", "k4", NULL), 1);
	/* --client without --history, a client name with a space */
	ck_assert_int_eq(
	        meta_run(m.addr, NULL, out, sizeof(out), "--client", "x", "get", "k3", NULL), 2);
	ck_assert_int_eq(meta_run(m.addr, NULL, out, sizeof(out), "--history", hist, "--client",
	                          "a b", "get", "k3", NULL),
	                 2);

	/* a standby (its agent absent): NOTMASTER, "not made" (a write whose
	 * outcome is unknown is answered ERR indeterminate), so fail for a put
	 * or del, and a get refused is fail too */
	snprintf(sock, sizeof(sock), "%s/absent.sock", workdir);
	setenv("POD_NAME", "unused", 1);
	metad_start(&sb, "sb", 0, "--control-socket", sock, "--data-dir", dir_of("data2"), NULL);
	ck_assert_int_eq(meta_run(sb.addr, "put k5 v5\ndel k5\nget k5\n", out, sizeof(out),
	                          "--batch", "--history", hist, "--client", "cB", NULL),
	                 0);
	ck_assert_int_eq(metad_stop(&sb, SIGTERM), 0);

	/* the connection lost after the request went out: a time-out, info
	 * for a put (the server may have it), fail for a get */
	ck_assert_int_eq(kill(m.pid, SIGSTOP), 0);
	ck_assert_int_eq(meta_run(m.addr, "put k6 v6\n", out, sizeof(out), "--batch",
	                          "--timeout-ms", "300", "--history", hist, "--client", "cC", NULL),
	                 2);
	ck_assert_int_eq(meta_run(m.addr, "get k6\n", out, sizeof(out), "--batch", "--timeout-ms",
	                          "300", "--history", hist, "--client", "cD", NULL),
	                 2);
	ck_assert_int_eq(kill(m.pid, SIGCONT), 0);

	n = hist_read(hist, lines, f, 32);
	ck_assert_int_eq(n, 12);
	hist_expect(f[0], "cA", "put", "k1", "v1", "ok", m.addr);
	hist_expect(f[1], "cA", "get", "k1", "v1", "ok", m.addr);
	hist_expect(f[2], "cA", "get", "nokey", "-", "ok", m.addr);
	hist_expect(f[3], "cA", "del", "k1", "-", "ok", m.addr);
	hist_expect(f[4], "cA", "del", "k1", "-", "ok", m.addr); /* NOTFOUND: nothing to do */
	hist_expect(f[5], "cA", "get", "k2", "-", "ok", m.addr);
	ck_assert_str_eq(f[6][1], "put");
	ck_assert_int_eq(strncmp(f[6][0], "meta-", 5), 0);
	hist_expect(f[6], f[6][0], "put", "k3", "v3", "ok", m.addr);
	hist_expect(f[7], "cB", "put", "k5", "v5", "fail", sb.addr);
	hist_expect(f[8], "cB", "del", "k5", "-", "fail", sb.addr);
	hist_expect(f[9], "cB", "get", "k5", "-", "fail", sb.addr);
	hist_expect(f[10], "cC", "put", "k6", "v6", "info", m.addr);
	hist_expect(f[11], "cD", "get", "k6", "-", "fail", m.addr);
	ck_assert_int_eq(metad_stop(&m, SIGTERM), 0);
}
END_TEST

static Suite *metad_suite(void)
{
	Suite *s = suite_create("metad");
	struct {
		const char *name;
		const TTest *t;
	} tests[] = {
	        {"standalone_cli", standalone_cli},
	        {"standalone_raw", standalone_raw},
	        {"restart", restart_recovers},
	        {"kill9", kill9_keeps_acked},
	        {"control_roles", control_roles},
	        {"control_agent_absent", control_agent_absent},
	        {"two_services", two_services_one_volume},
	        {"standby_reads", standby_reads},
	        {"batch", batch_mode},
	        {"batch_history", batch_history},
	        {"sigterm_order", sigterm_stops_serving_before_eof},
	        {"grant_absolute", grant_read_late_ends_on_time},
	        {"control_during_recovery", control_served_during_recovery},
	        {"protocol_version", old_protocol_and_foreign_clock_refused},
	};

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		TCase *tc = tcase_create(tests[i].name);

		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 90);
		tcase_add_test(tc, tests[i].t);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	return kft_main(metad_suite(), NULL);
}
