#!/bin/bash
# Isolate a host: it reports not quorate and refuses changes; the other two
# stay quorate and change the state; heal: it rejoins and converges.
. "$(dirname "$0")/lib.sh"

# node3 self-fences (no fence device would kill it: it has no guests)
export HACTL_LC_FENCE=watchdog
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

lc isolate node3
check "node3 not quorate" wait_for 15 noquorum bash -c "[ \"\$($LC exec node3 -- hactl status --json | jq -r .quorate)\" = false ]"
check "node3 has no leader" [ "$(jq_on node3 .leader)" = null ]
check "majority quorate" [ "$(jq_on node1 .quorate)" = true ] 
check "majority sees node3 offline" wait_for 10 off bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node3\") | .state')\" = offline ]"
out=$(on node3 hactl maintenance on node1 2>&1); rc=$?
check "change on the minority: exit 4" [ $rc = 4 ]
check "change on the minority: says not quorate" grep -q "not quorate" <<<"$out"
check "change on the majority" on node2 hactl maintenance on node1
check "majority agrees" wait_for 5 agree agree_view node1 node2
seq_major=$(jq_on node1 .seq)
check "minority unchanged" [ "$(jq_on node3 .seq)" != "$seq_major" ]

lc heal node3
check "node3 quorate again" wait_for 20 quorum bash -c "[ \"\$($LC exec node3 -- hactl status --json | jq -r .quorate)\" = true ]"
check "all agree after heal" wait_for 10 agree agree_view node1 node2 node3
check "node3 adopted the newer state" [ "$(jq_on node3 .seq)" -ge "$seq_major" ]
check "node3 agrees with node1" [ "$(jq_on node3 .seq)" = "$(jq_on node1 .seq)" ]
check "node3 sees node1 in maintenance" [ "$(node_state_on node3 node1)" = maintenance ]

T_DONE=1
finish
