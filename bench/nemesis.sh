#!/usr/bin/env bash
# The nemesis campaign (docs/nemesis.md): kubefence in the real Kubernetes
# lab (lab/lab.sh, the lab overlay, tgtd on the lab portal) under a
# randomized, seeded and logged schedule of faults, while clients record
# every operation; at the end everything is healed, every key is read once
# more, and kf-lincheck judges all the histories together.
#
#   bash bench/nemesis.sh [--seed N] [--duration S] [--faults N] [--short]
#                         [--kinds K,K...] [--variant lun|failsafe]
#                         [--out FILE] [--logs DIR]
#
# Clients: two workloads through the Service (kf-labclient workload: mixed
# reads, writes and deletes over a small key space, values unique per write)
# and, in each node's network namespace (lab.sh exec), a pinned client
# (kf-labclient pinned) that keeps talking to the pod address it last knew
# as master over an open connection, as a node-local service would.  A
# watcher (kf-labclient watch) records every observation of two pods
# labelled role=master.
#
# Fault kinds (--kinds picks some; the long run uses all that the lab has):
#   master-kill    SIGKILL of the master's container (its node's containerd)
#   agent-kill     SIGKILL of an agent's container
#   metad-stop     SIGSTOP of a MetaService process, SIGCONT after a hold
#   agent-stop     the same for an agent
#   node-freeze    lab.sh freeze / thaw of a node
#   node-netdown   lab.sh netdown / netup of a node
#   api-pause      SIGSTOP / SIGCONT of kube-apiserver (its PID from lab.sh)
#   api-restart    lab.sh restart-apiserver
#   proxy-drop     kf-faultproxy between the agents and the API server:
#   proxy-delay    responses dropped, or delayed, for a while (only when
#                  tests/proxy/kf-faultproxy is built and can listen on the
#                  lab bridge)
#   proxy-cut-node one node's agent alone cut off from the API server (its
#                  node's proxy holds every request), the master's node or
#                  the other, for a while: a partial partition that leaves
#                  the nodes' own network, so failsafe's peers can answer
#                  (only with one proxy per node)
#   tgtd-restart   the iSCSI target restarted (its reservations are lost)
#   clock-jump     CLOCK_REALTIME stepped by +-30 s and set back at once
#                  (never in --short)
#   failpoint      one fault point armed in a running agent or MetaService
#                  through its node's control directory (the lab overlay's
#                  /run/kubefence-fp/NODE/failpoints), disarmed after a hold
#   failover-failpoint  a fault point of the takeover path (a lost acquire
#                  response, a failed fence or label PATCH, a slow promote)
#                  armed on the standby's node, then a failover forced (the
#                  master's container killed, its node frozen, or its
#                  MetaService stopped), so that the point is hit
#
# --variant (default lun): lun is the lab overlay (the store on the lab's
# LUN, scsi-pr and pod-delete, agent.api_outage = ride-through).  failsafe
# is the setup without SCSI-3 PR that failsafe mode is for
# (docs/failsafe.md): the MetaService's store a directory both nodes share
# (one hostPath of this machine, a coherent shared filesystem), fenced by
# pod-delete and the store's epoch barrier only, agent.api_outage = demote,
# failsafe.enabled with both agents on hostNetwork (stable peer addresses:
# the nodes' own) and the key in a Secret; no tgtd-restart faults (there is
# no LUN to lose).  Derived at run time from the rendered lab overlay
# (kubectl apply --dry-run=client -o json, then jq).
#
# --short (tests/e2e/nemesis.test): about 90 s of faults of the kinds today's
# code survives (SHORT_KINDS below), no clock jumps.  Without --short: until
# --faults (200) faults or --duration (5400) seconds, whichever comes first.
#
# Writes --out (bench/results/nemesis.json, --short: the build's
# tests/e2e/nemesis-short.json) and keeps in --logs (the build's
# bench/nemesis.logs, --short: tests/e2e/nemesis.logs) the fault log, the
# histories, the checker's report, and per violation its counterexample with
# the fault log around it.  Exit: 0 no violation, no lost write, never two
# role=master pods; 1 any of those; 99 a hard error (a lab already up, the
# lab or the deployment failing); 77 the machine cannot run the lab (99 in
# CI).  Only one lab fits on a machine: never run this beside e2e.test or
# lab-smoke.test.
set -uo pipefail

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}

# The kinds the short run uses: those that left today's code linearizable
# in the runs recorded in docs/nemesis.md.
SHORT_KINDS=master-kill,agent-kill,node-freeze,node-netdown,api-pause,tgtd-restart,metad-stop
ALL_KINDS=master-kill,agent-kill,metad-stop,agent-stop,node-freeze,node-netdown,api-pause,api-restart,proxy-drop,proxy-delay,proxy-cut-node,tgtd-restart,clock-jump,failpoint,failover-failpoint

SEED=1
DURATION=
FAULTS=
SHORT=0
KINDS=
VARIANT=lun
OUT=
LOGS=
usage() {
	echo "usage: $0 [--seed N] [--duration S] [--faults N] [--short] [--kinds K,K...] [--variant lun|failsafe] [--out FILE] [--logs DIR]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--seed) SEED=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--faults) FAULTS=$2; shift 2 ;;
	--short) SHORT=1; shift ;;
	--kinds) KINDS=$2; shift 2 ;;
	--variant) VARIANT=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--logs) LOGS=$2; shift 2 ;;
	*) usage ;;
	esac
done
[[ $SEED =~ ^[0-9]+$ ]] || usage
case $VARIANT in lun | failsafe) ;; *) echo "nemesis: --variant: lun or failsafe, not '$VARIANT'" >&2; exit 2 ;; esac
if [ $SHORT = 1 ]; then
	DURATION=${DURATION:-90}
	FAULTS=${FAULTS:-100000}
	KINDS=${KINDS:-$SHORT_KINDS}
	OUT=${OUT:-$top_builddir/tests/e2e/nemesis-short.json}
	LOGS=${LOGS:-$top_builddir/tests/e2e/nemesis.logs}
	case ",$KINDS," in *,clock-jump,*) echo "nemesis: no clock jumps in --short" >&2; exit 2 ;; esac
