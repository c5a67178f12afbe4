# Shared by tests/e2e/e2e.test, lab/demo-lab.sh and bench/failover-lab.sh
# (sourced, not run): kubefence deployed into the lab of lab/lab.sh.
# shellcheck shell=bash
#
# The caller sets top_srcdir and top_builddir, then calls e2e_init.  What it
# starts (tgtd, clients, watcher) is recorded and stopped by e2e_cleanup, by
# PID; the lab is taken down with `lab.sh down`.

E2E_KUBECTL=/var/cache/kubefence/k8s-1.20.2-r1/bin/kubectl
LAB="$top_srcdir/lab/lab.sh"
NS=kubefence
E2E_BG_PIDS=()
LINCHECK_ARGS=()

now() { date +%s.%N; }
now_us() { echo $(($(date +%s%N) / 1000)); }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN{printf "%.3f", a-b}'; }
say() { echo "[$(date -u +%T.%3N)] $*"; }

# e2e_init: checks and environment.  Returns 77 (via e2e_skip) when the
# machine cannot run the lab.
# A skip must never hide a broken install step: in CI (CI=true), where the
# test command installs everything, a missing piece is a hard error.
e2e_skip() {
	if [ "${CI:-}" = true ]; then
		echo "ERROR: $* (CI installs everything this test needs)"
		exit 99
	fi
	echo "SKIP: $*"
	exit 77
}
e2e_init() {
	[ "$(id -u)" = 0 ] || e2e_skip "needs root"
	local c
	for c in containerd runc ctr etcd iptables nsenter jq openssl gcc curl tgtd tgtadm buildah mmdebstrap; do
		command -v "$c" >/dev/null || e2e_skip "$c not installed"
	done
	[ -x /usr/lib/cni/bridge ] || e2e_skip "containernetworking-plugins not installed"
	export KUBEFENCE_BUILD=${KUBEFENCE_BUILD:-$top_builddir}
	[ -x "$KUBEFENCE_BUILD/nodeagent/kubefence-agent" ] || e2e_skip "kubefence not built in $KUBEFENCE_BUILD"
	CLIENT=$top_builddir/tests/e2e/kf-labclient
	[ -x "$CLIENT" ] || e2e_skip "$CLIENT not built (make tests/e2e/kf-labclient)"
	# The history checker (tests/lincheck): every lab test judges the
	# operations its clients recorded.
	LINCHECK=$top_builddir/tests/lincheck/kf-lincheck
	[ -x "$LINCHECK" ] || e2e_skip "$LINCHECK not built (make tests/lincheck/kf-lincheck)"
	KFCTL=$KUBEFENCE_BUILD/nodeagent/kubefencectl
	# The lab's kubectl (v1.20, built by lab/k8s-build.sh beside the servers).
	if [ ! -x "$E2E_KUBECTL" ]; then
		bash "$top_srcdir/lab/k8s-build.sh" >/dev/null || e2e_skip "no Kubernetes binaries"
	fi
	[ -x "$E2E_KUBECTL" ] || e2e_skip "$E2E_KUBECTL missing"
	export KUBEFENCE_KUBECTL=$E2E_KUBECTL
	# The lab overlay's paths (the admin kubeconfig, the per-node control
	# socket and fault-point directories) are those of the default
	# directory: the lab must live there.
	unset KUBECONFIG KUBEFENCE_LAB_DIR KUBEFENCE_LAB_NS
	export KUBEFENCE_LAB_NODES=2
	WORK=${WORK:-$(mktemp -d /tmp/kubefence-e2e.XXXXXX)}
	HIST=$WORK/hist
	mkdir -p "$HIST"
	HAD_RUN_KUBEFENCE=0
	[ -d /run/kubefence ] && HAD_RUN_KUBEFENCE=1
	HAD_RUN_KUBEFENCE_FP=0
	[ -d /run/kubefence-fp ] && HAD_RUN_KUBEFENCE_FP=1
}

