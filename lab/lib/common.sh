# Shared definitions for lab/lab.sh and lab/images.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034

LAB_TOP=${LAB_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LABDIR=${KUBEFENCE_LAB_DIR:-/var/lib/kubefence-lab}

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

# The hierarchies under /sys/fs/cgroup: v1 (cpu, memory, freezer,
# name=systemd, ...) and, on a hybrid host, the unified one, where runc also
# makes the containers' cgroups.
cgroup_hierarchies() {
	awk '($3 == "cgroup" || $3 == "cgroup2") && $2 ~ "^/sys/fs/cgroup/" {print $2}' /proc/self/mounts
}

# Freezing a node.  Where the host mounts the unified (v2) hierarchy --
# /sys/fs/cgroup itself on a v2 host (Debian 12's default), or
# /sys/fs/cgroup/unified beside the v1 controllers on a hybrid one -- a
# cgroup is frozen through its `cgroup.freeze` and `cgroup.events` says when
# all of its processes have stopped; otherwise the v1 freezer's
# `freezer.state` does it.  KUBEFENCE_LAB_FREEZER=v1 or v2 picks one on a
# host that has both.  `up` records the choice in $LABDIR/freezer and places
# the node's processes in that hierarchy, so every later command of that lab
# uses the same one.
cgroup_unified() { # the unified hierarchy's mount point, if any
	awk '$3 == "cgroup2" && ($2 == "/sys/fs/cgroup" || $2 == "/sys/fs/cgroup/unified") {print $2; exit}' /proc/self/mounts
}
cgroup_v1_freezer() { # the v1 freezer's mount point, if any
	awk '$3 == "cgroup" && $2 ~ "^/sys/fs/cgroup/" && $4 ~ /(^|,)freezer(,|$)/ {print $2; exit}' /proc/self/mounts
}
# cgroup_v2_host: /sys/fs/cgroup is the unified hierarchy, so runc, containerd
# and the kubelet run in cgroup v2 mode (on a hybrid host they use v1).
cgroup_v2_host() { [ "$(cgroup_unified)" = /sys/fs/cgroup ]; }
lab_freezer() { # prints v2 or v1
	if [ -s "$LABDIR/freezer" ]; then
		cat "$LABDIR/freezer"
		return 0
	fi
	case ${KUBEFENCE_LAB_FREEZER:-auto} in
	v2) [ -n "$(cgroup_unified)" ] || die "KUBEFENCE_LAB_FREEZER=v2: no unified cgroup hierarchy mounted" ;;
	v1) [ -n "$(cgroup_v1_freezer)" ] || die "KUBEFENCE_LAB_FREEZER=v1: no v1 freezer mounted" ;;
	auto)
		if [ -n "$(cgroup_unified)" ]; then echo v2; elif [ -n "$(cgroup_v1_freezer)" ]; then echo v1; else
			die "neither a unified cgroup hierarchy nor the v1 freezer is mounted"
		fi
		return 0
		;;
	*) die "KUBEFENCE_LAB_FREEZER must be v1, v2 or auto" ;;
	esac
	echo "$KUBEFENCE_LAB_FREEZER"
}
freezer_root() { # the hierarchy lab_freezer uses
	if [ "$(lab_freezer)" = v2 ]; then cgroup_unified; else cgroup_v1_freezer; fi
}
freezer_dir() { echo "$(freezer_root)/$LAB_CGROUP/$1"; } # NODE
# freezer_set DIR FROZEN|THAWED: ask for the state (it is reached later).
freezer_set() {
	if [ "$(lab_freezer)" = v2 ]; then
		if [ "$2" = FROZEN ]; then echo 1 >"$1/cgroup.freeze"; else echo 0 >"$1/cgroup.freeze"; fi
	else
		echo "$2" >"$1/freezer.state"
	fi
}
# freezer_state DIR: FROZEN (every process stopped), FREEZING or THAWED.
freezer_state() {
	if [ "$(lab_freezer)" = v2 ]; then
		if grep -qx 'frozen 1' "$1/cgroup.events" 2>/dev/null; then echo FROZEN
		elif [ "$(cat "$1/cgroup.freeze" 2>/dev/null)" = 1 ]; then echo FREEZING
		else echo THAWED; fi
	else
		cat "$1/freezer.state" 2>/dev/null || echo THAWED
	fi
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
