#!/bin/bash
# shellcheck disable=SC2317 # functions called through check and trap
# templates_smoke.sh - builds the guest templates (deploy/build-templates)
# and runs each once, without the cluster:
#  (a) the container rootfs: hactl-workload as PID 1 of fresh pid, mount,
#      uts, ipc and net namespaces (unshare + chroot), queried over a veth;
#  (b) the domain: QEMU (TCG) boots vmlinux + initramfs with virtio-net on a
#      tap in a bridge; the workload started from hactl.cmd= answers on
#      port 7000. Prints the time from QEMU's start to the first answer.
# Everything runs in namespaces of its own on 10.213.1.0/24: hub (bridge,
# 10.213.1.1, and 10.213.2.1 to test the domain's default route), container
# (10.213.1.2), domain (10.213.1.10). Every wait is
# bounded; everything started is stopped and removed at the end.
set -uo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (namespaces, tap, templates)"
	exit 77
fi

HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HACTL_BIN_DIR=${HACTL_BIN_DIR:-$HA_SRC_DIR/build/bin}
export HACTL_BIN_DIR
export HACTL_TEMPLATE_DIR=${HACTL_TEMPLATE_DIR:-$(dirname "$HACTL_BIN_DIR")/templates}
TPL=$HACTL_TEMPLATE_DIR
BOOT_TIMEOUT=${HACTL_SMOKE_BOOT_TIMEOUT:-60}

T_PASS=0
T_FAIL=0
T_NAME=templates_smoke
log() { echo "[$T_NAME $(date +%T.%3N)] $*"; }
pass() { T_PASS=$((T_PASS + 1)); log "ok: $*"; }
fail() { T_FAIL=$((T_FAIL + 1)); log "FAIL: $*"; }
check() { # check "description" command...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
now_ms() { date +%s%3N; }

TAG=htpl$$
NS_HUB=$TAG-hub
NS_CT=$TAG-ct
WORK=$(mktemp -d /tmp/hactl-templates-smoke.XXXXXX)
CT_PID=
QEMU_PID=

# ---------------------------------------------------------------------------
# cleanup: every process in our namespaces, the namespaces, the work dir

stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL; reaps our children
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# stop_container: SIGTERM to the workload (unshare --fork does not pass
# signals on), then its status through unshare's, in CT_RC.
CT_RC=
stop_container() {
	local wl rc=timeout
	CT_RC=none
	[ -n "$CT_PID" ] || return 0
	wl=$(pgrep -P "$CT_PID" | head -n1)
	[ -n "$wl" ] && kill -TERM "$wl" 2>/dev/null
	for _ in $(seq 50); do
		if ! kill -0 "$CT_PID" 2>/dev/null; then
			wait "$CT_PID"
			rc=$?
			break
		fi
		sleep 0.1
	done
	if [ "$rc" = timeout ]; then
		# --kill-child: the workload dies with unshare
		kill -KILL "$CT_PID" 2>/dev/null
		wait "$CT_PID" 2>/dev/null
	fi
	CT_PID=
	CT_RC=$rc
}

ns_pids() { # pids of every process in our namespaces
	local ns
	for ns in "$NS_CT" "$NS_HUB"; do
		ip netns pids "$ns" 2>/dev/null
	done
}

cleanup() {
	local p
	stop_pid "$QEMU_PID"
	stop_container
	for p in $(ns_pids); do
		kill -KILL "$p" 2>/dev/null
	done
	ip netns del "$NS_CT" 2>/dev/null
	ip netns del "$NS_HUB" 2>/dev/null
	# the container's /proc lived in its own mount namespace: nothing of
	# the host is mounted under WORK
	case $WORK in /tmp/hactl-templates-smoke.*) rm -rf "$WORK" ;; esac
}
trap cleanup EXIT

finish() {
	echo "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
	exit $?
}

# ---------------------------------------------------------------------------
# helpers

# jfield JSON NAME: the value of a top-level number or string field
jfield() {
	printf '%s' "$1" | sed -n "s/.*\"$2\":\(\"[^\"]*\"\|-\{0,1\}[0-9][0-9]*\).*/\1/p" | tr -d '"'
}

# The query client: the template's own static binary runs anywhere.
WL=
query() { # query NS ADDR[:PORT]: prints the workload's JSON line
	ip netns exec "$1" "$WL" --query "$2" --timeout 1000 2>/dev/null
}

