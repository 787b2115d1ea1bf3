#!/bin/bash
# driver_container_mig.sh - live migration of containers between two
# "hosts" (two network namespaces, each with its own bridge, the bridges
# joined by a veth: one L2 segment), driving the container driver's
# migrate_send / migrate_recv / migrate_finish through ha-driver-test.
#
# Host A's agent side runs with the cgroup parent hactl-miga-<pid> and run
# directories under $WORK/a, host B's with hactl-migb-<pid> and $WORK/b;
# the guests' writable layers are ext4 images in $WORK/data (layer.img),
# which both "hosts" see, as they would see the shared storage; only one
# host at a time has an image mounted (checked while both hold the guest,
# before the decision: the destination).
#
#   c1 (workload --mem 16M):  A -> B commit, B -> A abort, B -> A with
#                             the destination's restore failing (a CRIU
#                             that fails: the receiver's --criu), B -> A
#                             with the destination dying holding the layer
#   c2 (workload --mem 256M): A -> B commit, B -> A with the receiver
#                             killed mid-stream
#
# The layer is handed over after the final dump (the source's stopped
# tree killed, its state kept in the source's images), the destination
# restores before it answers, and an abort restores the guest at the
# source from its images once the layer is back.
#
# While each migration runs, a probe queries the guest every ~20 ms from
# host A; the longest gap between two answers is the downtime seen by a
# client (freeze -> resume, plus up to one probe interval). Prints the
# figures and ends with "N passed, N failed". Exit 77: not root, no
# overlayfs, no template, no CRIU.
set -uo pipefail

T_NAME=driver_container_mig
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
now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; }
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
wait_line() { # wait_line FILE PATTERN TIMEOUT_S: polls every 10 ms
	local deadline=$(($(now_ms) + $3 * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.01
	done
	log "timed out waiting for '$2' in ${1##*/}"
	return 1
}

for tool in ip nsenter; do
	command -v $tool >/dev/null || { echo "skipped: $tool missing"; exit 77; }
done
[ -x "$DT" ] || { echo "skipped: $DT not built"; exit 77; }
[ -x "$CRIU" ] || { echo "skipped: $CRIU missing (deploy/install-criu)"; exit 77; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
grep -qw overlay /proc/filesystems || { echo "skipped: no overlayfs"; exit 77; }
if [ ! -x "$TEMPLATE/usr/bin/hactl-workload" ]; then
	log "building the container template"
	timeout 300 "$HA_SRC_DIR/deploy/build-templates" container >/dev/null 2>&1 || true
fi
[ -x "$TEMPLATE/usr/bin/hactl-workload" ] ||
	{ echo "skipped: no container template (deploy/build-templates container)"; exit 77; }
WL=$TEMPLATE/usr/bin/hactl-workload # static: runs on the host for queries

NSA=hcma-$$
NSB=hcmb-$$
BR=hbr0
PORT=7700
WORK=$(mktemp -d /tmp/hactl-mig.XXXXXX)
CGA=hactl-miga-$$
CGB=hactl-migb-$$
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
CG_V2=0
[ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] && CG_V2=1
# A receiver that dies before reading its decision must not kill us.
trap '' PIPE

# ---- helpers -------------------------------------------------------------------

ns_of() { case $1 in a) echo "$NSA" ;; b) echo "$NSB" ;; esac; }
cg_of() { case $1 in a) echo "$CGA" ;; b) echo "$CGB" ;; esac; }
host_ip() { case $1 in a) echo 10.213.4.1 ;; b) echo 10.213.4.2 ;; esac; }
ip_of() { case $1 in c1) echo 10.213.4.10 ;; c2) echo 10.213.4.11 ;; c3) echo 10.213.4.12 ;; esac; }
wl_mem() { case $1 in c2) echo 256M ;; *) echo 16M ;; esac; }
mem_kib() { case $1 in c2) echo 393216 ;; *) echo 65536 ;; esac; } # 384 / 64 MiB

# ARGS: ha-driver-test's options for guest NAME on HOST.
set_args() {
	local host=$1 name=$2
	ARGS=(--name "$name" --rootfs "$TEMPLATE"
		--cmd "/usr/bin/hactl-workload --mem $(wl_mem "$name") --port 7000"
		--ip "$(ip_of "$name")/24" --gw 10.213.4.1 --bridge "$BR"
		--run-dir "$WORK/$host/run/$name" --data-dir "$WORK/data/$name"
		--mem "$(mem_kib "$name")" --pids 64 --timeout 30000)
}
# drv HOST ACTION NAME [more options]: one action as HOST's agent would run it.
drv() {
	local host=$1 action=$2 name=$3
	shift 3
	set_args "$host" "$name"
	HACTL_CGROUP_PARENT=$(cg_of "$host") nsenter --net="/run/netns/$(ns_of "$host")" \
		"$DT" container "$action" "${ARGS[@]}" "$@"
}
says() { # says PATTERN HOST ACTION NAME
	local pat=$1 out
	shift
	out=$(drv "$@" 2>&1)
	grep -q -- "$pat" <<<"$out" || { log "got: $out"; return 1; }
}
state_is() { says "(state $3)" "$1" state "$2"; } # state_is HOST NAME STATE

