#!/usr/bin/env bash
# The single-replica topology in the real Kubernetes lab, with and without
# kubefence, side by side in one run (`make bench-single-replica`).
#
#   bash bench/single-replica-lab.sh [--freezes N] [--kills N] [--baseline-kills N]
#                                    [--window S] [--only kubefence|baseline] [--out FILE]
#
# Every sample is measured on two paths at once, by two clients writing
# continuously side by side (tests/e2e/kf-labclient workload, as
# bench/failover-lab.sh): clusterip (through the Service's ClusterIP, routed
# by kube-proxy; the top-level results) and endpoints (the address in the
# Service's Endpoints read from the API; via_endpoints).
#
# 1. kubefence: manifests/examples/single-replica (ONE MetaService pod, a
#    StatefulSet with replicas: 1 on the lab's LUN; the agent on both nodes
#    with agent.fence_without_service and fence.methods = scsi-pr,
#    out-of-service, pod-delete).
#    a. node freeze (N, default 3): the pod's node frozen (cgroup freezer);
#       from just before the freeze to the first write acknowledged after it
#       was complete.  The other node's agent fences the frozen node, the
#       StatefulSet recreates the pod on the other node, whose agent promotes
#       it.  The node is thawed after 5 s (or once the sample is in).
#    b. container kill (N, default 5): `ctr task kill -s SIGKILL` of the
#       MetaService container (what `docker kill` does: the seed's test);
#       the kubelet restarts it in place; from just before the kill to the
#       first write acknowledged after ctr returned.  Each kill hits a fresh
#       pod (restartCount 0), so no sample waits out CrashLoopBackOff.
# 2. without kubefence: the agents and the StatefulSet deleted; the same
#    StatefulSet shape (replicas: 1, the same readiness probe) in namespace
#    `baseline` running `kubefence-metad --standalone --epoch 1` on a
#    directory (a hostPath, which every lab node sees: the best case for a
#    replacement, which never comes anyway).
#    a. container kill (N, default the same as 1b), as 1b.
#    b. node freeze (one): the pod's node frozen for --window S (default
#       150 s); the first acknowledged write within the window, or "none".
#       The baseline pod tolerates node.kubernetes.io/unreachable and
#       not-ready for 30 s only (the default is 300 s), so that the node
#       controller's eviction happens inside the window: the pod goes
#       Terminating and stays so, since the kubelet that would confirm the
#       deletion is frozen, and the StatefulSet makes no replacement while
#       the old pod exists.  Then thawed: the time from the thaw to the first
#       acknowledged write is reported too.
# The kubefence clients' operations (20 % reads) are recorded and judged by
# kf-lincheck; the verdict goes into the JSON, and a violation makes the
# benchmark exit 1 after writing it.  A watcher fails the run if two pods
# are ever labelled role=master.  Writes FILE (default
# bench/results/single-replica-lab.json).  Never asserts timing.  Refuses to
# run when a lab is already up; always takes the lab down.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
FREEZES=3
KILLS=5
BKILLS=
WINDOW=150
ONLY=
OUT=$top_builddir/bench/results/single-replica-lab.json
while [ $# -gt 0 ]; do
	case $1 in
	--freezes) FREEZES=$2; shift 2 ;;
	--kills) KILLS=$2; shift 2 ;;
	--baseline-kills) BKILLS=$2; shift 2 ;;
	--window) WINDOW=$2; shift 2 ;;
	--only) ONLY=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*)
		echo "usage: $0 [--freezes N] [--kills N] [--baseline-kills N] [--window S] [--only kubefence|baseline] [--out FILE]" >&2
		exit 2
		;;
	esac
done
BKILLS=${BKILLS:-$KILLS}
case $ONLY in
"") ;;
kubefence) BKILLS=0 WINDOW=0 ;;
baseline) FREEZES=0 KILLS=0 ;;
*) echo "bench: --only kubefence or baseline" >&2; exit 2 ;;
esac
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
# shellcheck source=tests/e2e/single-replica-lib.sh
. "$top_srcdir/tests/e2e/single-replica-lib.sh"
# shellcheck source=bench/lab-bench.sh
. "$top_srcdir/bench/lab-bench.sh"

