# GPU end to end (--device cuda); skipped (exit 77) where no CUDA device or no CUDA build is present.
# - stories260K greedy from BOS in the fp32 kernel mode reproduces llama2.c's 256 tokens;
# - invariant mode: the same rollouts for different --max-batch-tokens / --max-seqs / --prefill-chunk;
# - score then verify exits 0 on the GPU for stories260K, tiny-qwen3 (bf16), tiny-llama (bf16, head_dim 16),
#   tiny-gpt2, at temperature 1.0 (and top-p 0.9 on stories);
# - data parallel: 2 ranks (sharing the GPU where there is one; device weights broadcast from rank 0) give the
#   rollouts of 1 rank; verify across rank counts; a Qwen3-0.6B-shape random model, 256 prompts x 128 tokens: score then verify exits 0;
# - standard mode: CUDA graphs per batch size and split-KV count give the rollouts of a run without graphs;
# - invariant mode, long rows at small batch (the ordered split): graphs or not, batch 1 or 2: same rollouts, verified;
# - tensor parallel: --tp 2 == --tp 1 (tiny-qwen3, Qwen3-0.6B shape), verify across TP degrees.
source "$(dirname "$0")/lib/common.bash" "$@"
echo '{"prompt_ids": [1]}' >"$TMP/bos.jsonl"
code=0
"$BITROLL" generate --device cuda --kernels fp32 --model "$MODEL" --prompts "$TMP/bos.jsonl" --out "$TMP/greedy.h5" \
    --temperature 0 --max-new-tokens 256 --no-stop --quiet 2>"$TMP/probe.txt" || code=$?
if [ "$code" != 0 ] && grep -qE "no CUDA device|built without CUDA" "$TMP/probe.txt"; then
    echo "skipped: $(cat "$TMP/probe.txt")"
    exit 77
fi
[ "$code" = 0 ] || { cat "$TMP/probe.txt"; fail "generate --device cuda failed"; }
want=$(tr -s ' \n' ' ' <"$DATA/stories260K/greedy_from_bos.tokens" | sed 's/ *$//')
got=$("$BITROLL" show --ids "$TMP/greedy.h5" | sed -n 's/^completion: //p')
[ "$got" = "$want" ] || { echo "got:  $got"; echo "want: $want"; fail "fp32-mode greedy differs from llama2.c"; }
echo "ok: fp32 mode greedy from BOS = llama2.c's 256 tokens"

write_prompts "$TMP/p.jsonl"
gen() { # gen MODEL OUT extra...
    local m=$1 out=$2
    shift 2
    "$BITROLL" generate --device cuda --model "$m" --prompts "$TMP/p.jsonl" --out "$out" --n 3 --temperature 1.0 \
        --max-new-tokens 40 --seed 5 --quiet "$@"
}
gen "$MODEL" "$TMP/a.h5"
gen "$MODEL" "$TMP/b.h5" --max-batch-tokens 1 --max-seqs 1
gen "$MODEL" "$TMP/c.h5" --max-batch-tokens 1000 --max-seqs 200 --prefill-chunk 3
same_rollouts "$TMP/a.h5" "$TMP/b.h5"
same_rollouts "$TMP/a.h5" "$TMP/c.h5"

check_verify() { # check_verify MODEL NAME gen-args...
    local m=$1 name=$2
    shift 2
    gen "$m" "$TMP/$name.h5" "$@"
    "$BITROLL" score --device cuda --model "$m" --rollouts "$TMP/$name.h5" --out "$TMP/$name.s.h5" \
        --max-batch-tokens 37 --max-seqs 3 --quiet
    "$BITROLL" verify "$TMP/$name.h5" "$TMP/$name.s.h5" | tee "$TMP/$name.v.txt"
    grep -q "bitwise equal" "$TMP/$name.v.txt" || fail "$name: verify"
}
check_verify "$MODEL" stories
check_verify "$MODEL" stories_topp --top-p 0.9 --top-k 50
# the tiny models' ids: prompts above use ids < 512, all valid for vocab 1024
check_verify "$DATA/models/tiny-qwen3/bf16" qwen3
check_verify "$DATA/models/tiny-llama/bf16" llama
check_verify "$DATA/models/tiny-gpt2/f32" gpt2
# Data parallel on the GPU: generate on 2 ranks == generate on 1 rank (bitwise), and verify across rank counts
# (generate on 2, score on 1, and the reverse): the work distribution and the gathering in sample-id order.
# Rank 0 fills its device weights and broadcasts them, every rank's copy is fingerprinted against rank 0's: the
# equal rollouts below also prove the copy.
two_ranks_env
mpirun_np 2 "$BITROLL" generate --device cuda --model "$DATA/models/tiny-qwen3/bf16" --prompts "$TMP/p.jsonl" \
    --out "$TMP/dp2.h5" --n 3 --temperature 1.0 --max-new-tokens 40 --seed 5 2>"$TMP/dp2.err" \
    || { cat "$TMP/dp2.err"; fail "generate -np 2 on the GPU failed"; }
