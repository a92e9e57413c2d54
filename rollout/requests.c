/* Prompts JSONL parser (see requests.h): strict keys and types, defaults from the CLI, sample-id layout. */
#include "requests.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Where a message points: "<path>: line <L>: ...". */
typedef struct {
    const char *path;
    int line;
    int vocab, max_pos;
} req_ctx;

static br_status line_fail(const req_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static br_status line_fail(const req_ctx *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return br_fail(BR_EINVAL, "%s: line %d: %s", c->path, c->line, msg);
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* An integer-valued JSON number in [lo, hi] (cJSON holds numbers as double: 3.0 and 3e0 are 3, 3.5 is not). */
static br_status get_int(const req_ctx *c, const cJSON *v, const char *what, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return line_fail(c, "%s: expected an integer, got %s", what, json_type_name(v));
    double x = v->valuedouble;
    if (!isfinite(x) || floor(x) != x) return line_fail(c, "%s = %.15g: expected an integer", what, x);
    if (x < lo || x > hi) return line_fail(c, "%s = %.15g: expected an integer in %.15g .. %.15g", what, x, lo, hi);
    *out = (int64_t)x;
    return BR_OK;
}

/* A JSON array of token ids, each 0 <= id < vocab, into a new array. */
static br_status get_ids(const req_ctx *c, const cJSON *v, const char *key, int32_t **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!cJSON_IsArray(v)) return line_fail(c, "field '%s': expected an array of token ids, got %s", key, json_type_name(v));
    int n = cJSON_GetArraySize(v);
    int32_t *ids = NULL;
    if (n > 0) {
        ids = malloc((size_t)n * sizeof *ids);
        if (!ids) return br_fail(BR_ENOMEM, "%s: line %d: field '%s': cannot allocate %d ids", c->path, c->line, key, n);
    }
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        char what[96];
        snprintf(what, sizeof what, "field '%s'[%d]", key, i);
        int64_t id = 0;
        br_status st = get_int(c, e, what, -2147483648.0, 2147483647.0, &id);
        if (st == BR_OK && (id < 0 || id >= c->vocab))
            st = line_fail(c, "%s = %lld: expected a token id in 0 .. %d (vocabulary size %d)", what, (long long)id,
                           c->vocab - 1, c->vocab);
        if (st != BR_OK) {
            free(ids);
            return st;
        }
        ids[i] = (int32_t)id;
    }
    *out = ids;
    *n_out = n;
    return BR_OK;
}

static void prompt_clear(rollout_prompt *p) {
    free(p->id);
    free(p->text);
    free(p->ids);
    free(p->stop_ids);
    memset(p, 0, sizeof *p);
}

static br_status check_length(const req_ctx *c, const rollout_prompt *p) {
    if ((int64_t)p->n_ids + p->max_new_tokens > c->max_pos)
        return line_fail(c, "field 'max_new_tokens': prompt length %d + max_new_tokens %d = %lld exceeds the context length %d",
                         p->n_ids, (int)p->max_new_tokens, (long long)p->n_ids + p->max_new_tokens, c->max_pos);
    return BR_OK;
}

enum { K_PROMPT_IDS, K_PROMPT, K_ID, K_N, K_MAX_NEW, K_TEMPERATURE, K_TOP_P, K_TOP_K, K_STOP_IDS, K_COUNT };
static const char *const key_names[K_COUNT] = {"prompt_ids", "prompt", "id", "n", "max_new_tokens",
                                               "temperature", "top_p", "top_k", "stop_ids"};

