#!/usr/bin/env bash
# `bitroll bench --workload rl` on the CPU with a tiny checkpoint and tiny counts: the table's columns, one row per
# (new tokens, top-p), the JSON figures; bad workload options and --gpu-memory-utilization values are exit 2.
source "$(dirname "$0")/lib/common.bash" "$@"
TINY=$DATA/models/tiny-qwen3/bf16
"$BITROLL" bench --workload rl --device cpu --model "$TINY" --prompts-count 3 --n 2 --prompt-len 5 \
    --new-tokens 6,9 --top-p 1.0,0.95 --top-p-prompts 2 --json "$TMP/rl.json" | tee "$TMP/rl.txt"
header=$(grep -E '^ +new ' "$TMP/rl.txt") || fail "no table header"
for col in new top_p samples tokens seconds tok/s prefill% decode% host% HBM_GB/s %copy peak_GB seqs batch; do
    grep -qF -- " $col" <<<"$header" || fail "column $col missing"
done
[ "$(grep -cE '^ +(6|9) +(1.00|0.95) ' "$TMP/rl.txt")" = 4 ] || fail "expected 4 rows (2 lengths x 2 top-p)"
# every completion runs to its length (no stop token): 3 x 2 x 6 tokens at top-p 1, 2 x 2 x 9 at top-p 0.95
grep -qE '^ +6 +1.00 +6 +36 ' "$TMP/rl.txt" || fail "6 samples x 6 tokens"
grep -qE '^ +9 +0.95 +4 +36 ' "$TMP/rl.txt" || fail "4 samples x 9 tokens"
python3 - "$TMP/rl.json" <<'PY' || fail "JSON"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["workload"] == "rl" and j["n"] == 2 and len(j["runs"]) == 4, j
for r in j["runs"]:
    assert r["tokens"] == r["samples"] * r["new_tokens"], r
    # shared prompt KV (the default): each prompt's first 4 tokens once, then each sample's last prompt token
    assert r["rows_prefill"] == r["prompts"] * 4 + r["samples"], r
    assert r["tokens_per_s"] > 0 and r["hbm_bytes"] > 0 and r["weights_bytes"] > 0, r
PY
write_prompts "$TMP/p.jsonl"
expect_exit 2 "workload" "$BITROLL" bench --workload chat
expect_exit 2 "needs --model DIR" "$BITROLL" bench --workload rl --device cpu
expect_exit 2 "top-p" "$BITROLL" bench --workload rl --device cpu --model "$TINY" --top-p 1.5
expect_exit 2 "context length" "$BITROLL" bench --workload rl --device cpu --model "$TINY" --new-tokens 100000
expect_exit 2 "gpu-memory-utilization" "$BITROLL" generate --prompts "$TMP/p.jsonl" --out "$TMP/x.h5" \
    --gpu-memory-utilization 1.5
expect_exit 2 "gpu-memory-utilization" "$BITROLL" generate --prompts "$TMP/p.jsonl" --out "$TMP/x.h5" \
    --gpu-memory-utilization 0
echo "cli_bench_rl: ok"
