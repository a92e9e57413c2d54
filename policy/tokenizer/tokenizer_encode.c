/* Encoding and decoding with a loaded tok_tokenizer, in HF tokenizers' order: added tokens split out
 * of the raw text, normalizers, pre-tokenizers, BPE per pre-token, template ids; decoders in reverse. */
#include <stdlib.h>
#include <string.h>

#include "policy/tokenizer/tokenizer_int.h"

/* Rust's char::is_whitespace (Unicode White_Space), which HF's lstrip/rstrip use. */
static int is_white(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct {
    const tok_tokenizer *tok;
    tok_bpe_ctx *bpe;
    tok_ids *out;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} enc_ctx;

static br_status regex_error(int rc) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return br_fail(BR_ERUNTIME, "tokenizer: regex match failed: %s", (char *)msg);
}

/* Next match of re in s[0..n) at or after `from`; *found = 0 when there is none. */
static br_status next_match(enc_ctx *e, const pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms,
                            size_t *me, int *found) {
    *found = 0;
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return BR_OK;
    if (rc < 0) return regex_error(rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *ms = ov[0];
    *me = ov[1];
    *found = 1;
    return BR_OK;
}

br_status tok_normalize(const tok_tokenizer *t, const char *s, size_t n, tok_buf *out) {
    br_status st = BR_OK;
    tok_buf a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    out->len = 0;
    if ((st = tok_buf_put(&a, s, n))) goto cleanup;
    for (int i = 0; i < t->n_norm; i++) {
        const tok_norm *nm = &t->norm[i];
        b.len = 0;
        if ((st = tok_buf_put(&b, "", 0))) goto cleanup;
        if (nm->kind == TOK_NORM_NFC) {
            st = tok_nfc(&b, a.p, a.len);
        } else if (nm->kind == TOK_NORM_PREPEND) {
            if (a.len == 0) continue; /* HF prepends only to non-empty text */
            if (!(st = tok_buf_put(&b, nm->str, nm->str_len))) st = tok_buf_put(&b, a.p, a.len);
        } else if (!nm->re) {
            size_t i0 = 0;
            for (size_t j = 0; !st && j + nm->str_len <= a.len;) {
                if (!memcmp(a.p + j, nm->str, nm->str_len)) {
                    if (!(st = tok_buf_put(&b, a.p + i0, j - i0))) st = tok_buf_put(&b, nm->content, nm->content_len);
                    j += nm->str_len;
                    i0 = j;
                } else {
                    j++;
                }
            }
            if (!st) st = tok_buf_put(&b, a.p + i0, a.len - i0);
        } else {
            if (!md && !(md = pcre2_match_data_create_from_pattern(nm->re, NULL))) {
                st = br_fail(BR_ENOMEM, "tokenizer: out of memory");
                goto cleanup;
            }
            size_t i0 = 0, from = 0;
            while (!st && from <= a.len) {
                int rc = pcre2_match(nm->re, (PCRE2_SPTR)a.p, a.len, from, PCRE2_NO_UTF_CHECK, md, NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) { st = regex_error(rc); break; }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                if (!(st = tok_buf_put(&b, a.p + i0, ov[0] - i0))) st = tok_buf_put(&b, nm->content, nm->content_len);
                i0 = ov[1];
                from = ov[1] > ov[0] ? ov[1] : ov[1] + (ov[1] < a.len ? tok_utf8_len((unsigned char)a.p[ov[1]]) : 1);
            }
            if (!st && i0 < a.len) st = tok_buf_put(&b, a.p + i0, a.len - i0);
        }
        if (st) goto cleanup;
        tok_buf tmp = a;
        a = b;
        b = tmp;
    }
    st = tok_buf_put(out, a.p, a.len);
cleanup:
    pcre2_match_data_free(md);
    free(a.p);
    free(b.p);
    return st;
}

static br_status pretok(enc_ctx *e, int step, const char *s, size_t n);

static br_status emit_piece(enc_ctx *e, int step, const char *s, size_t n) {
    return n ? pretok(e, step + 1, s, n) : BR_OK; /* HF drops empty splits */
}

/* Split pre-tokenizer with HF's SplitDelimiterBehavior, streamed: each (part, is_match) of the
 * regex's find_matches is folded into a pending piece, which is emitted once the behaviour can no
 * longer extend it. */
typedef struct {
    enc_ctx *e;
    int step;
    tok_split_behavior beh;
    const char *s;
    size_t ps, pe; /* pending piece */
    int have, pend_match, prev_match;
} split_state;

static br_status split_part(split_state *z, size_t a, size_t b, int is_match) {
    br_status st = BR_OK;
    switch (z->beh) {
    case TOK_SPLIT_ISOLATED:
        st = emit_piece(z->e, z->step, z->s + a, b - a);
        break;
    case TOK_SPLIT_REMOVED:
        if (!is_match) st = emit_piece(z->e, z->step, z->s + a, b - a);
        break;
    case TOK_SPLIT_PREV: /* a match joins the non-match before it */
    case TOK_SPLIT_CONTIG: /* runs of equal kind are one piece */
    case TOK_SPLIT_NEXT: /* a match absorbs the non-match that follows it */
        if (z->have && ((z->beh == TOK_SPLIT_PREV && is_match && !z->prev_match) ||
                        (z->beh == TOK_SPLIT_CONTIG && is_match == z->prev_match) ||
                        (z->beh == TOK_SPLIT_NEXT && z->pend_match && !is_match))) {
            z->pe = b;
            z->pend_match = 0;
        } else {
            if (z->have) st = emit_piece(z->e, z->step, z->s + z->ps, z->pe - z->ps);
            z->ps = a;
            z->pe = b;
            z->have = 1;
            z->pend_match = is_match;
        }
        break;
    }
    z->prev_match = is_match;
    return st;
}

static br_status split_step(enc_ctx *e, int step, const pcre2_code *re, tok_split_behavior beh, int invert,
                            const char *s, size_t n) {
    br_status st = BR_OK;
    split_state z = {e, step, beh, s, 0, 0, 0, 0, 0};
    size_t pos = 0, from = 0;
    for (;;) {
        size_t ms = n, me = n;
        int found = 0;
        if (from <= n && (st = next_match(e, re, s, n, from, &ms, &me, &found))) return st;
        size_t gap_end = found ? ms : n;
        if (gap_end > pos && (st = split_part(&z, pos, gap_end, invert))) return st;
        if (!found) break;
        if ((st = split_part(&z, ms, me, !invert))) return st;
        pos = me;
        /* after an empty match, step one character on (as Oniguruma's find_iter does) */
        from = me > ms ? me : me + (me < n ? tok_utf8_len((unsigned char)s[me]) : 1);
    }
    if (z.have) st = emit_piece(e, step, s + z.ps, z.pe - z.ps);
    return st;
}

static br_status pretok(enc_ctx *e, int step, const char *s, size_t n) {
    const tok_tokenizer *t = e->tok;
    if (step == t->n_pre) return tok_bpe_word(t, e->bpe, s, n, e->out);
    const tok_pre *p = &t->pre[step];
    if (p->kind == TOK_PRE_SPLIT) return split_step(e, step, p->re, p->behavior, p->invert, s, n);
    /* ByteLevel: optional leading space, optional GPT-2 split; the byte mapping happens in BPE. */
    br_status st = BR_OK;
    char *tmp = NULL;
    if (p->add_prefix_space && s[0] != ' ') {
        if (!(tmp = malloc(n + 1))) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp;
        n++;
    }
    if (p->re) st = split_step(e, step, p->re, TOK_SPLIT_ISOLATED, 0, s, n);
    else st = pretok(e, step + 1, s, n);
    free(tmp);
    return st;
}

/* Normalizes one stretch of text between raw added tokens, splits out normalized added tokens, and
 * pre-tokenizes + BPE-encodes the rest. */
static br_status encode_plain(enc_ctx *e, const char *s, size_t n);
static br_status split_added(enc_ctx *e, const tok_trie *tr, const char *s, size_t n, int normalized);

static br_status encode_segment(enc_ctx *e, const char *s, size_t n, int normalized) {
    if (!n) return BR_OK;
    if (normalized) return pretok(e, 0, s, n);
    const tok_tokenizer *t = e->tok;
    if (!t->n_norm) return t->trie_norm.n_nodes ? split_added(e, &t->trie_norm, s, n, 1) : pretok(e, 0, s, n);
    return encode_plain(e, s, n);
}

static br_status encode_plain(enc_ctx *e, const char *s, size_t n) {
    tok_buf nb = {0};
    br_status st = tok_normalize(e->tok, s, n, &nb);
    if (!st && nb.len) {
        if (e->tok->trie_norm.n_nodes) st = split_added(e, &e->tok->trie_norm, nb.p, nb.len, 1);
        else st = pretok(e, 0, nb.p, nb.len);
    }
    free(nb.p);
    return st;
}

static int char_is_word(const tok_tokenizer *t, enc_ctx *e, const char *s, size_t n, size_t at) {
    return pcre2_match(t->word_re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, e->md, NULL) >= 0;
}

/* HF AddedVocabulary::find_matches: leftmost-longest matches of added tokens, with single_word,
 * lstrip and rstrip applied; the text between them goes to encode_segment. */
static br_status split_added(enc_ctx *e, const tok_trie *tr, const char *s, size_t n, int normalized) {
    const tok_tokenizer *t = e->tok;
    br_status st;
    size_t done = 0, i = 0;
    while (i < n) {
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < n; j++) {
            node = tr->next[(size_t)node * 256 + (unsigned char)s[j]];
            if (!node) break;
            if (tr->tok[node] >= 0) {
                best = tr->tok[node];
                best_end = j + 1;
            }
        }
        if (best < 0) {
            i++;
            continue;
        }
        const tok_added *a = &t->added[best];
        size_t start = i, stop = best_end;
        if (a->single_word) {
            int before = 0, after = 0;
            if (start > 0) {
                size_t k = start - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                before = char_is_word(t, e, s, n, k);
            }
            if (stop < n) after = char_is_word(t, e, s, n, stop);
            if (before || after) {
                i = best_end; /* HF's matcher resumes after the rejected match */
                continue;
            }
        }
        if (a->lstrip) {
            size_t k = start;
            while (k > done) {
                size_t q = k - 1, adv;
                while (q > done && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                if (!is_white(tok_utf8_decode(s + q, &adv))) break;
                k = q;
            }
            start = k;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t adv;
                if (!is_white(tok_utf8_decode(s + stop, &adv))) break;
                stop += adv;
            }
        }
        if ((st = encode_segment(e, s + done, start - done, normalized))) return st;
        if ((st = tok_ids_put(e->out, &a->id, 1))) return st;
        done = stop;
        i = best_end > stop ? best_end : stop; /* the matcher resumes after the token itself */
    }
    return encode_segment(e, s + done, n - done, normalized);
}

