# No silent hang (docs/RELIABILITY.md "No silent hang"): under mpirun -np 2 with --comm-timeout 3,
# - a rank stopped with SIGSTOP mid-run (rank 1 in generate and in score, rank 0 in generate) makes the job exit with
#   code 3 well inside 60 s, and the message names the silent rank, the verb and where the ranks were;
# - the same for a worker idle between requests;
# - a rank killed with SIGKILL ends the job too (mpirun's own doing; checked anyway);
# - with the watchdog on, generate and score write the same files (cmp) as with --comm-timeout 0;
# - bad --comm-timeout values are refused with exit 2; a request may not change it in the worker.
source "$(dirname "$0")/lib/common.bash" "$@"
BOUND=30 # seconds from the signal to mpirun's exit: the timeout (3 s) plus start-up slack on a loaded machine
STOPPED=()
cleanup() {
    local p
    for p in "${STOPPED[@]}"; do
        kill -CONT "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

# prompts N: N prompts of 3 tokens, 4 samples each
prompts() {
    local i
    for i in $(seq 0 $(($1 - 1))); do echo "{\"prompt_ids\": [1, $((300 + i % 50)), $((260 + i % 7))], \"n\": 4}"; done
}
prompts 40 >"$TMP/p.jsonl"

# the watchdog changes no byte: the same files with it on and off
G=(--prompts "$TMP/p.jsonl" --max-new-tokens 48 --no-stop --seed 5 --quiet)
# (the same --out for both: the file records its own path)
mpirun_np 2 "$BITROLL" generate "${G[@]}" --out "$TMP/r.h5" --comm-timeout 2
cp "$TMP/r.h5" "$TMP/on.h5"
mpirun_np 2 "$BITROLL" generate "${G[@]}" --out "$TMP/r.h5" --comm-timeout 0
cmp "$TMP/r.h5" "$TMP/on.h5" || fail "generate with the watchdog differs from generate without it"
mpirun_np 2 "$BITROLL" score --rollouts "$TMP/on.h5" --out "$TMP/s.h5" --quiet --comm-timeout 2
cp "$TMP/s.h5" "$TMP/son.h5"
mpirun_np 2 "$BITROLL" score --rollouts "$TMP/on.h5" --out "$TMP/s.h5" --quiet
cmp "$TMP/s.h5" "$TMP/son.h5" || fail "score with the watchdog differs from score without it"
echo "ok: watchdog on == off (cmp), generate and score"

# rank_pid MPIRUN_PID RANK: the pid of that rank (mpirun's child whose environment says so), or nothing yet
rank_pid() {
    local c r
    for c in $(pgrep -P "$1" || true); do
        r=$(tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
        if [ "$r" = "$2" ]; then
            echo "$c"
            return
        fi
    done
}

# started: the ranks are past the watchdog's start (generate/score: rank RANK's group has opened its journal shard
# OUT.parts/g<RANK>.*.bin; the worker: it wrote its "ready" line)
started() { # started RANK OUT
    if [ "$2" = worker ]; then grep -q '"ready"' "$TMP/out.txt"; else compgen -G "$2.parts/g$1.*.bin" >/dev/null; fi
}

# signal_mid_run SIG RANK OUT WANT_CODE PATTERN args...: starts `mpirun -np 2 args...` in the background (stdin: the
# fifo $TMP/in, held open), waits until it has started (above), sends rank RANK the signal SIG, and checks mpirun's
# exit code (WANT_CODE, or "nonzero"), stderr against PATTERN and the time to exit. OUT = worker: the worker.
signal_mid_run() {
    local sig=$1 rank=$2 out=$3 want=$4 pattern=$5
    shift 5
    rm -rf "$out" "$out.parts" "$TMP/in"
    mkfifo "$TMP/in"
    exec 3<>"$TMP/in" # no EOF for the worker while the test runs
    mpirun --allow-run-as-root --oversubscribe -np 2 "$@" <"$TMP/in" >"$TMP/out.txt" 2>"$TMP/err.txt" &
    local mp=$! pid="" i
    for i in $(seq 1 600); do
        [ -n "$pid" ] || pid=$(rank_pid "$mp" "$rank")
        if [ -n "$pid" ] && started "$rank" "$out"; then break; fi
        kill -0 "$mp" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$pid" ] || ! kill -0 "$mp" 2>/dev/null; then
        local ended=0
        kill -0 "$mp" 2>/dev/null || { wait "$mp" || ended=$?; }
        cat "$TMP/err.txt" >&2
        [ -n "$pid" ] || fail "rank $rank of '$*' not found (mpirun exit status $ended if it ended)"
        fail "'$*' ended (exit status $ended) before rank $rank could be stopped"
    fi
    [ "$sig" = STOP ] && STOPPED+=("$pid")
    local t0 t1 code=0
    t0=$(date +%s.%N)
    kill "-$sig" "$pid"
    wait "$mp" || code=$?
    t1=$(date +%s.%N)
    exec 3>&-
    local dt
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    if [ "$want" = nonzero ]; then
        [ "$code" != 0 ] || fail "'$*' exited 0 after SIG$sig to rank $rank"
    elif [ "$code" != "$want" ]; then
        cat "$TMP/err.txt" >&2
        fail "'$*' exited $code after SIG$sig to rank $rank, expected $want"
    fi
    if ! grep -q -- "$pattern" "$TMP/err.txt"; then
        cat "$TMP/err.txt" >&2
        fail "'$*': stderr lacks '$pattern'"
    fi
    awk -v d="$dt" -v b="$BOUND" 'BEGIN { exit !(d <= b) }' || fail "'$*' took $dt s to exit after SIG$sig (bound $BOUND s)"
    [ "$out" = worker ] || [ ! -e "$out" ] || fail "$out written although rank $rank was stopped"
    echo "ok: SIG$sig to rank $rank -> exit $code after $dt s: $(grep -m1 -- "$pattern" "$TMP/err.txt" | head -c 400)"
}

# a run that cannot end before the signal on a loaded machine (it takes ~3 s for 40 prompts on 2 idle cores; CI once
# saw one finish before its rank was found): it is stopped and aborted long before its end
prompts 400 >"$TMP/big.jsonl"
BIG=(--prompts "$TMP/big.jsonl" --max-new-tokens 200 --no-stop --seed 5 --quiet --comm-timeout 3)
signal_mid_run STOP 1 "$TMP/x.h5" 3 "\[rank 0\] rank 1 did not answer for 3 s during generate: rank 1 last reported" \
    "$BITROLL" generate "${BIG[@]}" --out "$TMP/x.h5"
signal_mid_run STOP 1 "$TMP/xs.h5" 3 "\[rank 0\] rank 1 did not answer for 3 s during score: rank 1 last reported" \
    "$BITROLL" score --rollouts "$TMP/on.h5" --out "$TMP/xs.h5" --quiet --comm-timeout 3
signal_mid_run STOP 0 "$TMP/x0.h5" 3 "\[rank 1\] rank 0 did not answer for 3 s during generate: rank 0 last reported" \
    "$BITROLL" generate "${BIG[@]}" --out "$TMP/x0.h5"
# the worker, idle between requests (rank 1 waits for the broadcast of the next request, rank 0 on stdin; where each
# rank "last reported" depends on when its last heartbeat left)
signal_mid_run STOP 1 worker 3 "\[rank 0\] rank 1 did not answer for 3 s during worker: rank 1 last reported" \
    "$BITROLL" worker --quiet --comm-timeout 3
# SIGKILL: mpirun ends the job itself (its exit code is its own, not 3)
signal_mid_run KILL 1 "$TMP/xk.h5" nonzero "signal 9" "$BITROLL" generate "${BIG[@]}" --out "$TMP/xk.h5"

# bad values: exit 2 naming the flag
for v in -1 1.5 5s "" 86401 " 5"; do
    expect_exit 2 "\-\-comm-timeout: '$v' is not a number of seconds" "$BITROLL" generate --prompts "$TMP/p.jsonl" \
        --out "$TMP/bad.h5" --comm-timeout "$v"
done
expect_exit 2 "\-\-comm-timeout" "$BITROLL" score --rollouts "$TMP/on.h5" --out "$TMP/bad.h5" --comm-timeout x
# the worker takes it at start-up only
printf '%s\n' "{\"id\": 1, \"args\": [\"--prompts\", \"$TMP/p.jsonl\", \"--out\", \"$TMP/w.h5\", \"--comm-timeout\", \"9\"]}" |
    mpirun_np 2 "$BITROLL" worker --comm-timeout 3 --quiet >"$TMP/w.txt"
grep -q '"ok":false.*--comm-timeout is fixed when the worker starts' "$TMP/w.txt" || {
    cat "$TMP/w.txt" >&2
    fail "the worker took --comm-timeout in a request"
}
echo "PASS"
