# tests/: how `make check` runs the tests, and the checks of the tree itself
# (included by Makefile.am).  Each tests/ directory lists its programs and
# tests in its own local.mk.
TEST_EXTENSIONS = .test
TEST_LOG_COMPILER = bash
# Each test gets a fresh results directory beside its log, TEST.results/,
# where its Check programs write their results as TAP: kft_main() one file
# per run, a program with a main of its own CK_TAP_LOG_FILE_NAME.
# tests/summary.sh counts from these and the .trs files.
AM_TESTS_ENVIRONMENT = \
	top_srcdir='$(abs_top_srcdir)'; top_builddir='$(abs_top_builddir)'; \
	export top_srcdir top_builddir; \
	CK_DEFAULT_TIMEOUT=120; export CK_DEFAULT_TIMEOUT; \
	KF_TEST_RESULTS='$(abs_top_builddir)/$@'; KF_TEST_RESULTS="$${KF_TEST_RESULTS%.log}.results"; \
	rm -rf "$$KF_TEST_RESULTS"; $(MKDIR_P) "$$KF_TEST_RESULTS"; \
	CK_TAP_LOG_FILE_NAME="$$KF_TEST_RESULTS/check.tap"; \
	export KF_TEST_RESULTS CK_TAP_LOG_FILE_NAME;

# format.test: the sources follow .clang-format.  shell.test: every shell
# script parses (bash -n).  layering.test: every #include follows the layers
# (Makefile.am) and is written from the top of the tree, and each local.mk
# lists only its own directory's sources.  monitoring.test: the Prometheus
# rules (promtool check and unit tests), the PrometheusRule generated from
# them and the Grafana dashboard in manifests/monitoring/, against the
# metrics nodeagent/metrics.c registers.
TESTS += tests/format.test tests/shell.test tests/layering.test tests/monitoring.test
EXTRA_DIST += tests/format.test tests/shell.test tests/layering.test tests/monitoring.test tests/harness
