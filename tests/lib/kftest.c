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

TCase *kft_tcase(Suite *s, const char *name, double timeout_s, SFun setup, SFun teardown)
{
	TCase *tc = tcase_create(name);

	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	if (timeout_s > 0)
		tcase_set_timeout(tc, timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

TCase *kft_add(Suite *s, const char *name, const TTest *t, double timeout_s, SFun setup,
               SFun teardown)
{
	TCase *tc = kft_tcase(s, name, timeout_s, setup, teardown);

	tcase_add_test(tc, t);
	return tc;
}

const char *kft_env(const char *name, const char *script)
{
	const char *v = kft_getenv(name);

	ck_assert_msg(v, "%s is not set (run through %s)", name, script);
	return v;
}
