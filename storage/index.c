/* index: the hash table + skip list map (see index.h).
 *
 * Entries hold the key and, when it fits, the value in one allocation.
 * While loading they come from an arena and wait in small batches before
 * they enter the hash table; index_seal() links the skip list once. */
#include "config.h"

#include "storage/index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/crc32c.h"

#define SKIP_MAX_LEVEL 24

/* An index entry: the key and, when it fits, the value live in the same
 * allocation (key at &fwd[level], the inline value slot of `cap` bytes right
 * after it).  A value that outgrows the slot is malloc'd (ENTRY_VALUE_HEAP).
 * Entries made while loading come from the load arena (ENTRY_ARENA):
 * one allocation per few MiB instead of two per key, freed with the index. */
struct entry {
	struct entry *hnext;
	uint8_t *value; /* value_len bytes + NUL: inline slot or malloc'd */
	uint32_t hash;
	uint32_t key_len;
	uint32_t value_len;
	uint32_t cap;        /* bytes of the inline value slot (value_len + 1 fits) */
	uint8_t level;       /* skip list levels */
	uint8_t flags;       /* ENTRY_* */
	struct entry *fwd[]; /* `level` pointers, then the key, then the slot */
};

#define ENTRY_ARENA      0x01 /* memory belongs to the load arena */
#define ENTRY_VALUE_HEAP 0x02 /* value is malloc'd, not the inline slot */
#define ENTRY_DEAD       0x04 /* deleted arena entry (skipped by index_seal) */

static uint8_t *entry_key(const struct entry *e)
{
	return (uint8_t *)&e->fwd[e->level];
}

static uint8_t *entry_slot(const struct entry *e)
{
	return entry_key(e) + e->key_len;
}

/* Bytes of an entry with these parameters, rounded for alignment. */
static size_t entry_size(uint32_t level, size_t klen, size_t cap)
{
	size_t n = sizeof(struct entry) + level * sizeof(struct entry *) + klen + cap;

	return (n + 7) & ~(size_t)7;
}

/* The load arena: chunks filled in allocation order (so walking them
 * yields every entry the load made), 1 MiB first, doubling up to 64 MiB,
 * backed by transparent huge pages where the kernel allows (page faults were
 * a tenth of replay time with 4 KiB pages).  Entries that die during
 * the load go to per-size free lists and are reused by the next entry of
 * the same size, so replaying overwrites does not grow the arena. */
#define ARENA_CHUNK_MIN    (1u << 20)
#define ARENA_CHUNK_MAX    (64u << 20)
#define ARENA_HUGE_PAGE    (2u << 20)
#define ARENA_FREE_CLASSES 512 /* exact sizes 8..4088 bytes */

/* A load inserts in batches: each new entry's bucket is prefetched when it
 * is queued and looked up only when the batch is full, so the cache misses
 * of a batch overlap instead of costing one memory latency per record. */
#define LOAD_BATCH 16

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, size;
	uint64_t data[]; /* 8-byte aligned entries */
};

struct index {
	struct entry **buckets;
	size_t nbuckets;
	size_t nkeys;
	struct entry *head;                     /* skip list head (level SKIP_MAX_LEVEL, no key) */
	bool linked;                            /* skip list built (false while loading) */
	struct arena_chunk *arena, *arena_tail; /* loading entries, in order */
	struct entry *arena_free[ARENA_FREE_CLASSES]; /* dead entries by size / 8 */
	struct entry *pending[LOAD_BATCH];            /* loading puts not yet in the table */
	size_t npending;
	size_t nheap; /* malloc'd entries and values: freeing walks the table only if > 0 */
	uint64_t rng;
};

static int load_flush(struct index *ix);

static uint32_t key_hash(const void *key, size_t len)
{
	return crc32c(0x9e3779b9u, key, len);
}

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static uint32_t random_level(struct index *ix)
{
	uint32_t level = 1;
	uint64_t x;

	/* xorshift64; p = 1/4 per level */
	x = ix->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	ix->rng = x;
	while (level < SKIP_MAX_LEVEL && (x & 3) == 0) {
		level++;
		x >>= 2;
	}
	return level;
}

