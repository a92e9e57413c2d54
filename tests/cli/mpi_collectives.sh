# Fixed-order sums (comm_chunk_sum) give exact results and the same bits on 1, 2, 3, 4 and 5 ranks, for chunk
# counts that divide the rank count, that do not, and that are smaller than it.
source "$(dirname "$0")/lib/common.bash" "$@"
for np in 1 2 3 4 5; do
    for C in 16 7 3; do
        mpirun_np "$np" "$TOOLS/chunk_sum_check" "$C" 4099 | tee "$TMP/out.txt"
        grep -q "all elements right, bitwise" "$TMP/out.txt" || fail "np=$np C=$C"
    done
done
echo "PASS"
