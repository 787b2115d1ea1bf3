# shellcheck shell=bash disable=SC2034
# Shared by bench/migration/domain-driver and domain-direct (sourced):
# two "hosts" A and B (network namespaces, each with a bridge hbr0 for the
# guest's tap) uplinked into a switch namespace, a client namespace C that
# queries the guest's workload through the switch, and the run loop that
# prints one line per migration and a table.
#
# Each run boots the domain template on A (256 MiB + the driver's 4 KiB,
# hactl-workload --mem 128M --dirty RATE), lets it dirty its memory for
# WARMUP_S, migrates it to B once and ends it there. Figures per run:
#   total       QEMU's total-time of the migration
#   downtime    QEMU's downtime (the source's stop until the stream ends)
#   client gap  the longest time C went without an answer: a query starts
#               every 20 ms, each waiting up to 1 s (within ~20 ms)
#   bytes       RAM bytes QEMU sent; rounds: its dirty-sync-count
# The caller defines path_name, guest_start A, migrate_once (sets TOTAL,
# DOWNTIME, BYTES, ROUNDS, EXTRA) and guest_end B.
set -uo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "needs root (namespaces, taps)" >&2
	exit 77
fi
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=3
RATES="0 10M 50M"
MEM_KIB=262144
WL_MEM=128M
WARMUP_S=5
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--dirty) RATES=$2; shift 2 ;;
	--mem-kib) MEM_KIB=$2; shift 2 ;;
	--wl-mem) WL_MEM=$2; shift 2 ;;
	*) echo "usage: $0 [--runs N] [--dirty \"0 10M 50M\"] [--mem-kib KIB] [--wl-mem SIZE]" >&2
	   exit 2 ;;
	esac
done
if [ -z "${HACTL_BIN_DIR:-}" ] || [ -z "${HA_TEST_BIN_DIR:-}" ]; then
	if [ ! -x "$SRC/build-release/tests/ha-driver-test" ] ||
		[ ! -x "$SRC/build-release/bin/hactl-workload" ]; then
		(cd "$SRC" && cmake --preset release >/dev/null &&
			cmake --build build-release -j"$(nproc)" --target ha-driver-test hactl-workload \
				>/dev/null) || { echo "release build failed" >&2; exit 1; }
	fi
	HACTL_BIN_DIR=${HACTL_BIN_DIR:-$SRC/build-release/bin}
	HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$SRC/build-release/tests}
fi
DT=$HA_TEST_BIN_DIR/ha-driver-test
WL=$HACTL_BIN_DIR/hactl-workload
TEMPLATE=${HACTL_TEMPLATE_DIR:-$SRC/build/templates}/domain
QEMU=${HACTL_QEMU:-qemu-system-x86_64}
for f in "$DT" "$WL" "$TEMPLATE/vmlinux" "$TEMPLATE/initramfs.cpio.gz"; do
	[ -e "$f" ] || { echo "missing $f (deploy/build-templates domain, the build)" >&2; exit 1; }
done

