/* Replay runner for the fuzz harnesses without libFuzzer (the gcc build, CI): runs every file given (or found in a
 * directory given, in name order) through LLVMFuzzerTestOneInput, then a fixed number of mutations of them: bit
 * flips, byte changes, truncations, insertions (bytes and JSON/format tokens), deletions, duplications and
 * splices of two inputs. The mutations come from a counter-based generator keyed by (seed, mutation index): the
 * same command runs the same inputs everywhere (no time(), no rand()).
 *
 *   replay_<target> [-n MUTATIONS] [-s SEED] [-o FILE] [-m MIN] PATH...
 *
 * -m MIN: fail (exit 1) when fewer than MIN of the files given parse: a seed corpus the parser no longer accepts (a
 * format change) would leave the mutations testing only the first rejection.
 * -o FILE: each input is written to FILE before it runs, so a crash leaves its input there (a reproducer for the
 * libFuzzer binary or for replay_<target> FILE). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/br.h"
#include "fuzz_util.h"

typedef struct {
    char *path;
    uint8_t *data;
    size_t size;
} input;

static input *g_in;
static size_t g_n, g_cap;

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *b = realloc(buf, cap);
            if (!b) {
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                exit(2);
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 64;
        input *in = realloc(g_in, g_cap * sizeof *in);
        if (!in) exit(2);
        g_in = in;
    }
    g_in[g_n++] = (input){.path = strdup(path), .data = buf, .size = n};
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_path(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (!S_ISDIR(sb.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: cannot list %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) exit(2);
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp); /* readdir order differs between file systems */
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        add_path(full);
        free(names[i]);
    }
    free(names);
}

/* splitmix64 over (seed, index, draw): a pure function, so mutation k is the same whatever ran before it. */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct {
    uint64_t key, i;
} rng;

static uint64_t next(rng *r) { return mix(r->key ^ mix(r->i++)); }
static size_t below(rng *r, size_t n) { return n ? (size_t)(next(r) % n) : 0; }

/* Tokens the parsers branch on: JSON syntax and edge numbers, UTF-8 edges, names of the formats' fields. */
static const char *const k_tokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "null", "true", "false", "0", "-1", "1e309",
    "-0", "1.5", "2147483648", "9007199254740993", "18446744073709551616", "1e-50", "NaN", "\n", " ", "\t",
    "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xff", "\xc0\x80", "\"dtype\"", "\"shape\"",
    "\"data_offsets\"", "\"__metadata__\"", "\"prompt\"", "\"prompt_ids\"", "\"n\"", "\"id\"", "\"stop_ids\"",
    "\"temperature\"", "\"top_p\"", "\"top_k\"", "\"max_new_tokens\"", "\"ids\"", "\"text\"", "\"model_type\"",
    "\"vocab_size\"", "\"hidden_size\"", "\"num_attention_heads\"", "\"num_key_value_heads\"", "\"head_dim\"",
    "\"rms_norm_eps\"", "\"rope_theta\"", "\"weight_map\"", "\"added_tokens\"", "\"merges\"", "\"vocab\"",
    "\"pre_tokenizer\"", "\"normalizer\"", "\"decoder\"", "\"post_processor\"", "\"type\"", "\"BPE\"",
    "\"ByteLevel\"", "\"Sequence\"", "\"special\"", "\"content\"", "<|endoftext|>", "<s>", "\xe2\x96\x81",
};

