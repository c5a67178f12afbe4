/* backend_lun: the metadata store on a raw LUN reached over iSCSI
 * (scsi/scsi_pr.h), fenced by SCSI-3 persistent reservations.
 *
 * The LUN carries a superblock (magic KFJRNLv1), an epoch block, a
 * double-buffered state table, two snapshot slots and a journal ring; the
 * layout and the write order are in storage/FORMAT.md ("Raw LUN layout").
 * Every durable write is a WRITE(16) with FUA that completed.  The writer
 * registers its node key on its own iSCSI session (registrations belong to an
 * I_T nexus) and joins the WRITE EXCLUSIVE - REGISTRANTS ONLY reservation, so
 * after another node PREEMPTs it every write is refused: the backend then
 * returns -EBADE and the store steps down. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/clock.h"
#include "storage/backend.h"
#include "storage/metastore.h"

struct backend_lun_options {
	usec_t io_timeout; /* deadline of each SCSI call (0: 10 s) */
	bool no_join;      /* read only: do not register a key or reserve */
	/* also join a LUN on which no key at all is registered (a master
	 * without an agent, kubefence-metad --standalone); otherwise only
	 * where this node's key is registered already (scsi_resv_join_store) */
	bool join_empty;
};

/* Initialise the LUN at `url` (iscsi://HOST[:PORT]/TARGET-IQN/LUN) as an
 * empty store, logging in as `initiator` (NULL: the IQN of `node`) and
 * registering `node`'s key.  Its first megabytes are read and probed with
 * libblkid first: a filesystem, RAID/LVM member, partition table or an
 * existing kubefence store makes it refuse with -EEXIST unless force is set.
 * Returns 0, -EEXIST, -EINVAL (bad URL, block size not 512..4096, LUN too
 * small), -EBADE (fenced), or the -errno of the session; detail in err.
 * Blocks on the LUN. */
int backend_lun_format(const char *url, const char *initiator, const char *node, bool force,
                       char *err, size_t errlen);

/* backend_lun_format for a LUN that was never used: refuses with -EEXIST
 * unless its first 4 MiB are all zero (a store whose superblock was lost is
 * not blank).  What a MetaService may do on its own at its first
 * promotion; it joins as its store's open does (join_empty: see
 * struct backend_lun_options). */
int backend_lun_format_unused(const char *url, const char *initiator, const char *node,
                              bool join_empty, char *err, size_t errlen);

/* Open a formatted LUN as a backend (close with b->ops->close(b)): log in as
 * `initiator` (NULL: the IQN of `node`), register `node`'s key on this
 * session and join the reservation (unless opts->no_join), read the
 * superblock and the state table.  Returns 0 and *ret; -EMEDIUMTYPE when the
 * LUN holds no kubefence store (format it first); -EBADMSG when the
 * superblock or both state-table copies are damaged; -EBADE when the join is
 * refused; or the -errno of the session; detail in err.  Blocks on the LUN. */
int backend_lun_open(const char *url, const char *initiator, const char *node,
                     const struct backend_lun_options *opts, struct backend **ret, char *err,
                     size_t errlen);

/* metastore_open on a LUN backend (read_only stores do not join; the
 * others join as scsi_resv_join_store says: where this node's key is
 * registered already, or with join_empty also where no key is). */
int metastore_open_lun(const char *url, const char *initiator_iqn, const char *node,
                       const struct metastore_options *opts, struct metastore **ret, char *err,
                       size_t errlen);
int metastore_open_lun_join(const char *url, const char *initiator_iqn, const char *node,
                            bool join_empty, const struct metastore_options *opts,
                            struct metastore **ret, char *err, size_t errlen);
