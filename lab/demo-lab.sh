#!/usr/bin/env bash
# The kubefence demo in the real Kubernetes lab (lab/lab.sh): deploy the lab
# overlay, write metadata through the master, SIGKILL the master's container
# through its node's containerd (`ctr -n k8s.io task kill -s SIGKILL`, what
# `docker kill` does) and show the timeline of the failover, then the killed
# pod restarted in place by its kubelet, as standby; at the end kf-lincheck
# judges every operation the demo's clients recorded, and the demo sums up
# what it measured: how long writes were unavailable, split into detection,
# failover and routing.
#
#   bash lab/demo-lab.sh [--keep] [--keys N] [--via clusterip|endpoints|both]
#
# --keep leaves the lab (and tgtd) up; by default everything is taken down.
# --via: how the demo's clients reach the master (tests/e2e/kf-labclient):
#   clusterip (the default)  through the Service's ClusterIP, routed by the
#              lab's kube-proxy (iptables mode), as a client of a real cluster;
#   endpoints  through the Service's Endpoints read from the API (what
#              kube-proxy follows), without kube-proxy's own delay;
#   both       a writing client on each path side by side, so that one kill
#              gives both figures and kube-proxy's share of the failover.
# Needs root and what lab/README.md lists, plus tgt; kubefence built
# (KUBEFENCE_BUILD, default the repo) with tests/e2e/kf-labclient
# (make tests/e2e/kf-labclient).
set -uo pipefail

top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
top_builddir=${top_builddir:-${KUBEFENCE_BUILD:-$top_srcdir}}
KEEP=0
KEYS=200
VIA=clusterip
usage() {
	echo "usage: $0 [--keep] [--keys N] [--via clusterip|endpoints|both]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--keep) KEEP=1; shift ;;
	--keys) KEYS=$2; shift 2 ;;
	--via)
		case ${2:-} in clusterip | endpoints | both) VIA=$2 ;; *) usage ;; esac
		shift 2
		;;
	*) usage ;;
	esac
done
# PATHS: the paths with a writing client; CVIA: the path of the other clients.
case $VIA in
both) PATHS=(clusterip endpoints) CVIA=clusterip ;;
*) PATHS=("$VIA") CVIA=$VIA ;;
esac
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
WORK=$(mktemp -d /tmp/kubefence-demo.XXXXXX)
e2e_skip() {
	echo "demo: cannot run: $*" >&2
	exit 1
}
e2e_init

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
dur() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%7.1f ms", (a-b)/1000}'; } # B..A
path_name() { # PATH
	if [ "$1" = clusterip ]; then echo "the ClusterIP $SVC_IP:7480 (kube-proxy)"; else echo "the Endpoints (read from the API)"; fi
}

echo "== the lab: $(lab_is_up && echo 'already up' || echo 'starting (about 16 s)')"
e2e_up >/dev/null || die "lab up failed"
bash "$LAB" nodes | sed 's/^/   node /'
echo "== deploying kubefence (manifests/rendered/lab.yaml)"
e2e_deploy || die "deploy failed"
kc get pods -n $NS -o wide | sed 's/^/   /'
M=$(masters)
SVC_IP=$(kc get service -n $NS metaservice -o jsonpath='{.spec.clusterIP}')
echo "== master: $M on $(pod_node "$M"); Service metaservice: ClusterIP $SVC_IP:7480 -> endpoint $(endpoint)"
echo "   the demo's clients go through $(path_name "$CVIA")$([ "$VIA" = both ] && echo "; a second writer through $(path_name endpoints)")"

echo "== writing $KEYS keys through the master (through $(path_name "$CVIA"))"
for i in $(seq 1 "$KEYS"); do echo "put demo-$i value-$i"; done |
	"$CLIENT" --via "$CVIA" --history "$HIST/demo.hist" --client demo-put session >"$WORK/put.out"
n=$(grep -c '^ok put' "$WORK/put.out")
echo "   $n of $KEYS acknowledged"
[ "$n" = "$KEYS" ] || die "writes failed: $(grep -v '^ok' "$WORK/put.out" | head -3)"

