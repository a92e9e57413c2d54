/* HDF5 rollouts and scores files (docs/FORMAT.md): atomic writes (temp file, complete=1 last, integrity header,
 * fsync, rename) and readers that check the header with plain reads before libhdf5 sees the file, then every
 * dataset's type and length, and what it claims against the file's size, before anything trusts it. */
#include "logging/h5log.h"

#include "common/tuning.h"
#include "logging/h5v1_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

/* Fingerprints hash the in-memory arrays as the little-endian bytes the format defines. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "h5log fingerprints assume a little-endian host"
#endif

/* 64 KiB chunks (in the file: a text dataset's 16-byte references included), each dataset written through a chunk
 * cache of exactly one chunk: small files stay small, and writing a big one holds one chunk, whatever its size. */
#define CHUNK_BYTES ((hsize_t)1 << 16)

/* ---------------------------------------------------------------- element kinds */

typedef enum { K_I8, K_I32, K_I64, K_U64, K_F32 } kind;

static hid_t kind_mem(kind k) {
    switch (k) {
    case K_I8: return H5T_NATIVE_INT8;
    case K_I32: return H5T_NATIVE_INT32;
    case K_I64: return H5T_NATIVE_INT64;
    case K_U64: return H5T_NATIVE_UINT64;
    case K_F32: return H5T_NATIVE_FLOAT;
    }
    return H5I_INVALID_HID;
}

/* Fixed little-endian file types, so a file reads the same on every host. */
static hid_t kind_file(kind k) {
    switch (k) {
    case K_I8: return H5T_STD_I8LE;
    case K_I32: return H5T_STD_I32LE;
    case K_I64: return H5T_STD_I64LE;
    case K_U64: return H5T_STD_U64LE;
    case K_F32: return H5T_IEEE_F32LE;
    }
    return H5I_INVALID_HID;
}

static size_t kind_size(kind k) {
    switch (k) {
    case K_I8: return 1;
    case K_I32:
    case K_F32: return 4;
    case K_I64:
    case K_U64: return 8;
    }
    return 0;
}

static const char *kind_name(kind k) {
    switch (k) {
    case K_I8: return "int8";
    case K_I32: return "int32";
    case K_I64: return "int64";
    case K_U64: return "uint64";
    case K_F32: return "float32";
    }
    return "?";
}

/* ---------------------------------------------------------------- HDF5 error handling */

/* HDF5 prints its whole error stack to stderr by default; we report one br_status message instead,
 * and restore whatever the caller had configured when we return. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} quiet_state;

static void quiet_begin(quiet_state *q) {
    if (H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data) < 0) {
        q->func = NULL;
        q->data = NULL;
    }
    /* A failure here only means HDF5 may also print its stack; our own messages are unaffected. */
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_end(const quiet_state *q) { (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

static _Thread_local char g_detail[320];

static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    char *buf = data;
    if (buf[0] == '\0' && e->desc && e->desc[0]) snprintf(buf, sizeof g_detail, "%s", e->desc);
    return 0;
}

/* The innermost (most specific) message on HDF5's error stack, which is why the call failed;
 * the stack is cleared so the next failure reports its own cause. */
static const char *h5_detail(void) {
    g_detail[0] = '\0';
    if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, g_detail) < 0 || g_detail[0] == '\0')
        snprintf(g_detail, sizeof g_detail, "no detail from HDF5");
    (void)H5Eclear2(H5E_DEFAULT); /* nothing useful to do if clearing fails */
    return g_detail;
}

/* Closes *id on the success path, where a failed close (e.g. the final flush of a file) is an error. */
static br_status h5_close(hid_t *id, herr_t (*fn)(hid_t), const char *file, const char *what) {
    if (*id < 0) return BR_OK;
    herr_t rc = fn(*id);
    *id = H5I_INVALID_HID;
    if (rc < 0) return br_fail(BR_EIO, "%s: closing %s failed: %s", file, what, h5_detail());
    return BR_OK;
}

/* Closes *id on an error path: the first failure's message is the one worth keeping. */
static void h5_drop(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) (void)fn(*id);
    *id = H5I_INVALID_HID;
}

static const char *type_desc(hid_t t, char *buf, size_t cap) {
    H5T_class_t c = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    switch (c) {
    case H5T_INTEGER: snprintf(buf, cap, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits); break;
    case H5T_FLOAT: snprintf(buf, cap, "float%zu", bits); break;
    case H5T_STRING: snprintf(buf, cap, "string"); break;
    default: snprintf(buf, cap, "HDF5 type class %d", (int)c); break;
    }
    return buf;
}

/* ---------------------------------------------------------------- validation shared by writers and readers */

/* Index of the first bad offset ([0] != 0, or off[i] < off[i-1]), or -1 when well formed. */
static int64_t offsets_bad(const int64_t *off, int64_t n) {
    if (off[0] != 0) return 0;
    for (int64_t i = 1; i <= n; i++)
        if (off[i] < off[i - 1]) return i;
    return -1;
}

/* Index of the first id not greater than its predecessor, or -1 when strictly increasing. */
static int64_t ids_unsorted(const int64_t *id, int64_t n) {
    for (int64_t i = 1; i < n; i++)
        if (id[i] <= id[i - 1]) return i;
    return -1;
}

static int64_t finish_bad(const int8_t *f, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (f[i] < BR_FINISH_STOP || f[i] > BR_FINISH_CONTEXT) return i;
    return -1;
}

static int is_hex16(const char *s) {
    if (!s || strlen(s) != 16) return 0;
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static br_status check_offsets_in(const char *path, const char *name, const int64_t *off, int64_t n) {
    int64_t i = offsets_bad(off, n);
    if (i == 0) return br_fail(BR_EINVAL, "%s: cannot write: %s[0] = %lld, expected 0", path, name, (long long)off[0]);
    if (i > 0)
        return br_fail(BR_EINVAL, "%s: cannot write: %s[%lld] = %lld < %s[%lld] = %lld (offsets must not decrease)",
                       path, name, (long long)i, (long long)off[i], name, (long long)(i - 1), (long long)off[i - 1]);
    return BR_OK;
}

static br_status check_offsets_file(const char *path, const char *dpath, const int64_t *off, int64_t n) {
    int64_t i = offsets_bad(off, n);
    if (i == 0)
        return br_fail(BR_EFORMAT, "%s: dataset %s: first offset is %lld, expected 0", path, dpath, (long long)off[0]);
    if (i > 0)
        return br_fail(BR_EFORMAT, "%s: dataset %s: element %lld = %lld is less than element %lld = %lld (offsets must not decrease)",
                       path, dpath, (long long)i, (long long)off[i], (long long)(i - 1), (long long)off[i - 1]);
    return BR_OK;
}

/* ---------------------------------------------------------------- fingerprints */

typedef struct {
    XXH3_state_t *xs;
} fp_state;

static br_status fp_begin(fp_state *f) {
    f->xs = XXH3_createState();
    if (!f->xs) return br_fail(BR_ENOMEM, "cannot allocate an xxh3 state");
    if (XXH3_64bits_reset(f->xs) != XXH_OK) return br_fail(BR_ERUNTIME, "xxh3 reset failed");
    return BR_OK;
}

static br_status fp_update(fp_state *f, const void *p, size_t n) {
    if (n == 0) return BR_OK;
    if (XXH3_64bits_update(f->xs, p, n) != XXH_OK) return br_fail(BR_ERUNTIME, "xxh3 update failed");
    return BR_OK;
}

/* One dataset: its name with the NUL, its element count as uint64 LE, then its elements' LE bytes. */
static br_status fp_array(fp_state *f, const char *name, const void *data, uint64_t count, size_t esize) {
    if (count > 0 && !data) return br_fail(BR_EINVAL, "fingerprint: %s is NULL with %llu elements", name, (unsigned long long)count);
    br_status st = fp_update(f, name, strlen(name) + 1);
    if (st == BR_OK) st = fp_update(f, &count, sizeof count);
    if (st == BR_OK && count > 0) st = fp_update(f, data, (size_t)count * esize);
    return st;
}

/* A string dataset: name with the NUL, count, then per string its byte length (uint64 LE) and bytes. */
static br_status fp_text(fp_state *f, const char *name, char *const *s, uint64_t count) {
    br_status st = fp_update(f, name, strlen(name) + 1);
    if (st == BR_OK) st = fp_update(f, &count, sizeof count);
    for (uint64_t i = 0; st == BR_OK && i < count; i++) {
        uint64_t len = s[i] ? strlen(s[i]) : 0;
        st = fp_update(f, &len, sizeof len);
        if (st == BR_OK && len > 0) st = fp_update(f, s[i], (size_t)len);
    }
    return st;
}

static void fp_end(fp_state *f) {
    if (f->xs) (void)XXH3_freeState(f->xs);
    f->xs = NULL;
}

br_status h5log_rollouts_fingerprint(const h5log_rollouts *r, uint64_t *out) {
    static const int64_t zero = 0;
    fp_state f = {0};
    if (!r || !out) return br_fail(BR_EINVAL, "h5log_rollouts_fingerprint: NULL argument");
    if (r->n < 0 || (r->n > 0 && (!r->prompt_offsets || !r->completion_offsets)))
        return br_fail(BR_EINVAL, "fingerprint: n = %lld needs both offsets arrays", (long long)r->n);
    uint64_t n = (uint64_t)r->n;
    const int64_t *po = r->prompt_offsets ? r->prompt_offsets : &zero;
    const int64_t *co = r->completion_offsets ? r->completion_offsets : &zero;
    uint64_t P = (uint64_t)po[r->n], T = (uint64_t)co[r->n];
    br_status st = fp_begin(&f);
    if (st == BR_OK) st = fp_array(&f, "sample_id", r->sample_id, n, 8);
    if (st == BR_OK) st = fp_array(&f, "prompt_index", r->prompt_index, n, 8);
    if (st == BR_OK) st = fp_array(&f, "sample_index", r->sample_index, n, 4);
    if (st == BR_OK) st = fp_array(&f, "prompt_offsets", po, n + 1, 8);
    if (st == BR_OK) st = fp_array(&f, "prompt_tokens", r->prompt_tokens, P, 4);
    if (st == BR_OK) st = fp_array(&f, "completion_offsets", co, n + 1, 8);
    if (st == BR_OK) st = fp_array(&f, "completion_tokens", r->completion_tokens, T, 4);
    if (st == BR_OK) st = fp_array(&f, "logprobs", r->logprobs, T, 4);
    if (st == BR_OK) st = fp_array(&f, "logits_digest", r->logits_digest, T, 8);
    if (st == BR_OK) st = fp_array(&f, "finish_reason", r->finish_reason, n, 1);
    if (st == BR_OK) st = fp_array(&f, "temperature", r->temperature, n, 4);
    if (st == BR_OK) st = fp_array(&f, "top_p", r->top_p, n, 4);
    if (st == BR_OK) st = fp_array(&f, "top_k", r->top_k, n, 4);
    if (st == BR_OK) st = fp_array(&f, "seed", r->seed, n, 8);
    if (st == BR_OK && r->prompt_text) st = fp_text(&f, "prompt_text", r->prompt_text, n);
    if (st == BR_OK && r->completion_text) st = fp_text(&f, "completion_text", r->completion_text, n);
    if (st == BR_OK && r->full_text) st = fp_text(&f, "full_text", r->full_text, n);
    if (st == BR_OK) *out = XXH3_64bits_digest(f.xs);
    fp_end(&f);
    return st;
}

br_status h5log_scores_fingerprint(const h5log_scores *s, uint64_t *out) {
    static const int64_t zero = 0;
    fp_state f = {0};
    if (!s || !out) return br_fail(BR_EINVAL, "h5log_scores_fingerprint: NULL argument");
    if (s->n < 0 || (s->n > 0 && !s->completion_offsets))
        return br_fail(BR_EINVAL, "fingerprint: n = %lld needs completion_offsets", (long long)s->n);
    uint64_t n = (uint64_t)s->n;
    const int64_t *co = s->completion_offsets ? s->completion_offsets : &zero;
    uint64_t T = (uint64_t)co[s->n];
    br_status st = fp_begin(&f);
    if (st == BR_OK) st = fp_array(&f, "sample_id", s->sample_id, n, 8);
    if (st == BR_OK) st = fp_array(&f, "completion_offsets", co, n + 1, 8);
    if (st == BR_OK) st = fp_array(&f, "logprobs", s->logprobs, T, 4);
    if (st == BR_OK) st = fp_array(&f, "logits_digest", s->logits_digest, T, 8);
    if (st == BR_OK) *out = XXH3_64bits_digest(f.xs);
    fp_end(&f);
    return st;
}

/* ---------------------------------------------------------------- integrity header (docs/FORMAT.md) */

/* libhdf5 trusts the lengths and addresses it finds in a file: one flipped bit can make it copy gigabytes, loop
 * forever or allocate what the file claims. So a version 2 file starts with a 512-byte HDF5 user block that we
 * fill once HDF5 has built the image, and check with plain reads before libhdf5 parses a byte of it.
 * Layout (little-endian): magic "BITROLL\0" | u32 header version | u32 header size (512) | u64 file length |
 * xxh3-128 of bytes [512, length) as u64 low, u64 high | "xxh3-128" NUL-padded to 16 | u64 xxh3-64 of the 512
 * header bytes with this field zeroed | zeros. */
#define UB_VERSION 1u
#define UB_ALGO "xxh3-128"
#define UB_OFF_VERSION 8
#define UB_OFF_SIZE 12
#define UB_OFF_LENGTH 16
#define UB_OFF_DIGEST 24
#define UB_OFF_ALGO 40
#define UB_OFF_HDIGEST 56
#define UB_END 64                   /* bytes [64, 512) are zero */
#define IO_PIECE ((size_t)1 << 16) /* the digest streams the file in pieces of this size */

static const unsigned char ub_magic[8] = {'B', 'I', 'T', 'R', 'O', 'L', 'L', '\0'};
static const unsigned char h5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t ub_header_digest(const unsigned char *ub) {
    unsigned char h[H5LOG_HEADER_SIZE];
    memcpy(h, ub, sizeof h);
    memset(h + UB_OFF_HDIGEST, 0, 8);
    return XXH3_64bits(h, sizeof h);
}

/* Fills the 512-byte header of a file of `size` bytes whose bytes [512, size) have the xxh3-128 digest h. */
static void ub_stamp(unsigned char *ub, uint64_t size, XXH128_hash_t h) {
    memset(ub, 0, H5LOG_HEADER_SIZE);
    memcpy(ub, ub_magic, sizeof ub_magic);
    put_le(ub + UB_OFF_VERSION, UB_VERSION, 4);
    put_le(ub + UB_OFF_SIZE, H5LOG_HEADER_SIZE, 4);
    put_le(ub + UB_OFF_LENGTH, size, 8);
    put_le(ub + UB_OFF_DIGEST, h.low64, 8);
    put_le(ub + UB_OFF_DIGEST + 8, h.high64, 8);
    memcpy(ub + UB_OFF_ALGO, UB_ALGO, strlen(UB_ALGO));
    put_le(ub + UB_OFF_HDIGEST, ub_header_digest(ub), 8);
}

/* Bob Jenkins' lookup3 (hashlittle, initval 0), the checksum of HDF5's metadata (H5_checksum_metadata). */
#define ROT32(x, k) (((x) << (k)) ^ ((x) >> (32 - (k))))
static uint32_t lookup3(const unsigned char *k, size_t length) {
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)length;
    while (length > 12) {
        a += (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
        b += (uint32_t)k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
        c += (uint32_t)k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
        a -= c, a ^= ROT32(c, 4), c += b;
        b -= a, b ^= ROT32(a, 6), a += c;
        c -= b, c ^= ROT32(b, 8), b += a;
        a -= c, a ^= ROT32(c, 16), c += b;
        b -= a, b ^= ROT32(a, 19), a += c;
        c -= b, c ^= ROT32(b, 4), b += a;
        length -= 12;
        k += 12;
    }
    if (length == 0) return c;
    uint32_t *w[3] = {&a, &b, &c};
    for (size_t i = 0; i < length; i++) *w[i / 4] += (uint32_t)k[i] << (8 * (i % 4));
    c ^= b, c -= ROT32(b, 14);
    a ^= c, a -= ROT32(c, 11);
    b ^= a, b -= ROT32(a, 25);
    c ^= b, c -= ROT32(b, 16);
    a ^= c, a -= ROT32(c, 4);
    b ^= a, b -= ROT32(a, 14);
    c ^= b, c -= ROT32(b, 24);
    return c;
}

/* Reads up to n bytes at off; returns the count read (short only at the end of the file) or -1 with errno. */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static const char *file_kind(mode_t m);

/* The header is trusted only once its own checksum matches; then the length, then the digest of the rest. */
static br_status ub_verify(int fd, const char *path, const unsigned char *ub, int64_t size) {
    br_status st = BR_OK;
    unsigned char *buf = NULL;
    XXH3_state_t *xs = NULL;
    if (get_le(ub + UB_OFF_HDIGEST, 8) != ub_header_digest(ub))
        return br_fail(BR_EFORMAT, "%s: bitroll header damaged (its checksum does not match its first %d bytes)", path,
                       H5LOG_HEADER_SIZE);
    uint32_t ver = (uint32_t)get_le(ub + UB_OFF_VERSION, 4), hsize = (uint32_t)get_le(ub + UB_OFF_SIZE, 4);
    if (ver != UB_VERSION || hsize != H5LOG_HEADER_SIZE)
        return br_fail(BR_EFORMAT, "%s: bitroll header version %u of %u bytes is unknown (this build reads version %u of %d bytes)",
                       path, ver, hsize, UB_VERSION, H5LOG_HEADER_SIZE);
    char algo[17] = {0};
    memcpy(algo, ub + UB_OFF_ALGO, 16);
    if (strcmp(algo, UB_ALGO) != 0)
        return br_fail(BR_EFORMAT, "%s: bitroll header names digest '%.16s', this build checks '%s'", path, algo, UB_ALGO);
    uint64_t want = get_le(ub + UB_OFF_LENGTH, 8);
    if ((uint64_t)size < want)
        return br_fail(BR_EFORMAT, "%s: truncated: %lld of %llu bytes", path, (long long)size, (unsigned long long)want);
    if ((uint64_t)size > want)
        return br_fail(BR_EFORMAT, "%s: %lld bytes, but its header records %llu (bytes appended after the end)", path,
                       (long long)size, (unsigned long long)want);
    buf = malloc(IO_PIECE);
    xs = XXH3_createState();
    if (!buf || !xs) {
        st = br_fail(BR_ENOMEM, "%s: cannot allocate %zu bytes to check the file", path, IO_PIECE);
        goto cleanup;
    }
    if (XXH3_128bits_reset(xs) != XXH_OK) {
        st = br_fail(BR_ERUNTIME, "%s: xxh3 reset failed", path);
        goto cleanup;
    }
    for (int64_t off = H5LOG_HEADER_SIZE; off < size;) {
        size_t n = (uint64_t)(size - off) < IO_PIECE ? (size_t)(size - off) : IO_PIECE;
        ssize_t k = pread_full(fd, buf, n, (off_t)off);
        if (k < 0) {
            st = br_fail(BR_EIO, "%s: read failed at byte %lld: %s", path, (long long)off, strerror(errno));
            goto cleanup;
        }
        if ((size_t)k < n) { /* shrank while we read it */
            st = br_fail(BR_EFORMAT, "%s: truncated: %lld of %llu bytes", path, (long long)(off + k),
                         (unsigned long long)want);
            goto cleanup;
        }
        if (XXH3_128bits_update(xs, buf, n) != XXH_OK) {
            st = br_fail(BR_ERUNTIME, "%s: xxh3 update failed", path);
            goto cleanup;
        }
        off += (int64_t)n;
    }
    XXH128_hash_t h = XXH3_128bits_digest(xs);
    uint64_t lo = get_le(ub + UB_OFF_DIGEST, 8), hi = get_le(ub + UB_OFF_DIGEST + 8, 8);
    if (h.low64 != lo || h.high64 != hi)
        st = br_fail(BR_EFORMAT, "%s: checksum mismatch: the file was damaged or changed after bitroll wrote it "
                                 "(xxh3-128 of bytes %d..%lld is %016llx%016llx, its header records %016llx%016llx)",
                     path, H5LOG_HEADER_SIZE, (long long)size, (unsigned long long)h.high64,
                     (unsigned long long)h.low64, (unsigned long long)hi, (unsigned long long)lo);
cleanup:
    if (xs) (void)XXH3_freeState(xs);
    free(buf);
    return st;
}

br_status h5log_check_file(const char *path, int *has_header, int64_t *size) {
    br_status st = BR_OK;
    unsigned char ub[H5LOG_HEADER_SIZE];
    struct stat sb;
    if (has_header) *has_header = 0;
    if (size) *size = 0;
    if (!path) return br_fail(BR_EINVAL, "h5log_check_file: NULL path");
    /* O_NONBLOCK: a FIFO is refused below instead of waiting for a writer */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = br_fail(BR_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = br_fail(BR_EFORMAT, "%s: is %s, expected a bitroll HDF5 file", path, file_kind(sb.st_mode));
        goto cleanup;
    }
    ssize_t n = pread_full(fd, ub, sizeof ub, 0);
    if (n < 0) {
        st = br_fail(BR_EIO, "%s: cannot read: %s", path, strerror(errno));
        goto cleanup;
    }
    if (n >= 8 && memcmp(ub, ub_magic, 8) == 0) {
        if (n < H5LOG_HEADER_SIZE) {
            st = br_fail(BR_EFORMAT, "%s: truncated: %lld bytes, shorter than the %d-byte bitroll header", path,
                         (long long)n, H5LOG_HEADER_SIZE);
            goto cleanup;
        }
        if ((st = ub_verify(fd, path, ub, (int64_t)sb.st_size)) != BR_OK) goto cleanup;
        if (has_header) *has_header = 1;
    } else if (n < 8 || memcmp(ub, h5_signature, 8) != 0) {
        /* A version 2 file has its HDF5 superblock right after the header: then the header's magic is damaged. */
        unsigned char sig[8];
        if (pread_full(fd, sig, sizeof sig, H5LOG_HEADER_SIZE) == (ssize_t)sizeof sig &&
            memcmp(sig, h5_signature, 8) == 0)
            st = br_fail(BR_EFORMAT, "%s: bitroll header damaged (bad magic; expected \"BITROLL\" at byte 0)", path);
        else
            st = br_fail(BR_EFORMAT, "%s: not an HDF5 file", path);
        goto cleanup;
    }
    if (size) *size = (int64_t)sb.st_size;
cleanup:
    if (close(fd) != 0 && st == BR_OK) st = br_fail(BR_EIO, "%s: cannot close: %s", path, strerror(errno));
    return st;
}

/* ---------------------------------------------------------------- writing */

/* One scalar attribute: stored as file_type, written from *buf of mem_type. */
static br_status write_scalar_attr(hid_t obj, const char *file, const char *objname, const char *name, hid_t file_type,
                                   hid_t mem_type, const void *buf) {
    br_status st = BR_OK;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    space = H5Screate(H5S_SCALAR);
    if (space < 0) {
        st = br_fail(BR_EIO, "%s: attribute %s/%s: cannot make a dataspace: %s", file, objname, name, h5_detail());
        goto cleanup;
    }
    attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        st = br_fail(BR_EIO, "%s: attribute %s/%s: cannot create: %s", file, objname, name, h5_detail());
        goto cleanup;
    }
    if (H5Awrite(attr, mem_type, buf) < 0) {
        st = br_fail(BR_EIO, "%s: attribute %s/%s: cannot write: %s", file, objname, name, h5_detail());
        goto cleanup;
    }
    st = h5_close(&attr, H5Aclose, file, name);
cleanup:
    h5_drop(&attr, H5Aclose);
    h5_drop(&space, H5Sclose);
    return st;
}