if [ "$ONLY" != baseline ]; then
	out=$(sr_conf_ok) || die "kubefence-agent --config-test refuses $SR_CONF: $out"
fi
e2e_up >/dev/null || die "lab up"
[ "$ONLY" = baseline ] || sr_deploy || die "deploy manifests/examples/single-replica"
LEASE_MS=$(sed -n 's/^lease.duration_ms *= *\([0-9]*\).*/\1/p' "$SR_CONF")
METHODS=$(sed -n 's/^fence.methods *= *//p' "$SR_CONF")

PATHS=(clusterip endpoints)
workloads() { # ACKS-PREFIX HIST-PREFIX [KF-LABCLIENT OPTIONS...]: sets WLS
	local acks=$1 hist=$2 p
	shift 2
	WLS=()
	for p in "${PATHS[@]}"; do
		bg_start "$CLIENT" --via "$p" --pause-us 500 ${hist:+--history "$hist-$p.hist"} \
			--client "workload-$p" --prefix "$p-" "$@" workload "$acks.$p" >/dev/null 2>>"$acks.$p.log"
		WLS+=("$BG_PID")
	done
	for p in "${PATHS[@]}"; do wait_ack_after "$acks.$p" 0 60 >/dev/null || die "workload ($p)"; done
}
node_ready() { kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null; }

# ------------------------------------------------------------ kubefence
run_kubefence() {
	bg_start "$CLIENT" --interval-ms 50 watch "$WORK/watch.log" >"$WORK/watch.out"
	WATCH_PID=$BG_PID
	ACKS=$WORK/acks
	workloads "$ACKS" "$HIST/kubefence"
	SVC_IP=$(kc get service -n $NS metaservice -o jsonpath='{.spec.clusterIP}')
	say "clients: through the ClusterIP $SVC_IP:7480 and through the Endpoints"

	FREEZE_NOTES=()
	for i in $(seq 1 "$FREEZES"); do
		wait_sr_serving 120 || die "not serving before freeze $i"
		node=$(pod_node $SR_POD)
		other=$(other_node "$node")
		mark "$ACKS"
		t=$(now_us)
		bash "$LAB" freeze "$node" >/dev/null || die "freeze $node"
		r=$(sample_acks freeze "$ACKS" "$t" "$(now_us)" 60) || die "kubefence freeze $i: no ack within 60 s"
		now_on=$(pod_node $SR_POD)
		say "kubefence freeze $i/$FREEZES ($node; the pod now on $now_on): $r"
		FREEZE_NOTES+=("$node->$now_on")
		while [ $(($(now_us) - t)) -lt 5000000 ]; do sleep 0.2; done
		bash "$LAB" thaw "$node" >/dev/null || die "thaw $node"
		[ "$now_on" = "$other" ] || say "   note: the replacement is on $now_on, not on the other node $other"
		for _ in $(seq 1 300); do
			has_oos_taint "$node" || break
			sleep 0.1
		done
		has_oos_taint "$node" && die "the out-of-service taint is still on $node 30 s after the thaw"
	done

	for i in $(seq 1 "$KILLS"); do
		fresh_pod 120 || die "no fresh pod serving before kill $i"
		sleep 0.5
		mark "$ACKS"
		kill_pod_at $SR_POD || die "kubefence kill $i"
		r=$(sample_acks kill "$ACKS" "$KILL_US" "$KILL_DONE_US" 60) || die "kubefence kill $i: no ack within 60 s"
		say "kubefence kill $i/$KILLS (on $KILLED_NODE, restartCount $(restarts $SR_POD)): $r"
	done
	for p in "${WLS[@]}"; do bg_stop "$p"; done
	"$CLIENT" --timeout-ms 10000 --history "$HIST/kubefence-final.hist" --client final check "$ACKS.clusterip" "$ACKS.endpoints" \
		>"$WORK/check.out" || die "acknowledged writes lost: $(cat "$WORK/check.out")"
	say "kubefence: $(cat "$WORK/check.out")"
	LIN_RC=0
	e2e_lincheck bench "$HIST/kubefence-clusterip.hist" "$HIST/kubefence-endpoints.hist" "$HIST/kubefence-final.hist" || LIN_RC=$?
	VERDICT=$(jq -r '.verdict // "error"' "$WORK/lincheck.bench.json" 2>/dev/null || echo error)
	LIN_OPS=$(jq -r '.ops // 0' "$WORK/lincheck.bench.json" 2>/dev/null || echo 0)
	EPOCH=$(lease_epoch)
	bg_stop "$WATCH_PID"
	WATCH_OBS=$(awk '{print $2}' "$WORK/watch.out")
	TWO_MASTERS=$(grep -c VIOLATION "$WORK/watch.log" || true)
}

