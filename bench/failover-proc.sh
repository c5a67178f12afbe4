#!/usr/bin/env bash
# The failover benchmark with real processes (make bench-failover): starts a
# real control plane (tests/harness/control-plane.sh) and tgtd
# (tests/harness/tgtd.sh), runs bench/failover-proc in them, and stops both
# by PID in the trap.  Arguments go to failover-proc (-n KILLS, --out FILE),
# or to the program BENCH_PROG names (outage-proc).
set -u
: "${top_srcdir:?}" "${top_builddir:?}"
cp_harness="$top_srcdir/tests/harness/control-plane.sh"
tgt_harness="$top_srcdir/tests/harness/tgtd.sh"
dir=$(mktemp -d /tmp/kubefence-bench-failover.XXXXXX)
rc=0
cleanup() {
	bash "$tgt_harness" stop "$dir/tgt" || true
	bash "$cp_harness" stop "$dir/cp"
	if [ "$rc" = 0 ]; then
		rm -rf "$dir"
	else
		echo "bench-failover: logs kept in $dir" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'rc=1; exit 1' INT TERM
command -v tgtd >/dev/null || { echo "bench-failover: tgtd is missing (apt-get install tgt)" >&2; rc=1; exit 1; }
bash "$cp_harness" start "$dir/cp" || { rc=1; exit 1; }
bash "$tgt_harness" start "$dir/tgt" --luns 2 --size 128 || { rc=1; exit 1; }
# shellcheck disable=SC1091
. "$dir/cp/env"
# shellcheck disable=SC1091
. "$dir/tgt/tgt.env"
export KF_IT_AGENT="$top_builddir/nodeagent/kubefence-agent"
export KF_METAD="$top_builddir/storage/metad/kubefence-metad"
export KF_IT_CTL="$top_builddir/nodeagent/kubefencectl"
# the history checker; a missing one fails the run under CI=true
export KF_LINCHECK="$top_builddir/tests/lincheck/kf-lincheck"
export KF_FAULTPROXY="$top_builddir/tests/proxy/kf-faultproxy"
export KF_TGT_DIR="$dir/tgt"
# BENCH_PROG: failover-proc (default) or outage-proc
"$top_builddir/bench/${BENCH_PROG:-failover-proc}" "$@" || rc=1
exit $rc
