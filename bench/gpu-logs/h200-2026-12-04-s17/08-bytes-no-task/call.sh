#!/bin/bash
# session 17, call 8: mega_floor's floor with the bytes streaming and no task arithmetic (NB 3), timed phases
set -u
/usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=8 -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mf_8 > $OUT/nvcc_8.log 2>&1; echo "nvcc rc $?" | tee -a $OUT/summary.txt
for args in "28 64" "28 64" "28 16"; do
  echo "== mega_floor (8 consumer warps) $args" | tee -a $OUT/summary.txt
  timeout 60 /tmp/mf_8 $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
done
