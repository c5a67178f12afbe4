# tests/proxy/: the API fault proxy kf-faultproxy (included by Makefile.am).
#
# kf-faultproxy sits between HTTPS clients and the real kube-apiserver and
# injects faults by rule (docs/fault-proxy.md).  It is a test tool, built
# with `make check` like the other test programs.  It uses lib/libkfbase.a
# (log, clock, util) and OpenSSL; nothing in the product links it.  Its test
# through the real API server is tests/integration/check_proxy_it.
KF_PROXY_SOURCES = \
	tests/proxy/fp_io.c tests/proxy/fp_io.h \
	tests/proxy/fp_http.c tests/proxy/fp_http.h \
	tests/proxy/fp_rules.c tests/proxy/fp_rules.h

check_PROGRAMS += tests/proxy/kf-faultproxy tests/proxy/check_faultproxy

tests_proxy_kf_faultproxy_SOURCES = tests/proxy/faultproxy.c $(KF_PROXY_SOURCES)
tests_proxy_kf_faultproxy_LDADD = lib/libkfbase.a $(OPENSSL_LIBS) $(LIBS)

# The rules and the HTTP head parser, without the network.
tests_proxy_check_faultproxy_SOURCES = tests/proxy/check_faultproxy.c $(KF_PROXY_SOURCES)
tests_proxy_check_faultproxy_CFLAGS = $(TEST_CFLAGS)
tests_proxy_check_faultproxy_LDADD = $(TEST_LIBS)

TESTS += tests/proxy/check_faultproxy
EXTRA_DIST += tests/proxy/mkcert.sh
