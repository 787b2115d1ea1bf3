#!/bin/bash
# Fencing safe by default: a cluster with no fence.conf (method watchdog)
# and no armed watchdog on any host. A host dies: the leader cannot confirm
# it off, so its guest is NOT restarted elsewhere, however long it waits;
# `hactl status` names the host and why. The operator, who has made sure
# the host is off, runs `hactl fence --confirm`: only then is the guest
# recovered, and `hactl events` records it. Never two copies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
export HACTL_LC_FENCE=none HACTL_LC_SELF_FENCE_MS=5000
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3
check "no fence.conf on node1" bash -c "! $LC exec node1 -- test -e /etc/hactl/fence.conf"
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.61
check "create" on node1 hactl create /srv/hactl/c1.conf
check "start on node2" on node1 hactl start c1 --node node2
check "answers" wait_for 30 answer workload_json node1 10.213.1.61

unconfirmed() {
	jq_on node1 '.alarms[]' | grep -q "node2 is lost and cannot be confirmed off: no fence device (method watchdog) and its agent reported no armed watchdog"
}

audit_start c1
t0=$(now_ms)
lc kill node2
check "alarm names node2 and why" wait_for 20 alarm unconfirmed
check "alarm in human status" bash -c "$LC exec node3 -- hactl status | grep -q 'ALARM: .*node2 is lost and cannot be confirmed off.*hactl fence --confirm node2'"
check "fence state unconfirmed" [ "$(jq_on node3 '.nodes[] | select(.name=="node2") | .fence_state')" = unconfirmed ]
# Twice the self-fence timeout past the loss: a deadline alone would have
# let the leader restart c1 by now. Waiting longer only makes this stronger.
while [ $(($(now_ms) - t0)) -lt 10000 ]; do sleep 0.5; done
check "no recovery without a confirmation: owner still node2" [ "$(guest_field node1 c1 node)" = node2 ]
check "node2 not fenced" [ "$(node_state_on node1 node2)" = offline ]
check "c1 not running anywhere" [ "$(copies_of c1)" = 0 ]

out=$(on node1 hactl fence --confirm node3 2>&1); rc=$?
check "confirming a member is refused" [ $rc != 0 ]
check "... and says why" grep -q "node 'node3' is in the membership: it is not off" <<<"$out"

check "hactl fence --confirm node2" on node3 hactl fence --confirm node2
check "c1 recovered after the confirmation" wait_for 60 answer workload_json node1 10.213.1.61
where=$(guest_field node1 c1 node)
check "c1 on a survivor ($where)" bash -c "[ '$where' = node1 ] || [ '$where' = node3 ]"
check "node2 shown fenced" [ "$(node_state_on node1 node2)" = fenced ]
check "events: the operator's confirmation" bash -c "$LC exec node3 -- hactl events | grep -q 'operator confirmed node2 off'"
check "events: fenced (confirmed) before the recovery" bash -c "$LC exec node1 -- hactl events | grep -e 'node node2 fenced (confirmed)' -e 'recover' | head -1 | grep -q 'fenced (confirmed)'"
check "alarm gone" bash -c "! $LC exec node1 -- hactl status --json | jq -r '.alarms[]' | grep -q 'node2 is lost'"

lc start node2
check "node2 rejoins, unfenced" wait_for 40 online bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = online ]"
check "c1 stays on $where" [ "$(guest_field node2 c1 node)" = "$where" ]
audit_stop
check "audit: never two copies" [ ! -s "$AUDIT_LOG" ]
[ -s "$AUDIT_LOG" ] && cat "$AUDIT_LOG"
rm -f "$AUDIT_LOG"

T_DONE=1
finish
