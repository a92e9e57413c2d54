/* `bitroll verify`: bitroll_verify_files (api/verify.c) and its report. */
#include <stdio.h>
#include <string.h>

#include "bitroll/bitroll.h"
#include "cli/cli.h"
#include "cli/cli_common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: bitroll verify ROLLOUTS.h5 SCORES.h5 [--quiet]\n"
            "\n"
            "Compares every completion token's log-prob and logits digest between a rollouts file (sampler)\n"
            "and a scores file (trainer-side recomputation) bit for bit, and prints: tokens compared, log-prob\n"
            "mismatches, digest mismatches, max |delta log-prob| and the mean KL estimate\n"
            "mean(logprob_rollout - logprob_score) over the sampled tokens, then the result line.\n"
            "\n"
            "  --quiet      print only the result line\n"
            "\n"
            "Exit: 0 all bitwise equal, 1 any mismatch, 2 unreadable files or files that do not belong together.\n");
}

static int verify_run(int argc, char **argv) {
    int quiet = 0;
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (argv[i][0] == '-' || n_paths == 2) {
            fprintf(stderr, "bitroll verify: unexpected argument '%s' (bitroll verify --help)\n", argv[i]);
            return 2;
        } else {
            paths[n_paths++] = argv[i];
        }
    }
    if (n_paths != 2) {
        fprintf(stderr, "bitroll verify: expected ROLLOUTS.h5 SCORES.h5 (bitroll verify --help)\n");
        return 2;
    }
    bitroll_verify_report r;
    bitroll_error err;
    const bitroll_status st = bitroll_verify_files(paths[0], paths[1], &r, &err);
    if (st != BITROLL_OK && st != BITROLL_MISMATCH) {
        fprintf(stderr, "bitroll verify: %s\n", err.message);
        return st == BITROLL_ENOMEM || st == BITROLL_ERUNTIME ? 3 : 2;
    }
    if (!quiet) {
        printf("samples               %lld\n", (long long)r.samples);
        printf("tokens compared       %lld\n", (long long)r.tokens);
        printf("logprob mismatches    %lld\n", (long long)r.logprob_mismatches);
        printf("digest mismatches     %lld\n", (long long)r.digest_mismatches);
        printf("max |delta logprob|   %.9g\n", r.max_abs_delta);
        printf("mean KL estimate      %.9g\n", r.kl_estimate);
        if (r.first_sample_id >= 0)
            printf("first mismatch        sample %lld, completion token %lld: logprob %.9g vs %.9g, digest %016llx vs %016llx\n",
                   (long long)r.first_sample_id, (long long)r.first_token, r.first_logprob[0], r.first_logprob[1],
                   (unsigned long long)r.first_digest[0], (unsigned long long)r.first_digest[1]);
    }
    printf("result                %s\n", st == BITROLL_MISMATCH ? "MISMATCH" : "bitwise equal (KL = 0)");
    return st == BITROLL_MISMATCH ? 1 : 0;
}

static int verify_main_mpi(comm_world *world, int argc, char **argv) {
    /* under mpirun only rank 0 reads and prints; everyone exits with its code */
    int code = world->rank == 0 ? verify_run(argc, argv) : 0;
    comm_bcast_int(world, &code);
    return code;
}

int cli_verify_main(int argc, char **argv) { return cli_with_mpi(argc, argv, verify_main_mpi); }
