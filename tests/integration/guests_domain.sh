#!/bin/bash
# Paravirt domains on the cluster: the same lifecycle as containers.
. "$(dirname "$0")/lib.sh"
GTYPE=domain
GIP=10.213.1.20
GUEST_MEM=128M
. "$(dirname "$0")/guest_lib.sh"

T_DONE=1
finish
