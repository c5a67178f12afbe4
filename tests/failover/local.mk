# tests/failover/: end-to-end failover tests of the agent with real processes
# (included by Makefile.am).
#
# fo.c is the setup the test and the failover benchmark (bench/local.mk)
# share: a real control plane and tgtd (started by failover.test /
# bench/failover-proc.sh through tests/harness), per node an agent and a
# kubefence-metad as processes, the client workload, the role label watcher
# and the checker.
FO_SOURCES = tests/failover/fo.c tests/failover/fo.h tests/lib/kft_port.c tests/lib/kft_port.h

check_PROGRAMS += tests/failover/check_failover
tests_failover_check_failover_SOURCES = tests/failover/check_failover.c $(FO_SOURCES)
tests_failover_check_failover_CFLAGS = $(TEST_CFLAGS)
tests_failover_check_failover_LDADD = $(KF_LIBS) $(CHECK_LIBS)

TESTS += tests/failover/failover.test
EXTRA_DIST += tests/failover/failover.test
