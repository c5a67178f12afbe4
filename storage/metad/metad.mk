# storage/metad/: the reference MetaService kubefence-metad and its client
# kubefence-meta (included by Makefile.am).
#
# libkfproto.a holds the pure client-protocol codec and the control-socket
# client; the server and both mains link it.  storage/libkfstorage.a is listed
# before $(KF_LIBS) so that its users come before lib/libkfbase.a.
noinst_LIBRARIES += storage/metad/libkfproto.a
storage_metad_libkfproto_a_SOURCES = \
	storage/metad/proto.c storage/metad/proto.h \
	storage/metad/control.c storage/metad/control.h

KF_METAD_LIBS = storage/metad/libkfproto.a storage/libkflun.a storage/libkfstorage.a \
	fencing/libkffencing.a $(KF_LIBS)

bin_PROGRAMS += storage/metad/kubefence-metad storage/metad/kubefence-meta
storage_metad_kubefence_metad_SOURCES = storage/metad/metad.c \
	storage/metad/server.c storage/metad/server.h
storage_metad_kubefence_metad_LDADD = $(KF_METAD_LIBS)
storage_metad_kubefence_meta_SOURCES = storage/metad/meta.c
storage_metad_kubefence_meta_LDADD = $(KF_METAD_LIBS)

# check_proto: the codec alone.  check_metad_it runs both programs as real
# processes on 127.0.0.1 (metad.test passes their paths).  proto.test builds
# tests/fuzz/fuzz_proto.c with clang's libFuzzer and runs it for 10 s
# (a missing clang is an error: tests/deps.sh installs it).
check_PROGRAMS += \
	tests/unit/check_proto \
	tests/integration/check_metad_it

tests_unit_check_proto_SOURCES = tests/unit/check_proto.c
tests_unit_check_proto_CFLAGS = $(TEST_CFLAGS)
tests_unit_check_proto_LDADD = storage/metad/libkfproto.a $(TEST_LIBS)
tests_integration_check_metad_it_SOURCES = tests/integration/check_metad_it.c
tests_integration_check_metad_it_CFLAGS = $(TEST_CFLAGS)
tests_integration_check_metad_it_LDADD = $(KF_TEST_LIB) $(KF_METAD_LIBS) $(CHECK_LIBS)

TESTS += \
	tests/unit/check_proto \
	tests/integration/metad.test \
	tests/fuzz/proto.test

EXTRA_DIST += storage/metad/PROTOCOL.md tests/integration/metad.test tests/fuzz/proto.test \
	tests/fuzz/fuzz_proto.c tests/fuzz/corpus-proto
