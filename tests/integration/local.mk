# tests/integration/: the Check programs that run against real things
# (included by Makefile.am).  Each .test starts what its programs need and
# stops it by PID: control-plane.test, fence.test, ops.test and proxy.test a
# real etcd + kube-apiserver with TLS and RBAC (tests/harness/control-plane.sh;
# proxy.test with the fault proxy tests/proxy/kf-faultproxy in between);
# iscsi.test and lun.test a real tgtd on loopback (tests/harness/tgtd.sh);
# metad-lun.test too, and runs kubefence-metad processes on its LUNs, fenced
# with kubefencectl scsi fence, and judges their history with kf-lincheck;
# metad.test runs kubefence-metad and kubefence-meta as real processes on
# 127.0.0.1; reload.test sends SIGHUP to a real kubefence-agent (no API
# server needed) and reads its log; manifests.test validates the rendered manifests against a real
# API server with server-side dry-run (manifests/README.md).
check_PROGRAMS += \
	tests/integration/check_k8s_it \
	tests/integration/check_election_it \
	tests/integration/check_fence_it \
	tests/integration/check_ops_it \
	tests/integration/check_proxy_it \
	tests/integration/check_scsi_it \
	tests/integration/check_lun_it \
	tests/integration/check_metad_it \
	tests/integration/silent_target

# it.c: the control plane's client setup the API tests share
IT_SOURCES = tests/integration/it.c tests/integration/it.h
tests_integration_check_k8s_it_SOURCES = tests/integration/check_k8s_it.c $(IT_SOURCES)
tests_integration_check_k8s_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_k8s_it_LDADD = $(TEST_LIBS)
tests_integration_check_election_it_SOURCES = tests/integration/check_election_it.c $(IT_SOURCES)
tests_integration_check_election_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_election_it_LDADD = $(TEST_LIBS)
tests_integration_check_fence_it_SOURCES = tests/integration/check_fence_it.c $(IT_SOURCES)
tests_integration_check_fence_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_fence_it_LDADD = $(TEST_LIBS)
tests_integration_check_ops_it_SOURCES = tests/integration/check_ops_it.c $(IT_SOURCES)
tests_integration_check_ops_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_ops_it_LDADD = $(TEST_LIBS)
tests_integration_check_proxy_it_SOURCES = tests/integration/check_proxy_it.c $(IT_SOURCES)
tests_integration_check_proxy_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_proxy_it_LDADD = $(TEST_LIBS)
tests_integration_check_scsi_it_SOURCES = tests/integration/check_scsi_it.c
tests_integration_check_scsi_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_scsi_it_LDADD = $(TEST_LIBS)
tests_integration_check_lun_it_SOURCES = tests/integration/check_lun_it.c
tests_integration_check_lun_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_lun_it_LDADD = $(TEST_LIBS)
tests_integration_check_metad_it_SOURCES = tests/integration/check_metad_it.c
tests_integration_check_metad_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_metad_it_LDADD = $(TEST_LIBS)
# a target that accepts TCP and never answers (the deadlines' test)
tests_integration_silent_target_SOURCES = tests/integration/silent_target.c

INTEGRATION_TESTS = \
	tests/integration/control-plane.test \
	tests/integration/fence.test \
	tests/integration/ops.test \
	tests/integration/proxy.test \
	tests/integration/iscsi.test \
	tests/integration/lun.test \
	tests/integration/metad-lun.test \
	tests/integration/metad.test \
	tests/integration/reload.test \
	tests/integration/manifests.test
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS)
