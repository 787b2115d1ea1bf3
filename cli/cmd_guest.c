/*
 * cmd_guest.c - hactl's guest commands: check, create, start, stop,
 * restart, pause, resume, destroy, show, snapshot, restore.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_balance.h"
#include "config.h"
#include "fencing.h"
#include "guestdef.h"
#include "hactl_states.h"
#include "snapchoice.h"
#include "snapshot.h"
#include "util.h"

#define WAIT_DEFAULT_S 180

/* ---- options shared by the guest commands ---- */

struct gopts {
	const char *name;
	const char *node;
	uint64_t generation;
	bool no_wait;
	bool purge;
	bool failover_point;
	bool limits;
	uint32_t timeout_s;
	bool timeout_set;
};

static int parse_opts(int argc, char **argv, struct gopts *o, const char *allowed)
{
	memset(o, 0, sizeof(*o));
	o->timeout_s = WAIT_DEFAULT_S;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		uint64_t v;

		if (a[0] != '-') {
			if (o->name) {
				return cli_usage_error("unexpected argument '%s'", a);
			}
			o->name = a;
			continue;
		}
		if (!strstr(allowed, a)) {
			return cli_usage_error("option '%s' does not apply here", a);
		}
		if (strcmp(a, "--no-wait") == 0) {
			o->no_wait = true;
		} else if (strcmp(a, "--purge") == 0) {
			o->purge = true;
		} else if (strcmp(a, "--failover-point") == 0) {
			o->failover_point = true;
		} else if (strcmp(a, "--limits") == 0) {
			o->limits = true;
		} else if (i + 1 >= argc) {
			return cli_usage_error("option '%s' needs a value", a);
		} else if (strcmp(a, "--node") == 0) {
			o->node = argv[++i];
		} else if (strcmp(a, "--generation") == 0) {
			if (ha_parse_u64(argv[++i], 1, UINT64_MAX, &v) < 0) {
				return cli_usage_error("--generation: '%s' is not a positive number",
						       argv[i]);
			}
			o->generation = v;
		} else if (strcmp(a, "--timeout") == 0) {
			if (cli_opt_timeout(argv[++i], &o->timeout_s) != EX_OK) {
				return EX_USAGE;
			}
			o->timeout_set = true;
		} else {
			return cli_usage_error("unknown option '%s'", a);
		}
	}
	if (o->name == NULL) {
		return cli_usage_error("%s needs a guest name", argv[0]);
	}
	return EX_OK;
}

/* ---- requests ---- */

enum wait_for { WAIT_RUNNING, WAIT_STOPPED, WAIT_PAUSED };

/* On a terminal (no --json): where the guest is, rewritten at each poll;
 * @g NULL clears the line. */
static void wait_progress(const struct cli *cli, const Hactl__StatusReply *s,
			  const Hactl__GuestRecord *g, uint64_t t0)
{
	if (cli->json || !isatty(STDERR_FILENO)) {
		return;
	}
	if (g == NULL) {
		fprintf(stderr, "\r\033[K");
		return;
	}
	fprintf(stderr, "\rhactl: %s: %s on %s, %.1f s\033[K", g->name, cli_guest_state(s, g),
		g->owner ? cli_node_name(s, g->owner) : "no node", (ha_mono_ms() - t0) / 1000.0);
}

