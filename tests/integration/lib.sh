# Shared helpers for the integration tests (sourced, not run).
# Real daemons on deploy/local-cluster; every wait is bounded.

set -uo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "skipped: integration tests need root (network namespaces)"
	exit 77
fi

HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export HACTL_BIN_DIR=${HACTL_BIN_DIR:-$HA_SRC_DIR/build/bin}
HA_TEST_BIN_DIR=${HA_TEST_BIN_DIR:-$HA_SRC_DIR/build/tests}
LC=$HA_SRC_DIR/deploy/local-cluster

T_PASS=0
T_FAIL=0
T_NAME=$(basename "$0" .sh)

log() { echo "[$T_NAME $(date +%T.%3N)] $*"; }

# The local cluster exists once per machine and every test begins with
# `local-cluster down`: tests run from two checkouts (or two ctest runs)
# at once would tear each other's cluster down. They wait for each other
# instead. The lock is held by a small process of its own that lives as
# long as this test's shell, so that no background process of the test
# inherits it (and holds it after the test).
T_LOCK_FILE=${HACTL_TEST_LOCK:-/run/lock/hactl-integration.lock}
t_lock() {
	local me=$$ line
	mkdir -p "$(dirname "$T_LOCK_FILE")"
	exec {T_LOCK_PIPE}< <(
		exec {fd}>"$T_LOCK_FILE" </dev/null 2>/dev/null
		flock -n "$fd" || { echo waiting; flock "$fd"; }
		echo locked
		exec 1>&-
		while kill -0 "$me" 2>/dev/null; do sleep 0.5; done
	)
	read -r line <&"$T_LOCK_PIPE"
	if [ "$line" = waiting ]; then
		log "waiting for the other integration test on this machine ($T_LOCK_FILE)"
		read -r line <&"$T_LOCK_PIPE"
	fi
	exec {T_LOCK_PIPE}<&-
	export HACTL_TEST_LOCK_HELD=$me # tests/faults/campaign under it
}
t_lock
pass() { T_PASS=$((T_PASS + 1)); log "ok: $*"; }
fail() { T_FAIL=$((T_FAIL + 1)); log "FAIL: $*"; }
check() { # check "description" command...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

lc() { "$LC" "$@"; }
on() { # on NODE CMD... (inside that host)
	local node=$1
	shift
	"$LC" exec "$node" -- "$@"
}
hs() { on "$1" hactl status --json 2>/dev/null; } # status JSON of NODE
jq_on() { hs "$1" | jq -r "$2" 2>/dev/null; }    # jq_on NODE FILTER

now_ms() { date +%s%3N; }

# wait_for TIMEOUT_S DESCRIPTION COMMAND...: polls every 100 ms.
wait_for() {
	local timeout=$1 what=$2
	shift 2
	local deadline=$(($(now_ms) + timeout * 1000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	log "timed out after ${timeout}s waiting for: $what"
	return 1
}

# Fields every node must agree on.
agree_view() { # agree_view NODE...: same quorate, leader and seq everywhere
	local first="" v
	for n in "$@"; do
		v=$(jq_on "$n" '[.quorate, .leader, .seq] | @json') || return 1
		[ -n "$v" ] || return 1
		if [ -z "$first" ]; then first=$v; elif [ "$v" != "$first" ]; then return 1; fi
	done
}

node_state_on() { jq_on "$1" ".nodes[] | select(.name==\"$2\") | .state"; }

# The coordinator of NODE answers and reports its agent connected.
daemons_alive() {
	local node=$1
	[ "$(jq_on "$node" ".nodes[] | select(.local) | .agent")" = true ]
}

# Daemon logs must show no sanitizer report; on failure they are kept and
# their tails printed.
check_daemon_logs() {
	local d=${HACTL_LC_DIR:-/run/hactl-lc} f
	for f in "$d"/node*/log/ha-*.log; do
		[ -e "$f" ] || continue
		if grep -q -E "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$f"; then
			fail "sanitizer report in $(basename "$(dirname "$(dirname "$f")")")/$(basename "$f")"
			grep -A20 -E "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$f" | head -40
		fi
	done
	if [ "$T_FAIL" -gt 0 ]; then
		local keep=/tmp/hactl-test-logs/$T_NAME
		rm -rf "$keep"
		mkdir -p "$keep"
		for f in "$d"/node*/log/*.log; do
			[ -e "$f" ] && cp "$f" "$keep/$(basename "$(dirname "$(dirname "$f")")")-$(basename "$f")"
		done
		log "daemon logs kept in $keep"
		for f in "$keep"/*ha-coordinator.log; do
			[ -e "$f" ] && { echo "--- tail of $(basename "$f")"; tail -15 "$f"; }
		done
	fi
}

finish() {
	check_daemon_logs
	lc down >/dev/null 2>&1 || true
	echo "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
}

cleanup_on_exit() {
	local rc=$?
	if [ "${T_DONE:-0}" != 1 ]; then
		lc down >/dev/null 2>&1 || true
	fi
	exit $rc
}
trap cleanup_on_exit EXIT

LC_SHARED=${HACTL_LC_DIR:-/run/hactl-lc}/shared

start_cluster() { # start_cluster ARGS...: fails the test when up fails
	lc down >/dev/null 2>&1 || true
	if ! lc up "$@"; then
		fail "local-cluster up $*"
		T_DONE=1
		finish
		exit 1
	fi
}

# ---- guests ----

# workload_json NODE IP: the workload's answer, queried from host NODE
workload_json() {
	on "$1" hactl-workload --query "$2:7000" 2>/dev/null
}
counter_of() { jq -r .counter 2>/dev/null; }
boot_of() { jq -r .boot_id 2>/dev/null; }
guest_field() { # guest_field NODE NAME FIELD
	on "$1" hactl show "$2" --json 2>/dev/null | jq -r ".$3"
}

need_templates() {
	if ! "$HA_SRC_DIR/deploy/build-templates" >/dev/null; then
		fail "deploy/build-templates"
		T_DONE=1
		finish
		exit 1
	fi
}

need_criu() {
	if [ ! -x /opt/hactl/criu/bin/criu ]; then
		"$HA_SRC_DIR/deploy/install-criu" >/dev/null 2>&1 || true
	fi
}

# write_def FILE NAME TYPE IP [extra INI lines...]
write_def() {
	local file=$1 name=$2 type=$3 ip=$4
	shift 4
	{
		echo "[guest]"
		echo "name = $name"
		echo "type = $type"
		echo "memory = ${GUEST_MEM:-64M}"
		echo "command = /usr/bin/hactl-workload --port 7000 --mem ${WORKLOAD_MEM:-8M} --dirty 1M"
		echo "stop_timeout = 10"
		echo "[storage]"
		if [ "$type" = container ]; then
			echo "template = container"
		else
			echo "kernel = domain/vmlinux"
			echo "initrd = domain/initramfs.cpio.gz"
		fi
		echo "[network]"
		echo "ip = $ip/24"
		for l in "$@"; do echo "$l"; done
	} >"$file"
}
