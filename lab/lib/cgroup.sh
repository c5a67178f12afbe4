# The nodes' cgroups (sourced by lab/lab.sh, not run): which hierarchy
# freezes a node (cgroup v2's `cgroup.freeze` where the unified hierarchy is
# mounted, else the v1 freezer; chosen once per lab and recorded in
# $LABDIR/freezer), the cgroup kubefence-lab/NODE in every hierarchy that
# holds a node's kubelet, containerd and shims, the containers' cgroups
# /k8s.io/<id>, and `freeze`/`thaw` of a whole node: the "hung node, zombie
# master" case.  Also how all of that is found again (node_pids) and removed.
# shellcheck shell=bash

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

ensure_node_cgroups() { # NAME
	local n=$1 h d c
	for h in $(cgroup_hierarchies); do
		for d in "$h/$LAB_CGROUP" "$h/$LAB_CGROUP/$n"; do
			[ -d "$d" ] || mkdir "$d"
			# A v1 cpuset cgroup starts with no CPUs and no memory nodes
			# (v2 inherits them).
			if [ -f "$d/cpuset.cpus" ] && [ "$(stat -f -c %T "$h")" = cgroupfs ]; then
				[ -n "$(cat "$d/cpuset.cpus")" ] || cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
				[ -n "$(cat "$d/cpuset.mems")" ] || cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
			fi
		done
	done
	# On a v2 host the kubelet's --cgroup-root is a v2 cgroup, which has the
	# controllers (cpu, memory, pids, ...) only if its parent delegates them:
	# delegate what the host gives the lab's cgroup.  (The parent holds no
	# process itself, as v2 requires of a cgroup that delegates.)
	if cgroup_v2_host; then
		d=/sys/fs/cgroup/$LAB_CGROUP
		for c in $(cat "$d/cgroup.controllers"); do
			grep -qw "$c" "$d/cgroup.subtree_control" || echo "+$c" >"$d/cgroup.subtree_control" ||
				log "warning: cannot delegate the $c controller to the nodes' cgroups"
		done
	fi
}

# All PIDs in a cgroup subtree (freezer hierarchy).
cgroup_pids() { # DIR
	[ -d "$1" ] || return 0
	find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# The containers of a node: containerd (CRI) gives them the cgroup
# /k8s.io/<id> in every hierarchy (runc makes it in the unified one too on
# a hybrid host), outside the node's own cgroup, since the kubelet with
# --cgroups-per-qos=false passes no cgroup parent.  The task directories in
# the node's containerd state name them.
node_task_ids() { # NODE
	ls "$(node_dir "$1")/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null || true
}
node_freezers() { # NODE: the node's cgroup, then its containers', in the freezing hierarchy
	local id root
	root=$(freezer_root)
	echo "$root/$LAB_CGROUP/$1"
	for id in $(node_task_ids "$1"); do
		[ -d "$root/k8s.io/$id" ] && echo "$root/k8s.io/$id"
	done
	return 0
}
node_pids() { # NODE: every process of the node
	local d
	for d in $(node_freezers "$1"); do cgroup_pids "$d"; done | sort -un
}
set_freezer() { # NODE FROZEN|THAWED
	local d
	for d in $(node_freezers "$1"); do { freezer_set "$d" "$2"; } 2>/dev/null || true; done
}
# After its processes are gone: the containers' cgroups (runc would have
# removed them, had its shims lived).
remove_container_cgroups() { # NODE
	local h id
	for id in $(node_task_ids "$1"); do
		for h in $(cgroup_hierarchies); do
			[ -d "$h/k8s.io/$id" ] && rmdir "$h/k8s.io/$id" 2>/dev/null || true
		done
	done
}

remove_cgroups() {
	local h
	for h in $(cgroup_hierarchies); do
		[ -d "$h/$LAB_CGROUP" ] || continue
		find "$h/$LAB_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[ ! -d "$h/$LAB_CGROUP" ] || log "warning: $h/$LAB_CGROUP is still there"
	done
	if ! grep -q had_k8s_io_cgroup "$LABDIR/state" 2>/dev/null; then
		for h in $(cgroup_hierarchies); do
			[ -d "$h/k8s.io" ] && rmdir "$h/k8s.io" 2>/dev/null || true
		done
	fi
}

cmd_freeze() { # NODE FROZEN|THAWED
	external && unsupported "freezing a node"
	need_root
	need_lab
	need_node "$1"
	local d i ok
	# Freezing: the kubelet, containerd and shims first, then the
	# containers; thawing: the other way round.
	if [ "$2" = FROZEN ]; then
		set_freezer "$1" FROZEN
	else
		for d in $(node_freezers "$1" | tac); do freezer_set "$d" THAWED; done
	fi
	for i in $(seq 1 100); do
		ok=1
		for d in $(node_freezers "$1"); do
			[ "$(freezer_state "$d")" = "$2" ] || ok=0
		done
		[ $ok = 1 ] && break
		sleep 0.1
	done
	[ $ok = 1 ] || die "$1: not all of its cgroups reached $2"
	echo "$1 $2 cgroups=$(node_freezers "$1" | wc -l) freezer=$(lab_freezer) at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
}
