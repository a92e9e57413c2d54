#!/usr/bin/env bash
# The main job on the bundled stories260K model, from a fresh clone: build, generate on 2 MPI ranks,
# score (teacher-forced, other batch shapes, 1 rank), show the stories, verify (exit 0 iff KL = 0 exactly).
# usage: scripts/demo.sh [OUTDIR]   (default: build/demo)
#
# It builds in its own directory, build/demo-build, and configures and builds it on every run (incremental:
# seconds when nothing changed), so the binary it runs is always this tree's. A demo-build configured for
# another source tree (a moved or copied clone) is removed and configured anew rather than reused.
# The demo runs the CPU engine, so the build leaves CUDA out (-DBITROLL_CUDA=OFF): minutes less of nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd -P)
OUT=${1:-build/demo}
B=build/demo-build
BITROLL=$B/bitroll
NSTEPS=6
T0=$(date +%s)

step_start=0
step_name="start"
step() { # step N "what": prints a step line; done_step prints its time
    step_start=$(date +%s)
    step_name="[$1/$NSTEPS] $2"
    printf '\n==> %s\n' "$step_name"
}
trap 'rc=$?; printf "\n==> demo FAILED (exit %s) in step %s\n" "$rc" "$step_name" >&2' ERR
done_step() { printf '==> done in %ss\n' "$(($(date +%s) - step_start))"; }

if [ -f "$B/CMakeCache.txt" ]; then
    home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$B/CMakeCache.txt")
    if [ "$home" != "$SRC" ]; then
        echo "==> $B was configured for another source tree ('$home', not '$SRC'): removing it"
        rm -rf "$B"
    fi
fi

step 1 "configure $B (cmake, Release, CPU only)"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DBITROLL_CUDA=OFF
done_step

step 2 "build $B/bitroll (incremental)"
cmake --build "$B" -j"$(nproc)" --target bitroll
done_step

mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PROMPTS=configs/prompts/stories.jsonl # text prompts; stories_ids.jsonl holds token-id prompts

step 3 "generate on 2 MPI ranks -> $OUT/rollouts.h5"
(
    set -x
    mpirun --oversubscribe -np 2 "$BITROLL" generate --prompts "$PROMPTS" --out "$OUT/rollouts.h5" \
        --n 2 --temperature 1.0 --top-p 0.95 --max-new-tokens 128 --seed 1
)
done_step

step 4 "score on 1 rank, other batch shapes -> $OUT/scores.h5"
(
    set -x
    "$BITROLL" score --rollouts "$OUT/rollouts.h5" --out "$OUT/scores.h5" --max-batch-tokens 97
)
done_step

step 5 "show the stories"
(
    set -x
    "$BITROLL" show --limit 8 "$OUT/rollouts.h5"
)
done_step

step 6 "verify: exit 0 iff every log-prob and logits digest is bitwise equal (KL = 0)"
rc=0
(
    set -x
    "$BITROLL" verify "$OUT/rollouts.h5" "$OUT/scores.h5"
) || rc=$?
done_step
if [ "$rc" -eq 0 ]; then
    printf '\n==> demo passed in %ss: score reproduced generate bit for bit (KL = 0)\n' "$(($(date +%s) - T0))"
else
    printf '\n==> demo FAILED: verify exited %s\n' "$rc" >&2
fi
exit "$rc"
