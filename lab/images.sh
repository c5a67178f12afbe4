#!/usr/bin/env bash
# Container images for the lab, built without any registry.
#
#   images.sh build OUTDIR      write pause.tar, agent.tar, metad.tar (docker-archive)
#   images.sh import NODE...    build if needed and import into each node's containerd
#
# Images:
#   k8s.gcr.io/pause:3.2   a static pause binary built from Kubernetes' pause.c
#   kubefence/agent:lab    /usr/bin/kubefence-agent, /usr/bin/kubefencectl
#   kubefence/metad:lab    /usr/bin/kubefence-metad, /usr/bin/kubefence-meta
# The kubefence binaries come from $KUBEFENCE_BUILD (default: the repo's top
# directory); each is copied with every library `ldd` lists and the dynamic
# loader, so the image runs the very build under test.
set -euo pipefail
LAB_TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lab/lib/common.sh
. "$LAB_TOP/lab/lib/common.sh"

BUILD=${KUBEFENCE_BUILD:-$LAB_TOP}

# docker-archive: manifest.json + <sha>.json config + one layer tar.
# write_archive OUT TAG ROOTFS ENTRYPOINT-JSON
write_archive() {
	local out=$1 tag=$2 root=$3 entry=$4 tmp layer_sha cfg cfg_sha
	tmp=$(mktemp -d "${out%/*}/.img.XXXXXX")
	mkdir -p "$tmp/layer"
	# Reproducible layer: fixed owner and mtime, sorted names.
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
		-C "$root" -cf "$tmp/layer/layer.tar" .
	layer_sha=$(sha256sum "$tmp/layer/layer.tar" | cut -d' ' -f1)
	mv "$tmp/layer" "$tmp/$layer_sha"
	cfg=$(printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/bin:/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"kubefence lab/images.sh"}]}' \
		"$entry" "$layer_sha")
	printf '%s' "$cfg" >"$tmp/config.json"
	cfg_sha=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
	mv "$tmp/config.json" "$tmp/$cfg_sha.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
		"$cfg_sha" "$tag" "$layer_sha" >"$tmp/manifest.json"
	tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$tmp" -cf "$out.tmp" \
		manifest.json "$cfg_sha.json" "$layer_sha"
	mv "$out.tmp" "$out"
	rm -rf "$tmp"
}

# A minimal root: /etc basics, /tmp, and BINARIES with their libraries.
make_root() { # DIR BINARY...
	local root=$1 b lib
	shift
	mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp" "$root/var/run" "$root/dev" "$root/proc" "$root/sys"
	chmod 1777 "$root/tmp"
	printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
	for b in "$@"; do
		[ -x "$b" ] || die "images: $b missing: build kubefence first (KUBEFENCE_BUILD=$BUILD)"
		cp -L "$b" "$root/usr/bin/"
		# Every library ldd resolves ("=> /path") and the loader (a bare path).
		for lib in $(ldd "$b" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
			mkdir -p "$root$(dirname "$lib")"
			cp -Ln "$lib" "$root$lib"
		done
	done
	# The loader must also be where the ELF interpreter field points.
	if [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || [ -e /lib64/ld-linux-x86-64.so.2 ]; then
		mkdir -p "$root/lib64"
		cp -Ln /lib64/ld-linux-x86-64.so.2 "$root/lib64/" 2>/dev/null || true
	fi
	# A CA bundle for anything that wants one (the agent uses the SA's CA file).
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$root/etc/ssl/certs"
		cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	fi
}

pause_src() {
	local d f
	d=$(bash "$LAB_TOP/lab/k8s-build.sh")
	f="$(dirname "$d")/pause.c"
	[ -f "$f" ] || f=${KUBEFENCE_CACHE:-/var/cache/kubefence}/k8s-src/tree/build/pause/linux/pause.c
	[ -f "$f" ] || die "images: no pause.c (run lab/k8s-build.sh)"
	echo "$f"
}

cmd_build() { # OUTDIR
	local out=$1 w
	mkdir -p "$out"
	w=$(mktemp -d "$out/.work.XXXXXX")
	# pause: static, so the layer needs nothing else.
	if [ ! -f "$out/pause.tar" ]; then
		mkdir -p "$w/pause"
		gcc -Os -static -o "$w/pause/pause" "$(pause_src)" || die "images: cannot build pause (gcc, libc6-dev)"
		strip "$w/pause/pause" 2>/dev/null || true
		write_archive "$out/pause.tar" k8s.gcr.io/pause:3.2 "$w/pause" '["/pause"]'
	fi
	make_root "$w/agent" "$BUILD/nodeagent/kubefence-agent" "$BUILD/nodeagent/kubefencectl"
	write_archive "$out/agent.tar" kubefence/agent:lab "$w/agent" '["/usr/bin/kubefence-agent"]'
	make_root "$w/metad" "$BUILD/storage/metad/kubefence-metad" "$BUILD/storage/metad/kubefence-meta"
	write_archive "$out/metad.tar" kubefence/metad:lab "$w/metad" '["/usr/bin/kubefence-metad"]'
	rm -rf "$w"
	log "images built in $out: pause.tar agent.tar metad.tar"
}

cmd_import() { # NODE...
	local out=$LABDIR/images n t
	cmd_build "$out"
	for n in "$@"; do
		for t in pause agent metad; do
			ctr --address "$(node_sock "$n")" -n k8s.io images import \
				--snapshotter native "$out/$t.tar" >/dev/null ||
				die "images: import of $t into $n failed"
		done
		log "images imported into $n"
	done
}

case ${1:-} in
build) cmd_build "${2:-$LABDIR/images}" ;;
import)
	shift
	# shellcheck disable=SC2046
	[ $# -gt 0 ] || set -- $(lab_nodes)
	cmd_import "$@"
	;;
*) die "usage: $0 build [OUTDIR] | import [NODE...]" ;;
esac
