/*
 * storage_drbd.c - the "drbd" storage backend: a DRBD resource replicated
 * between hosts, driven through drbdadm from drbd-utils.
 *
 *   acquire  drbdadm primary RES     (after the old owner was fenced)
 *   release  drbdadm secondary RES   (after a clean stop)
 *   state    drbdadm role RES        ("Primary", "Secondary"; DRBD 8.4
 *                                     prints "Primary/Secondary")
 *
 * Never --force: DRBD refuses to promote while a connected peer is primary
 * or while this disk is not UpToDate, and both refusals are exactly what
 * must stop a failover that would otherwise lose or fork data. The error
 * carries drbdadm's message; agent_storage_drbd_errno() maps it.
 *
 * drbdadm runs through ha_spawn_run (common/ha_spawn.h: no shell), its
 * argument a checked resource name, in its own process group that is
 * killed when the timeout passes (drbdadm runs drbdsetup, which may wait on
 * the kernel). stdout and stderr are captured separately: stdout is
 * parsed, both go into the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "ha_spawn.h"
#include "storage.h"
#include "util.h"

#define DRBD_OUT_MAX 4096       /* captured per stream; the rest is read and dropped */
#define DRBD_RES_MAX 63         /* longest resource name accepted */

static char *drbd_tool; /* agent_storage_drbd_set_tool(); NULL = search */

int agent_storage_drbd_set_tool(const char *path)
{
	char *copy = NULL;

	if (path != NULL) {
		copy = strdup(path);
		if (copy == NULL) {
			return -ENOMEM;
		}
	}
	free(drbd_tool);
	drbd_tool = copy;
	return 0;
}

static bool is_exec(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Finds drbdadm: the configured one, else PATH, else the sbin dirs. */
static int find_tool(char *out, size_t len)
{
	static const char *const fallback[] = { "/usr/sbin", "/sbin", "/usr/local/sbin" };
	const char *path = getenv("PATH");

	if (drbd_tool != NULL) {
		if (strlen(drbd_tool) >= len || !is_exec(drbd_tool)) {
			return -ENOENT;
		}
		strcpy(out, drbd_tool);
		return 0;
	}
	while (path != NULL && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);

		if (n > 0 && path[0] == '/' &&
		    snprintf(out, len, "%.*s/drbdadm", (int)n, path) < (int)len && is_exec(out)) {
			return 0;
		}
		path = end ? end + 1 : NULL;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(fallback); i++) {
		if (snprintf(out, len, "%s/drbdadm", fallback[i]) < (int)len && is_exec(out)) {
			return 0;
		}
	}
	return -ENOENT;
}

/*
 * A resource name goes onto drbdadm's command line: letters, digits,
 * - _ . only, not starting with '-' (an option), and not "all" (every
 * resource).
 */
static int check_resource(const char *res, char *err, size_t errlen)
{
	size_t n = res ? strlen(res) : 0;

	if (n == 0 || n > DRBD_RES_MAX || res[0] == '-' || strcmp(res, "all") == 0) {
		ha_errf(err, errlen, 0, "drbd: invalid resource name '%.64s'", res ? res : "");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		char c = res[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.')) {
			ha_errf(err, errlen, 0, "drbd: invalid resource name '%.64s'", res);
			return -EINVAL;
		}
	}
	return 0;
}

struct drbd_cmd {
	char out[DRBD_OUT_MAX];
	char errout[DRBD_OUT_MAX];
	size_t out_len, err_len;
	int status; /* exit code, 128 + signal when killed by one */
};

/*
 * Runs `drbdadm VERB RES` within @timeout_ms. Returns 0 when it ran to its
 * end (c->status says how), -ENOENT when there is no drbdadm, -ETIMEDOUT
 * (it was killed), or another -errno.
 */
static int drbd_exec(const char *verb, const char *res, uint32_t timeout_ms,
		     struct drbd_cmd *c)
{
	char tool[4096];
	char *argv[4];
	struct ha_spawn sp = {
		.argv = argv,
		.out = c->out,
		.out_len = sizeof(c->out),
		.err = HA_SPAWN_ERR_CAPTURE,
		.err_out = c->errout,
		.err_out_len = sizeof(c->errout),
		.timeout_ms = timeout_ms ? timeout_ms : 1,
	};
	struct ha_spawn_result r;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = find_tool(tool, sizeof(tool));
	if (rc < 0) {
		return rc;
	}
	argv[0] = tool;
	argv[1] = (char *)verb;
	argv[2] = (char *)res;
	argv[3] = NULL;
	rc = ha_spawn_run(&sp, &r);
	c->out_len = r.out_got;
	c->err_len = r.err_out_got;
	if (rc == -ETIMEDOUT && r.signal == 0) {
		qb_log(LOG_DEBUG, "drbdadm %s %s: pid %d not reaped after SIGKILL", verb, res,
		       (int)r.pid);
	}
	if (rc < 0) {
		return rc;
	}
	c->status = ha_spawn_status(&r);
	qb_log(LOG_DEBUG, "drbdadm %s %s: exit %d", verb, res, c->status);
	return 0;
}

