/* safetensors reader: one file or a sharded set (model.safetensors.index.json), mmapped read-only.
 * Every header field is validated before any tensor byte is handed out, so no view can point past a mapping. */
#include "policy/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* The reference implementation refuses headers above 100 MB; so do we (a larger one is corruption). */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* JSON numbers are doubles: offsets and dims above 2^53 cannot be represented exactly. */
#define ST_MAX_INT ((double)((int64_t)1 << 53))

typedef struct {
    char *path;
    const uint8_t *map; /* whole file, PROT_READ (or, for policy_st_open_mem, the caller's malloc'd buffer) */
    size_t size;
    int heap;           /* map is a malloc'd buffer owned by st: free(), not munmap() */
} st_file;

struct policy_st {
    char *path;     /* what was opened (file or index) */
    st_file *files; /* (n_files) */
    int n_files, cap_files;
    st_tensor *t;   /* (n) sorted by name once opened */
    int n, cap;
    uint8_t *owned; /* policy_st_copy: one allocation holding every tensor's bytes (no files mapped) */
};

/* Every dtype of the safetensors format. Ones the engine has no enum for load as ST_OTHER (their sizes are
 * still validated, and they can never bind as a weight); a dtype string not in this table is rejected. */
static const struct {
    const char *name;
    st_dtype dt;
    int size;
} st_dtypes[] = {
    {"F32", ST_F32, 4},       {"BF16", ST_BF16, 2},     {"F16", ST_F16, 2},       {"I32", ST_I32, 4},
    {"I64", ST_I64, 8},       {"U8", ST_U8, 1},         {"F64", ST_OTHER, 8},     {"I8", ST_OTHER, 1},
    {"I16", ST_OTHER, 2},     {"U16", ST_OTHER, 2},     {"U32", ST_OTHER, 4},     {"U64", ST_OTHER, 8},
    {"BOOL", ST_OTHER, 1},    {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1}, {"F8_E8M0", ST_OTHER, 1},
};

const char *st_dtype_name(st_dtype dt) {
    switch (dt) {
    case ST_F32: return "F32";
    case ST_BF16: return "BF16";
    case ST_F16: return "F16";
    case ST_I32: return "I32";
    case ST_I64: return "I64";
    case ST_U8: return "U8";
    case ST_OTHER: return "OTHER";
    }
    return "?";
}

const char *policy_st_path(const policy_st *st) { return st ? st->path : NULL; }
int policy_st_count(const policy_st *st) { return st ? st->n : 0; }

const st_tensor *policy_st_at(const policy_st *st, int i) {
    if (!st || i < 0 || i >= st->n) return NULL;
    return &st->t[i];
}

const st_tensor *policy_st_find(const policy_st *st, const char *name) {
    if (!st || !name) return NULL;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[mid].name, name);
        if (c == 0) return &st->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void policy_st_free(policy_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].heap) free((void *)st->files[i].map);
        else if (st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->t);
    free(st->files);
    free(st->path);
    free(st->owned);
    free(st);
}

static char *st_strdup(const char *s);

br_status policy_st_copy(const policy_st *src, const void *const *replace, policy_st **out) {
    *out = NULL;
    size_t total = 0;
    for (int i = 0; i < src->n; i++) total += (src->t[i].nbytes + 63) & ~(size_t)63; /* 64-byte aligned tensors */
    policy_st *st = calloc(1, sizeof *st);
    if (!st) return br_fail(BR_ENOMEM, "%s: out of memory copying the tensor table", src->path);
    st->path = st_strdup(src->path);
    st->t = calloc((size_t)src->n + 1, sizeof *st->t);
    st->owned = malloc(total + 64);
    if (!st->path || !st->t || !st->owned) {
        policy_st_free(st);
        return br_fail(BR_ENOMEM, "%s: cannot allocate %zu bytes for a copy of the weights", src->path, total);
    }
    size_t off = 0;
    for (int i = 0; i < src->n; i++) {
        st_tensor *t = &st->t[i];
        *t = src->t[i];
        t->name = st_strdup(src->t[i].name);
        if (!t->name) {
            policy_st_free(st);
            return br_fail(BR_ENOMEM, "%s: out of memory copying the tensor table", src->path);
        }
        st->n = i + 1;
        memcpy(st->owned + off, replace && replace[i] ? replace[i] : src->t[i].data, t->nbytes);
        t->data = st->owned + off;
        t->file = st->path;
        off += (t->nbytes + 63) & ~(size_t)63;
    }
    st->cap = st->n;
    *out = st;
    return BR_OK;
}

