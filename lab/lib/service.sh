# Services in the lab (sourced by lab/lab.sh, not run): kube-proxy (iptables
# mode) in every node and in the Service gateway `lab-gw`, a namespace on
# the bridge through which the host routes the Service range 198.18.0.32/27,
# so that ClusterIPs work from the host, the nodes and the pods as on a real
# cluster; and the nodes' DNAT of the `kubernetes` Service that `pod-api`
# can point at a fault proxy instead of the API server.
# shellcheck shell=bash

# The Service gateway: a namespace on the bridge that runs a kube-proxy and
# nothing else, and the host's route for the Service range through it.  A
# client on the host (kf-labclient) reaches a ClusterIP as an off-cluster
# client does through a router that carries the Service range: kube-proxy's
# DNAT to a ready endpoint, masqueraded (--masquerade-all) so that the
# answer comes back the same way.  It is no node: freezing or cutting a node
# leaves the clients' path to the other nodes alone.
ensure_gateway() {
	local j
	[ -e "$(node_netns "$LAB_GW")" ] || ip netns add "$LAB_GW"
	if [ ! -d /sys/class/net/kflab-gw ]; then
		ip link add kflab-gw type veth peer name kflab-gwp
		ip link set kflab-gwp netns "$LAB_GW"
		nsx "$LAB_GW" ip link set kflab-gwp name eth0
	fi
	ip link set kflab-gw master "$LAB_BRIDGE"
	ip link set kflab-gw up
	nsx "$LAB_GW" ip link set lo up
	nsx "$LAB_GW" ip addr show dev eth0 | grep -q "inet $LAB_GW_IP/" ||
		nsx "$LAB_GW" ip addr add "$LAB_GW_IP/$LAB_PREFIX" dev eth0
	nsx "$LAB_GW" ip link set eth0 up
	nsx "$LAB_GW" ip route replace 198.18.0.0/24 via "$LAB_HOST_IP" dev eth0
	for j in $(seq 1 3); do
		nsx "$LAB_GW" ip route replace "$(node_podnet "$j")" via "$(node_ip "$j")" dev eth0
	done
	nsx "$LAB_GW" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
	ip route replace "$LAB_SERVICE_RANGE" via "$LAB_GW_IP" dev "$LAB_BRIDGE"
}

# start_kube_proxy NAME IP [--node NODE]: kube-proxy in iptables mode in the
# node's (or the gateway's) namespace.  Its conntrack settings are left
# alone (--conntrack-*=0: nf_conntrack_max is the whole machine's).
start_kube_proxy() {
	local name=$1 ip=$2 extra=()
	shift 2
	pid_alive "$RUN/$name.kube-proxy.pid" && return 0
	k8s_bin
	[ "$name" = "$LAB_GW" ] && extra=(--masquerade-all)
	if [ "${1:-}" = --node ]; then
		start_daemon "$name.kube-proxy" "$LOGS/$name.kube-proxy.log" --node "$2" "$BIN/kube-proxy" \
			"${extra[@]}" "${KUBE_PROXY_ARGS[@]}" --hostname-override="$name" --bind-address="$ip"
	else
		start_daemon "$name.kube-proxy" "$LOGS/$name.kube-proxy.log" \
			nsenter --net="$(node_netns "$name")" "$BIN/kube-proxy" \
			"${extra[@]}" "${KUBE_PROXY_ARGS[@]}" --hostname-override="$name" --bind-address="$ip"
	fi
}
KUBE_PROXY_ARGS=(
	--kubeconfig="$LABDIR/kube-proxy.kubeconfig"
	--proxy-mode=iptables
	# kube-proxy's own default (1 s in 1.20): at most one rule sync per
	# period after a burst of two, so the third Endpoints change of a
	# failover within a second waits for the next period
	--iptables-min-sync-period="${KUBEFENCE_LAB_PROXY_MIN_SYNC:-1s}"
	--healthz-bind-address=127.0.0.1:10256
	--metrics-bind-address=127.0.0.1:10249
	--conntrack-max-per-core=0
	--conntrack-tcp-timeout-established=0
	--conntrack-tcp-timeout-close-wait=0
	--profiling=false
	--v=1
)
# kube_proxy_synced NAME: its rules carry the `kubernetes` Service.
kube_proxy_synced() {
	nsx "$1" iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -qF -- "-d $LAB_SERVICE_IP/32"
}

# Where the pods' `kubernetes` Service goes: $LABDIR/pod-api, else the API
# server itself.
pod_api() {
	cat "$LABDIR/pod-api" 2>/dev/null || echo "$LAB_HOST_IP:$LAB_API_PORT"
}
# The node's kube-proxy programs the same Service (its Endpoints are the API
# server) in its KUBE-SERVICES chain; this rule comes first in PREROUTING and
# OUTPUT, before kube-proxy's jump, so that `pod-api` can send the pods
# elsewhere (kube-proxy adds its jump only where it is missing).
service_dnat() { # NODE HOST:PORT: exactly one DNAT rule per chain, to HOST:PORT, the first
	local n=$1 to=$2 c rule first
	for c in PREROUTING OUTPUT; do
		first=$(nsx "$n" iptables -t nat -S "$c" | sed -n 2p)
		case $first in
		*"-d $LAB_SERVICE_IP/32 "*"--dport 443 "*"--to-destination $to") continue ;;
		esac
		nsx "$n" iptables -t nat -S "$c" | grep -F -- "-d $LAB_SERVICE_IP/32 " | grep -F -- "--dport 443 " |
			grep -F -- "-j DNAT" | sed 's/^-A //' | while read -r rule; do
			# shellcheck disable=SC2086
			nsx "$n" iptables -t nat -D $rule
		done || true
		nsx "$n" iptables -t nat -I "$c" 1 -d "$LAB_SERVICE_IP/32" -p tcp --dport 443 \
			-j DNAT --to-destination "$to"
	done
}

cmd_pod_api() { # [HOST:PORT|direct]
	external && unsupported "redirecting the pods' API traffic"
	need_root
	need_lab
	local to n
	if [ $# = 0 ]; then
		pod_api
		return 0
	fi
	case $1 in
	direct) rm -f "$LABDIR/pod-api" ;;
	198.18.0.*:[0-9]* | 127.0.0.1:[0-9]*) echo "$1" >"$LABDIR/pod-api" ;;
	*) die "pod-api: HOST:PORT in 198.18.0.0/24 or 127.0.0.1:PORT, or direct" ;;
	esac
	to=$(pod_api)
	for n in $(lab_nodes); do
		# 127.0.0.1: a listener in each node's own namespace (lab.sh exec
		# NODE ...); the pods' packets may be sent to the node's loopback
		# only with route_localnet (this sysctl is the node namespace's).
		case $to in 127.*) nsx "$n" sh -c 'echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet' ;; esac
		service_dnat "$n" "$to"
	done
	echo "pods' API server: $to (new connections; established ones keep their path)"
}

# Teardown (cmd_down): the host's route of the Service range, the gateway's
# namespace and veth.
remove_gateway() {
	ip route del "$LAB_SERVICE_RANGE" via "$LAB_GW_IP" 2>/dev/null || true
	if [ -e "$(node_netns "$LAB_GW")" ]; then ip netns del "$LAB_GW" || log "warning: cannot delete netns $LAB_GW"; fi
	ip link del kflab-gw 2>/dev/null || true
}