now_ms() { date +%s%3N; }
log() { echo "[$(date +%T.%3N)] $*" >&2; }
wait_for() { # wait_for TIMEOUT_S COMMAND...
	local deadline=$(($(now_ms) + $1 * 1000))
	shift
	while [ "$(now_ms)" -lt "$deadline" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

NS_SW=bmsw-$$
declare -A HOST_NS=([A]=bma-$$ [B]=bmb-$$)
# fixed bridge MACs: a bridge without one takes its lowest port's, and a
# tap coming or going would change it under the other host's ARP cache
declare -A HOST_MAC=([A]=02:00:00:00:04:0a [B]=02:00:00:00:04:0b)
declare -A HOST_IP=([A]=10.213.4.11 [B]=10.213.4.12)
NS_C=bmc-$$
GUEST_IP=10.213.4.20
WORK=$(mktemp -d /tmp/hactl-bmig.XXXXXX)
mkdir -p "$WORK/tpl" "$WORK/shared"
cp "$TEMPLATE/vmlinux" "$TEMPLATE/initramfs.cpio.gz" "$WORK/tpl/"
truncate -s 16M "$WORK/shared/disk.img"

bench_cleanup() {
	local p
	touch "$WORK/poll.stop"
	for p in /proc/[0-9]*; do
		grep -qF "$WORK/" "$p/cmdline" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null
	done
	sleep 0.5
	for p in "${HOST_NS[A]}" "${HOST_NS[B]}" "$NS_C" "$NS_SW"; do ip netns del "$p" 2>/dev/null; done
	for p in /sys/fs/cgroup/hactl-bench-$$-[AB]/m1 /sys/fs/cgroup/hactl-bench-$$-[AB] \
		/sys/fs/cgroup/*/hactl-bench-$$-[AB]/m1 /sys/fs/cgroup/*/hactl-bench-$$-[AB]; do
		[ -d "$p" ] && rmdir "$p" 2>/dev/null
	done
	rm -rf --one-file-system "$WORK"
}
trap bench_cleanup EXIT

net_up() {
	local h ns
	ip netns add "$NS_SW" && ip -n "$NS_SW" link set lo up &&
		ip -n "$NS_SW" link add hmsw0 type bridge && ip -n "$NS_SW" link set hmsw0 up || return 1
	for h in A B; do
		ns=${HOST_NS[$h]}
		ip netns add "$ns" && ip -n "$ns" link set lo up &&
			ip -n "$ns" link add hbr0 address "${HOST_MAC[$h]}" type bridge &&
			ip -n "$ns" addr add "${HOST_IP[$h]}/24" dev hbr0 && ip -n "$ns" link set hbr0 up &&
			ip -n "$NS_SW" link add "up$h" type veth peer name uplink netns "$ns" &&
			ip -n "$ns" link set uplink master hbr0 up &&
			ip -n "$NS_SW" link set "up$h" master hmsw0 up || return 1
	done
	ip netns add "$NS_C" && ip -n "$NS_C" link set lo up &&
		ip -n "$NS_SW" link add upC type veth peer name eth0 netns "$NS_C" &&
		ip -n "$NS_C" addr add 10.213.4.99/24 dev eth0 && ip -n "$NS_C" link set eth0 up &&
		ip -n "$NS_SW" link set upC master hmsw0 up
}
net_up || { echo "test network failed" >&2; exit 1; }

query() { ip netns exec "$NS_C" "$WL" --query "$GUEST_IP:7000" --timeout 1000 2>/dev/null; }
answers() { query | grep -q '"counter"'; }
boot_of() { sed -n 's/.*"boot_id":"\([0-9a-f]*\)".*/\1/p'; }
on_host() { # on_host A|B CMD...
	local h=$1
	shift
	nsenter --net="/run/netns/${HOST_NS[$h]}" env HACTL_CGROUP_PARENT="hactl-bench-$$-$h" "$@"
}
qemu_of() {
	local p
	for p in /proc/[0-9]*; do
		grep -qF "$WORK/$1/" "$p/cmdline" 2>/dev/null && echo "${p#/proc/}"
	done
	return 0
}

poll_start() { # poll_start FILE (see the top)
	rm -f "$WORK/poll.stop"
	ip netns exec "$NS_C" bash -c '
		while [ ! -e "$3" ]; do
			{ "$1" --query "$2:7000" --timeout 1000 >/dev/null 2>&1 &&
				echo "${EPOCHREALTIME/./} ok"; } &
			sleep 0.02
		done
		wait' poll "$WL" "$GUEST_IP" "$WORK/poll.stop" >"$1" 2>/dev/null &
	POLL_PID=$!
}
poll_stop() {
	touch "$WORK/poll.stop"
	wait "$POLL_PID" 2>/dev/null
}
max_gap_ms() {
	sort -n "$1" | awk '{ if (last && $1 - last > g) g = $1 - last; last = $1 }
			    END { printf "%d\n", g / 1000 }'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

# bench_run: every rate, RUNS times; one line per run, then the table
bench_run() {
	local rate run gap boot rows=() line
	printf '%-8s %-6s %4s %9s %9s %9s %12s %6s  %s\n' path dirty run total_ms down_ms \
		client_ms bytes rounds notes
	for rate in $RATES; do
		local tot=() dwn=() gaps=() byt=() rnd=()
		for run in $(seq 1 "$RUNS"); do
			WL_ARGS="--mem $WL_MEM --dirty $rate"
			if ! guest_start A; then
				log "$(path_name) $rate run $run: the guest did not start"
				guest_end A
				continue
			fi
			if ! wait_for 90 answers; then
				log "$(path_name) $rate run $run: the guest does not answer"
				guest_end A
				continue
			fi
			boot=$(query | boot_of)
			sleep "$WARMUP_S"
			poll_start "$WORK/poll.txt"
			sleep 1
			TOTAL=0 DOWNTIME=0 BYTES=0 ROUNDS=0 EXTRA=""
			if migrate_once A B && wait_for 30 answers; then
				sleep 1
				poll_stop
				gap=$(max_gap_ms "$WORK/poll.txt")
				[ "$(query | boot_of)" = "$boot" ] || EXTRA="$EXTRA BOOT CHANGED"
				printf '%-8s %-6s %4s %9s %9s %9s %12s %6s  %s\n' "$(path_name)" "$rate" "$run" \
					"$TOTAL" "$DOWNTIME" "$gap" "$BYTES" "$ROUNDS" "$EXTRA"
				tot+=("$TOTAL") dwn+=("$DOWNTIME") gaps+=("$gap") byt+=("$BYTES")
				rnd+=("$ROUNDS")
			else
				poll_stop
				log "$(path_name) $rate run $run: migration failed $EXTRA"
			fi
			guest_end A
			guest_end B
		done
		[ ${#tot[@]} -gt 0 ] || continue
		line=$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$(path_name)" "$rate" \
			"$(printf '%s\n' "${tot[@]}" | median)" "$(printf '%s\n' "${dwn[@]}" | median)" \
			"$(printf '%s\n' "${gaps[@]}" | median)" \
			"$(($(printf '%s\n' "${byt[@]}" | median) / 1048576))" \
			"$(printf '%s\n' "${rnd[@]}" | median)")
		rows+=("$line")
	done
	echo
	echo "medians of $RUNS runs, $(($MEM_KIB / 1024)) MiB guest, workload --mem $WL_MEM:"
	echo "| path | dirty/s | total ms | QEMU downtime ms | client gap ms | MiB sent | rounds |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
}
