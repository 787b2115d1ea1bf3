#!/bin/bash
# build.minimal - the tree configures and builds, warnings fatal, with every
# optional part switched off: CRIU's RPC schema (HA_WITH_CRIU), RDMA
# (HA_WITH_RDMA: librdmacm + libibverbs), the drbd backend (HA_WITH_DRBD),
# the man pages (HA_WITH_MAN: pandoc) and the coordinator's HTTP endpoint
# (HA_WITH_HTTP: libmicrohttpd). A newcomer's first build may have
# none of them; this is the build that broke when an unused helper sat outside its #ifdef.
#
# Usage: minimal.sh SRC_DIR WORK_DIR
set -euo pipefail
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cmake -S "$src" -B "$work" -DCMAKE_BUILD_TYPE=Debug -DHA_WERROR=ON -DHA_SANITIZE=OFF \
	-DHA_WITH_CRIU=OFF -DHA_WITH_RDMA=OFF -DHA_WITH_DRBD=OFF -DHA_WITH_MAN=OFF -DHA_WITH_HTTP=OFF >"$work/configure.log" 2>&1 || {
	cat "$work/configure.log"
	echo "build.minimal: configure failed" >&2
	exit 1
}
grep -E "CRIU RPC|RDMA|drbd|HTTP endpoint" "$work/configure.log"
cmake --build "$work" -j"$(nproc)" >"$work/build.log" 2>&1 || {
	grep -E "error|warning" "$work/build.log" | head -40
	echo "build.minimal: build failed (see $work/build.log)" >&2
	exit 1
}
# none of the optional parts leaked in
for def in HAVE_CRIU_RPC HAVE_RDMA HAVE_IBVERBS HAVE_DRBD HAVE_MICROHTTPD; do
	if grep -q -- "-D$def\b" "$work/compile_commands.json"; then
		echo "build.minimal: $def is defined although its part is off" >&2
		exit 1
	fi
done
# the parts that stay answer for themselves: the agent runs, the storage
# registry has no drbd, CRIU calls say why they are missing
"$work/bin/ha-agent" --version
# the coordinator's answers are built and tested without a server
"$work/tests/test_coord_metrics"
"$work/tests/test_storage"
if "$work/tests/test_storage" drbd probe 2>/dev/null; then
	echo "build.minimal: drbd backend answered although built without it" >&2
	exit 1
fi
rm -rf "$work"
echo "build.minimal: configured and built with CRIU, RDMA, DRBD, man pages and HTTP off"