# e2e_lincheck NAME HISTORY...: kf-lincheck over the histories (their
# operations judged together, as one system's; extra options in the array
# LINCHECK_ARGS); the report goes to $WORK/lincheck.NAME.out and .json.
# Prints the summary line; on a violation (exit 1), bad input (2) or an
# undecided key (3: the search limit) prints the checker's output (its
# first 300 lines) and returns that status.
e2e_lincheck() {
	local name=$1 out rc
	shift
	out=$WORK/lincheck.$name
	"$LINCHECK" "${LINCHECK_ARGS[@]}" --json "$out.json" "$@" >"$out.out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then
		grep '^lincheck:' "$out.out" | tail -1
		return 0
	fi
	echo "# kf-lincheck $name: exit $rc (1: not linearizable, 2: bad input, 3: undecided); its output:"
	head -300 "$out.out"
	return $rc
}

lab_is_up() { [ -d /sys/class/net/kflab0 ] || [ -f /var/lib/kubefence-lab/state ]; }

kc() { "$E2E_KUBECTL" --kubeconfig /var/lib/kubefence-lab/admin.kubeconfig --request-timeout=10s "$@"; }

bg_start() { # CMD... : run in the background, recorded for e2e_cleanup; sets BG_PID
	"$@" &
	BG_PID=$!
	E2E_BG_PIDS+=("$BG_PID")
}
bg_stop() { # PID: SIGTERM, wait (SIGKILL after 5 s)
	local p=$1 i
	kill -0 "$p" 2>/dev/null || {
		wait "$p" 2>/dev/null || true
		return 0
	}
	kill -TERM "$p" 2>/dev/null || true
	for i in $(seq 1 50); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

# e2e_cleanup [keep-lab]: stop what we started, tgtd, the lab.
e2e_cleanup() {
	local p
	for p in "${E2E_BG_PIDS[@]}"; do bg_stop "$p"; done
	E2E_BG_PIDS=()
LINCHECK_ARGS=()
	# Thaw anything a failed test left frozen, so that down can kill it.
	if [ "${1:-}" != keep ]; then
		bash "$LAB" down >/dev/null 2>&1 || bash "$LAB" down || true
		bash "$top_srcdir/tests/e2e/lab-tgtd.sh" stop "$WORK/tgt" || true
		# The per-node control socket directories (lab overlay, subPathExpr).
		rm -f /run/kubefence/lab-node-*/control.sock 2>/dev/null || true
		rmdir /run/kubefence/lab-node-* 2>/dev/null || true
		[ "$HAD_RUN_KUBEFENCE" = 1 ] || rmdir /run/kubefence 2>/dev/null || true
		# The per-node fault-point control directories (lab overlay).
		rm -f /run/kubefence-fp/lab-node-*/failpoints /run/kubefence-fp/lab-node-*/fired \
			/run/kubefence-fp/lab-node-*/*.paused 2>/dev/null || true
		rmdir /run/kubefence-fp/lab-node-* 2>/dev/null || true
		[ "$HAD_RUN_KUBEFENCE_FP" = 1 ] || rmdir /run/kubefence-fp 2>/dev/null || true
	fi
}

# e2e_up: the lab, its images from $KUBEFENCE_BUILD, tgtd on the lab portal.
e2e_up() {
	local t0
	t0=$(now)
	bash "$LAB" up
	export KUBECONFIG=/var/lib/kubefence-lab/admin.kubeconfig
	# A lab that was already up keeps older images: import the build anew.
	if [ "${E2E_REIMPORT:-0}" = 1 ]; then bash "$LAB" images; fi
	say "lab up in $(since "$t0") s"
	if [ ! -f "$WORK/tgt/tgtd.pid" ] || ! kill -0 "$(cat "$WORK/tgt/tgtd.pid")" 2>/dev/null; then
		bash "$top_srcdir/tests/e2e/lab-tgtd.sh" start "$WORK/tgt"
	fi
}

# e2e_deploy: apply the lab overlay, wait for both agents Ready and one master.
e2e_deploy() {
	local t0 i
	t0=$(now)
	# E2E_MANIFEST: a variant of the lab overlay (bench/nemesis.sh --variant)
	kc apply -f "${E2E_MANIFEST:-$top_srcdir/manifests/rendered/lab.yaml}" >/dev/null
	for i in $(seq 1 600); do
		if [ "$(agents_ready)" = 2 ] && [ "$(masters | wc -w)" = 1 ] && [ -n "$(endpoint)" ]; then
			say "deployed: 2 agents Ready, master $(masters) at $(endpoint), in $(since "$t0") s"
			return 0
		fi
		sleep 0.2
	done
	kc get pods -n $NS -o wide --show-labels
	return 1
}

agents_ready() {
	kc get pods -n $NS -l app=kubefence-agent \
		-o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
		grep -c True || true
}
masters() { kc get pods -n $NS -l role=master -o jsonpath='{.items[*].metadata.name}' 2>/dev/null || true; }
endpoint() { kc get endpoints -n $NS metaservice -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null || true; }
pod_ip() { kc get pod -n $NS "$1" -o jsonpath='{.status.podIP}'; }
pod_node() { kc get pod -n $NS "$1" -o jsonpath='{.spec.nodeName}'; }
pod_uid() { kc get pod -n $NS "$1" -o jsonpath='{.metadata.uid}'; }
restarts() { kc get pod -n $NS "$1" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }
agent_ip_on() { # NODE
	kc get pods -n $NS -l app=kubefence-agent --field-selector "spec.nodeName=$1" \
		-o jsonpath='{.items[0].status.podIP}'
}
agent_pod_on() { # NODE
	kc get pods -n $NS -l app=kubefence-agent --field-selector "spec.nodeName=$1" \
		-o jsonpath='{.items[0].metadata.name}'
}
lease_epoch() { kc get lease -n $NS metaservice -o jsonpath='{.spec.leaseTransitions}'; }
lease_holder() { kc get lease -n $NS metaservice -o jsonpath='{.spec.holderIdentity}'; }

# Both agents' services connected (/readyz on each agent), one master, an
# endpoint: a failover can happen.
both_ready() {
	local ip n=0
	for ip in $(kc get pods -n $NS -l app=kubefence-agent -o jsonpath='{.items[*].status.podIP}' 2>/dev/null); do
		curl -fsS --max-time 1 "http://$ip:9464/readyz" >/dev/null 2>&1 && n=$((n + 1))
	done
	# ... and both MetaService pods Ready: the Endpoints carry Ready pods
	# only, so a master whose pod is not Ready yet (a standby just started,
	# readiness probe every 2 s) is not reachable through the Service.
	[ $n = 2 ] && [ "$(masters | wc -w)" = 1 ] && [ -n "$(endpoint)" ] &&
		[ "$(kc get pods -n $NS -l app=metaservice -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c True)" = 2 ]
}
# poll TIMEOUT_S CMD...: run CMD every 0.2 s until it succeeds (0), for up
# to TIMEOUT_S seconds (1).
poll() {
	local n=$(($1 * 5)) i
	shift
	for i in $(seq 1 $n); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
wait_both_ready() { poll "$1" both_ready; } # TIMEOUT_S

# wait_new_master OLD TIMEOUT_S: a pod other than OLD labelled role=master
# and the Endpoints on its IP.  Prints the pod.
wait_new_master() {
	local old=$1 i m
	for i in $(seq 1 $(($2 * 10))); do
		m=$(masters)
		if [ -n "$m" ] && [ "$m" != "$old" ] && [ "$(echo "$m" | wc -w)" = 1 ] &&
			[ "$(endpoint)" = "$(pod_ip "$m" 2>/dev/null)" ]; then
			echo "$m"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# wait_restarted POD BEFORE TIMEOUT_S: restartCount > BEFORE and Ready.
wait_restarted() {
	local i js
	for i in $(seq 1 $(($3 * 5))); do
		js=$(kc get pod -n $NS "$1" -o json 2>/dev/null) || {
			sleep 0.2
			continue
		}
		if [ "$(jq -r '.status.containerStatuses[0].restartCount' <<<"$js")" -gt "$2" ] &&
			[ "$(jq -r '.status.containerStatuses[0].ready' <<<"$js")" = true ]; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# recycle POD: delete a standby pod so that the StatefulSet makes a fresh one
# (a container killed again and again is restarted by its kubelet with
# CrashLoopBackOff: 10 s, 20 s, 40 s, ...; a new pod starts without delay).
recycle() {
	# (its container is dead, waiting out the back-off: nothing to stop)
	kc delete pod -n $NS "$1" --grace-period=0 --force --wait=false >/dev/null 2>&1
}

# kill_pod_at POD [NAMESPACE]: SIGKILL the pod's container through its
# node's containerd, `ctr -n k8s.io task kill -s SIGKILL` (what lab.sh
# kill-master / kill-pod run), with the container looked up first so that
# the times are tight: KILL_US = CLOCK_REALTIME µs just before ctr was
# started (the kill happened after it: failover times measured from it are
# upper bounds, by ctr's own start-up of ~10-30 ms), KILL_DONE_US = when ctr
# returned.  Sets KILLED_POD, KILLED_NODE.
kill_pod_at() {
	local pod=$1 ns=${2:-$NS} js cid
	js=$(kc get pod -n "$ns" "$pod" -o json) || return 1
	KILLED_POD=$pod
	KILLED_NODE=$(jq -r '.spec.nodeName' <<<"$js")
	cid=$(jq -r '.status.containerStatuses[0].containerID' <<<"$js")
	cid=${cid#containerd://}
	[ -n "$cid" ] && [ "$cid" != null ] || return 1
	KILL_US=$(now_us)
	ctr --address "/var/lib/kubefence-lab/nodes/$KILLED_NODE/containerd.sock" -n k8s.io \
		task kill -s SIGKILL "$cid" || return 1
	KILL_DONE_US=$(now_us)
}
kill_master_at() {
	local m
	m=$(masters)
	[ "$(echo "$m" | wc -w)" = 1 ] || return 1
	kill_pod_at "$m"
}

# container_pid POD: the host PID of the pod's first container, while it
# runs (its node's containerd: ctr task ls).
container_pid() {
	local js node cid
	js=$(kc get pod -n $NS "$1" -o json 2>/dev/null) || return 1
	node=$(jq -r '.spec.nodeName' <<<"$js")
	cid=$(jq -r '.status.containerStatuses[0].containerID // ""' <<<"$js")
	cid=${cid#containerd://}
	[ -n "$cid" ] || return 1
	bash "$LAB" ctr "$node" task ls 2>/dev/null | awk -v c="$cid" '$1 == c && $3 == "RUNNING" {print $2}'
}

# lun_keys LUN NODES [TIMEOUT_MS]: `kubefencectl scsi keys` of the LUN, each
# key named with its node of NODES (comma-separated), read by an initiator
# of the test's own, which registers nothing.
lun_keys() {
	"$KFCTL" scsi keys --lun "$1" --nodes "$2" --initiator iqn.2026-11.io.kubefence:lab-probe \
		--timeout-ms "${3:-2000}" 2>/dev/null
}
# resv_holder LUN NODES [TIMEOUT_MS]: the node whose key holds the LUN's
# reservation, "" when none.
resv_holder() { lun_keys "$@" | sed -n "s/^  reservation .* node '\(.*\)'$/\1/p"; }

# first_ack_after ACKS_FILE T_US [NOT_ADDR]: the first acknowledged write
# with acked_us > T_US (and not from NOT_ADDR): prints "acked_us addr".
first_ack_after() {
	awk -v t="$2" -v not="${3:-}" '$3 > t && (not == "" || $4 != not) {print $3, $4; exit}' "$1" 2>/dev/null
}
# wait_ack_after ACKS_FILE T_US TIMEOUT_S [NOT_ADDR]
wait_ack_after() {
	local i r
	for i in $(seq 1 $(($3 * 50))); do
		r=$(first_ack_after "$1" "$2" "${4:-}")
		[ -n "$r" ] && {
			echo "$r"
			return 0
		}
		sleep 0.02
	done
	return 1
}

# refuses_write POD_OR_ADDR: a direct PUT to it is refused (NOTMASTER or
# ERR) within 15 s; connection errors are retried (a pod just restarted may
# not listen yet).  Fails (returns 1) at once on OK.  Prints the answer.
refuses_write() {
	local i r addr=$1
	for i in $(seq 1 75); do
		case $addr in *:*) ;; *) addr="$(pod_ip "$1" 2>/dev/null):7480" ;; esac
		r=$("$CLIENT" --timeout-ms 1000 direct "$addr" put "fenced-probe" x)
		case $r in
		OK*) echo "$r"; return 1 ;;
		NOTMASTER* | ERR*) echo "$r"; return 0 ;;
		esac
		addr=$1
		sleep 0.2
	done
	echo "$r"
	return 1
}
