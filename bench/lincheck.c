/* lincheck-bench: how fast kf-lincheck judges a large history.
 *
 * A child process simulates clients against one real register per key and
 * records what they saw with the real writer (lib/history.c): each
 * operation gets a random linearization point inside its interval (an info
 * write may also take effect after its client gave up, or never; a fail
 * never does), reads return the register's value at their point, and the
 * history ends with a final read of every key.  So the history is
 * linearizable by construction, and the parent process, whose peak RSS is
 * then the checker's alone, times loading and checking it.  Prints the
 * numbers and writes them as JSON; never asserts them. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/history.h"
#include "tests/lincheck/lincheck.h"

struct bench_conf {
	size_t ops, clients, keys, hot_keys;
	unsigned hot_pct, put_pct, del_pct, fail_per_mille, info_per_mille;
	uint64_t seed;
	const char *dir;
	const char *out;
	int keep;
};

struct gop {
	uint64_t inv, cmp, point;
	uint32_t key, client, val; /* val: 0 none, else the value's number */
	uint8_t op, res, applied;
};

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: plenty for picking keys and times. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

static int point_cmp(const void *a, const void *b)
{
	const struct gop *const *x = a, *const *y = b;

	if ((*x)->point != (*y)->point)
		return (*x)->point < (*y)->point ? -1 : 1;
	return *x < *y ? -1 : *x > *y;
}

