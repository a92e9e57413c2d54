/* Loads a Hugging Face tokenizer.json (+ optional tokenizer_config.json) into a tok_tokenizer: vocab,
 * merges, added tokens and the normalizer / pre-tokenizer / post-processor / decoder pipeline. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "policy/tokenizer/tokenizer_int.h"

/* GPT-2's pre-tokenization regex, which HF's ByteLevel uses when use_regex is true. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static char *dup_mem(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static const char *type_of(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Optional boolean field: absent or null keeps *out (the default); any other type is an error. */
static br_status get_bool(const char *path, const char *where, const cJSON *o, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return BR_OK;
    if (!cJSON_IsBool(v)) return br_fail(BR_EFORMAT, "%s: %s field '%s' must be a boolean", path, where, key);
    *out = cJSON_IsTrue(v);
    return BR_OK;
}

/* Optional string field (NULL when absent or null). */
static br_status get_str(const char *path, const char *where, const cJSON *o, const char *key, const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return BR_OK;
    if (!cJSON_IsString(v)) return br_fail(BR_EFORMAT, "%s: %s field '%s' must be a string", path, where, key);
    *out = v->valuestring;
    return BR_OK;
}

static br_status compile_re(const char *path, const char *where, const char *pat, int literal, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return br_fail(BR_EFORMAT, "%s: %s regex '%s' does not compile at offset %zu: %s", path, where, pat,
                       (size_t)off, (char *)msg);
    }
    /* JIT is an optimisation only: when it is unavailable pcre2_match interprets the same pattern. */
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
    return BR_OK;
}

/* A {"String": s} or {"Regex": r} pattern object. */
static br_status get_pattern(const char *path, const char *where, const cJSON *o, const char **s, int *is_regex) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *str = p ? cJSON_GetObjectItemCaseSensitive(p, "String") : NULL;
    const cJSON *re = p ? cJSON_GetObjectItemCaseSensitive(p, "Regex") : NULL;
    if (cJSON_IsString(str)) {
        *s = str->valuestring;
        *is_regex = 0;
    } else if (cJSON_IsString(re)) {
        *s = re->valuestring;
        *is_regex = 1;
    } else {
        return br_fail(BR_EFORMAT, "%s: %s field 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", path, where);
    }
    return BR_OK;
}

static br_status parse_normalizer(tok_tokenizer *t, const cJSON *o) {
    const char *path = t->path, *type = type_of(o);
    if (!type) return br_fail(BR_EFORMAT, "%s: normalizer has no 'type'", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *it;
        if (!cJSON_IsArray(list)) return br_fail(BR_EFORMAT, "%s: normalizer Sequence needs a 'normalizers' array", path);
        cJSON_ArrayForEach(it, list) {
            br_status st = parse_normalizer(t, it);
            if (st) return st;
        }
        return BR_OK;
    }
    tok_norm n = {0};
    br_status st = BR_OK;
    if (!strcmp(type, "NFC")) {
        n.kind = TOK_NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        const char *s;
        if ((st = get_str(path, "normalizer Prepend", o, "prepend", &s))) return st;
        if (!s) return br_fail(BR_EFORMAT, "%s: normalizer Prepend needs a 'prepend' string", path);
        n.kind = TOK_NORM_PREPEND;
        n.str_len = strlen(s);
        if (!(n.str = dup_mem(s, n.str_len))) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    } else if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content;
        int is_re = 0;
        if ((st = get_pattern(path, "normalizer Replace", o, &pat, &is_re))) return st;
        if ((st = get_str(path, "normalizer Replace", o, "content", &content))) return st;
        if (!content) return br_fail(BR_EFORMAT, "%s: normalizer Replace needs a 'content' string", path);
        n.kind = TOK_NORM_REPLACE;
        n.content_len = strlen(content);
        if (!(n.content = dup_mem(content, n.content_len))) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        if (is_re) {
            st = compile_re(path, "normalizer Replace", pat, 0, &n.re);
        } else if (!*pat) {
            st = br_fail(BR_EFORMAT, "%s: normalizer Replace has an empty pattern", path);
        } else {
            n.str_len = strlen(pat);
            if (!(n.str = dup_mem(pat, n.str_len))) st = br_fail(BR_ENOMEM, "tokenizer: out of memory");
        }
        if (st) {
            free(n.content);
            pcre2_code_free(n.re);
            return st;
        }
    } else {
        return br_fail(BR_EFORMAT, "%s: normalizer type '%s' is not supported", path, type);
    }
    tok_norm *p = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *p);
    if (!p) {
        free(n.str);
        free(n.content);
        pcre2_code_free(n.re);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    }
    t->norm = p;
    t->norm[t->n_norm++] = n;
    return BR_OK;
}

