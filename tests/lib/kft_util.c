/* kft_util: the Check-free test helpers (see kft_util.h). */
#include "config.h"

#include "tests/lib/kft_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kft_getenv(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void kft_measured(const char *dir, const char *what, double seconds)
{
	char path[4096];
	FILE *f;

	if (dir && (size_t)snprintf(path, sizeof(path), "%s/measurements", dir) < sizeof(path) &&
	    (f = fopen(path, "a"))) {
		fprintf(f, "%s %.3f\n", what, seconds);
		fclose(f);
	}
	printf("measured: %s %.3f s\n", what, seconds);
	fflush(stdout);
}

usec_t kft_log_mono(const char *line)
{
	const char *m = strstr(line, " mono=");
	long long s = 0, us = 0;

	if (!m || sscanf(m, " mono=%lld.%lld", &s, &us) != 2)
		return 0;
	return (usec_t)s * USEC_PER_SEC + us;
}

int kft_log_vcount(const char *path, usec_t *ret_mono, va_list ap)
{
	const char *needles[8];
	size_t n = 0;
	char line[8192];
	int count = 0;
	FILE *f;

	for (const char *s;
	     (s = va_arg(ap, const char *)) && n < sizeof(needles) / sizeof(needles[0]);)
		needles[n++] = s;
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		size_t i = 0;

		while (i < n && strstr(line, needles[i]))
			i++;
		if (i < n)
			continue;
		if (count++ == 0 && ret_mono)
			*ret_mono = kft_log_mono(line);
	}
	fclose(f);
	return count;
}

int kft_log_count(const char *path, usec_t *ret_mono, ...)
{
	va_list ap;
	int count;

	va_start(ap, ret_mono);
	count = kft_log_vcount(path, ret_mono, ap);
	va_end(ap);
	return count;
}
