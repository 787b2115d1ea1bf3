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

# ---- limit counters (hactl show --limits): calm's pids_limit 16 ----
# 24 forks inside calm's pids cgroup: those past the limit are refused,
# and the cgroup counts them (pids.events max), as the report shows
cpid=$(on node1 sed -n 's/^pid=//p' /var/lib/hactl/guests/calm/pid)
refused=$(on node1 python3 - "$cpid" <<'PY'
import os, sys, time
path = [l.split(":")[2] for l in open(f"/proc/{sys.argv[1]}/cgroup").read().split("\n")
        if l.count(":") >= 2 and l.split(":")[1] == "pids"][0].strip()
with open(f"/sys/fs/cgroup/pids{path}/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
kids, refused = [], 0
for _ in range(24):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
print(refused)
PY
)
check "forks past calm's limit refused ($refused of 24)" [ "${refused:-0}" -gt 0 ]
check "the report counts them (.limits.pids_failcnt)" wait_for 20 "pids failures" \
	bash -c "[ \"\$($LC exec node2 -- hactl show calm --json | jq -r '.limits.pids_failcnt // 0')\" -ge $refused ]"
check "the report has the limit (.limits.pids_limit 16)" \
	[ "$(on node2 hactl show calm --json | jq -r .limits.pids_limit)" = 16 ]
out=$(on node2 hactl show calm --limits)
check "hactl show --limits: the processes row ($(grep -E '^ +processes' <<<"$out" | tr -s ' '))" \
	grep -qE "^ +processes +[0-9]+ +- +16 +[1-9][0-9]*\$" <<<"$out"
check "hactl show --limits: the memory row (limit 32 MiB)" \
	grep -qE '^ +memory +[0-9.]+ MiB +[0-9.]+ MiB +32.0 MiB +[0-9]+$' <<<"$out"
check "calm unharmed by the refused forks" workload_json node2 10.213.1.12

# ---- health checks: a failing one kills the guest, counted as a crash ----
# sick checks a port nothing listens on (its workload serves 7000); fine
# checks the workload's own port
GUEST_MEM=32M write_def "$LC_SHARED/sick.conf" sick container 10.213.1.13 "[ha]" \
	"check = tcp:7001" "check_interval = 1" "check_timeout = 1" "check_failures = 2" \
	"max_restart = 5"
GUEST_MEM=32M write_def "$LC_SHARED/fine.conf" fine container 10.213.1.14 "[ha]" \
	"check = tcp:7000" "check_interval = 1" "check_failures = 2"
check "create sick" on node1 hactl create /srv/hactl/sick.conf
check "create fine" on node1 hactl create /srv/hactl/fine.conf
check "start fine" on node1 hactl start fine --node node3
check "start sick" on node1 hactl start sick --node node2
check "sick killed by its health check and restarted in place (.restarts >= 1)" \
	wait_for 90 "sick restarted" bash -c \
	"[ \"\$($LC exec node1 -- hactl show sick --json | jq -r '.restarts // 0')\" -ge 1 ]"
# the restart's success clears the guest's error: the agent's log keeps why
alog=${HACTL_LC_DIR:-/run/hactl-lc}/node2/log/ha-agent.log
check "node2's agent says why it killed sick" grep -q \
	"sick: health check failed 2 times in a row: tcp:7001: connecting to 10.213.1.13" "$alog"
out=$(on node1 hactl show sick --json)
check "sick stays on node2 (restarts in place first)" [ "$(jq -r .node <<<"$out")" = node2 ]
check "fine: its check passes, never restarted" \
	[ "$(on node1 hactl show fine --json | jq -r '.restarts // 0')" = 0 ]
check "fine still answers" workload_json node1 10.213.1.14
check "stop sick" on node1 hactl stop sick
check "stop fine" on node1 hactl stop fine

T_DONE=1
finish
