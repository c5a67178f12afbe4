# tests/failover/: end-to-end failover tests of the agent with real processes
# (included by Makefile.am).
#
# libkffo.a (fo.c) is the setup the test and the failover benchmarks
# (bench/local.mk) share: a real control plane and tgtd (started by
# failover.test / bench/failover-proc.sh through tests/harness), per node an
# agent and a kubefence-metad as processes, the client workload, the role
# label watcher and the checker.  It needs no Check; FO_LIBS is what a
# program that links it links.
check_LIBRARIES += tests/failover/libkffo.a
tests_failover_libkffo_a_SOURCES = tests/failover/fo.c tests/failover/fo.h
FO_LIBS = tests/failover/libkffo.a $(KF_TEST_LIB) $(KF_LIBS)

check_PROGRAMS += tests/failover/check_failover
tests_failover_check_failover_SOURCES = tests/failover/check_failover.c tests/failover/scen.c \
	tests/failover/scen.h
tests_failover_check_failover_CFLAGS = $(TEST_CFLAGS)
tests_failover_check_failover_LDADD = $(FO_LIBS) $(CHECK_LIBS)

TESTS += tests/failover/failover.test
EXTRA_DIST += tests/failover/failover.test

# failsafe.enabled with real processes: the same setup (fo.c), the
# metads on the directory store, both agents in failsafe mode.
check_PROGRAMS += tests/failover/check_failsafe
tests_failover_check_failsafe_SOURCES = tests/failover/check_failsafe.c tests/failover/scen.c \
	tests/failover/scen.h
tests_failover_check_failsafe_CFLAGS = $(TEST_CFLAGS)
tests_failover_check_failsafe_LDADD = $(FO_LIBS) $(CHECK_LIBS)

TESTS += tests/failover/failsafe.test
EXTRA_DIST += tests/failover/failsafe.test
