/* journal: record encoding, decoding and the recovery scanner.  See
 * journal.h for the contract and storage/FORMAT.md for the layout.
 *
 * Header layout (40 bytes, little-endian), mirrored in FORMAT.md:
 *   0 u32 magic "KFJ1"   4 u8 version   5 u8 type   6 u16 flags (0)
 *   8 u32 key_len       12 u32 value_len
 *  16 u64 seq           24 u64 epoch
 *  32 u32 data_crc  = crc32c(key || value)
 *  36 u32 header_crc = crc32c(bytes 0..35)
 * followed by key_len bytes of key and value_len bytes of value.
 *
 * Two CRCs so that a damaged length can never make the scanner skip over
 * valid records: a header is trusted only when its own CRC matches. */
#include "config.h"

#include "storage/journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"

/* The scanner's window: large enough for two maximal records. */
#define SCAN_BUF_SIZE (1024 * 1024)

const char *journal_type_to_string(uint8_t type)
{
	switch (type) {
	case JOURNAL_PUT:
		return "PUT";
	case JOURNAL_DEL:
		return "DEL";
	case JOURNAL_BARRIER:
		return "BARRIER";
	case JOURNAL_SNAP_BEGIN:
		return "SNAP_BEGIN";
	case JOURNAL_SNAP_END:
		return "SNAP_END";
	case JOURNAL_PAD:
		return "PAD";
	case JOURNAL_COMMIT:
		return "COMMIT";
	default:
		return "unknown";
	}
}

/* Per-type length rules; returns NULL when they hold. */
static const char *check_lengths(uint8_t type, uint64_t key_len, uint64_t value_len)
{
	if (key_len > JOURNAL_KEY_MAX || value_len > JOURNAL_VALUE_MAX)
		return "length beyond the format's limits";
	switch (type) {
	case JOURNAL_PUT:
		return key_len == 0 ? "PUT without key" : NULL;
	case JOURNAL_DEL:
		return key_len == 0 || value_len != 0 ? "DEL lengths" : NULL;
	case JOURNAL_BARRIER:
	case JOURNAL_SNAP_BEGIN:
	case JOURNAL_SNAP_END:
	case JOURNAL_COMMIT:
		return key_len != 0 || value_len != 8 ? "control record lengths" : NULL;
	case JOURNAL_PAD:
		return key_len != 0 ? "PAD with key" : NULL;
	default:
		return "unknown record type";
	}
}

static void encode_header(uint8_t *h, uint8_t type, uint64_t seq, uint64_t epoch, uint32_t key_len,
                          uint32_t value_len, uint32_t data_crc)
{
	journal_put_le32(h, JOURNAL_MAGIC);
	h[4] = JOURNAL_VERSION;
	h[5] = type;
	h[6] = 0;
	h[7] = 0;
	journal_put_le32(h + 8, key_len);
	journal_put_le32(h + 12, value_len);
	journal_put_le64(h + 16, seq);
	journal_put_le64(h + 24, epoch);
	journal_put_le32(h + 32, data_crc);
	journal_put_le32(h + 36, crc32c(0, h, 36));
}

ssize_t journal_encode(void *buf, size_t buflen, uint8_t type, uint64_t seq, uint64_t epoch,
                       const void *key, size_t key_len, const void *value, size_t value_len)
{
	uint8_t *p = buf;
	size_t total;
	uint32_t dcrc;
	const char *why;

	if (key_len > JOURNAL_KEY_MAX || value_len > JOURNAL_VALUE_MAX)
		return -E2BIG;
	why = check_lengths(type, key_len, value_len);
	if (why)
		return -EINVAL;
	total = journal_record_size(key_len, value_len);
	if (total > buflen)
		return -E2BIG;
	if (key_len)
		memcpy(p + JOURNAL_HEADER_SIZE, key, key_len);
	if (value_len)
		memcpy(p + JOURNAL_HEADER_SIZE + key_len, value, value_len);
	dcrc = crc32c(0, p + JOURNAL_HEADER_SIZE, key_len + value_len);
	encode_header(p, type, seq, epoch, (uint32_t)key_len, (uint32_t)value_len, dcrc);
	return (ssize_t)total;
}

