#include "harness.h"

int ha_test_failures;
int ha_test_checks;

int ha_test_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name,
	       ha_test_checks - ha_test_failures, ha_test_failures);
	return ha_test_failures ? 1 : 0;
}
