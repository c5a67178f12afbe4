#!/usr/bin/env bash
# A rolling update of the agent DaemonSet in the real Kubernetes lab, with
# agent.on_sigterm = handover, = keep, and = keep with agent.restart_grace_ms
# (`make bench-rolling-update`).
#
#   bash bench/rolling-update-lab.sh [--rollouts N]
#                                    [--modes "handover keep keep-grace"]
#                                    [--grace-ms MS] [--settle S] [--logs DIR]
#                                    [--out FILE]
#
# For each mode, in the order given (default: handover, the lab's default,
# then keep, the same-node succession through agent.lock_file, which the lab
# overlay sets, then keep-grace: keep with agent.restart_grace_ms = MS,
# default 90000, the parting renewal that covers the time the node has no
# agent), N (default 3) rolling
# updates of the agent DaemonSet across both nodes: `kubectl rollout restart
# daemonset/kubefence-agent`, `kubectl rollout status` until it is complete,
# then both services connected and one master, then S seconds more (default
# 3: a Lease that expired meanwhile is taken by then).  A mode is set by
# rewriting the key in the agents' ConfigMap and one rollout more, which is
# not measured (the agents it replaces still act on the mode before); the
# mounted agent.conf of both new agents is checked.  Per rollout, from the
# start of the restart to the end of the window:
#   new_terms     the Lease's epoch (spec.leaseTransitions) changes: each is a
#                 failover (a new term, the previous holder owed a fence); a
#                 succession keeps the epoch;
#   node_moves    changes of the node holding the Lease (kubefence.io/node);
#   successions   the same epoch on the same node taken up by another
#                 incarnation of the agent (kubefence.io/incarnation);
#   releases      observations of the Lease with no holder;
#   longest_renew_gap_ms  the longest time between two renewTimes written
#                 to the Lease: beyond lease.duration_ms the other node may
#                 take it;
#   longest_pause_ms  the longest time without an acknowledged write, per
#                 client path (below), the window's ends included;
#   holder_node_agent_replaced_ms  on the node that held the Lease before,
#                 from the old agent pod seen deleted to the new agent's
#                 container seen running (pods polled every 0.1 s): what a
#                 succession has to fit into lease.duration_ms.
# The Lease is read by one `kubectl get --watch` for the whole run, every
# version of it; the windows are cut by its line count.
# Two clients write continuously side by side (tests/e2e/kf-labclient
# workload, 20 % reads, as bench/failover-lab.sh): clusterip (through the
# Service's ClusterIP, kube-proxy; the top-level figures) and endpoints
# (the address in the Service's Endpoints).  Their operations are recorded
# and judged by kf-lincheck; a violation makes the benchmark exit 1 after
# writing the JSON, as does a watcher that saw two pods labelled
# role=master.  Writes FILE (default bench/results/rolling-update-lab.json);
# --logs DIR keeps the agents' and metads' logs, the Lease's versions and
# the clients' files.  Never asserts timing.  Refuses to run when a lab is
# already up; always takes the lab down.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
ROLLOUTS=3
MODES="handover keep keep-grace"
GRACE_MS=90000
SETTLE=3
LOGS=""
OUT=$top_builddir/bench/results/rolling-update-lab.json
while [ $# -gt 0 ]; do
	case $1 in
	--rollouts) ROLLOUTS=$2; shift 2 ;;
	--modes) MODES=$2; shift 2 ;;
	--grace-ms) GRACE_MS=$2; shift 2 ;;
	--settle) SETTLE=$2; shift 2 ;;
	--logs) LOGS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*)
		echo "usage: $0 [--rollouts N] [--modes \"handover keep keep-grace\"] [--grace-ms MS] [--settle S] [--logs DIR] [--out FILE]" >&2
		exit 2
		;;
	esac
done
for m in $MODES; do
	case $m in handover | keep | keep-grace) ;; *) echo "bench: --modes: handover, keep and/or keep-grace, not $m" >&2; exit 2 ;; esac