# ------------------------------------------------------------ baseline
run_baseline() {
	# Without kubefence: no agents, nothing moves a label; the Service selects
	# the one pod.  A namespace of its own.
	kc delete daemonset -n $NS kubefence-agent --wait=false >/dev/null
	kc delete statefulset -n $NS metaservice --wait=false >/dev/null
	kc create namespace baseline >/dev/null
	for _ in $(seq 1 100); do kc get serviceaccount default -n baseline >/dev/null 2>&1 && break; sleep 0.2; done
	cat <<-EOF | kc apply -f - >/dev/null || die "the baseline StatefulSet"
		apiVersion: v1
		kind: Service
		metadata: {name: meta-baseline, namespace: baseline}
		spec:
		  selector: {app: meta-baseline}
		  ports: [{name: client, port: 7480, targetPort: client}]
		---
		apiVersion: apps/v1
		kind: StatefulSet
		metadata: {name: meta-baseline, namespace: baseline}
		spec:
		  replicas: 1
		  serviceName: meta-baseline
		  selector: {matchLabels: {app: meta-baseline}}
		  template:
		    metadata: {labels: {app: meta-baseline}}
		    spec:
		      terminationGracePeriodSeconds: 10
		      tolerations:
		      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
		      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
		      containers:
		      - name: metad
		        image: kubefence/metad:lab
		        imagePullPolicy: Never
		        command: [kubefence-metad, --standalone, --epoch, "1", --data-dir, /data, --listen, "0.0.0.0:7480"]
		        ports: [{name: client, containerPort: 7480}]
		        readinessProbe: {tcpSocket: {port: client}, periodSeconds: 2, timeoutSeconds: 1}
		        securityContext: {runAsUser: 0}
		        volumeMounts: [{name: data, mountPath: /data}]
		      volumes:
		      - {name: data, hostPath: {path: /var/lib/kubefence-lab/single-replica-baseline, type: DirectoryOrCreate}}
	EOF
	BPOD=meta-baseline-0
	b_serving() { # the baseline pod Ready, not being deleted, in the Endpoints
		local js ip
		js=$(kc get pod -n baseline $BPOD -o json 2>/dev/null) || return 1
		[ "$(jq -r '.metadata.deletionTimestamp // ""' <<<"$js")" = "" ] || return 1
		[ "$(jq -r '.status.conditions[]? | select(.type == "Ready") | .status' <<<"$js")" = True ] || return 1
		ip=$(jq -r '.status.podIP // ""' <<<"$js")
		[ -n "$ip" ] && [ "$(kc get endpoints -n baseline meta-baseline -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null)" = "$ip" ]
	}
	b_fresh() { # TIMEOUT_S: a baseline pod with restartCount 0, serving
		local uid
		if [ "$(kc get pod -n baseline $BPOD -o jsonpath='{.status.containerStatuses[0].restartCount}' 2>/dev/null)" != 0 ]; then
			uid=$(kc get pod -n baseline $BPOD -o jsonpath='{.metadata.uid}' 2>/dev/null)
			kc delete pod -n baseline $BPOD --wait=false >/dev/null 2>&1
			poll "$1" b_replaced "$uid" || true
		fi
		poll "$1" b_serving
	}
	b_replaced() { [ "$(kc get pod -n baseline $BPOD -o jsonpath='{.metadata.uid}' 2>/dev/null)" != "$1" ]; } # OLD_UID
	b_fresh 120 || die "the baseline pod is not serving"
	for _ in $(seq 1 300); do
		[ "$(kc get pods -n $NS -o name 2>/dev/null | wc -l)" = 0 ] && break
		sleep 0.2
	done
	say "baseline: $BPOD (kubefence-metad --standalone) on $(kc get pod -n baseline $BPOD -o jsonpath='{.spec.nodeName}'), no agents"
	BACKS=$WORK/base-acks
	workloads "$BACKS" "" --namespace baseline --service meta-baseline

	for i in $(seq 1 "$BKILLS"); do
		b_fresh 120 || die "no fresh baseline pod before kill $i"
		sleep 0.5
		mark "$BACKS"
		kill_pod_at $BPOD baseline || die "baseline kill $i"
		r=$(sample_acks base "$BACKS" "$KILL_US" "$KILL_DONE_US" 60) || die "baseline kill $i: no ack within 60 s"
		say "baseline kill $i/$BKILLS (on $KILLED_NODE, restartCount $(kc get pod -n baseline $BPOD -o jsonpath='{.status.containerStatuses[0].restartCount}')): $r"
	done

	b_fresh 120 || die "the baseline pod is not serving before the freeze"
	bnode=$(kc get pod -n baseline $BPOD -o jsonpath='{.spec.nodeName}')
	buid=$(kc get pod -n baseline $BPOD -o jsonpath='{.metadata.uid}')
	mark "$BACKS"
	t=$(now_us)
	bash "$LAB" freeze "$bnode" >/dev/null || die "freeze $bnode"
	t_frozen=$(now_us)
	say "baseline: $bnode frozen; waiting up to $WINDOW s for an acknowledged write"
	t_notready="" t_terminating="" t_replaced="" bfreeze_ack=""
	while [ $(($(now_us) - t)) -lt $((WINDOW * 1000000)) ]; do
		[ -n "$t_notready" ] || [ "$(node_ready "$bnode")" = True ] || {
			t_notready=$(now_us)
			say "   +$(ms "$t_notready" "$t") ms: $bnode NotReady/Unknown (node-monitor-grace-period)"
		}
		js=$(kc get pod -n baseline $BPOD -o json 2>/dev/null) || js='{}'
		[ -n "$t_terminating" ] || [ "$(jq -r '.metadata.deletionTimestamp // ""' <<<"$js")" = "" ] || {
			t_terminating=$(now_us)
			say "   +$(ms "$t_terminating" "$t") ms: $BPOD Terminating (evicted by the node controller), still on $bnode"
		}
		[ -n "$t_replaced" ] || [ "$(jq -r '.metadata.uid // ""' <<<"$js")" = "$buid" ] || {
			t_replaced=$(now_us)
			say "   +$(ms "$t_replaced" "$t") ms: $BPOD replaced"
		}
		for p in "${PATHS[@]}"; do
			a=$(first_ack "$BACKS.$p" "$t" "$t_frozen") || true
			if [ -n "$a" ] && [ -z "$bfreeze_ack" ]; then
				bfreeze_ack=$(ms "${a%% *}" "$t")
				say "   +$bfreeze_ack ms: a write acknowledged ($p)"
			fi
		done
		[ -n "$bfreeze_ack" ] && break
		sleep 0.5
	done
	BPHASE=$(kc get pod -n baseline $BPOD -o jsonpath='{.status.phase}{" deletionTimestamp="}{.metadata.deletionTimestamp}' 2>/dev/null)
	say "baseline freeze: ${bfreeze_ack:+first ack $bfreeze_ack ms}${bfreeze_ack:-none within $WINDOW s}; $BPOD: $BPHASE"
	mark "$BACKS"
	t_thaw=$(now_us)
	bash "$LAB" thaw "$bnode" >/dev/null || die "thaw $bnode"
	r=$(sample_acks bthaw "$BACKS" "$t_thaw" "$t_thaw" 180) || say "baseline: no ack within 180 s of the thaw either"
	say "baseline: after the thaw of $bnode: $r; $BPOD on $(kc get pod -n baseline $BPOD -o jsonpath='{.spec.nodeName}' 2>/dev/null)"
	for p in "${WLS[@]}"; do bg_stop "$p"; done
}

