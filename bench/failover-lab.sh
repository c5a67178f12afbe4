#!/usr/bin/env bash
# Failover benchmark in the real Kubernetes lab (lab/lab.sh), `make bench-lab`.
#
#   bash bench/failover-lab.sh [--kills N] [--freezes N] [--baseline-kills N] [--out FILE]
#
# Every sample is measured on two paths at once, by two clients writing
# continuously side by side (tests/e2e/kf-labclient workload):
#   clusterip  through the Service's ClusterIP, routed by the lab's
#              kube-proxy (iptables mode), as a client of a real cluster;
#   endpoints  through the Service's Endpoints read from the API (what
#              kube-proxy follows), without kube-proxy's own delay.
# 1. kubefence (the lab overlay, tgtd on the lab portal): N SIGKILLs of the
#    master's container through its node's containerd (lab.sh kill-master);
#    each sample is the time from the kill (just before `ctr task kill`
#    started) to the first write acknowledged after ctr returned (the old
#    master was dead by then).  The killed pod comes back as standby:
#    restarted in place the first time, recreated when its kubelet would
#    back off.
# 2. kubefence, node freeze: the master's node frozen (cgroup freezer); from
#    the freeze to the first write acknowledged after it was complete.
# 2b. the same kills with the MetaService's store switched to the directory
#    backend (the StatefulSet patched to --data-dir on a shared hostPath), so
#    both backends are measured in one run (`backends` in the JSON; DKILLS,
#    default the same N).
# 3. The baseline without kubefence: ONE MetaService pod
#    (`kubefence-metad --standalone --epoch 1`, no readiness probe, so its
#    endpoint is back as soon as the container runs), the same kill, restarted
#    in place by its kubelet; the same two clients, through that Service's
#    ClusterIP and its Endpoints.  Each sample uses a fresh pod, so that no sample waits out the
#    kubelet's CrashLoopBackOff (the baseline's best case).
# The kubefence clients' operations (with 20 % reads) are recorded and judged
# together by kf-lincheck; the verdict goes into the JSON, and a violation (printed)
# makes the benchmark exit 1 after writing it.
# Writes FILE (default bench/results/failover-lab.json): the distributions
# through the ClusterIP (the top-level keys) and through the Endpoints
# (`via_endpoints`), and the ratios baseline/kubefence.  Never asserts timing.  Refuses to run
# when a lab is already up; always takes the lab down.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
KILLS=20
FREEZES=3
BKILLS=
OUT=$top_builddir/bench/results/failover-lab.json
while [ $# -gt 0 ]; do
	case $1 in
	--kills) KILLS=$2; shift 2 ;;
	--freezes) FREEZES=$2; shift 2 ;;
	--baseline-kills) BKILLS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*) echo "usage: $0 [--kills N] [--freezes N] [--baseline-kills N] [--out FILE]" >&2; exit 2 ;;
	esac
done
BKILLS=${BKILLS:-$KILLS}
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
# shellcheck source=bench/lab-bench.sh
. "$top_srcdir/bench/lab-bench.sh"

e2e_up >/dev/null || die "lab up"
e2e_deploy || die "deploy"

PATHS=(clusterip endpoints)
# sample NAME ACKS-PREFIX T0_US AFTER_US [OLD_ADDR]: for each path, the first
# ack after AFTER_US (not from OLD_ADDR), in ms from T0_US, appended to
# $WORK/NAME.PATH.ms; prints "PATH ms ..." for the log.
sample() {
	local name=$1 acks=$2 t0=$3 after=$4 old=${5:-} p a v out=""
	for p in "${PATHS[@]}"; do
		a=$(wait_ack_after "$acks.$p" "$after" 60 "$old") || {
			echo "$name: no ack through the $p path" >&2
			return 1
		}
		v=$(ms "${a%% *}" "$t0")
		echo "$v" >>"$WORK/$name.$p.ms"
		out="$out $p $v ms"
	done
	echo "${out# }"
}

# kills NAME ACKS-PREFIX N WHAT: N SIGKILLs of the master's container, each
# sampled as NAME; the killed pod comes back as standby (restarted in place
# the first time, recreated when its kubelet would back off).
kills() {
	local name=$1 acks=$2 n=$3 what=$4 i old old_ip before r
	for i in $(seq 1 "$n"); do
		wait_both_ready 90 || die "not ready before $what kill $i"
		old=$(masters)
		old_ip=$(pod_ip "$old")
		before=$(restarts "$old")
		kill_master_at || die "$what kill $i"
		wait_new_master "$old" 30 >/dev/null || die "no new master after $what kill $i"
		r=$(sample "$name" "$acks" "$KILL_US" "$KILL_DONE_US" "$old_ip:7480") || die "no ack after $what kill $i"
		say "$what kill $i/$n: $r"
		if [ "$before" = 0 ]; then wait_restarted "$old" 0 60 || die "$old not restarted"; else recycle "$old"; fi
	done
}

