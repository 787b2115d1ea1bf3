/*
 * config.c - table-driven hactl.conf parser on libinih.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define OPT_STR(sec, nm, field, def, rel, help)                                \
	{ sec, nm, HA_OPT_STR, 0, sizeof(((struct ha_config *)0)->field) - 1,  \
	  def, rel, offsetof(struct ha_config, field),                         \
	  sizeof(((struct ha_config *)0)->field), help, NULL }
#define OPT_UINT(sec, nm, field, lo, hi, def, rel, help)                       \
	{ sec, nm, HA_OPT_UINT, lo, hi, def, rel,                              \
	  offsetof(struct ha_config, field),                                   \
	  sizeof(((struct ha_config *)0)->field), help, NULL }
#define OPT_LEVEL(sec, nm, field, def, rel, help)                              \
	{ sec, nm, HA_OPT_LOGLEVEL, 0, 0, def, rel,                            \
	  offsetof(struct ha_config, field),                                   \
	  sizeof(((struct ha_config *)0)->field), help, NULL }
#define OPT_BOOL(sec, nm, field, def, rel, help)                               \
	{ sec, nm, HA_OPT_BOOL, 0, 1, def, rel,                                \
	  offsetof(struct ha_config, field),                                   \
	  sizeof(((struct ha_config *)0)->field), help, NULL }
#define OPT_CHOICE(sec, nm, field, choices, def, rel, help)                    \
	{ sec, nm, HA_OPT_CHOICE, 0, sizeof(((struct ha_config *)0)->field) - 1, \
	  def, rel, offsetof(struct ha_config, field),                         \
	  sizeof(((struct ha_config *)0)->field), help, choices }

#define OPT_NET(sec, nm, field, def, rel, help)                                \
	{ sec, nm, HA_OPT_NET, 0, sizeof(((struct ha_config *)0)->field) - 1,  \
	  def, rel, offsetof(struct ha_config, field),                         \
	  sizeof(((struct ha_config *)0)->field), help, NULL }

#define OPT_LISTEN(sec, nm, field, def, rel, help)                             \
	{ sec, nm, HA_OPT_LISTEN, 0, sizeof(((struct ha_config *)0)->field) - 1, \
	  def, rel, offsetof(struct ha_config, field),                         \
	  sizeof(((struct ha_config *)0)->field), help, NULL }

static const struct ha_opt options[] = {
	OPT_STR("cluster", "state_dir", state_dir, "/var/lib/hactl", false,
		"local state: replicated state file, blackbox dumps"),
	OPT_STR("cluster", "shared_dir", shared_dir, "/srv/hactl", false,
		"shared storage seen by every host (snapshots, disks)"),
	OPT_STR("cluster", "ipc_group", ipc_group, "hactl", false,
		"group besides root allowed to use hactl"),
	OPT_UINT("cluster", "self_fence_timeout_ms", self_fence_timeout_ms, 1000, 600000,
		 "5000", false,
		 "a host without quorum has stopped its guests within this time; "
		 "others wait it out before restarting them"),
	OPT_STR("coordinator", "log_file", coord_log_file, "", false,
		"log file of ha-coordinator; empty: syslog"),
	OPT_LEVEL("coordinator", "log_level", coord_log_level, "info", true,
		  "debug, info, notice, warning or error"),
	OPT_UINT("coordinator", "request_timeout_ms", request_timeout_ms, 100,
		 600000, "10000", true,
		 "how long a client request may wait for the leader"),
	OPT_STR("coordinator", "fence_config", fence_config, "/etc/hactl/fence.conf", false,
		"fence devices and levels per node (docs/failover.md)"),
	OPT_STR("coordinator", "policy", policy_path, "/etc/hactl/policy.d", true,
		"balancing policy: a directory of *.conf files or one file "
		"(docs/balancing.md); missing: the defaults, balancing off"),
	OPT_LISTEN("coordinator", "metrics_listen", metrics_listen, "", false,
		   "where the HTTP endpoint listens: Prometheus metrics at /metrics, a "
		   "read-only status page at / (docs/monitoring.md); e.g. 127.0.0.1:9477, "
		   "[::1]:9477, or this host's cluster address to be scraped from elsewhere; "
		   "127.0.0.1 keeps it on this host. Empty: off"),
	OPT_STR("coordinator", "metrics_token", metrics_token, "", false,
		"when set, every request to the HTTP endpoint needs it: header "
		"Authorization: Bearer TOKEN, or ?token=TOKEN (else 401); keep the file "
		"unreadable for others then. Empty: no token"),
	OPT_STR("agent", "log_file", agent_log_file, "", false,
		"log file of ha-agent; empty: syslog"),
	OPT_LEVEL("agent", "log_level", agent_log_level, "info", true,
		  "debug, info, notice, warning or error"),
	OPT_UINT("agent", "usage_interval_ms", usage_interval_ms, 200, 600000,
		 "2000", true, "period of usage reports"),
	OPT_STR("agent", "criu_path", criu_path, "/opt/hactl/criu/bin/criu", false,
		"CRIU binary (>= 4.2)"),
	OPT_STR("agent", "qemu_path", qemu_path, "qemu-system-x86_64", false,
		"QEMU binary (>= 7.2)"),
	OPT_STR("agent", "guest_bridge", guest_bridge, "hbr0", false,
		"bridge on this host that carries the guest network"),
	OPT_CHOICE("agent", "domain_accel", domain_accel, "tcg|kvm|auto", "tcg", false,
		   "accelerator of the domains started here: tcg always; auto = KVM when a "
		   "boot probe of the domain's kernel passes, else TCG; kvm = KVM or the start "
		   "fails. $HACTL_DOMAIN_ACCEL, when set, overrides it (docs/domains.md)"),
	OPT_STR("agent", "watchdog_device", watchdog_device, "", false,
		"watchdog fed while this host may run guests (/dev/watchdog); empty: none"),
	OPT_BOOL("agent", "watchdog_required", watchdog_required, "true", false,
		 "with fence method watchdog, start guests that the cluster would restart "
		 "elsewhere only while a watchdog is armed here; false only for test "
		 "clusters without a watchdog device"),
	/* the default is MIG_KEY_DEFAULT_PATH of migration/migration.h */
	OPT_STR("migration", "key_file", mig_key_file, "/etc/hactl/cluster.key", false,
		"cluster key of the migration streams: 16..4096 bytes, mode 0600, the same "
		"file on every host (docs/migration-transport.md)"),
	OPT_BOOL("migration", "encrypt", mig_encrypt, "true", false,
		 "TLS with the cluster key on migration streams; false sends guest memory in "
		 "the clear (trusted networks only; the key, when present, still authenticates)"),
	OPT_CHOICE("migration", "transport", mig_transport, "tcp|rdma", "tcp", false,
		   "transport of migration streams unless hactl migrate --transport says; "
		   "rdma needs encrypt = false"),
	OPT_STR("migration", "listen_address", mig_listen_address, "", false,
		"address a destination's migration listener binds: empty = this host's migration "
		"address (see network), else its cluster (corosync ring0) address, which is where "
		"sources connect; * = every address"),
	OPT_NET("migration", "network", mig_network, "", false,
		"network of the migration streams, e.g. 10.1.0.0/24 (Proxmox's migration "
		"network): each host uses its own address in it, announced to the cluster, "
		"for the streams to and from it, so the file stays the same on every host; "
		"one address (no /PREFIX) names this host's. Empty, or no address of the host "
		"in it (a warning): the cluster (corosync ring0) address"),
	{ 0 },
};