query() { nsenter --net="/run/netns/$NSA" "$WL" --query "$(ip_of "$1"):7000" --timeout "${2:-1000}" 2>/dev/null; }
counter_of() { sed -n 's/.*"counter":\([0-9]*\).*/\1/p'; }
boot_of() { sed -n 's/.*"boot_id":"\([0-9a-f]*\)".*/\1/p'; }
memerr_of() { sed -n 's/.*"mem_errors":\([0-9]*\).*/\1/p'; }
answers() { query "$1" | grep -q '"counter"'; }

cg_dirs() { # cg_dirs HOST NAME: the guest's cgroup directories on HOST
	local d p
	p=$(cg_of "$1")
	if [ $CG_V2 = 1 ]; then
		d=/sys/fs/cgroup/$p/$2
		[ -d "$d" ] && echo "$d"
	else
		for d in /sys/fs/cgroup/*/"$p/$2"; do
			[ -d "$d" ] && echo "$d"
		done
	fi
	return 0
}
pid_of() { sed -n 's/^pid=//p' "$WORK/$1/run/$2/pid" 2>/dev/null; }
procs_of() { # procs_of HOST NAME: the pids in the guest's cgroups on HOST
	local d
	for d in $(cg_dirs "$1" "$2"); do cat "$d/cgroup.procs" 2>/dev/null; done
}
in_guest() { # in_guest HOST NAME CMD...: joins the guest's cgroups and namespaces
	local host=$1 name=$2 pid
	shift 2
	pid=$(pid_of "$host" "$name")
	[ -n "$pid" ] || return 1
	(
		for d in $(cg_dirs "$host" "$name"); do echo "$BASHPID" >"$d/cgroup.procs"; done
		exec nsenter -t "$pid" -a "$@"
	)
}
# layer_on HOST NAME: HOST has NAME's layer image mounted, through a loop
# device whose backing file is the image on the shared storage, and the
# image's lock names HOST.
layer_on() {
	local host=$1 name=$2 dev
	dev=$(awk -v m="$WORK/$host/run/$name/layer" '$5 == m && $9 == "ext4" { print $10 }' \
		/proc/self/mountinfo)
	[ -n "$dev" ] || { log "$host: no layer mount for $name"; return 1; }
	losetup -nO BACK-FILE "$dev" | grep -qx "$WORK/data/$name/layer.img" ||
		{ log "$host: $dev is not backed by the image"; return 1; }
	grep -q "run=$WORK/$host/run/$name\$" "$WORK/data/$name/layer.lock" ||
		{ log "lock: $(cat "$WORK/data/$name/layer.lock")"; return 1; }
}
layer_not_on() { # layer_not_on HOST NAME: not mounted there
	! awk -v m="$WORK/$1/run/$2/layer" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}
gone_from() { # gone_from HOST NAME: no process, cgroup, mount, veth, pid file
	local host=$1 name=$2 ok=0
	[ -z "$(cg_dirs "$host" "$name")" ] || { log "$host: cgroups left: $(cg_dirs "$host" "$name")"; ok=1; }
	! grep -q " $WORK/$host/run/$name/" /proc/self/mountinfo || { log "$host: mount left"; ok=1; }
	! ip -n "$(ns_of "$host")" link show "hv-$name" >/dev/null 2>&1 || { log "$host: veth left"; ok=1; }
	[ ! -e "$WORK/$host/run/$name/pid" ] || { log "$host: pid file left"; ok=1; }
	return $ok
}

# ---- one migration ----------------------------------------------------------------

# probe NAME FILE: "ms counter boot_id" per answer until $WORK/probe.stop exists
probe() {
	local j t
	while [ ! -e "$WORK/probe.stop" ]; do
		t=$(now_ms)
		if j=$(query "$1" 150); then
			echo "$t $(counter_of <<<"$j") $(boot_of <<<"$j")" >>"$2"
		fi
		sleep 0.02
	done
}
# The longest gap between two answers in a probe file, in ms.
probe_gap() { awk 'NR > 1 { g = $1 - p; if (g > m) m = g } { p = $1 } END { print m + 0 }' "$1"; }

exited() { ! kill -0 "$1" 2>/dev/null; }
reap() { # reap PID: waits (bounded) for PID, kills it past 30 s; sets RC
	wait_for 30 "process $1 to end" exited "$1" || kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	RC=$?
}
sent_field() { sed -n "s/^sent:.* $1=\([0-9]*\).*/\1/p" "$WORK/out.send"; }

# migrate NAME FROM TO commit|abort|kill|fail: runs both sides (the
# receiver with $RECV_ARGS; "fail": one of them fails); leaves their
# output in $WORK/out.send and out.recv, their exit status in S_RC and R_RC,
# the client-side downtime in M_GAP (ms) and the wall time in M_WALL.
migrate() {
	local name=$1 from=$2 to=$3 how=$4 fs=$WORK/fifo.send fr=$WORK/fifo.recv
	local t0 t_ready spid rpid probe_pid f
	rm -f "$fs" "$fr" "$WORK/out.send" "$WORK/out.recv" "$WORK/probe.out" "$WORK/probe.stop"
	mkfifo "$fs" "$fr"
	set_args "$to" "$name"
	HACTL_CGROUP_PARENT=$(cg_of "$to") nsenter --net="/run/netns/$(ns_of "$to")" \
		"$DT" container migrate-recv "${ARGS[@]}" --listen $PORT ${RECV_ARGS:-} \
		<"$fr" >"$WORK/out.recv" 2>&1 &
	rpid=$!
	exec {FR}>"$fr"
	wait_line "$WORK/out.recv" '^listening' 10
	probe "$name" "$WORK/probe.out" &
	probe_pid=$!
	sleep 0.3 # a few answers before
	t0=$(now_ms)
	set_args "$from" "$name"
	HACTL_CGROUP_PARENT=$(cg_of "$from") nsenter --net="/run/netns/$(ns_of "$from")" \
		"$DT" container migrate-send "${ARGS[@]}" --to "$(host_ip "$to"):$PORT" \
		<"$fs" >"$WORK/out.send" 2>&1 &
	spid=$!
	exec {FS}>"$fs"
	if [ "$how" = kill ]; then
		# SIGKILL once the receiver is writing the memory pages.
		local deadline=$(($(now_ms) + 60000)) hit=""
		while [ -z "$hit" ] && [ "$(now_ms)" -lt "$deadline" ] && kill -0 "$rpid" 2>/dev/null; do
			for f in "$WORK/$to/run/$name"/mig-in.*/images/pages-*.img; do
				[ -s "$f" ] && { hit=$f; break; }
			done
			[ -n "$hit" ] || sleep 0.01
		done
		kill -9 "$rpid" 2>/dev/null
		log "receiver killed (had written ${hit##*/}: $(stat -c %s "$hit" 2>/dev/null) bytes)"
		M_KILLED_AT=${hit##*/}
	elif [ "$how" = fail ]; then
		# both sides end on their own: no decision is asked for
		wait_line "$WORK/out.recv" "migrate-recv: " 120
		wait_line "$WORK/out.send" "migrate-send: " 120
	else
		wait_line "$WORK/out.recv" "migrate-recv: " 120
		wait_line "$WORK/out.send" "migrate-send: " 120
		t_ready=$(now_ms)
		if [ "$how" = commit ] && [ -n "${BEFORE_COMMIT:-}" ]; then
			$BEFORE_COMMIT
		fi
		if [ -n "${BEFORE_DECISION:-}" ]; then
			$BEFORE_DECISION
		fi
		# Both at once, as the cluster's decision reaches both agents.
		echo "$how" >&"$FR"
		echo "$how" >&"$FS"
		wait_line "$WORK/out.recv" "migrate-finish" 60
		M_DECIDE=$(($(now_ms) - t_ready))
	fi
	exec {FR}>&- {FS}>&-
	reap "$rpid"
	R_RC=$RC
	reap "$spid"
	S_RC=$RC
	M_WALL=$(($(now_ms) - t0))
	sleep 0.5 # answers after
	touch "$WORK/probe.stop"
	wait "$probe_pid" 2>/dev/null
	M_GAP=$(probe_gap "$WORK/probe.out")
	log "source:      $(tr '\n' '|' <"$WORK/out.send")"
	log "destination: $(tr '\n' '|' <"$WORK/out.recv")"
}

cleanup() {
	local h name d p
	for h in a b; do
		for name in c1 c2 c3; do
			drv "$h" stop "$name" >/dev/null 2>&1
			for d in $(cg_dirs "$h" "$name"); do
				while read -r p; do kill -9 "$p" 2>/dev/null; done <"$d/cgroup.procs"
			done
		done
	done
	grep " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	ip netns del "$NSA" 2>/dev/null
	ip netns del "$NSB" 2>/dev/null
	for p in "$CGA" "$CGB"; do
		for name in c1 c2 c3 ""; do
			if [ $CG_V2 = 1 ]; then
				rmdir "/sys/fs/cgroup/$p/$name" 2>/dev/null
			else
				for d in /sys/fs/cgroup/*/"$p/$name"; do
					[ -d "$d" ] && rmdir "$d" 2>/dev/null
				done
			fi
		done
	done
	rm -rf --one-file-system "$WORK"
}
trap 'cleanup; exit 1' INT TERM

# ---- two hosts on one segment ----------------------------------------------------

net_setup() {
	local h
	for h in a b; do
		ip netns add "$(ns_of $h)" &&
			ip -n "$(ns_of $h)" link set lo up &&
			ip -n "$(ns_of $h)" link add "$BR" type bridge &&
			ip -n "$(ns_of $h)" addr add "$(host_ip $h)/24" dev "$BR" &&
			ip -n "$(ns_of $h)" link set "$BR" up || return 1
	done
	ip link add hml-a netns "$NSA" type veth peer name hml-b netns "$NSB" &&
		ip -n "$NSA" link set hml-a master "$BR" up &&
		ip -n "$NSB" link set hml-b master "$BR" up
}
if ! net_setup; then
	fail "test network"
	cleanup
	echo "$T_PASS passed, $T_FAIL failed"
	exit 1
fi

# ---- c1, 16 MiB: commit --------------------------------------------------------------

drv a start c1 >/dev/null
check "start c1 on A" test $? = 0
check "c1 answers" wait_for 10 "c1 answers" answers c1
in_guest a c1 sh -c 'echo from-a > /root/marker'
J=$(query c1)
BOOT1=$(boot_of <<<"$J")
C_BEFORE=$(counter_of <<<"$J")
GUEST_MAC=$(ip netns exec "$NSA" ip neigh show "$(ip_of c1)" | sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p')

# Just before the commit: host A's ARP entry for c1 is made wrong; only the
# destination's gratuitous ARP can put it right before the next probe.
poison_arp() {
	ip -n "$NSA" neigh replace "$(ip_of c1)" lladdr 02:00:00:00:00:01 dev "$BR" nud stale
}
before_commit_c1() {
	poison_arp
	LAYER_A_BEFORE=0
	LAYER_B_BEFORE=0
	layer_not_on a c1 && LAYER_A_BEFORE=1
	layer_on b c1 && LAYER_B_BEFORE=1
	LOCK_BEFORE=$(cat "$WORK/data/c1/layer.lock")
}
check "c1's layer is an image on the shared storage, mounted on A" layer_on a c1
check "...no upper directory on the shared storage" test ! -e "$WORK/data/c1/upper"
BEFORE_COMMIT=before_commit_c1
migrate c1 a b commit
BEFORE_COMMIT=
check "before the decision, the layer was mounted on B only (handed over by A)" \
	test "$LAYER_A_BEFORE$LAYER_B_BEFORE" = 11
check "...the lock named B and the handover from A ($(tr '\n' '|' <<<"$LOCK_BEFORE"))" \
	grep -q "(handover from host=.* run=$WORK/a/run/c1, migration" <<<"$LOCK_BEFORE"
NEIGH=$(ip -n "$NSA" neigh show "$(ip_of c1)")
check "migrate-send c1 A -> B: ok, source paused until the decision" \
	grep -q "migrate-send: ok (state paused)" "$WORK/out.send"
check "migrate-recv c1 on B: received, destination paused until the decision" \
	grep -q "migrate-recv: ok (state paused)" "$WORK/out.recv"
check "commit on both sides" test "$S_RC" = 0 -a "$R_RC" = 0
check "destination commit resumed c1" grep -q "migrate-finish commit: ok (state running)" "$WORK/out.recv"
check "source commit discarded c1 on A" grep -q "migrate-finish commit: ok (state stopped)" "$WORK/out.send"
check "gratuitous ARP corrected host A's entry (${NEIGH})" \
	test -n "$GUEST_MAC" -a "$(sed -n 's/.*lladdr \([0-9a-f:]*\).*/\1/p' <<<"$NEIGH")" = "$GUEST_MAC"
J=$(query c1)
check "c1 answers from B: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT1" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "c1's memory intact after the migration (mem_errors 0)" test "$(memerr_of <<<"$J")" = 0
check "the probe never saw another boot_id" \
	test "$(awk '{print $3}' "$WORK/probe.out" | sort -u)" = "$BOOT1"
check "c1 runs on B" state_is b c1 running
check "c1 is gone from A (process, cgroups, mount, veth, pid file)" gone_from a c1
check "A's run directory of c1 removed" test ! -e "$WORK/a/run/c1"
check "no image files left on B" not compgen -G "$WORK/b/run/c1/mig-*"
check "the shared writable layer was kept: the marker is there on B" \
	test "$(in_guest b c1 cat /root/marker)" = from-a
in_guest b c1 sh -c 'echo from-b > /root/marker2'
check "c1's layer is now mounted on B (lock, loop device on the image)" layer_on b c1
check "...and no longer on A" layer_not_on a c1
check "writes on B land in the layer image" \
	test "$(cat "$WORK/b/run/c1/layer/upper/root/marker2")" = from-b
M16_DOWN=$(sent_field downtime_ms)
M16_TOTAL=$(sent_field total_ms)
M16_BYTES=$(sent_field transferred)
M16_GAP=$M_GAP
M16_WALL=$M_WALL
M16_RESUME=$((M16_DOWN + M_DECIDE))
log "c1 (16M): ${M16_BYTES} bytes; driver: freeze -> destination ready ${M16_DOWN} ms," \
	"total ${M16_TOTAL} ms; freeze -> resumed ~${M16_RESUME} ms (decision and resume" \
	"${M_DECIDE} ms); client: longest gap between answers ${M16_GAP} ms; wall ${M16_WALL} ms"
check "client-side downtime measured (${M16_GAP} ms) and bounded (< 10 s)" \
	test "$M16_GAP" -gt 0 -a "$M16_GAP" -lt 10000

# ---- c1: abort -------------------------------------------------------------------------

J=$(query c1)
C_BEFORE=$(counter_of <<<"$J")
before_abort_c1() { # (called as BEFORE_COMMIT would be, before the decision)
	LAYER_A_BEFORE=0
	LAYER_B_BEFORE=0
	layer_on a c1 && LAYER_A_BEFORE=1
	layer_not_on b c1 && LAYER_B_BEFORE=1
}
BEFORE_DECISION=before_abort_c1
migrate c1 b a abort
BEFORE_DECISION=
check "migrate c1 B -> A streamed and was restored paused on A" \
	grep -q "migrate-recv: ok (state paused)" "$WORK/out.recv"
check "before the abort, the layer was mounted on A only (handed over by B)" \
	test "$LAYER_A_BEFORE$LAYER_B_BEFORE" = 11
check "abort on both sides" test "$S_RC" = 0 -a "$R_RC" = 0
check "source abort resumed c1 on B" grep -q "migrate-finish abort: ok (state running)" "$WORK/out.send"
check "destination abort removed the copy on A" \
	grep -q "migrate-finish abort: ok (state stopped)" "$WORK/out.recv"
J=$(query c1)
check "c1 answers from B again: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT1" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "c1 runs on B" state_is b c1 running
check "nothing of c1 left on A" gone_from a c1
check "A's run directory of c1 removed" test ! -e "$WORK/a/run/c1"
check "the writable layer survived the abort" test "$(in_guest b c1 cat /root/marker2)" = from-b
check "...mounted on B again" layer_on b c1
check "...A has no mount of it" layer_not_on a c1
log "c1 abort: client-side gap ${M_GAP} ms, wall ${M_WALL} ms"

# ---- c1: the destination's restore fails after the source released the layer ----------
# The receiver's CRIU fails (an injected fault: --criu names a program
# that exits 1): the source has already killed its stopped tree and handed
# the layer over; the destination releases it, answers the error, and the
# source takes it back and restores c1 from its own images.

printf '#!/bin/sh\necho "injected fault: criu $*" >&2\nexit 1\n' >"$WORK/criu-fails"
chmod +x "$WORK/criu-fails"
in_guest b c1 sh -c 'echo before-fail > /root/marker3 && sync'
J=$(query c1)
C_BEFORE=$(counter_of <<<"$J")
PID_BEFORE=$(pid_of b c1)
RECV_ARGS="--criu $WORK/criu-fails"
migrate c1 b a fail
RECV_ARGS=
check "the destination's restore failed ($(grep 'migrate-recv:' "$WORK/out.recv" | head -1))" \
	grep -q "migrate-recv: .*criu" "$WORK/out.recv"
check "...after the source had handed the layer over: its tree was killed and is restored (init pid $PID_BEFORE -> $(pid_of b c1))" \
	test -n "$(pid_of b c1)" -a "$(pid_of b c1)" != "$PID_BEFORE"
check "migrate-send failed with the destination's error" \
	grep -q "migrate-send: .*criu" "$WORK/out.send"
check "c1 runs on B again" wait_for 5 "c1 running" state_is b c1 running
J=$(query c1 2000)
check "c1 answers from B: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT1" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "c1's memory intact (mem_errors 0)" test "$(memerr_of <<<"$J")" = 0
check "its data is there: the markers written on A and on B, and just before" \
	test "$(in_guest b c1 cat /root/marker /root/marker2 /root/marker3 | tr '\n' ' ')" = \
	"from-a from-b before-fail "
check "the layer is mounted on B, the lock names B" layer_on b c1
check "...A has no mount of it" layer_not_on a c1
check "nothing of c1 left on A" gone_from a c1
check "no image files left on B" not compgen -G "$WORK/b/run/c1/mig-*"
check "B's veth of c1 is on the bridge" grep -q "master $BR" <<<"$(ip -n "$NSB" link show hv-c1)"
log "c1 restore failure: client-side gap ${M_GAP} ms, wall ${M_WALL} ms"

# ---- c1: the destination dies holding the layer ----------------------------------------
# B -> A; A answers "ok" (restored, the layer mounted there) and its agent
# dies (SIGKILL) before the decision: the abort reaches B, which must not
# mount the layer while A holds it. It waits; what A's next agent does
# with the copy (the driver's discard: here a stop on A) releases the
# layer, and B takes it back and restores c1 from its own images.

in_guest b c1 sh -c 'echo before-dst-death > /root/marker4 && sync'
C_BEFORE=$(counter_of <<<"$(query c1)")
PID_BEFORE=$(pid_of b c1)
rm -f "$WORK/fifo.send" "$WORK/fifo.recv" "$WORK/out.send" "$WORK/out.recv"
mkfifo "$WORK/fifo.send" "$WORK/fifo.recv"
set_args a c1
HACTL_CGROUP_PARENT=$CGA nsenter --net="/run/netns/$NSA" \
	"$DT" container migrate-recv "${ARGS[@]}" --listen $PORT <"$WORK/fifo.recv" \
	>"$WORK/out.recv" 2>&1 &
rpid=$!
exec {FR}>"$WORK/fifo.recv" # open, silent: its decision never comes (an end would abort)
wait_line "$WORK/out.recv" '^listening' 10
set_args b c1
HACTL_CGROUP_PARENT=$CGB nsenter --net="/run/netns/$NSB" \
	"$DT" container migrate-send "${ARGS[@]}" --to "$(host_ip a):$PORT" \
	<"$WORK/fifo.send" >"$WORK/out.send" 2>&1 &
spid=$!
exec {FS}>"$WORK/fifo.send"
wait_line "$WORK/out.send" "migrate-send: " 120
wait_line "$WORK/out.recv" "migrate-recv: " 10
kill -9 "$rpid" 2>/dev/null
wait "$rpid" 2>/dev/null
exec {FR}>&-
check "migrate-send c1 B -> A: ok, then A's side died" \
	grep -q "migrate-send: ok (state paused)" "$WORK/out.send"
check "...A had restored it and holds the layer" layer_on a c1
echo abort >&"$FS"
sleep 2
check "B's abort waits while A holds the layer (not finished after 2 s)" \
	not grep -q "migrate-finish" "$WORK/out.send"
check "...and B has not mounted it: one host at a time" layer_not_on b c1
check "...the lock still names A ($(sed -n 1p "$WORK/data/c1/layer.lock"))" \
	grep -q "run=$WORK/a/run/c1\$" <<<"$(sed -n 1p "$WORK/data/c1/layer.lock")"
drv a stop c1 --timeout 0 >/dev/null 2>&1 # SIGKILL, as a discard does
check "A's copy discarded: the layer released there" layer_not_on a c1
wait_line "$WORK/out.send" "migrate-finish" 70
exec {FS}>&-
reap "$spid"
check "B's abort then resumed c1 ($(grep 'migrate-finish' "$WORK/out.send"))" \
	grep -q "migrate-finish abort: ok (state running)" "$WORK/out.send"
J=$(query c1 2000)
check "c1 answers from B: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J")), restored (pid $PID_BEFORE -> $(pid_of b c1))" \
	test "$(boot_of <<<"$J")" = "$BOOT1" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE" \
	-a "$(pid_of b c1)" != "$PID_BEFORE"
check "its data is there" test "$(in_guest b c1 cat /root/marker3 /root/marker4 | tr '\n' ' ')" = \
	"before-fail before-dst-death "
check "the layer is mounted on B, the lock names B" layer_on b c1
check "nothing of c1 left on A" gone_from a c1
check "no image files left on B" not compgen -G "$WORK/b/run/c1/mig-*"

# ---- c1 paused: refused, left paused ----------------------------------------------------
# CRIU must not find the cgroup frozen (docs/migration.md): a paused
# guest is refused before anything is dumped; the cluster moves only
# running guests anyway.
pause_guest() { # pause_guest HOST NAME 1|0: as an operator's pause would
	local d
	for d in $(cg_dirs "$1" "$2"); do
		if [ $CG_V2 = 1 ]; then
			echo "$3" >"$d/cgroup.freeze"
		elif [ -e "$d/freezer.state" ]; then
			if [ "$3" = 1 ]; then echo FROZEN >"$d/freezer.state"; else echo THAWED >"$d/freezer.state"; fi
		fi
	done
}
C_BEFORE=$(counter_of <<<"$(query c1)")
pause_guest b c1 1
check "c1 paused on B" wait_for 5 "c1 paused" state_is b c1 paused
drv a migrate-recv c1 --listen $PORT </dev/null >"$WORK/out.recv" 2>&1 &
rpid=$!
wait_line "$WORK/out.recv" '^listening' 10
out=$(drv b migrate-send c1 --to "$(host_ip a):$PORT" 2>&1 </dev/null)
S_RC=$?
reap "$rpid"
refused() { [ "$S_RC" != 0 ] && grep -q "the guest is paused; resume it first" <<<"$out"; }
check "migrate-send of the paused c1 refused ($out)" refused
drv a stop c1 >/dev/null 2>&1
check "...nothing of c1 left on A" gone_from a c1
check "c1 still paused on B" state_is b c1 paused
pause_guest b c1 0
check "c1 runs once thawed" wait_for 5 "c1 running" state_is b c1 running
J=$(query c1 2000)
check "...and answers: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT1" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "...with no task left stopped" not grep -q "^State:.*T (stopped)" $(for p in $(procs_of b c1); do echo /proc/$p/status; done) /dev/null

# ---- hostile streams ---------------------------------------------------------------------

# Bytes of the stream format (docs/containers.md), little-endian.
le() { # le VALUE BYTES
	local i
	for ((i = 0; i < $2; i++)); do printf '\\x%02x' $((($1 >> (8 * i)) & 255)); done
}
rec() { # rec TYPE ROUND NAME DATA_LEN: one record header and its name
	printf 'HCMG'
	printf '%b' "$(le 1 2)$(le "$1" 2)$(le "$2" 4)$(le ${#3} 4)$(le "$4" 8)"
	printf '%s' "$3"
}
manifest() { # manifest TEXT: a MANIFEST record of round 0
	rec 1 0 "" ${#1}
	printf '%s' "$1"
}
# hostile WHAT PATTERN [close]: sends $WORK/hostile to a receiver of c3 on
# A; its answer (with "close": what it printed, the sender hanging up at
# once) must match PATTERN and nothing may be left behind.
hostile() {
	local what=$1 pat=$2 rpid out read="head -1 <&3"
	rm -f "$WORK/out.hostile"
	set_args a c3
	HACTL_CGROUP_PARENT=$CGA nsenter --net="/run/netns/$NSA" \
		"$DT" container migrate-recv "${ARGS[@]}" --listen $PORT </dev/null >"$WORK/out.hostile" 2>&1 &
	rpid=$!
	wait_line "$WORK/out.hostile" '^listening' 10
	[ "${3:-}" = close ] && read="exec 3>&-"
	out=$(timeout 20 nsenter --net="/run/netns/$NSB" bash -c \
		"exec 3<>/dev/tcp/$(host_ip a)/$PORT && cat '$WORK/hostile' >&3 && $read" 2>&1)
	reap "$rpid"
	[ "${3:-}" = close ] && out=$(grep "migrate-recv:" "$WORK/out.hostile")
	check "hostile stream ($what) refused: '${out:0:120}'" \
		test "$RC" = 1 -a -n "$(grep -- "$pat" <<<"$out")"
	check "...nothing of it left on A" gone_from a c3
	check "...no file outside the receiver's directory" \
		test -z "$(find "$WORK" -name evil 2>/dev/null)" -a ! -e "$WORK/a/run/c3/mig-in."*
}
printf 'GET / HTTP/1.0\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxx' >"$WORK/hostile"
hostile "not the format" "not a container migration stream"
{
	manifest $'format=1\nname=c3\nmode=stopcopy\nround=0\nfiles=1\nbytes=4\nfile=4 ../evil\n'
	rec 2 0 "../evil" 4
	printf 'evil'
} >"$WORK/hostile"
hostile "a path in a file name" "bad file line"
manifest $'format=1\nname=c3\nround=0\nfiles=1\nbytes=99999999999999\nfile=99999999999999 pages-1.img\n' \
	>"$WORK/hostile"
hostile "more than the guest's memory" "above the"
manifest $'format=1\nname=other\nround=0\nfiles=0\nbytes=0\n' >"$WORK/hostile"
hostile "another guest's stream" "not a format-1 stream of c3"
{
	manifest $'format=1\nname=c3\nround=0\nfiles=1\nbytes=4\nfile=4 core-1.img\n'
	rec 2 0 "core-1.img" 4
	printf 'co'
} >"$WORK/hostile"
hostile "cut short" "closed the stream" close
rm -rf "${WORK:?}/a/run/c3"

# ---- c2, 256 MiB: commit ------------------------------------------------------------------

drv a start c2 >/dev/null
check "start c2 (256 MiB workload, 384 MiB limit) on A" test $? = 0
check "c2 answers" wait_for 20 "c2 answers" answers c2
sleep 3 # the workload touches all of its memory
J=$(query c2)
BOOT2=$(boot_of <<<"$J")
C_BEFORE=$(counter_of <<<"$J")
migrate c2 a b commit
check "migrate c2 A -> B committed" test "$S_RC" = 0 -a "$R_RC" = 0
J=$(query c2)
check "c2 answers from B: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT2" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "c2's 256 MiB intact (mem_errors 0)" test "$(memerr_of <<<"$J")" = 0
check "c2 runs on B, gone from A" state_is b c2 running
check "nothing of c2 left on A" gone_from a c2
M256_DOWN=$(sent_field downtime_ms)
M256_TOTAL=$(sent_field total_ms)
M256_BYTES=$(sent_field transferred)
M256_GAP=$M_GAP
M256_WALL=$M_WALL
M256_RESUME=$((M256_DOWN + M_DECIDE))
log "c2 (256M): ${M256_BYTES} bytes; driver: freeze -> destination ready ${M256_DOWN} ms," \
	"total ${M256_TOTAL} ms; freeze -> resumed ~${M256_RESUME} ms (decision and resume" \
	"${M_DECIDE} ms); client: longest gap between answers ${M256_GAP} ms; wall ${M256_WALL} ms"
check "c2 streamed at least its 256 MiB (${M256_BYTES} bytes)" test "${M256_BYTES:-0}" -ge 268435456

# ---- c2: the receiver dies mid-stream --------------------------------------------------------

J=$(query c2)
C_BEFORE=$(counter_of <<<"$J")
migrate c2 b a kill
check "the receiver was killed while the pages arrived (${M_KILLED_AT:-nothing})" \
	test -n "${M_KILLED_AT:-}"
check "migrate-send failed ($(grep 'migrate-send:' "$WORK/out.send" | head -1))" \
	test "$S_RC" = 1
check "...and the source did not wait for a decision" not grep -q "migrate-finish" "$WORK/out.send"
check "c2 resumed on B" wait_for 5 "c2 running" state_is b c2 running
J=$(query c2)
check "c2 answers from B: same boot_id, counter continued ($C_BEFORE -> $(counter_of <<<"$J"))" \
	test "$(boot_of <<<"$J")" = "$BOOT2" -a "$(counter_of <<<"$J")" -ge "$C_BEFORE"
check "the killed receiver left no process of c2 on A" test -z "$(procs_of a c2)"
# What it had prepared (cgroups, overlay mount) is what a crashed agent
# leaves: the next operation on that guest there removes it.
drv a stop c2 >/dev/null
check "...and the next operation on A removed what it had set up" gone_from a c2
check "B's veth of c2 is back on the bridge" \
	grep -q "master $BR" <<<"$(ip -n "$NSB" link show hv-c2)"
log "c2 after the receiver's death: client-side gap ${M_GAP} ms"

# ---- the end ------------------------------------------------------------------------------------

for name in c1 c2; do
	drv b stop "$name" >/dev/null
	check "stop $name on B" test $? = 0
	drv b destroy "$name" >/dev/null
	check "destroy $name on B" test $? = 0
	check "nothing of $name left on B" gone_from b "$name"
done
check "no ha-driver-test left running" not pgrep -f "$DT container migrate"
cleanup
left=""
[ -e "$WORK" ] && left="$left $WORK"
ip netns list | grep -qw "$NSA" && left="$left netns:$NSA"
ip netns list | grep -qw "$NSB" && left="$left netns:$NSB"
for d in /sys/fs/cgroup/"$CGA" /sys/fs/cgroup/*/"$CGA" /sys/fs/cgroup/"$CGB" /sys/fs/cgroup/*/"$CGB"; do
	[ -d "$d" ] && left="$left $d"
done
grep -q "hactl-mig" /proc/self/mountinfo && left="$left mounts"
check "nothing left behind${left:+ (left:$left)}" test -z "$left"

log "figures (stop-and-copy, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)):" \
	"16M: freeze->resumed ~${M16_RESUME} ms, client gap ${M16_GAP} ms, total ${M16_TOTAL} ms;" \
	"256M: freeze->resumed ~${M256_RESUME} ms, client gap ${M256_GAP} ms, total ${M256_TOTAL} ms"
echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