/* One line's object -> *p (zeroed on entry; left cleared on failure). */
static br_status parse_prompt(const req_ctx *c, const cJSON *obj, const rollout_defaults *d, rollout_prompt *p) {
    br_status st = BR_OK;
    const cJSON *f[K_COUNT] = {0};
    int64_t iv;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int k = 0;
        while (k < K_COUNT && strcmp(it->string, key_names[k]) != 0) k++;
        if (k == K_COUNT) {
            st = line_fail(c, "unknown key '%s' (expected prompt or prompt_ids, and optionally id, n, max_new_tokens, "
                              "temperature, top_p, top_k, stop_ids)", it->string);
            goto cleanup;
        }
        if (f[k]) {
            st = line_fail(c, "field '%s' appears twice", key_names[k]);
            goto cleanup;
        }
        f[k] = it;
    }
    p->line = c->line;
    p->n = d->n;
    p->max_new_tokens = d->max_new_tokens;
    p->sampling = d->sampling;

    if (f[K_PROMPT] && f[K_PROMPT_IDS]) {
        st = line_fail(c, "fields 'prompt' and 'prompt_ids' both present: expected exactly one");
        goto cleanup;
    }
    if (!f[K_PROMPT] && !f[K_PROMPT_IDS]) {
        st = line_fail(c, "missing field 'prompt_ids' (token ids) or 'prompt' (text)");
        goto cleanup;
    }
    if (f[K_PROMPT_IDS]) {
        st = get_ids(c, f[K_PROMPT_IDS], "prompt_ids", &p->ids, &p->n_ids);
        if (st != BR_OK) goto cleanup;
        if (p->n_ids == 0) {
            st = line_fail(c, "field 'prompt_ids': empty prompt: expected at least one token id");
            goto cleanup;
        }
    } else {
        if (!cJSON_IsString(f[K_PROMPT])) {
            st = line_fail(c, "field 'prompt': expected a string, got %s", json_type_name(f[K_PROMPT]));
            goto cleanup;
        }
        if (f[K_PROMPT]->valuestring[0] == '\0') {
            st = line_fail(c, "field 'prompt': empty prompt: expected non-empty text");
            goto cleanup;
        }
        p->text = strdup(f[K_PROMPT]->valuestring);
        if (!p->text) {
            st = br_fail(BR_ENOMEM, "%s: line %d: cannot copy the prompt text", c->path, c->line);
            goto cleanup;
        }
    }

    if (f[K_ID]) {
        const cJSON *v = f[K_ID];
        char buf[32];
        if (cJSON_IsString(v)) {
            p->id = strdup(v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            /* integers are carried exactly while a double holds them exactly (|id| <= 2^53) */
            double x = v->valuedouble;
            if (!isfinite(x) || floor(x) != x || fabs(x) > 9007199254740992.0) {
                st = line_fail(c, "field 'id' = %.15g: expected a string or an integer of at most 2^53 in magnitude "
                                  "(quote other ids)", x);
                goto cleanup;
            }
            iv = (int64_t)x;
            snprintf(buf, sizeof buf, "%lld", (long long)iv);
            p->id = strdup(buf);
        } else {
            st = line_fail(c, "field 'id': expected a string or an integer, got %s", json_type_name(v));
            goto cleanup;
        }
        if (!p->id) {
            st = br_fail(BR_ENOMEM, "%s: line %d: cannot copy the id", c->path, c->line);
            goto cleanup;
        }
    }
    if (f[K_N]) {
        st = get_int(c, f[K_N], "field 'n'", -2147483648.0, 2147483647.0, &iv);
        if (st != BR_OK) goto cleanup;
        if (iv < 1 || iv > ROLLOUT_MAX_N) {
            st = line_fail(c, "field 'n' = %lld: expected 1 .. %d samples per prompt", (long long)iv, ROLLOUT_MAX_N);
            goto cleanup;
        }
        p->n = (int32_t)iv;
    }
    if (f[K_MAX_NEW]) {
        st = get_int(c, f[K_MAX_NEW], "field 'max_new_tokens'", -2147483648.0, 2147483647.0, &iv);
        if (st != BR_OK) goto cleanup;
        if (iv < 1) {
            st = line_fail(c, "field 'max_new_tokens' = %lld: expected >= 1", (long long)iv);
            goto cleanup;
        }
        p->max_new_tokens = (int32_t)iv;
    }
    if (f[K_TEMPERATURE]) {
        const cJSON *v = f[K_TEMPERATURE];
        if (!cJSON_IsNumber(v)) {
            st = line_fail(c, "field 'temperature': expected a number, got %s", json_type_name(v));
            goto cleanup;
        }
        p->sampling.temperature = (float)v->valuedouble;
        if (v->valuedouble > 0.0 && p->sampling.temperature == 0.0f) { /* would silently become greedy */
            st = line_fail(c, "field 'temperature' = %g: too small for fp32, expected 0 (greedy) or a normal value",
                           v->valuedouble);
            goto cleanup;
        }
    }
    if (f[K_TOP_P]) {
        const cJSON *v = f[K_TOP_P];
        if (!cJSON_IsNumber(v)) {
            st = line_fail(c, "field 'top_p': expected a number, got %s", json_type_name(v));
            goto cleanup;
        }
        /* checked before the fp32 rounding so that 1.00000001 is rejected, not rounded to 1 */
        if (!(v->valuedouble > 0.0 && v->valuedouble <= 1.0)) {
            st = line_fail(c, "field 'top_p' = %.15g: expected 0 < top_p <= 1", v->valuedouble);
            goto cleanup;
        }
        p->sampling.top_p = (float)v->valuedouble;
    }
    if (f[K_TOP_K]) {
        st = get_int(c, f[K_TOP_K], "field 'top_k'", -2147483648.0, 2147483647.0, &iv);
        if (st != BR_OK) goto cleanup;
        p->sampling.top_k = (int32_t)iv;
    }
    st = rollout_sampling_check(&p->sampling, c->vocab);
    if (st != BR_OK) {
        br_fail_ctx(st, "%s: line %d", c->path, c->line);
        goto cleanup;
    }

    if (f[K_STOP_IDS]) {
        st = get_ids(c, f[K_STOP_IDS], "stop_ids", &p->stop_ids, &p->n_stop_ids);
        if (st != BR_OK) goto cleanup;
    } else if (d->n_stop_ids > 0) {
        p->stop_ids = malloc((size_t)d->n_stop_ids * sizeof *p->stop_ids);
        if (!p->stop_ids) {
            st = br_fail(BR_ENOMEM, "%s: line %d: cannot copy the stop ids", c->path, c->line);
            goto cleanup;
        }
        memcpy(p->stop_ids, d->stop_ids, (size_t)d->n_stop_ids * sizeof *p->stop_ids);
        p->n_stop_ids = d->n_stop_ids;
    }

    if (p->ids) {
        st = check_length(c, p);
    } else if (p->max_new_tokens >= c->max_pos) { /* a text prompt has >= 1 token once tokenized */
        st = line_fail(c, "field 'max_new_tokens' = %d: leaves no room for the prompt in the context length %d",
                       (int)p->max_new_tokens, c->max_pos);
    }
cleanup:
    if (st != BR_OK) prompt_clear(p);
    return st;
}

