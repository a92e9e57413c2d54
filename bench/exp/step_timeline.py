#!/usr/bin/env python3
"""Experiment (fourteenth session): where a batch-1 decode step's time goes *as it runs* -- CUDA graphs, programmatic
dependent launch, kernels overlapping -- which Nsight Compute cannot say (it serializes the kernels it profiles).

Runs ``bitroll.Engine.generate`` (the C library, in this process) under ``torch.profiler`` (CUPTI kernel records,
graph-launched kernels included), then attributes the step's wall time to its kernels: a kernel's *increment* is
``end(k) - max(end of every kernel before it)`` (0 when it ends inside an earlier one), so the increments of a window
sum to its wall time. Prints, per kernel name: launches per step, mean duration, mean increment and its share.

Usage (GPU machine, repository root, after tests/gpu/run.sh's build):
  BITROLL_LIB=build-gpu/libbitroll.so python3 bench/exp/step_timeline.py [shape.json] [batch] [new_tokens] [prompt]
"""
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import bitroll  # noqa: E402


def main():
    shape = sys.argv[1] if len(sys.argv) > 1 else "configs/shapes/qwen3-0.6b.json"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    new = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    plen = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    torch.zeros(1, device="cuda")  # the CUDA context for the profiler
    rng = np.random.default_rng(14)
    prompts = [rng.integers(1000, 2000, size=plen).tolist() for _ in range(batch)]
    with bitroll.Engine(random_weights=shape, device="cuda", max_seqs=max(batch, 1),
                        max_batch_tokens=max(256, plen)) as e:
        e.generate(prompts, max_new_tokens=new, temperature=0)  # warm-up: graphs captured, tables built
        t0 = time.perf_counter()
        e.generate(prompts, max_new_tokens=new, temperature=0)
        plain = time.perf_counter() - t0
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            e.generate(prompts, max_new_tokens=new, temperature=0)
            traced = time.perf_counter() - t0
    print(f"{shape} batch {batch}, prompt {plen}, {new} new tokens: generate {plain * 1e3:.1f} ms plain, "
          f"{traced * 1e3:.1f} ms traced ({batch * new / plain:.0f} / {batch * new / traced:.0f} tokens/s)")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            ev = json.load(f)["traceEvents"]
    ks = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in ev
                if e.get("ph") == "X" and e.get("cat") == "kernel")
    if not ks:
        print("no kernel records: CUPTI saw none")
        return 1
    # steps: a decode step starts at each launch of the step's first kernel name in its steady state; take the name
    # of the most frequent kernel that runs once per step -- the sampler's -- as the step's end marker.
    cnt = collections.Counter(n for _, _, n in ks)
    print(f"{len(ks)} kernel records, {len(cnt)} names")
    marker = None
    for n, c in cnt.most_common():
        if new - 2 <= c <= new + 2 and ("sample" in n or "lse" in n or "argmax" in n or "vocab" in n):
            marker = n
            break
    if marker is None:
        print("no per-step marker kernel found; names:", ", ".join(f"{n[:60]} x{c}" for n, c in cnt.most_common(20)))
        return 1
    ends = [i for i, k in enumerate(ks) if k[2] == marker]
    # steady state: skip the first two steps (prefill, first decode), use the rest
    windows = [(ends[j] + 1, ends[j + 1] + 1) for j in range(2, len(ends) - 1)]
    dur = collections.defaultdict(float)
    inc = collections.defaultdict(float)
    num = collections.Counter()
    wall = 0.0
    gaps = 0.0
    for a, b in windows:
        hi = ks[a - 1][1]
        start = hi
        for ts, te, n in ks[a:b]:
            dur[n] += te - ts
            inc[n] += max(0.0, te - max(hi, ts))
            gaps += max(0.0, ts - hi)
            num[n] += 1
            hi = max(hi, te)
        wall += hi - start
    S = len(windows)
    print(f"marker {marker[:70]}; {S} steady decode steps: {wall / S:.1f} us a step "
          f"({1e6 / (wall / S) * batch:.0f} tokens/s), of which idle (no kernel running) {gaps / S:.1f} us")
    print(f"{'kernel':<72} {'n/step':>6} {'dur us':>8} {'incr us':>8} {'share':>6}")
    rows = sorted(num, key=lambda n: -inc[n])
    for n in rows:
        print(f"{n[:72]:<72} {num[n] / S:6.1f} {dur[n] / num[n]:8.2f} {inc[n] / S:8.1f} {inc[n] / wall:6.1%}")
    print(f"{'(idle)':<72} {'':>6} {'':>8} {gaps / S:8.1f} {gaps / wall:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
