#include <dirent.h>

#include "harness.h"

int ha_test_failures;
int ha_test_checks;

int ha_test_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name,
	       ha_test_checks - ha_test_failures, ha_test_failures);
	return ha_test_failures ? 1 : 0;
}

int ha_test_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL) {
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		n += de->d_name[0] != '.';
	}
	closedir(d);
	return n - 1; /* the DIR's own fd */
}
