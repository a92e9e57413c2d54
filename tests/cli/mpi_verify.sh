# generate -> score -> verify gives KL = 0 exactly (exit 0), with score run under another rank count and batch
# budget than generate; for temperature 0, 1.0, and 1.0 with top-p 0.9. A flipped log-prob bit -> exit 1.
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
run_case() { # run_case NAME gen-args...
    local name=$1
    shift
    mpirun_np 2 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/$name.h5" --n 2 \
        --max-new-tokens 48 --seed 3 --max-batch-tokens 64 --quiet "$@"
    mpirun_np 3 "$BITROLL" score --model "$MODEL" --rollouts "$TMP/$name.h5" --out "$TMP/$name.scores.h5" \
        --max-batch-tokens 13 --max-seqs 5 --quiet
    "$BITROLL" verify "$TMP/$name.h5" "$TMP/$name.scores.h5" | tee "$TMP/$name.verify.txt"
    grep -q "logprob mismatches    0" "$TMP/$name.verify.txt" || fail "$name: mismatches"
    grep -q "mean KL estimate      0$" "$TMP/$name.verify.txt" || fail "$name: KL not 0"
}
run_case greedy --temperature 0
run_case t1 --temperature 1.0
run_case topp --temperature 1.0 --top-p 0.9
# the reverse rank counts: score on 1 rank with a large budget
"$BITROLL" score --model "$MODEL" --rollouts "$TMP/t1.h5" --out "$TMP/t1.np1.h5" --max-batch-tokens 4096 --quiet
"$BITROLL" verify "$TMP/t1.h5" "$TMP/t1.np1.h5" >/dev/null || fail "score on 1 rank does not verify"

# one flipped bit in one log-prob -> verify exits 1 and names the token
"$TOOLS/scores_flip" "$TMP/t1.scores.h5" "$TMP/t1.flipped.h5" 17
code=0
"$BITROLL" verify "$TMP/t1.h5" "$TMP/t1.flipped.h5" >"$TMP/flip.txt" || code=$?
cat "$TMP/flip.txt"
[ "$code" = 1 ] || fail "verify exited $code on a flipped bit, expected 1"
grep -q "logprob mismatches    1" "$TMP/flip.txt" || fail "verify did not count exactly one mismatch"
# scores of another rollouts file -> exit 2 (files do not belong together)
expect_exit 2 "fingerprint" "$BITROLL" verify "$TMP/greedy.h5" "$TMP/t1.scores.h5"
echo "PASS"
