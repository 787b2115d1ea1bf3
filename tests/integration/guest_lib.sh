# The guest lifecycle test for one guest type (sourced by guests_*.sh with
# GTYPE and GIP set). Real daemons, real drivers, the workload inside.

need_templates
[ "$GTYPE" = container ] && need_criu
start_cluster --nodes 3
check "quorate" wait_for 20 agree agree_view node1 node2 node3
DEF=$(mktemp /tmp/hactl-guest-XXXXXX.conf)
BAD=$(mktemp /tmp/hactl-bad-XXXXXX.conf)
# cleanup_on_exit exits with the status it finds: the script's, not rm's
# (a failed check at the end used to leave the test "passed")
trap 'rc=$?; rm -f "$DEF" "$BAD"; (exit $rc); cleanup_on_exit' EXIT
write_def "$DEF" g1 "$GTYPE" "$GIP"
# definitions travel by value: hactl reads the file where it runs
cp "$DEF" "$LC_SHARED/g1.conf"

# ---- bad input: exact errors, nothing changed ----
seq0=$(jq_on node1 .seq)
printf '[guest]\nname = g1\ntype = toaster\n' >"$LC_SHARED/bad.conf"
out=$(on node1 hactl create /srv/hactl/bad.conf 2>&1); rc=$?
check "bad definition refused (exit 1)" [ $rc = 1 ]
check "bad definition: file:line" grep -q "bad.conf:3: type: 'toaster' is not container or domain" <<<"$out"
out=$(on node1 hactl check /srv/hactl/bad.conf 2>&1); rc=$?
check "hactl check names file:line" grep -q "bad.conf:3:" <<<"$out"
out=$(on node1 hactl start nosuch 2>&1); rc=$?
check "unknown guest: exit 5" [ $rc = 5 ]
check "unknown guest: message" grep -q "unknown guest 'nosuch'" <<<"$out"
out=$(on node1 hactl pause nosuch 2>&1); rc=$?
check "pause of an unknown guest: exit 5 ($out)" \
	bash -c "[ $rc = 5 ] && grep -q \"unknown guest 'nosuch'\" <<<\"\$1\"" _ "$out"
out=$(on node1 hactl resume nosuch 2>&1); rc=$?
check "resume of an unknown guest: exit 5" [ $rc = 5 ]
check "nothing changed" [ "$(jq_on node1 .seq)" = "$seq0" ]

# ---- create, start on each host, reachable from every host ----
check "create" on node1 hactl create /srv/hactl/g1.conf
out=$(on node2 hactl create /srv/hactl/g1.conf 2>&1); rc=$?
check "double create refused" grep -q "guest 'g1' already exists" <<<"$out"
out=$(on node1 hactl pause g1 2>&1); rc=$?
check "pause of a stopped guest refused (exit 1: $out)" \
	bash -c "[ $rc = 1 ] && grep -q \"guest 'g1' is stopped: only a started guest can be paused\" <<<\"\$1\"" _ "$out"
for n in node1 node2 node3; do
	t0=$(now_ms)
	if on node1 hactl start g1 --node $n >/dev/null; then
		pass "start on $n ($(( $(now_ms) - t0 )) ms)"
	else
		fail "start on $n: $(guest_field node1 g1 error)"
		continue
	fi
	check "g1 reported running on $n" [ "$(guest_field node2 g1 node)" = $n ]
	for q in node1 node2 node3; do
		check "workload on $n answers from $q" wait_for 30 answer workload_json $q "$GIP"
	done
	out=$(on node3 hactl start g1 2>&1); rc=$?
	check "double start refused" grep -q "already started on $n" <<<"$out"
	check "stop on $n" on node2 hactl stop g1
	check "stopped" [ "$(guest_field node1 g1 state)" = stopped ]
	check "workload gone after stop" bash -c "! $LC exec node1 -- hactl-workload --query $GIP:7000"
done

