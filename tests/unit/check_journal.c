/* Unit tests of the record format (storage/journal.c) and CRC32C
 * (lib/crc32c.c): encode/decode, limits, the scanner's torn-tail and
 * corruption verdicts at every byte of a record. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"
#include "storage/journal.h"
#include "tests/lib/kftest.h"

START_TEST(crc_vectors)
{
	static const char v[] = "123456789";
	uint8_t zeros[32] = {0}, buf[1000];

	ck_assert_uint_eq(crc32c(0, v, 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c_sw(0, v, 9), 0xE3069283u);
	ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
	ck_assert_uint_eq(crc32c(crc32c(0, v, 4), v + 4, 5), 0xE3069283u);
	srand(1);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < sizeof(buf) - off; len += 37)
			ck_assert_uint_eq(crc32c(0, buf + off, len), crc32c_sw(0, buf + off, len));
}
END_TEST

START_TEST(encode_decode_roundtrip)
{
	uint8_t buf[JOURNAL_RECORD_MAX], val[300];
	struct journal_record r;
	ssize_t n;

	memset(val, 0xAB, sizeof(val));
	val[7] = 0;
	n = journal_encode(buf, sizeof(buf), JOURNAL_PUT, 42, 7, "k\0y", 3, val, sizeof(val));
	ck_assert_int_eq(n, JOURNAL_HEADER_SIZE + 3 + 300);
	ck_assert_int_eq(journal_decode(buf, (size_t)n, &r, NULL), n);
	ck_assert_int_eq(r.type, JOURNAL_PUT);
	ck_assert_uint_eq(r.seq, 42);
	ck_assert_uint_eq(r.epoch, 7);
	ck_assert_uint_eq(r.key_len, 3);
	ck_assert_mem_eq(r.key, "k\0y", 3);
	ck_assert_uint_eq(r.value_len, 300);
	ck_assert_mem_eq(r.value, val, 300);
	/* little-endian on disk */
	ck_assert_int_eq(buf[0], 'K');
	ck_assert_int_eq(buf[3], '1');
	ck_assert_int_eq(buf[16], 42);
	ck_assert_int_eq(buf[17], 0);

	n = journal_encode(buf, sizeof(buf), JOURNAL_DEL, 1, 1, "a", 1, NULL, 0);
	ck_assert_int_eq(journal_decode(buf, (size_t)n, &r, NULL), n);
	ck_assert_int_eq(r.type, JOURNAL_DEL);
	n = journal_encode(buf, sizeof(buf), JOURNAL_BARRIER, 2, 9, NULL, 0, "\0\0\0\0\0\0\0\0", 8);
	ck_assert_int_eq(journal_decode(buf, (size_t)n, &r, NULL), n);
	ck_assert_int_eq(r.type, JOURNAL_BARRIER);
	ck_assert_int_eq(journal_encode_pad(buf, 100, 3), 100);
	ck_assert_int_eq(journal_decode(buf, 100, &r, NULL), 100);
	ck_assert_int_eq(r.type, JOURNAL_PAD);
	/* incomplete */
	ck_assert_int_eq(journal_decode(buf, 39, &r, NULL), -EAGAIN);
	ck_assert_int_eq(journal_decode(buf, 99, &r, NULL), -EAGAIN);
}
END_TEST

START_TEST(encode_limits)
{
	static uint8_t buf[JOURNAL_RECORD_MAX + 16], big[JOURNAL_VALUE_MAX + 1];

	ck_assert_int_eq(journal_encode(buf, sizeof(buf), JOURNAL_PUT, 1, 1, big, 1025, "v", 1),
	                 -E2BIG);
	ck_assert_int_eq(journal_encode(buf, sizeof(buf), JOURNAL_PUT, 1, 1, "k", 1, big,
	                                JOURNAL_VALUE_MAX + 1),
	                 -E2BIG);
	ck_assert_int_eq(journal_encode(buf, sizeof(buf), JOURNAL_PUT, 1, 1, big, 1024, big,
	                                JOURNAL_VALUE_MAX),
	                 JOURNAL_RECORD_MAX);
	ck_assert_int_eq(journal_encode(buf, 10, JOURNAL_PUT, 1, 1, "k", 1, "v", 1), -E2BIG);
	ck_assert_int_eq(journal_encode(buf, sizeof(buf), JOURNAL_PUT, 1, 1, NULL, 0, "v", 1),
	                 -EINVAL);
	ck_assert_int_eq(journal_encode(buf, sizeof(buf), 99, 1, 1, "k", 1, "v", 1), -EINVAL);
}
END_TEST

/* Five records; returns the stream length, offsets in off[0..5]. */
static size_t build_stream(uint8_t *buf, size_t cap, size_t off[6])
{
	size_t len = 0;

	for (int i = 0; i < 5; i++) {
		char key[16], val[64];
		ssize_t n;

		snprintf(key, sizeof(key), "key-%d", i);
		snprintf(val, sizeof(val), "value-%d-%s", i, "xxxxxxxxxxxxxxx");
		off[i] = len;
		n = journal_encode(buf + len, cap - len, JOURNAL_PUT, (uint64_t)i + 1, 1, key,
		                   strlen(key), val, strlen(val));
		ck_assert_int_gt(n, 0);
		len += (size_t)n;
	}
	off[5] = len;
	return len;
}

