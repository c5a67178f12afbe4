# The preamble of the lab benchmarks (sourced after tests/e2e/lib.sh):
# refuse a lab already up, exit 2 where the machine cannot run one
# (e2e_init, which sets WORK), take the lab down and remove WORK on exit
# (after the script's own bench_before_cleanup, when it defines one);
# die() and ms(); what the benchmarks share to sample acknowledged writes
# (bench_keep_logs, bench_workloads, mark, first_ack, sample_acks, dist) and to reconfigure the agents
# (agent_conf_*, agent_rollout).
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
# AFTER_US (the fault complete), leaving out a line that is not whole
# (the first after the mark may be the end of one being written) and an
# answer the old server had sent before the fault that arrived just after
# it (a request sent before T0_US and acknowledged within 20 ms of
# AFTER_US); a request sent before the fault and retried until the new
# server answered it counts.  Prints "acked_us addr".
# Only what was appended since mark ran (before the fault) is read: the
# files grow by hundreds of lines a second.
first_ack() {
	tail -c +$((${MARK[$1]:-0} + 1)) "$1" 2>/dev/null |
		awk -v t0="$2" -v t="$3" 'NF >= 6 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ &&
			$3 + 0 > t + 0 && ($2 + 0 >= t0 + 0 || $3 - t > 20000) {print $3, $4; exit}'
}
# bench_keep_logs DIR GLOB...: what --logs keeps — every pod's log (and
# its previous container's), the namespace's Events, and the files of WORK
# that match the GLOBs (e.g. '*.log' 'acks.*').
bench_keep_logs() {
	local dir=$1 p g
	shift
	mkdir -p "$dir"
	for p in $(kc get pods -n $NS -o name 2>/dev/null); do
		kc logs -n $NS "$p" >"$dir/${p#pod/}.log" 2>&1 || true
		kc logs -n $NS "$p" --previous >"$dir/${p#pod/}.previous.log" 2>/dev/null || rm -f "$dir/${p#pod/}.previous.log"
	done
	kc get events -n $NS -o wide >"$dir/events.txt" 2>&1 || true
	for g in "$@"; do
		# shellcheck disable=SC2086 # the glob is meant to expand
		cp "$WORK"/$g "$dir/" 2>/dev/null || true
	done
	echo "bench: logs kept in $dir" >&2
}
# bench_workloads NAME [KEYS]: one writing client per path of PATHS
# (clusterip: through the Service, endpoints: reading the Endpoints), each
# acknowledging into ACKS.PATH (over KEYS keys when given) with its history
# in HIST/NAME-PATH.hist; WLS their PIDs.  Waits for each one's first ack.
bench_workloads() {
	local name=$1 keys=${2:-} p
	PATHS=(clusterip endpoints)
	ACKS=$WORK/acks
	WLS=()
	for p in "${PATHS[@]}"; do
		bg_start "$CLIENT" --via "$p" --pause-us 500 --history "$HIST/$name-$p.hist" --client "workload-$p" \
			${keys:+--keys "$keys"} --prefix "$p-" workload "$ACKS.$p" >/dev/null 2>>"$WORK/client-$p.log"
		WLS+=("$BG_PID")
	done
	for p in "${PATHS[@]}"; do wait_ack_after "$ACKS.$p" 0 60 >/dev/null || die "workload ($p)"; done
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
		v=""
		[ -n "$a" ] && v=$(ms "${a%% *}" "$t0")
		case $v in -* | "") a="" ;; esac # a torn line is no sample
		if [ -n "$a" ]; then
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

# The agents' configuration (the ConfigMap their DaemonSet mounts as
# /etc/kubefence/agent.conf).  kcw is kc without the request time-out, for
# what waits on a watch (rollout status).
kcw() { "$E2E_KUBECTL" --kubeconfig /var/lib/kubefence-lab/admin.kubeconfig "$@"; }
agent_cm() {
	kc get daemonset -n $NS kubefence-agent \
		-o jsonpath='{.spec.template.spec.volumes[?(@.name=="config")].configMap.name}'
}
# agent_conf_get FILE: the agents' agent.conf into FILE.
agent_conf_get() { kc get configmap -n $NS "$(agent_cm)" -o json | jq -r '.data["agent.conf"]' >"$1"; }
# agent_conf_value KEY: its effective value (defaults included), as this
# build's agent reads the agents' agent.conf.
agent_conf_value() {
	agent_conf_get "$WORK/agent.conf.cur" || return 1
	NODE_NAME=lab-node-1 "$KUBEFENCE_BUILD/nodeagent/kubefence-agent" --dump-config \
		--config "$WORK/agent.conf.cur" 2>/dev/null |
		awk -v k="$1" '$1 == k && $2 == "=" {print $3; exit}'
}
# agent_conf_set KEY VALUE: the key's line in the agents' agent.conf
# replaced (or appended), checked with --config-test first; the running
# agents read it when they restart (agent_rollout).
agent_conf_set() {
	local cm out
	cm=$(agent_cm) || return 1
	agent_conf_get "$WORK/agent.conf.cur" || return 1
	awk -v k="$1" -v v="$2" '
		{ line = $0; sub(/^[ \t]+/, "", line) }
		index(line, k) == 1 && substr(line, length(k) + 1) ~ /^[ \t]*=/ { next }
		{ print }
		END { print k " = " v }' "$WORK/agent.conf.cur" >"$WORK/agent.conf.new"
	out=$(NODE_NAME=lab-node-1 "$KUBEFENCE_BUILD/nodeagent/kubefence-agent" --config-test \
		--config "$WORK/agent.conf.new" 2>&1) || {
		echo "bench: kubefence-agent --config-test refuses $1 = $2: $out" >&2
		return 1
	}
	kc get configmap -n $NS "$cm" -o json |
		jq --rawfile c "$WORK/agent.conf.new" '.data["agent.conf"] = $c' |
		kc replace -f - >/dev/null
}
# agent_mounted_conf_has LINE: every agent pod's mounted agent.conf (read in
# its kubelet's volume directory) has LINE.
agent_mounted_conf_has() {
	local js n=0 node uid
	js=$(kc get pods -n $NS -l app=kubefence-agent -o json) || return 1
	while read -r node uid; do
		grep -qxF "$1" "/var/lib/kubefence-lab/nodes/$node/kubelet/pods/$uid/volumes/kubernetes.io~configmap/config/agent.conf" 2>/dev/null ||
			return 1
		n=$((n + 1))
	done < <(jq -r '.items[] | select(.metadata.deletionTimestamp == null) | "\(.spec.nodeName) \(.metadata.uid)"' <<<"$js")
	[ "$n" -gt 0 ]
}
# agent_rollout TIMEOUT_S: a rolling update of the agent DaemonSet
# (`kubectl rollout restart`), waited for with `kubectl rollout status`,
# then both services connected and one master (wait_both_ready).  Sets
# ROLLOUT_T0_US (just before the restart), ROLLOUT_DONE_US (rollout
# status returned) and ROLLOUT_READY_US (ready again).
agent_rollout() {
	ROLLOUT_T0_US=$(now_us)
	kc rollout restart -n $NS daemonset/kubefence-agent >/dev/null || return 1
	kcw rollout status -n $NS daemonset/kubefence-agent --timeout="${1}s" >/dev/null || return 1
	ROLLOUT_DONE_US=$(now_us)
	wait_both_ready "$1" || return 1
	ROLLOUT_READY_US=$(now_us)
}
