/* kubefence-meta: the command-line client of kubefence-metad.  One command
 * from the command line, an interactive prompt, or a batch of commands from
 * stdin (one result line each, optionally timed), over one TCP connection
 * with a deadline on every request.  Exit codes: 0 ok, 1 not found, 3 not
 * master, 2 any other error (usage, connection, server error).
 *
 * With --history FILE (one command or --batch), every put, get and del is
 * appended to FILE as one operation of an operation history (lib/history.h,
 * docs/history.md) that kf-lincheck judges: client --client ID (default
 * meta-PID), the key, the value written or read, invocation and completion
 * times, MASTER = the --server address, and the result:
 *   put/del  as proto_write_outcome() (PROTOCOL.md, "What a client may
 *            conclude"): OK (and del's NOTFOUND): ok.  NOTMASTER, ERR
 *            badrequest, toolarge, busy, unavailable, deadline, io: fail.
 *            ERR indeterminate, another ERR code, a time-out, a connection
 *            lost once the request was (partly) sent: info.
 *   get      VALUE, NOTFOUND: ok; anything else: fail.
 * A history can only carry tokens, so with --history a put or del whose key
 * or value is not 1..1024 printable bytes without spaces (or a value "-") is
 * refused before it is sent; the value of each put must be unique in the
 * history (the caller's choice of values).  A get whose value cannot be
 * recorded is left out of the history (a read left out only weakens the
 * check), with a warning.  list and stat are not recorded. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/history.h"
#include "lib/util.h"
#include "storage/metad/proto.h"

#define EXIT_NOTFOUND  1
#define EXIT_ERROR     2
#define EXIT_NOTMASTER 3

enum mode {
	MODE_ONE,         /* one command from argv */
	MODE_INTERACTIVE, /* prompt on a TTY */
	MODE_BATCH,       /* one result line per stdin line */
};

struct client {
	const char *server;
	int timeout_ms;
	int fd;
	struct pbuf in;
	bool sent;                /* some byte of the last request may have reached the server */
	struct hist_writer *hist; /* --history, or NULL */
	const char *client_id;    /* --client */
};

/* One answer, payloads copied. */
struct reply {
	enum proto_resp_kind kind;
	struct pbuf data; /* VALUE, STATS */
	char text[PROTO_LINE_MAX];
	struct pbuf *keys; /* LIST */
	uint64_t nkeys;
	bool more;
};

static void reply_free(struct reply *r)
{
	pbuf_free(&r->data);
	for (uint64_t i = 0; i < r->nkeys; i++)
		pbuf_free(&r->keys[i]);
	free(r->keys);
	memset(r, 0, sizeof(*r));
}

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: kubefence-meta [--server HOST:PORT] [options] COMMAND\n"
	        "       kubefence-meta [--server HOST:PORT]            (interactive, on a TTY)\n"
	        "       kubefence-meta [--server HOST:PORT] --batch [--timing] < commands\n"
	        "       kubefence-meta ... --history FILE [--client ID] (--batch | COMMAND)\n"
	        "                      (also record each put/get/del in an operation history)\n"
	        "\n"
	        "Commands:\n"
	        "  put KEY VALUE       store VALUE (or the bytes of --value-file) under KEY\n"
	        "  get KEY             print the value (raw bytes; a newline is added on a TTY)\n"
	        "  del KEY             delete KEY (also: remove, rm)\n"
	        "  list [PREFIX]       print the keys beginning with PREFIX, one per line\n"
	        "  stat                print the server's role and counters\n"
	        "\n"
	        "Options:\n"
	        "  --server HOST:PORT  the MetaService (default 127.0.0.1:7480)\n"
	        "  --timeout-ms MS     deadline of the connection and of each request (default "
	        "2000)\n"
	        "  --value-file FILE   put: the value is the content of FILE (binary safe)\n"
	        "  --batch             read commands from stdin, print one result line each\n"
	        "  --timing            with --batch: prefix each result with its latency in us,\n"
	        "                      and print percentiles to stderr at the end\n"
	        "  --history FILE      append each put/get/del to the operation history FILE\n"
	        "                      (kf-lincheck's format; keys and values must be tokens:\n"
	        "                      printable, no spaces; a put's value unique in FILE)\n"
	        "  --client ID         the client's name in the history (default meta-PID)\n"
	        "  -h, --help          this text\n"
	        "\n"
	        "Exit codes: 0 ok, 1 not found, 3 not master, 2 other errors.\n");
}

