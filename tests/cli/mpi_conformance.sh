# The conformance suite's CPU subset (tests/conformance/conformance.py --quick --device cpu) on the bundled
# stories260K: needle, batch 1 vs N, decode vs prefill, SGLang single/mixed/prefix, 200 completions at T = 0,
# distractors, Div_Index / Std@Acc, mpirun -np 1 vs 2 and --tp 1 vs 2 (any differing bit fails the test), and the
# sensitivity check (the final norm moved by one ulp must change log-prob bits: the comparisons can fail).
source "$(dirname "$0")/lib/common.bash" "$@"
LIB=$(dirname "$TOOLS")/libbitroll.so
[ -f "$LIB" ] || fail "libbitroll.so not found beside the test directory ($LIB)"
"$PYTHON" -c "import numpy, h5py" 2>/dev/null || fail "the conformance suite needs python3-numpy and python3-h5py"
# One OpenMP thread per process: the ranks and the Python engine share the CI machine's cores, and spinning OpenMP
# teams on oversubscribed cores cost more than they save (the bits do not depend on it).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
san_env "$LIB" # a sanitizer build: its runtimes preloaded into Python (and so into the CLI runs it starts)
code=0
env "${SAN_ENV[@]}" "$PYTHON" "$(dirname "$0")/../conformance/conformance.py" --bitroll "$BITROLL" --lib "$LIB" --device cpu \
    --model "$MODEL" --out "$TMP/out" --quick | tee "$TMP/log.txt" || code=$?
[ "$code" = 0 ] || fail "conformance.py exited $code (see the table above)"
grep -q "^RESULT: PASS" "$TMP/log.txt" || fail "no 'RESULT: PASS' line"
"$PYTHON" - "$TMP/out/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["passed"], "results.json: passed is false"
tests = {x["test"] for x in r["results"]}
want = {"needle", "batch1_vs_N", "decode_vs_prefill", "sglang_single", "sglang_mixed", "sglang_prefix",
        "completions_1000", "distractors", "div_index", "ranks_np1_vs_np2", "tp1_vs_tp2", "sensitivity_1ulp"}
assert want <= tests, f"missing tests: {sorted(want - tests)}"
assert all(x["status"] == "PASS" for x in r["results"]), [x for x in r["results"] if x["status"] != "PASS"]
print(f"results.json: {len(r['results'])} tests, all PASS, {r['seconds']} s")
PY
echo "PASS"
