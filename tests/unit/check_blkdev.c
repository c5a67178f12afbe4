/* Unit tests of storage/blkdev.c: libblkid refuses to initialise anything
 * that carries a signature (ext4, a partition table, our own superblock),
 * on image files and on real loop devices, and verifies the device under a
 * mount.  Loop devices are attached with losetup and always detached by the
 * name losetup returned (the unchecked teardown runs even when a test
 * fails, reading the names the test recorded).
 *
 * Built twice: check_blkdev runs the tests any user can run (image files,
 * /proc); check_blkdev_loop (KF_BLKDEV_LOOP) the loop-device ones, which
 * need root and mount(2).  Where those cannot run, check_blkdev_loop says
 * why and exits 77 (a skip; 99 under CI=true, where they must run) before
 * printing a Check summary, so that tests/run.sh counts the skip. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/blkdev.h"
#include "tests/lib/kftest.h"

static char tmpdir[64];
static char loops_file[300];
#ifdef KF_BLKDEV_LOOP
/* Where a forked test writes why it could not run (read by main). */
static char skip_file[64];
#endif

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void run(const char *cmd)
{
	ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

static void make_image(const char *path, int mib)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "truncate -s %dM '%s'", mib, path);
	run(cmd);
}

#ifdef KF_BLKDEV_LOOP
/* Attach a loop device; its name is recorded for the teardown. */
static void loop_attach(const char *img, char *dev, size_t len)
{
	char cmd[600];
	FILE *p, *f;

	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s'", img);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(dev, (int)len, p));
	ck_assert_int_eq(pclose(p), 0);
	dev[strcspn(dev, "\n")] = '\0';
	f = fopen(loops_file, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", dev);
	fclose(f);
}

/* Record why this test cannot run here; main reports it as a skip. */
static void skip_test(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void skip_test(const char *fmt, ...)
{
	FILE *f = fopen(skip_file, "a");
	va_list ap;

	ck_assert_ptr_nonnull(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}
#endif

static void unchecked_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kf-blkdev-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(loops_file, sizeof(loops_file), "%s/loops", tmpdir);
}

static void unchecked_teardown(void)
{
	FILE *f = fopen(loops_file, "r");
	char dev[128], cmd[300], mnt[300];

	snprintf(mnt, sizeof(mnt), "%s/mnt", tmpdir);
	(void)umount2(mnt, MNT_DETACH);
	while (f && fgets(dev, sizeof(dev), f)) {
		dev[strcspn(dev, "\n")] = '\0';
		snprintf(cmd, sizeof(cmd), "losetup -d '%s' 2>/dev/null", dev);
		if (system(cmd) != 0)
			fprintf(stderr, "could not detach %s\n", dev);
	}
	if (f)
		fclose(f);
	(void)nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

#ifndef KF_BLKDEV_LOOP
START_TEST(image_blank_accepted)
{
	char img[300], err[512];

	snprintf(img, sizeof(img), "%s/blank.img", tmpdir);
	make_image(img, 16);
	ck_assert_int_eq(blkdev_check_blank(img, false, err, sizeof(err)), 0);
}
END_TEST

START_TEST(image_ext4_refused)
{
	char img[300], err[512] = "", cmd[600];

	snprintf(img, sizeof(img), "%s/ext4.img", tmpdir);
	make_image(img, 16);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -L kfmeta '%s'", img);
	run(cmd);
	ck_assert_int_eq(blkdev_check_blank(img, false, err, sizeof(err)), -EEXIST);
	ck_assert_msg(strstr(err, "ext4 filesystem, UUID "), "message: %s", err);
	ck_assert_ptr_nonnull(strstr(err, "LABEL kfmeta"));
	ck_assert_int_eq(blkdev_check_blank(img, true, err, sizeof(err)), 0);
}
END_TEST

START_TEST(image_partition_table_refused)
{
	char img[300], err[512] = "", cmd[600];

	snprintf(img, sizeof(img), "%s/pt.img", tmpdir);
	make_image(img, 16);
	snprintf(cmd, sizeof(cmd), "echo 'label: gpt' | sfdisk -q '%s' >/dev/null 2>&1", img);
	if (system(cmd) != 0) {
		/* no sfdisk: write a minimal MBR signature with one partition */
		FILE *f = fopen(img, "r+b");
		unsigned char mbr[512] = {0};

		mbr[446 + 4] = 0x83;
		mbr[446 + 8] = 1;
		mbr[446 + 12] = 0x40;
		mbr[510] = 0x55;
		mbr[511] = 0xAA;
		ck_assert_ptr_nonnull(f);
		fwrite(mbr, 1, sizeof(mbr), f);
		fclose(f);
	}
	ck_assert_int_eq(blkdev_check_blank(img, false, err, sizeof(err)), -EEXIST);
	ck_assert_msg(strstr(err, "partition table"), "message: %s", err);
}
END_TEST

START_TEST(image_own_journal_recognised)
{
	char img[300], err[512] = "";
	FILE *f;

	snprintf(img, sizeof(img), "%s/kf.img", tmpdir);
	make_image(img, 4);
	f = fopen(img, "r+b");
	ck_assert_ptr_nonnull(f);
	fwrite(BLKDEV_KF_MAGIC, 1, BLKDEV_KF_MAGIC_LEN, f);
	fclose(f);
	ck_assert_int_eq(blkdev_check_blank(img, false, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, "already a kubefence journal"));
}
END_TEST

START_TEST(missing_device)
{
	char err[512];

	ck_assert_int_eq(blkdev_check_blank("/nonexistent/dev", false, err, sizeof(err)), -ENOENT);
}
END_TEST

START_TEST(verify_mount_not_block)
{
	char err[512] = "";
	struct blkdev_info info;

	/* /proc is never on a block device */
	ck_assert_int_eq(blkdev_verify_mount("/proc", NULL, NULL, &info, err, sizeof(err)), 0);
	ck_assert_int_eq(blkdev_verify_mount("/proc", "1234-5678", NULL, &info, err, sizeof(err)),
	                 -ENOTBLK);
	ck_assert_ptr_nonnull(strstr(err, "not on a block device"));
	ck_assert_int_eq(blkdev_verify_mount("/nonexistent", NULL, NULL, &info, err, sizeof(err)),
	                 -ENOENT);
}
END_TEST

#else
START_TEST(loop_device_blank_then_ext4)
{
	char img[300], dev[128], err[512] = "", cmd[600];

	snprintf(img, sizeof(img), "%s/loop.img", tmpdir);
	make_image(img, 32);
	loop_attach(img, dev, sizeof(dev));
	ck_assert_int_eq(blkdev_check_blank(dev, false, err, sizeof(err)), 0);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F '%s'", dev);
	run(cmd);
	ck_assert_int_eq(blkdev_check_blank(dev, false, err, sizeof(err)), -EEXIST);
	ck_assert_msg(strstr(err, "ext4 filesystem"), "message: %s", err);
}
END_TEST

START_TEST(verify_mount_loop_ext4)
{
	char img[300], dev[128], mnt[300], err[512] = "", cmd[700];
	struct blkdev_info info;

	snprintf(img, sizeof(img), "%s/mnt.img", tmpdir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tmpdir);
	make_image(img, 32);
	loop_attach(img, dev, sizeof(dev));
	snprintf(cmd, sizeof(cmd),
	         "mkfs.ext4 -q -F -L kfmeta -U 0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d '%s'", dev);
	run(cmd);
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	if (mount(dev, mnt, "ext4", 0, NULL) != 0) {
		/* e.g. a container without CAP_SYS_ADMIN: not a pass */
		skip_test("verify_mount_loop_ext4: mount '%s' on '%s': %s", dev, mnt,
		          strerror(errno));
		return;
	}
	ck_assert_int_eq(blkdev_verify_mount(mnt, "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", "kfmeta",
	                                     &info, err, sizeof(err)),
	                 0);
	ck_assert_str_eq(info.type, "ext4");
	ck_assert_int_eq(blkdev_verify_mount(mnt, "11111111-2222-3333-4444-555555555555", NULL,
	                                     &info, err, sizeof(err)),
	                 -EMEDIUMTYPE);
	ck_assert_ptr_nonnull(strstr(err, "expected UUID"));
	ck_assert_int_eq(blkdev_verify_mount(mnt, NULL, "other", &info, err, sizeof(err)),
	                 -EMEDIUMTYPE);
	ck_assert_int_eq(umount(mnt), 0);
}
END_TEST

#endif

#ifndef KF_BLKDEV_LOOP
static Suite *blkdev_suite(void)
{
	Suite *s = suite_create("blkdev");
	TCase *tc;

	tc = tcase_create("image_files");
	tcase_add_unchecked_fixture(tc, unchecked_setup, unchecked_teardown);
	tcase_add_test(tc, image_blank_accepted);
	tcase_add_test(tc, image_ext4_refused);
	tcase_add_test(tc, image_partition_table_refused);
	tcase_add_test(tc, image_own_journal_recognised);
	tcase_add_test(tc, missing_device);
	suite_add_tcase(s, tc);

	tc = tcase_create("mount");
	tcase_add_test(tc, verify_mount_not_block);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(blkdev_suite(), NULL);
}
#else
/* Loop devices need root (a missing losetup or mkfs.ext4 there fails the
 * test, never skips it). */
static Suite *blkdev_loop_suite(void)
{
	Suite *s = suite_create("blkdev_loop");
	TCase *tc = tcase_create("loop_devices");

	tcase_add_unchecked_fixture(tc, unchecked_setup, unchecked_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, loop_device_blank_then_ext4);
	tcase_add_test(tc, verify_mount_loop_ext4);
	suite_add_tcase(s, tc);
	return s;
}

/* As tests/e2e/lib.sh's e2e_skip: 77, or 99 under CI=true. */
static int skip(const char *why)
{
	const char *ci = getenv("CI");

	if (ci && strcmp(ci, "true") == 0) {
		printf("ERROR: %s (CI must run the loop-device tests)\n", why);
		return 99;
	}
	printf("SKIP: %s\n", why);
	return 77;
}

int main(void)
{
	SRunner *sr;
	char why[1024] = "";
	ssize_t n = 0;
	int fd, failed;

	if (geteuid() != 0)
		return skip("loop device tests need root (losetup, mount)");
	snprintf(skip_file, sizeof(skip_file), "/tmp/kf-blkdev-skip-XXXXXX");
	fd = mkstemp(skip_file);
	if (fd < 0) {
		perror("mkstemp");
		return 99;
	}
	sr = srunner_create(blkdev_loop_suite());
	/* Silent, then printed: a skip must not leave a Check summary. */
	srunner_run_all(sr, CK_SILENT);
	failed = srunner_ntests_failed(sr);
	n = read(fd, why, sizeof(why) - 1);
	close(fd);
	(void)unlink(skip_file);
	if (failed || n <= 0)
		srunner_print(sr, CK_NORMAL);
	srunner_free(sr);
	if (failed)
		return 1;
	if (n > 0) {
		why[strcspn(why, "\n")] = '\0';
		return skip(why);
	}
	return 0;
}
#endif
