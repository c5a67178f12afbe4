#!/usr/bin/env bash
# Shell helpers shared by the test harnesses (sourced, not run).  Each
# harness defines die() before sourcing this file.

# A free TCP port on loopback, picked at random below the kernel's
# ephemeral range (net.ipv4.ip_local_port_range, 32768.. by default): a port
# in that range can be taken by any outgoing connection between this check
# and the server's bind, which made etcd fail with "address already in use".
# No TCP socket of any state may use it now.
free_port() {
	local p lo hi
	lo=20000
	hi=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32767)
	[ "$hi" -gt $((lo + 1000)) ] 2>/dev/null || { lo=20000 hi=32767; }
	for _ in $(seq 1 200); do
		p=$((lo + RANDOM % (hi - lo + 1)))
		if ! ss -Htan "sport = :$p" | grep -q .; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# Whether PID has exited: gone, or a zombie its parent has not reaped yet.
pid_gone() { # PID
	local st
	kill -0 "$1" 2>/dev/null || return 0
	st=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}

# Wait up to TIMEOUT_S seconds for PID to exit; 1 when it still runs.
wait_pid_gone() { # PID TIMEOUT_S
	local i
	for i in $(seq 1 $(($2 * 20))); do
		pid_gone "$1" && return 0
		sleep 0.05
	done
	return 1
}

# Stop the process whose PID is in FILE: SIGTERM, then SIGKILL after
# TERM_TIMEOUT_S (default 10) seconds; remove FILE.  Never by name.
stop_pidfile() { # FILE [TERM_TIMEOUT_S]
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_pid_gone "$pid" "${2:-10}"; then
			kill -KILL "$pid" 2>/dev/null || true
			wait_pid_gone "$pid" 5 || true
		fi
	fi
	rm -f "$f"
}
