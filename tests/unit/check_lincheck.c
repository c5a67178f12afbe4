/* Unit tests of the linearizability checker (tests/lincheck/lincheck.c):
 * hand-made histories that must pass or be caught, the loader's errors,
 * the minimised counterexample, random small histories judged against a
 * brute-force search over every order, and kf-lincheck's exit codes. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/history.h"
#include "tests/lib/kftest.h"
#include "tests/lincheck/lincheck.h"

#define HDR "# kfhistory 1\n"

/* Load text and check it; returns the verdict (or -errno), keeps the report
 * in *ret_rep and *ret_h when asked. */
static int judge_full(const char *text, struct lc_history **ret_h, struct lc_report **ret_rep,
                      char *err, size_t errlen)
{
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	int r;

	ck_assert_int_eq(lc_history_new(&h), 0);
	r = lc_history_load_string(h, "t.hist", text, err, errlen);
	if (r >= 0)
		r = lc_check(h, NULL, &rep, err, errlen);
	if (r >= 0)
		r = (int)lc_report_verdict(rep);
	if (ret_rep && rep) {
		*ret_rep = rep;
		*ret_h = h;
	} else {
		lc_report_free(rep);
		lc_history_free(h);
	}
	return r;
}

static int judge(const char *text)
{
	char err[512] = "";
	int r = judge_full(text, NULL, NULL, err, sizeof(err));

	if (r < 0)
		fprintf(stderr, "judge: %s\n", err);
	return r;
}

/* ------------------------------------------------------------ passes */

START_TEST(sequential_register)
{
	ck_assert_int_eq(judge(HDR "a get k - 0 1 ok m\n"
	                           "a put k x 2 3 ok m\n"
	                           "a get k x 4 5 ok m\n"
	                           "a del k - 6 7 ok m\n"
	                           "a get k - 8 9 ok m\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(concurrent_overlaps)
{
	/* b's read overlaps both writes: x, y, or even "-" would do; c reads y
	 * while a's put x is still pending, then d reads x: x after y. */
	ck_assert_int_eq(judge(HDR "a put k x 0 100 ok m\n"
	                           "b put k y 10 20 ok m\n"
	                           "e get k - 0 15 ok m\n"
	                           "c get k y 30 40 ok m\n"
	                           "d get k x 50 120 ok m\n"
	                           "d get k x 130 140 ok m\n"),
	                 LC_LINEARIZABLE);
	/* Touching intervals count as concurrent. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\nb get k - 10 20 ok m\n"), LC_LINEARIZABLE);
}
END_TEST

START_TEST(keys_are_independent)
{
	ck_assert_int_eq(judge(HDR "a put k1 x 0 10 ok m\n"
	                           "b put k2 y 0 10 ok m\n"
	                           "a get k1 x 20 30 ok m\n"
	                           "b get k2 y 20 30 ok m\n"
	                           "a get k3 - 20 30 ok m\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(fail_and_unfinished_reads_are_ignored)
{
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a put k y 20 30 fail m\n"
	                           "b get k zzz 25 35 fail m\n"
	                           "b get k - 36 40 info m\n"
	                           "a get k x 50 60 ok -\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(info_put_taking_effect_late)
{
	/* The client gave up at 20; the write landed afterwards. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a put k y 12 20 info m\n"
	                           "b get k x 30 40 ok m\n"
	                           "b get k y 50 60 ok m\n"
	                           "b get k y 70 80 ok m\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(info_put_never_taking_effect)
{
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a put k y 12 20 info m\n"
	                           "b get k x 30 40 ok m\n"
	                           "b get k x 500 600 ok m\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(info_del_taking_effect_or_not)
{
	/* Taking effect: the value vanishes with no ok del. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a del k - 12 20 info m\n"
	                           "b get k x 30 40 ok m\n"
	                           "b get k - 50 60 ok m\n"
	                           "b get k - 70 80 ok m\n"),
	                 LC_LINEARIZABLE);
	/* Not taking effect, though a read of "-" (the initial state) comes
	 * after its invocation: forcing it before 20 would be wrong. */
	ck_assert_int_eq(judge(HDR "c get k - 0 20 ok m\n"
	                           "a put k x 0 5 ok m\n"
	                           "b get k x 12 13 ok m\n"
	                           "d del k - 10 11 info m\n"
	                           "b get k x 21 25 ok m\n"),
	                 LC_LINEARIZABLE);
	/* Two info dels, a value written between their effects. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "c del k - 11 12 info m\n"
	                           "d del k - 11 12 info m\n"
	                           "b get k - 20 30 ok m\n"
	                           "a put k y 40 50 ok m\n"
	                           "b get k - 60 70 ok m\n"),
	                 LC_LINEARIZABLE);
}
END_TEST

/* ------------------------------------------------------------ caught */

START_TEST(lost_acknowledged_write)
{
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a put k y 20 30 ok m\n"
	                           "b get k x 40 50 ok m\n"),
	                 LC_VIOLATION);
	ck_assert_int_eq(judge(HDR "a put k y 20 30 ok m\nb get k - 40 50 ok m\n"), LC_VIOLATION);
}
END_TEST

START_TEST(stale_read_after_newer_write)
{
	/* b saw y, then c (starting later) saw the older x. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a put k y 20 100 ok m\n"
	                           "b get k y 30 40 ok m\n"
	                           "c get k x 50 60 ok m\n"),
	                 LC_VIOLATION);
}
END_TEST

START_TEST(read_of_a_failed_write)
{
	ck_assert_int_eq(judge(HDR "a put k x 0 10 fail m\nb get k x 20 30 ok m\n"), LC_VIOLATION);
	/* Or of a value read before its write was even sent. */
	ck_assert_int_eq(judge(HDR "b get k x 0 5 ok m\na put k x 10 20 info m\n"), LC_VIOLATION);
}
END_TEST

START_TEST(read_after_delete)
{
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "a del k - 20 30 ok m\n"
	                           "b get k x 40 50 ok m\n"),
	                 LC_VIOLATION);
	/* An info del cannot take effect twice. */
	ck_assert_int_eq(judge(HDR "a put k x 0 10 ok m\n"
	                           "c del k - 11 12 info m\n"
	                           "b get k - 20 30 ok m\n"
	                           "a put k y 40 50 ok m\n"
	                           "b get k - 60 70 ok m\n"),
	                 LC_VIOLATION);
}
END_TEST

