/* BPE merge engine: HF tokenizers' Word::merge_all (lowest merge rank first, leftmost on ties) over a
 * doubly linked symbol list with a binary heap, so a word of n units costs O(n log n), plus a per-call
 * cache of pre-token -> ids. */
#include <stdlib.h>
#include <string.h>

#include "policy/tokenizer/tokenizer_int.h"

/* Pre-tokens longer than this are not cached (HF uses a similar bound); they are rare and unique. */
#define TOK_CACHE_MAX_WORD 256
/* The cache is dropped and restarted past this many entries so memory stays bounded on huge inputs. */
#define TOK_CACHE_MAX_ENTRIES (1u << 20)

typedef struct {
    int32_t rank, pos, id;
} merge_ent;

struct tok_bpe_ctx {
    tok_strmap cache;   /* pre-token bytes -> entry index */
    uint32_t *ent_off;  /* (n_ent) offset of the entry's ids in cache_ids */
    uint32_t *ent_cnt;  /* (n_ent) */
    size_t n_ent, cap_ent;
    tok_ids cache_ids;
    /* per-word scratch, grown as needed */
    int32_t *sym, *prev, *next; /* (cap_sym) symbol id, linked list; sym = -1 marks a removed symbol */
    size_t cap_sym;
    merge_ent *heap;
    size_t cap_heap, n_heap;
    tok_buf tmp;
    tok_ids word;
};

br_status tok_bpe_ctx_create(tok_bpe_ctx **out) {
    *out = NULL;
    tok_bpe_ctx *c = calloc(1, sizeof *c);
    if (!c) return br_fail(BR_ENOMEM, "tokenizer: out of memory");
    br_status st = tok_strmap_init(&c->cache, 1024);
    if (st) {
        free(c);
        return st;
    }
    *out = c;
    return BR_OK;
}

void tok_bpe_ctx_free(tok_bpe_ctx *c) {
    if (!c) return;
    tok_strmap_free(&c->cache);
    free(c->ent_off);
    free(c->ent_cnt);
    free(c->cache_ids.p);
    free(c->sym);
    free(c->prev);
    free(c->next);
    free(c->heap);
    free(c->tmp.p);
    free(c->word.p);
    free(c);
}

