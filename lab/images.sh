#!/usr/bin/env bash
# Container images for the lab, built from the project's Containerfile with
# buildah, without any registry.
#
#   images.sh build OUTDIR      write pause.tar, agent.tar, metad.tar (docker-archive)
#   images.sh import NODE...    build if needed and import into each node's containerd
#   images.sh load NODE...      import what `build` wrote in $LABDIR/images
#   images.sh base [full]       make the base image(s) locally: debian:bookworm-slim
#                               (and with `full` debian:bookworm, for a build
#                               from source); prints their names
#
# Images:
#   k8s.gcr.io/pause:3.2   a static pause binary built from Kubernetes' pause.c
#                          (lab/pause.Containerfile, FROM scratch)
#   kubefence/agent:lab    Containerfile --target agent-prebuilt
#   kubefence/metad:lab    Containerfile --target metad-prebuilt
# The kubefence programs come from $KUBEFENCE_BUILD (default: the repo's top
# directory), so the images run the very build under test; everything else
# (bookworm-slim and the programs' libraries from Debian) is what an
# operator's `podman build` of the same Containerfile makes.
#
# No registry is reachable here, so `FROM debian:bookworm-slim` needs a local
# base: mmdebstrap makes it from the Debian archive (minbase, merged /usr, the
# docs, man pages and locales left out, as Debian's own slim image does) and
# buildah commits it as docker.io/library/debian:bookworm-slim.
#
# Cache: buildah's store (vfs driver) and the archives live in
# $KUBEFENCE_CACHE/lab-images (default /var/cache/kubefence), outside the
# lab, so `down` keeps them.  Each archive is named by the content hash of
# its inputs (the Containerfile, the programs, this script, the base image),
# so an `up` whose inputs did not change builds nothing.
set -euo pipefail
LAB_TOP=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lab/lib/common.sh
. "$LAB_TOP/lab/lib/common.sh"

BUILD=${KUBEFENCE_BUILD:-$LAB_TOP}
CACHE=${KUBEFENCE_CACHE:-/var/cache/kubefence}/lab-images
STORE=$CACHE/storage
# buildah's run root (locks, mount state): beside the store, so that the
# lab leaves nothing elsewhere.
RUNROOT=$CACHE/run
SUITE=bookworm
MIRRORS=(
	"deb http://deb.debian.org/debian $SUITE main"
	"deb http://deb.debian.org/debian $SUITE-updates main"
	"deb http://deb.debian.org/debian-security $SUITE-security main"
)

bah() {
	buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver vfs "$@"
}
need_tools() {
	local c
	for c in buildah mmdebstrap; do
		command -v "$c" >/dev/null || die "images: $c not found (Debian package $c; tests/deps.sh installs it)"
	done
}
# image_id NAME: the local image's ID, or nothing.
image_id() { bah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -1 || true; }