static br_status write_str_attr(hid_t obj, const char *file, const char *objname, const char *name, const char *value) {
    const char *v = value ? value : "";
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        br_status st = br_fail(BR_EIO, "%s: attribute %s/%s: cannot make a string type: %s", file, objname, name,
                               h5_detail());
        h5_drop(&type, H5Tclose);
        return st;
    }
    br_status st = write_scalar_attr(obj, file, objname, name, type, type, &v);
    h5_drop(&type, H5Tclose);
    return st;
}

static br_status write_int_attr(hid_t obj, const char *file, const char *objname, const char *name, int value) {
    return write_scalar_attr(obj, file, objname, name, H5T_STD_I32LE, H5T_NATIVE_INT, &value);
}

static br_status write_i64_attr(hid_t obj, const char *file, const char *objname, const char *name, int64_t value) {
    return write_scalar_attr(obj, file, objname, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

/* Creation properties for a 1-D dataset of `count` elements of `esize` bytes: chunked when non-empty,
 * contiguous (zero bytes) when empty, since a chunk may not exceed a fixed extent of 0.
 * Object times are off so that identical runs write identical bytes. */
static hid_t make_dcpl(hsize_t count, size_t esize) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return H5I_INVALID_HID;
    if (H5Pset_obj_track_times(dcpl, 0) < 0) goto fail;
    if (count > 0) {
        hsize_t chunk = CHUNK_BYTES / esize;
        if (chunk > count) chunk = count;
        if (H5Pset_chunk(dcpl, 1, &chunk) < 0) goto fail;
    }
    return dcpl;
fail:
    (void)H5Pclose(dcpl);
    return H5I_INVALID_HID;
}

static void hdf5_version_string(char *buf, size_t cap) {
    unsigned maj = 0, min = 0, rel = 0;
    if (H5get_libversion(&maj, &min, &rel) < 0) {
        snprintf(buf, cap, "unknown");
        return;
    }
    snprintf(buf, cap, "%u.%u.%u", maj, min, rel);
}

/* ---------------------------------------------------------------- the file driver of the writers */

/* A file being written goes straight to path.tmp.<pid> through this small HDF5 file driver ("bitroll-sink"), so the
 * writer's memory does not grow with the file. Why not HDF5's sec2 driver: when a write fails inside it (disk full:
 * ENOSPC, EFBIG), libhdf5 1.10.8 cannot close the file (H5Fclose fails, the id stays registered) and then crashes at
 * process exit (H5F__close_cb from H5_term_library). This driver never reports a failed write to HDF5: it keeps the
 * first errno, drops every later write, and the writer checks it after each piece and after H5Fclose, which thus
 * always runs to its end; the temporary is then removed. Reads beyond what is on disk return zeros, as sec2's do.
 * Its feature flags are those of the core driver the writers used before (metadata and small-data aggregation,
 * metadata accumulation, sieving), so HDF5 places every object at the same address: the files are the same bytes.
 * Offsets are absolute (HDF5 adds the 512-byte user block); bytes [0, 512) are written last, by h5w_commit. */
typedef struct {
    int fd;         /* the temporary file (owned by the writer) */
    int err;        /* first errno of a failed write or truncate; 0: none */
    int64_t err_at; /* where it happened */
    haddr_t eoa;    /* HDF5's end of allocated space (absolute) */
    haddr_t keep;   /* the file is never truncated below this (h5w_commit) */
} sink_state;

typedef struct {
    H5FD_t pub; /* first: HDF5 sees this */
    sink_state *st;
    haddr_t eoa, eof;
} sink_file;

static H5FD_t *sink_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
    (void)name;
    (void)flags;
    (void)maxaddr;
    sink_state *const *info = H5Pget_driver_info(fapl);
    if (!info || !*info) return NULL;
    sink_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->st = *info;
    struct stat sb;
    f->eof = fstat(f->st->fd, &sb) == 0 ? (haddr_t)sb.st_size : 0;
    return &f->pub;
}

static herr_t sink_close(H5FD_t *file) {
    free(file);
    return 0;
}

static int sink_cmp(const H5FD_t *a, const H5FD_t *b) {
    const int fa = ((const sink_file *)a)->st->fd, fb = ((const sink_file *)b)->st->fd;
    return fa < fb ? -1 : fa > fb;
}

static herr_t sink_query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    if (flags)
        *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
                 H5FD_FEAT_AGGREGATE_SMALLDATA;
    return 0;
}

static haddr_t sink_get_eoa(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const sink_file *)file)->eoa;
}

static herr_t sink_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) {
    (void)type;
    ((sink_file *)file)->eoa = addr;
    ((sink_file *)file)->st->eoa = addr;
    return 0;
}

static haddr_t sink_get_eof(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const sink_file *)file)->eof;
}

static herr_t sink_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
    (void)fapl;
    *handle = &((sink_file *)file)->st->fd;
    return 0;
}

static void sink_fail(sink_file *f, int err, haddr_t at) {
    if (f->st->err) return;
    f->st->err = err ? err : EIO;
    f->st->err_at = (int64_t)at;
}

static herr_t sink_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf) {
    (void)type;
    (void)dxpl;
    sink_file *f = (sink_file *)file;
    unsigned char *p = buf;
    while (size > 0) {
        ssize_t k = pread(f->st->fd, p, size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size, (off_t)addr);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1; /* HDF5 reports a failed read as an error: nothing is left half-done by it */
        if (k == 0) {         /* beyond the end of what is on disk */
            memset(p, 0, size);
            break;
        }
        p += k;
        addr += (haddr_t)k;
        size -= (size_t)k;
    }
    return 0;
}

static herr_t sink_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf) {
    (void)type;
    (void)dxpl;
    sink_file *f = (sink_file *)file;
    const haddr_t end = addr + size;
    const unsigned char *p = buf;
    while (!f->st->err && size > 0) {
        ssize_t k = pwrite(f->st->fd, p, size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size, (off_t)addr);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            sink_fail(f, k < 0 ? errno : EIO, addr);
            break;
        }
        p += k;
        addr += (haddr_t)k;
        size -= (size_t)k;
    }
    if (end > f->eof) f->eof = end;
    return 0; /* see above: the failure is the writer's to report */
}

