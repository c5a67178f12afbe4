# tests/lib/: the suite runner and the fixtures the Check programs share
# (kftest.h; kft_lun.h for the iSCSI tests, kft_meta.h for the MetaService
# protocol), included by Makefile.am.  It may use every library, so it comes
# first on a test's link line.  kft_util.h, kft_port.h and kft_wire.h need
# no Check: the benchmarks and the lab's client link this library too (only
# those objects are taken).
noinst_LIBRARIES += tests/lib/libkftest.a
tests_lib_libkftest_a_SOURCES = \
	tests/lib/kftest.c tests/lib/kftest.h \
	tests/lib/kft_util.c tests/lib/kft_util.h \
	tests/lib/kft_lun.c tests/lib/kft_lun.h \
	tests/lib/kft_meta.c tests/lib/kft_meta.h \
	tests/lib/kft_port.c tests/lib/kft_port.h \
	tests/lib/kft_wire.c tests/lib/kft_wire.h
tests_lib_libkftest_a_CFLAGS = $(TEST_CFLAGS)

TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) \
	-DTEST_SRCDIR='"$(abs_top_srcdir)/tests"' -DTEST_BUILDDIR='"$(abs_top_builddir)"'
KF_TEST_LIB = tests/lib/libkftest.a
TEST_LIBS = $(KF_TEST_LIB) $(KF_LIBS) $(CHECK_LIBS)