static struct entry *hash_find(const struct index *ix, const void *key, size_t len, uint32_t h)
{
	for (struct entry *e = ix->buckets[h & (ix->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->key_len == len && memcmp(entry_key(e), key, len) == 0)
			return e;
	return NULL;
}

static int hash_resize(struct index *ix, size_t n)
{
	struct entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; i < ix->nbuckets; i++) {
		struct entry *e = ix->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(ix->buckets);
	ix->buckets = nb;
	ix->nbuckets = n;
	return 0;
}

/* Size the table for about `keys` keys before a load fills it, so that
 * the load never rehashes.  Only grows; failure is harmless (the table then
 * grows as it fills). */
void index_presize(struct index *ix, uint64_t keys)
{
	size_t n = ix->nbuckets;

	if (keys > (1ull << 26))
		keys = 1ull << 26;
	while (n < keys)
		n *= 2;
	if (n > ix->nbuckets)
		(void)hash_resize(ix, n);
}

/* Find the skip list predecessors of key at every level. */
static void skip_seek(const struct index *ix, const void *key, size_t len,
                      struct entry *update[SKIP_MAX_LEVEL])
{
	struct entry *x = ix->head;

	for (int l = SKIP_MAX_LEVEL - 1; l >= 0; l--) {
		while (x->fwd[l] && key_cmp(entry_key(x->fwd[l]), x->fwd[l]->key_len, key, len) < 0)
			x = x->fwd[l];
		update[l] = x;
	}
}

/* Memory for an entry: from the arena while loading (before the skip list
 * is linked), from malloc afterwards. */
static struct entry *entry_alloc(struct index *ix, size_t size)
{
	struct arena_chunk *c = ix->arena_tail;
	struct entry *e;

	if (ix->linked) {
		e = malloc(size);
		if (e) {
			e->flags = 0;
			ix->nheap++;
		}
		return e;
	}
	if (size / 8 < ARENA_FREE_CLASSES && ix->arena_free[size / 8]) {
		e = ix->arena_free[size / 8];
		ix->arena_free[size / 8] = e->hnext;
		e->flags = ENTRY_ARENA;
		return e;
	}
	if (!c || c->size - c->used < size) {
		size_t cs = c ? c->size * 2 : ARENA_CHUNK_MIN;

		if (cs > ARENA_CHUNK_MAX)
			cs = ARENA_CHUNK_MAX;
		if (cs < size)
			cs = size;
		c = aligned_alloc(ARENA_HUGE_PAGE, (sizeof(*c) + cs + ARENA_HUGE_PAGE - 1) &
		                                           ~(size_t)(ARENA_HUGE_PAGE - 1));
		if (!c)
			return NULL;
		if (cs >= ARENA_HUGE_PAGE)
			(void)madvise(c, sizeof(*c) + cs, MADV_HUGEPAGE);
		c->next = NULL;
		c->used = 0;
		c->size = cs;
		if (ix->arena_tail)
			ix->arena_tail->next = c;
		else
			ix->arena = c;
		ix->arena_tail = c;
	}
	e = (struct entry *)((uint8_t *)c->data + c->used);
	c->used += size;
	e->flags = ENTRY_ARENA;
	return e;
}

static void entry_free(struct index *ix, struct entry *e)
{
	size_t size = entry_size(e->level, e->key_len, e->cap);

	if (e->flags & ENTRY_VALUE_HEAP) {
		free(e->value);
		ix->nheap--;
	}
	if (!(e->flags & ENTRY_ARENA)) {
		free(e);
		ix->nheap--;
		return;
	}
	e->flags = ENTRY_DEAD | ENTRY_ARENA; /* the arena keeps the bytes */
	if (!ix->linked && size / 8 < ARENA_FREE_CLASSES) {
		e->hnext = ix->arena_free[size / 8];
		ix->arena_free[size / 8] = e;
	}
}

/* Replace the value of e: into the inline slot when it fits, else into a
 * new heap buffer.  e keeps its old value on failure. */
static int entry_set_value(struct index *ix, struct entry *e, const void *val, size_t vlen)
{
	uint8_t *dst = entry_slot(e);

	if (vlen + 1 > e->cap) {
		dst = malloc(vlen + 1);
		if (!dst)
			return -ENOMEM;
		ix->nheap++;
	}
	if (e->flags & ENTRY_VALUE_HEAP) {
		free(e->value);
		ix->nheap--;
	}
	if (dst == entry_slot(e))
		e->flags &= (uint8_t)~ENTRY_VALUE_HEAP;
	else
		e->flags |= ENTRY_VALUE_HEAP;
	if (vlen)
		memcpy(dst, val, vlen);
	dst[vlen] = '\0';
	e->value = dst;
	e->value_len = (uint32_t)vlen;
	return 0;
}

/* Insert or replace key -> a copy of val. */
static int sealed_put(struct index *ix, const void *key, size_t klen, const void *val, size_t vlen)
{
	uint32_t h = key_hash(key, klen);
	struct entry *e = hash_find(ix, key, klen, h);
	uint32_t level;

	if (e)
		return entry_set_value(ix, e, val, vlen);
	if (ix->nkeys >= ix->nbuckets && hash_resize(ix, ix->nbuckets * 2) < 0)
		return -ENOMEM;
	level = random_level(ix);
	e = entry_alloc(ix, entry_size(level, klen, vlen + 1));
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->key_len = (uint32_t)klen;
	e->level = (uint8_t)level;
	e->cap = (uint32_t)(vlen + 1);
	memcpy(entry_key(e), key, klen);
	(void)entry_set_value(ix, e, val, vlen); /* fits the slot: cannot fail */
	e->hnext = ix->buckets[h & (ix->nbuckets - 1)];
	ix->buckets[h & (ix->nbuckets - 1)] = e;
	ix->nkeys++;
	if (ix->linked) {
		struct entry *update[SKIP_MAX_LEVEL];

		skip_seek(ix, key, klen, update);
		for (uint32_t l = 0; l < level; l++) {
			e->fwd[l] = update[l]->fwd[l];
			update[l]->fwd[l] = e;
		}
	}
	return 0;
}

static bool table_delete(struct index *ix, const void *key, size_t klen)
{
	uint32_t h = key_hash(key, klen);
	struct entry **pp = &ix->buckets[h & (ix->nbuckets - 1)], *e;

	for (; (e = *pp); pp = &e->hnext)
		if (e->hash == h && e->key_len == klen && memcmp(entry_key(e), key, klen) == 0)
			break;
	if (!e)
		return false;
	*pp = e->hnext;
	if (ix->linked) {
		struct entry *update[SKIP_MAX_LEVEL];

		skip_seek(ix, key, klen, update);
		for (uint32_t l = 0; l < e->level; l++)
			if (update[l]->fwd[l] == e)
				update[l]->fwd[l] = e->fwd[l];
	}
	entry_free(ix, e);
	ix->nkeys--;
	return true;
}

/* Sort element: the first 8 key bytes as a big-endian integer, so most
 * comparisons never touch the entry (a cache miss each). */
struct sort_item {
	uint64_t prefix;
	struct entry *e;
};

static uint64_t key_prefix(const struct entry *e)
{
	const uint8_t *k = entry_key(e);
	uint64_t p = 0;

	for (uint32_t i = 0; i < 8; i++)
		p = p << 8 | (i < e->key_len ? k[i] : 0);
	return p;
}

static int sort_item_cmp(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;

	if (x->prefix != y->prefix)
		return x->prefix < y->prefix ? -1 : 1;
	return key_cmp(entry_key(x->e), x->e->key_len, entry_key(y->e), y->e->key_len);
}

/* Sort by key: a stable LSD radix sort on the 8-byte prefix (byte digits,
 * skipping digits that are equal in every item), then a comparison sort of
 * each run of equal prefixes.  tmp has room for n items. */
static void sort_items(struct sort_item *all, struct sort_item *tmp, size_t n)
{
	struct sort_item *src = all, *dst = tmp;

	for (int shift = 0; shift < 64; shift += 8) {
		size_t count[256] = {0}, pos = 0;

		for (size_t i = 0; i < n; i++)
			count[(src[i].prefix >> shift) & 0xff]++;
		if (count[(src[0].prefix >> shift) & 0xff] == n)
			continue; /* one value: the pass would not move anything */
		for (int d = 0; d < 256; d++) {
			size_t c = count[d];

			count[d] = pos;
			pos += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i].prefix >> shift) & 0xff]++] = src[i];
		src = dst;
		dst = src == all ? tmp : all;
	}
	if (src != all)
		memcpy(all, src, n * sizeof(*all));
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && all[j].prefix == all[i].prefix; j++)
			;
		if (j - i > 1)
			qsort(all + i, j - i, sizeof(*all), sort_item_cmp);
	}
}

