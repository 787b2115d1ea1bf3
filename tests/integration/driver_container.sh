#!/bin/bash
# driver_container.sh - the container driver on real namespaces, overlayfs,
# cgroups, veth and CRIU, one driver action per process (ha-driver-test),
# so every action after the first also proves attach() from the run dir.
#
# Everything lives in a network namespace made here (a bridge with
# 10.213.1.1/24, guests 10.213.1.10 and .11), a temporary directory and the
# cgroup parent hactl-test-<pid>; all of it is removed at the end, and the
# last checks prove that nothing was left behind.
#
# The writable layer is an ext4 image per guest on the "shared storage"
# ($WORK/data/NAME/layer.img) mounted through a loop device: checked after
# start, across stop/start and snapshot/restore, its size as a disk quota
# (c2: 64 MiB; ENOSPC inside, nothing else harmed), the conversion of the
# old layout (data_dir/upper), a snapshot in the old format, and a shared
# directory on a file system the kernel refuses as an overlay upper (an
# overlayfs mount, refused like NFS).
#
# Prints timings (start, stop, checkpoint, restore) and ends with
# "N passed, N failed". Exit 77: not root, no overlayfs, no template. The
# CRIU part prints "skipped" when /opt/hactl/criu/bin/criu is missing.
set -uo pipefail

T_NAME=driver_container
log() { echo "[$T_NAME $(date +%T.%3N)] $*"; }
if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (namespaces, cgroups, mounts)"
	exit 77
fi

HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$HA_SRC_DIR/build/tests}
HACTL_BIN_DIR=${HACTL_BIN_DIR:-$HA_SRC_DIR/build/bin}
DT=$HA_TEST_BIN_DIR/ha-driver-test
TEMPLATE=${HACTL_TEMPLATE_DIR:-$HA_SRC_DIR/build/templates}/container
CRIU=/opt/hactl/criu/bin/criu

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
	log "timed out after ${deadline}ms waiting for: $what"
	return 1
}

for tool in ip nsenter; do
	command -v $tool >/dev/null || { echo "skipped: $tool missing"; exit 77; }
done
[ -x "$DT" ] || { echo "skipped: $DT not built"; exit 77; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
grep -qw overlay /proc/filesystems || { echo "skipped: no overlayfs"; exit 77; }
if [ ! -x "$TEMPLATE/usr/bin/hactl-workload" ]; then
	log "building the container template"
	timeout 300 "$HA_SRC_DIR/deploy/build-templates" container >/dev/null 2>&1 || true
fi
[ -x "$TEMPLATE/usr/bin/hactl-workload" ] ||
	{ echo "skipped: no container template (deploy/build-templates container)"; exit 77; }
WL=$TEMPLATE/usr/bin/hactl-workload # static: runs on the host for queries

NS=hct-$$
BR=hbr0
WORK=$(mktemp -d /tmp/hactl-ctr.XXXXXX)
export HACTL_CGROUP_PARENT=hactl-test-$$
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
CG_V2=0
[ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] && CG_V2=1

# ---- helpers -----------------------------------------------------------

# The agent side runs in the test namespace (nsenter keeps /sys and so the
# cgroup hierarchies, which `ip netns exec` would hide).
CMD="/usr/bin/hactl-workload --mem 8M --port 7000"
drv() { # drv ACTION [DIR] NAME -> ha-driver-test's line; status of the action
	local action=$1 dir="" name
	if [ "$action" = checkpoint ] || [ "$action" = checkpoint-leave ] || [ "$action" = restore ]; then
		dir=$2
		shift
	fi
	name=$2
	# shellcheck disable=SC2086
	nsenter --net="/run/netns/$NS" "$DT" container "$action" $dir \
		--name "$name" --rootfs "$TEMPLATE" \
		--cmd "$CMD" \
		--ip "$(ip_of "$name")/24" --gw 10.213.1.1 --bridge "$BR" \
		--run-dir "$WORK/run/$name" --data-dir "${DATA:-$WORK/data}/$name" \
		--mem "$MEM_KIB" --pids "$PIDS" --cpu-weight 1000 --timeout 20000 \
		$(quota_of "$name")
}
ip_of() { case $1 in c1) echo 10.213.1.10 ;; c2) echo 10.213.1.11 ;; c3) echo 10.213.1.12 ;; esac; }
quota_of() { [ "$1" != c2 ] || echo "--disk-quota $((64 * 1024))"; }
MEM_KIB=65536 # 64 MiB
PIDS=32

