/* Unit tests of storage/index.c, the metadata store's in-memory map: the
 * load (batched puts, replacements and deletes in call order, any key
 * order), sealing, gets, puts and deletes on a sealed index (values that
 * outgrow or shrink into their slot), walks by prefix in key order, and a
 * model comparison over many random operations. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/index.h"
#include "tests/lib/kftest.h"

static void put(struct index *ix, const char *k, const char *v)
{
	ck_assert_int_eq(index_put(ix, k, strlen(k), v, strlen(v)), 0);
}

static void assert_value(const struct index *ix, const char *k, const char *v)
{
	const void *val = NULL;
	size_t len = 0;

	ck_assert_msg(index_get(ix, k, strlen(k), &val, &len), "'%s' missing", k);
	ck_assert_uint_eq(len, strlen(v));
	ck_assert_mem_eq(val, v, len);
	ck_assert_int_eq(((const char *)val)[len], '\0');
}

static void assert_absent(const struct index *ix, const char *k)
{
	ck_assert_msg(!index_get(ix, k, strlen(k), NULL, NULL), "'%s' present", k);
}

/* Collect a walk as "k=v," text. */
struct walk {
	char buf[4096];
	size_t len;
	int stop_after; /* > 0: return 7 at that key */
	int seen;
};

/* Append n bytes, a NUL byte as '@'. */
static void add(struct walk *w, const void *p, size_t n)
{
	for (size_t i = 0; i < n && w->len + 1 < sizeof(w->buf); i++)
		w->buf[w->len++] = ((const char *)p)[i] ? ((const char *)p)[i] : '@';
	w->buf[w->len] = '\0';
}

static int collect(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = ud;

	add(w, key, klen);
	add(w, "=", 1);
	add(w, val, vlen);
	add(w, ",", 1);
	return ++w->seen == w->stop_after ? 7 : 0;
}

static const char *walk(const struct index *ix, const char *prefix, int *ret)
{
	static struct walk w;

	memset(&w, 0, sizeof(w));
	*ret = index_walk(ix, prefix, prefix ? strlen(prefix) : 0, collect, &w);
	return w.buf;
}

START_TEST(empty)
{
	struct index *ix = index_new();
	int r;

	ck_assert_ptr_nonnull(ix);
	ck_assert(!index_sealed(ix));
	ck_assert_uint_eq(index_count(ix), 0);
	ck_assert_int_eq(index_walk(ix, NULL, 0, collect, NULL), -EINVAL); /* loading */
	ck_assert_int_eq(index_delete(ix, "k", 1), 0);
	ck_assert_int_eq(index_seal(ix), 0);
	ck_assert(index_sealed(ix));
	ck_assert_str_eq(walk(ix, NULL, &r), "");
	ck_assert_int_eq(r, 0);
	assert_absent(ix, "k");
	ck_assert_ptr_null(index_free(ix));
	ck_assert_ptr_null(index_free(NULL));
}
END_TEST

/* While loading, puts wait in batches, but replacements and deletes still
 * apply in call order, within a batch and across batches. */
START_TEST(load_in_call_order)
{
	struct index *ix = index_new();
	char k[16], v[16];
	int r;

	put(ix, "a", "1");
	put(ix, "a", "2"); /* same batch */
	put(ix, "b", "1");
	ck_assert_int_eq(index_delete(ix, "b", 1), 1);
	put(ix, "b", "3"); /* after its delete */
	ck_assert_int_eq(index_delete(ix, "c", 1), 0);
	for (int i = 0; i < 100; i++) { /* many batches */
		snprintf(k, sizeof(k), "n%03d", i);
		snprintf(v, sizeof(v), "v%d", i);
		put(ix, k, v);
	}
	put(ix, "a", "4"); /* a later batch replaces an older one */
	for (int i = 0; i < 100; i += 2) {
		snprintf(k, sizeof(k), "n%03d", i);
		ck_assert_int_eq(index_delete(ix, k, strlen(k)), 1);
	}
	ck_assert_int_eq(index_seal(ix), 0);
	ck_assert_uint_eq(index_count(ix), 2 + 50);
	assert_value(ix, "a", "4");
	assert_value(ix, "b", "3");
	assert_absent(ix, "c");
	assert_absent(ix, "n000");
	assert_value(ix, "n001", "v1");
	assert_value(ix, "n099", "v99");
	ck_assert_str_eq(walk(ix, "n00", &r), "n001=v1,n003=v3,n005=v5,n007=v7,n009=v9,");
	ck_assert_int_eq(r, 5);
	/* sealing again changes nothing */
	ck_assert_int_eq(index_seal(ix), 0);
	ck_assert_uint_eq(index_count(ix), 52);
	index_free(ix);
}
END_TEST

