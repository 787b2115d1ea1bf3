/*
 * guestdef.c - parser and checks for guest definitions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestdef.h"
#include "util.h"

enum opt_kind { K_STR, K_UINT, K_SIZE, K_TYPE, K_RESTART, K_NAME, K_CIDR, K_IP, K_PATH, K_DISK, K_MAXAGE,
		K_CHECK };

struct gopt {
	const char *section;
	const char *name;
	enum opt_kind kind;
	uint64_t min, max;
	const char *def;      /* NULL = required */
	size_t offset, size;
	const char *help;
};

#define F(field) offsetof(struct ha_guest_def, field), sizeof(((struct ha_guest_def *)0)->field)

static const struct gopt gopts[] = {
	{ "guest", "name", K_NAME, 0, 0, NULL, F(name), "unique name: letters, digits, - _ ." },
	{ "guest", "type", K_TYPE, 0, 0, NULL, F(type), "container or domain" },
	{ "guest", "memory", K_SIZE, HA_GUEST_MEM_MIN_KIB, HA_GUEST_MEM_MAX_KIB, "128M", F(mem_kib),
	  "memory limit (container) or RAM (domain), 16M..64G; K/M/G suffix, bare = MiB" },
	{ "guest", "cpus", K_UINT, 1, 64, "1", F(cpus), "vCPUs (domain); CPU count hint (container)" },
	{ "guest", "cpu_weight", K_UINT, 1, 100000, "1000", F(cpu_weight),
	  "relative CPU share (OpenVZ cpuunits)" },
	{ "guest", "cpu_limit", K_UINT, 0, 6400, "0", F(cpu_limit_pct),
	  "CPU cap in percent of one CPU (OpenVZ cpulimit), 0 = none" },
	{ "guest", "pids_limit", K_UINT, 0, 4194304, "0", F(pids_max),
	  "most processes in a container, 0 = none" },
	{ "guest", "command", K_STR, 0, 0, "", F(command),
	  "program and arguments, split on spaces: a container's init (required); a "
	  "domain's service (empty: the template's /usr/bin/hactl-workload with its "
	  "defaults, docs/templates.md)" },
	{ "guest", "stop_timeout", K_UINT, 1, 3600, "30", F(stop_timeout_s),
	  "seconds a graceful stop may take before it is forced" },
	{ "storage", "template", K_PATH, 0, 0, "", F(template_dir),
	  "container (required): root file system template, a directory relative to "
	  "shared_dir/templates" },
	{ "storage", "disk_quota", K_SIZE, 32 * 1024, 16ull << 30, "1G", F(disk_kib),
	  "container: size of the writable layer, an ext4 image on the shared storage "
	  "(disk quota); K/M/G suffix, bare = MiB; set when the image is made" },
	{ "storage", "kernel", K_PATH, 0, 0, "", F(kernel),
	  "domain (required): kernel (vmlinux for PVH), relative to shared_dir/templates" },
	{ "storage", "initrd", K_PATH, 0, 0, "", F(initrd),
	  "domain (required): initramfs, relative to shared_dir/templates" },
	{ "storage", "disk", K_DISK, 0, 0, "", F(disk),
	  "domain: disk image relative to shared_dir/disks, or a DRBD device /dev/drbdN or /dev/drbd/by-res/RES/N; optional" },
	{ "network", "ip", K_CIDR, 0, 0, "", F(ip), "address/prefix on the guest network" },
	{ "network", "gateway", K_IP, 0, 0, "", F(gateway), "default route, optional" },
	{ "ha", "priority", K_UINT, 0, 1000, "0", F(priority), "recovery order, higher first" },
	{ "ha", "restart", K_RESTART, 0, 0, "snapshot", F(restart),
	  "after host loss: snapshot, cold or none" },
	{ "ha", "snapshot_interval", K_UINT, 0, 86400, "0", F(snapshot_interval_s),
	  "seconds between periodic snapshots, 0 = none" },
	{ "ha", "snapshot_keep", K_UINT, 1, 100, "3", F(snapshot_keep),
	  "snapshot generations kept" },
	{ "ha", "failover_snapshot_max_age", K_MAXAGE, 1, HA_FAILOVER_AGE_MAX_S, "auto",
	  F(failover_max_age_s),
	  "oldest snapshot a failover restores, else cold start: seconds (1..2592000, at least snapshot_interval), auto = 3 x snapshot_interval (no snapshot when that is 0), or unlimited" },
	{ "ha", "group", K_NAME, 0, 0, "", F(group),
	  "node group of the placement policy it runs in, optional" },
	{ "ha", "max_restart", K_UINT, 0, 100, "1", F(max_restart),
	  "restarts in place after a crash or failed start, then relocation" },
	{ "ha", "max_relocate", K_UINT, 0, 100, "1", F(max_relocate),
	  "starts on another node after the restarts, then state error" },
	{ "ha", "check", K_CHECK, 0, 0, "none", F(check),
	  "health check: none, tcp:PORT (a connection to the guest's address) or exec:CMD (sh -c CMD on its host, $1 the guest's name, $2 its address; exit 0 = healthy); check_failures failed checks in a row count as a crash for max_restart" },
	{ "ha", "check_interval", K_UINT, 1, 3600, "10", F(check_interval_s),
	  "seconds between health checks" },
	{ "ha", "check_timeout", K_UINT, 1, 60, "5", F(check_timeout_s),
	  "seconds a health check may take before it counts as failed" },
	{ "ha", "check_failures", K_UINT, 1, 100, "3", F(check_failures),
	  "failed health checks in a row that count as a crash" },
	{ 0 },
};