/* ------------------------------------------------------------ network */

static int client_connect(struct client *c)
{
	struct addrinfo hints = {
	        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char host[256], *colon;
	usec_t deadline = clock_mono_usec() + c->timeout_ms * USEC_PER_MSEC;
	int fd = -1, r;

	if (str_copy(host, sizeof(host), c->server) < 0 || !(colon = strrchr(host, ':')) ||
	    colon == host || !colon[1]) {
		fprintf(stderr, "kubefence-meta: --server '%s' is not HOST:PORT\n", c->server);
		return -EINVAL;
	}
	*colon = '\0';
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	r = getaddrinfo(host, colon + 1, &hints, &res);
	if (r != 0) {
		fprintf(stderr, "kubefence-meta: cannot resolve '%s': %s\n", c->server,
		        gai_strerror(r));
		return -EHOSTUNREACH;
	}
	r = tcp_connect(res->ai_addr, (unsigned)res->ai_addrlen, deadline, &fd);
	if (r < 0)
		goto fail;
	freeaddrinfo(res);
	c->fd = fd;
	return 0;
fail:
	fprintf(stderr, "kubefence-meta: cannot connect to %s: %s\n", c->server,
	        r == -ETIMEDOUT ? "timed out" : strerror(-r));
	freeaddrinfo(res);
	return r;
}

static int send_all(struct client *c, const uint8_t *p, size_t len, usec_t deadline)
{
	return fd_send_all(c->fd, p, len, deadline);
}

/* Parse one response unit, reading more until the deadline. */
static int recv_unit(struct client *c, struct proto_resp *u, usec_t deadline, size_t *ret_used)
{
	for (;;) {
		int n = proto_parse_response(c->in.data, c->in.len, u);

		if (n < 0)
			return n;
		if (n > 0) {
			*ret_used = (size_t)n;
			return 0;
		}
		int w = fd_wait(c->fd, POLLIN, deadline);
		if (w < 0)
			return w;
		if (c->in.cap - c->in.len < 65536) {
			uint8_t *d = realloc(c->in.data, c->in.len + 65536);

			if (!d)
				return -ENOMEM;
			c->in.data = d;
			c->in.cap = c->in.len + 65536;
		}
		ssize_t r = read(c->fd, c->in.data + c->in.len, 65536);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		c->in.len += (size_t)r;
	}
}

/* Send one request and read its whole answer.  Returns 0 or -errno (the
 * connection is then unusable). */
static int roundtrip(struct client *c, enum proto_op op, const void *key, size_t klen,
                     const void *val, size_t vlen, struct reply *ret)
{
	usec_t deadline = clock_mono_usec() + c->timeout_ms * USEC_PER_MSEC;
	struct pbuf req = {0};
	struct proto_resp u;
	size_t used;
	int r;

	memset(ret, 0, sizeof(*ret));
	c->sent = false;
	r = proto_encode_request(&req, op, key, klen, val, vlen, 0);
	if (r >= 0) {
		/* a failed send may still have delivered a part, or all */
		c->sent = true;
		r = send_all(c, req.data, req.len, deadline);
	}
	pbuf_free(&req);
	if (r < 0)
		return r;
	r = recv_unit(c, &u, deadline, &used);
	if (r < 0)
		return r;
	ret->kind = u.kind;
	memcpy(ret->text, u.text, sizeof(ret->text));
	if (u.kind == PROTO_R_VALUE || u.kind == PROTO_R_STATS)
		r = pbuf_append(&ret->data, u.data, u.len);
	if (u.kind == PROTO_R_KEY)
		r = -EBADMSG;
	pbuf_consume(&c->in, used);
	if (r < 0 || u.kind != PROTO_R_KEYS)
		return r;
	ret->more = u.more;
	ret->keys = calloc(u.count ? u.count : 1, sizeof(*ret->keys));
	if (!ret->keys)
		return -ENOMEM;
	for (uint64_t i = 0, n = u.count; i < n; i++) {
		r = recv_unit(c, &u, deadline, &used);
		if (r >= 0 && u.kind != PROTO_R_KEY)
			r = -EBADMSG;
		if (r >= 0)
			r = pbuf_append(&ret->keys[i], u.data, u.len);
		if (r < 0)
			return r;
		ret->nkeys++;
		pbuf_consume(&c->in, used);
	}
	return 0;
}

/* ------------------------------------------------------------ output */

/* Bytes as one printable token: \\, \n, \xNN; spaces too when escape_space. */
static void print_escaped(FILE *f, const uint8_t *p, size_t n, bool escape_space)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\')
			fputs("\\\\", f);
		else if (p[i] == '\n')
			fputs("\\n", f);
		else if (p[i] < 0x20 || p[i] >= 0x7f || (escape_space && p[i] == ' '))
			fprintf(f, "\\x%02x", p[i]);
		else
			fputc(p[i], f);
	}
}

