/* `bitroll tokenize` and `bitroll detokenize`: byte-exact stdin -> ids and ids -> stdout, for checking
 * prompts against the model's tokenizer and for scripts; --jsonl does the same per JSON record. */
#include "cli/cli_tokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---------------------------------------------------------------- output buffer */

/* The whole output is built first, so a bad record prints nothing rather than half a file. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom; /* an append failed; reported once, at the end */
} outbuf;

static void ob_put(outbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void ob_str(outbuf *b, const char *s) { ob_put(b, s, strlen(s)); }

static void ob_ids(outbuf *b, const int32_t *ids, size_t n) {
    char num[16];
    ob_str(b, "[");
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof num, i ? ", %d" : "%d", ids[i]);
        ob_str(b, num);
    }
    ob_str(b, "]");
}

/* A JSON string of n bytes of UTF-8 (tok_decode's output is valid UTF-8; a NUL byte is written \u0000). */
static void ob_json_string(outbuf *b, const char *s, size_t n) {
    char esc[8];
    ob_str(b, "\"");
    size_t run = 0; /* bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                e = esc;
            }
        }
        if (!e) continue;
        ob_put(b, s + run, i - run);
        ob_str(b, e);
        run = i + 1;
    }
    ob_put(b, s + run, n - run);
    ob_str(b, "\"");
}

/* ---------------------------------------------------------------- JSONL records */

static const char *json_type_name(const cJSON *v) {
    if (!v) return "nothing";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "an unknown JSON value";
}

/* Where a record's top-level members lie in its raw text, so the output echoes every other field byte for
 * byte (cJSON would re-print numbers as doubles: 12345678901234567890 would change). The text was already
 * parsed by cJSON, so it is valid JSON; the scanner only needs to find boundaries. */
typedef struct {
    size_t open, close;         /* offsets of the object's '{' and '}' */
    size_t last_value_end;      /* end of the last member's value (open + 1 when there is none) */
    size_t value_start, value_end; /* the value of the member named `key`, when found */
    int found;
} rec_span;

static size_t skip_ws(const char *s, size_t i) {
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') i++;
    return i;
}

static size_t skip_string(const char *s, size_t i) { /* s[i] == '"'; returns the offset after the closing quote */
    for (i++; s[i] && s[i] != '"'; i++)
        if (s[i] == '\\' && s[i + 1]) i++;
    return s[i] ? i + 1 : i;
}

static size_t skip_value(const char *s, size_t i) {
    if (s[i] == '"') return skip_string(s, i);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        while (s[i]) {
            if (s[i] == '"') {
                i = skip_string(s, i);
                continue;
            }
            if (s[i] == '{' || s[i] == '[') depth++;
            if (s[i] == '}' || s[i] == ']') depth--;
            i++;
            if (depth == 0) break;
        }
        return i;
    }
    while (s[i] && !strchr(",}] \t\r\n", s[i])) i++; /* number, true, false, null */
    return i;
}

/* Does the raw JSON string s[a, b) (quotes included) decode to `key`? */
static int key_is(const char *s, size_t a, size_t b, const char *key) {
    if (!memchr(s + a, '\\', b - a)) return b - a - 2 == strlen(key) && !memcmp(s + a + 1, key, b - a - 2);
    cJSON *k = cJSON_ParseWithLength(s + a, b - a); /* escapes: let cJSON decode them */
    int eq = cJSON_IsString(k) && !strcmp(k->valuestring, key);
    cJSON_Delete(k);
    return eq;
}

