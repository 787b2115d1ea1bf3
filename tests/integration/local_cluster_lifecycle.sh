#!/bin/bash
# The local cluster itself, without the hactl daemons: corosync membership
# and quorum on three hosts through isolate/heal/kill/start, the per-host
# views (exec), and that up/down twice leaves nothing behind (namespaces,
# /dev/shm/qb-*, processes, mounts, cgroups, directories).
#
# Root only (exit 77 otherwise). The repository: $HA_SRC_DIR, else the
# checkout this script is in.
set -uo pipefail

if [[ $(id -u) != 0 ]]; then
	echo "SKIP: needs root"
	exit 77
fi
for c in corosync corosync-quorumtool ip nsenter unshare; do
	if ! command -v "$c" >/dev/null 2>&1; then
		echo "SKIP: $c is not installed (deploy/install-deps)"
		exit 77
	fi
done

SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LC=$SRC_DIR/deploy/local-cluster
LC_DIR=${HACTL_LC_DIR:-/run/hactl-lc}
NS_PREFIX=hlc-
CG_NAME=hactl-lc
MOUNT_POINTS=(/var/lib/hactl /var/lib/corosync /etc/corosync /etc/hactl /var/log/hactl /srv/hactl)

PASSED=0
FAILED=0
pass() {
	PASSED=$((PASSED + 1))
	echo "PASS: $*"
}
fail() {
	FAILED=$((FAILED + 1))
	echo "FAIL: $*"
}
# check DESC CMD...: one assertion.
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# eventually TIMEOUT_S DESC CMD...: an assertion that must hold within the
# bound (polled every 0.2 s).
eventually() {
	local deadline=$((SECONDS + $1)) desc=$2
	shift 2
	until "$@"; do
		if ((SECONDS >= deadline)); then
			fail "$desc (not within $1 s; last: ${LAST:-?})"
			return 1
		fi
		sleep 0.2
	done
	pass "$desc"
}

UP=0
cleanup() {
	if ((UP)); then
		"$LC" down >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -e $LC_DIR ]] || ip netns list | grep -q "^$NS_PREFIX"; then
	fail "a local cluster is already up ($LC_DIR or namespaces $NS_PREFIX*); not touching it"
	echo "$PASSED passed, $FAILED failed"
	exit 1
fi

# ---------------------------------------------------------------- baselines

