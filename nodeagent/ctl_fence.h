/* ctl_fence: `kubefencectl fence`, one run of the configured fence pipeline
 * against a node, for operators and for testing a configuration. */
#pragma once

/* The subcommand (see ctl.h for conventions).  Exit codes: 0 the victim is
 * confirmed fenced (or, with --dry-run, every method could resolve its
 * target); 2 bad usage or configuration; 3 not confirmed (a method failed
 * or ran out of time); 4 refused: the victim is this node (node.name). */
int ctl_fence_main(int argc, char **argv);
