#!/usr/bin/env bash
# A real Kubernetes control plane for integration tests: etcd and
# kube-apiserver v1.20 on loopback, with TLS, RBAC and static bearer tokens.
#
#   control-plane.sh start DIR            start etcd + kube-apiserver, write DIR/env
#   control-plane.sh stop DIR             stop everything started in DIR (by PID)
#   control-plane.sh stop-apiserver DIR   stop only kube-apiserver (outage tests)
#   control-plane.sh start-apiserver DIR  start it again with the same ports and keys
#
# DIR/env holds `export` lines:
#   KF_IT_SERVER              https://127.0.0.1:PORT
#   KF_IT_CA                  the cluster CA certificate
#   KF_IT_NS                  the namespace the tests use
#   KF_IT_ADMIN_KUBECONFIG    client-certificate auth, group system:masters
#   KF_IT_AGENT_KUBECONFIG_A  bearer tokens bound to the agent Role (A, B, C)
#   KF_IT_NORBAC_KUBECONFIG   bearer token whose Role lacks `update` on leases
#   KF_IT_BIN                 the directory of the Kubernetes binaries
# Every process is recorded in DIR/*.pid and stopped by that PID only.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
NS=kubefence-it

die() {
	echo "control-plane: $*" >&2
	exit 1
}
# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
log() { echo "control-plane: $*" >&2; }

