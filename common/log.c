/*
 * log.c - libqb log targets, blackbox and crash dump.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

static char crash_path[PATH_MAX];

static void crash_handler(int sig)
{
	/* Best effort: the blackbox writer is what libqb offers for this. */
	if (crash_path[0]) {
		qb_log_blackbox_write_to_file(crash_path);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int ha_log_priority_parse(const char *s)
{
	static const struct {
		const char *name;
		int prio;
	} names[] = {
		{ "debug", LOG_DEBUG },	    { "info", LOG_INFO },
		{ "notice", LOG_NOTICE },   { "warning", LOG_WARNING },
		{ "error", LOG_ERR },	    { "crit", LOG_CRIT },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			return names[i].prio;
		}
	}
	return -1;
}

int ha_log_init(const struct ha_log_opts *o)
{
	const char *fmt = "%T %N[%P] %f:%l %p: %b"; /* %T: with milliseconds */

	qb_log_init(o->ident, LOG_DAEMON, o->priority);
	qb_log_format_set(QB_LOG_SYSLOG, "%f:%l %b");
	qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, o->to_stderr ? QB_FALSE : QB_TRUE);
	qb_log_filter_ctl(QB_LOG_SYSLOG, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE,
			  "*", o->priority);

	if (o->to_stderr) {
		qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
		qb_log_format_set(QB_LOG_STDERR, fmt);
		qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD,
				  QB_LOG_FILTER_FILE, "*", o->priority);
	}
	if (o->file && o->file[0]) {
		int t = qb_log_file_open(o->file);

		if (t < 0) {
			return t;
		}
		qb_log_format_set(t, fmt);
		qb_log_filter_ctl(t, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
				  o->priority);
		qb_log_ctl(t, QB_LOG_CONF_ENABLED, QB_TRUE);
	}

	/* Blackbox: everything down to debug, in memory, always. */
	qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_SIZE, 1024 * 1024);
	qb_log_filter_ctl(QB_LOG_BLACKBOX, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE,
			  "*", LOG_DEBUG);
	qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_ENABLED, QB_TRUE);

	if (o->crash_dir && o->crash_dir[0]) {
		snprintf(crash_path, sizeof(crash_path), "%s/blackbox-%s-%d",
			 o->crash_dir, o->ident, (int)getpid());
		signal(SIGSEGV, crash_handler);
		signal(SIGBUS, crash_handler);
		signal(SIGFPE, crash_handler);
		signal(SIGILL, crash_handler);
	}
	return 0;
}

void ha_log_fini(void)
{
	qb_log_fini();
}
