#!/bin/bash
# An agent started on a host that is cut off from the quorate partition has
# never seen quorum: it must still self-fence, half the self-fence timeout
# after its start, and kill the guests it re-attaches (docs/failover.md,
# "Agent"). The old agent is stopped before the cut, so only the new one
# can stop the guest.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
# method watchdog: the majority does not power node3 off (a fence device
# would kill every process of the host, the guest included)
export HACTL_LC_FENCE=watchdog HACTL_LC_SELF_FENCE_MS=5000
LC_DIR=${HACTL_LC_DIR:-/run/hactl-lc}

# host_runs NODE NAME: the guest has live, running processes on NODE
host_runs() {
	local d f=/sys/fs/cgroup/freezer/hactl-lc/$1/$2/freezer.state
	if [ -e "$f" ] && [ "$(cat "$f" 2>/dev/null)" != THAWED ]; then
		return 1
	fi
	for d in /sys/fs/cgroup/*/hactl-lc/$1/$2; do
		if [ -d "$d" ] && [ -n "$(find "$d" \( -name cgroup.procs -o -name tasks \) -exec cat {} + 2>/dev/null | head -1)" ]; then
			return 0
		fi
	done
	return 1
}

start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.61
check "create" on node1 hactl create /srv/hactl/c1.conf
check "start on node3" on node1 hactl start c1 --node node3
check "answers" wait_for 30 answer workload_json node1 10.213.1.61
check "c1 runs on node3" host_runs node3 c1

# the agent goes (its guests keep running), then the host is cut off
pid=$(cat "$LC_DIR/node3/pids/ha-agent.pid")
kill -TERM "$pid"
check "node3's agent stopped" wait_for 15 agentgone bash -c "! kill -0 $pid 2>/dev/null"
lc isolate node3
check "node3 not quorate" wait_for 15 noquorum bash -c "[ \"\$($LC exec node3 -- hactl status --json | jq -r .quorate)\" = false ]"
check "c1 still runs on node3 (no agent)" host_runs node3 c1

# a new agent on the cut-off host: it re-attaches c1 and never sees quorum
t0=$(now_ms)
check "agent started on node3" lc start node3
check "the new agent killed c1 on node3" wait_for 15 killed bash -c "$(declare -f host_runs); ! host_runs node3 c1"
log "c1 gone on node3 $(($(now_ms) - t0)) ms after the agent's start"
check "node3's agent logged its self-fence" grep -q "since this agent started" "$LC_DIR/node3/log/ha-agent.log"

lc heal node3
check "node3 rejoins" wait_for 40 online bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node3\") | .state')\" = online ]"
check "c1 runs once" wait_for 40 once bash -c "$(declare -f copies_of); [ \"\$(copies_of c1)\" = 1 ]"

T_DONE=1
finish
