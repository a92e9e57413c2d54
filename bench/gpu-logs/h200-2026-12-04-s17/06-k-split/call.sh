#!/bin/bash
# session 17, call 6: mega_floor with the GEMV tasks split over K between warps (x read once for 4 rows, the
# residual read with the op's input), against call 5's form (-DGEMV_KSPLIT=0); 8 and 16 consumer warps
set -u
for k in 1 0; do for w in 8 16; do
  /usr/local/cuda/bin/nvcc -O3 -std=c++17 -arch=sm_90a -DCONS_WARPS=$w -DGEMV_KSPLIT=$k -Xptxas -v bench/exp/mega_floor.cu -o /tmp/mf_${k}_$w > $OUT/nvcc_${k}_$w.log 2>&1; echo "nvcc ksplit $k warps $w rc $?" | tee -a $OUT/summary.txt
done; done
for args in "28 64" "1 64" "28 64"; do
  for b in 1_16 1_8 0_16; do
    echo "== mega_floor (GEMV_KSPLIT_CONS_WARPS $b) $args" | tee -a $OUT/summary.txt
    timeout 60 /tmp/mf_$b $args 2>&1 | tee -a $OUT/summary.txt; echo "rc ${PIPESTATUS[0]}" | tee -a $OUT/summary.txt
  done
done