static herr_t sink_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl;
    (void)closing;
    sink_file *f = (sink_file *)file;
    const haddr_t len = f->eoa > f->st->keep ? f->eoa : f->st->keep;
    if (len == f->eof) return 0;
    if (!f->st->err && ftruncate(f->st->fd, (off_t)len) != 0) sink_fail(f, errno, len);
    f->eof = len;
    return 0;
}

static const H5FD_class_t sink_class = {
    .name = "bitroll-sink",
    .maxaddr = (haddr_t)INT64_MAX,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof(sink_state *),
    .open = sink_open,
    .close = sink_close,
    .cmp = sink_cmp,
    .query = sink_query,
    .get_eoa = sink_get_eoa,
    .set_eoa = sink_set_eoa,
    .get_eof = sink_get_eof,
    .get_handle = sink_get_handle,
    .read = sink_read,
    .write = sink_write,
    .truncate = sink_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

/* Registered once per process (the id lives until the library shuts down). */
static hid_t sink_driver(void) {
    static hid_t id = H5I_INVALID_HID;
    if (id < 0 || H5Iis_valid(id) <= 0) id = H5FDregister(&sink_class);
    return id;
}

/* ---------------------------------------------------------------- output safety */

void (*h5log_test_after_tmp)(const char *tmp) = NULL;

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

br_status h5log_check_out(const char *path) {
    if (!path || !path[0]) return br_fail(BR_EINVAL, "the output path is empty: expected a file name");
    const size_t n = strlen(path);
    if (path[n - 1] == '/') return br_fail(BR_EINVAL, "%s: names a directory, expected a file name", path);
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return BR_OK;
        return br_fail(BR_EINVAL, "%s: cannot be written: %s", path, strerror(errno));
    }
    /* lstat: a symbolic link is refused too (the rename would replace the link, not what it points to) */
    if (!S_ISREG(sb.st_mode))
        return br_fail(BR_EINVAL, "%s: exists and is %s: bitroll replaces only regular files", path,
                       file_kind(sb.st_mode));
    return BR_OK;
}

/* The directory of path into dir ("." or "/" where path names none); returns path's last component, NULL when dir
 * is too small. */
static const char *parent_dir(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    const size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n + 2 > cap) return NULL;
    if (!slash) strcpy(dir, ".");
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return slash ? slash + 1 : path;
}

/* Temporary files path.tmp.<pid> left by writers that died without cleaning up (SIGKILL, a crash, a machine that went
 * down: no handler runs) are removed before the next write of `path`, so a killed run followed by a rerun or --resume
 * leaves nothing behind. Only those whose process no longer exists on this host (kill(pid, 0): ESRCH) go: a file of a
 * live process, or of a process of that number on another host sharing the directory, is left alone. */
static void remove_stale_tmps(const char *path) {
    char dir[4096], prefix[4096], full[8192];
    const char *base = parent_dir(path, dir, sizeof dir);
    if (!base || strlen(base) + 6 >= sizeof prefix) return;
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    const size_t plen = strlen(prefix);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        const char *num = e->d_name + plen;
        char *end = NULL;
        errno = 0;
        const long pid = strtol(num, &end, 10);
        if (*num < '0' || *num > '9' || *end || errno || pid <= 0 || (pid_t)pid != pid || (pid_t)pid == getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlink(full) == 0)
            fprintf(stderr, "bitroll: removed %s, the temporary file of a run (process %ld) that did not finish\n", full,
                    pid);
    }
    closedir(d);
}

/* The temporary file of the write in progress is removed by a SIGTERM, SIGINT or SIGHUP that would end the process
 * (only signals left at their default action are taken over; the handler then re-raises with that default). One
 * write at a time is guarded; the handler uses only async-signal-safe calls (unlink, sigaction, raise). */
static const int g_guard_sigs[3] = {SIGTERM, SIGINT, SIGHUP};
static char g_guard_path[4096];
static volatile sig_atomic_t g_guard_armed;
static int g_guard_taken[3];

static void guard_handler(int sig) {
    const int saved = errno;
    if (g_guard_armed) (void)unlink(g_guard_path);
    g_guard_armed = 0;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    (void)sigaction(sig, &dfl, NULL);
    (void)raise(sig); /* delivered, with the default action, when this handler returns */
    errno = saved;
}

/* Returns 1 if the guard was armed for tmp (pass that to guard_disarm). */
static int guard_arm(const char *tmp) {
    if (g_guard_armed || strlen(tmp) >= sizeof g_guard_path) return 0;
    memcpy(g_guard_path, tmp, strlen(tmp) + 1);
    g_guard_armed = 1;
    for (int i = 0; i < 3; i++) {
        struct sigaction old, sa;
        g_guard_taken[i] = 0;
        if (sigaction(g_guard_sigs[i], NULL, &old) != 0) continue;
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue; /* someone else's: left alone */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = guard_handler;
        sigemptyset(&sa.sa_mask);
        for (int k = 0; k < 3; k++) sigaddset(&sa.sa_mask, g_guard_sigs[k]);
        g_guard_taken[i] = sigaction(g_guard_sigs[i], &sa, NULL) == 0;
    }
    return 1;
}

static void guard_disarm(int armed) {
    if (!armed) return;
    g_guard_armed = 0;
    for (int i = 0; i < 3; i++) {
        if (!g_guard_taken[i]) continue;
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        (void)sigaction(g_guard_sigs[i], &dfl, NULL);
        g_guard_taken[i] = 0;
    }
}

typedef struct {
    const char *path;
    char *tmp;
    int fd;          /* the temporary file, opened first so a bad directory fails before any work */
    hid_t file;      /* the HDF5 file, written to fd through the sink driver */
    sink_state sink; /* the driver's record of a failed write */
    int created;     /* tmp exists on disk and is ours to remove */
    int guarded;     /* the signal guard removes tmp if the process is terminated */
} h5w;

/* A failed write of the sink (disk full): BR_ERUNTIME naming the file, errno and offset. */
static br_status h5w_sink_status(const h5w *w) {
    if (!w->sink.err) return BR_OK;
    return br_fail(BR_ERUNTIME, "%s: writing %s failed at byte %lld: %s", w->path, w->tmp, (long long)w->sink.err_at,
                   strerror(w->sink.err));
}

/* libhdf5's metadata cache starts at 2 MiB and may grow to 32 MiB; the global heap of the text datasets (every
 * string, in collections of up to 64 KiB) passes through it, and at 2 MiB it held 2 MiB of collections and as much
 * again in their serialized images (bench/rss_scaling.sh: 6-7 MB more at 50,000 samples than at 500). Kept at
 * 128 KiB, never increased: two or three collections and the objects being written. A smaller cache evicts
 * collections sooner, which changes where later ones go (an evicted collection's free space is not reused), so this
 * size is part of the file layout: the bytes do not depend on the piece size (write_field), but do on MDC_BYTES. */
#ifndef MDC_BYTES
#define MDC_BYTES ((size_t)128 << 10)
#endif
static herr_t mdc_bounded(hid_t fapl) {
    H5AC_cache_config_t c;
    memset(&c, 0, sizeof c);
    c.version = H5AC__CURR_CACHE_CONFIG_VERSION;
    if (H5Pget_mdc_config(fapl, &c) < 0) return -1;
    c.incr_mode = H5C_incr__off;
    c.flash_incr_mode = H5C_flash_incr__off;
    c.max_size = c.initial_size = MDC_BYTES;
    if (c.min_size > MDC_BYTES) c.min_size = MDC_BYTES;
    c.set_initial_size = 1;
    return H5Pset_mdc_config(fapl, &c);
}

static br_status h5w_begin(h5w *w, const char *path, const char *format, const h5log_provenance *p) {
    br_status st = BR_OK;
    hid_t fcpl = H5I_INVALID_HID, fapl = H5I_INVALID_HID;
    char ver[512];
    w->path = path;
    w->fd = -1;
    w->file = H5I_INVALID_HID;
    w->sink = (sink_state){.fd = -1};
    w->created = 0;
    w->guarded = 0;
    if ((st = h5log_check_out(path)) != BR_OK) return st;
    size_t cap = strlen(path) + 32;
    w->tmp = malloc(cap);
    if (!w->tmp) return br_fail(BR_ENOMEM, "%s: cannot allocate the temporary name", path);
    snprintf(w->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    remove_stale_tmps(path);
    w->guarded = guard_arm(w->tmp); /* before the file exists, so no moment leaves it behind */
    w->fd = open(w->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w->fd < 0) return br_fail(BR_EIO, "%s: cannot create temporary file %s: %s", path, w->tmp, strerror(errno));
    w->created = 1;
    w->sink.fd = w->fd;
    if (h5log_test_after_tmp) h5log_test_after_tmp(w->tmp);

    const sink_state *sp = &w->sink;
    const hid_t driver = sink_driver();
    fcpl = H5Pcreate(H5P_FILE_CREATE);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* The user block holds the integrity header (h5w_commit). The 1.10 object formats carry HDF5's own metadata
     * checksums (superblock v3, object header v2, B-tree v2); bounded by 1.10 so that HDF5 1.10 reads them. */
    if (driver < 0 || fcpl < 0 || fapl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
        H5Pset_userblock(fcpl, H5LOG_HEADER_SIZE) < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
        H5Pset_driver(fapl, driver, &sp) < 0 || mdc_bounded(fapl) < 0) {
        st = br_fail(BR_EIO, "%s: cannot set up HDF5 file properties: %s", path, h5_detail());
        goto cleanup;
    }
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (w->file < 0) {
        st = br_fail(BR_EIO, "%s: cannot create the HDF5 file %s: %s", path, w->tmp, h5_detail());
        goto cleanup;
    }
    if ((st = write_str_attr(w->file, w->path, "/", "format", format)) != BR_OK) goto cleanup;
    if ((st = write_int_attr(w->file, w->path, "/", "format_version", H5LOG_FORMAT_VERSION)) != BR_OK) goto cleanup;
    const char *names[] = {"engine_version", "git_rev", "compiler", "model_dir", "model_fingerprint",
                           "kernel_mode", "device_names", "config_json", "lib_versions"};
    const char *values[] = {p->engine_version, p->git_rev, p->compiler, p->model_dir, p->model_fingerprint,
                            p->kernel_mode, p->device_names, p->config_json, p->lib_versions};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((st = write_str_attr(w->file, w->path, "/", names[i], values[i])) != BR_OK) goto cleanup;
    if ((st = write_int_attr(w->file, w->path, "/", "world_size", p->world_size)) != BR_OK) goto cleanup;
    hdf5_version_string(ver, sizeof ver);
    if ((st = write_str_attr(w->file, w->path, "/", "hdf5_version", ver)) != BR_OK) goto cleanup;
    if ((st = write_str_attr(w->file, w->path, "/", "mpi_version", p->mpi_version)) != BR_OK) goto cleanup;
    if ((st = write_i64_attr(w->file, w->path, "/", "weight_version", p->weight_version)) != BR_OK) goto cleanup;
    st = h5w_sink_status(w);
cleanup:
    h5_drop(&fapl, H5Pclose);
    h5_drop(&fcpl, H5Pclose);
    return st;
}

static hid_t h5w_group(h5w *w, const char *name, br_status *st) {
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE), g = H5I_INVALID_HID;
    if (gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0) {
        *st = br_fail(BR_EIO, "%s: group /%s: cannot set up: %s", w->path, name, h5_detail());
    } else {
        g = H5Gcreate2(w->file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (g < 0) *st = br_fail(BR_EIO, "%s: group /%s: cannot create: %s", w->path, name, h5_detail());
    }
    h5_drop(&gcpl, H5Pclose);
    return g;
}

/* After H5Fclose: sets the superblock's end-of-file address back to `flushed` (absolute) when the close lowered it,
 * recomputing its checksum, and makes the file that long. Superblock v2/v3 (what the 1.10 bounds write): signature
 * (8), version, size of addresses (8), size of lengths, flags, then base, extension, end-of-file and root addresses,
 * then the lookup3 checksum of the 44 bytes before it. */
static br_status superblock_keep_eoa(h5w *w, haddr_t flushed) {
    unsigned char sb[48];
    if (pread_full(w->fd, sb, sizeof sb, H5LOG_HEADER_SIZE) != (ssize_t)sizeof sb || memcmp(sb, h5_signature, 8) != 0 ||
        sb[8] < 2 || sb[8] > 3 || sb[9] != 8)
        return br_fail(BR_ERUNTIME, "%s: %s does not start with an HDF5 superblock of version 2 or 3 after the header",
                       w->path, w->tmp);
    if (get_le(sb + 28, 8) < (uint64_t)flushed) { /* stored as the file's length, user block included */
        put_le(sb + 28, (uint64_t)flushed, 8);
        put_le(sb + 44, lookup3(sb, 44), 4);
        if (pwrite(w->fd, sb, sizeof sb, H5LOG_HEADER_SIZE) != (ssize_t)sizeof sb)
            return br_fail(BR_ERUNTIME, "%s: writing the superblock of %s failed: %s", w->path, w->tmp, strerror(errno));
    }
    struct stat st;
    if (fstat(w->fd, &st) != 0 || ((uint64_t)st.st_size < flushed && ftruncate(w->fd, (off_t)flushed) != 0))
        return br_fail(BR_ERUNTIME, "%s: cannot extend %s to %llu bytes: %s", w->path, w->tmp,
                       (unsigned long long)flushed, strerror(errno));
    return BR_OK;
}

/* complete=1 goes last: a reader that finds it knows every dataset before it was written. Then the file is closed
 * (HDF5 writes the superblock with its write-access flags cleared), the xxh3-128 of bytes [512, end) is computed by
 * reading the file back in IO_PIECE pieces, the header is written in front, fsync, rename. */
static br_status h5w_commit(h5w *w) {
    unsigned char *buf = NULL, ub[H5LOG_HEADER_SIZE];
    XXH3_state_t *xs = NULL;
    br_status st = write_int_attr(w->file, w->path, "/", "complete", 1);
    if (st != BR_OK) goto cleanup;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        st = br_fail(BR_EIO, "%s: cannot flush the HDF5 file: %s", w->path, h5_detail());
        goto cleanup;
    }
    /* Files keep the length they have after this flush: H5Fclose would then give back the free space at the end (the
     * last ~1 KiB) and write a shorter end-of-file address into the superblock. The writers of format version 2 have
     * always written the flushed file (until 2026-12 as an in-memory image), so the same rows give the same bytes. */
    const haddr_t flushed = w->sink.eoa;
    w->sink.keep = flushed;
    /* the sink never fails HDF5's writes, so this close runs to its end whatever the disk did */
    if ((st = h5_close(&w->file, H5Fclose, w->path, "the HDF5 file")) != BR_OK) goto cleanup;
    if ((st = h5w_sink_status(w)) != BR_OK) goto cleanup;
    if ((st = superblock_keep_eoa(w, flushed)) != BR_OK) goto cleanup;
    struct stat sb;
    if (fstat(w->fd, &sb) != 0) {
        st = br_fail(BR_ERUNTIME, "%s: cannot stat %s: %s", w->path, w->tmp, strerror(errno));
        goto cleanup;
    }
    const int64_t size = (int64_t)sb.st_size;
    unsigned char sig[8];
    if (size <= H5LOG_HEADER_SIZE || pread_full(w->fd, sig, sizeof sig, H5LOG_HEADER_SIZE) != (ssize_t)sizeof sig ||
        memcmp(sig, h5_signature, sizeof sig) != 0) {
        st = br_fail(BR_ERUNTIME, "%s: %s (%lld bytes) does not hold an HDF5 superblock after the header", w->path,
                     w->tmp, (long long)size);
        goto cleanup;
    }
    buf = malloc(IO_PIECE);
    xs = XXH3_createState();
    if (!buf || !xs || XXH3_128bits_reset(xs) != XXH_OK) {
        st = br_fail(BR_ENOMEM, "%s: cannot set up the file digest", w->path);
        goto cleanup;
    }
    for (int64_t off = H5LOG_HEADER_SIZE; off < size;) {
        const size_t n = (uint64_t)(size - off) < IO_PIECE ? (size_t)(size - off) : IO_PIECE;
        if (pread_full(w->fd, buf, n, (off_t)off) != (ssize_t)n) {
            st = br_fail(BR_ERUNTIME, "%s: reading %s back at byte %lld failed: %s", w->path, w->tmp, (long long)off,
                         strerror(errno));
            goto cleanup;
        }
        if (XXH3_128bits_update(xs, buf, n) != XXH_OK) {
            st = br_fail(BR_ERUNTIME, "%s: xxh3 update failed", w->path);
            goto cleanup;
        }
        off += (int64_t)n;
    }
    ub_stamp(ub, (uint64_t)size, XXH3_128bits_digest(xs));
    for (size_t done = 0; done < sizeof ub;) {
        ssize_t k = pwrite(w->fd, ub + done, sizeof ub - done, (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            st = br_fail(BR_ERUNTIME, "%s: writing the header of %s failed: %s", w->path, w->tmp,
                         k < 0 ? strerror(errno) : "no progress");
            goto cleanup;
        }
        done += (size_t)k;
    }
    if (fsync(w->fd) != 0) {
        st = br_fail(BR_ERUNTIME, "%s: fsync of %s failed: %s", w->path, w->tmp, strerror(errno));
        goto cleanup;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        st = br_fail(BR_ERUNTIME, "%s: close of %s failed: %s", w->path, w->tmp, strerror(errno));
        goto cleanup;
    }
    /* checked again just before the rename: whatever appeared at path meanwhile, only a regular file is replaced */
    if ((st = h5log_check_out(w->path)) != BR_OK) goto cleanup;
    if (rename(w->tmp, w->path) != 0) {
        st = br_fail(BR_EIO, "%s: cannot rename %s into place: %s", w->path, w->tmp, strerror(errno));
        goto cleanup;
    }
    w->created = 0;
    guard_disarm(w->guarded);
    w->guarded = 0;
    /* Make the rename durable too. Best effort: the file is already in place and complete, and some
     * file systems refuse fsync on a directory, so failing here would misreport a good write. */
    char dir[4096];
    if (parent_dir(w->path, dir, sizeof dir)) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            (void)close(dfd);
        }
    }
