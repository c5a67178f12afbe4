/* ctl: the subcommands of kubefencectl, the operator CLI.
 *
 * Each subcommand is a function taking the arguments after its name
 * (argv[0] is the subcommand's name) and returning the process exit code:
 * 0 on confirmed success, 1 when the answer is "no" or "not found", 2 on bad
 * usage or input, 3 and up for operational failures (documented per command).
 * Messages for the operator go to stdout (results) and stderr (errors). */
#pragma once

struct ctl_command {
	const char *name;
	const char *summary;
	int (*main)(int argc, char **argv);
};