static const char *const restart_names[HA_RESTART_MAX] = {
	[HA_RESTART_SNAPSHOT] = "snapshot",
	[HA_RESTART_COLD] = "cold",
	[HA_RESTART_NONE] = "none",
};

const char *ha_restart_policy_str(enum ha_restart_policy p)
{
	return ha_enum_str(restart_names, HA_RESTART_MAX, (unsigned)p);
}

enum ha_check_kind ha_guestdef_check(const struct ha_guest_def *d, uint32_t *port,
				     const char **cmd)
{
	uint64_t n;

	*port = 0;
	*cmd = NULL;
	if (strncmp(d->check, "tcp:", 4) == 0 && ha_parse_u64(d->check + 4, 1, 65535, &n) == 0) {
		*port = (uint32_t)n;
		return HA_CHECK_TCP;
	}
	if (strncmp(d->check, "exec:", 5) == 0 && d->check[5]) {
		*cmd = d->check + 5;
		return HA_CHECK_EXEC;
	}
	return HA_CHECK_NONE;
}

int ha_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > HA_GUEST_NAME_MAX || s[0] == '-' || s[0] == '.') {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') ||
		      (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
			return 0;
		}
	}
	return 1;
}

int ha_parse_size_kib(const char *s, uint64_t *kib)
{
	const char *end;
	uint64_t v, mul;
	int rc = ha_parse_u64_prefix(s, &v, &end);

	if (rc < 0) {
		return rc;
	}
	if (*end == 0 || strcmp(end, "M") == 0 || strcmp(end, "MiB") == 0) {
		mul = 1024;
	} else if (strcmp(end, "K") == 0 || strcmp(end, "KiB") == 0) {
		mul = 1;
	} else if (strcmp(end, "G") == 0 || strcmp(end, "GiB") == 0) {
		mul = 1024 * 1024;
	} else {
		return -EINVAL;
	}
	if (v > UINT64_MAX / mul) {
		return -ERANGE;
	}
	*kib = v * mul;
	return 0;
}

static bool ip_valid(const char *s, bool cidr)
{
	char buf[64];
	char *slash;
	struct in_addr a;

	if (strlen(s) >= sizeof(buf)) {
		return false;
	}
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (cidr) {
		uint64_t p;

		if (slash == NULL || ha_parse_u64(slash + 1, 1, 32, &p) < 0) {
			return false;
		}
		*slash = 0;
	} else if (slash) {
		return false;
	}
	return inet_pton(AF_INET, buf, &a) == 1;
}

/*
 * A path a definition may name: relative (resolved by the agent under
 * shared_dir/templates or shared_dir/disks), without "." or ".."
 * components, empty components or a leading "-". Anything else would let
 * whoever may define guests (group hactl) hand a host's files or devices
 * to a guest: template = /, disk = /dev/sda, kernel = ../../etc/shadow.
 */
static bool managed_path_valid(const char *v)
{
	const char *p = v;

	if (v[0] == 0 || v[0] == '/' || v[0] == '-') {
		return false;
	}
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)p[i];

			if (ch < 0x20 || ch == 0x7f) {
				return false;
			}
		}
		p += n;
		if (*p == '/') {
			p++;
			if (*p == 0) {
				return false; /* trailing slash: an empty component */
			}
		}
	}
	return true;
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0 || n > 6) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
	}
	return true;
}

/* A DRBD device (docs/storage.md): /dev/drbdN or /dev/drbd/by-res/RES/N
 * with RES a resource name as the drbd backend accepts it. */