else
	DURATION=${DURATION:-5400}
	FAULTS=${FAULTS:-200}
	KINDS=${KINDS:-$ALL_KINDS}
	OUT=${OUT:-$top_builddir/bench/results/nemesis.json}
	LOGS=${LOGS:-$top_builddir/bench/nemesis.logs}
fi

# shellcheck source=tests/e2e/lib.sh
. "$top_srcdir/tests/e2e/lib.sh"
if lab_is_up; then
	echo "ERROR: a lab is already up (bridge kflab0 or /var/lib/kubefence-lab/state exists);" \
		"the campaign needs the machine's only lab: run lab/lab.sh down first" >&2
	exit 99
fi
e2e_init
FAULTLOG=$WORK/faults.log
STOPPED=$WORK/stopped.pids
PROXY_RULES=$WORK/proxy.rules
FPDIR=/run/kubefence-fp
NKEYS=${NEMESIS_KEYS:-32}
: >"$FAULTLOG"
: >"$STOPPED"
PROXY_PID=

hard() {
	echo "ERROR: nemesis: $*" >&2
	exit 99
}
heal_all() {
	local n p
	for n in $(bash "$LAB" nodes 2>/dev/null | awk '{print $1}'); do
		bash "$LAB" thaw "$n" >/dev/null 2>&1 || true
		bash "$LAB" netup "$n" >/dev/null 2>&1 || true
		[ -d "$FPDIR/$n" ] && : >"$FPDIR/$n/failpoints"
	done
	while read -r p; do kill -CONT "$p" 2>/dev/null || true; done <"$STOPPED"
	[ -f /var/lib/kubefence-lab/run/apiserver.pid ] &&
		kill -CONT "$(cat /var/lib/kubefence-lab/run/apiserver.pid)" 2>/dev/null
	[ -n "$PROXY_PID" ] && proxy_rules ""
	return 0
}
# Every container's log, streamed while the campaign runs: a pod the
# janitor recreates, or a container restarted twice, has lost its log by the
# end, and a counterexample needs the agents' and the metads' lines around
# it.  follow_pod follows one pod (NAME UID FILE) until it is gone or
# replaced; follow_logs (DIR) starts one per new pod every second.  Both
# stop their children on SIGTERM.
follow_pod() {
	local kpid=
	trap '[ -n "$kpid" ] && kill "$kpid" 2>/dev/null; exit 0' TERM
	while [ "$(kc get pod -n $NS "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null)" = "$2" ]; do
		# no --request-timeout: it would cut the stream
		"$E2E_KUBECTL" --kubeconfig /var/lib/kubefence-lab/admin.kubeconfig logs -f \
			--timestamps -n $NS "$1" >>"$3" 2>/dev/null &
		kpid=$!
		wait "$kpid"
		kpid=
		echo "--- (stream ended; following the pod's next container)" >>"$3"
		sleep 0.5
	done
}
follow_logs() {
	local seen=" " name uid spid=
	local -a pids=()
	trap 'for p in "${pids[@]}" $spid; do kill "$p" 2>/dev/null; done; exit 0' TERM
	mkdir -p "$1"
	while :; do
		while read -r name uid; do
			[ -n "$uid" ] || continue
			case "$seen" in *" $uid "*) continue ;; esac
			seen="$seen$uid "
			follow_pod "$name" "$uid" "$1/$name.$uid.log" &
			pids+=("$!")
		done < <(kc get pods -n $NS -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid}{"\n"}{end}' 2>/dev/null)
		sleep 1 &
		spid=$!
		wait "$spid"
		spid=
	done
}
FOLLOW_PID=
keep_logs() {
	mkdir -p "$LOGS"
	rm -rf "$LOGS/stream"
	cp -r "$WORK/stream" "$LOGS/stream" 2>/dev/null || true
	cp -r /var/lib/kubefence-lab/logs/. "$LOGS/lab/" 2>/dev/null || true
	local p
	for p in $(kc get pods -n $NS -o name 2>/dev/null); do
		kc logs -n $NS "$p" >"$LOGS/${p#pod/}.log" 2>&1 || true
		kc logs -n $NS "$p" --previous >"$LOGS/${p#pod/}.previous.log" 2>/dev/null || true
	done
	cp "$WORK"/*.log "$WORK"/*.out "$WORK"/lincheck.* "$LOGS/" 2>/dev/null || true
	cp -r "$HIST" "$LOGS/" 2>/dev/null || true
	for p in "$FPDIR"/lab-node-*/fired; do
		[ -f "$p" ] && cp "$p" "$LOGS/failpoints-fired.$(basename "$(dirname "$p")").log"
	done
	return 0
}
cleanup() {
	local rc=$?
	trap - EXIT
	heal_all
	[ -n "$FOLLOW_PID" ] && bg_stop "$FOLLOW_PID"
	keep_logs
	for p in "${PROXY_PIDS[@]}"; do bg_stop "$p"; done
	e2e_cleanup
	rm -rf "$WORK"
	echo "nemesis: logs kept in $LOGS"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

T0_US=$(now_us)
rel() { awk -v a="$(now_us)" -v b="$T0_US" 'BEGIN{printf "%8.3f", (a-b)/1e6}'; }
flog() { # WHAT...: the fault log, "REALTIME_US +SECONDS WHAT..."
	local l
	l="$(now_us) +$(rel) $*"
	echo "$l" >>"$FAULTLOG"
	echo "   $l"
}
# The schedule's generator: a 48-bit LCG kept in this shell (never drawn in
# a $(...) subshell, whose draws would not advance it), seeded by --seed.
RNG=$(((SEED * 2654435761 + 1) & 281474976710655))
rnd() { # N: R = 0..N-1
	RNG=$(((RNG * 25214903917 + 11) & 281474976710655))
	R=$(((RNG >> 17) % $1))
}
rnd_range() { # A B: R = A..B
	rnd $(($2 - $1 + 1))
	R=$(($1 + R))
}
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN{printf "%.3f", m/1000}')"; }

rm -rf "$LOGS"
mkdir -p "$LOGS"
say "nemesis: seed $SEED, kinds $KINDS, up to $FAULTS faults or $DURATION s"
e2e_up >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; hard "lab up"; }

