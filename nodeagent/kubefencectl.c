/* kubefencectl: the operator CLI.  Dispatches to the subcommands listed in
 * the table below; each lives in its own ctl_*.c. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/ctl.h"

static int ctl_failpoints_main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--help") != 0) {
		fprintf(stderr, "Usage: kubefencectl failpoints\n");
		return 2;
	}
	failpoint_print_reference(stdout);
	return 0;
}

/* One line per command, tab-indented. */
/* clang-format off */
static const struct ctl_command commands[] = {
	{"scsi", "SCSI-3 persistent reservations on shared LUNs", ctl_scsi_main},
	{"journal", "check or repair a metadata journal", ctl_journal_main},
	{"fence", "run the configured fence pipeline against a node", ctl_fence_main},
	{"status", "show the agent's view: holder, epoch, last failover, fence history", ctl_status_main},
	{"failpoints", "list the fault points tests can arm (Markdown, docs/failpoints.md)", ctl_failpoints_main},
	{NULL, NULL, NULL},
};
/* clang-format on */

static void usage(FILE *out)
{
	fprintf(out, "Usage: kubefencectl COMMAND [ARGS...]\n\nCommands:\n");
	for (const struct ctl_command *c = commands; c->name; c++)
		fprintf(out, "  %-10s %s\n", c->name, c->summary);
	fprintf(out, "\n'kubefencectl COMMAND --help' describes each.\n");
}

int main(int argc, char **argv)
{
	log_set_ident("kubefencectl");
	{
		char fperr[512];

		if (failpoint_setup(fperr, sizeof(fperr)) < 0) {
			fprintf(stderr, "kubefencectl: fault points: %s\n", fperr);
			return 2;
		}
	}
	log_max_level = LOG_LEVEL_WARNING;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("kubefencectl %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (const struct ctl_command *c = commands; c->name; c++)
		if (strcmp(c->name, argv[1]) == 0)
			return c->main(argc - 1, argv + 1);
	fprintf(stderr, "kubefencectl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
