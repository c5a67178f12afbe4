/* Unit tests of lib/ctlproto.c, the control socket's line grammar, on a
 * grammar of the tests' own: the tokenizer (rest-of-line fields, single
 * spaces, the 4096-byte limit), every error message, bounds of numbers and
 * lengths of texts, a field's own check, and the line writer (tokens,
 * sanitised rest, limits, round trips through the parser). */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ctlproto.h"
#include "tests/lib/kftest.h"

enum { T_NUM, T_SMALL, T_NAME, T_TAG, T_CODE, T_WHY };
enum { V_SET = 10, V_TAG, V_SAY, V_NONE };

static int check_even(uint64_t v, char *err, size_t errlen)
{
	if (v % 2 == 0)
		return 0;
	snprintf(err, errlen, "SET: %llu is odd", (unsigned long long)v);
	return -EBADMSG;
}

static const struct ctlproto_field FIELDS[] = {
        [T_NUM] = {"num", CTLPROTO_U64, 0, UINT64_MAX, NULL},
        [T_SMALL] = {"small", CTLPROTO_U64, 2, 10, check_even},
        [T_NAME] = {"name", CTLPROTO_TEXT, 1, 8, NULL},
        [T_TAG] = {"tag", CTLPROTO_TEXT, 0, 4, NULL},
        [T_CODE] = {"code", CTLPROTO_TEXT, 2, 3, NULL},
        [T_WHY] = {"why", CTLPROTO_REST, 0, CTLPROTO_LINE_MAX, NULL},
};

static const struct ctlproto_verb VERBS[] = {
        {"SET", V_SET, CTLPROTO_F(T_NUM) | CTLPROTO_F(T_NAME), CTLPROTO_F(T_SMALL)},
        {"TAG", V_TAG, CTLPROTO_F(T_TAG) | CTLPROTO_F(T_CODE), 0},
        {"SAY", V_SAY, 0, CTLPROTO_F(T_WHY) | CTLPROTO_F(T_NUM)},
        {"NONE", V_NONE, 0, 0},
};

static const struct ctlproto_grammar G = {FIELDS, sizeof(FIELDS) / sizeof(FIELDS[0]), VERBS,
                                          sizeof(VERBS) / sizeof(VERBS[0])};

static struct ctlproto_line L;

START_TEST(parse_fields)
{
	char err[256] = "";

	ck_assert_int_eq(
	        ctlproto_parse(&G, "SET num=18446744073709551615 name=abc", &L, err, sizeof(err)),
	        0);
	ck_assert_int_eq(L.verb->id, V_SET);
	ck_assert_str_eq(L.verb->name, "SET");
	ck_assert(ctlproto_has(&L, T_NUM) && ctlproto_has(&L, T_NAME));
	ck_assert(!ctlproto_has(&L, T_SMALL));
	ck_assert_uint_eq(L.u64[T_NUM], UINT64_MAX);
	ck_assert_str_eq(L.text[T_NAME], "abc");
	/* a field the line does not carry reads 0 / NULL */
	ck_assert_uint_eq(L.u64[T_SMALL], 0);
	ck_assert_ptr_null(L.text[T_WHY]);

	/* any order; an optional field; the bounds are inclusive */
	ck_assert_int_eq(
	        ctlproto_parse(&G, "SET small=10 name=12345678 num=0", &L, err, sizeof(err)), 0);
	ck_assert_uint_eq(L.u64[T_SMALL], 10);
	ck_assert_uint_eq(L.u64[T_NUM], 0);
	ck_assert_int_eq(ctlproto_parse(&G, "SET small=2 name=x num=1", &L, err, sizeof(err)), 0);

	/* a value may hold '=' */
	ck_assert_int_eq(ctlproto_parse(&G, "SET num=1 name=a=b", &L, err, sizeof(err)), 0);
	ck_assert_str_eq(L.text[T_NAME], "a=b");

	/* empty where the length may be 0; a trailing space is no field */
	ck_assert_int_eq(ctlproto_parse(&G, "TAG tag= code=ab ", &L, err, sizeof(err)), 0);
	ck_assert_str_eq(L.text[T_TAG], "");
	ck_assert_str_eq(L.text[T_CODE], "ab");

	ck_assert_int_eq(ctlproto_parse(&G, "NONE", &L, err, sizeof(err)), 0);
	ck_assert_int_eq(L.verb->id, V_NONE);
	ck_assert_uint_eq(L.seen, 0);
	ck_assert_int_eq(ctlproto_parse(&G, "SAY", &L, err, sizeof(err)), 0);
	ck_assert_str_eq(err, ""); /* never written on success */
}
END_TEST