/* Polls until @name reaches @want under ownership generation >= @gen. */
static int wait_guest_poll(struct cli *cli, const char *name, enum wait_for want,
			   uint32_t timeout_s, uint64_t t0)
{
	uint64_t deadline = t0 + timeout_s * 1000ull, gen = 0;

	for (;;) {
		Hactl__StatusReply *s = NULL;
		const Hactl__GuestRecord *g;
		int ex = cli_get_status(cli, NULL, &s);

		if (ex != EX_OK) {
			return ex;
		}
		g = cli_find_guest(s, name);
		wait_progress(cli, s, g, t0);
		if (g == NULL) {
			ha_env_msg_free(&s->base);
			return want == WAIT_STOPPED ? EX_OK : EX_FAIL;
		}
		if (gen == 0) {
			gen = g->generation;
		}
		if (want == WAIT_RUNNING && g->state_generation >= gen && g->state) {
			int state = ha_guest_state_from_str(g->state);

			if (state == HACTL__GUEST_STATE__GUEST_RUNNING) {
				ha_env_msg_free(&s->base);
				return EX_OK;
			}
			if (state == HACTL__GUEST_STATE__GUEST_FAILED) {
				wait_progress(cli, NULL, NULL, t0);
				fprintf(stderr, "hactl: %s failed to start on %s: %s\n", name,
					cli_node_name(s, g->owner), g->error ? g->error : "");
				ha_env_msg_free(&s->base);
				return EX_FAIL;
			}
		}
		if (want == WAIT_PAUSED && g->state_generation >= gen &&
		    ha_guest_state_from_str(cli_guest_state(s, g)) ==
		    HACTL__GUEST_STATE__GUEST_PAUSED) {
			ha_env_msg_free(&s->base);
			return EX_OK;
		}
		if (want == WAIT_STOPPED) {
			int st = ha_guest_state_from_str(cli_guest_state(s, g));

			if (st != HACTL__GUEST_STATE__GUEST_RUNNING &&
			    st != HACTL__GUEST_STATE__GUEST_STOPPING &&
			    st != HACTL__GUEST_STATE__GUEST_STARTING &&
			    st != HACTL__GUEST_STATE__GUEST_PAUSED) {
				ha_env_msg_free(&s->base);
				return EX_OK;
			}
		}
		ha_env_msg_free(&s->base);
		if (ha_mono_ms() > deadline) {
			wait_progress(cli, NULL, NULL, t0);
			fprintf(stderr, "hactl: %s did not become %s within %u s\n", name,
				ha_guest_state_str(want == WAIT_RUNNING ?
						   HACTL__GUEST_STATE__GUEST_RUNNING :
						   want == WAIT_PAUSED ?
						   HACTL__GUEST_STATE__GUEST_PAUSED :
						   HACTL__GUEST_STATE__GUEST_STOPPED), timeout_s);
			return EX_FAIL;
		}
		usleep(200 * 1000);
	}
}

static int wait_guest(struct cli *cli, const char *name, enum wait_for want, uint32_t timeout_s)
{
	uint64_t t0 = ha_mono_ms();
	int ex = wait_guest_poll(cli, name, want, timeout_s, t0);

	wait_progress(cli, NULL, NULL, t0);
	return ex;
}

static int print_guest(struct cli *cli, const char *name, const char *what)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	int ex = cli_get_status(cli, NULL, &s);

	if (ex != EX_OK) {
		return ex;
	}
	g = cli_find_guest(s, name);
	if (g == NULL) {
		if (cli->json) {
			cli_json_print(json_object_new_object());
		}
		ha_env_msg_free(&s->base);
		return EX_OK;
	}
	if (cli->json) {
		cli_json_print(cli_guest_json(s, g));
	} else if (what) {
		bool note = g->note && g->note[0] && strcmp(what, "started") == 0;

		printf("%s %s: %s on %s%s%s%s\n", g->name, what, cli_guest_state(s, g),
		       cli_node_name(s, g->owner), note ? " (" : "", note ? g->note : "",
		       note ? ")" : "");
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

/* ---- commands ---- */

static int read_def(const char *path, char **text, size_t *len, struct ha_guest_def *def)
{
	char err[512];
	uint8_t *buf;
	int rc = ha_file_read(path, HA_GUESTDEF_MAX_TEXT, &buf, len);

	if (rc < 0) {
		fprintf(stderr, "hactl: %s: %s\n", path,
			rc == -EFBIG ? "larger than 64 KiB" : strerror(-rc));
		return EX_FAIL;
	}
	if (ha_guestdef_parse((char *)buf, *len, path, def, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		free(buf);
		return EX_FAIL;
	}
	*text = (char *)buf;
	return EX_OK;
}

/* Whether @text has a line that is the section header [guest] (blanks
 * around it allowed): a comment that mentions [guest] does not count. */
static bool has_guest_section(const char *text)
{
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		while (*l == ' ' || *l == '\t') {
			l++;
		}
		if (strncmp(l, "[guest]", 7) == 0) {
			const char *e = l + 7;

			while (*e == ' ' || *e == '\t' || *e == '\r') {
				e++;
			}
			if (*e == '\n' || *e == '\0') {
				return true;
			}
		}
	}
	return false;
}

static void check_ok(struct cli *cli, const char *path, const char *kind, const char *name)
{
	if (cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "ok", json_object_new_boolean(1));
		json_object_object_add(o, "type", json_object_new_string(kind));
		if (name) {
			json_object_object_add(o, "name", json_object_new_string(name));
		}
		cli_json_print(o);
	} else if (name) {
		printf("%s: ok (%s %s)\n", path, kind, name);
	} else {
		printf("%s: ok (%s)\n", path, kind);
	}
}

