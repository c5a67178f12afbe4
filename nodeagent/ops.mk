# nodeagent/: the agent's operations surface (included by Makefile.am):
# Prometheus metrics, the HTTP endpoints (/healthz, /readyz, /metrics,
# /status), Kubernetes Events and `kubefencectl status`.
#
# libkfops.a uses lib/libkfbase.a (k8s, log, clock), libmicrohttpd, libcurl
# and cJSON only; nothing else calls into it yet but the agent.
noinst_LIBRARIES += nodeagent/libkfops.a
nodeagent_libkfops_a_SOURCES = \
	nodeagent/metrics.c nodeagent/metrics.h \
	nodeagent/http.c nodeagent/http.h \
	nodeagent/events.c nodeagent/events.h
KF_SUBSYS_LIBS += nodeagent/libkfops.a

KF_CTL_SOURCES += nodeagent/ctl_status.c

check_PROGRAMS += \
	tests/unit/check_metrics \
	tests/integration/check_ops_it

tests_unit_check_metrics_SOURCES = tests/unit/check_metrics.c
tests_unit_check_metrics_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_metrics_LDADD = $(TEST_LIBS)
tests_integration_check_ops_it_SOURCES = tests/integration/check_ops_it.c \
	tests/integration/it.c tests/integration/it.h
tests_integration_check_ops_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_ops_it_LDADD = $(TEST_LIBS)

# Unit tests run alone; ops.test starts the real control plane
# (tests/harness/control-plane.sh) and stops it by PID.
TESTS += \
	tests/unit/check_metrics \
	tests/integration/ops.test

EXTRA_DIST += tests/integration/ops.test

# http.listen read the same by the conf check and the HTTP server.
check_PROGRAMS += tests/unit/check_listen
tests_unit_check_listen_SOURCES = tests/unit/check_listen.c
tests_unit_check_listen_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_listen_LDADD = $(TEST_LIBS)
TESTS += tests/unit/check_listen

# kubefencectl status against /status as the agent builds it.
check_PROGRAMS += tests/unit/check_ctl_status
tests_unit_check_ctl_status_SOURCES = tests/unit/check_ctl_status.c nodeagent/ctl_status.c
tests_unit_check_ctl_status_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_ctl_status_LDADD = $(TEST_LIBS)
TESTS += tests/unit/check_ctl_status
