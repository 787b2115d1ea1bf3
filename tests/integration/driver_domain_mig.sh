#!/bin/bash
# driver_domain_mig.sh - live migration of a domain between two "hosts"
# with the domain driver's migrate_send / migrate_recv / migrate_finish on
# real QEMUs (ha-driver-test migrate-send / migrate-recv).
#
# Two network namespaces A and B stand for the hosts, each with its own
# bridge hbr0 (the guests' taps) uplinked by a veth into a third namespace,
# the switch (bridge hmsw0); a fourth, the client C, queries the workload
# through the switch, so that it only answers once the switch has learned
# the guest's new port (QEMU's announce). The disk is one file both hosts
# open (the shared storage); run dirs and cgroups are per host.
#
#   1. A -> B, commit: the workload answers from B with the same boot id,
#      its counter continues, A's QEMU and tap are gone.
#   2. B -> A, abort: the guest stays on B and keeps running, A's QEMU is
#      gone.
#   3. B -> A with the receiver killed mid-stream: the source resumes.
#   4. post-copy asked for: the source refuses, the receiver fails alone.
#   5. B -> A stop-and-copy, commit.
#
# Prints QEMU's figures (total time, downtime, bytes, rounds) and the
# downtime the client saw, and ends with "N passed, N failed". Exit 77:
# not root, no QEMU, no domain template (deploy/build-templates domain).
set -uo pipefail

T_NAME=driver_domain_mig
log() { echo "[$T_NAME $(date +%T.%3N)] $*"; }
if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (namespaces, taps, cgroups)"
	exit 77
fi

HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$HA_SRC_DIR/build/tests}
HACTL_BIN_DIR=${HACTL_BIN_DIR:-$HA_SRC_DIR/build/bin}
DT=$HA_TEST_BIN_DIR/ha-driver-test
TEMPLATE=${HACTL_TEMPLATE_DIR:-$HA_SRC_DIR/build/templates}/domain
QEMU=${HACTL_QEMU:-qemu-system-x86_64}

