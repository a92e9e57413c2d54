/* Host helpers of the benchmark programs (bench/bench_*.c): a monotonic clock and the CPU's name for the table
 * header. Header-only: each benchmark is its own executable. */
#ifndef BENCH_HOST_H
#define BENCH_HOST_H

#include <stdio.h>
#include <string.h>
#include <time.h>

static inline double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The "model name" line of /proc/cpuinfo, or "unknown CPU". */
static inline void bench_cpu_model(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                snprintf(out, n, "%s", c);
                out[strcspn(out, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

#endif
