# The control plane (sourced by lab/lab.sh, not run): etcd on
# 127.0.0.1:12379, kube-apiserver on the bridge address 198.18.0.1:6443
# (the API server refuses loopback endpoints), kube-controller-manager and
# kube-scheduler, each started once and restarted by a later `up` if it died;
# and the commands that stop, start and restart the API server.
# shellcheck shell=bash

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

cmd_apiserver() { # stop|start|restart
	case $1 in
	stop)
		external && unsupported "stopping the API server"
		need_lab
		stop_pidfile "$RUN/apiserver.pid"
		echo "apiserver stopped at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
		;;
	start)
		external && unsupported "starting the API server"
		need_lab
		ensure_apiserver
		echo "apiserver ready at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
		;;
	restart)
		external && unsupported "restarting the API server"
		need_lab
		stop_pidfile "$RUN/apiserver.pid"
		ensure_apiserver
		echo "apiserver restarted, ready at=$(date -u +%FT%T.%3NZ) epoch=$(date +%s.%N)"
		;;
	esac
}
