#!/usr/bin/env bash
# Data-parallel generate throughput (issue: DP on 2 GPUs >= 1.8x one GPU): the same job with 1 rank and with N ranks
# (one per GPU), by default 512 prompts x 256 new tokens at temperature 1.0 on a Qwen3-0.6B-shape random model.
# Prints a table -- ranks, wall seconds of the run, the completion tokens/s that `bitroll generate` reports (its
# clock starts after the model is loaded), speed-up over 1 rank -- and checks that every N-rank rollouts file equals
# the 1-rank one bitwise (rollouts_cmp: every /samples dataset). A benchmark: it prints what it measured and exits
# non-zero only when a run fails or the rollouts differ, never on speed.
# usage: bash bench/bench_dp.sh [BUILD_DIR]                     (repository root; default BUILD_DIR build-gpu)
# env:   RANKS="1 2" (rank counts; default 1 and the visible GPU count), PROMPTS=512, NEW=256, PROMPT_LEN=64,
#        CFG=configs/shapes/qwen3-0.6b.json or MODEL=DIR (a checkpoint instead), DEVICE=cuda, KERNELS=invariant,
#        MAX_SEQS=256, MAX_BATCH_TOKENS=2048 (per rank), LOGS=dir (default $OUT or ./bench-dp-out), JSON=file
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
BITROLL=$BUILD/bitroll
CMP=$BUILD/tests/rollouts_cmp
OUTD=${LOGS:-${OUT:-$ROOT/bench-dp-out}}
mkdir -p "$OUTD"
for f in "$BITROLL" "$CMP"; do [ -x "$f" ] || { echo "bench_dp: $f not found (build first)" >&2; exit 2; }; done
PROMPTS=${PROMPTS:-512} NEW=${NEW:-256} PROMPT_LEN=${PROMPT_LEN:-64} DEVICE=${DEVICE:-cuda}
KERNELS=${KERNELS:-invariant} MAX_SEQS=${MAX_SEQS:-256} MAX_BATCH_TOKENS=${MAX_BATCH_TOKENS:-2048}
# GPUs this process may use: CUDA_VISIBLE_DEVICES's entries when it is set, else nvidia-smi's list
visible_gpus() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[^ ]' || true
    else nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true; fi
}
if [ -z "${RANKS:-}" ]; then
    NGPU=$(visible_gpus)
    RANKS="1"
    [ "${NGPU:-0}" -ge 2 ] && RANKS="1 $NGPU"
fi
RANKS=$(echo $RANKS) # whitespace normalized
if [ -n "${MODEL:-}" ]; then WEIGHTS=(--model "$MODEL"); VOCAB_HINT=${VOCAB:-500}; desc="model $MODEL"
else CFG=${CFG:-configs/shapes/qwen3-0.6b.json}; WEIGHTS=(--random-weights "$CFG"); VOCAB_HINT=${VOCAB:-150000}; desc="$CFG, random weights"; fi
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# prompts: PROMPT_LEN token ids each, a fixed pseudo-random pattern below VOCAB_HINT
awk -v n="$PROMPTS" -v len="$PROMPT_LEN" -v v="$VOCAB_HINT" 'BEGIN {
    for (i = 0; i < n; i++) { s = "{\"prompt_ids\": ["; for (k = 0; k < len; k++) s = s (k ? ", " : "") (i * 7919 + k * 104729) % (v - 100) + 50; print s "]}" } }' \
    >"$OUTD/dp_prompts.jsonl"
echo "bench_dp: $desc, $PROMPTS prompts x $NEW new tokens (prompt $PROMPT_LEN), device $DEVICE, kernels $KERNELS, ranks: $RANKS"
printf '%-6s %10s %16s %10s %s\n' ranks seconds "gen tok/s" speedup rollouts
base=""
status=0
json="["
sep=""
first=${RANKS%% *}
for np in $RANKS; do
    out="$OUTD/dp_np$np.h5"
    rm -f "$out"
    t0=$(date +%s.%N)
    mpirun --allow-run-as-root --oversubscribe -np "$np" "$BITROLL" generate "${WEIGHTS[@]}" --device "$DEVICE" \
        --kernels "$KERNELS" --prompts "$OUTD/dp_prompts.jsonl" --out "$out" --temperature 1.0 --max-new-tokens "$NEW" \
        --no-stop --max-seqs "$MAX_SEQS" --max-batch-tokens "$MAX_BATCH_TOKENS" >"$OUTD/dp_np$np.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    if [ $rc != 0 ]; then
        echo "bench_dp: generate with $np rank(s) failed (exit $rc); log $OUTD/dp_np$np.log:" >&2
        tail -5 "$OUTD/dp_np$np.log" >&2
        status=1
        continue
    fi
    tps=$(sed -n 's/.*\[bitroll generate\] wrote .* \([0-9][0-9]*\) tokens\/s.*/\1/p' "$OUTD/dp_np$np.log" | tail -1)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    same="-"
    if [ "$np" = "$first" ]; then base=$tps; ref=$out
    elif [ -z "${ref:-}" ]; then same="not compared (the $first-rank run failed)"
    elif "$CMP" "$ref" "$out" >"$OUTD/dp_cmp_np$np.txt" 2>&1; then same="bitwise equal to $first rank(s)"
    else same="DIFFERENT (see $OUTD/dp_cmp_np$np.txt)"; status=1; fi
    sp=$(awk -v a="${tps:-0}" -v b="${base:-0}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }')
    printf '%-6s %10s %16s %10s %s\n' "$np" "$wall" "${tps:-?}" "$sp" "$same"
    json="$json$sep{\"ranks\": $np, \"seconds\": $wall, \"gen_tok_s\": ${tps:-null}}"
    sep=", "
done
json="$json]"
[ -n "${JSON:-}" ] && echo "$json" >"$JSON"
exit $status
