# bench/: the benchmarks (included by Makefile.am); each prints JSON and
# writes bench/results/NAME.json, and none asserts timing.
check_PROGRAMS += bench/recovery bench/failover-proc bench/outage-proc bench/lincheck-bench

bench_recovery_SOURCES = bench/recovery.c
bench_recovery_LDADD = $(KF_LIBS)
# the failover setup of tests/failover/local.mk; fo_fail.c is how both
# benchmarks fail
bench_failover_proc_SOURCES = bench/failover.c bench/fo_fail.c
bench_failover_proc_LDADD = $(FO_LIBS)
bench_outage_proc_SOURCES = bench/outage.c bench/fo_fail.c
bench_outage_proc_LDADD = $(FO_LIBS)
# the checker of tests/lincheck/local.mk
bench_lincheck_bench_SOURCES = bench/lincheck.c
bench_lincheck_bench_LDADD = $(LINCHECK_LIBS) $(LIBS)

EXTRA_DIST += bench/README.md bench/failover-proc.sh bench/failover-lab.sh bench/nemesis.sh \
	bench/single-replica-lab.sh bench/lab-bench.sh bench/results/single-replica-lab.json \
	bench/results/lincheck.json bench/results/nemesis.json bench/results/failover-lab.json \
	bench/results/api-outage.json bench/results/api-outage-demote.json \
	bench/results/api-outage-failsafe.json bench/results/recovery.json \
	bench/results/failover-proc.json bench/results/failover-proc-sigstop.json \
	bench/rolling-update-lab.sh bench/sigstop-lab.sh bench/results/failover-lab-sigstop.json \
	bench/results/rolling-update-lab.json bench/restarts-lab.sh \
	bench/results/restarts-lab.json

# `make bench`: recovery speed and put latency; writes
# bench/results/recovery.json.
.PHONY: bench
bench: bench/recovery
	@mkdir -p $(builddir)/bench/results
	$(AM_V_GEN)bench/recovery --out $(builddir)/bench/results/recovery.json

# `make bench-failover`: >= 20 kill -9 of the master metad with real
# processes; prints and writes bench/results/failover-proc.json, with the
# verdict of kf-lincheck on the run's history (built first when
# tests/lincheck/local.mk provides it).  BENCH_FAILOVER_ARGS, e.g. "-n 40".
.PHONY: bench-failover
bench-failover: bench/failover-proc nodeagent/kubefence-agent nodeagent/kubefencectl \
		storage/metad/kubefence-metad \
		$(filter tests/lincheck/kf-lincheck$(EXEEXT),$(check_PROGRAMS))
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/failover-proc.sh --out $(abs_builddir)/bench/results/failover-proc.json $(BENCH_FAILOVER_ARGS)

# `make bench-outage`: 60 s API server outages (held, 503, only the leader
# cut off) with agent.api_outage = ride-through, then the same with demote,
# then on the directory store with failsafe.enabled; writes
# bench/results/api-outage.json, api-outage-demote.json and
# api-outage-failsafe.json.
# BENCH_OUTAGE_ARGS, e.g. "--seconds 20".
.PHONY: bench-outage
bench-outage: bench/outage-proc nodeagent/kubefence-agent nodeagent/kubefencectl \
		storage/metad/kubefence-metad tests/proxy/kf-faultproxy \
		$(filter tests/lincheck/kf-lincheck$(EXEEXT),$(check_PROGRAMS))
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' BENCH_PROG=outage-proc \
		bash $(srcdir)/bench/failover-proc.sh --out $(abs_builddir)/bench/results/api-outage.json $(BENCH_OUTAGE_ARGS)
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' BENCH_PROG=outage-proc \
		bash $(srcdir)/bench/failover-proc.sh --mode demote --out $(abs_builddir)/bench/results/api-outage-demote.json $(BENCH_OUTAGE_ARGS)
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' BENCH_PROG=outage-proc \
		bash $(srcdir)/bench/failover-proc.sh --mode failsafe --out $(abs_builddir)/bench/results/api-outage-failsafe.json $(BENCH_OUTAGE_ARGS)

