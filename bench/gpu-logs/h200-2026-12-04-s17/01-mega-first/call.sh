#!/bin/bash
# session 17, call 1: run bench/exp/mega_floor.cu (the persistent decode step with dataflow waits)
set -u
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv | tee -a $OUT/summary.txt
/usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mega_floor > $OUT/nvcc.log 2>&1; echo "nvcc rc $?" | tee -a $OUT/summary.txt
for args in "28 64" "28 16" "1 64" "4 64" "28 64"; do
  echo "== mega_floor $args" | tee -a $OUT/summary.txt
  timeout 60 /tmp/mega_floor $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
done