static int exit_code(const struct reply *r)
{
	switch (r->kind) {
	case PROTO_R_OK:
	case PROTO_R_VALUE:
	case PROTO_R_KEYS:
	case PROTO_R_STATS:
		return 0;
	case PROTO_R_NOTFOUND:
		return EXIT_NOTFOUND;
	case PROTO_R_NOTMASTER:
		return EXIT_NOTMASTER;
	default:
		return EXIT_ERROR;
	}
}

/* Human output (one command, interactive). */
static void print_human(const struct reply *r, const char *key, bool interactive)
{
	switch (r->kind) {
	case PROTO_R_OK:
		puts("OK");
		break;
	case PROTO_R_VALUE:
		if (interactive) {
			print_escaped(stdout, r->data.data, r->data.len, false);
			putchar('\n');
		} else {
			fwrite(r->data.data, 1, r->data.len, stdout);
			if (isatty(STDOUT_FILENO))
				putchar('\n');
		}
		break;
	case PROTO_R_NOTFOUND:
		fprintf(interactive ? stdout : stderr, "%s'%s' not found\n",
		        interactive ? "" : "kubefence-meta: ", key);
		break;
	case PROTO_R_NOTMASTER:
		fprintf(interactive ? stdout : stderr, "%snot master (master: %s)\n",
		        interactive ? "" : "kubefence-meta: ", r->text);
		break;
	case PROTO_R_ERR:
		fprintf(interactive ? stdout : stderr, "%sserver error: %s\n",
		        interactive ? "" : "kubefence-meta: ", r->text);
		break;
	case PROTO_R_KEYS:
		for (uint64_t i = 0; i < r->nkeys; i++) {
			print_escaped(stdout, r->keys[i].data, r->keys[i].len, false);
			putchar('\n');
		}
		if (r->more)
			fprintf(interactive ? stdout : stderr,
			        "(%" PRIu64 " keys shown; more exist: the server's list limit)\n",
			        r->nkeys);
		break;
	case PROTO_R_STATS:
		fwrite(r->data.data, 1, r->data.len, stdout);
		break;
	default:
		break;
	}
}

