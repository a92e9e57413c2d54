/* bitroll CLI entry point: dispatches the verbs (DESIGN 5). */
#include <stdio.h>
#include <string.h>

#include "common/br.h"
#include "cli/cli.h"
#include "cli/cli_tokenize.h"

typedef struct {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *help;
} verb;

static const verb VERBS[] = {
    {"info", cli_info_main, "validate a checkpoint and print its shapes, dtypes and fingerprint"},
    {"generate", cli_generate_main, "sample completions for a prompts file -> rollouts file (HDF5)"},
    {"score", cli_score_main, "recompute log-probs teacher-forced from a rollouts file -> scores file"},
    {"verify", cli_verify_main, "compare rollouts and scores bit for bit (exit 0 iff KL = 0 exactly)"},
    {"show", cli_show_main, "print the samples of a rollouts file as text (or ids)"},
    {"worker", cli_worker_main, "a persistent generate job for RL loops: JSON requests on stdin, new weights by broadcast"},
    {"bench", cli_bench_main, "end-to-end generate/score throughput per kernel mode and batch (a benchmark)"},
    {"tokenize", cli_tokenize_main, "text on stdin -> token ids (tokenizer.json)"},
    {"detokenize", cli_detokenize_main, "token ids on stdin -> text"},
};

static void usage(FILE *f) {
    fprintf(f,
            "bitroll %s: deterministic LLM rollouts whose log-probs a trainer recomputes bit for bit\n"
            "\n"
            "usage: bitroll <verb> [options]      (bitroll <verb> --help for a verb's options)\n"
            "\n"
            "verbs:\n",
            BR_VERSION);
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++) fprintf(f, "  %-11s %s\n", VERBS[i].name, VERBS[i].help);
    fprintf(f, "\nexit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 runtime failure\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("bitroll %s (git %s)\n", BR_VERSION, BR_GIT_REV);
        return 0;
    }
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (!strcmp(argv[1], VERBS[i].name)) return VERBS[i].main(argc - 1, argv + 1);
    fprintf(stderr, "bitroll: unknown verb '%s' (bitroll --help lists them)\n", argv[1]);
    return 2;
}
