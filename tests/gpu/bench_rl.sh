#!/usr/bin/env bash
# Issue 15 on one GPU (an H200): the memory plan, `bitroll bench --workload rl` and the HF transformers baseline in
# the same call. Stages (STAGES, default "mem rl hf"; also "long shapes"), each step under a timeout:
#   mem:    1. --max-seqs 1024 at 256 + 1,024 tokens: 1024 x 1,280 x 114,688 B = 150.3 GB of bf16 KV, more than an
#              H200 holds: exit 2 naming what fits;  2. --max-seqs 512 at the same length (75.2 GB): success;
#           3. --max-seqs 1024 at 256 + 512 tokens (2 samples of 512 prompts, 90.2 GB): success;
#           4. a too-big --max-seqs with --gpu-memory-utilization 0.1: exit 2 with the message (~3 min in all);
#   rl:     bench --workload rl, Qwen3-0.6B shape, 256 prompts x 8, 1,024 new tokens, top-p 1.0 (~2 min);
#   hf:     bench/hf_rl.py and bench --workload rl on the same 32 prompts x 8, 1,024 new tokens (~2.5 min);
#   long:   4,096 new tokens on 32 prompts x 8; top-p 0.95 on 32 x 8 samples of 1,024 tokens (device sampling);
#   shapes: the 1.7B and 8B shapes, 32 prompts x 8, 1,024 new tokens.
# Usage (repository root): LOGS=/tmp/rl STAGES="mem rl hf" bash tests/gpu/bench_rl.sh   (builds build-gpu with
# tests/gpu/run.sh's BUILD_ONLY=1 when build-gpu/bitroll is missing; logs, JSON and a summary in $LOGS)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOGS=${LOGS:-${OUT:-$ROOT/gpu-out}}
BUILD=${BUILD:-$ROOT/build-gpu}
mkdir -p "$LOGS"
SECONDS=0
stage() { echo "[bench_rl.sh ${SECONDS}s] $*" | tee -a "$LOGS/summary.txt"; }
if [ ! -x "$BUILD/bitroll" ]; then
  BUILD_ONLY=1 LOGS="$LOGS" bash "$ROOT/tests/gpu/run.sh" >"$LOGS/build_run.log" 2>&1
  [ -x "$BUILD/bitroll" ] || { tail -30 "$LOGS/build_run.log"; echo "build FAILED"; exit 1; }
fi
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
cd "$ROOT"
B=$BUILD/bitroll
SHAPE=configs/shapes/qwen3-0.6b.json
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee "$LOGS/gpu.txt"
stage "build ready"
# 512 prompts of 256 random ids in [1000, 2000)
awk 'BEGIN { srand(15); for (i = 0; i < 512; i++) { printf "{\"prompt_ids\": ["; for (t = 0; t < 256; t++) printf "%s%d", (t ? ", " : ""), 1000 + int(rand() * 1000); print "]}" } }' >"$LOGS/p512.jsonl"
GEN=("$B" generate --device cuda --random-weights "$SHAPE" --prompts "$LOGS/p512.jsonl" --no-stop --temperature 1)
check() { # check NAME WANT_RC PATTERN LOG: the step's exit code and a line of its log
  local rc=$(cat "$LOGS/$1.rc") ok=PASS
  [ "$rc" = "$2" ] || ok=FAIL
  grep -q -- "$3" "$LOGS/$4" || ok=FAIL
  stage "$1: exit $rc (want $2), '$3' $( grep -c -- "$3" "$LOGS/$4") line(s): $ok"
  grep -m1 -- "$3" "$LOGS/$4" | cut -c1-400 | tee -a "$LOGS/summary.txt"
}
STAGES=${STAGES:-mem rl hf}
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }
if has mem; then
  timeout 60 "${GEN[@]}" --max-new-tokens 1024 --max-seqs 1024 --max-batch-tokens 8192 --out "$LOGS/r1.h5" \
      >"$LOGS/r1_1024x1280.log" 2>&1; echo $? >"$LOGS/r1.rc"
  check r1 2 "at most .* sequences fit" r1_1024x1280.log
  timeout 150 "${GEN[@]}" --max-new-tokens 1024 --max-seqs 512 --max-batch-tokens 8192 --out "$LOGS/r2.h5" \
      >"$LOGS/r2_512x1280.log" 2>&1; echo $? >"$LOGS/r2.rc"
  check r2 0 "cuda memory plan: max_seqs 512" r2_512x1280.log
  timeout 150 "${GEN[@]}" --n 2 --max-new-tokens 512 --max-seqs 1024 --max-batch-tokens 8192 --out "$LOGS/r3.h5" \
      >"$LOGS/r3_1024x768.log" 2>&1; echo $? >"$LOGS/r3.rc"
  check r3 0 "cuda memory plan: max_seqs 1024" r3_1024x768.log
  timeout 60 "${GEN[@]}" --max-new-tokens 1024 --max-seqs 512 --gpu-memory-utilization 0.1 --out "$LOGS/r4.h5" \
      >"$LOGS/r4_low_util.log" 2>&1; echo $? >"$LOGS/r4.rc"
  check r4 2 "x 0.10 (--gpu-memory-utilization)" r4_low_util.log
  rm -f "$LOGS"/r*.h5
  grep -h "underestimates\|out of memory\|MPI_ABORT" "$LOGS"/r*.log | head -3 | tee -a "$LOGS/summary.txt"
