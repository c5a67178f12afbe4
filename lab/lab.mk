# lab/: the multi-node Kubernetes lab (lab/lab.sh) and its end-to-end smoke
# test (included by Makefile.am).  The test needs root and the Debian
# packages containerd, runc, containernetworking-plugins, iptables,
# etcd-server, buildah and mmdebstrap; it exits 77 (SKIP) without them or
# when a lab is already up.
# The lab/ directory itself (lab.sh, its libraries in lab/lib/, the templates)
# is distributed whole through Makefile.am's EXTRA_DIST.
TESTS += tests/e2e/lab-smoke.test
EXTRA_DIST += tests/e2e/lab-smoke.test
