/*
 * hactl.c - the command line. Talks to the local ha-coordinator over libqb
 * IPC; human tables by default, --json for scripts.
 *
 * Exit status: 0 ok, 1 the cluster refused or failed, 2 bad arguments,
 * 3 no coordinator (or permission denied), 4 partition not quorate,
 * 5 unknown name.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "guestdef.h"
#include "hactl_states.h"
#include "ipc.h"
#include "proto/hactl.pb-c.h"
#include "util.h"

#include "cli.h"
#include "cmd_balance.h"

/* ---- JSON ---- */

static json_object *json_facts(const Hactl__HostFacts *f)
{
	json_object *o = json_object_new_object();
	json_object *rdma = json_object_new_array();

	json_object_object_add(o, "cpus", json_object_new_int64(f->cpus));
	json_object_object_add(o, "mem_total_kib", json_object_new_int64((int64_t)f->mem_total_kib));
	json_object_object_add(o, "kvm_present", json_object_new_boolean(f->kvm_present));
	json_object_object_add(o, "kvm_usable", json_object_new_boolean(f->kvm_usable));
	json_object_object_add(o, "criu_present", json_object_new_boolean(f->criu_present));
	json_object_object_add(o, "criu_version", json_object_new_string(f->criu_version ? f->criu_version : ""));
	json_object_object_add(o, "criu_mem_dirty_track", json_object_new_boolean(f->criu_mem_dirty_track));
	json_object_object_add(o, "criu_lazy_pages", json_object_new_boolean(f->criu_lazy_pages));
	json_object_object_add(o, "qemu_version", json_object_new_string(f->qemu_version ? f->qemu_version : ""));
	for (size_t i = 0; i < f->n_rdma_devices; i++) {
		json_object_array_add(rdma, json_object_new_string(f->rdma_devices[i]));
	}
	json_object_object_add(o, "rdma_devices", rdma);
	json_object_object_add(o, "kernel", json_object_new_string(f->kernel ? f->kernel : ""));
	json_object_object_add(o, "agent_version", json_object_new_string(f->agent_version ? f->agent_version : ""));
	json_object_object_add(o, "migration_address",
			       json_object_new_string(f->migration_address ? f->migration_address : ""));
	return o;
}

static json_object *json_usage(const Hactl__HostUsage *u)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "time_ms", json_object_new_int64((int64_t)u->time_ms));
	json_object_object_add(o, "cpu_permille", json_object_new_int64(u->cpu_permille));
	json_object_object_add(o, "mem_used_kib", json_object_new_int64((int64_t)u->mem_used_kib));
	json_object_object_add(o, "mem_avail_kib", json_object_new_int64((int64_t)u->mem_avail_kib));
	json_object_object_add(o, "load1", json_object_new_double(u->load1_centi / 100.0));
	json_object_object_add(o, "guests_running", json_object_new_int64(u->guests_running));
	return o;
}

static json_object *json_node(const Hactl__NodeStatus *n)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(n->name));
	json_object_object_add(o, "id", json_object_new_int64(n->id));
	json_object_object_add(o, "state", json_object_new_string(n->state));
	json_object_object_add(o, "leader", json_object_new_boolean(n->is_leader));
	json_object_object_add(o, "local", json_object_new_boolean(n->is_local));
	json_object_object_add(o, "member", json_object_new_boolean(n->member));
	json_object_object_add(o, "agent", json_object_new_boolean(n->agent_connected));
	json_object_object_add(o, "maintenance", json_object_new_boolean(n->maintenance));
	json_object_object_add(o, "fence_state", json_object_new_string(n->fence_state ?
			       n->fence_state : ha_fence_state_str(HACTL__FENCE_STATE__FENCE_IDLE)));
	json_object_object_add(o, "fence_error", json_object_new_string(n->fence_error ? n->fence_error : ""));
	json_object_object_add(o, "fence_attempts", json_object_new_int64(n->fence_attempts));
	json_object_object_add(o, "facts", n->facts ? json_facts(n->facts) : NULL);
	json_object_object_add(o, "usage", n->usage ? json_usage(n->usage) : NULL);
	return o;
}

static json_object *json_guests(const Hactl__StatusReply *s)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < s->n_guests; i++) {
		json_object_array_add(a, cli_guest_json(s, s->guests[i]));
	}
	return a;
}

