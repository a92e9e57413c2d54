/* The structure check of format_version 1 files: every HDF5 structure libhdf5 1.10 reads when bitroll reads such a
 * file, walked with plain bounds-checked reads, so a damaged old file is refused before libhdf5 (whose 1.10.8 crashes
 * and loops on some: docs/RELIABILITY.md, Findings 3) parses any of it. */
#include "logging/h5v1_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The layouts are those of the HDF5 File Format Specification (superblock version 0, object header version 1,
 * B-tree version 1, symbol table node, local heap, global heap collection, datatype / dataspace / fill value /
 * layout version 3 / attribute version 1 messages), with 8-byte offsets and lengths, little-endian. Only the subset
 * libhdf5 1.10's default ("earliest") file format writes for bitroll is accepted: anything else is another writer's
 * file or damage, and each thing accepted is a thing checked. */

#define UNDEF UINT64_MAX /* HDF5's undefined address */
#define SB_SIZE 96u /* superblock v0 with its root symbol table entry */
#define OH_PREFIX 16u /* v1 object header prefix, padded to 8 */
#define MSG_HDR 8u /* v1 message header: type, size, flags, 3 reserved */
#define ENTRY_SIZE 40u /* symbol table entry */
#define LHEAP_HDR 32u /* local heap prefix */
#define GCOL_HDR 16u /* global heap collection header, and each object's header */
#define GCOL_MIN 4096u /* the smallest collection libhdf5 makes */
#define VREF_SIZE 16u /* a variable-length reference in the file: length, collection address, index */
#define CHUNK_K 32u /* chunk B-tree K: superblock v0 has no field for it, libhdf5's default */
#define BT_LEVELS 16 /* deepest B-tree accepted: 2K^16 leaves is far beyond any file */
#define OBJ_DEPTH 6 /* group nesting: bitroll has / -> /samples or /scores -> datasets */
#define META_MAX ((uint64_t)1 << 20) /* one metadata block (header chunk, heap data): bitroll's are a few KiB */
#define CHUNK_MAX ((uint64_t)64 << 20) /* as check_claim in h5log.c: bitroll's chunks are 64 KiB */
#define VBUF_ELEMS 4096u /* vlen references of a contiguous dataset are read this many at a time */

typedef struct {
    uint64_t lo, hi; /* [lo, hi) */
} region;

typedef struct {
    uint64_t *key; /* key + 1; 0 = empty slot */
    uint32_t *val;
    size_t cap, n;
} amap;

typedef struct {
    uint64_t addr;
    uint32_t n;
    uint16_t *idx; /* (n) object indices, sorted */
    uint64_t *size; /* (n) their sizes */
} gcol;

typedef struct {
    int fd;
    const char *path;
    uint64_t eoa; /* the superblock's end-of-file address: libhdf5 reads nothing past it */
    unsigned leaf_k, node_k;
    region *reg; /* every block visited: must not overlap (no structure shared or visited twice) */
    size_t nreg, capreg;
    amap starts; /* start address -> index in reg, to stop at a block visited twice at once */
    gcol *gc; /* validated global heap collections */
    size_t ngc, capgc;
    amap gcmap; /* collection address -> index in gc */
    char where[200]; /* the object being walked, for messages */
} v1c;

typedef struct {
    int cls; /* 0 fixed-point, 1 float, 3 string, 9 vlen string */
    uint32_t size; /* bytes per element */
} dtype;

typedef struct {
    int rank; /* 0 scalar, 1 */
    uint64_t dim, maxdim, nelem;
} dspace;

typedef struct {
    int has_stab, has_space, has_type, has_layout, has_fill;
    uint64_t bt, heap; /* symbol table message */
    dspace sp;
    dtype t;
    int lclass; /* 1 contiguous, 2 chunked */
    uint64_t laddr, lsize;
    uint32_t cdim, cesize;
    uint64_t fill_size; /* 0: none */
} ohinfo;

typedef struct {
    uint64_t addr, dsize;
    unsigned char *data; /* (dsize) the data segment */
} lheap;

typedef struct {
    uint64_t prev[BT_LEVELS + 1], prev_right[BT_LEVELS + 1];
} sibs;

static uint16_t u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t u64(const unsigned char *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }
static uint64_t align8(uint64_t v) { return (v + 7) & ~(uint64_t)7; }
static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

