#!/usr/bin/env bash
# Rank 0's peak memory against the output size (issue 16 item 2): `bitroll generate` of 500 .. 50,000 samples on the
# CPU, on 1 and 2 ranks, each run under /usr/bin/time -v; prints one table row per run: samples, ranks, rank 0's
# maximum resident set size, its ratio to the 500-sample run of the same rank count, rank 1's figure, wall time.
# The claim it measures (docs/RELIABILITY.md, "Peak RSS"): rank 0's memory does not grow with the output, because
# results stream to the journal and the file is written from it piece by piece.
#
#   bench/rss_scaling.sh [BITROLL] [MODEL]       (defaults: build/bitroll, configs/models/stories260K)
#   SIZES="500 5000 50000" RANKS="1 2" MAX_NEW=8 bench/rss_scaling.sh build-st/bitroll
#
# Prompts: {"prompt_ids": [1, a, b], "n": 10}, a and b varied, MAX_NEW tokens each with --no-stop (every completion
# has the same length, so the file grows linearly with the samples). Needs GNU time (/usr/bin/time) and, for
# RANKS > 1, mpirun (run as root: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; more ranks than cores:
# OMPI_MCA_rmaps_base_oversubscribe=1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BITROLL=${1:-$ROOT/build/bitroll}
MODEL=${2:-$ROOT/configs/models/stories260K}
SIZES=${SIZES:-500 5000 20000 50000}
RANKS=${RANKS:-1 2}
MAX_NEW=${MAX_NEW:-8}
TIME=/usr/bin/time
[ -x "$BITROLL" ] || { echo "rss_scaling.sh: $BITROLL is not an executable (build first, or pass its path)" >&2; exit 2; }
[ -x "$TIME" ] || { echo "rss_scaling.sh: needs GNU time at $TIME (apt-get install time)" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bitroll-rss.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "# bitroll rss_scaling: $("$BITROLL" --version 2>/dev/null | head -1 || echo bitroll)"
echo "# host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "# model: $MODEL, --max-new-tokens $MAX_NEW --no-stop, 10 samples a prompt, --device cpu"
printf "%8s %6s %14s %10s %14s %9s\n" samples ranks "rank0 MB" "vs 500" "rank1 MB" "wall s"

rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.1f", s}' "$1"; }

for np in $RANKS; do
    base=""
    for n in $SIZES; do
        p=$WORK/p$n.jsonl
        [ -f "$p" ] || awk -v n="$n" 'BEGIN { for (i = 0; i < n / 10; i++)
            printf "{\"prompt_ids\": [1, %d, %d], \"n\": 10}\n", 10 + i % 200, 20 + int(i / 200) % 200 }' > "$p"
        out=$WORK/o$n.np$np.h5
        args=(generate --model "$MODEL" --prompts "$p" --max-new-tokens "$MAX_NEW" --no-stop --quiet --out "$out")
        rm -f "$WORK"/rss.*
        if [ "$np" = 1 ]; then
            "$TIME" -v -o "$WORK/rss.0" "$BITROLL" "${args[@]}"
        else
            # one report a rank: OMPI_COMM_WORLD_RANK (Open MPI) or PMI_RANK (MPICH) names the file
            mpirun -np "$np" bash -c 'exec "$0" -v -o "$1/rss.${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}" "$2" "${@:3}"' \
                "$TIME" "$WORK" "$BITROLL" "${args[@]}"
        fi
        r0=$(rss_mb "$WORK/rss.0")
        r1=$([ -f "$WORK/rss.1" ] && rss_mb "$WORK/rss.1" || echo "-")
        [ -n "$base" ] || base=$r0
        printf "%8d %6d %14s %10s %14s %9s\n" "$n" "$np" "$r0" "$(awk -v a="$r0" -v b="$base" 'BEGIN {printf "%.3f", a / b}')" \
            "$r1" "$(wall_s "$WORK/rss.0")"
        rm -f "$out"
    done
done