START_TEST(parse_rest)
{
	char err[256];

	/* the rest of the line, spaces, '=' and field-like words included */
	ck_assert_int_eq(
	        ctlproto_parse(&G, "SAY num=3 why=a b=c  num=4 why=x ", &L, err, sizeof(err)), 0);
	ck_assert_uint_eq(L.u64[T_NUM], 3);
	ck_assert_str_eq(L.text[T_WHY], "a b=c  num=4 why=x ");
	/* so nothing after it is a field */
	ck_assert_int_eq(ctlproto_parse(&G, "SAY why=x num=4", &L, err, sizeof(err)), 0);
	ck_assert(!ctlproto_has(&L, T_NUM));
	ck_assert_str_eq(L.text[T_WHY], "x num=4");
	ck_assert_int_eq(ctlproto_parse(&G, "SAY why=", &L, err, sizeof(err)), 0);
	ck_assert_str_eq(L.text[T_WHY], "");
	/* only a REST field's own key starts the rest: "whyx=" is a token */
	ck_assert_int_eq(ctlproto_parse(&G, "SAY whyx=a b", &L, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, "SAY: unknown field 'whyx'");
	/* and where the verb does not take it, it is refused as a whole */
	ck_assert_int_eq(ctlproto_parse(&G, "NONE why=a b", &L, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, "NONE: field 'why' does not belong here");
}
END_TEST

static const struct {
	const char *line;
	const char *err;
} BAD[] = {
        {"", "unknown verb ''"},
        {" SET num=1 name=a", "unknown verb ''"},
        {"set num=1 name=a", "unknown verb 'set'"},
        {"VERBWITHAVERYLONGNAMEBEYONDTHIRTYTWOBYTES", "unknown verb "
                                                      "'VERBWITHAVERYLONGNAMEBEYONDTHIRT'"},
        {"SET num=1  name=a", "'' is not key=value"},
        {"SET num", "'num' is not key=value"},
        {"SET =1", "'=1' is not key=value"},
        {"SET num=1 name=a color=red", "SET: unknown field 'color'"},
        {"SET num=1 name=a tag=x", "SET: field 'tag' does not belong here"},
        {"SET num=1 num=2 name=a", "SET: field 'num' given twice"},
        {"SET num=1 name=a name=a", "SET: field 'name' given twice"},
        {"SET num= name=a", "SET: '' is not a valid num"},
        {"SET num=x name=a", "SET: 'x' is not a valid num"},
        {"SET num=-1 name=a", "SET: '-1' is not a valid num"},
        {"SET num=+1 name=a", "SET: '+1' is not a valid num"},
        {"SET num=1x name=a", "SET: '1x' is not a valid num"},
        {"SET num=18446744073709551616 name=a", "SET: '18446744073709551616' is not a valid num"},
        {"SET num=1 name=a small=0", "SET: '0' is not a valid small"},
        {"SET num=1 name=a small=12", "SET: '12' is not a valid small"},
        {"SET num=1 name=a small=3", "SET: 3 is odd"},
        /* a field's check runs in line order: before a later bad field */
        {"SET small=5 num=x", "SET: 5 is odd"},
        {"SET small=5", "SET: 5 is odd"},
        {"SET num=1 name=", "name: empty or longer than 8 bytes"},
        {"SET num=1 name=123456789", "name: empty or longer than 8 bytes"},
        {"TAG tag=12345 code=ab", "tag: longer than 4 bytes"},
        {"TAG tag=a code=a", "code: shorter than 2 or longer than 3 bytes"},
        {"TAG tag=a code=abcd", "code: shorter than 2 or longer than 3 bytes"},
        /* the first missing field in the grammar's order */
        {"SET", "SET: field 'num' is missing"},
        {"SET name=a", "SET: field 'num' is missing"},
        {"SET num=1", "SET: field 'name' is missing"},
        {"TAG", "TAG: field 'tag' is missing"},
        {"NONE num=1", "NONE: field 'num' does not belong here"},
};

START_TEST(parse_bad)
{
	char err[256] = "";

	ck_assert_int_eq(ctlproto_parse(&G, BAD[_i].line, &L, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, BAD[_i].err);
}
END_TEST

START_TEST(parse_limits)
{
	char *line = malloc(CTLPROTO_LINE_MAX + 2), err[256];

	/* exactly CTLPROTO_LINE_MAX bytes: accepted */
	memcpy(line, "SAY why=", 8);
	memset(line + 8, 'w', CTLPROTO_LINE_MAX - 8);
	line[CTLPROTO_LINE_MAX] = '\0';
	ck_assert_int_eq(ctlproto_parse(&G, line, &L, err, sizeof(err)), 0);
	ck_assert_uint_eq(strlen(L.text[T_WHY]), CTLPROTO_LINE_MAX - 8);
	/* one more: refused */
	line[CTLPROTO_LINE_MAX] = 'w';
	line[CTLPROTO_LINE_MAX + 1] = '\0';
	ck_assert_int_eq(ctlproto_parse(&G, line, &L, err, sizeof(err)), -EBADMSG);
	ck_assert_str_eq(err, "line longer than 4096 bytes");
	/* no error buffer is fine */
	ck_assert_int_eq(ctlproto_parse(&G, "HUH", &L, NULL, 0), -EBADMSG);
	free(line);
}
END_TEST

/* -------------------------------------------------------------- writing */

static struct ctlproto_out O;

START_TEST(write_lines)
{
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_u64(&O, "num", UINT64_MAX);
	ctlproto_out_text(&O, "name", "a=b");
	ctlproto_out_i64(&O, "small", 4);
	ck_assert_int_eq(ctlproto_out_end(&O), 46);
	ck_assert_str_eq(O.buf, "SET num=18446744073709551615 name=a=b small=4\n");

	ctlproto_out_begin(&O, "NONE");
	ck_assert_int_eq(ctlproto_out_end(&O), 5);
	ck_assert_str_eq(O.buf, "NONE\n");

	ctlproto_out_begin(&O, "TAG");
	ctlproto_out_text(&O, "tag", "");
	ctlproto_out_text(&O, "code", "ab");
	ck_assert_int_gt(ctlproto_out_end(&O), 0);
	ck_assert_str_eq(O.buf, "TAG tag= code=ab\n");

	/* the rest: control characters become spaces, the line stays one */
	ctlproto_out_begin(&O, "SAY");
	ctlproto_out_i64(&O, "num", 0);
	ctlproto_out_rest(&O, "why", "two\nlines\r\tand a=b");
	ck_assert_int_gt(ctlproto_out_end(&O), 0);
	ck_assert_str_eq(O.buf, "SAY num=0 why=two lines  and a=b\n");

	/* NULL is an empty value */
	ctlproto_out_begin(&O, "TAG");
	ctlproto_out_text(&O, "tag", NULL);
	ctlproto_out_rest(&O, "why", NULL);
	ck_assert_int_gt(ctlproto_out_end(&O), 0);
	ck_assert_str_eq(O.buf, "TAG tag= why=\n");
}
END_TEST

START_TEST(write_refused)
{
	char *big = malloc(CTLPROTO_LINE_MAX + 1);

	/* not a token */
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_text(&O, "name", "a b");
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_text(&O, "name", "a\n");
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	ctlproto_out_begin(&O, "SE T");
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	ctlproto_out_begin(&O, "");
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_u64(&O, "n=m", 1);
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_u64(&O, "", 1);
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	/* numbers are unsigned */
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_i64(&O, "num", -1);
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	/* nothing after the rest */
	ctlproto_out_begin(&O, "SAY");
	ctlproto_out_rest(&O, "why", "x");
	ctlproto_out_u64(&O, "num", 1);
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);
	/* the first error sticks */
	ctlproto_out_begin(&O, "SET");
	ctlproto_out_i64(&O, "num", -1);
	ctlproto_out_text(&O, "name", "ok");
	ck_assert_int_eq(ctlproto_out_end(&O), -EINVAL);

	/* the longest line fits, one byte more does not */
	memset(big, 'x', CTLPROTO_LINE_MAX - 8);
	big[CTLPROTO_LINE_MAX - 8] = '\0';
	ctlproto_out_begin(&O, "SAY");
	ctlproto_out_rest(&O, "why", big);
	ck_assert_int_eq(ctlproto_out_end(&O), CTLPROTO_LINE_MAX + 1);
	ck_assert_int_eq(O.buf[CTLPROTO_LINE_MAX], '\n');
	big[CTLPROTO_LINE_MAX - 8] = 'x';
	big[CTLPROTO_LINE_MAX - 7] = '\0';
	ctlproto_out_begin(&O, "SAY");
	ctlproto_out_rest(&O, "why", big);
	ck_assert_int_eq(ctlproto_out_end(&O), -EMSGSIZE);
	/* begin starts afresh */
	ctlproto_out_begin(&O, "NONE");
	ck_assert_int_eq(ctlproto_out_end(&O), 5);
	free(big);
}
END_TEST

/* What the writer writes, the parser reads back. */
START_TEST(roundtrip)
{
	char err[256];
	int n;

	ctlproto_out_begin(&O, "SAY");
	ctlproto_out_u64(&O, "num", 1234567890123ull);
	ctlproto_out_rest(&O, "why", "the store failed: epoch 5 > 4 (a=b)");
	n = ctlproto_out_end(&O);
	ck_assert_int_gt(n, 0);
	O.buf[n - 1] = '\0'; /* the reader strips the newline */
	ck_assert_int_eq(ctlproto_parse(&G, O.buf, &L, err, sizeof(err)), 0);
	ck_assert_int_eq(L.verb->id, V_SAY);
	ck_assert_uint_eq(L.u64[T_NUM], 1234567890123ull);
	ck_assert_str_eq(L.text[T_WHY], "the store failed: epoch 5 > 4 (a=b)");

	ctlproto_out_begin(&O, "SET");
	ctlproto_out_text(&O, "name", "pod-0");
	ctlproto_out_u64(&O, "small", 6);
	ctlproto_out_u64(&O, "num", 0);
	n = ctlproto_out_end(&O);
	O.buf[n - 1] = '\0';
	ck_assert_int_eq(ctlproto_parse(&G, O.buf, &L, err, sizeof(err)), 0);
	ck_assert_str_eq(L.text[T_NAME], "pod-0");
	ck_assert_uint_eq(L.u64[T_SMALL], 6);
}
END_TEST

static Suite *ctlproto_suite(void)
{
	Suite *s = suite_create("ctlproto");
	TCase *tc;

	tc = kft_tcase(s, "parse", 0, NULL, NULL);
	tcase_add_test(tc, parse_fields);
	tcase_add_test(tc, parse_rest);
	tcase_add_loop_test(tc, parse_bad, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
	tcase_add_test(tc, parse_limits);

	tc = kft_tcase(s, "write", 0, NULL, NULL);
	tcase_add_test(tc, write_lines);
	tcase_add_test(tc, write_refused);
	tcase_add_test(tc, roundtrip);
	return s;
}

int main(void)
{
	return kft_main(ctlproto_suite(), NULL);
}
