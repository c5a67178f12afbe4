#!/usr/bin/env bash
# Count the results of `make check` in one or more build directories from
# what the test drivers wrote, never from the logs' wording:
#   * automake's TEST.trs, one per test: its :test-result: line;
#   * TEST.results/*.tap beside it: the TAP file each Check program of that
#     test wrote (tests/lib/kftest.c, or Check's CK_TAP_LOG_FILE_NAME, both
#     set up in Makefile.am's AM_TESTS_ENVIRONMENT), one "ok"/"not ok" line
#     per Check test.
# A test with TAP files counts their cases; one that failed without a
# failed case among them (a script's own check, a program that died) counts
# one failure more.  A test without TAP files (a script) counts as one.  A
# skipped test counts as one skip whatever its TAP says, and prints why: the
# first line of its log that starts with "SKIP:" (else one that speaks of a
# skip or of what is missing).  Under CI=true a skip also counts as a failure.
#
#   tests/summary.sh [--build-failed] BUILD-DIR...
# --build-failed: a build or a `make check` went wrong, so the run fails
# even when no test result says so (then it counts one failure).
# The last line is "tests: N passed, N failed, N skipped"; exit 0 when
# nothing failed.
set -uo pipefail

build_failed=0
if [ "${1:-}" = --build-failed ]; then
	build_failed=1
	shift
fi
passed=0
failed=0
skipped=0
while IFS= read -r trs; do
	base=${trs%.trs}
	result=$(sed -n 's/^:test-result: *//p' "$trs" | head -1)
	result=${result%% *}
	if [ "$result" = SKIP ]; then
		skipped=$((skipped + 1))
		why=$(grep -m1 '^SKIP:' "$base.log" 2>/dev/null ||
			grep -m1 -iE 'skip|missing|needs' "$base.log" 2>/dev/null ||
			echo 'no reason printed')
		echo "skipped: $base: $why" >&2
		continue
	fi
	ok=0
	notok=0
	taps=0
	for tap in "$base.results"/*.tap; do
		[ -f "$tap" ] || continue
		taps=$((taps + 1))
		ok=$((ok + $(grep -c '^ok ' "$tap")))
		notok=$((notok + $(grep -c '^not ok ' "$tap")))
	done
	case $result in
	PASS | XFAIL) good=1 ;;
	*) good=0 ;; # FAIL, ERROR, XPASS, or no result at all
	esac
	if [ "$taps" -gt 0 ]; then
		passed=$((passed + ok))
		failed=$((failed + notok))
		[ "$good" = 1 ] || [ "$notok" -gt 0 ] || failed=$((failed + 1))
	elif [ "$good" = 1 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done < <(for d in "$@"; do find "$d/tests" -name '*.trs' 2>/dev/null; done | sort)
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
	echo "tests: $skipped test(s) skipped under CI=true" >&2
	failed=$((failed + skipped))
fi
[ "$build_failed" = 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