br_status tok_encode(const tok_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                     size_t *n) {
    br_status st = BR_OK;
    enc_ctx e = {0};
    tok_ids out = {0};
    *ids = NULL;
    *n = 0;
    if (!text && len) return br_fail(BR_EINVAL, "tokenizer: NULL text");
    size_t bad = tok_utf8_check(text, len);
    if (bad != (size_t)-1)
        return br_fail(BR_EINVAL, "tokenizer input: invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                       (unsigned)(unsigned char)text[bad]);
    e.tok = t;
    e.out = &out;
    if ((st = tok_bpe_ctx_create(&e.bpe))) goto cleanup;
    e.md = pcre2_match_data_create(8, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    /* a larger JIT stack than the 32 KiB default, so long runs of one class cannot exhaust it */
    e.jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!e.md || !e.mctx || !e.jit) {
        st = br_fail(BR_ENOMEM, "tokenizer: out of memory");
        goto cleanup;
    }
    pcre2_jit_stack_assign(e.mctx, NULL, e.jit);
    /* The default limit (10M steps) is hit by legitimate input such as 10 MB of spaces, where the
     * "\s*[\r\n]+" alternative scans the run once per match; the patterns are linear per match. */
    pcre2_set_match_limit(e.mctx, UINT32_MAX);
    if (add_special && (st = tok_ids_put(&out, t->pre_ids, (size_t)t->n_pre_ids))) goto cleanup;
    if (t->trie_raw.n_nodes) st = split_added(&e, &t->trie_raw, text, len, 0);
    else st = encode_segment(&e, text, len, 0);
    if (st) goto cleanup;
    if (add_special && (st = tok_ids_put(&out, t->post_ids, (size_t)t->n_post_ids))) goto cleanup;
    *ids = out.p;
    *n = out.len;
    out.p = NULL;
cleanup:
    free(out.p);
    tok_bpe_ctx_free(e.bpe);
    pcre2_match_data_free(e.md);
    pcre2_match_context_free(e.mctx);
    pcre2_jit_stack_free(e.jit);
    return st;
}

/* ---- decoding: a list of strings transformed by each decoder in turn (HF decode_chain) */
typedef struct {
    tok_buf arena;
    size_t *off, *len; /* (n) */
    size_t n, cap;
} str_list;

static void list_free(str_list *l) {
    free(l->arena.p);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static br_status list_add(str_list *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (o) l->off = o;
        size_t *k = realloc(l->len, cap * sizeof *k);
        if (k) l->len = k;
        if (!o || !k) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
        l->cap = cap;
    }
    size_t at = l->arena.len;
    br_status st = tok_buf_put(&l->arena, s, n);
    if (st) return st;
    l->off[l->n] = at;
    l->len[l->n++] = n;
    return BR_OK;
}

/* Appends to the last string of the list (which must be the last thing in the arena). */
static br_status list_extend(str_list *l, const char *s, size_t n) {
    br_status st = tok_buf_put(&l->arena, s, n);
    if (!st) l->len[l->n - 1] += n;
    return st;
}

static int parse_byte_token(const char *s, size_t n, unsigned char *b) {
    static const char hex[] = "0123456789ABCDEFabcdef";
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || !strchr(hex, s[3]) || !strchr(hex, s[4]) || !s[3] || !s[4]) return 0;
    char h[3] = {s[3], s[4], 0};
    *b = (unsigned char)strtoul(h, NULL, 16);
    return 1;
}

