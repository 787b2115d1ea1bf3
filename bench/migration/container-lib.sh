# shellcheck shell=bash disable=SC2034
# Shared by bench/migration/container-driver and container-criu (sourced):
# two "hosts" A and B (network namespaces, each with a bridge hbr0 for the
# guests' veths, its own cgroup parent and run directory) uplinked into a
# switch namespace, a client namespace C that queries the guest's workload
# through the switch, a shared directory both hosts see (the guests'
# writable layers), and the run loop that prints one line per migration and
# a table.
#
# Each run starts container c1 on A through the container driver
# (ha-driver-test container start: the build's container template, overlay
# root, cgroups with the limit below, veth on hbr0, 10.213.5.20/24)
# running hactl-workload --mem SIZE --dirty RATE, lets it run WARMUP_S,
# moves it to B once and ends it there. Figures per run:
#   client gap  the longest time C went without an answer: bench/migration/
#               tcp-poll starts a query every 10 ms (each given up after
#               1 s), so within ~10 ms of the time the workload could not
#               be reached
#   stall       freeze -> resume as the workload lived it: its own longest
#               gap between two wake-ups, by the wall clock (stall_last_ms)
#   total       the move from its first command to the guest running on B
#               and announced (path-specific, see the scripts)
#   MiB         bytes that crossed the network for the move
# The caller defines path_name, migrate_once A B (sets TOTAL, BYTES, EXTRA)
# and may define path_check (prerequisites); guests are started and ended
# here.
set -uo pipefail

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}
if [ "$(id -u)" != 0 ]; then
	die "needs root (namespaces, cgroups, mounts)"
fi
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$SRC/bench/migration
RUNS=5
SIZES="16M 256M"
DIRTY=1M
WARMUP_S=3
PAGE_SERVER=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--sizes) SIZES=$2; shift 2 ;;
	--dirty) DIRTY=$2; shift 2 ;;
	--warmup) WARMUP_S=$2; shift 2 ;;
	--page-server) PAGE_SERVER=1; shift ;; # container-criu only
	*) echo "usage: $0 [--runs 5] [--sizes \"16M 256M\"] [--dirty 1M] [--warmup 3] [--page-server]" >&2
	   exit 2 ;;
	esac
done
# The container's memory limit for a workload size (as
# tests/integration/driver_container_mig.sh: 64 MiB for 16M, 384 for 256M).
limit_kib() {
	local mib=${1%M}
	[ "$mib" -le 16 ] && { echo 65536; return; }
	echo $(((mib + 128) * 1024))
}
for s in $SIZES; do
	[[ $s =~ ^[0-9]+M$ ]] || die "--sizes: $s is not N M (e.g. 16M)"
done

if [ -z "${HACTL_BIN_DIR:-}" ] || [ -z "${HA_TEST_BIN_DIR:-}" ]; then
	if [ ! -x "$SRC/build-release/tests/ha-driver-test" ] ||
		[ ! -x "$SRC/build-release/bin/hactl-workload" ]; then
		(cd "$SRC" && cmake --preset release >/dev/null &&
			cmake --build build-release -j"$(nproc)" --target ha-driver-test hactl-workload \
				>/dev/null) || die "release build failed"
	fi
	HACTL_BIN_DIR=${HACTL_BIN_DIR:-$SRC/build-release/bin}
	HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$SRC/build-release/tests}
fi
DT=$HA_TEST_BIN_DIR/ha-driver-test
WL=$HACTL_BIN_DIR/hactl-workload
POLL=$BENCH_DIR/tcp-poll
TEMPLATE=${HACTL_TEMPLATE_DIR:-$SRC/build/templates}/container
# The CRIU the driver runs by default (agent/criu_rpc.h); both paths use it.
CRIU=${HACTL_CRIU:-/opt/hactl/criu/bin/criu}
[ -x "$DT" ] || die "missing $DT (the release build)"
[ -x "$WL" ] || die "missing $WL (the release build)"
[ -x "$CRIU" ] || die "missing $CRIU (deploy/install-criu)"
[ -x "$TEMPLATE/usr/bin/hactl-workload" ] ||
	die "missing the container template $TEMPLATE (deploy/build-templates container)"
