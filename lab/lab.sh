#!/usr/bin/env bash
# A real multi-node Kubernetes (v1.20) lab on this one machine.
#
#   lab.sh up                   start (or repair) everything; idempotent
#   lab.sh down                 stop and remove everything `up` made
#   lab.sh status               processes, nodes, pods
#   lab.sh kubeconfig           print the admin kubeconfig's path
#   lab.sh env                  print `export` lines (KUBECONFIG, KUBEFENCE_LAB_DIR, ...)
#   lab.sh nodes                print "NAME IP PODNET" per node
#   lab.sh kill-master          SIGKILL the container of the pod labelled role=master
#   lab.sh kill-pod POD [CONTAINER]   the same for any pod of $KUBEFENCE_LAB_NS
#   lab.sh freeze NODE | thaw NODE    stop / resume all of a node's processes (cgroup
#                               v2 cgroup.freeze where the unified hierarchy is
#                               mounted, else the v1 freezer)
#   lab.sh netdown NODE | netup NODE  link down/up of the node's interface
#   lab.sh restart-apiserver | stop-apiserver | start-apiserver
#   lab.sh exec NODE CMD...     run CMD in the node's network namespace
#                               (CONTAINERD_ADDRESS/NAMESPACE set for `ctr`)
#   lab.sh ctr NODE ARGS...     ctr against the node's containerd, namespace k8s.io
#   lab.sh images               rebuild the kubefence images and import them anew
#   lab.sh pids                 every process the lab started: "PID NAME"
#   lab.sh pod-api [HOST:PORT|direct]   where the nodes' DNAT sends the pods'
#                               `kubernetes` Service (198.18.0.33:443): the API
#                               server (direct, the default) or, e.g., a fault
#                               proxy on the bridge, or on 127.0.0.1:PORT in each
#                               node's namespace; without an argument, print it
#   lab.sh proxy-cert           a serving certificate from the lab CA for the
#                               bridge and Service addresses: prints "CERT KEY CA"
#
# Environment: KUBEFENCE_LAB_DIR (state, default /var/lib/kubefence-lab),
# KUBEFENCE_LAB_NODES (2, at most 3), KUBEFENCE_LAB_NS (kubefence, for
# kill-master), KUBEFENCE_BUILD (where the kubefence binaries are built),
# KUBEFENCE_CACHE (the Kubernetes binaries' cache), KUBEFENCE_LAB_FREEZER (v2,
# v1 or auto: the cgroup freezer `up` uses), KUBECONFIG (an existing
# cluster: only what can be done through the API is done; the rest says so
# and exits 77).
#
# Every process is recorded in $LABDIR/run/*.pid and stopped by that PID; the
# processes of a node (kubelet, containerd, shims, containers) also sit in
# the cgroup kubefence-lab/NODE of the freezing hierarchy (KUBEFENCE_LAB_FREEZER).
set -euo pipefail

LAB_TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lab/lib/common.sh
. "$LAB_TOP/lab/lib/common.sh"
LIB=$LAB_TOP/lab/lib
RUN=$LABDIR/run
LOGS=$LABDIR/logs
PKI=$LABDIR/pki

# ---------------------------------------------------------------- modes

# An existing cluster: KUBECONFIG names something other than our own.
external() {
	[ -n "${KUBECONFIG:-}" ] && [ "$KUBECONFIG" != "$LABDIR/admin.kubeconfig" ] &&
		[ ! -f "$LABDIR/state" ]
}
unsupported() {
	log "$1: not possible on an existing cluster (KUBECONFIG=$KUBECONFIG); skipped"
	exit 77
}
k() {
	if external; then kubectl "$@"; else kctl "$@"; fi
}
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }
need_lab() { [ -f "$LABDIR/state" ] || die "no lab in $LABDIR (run: lab.sh up)"; }
need_node() { # NAME
	lab_nodes | grep -qx "$1" || die "unknown node '$1' (nodes: $(lab_nodes | tr '\n' ' '))"
}

# ---------------------------------------------------------------- PKI

# pki_cert NAME SUBJECT EXTENSIONS: an EC key and a certificate signed by the lab CA.
pki_cert() {
	local d=$PKI
	[ -f "$d/$1.crt" ] && return 0
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$d/$1.ext"
	openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 365 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
	rm -f "$d/$1.csr"
}

