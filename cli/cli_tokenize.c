/* `bitroll tokenize` and `bitroll detokenize`: byte-exact stdin -> ids and ids -> stdout, for checking
 * prompts against the model's tokenizer and for scripts; --jsonl does the same per JSON record. */
#include "cli/cli_tokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_jsonl.h"
#include "common/br.h"
#include "policy/tokenizer/tokenizer.h"

static void usage(FILE *f, const char *verb) {
    if (!strcmp(verb, "tokenize"))
        fprintf(f, "usage: bitroll tokenize --tokenizer PATH [--add-special-tokens] [--jsonl]\n"
                   "  Reads UTF-8 text on stdin (exactly as given, newlines included) and prints its token ids,\n"
                   "  space-separated, on one line. PATH is a tokenizer.json or a model directory.\n"
                   "  --add-special-tokens  add BOS/EOS as tokenizer_config.json / the post_processor say\n"
                   "  --jsonl               stdin holds one JSON object per line with a string field \"text\";\n"
                   "                        each is printed on one line with \"ids\": [...] added (an existing\n"
                   "                        \"ids\" is replaced), every other field kept as written. Blank lines\n"
                   "                        are skipped; an error names the line and field, and prints nothing\n");
    else
        fprintf(f, "usage: bitroll detokenize --tokenizer PATH [--skip-special-tokens] [--jsonl]\n"
                   "  Reads token ids on stdin, whitespace-separated (1 2 3) or as one JSON list ([1, 2, 3]), and\n"
                   "  writes the decoded text to stdout, exactly (no newline added). PATH is a tokenizer.json or\n"
                   "  a model directory.\n"
                   "  --skip-special-tokens  drop special tokens (BOS, EOS, <|im_start|>, ...)\n"
                   "  --jsonl                stdin holds one JSON object per line with a field \"ids\": [...]; each\n"
                   "                         is printed on one line with \"text\": \"...\" added (an existing\n"
                   "                         \"text\" is replaced), every other field kept as written. Blank lines\n"
                   "                         are skipped; an error names the line and field, and prints nothing\n");
}

/* Parses the shared options; returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, const char *flag, const char **path, int *flag_set, int *jsonl) {
    const char *verb = argv[0];
    *path = NULL;
    *flag_set = 0;
    *jsonl = 0;
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
        } else if (!strcmp(argv[i], "--jsonl")) {
            *jsonl = 1;
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

static br_status write_stdout(const char *p, size_t n) {
    if ((n && fwrite(p, 1, n, stdout) != n) || fflush(stdout) != 0 || ferror(stdout))
        return br_fail(BR_EIO, "stdout: write failed: %s", strerror(errno));
    return BR_OK;
}

/* ---------------------------------------------------------------- JSONL records */

/* What a record function needs: the tokenizer and the verb's flag (--add-special-tokens / --skip-special-tokens). */
typedef struct {
    const tok_tokenizer *tok;
    int flag;
} record_ctx;

static br_status tokenize_record(const void *ctx, const char *s, int line, const cJSON *rec, cli_jsonl_buf *out) {
    const tok_tokenizer *tok = ((const record_ctx *)ctx)->tok;
    int add_special = ((const record_ctx *)ctx)->flag;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "text");
    if (!t) return br_fail(BR_EINVAL, "stdin: line %d: field 'text' missing: expected {\"text\": \"...\"}", line);
    if (!cJSON_IsString(t))
        return br_fail(BR_EINVAL, "stdin: line %d: field 'text': expected a string, got %s", line,
                       cli_jsonl_type_name(t));
    int32_t *ids = NULL;
    size_t n = 0;
    cli_jsonl_span r;
    cli_jsonl_buf v = {0};
    br_status st = tok_encode(tok, t->valuestring, strlen(t->valuestring), add_special, &ids, &n);
    if (st != BR_OK) st = br_fail_ctx(st, "stdin: line %d: field 'text'", line);
    if (st == BR_OK) st = cli_jsonl_scan(s, line, "ids", &r);
    if (st == BR_OK) {
        cli_jsonl_ids(&v, ids, n);
        if (v.oom) st = br_fail(BR_ENOMEM, "stdin: line %d: out of memory for %zu ids", line, n);
    }
    if (st == BR_OK) cli_jsonl_put_record(out, s, &r, "ids", v.p, v.n);
    free(v.p);
    free(ids);
    return st;
}

/* A JSON array of token ids: integers in 0 .. INT32_MAX (the tokenizer then checks its vocabulary).
 * `what` names the array in messages ("stdin: line 3: field 'ids'"). */
static br_status json_ids(const cJSON *a, const char *what, int32_t **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!cJSON_IsArray(a))
        return br_fail(BR_EINVAL, "%s: expected an array of token ids, got %s", what, cli_jsonl_type_name(a));
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return br_fail(BR_ENOMEM, "%s: cannot allocate %zu ids", what, n);
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        double x = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
        if (!cJSON_IsNumber(e) || !(x >= 0.0 && x <= 2147483647.0) || (double)(int32_t)x != x) {
            if (cJSON_IsNumber(e))
                br_fail(BR_EINVAL, "%s: element %zu = %.17g: expected a non-negative integer token id", what, i, x);
            else
                br_fail(BR_EINVAL, "%s: element %zu: expected a non-negative integer token id, got %s", what, i,
                        cli_jsonl_type_name(e));
            free(ids);
            return BR_EINVAL;
        }
        ids[i] = (int32_t)x;
    }
    *out = ids;
    *n_out = n;
    return BR_OK;
}

