/*
 * test_container_layer_lock.c - the lock of a container's writable layer
 * image (agent/driver_container_layer.c) through a migration's handover:
 * who may take it in which state, the records it holds, and that of a
 * destination claiming and a source taking back at once exactly one gets
 * it. Real files in a temporary directory; nothing is mounted (the image
 * is an empty file that no loop device holds), so it runs without root.
 *
 * Two "hosts" are two run directories: the lock's holder is
 * "host=HOSTNAME run=RUN_DIR".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include "driver_container.h"
#include "harness.h"
#include "util.h"

static char tmp[] = "/tmp/ha-test-layer-lock-XXXXXX";
static char data_dir[256], run_a[256], run_b[256], lock_path[300], img_path[300];

static void lock_text(char *buf, size_t cap)
{
	ssize_t n = host_read_small(lock_path, buf, cap);

	if (n < 0) {
		snprintf(buf, cap, "(none)");
	}
}

static bool lock_first_line_is(const char *want)
{
	char buf[1024];

	lock_text(buf, sizeof(buf));
	buf[strcspn(buf, "\n")] = '\0';
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "lock's first line: '%s', want '%s'\n", buf, want);
		return false;
	}
	return true;
}

static bool lock_has(const char *sub)
{
	char buf[1024];

	lock_text(buf, sizeof(buf));
	if (strstr(buf, sub) == NULL) {
		fprintf(stderr, "lock: '%s' lacks '%s'\n", buf, sub);
		return false;
	}
	return true;
}

static void layer_of(struct ctr_layer *l, struct agent_guest_spec *spec, const char *run)
{
	char err[AGENT_ERR_LEN];

	memset(spec, 0, sizeof(*spec));
	spec->name = "c1";
	spec->run_dir = run;
	spec->data_dir = data_dir;
	CHECK_EQ_INT(ctr_layer_init(l, spec, err), 0);
}

/* The handover's states, one after the other. */
static void handover_states(void)
{
	struct agent_guest_spec sa, sb;
	struct ctr_layer a, b;
	char err[AGENT_ERR_LEN], owner_a[600], owner_b[600], want[800];

	layer_of(&a, &sa, run_a);
	layer_of(&b, &sb, run_b);
	snprintf(owner_a, sizeof(owner_a), "%.*s", (int)strcspn(a.owner, "\n"), a.owner);
	snprintf(owner_b, sizeof(owner_b), "%.*s", (int)strcspn(b.owner, "\n"), b.owner);

	/* A runs the guest: its lock */
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_WAIT, 0, err), 0);
	CHECK(lock_first_line_is(owner_a));
	/* nobody else takes a held lock without force: not a migration's
	 * destination, not a plain wait */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), -EBUSY);
	CHECK(strstr(err, "mounted by another host") != NULL);
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_RECLAIM, 0, err), -EBUSY);
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_WAIT, 0, err), -EBUSY);
	CHECK(lock_first_line_is(owner_a));
	/* B is not A's: a handover by B is refused */
	CHECK_EQ_INT(ctr_layer_handover(&b, "migration 7", err), -EPERM);

	/* A's final dump is done: handed over */
	CHECK_EQ_INT(ctr_layer_handover(&a, "migration 7", err), 0);
	CHECK(lock_first_line_is(CTR_LAYER_HANDOVER));
	snprintf(want, sizeof(want), "from %s, migration 7", owner_a);
	CHECK(lock_has(want));
	/* a handover is for a migration only: a plain wait does not take it,
	 * and A's clean-up (the commit) leaves it alone */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_WAIT, 0, err), -EBUSY);
	CHECK_EQ_INT(ctr_layer_close(&a, err), 0);
	CHECK(lock_first_line_is(CTR_LAYER_HANDOVER));

	/* B, the destination, claims it; the record says where it came from */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), 0);
	CHECK(lock_first_line_is(owner_b));
	snprintf(want, sizeof(want), "(handover from %s, migration 7)", owner_a);
	CHECK(lock_has(want));
	/* claiming again: ours already */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), 0);

	/* The abort reaches A first: B holds the layer, so A must not take
	 * it back, not even after a wait */
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_RECLAIM, 100, err), -EBUSY);
	CHECK(lock_first_line_is(owner_b));
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_CLAIM, 0, err), -EBUSY);

	/* B unmounts and releases it (its abort): A takes it back */
	CHECK_EQ_INT(ctr_layer_close(&b, err), 0);
	CHECK(access(lock_path, F_OK) != 0);
	/* a destination never takes a free lock as a handover */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), -EBUSY);
	CHECK(strstr(err, "no handover to take") != NULL);
	CHECK(access(lock_path, F_OK) != 0);
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_RECLAIM, 0, err), 0);
	CHECK(lock_first_line_is(owner_a));

	/* The source may take back its own handover that nobody claimed
	 * (the destination died before it claimed) */
	CHECK_EQ_INT(ctr_layer_handover(&a, "migration 8", err), 0);
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_RECLAIM, 0, err), 0);
	CHECK(lock_first_line_is(owner_a));
	/* and the destination finds it gone */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), -EBUSY);
	CHECK(lock_first_line_is(owner_a));

	/* force (start, restore after a fence) takes over what another host
	 * holds */
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_FORCE, 0, err), 0);
	CHECK(lock_first_line_is(owner_b));
	CHECK_EQ_INT(ctr_layer_close(&b, err), 0);
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_TAKE_MAX, 0, err), -EINVAL);
}