static int check_fail(struct cli *cli, const char *path, const char *err)
{
	if (cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "ok", json_object_new_boolean(0));
		json_object_object_add(o, "error", json_object_new_string(err));
		cli_json_print(o);
	}
	fprintf(stderr, "%s\n", err);
	return EX_FAIL;
}

/* hactl.conf (the option table of common/config.c) */
static int check_config(struct cli *cli, const char *path)
{
	struct ha_config cfg;
	char err[512] = "";

	ha_config_defaults(&cfg);
	if (ha_config_load(path, false, &cfg, err, sizeof(err)) < 0) {
		return check_fail(cli, path, err[0] ? err : path);
	}
	check_ok(cli, path, "config", NULL);
	return EX_OK;
}

/* fence.conf (fencing/fence_config.c); a missing file is an error here */
static int check_fence(struct cli *cli, const char *path)
{
	struct fence_config *cfg = calloc(1, sizeof(*cfg));
	char err[512] = "";
	int rc;

	if (cfg == NULL) {
		return check_fail(cli, path, "out of memory");
	}
	if (access(path, R_OK) < 0) {
		snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
		free(cfg);
		return check_fail(cli, path, err);
	}
	rc = fence_config_load(path, cfg, err, sizeof(err));
	free(cfg);
	if (rc < 0) {
		return check_fail(cli, path, err[0] ? err : path);
	}
	check_ok(cli, path, "fence", NULL);
	return EX_OK;
}

int cli_cmd_check(struct cli *cli, int argc, char **argv)
{
	const char *type = NULL;
	int worst = EX_OK, files = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--type") == 0) {
			if (i + 1 >= argc) {
				return cli_usage_error("option '%s' needs a value", argv[i]);
			}
			type = argv[++i];
			if (strcmp(type, "guest") && strcmp(type, "policy") && strcmp(type, "config") &&
			    strcmp(type, "fence")) {
				return cli_usage_error("--type: '%s' is not guest, policy, config or fence",
						       type);
			}
		} else if (argv[i][0] == '-') {
			return cli_usage_error("unknown option '%s'", argv[i]);
		} else {
			files++;
		}
	}
	if (files == 0) {
		return cli_usage_error("check needs at least one FILE%s", "");
	}
	for (int i = 1; i < argc; i++) {
		const char *kind = type;
		int ex;

		if (strcmp(argv[i], "--type") == 0) {
			i++;
			continue;
		}
		if (kind == NULL) {
			/* A guest definition has a [guest] section; anything else
			 * (a file or a directory) is a policy. */
			uint8_t *buf = NULL;
			size_t len;

			kind = ha_file_read(argv[i], HA_GUESTDEF_MAX_TEXT, &buf, &len) == 0 &&
					       has_guest_section((char *)buf) ?
				       "guest" :
				       "policy";
			free(buf);
		}
		if (strcmp(kind, "guest") == 0) {
			struct ha_guest_def def;
			char *text;
			size_t len;

			ex = read_def(argv[i], &text, &len, &def);
			if (ex == EX_OK) {
				free(text);
				check_ok(cli, argv[i], def.type, def.name);
				if (!cli->json && def.restart == HA_RESTART_SNAPSHOT &&
				    ha_guestdef_failover_max_age_ms(&def) == 0) {
					/* legal, and the default: said, as it surprises */
					printf("%s: note: a failover of %s never restores a snapshot "
					       "(snapshot_interval = 0 and failover_snapshot_max_age "
					       "= auto): it starts cold (docs/failover.md)\n",
					       argv[i], def.name);
				}
			}
		} else if (strcmp(kind, "config") == 0) {
			ex = check_config(cli, argv[i]);
		} else if (strcmp(kind, "fence") == 0) {
			ex = check_fence(cli, argv[i]);
		} else {
			ex = hactl_cmd_check_policy(argv[i], cli->json);
		}
		if (ex != EX_OK) {
			worst = EX_FAIL;
		}
	}
	return worst;
}

