/* bench/recovery: numbers for the metadata store, printed as JSON (and
 * written to --out):
 *   - recovery of N records (default 1,000,000; 32-byte keys in random order,
 *     100-byte values) from a journal only and from a snapshot, in records/s
 *     and MB/s, next to the raw sequential read speed of the same files
 *     measured in the same run (page cache dropped first when permitted,
 *     otherwise everything is warm and the JSON says so);
 *   - durable put latency (p50/p99) and throughput with 4 threads, with and
 *     without group commit.
 * It never asserts timing. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/log.h"
#include "storage/journal.h"
#include "storage/metastore.h"

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void make_key(uint64_t i, char key[33])
{
	uint64_t a = i * 0x9E3779B97F4A7C15ull, b = (i + 1) * 0xC2B2AE3D27D4EB4Full;

	snprintf(key, 33, "%016" PRIx64 "%016" PRIx64, a ^ (a >> 29), b ^ (b >> 31));
}

/* Write N PUT records straight into one segment (the setup, not measured). */
static int write_journal(const char *dir, uint64_t n, uint64_t *ret_bytes)
{
	char path[1024];
	uint8_t *buf = malloc(1 << 20), val[100];
	size_t len = 0;
	uint64_t total = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/journal-%016" PRIx64 ".log", dir, (uint64_t)1);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || !buf)
		return -errno;
	memset(val, 'v', sizeof(val));
	for (uint64_t i = 0; i < n; i++) {
		char key[33];
		ssize_t r;

		make_key(i, key);
		if (len + JOURNAL_RECORD_MAX > (1 << 20)) {
			if (write(fd, buf, len) != (ssize_t)len)
				return -EIO;
			total += len;
			len = 0;
		}
		r = journal_encode(buf + len, (1 << 20) - len, JOURNAL_PUT, i + 1, 1, key, 32, val,
		                   sizeof(val));
		if (r < 0)
			return (int)r;
		len += (size_t)r;
	}
	if (write(fd, buf, len) != (ssize_t)len)
		return -EIO;
	total += len;
	(void)fsync(fd);
	(void)close(fd);
	free(buf);
	*ret_bytes = total;
	return 0;
}

static bool drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	bool ok;

	sync();
	if (fd < 0)
		return false;
	ok = write(fd, "3\n", 2) == 2;
	(void)close(fd);
	return ok;
}

