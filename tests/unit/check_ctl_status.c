/* check_ctl_status: `kubefencectl status` against an agent's /status as the
 * agent builds it.
 *
 * The fixture builds "fences" the way orch_status_json() does: runs are
 * kept in a ring of the last 10 and emitted from the newest (element 0) to
 * the oldest still kept, each with target, method (the methods run, joined
 * by ','), ok, started_at, total_ms and its steps.  It is served by the real
 * HTTP server on 127.0.0.1 port 0 and read by ctl_status_main(), whose
 * stdout goes to a file; the test checks that the words and the order
 * agree: the history says "newest first" and lists the last run first. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lib/util.h"
#include "nodeagent/ctl.h"
#include "nodeagent/http.h"
#include "tests/lib/kftest.h"

/* As FENCE_HISTORY in orchestrator.c. */
#define RING 10

struct run {
	char target[32], started_at[40], method[32];
	bool ok;
	int total_ms;
};

struct fixture {
	struct run ring[RING];
	size_t n; /* runs ever recorded */
};

static void record(struct fixture *fx, int i)
{
	struct run *r = &fx->ring[fx->n % RING];

	snprintf(r->target, sizeof(r->target), "node-%d", i);
	/* One second apart, in the agent's timestamp format. */
	snprintf(r->started_at, sizeof(r->started_at), "2026-01-02T03:04:%02d.000000Z", i);
	snprintf(r->method, sizeof(r->method), "%s", i % 2 ? "scsi-pr,pod-delete" : "pod-delete");
	r->ok = i != 7;
	r->total_ms = 100 + i;
	fx->n++;
}

static int fill_status(void *userdata, cJSON *obj, char *err, size_t errlen)
{
	const struct fixture *fx = userdata;
	cJSON *svc, *fences;

	(void)err;
	(void)errlen;
	cJSON_AddStringToObject(obj, "identity", "node-a");
	cJSON_AddStringToObject(obj, "holder", "node-a");
	cJSON_AddNumberToObject(obj, "lease_age_ms", 120);
	cJSON_AddStringToObject(obj, "node", "node-a");
	cJSON_AddStringToObject(obj, "role", "leader");
	cJSON_AddStringToObject(obj, "state", "MASTER");
	cJSON_AddNumberToObject(obj, "epoch", 13);
	svc = cJSON_AddObjectToObject(obj, "service");
	cJSON_AddStringToObject(svc, "state", "master");
	cJSON_AddBoolToObject(svc, "connected", true);
	fences = cJSON_AddArrayToObject(obj, "fences");
	/* orch_status_json()'s loop: k = 0 is the newest run. */
	for (size_t k = 0; k < fx->n && k < RING; k++) {
		const struct run *r = &fx->ring[(fx->n - 1 - k) % RING];
		cJSON *f = cJSON_CreateObject(), *steps;
		char detail[64];

		cJSON_AddStringToObject(f, "target", r->target);
		cJSON_AddStringToObject(f, "method", r->method);
		cJSON_AddBoolToObject(f, "ok", r->ok);
		cJSON_AddStringToObject(f, "started_at", r->started_at);
		cJSON_AddNumberToObject(f, "total_ms", r->total_ms);
		steps = cJSON_AddArrayToObject(f, "steps");
		snprintf(detail, sizeof(detail), "%s: %s", r->target,
		         r->ok ? "confirmed" : "failed");
		http_status_step(steps, "pod-delete", 0, r->total_ms, detail);
		cJSON_AddItemToArray(fences, f);
	}
	return 0;
}

/* Run `kubefencectl status --agent agent` in this process; returns its exit
 * code and what it printed (free()). */
static int run_status(const char *agent, char **ret_out)
{
	char path[] = "/tmp/check_ctl_status.XXXXXX";
	char *argv[] = {"status", "--agent", (char *)agent, "--timeout-ms", "5000", NULL};
	int fd, saved, rc;
	FILE *f;
	long n;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, STDOUT_FILENO), 0);
	rc = ctl_status_main((int)ELEMENTSOF(argv) - 1, argv);
	fflush(stdout);
	ck_assert_int_ge(dup2(saved, STDOUT_FILENO), 0);
	close(saved);
	close(fd);

	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	*ret_out = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(*ret_out);
	ck_assert_uint_eq(fread(*ret_out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	(void)unlink(path);
	return rc;
}

static char *status_of(struct fixture *fx, int *ret_rc)
{
	struct http_options o = {.listen = "127.0.0.1:0", .status = fill_status, .userdata = fx};
	struct http_server *s = NULL;
	char agent[64], err[256] = "", *out = NULL;

	ck_assert_msg(http_start(&o, &s, err, sizeof(err)) == 0, "%s", err);
	snprintf(agent, sizeof(agent), "127.0.0.1:%u", http_port(s));
	*ret_rc = run_status(agent, &out);
	http_stop(s);
	return out;
}

/* Twelve runs: the ring keeps runs 3..12, and the history lists 12 first. */
START_TEST(test_fence_history_newest_first)
{
	struct fixture fx = {0};
	const char *prev = NULL;
	char line[128], *out;
	int rc;

	for (int i = 1; i <= 12; i++)
		record(&fx, i);
	out = status_of(&fx, &rc);
	ck_assert_msg(rc == 0, "exit %d:\n%s", rc, out);
	ck_assert_msg(strstr(out, "\nfence history (10, newest first):\n"), "%s", out);
	for (int i = 12; i >= 3; i--) {
		const char *at;

		snprintf(line, sizeof(line),
		         "  2026-01-02T03:04:%02d.000000Z  %s fenced node-%d by %s", i,
		         i == 7 ? "FAILED" : "ok", i, i % 2 ? "scsi-pr,pod-delete" : "pod-delete");
		at = strstr(out, line);
		ck_assert_msg(at, "no '%s' in:\n%s", line, out);
		ck_assert_msg(!prev || at > prev, "run %d is not after run %d in:\n%s", i, i + 1,
		              out);
		prev = at;
	}
	ck_assert_msg(!strstr(out, "fenced node-2 ") && !strstr(out, "fenced node-1 "),
	              "runs that left the ring are shown:\n%s", out);
	free(out);
}
END_TEST

START_TEST(test_fence_history_one_and_none)
{
	struct fixture fx = {0};
	char *out;
	int rc;

	out = status_of(&fx, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\nfence history: none\n"), "%s", out);
	free(out);

	record(&fx, 5);
	out = status_of(&fx, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "\nfence history (1, newest first):\n"
	                          "  2026-01-02T03:04:05.000000Z  ok fenced node-5 by "
	                          "scsi-pr,pod-delete, 105 ms\n"),
	              "%s", out);
	free(out);
}
END_TEST

static Suite *ctl_status_suite(void)
{
	Suite *s = suite_create("ctl_status");
	TCase *tc = tcase_create("fence_history");

	tcase_add_test(tc, test_fence_history_newest_first);
	tcase_add_test(tc, test_fence_history_one_and_none);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(ctl_status_suite(), NULL);
}
