#!/usr/bin/env bash
# Run every kubefence test on this machine (Debian, as root):
#   1. install the Debian packages that are missing (tests/deps.sh);
#   2. build the Kubernetes server binaries once, cached (lab/k8s-build.sh);
#   3. build kubefence with warnings as errors and run `make check`: unit
#      tests and the integration tests against a real etcd + kube-apiserver;
#   4. build again with ASan + UBSan and run the unit tests there too.
# The last line is the summary: "tests: N passed, N failed, N skipped"
# (tests/summary.sh; a skip under CI=true counts as a failure too).
set -uo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
. tests/deps.sh
kf_install_deps || exit 1
# k8s-build.sh prints where the binaries are; the tests use that kubectl
# when the machine has no newer one (tests/integration/manifests.test).
if ! KUBEFENCE_K8S_BIN=$(bash lab/k8s-build.sh) || [ ! -x "$KUBEFENCE_K8S_BIN/kubectl" ]; then
	echo "tests: cannot build the Kubernetes binaries" >&2
	exit 1
fi
export KUBEFENCE_K8S_BIN
echo "== Kubernetes binaries: $KUBEFENCE_K8S_BIN"

JOBS=$(nproc 2>/dev/null || echo 2)
status=0
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
	./autogen.sh >/dev/null 2>&1 || { echo "tests: autogen.sh failed" >&2; exit 1; }

build() { # DIR CONFIGURE-ARGS...
	local dir=$1
	shift
	mkdir -p "$dir"
	(cd "$dir" && "$TOP/configure" -q "$@" >configure.out 2>&1) ||
		{ cat "$dir/configure.out" >&2; return 1; }
	make -s -C "$dir" -j"$JOBS" >"$dir/make.out" 2>&1 ||
		{ cat "$dir/make.out" >&2; return 1; }
	make -s -C "$dir" -j"$JOBS" check TESTS= >>"$dir/make.out" 2>&1 ||
		{ cat "$dir/make.out" >&2; return 1; }
}

check() { # DIR [TESTS]
	local dir=$1
	shift
	# Serial on purpose: the integration tests measure takeover times.
	make -C "$dir" check "$@" 2>&1 | grep -E '^(PASS|FAIL|ERROR|XFAIL|XPASS|SKIP):|^# (TOTAL|PASS|FAIL|ERROR|SKIP)' || true
	local failed said
	failed=$(find "$dir/tests" -name '*.trs' -exec grep -lE '^:test-result: (FAIL|ERROR)' {} + 2>/dev/null)
	if [ -n "$failed" ]; then
		for t in $failed; do
			echo "----- ${t%.trs}.log" >&2
			tail -60 "${t%.trs}.log" >&2
			# what the test said went wrong, wherever it is in the log
			# (a test's last lines can be its clients' output)
			said=$(grep -m20 -E '^FAIL: |:[FE]:' "${t%.trs}.log") &&
				printf '%s\n%s\n' "----- ${t%.trs}.log: its failures" "$said" >&2
		done
		return 1
	fi
}

echo "== plain build (-Werror): unit + integration tests"
if build _build/plain --enable-werror; then
	check _build/plain || status=1
else
	status=1
fi

echo "== ASan + UBSan build: unit tests"
if build _build/asan --enable-werror --enable-sanitizers; then
	# every unit test program that was built
	units=$(cd _build/asan && find tests/unit -maxdepth 1 -type f -executable -name 'check_*' | sort | tr '\n' ' ')
	check _build/asan TESTS="$units" || status=1
else
	status=1
fi

grep -h "^measured:" _build/plain/tests/*/*.log 2>/dev/null
# Count what the test drivers wrote in both builds: the .trs files and the
# TAP file of every Check program (tests/summary.sh says how); its last line
# is the summary, and a failed build fails the run.
if [ "$status" = 0 ]; then
	bash tests/summary.sh _build/plain _build/asan
else
	bash tests/summary.sh --build-failed _build/plain _build/asan
fi