done
[[ $GRACE_MS =~ ^[0-9]+$ ]] && [ "$GRACE_MS" -gt 0 ] || { echo "bench: --grace-ms: a positive number of ms, not $GRACE_MS" >&2; exit 2; }
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
# shellcheck source=bench/lab-bench.sh
. "$top_srcdir/bench/lab-bench.sh"

# On exit, before the lab goes down: what --logs keeps.
bench_before_cleanup() {
	[ -n "$LOGS" ] || return 0
	bench_keep_logs "$LOGS" '*.log' '*.out' lease.watch agents.watch 'acks.*' 'lincheck.*'
	# the containers' log files themselves (those of pods that still exist)
	# (each node's own /var/log/pods: lab/lib/node.sh, ensure_node_mntns)
	cp -r /var/lib/kubefence-lab/nodes/*/log/pods/${NS}_* "$LOGS/" 2>/dev/null || true
}

e2e_up >/dev/null || die "lab up"
e2e_deploy || die "deploy"
LEASE_MS=$(agent_conf_value lease.duration_ms)
RENEW_MS=$(agent_conf_value lease.renew_deadline_ms)
RETRY_MS=$(agent_conf_value lease.retry_ms)
LOCK_FILE=$(agent_conf_value agent.lock_file)
[ -n "$LOCK_FILE" ] && [ "$LOCK_FILE" != none ] || say "note: agent.lock_file is not set: keep cannot continue a term"

# ------------------------------------------------------------ observers
bg_start "$CLIENT" --interval-ms 50 watch "$WORK/watch.log" >"$WORK/watch.out"
WATCH_PID=$BG_PID
# every version of the Lease, one line each
LEASE_W=$WORK/lease.watch
lease_watch() {
	bg_start "$E2E_KUBECTL" --kubeconfig /var/lib/kubefence-lab/admin.kubeconfig get lease -n $NS metaservice \
		--watch -o jsonpath='e={.spec.leaseTransitions} n={.metadata.annotations.kubefence\.io/node} i={.metadata.annotations.kubefence\.io/incarnation} r={.spec.renewTime} h={.spec.holderIdentity}{"\n"}' \
		>>"$LEASE_W" 2>>"$WORK/lease-watch.log"
	LEASE_PID=$BG_PID
}
: >"$LEASE_W"
lease_watch
lease_lines() { wc -l <"$LEASE_W"; }
# the watch ends when the API server closes it: start another
lease_watch_alive() { kill -0 "$LEASE_PID" 2>/dev/null || { say "note: the Lease watch ended; a new one"; lease_watch; }; }

# the agent pods, every 0.1 s, each change a line "realtime_us
# name,node,deletionTimestamp,startedAt(running),ready;..."
AGENTS_W=$WORK/agents.watch
agents_poll() {
	local cur last=""
	while :; do
		cur=$(kc get pods -n $NS -l app=kubefence-agent -o jsonpath='{range .items[*]}{.metadata.name},{.spec.nodeName},{.metadata.deletionTimestamp},{.status.containerStatuses[0].state.running.startedAt},{.status.containerStatuses[0].ready};{end}' 2>/dev/null) || cur=""
		[ -n "$cur" ] && [ "$cur" != "$last" ] && echo "$(now_us) $cur" >>"$AGENTS_W" && last=$cur
		sleep 0.1
	done
}
: >"$AGENTS_W"
bg_start agents_poll
AGENTS_PID=$BG_PID
# agent_gap NODE T0_US T1_US: on NODE, from the first sight of the old agent
# pod being deleted to the first sight of its successor's container
# running, in ms (polled: +-0.1 s and a request), or -1
agent_gap() {
	awk -v node="$1" -v t0="$2" -v t1="$3" '
		{
			n = split($2, pods, ";")
			for (i = 1; i <= n; i++) {
				if (split(pods[i], f, ",") < 2 || f[2] != node) continue
				if ($1 <= t0) { if (f[3] == "") old = f[1]; continue }
				if ($1 > t1) continue
				if (f[1] == old && f[3] != "" && !del) del = $1
				if (f[1] != old && old != "" && f[4] != "" && !run) run = $1
			}
		}
		END { if (del && run) printf "%.1f\n", (run - del) / 1000; else print -1 }' "$AGENTS_W"
}

bench_workloads ru
SVC_IP=$(kc get service -n $NS metaservice -o jsonpath='{.spec.clusterIP}')
say "clients: through the ClusterIP $SVC_IP:7480 and through the Endpoints"

# lease_window FROM TO: the Lease's versions FROM..TO (line numbers; FROM is
# the last one seen before the window): prints "new_terms node_moves
# successions releases longest_renew_gap_ms nodes" (nodes: the holding
# node, each change, joined by >).
lease_window() {
	sed -n "${1},${2}p" "$LEASE_W" | awk '
		function sod(t,  a) { # RFC 3339 (micro)time -> seconds of the day
			if (t == "") return -1
			sub(/^[^T]*T/, "", t); sub(/Z$/, "", t)
			split(t, a, ":")
			return a[1] * 3600 + a[2] * 60 + a[3]
		}
		{
			delete f
			for (i = 1; i <= NF; i++) { k = substr($i, 1, 1); f[k] = substr($i, 3) }
			e = f["e"] + 0; n = f["n"]; inc = f["i"]; h = f["h"]; r = f["r"]
			if (NR == 1) {
				pe = e; pi = inc; ph = h; node = (h != "" ? n : ""); path = node; pr = r; prs = sod(r)
				next
			}
			if (e > pe) terms += e - pe
			if (h != "" && n != node) { if (node != "") moves++; node = n; path = path ">" n }
			if (h != "" && e == pe && inc != pi && pi != "" && ph != "" && n == node) succ++
			if (h == "" && ph != "") rel++
			if (r != "" && r != pr) {
				s = sod(r)
				if (prs >= 0 && s - prs > gap) gap = s - prs
				pr = r; prs = s
			}
			pe = e; pi = inc; ph = h
		}
		END { printf "%d %d %d %d %.1f %s\n", terms, moves, succ, rel, gap * 1000, (path == "" ? "-" : path) }'
}
# longest_pause ACKS_FILE T0_US T1_US: the longest time without an
# acknowledged write in [T0, T1] (its ends included), in ms; only what was
# appended since mark is read.
longest_pause() {
	tail -c +$((${MARK[$1]:-0} + 1)) "$1" 2>/dev/null |
		awk -v t0="$2" -v t1="$3" 'BEGIN { p = t0 }
			$3 <= t0 { next }
			$3 > t1 { exit }
			{ if ($3 - p > m) m = $3 - p; p = $3 }
			END { if (t1 - p > m) m = t1 - p; printf "%.1f", m / 1000 }'
}
# label_moves T0_US T1_US: how often the role=master label went to another
# pod within the window (the watcher's log; a time with no labelled pod in
# between does not count).
label_moves() {
	awk -v t0="$1" -v t1="$2" '$2 !~ /^pods=/ || $2 == "pods=-" { next }
		$1 <= t0 { last = $2; next } $1 > t1 { exit }
		$2 != last { if (last != "") c++; last = $2 } END { print c + 0 }' "$WORK/watch.log"
}

ROWS=$WORK/rows.jsonl
: >"$ROWS"
# rollouts MODE: N measured rolling updates
rollouts() {
	local mode=$1 i l0 l1 t1 lw pc pe lc e0 e1 h0
	for i in $(seq 1 "$ROLLOUTS"); do
		wait_both_ready 120 || die "$mode: not ready before rollout $i"
		sleep 2
		lease_watch_alive
		mark "$ACKS"
		l0=$(lease_lines)
		e0=$(lease_epoch)
		h0=$(kc get lease -n $NS metaservice -o jsonpath='{.metadata.annotations.kubefence\.io/node}')
		agent_rollout 300 || die "$mode: rollout $i did not complete"
		sleep "$SETTLE"
		t1=$(now_us)
		l1=$(lease_lines)
		e1=$(lease_epoch)
		lw=$(lease_window "$((l0 > 0 ? l0 : 1))" "$l1")
		pc=$(longest_pause "$ACKS.clusterip" "$ROLLOUT_T0_US" "$t1")
		pe=$(longest_pause "$ACKS.endpoints" "$ROLLOUT_T0_US" "$t1")
		lc=$(label_moves "$ROLLOUT_T0_US" "$t1")
		ag=$(agent_gap "$h0" "$ROLLOUT_T0_US" "$t1")
		set -- $lw
		say "$mode rollout $i/$ROLLOUTS: $(ms "$ROLLOUT_DONE_US" "$ROLLOUT_T0_US") ms (ready after $(ms "$ROLLOUT_READY_US" "$ROLLOUT_T0_US") ms);" \
			"epoch $e0 -> $e1: new terms $1, node moves $2 ($6), successions $3, releases $4, longest renewTime gap $5 ms;" \
			"longest pause in acknowledged writes: clusterip $pc ms, endpoints $pe ms; label moves $lc;" \
			"on $h0 the old agent pod deleted -> the new one running: $ag ms"
		jq -nc --arg mode "$mode" --argjson i "$i" --argjson r "$(ms "$ROLLOUT_DONE_US" "$ROLLOUT_T0_US")" \
			--argjson rr "$(ms "$ROLLOUT_READY_US" "$ROLLOUT_T0_US")" --argjson w "$(ms "$t1" "$ROLLOUT_T0_US")" \
			--argjson e0 "${e0:-0}" --argjson e1 "${e1:-0}" --argjson terms "$1" --argjson moves "$2" \
			--argjson succ "$3" --argjson rel "$4" --argjson gap "$5" --arg nodes "$6" --arg h0 "$h0" \
			--argjson pc "$pc" --argjson pe "$pe" --argjson lc "$lc" --argjson ag "$ag" '{
			mode: $mode, rollout: $i, rollout_ms: $r, ready_ms: $rr, window_ms: $w,
			holder_node_before: $h0, holder_nodes: $nodes, epoch_before: $e0, epoch_after: $e1,
			new_terms: $terms, node_moves: $moves, successions: $succ, releases: $rel,
			longest_renew_gap_ms: $gap, label_moves: $lc,
			holder_node_agent_replaced_ms: (if $ag < 0 then null else $ag end),
			longest_pause_ms: {clusterip: $pc, endpoints: $pe}}' >>"$ROWS"
	done
}

# mode_keys MODE: "ON_SIGTERM GRACE_MS", what the mode sets
mode_keys() {
	case $1 in
	handover) echo "handover 0" ;;
	keep) echo "keep 0" ;;
	keep-grace) echo "keep $GRACE_MS" ;;
	esac
}
MODE_NOTES=()
for mode in $MODES; do
	read -r want_sig want_grace < <(mode_keys "$mode")
	cur="$(agent_conf_value agent.on_sigterm) $(agent_conf_value agent.restart_grace_ms)"
	if [ "$cur" != "$want_sig $want_grace" ]; then
		# in the order --config-test accepts: the grace needs keep
		if [ "$want_grace" = 0 ]; then
			agent_conf_set agent.restart_grace_ms 0 || die "set agent.restart_grace_ms = 0"
			agent_conf_set agent.on_sigterm "$want_sig" || die "set agent.on_sigterm = $want_sig"
		else
			agent_conf_set agent.on_sigterm "$want_sig" || die "set agent.on_sigterm = $want_sig"
			agent_conf_set agent.restart_grace_ms "$want_grace" || die "set agent.restart_grace_ms = $want_grace"
		fi
		wait_both_ready 120 || die "not ready before the switch to $mode"
		agent_rollout 300 || die "the rollout to $mode did not complete"
		for _ in $(seq 1 50); do
			agent_mounted_conf_has "agent.on_sigterm = $want_sig" &&
				agent_mounted_conf_has "agent.restart_grace_ms = $want_grace" && break
			sleep 0.2
		done
		agent_mounted_conf_has "agent.on_sigterm = $want_sig" &&
			agent_mounted_conf_has "agent.restart_grace_ms = $want_grace" ||
			die "the new agents do not mount agent.on_sigterm = $want_sig, agent.restart_grace_ms = $want_grace"
		say "$mode (agent.on_sigterm = $want_sig, agent.restart_grace_ms = $want_grace): set, both agents replaced (not measured: $(ms "$ROLLOUT_DONE_US" "$ROLLOUT_T0_US") ms)"
		MODE_NOTES+=("$mode: agent.on_sigterm = $want_sig, agent.restart_grace_ms = $want_grace set in the ConfigMap, then one unmeasured rollout")
	else
		say "$mode: the lab's configuration"
		MODE_NOTES+=("$mode: the lab's configuration")
	fi
	rollouts "$mode"
done

# ------------------------------------------------------------ checks
for p in "${WLS[@]}"; do bg_stop "$p"; done
"$CLIENT" --timeout-ms 10000 --history "$HIST/ru-final.hist" --client final check "$ACKS.clusterip" "$ACKS.endpoints" \
	>"$WORK/check.out" || die "acknowledged writes lost: $(cat "$WORK/check.out")"
say "clients: $(cat "$WORK/check.out")"
LIN_RC=0
e2e_lincheck bench "$HIST/ru-clusterip.hist" "$HIST/ru-endpoints.hist" "$HIST/ru-final.hist" || LIN_RC=$?
VERDICT=$(jq -r '.verdict // "error"' "$WORK/lincheck.bench.json" 2>/dev/null || echo error)
LIN_OPS=$(jq -r '.ops // 0' "$WORK/lincheck.bench.json" 2>/dev/null || echo 0)
bg_stop "$WATCH_PID"
bg_stop "$LEASE_PID"
bg_stop "$AGENTS_PID"
WATCH_OBS=$(awk '{print $2}' "$WORK/watch.out")
TWO_MASTERS=$(grep -c VIOLATION "$WORK/watch.log" || true)

# ------------------------------------------------------------ results
mkdir -p "$(dirname "$OUT")"
jq -s --arg at "$(date -u +%FT%TZ)" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" --arg svcip "$SVC_IP" \
	--argjson lease "$LEASE_MS" --argjson renew "$RENEW_MS" --argjson retry "$RETRY_MS" --arg lock "$LOCK_FILE" \
	--argjson n "$ROLLOUTS" --argjson settle "$SETTLE" --arg notes "$(printf '%s; ' "${MODE_NOTES[@]}")" \
	--arg grace "$GRACE_MS" --arg verdict "$VERDICT" --arg linops "$LIN_OPS" --arg obs "${WATCH_OBS:-0}" --arg two "${TWO_MASTERS:-0}" '
	def mx(f): (map(f) | max);
	def summary($m): (map(select(.mode == $m))) as $r | if ($r | length) == 0 then null else {
		rollouts: ($r | length),
		new_terms: ($r | map(.new_terms) | add), node_moves: ($r | map(.node_moves) | add),
		successions: ($r | map(.successions) | add), releases: ($r | map(.releases) | add),
		label_moves: ($r | map(.label_moves) | add),
		rollouts_without_failover: ($r | map(select(.new_terms == 0)) | length),
		longest_pause_ms: {clusterip: ($r | mx(.longest_pause_ms.clusterip)), endpoints: ($r | mx(.longest_pause_ms.endpoints)),
			per_rollout_clusterip: ($r | map(.longest_pause_ms.clusterip)), per_rollout_endpoints: ($r | map(.longest_pause_ms.endpoints))},
		longest_renew_gap_ms: ($r | mx(.longest_renew_gap_ms)),
		holder_node_agent_replaced_ms: ($r | map(.holder_node_agent_replaced_ms)),
		rollout_ms: ($r | map(.rollout_ms)),
		per_rollout: $r} end;
	. as $rows | summary("handover") as $h | summary("keep") as $k | summary("keep-grace") as $g | {
	benchmark: "rolling-update-lab",
	at: $at,
	setup: {kubernetes: "v1.20.2 lab (lab/lab.sh), 2 nodes, kube-proxy (iptables mode) on each node and on the Service gateway", cpus: ($cpus|tonumber), kernel: $kernel,
		lease_ms: $lease, renew_deadline_ms: $renew, retry_ms: $retry, lock_file: $lock,
		store: "raw-LUN backend (--store iscsi:// on the lab tgtd)", fence_methods: "scsi-pr, pod-delete",
		rollout: "kubectl rollout restart daemonset/kubefence-agent (updateStrategy RollingUpdate, maxUnavailable 1), kubectl rollout status, then both services connected and one master, then the settle time; the window is from just before the restart to the end of the settle",
		settle_s: $settle, rollouts_per_mode: $n, modes: $notes,
		failover: "a new term: a change of the Lease epoch (spec.leaseTransitions), every version of the Lease read by a watch",
		clients: ("two tests/e2e/kf-labclient workloads side by side, 0.5 ms between acknowledged writes: clusterip = the Service ClusterIP " + $svcip + ":7480, endpoints = the address in the Service Endpoints")},
	linearizability: {checker: "tests/lincheck/kf-lincheck", ops: ($linops|tonumber), verdict: $verdict},
	role_master_watch: {observations: ($obs|tonumber), two_pods_labelled: ($two|tonumber)},
	handover: $h,
	keep: $k,
	"keep-grace": $g,
	grace_ms: ($grace|tonumber),
	keep_vs_handover: (if $h != null and $k != null then {
		new_terms: {handover: $h.new_terms, keep: $k.new_terms},
		longest_pause_clusterip_ms: {handover: $h.longest_pause_ms.clusterip, keep: $k.longest_pause_ms.clusterip},
		longest_pause_endpoints_ms: {handover: $h.longest_pause_ms.endpoints, keep: $k.longest_pause_ms.endpoints},
		keep_worse: ($k.new_terms > $h.new_terms or $k.longest_pause_ms.clusterip > $h.longest_pause_ms.clusterip)} else null end)
}' "$ROWS" >"$OUT"
jq -c '{handover: (.handover // {} | {new_terms, node_moves, successions, longest_pause_ms: (.longest_pause_ms // {} | {clusterip, endpoints}), longest_renew_gap_ms}),
	keep: (.keep // {} | {new_terms, node_moves, successions, longest_pause_ms: (.longest_pause_ms // {} | {clusterip, endpoints}), longest_renew_gap_ms}),
	"keep-grace": (."keep-grace" // {} | {new_terms, node_moves, successions, longest_pause_ms: (.longest_pause_ms // {} | {clusterip, endpoints}), longest_renew_gap_ms}),
	lincheck: .linearizability.verdict, two_masters: .role_master_watch.two_pods_labelled}' "$OUT"
echo "bench: wrote $OUT"
[ "${TWO_MASTERS:-0}" = 0 ] || die "two pods were labelled role=master at some observation ($WORK/watch.log)"
[ "$LIN_RC" = 0 ] || die "kf-lincheck: the clients' histories are not linearizable (verdict $VERDICT, above)"