# ---- agent restart: guest untouched, re-attached ----
check "start for the agent test" on node1 hactl start g1 --node node2
wait_for 30 answer workload_json node1 "$GIP"
boot1=$(workload_json node1 "$GIP" | boot_of)
lc restart node2 agent
check "agent back and re-attached" wait_for 20 agent daemons_alive node2
sleep 3
check "guest still running after agent restart" [ "$(guest_field node1 g1 state)" = running ]
check "same instance (boot_id kept)" [ "$(workload_json node1 "$GIP" | boot_of)" = "$boot1" ]

# ---- hactl console (g1 on node2): on its host only; a domain's is its
# serial port, interactive; a container's its console log, read-only
CLOG=/var/lib/hactl/guests/g1/console.log
out=$(on node1 hactl console g1 </dev/null 2>&1); rc=$?
check "hactl console on another host: exit 1, names g1's host ($out)" \
	bash -c "[ $rc = 1 ] && grep -q 'g1 runs on node2, not on this host (node1): run it there, e.g. ssh node2 hactl console g1\$' <<<\"\$1\"" _ "$out"
out=$(on node2 hactl console nosuch </dev/null 2>&1); rc=$?
check "hactl console of an unknown guest: exit 5 ($out)" \
	bash -c "[ $rc = 5 ] && grep -q \"unknown guest 'nosuch'\" <<<\"\$1\"" _ "$out"
out=$(on node2 hactl console g1 --lines x </dev/null 2>&1); rc=$?
check "hactl console --lines x: usage error, exit 2" \
	bash -c "[ $rc = 2 ] && grep -qF -- \"--lines takes a count of lines, 0 to 100000 (got 'x')\" <<<\"\$1\"" _ "$out"
if [ "$GTYPE" = domain ]; then
	out=$(on node2 hactl console g1 --lines 100000 </dev/null 2>&1); rc=$?
	check "console: exit 0 at the end of the input" [ $rc = 0 ]
	check "console: says the detach key" grep -q "connected to g1's console on node2; Ctrl-] detaches" <<<"$out"
	check "console: the guest's boot output (its log first)" grep -q "hactl-init: service:" <<<"$out"
	out=$(printf 'echo console-$((6*7))\n' | on node2 hactl console g1 --lines 0 2>/dev/null); rc=$?
	check "console: a line sent is answered by the shell on ttyS0 (exit $rc; $(tr -d '\r' <<<"$out" | tail -3 | tr '\n' '|'))" \
		bash -c "[ $rc = 0 ] && grep -q '^console-42' <<<\"\$(tr -d '\r' <<<\"\$1\")\"" _ "$out"
	check "console: what it answered is in the console log too" \
		wait_for 10 "log" on node2 grep -q "^console-42" "$CLOG"
	out=$(printf 'echo before-$((2*3))\n\035echo after-$((3*3))\n' |
		on node2 hactl console g1 --lines 0 2>&1); rc=$?
	check "console: Ctrl-] detaches (exit $rc: $out)" \
		bash -c "[ $rc = 0 ] && grep -q \"detached from g1's console (it keeps running)\" <<<\"\$1\"" _ "$out"
	check "console: what came before Ctrl-] was sent" \
		wait_for 10 "log" on node2 grep -q "^before-6" "$CLOG"
	sleep 1
	check "console: nothing after Ctrl-] was sent" bash -c "! $LC exec node2 -- grep -q after- $CLOG"
	# on a terminal (script(1) gives it one): raw, Ctrl-] detaches at once
	# (no Enter), and the terminal is back in its mode afterwards
	out=$(printf 'echo tty-$((4*4))\r\035' | on node2 script -qec \
		"hactl console g1 --lines 0; echo rc=\$?; stty -a | grep -o -- '-\?icanon'" /dev/null 2>&1)
	out=$(tr -d '\r' <<<"$out")
	check "console on a terminal: Ctrl-] detaches, exit 0 ($(tr '\n' '|' <<<"$out"))" \
		bash -c "grep -q \"detached from g1's console\" <<<\"\$1\" && grep -qx rc=0 <<<\"\$1\"" _ "$out"
	check "console on a terminal: its mode restored (icanon)" grep -qx icanon <<<"$out"
	check "console on a terminal: the line typed reached the guest" \
		wait_for 10 "log" on node2 grep -q "^tty-16" "$CLOG"