/* Raw sequential read of every file in dir, MB/s. */
static double raw_read(const char *dir, uint64_t *ret_bytes)
{
	char cmd[600];
	uint8_t *buf = malloc(1 << 20);
	uint64_t bytes = 0;
	usec_t t0 = clock_mono_usec();
	FILE *ls;
	char name[512];

	snprintf(cmd, sizeof(cmd), "ls '%s'", dir);
	ls = popen(cmd, "r");
	while (ls && fgets(name, sizeof(name), ls)) {
		char path[1200];
		int fd;
		ssize_t n;

		name[strcspn(name, "\n")] = '\0';
		if (!strstr(name, ".log") && !strstr(name, ".snap"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		fd = open(path, O_RDONLY);
		while (fd >= 0 && (n = read(fd, buf, 1 << 20)) > 0)
			bytes += (uint64_t)n;
		if (fd >= 0)
			(void)close(fd);
	}
	if (ls)
		pclose(ls);
	free(buf);
	*ret_bytes = bytes;
	return (double)bytes / 1e6 / ((double)(clock_mono_usec() - t0) / 1e6);
}

struct recovery_result {
	double seconds, records_per_s, mb_per_s, raw_mb_per_s;
	uint64_t records, bytes;
};

static int measure_recovery(const char *dir, bool cold, struct recovery_result *res)
{
	struct metastore_options o = {.epoch = 1, .read_only = true};
	struct metastore *m;
	struct metastore_stats st;
	char err[512];
	uint64_t raw_bytes;
	usec_t t0;
	int r;

	if (cold)
		drop_caches();
	res->raw_mb_per_s = raw_read(dir, &raw_bytes);
	if (cold)
		drop_caches();
	t0 = clock_mono_usec();
	r = metastore_open_dir(dir, &o, &m, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "open: %s\n", err);
		return r;
	}
	res->seconds = (double)(clock_mono_usec() - t0) / 1e6;
	metastore_get_stats(m, &st);
	res->records = st.records_replayed;
	res->bytes = raw_bytes;
	res->records_per_s = (double)res->records / res->seconds;
	res->mb_per_s = (double)raw_bytes / 1e6 / res->seconds;
	metastore_close(m);
	return 0;
}

struct put_thread {
	struct metastore *m;
	int id, n;
	usec_t *lat;
};

static void *put_worker(void *p)
{
	struct put_thread *t = p;
	uint8_t val[100];

	memset(val, 'p', sizeof(val));
	for (int i = 0; i < t->n; i++) {
		char key[33];
		usec_t t0 = clock_mono_usec();

		make_key((uint64_t)t->id << 32 | (uint64_t)i, key);
		if (metastore_put(t->m, key, 32, val, sizeof(val), NULL, 0) < 0)
			return (void *)1;
		t->lat[i] = clock_mono_usec() - t0;
	}
	return NULL;
}

static int cmp_usec(const void *a, const void *b)
{
	usec_t x = *(const usec_t *)a, y = *(const usec_t *)b;

	return x < y ? -1 : x > y;
}

static int measure_puts(const char *dir, bool group, int threads, int per_thread, FILE *json)
{
	struct metastore_options o = {.epoch = 1, .no_group_commit = !group};
	struct put_thread t[16];
	pthread_t th[16];
	struct metastore *m;
	struct metastore_stats st;
	usec_t *all = calloc((size_t)(threads * per_thread), sizeof(usec_t)), t0, el;
	char err[512];
	int r;

	r = metastore_open_dir(dir, &o, &m, err, sizeof(err));
	if (r < 0 || !all) {
		fprintf(stderr, "open: %s\n", err);
		return r;
	}
	t0 = clock_mono_usec();
	for (int i = 0; i < threads; i++) {
		t[i] = (struct put_thread){m, i, per_thread, all + i * per_thread};
		pthread_create(&th[i], NULL, put_worker, &t[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	el = clock_mono_usec() - t0;
	metastore_get_stats(m, &st);
	metastore_close(m);
	qsort(all, (size_t)(threads * per_thread), sizeof(usec_t), cmp_usec);
	fprintf(json,
	        "    {\"group_commit\": %s, \"threads\": %d, \"puts\": %d, \"syncs\": %" PRIu64
	        ", \"puts_per_s\": %.0f, \"p50_us\": %" PRId64 ", \"p99_us\": %" PRId64 "}",
	        group ? "true" : "false", threads, threads * per_thread, st.syncs,
	        (double)(threads * per_thread) / ((double)el / 1e6),
	        all[(size_t)(threads * per_thread) / 2],
	        all[(size_t)(threads * per_thread) * 99 / 100]);
	free(all);
	return 0;
}

#define STALL_MAX_PUTS (1u << 20)

struct stall_writer {
	struct metastore *m;
	volatile bool stop;
	usec_t max_lat;
	uint64_t puts;
	usec_t *start, *lat; /* of each put, STALL_MAX_PUTS at most */
};

static void *stall_worker(void *p)
{
	struct stall_writer *w = p;
	uint8_t val[100];

	memset(val, 's', sizeof(val));
	while (!w->stop) {
		char key[33];
		usec_t t0 = clock_mono_usec(), d;

		make_key(((uint64_t)7 << 40) | w->puts, key);
		if (metastore_put(w->m, key, 32, val, sizeof(val), NULL, 0) < 0)
			return (void *)1;
		d = clock_mono_usec() - t0;
		if (d > w->max_lat)
			w->max_lat = d;
		if (w->puts < STALL_MAX_PUTS) {
			w->start[w->puts] = t0;
			w->lat[w->puts] = d;
		}
		w->puts++;
	}
	return NULL;
}

/* How long a snapshot of the recovered store holds writers up: one writer
 * puts continuously; the longest put while the snapshot runs is the stall,
 * and p50/p99 are those of the puts that began while it ran. */
static int measure_snapshot_stall(const char *dir, FILE *json)
{
	struct metastore_options o = {.epoch = 2};
	struct stall_writer w = {0};
	struct metastore_stats st;
	struct metastore *m;
	pthread_t th;
	char err[512];
	usec_t t0, snap, *during;
	size_t nd = 0;
	int r;

	w.start = calloc(STALL_MAX_PUTS, sizeof(usec_t));
	w.lat = calloc(STALL_MAX_PUTS, sizeof(usec_t));
	during = calloc(STALL_MAX_PUTS, sizeof(usec_t));
	if (!w.start || !w.lat || !during)
		return -ENOMEM;

	r = metastore_open_dir(dir, &o, &m, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "open: %s\n", err);
		return r;
	}
	metastore_get_stats(m, &st);
	w.m = m;
	pthread_create(&th, NULL, stall_worker, &w);
	usleep(200000);
	t0 = clock_mono_usec();
	r = metastore_snapshot(m, err, sizeof(err));
	snap = clock_mono_usec() - t0;
	usleep(200000);
	w.stop = true;
	pthread_join(th, NULL);
	metastore_close(m);
	if (r < 0) {
		fprintf(stderr, "snapshot: %s\n", err);
		return r;
	}
	for (uint64_t i = 0; i < w.puts && i < STALL_MAX_PUTS; i++)
		if (w.start[i] + w.lat[i] >= t0 && w.start[i] <= t0 + snap)
			during[nd++] = w.lat[i];
	qsort(during, nd, sizeof(usec_t), cmp_usec);
	fprintf(json,
	        "  \"snapshot_stall\": {\"keys\": %" PRIu64 ", \"snapshot_seconds\": %.3f, "
	        "\"max_put_us\": %" PRId64 ", \"puts\": %" PRIu64
	        ", \"puts_during_snapshot\": %zu, \"p50_during_us\": %" PRId64
	        ", \"p99_during_us\": %" PRId64 "},\n",
	        st.keys, (double)snap / 1e6, (int64_t)w.max_lat, w.puts, nd,
	        nd ? (int64_t)during[nd / 2] : 0, nd ? (int64_t)during[nd * 99 / 100] : 0);
	free(w.start);
	free(w.lat);
	free(during);
	return 0;
}

int main(int argc, char **argv)
{
	const char *out = NULL, *base = "/var/tmp";
	uint64_t n = 1000000, bytes = 0;
	char dir[512], sub[600], err[512];
	struct recovery_result jr, sr;
	struct metastore_options o = {.epoch = 1};
	struct metastore *m;
	bool cold;
	char *text = NULL;
	size_t textlen = 0;
	FILE *json;
	int c, per_thread = 1000;

	log_set_ident("bench-recovery");
	log_max_level = LOG_LEVEL_WARNING;
	while ((c = getopt(argc, argv, "n:d:p:o:-:")) != -1) {
		if (c == 'n')
			n = strtoull(optarg, NULL, 10);
		else if (c == 'd')
			base = optarg;
		else if (c == 'p')
			per_thread = atoi(optarg);
		else if (c == 'o' || (c == '-' && strncmp(optarg, "out=", 4) == 0))
			out = c == 'o' ? optarg : optarg + 4;
		else if (c == '-' && strcmp(optarg, "out") == 0 && optind < argc)
			out = argv[optind++];
	}
	snprintf(dir, sizeof(dir), "%s/kf-bench-XXXXXX", base);
	if (!mkdtemp(dir))
		return 3;
	snprintf(sub, sizeof(sub), "%s/recovery", dir);
	mkdir(sub, 0700);
	if (write_journal(sub, n, &bytes) < 0)
		return 3;
	cold = drop_caches();
	if (measure_recovery(sub, cold, &jr) < 0)
		return 3;
	/* the same content recovered from a snapshot */
	if (metastore_open_dir(sub, &o, &m, err, sizeof(err)) < 0 ||
	    metastore_snapshot(m, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapshot: %s\n", err);
		return 3;
	}
	metastore_close(m);
	if (measure_recovery(sub, cold, &sr) < 0)
		return 3;

	json = open_memstream(&text, &textlen);
	fprintf(json, "{\n  \"crc32c_hw\": %s,\n  \"page_cache_dropped\": %s,\n",
	        crc32c_hw_available() ? "true" : "false", cold ? "true" : "false");
	if (!cold)
		fprintf(json, "  \"note\": \"drop_caches not permitted: raw read and recovery "
		              "both measured warm (page cache)\",\n");
	fprintf(json,
	        "  \"recovery_journal\": {\"records\": %" PRIu64 ", \"bytes\": %" PRIu64
	        ", \"seconds\": %.3f, \"records_per_s\": %.0f, \"mb_per_s\": %.1f, "
	        "\"raw_read_mb_per_s\": %.1f, \"fraction_of_raw\": %.2f},\n",
	        jr.records, jr.bytes, jr.seconds, jr.records_per_s, jr.mb_per_s, jr.raw_mb_per_s,
	        jr.mb_per_s / jr.raw_mb_per_s);
	fprintf(json,
	        "  \"recovery_snapshot\": {\"records\": %" PRIu64 ", \"bytes\": %" PRIu64
	        ", \"seconds\": %.3f, \"records_per_s\": %.0f, \"mb_per_s\": %.1f, "
	        "\"raw_read_mb_per_s\": %.1f, \"fraction_of_raw\": %.2f},\n",
	        sr.records, sr.bytes, sr.seconds, sr.records_per_s, sr.mb_per_s, sr.raw_mb_per_s,
	        sr.mb_per_s / sr.raw_mb_per_s);
	snprintf(sub, sizeof(sub), "%s/recovery", dir);
	if (measure_snapshot_stall(sub, json) < 0)
		return 3;
	fprintf(json, "  \"durable_puts\": [\n");
	snprintf(sub, sizeof(sub), "%s/puts-group", dir);
	measure_puts(sub, true, 4, per_thread, json);
	fprintf(json, ",\n");
	snprintf(sub, sizeof(sub), "%s/puts-serial", dir);
	measure_puts(sub, false, 4, per_thread, json);
	fprintf(json, ",\n");
	snprintf(sub, sizeof(sub), "%s/puts-single", dir);
	measure_puts(sub, true, 1, per_thread, json);
	fprintf(json, "\n  ],\n  \"data_dir\": \"%s\"\n}\n", base);
	fclose(json);
	fputs(text, stdout);
	if (out) {
		FILE *f = fopen(out, "w");

		if (f) {
			fputs(text, f);
			fclose(f);
		}
	}
	free(text);
	(void)nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
