#!/usr/bin/env bash
# The lab's iSCSI target: one tgtd on the lab bridge (198.18.0.1:3260)
# exporting the LUN the lab overlay's agent.conf names
# (iscsi://198.18.0.1:3260/iqn.2026-11.io.kubefence.lab:target/1), with
# SCSI-3 persistent reservations, so that the agents' `scsi-pr` fence runs
# against a real target.  Needs the lab's bridge (lab.sh up first).
#
#   lab-tgtd.sh start DIR     start tgtd, create the target and LUN 1 (128 MB sparse
#                             file in DIR; the MetaService's store and the fence's LUN)
#   lab-tgtd.sh stop DIR      delete the target and stop tgtd, by its recorded PID
set -euo pipefail

die() {
	echo "lab-tgtd.sh: $*" >&2
	exit 1
}
PORTAL_IP=198.18.0.1
PORT=3260
IQN=iqn.2026-11.io.kubefence.lab:target

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: lab-tgtd.sh start|stop DIR"
command -v tgtd >/dev/null || die "tgtd not installed (Debian package tgt)"

adm() { tgtadm -C "$CTL" --lld iscsi "$@"; }

case $cmd in
start)
	mkdir -p "$dir"
	ip -4 addr show | grep -q "inet $PORTAL_IP/" || die "no $PORTAL_IP here: is the lab up?"
	! ss -Htln "sport = :$PORT" | grep -q . || die "port $PORT is in use"
	CTL=
	for _ in $(seq 1 200); do
		c=$((1000 + RANDOM % 31000))
		if ! ss -Hxl | grep -q "/var/run/tgtd/socket.$c "; then
			CTL=$c
			break
		fi
	done
	[ -n "$CTL" ] || die "no free tgtd control socket index"
	[ -f "$dir/lun1.img" ] || truncate -s 128M "$dir/lun1.img"
	setsid tgtd -f --iscsi "portal=$PORTAL_IP:$PORT" -C "$CTL" >>"$dir/tgtd.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/tgtd.pid"
	echo "$CTL" >"$dir/tgtd.ctl"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || die "tgtd exited at start; see $dir/tgtd.log"
		adm --op show --mode sys >/dev/null 2>&1 && break
		sleep 0.05
	done
	adm --op new --mode target --tid 1 -T "$IQN"
	adm --op new --mode logicalunit --tid 1 --lun 1 -b "$dir/lun1.img"
	adm --op bind --mode target --tid 1 -I ALL
	for _ in $(seq 1 100); do
		ss -Htln "sport = :$PORT" | grep -q . && break
		sleep 0.05
	done
	echo "tgtd pid=$pid portal=$PORTAL_IP:$PORT lun=iscsi://$PORTAL_IP:$PORT/$IQN/1"
	;;
stop)
	[ -f "$dir/tgtd.pid" ] || exit 0
	pid=$(cat "$dir/tgtd.pid")
	CTL=$(cat "$dir/tgtd.ctl" 2>/dev/null || echo 0)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		timeout 5 tgtadm -C "$CTL" --lld iscsi --op delete --force --mode target --tid 1 >/dev/null 2>&1 || true
		timeout 5 tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true
		for _ in $(seq 1 30); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$dir/tgtd.pid" "$dir/tgtd.ctl" "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
	;;
*) die "unknown command '$cmd'" ;;
esac
