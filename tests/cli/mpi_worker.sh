# bitroll worker (the persistent generate job of RL loops) under mpirun -np 2:
# - a round without new weights gives the same samples as `bitroll generate` (datasets compared bit for bit);
# - new weights sent as a .safetensors file reach both ranks (MPI broadcast), their fingerprint equals the one of a
#   checkpoint holding them (bitroll info), and the round's samples equal `bitroll generate --model` of that
#   checkpoint on one rank; the update stays for the next request;
# - bad requests are answered with exit_code 2 and the job goes on; a wrong expected fingerprint is refused;
# - EOF ends the job with exit 0; --prompts at start-up is refused.
source "$(dirname "$0")/lib/common.bash" "$@"
write_prompts "$TMP/p.jsonl"

# a checkpoint with one changed weight: the first element of the final norm (F32 in stories260K), +1.0 exactly
mkdir -p "$TMP/mod"
cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$TMP/mod/"
python3 - "$MODEL/model.safetensors" "$TMP/mod/model.safetensors" "$TMP/delta.safetensors" <<'EOF'
import json, struct, sys
src, dst, delta = sys.argv[1:]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n])
data = bytearray(b[8 + n:])
name = "model.norm.weight"
t = hdr[name]
assert t["dtype"] == "F32", t
a, e = t["data_offsets"]
v = struct.unpack("<f", data[a:a + 4])[0]
data[a:a + 4] = struct.pack("<f", v + 1.0)
open(dst, "wb").write(b[:8 + n] + bytes(data))
# the update file holds only the changed tensor
h = json.dumps({name: {"dtype": "F32", "shape": t["shape"], "data_offsets": [0, e - a]}}).encode()
h += b" " * (-len(h) % 8)
open(delta, "wb").write(struct.pack("<Q", len(h)) + h + bytes(data[a:e]))
EOF
FP_MOD=$("$BITROLL" info --model "$TMP/mod" | sed -n 's/.*fingerprint[^0-9a-f]*\([0-9a-f]\{16\}\).*/\1/p' | head -1)
FP_BASE=$("$BITROLL" info --model "$MODEL" | sed -n 's/.*fingerprint[^0-9a-f]*\([0-9a-f]\{16\}\).*/\1/p' | head -1)
[ -n "$FP_MOD" ] && [ -n "$FP_BASE" ] && [ "$FP_MOD" != "$FP_BASE" ] || fail "fingerprints: base '$FP_BASE', mod '$FP_MOD'"

A=(--prompts "$TMP/p.jsonl" --n 2 --max-new-tokens 24 --seed 5)
cat >"$TMP/requests.jsonl" <<EOF
{"id": "base", "args": ["--prompts", "$TMP/p.jsonl", "--out", "$TMP/w_base.h5", "--n", "2", "--max-new-tokens", "24", "--seed", "5"]}
{"id": "bad-fixed", "args": ["--prompts", "$TMP/p.jsonl", "--out", "$TMP/x.h5", "--device", "cpu"]}
{"id": "bad-field", "weights": "$TMP/delta.safetensors", "argz": []}
{"id": "bad-fp", "weights": "$TMP/delta.safetensors", "fingerprint": "0123456789abcdef", "args": ["--prompts", "$TMP/p.jsonl", "--out", "$TMP/x.h5"]}
not json

{"id": "mod", "weights": "$TMP/delta.safetensors", "fingerprint": "$FP_MOD", "args": ["--prompts", "$TMP/p.jsonl", "--out", "$TMP/w_mod.h5", "--n", "2", "--max-new-tokens", "24", "--seed", "5", "--weight-version", "7"]}
{"id": "kept", "fingerprint": "$FP_MOD", "args": ["--prompts", "$TMP/p.jsonl", "--out", "$TMP/w_kept.h5", "--n", "2", "--max-new-tokens", "24", "--seed", "5", "--max-batch-tokens", "7"]}
EOF
code=0
mpirun_np 2 "$BITROLL" worker --quiet --max-batch-tokens 64 <"$TMP/requests.jsonl" >"$TMP/answers.jsonl" \
    2>"$TMP/worker.err" || code=$?
cat "$TMP/answers.jsonl"
[ "$code" = 0 ] || { cat "$TMP/worker.err"; fail "worker exited $code after EOF, expected 0"; }
python3 - "$TMP/answers.jsonl" "$FP_BASE" "$FP_MOD" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
base, mod = sys.argv[2], sys.argv[3]
assert lines[0]["ready"] is True and lines[0]["fingerprint"] == base and lines[0]["world_size"] == 2, lines[0]
got = {a["id"]: a for a in lines[1:] if a.get("id") is not None}
assert len(lines) == 1 + 7, f"{len(lines) - 1} answers to 7 requests"
assert got["base"]["ok"] and got["base"]["fingerprint"] == base and got["base"]["samples"] == 12, got["base"]
for k, pat in (("bad-fixed", "--device is fixed"), ("bad-field", "unknown field 'argz'"),
               ("bad-fp", "expects 0123456789abcdef")):
    a = got[k]
    assert a["ok"] is False and a["exit_code"] == 2 and pat in a["error"], (k, a)
nulls = [a for a in lines[1:] if a.get("id") is None]
assert len(nulls) == 1 and nulls[0]["exit_code"] == 2 and "not a JSON object" in nulls[0]["error"], nulls
m = got["mod"]
assert m["ok"] and m["fingerprint"] == mod and m["weight_version"] == 7 and m["seconds"]["weights"] >= 0, m
assert got["kept"]["ok"] and got["kept"]["fingerprint"] == mod, got["kept"]
print("answers ok")
EOF
# the same rounds by `bitroll generate` on one rank, with other budgets: the same bits
"$BITROLL" generate --quiet --model "$MODEL" "${A[@]}" --out "$TMP/g_base.h5" --max-batch-tokens 13
"$BITROLL" generate --quiet --model "$TMP/mod" "${A[@]}" --out "$TMP/g_mod.h5" --weight-version 7
same_rollouts "$TMP/w_base.h5" "$TMP/g_base.h5"
same_rollouts "$TMP/w_mod.h5" "$TMP/g_mod.h5"
same_rollouts "$TMP/w_kept.h5" "$TMP/g_mod.h5"
if "$TOOLS/rollouts_cmp" "$TMP/w_base.h5" "$TMP/w_mod.h5" >/dev/null 2>&1; then
    fail "the changed weight did not change the samples: the comparison proves nothing"
fi
# the files record the weights that made them
"$BITROLL" score --quiet --model "$TMP/mod" --rollouts "$TMP/w_mod.h5" --out "$TMP/s_mod.h5"
"$BITROLL" verify --quiet "$TMP/w_mod.h5" "$TMP/s_mod.h5" || fail "the worker's rollouts do not verify"

expect_exit 2 "per request" "$BITROLL" worker --prompts "$TMP/p.jsonl"
"$BITROLL" worker --help | grep -q "stdin: JSON requests" || fail "worker --help"
echo "PASS"
