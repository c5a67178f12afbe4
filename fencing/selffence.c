/* selffence: stop-writes callback with a deadline, SIGKILL with a
 * confirmation of death, and the watchdog feeding protocol (see
 * selffence.h). */
#include "config.h"

#include "fencing/selffence.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

#define POLL_USEC (10 * USEC_PER_MSEC)

/* ------------------------------------------------------------ stop writes */

/* Shared by selffence_run() and the callback's thread; whoever drops the
 * last reference frees it, so a callback that outlives the deadline still
 * has somewhere to put its answer. */
struct stop_call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	bool done;
	int result;
	selffence_stop_fn fn;
	void *data;
	usec_t deadline;
};

static void stop_call_unref(struct stop_call *sc)
{
	bool last;

	pthread_mutex_lock(&sc->lock);
	last = --sc->refs == 0;
	pthread_mutex_unlock(&sc->lock);
	if (!last)
		return;
	pthread_cond_destroy(&sc->cond);
	pthread_mutex_destroy(&sc->lock);
	free(sc);
}

static void *stop_thread(void *arg)
{
	struct stop_call *sc = arg;
	int r = sc->fn(sc->data, sc->deadline);

	pthread_mutex_lock(&sc->lock);
	sc->done = true;
	sc->result = r;
	pthread_cond_signal(&sc->cond);
	pthread_mutex_unlock(&sc->lock);
	stop_call_unref(sc);
	return NULL;
}

static struct timespec mono_ts(usec_t t)
{
	return (struct timespec){.tv_sec = t / USEC_PER_SEC,
	                         .tv_nsec = (long)(t % USEC_PER_SEC) * 1000};
}

/* Run the callback on its own thread; wait for it until deadline.  Returns
 * its result, or -ETIMEDOUT (the thread is abandoned). */
static int stop_writes(selffence_stop_fn fn, void *data, usec_t deadline)
{
	struct stop_call *sc = NULL;
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t th;
	int r;

	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	pthread_mutex_init(&sc->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sc->cond, &ca);
	pthread_condattr_destroy(&ca);
	sc->refs = 2;
	sc->fn = fn;
	sc->data = data;
	sc->deadline = deadline;

	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	r = -pthread_create(&th, &ta, stop_thread, sc);
	pthread_attr_destroy(&ta);
	if (r < 0) {
		sc->refs = 1;
		stop_call_unref(sc);
		return r;
	}
	pthread_mutex_lock(&sc->lock);
	while (!sc->done) {
		struct timespec ts = mono_ts(deadline);

		if (pthread_cond_timedwait(&sc->cond, &sc->lock, &ts) == ETIMEDOUT)
			break;
	}
	r = sc->done ? sc->result : -ETIMEDOUT;
	pthread_mutex_unlock(&sc->lock);
	stop_call_unref(sc);
	return r;
}

/* ------------------------------------------------------------------ kill */

bool selffence_pid_alive(pid_t pid)
{
	char path[64], buf[512];
	const char *paren;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "pid (comm) S ...": the state follows the last ')'. */
	paren = strrchr(buf, ')');
	return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* Wait until pid is dead (exited; a zombie counts) or deadline. */
static int wait_dead(pid_t pid, int pidfd, usec_t deadline)
{
	for (;;) {
		usec_t now = clock_mono_usec();
		int st;

		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			int ms = now >= deadline ? 0 : (int)((deadline - now) / USEC_PER_MSEC) + 1;
			int r = poll(&p, 1, ms);

			if (r > 0)
				return 0;
			if (r == 0)
				return -ETIMEDOUT;
			if (errno != EINTR)
				return -errno;
			continue;
		}
		/* Without pidfd: reap it when it is our child, else look. */
		if (waitpid(pid, &st, WNOHANG) == pid || !selffence_pid_alive(pid))
			return 0;
		if (now >= deadline)
			return -ETIMEDOUT;
		clock_sleep_until(now + POLL_USEC);
	}
}

int selffence_wait_exit(pid_t pid, usec_t deadline)
{
	int pidfd, r;

	if (pid <= 0)
		return -EINVAL;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return errno == ESRCH ? 0 : -ENOSYS;
	r = wait_dead(pid, pidfd, deadline);
	close(pidfd);
	return r;
}

