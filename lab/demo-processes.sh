#!/usr/bin/env bash
# The kubefence demo without Kubernetes nodes (Debian, as root): the same
# failover as lab/demo.sh, with agents and MetaServices as plain processes
# against a real control plane.  Quicker to start and easier to trace.
#
# A real control plane (etcd + kube-apiserver with TLS and RBAC, on
# loopback) and two "nodes", each a kubefence-agent with its own conf file
# and control socket next to a reference MetaService (kubefence-metad) that
# keeps its metadata on a shared volume.  The demo:
#   1. waits for one MetaService to be promoted and labelled role=master;
#   2. writes metadata through it;
#   3. kills the master MetaService with SIGKILL (what docker/nerdctl kill do)
#      and measures how long a client waits for its next acknowledged write;
#   4. prints the failover timeline the new master's agent recorded;
#   5. restarts the killed MetaService (as its kubelet would): it comes back
#      as standby;
#   6. stops the leader's agent with SIGTERM: an orderly handover.
# Everything it starts is stopped at the end, by PID.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
. lab/lib/build.sh
kf_demo_build
AGENT=$BUILD/nodeagent/kubefence-agent
CTL=$BUILD/nodeagent/kubefencectl
METAD=$BUILD/storage/metad/kubefence-metad
META=$BUILD/storage/metad/kubefence-meta

DIR=$(mktemp -d /tmp/kubefence-demo.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	bash tests/harness/control-plane.sh stop "$DIR"
	echo "demo: stopped everything; logs are in $DIR"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

say "demo: starting etcd and kube-apiserver (TLS, RBAC) on loopback"
bash tests/harness/control-plane.sh start "$DIR" 2>/dev/null
. "$DIR/env"
NS=$KF_IT_NS

api() { # METHOD PATH [JSON] -> body on stdout
	curl -fsS --max-time 5 --cacert "$KF_IT_CA" --cert "$DIR/pki/admin.crt" \
		--key "$DIR/pki/admin.key" -X "$1" -H 'Content-Type: application/json' \
		"$KF_IT_SERVER$2" ${3:+-d "$3"}
}
jfield() { sed -nE "s/.*\"$1\": ?\"([^\"]*)\".*/\\1/p" | head -1; }

# What the agent needs beyond the Lease: its service's pods (label, delete)
# and Events.  The same rules are in manifests/.
api POST /apis/rbac.authorization.k8s.io/v1/namespaces/$NS/roles '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"kubefence-agent-pods"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","patch","delete"]},{"apiGroups":[""],"resources":["events"],"verbs":["create"]}]}' >/dev/null
api POST /apis/rbac.authorization.k8s.io/v1/namespaces/$NS/rolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"kubefence-agent-pods"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"kubefence-agent-pods"},"subjects":[{"kind":"ServiceAccount","name":"kubefence-agent","namespace":"'"$NS"'"}]}' >/dev/null
api POST /api/v1/namespaces/$NS/serviceaccounts '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default"}}' >/dev/null

# The MetaService pods.  No kubelet runs in this demo: the Pod objects carry
# the labels the Service selects by, and the processes play their containers.
declare -A UID_OF PORT_OF HTTP_OF AGENT_PID METAD_PID
NODES=(node-a node-b)
i=0
for n in "${NODES[@]}"; do
	pod=meta-$n
	UID_OF[$n]=$(api POST /api/v1/namespaces/$NS/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"'"$pod"'","labels":{"app":"metaservice"}},"spec":{"nodeName":"'"$n"'","automountServiceAccountToken":false,"containers":[{"name":"metad","image":"kubefence/metad:lab"}]}}' | jfield uid)
	PORT_OF[$n]=$((17480 + i))
	HTTP_OF[$n]=127.0.0.1:$((19464 + i))
	mkdir -p "$DIR/$n"
	cat >"$DIR/$n/agent.conf" <<-EOF
		node.name = $n
		kube.config = $KF_IT_AGENT_KUBECONFIG_A
		lease.namespace = $NS
		lease.name = metaservice
		lease.duration_ms = 2000
		lease.renew_deadline_ms = 1500
		lease.retry_ms = 250
		kube.request_timeout_ms = 1000
		agent.control_socket = $DIR/$n/control.sock
		http.listen = ${HTTP_OF[$n]}
		service.namespace = $NS
		service.selector = app=metaservice
		fence.methods = pod-delete
		log.monotonic = true
	EOF
	i=$((i + 1))