# make_base NAME SLIM(0|1): the Debian base image NAME, made once.
make_base() {
	local name=$1 slim=$2 tar ctr
	[ -n "$(image_id "$name")" ] && return 0
	log "images: making $name with mmdebstrap (once; about 20 s)"
	mkdir -p "$CACHE"
	tar=$(mktemp "$CACHE/.base.XXXXXX.tar")
	local opts=(--variant=minbase --format=tar --skip=output/dev
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
	if [ "$slim" = 1 ]; then
		opts+=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
			--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
			--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/groff/*'
			--dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/linda/*')
	fi
	mmdebstrap --quiet "${opts[@]}" "$SUITE" "$tar" "${MIRRORS[@]}" >"$CACHE/mmdebstrap.log" 2>&1 ||
		{ rm -f "$tar"; tail -20 "$CACHE/mmdebstrap.log" >&2; die "images: mmdebstrap of $name failed (log: $CACHE/mmdebstrap.log)"; }
	ctr=$(bah from --quiet scratch)
	bah add --quiet "$ctr" "$tar" / >/dev/null
	bah config --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
	bah commit --quiet --rm "$ctr" "$name" >/dev/null
	rm -f "$tar"
}
cmd_base() { # [full]
	need_tools
	make_base docker.io/library/debian:bookworm-slim 1
	echo docker.io/library/debian:bookworm-slim
	if [ "${1:-}" = full ]; then
		make_base docker.io/library/debian:bookworm 0
		echo docker.io/library/debian:bookworm
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

# build_image OUT TAG CONTAINERFILE CONTEXT [BUD-ARGS...]: buildah bud into
# the cache's store, then a docker-archive OUT.  --layers keeps the stages'
# results, so agent and metad share the base and the runtime layer: each
# node's containerd stores and unpacks those once (its overlayfs snapshotter
# stacks the layers instead of copying them).  The build's output goes to
# $CACHE/build.log.
build_image() {
	local out=$1 tag=$2 file=$3 ctx=$4
	shift 4
	bah bud --isolation chroot --pull=never --layers \
		--timestamp 0 -f "$file" -t "$tag" "$@" "$ctx" >"$CACHE/build.log" 2>&1 ||
		{ tail -30 "$CACHE/build.log" >&2; die "images: buildah bud of $tag failed (log: $CACHE/build.log)"; }
	rm -f "$out.tmp"
	bah push --quiet "$tag" "docker-archive:$out.tmp:$tag" >/dev/null ||
		die "images: writing $out failed"
	mv "$out.tmp" "$out"
}

# build_stage CONTEXT TARGET TAG: one stage of the Containerfile, kept as TAG.
build_stage() {
	bah bud --isolation chroot --pull=never --layers --timestamp 0 \
		-f "$LAB_TOP/Containerfile" --target "$2" -t "$3" "$1" >"$CACHE/build.log" 2>&1 ||
		{ tail -30 "$CACHE/build.log" >&2; die "images: buildah bud of the $2 stage failed (log: $CACHE/build.log)"; }
}

# hash_of FILE...: one content hash over the files' contents (and names).
hash_of() {
	local f
	for f in "$@"; do
		printf '%s ' "$(basename "$f")"
		sha256sum <"$f" | cut -d' ' -f1
	done | sha256sum | cut -c1-16
}

# cached OUT NAME HASH: OUT links to the cached archive NAME-HASH.tar; true
# when that archive exists already.
cached() {
	local out=$1 c="$CACHE/$2-$3.tar"
	if [ -f "$c" ]; then
		ln -f "$c" "$out" 2>/dev/null || cp "$c" "$out"
		return 0
	fi
	return 1
}
store() { # OUT NAME HASH: keep the new archive; drop older ones of NAME
	local c="$CACHE/$2-$3.tar" f
	for f in "$CACHE/$2"-*.tar; do [ "$f" = "$c" ] || rm -f "$f"; done
	ln -f "$1" "$c" 2>/dev/null || cp "$1" "$c"
}

cmd_build() { # OUTDIR
	local out=$1 w base_id h src
	need_tools
	mkdir -p "$out" "$CACHE"
	w=$(mktemp -d "$CACHE/.work.XXXXXX")
	# (the base image's ID is an input: a new base means new images)
	cmd_base >/dev/null
	base_id=$(image_id docker.io/library/debian:bookworm-slim)

	# pause: static, FROM scratch.
	src=$(pause_src)
	h=$(hash_of "$src" "$LAB_TOP/lab/pause.Containerfile" "$0")
	if ! cached "$out/pause.tar" pause "$h"; then
		mkdir -p "$w/pause"
		gcc -Os -static -o "$w/pause/pause" "$src" || die "images: cannot build pause (gcc, libc6-dev)"
		strip "$w/pause/pause" 2>/dev/null || true
		build_image "$out/pause.tar" k8s.gcr.io/pause:3.2 "$LAB_TOP/lab/pause.Containerfile" "$w/pause"
		store "$out/pause.tar" pause "$h"
	fi

	# agent and metad: the Containerfile with the programs of $BUILD laid out
	# as `make install` would (prebuilt/usr/sbin, prebuilt/usr/bin).
	local progs=("$BUILD/nodeagent/kubefence-agent" "$BUILD/nodeagent/kubefencectl"
		"$BUILD/storage/metad/kubefence-metad" "$BUILD/storage/metad/kubefence-meta") p
	for p in "${progs[@]}"; do
		[ -x "$p" ] || die "images: $p missing: build kubefence first (KUBEFENCE_BUILD=$BUILD)"
	done
	local t built=0
	for t in agent metad; do
		h=$( (
			hash_of "$LAB_TOP/Containerfile" "$0" "${progs[@]}"
			echo "$base_id"
		) | sha256sum | cut -c1-16)
		cached "$out/$t.tar" "$t" "$h" && continue
		if [ ! -d "$w/ctx" ]; then
			mkdir -p "$w/ctx/prebuilt/usr/sbin" "$w/ctx/prebuilt/usr/bin"
			cp "${progs[0]}" "${progs[1]}" "$w/ctx/prebuilt/usr/sbin/"
			cp "${progs[2]}" "${progs[3]}" "$w/ctx/prebuilt/usr/bin/"
		fi
		if [ $built = 0 ]; then
			# The runtime stage (bookworm-slim and the libraries), tagged so
			# that pruning keeps it: a rebuild for new programs reuses it.
			build_stage "$w/ctx" runtime localhost/kubefence-lab/runtime:cache
			built=1
		fi
		log "images: building kubefence/$t:lab (Containerfile, programs of $BUILD)"
		build_image "$out/$t.tar" "docker.io/kubefence/$t:lab" "$LAB_TOP/Containerfile" "$w/ctx" \
			--target "$t-prebuilt"
		store "$out/$t.tar" "$t" "$h"
	done
	rm -rf "$w"
	# What earlier builds left: untagged images (vfs keeps full copies).
	if [ $built = 1 ]; then
		bah rm --all >/dev/null 2>&1 || true
		bah rmi --prune >/dev/null 2>&1 || true
	fi
	log "images in $out: pause.tar agent.tar metad.tar"
}

cmd_import() { # NODE...
	cmd_build "$LABDIR/images"
	cmd_load "$@"
}
cmd_load() { # NODE...: import the archives already in $LABDIR/images
	local out=$LABDIR/images n t
	for n in "$@"; do
		for t in pause agent metad; do
			ctr --address "$(node_sock "$n")" -n k8s.io images import \
				--snapshotter overlayfs "$out/$t.tar" >/dev/null ||
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
load)
	shift
	cmd_load "$@"
	;;
base) cmd_base "${2:-}" ;;
*) die "usage: $0 build [OUTDIR] | import [NODE...] | base [full]" ;;
esac
