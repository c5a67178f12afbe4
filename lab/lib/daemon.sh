# The lab's daemons (sourced by lab/lab.sh, not run): how each is started
# (setsid, its PID in $LABDIR/run/NAME.pid, its output in $LABDIR/logs, and
# for a node's daemons that node's network namespace and cgroup), waited
# for, and where the Kubernetes binaries are (lab/k8s-build.sh's cache).
# Stopping is by PID file (stop_pidfile, stop_pidfiles in common.sh).
# shellcheck shell=bash

# start_daemon NAME LOG [--node NODE] CMD...: setsid, recorded in run/NAME.pid.
# With --node the process enters that node's network and mount namespaces
# and its cgroup in the freezing hierarchy (its children, e.g. containerd's
# shims, inherit them all).
start_daemon() {
	local name=$1 logf=$2 node=""
	shift 2
	if [ "${1:-}" = --node ]; then
		node=$2
		shift 2
	fi
	mkdir -p "$RUN" "$LOGS"
	if [ -n "$node" ]; then
		# (setsid does not fork here: a background job of a script is no
		# group leader, so $! is the daemon's PID.)
		setsid sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh \
			"$(freezer_dir "$node")" nsenter --net="$(node_netns "$node")" \
			--mount="$(node_mntns "$node")" "$@" \
			</dev/null >>"$logf" 2>&1 &
	else
		setsid "$@" </dev/null >>"$logf" 2>&1 &
	fi
	echo $! >"$RUN/$name.pid"
}

wait_for() { # WHAT TIMEOUT_S PIDFILE CMD...
	local what=$1 t=$2 pf=$3 i
	shift 3
	for i in $(seq 1 $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		pid_alive "$pf" || die "$what exited; see $LOGS"
		sleep 0.1
	done
	die "$what not ready after ${t}s; see $LOGS"
}

port_free() { ! ss -Htln "sport = :$2" | awk '{print $4}' | grep -qx "$1:$2"; }

BIN=""
k8s_bin() {
	[ -n "$BIN" ] || BIN=$(bash "$LAB_TOP/lab/k8s-build.sh") || die "no Kubernetes binaries"
}