ensure_pki() {
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	if [ ! -f "$PKI/ca.crt" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
			-subj "/CN=kubefence-lab-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
	fi
	pki_cert apiserver "/CN=kube-apiserver" \
		"subjectAltName=IP:$LAB_HOST_IP,IP:$LAB_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
	pki_cert admin "/O=system:masters/CN=kubefence-lab-admin" "extendedKeyUsage=clientAuth"
	pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		"extendedKeyUsage=clientAuth"
	pki_cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
	pki_cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
	# kube-proxy: the user the default binding system:node-proxier names.
	pki_cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
	if [ ! -f "$PKI/sa.key" ]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	fi
	write_kubeconfig "$LABDIR/admin.kubeconfig" admin "$PKI/admin.crt" "$PKI/admin.key"
	write_kubeconfig "$LABDIR/controller-manager.kubeconfig" controller-manager \
		"$PKI/controller-manager.crt" "$PKI/controller-manager.key"
	write_kubeconfig "$LABDIR/scheduler.kubeconfig" scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"
	write_kubeconfig "$LABDIR/kube-proxy.kubeconfig" kube-proxy "$PKI/kube-proxy.crt" "$PKI/kube-proxy.key"
}

write_kubeconfig() { # FILE USER CERT KEY
	cat >"$1" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: kubefence-lab
		  cluster:
		    server: https://$LAB_HOST_IP:$LAB_API_PORT
		    certificate-authority: $PKI/ca.crt
		users:
		- name: $2
		  user:
		    client-certificate: $3
		    client-key: $4
		contexts:
		- name: kubefence-lab
		  context:
		    cluster: kubefence-lab
		    user: $2
		current-context: kubefence-lab
	EOF
}

# ---------------------------------------------------------------- network

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
	# The `kubernetes` Service without kube-proxy: DNAT its ClusterIP to the
	# API server (or what `pod-api` chose), for pods (PREROUTING) and
	# host-network processes (OUTPUT).
	service_dnat "$n" "$(pod_api)"
	# The host reaches each node's pods through the node.
	ip route replace "$(node_podnet "$i")" via "$(node_ip "$i")" dev "$LAB_BRIDGE"
}

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

# ---------------------------------------------------------------- cgroups

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

# ---------------------------------------------------------------- processes

# start_daemon NAME LOG [--node NODE] CMD...: setsid, recorded in run/NAME.pid.
# With --node the process enters that node's network namespace and its
# cgroup in the freezing hierarchy (its children, e.g. containerd's shims,
# inherit both).
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
			"$(freezer_dir "$node")" nsenter --net="$(node_netns "$node")" "$@" \
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

ensure_etcd() {
	pid_alive "$RUN/etcd.pid" && return 0
	port_free 127.0.0.1 "$LAB_ETCD_PORT" || die "127.0.0.1:$LAB_ETCD_PORT is in use by something else"
	start_daemon etcd "$LOGS/etcd.log" etcd --name kubefence-lab --data-dir "$LABDIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$LAB_ETCD_PORT" \
		--advertise-client-urls "http://127.0.0.1:$LAB_ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$LAB_ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$LAB_ETCD_PEER_PORT" \
		--initial-cluster "kubefence-lab=http://127.0.0.1:$LAB_ETCD_PEER_PORT" \
		--unsafe-no-fsync
	wait_for etcd 30 "$RUN/etcd.pid" curl -fsS --max-time 1 "http://127.0.0.1:$LAB_ETCD_PORT/health"
}

api_ready() {
	curl -fsS --max-time 1 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://$LAB_HOST_IP:$LAB_API_PORT/readyz"
}

ensure_apiserver() {
	pid_alive "$RUN/apiserver.pid" && return 0
	k8s_bin
	start_daemon apiserver "$LOGS/apiserver.log" "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$LAB_ETCD_PORT" \
		--bind-address="$LAB_HOST_IP" --advertise-address="$LAB_HOST_IP" \
		--secure-port="$LAB_API_PORT" --insecure-port=0 \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=InternalIP \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-cluster-ip-range="$LAB_SERVICE_RANGE" \
		--allow-privileged=true \
		--profiling=false \
		--v=1
	wait_for kube-apiserver 90 "$RUN/apiserver.pid" api_ready
}

ensure_controller_manager() {
	pid_alive "$RUN/controller-manager.pid" && return 0
	k8s_bin
	start_daemon controller-manager "$LOGS/controller-manager.log" "$BIN/kube-controller-manager" \
		--kubeconfig="$LABDIR/controller-manager.kubeconfig" \
		--leader-elect=false \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$PKI/sa.key" \
		--root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--flex-volume-plugin-dir="$LABDIR/flexvolume" \
		--node-monitor-period=5s \
		--node-monitor-grace-period="${KUBEFENCE_LAB_NODE_MONITOR_GRACE:-40s}" \
		--pod-eviction-timeout="${KUBEFENCE_LAB_POD_EVICTION_TIMEOUT:-5m0s}" \
		--port=0 --secure-port=0 \
		--profiling=false \
		--v=1
}

