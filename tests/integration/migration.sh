#!/bin/bash
# Live migration as a transaction, both guest types: the workload's counter
# continues (no restart) on the same IP; failures before the commit
# (--cancel, destination host killed, link cut) leave the guest running on
# the source and nothing on the destination; evacuate moves 4 guests and
# leaves the node in maintenance; a container that cannot meet
# --max-downtime by stop-and-copy is refused before it starts. The streams
# run TLS with the cluster key (deploy/local-cluster makes one): the report
# names the cipher and the stream's byte counts, and a destination with
# another key, or none, fails the migration before the commit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/failover_lib.sh"

need_templates
need_criu
start_cluster --nodes 3 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2 node3

migrate_ok() { # migrate_ok NAME IP DST
	local name=$1 ip=$2 dst=$3 j b0 c0 out
	j=$(workload_json node1 "$ip"); b0=$(boot_of <<<"$j"); c0=$(counter_of <<<"$j")
	out=$(on node1 hactl migrate "$name" --to "$dst" --json); rc=$?
	check "migrate $name to $dst" [ $rc = 0 ]
	log "report: $(jq -c . <<<"$out" 2>/dev/null)"
	check "$name committed" [ "$(jq -r .state <<<"$out")" = committed ]
	check "$name: stream encrypted ($(jq -r .cipher <<<"$out"))" \
		[ "$(jq -r .cipher <<<"$out")" = "TLS1.3 AES-128-GCM" ]
	check "$name: stream counters ($(jq -r '"\(.stream_sent) sent, \(.stream_received) received"' <<<"$out"))" \
		[ "$(jq -r '.stream_sent > 0 and .stream_received > 0 and .stream_sent >= .bytes' <<<"$out")" = true ]
	check "$name now on $dst" [ "$(guest_field node3 "$name" node)" = "$dst" ]
	check "$name answers on its IP" wait_for 20 answer workload_json node3 "$ip"
	j=$(workload_json node3 "$ip")
	check "$name same instance (boot_id)" [ "$(boot_of <<<"$j")" = "$b0" ]
	check "$name counter continued ($c0 -> $(counter_of <<<"$j"))" [ "$(counter_of <<<"$j")" -ge "$c0" ]
	check "$name: one copy" [ "$(copies_of "$name")" = 1 ]
}

write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.81
GUEST_MEM=128M write_def "$LC_SHARED/d1.conf" d1 domain 10.213.1.82
for g in c1 d1; do
	check "create $g" on node1 hactl create /srv/hactl/$g.conf
	check "start $g on node1" on node1 hactl start $g --node node1
done
check "c1 answers" wait_for 30 answer workload_json node2 10.213.1.81
check "d1 answers" wait_for 60 answer workload_json node2 10.213.1.82
audit_start c1 e1 e2 e3  # domains pause in QEMU: not visible in cgroups

migrate_ok c1 10.213.1.81 node2
migrate_ok d1 10.213.1.82 node2
migrate_ok c1 10.213.1.81 node3
# back to back: when hactl migrate returns, the guest runs at the
# destination under its new generation, and the next move can start
out=$(on node1 hactl migrate c1 --to node1 2>&1); rc=$?
out2=$(on node1 hactl migrate c1 --to node3 2>&1); rc2=$?
log "back to back: $out | $out2"
check "two migrations back to back (node3 -> node1 -> node3)" [ $rc = 0 ] && [ $rc2 = 0 ]
check "c1 on node3 again" [ "$(guest_field node1 c1 node)" = node3 ]

# a destination with another cluster key, then with none: refused before
# the commit, the guest runs on at the source, nothing on the destination
LC_HOSTS=${HACTL_LC_DIR:-/run/hactl-lc}
mig_refused() { # mig_refused WHAT PATTERN: c1 from node3 to node2 fails so
	local what=$1 pattern=$2 b0 out rc
	b0=$(workload_json node1 10.213.1.81 | boot_of)
	out=$(on node1 hactl migrate c1 --to node2 --timeout 120 2>&1); rc=$?
	log "$what: $out"
	check "$what: migration fails" [ $rc != 0 ]
	check "$what: says why" grep -q -- "$pattern" <<<"$out"
	check "$what: c1 still runs on node3" [ "$(guest_field node1 c1 node) $(guest_field node1 c1 state)" = "node3 running" ]
	check "$what: same instance" [ "$(workload_json node1 10.213.1.81 | boot_of)" = "$b0" ]
	check "$what: nothing on node2" wait_for 20 clean bash -c "[ -z \"\$(find /sys/fs/cgroup/*/hactl-lc/node2/c1 \( -name cgroup.procs -o -name tasks \) -exec cat {} + 2>/dev/null)\" ]"
	check "$what: c1 answers" wait_for 20 answer workload_json node1 10.213.1.81
}
cp -p "$LC_HOSTS/node2/etc/hactl/cluster.key" "$LC_HOSTS/node2-cluster.key"
(umask 077 && head -c 32 /dev/urandom >"$LC_HOSTS/node2/etc/hactl/cluster.key")
mig_refused "another key on node2" "another cluster key"
rm -f "$LC_HOSTS/node2/etc/hactl/cluster.key"
mig_refused "no key on node2" "cluster.key: No such file"
cp -p "$LC_HOSTS/node2-cluster.key" "$LC_HOSTS/node2/etc/hactl/cluster.key"
rm -f "$LC_HOSTS/node2-cluster.key"

