#!/bin/bash
# 3 hosts come up quorate with exactly one leader and agree on the state;
# hactl's errors and exit codes; a committed change reaches every node.
. "$(dirname "$0")/lib.sh"

start_cluster --nodes 3

check "all three quorate" wait_for 20 quorate \
	bash -c "for n in node1 node2 node3; do [ \"\$($LC exec \$n -- hactl status --json | jq -r .quorate)\" = true ] || exit 1; done"
check "all agree on quorate, leader and seq" wait_for 10 agree agree_view node1 node2 node3
leader=$(jq_on node1 .leader)
check "leader is node1 (lowest id)" [ "$leader" = node1 ]
check "exactly one node flagged leader" [ "$(jq_on node2 '[.nodes[] | select(.leader)] | length')" = 1 ]
check "three nodes, all online" [ "$(jq_on node3 '[.nodes[] | select(.state=="online")] | length')" = 3 ]
check "agents registered facts everywhere" wait_for 10 facts \
	bash -c "[ \"\$($LC exec node2 -- hactl status --json | jq '[.nodes[] | select(.agent and .facts.cpus > 0)] | length')\" = 3 ]"
check "usage reported" wait_for 10 usage \
	bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq '[.nodes[] | select(.usage.mem_used_kib > 0)] | length')\" = 3 ]"
check "guests is an empty list" [ "$(jq_on node1 '.guests | length')" = 0 ]
check "nodes --json lists 3" [ "$(on node1 hactl nodes --json | jq length)" = 3 ]
check "nodes NODE --json" [ "$(on node1 hactl nodes node2 --json | jq -r .name)" = node2 ]
check "guests --json" [ "$(on node1 hactl guests --json | jq length)" = 0 ]
check "human status names the leader" bash -c "$LC exec node2 -- hactl status | grep -q 'leader node1'"

# errors
out=$(on node1 hactl nodes nodeX 2>&1); rc=$?
check "unknown node: exit 5" [ $rc = 5 ]
check "unknown node: message" grep -q "unknown node 'nodeX'" <<<"$out"
out=$(on node1 hactl frobnicate 2>&1); rc=$?
check "unknown command: exit 2" [ $rc = 2 ]
check "unknown command: message" grep -q "unknown command 'frobnicate'" <<<"$out"
out=$(on node1 hactl status --bogus 2>&1); rc=$?
check "unknown option: exit 2" [ $rc = 2 ]
out=$(on node1 hactl maintenance sideways node2 2>&1); rc=$?
check "bad maintenance argument: exit 2" [ $rc = 2 ]
out=$(on node1 hactl maintenance on nodeX 2>&1); rc=$?
check "maintenance on unknown node: exit 5" [ $rc = 5 ]
out=$(on node1 setpriv --reuid=65534 --regid=65534 --clear-groups "$HACTL_BIN_DIR/hactl" status 2>&1); rc=$?
check "unprivileged user refused: exit 3" [ $rc = 3 ]
check "unprivileged user: says why" grep -q "permission denied" <<<"$out"
out=$("$HACTL_BIN_DIR/hactl" status 2>&1); rc=$?  # root namespace: no daemon
check "no coordinator: exit 3" [ $rc = 3 ]
check "no coordinator: says so" grep -q "cannot connect to ha-coordinator" <<<"$out"

# a committed change is seen by all, from a non-leader origin
seq0=$(jq_on node1 .seq)
check "maintenance on node2 from node3" on node3 hactl maintenance on node2
for n in node1 node2 node3; do
	check "$n sees node2 in maintenance" wait_for 5 maint \
		bash -c "[ \"\$($LC exec $n -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = maintenance ]"
done
check "seq advanced by one" [ "$(jq_on node2 .seq)" = $((seq0 + 1)) ]
out=$(on node2 hactl maintenance on node2 2>&1); rc=$?
check "repeated change refused: exit 1" [ $rc = 1 ]
check "repeated change: message" grep -q "already in maintenance" <<<"$out"
check "maintenance off (json)" [ "$(on node1 hactl maintenance off node2 --json | jq -r .ok)" = true ]
check "all agree after changes" wait_for 5 agree agree_view node1 node2 node3

T_DONE=1
finish
