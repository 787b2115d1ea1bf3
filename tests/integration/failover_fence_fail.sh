#!/bin/bash
# The fence agent fails: no recovery, an alarm in hactl status, retries;
# the agent is fixed: fencing is confirmed and recovery proceeds. Uses
# Debian's fence_dummy (type=fail, then type=file), and hactl fence NODE.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

command -v fence_dummy >/dev/null || { echo "skipped: fence_dummy (fence-agents) missing"; exit 77; }
need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

fence_conf() { # fence_conf TYPE [TIMEOUT [LINE]]: every host's fence.conf uses fence_dummy
	for k in 1 2 3; do
		cat >"${HACTL_LC_DIR:-/run/hactl-lc}/node$k/etc/hactl/fence.conf" <<EOC
[defaults]
method = agent
timeout = ${2:-10}
[device dummy]
agent = fence_dummy
type = $1
status_file = /srv/hactl/fence_dummy.status
${3:-}
[node node1]
level1 = dummy
[node node2]
level1 = dummy
[node node3]
level1 = dummy
EOC
	done
}
fence_conf fail
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.61
check "create" on node1 hactl create /srv/hactl/c1.conf
check "start on node2" on node1 hactl start c1 --node node2
check "answers" wait_for 30 answer workload_json node1 10.213.1.61
check "snapshot" on node1 hactl snapshot c1

audit_start c1
lc kill node2
# each attempt ends at the device's 10 s time-out (fence_dummy type=fail
# keeps polling): the first alarm comes after the loss, the token and one
# such attempt; the bound leaves room for a loaded machine
check "alarm: fencing failed" wait_for 60 alarm bash -c "$LC exec node3 -- hactl status --json | jq -r '.alarms[]' | grep -q 'fencing of node2 failed'"
# the same coordinator as above: the alarm lasts while fencing keeps
# failing, but another coordinator may learn of it a moment later
check "human status shows the alarm" bash -c "$LC exec node3 -- hactl status | grep -q '^ALARM: .*fencing of node2 failed'"
check "node2 not fenced" [ "$(node_state_on node1 node2)" = offline ]
sleep 3
check "no recovery without fencing" bash -c "! $LC exec node1 -- hactl-workload --query 10.213.1.61:7000"
check "guest still owned by node2" [ "$(guest_field node1 c1 node)" = node2 ]
check "retries counted" [ "$(jq_on node1 '.nodes[] | select(.name=="node2") | .fence_attempts')" -ge 2 ]

fence_conf file
t0=$(now_ms)
check "recovery proceeds once the agent works" wait_for 60 answer workload_json node1 10.213.1.61
log "recovered $(( $(now_ms) - t0 )) ms after the fix (next retry of the backoff)"
check "node2 fenced" [ "$(node_state_on node1 node2)" = fenced ]
check "alarm cleared" [ "$(jq_on node1 '.alarms | length')" = 0 ]

# manual fencing of a live node, confirmed; the device waits 20 s first
# (the fence agents' own delay option): hactl waits for the verdict (it
# used to give up after 15 s while the fencing went on)
fence_conf file 60 "delay = 20"
t0=$(now_ms)
out=$(on node1 hactl fence node3 2>&1); rc=$?
took=$(( $(now_ms) - t0 ))
log "hactl fence node3 took $took ms: $out"
check "hactl fence node3 (a 20 s device)" [ $rc = 0 ]
check "says so" grep -q "node3 fenced" <<<"$out"
check "it waited out the device's delay" [ $took -ge 20000 ]
out=$(on node1 hactl fence node1 2>&1); rc=$?
check "a node does not fence itself" grep -q "does not fence itself" <<<"$out"
out=$(on node1 hactl fence nodeX 2>&1); rc=$?
check "unknown node: exit 5" [ $rc = 5 ]
audit_stop
check "audit: never two copies" [ ! -s "$AUDIT_LOG" ]
rm -f "$AUDIT_LOG"

T_DONE=1
finish