/* After the load: sort the live entries once and link the skip list.  The
 * arena holds them in insertion order, so a load in key order (a store
 * recovered from a snapshot) needs no sort at all. */
int index_seal(struct index *ix)
{
	struct sort_item *all = NULL, *tmp = NULL;
	struct entry *tail[SKIP_MAX_LEVEL];
	size_t n = 0;
	bool sorted = true;
	int r = 0;

	if (ix->linked)
		return 0;
	r = load_flush(ix);
	if (r < 0)
		return r;
	if (ix->nkeys) {
		all = malloc(ix->nkeys * sizeof(*all));
		if (!all)
			return -ENOMEM;
	}
	for (struct arena_chunk *c = ix->arena; c; c = c->next) {
		for (size_t off = 0; off < c->used;) {
			struct entry *e = (struct entry *)((uint8_t *)c->data + off);

			off += entry_size(e->level, e->key_len, e->cap);
			if (e->flags & ENTRY_DEAD)
				continue;
			if (n == ix->nkeys) {
				r = -EUCLEAN; /* cannot happen: the arena holds every key */
				goto out;
			}
			all[n++] = (struct sort_item){key_prefix(e), e};
		}
	}
	if (n != ix->nkeys) {
		r = -EUCLEAN;
		goto out;
	}
	for (size_t i = 1; i < n && sorted; i++)
		sorted = sort_item_cmp(&all[i - 1], &all[i]) < 0;
	if (!sorted) {
		tmp = malloc(n * sizeof(*tmp));
		if (!tmp) {
			r = -ENOMEM;
			goto out;
		}
		sort_items(all, tmp, n);
	}
	for (int l = 0; l < SKIP_MAX_LEVEL; l++) {
		tail[l] = ix->head;
		ix->head->fwd[l] = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = all[i].e;

		for (uint32_t l = 0; l < e->level; l++) {
			e->fwd[l] = NULL;
			tail[l]->fwd[l] = e;
			tail[l] = e;
		}
	}
	ix->linked = true;
out:
	free(tmp);
	free(all);
	return r;
}

