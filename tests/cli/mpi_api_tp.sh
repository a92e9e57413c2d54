# The C API's tensor parallelism over a caller's communicator: one TP group of 1, 2 and 4 ranks (stories260K: 8
# heads, 4 KV heads) generates the same completions, log-probs and digests, byte for byte, and score == generate.
source "$(dirname "$0")/lib/common.bash" "$@"
for np in 1 2 4; do
    mpirun_np "$np" "$TOOLS/api_tp" "$MODEL" "$TMP/tp$np.bin" || fail "api_tp on $np ranks"
    [ -s "$TMP/tp$np.bin" ] || fail "api_tp on $np ranks wrote nothing"
done
cmp "$TMP/tp1.bin" "$TMP/tp2.bin" || fail "TP 2 through the API differs from TP 1"
cmp "$TMP/tp1.bin" "$TMP/tp4.bin" || fail "TP 4 through the API differs from TP 1"
# the control: another model gives other bytes (the comparison can fail)
mpirun_np 1 "$TOOLS/api_tp" "$DATA/models/tiny-llama/f32" "$TMP/other.bin"
cmp -s "$TMP/tp1.bin" "$TMP/other.bin" && fail "another model gave the same bytes"
echo "ok: the API's TP over MPI_COMM_WORLD: 1, 2 and 4 ranks byte-identical"
