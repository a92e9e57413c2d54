/* HDF5 rollouts and scores files (DESIGN.md 4, docs/FORMAT.md): in-memory structs, atomic writers,
 * validating readers. No HDF5 type appears here: hid_t stays inside logging/. */
#ifndef H5LOG_H
#define H5LOG_H

#include <stdint.h>

#include "common/br.h"
#include "common/finish.h"

#define H5LOG_ROLLOUTS_FORMAT "bitroll-rollouts"
#define H5LOG_SCORES_FORMAT "bitroll-scores"
/* Version 2 files start with bitroll's 512-byte integrity header (an HDF5 user block: magic, length, xxh3-128
 * of the rest of the file), checked with plain reads before libhdf5 opens the file. Version 1 files (no header)
 * are still read, with the checks that do not need it. */
#define H5LOG_FORMAT_VERSION 2
#define H5LOG_FORMAT_VERSION_NO_HEADER 1
#define H5LOG_HEADER_SIZE 512

/* finish_reason values: br_finish (common/finish.h), stored as int8 with the attribute "enum" = BR_FINISH_ENUM. */

/* One rollouts set, rows sorted by strictly increasing sample_id. Every array is owned (malloc).
 * n = rows, P = prompt_offsets[n], T = completion_offsets[n].
 * After h5log_rollouts_read every numeric array is non-NULL (also when n = 0 or T = 0). */
typedef struct {
    int64_t n;
    int64_t *sample_id;          /* (n) prompt_index * n_per_prompt + sample_index */
    int64_t *prompt_index;       /* (n) */
    int32_t *sample_index;       /* (n) */
    int64_t *prompt_offsets;     /* (n+1) CSR into prompt_tokens, [0] = 0, non-decreasing */
    int32_t *prompt_tokens;      /* (P) */
    int64_t *completion_offsets; /* (n+1) CSR into completion_tokens/logprobs/logits_digest */
    int32_t *completion_tokens;  /* (T) */
    float *logprobs;             /* (T) log-softmax(logits / temperature) at the sampled token */
    uint64_t *logits_digest;     /* (T) sum of fmix64 terms over the fp32 logits row (docs/FORMAT.md) */
    int8_t *finish_reason;       /* (n) br_finish */
    float *temperature;          /* (n) */
    float *top_p;                /* (n) */
    int32_t *top_k;              /* (n) */
    uint64_t *seed;              /* (n) */
    char **prompt_text;          /* (n) UTF-8, NULL when no tokenizer was loaded */
    char **completion_text;      /* (n) UTF-8, NULL when no tokenizer was loaded */
    char **full_text;            /* (n) UTF-8, prompt + completion ids decoded at once (not always equal to
                                  * prompt_text + completion_text: SentencePiece drops a leading space at the
                                  * join); NULL when no tokenizer was loaded or the file predates it */
} h5log_rollouts;

/* One scores set (bitroll score): rows sorted by strictly increasing sample_id, aligned with the
 * completion tokens of the rollouts file it scored. T = completion_offsets[n]. */
typedef struct {
    int64_t n;
    int64_t *sample_id;          /* (n) */
    int64_t *completion_offsets; /* (n+1) */
    float *logprobs;             /* (T) */
    uint64_t *logits_digest;     /* (T) */
} h5log_scores;

/* Provenance written as root attributes of every file. NULL strings are written as "". */
typedef struct {
    const char *engine_version, *git_rev, *compiler, *model_dir, *model_fingerprint, *kernel_mode,
        *device_names, *config_json, *lib_versions;
    const char *mpi_version; /* MPI standard and library (comm_mpi_version) */
    int world_size;
    int64_t weight_version;  /* of the weights that produced the file (0: as loaded from model_dir) */
} h5log_provenance;

/* What a reader returns about a file besides its arrays. Strings are owned (free with h5log_meta_free). */
typedef struct {
    char *format;
    int format_version;
    char *engine_version, *git_rev, *compiler, *model_dir, *model_fingerprint, *kernel_mode, *device_names,
        *config_json, *lib_versions;
    int world_size;
    char *hdf5_version;         /* HDF5 library that wrote the file */
    char *mpi_version;          /* MPI standard and library that the writer was linked with */
    char *rollouts_fingerprint; /* scores files: fingerprint_hex of the rollouts file scored; else NULL */
    uint64_t fingerprint;       /* xxh3-64 over the contents of every /samples (or /scores) dataset */
    char fingerprint_hex[17];   /* "%016llx" of fingerprint */
    int64_t weight_version;     /* 0 when the file predates the attribute */
    int checked;                /* 1: the integrity header was verified (version 2); 0: a version 1 file */
} h5log_meta;