# ------------------------------------------------------------ kubefence: kills
ACKS=$WORK/acks
WLS=()
for p in "${PATHS[@]}"; do
	bg_start "$CLIENT" --via "$p" --pause-us 500 --history "$HIST/kubefence-$p.hist" --client "workload-$p" \
		--prefix "$p-" workload "$ACKS.$p" >/dev/null
	WLS+=("$BG_PID")
done
for p in "${PATHS[@]}"; do wait_ack_after "$ACKS.$p" 0 30 >/dev/null || die "workload ($p)"; done
SVC_IP=$(kc get service -n $NS metaservice -o jsonpath='{.spec.clusterIP}')
say "clients: through the ClusterIP $SVC_IP:7480 and through the Endpoints"
kills kill "$ACKS" "$KILLS" kubefence

# ------------------------------------------------------------ kubefence: freezes
for i in $(seq 1 "$FREEZES"); do
	wait_both_ready 120 || die "not ready before freeze $i"
	old=$(masters)
	old_ip=$(pod_ip "$old")
	node=$(pod_node "$old")
	t=$(now_us)
	bash "$LAB" freeze "$node" >/dev/null || die "freeze"
	r=$(sample freeze "$ACKS" "$t" "$(now_us)" "$old_ip:7480") || die "no ack after freeze $i"
	say "kubefence freeze $i/$FREEZES ($node): $r"
	while [ $(($(now_us) - t)) -lt 4000000 ]; do sleep 0.2; done
	bash "$LAB" thaw "$node" >/dev/null || die "thaw"
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

