/*
 * tap.h — the smallest TAP emitter for the pure-C unit tests: "ok N - name"
 * / "not ok N - name" lines, which test/check counts.
 */
#ifndef M365SYNC_TAP_H
#define M365SYNC_TAP_H

#include <stdio.h>

static int	tap_n = 0;
static int	tap_failed = 0;

#define ok(cond, ...) do { \
	int c_ = (cond) ? 1 : 0; \
	printf("%sok %d - ", c_ ? "" : "not ", ++tap_n); \
	printf(__VA_ARGS__); \
	printf("\n"); \
	if (!c_) { tap_failed++; printf("#   at %s:%d\n", __FILE__, __LINE__); } \
} while (0)

#define tap_done() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
