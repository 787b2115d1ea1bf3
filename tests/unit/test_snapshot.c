/*
 * test_snapshot.c - snapshot generations: write, verify, detect a flipped
 * byte, a torn MANIFEST and a missing file, prune, temporaries.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "snapshot.h"
#include "util.h"

static char root[] = "/tmp/ha-test-snap-XXXXXX";

static uint64_t write_gen_kind(const char *payload, enum ha_snap_kind kind)
{
	char tmp[4096], path[4200], err[512];
	uint64_t gen = 0;

	CHECK_EQ_INT(ha_snap_begin(root, "g1", &gen, tmp, sizeof(tmp)), 0);
	snprintf(path, sizeof(path), "%s/state", tmp);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/state/pages.img", tmp);
	CHECK_EQ_INT(ha_file_write_atomic(path, payload, strlen(payload)), 0);
	snprintf(path, sizeof(path), "%s/state/link", tmp);
	CHECK_EQ_INT(symlink("pages.img", path), 0);
	CHECK_EQ_INT(ha_snap_commit(root, "g1", gen, tmp, "[guest]\n", 8, 1000 + gen, kind, err,
				    sizeof(err)), 0);
	return gen;
}

static uint64_t write_gen(const char *payload)
{
	return write_gen_kind(payload, HA_SNAP_KIND_PERIODIC);
}

static void flip(uint64_t gen, const char *rel, long off)
{
	char dir[4096], path[4300];
	int fd;
	unsigned char c;

	ha_snap_gen_dir(root, "g1", gen, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	if (off < 0) {
		off += lseek(fd, 0, SEEK_END);
	}
	CHECK(pread(fd, &c, 1, off) == 1);
	c ^= 0x01;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

int main(void)
{
	uint64_t gens[16], t = 0;
	char err[1024], dir[4096], path[4300], *def;
	size_t len;
	uint64_t g1, g2, g3;

	CHECK(mkdtemp(root) != NULL);
	CHECK_EQ_INT(ha_snap_list(root, "g1", gens, 16), 0);
	g1 = write_gen("one");
	g2 = write_gen("two");
	g3 = write_gen("three");
	CHECK_EQ_INT(g1, 1);
	CHECK_EQ_INT(g3, 3);
	CHECK_EQ_INT(ha_snap_list(root, "g1", gens, 16), 3);
	CHECK_EQ_INT(gens[0], 3);
	CHECK_EQ_INT(ha_snap_verify(root, "g1", g2, &t, err, sizeof(err)), 0);
	CHECK_EQ_INT(t, 1002);
	CHECK_EQ_INT(ha_snap_read_definition(root, "g1", g2, &def, &len), 0);
	CHECK(len == 8 && memcmp(def, "[guest]\n", 8) == 0);
	free(def);

	/* the MANIFEST's header: time and kind, the files unread */
	{
		struct ha_snap_info info;
		uint64_t gm, gf, gl;

		CHECK_EQ_INT(ha_snap_info(root, "g1", g2, &info, err, sizeof(err)), 0);
		CHECK_EQ_INT(info.time_ms, 1002);
		CHECK_EQ_INT(info.kind, HA_SNAP_KIND_PERIODIC);
		gm = write_gen_kind("manual", HA_SNAP_KIND_MANUAL);
		gf = write_gen_kind("marked", HA_SNAP_KIND_FAILOVER);
		gl = write_gen_kind("old", HA_SNAP_KIND_LEGACY);
		CHECK_EQ_INT(ha_snap_info(root, "g1", gm, &info, err, sizeof(err)), 0);
		CHECK_EQ_INT(info.kind, HA_SNAP_KIND_MANUAL);
		CHECK(!ha_snap_kind_failover(info.kind));
		CHECK_EQ_INT(ha_snap_info(root, "g1", gf, &info, err, sizeof(err)), 0);
		CHECK_EQ_INT(info.kind, HA_SNAP_KIND_FAILOVER);
		CHECK(ha_snap_kind_failover(info.kind));
		/* written as before kinds: no kind line at all */
		CHECK_EQ_INT(ha_snap_info(root, "g1", gl, &info, err, sizeof(err)), 0);
		CHECK_EQ_INT(info.kind, HA_SNAP_KIND_LEGACY);
		CHECK(ha_snap_kind_failover(info.kind));
		CHECK_EQ_INT(ha_snap_verify(root, "g1", gl, &t, err, sizeof(err)), 0);
		ha_snap_gen_dir(root, "g1", gl, dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/MANIFEST", dir);
		CHECK(ha_file_read(path, 65536, (uint8_t **)&def, &len) == 0);
		CHECK(strstr(def, "\nkind ") == NULL);
		free(def);
		/* a torn MANIFEST: no info */
		flip(gf, "MANIFEST", -10);
		CHECK_EQ_INT(ha_snap_info(root, "g1", gf, &info, err, sizeof(err)), -EBADMSG);
		CHECK_EQ_INT(ha_snap_info(root, "g1", 99, &info, err, sizeof(err)), -ENOENT);
		for (uint64_t g = gm; g <= gl; g++) {
			ha_snap_gen_dir(root, "g1", g, dir, sizeof(dir));
			CHECK_EQ_INT(ha_rm_rf(dir), 0);
		}
	}

	/* one flipped byte in a memory file */
	flip(g3, "state/pages.img", 1);
	CHECK_EQ_INT(ha_snap_verify(root, "g1", g3, &t, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "generation 3 is corrupt: state/pages.img: checksum mismatch") != NULL);
	/* a torn MANIFEST */
	flip(g2, "MANIFEST", -10);
	CHECK_EQ_INT(ha_snap_verify(root, "g1", g2, &t, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "MANIFEST") != NULL);
	ha_snap_gen_dir(root, "g1", g2, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	CHECK_EQ_INT(truncate(path, 30), 0);
	CHECK_EQ_INT(ha_snap_verify(root, "g1", g2, &t, err, sizeof(err)), -EBADMSG);
	/* a missing file */
	ha_snap_gen_dir(root, "g1", g1, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/state/pages.img", dir);
	unlink(path);
	CHECK_EQ_INT(ha_snap_verify(root, "g1", g1, &t, err, sizeof(err)), -EBADMSG);
	CHECK(strstr(err, "state/pages.img") != NULL);
	/* a generation that does not exist */
	CHECK_EQ_INT(ha_snap_verify(root, "g1", 99, &t, err, sizeof(err)), -ENOENT);

	/* temporaries are not generations; prune keeps the newest */
	{
		char tmp[4096];
		uint64_t g;

		CHECK_EQ_INT(ha_snap_begin(root, "g1", &g, tmp, sizeof(tmp)), 0);
		CHECK_EQ_INT(g, 4);
		CHECK_EQ_INT(ha_snap_list(root, "g1", gens, 16), 3);
		ha_snap_abort(tmp);
	}
	write_gen("four");
	CHECK_EQ_INT(ha_snap_prune(root, "g1", 2), 2);
	CHECK_EQ_INT(ha_snap_list(root, "g1", gens, 16), 2);
	CHECK_EQ_INT(gens[1], 3);
	CHECK_EQ_INT(ha_rm_rf(root), 0);
	return ha_test_done("test_snapshot");
}