START_TEST(violation_after_many_segments)
{
	char *text = malloc(1 << 20);
	size_t len = 0, i;

	len += (size_t)sprintf(text + len, HDR);
	for (i = 0; i < 5000; i++)
		len += (size_t)sprintf(text + len, "a put k v%zu %zu %zu ok m\n", i, 10 * i,
		                       10 * i + 5);
	len += (size_t)sprintf(text + len, "b get k v4998 60000 60010 ok m\n");
	ck_assert_int_eq(judge(text), LC_VIOLATION);
	free(text);
}
END_TEST

/* ------------------------------------------------------------ report */

START_TEST(minimised_counterexample)
{
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	const struct lc_violation *v;
	char err[256];
	const char *text = HDR "a put k x 0 10 ok m1\n"
	                       "n get k x 11 12 ok m1\n"
	                       "n put other z 11 12 ok m1\n"
	                       "a put k y 20 30 ok m1\n"
	                       "n get k y 31 32 ok m1\n"
	                       "n put k w 33 34 fail m1\n"
	                       "n get k y 35 36 ok m1\n"
	                       "b get k x 40 50 ok m2\n"
	                       "n put k q 60 70 ok m2\n";

	ck_assert_int_eq(judge_full(text, &h, &rep, err, sizeof(err)), LC_VIOLATION);
	ck_assert_uint_eq(lc_report_nviolations(rep), 1);
	v = lc_report_violation(rep, 0);
	ck_assert_str_eq(v->key, "k");
	ck_assert_uint_eq(v->nstart, 1);
	ck_assert_str_eq(v->start_states[0], "-");
	ck_assert_uint_eq(v->nops, 3);
	ck_assert_str_eq(v->ops[0].client, "a");
	ck_assert_str_eq(v->ops[0].value, "x");
	ck_assert_str_eq(v->ops[1].value, "y");
	ck_assert_int_eq(v->ops[1].op, HIST_PUT);
	ck_assert_str_eq(v->ops[2].client, "b");
	ck_assert_int_eq(v->ops[2].op, HIST_GET);
	ck_assert_str_eq(v->ops[2].master, "m2");
	ck_assert_uint_eq(v->ops[2].line, 9);
	ck_assert_uint_eq(v->ops[2].invoke_us, 40);
	lc_report_free(rep);
	lc_history_free(h);
}
END_TEST

