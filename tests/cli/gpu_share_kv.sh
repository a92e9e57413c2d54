# Shared prompt KV on the GPU (--device cuda): a prompt's samples sharing its prefilled KV pages (the default; the
# partly filled last prompt page copied per sample by kern_cuda_kv_copy_page, kernels/cuda/kv_write.cu) give rollouts
# bitwise equal to --no-share-prompt-kv, in the invariant and fp32 kernel modes, for n = 2 and 8, page sizes 1, 16,
# 17 (divides a 17-token prompt), 13 (divides the shared 39 tokens of a 40-token prompt), 5, max_seqs below n
# (a group split over admissions), stories260K and tiny-qwen3; verify of shared rollouts passes.
# Skipped (exit 77, "skipped") without a CUDA device or a CUDA build.
source "$(dirname "$0")/lib/common.bash" "$@"
require_cuda
write_prompts "$TMP/p.jsonl"
ids=1
for k in $(seq 1 39); do ids="$ids, $(( (k * 37) % 500 + 3 ))"; done
echo "{\"prompt_ids\": [$ids], \"id\": \"forty\"}" >>"$TMP/p.jsonl"
gen() { # gen MODEL OUT N KERNELS extra...
    local m=$1 out=$2 n=$3 k=$4
    shift 4
    "$BITROLL" generate --device cuda --kernels "$k" --model "$m" --prompts "$TMP/p.jsonl" --out "$out" --n "$n" \
        --temperature 1.0 --max-new-tokens 40 --seed 9 --stop-id 2 --stop-id 426 --quiet "$@"
}
for k in invariant fp32; do
    for n in 2 8; do
        for ps in 1 16 17 13 5; do
            gen "$MODEL" "$TMP/off.h5" $n $k --page-size $ps --no-share-prompt-kv
            gen "$MODEL" "$TMP/on.h5" $n $k --page-size $ps
            same_rollouts "$TMP/off.h5" "$TMP/on.h5"
            gen "$MODEL" "$TMP/on3.h5" $n $k --page-size $ps --max-seqs 3 --max-batch-tokens 40 --prefill-chunk 7
            same_rollouts "$TMP/off.h5" "$TMP/on3.h5"
        done
        echo "ok: --kernels $k, n = $n, page sizes 1 16 17 13 5: shared == unshared on the GPU"
    done
done
# on.h5 is the last run: --kernels fp32, so it is scored in that mode
"$BITROLL" score --device cuda --kernels fp32 --model "$MODEL" --rollouts "$TMP/on.h5" --out "$TMP/on.s.h5" --max-batch-tokens 37 --quiet
"$BITROLL" verify "$TMP/on.h5" "$TMP/on.s.h5" | tee "$TMP/v.txt"
grep -q "bitwise equal" "$TMP/v.txt" || fail "verify of shared rollouts on the GPU"
Q="$DATA/models/tiny-qwen3/bf16"
for k in invariant fp32; do
    gen "$Q" "$TMP/qoff.h5" 8 $k --page-size 16 --no-share-prompt-kv
    gen "$Q" "$TMP/qon.h5" 8 $k --page-size 16 --max-seqs 5
    same_rollouts "$TMP/qoff.h5" "$TMP/qon.h5"
    echo "ok: tiny-qwen3 --kernels $k n = 8: shared == unshared on the GPU"
done
echo "PASS"
