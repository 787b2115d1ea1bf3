#!/bin/bash
# The destination's agent dies during a live migration, after its copy is
# complete and before the cluster's decision: the copy (a paused QEMU, its
# memory, its run directory) was recorded before it was created, so the
# restarted agent finds it and discards it once the cluster has aborted the
# transaction; the guest runs on at the source.
# Before, the copy's definition was written only at the finish: a
# restarted agent never knew of it and the paused QEMU stayed for good.
. "$(dirname "$0")/lib.sh"

need_templates
# The destination's coordinator is stopped for the length of the transfer
# (about 25 s, below): its agent then sees no quorate answer and would kill
# every guest it holds, the incoming copy too, after half the self-fence
# timeout (docs/failover.md, "Agent"). A long self-fence timeout keeps the
# copy alive while it completes.
export HACTL_LC_SELF_FENCE_MS=180000
start_cluster --nodes 2
check "quorate" wait_for 20 agree agree_view node1 node2

LC_HOSTS=${HACTL_LC_DIR:-/run/hactl-lc}
procs_of() { # procs_of NODE NAME: processes in the guest's cgroups on NODE
	find /sys/fs/cgroup/*/hactl-lc/$1/$2 -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}
has_procs() { [ -n "$(procs_of "$1" "$2")" ]; }
no_procs() { [ -z "$(procs_of "$1" "$2")" ]; }

GUEST_MEM=256M WORKLOAD_MEM=32M write_def "$LC_SHARED/d1.conf" d1 domain 10.213.1.82
check "create d1" on node1 hactl create /srv/hactl/d1.conf
check "start d1 on node1" on node1 hactl start d1 --node node1
check "d1 answers" wait_for 60 answer workload_json node1 10.213.1.82
b0=$(workload_json node1 10.213.1.82 | boot_of)

# A transfer to node2 at 4 MiB/s (about 25 s). Once node2 receives, its
# coordinator is stopped (SIGSTOP), so that the cluster cannot commit: the
# destination ends with a complete copy, paused in QEMU, and its agent
# dies then.
on node1 hactl migrate d1 --to node2 --bandwidth 4 --no-wait
receiving() { grep -q "of d1: stream tcp" "$LC_HOSTS/node2/log/ha-agent.log"; }
check "node2 receives" wait_for 30 receiving receiving
incoming() { on node2 test -s /var/lib/hactl/guests/d1/incoming.conf; }
check "node2 recorded the incoming copy" wait_for 5 recorded incoming
coord2=$(cat "$LC_HOSTS/node2/pids/ha-coordinator.pid")
agent2=$(cat "$LC_HOSTS/node2/pids/ha-agent.pid")
kill -STOP "$coord2"
received() { grep -q "of d1: the driver's receive returned 0" "$LC_HOSTS/node2/log/ha-agent.log"; }
check "node2 received the whole copy" wait_for 120 received received
check "node2 holds it in a QEMU" has_procs node2 d1
incoming_pids=$(procs_of node2 d1)
kill -9 "$agent2"
kill -CONT "$coord2"
aborted() { $LC exec node1 -- hactl events 2>/dev/null | grep -q "migration .* of d1 aborted"; }
check "the cluster aborts the migration" wait_for 30 aborted aborted
check "d1 still runs on node1" wait_for 20 node1 bash -c "[ \"\$($LC exec node1 -- hactl show d1 --json | jq -r .node)\" = node1 ]"
check "the paused copy outlived its agent" [ "$(procs_of node2 d1)" = "$incoming_pids" ]

lc restart node2 agent >/dev/null
check "the restarted agent discards the copy (no process left)" wait_for 30 clean no_procs node2 d1
check "its record is gone" wait_for 10 unrecorded bash -c "! $LC exec node2 -- test -e /var/lib/hactl/guests/d1/incoming.conf"
check "its run directory is gone" wait_for 10 rundir bash -c "! $LC exec node2 -- test -d /var/lib/hactl/guests/d1"
same_instance() { [ "$(workload_json node1 10.213.1.82 | boot_of)" = "$b0" ]; }
check "d1 answers on node1, same instance" wait_for 20 answer same_instance

# a later migration to the same host works
out=$(on node1 hactl migrate d1 --to node2 --json); rc=$?
check "migrate d1 to node2 afterwards" [ $rc = 0 ] && [ "$(jq -r .state <<<"$out")" = committed ]
check "d1 answers on node2" wait_for 20 answer workload_json node2 10.213.1.82
check "same instance after the move" [ "$(workload_json node2 10.213.1.82 | boot_of)" = "$b0" ]
check "d1 recorded as running on node2" on node2 test -s /var/lib/hactl/guests/d1/definition.conf
check "no incoming record left" bash -c "! $LC exec node2 -- test -e /var/lib/hactl/guests/d1/incoming.conf"

T_DONE=1
finish
