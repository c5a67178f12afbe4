# The lab as a whole (sourced by lab/lab.sh, not run): `up` (check the
# tools, record what the host had before, then PKI, bridge, control plane,
# the Service gateway and each node, and wait until the nodes are Ready,
# the images loaded, every kube-proxy synced and the default ServiceAccount
# there), `down` (kill everything by PID and cgroup, then remove what `up`
# made, in and outside $LABDIR, and only that), and what reports on it:
# `status`, `nodes`, `pids`, `kubeconfig`, `env`.
# shellcheck shell=bash

cmd_up() {
	need_root
	if external; then
		log "using the existing cluster of KUBECONFIG=$KUBECONFIG; nothing to start"
		kubectl get nodes -o wide
		return 0
	fi
	local t0 n nodes want
	t0=$(date +%s.%N)
	want=${KUBEFENCE_LAB_NODES:-2}
	[ "$want" -ge 1 ] && [ "$want" -le 3 ] || die "KUBEFENCE_LAB_NODES must be 1..3"
	for c in etcd containerd runc nsenter unshare mountpoint iptables openssl curl kubectl gcc ctr; do
		command -v "$c" >/dev/null || die "$c not found (Debian packages: see lab/README.md)"
	done
	[ -x "$LAB_CNI_BIN/bridge" ] || die "no CNI bridge plugin in $LAB_CNI_BIN (containernetworking-plugins)"
	mkdir -p "$LABDIR" "$RUN" "$LOGS"
	# The freezing hierarchy, chosen once per lab (see lab_freezer).
	[ -s "$LABDIR/freezer" ] || { lab_freezer >"$LABDIR/freezer.new" && mv "$LABDIR/freezer.new" "$LABDIR/freezer"; }
	if [ ! -f "$LABDIR/state" ]; then
		{
			echo "created=$(date -u +%FT%TZ)"
			[ -d /var/log/pods ] && echo "had_var_log_pods=1"
			[ -d /var/log/containers ] && echo "had_var_log_containers=1"
			[ -d /var/lib/cni ] && echo "had_var_lib_cni=1"
			[ -d /run/containerd ] && echo "had_run_containerd=1"
			[ -d /run/netns ] && echo "had_run_netns=1"
			for h in $(cgroup_hierarchies); do [ -d "$h/k8s.io" ] && echo "had_k8s_io_cgroup=1" && break; done
			[ -d /var/lib/kubelet ] && echo "had_var_lib_kubelet=1"
		} >"$LABDIR/state"
	fi
	# Nodes: what a previous `up` made, extended to the wanted count.
	{
		lab_nodes 2>/dev/null || true
		for i in $(seq 1 "$want"); do node_name "$i"; done
	} | sort -u -t- -k3n >"$LABDIR/nodes.list.new"
	mv "$LABDIR/nodes.list.new" "$LABDIR/nodes.list"
	nodes=$(lab_nodes)
	k8s_bin
	ensure_pki
	ensure_bridge
	ensure_etcd
	ensure_apiserver
	ensure_controller_manager
	ensure_scheduler
	ensure_gateway
	start_kube_proxy "$LAB_GW" "$LAB_GW_IP"
	for n in $nodes; do ensure_node "$n"; done
	log "control plane and nodes started after $(elapsed "$t0")s; waiting for Ready"
	local i
	for i in $(seq 1 1200); do
		ready=$(kctl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '=True$' || true)
		[ "$ready" -ge "$(echo "$nodes" | wc -w)" ] && break
		for n in $nodes; do
			pid_alive "$RUN/$n.kubelet.pid" || die "kubelet of $n exited; see $LOGS/$n.kubelet.log"
			pid_alive "$RUN/$n.containerd.pid" || die "containerd of $n exited; see $LOGS/$n.containerd.log"
		done
		sleep 0.1
	done
	[ "$ready" -ge "$(echo "$nodes" | wc -w)" ] || die "nodes not Ready after 120s; see $LOGS"
	wait_image_loads
	# Services route once every kube-proxy has synced its rules.
	for n in $LAB_GW $nodes; do
		for i in $(seq 1 300); do
			kube_proxy_synced "$n" && break
			pid_alive "$RUN/$n.kube-proxy.pid" || die "kube-proxy of $n exited; see $LOGS/$n.kube-proxy.log"
			sleep 0.1
		done
		kube_proxy_synced "$n" || die "kube-proxy of $n has not synced after 30s; see $LOGS/$n.kube-proxy.log"
	done
	# Pods need their namespace's ServiceAccount, which the controller
	# manager creates: wait for the default one.
	for i in $(seq 1 300); do
		kctl get serviceaccount default -n default >/dev/null 2>&1 && break
		sleep 0.1
	done
	log "up: $(echo "$nodes" | wc -w) nodes Ready after $(elapsed "$t0")s; KUBECONFIG=$LABDIR/admin.kubeconfig"
}

elapsed() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN{printf "%.1f", a-b}'; }