ssize_t journal_encode_pad(void *buf, size_t len, uint64_t epoch)
{
	uint8_t *p = buf;
	size_t vlen;

	if (len < JOURNAL_HEADER_SIZE || len - JOURNAL_HEADER_SIZE > JOURNAL_VALUE_MAX)
		return -EINVAL;
	vlen = len - JOURNAL_HEADER_SIZE;
	memset(p + JOURNAL_HEADER_SIZE, 0, vlen);
	encode_header(p, JOURNAL_PAD, 0, epoch, 0, (uint32_t)vlen,
	              crc32c(0, p + JOURNAL_HEADER_SIZE, vlen));
	return (ssize_t)len;
}

ssize_t journal_decode(const void *buf, size_t len, struct journal_record *ret, const char **why)
{
	const uint8_t *h = buf;
	uint32_t key_len, value_len;
	size_t total;
	const char *w = NULL;
	ssize_t r;

	if (len < JOURNAL_HEADER_SIZE) {
		w = "incomplete header";
		r = -EAGAIN;
		goto out;
	}
	r = -EBADMSG;
	if (journal_get_le32(h) != JOURNAL_MAGIC) {
		w = "bad magic";
		goto out;
	}
	if (journal_get_le32(h + 36) != crc32c(0, h, 36)) {
		w = "header CRC mismatch";
		goto out;
	}
	if (h[4] != JOURNAL_VERSION) {
		w = "unsupported version";
		goto out;
	}
	if (h[6] != 0 || h[7] != 0) {
		w = "unknown flags";
		goto out;
	}
	key_len = journal_get_le32(h + 8);
	value_len = journal_get_le32(h + 12);
	w = check_lengths(h[5], key_len, value_len);
	if (w)
		goto out;
	total = journal_record_size(key_len, value_len);
	if (total > len) {
		w = "record runs past the end";
		r = -EAGAIN;
		goto out;
	}
	if (journal_get_le32(h + 32) != crc32c(0, h + JOURNAL_HEADER_SIZE, key_len + value_len)) {
		w = "data CRC mismatch";
		goto out;
	}
	ret->type = h[5];
	ret->flags = 0;
	ret->key_len = key_len;
	ret->value_len = value_len;
	ret->seq = journal_get_le64(h + 16);
	ret->epoch = journal_get_le64(h + 24);
	ret->key = h + JOURNAL_HEADER_SIZE;
	ret->value = h + JOURNAL_HEADER_SIZE + key_len;
	r = (ssize_t)total;
out:
	if (why)
		*why = w;
	return r;
}