else
	out=$(on node2 hactl console g1 --lines 100000 </dev/null 2>&1); rc=$?
	check "console: exit 0 at the end of the input" [ $rc = 0 ]
	check "console: says it is read-only and how to leave" \
		grep -q "following g1's console log on node2 (a container's console is read-only; Ctrl-] leaves)" <<<"$out"
	check "console: the init's output (its log)" grep -q "hactl-workload: pid .* boot_id $boot1" <<<"$out"
	out=$(echo hello | on node2 hactl console g1 --lines 0 2>&1); rc=$?
	check "console: input is refused with the reason ($out)" \
		bash -c "[ $rc = 0 ] && grep -q \"a container's console is read-only: input ignored (hactl enter g1 gives a shell)\" <<<\"\$1\"" _ "$out"
	# followed like tail -f: a line written to /dev/console inside comes out
	FOL=$(mktemp /tmp/hactl-console-XXXXXX)
	(sleep 4 | on node2 hactl console g1 --lines 0 >"$FOL" 2>&1) &
	fpid=$!
	sleep 1.5
	on node2 hactl exec g1 -- sh -c 'echo console-mark-$((6*7)) >>/dev/console'
	wait $fpid; rc=$?
	check "console: followed, a line written later comes out (exit $rc: $(tr '\n' '|' <"$FOL"))" \
		bash -c "[ $rc = 0 ] && grep -q '^console-mark-42' '$FOL'"
	rm -f "$FOL"
fi
check "console: g1 keeps running" [ "$(guest_field node1 g1 state)" = running ]
check "console: same instance (boot_id kept)" [ "$(workload_json node1 "$GIP" | boot_of)" = "$boot1" ]

# ---- pause and resume (xm pause / xm unpause); g1 runs on node2 ----
# run_state NODE: whether g1's processes run on NODE: "frozen" or
# "thawed" (a container: its freezer cgroup, v1 or v2; a domain: QEMU's
# run state "paused" or "running", asked by QMP directly), else what it is
run_state() {
	local st
	if [ "$GTYPE" = container ]; then
		local f=/sys/fs/cgroup/freezer/hactl-lc/$1/g1/freezer.state
		local e=/sys/fs/cgroup/hactl-lc/$1/g1/cgroup.events
		if [ -e "$f" ]; then
			st=$(cat "$f")
		else
			st=$(sed -n 's/^frozen 1$/FROZEN/p; s/^frozen 0$/THAWED/p' "$e")
		fi
		case $st in FROZEN) echo frozen ;; THAWED) echo thawed ;; *) echo "$st" ;; esac
		return
	fi
	st=$(on "$1" python3 - /var/lib/hactl/guests/g1/qmp.sock <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
print(r.get("return", {}).get("status", r))
PY
)
	case $st in paused) echo frozen ;; running) echo thawed ;; *) echo "$st" ;; esac
}
silent() { ! on node1 hactl-workload --query "$GIP:7000" --timeout 2000 >/dev/null 2>&1; }
st=$(run_state node2)
check "g1 runs on node2 before the pause ($st)" [ "$st" = thawed ]
out=$(on node1 hactl resume g1 2>&1); rc=$?
check "resume of a guest not paused refused ($out)" \
	bash -c "[ $rc = 1 ] && grep -q \"guest 'g1' is not paused\" <<<\"\$1\"" _ "$out"
t0=$(now_ms)
out=$(on node3 hactl pause g1); rc=$?
check "pause ($(( $(now_ms) - t0 )) ms): $out" [ $rc = 0 ]
check "hactl show: paused" [ "$(guest_field node1 g1 state)" = paused ]
check "hactl show: the operator's pause (.paused)" [ "$(guest_field node1 g1 paused)" = true ]
check "hactl guests: state and desired paused" \
	bash -c "$LC exec node1 -- hactl guests | grep -Eq '^g1 +$GTYPE +paused +paused +node2 '"