static br_status parse_pre(tok_tokenizer *t, const cJSON *o) {
    const char *path = t->path, *type = type_of(o);
    br_status st;
    if (!type) return br_fail(BR_EFORMAT, "%s: pre_tokenizer has no 'type'", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *it;
        if (!cJSON_IsArray(list))
            return br_fail(BR_EFORMAT, "%s: pre_tokenizer Sequence needs a 'pretokenizers' array", path);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_pre(t, it))) return st;
        }
        return BR_OK;
    }
    if (t->bytelevel)
        /* ByteLevel rewrites the text into mapped code points; we apply it as the last step only. */
        return br_fail(BR_EFORMAT, "%s: pre_tokenizer '%s' after ByteLevel is not supported", path, type);
    tok_pre p = {0};
    if (!strcmp(type, "Split")) {
        const char *pat = NULL, *beh;
        int is_re = 0;
        if ((st = get_pattern(path, "pre_tokenizer Split", o, &pat, &is_re))) return st;
        if ((st = get_str(path, "pre_tokenizer Split", o, "behavior", &beh))) return st;
        if ((st = get_bool(path, "pre_tokenizer Split", o, "invert", &p.invert))) return st;
        if (!beh) return br_fail(BR_EFORMAT, "%s: pre_tokenizer Split needs a 'behavior'", path);
        if (!strcmp(beh, "Removed")) p.behavior = TOK_SPLIT_REMOVED;
        else if (!strcmp(beh, "Isolated")) p.behavior = TOK_SPLIT_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious")) p.behavior = TOK_SPLIT_PREV;
        else if (!strcmp(beh, "MergedWithNext")) p.behavior = TOK_SPLIT_NEXT;
        else if (!strcmp(beh, "Contiguous")) p.behavior = TOK_SPLIT_CONTIG;
        else return br_fail(BR_EFORMAT, "%s: pre_tokenizer Split behavior '%s' is not supported", path, beh);
        p.kind = TOK_PRE_SPLIT;
        if ((st = compile_re(path, "pre_tokenizer Split", pat, !is_re, &p.re))) return st;
    } else if (!strcmp(type, "ByteLevel")) {
        int use_regex = 1;
        if ((st = get_bool(path, "pre_tokenizer ByteLevel", o, "add_prefix_space", &p.add_prefix_space))) return st;
        if ((st = get_bool(path, "pre_tokenizer ByteLevel", o, "use_regex", &use_regex))) return st;
        p.kind = TOK_PRE_BYTELEVEL;
        if (use_regex && (st = compile_re(path, "pre_tokenizer ByteLevel", GPT2_PATTERN, 0, &p.re))) return st;
        t->bytelevel = 1;
    } else {
        return br_fail(BR_EFORMAT, "%s: pre_tokenizer type '%s' is not supported", path, type);
    }
    tok_pre *n = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *n);
    if (!n) {
        pcre2_code_free(p.re);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    }
    t->pre = n;
    t->pre[t->n_pre++] = p;
    return BR_OK;
}

