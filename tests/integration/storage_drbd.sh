#!/bin/bash
# storage_drbd.sh - the drbd storage backend (agent/storage_drbd.c) on a
# real two-node DRBD resource, driven through the backend's API by
# `test_storage drbd OP RES` (tests/unit/test_storage.c).
#
# The two "hosts" share this kernel. DRBD's resources and sockets are not
# namespaced (its connections live in the initial network namespace), so
# the two nodes are two DRBD resources, one per node, on two loop devices,
# connected over 127.0.0.1 and 127.0.0.2. What makes them two hosts for
# drbdadm is a private mount and UTS namespace per command: its own host
# name (the `on NAME` section drbdadm picks) and its own /etc/drbd.conf
# bind-mounted over the host's, so the host's configuration is neither
# read nor touched.
#
# Checked: promotion through acquire(); a second primary refused with
# DRBD's reason while the first is connected; release() then acquire() on
# the other node, with the data written before on the first; after the
# primary "dies" (disconnected without a release, as after fencing) the
# survivor's plain acquire() succeeds and has the last writes.
#
# Exit 77: not root, drbd-utils missing, no drbd kernel module (`modprobe
# drbd` fails), no /etc/drbd.conf. deploy/install-deps installs drbd-utils;
# the module comes with the kernel (Debian: in linux-image, DRBD 8.4) or
# drbd-dkms (DRBD 9).
set -uo pipefail

T_NAME=storage_drbd
log() { echo "[$T_NAME $(date +%T.%3N)] $*"; }
if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (DRBD, loop devices, namespaces)"
	exit 77
fi
for tool in drbdadm drbdsetup drbdmeta losetup unshare; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "skipped: $tool missing (drbd-utils, util-linux; see deploy/install-deps)"
		exit 77
	fi
done
LOADED_HERE=0
if [ ! -e /sys/module/drbd ] && [ ! -e /proc/drbd ]; then
	if ! modprobe drbd 2>/dev/null; then
		echo "skipped: no drbd kernel module"
		exit 77
	fi
	LOADED_HERE=1
fi
if [ ! -e /etc/drbd.conf ]; then
	echo "skipped: no /etc/drbd.conf to stand in for (drbd-utils installs it)"
	exit 77
fi

HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$HA_SRC_DIR/build/tests}
ST=$HA_TEST_BIN_DIR/test_storage
if [ ! -x "$ST" ]; then
	echo "test_storage not built: $ST" >&2
	exit 1
fi

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
wait_for() { # wait_for TIMEOUT_S DESCRIPTION COMMAND...
	local timeout=$1 what=$2
	local deadline=$(($(now_ms) + timeout * 1000))
	shift 2
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	log "timed out after ${timeout}s waiting for: $what"
	return 1
}

# Names unique to this run; minors and ports away from the usual ones.
RA=hactl-t$$-a
RB=hactl-t$$-b
MA=$((200 + ($$ % 100) * 2))
MB=$((MA + 1))
PA=$((7900 + ($$ % 50) * 2))
PB=$((PA + 1))
HA_=hactl-drbd-a
HB_=hactl-drbd-b
T=$(mktemp -d /tmp/hactl-drbd-XXXXXX)
LA=""
LB=""

# as_host a|b CMD...: CMD as that host (own host name and drbd.conf).
as_host() {
	local name conf
	if [ "$1" = a ]; then name=$HA_; else name=$HB_; fi
	conf=$T/drbd-$1.conf
	shift
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare --mount --uts --propagation private -- /bin/sh -c '
		echo "$1" > /proc/sys/kernel/hostname || exit 126
		conf=$2
		shift 2
		for f in /etc/drbd.conf /etc/drbd-90.conf /etc/drbd-84.conf \
			/etc/drbd-83.conf /etc/drbd-82.conf /etc/drbd-08.conf; do
			if [ -e "$f" ]; then mount --bind "$conf" "$f" || exit 126; fi
		done
		exec "$@"' sh "$name" "$conf" "$@"
}

cleanup() {
	set +e
	if [ -n "$LA" ]; then
		as_host a drbdadm secondary "$RA" >/dev/null 2>&1
		as_host a drbdadm down "$RA" >/dev/null 2>&1
	fi
	if [ -n "$LB" ]; then
		as_host b drbdadm secondary "$RB" >/dev/null 2>&1
		as_host b drbdadm down "$RB" >/dev/null 2>&1
	fi
	[ -n "$LA" ] && losetup -d "$LA"
	[ -n "$LB" ] && losetup -d "$LB"
	rm -rf "$T"
	if [ "$LOADED_HERE" = 1 ]; then
		modprobe -r drbd 2>/dev/null
	fi
}
trap cleanup EXIT

VERSION=$(cat /sys/module/drbd/version 2>/dev/null ||
	sed -n 's/^version: \([0-9.]*\).*/\1/p' /proc/drbd 2>/dev/null)
log "drbd kernel module ${VERSION:-?}, $(drbdadm --version 2>/dev/null | sed -n 's/^DRBDADM_VERSION=//p') utils"
NODE_ID_A=""
NODE_ID_B=""
case "$VERSION" in
9.* | 1[0-9].*)
	NODE_ID_A="node-id 0;"
	NODE_ID_B="node-id 1;"
	;;
esac

truncate -s 64M "$T/a.img" "$T/b.img"
LA=$(losetup -f --show "$T/a.img") || { LA=""; log "losetup failed"; exit 1; }
LB=$(losetup -f --show "$T/b.img") || { LB=""; log "losetup failed"; exit 1; }

