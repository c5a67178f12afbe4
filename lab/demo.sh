#!/usr/bin/env bash
# The kubefence demo (the README's first command), on a fresh Debian machine
# as root: installs what is missing, builds Kubernetes v1.20 once (cached)
# and kubefence, then runs lab/demo-lab.sh: a real two-node Kubernetes lab,
# kubefence deployed from manifests/, metadata written through the master,
# the master's container killed with SIGKILL (what docker kill does), the
# failover's timeline, and the killed pod back as standby.
#
#   bash lab/demo.sh [--keep] [--keys N]
#
# lab/demo-processes.sh shows the same failover with plain processes.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
. tests/deps.sh
kf_install_deps
bash lab/k8s-build.sh >/dev/null

# Build: in place when the tree is configured in place, else in _build/plain.
if [ -f "$TOP/config.status" ]; then
	BUILD=$TOP
else
	BUILD=$TOP/_build/plain
	if [ ! -f "$BUILD/config.status" ]; then
		echo "demo: building kubefence"
		[ -x configure ] || ./autogen.sh >/dev/null 2>&1
		mkdir -p "$BUILD"
		(cd "$BUILD" && "$TOP/configure" -q) >/dev/null
	fi
fi
make -s -C "$BUILD" -j"$(nproc)" >/dev/null
make -s -C "$BUILD" tests/e2e/kf-labclient >/dev/null
KUBEFENCE_BUILD=$BUILD top_builddir=$BUILD exec bash lab/demo-lab.sh "$@"
