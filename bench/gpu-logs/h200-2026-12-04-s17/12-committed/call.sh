#!/bin/bash
# session 17, call 12: the committed mega_floor.cu (call 11's forms; setup and phase timer factored out) re-run
set -u
for w in 8 16; do
  /usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=$w -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mf_$w > $OUT/nvcc_$w.log 2>&1; echo "nvcc warps $w rc $?" | tee -a $OUT/summary.txt
done
for w in 8 16; do
  echo "== mega_floor ($w consumer warps) 28 64" | tee -a $OUT/summary.txt
  timeout 90 /tmp/mf_$w 28 64 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
done