static br_status parse_decoder(tok_tokenizer *t, const cJSON *o) {
    const char *path = t->path, *type = type_of(o);
    br_status st;
    if (!type) return br_fail(BR_EFORMAT, "%s: decoder has no 'type'", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "decoders"), *it;
        if (!cJSON_IsArray(list)) return br_fail(BR_EFORMAT, "%s: decoder Sequence needs a 'decoders' array", path);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_decoder(t, it))) return st;
        }
        return BR_OK;
    }
    tok_dec d = {0};
    if (!strcmp(type, "ByteLevel")) {
        d.kind = TOK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "ByteFallback")) {
        d.kind = TOK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d.kind = TOK_DEC_FUSE;
    } else if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content;
        int is_re = 0;
        if ((st = get_pattern(path, "decoder Replace", o, &pat, &is_re))) return st;
        if (is_re) return br_fail(BR_EFORMAT, "%s: decoder Replace with a Regex pattern is not supported", path);
        if ((st = get_str(path, "decoder Replace", o, "content", &content))) return st;
        if (!content || !*pat) return br_fail(BR_EFORMAT, "%s: decoder Replace needs a pattern and a 'content'", path);
        d.kind = TOK_DEC_REPLACE;
        d.pat_len = strlen(pat);
        d.content_len = strlen(content);
        d.pat = dup_mem(pat, d.pat_len);
        d.content = dup_mem(content, d.content_len);
    } else if (!strcmp(type, "Strip")) {
        const char *content;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "start"), *b = cJSON_GetObjectItemCaseSensitive(o, "stop");
        if ((st = get_str(path, "decoder Strip", o, "content", &content))) return st;
        if (!content || !*content || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valueint < 0 || b->valueint < 0)
            return br_fail(BR_EFORMAT, "%s: decoder Strip needs 'content' (a character), 'start' and 'stop' >= 0", path);
        d.kind = TOK_DEC_STRIP;
        d.content_len = strlen(content);
        d.content = dup_mem(content, d.content_len);
        d.start = a->valueint;
        d.stop = b->valueint;
    } else {
        return br_fail(BR_EFORMAT, "%s: decoder type '%s' is not supported", path, type);
    }
    tok_dec *n = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *n);
    if (!n || ((d.kind == TOK_DEC_REPLACE || d.kind == TOK_DEC_STRIP) && !d.content) ||
        (d.kind == TOK_DEC_REPLACE && !d.pat)) {
        if (n) t->dec = n;
        free(d.pat);
        free(d.content);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    }
    t->dec = n;
    t->dec[t->n_dec++] = d;
    return BR_OK;
}

static br_status ids_append(int32_t **ids, int *n, int32_t id) {
    int32_t *p = realloc(*ids, (size_t)(*n + 1) * sizeof *p);
    if (!p) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    *ids = p;
    p[(*n)++] = id;
    return BR_OK;
}

/* Which special ids surround the text: TemplateProcessing's "single" template (the tokens before and
 * after sequence A). ByteLevel post-processing changes no ids (only offsets). */
static br_status parse_post(tok_tokenizer *t, const cJSON *o) {
    const char *path = t->path, *type = type_of(o);
    br_status st;
    if (!type) return br_fail(BR_EFORMAT, "%s: post_processor has no 'type'", path);
    if (!strcmp(type, "ByteLevel")) return BR_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "processors"), *it;
        if (!cJSON_IsArray(list))
            return br_fail(BR_EFORMAT, "%s: post_processor Sequence needs a 'processors' array", path);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_post(t, it))) return st;
        }
        return BR_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return br_fail(BR_EFORMAT, "%s: post_processor type '%s' is not supported", path, type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single"), *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    const cJSON *it;
    if (!cJSON_IsArray(single)) return br_fail(BR_EFORMAT, "%s: post_processor TemplateProcessing needs 'single'", path);
    int seen_seq = 0;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *name = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        const cJSON *def = cJSON_IsString(name) ? cJSON_GetObjectItemCaseSensitive(specials, name->valuestring) : NULL;
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL, *id;
        if (!cJSON_IsArray(ids))
            return br_fail(BR_EFORMAT, "%s: post_processor TemplateProcessing: template item has no special_tokens entry with 'ids'", path);
        cJSON_ArrayForEach(id, ids) {
            if (!cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= t->n_vocab)
                return br_fail(BR_EFORMAT, "%s: post_processor TemplateProcessing: special token '%s' has an id outside the vocabulary", path, name->valuestring);
            if ((st = seen_seq ? ids_append(&t->post_ids, &t->n_post_ids, id->valueint)
                               : ids_append(&t->pre_ids, &t->n_pre_ids, id->valueint)))
                return st;
        }
    }
    return BR_OK;
}

