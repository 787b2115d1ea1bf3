/*
 * balance_sim.c - ha-balance-sim: `hactl simulate` as a standalone tool,
 * so that bench/balance runs the engine without a hactl build.
 *   ha-balance-sim FILE [--policy PATH] [--save FILE] [--quiet] [--timing] [--json]
 *   ha-balance-sim --check POLICY
 */
#include <string.h>

#include "cmd_balance.h"

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--check") == 0) {
		return hactl_cmd_check_policy(argv[2], 0);
	}
	argv[0] = "simulate";
	return hactl_cmd_simulate(argc, argv, 0);
}