/* The CLI values, checked once so that a line's error always comes from the line itself. */
static br_status check_defaults(const rollout_defaults *d, int vocab, int max_pos) {
    if (vocab < 1 || max_pos < 2) return br_fail(BR_EINVAL, "model limits: vocab = %d, max_pos = %d: expected vocab >= 1, max_pos >= 2", vocab, max_pos);
    if (d->n < 1 || d->n > ROLLOUT_MAX_N)
        return br_fail(BR_EINVAL, "default n = %d: expected 1 .. %d samples per prompt", (int)d->n, ROLLOUT_MAX_N);
    if (d->max_new_tokens < 1 || d->max_new_tokens >= max_pos)
        return br_fail(BR_EINVAL, "default max_new_tokens = %d: expected 1 .. %d (context length %d minus one prompt token)",
                       (int)d->max_new_tokens, max_pos - 1, max_pos);
    br_status st = rollout_sampling_check(&d->sampling, vocab);
    if (st != BR_OK) return br_fail_ctx(st, "default");
    if (d->n_stop_ids < 0 || (d->n_stop_ids > 0 && !d->stop_ids))
        return br_fail(BR_EINVAL, "default stop ids: count %d without ids", d->n_stop_ids);
    for (int i = 0; i < d->n_stop_ids; i++)
        if (d->stop_ids[i] < 0 || d->stop_ids[i] >= vocab)
            return br_fail(BR_EINVAL, "default stop id %d: expected a token id in 0 .. %d", (int)d->stop_ids[i], vocab - 1);
    return BR_OK;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\f\v", s[i])) return 0;
    return 1;
}

br_status rollout_requests_parse(const char *text, size_t len, const char *name, const rollout_defaults *d,
                                 int vocab, int max_pos, rollout_requests **out) {
    br_status st = BR_OK;
    rollout_requests *r = NULL;
    char *buf = NULL;
    cJSON *obj = NULL;
    int cap = 0;
    *out = NULL;
    st = check_defaults(d, vocab, max_pos);
    if (st != BR_OK) goto cleanup;
    r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(name))) {
        st = br_fail(BR_ENOMEM, "%s: cannot allocate the requests", name);
        goto cleanup;
    }
    r->vocab = vocab;
    r->max_pos = max_pos;
    req_ctx c = {.path = name, .line = 0, .vocab = vocab, .max_pos = max_pos};
    size_t pos = 0;
    while (pos < len) {
        const char *s = text + pos;
        const char *eol = memchr(s, '\n', len - pos);
        size_t n = eol ? (size_t)(eol - s) : len - pos;
        pos += n + (eol ? 1 : 0);
        c.line++;
        if (is_blank(s, n)) continue;
        if (memchr(s, '\0', n)) {
            st = line_fail(&c, "NUL byte in the line: expected UTF-8 JSON text");
            goto cleanup;
        }
        free(buf);
        buf = malloc(n + 1);
        if (!buf) {
            st = br_fail(BR_ENOMEM, "%s: line %d: cannot allocate %zu bytes", name, c.line, n + 1);
            goto cleanup;
        }
        memcpy(buf, s, n);
        buf[n] = '\0';
        const char *end = NULL;
        obj = cJSON_ParseWithOpts(buf, &end, 1);
        if (!obj) {
            st = line_fail(&c, "malformed JSON near column %d: expected one JSON object per line",
                           end ? (int)(end - buf) + 1 : 1);
            goto cleanup;
        }
        if (!cJSON_IsObject(obj)) {
            st = line_fail(&c, "expected a JSON object, got %s", json_type_name(obj));
            goto cleanup;
        }
        if (r->n_prompts == cap) {
            int ncap = cap ? 2 * cap : 16;
            rollout_prompt *np = realloc(r->prompts, (size_t)ncap * sizeof *np);
            if (!np) {
                st = br_fail(BR_ENOMEM, "%s: line %d: cannot allocate %d prompts", name, c.line, ncap);
                goto cleanup;
            }
            r->prompts = np;
            cap = ncap;
        }
        rollout_prompt *p = &r->prompts[r->n_prompts];
        memset(p, 0, sizeof *p);
        st = parse_prompt(&c, obj, d, p);
        if (st != BR_OK) goto cleanup;
        if (r->n_samples + p->n > ROLLOUT_MAX_SAMPLES) {
            st = line_fail(&c, "field 'n' = %d: brings the file to %lld samples, more than %lld in one run (split the "
                               "prompts into several files)", (int)p->n, (long long)(r->n_samples + p->n),
                           (long long)ROLLOUT_MAX_SAMPLES);
            prompt_clear(p);
            goto cleanup;
        }
        p->first_sample_id = r->n_samples;
        r->n_samples += p->n;
        r->n_prompts++;
        cJSON_Delete(obj);
        obj = NULL;
    }
    if (r->n_prompts == 0) {
        st = br_fail(BR_EINVAL, "%s: no prompts: expected one JSON object per non-empty line", name);
        goto cleanup;
    }
    *out = r;
    r = NULL;
