# The lab's nodes (sourced by lab/lab.sh, not run): node lab-node-i is a
# network namespace (net.sh) and a cgroup (cgroup.sh) holding its own
# containerd and kubelet (configured from lab/lib/*.in), its kube-proxy
# (service.sh), its identity (pki.sh) and the lab's images (lab/images.sh,
# loaded in the background while the kubelet starts).  Also what acts on a
# node's containers: killing one through its containerd as `docker kill`
# does (`kill-master`, `kill-pod`), `exec`, `ctr`, `images`; and taking a
# node down.
# shellcheck shell=bash

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

IMAGES_BUILT=0
IMAGE_LOADS=() # "PID:NODE" of the image loads ensure_node started
wait_image_loads() {
	local l
	for l in "${IMAGE_LOADS[@]}"; do
		wait "${l%%:*}" || die "loading the images into ${l#*:} failed"
	done
	IMAGE_LOADS=()
}

# ensure_node_mntns NAME: the node's own /var/log/pods and
# /var/log/containers.  A kubelet keeps its pods' logs there (fixed paths),
# and its garbage collection removes the log directory of every pod it does
# not run: with the host's shared by every node, each kubelet removed the
# other nodes' pods' logs every minute (`kubectl logs` then showed nothing
# of what came before).  The node's daemons share one mount namespace, a
# slave of the host's (what they mount stays in it), where both paths are
# bind mounts of directories of the node's; it is kept by a bind mount of
# its nsfs file in $RUN/mnt, so that each daemon can enter it.
ensure_node_mntns() {
	local n=$1 f d
	f=$(node_mntns "$n")
	d=$(node_dir "$n")
	nsenter --mount="$f" true 2>/dev/null && return 0
	mkdir -p "$RUN/mnt" "$d/log/pods" "$d/log/containers" /var/log/pods /var/log/containers
	# (a namespace's file may not be bound on a shared mount: $RUN/mnt is
	# made a private mount of its own, as ip netns does with /run/netns)
	if ! mountpoint -q "$RUN/mnt"; then
		mount --bind "$RUN/mnt" "$RUN/mnt" && mount --make-private "$RUN/mnt" ||
			die "cannot make $RUN/mnt a private mount"
	fi
	: >"$f"
	unshare --mount="$f" --propagation slave \
		sh -c 'mount --bind "$1" /var/log/pods && mount --bind "$2" /var/log/containers' \
		sh "$d/log/pods" "$d/log/containers" || die "cannot make the mount namespace of $n"
}

ensure_node() { # NAME
	local n=$1 d i
	d=$(node_dir "$n")
	i=$(node_index "$n")
	mkdir -p "$d/pki" "$d/cni/net.d" "$d/cni/ipam" "$d/kubelet" "$d/kubelet-plugins" "$d/containerd"
	ensure_node_net "$n"
	ensure_node_mntns "$n"
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

cmd_exec() { # NODE CMD...
	external && unsupported "exec on a node"
	need_lab
	[ $# -ge 2 ] || die "usage: lab.sh exec NODE CMD..."
	need_node "$1"
	local n=$1
	shift
	CONTAINERD_ADDRESS=$(node_sock "$n") CONTAINERD_NAMESPACE=k8s.io \
		KUBECONFIG=$LABDIR/admin.kubeconfig exec nsenter --net="$(node_netns "$n")" \
		--mount="$(node_mntns "$n")" "$@"
}

cmd_ctr() { # NODE ARGS...
	external && unsupported "ctr on a node"
	need_lab
	[ $# -ge 1 ] || die "usage: lab.sh ctr NODE ARGS..."
	need_node "$1"
	ctr_node "$@"
}

cmd_images() {
	external && unsupported "importing images"
	need_lab
	rm -f "$LABDIR/images/agent.tar" "$LABDIR/images/metad.tar"
	# shellcheck disable=SC2046
	bash "$LAB_TOP/lab/images.sh" import $(lab_nodes)
}
