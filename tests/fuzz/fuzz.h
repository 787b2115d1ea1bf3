/*
 * fuzz.h - the libFuzzer entry points. Every tests/fuzz/fuzz_*.c defines
 * LLVMFuzzerTestOneInput(); it is linked either with libFuzzer
 * (-fsanitize=fuzzer, the HA_FUZZ build) or with replay.c, which feeds it
 * the files of a corpus as an ordinary test.
 *
 * A target must not leak, must not keep state between inputs that changes
 * the outcome, and calls abort() when an invariant of the code under test
 * does not hold (a crash is what the fuzzer reports).
 */
#ifndef HA_FUZZ_H
#define HA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional; replay.c calls it when a target defines it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