# A client writing continuously through the Service (one per path): it
# measures when the first write after the kill is acknowledged.
WLS=()
for p in "${PATHS[@]}"; do
	bg_start "$CLIENT" --via "$p" --pause-us 1000 --prefix "live-$p-" --history "$HIST/workload-$p.hist" \
		--client "workload-$p" workload "$WORK/acks.$p" >/dev/null 2>"$WORK/workload-$p.log"
	WLS+=("$BG_PID")
done
for p in "${PATHS[@]}"; do wait_ack_after "$WORK/acks.$p" 0 30 >/dev/null || die "no write acknowledged through $(path_name "$p")"; done
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
# The first write acknowledged after ctr returned (the old master was dead
# by then), measured from just before ctr started: an upper bound.
declare -A ACK
for p in "${PATHS[@]}"; do
	ACK[$p]=$(wait_ack_after "$WORK/acks.$p" "$KILL_DONE_US" 30) || die "no write acknowledged through $(path_name "$p")"
done
sleep 0.5
NEW_NODE=$(pod_node "$NEW")
NEW_AGENT_IP=$(agent_ip_on "$NEW_NODE")
curl -fsS "http://$NEW_AGENT_IP:9464/status" >"$WORK/status.json" || die "no /status from $NEW_AGENT_IP"
kc logs -n $NS "$OLD_AGENT" >"$WORK/old-agent.log"

echo "== timeline (from the kill; old agent's log, new agent's /status, the client)"
printf '   %s  %-10s %s\n' "$(rel "$KILL_US")" kill "ctr task kill -s SIGKILL started (it returned at $(rel "$KILL_DONE_US"))"
DETECT_US="" LABEL_US="" NEW_EPOCH=""
l=$(grep -F "service '$OLD'" "$WORK/old-agent.log" | grep 'EOF' | tail -1)
if [ -n "$l" ]; then
	DETECT_US=$(iso_us "${l%% *}")
	printf '   %s  %-10s %s\n' "$(rel "$DETECT_US")" detected "$OLD_NODE's agent: EOF on the control socket"
fi
l=$(grep 'event=released' "$WORK/old-agent.log" | tail -1)
[ -n "$l" ] && printf '   %s  %-10s %s\n' "$(rel "$(iso_us "${l%% *}")")" released "$(sed -n "s/.*reason=\(.*\)/\1/p" <<<"$l")"
START_US=$(iso_us "$(jq -r '.last_failover.started_at' "$WORK/status.json")")
while read -r at step detail; do
	t=$((START_US + at * 1000))
	case $step in
	acquired) NEW_EPOCH=${detail%%,*} detail="$NEW_NODE: ${detail%%,*}" ;;
	promote-sent) step=promoted ;;
	recovered) detail="recovered ${detail}" ;;
	labelled) LABEL_US=$t ;;
	esac
	printf '   %s  %-10s %s\n' "$(rel "$t")" "$step" "$detail"
done < <(jq -r '.last_failover.steps[] | "\(.at_ms) \(.step) \(.detail)"' "$WORK/status.json")
jq -r --arg s "$(jq -r '.last_failover.started_at' "$WORK/status.json")" \
	'.fences[] | select(.started_at >= $s) | .steps[] | "\(.step): \(.detail // "")"' "$WORK/status.json" 2>/dev/null |
	sed 's/^/                        fence method /' | cut -c1-160
for p in "${PATHS[@]}"; do
	printf '   %s  %-10s %s\n' "$(rel "${ACK[$p]%% *}")" "first ack" "first write acknowledged through $(path_name "$p")"
done
if [[ " ${PATHS[*]} " = *" clusterip "* ]]; then
	# Which pod kube-proxy sends the ClusterIP to now: ask through it (a
	# master's role and epoch say which; its master= field is only a hint).
	st=$("$CLIENT" direct "$SVC_IP:7480" stat | tr ' ' '\n' | grep -E '^(role|epoch)=' | tr '\n' ' ')
	echo "   a stat through the ClusterIP $SVC_IP:7480 is answered by: ${st% } (${NEW_EPOCH:-epoch ?} is $NEW's)"
