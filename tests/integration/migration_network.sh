#!/bin/bash
# The migration network ([migration] network, docs/migration.md): with
# HACTL_LC_MIG_NET=1 every host has a second link (mig0, 10.213.2.K/24) and
# the same `network = 10.213.2.0/24`. Each agent announces its own address
# in it; a container's live migration connects there (the report's
# address, the peers in both agents' logs), not to the ring0 address; with
# the destination's migration link cut the migration fails before the
# commit and the guest runs on at the source: the stream has no other way.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
export HACTL_LC_MIG_NET=1
start_cluster --nodes 2 --token 1000
check "quorate" wait_for 20 agree agree_view node1 node2

mig_addr_is() { # mig_addr_is NODE ADDRESS: as node1's status shows it
	[ "$(jq_on node1 ".nodes[] | select(.name==\"$1\") | .facts.migration_address")" = "$2" ]
}
for k in 1 2; do
	check "node$k announces 10.213.2.$k" wait_for 20 addr mig_addr_is node$k 10.213.2.$k
done

LOGS=${HACTL_LC_DIR:-/run/hactl-lc}
write_def "$LC_SHARED/c1.conf" c1 container 10.213.1.91
check "create c1" on node1 hactl create /srv/hactl/c1.conf
check "start c1 on node1" on node1 hactl start c1 --node node1
check "c1 answers" wait_for 30 answer workload_json node2 10.213.1.91

mig() { # mig DST SRC_K DST_K: c1 moves to DST over 10.213.2.*
	local dst=$1 sk=$2 dk=$3 out rc
	out=$(on node1 hactl migrate c1 --to "$dst" --json); rc=$?
	log "report: $(jq -c . <<<"$out" 2>/dev/null)"
	check "migrate c1 to $dst" [ $rc = 0 ]
	check "c1 committed" [ "$(jq -r .state <<<"$out")" = committed ]
	check "the source connected to 10.213.2.$dk ($(jq -r .address <<<"$out"))" \
		[ "$(jq -r .address <<<"$out")" = "10.213.2.$dk" ]
	check "$dst's agent: the source connected from 10.213.2.$sk" \
		grep -q "migration [0-9]* of c1: the source connected from 10.213.2.$sk:" \
		"$LOGS/$dst/log/ha-agent.log"
	check "node$sk's agent: connected to 10.213.2.$dk" \
		grep -q "migration [0-9]* of c1: connected to the destination at 10.213.2.$dk:" \
		"$LOGS/node$sk/log/ha-agent.log"
	check "c1 answers on $dst" wait_for 20 answer workload_json node1 10.213.1.91
}
mig node2 1 2
mig node1 2 1

# node2's migration link cut: its cluster link still works, but the
# stream must go over mig0, so the migration fails and c1 stays on node1
ip -n hlc-br link set mnode2 down
out=$(on node1 hactl migrate c1 --to node2 --timeout 120 2>&1); rc=$?
log "link cut: $out"
check "migration over a cut migration link fails" [ $rc != 0 ]
c1_on() { [ "$(guest_field node1 c1 node) $(guest_field node1 c1 state)" = "$1 running" ]; }
check "c1 still on node1, running" wait_for 20 running c1_on node1
check "c1 answers" wait_for 20 answer workload_json node1 10.213.1.91
ip -n hlc-br link set mnode2 up

T_DONE=1
finish
