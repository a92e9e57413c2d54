/* Scratch files and data paths for the fuzz harnesses (see fuzz_util.h). */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX_NAMES 16

static char g_dir[256];
static char g_paths[FUZZ_MAX_NAMES][320];
static int g_n_paths;
long fuzz_accepted;

void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what);
    abort();
}

static void fuzz_cleanup(void) {
    for (int i = g_n_paths - 1; i >= 0; i--) {
        /* names with a '/' are sub-directories made by a harness (fuzz_scratch_path("tok/")) */
        size_t n = strlen(g_paths[i]);
        if (n && g_paths[i][n - 1] == '/') rmdir(g_paths[i]);
        else unlink(g_paths[i]);
    }
    if (g_dir[0]) rmdir(g_dir);
}

const char *fuzz_scratch_dir(void) {
    if (g_dir[0]) return g_dir;
    const char *base = "/dev/shm";
    struct stat sb;
    if (stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (!base || !base[0]) base = "/tmp";
    }
    snprintf(g_dir, sizeof g_dir, "%s/bitroll-fuzz.XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "fuzz: cannot create a scratch directory %s: %s\n", g_dir, strerror(errno));
        abort();
    }
    atexit(fuzz_cleanup);
    return g_dir;
}

const char *fuzz_scratch_path(const char *name) {
    const char *dir = fuzz_scratch_dir();
    char want[320];
    snprintf(want, sizeof want, "%s/%s", dir, name);
    for (int i = 0; i < g_n_paths; i++)
        if (strcmp(g_paths[i], want) == 0) return g_paths[i];
    if (g_n_paths == FUZZ_MAX_NAMES) {
        fprintf(stderr, "fuzz: more than %d scratch names\n", FUZZ_MAX_NAMES);
        abort();
    }
    snprintf(g_paths[g_n_paths], sizeof g_paths[0], "%s", want);
    size_t n = strlen(want);
    if (n && want[n - 1] == '/' && mkdir(want, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", want, strerror(errno));
        abort();
    }
    return g_paths[g_n_paths++];
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
            abort();
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "fuzz: cannot close %s: %s\n", path, strerror(errno));
        abort();
    }
}

const char *fuzz_test_data(void) {
    const char *e = getenv("BITROLL_FUZZ_DATA");
    return e && e[0] ? e : BR_TEST_DATA;
}

const char *fuzz_default_model(void) {
    const char *e = getenv("BITROLL_FUZZ_MODEL");
    return e && e[0] ? e : BR_DEFAULT_MODEL;
}
