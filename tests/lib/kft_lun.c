/* kft_lun: the iSCSI LUN fixtures (see kft_lun.h). */
#include "config.h"

#include "tests/lib/kft_lun.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/clock.h"
#include "tests/lib/kftest.h"

#define DEADLINE() (clock_mono_usec() + 5 * USEC_PER_SEC)

void kft_lun_urls(const char *script, char lun1[SCSI_PR_URL_MAX], char lun2[SCSI_PR_URL_MAX])
{
	const char *urls = kft_env("KF_TGT_LUN_URLS", script);
	const char *sp = strchr(urls, ' ');
	char *end;

	ck_assert_msg(sp, "KF_TGT_LUN_URLS needs two LUNs");
	ck_assert_int_lt(sp - urls, SCSI_PR_URL_MAX);
	memcpy(lun1, urls, (size_t)(sp - urls));
	lun1[sp - urls] = 0;
	snprintf(lun2, SCSI_PR_URL_MAX, "%s", sp + 1);
	if ((end = strchr(lun2, ' ')))
		*end = 0;
}

struct scsi_pr *kft_lun_open_as(const char *url, const char *node)
{
	struct scsi_pr_options so = {.ua_retries = 5};
	struct scsi_pr_url u;
	struct scsi_pr *h = NULL;
	char iqn[SCSI_PR_IQN_MAX], err[512];

	ck_assert_int_eq(scsi_pr_url_parse(url, &u, err, sizeof(err)), 0);
	ck_assert_int_eq(scsi_pr_iqn_for_node(NULL, node, iqn, sizeof(iqn)), 0);
	ck_assert_msg(scsi_pr_open(&u, iqn, &so, DEADLINE(), &h, err, sizeof(err)) == 0, "open: %s",
	              err);
	return h;
}

void kft_lun_clear(const char *url)
{
	struct scsi_pr *h = kft_lun_open_as(url, "cleaner");
	uint64_t k;
	char err[512];

	ck_assert_int_eq(scsi_pr_key_for_node("cleaner", &k), 0);
	ck_assert_msg(scsi_pr_register_ignore(h, k, DEADLINE(), err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(scsi_pr_clear(h, k, DEADLINE(), err, sizeof(err)) == 0, "%s", err);
	scsi_pr_close(h);
}