# ------------------------------------------------------------ the fault proxy
# kf-faultproxy between the agents and the API server: on the lab bridge
# when it accepts that address, else one in each node's namespace on its
# loopback (lab.sh pod-api 127.0.0.1:PORT), both reading the same rules.
PROXY=$top_builddir/tests/proxy/kf-faultproxy
PROXY_PIDS=()
PROXY_NODES=() # one proxy per node: each reads $PROXY_RULES.NODE
# proxy_rules RULES: every proxy's rules ("" clears them)
proxy_rules() {
	local n
	if [ ${#PROXY_NODES[@]} -gt 0 ]; then
		for n in "${PROXY_NODES[@]}"; do printf '%s\n' "$1" | sed '/^$/d' >"$PROXY_RULES.$n"; done
	else
		printf '%s\n' "$1" | sed '/^$/d' >"$PROXY_RULES"
	fi
}
proxy_up() { # URL-HOST PID
	local i
	for i in $(seq 1 50); do
		kill -0 "$2" 2>/dev/null || return 1
		ss -Htln | awk '{print $4}' | grep -qx "$1" && return 0
		[ -n "${3:-}" ] && bash "$LAB" exec "$3" ss -Htln | awk '{print $4}' | grep -qx "$1" && return 0
		sleep 0.1
	done
	return 1
}
case ",$KINDS," in
*,proxy-*)
	if [ -x "$PROXY" ]; then
		read -r PCERT PKEY PCA < <(bash "$LAB" proxy-cert)
		: >"$PROXY_RULES"
		PARGS=(--cert "$PCERT" --key "$PKEY" --upstream https://198.18.0.1:6443 --upstream-ca "$PCA"
			--seed "$SEED")
		bg_start "$PROXY" --listen 198.18.0.1:6444 "${PARGS[@]}" --rules "$PROXY_RULES" --log "$WORK/proxy.log" >"$WORK/proxy.out" 2>&1
		if proxy_up 198.18.0.1:6444 "$BG_PID"; then
			PROXY_PIDS=("$BG_PID")
			bash "$LAB" pod-api 198.18.0.1:6444 >/dev/null || hard "pod-api"
			say "fault proxy on 198.18.0.1:6444 between the agents and the API server"
		else
			say "fault proxy: not on the bridge ($(head -c 200 "$WORK/proxy.out" | tr '\n' ' ')); one per node on its loopback"
			for n in $(bash "$LAB" nodes | awk '{print $1}'); do
				# each node's proxy its own rules (proxy-cut-node)
				: >"$PROXY_RULES.$n"
				PROXY_NODES+=("$n")
				bg_start bash "$LAB" exec "$n" "$PROXY" --listen 127.0.0.1:6444 "${PARGS[@]}" --rules "$PROXY_RULES.$n" \
					--log "$WORK/proxy.$n.log" >"$WORK/proxy.$n.out" 2>&1
				proxy_up 127.0.0.1:6444 "$BG_PID" "$n" && PROXY_PIDS+=("$BG_PID") ||
					say "fault proxy in $n did not start: $(head -c 200 "$WORK/proxy.$n.out")"
			done
			if [ ${#PROXY_PIDS[@]} = "$(bash "$LAB" nodes | wc -l)" ]; then
				bash "$LAB" pod-api 127.0.0.1:6444 >/dev/null || hard "pod-api"
				say "fault proxies on 127.0.0.1:6444 in every node, between the agents and the API server"
			else
				for p in "${PROXY_PIDS[@]}"; do bg_stop "$p"; done
				PROXY_PIDS=()
				PROXY_NODES=()
			fi
		fi
		[ ${#PROXY_PIDS[@]} -gt 0 ] && PROXY_PID=${PROXY_PIDS[0]}
	else
		say "fault proxy: $PROXY not built; no proxy faults"
	fi
	;;
esac
# ------------------------------------------------------------ the variant
# failsafe_manifest OUT: the lab overlay turned into the failsafe setup
# (--variant above), as one JSON List.
failsafe_manifest() {
	local conf
	conf=$(awk '
		/^fence\.methods *=/ { print "fence.methods = pod-delete"; next }
		/^fence\.scsi_/ { next }
		/^agent\.api_outage *=/ { print "agent.api_outage = demote"; next }
		{ print }
		END {
			print "# failsafe mode (docs/failsafe.md): the agents on hostNetwork"
			print "failsafe.enabled = true"
			print "failsafe.listen = ${HOST_IP}:7946"
			print "failsafe.peers = lab-node-1=198.18.0.11:7946, lab-node-2=198.18.0.12:7946"
			print "failsafe.key_file = /etc/kubefence/failsafe/key"
		}' "$top_srcdir/manifests/overlays/lab/agent.conf") || return 1
	NODE_NAME=lab-node-1 HOST_IP=198.18.0.11 "$KUBEFENCE_BUILD/nodeagent/kubefence-agent" --config-test \
		--config <(printf '%s\n' "$conf") >"$WORK/failsafe-conf-test.out" 2>&1 ||
		{ cat "$WORK/failsafe-conf-test.out" >&2; return 1; }
	kc apply --dry-run=client -f "$top_srcdir/manifests/rendered/lab.yaml" -o json >"$WORK/lab.json" || return 1
	jq --arg conf "$conf" '
		.items |= map(
			if .kind == "ConfigMap" and (.metadata.name | startswith("kubefence-agent")) then
				.data["agent.conf"] = $conf
			elif .kind == "DaemonSet" then
				.spec.template.spec.hostNetwork = true
				| .spec.template.spec.dnsPolicy = "ClusterFirstWithHostNet"
				| .spec.template.spec.containers[0].env += [{name: "HOST_IP", valueFrom: {fieldRef: {fieldPath: "status.hostIP"}}}]
				| .spec.template.spec.containers[0].volumeMounts += [{name: "failsafe", mountPath: "/etc/kubefence/failsafe", readOnly: true}]
				| .spec.template.spec.volumes += [{name: "failsafe", secret: {secretName: "kubefence-failsafe"}}]
			elif .kind == "StatefulSet" then
				.spec.template.spec.containers[0].command |=
					(index("--store") as $i | .[:$i] + ["--data-dir", "/data"] + .[$i + 2:] | map(select(. != "--format-unused-lun")))
				| .spec.template.spec.containers[0].volumeMounts += [{name: "shared", mountPath: "/data"}]
				| .spec.template.spec.volumes += [{name: "shared", hostPath: {path: "/var/lib/kubefence-lab/shared-store", type: "DirectoryOrCreate"}}]
			else . end)' "$WORK/lab.json" >"$1"
}
if [ "$VARIANT" = failsafe ]; then
	rm -rf /var/lib/kubefence-lab/shared-store
	kc create namespace "$NS" --dry-run=client -o json | kc apply -f - >/dev/null || hard "namespace $NS"
	head -c 48 /dev/urandom >"$WORK/failsafe.key"
	kc create secret generic kubefence-failsafe -n "$NS" --from-file=key="$WORK/failsafe.key" >/dev/null ||
		hard "the failsafe key's Secret"
	failsafe_manifest "$WORK/lab-failsafe.json" || hard "the failsafe variant of the lab overlay"
	export E2E_MANIFEST=$WORK/lab-failsafe.json
	say "variant failsafe: the store in a shared directory, pod-delete only, failsafe mode on hostNetwork agents"
fi
e2e_deploy || hard "deploy: agents not Ready or no single master"

# Drop the kinds this lab cannot do.
K=()
for k in ${KINDS//,/ }; do
	case $k in
	proxy-cut-node) [ ${#PROXY_NODES[@]} -gt 1 ] && [ -n "$PROXY_PID" ] || { say "one fault proxy for all agents: no $k faults"; continue; } ;;
	proxy-*) [ -n "$PROXY_PID" ] || continue ;;
	tgtd-restart) [ "$VARIANT" = lun ] || continue ;;
	failpoint | failover-failpoint) [ -d "$FPDIR/lab-node-1" ] || { say "no fault-point control dirs: no $k faults"; continue; } ;;
	master-kill | agent-kill | metad-stop | agent-stop | node-freeze | node-netdown | api-pause | api-restart | clock-jump) ;;
	*) hard "unknown fault kind '$k'" ;;
	esac
	K+=("$k")
done
[ ${#K[@]} -gt 0 ] || hard "no fault kind left"
# Weights: how often each kind is drawn.
declare -A W=([master-kill]=12 [agent-kill]=6 [metad-stop]=10 [agent-stop]=8 [node-freeze]=10
	[node-netdown]=10 [api-pause]=8 [api-restart]=2 [proxy-drop]=6 [proxy-delay]=6 [proxy-cut-node]=6
	[tgtd-restart]=4 [clock-jump]=4 [failpoint]=14 [failover-failpoint]=10)
WTOTAL=0
for k in "${K[@]}"; do WTOTAL=$((WTOTAL + W[$k])); done
pick_kind() { # KIND = a kind, drawn by weight
	local r k
	rnd "$WTOTAL"
	r=$R
	for k in "${K[@]}"; do
		[ "$r" -lt "${W[$k]}" ] && { KIND=$k; return; }
		r=$((r - W[$k]))
	done
}

# ------------------------------------------------------------ clients
NODES=$(bash "$LAB" nodes | awk '{print $1}')
COMMON=(--keys "$NKEYS" --prefix n --read-pct 30 --del-pct 5)
bg_start "$CLIENT" --interval-ms 50 watch "$WORK/watch.log" >"$WORK/watch.out"
WATCH_PID=$BG_PID
bg_start follow_logs "$WORK/stream"
FOLLOW_PID=$BG_PID
CLIENT_PIDS=()
for c in svc-a svc-b; do
	# 100 ms between the tries of one operation: every try is recorded, and
	# a try refused every 5 ms through a failover leaves dozens of
	# indeterminate writes on one key, more than the checker can search.
	bg_start "$CLIENT" "${COMMON[@]}" --pause-us 5000 --retry-us 100000 --seed "$((SEED * 7 + ${#CLIENT_PIDS[@]}))" \
		--history "$HIST/$c.hist" --client "$c" workload "$WORK/acks.$c" >"$WORK/$c.out" 2>"$WORK/$c.log"
	CLIENT_PIDS+=("$BG_PID")
done
M0=$(masters)
for n in $NODES; do
	# No deletes from the pinned clients: every NOTMASTER they get is an
	# indeterminate write, and an indeterminate delete stays possible until
	# the last read of "no value", which makes the checker's search explode.
	bg_start bash "$LAB" exec "$n" "$CLIENT" "${COMMON[@]}" --del-pct 0 --pause-us 20000 --request-ms 1000 \
		--seed "$((SEED * 7 + 10 + ${#CLIENT_PIDS[@]}))" --history "$HIST/pinned-$n.hist" \
		--client "pinned-$n" pinned "$(pod_ip "$M0"):7480" "$WORK/acks.pinned-$n" \
		>"$WORK/pinned-$n.out" 2>"$WORK/pinned-$n.log"
	CLIENT_PIDS+=("$BG_PID")
done
wait_ack_after "$WORK/acks.svc-a" 0 30 >/dev/null || hard "the workload gets no write acknowledged"
say "clients: 2 through the Service, 1 pinned in each node ($(echo $NODES)), watcher; keys nk0000..$(printf 'nk%04d' $((NKEYS - 1)))"

# ------------------------------------------------------------ faults
pod_on() { # APP NODE
	kc get pods -n $NS -l "app=$1" --field-selector "spec.nodeName=$2" \
		-o jsonpath='{.items[0].metadata.name}' 2>/dev/null
}
master_node() {
	local m
	m=$(masters)
	[ "$(echo "$m" | wc -w)" = 1 ] && pod_node "$m" 2>/dev/null
}
# NODE = the master's node with probability 2/3 (when there is one), else
# any node.
NODE_LIST=($NODES)
pick_node() {
	local mn
	mn=$(master_node)
	rnd 3
	if [ -n "$mn" ] && [ "$R" -lt 2 ]; then
		NODE=$mn
	else
		rnd ${#NODE_LIST[@]}
		NODE=${NODE_LIST[$R]}
	fi
}
FAILPOINT_SPECS=(
	'lease.acquire.after_send=1*error(ETIMEDOUT)'
	'lease.acquire.before_send=1*error(ETIMEDOUT)'
	'lease.renew.after_send=1*error(ETIMEDOUT)'
	'lease.renew.before_send=2*error(ETIMEDOUT)'
	'lease.release.after_send=1*error(EIO)'
	'agent.label.after_patch=1*error(EIO)'
	'agent.label.before_patch=1*error(EIO)'
	'agent.unlabel.before_patch=1*error(EIO)'
	'agent.unlabel.after_patch=1*error(EIO)'
	'agent.fence.before_promote=1*delay(1500)'
	'agent.control.before_renew=1*error(EPIPE)'
	'agent.control.before_promote=1*error(EPIPE)'
	'fence.method.before=1*error(EIO)'
	'fence.method.after=1*error(EIO)'
	'metad.promote.before_claim=1*error(EIO)'
	'metad.write.after_durable=1*delay(1500)'
	'metad.write.before_ok=1*delay(1200)'
	'metastore.open.before_barrier=1*error(EIO)'
	'metastore.recover.unit=1*delay(1500)'
)
# The takeover path's points, for failover-failpoint.
FAILOVER_SPECS=(
	'lease.acquire.after_send=1*error(ETIMEDOUT)'
	'lease.acquire.before_send=1*error(ETIMEDOUT)'
	'agent.fence.before_promote=1*delay(1500)'
	'fence.method.after=1*error(EIO)'
	'fence.method.before=1*error(EIO)'
	'agent.unlabel.before_patch=1*error(EIO)'
	'agent.unlabel.after_patch=1*error(EIO)'
	'agent.label.after_patch=1*error(EIO)'
	'agent.label.before_patch=1*error(EIO)'
	'agent.control.before_promote=1*error(EPIPE)'
	'metad.promote.before_claim=1*error(EIO)'
	'metastore.open.before_barrier=1*error(EIO)'
	'metastore.recover.unit=1*delay(1500)'
)
FAILOVER_TRIGGERS=(master-kill node-freeze metad-stop)
PROXY_SPECS=(
	'PUT /apis/coordination.k8s.io/v1/namespaces/kubefence/leases/metaservice count=1 drop_response'
	'PUT /apis/coordination.k8s.io/v1/namespaces/kubefence/leases/metaservice count=3 drop_response'
	'PATCH /api/v1/namespaces/kubefence/pods/ count=1 drop_response'
	'* /apis/coordination.k8s.io/ prob=0.5 drop_response'
	'DELETE /api/v1/namespaces/kubefence/pods/ count=1 drop_response'
)
PROXY_DELAYS=(
	'* /apis/coordination.k8s.io/ delay_response=1200'
	'PUT /apis/coordination.k8s.io/ delay_response=2500'
	'PATCH /api/v1/namespaces/kubefence/pods/ delay_response=1500'
	'* .* prob=0.5 delay=800'
	'GET /api/v1/namespaces/kubefence/pods delay_response=3000'
)

# do_fault KIND ARGS...: inject, hold, heal (synchronous).
do_fault() {
	local kind=$1 a b pod pid
	shift
	case $kind in
	master-kill)
		if kill_master_at >/dev/null 2>&1; then flog "FAULT master-kill pod=$KILLED_POD node=$KILLED_NODE"; else flog "SKIP master-kill: no single master"; fi
		;;
	agent-kill)
		pod=$(pod_on kubefence-agent "$1")
		if [ -n "$pod" ] && kill_pod_at "$pod" >/dev/null 2>&1; then flog "FAULT agent-kill pod=$pod node=$1"; else flog "SKIP agent-kill node=$1: no running agent"; fi
		;;
	metad-stop | agent-stop)
		a=metaservice
		[ "$kind" = agent-stop ] && a=kubefence-agent
		pod=$(pod_on "$a" "$1")
		pid=$([ -n "$pod" ] && container_pid "$pod")
		if [ -z "$pid" ]; then
			flog "SKIP $kind node=$1: no running container"
			return
		fi
		echo "$pid" >>"$STOPPED"
		kill -STOP "$pid" && flog "FAULT $kind pod=$pod node=$1 pid=$pid hold_ms=$2 master=$(masters | tr ' ' ,)"
		sleep_ms "$2"
		kill -CONT "$pid" 2>/dev/null
		flog "HEAL $kind pid=$pid (SIGCONT)"
		;;
	node-freeze)
		bash "$LAB" freeze "$1" >/dev/null 2>&1 && flog "FAULT node-freeze node=$1 hold_ms=$2"
		sleep_ms "$2"
		bash "$LAB" thaw "$1" >/dev/null 2>&1
		flog "HEAL node-freeze node=$1 (thawed)"
		;;
	node-netdown)
		bash "$LAB" netdown "$1" >/dev/null 2>&1 && flog "FAULT node-netdown node=$1 hold_ms=$2"
		sleep_ms "$2"
		bash "$LAB" netup "$1" >/dev/null 2>&1
		flog "HEAL node-netdown node=$1 (link up)"
		;;
	api-pause)
		pid=$(cat /var/lib/kubefence-lab/run/apiserver.pid)
		kill -STOP "$pid" && flog "FAULT api-pause pid=$pid hold_ms=$1"
		sleep_ms "$1"
		kill -CONT "$pid"
		flog "HEAL api-pause (SIGCONT)"
		;;
	api-restart)
		flog "FAULT api-restart"
		bash "$LAB" restart-apiserver >/dev/null 2>&1 || bash "$LAB" start-apiserver >/dev/null 2>&1
		flog "HEAL api-restart (ready)"
		;;
	proxy-drop | proxy-delay)
		proxy_rules "$1"
		flog "FAULT $kind rule='$1' hold_ms=$2"
		sleep_ms "$2"
		proxy_rules ""
		flog "HEAL $kind (rules cleared)"
		;;
	proxy-cut-node)
		# $1: 1 = the master's node, 0 = the other; $2 hold_ms
		local mn cn
		mn=$(master_node)
		cn=$mn
		[ "$1" = 1 ] || cn=$(bash "$LAB" nodes | awk -v m="$mn" '$1 != m {print $1; exit}')
		[ -n "$cn" ] || { flog "SKIP proxy-cut-node (no master)"; return 0; }
		echo '* .* blackhole' >"$PROXY_RULES.$cn"
		flog "FAULT proxy-cut-node node=$cn master_node=$mn hold_ms=$2"
		sleep_ms "$2"
		: >"$PROXY_RULES.$cn"
		flog "HEAL proxy-cut-node node=$cn (rules cleared)"
		;;
	tgtd-restart)
		bash "$top_srcdir/tests/e2e/lab-tgtd.sh" stop "$WORK/tgt" >/dev/null 2>&1
		flog "FAULT tgtd-restart (stopped)"
		sleep_ms "$1"
		bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt" >/dev/null 2>&1 ||
			{ sleep 1; bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt" >/dev/null 2>&1; }
		flog "HEAL tgtd-restart (started)"
		;;
	clock-jump)
		flog "FAULT clock-jump seconds=$1 hold_ms=$2"
		"$CLIENT" clockjump "$1" "$2" >/dev/null
		flog "HEAL clock-jump (set back)"
		;;
	failover-failpoint)
		# $1 spec, $2 trigger, $3 hold_ms: armed on the node that is not
		# the master's, then the master made to fail.
		local mn sn
		mn=$(master_node)
		if [ -z "$mn" ]; then
			flog "SKIP failover-failpoint: no single master"
			return
		fi
		for sn in "${NODE_LIST[@]}"; do [ "$sn" != "$mn" ] && break; done
		printf '%s\n' "$1" >"$FPDIR/$sn/failpoints"
		pod=$(masters)
		case $2 in
		master-kill) kill_master_at >/dev/null 2>&1 ;;
		node-freeze) bash "$LAB" freeze "$mn" >/dev/null 2>&1 ;;
		metad-stop)
			pid=$(container_pid "$pod")
			[ -n "$pid" ] && echo "$pid" >>"$STOPPED" && kill -STOP "$pid"
			;;
		esac
		flog "FAULT failover-failpoint node=$sn spec='$1' trigger=$2 master=$pod@$mn hold_ms=$3"
		sleep_ms "$3"
		: >"$FPDIR/$sn/failpoints"
		case $2 in
		node-freeze) bash "$LAB" thaw "$mn" >/dev/null 2>&1 ;;
		metad-stop) [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null ;;
		esac
		flog "HEAL failover-failpoint node=$sn (disarmed; $2 undone)"
		;;
	failpoint)
		printf '%s\n' "$2" >"$FPDIR/$1/failpoints"
		flog "FAULT failpoint node=$1 spec='$2' hold_ms=$3 master=$(masters | tr ' ' ,)"
		sleep_ms "$3"
		: >"$FPDIR/$1/failpoints"
		flog "HEAL failpoint node=$1 (disarmed)"
		;;
	esac
}

