#!/usr/bin/env bash
# The main job on the bundled stories260K model, from a fresh clone: build, generate on 2 MPI ranks,
# score (teacher-forced, other batch shapes, 1 rank), show the stories, verify (exit 0 iff KL = 0 exactly).
# usage: scripts/demo.sh [OUTDIR]   (default: build/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/demo}
if [ ! -x build/bitroll ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)" --target bitroll >/dev/null
fi
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PROMPTS=configs/prompts/stories.jsonl   # text prompts; stories_ids.jsonl holds token-id prompts
set -x
mpirun --oversubscribe -np 2 build/bitroll generate --prompts "$PROMPTS" --out "$OUT/rollouts.h5" \
    --n 2 --temperature 1.0 --top-p 0.95 --max-new-tokens 128 --seed 1
build/bitroll score --rollouts "$OUT/rollouts.h5" --out "$OUT/scores.h5" --max-batch-tokens 97
build/bitroll show --limit 8 "$OUT/rollouts.h5"
build/bitroll verify "$OUT/rollouts.h5" "$OUT/scores.h5"
