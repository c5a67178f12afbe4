/* Unit tests of the history writer (lib/history.c): the exact line format,
 * the version line written once, token validation, and records from
 * several processes appending to one file at once staying whole. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/history.h"
#include "tests/lib/kftest.h"

static char *tmp_path(void)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/check_history.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	return path;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

START_TEST(format_and_header)
{
	struct hist_writer *w = NULL;
	char *path = tmp_path(), *text;

	ck_assert_int_eq(hist_open(path, &w), 0);
	ck_assert_int_eq(hist_record(w, "c1", HIST_PUT, "k1", "v1", 10, 20, HIST_OK,
	                             "metad-0@10.0.0.1:7480"),
	                 0);
	ck_assert_int_eq(hist_record(w, "c1", HIST_GET, "k1", NULL, 30, 40, HIST_FAIL, NULL), 0);
	w = hist_close(w);
	ck_assert_ptr_null(w);
	/* Reopening appends, without a second header. */
	ck_assert_int_eq(hist_open(path, &w), 0);
	ck_assert_int_eq(hist_record(w, "c2", HIST_DEL, "k1", NULL, 50, 60, HIST_INFO, "m"), 0);
	hist_close(w);
	text = slurp(path);
	ck_assert_str_eq(text, "# kfhistory 1\n"
	                       "c1 put k1 v1 10 20 ok metad-0@10.0.0.1:7480\n"
	                       "c1 get k1 - 30 40 fail -\n"
	                       "c2 del k1 - 50 60 info m\n");
	free(text);
	unlink(path);
}
END_TEST

START_TEST(rejects_what_the_format_cannot_carry)
{
	struct hist_writer *w = NULL;
	char *path = tmp_path(), *text, big[1100];

	memset(big, 'a', sizeof(big));
	big[1024] = 0;
	ck_assert_int_eq(hist_open(path, &w), 0);
	/* 1024 bytes are fine, 1025 are not */
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, big, "v", 1, 2, HIST_OK, NULL), 0);
	big[1024] = 'a';
	big[1025] = 0;
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, big, "v2", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "", HIST_PUT, "k", "v", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, NULL, HIST_PUT, "k", "v", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "a key", "v", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "k", "v\n", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "k", "v\t", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "k", "v\x80", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "k", "-", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_PUT, "k", NULL, 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_DEL, "k", "v", 1, 2, HIST_OK, NULL), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_GET, "k", "v", 1, 2, HIST_OK, "a b"), -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", (enum hist_op)7, "k", "v", 1, 2, HIST_OK, NULL),
	                 -EINVAL);
	ck_assert_int_eq(hist_record(w, "c", HIST_GET, "k", "v", 1, 2, (enum hist_result)7, NULL),
	                 -EINVAL);
	ck_assert_int_eq(hist_record(NULL, "c", HIST_GET, "k", "v", 1, 2, HIST_OK, NULL), -EINVAL);
	hist_close(w);
	text = slurp(path);
	/* nothing but the header and the one good record */
	ck_assert_int_eq((int)(strchr(strchr(text, '\n') + 1, '\n') - text) + 1, (int)strlen(text));
	free(text);
	unlink(path);
	ck_assert_int_eq(hist_open("/nonexistent/dir/h", &w), -ENOENT);
	ck_assert_ptr_null(hist_close(NULL));
}
END_TEST

START_TEST(names_and_clock)
{
	uint64_t a = hist_now_us(), b = hist_now_us();

	ck_assert_str_eq(hist_op_name(HIST_PUT), "put");
	ck_assert_str_eq(hist_op_name(HIST_GET), "get");
	ck_assert_str_eq(hist_op_name(HIST_DEL), "del");
	ck_assert_str_eq(hist_result_name(HIST_OK), "ok");
	ck_assert_str_eq(hist_result_name(HIST_FAIL), "fail");
	ck_assert_str_eq(hist_result_name(HIST_INFO), "info");
	/* CLOCK_REALTIME in µs: after 2020, not in ns */
	ck_assert_uint_gt(a, 1577836800ull * 1000000);
	ck_assert_uint_lt(a, 4102444800ull * 1000000);
	ck_assert_uint_ge(b, a);
}
END_TEST

#define PROCS   6
#define RECORDS 400

START_TEST(processes_append_whole_records)
{
	char *path = tmp_path(), *text, *line, *save = NULL;
	int i, st, headers = 0, records = 0;
	int seen[PROCS][RECORDS];
	pid_t pids[PROCS];

	memset(seen, 0, sizeof(seen));
	for (i = 0; i < PROCS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			struct hist_writer *w = NULL;
			char client[16], value[600];
			int j;

			/* all open the new file at about the same time */
			if (hist_open(path, &w) < 0)
				_exit(1);
			snprintf(client, sizeof(client), "p%d", i);
			memset(value, 'x', sizeof(value));
			for (j = 0; j < RECORDS; j++) {
				/* long records, so a torn or interleaved write shows */
				snprintf(value, sizeof(value), "%d-%d-", i, j);
				value[strlen(value)] = 'x';
				value[500] = 0;
				if (hist_record(w, client, HIST_PUT, "k", value, 1, 2, HIST_OK,
				                NULL) < 0)
					_exit(1);
			}
			hist_close(w);
			_exit(0);
		}
	}
	for (i = 0; i < PROCS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	text = slurp(path);
	ck_assert_str_eq(text + strlen(text) - 1, "\n");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int p, j, q;

		if (strcmp(line, "# kfhistory 1") == 0) {
			headers++;
			continue;
		}
		ck_assert_msg(sscanf(line, "p%d put k %d-%d-", &p, &q, &j) == 3, "bad line '%.80s'",
		              line);
		ck_assert_int_eq(p, q);
		/* "pN put k " + the 500-byte value + " 1 2 ok -" */
		ck_assert_int_eq((int)strlen(line), 9 + 500 + 9);
		ck_assert_str_eq(line + strlen(line) - 9, " 1 2 ok -");
		ck_assert(p >= 0 && p < PROCS && j >= 0 && j < RECORDS);
		seen[p][j]++;
		records++;
	}
	ck_assert_int_eq(headers, 1);
	ck_assert_int_eq(records, PROCS * RECORDS);
	for (i = 0; i < PROCS; i++)
		for (st = 0; st < RECORDS; st++)
			ck_assert_int_eq(seen[i][st], 1);
	free(text);
	unlink(path);
}
END_TEST

static Suite *history_suite(void)
{
	Suite *s = suite_create("history");
	TCase *tc;

	tc = tcase_create("writer");
	tcase_add_test(tc, format_and_header);
	tcase_add_test(tc, rejects_what_the_format_cannot_carry);
	tcase_add_test(tc, names_and_clock);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_test(tc, processes_append_whole_records);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(history_suite(), NULL);
}
