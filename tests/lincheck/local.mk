# tests/lincheck/: the history checker kf-lincheck (included by Makefile.am).
#
# lincheck.c is the pure checker (loader, per-key search, counterexamples),
# linked into kf-lincheck, its unit test (tests/unit/local.mk) and the
# benchmark (bench/local.mk).  kf-lincheck is built for `make check` like the
# other test programs; `make tests/lincheck/kf-lincheck` builds it alone.
LINCHECK_SOURCES = tests/lincheck/lincheck.c tests/lincheck/lincheck.h

check_PROGRAMS += tests/lincheck/kf-lincheck
tests_lincheck_kf_lincheck_SOURCES = tests/lincheck/main.c $(LINCHECK_SOURCES)
tests_lincheck_kf_lincheck_LDADD = lib/libkfbase.a $(LIBS)