grep "device weights broadcast from rank 0 with $BACKEND" "$TMP/dp2.err" || fail "-np 2: no weights broadcast with $BACKEND reported"
gen "$DATA/models/tiny-qwen3/bf16" "$TMP/dp1.h5"
same_rollouts "$TMP/dp1.h5" "$TMP/dp2.h5"
"$BITROLL" score --device cuda --model "$DATA/models/tiny-qwen3/bf16" --rollouts "$TMP/dp2.h5" --out "$TMP/dp2.s1.h5" --quiet
"$BITROLL" verify "$TMP/dp2.h5" "$TMP/dp2.s1.h5" | grep -q "bitwise equal" || fail "generate -np 2, score -np 1: verify"
mpirun_np 2 "$BITROLL" score --device cuda --model "$DATA/models/tiny-qwen3/bf16" --rollouts "$TMP/dp1.h5" \
    --out "$TMP/dp1.s2.h5" --quiet
"$BITROLL" verify "$TMP/dp1.h5" "$TMP/dp1.s2.h5" | grep -q "bitwise equal" || fail "generate -np 1, score -np 2: verify"
unset BITROLL_SHARE_GPUS
echo "ok: -np 2 == -np 1 on the GPU; verify exits 0 across rank counts"

# Qwen3-0.6B shape with random weights: 256 prompts x 128 new tokens at temperature 1.0, generate then score
# (other batch shape) then verify, in the invariant mode (must be bitwise) and, for the record, the standard mode.
for i in $(seq 0 255); do
    ids=""
    for k in $(seq 0 $(( 8 + i % 40 ))); do ids="$ids${ids:+, }$(( (i * 7919 + k * 104729) % 150000 + 1000 ))"; done
    echo "{\"prompt_ids\": [$ids]}"
done >"$TMP/q.jsonl"
Q=(--random-weights "$DATA/../../configs/shapes/qwen3-0.6b.json")
for mode in invariant standard; do
    "$BITROLL" generate --device cuda --kernels "$mode" "${Q[@]}" --prompts "$TMP/q.jsonl" --out "$TMP/q_$mode.h5" \
        --temperature 1.0 --max-new-tokens 128 --no-stop --max-seqs 256 --max-batch-tokens 1024 --quiet
    "$BITROLL" score --device cuda --kernels "$mode" "${Q[@]}" --rollouts "$TMP/q_$mode.h5" --out "$TMP/q_$mode.s.h5" \
        --max-batch-tokens 300 --max-seqs 7 --quiet
    code=0
    "$BITROLL" verify "$TMP/q_$mode.h5" "$TMP/q_$mode.s.h5" | tee "$TMP/q_$mode.v.txt" || code=$?
    echo "qwen3-0.6b random, --kernels $mode: verify exit $code"
    if [ "$mode" = invariant ]; then [ "$code" = 0 ] || fail "invariant mode: generate and score differ"; fi
done
# The standard mode's decode steps replay a CUDA graph per batch size and split-KV count: the rollouts of the same
# run without graphs, bit for bit (4 sequences of 9-10 prompt tokens + 200: their keys cross 1..7 chunks of 32, so
# the steps take several split counts)
head -2 "$TMP/q.jsonl" >"$TMP/q2.jsonl"
for g in 1 0; do
    BITROLL_CUDA_GRAPHS=$g "$BITROLL" generate --device cuda --kernels standard "${Q[@]}" --prompts "$TMP/q2.jsonl" \
        --out "$TMP/std_g$g.h5" --n 2 --temperature 1.0 --max-new-tokens 200 --no-stop --max-seqs 4 --quiet
done
same_rollouts "$TMP/std_g1.h5" "$TMP/std_g0.h5"
echo "ok: standard mode, CUDA graphs per batch size and split count == no graphs"

