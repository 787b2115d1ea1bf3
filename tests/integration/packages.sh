#!/bin/bash
# The Debian packages: `dpkg-buildpackage -b` builds them from a copy of the
# tree, lintian finds no error, they hold what a host needs (daemons, hactl,
# units, sysusers/tmpfiles, man pages, bash completion, examples), and a
# 3-host local cluster runs from the packaged binaries: quorate, agents
# registered, hactl's completion names its nodes, the man pages open.
# Exit 77 without debhelper, pandoc or lintian (deploy/install-deps).
set -uo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root"
	exit 77
fi
for t in dpkg-buildpackage dh pandoc lintian; do
	command -v $t >/dev/null || { echo "skipped: $t missing"; exit 77; }
done
HA_SRC_DIR=${HA_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
work=$(mktemp -d /var/tmp/hactl-packages.XXXXXX)
trap 'rm -rf "$work"' EXIT
log() { echo "[packages $(date +%T.%3N)] $*"; }

# Built before the machine lock (below, in lib.sh): a build needs no cluster.
log "copying the tree"
src=$work/hactl-src
mkdir -p "$src"
if git -C "$HA_SRC_DIR" rev-parse --git-dir >/dev/null 2>&1; then
	# tracked files and new ones, as they are in the working tree
	git -C "$HA_SRC_DIR" ls-files -z --cached --others --exclude-standard |
		(cd "$HA_SRC_DIR" && xargs -0 cp --parents -t "$src" 2>/dev/null) || true
else
	tar -C "$HA_SRC_DIR" --exclude='./build*' --exclude='./obj-*' -c . | tar -C "$src" -x
fi
log "dpkg-buildpackage -b"
s=$SECONDS
if ! (cd "$src" && dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1); then
	tail -40 "$work/build.log"
	echo "FAIL: dpkg-buildpackage"
	echo "0 passed, 1 failed"
	exit 1
fi
log "built in $((SECONDS - s)) s: $(cd "$work" && ls ./*.deb | tr '\n' ' ')"
deb=$(ls "$work"/hactl_*.deb)

. "$(dirname "$0")/lib.sh"
trap 'rc=$?; rm -rf "$work"; (exit $rc); cleanup_on_exit' EXIT

out=$(lintian --fail-on error "$deb" 2>&1); rc=$?
echo "$out" | sed 's/^/  lintian: /'
check "lintian: no error" [ $rc = 0 ]
check "lintian: no E: line" bash -c "! grep -q '^E:' <<<\"\$1\"" _ "$out"

root=$work/root
dpkg -x "$deb" "$root"
for f in usr/sbin/ha-coordinator usr/sbin/ha-agent usr/sbin/hactl \
	lib/systemd/system/ha-coordinator.service lib/systemd/system/ha-agent.service \
	usr/lib/sysusers.d/hactl.conf usr/lib/tmpfiles.d/hactl.conf \
	usr/share/bash-completion/completions/hactl \
	usr/share/man/man8/hactl.8.gz usr/share/man/man8/ha-coordinator.8.gz \
	usr/share/man/man8/ha-agent.8.gz usr/share/man/man5/hactl.conf.5.gz \
	usr/share/man/man5/hactl-guest.5.gz usr/share/man/man5/hactl-policy.5.gz \
	usr/share/man/man5/hactl-fence.conf.5.gz \
	usr/share/doc/hactl/examples/hactl.conf usr/share/doc/hactl/examples/fence.conf \
	usr/share/doc/hactl/examples/policy.d/50-example.conf; do
	check "package holds /$f" [ -e "$root/$f" ]
done
check "the units start the packaged daemons" \
	grep -q '^ExecStart=/usr/sbin/ha-agent ' "$root/lib/systemd/system/ha-agent.service"
check "postinst creates the hactl group" bash -c "dpkg-deb -e '$deb' '$work/ctl' && grep -q systemd-sysusers '$work/ctl/postinst'"
check "hactl(8) opens" bash -c "MANWIDTH=80 man -l '$root/usr/share/man/man8/hactl.8.gz' 2>/dev/null | grep -q 'hactl evacuate'"
check "the packaged example configuration is valid" \
	"$root/usr/sbin/ha-coordinator" --check "$root/usr/share/doc/hactl/examples/hactl.conf"
check "the packaged example fence.conf is valid" \
	"$root/usr/sbin/hactl" check --type fence "$root/usr/share/doc/hactl/examples/fence.conf"

# a cluster from the packaged binaries
export HACTL_BIN_DIR=$root/usr/sbin
start_cluster --nodes 3
check "all three quorate" wait_for 30 quorate \
	bash -c "for n in node1 node2 node3; do [ \"\$($LC exec \$n -- hactl status --json | jq -r .quorate)\" = true ] || exit 1; done"
check "agents registered facts everywhere" wait_for 20 facts \
	bash -c "[ \"\$($LC exec node2 -- hactl status --json | jq '[.nodes[] | select(.agent and .facts.cpus > 0)] | length')\" = 3 ]"
check "the daemons run from the package" \
	bash -c "pgrep -af ha-coordinator | grep -qF '$root/usr/sbin/ha-coordinator'"
got=$(on node2 bash --norc --noprofile -c '
	source /usr/share/bash-completion/bash_completion; source "$1"
	COMP_WORDS=(hactl evacuate ""); COMP_CWORD=2; COMP_LINE="hactl evacuate "; COMP_POINT=${#COMP_LINE}
	_hactl hactl "" evacuate; printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ \
	"$root/usr/share/bash-completion/completions/hactl")
check "completion names the nodes ($got)" [ "$got" = "node1 node2 node3 " ]

T_DONE=1
finish