static double now_s(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The child: generate and write the history.  Returns 0 or -errno. */
static int generate(const struct bench_conf *bc, const char *path)
{
	struct hist_writer *w = NULL;
	struct gop *ops = NULL, **byp = NULL;
	uint64_t *tc = NULL, *state = NULL, rs = bc->seed ? bc->seed : 1, base, tmax = 0;
	size_t n = bc->ops, i, m = 0;
	uint32_t nval = 0;
	char client[32], key[32], value[32];
	int r;

	ops = calloc(n + bc->keys, sizeof(*ops));
	byp = calloc(n + bc->keys, sizeof(*byp));
	tc = calloc(bc->clients, sizeof(*tc));
	state = calloc(bc->keys, sizeof(*state));
	if (!ops || !byp || !tc || !state) {
		r = -ENOMEM;
		goto out;
	}
	base = hist_now_us();
	for (i = 0; i < bc->clients; i++)
		tc[i] = base + rng_below(&rs, 100);
	for (i = 0; i < n; i++) {
		struct gop *o = &ops[i];
		uint32_t c = (uint32_t)(i % bc->clients);
		unsigned roll = (unsigned)rng_below(&rs, 100), res = (unsigned)rng_below(&rs, 1000);

		o->client = c;
		o->key = rng_below(&rs, 100) < bc->hot_pct ? (uint32_t)rng_below(&rs, bc->hot_keys)
		                                           : (uint32_t)rng_below(&rs, bc->keys);
		o->op = roll < bc->put_pct                 ? HIST_PUT
		        : roll < bc->put_pct + bc->del_pct ? HIST_DEL
		                                           : HIST_GET;
		o->inv = tc[c] + 1 + rng_below(&rs, 50);
		o->cmp = o->inv + 20 + rng_below(&rs, 300);
		tc[c] = o->cmp;
		if (o->cmp > tmax)
			tmax = o->cmp;
		o->res = res < bc->fail_per_mille                        ? HIST_FAIL
		         : res < bc->fail_per_mille + bc->info_per_mille ? HIST_INFO
		                                                         : HIST_OK;
		if (o->op == HIST_PUT)
			o->val = ++nval;
		if (o->res == HIST_OK) {
			o->applied = 1;
			o->point = o->inv + rng_below(&rs, o->cmp - o->inv + 1);
		} else if (o->res == HIST_INFO && o->op != HIST_GET && rng_below(&rs, 2)) {
			/* Took effect after all, maybe after the client gave up. */
			o->applied = 1;
			o->point = o->inv + rng_below(&rs, o->cmp - o->inv + 2000);
		}
		if (o->applied)
			byp[m++] = o;
	}
	/* The final read of every key, after everything. */
	for (i = 0; i < bc->keys; i++) {
		struct gop *o = &ops[n + i];

		o->client = (uint32_t)bc->clients;
		o->key = (uint32_t)i;
		o->op = HIST_GET;
		o->res = HIST_OK;
		o->inv = tmax + 5000 + 10 * i;
		o->cmp = o->inv + 5;
		o->point = o->inv + 2;
		o->applied = 1;
		byp[m++] = o;
	}
	qsort(byp, m, sizeof(*byp), point_cmp);
	for (i = 0; i < m; i++) {
		struct gop *o = byp[i];

		if (o->op == HIST_PUT)
			state[o->key] = o->val;
		else if (o->op == HIST_DEL)
			state[o->key] = 0;
		else
			o->val = (uint32_t)state[o->key];
	}
	r = hist_open(path, &w);
	if (r < 0)
		goto out;
	for (i = 0; i < n + bc->keys; i++) {
		const struct gop *o = &ops[i];
		const char *val = NULL;

		if (o->client == bc->clients)
			(void)snprintf(client, sizeof(client), "final");
		else
			(void)snprintf(client, sizeof(client), "c%u", o->client);
		(void)snprintf(key, sizeof(key), "k%u", o->key);
		if (o->val && (o->op == HIST_PUT || o->res == HIST_OK)) {
			(void)snprintf(value, sizeof(value), "v%u", o->val);
			val = value;
		}
		/* A failover halfway: the second half talks to another master. */
		r = hist_record(w, client, (enum hist_op)o->op, key, o->op == HIST_DEL ? NULL : val,
		                o->inv, o->cmp, (enum hist_result)o->res,
		                i < n / 2 ? "metad-0@10.0.0.1:7480" : "metad-1@10.0.0.2:7480");
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	w = hist_close(w);
	free(ops);
	free(byp);
	free(tc);
	free(state);
	return r;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: lincheck-bench [-n OPS] [-c CLIENTS] [-k KEYS] [-s SEED] [-d DIR] "
	             "[--keep] [--out FILE]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"out", required_argument, NULL, 'o'},
	        {"keep", no_argument, NULL, 'K'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct bench_conf bc = {
	        .ops = 1000000,
	        .clients = 16,
	        .keys = 1000,
	        .hot_keys = 10,
	        .hot_pct = 20,
	        .put_pct = 45,
	        .del_pct = 5,
	        .fail_per_mille = 15,
	        .info_per_mille = 15,
	        .seed = 42,
	        .dir = "/var/tmp",
	};
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	const struct lc_stats *st;
	struct rusage ru;
	struct stat sb;
	char path[4096], err[1024], at[32];
	double t0, gen_s, load_s, check_s;
	time_t now;
	pid_t pid;
	FILE *f;
	int c, r, wst, status = 1;

	while ((c = getopt_long(argc, argv, "n:c:k:s:d:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			bc.ops = strtoull(optarg, NULL, 10);
			break;
		case 'c':
			bc.clients = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			bc.keys = strtoull(optarg, NULL, 10);
			break;
		case 's':
			bc.seed = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			bc.dir = optarg;
			break;
		case 'o':
			bc.out = optarg;
			break;
		case 'K':
			bc.keep = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!bc.ops || !bc.clients || !bc.keys) {
		usage(stderr);
		return 2;
	}
	if (bc.hot_keys > bc.keys)
		bc.hot_keys = bc.keys;
	(void)snprintf(path, sizeof(path), "%s/kf-lincheck-bench.%ld.hist", bc.dir, (long)getpid());
	(void)unlink(path);

	t0 = now_s();
	pid = fork();
	if (pid < 0) {
		perror("lincheck-bench: fork");
		goto out;
	}
	if (pid == 0) {
		r = generate(&bc, path);
		if (r < 0)
			fprintf(stderr, "lincheck-bench: writing '%s': %s\n", path, strerror(-r));
		_exit(r < 0 ? 1 : 0);
	}
	if (waitpid(pid, &wst, 0) < 0 || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
		fprintf(stderr, "lincheck-bench: the generator failed\n");
		goto out;
	}
	gen_s = now_s() - t0;
	if (stat(path, &sb) < 0)
		sb.st_size = 0;

	t0 = now_s();
	r = lc_history_new(&h);
	if (r >= 0)
		r = lc_history_load(h, path, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "lincheck-bench: %s\n", r == -ENOMEM ? "out of memory" : err);
		goto out;
	}
	load_s = now_s() - t0;
	t0 = now_s();
	r = lc_check(h, NULL, &rep, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "lincheck-bench: %s\n", err);
		goto out;
	}
	check_s = now_s() - t0;
	(void)getrusage(RUSAGE_SELF, &ru);
	st = lc_report_stats(rep);
	if (lc_report_verdict(rep) != LC_LINEARIZABLE) {
		/* The history is linearizable by construction: a bug here. */
		lc_report_print(rep, 3, stderr);
		fprintf(stderr, "lincheck-bench: a linearizable history was judged %s\n",
		        lc_verdict_name(lc_report_verdict(rep)));
	}
	printf("lincheck-bench: %zu ops (%zu ok, %zu fail, %zu info), %zu keys, %lld bytes\n",
	       st->ops, st->ok, st->fail, st->info, st->keys, (long long)sb.st_size);
	printf("  generate+write %.2f s, load %.2f s, check %.2f s (%.0f ops/s), peak RSS %ld "
	       "MiB\n",
	       gen_s, load_s, check_s, check_s > 0 ? (double)st->ops / check_s : 0.0,
	       ru.ru_maxrss / 1024);
	printf("  %zu segments, largest %zu ops, %llu search states, %zu info writes dropped\n",
	       st->segments, st->max_segment, (unsigned long long)st->configs, st->info_dropped);
	lc_report_summary(rep, stdout);

	if (bc.out) {
		now = time(NULL);
		(void)strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
		f = fopen(bc.out, "we");
		if (!f) {
			fprintf(stderr, "lincheck-bench: %s: %s\n", bc.out, strerror(errno));
			goto out;
		}
		fprintf(f,
		        "{\n  \"benchmark\": \"lincheck\",\n  \"at\": \"%s\",\n  \"setup\": {\n"
		        "    \"cpus\": %ld,\n    \"clients\": %zu,\n    \"keys\": %zu,\n"
		        "    \"hot_keys\": %zu,\n    \"hot_share_pct\": %u,\n"
		        "    \"mix\": \"%u%% put, %u%% del, %u%% get\",\n"
		        "    \"results\": \"%.1f%% fail, %.1f%% info (half of the info writes "
		        "take effect, up to 2 ms after the client gave up), the rest ok\",\n"
		        "    \"op_us\": \"20..320 per op, 1..50 between a client's ops\",\n"
		        "    \"seed\": %llu,\n    \"dir\": \"%s\"\n  },\n"
		        "  \"ops\": %zu,\n  \"keys\": %zu,\n  \"ok\": %zu,\n  \"fail\": %zu,\n"
		        "  \"info\": %zu,\n  \"file_bytes\": %lld,\n  \"generate_write_s\": %.3f,\n"
		        "  \"load_s\": %.3f,\n  \"check_s\": %.3f,\n  \"peak_rss_kb\": %ld,\n"
		        "  \"segments\": %zu,\n  \"max_segment\": %zu,\n  \"search_states\": "
		        "%llu,\n"
		        "  \"info_dropped\": %zu,\n  \"verdict\": \"%s\"\n}\n",
		        at, sysconf(_SC_NPROCESSORS_ONLN), bc.clients, bc.keys, bc.hot_keys,
		        bc.hot_pct, bc.put_pct, bc.del_pct, 100 - bc.put_pct - bc.del_pct,
		        bc.fail_per_mille / 10.0, bc.info_per_mille / 10.0,
		        (unsigned long long)bc.seed, bc.dir, st->ops, st->keys, st->ok, st->fail,
		        st->info, (long long)sb.st_size, gen_s, load_s, check_s, ru.ru_maxrss,
		        st->segments, st->max_segment, (unsigned long long)st->configs,
		        st->info_dropped, lc_verdict_name(lc_report_verdict(rep)));
		if (fclose(f) != 0) {
			fprintf(stderr, "lincheck-bench: %s: write error\n", bc.out);
			goto out;
		}
		printf("  wrote %s\n", bc.out);
	}
	status = lc_report_verdict(rep) == LC_LINEARIZABLE ? 0 : 1;
out:
	rep = lc_report_free(rep);
	h = lc_history_free(h);
	if (!bc.keep)
		(void)unlink(path);
	else
		printf("  kept %s\n", path);
	return status;
}
