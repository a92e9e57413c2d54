/* `bitroll score`: options -> driver_score (api/driver_score.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: bitroll score --rollouts FILE.h5 --out SCORES.h5 [options]\n"
            "       mpirun -np N bitroll score ...\n"
            "\n"
            "Recomputes, teacher-forced, the log-prob and logits digest of every completion token of a rollouts\n"
            "file, packing sequences into batches of its own shape, and writes a scores file (docs/FORMAT.md).\n"
            "The checkpoint's fingerprint must equal the one the rollouts file records.\n"
            "\n"
            "  --model DIR             checkpoint (default: the bundled %s)\n"
            "  --random-weights CFG    instead of --model (the same CFG and --weights-seed as generate)\n"
            "  --rollouts FILE         rollouts file written by bitroll generate\n"
            "  --out FILE              scores file to write (written atomically)\n"
            "  --allow-other-policy    --model may differ from the weights that generated the rollouts (PPO's later\n"
            "                          minibatches: new-policy log-probs of old samples); the file records the scoring\n"
            "                          model's fingerprint and --weight-version V, and verify refuses such a pair\n"
            CLI_COMMON_HELP
            "\n"
            "Exit: 0 ok, 2 bad input (wrong model, unreadable or incomplete file), 3 runtime failure.\n",
            BR_DEFAULT_MODEL);
}

static int score_main_mpi(comm_world *world, int argc, char **argv) {
    static const struct option opts[] = {CLI_RUN_LONG_OPTS, {"rollouts", required_argument, 0, OPT_ROLLOUTS},
                                         {"allow-other-policy", no_argument, 0, OPT_OTHERPOLICY}, {0, 0, 0, 0}};
    driver_opts o;
    driver_opts_default(&o, "score");
    const char *rollouts = NULL;
    br_status rc = br_tuning_from_env(&o.tuning);
    int c;
    optind = 1;
    opterr = 0;
    while (rc == BR_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int h = cli_run_opt(&o, c, optarg);
        if (h == 1) continue;
        if (h == -1) { rc = BR_EINVAL; break; }
        switch (c) {
        case 'h': if (world->rank == 0) usage(stdout); return 0;
        case OPT_ROLLOUTS: rollouts = optarg; break;
        case OPT_OTHERPOLICY: o.allow_other_policy = 1; break;
        default: rc = br_fail(BR_EINVAL, "unknown or incomplete option '%s' (bitroll score --help)", argv[optind - 1]);
        }
    }
    if (rc == BR_OK && optind < argc) rc = br_fail(BR_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == BR_OK && !rollouts) rc = br_fail(BR_EINVAL, "--rollouts FILE is required (bitroll score --help)");
    if (rc == BR_OK && !o.out) rc = br_fail(BR_EINVAL, "--out FILE is required (bitroll score --help)");
    if (rc == BR_OK && o.weight_version && !o.allow_other_policy)
        rc = br_fail(BR_EINVAL, "--weight-version: score records the rollouts file's weight version (it names the "
                                "scoring weights only with --allow-other-policy)");
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = cli_run_prepare(world, &o, "--rollouts", rollouts);
    if (rc == BR_OK) rc = driver_score(world, &o, rollouts);
    return rc == BR_OK ? 0 : cli_run_fail(world, "score", rc);
}

int cli_score_main(int argc, char **argv) { return cli_with_mpi(argc, argv, score_main_mpi); }
