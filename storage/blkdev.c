/* blkdev: libblkid probing for blank devices and for the device under a
 * mount; see blkdev.h.  Only libblkid's low-level probing is used (no cache):
 * it reads the device itself, so the answer reflects what is on it now. */
#include "config.h"

#include "storage/blkdev.h"

#include <blkid/blkid.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

static void probe_value(blkid_probe pr, const char *name, char *buf, size_t len)
{
	const char *v = NULL;

	buf[0] = '\0';
	if (blkid_probe_lookup_value(pr, name, &v, NULL) == 0 && v)
		(void)str_copy(buf, len, v);
}

/* Is the kubefence superblock magic at offset 0? */
static int has_kf_magic(const char *path)
{
	char buf[BLKDEV_KF_MAGIC_LEN];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf), 0);
	(void)close(fd);
	return n == (ssize_t)sizeof(buf) && memcmp(buf, BLKDEV_KF_MAGIC, sizeof(buf)) == 0;
}

int blkdev_check_blank(const char *path, bool force, char *err, size_t errlen)
{
	blkid_probe pr = NULL;
	char type[64], uuid[64], label[64], pttype[64], usage[32], what[512];
	int r;

	r = has_kf_magic(path);
	if (r < 0) {
		errbuf_set(err, errlen, "cannot open '%s': %s", path, strerror(-r));
		goto out;
	}
	if (r > 0) {
		snprintf(what, sizeof(what), "already a kubefence journal");
		goto found;
	}
	pr = blkid_new_probe_from_filename(path);
	if (!pr) {
		r = errno ? -errno : -EIO;
		errbuf_set(err, errlen, "cannot probe '%s': %s", path, strerror(-r));
		goto out;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID |
	                                              BLKID_SUBLKS_LABEL | BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
	r = blkid_do_safeprobe(pr);
	if (r == 1) { /* nothing found */
		r = 0;
		goto out;
	}
	if (r == -2) {
		snprintf(what, sizeof(what), "several conflicting signatures");
		goto found;
	}
	if (r < 0) {
		r = -EIO;
		errbuf_set(err, errlen, "probing '%s' failed", path);
		goto out;
	}
	probe_value(pr, "TYPE", type, sizeof(type));
	probe_value(pr, "UUID", uuid, sizeof(uuid));
	probe_value(pr, "LABEL", label, sizeof(label));
	probe_value(pr, "PTTYPE", pttype, sizeof(pttype));
	probe_value(pr, "USAGE", usage, sizeof(usage));
	if (type[0])
		snprintf(what, sizeof(what), "%s %s%s%s%s%s", type,
		         strcmp(usage, "filesystem") == 0 ? "filesystem"
		         : usage[0]                       ? usage
		                                          : "signature",
		         uuid[0] ? ", UUID " : "", uuid, label[0] ? ", LABEL " : "", label);
	else if (pttype[0])
		snprintf(what, sizeof(what), "%s partition table%s%s", pttype,
		         uuid[0] ? ", UUID " : "", uuid);
	else
		snprintf(what, sizeof(what), "an unknown signature");
found:
	if (force) {
		log_warning("'%s' holds %s; overwriting it as forced", path, what);
		r = 0;
		goto out;
	}
	errbuf_set(err, errlen,
	           "'%s' is not blank: it holds %s; refusing to initialise it "
	           "(force to overwrite)",
	           path, what);
	r = -EEXIST;
out:
	if (pr)
		blkid_free_probe(pr);
	return r;
}

/* /sys/dev/block/MAJ:MIN -> /dev/NAME. */
static int devno_to_path(dev_t dev, char *buf, size_t len)
{
	char sys[64], target[PATH_MAX];
	const char *name;
	ssize_t n;
	char *dn;

	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	n = readlink(sys, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	name = strrchr(target, '/');
	name = name ? name + 1 : target;
	if ((size_t)snprintf(buf, len, "/dev/%.200s", name) < len && access(buf, R_OK) == 0)
		return 0;
	dn = blkid_devno_to_devname(dev);
	if (!dn)
		return -ENODEV;
	{
		int r = str_copy(buf, len, dn);

		free(dn);
		return r;
	}
}

int blkdev_verify_mount(const char *dir, const char *expected_uuid, const char *expected_label,
                        struct blkdev_info *ret_info, char *err, size_t errlen)
{
	struct blkdev_info info = {0};
	bool expect = (expected_uuid && *expected_uuid) || (expected_label && *expected_label);
	blkid_probe pr = NULL;
	struct stat st;
	int r;

	if (stat(dir, &st) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "cannot stat '%s': %s", dir, strerror(-r));
		goto out;
	}
	r = devno_to_path(st.st_dev, info.device, sizeof(info.device));
	if (r < 0) {
		if (!expect) {
			r = 0;
			goto done;
		}
		errbuf_set(err, errlen,
		           "'%s' is not on a block device (device %u:%u; tmpfs or overlay?) but "
		           "a volume %s%s%s%s is expected",
		           dir, major(st.st_dev), minor(st.st_dev),
		           expected_uuid && *expected_uuid ? "UUID " : "",
		           expected_uuid && *expected_uuid ? expected_uuid : "",
		           expected_label && *expected_label ? " LABEL " : "",
		           expected_label && *expected_label ? expected_label : "");
		r = -ENOTBLK;
		goto out;
	}
	pr = blkid_new_probe_from_filename(info.device);
	if (!pr) {
		r = errno ? -errno : -EIO;
		errbuf_set(err, errlen, "cannot probe '%s' (under '%s'): %s", info.device, dir,
		           strerror(-r));
		goto out;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID |
	                                              BLKID_SUBLKS_LABEL);
	if (blkid_do_safeprobe(pr) == 0) {
		probe_value(pr, "TYPE", info.type, sizeof(info.type));
		probe_value(pr, "UUID", info.uuid, sizeof(info.uuid));
		probe_value(pr, "LABEL", info.label, sizeof(info.label));
	}
	if (expected_uuid && *expected_uuid && strcasecmp(expected_uuid, info.uuid) != 0) {
		errbuf_set(err, errlen, "'%s' is on '%s' with UUID '%s', expected UUID '%s'", dir,
		           info.device, info.uuid[0] ? info.uuid : "(none)", expected_uuid);
		r = -EMEDIUMTYPE;
		goto out;
	}
	if (expected_label && *expected_label && strcmp(expected_label, info.label) != 0) {
		errbuf_set(err, errlen, "'%s' is on '%s' with LABEL '%s', expected LABEL '%s'", dir,
		           info.device, info.label[0] ? info.label : "(none)", expected_label);
		r = -EMEDIUMTYPE;
		goto out;
	}
done:
	if (ret_info)
		*ret_info = info;
	r = 0;
out:
	if (pr)
		blkid_free_probe(pr);
	return r;
}
