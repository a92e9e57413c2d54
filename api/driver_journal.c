/* The results journal (api/driver.h, docs/FORMAT.md "Journal"): each data-parallel group's first rank appends every
 * finished job to its own shard OUT.parts/g<group>.<attempt>.bin, so results reach disk as they complete and a run
 * killed at any point can be resumed (--resume) without recomputing them. Records carry an xxh64 checksum: a torn
 * last record (kill -9 in the middle of a write) is detected and ignored. Plain stdio; nothing here knows HDF5. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "api/driver.h"

#define JOURNAL_MAGIC "BRJOURN1"
#define JOURNAL_VERSION 1u
#define JOURNAL_HEADER 32 /* magic[8], u32 version, u32 group, u64 job key, u64 n_jobs */
#define RECORD_HEADER 16  /* i64 job index, i32 n, i8 finish, 3 zero bytes */
#define RECORD_MAX_TOKENS (1 << 26)

struct driver_journal {
    FILE *f;
    char *path;
    int64_t records;
    int64_t kill_after; /* test fault injection (BITROLL_INJECT_KILL_AFTER_RECORDS); 0: off */
};

static void key_add(XXH64_state_t *s, const void *p, size_t n) {
    if (n) XXH64_update(s, p, n);
}

uint64_t driver_job_key(uint64_t weights_fp, const char *verb, int mode, const driver_jobs *jobs) {
    XXH64_state_t *s = XXH64_createState();
    if (!s) return 0;
    const int64_t n_jobs = jobs->n;
    XXH64_reset(s, 0x626974726f6c6cULL);
    key_add(s, verb, strlen(verb) + 1);
    key_add(s, &weights_fp, 8);
    int32_t m = mode;
    key_add(s, &m, 4);
    key_add(s, &n_jobs, 8);
    for (int64_t i = 0; i < n_jobs; i++) {
        rollout_job job;
        jobs->get(jobs->ctx, i, &job);
        const rollout_job *j = &job;
        int32_t hdr[5] = {j->prompt_len, j->max_new, j->n_stop, j->forced ? j->n_forced : -1, j->sampling.top_k};
        key_add(s, &j->sample_id, 8);
        key_add(s, hdr, sizeof hdr);
        key_add(s, &j->sampling.temperature, 4);
        key_add(s, &j->sampling.top_p, 4);
        key_add(s, &j->sampling.seed, 8);
        key_add(s, j->prompt, 4 * (size_t)j->prompt_len);
        if (j->n_stop > 0) key_add(s, j->stop_ids, 4 * (size_t)j->n_stop);
        if (j->forced && j->n_forced > 0) key_add(s, j->forced, 4 * (size_t)j->n_forced);
    }
    uint64_t k = XXH64_digest(s);
    XXH64_freeState(s);
    return k;
}

static void array_get(void *ctx, int64_t i, rollout_job *out) { *out = ((const rollout_job *)ctx)[i]; }

driver_jobs driver_jobs_array(const rollout_job *jobs, int64_t n) {
    driver_jobs d = {n, array_get, (void *)jobs};
    return d;
}

char *driver_parts_dir(const char *out) {
    size_t n = strlen(out) + 8;
    char *d = malloc(n);
    if (d) snprintf(d, n, "%s.parts", out);
    return d;
}

static int shard_name(const char *name, int *group, int *attempt) {
    char tail[8] = "";
    return sscanf(name, "g%d.%d.%4s", group, attempt, tail) == 3 && !strcmp(tail, "bin") && *group >= 0 &&
           *attempt >= 0;
}

/* index.<pid>.tmp: the journal index where the file system has no O_TMPFILE, left behind only by a kill between its
 * creation and its removal a moment later (index_create) */
static int index_name(const char *name) {
    long pid = 0;
    char tail[8] = "";
    return sscanf(name, "index.%ld.%4s", &pid, tail) == 2 && !strcmp(tail, "tmp");
}

br_status driver_parts_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? BR_OK : br_fail(BR_EIO, "%s: cannot open: %s", dir, strerror(errno));
    br_status rc = BR_OK;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        int g, a;
        if (!shard_name(e->d_name, &g, &a) && !index_name(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && rc == BR_OK) rc = br_fail(BR_EIO, "%s: cannot remove: %s", path, strerror(errno));
    }
    closedir(d);
    if (rc == BR_OK && rmdir(dir) != 0 && errno != ENOENT)
        rc = br_fail(BR_EIO, "%s: cannot remove the journal directory (does it hold other files?): %s", dir,
                     strerror(errno));
    return rc;
}