static void entries_free(struct index *ix)
{
	for (size_t i = 0; ix->nheap && ix->buckets && i < ix->nbuckets; i++) {
		struct entry *e = ix->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			entry_free(ix, e);
		}
	}
	while (ix->arena) {
		struct arena_chunk *c = ix->arena;

		ix->arena = c->next;
		free(c);
	}
	ix->arena_tail = NULL;
	free(ix->buckets);
	free(ix->head);
}

/* Put the queued loading entries into the table, in call order: a key
 * already present is replaced by the newer entry. */
static int load_flush(struct index *ix)
{
	for (size_t i = 0; i < ix->npending; i++) {
		struct entry *e = ix->pending[i], **pp, *old;

		pp = &ix->buckets[e->hash & (ix->nbuckets - 1)];
		for (; (old = *pp); pp = &old->hnext)
			if (old->hash == e->hash && old->key_len == e->key_len &&
			    memcmp(entry_key(old), entry_key(e), e->key_len) == 0)
				break;
		if (old) {
			e->hnext = old->hnext;
			*pp = e;
			entry_free(ix, old);
			continue;
		}
		e->hnext = *pp;
		*pp = e;
		ix->nkeys++;
		if (ix->nkeys > ix->nbuckets && hash_resize(ix, ix->nbuckets * 2) < 0) {
			ix->npending = 0; /* the rest stays in the arena, freed with it */
			return -ENOMEM;
		}
	}
	ix->npending = 0;
	return 0;
}

