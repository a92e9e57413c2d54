# Shared setup for the shell tests: arguments, temp dir, mpirun, assertions.
# usage inside a test: source "$(dirname "$0")/lib/common.bash" "$@"
set -euo pipefail
BITROLL=$1
DATA=$2
TMP=$3
TOOLS=$4
MODEL=$DATA/../../configs/models/stories260K
rm -rf "$TMP"
mkdir -p "$TMP"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Quiet Open MPI in containers (no network interfaces to probe, no hwloc binding).
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_hwloc_base_binding_policy=none

mpirun_np() { # mpirun_np N args...
    local n=$1
    shift
    mpirun --allow-run-as-root --oversubscribe -np "$n" "$@"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_exit CODE PATTERN cmd...: runs cmd, checks its exit code and that stderr contains PATTERN.
expect_exit() {
    local want=$1 pattern=$2
    shift 2
    local code=0
    "$@" >"$TMP/out.txt" 2>"$TMP/err.txt" || code=$?
    if [ "$code" != "$want" ]; then
        cat "$TMP/err.txt" >&2
        fail "'$*' exited $code, expected $want"
    fi
    if ! grep -q -- "$pattern" "$TMP/err.txt"; then
        cat "$TMP/err.txt" >&2
        fail "'$*': stderr lacks '$pattern'"
    fi
    echo "ok: exit $code, '$(head -c 200 "$TMP/err.txt" | tr '\n' ' ')'"
}

# require_cuda: exits 77 ("skipped") unless a one-token generate --device cuda runs (no CUDA device or no CUDA
# build); fails if it errs otherwise.
require_cuda() {
    echo '{"prompt_ids": [1]}' >"$TMP/bos.jsonl"
    local code=0
    "$BITROLL" generate --device cuda --model "$MODEL" --prompts "$TMP/bos.jsonl" --out "$TMP/probe.h5" \
        --max-new-tokens 4 --quiet 2>"$TMP/probe.txt" || code=$?
    if [ "$code" != 0 ] && grep -qE "no CUDA device|built without CUDA" "$TMP/probe.txt"; then
        echo "skipped: $(cat "$TMP/probe.txt")"
        exit 77
    fi
    [ "$code" = 0 ] || { cat "$TMP/probe.txt"; fail "generate --device cuda failed"; }
}

# Two ranks on the GPU machine: with two GPUs or more visible, one GPU each and NCCL; on a one-GPU machine the two
# ranks share it (BITROLL_SHARE_GPUS=1) and the device collectives go through MPI host buffers. Sets BACKEND.
# GPUs this process may use: CUDA_VISIBLE_DEVICES's entries when it is set, else nvidia-smi's list.
visible_gpus() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[^ ]' || true
    else nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true; fi
}
two_ranks_env() {
    local ngpu
    ngpu=$(visible_gpus)
    if [ "${ngpu:-0}" -ge 2 ]; then
        unset BITROLL_SHARE_GPUS
        BACKEND=nccl
    else
        export BITROLL_SHARE_GPUS=1
        BACKEND=mpi-host-staging
    fi
    echo "two ranks on $ngpu GPU(s): expecting the $BACKEND backend"
}

# san_env LIB: sets SAN_ENV, the environment a Python process needs to load LIB when LIB is a sanitizer build's
# (its ASan / UBSan runtimes preloaded, as they must come first; Python's own allocations are not ours to leak-check);
# empty otherwise. Use as: env "${SAN_ENV[@]}" python3 ...
san_env() {
    SAN_ENV=()
    local libs
    libs=$(ldd "$1" | awk '/lib(asan|ubsan)\.so/ {print $3}' | tr '\n' ':')
    [ -z "$libs" ] || SAN_ENV=(LD_PRELOAD="${libs%:}" ASAN_OPTIONS=detect_leaks=0)
}

same_rollouts() { # same_rollouts A B
    "$TOOLS/rollouts_cmp" "$1" "$2" || fail "$1 and $2 differ"
}

# Six prompts of different lengths for stories260K (vocab 512, BOS 1).
write_prompts() { # write_prompts FILE
    cat >"$1" <<'JSONL'
{"prompt_ids": [1, 403, 407, 261, 378]}
{"prompt_ids": [1]}
{"prompt_ids": [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338], "id": "long"}
{"prompt_ids": [1, 291, 410, 456], "n": 2}
{"prompt_ids": [1, 346, 306, 414, 432, 263], "temperature": 0.7, "top_k": 20}
{"prompt_ids": [1, 274, 411, 306], "max_new_tokens": 5}
JSONL
}

# Python for the tests: Debian's interpreter, which sees the python3-h5py / -numpy / -torch packages that .ci/run
# installs, even where another python3 (pyenv, a venv) comes first on PATH.
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3 || true); fi
[ -n "$PYTHON" ] || fail "python3 is required by the CLI tests (apt-get install python3)"
python3() { "$PYTHON" "$@"; }