unmount_under() { # DIR: every mount below DIR, deepest first
	local m
	for m in $(awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
	done
}

cmd_down() {
	need_root
	if external; then
		log "down: the existing cluster of KUBECONFIG=$KUBECONFIG is not ours; nothing to stop"
		return 0
	fi
	local n uids="" st=""
	[ -f "$LABDIR/state" ] && st=$(cat "$LABDIR/state")
	# The kubelets keep pod logs in /var/log/pods (fixed path): note our pods.
	if pid_alive "$RUN/apiserver.pid" 2>/dev/null; then
		uids=$(kctl get pods -A -o jsonpath='{.items[*].metadata.uid}' --request-timeout=5s 2>/dev/null || true)
	fi
	# Everything goes, state included, so there is nothing to shut down
	# gracefully: SIGKILL (a graceful API server stop alone takes 3 s).
	# The kubelets first, so that none restarts a container while its node
	# is taken down; then the rest of each node; then the control plane.
	for n in $(lab_nodes); do set_freezer "$n" THAWED; done
	# shellcheck disable=SC2046
	stop_pidfiles KILL $(for n in $(lab_nodes); do echo "$RUN/$n.kubelet.pid"; done) "$RUN/$LAB_GW.kube-proxy.pid"
	for n in $(lab_nodes); do stop_node "$n"; done
	# (the nodes' kube-proxies died with their nodes' cgroups)
	for n in $(lab_nodes); do rm -f "$RUN/$n.kube-proxy.pid"; done
	stop_pidfiles KILL "$RUN/scheduler.pid" "$RUN/controller-manager.pid" "$RUN/apiserver.pid"
	stop_pidfiles KILL "$RUN/etcd.pid"
	unmount_under "$LABDIR"
	remove_cgroups
	remove_node_nets
	remove_gateway
	remove_bridge
	# shellcheck disable=SC2086
	remove_host_paths "$st" $uids
	[ -n "$LABDIR" ] && [ "$LABDIR" != / ] && rm -rf "$LABDIR"
	log "down: everything stopped and removed"
}

# remove_host_paths STATE UID...: what the kubelets and containerd write
# outside $LABDIR (the dirs of the pods UID... in /var/log/pods and their
# links in /var/log/containers, libcni's cache, the device-plugin socket, shim
# sockets, /run/netns), each directory only if STATE (the lab's state file)
# says the host did not have it before the lab.
remove_host_paths() {
	local st=$1 u f
	shift
	for u in "$@"; do
		for f in /var/log/pods/*_"$u"; do
			[ -e "$f" ] || continue
			find /var/log/containers -maxdepth 1 -lname "$f/*" -delete 2>/dev/null || true
			rm -rf "$f"
		done
	done
	rm -f /var/lib/cni/results/"$LAB_CNI_NET"-* 2>/dev/null || true
	echo "$st" | grep -q had_var_log_pods || rmdir /var/log/pods 2>/dev/null || true
	echo "$st" | grep -q had_var_log_containers || rmdir /var/log/containers 2>/dev/null || true
	echo "$st" | grep -q had_var_lib_cni || rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
	# The kubelet 1.20 device manager's socket is at a fixed path too.
	if ! echo "$st" | grep -q had_var_lib_kubelet; then
		rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/DEPRECATION
		rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
	fi
	# Shim sockets of our (killed) shims: those nobody listens on.
	if [ -d /run/containerd/s ]; then
		local listening
		listening=$(ss -Hxl | awk '{print $5}')
		for f in /run/containerd/s/*; do
			[ -S "$f" ] || continue
			echo "$listening" | grep -qxF "$f" || rm -f "$f"
		done
		echo "$st" | grep -q had_run_containerd || rmdir /run/containerd/s /run/containerd 2>/dev/null || true
	fi
	# `ip netns add` made /run/netns (a bind mount of itself) if it was not there.
	if ! echo "$st" | grep -q had_run_netns && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
		umount /run/netns 2>/dev/null || true
		rmdir /run/netns 2>/dev/null || true
	fi
}

cmd_status() {
	if external; then
		log "existing cluster (KUBECONFIG=$KUBECONFIG): no local processes"
		kubectl get nodes -o wide
		kubectl get pods -A -o wide
		return 0
	fi
	[ -f "$LABDIR/state" ] || {
		echo "lab: down ($LABDIR)"
		return 3
	}
	local f rc=0 n
	for f in "$RUN"/*.pid; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .pid)
		if pid_alive "$f"; then
			printf '%-26s pid %-8s running\n' "$n" "$(cat "$f")"
		else
			printf '%-26s pid %-8s DEAD\n' "$n" "$(cat "$f")"
			rc=1
		fi
	done
	for n in $(lab_nodes); do
		printf '%-26s freezer %s (%s), %s container cgroups\n' "$n" \
			"$(freezer_state "$(freezer_dir "$n")")" "$(lab_freezer)" \
			"$(($(node_freezers "$n" | wc -l) - 1))"
	done
	kctl get nodes -o wide --request-timeout=5s || rc=1
	kctl get pods -A -o wide --request-timeout=5s || rc=1
	return $rc
}

cmd_nodes() {
	local n i
	if external; then
		kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.addresses[?(@.type=="InternalIP")].address} {.spec.podCIDR}{"\n"}{end}'
		return
	fi
	for n in $(lab_nodes); do
		i=$(node_index "$n")
		echo "$n $(node_ip "$i") $(node_podnet "$i")"
	done
}

cmd_pids() {
	local f n
	for f in "$RUN"/*.pid; do
		[ -e "$f" ] || continue
		echo "$(cat "$f") $(basename "$f" .pid)"
	done
	for n in $(lab_nodes); do
		for f in $(node_pids "$n"); do echo "$f $n"; done
	done | sort -u
}

cmd_kubeconfig() {
	if external; then echo "$KUBECONFIG"; else
		need_lab
		echo "$LABDIR/admin.kubeconfig"
	fi
}

cmd_env() {
	if external; then echo "export KUBECONFIG='$KUBECONFIG'"; else
		need_lab
		echo "export KUBECONFIG='$LABDIR/admin.kubeconfig'"
		echo "export KUBEFENCE_LAB_DIR='$LABDIR'"
		echo "export KUBEFENCE_LAB_API='https://$LAB_HOST_IP:$LAB_API_PORT'"
		echo "export KUBEFENCE_LAB_NODES='$(lab_nodes | tr '\n' ' ' | sed 's/ $//')'"
	fi
}
