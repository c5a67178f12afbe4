# The lab's network (sourced by lab/lab.sh, not run): the bridge kflab0
# with the host at 198.18.0.1, one network namespace per node on a veth
# (node i at 198.18.0.(10+i)), the routes between the nodes' pod networks,
# the host's one iptables rule, and the partitions (`netdown`/`netup`).
# Nodes have no default route: nothing outside 198.18.0.0/24 is reachable
# from a node or a pod.  The Service range and its gateway are in
# service.sh; the addresses themselves in common.sh.
# shellcheck shell=bash

nsx() { # NODE CMD...: run CMD in the node's network namespace (not `ip netns
	# exec`, which remounts /sys and hides the cgroup mounts)
	local n=$1
	shift
	nsenter --net="$(node_netns "$n")" "$@"
}

bridge_owner() { cat "/sys/class/net/$LAB_BRIDGE/ifalias" 2>/dev/null || true; }

ensure_bridge() {
	if [ -d "/sys/class/net/$LAB_BRIDGE" ]; then
		[ "$(bridge_owner)" = "kubefence-lab:$LABDIR" ] ||
			die "bridge $LAB_BRIDGE exists but belongs to '$(bridge_owner)', not this lab ($LABDIR)"
	else
		ip link add "$LAB_BRIDGE" type bridge
		ip link set "$LAB_BRIDGE" alias "kubefence-lab:$LABDIR"
	fi
	ip addr show dev "$LAB_BRIDGE" | grep -q "inet $LAB_HOST_IP/" ||
		ip addr add "$LAB_HOST_IP/$LAB_PREFIX" dev "$LAB_BRIDGE"
	ip link set "$LAB_BRIDGE" up
	# Node-to-node traffic is bridged; with br_netfilter it also crosses the
	# host's FORWARD chain, which must not drop it.
	if ! iptables -C FORWARD -i "$LAB_BRIDGE" -o "$LAB_BRIDGE" -m comment --comment kubefence-lab -j ACCEPT 2>/dev/null; then
		iptables -I FORWARD 1 -i "$LAB_BRIDGE" -o "$LAB_BRIDGE" -m comment --comment kubefence-lab -j ACCEPT
	fi
}

# The routes and rules of a node's namespace (re-applied by netup: a link
# going down drops its routes).
node_routes() { # NAME
	local n=$1 i j
	i=$(node_index "$n")
	# No default route: a node reaches the lab's addresses (198.18.0.0/24)
	# and nothing else, so stray traffic (cloud metadata probes, DNS) fails
	# at once instead of timing out, and never leaves the lab.
	nsx "$n" ip route del default 2>/dev/null || true
	nsx "$n" ip route replace 198.18.0.0/24 via "$LAB_HOST_IP" dev eth0
	for j in $(seq 1 3); do
		[ "$j" = "$i" ] && continue
		nsx "$n" ip route replace "$(node_podnet "$j")" via "$(node_ip "$j")" dev eth0
	done
}

ensure_node_net() { # NAME
	local n=$1 i hv
	i=$(node_index "$n")
	hv=kflab-n$i
	[ -e "$(node_netns "$n")" ] || ip netns add "$n"
	if [ ! -d "/sys/class/net/$hv" ]; then
		ip link add "$hv" type veth peer name "${hv}p"
		ip link set "${hv}p" netns "$n"
		nsx "$n" ip link set "${hv}p" name eth0
	fi
	ip link set "$hv" master "$LAB_BRIDGE"
	ip link set "$hv" up
	nsx "$n" ip link set lo up
	nsx "$n" ip addr show dev eth0 | grep -q "inet $(node_ip "$i")/" ||
		nsx "$n" ip addr add "$(node_ip "$i")/$LAB_PREFIX" dev eth0
	nsx "$n" ip link set eth0 up
	node_routes "$n"
	# /proc/sys/net is the opener's namespace's: this sets the node's.
	nsx "$n" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
	# The `kubernetes` Service's own DNAT, ahead of kube-proxy's
	# (service.sh): its ClusterIP to the API server (or what `pod-api`
	# chose), for pods (PREROUTING) and host-network processes (OUTPUT).
	service_dnat "$n" "$(pod_api)"
	# The host reaches each node's pods through the node.
	ip route replace "$(node_podnet "$i")" via "$(node_ip "$i")" dev "$LAB_BRIDGE"
}

cmd_net() { # NODE down|up
	external && unsupported "network partitions"
	need_root
	need_lab
	need_node "$1"
	nsx "$1" ip link set eth0 "$2"
	[ "$2" = down ] || node_routes "$1"
	echo "$1 link $2 at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
}

# Teardown (cmd_down, after the node's processes are gone): each node's
# host route, namespace and veth; then the bridge and the host's rule.
remove_node_nets() {
	local n i
	for n in $(lab_nodes); do
		i=$(node_index "$n")
		ip route del "$(node_podnet "$i")" via "$(node_ip "$i")" 2>/dev/null || true
		if [ -e "$(node_netns "$n")" ]; then ip netns del "$n" || log "warning: cannot delete netns $n"; fi
		# (deleting the namespace usually took the veth pair with it)
		ip link del "kflab-n$i" 2>/dev/null || true
	done
}
remove_bridge() {
	if [ -d "/sys/class/net/$LAB_BRIDGE" ] && [ "$(bridge_owner)" = "kubefence-lab:$LABDIR" ]; then
		ip link del "$LAB_BRIDGE"
	fi
	while iptables -D FORWARD -i "$LAB_BRIDGE" -o "$LAB_BRIDGE" -m comment --comment kubefence-lab -j ACCEPT 2>/dev/null; do :; done
}
