#!/bin/bash
# How far back a failover goes (docs/failover.md): three containers on
# node2, each with one snapshot, then node2 is killed.
#  - c1: its only snapshot is a failover point but older than its
#    failover_snapshot_max_age (5 s): it starts cold on a survivor (a new
#    process, started after the kill; its counter from 0), and the note and
#    the event say why;
#  - c2: the same snapshot kind within its max age (600 s): restored;
#  - c3: a manual snapshot, not marked, any age allowed: not a failover
#    point, so cold.
# `hactl show` said beforehand what each failover would do.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.81 "[ha]" "failover_snapshot_max_age = 5"
write_def "$LC_SHARED/c2.conf" c2 container 10.213.1.82 "[ha]" "failover_snapshot_max_age = 600"
write_def "$LC_SHARED/c3.conf" c3 container 10.213.1.83 "[ha]" "failover_snapshot_max_age = unlimited"
for g in c1 c2 c3; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on node2" on node1 hactl start $g --node node2
done
for g in 1 2 3; do
	check "c$g answers" wait_for 60 answer workload_json node1 10.213.1.8$g
done
check "no snapshot yet: show says cold" bash -c "$LC exec node1 -- hactl show c2 --json | jq -e '.failover.action == \"cold\" and .failover.reason == \"no snapshot\"'"
b_c1=$(workload_json node1 10.213.1.81 | boot_of)
s_c2=$(workload_json node1 10.213.1.82 | counter_of)
b_c2=$(workload_json node1 10.213.1.82 | boot_of)
b_c3=$(workload_json node1 10.213.1.83 | boot_of)
check "snapshot c1 --failover-point" on node1 hactl snapshot c1 --failover-point
check "snapshot c2 --failover-point" on node1 hactl snapshot c2 --failover-point
check "snapshot c3 (manual)" on node1 hactl snapshot c3
check "the manual snapshot is recorded as such" grep -q '^kind manual$' "$LC_SHARED/snapshots/c3/gen-000001/MANIFEST"
check "show: c2 would be restored" bash -c "$LC exec node1 -- hactl show c2 --json | jq -e '.failover.action == \"snapshot\" and .failover.generation == 1 and .failover.max_age_s == 600'"
check "show: c3 would start cold (manual)" bash -c "$LC exec node1 -- hactl show c3 | grep -q '^failover:   cold start: no usable failover snapshot; passed over: generation 1 (manual, not a failover point)'"
# c1's snapshot grows older than its 5 s: wait until show says so
check "show: c1 would start cold (too old)" wait_for 30 old bash -c "$LC exec node1 -- hactl show c1 | grep -q '^failover:   cold start: newest failover snapshot, generation 1 of .* s old (max 5 s)'"

t_kill=$(now_ms)
lc kill node2
for g in 1 2 3; do
	check "c$g answers again" wait_for 90 answer workload_json node1 10.213.1.8$g
done
j=$(workload_json node1 10.213.1.81)
t_now=$(now_ms)
check "c1 rebooted (new boot_id)" [ "$(boot_of <<<"$j")" != "$b_c1" ]
check "c1 is a process started after the kill" [ "$(jq -r .started_ms <<<"$j")" -ge "$t_kill" ]
# 10 ms of running per count: a fresh counter cannot exceed the time since the kill
check "c1's counter started from 0" [ "$(($(counter_of <<<"$j") * 10))" -le "$((t_now - t_kill + 10))" ]
check "c1's note says cold and why" wait_for 20 note bash -c "$LC exec node1 -- hactl show c1 --json | jq -r .note | grep -q 'cold start: newest failover snapshot, generation 1 of .*, is [0-9]* s old (max 5 s)'"
check "the event says c1 started cold and why" wait_for 20 event bash -c "$LC exec node1 -- hactl events | grep -q 'c1 on node[13]: cold start: newest failover snapshot, generation 1 of .*, is [0-9]* s old (max 5 s)'"
j=$(workload_json node1 10.213.1.82)
check "c2 restored (same boot_id)" [ "$(boot_of <<<"$j")" = "$b_c2" ]
check "c2 counter >= its snapshot value ($s_c2)" [ "$(counter_of <<<"$j")" -ge "$s_c2" ]
check "the event says which snapshot c2 came from" wait_for 20 event bash -c "$LC exec node1 -- hactl events | grep -q 'c2 on node[13]: restored from snapshot generation 1 taken [0-9]* ms before: snapshot generation 1 of .*, [0-9]* s old (max 600 s)'"
check "c3 rebooted (new boot_id)" [ "$(workload_json node1 10.213.1.83 | boot_of)" != "$b_c3" ]
check "c3's note: the manual snapshot is not a failover point" wait_for 20 note bash -c "$LC exec node1 -- hactl show c3 --json | jq -r .note | grep -q 'cold start: no usable failover snapshot; passed over: generation 1 (manual, not a failover point)'"

T_DONE=1
finish
