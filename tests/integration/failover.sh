#!/bin/bash
# Host loss: the leader fences the host (fence agent, confirmed), then
# restarts its 2 containers and 1 domain on survivors from their newest
# good snapshots (the previous generation where the newest is corrupt);
# an audit of the hosts' cgroups finds no moment with two copies; the
# fenced host rejoins without disturbing them. Then the leader's own host
# dies: the new leader fences and recovers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

# failover points written by hand (no periodic snapshots): a failover
# restores them while they are at most 600 s old (failover_snapshot_age.sh
# tests the limit)
fo=("failover_snapshot_max_age = 600")
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.41 "[ha]" "priority = 10" "${fo[@]}"
write_def "$LC_SHARED/c2.conf" c2 container 10.213.1.42 "[ha]" "priority = 5" "${fo[@]}"
GUEST_MEM=128M write_def "$LC_SHARED/d1.conf" d1 domain 10.213.1.43 "[ha]" "priority = 1" "${fo[@]}"
for g in c1 c2 d1; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on node2" on node1 hactl start $g --node node2
done
for g in c1 c2 d1; do
	ip=10.213.1.4${g: -1}
	[ $g = d1 ] && ip=10.213.1.43
	[ $g = c2 ] && ip=10.213.1.42
	[ $g = c1 ] && ip=10.213.1.41
	check "$g answers" wait_for 60 answer workload_json node1 $ip
done
# two generations of c2; the newest gets corrupted after the kill
# counters read before the snapshots: each snapshot holds at least these
s_c1=$(workload_json node1 10.213.1.41 | counter_of)
b_c1=$(workload_json node1 10.213.1.41 | boot_of)
s_c2=$(workload_json node1 10.213.1.42 | counter_of)
s_d1=$(workload_json node1 10.213.1.43 | counter_of)
b_d1=$(workload_json node1 10.213.1.43 | boot_of)
check "snapshot c1" on node1 hactl snapshot c1 --failover-point
check "snapshot c2 (1)" on node1 hactl snapshot c2 --failover-point
check "snapshot d1" on node1 hactl snapshot d1 --failover-point
check "snapshot c2 (2)" on node1 hactl snapshot c2 --failover-point
gen_c2=$(guest_field node1 c2 snapshot.generation)
victim=$(find "$LC_SHARED/snapshots/c2/$(printf 'gen-%06d' "$gen_c2")/state" -type f -size +1k | head -1)
python3 - "$victim" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(64); b = f.read(1); f.seek(64); f.write(bytes([b[0] ^ 0x80]))
PY

audit_start c1 c2 d1
lc kill node2
check "c1 answers again" wait_for 60 answer workload_json node1 10.213.1.41
check "c2 answers again" wait_for 60 answer workload_json node1 10.213.1.42
check "d1 answers again" wait_for 90 answer workload_json node3 10.213.1.43
check "node2 shown fenced" [ "$(node_state_on node1 node2)" = fenced ]
for g in c1 c2 d1; do
	check "$g runs on a survivor" bash -c "n=\$($LC exec node3 -- hactl show $g --json | jq -r .node); [ \"\$n\" = node1 ] || [ \"\$n\" = node3 ]"
done
j=$(workload_json node1 10.213.1.41)
check "c1 counter >= its snapshot value ($s_c1)" [ "$(counter_of <<<"$j")" -ge "$s_c1" ]
check "c1 restored, not rebooted (same boot_id)" [ "$(boot_of <<<"$j")" = "$b_c1" ]
check "c2 counter >= its first snapshot ($s_c2)" [ "$(workload_json node1 10.213.1.42 | counter_of)" -ge "$s_c2" ]
check "c2 used the previous generation, and says so" bash -c "$LC exec node1 -- hactl show c2 --json | jq -r .note | grep -q 'generation $((gen_c2 - 1))'"
j=$(workload_json node1 10.213.1.43)
check "d1 counter >= its snapshot value ($s_d1)" [ "$(counter_of <<<"$j")" -ge "$s_d1" ]
check "lost interval reported" bash -c "$LC exec node1 -- hactl show c1 --json | jq -r .note | grep -q 'taken [0-9]* ms before'"
check "history shows fencing before recovery" bash -c "$LC exec node1 -- hactl events | grep -n -e 'node node2 fenced' -e 'recover' | head -2 | tail -1 | grep -q recover"

# the fenced host comes back: unfenced, guests undisturbed
b_now=$(workload_json node1 10.213.1.41 | boot_of)
lc start node2
check "node2 back online" wait_for 40 online bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = online ]"
sleep 3
check "c1 undisturbed by the rejoin" [ "$(workload_json node1 10.213.1.41 | boot_of)" = "$b_now" ]

# the leader's host dies: the new leader fences and recovers
leader=$(jq_on node3 .leader)
owner=$(guest_field node3 c1 node)
if [ "$owner" != "$leader" ]; then
	check "move c1 to the leader for this part" bash -c "$LC exec node3 -- hactl stop c1 >/dev/null && $LC exec node3 -- hactl restore c1 --node $leader >/dev/null"
	check "c1 answers on $leader" wait_for 60 answer workload_json node3 10.213.1.41
fi
check "snapshot c1 on the leader's host" on node3 hactl snapshot c1 --failover-point
lc kill "$leader"
survivor=node3
[ "$leader" = node3 ] && survivor=node2
check "a new leader" wait_for 20 newleader bash -c "l=\$($LC exec $survivor -- hactl status --json | jq -r .leader); [ -n \"\$l\" ] && [ \"\$l\" != null ] && [ \"\$l\" != $leader ]"
check "c1 recovered by the new leader" wait_for 60 answer workload_json $survivor 10.213.1.41
check "the old leader is fenced" [ "$(node_state_on $survivor "$leader")" = fenced ]
audit_stop
check "audit: never two copies" [ ! -s "$AUDIT_LOG" ]
[ -s "$AUDIT_LOG" ] && cat "$AUDIT_LOG"
rm -f "$AUDIT_LOG"

T_DONE=1
finish
