# Kill and resume at random moments (issue 16; docs/RELIABILITY.md "Streaming output and --resume"): a 2,000-sample
# generate on 2 ranks (200 prompts x n = 10, 32 tokens, stories260K on the CPU) is killed with SIGKILL -- rank 0 or
# rank 1, drawn at random -- at a random moment of the run (start-up, generation or the final write), then resumed
# with --resume on 2 ranks. Every time the file must equal (cmp) the uninterrupted run's, and neither OUT.parts nor
# OUT.tmp.* may be left. TRIALS (default 5) trials; half of them kill the resumed run too before the last resume.
# SEED (default: the clock) draws the ranks and the moments (as fractions of the uninterrupted run's time) and is
# printed first, so a failure's draw can be rerun:
#   SEED=1234 ctest -R mpi_kill_resume -V
source "$(dirname "$0")/lib/common.bash" "$@"
SEED=${SEED:-$(date +%s)}
TRIALS=${TRIALS:-5}
RANDOM=$SEED
echo "seed $SEED, $TRIALS trials"
for i in $(seq 0 199); do echo "{\"prompt_ids\": [1, $((300 + i % 97)), $((260 + i % 13))], \"n\": 10}"; done >"$TMP/p.jsonl"
OUT=$TMP/r.h5
G=(--model "$MODEL" --prompts "$TMP/p.jsonl" --max-new-tokens 32 --seed 3 --out "$OUT")

now_ms() { date +%s%3N; }
t0=$(now_ms)
mpirun_np 2 "$BITROLL" generate "${G[@]}" --quiet
ref_ms=$(($(now_ms) - t0))
mv "$OUT" "$TMP/ref.h5"
echo "uninterrupted: 2,000 samples in ${ref_ms} ms"

