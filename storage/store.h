/* store: where a MetaService keeps its metadata, named by one URL.
 *
 *   dir:PATH                       a directory (storage/backend_dir.c) on a
 *                                  filesystem the replicas share, fenced by
 *                                  the epoch barrier and the write grant
 *   iscsi://HOST[:PORT]/IQN/LUN    a raw LUN reached through libiscsi
 *                                  (storage/backend_lun.c), fenced by the
 *                                  target: SCSI-3 persistent reservations
 *
 * A bare path (starting with '/') means dir:PATH.  On a LUN the writer logs
 * in as its node's initiator (PREFIX:NODE, the IQN the agent's scsi-pr fence
 * uses) and registers the node's key, so the agent of another node that
 * PREEMPTs that key makes the target refuse every later write of this one.
 * This module only parses the URL and opens the store it names. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "scsi/scsi_pr.h"
#include "storage/metastore.h"

enum store_kind {
	STORE_DIR = 1,
	STORE_LUN,
};

#define STORE_NODE_MAX 254

struct store_spec {
	enum store_kind kind;
	char path[PATH_MAX];             /* STORE_DIR */
	char url[SCSI_PR_URL_MAX];       /* STORE_LUN: iscsi://... as given */
	char node[STORE_NODE_MAX];       /* STORE_LUN: this node's name (key, IQN) */
	char initiator[SCSI_PR_IQN_MAX]; /* STORE_LUN: PREFIX:NODE */
	/* STORE_LUN: initialise a LUN that was never used (its first 4 MiB all
	 * zero) when a master opens it; a LUN holding anything else is never
	 * initialised here. */
	bool format_unused;
	/* STORE_LUN: a master without an agent (--standalone) joins a LUN on
	 * which no key is registered; under an agent, the agent's claim
	 * registers this node's key first, and the store joins only then. */
	bool join_empty;
};

/* Parse `text` (dir:PATH, /PATH or iscsi://...).  For a LUN, `node` (this
 * node's name; required) and `iqn_prefix` (NULL or "": the default) give the
 * initiator IQN and the key.  Pure.  Returns 0 and fills *ret, or -EINVAL
 * with the reason in err. */
int store_spec_parse(const char *text, const char *node, const char *iqn_prefix,
                     struct store_spec *ret, char *err, size_t errlen);

/* "dir '/data'" or "LUN 'iscsi://...' as 'iqn...:node'", for messages. */
const char *store_spec_describe(const struct store_spec *s, char *buf, size_t len);

/* Whether writes to this store are refused by the storage once another node
 * fenced this one (a LUN: the target enforces the reservation), rather than
 * only by the epoch barrier and the write grant. */
bool store_spec_target_fenced(const struct store_spec *s);

/* metastore_open on the store `s` names (metastore_open_dir or
 * metastore_open_lun).  A writer (not read_only) of a LUN with
 * format_unused initialises the LUN first when it holds no store and was
 * never used.  Returns what those return; detail in err.  Blocks on the
 * storage (recovery). */
int store_open(const struct store_spec *s, const struct metastore_options *opts,
               struct metastore **ret, char *err, size_t errlen);
