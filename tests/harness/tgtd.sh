#!/usr/bin/env bash
# A real iSCSI target for integration tests: one tgtd on loopback exporting
# file-backed LUNs that support SCSI-3 persistent reservations.
#
#   tgtd.sh start DIR [--luns N] [--size MB] [--lun-dir D]
#                                              start tgtd, create N LUNs (their backing
#                                              files in D, default DIR), write DIR/tgt.env
#   tgtd.sh stop DIR                           delete the target and stop tgtd (by PID)
#   tgtd.sh restart DIR                        stop + start with the same ports and
#                                              backing files: reservations are lost
#                                              (tgtd keeps them in memory), data stays
#
# DIR/tgt.env holds `export` lines:
#   KF_TGT_PORTAL     127.0.0.1:PORT
#   KF_TGT_IQN        the target's IQN
#   KF_TGT_LUN_URLS   space-separated iscsi://127.0.0.1:PORT/IQN/LUN URLs (LUN 1..N)
#   KF_TGT_CTL        the tgtd control socket index (tgtd/tgtadm -C N: the
#                     unix socket /var/run/tgtd/socket.N, N in 0..32767 — not
#                     a TCP port)
#   KF_TGT_PID        the tgtd process id
# tgtd ignores SIGTERM while it has targets, so stop deletes the target and
# the system through tgtadm first and falls back to SIGKILL of the recorded PID.
set -euo pipefail

die() {
	echo "tgtd.sh: $*" >&2
	exit 1
}
# shellcheck source=tests/harness/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

adm() { # tgtadm with our control port
	tgtadm -C "$CTL" --lld iscsi "$@"
}

# A control socket index no live tgtd uses (tgtd -C accepts 0..32767).
free_ctl() {
	local c
	for _ in $(seq 1 200); do
		c=$((1000 + RANDOM % 31000))
		if [ ! -e "/var/run/tgtd/socket.$c" ] ||
			! ss -Hxl | grep -q "/var/run/tgtd/socket.$c "; then
			echo "$c"
			return 0
		fi
	done
	die "no free tgtd control socket index found"
}

do_start() { # DIR (PORT, CTL, LUNS, SIZE set)
	local dir=$1 i pid
	mkdir -p "$dir"
	LUN_DIR=${LUN_DIR:-$dir}
	for i in $(seq 1 "$LUNS"); do
		[ -f "$LUN_DIR/lun$i.img" ] || truncate -s "${SIZE}M" "$LUN_DIR/lun$i.img"
	done
	# tgtd -f stays in the foreground; it is our child only until we exit.
	setsid tgtd -f --iscsi "portal=127.0.0.1:$PORT" -C "$CTL" >>"$dir/tgtd.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/tgtd.pid"
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || die "tgtd exited at start; see $dir/tgtd.log"
		adm --op show --mode sys >/dev/null 2>&1 && break
		sleep 0.05
	done
	adm --op show --mode sys >/dev/null 2>&1 || die "tgtd does not answer on control port $CTL"
	adm --op new --mode target --tid 1 -T "$IQN"
	for i in $(seq 1 "$LUNS"); do
		adm --op new --mode logicalunit --tid 1 --lun "$i" -b "$LUN_DIR/lun$i.img"
	done
	adm --op bind --mode target --tid 1 -I ALL
	for i in $(seq 1 100); do
		ss -Htln "sport = :$PORT" | grep -q . && break
		sleep 0.05
	done
	{
		echo "export KF_TGT_PORTAL=127.0.0.1:$PORT"
		echo "export KF_TGT_IQN=$IQN"
		printf 'export KF_TGT_LUN_URLS="'
		for i in $(seq 1 "$LUNS"); do
			[ "$i" = 1 ] || printf ' '
			printf 'iscsi://127.0.0.1:%s/%s/%s' "$PORT" "$IQN" "$i"
		done
		echo '"'
		echo "export KF_TGT_CTL=$CTL"
		echo "export KF_TGT_PID=$pid"
		echo "export KF_TGT_LUNS=$LUNS"
		echo "export KF_TGT_SIZE=$SIZE"
		echo "export KF_TGT_LUN_DIR=$LUN_DIR"
	} >"$dir/tgt.env"
}

do_stop() { # DIR
	local dir=$1 pid
	[ -f "$dir/tgtd.pid" ] || return 0
	pid=$(cat "$dir/tgtd.pid")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		timeout 5 tgtadm -C "$CTL" --lld iscsi --op delete --force --mode target --tid 1 >/dev/null 2>&1 || true
		timeout 5 tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true
		if ! wait_pid_gone "$pid" 3; then
			kill -KILL "$pid" 2>/dev/null || true
			wait_pid_gone "$pid" 5 || die "tgtd $pid did not exit"
		fi
	fi
	rm -f "$dir/tgtd.pid" "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: tgtd.sh start|stop|restart DIR [--luns N] [--size MB]"
shift 2
LUNS=1
SIZE=16
LUN_DIR=
while [ $# -gt 0 ]; do
	case $1 in
	--luns) LUNS=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--lun-dir) LUN_DIR=$2; shift 2 ;;
	*) die "unknown option '$1'" ;;
	esac
done
case $LUNS in '' | *[!0-9]*) die "--luns: not a number: '$LUNS'" ;; esac
case $SIZE in '' | *[!0-9]*) die "--size: not a number: '$SIZE'" ;; esac
IQN=iqn.2026-11.io.kubefence.test:target

case $cmd in
start)
	PORT=$(free_port)
	CTL=$(free_ctl)
	do_start "$dir"
	;;
stop)
	[ -f "$dir/tgt.env" ] || exit 0
	# shellcheck disable=SC1091
	. "$dir/tgt.env"
	CTL=$KF_TGT_CTL
	do_stop "$dir"
	;;
restart)
	[ -f "$dir/tgt.env" ] || die "$dir/tgt.env: no target started there"
	# shellcheck disable=SC1091
	. "$dir/tgt.env"
	CTL=$KF_TGT_CTL
	PORT=${KF_TGT_PORTAL##*:}
	LUNS=$KF_TGT_LUNS
	LUN_DIR=${KF_TGT_LUN_DIR:-$dir}
	SIZE=$KF_TGT_SIZE
	do_stop "$dir"
	do_start "$dir"
	;;
*) die "unknown command '$cmd'" ;;
esac