/*
 * A migration there and back, then the host that runs the guest dies: the
 * restore on the other one (which handed the layer over on the way back)
 * must not wait for a handback. Each destination settles its lock at the
 * commit, so no "(handover from" line outlives its migration.
 */
static void commit_settles(void)
{
	struct agent_guest_spec sa, sb;
	struct ctr_layer a, b;
	char err[AGENT_ERR_LEN], owner_a[600], owner_b[600], buf[1024];

	layer_of(&a, &sa, run_a);
	layer_of(&b, &sb, run_b);
	snprintf(owner_a, sizeof(owner_a), "%.*s\n", (int)strcspn(a.owner, "\n"), a.owner);
	snprintf(owner_b, sizeof(owner_b), "%.*s\n", (int)strcspn(b.owner, "\n"), b.owner);

	/* A -> B: before the commit, A would wait for B's handback */
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_WAIT, 0, err), 0);
	CHECK_EQ_INT(ctr_layer_handover(&a, "migration 11", err), 0);
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 0, err), 0);
	CHECK(ctr_layer_handed_from_us(&a));
	CHECK(!ctr_layer_handed_from_us(&b));
	/* only the holder settles: A's settle leaves B's record alone */
	CHECK_EQ_INT(ctr_layer_settle(&a, err), 0);
	CHECK(lock_has("(handover from"));
	/* B commits: its record is its owner line, nothing else */
	CHECK_EQ_INT(ctr_layer_settle(&b, err), 0);
	lock_text(buf, sizeof(buf));
	CHECK(strcmp(buf, owner_b) == 0);
	CHECK(!ctr_layer_handed_from_us(&a));
	/* settling twice changes nothing */
	CHECK_EQ_INT(ctr_layer_settle(&b, err), 0);
	lock_text(buf, sizeof(buf));
	CHECK(strcmp(buf, owner_b) == 0);

	/* B -> A, committed */
	CHECK_EQ_INT(ctr_layer_handover(&b, "migration 12", err), 0);
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_CLAIM, 0, err), 0);
	CHECK(ctr_layer_handed_from_us(&b));
	CHECK_EQ_INT(ctr_layer_settle(&a, err), 0);
	lock_text(buf, sizeof(buf));
	CHECK(strcmp(buf, owner_a) == 0);

	/* A dies and is fenced: B's restore sees no handback to wait for
	 * and takes the lock over */
	CHECK(!ctr_layer_handed_from_us(&b));
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_FORCE, 0, err), 0);
	lock_text(buf, sizeof(buf));
	CHECK(strcmp(buf, owner_b) == 0);
	CHECK_EQ_INT(ctr_layer_close(&b, err), 0);
	CHECK(access(lock_path, F_OK) != 0);
}

/* A claim file left by a host that died holding it is broken once old;
 * a fresh one is waited for. */