static br_status apply_decoder(const tok_tokenizer *t, const tok_dec *d, const str_list *in, str_list *out) {
    br_status st = BR_OK;
    tok_buf bytes = {0};
    if (d->kind == TOK_DEC_BYTELEVEL || d->kind == TOK_DEC_FUSE) {
        if ((st = list_add(out, "", 0))) goto cleanup;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->arena.p + in->off[i];
            size_t n = in->len[i];
            if (d->kind == TOK_DEC_FUSE) {
                if ((st = list_extend(out, s, n))) goto cleanup;
                continue;
            }
            /* a token whose every char is a mapped byte becomes those bytes, else stays as text */
            size_t mark = bytes.len, j = 0;
            int ok = 1;
            while (j < n) {
                size_t adv;
                uint32_t cp = tok_utf8_decode(s + j, &adv);
                int32_t b = cp < 512 ? t->cp_byte[cp] : -1;
                if (b < 0) { ok = 0; break; }
                unsigned char c = (unsigned char)b;
                if ((st = tok_buf_put(&bytes, &c, 1))) goto cleanup;
                j += adv;
            }
            if (!ok) {
                bytes.len = mark;
                if ((st = tok_buf_put(&bytes, s, n))) goto cleanup;
            }
        }
        if (d->kind == TOK_DEC_BYTELEVEL) {
            tok_buf txt = {0};
            st = tok_utf8_lossy(&txt, bytes.p ? bytes.p : "", bytes.len);
            if (!st) st = list_extend(out, txt.p, txt.len);
            free(txt.p);
        }
        goto cleanup;
    }
    if (d->kind == TOK_DEC_BYTEFALLBACK) {
        for (size_t i = 0; i <= in->n; i++) {
            unsigned char b;
            const char *s = i < in->n ? in->arena.p + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            if (s && parse_byte_token(s, n, &b)) {
                if ((st = tok_buf_put(&bytes, &b, 1))) goto cleanup;
                continue;
            }
            if (bytes.len) {
                if (tok_utf8_check(bytes.p, bytes.len) == (size_t)-1) {
                    st = list_add(out, bytes.p, bytes.len);
                } else {
                    for (size_t k = 0; !st && k < bytes.len; k++) st = list_add(out, "\xEF\xBF\xBD", 3);
                }
                if (st) goto cleanup;
                bytes.len = 0;
            }
            if (s && (st = list_add(out, s, n))) goto cleanup;
        }
        goto cleanup;
    }
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->arena.p + in->off[i];
        size_t n = in->len[i];
        if (d->kind == TOK_DEC_REPLACE) {
            if ((st = list_add(out, "", 0))) goto cleanup;
            size_t i0 = 0, j = 0;
            while (j + d->pat_len <= n) {
                if (!memcmp(s + j, d->pat, d->pat_len)) {
                    if ((st = list_extend(out, s + i0, j - i0)) || (st = list_extend(out, d->content, d->content_len)))
                        goto cleanup;
                    j += d->pat_len;
                    i0 = j;
                } else {
                    j++;
                }
            }
            if ((st = list_extend(out, s + i0, n - i0))) goto cleanup;
        } else { /* STRIP: up to `start` leading and `stop` trailing copies of one character */
            size_t a = 0, b = n, c = d->content_len;
            for (int k = 0; k < d->start && b - a >= c && !memcmp(s + a, d->content, c); k++) a += c;
            for (int k = 0; k < d->stop && b - a >= c && !memcmp(s + b - c, d->content, c); k++) b -= c;
            if ((st = list_add(out, s + a, b - a))) goto cleanup;
        }
    }