int selffence_run(const struct selffence_opts *o)
{
	usec_t start = clock_mono_usec(), deadline;
	int pidfd = -1, r;

	if (!o->stop_writes && o->pid <= 0) {
		log_error("self-fence: neither a stop-writes callback nor a pid to kill");
		return -EINVAL;
	}
	/* Take the pidfd first: from here on a recycled pid cannot be hit. */
	if (o->pid > 0)
		pidfd = (int)syscall(SYS_pidfd_open, o->pid, 0);
	if (o->pid > 0 && pidfd < 0 && errno == ESRCH) {
		r = SELFFENCE_GONE;
		log_warning("self-fence: service process %d already gone", (int)o->pid);
		goto out;
	}

	if (o->stop_writes) {
		r = stop_writes(o->stop_writes, o->data, start + o->stop_timeout);
		if (r >= 0) {
			log_info("self-fence: service confirmed writes stopped in %.3f s",
			         (double)(clock_mono_usec() - start) / USEC_PER_SEC);
			r = SELFFENCE_STOPPED;
			goto out;
		}
		if (o->pid <= 0) {
			log_error("self-fence: stop-writes not confirmed (%s) and no process to "
			          "kill; only the watchdog can fence this node now",
			          strerror(-r));
			goto out;
		}
		log_warning("self-fence: stop-writes not confirmed within %.3f s (%s); killing "
		            "service process %d",
		            (double)o->stop_timeout / USEC_PER_SEC, strerror(-r), (int)o->pid);
	}

	if (pidfd >= 0)
		r = syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
	else
		r = kill(o->pid, SIGKILL) < 0 ? -errno : 0;
	if (r == -ESRCH) {
		r = SELFFENCE_GONE;
		log_warning("self-fence: service process %d already gone", (int)o->pid);
		goto out;
	}
	if (r < 0) {
		log_error("self-fence: cannot kill service process %d: %s", (int)o->pid,
		          strerror(-r));
		goto out;
	}
	deadline = clock_mono_usec() + o->kill_timeout;
	r = wait_dead(o->pid, pidfd, deadline);
	if (r < 0) {
		log_error("self-fence: service process %d still alive %.3f s after SIGKILL (%s); "
		          "only the watchdog can fence this node now",
		          (int)o->pid, (double)o->kill_timeout / USEC_PER_SEC, strerror(-r));
		goto out;
	}
	r = SELFFENCE_KILLED;
	log_warning("self-fence: service process %d killed and confirmed dead in %.3f s",
	            (int)o->pid, (double)(clock_mono_usec() - start) / USEC_PER_SEC);
out:
	if (pidfd >= 0)
		close(pidfd);
	return r;
}

/* --------------------------------------------------------------- watchdog */

struct selffence_watchdog {
	int fd;
	atomic_bool starved;
	char path[256];
};

int selffence_watchdog_open(const char *path, struct selffence_watchdog **ret, char *err,
                            size_t errlen)
{
	struct selffence_watchdog *w = NULL;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w) {
		r = -ENOMEM;
		goto out;
	}
	w->fd = -1;
	(void)str_copy(w->path, sizeof(w->path), path);
	w->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (w->fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "cannot open watchdog device '%s': %s", path, strerror(-r));
		goto out;
	}
	atomic_init(&w->starved, false);
	*ret = w;
	w = NULL;
	r = 0;
out:
	if (w)
		free(w);
	return r;
}

int selffence_watchdog_feed(struct selffence_watchdog *w)
{
	if (atomic_load(&w->starved))
		return -ECANCELED;
	/* Any byte but 'V' is a keep-alive for the Linux watchdog API. */
	if (write(w->fd, "k", 1) != 1)
		return errno ? -errno : -EIO;
	return 0;
}

void selffence_watchdog_starve(struct selffence_watchdog *w)
{
	if (!atomic_exchange(&w->starved, true))
		log_warning("self-fence: no longer feeding watchdog '%s': the node will reset",
		            w->path);
}

struct selffence_watchdog *selffence_watchdog_close(struct selffence_watchdog *w, bool orderly)
{
	if (!w)
		return NULL;
	if (orderly && !atomic_load(&w->starved)) {
		/* Magic close: the driver disarms on close after a 'V'. */
		if (write(w->fd, "V", 1) != 1)
			log_warning("watchdog '%s': magic close failed: %s; it stays armed",
			            w->path, strerror(errno));
	} else if (orderly)
		log_warning("watchdog '%s': not disarmed: self-fencing already starved it",
		            w->path);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
	return NULL;
}

/* ------------------------------------------------------------ settings */

static int validate_abs_path_or_empty(const union conf_value *v, char *err, size_t errlen)
{
	if (v->str[0] == '\0' || v->str[0] == '/')
		return 0;
	errbuf_set(err, errlen, "'%s' is not an absolute path", v->str);
	return -EINVAL;
}

#define F(field) offsetof(struct selffence_conf, field)

/* How the node stops itself is not changed under a running term: none is
 * live. */
const struct conf_key selffence_conf_keys[] = {
        {.name = "selffence.stop_timeout_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 10,
         .max = 60000,
         .offset = F(stop_timeout_ms),
         .help = "On lost leadership: how long the local service may take to confirm it "
                 "stopped writing before it is killed (SIGKILL)."},
        {.name = "selffence.kill_timeout_ms",
         .type = CONF_INT,
         .def = "5000",
         .min = 10,
         .max = 60000,
         .offset = F(kill_timeout_ms),
         .help = "How long a killed service process may take to be confirmed dead."},
        {.name = "selffence.watchdog_device",
         .type = CONF_STRING,
         .def = "",
         .offset = F(watchdog_device),
         .validate = validate_abs_path_or_empty,
         .help = "Watchdog device fed while the agent is healthy and starved on "
                 "self-fencing, so the node resets, e.g. `/dev/watchdog`; empty = off."},
};

#undef F

const size_t selffence_conf_n_keys = ELEMENTSOF(selffence_conf_keys);