static int count_cb(void *ud, const struct journal_record *r, uint64_t off)
{
	(*(int *)ud)++;
	return 0;
}

START_TEST(torn_tail_every_offset)
{
	uint8_t buf[4096];
	size_t off[6], len = build_stream(buf, sizeof(buf), off);

	for (size_t cut = off[4]; cut < len; cut++) {
		struct journal_membuf mb = {buf, cut};
		struct journal_scan_result res;
		int n = 0;

		ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, cut, count_cb, &n, &res),
		                 0);
		ck_assert_int_eq(n, 4);
		ck_assert_uint_eq(res.valid_end, off[4]);
		ck_assert_int_eq(res.status,
		                 cut == off[4] ? JOURNAL_SCAN_CLEAN : JOURNAL_SCAN_TORN);
	}
	{
		struct journal_membuf mb = {buf, len};
		struct journal_scan_result res;
		int n = 0;

		ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, len, count_cb, &n, &res),
		                 0);
		ck_assert_int_eq(n, 5);
		ck_assert_int_eq(res.status, JOURNAL_SCAN_CLEAN);
	}
}
END_TEST

START_TEST(zero_tail_is_torn)
{
	uint8_t buf[8192] = {0};
	size_t off[6], len = build_stream(buf, sizeof(buf), off);
	struct journal_membuf mb = {buf, len + 3000};
	struct journal_scan_result res;
	int n = 0;

	ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, mb.len, count_cb, &n, &res), 0);
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(res.status, JOURNAL_SCAN_TORN);
	ck_assert_uint_eq(res.bad_offset, len);
}
END_TEST

START_TEST(bit_flip_every_byte_of_middle_record)
{
	uint8_t orig[4096], buf[4096];
	size_t off[6], len = build_stream(orig, sizeof(orig), off);

	for (size_t b = off[2]; b < off[3]; b++) {
		struct journal_membuf mb = {buf, len};
		struct journal_scan_result res;
		int n = 0;

		memcpy(buf, orig, len);
		buf[b] ^= (uint8_t)(1u << (b % 8));
		ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, len, count_cb, &n, &res),
		                 0);
		ck_assert_int_eq(res.status, JOURNAL_SCAN_CORRUPT);
		ck_assert_int_eq(n, 2);
		ck_assert_uint_eq(res.bad_offset, off[2]);
		ck_assert_uint_eq(res.next_valid, off[3]);
	}
}
END_TEST

START_TEST(scan_large_stream)
{
	size_t cap = 8u << 20, len = 0;
	uint8_t *buf = malloc(cap), val[5000];
	struct journal_scan_result res;
	struct journal_membuf mb;
	int n = 0, want = 0;

	ck_assert_ptr_nonnull(buf);
	memset(val, 'v', sizeof(val));
	while (len + JOURNAL_RECORD_MAX < cap) {
		ssize_t r = journal_encode(buf + len, cap - len, JOURNAL_PUT, (uint64_t)want + 1, 1,
		                           "key", 3, val, (size_t)(want * 7919) % sizeof(val));
		ck_assert_int_gt(r, 0);
		len += (size_t)r;
		want++;
	}
	mb.data = buf;
	mb.len = len;
	ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, len, count_cb, &n, &res), 0);
	ck_assert_int_eq(res.status, JOURNAL_SCAN_CLEAN);
	ck_assert_int_eq(n, want);
	/* damage a record in the second megabyte: the scanner must find the
	 * valid records behind it across window refills */
	buf[(1u << 20) + 12345] ^= 0x10;
	n = 0;
	ck_assert_int_eq(journal_scan(journal_membuf_read, &mb, len, count_cb, &n, &res), 0);
	ck_assert_int_eq(res.status, JOURNAL_SCAN_CORRUPT);
	ck_assert_uint_gt(res.next_valid, res.bad_offset);
	free(buf);
}
END_TEST

static Suite *journal_suite(void)
{
	Suite *s = suite_create("journal");
	TCase *tc;

	tc = tcase_create("crc32c");
	tcase_add_test(tc, crc_vectors);
	suite_add_tcase(s, tc);
	tc = tcase_create("codec");
	tcase_add_test(tc, encode_decode_roundtrip);
	tcase_add_test(tc, encode_limits);
	suite_add_tcase(s, tc);
	tc = tcase_create("torn_tail");
	tcase_add_test(tc, torn_tail_every_offset);
	tcase_add_test(tc, zero_tail_is_torn);
	suite_add_tcase(s, tc);
	tc = tcase_create("corruption");
	tcase_add_test(tc, bit_flip_every_byte_of_middle_record);
	tcase_add_test(tc, scan_large_stream);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(journal_suite(), NULL);
}