# ARGS = the parameters of a fault of KIND, drawn here (in this shell, so
# that the schedule is the seed's: which node is the master's is the only
# thing the system itself decides).
fault_args() {
	ARGS=()
	case $1 in
	master-kill | api-restart) ;;
	agent-kill)
		pick_node
		ARGS=("$NODE")
		;;
	metad-stop | agent-stop)
		pick_node
		rnd_range 300 5000
		ARGS=("$NODE" "$R")
		;;
	node-freeze | node-netdown)
		pick_node
		rnd_range 500 6000
		ARGS=("$NODE" "$R")
		;;
	api-pause)
		rnd_range 200 4000
		ARGS=("$R")
		;;
	proxy-cut-node)
		rnd 2
		ARGS=("$R")
		rnd_range 1000 8000
		ARGS+=("$R")
		;;
	proxy-drop | proxy-delay)
		if [ "$1" = proxy-drop ]; then
			rnd ${#PROXY_SPECS[@]}
			ARGS=("${PROXY_SPECS[$R]}")
		else
			rnd ${#PROXY_DELAYS[@]}
			ARGS=("${PROXY_DELAYS[$R]}")
		fi
		rnd_range 1000 6000
		ARGS+=("$R")
		;;
	tgtd-restart)
		rnd_range 100 3000
		ARGS=("$R")
		;;
	clock-jump)
		rnd 2
		ARGS=($((R ? 30 : -30)))
		rnd_range 50 300
		ARGS+=("$R")
		;;
	failover-failpoint)
		rnd ${#FAILOVER_SPECS[@]}
		ARGS=("${FAILOVER_SPECS[$R]}")
		rnd ${#FAILOVER_TRIGGERS[@]}
		ARGS+=("${FAILOVER_TRIGGERS[$R]}")
		rnd_range 3000 6000
		ARGS+=("$R")
		;;
	failpoint)
		pick_node
		ARGS=("$NODE")
		rnd ${#FAILPOINT_SPECS[@]}
		ARGS+=("${FAILPOINT_SPECS[$R]}")
		rnd_range 1000 6000
		ARGS+=("$R")
		;;
	esac
}

# Pods a fault left in CrashLoopBackOff are recreated: a kubelet's back-off
# (10 s, 20 s, ... 5 min) would otherwise leave one node without a standby
# for most of the campaign.
janitor() {
	local p
	for p in $(kc get pods -n $NS -o json 2>/dev/null |
		jq -r '.items[] | select([.status.containerStatuses[]?.state.waiting.reason] | index("CrashLoopBackOff")) | .metadata.name'); do
		kc delete pod -n $NS "$p" --grace-period=0 --force --wait=false >/dev/null 2>&1 &&
			flog "JANITOR recreate $p (CrashLoopBackOff)"
	done
}

NF=0
BGF=
declare -A BYKIND
T0_US=$(now_us)
END_US=$((T0_US + DURATION * 1000000))
flog "START seed=$SEED kinds=$(echo "${K[@]}" | tr ' ' ,) master=$(masters)"
while [ "$NF" -lt "$FAULTS" ] && [ "$(now_us)" -lt "$END_US" ]; do
	pick_kind
	kind=$KIND
	fault_args "$kind"
	args=("${ARGS[@]}")
	# The long run lets one fault in five overlap the next.
	rnd 5
	overlap=0
	[ $SHORT = 0 ] && [ "$R" = 0 ] && overlap=1
	rnd_range 300 2500
	gap=$R
	NF=$((NF + 1))
	BYKIND[$kind]=$((${BYKIND[$kind]:-0} + 1))
	if [ -n "$BGF" ]; then
		wait "$BGF" 2>/dev/null
		BGF=
	fi
	if [ $overlap = 1 ]; then
		do_fault "$kind" "${args[@]}" &
		BGF=$!
	else
		do_fault "$kind" "${args[@]}"
	fi
	sleep_ms "$gap"
	[ -n "$BGF" ] && continue
	janitor
	# Every 10 faults, and whenever there is no single master: let the
	# system settle (up to 60 s) so that faults keep landing on a working
	# failover rather than on a lab stuck in back-off.
	if [ $((NF % 10)) = 0 ] || [ "$(masters | wc -w)" != 1 ]; then
		if ! wait_both_ready 60; then
			# The pods' logs now: a recreated pod takes its logs with it.
			mkdir -p "$LOGS/stall-$NF"
			for p in $(kc get pods -n $NS -o name 2>/dev/null); do
				kc logs -n $NS "$p" >"$LOGS/stall-$NF/${p#pod/}.log" 2>&1
				kc logs -n $NS "$p" --previous >"$LOGS/stall-$NF/${p#pod/}.previous.log" 2>/dev/null
			done
			kc get pods,lease,endpoints -n $NS -o wide --show-labels >"$LOGS/stall-$NF/objects.txt" 2>&1
			flog "STALL not ready 60 s after fault $NF (pods' logs in stall-$NF/): pods $(kc get pods -n $NS -o wide --no-headers 2>/dev/null | awk '{printf "%s:%s:%s ", $1, $3, $7}') masters '$(masters)'"
			heal_all
			bash "$LAB" up >/dev/null 2>&1
			janitor
			wait_both_ready 90 || flog "STALL still not ready after healing"
		fi
	fi
done
[ -n "$BGF" ] && wait "$BGF" 2>/dev/null
flog "END faults=$NF"

# ------------------------------------------------------------ heal, read, judge
heal_all
bash "$LAB" up >/dev/null 2>&1
[ -f "$WORK/tgt/tgtd.pid" ] && kill -0 "$(cat "$WORK/tgt/tgtd.pid")" 2>/dev/null ||
	bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt" >/dev/null 2>&1
janitor
wait_both_ready 120 || flog "NOT READY 120 s after healing: final reads may fail"
flog "HEALED master=$(masters)"
sleep 2
for p in "${CLIENT_PIDS[@]}"; do bg_stop "$p"; done
for k in $(seq 0 $((NKEYS - 1))); do printf 'get nk%04d\n' "$k"; done |
	"$CLIENT" --timeout-ms 20000 --history "$HIST/final.hist" --client final session >"$WORK/final.out"
bg_stop "$WATCH_PID"
FINAL_FAILED=$(grep -vc "^ok get" "$WORK/final.out")
cat "$WORK"/svc-*.out "$WORK"/pinned-*.out 2>/dev/null | sed 's/^/   /'

LIN_RC=0
LINCHECK_ARGS=(--max-configs "${NEMESIS_MAX_CONFIGS:-40000000}")
e2e_lincheck nemesis "$HIST"/*.hist >"$WORK/lincheck.summary" || LIN_RC=$?
cat "$WORK/lincheck.summary"
LJ=$WORK/lincheck.nemesis.json
[ -s "$LJ" ] || echo '{"verdict": "error"}' >"$LJ"

# Acknowledged writes whose final read differs: for each key its last
# acknowledged put or del (by completion) W and the final read F; F != W is
# "lost" unless some other write of F could come after W (an acknowledged
# one still running when W was invoked, or an indeterminate one).
awk '
	$1 ~ /^#/ { next }
	$1 == "final" && $2 == "get" && $7 == "ok" { fin[$3] = $4; next }
	$1 == "final" { next }
	($2 == "put" || $2 == "del") && $7 == "ok" {
		acked++
		if (!($3 in wc) || $6 > wc[$3]) { wc[$3] = $6; wi[$3] = $5; wv[$3] = $4 }
	}
	($2 == "put" || $2 == "del") && ($7 == "ok" || $7 == "info") {
		n = ++nw[$3]; xv[$3, n] = $4; xi[$3, n] = $5; xc[$3, n] = $6; xr[$3, n] = $7
	}
	END {
		lost = 0
		for (k in wc) {
			if (!(k in fin)) { unread++; continue }
			f = fin[k]
			if (f == wv[k]) continue
			ok = 0
			for (i = 1; i <= nw[k]; i++)
				if (xv[k, i] == f && (xr[k, i] == "info" || xc[k, i] > wi[k]) && !(xc[k, i] == wc[k] && xv[k, i] == wv[k])) ok = 1
			if (!ok) { lost++; printf "LOST %s last-acked %s read %s\n", k, wv[k], f > "/dev/stderr" }
		}
		printf "%d %d %d\n", acked, lost, unread
	}' "$HIST"/*.hist >"$WORK/lost.out" 2>"$WORK/lost.detail"
read -r ACKED LOST UNREAD <"$WORK/lost.out"
cat "$WORK/lost.detail"
OPS=$(cat "$HIST"/*.hist | grep -vc '^#')
TWO=$(grep -c ' VIOLATION ' "$WORK/watch.log" || true)
read -r _ OBS _ _ _ _ _ EPS2 <"$WORK/watch.out"

# Each violation: its counterexample and the fault log from 15 s before its
# first operation to 2 s after its last.
NV=$(jq '.violations | length' "$LJ" 2>/dev/null || echo 0)
VJ='[]'
for i in $(seq 0 $((NV - 1))); do
	from=$(jq ".violations[$i].ops | map(.invoke_us) | min - 15000000" "$LJ")
	to=$(jq ".violations[$i].ops | map(.complete_us) | max + 2000000" "$LJ")
	awk -v a="$from" -v b="$to" '$1 >= a && $1 <= b' "$FAULTLOG" >"$WORK/violation-$((i + 1)).faults"
	{
		echo "# violation $((i + 1)) of $NV (seed $SEED): kf-lincheck's counterexample"
		jq -r ".violations[$i] | \"key \(.key), start states \(.start_states | join(\",\"))\", (.ops[] | \"  \(.client) \(.op) \(.value) \(.invoke_us)..\(.complete_us) \(.result) master \(.master)\")" "$LJ"
		echo "# the fault log around it"
		cat "$WORK/violation-$((i + 1)).faults"
	} >"$LOGS/violation-$((i + 1)).txt"
	VJ=$(jq --argjson v "$(jq ".violations[$i]" "$LJ")" --rawfile f "$WORK/violation-$((i + 1)).faults" \
		'. + [{key: $v.key, ops: $v.ops, faults_around: ($f | split("\n") | map(select(length > 0)))}]' <<<"$VJ")
done

BK='{}'
for k in "${!BYKIND[@]}"; do BK=$(jq --arg k "$k" --argjson n "${BYKIND[$k]}" '. + {($k): $n}' <<<"$BK"); done
DUR=$(awk -v a="$(now_us)" -v b="$T0_US" 'BEGIN{printf "%.0f", (a-b)/1e6}')
mkdir -p "$(dirname "$OUT")"
jq -n --arg at "$(date -u +%FT%TZ)" --argjson seed "$SEED" --argjson dur "$DUR" --argjson limit_s "$DURATION" \
	--argjson nf "$NF" --argjson bk "$BK" --argjson ops "$OPS" --argjson acked "${ACKED:-0}" \
	--argjson lost "${LOST:-0}" --argjson unread "${UNREAD:-0}" --argjson two "${TWO:-0}" --argjson obs "${OBS:-0}" \
	--argjson eps2 "${EPS2:-0}" --argjson lin "$(jq '{verdict, ops, keys, ok, fail, info, undecided_keys}' "$LJ" 2>/dev/null || echo '{"verdict": "error"}')" \
	--argjson viol "$VJ" --argjson short "$SHORT" --arg kinds "$(echo "${K[@]}" | tr ' ' ,)" \
	--arg code "$(git -C "$top_srcdir" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$top_srcdir" diff --quiet 2>/dev/null || echo ' + uncommitted changes')" \
	--arg variant "$VARIANT" --argjson finalfail "${FINAL_FAILED:-0}" --arg proxy "$([ -n "$PROXY_PID" ] && echo yes || echo no)" '{
	benchmark: "nemesis",
	at: $at,
	seed: $seed,
	short: ($short == 1),
	variant: $variant,
	setup: {lab: "lab/lab.sh, 2 nodes, lab overlay (fault-point control dir per node), tgtd on 198.18.0.1:3260",
		clients: "2 x kf-labclient workload through the Service (30 % reads, 5 % deletes, 100 ms between tries) + 1 kf-labclient pinned per node (its netns; 30 % reads, no deletes), 32 keys, values unique per write",
		code: $code,
		fault_proxy: $proxy, kinds: ($kinds | split(","))},
	duration_s: $dur,
	duration_limit_s: $limit_s,
	faults: $nf,
	faults_by_kind: $bk,
	operations: $ops,
	acknowledged_writes: $acked,
	lost: $lost,
	final_reads_failed: $finalfail,
	linearizability: $lin,
	two_master_label_observations: $two,
	watch_observations: $obs,
	two_endpoint_observations: $eps2,
	violations: $viol
}' >"$OUT" || hard "writing $OUT"
cp "$OUT" "$LOGS/" 2>/dev/null
cp "$FAULTLOG" "$LOGS/faults.log"
jq -c '{seed, faults, faults_by_kind, operations, acknowledged_writes, lost, verdict: .linearizability.verdict, two_master_label_observations, violations: (.violations | length)}' "$OUT"
say "nemesis: wrote $OUT"

rc=0
[ "${TWO:-0}" = 0 ] || { echo "FAIL: $TWO observations of two pods labelled role=master:"; grep ' VIOLATION ' "$WORK/watch.log" | head -5; rc=1; }
case $LIN_RC in
0) ;;
3) echo "FAIL: kf-lincheck could not decide (search limit; NEMESIS_MAX_CONFIGS): linearizability not shown"; rc=1 ;;
*) echo "FAIL: kf-lincheck: the histories are not linearizable (verdict $(jq -r .verdict "$LJ"); see $LOGS/violation-*.txt)"; rc=1 ;;
esac
[ "${LOST:-0}" = 0 ] || { echo "FAIL: $LOST acknowledged writes lost"; rc=1; }
[ "${FINAL_FAILED:-0}" = 0 ] || { echo "FAIL: $FINAL_FAILED final reads failed"; rc=1; }
[ $rc = 0 ] && echo "PASS: $NF faults, $OPS operations, $ACKED acknowledged writes, none lost, linearizable, never two role=master pods"
exit $rc
