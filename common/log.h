/*
 * log.h - logging through libqb for the daemons.
 *
 * Every file logs with qb_log(); the format carries the source file name,
 * which is unique across the project and so serves as the subsystem tag
 * for filters. The blackbox is always on and is written to the state
 * directory when a daemon crashes (read it with qb-blackbox).
 */
#ifndef HA_LOG_H
#define HA_LOG_H

#include <stdbool.h>
#include <qb/qblog.h>

struct ha_log_opts {
	const char *ident;      /* "ha-coordinator" */
	bool to_stderr;         /* foreground */
	const char *file;       /* may be NULL or "" */
	int priority;           /* LOG_INFO, LOG_DEBUG ... */
	const char *crash_dir;  /* where the blackbox goes on a crash */
};

/* Sets up targets and the crash handler. Returns 0 or -errno. */
int ha_log_init(const struct ha_log_opts *opts);
/* Parses "debug", "info", "notice", "warning", "error"; -1 when unknown. */
int ha_log_priority_parse(const char *s);
void ha_log_fini(void);

#endif