static bool drbd_device_valid(const char *v)
{
	static const char dev[] = "/dev/drbd", byres[] = "/dev/drbd/by-res/";
	const char *slash;
	char res[HA_GUEST_NAME_MAX + 1];

	if (strncmp(v, byres, sizeof(byres) - 1) == 0) {
		v += sizeof(byres) - 1;
		slash = strchr(v, '/');
		if (slash == NULL || (size_t)(slash - v) >= sizeof(res)) {
			return false;
		}
		memcpy(res, v, (size_t)(slash - v));
		res[slash - v] = 0;
		return ha_name_valid(res) && strcmp(res, "all") != 0 &&
		       all_digits(slash + 1, strlen(slash + 1));
	}
	if (strncmp(v, dev, sizeof(dev) - 1) == 0) {
		v += sizeof(dev) - 1;
		return all_digits(v, strlen(v));
	}
	return false;
}

struct pctx {
	struct ha_guest_def *def;
	bool seen[sizeof(gopts) / sizeof(gopts[0])];
	char why[512];
	int failed;
};

static int set_opt(struct ha_guest_def *d, const struct gopt *o, const char *v,
		   char *why, size_t whylen)
{
	char *dst = (char *)d + o->offset;
	uint64_t n;

	switch (o->kind) {
	case K_NAME:
		if (v[0] && !ha_name_valid(v)) {
			snprintf(why, whylen, "%s: '%s' is not a valid name (letters, digits, - _ ., at most %d)",
				 o->name, v, HA_GUEST_NAME_MAX);
			return -EINVAL;
		}
		break;
	case K_TYPE:
		if (strcmp(v, "container") != 0 && strcmp(v, "domain") != 0) {
			snprintf(why, whylen, "type: '%s' is not container or domain", v);
			return -EINVAL;
		}
		break;
	case K_CIDR:
	case K_IP:
		if (v[0] && !ip_valid(v, o->kind == K_CIDR)) {
			snprintf(why, whylen, "%s: '%s' is not an IPv4 %s", o->name, v,
				 o->kind == K_CIDR ? "address/prefix" : "address");
			return -EINVAL;
		}
		break;
	case K_UINT:
		if (ha_parse_u64(v, o->min, o->max, &n) < 0) {
			snprintf(why, whylen, "%s: '%s' is not a number in %llu..%llu",
				 o->name, v, (unsigned long long)o->min,
				 (unsigned long long)o->max);
			return -EINVAL;
		}
		*(uint32_t *)dst = (uint32_t)n;
		return 0;
	case K_SIZE:
		if (ha_parse_size_kib(v, &n) < 0 || n < o->min || n > o->max) {
			snprintf(why, whylen, "%s: '%s' is not a size in %lluM..%lluG (K, M or G suffix)",
				 o->name, v, (unsigned long long)o->min / 1024,
				 (unsigned long long)o->max / (1024 * 1024));
			return -EINVAL;
		}
		*(uint64_t *)dst = n;
		return 0;
	case K_MAXAGE:
		if (strcmp(v, "auto") == 0) {
			*(uint32_t *)dst = HA_FAILOVER_AGE_AUTO;
		} else if (strcmp(v, "unlimited") == 0) {
			*(uint32_t *)dst = HA_FAILOVER_AGE_UNLIMITED;
		} else if (ha_parse_u64(v, o->min, o->max, &n) == 0) {
			*(uint32_t *)dst = (uint32_t)n;
		} else {
			snprintf(why, whylen, "%s: '%s' is not seconds in %llu..%llu, auto or "
				 "unlimited%s", o->name, v, (unsigned long long)o->min,
				 (unsigned long long)o->max,
				 strcmp(v, "0") == 0 ? " (for no snapshot at all: restart = cold)" : "");
			return -EINVAL;
		}
		return 0;
	case K_RESTART:
		for (int i = 0; i < HA_RESTART_MAX; i++) {
			if (strcmp(v, restart_names[i]) == 0) {
				*(enum ha_restart_policy *)dst = (enum ha_restart_policy)i;
				return 0;
			}
		}
		snprintf(why, whylen, "restart: '%s' is not snapshot, cold or none", v);
		return -EINVAL;
	case K_PATH:
	case K_DISK:
		if (v[0] && !managed_path_valid(v) && !(o->kind == K_DISK && drbd_device_valid(v))) {
			snprintf(why, whylen,
				 "[%s] %s: '%s' is outside the storage hactl manages (%s)",
				 o->section, o->name, v,
				 o->kind == K_DISK ? "a path relative to shared_dir/disks without '..', or a DRBD device /dev/drbdN or /dev/drbd/by-res/RES/N"
						   : "a path relative to shared_dir/templates without '..'");
			return -EINVAL;
		}
		break;
	case K_CHECK:
		if (strcmp(v, "none") == 0) {
			v = "";
		} else if (strncmp(v, "tcp:", 4) == 0) {
			if (ha_parse_u64(v + 4, 1, 65535, &n) < 0) {
				snprintf(why, whylen, "check: '%s': the port is not a number in 1..65535",
					 v);
				return -EINVAL;
			}
		} else if (strncmp(v, "exec:", 5) != 0 || v[5] == '\0') {
			snprintf(why, whylen, "check: '%s' is not none, tcp:PORT or exec:CMD", v);
			return -EINVAL;
		}
		break;
	case K_STR:
		break;
	}
	if (strlen(v) >= o->size) {
		snprintf(why, whylen, "%s: longer than %zu characters", o->name, o->size - 1);
		return -EINVAL;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct pctx *c = user;

	for (size_t i = 0; gopts[i].name; i++) {
		if (strcmp(gopts[i].section, section) != 0 || strcmp(gopts[i].name, name) != 0) {
			continue;
		}
		if (c->seen[i]) {
			snprintf(c->why, sizeof(c->why), "%s given twice in [%s]", name, section);
			goto fail;
		}
		c->seen[i] = true;
		if (set_opt(c->def, &gopts[i], value, c->why, sizeof(c->why)) < 0) {
			goto fail;
		}
		return 1;
	}
	snprintf(c->why, sizeof(c->why), "unknown option '%s' in [%s]", name, section);
fail:
	if (!c->failed) {
		c->failed = 1;
		return 0;
	}
	return 1;
}

/* Line-level syntax, checked before libinih so that its first error and
 * our message name the same line. Returns 0 or the bad line's number. */
static int syntax_line(const char *text)
{
	int lineno = 0;

	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		size_t i = 0;

		lineno++;
		while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) {
			i++;
		}
		if (i < n && p[i] != ';' && p[i] != '#') {
			if (p[i] == '[') {
				if (!memchr(p + i, ']', n - i)) {
					return lineno;
				}
			} else if (!memchr(p + i, '=', n - i) && !memchr(p + i, ':', n - i)) {
				return lineno;
			}
		}
		if (n >= 199) {
			return lineno; /* libinih would split it */
		}
		p = eol ? eol + 1 : p + n;
	}
	return 0;
}

