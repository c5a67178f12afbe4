# fencing/: the Kubernetes fence methods, the pipeline and self-fencing (included by Makefile.am).
#
# libkfpipeline.a calls the scsi-pr method of fencing/libkffencing.a (through
# the adapter in pipeline.c), and static archives are searched in order, so
# libkffencing.a is listed again after it.
noinst_LIBRARIES += fencing/libkfpipeline.a
fencing_libkfpipeline_a_SOURCES = \
	fencing/pipeline.c fencing/pipeline.h \
	fencing/fence_pod.c fencing/fence_pod.h \
	fencing/fence_volume.c fencing/fence_volume.h \
	fencing/selffence.c fencing/selffence.h
KF_SUBSYS_LIBS += fencing/libkfpipeline.a fencing/libkffencing.a

KF_CTL_SOURCES += nodeagent/ctl_fence.c nodeagent/ctl_fence.h

check_PROGRAMS += \
	tests/unit/check_pipeline \
	tests/unit/check_selffence \
	tests/integration/check_fence_it

tests_unit_check_pipeline_SOURCES = tests/unit/check_pipeline.c
tests_unit_check_pipeline_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_pipeline_LDADD = $(TEST_LIBS)
tests_unit_check_selffence_SOURCES = tests/unit/check_selffence.c
tests_unit_check_selffence_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_selffence_LDADD = $(TEST_LIBS)
tests_integration_check_fence_it_SOURCES = tests/integration/check_fence_it.c \
	tests/integration/it.c tests/integration/it.h
tests_integration_check_fence_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_fence_it_LDADD = $(TEST_LIBS)

# fence.test starts its own control plane (tests/harness/control-plane.sh)
# and stops it by PID.
TESTS += \
	tests/unit/check_pipeline \
	tests/unit/check_selffence \
	tests/integration/fence.test

EXTRA_DIST += tests/integration/fence.test fencing/README.md
