/* JSONL records for the CLI verbs: one JSON object per line in, the same object with one member set out,
 * every other member echoed byte for byte; the output is built in memory so a bad record prints nothing. */
#ifndef CLI_JSONL_H
#define CLI_JSONL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/br.h"

/* A growing output buffer; zero-initialise it, free(p) when done. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom; /* an append failed; reported once, at the end */
} cli_jsonl_buf;

/* Appends a JSON array of ids: "[1, 2, 3]". */
void cli_jsonl_ids(cli_jsonl_buf *b, const int32_t *ids, size_t n);
/* Appends a JSON string of n bytes of UTF-8 (a NUL byte is written \u0000). */
void cli_jsonl_string(cli_jsonl_buf *b, const char *s, size_t n);

/* "a string", "a number", ... for messages; "nothing" for NULL. */
const char *cli_jsonl_type_name(const cJSON *v);

/* Where a record's top-level members lie in its raw text. */
typedef struct {
    size_t open, close;            /* offsets of the object's '{' and '}' */
    size_t last_value_end;         /* end of the last member's value (open + 1 when there is none) */
    size_t value_start, value_end; /* the value of the member named `key`, when found */
    int found;
} cli_jsonl_span;

/* Finds the members of the record s (already parsed by cJSON, so valid JSON) and the member `key`;
 * `line` names the line in messages. */
br_status cli_jsonl_scan(const char *s, int line, const char *key, cli_jsonl_span *r);
/* Appends the record `s` with member `key` set to the JSON value `value` (replaced where it was, or added
 * after the last member), then a newline. */
void cli_jsonl_put_record(cli_jsonl_buf *b, const char *s, const cli_jsonl_span *r, const char *key,
                          const char *value, size_t vlen);

/* Called with the line text (NUL-terminated), its line number and its parsed object. */
typedef br_status (*cli_jsonl_fn)(const void *ctx, const char *s, int line, const cJSON *rec, cli_jsonl_buf *out);
/* Calls fn for every non-blank line of in[0, len); stops at the first failure. Fails too when an append to
 * `out` ran out of memory. */
br_status cli_jsonl_each(const char *in, size_t len, cli_jsonl_fn fn, const void *ctx, cli_jsonl_buf *out);

#endif
