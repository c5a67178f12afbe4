/* metastore: the durable key -> value store of a single-writer MetaService.
 *
 * A master opens the store with its fencing epoch; the store recovers every
 * acknowledged write from the backend (newest snapshot + journal segments),
 * writes a BARRIER record with the epoch, and from then on appends one record
 * per put/delete and makes it durable before returning (group commit batches
 * concurrent writers into one sync).  Snapshots bound recovery time.
 *
 * The live state is an index (storage/index.h: a hash table whose entries
 * are also linked into a skip list ordered by key), which recovery loads in
 * bulk and seals before the store opens, so replay cost does not depend on
 * key order and list-by-prefix is a seek plus a walk.
 *
 * Epoch semantics ("stepping down"):
 *   - metastore_open(epoch E) refuses with -ESTALE when the volume holds an
 *     epoch > E (the epoch cell or any record); otherwise it stores E in the
 *     epoch cell, starts a new segment and writes BARRIER(E) durably.
 *   - After each sync (once per group commit) the writer re-checks the epoch
 *     cell (backend epoch_check: one stat(2) on the directory backend).  If it
 *     holds an epoch newer than E, or the backend refused a write/sync with
 *     -EACCES or -EBADE (e.g. SCSI RESERVATION CONFLICT), the store steps
 *     down: the writes of that group and every later put/delete/snapshot
 *     return -ESTALE, and nothing more is written.  Other I/O errors during a
 *     write or sync are fatal in the same way but reported as that error
 *     (-EIO, -ENOSPC...), because after a failed fsync the page cache cannot
 *     be trusted.  Gets still answer from memory (callers must stop serving
 *     once a write reports -ESTALE).
 *   - Because a new master begins a new segment at seq L+1 after reading
 *     everything up to L, records that a fenced writer appended to its old
 *     segment afterwards have seq >= L+1 and are discarded by recovery (they
 *     were never acknowledged: the fenced writer saw the new epoch after its
 *     sync and returned -ESTALE).  The bound is that segment, not the
 *     claim: a master whose open was called off after its claim and before
 *     its barrier segment bounds nothing, and a record a fenced writer
 *     appended meanwhile (answered indeterminate, never acknowledged) is
 *     replayed by the next master's recovery.
 *
 * Thread safety: all functions may be called from several threads on one
 * store; they serialise on an internal mutex, except that the sync of a group
 * commit runs without it.  A get may observe a put that is still syncing.
 * On the directory backend the store runs one thread of its own, started at
 * the first snapshot and joined by metastore_close, that builds snapshots
 * from the files (see metastore_snapshot). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/backend.h"

#define METASTORE_KEY_MAX   1024
#define METASTORE_VALUE_MAX (64 * 1024)

struct metastore;

struct metastore_options {
	uint64_t epoch;            /* fencing token of this writer (from the Lease) */
	uint64_t snapshot_bytes;   /* journal bytes since the last snapshot that trigger one
	                              (0: 64 MiB) */
	uint64_t snapshot_records; /* records since the last snapshot that trigger one
	                              (0: 1,000,000) */
	/* Recovery reads the newest snapshot and every journal record after
	 * it; a snapshot also follows once the records since the last one are
	 * at least this many and at least as many as there are live keys, so
	 * that recovery reads at most about twice the live state (plus this
	 * floor), and a snapshot's cost (one entry per key) is spread over as
	 * many writes.  0: 4096.  UINT64_MAX here and in the two above: never
	 * automatically (but at half of a bounded journal, a LUN's ring). */
	uint64_t snapshot_min_records;
	bool no_group_commit; /* sync each write on its own (benchmarks) */
	bool read_only;       /* recover and serve gets only: no truncation of a
	                         torn tail, no epoch update, no barrier */
	/* Each get and list also waits for an epoch check (backend
	 * epoch_check) that began after it was called, shared by the reads
	 * that wait together: a read is answered only if no newer master had
	 * claimed the volume when it was made.  A newer master claims before
	 * it recovers and acknowledges nothing before its barrier, so such a
	 * read is never stale, however late this writer learns it was fenced,
	 * as long as the backend's epoch cell is coherent (a LUN; a local or
	 * coherent shared filesystem).  Ignored when read_only. */
	bool confirm_reads;
	/* Whether this writer's term still runs (its write grant); NULL: always.
	 * A snapshot checks it before it starts a segment and before it
	 * commits: one that outlived its term commits nothing.  Called with
	 * the store's lock held, possibly from the store's snapshot thread;
	 * must not block or call into the store. */
	bool (*in_term)(void *userdata);
	void *in_term_userdata;
	/* Whether metastore_open should give up (the promotion it serves was
	 * called off); NULL: never.  Checked, from the opening thread, before
	 * the epoch is claimed, before each unit recovery reads and before the
	 * barrier: once it returns true the open fails with -ECANCELED and
	 * writes nothing more (a claim already made stays: it only fences
	 * older writers).  Must not block or call into the store. */
	bool (*cancelled)(void *userdata);
	void *cancelled_userdata;
};

