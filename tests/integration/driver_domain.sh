#!/bin/bash
# driver_domain.sh - the domain driver on a real QEMU (TCG unless
# HACTL_DOMAIN_ACCEL says otherwise), a tap on a bridge and QMP, one driver
# action per process (ha-driver-test), so every action after the first also
# proves attach() from the run dir.
#
# Everything lives in a network namespace made here (a bridge with
# 10.213.1.1/24, the guest 10.213.1.20), a temporary directory and the
# cgroup parent hactl-test-<pid>; all of it is removed at the end, and the
# last checks prove that nothing was left behind.
#
# Prints timings (boot, checkpoint, restore) and the snapshot's size and
# frozen time, and ends with "N passed, N failed". Exit 77: not root, no
# QEMU, no domain template (deploy/build-templates domain).
set -uo pipefail

T_NAME=driver_domain
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
wait_for() { # wait_for TIMEOUT_S DESCRIPTION COMMAND...: polls every 100 ms
	local deadline=$(($(now_ms) + $1 * 1000)) what=$2
	shift 2
	while [ "$(now_ms)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "timed out after ${1}s waiting for: $what"
	return 1
}

for tool in ip nsenter cmp; do
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

NS=htd-$$
BR=hdbr0
WORK=$(mktemp -d /tmp/hactl-dom.XXXXXX)
export HACTL_CGROUP_PARENT=hactl-test-$$
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# the template files are copied: a rebuild meanwhile must not pull them away
mkdir -p "$WORK/tpl" "$WORK/data/d1"
cp "$TEMPLATE/vmlinux" "$TEMPLATE/initramfs.cpio.gz" "$WORK/tpl/"
if [ -s "$TEMPLATE/disk.img" ]; then
	cp --sparse=always "$TEMPLATE/disk.img" "$WORK/data/d1/disk.img"
else
	truncate -s 16M "$WORK/data/d1/disk.img"
fi

# ---- helpers -----------------------------------------------------------

KERNEL=$WORK/tpl/vmlinux
CMD="/usr/bin/hactl-workload --port 7000"
MEM_KIB=131072 # 128 MiB
TIMEOUT=30000
drv() { # drv ACTION [DIR] -> ha-driver-test's line; status of the action
	local action=$1 dir=""
	if [ "$action" = checkpoint ] || [ "$action" = checkpoint-leave ] || [ "$action" = restore ]; then
		dir=$2
	fi
	# shellcheck disable=SC2086
	nsenter --net="/run/netns/$NS" "$DT" domain "$action" $dir \
		--name d1 --kernel "$KERNEL" --initrd "$WORK/tpl/initramfs.cpio.gz" \
		--disk "$WORK/data/d1/disk.img" --cmd "$CMD" \
		--ip 10.213.1.20/24 --gw 10.213.1.1 --bridge "$BR" \
		--run-dir "$WORK/run/d1" --data-dir "$WORK/data/d1" \
		--mem "$MEM_KIB" --cpus 1 --cpu-weight 1000 --timeout "$TIMEOUT"
}
query() { ip netns exec "$NS" "$WL" --query 10.213.1.20:7000 --timeout 1000 2>/dev/null; }
counter_of() { sed -n 's/.*"counter":\([0-9]*\).*/\1/p'; }
boot_of() { sed -n 's/.*"boot_id":"\([0-9a-f]*\)".*/\1/p'; }
errors_of() { sed -n 's/.*"mem_errors":\([0-9]*\).*/\1/p'; }
answers() { query | grep -q '"counter"'; }
qemu_pid() { cat "$WORK/run/d1/qemu.pid" 2>/dev/null; }
mf() { # mf DIR KEY: a number from a checkpoint manifest
	sed -n "s/.*\"$2\":[ ]*\([0-9]*\).*/\1/p" "$1/domain-ckpt.json" 2>/dev/null
}
says() { # says PATTERN ACTION [DIR]: drv's line matches PATTERN
	local pat=$1 out
	shift
	out=$(drv "$@" 2>&1)
	grep -q -- "$pat" <<<"$out" || { log "got: $out"; return 1; }
}
state_is() { says "(state $1)" state; }
not() { ! "$@"; }
time_drv() { # time_drv VAR ACTION ...: runs drv, stores milliseconds in VAR
	local var=$1 t0 rc
	shift
	t0=$(now_ms)
	drv "$@"
	rc=$?
	printf -v "$var" '%s' $(($(now_ms) - t0))
	return $rc
}
cg_dirs() { # the guest's cgroup directories that exist
	local d
	for d in /sys/fs/cgroup/"$HACTL_CGROUP_PARENT"/d1 \
		/sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT"/d1; do
		[ -d "$d" ] && echo "$d"
	done
	return 0
}
# QEMUs of this test: by the pid files it wrote and by its run dir on the
# command line (never by a broad name).
our_qemus() {
	local p
	for p in /proc/[0-9]*; do
		grep -qF "$WORK/run/" "$p/cmdline" 2>/dev/null && echo "${p#/proc/}"
	done
	return 0
}
nothing_running() { # no QEMU, no tap, no cgroup
	local ok=0
	[ -z "$(our_qemus)" ] || { log "QEMU left: $(our_qemus)"; ok=1; }
	! ip -n "$NS" link show ht-d1 >/dev/null 2>&1 || { log "tap left"; ok=1; }
	[ -z "$(cg_dirs)" ] || { log "cgroups left: $(cg_dirs)"; ok=1; }
	return $ok
}

cleanup() {
	local p d
	drv stop >/dev/null 2>&1
	drv destroy >/dev/null 2>&1
	for p in $(our_qemus); do kill -9 "$p" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	for d in /sys/fs/cgroup/"$HACTL_CGROUP_PARENT"/d1 /sys/fs/cgroup/"$HACTL_CGROUP_PARENT" \
		/sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT"/d1 /sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT"; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf --one-file-system "$WORK"
}
trap 'cleanup; exit 1' INT TERM

# ---- the test network ------------------------------------------------------

if ! { ip netns add "$NS" &&
	ip -n "$NS" link set lo up &&
	ip -n "$NS" link add "$BR" type bridge &&
	ip -n "$NS" addr add 10.213.1.1/24 dev "$BR" &&
	ip -n "$NS" link set "$BR" up; }; then
	fail "test network"
	cleanup
	echo "$T_PASS passed, $T_FAIL failed"
	exit 1
fi

out=$(ASAN_OPTIONS=detect_leaks=0 nsenter --net="/run/netns/$NS" "$DT" domain probe)
check "probe ($out)" test $? = 0

# ---- bad specs ---------------------------------------------------------------

KERNEL=""
check "start without a kernel fails with a message" says "no kernel given" start
KERNEL=$WORK/tpl/no-such-vmlinux
check "start with a missing kernel names it" \
	says "kernel $WORK/tpl/no-such-vmlinux: No such file or directory" start
KERNEL=$WORK/tpl/vmlinux
BR=nobr
check "start without the bridge fails with a message" says "bridge nobr: no such device" start
BR=hdbr0
MEM_KIB=1024
check "1 MiB of RAM is refused" says "memory 1024 KiB out of range" start
MEM_KIB=131072
check "the failed starts left nothing behind" nothing_running
check "state of a domain never started: defined" state_is defined
check "attach to nothing: not running" says "attach: No such process" attach

# ---- start, network, usage ----------------------------------------------------

time_drv T_START start
check "start d1 (${T_START} ms until QMP says running)" test $? = 0
T0=$(now_ms)
check "d1 answers on 10.213.1.20:7000 from the test namespace" wait_for 60 "d1 answers" answers
T_BOOT=$(($(now_ms) - T0 + T_START))
log "boot: ${T_BOOT} ms from start to the workload answering"
J=$(query)
BOOT1=$(boot_of <<<"$J")
check "d1 reports a boot id" test -n "$BOOT1"
check "d1 state running" state_is running
check "attach finds it" says "attach: ok (state running)" attach
QPID=$(qemu_pid)
check "QEMU (pid $QPID) is not a child of the driver process" \
	test "$(ps -o ppid= -p "$QPID" | tr -d ' ')" != "$$"
check "QEMU runs with RAM + 4 KiB (the TCG migration bug)" \
	grep -qF -- "$((MEM_KIB + 4))k" "/proc/$QPID/cmdline"
check "the tap ht-d1 is on the bridge" \
	bash -c "ip -n $NS link show ht-d1 | grep -q 'master $BR'"
check "the console log shows the service" \
	wait_for 10 "console" grep -q "hactl-workload" "$WORK/run/d1/console.log"
check "start of a running domain is refused" says "already running" start
if [ -n "$(cg_dirs)" ]; then
	check "QEMU is in its cgroup" \
		bash -c "grep -qx $QPID $(cg_dirs | head -1)/cgroup.procs"
fi
U=$(drv usage | grep '^usage:')
log "$U"
check "usage: cpu and memory counted" \
	grep -Eq 'cpu_ns=[1-9][0-9]* mem_bytes=[1-9][0-9]* pids=1' <<<"$U"
check "destroy of a running domain is refused" says "stop it first" destroy

# ---- snapshot while running, lose the domain, restore ------------------------

C0=$(query | counter_of)
time_drv T_CK checkpoint-leave "$WORK/ck1"
check "checkpoint-leave (${T_CK} ms)" test $? = 0
check "...the domain keeps running" state_is running
C1=$(query | counter_of)
check "...and counting (${C0:-?} -> ${C1:-?})" test "${C1:-0}" -gt "${C0:-0}"
SNAP_BYTES=$(stat -c %s "$WORK/ck1/memory" 2>/dev/null || echo 0)
SNAP_DISK=$(du -k "$WORK/ck1/memory" 2>/dev/null | cut -f1)
log "snapshot: memory $SNAP_BYTES bytes (${SNAP_DISK} KiB on disk), frozen" \
	"$(mf "$WORK/ck1" frozen_ms) ms (migration $(mf "$WORK/ck1" migrate_ms) ms," \
	"disk copy $(mf "$WORK/ck1" disk_copy_ms) ms), whole call ${T_CK} ms"
check "the manifest names the frozen time" test -n "$(mf "$WORK/ck1" frozen_ms)"
check "the disk was copied with the memory" cmp -s "$WORK/ck1/disk" "$WORK/data/d1/disk.img"

TIMEOUT=15000
time_drv T_STOP stop
check "stop (${T_STOP} ms)" test $? = 0
check "...graceful: the guest powered itself off" \
	grep -q "reboot: Power down" "$WORK/run/d1/console.log"
TIMEOUT=30000
check "...state stopped" state_is stopped
check "...nothing running" nothing_running
check "destroy" says "destroy: ok" destroy
check "...the run dir is gone" test ! -e "$WORK/run/d1"
check "...the disk on the shared storage stays" test -s "$WORK/data/d1/disk.img"

time_drv T_RESTORE restore "$WORK/ck1"
check "restore (${T_RESTORE} ms)" test $? = 0
check "the restored d1 answers" wait_for 10 "d1 answers" answers
J=$(query)
C2=$(counter_of <<<"$J")
log "counter before the snapshot ${C0:-?}, after the restore ${C2:-?}"
check "the counter continues (${C2:-?} >= ${C0:-?})" test "${C2:-0}" -ge "${C0:-1}"
check "the same boot (no reboot)" test "$(boot_of <<<"$J")" = "$BOOT1"
check "the workload's memory is intact" test "$(errors_of <<<"$J")" = 0
check "state running" state_is running

# ---- a checkpoint that ends the domain (the migration case) -----------------

C3=$(query | counter_of)
time_drv T_CK2 checkpoint "$WORK/ck2"
check "checkpoint (${T_CK2} ms) ends the domain" test $? = 0
check "...state stopped" state_is stopped
check "...nothing running" nothing_running
time_drv T_RESTORE2 restore "$WORK/ck2"
check "restore from it (${T_RESTORE2} ms)" test $? = 0
check "...answers" wait_for 10 "d1 answers" answers
J=$(query)
check "...counter continues ($(counter_of <<<"$J") >= ${C3:-?}), same boot" \
	test "$(counter_of <<<"$J")" -ge "${C3:-1}" -a "$(boot_of <<<"$J")" = "$BOOT1"
check "restore over a running domain is refused" says "already running" restore "$WORK/ck2"
TIMEOUT=2000 drv stop >/dev/null 2>&1 || true

# ---- hostile snapshots ---------------------------------------------------------

# Integrity (checksums) is the snapshot layer's (common/snapshot.c); the
# driver checks the manifest and sizes, and QEMU the stream's structure.
cp -r "$WORK/ck1" "$WORK/bad"
dd if=/dev/zero of="$WORK/bad/memory" bs=1 count=64 conv=notrunc 2>/dev/null
check "a memory image QEMU refuses: its reason is reported" \
	says "Bad message: .*restore from .* failed: Not a migration stream" restore "$WORK/bad"
check "...and nothing is left running" nothing_running
truncate -s 1000 "$WORK/bad/memory"
check "a truncated memory image is refused before QEMU runs" says "not .* bytes" restore "$WORK/bad"
echo '{"format": 1, "mem_kib": 65536, "cpus": 1}' >"$WORK/bad/domain-ckpt.json"
check "a snapshot of another size is refused" says "holds 65536 KiB" restore "$WORK/bad"
echo '{"format": ' >"$WORK/bad/domain-ckpt.json"
check "a torn manifest is refused" says "not a checkpoint manifest" restore "$WORK/bad"
check "...nothing running" nothing_running

# ---- the end ----------------------------------------------------------------

drv destroy >/dev/null
check "nothing left: QEMU, tap, cgroups" nothing_running
check "nothing left: run dir" test ! -e "$WORK/run/d1"
log "timings: start ${T_START} ms, boot ${T_BOOT} ms, checkpoint-leave ${T_CK} ms" \
	"(frozen $(mf "$WORK/ck1" frozen_ms) ms, $SNAP_BYTES bytes), stop ${T_STOP} ms," \
	"restore ${T_RESTORE} ms, checkpoint ${T_CK2} ms, restore ${T_RESTORE2} ms"
cleanup
check "the namespace is gone" not ip netns pids "$NS"
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