const struct ha_opt *ha_config_options(void)
{
	return options;
}

static int opt_set(struct ha_config *cfg, const struct ha_opt *o,
		   const char *value, char *why, size_t whylen)
{
	char *dst = (char *)cfg + o->offset;
	uint64_t v;

	switch (o->type) {
	case HA_OPT_STR:
		if (strlen(value) > o->max) {
			snprintf(why, whylen, "%s.%s: longer than %llu characters",
				 o->section, o->name, (unsigned long long)o->max);
			return -EINVAL;
		}
		/* A continuation line keeps " ;..." that an ordinary line
		 * drops as a comment: such a value could not be written back. */
		for (const char *c = value; *c; c++) {
			/* inih's rule for an inline comment: after any isspace() */
			if ((*c == ';' || *c == '#') && c > value && isspace((unsigned char)c[-1])) {
				snprintf(why, whylen, "%s.%s: '%c' after a blank starts a comment; "
					 "not allowed inside a value", o->section, o->name, *c);
				return -EINVAL;
			}
		}
		snprintf(dst, o->size, "%s", value);
		return 0;
	case HA_OPT_UINT:
		if (ha_parse_u64(value, o->min, o->max, &v) < 0) {
			snprintf(why, whylen,
				 "%s.%s: '%s' is not a number in %llu..%llu",
				 o->section, o->name, value,
				 (unsigned long long)o->min,
				 (unsigned long long)o->max);
			return -EINVAL;
		}
		*(uint32_t *)dst = (uint32_t)v;
		return 0;
	case HA_OPT_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
		    strcmp(value, "on") == 0 || strcmp(value, "1") == 0) {
			*(bool *)dst = true;
		} else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
			   strcmp(value, "off") == 0 || strcmp(value, "0") == 0) {
			*(bool *)dst = false;
		} else {
			snprintf(why, whylen,
				 "%s.%s: '%s' is not true or false", o->section,
				 o->name, value);
			return -EINVAL;
		}
		return 0;
	case HA_OPT_CHOICE: {
		const char *c = o->choices;
		size_t n = strlen(value);

		while (c != NULL && *c) {
			size_t k = strcspn(c, "|");

			if (k == n && n > 0 && n <= o->max && strncmp(c, value, n) == 0) {
				snprintf(dst, o->size, "%s", value);
				return 0;
			}
			c += k + (c[k] == '|');
		}
		snprintf(why, whylen, "%s.%s: '%s' is not one of %s", o->section,
			 o->name, value, o->choices ? o->choices : "(none)");
		return -EINVAL;
	}
	case HA_OPT_NET: {
		struct ha_net net;

		if (value[0] && (strlen(value) > o->max || ha_net_parse(value, &net) < 0)) {
			snprintf(why, whylen, "%s.%s: '%s' is not an address or ADDRESS/PREFIX "
				 "(e.g. 10.1.0.0/24, fd00:1::/64)", o->section, o->name, value);
			return -EINVAL;
		}
		snprintf(dst, o->size, "%s", value);
		return 0;
	}
	case HA_OPT_LISTEN: {
		struct ha_listen l;

		if (value[0] && (strlen(value) > o->max || ha_listen_parse(value, &l) < 0 ||
				 l.port == 0)) {
			snprintf(why, whylen, "%s.%s: '%s' is not ADDRESS:PORT with a numeric "
				 "address and a port 1..65535 (e.g. 127.0.0.1:9477, [::1]:9477)",
				 o->section, o->name, value);
			return -EINVAL;
		}
		snprintf(dst, o->size, "%s", value);
		return 0;
	}
	case HA_OPT_LOGLEVEL:
		if (ha_log_priority_parse(value) < 0) {
			snprintf(why, whylen,
				 "%s.%s: '%s' is not one of debug, info, notice, warning, error",
				 o->section, o->name, value);
			return -EINVAL;
		}
		snprintf(dst, o->size, "%s", value);
		return 0;
	default:
		snprintf(why, whylen, "internal: bad option type");
		return -EINVAL;
	}
}

