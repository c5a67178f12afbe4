# Shared by tests/e2e/single-replica.test and bench/single-replica-lab.sh
# (sourced after tests/e2e/lib.sh, not run): the single-replica topology of
# manifests/examples/single-replica in the lab.  One MetaService pod
# (StatefulSet metaservice, replicas: 1, always named metaservice-0), an
# agent on each node; only the agent next to the pod has a service.
# shellcheck shell=bash

SR_YAML=$top_srcdir/manifests/rendered/example-single-replica.yaml
SR_CONF=$top_srcdir/manifests/examples/single-replica/agent.conf
SR_POD=metaservice-0
OOS_TAINT=node.kubernetes.io/out-of-service

# sr_conf_ok: the example's agent.conf passes --config-test with this
# build's agent (it names keys an older agent does not know).  Prints the
# agent's complaint otherwise.
sr_conf_ok() {
	NODE_NAME=lab-node-1 "$KUBEFENCE_BUILD/nodeagent/kubefence-agent" --config-test \
		--config "$SR_CONF" 2>&1
}

# The agent pods whose container runs (Ready needs a connected service,
# which only one of them has here).
agents_running() {
	kc get pods -n $NS -l app=kubefence-agent \
		-o jsonpath='{range .items[*]}{.status.containerStatuses[0].state.running.startedAt}{"\n"}{end}' \
		2>/dev/null | grep -c . || true
}

# sr_pod_json: the MetaService pod, or nothing.
sr_pod_json() { kc get pod -n $NS $SR_POD -o json 2>/dev/null; }

# sr_serving: the one pod is Ready, labelled role=master, not being deleted,
# and the Service's Endpoints hold its address (and only it).
sr_serving() {
	local js ip
	js=$(sr_pod_json) || return 1
	[ "$(jq -r '.metadata.deletionTimestamp // ""' <<<"$js")" = "" ] || return 1
	[ "$(jq -r '.metadata.labels.role // ""' <<<"$js")" = master ] || return 1
	[ "$(jq -r '.status.conditions[]? | select(.type == "Ready") | .status' <<<"$js")" = True ] || return 1
	ip=$(jq -r '.status.podIP // ""' <<<"$js")
	[ -n "$ip" ] && [ "$(endpoint)" = "$ip" ]
}
wait_sr_serving() { poll "$1" sr_serving; } # TIMEOUT_S

# sr_deploy: apply the example, wait for both agents running and the one
# pod serving as master.
sr_deploy() {
	local t0
	t0=$(now)
	kc apply -f "$SR_YAML" >/dev/null || return 1
	for _ in $(seq 1 600); do
		if [ "$(agents_running)" = 2 ] && sr_serving; then
			say "deployed: 2 agents running, $SR_POD master on $(pod_node $SR_POD) at $(endpoint), in $(since "$t0") s"
			return 0
		fi
		sleep 0.2
	done
	kc get pods -n $NS -o wide --show-labels
	return 1
}

# has_oos_taint NODE: the node carries the out-of-service taint.
has_oos_taint() {
	kc get node "$1" -o jsonpath='{range .spec.taints[*]}{.key}={.value}:{.effect}{"\n"}{end}' 2>/dev/null |
		grep -q "^$OOS_TAINT="
}

other_node() { # NODE: the lab's other node (two nodes)
	bash "$LAB" nodes | awk -v n="$1" '$1 != n {print $1; exit}'
}

# fresh_pod TIMEOUT_S: make the pod a fresh one (restartCount 0), so that
# a container kill is restarted at once (a container killed again is
# restarted with CrashLoopBackOff: 10 s, 20 s, ...); then wait until it
# serves.  A no-op when it is fresh already.
fresh_pod() {
	[ "$(restarts $SR_POD 2>/dev/null)" = 0 ] && sr_serving && return 0
	local uid
	uid=$(pod_uid $SR_POD 2>/dev/null)
	kc delete pod -n $NS $SR_POD --wait=false >/dev/null 2>&1
	poll "$1" sr_replaced_serving "$uid"
}
sr_replaced_serving() { [ "$(pod_uid $SR_POD 2>/dev/null)" != "$1" ] && sr_serving; } # OLD_UID
