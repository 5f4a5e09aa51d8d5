/*
 * tap.h — the smallest TAP producer for the pure-C unit tests: ok() prints
 * "ok N - description" or "not ok N - description" (with the file and line
 * of a failure), done_testing() prints the plan and returns the exit code.
 * Header-only; include it once per test program.
 */
#ifndef M365SYNC_TAP_H
#define M365SYNC_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int	tap_count = 0;
static int	tap_failed = 0;

__attribute__((format(printf, 4, 5)))
static int
tap_ok(int pass, const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	printf("%sok %d - ", pass ? "" : "not ", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass)
	{
		printf("#   failed at %s:%d\n", file, line);
		tap_failed++;
	}
	fflush(stdout);
	return pass;
}

#define ok(cond, ...) tap_ok((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

static int
done_testing(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif							/* M365SYNC_TAP_H */