int cli_cmd_create(struct cli *cli, int argc, char **argv)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestDefineChange d = HACTL__GUEST_DEFINE_CHANGE__INIT;
	struct ha_guest_def def;
	char *text;
	size_t len;
	int ex;

	if (argc != 2) {
		return cli_usage_error("usage: hactl create FILE%s", "");
	}
	ex = read_def(argv[1], &text, &len, &def);
	if (ex != EX_OK) {
		return ex;
	}
	d.definition.data = (uint8_t *)text;
	d.definition.len = len;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_DEFINE;
	ch.guest_define = &d;
	ex = cli_change(cli, &ch, NULL);
	free(text);
	if (ex == EX_OK) {
		if (cli->json) {
			return print_guest(cli, def.name, NULL);
		}
		printf("%s %s defined\n", def.type, def.name);
	}
	return ex;
}

static int start_common(struct cli *cli, const struct gopts *o, const char *mode,
			uint64_t snapshot, const char *definition, size_t def_len)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestStartChange gs = HACTL__GUEST_START_CHANGE__INIT;
	int ex;

	gs.name = (char *)o->name;
	gs.node = (char *)o->node;
	gs.mode = (char *)mode;
	gs.has_snapshot = snapshot != 0;
	gs.snapshot = snapshot;
	if (definition) {
		gs.has_definition = true;
		gs.definition.data = (uint8_t *)definition;
		gs.definition.len = def_len;
	}
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_START;
	ch.guest_start = &gs;
	ex = cli_change(cli, &ch, NULL);
	if (ex != EX_OK) {
		return ex;
	}
	if (!o->no_wait) {
		ex = wait_guest(cli, o->name, WAIT_RUNNING, o->timeout_s);
	}
	if (ex == EX_OK) {
		ex = print_guest(cli, o->name, o->no_wait ? "starting" : "started");
	}
	return ex;
}

int cli_cmd_start(struct cli *cli, int argc, char **argv)
{
	struct gopts o;
	int ex = parse_opts(argc, argv, &o, "--node --no-wait --timeout");

	if (ex != EX_OK) {
		return ex;
	}
	return start_common(cli, &o, "cold", 0, NULL, 0);
}

static int stop_common(struct cli *cli, const struct gopts *o, bool quiet)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestStopChange gs = HACTL__GUEST_STOP_CHANGE__INIT;
	int ex;

	gs.name = (char *)o->name;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_STOP;
	ch.guest_stop = &gs;
	ex = cli_change(cli, &ch, NULL);
	if (ex != EX_OK) {
		return ex;
	}
	if (!o->no_wait) {
		ex = wait_guest(cli, o->name, WAIT_STOPPED, o->timeout_s);
	}
	if (ex == EX_OK && !quiet) {
		ex = print_guest(cli, o->name, o->no_wait ? "stopping" : "stopped");
	}
	return ex;
}

int cli_cmd_stop(struct cli *cli, int argc, char **argv)
{
	struct gopts o;
	int ex = parse_opts(argc, argv, &o, "--no-wait --timeout");

	return ex != EX_OK ? ex : stop_common(cli, &o, false);
}

int cli_cmd_restart(struct cli *cli, int argc, char **argv)
{
	struct gopts o;
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	char node[64] = "";
	int ex = parse_opts(argc, argv, &o, "--timeout");

	if (ex != EX_OK) {
		return ex;
	}
	ex = cli_status_guest(cli, o.name, &s, &g);
	if (ex != EX_OK) {
		return ex;
	}
	if (g->owner) {
		snprintf(node, sizeof(node), "%s", cli_node_name(s, g->owner));
	}
	ha_env_msg_free(&s->base);
	ex = stop_common(cli, &o, true);
	if (ex != EX_OK) {
		return ex;
	}
	o.node = node[0] ? node : NULL;
	return start_common(cli, &o, "cold", 0, NULL, 0);
}

/* hactl pause (@pause) and hactl resume: the change, then the wait for
 * the owner to report the guest paused or running again. */