struct metastore_stats {
	uint64_t keys;
	uint64_t last_seq;
	uint64_t volume_epoch;     /* newest epoch seen on the volume at open */
	uint64_t records_replayed; /* at open: snapshot entries + journal records */
	uint64_t bytes_replayed;
	uint64_t syncs;          /* syncs done since open */
	uint64_t writes;         /* puts + deletes acknowledged since open */
	uint64_t snapshots;      /* snapshots written since open */
	uint64_t torn_bytes_cut; /* torn tail removed at open */
	uint64_t journal_bytes;  /* journal bytes since the last snapshot */
	uint64_t read_checks;    /* epoch checks made for reads (confirm_reads) */
};

/* Open (recover) the store on backend b, which the store then owns (closed
 * by metastore_close, also on failure).  Returns 0 and *ret;
 *   -ESTALE     the volume holds a newer epoch than opts->epoch;
 *   -EUCLEAN    a journal segment is damaged before its tail, or a segment
 *               is missing (sequence gap);
 *   -EBADMSG    a snapshot or the epoch cell is damaged;
 *   -ECANCELED  opts->cancelled said so (see above);
 *   -ENOMEM, or an I/O error from the backend.
 * Every failure is described in err; damage messages name the file, the
 * offset and the repair commands.  Blocks for the whole recovery. */
int metastore_open(struct backend *b, const struct metastore_options *opts, struct metastore **ret,
                   char *err, size_t errlen);

/* metastore_open on a directory backend for `dir` (created when missing
 * unless read_only). */
int metastore_open_dir(const char *dir, const struct metastore_options *opts,
                       struct metastore **ret, char *err, size_t errlen);

/* Close and free; accepts NULL; returns NULL.  Does not write anything: every
 * acknowledged write is already durable. */
struct metastore *metastore_close(struct metastore *m);

/* Store value under key, durably before returning.  Returns 0;
 *   -EINVAL       empty key, or NULL with a non-zero length;
 *   -ENAMETOOLONG key longer than METASTORE_KEY_MAX;
 *   -E2BIG        value longer than METASTORE_VALUE_MAX;
 *   -EROFS        opened read_only;
 *   -ESTALE       stepped down (see above) before anything was written;
 *   -EIO etc.     the store failed earlier; nothing was written;
 *   -EINPROGRESS  the record was written but could not be confirmed durable
 *                 under this writer's epoch (a newer epoch took over during
 *                 the commit, or the write or sync failed): the outcome is
 *                 unknown, a newer master may recover it.  The store then
 *                 accepts no more writes (err says why).
 * Detail in err (may be NULL).  Blocks until durable. */
int metastore_put(struct metastore *m, const void *key, size_t key_len, const void *value,
                  size_t value_len, char *err, size_t errlen);

/* Delete key durably.  Returns 0, -ENOENT when absent (nothing written), or
 * the errors of metastore_put. */
int metastore_delete(struct metastore *m, const void *key, size_t key_len, char *err,
                     size_t errlen);

/* Copy the value of key into a new buffer (*ret_value, free() it; one extra
 * NUL byte is appended for convenience, not counted in *ret_len).  Only
 * durable state is read: a write whose group commit is still running is
 * waited for (the read may then run the sync itself).  Returns 0, -ENOENT,
 * -EINVAL, -ENAMETOOLONG, -ENOMEM, or the error the store stepped down with
 * (-ESTALE: a newer epoch holds the volume; -EIO etc.).  Blocks only while a
 * commit is running. */
