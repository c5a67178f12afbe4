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
. lab/lib/build.sh
kf_demo_build
make -s -C "$BUILD" tests/e2e/kf-labclient tests/lincheck/kf-lincheck >/dev/null
KUBEFENCE_BUILD=$BUILD top_builddir=$BUILD exec bash lab/demo-lab.sh "$@"
