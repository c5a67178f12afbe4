/* kft_lun: fixtures for the tests against the real iSCSI target that
 * tests/harness/tgtd.sh starts (iscsi.test, lun.test): its LUNs, sessions on
 * them as a given node, and a LUN wiped of every registration. */
#pragma once

#include "scsi/scsi_pr.h"

/* The first two LUNs of KF_TGT_LUN_URLS (space-separated, as tgtd.sh
 * exports them) into lun1 and lun2; the test fails when the variable is
 * missing (naming `script` to run it through) or holds fewer than two. */
void kft_lun_urls(const char *script, char lun1[SCSI_PR_URL_MAX], char lun2[SCSI_PR_URL_MAX]);

/* Open a session on url as node `node`, with the IQN the product derives
 * for it and up to 5 unit attentions retried; fails the test on error.
 * Blocks up to 5 s.  The caller closes it with scsi_pr_close(). */
struct scsi_pr *kft_lun_open_as(const char *url, const char *node);

/* Leave url without registrations or reservation: register as node
 * "cleaner" and CLEAR.  Fails the test on error; blocks up to 10 s. */
void kft_lun_clear(const char *url);
