#!/usr/bin/env bash
# Restarts that should cost no failover, in the real Kubernetes lab
# (`make bench-lab-restarts`): the leader's agent killed, and the iSCSI
# target restarted.
#
#   bash bench/restarts-lab.sh [--agent-kills N] [--repeat-kills N]
#                              [--tgtd-restarts N] [--logs DIR] [--out FILE]
#
# 1. N (default 6) SIGKILLs of the leader's agent container (through its
#    node's containerd, as lab.sh kill-pod), each of an agent container
#    that never ran before (restartCount 0: its kubelet restarts it at
#    once; one that was killed before is deleted first, so the DaemonSet
#    makes a fresh pod, which hands the term over): the kubelet restarts
#    it, the new incarnation takes the node lock (agent.lock_file) and
#    continues the term (same epoch, same holder, `succession=continued`).
#    Measured: the longest pause between acknowledged writes from the kill
#    to 5 s after, per client path; the time from the kill to the new
#    incarnation's event=leading line; whether the term moved.
# 2. N (default 2) SIGKILLs of a leader's agent container that was killed
#    moments before: its kubelet restarts it only after CrashLoopBackOff
#    (10 s, then 20 s, ...), so the Lease expires and the other node takes
#    over.  Measured the same way.
# 3. N (default 5) restarts of tgtd, 15 s apart at least (tests/e2e/
#    lab-tgtd.sh stop, start: it keeps reservations in memory, so the
#    restarted target has none; the MetaService's store is on its LUN):
#    measured from the start to the LUN holding a reservation of the
#    master's node's key again (kubefencectl scsi keys every 50 ms, an
#    initiator of its own), whether an unregistered writer is refused then
#    (kubefencectl scsi probe), whether the term moved, the longest pause
#    in acknowledged writes from the stop to the restore (the target's own
#    downtime included), and the first write acknowledged after the start.
#
# Two clients write throughout, one through the Service's ClusterIP
# (kube-proxy), one reading the Endpoints itself; every operation goes into
# a history that kf-lincheck judges at the end, and every acknowledged write
# is read back.  The result, with every sample, goes to bench/results/
# restarts-lab.json (--out FILE); --logs DIR keeps the pods' logs.  Never
# asserts timing.  Refuses to run when a lab is already up; always takes the
# lab down.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
KILLS=6
REPEATS=2
TGTD=5
KEYS=2000
LOGS=""
OUT=$top_builddir/bench/results/restarts-lab.json
num() { case $2 in '' | *[!0-9]*) echo "$0: $1: a number, not '$2'" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
	case $1 in
	--agent-kills) num "$1" "${2:-}"; KILLS=$2; shift 2 ;;
	--repeat-kills) num "$1" "${2:-}"; REPEATS=$2; shift 2 ;;
	--tgtd-restarts) num "$1" "${2:-}"; TGTD=$2; shift 2 ;;
	--logs) LOGS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*)
		echo "usage: $0 [--agent-kills N] [--repeat-kills N] [--tgtd-restarts N] [--logs DIR] [--out FILE]" >&2
		exit 2
		;;
	esac
done
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
# shellcheck source=bench/lab-bench.sh
. "$top_srcdir/bench/lab-bench.sh"

bench_before_cleanup() {
	[ -z "$LOGS" ] || bench_keep_logs "$LOGS" '*.log' '*.out' '*.jsonl' '*.ms' 'acks.*' 'lincheck.*'
}

e2e_up >/dev/null || die "lab up"
e2e_deploy || die "deploy"
LUN=$(agent_conf_value fence.scsi_luns)
[ -n "$LUN" ] || die "cannot read fence.scsi_luns of the lab's agents"
NODES=$(bash "$LAB" nodes | awk '{print $1}' | paste -sd, -)

bg_start "$CLIENT" --interval-ms 50 watch "$WORK/watch.log" >"$WORK/watch.out"
WATCH_PID=$BG_PID
bench_workloads restarts "$KEYS"

