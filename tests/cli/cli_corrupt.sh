# Files that defend themselves (issue 16): a rollouts or scores file with one flipped bit, cut short, stripped of
# its header or claiming more data than it holds makes verify / show / score exit 2 naming the file, within
# `timeout 10` (never 0, never 1, never a signal: libhdf5 is not reached with a damaged version 2 file), and with
# bounded memory. Version 1 files (tests/data/golden-v1, written before the header existed) still read and verify.
source "$(dirname "$0")/lib/common.bash" "$@"
G=$DATA/golden-v1

# run_bad WHAT FILE-NAME cmd...: exit 2 within 10 s, stderr naming the file
run_bad() {
    local what=$1 name=$2 code=0
    shift 2
    timeout 10 "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || code=$?
    if [ "$code" != 2 ]; then
        cat "$TMP/err.txt" >&2
        fail "$what: '$*' exited $code, expected 2 (124: timed out; >128: killed by a signal)"
    fi
    grep -q -- "$name" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "$what: stderr does not name $name"; }
}

printf '{"prompt_ids": [1, 403, 407]}\n{"prompt_ids": [1, 291, 410, 456], "n": 2}\n' >"$TMP/p.jsonl"
"$BITROLL" generate --quiet --model "$MODEL" --prompts "$TMP/p.jsonl" --out "$TMP/r.h5" --n 2 --max-new-tokens 12 \
    --temperature 1 --seed 5
"$BITROLL" score --quiet --model "$MODEL" --rollouts "$TMP/r.h5" --out "$TMP/s.h5"
"$BITROLL" verify "$TMP/r.h5" "$TMP/s.h5" >/dev/null || fail "a fresh pair does not verify"
[ "$(head -c 7 "$TMP/r.h5")" = BITROLL ] || fail "r.h5 does not start with the bitroll header"