cleanup:
    if (xs) (void)XXH3_freeState(xs);
    free(buf);
    return st;
}

/* Ends a write: after a failure, closes the HDF5 file (the sink makes that close succeed: nothing of it stays
 * registered with the library) and removes the temporary. */
static void h5w_end(h5w *w) {
    h5_drop(&w->file, H5Fclose);
    if (w->fd >= 0) (void)close(w->fd); /* already failing; the first error is the one reported */
    w->fd = -1;
    if (w->created && w->tmp) (void)unlink(w->tmp);
    w->created = 0;
    guard_disarm(w->guarded);
    w->guarded = 0;
    free(w->tmp);
    w->tmp = NULL;
}

static br_status check_rollouts(const char *path, const h5log_rollouts *r) {
    int64_t n = r->n;
    if (n < 0) return br_fail(BR_EINVAL, "%s: cannot write: n = %lld < 0", path, (long long)n);
    if (n > 0) {
        const void *per_row[] = {r->sample_id, r->prompt_index, r->sample_index, r->prompt_offsets, r->completion_offsets,
                                 r->finish_reason, r->temperature, r->top_p, r->top_k, r->seed};
        const char *names[] = {"sample_id", "prompt_index", "sample_index", "prompt_offsets", "completion_offsets",
                               "finish_reason", "temperature", "top_p", "top_k", "seed"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (!per_row[i])
                return br_fail(BR_EINVAL, "%s: cannot write: %s is NULL with n = %lld", path, names[i], (long long)n);
    }
    br_status st = BR_OK;
    if (r->prompt_offsets && (st = check_offsets_in(path, "prompt_offsets", r->prompt_offsets, n)) != BR_OK) return st;
    if (r->completion_offsets && (st = check_offsets_in(path, "completion_offsets", r->completion_offsets, n)) != BR_OK)
        return st;
    int64_t P = r->prompt_offsets ? r->prompt_offsets[n] : 0, T = r->completion_offsets ? r->completion_offsets[n] : 0;
    if (P > 0 && !r->prompt_tokens)
        return br_fail(BR_EINVAL, "%s: cannot write: prompt_tokens is NULL with %lld prompt tokens", path, (long long)P);
    if (T > 0 && (!r->completion_tokens || !r->logprobs || !r->logits_digest))
        return br_fail(BR_EINVAL, "%s: cannot write: completion_tokens, logprobs and logits_digest need %lld elements, one is NULL",
                       path, (long long)T);
    int64_t i = n > 0 ? ids_unsorted(r->sample_id, n) : -1;
    if (i >= 0)
        return br_fail(BR_EINVAL, "%s: cannot write: sample_id[%lld] = %lld follows %lld (rows must be sorted by increasing sample_id)",
                       path, (long long)i, (long long)r->sample_id[i], (long long)r->sample_id[i - 1]);
    i = n > 0 ? finish_bad(r->finish_reason, n) : -1;
    if (i >= 0)
        return br_fail(BR_EINVAL, "%s: cannot write: finish_reason[%lld] = %d is not one of %s", path, (long long)i,
                       (int)r->finish_reason[i], BR_FINISH_ENUM);
    char **texts[] = {r->prompt_text, r->completion_text, r->full_text};
    const char *tnames[] = {"prompt_text", "completion_text", "full_text"};
    for (int t = 0; t < 3; t++)
        for (int64_t j = 0; texts[t] && j < n; j++)
            if (!texts[t][j]) return br_fail(BR_EINVAL, "%s: cannot write: %s[%lld] is NULL", path, tnames[t], (long long)j);
    return BR_OK;
}

/* ---------------------------------------------------------------- the datasets, piece by piece */

/* Each dataset is created whole (its size is known) and filled by H5Dwrite calls of at most piece_bytes, so the
 * writer holds one piece, never the set. Its chunks are CHUNK_BYTES in the file and it is written through a chunk
 * cache of exactly one chunk, so the writer holds one chunk too (until 2026-12: 1 MiB chunks and HDF5's 1 MiB cache,
 * which a text dataset's 2 MiB chunks exceeded). The bytes do not depend on the piece size, because every allocation
 * in the file happens at a point the pieces do not move:
 * - numeric datasets: pieces in increasing order; a chunk is allocated in the file when the next one is first
 *   written (the cache holds one) or at the dataset's close, however the writes were cut; the types need no
 *   conversion, so nothing else is allocated meanwhile.
 * - text datasets: a variable-length string is converted into a global-heap object (allocated in the file as its
 *   collection is made or extended) inside H5Dwrite, before the chunk is touched. So the dataset is written in strips
 *   of TEXT_STRIP strings, one chunk each, and the chunk is flushed (allocated) at the end of its strip, after every
 *   string of the strip and before any of the next. Within a strip the rows go in the order one H5Dwrite of the whole
 *   strip converts them (from the last string down: the file's element is larger than the memory one), what the
 *   one-call writer did before; each piece's order is arranged so that its strings too reach the heap in row order.
 * Checked: tests/cli/cli_write_pieces.sh (budgets of 1 to 1 MiB bytes), and by hand for 20,000 and 70,000 rows with
 * texts (rollouts and scores, budgets of 1,000 bytes to 1 MiB). */
#define TEXT_PIECE_DIV 256 /* a text piece is piece_bytes / this many strings */
#define VLEN_FILE_SIZE 16  /* a variable-length string's reference in a dataset: length, heap address, index */
#define TEXT_STRIP ((int64_t)(CHUNK_BYTES / VLEN_FILE_SIZE)) /* a text dataset's chunk: 4,096 strings */

typedef struct {
    const char *name;
    kind k;
    int text;
    const char *attr_name, *attr_value;
} field_desc;

static const field_desc g_fields[H5LOG_F_COUNT] = {
    [H5LOG_F_SAMPLE_ID] = {"sample_id", K_I64, 0, NULL, NULL},
    [H5LOG_F_PROMPT_INDEX] = {"prompt_index", K_I64, 0, NULL, NULL},
    [H5LOG_F_SAMPLE_INDEX] = {"sample_index", K_I32, 0, NULL, NULL},
    [H5LOG_F_PROMPT_OFFSETS] = {"prompt_offsets", K_I64, 0, NULL, NULL},
    [H5LOG_F_PROMPT_TOKENS] = {"prompt_tokens", K_I32, 0, NULL, NULL},
    [H5LOG_F_COMPLETION_OFFSETS] = {"completion_offsets", K_I64, 0, NULL, NULL},
    [H5LOG_F_COMPLETION_TOKENS] = {"completion_tokens", K_I32, 0, NULL, NULL},
    [H5LOG_F_LOGPROBS] = {"logprobs", K_F32, 0, NULL, NULL},
    [H5LOG_F_LOGITS_DIGEST] = {"logits_digest", K_U64, 0, NULL, NULL},
    [H5LOG_F_FINISH_REASON] = {"finish_reason", K_I8, 0, "enum", BR_FINISH_ENUM},
    [H5LOG_F_TEMPERATURE] = {"temperature", K_F32, 0, NULL, NULL},
    [H5LOG_F_TOP_P] = {"top_p", K_F32, 0, NULL, NULL},
    [H5LOG_F_TOP_K] = {"top_k", K_I32, 0, NULL, NULL},
    [H5LOG_F_SEED] = {"seed", K_U64, 0, NULL, NULL},
    [H5LOG_F_PROMPT_TEXT] = {"prompt_text", K_I8, 1, NULL, NULL},
    [H5LOG_F_COMPLETION_TEXT] = {"completion_text", K_I8, 1, NULL, NULL},
    [H5LOG_F_FULL_TEXT] = {"full_text", K_I8, 1, NULL, NULL},
};

/* What a piece must satisfy beyond its type (the checks check_rollouts makes on whole arrays): sample ids strictly
 * increase, offsets start at 0, never decrease and end at `last`, finish reasons are known, strings are not NULL. */
typedef struct {
    int64_t prev;   /* last sample id / offset seen */
    int64_t last;   /* offsets: the final value (P or T) */
} piece_check;

static br_status check_piece(const char *path, h5log_field f, const void *buf, int64_t start, int64_t m,
                             int64_t count, piece_check *c) { /* c may be NULL for a text dataset */
    const char *name = g_fields[f].name;
    if (f == H5LOG_F_SAMPLE_ID) {
        const int64_t *id = buf;
        for (int64_t i = 0; i < m; i++) {
            if (start + i > 0 && id[i] <= c->prev)
                return br_fail(BR_EINVAL, "%s: cannot write: sample_id[%lld] = %lld follows %lld (rows must be sorted by "
                                          "increasing sample_id)",
                               path, (long long)(start + i), (long long)id[i], (long long)c->prev);
            c->prev = id[i];
        }
    } else if (f == H5LOG_F_PROMPT_OFFSETS || f == H5LOG_F_COMPLETION_OFFSETS) {
        const int64_t *off = buf;
        for (int64_t i = 0; i < m; i++) {
            const int64_t j = start + i;
            if (j == 0 && off[i] != 0)
                return br_fail(BR_EINVAL, "%s: cannot write: %s[0] = %lld, expected 0", path, name, (long long)off[i]);
            if (j > 0 && off[i] < c->prev)
                return br_fail(BR_EINVAL, "%s: cannot write: %s[%lld] = %lld < %s[%lld] = %lld (offsets must not "
                                          "decrease)",
                               path, name, (long long)j, (long long)off[i], name, (long long)(j - 1), (long long)c->prev);
            if (j == count - 1 && off[i] != c->last)
                return br_fail(BR_EINVAL, "%s: cannot write: %s[%lld] = %lld, expected the element count %lld", path,
                               name, (long long)j, (long long)off[i], (long long)c->last);
            c->prev = off[i];
        }
    } else if (f == H5LOG_F_FINISH_REASON) {
        int64_t i = finish_bad(buf, m);
        if (i >= 0)
            return br_fail(BR_EINVAL, "%s: cannot write: finish_reason[%lld] = %d is not one of %s", path,
                           (long long)(start + i), (int)((const int8_t *)buf)[i], BR_FINISH_ENUM);
    } else if (g_fields[f].text) {
        char *const *s = buf;
        for (int64_t i = 0; i < m; i++)
            if (!s[i]) return br_fail(BR_EINVAL, "%s: cannot write: %s[%lld] is NULL", path, name, (long long)(start + i));
    }
    return BR_OK;
}

/* The order in which one H5Dwrite of n variable-length strings converts them, so inserts them into the global heap
 * (H5T__conv_vlen, libhdf5 1.10: the file's element, 16 bytes, is larger than the memory one, 8, so it walks the
 * buffer in place from the end): while more than one element is "safe" (its destination does not overlap any source
 * not yet converted), the last `safe` elements forward, then the rest backwards. ord gets the n positions in that
 * order; returns the length of the leading forward blocks' part (the rest, at most 3 positions, is the backward
 * tail). */
static int64_t vlen_order(int64_t n, int64_t *ord) {
    int64_t k = 0, nel = n, fwd = 0;
    while (nel > 0) {
        const int64_t safe = nel - (nel * (int64_t)sizeof(char *) + VLEN_FILE_SIZE - 1) / VLEN_FILE_SIZE;
        if (safe < 2) {
            for (int64_t j = nel - 1; j >= 0; j--) ord[k++] = j;
            break;
        }
        for (int64_t j = nel - safe; j < nel; j++) ord[k++] = j;
        fwd += safe;
        nel -= safe;
    }
    return fwd;
}

/* One text piece: rows [start, start + m), filled in row order, written with one H5Dwrite whose element order is
 * arranged (a point selection in the file, the memory buffer permuted to match) so that its conversion, in
 * vlen_order(m), meets the rows in increasing order: the strings reach the heap in row order. */
static br_status write_text_piece(h5w *w, hid_t dset, hid_t type, hid_t space, const h5log_source *src, h5log_field f,
                                  int64_t start, int64_t m, char **rows, char **mem, hsize_t *pts, int64_t *ord,
                                  const char *dpath) {
    br_status st = BR_OK;
    hid_t mspace = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    for (int64_t i = 0; i < m; i++) rows[i] = NULL;
    if ((st = src->fill(src->ctx, f, start, m, rows)) != BR_OK) goto cleanup;
    if ((st = check_piece(w->path, f, rows, start, m, 0, NULL)) != BR_OK) goto cleanup;
    (void)vlen_order(m, ord);
    for (int64_t k = 0; k < m; k++) {
        mem[ord[k]] = rows[k];
        pts[ord[k]] = (hsize_t)(start + k);
    }
    const hsize_t hm = (hsize_t)m;
    mspace = H5Screate_simple(1, &hm, NULL);
    /* a conversion buffer of the piece's size, not libhdf5's 1 MiB (twice, with the background buffer): the piece is
     * still converted in one go, so in vlen_order(m) */
    dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (mspace < 0 || dxpl < 0 || H5Pset_buffer(dxpl, (size_t)m * VLEN_FILE_SIZE, NULL, NULL) < 0 ||
        H5Sselect_elements(space, H5S_SELECT_SET, (size_t)m, pts) < 0 ||
        H5Dwrite(dset, type, mspace, space, dxpl, mem) < 0) {
        st = br_fail(BR_EIO, "%s: dataset %s: cannot write strings %lld..%lld: %s", w->path, dpath, (long long)start,
                     (long long)(start + m - 1), h5_detail());
        goto cleanup;
    }
    /* libhdf5 keeps the blocks it frees (global-heap collections evicted from its cache, conversion buffers) on free
     * lists of its own, up to 16 MiB: hand them back, so the writer's memory stays what one piece needs */
    (void)H5garbage_collect();
    st = h5w_sink_status(w);
cleanup:
    for (int64_t i = 0; i < m; i++) {
        free(rows[i]);
        rows[i] = NULL;
    }
    h5_drop(&dxpl, H5Pclose);
    h5_drop(&mspace, H5Sclose);
    return st;
}

/* A text dataset, strip by strip (TEXT_STRIP strings: one chunk), each strip's rows in the
 * order one H5Dwrite of the strip would insert them: vlen_order's forward blocks, cut into pieces of at most `piece`
 * rows, then its backward tail row by row. A dataset of more than one strip has its chunk flushed after each. */
static br_status write_text_pieces(h5w *w, hid_t dset, hid_t type, hid_t space, const h5log_source *src,
                                   h5log_field f, int64_t count, int64_t piece, const char *dpath) {
    br_status st = BR_OK;
    const int64_t strip_max = count < TEXT_STRIP ? count : TEXT_STRIP;
    const int64_t cap = piece > strip_max ? strip_max : piece;
    char **rows = calloc((size_t)cap + 1, sizeof *rows), **mem = calloc((size_t)cap + 1, sizeof *mem);
    hsize_t *pts = calloc((size_t)cap + 1, sizeof *pts);
    int64_t *ord = calloc((size_t)cap + 1, sizeof *ord), *sord = calloc((size_t)strip_max + 1, sizeof *sord);
    if (!rows || !mem || !pts || !ord || !sord) {
        st = br_fail(BR_ENOMEM, "%s: dataset %s: cannot allocate a piece of %lld strings", w->path, dpath, (long long)cap);
        goto cleanup;
    }
    for (int64_t s0 = 0; s0 < count; s0 += TEXT_STRIP) {
        const int64_t n = count - s0 < TEXT_STRIP ? count - s0 : TEXT_STRIP;
        const int64_t fwd = vlen_order(n, sord);
        /* the forward blocks: runs of consecutive positions */
        for (int64_t k = 0; k < fwd;) {
            int64_t run = 1;
            while (k + run < fwd && sord[k + run] == sord[k] + run) run++;
            for (int64_t a = 0; a < run; a += cap) {
                const int64_t m = run - a < cap ? run - a : cap;
                if ((st = write_text_piece(w, dset, type, space, src, f, s0 + sord[k] + a, m, rows, mem, pts, ord,
                                           dpath)) != BR_OK)
                    goto cleanup;
            }
            k += run;
        }
        for (int64_t k = fwd; k < n; k++)
            if ((st = write_text_piece(w, dset, type, space, src, f, s0 + sord[k], 1, rows, mem, pts, ord, dpath)) !=
                BR_OK)
                goto cleanup;
        if (count > TEXT_STRIP && H5Dflush(dset) < 0) {
            st = br_fail(BR_EIO, "%s: dataset %s: cannot flush: %s", w->path, dpath, h5_detail());
            goto cleanup;
        }
    }
cleanup:
    free(rows);
    free(mem);
    free(pts);
    free(ord);
    free(sord);
    return st;
}

/* Creates grp/<field> of `count` elements and fills it from src, piece by piece. */
static br_status write_field(h5w *w, hid_t grp, const char *gname, const h5log_source *src, h5log_field f,
                             int64_t count, int64_t last) {
    const field_desc *d = &g_fields[f];
    br_status st = BR_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, mspace = H5I_INVALID_HID, dcpl = H5I_INVALID_HID,
          dapl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    void *buf = NULL;
    int64_t m = 0;
    char dpath[96];
    const char *file = w->path;
    snprintf(dpath, sizeof dpath, "%s/%s", gname, d->name);
    const hsize_t hcount = (hsize_t)count;
    const size_t esize = d->text ? sizeof(char *) : kind_size(d->k);
    /* at least H5LOG_PIECE_MIN: pieces of one to four numbers (hundreds of thousands of H5Dwrite calls) change
     * how libhdf5's metadata cache adapts and evicts, and with that where it puts objects */
    const int64_t budget = src->piece_bytes <= 0 ? H5LOG_PIECE_BYTES
                           : src->piece_bytes < H5LOG_PIECE_MIN ? H5LOG_PIECE_MIN : src->piece_bytes;
    int64_t piece = d->text ? budget / TEXT_PIECE_DIV : budget / (int64_t)esize;
    if (piece < 1) piece = 1;
    if (piece > count) piece = count;
    if (d->text) {
        type = H5Tcopy(H5T_C_S1);
        if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
            st = br_fail(BR_EIO, "%s: dataset %s: cannot make a string type: %s", file, dpath, h5_detail());
            goto cleanup;
        }
    }
    space = H5Screate_simple(1, &hcount, NULL);
    dcpl = make_dcpl(hcount, d->text ? VLEN_FILE_SIZE : esize);
    dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (space < 0 || dcpl < 0 || dapl < 0) {
        st = br_fail(BR_EIO, "%s: dataset %s: cannot set up %llu elements: %s", file, dpath, (unsigned long long)count,
                     h5_detail());
        goto cleanup;
    }
    if (hcount > 0) {
        const size_t fesize = d->text ? VLEN_FILE_SIZE : esize;
        hsize_t chunk = CHUNK_BYTES / fesize < hcount ? CHUNK_BYTES / fesize : hcount;
        const size_t bytes = (size_t)chunk * fesize;
        if (H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, bytes, 1.0) < 0) {
            st = br_fail(BR_EIO, "%s: dataset %s: cannot size its chunk cache: %s", file, dpath, h5_detail());
            goto cleanup;
        }
    }
    dset = H5Dcreate2(grp, d->name, d->text ? type : kind_file(d->k), space, H5P_DEFAULT, dcpl, dapl);
    if (dset < 0) {
        st = br_fail(BR_EIO, "%s: dataset %s: cannot create: %s", file, dpath, h5_detail());
        goto cleanup;
    }
    if (!d->text && count > 0 && !(buf = calloc((size_t)piece, esize))) {
        st = br_fail(BR_ENOMEM, "%s: dataset %s: cannot allocate a piece of %lld elements", file, dpath, (long long)piece);
        goto cleanup;
    }
    piece_check pc = {0, last};
    if (d->text) {
        st = write_text_pieces(w, dset, type, space, src, f, count, piece, dpath);
        if (st != BR_OK) goto cleanup;
    }
    for (int64_t start = 0; !d->text && start < count; start += m) {
        m = count - start < piece ? count - start : piece;
        if ((st = src->fill(src->ctx, f, start, m, buf)) != BR_OK) goto cleanup;
        if ((st = check_piece(file, f, buf, start, m, count, &pc)) != BR_OK) goto cleanup;
        const hsize_t hs = (hsize_t)start, hm = (hsize_t)m;
        mspace = H5Screate_simple(1, &hm, NULL);
        if (mspace < 0 || H5Sselect_hyperslab(space, H5S_SELECT_SET, &hs, NULL, &hm, NULL) < 0 ||
            H5Dwrite(dset, kind_mem(d->k), mspace, space, H5P_DEFAULT, buf) < 0) {
            st = br_fail(BR_EIO, "%s: dataset %s: cannot write elements %lld..%lld: %s", file, dpath, (long long)start,
                         (long long)(start + m - 1), h5_detail());
            goto cleanup;
        }
        h5_drop(&mspace, H5Sclose);
        if ((st = h5w_sink_status(w)) != BR_OK) goto cleanup;
    }
    m = 0;
    if (d->attr_name && (st = write_str_attr(dset, file, dpath, d->attr_name, d->attr_value)) != BR_OK) goto cleanup;
    if ((st = h5_close(&dset, H5Dclose, file, dpath)) != BR_OK) goto cleanup;
    st = h5w_sink_status(w);
