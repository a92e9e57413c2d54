/* Tokenizer containers: growable buffers, a string -> id map for the vocabulary and a pair map for
 * BPE merges (open addressing, power-of-two capacity, kept at most half full). */
#include <stdlib.h>
#include <string.h>

#include "policy/tokenizer/tokenizer_int.h"

br_status tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return BR_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return br_fail(BR_ENOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return BR_OK;
}

br_status tok_buf_put(tok_buf *b, const void *data, size_t n) {
    br_status st = tok_buf_reserve(b, n + 1); /* +1 keeps room for a NUL terminator */
    if (st) return st;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return BR_OK;
}

br_status tok_ids_put(tok_ids *v, const int32_t *ids, size_t n) {
    if (n == 0) return BR_OK;
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->len + n) cap *= 2;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return br_fail(BR_ENOMEM, "tokenizer: out of memory (%zu ids)", cap);
        v->p = p;
        v->cap = cap;
    }
    memcpy(v->p + v->len, ids, n * sizeof *ids);
    v->len += n;
    return BR_OK;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static uint64_t str_hash(const char *k, size_t n) {
    uint64_t h = br_hash64(k, n, 0x746f6b);
    return h ? h : 1; /* 0 marks an empty slot */
}

br_status tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->hash = calloc(m->cap, sizeof *m->hash);
    m->koff = malloc(m->cap * sizeof *m->koff);
    m->klen = malloc(m->cap * sizeof *m->klen);
    m->val = malloc(m->cap * sizeof *m->val);
    if (!m->hash || !m->koff || !m->klen || !m->val) {
        tok_strmap_free(m);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory (map of %zu)", expected);
    }
    return BR_OK;
}

void tok_strmap_free(tok_strmap *m) {
    if (!m) return;
    free(m->hash);
    free(m->koff);
    free(m->klen);
    free(m->val);
    free(m->arena.p);
    memset(m, 0, sizeof *m);
}

static br_status strmap_grow(tok_strmap *m) {
    tok_strmap n = *m;
    n.cap = m->cap * 2;
    n.hash = calloc(n.cap, sizeof *n.hash);
    n.koff = malloc(n.cap * sizeof *n.koff);
    n.klen = malloc(n.cap * sizeof *n.klen);
    n.val = malloc(n.cap * sizeof *n.val);
    if (!n.hash || !n.koff || !n.klen || !n.val) {
        free(n.hash);
        free(n.koff);
        free(n.klen);
        free(n.val);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory (map of %zu)", n.cap);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        size_t j = m->hash[i] & (n.cap - 1);
        while (n.hash[j]) j = (j + 1) & (n.cap - 1);
        n.hash[j] = m->hash[i];
        n.koff[j] = m->koff[i];
        n.klen[j] = m->klen[i];
        n.val[j] = m->val[i];
    }
    free(m->hash);
    free(m->koff);
    free(m->klen);
    free(m->val);
    *m = n;
    return BR_OK;
}

br_status tok_strmap_put(tok_strmap *m, const char *k, size_t klen, int32_t val) {
    uint64_t h = str_hash(k, klen);
    size_t j = h & (m->cap - 1);
    while (m->hash[j]) {
        if (m->hash[j] == h && m->klen[j] == klen && !memcmp(m->arena.p + m->koff[j], k, klen)) {
            m->val[j] = val;
            return BR_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->arena.len + klen + 1 > UINT32_MAX) return br_fail(BR_ENOMEM, "tokenizer: vocabulary too large");
    br_status st = tok_buf_put(&m->arena, k, klen);
    if (st) return st;
    m->hash[j] = h;
    m->koff[j] = (uint32_t)(m->arena.len - klen);
    m->klen[j] = (uint32_t)klen;
    m->val[j] = val;
    m->count++;
    return m->count * 2 > m->cap ? strmap_grow(m) : BR_OK;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t klen) {
    if (!m->cap) return -1;
    uint64_t h = str_hash(k, klen);
    size_t j = h & (m->cap - 1);
    while (m->hash[j]) {
        if (m->hash[j] == h && m->klen[j] == klen && !memcmp(m->arena.p + m->koff[j], k, klen)) return m->val[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

static uint64_t pair_key(int32_t a, int32_t b) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1; }

static size_t pair_slot(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL; /* Fibonacci hashing spreads consecutive ids */
    return (size_t)(h >> 20) & (cap - 1);
}

br_status tok_pairmap_init(tok_pairmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->key = calloc(m->cap, sizeof *m->key);
    m->rank = malloc(m->cap * sizeof *m->rank);
    m->id = malloc(m->cap * sizeof *m->id);
    if (!m->key || !m->rank || !m->id) {
        tok_pairmap_free(m);
        return br_fail(BR_ENOMEM, "tokenizer: out of memory (merges map of %zu)", expected);
    }
    return BR_OK;
}

void tok_pairmap_free(tok_pairmap *m) {
    if (!m) return;
    free(m->key);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

br_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    if ((m->count + 1) * 2 > m->cap) {
        tok_pairmap n;
        br_status st = tok_pairmap_init(&n, m->cap);
        if (st) return st;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t j = pair_slot(m->key[i], n.cap);
            while (n.key[j]) j = (j + 1) & (n.cap - 1);
            n.key[j] = m->key[i];
            n.rank[j] = m->rank[i];
            n.id[j] = m->id[i];
        }
        n.count = m->count;
        tok_pairmap_free(m);
        *m = n;
    }
    uint64_t key = pair_key(a, b);
    size_t j = pair_slot(key, m->cap);
    while (m->key[j] && m->key[j] != key) j = (j + 1) & (m->cap - 1);
    if (!m->key[j]) m->count++;
    m->key[j] = key;
    m->rank[j] = rank;
    m->id[j] = id;
    return BR_OK;
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    if (!m->cap) return 0;
    uint64_t key = pair_key(a, b);
    size_t j = pair_slot(key, m->cap);
    while (m->key[j]) {
        if (m->key[j] == key) {
            *rank = m->rank[j];
            *id = m->id[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}