static br_status bad(const v1c *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static br_status bad(const v1c *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return br_fail(BR_EFORMAT,
                   "%s: corrupt HDF5 structure%s%s: %s (a format_version 1 file is checked before libhdf5 "
                   "reads it)",
                   c->path, c->where[0] ? ": " : "", c->where, msg);
}

/* ---------------------------------------------------------------- bookkeeping */

static br_status amap_put(v1c *c, amap *m, uint64_t k, uint32_t v) {
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        uint64_t *key = calloc(cap, sizeof *key);
        uint32_t *val = calloc(cap, sizeof *val);
        if (!key || !val) {
            free(key);
            free(val);
            return br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t j = (size_t)((m->key[i] * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
            while (key[j])
                j = (j + 1) & (cap - 1);
            key[j] = m->key[i];
            val[j] = m->val[i];
        }
        free(m->key);
        free(m->val);
        m->key = key;
        m->val = val;
        m->cap = cap;
    }
    size_t j = (size_t)(((k + 1) * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
    while (m->key[j])
        j = (j + 1) & (m->cap - 1);
    m->key[j] = k + 1;
    m->val[j] = v;
    m->n++;
    return BR_OK;
}

static int amap_get(const amap *m, uint64_t k, uint32_t *v) {
    if (!m->cap) return 0;
    size_t j = (size_t)(((k + 1) * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
    while (m->key[j]) {
        if (m->key[j] == k + 1) {
            *v = m->val[j];
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

/* Records the block [addr, addr+len) of `what` as visited: inside the file, and not one seen before. Overlaps of
 * blocks at different starts are found at the end (check_overlaps); the same start is refused here, so a cycle or a
 * shared node never costs more than one visit. */
static br_status claim(v1c *c, uint64_t addr, uint64_t len, const char *what) {
    if (addr == UNDEF || addr > c->eoa || len > c->eoa - addr)
        return bad(c, "%s at 0x%llx (%llu bytes) extends past the end of the file (0x%llx)", what, ull(addr), ull(len),
                   ull(c->eoa));
    uint32_t prev = 0;
    if (amap_get(&c->starts, addr, &prev))
        return bad(c,
                   "%s at 0x%llx: a block there was already visited (a cycle, or a structure shared by two "
                   "owners)",
                   what, ull(addr));
    if (c->nreg == c->capreg) {
        size_t cap = c->capreg ? 2 * c->capreg : 256;
        region *r = realloc(c->reg, cap * sizeof *r);
        if (!r) return br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
        c->reg = r;
        c->capreg = cap;
    }
    c->reg[c->nreg] = (region){addr, addr + len};
    return amap_put(c, &c->starts, addr, (uint32_t)c->nreg++);
}

static int region_cmp(const void *a, const void *b) {
    const region *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static br_status check_overlaps(v1c *c) {
    qsort(c->reg, c->nreg, sizeof *c->reg, region_cmp);
    size_t far = 0; /* the block reaching furthest so far */
    for (size_t i = 1; i < c->nreg; i++) {
        if (c->reg[i].lo < c->reg[far].hi)
            return bad(c, "blocks [0x%llx, 0x%llx) and [0x%llx, 0x%llx) overlap", ull(c->reg[far].lo),
                       ull(c->reg[far].hi), ull(c->reg[i].lo), ull(c->reg[i].hi));
        if (c->reg[i].hi > c->reg[far].hi) far = i;
    }
    return BR_OK;
}

/* Reads len bytes at addr, which must lie before the end-of-file address. */
static br_status rd(v1c *c, uint64_t addr, uint64_t len, void *buf, const char *what) {
    if (addr == UNDEF || addr > c->eoa || len > c->eoa - addr)
        return bad(c, "%s at 0x%llx (%llu bytes) extends past the end of the file (0x%llx)", what, ull(addr), ull(len),
                   ull(c->eoa));
    size_t got = 0;
    while (got < len) {
        ssize_t k = pread(c->fd, (char *)buf + got, (size_t)len - got, (off_t)(addr + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return br_fail(BR_EIO, "%s: read failed at byte %llu: %s", c->path, ull(addr + got), strerror(errno));
        if (k == 0) return bad(c, "%s at 0x%llx: the file ends inside it", what, ull(addr));
        got += (size_t)k;
    }
    return BR_OK;
}

/* malloc + rd of a block whose length was already checked against the file. */
static br_status rd_alloc(v1c *c, uint64_t addr, uint64_t len, unsigned char **out, const char *what) {
    *out = NULL;
    if (addr == UNDEF || addr > c->eoa || len > c->eoa - addr)
        return bad(c, "%s at 0x%llx (%llu bytes) extends past the end of the file (0x%llx)", what, ull(addr), ull(len),
                   ull(c->eoa));
    unsigned char *b = malloc(len ? (size_t)len : 1);
    if (!b) return br_fail(BR_ENOMEM, "%s: cannot allocate %llu bytes to check the HDF5 structure", c->path, ull(len));
    br_status st = rd(c, addr, len, b, what);
    if (st != BR_OK) {
        free(b);
        return st;
    }
    *out = b;
    return BR_OK;
}

/* ---------------------------------------------------------------- global heap */

static int u16_cmp_pair(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* A global heap collection, checked once: signature, version, size inside the file, and objects that tile it
 * exactly (libhdf5 steps from object to object by the sizes read: a zero or huge one loops or runs off). */
static br_status load_gcol(v1c *c, uint64_t addr, const gcol **out) {
    uint32_t gi = 0;
    if (amap_get(&c->gcmap, addr, &gi)) {
        *out = &c->gc[gi];
        return BR_OK;
    }
    unsigned char h[GCOL_HDR];
    unsigned char *b = NULL;
    uint64_t *pairs = NULL;
    br_status st = rd(c, addr, GCOL_HDR, h, "global heap collection");
    if (st != BR_OK) return st;
    if (memcmp(h, "GCOL", 4) != 0) return bad(c, "global heap collection at 0x%llx: bad signature", ull(addr));
    if (h[4] != 1 || h[5] || h[6] || h[7])
        return bad(c, "global heap collection at 0x%llx: version %u (expected 1)", ull(addr), h[4]);
    const uint64_t size = u64(h + 8);
    if (size < GCOL_MIN || size % 8)
        return bad(c, "global heap collection at 0x%llx: size %llu (at least %u, a multiple of 8)", ull(addr),
                   ull(size), GCOL_MIN);
    if ((st = claim(c, addr, size, "global heap collection")) != BR_OK) return st;
    if ((st = rd_alloc(c, addr, size, &b, "global heap collection")) != BR_OK) return st;
    pairs = malloc((size_t)(size / GCOL_HDR) * 2 * sizeof *pairs); /* each object takes at least 16 bytes */
    if (!pairs) {
        st = br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
        goto cleanup;
    }
    uint32_t n = 0;
    for (uint64_t p = GCOL_HDR; p < size;) {
        if (size - p < GCOL_HDR) { /* libhdf5 takes a tail too small for an object header as free space */
            p = size;
            break;
        }
        const unsigned idx = u16(b + p);
        const uint64_t osize = u64(b + p + 8);
        if (idx == 0) { /* free space: its size counts its header and must reach the end */
            if (osize != size - p) {
                st = bad(c, "global heap collection at 0x%llx: free space at +%llu is %llu bytes, %llu remain",
                         ull(addr), ull(p), ull(osize), ull(size - p));
                goto cleanup;
            }
            p = size;
            break;
        }
        if (osize > size - p - GCOL_HDR || align8(osize) > size - p - GCOL_HDR) {
            st = bad(c,
                     "global heap collection at 0x%llx: object %u at +%llu of %llu bytes extends past the "
                     "collection (%llu bytes)",
                     ull(addr), idx, ull(p), ull(osize), ull(size));
            goto cleanup;
        }
        pairs[2 * n] = idx;
        pairs[2 * n + 1] = osize;
        n++;
        p += GCOL_HDR + align8(osize);
    }
    qsort(pairs, n, 2 * sizeof *pairs, u16_cmp_pair);
    for (uint32_t i = 1; i < n; i++)
        if (pairs[2 * i] == pairs[2 * i - 2]) {
            st = bad(c, "global heap collection at 0x%llx: object index %llu appears twice", ull(addr),
                     ull(pairs[2 * i]));
            goto cleanup;
        }
    if (c->ngc == c->capgc) {
        size_t cap = c->capgc ? 2 * c->capgc : 16;
        gcol *g = realloc(c->gc, cap * sizeof *g);
        if (!g) {
            st = br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
            goto cleanup;
        }
        c->gc = g;
        c->capgc = cap;
    }
    gcol *g = &c->gc[c->ngc];
    g->addr = addr;
    g->n = n;
    g->idx = malloc((n ? n : 1) * sizeof *g->idx);
    g->size = malloc((n ? n : 1) * sizeof *g->size);
    if (!g->idx || !g->size) {
        free(g->idx);
        free(g->size);
        st = br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
        goto cleanup;
    }
    for (uint32_t i = 0; i < n; i++) {
        g->idx[i] = (uint16_t)pairs[2 * i];
        g->size[i] = pairs[2 * i + 1];
    }
    if ((st = amap_put(c, &c->gcmap, addr, (uint32_t)c->ngc)) != BR_OK) {
        free(g->idx);
        free(g->size);
        goto cleanup;
    }
    c->ngc++;
    *out = g;
cleanup:
    free(pairs);
    free(b);
    return st;
}

/* One variable-length string reference (length, collection address, object index): a null one is (0, 0, 0);
 * otherwise the object must exist in a valid collection and hold exactly `length` bytes (libhdf5 copies the object's
 * size into a buffer of the reference's length). */
static br_status check_vref(v1c *c, const unsigned char *e, const char *what, uint64_t i) {
    const uint32_t len = u32(e), idx = u32(e + 12);
    const uint64_t addr = u64(e + 4);
    if (addr == 0) {
        if (len || idx)
            return bad(c, "%s %llu: null string reference with length %u, index %u", what, ull(i), len, idx);
        return BR_OK;
    }
    const gcol *g = NULL;
    br_status st = load_gcol(c, addr, &g);
    if (st != BR_OK) return st;
    uint32_t lo = 0, hi = g->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->idx[mid] < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (idx == 0 || idx > 0xffff || lo == g->n || g->idx[lo] != idx)
        return bad(c, "%s %llu: global heap object %u does not exist in the collection at 0x%llx", what, ull(i), idx,
                   ull(addr));
    if (g->size[lo] != len)
        return bad(c, "%s %llu: string of %u bytes, but global heap object %u at 0x%llx holds %llu", what, ull(i), len,
                   idx, ull(addr), ull(g->size[lo]));
    return BR_OK;
}

/* ---------------------------------------------------------------- messages */

/* A datatype message body: fixed-point (little-endian, full precision), IEEE float (f32 / f64 little-endian), fixed
 * string, or variable-length string over 1-byte characters. *used: its encoded size. */
static br_status parse_dtype(v1c *c, uint64_t at, const unsigned char *p, uint64_t avail, uint64_t *used, dtype *t,
                             int nested) {
    if (avail < 8) return bad(c, "datatype at 0x%llx: %llu bytes, too short", ull(at), ull(avail));
    const unsigned cls = p[0] & 15, ver = p[0] >> 4;
    const uint32_t bits = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16, size = u32(p + 4);
    if (ver != 1) return bad(c, "datatype at 0x%llx: version %u (expected 1)", ull(at), ver);
    t->cls = (int)cls;
    t->size = size;
    if (cls == 0) {
        if (avail < 12) return bad(c, "datatype at 0x%llx: fixed-point type truncated", ull(at));
        if ((bits & ~8u) || (size != 1 && size != 2 && size != 4 && size != 8) || u16(p + 8) != 0 ||
            u16(p + 10) != 8 * size)
            return bad(c,
                       "datatype at 0x%llx: fixed-point type (flags 0x%x, %u bytes, offset %u, precision %u) is not a "
                       "little-endian integer of 1, 2, 4 or 8 bytes",
                       ull(at), bits, size, u16(p + 8), u16(p + 10));
        *used = 12;
    } else if (cls == 1) {
        if (avail < 20) return bad(c, "datatype at 0x%llx: floating-point type truncated", ull(at));
        const unsigned char *q = p + 8;
        int ok = 0;
        if (size == 4)
            ok = bits == (0x20u | 31u << 8) && u16(q) == 0 && u16(q + 2) == 32 && q[4] == 23 && q[5] == 8 &&
                 q[6] == 0 && q[7] == 23 && u32(q + 8) == 127;
        else if (size == 8)
            ok = bits == (0x20u | 63u << 8) && u16(q) == 0 && u16(q + 2) == 64 && q[4] == 52 && q[5] == 11 &&
                 q[6] == 0 && q[7] == 52 && u32(q + 8) == 1023;
        if (!ok) return bad(c, "datatype at 0x%llx: floating-point type is not IEEE little-endian f32 or f64", ull(at));
        *used = 20;
    } else if (cls == 3) {
        if ((bits & ~0xffu) || (bits & 15) > 2 || (bits >> 4) > 1 || size == 0 || size > META_MAX)
            return bad(c, "datatype at 0x%llx: string type (flags 0x%x, %u bytes) unknown", ull(at), bits, size);
        *used = 8;
    } else if (cls == 9 && !nested) {
        if ((bits & 15) != 1 || ((bits >> 4) & 15) > 2 || ((bits >> 8) & 15) > 1 || (bits >> 12) || size != VREF_SIZE)
            return bad(c, "datatype at 0x%llx: variable-length type (flags 0x%x, %u bytes) is not a string", ull(at),
                       bits, size);
        dtype base;
        uint64_t bu = 0;
        br_status st = parse_dtype(c, at + 8, p + 8, avail - 8, &bu, &base, 1);
        if (st != BR_OK) return st;
        if (base.cls != 0 || base.size != 1)
            return bad(c, "datatype at 0x%llx: variable-length string of %u-byte class %d elements", ull(at), base.size,
                       base.cls);
        *used = 8 + bu;
    } else {
        return bad(c, "datatype at 0x%llx: class %u is not one bitroll writes", ull(at), cls);
    }
    if (*used > avail)
        return bad(c, "datatype at 0x%llx: %llu bytes, its message has %llu", ull(at), ull(*used), ull(avail));
    return BR_OK;
}

/* A version 1 dataspace: scalar or 1-D. */
static br_status parse_space(v1c *c, uint64_t at, const unsigned char *p, uint64_t avail, dspace *s) {
    if (avail < 8) return bad(c, "dataspace at 0x%llx: %llu bytes, too short", ull(at), ull(avail));
    if (p[0] != 1) return bad(c, "dataspace at 0x%llx: version %u (expected 1)", ull(at), p[0]);
    const unsigned rank = p[1], flags = p[2];
    if (rank > 1 || (flags & ~1u) || p[3] || u32(p + 4))
        return bad(c,
                   "dataspace at 0x%llx: rank %u, flags 0x%x, reserved bytes 0x%x 0x%x (bitroll writes scalars and "
                   "1-D spaces, reserved bytes zero)",
                   ull(at), rank, flags, p[3], u32(p + 4));
    const uint64_t need = 8 + (uint64_t)rank * 8 * ((flags & 1) ? 2 : 1);
    if (need > avail)
        return bad(c, "dataspace at 0x%llx: %llu bytes needed, %llu in its message", ull(at), ull(need), ull(avail));
    s->rank = (int)rank;
    s->dim = rank ? u64(p + 8) : 1;
    s->maxdim = rank && (flags & 1) ? u64(p + 16) : s->dim;
    if (rank && s->maxdim != UNDEF && s->maxdim < s->dim)
        return bad(c, "dataspace at 0x%llx: %llu elements exceed the maximum %llu", ull(at), ull(s->dim),
                   ull(s->maxdim));
    s->nelem = s->dim; /* bounded by the owner: an attribute's message, a dataset's file */
    return BR_OK;
}

static br_status parse_attr(v1c *c, uint64_t at, const unsigned char *p, uint64_t avail, int n) {
    if (avail < 8) return bad(c, "attribute message %d at 0x%llx: too short", n, ull(at));
    if (p[0] != 1 || p[1]) return bad(c, "attribute message %d at 0x%llx: version %u (expected 1)", n, ull(at), p[0]);
    const uint64_t nlen = u16(p + 2), tlen = u16(p + 4), slen = u16(p + 6);
    uint64_t off = 8;
    if (nlen < 2 || align8(nlen) > avail - off)
        return bad(c, "attribute message %d at 0x%llx: name of %llu bytes does not fit", n, ull(at), ull(nlen));
    if (p[off + nlen - 1] != 0 || memchr(p + off, 0, (size_t)nlen - 1))
        return bad(c, "attribute message %d at 0x%llx: name is not %llu NUL-terminated bytes", n, ull(at),
                   ull(nlen - 1));
    const char *name = (const char *)p + off;
    off += align8(nlen);
    if (align8(tlen) > avail - off)
        return bad(c, "attribute '%s' at 0x%llx: datatype of %llu bytes does not fit", name, ull(at), ull(tlen));
    dtype t;
    uint64_t used = 0;
    br_status st = parse_dtype(c, at + off, p + off, tlen, &used, &t, 0);
    if (st != BR_OK) return st;
    off += align8(tlen);
    if (align8(slen) > avail - off)
        return bad(c, "attribute '%s' at 0x%llx: dataspace of %llu bytes does not fit", name, ull(at), ull(slen));
    dspace s;
    if ((st = parse_space(c, at + off, p + off, slen, &s)) != BR_OK) return st;
    off += align8(slen);
    if (s.nelem > (avail - off) / t.size)
        return bad(c, "attribute '%s' at 0x%llx: %llu elements of %u bytes, %llu bytes left in its message", name,
                   ull(at), ull(s.nelem), t.size, ull(avail - off));
    if (t.cls == 9) {
        char what[120];
        snprintf(what, sizeof what, "attribute '%s' string", name);
        for (uint64_t i = 0; i < s.nelem; i++)
            if ((st = check_vref(c, p + off + i * VREF_SIZE, what, i)) != BR_OK) return st;
    }
    return BR_OK;
}

/* Fill value messages: old (0x4) and new (0x5, versions 1 and 2). *size: the fill value's bytes (0: none). */
static br_status parse_fill(v1c *c, uint64_t at, unsigned type, const unsigned char *p, uint64_t avail,
                            uint64_t *size) {
    *size = 0;
    if (type == 4) {
        if (avail < 4 || u32(p) > avail - 4)
            return bad(c, "old fill value message at 0x%llx: size past its end", ull(at));
        *size = u32(p);
        return BR_OK;
    }
    if (avail < 4) return bad(c, "fill value message at 0x%llx: too short", ull(at));
    const unsigned ver = p[0], alloc = p[1], ftime = p[2], def = p[3];
    if ((ver != 1 && ver != 2) || alloc < 1 || alloc > 3 || ftime > 2 || def > 1)
        return bad(c, "fill value message at 0x%llx: version %u, allocation %u, time %u, defined %u unknown", ull(at),
                   ver, alloc, ftime, def);
    if (ver == 1 || def) {
        if (avail < 8 || u32(p + 4) > avail - 8)
            return bad(c, "fill value message at 0x%llx: size past its end", ull(at));
        *size = u32(p + 4);
    }
    return BR_OK;
}

/* Layout version 3: contiguous or chunked (1-D: two dimensions, the second the element size); compact refused. */
static br_status parse_layout(v1c *c, uint64_t at, const unsigned char *p, uint64_t avail, ohinfo *o) {
    if (avail < 2 || p[0] != 3)
        return bad(c, "layout message at 0x%llx: version %u (expected 3)", ull(at), avail ? p[0] : 0);
    o->lclass = p[1];
    if (p[1] == 1) {
        if (avail < 18) return bad(c, "layout message at 0x%llx: too short", ull(at));
        o->laddr = u64(p + 2);
        o->lsize = u64(p + 10);
        return BR_OK;
    }
    if (p[1] == 2) {
        if (avail < 3 || p[2] != 2 || avail < 3 + 8 + 8)
            return bad(c, "layout message at 0x%llx: chunked with %u dimensions (bitroll writes 1-D datasets)", ull(at),
                       avail >= 3 ? p[2] : 0);
        o->laddr = u64(p + 3);
        o->cdim = u32(p + 11);
        o->cesize = u32(p + 15);
        return BR_OK;
    }
    return bad(c, "layout message at 0x%llx: %s layout, but bitroll writes contiguous or chunked datasets only",
               ull(at), p[1] == 0 ? "compact" : "an unknown");
}

/* ---------------------------------------------------------------- object headers */

static br_status check_object(v1c *c, uint64_t addr, int depth, const uint64_t *cached_stab);

/* Walks one header's chunks (the first after the prefix, then each continuation, each visited once) and parses every
 * message. Message types accepted: 0x0 NIL (skipped: libhdf5 does not read it), 0x1 dataspace, 0x3 datatype, 0x4 / 0x5
 * fill value, 0x8 layout, 0xC attribute, 0x10 continuation, 0x11 symbol table, 0x12 modification time; any other type
 * is refused (libhdf5 interprets most of them: filters, links, shared messages, ...). */
static br_status parse_header(v1c *c, uint64_t addr, ohinfo *o) {
    unsigned char pre[OH_PREFIX];
    unsigned char *b = NULL;
    br_status st = rd(c, addr, OH_PREFIX, pre, "object header");
    if (st != BR_OK) return st;
    const unsigned nmsgs = u16(pre + 2);
    const uint32_t refs = u32(pre + 4), size0 = u32(pre + 8);
    if (pre[0] != 1 || pre[1] || u32(pre + 12))
        return bad(c, "object header at 0x%llx: version %u (expected 1)", ull(addr), pre[0]);
    if (nmsgs == 0 || refs != 1 || size0 == 0 || size0 % 8 || size0 > META_MAX)
        return bad(c, "object header at 0x%llx: %u messages, %u links, %u bytes", ull(addr), nmsgs, refs, size0);
    if ((st = claim(c, addr, OH_PREFIX + (uint64_t)size0, "object header")) != BR_OK) return st;
    uint64_t chunk_addr[64], chunk_size[64];
    int nchunks = 1;
    chunk_addr[0] = addr + OH_PREFIX;
    chunk_size[0] = size0;
    unsigned seen = 0;
    for (int ci = 0; ci < nchunks; ci++) {
        const uint64_t ca = chunk_addr[ci], cs = chunk_size[ci];
        free(b);
        b = NULL;
        if ((st = rd_alloc(c, ca, cs, &b, "object header chunk")) != BR_OK) goto cleanup;
        for (uint64_t p = 0; p < cs;) {
            const uint64_t ma = ca + p;
            if (cs - p < MSG_HDR) {
                st = bad(c, "object header at 0x%llx: %llu stray bytes at 0x%llx", ull(addr), ull(cs - p), ull(ma));
                goto cleanup;
            }
            const unsigned type = u16(b + p), msize = u16(b + p + 2), flags = b[p + 4];
            if (++seen > nmsgs) {
                st = bad(c, "object header at 0x%llx: more than its %u messages", ull(addr), nmsgs);
                goto cleanup;
            }
            if (msize % 8 || msize > cs - p - MSG_HDR) {
                st =
                    bad(c, "object header at 0x%llx: message %u (type 0x%x, %u bytes) at 0x%llx extends past its block",
                        ull(addr), seen - 1, type, msize, ull(ma));
                goto cleanup;
            }
            if ((flags & ~1u) || b[p + 5] || b[p + 6] || b[p + 7]) {
                st = bad(c,
                         "object header at 0x%llx: message %u (type 0x%x) has flags 0x%x (shared or unknown-type "
                         "flags: bitroll writes none)",
                         ull(addr), seen - 1, type, flags);
                goto cleanup;
            }
            const unsigned char *m = b + p + MSG_HDR;
            const uint64_t da = ma + MSG_HDR;
            int dup = 0;
            switch (type) {
            case 0x0: break;
            case 0x1:
                dup = o->has_space++;
                if (!dup) st = parse_space(c, da, m, msize, &o->sp);
                break;
            case 0x3: {
                uint64_t used = 0;
                dup = o->has_type++;
                if (!dup) st = parse_dtype(c, da, m, msize, &used, &o->t, 0);
                break;
            }
            case 0x4:
            case 0x5:
                dup = o->has_fill++;
                if (!dup) st = parse_fill(c, da, type, m, msize, &o->fill_size);
                break;
            case 0x8:
                dup = o->has_layout++;
                if (!dup) st = parse_layout(c, da, m, msize, o);
                break;
            case 0xC: st = parse_attr(c, da, m, msize, (int)seen - 1); break;
            case 0x10: {
                if (msize < 16) {
                    st = bad(c, "continuation message at 0x%llx: too short", ull(da));
                    break;
                }
                const uint64_t na = u64(m), ns = u64(m + 8);
                if (nchunks == 64 || ns == 0 || ns % 8 || ns > META_MAX) {
                    st = bad(c, "continuation message at 0x%llx: block of %llu bytes at 0x%llx (chunk %d)", ull(da),
                             ull(ns), ull(na), nchunks);
                    break;
                }
                if ((st = claim(c, na, ns, "object header continuation block")) != BR_OK) break;
                chunk_addr[nchunks] = na;
                chunk_size[nchunks++] = ns;
                break;
            }
            case 0x11:
                dup = o->has_stab++;
                if (!dup && msize < 16)
                    st = bad(c, "symbol table message at 0x%llx: too short", ull(da));
                else if (!dup) {
                    o->bt = u64(m);
                    o->heap = u64(m + 8);
                }
                break;
            case 0x12:
                if (msize < 8 || m[0] != 1 || m[1] || m[2] || m[3])
                    st = bad(c, "modification time message at 0x%llx: version %u (expected 1)", ull(da),
                             msize ? m[0] : 0);
                break;
            default:
                st = bad(c, "object header at 0x%llx: message %u at 0x%llx has type 0x%x, which bitroll never writes",
                         ull(addr), seen - 1, ull(ma), type);
            }
            if (st != BR_OK) goto cleanup;
            if (dup) {
                st = bad(c, "object header at 0x%llx: message type 0x%x appears twice", ull(addr), type);
                goto cleanup;
            }
            p += MSG_HDR + msize;
        }
    }
    if (seen != nmsgs)
        st = bad(c, "object header at 0x%llx: %u messages found, its prefix says %u", ull(addr), seen, nmsgs);
cleanup:
    free(b);
    return st;
}

/* ---------------------------------------------------------------- B-trees */

static br_status sib_visit(v1c *c, sibs *s, unsigned level, uint64_t addr, uint64_t left, uint64_t right,
                           const char *what) {
    if (left != s->prev[level])
        return bad(c, "%s at 0x%llx: left sibling 0x%llx, expected 0x%llx", what, ull(addr), ull(left),
                   ull(s->prev[level]));
    if (s->prev[level] != UNDEF && s->prev_right[level] != addr)
        return bad(c, "%s at 0x%llx: its left sibling 0x%llx names 0x%llx as its right one", what, ull(addr),
                   ull(s->prev[level]), ull(s->prev_right[level]));
    s->prev[level] = addr;
    s->prev_right[level] = right;
    return BR_OK;
}

static br_status sib_end(v1c *c, const sibs *s, const char *what) {
    for (int l = 0; l <= BT_LEVELS; l++)
        if (s->prev[l] != UNDEF && s->prev_right[l] != UNDEF)
            return bad(c, "%s at 0x%llx: the last node of level %d has right sibling 0x%llx", what, ull(s->prev[l]), l,
                       ull(s->prev_right[l]));
    return BR_OK;
}

static void sib_init(sibs *s) {
    for (int l = 0; l <= BT_LEVELS; l++)
        s->prev[l] = s->prev_right[l] = UNDEF;
}

/* The node prefix shared by both B-tree types. */
static br_status bt_prefix(v1c *c, uint64_t addr, const unsigned char *b, unsigned type, int level, unsigned two_k,
                           unsigned *entries, unsigned *lvl, const char *what) {
    if (memcmp(b, "TREE", 4) != 0) return bad(c, "%s at 0x%llx: bad signature", what, ull(addr));
    *lvl = b[5];
    *entries = u16(b + 6);
    if (b[4] != type) return bad(c, "%s at 0x%llx: node type %u, expected %u", what, ull(addr), b[4], type);
    if (*lvl > BT_LEVELS || (level >= 0 && (int)*lvl != level))
        return bad(c, "%s at 0x%llx: level %u, expected %d", what, ull(addr), *lvl, level);
    /* an empty group's tree is one leaf with no entries (not bitroll's, but a foreign file must reach the reader's
     * "not a bitroll file"); any other node has entries */
    const int may_be_empty = type == 0 && level < 0 && *lvl == 0;
    if ((*entries == 0 && !may_be_empty) || *entries > two_k)
        return bad(c, "%s at 0x%llx: %u entries (1 to %u)", what, ull(addr), *entries, two_k);
    return BR_OK;
}

/* Opens a B-tree node of both types: its size bytes claimed and read into *b (freed by the caller, NULL on failure),
 * its prefix checked, its sibling links checked at its level. */
static br_status bt_open(v1c *c, uint64_t addr, uint64_t size, unsigned type, int level, unsigned two_k, sibs *s,
                         unsigned char **b, unsigned *entries, unsigned *lvl, const char *what) {
    *b = NULL;
    br_status st = claim(c, addr, size, what);
    if (st == BR_OK) st = rd_alloc(c, addr, size, b, what);
    if (st == BR_OK) st = bt_prefix(c, addr, *b, type, level, two_k, entries, lvl, what);
    if (st == BR_OK) st = sib_visit(c, s, *lvl, addr, u64(*b + 8), u64(*b + 16), what);
    if (st != BR_OK) {
        free(*b);
        *b = NULL;
    }
    return st;
}

/* A name at offset off of a local heap's data segment: inside it and NUL-terminated there. */
static const char *heap_name(v1c *c, const lheap *h, uint64_t off, br_status *st, const char *what) {
    const unsigned char *z = off < h->dsize ? memchr(h->data + off, 0, (size_t)(h->dsize - off)) : NULL;
    if (!z) {
        *st = bad(c, "%s: name offset %llu is not a NUL-terminated string inside the local heap at 0x%llx (%llu bytes)",
                  what, ull(off), ull(h->addr), ull(h->dsize));
        return NULL;
    }
    return (const char *)h->data + off;
}

/* A symbol table node: its entries' names (sorted, inside the heap) and objects (walked). *last: its last name. */
static br_status check_snod(v1c *c, uint64_t addr, const lheap *h, int depth, const char *prefix, const char **last,
                            const char *lo_key) {
    const uint64_t size = 8 + 2 * (uint64_t)c->leaf_k * ENTRY_SIZE;
    unsigned char *b = NULL;
    char saved[sizeof c->where];
    memcpy(saved, c->where, sizeof saved);
    br_status st = claim(c, addr, size, "symbol table node");
    if (st != BR_OK) return st;
    if ((st = rd_alloc(c, addr, size, &b, "symbol table node")) != BR_OK) return st;
    const unsigned n = u16(b + 6);
    if (memcmp(b, "SNOD", 4) != 0 || b[4] != 1 || b[5] || n == 0 || n > 2 * c->leaf_k) {
        st = bad(c, "symbol table node at 0x%llx: bad signature, version or count (%u symbols, at most %u)", ull(addr),
                 n, 2 * c->leaf_k);
        goto cleanup;
    }
    const char *prev = lo_key;
    for (unsigned i = 0; i < n; i++) {
        const unsigned char *e = b + 8 + (uint64_t)i * ENTRY_SIZE;
        char what[80];
        snprintf(what, sizeof what, "symbol table node at 0x%llx: entry %u", ull(addr), i);
        const char *name = heap_name(c, h, u64(e), &st, what);
        if (!name) goto cleanup;
        if (!name[0] || strcmp(name, prev) <= 0) {
            st = bad(c, "%s: name '%.40s' is empty or not after '%.40s'", what, name, prev);
            goto cleanup;
        }
        const uint32_t ctype = u32(e + 16);
        if (ctype > 1 || u32(e + 20)) {
            st = bad(c, "%s ('%.40s'): cache type %u (bitroll writes hard links only)", what, name, ctype);
            goto cleanup;
        }
        uint64_t stab[2] = {u64(e + 24), u64(e + 32)};
        snprintf(c->where, sizeof c->where, "%s/%.60s", prefix, name);
        if ((st = check_object(c, u64(e + 8), depth + 1, ctype == 1 ? stab : NULL)) != BR_OK) goto cleanup;
        memcpy(c->where, saved, sizeof saved);
        prev = name;
    }
    *last = prev;
cleanup:
    free(b);
    return st;
}

/* A group B-tree node (type 0): keys are heap offsets of names; key i+1 is the last name under child i. */
static br_status check_gtree(v1c *c, uint64_t addr, int level, const lheap *h, int depth, sibs *s, const char *prefix,
                             const char **last) {
    const unsigned two_k = 2 * c->node_k;
    const uint64_t size = 24 + (uint64_t)two_k * 8 + (uint64_t)(two_k + 1) * 8;
    unsigned char *b = NULL;
    unsigned n = 0, lvl = 0;
    br_status st = bt_open(c, addr, size, 0, level, two_k, s, &b, &n, &lvl, "group B-tree node");
    if (st != BR_OK) return st;
    char what[80];
    snprintf(what, sizeof what, "group B-tree node at 0x%llx: key 0", ull(addr));
    const char *lo = heap_name(c, h, u64(b + 24), &st, what);
    if (!lo) goto cleanup;
    if (strcmp(lo, *last) != 0) {
        st = bad(c, "%s is '%.40s', expected '%.40s'", what, lo, *last);
        goto cleanup;
    }
    for (unsigned i = 0; i < n; i++) {
        const unsigned char *q = b + 24 + (uint64_t)i * 16;
        const uint64_t child = u64(q + 8);
        snprintf(what, sizeof what, "group B-tree node at 0x%llx: key %u", ull(addr), i + 1);
        const char *hi = heap_name(c, h, u64(q + 16), &st, what);
        if (!hi) goto cleanup;
        const char *sub = NULL;
        st = lvl > 0 ? check_gtree(c, child, (int)lvl - 1, h, depth, s, prefix, last)
                     : check_snod(c, child, h, depth, prefix, &sub, *last);
        if (st != BR_OK) goto cleanup;
        if (lvl == 0) *last = sub;
        if (strcmp(hi, *last) != 0) {
            st = bad(c, "%s is '%.40s', but the last name under child %u is '%.40s'", what, hi, i, *last);
            goto cleanup;
        }
    }
cleanup:
    free(b);
    return st;
}

static br_status load_lheap(v1c *c, uint64_t addr, lheap *h) {
    unsigned char p[LHEAP_HDR];
    h->addr = addr;
    h->data = NULL;
    br_status st = claim(c, addr, LHEAP_HDR, "local heap");
    if (st != BR_OK || (st = rd(c, addr, LHEAP_HDR, p, "local heap")) != BR_OK) return st;
    if (memcmp(p, "HEAP", 4) != 0 || p[4] != 0 || p[5] || p[6] || p[7])
        return bad(c, "local heap at 0x%llx: bad signature or version", ull(addr));
    h->dsize = u64(p + 8);
    const uint64_t fl = u64(p + 16), da = u64(p + 24);
    if (h->dsize == 0 || h->dsize > META_MAX || h->dsize % 8)
        return bad(c, "local heap at 0x%llx: data segment of %llu bytes", ull(addr), ull(h->dsize));
    if ((st = claim(c, da, h->dsize, "local heap data segment")) != BR_OK) return st;
    if ((st = rd_alloc(c, da, h->dsize, &h->data, "local heap data segment")) != BR_OK) return st;
    /* The free list ends at offset 1 (libhdf5's H5HL_FREE_NULL); its blocks must increase, so it ends. */
    uint64_t min = 0;
    for (uint64_t off = fl; off != 1;) {
        if (off < min || off % 8 || off > h->dsize || h->dsize - off < 16)
            return bad(c, "local heap at 0x%llx: free block at offset %llu is out of place (data segment %llu bytes)",
                       ull(addr), ull(off), ull(h->dsize));
        const uint64_t next = u64(h->data + off), sz = u64(h->data + off + 8);
        if (sz < 16 || sz > h->dsize - off)
            return bad(c, "local heap at 0x%llx: free block at offset %llu of %llu bytes", ull(addr), ull(off),
                       ull(sz));
        min = off + sz;
        off = next;
    }
    return BR_OK;
}

/* ---------------------------------------------------------------- datasets */

typedef struct {
    uint64_t n; /* elements */
    uint32_t esize; /* bytes per element */
    uint64_t cdim; /* elements per chunk */
    int vlen;
    uint64_t next; /* the offset the next chunk must have */
    unsigned char *buf; /* one chunk, for vlen strings */
} dctx;

static br_status check_vrefs(v1c *c, const unsigned char *b, uint64_t first, uint64_t count) {
    for (uint64_t i = 0; i < count; i++) {
        br_status st = check_vref(c, b + i * VREF_SIZE, "string", first + i);
        if (st != BR_OK) return st;
    }
    return BR_OK;
}

/* A chunk B-tree node (type 1, 1-D: keys are chunk size, filter mask, 2 offsets): the chunks must be those of a
 * dataset written whole, in order: offsets 0, cdim, 2 cdim, ..., each cdim x esize bytes inside the file. */
static br_status check_ctree(v1c *c, uint64_t addr, int level, dctx *d, sibs *s) {
    const unsigned two_k = 2 * CHUNK_K, ksz = 24;
    const uint64_t size = 24 + (uint64_t)two_k * 8 + (uint64_t)(two_k + 1) * ksz;
    const uint64_t cbytes = d->cdim * d->esize;
    unsigned char *b = NULL;
    unsigned n = 0, lvl = 0;
    br_status st = bt_open(c, addr, size, 1, level, two_k, s, &b, &n, &lvl, "chunk B-tree node");
    if (st != BR_OK) return st;
    for (unsigned i = 0; i <= n; i++) {
        const unsigned char *k = b + 24 + (uint64_t)i * (ksz + 8);
        const uint64_t off = u64(k + 8);
        if (i == n) { /* the right bound: where the next chunk would start, in both dimensions */
            if (u32(k) || u32(k + 4) || u64(k + 16) != d->esize || off != d->next) {
                st = bad(c,
                         "chunk B-tree node at 0x%llx: right key (%u bytes, offsets %llu, %llu), expected offsets "
                         "%llu, %u",
                         ull(addr), u32(k), ull(off), ull(u64(k + 16)), ull(d->next), d->esize);
                goto cleanup;
            }
            break;
        }
        if (u32(k) != cbytes || u32(k + 4) || u64(k + 16) || off != d->next) {
            st = bad(c,
                     "chunk B-tree node at 0x%llx: key %u (%u bytes, filter mask 0x%x, offset %llu), expected %llu "
                     "unfiltered bytes at offset %llu",
                     ull(addr), i, u32(k), u32(k + 4), ull(off), ull(cbytes), ull(d->next));
            goto cleanup;
        }
        const uint64_t child = u64(k + ksz);
        if (lvl > 0) {
            if ((st = check_ctree(c, child, (int)lvl - 1, d, s)) != BR_OK) goto cleanup;
            continue;
        }
        if (off >= d->n) {
            st = bad(c, "chunk B-tree node at 0x%llx: chunk at offset %llu is past the %llu elements", ull(addr),
                     ull(off), ull(d->n));
            goto cleanup;
        }
        if ((st = claim(c, child, cbytes, "chunk")) != BR_OK) goto cleanup;
        if (d->vlen) {
            if ((st = rd(c, child, cbytes, d->buf, "chunk")) != BR_OK) goto cleanup;
            const uint64_t m = d->n - off < d->cdim ? d->n - off : d->cdim;
            if ((st = check_vrefs(c, d->buf, off, m)) != BR_OK) goto cleanup;
        }
        d->next = off + d->cdim;
    }
    /* an internal node's right key is its last child's, checked there; the keys between repeat the children's */
cleanup:
    free(b);
    return st;
}

static br_status check_dataset(v1c *c, uint64_t addr, const ohinfo *o) {
    if (!o->has_space || !o->has_type || o->sp.rank != 1)
        return bad(c, "object header at 0x%llx: a dataset without a 1-D dataspace and a datatype", ull(addr));
    if (o->t.cls == 3 || (o->t.cls == 9 && o->t.size != VREF_SIZE))
        return bad(c, "object header at 0x%llx: dataset of fixed-size strings (bitroll writes variable-length ones)",
                   ull(addr));
    if (o->fill_size && (o->fill_size != o->t.size || o->t.cls == 9))
        return bad(c, "object header at 0x%llx: fill value of %llu bytes for %u-byte elements", ull(addr),
                   ull(o->fill_size), o->t.size);
    const uint64_t n = o->sp.nelem, es = o->t.size;
    if (n > c->eoa / es) /* worded as check_claim's in h5log.c: the same refusal, made before libhdf5 is reached */
        return br_fail(BR_EFORMAT, "%s: dataset %s: %llu elements of %llu bytes cannot fit in a file of %llu bytes",
                       c->path, c->where, ull(n), ull(es), ull(c->eoa));
    br_status st = BR_OK;
    if (o->lclass == 1) {
        if (o->lsize != n * es)
            return bad(c, "contiguous data of %llu bytes, expected %llu elements x %llu bytes", ull(o->lsize), ull(n),
                       ull(es));
        if (o->laddr == UNDEF) {
            if (n) return bad(c, "contiguous data of %llu elements never written (undefined address)", ull(n));
            return BR_OK;
        }
        if (o->lsize && (st = claim(c, o->laddr, o->lsize, "contiguous data")) != BR_OK) return st;
        if (o->t.cls != 9) return BR_OK;
        unsigned char *b = malloc((size_t)VBUF_ELEMS * VREF_SIZE);
        if (!b) return br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
        for (uint64_t i = 0; i < n && st == BR_OK; i += VBUF_ELEMS) {
            const uint64_t m = n - i < VBUF_ELEMS ? n - i : VBUF_ELEMS;
            st = rd(c, o->laddr + i * VREF_SIZE, m * VREF_SIZE, b, "contiguous data");
            if (st == BR_OK) st = check_vrefs(c, b, i, m);
        }
        free(b);
        return st;
    }
    /* chunked */
    if (o->cesize != es || o->cdim == 0 || o->cdim > n || o->cdim > CHUNK_MAX / es)
        return bad(c, "chunks of %u elements of %u bytes for %llu elements of %llu bytes (at most %llu bytes a chunk)",
                   o->cdim, o->cesize, ull(n), ull(es), ull(CHUNK_MAX));
    if (o->sp.maxdim != n)
        return bad(c, "chunked dataset of %llu elements with maximum %llu", ull(n), ull(o->sp.maxdim));
    dctx d = {.n = n, .esize = (uint32_t)es, .cdim = o->cdim, .vlen = o->t.cls == 9, .next = 0, .buf = NULL};
    if (d.vlen && !(d.buf = malloc((size_t)(d.cdim * es))))
        return br_fail(BR_ENOMEM, "%s: out of memory checking the HDF5 structure", c->path);
    sibs s;
    sib_init(&s);
    st = check_ctree(c, o->laddr, -1, &d, &s);
    if (st == BR_OK) st = sib_end(c, &s, "chunk B-tree node");
    if (st == BR_OK && d.next < n)
        st = bad(c, "the chunk B-tree at 0x%llx holds %llu of %llu elements", ull(o->laddr), ull(d.next), ull(n));
    free(d.buf);
    return st;
}

/* ---------------------------------------------------------------- groups and the walk */

static br_status check_object(v1c *c, uint64_t addr, int depth, const uint64_t *cached_stab) {
    if (depth > OBJ_DEPTH) return bad(c, "object header at 0x%llx: groups nested deeper than %d", ull(addr), OBJ_DEPTH);
    ohinfo o;
    memset(&o, 0, sizeof o);
    br_status st = parse_header(c, addr, &o);
    if (st != BR_OK) return st;
    if (o.has_stab) {
        if (o.has_space || o.has_type || o.has_layout || o.has_fill)
            return bad(c, "object header at 0x%llx: a group with dataset messages", ull(addr));
        if (cached_stab && (cached_stab[0] != o.bt || cached_stab[1] != o.heap))
            return bad(
                c, "object header at 0x%llx: symbol table (0x%llx, 0x%llx) differs from the cached (0x%llx, 0x%llx)",
                ull(addr), ull(o.bt), ull(o.heap), ull(cached_stab[0]), ull(cached_stab[1]));
        lheap h;
        if ((st = load_lheap(c, o.heap, &h)) != BR_OK) {
            free(h.data);
            return st;
        }
        char prefix[sizeof c->where];
        memcpy(prefix, c->where, sizeof prefix);
        sibs s;
        sib_init(&s);
        const char *last = NULL;
        char what[64];
        snprintf(what, sizeof what, "group at 0x%llx: heap offset 0", ull(addr));
        if ((last = heap_name(c, &h, 0, &st, what)) == NULL) { /* the empty name every group B-tree starts from */
            free(h.data);
            return st;
        }
        st = check_gtree(c, o.bt, -1, &h, depth, &s, prefix, &last);
        if (st == BR_OK) st = sib_end(c, &s, "group B-tree node");
        free(h.data);
        return st;
    }
    if (cached_stab) return bad(c, "object header at 0x%llx: cached as a group, but it has no symbol table", ull(addr));
    if (!o.has_layout) return bad(c, "object header at 0x%llx: neither a group nor a dataset", ull(addr));
    if (depth == 0) return bad(c, "the root object is not a group");
    return check_dataset(c, addr, &o);
}

static br_status check_super(v1c *c, uint64_t fsize, uint64_t *root, uint64_t stab[2]) {
    unsigned char s[SB_SIZE];
    c->eoa = fsize;
    br_status st = rd(c, 0, SB_SIZE, s, "superblock");
    if (st != BR_OK) return st;
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (memcmp(s, sig, 8) != 0) return bad(c, "superblock: bad signature");
    if (s[8] == 2 || s[8] == 3) /* the latest format: bitroll writes it only behind its header (format_version 2) */
        return br_fail(BR_EFORMAT, "%s: HDF5 superblock version %u at byte 0: a format_version 2 file without its 512-byte "
                                   "bitroll header (stripped, or the file was cut at the front); bitroll reads such "
                                   "a file only with its header",
                       c->path, s[8]);
    if (s[8] || s[9] || s[10] || s[11] || s[12] || s[15])
        return bad(c, "superblock: versions %u/%u/%u/%u (bitroll's version 1 files have superblock version 0)", s[8],
                   s[9], s[10], s[12]);
    if (s[13] != 8 || s[14] != 8)
        return bad(c, "superblock: %u-byte offsets and %u-byte lengths (expected 8 and 8)", s[13], s[14]);
    c->leaf_k = u16(s + 16);
    c->node_k = u16(s + 18);
    if (c->leaf_k == 0 || c->leaf_k > 1024 || c->node_k == 0 || c->node_k > 1024 || u32(s + 20))
        return bad(c, "superblock: group K values %u and %u, flags 0x%x", c->leaf_k, c->node_k, u32(s + 20));
    const uint64_t base = u64(s + 24), fsi = u64(s + 32), eof = u64(s + 40), drv = u64(s + 48);
    if (base != 0 || fsi != UNDEF || drv != UNDEF)
        return bad(c, "superblock: base address 0x%llx, free-space 0x%llx, driver block 0x%llx (expected 0 and none)",
                   ull(base), ull(fsi), ull(drv));
    if (eof < SB_SIZE || eof > fsize)
        return bad(c, "superblock: end-of-file address %llu, but the file has %llu bytes", ull(eof), ull(fsize));
    c->eoa = eof;
    const unsigned char *e = s + 56;
    if (u64(e) != 0 || u32(e + 16) != 1 || u32(e + 20))
        return bad(c, "superblock: root symbol table entry (name offset %llu, cache type %u)", ull(u64(e)),
                   u32(e + 16));
    *root = u64(e + 8);
    stab[0] = u64(e + 24);
    stab[1] = u64(e + 32);
    return claim(c, 0, SB_SIZE, "superblock");
}

br_status h5v1_check(const char *path, int64_t fsize) {
    v1c c;
    memset(&c, 0, sizeof c);
    c.path = path ? path : "(null)";
    if (!path || fsize < 0) return br_fail(BR_EINVAL, "h5v1_check: bad argument");
    c.fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (c.fd < 0) return br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t root = 0, stab[2];
    br_status st = check_super(&c, (uint64_t)fsize, &root, stab);
    if (st == BR_OK) st = check_object(&c, root, 0, stab);
    c.where[0] = '\0';
    if (st == BR_OK) st = check_overlaps(&c);
    close(c.fd);
    for (size_t i = 0; i < c.ngc; i++) {
        free(c.gc[i].idx);
        free(c.gc[i].size);
    }
    free(c.gc);
    free(c.reg);
    free(c.starts.key);
    free(c.starts.val);
    free(c.gcmap.key);
    free(c.gcmap.val);
    return st;
}
