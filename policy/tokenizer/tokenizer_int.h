/* Internals shared by the policy/tokenizer_*.c files: hash maps, the loaded pipeline, UTF-8 helpers,
 * the BPE merge engine. Not part of the public API (policy/tokenizer/tokenizer.h). */
#ifndef TOKENIZER_INT_H
#define TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "common/br.h"
#include "policy/tokenizer/tokenizer.h"

/* ---- growable byte buffer and id list */
typedef struct {
    char *p;
    size_t len, cap;
} tok_buf;
br_status tok_buf_reserve(tok_buf *b, size_t extra);
br_status tok_buf_put(tok_buf *b, const void *data, size_t n);

typedef struct {
    int32_t *p;
    size_t len, cap;
} tok_ids;
br_status tok_ids_put(tok_ids *v, const int32_t *ids, size_t n);

/* ---- string -> int32 map (open addressing; keys copied into one arena) */
typedef struct {
    uint64_t *hash;  /* (cap) 0 = empty slot */
    uint32_t *koff;  /* (cap) key offset in arena */
    uint32_t *klen;  /* (cap) */
    int32_t *val;    /* (cap) */
    size_t cap, count;
    tok_buf arena;
} tok_strmap;
br_status tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* Inserts or overwrites. */
br_status tok_strmap_put(tok_strmap *m, const char *k, size_t klen, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t klen); /* -1 when absent */

/* ---- (id, id) -> (rank, new id) map for merges */
typedef struct {
    uint64_t *key;  /* (cap) (a << 32 | b) + 1; 0 = empty */
    int32_t *rank;  /* (cap) */
    int32_t *id;    /* (cap) */
    size_t cap, count;
} tok_pairmap;
br_status tok_pairmap_init(tok_pairmap *m, size_t expected);
void tok_pairmap_free(tok_pairmap *m);
br_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);

/* ---- Unicode (tokenizer_unicode.c) */
/* Returns the offset of the first byte that is not strict UTF-8, or (size_t)-1 when all is valid. */
size_t tok_utf8_check(const char *s, size_t n);
/* Length of the UTF-8 sequence starting with lead byte c (input already validated). */
static inline size_t tok_utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }
uint32_t tok_utf8_decode(const char *s, size_t *adv); /* input already validated */
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Appends s to out with every ill-formed sequence replaced by U+FFFD (maximal subparts, like Rust's
 * String::from_utf8_lossy, which HF decoders use). */
br_status tok_utf8_lossy(tok_buf *out, const char *s, size_t n);
/* NFC of valid UTF-8 s, appended to out. */
br_status tok_nfc(tok_buf *out, const char *s, size_t n);
/* GPT-2 byte <-> printable code point map used by ByteLevel. */
void tok_bytelevel_tables(uint32_t byte_to_cp[256]);

/* ---- pipeline components */
typedef enum { TOK_NORM_NFC, TOK_NORM_PREPEND, TOK_NORM_REPLACE } tok_norm_kind;
typedef struct {
    tok_norm_kind kind;
    char *str;            /* PREPEND: the prefix; REPLACE: literal pattern (NULL when regex) */
    size_t str_len;
    pcre2_code *re;       /* REPLACE with a Regex pattern */
    char *content;        /* REPLACE: replacement */
    size_t content_len;
} tok_norm;

typedef enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_PREV, TOK_SPLIT_NEXT, TOK_SPLIT_CONTIG } tok_split_behavior;
typedef enum { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL } tok_pre_kind;
typedef struct {
    tok_pre_kind kind;
    pcre2_code *re;              /* SPLIT: the pattern; BYTELEVEL with use_regex: the GPT-2 pattern */
    tok_split_behavior behavior; /* SPLIT */
    int invert;                  /* SPLIT */
    int add_prefix_space;        /* BYTELEVEL */
} tok_pre;

typedef enum { TOK_DEC_BYTELEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP } tok_dec_kind;
typedef struct {
    tok_dec_kind kind;
    char *pat, *content;  /* REPLACE (literal pattern) / STRIP (content: one code point) */
    size_t pat_len, content_len;
    int start, stop;      /* STRIP */
} tok_dec;

typedef struct {
    int32_t id;
    char *content;
    size_t len;
    int single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Byte trie over added-token contents for leftmost-longest matching. */
typedef struct {
    int32_t *next;  /* (n_nodes, 256) child node or 0 */
    int32_t *tok;   /* (n_nodes) index into tok_tokenizer.added or -1 */
    int n_nodes;
} tok_trie;

struct tok_tokenizer {
    char *path; /* tokenizer.json, for messages */
    int32_t n_vocab;
    char **piece;         /* (n_vocab) token string or NULL (hole) */
    uint32_t *piece_len;  /* (n_vocab) */
    uint8_t *special;     /* (n_vocab) */
    tok_strmap vocab;     /* model vocab: string -> id */
    tok_strmap added_map; /* added token content -> id */
    tok_pairmap merges;
    /* model options */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;
    char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix, NULL when none */
    size_t prefix_len, suffix_len;
    int32_t byte_tok[256]; /* <0xNN> ids for byte fallback, -1 when absent */
    /* ByteLevel pre-tokenizer: units are bytes mapped to code points */
    int bytelevel;
    uint32_t byte_cp[256];
    int32_t byte_sym[256]; /* vocab id of each mapped byte, -1 when absent */
    int32_t cp_byte[512];  /* inverse map for code points < 512, -1 when unmapped */
    tok_norm *norm;
    int n_norm;
    tok_pre *pre;
    int n_pre;
    tok_dec *dec;
    int n_dec;
    int has_decoder;
    tok_added *added;
    int n_added;
    tok_trie trie_raw, trie_norm; /* non-normalized / normalized added tokens */
    pcre2_code *word_re;          /* [\p{Alphabetic}\p{N}] for single_word, when any token needs it */
    /* special tokens */
    int32_t bos_id, eos_id;
    int32_t *pre_ids, *post_ids; /* added around the text when add_special */
    int n_pre_ids, n_post_ids;
};

/* ---- BPE (tokenizer_bpe.c): one encode call's scratch state and word cache */
typedef struct tok_bpe_ctx tok_bpe_ctx;
br_status tok_bpe_ctx_create(tok_bpe_ctx **out);
void tok_bpe_ctx_free(tok_bpe_ctx *c);
/* Tokenizes one pre-token (raw bytes; byte-level mapping applied inside when tok->bytelevel) and
 * appends its ids. */
br_status tok_bpe_word(const tok_tokenizer *tok, tok_bpe_ctx *c, const char *w, size_t n, tok_ids *out);

#endif
