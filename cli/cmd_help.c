/*
 * cmd_help.c - what every hactl command does, its options and an example:
 * one table that `hactl --help`, `hactl CMD --help`, `hactl help CMD` and
 * `hactl help --markdown` (docs/cli.md's command reference) all print, so
 * that the help and the manual cannot drift apart. tests/check-cli-doc
 * checks that every option a command parses is in its entry and that
 * docs/cli.md holds the markdown as printed.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util.h"

struct help_opt {
	const char *opt;  /* "--node N" */
	const char *text;
};

struct help_cmd {
	const char *name;
	const char *group;
	const char *synopsis; /* after "hactl " */
	const char *summary;  /* one line, for hactl --help */
	const char *text;     /* what it does, for hactl CMD --help */
	struct help_opt opts[12];
	const char *example;
};

#define WAIT_OPTS                                                                  \
	{ "--no-wait", "return once the cluster accepted the request" },          \
	{ "--timeout S", "give up waiting after S seconds (default 180; 1..86400)" }

static const struct help_cmd cmds[] = {
	{ "status", "cluster", "status", "quorum, leader, nodes, guests, alarms",
	  "Shows the partition's quorum and leader, every node with its state, agent, "
	  "usage and capabilities, every guest, and the alarms in force.",
	  { { NULL, NULL } }, "hactl status --json | jq .leader" },
	{ "nodes", "cluster", "nodes [NODE]", "nodes (or one node in detail)",
	  "Lists the nodes, or shows one node with its facts and fencing state.",
	  { { NULL, NULL } }, "hactl nodes node2" },
	{ "guests", "cluster", "guests", "guests and where they run (also: list)",
	  "Lists every guest: type, state, desired state, node and address.",
	  { { NULL, NULL } }, "hactl guests" },
	{ "maintenance", "cluster", "maintenance on|off NODE [--return]",
	  "take a node out of (or back into) service",
	  "A node in maintenance takes no new guests (balancing moves none to it); the guests "
	  "on it stay, unless periodic balancing is on (a policy with enabled = yes): "
	  "its rounds move them away (docs/balancing.md). 'hactl evacuate' moves them "
	  "away at once. A node that "
	  "runs no guest is not fenced when it goes down (a reboot to patch it): it "
	  "rejoins as it is. With --return, 'off' also brings back, live, the guests "
	  "that evacuations moved off the node.",
	  { { "--return", "after 'off': migrate the guests evacuated from NODE back to it" },
	    { NULL, NULL } },
	  "hactl maintenance off node2 --return" },
	{ "fence", "cluster", "fence [--confirm] [--timeout S] NODE",
	  "power a node off now; --confirm: you made sure it is off",
	  "Runs the node's fence levels (fence.conf) with action off and waits for the "
	  "result, however long the devices take (each call is bounded by fence.conf's "
	  "timeout), showing the time spent on a terminal. With --confirm no device is run: you state that you have made sure "
	  "the node is off (powered down, disconnected), and the leader records it fenced "
	  "and recovers its guests (Pacemaker's stonith_admin --confirm). A wrong "
	  "confirmation can run a guest twice.",
	  { { "--confirm", "mark NODE fenced without running a device (it is off: you checked)" },
	    { "--timeout S", "stop waiting after S seconds (1..86400); the fencing goes on" },
	    { NULL, NULL } },
	  "hactl fence --confirm node3" },
	{ "events", "cluster", "events", "recent history: membership, commits, fencing",
	  "Prints the leader's recent events, oldest first.",
	  { { NULL, NULL } }, "hactl events | tail" },
	{ "unblock", "cluster", "unblock",
	  "act on the newest state held although none is known current",
	  "Coordinators that start from a state file wait until they have synced with a "
	  "member holding current state (docs/failover.md). When you know that no newer "
	  "state exists anywhere, unblock lets the coordinators present go on with the "
	  "newest state they hold.",
	  { { NULL, NULL } }, "hactl unblock" },
	{ "check", "guests", "check [--type KIND] FILE...",
	  "validate guest definitions, policies, hactl.conf or fence.conf",
	  "Validates files without a running cluster and names file and line of the first "
	  "error. Without --type a file with a [guest] section header is a guest "
	  "definition and anything else a policy (a directory: policy.d).",
	  { { "--type KIND", "guest, policy, config (hactl.conf) or fence (fence.conf)" },
	    { NULL, NULL } },
	  "hactl check --type fence /etc/hactl/fence.conf" },
	{ "create", "guests", "create FILE", "define a guest from its definition file",
	  "Sends the definition (docs/guests.md) to the cluster; the guest is defined, "
	  "stopped.",
	  { { NULL, NULL } }, "hactl create deploy/examples/container.conf" },
	{ "start", "guests", "start NAME [--node N]",
	  "start (placement picks the node unless given)",
	  "Starts a stopped guest; the balancing engine places it unless --node names "
	  "the node. A guest whose copy is still stopping (or running) on a node "
	  "starts there again, never on a second node. Waits until it runs.",
	  { { "--node N", "start it on node N" }, WAIT_OPTS, { NULL, NULL } },
	  "hactl start web1 --node node1" },
	{ "stop", "guests", "stop NAME", "stop",
	  "Stops a guest (its own shutdown, then a kill after stop_timeout) and waits.",
	  { WAIT_OPTS, { NULL, NULL } }, "hactl stop web1" },
	{ "restart", "guests", "restart NAME", "stop, then start on the same node",
	  "Stops the guest and starts it again on the same node; waits for both.",
	  { { "--timeout S", "give up waiting after S seconds (default 180; 1..86400)" },
	    { NULL, NULL } },
	  "hactl restart web1" },
	{ "pause", "guests", "pause NAME", "freeze a running guest in place (xm pause)",
	  "Freezes every process of the guest where it runs (a container: its freezer "
	  "cgroup; a domain: QMP stop) and waits until its node reports it paused. It "
	  "keeps its memory and node; nothing restarts it or counts it as hung, and it "
	  "stays paused when the agent restarts. A paused guest is not migrated or "
	  "snapshotted (resume it first); when its node fails it is restored elsewhere "
	  "and paused again there (docs/guests.md, \"Pause and resume\"). 'hactl stop' "
	  "thaws it and stops it in order.",
	  { WAIT_OPTS, { NULL, NULL } }, "hactl pause web1" },
	{ "resume", "guests", "resume NAME", "let a paused guest run again (xm unpause)",
	  "Thaws a guest that 'hactl pause' froze and waits until its node reports it "
	  "running: the same instance goes on where it stopped.",
	  { WAIT_OPTS, { NULL, NULL } }, "hactl resume web1" },
	{ "destroy", "guests", "destroy NAME [--purge]",
	  "remove a stopped guest (--purge: its snapshots too)",
	  "Removes the definition of a stopped guest.",
	  { { "--purge", "delete its snapshots from the shared storage too" }, { NULL, NULL } },
	  "hactl destroy web1 --purge" },
	{ "show", "guests", "show NAME [--limits]", "state, node, usage, limits, snapshots, failover",
	  "Shows one guest: state, node, generation, usage against its limits (a "
	  "container's disk too: its writable layer's use of its disk_quota; JSON: "
	  ".usage.disk_used_bytes, .usage.disk_size_bytes), its "
	  "snapshots, a running migration, and what a failover would do now: restore "
	  "which snapshot (its time and age against failover_snapshot_max_age) or start "
	  "cold, and why (JSON: .failover). With --limits, the guest's limit counters "
	  "from its cgroups, like OpenVZ's beancounters: for memory, processes and CPU "
	  "the use now, the peak, the limit and how often it was hit (JSON: .limits, "
	  "always).",
	  { { "--limits", "the limit counters: held, peak, limit, failures (memory, "
			  "processes, CPU throttling)" },
	    { NULL, NULL } },
	  "hactl show web1 --limits" },
	{ "exec", "guests", "exec NAME -- COMMAND [ARG...]",
	  "run a command inside a container (vzctl exec)",
	  "Runs COMMAND inside the running container NAME, in its namespaces and "
	  "cgroups (its limits count it), with this terminal's stdin, stdout and stderr; "
	  "the exit status is the command's. It runs on the host that runs the "
	  "container: elsewhere it names that host and exits 1 (ssh there). Everything "
	  "after '--' is the command's, options included. Containers only.",
	  { { NULL, NULL } }, "hactl exec web1 -- ps" },
	{ "enter", "guests", "enter NAME", "a shell inside a container (vzctl enter)",
	  "Starts /bin/sh -l inside the running container NAME, as hactl exec does; exit "
	  "the shell to leave. On the host that runs it; containers only.",
	  { { NULL, NULL } }, "hactl enter web1" },
	{ "console", "guests", "console NAME [--lines N]",
	  "the guest's console (xm console); Ctrl-] detaches",
	  "Attaches to the console of the running guest NAME, on the host that runs it "
	  "(elsewhere it names that host and exits 1, as hactl exec does). It prints the "
	  "console log's last lines first, then what comes. A domain's console is its "
	  "serial port, interactive (the domain template runs a root shell on ttyS0); on "
	  "a terminal every key goes to the guest and Ctrl-] detaches, leaving the guest "
	  "running. A container's console is read-only: its console log followed like "
	  "tail -f (CRIU moves a log file between hosts, not a terminal; hactl enter gives "
	  "a shell); Ctrl-] or Ctrl-C leaves. Without a terminal, input is sent as it "
	  "comes, a Ctrl-] byte detaches, and at its end the output is followed until it "
	  "is quiet for 1 s (at most 10 s). Exit 0 on a detach or the end of the input, 1 "
	  "when the console closes (the guest stopped, restarted or moved).",
	  { { "--lines N", "the console log's last N lines first (default 10; 0 none)" },
	    { NULL, NULL } },
	  "hactl console web1" },
	{ "snapshot", "guests", "snapshot NAME [--failover-point] [--timeout S]",
	  "snapshot memory and storage now",
	  "Writes a snapshot of the running guest (memory and writable storage of one "
	  "instant) to the shared storage, and waits until it is written (the agent "
	  "gives up after 600 s), showing the time spent on a terminal. A manual snapshot is NOT a failover point: "
	  "a failover or a restart after a crash never rolls the guest back to it (only "
	  "'hactl restore' does), unless --failover-point marks it; even then only while "
	  "it is at most failover_snapshot_max_age old (docs/failover.md).",
	  { { "--failover-point", "a failover may restore this snapshot (within "
	      "failover_snapshot_max_age)" },
	    { "--timeout S", "stop waiting after S seconds (1..86400); the snapshot goes on" },
	    { NULL, NULL } },
	  "hactl snapshot db1 --failover-point" },
	{ "restore", "guests", "restore NAME [--node N] [--generation G]",
	  "start from a snapshot (newest good by default)",
	  "Starts a stopped guest from one of its snapshots: the newest good one of any "
	  "kind and age (manual ones included; failover_snapshot_max_age does not apply "
	  "to an operator's restore).",
	  { { "--node N", "restore it on node N" },
	    { "--generation G", "that snapshot generation instead of the newest good one" },
	    WAIT_OPTS,
	    { NULL, NULL } },
	  "hactl restore web1 --generation 3" },
	{ "migrate", "moving guests",
	  "migrate NAME --to NODE [OPTIONS] | migrate --cancel NAME",
	  "live migration as a transaction; progress, then a report",
	  "Moves a running guest to another node while it runs: pre-copy rounds, a short "
	  "pause, the commit. Any failure before the commit leaves it running on the "
	  "source. Prints progress, then a report with the downtime.",
	  { { "--to NODE", "the destination" },
	    { "--mode M", "auto, precopy or stopcopy (default auto; no post-copy)" },
	    { "--transport T", "tcp or rdma (default: the configuration's)" },
	    { "--max-downtime MS", "the longest pause allowed (1..600000)" },
	    { "--bandwidth MB/s", "cap the copy rate (1..100000)" },
	    { "--cancel", "abort the guest's migration before its commit" },
	    { "--no-wait", "return once the cluster accepted the request" },
	    { "--timeout S", "give up waiting after S seconds (default 600)" },
	    { NULL, NULL } },
	  "hactl migrate db1 --to node3 --max-downtime 500" },
	{ "evacuate", "moving guests", "evacuate NODE [--parallel N]",
	  "maintenance on, every guest moved elsewhere",
	  "Puts the node in maintenance and asks the leader for a job that moves every guest "
	  "away live, wave by wave, placed by the balancing engine; hactl follows it, and "
	  "interrupting hactl does not stop it ('hactl jobs'). The node stays in maintenance "
	  "until 'hactl maintenance off'.",
	  { { "--parallel N", "migrations at once (1..64; default 1)" },
	    { "--mode M", "as for migrate" },
	    { "--transport T", "as for migrate" },
	    { "--max-downtime MS", "as for migrate" },
	    { "--bandwidth MB/s", "as for migrate" },
	    { "--no-wait", "return once the job is started; it goes on ('hactl jobs')" },
	    { "--timeout S", "stop following the job after S seconds (default 600); it goes on" },
	    { NULL, NULL } },
	  "hactl evacuate node2" },
	{ "jobs", "moving guests", "jobs [--cancel ID]",
	  "the leader's jobs: evacuations, returns, balance plans",
	  "Lists the jobs the leader runs or ran last (evacuations, returns after "
	  "maintenance, balance plans): each move with its wave and state. A job lives in "
	  "the replicated state, so a new leader goes on with it. --cancel drops the moves "
	  "not yet started; running ones finish.",
	  { { "--cancel ID", "cancel job ID" },
	    { NULL, NULL } },
	  "hactl jobs --cancel 42" },
	{ "balance", "balancing", "balance [--dry-run] [--parallel N] [--save FILE]",
	  "plan moves with the policy in force and carry them out, unless --dry-run",
	  "Plans moves with the policy in force (the score before and after) and hands "
	  "that plan to the leader as a job, which carries it out by live migration wave "
	  "by wave ('hactl jobs').",
	  { { "--dry-run", "plan only (also -n)" },
	    { "--parallel N", "migrations at once (1..64)" },
	    { "--save FILE", "write the engine's input as FILE and FILE.policy for 'hactl simulate'" },
	    { "--timeout S", "stop following the job after S seconds (default 600); it goes on" },
	    { NULL, NULL } },
	  "hactl balance --dry-run --save /tmp/now.sim" },
	{ "simulate", "balancing", "simulate FILE [--policy PATH] [--save FILE]",
	  "run the balancing engine on a described cluster",
	  "Runs the balancing engine offline on a cluster described in FILE "
	  "(docs/balancing.md), no cluster needed.",
	  { { "--policy PATH", "the policy file or directory (default: FILE's 'policy' line)" },
	    { "--save FILE", "write the cluster after the plan" },
	    { "--quiet", "print only the summary" },
	    { "--timing", "print how long the engine took" },
	    { NULL, NULL } },
	  "hactl simulate /tmp/now.sim --json" },
	{ "help", "other", "help [COMMAND]", "this text, or one command's",
	  "Prints the commands, or what one command does with its options and an example. "
	  "'hactl COMMAND --help' does the same.",
	  { { "--markdown", "the command reference of docs/cli.md" }, { NULL, NULL } },
	  "hactl help migrate" },
	{ "complete", "other", "complete commands|options COMMAND|guests|nodes",
	  "words for shell completion, one per line",
	  "Prints the words a shell may complete, one per line: the commands, one command's "
	  "options, or the names of the guests or nodes the coordinator knows (nothing when "
	  "it cannot be reached). The bash completion that the packages install uses it.",
	  { { NULL, NULL } },
	  "hactl complete options migrate" },
};

