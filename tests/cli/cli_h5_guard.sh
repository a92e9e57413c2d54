# Files without the integrity header (issue 16; logging/h5log.h, docs/RELIABILITY.md Findings 3): the reproducers of
# libhdf5 1.10.8's crashes and endless loops (tests/fuzz/known-hdf5/, format_version 1 files) make show, verify (the
# file as the rollouts and as the scores side) and score exit 2 naming the file, in bounded time (each run is timed
# and printed). They are refused by the structure check (logging/h5v1_check.c, "corrupt HDF5 structure") before
# libhdf5 parses them, so neither the read guard's child nor the caller crashes or loops on them any more, also with
# the guard off; the guard's own limits are tested in test_h5log (test_guard_limits). Version 1 files still read;
# BITROLL_H5_GUARD_SECONDS is checked.
source "$(dirname "$0")/lib/common.bash" "$@"
G=$DATA/golden-v1
KNOWN=$DATA/../fuzz/known-hdf5

# run_guarded MAX_S NAME cmd...: exit 2 within MAX_S seconds (measured), stderr naming NAME; prints the time
run_guarded() {
    local max=$1 name=$2 code=0
    shift 2
    local t0=$EPOCHREALTIME
    timeout 60 "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || code=$?
    local dt
    dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    if [ "$code" != 2 ]; then
        cat "$TMP/err.txt" >&2
        fail "'$*' exited $code after $dt s, expected 2 (124: timed out; >128: killed by a signal)"
    fi
    grep -q -- "$name" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "'$*': stderr does not name $name"; }
    awk -v t="$dt" -v m="$max" 'BEGIN { exit !(t < m) }' || fail "'$*' took $dt s, more than $max s"
    printf 'ok: %6.2f s  exit 2  %s\n' "$dt" "$(head -c 230 "$TMP/err.txt" | tr '\n' ' ')"
}

n=0
for f in "$KNOWN"/*.h5; do
    name=$(basename "$f")
    export BITROLL_H5_GUARD_SECONDS=2
    run_guarded 10 "$name" "$BITROLL" show "$f"
    grep -q "corrupt HDF5 structure" "$TMP/err.txt" ||
        { cat "$TMP/err.txt" >&2; fail "$name: not refused by the structure check"; }
    run_guarded 10 "$name" "$BITROLL" verify "$f" "$G/stories-t0.scores.h5"
    run_guarded 10 "$name" "$BITROLL" verify "$G/stories-t0.rollouts.h5" "$f"
    run_guarded 10 "$name" "$BITROLL" score --quiet --model "$MODEL" --rollouts "$f" --out "$TMP/x.h5"
    [ ! -e "$TMP/x.h5" ] || fail "score of $name wrote $TMP/x.h5"
    unset BITROLL_H5_GUARD_SECONDS
    n=$((n + 1))
done
[ "$n" = 5 ] || fail "expected the 5 reproducers of tests/fuzz/known-hdf5, found $n"
echo "ok: $n libhdf5 reproducers: show, verify (both sides) and score exit 2 naming the file, each within 10 s (guard 2 s)"

# Before the structure check these two ended on the guard's CPU limit (hang-H5HG-deserialize.h5 looped in libhdf5's
# global heap load, segv-H5HG-load.h5 looped in a plain build and crashed in the ASan one). Now libhdf5 never sees
# them: with the defaults, and with the guard off (libhdf5 would run in this process), each is refused at once.
for name in hang-H5HG-deserialize.h5 segv-H5HG-load.h5; do
    run_guarded 5 "$name" "$BITROLL" show "$KNOWN/$name"
    grep -q "corrupt HDF5 structure: global heap collection at 0x" "$TMP/err.txt" ||
        { cat "$TMP/err.txt" >&2; fail "$name: not refused at its global heap collection"; }
    run_guarded 5 "$name" env BITROLL_H5_GUARD_SECONDS=0 "$BITROLL" show "$KNOWN/$name"
done

# version 1 files without damage read as before, guarded, and with the guard off
"$BITROLL" show "$G/stories-t1.rollouts.h5" >"$TMP/guarded.txt" || fail "show of a v1 file failed"
BITROLL_H5_GUARD_SECONDS=0 "$BITROLL" show "$G/stories-t1.rollouts.h5" >"$TMP/direct.txt" || fail "show, guard off"
cmp -s "$TMP/guarded.txt" "$TMP/direct.txt" || fail "show of a v1 file differs with the guard on and off"
"$BITROLL" verify "$G/qwen3-t0.rollouts.h5" "$G/qwen3-t0.scores.h5" >/dev/null || fail "golden v1 qwen3 pair"
echo "ok: version 1 files read the same with the guard on and off"

# the switch is checked like every BITROLL_* one
for v in -1 abc 1.5 86401; do
    code=0
    BITROLL_H5_GUARD_SECONDS=$v "$BITROLL" show "$G/stories-t1.rollouts.h5" >/dev/null 2>"$TMP/err.txt" || code=$?
    [ "$code" = 2 ] && grep -q "BITROLL_H5_GUARD_SECONDS='$v'" "$TMP/err.txt" ||
        { cat "$TMP/err.txt" >&2; fail "BITROLL_H5_GUARD_SECONDS=$v: exit $code"; }
done
echo "ok: bad BITROLL_H5_GUARD_SECONDS values are refused"
