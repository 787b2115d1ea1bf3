/*
 * guestdef.h - guest definition files (INI), docs/guests.md.
 *
 * The text of a definition is what the cluster stores; every node parses
 * it the same way. One table of options drives parsing, checking and the
 * reference in docs/guests.md.
 */
#ifndef HA_GUESTDEF_H
#define HA_GUESTDEF_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HA_GUEST_NAME_MAX 63
/* A guest's memory ([guest] memory): the drivers check the same bounds. */
#define HA_GUEST_MEM_MIN_KIB (16ull * 1024)              /* 16 MiB */
#define HA_GUEST_MEM_MAX_KIB (64ull * 1024 * 1024)       /* 64 GiB */
#define HA_GUESTDEF_MAX_TEXT (64 * 1024)

enum ha_restart_policy {
	HA_RESTART_SNAPSHOT = 0, /* newest good snapshot, else cold */
	HA_RESTART_COLD,         /* boot afresh */
	HA_RESTART_NONE,         /* leave it stopped */
	HA_RESTART_MAX
};

const char *ha_restart_policy_str(enum ha_restart_policy p);

struct ha_guest_def {
	char name[HA_GUEST_NAME_MAX + 1];
	char type[16];             /* container | domain */
	uint64_t mem_kib;
	uint32_t cpus;
	uint32_t cpu_weight;
	uint32_t cpu_limit_pct;
	uint32_t pids_max;
	char command[1024];
	char template_dir[PATH_MAX]; /* container rootfs; relative = under shared_dir */
	char kernel[PATH_MAX];
	char initrd[PATH_MAX];
	char disk[PATH_MAX];
	char ip[48];               /* CIDR */
	char gateway[48];
	uint32_t priority;
	enum ha_restart_policy restart;
	uint32_t snapshot_interval_s; /* 0 = no periodic snapshots */
	uint32_t snapshot_keep;
	/* how old a snapshot a failover may restore (docs/failover.md, "How
	 * far back a failover goes"): HA_FAILOVER_AGE_AUTO, _UNLIMITED or
	 * seconds; ha_guestdef_failover_max_age_ms() gives the limit */
	uint32_t failover_max_age_s;
	char group[HA_GUEST_NAME_MAX + 1];
	uint32_t stop_timeout_s;
	uint32_t max_restart;      /* restart policy (common/restart.h) */
	uint32_t max_relocate;
	uint64_t disk_kib;         /* container: writable layer (image) size */
	/* health check ([ha] check): "" = none, else "tcp:PORT" or
	 * "exec:CMD" as written (ha_guestdef_check() splits it) */
	char check[512];
	uint32_t check_interval_s;
	uint32_t check_timeout_s;
	uint32_t check_failures;   /* failed checks in a row that count as a crash */
};

enum ha_check_kind {
	HA_CHECK_NONE = 0,
	HA_CHECK_TCP,              /* connect to the guest's address, PORT */
	HA_CHECK_EXEC,             /* sh -c CMD on the host; $1 name, $2 address */
	HA_CHECK_KIND_MAX
};

/* The kind of @d's health check, with its port (tcp) or command (exec,
 * pointing into @d). */
enum ha_check_kind ha_guestdef_check(const struct ha_guest_def *d, uint32_t *port,
				     const char **cmd);

#define HA_FAILOVER_AGE_AUTO 0u             /* 3 x snapshot_interval */
#define HA_FAILOVER_AGE_UNLIMITED UINT32_MAX /* any age */
#define HA_FAILOVER_AGE_MAX_S (30u * 86400)   /* the largest number of seconds */
#define HA_FAILOVER_AGE_AUTO_FACTOR 3u

/*
 * The oldest snapshot a failover may restore, in ms: auto is
 * 3 x snapshot_interval (0 without periodic snapshots: no snapshot may be
 * used), unlimited is UINT64_MAX (HA_SNAP_AGE_UNLIMITED).
 */
uint64_t ha_guestdef_failover_max_age_ms(const struct ha_guest_def *d);

/* "auto (270 s)", "unlimited", "90 s" */
void ha_guestdef_failover_max_age_str(const struct ha_guest_def *d, char *buf, size_t len);

/*
 * Parses and checks a definition. @fname names the source in errors.
 * Returns 0, or -EINVAL with "FNAME:LINE: what" in @err (LINE 0 for
 * whole-file problems such as a missing required option).
 */
int ha_guestdef_parse(const char *text, size_t len, const char *fname,
		      struct ha_guest_def *out, char *err, size_t errlen);

/* Is @s a valid guest or node name? */
int ha_name_valid(const char *s);

/* Parses a size: a number with K, M, G (or KiB, MiB, GiB) suffix; a bare
 * number is MiB. Returns 0 or -EINVAL/-ERANGE. */
int ha_parse_size_kib(const char *s, uint64_t *kib);

/* Prints the option table as markdown. */
void ha_guestdef_print_reference(FILE *out);

#endif
