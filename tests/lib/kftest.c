/* kftest: the suite runner and the small helpers every Check program shares
 * (see kftest.h). */
#include "config.h"

#include "tests/lib/kftest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

int kft_main(Suite *s, const struct kft_opts *opts)
{
	static const struct kft_opts defaults;
	const char *dir = getenv("KF_TEST_RESULTS");
	char tap[4096];
	SRunner *sr;
	int failed;

	if (!opts)
		opts = &defaults;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (opts->ident)
		log_set_ident(opts->ident);
	if (opts->log_level)
		log_max_level = opts->log_level;
	sr = srunner_create(s);
	if (opts->fork)
		srunner_set_fork_status(sr, CK_FORK);
	if (dir && *dir) {
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			fprintf(stderr, "kftest: cannot create '%s': %m; no TAP summary\n", dir);
		else if ((size_t)snprintf(tap, sizeof(tap), "%s/%s.%ld.tap", dir,
		                          program_invocation_short_name,
		                          (long)getpid()) < sizeof(tap))
			srunner_set_tap(sr, tap);
	}
	srunner_run_all(sr, opts->verbose ? CK_VERBOSE : CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

TCase *kft_add(Suite *s, const char *name, const TTest *t, double timeout_s, SFun setup,
               SFun teardown)
{
	TCase *tc = tcase_create(name);

	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	if (timeout_s > 0)
		tcase_set_timeout(tc, timeout_s);
	tcase_add_test(tc, t);
	suite_add_tcase(s, tc);
	return tc;
}

const char *kft_env(const char *name, const char *script)
{
	const char *v = getenv(name);

	ck_assert_msg(v && *v, "%s is not set (run through %s)", name, script);
	return v;
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
