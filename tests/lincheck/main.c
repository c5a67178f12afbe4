/* kf-lincheck: judge operation histories (docs/history.md) for
 * linearizability, key by key, and explain any violation with a minimised
 * counterexample.  Exit status: 0 linearizable, 1 violation, 2 bad input or
 * usage, 3 undecided (a search gave up at --max-configs). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lincheck/lincheck.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: kf-lincheck [--json FILE] [--quiet] [--show N] [--max-configs N]\n"
	        "                   [--minimise-ops N] HISTORY...\n"
	        "\n"
	        "Check that the operations recorded in the HISTORY files (one or more,\n"
	        "'-' for stdin; format: docs/history.md) are linearizable for a map of\n"
	        "registers: every key starts empty, put sets it, del clears it, get reads it.\n"
	        "\n"
	        "  --json FILE         also write a JSON summary to FILE\n"
	        "  --quiet             print only the one-line summary\n"
	        "  --show N            print at most N violations in full (default 10, 0: all)\n"
	        "  --max-configs N     give up on a key past N search states (default %u)\n"
	        "  --minimise-ops N    minimise counterexamples of up to N ops (default %u)\n"
	        "\n"
	        "Exit status: 0 linearizable, 1 violation, 2 bad input or usage,\n"
	        "3 undecided (search limit reached).\n",
	        LC_DEFAULT_MAX_CONFIGS, LC_DEFAULT_MINIMISE_OPS);
}

static int parse_count(const char *s, unsigned long long *ret)
{
	char *end;

	errno = 0;
	*ret = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"json", required_argument, NULL, 'j'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"show", required_argument, NULL, 's'},
	        {"max-configs", required_argument, NULL, 'm'},
	        {"minimise-ops", required_argument, NULL, 'M'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	struct lc_options opt = {0};
	struct lc_history *h = NULL;
	struct lc_report *rep = NULL;
	const char *json = NULL;
	unsigned long long v, show = 10;
	char err[1024];
	int quiet = 0, c, i, r, status = 2;

	while ((c = getopt_long(argc, argv, "j:qs:m:M:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = optarg;
			break;
		case 'q':
			quiet = 1;
			break;
		case 's':
		case 'm':
		case 'M':
			if (parse_count(optarg, &v) < 0 || (c != 's' && v == 0)) {
				fprintf(stderr, "kf-lincheck: bad number '%s' for -%c\n", optarg,
				        c);
				goto out;
			}
			if (c == 's')
				show = v;
			else if (c == 'm')
				opt.max_configs = v;
			else
				opt.minimise_ops = (size_t)v;
			break;
		case 'h':
			usage(stdout);
			status = 0;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "kf-lincheck: no history file given\n");
		usage(stderr);
		goto out;
	}
	r = lc_history_new(&h);
	if (r < 0) {
		fprintf(stderr, "kf-lincheck: %s\n", strerror(-r));
		goto out;
	}
	for (i = optind; i < argc; i++) {
		r = lc_history_load(h, argv[i], err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "kf-lincheck: %s\n", err);
			goto out;
		}
	}
	r = lc_check(h, &opt, &rep, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "kf-lincheck: %s\n", err);
		goto out;
	}
	if (!quiet)
		lc_report_print(rep, (size_t)show, stdout);
	lc_report_summary(rep, stdout);
	if (json) {
		r = lc_report_write_json(rep, json, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "kf-lincheck: %s\n", err);
			goto out;
		}
	}
	status = (int)lc_report_verdict(rep);
out:
	rep = lc_report_free(rep);
	h = lc_history_free(h);
	return status;
}
