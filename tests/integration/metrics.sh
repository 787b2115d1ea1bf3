#!/bin/bash
# The coordinator's HTTP endpoint (docs/monitoring.md) on 3 hosts, each
# listening on its own loopback with a token: /metrics says what the test
# did (3 nodes online, one leader, a guest created, started and migrated:
# guests by state and host, migrations committed +1 with a duration and a
# downtime observed on every node, seq as hactl status says), follows the
# text format (promtool check metrics, where Debian's prometheus package
# provides it), and refuses a missing or wrong token (401), other methods
# (405) and unknown paths (404). Then headless Chromium loads the status
# page from a host: its DOM shows the nodes and the guest, and its
# screenshot is kept under the build directory. Exit 77 (skipped) without
# curl or chromium.
. "$(dirname "$0")/lib.sh"

if ! command -v curl >/dev/null; then
	echo "skipped: curl is missing (deploy/install-deps)"
	exit 77
fi
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
ART=${HA_TEST_BIN_DIR}/artifacts/metrics
mkdir -p "$ART"
rm -f "$ART"/*

need_templates
need_criu
TOKEN=tok-$RANDOM$RANDOM
export HACTL_LC_METRICS_LISTEN=127.0.0.1:9477 HACTL_LC_METRICS_TOKEN=$TOKEN
start_cluster --nodes 3
check "quorate" wait_for 20 agree agree_view node1 node2 node3
URL=http://127.0.0.1:9477

scrape() { # scrape NODE: the metrics of NODE's coordinator
	on "$1" curl -fsS --max-time 10 -H "Authorization: Bearer $TOKEN" "$URL/metrics"
}
val() { # val NODE SERIES: its value ("" when absent)
	scrape "$1" | awk -v s="$2" '$1 == s { print $2 }'
}
val_is() { # val_is NODE SERIES VALUE
	[ "$(val "$1" "$2")" = "$3" ]
}
at_least() { # at_least NODE SERIES N
	local v
	v=$(val "$1" "$2")
	[ -n "$v" ] && [ "${v%.*}" -ge "$3" ]
}
code() { # code NODE CURL-ARGS...: the HTTP status
	local node=$1
	shift
	on "$node" curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$@"
}

for n in node1 node2 node3; do
	check "$n serves metrics" wait_for 20 "metrics on $n" scrape "$n"
	check "$n: 3 nodes online" val_is "$n" 'hactl_nodes{state="online"}' 3
	check "$n: quorate" val_is "$n" hactl_quorate 1
	check "$n: node id" val_is "$n" hactl_node_id "${n#node}"
	check "$n: leader node1" val_is "$n" 'hactl_leader_node_id{node="node1"}' 1
	check "$n: 3 members" val_is "$n" hactl_cluster_members 3
done
check "node1 is the leader" val_is node1 hactl_leader 1
check "node2 is not" val_is node2 hactl_leader 0
check "logged where it listens" grep -q "metrics and status page on http://127.0.0.1:9477/" \
	"${HACTL_LC_DIR:-/run/hactl-lc}/node1/log/ha-coordinator.log"

# the token, the methods, the paths
check "no token: 401" [ "$(code node1 "$URL/metrics")" = 401 ]
check "wrong token: 401" [ "$(code node1 -H "Authorization: Bearer nope" "$URL/metrics")" = 401 ]
check "wrong token in the query: 401" [ "$(code node2 "$URL/?token=nope")" = 401 ]
check "token in the query: 200" [ "$(code node2 "$URL/metrics?token=$TOKEN")" = 200 ]
check "POST: 405" [ "$(code node1 -X POST -d x -H "Authorization: Bearer $TOKEN" "$URL/metrics")" = 405 ]
check "unknown path: 404" [ "$(code node1 -H "Authorization: Bearer $TOKEN" "$URL/admin")" = 404 ]
check "not on another address" [ "$(code node1 "http://10.213.0.1:9477/metrics")" = 000 ]
check "401s counted" at_least node1 'hactl_http_requests_total{code="401"}' 2
out=$(on node1 curl -sS --max-time 10 -D - -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/metrics")
check "Prometheus text 0.0.4" grep -qi "^content-type: text/plain; version=0.0.4" <<<"$out"

# a guest, started and migrated: every node counts the commits
write_def "$LC_SHARED/m1.conf" m1 container 10.213.1.91
check "create m1" on node1 hactl create /srv/hactl/m1.conf
check "start m1 on node1" on node1 hactl start m1 --node node1
check "m1 answers" wait_for 30 answer workload_json node2 10.213.1.91
check "node3: m1 running on node1" wait_for 10 metrics \
	val_is node3 'hactl_guests{state="running",host="node1"}' 1
declare -A mig0 dur0
for n in node1 node2 node3; do
	mig0[$n]=$(val "$n" 'hactl_migrations_total{result="committed"}')
	dur0[$n]=$(val "$n" hactl_migration_duration_seconds_count)
done
out=$(on node1 hactl migrate m1 --to node2 --json); rc=$?
check "migrate m1 to node2" [ $rc = 0 ]
log "migration: $(jq -c '{state, downtime_ms, total_ms}' <<<"$out" 2>/dev/null)"
for n in node1 node2 node3; do
	check "$n: migrations committed +1" \
		val_is "$n" 'hactl_migrations_total{result="committed"}' $((mig0[$n] + 1))
	check "$n: a migration duration observed" \
		val_is "$n" hactl_migration_duration_seconds_count $((dur0[$n] + 1))
	check "$n: its downtime observed" wait_for 20 downtime \
		at_least "$n" hactl_migration_downtime_seconds_count 1
	check "$n: m1 running on node2" wait_for 20 metrics \
		val_is "$n" 'hactl_guests{state="running",host="node2"}' 1
	check "$n: no migration in progress" val_is "$n" hactl_migrations_in_progress 0
done
seq_agrees() { [ "$(val node2 hactl_state_seq)" = "$(jq_on node2 .seq)" ]; }
check "seq as hactl status says" wait_for 10 seq seq_agrees
check "CPG messages received counted" at_least node2 hactl_cpg_messages_received_total 1
check "CPG messages sent counted" at_least node2 hactl_cpg_messages_sent_total 1
scrape node1 >"$ART/metrics-node1.txt"
log "a scrape of node1: $ART/metrics-node1.txt ($(wc -l <"$ART/metrics-node1.txt") lines)"
if command -v promtool >/dev/null; then
	check "promtool check metrics" promtool check metrics <"$ART/metrics-node1.txt"
else
	log "no promtool (Debian: prometheus): the format is checked by unit.test_coord_metrics"
fi

# the page's data
js=$(on node3 curl -fsS --max-time 10 "$URL/status.json?token=$TOKEN")
check "status.json: 3 nodes" [ "$(jq '.nodes | length' <<<"$js")" = 3 ]
check "status.json: m1 on node2" [ "$(jq -r '.guests[] | select(.name=="m1") | .node' <<<"$js")" = node2 ]
check "status.json: events" [ "$(jq '.events | length' <<<"$js")" -gt 0 ]

# the page in a real browser, from a host
if [ -z "$CHROMIUM" ]; then
	log "skipped: chromium is missing (apt-get install chromium)"
	T_DONE=1
	finish
	rc=$?
	[ $rc = 0 ] && exit 77
	exit $rc
fi
prof=$(mktemp -d /tmp/hactl-metrics-chromium.XXXXXX)
copts=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
	--user-data-dir="$prof" --virtual-time-budget=5000 --window-size=1280,1000)
ok0=$(val node1 'hactl_http_requests_total{code="200"}')
dom=$(on node1 timeout 120 "$CHROMIUM" "${copts[@]}" --dump-dom "$URL/?token=$TOKEN" 2>"$ART/chromium.log")
printf '%s\n' "$dom" >"$ART/status-page-dom.html"
check "the page loads in Chromium" grep -q '<table id="nodes"' <<<"$dom"
for n in node1 node2 node3; do
	check "the page shows $n" grep -q "<td>$n</td>" <<<"$dom"
done
check "the page shows m1" grep -q "<td>m1</td>" <<<"$dom"
check "the page shows quorate" grep -q '<span class="ok">quorate</span>' <<<"$dom"
check "the page shows no refresh error" grep -q '<div id="error" class="bad"></div>' <<<"$dom"
# the page and its refreshes from status.json (two in 5 s), and this scrape
check "the page refreshed itself from status.json" \
	at_least node1 'hactl_http_requests_total{code="200"}' $((ok0 + 3))
on node1 timeout 120 "$CHROMIUM" "${copts[@]}" --screenshot="$ART/status-page.png" \
	"$URL/?token=$TOKEN" >>"$ART/chromium.log" 2>&1
check "screenshot taken" [ -s "$ART/status-page.png" ]
log "screenshot of the status page: $ART/status-page.png"
rm -rf "$prof"

T_DONE=1
finish
