#!/usr/bin/env bash
# Issue 15 on one GPU (an H200): the memory plan and `bitroll bench --workload rl`, about 5 minutes after the build.
#   1. the command that used to die in cudaMalloc (--max-seqs 512 --max-batch-tokens 8192, 256 + 1,024 tokens): its KV
#      cache is fp32, 512 x 1,280 x 229,376 B = 150.3 GB, more than an H200 holds: now exit 2 naming what fits;
#   2. 512 sequences that do fit (256 + 640 tokens: 105 GB of KV): success, the plan line printed;
#   3. the same 1,280-token job with nothing given: max_seqs / max_batch_tokens chosen from free memory: success;
#   4. a too-big --max-seqs with --gpu-memory-utilization 0.1: exit 2 with the message;
#   5. bench --workload rl, Qwen3-0.6B shape: 256 prompts x 8, 1,024 new tokens, top-p 1.0; top-p 0.95 on 1 x 4
#      samples of 256 tokens (host sampling); 4,096 new tokens on 32 prompts x 8 (each step under a timeout).
# Usage (repository root): LOGS=/tmp/rl bash tests/gpu/bench_rl.sh   (builds build-gpu with tests/gpu/run.sh's
# BUILD_ONLY=1 when build-gpu/bitroll is missing; logs, JSON and a summary in $LOGS)
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
timeout 120 "${GEN[@]}" --max-new-tokens 1024 --max-seqs 512 --max-batch-tokens 8192 --out "$LOGS/r1.h5" \
    >"$LOGS/r1_512x1280.log" 2>&1; echo $? >"$LOGS/r1.rc"
check r1 2 "at most .* sequences fit" r1_512x1280.log
timeout 150 "${GEN[@]}" --max-new-tokens 640 --max-seqs 512 --max-batch-tokens 8192 --out "$LOGS/r2.h5" \
    >"$LOGS/r2_512x896.log" 2>&1; echo $? >"$LOGS/r2.rc"
check r2 0 "cuda memory plan: max_seqs 512" r2_512x896.log
timeout 150 "${GEN[@]}" --max-new-tokens 1024 --out "$LOGS/r3.h5" >"$LOGS/r3_auto.log" 2>&1; echo $? >"$LOGS/r3.rc"
check r3 0 "cuda memory plan: max_seqs" r3_auto.log
timeout 60 "${GEN[@]}" --max-new-tokens 1024 --max-seqs 512 --gpu-memory-utilization 0.1 --out "$LOGS/r4.h5" \
    >"$LOGS/r4_low_util.log" 2>&1; echo $? >"$LOGS/r4.rc"
check r4 2 "x 0.10 (--gpu-memory-utilization)" r4_low_util.log
rm -f "$LOGS"/r*.h5
grep -h "underestimates\|out of memory\|MPI_ABORT" "$LOGS"/r*.log | head -3 | tee -a "$LOGS/summary.txt"
RL=("$B" bench --workload rl --random-weights "$SHAPE" --device cuda)
timeout 240 "${RL[@]}" --new-tokens 1024 --top-p 1.0 --json "$LOGS/rl_1024.json" >"$LOGS/rl_1024.log" 2>&1
stage "bench rl 1024 (256 x 8, top-p 1): exit $?"
timeout 90 "${RL[@]}" --new-tokens 256 --top-p 0.95 --prompts-count 1 --n 4 --json "$LOGS/rl_topp.json" \
    >"$LOGS/rl_topp.log" 2>&1
stage "bench rl top-p 0.95 (1 x 4, 256 new): exit $?"
timeout 200 "${RL[@]}" --new-tokens 4096 --top-p 1.0 --prompts-count 32 --json "$LOGS/rl_4096.json" \
    >"$LOGS/rl_4096.log" 2>&1
stage "bench rl 4096 (32 x 8, top-p 1): exit $?"
for f in rl_1024 rl_topp rl_4096; do
  echo "== $f" >>"$LOGS/summary.txt"
  grep -E "copy bandwidth|cuda memory plan|^ +new |^ +[0-9]+ +[01]\.[0-9]+ " "$LOGS/$f.log" | cut -c1-300 >>"$LOGS/summary.txt"
done
echo; echo "================ summary ================"; cat "$LOGS/summary.txt"
