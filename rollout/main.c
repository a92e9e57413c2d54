/* bitroll CLI entry point: dispatches the verbs (info, generate, score, verify, ...). */
#include <stdio.h>
#include <string.h>

#include "common/br.h"

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: bitroll <verb> [options]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "bitroll: unknown verb '%s'\n", argv[1]);
    return 2;
}