START_TEST(minimised_keeps_what_forces_an_info_write)
{
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	const struct lc_violation *v;
	char err[256];

	/* The info put of y counts only because b read y: the counterexample
	 * must keep that read, or it would not fail on its own. */
	ck_assert_int_eq(judge_full(HDR "a put k x 1000 11000 ok m1\n"
	                                "a put k y 12000 13000 info m1\n"
	                                "b get k y 20000 30000 ok m2\n"
	                                "b get k x 31000 32000 ok m2\n",
	                            &h, &rep, err, sizeof(err)),
	                 LC_VIOLATION);
	v = lc_report_violation(rep, 0);
	ck_assert_uint_eq(v->nops, 4);
	ck_assert_int_eq(v->ops[1].result, HIST_INFO);
	ck_assert_uint_eq(v->ops[1].effect_by_us, 30000);
	ck_assert_int_eq(v->ops[1].optional, 0);
	ck_assert_str_eq(v->ops[2].value, "y");
	lc_report_free(rep);
	lc_history_free(h);
}
END_TEST

START_TEST(report_text_and_json)
{
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	char err[256], path[] = "/tmp/check_lincheck.XXXXXX", *buf = NULL;
	size_t len = 0;
	FILE *f;
	int fd;

	ck_assert_int_eq(judge_full(HDR "a put k x 1000 11000 ok m1\n"
	                                "a put k y 20000 30000 ok m1\n"
	                                "b get k x 40000 50000 ok m2\n",
	                            &h, &rep, err, sizeof(err)),
	                 LC_VIOLATION);
	f = open_memstream(&buf, &len);
	lc_report_print(rep, 0, f);
	lc_report_summary(rep, f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "VIOLATION on key 'k'"));
	/* times from the first invocation, in ms with µs, and absolute */
	ck_assert_ptr_nonnull(strstr(buf, "+39.000 ms"));
	ck_assert_ptr_nonnull(strstr(buf, "[40000..50000]"));
	ck_assert_ptr_nonnull(
	        strstr(buf, "lincheck: 3 ops, 1 keys, verdict VIOLATION (1 key: 'k')"));
	free(buf);

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(lc_report_write_json(rep, path, err, sizeof(err)), 0);
	f = fopen(path, "r");
	buf = calloc(1, 8192);
	ck_assert_uint_gt(fread(buf, 1, 8191, f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "\"verdict\": \"violation\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"key\": \"k\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"ops\": 3"));
	free(buf);
	unlink(path);
	lc_report_free(rep);
	lc_history_free(h);
}
END_TEST

START_TEST(counts)
{
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	const struct lc_stats *st;
	char err[256];

	ck_assert_int_eq(judge_full(HDR "a put k x 0 10 ok m\n"
	                                "a put k y 12 20 info m\n"
	                                "a put j z 12 20 fail m\n"
	                                "b get k x 30 40 ok m\n",
	                            &h, &rep, err, sizeof(err)),
	                 LC_LINEARIZABLE);
	st = lc_report_stats(rep);
	ck_assert_uint_eq(st->ops, 4);
	ck_assert_uint_eq(st->keys, 2);
	ck_assert_uint_eq(st->ok, 2);
	ck_assert_uint_eq(st->fail, 1);
	ck_assert_uint_eq(st->info, 1);
	ck_assert_uint_eq(st->info_dropped, 1);
	lc_report_free(rep);
	lc_history_free(h);
}
END_TEST

/* ------------------------------------------------------------ loader */

static const struct {
	const char *text;
	const char *msg;
} BAD[] = {
        {HDR "a put k x 0 1 ok\n", "t.hist:2: 7 fields, expected 8"},
        {HDR "a put k x 0 1 ok m extra\n", "t.hist:2: 9 fields"},
        {HDR "a cas k x 0 1 ok m\n", "t.hist:2: unknown op 'cas'"},
        {HDR "a put k x 0 1 maybe m\n", "t.hist:2: unknown result 'maybe'"},
        {HDR "# comment\na put k x 5 4 ok m\n", "t.hist:3: complete 4 < invoke 5"},
        {HDR "a put k x 1x 4 ok m\n", "t.hist:2: bad number '1x' for INVOKE_US"},
        {HDR "a put k x 1 99999999999999999999 ok m\n", "COMPLETE_US (out of range)"},
        {HDR "a put k - 1 2 ok m\n", "t.hist:2: put without a value"},
        {HDR "a del k x 1 2 ok m\n", "t.hist:2: del with a value"},
        {"# kfhistory 2\n", "t.hist:1: history version '2' is not supported"},
        {HDR "a put k x 0 1 ok m\nb put k x 2 3 info m\n",
         "t.hist:3: value 'x' of key 'k' is written again (first at t.hist:2)"},
};

