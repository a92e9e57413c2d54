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
# missing directory
expect_exit 2 "no-such-model" "$BITROLL" info --model "$TMP/no-such-model"
echo "PASS"
