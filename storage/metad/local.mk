# storage/metad/: the reference MetaService kubefence-metad and its client
# kubefence-meta (included by Makefile.am).  It stands on storage/ (and
# through it scsi/ and lib/), never on fencing/ or the agent.
#
# libkfproto.a holds the pure client-protocol codec and the control-socket
# client; the server, both mains and the tests' clients link it.
noinst_LIBRARIES += storage/metad/libkfproto.a
storage_metad_libkfproto_a_SOURCES = \
	storage/metad/proto.c storage/metad/proto.h \
	storage/metad/control.c storage/metad/control.h

bin_PROGRAMS += storage/metad/kubefence-metad storage/metad/kubefence-meta
storage_metad_kubefence_metad_SOURCES = storage/metad/metad.c \
	storage/metad/server.c storage/metad/server.h
storage_metad_kubefence_metad_LDADD = $(KF_LIBS)
storage_metad_kubefence_meta_SOURCES = storage/metad/meta.c
storage_metad_kubefence_meta_LDADD = $(KF_LIBS)

EXTRA_DIST += storage/metad/PROTOCOL.md
