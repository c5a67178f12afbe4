# manifests/: the Kubernetes manifests (included by Makefile.am).
# manifests.test validates the rendered manifests against a real API server
# with server-side dry-run (see manifests/README.md).
TESTS += tests/integration/manifests.test
EXTRA_DIST += tests/integration/manifests.test
