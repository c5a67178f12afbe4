#!/usr/bin/env bash
# SIGSTOP of the master MetaService in the real Kubernetes lab, per
# service.heartbeat_timeout_ms (`make bench-lab-sigstop`).
#
#   bash bench/sigstop-lab.sh [--sigstops N] [--timeouts "lab 300"] [--quiet S]
#                             [--proxy-min-sync D] [--logs DIR] [--out FILE]
#
# For each heartbeat time-out in the list (default: the lab's, `lab`, then
# 300 ms; a value other than the running one is written into the agents'
# ConfigMap and rolled out to both agents, the mounted agent.conf checked):
# 1. quiet: S seconds (default 180) with the clients writing and no fault;
#    the hung-service kills counted meanwhile (here each is a spurious one):
#    the agents' Released Events for a hung service and the MetaService
#    container restarts (the lab keeps no pod log older than a minute, see
#    ev_lines), with the new terms;
# 2. N (default 20) SIGSTOPs of the master's metad: its host PID through its
#    node's containerd (`ctr task ls`, as bench/nemesis.sh), `kill -STOP`
#    from the host (its socket stays open: only the PING/PONG exchange can
#    find it hung); a sample is the time from the kill's return (the process
#    stopped) to the first write acknowledged after it (the old master
#    answers nothing once stopped; an answer it had sent before that arrived
#    within 20 ms is left out), through each client path.  Then SIGCONT when the process still
#    exists (the agent kills it: `killed_by_agent` counts those that were
#    gone), and the old pod is waited for (restarted in place, or replaced
#    after the fence's pod-delete).  The hung releases during the samples
#    are counted too (one per SIGSTOP expected), with the silence each
#    reported ("no PONG for N ms": the detection) and, from the Promoted
#    Events, how long after the release the new master was promoted and
#    how much of that was its recovery of the store.
# Two clients write continuously side by side (tests/e2e/kf-labclient
# workload, 20 % reads, each over 2000 keys overwritten again and again, so
# that the store's size is the same for every time-out): clusterip (the Service's ClusterIP, kube-proxy; the
# top-level figures) and endpoints (the address in the Service's
# Endpoints).  Their operations are recorded and judged by kf-lincheck at
# the end; a violation makes the benchmark exit 1 after writing the JSON, as
# does a watcher that saw two pods labelled role=master.  Writes FILE
# (default bench/results/failover-lab-sigstop.json); --logs DIR keeps the
# pods' logs and the clients' files.  --proxy-min-sync D (a Go duration:
# 1s, 100ms, 0s) brings the lab up with every kube-proxy's
# --iptables-min-sync-period at D (KUBEFENCE_LAB_PROXY_MIN_SYNC; default
# kube-proxy's own, 1 s).  Never asserts timing.  Refuses to run
# when a lab is already up; always takes the lab down.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
SIGSTOPS=20
TIMEOUTS="lab 300"
# each client overwrites this many keys: with a new key per write the store
# grew past 370,000 records in one run, and then every write took ~200 ms,
# so that the later time-outs were measured on another system
KEYS=2000
QUIET=180
PROXY_MIN_SYNC=1s
LOGS=""
OUT=$top_builddir/bench/results/failover-lab-sigstop.json
while [ $# -gt 0 ]; do
	case $1 in
	--sigstops) SIGSTOPS=$2; shift 2 ;;
	--timeouts) TIMEOUTS=$2; shift 2 ;;
	--quiet) QUIET=$2; shift 2 ;;
	--proxy-min-sync) PROXY_MIN_SYNC=$2; shift 2 ;;
	--logs) LOGS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*)
		echo "usage: $0 [--sigstops N] [--timeouts \"lab 300\"] [--quiet S] [--proxy-min-sync D] [--logs DIR] [--out FILE]" >&2
		exit 2
		;;
	esac
done
# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
# shellcheck source=bench/lab-bench.sh
. "$top_srcdir/bench/lab-bench.sh"

STOPPED=$WORK/stopped.pids
: >"$STOPPED"
# On exit, before the lab goes down: SIGCONT of whatever is still stopped,
# and what --logs keeps.
bench_before_cleanup() {
	local p
	while read -r p _; do kill -CONT "$p" 2>/dev/null || true; done <"$STOPPED"
	[ -z "$LOGS" ] || bench_keep_logs "$LOGS" '*.log' '*.out' '*.ms' '*.phases' 'acks.*' 'lincheck.*'
}

