/*
 * host_proc.c - small kernel files, a guest's console log rotation and
 * /proc/PID/stat (host_proc.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_proc.h"

ssize_t host_read_small(const char *path, char *buf, size_t len)
{
	size_t got = 0;
	int fd;

	if (len == 0) {
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		return -errno;
	}
	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			int e = -errno;

			close(fd);
			return e;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

int host_write_str(const char *path, const char *s)
{
	size_t len = strlen(s);
	ssize_t n;
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		return -errno;
	}
	do {
		n = write(fd, s, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	if (close(fd) < 0) {
		return -errno;
	}
	return (size_t)n == len ? 0 : -EIO;
}

int host_log_rotate(const char *path, off_t keep)
{
	char old[PATH_MAX];
	struct stat st;

	if (stat(path, &st) < 0) {
		return errno == ENOENT ? 0 : -errno;
	}
	if (st.st_size <= keep) {
		return 0;
	}
	if (snprintf(old, sizeof(old), "%s.old", path) >= (int)sizeof(old)) {
		return -ENAMETOOLONG;
	}
	return rename(path, old) < 0 ? -errno : 0;
}

int host_proc_stat_parse(const char *text, struct host_proc_stat *out)
{
	const char *p = strrchr(text, ')');
	struct host_proc_stat ps;

	if (p == NULL || p[1] != ' ') {
		return -EINVAL;
	}
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime cutime cstime priority nice threads itreal
	 * starttime */
	if (sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %" SCNu64 " %" SCNu64
		   " %*d %*d %*d %*d %" SCNu64 " %*d %" SCNu64, &ps.state, &ps.utime,
		   &ps.stime, &ps.threads, &ps.starttime) != 5) {
		return -EINVAL;
	}
	*out = ps;
	return 0;
}

int host_proc_stat_read(pid_t pid, struct host_proc_stat *out)
{
	char path[64], buf[1024];
	ssize_t n;

	if (pid <= 0) {
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = host_read_small(path, buf, sizeof(buf));
	if (n < 0) {
		return (int)n;
	}
	return host_proc_stat_parse(buf, out);
}

bool host_proc_alive(pid_t pid, uint64_t starttime)
{
	struct host_proc_stat ps;

	if (pid <= 0 || host_proc_stat_read(pid, &ps) < 0) {
		return false;
	}
	return ps.starttime == starttime && ps.state != 'Z' && ps.state != 'X';
}