static int pause_common(struct cli *cli, int argc, char **argv, bool pause)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestPauseChange gp = HACTL__GUEST_PAUSE_CHANGE__INIT;
	struct gopts o;
	int ex = parse_opts(argc, argv, &o, "--no-wait --timeout");

	if (ex != EX_OK) {
		return ex;
	}
	gp.name = (char *)o.name;
	gp.pause = pause;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_PAUSE;
	ch.guest_pause = &gp;
	ex = cli_change(cli, &ch, NULL);
	if (ex != EX_OK) {
		return ex;
	}
	if (!o.no_wait) {
		ex = wait_guest(cli, o.name, pause ? WAIT_PAUSED : WAIT_RUNNING, o.timeout_s);
	}
	if (ex == EX_OK) {
		ex = print_guest(cli, o.name, o.no_wait ? (pause ? "pausing" : "resuming") :
				 (pause ? "paused" : "resumed"));
	}
	return ex;
}

int cli_cmd_pause(struct cli *cli, int argc, char **argv)
{
	return pause_common(cli, argc, argv, true);
}

int cli_cmd_resume(struct cli *cli, int argc, char **argv)
{
	return pause_common(cli, argc, argv, false);
}

int cli_cmd_destroy(struct cli *cli, int argc, char **argv)
{
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__GuestUndefineChange u = HACTL__GUEST_UNDEFINE_CHANGE__INIT;
	struct gopts o;
	int ex = parse_opts(argc, argv, &o, "--purge");

	if (ex != EX_OK) {
		return ex;
	}
	u.name = (char *)o.name;
	ch.kind_case = HACTL__CHANGE__KIND_GUEST_UNDEFINE;
	ch.guest_undefine = &u;
	ex = cli_change(cli, &ch, NULL);
	if (ex != EX_OK) {
		return ex;
	}
	if (o.purge) {
		struct ha_config cfg;
		char dir[PATH_MAX];

		ex = cli_load_cfg(&cfg);
		if (ex != EX_OK) {
			return ex;
		}
		ha_snap_guest_dir(cfg.shared_dir, o.name, dir, sizeof(dir));
		ha_rm_rf(dir);
	}
	if (cli->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "name", json_object_new_string(o.name));
		json_object_object_add(j, "destroyed", json_object_new_boolean(1));
		json_object_object_add(j, "purged", json_object_new_boolean(o.purge));
		cli_json_print(j);
	} else {
		printf("%s destroyed%s\n", o.name, o.purge ? " with its snapshots" :
		       " (snapshots kept: hactl restore brings it back)");
	}
	return EX_OK;
}

/*
 * What a failover of @name would do now (docs/failover.md, "How far back a
 * failover goes"): the same decision as the agent that would start it,
 * from the MANIFESTs on the shared storage (the files of the chosen
 * snapshot are checked only by that start). @line gets one line for
 * humans; returns the JSON object.
 */
static json_object *failover_now(const char *name, const struct ha_guest_def *def,
				 char *line, size_t len)
{
	json_object *o = json_object_new_object();
	struct ha_snap_choice ch;
	struct ha_config cfg;
	char err[512], max[64];
	uint64_t max_ms;
	int rc;

	if (def == NULL) {
		snprintf(line, len, "unknown: the definition does not parse");
		json_object_object_add(o, "action", json_object_new_string("unknown"));
		json_object_object_add(o, "reason", json_object_new_string(line));
		return o;
	}
	max_ms = ha_guestdef_failover_max_age_ms(def);
	ha_guestdef_failover_max_age_str(def, max, sizeof(max));
	json_object_object_add(o, "max_age_s", max_ms == HA_SNAP_AGE_UNLIMITED ? NULL :
			       json_object_new_int64((int64_t)(max_ms / 1000)));
	json_object_object_add(o, "max_age", json_object_new_string(max));
	if (def->restart != HA_RESTART_SNAPSHOT) {
		bool none = def->restart == HA_RESTART_NONE;

		snprintf(line, len, "%s (restart = %s)", none ? "stays stopped" : "cold start",
			 ha_restart_policy_str(def->restart));
		json_object_object_add(o, "action", json_object_new_string(none ? "none" : "cold"));
		json_object_object_add(o, "generation", NULL);
		json_object_object_add(o, "reason", json_object_new_string(line));
		return o;
	}
	if (cli_cfg_read(&cfg, err, sizeof(err)) < 0) {
		snprintf(line, len, "unknown: %s", err);
		json_object_object_add(o, "action", json_object_new_string("unknown"));
		json_object_object_add(o, "reason", json_object_new_string(line));
		return o;
	}
	rc = ha_snap_choose_stored(cfg.shared_dir, name, ha_wall_ms(),
				   max_ms, false, &ch);
	if (rc < 0) {
		snprintf(line, len, "unknown: %s", ch.why);
		json_object_object_add(o, "action", json_object_new_string("unknown"));
	} else if (ch.gen) {
		snprintf(line, len, "restore %s", ch.why);
		json_object_object_add(o, "action", json_object_new_string("snapshot"));
		json_object_object_add(o, "generation", json_object_new_int64((int64_t)ch.gen));
		json_object_object_add(o, "time_ms", json_object_new_int64((int64_t)ch.time_ms));
		json_object_object_add(o, "age_s", json_object_new_int64((int64_t)(ch.age_ms / 1000)));
	} else {
		snprintf(line, len, "cold start: %s", ch.why);
		json_object_object_add(o, "action", json_object_new_string("cold"));
		json_object_object_add(o, "generation", NULL);
	}
	json_object_object_add(o, "reason", json_object_new_string(ch.why));
	return o;
}