/* Keys order by bytes, then by length; binary keys are fine. */
START_TEST(key_order_and_prefix)
{
	static const char *const loaded[] = {"b", "ab", "a", "abc", "aa", "c", "abd", ""};
	struct index *ix = index_new();
	int r;

	for (size_t i = 0; i < sizeof(loaded) / sizeof(loaded[0]); i++)
		put(ix, loaded[i], "x"); /* not in key order: seal sorts */
	ck_assert_int_eq(index_put(ix, "a\0z", 3, "nul", 3), 0);
	ck_assert_int_eq(index_seal(ix), 0);
	ck_assert_str_eq(walk(ix, NULL, &r), "=x,a=x,a@z=nul,aa=x,ab=x,abc=x,abd=x,b=x,c=x,");
	ck_assert_int_eq(r, 9);
	ck_assert_str_eq(walk(ix, "ab", &r), "ab=x,abc=x,abd=x,");
	ck_assert_int_eq(r, 3);
	ck_assert_str_eq(walk(ix, "abcd", &r), "");
	ck_assert_int_eq(r, 0);
	ck_assert_str_eq(walk(ix, "zz", &r), "");
	/* a callback's non-zero value stops the walk and is returned */
	{
		struct walk w = {.stop_after = 2};

		ck_assert_int_eq(index_walk(ix, "a", 1, collect, &w), 7);
		ck_assert_str_eq(w.buf, "a=x,a@z=nul,");
	}
	/* sealed: new keys go into their place */
	put(ix, "aab", "y");
	put(ix, "0", "y");
	ck_assert_str_eq(walk(ix, "aa", &r), "aa=x,aab=y,");
	ck_assert_int_eq(index_delete(ix, "aa", 2), 1);
	ck_assert_int_eq(index_delete(ix, "aa", 2), 0);
	ck_assert_str_eq(walk(ix, "aa", &r), "aab=y,");
	ck_assert_str_eq(walk(ix, NULL, &r), "=x,0=y,a=x,a@z=nul,aab=y,ab=x,abc=x,abd=x,b=x,c=x,");
	index_free(ix);
}
END_TEST

/* A value that outgrows its entry's slot moves to the heap and back. */
START_TEST(values_grow_and_shrink)
{
	struct index *ix = index_new();
	char big[5000];

	memset(big, 'B', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	put(ix, "k", "small");
	put(ix, "e", ""); /* empty values are values */
	ck_assert_int_eq(index_seal(ix), 0);
	assert_value(ix, "e", "");
	put(ix, "k", big);
	assert_value(ix, "k", big);
	put(ix, "k", "tiny");
	assert_value(ix, "k", "tiny");
	put(ix, "k", big);
	put(ix, "new", "n");
	put(ix, "new", big);
	assert_value(ix, "new", big);
	ck_assert_int_eq(index_delete(ix, "new", 3), 1); /* with a heap value */
	ck_assert_uint_eq(index_count(ix), 2);
	index_free(ix); /* frees the heap values (ASan/LSan judge) */
}
END_TEST

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The walk of the model test: each key in turn is the next one expected. */
struct order {
	char **want;
	size_t at, n;
};

static int check_order(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct order *o = ud;

	(void)val;
	(void)vlen;
	ck_assert_uint_lt(o->at, o->n);
	ck_assert_uint_eq(klen, strlen(o->want[o->at]));
	ck_assert_mem_eq(key, o->want[o->at], klen);
	o->at++;
	return 0;
}

/* Random puts and deletes, loaded then sealed then updated, against a
 * model: every get and the full walk in key order. */
START_TEST(model)
{
	enum { NKEYS = 3000 };
	static char keys[NKEYS][16], vals[NKEYS][32];
	static bool present[NKEYS];
	static char *sorted[NKEYS];
	struct index *ix = index_new();
	uint64_t x = 0x9e3779b97f4a7c15ull + (uint64_t)_i;
	size_t n = 0;

	memset(present, 0, sizeof(present));
	for (int i = 0; i < NKEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "%x", (unsigned)(i * 2654435761u));
	for (int phase = 0; phase < 2; phase++) {
		for (int op = 0; op < 20000; op++) {
			int k;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			k = (int)(x % NKEYS);
			if ((x >> 32) % 4 == 0) {
				ck_assert_int_eq(index_delete(ix, keys[k], strlen(keys[k])),
				                 present[k] ? 1 : 0);
				present[k] = false;
			} else {
				snprintf(vals[k], sizeof(vals[k]), "%d:%d:%llu", phase, op,
				         (unsigned long long)(x >> 40));
				put(ix, keys[k], vals[k]);
				present[k] = true;
			}
		}
		if (phase == 0)
			ck_assert_int_eq(index_seal(ix), 0);
	}
	for (int k = 0; k < NKEYS; k++) {
		if (present[k]) {
			assert_value(ix, keys[k], vals[k]);
			sorted[n++] = keys[k];
		} else {
			assert_absent(ix, keys[k]);
		}
	}
	ck_assert_uint_eq(index_count(ix), n);
	/* without NUL bytes, bytes-then-length order is strcmp's */
	qsort(sorted, n, sizeof(sorted[0]), key_cmp);
	{
		struct order o = {sorted, 0, n};

		ck_assert_int_eq(index_walk(ix, NULL, 0, check_order, &o), (int)n);
		ck_assert_uint_eq(o.at, n);
	}
	index_free(ix);
}
END_TEST

static Suite *index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *tc;

	tc = kft_tcase(s, "load", 0, NULL, NULL);
	tcase_add_test(tc, empty);
	tcase_add_test(tc, load_in_call_order);
	tc = kft_tcase(s, "sealed", 0, NULL, NULL);
	tcase_add_test(tc, key_order_and_prefix);
	tcase_add_test(tc, values_grow_and_shrink);
	tc = kft_tcase(s, "model", 0, NULL, NULL);
	tcase_add_loop_test(tc, model, 0, 3);
	return s;
}

int main(void)
{
	return kft_main(index_suite(), NULL);
}
