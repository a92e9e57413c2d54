# Bad inputs -> exit 2 with a message naming the problem; nothing is written.
source "$(dirname "$0")/lib/common.bash" "$@"
G=("$BITROLL" generate --model "$MODEL" --quiet --max-new-tokens 8)
printf '{"prompt_ids": [1, 2]}\n{"prompt_ids": [1, 3]}\n{"prompt_ids": [1, \n' >"$TMP/malformed.jsonl"
expect_exit 2 "line 3" "${G[@]}" --prompts "$TMP/malformed.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 512]}' >"$TMP/vocab.jsonl"
expect_exit 2 "512" "${G[@]}" --prompts "$TMP/vocab.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 2, 3], "max_new_tokens": 510}' >"$TMP/ctx.jsonl"
expect_exit 2 "max_new_tokens" "${G[@]}" --prompts "$TMP/ctx.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 2, 3]}' >"$TMP/ok.jsonl"
expect_exit 2 "temperature" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --temperature -0.5
expect_exit 2 "top_p" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-p 0
expect_exit 2 "top_p" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-p 1.5
echo '{"prompt_ids": [1, 2, 3], "top_p": 2}' >"$TMP/topp_line.jsonl"
expect_exit 2 "line 1" "${G[@]}" --prompts "$TMP/topp_line.jsonl" --out "$TMP/x.h5"
expect_exit 2 "no-such-dir" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/no-such-dir/x.h5"
expect_exit 2 "not an integer" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --n two
expect_exit 2 "missing.jsonl" "${G[@]}" --prompts "$TMP/missing.jsonl" --out "$TMP/x.h5"
expect_exit 2 "--prompts" "$BITROLL" generate --out "$TMP/x.h5"
[ ! -e "$TMP/x.h5" ] || fail "a failed run left $TMP/x.h5"
# --out must be a regular file path that is not an input, checked before any work (issue 16)
expect_exit 2 "character device" "${G[@]}" --prompts "$TMP/ok.jsonl" --out /dev/null
[ -c /dev/null ] || fail "/dev/null is no longer a character device"
expect_exit 2 "directory" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP"
expect_exit 2 "directory" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/sub/"
expect_exit 2 "output path is empty" "${G[@]}" --prompts "$TMP/ok.jsonl" --out ""
cp "$TMP/ok.jsonl" "$TMP/ok.keep"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/ok.jsonl"
ln "$TMP/ok.jsonl" "$TMP/hardlink.jsonl"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/hardlink.jsonl"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/../$(basename "$TMP")/ok.jsonl"
cmp -s "$TMP/ok.jsonl" "$TMP/ok.keep" || fail "--out equal to --prompts changed the prompts"
ln -s "$TMP/ok.keep" "$TMP/symlink.h5"
expect_exit 2 "symbolic link" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/symlink.h5"

# a rollouts file from another model passed to score: fingerprint mismatch
"${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/stories.h5"
expect_exit 2 "fingerprint" "$BITROLL" score --model "$DATA/models/tiny-llama/f32" --rollouts "$TMP/stories.h5" --out "$TMP/s.h5"
[ ! -e "$TMP/s.h5" ] || fail "a failed score left $TMP/s.h5"
cp "$TMP/stories.h5" "$TMP/stories.keep"
expect_exit 2 "same file as --rollouts" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/stories.h5" --out "$TMP/stories.h5"
cmp -s "$TMP/stories.h5" "$TMP/stories.keep" || fail "--out equal to --rollouts changed the rollouts"
expect_exit 2 "character device" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/stories.h5" --out /dev/null
# not an HDF5 file / missing file
echo "hello" >"$TMP/not.h5"
expect_exit 2 "not.h5" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/not.h5" --out "$TMP/s.h5"
expect_exit 2 "not.h5" "$BITROLL" verify "$TMP/not.h5" "$TMP/stories.h5"
# the same errors under mpirun: one message, exit 2
expect_exit 2 "line 3" mpirun_np 2 "${G[@]}" --prompts "$TMP/malformed.jsonl" --out "$TMP/x.h5"
# --help on every verb
for v in info generate score verify bench tokenize show; do
    "$BITROLL" $v --help | grep -q "usage: bitroll $v" || fail "$v --help"
done
expect_exit 2 "contradict" "$BITROLL" bench --kernel-table-only --no-kernel-table
expect_exit 2 "needs --device cuda" "$BITROLL" bench --kernel-table-only --device cpu
expect_exit 2 "needs the kernel table" "$BITROLL" bench --kernel-json "$TMP/k.json" --no-kernel-table
expect_exit 2 "needs the kernel table" "$BITROLL" bench --kernel-json "$TMP/k.json" --device cpu --model "$MODEL"
# a bad --model is named, exit 2 (bench loads the model before it measures the kernel table)
expect_exit 2 "no-such-dir" "$BITROLL" bench --model "$TMP/no-such-dir" --device cpu
"$BITROLL" --help | grep -q "verbs:" || fail "bitroll --help"
expect_exit 2 "unknown verb" "$BITROLL" frobnicate
echo "PASS"
