/* failpoint: the run-time side of the fault points declared in
 * failpoint_table.h (see failpoint.h for the syntax and the control
 * directory).
 *
 * Everything here is off the hot path: FAILPOINT() tests one global and
 * calls failpoint_hit_() only while something is armed.  The armed set is a
 * small array guarded by one mutex; an action's effect (sleeping, pausing,
 * stopping) happens after the mutex is dropped, so a paused thread never
 * blocks another thread's point. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"

#define MAX_TERMS 8

enum fp_action { FA_OFF, FA_PRINT, FA_PAUSE, FA_STOP, FA_CRASH, FA_DELAY, FA_ERROR };

static const char *const action_names[] = {
        [FA_OFF] = "off",     [FA_PRINT] = "print", [FA_PAUSE] = "pause", [FA_STOP] = "stop",
        [FA_CRASH] = "crash", [FA_DELAY] = "delay", [FA_ERROR] = "error",
};

struct fp_term {
	long count; /* hits left for this term; -1: every hit */
	enum fp_action action;
	long arg; /* delay: ms; error: errno */
};

struct fp_point {
	struct fp_term terms[MAX_TERMS];
	size_t n, cur;
	unsigned long hits;
};

static const struct {
	const char *name, *help;
} table[FP__COUNT] = {
#define FP_ROW_(id, name, help) [FP_##id] = {name, help},
        KF_FAILPOINTS(FP_ROW_)
#undef FP_ROW_
};

int failpoint_active_;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fp_point points[FP__COUNT];
static bool any_armed;
/* half of PATH_MAX, so that DIR/NAME.PID.paused always fits a path */
static char ctl_dir[PATH_MAX / 2];
static struct {
	bool seen; /* DIR/failpoints existed when last looked at */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
} spec_file;

static const struct {
	const char *name;
	int value;
} errnos[] = {
        {"EIO", EIO},
        {"ETIMEDOUT", ETIMEDOUT},
        {"ECONNRESET", ECONNRESET},
        {"ECONNREFUSED", ECONNREFUSED},
        {"ENOSPC", ENOSPC},
        {"EAGAIN", EAGAIN},
        {"ESTALE", ESTALE},
        {"EACCES", EACCES},
        {"EBADE", EBADE},
        {"ENOMEM", ENOMEM},
        {"EPIPE", EPIPE},
        {"EINTR", EINTR},
        {"EROFS", EROFS},
        {"EBADMSG", EBADMSG},
        {"EBUSY", EBUSY},
        {"ENOENT", ENOENT},
        {"EPROTO", EPROTO},
        {"EHOSTUNREACH", EHOSTUNREACH},
};

const char *failpoint_name(enum failpoint_id id)
{
	return (unsigned)id < FP__COUNT ? table[id].name : "?";
}

int failpoint_from_name(const char *name)
{
	for (int i = 0; i < FP__COUNT; i++)
		if (strcmp(table[i].name, name) == 0)
			return i;
	return -ENOENT;
}