/* The line of "name = ..." in [section] of @text, 0 when not found. */
static int key_line(const char *text, size_t len, const char *section, const char *name)
{
	const char *p = text, *end = text + len;
	size_t sl = strlen(section), nl = strlen(name);
	bool in = false;
	int lineno = 0;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *q = p;
		size_t n;

		if (eol == NULL) {
			eol = end;
		}
		lineno++;
		while (q < eol && (*q == ' ' || *q == '\t')) {
			q++;
		}
		n = (size_t)(eol - q);
		if (n > 0 && *q == '[') {
			in = n >= sl + 2 && memcmp(q + 1, section, sl) == 0 && q[sl + 1] == ']';
		} else if (in && n > nl && memcmp(q, name, nl) == 0 &&
			   (q[nl] == ' ' || q[nl] == '\t' || q[nl] == '=' || q[nl] == ':')) {
			return lineno;
		}
		p = eol + 1;
	}
	return 0;
}

uint64_t ha_guestdef_failover_max_age_ms(const struct ha_guest_def *d)
{
	if (d->failover_max_age_s == HA_FAILOVER_AGE_UNLIMITED) {
		return UINT64_MAX;
	}
	if (d->failover_max_age_s == HA_FAILOVER_AGE_AUTO) {
		return (uint64_t)HA_FAILOVER_AGE_AUTO_FACTOR * d->snapshot_interval_s * 1000u;
	}
	return (uint64_t)d->failover_max_age_s * 1000u;
}

void ha_guestdef_failover_max_age_str(const struct ha_guest_def *d, char *buf, size_t len)
{
	if (d->failover_max_age_s == HA_FAILOVER_AGE_UNLIMITED) {
		snprintf(buf, len, "unlimited");
	} else if (d->failover_max_age_s == HA_FAILOVER_AGE_AUTO) {
		snprintf(buf, len, "auto (%llu s)",
			 (unsigned long long)(ha_guestdef_failover_max_age_ms(d) / 1000));
	} else {
		snprintf(buf, len, "%u s", d->failover_max_age_s);
	}
}

