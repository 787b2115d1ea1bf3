#!/bin/bash
# The restart policy of a guest that keeps stopping by itself (its command
# ends after 2 s): max_restart = 1 restart in place after a delay, then
# max_relocate = 1 start on another node (placed by the engine), then state
# error with an alarm in `hactl status`; it stays down; `hactl start`
# clears the error. Before the policy it was restarted every 0.5 s without
# end and never reached state error.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
start_cluster --nodes 3
check "quorate" wait_for 20 agree agree_view node1 node2 node3

cat >"$LC_SHARED/crashy.conf" <<'EOF'
[guest]
name = crashy
type = container
memory = 64M
command = /bin/sleep 2
[storage]
template = container
[ha]
restart = cold
max_restart = 1
max_relocate = 1
EOF
check "create crashy" on node1 hactl create /srv/hactl/crashy.conf
check "start crashy on node2" on node1 hactl start crashy --node node2
t0=$(now_ms)
# 2 s run, 1 s delay, 2 s run, relocation, 2 s run, 1 s delay, 2 s run
check "state error after one restart and one relocation" wait_for 60 error bash -c \
	"[ \"\$($LC exec node1 -- hactl show crashy --json | jq -r .state)\" = error ]"
log "error after $(( $(now_ms) - t0 )) ms"
j=$(on node1 hactl show crashy --json)
log "$(jq -c '{state,desired,node,restarts,relocations,restart_error,error}' <<<"$j")"
check "restart_error set" [ "$(jq -r .restart_error <<<"$j")" = true ]
check "one relocation" [ "$(jq -r .relocations <<<"$j")" = 1 ]
check "desired stopped" [ "$(jq -r .desired <<<"$j")" = stopped ]
check "relocated off node2" [ "$(jq -r .node <<<"$j")" != node2 ]
check "the error says why" grep -q "max_relocate 1" <<<"$(jq -r .error <<<"$j")"
check "alarm in hactl status" bash -c \
	"$LC exec node3 -- hactl status --json | jq -r '.alarms[]' | grep -q 'guest crashy is in state error'"
ev=$(on node1 hactl events)
check "the relocation is in the events" grep -q "relocate crashy to" <<<"$ev"
check "the error is in the events" grep -q "guest crashy in state error" <<<"$ev"
check "restarted a bounded number of times (2 starts per node)" \
	[ "$(grep -c "start crashy\|relocate crashy" <<<"$ev")" -le 3 ]
sleep 4
check "it stays down in state error" [ "$(guest_field node1 crashy state)" = error ]
check "no copy runs anywhere" [ "$(guest_field node1 crashy running_on)" = null ]

# ---- hactl start clears it ----
# (with a node: every host reads the machine's CPU load, which a start
# without one would weigh)
check "hactl start crashy" on node1 hactl start crashy --node node2
j=$(on node1 hactl show crashy --json)
check "error cleared" [ "$(jq -r .restart_error <<<"$j")" = false ]
check "relocations start over" [ "$(jq -r .relocations <<<"$j")" = 0 ]
check "alarm gone" bash -c \
	"! $LC exec node1 -- hactl status --json | jq -r '.alarms[]' | grep -q 'guest crashy'"
check "stop crashy" on node1 hactl stop crashy
check "daemons alive" daemons_alive node1 node2 node3

T_DONE=1
finish