/* A token named in tokenizer_config.json: a string or an AddedToken object {"content": ...}. */
static br_status config_token(const tok_tokenizer *t, const char *cfg, const cJSON *c, const char *key, int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!v || cJSON_IsNull(v)) return BR_OK;
    if (!cJSON_IsString(v)) return br_fail(BR_EFORMAT, "%s: field '%s' must be a string or an object with 'content'", cfg, key);
    *id = tok_piece_to_id(t, v->valuestring);
    if (*id < 0) return br_fail(BR_EFORMAT, "%s: %s '%s' is not in the vocabulary of %s", cfg, key, v->valuestring, t->path);
    return BR_OK;
}

static br_status load_config(tok_tokenizer *t, const char *cfg) {
    char *text = NULL;
    size_t len;
    cJSON *c = NULL;
    br_status st = BR_OK;
    struct stat sb;
    if (stat(cfg, &sb) != 0) return BR_OK; /* optional */
    if ((st = br_read_file(cfg, &text, &len))) goto cleanup;
    c = cJSON_ParseWithLength(text, len);
    if (!c || !cJSON_IsObject(c)) {
        st = br_fail(BR_EFORMAT, "%s: malformed JSON", cfg);
        goto cleanup;
    }
    if ((st = config_token(t, cfg, c, "bos_token", &t->bos_id))) goto cleanup;
    if ((st = config_token(t, cfg, c, "eos_token", &t->eos_id))) goto cleanup;
    /* transformers' Llama-style tokenizers rebuild the template from these flags; honour them. */
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(c, "add_bos_token");
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(c, "add_eos_token");
    if (cJSON_IsBool(ab)) {
        t->n_pre_ids = 0;
        if (cJSON_IsTrue(ab)) {
            if (t->bos_id < 0) { st = br_fail(BR_EFORMAT, "%s: add_bos_token is true but there is no bos_token", cfg); goto cleanup; }
            if ((st = ids_append(&t->pre_ids, &t->n_pre_ids, t->bos_id))) goto cleanup;
        }
    }
    if (cJSON_IsBool(ae)) {
        t->n_post_ids = 0;
        if (cJSON_IsTrue(ae)) {
            if (t->eos_id < 0) { st = br_fail(BR_EFORMAT, "%s: add_eos_token is true but there is no eos_token", cfg); goto cleanup; }
            if ((st = ids_append(&t->post_ids, &t->n_post_ids, t->eos_id))) goto cleanup;
        }
    }
cleanup:
    cJSON_Delete(c);
    free(text);
    return st;
}

static br_status trie_add(tok_trie *tr, const char *s, size_t n, int32_t tok_index) {
    if (!tr->n_nodes) {
        tr->next = calloc(256, sizeof *tr->next);
        tr->tok = malloc(sizeof *tr->tok);
        if (!tr->next || !tr->tok) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        tr->tok[0] = -1;
        tr->n_nodes = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (!tr->next[(size_t)node * 256 + b]) {
            int32_t *nx = realloc(tr->next, (size_t)(tr->n_nodes + 1) * 256 * sizeof *nx);
            if (!nx) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
            tr->next = nx;
            memset(nx + (size_t)tr->n_nodes * 256, 0, 256 * sizeof *nx);
            int32_t *tk = realloc(tr->tok, (size_t)(tr->n_nodes + 1) * sizeof *tk);
            if (!tk) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
            tr->tok = tk;
            tk[tr->n_nodes] = -1;
            tr->next[(size_t)node * 256 + b] = tr->n_nodes++;
        }
        node = tr->next[(size_t)node * 256 + b];
    }
    if (tr->tok[node] < 0) tr->tok[node] = tok_index; /* first definition of a duplicate wins */
    return BR_OK;
}

/* Applies the normalizers to a string (used for added tokens marked normalized). Defined in
 * tokenizer_encode.c. */
br_status tok_normalize(const tok_tokenizer *t, const char *s, size_t n, tok_buf *out);

