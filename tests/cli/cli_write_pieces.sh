# The streaming output writers (issue 16 item 2, docs/RELIABILITY.md "Streaming output"): rank 0 writes the rollouts
# and scores files from the journal piece by piece, BITROLL_WRITE_PIECE_BYTES at a time (default 64 KiB). Files
# written in the smallest pieces (64 bytes: 8 to 64 elements, one string), which cut samples, offsets and texts at
# every kind of place, and in pieces of other sizes must be byte for byte (cmp) the file written in default pieces --
# which for these few samples is one piece a dataset, what the one-call writer did before.
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"
gen() { # gen PIECE_BYTES ("" = default): rollouts with texts, then their scores, each at the same --out path
    env ${1:+BITROLL_WRITE_PIECE_BYTES=$1} "$BITROLL" generate --quiet --model "$MODEL" --prompts "$TMP/p.jsonl" \
        --n 3 --max-new-tokens 40 --temperature 1 --top-p 0.9 --seed 5 --out "$TMP/out.h5"
    mv "$TMP/out.h5" "$TMP/g$1.h5"
    cp "$TMP/g.h5" "$TMP/in.h5" # score the same input file (its path is in the scores file's configuration)
    env ${1:+BITROLL_WRITE_PIECE_BYTES=$1} "$BITROLL" score --quiet --model "$MODEL" --rollouts "$TMP/in.h5" \
        --out "$TMP/out.h5"
    mv "$TMP/out.h5" "$TMP/s$1.h5"
}
gen ""
"$BITROLL" show "$TMP/g.h5" >/dev/null || fail "the default-piece file does not read back"
n=0
for pb in 1 64 100 1000 1048576; do
    gen "$pb"
    cmp "$TMP/g.h5" "$TMP/g$pb.h5" || fail "rollouts written in pieces of $pb bytes differ from the default pieces"
    cmp "$TMP/s.h5" "$TMP/s$pb.h5" || fail "scores written in pieces of $pb bytes differ from the default pieces"
    n=$((n + 1))
done
echo "ok: rollouts (with texts) and scores files written in pieces of 1 (raised to 64), 64, 100, 1000 and 1048576 bytes are cmp-equal to the default ($n sizes)"
expect_exit 2 "BITROLL_WRITE_PIECE_BYTES" env BITROLL_WRITE_PIECE_BYTES=0 "$BITROLL" generate --quiet --model "$MODEL" \
    --prompts "$TMP/p.jsonl" --out "$TMP/x.h5"
[ ! -e "$TMP/out.h5.parts" ] && ! ls "$TMP"/out.h5.tmp.* >/dev/null 2>&1 || fail "a journal or temporary file was left behind"
echo "ok: no journal nor temporary left"
