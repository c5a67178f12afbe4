# fencing/: sources, programs and tests of this subsystem (included by Makefile.am).
#
# libkffencing.a holds the scsi-pr fence method and the SCSI/iSCSI module it
# is built on (storage/scsi_pr.c, shared with the raw-LUN journal backend).
# It only uses lib/libkfbase.a, libiscsi and OpenSSL, so its place in
# KF_SUBSYS_LIBS relative to storage's libraries only matters if a storage
# library calls scsi_pr_*: then fencing/libkffencing.a must come after it
# (static archives may be listed twice).
noinst_LIBRARIES += fencing/libkffencing.a
fencing_libkffencing_a_SOURCES = \
	storage/scsi_pr.c storage/scsi_pr.h \
	fencing/fence_scsi.c fencing/fence_scsi.h
KF_SUBSYS_LIBS += fencing/libkffencing.a

KF_CTL_SOURCES += nodeagent/ctl_scsi.c

check_PROGRAMS += \
	tests/unit/check_scsi_pr \
	tests/integration/check_scsi_it \
	tests/integration/silent_target

tests_unit_check_scsi_pr_SOURCES = tests/unit/check_scsi_pr.c
tests_unit_check_scsi_pr_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_scsi_pr_LDADD = $(TEST_LIBS)
tests_integration_check_scsi_it_SOURCES = tests/integration/check_scsi_it.c
tests_integration_check_scsi_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_scsi_it_LDADD = $(TEST_LIBS)
tests_integration_silent_target_SOURCES = tests/integration/silent_target.c

# Unit tests run alone; iscsi.test starts a real tgtd (tests/harness/tgtd.sh)
# on loopback and stops it by PID.
TESTS += \
	tests/unit/check_scsi_pr \
	tests/integration/iscsi.test

EXTRA_DIST += tests/integration/iscsi.test fencing/SCSI-PR.md
