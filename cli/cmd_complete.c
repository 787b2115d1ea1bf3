/*
 * cmd_complete.c - `hactl complete`: the words a shell may complete, one
 * per line, for the bash completion (deploy/bash-completion/hactl). The
 * commands and their options come from the help table (cmd_help.c), the
 * guest and node names from the coordinator; an unreachable coordinator
 * gives no names and no message (completion must stay quiet).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int complete_names(struct cli *cli, bool guests)
{
	Hactl__StatusReply *s = NULL;
	int devnull, saved, ex;

	/* cli_get_status reports its errors on stderr: not while completing */
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDERR_FILENO);
		close(devnull);
	}
	ex = cli_get_status(cli, NULL, &s);
	if (saved >= 0) {
		dup2(saved, STDERR_FILENO);
		close(saved);
	}
	if (ex != EX_OK) {
		return ex;
	}
	if (guests) {
		for (size_t i = 0; i < s->n_guests; i++) {
			printf("%s\n", s->guests[i]->name);
		}
	} else {
		for (size_t i = 0; i < s->n_nodes; i++) {
			printf("%s\n", s->nodes[i]->name);
		}
	}
	ha_env_msg_free(&s->base);
	return EX_OK;
}

int cli_cmd_complete(struct cli *cli, int argc, char **argv)
{
	const char *what = argc >= 2 ? argv[1] : "";

	if (strcmp(what, "commands") == 0 && argc == 2) {
		cli_help_complete_commands(stdout);
		return EX_OK;
	}
	if (strcmp(what, "options") == 0 && argc == 3) {
		if (cli_help_complete_options(stdout, argv[2]) < 0) {
			return cli_usage_error("unknown command '%s'", argv[2]);
		}
		return EX_OK;
	}
	if ((strcmp(what, "guests") == 0 || strcmp(what, "nodes") == 0) && argc == 2) {
		return complete_names(cli, strcmp(what, "guests") == 0);
	}
	return cli_usage_error("usage: hactl complete commands|options COMMAND|guests|nodes%s", "");
}
