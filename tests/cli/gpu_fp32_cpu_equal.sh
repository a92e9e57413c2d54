# CPU == GPU in the fp32 kernel mode, bitwise (issue 17 item 3; docs/REPRODUCIBILITY.md): for every bundled checkpoint
# (stories260K and tiny-{llama,qwen3,gpt2} in f32 and bf16), greedy and T = 1 with top-p 0.9:
# - `generate --device cuda --kernels fp32` writes the same /samples datasets as `generate --device cpu` (memcmp:
#   tokens, log-probs, logits digests);
# - `score --device cpu` of the GPU's rollouts, then `verify`, exits 0 (the log-probs re-score bit for bit);
# - `score --device cuda --kernels fp32` equals `score --device cpu` (scores_cmp);
# - tensor parallel: `--tp 2 --kernels fp32` on two ranks (NCCL on two GPUs, MPI host buffers on one) writes the
#   CPU's rollouts too, and scores made that way verify the CPU's rollouts.
# Skipped (exit 77, "skipped") without a CUDA device or a CUDA build.
source "$(dirname "$0")/lib/common.bash" "$@"
require_cuda
write_prompts "$TMP/p.jsonl"
ids=1
for k in $(seq 1 70); do ids="$ids, $(( (k * 37) % 500 + 3 ))"; done
echo "{\"prompt_ids\": [$ids], \"id\": \"long\"}" >>"$TMP/p.jsonl"
n_ok=0
for m in "$MODEL" "$DATA"/models/tiny-{llama,qwen3,gpt2}/{f32,bf16}; do
    for t in "--temperature 0" "--temperature 1 --top-p 0.9"; do
        # shellcheck disable=SC2086
        G=(--model "$m" --prompts "$TMP/p.jsonl" --n 3 --max-new-tokens 40 --seed 5 --no-stop --quiet $t)
        "$BITROLL" generate --device cuda --kernels fp32 "${G[@]}" --out "$TMP/gpu.h5"
        "$BITROLL" generate --device cpu "${G[@]}" --out "$TMP/cpu.h5"
        same_rollouts "$TMP/cpu.h5" "$TMP/gpu.h5"
        "$BITROLL" score --device cpu --model "$m" --rollouts "$TMP/gpu.h5" --out "$TMP/cpu.s.h5" --quiet
        "$BITROLL" verify "$TMP/gpu.h5" "$TMP/cpu.s.h5" >"$TMP/v.txt" || { cat "$TMP/v.txt"; fail "$m ($t): GPU rollouts do not verify against CPU scores"; }
        "$BITROLL" score --device cuda --kernels fp32 --model "$m" --rollouts "$TMP/gpu.h5" --out "$TMP/gpu.s.h5" \
            --max-batch-tokens 37 --quiet
        "$TOOLS/scores_cmp" "$TMP/cpu.s.h5" "$TMP/gpu.s.h5" || fail "$m ($t): GPU fp32 scores differ from the CPU's"
        n_ok=$((n_ok + 1))
        echo "ok: $(basename "$(dirname "$m")")/$(basename "$m") $t: GPU fp32 == CPU (generate, score), verify exit 0"
    done
done
[ "$n_ok" = 14 ] || fail "expected 14 cases, ran $n_ok"
echo "ok: $n_ok cases, CPU == GPU bitwise in the fp32 mode"

# --tp 2 in the fp32 mode: each rank computes its heads' / MLP chunks' partials, the group all-gathers them and sums
# all chunks by the CPU's tree, so the bits are one rank's, hence the CPU's
two_ranks_env
n_tp=0
for m in "$MODEL" "$DATA"/models/tiny-{llama,qwen3,gpt2}/{f32,bf16}; do
    G=(--model "$m" --prompts "$TMP/p.jsonl" --n 3 --max-new-tokens 40 --seed 5 --no-stop --quiet --temperature 1 --top-p 0.9)
    "$BITROLL" generate --device cpu "${G[@]}" --out "$TMP/cpu.h5"
    mpirun_np 2 "$BITROLL" generate --device cuda --kernels fp32 --tp 2 "${G[@]}" --out "$TMP/tp2.h5" 2>"$TMP/tp2.err" \
        || { cat "$TMP/tp2.err"; fail "$m: generate --tp 2 --kernels fp32 failed"; }
    same_rollouts "$TMP/cpu.h5" "$TMP/tp2.h5"
    mpirun_np 2 "$BITROLL" score --device cuda --kernels fp32 --tp 2 --model "$m" --rollouts "$TMP/cpu.h5" \
        --out "$TMP/tp2.s.h5" --max-batch-tokens 37 --quiet
    "$BITROLL" verify "$TMP/cpu.h5" "$TMP/tp2.s.h5" >"$TMP/v.txt" || { cat "$TMP/v.txt"; fail "$m: CPU rollouts do not verify against --tp 2 fp32 GPU scores"; }
    n_tp=$((n_tp + 1))
    echo "ok: $(basename "$(dirname "$m")")/$(basename "$m"): GPU fp32 --tp 2 == CPU (generate), verify of its scores exit 0"
done
[ "$n_tp" = 7 ] || fail "expected 7 --tp 2 cases, ran $n_tp"
echo "ok: $n_tp checkpoints, --tp 2 on the GPU == CPU bitwise in the fp32 mode"