START_TEST(loader_errors)
{
	char err[512] = "";
	int r = judge_full(BAD[_i].text, NULL, NULL, err, sizeof(err));

	ck_assert_int_eq(r, -EINVAL);
	ck_assert_msg(strstr(err, BAD[_i].msg), "'%s' lacks '%s'", err, BAD[_i].msg);
}
END_TEST

START_TEST(loader_accepts)
{
	/* Comments anywhere, a second header, blank lines, CRLF, no final
	 * newline; a fail put may reuse a value (a retry after NOTMASTER). */
	ck_assert_int_eq(judge(HDR HDR "\n# a comment\r\n"
	                               "a put k x 0 1 fail m\r\n" HDR "a put k x 2 3 ok m\n"
	                               "b get k x 4 5 ok m"),
	                 LC_LINEARIZABLE);
}
END_TEST

START_TEST(load_files_and_errors)
{
	struct lc_history *h = NULL;
	char err[512], path[] = "/tmp/check_lincheck.XXXXXX";
	int fd = mkstemp(path);
	const char *t = HDR "a put k x 0 1 ok m\nbad line\n";

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, t, strlen(t)), (ssize_t)strlen(t));
	close(fd);
	ck_assert_int_eq(lc_history_new(&h), 0);
	ck_assert_int_eq(lc_history_load(h, path, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":3: 2 fields"));
	ck_assert_ptr_nonnull(strstr(err, path));
	/* nothing of a bad file is kept */
	ck_assert_uint_eq(lc_history_size(h), 0);
	ck_assert_int_eq(lc_history_load(h, "/nonexistent/x.hist", err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/x.hist"));
	unlink(path);
	lc_history_free(h);
}
END_TEST

START_TEST(writer_round_trip)
{
	struct hist_writer *w = NULL;
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	char err[256], path[] = "/tmp/check_lincheck.XXXXXX";
	int fd = mkstemp(path);

	close(fd);
	unlink(path);
	ck_assert_int_eq(hist_open(path, &w), 0);
	ck_assert_int_eq(hist_record(w, "c1", HIST_PUT, "k", "x", 10, 20, HIST_OK, "m"), 0);
	ck_assert_int_eq(hist_record(w, "c2", HIST_GET, "k", "x", 30, 40, HIST_OK, NULL), 0);
	ck_assert_int_eq(hist_record(w, "c2", HIST_DEL, "k", NULL, 50, 60, HIST_INFO, NULL), 0);
	ck_assert_int_eq(hist_record(w, "c2", HIST_GET, "k", NULL, 70, 80, HIST_OK, NULL), 0);
	hist_close(w);
	ck_assert_int_eq(lc_history_new(&h), 0);
	ck_assert_int_eq(lc_history_load(h, path, err, sizeof(err)), 0);
	ck_assert_uint_eq(lc_history_size(h), 4);
	ck_assert_int_eq(lc_check(h, NULL, &rep, err, sizeof(err)), 0);
	ck_assert_int_eq(lc_report_verdict(rep), LC_LINEARIZABLE);
	lc_report_free(rep);
	lc_history_free(h);
	unlink(path);
}
END_TEST

START_TEST(add_validates)
{
	struct lc_history *h = NULL;
	char err[256];

	ck_assert_int_eq(lc_history_new(&h), 0);
	ck_assert_int_eq(
	        lc_history_add(h, "a", HIST_PUT, "k", "x", 0, 1, HIST_OK, NULL, err, sizeof(err)),
	        0);
	ck_assert_int_eq(
	        lc_history_add(h, "a b", HIST_PUT, "k", "y", 0, 1, HIST_OK, NULL, err, sizeof(err)),
	        -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "CLIENT has a space"));
	ck_assert_int_eq(
	        lc_history_add(h, "a", HIST_PUT, "k", NULL, 0, 1, HIST_OK, NULL, err, sizeof(err)),
	        -EINVAL);
	ck_assert_uint_eq(lc_history_size(h), 1);
	lc_history_free(h);
}
END_TEST

/* ------------------------------------------------------------ brute force */

struct bop {
	int op, res;
	int val; /* 0: none */
	unsigned inv, cmp;
};

static uint64_t rs = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (unsigned)(rs % n);
}