int metastore_get(struct metastore *m, const void *key, size_t key_len, void **ret_value,
                  size_t *ret_len);

/* Called for each key with the prefix, in key order.  The pointers are valid
 * during the call only; the store's lock is held, so the callback must not
 * call back into the store.  Return 0 to go on, non-zero to stop (that value
 * is returned by metastore_list). */
typedef int (*metastore_list_fn)(void *userdata, const void *key, size_t key_len, const void *value,
                                 size_t value_len);

/* Walk the keys that begin with prefix (prefix_len 0: all keys), durable
 * state only, as metastore_get.  Returns the number of keys visited, the
 * callback's non-zero value, or metastore_get's store errors (< 0). */
int metastore_list(struct metastore *m, const void *prefix, size_t prefix_len, metastore_list_fn cb,
                   void *userdata);

/* Write a snapshot of the state after the last write now, and remove what
 * it covers.  On a backend with clone (the directory backend) the store
 * only cuts a new segment under its lock (one sync, one file creation) and
 * a background thread builds the snapshot from the files; the caller waits
 * for it, writers do not.  Automatic snapshots (snapshot_bytes, _records,
 * _min_records) work the same way without anyone waiting.  On other
 * backends (the raw LUN) the snapshot is written from the index and writers
 * wait meanwhile.
 * Returns 0, -ETIME when the writer's term (in_term) ended before the cut
 * or before the commit (nothing committed), or the errors of metastore_put
 * (-ESTALE: a newer epoch took over; nothing committed). */
int metastore_snapshot(struct metastore *m, char *err, size_t errlen);

/* 0 while the store serves; once it died (a failed sync, a fence, a read's
 * epoch check that could not be made), the error it died of (-ESTALE when
 * fenced): every later read and write fails with it, and its master must
 * step down. */
int metastore_failed(struct metastore *m);

void metastore_get_stats(struct metastore *m, struct metastore_stats *ret);

/* What an offline check or repair found and did, in order. */
enum metastore_finding {
	METASTORE_FOUND_OK,           /* the store recovers cleanly: its summary */
	METASTORE_FOUND_PROBLEM,      /* damage that keeps the store from opening */
	METASTORE_FOUND_REPAIRED,     /* a repair action (a unit moved aside, nothing deleted) */
	METASTORE_FOUND_UNREPAIRABLE, /* damage repair leaves alone; the text says what to do */
	METASTORE_FOUND_ERROR,        /* the check or the repair itself failed */
};

struct metastore_check_entry {
	enum metastore_finding kind;
	char text[1200]; /* one line, without a newline or a label */
};

struct metastore_check_report {
	int result; /* what metastore_check returned */
	/* The store, from the last round that found it healthy (an OK entry). */
	size_t keys;
	uint64_t last_seq;
	uint64_t epoch; /* the volume's: the epoch cell or the newest record's */
	uint64_t records_replayed;
	bool torn_tail; /* a torn tail that the next open cuts */
	/* Every finding and action, in order (n of them; cap is allocated). */
	struct metastore_check_entry *entries;
	size_t n, cap;
};

/* Offline check / repair of a store, for `kubefencectl journal`.  Validates
 * every unit without changing anything (check) or, with repair, moves each
 * damaged unit aside as "<name>.corrupt-<timestamp>", keeping the valid
 * prefix in place, and moves aside the later segments that can no longer be
 * replayed after the cut; repair then checks again, until the store is
 * healthy or nothing more can be done.  Every finding and action goes into
 * *ret, which is filled in every case (on failure, the findings up to it,
 * usually an ERROR entry last) and is released with
 * metastore_check_report_done.  Prints and logs nothing of its own.
 * Returns 0 when the store is healthy (or was repaired), 1 when problems
 * were found (check) or remain (repair), -errno on failure.  Blocks for a
 * whole recovery per round. */
int metastore_check(struct backend *b, bool repair, struct metastore_check_report *ret);

/* Free what a report holds and reset it; accepts NULL. */
void metastore_check_report_done(struct metastore_check_report *rep);