live_pids() {
	local p s
	for p in /proc/[0-9]*; do
		s=$(cat "$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		[[ ${s%% *} == Z ]] && continue
		echo "${p#/proc/}"
	done
}
shm_qb() {
	local f
	for f in /dev/shm/qb-*; do
		[[ -e $f ]] && echo "${f##*/}"
	done | sort
}
corosync_pids() {
	local p s
	for p in $(pgrep -x corosync); do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		[[ ${s%% *} == Z ]] || echo "$p"
	done | sort
}
BASE_SHM=$(shm_qb)
BASE_COROSYNC=$(corosync_pids)
declare -A BASE_MP
for m in "${MOUNT_POINTS[@]}"; do
	[[ -e $m ]] && BASE_MP[$m]=1
done

# ------------------------------------------------------------------ helpers

# quorum NODE: "QUORATE MEMBERS" from corosync-quorumtool -s inside the host.
quorum() {
	local out q n
	out=$("$LC" exec "$1" -- corosync-quorumtool -s 2>/dev/null)
	q=$(awk -F: '/^Quorate:/ { gsub(/ /, "", $2); print $2 }' <<<"$out")
	n=$(awk '/^Nodes:/ { print $2 }' <<<"$out")
	LAST="$1: Quorate=${q:-?} Nodes=${n:-?}"
	echo "${q:-?} ${n:-?}"
}
quorate_with() { [[ $(quorum "$1") == "Yes $2" ]]; }
not_quorate() { [[ $(quorum "$1") == No* ]]; }
all_three_quorate() {
	local n
	for n in node1 node2 node3; do
		quorate_with "$n" 3 || return 1
	done
}

NS_INODES=()
record_ns_inodes() {
	local f
	NS_INODES=()
	for f in /run/netns/"$NS_PREFIX"*; do
		[[ -e $f ]] && NS_INODES+=("$(stat -L -c %i "$f")")
	done
}

# leftovers ROUND: everything a cluster may leave behind, each its own check.
leftovers() {
	local r=$1 left p ino m
	left=$(ip netns list | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { print $1 }' | tr '\n' ' ')
	check "$r: no namespaces $NS_PREFIX* left${left:+ (left: $left)}" test -z "$left"

	left=$(comm -13 <(echo "$BASE_SHM") <(shm_qb) | grep . | tr '\n' ' ')
	check "$r: no new /dev/shm/qb-* left${left:+ (left: $left)}" test -z "$left"

	left=""
	for p in $(live_pids); do
		ino=$(readlink "/proc/$p/ns/net" 2>/dev/null) || continue
		for m in "${NS_INODES[@]}"; do
			[[ $ino == "net:[$m]" ]] && left+="$p "
		done
	done
	check "$r: no live process in the hosts' network namespaces${left:+ (left: $left)}" test -z "$left"

	left=$(comm -13 <(echo "$BASE_COROSYNC") <(corosync_pids) | grep . | tr '\n' ' ')
	check "$r: no corosync of ours running${left:+ (left: $left)}" test -z "$left"

	left=""
	for p in $(live_pids); do
		[[ $p == "$$" ]] && continue
		m=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
		[[ $m == *"$LC_DIR"* || $m == *"local-cluster _enter"* ]] && left+="$p "
	done
	check "$r: no process naming the state dir${left:+ (left: $left)}" test -z "$left"

	left=$(awk -v d="$LC_DIR" -v ns="/run/netns/$NS_PREFIX" \
		'$5 == d || index($5, d "/") == 1 || index($5, ns) == 1 { print $5 }' \
		/proc/self/mountinfo | tr '\n' ' ')
	check "$r: no mounts under $LC_DIR or /run/netns/$NS_PREFIX*${left:+ (left: $left)}" test -z "$left"

	left=$(find /sys/fs/cgroup -maxdepth 2 -name "$CG_NAME" 2>/dev/null | tr '\n' ' ')
	check "$r: no $CG_NAME cgroups${left:+ (left: $left)}" test -z "$left"

	check "$r: state dir $LC_DIR removed" test ! -e "$LC_DIR"

	left=""
	for m in "${MOUNT_POINTS[@]}"; do
		[[ -z ${BASE_MP[$m]:-} && -e $m ]] && left+="$m "
	done
	check "$r: mount points created by up removed${left:+ (left: $left)}" test -z "$left"
}

# -------------------------------------------------------------- round one

echo "== up --no-daemons --nodes 3"
if out=$("$LC" up --no-daemons --nodes 3 2>&1); then
	UP=1
	pass "up --no-daemons --nodes 3: $out"
else
	fail "up --no-daemons --nodes 3 failed: $out"
	"$LC" down >/dev/null 2>&1
	echo "$PASSED passed, $FAILED failed"
	exit 1
fi
record_ns_inodes
check "4 namespaces (3 hosts + bridge)" test "${#NS_INODES[@]}" -eq 4
check "up again while up fails" bash -c "! '$LC' up --no-daemons >/dev/null 2>&1"

eventually 15 "corosync on node1, node2, node3: Quorate Yes, 3 nodes" all_three_quorate

echo "== host views"
check "exec passes the exit status through" \
	bash -c "'$LC' exec node1 -- sh -c 'exit 7'; test \$? -eq 7"
check "exec passes stdin and stdout through" \
	bash -c "test \"\$(echo ping | '$LC' exec node2 -- cat)\" = ping"
check "each host has its address" \
	bash -c "'$LC' exec node3 -- ip -4 -o addr show dev eth0 | grep -q ' 10.213.0.3/24 '"
check "each host has its hostname" \
	bash -c "test \"\$('$LC' exec node2 -- hostname)\" = node2"
check "each host has its own /dev/shm (corosync's blackbox there)" \
	bash -c "'$LC' exec node1 -- sh -c 'ls /dev/shm' | grep -q '^qb-corosync-'"
check "each host has its own /run (one corosync.pid)" \
	bash -c "test \"\$('$LC' exec node3 -- cat /run/corosync.pid)\" = \"\$(cat '$LC_DIR/node3/pids/corosync.pid')\""
check "shared storage is shared" \
	bash -c "'$LC' exec node1 -- sh -c 'echo x > /srv/hactl/probe' && test \"\$('$LC' exec node3 -- cat /srv/hactl/probe)\" = x"
check "exec runs in the host's cgroup" \
	bash -c "'$LC' exec node2 -- cat /proc/self/cgroup | grep -q '$CG_NAME/node2/'"
check "the cgroup hierarchies are visible inside a host" \
	bash -c "'$LC' exec node1 -- sh -c 'ls /sys/fs/cgroup' | grep -q ."
check "/sys/class/net inside a host shows its own eth0" \
	bash -c "test \"\$('$LC' exec node1 -- ls /sys/class/net | sort | tr '\n' ' ')\" = 'eth0 gup0 hbr0 lo '"
check "status lists three hosts with corosync" \
	bash -c "test \"\$('$LC' status | grep -c 'corosync:[0-9]')\" -eq 3"

echo "== isolate node3"
if out=$("$LC" isolate node3 2>&1); then pass "isolate node3: $out"; else fail "isolate node3: $out"; fi
eventually 15 "node3 not quorate" not_quorate node3
eventually 15 "node1 quorate with 2 members" quorate_with node1 2

echo "== heal node3"
if out=$("$LC" heal node3 2>&1); then pass "heal node3: $out"; else fail "heal node3: $out"; fi
eventually 15 "node1 sees 3 members again" quorate_with node1 3
eventually 15 "node3 quorate with 3 members again" quorate_with node3 3

echo "== kill node2"
("$LC" exec node2 -- sleep 600; exit $?) >/dev/null 2>&1 &
SLEEPER=$!
sleep 0.3
before=$(date +%s%3N)
out=$("$LC" kill node2 2>&1)
rc=$?
after=$(date +%s%3N)
if ((rc == 0)) && [[ $out =~ ^killed\ node2\ at\ ([0-9]{13})$ ]] &&
	((BASH_REMATCH[1] >= before && BASH_REMATCH[1] <= after)); then
	pass "kill node2 prints the kill time: $out"
else
	fail "kill node2 (rc $rc): '$out' (expected 'killed node2 at <ms>' in $before..$after)"
fi
check "no process left in node2's cgroup" \
	bash -c "'$LC' status | grep -q '^node2 .* procs:0'"
{ wait "$SLEEPER"; } 2>/dev/null
check "a command running in node2 died with it" test $? -ne 0
check "node2's /dev/shm has no qb-* files" \
	bash -c "! ls '$LC_DIR/node2/shm' | grep -q '^qb-'"
eventually 15 "node1 quorate with 2 members" quorate_with node1 2

# The leader fences a host that is already dead (here by hand, as its
# fence agent is called): found by the fault campaign, the agent froze the
# empty host's cgroups and left them frozen, so the next start froze in
# them and never returned.
echo "== fence_hactl_lc off node2 (already killed)"
"$LC" exec node2 -- true # a command entered the dead host: its cgroup exists, empty
out=$(printf 'action=off\nplug=node2\n' | "$SRC_DIR/deploy/fence_hactl_lc" 2>&1)
check "fence agent: node2 off ($out)" test "$out" = "Success: Powered OFF"

echo "== start node2"
if out=$(timeout 60 "$LC" start node2 2>&1); then pass "start node2: $out"; else fail "start node2 (a frozen cgroup?): $out"; fi
eventually 15 "node1 sees 3 members again" quorate_with node1 3

echo "== down"
if out=$("$LC" down 2>&1); then pass "down${out:+: $out}"; else fail "down: $out"; fi
UP=0
leftovers "round 1"

# -------------------------------------------------------------- round two

echo "== up/down again"
if out=$("$LC" up --no-daemons --nodes 3 2>&1); then
	UP=1
	pass "up again: $out"
	record_ns_inodes
	eventually 15 "corosync on node1, node2, node3: Quorate Yes, 3 nodes" all_three_quorate
else
	fail "up again failed: $out"
fi
if out=$("$LC" down 2>&1); then pass "down again${out:+: $out}"; else fail "down again: $out"; fi
UP=0
leftovers "round 2"
check "down when nothing is up succeeds quietly" \
	bash -c "test -z \"\$('$LC' down 2>&1)\""

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