/* One result line (batch). */
static void print_line(const struct reply *r)
{
	switch (r->kind) {
	case PROTO_R_OK:
		fputs("OK", stdout);
		break;
	case PROTO_R_VALUE:
		fputs("VALUE ", stdout);
		print_escaped(stdout, r->data.data, r->data.len, false);
		break;
	case PROTO_R_NOTFOUND:
		fputs("NOTFOUND", stdout);
		break;
	case PROTO_R_NOTMASTER:
		printf("NOTMASTER master=%s", r->text);
		break;
	case PROTO_R_ERR:
		printf("ERR %s", r->text);
		break;
	case PROTO_R_KEYS:
		printf("KEYS %" PRIu64 "%s", r->nkeys, r->more ? " more" : "");
		for (uint64_t i = 0; i < r->nkeys; i++) {
			putchar(' ');
			print_escaped(stdout, r->keys[i].data, r->keys[i].len, true);
		}
		break;
	case PROTO_R_STATS:
		fputs("STATS ", stdout);
		for (size_t i = 0; i < r->data.len; i++)
			if (r->data.data[i] != '\n' || i + 1 < r->data.len)
				putchar(r->data.data[i] == '\n' ? ' ' : r->data.data[i]);

		break;
	default:
		fputs("ERR client unexpected answer", stdout);
		break;
	}
	putchar('\n');
}

/* ------------------------------------------------------------ commands */

struct cmd {
	enum proto_op op;
	const char *key; /* NUL-terminated; LIST: prefix, may be "" */
	const uint8_t *value;
	size_t value_len;
};

/* Parse a command from words; value_rest (if non-NULL) is the raw rest of
 * the line after the key for put.  Returns 0, 1 for help, 2 for quit, or
 * -EINVAL with the reason in err. */
static int parse_cmd(int n, char **w, const char *value_rest, struct cmd *c, char *err,
                     size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (n < 1) {
		errbuf_set(err, errlen, "no command");
		return -EINVAL;
	}
	if (strcmp(w[0], "help") == 0 || strcmp(w[0], "?") == 0)
		return 1;
	if (strcmp(w[0], "quit") == 0 || strcmp(w[0], "exit") == 0)
		return 2;
	if (strcmp(w[0], "put") == 0) {
		c->op = PROTO_OP_PUT;
		if (n < 2 || (n < 3 && !value_rest)) {
			errbuf_set(err, errlen, "usage: put KEY VALUE");
			return -EINVAL;
		}
		if (!value_rest && n > 3) {
			errbuf_set(err, errlen, "usage: put KEY VALUE (quote a VALUE with spaces)");
			return -EINVAL;
		}
		c->key = w[1];
		if (value_rest) {
			c->value = (const uint8_t *)value_rest;
			c->value_len = strlen(value_rest);
		} else {
			c->value = (const uint8_t *)w[2];
			c->value_len = strlen(w[2]);
		}
		return 0;
	}
	if (strcmp(w[0], "get") == 0 || strcmp(w[0], "del") == 0 || strcmp(w[0], "remove") == 0 ||
	    strcmp(w[0], "rm") == 0) {
		c->op = strcmp(w[0], "get") == 0 ? PROTO_OP_GET : PROTO_OP_DEL;
		if (n != 2) {
			errbuf_set(err, errlen, "usage: %s KEY", w[0]);
			return -EINVAL;
		}
		c->key = w[1];
		return 0;
	}
	if (strcmp(w[0], "list") == 0 || strcmp(w[0], "ls") == 0) {
		c->op = PROTO_OP_LIST;
		if (n > 2) {
			errbuf_set(err, errlen, "usage: list [PREFIX]");
			return -EINVAL;
		}
		c->key = n == 2 ? w[1] : "";
		return 0;
	}
	if (strcmp(w[0], "stat") == 0 || strcmp(w[0], "stats") == 0) {
		c->op = PROTO_OP_STAT;
		if (n != 1) {
			errbuf_set(err, errlen, "usage: stat");
			return -EINVAL;
		}
		c->key = "";
		return 0;
	}
	errbuf_set(err, errlen, "unknown command '%s' (try help)", w[0]);
	return -EINVAL;
}

