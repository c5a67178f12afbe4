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
)

kf_install_deps() {
	local missing=() p
	for p in "${KF_PACKAGES[@]}"; do
		dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]}; run as root to install them" >&2
		return 1
	fi
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq "${missing[@]}" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	kf_install_deps
fi
