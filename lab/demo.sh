#!/usr/bin/env bash
# The kubefence demo on this machine (Debian, as root).
#
# Starts a real control plane (etcd + kube-apiserver with TLS and RBAC, on
# loopback), three kubefence agents as node processes contending for one
# Lease, then shows the two failovers that matter:
#   1. kill -9 of the holder: another agent takes over once the Lease expires;
#   2. SIGTERM of the holder: it releases with a reason, a follower takes
#      over at once.
# and prints the timeline of each from the agents' own logs.  Everything it
# starts is stopped at the end, by PID.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
. tests/deps.sh
kf_install_deps
bash lab/k8s-build.sh >/dev/null

BUILD=$TOP/_build/plain
if [ ! -x "$BUILD/nodeagent/kubefence-agent" ] || [ -n "$(find lib nodeagent -newer "$BUILD/nodeagent/kubefence-agent" -name '*.[ch]' | head -1)" ]; then
	echo "demo: building kubefence"
	[ -x configure ] || ./autogen.sh >/dev/null 2>&1
	mkdir -p "$BUILD"
	(cd "$BUILD" && "$TOP/configure" -q && make -s -j"$(nproc)") >/dev/null
fi
AGENT=$BUILD/nodeagent/kubefence-agent

DIR=$(mktemp -d /tmp/kubefence-demo.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	bash tests/harness/control-plane.sh stop "$DIR"
	echo "demo: stopped everything; logs are in $DIR"
}
trap cleanup EXIT

echo "demo: starting etcd and kube-apiserver (TLS, RBAC) on loopback"
bash tests/harness/control-plane.sh start "$DIR" 2>/dev/null
. "$DIR/env"
LEASE=demo

declare -A PID
start_agent() { # NAME KUBECONFIG
	cat >"$DIR/$1.conf" <<-EOF
		node.name = $1
		kube.config = $2
		lease.namespace = $KF_IT_NS
		lease.name = $LEASE
		lease.duration_ms = 4000
		lease.renew_deadline_ms = 3000
		lease.retry_ms = 500
		log.monotonic = true
	EOF
	"$AGENT" --config "$DIR/$1.conf" 2>>"$DIR/$1.log" &
	PID[$1]=$!
	PIDS+=($!)
}

lease_json() {
	curl -fsS --max-time 2 --cacert "$KF_IT_CA" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
		"$KF_IT_SERVER/apis/coordination.k8s.io/v1/namespaces/$KF_IT_NS/leases/$LEASE" 2>/dev/null
}
holder() { lease_json | sed -nE 's/.*"holderIdentity": ?"([^"]*)".*/\1/p' | head -1; }
epoch() { lease_json | sed -nE 's/.*"leaseTransitions": ?([0-9]+).*/\1/p' | head -1; }

wait_holder_not() { # OLD -> prints the new holder
	local h
	for _ in $(seq 1 300); do
		h=$(holder)
		if [ -n "$h" ] && [ "$h" != "$1" ]; then
			echo "$h"
			return 0
		fi
		sleep 0.02
	done
	return 1
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

timeline() { # FROM (epoch seconds): the agents' decisions since then, in order
	local from=$1 f stamp rest t
	for f in "$DIR"/node-*.log; do
		grep -E 'event=|is free|held by|lost the race|handing over' "$f" |
			sed "s/^/$(basename "$f" .log) /"
	done | sort -k2 | while read -r node stamp _mono _level _who _func rest; do
		t=$(date -d "$stamp" +%s.%N)
		awk -v t="$t" -v from="$from" -v node="$node" -v rest="$rest" 'BEGIN {
			if (t >= from - 0.002) printf "  +%6.3f s  %-7s %s\n", t - from, node, rest }'
	done
}

for n in node-a node-b node-c; do
	start_agent "$n" "$KF_IT_AGENT_KUBECONFIG_A"
done
H=$(wait_holder_not "")
echo
echo "demo: three agents started; '$H' holds lease '$KF_IT_NS/$LEASE' with epoch $(epoch)"
sleep 2

echo
echo "== 1. kill -9 of the holder '$H' (lease 4 s, renew deadline 3 s, retry 0.5 s)"
T0=$(now)
kill -KILL "${PID[$H]}"
wait "${PID[$H]}" 2>/dev/null || true
NEW=$(wait_holder_not "$H")
echo "   '$NEW' took over with epoch $(epoch), $(since "$T0") s after the kill"
timeline "$T0"

sleep 1
echo
echo "== 2. SIGTERM of the holder '$NEW': it releases, a follower takes over at once"
T0=$(now)
kill -TERM "${PID[$NEW]}"
NEXT=$(wait_holder_not "$NEW")
echo "   '$NEXT' took over with epoch $(epoch), $(since "$T0") s after SIGTERM"
timeline "$T0"
echo
echo "demo: done"