static br_status parse_added(tok_tokenizer *t, const cJSON *list) {
    const char *path = t->path;
    const cJSON *it;
    br_status st;
    int n = cJSON_GetArraySize(list), i = 0;
    t->added = calloc((size_t)(n ? n : 1), sizeof *t->added);
    if (!t->added) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    cJSON_ArrayForEach(it, list) {
        tok_added *a = &t->added[i];
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content;
        if ((st = get_str(path, "added_tokens", it, "content", &content))) return st;
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e9 || !content || !*content)
            return br_fail(BR_EFORMAT, "%s: added_tokens[%d] needs a non-negative 'id' and a non-empty 'content'", path, i);
        a->id = id->valueint;
        a->normalized = 1; /* HF's AddedToken default */
        if ((st = get_bool(path, "added_tokens", it, "single_word", &a->single_word)) ||
            (st = get_bool(path, "added_tokens", it, "lstrip", &a->lstrip)) ||
            (st = get_bool(path, "added_tokens", it, "rstrip", &a->rstrip)) ||
            (st = get_bool(path, "added_tokens", it, "normalized", &a->normalized)) ||
            (st = get_bool(path, "added_tokens", it, "special", &a->special)))
            return st;
        a->len = strlen(content);
        if (!(a->content = dup_mem(content, a->len))) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        t->n_added = ++i;
    }
    return BR_OK;
}

/* After the vocab and normalizers are known: ids table entries and the two matching tries. */
static br_status index_added(tok_tokenizer *t) {
    br_status st = BR_OK;
    tok_buf nb = {0};
    for (int i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        /* HF decodes an id through the added vocabulary first */
        free(t->piece[a->id]);
        if (!(t->piece[a->id] = dup_mem(a->content, a->len))) { st = br_fail(BR_ENOMEM, "tokenizer: out of memory"); goto cleanup; }
        t->piece_len[a->id] = (uint32_t)a->len;
        t->special[a->id] = (uint8_t)a->special;
        if ((st = tok_strmap_put(&t->added_map, a->content, a->len, a->id))) goto cleanup;
        if (a->single_word && !t->word_re &&
            (st = compile_re(t->path, "single_word", "[\\p{Alphabetic}\\p{N}]", 0, &t->word_re)))
            goto cleanup;
        if (!a->normalized) {
            st = trie_add(&t->trie_raw, a->content, a->len, i);
        } else {
            nb.len = 0;
            if ((st = tok_normalize(t, a->content, a->len, &nb))) goto cleanup;
            st = nb.len ? trie_add(&t->trie_norm, nb.p, nb.len, i) : BR_OK;
        }
        if (st) goto cleanup;
    }
cleanup:
    free(nb.p);
    return st;
}

