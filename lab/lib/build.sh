#!/usr/bin/env bash
# Sourced by the demos: install what is missing, build Kubernetes once
# (cached) and kubefence, and set BUILD to the build directory (the source
# tree when it is configured in place, else _build/plain).  TOP must be set.

kf_demo_build() {
	. "$TOP/tests/deps.sh"
	kf_install_deps
	bash "$TOP/lab/k8s-build.sh" >/dev/null
	if [ -f "$TOP/config.status" ]; then
		BUILD=$TOP
	else
		BUILD=$TOP/_build/plain
		if [ ! -f "$BUILD/config.status" ]; then
			echo "demo: building kubefence"
			[ -x "$TOP/configure" ] || (cd "$TOP" && ./autogen.sh >/dev/null 2>&1)
			mkdir -p "$BUILD"
			(cd "$BUILD" && "$TOP/configure" -q) >/dev/null
		fi
	fi
	make -s -C "$BUILD" -j"$(nproc)" >/dev/null
}
