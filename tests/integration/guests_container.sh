#!/bin/bash
# Containers on the cluster: create, start on every host, reachable from
# every host, agent restart, snapshot, destroy, restore elsewhere,
# corrupt snapshot refused, limits.
. "$(dirname "$0")/lib.sh"
GTYPE=container
GIP=10.213.1.10
. "$(dirname "$0")/guest_lib.sh"

# ---- limits: a container over its memory limit dies alone ----
GUEST_MEM=32M WORKLOAD_MEM=96M write_def "$LC_SHARED/hog.conf" hog container 10.213.1.11
GUEST_MEM=32M write_def "$LC_SHARED/calm.conf" calm container 10.213.1.12 "[guest]" "pids_limit = 16"
check "create hog" on node1 hactl create /srv/hactl/hog.conf
check "create calm" on node1 hactl create /srv/hactl/calm.conf
check "start calm" on node1 hactl start calm --node node1
on node1 hactl start hog --node node1 --timeout 20 >/dev/null 2>&1
check "hog killed by its memory limit" wait_for 20 hogdead bash -c "! $LC exec node2 -- hactl-workload --query 10.213.1.11:7000"
check "calm unharmed" workload_json node2 10.213.1.12
check "node1 still online" [ "$(node_state_on node2 node1)" = online ]

T_DONE=1
finish