int ha_guestdef_parse(const char *text, size_t len, const char *fname,
		      struct ha_guest_def *out, char *err, size_t errlen)
{
	struct pctx c = { .def = out };
	char *copy;
	char why[256];
	int line;

	memset(out, 0, sizeof(*out));
	if (len > HA_GUESTDEF_MAX_TEXT) {
		snprintf(err, errlen, "%s:0: definition longer than %d bytes", fname,
			 HA_GUESTDEF_MAX_TEXT);
		return -EINVAL;
	}
	if (memchr(text, 0, len)) {
		snprintf(err, errlen, "%s:0: contains a NUL byte", fname);
		return -EINVAL;
	}
	for (size_t i = 0; gopts[i].name; i++) {
		if (gopts[i].def) {
			set_opt(out, &gopts[i], gopts[i].def, why, sizeof(why));
		}
	}
	copy = malloc(len + 1);
	if (copy == NULL) {
		snprintf(err, errlen, "%s:0: out of memory", fname);
		return -ENOMEM;
	}
	memcpy(copy, text, len);
	copy[len] = 0;
	line = syntax_line(copy);
	if (line) {
		free(copy);
		snprintf(err, errlen, "%s:%d: syntax error (a [section] or key = value, at most 198 characters)",
			 fname, line);
		return -EINVAL;
	}
	line = ini_parse_string(copy, ini_cb, &c);
	free(copy);
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: %s", fname, line, c.failed ? c.why : "syntax error");
		return -EINVAL;
	}
	for (size_t i = 0; gopts[i].name; i++) {
		if (gopts[i].def == NULL && !c.seen[i]) {
			snprintf(err, errlen, "%s:0: [%s] %s is required", fname,
				 gopts[i].section, gopts[i].name);
			return -EINVAL;
		}
	}
	if (strcmp(out->type, "container") == 0) {
		if (!out->template_dir[0]) {
			snprintf(err, errlen, "%s:0: a container needs [storage] template", fname);
			return -EINVAL;
		}
		if (!out->command[0]) {
			snprintf(err, errlen, "%s:0: a container needs [guest] command", fname);
			return -EINVAL;
		}
		if (out->kernel[0] || out->initrd[0] || out->disk[0]) {
			snprintf(err, errlen, "%s:0: kernel, initrd and disk are for domains only", fname);
			return -EINVAL;
		}
	} else {
		if (!out->kernel[0] || !out->initrd[0]) {
			snprintf(err, errlen, "%s:0: a domain needs [storage] kernel and initrd", fname);
			return -EINVAL;
		}
		if (out->template_dir[0]) {
			snprintf(err, errlen, "%s:0: template is for containers only", fname);
			return -EINVAL;
		}
		if (out->pids_max) {
			snprintf(err, errlen, "%s:0: pids_limit is for containers only", fname);
			return -EINVAL;
		}
	}
	if (strncmp(out->check, "tcp:", 4) == 0 && !out->ip[0]) {
		snprintf(err, errlen, "%s:%d: check = %s needs the guest's address ([network] ip)",
			 fname, key_line(text, len, "ha", "check"), out->check);
		return -EINVAL;
	}
	if (out->failover_max_age_s != HA_FAILOVER_AGE_AUTO &&
	    out->failover_max_age_s != HA_FAILOVER_AGE_UNLIMITED &&
	    out->failover_max_age_s < out->snapshot_interval_s) {
		/* between two periodic snapshots every failover would start cold */
		snprintf(err, errlen, "%s:%d: failover_snapshot_max_age (%u s) is shorter than "
			 "snapshot_interval (%u s): make it at least 2 x snapshot_interval, or auto",
			 fname, key_line(text, len, "ha", "failover_snapshot_max_age"),
			 out->failover_max_age_s, out->snapshot_interval_s);
		return -EINVAL;
	}
	if (out->gateway[0] && !out->ip[0]) {
		snprintf(err, errlen, "%s:0: gateway given without ip", fname);
		return -EINVAL;
	}
	return 0;
}

void ha_guestdef_print_reference(FILE *out)
{
	fprintf(out, "| section | option | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; gopts[i].name; i++) {
		const struct gopt *o = &gopts[i];

		fprintf(out, "| %s | %s | %s | %s |\n", o->section, o->name,
			o->def == NULL ? "(required)" : o->def[0] ? o->def : "(empty)", o->help);
	}
}
