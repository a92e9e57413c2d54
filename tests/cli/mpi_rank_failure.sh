# A rank that fails stops the whole job with its rank and reason (exit 3), and no output file appears.
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
export BITROLL_INJECT_FAILURE_RANK=1
expect_exit 3 "\[rank 1\] injected failure" mpirun_np 3 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" \
    --out "$TMP/x.h5" --max-new-tokens 8 --quiet
[ ! -e "$TMP/x.h5" ] || fail "a failed run left a rollouts file"
ls "$TMP" | grep -q "x.h5.tmp" && fail "a failed run left a temporary file"
unset BITROLL_INJECT_FAILURE_RANK
mpirun_np 2 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/ok.h5" --max-new-tokens 8 --quiet
BITROLL_INJECT_FAILURE_RANK=2 expect_exit 3 "\[rank 2\] injected failure" mpirun_np 3 "$BITROLL" score --model "$MODEL" \
    --rollouts "$TMP/ok.h5" --out "$TMP/s.h5" --quiet
[ ! -e "$TMP/s.h5" ] || fail "a failed score left a scores file"
echo "PASS"