VERDICT=skipped LIN_OPS=0 LIN_RC=0 EPOCH=0 SVC_IP="" WATCH_OBS=0 TWO_MASTERS=0 FREEZE_NOTES=()
bnode="" BPHASE="" bfreeze_ack="" t=0 t_notready="" t_terminating="" t_replaced=""
[ "$ONLY" = baseline ] || run_kubefence
[ "$ONLY" = kubefence ] || run_baseline

# ------------------------------------------------------------ results
for n in kill freeze base bthaw; do for p in "${PATHS[@]}"; do touch "$WORK/$n.$p.ms"; done; done
rel() { [ -n "$1" ] && ms "$1" "$t" || echo null; } # US: ms from the baseline freeze, or null
BF=$(jq -n --argjson w "$WINDOW" --arg ack "${bfreeze_ack:-}" --argjson nr "$(rel "$t_notready")" \
	--argjson term "$(rel "$t_terminating")" --argjson repl "$(rel "$t_replaced")" --arg node "$bnode" \
	--arg phase "$BPHASE" --argjson thaw "$(dist "$WORK/bthaw.clusterip.ms")" \
	--argjson thawe "$(dist "$WORK/bthaw.endpoints.ms")" '{
	n: 1, window_s: $w,
	recovered_within_window: ($ack != ""),
	first_ack_ms: (if $ack == "" then null else ($ack|tonumber) end),
	result: (if $ack == "" then "none within \($w) s" else "first ack after \($ack) ms" end),
	node: $node,
	node_not_ready_ms: $nr, pod_terminating_ms: $term, pod_replaced_ms: $repl,
	pod_at_end_of_window: $phase,
	after_thaw: {what: "from the thaw to the first acknowledged write (the kubelet back: it kills the old container, the pod is deleted, the StatefulSet recreates it)", clusterip: $thaw, endpoints: $thawe}}')
