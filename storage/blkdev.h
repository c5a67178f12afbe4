/* blkdev: safety checks on the block devices under the metadata store, using
 * libblkid.
 *
 * Before a LUN, block device or image file is initialised as a journal, it
 * must be blank: any filesystem, RAID/LVM member or partition table found on
 * it means it belongs to something else, and writing would destroy it.  For
 * the directory backend, the volume mounted under the data directory is
 * verified against the UUID or LABEL the operator configured, so a wrongly
 * attached PVC is refused instead of being written to. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* First 8 bytes of a kubefence block-device journal (its superblock). */
#define BLKDEV_KF_MAGIC     "KFJRNLv1"
#define BLKDEV_KF_MAGIC_LEN 8

struct blkdev_info {
	char device[256]; /* e.g. /dev/loop3 */
	char type[64];    /* e.g. ext4; empty when none */
	char uuid[64];
	char label[64];
};

/* Probe `path` (block device or image file) for signatures.  Returns 0 when
 * blank; -EEXIST when a foreign signature is found (err names it, e.g. "ext4
 * filesystem, UUID ...") or when it already holds a kubefence journal, unless
 * force is set (then 0, with a warning logged); -ENOENT/-EACCES/-EIO when it
 * cannot be probed.  Blocks on reading the device. */
int blkdev_check_blank(const char *path, bool force, char *err, size_t errlen);

/* Find the block device mounted under `dir` and compare its filesystem UUID
 * and LABEL with the expected ones (NULL or "" = no expectation).  Returns 0
 * (and *ret_info when non-NULL); -EMEDIUMTYPE on a mismatch; -ENOTBLK when
 * an expectation is set but `dir` is not on a block device (tmpfs, overlay);
 * -errno when `dir` cannot be inspected.  Blocks on probing the device. */
int blkdev_verify_mount(const char *dir, const char *expected_uuid, const char *expected_label,
                        struct blkdev_info *ret_info, char *err, size_t errlen);
