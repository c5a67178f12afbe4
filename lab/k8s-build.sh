#!/usr/bin/env bash
# Build the Kubernetes v1.20.2 server binaries, kube-proxy and kubectl from
# Debian's `kubernetes` source package once, and cache them outside the
# checkout.
#
# Debian ships no kube-apiserver binary; its source package carries the
# vendored tree, which `make WHAT=...` builds offline with Debian's Go.
# The build takes 5-7 minutes on two cores, so the result is cached in
# $KUBEFENCE_CACHE (default /var/cache/kubefence) and reused.
#
# Prints the directory holding the binaries on stdout; progress on stderr.
set -euo pipefail

CACHE=${KUBEFENCE_CACHE:-/var/cache/kubefence}
VERSION=1.20.2
# Bump PATCHLEVEL whenever the build below changes what it produces.
PATCHLEVEL=r1
BINDIR="$CACHE/k8s-$VERSION-$PATCHLEVEL/bin"
# kubectl too: Debian bookworm has no kubectl package, and a client of the
# same version as the servers is what the lab should use anyway.
# kube-proxy (iptables mode) gives the lab's Services their ClusterIPs as on a
# real cluster; it came later than the others, so a cache made before it is
# completed by building only what is missing.
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)

missing() {
	local b
	for b in "${WANT[@]}"; do
		[ -x "$BINDIR/$b" ] || echo "$b"
	done
}
have_all() { [ -z "$(missing)" ]; }

if have_all; then
	echo "$BINDIR"
	exit 0
fi

log() { echo "k8s-build: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "needs root to apt-get the source package and Go; run as root"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v go >/dev/null || ! command -v rsync >/dev/null ||
	[ ! -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]; then
	log "installing golang-go rsync golang-github-modern-go-reflect2-dev"
	apt-get install -y golang-go rsync golang-github-modern-go-reflect2-dev >&2
fi

# A deb-src entry mirroring the binary one, so `apt-get source` works.
SRCLIST=/etc/apt/sources.list.d/kubefence-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && [ ! -f "$SRCLIST" ]; then
	log "adding a deb-src entry ($SRCLIST)"
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		awk 'BEGIN{RS="";ORS="\n\n"} /Suites:[^\n]*bookworm( |$|\n)/ {sub(/Types: deb/,"Types: deb-src"); print; exit}' \
			/etc/apt/sources.list.d/debian.sources >"$SRCLIST"
	else
		grep -E '^deb ' /etc/apt/sources.list | head -1 | sed 's/^deb /deb-src /' \
			>/etc/apt/sources.list.d/kubefence-src.list
	fi
	apt-get update >&2
fi

WORK="$CACHE/k8s-src"
mkdir -p "$WORK" "$BINDIR"
cd "$WORK"
if ! ls kubernetes_*.orig.tar.* >/dev/null 2>&1; then
	log "downloading the kubernetes source package"
	apt-get source --download-only kubernetes >&2
fi
TREE="$WORK/tree"
if [ ! -f "$TREE/Makefile" ]; then
	log "unpacking"
	rm -rf "$TREE"
	mkdir -p "$TREE"
	orig=$(ls kubernetes_*.orig.tar.* | head -1)
	tar -xf "$orig" -C "$TREE" --strip-components=1
fi

# Kubernetes 1.20 vendors reflect2 v1.0.1, which crashes under Go >= 1.18
# (a nil dereference when json-iterator first decodes a map type: every
# JSON create/update of an object with labels or annotations makes the API
# server panic).  v1.0.2 fixed it; Debian packages v1.0.2, so vendor that.
R2=vendor/github.com/modern-go/reflect2
if [ ! -f "$TREE/$R2/go_above_118.go" ]; then
	log "replacing the vendored reflect2 v1.0.1 with Debian's v1.0.2 (Go >= 1.18 fix)"
	rm -rf "${TREE:?}/$R2"
	mkdir -p "$TREE/$R2"
	cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$TREE/$R2/"
	cp /usr/share/gocode/src/github.com/modern-go/reflect2/LICENSE "$TREE/$R2/" 2>/dev/null || true
fi

mapfile -t MISSING < <(missing)
mkdir -p "$TREE/.go/src/k8s.io" "$WORK/home"
ln -sfn "$TREE" "$TREE/.go/src/k8s.io/kubernetes"
# The make rules generate the openapi files the servers need (a plain `go
# build` of them fails); kube-proxy needs none, and `go build` is much faster.
MAKE_WHAT=()
for b in "${MISSING[@]}"; do
	[ "$b" = kube-proxy ] || MAKE_WHAT+=("cmd/$b")
done
log "building ${MISSING[*]} (5-7 minutes on two cores for the servers, 2-4 for kube-proxy alone)"
(
	cd "$TREE/.go/src/k8s.io/kubernetes"
	export GOPATH="$TREE/.go" CGO_ENABLED=0 HOME="$WORK/home" GOFLAGS=-mod=vendor GO111MODULE=off
	if [ ${#MAKE_WHAT[@]} -gt 0 ]; then
		make WHAT="${MAKE_WHAT[*]}" >&2
	fi
	if [[ " ${MISSING[*]} " == *" kube-proxy "* ]]; then
		mkdir -p _output/kube-proxy
		go build -ldflags "-X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion=v$VERSION" \
			-o _output/kube-proxy/kube-proxy ./cmd/kube-proxy >&2
	fi
)
for b in "${MISSING[@]}"; do
	f=$(find "$TREE/_output" -type f -name "$b" -perm -u+x | head -1)
	[ -n "$f" ] || { log "build produced no $b"; exit 1; }
	install -m 0755 "$f" "$BINDIR/$b"
done
# The pause container's source, for lab images.
install -m 0644 "$TREE/build/pause/linux/pause.c" "$CACHE/k8s-$VERSION-$PATCHLEVEL/pause.c" 2>/dev/null || true
have_all
log "cached in $BINDIR"
echo "$BINDIR"
