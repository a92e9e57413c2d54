# Shared prompt KV (rollout/scheduler.c): a prompt's n samples prefill it once and share its KV pages by default;
# --no-share-prompt-kv makes every sample prefill its own. The rollouts must be bitwise equal (tests/tools/rollouts_cmp:
# tokens, log-probs, digests, finish reasons) for n = 1, 2, 8, page sizes 1, 16, 17 (divides a 17-token prompt),
# 13 (divides the shared 39 tokens of a 40-token prompt), 5 (divides neither) at n = 8, max_seqs below n, 2 ranks,
# tiny-qwen3;
# and score / verify of shared rollouts is bitwise equal (KL = 0).
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
ids=1
for k in $(seq 1 39); do ids="$ids, $(( (k * 37) % 500 + 3 ))"; done
echo "{\"prompt_ids\": [$ids], \"id\": \"forty\"}" >>"$TMP/p.jsonl"
gen() { # gen MODEL OUT N extra...
    local m=$1 out=$2 n=$3
    shift 3
    "$BITROLL" generate --model "$m" --prompts "$TMP/p.jsonl" --out "$out" --n "$n" --temperature 1.0 \
        --max-new-tokens 24 --seed 3 --stop-id 2 --stop-id 426 --quiet "$@"
}
for n in 1 2 8; do
    sizes="1 16 17 13 5"
    [ $n = 8 ] || sizes="16 5" # the whole matrix runs in tests/unit/test_kv_share.c too
    for ps in $sizes; do
        gen "$MODEL" "$TMP/off.h5" $n --page-size $ps --no-share-prompt-kv
        gen "$MODEL" "$TMP/on.h5" $n --page-size $ps --max-seqs 3 --max-batch-tokens 40 --prefill-chunk 7
        same_rollouts "$TMP/off.h5" "$TMP/on.h5"
    done
    echo "ok: n = $n, page sizes $sizes: shared == unshared"
done
# some samples of a group ended early on a stop token, others ran to the length limit
"$BITROLL" show "$TMP/on.h5" >"$TMP/show.txt"
grep -q "finish stop" "$TMP/show.txt" || fail "no sample ended on a stop token"
grep -q "finish length" "$TMP/show.txt" || fail "no sample ran to its length"
# two ranks share per rank (a rank's samples of a prompt are still consecutive)
mpirun_np 2 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/on2.h5" --n 8 --temperature 1.0 \
    --max-new-tokens 24 --seed 3 --stop-id 2 --stop-id 426 --quiet --page-size 5
same_rollouts "$TMP/off.h5" "$TMP/on2.h5"
echo "ok: 2 ranks shared == 1 rank unshared"
# score of shared rollouts: verify passes (bitwise equal log-probs and digests)
"$BITROLL" score --model "$MODEL" --rollouts "$TMP/on.h5" --out "$TMP/on.s.h5" --max-batch-tokens 37 --quiet
"$BITROLL" verify "$TMP/on.h5" "$TMP/on.s.h5" | tee "$TMP/v.txt"
grep -q "bitwise equal" "$TMP/v.txt" || fail "verify of shared rollouts"
# tiny-qwen3 (GQA, q/k norms; ids < 512 are in its vocabulary)
Q="$DATA/models/tiny-qwen3/bf16"
gen "$Q" "$TMP/qoff.h5" 8 --page-size 16 --no-share-prompt-kv
gen "$Q" "$TMP/qon.h5" 8 --page-size 16 --max-seqs 5
same_rollouts "$TMP/qoff.h5" "$TMP/qon.h5"
echo "ok: tiny-qwen3 n = 8 shared == unshared"
echo "PASS"
