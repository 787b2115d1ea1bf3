/*
 * harness.h - minimal assertions for the unit tests (TAP-like output).
 */
#ifndef HA_HARNESS_H
#define HA_HARNESS_H

#include <stdio.h>
#include <string.h>

extern int ha_test_failures;
extern int ha_test_checks;

#define CHECK(cond)                                                            \
	do {                                                                   \
		ha_test_checks++;                                              \
		if (!(cond)) {                                                 \
			ha_test_failures++;                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                     \
	do {                                                                   \
		long long _a = (long long)(a), _b = (long long)(b);            \
		ha_test_checks++;                                              \
		if (_a != _b) {                                                \
			ha_test_failures++;                                    \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",  \
				__FILE__, __LINE__, #a, _a, _b);               \
		}                                                              \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                     \
	do {                                                                   \
		const char *_a = (a), *_b = (b);                               \
		ha_test_checks++;                                              \
		if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {         \
			ha_test_failures++;                                    \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a, _a ? _a : "(null)",    \
				_b ? _b : "(null)");                           \
		}                                                              \
	} while (0)

/* Open file descriptors of this process (leak checks compare two counts);
 * -1 when /proc/self/fd cannot be read. */
int ha_test_count_fds(void);

/* Prints "N passed, N failed" and returns the process exit status. */
int ha_test_done(const char *name);

#endif
