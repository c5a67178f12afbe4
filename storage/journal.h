/* journal: the record format of the metadata journal and snapshots, and the
 * scanner that validates a stream of records during recovery.
 *
 * This module is pure: it encodes into and decodes from memory and reads
 * through a caller-supplied callback, so the same code serves the directory
 * backend, a block-device backend, `kubefencectl journal` and the fuzzer.
 * The byte layout is specified in storage/FORMAT.md; the constants below are
 * that specification in code.  All integers are little-endian on disk. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JOURNAL_MAGIC       0x314A464Bu /* "KFJ1" as bytes on disk */
#define JOURNAL_VERSION     1
#define JOURNAL_HEADER_SIZE 40
#define JOURNAL_KEY_MAX     1024
#define JOURNAL_VALUE_MAX   (64 * 1024)
#define JOURNAL_RECORD_MAX  (JOURNAL_HEADER_SIZE + JOURNAL_KEY_MAX + JOURNAL_VALUE_MAX)

enum journal_type {
	JOURNAL_PUT = 1,        /* key, value */
	JOURNAL_DEL = 2,        /* key */
	JOURNAL_BARRIER = 3,    /* no key; value = u64 previous last seq; epoch = new epoch */
	JOURNAL_SNAP_BEGIN = 4, /* no key; value = u64 number of PUT records that follow */
	JOURNAL_SNAP_END = 5,   /* no key; value = u64 number of PUT records written */
	JOURNAL_PAD = 6,        /* filler up to a block boundary; skipped; no seq meaning */
	JOURNAL_COMMIT = 7,     /* no key; value = u64 last seq already durable; seq 0 */
};

/* A decoded record.  key and value point into the decoded buffer. */
struct journal_record {
	uint8_t type;
	uint16_t flags;
	uint64_t seq;
	uint64_t epoch;
	const uint8_t *key;
	uint32_t key_len;
	const uint8_t *value;
	uint32_t value_len;
};

/* Size of the encoded record for the given key/value lengths. */
static inline size_t journal_record_size(size_t key_len, size_t value_len)
{
	return JOURNAL_HEADER_SIZE + key_len + value_len;
}

/* Encode one record into buf (buflen bytes).  Returns the encoded size (>0),
 * -E2BIG when buf is too small or a length exceeds the format's limits,
 * -EINVAL for an unknown type.  Never blocks. */
ssize_t journal_encode(void *buf, size_t buflen, uint8_t type, uint64_t seq, uint64_t epoch,
                       const void *key, size_t key_len, const void *value, size_t value_len);

/* Fill exactly `len` bytes (len >= JOURNAL_HEADER_SIZE) with one PAD record,
 * for backends that must end each durable batch on a block boundary.
 * Returns len or -EINVAL. */
ssize_t journal_encode_pad(void *buf, size_t len, uint64_t epoch);

/* Decode the record at the start of buf[0..len).  Returns the record's size
 * (>0) and fills *ret; -EAGAIN when the header is valid but the record runs
 * past len, or fewer than JOURNAL_HEADER_SIZE bytes are given (incomplete);
 * -EBADMSG when the bytes are not a valid record.  `why` (may be NULL) gets
 * a static string naming the failed check. */
ssize_t journal_decode(const void *buf, size_t len, struct journal_record *ret, const char **why);

/* Reads `len` bytes at `off` of the stream; returns bytes read (0 at end)
 * or -errno. */
typedef ssize_t (*journal_read_fn)(void *userdata, uint64_t off, void *buf, size_t len);

/* Called for each valid record at stream offset `off`.  Return 0 to go on,
 * 1 to stop the scan (clean stop), or -errno to abort it. */
typedef int (*journal_record_fn)(void *userdata, const struct journal_record *r, uint64_t off);

enum journal_scan_status {
	JOURNAL_SCAN_CLEAN = 0,   /* every byte up to size is valid records */
	JOURNAL_SCAN_STOPPED = 1, /* the callback stopped the scan */
	JOURNAL_SCAN_TORN = 2,    /* invalid bytes at the end, no valid record after */
	JOURNAL_SCAN_CORRUPT = 3, /* an invalid record with valid records after it */
};

struct journal_scan_result {
	enum journal_scan_status status;
	uint64_t records;    /* valid records passed to the callback */
	uint64_t valid_end;  /* offset just after the last valid record */
	uint64_t bad_offset; /* TORN/CORRUPT: offset of the first invalid byte */
	uint64_t next_valid; /* CORRUPT: offset of the next valid record */
	const char *why;     /* TORN/CORRUPT: the failed check */
};

/* Scan the stream [0, size) record by record, calling cb for each valid one.
 * After an invalid record it searches the rest of the stream for any valid
 * record to tell a torn tail (none: TORN) from corruption (CORRUPT).
 * Returns 0 with *ret filled (status says which case), -errno from the read
 * function or the callback (*ret filled up to there: valid_end is the end of
 * the record the callback refused), -ENOMEM (*ret untouched).  Blocks in
 * the read function. */
int journal_scan(journal_read_fn rd, void *rd_userdata, uint64_t size, journal_record_fn cb,
                 void *cb_userdata, struct journal_scan_result *ret);

/* journal_read_fn over a memory buffer: userdata points to a
 * struct journal_membuf. */
struct journal_membuf {
	const uint8_t *data;
	size_t len;
};
ssize_t journal_membuf_read(void *userdata, uint64_t off, void *buf, size_t len);

const char *journal_type_to_string(uint8_t type);

/* Little-endian helpers shared with the backends. */
static inline void journal_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void journal_put_le64(uint8_t *p, uint64_t v)
{
	journal_put_le32(p, (uint32_t)v);
	journal_put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t journal_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t journal_get_le64(const uint8_t *p)
{
	return (uint64_t)journal_get_le32(p) | (uint64_t)journal_get_le32(p + 4) << 32;
}