static int merge_less(const merge_ent *a, const merge_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tok_bpe_ctx *c, merge_ent e) {
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&e, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static merge_ent heap_pop(tok_bpe_ctx *c) {
    merge_ent top = c->heap[0];
    merge_ent last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const merge_ent *best = &last;
        if (l < n && merge_less(&c->heap[l], best)) { m = l; best = &c->heap[l]; }
        if (r < n && merge_less(&c->heap[r], best)) { m = r; }
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static br_status grow_scratch(tok_bpe_ctx *c, size_t n) {
    if (n <= c->cap_sym) return BR_OK;
    size_t cap = c->cap_sym ? c->cap_sym : 64;
    while (cap < n) cap *= 2;
    int32_t *s = realloc(c->sym, cap * sizeof *s);
    if (s) c->sym = s;
    int32_t *p = realloc(c->prev, cap * sizeof *p);
    if (p) c->prev = p;
    int32_t *x = realloc(c->next, cap * sizeof *x);
    if (x) c->next = x;
    /* each merge pushes at most 2 entries: n initial + 2n later */
    merge_ent *h = realloc(c->heap, 3 * cap * sizeof *h);
    if (h) c->heap = h;
    if (!s || !p || !x || !h) return br_fail(BR_ENOMEM, "tokenizer: out of memory (word of %zu units)", n);
    c->cap_sym = cap;
    c->cap_heap = 3 * cap;
    return BR_OK;
}

/* Vocab id of one unit (a character, or a mapped byte) with the continuing-subword prefix / end-of-word
 * suffix applied as HF does; -1 when absent. */
static int32_t unit_id(const tok_tokenizer *tok, tok_bpe_ctx *c, const char *u, size_t ulen, int first, int last,
                       const char **full, size_t *full_len, br_status *st) {
    *full = u;
    *full_len = ulen;
    if ((!first && tok->prefix_len) || (last && tok->suffix_len)) {
        c->tmp.len = 0;
        if (!first && tok->prefix_len && (*st = tok_buf_put(&c->tmp, tok->prefix, tok->prefix_len))) return -1;
        if ((*st = tok_buf_put(&c->tmp, u, ulen))) return -1;
        if (last && tok->suffix_len && (*st = tok_buf_put(&c->tmp, tok->suffix, tok->suffix_len))) return -1;
        *full = c->tmp.p;
        *full_len = c->tmp.len;
    }
    return tok_strmap_get(&tok->vocab, *full, *full_len);
}

/* HF BPE::merge_word: initial symbols, byte fallback, unk fusing, then merge_all. */
static br_status bpe_merge(const tok_tokenizer *tok, tok_bpe_ctx *c, const char *w, size_t n, tok_ids *out) {
    br_status st = BR_OK;
    c->word.len = 0;
    int32_t unk = -1; /* pending unknown symbol (HF keeps it until the next known one) */
    size_t i = 0;
    while (i < n) {
        char ubuf[4];
        const char *u;
        size_t ulen, adv;
        if (tok->bytelevel) {
            unsigned char b = (unsigned char)w[i];
            adv = 1;
            ulen = tok_utf8_encode(tok->byte_cp[b], ubuf);
            u = ubuf;
        } else {
            adv = tok_utf8_len((unsigned char)w[i]);
            u = w + i;
            ulen = adv;
        }
        int first = i == 0, last = i + adv >= n;
        int32_t id;
        const char *full;
        size_t full_len;
        if (tok->bytelevel && !tok->prefix_len && !tok->suffix_len) {
            id = tok->byte_sym[(unsigned char)w[i]];
            full = u;
            full_len = ulen;
        } else {
            id = unit_id(tok, c, u, ulen, first, last, &full, &full_len, &st);
            if (st) return st;
        }
        i += adv;
        if (id >= 0) {
            if (unk >= 0 && (st = tok_ids_put(&c->word, &unk, 1))) return st;
            unk = -1;
            if ((st = tok_ids_put(&c->word, &id, 1))) return st;
            continue;
        }
        if (tok->byte_fallback) {
            int all = 1;
            for (size_t k = 0; k < full_len; k++) all &= tok->byte_tok[(unsigned char)full[k]] >= 0;
            if (all) {
                for (size_t k = 0; k < full_len; k++)
                    if ((st = tok_ids_put(&c->word, &tok->byte_tok[(unsigned char)full[k]], 1))) return st;
                continue;
            }
        }
        if (tok->unk_id >= 0) {
            if (unk >= 0 && !tok->fuse_unk && (st = tok_ids_put(&c->word, &unk, 1))) return st;
            unk = tok->unk_id;
        }
        /* no unk token: HF drops the unit, and so do we (ids must match HF) */
    }
    if (unk >= 0 && (st = tok_ids_put(&c->word, &unk, 1))) return st;

    size_t m = c->word.len;
    if ((st = grow_scratch(c, m))) return st;
    for (size_t k = 0; k < m; k++) {
        c->sym[k] = c->word.p[k];
        c->prev[k] = (int32_t)k - 1;
        c->next[k] = k + 1 < m ? (int32_t)k + 1 : -1;
    }
    c->n_heap = 0;
    for (size_t k = 0; k + 1 < m; k++) {
        int32_t rank, nid;
        if (tok_pairmap_get(&tok->merges, c->sym[k], c->sym[k + 1], &rank, &nid))
            heap_push(c, (merge_ent){rank, (int32_t)k, nid});
    }
    while (c->n_heap) {
        merge_ent top = heap_pop(c);
        int32_t p = top.pos;
        if (c->sym[p] < 0 || c->next[p] < 0) continue;
        int32_t q = c->next[p];
        int32_t rank, nid;
        /* stale entry: the pair at p changed since it was pushed */
        if (!tok_pairmap_get(&tok->merges, c->sym[p], c->sym[q], &rank, &nid) || nid != top.id) continue;
        c->sym[p] = nid;
        c->sym[q] = -1;
        c->next[p] = c->next[q];
        if (c->next[q] >= 0) c->prev[c->next[q]] = p;
        if (c->prev[p] >= 0) {
            int32_t l = c->prev[p];
            if (tok_pairmap_get(&tok->merges, c->sym[l], c->sym[p], &rank, &nid))
                heap_push(c, (merge_ent){rank, l, nid});
        }
        if (c->next[p] >= 0) {
            if (tok_pairmap_get(&tok->merges, c->sym[p], c->sym[c->next[p]], &rank, &nid))
                heap_push(c, (merge_ent){rank, p, nid});
        }
    }
    for (int32_t k = m ? 0 : -1; k >= 0; k = c->next[k])
        if ((st = tok_ids_put(out, &c->sym[k], 1))) return st;
    return BR_OK;
}

static br_status bpe_uncached(const tok_tokenizer *tok, tok_bpe_ctx *c, const char *w, size_t n, tok_ids *out) {
    if (tok->ignore_merges) {
        /* HF: a word that is itself in the vocabulary is emitted whole, without merging */
        const char *key = w;
        size_t klen = n;
        if (tok->bytelevel) {
            c->tmp.len = 0;
            for (size_t i = 0; i < n; i++) {
                char u[4];
                br_status st = tok_buf_put(&c->tmp, u, tok_utf8_encode(tok->byte_cp[(unsigned char)w[i]], u));
                if (st) return st;
            }
            key = c->tmp.p;
            klen = c->tmp.len;
        }
        int32_t id = tok_strmap_get(&tok->vocab, key, klen);
        if (id >= 0) return tok_ids_put(out, &id, 1);
    }
    return bpe_merge(tok, c, w, n, out);
}

br_status tok_bpe_word(const tok_tokenizer *tok, tok_bpe_ctx *c, const char *w, size_t n, tok_ids *out) {
    br_status st;
    if (n == 0) return BR_OK;
    if (n > TOK_CACHE_MAX_WORD) return bpe_uncached(tok, c, w, n, out);
    int32_t e = tok_strmap_get(&c->cache, w, n);
    if (e >= 0) return c->ent_cnt[e] ? tok_ids_put(out, c->cache_ids.p + c->ent_off[e], c->ent_cnt[e]) : BR_OK;
    size_t before = out->len;
    if ((st = bpe_uncached(tok, c, w, n, out))) return st;
    if (c->n_ent >= TOK_CACHE_MAX_ENTRIES) {
        tok_strmap_free(&c->cache);
        if ((st = tok_strmap_init(&c->cache, 1024))) return st;
        c->n_ent = 0;
        c->cache_ids.len = 0;
    }
    if (c->n_ent == c->cap_ent) {
        size_t cap = c->cap_ent ? c->cap_ent * 2 : 256;
        uint32_t *o = realloc(c->ent_off, cap * sizeof *o);
        if (o) c->ent_off = o;
        uint32_t *k = realloc(c->ent_cnt, cap * sizeof *k);
        if (k) c->ent_cnt = k;
        if (!o || !k) return br_fail(BR_ENOMEM, "tokenizer: out of memory (cache)");
        c->cap_ent = cap;
    }
    c->ent_off[c->n_ent] = (uint32_t)c->cache_ids.len;
    c->ent_cnt[c->n_ent] = (uint32_t)(out->len - before);
    /* a word can encode to nothing (no unk token, no merges): out->p may then be NULL, and NULL + 0 is UB */
    if (out->len > before && (st = tok_ids_put(&c->cache_ids, out->p + before, out->len - before))) return st;
    if ((st = tok_strmap_put(&c->cache, w, n, (int32_t)c->n_ent))) return st;
    c->n_ent++;
    return BR_OK;
}
