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

/* `kubefencectl scsi ...` (ctl_scsi.c): SCSI-3 persistent reservations on
 * shared LUNs. */
int ctl_scsi_main(int argc, char **argv);

/* `kubefencectl journal` (ctl_journal.c): check or repair a metadata
 * journal. */
int ctl_journal_main(int argc, char **argv);

/* `kubefencectl fence` (ctl_fence.c): one run of the configured fence
 * pipeline against a node, for operators and for testing a configuration.
 * Exit codes: 0 the victim is confirmed fenced (or, with --dry-run, every
 * method could resolve its target); 2 bad usage or configuration; 3 not
 * confirmed (a method failed or ran out of time); 4 refused: the victim is
 * this node (node.name). */
int ctl_fence_main(int argc, char **argv);

/* `kubefencectl status` (ctl_status.c): fetch /status from a running agent
 * and print it. */
int ctl_status_main(int argc, char **argv);