/*
 * Appends @text to @dst (of @cap bytes, NUL-terminated) as one line:
 * lines trimmed, empty and repeated lines dropped, joined with "; ".
 */
static void flatten(char *dst, size_t cap, const char *text)
{
	size_t len = strlen(dst);
	const char *line = text;
	const char *prev = NULL;
	size_t prev_n = 0;

	while (line && *line && len + 1 < cap) {
		const char *nl = strchr(line, '\n');
		const char *end = nl ? nl : line + strlen(line);
		const char *s = line;
		size_t n;

		while (s < end && (*s == ' ' || *s == '\t')) {
			s++;
		}
		while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) {
			end--;
		}
		n = (size_t)(end - s);
		if (n > 0 && !(prev && prev_n == n && memcmp(prev, s, n) == 0)) {
			int w = snprintf(dst + len, cap - len, "%s%.*s", len ? "; " : "", (int)n, s);

			if (w < 0) {
				break;
			}
			len += (size_t)w;
			if (len >= cap) {
				len = cap - 1;
			}
			prev = s;
			prev_n = n;
		}
		line = nl ? nl + 1 : NULL;
	}
}

static void cmd_err(char *err, size_t errlen, const char *verb, const char *res,
		    const struct drbd_cmd *c)
{
	char msg[1024] = "";

	flatten(msg, sizeof(msg), c->errout);
	flatten(msg, sizeof(msg), c->out);
	ha_errf(err, errlen, 0, "drbdadm %s %s: exit %d: %s", verb, res, c->status,
		msg[0] ? msg : "(no output)");
}

static void exec_err(char *err, size_t errlen, const char *verb, const char *res,
		     uint32_t timeout_ms, int rc)
{
	if (rc == -ENOENT) {
		ha_errf(err, errlen, 0, "drbd: drbdadm not found (PATH, /usr/sbin, /sbin; "
			"install drbd-utils)");
	} else if (rc == -ETIMEDOUT) {
		ha_errf(err, errlen, 0, "drbdadm %s %s: no answer within %u ms, killed", verb, res,
			timeout_ms);
	} else {
		ha_errf(err, errlen, 0, "drbdadm %s %s: %s", verb, res, strerror(-rc));
	}
}

int agent_storage_drbd_errno(int status, const char *out)
{
	if (status == 0) {
		return 0;
	}
	if (out == NULL) {
		out = "";
	}
	if (strstr(out, "not defined in your config") || strstr(out, "no resources defined")) {
		return -ENOENT;
	}
	if (strstr(out, "State change failed") || strstr(out, "state change failed")) {
		if (strstr(out, "UpToDate") || strstr(out, "lower than outdated")) {
			return -ESTALE; /* "Need access to UpToDate data" (9),
					 * "... without at least one UpToDate disk" (8.4) */
		}
		if (strstr(out, "No quorum")) {
			return -ENOTCONN;
		}
		if (strstr(out, "Timeout in operation")) {
			return -ETIMEDOUT;
		}
		return -EBUSY;
	}
	if (strstr(out, "Unknown resource") || strstr(out, "No such resource") ||
	    strstr(out, "Unconfigured") || strstr(out, "unconfigured") ||
	    strstr(out, "No such device")) {
		return -ENODEV;
	}
	if (status == 127) {
		return -ENOENT; /* could not execute */
	}
	return -EIO;
}

static int put_role(const char *role, char *out, size_t len)
{
	if (out == NULL || len <= strlen(role)) {
		return -ENOBUFS;
	}
	strcpy(out, role);
	return 0;
}

/* @w (@n bytes) as a role word; NULL when it is none. */
static const char *role_word(const char *w, size_t n)
{
	if (n == 7 && strncmp(w, "Primary", 7) == 0) {
		return AGENT_STORAGE_ROLE_PRIMARY;
	}
	if (n == 9 && strncmp(w, "Secondary", 9) == 0) {
		return AGENT_STORAGE_ROLE_SECONDARY;
	}
	if (n == 12 && strncmp(w, "Unconfigured", 12) == 0) {
		return AGENT_STORAGE_ROLE_DOWN;
	}
	return NULL;
}

