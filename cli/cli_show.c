/* `bitroll show`: the samples of a rollouts file as text (or ids). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "common/tuning.h"
#include "logging/h5log.h"
#include "rollout/scheduler.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: bitroll show ROLLOUTS.h5 [--ids] [--limit N]\n"
            "\n"
            "Prints each sample of a rollouts file: sample id, prompt index, finish reason, then the prompt and the\n"
            "completion as text (as stored by generate with a tokenizer) or, with --ids or when the file has no\n"
            "text, as token ids. On a terminal the completion is printed in bold right after its prompt; the output\n"
            "is plain text when stdout is not a terminal, under mpirun, or when NO_COLOR is set.\n"
            "\n"
            "  --ids        print token ids instead of text\n"
            "  --limit N    at most N samples (default: all)\n");
}

/* Bold only for a person at a terminal: not into files or pipes, not under mpirun (whose pty makes stdout look
 * like a terminal even when redirected), not with NO_COLOR (https://no-color.org). */
static int use_color(void) {
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc) return 0;
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) return 0;
    const char *term = getenv("TERM");
    if (term && !strcmp(term, "dumb")) return 0;
    return isatty(STDOUT_FILENO);
}

int cli_show_main(int argc, char **argv) {
    const char *path = NULL;
    int ids = 0;
    int64_t limit = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--ids")) {
            ids = 1;
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (cli_parse_int("--limit", argv[++i], 0, INT64_MAX, &limit) != BR_OK) {
                fprintf(stderr, "bitroll show: %s\n", br_last_error());
                return 2;
            }
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "bitroll show: unexpected argument '%s' (bitroll show --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "bitroll show: expected ROLLOUTS.h5 (bitroll show --help)\n");
        return 2;
    }
    h5log_rollouts r = {0};
    br_tuning tuning; /* BITROLL_H5_GUARD_SECONDS: the read guard of files without the integrity header */
    br_status rc = br_tuning_from_env(&tuning);
    if (rc == BR_OK) {
        (void)h5log_guard_set(tuning.h5_guard_s);
        rc = h5log_rollouts_read(path, &r, NULL);
    }
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll show: %s\n", br_last_error());
        return br_exit_code(rc);
    }
    const int color = use_color();
    for (int64_t i = 0; i < r.n && (limit < 0 || i < limit); i++) {
        int fr = r.finish_reason[i];
        printf("=== sample %lld (prompt %lld, sample %d, %lld tokens, finish %s)\n", (long long)r.sample_id[i],
               (long long)r.prompt_index[i], r.sample_index[i],
               (long long)(r.completion_offsets[i + 1] - r.completion_offsets[i]), br_finish_name(fr));
        if (!ids && r.completion_text && r.prompt_text) {
            if (color) /* the completion in bold, right after its prompt */
                printf("%s\x1b[1m%s\x1b[0m\n", r.prompt_text[i], r.completion_text[i]);
            else
                printf("prompt: %s\ncompletion: %s\n", r.prompt_text[i], r.completion_text[i]);
            continue;
        }
        printf("prompt:");
        for (int64_t t = r.prompt_offsets[i]; t < r.prompt_offsets[i + 1]; t++) printf(" %d", r.prompt_tokens[t]);
        printf("\ncompletion:");
        for (int64_t t = r.completion_offsets[i]; t < r.completion_offsets[i + 1]; t++)
            printf(" %d", r.completion_tokens[t]);
        printf("\n");
    }
    h5log_rollouts_free(&r);
    return 0;
}
