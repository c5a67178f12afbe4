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

# This file is only the dispatcher (the text above is its `help`): the work
# is done by the libraries it sources from lab/lib/, one per part of the lab
# (lab/README.md, "Layout"): common.sh (addresses, names, PID files, also
# used by lab/images.sh), mode.sh (this lab or an existing cluster), pki.sh,
# net.sh, service.sh (kube-proxy, the Service gateway), cgroup.sh (the
# nodes' cgroups, freezing), daemon.sh, controlplane.sh, node.sh and
# lifecycle.sh (up, down, status).
LAB_TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lab/lib/common.sh
. "$LAB_TOP/lab/lib/common.sh"
# shellcheck source=lab/lib/mode.sh
. "$LIB/mode.sh"
# shellcheck source=lab/lib/pki.sh
. "$LIB/pki.sh"
# shellcheck source=lab/lib/net.sh
. "$LIB/net.sh"
# shellcheck source=lab/lib/service.sh
. "$LIB/service.sh"
# shellcheck source=lab/lib/cgroup.sh
. "$LIB/cgroup.sh"
# shellcheck source=lab/lib/daemon.sh
. "$LIB/daemon.sh"
# shellcheck source=lab/lib/controlplane.sh
. "$LIB/controlplane.sh"
# shellcheck source=lab/lib/node.sh
. "$LIB/node.sh"
# shellcheck source=lab/lib/lifecycle.sh
. "$LIB/lifecycle.sh"

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
kubeconfig) cmd_kubeconfig ;;
env) cmd_env ;;
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
stop-apiserver) cmd_apiserver stop ;;
start-apiserver) cmd_apiserver start ;;
restart-apiserver) cmd_apiserver restart ;;
exec) cmd_exec "$@" ;;
ctr) cmd_ctr "$@" ;;
images) cmd_images ;;
pids) cmd_pids ;;
pod-api) cmd_pod_api "$@" ;;
proxy-cert) cmd_proxy_cert ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