T_PASS=0
T_FAIL=0
pass() { T_PASS=$((T_PASS + 1)); log "ok: $*"; }
fail() { T_FAIL=$((T_FAIL + 1)); log "FAIL: $*"; }
check() { # check "description" command...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
now_ms() { date +%s%3N; }
wait_for() { # wait_for TIMEOUT_S DESCRIPTION COMMAND...: polls every 50 ms
	local deadline=$(($(now_ms) + $1 * 1000)) what=$2
	shift 2
	while [ "$(now_ms)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	log "timed out waiting for: $what"
	return 1
}
not() { ! "$@"; }
both() { # both CMD1... -- CMD2...: both succeed
	local a=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do a+=("$1"); shift; done
	shift
	"${a[@]}" && "$@"
}

for tool in ip nsenter bridge mkfifo; do
	command -v $tool >/dev/null || { echo "skipped: $tool missing"; exit 77; }
done
command -v "$QEMU" >/dev/null || { echo "skipped: $QEMU missing"; exit 77; }
[ -x "$DT" ] || { echo "skipped: $DT not built"; exit 77; }
[ -e /dev/net/tun ] || { echo "skipped: no /dev/net/tun"; exit 77; }
if [ ! -s "$TEMPLATE/vmlinux" ] || [ ! -s "$TEMPLATE/initramfs.cpio.gz" ]; then
	log "building the domain template"
	timeout 300 "$HA_SRC_DIR/deploy/build-templates" domain >/dev/null 2>&1 || true
fi
[ -s "$TEMPLATE/vmlinux" ] && [ -s "$TEMPLATE/initramfs.cpio.gz" ] ||
	{ echo "skipped: no domain template (deploy/build-templates domain)"; exit 77; }
WL=$HACTL_BIN_DIR/hactl-workload
[ -x "$WL" ] || WL=$HA_SRC_DIR/build/templates/container/usr/bin/hactl-workload
[ -x "$WL" ] || { echo "skipped: no hactl-workload to query the guest with"; exit 77; }

NS_SW=hmsw-$$
NS_A=hma-$$
NS_B=hmb-$$
NS_C=hmc-$$
WORK=$(mktemp -d /tmp/hactl-dmig.XXXXXX)
CG=hactl-test-$$
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
mkdir -p "$WORK/tpl" "$WORK/shared/m1" "$WORK/A" "$WORK/B"
cp "$TEMPLATE/vmlinux" "$TEMPLATE/initramfs.cpio.gz" "$WORK/tpl/"
if [ -s "$TEMPLATE/disk.img" ]; then
	cp --sparse=always "$TEMPLATE/disk.img" "$WORK/shared/m1/disk.img"
else
	truncate -s 16M "$WORK/shared/m1/disk.img"
fi

GUEST_IP=10.213.3.20
declare -A HOST_IP=([A]=10.213.3.11 [B]=10.213.3.12)
declare -A HOST_NS=([A]=$NS_A [B]=$NS_B)
# fixed bridge MACs: a bridge without one takes its lowest port's, and a
# tap coming or going would change it under the other host's ARP cache
declare -A HOST_MAC=([A]=02:00:00:00:03:0a [B]=02:00:00:00:03:0b)
MIG_PORT=7700
MEM_KIB=${MEM_KIB:-131072} # 128 MiB
WL_ARGS=${WL_ARGS:---mem 32M --dirty 10M} # 128 MiB leave ~80 MB to the initramfs
CMD="/usr/bin/hactl-workload --port 7000 $WL_ARGS"
TIMEOUT=60000

# ---- helpers ---------------------------------------------------------------

spec() { # the same guest definition on both hosts; the run dir is the host's
	echo --name m1 --kernel "$WORK/tpl/vmlinux" --initrd "$WORK/tpl/initramfs.cpio.gz" \
		--disk "$WORK/shared/m1/disk.img" --ip "$GUEST_IP/24" --bridge hbr0 \
		--run-dir "$WORK/$1/run/m1" --data-dir "$WORK/shared/m1" \
		--mem "$MEM_KIB" --cpus 1 --cpu-weight 1000 --timeout "$TIMEOUT"
}
on_host() { # on_host A|B CMD...: in that host's namespace, with its cgroup parent
	local h=$1
	shift
	nsenter --net="/run/netns/${HOST_NS[$h]}" env HACTL_CGROUP_PARENT="$CG-$h" "$@"
}
drv() { # drv HOST ACTION
	# shellcheck disable=SC2046
	on_host "$1" "$DT" domain "$2" $(spec "$1") --cmd "$CMD"
}
query() { ip netns exec "$NS_C" "$WL" --query "$GUEST_IP:7000" --timeout 3000 2>/dev/null; }
counter_of() { sed -n 's/.*"counter":\([0-9]*\).*/\1/p'; }
boot_of() { sed -n 's/.*"boot_id":"\([0-9a-f]*\)".*/\1/p'; }
errors_of() { sed -n 's/.*"mem_errors":\([0-9]*\).*/\1/p'; }
answers() { query | grep -q '"counter"'; }
same_boot() { [ -n "$BOOT" ] && [ "$(boot_of <<<"$1")" = "$BOOT" ]; }
qemu_of() { # the QEMU pids running from HOST's run dir (never by a broad name)
	local p
	for p in /proc/[0-9]*; do
		grep -qF "$WORK/$1/run/" "$p/cmdline" 2>/dev/null && echo "${p#/proc/}"
	done
	return 0
}
runs_on() { [ -n "$(qemu_of "$1")" ]; }
gone_from() { [ -z "$(qemu_of "$1")" ]; }
tap_on() { ip -n "${HOST_NS[$1]}" link show ht-m1 >/dev/null 2>&1; }
state_on() { drv "$1" state 2>&1 | grep -q "(state $2)"; }
any_qemu() { # any QEMU of this test
	local p
	for p in /proc/[0-9]*; do
		grep -qF "$WORK/" "$p/cmdline" 2>/dev/null && return 0
	done
	return 1
}
cg_dirs() { # the guest's cgroup directories on either host
	local d
	for d in /sys/fs/cgroup/"$CG"-[AB]/m1 /sys/fs/cgroup/*/"$CG"-[AB]/m1; do
		[ -d "$d" ] && echo "$d"
	done
	return 0
}
guest_mac() { # from the running QEMU's command line
	tr '\0' '\n' <"/proc/$(qemu_of "$1" | head -1)/cmdline" 2>/dev/null |
		sed -n 's/.*mac=\([0-9a-f:]*\).*/\1/p'
}
ns_left() { # any namespace of this test
	local pid=$$
	ip netns list | grep -qE "^(hmsw|hma|hmb|hmc)-$pid( |\$)"
}
switch_port_of() { # the switch port the guest's MAC was learned on
	bridge -n "$NS_SW" fdb show br hmsw0 2>/dev/null | awk -v m="$1" '$1 == m { print $3; exit }'
}

# The client, in C: a query started every 20 ms, each waiting up to 1 s, its
# answer stamped when it completes (microseconds). The longest time between
# two answers is the downtime the client saw, within about 20 ms; a guest
# that is merely slow (TCG while its memory is being copied) still answers.
POLL_PID=""
poll_start() { # poll_start FILE
	rm -f "$WORK/poll.stop"
	ip netns exec "$NS_C" bash -c '
		while [ ! -e "$3" ]; do
			{
				if out=$("$1" --query "$2:7000" --timeout 1000 2>/dev/null); then
					c=${out#*\"counter\":}
					b=${out#*\"boot_id\":\"}
					echo "${EPOCHREALTIME/./} ok ${c%%,*} ${b%%\"*}"
				fi
			} &
			sleep 0.02
		done
		wait' poll "$WL" "$GUEST_IP" "$WORK/poll.stop" >"$1" 2>/dev/null &
	POLL_PID=$!
}
poll_stop() {
	touch "$WORK/poll.stop"
	[ -n "$POLL_PID" ] && wait "$POLL_PID" 2>/dev/null
	POLL_PID=""
}
max_gap_ms() { # FILE: the longest time between two answers; 0 when none
	sort -n "$1" | awk '$2 == "ok" { if (last && $1 - last > g) g = $1 - last; last = $1 }
			    END { printf "%d\n", g / 1000 }'
}
poll_answers() { grep -c ' ok ' "$1"; }
# Every answer the client got came from the same boot with a counter no
# lower than before the migration: never a restarted or an older guest.
poll_consistent() { # FILE COUNTER_BEFORE
	[ -n "$BOOT" ] && awk -v min="$2" -v boot="$BOOT" \
		'$2 == "ok" && ($3 < min || $4 != boot) { bad = 1 } END { exit bad }' "$1"
}

# One side of a migration: ha-driver-test in the background, its decision
# written into a fifo, its output into a log.
declare -A SIDE_PID SIDE_FD
side_start() { # side_start NAME HOST ACTION OPTION VALUE
	local name=$1 h=$2 action=$3 fd
	rm -f "$WORK/$name.fifo" "$WORK/$name.log"
	mkfifo "$WORK/$name.fifo"
	exec {fd}<>"$WORK/$name.fifo"
	SIDE_FD[$name]=$fd
	# shellcheck disable=SC2046
	on_host "$h" "$DT" domain "$action" "$4" "$5" $(spec "$h") --cmd "$CMD" \
		<"$WORK/$name.fifo" >"$WORK/$name.log" 2>&1 &
	SIDE_PID[$name]=$!
}
side_says() { grep -q -- "$2" "$WORK/$1.log" 2>/dev/null; }
side_tell() { echo "$2" >&"${SIDE_FD[$1]}"; }
side_end() { # side_end NAME: waits for the tool (bounded), closes its fifo
	local name=$1 fd=${SIDE_FD[$1]} deadline=$(($(now_ms) + 30000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		kill -0 "${SIDE_PID[$name]}" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "${SIDE_PID[$name]}" 2>/dev/null && kill -9 "${SIDE_PID[$name]}" 2>/dev/null
	wait "${SIDE_PID[$name]}" 2>/dev/null
	local rc=$?
	exec {fd}>&-
	rm -f "$WORK/$name.fifo"
	return $rc
}
side_line() { grep -m1 -- "$2" "$WORK/$1.log" 2>/dev/null; }
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p"; } # field NAME <<<LINE

cleanup() {
	local p h
	poll_stop
	for p in "${SIDE_PID[@]}"; do kill -9 "$p" 2>/dev/null; done
	for h in A B; do
		drv "$h" stop >/dev/null 2>&1
		drv "$h" destroy >/dev/null 2>&1
		for p in $(qemu_of "$h"); do kill -9 "$p" 2>/dev/null; done
	done
	for p in $NS_A $NS_B $NS_C $NS_SW; do ip netns del "$p" 2>/dev/null; done
	for p in /sys/fs/cgroup/"$CG"-[AB]/m1 /sys/fs/cgroup/"$CG"-[AB] \
		/sys/fs/cgroup/*/"$CG"-[AB]/m1 /sys/fs/cgroup/*/"$CG"-[AB]; do
		[ -d "$p" ] && rmdir "$p" 2>/dev/null
	done
	rm -rf --one-file-system "$WORK"
}
trap 'cleanup; exit 1' INT TERM

# ---- the network: hosts A and B and client C on one switch -----------------

net_up() {
	ip netns add "$NS_SW" && ip -n "$NS_SW" link set lo up &&
		ip -n "$NS_SW" link add hmsw0 type bridge &&
		ip -n "$NS_SW" link set hmsw0 up || return 1
	local h ns
	for h in A B; do
		ns=${HOST_NS[$h]}
		ip netns add "$ns" && ip -n "$ns" link set lo up &&
			ip -n "$ns" link add hbr0 address "${HOST_MAC[$h]}" type bridge &&
			ip -n "$ns" addr add "${HOST_IP[$h]}/24" dev hbr0 &&
			ip -n "$ns" link set hbr0 up &&
			ip -n "$NS_SW" link add "up$h" type veth peer name uplink netns "$ns" &&
			ip -n "$ns" link set uplink master hbr0 up &&
			ip -n "$NS_SW" link set "up$h" master hmsw0 up || return 1
	done
	ip netns add "$NS_C" && ip -n "$NS_C" link set lo up &&
		ip -n "$NS_SW" link add upC type veth peer name eth0 netns "$NS_C" &&
		ip -n "$NS_C" addr add 10.213.3.99/24 dev eth0 &&
		ip -n "$NS_C" link set eth0 up &&
		ip -n "$NS_SW" link set upC master hmsw0 up
}
if ! net_up; then
	fail "test network"
	cleanup
	echo "$T_PASS passed, $T_FAIL failed"
	exit 1
fi

# ---- the guest on A -----------------------------------------------------------

out=$(drv A start 2>&1)
check "start m1 on A ($out)" grep -q "start: ok" <<<"$out"
if wait_for 180 "m1 answers" answers; then
	pass "m1 answers from A"
else
	fail "m1 answers from A; its console: $(tail -5 "$WORK/A/run/m1/console.log" | tr '\n' '|')"
fi
J=$(query)
BOOT=$(boot_of <<<"$J")
check "m1 reports a boot id" test -n "$BOOT"
MAC=$(guest_mac A)
log "guest MAC $MAC, on switch port $(switch_port_of "$MAC")"
check "the switch knows the guest on A's port" test "$(switch_port_of "$MAC")" = upA
sleep 2 # let the workload dirty its memory for a while

# migrate SRC DST DECISION: runs one migration to its decision; sets
# MIG_SENT, MIG_RECV (the tools' result lines), C_BEFORE, POLL_FILE.
migrate() {
	local src=$1 dst=$2 decision=$3
	C_BEFORE=$(query | counter_of)
	side_start recv "$dst" migrate-recv --listen "$MIG_PORT"
	wait_for 10 "the receiver listens" side_says recv "^listening" || return 1
	POLL_FILE=$WORK/poll-$src$dst.txt
	poll_start "$POLL_FILE"
	sleep 0.5
	side_start send "$src" migrate-send --to "${HOST_IP[$dst]}:$MIG_PORT"
	wait_for 120 "the destination has the guest" side_says recv "migrate-recv: " || return 1
	side_says recv "migrate-recv: ok" || return 1
	# the cluster's decision: the destination first (it resumes or goes)
	local t_recv
	t_recv=$(now_ms)
	side_tell recv "$decision"
	wait_for 30 "the destination's finish" side_says recv "migrate-finish" || return 1
	T_DECIDE=$(($(now_ms) - t_recv))
	wait_for 30 "the source's stream ended" side_says send "migrate-send: " || return 1
	side_tell send "$decision"
	MIG_SENT=$(side_line send '^sent:')
	MIG_RECV=$(side_line recv '^received:')
	side_end recv
	local rr=$?
	side_end send
	local rs=$?
	sleep 1
	poll_stop
	log "send: $(grep -v '^progress' "$WORK/send.log" | tr '\n' '|')"
	log "recv: $(grep -v '^progress' "$WORK/recv.log" | tr '\n' '|')"
	[ $rr = 0 ] && [ $rs = 0 ]
}

env_migrate() { # env_migrate VAR=VALUE SRC DST DECISION: migrate with one option set
	local kv=$1
	shift
	env_run "$kv" migrate "$@"
}
env_run() { # env_run VAR=VALUE FUNCTION ARGS...: the function sees VAR exported
	local -x "${1?}"
	shift
	"$@"
}

report() { # report WHAT: QEMU's figures and the client's
	log "$1: total $(field total_ms <<<"$MIG_SENT") ms, QEMU downtime" \
		"$(field downtime_ms <<<"$MIG_SENT") ms, client saw $(max_gap_ms "$POLL_FILE") ms" \
		"without an answer ($(poll_answers "$POLL_FILE") answers)," \
		"$(field transferred <<<"$MIG_SENT") bytes sent, $(field transferred <<<"$MIG_RECV")" \
		"received, $(field rounds <<<"$MIG_SENT") rounds, dirty rate" \
		"$(field dirty_rate <<<"$MIG_SENT") B/s at the end; the destination's finish took" \
		"${T_DECIDE}ms (as seen here)"
}

# console_says HOST LINE ANSWER: LINE typed on m1's serial console on HOST
# (the socket of QEMU's chardev that hactl console uses) gets ANSWER back.
console_says() {
	python3 - "$WORK/$1/run/m1/console.sock" "$2" "$3" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.settimeout(1)
out, end = b"", time.time() + 10
while time.time() < end and sys.argv[3].encode() not in out:
    try:
        b = s.recv(4096)
    except socket.timeout:
        continue
    if not b:
        break
    out += b
s.close()
sys.exit(0 if sys.argv[3].encode() in out else 1)
PY
}

# ---- 1. A -> B, commit ------------------------------------------------------------

QPID_A=$(qemu_of A)
check "migration A -> B, commit" migrate A B commit
report "A -> B"
check "...both tools report the finish" \
	both side_says send "migrate-finish commit: ok" -- side_says recv "migrate-finish commit: ok"
check "...QEMU's figures are there (bytes, rounds, total time)" \
	test "$(field transferred <<<"$MIG_SENT")" -gt 0 -a "$(field rounds <<<"$MIG_SENT")" -ge 1 \
	-a "$(field total_ms <<<"$MIG_SENT")" -gt 0
check "...the guest's QEMU runs on B" runs_on B
check "...A's QEMU (pid $QPID_A) is gone" gone_from A
check "...A's tap is gone, B has one" both not tap_on A -- tap_on B
check "...A's run dir is gone" test ! -e "$WORK/A/run/m1"
check "m1 answers through the switch" wait_for 10 "m1 answers" answers
check "...and the switch learned B's port" test "$(switch_port_of "$MAC")" = upB
J=$(query)
C_AFTER=$(counter_of <<<"$J")
check "...same boot id (the guest was moved, not restarted)" same_boot "$J"
check "...its counter continues (${C_BEFORE:-?} -> ${C_AFTER:-?})" \
	test "${C_AFTER:-0}" -gt "${C_BEFORE:-999999999}"
check "...its memory is intact" test "$(errors_of <<<"$J")" = 0
check "...every answer the client got: same boot, counter not below ${C_BEFORE:-?}" \
	poll_consistent "$POLL_FILE" "${C_BEFORE:-999999999}"
check "...state on B: running" state_on B running
check "...its serial console on B answers (hactl console's socket)" \
	console_says B 'echo migrated-$((6*7))' migrated-42
check "...the disk on the shared storage stays" test -s "$WORK/shared/m1/disk.img"

# ---- 2. B -> A, abort ---------------------------------------------------------

QPID_B=$(qemu_of B)
check "migration B -> A, abort" migrate B A abort
report "B -> A (aborted)"
check "...both tools report the abort" \
	both side_says send "migrate-finish abort: ok" -- side_says recv "migrate-finish abort: ok"
check "...the guest's QEMU on B is the same process ($QPID_B)" test "$(qemu_of B)" = "$QPID_B"
check "...the destination's QEMU on A is gone" gone_from A
check "...A's tap and run dir are gone" both not tap_on A -- test ! -e "$WORK/A/run/m1"
check "m1 answers" wait_for 10 "m1 answers" answers
J=$(query)
C_AFTER=$(counter_of <<<"$J")
check "...same boot id, counter continues (${C_BEFORE:-?} -> ${C_AFTER:-?})" \
	both same_boot "$J" -- test "${C_AFTER:-0}" -gt "${C_BEFORE:-999999999}"
check "...every answer the client got: same boot, counter not below ${C_BEFORE:-?}" \
	poll_consistent "$POLL_FILE" "${C_BEFORE:-999999999}"
check "...the switch has the guest on B's port" test "$(switch_port_of "$MAC")" = upB

# ---- 3. B -> A, the receiver dies mid-stream ------------------------------------

# 2 MB/s: the first pass over the guest's RAM alone takes over a minute,
# so the receiver (tool and QEMU), killed once 10 MB have gone, dies
# mid-stream however slow the checks in between are on a loaded machine
# (at 20 MB/s the migration once ended before the kill)
C_BEFORE=$(query | counter_of)
side_start recv A migrate-recv --listen "$MIG_PORT"
wait_for 10 "the receiver listens" side_says recv "^listening"
HA_MIG_BANDWIDTH=2000000 side_start send B migrate-send --to "${HOST_IP[A]}:$MIG_PORT"
sent_10mb() { awk '/^progress:/ { sub(/.*transferred=/, ""); sub(/ .*/, ""); if ($0 > 10000000) ok = 1 }
		   END { exit !ok }' "$WORK/send.log"; }
check "the stream is under way" wait_for 30 "10 MB sent" sent_10mb
check "...and the destination's QEMU runs on A" runs_on A
for p in $(qemu_of A); do kill -9 "$p"; done
kill -9 "${SIDE_PID[recv]}" 2>/dev/null
log "killed the receiver (tool and QEMU) on A"
check "the source reports the failed stream" \
	wait_for 60 "the source's answer" side_says send "migrate-send: "
log "send: $(grep -v '^progress' "$WORK/send.log" | tr '\n' '|')"
check "...with QEMU's reason" both side_says send "migrate-send: .*migration failed: ." -- \
	not side_says send "gave no reason"
side_end send
side_end recv
check "...the guest runs on B, the same QEMU ($QPID_B)" test "$(qemu_of B)" = "$QPID_B"
check "m1 answers" wait_for 10 "m1 answers" answers
J=$(query)
C_AFTER=$(counter_of <<<"$J")
check "...same boot id, counter continues (${C_BEFORE:-?} -> ${C_AFTER:-?})" \
	both same_boot "$J" -- test "${C_AFTER:-0}" -gt "${C_BEFORE:-999999999}"
drv A destroy >/dev/null 2>&1 # what the killed receiver left (its tap, run dir)
check "nothing of the failed receiver is left on A" both gone_from A -- not tap_on A

# ---- 4. post-copy is refused; the waiting receiver fails by itself ---------------

side_start recv A migrate-recv --listen "$MIG_PORT"
wait_for 10 "the receiver listens" side_says recv "^listening"
HA_MIG_MODE=postcopy side_start send B migrate-send --to "${HOST_IP[A]}:$MIG_PORT"
check "post-copy is refused by the source" \
	wait_for 30 "the source's answer" side_says send "migrate-send: Operation not supported: .*post-copy"
side_end send
check "...the receiver, whose stream ended unused, fails with QEMU's reason" \
	wait_for 60 "the receiver's answer" side_says recv "migrate-recv: Input/output error: .*failed: ."
log "recv: $(grep -v '^progress' "$WORK/recv.log" | tr '\n' '|')"
side_end recv
check "...and leaves nothing on A (QEMU, tap, run dir)" \
	both gone_from A -- both not tap_on A -- test ! -e "$WORK/A/run/m1"
check "...the guest still runs on B, the same QEMU ($QPID_B)" test "$(qemu_of B)" = "$QPID_B"
check "m1 answers" wait_for 10 "m1 answers" answers

# ---- 5. B -> A stop-and-copy, commit ----------------------------------------------

check "stop-and-copy migration B -> A, commit" env_migrate HA_MIG_MODE=stopcopy B A commit
report "B -> A (stop-and-copy)"
DT_MS=$(field downtime_ms <<<"$MIG_SENT")
TT_MS=$(field total_ms <<<"$MIG_SENT")
check "...the downtime is the whole transfer (${DT_MS:-?} ms >= ${TT_MS:-?} ms)" \
	test "${DT_MS:-0}" -ge "${TT_MS:-1}"
check "...the guest runs on A, B's QEMU is gone" both runs_on A -- gone_from B
check "m1 answers from A" wait_for 10 "m1 answers" answers
J=$(query)
C_AFTER=$(counter_of <<<"$J")
check "...same boot id, counter continues (${C_BEFORE:-?} -> ${C_AFTER:-?})" \
	both same_boot "$J" -- test "${C_AFTER:-0}" -gt "${C_BEFORE:-999999999}"
check "...the switch learned A's port" test "$(switch_port_of "$MAC")" = upA

# ---- the end ----------------------------------------------------------------------

out=$(TIMEOUT=15000 drv A stop 2>&1)
check "stop m1 on A" grep -q "stop: ok" <<<"$out"
drv A destroy >/dev/null 2>&1
check "nothing left: QEMUs" not any_qemu
check "nothing left: taps" both not tap_on A -- not tap_on B
check "nothing left: cgroups" test -z "$(cg_dirs)"
cleanup
check "the namespaces are gone" not ns_left
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
