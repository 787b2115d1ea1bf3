# Failover helpers (sourced after lib.sh).

# copies_of [--frozen-too] NAME: counts the hosts on which guest NAME has
# live, running processes, from the hosts' cgroups: the audit of "never two
# running copies" from outside hactl. A frozen cgroup (a migration's paused
# copy) does not count, unless --frozen-too (hactl pause: a paused copy is
# a copy).
copies_of() {
	local frozen_too=0 name n=0 k d f
	[ "$1" = --frozen-too ] && { frozen_too=1; shift; }
	name=$1
	for k in 1 2 3; do
		f=/sys/fs/cgroup/freezer/hactl-lc/node$k/$name/freezer.state
		if [ $frozen_too = 0 ] && [ -e "$f" ] && [ "$(cat "$f" 2>/dev/null)" != THAWED ]; then
			continue
		fi
		for d in /sys/fs/cgroup/*/hactl-lc/node$k/$name; do
			if [ -d "$d" ] && [ -n "$(find "$d" \( -name cgroup.procs -o -name tasks \) -exec cat {} + 2>/dev/null | head -1)" ]; then
				n=$((n + 1))
				break
			fi
		done
	done
	echo $n
}

# audit_start [--frozen-too] NAME...: samples every 100 ms in the
# background; a sample with two copies of any guest (copies_of, with the
# same option) is written to $AUDIT_LOG
audit_start() {
	local opt=()
	[ "$1" = --frozen-too ] && { opt=(--frozen-too); shift; }
	AUDIT_LOG=$(mktemp /tmp/hactl-audit-XXXXXX)
	(
		while true; do
			for g in "$@"; do
				c=$(copies_of "${opt[@]}" "$g")
				[ "$c" -gt 1 ] && echo "$(date +%T.%3N) $g has $c copies" >>"$AUDIT_LOG"
			done
			sleep 0.1
		done
	) &
	AUDIT_PID=$!
}

audit_stop() {
	kill "$AUDIT_PID" 2>/dev/null
	wait "$AUDIT_PID" 2>/dev/null
}

# wait_answer NODE IP TIMEOUT_S: ms until the workload answers
wait_answer_ms() {
	local node=$1 ip=$2 t0 deadline
	t0=$(now_ms)
	deadline=$((t0 + $3 * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if on "$node" hactl-workload --query "$ip:7000" >/dev/null 2>&1; then
			echo $(($(now_ms) - t0))
			return 0
		fi
		sleep 0.05
	done
	return 1
}
