#!/usr/bin/env bash
# Run every kubefence test on this machine (Debian, as root):
#   1. install the Debian packages that are missing (tests/deps.sh);
#   2. build the Kubernetes server binaries once, cached (lab/k8s-build.sh);
#   3. build kubefence with warnings as errors and run `make check`: unit
#      tests and the integration tests against a real etcd + kube-apiserver;
#   4. build again with ASan + UBSan and run the unit tests there too.
# The last line is the summary: "tests: N passed, N failed, N skipped"
# (a skip under CI=true counts as a failure too).
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
	local failed
	failed=$(find "$dir/tests" -name '*.trs' -exec grep -lE '^:test-result: (FAIL|ERROR)' {} + 2>/dev/null)
	if [ -n "$failed" ]; then
		for t in $failed; do
			echo "----- ${t%.trs}.log" >&2
			tail -60 "${t%.trs}.log" >&2
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

# Sum the Check results of every test program that ran, in both builds.
passed=0
failed=0
skipped=0
while read -r checks failures errors; do
	passed=$((passed + checks - failures - errors))
	failed=$((failed + failures + errors))
done < <(find _build/plain/tests _build/asan/tests -name '*.log' -exec cat {} + 2>/dev/null |
	sed -nE 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+)$/\1 \2 \3/p')
for t in $(find _build/plain/tests _build/asan/tests -name '*.trs' 2>/dev/null); do
	# a test without a Check summary (a script, or a program that died
	# before printing it) counts as one test
	grep -qE '^[0-9]+%: Checks:' "${t%.trs}.log" 2>/dev/null && continue
	if grep -qE '^:test-result: (FAIL|ERROR)' "$t"; then
		failed=$((failed + 1))
	elif grep -qE '^:test-result: PASS' "$t"; then
		passed=$((passed + 1))
	elif grep -qE '^:test-result: SKIP' "$t"; then
		skipped=$((skipped + 1))
		# a skip says why, in its log; never silently
		echo "skipped: ${t%.trs}: $(grep -m1 -iE 'skip|missing|needs' "${t%.trs}.log" 2>/dev/null || echo 'no reason printed')" >&2
	fi
done
# Check's own skipped cases are not a thing here; a whole test that
# skips is counted above.  CI must not skip anything.
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
	echo "tests: $skipped test(s) skipped under CI=true" >&2
	failed=$((failed + skipped))
fi
[ "$status" = 0 ] || [ "$failed" -gt 0 ] || failed=1
grep -h "^measured:" _build/plain/tests/*/*.log 2>/dev/null
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ "$status" = 0 ]