void ha_config_defaults(struct ha_config *cfg)
{
	char why[256];

	memset(cfg, 0, sizeof(*cfg));
	for (const struct ha_opt *o = options; o->name; o++) {
		opt_set(cfg, o, o->def, why, sizeof(why));
	}
}

/*
 * libinih reads lines into a fixed buffer and would parse the rest of a
 * longer line as a line of its own (silently cutting a value, or blaming
 * the wrong line); its handler is not told the line number either. So we
 * read the lines ourselves: count them, and stop at one that does not fit.
 */
struct line_reader {
	FILE *f;
	int line;      /* lines handed to libinih so far */
	int too_long;  /* line number of an over-long line, 0 if none */
	int max;       /* characters that fit, for the message */
	int err;       /* errno of a read error (a directory: EISDIR) */
};

static char *read_line(char *str, int num, void *stream)
{
	struct line_reader *r = stream;
	int c, n = 0;

	while ((c = getc(r->f)) != EOF && c != '\n') {
		if (n >= num - 1) {
			r->too_long = r->line + 1;
			r->max = num - 1;
			return NULL;
		}
		str[n++] = (char)c;
	}
	if (c == EOF && ferror(r->f)) {
		r->err = errno ? errno : EIO;
		return NULL;
	}
	if (c == EOF && n == 0) {
		return NULL;
	}
	str[n] = 0;
	r->line++;
	return str;
}

