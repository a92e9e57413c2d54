#!/bin/bash
# session 17, call 10: mega_floor's LL forms, the LL offsets fixed (call 9 indexed 8-byte buffers in floats) (the data carries the launch's tag; no counters, fences or releases)
set -u
for w in 8 16; do
  /usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=$w -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mf_$w > $OUT/nvcc_$w.log 2>&1; echo "nvcc warps $w rc $?" | tee -a $OUT/summary.txt
done
for args in "28 64" "1 64" "28 64"; do
  for w in 8 16; do
    echo "== mega_floor ($w consumer warps) $args" | tee -a $OUT/summary.txt
    timeout 90 /tmp/mf_$w $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
  done
done
