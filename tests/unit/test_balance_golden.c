/*
 * test_balance_golden.c - runs every tests/golden/balance/<case>.sim
 * through the engine (with <case>.policy when present) and compares the
 * printed plans with <case>.expected, like pacemaker's cts-scheduler.
 *
 * HA_GOLDEN_UPDATE=1 rewrites the .expected files instead (review the
 * diff before committing it). Each case also runs twice: the output must
 * be identical (the engine is deterministic).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "balance.h"
#include "harness.h"
#include "util.h"

#define MIN_CASES 25

static char golden_dir[4096];

/* Removes every "DIR/" prefix so that messages do not depend on paths. */
static void strip_dir(char *s)
{
	char pat[4200];
	char *p;
	size_t n;

	snprintf(pat, sizeof(pat), "%s/", golden_dir);
	n = strlen(pat);
	while ((p = strstr(s, pat)) != NULL) {
		memmove(p, p + n, strlen(p + n) + 1);
	}
}

/* Runs one case; returns malloc'd output (caller frees). */
static char *run_case(const char *name)
{
	char path[8192], ppath[8192], err[512];
	struct ha_bal_policy *p = NULL;
	struct ha_bal_sim *sim = NULL;
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat st;
	int rc;

	if (f == NULL) {
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.sim", golden_dir, name);
	rc = ha_file_read(path, HA_BAL_SIM_MAX_BYTES, &buf, &len);
	if (rc < 0) {
		fprintf(f, "error: cannot read %s.sim\n", name);
		goto done;
	}
	snprintf(path, sizeof(path), "%s.sim", name);
	rc = ha_bal_sim_parse(path, (const char *)buf, len, &sim, err, sizeof(err));
	free(buf);
	if (rc < 0) {
		fprintf(f, "error: %s\n", err);
		goto done;
	}
	snprintf(ppath, sizeof(ppath), "%s/%s.policy", golden_dir, name);
	if (stat(ppath, &st) == 0) {
		rc = ha_bal_policy_load(ppath, &p, err, sizeof(err));
	} else if (sim->policy_file[0]) {
		snprintf(ppath, sizeof(ppath), "%s/%s", golden_dir, sim->policy_file);
		rc = ha_bal_policy_load(ppath, &p, err, sizeof(err));
	} else {
		p = ha_bal_policy_new();
		rc = p ? 0 : -ENOMEM;
	}
	if (rc < 0) {
		strip_dir(err);
		fprintf(f, "error: %s\n", err);
		goto done;
	}
	rc = ha_bal_sim_run(sim, p, path, ha_bal_sim_print_step, f, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(f, "error: %s\n", err);
	}
done:
	ha_bal_policy_free(p);
	ha_bal_sim_free(sim);
	fclose(f);
	return out;
}

static void show_diff(const char *name, const char *want, const char *got)
{
	unsigned line = 1;
	const char *a = want, *b = got;

	while (*a && *b && *a == *b) {
		if (*a == '\n') {
			line++;
		}
		a++;
		b++;
	}
	fprintf(stderr, "%s: output differs from %s.expected at line %u\n", name, name, line);
	fprintf(stderr, "---- expected ----\n%s---- got ----\n%s------------\n", want, got);
}

static int sim_filter(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 4 && strcmp(e->d_name + n - 4, ".sim") == 0;
}

int main(void)
{
	const char *src = getenv("HA_SRC_DIR");
	bool update = getenv("HA_GOLDEN_UPDATE") && strcmp(getenv("HA_GOLDEN_UPDATE"), "1") == 0;
	struct dirent **list = NULL;
	int n;

	if (src == NULL) {
		fprintf(stderr, "HA_SRC_DIR is not set (ctest sets it)\n");
		return 77;
	}
	snprintf(golden_dir, sizeof(golden_dir), "%s/tests/golden/balance", src);
	n = scandir(golden_dir, &list, sim_filter, alphasort);
	CHECK(n >= MIN_CASES);
	for (int i = 0; i < n; i++) {
		char name[256], path[4400];
		char *got, *again;
		uint8_t *want = NULL;
		size_t wlen = 0;

		snprintf(name, sizeof(name), "%.*s", (int)(strlen(list[i]->d_name) - 4),
			 list[i]->d_name);
		free(list[i]);
		got = run_case(name);
		again = run_case(name);
		CHECK(got != NULL && again != NULL);
		if (got == NULL || again == NULL) {
			free(got);
			free(again);
			continue;
		}
		if (strcmp(got, again) != 0) {
			fprintf(stderr, "%s: two runs differ\n", name);
			CHECK(!"deterministic");
		}
		snprintf(path, sizeof(path), "%s/%s.expected", golden_dir, name);
		if (update) {
			int rc = ha_file_write_atomic(path, got, strlen(got));

			CHECK_EQ_INT(rc, 0);
			printf("updated %s.expected\n", name);
		} else if (ha_file_read(path, 1 << 20, &want, &wlen) < 0) {
			fprintf(stderr, "%s: no %s.expected (HA_GOLDEN_UPDATE=1 writes it)\n",
				name, name);
			CHECK(!"expected file present");
		} else {
			bool same = strcmp((const char *)want, got) == 0;

			if (!same) {
				show_diff(name, (const char *)want, got);
			}
			CHECK(same);
			printf("%s %s\n", same ? "ok  " : "FAIL", name);
		}
		free(want);
		free(got);
		free(again);
	}
	free(list);
	return ha_test_done("test_balance_golden");
}
