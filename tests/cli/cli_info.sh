# bitroll info on every bundled/test checkpoint, and clear errors with exit 2 on broken ones.
source "$(dirname "$0")/lib/common.bash" "$@"
"$BITROLL" info --model "$MODEL" | tee "$TMP/info.txt"
grep -q "architecture  llama" "$TMP/info.txt" || fail "architecture"
grep -q "parameters    " "$TMP/info.txt" || fail "parameters"
grep -qE "fingerprint   [0-9a-f]{16}" "$TMP/info.txt" || fail "fingerprint"
for m in tiny-qwen3/f32 tiny-qwen3/bf16 tiny-llama/bf16 tiny-gpt2/f32; do
    "$BITROLL" info --model "$DATA/models/$m" --json >"$TMP/j.json" || fail "info $m"
    grep -q '"fingerprint"' "$TMP/j.json" || fail "info --json $m"
done
# truncated weights
mkdir -p "$TMP/trunc"
cp "$MODEL/config.json" "$TMP/trunc/"
head -c 500000 "$MODEL/model.safetensors" >"$TMP/trunc/model.safetensors"
expect_exit 2 "model.safetensors" "$BITROLL" info --model "$TMP/trunc"
# garbage header
mkdir -p "$TMP/garbage"
cp "$MODEL/config.json" "$TMP/garbage/"
printf '\x10\x00\x00\x00\x00\x00\x00\x00not json at all!' >"$TMP/garbage/model.safetensors"
expect_exit 2 "model.safetensors" "$BITROLL" info --model "$TMP/garbage"
# unknown model_type
mkdir -p "$TMP/unknown"
sed 's/"model_type": "llama"/"model_type": "mamba"/' "$MODEL/config.json" >"$TMP/unknown/config.json"
cp "$MODEL/model.safetensors" "$TMP/unknown/"
expect_exit 2 "mamba" "$BITROLL" info --model "$TMP/unknown"
# a missing tensor and a wrong shape: rewrite the safetensors header (python3, standard library only)
rewrite() { # rewrite OUTDIR MODE
    mkdir -p "$1"
    cp "$MODEL/config.json" "$1/"
    python3 - "$MODEL/model.safetensors" "$1/model.safetensors" "$2" <<'PY'
import json, struct, sys
src, dst, mode = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
data = raw[8 + n:]
name = "model.layers.2.mlp.up_proj.weight"
if mode == "missing":
    del hdr[name]
else:  # same bytes, a different shape: [172, 64] -> [64, 172]
    hdr[name]["shape"] = hdr[name]["shape"][::-1]
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)  # keep the data section 8-byte aligned, as safetensors writers do
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
}
rewrite "$TMP/missing" missing
expect_exit 2 "model.layers.2.mlp.up_proj.weight" "$BITROLL" info --model "$TMP/missing"
rewrite "$TMP/shape" shape
expect_exit 2 "model.layers.2.mlp.up_proj.weight" "$BITROLL" info --model "$TMP/shape"
grep -q "shape" "$TMP/err.txt" || fail "the wrong-shape message does not say 'shape'"
# missing directory
expect_exit 2 "no-such-model" "$BITROLL" info --model "$TMP/no-such-model"
echo "PASS"