# longest_pause FILE FROM_US TO_US: the longest time without an
# acknowledged write, in ms, over [FROM_US, TO_US] (its ends count).
longest_pause() {
	awk -v a="$1" -v b="$2" 'BEGIN { p = a } NF >= 6 && $3 ~ /^[0-9]+$/ && $3 > a && $3 < b {
		if ($3 - p > g) g = $3 - p; p = $3 } END { if (b - p > g) g = b - p; printf "%.1f", g / 1000 }' "$3"
}
pauses() { # FROM_US TO_US: "clusterip MS endpoints MS" (also appended to $WORK/NAME.PATH.ms)
	local name=$1 p v out=""
	for p in "${PATHS[@]}"; do
		v=$(longest_pause "$2" "$3" "$ACKS.$p")
		echo "$v" >>"$WORK/$name.$p.ms"
		out="$out $p $v"
	done
	echo "${out# }"
}
# first_line_after POD PATTERN T_US: ms from T_US to the first line of
# POD's log (its current container) that matches, "-" when none.
first_line_after() {
	local t u
	t=$(kc logs -n $NS "$1" 2>/dev/null | grep -F -- "$2" | head -1 | awk '{print $1}')
	[ -n "$t" ] && u=$(date -d "$t" +%s%6N 2>/dev/null) && { ms "$u" "$3"; return; }
	echo -
}
# fresh_leader_agent: the leader's agent pod, with restartCount 0 (deleted
# and made anew by the DaemonSet first when it was restarted before).
fresh_leader_agent() {
	local m node ap i
	for i in 1 2 3; do
		wait_both_ready 120 || die "not ready"
		m=$(masters)
		node=$(pod_node "$m")
		ap=$(agent_pod_on "$node")
		[ "$(restarts "$ap")" = 0 ] && {
			echo "$ap"
			return 0
		}
		kc delete pod -n $NS "$ap" --wait=true >/dev/null 2>&1
		poll 120 agents_ready_n 2 || die "the agents did not come back after deleting $ap"
	done
	die "no leader agent with restartCount 0 after three tries"
}
agents_ready_n() { [ "$(agents_ready)" = "$1" ]; }

# agent_kill NAME POD: one kill, one line of $WORK/NAME.jsonl
agent_kill() {
	local name=$1 ap=$2 m e0 h0 before t_back e1 h1 m1 moved lead pz
	m=$(masters)
	e0=$(lease_epoch)
	h0=$(lease_holder)
	before=$(restarts "$ap")
	kill_pod_at "$ap" || die "kill $ap"
	wait_restarted "$ap" "$before" 120 || die "$ap not restarted by its kubelet"
	t_back=$(now_us)
	lead=$(first_line_after "$ap" "event=leading" "$KILL_US")
	sleep 5
	wait_both_ready 120 || die "not ready after the kill of $ap"
	e1=$(lease_epoch) h1=$(lease_holder) m1=$(masters)
	moved=false
	[ "$e1" = "$e0" ] && [ "$h1" = "$h0" ] && [ "$m1" = "$m" ] || moved=true
	pz=$(pauses "$name" "$KILL_US" "$((t_back + 5000000))")
	say "$name: killed $ap (restarts $before) on $KILLED_NODE, master $m: epoch $e0 -> $e1, holder $h0 -> $h1, master $m1; new incarnation leading +$lead ms; longest write pause (ms): $pz"
	jq -nc --arg pod "$ap" --argjson before "$before" --argjson moved "$moved" --arg lead "$lead" \
		--argjson e0 "$e0" --argjson e1 "$e1" --arg pz "$pz" \
		'{pod: $pod, restart_count_before: $before, term_moved: $moved, epoch_before: $e0, epoch_after: $e1,
		  new_incarnation_leading_ms: ($lead | tonumber? // null),
		  longest_write_pause_ms: ($pz | split(" ") | {(.[0]): (.[1] | tonumber), (.[2]): (.[3] | tonumber)})}' >>"$WORK/$name.jsonl"
}

# 1. first kills
for i in $(seq 1 "$KILLS"); do
	agent_kill kill "$(fresh_leader_agent)"
done
# 2. a kill of an agent killed moments before
for i in $(seq 1 "$REPEATS"); do
	ap=$(fresh_leader_agent)
	agent_kill first-of-pair "$ap"
	wait_both_ready 120 || die "not ready"
	ap=$(agent_pod_on "$(pod_node "$(masters)")")
	[ "$(restarts "$ap")" -gt 0 ] || { say "repeat: the term moved to $ap, which was never killed; killing it twice"; agent_kill first-of-pair "$ap"; }
	wait_both_ready 120 || die "not ready"
	ap=$(agent_pod_on "$(pod_node "$(masters)")")
	agent_kill repeat "$ap"