static const struct help_cmd *find(const char *name)
{
	if (strcmp(name, "list") == 0) {
		name = "guests";
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i].name, name) == 0) {
			return &cmds[i];
		}
	}
	return NULL;
}

void cli_help_usage(FILE *out)
{
	const char *group = NULL;

	fprintf(out, "usage: hactl [--json] COMMAND [ARGS]\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const struct help_cmd *c = &cmds[i];

		if (group == NULL || strcmp(group, c->group) != 0) {
			group = c->group;
			fprintf(out, "\n%s:\n", group);
		}
		if (strlen(c->synopsis) <= 24) {
			fprintf(out, "  %-24s %s\n", c->synopsis, c->summary);
		} else {
			fprintf(out, "  %s\n  %-24s %s\n", c->synopsis, "", c->summary);
		}
	}
	fprintf(out,
		"\n'hactl COMMAND --help' tells what a command does, every option and an example.\n"
		"\noptions:\n"
		"  --json                   machine-readable output\n"
		"  -h, --help               this text\n"
		"  -V, --version\n"
		"  --opt=value is the same as --opt value\n"
		"\n"
		"exit status: 0 ok, 1 refused or failed, 2 bad arguments, 3 no\n"
		"coordinator, 4 partition not quorate, 5 unknown name\n");
}