[[ $PROXY_MIN_SYNC =~ ^[0-9]+(ms|s)$ ]] || die "--proxy-min-sync: a duration such as 1s, 100ms or 0s, not '$PROXY_MIN_SYNC'"
export KUBEFENCE_LAB_PROXY_MIN_SYNC=$PROXY_MIN_SYNC
e2e_up >/dev/null || die "lab up"
e2e_deploy || die "deploy"
LAB_TIMEOUT=$(agent_conf_value service.heartbeat_timeout_ms)
HEARTBEAT_MS=$(agent_conf_value service.heartbeat_ms)
LEASE_MS=$(agent_conf_value lease.duration_ms)
[ -n "$LAB_TIMEOUT" ] || die "cannot read service.heartbeat_timeout_ms of the lab's agents"

proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; } # PID: its start time (jiffies), "" when gone
# The failover's steps, from the agents' own log lines (read within seconds
# of the step, before the lab's minute-long pod logs are started afresh):
# PHASES lists the line each step logs; phases T0_US prints, for each, the
# ms from T0_US to its first line after T0_US ("-" when none was read).
PHASES=("event=service-hung" "event=released" "event=leading" "event=fenced" "event=promoted")
phases() {
	local t0=$1 p k t u best logs=""
	for p in $(kc get pods -n $NS -l app=kubefence-agent -o name 2>/dev/null); do
		logs+=$(kc logs -n $NS "$p" --since=60s 2>/dev/null)$'\n'
	done
	for k in "${PHASES[@]}"; do
		best=""
		while read -r t; do
			[ -n "$t" ] || continue
			u=$(date -d "$t" +%s%6N 2>/dev/null) || continue
			if [ "$u" -gt "$t0" ] && { [ -z "$best" ] || [ "$u" -lt "$best" ]; }; then best=$u; fi
		done < <(grep -F -- "$k" <<<"$logs" | awk '{print $1}')
		if [ -n "$best" ]; then printf '%s ' "$(ms "$best" "$t0")"; else printf -- '- '; fi
	done
	echo
}
# The hung-service kills are counted from the API, not from the agents'
# logs: a log ends with its container, and a pod recycled takes its logs
# with it.  ev_lines REASON-REGEX
# MESSAGE-REGEX: the Events so far whose reason and message match, "uid
# message" each.  A kill of a service that is part of a term posts
# Released "... hung: no PONG for N ms (killed, ...)"; any kill, a
# standby's too, restarts the MetaService container (metad_restarts).
ev_lines() {
	kc get events -n $NS -o json 2>/dev/null |
		jq -r --arg r "$1" --arg m "$2" '.items[] | select((.reason // "" | test($r)) and (.message // "" | test($m))) | "\(.metadata.uid) \(.message)"'
}
hung_lines() { ev_lines '^Released$' 'hung'; }
hung_count() { hung_lines | wc -l; }
metad_restarts() { # the sum of the MetaService pods' restartCounts, and their uids
	kc get pods -n $NS -l app=metaservice \
		-o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount} {.metadata.uid}{"\n"}{end}' 2>/dev/null |
		awk '{s += $1; u = u " " $2} END {print s + 0, u}'
}
pod_back() { # POD UID RESTARTS: replaced (another uid) or restarted in place
	local js
	js=$(kc get pod -n $NS "$1" -o json 2>/dev/null) || return 1
	[ "$(jq -r '.metadata.uid' <<<"$js")" != "$2" ] ||
		[ "$(jq -r '.status.containerStatuses[0].restartCount' <<<"$js")" -gt "$3" ]
}

bg_start "$CLIENT" --interval-ms 50 watch "$WORK/watch.log" >"$WORK/watch.out"
WATCH_PID=$BG_PID
bench_workloads stop "$KEYS"
SVC_IP=$(kc get service -n $NS metaservice -o jsonpath='{.spec.clusterIP}')
say "clients: through the ClusterIP $SVC_IP:7480 and through the Endpoints"

