/* fence_conf: the settings of fencing — the fence.* keys of the agent's
 * file — as fencing's own struct and key table, so that fencing knows
 * nothing of the agent.  The agent reads its file against the table (with
 * its member's offset added to each row), fills the three settings fencing
 * borrows from the rest of its configuration (this node's name and where
 * the service's pods live), and hands the struct to
 * fence_methods_from_conf() and fence_pipeline_opts_from_conf()
 * (pipeline.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/conf.h"

struct fence_conf {
	/* the fence.* keys; strings owned by whoever loaded them, never NULL */
	char **methods;          /* in order; names of fence_method_names[] */
	char **released_methods; /* also run when the Lease was released */
	int64_t timeout_ms;      /* one method, all attempts */
	int64_t total_timeout_ms;
	int64_t retries;
	int64_t retry_ms;
	char *pvc; /* volume-detach: the PVC in `namespace`; "" = unset */
	bool out_of_service_taint;
	char **scsi_luns;         /* scsi-pr: iscsi:// URLs */
	char *scsi_iqn_prefix;    /* "" = the built-in prefix */
	int64_t scsi_check_ms;    /* registration check interval; 0 = none */
	int64_t scsi_inflight_ms; /* wait after a PREEMPT that cannot abort */

	/* borrowed from the agent's configuration (not fence.* keys) */
	const char *local_node; /* this node: never fenced, acts as scsi-pr initiator */
	const char *namespace;  /* where the service's pods and PVC live */
	const char *selector;   /* label selector of the service's master pod */
};

/* The fence.* keys, offsets into struct fence_conf (see lib/conf.h);
 * none of them is live. */
extern const struct conf_key fence_conf_keys[];
extern const size_t fence_conf_n_keys;

/* The rules between fence.* keys, checked once the file is read (s: the
 * load that filled fc, its keys named as in fence_conf_keys), each problem
 * added to errs at the line of the key to blame:
 *   fence.total_timeout_ms >= fence.timeout_ms (room for one whole method);
 *   volume-detach needs fence.pvc, scsi-pr needs fence.scsi_luns (at
 *   fence.methods);
 *   every method of fence.released_methods is in fence.methods.
 * Keys whose value was rejected are skipped (reported already).  What
 * needs the borrowed settings (pod-delete's selector) is the caller's to
 * check. */
void fence_conf_check(const struct fence_conf *fc, const struct conf_source *s,
                      struct conf_errors *errs);
