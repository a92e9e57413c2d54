#!/usr/bin/env bash
# `bitroll bench` (end to end) on the CPU with a tiny checkpoint: the table's columns, one row per (mode, batch), and
# the JSON's cost model -- steps, keys read, the weights a step reads (recomputed here from config.json) and the
# HBM GB/s they give.
source "$(dirname "$0")/lib/common.bash" "$@"
TINY=$DATA/models/tiny-qwen3/bf16
"$BITROLL" bench --device cpu --model "$TINY" --modes invariant --batches 1,3 --prompt-len 5 --new-tokens 8 \
    --json "$TMP/b.json" | tee "$TMP/b.txt"
header=$(grep -E '^mode ' "$TMP/b.txt") || fail "no table header"
for col in batch seconds "gen tok/s" "score tok/s" tokens "lp differ" "dg differ" HBM_GB/s %copy; do
    grep -qF -- " $col" <<<"$header" || fail "column $col missing"
done
[ "$(grep -cE '^invariant +(1|3) ' "$TMP/b.txt")" = 2 ] || fail "expected 2 rows (batches 1 and 3)"
grep -q "copy bandwidth: not measured" "$TMP/b.txt" || fail "the CPU run must say the copy bandwidth is not measured"
python3 - "$TMP/b.json" "$TINY/config.json" <<'PY' || fail "JSON"
import json, sys
j, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
D, hd, H, KV, F, V, L = (c[k] for k in ("hidden_size", "head_dim", "num_attention_heads", "num_key_value_heads",
                                        "intermediate_size", "vocab_size", "num_hidden_layers"))
# bf16 matrices (q, k, v, o, gate, up, down), f32 norms (two, q/k norm), the LM head, the final norm
layer = (H * hd * D + 2 * KV * hd * D + D * H * hd + 3 * F * D) * 2 + (2 * D + 2 * hd) * 4
weights_step = L * layer + V * D * 2 + D * 4
kv_token = 2 * L * KV * hd * 2
assert j["copy_gbs"] == 0 and len(j["runs"]) == 2, j
for r in j["runs"]:
    B = r["batch"]
    assert r["tokens"] == 8 * B and r["steps"] == 8, r  # the prompt's step gives the first token, 7 decode steps
    assert r["kv_read_tokens"] == B * (5 + sum(5 + i for i in range(1, 8))), r  # keys 0..pos of every row's sequence
    assert r["weights_step_bytes"] == weights_step and r["kv_token_bytes"] == kv_token, (r, weights_step, kv_token)
    hbm = (r["steps"] * weights_step + r["kv_read_tokens"] * kv_token) / r["seconds"] / 1e9
    assert abs(hbm - r["hbm_gbs"]) <= 0.01 + 1e-3 * hbm, (hbm, r)
PY
echo "cli_bench: ok"
