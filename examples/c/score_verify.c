/* score_verify: the trainer's side of bitroll through libbitroll's C API (include/bitroll/bitroll.h).
 *
 *   score_verify MODEL_DIR ROLLOUTS.h5 SCORES.h5
 *
 * Opens a CPU engine on the Hugging Face checkpoint MODEL_DIR, reads a rollouts file (written by `bitroll generate`),
 * recomputes teacher-forced the log-prob and logits digest of every completion token into SCORES.h5, then compares
 * the two files bit for bit and prints the report. Exit 0 iff they are bitwise equal (sampler/trainer KL exactly 0),
 * 1 on a mismatch, 2 on any error (its message is printed on stderr). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <bitroll/bitroll.h>

static int failed(const char *what, bitroll_status st, const char *message) {
    fprintf(stderr, "score_verify: %s failed: %s: %s\n", what, bitroll_status_name(st),
            message && message[0] ? message : "(no message)");
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: score_verify MODEL_DIR ROLLOUTS.h5 SCORES.h5\n");
        return 2;
    }
    const char *model_dir = argv[1], *rollouts_path = argv[2], *scores_path = argv[3];
    printf("libbitroll            %s (API %d)\n", bitroll_version(), bitroll_api_version());
    if (bitroll_api_version() != BITROLL_API_VERSION) {
        fprintf(stderr, "score_verify: built against API %d of bitroll.h, but the library implements API %d\n",
                BITROLL_API_VERSION, bitroll_api_version());
        return 2;
    }

    /* 1. an engine on the checkpoint (CPU, invariant kernels: the defaults) */
    bitroll_error err;
    memset(&err, 0, sizeof err);
    bitroll_engine_opts opts;
    bitroll_engine_opts_init(&opts);
    opts.model_dir = model_dir;
    bitroll_engine *engine = NULL;
    bitroll_status st = bitroll_engine_open(&opts, &engine, &err);
    if (st != BITROLL_OK) return failed("bitroll_engine_open", st, err.message);
    bitroll_engine_info info;
    st = bitroll_engine_get_info(engine, &info);
    if (st != BITROLL_OK) {
        int rc = failed("bitroll_engine_get_info", st, bitroll_engine_error(engine));
        bitroll_engine_close(engine);
        return rc;
    }
    printf("model                 %s (%s, %" PRId64 " parameters, fingerprint %s)\n", model_dir, info.model_type,
           info.n_params, info.fingerprint);

    /* 2. the rollouts file */
    bitroll_rollouts *rollouts = NULL;
    st = bitroll_rollouts_read(rollouts_path, &rollouts, &err);
    if (st != BITROLL_OK) {
        bitroll_engine_close(engine);
        return failed("bitroll_rollouts_read", st, err.message);
    }
    printf("rollouts              %s (%" PRId64 " samples, %" PRId64 " completion tokens, model %s, kernels %s)\n",
           rollouts_path, rollouts->n, rollouts->completion_offsets[rollouts->n], rollouts->model_fingerprint,
           rollouts->kernel_mode);

    /* 3. the trainer-side recomputation, written as a scores file */
    st = bitroll_score_rollouts(engine, rollouts, scores_path, 0);
    if (st != BITROLL_OK) {
        int rc = failed("bitroll_score_rollouts", st, bitroll_engine_error(engine));
        bitroll_rollouts_free(rollouts);
        bitroll_engine_close(engine);
        return rc;
    }
    bitroll_rollouts_free(rollouts);
    bitroll_engine_close(engine);
    printf("scores                %s\n", scores_path);

    /* 4. rollouts vs scores, bit for bit */
    bitroll_verify_report rep;
    memset(&rep, 0, sizeof rep);
    st = bitroll_verify_files(rollouts_path, scores_path, &rep, &err);
    if (st != BITROLL_OK && st != BITROLL_MISMATCH) return failed("bitroll_verify_files", st, err.message);
    printf("samples               %" PRId64 "\n", rep.samples);
    printf("tokens compared       %" PRId64 "\n", rep.tokens);
    printf("logprob mismatches    %" PRId64 "\n", rep.logprob_mismatches);
    printf("digest mismatches     %" PRId64 "\n", rep.digest_mismatches);
    printf("max |delta logprob|   %.9g\n", rep.max_abs_delta);
    printf("mean KL estimate      %.9g\n", rep.kl_estimate);
    if (st == BITROLL_MISMATCH) {
        printf("first mismatch        sample %" PRId64 ", completion token %" PRId64
               ": logprob %.9g vs %.9g, digest %016" PRIx64 " vs %016" PRIx64 "\n",
               rep.first_sample_id, rep.first_token, rep.first_logprob[0], rep.first_logprob[1], rep.first_digest[0],
               rep.first_digest[1]);
        printf("result                MISMATCH\n");
        return 1;
    }
    printf("result                bitwise equal (KL = 0)\n");
    return 0;
}
