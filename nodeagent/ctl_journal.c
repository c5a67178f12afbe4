/* ctl_journal: `kubefencectl journal check|repair --data-dir DIR`, the
 * operator's tool for a metadata store that refuses to start.
 *
 * check validates every snapshot and segment without writing anything and
 * prints what it found.  repair moves each damaged file aside as
 * "<name>.corrupt-<timestamp>" (nothing is deleted), keeps the valid records
 * before the first bad one in place, moves aside the later segments that can
 * no longer be replayed, and prints every step.  Exit codes: 0 healthy (or
 * repaired), 1 problems found (check) or left (repair), 2 usage, 3 failure. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "nodeagent/ctl.h"
#include "storage/backend.h"
#include "storage/metastore.h"

/* One finding as a line: "LABEL: TEXT" (an unrepairable one says so
 * itself). */
static void print_finding(FILE *out, const struct metastore_check_entry *e)
{
	static const char *const label[] = {
	        [METASTORE_FOUND_OK] = "ok",
	        [METASTORE_FOUND_PROBLEM] = "problem",
	        [METASTORE_FOUND_REPAIRED] = "repaired",
	        [METASTORE_FOUND_UNREPAIRABLE] = NULL,
	        [METASTORE_FOUND_ERROR] = "error",
	};

	if (label[e->kind])
		fprintf(out, "%s: %s\n", label[e->kind], e->text);
	else
		fprintf(out, "%s\n", e->text);
}

static void journal_usage(FILE *out)
{
	fprintf(out, "Usage: kubefencectl journal check --data-dir DIR\n"
	             "       kubefencectl journal repair --data-dir DIR\n\n"
	             "check   validate every snapshot and journal segment (read-only)\n"
	             "repair  move damaged files aside as *.corrupt-<timestamp> and cut the\n"
	             "        journal at the first bad record; prints every action\n");
}

int ctl_journal_main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"data-dir", required_argument, NULL, 'd'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *action;
	struct backend *b = NULL;
	struct metastore_check_report rep;
	char err[512];
	bool repair;
	int c, r;

	if (argc < 2) {
		journal_usage(stderr);
		return 2;
	}
	action = argv[1];
	if (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0) {
		journal_usage(stdout);
		return 0;
	}
	if (strcmp(action, "check") != 0 && strcmp(action, "repair") != 0) {
		fprintf(stderr, "kubefencectl journal: unknown action '%s'\n", action);
		journal_usage(stderr);
		return 2;
	}
	repair = strcmp(action, "repair") == 0;
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			break;
		case 'h':
			journal_usage(stdout);
			return 0;
		default:
			journal_usage(stderr);
			return 2;
		}
	}
	if (!dir || optind != argc - 1) {
		journal_usage(stderr);
		return 2;
	}
	r = backend_dir_open(dir, false, &b, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kubefencectl journal: %s\n", err);
		return 3;
	}
	r = metastore_check(b, repair, &rep);
	b->ops->close(b);
	for (size_t i = 0; i < rep.n; i++)
		print_finding(stdout, &rep.entries[i]);
	metastore_check_report_done(&rep);
	if (r < 0) {
		fprintf(stderr, "kubefencectl journal: %s failed: %s\n", action, strerror(-r));
		return 3;
	}
	if (repair && r == 0)
		printf("the store in '%s' now opens cleanly\n", dir);
	return r;
}
