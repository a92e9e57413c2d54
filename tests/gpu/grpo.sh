#!/usr/bin/env bash
# Issue 14 on the GPU machine: GRPO at the Qwen3-0.6B shape (random BF16 weights, the synthetic token reward), the
# trainer (PyTorch + the engine) and one persistent `bitroll worker` rank on the GPU, KL exactly 0 verified every step
# (grpo.py stops otherwise). Needs the CUDA build of tests/gpu/run.sh ($BUILD, default build-gpu) and python3 with
# torch (CUDA), numpy and h5py. Writes $LOGS/grpo_gpu.jsonl, grpo_gpu.log and rl-gpu.png; prints a per-phase table.
# Usage: LOGS=/tmp/gpulogs STEPS=20 bash tests/gpu/grpo.sh
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOGS=${LOGS:-${OUT:-$ROOT/gpu-out}}
STEPS=${STEPS:-20}
mkdir -p "$LOGS"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x "$BUILD/bitroll" ] && [ -f "$BUILD/libbitroll.so" ] || { echo "grpo.sh: no CUDA build in $BUILD (run tests/gpu/run.sh)"; exit 1; }
WORK=/tmp/grpo-gpu
rm -rf "$WORK"
cd "$ROOT" || exit 1
PLOT=()
python3 -c "import matplotlib" 2>/dev/null && PLOT=(--plot "$LOGS/rl-gpu.png") || echo "grpo.sh: no matplotlib: no plot"
PYTHONPATH=$ROOT/python BITROLL_LIB=$BUILD/libbitroll.so timeout "${GRPO_TIMEOUT:-420}" python3 examples/grpo/grpo.py \
    --init-random configs/shapes/qwen3-0.6b.json --reward tokens --device cuda --np 1 \
    --steps "$STEPS" --num-prompts 16 --n 8 --max-new-tokens 128 --temperature 1.0 \
    --max-batch-tokens 2048 --max-seqs 128 --lr "${LR:-3e-4}" --seed 0 --keep 1 \
    --bitroll "$BUILD/bitroll" --out-dir "$WORK" --log "$LOGS/grpo_gpu.jsonl" "${PLOT[@]}" \
    2>&1 | tee "$LOGS/grpo_gpu.log"
rc=${PIPESTATUS[0]}
cp "$WORK/workers.stderr" "$LOGS/grpo_workers.stderr" 2>/dev/null
python3 - "$LOGS/grpo_gpu.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not recs:
    sys.exit("no steps logged")
keys = ["checkpoint", "generate", "worker_weights", "worker_generate", "score", "backward", "push"]
print("step  reward_mean   KL  max|d|  tokens  " + "  ".join(f"{k:>15}" for k in keys))
for r in recs:
    print(f"{r['step']:4d}  {r['reward_mean']:.4f}  {r['kl']:.1e}  {r['max_abs_delta']:.0e}  {r['tokens']:6d}  "
          + "  ".join(f"{r['seconds'].get(k, float('nan')):15.3f}" for k in keys))
n = len(recs)
tail = recs[1:] if n > 1 else recs  # step 0 sends no weights and warms up
print("mean of steps 1..: " + "  ".join(f"{k} {sum(r['seconds'].get(k, 0) for r in tail) / len(tail):.3f}s"
                                      for k in keys))
print(f"steps {n}, KL == 0 at {sum(r['kl'] == 0.0 and r['max_abs_delta'] == 0.0 for r in recs)}/{n}; "
      f"reward first 3 {[round(r['reward_mean'], 4) for r in recs[:3]]}, last 3 "
      f"{[round(r['reward_mean'], 4) for r in recs[-3:]]}")
EOF
echo "grpo.sh: grpo.py exit $rc"
# DET_STEPS > 0: the loop's determinism on the GPU: two short runs whose workers batch differently (token budget and
# sequences in flight) must end with the same weights, bit for bit (the final fingerprint).
DET_STEPS=${DET_STEPS:-3}
if [ "$rc" = 0 ] && [ "$DET_STEPS" -gt 0 ]; then
  fps=()
  for budget in "2048 128" "301 7"; do
    set -- $budget
    PYTHONPATH=$ROOT/python BITROLL_LIB=$BUILD/libbitroll.so timeout 300 python3 examples/grpo/grpo.py \
        --init-random configs/shapes/qwen3-0.6b.json --reward tokens --device cuda --np 1 --steps "$DET_STEPS" \
        --num-prompts 16 --n 8 --max-new-tokens 64 --max-batch-tokens "$1" --max-seqs "$2" --lr "${LR:-3e-4}" \
        --keep 0 --quiet --bitroll "$BUILD/bitroll" --out-dir "$WORK-det-$1" >"$LOGS/grpo_det_$1.log" 2>&1
    fps+=("$(cat "$WORK-det-$1/final_fingerprint.txt" 2>/dev/null || echo "failed:$1")")
  done
  echo "determinism: final fingerprints after $DET_STEPS steps: --max-batch-tokens 2048 --max-seqs 128 -> ${fps[0]}; --max-batch-tokens 301 --max-seqs 7 -> ${fps[1]}"
  [ "${fps[0]}" = "${fps[1]}" ] && echo "determinism: EQUAL" || { echo "determinism: DIFFERENT"; rc=1; }
fi
exit "$rc"