cleanup:
    free(buf);
    h5_drop(&mspace, H5Sclose);
    h5_drop(&dset, H5Dclose);
    h5_drop(&dapl, H5Pclose);
    h5_drop(&dcpl, H5Pclose);
    h5_drop(&space, H5Sclose);
    h5_drop(&type, H5Tclose);
    return st;
}

static br_status check_source(const char *path, const h5log_source *src) {
    if (!src->fill) return br_fail(BR_EINVAL, "%s: cannot write: the source has no fill function", path);
    if (src->n < 0 || src->P < 0 || src->T < 0)
        return br_fail(BR_EINVAL, "%s: cannot write: n = %lld, prompt tokens %lld, completion tokens %lld: expected >= 0",
                       path, (long long)src->n, (long long)src->P, (long long)src->T);
    if (src->piece_bytes < 0)
        return br_fail(BR_EINVAL, "%s: cannot write: piece_bytes = %lld < 0", path, (long long)src->piece_bytes);
    return BR_OK;
}

br_status h5log_rollouts_write_from(const char *path, const h5log_source *src, const h5log_provenance *p) {
    if (!path || !src || !p) return br_fail(BR_EINVAL, "h5log_rollouts_write_from: NULL argument");
    br_status st = check_source(path, src);
    if (st != BR_OK) return st;
    quiet_state q;
    quiet_begin(&q);
    h5w w = {.fd = -1, .file = H5I_INVALID_HID};
    hid_t g = H5I_INVALID_HID;
    if ((st = h5w_begin(&w, path, H5LOG_ROLLOUTS_FORMAT, p)) != BR_OK) goto cleanup;
    g = h5w_group(&w, "samples", &st);
    if (g < 0) goto cleanup;
    const int64_t n = src->n;
    const int64_t count[H5LOG_F_COUNT] = {
        [H5LOG_F_SAMPLE_ID] = n, [H5LOG_F_PROMPT_INDEX] = n, [H5LOG_F_SAMPLE_INDEX] = n,
        [H5LOG_F_PROMPT_OFFSETS] = n + 1, [H5LOG_F_PROMPT_TOKENS] = src->P, [H5LOG_F_COMPLETION_OFFSETS] = n + 1,
        [H5LOG_F_COMPLETION_TOKENS] = src->T, [H5LOG_F_LOGPROBS] = src->T, [H5LOG_F_LOGITS_DIGEST] = src->T,
        [H5LOG_F_FINISH_REASON] = n, [H5LOG_F_TEMPERATURE] = n, [H5LOG_F_TOP_P] = n, [H5LOG_F_TOP_K] = n,
        [H5LOG_F_SEED] = n, [H5LOG_F_PROMPT_TEXT] = n, [H5LOG_F_COMPLETION_TEXT] = n, [H5LOG_F_FULL_TEXT] = n};
    /* the file's order of datasets (which fixes every address in it) */
    for (int f = 0; f < H5LOG_F_COUNT; f++) {
        if (g_fields[f].text && !(src->texts & (1 << (f - H5LOG_F_PROMPT_TEXT)))) continue;
        const int64_t last = f == H5LOG_F_PROMPT_OFFSETS ? src->P : src->T;
        if ((st = write_field(&w, g, "/samples", src, (h5log_field)f, count[f], last)) != BR_OK) goto cleanup;
    }
    if ((st = h5_close(&g, H5Gclose, path, "group /samples")) != BR_OK) goto cleanup;
    st = h5w_commit(&w);
cleanup:
    h5_drop(&g, H5Gclose);
    h5w_end(&w);
    quiet_end(&q);
    return st;
}

br_status h5log_scores_write_from(const char *path, const h5log_source *src, const h5log_provenance *p,
                                  const char *rollouts_fingerprint_hex) {
    if (!path || !src || !p) return br_fail(BR_EINVAL, "h5log_scores_write_from: NULL argument");
    if (!is_hex16(rollouts_fingerprint_hex))
        return br_fail(BR_EINVAL, "%s: cannot write: rollouts fingerprint '%s' is not 16 lowercase hex digits", path,
                       rollouts_fingerprint_hex ? rollouts_fingerprint_hex : "(null)");
    br_status st = check_source(path, src);
    if (st != BR_OK) return st;
    quiet_state q;
    quiet_begin(&q);
    h5w w = {.fd = -1, .file = H5I_INVALID_HID};
    hid_t g = H5I_INVALID_HID;
    if ((st = h5w_begin(&w, path, H5LOG_SCORES_FORMAT, p)) != BR_OK) goto cleanup;
    if ((st = write_str_attr(w.file, path, "/", "rollouts_fingerprint", rollouts_fingerprint_hex)) != BR_OK) goto cleanup;
    g = h5w_group(&w, "scores", &st);
    if (g < 0) goto cleanup;
    const char *G = "/scores";
    if ((st = write_field(&w, g, G, src, H5LOG_F_SAMPLE_ID, src->n, 0)) != BR_OK) goto cleanup;
    if ((st = write_field(&w, g, G, src, H5LOG_F_COMPLETION_OFFSETS, src->n + 1, src->T)) != BR_OK) goto cleanup;
    if ((st = write_field(&w, g, G, src, H5LOG_F_LOGPROBS, src->T, 0)) != BR_OK) goto cleanup;
    if ((st = write_field(&w, g, G, src, H5LOG_F_LOGITS_DIGEST, src->T, 0)) != BR_OK) goto cleanup;
    if ((st = h5_close(&g, H5Gclose, path, "group /scores")) != BR_OK) goto cleanup;
    st = h5w_commit(&w);
cleanup:
    h5_drop(&g, H5Gclose);
    h5w_end(&w);
    quiet_end(&q);
    return st;
}

/* The one-shot writers: their arrays are checked whole before the file is created, then read through a source. */
typedef struct {
    const h5log_rollouts *r;
    const h5log_scores *s;
} mem_source;