/* Every order of the kept ops: an info write may be left out or placed
 * anywhere after its invocation; ok ops respect real time (a before b when
 * a completed strictly before b was invoked). */
static int bf_dfs(const struct bop *o, int n, unsigned placed, unsigned skip, int state)
{
	int i, j, any = 0;

	if ((placed | skip) == (1u << n) - 1)
		return 1;
	for (i = 0; i < n; i++) {
		int ok = 1, ns = state;

		if ((placed | skip) & (1u << i))
			continue;
		any = 1;
		for (j = 0; j < n && ok; j++)
			if (!((placed | skip) & (1u << j)) && j != i && o[j].res == HIST_OK &&
			    o[j].cmp < o[i].inv)
				ok = 0;
		if (!ok)
			continue;
		if (o[i].op == HIST_GET) {
			if (o[i].val != state)
				continue;
		} else {
			ns = o[i].op == HIST_PUT ? o[i].val : 0;
		}
		if (bf_dfs(o, n, placed | (1u << i), skip, ns))
			return 1;
	}
	(void)any;
	return 0;
}

static int brute_force(const struct bop *all, int nall)
{
	struct bop o[8];
	int n = 0, i, ninfo = 0, infos[8];
	unsigned sub;

	for (i = 0; i < nall; i++) {
		if (all[i].res == HIST_FAIL || (all[i].op == HIST_GET && all[i].res != HIST_OK))
			continue;
		o[n] = all[i];
		if (o[n].res == HIST_INFO)
			infos[ninfo++] = n;
		n++;
	}
	for (sub = 0; sub < (1u << ninfo); sub++) {
		unsigned skip = 0;

		for (i = 0; i < ninfo; i++)
			if (sub & (1u << i))
				skip |= 1u << infos[i];
		if (bf_dfs(o, n, 0, skip, 0))
			return 1;
	}
	return 0;
}

START_TEST(random_against_brute_force)
{
	int round, lin = 0, nonlin = 0;

	for (round = 0; round < 3000; round++) {
		struct bop o[7];
		int n = 2 + (int)rnd(6), i, nval = 0, simulate = rnd(2), state = 0;
		char text[4096], *p = text;
		unsigned pt[7], order[7];

		for (i = 0; i < n; i++) {
			unsigned r = rnd(10);

			o[i].op = r < 4 ? HIST_PUT : r < 5 ? HIST_DEL : HIST_GET;
			r = rnd(10);
			o[i].res = r < 6 ? HIST_OK : r < 8 ? HIST_INFO : HIST_FAIL;
			o[i].inv = rnd(20);
			o[i].cmp = o[i].inv + rnd(8);
			o[i].val = o[i].op == HIST_PUT ? ++nval : 0;
			pt[i] = o[i].inv * 4 + rnd((o[i].cmp - o[i].inv) * 4 + 1);
			if (o[i].res == HIST_INFO)
				pt[i] += rnd(20); /* may land after the give-up */
			order[i] = (unsigned)i;
		}
		if (simulate) {
			/* reads answered by a real register, mostly linearizable */
			int a, b;

			for (a = 0; a < n; a++)
				for (b = a + 1; b < n; b++)
					if (pt[order[b]] < pt[order[a]]) {
						unsigned t = order[a];
						order[a] = order[b];
						order[b] = t;
					}
			for (a = 0; a < n; a++) {
				struct bop *x = &o[order[a]];
				int applied = x->res == HIST_OK || (x->res == HIST_INFO && rnd(2));

				if (x->op == HIST_GET)
					x->val = state;
				else if (applied)
					state = x->op == HIST_PUT ? x->val : 0;
			}
		} else {
			for (i = 0; i < n; i++)
				if (o[i].op == HIST_GET)
					o[i].val = (int)rnd((unsigned)nval + 1);
		}
		p += sprintf(p, HDR);
		for (i = 0; i < n; i++) {
			char v[16] = "-";

			if (o[i].val && (o[i].op == HIST_PUT || o[i].res == HIST_OK))
				sprintf(v, "v%d", o[i].val);
			if (o[i].op == HIST_GET && o[i].res != HIST_OK)
				o[i].val = 0;
			p += sprintf(p, "c%d %s k %s %u %u %s m\n", i, hist_op_name(o[i].op), v,
			             o[i].inv, o[i].cmp, hist_result_name(o[i].res));
		}
		{
			int want = brute_force(o, n);
			int got = judge(text);

			ck_assert_int_ge(got, 0);
			ck_assert_msg((got == LC_LINEARIZABLE) == want,
			              "round %d: checker %s, brute force %s:\n%s", round,
			              lc_verdict_name(got), want ? "linearizable" : "violation",
			              text);
			want ? lin++ : nonlin++;
		}
	}
	/* both kinds were exercised */
	ck_assert_int_gt(lin, 500);
	ck_assert_int_gt(nonlin, 500);
}
END_TEST

