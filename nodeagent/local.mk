# nodeagent/: the agent daemon kubefence-agent and the operator CLI
# kubefencectl (included by Makefile.am).  The top layer: it may use every
# library below it.
#
# libkfagent.a: the configuration, the election, the control socket, the
# state machine and the orchestrator, the probe, and the operations surface
# (Prometheus metrics, the HTTP endpoints /healthz, /readyz, /metrics,
# /status, Kubernetes Events).
noinst_LIBRARIES += nodeagent/libkfagent.a
nodeagent_libkfagent_a_SOURCES = \
	nodeagent/agent_conf.c nodeagent/agent_conf.h \
	nodeagent/elector.c nodeagent/elector.h \
	nodeagent/failsafe.c nodeagent/failsafe.h \
	nodeagent/control.c nodeagent/control.h \
	nodeagent/orch_sm.c nodeagent/orch_sm.h \
	nodeagent/orchestrator.c nodeagent/orchestrator.h \
	nodeagent/endpoints.c nodeagent/endpoints.h \
	nodeagent/probe.c nodeagent/probe.h \
	nodeagent/metrics.c nodeagent/metrics.h \
	nodeagent/http.c nodeagent/http.h \
	nodeagent/events.c nodeagent/events.h

sbin_PROGRAMS += nodeagent/kubefence-agent
nodeagent_kubefence_agent_SOURCES = nodeagent/main.c
nodeagent_kubefence_agent_LDADD = $(KF_LIBS)

# The operator CLI: one ctl_*.c per subcommand (ctl.h), in libkfctl.a,
# which its tests link too (KF_CTL_LIBS).
noinst_LIBRARIES += nodeagent/libkfctl.a
nodeagent_libkfctl_a_SOURCES = nodeagent/ctl.h \
	nodeagent/ctl_scsi.c nodeagent/ctl_journal.c nodeagent/ctl_fence.c \
	nodeagent/ctl_status.c
KF_CTL_LIBS = nodeagent/libkfctl.a $(KF_LIBS)

sbin_PROGRAMS += nodeagent/kubefencectl
nodeagent_kubefencectl_SOURCES = nodeagent/kubefencectl.c
nodeagent_kubefencectl_LDADD = $(KF_CTL_LIBS)