static br_status scan_record(const char *s, int line, const char *key, rec_span *r) {
    memset(r, 0, sizeof *r);
    size_t i = skip_ws(s, 0);
    if (s[i] != '{') return br_fail(BR_EINVAL, "stdin: line %d: expected a JSON object", line);
    r->open = i;
    r->last_value_end = i + 1;
    i = skip_ws(s, i + 1);
    while (s[i] == '"') {
        size_t k0 = i;
        i = skip_string(s, i);
        int match = key_is(s, k0, i, key);
        i = skip_ws(s, i);
        if (s[i] != ':') break;
        i = skip_ws(s, i + 1);
        size_t v0 = i;
        i = skip_value(s, i);
        if (match) {
            if (r->found) return br_fail(BR_EINVAL, "stdin: line %d: field '%s' appears twice", line, key);
            r->found = 1;
            r->value_start = v0;
            r->value_end = i;
        }
        r->last_value_end = i;
        i = skip_ws(s, i);
        if (s[i] == ',') i = skip_ws(s, i + 1);
    }
    if (s[i] != '}') return br_fail(BR_ERUNTIME, "stdin: line %d: cannot find the members of the JSON object", line);
    r->close = i;
    return BR_OK;
}

/* Appends the record `s` with member `key` set to the JSON value `value` (replaced where it was, or added
 * after the last member), then a newline. */
static void put_record(outbuf *b, const char *s, const rec_span *r, const char *key, const char *value, size_t vlen) {
    if (r->found) {
        ob_put(b, s + r->open, r->value_start - r->open);
        ob_put(b, value, vlen);
        ob_put(b, s + r->value_end, r->close + 1 - r->value_end);
    } else {
        ob_put(b, s + r->open, r->last_value_end - r->open);
        if (r->last_value_end != r->open + 1) ob_str(b, ", ");
        ob_str(b, "\"");
        ob_str(b, key);
        ob_str(b, "\": ");
        ob_put(b, value, vlen);
        ob_put(b, s + r->last_value_end, r->close + 1 - r->last_value_end);
    }
    ob_str(b, "\n");
}

/* Calls fn(tok, line text (NUL-terminated), line number, record, flag, out) for every non-blank line. */
typedef br_status (*record_fn)(const tok_tokenizer *tok, const char *s, int line, const cJSON *rec, int flag,
                               outbuf *out);

static br_status each_record(const tok_tokenizer *tok, const char *in, size_t len, int flag, record_fn fn,
                             outbuf *out) {
    br_status st = BR_OK;
    char *buf = NULL;
    cJSON *rec = NULL;
    int line = 0;
    for (size_t pos = 0; st == BR_OK && pos < len;) {
        const char *s = in + pos, *eol = memchr(s, '\n', len - pos);
        size_t n = eol ? (size_t)(eol - s) : len - pos;
        pos += n + (eol ? 1 : 0);
        line++;
        size_t k = 0;
        while (k < n && strchr(" \t\r\f\v", s[k])) k++;
        if (k == n) continue; /* blank line */
        if (memchr(s, '\0', n)) {
            st = br_fail(BR_EINVAL, "stdin: line %d: NUL byte in the line: expected UTF-8 JSON text", line);
            break;
        }
        char *nb = realloc(buf, n + 1);
        if (!nb) {
            st = br_fail(BR_ENOMEM, "stdin: line %d: cannot allocate %zu bytes", line, n + 1);
            break;
        }
        buf = nb;
        memcpy(buf, s, n);
        buf[n] = 0;
        const char *end = NULL;
        rec = cJSON_ParseWithOpts(buf, &end, 1);
        if (!rec)
            st = br_fail(BR_EINVAL, "stdin: line %d: malformed JSON near column %d: expected one JSON object per line",
                         line, end ? (int)(end - buf) + 1 : 1);
        else if (!cJSON_IsObject(rec))
            st = br_fail(BR_EINVAL, "stdin: line %d: expected a JSON object, got %s", line, json_type_name(rec));
        else
            st = fn(tok, buf, line, rec, flag, out);
        cJSON_Delete(rec);
        rec = NULL;
    }
    free(buf);
    if (st == BR_OK && out->oom) st = br_fail(BR_ENOMEM, "stdout: out of memory for the output");
    return st;
}

