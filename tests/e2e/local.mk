# tests/e2e/: kubefence deployed into the real Kubernetes lab (lab/lab.sh):
# the end-to-end test, the demo's and the benchmark's client (included by
# Makefile.am).  e2e.test needs root, the lab's packages and tgt; without them
# it exits 77 (SKIP) by hand and 99 (ERROR) in CI, and 99 when a lab is
# already up.
check_PROGRAMS += tests/e2e/kf-labclient
tests_e2e_kf_labclient_SOURCES = tests/e2e/labclient.c
tests_e2e_kf_labclient_LDADD = $(KF_TEST_LIB) $(KF_LIBS)

TESTS += tests/e2e/e2e.test tests/e2e/nemesis.test
EXTRA_DIST += tests/e2e/e2e.test tests/e2e/lib.sh tests/e2e/lab-tgtd.sh \
	tests/e2e/nemesis.test

# single-replica.test: manifests/examples/single-replica in the lab (one
# MetaService pod; its node frozen, then its container killed).  The same
# needs as e2e.test; about 2 minutes.
TESTS += tests/e2e/single-replica.test
EXTRA_DIST += tests/e2e/single-replica.test tests/e2e/single-replica-lib.sh

# lab-smoke.test: the lab itself (lab/lab.sh).  It needs root and the Debian
# packages containerd, runc, containernetworking-plugins, iptables,
# etcd-server, buildah and mmdebstrap; it exits 77 (SKIP) without them or
# when a lab is already up.
TESTS += tests/e2e/lab-smoke.test
EXTRA_DIST += tests/e2e/lab-smoke.test

# `make nemesis-short`: the short run of tests/e2e/nemesis.test by itself
# (the campaign, `make nemesis`, is in bench/local.mk).  It needs root and
# the machine's only lab (never beside e2e.test or lab-smoke.test).
NEMESIS_DEPS = tests/e2e/kf-labclient tests/lincheck/kf-lincheck nodeagent/kubefence-agent \
	nodeagent/kubefencectl storage/metad/kubefence-metad storage/metad/kubefence-meta
.PHONY: nemesis-short
nemesis-short: $(NEMESIS_DEPS)
	top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
		bash $(srcdir)/tests/e2e/nemesis.test