grep -q stall_last "$TEMPLATE/usr/bin/hactl-workload" ||
	die "the template's hactl-workload predates stall_last_ms: deploy/build-templates container"
for tool in ip nsenter python3 mountpoint; do
	command -v $tool >/dev/null || die "needs $tool"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
grep -qw overlay /proc/filesystems || die "needs overlayfs"
if declare -F path_check >/dev/null; then
	path_check || exit 1
fi

now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; }
log() { echo "[$(date +%T.%3N)] $*" >&2; }
wait_for() { # wait_for TIMEOUT_S COMMAND...: polls every 20 ms
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	while [ "$(now_ms)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.02
	done
	return 1
}
wait_line() { # wait_line FILE PATTERN TIMEOUT_S: polls every 5 ms
	local deadline=$(($(now_ms) + $3 * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.005
	done
	return 1
}

NS_SW=bcsw-$$
declare -A HOST_NS=([A]=bca-$$ [B]=bcb-$$)
# fixed bridge MACs: a bridge without one takes its lowest port's, and a
# veth coming or going would change it under the other host's ARP cache
declare -A HOST_MAC=([A]=02:00:00:00:05:0a [B]=02:00:00:00:05:0b)
declare -A HOST_IP=([A]=10.213.5.11 [B]=10.213.5.12)
declare -A HOST_CG=([A]=hactl-cbench-$$-A [B]=hactl-cbench-$$-B)
NS_C=bcc-$$
GUEST=c1
GUEST_IP=10.213.5.20
VETH=hv-$GUEST
CG_V2=0
[ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] && CG_V2=1
WORK=$(mktemp -d /tmp/hactl-cbench.XXXXXX)
mkdir -p "$WORK/A" "$WORK/B" "$WORK/data"

# spec HOST: ha-driver-test's options for c1 on HOST ($WL_SIZE: workload)
spec() {
	echo --name "$GUEST" --rootfs "$TEMPLATE" --ip "$GUEST_IP/24" --bridge hbr0 \
		--run-dir "$WORK/$1/run/$GUEST" --data-dir "$WORK/data/$GUEST" \
		--mem "$(limit_kib "$WL_SIZE")" --pids 64 --timeout 30000 --criu "$CRIU"
}
wl_cmd() { echo "/usr/bin/hactl-workload --mem $WL_SIZE --dirty $DIRTY --port 7000"; }
on_host() { # on_host A|B CMD...: in HOST's network namespace, with its cgroup parent
	local h=$1
	shift
	nsenter --net="/run/netns/${HOST_NS[$h]}" env HACTL_CGROUP_PARENT="${HOST_CG[$h]}" "$@"
}
# cg_dirs HOST: the guest's cgroup directories on HOST (v1: one per
# hierarchy the driver uses; v2: the one)
cg_dirs() {
	local c
	if [ "$CG_V2" = 1 ]; then
		echo "/sys/fs/cgroup/${HOST_CG[$1]}/$GUEST"
	else
		for c in memory pids cpu cpuacct freezer; do
			[ -d "/sys/fs/cgroup/$c" ] && echo "/sys/fs/cgroup/$c/${HOST_CG[$1]}/$GUEST"
		done
	fi
}
freezer_dir() { # the guest's freezer directory on HOST (v2: the cgroup)
	if [ "$CG_V2" = 1 ]; then
		echo "/sys/fs/cgroup/${HOST_CG[$1]}/$GUEST"
	else
		echo "/sys/fs/cgroup/freezer/${HOST_CG[$1]}/$GUEST"
	fi
}

guest_start() { # guest_start HOST
	# shellcheck disable=SC2046
	on_host "$1" "$DT" container start $(spec "$1") --cmd "$(wl_cmd)" >"$WORK/start.log" 2>&1 &&
		grep -q "start: ok" "$WORK/start.log"
}
guest_end() { # guest_end HOST: stop (also cleans what a bare restore made) and destroy
	# shellcheck disable=SC2046
	on_host "$1" "$DT" container stop $(spec "$1") --cmd "$(wl_cmd)" --timeout 2000 \
		>/dev/null 2>&1
	# shellcheck disable=SC2046
	on_host "$1" "$DT" container destroy $(spec "$1") --cmd "$(wl_cmd)" >/dev/null 2>&1
	return 0
}

bench_cleanup() {
	local p h d
	[ -n "${POLL_PID:-}" ] && kill "$POLL_PID" 2>/dev/null
	# whatever was started with $WORK in its command line or runs in one
	# of the namespaces of this run (a leftover would also hold the
	# caller's lock, if any, through an inherited descriptor)
	local nets=" "
	for p in "${HOST_NS[A]}" "${HOST_NS[B]}" "$NS_C" "$NS_SW"; do
		[ -e "/run/netns/$p" ] && nets="$nets$(stat -L -c %i "/run/netns/$p") "
	done
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = $$ ] && continue
		d=$(readlink "$p/ns/net" 2>/dev/null) || continue
		d=${d#net:[}
		if [[ $nets == *" ${d%]} "* ]] || grep -qF "$WORK/" "$p/cmdline" 2>/dev/null; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
	for h in A B; do
		[ -n "${WL_SIZE:-}" ] || WL_SIZE=16M
		guest_end "$h"
	done
	grep " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r |
		while read -r d; do umount -l "$d" 2>/dev/null; done
	for p in "${HOST_NS[A]}" "${HOST_NS[B]}" "$NS_C" "$NS_SW"; do ip netns del "$p" 2>/dev/null; done
	for h in A B; do
		for d in $(cg_dirs "$h"); do
			rmdir "$d" "${d%/*}" 2>/dev/null
		done
	done
	rm -rf --one-file-system "$WORK"
}
trap bench_cleanup EXIT
trap 'exit 1' INT TERM

net_up() {
	local h ns
	ip netns add "$NS_SW" && ip -n "$NS_SW" link set lo up &&
		ip -n "$NS_SW" link add hcsw0 type bridge && ip -n "$NS_SW" link set hcsw0 up || return 1
	for h in A B; do
		ns=${HOST_NS[$h]}
		# lo up: CRIU's TCP-repair check connects to 127.0.0.1
		ip netns add "$ns" && ip -n "$ns" link set lo up &&
			ip -n "$ns" link add hbr0 address "${HOST_MAC[$h]}" type bridge &&
			ip -n "$ns" addr add "${HOST_IP[$h]}/24" dev hbr0 && ip -n "$ns" link set hbr0 up &&
			ip -n "$NS_SW" link add "up$h" type veth peer name uplink netns "$ns" &&
			ip -n "$ns" link set uplink master hbr0 up &&
			ip -n "$NS_SW" link set "up$h" master hcsw0 up || return 1
	done
	ip netns add "$NS_C" && ip -n "$NS_C" link set lo up &&
		ip -n "$NS_SW" link add upC type veth peer name eth0 netns "$NS_C" &&
		ip -n "$NS_C" addr add 10.213.5.99/24 dev eth0 && ip -n "$NS_C" link set eth0 up &&
		ip -n "$NS_SW" link set upC master hcsw0 up
}
net_up || die "test network failed"

query() { ip netns exec "$NS_C" "$WL" --query "$GUEST_IP:7000" --timeout 1000 2>/dev/null; }
answers() { query | grep -q '"counter"'; }
field_of() { sed -n "s/.*\"$1\":\"*\([0-9a-f]*\).*/\1/p"; } # field_of NAME < JSON

poll_start() { # poll_start FILE (see the top)
	ip netns exec "$NS_C" python3 "$POLL" "$GUEST_IP" 7000 --interval 10 --timeout 1000 \
		>"$1" 2>"$1.err" &
	POLL_PID=$!
}
poll_stop() {
	kill "$POLL_PID" 2>/dev/null
	wait "$POLL_PID" 2>/dev/null
	POLL_PID=
}
max_gap_ms() { # max_gap_ms FILE: the longest time between two answers
	sort -n "$1" | awk '{ if (last && $1 - last > g) g = $1 - last; last = $1 }
			    END { printf "%d\n", g / 1000 }'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
max_of() { sort -n | tail -1; }

# bench_run: every size, RUNS times; one line per run, then the table
bench_run() {
	local size run gap boot j stall stall_end t_move rows=() line
	printf '%-7s %-5s %4s %9s %9s %9s %8s  %s\n' path size run client_ms stall_ms total_ms MiB notes
	for size in $SIZES; do
		local gaps=() stalls=() tots=() byts=()
		WL_SIZE=$size
		for run in $(seq 1 "$RUNS"); do
			if ! guest_start A; then
				log "$(path_name) $size run $run: the guest did not start: $(cat "$WORK/start.log")"
				guest_end A
				continue
			fi
			if ! wait_for 30 answers; then
				log "$(path_name) $size run $run: the guest does not answer"
				guest_end A
				continue
			fi
			boot=$(query | field_of boot_id)
			sleep "$WARMUP_S"
			poll_start "$WORK/poll.txt"
			sleep 1
			TOTAL=0 BYTES=0 EXTRA=""
			t_move=$(now_ms)
			if migrate_once A B && wait_for 30 answers; then
				sleep 1
				poll_stop
				gap=$(max_gap_ms "$WORK/poll.txt")
				j=$(query)
				stall=$(field_of stall_last_ms <<<"$j")
				stall_end=$(field_of stall_last_end_ms <<<"$j")
				[ "${stall_end:-0}" -ge "$t_move" ] || { EXTRA="$EXTRA NO-STALL-SEEN"; stall=0; }
				[ "$(field_of boot_id <<<"$j")" = "$boot" ] || EXTRA="$EXTRA BOOT-CHANGED"
				[ "$(field_of mem_errors <<<"$j")" = 0 ] || EXTRA="$EXTRA MEM-ERRORS"
				printf '%-7s %-5s %4s %9s %9s %9s %8s  %s\n' "$(path_name)" "$size" "$run" \
					"$gap" "$stall" "$TOTAL" "$((BYTES / 1048576))" "$EXTRA"
				gaps+=("$gap") stalls+=("$stall") tots+=("$TOTAL") byts+=("$BYTES")
			else
				poll_stop
				log "$(path_name) $size run $run: migration failed: $EXTRA"
			fi
			guest_end A
			guest_end B
		done
		[ ${#gaps[@]} -gt 0 ] || continue
		line=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$(path_name)" "$size" \
			"${#gaps[@]}" \
			"$(printf '%s\n' "${gaps[@]}" | median)" "$(printf '%s\n' "${gaps[@]}" | max_of)" \
			"$(printf '%s\n' "${stalls[@]}" | median)" "$(printf '%s\n' "${stalls[@]}" | max_of)" \
			"$(printf '%s\n' "${tots[@]}" | median)" \
			"$(($(printf '%s\n' "${byts[@]}" | median) / 1048576))")
		rows+=("$line")
	done
	echo
	echo "$(path_name): medians and maxima, workload --dirty $DIRTY, load $(cut -d' ' -f1-3 /proc/loadavg):"
	echo "| path | workload | runs | client gap ms (median) | (max) | stall ms (median) | (max) | total ms (median) | MiB |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
}