static void mib_cell(uint64_t bytes)
{
	char cell[32];

	snprintf(cell, sizeof(cell), "%.1f MiB", bytes / 1048576.0);
	printf(" %-11s", cell);
}

/* hactl show --limits: the cgroups' counters, like vzctl's beancounters
 * (held, peak, limit, failures); "-" where a kind has no such figure. */
static void limits_print(const Hactl__GuestRecord *g, const struct ha_guest_def *def)
{
	const Hactl__GuestLimits *l = g->limits;
	char cell[32];

	if (l == NULL) {
		printf("limits:     not reported (the guest does not run, or its agent reads no "
		       "cgroup counters)\n");
		return;
	}
	printf("limits:     %-10s %-11s %-11s %-11s %s\n", "", "held", "peak", "limit", "failures");
	printf("            %-10s", "memory");
	mib_cell(g->mem_bytes);
	mib_cell(l->mem_peak_bytes);
	if (l->mem_limit_bytes) {
		mib_cell(l->mem_limit_bytes);
	} else {
		printf(" %-11s", "none");
	}
	printf(" %" PRIu64 "\n", l->mem_failcnt);
	printf("            %-10s %-11u %-11s", "processes", l->pids, "-");
	snprintf(cell, sizeof(cell), "%" PRIu64, l->pids_limit);
	printf(" %-11s %" PRIu64 "\n", l->pids_limit ? cell : "none", l->pids_failcnt);
	snprintf(cell, sizeof(cell), "%u%%", def ? def->cpu_limit_pct : 0);
	printf("            %-10s %-11s %-11s %-11s throttled in %" PRIu64 " of %" PRIu64
	       " periods (%.1f s)\n", "cpu", "-", "-", def && def->cpu_limit_pct ? cell : "none",
	       l->cpu_throttled, l->cpu_periods, l->cpu_throttled_ns / 1e9);
}