static br_status parse_model(tok_tokenizer *t, const cJSON *m, const cJSON *added) {
    const char *path = t->path, *type = type_of(m);
    br_status st;
    tok_buf key = {0};
    if (!cJSON_IsObject(m)) return br_fail(BR_EFORMAT, "%s: field 'model' must be an object", path);
    if (!type) {
        /* HF accepts an untagged model; BPE is the one that has merges */
        if (!cJSON_GetObjectItemCaseSensitive(m, "merges")) return br_fail(BR_EFORMAT, "%s: model has no 'type'", path);
        type = "BPE";
    }
    if (strcmp(type, "BPE")) return br_fail(BR_EFORMAT, "%s: model type '%s' is not supported", path, type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return br_fail(BR_EFORMAT, "%s: model dropout must be null (BPE dropout is random; bitroll is deterministic)", path);
    const char *unk, *pfx, *sfx;
    if ((st = get_str(path, "model", m, "unk_token", &unk)) || (st = get_str(path, "model", m, "continuing_subword_prefix", &pfx)) ||
        (st = get_str(path, "model", m, "end_of_word_suffix", &sfx)) ||
        (st = get_bool(path, "model", m, "byte_fallback", &t->byte_fallback)) ||
        (st = get_bool(path, "model", m, "fuse_unk", &t->fuse_unk)) ||
        (st = get_bool(path, "model", m, "ignore_merges", &t->ignore_merges)))
        return st;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(m, "merges"), *it;
    if (!cJSON_IsObject(vocab)) return br_fail(BR_EFORMAT, "%s: model field 'vocab' must be an object", path);
    if (merges && !cJSON_IsArray(merges)) return br_fail(BR_EFORMAT, "%s: model field 'merges' must be an array", path);
    int64_t max_id = -1;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e9 || it->valuedouble != (double)it->valueint)
            return br_fail(BR_EFORMAT, "%s: vocab entry '%s' must be a non-negative integer id", path, it->string);
        if (it->valueint > max_id) max_id = it->valueint;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= 1e9 && id->valueint > max_id) max_id = id->valueint;
    }
    if (max_id < 0) return br_fail(BR_EFORMAT, "%s: the vocabulary is empty", path);
    t->n_vocab = (int32_t)(max_id + 1);
    t->piece = calloc((size_t)t->n_vocab, sizeof *t->piece);
    t->piece_len = calloc((size_t)t->n_vocab, sizeof *t->piece_len);
    t->special = calloc((size_t)t->n_vocab, 1);
    if (!t->piece || !t->piece_len || !t->special) return br_fail(BR_ENOMEM, "tokenizer: out of memory (vocab of %d)", t->n_vocab);
    if ((st = tok_strmap_init(&t->vocab, (size_t)t->n_vocab))) return st;
    cJSON_ArrayForEach(it, vocab) {
        size_t n = strlen(it->string);
        if (t->piece[it->valueint]) return br_fail(BR_EFORMAT, "%s: vocab id %d is used twice ('%s')", path, it->valueint, it->string);
        if (!(t->piece[it->valueint] = dup_mem(it->string, n))) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        t->piece_len[it->valueint] = (uint32_t)n;
        if ((st = tok_strmap_put(&t->vocab, it->string, n, it->valueint))) return st;
    }
    t->unk_id = -1;
    if (unk) {
        t->unk_id = tok_strmap_get(&t->vocab, unk, strlen(unk));
        if (t->unk_id < 0) return br_fail(BR_EFORMAT, "%s: model unk_token '%s' is not in the vocab", path, unk);
    }
    if (pfx && *pfx) { t->prefix_len = strlen(pfx); if (!(t->prefix = dup_mem(pfx, t->prefix_len))) return br_fail(BR_ENOMEM, "tokenizer: out of memory"); }
    if (sfx && *sfx) { t->suffix_len = strlen(sfx); if (!(t->suffix = dup_mem(sfx, t->suffix_len))) return br_fail(BR_ENOMEM, "tokenizer: out of memory"); }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = tok_strmap_get(&t->vocab, name, 6);
    }
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0, rank = 0;
    if ((st = tok_pairmap_init(&t->merges, (size_t)n_merges))) return st;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) { /* "a b" */
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp || sp == it->valuestring || !sp[1] || strchr(sp + 1, ' ')) {
                st = br_fail(BR_EFORMAT, "%s: merges[%d] = '%s' is not 'a b'", path, rank, it->valuestring);
                goto cleanup;
            }
            a = it->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) { /* ["a", "b"] */
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            st = br_fail(BR_EFORMAT, "%s: merges[%d] must be \"a b\" or [\"a\", \"b\"]", path, rank);
            goto cleanup;
        }
        int32_t ia = tok_strmap_get(&t->vocab, a, la), ib = tok_strmap_get(&t->vocab, b, lb);
        if (ia < 0 || ib < 0) {
            st = br_fail(BR_EFORMAT, "%s: merges[%d]: token '%.*s' is not in the vocab", path, rank, ia < 0 ? (int)la : (int)lb, ia < 0 ? a : b);
            goto cleanup;
        }
        /* the merged token drops the continuing-subword prefix of its right part (HF) */
        size_t skip = (t->prefix_len && lb >= t->prefix_len && !memcmp(b, t->prefix, t->prefix_len)) ? t->prefix_len : 0;
        key.len = 0;
        if ((st = tok_buf_put(&key, a, la)) || (st = tok_buf_put(&key, b + skip, lb - skip))) goto cleanup;
        int32_t nid = tok_strmap_get(&t->vocab, key.p, key.len);
        if (nid < 0) {
            st = br_fail(BR_EFORMAT, "%s: merges[%d]: merged token '%s' is not in the vocab", path, rank, key.p);
            goto cleanup;
        }
        /* a repeated pair keeps its last rank, as HF's map construction does */
        if ((st = tok_pairmap_put(&t->merges, ia, ib, rank, nid))) goto cleanup;
        rank++;
    }
cleanup:
    free(key.p);
    return st;
}

