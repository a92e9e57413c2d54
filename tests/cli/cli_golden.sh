# Golden files: tests/data/golden/ holds rollouts and scores files made by tests/data/golden/make.sh (first by commit
# 081e456; remade when exp/log became bitroll's own, see make.sh). Today's code, run with the same commands (1 rank, and 2 ranks with
# other budgets), must reproduce every /samples and /scores dataset bit for bit (rollouts_cmp / scores_cmp: memcmp).
source "$(dirname "$0")/lib/common.bash" "$@"
G=$DATA/golden
bash "$G/make.sh" "$BITROLL" "$TMP/one" >/dev/null 2>&1 || { bash "$G/make.sh" "$BITROLL" "$TMP/one"; fail "make.sh"; }
n=0
for f in "$G"/*.rollouts.h5; do
    name=$(basename "$f" .rollouts.h5)
    "$TOOLS/rollouts_cmp" "$f" "$TMP/one/$name.rollouts.h5" || fail "$name: rollouts differ from the golden file"
    "$TOOLS/scores_cmp" "$G/$name.scores.h5" "$TMP/one/$name.scores.h5" || fail "$name: scores differ from the golden file"
    n=$((n + 1))
done
[ "$n" = 4 ] || fail "expected 4 golden rollouts files, found $n"
echo "ok: $n golden rollouts and scores files reproduced bit for bit (1 rank)"

# the same on 2 ranks with other budgets (the datasets may not depend on either)
S=$DATA/../../configs/models/stories260K
mpirun_np 2 "$BITROLL" generate --quiet --model "$S" --prompts "$G/stories.jsonl" --out "$TMP/two.h5" --n 3 \
    --temperature 1 --top-p 0.9 --max-new-tokens 48 --seed 7 --max-batch-tokens 19 --max-seqs 5
"$TOOLS/rollouts_cmp" "$G/stories-t1.rollouts.h5" "$TMP/two.h5" || fail "2 ranks: rollouts differ from the golden file"
mpirun_np 2 "$BITROLL" score --quiet --model "$S" --rollouts "$TMP/two.h5" --out "$TMP/two.scores.h5" --max-batch-tokens 300
"$TOOLS/scores_cmp" "$G/stories-t1.scores.h5" "$TMP/two.scores.h5" || fail "2 ranks: scores differ from the golden file"
echo "ok: 2 ranks, other budgets: golden stories-t1 reproduced bit for bit"