done
mkdir -p "$DIR/shared"

start_agent() {
	"$AGENT" --config "$DIR/$1/agent.conf" 2>>"$DIR/$1/agent.log" &
	AGENT_PID[$1]=$!
	PIDS+=($!)
	disown $! # no job-control chatter when it is killed
}
start_metad() {
	POD_NAME=meta-$1 POD_UID=${UID_OF[$1]} "$METAD" --control-socket "$DIR/$1/control.sock" \
		--data-dir "$DIR/shared" --listen "127.0.0.1:${PORT_OF[$1]}" 2>>"$DIR/$1/metad.log" &
	METAD_PID[$1]=$!
	PIDS+=($!)
	disown $!
}
master_pod() {
	api GET "/api/v1/namespaces/$NS/pods?labelSelector=role%3Dmaster" | jfield name
}
wait_master_not() { # OLD-POD -> the new master pod
	local m
	for _ in $(seq 1 500); do
		m=$(master_pod || true)
		if [ -n "$m" ] && [ "$m" != "$1" ]; then
			echo "$m"
			return 0
		fi
		sleep 0.02
	done
	return 1
}

for n in "${NODES[@]}"; do
	start_agent "$n"
	start_metad "$n"
done
M=$(wait_master_not "")
MN=${M#meta-}
say "demo: two nodes up; '$M' on $MN is master (pods labelled role=master: $M)"

say "== writing 200 keys through the master"
for k in $(seq 1 200); do echo "put demo/key-$k value-$k"; done |
	"$META" --server "127.0.0.1:${PORT_OF[$MN]}" --batch --timing >/dev/null 2>"$DIR/put.timing"
sed 's/^/   /' "$DIR/put.timing"

OTHER=node-a
[ "$MN" = node-a ] && OTHER=node-b
say "== kill -9 of the master MetaService '$M' (pid ${METAD_PID[$MN]})"
T0=$(now)
kill -KILL "${METAD_PID[$MN]}"
# A client retries on the other MetaService until its write is acknowledged.
tries=0
until "$META" --server "127.0.0.1:${PORT_OF[$OTHER]}" --timeout-ms 500 put demo/after-kill yes \
	>/dev/null 2>&1; do
	tries=$((tries + 1))
	sleep 0.01
done
echo "   first write acknowledged by meta-$OTHER $(since "$T0") s after the kill ($tries refused tries before)"
n_ok=$(for k in $(seq 1 200); do echo "get demo/key-$k"; done |
	"$META" --server "127.0.0.1:${PORT_OF[$OTHER]}" --batch | grep -c "^VALUE value-" || true)
echo "   keys written before the kill and readable on the new master: $n_ok of 200"
echo "   pods labelled role=master now: $(master_pod)"
echo
echo "   the new master's agent recorded (kubefencectl status):"
"$CTL" status --agent "${HTTP_OF[$OTHER]}" | sed 's/^/   /'

say "== the killed MetaService restarts in place (as its kubelet would)"
start_metad "$MN"
sleep 1
"$META" --server "127.0.0.1:${PORT_OF[$MN]}" stat | grep -E 'role|epoch' | sed 's/^/   /' || true
if out=$("$META" --server "127.0.0.1:${PORT_OF[$MN]}" put demo/old-master no 2>&1); then
	echo "   UNEXPECTED: the restarted MetaService acknowledged a write"
else
	echo "   a write to it is refused (exit $?): $out"
fi

say "== SIGTERM of the leader's agent on $OTHER: orderly handover"
T0=$(now)
kill -TERM "${AGENT_PID[$OTHER]}"
NEW=$(wait_master_not "meta-$OTHER")
echo "   '$NEW' is master $(since "$T0") s after SIGTERM"
until "$META" --server "127.0.0.1:${PORT_OF[${NEW#meta-}]}" --timeout-ms 500 put demo/after-term yes \
	>/dev/null 2>&1; do sleep 0.01; done
echo "   and acknowledges writes $(since "$T0") s after SIGTERM"
grep -hE 'event=(released|stopped-leading|leading|promoted|demoted)' "$DIR"/node-*/agent.log |
	sort | sed -E 's/^[^ ]+ mono=[0-9.]+ [a-z]+ kubefence-agent\[[0-9]+\] [a-z_]+: /   /' | tail -6

say "demo: done"
