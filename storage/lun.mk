# storage/lun.mk: the raw-LUN backend of the metadata store and its
# integration test (included by Makefile.am).
#
# libkflun.a uses both storage/libkfstorage.a (metastore, journal) and
# fencing/libkffencing.a (scsi_pr, fence_scsi), so it must come before both
# on a link line; KF_SUBSYS_LIBS lists it after them, hence the explicit
# order in the test's LDADD.
noinst_LIBRARIES += storage/libkflun.a
KF_SUBSYS_LIBS += storage/libkflun.a
storage_libkflun_a_SOURCES = storage/backend_lun.c storage/backend_lun.h \
	storage/store.c storage/store.h

check_PROGRAMS += tests/integration/check_lun_it
tests_integration_check_lun_it_SOURCES = tests/integration/check_lun_it.c
tests_integration_check_lun_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_lun_it_LDADD = storage/libkflun.a storage/libkfstorage.a \
	fencing/libkffencing.a $(TEST_LIBS)

# lun.test starts a real tgtd (tests/harness/tgtd.sh) and stops it by PID;
# metad-lun.test runs kubefence-metad processes on its LUNs, fenced with
# kubefencectl scsi fence, and judges their history with kf-lincheck.
TESTS += tests/integration/lun.test tests/integration/metad-lun.test
EXTRA_DIST += tests/integration/lun.test tests/integration/metad-lun.test
