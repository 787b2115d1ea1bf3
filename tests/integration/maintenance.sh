#!/bin/bash
# A maintenance window as an operator runs it: evacuate a host (its guests
# move live), shut it down cleanly, start it again, take it out of
# maintenance with --return (the evacuated guests come back live). The host
# is never fenced: it ran no guest when it went down, so the leader marks it
# down (an event says so) and it rejoins as it is. Then the contrast: a host
# that runs a guest and is killed is fenced as before.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

write_def "$LC_SHARED/m1.conf" m1 container 10.213.1.71
write_def "$LC_SHARED/m2.conf" m2 container 10.213.1.72
for g in m1 m2; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on node2" on node1 hactl start $g --node node2
done
check "m1 answers" wait_for 30 answer workload_json node1 10.213.1.71
check "m2 answers" wait_for 30 answer workload_json node1 10.213.1.72
b1=$(workload_json node1 10.213.1.71 | boot_of)
b2=$(workload_json node1 10.213.1.72 | boot_of)

out=$(on node1 hactl evacuate node2 2>&1); rc=$?
log "$out"
check "evacuate node2" [ $rc = 0 ]
for g in m1 m2; do
	check "$g left node2" [ "$(guest_field node1 $g node)" != node2 ]
done

# the patch window: node2 shut down cleanly, then started again
lc stop node2
check "node2 seen down" wait_for 30 down bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" != online ]"
check "the leader says node2 is down, not fenced" wait_for 15 ev bash -c \
	"$LC exec node1 -- hactl events | grep -q 'node2 lost while it ran no guest (maintenance): marked down, not fenced'"
sleep 7 # past the self-fence timeout (5 s): nothing more happens
j=$(hs node1)
check "node2 not fenced" [ "$(jq -r '.nodes[] | select(.name=="node2") | .state' <<<"$j")" != fenced ]
check "no fencing attempt on node2" [ "$(jq -r '.nodes[] | select(.name=="node2") | .fence_attempts' <<<"$j")" = 0 ]
check "no fencing event for node2" bash -c "! $LC exec node1 -- hactl events | grep -E 'node2 lost: (fencing|waiting)|node node2 fenced'"
lc start node2
check "node2 back (in maintenance)" wait_for 40 back bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = maintenance ]"

out=$(on node3 hactl maintenance off node2 --return 2>&1); rc=$?
log "$out"
check "maintenance off --return" [ $rc = 0 ]
check "two guests returned" grep -q "node2: 2 guests returned, 0 failed" <<<"$out"
for g in m1 m2; do
	check "$g back on node2" [ "$(guest_field node1 $g node)" = node2 ]
done
check "m1 the same instance (moved live)" [ "$(workload_json node1 10.213.1.71 | boot_of)" = "$b1" ]
check "m2 the same instance (moved live)" [ "$(workload_json node1 10.213.1.72 | boot_of)" = "$b2" ]
out=$(on node3 hactl maintenance off node2 --return 2>&1)
check "a second --return has nothing to do" grep -q "node2: 0 guests returned" <<<"$out"
out=$(on node3 hactl maintenance on node2 --return 2>&1); rc=$?
check "--return with 'on' is a usage error" [ $rc = 2 ]

# the contrast: a host that runs a guest is fenced when it dies
lc kill node2
check "node2, running m1 and m2, is fenced" wait_for 30 fenced bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node2\") | .state')\" = fenced ]"
check "m1 answers again" wait_for 60 answer workload_json node1 10.213.1.71
check "daemons alive" daemons_alive node1 node3

T_DONE=1
finish