static br_status mem_fill(void *ctx, h5log_field f, int64_t start, int64_t count, void *buf) {
    static const int64_t zero = 0;
    const mem_source *ms = ctx;
    const h5log_rollouts *r = ms->r;
    const h5log_scores *s = ms->s;
    const void *a = NULL;
    if (g_fields[f].text) {
        char **const t = f == H5LOG_F_PROMPT_TEXT ? r->prompt_text
                         : f == H5LOG_F_COMPLETION_TEXT ? r->completion_text : r->full_text;
        char **out = buf;
        for (int64_t i = 0; i < count; i++) {
            out[i] = strdup(t[start + i]);
            if (!out[i]) return br_fail(BR_ENOMEM, "out of memory copying %s[%lld]", g_fields[f].name, (long long)(start + i));
        }
        return BR_OK;
    }
    switch (f) {
    case H5LOG_F_SAMPLE_ID: a = r ? (const void *)r->sample_id : (const void *)s->sample_id; break;
    case H5LOG_F_PROMPT_INDEX: a = r->prompt_index; break;
    case H5LOG_F_SAMPLE_INDEX: a = r->sample_index; break;
    case H5LOG_F_PROMPT_OFFSETS: a = r->prompt_offsets ? r->prompt_offsets : &zero; break;
    case H5LOG_F_PROMPT_TOKENS: a = r->prompt_tokens; break;
    case H5LOG_F_COMPLETION_OFFSETS: {
        const int64_t *co = r ? r->completion_offsets : s->completion_offsets;
        a = co ? co : &zero;
        break;
    }
    case H5LOG_F_COMPLETION_TOKENS: a = r->completion_tokens; break;
    case H5LOG_F_LOGPROBS: a = r ? (const void *)r->logprobs : (const void *)s->logprobs; break;
    case H5LOG_F_LOGITS_DIGEST: a = r ? (const void *)r->logits_digest : (const void *)s->logits_digest; break;
    case H5LOG_F_FINISH_REASON: a = r->finish_reason; break;
    case H5LOG_F_TEMPERATURE: a = r->temperature; break;
    case H5LOG_F_TOP_P: a = r->top_p; break;
    case H5LOG_F_TOP_K: a = r->top_k; break;
    case H5LOG_F_SEED: a = r->seed; break;
    default: return br_fail(BR_EINVAL, "h5log: no field %d", (int)f);
    }
    const size_t es = kind_size(g_fields[f].k);
    memcpy(buf, (const char *)a + (size_t)start * es, (size_t)count * es);
    return BR_OK;
}

br_status h5log_rollouts_write(const char *path, const h5log_rollouts *r, const h5log_provenance *p) {
    if (!path || !r || !p) return br_fail(BR_EINVAL, "h5log_rollouts_write: NULL argument");
    br_status st = check_rollouts(path, r);
    if (st != BR_OK) return st;
    mem_source ms = {r, NULL};
    h5log_source src = {.n = r->n,
                        .P = r->prompt_offsets ? r->prompt_offsets[r->n] : 0,
                        .T = r->completion_offsets ? r->completion_offsets[r->n] : 0,
                        .texts = (r->prompt_text ? H5LOG_TEXT_PROMPT : 0) |
                                 (r->completion_text ? H5LOG_TEXT_COMPLETION : 0) | (r->full_text ? H5LOG_TEXT_FULL : 0),
                        .fill = mem_fill,
                        .ctx = &ms};
    return h5log_rollouts_write_from(path, &src, p);
}

br_status h5log_scores_write(const char *path, const h5log_scores *s, const h5log_provenance *p,
                             const char *rollouts_fingerprint_hex) {
    if (!path || !s || !p) return br_fail(BR_EINVAL, "h5log_scores_write: NULL argument");
    int64_t n = s->n;
    if (n < 0) return br_fail(BR_EINVAL, "%s: cannot write: n = %lld < 0", path, (long long)n);
    if (n > 0 && (!s->sample_id || !s->completion_offsets))
        return br_fail(BR_EINVAL, "%s: cannot write: sample_id or completion_offsets is NULL with n = %lld", path, (long long)n);
    br_status st = BR_OK;
    if (s->completion_offsets && (st = check_offsets_in(path, "completion_offsets", s->completion_offsets, n)) != BR_OK)
        return st;
    const int64_t T = s->completion_offsets ? s->completion_offsets[n] : 0;
    if (T > 0 && (!s->logprobs || !s->logits_digest))
        return br_fail(BR_EINVAL, "%s: cannot write: logprobs or logits_digest is NULL with %lld tokens", path, (long long)T);
    int64_t i = n > 0 ? ids_unsorted(s->sample_id, n) : -1;
    if (i >= 0)
        return br_fail(BR_EINVAL, "%s: cannot write: sample_id[%lld] = %lld follows %lld (rows must be sorted by increasing sample_id)",
                       path, (long long)i, (long long)s->sample_id[i], (long long)s->sample_id[i - 1]);
    mem_source ms = {NULL, s};
    h5log_source src = {.n = n, .T = T, .fill = mem_fill, .ctx = &ms};
    return h5log_scores_write_from(path, &src, p, rollouts_fingerprint_hex);
}

/* ---------------------------------------------------------------- reading */

#define ATTR_FIXED_MAX (1 << 20) /* bitroll writes variable-length strings; a fixed-size one is another program's */
static br_status read_str_attr(hid_t obj, const char *file, const char *name, char **out) {
    br_status st = BR_OK;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char *vl = NULL, *buf = NULL;
    int vl_read = 0;
    char desc[64];
    *out = NULL;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        st = br_fail(BR_EFORMAT, "%s: cannot look up root attribute '%s': %s", file, name, h5_detail());
        goto cleanup;
    }
    if (ex == 0) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s' missing", file, name);
        goto cleanup;
    }
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0 || (ftype = H5Aget_type(attr)) < 0 || (space = H5Aget_space(attr)) < 0) {
        st = br_fail(BR_EFORMAT, "%s: cannot open root attribute '%s': %s", file, name, h5_detail());
        goto cleanup;
    }
    if (H5Tget_class(ftype) != H5T_STRING || H5Sget_simple_extent_type(space) != H5S_SCALAR) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s': expected a scalar string, found %s", file, name,
                     type_desc(ftype, desc, sizeof desc));
        goto cleanup;
    }
    htri_t var = H5Tis_variable_str(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);
    mtype = H5Tcopy(H5T_C_S1);
    if (var < 0 || cset < 0 || mtype < 0 || H5Tset_cset(mtype, cset) < 0) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s': cannot inspect its string type: %s", file, name, h5_detail());
        goto cleanup;
    }
    if (var) {
        if (H5Tset_size(mtype, H5T_VARIABLE) < 0 || H5Aread(attr, mtype, &vl) < 0) {
            st = br_fail(BR_EFORMAT, "%s: root attribute '%s': cannot read: %s", file, name, h5_detail());
            goto cleanup;
        }
        vl_read = 1;
        buf = strdup(vl ? vl : "");
        if (!buf) {
            st = br_fail(BR_ENOMEM, "%s: root attribute '%s': out of memory", file, name);
            goto cleanup;
        }
    } else {
        size_t size = H5Tget_size(ftype);
        if (size > ATTR_FIXED_MAX) {
            st = br_fail(BR_EFORMAT, "%s: root attribute '%s': a fixed-size string of %zu bytes is too long (at most %d)",
                         file, name, size, ATTR_FIXED_MAX);
            goto cleanup;
        }
        if (size == 0 || (buf = calloc(size + 1, 1)) == NULL) {
            st = br_fail(BR_ENOMEM, "%s: root attribute '%s': cannot allocate %zu bytes", file, name, size + 1);
            goto cleanup;
        }
        if (H5Tset_size(mtype, size) < 0 || H5Aread(attr, mtype, buf) < 0) {
            st = br_fail(BR_EFORMAT, "%s: root attribute '%s': cannot read: %s", file, name, h5_detail());
            goto cleanup;
        }
    }
    *out = buf;
    buf = NULL;
cleanup:
    if (vl_read && H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, &vl) < 0 && st == BR_OK)
        st = br_fail(BR_EIO, "%s: root attribute '%s': cannot release the string HDF5 read: %s", file, name, h5_detail());
    if (st != BR_OK) {
        free(*out);
        *out = NULL;
    }
    free(buf);
    h5_drop(&mtype, H5Tclose);
    h5_drop(&space, H5Sclose);
    h5_drop(&ftype, H5Tclose);
    h5_drop(&attr, H5Aclose);
    return st;
}

/* Reads an integer root attribute into *out (int64), range-checked against [lo, hi]. missing_msg, when given,
 * replaces the generic "missing" message. */
static br_status read_i64_attr(hid_t obj, const char *file, const char *name, const char *missing_msg, long long lo,
                               long long hi, long long *out) {
    br_status st = BR_OK;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, space = H5I_INVALID_HID;
    long long v = 0;
    char desc[64];
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        st = br_fail(BR_EFORMAT, "%s: cannot look up root attribute '%s': %s", file, name, h5_detail());
        goto cleanup;
    }
    if (ex == 0) {
        st = missing_msg ? br_fail(BR_EFORMAT, "%s: %s", file, missing_msg)
                         : br_fail(BR_EFORMAT, "%s: root attribute '%s' missing", file, name);
        goto cleanup;
    }
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0 || (ftype = H5Aget_type(attr)) < 0 || (space = H5Aget_space(attr)) < 0) {
        st = br_fail(BR_EFORMAT, "%s: cannot open root attribute '%s': %s", file, name, h5_detail());
        goto cleanup;
    }
    if (H5Tget_class(ftype) != H5T_INTEGER || H5Tget_size(ftype) > 8 || H5Sget_simple_extent_type(space) != H5S_SCALAR) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s': expected a scalar integer, found %s", file, name,
                     type_desc(ftype, desc, sizeof desc));
        goto cleanup;
    }
    if (H5Aread(attr, H5T_NATIVE_LLONG, &v) < 0) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s': cannot read: %s", file, name, h5_detail());
        goto cleanup;
    }
    if (v < lo || v > hi) {
        st = br_fail(BR_EFORMAT, "%s: root attribute '%s' = %lld is out of range", file, name, v);
        goto cleanup;
    }
    *out = v;
cleanup:
    h5_drop(&space, H5Sclose);
    h5_drop(&ftype, H5Tclose);
    h5_drop(&attr, H5Aclose);
    return st;
}

static br_status read_int_attr(hid_t obj, const char *file, const char *name, const char *missing_msg, int *out) {
    long long v = 0;
    br_status st = read_i64_attr(obj, file, name, missing_msg, -2147483647LL - 1, 2147483647LL, &v);
    if (st == BR_OK) *out = (int)v;
    return st;
}

/* Opens dataset gname/name and checks it is 1-D; returns its length in *count. */
static br_status open_1d(hid_t grp, const char *file, const char *dpath, const char *name, hid_t *dset, hid_t *space,
                         hid_t *ftype, int64_t *count) {
    htri_t ex = H5Lexists(grp, name, H5P_DEFAULT);
    if (ex < 0) return br_fail(BR_EFORMAT, "%s: dataset %s: cannot look it up: %s", file, dpath, h5_detail());
    if (ex == 0) return br_fail(BR_EFORMAT, "%s: dataset %s missing", file, dpath);
    *dset = H5Dopen2(grp, name, H5P_DEFAULT);
    if (*dset < 0 || (*ftype = H5Dget_type(*dset)) < 0 || (*space = H5Dget_space(*dset)) < 0)
        return br_fail(BR_EFORMAT, "%s: dataset %s: cannot open: %s", file, dpath, h5_detail());
    int rank = H5Sget_simple_extent_ndims(*space);
    if (rank != 1) return br_fail(BR_EFORMAT, "%s: dataset %s: expected a 1-D dataset, found rank %d", file, dpath, rank);
    hsize_t dim = 0;
    if (H5Sget_simple_extent_dims(*space, &dim, NULL) < 0)
        return br_fail(BR_EFORMAT, "%s: dataset %s: cannot read its shape: %s", file, dpath, h5_detail());
    if (dim > (hsize_t)INT64_MAX / 8)
        return br_fail(BR_EFORMAT, "%s: dataset %s: %llu elements is too many", file, dpath, (unsigned long long)dim);
    *count = (int64_t)dim;
    return BR_OK;
}

/* What a dataset claims, checked before anything is allocated for it: its elements must fit in the file (bitroll
 * never compresses, so a file holds at least the bytes of each of its datasets) and a chunk may not exceed
 * CHUNK_MAX (HDF5 allocates a whole chunk to read one). A damaged or crafted file that declares 2e9 elements is
 * refused here, by name, instead of costing gigabytes. esize: bytes per element the file must at least hold. */
#define CHUNK_MAX ((hsize_t)64 << 20)
static br_status check_claim(hid_t dset, const char *file, const char *dpath, int64_t count, size_t esize,
                             int64_t fsize) {
    br_status st = BR_OK;
    hid_t dcpl = H5I_INVALID_HID;
    if (count > fsize / (int64_t)esize)
        return br_fail(BR_EFORMAT, "%s: dataset %s: %lld elements of %zu bytes cannot fit in a file of %lld bytes", file,
                       dpath, (long long)count, esize, (long long)fsize);
    dcpl = H5Dget_create_plist(dset);
    H5D_layout_t layout = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    if (layout < 0) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: cannot read its layout: %s", file, dpath, h5_detail());
        goto cleanup;
    }
    /* bitroll writes contiguous and chunked datasets only (every format version). A compact one is damage (one
     * changed byte of the layout message) or another writer's, and libhdf5 1.10 reads a compact dataset's
     * elements without checking them against the bytes the message holds (a heap over-read: docs/RELIABILITY.md,
     * overread-H5D-compact), so it is refused before H5Dread. */
    if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: %s layout, but bitroll writes contiguous or chunked datasets only "
                                 "(the file is damaged or was not written by bitroll)",
                     file, dpath, layout == H5D_COMPACT ? "compact" : layout == H5D_VIRTUAL ? "virtual" : "an unknown");
        goto cleanup;
    }
    if (layout == H5D_CHUNKED) {
        hsize_t chunk[H5S_MAX_RANK] = {0};
        if (H5Pget_chunk(dcpl, 1, chunk) != 1) {
            st = br_fail(BR_EFORMAT, "%s: dataset %s: cannot read its chunk shape: %s", file, dpath, h5_detail());
            goto cleanup;
        }
        if (chunk[0] == 0 || chunk[0] > CHUNK_MAX / esize) {
            st = br_fail(BR_EFORMAT, "%s: dataset %s: chunks of %llu elements of %zu bytes (at most %llu bytes accepted)",
                         file, dpath, (unsigned long long)chunk[0], esize, (unsigned long long)CHUNK_MAX);
            goto cleanup;
        }
    }
cleanup:
    h5_drop(&dcpl, H5Pclose);
    return st;
}

/* Reads a 1-D numeric dataset of kind k; returns it, or NULL with *status set. expect < 0: any length,
 * reported in *count. The result always has room for one element, so empty arrays are non-NULL. */
