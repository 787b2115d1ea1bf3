#!/bin/bash
# An evacuation is the leader's job, not hactl's: `hactl evacuate node2` is
# killed (SIGKILL) as soon as the leader has started the job, and the job
# goes on to its end: both guests leave node2, live (the same instances),
# and `hactl jobs` shows the job done. Before jobs, hactl drove the waves
# itself and an evacuation died with it.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

write_def "$LC_SHARED/e1.conf" e1 container 10.213.1.91
write_def "$LC_SHARED/e2.conf" e2 container 10.213.1.92
for g in e1 e2; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on node2" on node1 hactl start $g --node node2
done
check "e1 answers" wait_for 30 answer workload_json node1 10.213.1.91
check "e2 answers" wait_for 30 answer workload_json node1 10.213.1.92
b1=$(workload_json node1 10.213.1.91 | boot_of)
b2=$(workload_json node1 10.213.1.92 | boot_of)

evac_state() { # the state of node2's evacuation job, as node3 sees it ("" = none)
	on node3 hactl jobs --json 2>/dev/null |
		jq -r '[.[] | select(.kind == "evacuate" and .node == "node2")] | last | .state // ""'
}
job_started() { [ -n "$(evac_state)" ]; }
job_done() { [ "$(evac_state)" = done ]; }
hactl_gone() { ! pgrep -f 'hactl evacuate node2' >/dev/null; }

on node1 hactl evacuate node2 --parallel 1 >/dev/null 2>&1 &
evac_pid=$!
check "the leader has the evacuation job" wait_for 60 job job_started
state0=$(evac_state)
pkill -KILL -f 'hactl evacuate node2'
check "hactl evacuate killed" wait_for 10 gone hactl_gone
wait "$evac_pid" 2>/dev/null
log "job state when hactl was killed: $state0"
check "the job was not over when hactl died" [ "$state0" = running ]

check "the job goes on to done" wait_for 240 done job_done
for g in e1 e2; do
	check "$g left node2" [ "$(guest_field node1 $g node)" != node2 ]
	check "$g running" [ "$(guest_field node1 $g state)" = running ]
done
check "e1 the same instance (moved live)" [ "$(workload_json node1 10.213.1.91 | boot_of)" = "$b1" ]
check "e2 the same instance (moved live)" [ "$(workload_json node1 10.213.1.92 | boot_of)" = "$b2" ]
check "node2 stays in maintenance" [ "$(node_state_on node1 node2)" = maintenance ]
check "the job's moves are all done" [ "$(on node3 hactl jobs --json | jq -r '[.[] | select(.kind == "evacuate" and .node == "node2")] | last | [.moves[] | select(.state != "done")] | length')" = 0 ]

T_DONE=1
finish
