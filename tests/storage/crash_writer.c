/* crash_writer: the writer process of tests/storage/crash.test.
 *
 *   crash_writer write DIR ITER   put keys "ITER/T/N" from 4 threads (group
 *                                 commit, frequent snapshots) forever, printing
 *                                 "KEY\n" to stdout after each put returned;
 *   crash_writer verify DIR ACKS  reopen DIR and check that every key listed
 *                                 in ACKS is present with its value and that
 *                                 every stored value is intact.
 * Values are a function of the key, so a torn or mixed-up value is seen. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "storage/metastore.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t value_of(const char *key, char *buf, size_t cap)
{
	unsigned h = 2166136261u;
	size_t len;

	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	len = 16 + h % 400;
	if (len > cap)
		len = cap;
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (h >> (i % 24)) % 26);
	memcpy(buf, key, strlen(key) < len ? strlen(key) : len);
	return len;
}

struct writer {
	struct metastore *m;
	int iter, id;
};

static void *writer_thread(void *p)
{
	struct writer *w = p;
	char key[64], val[512], line[80];

	for (long n = 0;; n++) {
		size_t vlen;
		int len;

		snprintf(key, sizeof(key), "%03d/%d/%06ld", w->iter, w->id, n);
		vlen = value_of(key, val, sizeof(val));
		if (metastore_put(w->m, key, strlen(key), val, vlen, NULL, 0) != 0)
			exit(3);
		len = snprintf(line, sizeof(line), "%s\n", key);
		pthread_mutex_lock(&out_lock);
		if (write(1, line, (size_t)len) != len)
			exit(4);
		pthread_mutex_unlock(&out_lock);
	}
	return NULL;
}

static int verify_cb(void *ud, const void *key, size_t klen, const void *v, size_t vlen)
{
	char k[128], want[512];
	size_t wlen;

	if (klen >= sizeof(k))
		return 1;
	memcpy(k, key, klen);
	k[klen] = '\0';
	wlen = value_of(k, want, sizeof(want));
	if (wlen != vlen || memcmp(want, v, vlen) != 0) {
		fprintf(stderr, "key '%s': value is not intact\n", k);
		return 1;
	}
	(*(long *)ud)++;
	return 0;
}

int main(int argc, char **argv)
{
	struct metastore_options o = {.epoch = 1, .snapshot_records = 3000};
	struct metastore *m = NULL;
	char err[1024];
	int r;

	log_set_ident("crash_writer");
	log_max_level = LOG_LEVEL_WARNING;
	if (argc != 4) {
		fprintf(stderr, "usage: crash_writer write DIR ITER | verify DIR ACKS\n");
		return 2;
	}
	r = metastore_open_dir(argv[2], &o, &m, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	if (strcmp(argv[1], "write") == 0) {
		struct writer w[4];
		pthread_t th[4];

		for (int i = 0; i < 4; i++) {
			w[i] = (struct writer){m, atoi(argv[3]), i};
			pthread_create(&th[i], NULL, writer_thread, &w[i]);
		}
		for (int i = 0; i < 4; i++)
			pthread_join(th[i], NULL);
		return 0;
	}
	{
		FILE *f = fopen(argv[3], "r");
		char line[256];
		long acked = 0, intact = 0, missing = 0;

		if (!f)
			return 1;
		while (fgets(line, sizeof(line), f)) {
			size_t len = strlen(line);
			void *v;
			size_t vlen;
			char want[512];

			if (len == 0 || line[len - 1] != '\n')
				continue; /* killed while printing */
			line[--len] = '\0';
			acked++;
			r = metastore_get(m, line, len, &v, &vlen);
			if (r < 0) {
				fprintf(stderr, "acknowledged key '%s' is missing\n", line);
				missing++;
				continue;
			}
			if (vlen != value_of(line, want, sizeof(want)) ||
			    memcmp(v, want, vlen) != 0) {
				fprintf(stderr, "acknowledged key '%s' has a wrong value\n", line);
				missing++;
			}
			free(v);
		}
		fclose(f);
		r = metastore_list(m, NULL, 0, verify_cb, &intact);
		printf("acknowledged %ld, stored %ld, missing/wrong %ld\n", acked, intact, missing);
		metastore_close(m);
		return missing || r < 0 || intact < acked ? 1 : 0;
	}
}