static void *read_array(hid_t grp, const char *file, int64_t fsize, const char *gname, const char *name, kind k,
                        int64_t expect, int64_t *count, br_status *status) {
    br_status st = BR_OK;
    void *res = NULL;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
    char dpath[96], desc[64];
    int64_t c = 0;
    void *buf = NULL;
    snprintf(dpath, sizeof dpath, "%s/%s", gname, name);
    if ((st = open_1d(grp, file, dpath, name, &dset, &space, &ftype, &c)) != BR_OK) goto cleanup;
    H5T_class_t cls = H5Tget_class(ftype);
    int ok = H5Tget_size(ftype) == kind_size(k);
    if (k == K_F32) ok = ok && cls == H5T_FLOAT;
    else ok = ok && cls == H5T_INTEGER && H5Tget_sign(ftype) == (k == K_U64 ? H5T_SGN_NONE : H5T_SGN_2);
    if (!ok) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: expected %s, found %s", file, dpath, kind_name(k),
                     type_desc(ftype, desc, sizeof desc));
        goto cleanup;
    }
    if (expect >= 0 && c != expect) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: expected %lld elements, found %lld", file, dpath, (long long)expect,
                     (long long)c);
        goto cleanup;
    }
    if ((st = check_claim(dset, file, dpath, c, kind_size(k), fsize)) != BR_OK) goto cleanup;
    buf = malloc((size_t)(c > 0 ? c : 1) * kind_size(k));
    if (!buf) {
        st = br_fail(BR_ENOMEM, "%s: dataset %s: cannot allocate %lld elements", file, dpath, (long long)c);
        goto cleanup;
    }
    if (c > 0 && H5Dread(dset, kind_mem(k), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = br_fail(BR_EIO, "%s: dataset %s: cannot read %lld elements: %s", file, dpath, (long long)c, h5_detail());
        goto cleanup;
    }
    if ((st = h5_close(&dset, H5Dclose, file, dpath)) != BR_OK) goto cleanup;
    res = buf;
    buf = NULL;
    if (count) *count = c;
cleanup:
    free(buf);
    h5_drop(&ftype, H5Tclose);
    h5_drop(&space, H5Sclose);
    h5_drop(&dset, H5Dclose);
    *status = st;
    return res;
}

/* Reads an optional variable-length string dataset of n entries; *out stays NULL when it is absent. */
static br_status read_text(hid_t grp, const char *file, int64_t fsize, const char *gname, const char *name, int64_t n,
                           char ***out) {
    br_status st = BR_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    char dpath[96], desc[64];
    char **raw = NULL, **res = NULL;
    int raw_read = 0;
    int64_t c = 0;
    snprintf(dpath, sizeof dpath, "%s/%s", gname, name);
    *out = NULL;
    htri_t ex = H5Lexists(grp, name, H5P_DEFAULT);
    if (ex < 0) return br_fail(BR_EFORMAT, "%s: dataset %s: cannot look it up: %s", file, dpath, h5_detail());
    if (ex == 0) return BR_OK;
    if ((st = open_1d(grp, file, dpath, name, &dset, &space, &ftype, &c)) != BR_OK) goto cleanup;
    htri_t var = H5Tget_class(ftype) == H5T_STRING ? H5Tis_variable_str(ftype) : 0;
    if (var <= 0) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: expected variable-length strings, found %s", file, dpath,
                     type_desc(ftype, desc, sizeof desc));
        goto cleanup;
    }
    if (c != n) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: expected %lld elements, found %lld", file, dpath, (long long)n, (long long)c);
        goto cleanup;
    }
    /* each element is a 16-byte reference into a global heap; 8 is a safe lower bound */
    if ((st = check_claim(dset, file, dpath, c, 8, fsize)) != BR_OK) goto cleanup;
    H5T_cset_t cset = H5Tget_cset(ftype);
    mtype = H5Tcopy(H5T_C_S1);
    if (cset < 0 || mtype < 0 || H5Tset_size(mtype, H5T_VARIABLE) < 0 || H5Tset_cset(mtype, cset) < 0) {
        st = br_fail(BR_EFORMAT, "%s: dataset %s: cannot set up a string type: %s", file, dpath, h5_detail());
        goto cleanup;
    }
    size_t slots = (size_t)(n > 0 ? n : 1);
    raw = calloc(slots, sizeof *raw);
    res = calloc(slots, sizeof *res);
    if (!raw || !res) {
        st = br_fail(BR_ENOMEM, "%s: dataset %s: cannot allocate %lld strings", file, dpath, (long long)n);
        goto cleanup;
    }
    if (n > 0) {
        if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            st = br_fail(BR_EIO, "%s: dataset %s: cannot read %lld strings: %s", file, dpath, (long long)n, h5_detail());
            goto cleanup;
        }
        raw_read = 1;
    }
    /* Copied, so every string in an h5log_rollouts is freed with free(), whatever allocator HDF5 uses. */
    for (int64_t i = 0; i < n; i++) {
        res[i] = strdup(raw[i] ? raw[i] : "");
        if (!res[i]) {
            st = br_fail(BR_ENOMEM, "%s: dataset %s: out of memory copying string %lld", file, dpath, (long long)i);
            goto cleanup;
        }
    }
    *out = res;
    res = NULL;
cleanup:
    if (raw_read && H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, raw) < 0 && st == BR_OK)
        st = br_fail(BR_EIO, "%s: dataset %s: cannot release the strings HDF5 read: %s", file, dpath, h5_detail());
    if (st != BR_OK && *out) {
        res = *out;
        *out = NULL;
    }
    for (int64_t i = 0; res && i < n; i++) free(res[i]);
    free(res);
    free(raw);
    h5_drop(&mtype, H5Tclose);
    h5_drop(&ftype, H5Tclose);
    h5_drop(&space, H5Sclose);
    h5_drop(&dset, H5Dclose);
    return st;
}

/* Opens `path`, whose integrity header (has_header) was checked with plain reads by the caller (h5log_check_file),
 * with HDF5 and checks format, complete and format_version, in that order: a file from another program is named as
 * such before an interrupted bitroll write is. Fills meta's strings. */
static br_status h5r_open(const char *path, const char *format, int has_header, hid_t *file, h5log_meta *m) {
    br_status st = BR_OK;
    hid_t fapl = H5I_INVALID_HID;
    *file = H5I_INVALID_HID;
    m->checked = has_header;
    if (H5Fis_hdf5(path) <= 0) {
        (void)h5_detail(); /* clear the stack: "no HDF5 signature" is the whole story */
        return br_fail(BR_EFORMAT, "%s: not an HDF5 file", path);
    }
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        st = br_fail(BR_EIO, "%s: cannot set up HDF5 file properties: %s", path, h5_detail());
        goto cleanup;
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (*file < 0) {
        st = br_fail(BR_EIO, "%s: cannot open as HDF5: %s", path, h5_detail());
        goto cleanup;
    }
    htri_t has_format = H5Aexists(*file, "format");
    if (has_format <= 0) {
        st = has_format < 0 ? br_fail(BR_EFORMAT, "%s: cannot look up root attribute 'format': %s", path, h5_detail())
                            : br_fail(BR_EFORMAT, "%s: not a bitroll file (root attribute 'format' missing)", path);
        goto cleanup;
    }
    if ((st = read_str_attr(*file, path, "format", &m->format)) != BR_OK) goto cleanup;
    if (strcmp(m->format, format) != 0) {
        st = br_fail(BR_EFORMAT, "%s: format is '%s', expected '%s'", path, m->format, format);
        goto cleanup;
    }
    int complete = 0;
    if ((st = read_int_attr(*file, path, "complete", "file is incomplete (interrupted write)", &complete)) != BR_OK)
        goto cleanup;
    if (complete != 1) {
        st = br_fail(BR_EFORMAT, "%s: file is incomplete (interrupted write)", path);
        goto cleanup;
    }
    if ((st = read_int_attr(*file, path, "format_version", NULL, &m->format_version)) != BR_OK) goto cleanup;
    /* the header and the version go together: a version 2 file without its header lost it (or was rewritten
     * by another program), and an old file's integrity cannot be claimed */
    if (m->format_version != H5LOG_FORMAT_VERSION && m->format_version != H5LOG_FORMAT_VERSION_NO_HEADER) {
        st = br_fail(BR_EFORMAT, "%s: unknown format_version %d (this build reads versions %d and %d)", path,
                     m->format_version, H5LOG_FORMAT_VERSION_NO_HEADER, H5LOG_FORMAT_VERSION);
        goto cleanup;
    }
    if (has_header != (m->format_version == H5LOG_FORMAT_VERSION)) {
        st = has_header ? br_fail(BR_EFORMAT, "%s: format_version %d file with a bitroll header (only version %d has one)",
                                  path, m->format_version, H5LOG_FORMAT_VERSION)
                        : br_fail(BR_EFORMAT, "%s: format_version %d file without its %d-byte bitroll header (stripped, "
                                              "or rewritten by another program)",
                                  path, m->format_version, H5LOG_HEADER_SIZE);
        goto cleanup;
    }
    const char *names[] = {"engine_version", "git_rev", "compiler", "model_dir", "model_fingerprint", "kernel_mode",
                           "device_names", "config_json", "lib_versions", "hdf5_version", "mpi_version"};
    char **dst[] = {&m->engine_version, &m->git_rev, &m->compiler, &m->model_dir, &m->model_fingerprint, &m->kernel_mode,
                    &m->device_names, &m->config_json, &m->lib_versions, &m->hdf5_version, &m->mpi_version};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((st = read_str_attr(*file, path, names[i], dst[i])) != BR_OK) goto cleanup;
    if ((st = read_int_attr(*file, path, "world_size", NULL, &m->world_size)) != BR_OK) goto cleanup;
    {
        /* weight_version: absent in files written before it existed (they are version 0) */
        htri_t ex = H5Aexists(*file, "weight_version");
        long long wv = 0;
        if (ex < 0) st = br_fail(BR_EFORMAT, "%s: cannot look up root attribute 'weight_version': %s", path, h5_detail());
        else if (ex > 0) st = read_i64_attr(*file, path, "weight_version", NULL, 0, INT64_MAX, &wv);
        if (st != BR_OK) goto cleanup;
        m->weight_version = wv;
    }
cleanup:
    h5_drop(&fapl, H5Pclose);
    if (st != BR_OK) h5_drop(file, H5Fclose);
    return st;
}

static br_status open_group(hid_t file, const char *path, const char *name, hid_t *g) {
    htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex < 0) return br_fail(BR_EFORMAT, "%s: group /%s: cannot look it up: %s", path, name, h5_detail());
    if (ex == 0) return br_fail(BR_EFORMAT, "%s: group /%s missing", path, name);
    *g = H5Gopen2(file, name, H5P_DEFAULT);
    if (*g < 0) return br_fail(BR_EFORMAT, "%s: group /%s: cannot open: %s", path, name, h5_detail());
    return BR_OK;
}

static br_status check_ids_file(const char *path, const char *dpath, const int64_t *id, int64_t n) {
    int64_t i = ids_unsorted(id, n);
    if (i >= 0)
        return br_fail(BR_EFORMAT, "%s: dataset %s: element %lld = %lld follows %lld (must be strictly increasing)", path,
                       dpath, (long long)i, (long long)id[i], (long long)id[i - 1]);
    return BR_OK;
}

static void set_fingerprint(h5log_meta *m, uint64_t fp) {
    m->fingerprint = fp;
    snprintf(m->fingerprint_hex, sizeof m->fingerprint_hex, "%016llx", (unsigned long long)fp);
}

/* The validating read of a rollouts file whose header the caller checked (has_header; fsize: the file's length, what
 * the datasets must fit in). In this process, or in the guard's child (rg_child). */
