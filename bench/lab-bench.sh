# The preamble of the lab benchmarks (sourced after tests/e2e/lib.sh):
# refuse a lab already up, exit 2 where the machine cannot run one
# (e2e_init, which sets WORK), take the lab down and remove WORK on exit
# (after the script's own bench_before_cleanup, when it defines one);
# die() and ms(); what the benchmarks share to sample acknowledged writes
# (mark, first_ack, sample_acks, dist).
if lab_is_up; then
	echo "bench: a lab is already up (only one fits on a machine): lab/lab.sh down first" >&2
	exit 2
fi
e2e_skip() {
	echo "bench: cannot run: $*" >&2
	exit 2
}
e2e_init
cleanup() {
	local rc=$?
	if declare -F bench_before_cleanup >/dev/null; then bench_before_cleanup || true; fi
	e2e_cleanup
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() {
	echo "bench: $*" >&2
	exit 1
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (a-b)/1000}'; } # US_A US_B: (a-b) in ms

# The clients' files of acknowledged writes, one per path: ACKS-PREFIX.PATH
# for each PATH in the script's array PATHS (e.g. clusterip endpoints).
# first_ack ACKS_FILE T0_US AFTER_US: the first write acknowledged after
# AFTER_US (the fault complete), leaving out an answer the old server had
# sent before the fault that arrived just after it (a request sent before
# T0_US and acknowledged within 20 ms of AFTER_US); a request sent before
# the fault and retried until the new server answered it counts.  Prints
# "acked_us addr".
# Only what was appended since mark ran (before the fault) is read: the
# files grow by hundreds of lines a second.
first_ack() {
	tail -c +$((${MARK[$1]:-0} + 1)) "$1" 2>/dev/null |
		awk -v t0="$2" -v t="$3" '$3 > t && ($2 >= t0 || $3 - t > 20000) {print $3, $4; exit}'
}
declare -A MARK
mark() { # ACKS-PREFIX: remember the size of each path's file
	local p
	for p in "${PATHS[@]}"; do MARK[$1.$p]=$(stat -c %s "$1.$p" 2>/dev/null || echo 0); done
}
# sample_acks NAME ACKS-PREFIX T0_US AFTER_US TIMEOUT_S: for each path, the
# first_ack, in ms from T0_US, appended to $WORK/NAME.PATH.ms; prints "PATH
# ms ..." (or "PATH none") for the log.  Fails when no path got an ack in
# time.
sample_acks() {
	local name=$1 acks=$2 t0=$3 after=$4 timeout=$5 p a v out="" got=0 i
	for p in "${PATHS[@]}"; do
		a=""
		for i in $(seq 1 $((timeout * 50))); do
			a=$(first_ack "$acks.$p" "$t0" "$after")
			[ -n "$a" ] && break
			sleep 0.02
		done
		if [ -n "$a" ]; then
			v=$(ms "${a%% *}" "$t0")
			echo "$v" >>"$WORK/$name.$p.ms"
			out="$out $p $v ms"
			got=$((got + 1))
		else
			out="$out $p none"
			timeout=1 # the other path had as long already
		fi
	done
	echo "${out# }"
	[ $got -gt 0 ]
}
dist() { # FILE -> JSON
	sort -n "$1" | awk '{v[NR]=$1; s+=$1} END {
		if (NR == 0) { print "{\"n\": 0}"; exit }
		p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]
		printf "{\"n\": %d, \"p50_ms\": %s, \"p99_ms\": %s, \"min_ms\": %s, \"max_ms\": %s, \"mean_ms\": %.1f, \"samples_ms\": [", NR, p50, p99, v[1], v[NR], s / NR
		for (i = 1; i <= NR; i++) printf "%s%s", (i > 1 ? ", " : ""), v[i]
		printf "]}"
	}'
}

