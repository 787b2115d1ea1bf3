/*
 * fuzz_policy.c - policy files (balance/bal_policy.c): any input either
 * parses or is refused with "FILE:LINE: message"; what parses prints
 * back as a policy that parses again to the same options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ha_bal_policy *p = ha_bal_policy_new(), *q = NULL;
	char err[512] = "";
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (p == NULL) {
		return 0;
	}
	rc = ha_bal_policy_parse(p, "fuzz.conf", (const char *)data, size, err, sizeof(err));
	if (rc < 0) {
		/* refused: the message names the file and a line */
		if (strncmp(err, "fuzz.conf:", 10) != 0) {
			abort();
		}
		ha_bal_policy_free(p);
		return 0;
	}
	f = open_memstream(&buf, &len);
	if (f == NULL) {
		ha_bal_policy_free(p);
		return 0;
	}
	ha_bal_policy_print(p, f);
	fclose(f);
	q = ha_bal_policy_new();
	if (q && ha_bal_policy_parse(q, "printed", buf, len, err, sizeof(err)) != 0) {
		fprintf(stderr, "printed policy does not parse: %s\n%s", err, buf);
		abort();
	}
	if (q && (q->strategy != p->strategy || q->hold_rounds != p->hold_rounds ||
		  q->max_moves != p->max_moves || q->max_move_mem_mib != p->max_move_mem_mib ||
		  q->enabled != p->enabled || q->n_plus_one != p->n_plus_one)) {
		abort();
	}
	free(buf);
	ha_bal_policy_free(q);
	ha_bal_policy_free(p);
	return 0;
}
