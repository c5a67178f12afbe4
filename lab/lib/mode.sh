# Which cluster a command of lab/lab.sh acts on (sourced, not run): the lab
# in $LABDIR, or an existing cluster that KUBECONFIG names.  On an existing
# cluster what can be done through the API is done (`k` picks the
# kubeconfig) and the rest says so and exits 77, the automake SKIP code
# (`unsupported`).  Also the preconditions the commands check: root, a lab
# that is up, a node of this lab.
# shellcheck shell=bash

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