# (a) one flipped bit. Every byte of the header's fields and of the HDF5 superblock, some of the rest of the header,
# then a fixed stride through the file; bit (offset mod 8) of the byte. show (fast) at every position, the
# MPI-launching verbs at every 12th (every byte of both kinds is flipped in tests/unit/test_h5log.c).
python3 - "$TMP" <<'PY'
import os, sys
tmp = sys.argv[1]
for name in ("r", "s"):
    data = open(f"{tmp}/{name}.h5", "rb").read()
    n = len(data)
    pos = sorted(set(list(range(0, 64)) + list(range(64, 512, 41)) + list(range(512, 560)) +
                     list(range(560, n, max(1, n // 120))) + [n - 1]))
    os.makedirs(f"{tmp}/flip_{name}", exist_ok=True)
    for i in pos:
        b = bytearray(data); b[i] ^= 1 << (i % 8)
        open(f"{tmp}/flip_{name}/{i:07d}.h5", "wb").write(b)
PY
k=0
for f in "$TMP"/flip_r/*.h5; do
    run_bad "rollouts byte $(basename "$f" .h5) flipped" "$(basename "$f")" "$BITROLL" show "$f"
    if [ $((k % 12)) = 0 ]; then
        run_bad "rollouts byte $(basename "$f" .h5) flipped" "$(basename "$f")" "$BITROLL" verify "$f" "$TMP/s.h5"
        run_bad "rollouts byte $(basename "$f" .h5) flipped" "$(basename "$f")" \
            "$BITROLL" score --quiet --model "$MODEL" --rollouts "$f" --out "$TMP/x.h5"
    fi
    k=$((k + 1))
done
echo "ok: $k rollouts files with one flipped bit: show exits 2 naming the file ($(( (k + 11) / 12 )) with verify and score)"
j=0
for f in "$TMP"/flip_s/*.h5; do
    if [ $((j % 16)) = 0 ]; then
        run_bad "scores byte $(basename "$f" .h5) flipped" "$(basename "$f")" "$BITROLL" verify "$TMP/r.h5" "$f"
    fi
    j=$((j + 1))
done
echo "ok: $(( (j + 15) / 16 )) scores files with one flipped bit: verify exits 2 naming the file"
grep -q "checksum mismatch" "$TMP/err.txt" || fail "a flipped data byte is not reported as a checksum mismatch"
[ ! -e "$TMP/x.h5" ] || fail "score of a damaged file wrote $TMP/x.h5"

# (b) cut short: the header records the length
len=$(stat -c %s "$TMP/r.h5")
for cut in 0 7 100 511 512 600 $((len / 2)) $((len - 1)); do
    head -c "$cut" "$TMP/r.h5" >"$TMP/cut.h5"
    run_bad "rollouts cut to $cut bytes" cut.h5 "$BITROLL" show "$TMP/cut.h5"
    run_bad "rollouts cut to $cut bytes" cut.h5 "$BITROLL" verify "$TMP/cut.h5" "$TMP/s.h5"
    if [ "$cut" -ge 512 ]; then grep -q "truncated: $cut of $len bytes" "$TMP/err.txt" || fail "cut to $cut: no length"; fi
done
slen=$(stat -c %s "$TMP/s.h5")
head -c $((slen - 100)) "$TMP/s.h5" >"$TMP/scut.h5"
run_bad "scores cut short" scut.h5 "$BITROLL" verify "$TMP/r.h5" "$TMP/scut.h5"
grep -q "truncated: $((slen - 100)) of $slen bytes" "$TMP/err.txt" || fail "scores cut short: no length in the message"
# the header stripped off (HDF5 itself would still open what is left)
tail -c +513 "$TMP/r.h5" >"$TMP/stripped.h5"
run_bad "header stripped" stripped.h5 "$BITROLL" show "$TMP/stripped.h5"
grep -q "without its 512-byte bitroll header" "$TMP/err.txt" || fail "a stripped header is not named as such"
echo "ok: truncated, and stripped of their header: exit 2 with the lengths"

# (c) version 1 files (no header) still read, verify and score; a version 2 scores file verifies against them
"$BITROLL" verify "$G/stories-t0.rollouts.h5" "$G/stories-t0.scores.h5" >/dev/null || fail "golden v1 pair does not verify"
"$BITROLL" show "$G/stories-t1.rollouts.h5" >/dev/null || fail "show of a v1 file failed"
"$BITROLL" score --quiet --model "$MODEL" --rollouts "$G/stories-t1.rollouts.h5" --out "$TMP/s1.h5"
# the v1 file's log-probs come from the engine before kernels/kern_math.h: today's scores differ in the last bits
# (exit 1, the mismatch code) -- the file reads and scores, and verify says so rather than failing to read it
code=0
"$BITROLL" verify "$G/stories-t1.rollouts.h5" "$TMP/s1.h5" >"$TMP/v1.txt" 2>&1 || code=$?
[ "$code" = 1 ] || { cat "$TMP/v1.txt"; fail "v1 rollouts + today's v2 scores: verify exit $code, expected 1 (mismatch)"; }
echo "ok: version 1 files read, verify and score"

# (d) a small version 1 file (no header to check) whose datasets claim 2e9 elements: exit 2 at once, with memory
# bounded by ulimit -v (not under a sanitizer, which reserves terabytes of address space)
python3 - "$G/stories-t0.rollouts.h5" "$TMP/claims.h5" "$TMP/claims_t.h5" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    del f["samples/sample_id"]
    f["samples"].create_dataset("sample_id", shape=(2_000_000_000,), dtype="<i8", chunks=(65536,))
shutil.copy(sys.argv[1], sys.argv[3])
with h5py.File(sys.argv[3], "r+") as f:  # completion_offsets[-1] claims 2^40 tokens
    o = f["samples/completion_offsets"][...]; o[-1] = 1 << 40; f["samples/completion_offsets"][...] = o
PY
[ "$(stat -c %s "$TMP/claims.h5")" -lt 200000 ] || fail "claims.h5 is not small"
LIMIT=()
if ! ldd "$BITROLL" | grep -q 'lib\(asan\|ubsan\)'; then LIMIT=(bash -c 'ulimit -v 2000000 && exec "$@"' limit); fi
run_bad "2e9-element sample_id" claims.h5 "${LIMIT[@]}" "$BITROLL" score --quiet --model "$MODEL" --rollouts "$TMP/claims.h5" --out "$TMP/x.h5"
grep -q "2000000000 elements of 8 bytes cannot fit" "$TMP/err.txt" || fail "the 2e9 claim is not named"
run_bad "2e9-element sample_id" claims.h5 "${LIMIT[@]}" "$BITROLL" verify "$TMP/claims.h5" "$G/stories-t0.scores.h5"
run_bad "2e9-element sample_id" claims.h5 "${LIMIT[@]}" "$BITROLL" show "$TMP/claims.h5"
run_bad "2^40 tokens claimed" claims_t.h5 "${LIMIT[@]}" "$BITROLL" show "$TMP/claims_t.h5"
[ ! -e "$TMP/x.h5" ] || fail "score of a file with false claims wrote $TMP/x.h5"
echo "ok: false dataset sizes in a version 1 file: exit 2 under ulimit -v 2 GB"

# the Python reader (python/bitroll/files.py, h5py) checks the header the same way before h5py opens the file
PYTHONPATH=$DATA/../../python python3 - "$TMP" "$G" <<'PY'
import glob, sys
from bitroll.files import read_rollouts, read_scores
from bitroll import BitrollError
tmp, g = sys.argv[1], sys.argv[2]
assert len(read_rollouts(f"{tmp}/r.h5").sample_id) == len(read_scores(f"{tmp}/s.h5").sample_id) == 4
assert len(read_rollouts(f"{g}/stories-t0.rollouts.h5").sample_id) > 0  # version 1
cases = {f"{tmp}/cut.h5": "truncated", f"{tmp}/stripped.h5": "without a bitroll header"}
for f in sorted(glob.glob(f"{tmp}/flip_r/*.h5"))[::10]:
    cases[f] = "header damaged" if int(f[-10:-3]) < 512 else "checksum mismatch"
del cases[sorted(glob.glob(f"{tmp}/flip_r/*.h5"))[0]]  # byte 0: the magic (h5py then refuses it, checked below)
for f, want in cases.items():
    try:
        read_rollouts(f)
    except BitrollError as e:
        assert e.status == "BITROLL_EFORMAT" and want in e.message and f in e.message, (f, e.message)
    else:
        raise SystemExit(f"FAIL: read_rollouts({f}) did not fail")
try:
    read_rollouts(f"{tmp}/flip_r/0000000.h5")
    raise SystemExit("FAIL: a damaged magic read")
except BitrollError as e:
    assert "without a bitroll header" in e.message, e.message
print(f"ok: bitroll.read_rollouts refuses {len(cases) + 1} damaged files")
PY
