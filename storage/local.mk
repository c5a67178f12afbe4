# storage/: sources, programs and tests of this subsystem (included by Makefile.am).
#
# libkfstorage.a: the metadata persistence library (journal format, the
# metadata store and its in-memory index, the directory backend, libblkid
# checks).  lib/crc32c.c is built here because lib/'s source list belongs to
# the top Makefile.am.
noinst_LIBRARIES += storage/libkfstorage.a
KF_SUBSYS_LIBS += storage/libkfstorage.a
storage_libkfstorage_a_SOURCES = \
	lib/crc32c.c lib/crc32c.h \
	storage/journal.c storage/journal.h \
	storage/backend.h storage/backend_dir.c \
	storage/index.c storage/index.h \
	storage/metastore.c storage/metastore.h \
	storage/blkdev.c storage/blkdev.h

KF_CTL_SOURCES += nodeagent/ctl_journal.c

check_PROGRAMS += \
	tests/unit/check_journal \
	tests/unit/check_index \
	tests/unit/check_metastore \
	tests/unit/check_blkdev \
	tests/unit/check_blkdev_loop \
	tests/storage/crash_writer \
	bench/recovery

tests_unit_check_journal_SOURCES = tests/unit/check_journal.c
tests_unit_check_journal_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_journal_LDADD = $(TEST_LIBS)
tests_unit_check_index_SOURCES = tests/unit/check_index.c
tests_unit_check_index_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_index_LDADD = $(TEST_LIBS)
tests_unit_check_metastore_SOURCES = tests/unit/check_metastore.c
tests_unit_check_metastore_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_metastore_LDADD = $(TEST_LIBS)
tests_unit_check_blkdev_SOURCES = tests/unit/check_blkdev.c
tests_unit_check_blkdev_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_blkdev_LDADD = $(TEST_LIBS)
# the loop-device tests of the same file: root only, a counted skip elsewhere
tests_unit_check_blkdev_loop_SOURCES = tests/unit/check_blkdev.c
tests_unit_check_blkdev_loop_CFLAGS = $(TEST_CFLAGS) -DKF_BLKDEV_LOOP
tests_unit_check_blkdev_loop_LDADD = $(TEST_LIBS)
tests_storage_crash_writer_SOURCES = tests/storage/crash_writer.c
tests_storage_crash_writer_LDADD = $(KF_LIBS)
bench_recovery_SOURCES = bench/recovery.c
bench_recovery_LDADD = $(KF_LIBS)

# crash.test SIGKILLs crash_writer at random times and verifies every
# acknowledged write; stale-writer.test runs two kubefence-metad on one
# directory with the older one paused by a fault point inside a snapshot
# commit or inside recovery, and judges the history with kf-lincheck;
# fuzz/run.test builds the libFuzzer target with clang
# (skipped when clang is missing) and runs it for 10 s.
TESTS += \
	tests/unit/check_journal \
	tests/unit/check_index \
	tests/unit/check_metastore \
	tests/unit/check_blkdev \
	tests/unit/check_blkdev_loop \
	tests/storage/crash.test \
	tests/storage/stale-writer.test \
	tests/fuzz/run.test

EXTRA_DIST += storage/FORMAT.md tests/storage/crash.test tests/storage/stale-writer.test \
	tests/fuzz/run.test \
	tests/fuzz/fuzz_record.c tests/fuzz/corpus bench/README.md

# `make bench`: recovery speed and put latency; prints JSON and writes
# bench/results/recovery.json.  Never asserts timing.
.PHONY: bench
bench: bench/recovery
	@mkdir -p $(builddir)/bench/results
	$(AM_V_GEN)bench/recovery --out $(builddir)/bench/results/recovery.json