# The invariant mode's ordered split of the decode attention (a few rows with many keys take 2, then 4 splits as
# their keys pass ~500 and ~1,000: kern_cuda_attn_decode_split_count): 2 samples of one prompt x 1,100 new tokens at
# batch 1 with CUDA graphs (a graph per split count), without them (the profile, which also counts the steps by
# split count: some must have split) and at batch 2 are the same rollouts, and scoring them (prefill, one launch per
# layer) verifies bit for bit
head -1 "$TMP/q.jsonl" >"$TMP/q1.jsonl"
for run in g_s1 p_s1 g_s2; do
    p=0 s=${run:3:1}
    [ "${run:0:1}" = p ] && p=1
    BITROLL_CUDA_PROFILE=$p "$BITROLL" generate --device cuda --kernels invariant "${Q[@]}" --prompts "$TMP/q1.jsonl" \
        --out "$TMP/split_$run.h5" --n 2 --temperature 1.0 --max-new-tokens 1100 --no-stop --max-seqs "$s" --quiet \
        2>"$TMP/split_$run.err" || { cat "$TMP/split_$run.err"; fail "generate (ordered split, $run) failed"; }
done
grep "decode steps by attention split" "$TMP/split_p_s1.err" || fail "no decode step took the ordered split"
grep -q "split (ordered split):.* 2: [0-9]*.* 4: [0-9]" "$TMP/split_p_s1.err" || fail "no steps at 2 and 4 splits"
same_rollouts "$TMP/split_g_s1.h5" "$TMP/split_p_s1.h5"
same_rollouts "$TMP/split_g_s1.h5" "$TMP/split_g_s2.h5"
"$BITROLL" score --device cuda --kernels invariant "${Q[@]}" --rollouts "$TMP/split_g_s1.h5" \
    --out "$TMP/split.s.h5" --max-batch-tokens 512 --quiet
"$BITROLL" verify "$TMP/split_g_s1.h5" "$TMP/split.s.h5" | grep -q "bitwise equal" \
    || fail "invariant mode, long rows (ordered split): generate and score differ"
echo "ok: invariant mode, long rows at batch 1 and 2 (ordered split), graphs or not: same rollouts; verify bitwise"

# Tensor parallel on the GPU: --tp 2 gives the rollouts of --tp 1 bit for bit (tiny-qwen3 bf16: 8 chunks of 16 and
# 48 columns; a Qwen3-0.6B-shape random model: 8 chunks of 256 and 384), and scores made with --tp 2 verify rollouts
# made with --tp 1 (two ranks: NCCL on two GPUs, MPI host buffers on one, as above).
two_ranks_env
mpirun_np 2 "$BITROLL" generate --device cuda --tp 2 --model "$DATA/models/tiny-qwen3/bf16" --prompts "$TMP/p.jsonl" \
    --out "$TMP/tp2.h5" --n 3 --temperature 1.0 --max-new-tokens 40 --seed 5 2>"$TMP/tp2.err" \
    || { cat "$TMP/tp2.err"; fail "generate --tp 2 on the GPU failed"; }
grep "tp on the GPU: row-parallel partials all-gathered with $BACKEND" "$TMP/tp2.err" || fail "--tp 2: no all-gather with $BACKEND reported"
same_rollouts "$TMP/dp1.h5" "$TMP/tp2.h5"
mpirun_np 2 "$BITROLL" score --device cuda --tp 2 --model "$DATA/models/tiny-qwen3/bf16" --rollouts "$TMP/dp1.h5" \
    --out "$TMP/dp1.tp2.h5" --max-batch-tokens 37 --quiet
"$BITROLL" verify "$TMP/dp1.h5" "$TMP/dp1.tp2.h5" | grep -q "bitwise equal" || fail "generate --tp 1, score --tp 2: verify"
head -64 "$TMP/q.jsonl" >"$TMP/q64.jsonl"
"$BITROLL" generate --device cuda "${Q[@]}" --prompts "$TMP/q64.jsonl" --out "$TMP/qtp1.h5" --temperature 1.0 \
    --max-new-tokens 64 --no-stop --quiet
mpirun_np 2 "$BITROLL" generate --device cuda --tp 2 "${Q[@]}" --prompts "$TMP/q64.jsonl" --out "$TMP/qtp2.h5" \
    --temperature 1.0 --max-new-tokens 64 --no-stop --max-batch-tokens 700 --quiet
same_rollouts "$TMP/qtp1.h5" "$TMP/qtp2.h5"
unset BITROLL_SHARE_GPUS
echo "ok: --tp 2 == --tp 1 on the GPU (tiny-qwen3, Qwen3-0.6B shape); verify across TP degrees"
echo "PASS"
