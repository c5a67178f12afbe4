#!/usr/bin/env bash
# The kubefence demo in the real Kubernetes lab (lab/lab.sh): deploy the lab
# overlay, write metadata through the master, SIGKILL the master's container
# through its node's containerd (`ctr -n k8s.io task kill -s SIGKILL`, what
# `docker kill` does) and show the timeline of the failover, then the killed
# pod restarted in place by its kubelet, as standby; at the end kf-lincheck
# judges every operation the demo's clients recorded.
#
#   bash lab/demo-lab.sh [--keep] [--keys N]
#
# --keep leaves the lab (and tgtd) up; by default everything is taken down.
# Needs root and what lab/README.md lists, plus tgt; kubefence built
# (KUBEFENCE_BUILD, default the repo) with tests/e2e/kf-labclient
# (make tests/e2e/kf-labclient).
set -uo pipefail

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
top_builddir=${top_builddir:-${KUBEFENCE_BUILD:-$top_srcdir}}
KEEP=0
KEYS=200
while [ $# -gt 0 ]; do
	case $1 in
	--keep) KEEP=1; shift ;;
	--keys) KEYS=$2; shift 2 ;;
	*) echo "usage: $0 [--keep] [--keys N]" >&2; exit 2 ;;
	esac
done
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
WORK=$(mktemp -d /tmp/kubefence-demo.XXXXXX)
e2e_skip() {
	echo "demo: cannot run: $*" >&2
	exit 1
}
e2e_init
# The demo's clients follow the Service's Endpoints themselves (what
# kube-proxy follows), so that its timeline names the pod that answered;
# tests/e2e/e2e.test and bench/failover-lab.sh go through the ClusterIP.

cleanup() {
	local rc=$?
	if [ $KEEP = 1 ]; then
		e2e_cleanup keep
		echo "== --keep: the lab is up (KUBECONFIG=/var/lib/kubefence-lab/admin.kubeconfig);" \
			"tgtd pid $(cat "$WORK/tgt/tgtd.pid" 2>/dev/null), stop it with:" \
			"bash tests/e2e/lab-tgtd.sh stop $WORK/tgt; then lab/lab.sh down"
	else
		echo "== tearing down"
		e2e_cleanup
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() {
	echo "demo: $*" >&2
	exit 1
}

iso_us() { echo $(($(date -d "$1" +%s%N) / 1000)); } # ISO time -> µs
rel() { awk -v a="$1" -v k="$KILL_US" 'BEGIN{printf "%+8.1f ms", (a-k)/1000}'; }

echo "== the lab: $(lab_is_up && echo 'already up' || echo 'starting (about 16 s)')"
e2e_up >/dev/null || die "lab up failed"
bash "$LAB" nodes | sed 's/^/   node /'
echo "== deploying kubefence (manifests/rendered/lab.yaml)"
e2e_deploy || die "deploy failed"
kc get pods -n $NS -o wide | sed 's/^/   /'
M=$(masters)
echo "== master: $M on $(pod_node "$M"), Service metaservice -> $(endpoint)"

echo "== writing $KEYS keys through the master (Service endpoints)"
for i in $(seq 1 "$KEYS"); do echo "put demo-$i value-$i"; done |
	"$CLIENT" --via endpoints --history "$HIST/demo.hist" --client demo-put session >"$WORK/put.out"
n=$(grep -c '^ok put' "$WORK/put.out")
echo "   $n of $KEYS acknowledged"
[ "$n" = "$KEYS" ] || die "writes failed: $(grep -v '^ok' "$WORK/put.out" | head -3)"

# A client writing continuously through the Service: it measures when the
# first write after the kill is acknowledged.
bg_start "$CLIENT" --via endpoints --pause-us 1000 --prefix live- --history "$HIST/workload.hist" --client workload \
	workload "$WORK/acks" >/dev/null
sleep 1
OLD=$M
OLD_NODE=$(pod_node "$OLD")
OLD_AGENT=$(agent_pod_on "$OLD_NODE")
BEFORE=$(restarts "$OLD")
CID=$(kc get pod -n $NS "$OLD" -o jsonpath='{.status.containerStatuses[0].containerID}')
CID=${CID#containerd://}
echo "== kill: ctr -n k8s.io task kill -s SIGKILL ${CID:0:12}… (container of $OLD on $OLD_NODE)"
kill_pod_at "$OLD" || die "kill failed"
NEW=$(wait_new_master "$OLD" 30) || die "no new master"
A=$(wait_ack_after "$WORK/acks" "$KILL_US" 30 "$(pod_ip "$OLD"):7480") || die "no write acknowledged"
sleep 0.5
NEW_NODE=$(pod_node "$NEW")
NEW_AGENT_IP=$(agent_ip_on "$NEW_NODE")
curl -fsS "http://$NEW_AGENT_IP:9464/status" >"$WORK/status.json" || die "no /status from $NEW_AGENT_IP"
kc logs -n $NS "$OLD_AGENT" >"$WORK/old-agent.log"

echo "== timeline (from the kill; old agent's log, new agent's /status, the client)"
printf '   %s  %-10s %s\n' "$(rel "$KILL_US")" kill "ctr task kill -s SIGKILL started (it returned at $(rel "$KILL_DONE_US"))"
l=$(grep -F "service '$OLD'" "$WORK/old-agent.log" | grep 'EOF' | tail -1)
[ -n "$l" ] && printf '   %s  %-10s %s\n' "$(rel "$(iso_us "${l%% *}")")" detected "$OLD_NODE's agent: EOF on the control socket"
l=$(grep 'event=released' "$WORK/old-agent.log" | tail -1)
[ -n "$l" ] && printf '   %s  %-10s %s\n' "$(rel "$(iso_us "${l%% *}")")" released "$(sed -n "s/.*reason=\(.*\)/\1/p" <<<"$l")"
START_US=$(iso_us "$(jq -r '.last_failover.started_at' "$WORK/status.json")")
jq -r '.last_failover.steps[] | "\(.at_ms) \(.step) \(.detail)"' "$WORK/status.json" |
	while read -r at step detail; do
		t=$((START_US + at * 1000))
		case $step in
		acquired) detail="$NEW_NODE: ${detail%%,*}" ;;
		promote-sent) step=promoted; detail="$detail" ;;
		recovered) detail="recovered ${detail}" ;;
		esac
		printf '   %s  %-10s %s\n' "$(rel "$t")" "$step" "$detail"
	done