ensure_scheduler() {
	pid_alive "$RUN/scheduler.pid" && return 0
	k8s_bin
	start_daemon scheduler "$LOGS/scheduler.log" "$BIN/kube-scheduler" \
		--kubeconfig="$LABDIR/scheduler.kubeconfig" \
		--authentication-kubeconfig="$LABDIR/scheduler.kubeconfig" \
		--authorization-kubeconfig="$LABDIR/scheduler.kubeconfig" \
		--leader-elect=false \
		--bind-address=127.0.0.1 --secure-port="${KUBEFENCE_LAB_SCHEDULER_PORT:-10359}" --port=0 \
		--profiling=false \
		--v=1
}

# ---------------------------------------------------------------- nodes

subst() { # TEMPLATE OUT NODE
	local n=$3 i
	i=$(node_index "$n")
	sed -e "s|@NODEDIR@|$(node_dir "$n")|g" -e "s|@LABDIR@|$LABDIR|g" \
		-e "s|@NODEIP@|$(node_ip "$i")|g" -e "s|@PODNET@|$(node_podnet "$i")|g" \
		-e "s|@PODGW@|$(node_podgw "$i")|g" -e "s|@CNI_NET@|$LAB_CNI_NET|g" \
		-e "s|@CNI_BIN@|$LAB_CNI_BIN|g" \
		-e "s|@NODE_STATUS_FREQ@|${KUBEFENCE_LAB_NODE_STATUS_FREQ:-3s}|g" "$1" >"$2"
}

ctr_node() { # NODE ARGS...
	local n=$1
	shift
	ctr --address "$(node_sock "$n")" -n k8s.io "$@"
}

ensure_node() { # NAME
	local n=$1 d i
	d=$(node_dir "$n")
	i=$(node_index "$n")
	mkdir -p "$d/pki" "$d/cni/net.d" "$d/cni/ipam" "$d/kubelet" "$d/kubelet-plugins" "$d/containerd"
	ensure_node_net "$n"
	ensure_node_cgroups "$n"
	# Identity: a client certificate in system:nodes (Node authorizer,
	# NodeRestriction) and a serving certificate for the node's address.
	pki_cert "node-$n" "/O=system:nodes/CN=system:node:$n" "extendedKeyUsage=clientAuth"
	pki_cert "kubelet-serving-$n" "/CN=$n" "subjectAltName=IP:$(node_ip "$i"),DNS:$n
extendedKeyUsage=serverAuth"
	cp "$PKI/kubelet-serving-$n.crt" "$d/pki/kubelet-serving.crt"
	cp "$PKI/kubelet-serving-$n.key" "$d/pki/kubelet-serving.key"
	write_kubeconfig "$d/kubeconfig" "system:node:$n" "$PKI/node-$n.crt" "$PKI/node-$n.key"
	subst "$LIB/containerd.toml.in" "$d/containerd.toml" "$n"
	subst "$LIB/cni.conflist.in" "$d/cni/net.d/10-$LAB_CNI_NET.conflist" "$n"
	subst "$LIB/kubelet.yaml.in" "$d/kubelet.yaml" "$n"

	if ! pid_alive "$RUN/$n.containerd.pid"; then
		start_daemon "$n.containerd" "$LOGS/$n.containerd.log" --node "$n" \
			containerd --config "$d/containerd.toml"
		wait_for "containerd of $n" 30 "$RUN/$n.containerd.pid" ctr --address "$(node_sock "$n")" version
	fi
	local missing=0 img have
	have=$(ctr_node images list -q 2>/dev/null || true)
	for img in k8s.gcr.io/pause:3.2 docker.io/kubefence/agent:lab docker.io/kubefence/metad:lab; do
		echo "$have" | grep -qx "$img" || missing=1
	done
	if [ $missing = 1 ]; then
		# Built once (cached by content hash), then loaded into each node
		# in the background: Ready needs no image, so the loading overlaps
		# the kubelet's start; cmd_up waits for it.
		if [ "$IMAGES_BUILT" = 0 ]; then
			bash "$LAB_TOP/lab/images.sh" build "$LABDIR/images"
			IMAGES_BUILT=1
		fi
		bash "$LAB_TOP/lab/images.sh" load "$n" &
		IMAGE_LOADS+=("$!:$n")
	fi

	if ! pid_alive "$RUN/$n.kubelet.pid"; then
		k8s_bin
		start_daemon "$n.kubelet" "$LOGS/$n.kubelet.log" --node "$n" "$BIN/kubelet" \
			--config="$d/kubelet.yaml" \
			--kubeconfig="$d/kubeconfig" \
			--container-runtime=remote \
			--container-runtime-endpoint="unix://$(node_sock "$n")" \
			--runtime-request-timeout=2m \
			--pod-infra-container-image=k8s.gcr.io/pause:3.2 \
			--hostname-override="$n" \
			--node-ip="$(node_ip "$i")" \
			--root-dir="$d/kubelet" \
			--cert-dir="$d/pki" \
			--cgroup-root="/$LAB_CGROUP/$n" \
			--cgroups-per-qos=false \
			--enforce-node-allocatable= \
			--v=1
	fi
	start_kube_proxy "$n" "$(node_ip "$i")" --node "$n"
}

