#!/usr/bin/env bash
# Makes the golden rollouts/scores files of tests/data/golden/ (tests/cli/cli_golden.sh checks that today's code
# reproduces their datasets bit for bit). First made by commit 081e456 (kept as format-version-1 files in
# tests/data/golden-v1/); remade once on 2026-12-03 when exp/log/tanh became bitroll's own (kernels/kern_math.h,
# issue 17): the same tokens in all four runs, T = 1 sampling included; log-probs within 3.8e-6 of the old files;
# digests differ. usage: make.sh BITROLL_BINARY OUT_DIR
set -euo pipefail
B=$1; O=$2; D=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$O"
mk() { # name model prompts generate-options...
  local name=$1 model=$2 prompts=$3; shift 3
  "$B" generate --quiet --model "$model" --prompts "$prompts" --out "$O/$name.rollouts.h5" "$@"
  "$B" score --quiet --model "$model" --rollouts "$O/$name.rollouts.h5" --out "$O/$name.scores.h5" --max-batch-tokens 37
}
S=$(cd "$D/../../configs/models/stories260K" && pwd)
Q=$D/models/tiny-qwen3/bf16
mk stories-t0 "$S" "$D/golden/stories.jsonl" --n 2 --temperature 0 --max-new-tokens 48 --seed 7
mk stories-t1 "$S" "$D/golden/stories.jsonl" --n 3 --temperature 1 --top-p 0.9 --max-new-tokens 48 --seed 7
mk qwen3-t0 "$Q" "$D/golden/ids.jsonl" --n 2 --temperature 0 --max-new-tokens 24 --seed 3 --no-stop
mk qwen3-t1 "$Q" "$D/golden/ids.jsonl" --n 3 --temperature 1 --top-p 0.9 --max-new-tokens 24 --seed 3 --no-stop