static uint8_t *mutate(const uint8_t *src, size_t n, rng *r, size_t *out_n) {
    size_t cap = 2 * n + 4096;
    uint8_t *b = malloc(cap);
    if (!b) exit(2);
    if (n) memcpy(b, src, n);
    int ops = 1 + (int)below(r, 4);
    for (int k = 0; k < ops; k++) {
        size_t pos = below(r, n + 1);
        switch (below(r, 9)) {
        case 0: /* flip one bit */
            if (n) b[pos % n] ^= (uint8_t)(1u << below(r, 8));
            break;
        case 1: { /* set a byte to an edge value */
            static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '9', '-', ' '};
            if (n) b[pos % n] = v[below(r, sizeof v)];
            break;
        }
        case 2: /* truncate */
            n = pos;
            break;
        case 3: { /* insert random bytes */
            size_t m = 1 + below(r, 8);
            if (n + m > cap) break;
            memmove(b + pos + m, b + pos, n - pos);
            for (size_t i = 0; i < m; i++) b[pos + i] = (uint8_t)next(r);
            n += m;
            break;
        }
        case 4:
        case 5: { /* insert or overwrite with a token */
            const char *t = k_tokens[below(r, sizeof k_tokens / sizeof k_tokens[0])];
            size_t m = strlen(t);
            if (n + m > cap) break;
            if (below(r, 2) && pos + m <= n) {
                memcpy(b + pos, t, m);
            } else {
                memmove(b + pos + m, b + pos, n - pos);
                memcpy(b + pos, t, m);
                n += m;
            }
            break;
        }
        case 6: { /* delete a range */
            size_t m = below(r, 64) + 1;
            if (pos + m > n) m = n - pos;
            memmove(b + pos, b + pos + m, n - pos - m);
            n -= m;
            break;
        }
        case 7: { /* duplicate a range in place */
            size_t m = below(r, 64) + 1;
            if (pos + m > n) m = n - pos;
            if (n + m > cap) break;
            memmove(b + pos + m, b + pos, n - pos);
            n += m;
            break;
        }
        case 8: { /* splice: the tail of another input from a random offset */
            const input *o = &g_in[below(r, g_n)];
            size_t from = below(r, o->size + 1), m = o->size - from;
            if (m > 4096) m = 4096;
            if (pos + m > cap) break;
            memcpy(b + pos, o->data + from, m);
            n = pos + m;
            break;
        }
        }
    }
    *out_n = n;
    return b;
}

static void save_input(const char *path, const uint8_t *data, size_t n) {
    if (!path) return;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "replay: cannot write %s\n", path);
        exit(2);
    }
}

int main(int argc, char **argv) {
    long mutations = 1000;
    uint64_t seed = 16;
    const char *save = NULL;
    long min_ok = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (i + 1 >= argc) break;
        if (strcmp(argv[i], "-n") == 0) mutations = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-s") == 0) seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-o") == 0) save = argv[++i];
        else if (strcmp(argv[i], "-m") == 0) min_ok = strtol(argv[++i], NULL, 10);
        else break;
    }
    if (i >= argc || mutations < 0) {
        fprintf(stderr, "usage: %s [-n MUTATIONS] [-s SEED] [-o FILE] [-m MIN] FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    for (; i < argc; i++) add_path(argv[i]);
    if (g_n == 0) {
        fprintf(stderr, "replay: no input files\n");
        return 2;
    }
    double t0 = br_now_s();
    for (size_t k = 0; k < g_n; k++) {
        /* a copy of exactly the input's size, so an over-read is an ASan report in sanitizer builds */
        uint8_t *c = malloc(g_in[k].size ? g_in[k].size : 1);
        if (!c) return 2;
        if (g_in[k].size) memcpy(c, g_in[k].data, g_in[k].size);
        save_input(save, c, g_in[k].size);
        LLVMFuzzerTestOneInput(c, g_in[k].size);
        free(c);
    }
    double t1 = br_now_s();
    long seeds_ok = fuzz_accepted;
    if (seeds_ok < min_ok) {
        fprintf(stderr, "replay: only %ld of %zu corpus files parse (at least %ld expected): regenerate the seeds "
                        "(tests/fuzz/make_corpus.py)\n", seeds_ok, g_n, min_ok);
        return 1;
    }
    for (long k = 0; k < mutations; k++) {
        rng r = {.key = mix(seed) ^ (uint64_t)k * 0xd1342543de82ef95ull, .i = 0};
        const input *src = &g_in[below(&r, g_n)];
        size_t n = 0;
        uint8_t *m = mutate(src->data, src->size, &r, &n);
        save_input(save, m, n);
        uint8_t *c = realloc(m, n ? n : 1); /* shrink to the exact size */
        if (!c) return 2;
        LLVMFuzzerTestOneInput(c, n);
        free(c);
    }
    double t2 = br_now_s();
    printf("replay: %zu corpus files (%ld accepted) in %.2f s, %ld mutations (seed %llu; %ld accepted) in %.2f s: "
           "no failure\n", g_n, seeds_ok, t1 - t0, mutations, (unsigned long long)seed, fuzz_accepted - seeds_ok, t2 - t1);
    for (size_t k = 0; k < g_n; k++) {
        free(g_in[k].path);
        free(g_in[k].data);
    }
    free(g_in);
    return 0;
}