done

# 3. tgtd restarts
holder_key() { resv_holder "$LUN" "$NODES" 1000; } # the reservation holder's node, "" when none
t_prev=0
for i in $(seq 1 "$TGTD"); do
	# restarts 15 s apart at least: an agent promotes its stepped-down
	# store again at most once in SM_REPROMOTE_INTERVAL (10 s)
	while [ $(($(now_us) - t_prev)) -lt 15000000 ]; do sleep 0.5; done
	wait_both_ready 120 || die "not ready before tgtd restart $i"
	m=$(masters)
	node=$(pod_node "$m")
	e0=$(lease_epoch)
	[ "$(holder_key)" = "$node" ] || die "before tgtd restart $i: the reservation is not $node's: '$(holder_key)'"
	t0=$(now_us)
	t_prev=$t0
	bash "$top_srcdir/tests/e2e/lab-tgtd.sh" stop "$WORK/tgt" >/dev/null 2>&1
	t_stopped=$(now_us)
	bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt" >/dev/null 2>&1 ||
		{ sleep 1; bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt" >/dev/null 2>&1; } || die "tgtd start"
	t_started=$(now_us)
	t_resv="" who=""
	for _ in $(seq 1 600); do
		who=$(holder_key)
		[ -n "$who" ] && {
			t_resv=$(now_us)
			break
		}
		sleep 0.05
	done
	[ -n "$t_resv" ] || die "tgtd restart $i: no reservation within 30 s of the start"
	probe=refused
	"$KFCTL" scsi probe --lun "$LUN" >"$WORK/probe.out" 2>&1 || probe=$(tr '\n' ' ' <"$WORK/probe.out")
	wait_both_ready 120 || die "not ready after tgtd restart $i"
	fa=""
	for p in "${PATHS[@]}"; do
		a=$(wait_ack_after "$ACKS.$p" "$t_started" 30) || die "no write acknowledged ($p) after tgtd restart $i"
		v=$(ms "${a%% *}" "$t_started")
		echo "$v" >>"$WORK/tgtd-first.$p.ms"
		fa="$fa $p $v"
	done
	fa=${fa# }
	sleep 5
	e1=$(lease_epoch)
	m1=$(masters)
	moved=false
	[ "$e1" = "$e0" ] || moved=true
	pz=$(pauses tgtd "$t0" "$t_resv")
	say "tgtd restart $i: down $(ms "$t_started" "$t0") ms; reservation of $who again +$(ms "$t_resv" "$t_started") ms after the start; unregistered write: $probe; master $m -> $m1, epoch $e0 -> $e1; longest write pause (ms): $pz; first write acknowledged after the start (ms): $fa"
	jq -nc --arg fa "$fa" --argjson down "$(ms "$t_started" "$t0")" --argjson resv "$(ms "$t_resv" "$t_started")" --arg who "$who" \
		--arg probe "$probe" --argjson moved "$moved" --argjson e0 "$e0" --argjson e1 "$e1" --arg pz "$pz" \
		'{target_down_ms: $down, reservation_again_ms: $resv, reservation_by: $who, unregistered_write: $probe,
		  term_moved: $moved, epoch_before: $e0, epoch_after: $e1,
		  longest_write_pause_ms: ($pz | split(" ") | {(.[0]): (.[1] | tonumber), (.[2]): (.[3] | tonumber)}),
		  first_ack_after_start_ms: ($fa | split(" ") | {(.[0]): (.[1] | tonumber), (.[2]): (.[3] | tonumber)})}' >>"$WORK/tgtd.jsonl"
done

for p in "${WLS[@]}"; do bg_stop "$p"; done
"$CLIENT" --timeout-ms 10000 --history "$HIST/restarts-final.hist" --client final check "$ACKS.clusterip" "$ACKS.endpoints" \
	>"$WORK/check.out" 2>&1 || die "acknowledged writes lost: $(cat "$WORK/check.out")"
LIN_RC=0
e2e_lincheck bench "$HIST"/restarts-*.hist || LIN_RC=$?
[ "$LIN_RC" = 0 ] || die "the recorded operations are not linearizable"
bg_stop "$WATCH_PID"
# the watcher's summary line (it may print other lines first)
read -r _ obs _ viol _ _ _ eps2 < <(grep '^observations ' "$WORK/watch.out" | tail -1)
for v in obs viol eps2; do
	case ${!v} in '' | *[!0-9]*) printf -v "$v" 0 ;; esac