fi
echo "== the new master's agent (kubefencectl status --agent $NEW_AGENT_IP:9464)"
"$KFCTL" status --agent "$NEW_AGENT_IP:9464" 2>&1 | sed -n '1,20p' | sed 's/^/   /' | cut -c1-200

echo "== the $KEYS keys written before the kill, read through the Service"
for i in $(seq 1 "$KEYS"); do echo "get demo-$i value-$i"; done |
	"$CLIENT" --via "$CVIA" --history "$HIST/demo.hist" --client demo-get session >"$WORK/get.out"
READ=$(grep -c '^ok get' "$WORK/get.out")
echo "   $READ of $KEYS readable on $NEW"

echo "== the killed pod, restarted in place by its kubelet"
wait_restarted "$OLD" "$BEFORE" 60 || die "$OLD not restarted"
r=$(refuses_write "$OLD")
st=$("$CLIENT" direct "$(pod_ip "$OLD"):7480" stat | tr ' ' '\n' | grep -E '^(role|epoch|master)=' | tr '\n' ' ')
echo "   $OLD: restartCount $BEFORE -> $(restarts "$OLD"), $st"
echo "   a write sent to it directly: $r"

# The storage fence.  A write the master has taken in waits inside its
# commit (a fault point holds it there, as a stall would) while the
# master's node is frozen; another node takes over, and its scsi-pr fence
# preempts the frozen node's key on the LUN.  After the thaw the held write
# goes to the LUN: the TARGET refuses it (RESERVATION CONFLICT), whatever
# the old master's clocks say, and its client is told the outcome is
# unknown, never "done".
M2=$(masters)
M2_NODE=$(pod_node "$M2")
M2_IP=$(pod_ip "$M2")
FP=/run/kubefence-fp/$M2_NODE
echo "== the storage fence: freeze $M2_NODE while a write is inside $M2's commit"
wait_both_ready 60 || die "not ready for the storage-fence step"
printf 'metastore.commit.before_sync=1*pause\n' >"$FP/failpoints.tmp" && mv "$FP/failpoints.tmp" "$FP/failpoints"
META=$KUBEFENCE_BUILD/storage/metad/kubefence-meta
"$META" --server "$M2_IP:7480" --timeout-ms 60000 --history "$HIST/late.hist" --client late \
	put late-write late-value >"$WORK/late.out" 2>&1 &
LATE_PID=$!
for _ in $(seq 1 200); do compgen -G "$FP/*.paused" >/dev/null && break; sleep 0.05; done
compgen -G "$FP/*.paused" >/dev/null || die "no write was held in $M2's commit"
: >"$FP/failpoints"
FREEZE_US=$(now_us)
bash "$LAB" freeze "$M2_NODE" >/dev/null || die "freeze $M2_NODE"
echo "   $M2 holds a write in its commit; $M2_NODE frozen"
N2=$(wait_new_master "$M2" 30) || die "no new master after the freeze"
a2=$(wait_ack_after "$WORK/acks.${PATHS[0]}" "$FREEZE_US" 30) || die "no write acknowledged after the freeze"
echo "   $N2 on $(pod_node "$N2") took over: first write acknowledged $(awk -v a="${a2%% *}" -v k="$FREEZE_US" 'BEGIN{printf "%.1f", (a-k)/1e6}') s after the freeze"
kc logs -n $NS "$(agent_pod_on "$(pod_node "$N2")")" 2>/dev/null | grep 'event=fenced' | tail -1 |
	sed -n 's/.*\(scsi-pr confirmed[^;]*\).*/   its fence: \1/p' | cut -c1-200
