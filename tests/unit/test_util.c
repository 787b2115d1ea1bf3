/*
 * test_util.c - atomic file writes, bounded reads, mkdir -p, numbers.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static char dir[1024];

/* Entries in @d other than "." and "..". */
static int count_entries(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	int n = 0;

	if (dp == NULL) {
		return -1;
	}
	while ((e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			n++;
		}
	}
	closedir(dp);
	return n;
}

static int read_matches(const char *path, const void *want, size_t want_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ok;

	if (ha_file_read(path, 16u << 20, &buf, &len) < 0) {
		return 0;
	}
	ok = len == want_len && memcmp(buf, want, len) == 0 && buf[len] == 0;
	free(buf);
	return ok;
}

static void test_write_atomic(void)
{
	char sub[PATH_MAX], path[PATH_MAX + 16], bad[PATH_MAX + 32];
	static const uint8_t bin[] = { 0, 1, 2, 0xff, 0, '\n' };
	char *big;
	struct stat st;
	size_t big_len = 3 * 1024 * 1024 + 7;

	snprintf(sub, sizeof(sub), "%s/write", dir);
	CHECK_EQ_INT(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/state", sub);

	CHECK_EQ_INT(ha_file_write_atomic(path, "first", 5), 0);
	CHECK(read_matches(path, "first", 5));
	CHECK_EQ_INT(count_entries(sub), 1); /* no temporary left */
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

	/* Overwrites, also with something shorter, empty, or binary. */
	CHECK_EQ_INT(ha_file_write_atomic(path, "2nd", 3), 0);
	CHECK(read_matches(path, "2nd", 3));
	CHECK_EQ_INT(ha_file_write_atomic(path, "", 0), 0);
	CHECK(read_matches(path, "", 0));
	CHECK_EQ_INT(ha_file_write_atomic(path, bin, sizeof(bin)), 0);
	CHECK(read_matches(path, bin, sizeof(bin)));
	CHECK_EQ_INT(count_entries(sub), 1);

	/* Larger than one write() may take at once. */
	big = malloc(big_len);
	CHECK(big != NULL);
	if (big) {
		for (size_t i = 0; i < big_len; i++) {
			big[i] = (char)(i * 7 + i / 4096);
		}
		CHECK_EQ_INT(ha_file_write_atomic(path, big, big_len), 0);
		CHECK(read_matches(path, big, big_len));
		free(big);
	}

	/* Failure leaves the old file and no temporary behind: a missing
	 * directory, and a directory in the way of the rename. */
	CHECK_EQ_INT(ha_file_write_atomic(path, "kept", 4), 0);
	snprintf(bad, sizeof(bad), "%s/nodir/state", sub);
	CHECK_EQ_INT(ha_file_write_atomic(bad, "x", 1), -ENOENT);
	snprintf(bad, sizeof(bad), "%s/adir", sub);
	CHECK_EQ_INT(mkdir(bad, 0700), 0);
	CHECK_EQ_INT(ha_file_write_atomic(bad, "x", 1), -EISDIR);
	CHECK_EQ_INT(count_entries(sub), 2);
	CHECK(read_matches(path, "kept", 4));
	CHECK_EQ_INT(rmdir(bad), 0);
	CHECK_EQ_INT(unlink(path), 0);
	CHECK_EQ_INT(rmdir(sub), 0);
}

static void test_read(void)
{
	char path[PATH_MAX + 16];
	uint8_t *buf = (uint8_t *)"untouched";
	size_t len = 99;

	snprintf(path, sizeof(path), "%s/read", dir);
	CHECK_EQ_INT(ha_file_read(path, 100, &buf, &len), -ENOENT);
	CHECK_EQ_INT(ha_file_write_atomic(path, "0123456789", 10), 0);

	/* At the bound: fine; one byte below it: -EFBIG, nothing returned. */
	CHECK_EQ_INT(ha_file_read(path, 10, &buf, &len), 0);
	CHECK_EQ_INT(len, 10);
	CHECK(memcmp(buf, "0123456789", 11) == 0); /* NUL-terminated */
	free(buf);
	buf = (uint8_t *)"untouched";
	len = 99;
	CHECK_EQ_INT(ha_file_read(path, 9, &buf, &len), -EFBIG);
	CHECK_EQ_INT(ha_file_read(path, 0, &buf, &len), -EFBIG);
	CHECK(strcmp((char *)buf, "untouched") == 0 && len == 99);

	/* Empty file. */
	CHECK_EQ_INT(ha_file_write_atomic(path, "", 0), 0);
	CHECK_EQ_INT(ha_file_read(path, 0, &buf, &len), 0);
	CHECK_EQ_INT(len, 0);
	CHECK_EQ_INT(buf[0], 0);
	free(buf);
	CHECK_EQ_INT(unlink(path), 0);
}

static void test_mkdir_p(void)
{
	char path[PATH_MAX + 32], file[PATH_MAX + 32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	CHECK_EQ_INT(ha_mkdir_p(path, 0750), 0);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_EQ_INT(st.st_mode & 07777, 0750); /* umask 022, set in main() */
	/* Existing: fine; a trailing slash and doubled slashes: fine. */
	CHECK_EQ_INT(ha_mkdir_p(path, 0750), 0);
	snprintf(path, sizeof(path), "%s/a//b/d/", dir);
	CHECK_EQ_INT(ha_mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/a/b/d", dir);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));

	/* A file in the way, at the end or in the middle. */
	snprintf(file, sizeof(file), "%s/a/file", dir);
	CHECK_EQ_INT(ha_file_write_atomic(file, "x", 1), 0);
	CHECK_EQ_INT(ha_mkdir_p(file, 0700), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/a/file/sub", dir);
	CHECK_EQ_INT(ha_mkdir_p(path, 0700), -ENOTDIR);

	CHECK_EQ_INT(ha_mkdir_p("", 0700), -EINVAL);

	CHECK_EQ_INT(unlink(file), 0);
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	CHECK_EQ_INT(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/a/b/d", dir);
	CHECK_EQ_INT(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	CHECK_EQ_INT(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/a", dir);
	CHECK_EQ_INT(rmdir(path), 0);
}

static void test_parse_u64(void)
{
	uint64_t v = 42;

	CHECK_EQ_INT(ha_parse_u64("0", 0, 10, &v), 0);
	CHECK_EQ_INT(v, 0);
	CHECK_EQ_INT(ha_parse_u64("10", 0, 10, &v), 0);
	CHECK_EQ_INT(v, 10);
	CHECK_EQ_INT(ha_parse_u64("007", 0, 10, &v), 0);
	CHECK_EQ_INT(v, 7);
	CHECK_EQ_INT(ha_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	CHECK(v == UINT64_MAX);

	/* Outside the bounds, or outside u64: -ERANGE, *out untouched. */
	v = 42;
	CHECK_EQ_INT(ha_parse_u64("11", 0, 10, &v), -ERANGE);
	CHECK_EQ_INT(ha_parse_u64("4", 5, 10, &v), -ERANGE);
	CHECK_EQ_INT(ha_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	CHECK_EQ_INT(ha_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	CHECK_EQ_INT(v, 42);

	/* Not a plain decimal number: -EINVAL. */
	CHECK_EQ_INT(ha_parse_u64(NULL, 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("-1", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("-0", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("+1", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64(" 1", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("1 ", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("1k", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("0x1", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64("1.0", 0, 10, &v), -EINVAL);
	CHECK_EQ_INT(v, 42);
}

static void test_parse_u64_prefix(void)
{
	const char *rest = NULL;
	uint64_t v = 42;

	CHECK_EQ_INT(ha_parse_u64_prefix("128M", &v, &rest), 0);
	CHECK_EQ_INT(v, 128);
	CHECK(strcmp(rest, "M") == 0);
	CHECK_EQ_INT(ha_parse_u64_prefix("7", &v, &rest), 0);
	CHECK_EQ_INT(v, 7);
	CHECK(*rest == 0);
	v = 42;
	CHECK_EQ_INT(ha_parse_u64_prefix("18446744073709551616K", &v, &rest), -ERANGE);
	CHECK_EQ_INT(ha_parse_u64_prefix("K", &v, &rest), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64_prefix("-1", &v, &rest), -EINVAL);
	CHECK_EQ_INT(ha_parse_u64_prefix(NULL, &v, &rest), -EINVAL);
	CHECK_EQ_INT(v, 42);
}

static void test_enum_names(void)
{
	static const char *const names[4] = { [0] = "zero", [1] = "one", [3] = "three" };

	CHECK(strcmp(ha_enum_str(names, 4, 1), "one") == 0);
	CHECK(strcmp(ha_enum_str(names, 4, 3), "three") == 0);
	CHECK(strcmp(ha_enum_str(names, 4, 2), "unknown") == 0); /* no name */
	CHECK(strcmp(ha_enum_str(names, 4, 4), "unknown") == 0);
	CHECK(strcmp(ha_enum_str(names, 4, (unsigned)-1), "unknown") == 0);
	CHECK_EQ_INT(ha_enum_parse(names, 4, "three"), 3);
	CHECK_EQ_INT(ha_enum_parse(names, 4, "zero"), 0);
	CHECK_EQ_INT(ha_enum_parse(names, 4, "Three"), -EINVAL);
	CHECK_EQ_INT(ha_enum_parse(names, 4, ""), -EINVAL);
	CHECK_EQ_INT(ha_enum_parse(names, 4, NULL), -EINVAL);
}

static void test_print_wrapped(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CHECK(f != NULL);
	ha_print_wrapped(f, "# ", "one two three four", 9);
	ha_print_wrapped(f, "", "abcdefghijk xy", 5);
	fclose(f);
	CHECK(strcmp(buf, "# one two\n# three\n# four\nabcde\nfghij\nk xy\n") == 0);
	free(buf);
}

static void test_net(void)
{
	struct ha_net n;

	CHECK_EQ_INT(ha_net_parse("10.1.0.0/24", &n), 0);
	CHECK_EQ_INT(n.prefix, 24);
	CHECK(ha_net_contains(&n, "10.1.0.11"));
	CHECK(ha_net_contains(&n, "10.1.0.255"));
	CHECK(!ha_net_contains(&n, "10.1.1.11"));
	CHECK(!ha_net_contains(&n, "fd00::1"));
	CHECK(!ha_net_contains(&n, "not an address"));
	CHECK(!ha_net_contains(&n, NULL));
	/* host bits in the network are ignored, as Proxmox's CIDR does */
	CHECK_EQ_INT(ha_net_parse("10.1.0.7/24", &n), 0);
	CHECK(ha_net_contains(&n, "10.1.0.11"));
	/* a prefix that is not a multiple of 8 */
	CHECK_EQ_INT(ha_net_parse("10.1.0.64/26", &n), 0);
	CHECK(ha_net_contains(&n, "10.1.0.127"));
	CHECK(!ha_net_contains(&n, "10.1.0.128"));
	CHECK(!ha_net_contains(&n, "10.1.0.63"));
	/* one address: that address only */
	CHECK_EQ_INT(ha_net_parse("10.1.0.11", &n), 0);
	CHECK_EQ_INT(n.prefix, 32);
	CHECK(ha_net_contains(&n, "10.1.0.11"));
	CHECK(!ha_net_contains(&n, "10.1.0.12"));
	/* /0: everything of the family */
	CHECK_EQ_INT(ha_net_parse("0.0.0.0/0", &n), 0);
	CHECK(ha_net_contains(&n, "192.168.1.1"));
	/* IPv6 */
	CHECK_EQ_INT(ha_net_parse("fd00:1::/64", &n), 0);
	CHECK(ha_net_contains(&n, "fd00:1::11"));
	CHECK(!ha_net_contains(&n, "fd00:2::11"));
	CHECK(!ha_net_contains(&n, "10.1.0.11"));
	CHECK_EQ_INT(ha_net_parse("fd00:1::11", &n), 0);
	CHECK_EQ_INT(n.prefix, 128);
	/* refused */
	CHECK_EQ_INT(ha_net_parse("10.1.0.0/33", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("fd00::/129", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("10.1.0.0/", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("10.1.0.0/-1", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("10.1.0.0/24x", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("/24", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("eth1", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse("10.1.0", &n), -EINVAL);
	CHECK_EQ_INT(ha_net_parse(NULL, &n), -EINVAL);
}

static void test_clocks(void)
{
	uint64_t a = ha_mono_ms(), b = ha_mono_ms();

	CHECK(b >= a);
	CHECK(ha_wall_ms() > 1600000000000ull); /* after 2020 */
}

static void test_errf(void)
{
	char err[16];

	memset(err, 'x', sizeof(err));
	CHECK_EQ_INT(ha_errf(err, sizeof(err), -ENOENT, "no %s here", "file"), -ENOENT);
	CHECK(strcmp(err, "no file here") == 0);
	/* truncated, always terminated */
	CHECK_EQ_INT(ha_errf(err, sizeof(err), -EIO, "%s", "a message longer than 16"), -EIO);
	CHECK_EQ_INT(strlen(err), sizeof(err) - 1);
	/* no buffer: only the code */
	CHECK_EQ_INT(ha_errf(NULL, 64, -EINVAL, "ignored %d", 1), -EINVAL);
	err[0] = 'k';
	CHECK_EQ_INT(ha_errf(err, 0, 0, "ignored"), 0);
	CHECK(err[0] == 'k');
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	umask(022);
	snprintf(dir, sizeof(dir), "%s/test_util.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_write_atomic();
	test_read();
	test_mkdir_p();
	test_parse_u64();
	test_parse_u64_prefix();
	test_enum_names();
	test_print_wrapped();
	test_clocks();
	test_net();
	test_errf();
	CHECK_EQ_INT(count_entries(dir), 0);
	CHECK_EQ_INT(rmdir(dir), 0);
	return ha_test_done("test_util");
}