/* A put while loading: a new arena entry, queued (see LOAD_BATCH). */
static int load_put(struct index *ix, const void *key, size_t klen, const void *val, size_t vlen)
{
	uint32_t level = random_level(ix);
	struct entry *e = entry_alloc(ix, entry_size(level, klen, vlen + 1));

	if (!e)
		return -ENOMEM;
	e->hash = key_hash(key, klen);
	e->key_len = (uint32_t)klen;
	e->level = (uint8_t)level;
	e->cap = (uint32_t)(vlen + 1);
	memcpy(entry_key(e), key, klen);
	(void)entry_set_value(ix, e, val, vlen); /* fits the slot: cannot fail */
	__builtin_prefetch(&ix->buckets[e->hash & (ix->nbuckets - 1)]);
	ix->pending[ix->npending++] = e;
	return ix->npending == LOAD_BATCH ? load_flush(ix) : 0;
}

/* ---------------------------------------------------------------- API */

struct index *index_new(void)
{
	struct index *ix = calloc(1, sizeof(*ix));

	if (!ix)
		return NULL;
	ix->nbuckets = 1024;
	ix->buckets = calloc(ix->nbuckets, sizeof(*ix->buckets));
	ix->head = calloc(1, sizeof(*ix->head) + SKIP_MAX_LEVEL * sizeof(ix->head->fwd[0]));
	ix->rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)(uintptr_t)ix;
	if (!ix->buckets || !ix->head)
		return index_free(ix);
	ix->head->level = SKIP_MAX_LEVEL;
	ix->head->flags = 0;
	return ix;
}

struct index *index_free(struct index *ix)
{
	if (!ix)
		return NULL;
	entries_free(ix);
	free(ix);
	return NULL;
}

int index_put(struct index *ix, const void *key, size_t key_len, const void *value,
              size_t value_len)
{
	if (!ix->linked)
		return load_put(ix, key, key_len, value, value_len);
	return sealed_put(ix, key, key_len, value, value_len);
}

int index_delete(struct index *ix, const void *key, size_t key_len)
{
	if (!ix->linked) {
		int r = load_flush(ix); /* deletes apply in call order */

		if (r < 0)
			return r;
	}
	return table_delete(ix, key, key_len) ? 1 : 0;
}

bool index_get(const struct index *ix, const void *key, size_t key_len, const void **ret_value,
               size_t *ret_len)
{
	const struct entry *e = hash_find(ix, key, key_len, key_hash(key, key_len));

	if (!e)
		return false;
	if (ret_value)
		*ret_value = e->value;
	if (ret_len)
		*ret_len = e->value_len;
	return true;
}

size_t index_count(const struct index *ix)
{
	return ix->nkeys;
}

bool index_sealed(const struct index *ix)
{
	return ix->linked;
}

int index_walk(const struct index *ix, const void *prefix, size_t prefix_len, index_walk_fn cb,
               void *userdata)
{
	struct entry *update[SKIP_MAX_LEVEL], *e;
	int count = 0, r = 0;

	if (!ix->linked)
		return -EINVAL;
	skip_seek(ix, prefix, prefix_len, update);
	for (e = update[0]->fwd[0]; e; e = e->fwd[0]) {
		if (e->key_len < prefix_len ||
		    (prefix_len && memcmp(entry_key(e), prefix, prefix_len) != 0))
			break;
		r = cb(userdata, entry_key(e), e->key_len, e->value, e->value_len);
		if (r)
			break;
		count++;
	}
	return r ? r : count;
}
