# tests/fuzz/: libFuzzer targets built with clang straight from the sources
# and run for 10 s each (included by Makefile.am): run.test the journal
# record decoder (fuzz_record.c), proto.test the MetaService protocol codec
# (fuzz_proto.c).  A missing clang is an error: tests/deps.sh installs it.
TESTS += tests/fuzz/run.test tests/fuzz/proto.test
EXTRA_DIST += tests/fuzz/run.test tests/fuzz/proto.test \
	tests/fuzz/fuzz_record.c tests/fuzz/corpus \
	tests/fuzz/fuzz_proto.c tests/fuzz/corpus-proto
