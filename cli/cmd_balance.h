/*
 * cmd_balance.h - hactl commands around the balancing engine that need no
 * running cluster: `hactl simulate FILE` and the policy part of
 * `hactl check`; plus the JSON form of a plan for `hactl balance
 * --dry-run --json`. Built into the static library ha_balance_cli.
 */
#ifndef HA_CMD_BALANCE_H
#define HA_CMD_BALANCE_H

#include "balance.h"

struct json_object;

/*
 * hactl simulate FILE [--policy PATH] [--save FILE] [--quiet] [--timing]
 * argv[0] is "simulate". Prints every plan (text, or JSON when @json).
 * Returns the exit status: 0 ok, 1 bad input (FILE:LINE on stderr),
 * 2 usage.
 */
int hactl_cmd_simulate(int argc, char **argv, int json);

/*
 * Validates a policy file or a policy.d directory. Returns 0 when valid,
 * 1 with "FILE:LINE: message" on stderr otherwise. Prints "PATH: ok" (or
 * a JSON object {"path", "ok", "error"}) on stdout.
 */
int hactl_cmd_check_policy(const char *path, int json);

/* The plan as JSON; caller puts it with json_object_put(). NULL on ENOMEM. */
struct json_object *hactl_balance_plan_json(const struct ha_bal_cluster *c,
					    const struct ha_bal_plan *plan);

/* A score as JSON; caller puts it. */
struct json_object *hactl_balance_score_json(const struct ha_bal_score *s);

#endif
