# tests/lincheck/: the history checker kf-lincheck (included by Makefile.am).
#
# libkflincheck.a (lincheck.c) is the pure checker (loader, per-key search,
# counterexamples), linked into kf-lincheck, its unit test
# (tests/unit/local.mk) and the benchmark (bench/local.mk).  kf-lincheck is
# built for `make check` like the other test programs; `make
# tests/lincheck/kf-lincheck` builds it alone.
check_LIBRARIES += tests/lincheck/libkflincheck.a
tests_lincheck_libkflincheck_a_SOURCES = tests/lincheck/lincheck.c tests/lincheck/lincheck.h
LINCHECK_LIBS = tests/lincheck/libkflincheck.a lib/libkfbase.a

check_PROGRAMS += tests/lincheck/kf-lincheck
tests_lincheck_kf_lincheck_SOURCES = tests/lincheck/main.c
tests_lincheck_kf_lincheck_LDADD = $(LINCHECK_LIBS) $(LIBS)