check "hactl status: paused" [ "$(jq_on node3 '.guests[] | select(.name=="g1") | .state')" = paused ]
st=$(run_state node2)
check "g1 frozen on node2 ($st)" [ "$st" = frozen ]
check "the workload does not answer" silent
out=$(on node1 hactl pause g1 2>&1); rc=$?
check "pause again refused ($out)" grep -q "guest 'g1' is already paused" <<<"$out"
out=$(on node1 hactl migrate g1 --to node3 2>&1); rc=$?
check "migration of a paused guest refused ($out)" \
	bash -c "[ $rc = 1 ] && grep -q \"guest 'g1' is paused: resume it first\" <<<\"\$1\"" _ "$out"
out=$(on node1 hactl snapshot g1 2>&1); rc=$?
check "snapshot of a paused guest refused ($out)" \
	bash -c "[ $rc = 1 ] && grep -q \"guest 'g1' is paused: resume it to take a snapshot\" <<<\"\$1\"" _ "$out"
lc restart node2 agent
check "agent back while g1 is paused" wait_for 20 agent daemons_alive node2
sleep 3
check "still paused after the agent restart" [ "$(guest_field node1 g1 state)" = paused ]
st=$(run_state node2)
check "still frozen after the agent restart ($st)" [ "$st" = frozen ]
check "still silent after the agent restart" silent
t0=$(now_ms)
out=$(on node1 hactl resume g1); rc=$?
check "resume ($(( $(now_ms) - t0 )) ms): $out" [ $rc = 0 ]
check "running again" [ "$(guest_field node1 g1 state)" = running ]
st=$(run_state node2)
check "thawed after resume ($st)" [ "$st" = thawed ]
check "answers again" wait_for 30 answer workload_json node1 "$GIP"
check "same instance after the pause (boot_id kept)" \
	[ "$(workload_json node1 "$GIP" | boot_of)" = "$boot1" ]
check "hactl show: no longer paused" [ "$(guest_field node1 g1 paused)" = false ]

# ---- snapshot, destroy, restore on another host ----
out=$(on node3 hactl snapshot g1 --json); rc=$?
check "snapshot" [ $rc = 0 ]
gen1=$(jq -r .generation <<<"$out")
c_snap=$(workload_json node1 "$GIP" | counter_of)
sleep 1
out=$(on node3 hactl snapshot g1 --json)
gen2=$(jq -r .generation <<<"$out")
check "second snapshot is a newer generation" [ "$gen2" -gt "$gen1" ]
check "show reports the snapshot" [ "$(guest_field node1 g1 snapshot.generation)" = "$gen2" ]
check "stop before destroy" on node1 hactl stop g1
out=$(on node3 hactl console g1 </dev/null 2>&1); rc=$?
check "hactl console of a stopped guest: exit 1 ($out)" \
	bash -c "[ $rc = 1 ] && grep -q 'g1 is not running (stopped): it has no console; start it first' <<<\"\$1\"" _ "$out"
out=$(on node1 hactl destroy g1 2>&1)
check "destroy" grep -q "g1 destroyed" <<<"$out"
check "gone from the list" [ "$(on node1 hactl list --json | jq length)" = 0 ]

# one flipped byte in the newest generation: refused, nothing changed
gdir=$LC_SHARED/snapshots/g1/$(printf 'gen-%06d' "$gen2")
victim=$(find "$gdir/state" -type f -size +1k | head -1)
python3 - "$victim" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 0x01]))
PY
seq1=$(jq_on node1 .seq)
out=$(on node1 hactl restore g1 --generation "$gen2" 2>&1); rc=$?
check "restore of the corrupt generation refused (exit 1)" [ $rc = 1 ]
check "refusal names the corruption" grep -q "generation $gen2 is corrupt: .*checksum mismatch" <<<"$out"
check "refusal changed nothing" [ "$(jq_on node1 .seq)" = "$seq1" ]

