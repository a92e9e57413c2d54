# Bad inputs -> exit 2 with a message naming the problem; nothing is written.
source "$(dirname "$0")/lib/common.bash" "$@"
G=("$BITROLL" generate --model "$MODEL" --quiet --max-new-tokens 8)
printf '{"prompt_ids": [1, 2]}\n{"prompt_ids": [1, 3]}\n{"prompt_ids": [1, \n' >"$TMP/malformed.jsonl"
expect_exit 2 "line 3" "${G[@]}" --prompts "$TMP/malformed.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 512]}' >"$TMP/vocab.jsonl"
expect_exit 2 "512" "${G[@]}" --prompts "$TMP/vocab.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 2, 3], "max_new_tokens": 510}' >"$TMP/ctx.jsonl"
expect_exit 2 "max_new_tokens" "${G[@]}" --prompts "$TMP/ctx.jsonl" --out "$TMP/x.h5"
echo '{"prompt_ids": [1, 2, 3]}' >"$TMP/ok.jsonl"
expect_exit 2 "temperature" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --temperature -0.5
expect_exit 2 "top_p" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-p 0
expect_exit 2 "top_p" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-p 1.5
echo '{"prompt_ids": [1, 2, 3], "top_p": 2}' >"$TMP/topp_line.jsonl"
expect_exit 2 "line 1" "${G[@]}" --prompts "$TMP/topp_line.jsonl" --out "$TMP/x.h5"
expect_exit 2 "no-such-dir" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/no-such-dir/x.h5"
expect_exit 2 "not an integer" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --n two
expect_exit 2 "missing.jsonl" "${G[@]}" --prompts "$TMP/missing.jsonl" --out "$TMP/x.h5"
expect_exit 2 "--prompts" "$BITROLL" generate --out "$TMP/x.h5"
# a CPU KV cache larger than the machine (1,048,576 sequences x 2,001 one-token pages of 2 KB: 4.3 TB) is refused
# before any allocation, naming the host memory; nothing is left (no file, no journal)
expect_exit 2 "of host memory" "$BITROLL" generate --model "$DATA/models/tiny-qwen3/bf16" --quiet \
    --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --max-new-tokens 1998 --page-size 1 --max-seqs 1048576
[ ! -e "$TMP/x.h5.parts" ] || fail "a run refused at its start left x.h5.parts"
[ ! -e "$TMP/x.h5" ] || fail "a failed run left $TMP/x.h5"
# --out must be a regular file path that is not an input, checked before any work (issue 16)
expect_exit 2 "character device" "${G[@]}" --prompts "$TMP/ok.jsonl" --out /dev/null
[ -c /dev/null ] || fail "/dev/null is no longer a character device"
expect_exit 2 "directory" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP"
expect_exit 2 "directory" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/sub/"
expect_exit 2 "output path is empty" "${G[@]}" --prompts "$TMP/ok.jsonl" --out ""
cp "$TMP/ok.jsonl" "$TMP/ok.keep"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/ok.jsonl"
ln "$TMP/ok.jsonl" "$TMP/hardlink.jsonl"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/hardlink.jsonl"
expect_exit 2 "same file as --prompts" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/../$(basename "$TMP")/ok.jsonl"
cmp -s "$TMP/ok.jsonl" "$TMP/ok.keep" || fail "--out equal to --prompts changed the prompts"
ln -s "$TMP/ok.keep" "$TMP/symlink.h5"
expect_exit 2 "symbolic link" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/symlink.h5"

# a rollouts file from another model passed to score: fingerprint mismatch
"${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/stories.h5"
expect_exit 2 "fingerprint" "$BITROLL" score --model "$DATA/models/tiny-llama/f32" --rollouts "$TMP/stories.h5" --out "$TMP/s.h5"
[ ! -e "$TMP/s.h5" ] || fail "a failed score left $TMP/s.h5"
cp "$TMP/stories.h5" "$TMP/stories.keep"
expect_exit 2 "same file as --rollouts" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/stories.h5" --out "$TMP/stories.h5"
cmp -s "$TMP/stories.h5" "$TMP/stories.keep" || fail "--out equal to --rollouts changed the rollouts"
expect_exit 2 "character device" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/stories.h5" --out /dev/null
# a rollouts file with a NaN or negative temperature, or a 10M-token prompt: exit 2 naming the sample, before any engine
python3 - "$TMP/stories.h5" "$TMP/badtemp.h5" "$TMP/long.h5" <<'PY'
import shutil, sys, h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    t = f["/samples/temperature"][...]; t[0] = np.nan; f["/samples/temperature"][...] = t
shutil.copy(sys.argv[1], sys.argv[3])
with h5py.File(sys.argv[3], "r+") as f:
    g = f["/samples"]; n = len(g["sample_id"])
    off = g["prompt_offsets"][...]; toks = g["prompt_tokens"][...]
    extra = 10_000_000
    new = np.concatenate([toks[:off[1]], np.ones(extra, np.int32), toks[off[1]:]]).astype(np.int32)
    off = off.copy(); off[1:] += extra
    for k, v in (("prompt_tokens", new), ("prompt_offsets", off)):
        del g[k]; g.create_dataset(k, data=v, chunks=True)