/* ------------------------------------------------------------ history */

/* Whether s[0..n) is a history token: 1..1024 printable ASCII bytes, no
 * space (lib/history.h). */
static bool is_token(const uint8_t *s, size_t n)
{
	if (n < 1 || n > 1024)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f)
			return false;
	return true;
}

/* The history result of answer r (k: roundtrip's return) to op; see the
 * header comment. */
static enum hist_result classify(enum proto_op op, int k, const struct reply *r, bool sent)
{
	static const enum hist_result of[] = {
	        [PROTO_MADE] = HIST_OK, [PROTO_NOT_MADE] = HIST_FAIL, [PROTO_UNKNOWN] = HIST_INFO};

	if (op == PROTO_OP_GET)
		return k == 0 && (r->kind == PROTO_R_VALUE || r->kind == PROTO_R_NOTFOUND)
		               ? HIST_OK
		               : HIST_FAIL;
	return of[proto_write_outcome(k < 0 ? PROTO_R_NONE : r->kind, r->text, sent)];
}

/* Refuse (-EINVAL, err says why) a put/del that the history could not
 * carry; anything else is fine. */
static int check_recordable(const struct client *cl, const struct cmd *c, char *err, size_t errlen)
{
	if (!cl->hist || (c->op != PROTO_OP_PUT && c->op != PROTO_OP_GET && c->op != PROTO_OP_DEL))
		return 0;
	if (!is_token((const uint8_t *)c->key, strlen(c->key))) {
		errbuf_set(err, errlen,
		           "--history: the key is not a history token (1..1024 printable bytes, no "
		           "spaces); not sent");
		return -EINVAL;
	}
	if (c->op == PROTO_OP_PUT &&
	    (!is_token(c->value, c->value_len) || (c->value_len == 1 && c->value[0] == '-'))) {
		errbuf_set(err, errlen,
		           "--history: the value is not a history token (1..1024 printable bytes, "
		           "no spaces, not \"-\"); not sent");
		return -EINVAL;
	}
	return 0;
}

/* Append the operation c, invoked at t0 and answered (r, or k < 0) at t1.
 * Returns 0 or the -errno of the write (reported here). */
static int record(struct client *cl, const struct cmd *c, int k, const struct reply *r, uint64_t t0,
                  uint64_t t1)
{
	enum hist_op hop;
	enum hist_result res;
	char *value = NULL;
	int w;

	if (!cl->hist || (c->op != PROTO_OP_PUT && c->op != PROTO_OP_GET && c->op != PROTO_OP_DEL))
		return 0;
	hop = c->op == PROTO_OP_PUT ? HIST_PUT : c->op == PROTO_OP_GET ? HIST_GET : HIST_DEL;
	res = classify(c->op, k, r, cl->sent);
	if (c->op == PROTO_OP_PUT) {
		value = strndup((const char *)c->value, c->value_len);
	} else if (c->op == PROTO_OP_GET && res == HIST_OK && r->kind == PROTO_R_VALUE) {
		if (!is_token(r->data.data, r->data.len) ||
		    (r->data.len == 1 && r->data.data[0] == '-')) {
			fprintf(stderr,
			        "kubefence-meta: --history: the value read from '%s' is not a "
			        "history token; this get is left out of the history\n",
			        c->key);
			return 0;
		}
		value = strndup((const char *)r->data.data, r->data.len);
	}
	if (!value &&
	    (hop == HIST_PUT || (hop == HIST_GET && res == HIST_OK && r->kind == PROTO_R_VALUE))) {
		fprintf(stderr, "kubefence-meta: out of memory\n");
		return -ENOMEM;
	}
	w = hist_record(cl->hist, cl->client_id, hop, c->key, value, t0, t1, res, cl->server);
	free(value);
	if (w < 0)
		fprintf(stderr, "kubefence-meta: --history: cannot record %s '%s': %s\n",
		        hist_op_name(hop), c->key, strerror(-w));
	return w;
}

