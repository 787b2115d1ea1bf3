#!/bin/bash
# Isolate a host whose nodes self-fence (method watchdog): it stops its own
# guests. The majority cannot confirm it off (a local cluster arms no
# watchdog), so it restarts nothing and raises an alarm, past the
# self-fence deadline too; the operator, who has checked that the host runs
# none of the guests, confirms it off (hactl fence --confirm) and the
# majority restarts them; heal: the host rejoins without disturbing them.
# Never two copies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
export HACTL_LC_FENCE=watchdog HACTL_LC_SELF_FENCE_MS=5000
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.51 "[ha]" "failover_snapshot_max_age = 600"
check "create" on node1 hactl create /srv/hactl/c1.conf
check "start on node3" on node1 hactl start c1 --node node3
check "answers" wait_for 30 answer workload_json node1 10.213.1.51
s=$(workload_json node1 10.213.1.51 | counter_of) # before: the snapshot holds more
check "snapshot" on node1 hactl snapshot c1 --failover-point

audit_start c1
t0=$(now_ms)
lc isolate node3
# copies_of runs outside: poll it here
stopped_at=""
for i in $(seq 1 150); do
	if [ "$(copies_of c1)" = 0 ]; then stopped_at=$(now_ms); break; fi
	sleep 0.1
done
check "isolated node3 stopped c1" [ -n "$stopped_at" ]
[ -n "$stopped_at" ] && log "c1 down on node3 $((stopped_at - t0)) ms after the isolation"
check "alarm: node3 cannot be confirmed off" wait_for 20 alarm bash -c "$LC exec node1 -- hactl status --json | jq -r '.alarms[]' | grep -q 'node3 is lost and cannot be confirmed off'"
# twice the self-fence timeout: the deadline alone no longer restarts it
while [ $(($(now_ms) - t0)) -lt 10000 ]; do sleep 0.5; done
check "no restart without a confirmation" [ "$(guest_field node1 c1 node)" = node3 ]
check "the operator confirms node3 off" on node1 hactl fence --confirm node3
check "majority restarts c1" wait_for 40 answer workload_json node1 10.213.1.51
back=$(now_ms)
log "c1 answers again $((back - t0)) ms after the isolation"
check "counter >= snapshot value" [ "$(workload_json node1 10.213.1.51 | counter_of)" -ge "$s" ]
check "node3 marked fenced (confirmed)" bash -c "$LC exec node1 -- hactl events | grep -q 'node node3 fenced (confirmed)'"
b=$(workload_json node1 10.213.1.51 | boot_of)
where=$(guest_field node1 c1 node)
lc heal node3
check "node3 rejoins" wait_for 40 online bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node3\") | .state')\" = online ]"
sleep 4
check "c1 undisturbed (same instance)" [ "$(workload_json node2 10.213.1.51 | boot_of)" = "$b" ]
check "c1 still on $where" [ "$(guest_field node3 c1 node)" = "$where" ]
check "node3 did not restart it" [ "$(copies_of c1)" = 1 ]
audit_stop
check "audit: never two copies" [ ! -s "$AUDIT_LOG" ]
[ -s "$AUDIT_LOG" ] && cat "$AUDIT_LOG"
rm -f "$AUDIT_LOG"

T_DONE=1
finish