br_status tok_load(const char *path, tok_tokenizer **out) {
    br_status st = BR_OK;
    char *text = NULL, *cfg = NULL;
    size_t len;
    cJSON *root = NULL;
    tok_tokenizer *t = NULL;
    struct stat sb;
    *out = NULL;
    if (!path) return br_fail(BR_EINVAL, "tokenizer: no path given");
    size_t pl = strlen(path);
    t = calloc(1, sizeof *t);
    cfg = malloc(pl + 32);
    if (!t || !cfg) { st = br_fail(BR_ENOMEM, "tokenizer: out of memory"); goto cleanup; }
    t->bos_id = t->eos_id = t->unk_id = -1;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        t->path = malloc(pl + 32);
        if (!t->path) { st = br_fail(BR_ENOMEM, "tokenizer: out of memory"); goto cleanup; }
        snprintf(t->path, pl + 32, "%s/tokenizer.json", path);
        snprintf(cfg, pl + 32, "%s/tokenizer_config.json", path);
    } else {
        if (!(t->path = dup_mem(path, pl))) { st = br_fail(BR_ENOMEM, "tokenizer: out of memory"); goto cleanup; }
        const char *slash = strrchr(path, '/');
        if (slash) snprintf(cfg, pl + 32, "%.*s/tokenizer_config.json", (int)(slash - path), path);
        else snprintf(cfg, pl + 32, "tokenizer_config.json");
    }
    if ((st = br_read_file(t->path, &text, &len))) goto cleanup;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        const char *e = cJSON_GetErrorPtr();
        long off = (e && e >= text && e <= text + len) ? (long)(e - text) : -1;
        st = br_fail(BR_EFORMAT, "%s: malformed JSON (near byte %ld)", t->path, off);
        goto cleanup;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        st = br_fail(BR_EFORMAT, "%s: field 'added_tokens' must be an array", t->path);
        goto cleanup;
    }
    if ((st = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), added))) goto cleanup;
    if ((st = tok_strmap_init(&t->added_map, 16))) goto cleanup;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (o && !cJSON_IsNull(o) && (st = parse_normalizer(t, o))) goto cleanup;
    o = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (o && !cJSON_IsNull(o) && (st = parse_pre(t, o))) goto cleanup;
    o = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (o && !cJSON_IsNull(o)) {
        t->has_decoder = 1;
        if ((st = parse_decoder(t, o))) goto cleanup;
    }
    if (added && (st = parse_added(t, added))) goto cleanup;
    if ((st = index_added(t))) goto cleanup;
    o = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (o && !cJSON_IsNull(o) && (st = parse_post(t, o))) goto cleanup;
    /* the ByteLevel tables serve the pre-tokenizer and the decoder, which may come alone */
    tok_bytelevel_tables(t->byte_cp);
    for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t k = tok_utf8_encode(t->byte_cp[b], u);
        t->cp_byte[t->byte_cp[b]] = b;
        t->byte_sym[b] = tok_strmap_get(&t->vocab, u, k);
    }
    if ((st = load_config(t, cfg))) goto cleanup;
    *out = t;
    t = NULL;
cleanup:
    if (t) {
        if (st) br_fail_ctx(st, "loading tokenizer %s", path);
        tok_free(t);
    }
    cJSON_Delete(root);
    free(text);
    free(cfg);
    return st;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; t->piece && i < t->n_vocab; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->special);
    tok_strmap_free(&t->vocab);
    tok_strmap_free(&t->added_map);
    tok_pairmap_free(&t->merges);
    free(t->prefix);
    free(t->suffix);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].str);
        free(t->norm[i].content);
        pcre2_code_free(t->norm[i].re);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].pat);
        free(t->dec[i].content);
    }
    free(t->dec);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->trie_raw.next);
    free(t->trie_raw.tok);
    free(t->trie_norm.next);
    free(t->trie_norm.tok);
    pcre2_code_free(t->word_re);
    free(t->pre_ids);
    free(t->post_ids);
    free(t->path);
    free(t);
}

int tok_vocab_size(const tok_tokenizer *t) { return t->n_vocab; }
int tok_bos_id(const tok_tokenizer *t) { return t->bos_id; }
int tok_eos_id(const tok_tokenizer *t) { return t->eos_id; }

const char *tok_id_to_piece(const tok_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? t->piece[id] : NULL;
}

int32_t tok_piece_to_id(const tok_tokenizer *t, const char *piece) {
    size_t n = strlen(piece);
    int32_t id = tok_strmap_get(&t->added_map, piece, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, piece, n);
}

int tok_is_special(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->special[id];
}