RUNS=$WORK/runs.jsonl
: >"$RUNS"
for spec in $TIMEOUTS; do
	T=$spec
	[ "$spec" = lab ] && T=$LAB_TIMEOUT
	case $T in '' | *[!0-9]*) die "--timeouts: lab or milliseconds, not $spec" ;; esac
	if [ "$(agent_conf_value service.heartbeat_timeout_ms)" != "$T" ]; then
		agent_conf_set service.heartbeat_timeout_ms "$T" || die "set service.heartbeat_timeout_ms = $T"
		wait_both_ready 120 || die "not ready before the switch to $T ms"
		agent_rollout 300 || die "the rollout to service.heartbeat_timeout_ms = $T did not complete"
		for _ in $(seq 1 50); do agent_mounted_conf_has "service.heartbeat_timeout_ms = $T" && break; sleep 0.2; done
		agent_mounted_conf_has "service.heartbeat_timeout_ms = $T" || die "the new agents do not mount service.heartbeat_timeout_ms = $T"
		say "service.heartbeat_timeout_ms = $T: set, both agents replaced"
	fi
	tag=t$T

	# 1. quiet
	wait_both_ready 120 || die "$T ms: not ready before the quiet period"
	q_h0=$(hung_count) q_e0=$(lease_epoch) q_m0=$(metad_restarts) q_t0=$(now_us)
	say "$T ms: $QUIET s without a fault"
	sleep "$QUIET"
	q_h1=$(hung_count) q_e1=$(lease_epoch) q_m1=$(metad_restarts) q_t1=$(now_us)
	read -r q_r0 q_u0 <<<"$q_m0"
	read -r q_r1 q_u1 <<<"$q_m1"
	q_repl=0
	[ "$q_u0" = "$q_u1" ] || q_repl=1
	say "$T ms quiet: hung releases $((q_h1 - q_h0)), new terms $((q_e1 - q_e0)), metad restarts $((q_r1 - q_r0)), pods replaced: $([ $q_repl = 1 ] && echo yes || echo no)"

	# 2. SIGSTOPs
	hung_lines | sort >"$WORK/$tag.hung.before"
	s_h0=$(wc -l <"$WORK/$tag.hung.before")
	ev_lines '^Promoted$' . | sort >"$WORK/$tag.promoted.before"
	killed=0 conts=0
	for i in $(seq 1 "$SIGSTOPS"); do
		wait_both_ready 120 || die "$T ms: not ready before SIGSTOP $i"
		sleep 1
		old=$(masters)
		[ "$(echo "$old" | wc -w)" = 1 ] || die "$T ms: no single master before SIGSTOP $i"
		old_uid=$(pod_uid "$old")
		before=$(restarts "$old")
		pid=$(container_pid "$old")
		[ -n "$pid" ] || die "$T ms: no host PID for $old's metad"
		st=$(proc_start "$pid")
		echo "$pid $st" >>"$STOPPED"
		mark "$ACKS"
		t0=$(now_us)
		kill -STOP "$pid" || die "kill -STOP $pid"
		t_stopped=$(now_us)
		new=$(wait_new_master "$old" 30) || {
			kill -CONT "$pid" 2>/dev/null
			die "$T ms: no new master within 30 s of SIGSTOP $i of $old (pid $pid)"
		}
		t_label=$(now_us)
		# from the kill's return: t0 is taken a `date` earlier, and an
		# answer the old master sent in between is no failover
		r=$(sample_acks "$tag" "$ACKS" "$t_stopped" "$t_stopped" 30) || {
			kill -CONT "$pid" 2>/dev/null
			die "$T ms: no ack within 30 s of SIGSTOP $i"
		}
		if [ -n "$st" ] && [ "$(proc_start "$pid")" = "$st" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
			kill -CONT "$pid" 2>/dev/null && conts=$((conts + 1))
			k=no
		else
			killed=$((killed + 1))
			k=yes
		fi
		ph=$(phases "$t_stopped")
		echo "$ph" >>"$WORK/$tag.phases"
		say "$T ms SIGSTOP $i/$SIGSTOPS ($old, pid $pid; master now $new, labelled by +$(ms "$t_label" "$t_stopped") ms; killed by its agent: $k): $r; steps (ms after the stop: hung, released, leading, fenced, promoted): $ph"
		poll 60 pod_back "$old" "$old_uid" "$before" || recycle "$old"
	done
	sleep 2
	hung_lines | sort >"$WORK/$tag.hung.after"
	s_h1=$(wc -l <"$WORK/$tag.hung.after")
	comm -13 "$WORK/$tag.hung.before" "$WORK/$tag.hung.after" >"$WORK/$tag.hung.log"
	sed -n 's/.*no PONG for \([0-9]*\) ms.*/\1/p' "$WORK/$tag.hung.log" >"$WORK/$tag.detect.ms"
	ev_lines '^Promoted$' . | sort | comm -13 "$WORK/$tag.promoted.before" - >"$WORK/$tag.promoted.log"
	sed -n 's/.* \([0-9]*\) ms after the Lease was free.*/\1/p' "$WORK/$tag.promoted.log" >"$WORK/$tag.promote.ms"
	sed -n 's/.*recovered [0-9]* records in \([0-9]*\) ms.*/\1/p' "$WORK/$tag.promoted.log" >"$WORK/$tag.recover.ms"
	records=$(sed -n 's/.*recovered \([0-9]*\) records.*/\1/p' "$WORK/$tag.promoted.log" | sort -n | tail -1)
	for p in "${PATHS[@]}"; do touch "$WORK/$tag.$p.ms"; done
	# each step's time from the one before it ("-": a step not read)
	touch "$WORK/$tag.phases"
	steps='{}'
	for c in $(seq 1 ${#PHASES[@]}); do
		awk -v c="$c" '{ v = $c; if (c > 1) { w = $(c - 1); if (w == "-") next } else w = 0
			if (v != "-") printf "%.1f\n", v - w }' "$WORK/$tag.phases" >"$WORK/$tag.step$c.ms"
		steps=$(jq -c --arg k "${PHASES[$((c - 1))]#event=}" --argjson d "$(dist "$WORK/$tag.step$c.ms")" '. + {($k): $d}' <<<"$steps")
	done
	jq -nc --argjson t "$T" --arg lab "$([ "$T" = "$LAB_TIMEOUT" ] && echo true || echo false)" --argjson n "$SIGSTOPS" \
		--argjson c "$(dist "$WORK/$tag.clusterip.ms")" --argjson e "$(dist "$WORK/$tag.endpoints.ms")" \
		--argjson d "$(dist "$WORK/$tag.detect.ms")" --argjson killed "$killed" --argjson conts "$conts" \
		--argjson sh "$((s_h1 - s_h0))" --argjson qs "$(ms "$q_t1" "$q_t0")" --argjson qh "$((q_h1 - q_h0))" \
		--argjson qe "$((q_e1 - q_e0))" --argjson qr "$((q_r1 - q_r0))" --argjson qrepl "$q_repl" \
		--argjson p "$(dist "$WORK/$tag.promote.ms")" --argjson rc "$(dist "$WORK/$tag.recover.ms")" \
		--argjson records "${records:-0}" --argjson steps "$steps" '{
		heartbeat_timeout_ms: $t, labs_value: ($lab == "true"),
		quiet: {seconds: ($qs / 1000 | round), hung_release_events: $qh, new_terms: $qe,
			metad_restarts: $qr, metad_pods_replaced: ($qrepl == 1),
			spurious_hung_kills: ([$qh, $qr] | max)},
		sigstop: {n: $n, first_ack_clusterip: $c, first_ack_endpoints: $e,
			hung_release_events: $sh, hung_release_events_beyond_one_per_sigstop: ($sh - $n),
			killed_by_agent: $killed, sigcont_sent: $conts,
			detection_reported_ms: $d,
			promoted_after_lease_free_ms: $p, recovery_ms: $rc, records_recovered_at_most: $records,
			steps_ms: ({what: "each step of the failover, in ms after the step before it (the first: after the stop), from the agents log lines: service-hung (the old master s agent finds the PING unanswered), released (it killed the service and released the Lease), leading (the other agent acquired), fenced (its fence confirmed), promoted (its service READY and its pod labelled)"} + $steps)},
		target: {what: "first acknowledged write on the new master p50 <= 1000 ms, p99 <= 1500 ms (issue 12, goal 1)",
			clusterip_met: (if $c.n > 0 then ($c.p50_ms <= 1000 and $c.p99_ms <= 1500) else null end),
			endpoints_met: (if $e.n > 0 then ($e.p50_ms <= 1000 and $e.p99_ms <= 1500) else null end)}}' >>"$RUNS"
	say "$T ms: $(jq -c '{clusterip: .sigstop.first_ack_clusterip | {n, p50_ms, p99_ms, max_ms}, endpoints: .sigstop.first_ack_endpoints | {p50_ms, p99_ms, max_ms}, detection: .sigstop.detection_reported_ms | {p50_ms, max_ms}, promoted_after_free: .sigstop.promoted_after_lease_free_ms | {p50_ms, max_ms}, hung_releases_during_samples: .sigstop.hung_release_events, quiet_spurious: .quiet.spurious_hung_kills}' <<<"$(tail -1 "$RUNS")")"
done

# ------------------------------------------------------------ checks
for p in "${WLS[@]}"; do bg_stop "$p"; done
"$CLIENT" --timeout-ms 10000 --history "$HIST/stop-final.hist" --client final check "$ACKS.clusterip" "$ACKS.endpoints" \
	>"$WORK/check.out" || die "acknowledged writes lost: $(cat "$WORK/check.out")"
say "clients: $(cat "$WORK/check.out")"
LIN_RC=0
e2e_lincheck bench "$HIST/stop-clusterip.hist" "$HIST/stop-endpoints.hist" "$HIST/stop-final.hist" || LIN_RC=$?
VERDICT=$(jq -r '.verdict // "error"' "$WORK/lincheck.bench.json" 2>/dev/null || echo error)
LIN_OPS=$(jq -r '.ops // 0' "$WORK/lincheck.bench.json" 2>/dev/null || echo 0)
bg_stop "$WATCH_PID"
WATCH_OBS=$(awk '{print $2}' "$WORK/watch.out")
TWO_MASTERS=$(grep -c VIOLATION "$WORK/watch.log" || true)

# ------------------------------------------------------------ results
mkdir -p "$(dirname "$OUT")"
jq -s --arg at "$(date -u +%FT%TZ)" --arg kernel "$(uname -r)" --arg cpus "$(nproc)" --arg svcip "$SVC_IP" \
	--argjson lease "$LEASE_MS" --argjson hb "$HEARTBEAT_MS" --argjson labt "$LAB_TIMEOUT" --argjson q "$QUIET" \
	--arg pms "$PROXY_MIN_SYNC" \
	--arg verdict "$VERDICT" --arg linops "$LIN_OPS" --arg obs "${WATCH_OBS:-0}" --arg two "${TWO_MASTERS:-0}" '{
	benchmark: "failover-lab-sigstop",
	at: $at,
	setup: {kubernetes: "v1.20.2 lab (lab/lab.sh), 2 nodes, kube-proxy (iptables mode) on each node and on the Service gateway", cpus: ($cpus|tonumber), kernel: $kernel,
		lease_ms: $lease, heartbeat_ms: $hb, labs_heartbeat_timeout_ms: $labt, quiet_s: $q,
		kube_proxy_iptables_min_sync_period: $pms,
		store: "raw-LUN backend (--store iscsi:// on the lab tgtd)", fence_methods: "scsi-pr, pod-delete",
		sigstop: "kill -STOP of the master metad from the host (its host PID from ctr task ls on its node); t0 = when the kill returned (the process stopped); a sample = the first write acknowledged after t0 (an answer the old master had sent before, arriving within 20 ms, left out); SIGCONT afterwards if the process still exists",
		quiet: "no fault for quiet_s with the clients running: a Released Event for a hung service or a MetaService container restart meanwhile is a spurious hung-service kill (the lab keeps no pod log older than a minute: the agents log lines are not read)",
		clients: ("two tests/e2e/kf-labclient workloads side by side, each over 2000 keys, 0.5 ms between acknowledged writes: clusterip = the Service ClusterIP " + $svcip + ":7480, endpoints = the address in the Service Endpoints")},
	linearizability: {checker: "tests/lincheck/kf-lincheck", ops: ($linops|tonumber), verdict: $verdict},
	role_master_watch: {observations: ($obs|tonumber), two_pods_labelled: ($two|tonumber)},
	runs: .
}' "$RUNS" >"$OUT"
jq -c '.runs[] | {timeout_ms: .heartbeat_timeout_ms, clusterip: .sigstop.first_ack_clusterip | {n, p50_ms, p99_ms}, endpoints: .sigstop.first_ack_endpoints | {p50_ms, p99_ms}, quiet_spurious: .quiet.spurious_hung_kills, target: .target}' "$OUT"
echo "bench: wrote $OUT"
[ "${TWO_MASTERS:-0}" = 0 ] || die "two pods were labelled role=master at some observation ($WORK/watch.log)"
[ "$LIN_RC" = 0 ] || die "kf-lincheck: the clients' histories are not linearizable (verdict $VERDICT, above)"