# ---------------------------------------------------------------- commands

IMAGES_BUILT=0
IMAGE_LOADS=() # "PID:NODE" of the image loads ensure_node started
wait_image_loads() {
	local l
	for l in "${IMAGE_LOADS[@]}"; do
		wait "${l%%:*}" || die "loading the images into ${l#*:} failed"
	done
	IMAGE_LOADS=()
}

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
	for c in etcd containerd runc nsenter iptables openssl curl kubectl gcc ctr; do
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

# Kill every process of a node: the recorded kubelet and containerd first,
# then all that is left in its freezer cgroup (shims, containers), frozen
# so that nothing restarts or forks in between.
stop_node() { # NAME
	local n=$1 p
	set_freezer "$n" THAWED
	stop_pidfile "$RUN/$n.kubelet.pid" 10  # (a no-op after cmd_down's stop_pidfiles)
	for _ in 1 2 3 4 5; do
		[ -n "$(node_pids "$n")" ] || break
		set_freezer "$n" FROZEN
		for p in $(node_pids "$n"); do kill -KILL "$p" 2>/dev/null || true; done
		set_freezer "$n" THAWED
		for p in $(node_pids "$n"); do wait_pid_gone "$p" 5 || true; done
	done
	[ -z "$(node_pids "$n")" ] || log "warning: processes of $n left: $(node_pids "$n" | tr '\n' ' ')"
	rm -f "$RUN/$n.containerd.pid"
	remove_container_cgroups "$n"
	# libcni's cache (a fixed path): the results of our sandboxes.
	local id
	for id in $(node_task_ids "$n"); do
		rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null || true
	done
}

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
	local n i uids="" st=""
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
	for n in $(lab_nodes); do
		i=$(node_index "$n")
		ip route del "$(node_podnet "$i")" via "$(node_ip "$i")" 2>/dev/null || true
		if [ -e "$(node_netns "$n")" ]; then ip netns del "$n" || log "warning: cannot delete netns $n"; fi
		# (deleting the namespace usually took the veth pair with it)
		ip link del "kflab-n$i" 2>/dev/null || true
	done
	ip route del "$LAB_SERVICE_RANGE" via "$LAB_GW_IP" 2>/dev/null || true
	if [ -e "$(node_netns "$LAB_GW")" ]; then ip netns del "$LAB_GW" || log "warning: cannot delete netns $LAB_GW"; fi
	ip link del kflab-gw 2>/dev/null || true
	if [ -d "/sys/class/net/$LAB_BRIDGE" ] && [ "$(bridge_owner)" = "kubefence-lab:$LABDIR" ]; then
		ip link del "$LAB_BRIDGE"
	fi
	while iptables -D FORWARD -i "$LAB_BRIDGE" -o "$LAB_BRIDGE" -m comment --comment kubefence-lab -j ACCEPT 2>/dev/null; do :; done
	# Files the kubelets and containerd write outside $LABDIR.
	local u f
	for u in $uids; do
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
	[ -n "$LABDIR" ] && [ "$LABDIR" != / ] && rm -rf "$LABDIR"
	log "down: everything stopped and removed"
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

