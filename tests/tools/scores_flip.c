/* Test tool: copies a scores file with one bit of one log-prob flipped (the lowest mantissa bit of token
 * INDEX), keeping its provenance, so that `bitroll verify` must report a mismatch.
 * usage: scores_flip IN.h5 OUT.h5 INDEX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logging/h5log.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: scores_flip IN.h5 OUT.h5 INDEX\n");
        return 2;
    }
    h5log_scores s = {0};
    h5log_meta m = {0};
    int rc = 0;
    if (h5log_scores_read(argv[1], &s, &m) != BR_OK) {
        fprintf(stderr, "scores_flip: %s\n", br_last_error());
        return 2;
    }
    long long idx = atoll(argv[3]);
    if (idx < 0 || idx >= s.completion_offsets[s.n]) {
        fprintf(stderr, "scores_flip: index %lld outside [0, %lld)\n", idx, (long long)s.completion_offsets[s.n]);
        rc = 2;
        goto done;
    }
    uint32_t bits;
    memcpy(&bits, &s.logprobs[idx], 4);
    bits ^= 1u;
    memcpy(&s.logprobs[idx], &bits, 4);
    h5log_provenance p = {m.engine_version, m.git_rev,     m.compiler,    m.model_dir,     m.model_fingerprint,
                          m.kernel_mode,    m.device_names, m.config_json, m.lib_versions, m.mpi_version, m.world_size, m.weight_version};
    if (h5log_scores_write(argv[2], &s, &p, m.rollouts_fingerprint) != BR_OK) {
        fprintf(stderr, "scores_flip: %s\n", br_last_error());
        rc = 2;
    }
done:
    h5log_scores_free(&s);
    h5log_meta_free(&m);
    return rc;
}
