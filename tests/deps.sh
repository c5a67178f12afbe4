#!/usr/bin/env bash
# Install the Debian packages kubefence needs to build and test, when any is
# missing.  Sourced or run by tests/run.sh and lab/demo.sh; needs root.
set -euo pipefail

KF_PACKAGES=(
	build-essential autoconf automake pkg-config clang clang-format git
	libcurl4-openssl-dev libcjson-dev libblkid-dev libiscsi-dev libssl-dev check
	libinih-dev libmicrohttpd-dev libyaml-dev
	etcd-server golang-go golang-github-modern-go-reflect2-dev rsync
	curl openssl iproute2 procps tgt libiscsi-bin jq
	containerd runc containernetworking-plugins iptables
	buildah mmdebstrap
)
# Wanted for one program each, not for the services they ship: installed
# without Recommends, and a service the install started is stopped again.
# prometheus: promtool, for tests/monitoring.test.
KF_TOOL_PACKAGES=(prometheus)
KF_TOOL_SERVICES=(prometheus)

kf_missing() {
	local p
	for p in "$@"; do
		dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			echo "$p"
	done
}

kf_install_deps() {
	local missing tools s
	mapfile -t missing < <(kf_missing "${KF_PACKAGES[@]}")
	mapfile -t tools < <(kf_missing "${KF_TOOL_PACKAGES[@]}")
	[ ${#missing[@]} -eq 0 ] && [ ${#tools[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]} ${tools[*]}; run as root to install them" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	if [ ${#missing[@]} -gt 0 ]; then
		echo "deps: installing ${missing[*]}" >&2
		apt-get install -y -qq "${missing[@]}" >&2
	fi
	if [ ${#tools[@]} -gt 0 ]; then
		echo "deps: installing ${tools[*]} (for their tools only)" >&2
		apt-get install -y -qq --no-install-recommends "${tools[@]}" >&2
		if [ -d /run/systemd/system ]; then
			for s in "${KF_TOOL_SERVICES[@]}"; do
				systemctl disable --now "$s.service" >/dev/null 2>&1 || true
			done
		fi
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	kf_install_deps
fi