# wait_answer TIMEOUT_S NS ADDR: polls every 100 ms; prints the answer
wait_answer() {
	local deadline=$(($(now_ms) + $1 * 1000)) out
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if out=$(query "$2" "$3") && [ -n "$out" ]; then
			printf '%s\n' "$out"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

is_boot_id() { [[ $1 =~ ^[0-9a-f]{32}$ ]]; }
ge() { [ -n "$1" ] && [ -n "$2" ] && [ "$1" -ge "$2" ]; }

# ---------------------------------------------------------------------------
# templates

build() { # build PART: 0 built, 77 mirror unreachable, else failure
	local rc
	timeout 300 "$HA_SRC_DIR/deploy/build-templates" "$1" >"$WORK/build-$1.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		sed "s/^/    /" "$WORK/build-$1.log" | tail -20
	fi
	[ $rc -eq 3 ] && return 77
	return $rc
}

t0=$(now_ms)
build container
rc=$?
if [ $rc -eq 77 ]; then
	echo "skipped: build-templates cannot reach the package mirror"
	exit 77
fi
check "container template built ($(($(now_ms) - t0)) ms)" [ $rc -eq 0 ]
WL=$TPL/container/usr/bin/hactl-workload
if [ $rc -ne 0 ] || [ ! -x "$WL" ]; then
	fail "no container template: stopping"
	finish
fi

# the hub: a bridge, the client side of every test
ip netns add "$NS_HUB" && ip netns add "$NS_CT" &&
	ip -n "$NS_HUB" link set lo up &&
	ip -n "$NS_HUB" link add br0 type bridge &&
	ip -n "$NS_HUB" addr add 10.213.1.1/24 dev br0 &&
	ip -n "$NS_HUB" addr add 10.213.2.1/24 dev br0 &&
	ip -n "$NS_HUB" link set br0 up &&
	ip -n "$NS_HUB" link add ct0 type veth peer name eth0 netns "$NS_CT" &&
	ip -n "$NS_HUB" link set ct0 master br0 &&
	ip -n "$NS_HUB" link set ct0 up &&
	ip -n "$NS_CT" link set lo up &&
	ip -n "$NS_CT" addr add 10.213.1.2/24 dev eth0 &&
	ip -n "$NS_CT" link set eth0 up
check "namespaces, bridge and veth" [ $? -eq 0 ]

# ---------------------------------------------------------------------------
# (a) container

ROOT=$WORK/ct-root
cp -a "$TPL/container" "$ROOT" # a guest never writes into the template

start_container() {
	ip netns exec "$NS_CT" unshare --pid --fork --mount --uts --ipc --kill-child \
		chroot "$ROOT" /bin/sh -c \
		'mount -t proc proc /proc && hostname ct1 &&
		 exec /usr/bin/hactl-workload --mem 8M --dirty 1M' \
		>>"$WORK/ct.log" 2>&1 &
	CT_PID=$!
}

start_container
a1=$(wait_answer 10 "$NS_HUB" 10.213.1.2:7000)
check "container answers over the veth" [ -n "$a1" ]
log "container: $a1"
boot1=$(jfield "$a1" boot_id)
check "container: boot_id is 128 random bits" is_boot_id "$boot1"
check "container: workload is PID 1 of its pid namespace" [ "$(jfield "$a1" pid)" = 1 ]
check "container: holds 8 MiB" [ "$(jfield "$a1" mem)" = 8388608 ]
check "container: dirties 1 MiB/s" [ "$(jfield "$a1" dirty_rate)" = 1048576 ]
sleep 0.5
a2=$(query "$NS_CT" 127.0.0.1)
check "container answers on its loopback" [ -n "$a2" ]
check "container: same boot_id" [ "$(jfield "$a2" boot_id)" = "$boot1" ]
check "container: counter advanced >= 20 ticks in 0.5 s" \
	ge "$(jfield "$a2" counter)" $(($(jfield "$a1" counter) + 20))
# a client that sends and resets must not disturb it
ip netns exec "$NS_HUB" bash -c 'exec 3<>/dev/tcp/10.213.1.2/7000; head -c 100000 /dev/zero >&3' \
	2>/dev/null
check "container survives a client that floods and leaves" [ -n "$(query "$NS_HUB" 10.213.1.2)" ]

# SIGTERM: clean exit (unshare reports the workload's status)
stop_container
check "container: exits 0 on SIGTERM within 5 s (got $CT_RC)" [ "$CT_RC" = 0 ]

# a restart is a new boot: new boot_id, counter from 0
start_container
a3=$(wait_answer 10 "$NS_HUB" 10.213.1.2:7000)
check "container restarted" [ -n "$a3" ]
check "restart: new boot_id" is_boot_id "$(jfield "$a3" boot_id)"
check "restart: boot_id differs" [ "$(jfield "$a3" boot_id)" != "$boot1" ]
stop_container
check "restarted container: exits 0 on SIGTERM (got $CT_RC)" [ "$CT_RC" = 0 ]
check "container: no process left in its namespace" [ -z "$(ip netns pids "$NS_CT")" ]

# ---------------------------------------------------------------------------
# (b) domain

t0=$(now_ms)
build domain
rc=$?
check "domain template built ($(($(now_ms) - t0)) ms)" [ $rc -eq 0 ]
QEMU=$(command -v qemu-system-x86_64)
check "qemu-system-x86_64 present (deploy/install-deps)" [ -n "$QEMU" ]
if [ $rc -ne 0 ] || [ -z "$QEMU" ]; then
	finish
fi
DOM=$TPL/domain
cp --sparse=always "$DOM/disk.img" "$WORK/disk.img"
ip -n "$NS_HUB" tuntap add dev tap0 mode tap &&
	ip -n "$NS_HUB" link set tap0 master br0 &&
	ip -n "$NS_HUB" link set tap0 up
check "tap0 in the bridge" [ $? -eq 0 ]

CMDLINE="console=ttyS0 panic=1 hactl.ip=10.213.1.10/24 hactl.gw=10.213.1.1"
CMDLINE+=" hactl.hostname=dom1 hactl.cmd=/usr/bin/hactl-workload,--mem,16M,--dirty,1M"
t0=$(now_ms)
ip netns exec "$NS_HUB" "$QEMU" -accel tcg -m 131076k -smp 1 -nographic -no-reboot \
	-kernel "$DOM/vmlinux" -initrd "$DOM/initramfs.cpio.gz" -append "$CMDLINE" \
	-netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
	-device virtio-net-pci,netdev=n0,mac=52:54:00:0d:01:0a \
	-drive file="$WORK/disk.img",format=raw,if=virtio \
	</dev/null >"$WORK/console.log" 2>&1 &
QEMU_PID=$!
d1=$(wait_answer "$BOOT_TIMEOUT" "$NS_HUB" 10.213.1.10:7000)
boot_ms=$(($(now_ms) - t0))
check "domain answers on port 7000 within ${BOOT_TIMEOUT} s" [ -n "$d1" ]
if [ -n "$d1" ]; then
	log "domain boot to first answer: $boot_ms ms (TCG)"
	echo "domain_boot_ms=$boot_ms"
fi
log "domain: $d1"
dboot=$(jfield "$d1" boot_id)
check "domain: boot_id is 128 random bits" is_boot_id "$dboot"
check "domain: holds 16 MiB" [ "$(jfield "$d1" mem)" = 16777216 ]
check "domain: dirties 1 MiB/s" [ "$(jfield "$d1" dirty_rate)" = 1048576 ]
sleep 1
d2=$(query "$NS_HUB" 10.213.1.10)
check "domain: same boot_id a second later" [ -n "$dboot" -a "$(jfield "$d2" boot_id)" = "$dboot" ]
check "domain: counter advanced >= 30 ticks in 1 s" \
	ge "$(jfield "$d2" counter)" $(($(jfield "$d1" counter) + 30))
check "domain: no damaged page" [ "$(jfield "$d2" mem_errors)" = 0 ]
check "domain console: eth0 from hactl.ip" grep -q 'hactl-init: eth0 10.213.1.10/24' "$WORK/console.log"
check "domain console: virtio disk /dev/vda" grep -q 'hactl-init: disk /dev/vda 16 MiB' "$WORK/console.log"
check "domain console: service from hactl.cmd" \
	grep -q 'hactl-service: starting: /usr/bin/hactl-workload --mem 16M --dirty 1M' "$WORK/console.log"
check "domain console: no kernel panic" bash -c "! grep -q 'Kernel panic' '$WORK/console.log'"
# from another subnet: the domain answers only through its default route
check "domain: default route from hactl.gw" \
	ip netns exec "$NS_HUB" "$TPL/container/bin/busybox" ping -q -c 1 -W 3 \
	-I 10.213.2.1 10.213.1.10 >/dev/null
if [ "$T_FAIL" -ne 0 ]; then
	log "domain console (last 30 lines):"
	tail -n 30 "$WORK/console.log" | sed 's/^/    /'
fi
stop_pid "$QEMU_PID"
QEMU_PID=
check "no process left in the namespaces" [ -z "$(ns_pids)" ]

finish