# the previous generation, on another host
out=$(on node1 hactl restore g1 --generation "$gen1" --node node3 2>&1); rc=$?
check "restore of generation $gen1 on node3" [ $rc = 0 ]
check "runs on node3" [ "$(guest_field node1 g1 node)" = node3 ]
check "workload answers after restore" wait_for 30 answer workload_json node2 "$GIP"
j=$(workload_json node2 "$GIP")
c_rest=$(counter_of <<<"$j")
log "counter at snapshot ~$c_snap, after restore $c_rest; boot $(boot_of <<<"$j") vs $boot1"
check "counter continues from the snapshot (>= $((c_snap - 200)))" [ "$c_rest" -ge $((c_snap - 200)) ]
check "same boot_id: restored, not restarted" [ "$(boot_of <<<"$j")" = "$boot1" ]
if [ "$GTYPE" = domain ]; then
	# restore starts QEMU as an incoming migration does (-incoming defer)
	out=$(printf 'echo restored-$((5*5))\n' | on node3 hactl console g1 --lines 0 2>/dev/null)
	check "console after the restore: the shell answers" \
		bash -c "grep -q '^restored-25' <<<\"\$(tr -d '\r' <<<\"\$1\")\"" _ "$out"
fi
check "note says which snapshot" bash -c "$LC exec node1 -- hactl show g1 --json | jq -r .note | grep -q 'generation $gen1'"

# ---- a container: its writable layer's use in hactl show (the disk
# quota); g1 runs on node3 (the restore above), its layer the default 1 GiB
if [ "$GTYPE" = container ]; then
	disk_of() { guest_field node1 g1 "usage.disk_$1_bytes"; }
	check "show reports the layer's size" wait_for 20 "disk size" \
		bash -c "[ \"\$($LC exec node1 -- hactl show g1 --json | jq -r '.usage.disk_size_bytes // 0')\" -gt 900000000 ]"
	used0=$(disk_of used)
	gpid=$(on node3 sed -n 's/^pid=//p' /var/lib/hactl/guests/g1/pid)
	check "16 MiB written inside g1" on node3 dd if=/dev/zero of="/proc/$gpid/root/fill" bs=1M \
		count=16 conv=fsync status=none
	check "show's disk use grows by the 16 MiB" wait_for 20 "disk used" \
		bash -c "[ \"\$($LC exec node1 -- hactl show g1 --json | jq -r '.usage.disk_used_bytes // 0')\" -ge $((used0 + 16 * 1048576)) ]"
	out=$(on node1 hactl show g1)
	check "hactl show: the disk line ($(grep '^disk:' <<<"$out"))" \
		grep -qE '^disk: +[0-9.]+ MiB of [0-9.]+ MiB used' <<<"$out"
	# hactl exec / enter: inside g1, on its host only
	out=$(on node3 hactl exec g1 -- sh -c 'test -e /fill && echo "found; args: $0 $1"; exit 3' \
		x --json=1); rc=$?
	check "hactl exec: the command's exit status (3, got $rc)" [ $rc = 3 ]
	check "hactl exec: inside g1's root (the /fill written above)" grep -q "^found" <<<"$out"
	check "hactl exec: what follows -- is the command's ($out)" \
		grep -q "args: x --json=1" <<<"$out"
	check "hactl exec: stdin passes through" \
		[ "$(echo abc | on node3 hactl exec g1 -- cat)" = abc ]
	out=$(on node1 hactl exec g1 -- true 2>&1); rc=$?
	check "hactl exec on another host: exit 1, names g1's host ($out)" \
		bash -c "[ $rc = 1 ] && grep -q 'g1 runs on node3, not on this host' <<<\"\$1\"" _ "$out"
	check "hactl enter: a shell inside" \
		[ "$(echo 'test -e /fill && echo inside' | on node3 hactl enter g1)" = inside ]
fi

# newest good is chosen by default (the corrupt one is skipped)
check "stop" on node1 hactl stop g1
out=$(on node1 hactl restore g1 --node node1 2>&1); rc=$?
check "restore without --generation skips the corrupt one" [ $rc = 0 ]
check "skip reported" grep -q "skipping: .*generation $gen2 is corrupt" <<<"$out"
check "stop" on node1 hactl stop g1
check "destroy --purge" on node1 hactl destroy g1 --purge
check "snapshots purged" [ ! -d "$LC_SHARED/snapshots/g1" ]
