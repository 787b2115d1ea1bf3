#!/bin/bash
# The short fault campaign (tests/faults/campaign): 5 faults drawn by a fixed
# seed on a 3-host cluster with two containers and a domain, audited from
# the hosts' cgroups and processes (never two running copies, every guest
# back, no counter below its snapshot's, coordinators agreeing, no leak).
# The long campaign is bench/faults/run. A failure names the seed and step:
#   tests/faults/campaign --seed S --faults N replays it.
. "$(dirname "$0")/lib.sh"

need_templates
need_criu
export HACTL_BIN_DIR
out=$(python3 "$HA_SRC_DIR/tests/faults/campaign" --seed "${HACTL_CAMPAIGN_SEED:-7}" \
	--faults "${HACTL_CAMPAIGN_FAULTS:-5}" 2>&1)
rc=$?
echo "$out"
[ $rc = 77 ] && exit 77
check "the campaign's audits held (exit $rc)" [ $rc = 0 ]
T_DONE=1
finish