# One configuration per node: its own resource, the other as its peer.
write_conf() { # write_conf FILE RES-HERE HOST-HERE MINOR DISK ADDR ID  HOST-PEER MINOR DISK ADDR ID
	cat >"$1" <<EOF
resource $2 {
	net { protocol C; }
	on $3 {
		device minor $4;
		disk $5;
		meta-disk internal;
		address $6;
		$7
	}
	on $8 {
		device minor $9;
		disk ${10};
		meta-disk internal;
		address ${11};
		${12}
	}
}
EOF
}
write_conf "$T/drbd-a.conf" "$RA" "$HA_" "$MA" "$LA" "127.0.0.1:$PA" "$NODE_ID_A" \
	"$HB_" "$MB" "$LB" "127.0.0.2:$PB" "$NODE_ID_B"
write_conf "$T/drbd-b.conf" "$RB" "$HB_" "$MB" "$LB" "127.0.0.2:$PB" "$NODE_ID_B" \
	"$HA_" "$MA" "$LA" "127.0.0.1:$PA" "$NODE_ID_A"

setup_ok=1
as_host a drbdadm create-md "$RA" </dev/null || setup_ok=0
as_host b drbdadm create-md "$RB" </dev/null || setup_ok=0
as_host a drbdadm up "$RA" || setup_ok=0
as_host b drbdadm up "$RB" || setup_ok=0
connected() { as_host "$1" drbdadm cstate "$2" 2>/dev/null | grep -q '^Connected'; }
check "the two nodes connect" wait_for 30 "connection" connected a "$RA"
# Initial data: one side forced primary once (this is set-up, not the API).
as_host a drbdadm primary --force "$RA" || setup_ok=0
# dstate prints "local/peer" (8.4 and 9): both sides UpToDate.
in_sync() {
	as_host a drbdadm dstate "$RA" 2>/dev/null | grep -q '^UpToDate/UpToDate' &&
		as_host b drbdadm dstate "$RB" 2>/dev/null | grep -q '^UpToDate/UpToDate'
}
check "initial sync" wait_for 120 "initial sync" in_sync
as_host a drbdadm secondary "$RA" || setup_ok=0
check "set-up commands" [ "$setup_ok" = 1 ]
if [ "$setup_ok" != 1 ]; then
	echo "$T_PASS passed, $T_FAIL failed"
	exit 1
fi

role() { as_host "$1" "$ST" drbd state "$2" 2>/dev/null; }
DEV_A=/dev/drbd$MA
DEV_B=/dev/drbd$MB
head -c 1M /dev/urandom >"$T/p1"
head -c 1M /dev/urandom >"$T/p2"
readback() { # readback NODE DEV PATTERN
	as_host "$1" dd if="$2" bs=1M count=1 iflag=direct status=none 2>/dev/null | cmp -s - "$3"
}

check "probe" as_host a "$ST" drbd probe
check "A starts secondary" [ "$(role a "$RA")" = secondary ]
check "B starts secondary" [ "$(role b "$RB")" = secondary ]
check "acquire on A" as_host a "$ST" drbd acquire "$RA" 20000
check "A is primary" [ "$(role a "$RA")" = primary ]
check "acquire on A again (idempotent)" as_host a "$ST" drbd acquire "$RA" 20000

out=$(as_host b "$ST" drbd acquire "$RB" 20000 2>&1)
rc=$?
log "second primary: rc=$rc: $out"
check "acquire on B refused while A is primary" [ "$rc" = 1 ]
check "B's error carries DRBD's reason" grep -qiE "state change failed|primar|refused" <<<"$out"
check "B still secondary" [ "$(role b "$RB")" = secondary ]

check "A writes" as_host a dd if="$T/p1" of="$DEV_A" bs=1M oflag=direct status=none
check "release on A" as_host a "$ST" drbd release "$RA" 20000
check "A is secondary" [ "$(role a "$RA")" = secondary ]
check "release on A again (idempotent)" as_host a "$ST" drbd release "$RA" 20000
check "acquire on B" as_host b "$ST" drbd acquire "$RB" 20000
check "B is primary" [ "$(role b "$RB")" = primary ]
check "B reads what A wrote" readback b "$DEV_B" "$T/p1"

# B writes, then is lost without a release: its link goes (as it does
# when the host is fenced). A's plain acquire must succeed: no --force.
check "B writes" as_host b dd if="$T/p2" of="$DEV_B" bs=1M oflag=direct status=none
as_host b drbdadm disconnect "$RB" >/dev/null 2>&1
not_connected() { ! connected "$1" "$2"; }
check "A sees the peer gone" wait_for 30 "disconnect" not_connected a "$RA"
check "acquire on A after B is gone" as_host a "$ST" drbd acquire "$RA" 20000
check "A is primary" [ "$(role a "$RA")" = primary ]
check "A has B's last writes" readback a "$DEV_A" "$T/p2"
check "release on A" as_host a "$ST" drbd release "$RA" 20000

# Nothing left behind.
cleanup
trap - EXIT
check "device of A removed" [ ! -b "$DEV_A" ]
check "device of B removed" [ ! -b "$DEV_B" ]
check "loop devices released" sh -c "! losetup -a | grep -q '$T/'"
check "temporary directory removed" [ ! -e "$T" ]

echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" = 0 ]
