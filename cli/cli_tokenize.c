/* `bitroll tokenize` and `bitroll detokenize`: byte-exact stdin -> ids and ids -> stdout, for checking
 * prompts against the model's tokenizer and for scripts. */
#include "cli/cli_tokenize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/br.h"
#include "policy/tokenizer/tokenizer.h"

static void usage(FILE *f, const char *verb) {
    if (!strcmp(verb, "tokenize"))
        fprintf(f, "usage: bitroll tokenize --tokenizer PATH [--add-special-tokens]\n"
                   "  Reads UTF-8 text on stdin (exactly as given, newlines included) and prints its token ids,\n"
                   "  space-separated, on one line. PATH is a tokenizer.json or a model directory.\n"
                   "  --add-special-tokens  add BOS/EOS as tokenizer_config.json / the post_processor say\n");
    else
        fprintf(f, "usage: bitroll detokenize --tokenizer PATH [--skip-special-tokens]\n"
                   "  Reads whitespace-separated token ids on stdin and writes the decoded text to stdout,\n"
                   "  exactly (no newline added). PATH is a tokenizer.json or a model directory.\n"
                   "  --skip-special-tokens  drop special tokens (BOS, EOS, <|im_start|>, ...)\n");
}

/* Parses the shared options; returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, const char *flag, const char **path, int *flag_set) {
    const char *verb = argv[0];
    *path = NULL;
    *flag_set = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout, verb);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bitroll %s: --tokenizer needs a PATH\n", verb);
                return 2;
            }
            *path = argv[++i];
        } else if (!strcmp(argv[i], flag)) {
            *flag_set = 1;
        } else {
            fprintf(stderr, "bitroll %s: unknown option '%s' (see --help)\n", verb, argv[i]);
            return 2;
        }
    }
    if (!*path) {
        fprintf(stderr, "bitroll %s: --tokenizer PATH is required (see --help)\n", verb);
        return 2;
    }
    return -1;
}

static br_status read_stdin(char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    if (!p) return br_fail(BR_ENOMEM, "stdin: out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return br_fail(BR_ENOMEM, "stdin: out of memory (%zu bytes)", cap * 2);
            }
            p = q;
            cap *= 2;
        }
        size_t k = fread(p + n, 1, cap - 1 - n, stdin);
        n += k;
        if (k == 0) break;
    }
    if (ferror(stdin)) {
        free(p);
        return br_fail(BR_EIO, "stdin: read failed: %s", strerror(errno));
    }
    p[n] = 0;
    *out = p;
    *len = n;
    return BR_OK;
}

int cli_tokenize_main(int argc, char **argv) {
    const char *path;
    int add_special, rc = parse_args(argc, argv, "--add-special-tokens", &path, &add_special);
    if (rc >= 0) return rc;
    tok_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&text, &len)) ||
        (st = tok_encode(tok, text, len, add_special, &ids, &n)))
        goto cleanup;
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (fflush(stdout) != 0 || ferror(stdout)) st = br_fail(BR_EIO, "stdout: write failed: %s", strerror(errno));
cleanup:
    if (st) fprintf(stderr, "bitroll tokenize: %s\n", br_last_error());
    free(ids);
    free(text);
    tok_free(tok);
    return br_exit_code(st);
}

int cli_detokenize_main(int argc, char **argv) {
    const char *path;
    int skip, rc = parse_args(argc, argv, "--skip-special-tokens", &path, &skip);
    if (rc >= 0) return rc;
    tok_tokenizer *tok = NULL;
    char *in = NULL, *text = NULL;
    size_t len = 0, n = 0, cap = 0, tlen = 0;
    int32_t *ids = NULL;
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&in, &len))) goto cleanup;
    if ((size_t)strlen(in) != len) {
        st = br_fail(BR_EINVAL, "stdin: contains a NUL byte");
        goto cleanup;
    }
    for (char *p = in;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && !(*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r' || *end == '\v' || *end == '\f'))) {
            size_t w = strcspn(p, " \t\n\r\v\f");
            st = br_fail(BR_EINVAL, "stdin: token %zu '%.*s' is not a non-negative integer id", n, (int)(w > 40 ? 40 : w), p);
            goto cleanup;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            int32_t *q = realloc(ids, cap * sizeof *q);
            if (!q) {
                st = br_fail(BR_ENOMEM, "stdin: out of memory");
                goto cleanup;
            }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if ((st = tok_decode(tok, ids, n, skip, &text, &tlen))) goto cleanup;
    if ((tlen && fwrite(text, 1, tlen, stdout) != tlen) || fflush(stdout) != 0)
        st = br_fail(BR_EIO, "stdout: write failed: %s", strerror(errno));
cleanup:
    if (st) fprintf(stderr, "bitroll detokenize: %s\n", br_last_error());
    free(ids);
    free(in);
    free(text);
    tok_free(tok);
    return br_exit_code(st);
}
