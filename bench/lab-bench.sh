# The preamble of the lab benchmarks (sourced after tests/e2e/lib.sh):
# refuse a lab already up, exit 2 where the machine cannot run one
# (e2e_init, which sets WORK), take the lab down and remove WORK on exit;
# die() and ms().
if lab_is_up; then
	echo "bench: a lab is already up (only one fits on a machine): lab/lab.sh down first" >&2
	exit 2
fi
e2e_skip() {
	echo "bench: cannot run: $*" >&2
	exit 2
}
e2e_init
cleanup() {
	local rc=$?
	e2e_cleanup
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() {
	echo "bench: $*" >&2
	exit 1
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (a-b)/1000}'; } # US_A US_B: (a-b) in ms