# `make bench-lincheck`: generate a linearizable history of 10^6 operations
# with the real writer, then time loading and checking it; writes
# bench/results/lincheck.json.  BENCH_LINCHECK_ARGS, e.g.
# "-n 2000000 -c 32".
.PHONY: bench-lincheck
bench-lincheck: bench/lincheck-bench
	@mkdir -p $(builddir)/bench/results
	bench/lincheck-bench --out $(abs_builddir)/bench/results/lincheck.json $(BENCH_LINCHECK_ARGS)

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

# `make bench-single-replica`: manifests/examples/single-replica in the
# lab (one MetaService pod): node freezes and container kills with
# kubefence, then the same without it (no agents: the pod stays on the
# frozen node); writes bench/results/single-replica-lab.json.  Never
# asserts timing.  BENCH_SINGLE_ARGS, e.g. "--freezes 5 --window 180".
.PHONY: bench-single-replica
bench-single-replica: tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
		nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/single-replica-lab.sh --out $(abs_builddir)/bench/results/single-replica-lab.json $(BENCH_SINGLE_ARGS)

# `make bench-rolling-update`: rolling updates of the agent DaemonSet in
# the lab, with agent.on_sigterm = handover (the lab's), then = keep
# (same-node succession through agent.lock_file), then keep with
# agent.restart_grace_ms (the parting renewal): failovers (new terms of
# the Lease), successions, the longest pause in acknowledged writes; writes
# bench/results/rolling-update-lab.json.  Never asserts timing.
# BENCH_ROLLING_ARGS, e.g. "--rollouts 5".
.PHONY: bench-rolling-update
bench-rolling-update: tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
		nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/rolling-update-lab.sh --out $(abs_builddir)/bench/results/rolling-update-lab.json $(BENCH_ROLLING_ARGS)

# `make bench-lab-sigstop`: SIGSTOP of the master MetaService in the lab
# (its socket stays open: only the PING/PONG exchange finds it hung) with
# the lab's service.heartbeat_timeout_ms and with 300 ms, and a quiet
# period for each that counts spurious hung-service kills; writes
# bench/results/failover-lab-sigstop.json.  Never asserts timing.
# BENCH_SIGSTOP_ARGS, e.g. "--sigstops 40 --timeouts 'lab 800 600'".
.PHONY: bench-lab-sigstop
bench-lab-sigstop: tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
		nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/sigstop-lab.sh --out $(abs_builddir)/bench/results/failover-lab-sigstop.json $(BENCH_SIGSTOP_ARGS)

# `make bench-lab-restarts`: restarts that should cost no failover, in the
# lab: the leader's agent killed (restarted at once by its kubelet, and
# again within its CrashLoopBackOff), tgtd restarted (reservations lost);
# writes bench/results/restarts-lab.json.  Never asserts timing.
# BENCH_RESTARTS_ARGS, e.g. "--agent-kills 10 --tgtd-restarts 10".
.PHONY: bench-lab-restarts
bench-lab-restarts: tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
		nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
	@mkdir -p $(builddir)/bench/results
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/restarts-lab.sh --out $(abs_builddir)/bench/results/restarts-lab.json $(BENCH_RESTARTS_ARGS)

# `make nemesis`: the nemesis campaign (bench/nemesis.sh, docs/nemesis.md):
# every fault kind, clock jumps included, until 200 faults; writes
# bench/results/nemesis.json and keeps its logs in bench/nemesis.logs.
# NEMESIS_ARGS, e.g. "--seed 7 --faults 300".  It needs root and the
# machine's only lab (never beside e2e.test or lab-smoke.test).
.PHONY: nemesis
nemesis: $(NEMESIS_DEPS)
	@mkdir -p $(builddir)/bench/results
	-test -x tests/proxy/kf-faultproxy || $(MAKE) $(AM_MAKEFLAGS) tests/proxy/kf-faultproxy
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/bench/nemesis.sh --out $(abs_builddir)/bench/results/nemesis.json $(NEMESIS_ARGS)
