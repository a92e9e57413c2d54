/* Helpers shared by the fuzz harnesses (tests/fuzz): a private scratch directory for the parsers that only take a
 * path, the test data directory, and a check that aborts (a finding for libFuzzer and for the replay runner). */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry point every harness defines (also called by replay_main.c). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A directory of this process only, created on first use under /dev/shm (else $TMPDIR, else /tmp) and removed with
 * the files of fuzz_scratch_path at exit. Aborts when it cannot be created: a harness without it tests nothing. */
const char *fuzz_scratch_dir(void);
/* "<scratch>/<name>" in static storage (one per name; at most 16 names); the file is removed at exit. */
const char *fuzz_scratch_path(const char *name);
/* Replaces the file at path with size bytes of data; aborts on an I/O failure (the scratch disk is full). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* tests/data (BR_TEST_DATA), or $BITROLL_FUZZ_DATA when set (a fuzz binary run from another checkout). */
const char *fuzz_test_data(void);
/* configs/models/stories260K (BR_DEFAULT_MODEL), or $BITROLL_FUZZ_MODEL when set. */
const char *fuzz_default_model(void);

/* Inputs the parser under test accepted (harnesses add 1 on success); the replay runner reports it, so a seed corpus
 * that no longer parses (a format change) shows as "0 of N accepted" instead of passing silently. */
extern long fuzz_accepted;

/* An invariant of a parser's output failed: prints what and where, then abort() (a crash libFuzzer records). */
#define FUZZ_CHECK(cond)                                                                                             \
    do {                                                                                                             \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond);                                                           \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
