/* index: an in-memory map of byte-string keys to byte-string values, built
 * for a store that is first bulk-loaded by a replay and then updated one
 * key at a time.  It knows nothing of journals or epochs; the metadata
 * store (metastore.c) keeps its live state in one.
 *
 * A hash table (gets, puts, deletes in O(1)) whose entries are also linked
 * into a skip list ordered by key (memcmp, then length), so a walk by prefix
 * is a seek plus a walk over the matches.
 *
 * Two phases.  A new index is *loading*: puts go into an arena (one
 * allocation per few MiB instead of two per key), are inserted into the
 * hash table in batches whose buckets are prefetched, and the skip list is
 * not kept.  index_seal() then sorts the live entries once and links the
 * skip list in linear time (no sort at all when they were loaded in key
 * order, as from a snapshot), so the load's cost does not depend on key
 * order.  After that the index is *sealed*: entries are malloc'd and the
 * skip list is updated with every put and delete.
 *
 * Not thread-safe: the caller serialises every call on one index. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct index;

/* A new, empty, loading index.  Returns NULL when out of memory. */
struct index *index_new(void);

/* Free the index and every entry; accepts NULL; returns NULL. */
struct index *index_free(struct index *ix);

/* Loading only: size the hash table for about `keys` keys, so that the load
 * never rehashes.  Only grows; failure is harmless (the table then grows as
 * it fills). */
void index_presize(struct index *ix, uint64_t keys);

/* Insert key -> a copy of value, or replace its value.  While loading, the
 * entry may wait in a batch: later puts and deletes still apply in call
 * order.  Returns 0 or -ENOMEM (the index then holds the key's old value, or
 * not the key; while loading, possibly neither for the batch: the caller
 * gives the load up). */
int index_put(struct index *ix, const void *key, size_t key_len, const void *value,
              size_t value_len);

/* Remove key.  Returns 1 when it was there, 0 when not, or -ENOMEM (loading
 * only: the batch before it could not be inserted). */
int index_delete(struct index *ix, const void *key, size_t key_len);

/* Sealed only: find key.  Returns true and its value (*ret_value, valid
 * until the next change of the index, NUL-terminated, the NUL not counted
 * in *ret_len), or false. */
bool index_get(const struct index *ix, const void *key, size_t key_len, const void **ret_value,
               size_t *ret_len);

/* Keys in the index (while loading: those inserted so far, without the
 * batch in flight; exact after index_seal). */
size_t index_count(const struct index *ix);

/* End the load: insert the last batch, sort, link the skip list.  Returns
 * 0, -ENOMEM, or -EUCLEAN when the arena and the table disagree (a bug).
 * A sealed index stays sealed; sealing it again is a no-op. */
int index_seal(struct index *ix);

bool index_sealed(const struct index *ix);

/* Called for each key of a walk, in key order; the pointers are valid during
 * the call only, which must not change the index.  Return 0 to go on,
 * non-zero to stop (index_walk then returns that value). */
typedef int (*index_walk_fn)(void *userdata, const void *key, size_t key_len, const void *value,
                             size_t value_len);

/* Sealed only: call cb for each key that begins with prefix (prefix_len 0:
 * every key), in key order.  Returns the number of keys visited or the
 * callback's non-zero value; -EINVAL when the index is still loading. */
int index_walk(const struct index *ix, const void *prefix, size_t prefix_len, index_walk_fn cb,
               void *userdata);