done

slurp() { [ -s "$1" ] && jq -s . "$1" || echo '[]'; }
dists() { # NAME
	local p out="{" sep=""
	for p in "${PATHS[@]}"; do
		# (no sample file: none taken; dist of a missing file would fail
		# under pipefail after printing)
		if [ -s "$WORK/$1.$p.ms" ]; then
			out="$out$sep\"$p\": $(dist "$WORK/$1.$p.ms")"
		else
			out="$out$sep\"$p\": {\"n\": 0}"
		fi
		sep=", "
	done
	echo "$out}"
}
mkdir -p "$(dirname "$OUT")"
jq -n --arg date "$(date -u +%FT%TZ)" --arg rev "$(git -C "$top_srcdir" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	--argjson kills "$(slurp "$WORK/kill.jsonl")" --argjson kd "$(dists kill)" \
	--argjson repeats "$(slurp "$WORK/repeat.jsonl")" --argjson rd "$(dists repeat)" \
	--argjson tgtd "$(slurp "$WORK/tgtd.jsonl")" --argjson td "$(dists tgtd)" --argjson tf "$(dists tgtd-first)" \
	--arg check "$(cat "$WORK/check.out")" --arg lin "$(grep '^lincheck:' "$WORK/lincheck.bench.out" | tail -1)" \
	--argjson obs "${obs:-0}" --argjson viol "${viol:-0}" --argjson eps2 "${eps2:-0}" \
	'{benchmark: "restarts-lab", date: $date, revision: $rev,
	  setup: {lab: "lab/lab.sh, 2 nodes, lab overlay (lease 2 s, agent.lock_file), tgtd on 198.18.0.1:3260; the MetaService store is on the fenced LUN",
	          clients: "one through the ClusterIP, one reading the Endpoints, a write every 0.5 ms between answers"},
	  agent_kill: {what: "SIGKILL of the leader agent container, restartCount 0 (its kubelet restarts it at once)",
	               n: ($kills | length), term_moved: ([$kills[] | select(.term_moved)] | length),
	               longest_write_pause: $kd, samples: $kills},
	  agent_kill_repeated: {what: "SIGKILL of a leader agent container killed moments before (kubelet CrashLoopBackOff)",
	               n: ($repeats | length), term_moved: ([$repeats[] | select(.term_moved)] | length),
	               longest_write_pause: $rd, samples: $repeats},
	  tgtd_restart: {what: "lab-tgtd.sh stop + start (reservations lost); reservation_again_ms from the start",
	               n: ($tgtd | length), term_moved: ([$tgtd[] | select(.term_moved)] | length),
	               reservation_again_ms: ([$tgtd[].reservation_again_ms] | {max: max, min: min}),
	               unregistered_write_refused: ([$tgtd[] | select(.unregistered_write == "refused")] | length),
	               longest_write_pause: ({what: "from the stop (the target down included) to the reservation back"} + $td),
	               first_ack_after_start: $tf, samples: $tgtd},
	  acknowledged: $check, lincheck: $lin,
	  watcher: {observations: $obs, two_masters: $viol, two_endpoint_addresses: $eps2}}' >"$OUT"
say "result: $OUT"
jq -c '{agent_kill: .agent_kill | {n, term_moved, longest_write_pause: (.longest_write_pause | map_values({p50_ms, max_ms}))},
	agent_kill_repeated: .agent_kill_repeated | {n, term_moved, longest_write_pause: (.longest_write_pause | map_values({p50_ms, max_ms}))},
	tgtd_restart: .tgtd_restart | {n, term_moved, reservation_again_ms, unregistered_write_refused, longest_write_pause: (.longest_write_pause | del(.what) | map_values({p50_ms, max_ms})), first_ack_after_start: (.first_ack_after_start | map_values({p50_ms, max_ms}))},
	lincheck, watcher}' "$OUT"
