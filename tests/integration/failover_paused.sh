#!/bin/bash
# A paused guest's host dies (docs/guests.md, "Pause and resume"): the
# leader fences the host and recovers the container on a survivor from
# its failover snapshot, still paused: frozen there, its workload silent,
# `hactl show` paused; an audit of the hosts' cgroups, frozen copies
# included, finds no moment with two copies. `hactl resume` then lets the
# restored instance (the snapshot's boot id) answer.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3
IP=10.213.1.45
write_def "$LC_SHARED/p1.conf" p1 container $IP "[ha]" "failover_snapshot_max_age = 600"
check "create p1" on node1 hactl create /srv/hactl/p1.conf
check "start p1 on node2" on node1 hactl start p1 --node node2
check "p1 answers" wait_for 60 answer workload_json node1 $IP
boot=$(workload_json node1 $IP | boot_of)
check "failover point of p1" on node1 hactl snapshot p1 --failover-point
check "pause p1" on node1 hactl pause p1

# frozen_on NODE: p1's freezer cgroup on NODE is FROZEN (v1) or frozen (v2)
frozen_on() {
	local f=/sys/fs/cgroup/freezer/hactl-lc/$1/p1/freezer.state
	if [ -e "$f" ]; then
		[ "$(cat "$f")" = FROZEN ]
	else
		grep -qx "frozen 1" "/sys/fs/cgroup/hactl-lc/$1/p1/cgroup.events"
	fi
}
thawed_on() { ! frozen_on "$1"; }
silent() { ! on "$1" hactl-workload --query "$IP:7000" --timeout 2000 >/dev/null 2>&1; }
check "p1 frozen on node2" frozen_on node2
check "p1 silent" silent node1
audit_start --frozen-too p1
trap 'rc=$?; kill $AUDIT_PID 2>/dev/null; rm -f "$AUDIT_LOG"; (exit $rc); cleanup_on_exit' EXIT

lc kill node2
check "node2 fenced" wait_for 60 fenced bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = fenced ]"
check "p1 recovered paused" wait_for 90 paused bash -c "[ \"\$($LC exec node1 -- hactl show p1 --json | jq -r '.state + \" \" + (.paused|tostring)')\" = 'paused true' ]"
node=$(guest_field node1 p1 node)
check "p1 owned by a survivor ($node)" bash -c "[ $node = node1 ] || [ $node = node3 ]"
check "p1 frozen on $node" frozen_on "$node"
check "p1 silent on $node" silent node1
check "p1 restored from its snapshot ($(guest_field node1 p1 note))" \
	bash -c "$LC exec node1 -- hactl show p1 --json | jq -r .note | grep -q 'restored from snapshot generation'"
audit_stop
check "audit: never two copies, frozen ones counted" [ ! -s "$AUDIT_LOG" ]
[ -s "$AUDIT_LOG" ] && cat "$AUDIT_LOG"

check "resume p1" on node3 hactl resume p1
check "p1 answers again" wait_for 30 answer workload_json node1 $IP
check "the snapshot's instance (same boot id)" [ "$(workload_json node1 $IP | boot_of)" = "$boot" ]
check "p1 no longer frozen on $node" thawed_on "$node"

T_DONE=1
finish
