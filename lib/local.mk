# lib/: generic code (included by Makefile.am); knows nothing of fencing,
# storage or the agent, and includes only its own headers.
noinst_LIBRARIES += lib/libkfbase.a
lib_libkfbase_a_SOURCES = \
	lib/log.c lib/log.h \
	lib/clock.c lib/clock.h \
	lib/util.c lib/util.h \
	lib/crc32c.c lib/crc32c.h \
	lib/conf.c lib/conf.h \
	lib/kubeconfig.c lib/kubeconfig.h \
	lib/k8s.c lib/k8s.h \
	lib/lease.c lib/lease.h \
	lib/failpoint.c lib/failpoint.h lib/failpoint_table.h \
	lib/history.c lib/history.h \
	lib/ctlproto.c lib/ctlproto.h \
	lib/fsproto.c lib/fsproto.h
