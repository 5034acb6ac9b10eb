/* bench.h - what the C benchmarks share: a monotonic clock and the one way to give up. */
#ifndef LC_BENCH_H
#define LC_BENCH_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* seconds on the monotonic clock */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "PROGRAM: m" on stderr, exit 1 */
static inline void die(const char *m)
{
	fprintf(stderr, "%s: %s\n", program_invocation_short_name, m);
	exit(1);
}

#endif