br_status driver_parts_create(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return br_fail(BR_EIO, "%s: cannot create the journal directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return br_fail(BR_EIO, "%s: exists and is not a directory (the journal of --out lives there)", dir);
    return BR_OK;
}

/* Where each job's record is (driver_parts_open): 16 bytes a job. The index lives in a file of the journal's directory
 * (unlinked as soon as it is open: nothing is left behind) and is read through one cached page, so rank 0's memory
 * does not grow with the jobs: the writer asks for jobs in increasing order, dataset by dataset (a text dataset's
 * strips go backwards by blocks: a page is read again now and then). offset 0 marks a job without a record (a
 * record's header is never at 0: the shard's header is). */
typedef struct {
    int64_t offset; /* of the record's header in its shard; 0: none */
    int32_t n;      /* completion tokens */
    int16_t shard;  /* into driver_parts.fd */
    int8_t finish;
    int8_t pad;
} parts_rec;

#define INDEX_PAGE 4096 /* records a page: 64 KiB */

struct driver_parts {
    int n_shards;
    int fd[DRIVER_PARTS_MAX_SHARDS];
    char *path[DRIVER_PARTS_MAX_SHARDS];
    int64_t n_jobs;
    char *dir;                   /* for messages */
    int ifd;                     /* the index file, -1: none */
    int64_t page;                /* the page held in buf, -1: none */
    int dirty;                   /* buf differs from the file */
    parts_rec buf[INDEX_PAGE];   /* (INDEX_PAGE) records page * INDEX_PAGE .. */
};

static br_status index_io(driver_parts *p, int write, int64_t page) {
    const off_t at = (off_t)page * (off_t)sizeof p->buf;
    size_t done = 0;
    while (done < sizeof p->buf) {
        ssize_t k = write ? pwrite(p->ifd, (const char *)p->buf + done, sizeof p->buf - done, at + (off_t)done)
                          : pread(p->ifd, (char *)p->buf + done, sizeof p->buf - done, at + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || (write && k == 0))
            return br_fail(BR_EIO, "%s: %s the journal index failed: %s", p->dir, write ? "writing" : "reading",
                           k < 0 ? strerror(errno) : "no progress");
        if (k == 0) { /* beyond what was written: no records */
            memset((char *)p->buf + done, 0, sizeof p->buf - done);
            break;
        }
        done += (size_t)k;
    }
    return BR_OK;
}

/* *r = job's entry in the cached page (the page that holds it is read first, the previous one written back). */
static br_status index_at(driver_parts *p, int64_t job, parts_rec **r) {
    const int64_t page = job / INDEX_PAGE;
    if (page != p->page) {
        br_status rc = p->dirty && p->page >= 0 ? index_io(p, 1, p->page) : BR_OK;
        p->dirty = 0;
        p->page = -1;
        if (rc == BR_OK) rc = index_io(p, 0, page);
        if (rc != BR_OK) return rc;
        p->page = page;
    }
    *r = &p->buf[job % INDEX_PAGE];
    return BR_OK;
}

/* An unnamed file in dir: O_TMPFILE where the file system has it, else a name that is removed at once. */
static br_status index_create(driver_parts *p, const char *dir) {
#ifdef O_TMPFILE
    p->ifd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (p->ifd >= 0) return BR_OK;
#endif
    char path[4096];
    snprintf(path, sizeof path, "%s/index.%ld.tmp", dir, (long)getpid());
    p->ifd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (p->ifd < 0) return br_fail(BR_EIO, "%s: cannot create the journal index: %s", path, strerror(errno));
    if (unlink(path) != 0) return br_fail(BR_EIO, "%s: cannot remove the journal index: %s", path, strerror(errno));
    return BR_OK;
}

/* Reads one shard: every intact record until the first torn or invalid one. Each job's first intact record (over the
 * shards, in the order read) counts: done[job] is set or, when done is NULL, p's index gets where it is. The checksum
 * is checked here, record by record (one record in memory at a time), so the readers of driver_parts_load trust the
 * offsets. */
static br_status read_shard(const char *path, int shard, uint64_t key, int64_t n_jobs, uint8_t *done, driver_parts *p,
                            int64_t *n_done) {
    FILE *f = fopen(path, "rb");
    if (!f) return br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
    br_status rc = BR_OK;
    unsigned char h[JOURNAL_HEADER];
    unsigned char *buf = NULL;
    size_t cap = 0;
    int64_t at = JOURNAL_HEADER;
    XXH64_state_t *s = XXH64_createState();
    if (!s) {
        rc = br_fail(BR_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (fread(h, 1, sizeof h, f) != sizeof h) goto cleanup; /* killed before its header was written: empty */
    uint32_t ver;
    uint64_t k, nj;
    memcpy(&ver, h + 8, 4);
    memcpy(&k, h + 16, 8);
    memcpy(&nj, h + 24, 8);
    if (memcmp(h, JOURNAL_MAGIC, 8) != 0 || ver != JOURNAL_VERSION) {
        rc = br_fail(BR_EINVAL, "%s: not a bitroll journal of version %u (remove it, or run without --resume)", path,
                     JOURNAL_VERSION);
        goto cleanup;
    }
    if (k != key || (int64_t)nj != n_jobs) {
        rc = br_fail(BR_EINVAL, "%s: the journal belongs to another job (job key %016llx, %lld jobs; this job's: "
                                "%016llx, %lld jobs): other weights, prompts or sampling options; run without --resume "
                                "to start over (the journal is then removed)",
                     path, (unsigned long long)k, (long long)nj, (unsigned long long)key, (long long)n_jobs);
        goto cleanup;
    }
    for (;;) {
        unsigned char rh[RECORD_HEADER];
        if (fread(rh, 1, sizeof rh, f) != sizeof rh) break;
        int64_t job;
        int32_t n;
        memcpy(&job, rh, 8);
        memcpy(&n, rh + 8, 4);
        if (job < 0 || job >= n_jobs || n < 0 || n > RECORD_MAX_TOKENS) break;
        size_t len = 16 * (size_t)n + 8;
        if (len > cap) {
            unsigned char *t = realloc(buf, len);
            if (!t) {
                rc = br_fail(BR_ENOMEM, "%s: out of memory for a record of %d tokens", path, n);
                goto cleanup;
            }
            buf = t;
            cap = len;
        }
        if (fread(buf, 1, len, f) != len) break;
        XXH64_reset(s, key);
        XXH64_update(s, rh, sizeof rh);
        XXH64_update(s, buf, len - 8);
        uint64_t sum = XXH64_digest(s), want;
        memcpy(&want, buf + len - 8, 8);
        if (sum != want) break; /* torn or damaged: it and what follows are not trusted */
        const int64_t here = at;
        at += RECORD_HEADER + (int64_t)len;
        if (done) {
            if (done[job]) continue;
            done[job] = 1;
        } else {
            parts_rec *r = NULL;
            if ((rc = index_at(p, job, &r)) != BR_OK) goto cleanup;
            if (r->offset) continue;
            *r = (parts_rec){here, n, (int16_t)shard, (int8_t)rh[12], 0};
            p->dirty = 1;
        }
        (*n_done)++;
    }
cleanup:
    if (s) XXH64_freeState(s);
    free(buf);
    fclose(f);
    return rc;
}

/* Every shard of dir, in readdir order, into done (p NULL) or p's index (done NULL). */
static br_status read_dir(const char *dir, uint64_t key, int64_t n_jobs, uint8_t *done, int64_t *n_done,
                          int *next_attempt, driver_parts *p) {
    *n_done = 0;
    if (next_attempt) *next_attempt = 0;
    if (done) memset(done, 0, (size_t)n_jobs);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? BR_OK : br_fail(BR_EIO, "%s: cannot open: %s", dir, strerror(errno));
    br_status rc = BR_OK;
    struct dirent *e;
    char path[4096];
    while (rc == BR_OK && (e = readdir(d)) != NULL) {
        int g, a;
        if (!shard_name(e->d_name, &g, &a)) continue;
        if (next_attempt && a + 1 > *next_attempt) *next_attempt = a + 1;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (p) {
            if (p->n_shards == DRIVER_PARTS_MAX_SHARDS) {
                rc = br_fail(BR_EINVAL, "%s: more than %d journal shards (groups x resumed attempts); run without "
                                        "--resume to start over",
                             dir, DRIVER_PARTS_MAX_SHARDS);
                break;
            }
            /* opened before it is read, so the offsets found are offsets in this very file */
            const int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                rc = br_fail(BR_EIO, "%s: cannot open: %s", path, strerror(errno));
                break;
            }
            p->fd[p->n_shards] = fd;
            p->path[p->n_shards] = strdup(path);
            if (!p->path[p->n_shards++]) {
                rc = br_fail(BR_ENOMEM, "out of memory");
                break;
            }
        }
        rc = read_shard(path, p ? p->n_shards - 1 : 0, key, n_jobs, done, p, n_done);
    }
    closedir(d);
    return rc;
}

br_status driver_parts_read(const char *dir, uint64_t key, int64_t n_jobs, uint8_t *done, int64_t *n_done,
                            int *next_attempt) {
    return read_dir(dir, key, n_jobs, done, n_done, next_attempt, NULL);
}

br_status driver_parts_open(const char *dir, uint64_t key, int64_t n_jobs, driver_parts **out, int64_t *n_done) {
    *out = NULL;
    *n_done = 0;
    br_status rc = BR_OK;
    driver_parts *p = calloc(1, sizeof *p);
    if (p) {
        p->ifd = -1;
        p->page = -1;
        p->dir = strdup(dir);
    }
    if (!p || !p->dir) {
        rc = br_fail(BR_ENOMEM, "out of memory for the journal index");
        goto cleanup;
    }
    p->n_jobs = n_jobs;
    if ((rc = index_create(p, dir)) != BR_OK) goto cleanup;
    rc = read_dir(dir, key, n_jobs, NULL, n_done, NULL, p);
cleanup:
    if (rc == BR_OK) *out = p;
    else driver_parts_close(p);
    return rc;
}

/* *out = job's entry, which must exist. */
static br_status rec_of(driver_parts *p, int64_t job, parts_rec *out) {
    parts_rec *r = NULL;
    if (job < 0 || job >= p->n_jobs)
        return br_fail(BR_EINVAL, "journal: job %lld of %lld", (long long)job, (long long)p->n_jobs);
    br_status rc = index_at(p, job, &r);
    if (rc != BR_OK) return rc;
    if (!r->offset) return br_fail(BR_ERUNTIME, "%s: job %lld has no record", p->dir, (long long)job);
    *out = *r;
    return BR_OK;
}

br_status driver_parts_get(driver_parts *p, int64_t job, int32_t *n, int8_t *finish) {
    parts_rec r = {0};
    br_status rc = rec_of(p, job, &r);
    if (rc != BR_OK) return rc;
    if (n) *n = r.n;
    if (finish) *finish = r.finish;
    return BR_OK;
}

br_status driver_parts_load(driver_parts *p, int64_t job, driver_part what, int64_t from, int64_t count,
                            void *buf) {
    parts_rec rec = {0};
    br_status rc = rec_of(p, job, &rec);
    if (rc != BR_OK) return rc;
    const parts_rec *r = &rec;
    if (from < 0 || count < 0 || from + count > r->n)
        return br_fail(BR_EINVAL, "journal: job %lld: elements %lld..%lld of a record of %d", (long long)job,
                       (long long)from, (long long)(from + count), r->n);
    /* a record: header (16), tokens (4n), logprobs (4n), digests (8n), checksum (8) */
    const int64_t esize = what == DRIVER_PART_DIGESTS ? 8 : 4;
    const int64_t base = what == DRIVER_PART_TOKENS     ? 0
                         : what == DRIVER_PART_LOGPROBS ? 4 * (int64_t)r->n
                                                        : 8 * (int64_t)r->n;
    const size_t len = (size_t)(count * esize);
    off_t off = (off_t)(r->offset + RECORD_HEADER + base + from * esize);
    size_t got = 0;
    while (got < len) {
        ssize_t k = pread(p->fd[r->shard], (char *)buf + got, len - got, off + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return br_fail(BR_EIO, "%s: reading the record of job %lld back failed: %s", p->path[r->shard],
                           (long long)job, k < 0 ? strerror(errno) : "the file is shorter than when it was read");
        got += (size_t)k;
    }
    return BR_OK;
}

void driver_parts_close(driver_parts *p) {
    if (!p) return;
    for (int i = 0; i < p->n_shards; i++) {
        if (p->fd[i] >= 0) close(p->fd[i]);
        free(p->path[i]);
    }
    if (p->ifd >= 0) close(p->ifd);
    free(p->dir);
    free(p);
}

br_status driver_journal_open(const char *dir, int group, int attempt, uint64_t key, int64_t n_jobs,
                              int64_t kill_after, driver_journal **out) {
    *out = NULL;
    driver_journal *j = calloc(1, sizeof *j);
    size_t n = strlen(dir) + 48;
    if (!j || !(j->path = malloc(n))) {
        free(j);
        return br_fail(BR_ENOMEM, "out of memory");
    }
    snprintf(j->path, n, "%s/g%d.%d.bin", dir, group, attempt);
    j->f = fopen(j->path, "wb");
    if (!j->f) {
        br_status rc = br_fail(BR_EIO, "%s: cannot create the journal shard: %s", j->path, strerror(errno));
        free(j->path);
        free(j);
        return rc;
    }
    unsigned char h[JOURNAL_HEADER] = {0};
    const uint32_t ver = JOURNAL_VERSION, g = (uint32_t)group;
    const uint64_t nj = (uint64_t)n_jobs;
    memcpy(h, JOURNAL_MAGIC, 8);
    memcpy(h + 8, &ver, 4);
    memcpy(h + 12, &g, 4);
    memcpy(h + 16, &key, 8);
    memcpy(h + 24, &nj, 8);
    /* The tests' fault injection: this process kills itself (SIGKILL) after that many records are on disk. */
    j->kill_after = kill_after;
    *out = j;
    if (fwrite(h, 1, sizeof h, j->f) != sizeof h || fflush(j->f) != 0)
        return br_fail(BR_ERUNTIME, "%s: writing the journal header failed: %s", j->path, strerror(errno));
    return BR_OK;
}

br_status driver_journal_append(driver_journal *j, uint64_t key, int64_t job, const rollout_result *r) {
    unsigned char rh[RECORD_HEADER] = {0};
    const int32_t n = r->n;
    memcpy(rh, &job, 8);
    memcpy(rh + 8, &n, 4);
    rh[12] = (unsigned char)r->finish;
    XXH64_state_t *s = XXH64_createState();
    if (!s) return br_fail(BR_ENOMEM, "out of memory");
    XXH64_reset(s, key);
    XXH64_update(s, rh, sizeof rh);
    if (n > 0) {
        XXH64_update(s, r->tokens, 4 * (size_t)n);
        XXH64_update(s, r->logprobs, 4 * (size_t)n);
        XXH64_update(s, r->digests, 8 * (size_t)n);
    }
    uint64_t sum = XXH64_digest(s);
    XXH64_freeState(s);
    /* one fflush per record: a killed process leaves every earlier record in the kernel's hands (no fsync: a machine
     * crash may lose the tail, which the checksums then reject) */
    if (fwrite(rh, 1, sizeof rh, j->f) != sizeof rh || (n > 0 && (fwrite(r->tokens, 4, (size_t)n, j->f) != (size_t)n ||
                                                                  fwrite(r->logprobs, 4, (size_t)n, j->f) != (size_t)n ||
                                                                  fwrite(r->digests, 8, (size_t)n, j->f) != (size_t)n)) ||
        fwrite(&sum, 8, 1, j->f) != 1 || fflush(j->f) != 0)
        return br_fail(BR_ERUNTIME, "%s: appending a record failed: %s", j->path, strerror(errno));
    j->records++;
    if (j->kill_after > 0 && j->records >= j->kill_after) raise(SIGKILL);
    return BR_OK;
}

br_status driver_journal_close(driver_journal *j) {
    if (!j) return BR_OK;
    br_status rc = BR_OK;
    if (j->f && fclose(j->f) != 0) rc = br_fail(BR_ERUNTIME, "%s: closing the journal failed: %s", j->path, strerror(errno));
    free(j->path);
    free(j);
    return rc;
}
