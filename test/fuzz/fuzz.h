/*
 * fuzz.h — small helpers shared by the libFuzzer targets of test/fuzz.
 *
 * Header-only. A target that finds a broken promise (not just a crash)
 * calls FUZZ_CHECK, which aborts so libFuzzer saves the input. Nothing
 * here may print the input: a crash report names the saved file instead.
 */
#ifndef M365SYNC_FUZZ_H
#define M365SYNC_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

/* A NUL-terminated malloc'd copy of the input (stops at an embedded NUL when used as a string). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* True when buf[0..len) holds a NUL: a fixed-size message buffer was terminated. */
static inline int
fuzz_terminated(const char *buf, size_t len)
{
	return memchr(buf, '\0', len) != NULL;
}

#endif							/* M365SYNC_FUZZ_H */