int policy_st_index(const policy_st *st, const st_tensor *t) {
    return st && t >= st->t && t < st->t + st->n ? (int)(t - st->t) : -1;
}

static char *st_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *st_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Maps path read-only and appends it to st->files; *fi = its index. */
static br_status st_map(policy_st *st, const char *path, int *fi) {
    br_status s = BR_OK;
    int fd = -1;
    void *map = MAP_FAILED;
    char *copy = NULL;
    struct stat sb;
    if (st->n_files == st->cap_files) {
        int cap = st->cap_files ? 2 * st->cap_files : 4;
        st_file *f = realloc(st->files, (size_t)cap * sizeof *f);
        if (!f) return br_fail(BR_ENOMEM, "%s: out of memory", path);
        st->files = f;
        st->cap_files = cap;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s = br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = br_fail(BR_EIO, "%s: not a regular file", path);
        goto cleanup;
    }
    if (sb.st_size < 8) {
        s = br_fail(BR_EFORMAT, "%s: file is %lld bytes, too short for a safetensors header (>= 8)", path,
                    (long long)sb.st_size);
        goto cleanup;
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        s = br_fail(BR_EIO, "%s: file too large to map", path);
        goto cleanup;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        s = br_fail(BR_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto cleanup;
    }
    copy = st_strdup(path);
    if (!copy) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    st->files[st->n_files] = (st_file){.path = copy, .map = map, .size = (size_t)sb.st_size};
    *fi = st->n_files++;
    copy = NULL;
    map = MAP_FAILED;
cleanup:
    if (map != MAP_FAILED) munmap(map, (size_t)sb.st_size);
    if (fd >= 0) close(fd);
    free(copy);
    return s;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int st_json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_INT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

typedef struct {
    uint64_t begin, end;
    int idx; /* into st->t */
} st_span;

static int st_span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Parses one entry of a header into *t (name already set); checks dtype, shape and offsets against the data section. */
static br_status st_parse_entry(const char *path, const cJSON *e, uint64_t data_size, st_tensor *t, st_span *sp) {
    const char *name = t->name;
    if (!cJSON_IsObject(e)) return br_fail(BR_EFORMAT, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return br_fail(BR_EFORMAT, "%s: tensor '%s': missing string 'dtype'", path, name);
    int esize = 0;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(dt->valuestring, st_dtypes[i].name) == 0) {
            t->dtype = st_dtypes[i].dt;
            t->dtype_name = st_dtypes[i].name;
            esize = st_dtypes[i].size;
        }
    }
    if (!esize) return br_fail(BR_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return br_fail(BR_EFORMAT, "%s: tensor '%s': missing array 'shape'", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > 8) return br_fail(BR_EFORMAT, "%s: tensor '%s': %d dimensions (at most 8)", path, name, ndim);
    t->ndim = ndim;
    uint64_t numel = 1;
    int zero = 0;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = 0;
        if (!st_json_uint(cJSON_GetArrayItem(shape, i), &d))
            return br_fail(BR_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;
        if (d == 0) zero = 1;
        else if (!zero && numel > (uint64_t)INT64_MAX / (uint64_t)esize / d)
            return br_fail(BR_EFORMAT, "%s: tensor '%s': shape overflows the byte count", path, name);
        else numel *= d;
    }
    if (zero) numel = 0;
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(numel * (uint64_t)esize);
    uint64_t b = 0, en = 0;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !st_json_uint(cJSON_GetArrayItem(offs, 0), &b) ||
        !st_json_uint(cJSON_GetArrayItem(offs, 1), &en))
        return br_fail(BR_EFORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end] non-negative integers", path,
                       name);
    if (b > en || en > data_size)
        return br_fail(BR_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section of %llu bytes",
                       path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    if (en - b != numel * (uint64_t)esize)
        return br_fail(BR_EFORMAT, "%s: tensor '%s': data_offsets span %llu bytes but dtype %s x %llu elements is %llu",
                       path, name, (unsigned long long)(en - b), dt->valuestring, (unsigned long long)numel,
                       (unsigned long long)(numel * (uint64_t)esize));
    sp->begin = b;
    sp->end = en;
    return BR_OK;
}

/* Parses the header of file fi and appends its tensors to st->t. */
static br_status st_parse_file(policy_st *st, int fi) {
    br_status s = BR_OK;
    const st_file *f = &st->files[fi];
    const char *path = f->path;
    char *hdr = NULL;
    cJSON *root = NULL;
    st_span *spans = NULL;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n > ST_MAX_HEADER || n > (uint64_t)f->size - 8) {
        s = br_fail(BR_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes) or the 100 MB limit", path,
                    (unsigned long long)n, f->size);
        goto cleanup;
    }
    hdr = malloc((size_t)n + 1);
    if (!hdr) {
        s = br_fail(BR_ENOMEM, "%s: cannot allocate the %llu-byte header", path, (unsigned long long)n);
        goto cleanup;
    }
    memcpy(hdr, f->map + 8, (size_t)n);
    hdr[n] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    /* Only padding may follow the JSON object (writers pad the header with spaces for alignment). */
    if (root && end) {
        for (const char *p = end; p < hdr + n; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                cJSON_Delete(root);
                root = NULL;
                break;
            }
        }
    }
    if (!root || !cJSON_IsObject(root)) {
        s = br_fail(BR_EFORMAT, "%s: safetensors header (%llu bytes) is not a JSON object", path,
                    (unsigned long long)n);
        goto cleanup;
    }
    uint64_t data_size = (uint64_t)f->size - 8 - n;
    const uint8_t *data = f->map + 8 + n;
    int count = cJSON_GetArraySize(root);
    if (st->n + count > st->cap) {
        int cap = st->cap ? st->cap : 64;
        while (cap < st->n + count) cap *= 2;
        st_tensor *t = realloc(st->t, (size_t)cap * sizeof *t);
        if (!t) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        st->t = t;
        st->cap = cap;
    }
    spans = malloc((size_t)(count ? count : 1) * sizeof *spans);
    if (!spans) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    int ns = 0;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) continue;
        if (strcmp(e->string, "__metadata__") == 0) continue;
        st_tensor *t = &st->t[st->n];
        memset(t, 0, sizeof *t);
        t->name = st_strdup(e->string);
        if (!t->name) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        st->n++; /* owned from here on, freed with st */
        t->file = path;
        if ((s = st_parse_entry(path, e, data_size, t, &spans[ns])) != BR_OK) goto cleanup;
        t->data = data + spans[ns].begin;
        spans[ns].idx = st->n - 1;
        ns++;
    }
    /* Sorted by begin, each tensor must start at or after the end of the previous one. Empty tensors own no bytes. */
    qsort(spans, (size_t)ns, sizeof *spans, st_span_cmp);
    uint64_t prev_end = 0;
    int prev = -1;
    for (int i = 0; i < ns; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (prev >= 0 && spans[i].begin < prev_end) {
            s = br_fail(BR_EFORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (bytes %llu..%llu)", path,
                        st->t[spans[i].idx].name, (unsigned long long)spans[i].begin,
                        (unsigned long long)spans[i].end, st->t[spans[prev].idx].name,
                        (unsigned long long)spans[prev].begin, (unsigned long long)prev_end);
            goto cleanup;
        }
        prev = i;
        prev_end = spans[i].end;
    }