gen_pki() { # DIR
	local d=$1/pki
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kubefence-it-ca" \
		-keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	cat >"$d/server.ext" <<-EOF
		subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc
		extendedKeyUsage=serverAuth
	EOF
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
		-keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 30 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
	echo "extendedKeyUsage=clientAuth" >"$d/client.ext"
	openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kubefence-it-admin" \
		-keyout "$d/admin.key" -out "$d/admin.csr" 2>/dev/null
	openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 30 -extfile "$d/client.ext" -out "$d/admin.crt" 2>/dev/null
	openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
	openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

token_kubeconfig() { # FILE SERVER CA TOKEN USER
	cat >"$1" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: it
		  cluster:
		    server: $2
		    certificate-authority: $3
		users:
		- name: $5
		  user:
		    token: $4
		contexts:
		- name: it
		  context:
		    cluster: it
		    user: $5
		    namespace: $NS
		current-context: it
	EOF
}

start_apiserver() { # DIR
	local dir=$1
	# shellcheck disable=SC1091
	. "$dir/ports"
	# Its own session: a test that restarts it must not take it down when
	# the test's process group is cleaned up.  (setsid does not fork here,
	# since a background job of a script is no group leader: $! stays right.)
	setsid "$BIN/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
		--secure-port="$API_PORT" --insecure-port=0 \
		--tls-cert-file="$dir/pki/server.crt" --tls-private-key-file="$dir/pki/server.key" \
		--client-ca-file="$dir/pki/ca.crt" \
		--token-auth-file="$dir/tokens.csv" \
		--authorization-mode=RBAC \
		--service-account-key-file="$dir/pki/sa.pub" \
		--service-account-signing-key-file="$dir/pki/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-cluster-ip-range=10.96.0.0/24 \
		--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass \
		--disable-admission-plugins=StorageObjectInUseProtection \
		--allow-privileged=true \
		--profiling=false \
		--v=1 >>"$dir/apiserver.log" 2>&1 &
	echo $! >"$dir/apiserver.pid"
	local i
	for i in $(seq 1 600); do
		if curl -fsS --max-time 1 --cacert "$dir/pki/ca.crt" \
			--cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
			"https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
			log "kube-apiserver ready on 127.0.0.1:$API_PORT (pid $(cat "$dir/apiserver.pid"))"
			return 0
		fi
		kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null ||
			{ tail -20 "$dir/apiserver.log" >&2; die "kube-apiserver exited"; }
		sleep 0.1
	done
	tail -20 "$dir/apiserver.log" >&2
	die "kube-apiserver not ready after 60 s"
}

cmd_start() {
	local dir=$1
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	command -v etcd >/dev/null || die "etcd not found: apt-get install etcd-server"
	BIN=$(bash "$TOP/lab/k8s-build.sh") || die "no Kubernetes binaries"
	export BIN
	gen_pki "$dir"
	local etcd_port peer_port api_port
	etcd_port=$(free_port)
	peer_port=$(free_port)
	api_port=$(free_port)
	printf 'ETCD_PORT=%s\nPEER_PORT=%s\nAPI_PORT=%s\nBIN=%s\n' \
		"$etcd_port" "$peer_port" "$api_port" "$BIN" >"$dir/ports"

	setsid etcd --name it --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" \
		--advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "it=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	local i
	for i in $(seq 1 100); do
		curl -fsS --max-time 1 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
		sleep 0.1
	done

	# Static tokens: one per agent identity, all the same ServiceAccount user
	# (a DaemonSet's pods share one), and one for the under-privileged user.
	local ta tb tc tn
	ta=$(openssl rand -hex 16)
	tb=$(openssl rand -hex 16)
	tc=$(openssl rand -hex 16)
	tn=$(openssl rand -hex 16)
	cat >"$dir/tokens.csv" <<-EOF
		$ta,system:serviceaccount:$NS:kubefence-agent,uid-agent-a,"system:serviceaccounts,system:serviceaccounts:$NS,system:authenticated"
		$tb,system:serviceaccount:$NS:kubefence-agent,uid-agent-b,"system:serviceaccounts,system:serviceaccounts:$NS,system:authenticated"
		$tc,system:serviceaccount:$NS:kubefence-agent,uid-agent-c,"system:serviceaccounts,system:serviceaccounts:$NS,system:authenticated"
		$tn,system:serviceaccount:$NS:kubefence-norbac,uid-norbac,"system:serviceaccounts,system:serviceaccounts:$NS,system:authenticated"
	EOF
	start_apiserver "$dir"

	local server="https://127.0.0.1:$api_port"
	cat >"$dir/admin.kubeconfig" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: it
		  cluster:
		    server: $server
		    certificate-authority: $dir/pki/ca.crt
		users:
		- name: admin
		  user:
		    client-certificate: $dir/pki/admin.crt
		    client-key: $dir/pki/admin.key
		contexts:
		- name: it
		  context:
		    cluster: it
		    user: admin
		current-context: it
	EOF
	token_kubeconfig "$dir/agent-a.kubeconfig" "$server" "$dir/pki/ca.crt" "$ta" agent-a
	token_kubeconfig "$dir/agent-b.kubeconfig" "$server" "$dir/pki/ca.crt" "$tb" agent-b
	token_kubeconfig "$dir/agent-c.kubeconfig" "$server" "$dir/pki/ca.crt" "$tc" agent-c
	token_kubeconfig "$dir/norbac.kubeconfig" "$server" "$dir/pki/ca.crt" "$tn" norbac

	# RBAC: the agent gets exactly what the election needs on Leases.  Plain
	# REST calls with the admin certificate, so no kubectl is needed.
	api() { # METHOD PATH [JSON]; retried while the server finishes its bootstrap
		local try out
		for try in $(seq 1 50); do
			if out=$(curl -sS --http1.1 --max-time 10 --cacert "$dir/pki/ca.crt" \
				--cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" -X "$1" \
				-H 'Content-Type: application/json' -w '%{http_code}' -o "$dir/api.out" \
				"$server$2" ${3:+-d "$3"} 2>&1) && [ "${out: -3}" -lt 300 ]; then
				return 0
			fi
			sleep 0.2
		done
		die "$1 $2 failed: $out $(cat "$dir/api.out" 2>/dev/null)"
	}
	api GET /api/v1/namespaces/default
	local rbac=/apis/rbac.authorization.k8s.io/v1/namespaces/$NS
	api POST /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NS\"}}"
	role() { # NAME VERBS-JSON
		api POST "$rbac/roles" "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\",
			\"metadata\":{\"name\":\"$1\"},\"rules\":[{\"apiGroups\":[\"coordination.k8s.io\"],
			\"resources\":[\"leases\"],\"verbs\":$2}]}"
		api POST "$rbac/rolebindings" "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",
			\"kind\":\"RoleBinding\",\"metadata\":{\"name\":\"$1\"},
			\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"$1\"},
			\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"$1\",\"namespace\":\"$NS\"}]}"
	}
	role kubefence-agent '["get","list","watch","create","update","patch"]'
	role kubefence-norbac '["get","list","watch","create"]'

	cat >"$dir/env" <<-EOF
		export KF_IT_DIR='$dir'
		export KF_IT_SERVER='$server'
		export KF_IT_CA='$dir/pki/ca.crt'
		export KF_IT_NS='$NS'
		export KF_IT_BIN='$BIN'
		export KF_IT_ADMIN_KUBECONFIG='$dir/admin.kubeconfig'
		export KF_IT_AGENT_KUBECONFIG_A='$dir/agent-a.kubeconfig'
		export KF_IT_AGENT_KUBECONFIG_B='$dir/agent-b.kubeconfig'
		export KF_IT_AGENT_KUBECONFIG_C='$dir/agent-c.kubeconfig'
		export KF_IT_NORBAC_KUBECONFIG='$dir/norbac.kubeconfig'
		export KF_IT_HARNESS='$HERE/control-plane.sh'
	EOF
	log "ready: source $dir/env"
}

cmd_stop() {
	local dir=$1
	[ -d "$dir" ] || return 0
	stop_pidfile "$dir/apiserver.pid"
	stop_pidfile "$dir/etcd.pid"
}

[ $# -eq 2 ] || die "usage: $0 start|stop|stop-apiserver|start-apiserver DIR"
case $1 in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
stop-apiserver) stop_pidfile "$2/apiserver.pid" ;;
start-apiserver)
	# shellcheck disable=SC1091
	. "$2/ports"
	export BIN
	start_apiserver "$(cd "$2" && pwd)"
	;;
*) die "unknown command '$1'" ;;
esac