jq -r --arg s "$(jq -r '.last_failover.started_at' "$WORK/status.json")" \
	'.fences[] | select(.started_at >= $s) | .steps[] | "\(.step): \(.detail // "")"' "$WORK/status.json" 2>/dev/null |
	sed 's/^/                        fence method /' | cut -c1-160
printf '   %s  %-10s %s\n' "$(rel "${A%% *}")" "first ack" "first write acknowledged through the Service, by ${A#* } ($NEW)"
echo "   agent-measured failover: $(jq -r '.last_failover.total_ms' "$WORK/status.json") ms (acquired -> labelled);" \
	"client-measured: $(awk -v a="${A%% *}" -v k="$KILL_US" 'BEGIN{printf "%.0f", (a-k)/1000}') ms (kill -> first acknowledged write)"
echo "== the new master's agent (kubefencectl status --agent $NEW_AGENT_IP:9464)"
"$KFCTL" status --agent "$NEW_AGENT_IP:9464" 2>&1 | sed -n '1,20p' | sed 's/^/   /' | cut -c1-200

echo "== the $KEYS keys written before the kill, read through the Service"
for i in $(seq 1 "$KEYS"); do echo "get demo-$i value-$i"; done |
	"$CLIENT" --via endpoints --history "$HIST/demo.hist" --client demo-get session >"$WORK/get.out"
echo "   $(grep -c '^ok get' "$WORK/get.out") of $KEYS readable on $NEW"

echo "== the killed pod, restarted in place by its kubelet"
wait_restarted "$OLD" "$BEFORE" 60 || die "$OLD not restarted"
r=$(refuses_write "$OLD")
st=$("$CLIENT" --via endpoints direct "$(pod_ip "$OLD"):7480" stat | tr ' ' '\n' | grep -E '^(role|epoch|master)=' | tr '\n' ' ')
echo "   $OLD: restartCount $BEFORE -> $(restarts "$OLD"), $st"
echo "   a write sent to it directly: $r"
bg_stop "${E2E_BG_PIDS[0]}"
kc get pods -n $NS -o wide -L role | sed 's/^/   /'
echo "== every operation the clients recorded, judged by kf-lincheck (linearizability)"
"$CLIENT" --via endpoints --timeout-ms 10000 --history "$HIST/final.hist" --client final check "$WORK/acks" >"$WORK/check.out" ||
	die "acknowledged writes lost: $(cat "$WORK/check.out")"
echo "   $(cat "$WORK/check.out")"
e2e_lincheck demo "$HIST"/*.hist | sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || die "the recorded operations are not linearizable (kf-lincheck above)"
echo "== done"