cleanup:
    free(bytes.p);
    return st;
}

br_status tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                     size_t *len) {
    br_status st = BR_OK;
    str_list a = {0}, b = {0};
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->piece[id]) {
            st = br_fail(BR_EINVAL, "tokenizer decode: ids[%zu] = %d is not a token id (vocabulary size %d)", i, id,
                         t->n_vocab);
            goto cleanup;
        }
        if (skip_special && t->special[id]) continue;
        if ((st = list_add(&a, t->piece[id], t->piece_len[id]))) goto cleanup;
    }
    if (!t->has_decoder) {
        /* HF joins the tokens with spaces when there is no decoder */
        str_list j = {0};
        if ((st = list_add(&j, "", 0))) goto cleanup;
        for (size_t i = 0; !st && i < a.n; i++) {
            if (i) st = list_extend(&j, " ", 1);
            if (!st) st = list_extend(&j, a.arena.p + a.off[i], a.len[i]);
        }
        list_free(&a);
        a = j;
        if (st) goto cleanup;
    }
    for (int k = 0; k < t->n_dec; k++) {
        if ((st = apply_decoder(t, &t->dec[k], &a, &b))) goto cleanup;
        list_free(&a);
        a = b;
        memset(&b, 0, sizeof b);
    }
    tok_buf out = {0};
    for (size_t i = 0; i < a.n; i++)
        if ((st = tok_buf_put(&out, a.arena.p + a.off[i], a.len[i]))) {
            free(out.p);
            goto cleanup;
        }
    if ((st = tok_buf_put(&out, "", 0))) {
        free(out.p);
        goto cleanup;
    }
    *text = out.p;
    *len = out.len;
cleanup:
    list_free(&a);
    list_free(&b);
    return st;
}
