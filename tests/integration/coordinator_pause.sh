#!/bin/bash
# A coordinator stopped (SIGSTOP) for longer than its agent waits for an
# answer, then continued: its agent self-fences its guests (no quorate
# answer for half the self-fence timeout), and once the coordinator answers
# again it must run them again and keep them running. Found by the fault
# campaign (seed 1, step 57): a call that timed out left its answer to come
# later, every later call read the answer of the one before, and the agent
# saw no quorum and self-fenced again every few seconds for ten minutes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
export HACTL_LC_FENCE=watchdog HACTL_LC_SELF_FENCE_MS=5000
LC_DIR=${HACTL_LC_DIR:-/run/hactl-lc}
alog=$LC_DIR/node2/log/ha-agent.log

start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.61
check "create" on node1 hactl create /srv/hactl/c1.conf
check "start on node2" on node1 hactl start c1 --node node2
check "answers" wait_for 30 answer workload_json node1 10.213.1.61

# 4 s: longer than the agent's call timeout (2 s) and its self-fence
# grace (half of 5 s)
lc signal node2 coordinator STOP
sleep 4
lc signal node2 coordinator CONT
t0=$(now_ms)
check "node2's agent self-fenced while its coordinator was stopped" \
	wait_for 10 fenced grep -q "killing every guest here (self-fence)" "$alog"
check "c1 answers again" wait_for 40 back workload_json node1 10.213.1.61
log "c1 answering again $(($(now_ms) - t0)) ms after the coordinator went on"
n0=$(grep -c "killing every guest here (self-fence)" "$alog")
# the agent keeps quorum from now on: no other self-fence, c1 keeps answering
misses=0
for _ in $(seq 1 20); do
	sleep 1
	workload_json node1 10.213.1.61 >/dev/null 2>&1 || misses=$((misses + 1))
done
n1=$(grep -c "killing every guest here (self-fence)" "$alog")
log "self-fences of node2's agent: $n0 by the time c1 answered, $n1 20 s later; $misses of 20 queries unanswered"
check "no further self-fence once the coordinator answers" [ "$n1" = "$n0" ]
check "c1 kept answering" [ "$misses" -le 1 ]
check "c1 runs once" wait_for 20 once bash -c "$(declare -f copies_of); [ \"\$(copies_of c1)\" = 1 ]"

T_DONE=1
finish