static br_status rollouts_read_in(const char *path, int has_header, int64_t fsize, h5log_rollouts *out,
                                  h5log_meta *meta) {
    quiet_state q;
    quiet_begin(&q);
    h5log_rollouts r = {0};
    h5log_meta m = {0};
    hid_t file = H5I_INVALID_HID, g = H5I_INVALID_HID;
    br_status st = h5r_open(path, H5LOG_ROLLOUTS_FORMAT, has_header, &file, &m);
    if (st != BR_OK) goto cleanup;
    if ((st = open_group(file, path, "samples", &g)) != BR_OK) goto cleanup;
    const char *G = "/samples";
    int64_t n = 0;
    r.sample_id = read_array(g, path, fsize, G, "sample_id", K_I64, -1, &n, &st);
    if (st != BR_OK) goto cleanup;
    r.n = n;
    if ((st = check_ids_file(path, "/samples/sample_id", r.sample_id, n)) != BR_OK) goto cleanup;
    r.prompt_index = read_array(g, path, fsize, G, "prompt_index", K_I64, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.sample_index = read_array(g, path, fsize, G, "sample_index", K_I32, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.prompt_offsets = read_array(g, path, fsize, G, "prompt_offsets", K_I64, n + 1, NULL, &st);
    if (st != BR_OK) goto cleanup;
    if ((st = check_offsets_file(path, "/samples/prompt_offsets", r.prompt_offsets, n)) != BR_OK) goto cleanup;
    r.prompt_tokens = read_array(g, path, fsize, G, "prompt_tokens", K_I32, r.prompt_offsets[n], NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.completion_offsets = read_array(g, path, fsize, G, "completion_offsets", K_I64, n + 1, NULL, &st);
    if (st != BR_OK) goto cleanup;
    if ((st = check_offsets_file(path, "/samples/completion_offsets", r.completion_offsets, n)) != BR_OK) goto cleanup;
    int64_t T = r.completion_offsets[n];
    r.completion_tokens = read_array(g, path, fsize, G, "completion_tokens", K_I32, T, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.logprobs = read_array(g, path, fsize, G, "logprobs", K_F32, T, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.logits_digest = read_array(g, path, fsize, G, "logits_digest", K_U64, T, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.finish_reason = read_array(g, path, fsize, G, "finish_reason", K_I8, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    int64_t i = finish_bad(r.finish_reason, n);
    if (i >= 0) {
        st = br_fail(BR_EFORMAT, "%s: dataset /samples/finish_reason: element %lld = %d is not one of %s", path,
                     (long long)i, (int)r.finish_reason[i], BR_FINISH_ENUM);
        goto cleanup;
    }
    r.temperature = read_array(g, path, fsize, G, "temperature", K_F32, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.top_p = read_array(g, path, fsize, G, "top_p", K_F32, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.top_k = read_array(g, path, fsize, G, "top_k", K_I32, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    r.seed = read_array(g, path, fsize, G, "seed", K_U64, n, NULL, &st);
    if (st != BR_OK) goto cleanup;
    if ((st = read_text(g, path, fsize, G, "prompt_text", n, &r.prompt_text)) != BR_OK) goto cleanup;
    if ((st = read_text(g, path, fsize, G, "completion_text", n, &r.completion_text)) != BR_OK) goto cleanup;
    if ((st = read_text(g, path, fsize, G, "full_text", n, &r.full_text)) != BR_OK) goto cleanup;
    if ((st = h5_close(&g, H5Gclose, path, "group /samples")) != BR_OK) goto cleanup;
    if ((st = h5_close(&file, H5Fclose, path, "the file")) != BR_OK) goto cleanup;
    uint64_t fp = 0;
    if ((st = h5log_rollouts_fingerprint(&r, &fp)) != BR_OK) goto cleanup;
    set_fingerprint(&m, fp);
    *out = r;
    memset(&r, 0, sizeof r);
    if (meta) {
        *meta = m;
        memset(&m, 0, sizeof m);
    }
cleanup:
    h5_drop(&g, H5Gclose);
    h5_drop(&file, H5Fclose);
    h5log_rollouts_free(&r);
    h5log_meta_free(&m);
    quiet_end(&q);
    return st;
}

/* As rollouts_read_in, for a scores file. */
static br_status scores_read_in(const char *path, int has_header, int64_t fsize, h5log_scores *out, h5log_meta *meta) {
    quiet_state q;
    quiet_begin(&q);
    h5log_scores s = {0};
    h5log_meta m = {0};
    hid_t file = H5I_INVALID_HID, g = H5I_INVALID_HID;
    br_status st = h5r_open(path, H5LOG_SCORES_FORMAT, has_header, &file, &m);
    if (st != BR_OK) goto cleanup;
    if ((st = read_str_attr(file, path, "rollouts_fingerprint", &m.rollouts_fingerprint)) != BR_OK) goto cleanup;
    if (!is_hex16(m.rollouts_fingerprint)) {
        st = br_fail(BR_EFORMAT, "%s: root attribute 'rollouts_fingerprint' = '%s' is not 16 lowercase hex digits", path,
                     m.rollouts_fingerprint);
        goto cleanup;
    }
    if ((st = open_group(file, path, "scores", &g)) != BR_OK) goto cleanup;
    const char *G = "/scores";
    int64_t n = 0;
    s.sample_id = read_array(g, path, fsize, G, "sample_id", K_I64, -1, &n, &st);
    if (st != BR_OK) goto cleanup;
    s.n = n;
    if ((st = check_ids_file(path, "/scores/sample_id", s.sample_id, n)) != BR_OK) goto cleanup;
    s.completion_offsets = read_array(g, path, fsize, G, "completion_offsets", K_I64, n + 1, NULL, &st);
    if (st != BR_OK) goto cleanup;
    if ((st = check_offsets_file(path, "/scores/completion_offsets", s.completion_offsets, n)) != BR_OK) goto cleanup;
    int64_t T = s.completion_offsets[n];
    s.logprobs = read_array(g, path, fsize, G, "logprobs", K_F32, T, NULL, &st);
    if (st != BR_OK) goto cleanup;
    s.logits_digest = read_array(g, path, fsize, G, "logits_digest", K_U64, T, NULL, &st);
    if (st != BR_OK) goto cleanup;
    if ((st = h5_close(&g, H5Gclose, path, "group /scores")) != BR_OK) goto cleanup;
    if ((st = h5_close(&file, H5Fclose, path, "the file")) != BR_OK) goto cleanup;
    uint64_t fp = 0;
    if ((st = h5log_scores_fingerprint(&s, &fp)) != BR_OK) goto cleanup;
    set_fingerprint(&m, fp);
    *out = s;
    memset(&s, 0, sizeof s);
    if (meta) {
        *meta = m;
        memset(&m, 0, sizeof m);
    }
cleanup:
    h5_drop(&g, H5Gclose);
    h5_drop(&file, H5Fclose);
    h5log_scores_free(&s);
    h5log_meta_free(&m);
    quiet_end(&q);
    return st;
}

/* ---------------------------------------------------------------- the read guard (files without the header) */

/* libhdf5 1.10.8 can crash, corrupt its heap or loop forever on a damaged file (docs/RELIABILITY.md, Findings 3). A
 * version 2 file reaches it only after its digest matched; a version 1 file has no digest, so it is first read by the
 * same code in a child process, where a crash, a hang or a runaway allocation ends the child, not the caller. The
 * child is forked before this process makes any HDF5 call on the file, ends with _exit (no atexit handler, no stdio
 * flush, no H5close of the parent's state) and does nothing else: no MPI, no CUDA. */

typedef enum { RG_ROLLOUTS, RG_SCORES } rg_kind;

_Static_assert(H5LOG_GUARD_SECONDS_DEFAULT == BR_H5_GUARD_SECONDS_DEFAULT, "one default for the read guard");

#define RG_MEM_BASE ((uint64_t)2 << 30) /* the child may map 2 GiB + 4 x the file's size more than the caller has */

static int g_rg_seconds = H5LOG_GUARD_SECONDS_DEFAULT;
static h5log_guard_counts g_rg_counts;
void (*h5log_test_in_guard_child)(void) = NULL;

int h5log_guard_set(int seconds) {
    const int old = g_rg_seconds;
    g_rg_seconds = seconds > 0 ? seconds : 0;
    return old;
}

h5log_guard_counts h5log_guard_stats(void) { return g_rg_counts; }

/* The bytes of address space this process has mapped (/proc/self/statm); 0 when unknown (then no RLIMIT_AS). Taken
 * in the parent: a sanitizer reserves terabytes at start, so the child's bound is relative to what is mapped. */
static uint64_t rg_vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
    const long ps = sysconf(_SC_PAGESIZE);
    return (uint64_t)pages * (uint64_t)(ps > 0 ? ps : 4096);
}

/* Lowers the soft limit of res to want (never raises it: a caller's ulimit stays the tighter bound). */
static void rg_lower(int res, rlim_t want) {
    struct rlimit rl;
    if (getrlimit(res, &rl) != 0) return;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= want) return;
    rl.rlim_cur = want;
    (void)setrlimit(res, &rl);
}

/* The child: default actions for the signals a crash raises (the caller's handlers, a fuzzer's or a writer's, must
 * not run here), bounds, the read, one record (status byte + message) on wfd, _exit. */
static void rg_child(int wfd, const char *path, rg_kind k, int64_t fsize, uint64_t as_bytes, int seconds) {
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGALRM, SIGXCPU, SIGTERM, SIGINT, SIGHUP,
                               SIGPIPE};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        (void)sigaction(sigs[i], &dfl, NULL);
        sigaddset(&set, sigs[i]);
    }
    (void)sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (h5log_test_in_guard_child) h5log_test_in_guard_child();
    const struct rlimit no_core = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &no_core); /* a crash here is expected: no core file */
    if (as_bytes) rg_lower(RLIMIT_AS, (rlim_t)as_bytes);
    rg_lower(RLIMIT_CPU, (rlim_t)seconds + 1);
    (void)alarm((unsigned)seconds + 2); /* ends the child should the parent be gone before its deadline */
    br_status st;
    if (k == RG_ROLLOUTS) {
        h5log_rollouts r;
        st = rollouts_read_in(path, 0, fsize, &r, NULL);
        if (st == BR_OK) h5log_rollouts_free(&r);
    } else {
        h5log_scores s;
        st = scores_read_in(path, 0, fsize, &s, NULL);
        if (st == BR_OK) h5log_scores_free(&s);
    }
    char rec[1024];
    rec[0] = (char)st;
    snprintf(rec + 1, sizeof rec - 1, "%s", st == BR_OK ? "" : br_last_error());
    const size_t n = 1 + strlen(rec + 1);
    size_t done = 0;
    while (done < n) {
        const ssize_t w = write(wfd, rec + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    _exit(st == BR_OK ? 0 : 2);
}

/* CPU seconds process pid has used so far (/proc/<pid>/stat: utime + stime); -1 when unknown. */
static double rg_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *r = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long ut = 0, st = 0;
    if (!r || sscanf(r + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    const long tck = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(tck > 0 ? tck : 100);
}

/* CPU the child may use before its read is taken for one of libhdf5's endless loops: 0.75 s + 1 s per 64 MiB. An
 * undamaged version 1 file of ~50 KB takes ~10 ms (show, whole process); libhdf5's loops on a damaged one spin a core,
 * so they end here in under a second, while a read merely slowed by a loaded machine (little CPU, much wall time)
 * runs on to the wall deadline. */
#define RG_CPU_BASE_S 0.75

/* Reads the file at path (no integrity header; fsize bytes) in a child first. BR_OK: the child finished the validating
 * read, so this process may read it. Otherwise the file is refused with what happened to the child. */
static br_status rg_read(const char *path, rg_kind k, int64_t fsize) {
    const int secs = g_rg_seconds;
    if (secs <= 0) return BR_OK;
    const int limit = secs + (int)(fsize >> 26); /* + 1 s per 64 MiB: a large old file is not taken for a hang */
    const uint64_t vm = rg_vm_bytes();
    const uint64_t as_bytes = vm ? vm + RG_MEM_BASE + 4 * (uint64_t)fsize : 0;
    const char *what = "format_version 1 file (no integrity header)";
    int fds[2];
    if (pipe(fds) != 0)
        return br_fail(BR_ERUNTIME, "%s: cannot start the read guard (pipe): %s", path, strerror(errno));
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    const pid_t pid = fork();
    if (pid < 0) {
        const int e = errno;
        close(fds[0]);
        close(fds[1]);
        return br_fail(BR_ERUNTIME, "%s: cannot start the read guard (fork): %s", path, strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        rg_child(fds[1], path, k, fsize, as_bytes, limit);
    }
    close(fds[1]);
    g_rg_counts.runs++;
    char rec[1024];
    size_t got = 0;
    int timed_out = 0, spun = 0;
    const double deadline = br_now_s() + limit, cpu_limit = RG_CPU_BASE_S + (double)fsize / (double)(1 << 26);
    double cpu = 0;
    for (;;) { /* the record, then EOF when the child ends */
        const double left = deadline - br_now_s();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if ((cpu = rg_cpu_s(pid)) > cpu_limit) {
            spun = 1;
            break;
        }
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        const int pr = poll(&pf, 1, left < 0.05 ? (int)(left * 1000) + 1 : 50); /* the CPU is looked at every 50 ms */
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) break;
        if (pr == 0) continue;
        char tmp[256];
        const ssize_t r = read(fds[0], tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        const size_t keep = got + (size_t)r < sizeof rec - 1 ? (size_t)r : sizeof rec - 1 - got;
        memcpy(rec + got, tmp, keep);
        got += keep;
    }
    close(fds[0]);
    rec[got] = '\0';
    if (timed_out || spun) (void)kill(pid, SIGKILL);
    int ws = 0;
    pid_t w;
    while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR) {
    }
    if (spun) {
        g_rg_counts.timeouts++;
        return br_fail(BR_EFORMAT, "%s: %s: libhdf5 used %.2f s of CPU reading it without finishing (the limit for "
                                   "%lld bytes is %.2f s; a damaged file can make libhdf5 1.10 loop forever)",
                       path, what, cpu, (long long)fsize, cpu_limit);
    }
    if (timed_out) {
        g_rg_counts.timeouts++;
        return br_fail(BR_EFORMAT, "%s: %s: libhdf5 did not finish reading it within %d s (a damaged file can make "
                                   "libhdf5 1.10 loop forever; BITROLL_H5_GUARD_SECONDS sets the limit)",
                       path, what, limit);
    }
    const int reported = got >= 1 && rec[0] >= (char)BR_OK && rec[0] <= (char)BR_ERUNTIME;
    /* w < 0: the caller reaps its children itself (SIGCHLD ignored); the record is then all there is */
    const int exited = w < 0 || WIFEXITED(ws);
    if (w == pid && WIFSIGNALED(ws)) {
        const int sig = WTERMSIG(ws);
        g_rg_counts.signaled++;
        if (sig == SIGXCPU)
            return br_fail(BR_EFORMAT, "%s: corrupt %s: libhdf5 used more than %d s of CPU reading it", path, what,
                           limit + 1);
        return br_fail(BR_EFORMAT, "%s: corrupt %s: libhdf5 crashed (signal %d, %s) while reading it (in a guard "
                                   "process)", path, what, sig, strsignal(sig));
    }
    if (exited && reported && (br_status)rec[0] == BR_OK && (w < 0 || WEXITSTATUS(ws) == 0)) {
        g_rg_counts.clean++;
        return BR_OK;
    }
    if (exited && reported && (br_status)rec[0] != BR_OK) {
        g_rg_counts.failed++;
        return br_fail((br_status)rec[0], "%s", rec + 1);
    }
    g_rg_counts.other++;
    return br_fail(BR_EFORMAT, "%s: corrupt %s: the guard process reading it ended without a report (exit status %d: "
                               "a library aborted it)", path, what, w == pid && WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
}

/* What both readers do before libhdf5 opens the file in this process: the integrity header with plain reads, then,
 * for a file without it, the structure check with plain reads (h5v1_check: libhdf5 1.10.8 crashes or loops on some
 * damaged files) and the guarded read in a child, kept as a second line of defence. */
static br_status read_checks(const char *path, rg_kind k, int *has_header, int64_t *fsize) {
    br_status st = h5log_check_file(path, has_header, fsize);
    if (st == BR_OK && !*has_header) st = h5v1_check(path, *fsize);
    if (st == BR_OK && !*has_header) st = rg_read(path, k, *fsize);
    return st;
}

br_status h5log_rollouts_read(const char *path, h5log_rollouts *out, h5log_meta *meta) {
    if (!path || !out) return br_fail(BR_EINVAL, "h5log_rollouts_read: NULL argument");
    memset(out, 0, sizeof *out);
    if (meta) memset(meta, 0, sizeof *meta);
    int has_header = 0;
    int64_t fsize = 0;
    br_status st = read_checks(path, RG_ROLLOUTS, &has_header, &fsize);
    return st != BR_OK ? st : rollouts_read_in(path, has_header, fsize, out, meta);
}

br_status h5log_scores_read(const char *path, h5log_scores *out, h5log_meta *meta) {
    if (!path || !out) return br_fail(BR_EINVAL, "h5log_scores_read: NULL argument");
    memset(out, 0, sizeof *out);
    if (meta) memset(meta, 0, sizeof *meta);
    int has_header = 0;
    int64_t fsize = 0;
    br_status st = read_checks(path, RG_SCORES, &has_header, &fsize);
    return st != BR_OK ? st : scores_read_in(path, has_header, fsize, out, meta);
}

/* ---------------------------------------------------------------- freeing */

static void free_strings(char **s, int64_t n) {
    if (!s) return;
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

void h5log_rollouts_free(h5log_rollouts *r) {
    if (!r) return;
    free(r->sample_id);
    free(r->prompt_index);
    free(r->sample_index);
    free(r->prompt_offsets);
    free(r->prompt_tokens);
    free(r->completion_offsets);
    free(r->completion_tokens);
    free(r->logprobs);
    free(r->logits_digest);
    free(r->finish_reason);
    free(r->temperature);
    free(r->top_p);
    free(r->top_k);
    free(r->seed);
    free_strings(r->prompt_text, r->n);
    free_strings(r->completion_text, r->n);
    free_strings(r->full_text, r->n);
    memset(r, 0, sizeof *r);
}

void h5log_scores_free(h5log_scores *s) {
    if (!s) return;
    free(s->sample_id);
    free(s->completion_offsets);
    free(s->logprobs);
    free(s->logits_digest);
    memset(s, 0, sizeof *s);
}

void h5log_meta_free(h5log_meta *m) {
    if (!m) return;
    char *strs[] = {m->format, m->engine_version, m->git_rev, m->compiler, m->model_dir, m->model_fingerprint,
                    m->kernel_mode, m->device_names, m->config_json, m->lib_versions, m->hdf5_version,
                    m->mpi_version, m->rollouts_fingerprint};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(strs[i]);
    memset(m, 0, sizeof *m);
}
