/*
 * config.h - hactl.conf: one table of options drives the parser, --check,
 * reload and the reference in docs/configuration.md.
 */
#ifndef HA_CONFIG_H
#define HA_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HA_CONFIG_DEFAULT_PATH "/etc/hactl/hactl.conf"

struct ha_config {
	char state_dir[PATH_MAX];
	char shared_dir[PATH_MAX];
	char ipc_group[64];
	char coord_log_file[PATH_MAX];
	char coord_log_level[16];
	uint32_t request_timeout_ms;
	char fence_config[PATH_MAX];
	char policy_path[PATH_MAX];
	/* the HTTP endpoint (docs/monitoring.md) */
	char metrics_listen[64];
	char metrics_token[128];
	uint32_t self_fence_timeout_ms;
	char watchdog_device[PATH_MAX];
	bool watchdog_required;
	char agent_log_file[PATH_MAX];
	char agent_log_level[16];
	uint32_t usage_interval_ms;
	char criu_path[PATH_MAX];
	char qemu_path[PATH_MAX];
	char guest_bridge[16];
	char domain_accel[8];
	/* live migration streams (docs/migration-transport.md) */
	char mig_key_file[PATH_MAX];
	bool mig_encrypt;
	char mig_transport[8];
	char mig_listen_address[64];
	char mig_network[64];
};

enum ha_opt_type {
	HA_OPT_STR = 0,
	HA_OPT_UINT,
	HA_OPT_LOGLEVEL,
	HA_OPT_BOOL,    /* true/false, yes/no, on/off, 1/0; a bool */
	HA_OPT_CHOICE,  /* one of the words in `choices` ("a|b"); a string */
	HA_OPT_NET,     /* empty, ADDRESS or ADDRESS/PREFIX (IPv4, IPv6); a string */
	HA_OPT_LISTEN,  /* empty, ADDRESS:PORT or [ADDRESS]:PORT, port 1..65535; a string */
	HA_OPT_TYPE_MAX
};

struct ha_opt {
	const char *section;
	const char *name;
	enum ha_opt_type type;
	uint64_t min, max;    /* HA_OPT_UINT bounds; HA_OPT_STR max length */
	const char *def;
	bool reloadable;
	size_t offset;
	size_t size;
	const char *help;
	const char *choices;  /* HA_OPT_CHOICE: "a|b|c" */
};

/* The option table, terminated by an entry with name == NULL. */
const struct ha_opt *ha_config_options(void);

/* Fills @cfg with the defaults. */
void ha_config_defaults(struct ha_config *cfg);

/*
 * Loads @path over the defaults. A missing file is not an error when
 * @missing_ok. On error returns -errno or -EINVAL and writes
 * "FILE:LINE: what" into @err.
 */
int ha_config_load(const char *path, bool missing_ok, struct ha_config *cfg,
		   char *err, size_t errlen);

/* Prints the option table as the markdown reference of
 * docs/configuration.md. */
void ha_config_print_reference(FILE *out);

/* Prints a complete, commented hactl.conf with every option at its
 * default (deploy/examples/hactl.conf is this output). */
void ha_config_print_example(FILE *out);

/* Prints the effective configuration as INI. */
void ha_config_print(const struct ha_config *cfg, FILE *out);

#endif