K=$(dist "$WORK/kill.clusterip.ms")
F=$(dist "$WORK/freeze.clusterip.ms")
B=$(dist "$WORK/base.clusterip.ms")
KE=$(dist "$WORK/kill.endpoints.ms")
FE=$(dist "$WORK/freeze.endpoints.ms")
BE=$(dist "$WORK/base.endpoints.ms")
mkdir -p "$(dirname "$OUT")"
jq -n --argjson k "$K" --argjson f "$F" --argjson b "$B" --argjson bf "$BF" --arg at "$(date -u +%FT%TZ)" \
	--argjson ke "$KE" --argjson fe "$FE" --argjson be "$BE" --arg svcip "$SVC_IP" \
	--arg epoch "$EPOCH" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" \
	--arg verdict "$VERDICT" --arg linops "$LIN_OPS" --argjson lease "$LEASE_MS" --arg methods "$METHODS" \
	--arg nf "$FREEZES" --arg nk "$KILLS" --arg nbk "$BKILLS" --argjson w "$WINDOW" \
	--arg freezes "${FREEZE_NOTES[*]}" --arg obs "${WATCH_OBS:-0}" --arg two "${TWO_MASTERS:-0}" '
	def ratio($b; $k): {
		p50: (if $k.n > 0 and $k.p50_ms > 0 and $b.n > 0 then (($b.p50_ms / $k.p50_ms) * 10 | round / 10) else null end),
		p99: (if $k.n > 0 and $k.p99_ms > 0 and $b.n > 0 then (($b.p99_ms / $k.p99_ms) * 10 | round / 10) else null end)};
	def target($f): {target_ms: ($lease + 5000), what: "first acknowledged write <= lease.duration_ms + 5 s",
		max_ms: $f.max_ms, met: (if $f.n > 0 then $f.max_ms <= ($lease + 5000) else null end)};
	{
	benchmark: "single-replica-lab",
	at: $at,
	setup: {kubernetes: "v1.20.2 lab (lab/lab.sh), 2 nodes, kube-proxy (iptables mode, default sync periods) on each node and on the Service gateway", cpus: ($cpus|tonumber), kernel: $kernel,
		topology: "manifests/examples/single-replica: one MetaService pod (StatefulSet, replicas: 1) on the lab LUN, the agent on both nodes, agent.fence_without_service = true",
		lease_ms: $lease, renew_deadline_ms: 1500, retry_ms: 250,
		fence_methods: $methods, store: "raw-LUN backend (--store iscsi:// on the lab tgtd, the LUN scsi-pr fences)",
		clients: ("two tests/e2e/kf-labclient workloads side by side, 0.5 ms between acknowledged writes: clusterip = PUTs to the Service ClusterIP " + $svcip + ":7480 (the top-level results), endpoints = PUTs to the address in the Service Endpoints (via_endpoints)"),
		freeze: ("the pod'"'"'s node frozen (lab.sh freeze); t0 = before the freeze; a sample = the first write acknowledged after the freeze was complete; thawed after 5 s. Node moves: " + $freezes),
		kill: "ctr -n k8s.io task kill -s SIGKILL of the MetaService container (what docker kill does), restarted in place by its kubelet; t0 = just before ctr started; a sample = the first write acknowledged after ctr returned; a fresh pod (restartCount 0) for every kill",
		baseline: "no agents: the same StatefulSet shape (replicas: 1, TCP readiness probe every 2 s) running kubefence-metad --standalone --epoch 1 on a hostPath directory, namespace baseline; tolerations of unreachable/not-ready 30 s (default 300 s) so that the eviction falls inside the window",
		last_epoch: ($epoch|tonumber),
		args: {freezes: ($nf|tonumber), kills: ($nk|tonumber), baseline_kills: ($nbk|tonumber), window_s: $w}},
	linearizability: {checker: "tests/lincheck/kf-lincheck", ops: ($linops|tonumber), verdict: $verdict},
	role_master_watch: {observations: ($obs|tonumber), two_pods_labelled: ($two|tonumber)},
	kubefence_node_freeze: $f,
	kubefence_node_freeze_target: target($f),
	kubefence_container_kill: $k,
	baseline_node_freeze: $bf,
	baseline_container_kill: $b,
	ratio_baseline_over_kubefence: {container_kill: ratio($b; $k)},
	via_endpoints: {
		kubefence_node_freeze: $fe,
		kubefence_node_freeze_target: target($fe),
		kubefence_container_kill: $ke,
		baseline_container_kill: $be,
		ratio_baseline_over_kubefence: {container_kill: ratio($be; $ke)}}
}' >"$OUT"
jq -c '{clusterip: {freeze: .kubefence_node_freeze | {n, p50_ms, max_ms}, target: .kubefence_node_freeze_target, kill: .kubefence_container_kill | {n, p50_ms, p99_ms}, baseline_kill: .baseline_container_kill | {n, p50_ms, p99_ms}, baseline_freeze: .baseline_node_freeze.result}}' "$OUT"
jq -c '.via_endpoints | {endpoints: {freeze: .kubefence_node_freeze | {n, p50_ms, max_ms}, kill: .kubefence_container_kill | {n, p50_ms, p99_ms}, baseline_kill: .baseline_container_kill | {n, p50_ms, p99_ms}}}' "$OUT"
echo "bench: wrote $OUT"
[ "${TWO_MASTERS:-0}" = 0 ] || die "two pods were labelled role=master at some observation ($WORK/watch.log)"
[ "$LIN_RC" = 0 ] || die "kf-lincheck: the kubefence clients' histories are not linearizable (verdict $VERDICT, above)"