ssize_t journal_membuf_read(void *userdata, uint64_t off, void *buf, size_t len)
{
	const struct journal_membuf *m = userdata;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = m->len - off;
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

struct scan_window {
	journal_read_fn rd;
	void *ud;
	uint64_t size;
	uint8_t *buf;
	uint64_t start; /* stream offset of buf[0] */
	size_t len;     /* valid bytes in buf */
};

/* Make the window cover [pos, pos + need) (clipped to the stream's end).
 * Returns the bytes available from pos, or -errno. */
static ssize_t window_fill(struct scan_window *w, uint64_t pos, size_t need)
{
	uint64_t want_end = pos + need;

	if (want_end > w->size)
		want_end = w->size;
	if (pos < w->start || pos > w->start + w->len) {
		w->start = pos;
		w->len = 0;
	}
	if (w->start + w->len < want_end) {
		size_t keep = (size_t)(w->start + w->len - pos);

		memmove(w->buf, w->buf + (pos - w->start), keep);
		w->start = pos;
		w->len = keep;
		while (w->len < SCAN_BUF_SIZE && w->start + w->len < w->size) {
			size_t chunk = SCAN_BUF_SIZE - w->len;
			ssize_t n;

			if (chunk > w->size - (w->start + w->len))
				chunk = (size_t)(w->size - (w->start + w->len));
			n = w->rd(w->ud, w->start + w->len, w->buf + w->len, chunk);
			if (n < 0)
				return n;
			if (n == 0) {
				w->size = w->start + w->len; /* shrank under us */
				break;
			}
			w->len += (size_t)n;
		}
	}
	return (ssize_t)(w->start + w->len - pos);
}

/* Search for a valid record starting anywhere in (from, size).  Returns 1
 * and *ret_off when found, 0 when none, -errno. */
static int find_next_valid(struct scan_window *w, uint64_t from, uint64_t *ret_off)
{
	static const uint8_t magic[4] = {'K', 'F', 'J', '1'};
	uint64_t pos = from + 1;

	while (pos + JOURNAL_HEADER_SIZE <= w->size) {
		struct journal_record rec;
		ssize_t avail = window_fill(w, pos, SCAN_BUF_SIZE);
		const uint8_t *base, *hit;
		size_t searchable;

		if (avail < 0)
			return (int)avail;
		if (avail < JOURNAL_HEADER_SIZE)
			break;
		base = w->buf + (pos - w->start);
		/* only candidates that leave a full maximal record in the window,
		 * unless the window reaches the end of the stream */
		searchable = (size_t)avail;
		if (pos + (uint64_t)avail < w->size && searchable > JOURNAL_RECORD_MAX)
			searchable -= JOURNAL_RECORD_MAX;
		hit = memmem(base, searchable, magic, sizeof(magic));
		if (!hit) {
			pos += searchable - (searchable >= 3 ? 3 : 0);
			if (searchable < 4)
				pos++;
			continue;
		}
		pos += (uint64_t)(hit - base);
		avail = window_fill(w, pos, JOURNAL_RECORD_MAX);
		if (avail < 0)
			return (int)avail;
		if (journal_decode(w->buf + (pos - w->start), (size_t)avail, &rec, NULL) > 0) {
			*ret_off = pos;
			return 1;
		}
		pos++;
	}
	return 0;
}

int journal_scan(journal_read_fn rd, void *rd_userdata, uint64_t size, journal_record_fn cb,
                 void *cb_userdata, struct journal_scan_result *ret)
{
	struct scan_window w = {.rd = rd, .ud = rd_userdata, .size = size};
	struct journal_scan_result res = {.status = JOURNAL_SCAN_CLEAN};
	uint64_t pos = 0;
	int r;

	w.buf = malloc(SCAN_BUF_SIZE);
	if (!w.buf)
		return -ENOMEM;
	for (;;) {
		struct journal_record rec;
		const char *why = NULL;
		ssize_t avail, n;
		uint64_t next = 0;

		if (pos >= w.size)
			break;
		avail = window_fill(&w, pos, JOURNAL_RECORD_MAX);
		if (avail < 0) {
			r = (int)avail;
			goto out;
		}
		if (avail == 0)
			break;
		n = journal_decode(w.buf + (pos - w.start), (size_t)avail, &rec, &why);
		if (n > 0) {
			res.records++;
			res.valid_end = pos + (uint64_t)n;
			r = cb ? cb(cb_userdata, &rec, pos) : 0;
			if (r < 0)
				goto out;
			pos += (uint64_t)n;
			if (r > 0) {
				res.status = JOURNAL_SCAN_STOPPED;
				break;
			}
			continue;
		}
		/* invalid bytes at pos: torn tail or corruption? */
		res.bad_offset = pos;
		res.why = why;
		r = find_next_valid(&w, pos, &next);
		if (r < 0)
			goto out;
		if (r > 0) {
			res.status = JOURNAL_SCAN_CORRUPT;
			res.next_valid = next;
		} else {
			res.status = JOURNAL_SCAN_TORN;
		}
		break;
	}
	r = 0;
out:
	/* also when the read or the callback failed: what was valid so far */
	*ret = res;
	free(w.buf);
	return r;
}
