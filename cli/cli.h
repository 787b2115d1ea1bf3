/*
 * cli.h - shared parts of hactl's commands.
 */
#ifndef HA_CLI_H
#define HA_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ipc.h"
#include "proto/hactl.pb-c.h"

enum {
	EX_OK = 0,
	EX_FAIL = 1,
	EX_USAGE = 2,
	EX_NODAEMON = 3,
	EX_NOQUORUM = 4,
	EX_UNKNOWN = 5,
};

/* How long a read (status, events, a plan) waits for its answer. */
#define TIMEOUT_MS 15000
/* How long a change, an action (snapshot) or a fencing waits, unless the
 * command says (cli.wait_ms): the coordinator answers a change within its
 * request_timeout_ms and an action within 600 s, so this is past its own
 * limits, with a margin (cli_common.c, call_wait_ms). */
#define VERDICT_WAIT_MS 660000u

struct cli {
	bool json;
	bool batch;      /* one report at the end: no per-migration output */
	qb_ipcc_connection_t *conn;
	uint32_t wait_ms;      /* cli_call's wait for an answer; 0 = by the request */
	const char *progress;  /* while cli_call waits, on a terminal: "WHAT: N s" */
};

/* cli_common.c: shared by every command file */
struct ha_config;
/* This host's hactl.conf ($HACTL_CONFIG, else the default path; a missing
 * default file is the defaults): EX_OK, or EX_FAIL with the error printed. */
int cli_load_cfg(struct ha_config *cfg);
/* The same read, the error into @err (for a caller that reports it its
 * own way): 0 or negative. */
int cli_cfg_read(struct ha_config *cfg, char *err, size_t len);
/* Prints "hactl: " @fmt (with @arg) and the help hint; returns EX_USAGE. */
int cli_usage_error(const char *fmt, const char *arg);
/* The value @arg of --timeout (seconds, 1..86400) in *@timeout_s; EX_OK or
 * a usage error. */
int cli_opt_timeout(const char *arg, uint32_t *timeout_s);
int cli_code_to_exit(int code);
/* Sends @req and expects @want; a Result with an error is printed and
 * mapped to an exit status. *out (freed with ha_env_msg_free) is set when
 * a message came back. */
int cli_call(struct cli *cli, enum ha_msg_type type, const ProtobufCMessage *req,
	     enum ha_msg_type want, ProtobufCMessage **out);
/* Asks the coordinator for @ch; *@seq (when not NULL) gets the seq of its
 * commit. An exit code. */
int cli_change(struct cli *cli, Hactl__Change *ch, uint64_t *seq);
/* The status with every guest; *out is freed with ha_env_msg_free. */
int cli_get_status(struct cli *cli, const char *node, Hactl__StatusReply **out);
/* Prints @o pretty and puts it. */
void cli_json_print(json_object *o);
/* The name of node @id in a status reply, "-" when none. */
const char *cli_node_name(const Hactl__StatusReply *s, uint32_t id);
/* The guest called @name in a status reply, NULL when none. */
const Hactl__GuestRecord *cli_find_guest(const Hactl__StatusReply *s, const char *name);
/* The cluster's status (*s, freed with ha_env_msg_free) and the guest
 * @name in it (*g); an unknown name is said on stderr: EX_UNKNOWN, *s NULL. */
int cli_status_guest(struct cli *cli, const char *name, Hactl__StatusReply **s,
		     const Hactl__GuestRecord **g);
/* Whether the guest @g (@name) runs on this host by the status @s, for the
 * commands that run beside it (exec, enter, console); when not, says where
 * it runs and how to get there ("e.g. ssh NODE hactl @cmd @name@tail") and
 * returns EX_FAIL. */
int cli_guest_here(const Hactl__StatusReply *s, const Hactl__GuestRecord *g, const char *name,
		   const char *cmd, const char *tail);
/* The guest's state as shown ("unknown" when its node is gone). */
const char *cli_guest_state(const Hactl__StatusReply *s, const Hactl__GuestRecord *g);
/* The guest's desired state as shown: "paused" for a started guest the
 * operator paused (GuestRecord.paused), else its desired state. */
const char *cli_guest_desired(const Hactl__GuestRecord *g);
/* The guest as JSON; caller puts it. */
json_object *cli_guest_json(const Hactl__StatusReply *s, const Hactl__GuestRecord *g);

/* cmd_guest.c */
int cli_cmd_check(struct cli *cli, int argc, char **argv);
int cli_cmd_create(struct cli *cli, int argc, char **argv);
int cli_cmd_start(struct cli *cli, int argc, char **argv);
int cli_cmd_stop(struct cli *cli, int argc, char **argv);
int cli_cmd_restart(struct cli *cli, int argc, char **argv);
int cli_cmd_pause(struct cli *cli, int argc, char **argv);
int cli_cmd_resume(struct cli *cli, int argc, char **argv);
int cli_cmd_destroy(struct cli *cli, int argc, char **argv);
int cli_cmd_show(struct cli *cli, int argc, char **argv);
int cli_cmd_exec(struct cli *cli, int argc, char **argv);
int cli_cmd_enter(struct cli *cli, int argc, char **argv);
/* cmd_console.c */
int cli_cmd_console(struct cli *cli, int argc, char **argv);
int cli_cmd_snapshot(struct cli *cli, int argc, char **argv);
int cli_cmd_restore(struct cli *cli, int argc, char **argv);

/* cmd_help.c: the one table of commands, options and examples */
void cli_help_usage(FILE *out);
/* 0, or -1 when @name is no command */
int cli_help_command(FILE *out, const char *name);
void cli_help_markdown(FILE *out);
/* Completion words (hactl complete): every command; one command's options,
 * -1 for an unknown command. */
void cli_help_complete_commands(FILE *out);
int cli_help_complete_options(FILE *out, const char *name);
int cli_cmd_complete(struct cli *cli, int argc, char **argv);

/* cmd_migrate.c */
int cli_cmd_migrate(struct cli *cli, int argc, char **argv);
int cli_cmd_evacuate(struct cli *cli, int argc, char **argv);
int cli_cmd_jobs(struct cli *cli, int argc, char **argv);
int cli_cmd_balance(struct cli *cli, int argc, char **argv);
/* The guests evacuations moved off @node go back to it; an exit status. */
int cli_return_guests(struct cli *cli, const char *node);

#endif