# rank_pid RANK: the pid of that rank's bitroll process (its command line names $OUT; Open MPI gives it its rank in
# OMPI_COMM_WORLD_RANK), once it has started; fails if the job ends first
rank_pid() {
    local c
    for _ in $(seq 1 500); do
        for c in $(pgrep -f -- "generate .*--out $OUT" 2>/dev/null); do
            [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$(readlink -f "$BITROLL")" ] || continue
            if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
                echo "$c"
                return 0
            fi
        done
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# kill_once EXTRA_ARGS...: runs generate on 2 ranks and SIGKILLs a random rank at a random moment of it (from 2% to
# KILL_PCT, default 95, % of the uninterrupted run's time); says what happened on stdout; fails if the run ended before the kill
kill_once() {
    local rank=$((RANDOM % 2)) pm_max=$((${KILL_PCT:-95} * 10))
    local pm=$((20 + RANDOM % (pm_max - 20))) # per mille of the uninterrupted run's time: what SEED replays
    local at=$((ref_ms * pm / 1000))
    local t1
    t1=$(now_ms)
    mpirun_np 2 "$BITROLL" generate "${G[@]}" --quiet "$@" >"$TMP/killed.txt" 2>&1 &
    local mp=$! pid
    pid=$(rank_pid "$rank" "$mp") || { wait "$mp" || true; echo "rank $rank: the run ended before it was found"; return 1; }
    local left=$((at - ($(now_ms) - t1)))
    [ "$left" -gt 0 ] && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
    if ! kill -KILL "$pid" 2>/dev/null; then
        wait "$mp" || true
        echo "rank $rank: the run had ended before ${at} ms"
        return 1
    fi
    local code=0
    wait "$mp" || code=$?
    [ "$code" != 0 ] || fail "mpirun exited 0 although rank $rank was killed"
    local bytes=0
    [ -d "$OUT.parts" ] && bytes=$(du -cb "$OUT.parts" | tail -1 | cut -f1)
    echo "rank $rank SIGKILLed at ${at} ms ($((pm / 10)).$((pm % 10))% of the run; mpirun exit $code; journal $bytes bytes; OUT $([ -e "$OUT" ] && echo present || echo absent))"
}

# kill_retry EXTRA_ARGS...: kill_once until a kill lands (at most 4 draws)
kill_retry() {
    local k
    for k in 1 2 3 4; do
        rm -rf "$OUT" "$OUT.parts"
        if kill_once "$@"; then return 0; fi
        echo -n "  redrawn: "
        [ "$#" = 0 ] || return 1 # a resumed run that ended first: nothing to redraw
    done
    fail "no kill landed in 4 draws"
}

for trial in $(seq 1 "$TRIALS"); do
    # (no command substitution around the draws: a subshell would not advance $RANDOM, and SEED would not replay)
    echo -n "trial $trial: "
    kill_retry
    if [ $((RANDOM % 2)) = 1 ]; then
        echo -n "trial $trial, resumed run: "
        KILL_PCT=50 kill_once --resume || true
    fi
    mpirun_np 2 "$BITROLL" generate "${G[@]}" --resume 2>"$TMP/resume.txt" || {
        cat "$TMP/resume.txt" >&2
        fail "trial $trial: generate --resume failed"
    }
    held=$(grep -o 'holds [0-9]* of [0-9]* results' "$TMP/resume.txt" | head -1 || true)
    [ -n "$held" ] || { cat "$TMP/resume.txt" >&2; fail "trial $trial: --resume did not report the journal it found"; }
    cmp "$OUT" "$TMP/ref.h5" || fail "trial $trial: the resumed file differs from the uninterrupted run's"
    [ ! -e "$OUT.parts" ] || fail "trial $trial: $OUT.parts left after --resume"
    if ls -a "$TMP" | grep -q "\.tmp"; then ls -la "$TMP" >&2; fail "trial $trial: a temporary file was left"; fi
    echo "ok: trial $trial: --resume == uninterrupted (cmp), nothing left behind (the journal $held)"
done
# and once in the final write: rank 0 SIGKILLed as soon as its temporary file OUT.tmp.* appears
rm -rf "$OUT" "$OUT.parts"
mpirun_np 2 "$BITROLL" generate "${G[@]}" --quiet >"$TMP/killed.txt" 2>&1 &
mp=$!
pid=$(rank_pid 0 "$mp") || fail "write-phase trial: rank 0 not found"
tmpf=
for _ in $(seq 1 6000); do
    tmpf=$(ls "$OUT".tmp.* 2>/dev/null | head -1 || true)
    [ -n "$tmpf" ] && break
    kill -0 "$mp" 2>/dev/null || break
    sleep 0.005
done
[ -n "$tmpf" ] || { wait "$mp" || true; fail "write-phase trial: no temporary file seen before the run ended"; }
kill -KILL "$pid" 2>/dev/null || fail "write-phase trial: rank 0 had exited"
wait "$mp" || true
echo "write-phase trial: rank 0 SIGKILLed while writing $(basename "$tmpf") ($(stat -c %s "$tmpf" 2>/dev/null || echo 0) bytes)"
mpirun_np 2 "$BITROLL" generate "${G[@]}" --resume 2>"$TMP/resume.txt" || {
    cat "$TMP/resume.txt" >&2
    fail "write-phase trial: generate --resume failed"
}
cmp "$OUT" "$TMP/ref.h5" || fail "write-phase trial: the resumed file differs from the uninterrupted run's"
[ ! -e "$OUT.parts" ] || fail "write-phase trial: $OUT.parts left after --resume"
if ls -a "$TMP" | grep -q "\.tmp"; then ls -la "$TMP" >&2; fail "write-phase trial: a temporary file was left"; fi
echo "ok: write-phase trial: --resume == uninterrupted (cmp), the killed run's temporary file removed ($(grep -o 'holds [0-9]* of [0-9]* results' "$TMP/resume.txt" | head -1))"
echo "ok: $TRIALS kill/resume trials and one kill in the final write, every file equal to the uninterrupted run's (seed $SEED)"