/* Send c and read its answer into r (roundtrip's contract); with --history,
 * also record it.  *ret_hist: the -errno of a failed record, else 0. */
static int run_cmd(struct client *cl, const struct cmd *c, struct reply *r, int *ret_hist)
{
	uint64_t t0 = hist_now_us(), t1;
	int k = roundtrip(cl, c->op, c->key, strlen(c->key), c->value, c->value_len, r);

	t1 = hist_now_us();
	*ret_hist = record(cl, c, k, r, t0, t1);
	return k;
}

static const char *const interactive_help =
        "  put KEY VALUE     store VALUE (the rest of the line) under KEY\n"
        "  get KEY           show the value (non-printable bytes escaped)\n"
        "  remove KEY        delete KEY (also: del, rm)\n"
        "  list [PREFIX]     keys beginning with PREFIX\n"
        "  stat              the server's role and counters\n"
        "  help, quit\n";

/* Split a line into at most 3 words; *rest is the raw text after the
 * second word (the value of put). */
static int split_line(char *line, char **w, const char **rest)
{
	int n = 0;
	char *p = line;

	*rest = NULL;
	while (n < 3) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (n == 2) {
			*rest = p; /* keep the value's inner spaces */
			w[n++] = p;
			break;
		}
		w[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

static int cmp_usec(const void *a, const void *b)
{
	usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

	return x < y ? -1 : x > y;
}

static void print_percentiles(const char *what, usec_t *v, size_t n)
{
	if (n == 0)
		return;
	qsort(v, n, sizeof(*v), cmp_usec);
	fprintf(stderr,
	        "timing: %s n=%zu p50=%" PRId64 "us p90=%" PRId64 "us p99=%" PRId64
	        "us max=%" PRId64 "us\n",
	        what, n, v[n / 2], v[n * 9 / 10], v[n * 99 / 100], v[n - 1]);
}

/* Interactive and batch: commands from stdin. */
static int run_stdin(struct client *cl, enum mode mode, bool timing)
{
	char *line = NULL, err[256];
	size_t cap = 0;
	usec_t *all = NULL, *puts_ = NULL;
	size_t nall = 0, nput = 0, capt = 0;
	int ret = 0;

	for (;;) {
		struct cmd c;
		struct reply r;
		char *w[3];
		const char *rest;
		ssize_t len;
		int n, k, hk;
		usec_t t0, dt;

		if (mode == MODE_INTERACTIVE) {
			fputs("meta> ", stdout);
			fflush(stdout);
		}
		len = getline(&line, &cap, stdin);
		if (len < 0)
			break;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		n = split_line(line, w, &rest);
		if (n == 0 || w[0][0] == '#')
			continue;
		k = parse_cmd(n, w, strcmp(w[0], "put") == 0 ? rest : NULL, &c, err, sizeof(err));
		if (k == 2)
			break;
		if (k == 1) {
			if (mode == MODE_INTERACTIVE)
				fputs(interactive_help, stdout);
			else
				puts("ERR usage commands: put get del list stat");
			continue;
		}
		if (k < 0) {
			if (mode == MODE_INTERACTIVE)
				printf("%s\n", err);
			else
				printf("%sERR usage %s\n", timing ? "0\t" : "", err);
			continue;
		}
		if (check_recordable(cl, &c, err, sizeof(err)) < 0) {
			if (mode == MODE_INTERACTIVE)
				printf("%s\n", err);
			else
				printf("%sERR usage %s\n", timing ? "0\t" : "", err);
			continue;
		}
		t0 = clock_mono_usec();
		k = run_cmd(cl, &c, &r, &hk);
		dt = clock_mono_usec() - t0;
		if (hk < 0) {
			/* a history with a write missing would mislead its checker */
			fprintf(stderr, "kubefence-meta: --history is incomplete; giving up\n");
			reply_free(&r);
			ret = EXIT_ERROR;
			break;
		}
		if (k < 0) {
			fprintf(stderr, "kubefence-meta: %s: %s; giving up\n", cl->server,
			        k == -ETIMEDOUT ? "no answer within --timeout-ms"
			        : k == -EBADMSG ? "malformed answer"
			                        : strerror(-k));
			reply_free(&r);
			ret = EXIT_ERROR;
			break;
		}
		if (mode == MODE_INTERACTIVE) {
			print_human(&r, c.key, true);
		} else {
			if (timing) {
				printf("%" PRId64 "\t", dt);
				if (nall == capt) {
					capt = capt ? capt * 2 : 1024;
					all = realloc(all, capt * sizeof(*all));
					puts_ = realloc(puts_, capt * sizeof(*puts_));
					if (!all || !puts_) {
						fprintf(stderr, "kubefence-meta: out of memory\n");
						ret = EXIT_ERROR;
						reply_free(&r);
						break;
					}
				}
				all[nall++] = dt;
				if (c.op == PROTO_OP_PUT)
					puts_[nput++] = dt;
			}
			print_line(&r);
		}
		reply_free(&r);
	}
	if (mode == MODE_INTERACTIVE)
		putchar('\n');
	fflush(stdout);
	if (timing) {
		print_percentiles("all", all, nall);
		print_percentiles("put", puts_, nput);
	}
	free(all);
	free(puts_);
	free(line);
	return ret;
}

static int read_file(const char *path, struct pbuf *ret)
{
	uint8_t buf[8192];
	FILE *f = fopen(path, "rb");
	size_t n;
	int r = 0;

	if (!f) {
		r = -errno;
		fprintf(stderr, "kubefence-meta: --value-file '%s': %s\n", path, strerror(-r));
		return r;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (ret->len + n > PROTO_VALUE_MAX + 1)
			break; /* the server says "too large"; do not read gigabytes */
		if (pbuf_append(ret, buf, n) < 0) {
			r = -ENOMEM;
			break;
		}
	}
	if (r == 0 && ferror(f)) {
		r = -EIO;
		fprintf(stderr, "kubefence-meta: --value-file '%s': read error\n", path);
	}
	fclose(f);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"server", required_argument, NULL, 's'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"value-file", required_argument, NULL, 'f'},
	        {"batch", no_argument, NULL, 'b'},
	        {"timing", no_argument, NULL, 'T'},
	        {"history", required_argument, NULL, 'H'},
	        {"client", required_argument, NULL, 'C'},
	        {"help", no_argument, NULL, 'h'},
	        {0},
	};
	struct client cl = {.server = "127.0.0.1:7480", .timeout_ms = 2000, .fd = -1};
	const char *value_file = NULL;
	struct pbuf file = {0};
	bool batch = false, timing = false;
	enum mode mode = MODE_ONE;
	struct cmd c;
	struct reply r = {0};
	char err[256], *end, client_id[32];
	const char *history = NULL;
	long t;
	int o, k, hk, ret = EXIT_ERROR;

	while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			cl.server = optarg;
			break;
		case 't':
			errno = 0;
			t = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || t < 1 || t > 3600000) {
				fprintf(stderr,
				        "kubefence-meta: --timeout-ms: '%s' is not a number of "
				        "milliseconds in [1, 3600000]\n",
				        optarg);
				return EXIT_ERROR;
			}
			cl.timeout_ms = (int)t;
			break;
		case 'f':
			value_file = optarg;
			break;
		case 'b':
			batch = true;
			break;
		case 'T':
			timing = true;
			break;
		case 'H':
			history = optarg;
			break;
		case 'C':
			if (!is_token((const uint8_t *)optarg, strlen(optarg))) {
				fprintf(stderr,
				        "kubefence-meta: --client: '%s' is not 1..1024 printable "
				        "bytes without spaces\n",
				        optarg);
				return EXIT_ERROR;
			}
			cl.client_id = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_ERROR;
		}
	}
	if (optind < argc) {
		if (batch) {
			fprintf(stderr, "kubefence-meta: --batch reads commands from stdin; no "
			                "command arguments\n");
			return EXIT_ERROR;
		}
		char **w = argv + optind;
		int n = argc - optind;

		if (value_file && n == 2 && strcmp(w[0], "put") == 0) {
			if (read_file(value_file, &file) < 0)
				return EXIT_ERROR;
			k = parse_cmd(n, w, "", &c, err, sizeof(err));
			c.value = file.data;
			c.value_len = file.len;
		} else if (value_file) {
			fprintf(stderr, "kubefence-meta: --value-file goes with 'put KEY' only\n");
			return EXIT_ERROR;
		} else {
			k = parse_cmd(n, w, NULL, &c, err, sizeof(err));
		}
		if (k == 1) {
			usage(stdout);
			return 0;
		}
		if (k != 0) {
			fprintf(stderr, "kubefence-meta: %s\n", k == 2 ? "nothing to do" : err);
			usage(stderr);
			pbuf_free(&file);
			return EXIT_ERROR;
		}
	} else if (batch) {
		mode = MODE_BATCH;
	} else if (isatty(STDIN_FILENO)) {
		mode = MODE_INTERACTIVE;
	} else {
		fprintf(stderr, "kubefence-meta: no command (use --batch to read commands from "
		                "stdin)\n");
		usage(stderr);
		return EXIT_ERROR;
	}
	if ((timing && mode != MODE_BATCH) || (value_file && mode != MODE_ONE)) {
		fprintf(stderr, "kubefence-meta: --timing needs --batch; --value-file needs a put "
		                "command\n");
		pbuf_free(&file);
		return EXIT_ERROR;
	}
	if (cl.client_id && !history) {
		fprintf(stderr, "kubefence-meta: --client needs --history\n");
		pbuf_free(&file);
		return EXIT_ERROR;
	}
	if (history) {
		if (mode == MODE_INTERACTIVE) {
			fprintf(stderr, "kubefence-meta: --history needs --batch or a command\n");
			pbuf_free(&file);
			return EXIT_ERROR;
		}
		if (!cl.client_id) {
			snprintf(client_id, sizeof(client_id), "meta-%ld", (long)getpid());
			cl.client_id = client_id;
		}
		if (!is_token((const uint8_t *)cl.server, strlen(cl.server))) {
			fprintf(stderr,
			        "kubefence-meta: --history: --server '%s' cannot be recorded as "
			        "the master (spaces or control bytes)\n",
			        cl.server);
			pbuf_free(&file);
			return EXIT_ERROR;
		}
		k = hist_open(history, &cl.hist);
		if (k < 0) {
			fprintf(stderr, "kubefence-meta: --history '%s': %s\n", history,
			        strerror(-k));
			pbuf_free(&file);
			return EXIT_ERROR;
		}
	}
	if (client_connect(&cl) < 0)
		goto out;
	if (mode != MODE_ONE) {
		ret = run_stdin(&cl, mode, timing);
		goto out;
	}
	if (check_recordable(&cl, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "kubefence-meta: %s\n", err);
		goto out;
	}
	k = run_cmd(&cl, &c, &r, &hk);
	if (hk < 0)
		goto out;
	if (k < 0) {
		fprintf(stderr, "kubefence-meta: %s: %s\n", cl.server,
		        k == -ETIMEDOUT ? "no answer within --timeout-ms"
		        : k == -EBADMSG ? "malformed answer"
		                        : strerror(-k));
		goto out;
	}
	print_human(&r, c.key, false);
	ret = exit_code(&r);
out:
	fflush(stdout);
	reply_free(&r);
	pbuf_free(&file);
	pbuf_free(&cl.in);
	if (cl.fd >= 0)
		close(cl.fd);
	cl.hist = hist_close(cl.hist);
	return ret;
}
