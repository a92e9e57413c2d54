# What a new user runs into (issue 12's defects): verify --quiet prints only the result line; show writes escape
# codes only for a person at a terminal (not under mpirun's pty, not with NO_COLOR); progress counts the whole job;
# a tokenizer smaller than the model's vocabulary does not fail at the end; --weight-version reaches the file.
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
"$BITROLL" generate --quiet --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/r.h5" --n 2 --max-new-tokens 12 \
    --seed 3 --weight-version 42
"$BITROLL" score --quiet --model "$MODEL" --rollouts "$TMP/r.h5" --out "$TMP/s.h5"

# verify --quiet: exactly the result line
out=$("$BITROLL" verify --quiet "$TMP/r.h5" "$TMP/s.h5")
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "verify --quiet printed: $out"
printf '%s\n' "$out" | grep -q '^result .*bitwise equal' || fail "verify --quiet: no result line: $out"
full=$("$BITROLL" verify "$TMP/r.h5" "$TMP/s.h5")
printf '%s\n' "$full" | grep -q '^tokens compared' || fail "verify: no statistics"
printf '%s\n' "$full" | tail -1 | grep -q '^result' || fail "verify: result line not last"
echo "ok: verify --quiet prints only '$out'"

# show: bold on a terminal (script gives it a pty), plain under mpirun, with NO_COLOR, into a file
esc=$(printf '\033')
script -qec "$BITROLL show --limit 1 $TMP/r.h5" /dev/null >"$TMP/tty.txt"
grep -q "$esc" "$TMP/tty.txt" || fail "show on a terminal: no bold"
NO_COLOR=1 script -qec "$BITROLL show --limit 1 $TMP/r.h5" /dev/null >"$TMP/nocolor.txt"
grep -q "$esc" "$TMP/nocolor.txt" && fail "show with NO_COLOR wrote escape codes"
mpirun_np 1 "$BITROLL" show --limit 2 "$TMP/r.h5" >"$TMP/mpi.txt"
grep -q "$esc" "$TMP/mpi.txt" && fail "show under mpirun wrote escape codes"
grep -q '^completion: ' "$TMP/mpi.txt" || fail "show under mpirun: no completion line"
echo "ok: show is plain under mpirun and with NO_COLOR, bold on a terminal"

# progress: 2 ranks report the whole job (2 groups), and the weight version is in the file
mpirun_np 2 "$BITROLL" generate --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/r2.h5" --n 2 \
    --max-new-tokens 12 --seed 3 --weight-version 42 2>"$TMP/progress.txt"
grep -q '2 groups' "$TMP/progress.txt" || { cat "$TMP/progress.txt"; fail "progress does not count both groups"; }
grep -q "wrote $TMP/r2.h5: 12 samples" "$TMP/progress.txt" || { cat "$TMP/progress.txt"; fail "final line"; }
[ "$(h5dump -a /weight_version "$TMP/r2.h5" | grep -c '(0): 42')" = 1 ] || fail "weight_version not 42 in the rollouts file"
[ "$(h5dump -a /weight_version "$TMP/s.h5" | grep -c '(0): 42')" = 1 ] || fail "weight_version not 42 in the scores file"
expect_exit 2 "weight-version" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/r.h5" --out "$TMP/x.h5" --weight-version 3
echo "ok: progress counts both groups; weight_version 42 in rollouts and scores files"

# a model vocabulary (tiny-llama: 1024) larger than the tokenizer's (stories260K: 512): generation finishes, the
# texts mark the ids the tokenizer lacks, and the ids/log-probs are those of a run without a tokenizer
L=$DATA/models/tiny-llama/f32
echo '{"prompt_ids": [1, 700, 900]}' >"$TMP/ids.jsonl"
"$BITROLL" generate --model "$L" --tokenizer "$MODEL" --prompts "$TMP/ids.jsonl" --out "$TMP/t.h5" --n 4 \
    --max-new-tokens 16 --seed 1 --no-stop 2>"$TMP/note.txt" || { cat "$TMP/note.txt"; fail "generate with a smaller tokenizer"; }
grep -q "tokenizer has 512 tokens, the model's vocabulary 1024" "$TMP/note.txt" || { cat "$TMP/note.txt"; fail "no note"; }
"$BITROLL" show "$TMP/t.h5" | grep -q '<|bitroll:id=' || fail "no <|bitroll:id=N|> marker in the texts"
"$BITROLL" generate --quiet --model "$L" --prompts "$TMP/ids.jsonl" --out "$TMP/t_noTok.h5" --n 4 --max-new-tokens 16 \
    --seed 1 --no-stop
# rollouts_cmp checks every numeric dataset first, then the texts: only the texts may differ
cmp_out=$("$TOOLS/rollouts_cmp" "$TMP/t.h5" "$TMP/t_noTok.h5" || true)
[ "$cmp_out" = "rollouts_cmp: only one file has text" ] || fail "ids/log-probs differ from the run without a tokenizer: $cmp_out"
echo "ok: a smaller tokenizer gives a note up front and marked texts"

# scoring under another policy (PPO's later minibatches): refused without --allow-other-policy; with it the scores
# file records the scoring weights and their version, the log-probs are those of the other weights, and verify
# refuses to compare the pair, saying why
A=$DATA/models/tiny-llama/bf16
B=$DATA/models/tiny-llama/f32
echo '{"prompt_ids": [1, 700, 900]}' >"$TMP/o.jsonl"
"$BITROLL" generate --quiet --model "$A" --prompts "$TMP/o.jsonl" --out "$TMP/oa.h5" --n 3 --max-new-tokens 10 --seed 2 --no-stop
expect_exit 2 "allow-other-policy" "$BITROLL" score --model "$B" --rollouts "$TMP/oa.h5" --out "$TMP/ob.h5"
"$BITROLL" score --quiet --model "$B" --rollouts "$TMP/oa.h5" --out "$TMP/ob.h5" --allow-other-policy --weight-version 5
fp_b=$("$BITROLL" info --model "$B" | sed -n 's/.*fingerprint[^0-9a-f]*\([0-9a-f]\{16\}\).*/\1/p' | head -1)
[ -n "$fp_b" ] || fail "no fingerprint from bitroll info"
h5dump -a /model_fingerprint "$TMP/ob.h5" | grep -q "$fp_b" || fail "the scores file does not record the scoring model $fp_b"
[ "$(h5dump -a /weight_version "$TMP/ob.h5" | grep -c '(0): 5')" = 1 ] || fail "weight_version 5 not recorded"
expect_exit 2 "scored by weights" "$BITROLL" verify "$TMP/oa.h5" "$TMP/ob.h5"
# the numbers are the other weights': scoring the same samples under A (the sampler's weights) gives other ones
"$BITROLL" score --quiet --model "$A" --rollouts "$TMP/oa.h5" --out "$TMP/oa_self.h5"
"$TOOLS/scores_cmp" "$TMP/oa_self.h5" "$TMP/ob.h5" >/dev/null && fail "scores under A and B are equal: the control does not bite"
echo "ok: --allow-other-policy scores with the other weights, records them, and verify refuses the pair"
