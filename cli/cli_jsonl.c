/* JSONL records for the CLI verbs (see cli_jsonl.h). */
#include "cli/cli_jsonl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- output buffer */

/* The whole output is built first, so a bad record prints nothing rather than half a file. */
static void ob_put(cli_jsonl_buf *b, const char *s, size_t n) {
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

static void ob_str(cli_jsonl_buf *b, const char *s) { ob_put(b, s, strlen(s)); }

void cli_jsonl_ids(cli_jsonl_buf *b, const int32_t *ids, size_t n) {
    char num[16];
    ob_str(b, "[");
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof num, i ? ", %d" : "%d", ids[i]);
        ob_str(b, num);
    }
    ob_str(b, "]");
}

/* A JSON string of n bytes of UTF-8 (tok_decode's output is valid UTF-8; a NUL byte is written \u0000). */
void cli_jsonl_string(cli_jsonl_buf *b, const char *s, size_t n) {
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

const char *cli_jsonl_type_name(const cJSON *v) {
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

br_status cli_jsonl_scan(const char *s, int line, const char *key, cli_jsonl_span *r) {
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
void cli_jsonl_put_record(cli_jsonl_buf *b, const char *s, const cli_jsonl_span *r, const char *key, const char *value,
                          size_t vlen) {
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

/* Offset of the first control byte (< 0x20) that is not JSON whitespace and lies outside a string; n when none. */
static size_t ctl_outside_string(const char *s, size_t n) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') {
            return i;
        }
    }
    return n;
}

br_status cli_jsonl_each(const char *in, size_t len, cli_jsonl_fn fn, const void *ctx, cli_jsonl_buf *out) {
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
        /* cJSON skips every byte 0x01..0x20 between tokens as whitespace; JSON allows only space, tab, CR, LF. The
         * scanner (cli_jsonl_scan) follows JSON, so a record cJSON accepted with another control byte there would be
         * cut at the wrong place and echoed as broken JSON: reject it. */
        size_t bad = ctl_outside_string(s, n);
        if (bad < n) {
            st = br_fail(BR_EINVAL, "stdin: line %d: control byte 0x%02x at column %zu outside a string: expected JSON",
                         line, (unsigned char)s[bad], bad + 1);
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
            st = br_fail(BR_EINVAL, "stdin: line %d: expected a JSON object, got %s", line, cli_jsonl_type_name(rec));
        else
            st = fn(ctx, buf, line, rec, out);
        cJSON_Delete(rec);
        rec = NULL;
    }
    free(buf);
    if (st == BR_OK && out->oom) st = br_fail(BR_ENOMEM, "stdout: out of memory for the output");
    return st;
}