int cli_cmd_show(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	struct ha_guest_def def;
	char err[256], fo_line[1024];
	json_object *fo;
	struct gopts o;
	bool have_def;
	int ex;

	ex = parse_opts(argc, argv, &o, "--limits");
	if (ex != EX_OK) {
		return ex;
	}
	ex = cli_status_guest(cli, o.name, &s, &g);
	if (ex != EX_OK) {
		return ex;
	}
	have_def = ha_guestdef_parse((const char *)g->definition.data, g->definition.len, g->name,
				     &def, err, sizeof(err)) == 0;
	fo = failover_now(g->name, have_def ? &def : NULL, fo_line, sizeof(fo_line));
	if (cli->json) {
		json_object *j = cli_guest_json(s, g);

		json_object_object_add(j, "failover", fo);
		cli_json_print(j);
		ha_env_msg_free(&s->base);
		return EX_OK;
	}
	json_object_put(fo);
	printf("name:       %s (%s)\n", g->name, g->type);
	printf("state:      %s (desired %s)\n", cli_guest_state(s, g), cli_guest_desired(g));
	printf("node:       %s, generation %" PRIu64 "\n", g->owner ? cli_node_name(s, g->owner) : "-",
	       g->generation);
	if (have_def) {
		char max[64];

		ha_guestdef_failover_max_age_str(&def, max, sizeof(max));
		printf("ip:         %s\n", def.ip[0] ? def.ip : "-");
		printf("limits:     memory %" PRIu64 " MiB, cpus %u, cpu weight %u, cpu limit %u%%, pids %u\n",
		       def.mem_kib / 1024, def.cpus, def.cpu_weight, def.cpu_limit_pct, def.pids_max);
		printf("ha:         restart %s, priority %u, snapshot every %u s, keep %u, "
		       "failover snapshot max age %s\n",
		       ha_restart_policy_str(def.restart), def.priority, def.snapshot_interval_s,
		       def.snapshot_keep, max);
		printf("failures:   %u restarts here (max_restart %u), %u relocations "
		       "(max_relocate %u)%s\n", g->restarts, def.max_restart, g->relocations,
		       def.max_relocate, g->restart_error ? "; state error until hactl start" : "");
	}
	if (g->mem_bytes || g->cpu_ns) {
		printf("usage:      memory %.1f MiB, cpu %.1f s, now %.2f CPUs\n",
		       g->mem_bytes / 1048576.0, g->cpu_ns / 1e9, g->cpu_milli / 1000.0);
	}
	if (g->has_disk_size_bytes && g->disk_size_bytes) {
		printf("disk:       %.1f MiB of %.1f MiB used (%.0f%%, writable layer)\n",
		       g->disk_used_bytes / 1048576.0, g->disk_size_bytes / 1048576.0,
		       100.0 * (double)g->disk_used_bytes / (double)g->disk_size_bytes);
	}
	if (g->snap_generation) {
		time_t t = (time_t)(g->snap_time_ms / 1000);
		char when[64];

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
		printf("snapshot:   generation %" PRIu64 " at %s\n", g->snap_generation, when);
	}
	printf("failover:   %s\n", fo_line);
	if (g->note && g->note[0]) {
		printf("note:       %s\n", g->note);
	}
	if (g->error && g->error[0]) {
		printf("error:      %s\n", g->error);
	}
	if (o.limits) {
		limits_print(g, have_def ? &def : NULL);
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

/* After `hactl snapshot --failover-point`: how long the snapshot stays one
 * that a failover restores, by the guest's definition. */
static void failover_point_note(struct cli *cli, const char *name, char *buf, size_t len)
{
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	struct ha_guest_def def;
	char err[256];
	uint64_t max;

	buf[0] = 0;
	if (cli_get_status(cli, NULL, &s) != EX_OK) {
		return;
	}
	g = cli_find_guest(s, name);
	if (g && ha_guestdef_parse((const char *)g->definition.data, g->definition.len, g->name,
				   &def, err, sizeof(err)) == 0) {
		max = ha_guestdef_failover_max_age_ms(&def);
		if (def.restart != HA_RESTART_SNAPSHOT) {
			snprintf(buf, len, "no failover restores it: restart = %s",
				 ha_restart_policy_str(def.restart));
		} else if (max == 0) {
			snprintf(buf, len, "no failover restores it: failover_snapshot_max_age is "
				 "auto and snapshot_interval is 0; set failover_snapshot_max_age");
		} else if (max == HA_SNAP_AGE_UNLIMITED) {
			snprintf(buf, len, "a failover restores it, at any age, until a newer "
				 "failover point exists");
		} else {
			snprintf(buf, len, "a failover restores it for %" PRIu64 " s "
				 "(failover_snapshot_max_age), until a newer failover point exists",
				 max / 1000);
		}
	}
	ha_env_msg_free(&s->base);
}

int cli_cmd_snapshot(struct cli *cli, int argc, char **argv)
{
	Hactl__ActionRequest req = HACTL__ACTION_REQUEST__INIT;
	Hactl__AgentAction a = HACTL__AGENT_ACTION__INIT;
	ProtobufCMessage *reply = NULL;
	uint64_t t0 = ha_mono_ms();
	struct gopts o;
	char note[256] = "", what[128];
	int ex = parse_opts(argc, argv, &o, "--failover-point --timeout");

	if (ex != EX_OK) {
		return ex;
	}
	/* an action waits for the coordinator's verdict (cli_call), unless
	 * --timeout asks for less */
	if (o.timeout_set) {
		cli->wait_ms = o.timeout_s * 1000;
	}
	snprintf(what, sizeof(what), "snapshot of %s", o.name);
	cli->progress = what;
	a.kind = "snapshot";
	a.guest = (char *)o.name;
	a.has_failover_point = o.failover_point;
	a.failover_point = o.failover_point;
	req.action = &a;
	ex = cli_call(cli, HA_MSG_ACTION_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	if (ex == EX_OK) {
		Hactl__Result *r = (Hactl__Result *)reply;
		uint64_t ms = ha_mono_ms() - t0;

		if (o.failover_point) {
			failover_point_note(cli, o.name, note, sizeof(note));
		}
		if (cli->json) {
			json_object *j = json_object_new_object();

			json_object_object_add(j, "name", json_object_new_string(o.name));
			json_object_object_add(j, "generation", json_object_new_int64((int64_t)r->value));
			json_object_object_add(j, "kind", json_object_new_string(
				ha_snap_kind_str(o.failover_point ? HA_SNAP_KIND_FAILOVER :
						 HA_SNAP_KIND_MANUAL)));
			json_object_object_add(j, "ms", json_object_new_int64((int64_t)ms));
			if (note[0]) {
				json_object_object_add(j, "note", json_object_new_string(note));
			}
			cli_json_print(j);
		} else {
			printf("%s: snapshot generation %" PRIu64 " written (%" PRIu64 " ms), %s\n",
			       o.name, r->value, ms, o.failover_point ?
			       "a failover point" : "manual: not a failover point");
			if (note[0]) {
				printf("%s: %s\n", o.name, note);
			}
		}
	}
	ha_env_msg_free(reply);
	return ex;
}

int cli_cmd_restore(struct cli *cli, int argc, char **argv)
{
	struct gopts o;
	struct ha_config cfg;
	Hactl__StatusReply *s = NULL;
	const Hactl__GuestRecord *g;
	uint64_t gens[256], gen = 0, t = 0;
	char err[1024], *def = NULL;
	size_t def_len = 0;
	int n, ex = parse_opts(argc, argv, &o, "--node --generation --no-wait --timeout");

	if (ex != EX_OK) {
		return ex;
	}
	ex = cli_load_cfg(&cfg);
	if (ex != EX_OK) {
		return ex;
	}
	/* Refuse a torn or corrupt snapshot before anything changes. */
	if (o.generation) {
		if (ha_snap_verify(cfg.shared_dir, o.name, o.generation, &t, err, sizeof(err)) < 0) {
			fprintf(stderr, "hactl: %s\n", err);
			return EX_FAIL;
		}
		gen = o.generation;
	} else {
		n = ha_snap_list(cfg.shared_dir, o.name, gens, HA_ARRAY_SIZE(gens));
		for (int i = 0; i < n && gen == 0; i++) {
			if (ha_snap_verify(cfg.shared_dir, o.name, gens[i], &t, err, sizeof(err)) == 0) {
				gen = gens[i];
			} else {
				fprintf(stderr, "hactl: skipping: %s\n", err);
			}
		}
		if (gen == 0) {
			fprintf(stderr, "hactl: no good snapshot of '%s' in %s\n", o.name, cfg.shared_dir);
			return n <= 0 ? EX_UNKNOWN : EX_FAIL;
		}
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	g = cli_find_guest(s, o.name);
	if (g == NULL &&
	    ha_snap_read_definition(cfg.shared_dir, o.name, gen, &def, &def_len) < 0) {
		fprintf(stderr, "hactl: snapshot %" PRIu64 " of '%s' has no definition\n", gen, o.name);
		ha_env_msg_free(&s->base);
		return EX_FAIL;
	}
	ha_env_msg_free(&s->base);
	if (!cli->json) {
		printf("restoring %s from snapshot generation %" PRIu64 " (taken %" PRIu64 " s ago)\n",
		       o.name, gen, (ha_wall_ms() - t) / 1000);
	}
	ex = start_common(cli, &o, "snapshot", gen, def, def_len);
	free(def);
	return ex;
}
