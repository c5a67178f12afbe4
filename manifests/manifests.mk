# manifests/: the Kubernetes manifests (included by Makefile.am).
# manifests.test validates the rendered manifests against a real API server
# with server-side dry-run (see manifests/README.md).
TESTS += tests/integration/manifests.test
EXTRA_DIST += tests/integration/manifests.test
# manifests/monitoring/: the Prometheus rules (promtool check and unit tests),
# the PrometheusRule generated from them and the Grafana dashboard, against
# the metrics nodeagent/metrics.c registers.
TESTS += tests/monitoring.test
EXTRA_DIST += tests/monitoring.test