# release the held write while the node is still frozen: it runs on at the thaw
rm -f "$FP"/*.paused
bash "$LAB" thaw "$M2_NODE" >/dev/null || die "thaw $M2_NODE"
wait "$LATE_PID"
LATE=$(tr '\n' ' ' <"$WORK/late.out")
echo "   after the thaw, the held write's answer: ${LATE% }"
case $LATE in
*"RESERVATION CONFLICT"*) echo "   refused by the target: the old master's write never reached the LUN" ;;
*) die "the held write was not refused by the target: $LATE" ;;
esac
echo "get late-write" | "$CLIENT" --via "$CVIA" --history "$HIST/demo.hist" --client late-get session >"$WORK/late-get.out"
echo "   late-write on the new master: $(head -1 "$WORK/late-get.out")"
wait_both_ready 120 || die "the old node did not come back after the thaw"
for p in "${WLS[@]}"; do bg_stop "$p"; done
kc get pods -n $NS -o wide -L role | sed 's/^/   /'
echo "== every operation the clients recorded, judged by kf-lincheck (linearizability)"
ACKFILES=()
for p in "${PATHS[@]}"; do ACKFILES+=("$WORK/acks.$p"); done
"$CLIENT" --via "$CVIA" --timeout-ms 10000 --history "$HIST/final.hist" --client final check "${ACKFILES[@]}" >"$WORK/check.out" ||
	die "acknowledged writes lost: $(cat "$WORK/check.out")"
echo "   $(cat "$WORK/check.out")"
e2e_lincheck demo "$HIST"/*.hist >"$WORK/lincheck.line"
LIN_RC=$?
sed 's/^/   /' "$WORK/lincheck.line"
[ "$LIN_RC" = 0 ] || die "the recorded operations are not linearizable (kf-lincheck above)"

# What it all means, for an operator: the outage a client of the Service
# saw, and where the time went.
P=${PATHS[0]}
A_US=${ACK[$P]%% *}
echo "== what was measured (one kill; times from just before \`ctr task kill\` started, so upper bounds)"
if [ "$P" = clusterip ]; then who="what a client of the Service waits"; else who="what a client reading the Endpoints itself waits"; fi
printf '   %-24s %s   %s\n' "writes unavailable" "$(dur "$A_US" "$KILL_US")" \
	"kill -> first write acknowledged through $(path_name "$P"): $who"
if [ -n "$DETECT_US" ] && [ -n "$LABEL_US" ]; then
	printf '     %-22s %s   %s\n' "detection" "$(dur "$DETECT_US" "$KILL_US")" \
		"kill -> $OLD_NODE's agent saw its MetaService's control socket close"
	printf '     %-22s %s   %s\n' "failover" "$(dur "$LABEL_US" "$DETECT_US")" \
		"-> $NEW labelled role=master: lease taken, old master fenced, promoted, recovered (the agent's own figure: $(jq -r '.last_failover.total_ms' "$WORK/status.json") ms)"
	if [ "$P" = clusterip ]; then
		printf '     %-22s %s   %s\n' "routing" "$(dur "$A_US" "$LABEL_US")" \
			"-> first ack: the agent switched the Service's endpoints, kube-proxy its iptables rules, the client retried"
	else
		printf '     %-22s %s   %s\n' "routing" "$(dur "$A_US" "$LABEL_US")" \
			"-> first ack: the agent switched the Service's endpoints, the client re-read them and retried"
	fi
fi
if [ "$VIA" = both ]; then
	E_US=${ACK[endpoints]%% *}
	printf '   %-24s %s   %s\n' "through the Endpoints" "$(dur "$E_US" "$KILL_US")" \
		"the same kill, a client that reads the Endpoints itself (no kube-proxy)"
	printf '   %-24s %s   %s\n' "kube-proxy's share" "$(dur "$A_US" "$E_US")" \
		"ClusterIP minus Endpoints: kube-proxy's iptables sync (--iptables-min-sync-period 1 s) and the re-connect"
fi
printf '   %-24s %s\n' "writes lost" "$((KEYS - READ)) of the $KEYS keys written before the kill; $(sed -n 's/.*lost_or_wrong=\([0-9]*\).*/\1/p' "$WORK/check.out") of the $(sed -n 's/.*acknowledged=\([0-9]*\).*/\1/p' "$WORK/check.out") writes the workload had acknowledged"
printf '   %-24s %s\n' "storage fence" "a write the frozen master held was refused by the target after the thaw (RESERVATION CONFLICT), its client told 'indeterminate'; it is not on the new master"
printf '   %-24s %s\n' "consistency" "$(sed -n 's/^lincheck: //p' "$WORK/lincheck.line" | tail -1) (kf-lincheck over every recorded operation)"
echo "== done"
