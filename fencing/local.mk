# fencing/: the fence methods, the pipeline and self-fencing (included by
# Makefile.am).  The `scsi-pr` method runs scsi/'s reservation scheme on
# every LUN; `pod-delete` and `volume-detach` talk to the API through lib/.
# Fencing takes its settings as its own struct (fence_conf.h), filled by the
# agent; it knows nothing of the agent.
noinst_LIBRARIES += fencing/libkffencing.a
fencing_libkffencing_a_SOURCES = \
	fencing/fence_conf.c fencing/fence_conf.h \
	fencing/fence_scsi.c fencing/fence_scsi.h \
	fencing/pipeline.c fencing/pipeline.h \
	fencing/fence_pod.c fencing/fence_pod.h \
	fencing/fence_volume.c fencing/fence_volume.h \
	fencing/selffence.c fencing/selffence.h

EXTRA_DIST += fencing/README.md fencing/SCSI-PR.md
