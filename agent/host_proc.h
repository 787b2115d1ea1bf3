/*
 * host_proc.h - the agent's host layer for processes: small kernel files
 * (/proc, cgroupfs), a guest's console log kept between runs, and a
 * process's /proc/PID/stat, parsed in one place.
 * Both drivers use it; it knows nothing of guests or drivers.
 *
 * Running helper programs with a timeout is common/ha_spawn.h (fencing uses
 * it too).
 */
#ifndef HA_AGENT_HOST_PROC_H
#define HA_AGENT_HOST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads up to @len-1 bytes of a small file (cgroup, /proc) into @buf, NUL
 * terminated; returns the byte count or -errno. */
ssize_t host_read_small(const char *path, char *buf, size_t len);
/* Writes @s to an existing file (no O_CREAT, no truncation needed for
 * cgroup and /proc files); returns 0 or -errno. */
int host_write_str(const char *path, const char *s);

/* What a guest's console log may grow to before its next start moves it
 * aside (both drivers keep the log between runs). */
#define HOST_CONSOLE_KEEP (8 << 20)
/* Moves the log @path to @path.old when it is larger than @keep bytes
 * (a missing log is fine); returns 0 or -errno. */
int host_log_rotate(const char *path, off_t keep);

/* What the agent reads of /proc/PID/stat. */
struct host_proc_stat {
	char state;          /* R, S, D, Z, X, ... */
	uint64_t utime;      /* clock ticks */
	uint64_t stime;
	uint64_t threads;
	uint64_t starttime;  /* clock ticks since boot: with the pid, the identity */
};

/* Parses the text of /proc/PID/stat (comm may hold spaces and ')': the
 * fields follow the last ')'). Returns 0 or -EINVAL. */
int host_proc_stat_parse(const char *text, struct host_proc_stat *out);
/* Reads and parses /proc/@pid/stat; 0, -ENOENT (gone) or -errno/-EINVAL. */
int host_proc_stat_read(pid_t pid, struct host_proc_stat *out);
/*
 * Whether @pid is still the process that started at @starttime and is not
 * a zombie. (The domain driver also counts a zombie leader whose threads
 * still exit as alive; it reads host_proc_stat_read itself for that.)
 */
bool host_proc_alive(pid_t pid, uint64_t starttime);

#endif