static json_object *json_status(const Hactl__StatusReply *s)
{
	json_object *o = json_object_new_object();
	json_object *nodes = json_object_new_array();

	json_object_object_add(o, "quorate", json_object_new_boolean(s->quorate));
	json_object_object_add(o, "leader", s->leader && s->leader[0] ?
			       json_object_new_string(s->leader) : NULL);
	json_object_object_add(o, "leader_id", json_object_new_int64(s->leader_id));
	json_object_object_add(o, "local_node", json_object_new_string(s->local_node ? s->local_node : ""));
	json_object_object_add(o, "local_id", json_object_new_int64(s->local_id));
	json_object_object_add(o, "seq", json_object_new_int64((int64_t)s->seq));
	json_object_object_add(o, "expected_votes", json_object_new_int64(s->expected_votes));
	json_object_object_add(o, "total_votes", json_object_new_int64(s->total_votes));
	json_object_object_add(o, "quorum", json_object_new_int64(s->quorum));
	json_object_object_add(o, "corosync_connected", json_object_new_boolean(s->corosync_connected));
	json_object_object_add(o, "syncing", json_object_new_boolean(s->syncing));
	json_object_object_add(o, "protocol", json_object_new_int64(s->proto_version));
	json_object_object_add(o, "rx_rejected", json_object_new_int64((int64_t)s->rx_rejected));
	json_object_object_add(o, "agent_kicks", json_object_new_int64((int64_t)s->agent_kicks));
	json_object_object_add(o, "state_current", json_object_new_boolean(s->state_current));
	for (size_t i = 0; i < s->n_nodes; i++) {
		json_object_array_add(nodes, json_node(s->nodes[i]));
	}
	json_object_object_add(o, "nodes", nodes);
	json_object_object_add(o, "guests", json_guests(s));
	{
		json_object *al = json_object_new_array();

		for (size_t i = 0; i < s->n_alarms; i++) {
			json_object_array_add(al, json_object_new_string(s->alarms[i]));
		}
		json_object_object_add(o, "alarms", al);
	}
	return o;
}

/* ---- tables ---- */

static void print_node_table(const Hactl__StatusReply *s)
{
	printf("%-12s %4s  %-12s %-6s %6s %17s  %-5s %s\n", "NODE", "ID", "STATE",
	       "AGENT", "CPU%", "MEM USED/TOTAL", "KVM", "CRIU");
	for (size_t i = 0; i < s->n_nodes; i++) {
		const Hactl__NodeStatus *n = s->nodes[i];
		char cpu[16] = "-", mem[32] = "-";

		if (n->usage && n->member) {
			snprintf(cpu, sizeof(cpu), "%.1f", n->usage->cpu_permille / 10.0);
		}
		if (n->usage && n->facts && n->member) {
			snprintf(mem, sizeof(mem), "%.1f/%.1f GiB",
				 n->usage->mem_used_kib / 1048576.0,
				 n->facts->mem_total_kib / 1048576.0);
		}
		char state[48];
		/* an offline node's fencing, e.g. "offline/fencing" */
		int fs = ha_fence_state_from_str(n->fence_state);
		bool fencing = n->fence_state && fs != HACTL__FENCE_STATE__FENCE_IDLE &&
			       ha_node_state_from_str(n->state) != HACTL__NODE_STATE__NODE_ONLINE;

		snprintf(state, sizeof(state), "%s%s%s", n->state, fencing ? "/" : "",
			 fencing ? n->fence_state : "");
		printf("%-12s %4u  %-12s %-6s %6s %17s  %-5s %s%s%s\n", n->name, n->id,
		       state, n->agent_connected ? "yes" : "no", cpu, mem,
		       n->facts ? (n->facts->kvm_usable ? "yes" : "no") : "-",
		       n->facts ? (n->facts->criu_present ? n->facts->criu_version : "no") : "-",
		       n->is_leader ? "  (leader)" : "", n->is_local ? "  (local)" : "");
	}
}

static void print_guest_table(const Hactl__StatusReply *s)
{
	if (s->n_guests == 0) {
		printf("no guests\n");
		return;
	}
	printf("%-20s %-10s %-10s %-9s %-10s %s\n", "GUEST", "TYPE", "STATE", "DESIRED",
	       "NODE", "IP");
	for (size_t i = 0; i < s->n_guests; i++) {
		const Hactl__GuestRecord *g = s->guests[i];
		struct ha_guest_def def;
		char err[256];

		if (ha_guestdef_parse((const char *)g->definition.data, g->definition.len,
				      g->name, &def, err, sizeof(err)) < 0) {
			def.ip[0] = 0;
		}
		printf("%-20s %-10s %-10s %-9s %-10s %s\n", g->name, g->type ? g->type : "",
		       cli_guest_state(s, g), cli_guest_desired(g),
		       cli_node_name(s, g->owner), def.ip[0] ? def.ip : "-");
	}
}

