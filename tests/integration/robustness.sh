#!/bin/bash
# Malformed envelopes and IPC requests are rejected, counted, and crash
# nothing; the cluster keeps working.
. "$(dirname "$0")/lib.sh"

start_cluster --nodes 3
check "quorate" wait_for 20 agree agree_view node1 node2 node3
rej0=$(jq_on node1 .rx_rejected)

check "IPC: every malformed request answered with an error" on node1 "$HA_TEST_BIN_DIR/ha-inject" ipc
check "CPG: malformed messages multicast" on node2 "$HA_TEST_BIN_DIR/ha-inject" cpg
sleep 1
for n in node1 node2 node3; do
	check "$n coordinator alive" daemons_alive $n
done
check "rejections counted on node1" [ "$(jq_on node1 .rx_rejected)" -gt "$rej0" ]
check "rejections counted on node3 (CPG)" [ "$(jq_on node3 .rx_rejected)" -gt 0 ]
check "forged sync state not adopted" [ "$(jq_on node1 .seq)" -lt 1000 ]
check "still agree" wait_for 10 agree agree_view node1 node2 node3
check "changes still work" on node3 hactl maintenance on node1
check "agree after change" wait_for 5 agree agree_view node1 node2 node3
# oversized and garbage command lines
out=$(on node1 hactl maintenance on "$(head -c 5000 /dev/zero | tr '\0' x)" 2>&1); rc=$?
check "absurd node name refused (exit 5)" [ $rc = 5 ]
check "coordinator alive after it" daemons_alive node1

T_DONE=1
finish
