/* fo_fail() for the failover benchmarks (tests/failover/fo.h): print the
 * failure after the program's name and exit 1; the children fo.c started
 * die with the benchmark (PR_SET_PDEATHSIG). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/failover/fo.h"

void fo_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}