PY
python3 "$(dirname "$0")/lib/h5seal.py" "$TMP/badtemp.h5" "$TMP/long.h5" # edited: re-sealed (docs/FORMAT.md)
expect_exit 2 "badtemp.h5: sample 0: temperature = nan" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/badtemp.h5" --out "$TMP/s.h5"
python3 - "$TMP/stories.h5" "$TMP/negtemp.h5" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    t = f["/samples/temperature"][...]; t[0] = -1; f["/samples/temperature"][...] = t
PY
python3 "$(dirname "$0")/lib/h5seal.py" "$TMP/negtemp.h5"
expect_exit 2 "negtemp.h5: sample 0: temperature = -1" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/negtemp.h5" --out "$TMP/s.h5"
expect_exit 2 "long.h5: sample 0: prompt (10000003 tokens)" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/long.h5" --out "$TMP/s.h5"
[ ! -e "$TMP/s.h5" ] || fail "a failed score left $TMP/s.h5"
# not an HDF5 file / missing file
echo "hello" >"$TMP/not.h5"
expect_exit 2 "not.h5" "$BITROLL" score --model "$MODEL" --rollouts "$TMP/not.h5" --out "$TMP/s.h5"
expect_exit 2 "not.h5" "$BITROLL" verify "$TMP/not.h5" "$TMP/stories.h5"
# the same errors under mpirun: one message, exit 2
expect_exit 2 "line 3" mpirun_np 2 "${G[@]}" --prompts "$TMP/malformed.jsonl" --out "$TMP/x.h5"
# misleading messages fixed (issue 16): values printed as given, the real reason named
expect_exit 2 "1.0000001" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-p 1.0000001
expect_exit 2 "top_k = -1: must be >= 0" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --top-k -1
expect_exit 2 "too small to divide by" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --temperature 1e-45
expect_exit 2 "too small for fp32" "${G[@]}" --prompts "$TMP/ok.jsonl" --out "$TMP/x.h5" --temperature 1e-50
# samples per line and per file are capped before any allocation
echo '{"prompt_ids": [1, 2], "n": 100000000}' >"$TMP/n_line.jsonl"
expect_exit 2 "line 1: field 'n' = 100000000" "${G[@]}" --prompts "$TMP/n_line.jsonl" --out "$TMP/x.h5"
for i in $(seq 65); do echo '{"prompt_ids": [1, 2], "n": 1048576}'; done >"$TMP/n_total.jsonl"
expect_exit 2 "line 65: field 'n'" "${G[@]}" --prompts "$TMP/n_total.jsonl" --out "$TMP/x.h5"
# a prompt longer than the context fails at parsing, before any engine exists
python3 -c 'print("{\"prompt_ids\": [" + ", ".join(["1"] * 100000) + "]}")' >"$TMP/long.jsonl"
expect_exit 2 "exceeds the context length 512" "${G[@]}" --prompts "$TMP/long.jsonl" --out "$TMP/x.h5"
# config.json sizes beyond what any model has: exit 2 naming the field, no huge allocation
for field in num_hidden_layers max_position_embeddings hidden_size vocab_size intermediate_size; do
    rm -rf "$TMP/bigcfg" && mkdir "$TMP/bigcfg"
    ln -s "$(cd "$MODEL" && pwd)/model.safetensors" "$TMP/bigcfg/model.safetensors"
    python3 - "$MODEL/config.json" "$TMP/bigcfg/config.json" "$field" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c[sys.argv[3]] = 2147483647; json.dump(c, open(sys.argv[2], "w"))
PY
    expect_exit 2 "field '$field' = 2147483647 is larger than bitroll supports" "$BITROLL" info --model "$TMP/bigcfg"
done
# NaN weights: generation fails naming the sample (exit 3), never a file of NaN log-probs
rm -rf "$TMP/nanmodel" && mkdir "$TMP/nanmodel"
cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$MODEL/tokenizer_config.json" "$TMP/nanmodel/"
python3 - "$MODEL/model.safetensors" "$TMP/nanmodel/model.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["model.norm.weight"]  # the final norm: every logit becomes NaN
assert t["dtype"] == "F32"
a, e = t["data_offsets"]
b[8 + n + a:8 + n + e] = struct.pack("<f", float("nan")) * ((e - a) // 4)
open(sys.argv[2], "wb").write(b)
PY
expect_exit 3 "sample 0: completion token 0 (id 0): the log-prob is NaN" "$BITROLL" generate --model "$TMP/nanmodel" --quiet \
    --prompts "$TMP/ok.jsonl" --out "$TMP/nan.h5" --max-new-tokens 4
[ ! -e "$TMP/nan.h5" ] || fail "NaN weights wrote $TMP/nan.h5"
# --help on every verb
for v in info generate score verify bench tokenize show; do
    "$BITROLL" $v --help | grep -q "usage: bitroll $v" || fail "$v --help"
done
expect_exit 2 "contradict" "$BITROLL" bench --kernel-table-only --no-kernel-table
expect_exit 2 "needs --device cuda" "$BITROLL" bench --kernel-table-only --device cpu
expect_exit 2 "needs the kernel table" "$BITROLL" bench --kernel-json "$TMP/k.json" --no-kernel-table
expect_exit 2 "needs the kernel table" "$BITROLL" bench --kernel-json "$TMP/k.json" --device cpu --model "$MODEL"
# a bad --model is named, exit 2 (bench loads the model before it measures the kernel table)
expect_exit 2 "no-such-dir" "$BITROLL" bench --model "$TMP/no-such-dir" --device cpu
# random weights are generated on the GPU: on the CPU bench asks for a checkpoint at once (it used to build 0.6B
# random parameters on the host, then fail in every mode)
expect_exit 2 "needs --model DIR" "$BITROLL" bench --device cpu
"$BITROLL" --help | grep -q "verbs:" || fail "bitroll --help"
expect_exit 2 "unknown verb" "$BITROLL" frobnicate
echo "PASS"
