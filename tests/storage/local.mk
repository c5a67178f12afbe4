# tests/storage/: crash and stale-writer tests of the metadata store
# (included by Makefile.am).  crash.test SIGKILLs crash_writer at random
# times and verifies every acknowledged write; stale-writer.test runs two
# kubefence-metad on one directory with the older one paused by a fault point
# inside a snapshot commit or inside recovery, and judges the history with
# kf-lincheck.
check_PROGRAMS += tests/storage/crash_writer
tests_storage_crash_writer_SOURCES = tests/storage/crash_writer.c
tests_storage_crash_writer_LDADD = $(KF_LIBS)

TESTS += tests/storage/crash.test tests/storage/stale-writer.test
EXTRA_DIST += tests/storage/crash.test tests/storage/stale-writer.test