static int parse_long(const char *s, size_t len, long lo, long hi, long *ret)
{
	char buf[32], *end;
	long v;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_errno(const char *s, size_t len, long *ret)
{
	for (size_t i = 0; i < ELEMENTSOF(errnos); i++)
		if (strlen(errnos[i].name) == len && memcmp(errnos[i].name, s, len) == 0) {
			*ret = errnos[i].value;
			return 0;
		}
	return parse_long(s, len, 1, 4095, ret);
}

/* One TERM: [N*]ACTION[(ARG)], exactly `len` bytes at s. */
static int parse_term(const char *s, size_t len, struct fp_term *t, char *err, size_t errlen)
{
	const char *star = memchr(s, '*', len), *open, *word;
	size_t wlen;

	*t = (struct fp_term){.count = -1};
	if (star) {
		if (parse_long(s, (size_t)(star - s), 1, 1000000000L, &t->count) < 0) {
			errbuf_set(err, errlen, "'%.*s': the count before '*' must be 1 or more",
			           (int)len, s);
			return -EINVAL;
		}
		len -= (size_t)(star + 1 - s);
		s = star + 1;
	}
	word = s;
	open = memchr(s, '(', len);
	wlen = open ? (size_t)(open - s) : len;
	for (size_t a = 0; a < ELEMENTSOF(action_names); a++) {
		if (strlen(action_names[a]) != wlen || memcmp(action_names[a], word, wlen) != 0)
			continue;
		t->action = (enum fp_action)a;
		if (t->action == FA_DELAY || t->action == FA_ERROR) {
			const char *arg = open ? open + 1 : NULL;
			size_t alen = open ? len - wlen - 1 : 0;
			int r;

			if (!arg || alen == 0 || arg[alen - 1] != ')') {
				errbuf_set(err, errlen,
				           "'%.*s': %s needs an argument in parentheses", (int)len,
				           s, action_names[a]);
				return -EINVAL;
			}
			alen--;
			r = t->action == FA_DELAY ? parse_long(arg, alen, 0, 3600000L, &t->arg)
			                          : parse_errno(arg, alen, &t->arg);
			if (r < 0) {
				errbuf_set(
				        err, errlen,
				        t->action == FA_DELAY
				                ? "'%.*s': delay takes milliseconds, 0 to 3600000"
				                : "'%.*s': error takes an errno name (EIO, "
				                  "ETIMEDOUT, ...) or a number 1 to 4095",
				        (int)len, s);
				return -EINVAL;
			}
		} else if (open) {
			errbuf_set(err, errlen, "'%.*s': %s takes no argument", (int)len, s,
			           action_names[a]);
			return -EINVAL;
		}
		return 0;
	}
	errbuf_set(err, errlen,
	           "'%.*s': unknown action (off, print, pause, stop, crash, delay(MS), "
	           "error(ERRNO))",
	           (int)len, s);
	return -EINVAL;
}

/* Parse a whole spec list into `out` (all points) without touching the armed
 * set.  Returns 0, or -EINVAL with the reason. */
static int parse_spec(const char *spec, bool have_dir, struct fp_point out[FP__COUNT],
                      bool *ret_any, char *err, size_t errlen)
{
	const char *p = spec ? spec : "";
	bool any = false;

	memset(out, 0, sizeof(struct fp_point) * FP__COUNT);
	while (*p) {
		size_t len = strcspn(p, ";\n");
		const char *e = p + len, *after = *e ? e + 1 : e, *eq, *q;
		char name[128];
		int id;

		/* trim spaces; skip empty entries and comment lines */
		while (p < e && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if (p == e || *p == '#')
			goto next;
		eq = memchr(p, '=', (size_t)(e - p));
		if (!eq || eq == p || (size_t)(eq - p) >= sizeof(name)) {
			errbuf_set(err, errlen, "'%.*s': expected NAME=ACTION", (int)(e - p), p);
			return -EINVAL;
		}
		memcpy(name, p, (size_t)(eq - p));
		name[eq - p] = '\0';
		id = failpoint_from_name(name);
		if (id < 0) {
			errbuf_set(
			        err, errlen,
			        "'%s': unknown fault point ('kubefencectl failpoints' lists them)",
			        name);
			return -EINVAL;
		}
		if (out[id].n) {
			errbuf_set(err, errlen, "'%s': given twice", name);
			return -EINVAL;
		}
		for (q = eq + 1;;) {
			const char *arrow = NULL;
			size_t tlen;

			for (const char *x = q; x + 1 < e; x++)
				if (x[0] == '-' && x[1] == '>') {
					arrow = x;
					break;
				}
			tlen = (size_t)((arrow ? arrow : e) - q);
			if (out[id].n == MAX_TERMS) {
				errbuf_set(err, errlen, "'%s': at most %d terms", name, MAX_TERMS);
				return -EINVAL;
			}
			if (parse_term(q, tlen, &out[id].terms[out[id].n], err, errlen) < 0)
				return -EINVAL;
			if (out[id].terms[out[id].n].action == FA_PAUSE && !have_dir) {
				errbuf_set(err, errlen,
				           "'%s': pause needs a control directory "
				           "(KUBEFENCE_FAILPOINT_DIR) to be released through",
				           name);
				return -EINVAL;
			}
			out[id].n++;
			if (!arrow)
				break;
			q = arrow + 2;
		}
		any = true;
	next:
		p = after;
	}
	*ret_any = any;
	return 0;
}

static void update_active_locked(void)
{
	__atomic_store_n(&failpoint_active_, any_armed || ctl_dir[0], __ATOMIC_RELEASE);
}

int failpoint_set(const char *spec, char *err, size_t errlen)
{
	static struct fp_point parsed[FP__COUNT]; /* under mu */
	bool any;
	int r;

	pthread_mutex_lock(&mu);
	r = parse_spec(spec, ctl_dir[0] != '\0', parsed, &any, err, errlen);
	if (r >= 0) {
		memcpy(points, parsed, sizeof(points));
		any_armed = any;
		update_active_locked();
	}
	pthread_mutex_unlock(&mu);
	return r;
}

int failpoint_set_dir(const char *dir)
{
	int r = 0;

	pthread_mutex_lock(&mu);
	if (!dir)
		ctl_dir[0] = '\0';
	else
		r = str_copy(ctl_dir, sizeof(ctl_dir), dir) < 0 ? -EINVAL : 0;
	if (r < 0)
		ctl_dir[0] = '\0';
	memset(&spec_file, 0, sizeof(spec_file));
	update_active_locked();
	pthread_mutex_unlock(&mu);
	return r;
}

/* Re-read DIR/failpoints when it changed since the last look.  Called with
 * mu held.  A bad file is reported and the armed set kept. */
static void reload_spec_file_locked(void)
{
	static struct fp_point parsed[FP__COUNT];
	char path[PATH_MAX], err[512];
	struct stat st;
	char *text = NULL;
	size_t cap = 0;
	bool any;
	FILE *f;

	snprintf(path, sizeof(path), "%s/failpoints", ctl_dir);
	if (stat(path, &st) < 0) {
		spec_file.seen = false;
		return;
	}
	if (spec_file.seen && spec_file.dev == st.st_dev && spec_file.ino == st.st_ino &&
	    spec_file.size == st.st_size && spec_file.mtime.tv_sec == st.st_mtim.tv_sec &&
	    spec_file.mtime.tv_nsec == st.st_mtim.tv_nsec)
		return;
	spec_file.seen = true;
	spec_file.dev = st.st_dev;
	spec_file.ino = st.st_ino;
	spec_file.size = st.st_size;
	spec_file.mtime = st.st_mtim;
	f = fopen(path, "re");
	if (!f)
		return;
	if (getdelim(&text, &cap, '\0', f) < 0) {
		free(text);
		text = NULL;
	}
	fclose(f);
	if (parse_spec(text ? text : "", true, parsed, &any, err, sizeof(err)) < 0) {
		log_error("fault points: %s: %s; keeping the armed set", path, err);
	} else {
		memcpy(points, parsed, sizeof(points));
		any_armed = any;
		log_warning("fault points re-armed from %s", path);
	}
	free(text);
}

static void note_fired(const char *name, const char *what)
{
	char path[PATH_MAX], line[256];
	int fd, n;

	if (!ctl_dir[0])
		return;
	snprintf(path, sizeof(path), "%s/fired", ctl_dir);
	n = snprintf(line, sizeof(line), "%lld %ld %s %s\n", (long long)clock_real_usec(),
	             (long)getpid(), name, what);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (n > 0)
		(void)!write(fd, line, (size_t)n);
	close(fd);
}

/* Block the calling thread until the test removes DIR/NAME.PID.paused. */
static void pause_here(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct timespec ts = {0, 1000000};
	int fd;

	snprintf(path, sizeof(path), "%s/%s.%ld.paused", dir, name, (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("fault point '%s': cannot create '%s': %s; not pausing", name, path,
		          strerror(errno));
		return;
	}
	close(fd);
	log_warning("fault point '%s': paused; remove '%s' to continue", name, path);
	while (access(path, F_OK) == 0)
		nanosleep(&ts, NULL);
	log_warning("fault point '%s': released", name);
}

static bool crashing; /* atomic: a thread is on its way to a crash's _exit */

int failpoint_hit_(enum failpoint_id id)
{
	struct fp_term t = {.action = FA_OFF};
	struct fp_point *p;
	char dir[sizeof(ctl_dir)], what[48];
	const char *name = failpoint_name(id);

	if ((unsigned)id >= FP__COUNT)
		return 0;
	pthread_mutex_lock(&mu);
	if (ctl_dir[0])
		reload_spec_file_locked();
	p = &points[id];
	p->hits++;
	while (p->cur < p->n && p->terms[p->cur].count == 0)
		p->cur++;
	if (p->cur < p->n) {
		t = p->terms[p->cur];
		if (p->terms[p->cur].count > 0)
			p->terms[p->cur].count--;
	}
	str_copy(dir, sizeof(dir), ctl_dir);
	pthread_mutex_unlock(&mu);

	if (t.action == FA_OFF)
		return 0;
	/* A process crashes once: a second thread reaching a crash while the
	 * first one is on its way to _exit would report (and log) a second
	 * crash, and might act on state the crash is about to lose.  It waits
	 * for the exit instead. */
	if (t.action == FA_CRASH && __atomic_exchange_n(&crashing, true, __ATOMIC_SEQ_CST))
		for (;;)
			pause();
	if (t.action == FA_DELAY || t.action == FA_ERROR)
		snprintf(what, sizeof(what), "%s(%ld)", action_names[t.action], t.arg);
	else
		snprintf(what, sizeof(what), "%s", action_names[t.action]);
	log_warning("fault point '%s': %s", name, what);
	note_fired(name, what);
	switch (t.action) {
	case FA_PRINT:
	case FA_OFF:
		return 0;
	case FA_PAUSE:
		if (dir[0])
			pause_here(dir, name);
		return 0;
	case FA_STOP:
		(void)raise(SIGSTOP);
		return 0;
	case FA_CRASH:
		_exit(FAILPOINT_CRASH_STATUS);
	case FA_DELAY:
		clock_sleep_until(clock_mono_usec() + t.arg * USEC_PER_MSEC);
		return 0;
	case FA_ERROR:
		return -(int)t.arg;
	}
	return 0;
}

unsigned long failpoint_hits(enum failpoint_id id)
{
	unsigned long n;

	if ((unsigned)id >= FP__COUNT)
		return 0;
	pthread_mutex_lock(&mu);
	n = points[id].hits;
	pthread_mutex_unlock(&mu);
	return n;
}

int failpoint_setup(char *err, size_t errlen)
{
	const char *spec = getenv("KUBEFENCE_FAILPOINTS"), *dir = getenv("KUBEFENCE_FAILPOINT_DIR");
	int r;

	if (dir && *dir) {
		if (failpoint_set_dir(dir) < 0) {
			errbuf_set(err, errlen, "KUBEFENCE_FAILPOINT_DIR: path too long");
			return -EINVAL;
		}
	}
	r = failpoint_set(spec, err, errlen);
	if (r < 0) {
		(void)failpoint_set_dir(NULL);
		return r;
	}
	if ((spec && *spec) || (dir && *dir))
		log_warning("fault points enabled (KUBEFENCE_FAILPOINTS='%s', control directory "
		            "'%s'): for tests only",
		            spec ? spec : "", dir ? dir : "");
	return 0;
}

void failpoint_print_reference(FILE *out)
{
	fprintf(out,
	        "<!-- Generated by `kubefencectl failpoints` (make failpoint-reference) from "
	        "lib/failpoint_table.h; do not edit. -->\n"
	        "# Fault points\n\n"
	        "Every kubefence program (kubefence-agent, kubefence-metad, kubefence-meta, "
	        "kubefencectl) carries these named points.  They do nothing unless armed; a test "
	        "arms them by name to hit an exact instant.  The syntax and the control "
	        "directory are described in `lib/failpoint.h`:\n\n"
	        "```\n"
	        "KUBEFENCE_FAILPOINTS='metastore.snapshot.before_rename=pause;"
	        "lease.acquire.after_send=1*error(ETIMEDOUT)'\n"
	        "KUBEFENCE_FAILPOINT_DIR=/run/kubefence-fp   # pause files, the fired log, "
	        "re-arming\n"
	        "```\n\n"
	        "| action | effect |\n|---|---|\n"
	        "| `off` | nothing (use it to let hits pass: `3*off->pause` pauses at the fourth) "
	        "|\n"
	        "| `print` | log the hit (and append it to `DIR/fired`) |\n"
	        "| `pause` | block the thread until `DIR/NAME.PID.paused` is removed |\n"
	        "| `stop` | SIGSTOP the whole process (continue it with SIGCONT) |\n"
	        "| `crash` | `_exit(%d)` at once: no clean-up, nothing flushed |\n"
	        "| `delay(MS)` | sleep MS milliseconds, then go on |\n"
	        "| `error(ERRNO)` | the operation at the point fails with that error (a name "
	        "such as `EIO`, `ETIMEDOUT`, or a number) |\n\n"
	        "`N*ACTION` applies the action to the next N hits only; `A->B` chains terms. "
	        "A program that is given a bad specification refuses to start and says why.\n\n"
	        "| point | where, and what an action there exercises |\n|---|---|\n",
	        FAILPOINT_CRASH_STATUS);
	for (int i = 0; i < FP__COUNT; i++)
		fprintf(out, "| `%s` | %s |\n", table[i].name, table[i].help);
}