int cli_help_command(FILE *out, const char *name)
{
	const struct help_cmd *c = find(name);

	if (c == NULL) {
		return -1;
	}
	fprintf(out, "usage: hactl %s\n\n", c->synopsis);
	ha_print_wrapped(out, "", c->text, 76);
	if (c->opts[0].opt) {
		fprintf(out, "\noptions:\n");
		for (const struct help_opt *o = c->opts; o->opt; o++) {
			fprintf(out, "  %-20s %s\n", o->opt, o->text);
		}
	}
	fprintf(out, "  %-20s %s\n", "--json", "machine-readable output");
	fprintf(out, "\nexample:\n  %s\n", c->example);
	return 0;
}

void cli_help_complete_commands(FILE *out)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		fprintf(out, "%s\n", cmds[i].name);
	}
}

int cli_help_complete_options(FILE *out, const char *name)
{
	const struct help_cmd *c = find(name);

	if (c == NULL) {
		return -1;
	}
	for (const struct help_opt *o = c->opts; o->opt; o++) {
		/* "--node N" -> "--node"; "--dry-run" (also -n) -> "--dry-run" */
		fprintf(out, "%.*s\n", (int)strcspn(o->opt, " "), o->opt);
	}
	fprintf(out, "--json\n--help\n");
	return 0;
}

void cli_help_markdown(FILE *out)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const struct help_cmd *c = &cmds[i];

		fprintf(out, "### hactl %s\n\n`hactl %s`\n\n%s\n\n", c->name, c->synopsis, c->text);
		if (c->opts[0].opt) {
			fprintf(out, "| option | meaning |\n|---|---|\n");
			for (const struct help_opt *o = c->opts; o->opt; o++) {
				fprintf(out, "| `%s` | %s |\n", o->opt, o->text);
			}
			fprintf(out, "\n");
		}
		fprintf(out, "Example: `%s`\n\n", c->example);
	}
}