# kill_container POD [CONTAINER]: SIGKILL a pod's container through its
# node's containerd, as `docker kill` would. Prints the time of the kill.
kill_container() {
	local ns=$LAB_NS pod=$1 cname=${2:-${KUBEFENCE_LAB_CONTAINER:-}} js node cid
	js=$(k get pod -n "$ns" "$pod" -o json) || die "no pod $ns/$pod"
	node=$(echo "$js" | jq -r '.spec.nodeName')
	if [ -n "$cname" ]; then
		cid=$(echo "$js" | jq -r --arg c "$cname" '.status.containerStatuses[] | select(.name == $c) | .containerID')
	else
		cid=$(echo "$js" | jq -r '.status.containerStatuses[0].containerID')
	fi
	[ -n "$cid" ] && [ "$cid" != null ] || die "pod $ns/$pod has no running container"
	cid=${cid#containerd://}
	if external || ! lab_nodes | grep -qx "$node"; then
		unsupported "killing container $cid of $pod on $node"
	fi
	ctr_node "$node" task kill -s SIGKILL "$cid"
	echo "killed pod=$ns/$pod node=$node container=$cid at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
}

cmd_kill_master() {
	local pods pod
	pods=$(k get pods -n "$LAB_NS" -l role=master -o jsonpath='{.items[*].metadata.name}')
	[ -n "$pods" ] || die "no pod labelled role=master in namespace $LAB_NS"
	[ "$(echo "$pods" | wc -w)" = 1 ] || log "warning: several pods labelled role=master: $pods (killing the first)"
	pod=${pods%% *}
	kill_container "$pod"
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

cmd_net() { # NODE down|up
	external && unsupported "network partitions"
	need_root
	need_lab
	need_node "$1"
	nsx "$1" ip link set eth0 "$2"
	[ "$2" = down ] || node_routes "$1"
	echo "$1 link $2 at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
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

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
kubeconfig)
	if external; then echo "$KUBECONFIG"; else
		need_lab
		echo "$LABDIR/admin.kubeconfig"
	fi
	;;
env)
	if external; then echo "export KUBECONFIG='$KUBECONFIG'"; else
		need_lab
		echo "export KUBECONFIG='$LABDIR/admin.kubeconfig'"
		echo "export KUBEFENCE_LAB_DIR='$LABDIR'"
		echo "export KUBEFENCE_LAB_API='https://$LAB_HOST_IP:$LAB_API_PORT'"
		echo "export KUBEFENCE_LAB_NODES='$(lab_nodes | tr '\n' ' ' | sed 's/ $//')'"
	fi
	;;
nodes) cmd_nodes ;;
kill-master) cmd_kill_master ;;
kill-pod)
	[ $# -ge 1 ] || die "usage: lab.sh kill-pod POD [CONTAINER]"
	kill_container "$@"
	;;
freeze) cmd_freeze "${1:?usage: lab.sh freeze NODE}" FROZEN ;;
thaw) cmd_freeze "${1:?usage: lab.sh thaw NODE}" THAWED ;;
netdown) cmd_net "${1:?usage: lab.sh netdown NODE}" down ;;
netup) cmd_net "${1:?usage: lab.sh netup NODE}" up ;;
stop-apiserver)
	external && unsupported "stopping the API server"
	need_lab
	stop_pidfile "$RUN/apiserver.pid"
	echo "apiserver stopped at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
	;;
start-apiserver)
	external && unsupported "starting the API server"
	need_lab
	ensure_apiserver
	echo "apiserver ready at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
	;;
restart-apiserver)
	external && unsupported "restarting the API server"
	need_lab
	stop_pidfile "$RUN/apiserver.pid"
	ensure_apiserver
	echo "apiserver restarted, ready at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
	;;
exec)
	external && unsupported "exec on a node"
	need_lab
	[ $# -ge 2 ] || die "usage: lab.sh exec NODE CMD..."
	need_node "$1"
	n=$1
	shift
	CONTAINERD_ADDRESS=$(node_sock "$n") CONTAINERD_NAMESPACE=k8s.io \
		KUBECONFIG=$LABDIR/admin.kubeconfig exec nsenter --net="$(node_netns "$n")" "$@"
	;;
ctr)
	external && unsupported "ctr on a node"
	need_lab
	[ $# -ge 1 ] || die "usage: lab.sh ctr NODE ARGS..."
	need_node "$1"
	ctr_node "$@"
	;;
images)
	external && unsupported "importing images"
	need_lab
	rm -f "$LABDIR/images/agent.tar" "$LABDIR/images/metad.tar"
	# shellcheck disable=SC2046
	bash "$LAB_TOP/lab/images.sh" import $(lab_nodes)
	;;
pids) cmd_pids ;;
pod-api) cmd_pod_api "$@" ;;
proxy-cert)
	need_root
	need_lab
	pki_cert faultproxy "/CN=kubefence-lab-faultproxy" \
		"subjectAltName=IP:$LAB_HOST_IP,IP:$LAB_SERVICE_IP,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
	echo "$PKI/faultproxy.crt $PKI/faultproxy.key $PKI/ca.crt"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