int agent_storage_drbd_parse_role(const char *out, char *role, size_t rolelen)
{
	const char *line = out;
	const char *p = out ? strstr(out, "role:") : NULL;

	/* `drbdadm status`: the first line with "role:" is the resource's own
	 * ("r0 role:Primary"); the peers' lines come after it. */
	if (p != NULL) {
		const char *w = p + strlen("role:");
		const char *r = role_word(w, strcspn(w, " \t\r\n"));

		return r ? put_role(r, role, rolelen) : -EPROTO;
	}
	/* `drbdadm role`: one line per volume, "Primary" or (8.4)
	 * "Primary/Secondary" (local/peer). Lines that are not a role
	 * (warnings) are skipped. */
	while (line && *line) {
		const char *s = line + strspn(line, " \t");
		size_t n = strcspn(s, "/ \t\r\n");
		const char *r = role_word(s, n);

		if (r != NULL) {
			return put_role(r, role, rolelen);
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	return -EPROTO;
}

static int drbd_probe(char *err, size_t errlen)
{
	char tool[4096];

	if (access("/sys/module/drbd", F_OK) < 0 && access("/proc/drbd", F_OK) < 0) {
		ha_errf(err, errlen, 0, "drbd: kernel module not loaded (modprobe drbd)");
		return -ENODEV;
	}
	if (find_tool(tool, sizeof(tool)) < 0) {
		exec_err(err, errlen, "", "", 0, -ENOENT);
		return -ENOENT;
	}
	return 0;
}

/* primary / secondary: the same steps, the verb differs. */
static int drbd_switch(const char *verb, const char *res, uint32_t timeout_ms, char *err,
		       size_t errlen)
{
	struct drbd_cmd *c;
	int rc;

	rc = check_resource(res, err, errlen);
	if (rc < 0) {
		return rc;
	}
	if (timeout_ms == 0) {
		timeout_ms = AGENT_STORAGE_DEFAULT_TIMEOUT_MS;
	}
	c = malloc(sizeof(*c));
	if (c == NULL) {
		ha_errf(err, errlen, 0, "drbdadm %s %s: out of memory", verb, res);
		return -ENOMEM;
	}
	rc = drbd_exec(verb, res, timeout_ms, c);
	if (rc < 0) {
		exec_err(err, errlen, verb, res, timeout_ms, rc);
	} else if (c->status != 0) {
		char both[2 * DRBD_OUT_MAX + 2];

		snprintf(both, sizeof(both), "%s\n%s", c->errout, c->out);
		rc = agent_storage_drbd_errno(c->status, both);
		cmd_err(err, errlen, verb, res, c);
	}
	free(c);
	return rc;
}

static int drbd_acquire(const char *resource, uint32_t timeout_ms, char *err, size_t errlen)
{
	return drbd_switch("primary", resource, timeout_ms, err, errlen);
}

static int drbd_release(const char *resource, uint32_t timeout_ms, char *err, size_t errlen)
{
	return drbd_switch("secondary", resource, timeout_ms, err, errlen);
}

static int drbd_state(const char *resource, char *role_out, size_t rolelen)
{
	struct drbd_cmd *c;
	char role[AGENT_STORAGE_ROLE_LEN];
	int rc;

	rc = check_resource(resource, NULL, 0);
	if (rc < 0) {
		return rc;
	}
	c = malloc(sizeof(*c));
	if (c == NULL) {
		return -ENOMEM;
	}
	rc = drbd_exec("role", resource, AGENT_STORAGE_STATE_TIMEOUT_MS, c);
	if (rc == 0) {
		int prc = agent_storage_drbd_parse_role(c->out, role, sizeof(role));

		if (c->status == 0) {
			rc = prc;
		} else if (prc == 0 && strcmp(role, AGENT_STORAGE_ROLE_DOWN) == 0) {
			rc = 0; /* 8.4 may print "Unconfigured" and fail */
		} else {
			char both[2 * DRBD_OUT_MAX + 2];

			snprintf(both, sizeof(both), "%s\n%s", c->errout, c->out);
			rc = agent_storage_drbd_errno(c->status, both);
			if (rc == -ENODEV) {
				strcpy(role, AGENT_STORAGE_ROLE_DOWN);
				rc = 0;
			}
		}
	}
	free(c);
	if (rc < 0) {
		return rc;
	}
	return put_role(role, role_out, rolelen);
}

const struct agent_storage_ops agent_storage_drbd_ops = {
	.name = "drbd",
	.probe = drbd_probe,
	.acquire = drbd_acquire,
	.release = drbd_release,
	.state = drbd_state,
};