fi
RL=("$B" bench --workload rl --random-weights "$SHAPE" --device cuda)
runs=()
if has rl; then
  timeout 200 "${RL[@]}" --new-tokens 1024 --top-p 1.0 --json "$LOGS/rl_1024.json" >"$LOGS/rl_1024.log" 2>&1
  stage "bench rl 1024 (256 x 8, top-p 1): exit $?"; runs+=(rl_1024)
fi
if has hf; then
  timeout 60 "${RL[@]}" --new-tokens 1024 --top-p 1.0 --prompts-count 32 --json "$LOGS/rl_32x8.json" \
      >"$LOGS/rl_32x8.log" 2>&1
  stage "bench rl 1024 (32 x 8, top-p 1): exit $?"; runs+=(rl_32x8)
  timeout 240 python3 "$ROOT/bench/hf_rl.py" --config "$SHAPE" --prompts 32 --n 8 --new-tokens 1024 \
      --json "$LOGS/hf_32x8.json" >"$LOGS/hf_32x8.log" 2>&1
  stage "hf transformers (32 x 8, static cache + compile): exit $?"
  grep -E "^hf " "$LOGS/hf_32x8.log" | tee -a "$LOGS/summary.txt"
fi
if has long; then
  timeout 200 "${RL[@]}" --new-tokens 4096 --top-p 1.0 --prompts-count 32 --json "$LOGS/rl_4096.json" \
      >"$LOGS/rl_4096.log" 2>&1
  stage "bench rl 4096 (32 x 8, top-p 1): exit $?"; runs+=(rl_4096)
  timeout 150 "${RL[@]}" --new-tokens 1024 --top-p 0.95 --prompts-count 32 --json "$LOGS/rl_topp.json" \
      >"$LOGS/rl_topp.log" 2>&1
  stage "bench rl top-p 0.95 (32 x 8, 1,024 new): exit $?"; runs+=(rl_topp)
fi
if has shapes; then
  for m in 1.7b 8b; do
    timeout 150 "$B" bench --workload rl --random-weights configs/shapes/qwen3-$m.json --device cuda --new-tokens 1024 \
        --top-p 1.0 --prompts-count 32 --json "$LOGS/rl_$m.json" >"$LOGS/rl_$m.log" 2>&1
    stage "bench rl qwen3-$m (32 x 8, 1,024 new): exit $?"; runs+=(rl_$m)
  done
fi
for f in "${runs[@]}"; do
  echo "== $f" >>"$LOGS/summary.txt"
  grep -E "copy bandwidth|cuda memory plan|^ +new |^ +[0-9]+ +[01]\.[0-9]+ " "$LOGS/$f.log" | cut -c1-300 >>"$LOGS/summary.txt"
done
echo; echo "================ summary ================"; cat "$LOGS/summary.txt"
