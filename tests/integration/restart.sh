#!/bin/bash
# Restart one coordinator, then every coordinator, then whole hosts: the
# replicated state survives each.
. "$(dirname "$0")/lib.sh"

start_cluster --nodes 3
check "quorate" wait_for 20 agree agree_view node1 node2 node3
check "change 1" on node1 hactl maintenance on node2
check "change 2" on node1 hactl maintenance on node3
seq0=$(jq_on node1 .seq)

lc restart node2 coordinator
check "node2 coordinator back, agrees" wait_for 20 agree agree_view node1 node2 node3
check "node2 kept seq" [ "$(jq_on node2 .seq)" = "$seq0" ]
check "node2 agent re-registered" wait_for 10 agent daemons_alive node2

for n in node1 node2 node3; do lc restart $n coordinator; done
check "all coordinators back, agree" wait_for 20 agree agree_view node1 node2 node3
check "seq kept across restarting all" [ "$(jq_on node3 .seq)" = "$seq0" ]
check "maintenance kept" [ "$(node_state_on node1 node3)" = maintenance ]

# the whole cluster down and up again: state from each host's disk
for n in node1 node2 node3; do lc stop $n; done
for n in node1 node2 node3; do lc start $n; done
check "cluster back" wait_for 30 agree agree_view node1 node2 node3
# stopping the hosts one by one lets the survivors fence the first ones
# (commits of their own): the state is kept and only grows
check "seq kept across a full restart" [ "$(jq_on node2 .seq)" -ge "$seq0" ]
check "node2 still in maintenance" [ "$(node_state_on node2 node2)" = maintenance ]
check "agents back everywhere" wait_for 10 agents bash -c "for n in node1 node2 node3; do [ \"\$($LC exec \$n -- hactl status --json | jq -r '.nodes[] | select(.local) | .agent')\" = true ] || exit 1; done"

T_DONE=1
finish