cleanup:
    free(spans);
    cJSON_Delete(root);
    free(hdr);
    return s;
}

static int st_tensor_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts by name; a name seen twice (within a header or across shards) is an error. */
static br_status st_sort(policy_st *st) {
    if (st->n > 1) qsort(st->t, (size_t)st->n, sizeof *st->t, st_tensor_cmp);
    for (int i = 1; i < st->n; i++) {
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return br_fail(BR_EFORMAT, "%s: tensor '%s' appears twice (in %s and %s)", st->path, st->t[i].name,
                           st->t[i - 1].file, st->t[i].file);
    }
    return BR_OK;
}

/* Sharded checkpoint: weight_map {tensor: shard file}; every shard is opened once, and the shards must hold
 * exactly the tensors the map assigns to them. */
static br_status st_open_index(policy_st *st, const char *path) {
    br_status s = BR_OK;
    char *text = NULL, *dir = NULL, *shard = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    if ((s = br_read_file(path, &text, &len)) != BR_OK) goto cleanup;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        s = br_fail(BR_EFORMAT, "%s: not a JSON object", path);
        goto cleanup;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        s = br_fail(BR_EFORMAT, "%s: missing object 'weight_map'", path);
        goto cleanup;
    }
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, (size_t)(slash - path)) : st_strdup(".");
    if (!dir) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    const cJSON *e = NULL;
    int n_map = 0;
    cJSON_ArrayForEach(e, wm) {
        n_map++;
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/')) {
            s = br_fail(BR_EFORMAT, "%s: weight_map['%s'] must be a shard file name in the index's directory", path,
                        e->string ? e->string : "?");
            goto cleanup;
        }
        free(shard);
        shard = st_join(dir, e->valuestring);
        if (!shard) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        int seen = 0;
        for (int i = 0; i < st->n_files && !seen; i++) seen = strcmp(st->files[i].path, shard) == 0;
        if (seen) continue;
        int fi = -1;
        if ((s = st_map(st, shard, &fi)) != BR_OK || (s = st_parse_file(st, fi)) != BR_OK) {
            s = br_fail_ctx(s, "%s: shard '%s'", path, e->valuestring);
            goto cleanup;
        }
    }
    if ((s = st_sort(st)) != BR_OK) goto cleanup;
    cJSON_ArrayForEach(e, wm) {
        free(shard);
        shard = st_join(dir, e->valuestring);
        if (!shard) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        const st_tensor *t = policy_st_find(st, e->string);
        if (!t || strcmp(t->file, shard) != 0) {
            s = br_fail(BR_EFORMAT, "%s: tensor '%s' is mapped to %s but %s", path, e->string, shard,
                        t ? "found in another shard" : "missing from it");
            goto cleanup;
        }
    }
    if (n_map != st->n) { /* a shard holds a tensor the map does not list */
        for (int i = 0; i < st->n; i++) {
            if (!cJSON_GetObjectItemCaseSensitive(wm, st->t[i].name)) {
                s = br_fail(BR_EFORMAT, "%s: tensor '%s' in %s is not listed in weight_map", path, st->t[i].name,
                            st->t[i].file);
                goto cleanup;
            }
        }
        s = br_fail(BR_EFORMAT, "%s: weight_map lists %d tensors, shards hold %d", path, n_map, st->n);
    }