struct parse_ctx {
	struct ha_config *cfg;
	const struct line_reader *reader;
	char why[512];
	int failed; /* line of the first rejected option, 0 if none */
};

static int ini_cb(void *user, const char *section, const char *name,
		  const char *value)
{
	struct parse_ctx *ctx = user;
	char why[sizeof(ctx->why)];

	for (const struct ha_opt *o = options; o->name; o++) {
		if (strcmp(o->section, section) == 0 &&
		    strcmp(o->name, name) == 0) {
			if (opt_set(ctx->cfg, o, value, why, sizeof(why)) < 0) {
				goto fail;
			}
			return 1;
		}
	}
	if (section[0] == 0) {
		snprintf(why, sizeof(why), "option '%s' before any [section]",
			 name);
		goto fail;
	}
	for (const struct ha_opt *o = options; o->name; o++) {
		if (strcmp(o->section, section) == 0) {
			snprintf(why, sizeof(why),
				 "unknown option '%s' in section [%s]", name,
				 section);
			goto fail;
		}
	}
	snprintf(why, sizeof(why), "unknown section [%s]", section);
fail:
	if (!ctx->failed) {
		ctx->failed = ctx->reader->line;
		memcpy(ctx->why, why, sizeof(why));
	}
	return 0; /* ini_parse_stream returns the first failing line */
}