static br_status tokenize_record(const tok_tokenizer *tok, const char *s, int line, const cJSON *rec, int add_special,
                                 outbuf *out) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "text");
    if (!t) return br_fail(BR_EINVAL, "stdin: line %d: field 'text' missing: expected {\"text\": \"...\"}", line);
    if (!cJSON_IsString(t))
        return br_fail(BR_EINVAL, "stdin: line %d: field 'text': expected a string, got %s", line, json_type_name(t));
    int32_t *ids = NULL;
    size_t n = 0;
    rec_span r;
    outbuf v = {0};
    br_status st = tok_encode(tok, t->valuestring, strlen(t->valuestring), add_special, &ids, &n);
    if (st != BR_OK) st = br_fail_ctx(st, "stdin: line %d: field 'text'", line);
    if (st == BR_OK) st = scan_record(s, line, "ids", &r);
    if (st == BR_OK) {
        ob_ids(&v, ids, n);
        if (v.oom) st = br_fail(BR_ENOMEM, "stdin: line %d: out of memory for %zu ids", line, n);
    }
    if (st == BR_OK) put_record(out, s, &r, "ids", v.p, v.n);
    free(v.p);
    free(ids);
    return st;
}

/* A JSON array of token ids: integers in 0 .. INT32_MAX (the tokenizer then checks its vocabulary).
 * `what` names the array in messages ("stdin: line 3: field 'ids'"). */
static br_status json_ids(const cJSON *a, const char *what, int32_t **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!cJSON_IsArray(a)) return br_fail(BR_EINVAL, "%s: expected an array of token ids, got %s", what, json_type_name(a));
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
                        json_type_name(e));
            free(ids);
            return BR_EINVAL;
        }
        ids[i] = (int32_t)x;
    }
    *out = ids;
    *n_out = n;
    return BR_OK;
}

static br_status detokenize_record(const tok_tokenizer *tok, const char *s, int line, const cJSON *rec, int skip,
                                   outbuf *out) {
    char what[48];
    snprintf(what, sizeof what, "stdin: line %d: field 'ids'", line);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "ids");
    if (!a) return br_fail(BR_EINVAL, "stdin: line %d: field 'ids' missing: expected {\"ids\": [...]}", line);
    int32_t *ids = NULL;
    size_t n = 0, tlen = 0;
    char *text = NULL;
    rec_span r;
    outbuf v = {0};
    br_status st = json_ids(a, what, &ids, &n);
    if (st == BR_OK && (st = tok_decode(tok, ids, n, skip, &text, &tlen)) != BR_OK) st = br_fail_ctx(st, "%s", what);
    if (st == BR_OK) st = scan_record(s, line, "text", &r);
    if (st == BR_OK) {
        ob_json_string(&v, text, tlen);
        if (v.oom) st = br_fail(BR_ENOMEM, "stdin: line %d: out of memory for the text", line);
    }
    if (st == BR_OK) put_record(out, s, &r, "text", v.p, v.n);
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
    outbuf out = {0};
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&text, &len))) goto cleanup;
    if (jsonl) {
        if (strlen(text) != len) {
            st = br_fail(BR_EINVAL, "stdin: contains a NUL byte: expected UTF-8 JSON lines");
            goto cleanup;
        }
        if ((st = each_record(tok, text, len, add_special, tokenize_record, &out)) == BR_OK)
            st = write_stdout(out.p, out.n);
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
    outbuf out = {0};
    br_status st;
    if ((st = tok_load(path, &tok)) || (st = read_stdin(&in, &len))) goto cleanup;
    if ((size_t)strlen(in) != len) {
        st = br_fail(BR_EINVAL, "stdin: contains a NUL byte");
        goto cleanup;
    }
    if (jsonl) {
        if ((st = each_record(tok, in, len, skip, detokenize_record, &out)) == BR_OK) st = write_stdout(out.p, out.n);
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
