# tests/unit/: one Check program per module (included by Makefile.am); they
# run alone, without a network or a control plane.  conf/ holds the good and
# bad configuration files of check_conf, data/ the recorded API answers and
# certificates of check_k8s.
UNIT_TESTS = \
	tests/unit/check_failpoint \
	tests/unit/check_conf \
	tests/unit/check_k8s \
	tests/unit/check_lease \
	tests/unit/check_control \
	tests/unit/check_ctlproto \
	tests/unit/check_failsafe \
	tests/unit/check_probe \
	tests/unit/check_journal \
	tests/unit/check_index \
	tests/unit/check_metastore \
	tests/unit/check_blkdev \
	tests/unit/check_scsi_pr \
	tests/unit/check_pipeline \
	tests/unit/check_selffence \
	tests/unit/check_metrics \
	tests/unit/check_listen \
	tests/unit/check_proto \
	tests/unit/check_history \
	tests/unit/check_orch_sm \
	tests/unit/check_orch_faults \
	tests/unit/check_endpoints \
	tests/unit/check_blkdev_loop \
	tests/unit/check_ctl_status \
	tests/unit/check_lincheck
check_PROGRAMS += $(UNIT_TESTS)

tests_unit_check_failpoint_SOURCES = tests/unit/check_failpoint.c
tests_unit_check_failpoint_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_failpoint_LDADD = $(TEST_LIBS)
tests_unit_check_conf_SOURCES = tests/unit/check_conf.c
tests_unit_check_conf_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_conf_LDADD = $(TEST_LIBS)
tests_unit_check_k8s_SOURCES = tests/unit/check_k8s.c
tests_unit_check_k8s_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_k8s_LDADD = $(TEST_LIBS)
tests_unit_check_lease_SOURCES = tests/unit/check_lease.c
tests_unit_check_lease_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_lease_LDADD = $(TEST_LIBS)
tests_unit_check_control_SOURCES = tests/unit/check_control.c
tests_unit_check_control_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_control_LDADD = $(TEST_LIBS)
tests_unit_check_ctlproto_SOURCES = tests/unit/check_ctlproto.c
tests_unit_check_ctlproto_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_ctlproto_LDADD = $(TEST_LIBS)
tests_unit_check_failsafe_SOURCES = tests/unit/check_failsafe.c
tests_unit_check_failsafe_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_failsafe_LDADD = $(TEST_LIBS)
tests_unit_check_probe_SOURCES = tests/unit/check_probe.c
tests_unit_check_probe_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_probe_LDADD = $(TEST_LIBS)
tests_unit_check_journal_SOURCES = tests/unit/check_journal.c
tests_unit_check_journal_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_journal_LDADD = $(TEST_LIBS)
tests_unit_check_index_SOURCES = tests/unit/check_index.c
tests_unit_check_index_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_index_LDADD = $(TEST_LIBS)
tests_unit_check_metastore_SOURCES = tests/unit/check_metastore.c
tests_unit_check_metastore_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_metastore_LDADD = $(TEST_LIBS)
tests_unit_check_blkdev_SOURCES = tests/unit/check_blkdev.c
tests_unit_check_blkdev_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_blkdev_LDADD = $(TEST_LIBS)
tests_unit_check_scsi_pr_SOURCES = tests/unit/check_scsi_pr.c
tests_unit_check_scsi_pr_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_scsi_pr_LDADD = $(TEST_LIBS)
tests_unit_check_pipeline_SOURCES = tests/unit/check_pipeline.c
tests_unit_check_pipeline_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_pipeline_LDADD = $(TEST_LIBS)
tests_unit_check_selffence_SOURCES = tests/unit/check_selffence.c
tests_unit_check_selffence_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_selffence_LDADD = $(TEST_LIBS)
tests_unit_check_metrics_SOURCES = tests/unit/check_metrics.c
tests_unit_check_metrics_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_metrics_LDADD = $(TEST_LIBS)
tests_unit_check_listen_SOURCES = tests/unit/check_listen.c
tests_unit_check_listen_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_listen_LDADD = $(TEST_LIBS)
tests_unit_check_proto_SOURCES = tests/unit/check_proto.c
tests_unit_check_proto_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_proto_LDADD = $(TEST_LIBS)
tests_unit_check_history_SOURCES = tests/unit/check_history.c
tests_unit_check_history_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_history_LDADD = $(TEST_LIBS)
# the state machine and its faults, both through the same rig
tests_unit_check_endpoints_SOURCES = tests/unit/check_endpoints.c
tests_unit_check_endpoints_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_endpoints_LDADD = $(TEST_LIBS)
tests_unit_check_orch_sm_SOURCES = tests/unit/check_orch_sm.c tests/unit/orch_rig.c tests/unit/orch_rig.h
tests_unit_check_orch_sm_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_orch_sm_LDADD = $(TEST_LIBS)
tests_unit_check_orch_faults_SOURCES = tests/unit/check_orch_faults.c tests/unit/orch_rig.c tests/unit/orch_rig.h
tests_unit_check_orch_faults_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_orch_faults_LDADD = $(TEST_LIBS)
# the loop-device tests of check_blkdev.c: root only, a counted skip elsewhere
tests_unit_check_blkdev_loop_SOURCES = tests/unit/check_blkdev.c
tests_unit_check_blkdev_loop_CFLAGS = $(TEST_CFLAGS) -DKF_BLKDEV_LOOP
tests_unit_check_blkdev_loop_LDADD = $(TEST_LIBS)
# kubefencectl status against /status as the agent builds it
tests_unit_check_ctl_status_SOURCES = tests/unit/check_ctl_status.c
tests_unit_check_ctl_status_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_ctl_status_LDADD = $(KF_TEST_LIB) $(KF_CTL_LIBS) $(CHECK_LIBS)
# the history checker; it also runs kf-lincheck itself (found through
# TEST_BUILDDIR)
tests_unit_check_lincheck_SOURCES = tests/unit/check_lincheck.c
tests_unit_check_lincheck_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_lincheck_LDADD = $(KF_TEST_LIB) tests/lincheck/libkflincheck.a $(KF_LIBS) $(CHECK_LIBS)

TESTS += $(UNIT_TESTS)

EXTRA_DIST += tests/unit/conf tests/unit/data
