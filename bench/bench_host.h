/* Host helpers of the benchmark programs (bench/bench_*.c): the CPU's name for the table header (the clock is
 * common/br.h's br_now_s). Header-only: each benchmark is its own executable. */
#ifndef BENCH_HOST_H
#define BENCH_HOST_H

#include <stdio.h>
#include <string.h>
#include "common/br.h"

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
