# A prompt's samples are identical whether it runs alone or among 50 other prompts (same sample ids: it is
# the first line in both files), whatever the batching.
source "$(dirname "$0")/lib/common.bash" "$@"
echo '{"prompt_ids": [1, 403, 407, 261, 378]}' >"$TMP/alone.jsonl"
cp "$TMP/alone.jsonl" "$TMP/crowd.jsonl"
for i in $(seq 1 50); do
    len=$(( (i * 7) % 23 + 1 ))
    ids=1
    for k in $(seq 1 $len); do ids="$ids, $(( (i * 31 + k * 17) % 500 + 3 ))"; done
    echo "{\"prompt_ids\": [$ids]}" >>"$TMP/crowd.jsonl"
done
common=(--model "$MODEL" --n 4 --temperature 1.0 --max-new-tokens 32 --seed 11 --quiet)
"$BITROLL" generate "${common[@]}" --prompts "$TMP/alone.jsonl" --out "$TMP/alone.h5" --max-seqs 1
mpirun_np 2 "$BITROLL" generate "${common[@]}" --prompts "$TMP/crowd.jsonl" --out "$TMP/crowd.h5" --max-seqs 32 --max-batch-tokens 100
"$TOOLS/rollouts_cmp" --first 4 "$TMP/alone.h5" "$TMP/crowd.h5" || fail "samples changed in a crowd"
echo "PASS"
