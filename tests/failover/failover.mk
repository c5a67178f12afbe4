# tests/failover/: end-to-end failover tests of the agent with real processes
# and the failover benchmark (included by Makefile.am).
#
# fo.c is the setup both share: a real control plane and tgtd (started by
# failover.test / bench/failover-proc.sh through tests/harness), per node an
# agent and a kubefence-metad as processes, the client workload, the role
# label watcher and the checker.
FO_SOURCES = tests/failover/fo.c tests/failover/fo.h

check_PROGRAMS += tests/failover/check_failover bench/failover-proc bench/outage-proc

tests_failover_check_failover_SOURCES = tests/failover/check_failover.c $(FO_SOURCES)
tests_failover_check_failover_CFLAGS = $(TEST_CFLAGS) -I$(top_srcdir)/storage/metad
tests_failover_check_failover_LDADD = $(KF_METAD_LIBS) $(CHECK_LIBS)

bench_failover_proc_SOURCES = bench/failover.c $(FO_SOURCES)
bench_failover_proc_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/storage/metad -I$(top_srcdir)/tests/failover
bench_failover_proc_LDADD = $(KF_METAD_LIBS)
bench_outage_proc_SOURCES = bench/outage.c $(FO_SOURCES)
bench_outage_proc_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/storage/metad -I$(top_srcdir)/tests/failover
bench_outage_proc_LDADD = $(KF_METAD_LIBS)

TESTS += tests/failover/failover.test

EXTRA_DIST += tests/failover/failover.test bench/failover-proc.sh

# `make bench-failover`: >= 20 kill -9 of the master metad with real
# processes; prints and writes bench/results/failover-proc.json, with the
# verdict of kf-lincheck on the run's history (built first when
# tests/lincheck/lincheck.mk provides it).  Never asserts timing.
# BENCH_FAILOVER_ARGS, e.g. "-n 40".
.PHONY: bench-failover
bench-failover: bench/failover-proc nodeagent/kubefence-agent nodeagent/kubefencectl \
		storage/metad/kubefence-metad \
		$(filter tests/lincheck/kf-lincheck$(EXEEXT),$(check_PROGRAMS))
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/failover-proc.sh --out $(abs_builddir)/bench/results/failover-proc.json $(BENCH_FAILOVER_ARGS)

# `make bench-outage`: 60 s API server outages (held, 503, only the leader
# cut off) with agent.api_outage = ride-through, then the same with demote;
# writes bench/results/api-outage.json and api-outage-demote.json.
# BENCH_OUTAGE_ARGS, e.g. "--seconds 20".  Never asserts timing.
.PHONY: bench-outage
bench-outage: bench/outage-proc nodeagent/kubefence-agent nodeagent/kubefencectl \
		storage/metad/kubefence-metad tests/proxy/kf-faultproxy \
		$(filter tests/lincheck/kf-lincheck$(EXEEXT),$(check_PROGRAMS))
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' BENCH_PROG=outage-proc \
		bash $(srcdir)/bench/failover-proc.sh --out $(abs_builddir)/bench/results/api-outage.json $(BENCH_OUTAGE_ARGS)
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' BENCH_PROG=outage-proc \
		bash $(srcdir)/bench/failover-proc.sh --mode demote --out $(abs_builddir)/bench/results/api-outage-demote.json $(BENCH_OUTAGE_ARGS)
