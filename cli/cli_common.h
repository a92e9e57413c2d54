/* What the generate and score verbs share: MPI start-up, the options both take, and the failure report. */
#ifndef CLI_COMMON_H
#define CLI_COMMON_H

#include <getopt.h>

#include "api/driver.h"
#include "comm/comm.h"

enum {
    OPT_MODEL = 256, OPT_PROMPTS, OPT_OUT, OPT_N, OPT_TEMP, OPT_TOPP, OPT_TOPK, OPT_MAXNEW, OPT_SEED, OPT_STOP,
    OPT_NOSTOP, OPT_DEVICE, OPT_KERNELS, OPT_MBT, OPT_MAXSEQS, OPT_CHUNK, OPT_PAGE, OPT_PRINTCFG, OPT_QUIET,
    OPT_ROLLOUTS, OPT_TOKENIZER, OPT_RANDOM, OPT_WSEED, OPT_TP, OPT_WVERSION, OPT_OTHERPOLICY, OPT_GPUMEM, OPT_RESUME, OPT_COMMTIMEOUT
};

#define CLI_RUN_LONG_OPTS                                                                                  \
    {"model", required_argument, 0, OPT_MODEL}, {"out", required_argument, 0, OPT_OUT},                    \
        {"device", required_argument, 0, OPT_DEVICE}, {"kernels", required_argument, 0, OPT_KERNELS},      \
        {"max-batch-tokens", required_argument, 0, OPT_MBT}, {"max-seqs", required_argument, 0, OPT_MAXSEQS}, \
        {"prefill-chunk", required_argument, 0, OPT_CHUNK}, {"page-size", required_argument, 0, OPT_PAGE}, \
        {"print-config", no_argument, 0, OPT_PRINTCFG}, {"quiet", no_argument, 0, OPT_QUIET},              \
        {"random-weights", required_argument, 0, OPT_RANDOM}, {"weights-seed", required_argument, 0, OPT_WSEED}, \
        {"tp", required_argument, 0, OPT_TP}, {"weight-version", required_argument, 0, OPT_WVERSION},     \
        {"gpu-memory-utilization", required_argument, 0, OPT_GPUMEM}, {"resume", no_argument, 0, OPT_RESUME},   \
        {"comm-timeout", required_argument, 0, OPT_COMMTIMEOUT}, {"help", no_argument, 0, 'h'}

/* The help lines of the shared options. */
#define CLI_COMMON_HELP                                                                                        \
    "  --device cpu|cuda       (default cpu)\n"                                                             \
    "  --kernels MODE          invariant|fp32|standard (default invariant; standard: cuda only)\n"          \
    "  --max-batch-tokens N    tokens per forward step (default: cpu 256; cuda from the memory plan, <= 8192)\n" \
    "  --max-seqs N            sequences in flight per rank (default: cpu 64; cuda as many as fit, <= 512)\n" \
    "  --gpu-memory-utilization F  cuda: share of the free device memory to plan with (default 0.9)\n"       \
    "  --prefill-chunk N       prompt tokens per sequence per step (default 64)\n"                          \
    "  --page-size N           KV cache page size in tokens (default 16)\n"                                 \
    "  --tp N                  tensor parallelism over groups of N ranks (same bits for every N)\n"         \
    "  --print-config          print the resolved configuration (JSON) and continue\n"                      \
    "  --quiet                 no progress on stderr\n"                                                     \
    "  --resume                continue an interrupted run from its journal OUT.parts: results already there are\n" \
    "                          not recomputed; the file equals an uninterrupted run's bit for bit\n"         \
    "  --comm-timeout SECONDS  several ranks: a rank that does not answer for SECONDS (stopped, dead) makes\n" \
    "                          every rank exit with code 3 naming it (default 30; 0 = off)\n"               \
    "  -h, --help              this help\n"

/* Options common to generate and score; returns 1 if handled, 0 if not, -1 on a bad value (message set). */
int cli_run_opt(driver_opts *o, int c, const char *arg);
/* After parsing: starts the rank watchdog (comm_watch_start, o->tuning.comm_timeout_s), then the checks every rank
 * makes before any work (backend, device binding, output path: a regular file
 * path in a writable directory that is not the input in_path, --tp split), agreed over the world. */
br_status cli_run_prepare(comm_world *world, driver_opts *o, const char *in_flag, const char *in_path);
/* Prints the failure once (rank 0) and maps it to the exit code. */
int cli_run_fail(const comm_world *w, const char *verb, br_status rc);
/* Starts MPI (and the per-rank thread count), runs fn, finalizes. */
int cli_with_mpi(int argc, char **argv, int (*fn)(comm_world *, int, char **));

#endif
