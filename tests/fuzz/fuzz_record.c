/* libFuzzer target for the record decoder and the journal scanner
 * (storage/journal.c): arbitrary bytes must never crash them, every record
 * they accept must re-encode to the same bytes, and the scanner's verdict
 * must be consistent with what it reported.
 *
 * Built and run for 10 s by tests/fuzz/run.test.  A longer run by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Ilib \
 *     tests/fuzz/fuzz_record.c storage/journal.c lib/crc32c.c -o /tmp/fuzz_record
 *   /tmp/fuzz_record -max_total_time=3600 -jobs=2 /tmp/corpus tests/fuzz/corpus */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_cb(void *ud, const struct journal_record *r, uint64_t off)
{
	static uint8_t buf[JOURNAL_RECORD_MAX];
	const struct journal_membuf *mb = ud;
	ssize_t n;

	if (r->type == JOURNAL_PAD)
		return 0;
	n = journal_encode(buf, sizeof(buf), r->type, r->seq, r->epoch, r->key, r->key_len,
	                   r->value, r->value_len);
	if (n <= 0 || off + (uint64_t)n > mb->len || memcmp(buf, mb->data + off, (size_t)n) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct journal_membuf mb = {data, size};
	struct journal_scan_result res;
	struct journal_record rec;

	(void)journal_decode(data, size, &rec, NULL);
	if (journal_scan(journal_membuf_read, &mb, size, check_cb, &mb, &res) != 0)
		abort();
	if (res.valid_end > size)
		abort();
	if (res.status == JOURNAL_SCAN_CORRUPT &&
	    (res.next_valid <= res.bad_offset || res.next_valid >= size))
		abort();
	if (res.status == JOURNAL_SCAN_CLEAN && res.valid_end != size)
		abort();
	return 0;
}