/* Checks that `path` may be written: not empty, not ending in '/', and absent or a regular file (never a device,
 * directory, FIFO or symbolic link). BR_EINVAL naming the path and what it is. The writers check it before they
 * start and again just before the rename. */
br_status h5log_check_out(const char *path);

/* Checks a file's integrity header with plain reads (no libhdf5): magic, header checksum, recorded length against
 * the file's size, and the xxh3-128 digest of every byte after the header, streamed in 64 KiB pieces. BR_EFORMAT
 * naming the file and what failed ("truncated: 1234 of 5678 bytes", "checksum mismatch"); BR_EIO when it cannot
 * be read. A file without the header (format_version 1, or not a bitroll file) passes with *has_header = 0 when
 * it starts with the HDF5 signature. *size (may be NULL) gets the file's length. The readers call it first. */
br_status h5log_check_file(const char *path, int *has_header, int64_t *size);

/* ---- the read guard for files without the integrity header (format_version 1). libhdf5 1.10.8 crashes, corrupts its
 * heap or loops forever on some damaged files (docs/RELIABILITY.md, Findings 3), and a version 1 file has no checksum
 * to refuse them before libhdf5 parses it. So the readers first read such a file completely in a child process
 * (fork; address space, CPU time and wall time bounded; no core file), and only when that child finished the read
 * cleanly do they read it again in this process. A child killed by a signal, one past its deadline or one that failed
 * is BR_EFORMAT naming the file and what happened (a failed read: the child's own status and message). A version 2
 * file (header checked) is read in-process at once: libhdf5 only sees bytes whose digest matched. */
#define H5LOG_GUARD_SECONDS_DEFAULT 20 /* wall seconds for the child's read, plus 1 s per 64 MiB of file */
/* Seconds for the guard's child (br_tuning.h5_guard_s, BITROLL_H5_GUARD_SECONDS); 0 turns the guard off (version 1
 * files are then read by libhdf5 in this process directly, as before the guard; for debuggers). Process-wide: set it
 * before reading, not while another thread reads. Returns the previous value. */
int h5log_guard_set(int seconds);
/* What the guard did in this process (the fuzz harness prints it: contained libhdf5 crashes are counted, not hidden). */
typedef struct {
    long runs;     /* children started */
    long clean;    /* finished the read: the file is then read in-process */
    long failed;   /* the read failed cleanly in the child (its message is returned; libhdf5 is not run here) */
    long signaled; /* killed by a signal: a crash inside libhdf5 (or the CPU / memory bounds) */
    long timeouts; /* killed at the wall deadline: libhdf5 did not finish */
    long other;    /* exited without reporting (a sanitizer's report, exit() from a library) */
} h5log_guard_counts;
h5log_guard_counts h5log_guard_stats(void);
/* For tests: when set, called in the guard's child right after fork (the fuzz harness drops libFuzzer's death
 * callback there, so a sanitizer report in the child is printed but not saved as a finding of the harness). */
extern void (*h5log_test_in_guard_child)(void);

/* Writes `path` atomically: path.tmp.<pid> (written on disk as it is built), root attribute complete=1 last, the
 * integrity header, fsync, rename.
 * On failure the temporary file is removed and an existing `path` is left untouched; a SIGTERM, SIGINT or SIGHUP
 * left at its default action removes it too (the process then ends as the signal says). Failures to write the
 * temporary file (disk full: ENOSPC, EIO, EFBIG) are BR_ERUNTIME; a path that cannot be created is BR_EIO. */
br_status h5log_rollouts_write(const char *path, const h5log_rollouts *r, const h5log_provenance *p);
/* Reads and validates a rollouts file into *out (zeroed first; freed again on failure).
 * meta may be NULL. A file without the integrity header is read in the guard's child first (h5log_guard_set). */
br_status h5log_rollouts_read(const char *path, h5log_rollouts *out, h5log_meta *meta);
/* The file fingerprint of a rollouts set, as h5log_rollouts_read reports it (docs/FORMAT.md). */
br_status h5log_rollouts_fingerprint(const h5log_rollouts *r, uint64_t *out);

