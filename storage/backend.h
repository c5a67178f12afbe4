/* backend: the interface between the metadata store and the medium that
 * holds it (a directory on a mounted volume, or a raw LUN / block device).
 *
 * The store sees a backend as a set of "units": journal segments (append-only
 * byte streams, each named by the sequence number of its first record) and
 * snapshots (immutable byte streams named by the sequence number they
 * contain), plus one small "epoch" cell holding the newest fencing epoch.
 * Units hold the records of storage/journal.h; a backend never interprets
 * them, except that a block backend may add PAD records (journal_encode_pad)
 * in sync() to end each durable batch on a block boundary: it buffers the
 * tail block in memory, never rewrites a block that holds acknowledged
 * records, and lays segments and snapshots out as extents described by a
 * superblock (magic, version, UUID, CRC) in block 0.  Zeros or stale bytes
 * after a stream's last record are fine: the scanner treats them as a torn
 * tail, so a block backend need not persist exact stream lengths.
 *
 * Errors: every op returns >= 0 or -errno.  -EACCES and -EBADE mean "the
 * medium refused this writer" (e.g. a SCSI RESERVATION CONFLICT): the store
 * then steps down for good.  Backends log nothing on the I/O path; the store
 * logs once where it decides.  All ops may block on I/O; none is thread-safe:
 * the store serialises calls, except that sync() may run concurrently with
 * append() on the same current segment (group commit). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum backend_unit_kind {
	BACKEND_SEGMENT = 1,
	BACKEND_SNAPSHOT = 2,
};

struct backend_unit {
	enum backend_unit_kind kind;
	uint64_t id;    /* segment: first seq; snapshot: the seq it holds */
	uint64_t epoch; /* the epoch of the writer that created it (0: not recorded) */
	uint64_t size;  /* bytes (an upper bound for block backends) */
	char name[128]; /* for messages: a file path or "lun:extent" */
};

struct backend;

struct backend_ops {
	const char *name;
	/* Release everything; may be called on a half-opened backend. */
	void (*close)(struct backend *b);
	/* Block size that appends are aligned to (1 for files). */
	size_t (*block_size)(struct backend *b);

	/* Read the epoch cell (0 when never written). */
	int (*epoch_get)(struct backend *b, uint64_t *ret_epoch);
	/* Durably replace the epoch cell. */
	int (*epoch_set)(struct backend *b, uint64_t epoch);
	/* Cheap check on each commit: *ret_epoch is the current cell value,
	 * re-read only when the backend can tell it may have changed. */
	int (*epoch_check)(struct backend *b, uint64_t *ret_epoch);

	/* All units, segments by (id, epoch) then snapshots by (id, epoch),
	 * in a new array owned by the caller (free()). */
	int (*list)(struct backend *b, struct backend_unit **ret_units, size_t *ret_n);
	/* Read like pread() from a unit; 0 at its end. */
	ssize_t (*read)(struct backend *b, const struct backend_unit *u, uint64_t off, void *buf,
	                size_t len);
	/* Cut a segment back to `size` bytes, durably (torn-tail repair). */
	int (*truncate)(struct backend *b, const struct backend_unit *u, uint64_t size);
	/* Durably remove a unit (only after a snapshot covering it is durable). */
	int (*remove)(struct backend *b, const struct backend_unit *u);
	/* Keep a damaged unit for inspection under a new name (e.g.
	 * "<name>.corrupt-<timestamp>") and take it out of the store, keeping
	 * a copy of its first `keep` bytes in place when keep > 0.  The new name
	 * goes to ret_name (may be NULL). */
	int (*quarantine)(struct backend *b, const struct backend_unit *u, uint64_t keep,
	                  char *ret_name, size_t namelen);

	/* Start a new, empty segment whose first record has seq first_seq and
	 * make it the append target.  The previous target must have been
	 * synced by the caller. */
	int (*segment_start)(struct backend *b, uint64_t first_seq);
	/* Append bytes to the current segment; with durable, also sync. */
	int (*append)(struct backend *b, const void *buf, size_t len, bool durable);
	/* Make everything appended so far durable. */
	int (*sync)(struct backend *b);
	/* Make a unit durable as it stands (a new writer adopts the records a
	 * previous writer may have left unsynced; 0 where nothing can be). */
	int (*sync_unit)(struct backend *b, const struct backend_unit *u);

	/* Write a snapshot: begin, write in order, commit makes it durable and
	 * visible atomically (only then does it appear in list()); abort drops
	 * it.  One snapshot at a time. */
	int (*snapshot_begin)(struct backend *b, uint64_t seq);
	int (*snapshot_write)(struct backend *b, const void *buf, size_t len);
	int (*snapshot_commit)(struct backend *b);
	void (*snapshot_abort)(struct backend *b);

	/* Open a second handle on the same medium with the same epoch, for a
	 * snapshot built on another thread (list, read, snapshot_*, remove)
	 * while this handle goes on appending: the two share no memory, the
	 * medium orders their operations, and the clone's guard re-checks the
	 * epoch like this handle's.  Close it with its own close.  NULL when
	 * the backend cannot: the store then writes snapshots in the
	 * foreground, holding writers. */
	int (*clone)(struct backend *b, struct backend **ret);

	/* A journal of bounded size (a LUN's ring): the bytes its live
	 * segments occupy (block padding included) and its capacity.  The
	 * store snapshots once half is used, so the segments a snapshot covers
	 * are freed long before the ring is full.  NULL: unbounded (a
	 * directory). */
	void (*journal_room)(struct backend *b, uint64_t *ret_used, uint64_t *ret_capacity);
};

struct backend {
	const struct backend_ops *ops;
	char desc[256]; /* e.g. "dir:/var/lib/meta" for messages */
	/* The epoch of the writer using this backend, set by the store before
	 * it writes anything (0: a reader or an offline tool).  With it set, a
	 * backend creates units that carry this epoch, never replaces, cuts or
	 * removes a unit of a newer epoch, and re-checks the epoch cell
	 * immediately before every creation, cut, rename or removal, failing
	 * with -ESTALE once a newer epoch holds the medium: a writer that was
	 * paused past its term cannot destroy what its successor wrote. */
	uint64_t epoch;
};

/* Directory backend (storage/backend_dir.c).  Files in `dir`:
 *   journal-<16 hex first seq>-<16 hex epoch>.log   segments (created
 *                                    exclusively; the epoch is the writer's)
 *   snapshot-<16 hex seq>-<16 hex epoch>.snap       snapshots (written as
 *                                    *.tmp, renamed without replacing)
 *   epoch                            the epoch cell (24 bytes, see FORMAT.md)
 *   epoch-<16 hex>                   one empty marker per claimed epoch: the
 *                                    volume's epoch is the largest of the cell
 *                                    and the markers, so two claims racing on
 *                                    the cell can never lower it
 * Names without the epoch (journal-<seq>.log, snapshot-<seq>.snap) are read
 * as epoch 0, for stores written before epochs were in the names.
 * The directory is created (0700) when missing and create is set.
 * Returns 0 and a new backend in *ret (close with b->ops->close(b)),
 * -ENOENT/-ENOTDIR/-EACCES with a message in err.  Blocks on the file system. */
int backend_dir_open(const char *dir, bool create, struct backend **ret, char *err, size_t errlen);

/* The directory of a directory backend, or NULL for other backends. */
const char *backend_dir_path(const struct backend *b);