# ------------------------------------------------------------ kubefence: the directory backend
# The same kills with the MetaService's store on a directory the pods share
# (a hostPath, one directory on this one machine: storage setup (b), fenced by
# the epoch barrier and the write grant, not by the target).  A store of its
# own, so its clients' history is judged on its own.
DKILLS=${DKILLS:-$KILLS}
DIRSTORE=/var/lib/kubefence-lab/bench-dir-store
rm -rf "$DIRSTORE"
kc patch statefulset -n $NS metaservice --type json -p "[
	{\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/command\", \"value\":
		[\"kubefence-metad\", \"--control-socket\", \"/run/kubefence/control.sock\", \"--data-dir\", \"/data\", \"--listen\", \"0.0.0.0:7480\"]},
	{\"op\": \"add\", \"path\": \"/spec/template/spec/volumes/-\", \"value\":
		{\"name\": \"dirstore\", \"hostPath\": {\"path\": \"$DIRSTORE\", \"type\": \"DirectoryOrCreate\"}}},
	{\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/volumeMounts/-\", \"value\":
		{\"name\": \"dirstore\", \"mountPath\": \"/data\"}}]" >/dev/null || die "patch the StatefulSet to the directory backend"
# the StatefulSet replaces both pods; wait until both run the new template
for _ in $(seq 1 600); do
	cur=$(kc get statefulset -n $NS metaservice -o jsonpath='{.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas}')
	set -- $cur
	[ "${1:-}" = "${2:-x}" ] && [ "${3:-0}" = 2 ] && wait_both_ready 1 && break
	sleep 0.5
done
wait_both_ready 120 || die "the directory-backend MetaServices are not ready"
say "directory backend: both MetaService pods replaced, master $(masters)"
DACKS=$WORK/dacks
WLS=()
for p in "${PATHS[@]}"; do
	bg_start "$CLIENT" --via "$p" --pause-us 500 --history "$HIST/dir-$p.hist" --client "dir-$p" \
		--prefix "dir-$p-" workload "$DACKS.$p" >/dev/null
	WLS+=("$BG_PID")
done
for p in "${PATHS[@]}"; do wait_ack_after "$DACKS.$p" 0 30 >/dev/null || die "dir workload ($p)"; done
kills killdir "$DACKS" "$DKILLS" "kubefence (directory backend)"
for p in "${WLS[@]}"; do bg_stop "$p"; done
"$CLIENT" --timeout-ms 10000 --history "$HIST/dir-final.hist" --client final check "$DACKS.clusterip" "$DACKS.endpoints" \
	>"$WORK/dcheck.out" || die "directory backend: acknowledged writes lost: $(cat "$WORK/dcheck.out")"
say "kubefence (directory backend): $(cat "$WORK/dcheck.out")"
e2e_lincheck benchdir "$HIST/dir-clusterip.hist" "$HIST/dir-endpoints.hist" "$HIST/dir-final.hist" || LIN_RC=$?
DVERDICT=$(jq -r '.verdict // "error"' "$WORK/lincheck.benchdir.json" 2>/dev/null || echo error)
DLIN_OPS=$(jq -r '.ops // 0' "$WORK/lincheck.benchdir.json" 2>/dev/null || echo 0)

# ------------------------------------------------------------ baseline
# Without kubefence: take the agents away (so nothing else moves), then one
# plain MetaService pod and a Service for it, in their own namespace.
kc delete daemonset -n $NS kubefence-agent --wait=false >/dev/null
kc delete statefulset -n $NS metaservice --wait=false >/dev/null
kc create namespace baseline >/dev/null
for i in $(seq 1 100); do kc get serviceaccount default -n baseline >/dev/null 2>&1 && break; sleep 0.2; done
baseline_pod() {
	cat <<-EOF | kc apply -f - >/dev/null
		apiVersion: v1
		kind: Pod
		metadata: {name: meta-baseline, namespace: baseline, labels: {app: meta-baseline}}
		spec:
		  nodeName: lab-node-1
		  terminationGracePeriodSeconds: 1
		  containers:
		  - name: metad
		    image: kubefence/metad:lab
		    imagePullPolicy: Never
		    command: [kubefence-metad, --standalone, --epoch, "1", --data-dir, /data, --listen, "0.0.0.0:7480"]
		    ports: [{name: client, containerPort: 7480}]
		    volumeMounts: [{name: data, mountPath: /data}]
		  volumes: [{name: data, emptyDir: {}}]
	EOF
}
cat <<-EOF | kc apply -f - >/dev/null
	apiVersion: v1
	kind: Service
	metadata: {name: meta-baseline, namespace: baseline}
	spec:
	  selector: {app: meta-baseline}
	  ports: [{name: client, port: 7480, targetPort: client}]
EOF
BACKS=$WORK/base-acks
for i in $(seq 1 "$BKILLS"); do
	kc delete pod -n baseline meta-baseline --grace-period=0 --force >/dev/null 2>&1 || true
	for _ in $(seq 1 100); do kc get pod -n baseline meta-baseline >/dev/null 2>&1 || break; sleep 0.1; done
	baseline_pod
	kc wait -n baseline --for=condition=Ready pod/meta-baseline --timeout=60s >/dev/null || die "baseline pod not Ready"
	BWS=()
	for p in "${PATHS[@]}"; do
		rm -f "$BACKS.$p"
		bg_start "$CLIENT" --via "$p" --namespace baseline --service meta-baseline --pause-us 500 \
			--prefix "b$i-$p-" workload "$BACKS.$p" >/dev/null
		BWS+=("$BG_PID")
	done
	for p in "${PATHS[@]}"; do wait_ack_after "$BACKS.$p" 0 30 >/dev/null || die "baseline workload ($p)"; done
	sleep 0.3
	kill_pod_at meta-baseline baseline || die "baseline kill"
	r=$(sample base "$BACKS" "$KILL_US" "$KILL_DONE_US") || die "baseline: no ack after kill $i"
	say "baseline kill $i/$BKILLS: $r (restartCount $(kc get pod -n baseline meta-baseline -o jsonpath='{.status.containerStatuses[0].restartCount}'))"
	for p in "${BWS[@]}"; do bg_stop "$p"; done
done

# ------------------------------------------------------------ results
for n in kill freeze base killdir; do for p in "${PATHS[@]}"; do touch "$WORK/$n.$p.ms"; done; done
KD=$(dist "$WORK/killdir.clusterip.ms")
KDE=$(dist "$WORK/killdir.endpoints.ms")
K=$(dist "$WORK/kill.clusterip.ms")
F=$(dist "$WORK/freeze.clusterip.ms")
B=$(dist "$WORK/base.clusterip.ms")
KE=$(dist "$WORK/kill.endpoints.ms")
FE=$(dist "$WORK/freeze.endpoints.ms")
BE=$(dist "$WORK/base.endpoints.ms")
mkdir -p "$(dirname "$OUT")"
jq -n --argjson k "$K" --argjson f "$F" --argjson b "$B" --arg at "$(date -u +%FT%TZ)" \
	--argjson ke "$KE" --argjson fe "$FE" --argjson be "$BE" --arg svcip "$SVC_IP" \
	--arg epoch "$EPOCH" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" \
	--arg verdict "$VERDICT" --arg linops "$LIN_OPS" \
	--argjson kd "$KD" --argjson kde "$KDE" --arg dverdict "$DVERDICT" --arg dlinops "$DLIN_OPS" '
	def ratio($b; $k): {
		p50: (if $k.n > 0 and $k.p50_ms > 0 then (($b.p50_ms / $k.p50_ms) * 10 | round / 10) else null end),
		p99: (if $k.n > 0 and $k.p99_ms > 0 then (($b.p99_ms / $k.p99_ms) * 10 | round / 10) else null end)};
	{
	benchmark: "failover-lab",
	at: $at,
	setup: {kubernetes: "v1.20.2 lab (lab/lab.sh), 2 nodes, kube-proxy (iptables mode, default sync periods) on each node and on the Service gateway", cpus: ($cpus|tonumber), kernel: $kernel,
		lease_ms: 2000, renew_deadline_ms: 1500, retry_ms: 250,
		fence_methods: "scsi-pr (tgtd on 198.18.0.1:3260), pod-delete", store: "raw-LUN backend (--store iscsi:// on the lab tgtd, the LUN scsi-pr fences)",
		clients: ("two tests/e2e/kf-labclient workloads side by side, 0.5 ms between acknowledged writes: clusterip = PUTs to the Service ClusterIP " + $svcip + ":7480 (reconnecting to it on every error; the top-level results), endpoints = PUTs to the address in the Service Endpoints (re-read from the API on every error; via_endpoints)"),
		kill: "ctr -n k8s.io task kill -s SIGKILL of the container (lab.sh kill-master / kill-pod); t0 = just before ctr started; a sample = the first write acknowledged after ctr returned",
		freeze: "the master node frozen (lab.sh freeze: cgroup v2 cgroup.freeze or the v1 freezer); t0 = before the freeze; a sample = the first write acknowledged after the freeze was complete",
		baseline: "one pod kubefence-metad --standalone --epoch 1, no readiness probe, restarted in place by its kubelet (a fresh pod per sample: no CrashLoopBackOff)",
		last_epoch: ($epoch|tonumber)},
	linearizability: {checker: "tests/lincheck/kf-lincheck", ops: ($linops|tonumber), verdict: $verdict},
	kubefence_container_kill: $k,
	kubefence_node_freeze: $f,
	backends: {
		lun: {what: "--store iscsi:// on the lab tgtd: the target refuses a fenced master (the top-level figures)",
			container_kill: $k, container_kill_via_endpoints: $ke},
		dir: {what: "--data-dir on a directory the pods share (a hostPath on this one machine): the epoch barrier and the grant",
			container_kill: $kd, container_kill_via_endpoints: $kde,
			linearizability: {checker: "tests/lincheck/kf-lincheck", ops: ($dlinops|tonumber), verdict: $dverdict}}},
	baseline_container_kill: $b,
	ratio_baseline_over_kubefence: ratio($b; $k),
	via_endpoints: {
		kubefence_container_kill: $ke,
		kubefence_node_freeze: $fe,
		baseline_container_kill: $be,
		ratio_baseline_over_kubefence: ratio($be; $ke)}
}' >"$OUT"
jq -c '.backends | {lun: .lun.container_kill | {n, p50_ms, p99_ms}, dir: .dir.container_kill | {n, p50_ms, p99_ms}}' "$OUT"
jq -c '{clusterip: {kill: .kubefence_container_kill | {n, p50_ms, p99_ms}, freeze: .kubefence_node_freeze | {n, p50_ms, p99_ms}, baseline: .baseline_container_kill | {n, p50_ms, p99_ms}, ratio: .ratio_baseline_over_kubefence}}' "$OUT"
jq -c '.via_endpoints | {endpoints: {kill: .kubefence_container_kill | {n, p50_ms, p99_ms}, freeze: .kubefence_node_freeze | {n, p50_ms, p99_ms}, baseline: .baseline_container_kill | {n, p50_ms, p99_ms}, ratio: .ratio_baseline_over_kubefence}}' "$OUT"
echo "bench: wrote $OUT"
[ "$LIN_RC" = 0 ] || die "kf-lincheck: the kubefence clients' histories are not linearizable (verdicts: LUN $VERDICT, directory $DVERDICT, above)"