# errors and refusals, nothing changed
out=$(on node1 hactl migrate c1 --to node3 2>&1); rc=$?
check "migrate to where it runs: refused" grep -q "already runs on node3" <<<"$out"
out=$(on node1 hactl migrate c1 --to nodeX 2>&1); rc=$?
check "unknown node: exit 5" [ $rc = 5 ]
out=$(on node1 hactl migrate c1 --to node1 --transport rdma 2>&1); rc=$?
check "rdma without a device: refused" grep -q "no RDMA device" <<<"$out"
out=$(on node1 hactl migrate c1 --to node1 --max-downtime 5 2>&1); rc=$?
check "container over --max-downtime by stop-and-copy: refused" grep -q "refused: c1 would be down about" <<<"$out"
check "still on node3" [ "$(guest_field node1 c1 node)" = node3 ]

# --cancel during a slow transfer (bandwidth cap): stays on the source
b0=$(workload_json node1 10.213.1.82 | boot_of)
on node1 hactl migrate d1 --to node3 --bandwidth 2 --no-wait
sleep 2
check "cancel" on node1 hactl migrate --cancel d1
check "d1 still runs on node2 after cancel" wait_for 20 back bash -c "[ \"\$($LC exec node1 -- hactl show d1 --json | jq -r '.state + \" \" + .node')\" = 'running node2' ]"
check "d1 same instance after cancel" [ "$(workload_json node1 10.213.1.82 | boot_of)" = "$b0" ]
check "nothing left on node3" wait_for 20 clean bash -c "[ -z \"\$(find /sys/fs/cgroup/*/hactl-lc/node3/d1 \( -name cgroup.procs -o -name tasks \) -exec cat {} + 2>/dev/null)\" ]"

# the destination host dies during the transfer
on node1 hactl migrate d1 --to node3 --bandwidth 2 --no-wait
sleep 2
lc kill node3
check "d1 still runs on node2 after the destination died" wait_for 30 back bash -c "[ \"\$($LC exec node1 -- hactl show d1 --json | jq -r '.state + \" \" + .node + \" \" + .migration.state')\" != 'x' ] && [ \"\$($LC exec node1 -- hactl show d1 --json | jq -r .node)\" = node2 ] && $LC exec node1 -- hactl-workload --query 10.213.1.82:7000 >/dev/null"
check "d1 same instance" [ "$(workload_json node1 10.213.1.82 | boot_of)" = "$b0" ]
# The guest never stopped running on the source (pre-copy), so the check
# above may pass before the cluster saw node3 go. The abort's reason is
# whichever came first: the membership without node3, or the source's
# stream failing (the dead host's kernel resets the connection).
check "the transaction says why" wait_for 20 why bash -c "$LC exec node1 -- hactl events | grep -Eq 'migration .* of d1 aborted: (the destination left|migrate-send d1: 10.213.0.3:[0-9]+: )'"
# node3 comes back only after the others saw it go (a restart within the
# token timeout is not the case under test here)
not_online() { [ "$(node_state_on node1 "$1")" != online ]; }
check "node3 seen gone" wait_for 20 gone not_online node3
lc start node3
check "node3 back" wait_for 40 online bash -c "[ \"\$($LC exec node1 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node3\") | .state')\" = online ]"

# the link to the destination is cut during the transfer
on node1 hactl migrate d1 --to node1 --bandwidth 2 --no-wait
sleep 2
lc isolate node1
check "d1 still on node2 after the link cut" wait_for 30 back bash -c "[ \"\$($LC exec node2 -- hactl show d1 --json | jq -r .node)\" = node2 ] && $LC exec node2 -- hactl-workload --query 10.213.1.82:7000 >/dev/null"
# the majority fences the cut-off host (fence_hactl_lc powers it off)
check "node1 fenced by the majority" wait_for 30 fenced bash -c "[ \"\$($LC exec node2 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node1\") | .state')\" = fenced ]"
lc heal node1
lc start node1 >/dev/null
check "node1 back" wait_for 40 online bash -c "[ \"\$($LC exec node2 -- hactl status --json | jq -r '.nodes[] | select(.name==\"node1\") | .state')\" = online ]"

# evacuate a host with 4 guests
for k in 1 2 3; do
	write_def "$LC_SHARED/e$k.conf" e$k container 10.213.1.9$k
	on node1 hactl create /srv/hactl/e$k.conf >/dev/null
	on node1 hactl start e$k --node node2 >/dev/null
done
check "4 guests on node2" [ "$(on node1 hactl list --json | jq '[.[] | select(.node=="node2")] | length')" = 4 ]
out=$(on node1 hactl evacuate node2 --parallel 2 --timeout 300 2>&1); rc=$?
log "$out"
check "evacuate node2" [ $rc = 0 ]
check "nothing left on node2" [ "$(on node1 hactl list --json | jq '[.[] | select(.node=="node2")] | length')" = 0 ]
check "all 4 running" [ "$(on node1 hactl list --json | jq '[.[] | select(.state=="running")] | length')" -ge 5 ]
check "node2 in maintenance" [ "$(node_state_on node1 node2)" = maintenance ]
for k in 1 2 3; do
	check "e$k answers" wait_for 20 answer workload_json node1 10.213.1.9$k
done
# Quiet afterwards: the destinations' reports (several hosts now hold a
# migrated-in copy) no longer make the coordinators wake their agents,
# whose reports woke the others in turn, without end.
kicks() { local n s=0; for n in node1 node2 node3; do s=$((s + $(jq_on $n .agent_kicks))); done; echo $s; }
k0=$(kicks); sleep 5; k1=$(kicks)
check "no refresh storm after the migrations ($k0 -> $k1 agent kicks in 5 s)" [ $((k1 - k0)) -le 3 ]
check "maintenance off" on node1 hactl maintenance off node2
audit_stop
check "audit: never two copies" [ ! -s "$AUDIT_LOG" ]
[ -s "$AUDIT_LOG" ] && cat "$AUDIT_LOG"
rm -f "$AUDIT_LOG"

T_DONE=1
finish