cleanup:
    cJSON_Delete(obj);
    free(buf);
    rollout_requests_free(r);
    return st;
}

br_status rollout_requests_load(const char *path, const rollout_defaults *d, int vocab, int max_pos,
                                rollout_requests **out) {
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    br_status st = br_read_file(path, &text, &len);
    if (st != BR_OK) return st;
    st = rollout_requests_parse(text, len, path, d, vocab, max_pos, out);
    free(text);
    return st;
}

void rollout_requests_free(rollout_requests *r) {
    if (!r) return;
    for (int i = 0; i < r->n_prompts; i++) prompt_clear(&r->prompts[i]);
    free(r->prompts);
    free(r->path);
    free(r);
}

br_status rollout_requests_set_prompt_ids(rollout_requests *r, int prompt_index, const int32_t *ids, int n_ids) {
    if (prompt_index < 0 || prompt_index >= r->n_prompts)
        return br_fail(BR_EINVAL, "%s: prompt index %d: expected 0 .. %d", r->path, prompt_index, r->n_prompts - 1);
    rollout_prompt *p = &r->prompts[prompt_index];
    req_ctx c = {.path = r->path, .line = p->line, .vocab = r->vocab, .max_pos = r->max_pos};
    if (n_ids < 1) return line_fail(&c, "field 'prompt': empty prompt after tokenization: expected at least one token");
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= r->vocab)
            return line_fail(&c, "field 'prompt': token %d = %d: expected a token id in 0 .. %d", i, (int)ids[i], r->vocab - 1);
    rollout_prompt probe = *p;
    probe.n_ids = n_ids;
    br_status st = check_length(&c, &probe);
    if (st != BR_OK) return st;
    int32_t *copy = malloc((size_t)n_ids * sizeof *copy);
    if (!copy) return br_fail(BR_ENOMEM, "%s: line %d: cannot allocate %d prompt ids", r->path, p->line, n_ids);
    memcpy(copy, ids, (size_t)n_ids * sizeof *copy);
    free(p->ids);
    p->ids = copy;
    p->n_ids = n_ids;
    return BR_OK;
}

int64_t rollout_requests_sample_id(const rollout_requests *r, int prompt_index, int32_t sample_index) {
    assert(prompt_index >= 0 && prompt_index < r->n_prompts);
    assert(sample_index >= 0 && sample_index < r->prompts[prompt_index].n);
    return r->prompts[prompt_index].first_sample_id + sample_index;
}

br_status rollout_requests_locate(const rollout_requests *r, int64_t sample_id, int *prompt_index,
                                  int32_t *sample_index) {
    if (sample_id < 0 || sample_id >= r->n_samples)
        return br_fail(BR_EINVAL, "%s: sample id %lld: expected 0 .. %lld", r->path, (long long)sample_id,
                       (long long)r->n_samples - 1);
    int lo = 0, hi = r->n_prompts - 1; /* the last prompt whose first_sample_id <= sample_id */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (r->prompts[mid].first_sample_id <= sample_id) lo = mid;
        else hi = mid - 1;
    }
    *prompt_index = lo;
    *sample_index = (int32_t)(sample_id - r->prompts[lo].first_sample_id);
    return BR_OK;
}