int ha_config_load(const char *path, bool missing_ok, struct ha_config *cfg,
		   char *err, size_t errlen)
{
	struct line_reader reader = { 0 };
	struct parse_ctx ctx = { .cfg = cfg, .reader = &reader };
	int line;

	ha_config_defaults(cfg);
	reader.f = fopen(path, "re");
	if (reader.f == NULL) {
		int e = errno;

		if (e == ENOENT && missing_ok) {
			return 0;
		}
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	line = ini_parse_stream(read_line, &reader, ini_cb, &ctx);
	fclose(reader.f);
	if (reader.err) {
		snprintf(err, errlen, "%s: %s", path, strerror(reader.err));
		return -reader.err;
	}
	if (line != 0) {
		/* The first error wins: an option we refused, or a line
		 * libinih could not parse. */
		snprintf(err, errlen, "%s:%d: %s", path, line,
			 ctx.failed == line ? ctx.why : "syntax error");
		return -EINVAL;
	}
	if (reader.too_long) {
		snprintf(err, errlen, "%s:%d: line longer than %d characters",
			 path, reader.too_long, reader.max);
		return -EINVAL;
	}
	return 0;
}

void ha_config_print(const struct ha_config *cfg, FILE *out)
{
	const char *section = "";

	for (const struct ha_opt *o = options; o->name; o++) {
		const char *p = (const char *)cfg + o->offset;

		if (strcmp(section, o->section) != 0) {
			fprintf(out, "%s[%s]\n", section[0] ? "\n" : "", o->section);
			section = o->section;
		}
		if (o->type == HA_OPT_UINT) {
			fprintf(out, "%s = %u\n", o->name, *(const uint32_t *)p);
		} else if (o->type == HA_OPT_BOOL) {
			fprintf(out, "%s = %s\n", o->name,
				*(const bool *)p ? "true" : "false");
		} else {
			fprintf(out, "%s = %s\n", o->name, p);
		}
	}
}

/* Prints @text as "# " comment lines of at most 76 columns. */
static void print_comment(FILE *out, const char *text)
{
	const char *p = text;

	while (*p) {
		size_t len = strlen(p), cut = len;

		if (len > 74) {
			cut = 74;
			while (cut > 0 && p[cut] != ' ') {
				cut--;
			}
			if (cut == 0) {
				cut = 74;
			}
		}
		fprintf(out, "# %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ') {
			p++;
		}
	}
}

void ha_config_print_example(FILE *out)
{
	const char *section = NULL;

	fprintf(out,
		"# /etc/hactl/hactl.conf - read by ha-coordinator and ha-agent (-c FILE to\n"
		"# use another). Every option is shown, commented out, with its default;\n"
		"# a missing file means all defaults. `hactl check --type config FILE` or\n"
		"# `ha-coordinator --check FILE` validates a file and names file and line\n"
		"# of an error. SIGHUP (systemctl reload) rereads the options marked\n"
		"# reloadable; the others need a restart. The same file may serve every\n"
		"# host. Printed by `ha-coordinator --example`; the table:\n"
		"# docs/configuration.md.\n");
	for (const struct ha_opt *o = options; o->name; o++) {
		char line[1024];
		int n;

		if (section == NULL || strcmp(section, o->section) != 0) {
			section = o->section;
			fprintf(out, "\n[%s]\n", section);
		}
		n = snprintf(line, sizeof(line), "%s", o->help);
		if (o->type == HA_OPT_UINT) {
			n += snprintf(line + n, sizeof(line) - (size_t)n, " (%llu..%llu)",
				      (unsigned long long)o->min, (unsigned long long)o->max);
		} else if (o->type == HA_OPT_CHOICE || o->type == HA_OPT_BOOL) {
			n += snprintf(line + n, sizeof(line) - (size_t)n, " (%s)",
				      o->type == HA_OPT_BOOL ? "true|false" : o->choices);
		}
		if (o->reloadable && n < (int)sizeof(line)) {
			snprintf(line + n, sizeof(line) - (size_t)n, ". Reloadable.");
		}
		fprintf(out, "\n");
		print_comment(out, line);
		fprintf(out, ";%s =%s%s\n", o->name, o->def[0] ? " " : "", o->def);
	}
}

void ha_config_print_reference(FILE *out)
{
	static const char *const type_names[HA_OPT_TYPE_MAX] = {
		[HA_OPT_STR] = "string",
		[HA_OPT_UINT] = "number",
		[HA_OPT_LOGLEVEL] = "log level",
		[HA_OPT_BOOL] = "boolean",
		[HA_OPT_CHOICE] = "word",
		[HA_OPT_NET] = "network",
		[HA_OPT_LISTEN] = "address",
	};

	fprintf(out, "| section | option | type | default | range | reload | meaning |\n");
	fprintf(out, "|---|---|---|---|---|---|---|\n");
	for (const struct ha_opt *o = options; o->name; o++) {
		char range[64] = "";

		if (o->type == HA_OPT_UINT) {
			snprintf(range, sizeof(range), "%llu..%llu",
				 (unsigned long long)o->min, (unsigned long long)o->max);
		} else if (o->type == HA_OPT_NET) {
			snprintf(range, sizeof(range), "ADDRESS[/PREFIX]");
		} else if (o->type == HA_OPT_LISTEN) {
			snprintf(range, sizeof(range), "ADDRESS:PORT");
		} else if (o->type == HA_OPT_STR) {
			snprintf(range, sizeof(range), "<= %llu chars",
				 (unsigned long long)o->max);
		} else if (o->type == HA_OPT_BOOL) {
			snprintf(range, sizeof(range), "true, false");
		} else if (o->type == HA_OPT_CHOICE) {
			/* "a|b" would split the markdown cell */
			size_t n = 0;

			for (const char *c = o->choices; *c && n + 3 < sizeof(range); c++) {
				if (*c == '|') {
					range[n++] = ',';
					range[n++] = ' ';
				} else {
					range[n++] = *c;
				}
			}
			range[n] = 0;
		}
		fprintf(out, "| %s | %s | %s | %s | %s | %s | %s |\n", o->section,
			o->name, type_names[o->type], o->def[0] ? o->def : "(empty)",
			range, o->reloadable ? "yes" : "no", o->help);
	}
}