static br_status detokenize_record(const void *ctx, const char *s, int line, const cJSON *rec, cli_jsonl_buf *out) {
    const tok_tokenizer *tok = ((const record_ctx *)ctx)->tok;
    int skip = ((const record_ctx *)ctx)->flag;
    char what[48];
    snprintf(what, sizeof what, "stdin: line %d: field 'ids'", line);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "ids");
    if (!a) return br_fail(BR_EINVAL, "stdin: line %d: field 'ids' missing: expected {\"ids\": [...]}", line);
    int32_t *ids = NULL;
    size_t n = 0, tlen = 0;
    char *text = NULL;
    cli_jsonl_span r;
    cli_jsonl_buf v = {0};
    br_status st = json_ids(a, what, &ids, &n);
    if (st == BR_OK && (st = tok_decode(tok, ids, n, skip, &text, &tlen)) != BR_OK) st = br_fail_ctx(st, "%s", what);
    if (st == BR_OK) st = cli_jsonl_scan(s, line, "text", &r);
    if (st == BR_OK) {
        cli_jsonl_string(&v, text, tlen);
        if (v.oom) st = br_fail(BR_ENOMEM, "stdin: line %d: out of memory for the text", line);
    }
    if (st == BR_OK) cli_jsonl_put_record(out, s, &r, "text", v.p, v.n);
    free(v.p);
    free(text);
    free(ids);
    return st;
}

/* ---------------------------------------------------------------- the verbs */

int cli_tokenize_main(int argc, char **argv) {
    const char *path;
    int add_special, jsonl, rc = parse_args(argc, argv, "--add-special-tokens", &path, &add_special, &jsonl);
    if (rc >= 0) return rc;
    tok_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    cli_jsonl_buf out = {0};
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&text, &len))) goto cleanup;
    if (jsonl) {
        if (strlen(text) != len) {
            st = br_fail(BR_EINVAL, "stdin: contains a NUL byte: expected UTF-8 JSON lines");
            goto cleanup;
        }
        record_ctx ctx = {tok, add_special};
        if ((st = cli_jsonl_each(text, len, tokenize_record, &ctx, &out)) == BR_OK) st = write_stdout(out.p, out.n);
        goto cleanup;
    }
    if ((st = tok_encode(tok, text, len, add_special, &ids, &n))) goto cleanup;
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (fflush(stdout) != 0 || ferror(stdout)) st = br_fail(BR_EIO, "stdout: write failed: %s", strerror(errno));
cleanup:
    if (st) fprintf(stderr, "bitroll tokenize: %s\n", br_last_error());
    free(out.p);
    free(ids);
    free(text);
    tok_free(tok);
    return br_exit_code(st);
}

/* Whitespace-separated ids, or one JSON list of ids ("[1, 2, 3]"). */
static br_status parse_ids(const char *in, int32_t **out, size_t *n_out) {
    size_t n = 0, cap = 0;
    int32_t *ids = NULL;
    *out = NULL;
    *n_out = 0;
    const char *p = in;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f') p++;
    if (*p == '[') {
        const char *end = NULL;
        cJSON *a = cJSON_ParseWithOpts(in, &end, 1);
        if (!a)
            return br_fail(BR_EINVAL, "stdin: malformed JSON list near byte %d: expected [id, id, ...]",
                           end ? (int)(end - in) + 1 : 1);
        br_status st = json_ids(a, "stdin: JSON list", out, n_out);
        cJSON_Delete(a);
        return st;
    }
    if (*p == '{') return br_fail(BR_EINVAL, "stdin: a JSON object: JSON records ({\"ids\": [...]} per line) need --jsonl");
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && !(*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r' || *end == '\v' || *end == '\f'))) {
            size_t w = strcspn(p, " \t\n\r\v\f");
            free(ids);
            return br_fail(BR_EINVAL, "stdin: token %zu '%.*s' is not a non-negative integer id", n, (int)(w > 40 ? 40 : w),
                           p);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            int32_t *q = realloc(ids, cap * sizeof *q);
            if (!q) {
                free(ids);
                return br_fail(BR_ENOMEM, "stdin: out of memory");
            }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    *n_out = n;
    return BR_OK;
}

int cli_detokenize_main(int argc, char **argv) {
    const char *path;
    int skip, jsonl, rc = parse_args(argc, argv, "--skip-special-tokens", &path, &skip, &jsonl);
    if (rc >= 0) return rc;
    tok_tokenizer *tok = NULL;
    char *in = NULL, *text = NULL;
    size_t len = 0, n = 0, tlen = 0;
    int32_t *ids = NULL;
    cli_jsonl_buf out = {0};
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&in, &len))) goto cleanup;
    if ((size_t)strlen(in) != len) {
        st = br_fail(BR_EINVAL, "stdin: contains a NUL byte");
        goto cleanup;
    }
    if (jsonl) {
        record_ctx ctx = {tok, skip};
        if ((st = cli_jsonl_each(in, len, detokenize_record, &ctx, &out)) == BR_OK) st = write_stdout(out.p, out.n);
        goto cleanup;
    }
    if ((st = parse_ids(in, &ids, &n)) || (st = tok_decode(tok, ids, n, skip, &text, &tlen))) goto cleanup;
    st = write_stdout(text, tlen);
cleanup:
    if (st) fprintf(stderr, "bitroll detokenize: %s\n", br_last_error());
    free(out.p);
    free(ids);
    free(in);
    free(text);
    tok_free(tok);
    return br_exit_code(st);
}