/* rollouts_fingerprint_hex: 16 lowercase hex digits (h5log_meta.fingerprint_hex of the rollouts file). */
br_status h5log_scores_write(const char *path, const h5log_scores *s, const h5log_provenance *p,
                             const char *rollouts_fingerprint_hex);
br_status h5log_scores_read(const char *path, h5log_scores *out, h5log_meta *meta);
/* For tests: when set, called right after a writer has created its temporary file (a test raises a signal there). */
extern void (*h5log_test_after_tmp)(const char *tmp);
br_status h5log_scores_fingerprint(const h5log_scores *s, uint64_t *out);

/* ---- streaming writers: the file is written on disk as it is built (the writer holds one piece of one dataset, never
 * the set), so the caller can produce the rows from wherever they are (the results journal) in bounded memory. The
 * bytes do not depend on piece_bytes, and (but for a rollouts file of more than 65,536 rows with texts: logging/h5log.c
 * says why) are those the one-call writers wrote for the same rows before they went through these. */

/* The datasets, in the order they are written (scores files: sample_id, completion_offsets, logprobs, logits_digest). */
typedef enum {
    H5LOG_F_SAMPLE_ID, H5LOG_F_PROMPT_INDEX, H5LOG_F_SAMPLE_INDEX, H5LOG_F_PROMPT_OFFSETS, H5LOG_F_PROMPT_TOKENS,
    H5LOG_F_COMPLETION_OFFSETS, H5LOG_F_COMPLETION_TOKENS, H5LOG_F_LOGPROBS, H5LOG_F_LOGITS_DIGEST,
    H5LOG_F_FINISH_REASON, H5LOG_F_TEMPERATURE, H5LOG_F_TOP_P, H5LOG_F_TOP_K, H5LOG_F_SEED,
    H5LOG_F_PROMPT_TEXT, H5LOG_F_COMPLETION_TEXT, H5LOG_F_FULL_TEXT, H5LOG_F_COUNT
} h5log_field;

#define H5LOG_TEXT_PROMPT 1
#define H5LOG_TEXT_COMPLETION 2
#define H5LOG_TEXT_FULL 4
#define H5LOG_PIECE_BYTES ((int64_t)1 << 16) /* the default piece: 64 KiB of elements, one chunk (texts: 256 strings) */
#define H5LOG_PIECE_MIN ((int64_t)64)        /* smaller budgets are raised to this (h5log.c says why) */

typedef struct {
    int64_t n, P, T; /* rows, prompt tokens (rollouts only), completion tokens */
    int texts;       /* rollouts: H5LOG_TEXT_* bits of the text datasets to write */
    /* Fills elements [start, start + count) of dataset f into buf, typed as the h5log_rollouts / h5log_scores array of
     * that name. Text datasets: buf is (count) char *, each a malloc'd UTF-8 string the writer frees. Called dataset by
     * dataset in h5log_field order; a numeric dataset's pieces from start 0 upwards without gaps or overlaps, a text
     * dataset's in an order of the writer's (every row once). A failure ends the write. */
    br_status (*fill)(void *ctx, h5log_field f, int64_t start, int64_t count, void *buf);
    void *ctx;
    int64_t piece_bytes; /* the most bytes asked for at once (texts: piece_bytes / 256 strings, at least one); 0:
                          * H5LOG_PIECE_BYTES; at least H5LOG_PIECE_MIN */
} h5log_source;

/* As h5log_rollouts_write / h5log_scores_write (atomic: temp file, complete=1 last, integrity header, fsync, rename;
 * on any failure the temporary is removed and an existing path is untouched), the rows coming from src. What the
 * one-shot writers check before they start is checked piece by piece here (sample ids increase, offsets start at 0,
 * never decrease and end at P / T, finish reasons are known, no string is NULL): BR_EINVAL naming the element. */
br_status h5log_rollouts_write_from(const char *path, const h5log_source *src, const h5log_provenance *p);
br_status h5log_scores_write_from(const char *path, const h5log_source *src, const h5log_provenance *p,
                                  const char *rollouts_fingerprint_hex);

/* Free the arrays/strings (not the struct itself) and zero it; NULL is a no-op. */
void h5log_rollouts_free(h5log_rollouts *r);
void h5log_scores_free(h5log_scores *s);
void h5log_meta_free(h5log_meta *m);

#endif
