# tests/e2e/: kubefence deployed into the real Kubernetes lab (lab/lab.sh):
# the end-to-end test, the demo's and the benchmark's client (included by
# Makefile.am).  e2e.test needs root, the lab's packages and tgt; without them
# it exits 77 (SKIP) by hand and 99 (ERROR) in CI, and 99 when a lab is
# already up.
check_PROGRAMS += tests/e2e/kf-labclient
tests_e2e_kf_labclient_SOURCES = tests/e2e/labclient.c
tests_e2e_kf_labclient_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/storage/metad
tests_e2e_kf_labclient_LDADD = $(KF_METAD_LIBS)

TESTS += tests/e2e/e2e.test tests/e2e/nemesis.test
EXTRA_DIST += tests/e2e/e2e.test tests/e2e/lib.sh tests/e2e/lab-tgtd.sh \
	lab/demo-lab.sh bench/failover-lab.sh \
	tests/e2e/nemesis.test bench/nemesis.sh bench/results/nemesis.json \
	bench/results/failover-lab.json

# `make bench-lab`: container-kill and node-freeze failover in the lab, and
# the same kill of a single MetaService without kubefence (the baseline);
# writes bench/results/failover-lab.json.  Never asserts timing.
# BENCH_LAB_ARGS, e.g. "--kills 40 --freezes 3".
.PHONY: bench-lab
bench-lab: tests/e2e/kf-labclient nodeagent/kubefence-agent nodeagent/kubefencectl \
		storage/metad/kubefence-metad storage/metad/kubefence-meta
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/failover-lab.sh --out $(abs_builddir)/bench/results/failover-lab.json $(BENCH_LAB_ARGS)

# `make nemesis`: the nemesis campaign (bench/nemesis.sh, docs/nemesis.md):
# every fault kind, clock jumps included, until 200 faults; writes
# bench/results/nemesis.json and keeps its logs in bench/nemesis.logs.
# NEMESIS_ARGS, e.g. "--seed 7 --faults 300".  `make nemesis-short`: the
# short run of tests/e2e/nemesis.test by itself.  Both need root and the
# machine's only lab (never beside e2e.test or lab-smoke.test).
NEMESIS_DEPS = tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
	nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
.PHONY: nemesis nemesis-short
nemesis: $(NEMESIS_DEPS)
	@mkdir -p $(builddir)/bench/results
	-test -x tests/proxy/kf-faultproxy || $(MAKE) $(AM_MAKEFLAGS) tests/proxy/kf-faultproxy
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/nemesis.sh --out $(abs_builddir)/bench/results/nemesis.json $(NEMESIS_ARGS)
nemesis-short: $(NEMESIS_DEPS)
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/tests/e2e/nemesis.test