query() { ip netns exec "$NS" "$WL" --query "$(ip_of "$1"):7000" --timeout 1000 2>/dev/null; }
counter_of() { sed -n 's/.*"counter":\([0-9]*\).*/\1/p'; }
boot_of() { sed -n 's/.*"boot_id":"\([0-9a-f]*\)".*/\1/p'; }
answers() { query "$1" | grep -q '"counter"'; }
pid_of() { sed -n 's/^pid=//p' "$WORK/run/$1/pid" 2>/dev/null; }

cg_dirs() { # the guest's cgroup directories that exist
	local d
	if [ $CG_V2 = 1 ]; then
		d=/sys/fs/cgroup/$HACTL_CGROUP_PARENT/$1
		[ -d "$d" ] && echo "$d"
	else
		for d in /sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT/$1"; do
			[ -d "$d" ] && echo "$d"
		done
	fi
	return 0
}
cg_file() { # cg_file NAME FILE: the first guest cgroup dir holding FILE
	local d
	for d in $(cg_dirs "$1"); do
		[ -e "$d/$2" ] && { echo "$d/$2"; return 0; }
	done
	return 1
}
cg_val() { local f; f=$(cg_file "$1" "$2") && cat "$f"; }

# in_guest NAME CMD...: like `vzctl exec`: joins the guest's cgroups and
# all its namespaces.
in_guest() {
	local name=$1 pid
	shift
	pid=$(pid_of "$name")
	(
		for d in $(cg_dirs "$name"); do echo "$BASHPID" >"$d/cgroup.procs"; done
		exec nsenter -t "$pid" -a "$@"
	)
}

not() { ! "$@"; }
says() { # says PATTERN ACTION [DIR] NAME: drv's line matches PATTERN
	local pat=$1 out
	shift
	out=$(drv "$@" 2>&1)
	grep -q -- "$pat" <<<"$out" || { log "got: $out"; return 1; }
}
state_is() { says "(state $2)" state "$1"; }

time_drv() { # time_drv VAR ACTION ...: runs drv, stores milliseconds in VAR
	local var=$1 t0 rc
	shift
	t0=$(now_ms)
	drv "$@"
	rc=$?
	printf -v "$var" '%s' $(($(now_ms) - t0))
	return $rc
}

nothing_left() { # nothing_left NAME: no process, mount, veth, cgroup, file
	local name=$1 ok=0
	[ -z "$(cg_dirs "$name")" ] || { log "cgroups left: $(cg_dirs "$name")"; ok=1; }
	! grep -q " $WORK/run/$name/" /proc/self/mountinfo || { log "mount left"; ok=1; }
	! ip -n "$NS" link show "hv-$name" >/dev/null 2>&1 || { log "veth left"; ok=1; }
	[ ! -e "$WORK/run/$name" ] || { log "run dir left"; ok=1; }
	[ ! -e "$WORK/data/$name/upper" ] || { log "writable layer left"; ok=1; }
	[ ! -e "$WORK/data/$name/layer.img" ] || { log "layer image left"; ok=1; }
	[ ! -e "$WORK/data/$name/layer.lock" ] || { log "layer lock left"; ok=1; }
	[ -z "$(losetup -nO NAME -j "$WORK/data/$name/layer.img" 2>/dev/null)" ] ||
		{ log "loop device left"; ok=1; }
	return $ok
}

# layer_is_image NAME [DATA]: NAME's writable layer is DATA/NAME/layer.img
# (DATA: $WORK/data), mounted on run/NAME/layer through a loop device backed
# by it, the overlay's upper inside it, the lock naming this run directory,
# no old-layout upper directory.
layer_is_image() {
	local name=$1 data=${2:-$WORK/data} dev
	[ -f "$data/$name/layer.img" ] || { log "no $data/$name/layer.img"; return 1; }
	dev=$(awk -v m="$WORK/run/$name/layer" '$5 == m && $9 == "ext4" { print $10 }' \
		/proc/self/mountinfo)
	[ -n "$dev" ] || { log "run/$name/layer is not an ext4 mount"; return 1; }
	losetup -nO BACK-FILE "$dev" | grep -qx "$data/$name/layer.img" ||
		{ log "$dev: backed by $(losetup -nO BACK-FILE "$dev")"; return 1; }
	grep -q "upperdir=$WORK/run/$name/layer/upper," /proc/self/mountinfo ||
		{ log "the overlay's upper is not in the layer"; return 1; }
	grep -q "run=$WORK/run/$name\$" "$data/$name/layer.lock" || { log "lock?"; return 1; }
	[ ! -e "$data/$name/upper" ] || { log "$data/$name/upper exists"; return 1; }
}