static void stale_claim(void)
{
	struct agent_guest_spec sa, sb;
	struct ctr_layer a, b;
	char err[AGENT_ERR_LEN], claim[320];
	struct utimbuf old = { .actime = time(NULL) - 120, .modtime = time(NULL) - 120 };
	FILE *f;

	layer_of(&a, &sa, run_a);
	layer_of(&b, &sb, run_b);
	snprintf(claim, sizeof(claim), "%s.claim", lock_path);
	CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_WAIT, 0, err), 0);
	CHECK_EQ_INT(ctr_layer_handover(&a, "migration 9", err), 0);
	f = fopen(claim, "w");
	CHECK(f != NULL);
	if (f) {
		fclose(f);
	}
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 100, err), -EBUSY);
	CHECK(lock_first_line_is(CTR_LAYER_HANDOVER));
	CHECK_EQ_INT(utime(claim, &old), 0);
	CHECK_EQ_INT(ctr_layer_lock(&b, CTR_LAYER_CLAIM, 100, err), 0);
	CHECK(access(claim, F_OK) != 0);
	CHECK_EQ_INT(ctr_layer_close(&b, err), 0);
}

/* A child that waits for @go to close, then takes @l's lock as @how says:
 * exits 0 when it got it. */
static pid_t lock_racer(const int go[2], const struct ctr_layer *l, enum ctr_layer_take how)
{
	pid_t pid = fork();
	char c;

	if (pid == 0) {
		close(go[1]);
		if (read(go[0], &c, 1) < 0) {
			_exit(3);
		}
		_exit(ctr_layer_lock(l, how, 0, NULL) == 0 ? 0 : 1);
	}
	return pid;
}

/*
 * The destination claiming and the source taking back at the same time
 * (the source gave up waiting for the answer while the destination was
 * about to restore): in every round exactly one of them holds the lock.
 */
static void race(void)
{
	struct agent_guest_spec sa, sb;
	struct ctr_layer a, b;
	char err[AGENT_ERR_LEN], owner_a[600];
	int both = 0, none = 0;

	layer_of(&a, &sa, run_a);
	layer_of(&b, &sb, run_b);
	snprintf(owner_a, sizeof(owner_a), "%.*s", (int)strcspn(a.owner, "\n"), a.owner);
	for (int round = 0; round < 200; round++) {
		int go[2], st_a = -1, st_b = -1;
		pid_t pa, pb;

		unlink(lock_path);
		CHECK_EQ_INT(ctr_layer_lock(&a, CTR_LAYER_WAIT, 0, err), 0);
		CHECK_EQ_INT(ctr_layer_handover(&a, "migration 10", err), 0);
		if (pipe(go) < 0) {
			CHECK(false);
			return;
		}
		pa = lock_racer(go, &a, CTR_LAYER_RECLAIM);
		pb = lock_racer(go, &b, CTR_LAYER_CLAIM);
		close(go[0]);
		close(go[1]); /* both read EOF at once */
		waitpid(pa, &st_a, 0);
		waitpid(pb, &st_b, 0);
		st_a = WIFEXITED(st_a) ? WEXITSTATUS(st_a) : 2;
		st_b = WIFEXITED(st_b) ? WEXITSTATUS(st_b) : 2;
		if (st_a == 0 && st_b == 0) {
			both++;
		} else if (st_a != 0 && st_b != 0) {
			/* a loser may find the claim file held and give up
			 * (no wait); the winner must exist */
			none++;
		}
		if (st_a == 0) {
			CHECK(lock_first_line_is(owner_a));
		} else if (st_b == 0) {
			CHECK(lock_has("(handover from"));
		}
	}
	CHECK_EQ_INT(both, 0);
	CHECK_EQ_INT(none, 0);
	unlink(lock_path);
}

/* The two hosts' run directories and the shared data directory with an
 * image file nobody has mounted, below @tmp. */
static bool dirs_setup(void)
{
	FILE *f;

	snprintf(data_dir, sizeof(data_dir), "%s/data/c1", tmp);
	snprintf(run_a, sizeof(run_a), "%s/a/run/c1", tmp);
	snprintf(run_b, sizeof(run_b), "%s/b/run/c1", tmp);
	snprintf(lock_path, sizeof(lock_path), "%s/layer.lock", data_dir);
	snprintf(img_path, sizeof(img_path), "%s/" CTR_LAYER_IMAGE, data_dir);
	if (ha_mkdir_p(data_dir, 0755) < 0 || ha_mkdir_p(run_a, 0700) < 0 ||
	    ha_mkdir_p(run_b, 0700) < 0 || (f = fopen(img_path, "w")) == NULL) {
		return false;
	}
	fclose(f);
	return true;
}

int main(void)
{
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	CHECK(dirs_setup());

	handover_states();
	commit_settles();
	stale_claim();
	race();

	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd) != 0) {
			fprintf(stderr, "could not remove %s\n", tmp);
		}
	}
	return ha_test_done("test_container_layer_lock");
}
