#!/usr/bin/env bash
# A/B of one BITROLL_* speed switch on the GPU machine, both values in the same call and the switch the only
# difference: kernel-table sections (bench_kernels) side by side, then `bitroll bench` rows for each model shape, then
# optionally the RL workload on 32 prompts x 8. Builds build-gpu first when bitroll is missing (tests/gpu/run.sh
# BUILD_ONLY=1). Logs and summary.txt under $LOGS; every step under a timeout, a failed step is reported and skipped.
# Usage (repository root):
#   VAR=BITROLL_GEMM_SMALL_TMA A=0 B=1 SECTIONS=decode,rowpar BATCHES=1,64 SHAPES="qwen3-0.6b qwen3-8b" RL=1 \
#   LOGS=/tmp/ab bash tests/gpu/ab.sh
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOGS=${LOGS:-${OUT:-$ROOT/gpu-out}}
BUILD=${BUILD:-$ROOT/build-gpu}
VAR=${VAR:?set VAR to the BITROLL_* switch to compare}
A=${A:-0} B=${B:-1}
SECTIONS=${SECTIONS:-gemm,decode,rowpar} BATCHES=${BATCHES:-1,64} SHAPES=${SHAPES:-qwen3-0.6b}
MODES=${MODES:-invariant} NEW=${NEW:-64} RL=${RL:-0}
case "$VAR" in BITROLL_*) ;; *) echo "ab.sh: VAR='$VAR' is not a BITROLL_* switch"; exit 2 ;; esac
mkdir -p "$LOGS"
SECONDS=0
S=$LOGS/summary.txt
note() { echo "[ab.sh ${SECONDS}s] $*" | tee -a "$S"; }
if [ ! -x "$BUILD/bitroll" ]; then
  BUILD_ONLY=1 LOGS="$LOGS" bash "$ROOT/tests/gpu/run.sh" >"$LOGS/build_run.log" 2>&1
  [ -x "$BUILD/bitroll" ] || { tail -30 "$LOGS/build_run.log"; echo "build FAILED"; exit 1; }
fi
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
cd "$ROOT" || exit 1
note "$VAR=$A (left) vs $VAR=$B (right)"
for v in "$A" "$B"; do
  env "$VAR=$v" timeout 300 "$BUILD/tests/bench_kernels" "" "$SECTIONS" >"$LOGS/kt_$v.log" 2>&1
  note "bench_kernels $SECTIONS, $VAR=$v: exit $?"
done
paste -d'|' "$LOGS/kt_$A.log" "$LOGS/kt_$B.log" | tail -n +4 | cut -c1-240 >>"$S"
for sh in $SHAPES; do
  for v in "$A" "$B"; do
    env "$VAR=$v" timeout 300 "$BUILD/bitroll" bench --no-kernel-table --device cuda \
        --random-weights "configs/shapes/$sh.json" --modes "$MODES" --batches "$BATCHES" --new-tokens "$NEW" \
        >"$LOGS/bench_${sh}_$v.log" 2>&1
    note "bench $sh --batches $BATCHES, $VAR=$v: exit $?"
    grep -E "^mode|^(invariant|standard|fp32) " "$LOGS/bench_${sh}_$v.log" >>"$S"
  done
done
if [ "$RL" = 1 ]; then
  for v in "$A" "$B"; do
    env "$VAR=$v" timeout 200 "$BUILD/bitroll" bench --workload rl --random-weights configs/shapes/qwen3-0.6b.json \
        --device cuda --new-tokens 1024 --top-p 1.0 --prompts-count 32 >"$LOGS/rl_$v.log" 2>&1
    note "bench rl 32 x 8, $VAR=$v: exit $?"
    grep -E "^ +[0-9]+ +[01]\.[0-9]+ " "$LOGS/rl_$v.log" >>"$S"
  done
fi
echo; echo "================ summary ================"; cat "$S"
