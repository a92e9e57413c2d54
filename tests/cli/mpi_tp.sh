# Tensor parallelism (--tp, DESIGN 7) on the CPU engine: heads and MLP columns split over the ranks of a group,
# row-parallel layers summed in fixed K-chunks -- the same rollouts, bit for bit, for every degree and group count;
# and score under another degree verifies (KL = 0).
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
gen() { # gen MODEL NP OUT extra...
    local m=$1 np=$2 out=$3
    shift 3
    mpirun_np "$np" "$BITROLL" generate --model "$m" --prompts "$TMP/p.jsonl" --out "$out" --n 2 --temperature 1.0 \
        --max-new-tokens 24 --seed 9 --quiet "$@"
}
gen "$MODEL" 1 "$TMP/s_tp1.h5"
gen "$MODEL" 2 "$TMP/s_tp2.h5" --tp 2
gen "$MODEL" 4 "$TMP/s_tp4.h5" --tp 4
gen "$MODEL" 4 "$TMP/s_tp2x2.h5" --tp 2 --max-batch-tokens 5
for f in s_tp2 s_tp4 s_tp2x2; do same_rollouts "$TMP/s_tp1.h5" "$TMP/$f.h5"; done
mpirun_np 4 "$BITROLL" score --model "$MODEL" --rollouts "$TMP/s_tp1.h5" --out "$TMP/s.scores.h5" --tp 4 --quiet
"$BITROLL" verify "$TMP/s_tp1.h5" "$TMP/s.scores.h5" >/dev/null || fail "tp4 score does not verify tp1 generate"

Q=$DATA/models/tiny-qwen3/bf16
gen "$Q" 1 "$TMP/q_tp1.h5"
gen "$Q" 2 "$TMP/q_tp2.h5" --tp 2
same_rollouts "$TMP/q_tp1.h5" "$TMP/q_tp2.h5"
G=$DATA/models/tiny-gpt2/f32
gen "$G" 1 "$TMP/g_tp1.h5"
gen "$G" 4 "$TMP/g_tp4.h5" --tp 4
same_rollouts "$TMP/g_tp1.h5" "$TMP/g_tp4.h5"

expect_exit 2 "must divide the number of ranks" mpirun_np 3 "$BITROLL" generate --model "$MODEL" \
    --prompts "$TMP/p.jsonl" --out "$TMP/x.h5" --tp 2
expect_exit 2 "heads" mpirun_np 3 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/x.h5" --tp 3
echo "PASS"
