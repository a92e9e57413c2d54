# Streaming output and --resume (docs/RELIABILITY.md "Streaming output and --resume"):
# - generate under mpirun -np 2, killed (SIGKILL, injected after K journal records), then --resume with -np 1 and
#   another --max-batch-tokens: the file equals (cmp) an uninterrupted run with the resume run's options;
# - the same for score; a torn journal tail (a few bytes cut) still resumes; a journal of another job (other --seed)
#   is refused with exit 2 naming OUT.parts; no OUT.tmp.* nor OUT.parts is left after a success;
# - two uninterrupted runs with the same --out write identical files; --resume is not recorded;
# - a run that fails before any sample finishes leaves no OUT.parts.
source "$(dirname "$0")/lib/common.bash" "$@"
for i in $(seq 0 59); do echo "{\"prompt_ids\": [1, $((300 + i % 50)), $((260 + i % 7))], \"n\": 5}"; done >"$TMP/p.jsonl"
G=(--prompts "$TMP/p.jsonl" --max-new-tokens 24 --seed 3 --quiet)
OUT=$TMP/r.h5

# the reference: one rank, 128 tokens a step; twice with the same --out, identical bytes
"$BITROLL" generate "${G[@]}" --max-batch-tokens 128 --out "$OUT"
cp "$OUT" "$TMP/ref.h5"
"$BITROLL" generate "${G[@]}" --max-batch-tokens 128 --out "$OUT"
cmp "$OUT" "$TMP/ref.h5" || fail "two uninterrupted runs differ"
[ ! -e "$OUT.parts" ] || fail "$OUT.parts left after a success"
rm -f "$OUT"

# killed mid-run: each rank's first rank kills itself after 40 records
code=0
BITROLL_INJECT_KILL_AFTER_RECORDS=40 mpirun_np 2 "$BITROLL" generate "${G[@]}" --out "$OUT" >/dev/null 2>&1 || code=$?
[ "$code" != 0 ] || fail "the injected kill did not stop the run"
[ -d "$OUT.parts" ] || fail "no journal after the kill"
[ ! -e "$OUT" ] || fail "$OUT written although the run was killed"
echo "journal after the kill: $(ls -l "$OUT.parts" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
# a torn tail: cut a few bytes off one shard
f=$(ls "$OUT.parts"/*.bin | head -1)
truncate -s -5 "$f"
# another job's journal is refused, and kept
expect_exit 2 "belongs to another job" "$BITROLL" generate --prompts "$TMP/p.jsonl" --max-new-tokens 24 --seed 4 \
    --out "$OUT" --resume
grep -q "r.h5.parts" "$TMP/err.txt" || fail "the message does not name OUT.parts"
"$BITROLL" generate "${G[@]:0:${#G[@]}-1}" --max-batch-tokens 128 --out "$OUT" --resume 2>"$TMP/resume.txt" || {
    cat "$TMP/resume.txt" >&2
    fail "generate --resume failed"
}
grep "\-\-resume:" "$TMP/resume.txt"
grep -q "holds [1-9][0-9]* of 300 results" "$TMP/resume.txt" || fail "--resume found nothing in the journal"
cmp "$OUT" "$TMP/ref.h5" || fail "generate --resume differs from the uninterrupted run"
[ ! -e "$OUT.parts" ] || fail "$OUT.parts left after --resume"
ls "$TMP" | grep -q "\.tmp\." && fail "a temporary file was left"
echo "ok: generate --resume == uninterrupted (cmp)"

# score: the reference, then killed under 2 ranks, then resumed on 1 with another budget
S=(--rollouts "$TMP/ref.h5" --quiet)
SOUT=$TMP/s.h5
"$BITROLL" score "${S[@]}" --max-batch-tokens 96 --out "$SOUT"
cp "$SOUT" "$TMP/sref.h5"
rm -f "$SOUT"
code=0
BITROLL_INJECT_KILL_AFTER_RECORDS=60 mpirun_np 2 "$BITROLL" score "${S[@]}" --out "$SOUT" >/dev/null 2>&1 || code=$?
[ "$code" != 0 ] || fail "the injected kill did not stop score"
[ -d "$SOUT.parts" ] || fail "no score journal after the kill"
"$BITROLL" score "${S[@]}" --max-batch-tokens 96 --out "$SOUT" --resume
cmp "$SOUT" "$TMP/sref.h5" || fail "score --resume differs from the uninterrupted run"
[ ! -e "$SOUT.parts" ] || fail "$SOUT.parts left after score --resume"

# without --resume a stale journal is removed and the run starts over
BITROLL_INJECT_KILL_AFTER_RECORDS=10 "$BITROLL" generate "${G[@]}" --out "$OUT" >/dev/null 2>&1 || true
[ -d "$OUT.parts" ] || fail "no journal after the second kill"
"$BITROLL" generate "${G[@]}" --max-batch-tokens 128 --out "$OUT"
cmp "$OUT" "$TMP/ref.h5" || fail "a fresh run over a stale journal differs"
[ ! -e "$OUT.parts" ] || fail "stale $OUT.parts left"

# a run that fails before any sample finishes leaves no journal (nothing in it to resume) and says why: here the
# scheduler refuses ~4,000 one-token KV pages a sequence x 1,048,576 sequences (a copy of tiny-qwen3 whose context
# is raised to 4,096 tokens); the runs killed above, with results in their journals, kept them
cp -r "$DATA/models/tiny-qwen3/bf16" "$TMP/ctx4k"
sed -i 's/"max_position_embeddings": 2048/"max_position_embeddings": 4096/' "$TMP/ctx4k/config.json"
grep -q '"max_position_embeddings": 4096' "$TMP/ctx4k/config.json" || fail "the context edit did not apply"
echo '{"prompt_ids": [1, 300, 261]}' >"$TMP/one.jsonl"
expect_exit 2 "lower --max-seqs" "$BITROLL" generate --model "$TMP/ctx4k" --prompts "$TMP/one.jsonl" \
    --max-new-tokens 4000 --page-size 1 --max-seqs 1048576 --quiet --out "$TMP/f.h5"
[ ! -e "$TMP/f.h5.parts" ] || fail "a run that failed at its start left f.h5.parts"
[ ! -e "$TMP/f.h5" ] || fail "a run that failed at its start left f.h5"
echo "ok: a run that fails before any result leaves no journal"
echo "PASS"