/* ------------------------------------------------------------ program */

static int run_prog(const char *a1, const char *a2, const char *a3, const char *a4)
{
	const char *prog = TEST_BUILDDIR "/tests/lincheck/kf-lincheck";
	int st;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execl(prog, prog, a1, a2, a3, a4, (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(program_exit_codes)
{
	char dir[] = "/tmp/check_lincheck.XXXXXX", good[64], good2[64], bad[64], broken[64],
	     json[64], buf[4096] = "";
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(good2, sizeof(good2), "%s/good2", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	snprintf(broken, sizeof(broken), "%s/broken", dir);
	snprintf(json, sizeof(json), "%s/out.json", dir);
	write_file(good, HDR "a put k x 0 10 ok m\n");
	write_file(good2, HDR "b get k x 20 30 ok m\n");
	write_file(bad, HDR "a put k x 0 10 ok m\na put k y 20 30 ok m\nb get k x 40 50 ok m\n");
	write_file(broken, HDR "a put k x 0 10 ok\n");

	ck_assert_int_eq(run_prog(good, NULL, NULL, NULL), 0);
	/* several files make one history */
	ck_assert_int_eq(run_prog(good, good2, NULL, NULL), 0);
	ck_assert_int_eq(run_prog(good2, NULL, NULL, NULL), 1);
	ck_assert_int_eq(run_prog("--json", json, bad, NULL), 1);
	f = fopen(json, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_gt(fread(buf, 1, sizeof(buf) - 1, f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "\"verdict\": \"violation\""));
	ck_assert_int_eq(run_prog(broken, NULL, NULL, NULL), 2);
	ck_assert_int_eq(run_prog("/nonexistent/h", NULL, NULL, NULL), 2);
	ck_assert_int_eq(run_prog(NULL, NULL, NULL, NULL), 2);
	ck_assert_int_eq(run_prog("--bogus", good, NULL, NULL), 2);
	ck_assert_int_eq(run_prog("--quiet", good, NULL, NULL), 0);
	unlink(good);
	unlink(good2);
	unlink(bad);
	unlink(broken);
	unlink(json);
	rmdir(dir);
}
END_TEST

static Suite *lincheck_suite(void)
{
	Suite *s = suite_create("lincheck");
	TCase *tc;

	tc = tcase_create("linearizable");
	tcase_add_test(tc, sequential_register);
	tcase_add_test(tc, concurrent_overlaps);
	tcase_add_test(tc, keys_are_independent);
	tcase_add_test(tc, fail_and_unfinished_reads_are_ignored);
	tcase_add_test(tc, info_put_taking_effect_late);
	tcase_add_test(tc, info_put_never_taking_effect);
	tcase_add_test(tc, info_del_taking_effect_or_not);
	suite_add_tcase(s, tc);

	tc = tcase_create("violations");
	tcase_add_test(tc, lost_acknowledged_write);
	tcase_add_test(tc, stale_read_after_newer_write);
	tcase_add_test(tc, read_of_a_failed_write);
	tcase_add_test(tc, read_after_delete);
	tcase_add_test(tc, violation_after_many_segments);
	suite_add_tcase(s, tc);

	tc = tcase_create("report");
	tcase_add_test(tc, minimised_counterexample);
	tcase_add_test(tc, minimised_keeps_what_forces_an_info_write);
	tcase_add_test(tc, report_text_and_json);
	tcase_add_test(tc, counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("loader");
	tcase_add_loop_test(tc, loader_errors, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
	tcase_add_test(tc, loader_accepts);
	tcase_add_test(tc, load_files_and_errors);
	tcase_add_test(tc, writer_round_trip);
	tcase_add_test(tc, add_validates);
	suite_add_tcase(s, tc);

	tc = tcase_create("brute_force");
	tcase_add_test(tc, random_against_brute_force);
	suite_add_tcase(s, tc);

	tc = tcase_create("program");
	tcase_add_test(tc, program_exit_codes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(lincheck_suite(), NULL);
}