/* ---- commands ---- */

static int cmd_status(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	int ex;

	if (argc != 1) {
		return cli_usage_error("status takes no arguments (got '%s')", argv[1]);
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	if (cli->json) {
		cli_json_print(json_status(s));
	} else {
		printf("cluster:   %s, leader %s, protocol %u%s\n",
		       s->quorate ? "quorate" : "NOT QUORATE",
		       s->leader && s->leader[0] ? s->leader : "none", s->proto_version,
		       s->corosync_connected ? "" : " (corosync not reachable)");
		printf("votes:     %u of %u expected, quorum %u\n", s->total_votes,
		       s->expected_votes, s->quorum);
		printf("local:     %s (id %u), state seq %llu%s\n",
		       s->local_node && s->local_node[0] ? s->local_node : "?", s->local_id,
		       (unsigned long long)s->seq,
		       s->syncing ? ", syncing" : s->state_current ? "" : ", not known current");
		for (size_t i = 0; i < s->n_alarms; i++) {
			printf("ALARM:     %s\n", s->alarms[i]);
		}
		printf("\n");
		print_node_table(s);
		printf("\n");
		print_guest_table(s);
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

static int cmd_nodes(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	const char *node = argc > 1 ? argv[1] : NULL;
	int ex;

	if (argc > 2) {
		return cli_usage_error("nodes takes at most one node name (got '%s')", argv[2]);
	}
	ex = cli_get_status(cli, node, &s);
	if (ex != EX_OK) {
		return ex;
	}
	if (cli->json) {
		if (node) {
			cli_json_print(s->n_nodes ? json_node(s->nodes[0]) : json_object_new_object());
		} else {
			json_object *a = json_object_new_array();

			for (size_t i = 0; i < s->n_nodes; i++) {
				json_object_array_add(a, json_node(s->nodes[i]));
			}
			cli_json_print(a);
		}
	} else if (node && s->n_nodes == 1) {
		const Hactl__NodeStatus *n = s->nodes[0];

		printf("name:      %s (id %u)%s%s\n", n->name, n->id,
		       n->is_leader ? ", leader" : "", n->is_local ? ", local" : "");
		printf("state:     %s\n", n->state);
		printf("agent:     %s\n", n->agent_connected ? "connected" : "not connected");
		if (n->facts) {
			const Hactl__HostFacts *f = n->facts;

			printf("cpus:      %u\nmemory:    %.1f GiB\nkernel:    %s\n", f->cpus,
			       f->mem_total_kib / 1048576.0, f->kernel ? f->kernel : "?");
			printf("kvm:       %s\n", f->kvm_usable ? "usable" :
			       f->kvm_present ? "present, not usable (TCG)" : "absent (TCG)");
			printf("criu:      %s%s%s\n", f->criu_present ? f->criu_version : "absent",
			       f->criu_mem_dirty_track ? ", pre-copy" : "",
			       f->criu_lazy_pages ? ", post-copy" : "");
			printf("qemu:      %s\n", f->qemu_version ? f->qemu_version : "absent");
			printf("migration: %s\n", f->migration_address && f->migration_address[0] ?
			       f->migration_address : "the cluster address");
			printf("rdma:      ");
			for (size_t i = 0; i < f->n_rdma_devices; i++) {
				printf("%s%s", i ? ", " : "", f->rdma_devices[i]);
			}
			printf("%s\n", f->n_rdma_devices ? "" : "none");
		}
		if (n->usage && n->member) {
			printf("cpu use:   %.1f %%\nmem used:  %.1f GiB\nload:      %.2f\n",
			       n->usage->cpu_permille / 10.0,
			       n->usage->mem_used_kib / 1048576.0,
			       n->usage->load1_centi / 100.0);
		}
	} else {
		print_node_table(s);
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

static int cmd_guests(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	int ex;

	if (argc != 1) {
		return cli_usage_error("guests takes no arguments (got '%s')", argv[1]);
	}
	ex = cli_get_status(cli, NULL, &s);
	if (ex != EX_OK) {
		return ex;
	}
	if (cli->json) {
		cli_json_print(json_guests(s));
	} else {
		print_guest_table(s);
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

static int cmd_maintenance(struct cli *cli, int argc, char **argv)
{
	Hactl__ChangeRequest req = HACTL__CHANGE_REQUEST__INIT;
	Hactl__Change ch = HACTL__CHANGE__INIT;
	Hactl__MaintenanceChange m = HACTL__MAINTENANCE_CHANGE__INIT;
	ProtobufCMessage *reply = NULL;
	Hactl__Result *r;
	bool ret = false;
	const char *pos[2];
	int np = 0, ex;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--return") == 0) {
			ret = true;
		} else if (argv[i][0] == '-' || np == 2) {
			return cli_usage_error("usage: hactl maintenance on|off NODE [--return]%s", "");
		} else {
			pos[np++] = argv[i];
		}
	}
	if (np != 2 || (strcmp(pos[0], "on") != 0 && strcmp(pos[0], "off") != 0) ||
	    (ret && strcmp(pos[0], "off") != 0)) {
		return cli_usage_error("usage: hactl maintenance on|off NODE, or maintenance off "
				       "NODE --return%s", "");
	}
	m.node = (char *)pos[1];
	m.on = strcmp(pos[0], "on") == 0;
	ch.kind_case = HACTL__CHANGE__KIND_MAINTENANCE;
	ch.maintenance = &m;
	req.change = &ch;
	ex = cli_call(cli, HA_MSG_CHANGE_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	r = (Hactl__Result *)reply;
	if (r && cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "ok", json_object_new_boolean(r->code == 0));
		json_object_object_add(o, "code", json_object_new_int(r->code));
		json_object_object_add(o, "message", json_object_new_string(r->message ? r->message : ""));
		json_object_object_add(o, "seq", json_object_new_int64((int64_t)r->seq));
		cli_json_print(o);
	} else if (r && r->code == 0) {
		printf("node %s: maintenance %s (state seq %llu)\n", m.node, pos[0],
		       (unsigned long long)r->seq);
	}
	/* --return after the node is back in service already: the return
	 * alone (a second run finds nothing left to bring back) */
	if (ret && r && r->code == -EALREADY) {
		ex = EX_OK;
	}
	ha_env_msg_free(reply);
	if (ex == EX_OK && ret) {
		ex = cli_return_guests(cli, m.node);
	}
	return ex;
}

struct command {
	const char *name;
	int (*fn)(struct cli *cli, int argc, char **argv);
};

static int cmd_events(struct cli *cli, int argc, char **argv)
{
	Hactl__StatusReply *s = NULL;
	int ex = cli_get_status(cli, NULL, &s);

	if (ex != EX_OK) {
		return ex;
	}
	if (cli->json) {
		json_object *a = json_object_new_array();

		for (size_t i = 0; i < s->n_events; i++) {
			json_object_array_add(a, json_object_new_string(s->events[i]));
		}
		cli_json_print(a);
	} else {
		for (size_t i = 0; i < s->n_events; i++) {
			printf("%s\n", s->events[i]);
		}
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

static int cmd_fence(struct cli *cli, int argc, char **argv)
{
	Hactl__FenceRequest req = HACTL__FENCE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	const char *node = NULL;
	int ex;

	char what[128];
	uint32_t v;

	/* no give-up of our own: the fence agents' own time-outs bound the
	 * job, and the coordinator answers when it ends */
	cli->wait_ms = 86400u * 1000u;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--confirm") == 0) {
			req.has_confirm = true;
			req.confirm = true;
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			if (cli_opt_timeout(argv[++i], &v) != EX_OK) {
				return EX_USAGE;
			}
			cli->wait_ms = v * 1000u;
		} else if (argv[i][0] == '-' || node) {
			return cli_usage_error("usage: hactl fence [--confirm] [--timeout S] NODE%s", "");
		} else {
			node = argv[i];
		}
	}
	if (node == NULL) {
		return cli_usage_error("usage: hactl fence [--confirm] NODE%s", "");
	}
	req.node = (char *)node;
	snprintf(what, sizeof(what), "%s %s", req.confirm ? "confirming" : "fencing", node);
	cli->progress = what;
	ex = cli_call(cli, HA_MSG_FENCE_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	if (ex == EX_OK) {
		Hactl__Result *r = (Hactl__Result *)reply;

		if (cli->json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "node", json_object_new_string(node));
			json_object_object_add(o, "fenced", json_object_new_boolean(1));
			json_object_object_add(o, "confirmed", json_object_new_boolean(req.confirm));
			json_object_object_add(o, "message", json_object_new_string(r->message ? r->message : ""));
			cli_json_print(o);
		} else if (req.confirm) {
			printf("%s confirmed off and marked fenced: %s\n", node,
			       r->message ? r->message : "");
		} else {
			printf("%s fenced: %s\n", node, r->message ? r->message : "");
		}
	}
	ha_env_msg_free(reply);
	return ex;
}

static int cmd_unblock(struct cli *cli, int argc, char **argv)
{
	Hactl__UnblockRequest req = HACTL__UNBLOCK_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int ex;

	if (argc != 1) {
		return cli_usage_error("usage: hactl unblock%s", "");
	}
	ex = cli_call(cli, HA_MSG_UNBLOCK_REQUEST, &req.base, HA_MSG_RESULT, &reply);
	if (ex == EX_OK) {
		Hactl__Result *r = (Hactl__Result *)reply;

		if (cli->json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "unblocked", json_object_new_boolean(1));
			json_object_object_add(o, "message", json_object_new_string(r->message ? r->message : ""));
			cli_json_print(o);
		} else {
			printf("%s\n", r->message ? r->message : "unblocked");
		}
	}
	ha_env_msg_free(reply);
	return ex;
}

static int cmd_simulate(struct cli *cli, int argc, char **argv)
{
	return hactl_cmd_simulate(argc, argv, cli->json);
}

static int cmd_guest_reference(struct cli *cli, int argc, char **argv)
{
	ha_guestdef_print_reference(stdout);
	return EX_OK;
}

static int cmd_policy_reference(struct cli *cli, int argc, char **argv)
{
	ha_bal_policy_options_markdown(stdout);
	return EX_OK;
}

static int cmd_help(struct cli *cli, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--markdown") == 0) {
		cli_help_markdown(stdout);
		return EX_OK;
	}
	if (argc > 2) {
		return cli_usage_error("usage: hactl help [COMMAND]%s", "");
	}
	if (argc == 1) {
		cli_help_usage(stdout);
		return EX_OK;
	}
	if (cli_help_command(stdout, argv[1]) < 0) {
		return cli_usage_error("unknown command '%s'", argv[1]);
	}
	return EX_OK;
}

static const struct command commands[] = {
	{ "definition-reference", cmd_guest_reference },
	{ "policy-reference", cmd_policy_reference },
	{ "complete", cli_cmd_complete },
	{ "status", cmd_status },
	{ "nodes", cmd_nodes },
	{ "guests", cmd_guests },
	{ "list", cmd_guests },
	{ "maintenance", cmd_maintenance },
	{ "check", cli_cmd_check },
	{ "create", cli_cmd_create },
	{ "start", cli_cmd_start },
	{ "stop", cli_cmd_stop },
	{ "restart", cli_cmd_restart },
	{ "pause", cli_cmd_pause },
	{ "resume", cli_cmd_resume },
	{ "destroy", cli_cmd_destroy },
	{ "show", cli_cmd_show },
	{ "exec", cli_cmd_exec },
	{ "enter", cli_cmd_enter },
	{ "console", cli_cmd_console },
	{ "snapshot", cli_cmd_snapshot },
	{ "restore", cli_cmd_restore },
	{ "simulate", cmd_simulate },
	{ "events", cmd_events },
	{ "migrate", cli_cmd_migrate },
	{ "evacuate", cli_cmd_evacuate },
	{ "jobs", cli_cmd_jobs },
	{ "balance", cli_cmd_balance },
	{ "fence", cmd_fence },
	{ "help", cmd_help },
	{ "unblock", cmd_unblock },
};

static const char *const exit_names[] = {
	[EX_OK] = "ok", [EX_FAIL] = "failed", [EX_USAGE] = "usage",
	[EX_NODAEMON] = "no-coordinator", [EX_NOQUORUM] = "no-quorum",
	[EX_UNKNOWN] = "unknown-name",
};

/*
 * --json: what the commands write on stderr ("hactl: ..." lines) is kept
 * in a memory file while they run. On failure it becomes one JSON object
 * on stderr, {"error": {"code": EXIT, "kind": ..., "message": ...}} (the
 * lines without "hactl: " and the help hint, joined by "; "), docs/cli.md;
 * on success the lines pass through as they were.
 */
static int json_err_begin(void)
{
	int keep, mem;

	fflush(stderr);
	mem = memfd_create("hactl-stderr", MFD_CLOEXEC);
	keep = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (mem < 0 || keep < 0 || dup2(mem, STDERR_FILENO) < 0) {
		if (mem >= 0) {
			close(mem);
		}
		if (keep >= 0) {
			close(keep);
		}
		return -1;
	}
	close(mem);
	return keep;
}

static void json_err_end(int keep, int ex)
{
	char *text = NULL, *line, *save = NULL;
	struct stat st;
	size_t len = 0;
	FILE *out;

	fflush(stderr);
	if (fstat(STDERR_FILENO, &st) == 0 && st.st_size > 0 && st.st_size < (1 << 20)) {
		text = calloc(1, (size_t)st.st_size + 1);
		len = text ? (size_t)pread(STDERR_FILENO, text, (size_t)st.st_size, 0) : 0;
		if (text && (ssize_t)len < 0) {
			len = 0;
		}
	}
	dup2(keep, STDERR_FILENO);
	close(keep);
	if (ex == EX_OK) {
		if (len) {
			fwrite(text, 1, len, stderr);
		}
		free(text);
		return;
	}
	out = open_memstream(&line, &(size_t){ 0 });
	for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && out;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "hactl: ", 7) == 0) {
			l += 7;
		}
		if (l[0] == 0 || strncmp(l, "(see hactl --help", 17) == 0) {
			continue;
		}
		fprintf(out, "%s%s", ftell(out) > 0 ? "; " : "", l);
	}
	free(text);
	if (out) {
		json_object *j = json_object_new_object(), *e = json_object_new_object();

		fclose(out);
		json_object_object_add(e, "code", json_object_new_int(ex));
		json_object_object_add(e, "kind", json_object_new_string(
			ex > 0 && ex < (int)HA_ARRAY_SIZE(exit_names) ? exit_names[ex] : "failed"));
		json_object_object_add(e, "message", json_object_new_string(line[0] ? line :
			"failed"));
		json_object_object_add(j, "error", e);
		fprintf(stderr, "%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
									    JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
		free(line);
	}
}

static int run(struct cli *cli, int n, char **args, bool help)
{
	int ex;

	if (help) {
		if (n == 0) {
			cli_help_usage(stdout);
			return EX_OK;
		}
		if (cli_help_command(stdout, args[0]) < 0) {
			return cli_usage_error("unknown command '%s'", args[0]);
		}
		return EX_OK;
	}
	if (n == 0) {
		cli_help_usage(stderr);
		return EX_USAGE;
	}
	for (size_t i = 0; i < HA_ARRAY_SIZE(commands); i++) {
		if (strcmp(args[0], commands[i].name) != 0) {
			continue;
		}
		ex = commands[i].fn(cli, n, args);
		if (cli->conn) {
			qb_ipcc_disconnect(cli->conn);
		}
		return ex;
	}
	return cli_usage_error("unknown command '%s'", args[0]);
}

/*
 * Global options may appear anywhere; "--opt=value" is split into "--opt"
 * "value"; -h/--help after a command asks for that command's help. Nothing
 * connects here: commands connect at their first request (cli_call).
 */
static int parse_and_run(struct cli *cli, int argc, char **argv)
{
	char *args[64];
	bool help = false;
	int n = 0;

	for (int i = 1; i < argc; i++) {
		char *eq = argv[i][0] == '-' && argv[i][1] == '-' ? strchr(argv[i], '=') : NULL;

		if (n > 0 && strcmp(argv[i], "--") == 0) {
			/* a command's own arguments (hactl exec NAME -- CMD ...):
			 * passed on as they are, none of them hactl's */
			if (n + (argc - i) >= (int)HA_ARRAY_SIZE(args)) {
				return cli_usage_error("too many arguments%s", "");
			}
			while (i < argc) {
				args[n++] = argv[i++];
			}
			break;
		}
		if (strcmp(argv[i], "--json") == 0) {
			cli->json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			help = true;
		} else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
			printf("hactl %s\n", HA_VERSION);
			return EX_OK;
		} else if (argv[i][0] == '-' && argv[i][1] != 0 && n == 0) {
			return cli_usage_error("unknown option '%s'", argv[i]);
		} else if (n >= (int)HA_ARRAY_SIZE(args) - 2) {
			return cli_usage_error("too many arguments%s", "");
		} else if (eq != NULL && eq > argv[i] + 2) {
			*eq = '\0';
			args[n++] = argv[i];
			args[n++] = eq + 1;
		} else {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;
	return run(cli, n, args, help);
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	int ex, keep = -1;

	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			keep = json_err_begin();
			break;
		}
	}
	ex = parse_and_run(&cli, argc, argv);
	if (keep >= 0) {
		json_err_end(keep, ex);
	}
	return ex;
}
