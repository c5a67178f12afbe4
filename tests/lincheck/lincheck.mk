# tests/lincheck/: the history checker kf-lincheck (included by Makefile.am).
#
# lincheck.c is the pure checker (loader, per-key search, counterexamples),
# linked into kf-lincheck, its unit test and the benchmark.  kf-lincheck is
# built for `make check` like the other test programs; `make
# tests/lincheck/kf-lincheck` builds it alone.
LINCHECK_SOURCES = tests/lincheck/lincheck.c tests/lincheck/lincheck.h
LINCHECK_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/tests/lincheck

check_PROGRAMS += tests/lincheck/kf-lincheck tests/unit/check_history tests/unit/check_lincheck \
	bench/lincheck-bench

tests_lincheck_kf_lincheck_SOURCES = tests/lincheck/main.c $(LINCHECK_SOURCES)
tests_lincheck_kf_lincheck_CFLAGS = $(LINCHECK_CFLAGS)
tests_lincheck_kf_lincheck_LDADD = lib/libkfbase.a $(LIBS)

tests_unit_check_history_SOURCES = tests/unit/check_history.c
tests_unit_check_history_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_history_LDADD = $(TEST_LIBS)

# check_lincheck also runs kf-lincheck itself (found through TEST_BUILDDIR).
tests_unit_check_lincheck_SOURCES = tests/unit/check_lincheck.c $(LINCHECK_SOURCES)
tests_unit_check_lincheck_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/tests/lincheck
tests_unit_check_lincheck_LDADD = $(TEST_LIBS)

bench_lincheck_bench_SOURCES = bench/lincheck.c $(LINCHECK_SOURCES)
bench_lincheck_bench_CFLAGS = $(LINCHECK_CFLAGS)
bench_lincheck_bench_LDADD = lib/libkfbase.a $(LIBS)

TESTS += tests/unit/check_history tests/unit/check_lincheck

EXTRA_DIST += bench/results/lincheck.json

# `make bench-lincheck`: generate a linearizable history of 10^6 operations
# with the real writer, then time loading and checking it; prints and writes
# bench/results/lincheck.json.  Never asserts timing.  BENCH_LINCHECK_ARGS,
# e.g. "-n 2000000 -c 32".
.PHONY: bench-lincheck
bench-lincheck: bench/lincheck-bench
	@mkdir -p $(builddir)/bench/results
	bench/lincheck-bench --out $(abs_builddir)/bench/results/lincheck.json $(BENCH_LINCHECK_ARGS)
