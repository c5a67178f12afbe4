# Shared definitions of the lab (sourced, not run): the addresses and names
# every part of lab/lab.sh and lab/images.sh agrees on (the bridge, the
# Service range, the nodes' addresses and pod networks, the state dir and
# its run/, logs/ and pki/), logging, PID files, and our own kubectl.  It
# defines and starts nothing.  The rest of lab.sh's libraries (lab/lib/*.sh)
# build on it.
# shellcheck shell=bash disable=SC2034

LAB_TOP=${LAB_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LABDIR=${KUBEFENCE_LAB_DIR:-/var/lib/kubefence-lab}
# The running lab's files: the daemons' PID files, their logs, the PKI.
RUN=$LABDIR/run
LOGS=$LABDIR/logs
PKI=$LABDIR/pki
LIB=$LAB_TOP/lab/lib

# Addresses: everything lives in 198.18.0.0/24.
#   198.18.0.0/27   the bridge: host .1 (API server), node i at .(10+i),
#                   the Service gateway at .20
#   198.18.0.32/27  the Service range (the `kubernetes` Service is .33)
#   198.18.0.64/26, .128/26, .192/26   the pod networks of nodes 1, 2, 3
LAB_BRIDGE=kflab0
LAB_HOST_IP=198.18.0.1
LAB_PREFIX=27
LAB_SERVICE_RANGE=198.18.0.32/27
LAB_SERVICE_IP=198.18.0.33
LAB_API_PORT=6443
LAB_ETCD_PORT=12379
LAB_ETCD_PEER_PORT=12380
LAB_CGROUP=kubefence-lab
LAB_CNI_NET=kflab
# The Service gateway: a network namespace on the bridge that runs only a
# kube-proxy; the host routes the Service range through it (see lab.sh).
LAB_GW=lab-gw
LAB_GW_IP=198.18.0.20
LAB_CNI_BIN=${KUBEFENCE_LAB_CNI_BIN:-/usr/lib/cni}
LAB_NS=${KUBEFENCE_LAB_NS:-kubefence}

log() { echo "lab: $*" >&2; }
die() {
	echo "lab: $*" >&2
	exit 1
}
# pid_gone, wait_pid_gone, stop_pidfile, free_port: shared with the test harnesses
# shellcheck source=tests/harness/lib.sh
. "$LAB_TOP/tests/harness/lib.sh"

node_name() { echo "lab-node-$1"; }            # INDEX
node_index() { echo "${1#lab-node-}"; }        # NAME
node_ip() { echo "198.18.0.$((10 + $1))"; }     # INDEX
node_podnet() { echo "198.18.0.$((64 * $1))/26"; } # INDEX
node_podgw() { echo "198.18.0.$((64 * $1 + 1))"; } # INDEX
node_dir() { echo "$LABDIR/nodes/$1"; }         # NAME
node_sock() { echo "$LABDIR/nodes/$1/containerd.sock"; }
node_netns() { echo "/var/run/netns/$1"; }
node_mntns() { echo "$RUN/mnt/$1"; } # NAME: its mount namespace (node.sh)

# The nodes of the running lab (recorded at `up`), else the wanted count.
lab_nodes() {
	local n
	if [ -f "$LABDIR/nodes.list" ]; then
		cat "$LABDIR/nodes.list"
		return
	fi
	n=${KUBEFENCE_LAB_NODES:-2}
	for i in $(seq 1 "$n"); do node_name "$i"; done
}

pid_alive() { # PIDFILE
	local p
	[ -f "$1" ] || return 1
	p=$(cat "$1")
	[ -n "$p" ] && ! pid_gone "$p"
}

# stop_pidfiles SIGNAL FILE...: signal all at once, then wait for each
# (SIGKILL after 10 s), so that a shutdown takes as long as the slowest,
# not the sum.
stop_pidfiles() {
	local sig=$1 f pid pids=()
	shift
	for f in "$@"; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -"$sig" "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	for pid in "${pids[@]}"; do
		if ! wait_pid_gone "$pid" 10; then
			kill -KILL "$pid" 2>/dev/null || true
			wait_pid_gone "$pid" 5 || true
		fi
	done
	rm -f "$@"
}

# kubectl is our own v1.20 build (lab/k8s-build.sh caches it beside the
# servers): Debian bookworm has no kubectl package, and a client of the
# servers' version is the right one anyway.  The function shadows any
# kubectl on PATH; KUBEFENCE_KUBECTL overrides it.
kubectl() {
	if [ -z "${KUBEFENCE_KUBECTL:-}" ]; then
		KUBEFENCE_KUBECTL=$(bash "$LAB_TOP/lab/k8s-build.sh")/kubectl || return 1
	fi
	"$KUBEFENCE_KUBECTL" "$@"
}
kctl() { kubectl --kubeconfig "$LABDIR/admin.kubeconfig" "$@"; }