nothing_left_but_dirs() { # after a failed start: no process, mount, veth, cgroup
	local name=$1 ok=0
	[ -z "$(cg_dirs "$name")" ] || { log "cgroups left: $(cg_dirs "$name")"; ok=1; }
	! grep -q " $WORK/run/$name/" /proc/self/mountinfo || { log "mount left"; ok=1; }
	! ip -n "$NS" link show "hv-$name" >/dev/null 2>&1 || { log "veth left"; ok=1; }
	[ ! -e "$WORK/run/$name/pid" ] || { log "pid file left"; ok=1; }
	return $ok
}

cleanup() {
	local name d p
	for name in c1 c2 c3; do
		drv stop "$name" >/dev/null 2>&1
		drv destroy "$name" >/dev/null 2>&1
		for d in $(cg_dirs "$name"); do
			while read -r p; do kill -9 "$p" 2>/dev/null; done <"$d/cgroup.procs"
		done
	done
	grep " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	for name in c1 c2 c3 ""; do
		if [ $CG_V2 = 1 ]; then
			rmdir "/sys/fs/cgroup/$HACTL_CGROUP_PARENT/$name" 2>/dev/null
		else
			for d in /sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT/$name"; do
				[ -d "$d" ] && rmdir "$d" 2>/dev/null
			done
		fi
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

out=$(ASAN_OPTIONS=detect_leaks=0 nsenter --net="/run/netns/$NS" "$DT" container probe)
check "probe ($out)" test $? = 0

# ---- start, network, usage --------------------------------------------------

BR=nobr
check "start without the bridge fails with a message" says "bridge nobr does not exist" start c1
BR=hbr0
check "the failed start left nothing behind" nothing_left_but_dirs c1
CMD=/usr/bin/no-such-program
check "start of a missing command fails naming it" \
	says "no-such-program: No such file or directory" start c1
check "...and leaves nothing behind" nothing_left_but_dirs c1
# A command that exits at once: start may still see it alive (it does not
# wait for it to settle); the guest is then simply stopped.
CMD=/bin/true
drv start c1 >/dev/null
check "a command that exits at once: the guest ends up stopped" \
	wait_for 5 "c1 stopped" state_is c1 stopped
drv stop c1 >/dev/null
check "...and stop leaves nothing behind" nothing_left_but_dirs c1
CMD="/usr/bin/hactl-workload --mem 8M --port 7000"
MEM_KIB=100
check "a memory limit below 16 MiB is refused" says "outside 16384 KiB..64 GiB" start c1
MEM_KIB=65536
drv destroy c1 >/dev/null

time_drv T_START start c1
check "start c1 (${T_START} ms)" test $? = 0
log "start took ${T_START} ms"
check "c1 answers on 10.213.1.10:7000 from the test namespace" wait_for 10 "c1 answers" answers c1
J=$(query c1)
BOOT1=$(boot_of <<<"$J")
check "c1 state running" state_is c1 running
INIT=$(pid_of c1)
check "init is not a child of the driver process (ppid $(ps -o ppid= -p "$INIT" | tr -d ' '))" \
	test "$(ps -o ppid= -p "$INIT" | tr -d ' ')" != "$$"
check "init is pid 1 inside, hostname c1" test "$(in_guest c1 hostname)" = c1
check "/dev/console is the console log" grep -q "boot_id" "$WORK/run/c1/console.log"
check "start of a running guest is refused" says "already running" start c1
check "c1's writable layer is an ext4 image on the shared storage, loop-mounted" \
	layer_is_image c1
check "...of the default size (1 GiB), sparse (under 64 MiB used)" \
	test "$(stat -c %s "$WORK/data/c1/layer.img")" = 1073741824 -a \
	"$(du -k "$WORK/data/c1/layer.img" | cut -f1)" -lt 65536

U=$(drv usage c1 | grep '^usage:')
log "$U"
check "usage: cpu, memory and pids counted" \
	grep -Eq 'cpu_ns=[1-9][0-9]* mem_bytes=[1-9][0-9]* pids=[1-9]' <<<"$U"

if [ $CG_V2 = 1 ]; then
	check "memory.max = $MEM_KIB KiB" test "$(cg_val c1 memory.max)" = $((MEM_KIB * 1024))
else
	check "memory.limit_in_bytes = $MEM_KIB KiB" \
		test "$(cg_val c1 memory.limit_in_bytes)" = $((MEM_KIB * 1024))
fi
check "pids.max = $PIDS" test "$(cg_val c1 pids.max)" = $PIDS

time_drv T_START2 start c2
check "start c2 beside c1 (${T_START2} ms)" test $? = 0
check "c2 answers" wait_for 10 "c2 answers" answers c2
BOOT_C2=$(query c2 | boot_of)

# ---- disk quota: c2's layer is 64 MiB -----------------------------------------

check "c2's layer is an image of 64 MiB" \
	test "$(stat -c %s "$WORK/data/c2/layer.img")" = $((64 << 20))
out=$(in_guest c2 sh -c 'dd if=/dev/zero of=/root/fill bs=1M count=100 2>&1; echo "rc=$?"')
check "writing 100 MiB in c2 fails with ENOSPC inside ($(tail -2 <<<"$out" | tr '\n' ' '))" \
	grep -q "No space left on device" <<<"$out"
check "...dd exited non-zero" grep -q "^rc=[1-9]" <<<"$out"
check "c2 still answers with its layer full" answers c2
check "c2 unharmed (same boot_id)" test "$(query c2 | boot_of)" = "$BOOT_C2"
check "c1 unharmed: it writes to its own layer" in_guest c1 sh -c 'echo ok > /root/c1-write'
check "the shared storage itself is not full: the host writes there" \
	sh -c "echo x > '$WORK/data/host-write' && rm '$WORK/data/host-write'"
in_guest c2 rm -f /root/fill
check "c2 writes again once the file is gone" in_guest c2 sh -c 'echo again > /root/after-fill'

# ---- limits -------------------------------------------------------------------

# OOM: a second workload holding 4x the guest's memory inside c1.
sleep 300 &
HOST_SLEEPER=$!
oom_before=$(cg_val c1 memory.oom_control 2>/dev/null | awk '/oom_kill /{print $2}')
[ -n "$oom_before" ] || oom_before=$(cg_val c1 memory.events | awk '/oom_kill /{print $2}')
in_guest c1 /usr/bin/hactl-workload --mem $((MEM_KIB * 4))K --port 7001 >/dev/null 2>&1
rc=$?
oom_after=$(cg_val c1 memory.oom_control 2>/dev/null | awk '/oom_kill /{print $2}')
[ -n "$oom_after" ] || oom_after=$(cg_val c1 memory.events | awk '/oom_kill /{print $2}')
check "memory hog in c1 killed by the OOM killer (exit $rc, oom_kill $oom_before -> $oom_after)" \
	test "$rc" = 137 -a "${oom_after:-0}" -gt "${oom_before:-0}"
J=$(query c1)
check "c1's workload survived the OOM kill (same boot_id, not restarted)" \
	test "$(boot_of <<<"$J")" = "$BOOT1"
check "c2 unharmed" test "$(query c2 | boot_of)" = "$BOOT_C2"
check "host unharmed (a host process lives on)" kill -0 $HOST_SLEEPER
kill $HOST_SLEEPER 2>/dev/null
wait $HOST_SLEEPER 2>/dev/null

# Fork bomb: as many sleeping children as the shell can fork.
# shellcheck disable=SC2016 # expanded by the guest's shell
in_guest c1 sh -c 'i=0; while [ $i -lt 500 ]; do sleep 3 & i=$((i+1)); done' >/dev/null 2>&1
cur=$(cg_val c1 pids.current)
ev=$(cg_val c1 pids.events | awk '/^max /{print $2}')
check "fork bomb stopped at pids.max (pids.current $cur <= $PIDS, pids.events max $ev)" \
	test "$cur" -le $PIDS -a "${ev:-0}" -gt 0
check "c1 still answers after the fork bomb" answers c1

# ---- stop, start again, attach -------------------------------------------------

in_guest c1 sh -c 'echo kept > /root/persist'
time_drv T_STOP stop c1
check "stop c1 (${T_STOP} ms)" test $? = 0
check "c1 veth removed" not ip -n "$NS" link show hv-c1 2>/dev/null
check "c1 cgroups removed" test -z "$(cg_dirs c1)"
check "c1 overlay unmounted" not grep -q " $WORK/run/c1/root " /proc/self/mountinfo
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
check "c1 init gone" gone "$INIT"
check "c1 state stopped" state_is c1 stopped
check "attach of a stopped guest: ESRCH" says "No such process" attach c1

# A lock left by a host that was fenced (it never unmounted): start takes
# it over, as the cluster starts a guest only once that host is off.
check "c1's lock went with the stop" test ! -e "$WORK/data/c1/layer.lock"
echo "host=fenced run=/var/lib/hactl/guests/c1" >"$WORK/data/c1/layer.lock"
drv start c1 >/dev/null
check "start c1 again (over a fenced host's lock)" test $? = 0
check "c1 answers again" wait_for 10 "c1 answers" answers c1
J=$(query c1)
check "restarted: a new boot_id" test "$(boot_of <<<"$J")" != "$BOOT1"
check "the writable layer survived the stop" test "$(in_guest c1 cat /root/persist)" = kept
check "...the same image, mounted again" layer_is_image c1
check "attach from a new process" says "ok (state running)" attach c1

# A guest whose init dies on its own: stopped; the next start cleans up.
INIT=$(pid_of c1)
kill -9 "$INIT"
check "c1 init killed behind the driver's back: state stopped" \
	wait_for 5 "c1 stopped" state_is c1 stopped
drv start c1 >/dev/null
check "start after a crash" test $? = 0
check "c1 answers after the crash and start" wait_for 10 "c1 answers" answers c1

drv stop c2 >/dev/null && drv destroy c2 >/dev/null
check "c2 stopped and destroyed, nothing left" nothing_left c2

# ---- checkpoint / restore -------------------------------------------------------

if [ ! -x "$CRIU" ]; then
	log "skipped: checkpoint/restore ($CRIU missing: deploy/install-criu)"
	echo "skipped: CRIU part"
else
	in_guest c1 sh -c 'echo before > /root/snap-marker; rm /etc/hosts'
	J=$(query c1)
	C0=$(counter_of <<<"$J")
	BOOT2=$(boot_of <<<"$J")
	SNAP=$WORK/snap1
	mkdir -p "$SNAP"
	time_drv T_CKPT checkpoint-leave "$SNAP" c1
	rc=$?
	check "snapshot (checkpoint-leave) of c1 at counter >= $C0 (${T_CKPT} ms)" test $rc = 0
	log "snapshot took ${T_CKPT} ms"
	J=$(query c1)
	check "c1 kept running through the snapshot (same boot_id)" \
		test "$(boot_of <<<"$J")" = "$BOOT2" -a "$(counter_of <<<"$J")" -ge "$C0"
	check "c1 thawed after the snapshot" state_is c1 running
	check "the snapshot holds an archive of the layer, no image, no upper directory" \
		test -f "$SNAP/layer.tar" -a ! -e "$SNAP/layer.img" -a ! -e "$SNAP/upper"
	check "...with the guest's files and its whiteouts (a deleted template file)" \
		sh -c "tar -tvf '$SNAP/layer.tar' | grep -q ' ./root/snap-marker\$' &&
			tar -tvf '$SNAP/layer.tar' | grep -q '^c.* 0,0 .* ./etc/hosts\$'"
	check "...as big as what the guest wrote, not as its quota (under 8 MiB)" \
		test "$(stat -c %s "$SNAP/layer.tar")" -lt $((8 << 20))
	in_guest c1 sh -c 'echo after > /root/after-snap'
	C1=$(query c1 | counter_of)

	drv stop c1 >/dev/null && drv destroy c1 >/dev/null
	check "c1 stopped and destroyed" nothing_left c1

	time_drv T_REST restore "$SNAP" c1
	rc=$?
	check "restore c1 from the snapshot (${T_REST} ms)" test $rc = 0
	log "restore took ${T_REST} ms"
	check "restored c1 answers" wait_for 10 "c1 answers" answers c1
	J=$(query c1)
	CR=$(counter_of <<<"$J")
	check "same boot_id after restore (memory state kept)" test "$(boot_of <<<"$J")" = "$BOOT2"
	check "counter continues from the snapshot ($C0 <= $CR, was $C1 before the stop)" \
		test "$CR" -ge "$C0"
	sleep 0.3
	check "counter keeps counting after restore" test "$(query c1 | counter_of)" -gt "$CR"
	check "storage of the snapshot's instant: marker present" \
		test "$(in_guest c1 cat /root/snap-marker)" = before
	check "storage of the snapshot's instant: later file absent" \
		not in_guest c1 sh -c '[ -e /root/after-snap ]'
	check "...a template file deleted before it stays deleted (whiteout restored)" \
		not in_guest c1 test -e /etc/hosts
	U=$(drv usage c1 | grep '^usage:')
	check "usage after restore (cgroups rejoined: $U)" \
		grep -Eq 'mem_bytes=[1-9][0-9]* pids=[1-9]' <<<"$U"
	check "restored c1 in its own cgroup with the limit" test "$(cg_val c1 pids.max)" = $PIDS
	check "attach to the restored c1" says "ok (state running)" attach c1
	check "the restored c1 runs on a copy of the snapshot's image" layer_is_image c1

	# Migration flavour: the dump stops the guest; restore brings it back.
	J=$(query c1)
	C2=$(counter_of <<<"$J")
	SNAP2=$WORK/snap2
	mkdir -p "$SNAP2"
	time_drv T_MIG checkpoint "$SNAP2" c1
	rc=$?
	check "migration dump of c1 (${T_MIG} ms)" test $rc = 0
	check "c1 stopped by the migration dump" state_is c1 stopped
	check "nothing of c1 left running on the source side" test -z "$(cg_dirs c1)"
	time_drv T_MREST restore "$SNAP2" c1
	check "restore after the migration dump (${T_MREST} ms)" test $? = 0
	J=$(query c1)
	check "same boot_id, counter continued ($C2 <= $(counter_of <<<"$J"))" \
		test "$(boot_of <<<"$J")" = "$BOOT2" -a "$(counter_of <<<"$J")" -ge "$C2"
	check "a second snapshot into a used directory is refused" \
		says "already holds" checkpoint-leave "$SNAP" c1

	# An agent restarted into a new mount namespace (as deploy/local-cluster
	# does) sees neither the layer nor the root: a snapshot mounts the same
	# loop device again and archives the guest's real files.
	in_guest c1 sh -c 'echo seen > /root/new-ns'
	SNAP3=$WORK/snap3
	mkdir -p "$SNAP3"
	unshare -m --propagation slave sh -c "umount -l '$WORK/run/c1/root' &&
		umount -l '$WORK/run/c1/layer' && umount -l '$WORK/run/c1' &&
		! mountpoint -q '$WORK/run/c1/layer' &&
		nsenter --net=/run/netns/$NS '$DT' container checkpoint-leave '$SNAP3' \
		--name c1 --rootfs '$TEMPLATE' --cmd x --run-dir '$WORK/run/c1' \
		--data-dir '$WORK/data/c1'" >/dev/null 2>&1
	check "snapshot from a mount namespace without the layer mount" test $? = 0
	check "...archived the guest's files" \
		sh -c "tar -tf '$SNAP3/layer.tar' | grep -q '^./root/new-ns\$'"
	check "...and left the guest running on its layer here" layer_is_image c1

	# A snapshot from before the image (format 1: images/ + upper/),
	# made from SNAP: restored into a new image.
	SNAP1=$WORK/snap-old
	mkdir -p "$SNAP1"
	cp -a "$SNAP/images" "$SNAP1/"
	sed 's/^format=2$/format=1/' "$SNAP/container.meta" >"$SNAP1/container.meta"
	mkdir "$SNAP1/upper"
	tar -xf "$SNAP/layer.tar" -C "$SNAP1/upper" --numeric-owner --xattrs --xattrs-include='*'
	drv stop c1 >/dev/null && drv destroy c1 >/dev/null
	drv restore "$SNAP1" c1 >/dev/null
	check "restore of an old-format snapshot (upper directory)" test $? = 0
	check "...its files are in the new image" \
		test "$(in_guest c1 cat /root/snap-marker)" = before
	check "...which is mounted like any" layer_is_image c1
	log "timings: start ${T_START} ms, stop ${T_STOP} ms, snapshot ${T_CKPT} ms," \
		"restore ${T_REST} ms, migration dump ${T_MIG} ms, its restore ${T_MREST} ms"
fi

# ---- the old layout: data_dir/upper is converted at start ------------------------

drv stop c1 >/dev/null
mkdir -p "$WORK/data/c3/upper/root" "$WORK/data/c3/work"
echo legacy >"$WORK/data/c3/upper/root/legacy-file"
mkdir -p "$WORK/data/c3/upper/etc" && mknod "$WORK/data/c3/upper/etc/hostname" c 0 0 # a whiteout
[ -e "$TEMPLATE/etc/hostname" ] || fail "the template has no /etc/hostname to hide" 
drv start c3 >/dev/null
check "start of a guest in the old layout" test $? = 0
check "...its files were moved into a new image" \
	test "$(in_guest c3 cat /root/legacy-file)" = legacy
check "...whiteouts kept (a deleted file stays deleted)" not in_guest c3 test -e /etc/hostname
check "...which is its layer now (old directories gone)" layer_is_image c3
check "...and the old work directory is gone" test ! -e "$WORK/data/c3/work"
drv stop c3 >/dev/null && drv destroy c3 >/dev/null
check "c3 stopped and destroyed, nothing left" nothing_left c3

# ---- a shared directory that cannot hold an overlay upper -------------------------

# An overlayfs mount as the "shared storage": the kernel refuses it as an
# overlay upper directory, as it refuses NFS ("not supported as upperdir").
mkdir -p "$WORK/ovl/lower" "$WORK/ovl/upper" "$WORK/ovl/work" "$WORK/ovshared" "$WORK/ovtry"
mount -t overlay overlay -o "lowerdir=$WORK/ovl/lower,upperdir=$WORK/ovl/upper,workdir=$WORK/ovl/work" \
	"$WORK/ovshared"
mkdir -p "$WORK/ovshared/u" "$WORK/ovshared/w"
if mount -t overlay overlay -o "lowerdir=$TEMPLATE,upperdir=$WORK/ovshared/u,workdir=$WORK/ovshared/w" \
	"$WORK/ovtry" 2>/dev/null; then
	umount "$WORK/ovtry"
	log "skipped: this kernel takes an overlay upper on overlayfs"
else
	pass "the kernel refuses an overlay upper directory on the test's shared directory"
	DATA=$WORK/ovshared
	drv start c3 >/dev/null
	check "c3 starts with its data directory there" test $? = 0
	check "...its layer is an image there" layer_is_image c3 "$WORK/ovshared"
	in_guest c3 sh -c 'echo on-ovl > /root/kept'
	drv stop c3 >/dev/null
	drv start c3 >/dev/null
	check "...and keeps what it wrote across stop and start" \
		test "$(in_guest c3 cat /root/kept)" = on-ovl
	drv stop c3 >/dev/null && drv destroy c3 >/dev/null
	DATA=
fi
umount "$WORK/ovshared"
drv start c1 >/dev/null

# ---- the end ----------------------------------------------------------------------

drv stop c1 >/dev/null
check "final stop" test $? = 0
drv destroy c1 >/dev/null
check "final destroy" test $? = 0
check "nothing of c1 left" nothing_left c1
cleanup
left=""
[ -e "$WORK" ] && left="$left $WORK"
ip netns list | grep -qw "$NS" && left="$left netns:$NS"
for d in /sys/fs/cgroup/"$HACTL_CGROUP_PARENT" /sys/fs/cgroup/*/"$HACTL_CGROUP_PARENT"; do
	[ -d "$d" ] && left="$left $d"
done
grep -q "hactl-ctr" /proc/self/mountinfo && left="$left mounts"
check "nothing left behind${left:+ (left:$left)}" test -z "$left"

echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
