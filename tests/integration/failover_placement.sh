#!/bin/bash
# Placement at failover comes from the engine, with the policy in force:
# the cluster is saved (`hactl balance --save`), node2 is killed, and the
# real recovery must place every guest of node2 where `hactl simulate` on
# the saved input (node2 offline, "run recover") says. The policy has an
# anti-affinity group (w1 may not join w2 on node1) and node groups
# (bound runs only in rackA = node1, node2). The coordinator's former rule,
# most free memory, put every guest on node1.
#
# Every host of the local cluster reads the one machine's CPU load: the
# policy leaves CPU out (cpu_weight = 0, cpu_threshold = 100), so nothing
# compared depends on it; memory is assigned from the definitions.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

HOSTS=${HACTL_LC_DIR:-/run/hactl-lc}
POLICY='[balance]
enabled = no
cpu_weight = 0
cpu_threshold = 100

[group rackA]
nodes = node1, node2
guests = bound

[group rackB]
nodes = node3

[anti-affinity web]
guests = w1, w2'
for n in node1 node2 node3; do
	mkdir -p "$HOSTS/$n/etc/hactl/policy.d"
	printf '%s\n' "$POLICY" >"$HOSTS/$n/etc/hactl/policy.d/10-test.conf.tmp"
	mv "$HOSTS/$n/etc/hactl/policy.d/10-test.conf.tmp" "$HOSTS/$n/etc/hactl/policy.d/10-test.conf"
done

# node1: w2; node3: fill (the most memory); node2: w1, bound, free
GUEST_MEM=128M write_def "$LC_SHARED/w2.conf" w2 container 10.213.1.61
GUEST_MEM=2G write_def "$LC_SHARED/fill.conf" fill container 10.213.1.62
GUEST_MEM=128M write_def "$LC_SHARED/w1.conf" w1 container 10.213.1.63 "[ha]" "priority = 5"
GUEST_MEM=256M write_def "$LC_SHARED/bound.conf" bound container 10.213.1.64 "[ha]" "restart = cold"
GUEST_MEM=192M write_def "$LC_SHARED/free.conf" free container 10.213.1.65
declare -A at=([w2]=node1 [fill]=node3 [w1]=node2 [bound]=node2 [free]=node2)
declare -A ip=([w2]=61 [fill]=62 [w1]=63 [bound]=64 [free]=65)
for g in w2 fill w1 bound free; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on ${at[$g]}" on node1 hactl start $g --node ${at[$g]}
done
for g in w2 fill w1 bound free; do
	check "$g answers" wait_for 60 answer workload_json node1 10.213.1.${ip[$g]}
done
check "the policy is in force everywhere" wait_for 10 policy bash -c \
	"for n in node1 node2 node3; do $LC exec \$n -- hactl balance --dry-run --json >/dev/null || exit 1; done"

# ---- the prediction: the saved cluster, node2 offline, run recover ----
check "--save" on node1 hactl balance --dry-run --save /srv/hactl/fp.sim
sed -i '/^run rebalance$/d' "$LC_SHARED/fp.sim"
printf 'set node node2 state=offline\nrun recover\n' >>"$LC_SHARED/fp.sim"
sim=$("$HACTL_BIN_DIR/hactl" simulate "$LC_SHARED/fp.sim" --json 2>&1); rc=$?
check "simulate the saved input" [ $rc = 0 ]
pred=$(jq -c '[.. | objects | select(.kind?=="place") | {(.guest): .to}] | add' <<<"$sim" 2>/dev/null)
log "predicted: $pred"
for g in w1 bound free; do
	check "simulate places $g" [ "$(jq -r ".$g // empty" <<<"$pred")" != "" ]
done
check "predicted: w1 not with w2 (anti-affinity)" [ "$(jq -r .w1 <<<"$pred")" != node1 ]
check "predicted: bound stays in rackA" [ "$(jq -r .bound <<<"$pred")" = node1 ]

# ---- the real recovery ----
lc kill node2
for g in w1 bound free; do
	check "$g answers again" wait_for 90 answer workload_json node1 10.213.1.${ip[$g]}
done
check "node2 shown fenced" [ "$(node_state_on node1 node2)" = fenced ]
for g in w1 bound free; do
	want=$(jq -r ".$g" <<<"$pred")
	got=$(guest_field node1 $g node)
	check "$g recovered on $got, as simulate said ($want)" [ "$got" = "$want" ]
done
check "w1 and w2 on distinct nodes" [ "$(guest_field node1 w1 node)" != "$(guest_field node1 w2 node)" ]
check "the recovery is in the events" bash -c "$LC exec node1 -- hactl events | grep -q 'recover.* w1->'"
rm -f "$LC_SHARED/fp.sim" "$LC_SHARED/fp.sim.policy"
check "daemons alive" daemons_alive node1 node3

T_DONE=1
finish