cleanup:
    cJSON_Delete(root);
    free(text);
    free(dir);
    free(shard);
    return s;
}

static int st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

br_status policy_st_open_mem(const char *name, void *buf, size_t len, policy_st **out) {
    br_status s = BR_OK;
    *out = NULL;
    policy_st *st = calloc(1, sizeof *st);
    if (st) st->files = calloc(1, sizeof *st->files);
    char *p1 = st_strdup(name), *p2 = st_strdup(name);
    if (!st || !st->files || !p1 || !p2) {
        free(buf);
        free(p1);
        free(p2);
        policy_st_free(st);
        return br_fail(BR_ENOMEM, "%s: out of memory", name);
    }
    st->path = p1;
    st->cap_files = 1;
    st->files[0] = (st_file){.path = p2, .map = buf, .size = len, .heap = 1};
    st->n_files = 1;
    if (len < 8) s = br_fail(BR_EFORMAT, "%s: %zu bytes, too short for a safetensors header (>= 8)", name, len);
    if (s == BR_OK && (s = st_parse_file(st, 0)) == BR_OK) s = st_sort(st);
    if (s != BR_OK) {
        policy_st_free(st);
        return s;
    }
    *out = st;
    return BR_OK;
}

br_status policy_st_open(const char *path, policy_st **out) {
    br_status s = BR_OK;
    policy_st *st = NULL;
    char *idx = NULL, *single = NULL;
    struct stat sb;
    *out = NULL;
    if (stat(path, &sb) != 0) return br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
    st = calloc(1, sizeof *st);
    if (!st) return br_fail(BR_ENOMEM, "%s: out of memory", path);
    if (S_ISDIR(sb.st_mode)) {
        idx = st_join(path, "model.safetensors.index.json");
        single = st_join(path, "model.safetensors");
        if (!idx || !single) {
            s = br_fail(BR_ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        if (access(idx, F_OK) == 0) st->path = st_strdup(idx);
        else if (access(single, F_OK) == 0) st->path = st_strdup(single);
        else {
            s = br_fail(BR_EIO, "%s: neither model.safetensors.index.json nor model.safetensors found", path);
            goto cleanup;
        }
    } else {
        st->path = st_strdup(path);
    }
    if (!st->path) {
        s = br_fail(BR_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (st_ends_with(st->path, ".json")) {
        s = st_open_index(st, st->path);
    } else {
        int fi = -1;
        if ((s = st_map(st, st->path, &fi)) == BR_OK && (s = st_parse_file(st, fi)) == BR_OK) s = st_sort(st);
    }
    if (s != BR_OK) goto cleanup;
    *out = st;
    st = NULL;
cleanup:
    policy_st_free(st);
    free(idx);
    free(single);
    return s;
}
