/* Fuzz target: the validating readers of rollouts and scores files (h5log_rollouts_read, h5log_scores_read). They
 * take a path: each input is written to a scratch file in /dev/shm and both readers open it (a rollouts file is
 * rejected by the scores reader on its 'format' attribute and the other way round, so each seed exercises one parse
 * path fully). Checks on success: CSR offsets start at 0 and never decrease, sample ids strictly increase, and the
 * reported fingerprint is the one recomputed from the arrays.
 *
 * Files carrying an integrity checksum: a mutated file mostly stops at the checksum check; the seeds of
 * corpus/h5log are files written before the checksum existed (the parse path past it is reached through them
 * only as long as the reader accepts such files). The harness recomputes no checksum.
 *
 * Files without the header go through the readers' guard (logging/h5log.h): libhdf5 first reads them in a child
 * process, and a crash, hang or memory error of libhdf5 there becomes a refused file (exit 2), not a finding of this
 * harness. Those are libhdf5 defects contained, not fixed: the harness counts them and prints the counts (at exit, and
 * at every power of two of guard runs from 256 on), and a sanitizer's report from the child is still printed. The
 * guard's seconds come from BITROLL_H5_GUARD_SECONDS (br_tuning); a libFuzzer run needs it well under -timeout, since
 * each input may run the guard twice (rollouts and scores reader). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tuning.h"
#include "fuzz_util.h"
#include "logging/h5log.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

static void check_offsets(const int64_t *off, int64_t n) {
    FUZZ_CHECK(off != NULL && off[0] == 0);
    for (int64_t i = 0; i < n; i++) FUZZ_CHECK(off[i + 1] >= off[i]);
}

static void check_ids(const int64_t *id, int64_t n) {
    for (int64_t i = 1; i < n; i++) FUZZ_CHECK(id[i] > id[i - 1]);
}

static void print_guard(const char *when) {
    const h5log_guard_counts c = h5log_guard_stats();
    fprintf(stderr, "fuzz_h5log: read guard (%s): %ld files without the integrity header read in a child: %ld clean, "
                    "%ld failed cleanly, %ld libhdf5 crashes (killed by a signal), %ld timeouts, %ld ended without a "
                    "report (a sanitizer's report or an abort in libhdf5); only the clean ones were then read in this process\n",
            when, c.runs, c.clean, c.failed, c.signaled, c.timeouts, c.other);
}

static void print_guard_at_exit(void) { print_guard("at exit"); }

/* In the guard's child: a sanitizer's report there is libhdf5's, contained by the guard; libFuzzer's death callback
 * would save the input as a crash of this harness (its parent goes on and counts the refusal). */
static void in_guard_child(void) {
#ifdef FUZZ_ASAN
    __sanitizer_set_death_callback(NULL);
#endif
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *path;
    static long next_print = 256;
    if (!path) {
        br_tuning t;
        if (br_tuning_from_env(&t) != BR_OK) {
            fprintf(stderr, "fuzz_h5log: %s\n", br_last_error());
            abort();
        }
        (void)h5log_guard_set(t.h5_guard_s);
        h5log_test_in_guard_child = in_guard_child;
        atexit(print_guard_at_exit);
        path = fuzz_scratch_path("file.h5");
    }
    fuzz_write_file(path, data, size);

    h5log_rollouts r;
    h5log_meta m;
    memset(&m, 0, sizeof m);
    if (h5log_rollouts_read(path, &r, &m) == BR_OK) {
        fuzz_accepted++;
        FUZZ_CHECK(r.n >= 0);
        check_offsets(r.prompt_offsets, r.n);
        check_offsets(r.completion_offsets, r.n);
        check_ids(r.sample_id, r.n);
        uint64_t fp = 0;
        FUZZ_CHECK(h5log_rollouts_fingerprint(&r, &fp) == BR_OK && fp == m.fingerprint);
        FUZZ_CHECK(m.format && strcmp(m.format, H5LOG_ROLLOUTS_FORMAT) == 0);
        /* Touch the last element of each CSR array. */
        int64_t P = r.prompt_offsets[r.n], T = r.completion_offsets[r.n];
        if (P > 0) FUZZ_CHECK(r.prompt_tokens[P - 1] == r.prompt_tokens[P - 1]);
        if (T > 0) FUZZ_CHECK(r.completion_tokens[T - 1] == r.completion_tokens[T - 1]);
        if (T > 0) FUZZ_CHECK(r.logits_digest[T - 1] == r.logits_digest[T - 1]);
        h5log_rollouts_free(&r);
    }
    h5log_meta_free(&m);

    h5log_scores s;
    memset(&m, 0, sizeof m);
    if (h5log_scores_read(path, &s, &m) == BR_OK) {
        fuzz_accepted++;
        FUZZ_CHECK(s.n >= 0);
        check_offsets(s.completion_offsets, s.n);
        check_ids(s.sample_id, s.n);
        uint64_t fp = 0;
        FUZZ_CHECK(h5log_scores_fingerprint(&s, &fp) == BR_OK && fp == m.fingerprint);
        FUZZ_CHECK(m.format && strcmp(m.format, H5LOG_SCORES_FORMAT) == 0);
        int64_t T = s.completion_offsets[s.n];
        if (T > 0) FUZZ_CHECK(s.logits_digest[T - 1] == s.logits_digest[T - 1]);
        h5log_scores_free(&s);
    }
    h5log_meta_free(&m);
    if (h5log_guard_stats().runs >= next_print) {
        print_guard("so far");
        next_print *= 2;
    }
    return 0;
}
