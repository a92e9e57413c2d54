#!/usr/bin/env python3
"""bitroll conformance suite (issue 17): the published batch-invariance experiments, run against the real
`bitroll` CLI (generate / score / verify, mpirun for ranks) and the Python package, per kernel mode.

Tests and where they come from (docs/REPRODUCIBILITY.md has the details and the measured tables):
  needle        vLLM tests/v1/generation/test_batch_invariance.py: a needle prompt at a random position among
                N/2..N filler prompts, 5 trials, against the needle alone
  batch1_vs_N   32 prompts, T = 0.6, fixed seed, 16 tokens: one sequence at a time (--max-seqs 1) vs all at once
  decode_vs_prefill  `bitroll score` (teacher-forced prefill) of the generated rollouts == generate's log-probs
  sglang_single / sglang_mixed / sglang_prefix  SGLang's deterministic-inference test: batch sizes 1..50,
                mixed lengths, shared prefixes of 1 / 511 / 2,048 / 4,097 tokens; unique outputs per prompt == 1
  completions_1000  Thinking Machines ("Defeating Nondeterminism in LLM Inference"): 1,000 completions of one
                prompt at T = 0 in batches of varying size and company; unique completions == 1
  distractors   the GPT-2 batch-variance experiment: one prompt greedy-decoded among 0..255 others; first
                divergent position per batch size (-1 = none)
  div_index     LayerCast paper ("Give Me FP32 or Give Me Death?"): Div_Index and Std@Acc across batch sizes
                and rank counts
  ranks / tp    `mpirun -np 1` vs `-np 2`, `--tp 1` vs `--tp 2`
  sensitivity_1ulp  the harness can fail: the final norm's weights moved by one ulp must change log-prob bits

In the invariant and fp32 modes (and on the CPU, whose one kernel set is fp32 and invariant) every test must show
zero differing bits. In the standard mode the batch-variance tests are negative controls: they are expected to
show differences on a GPU; the table says whether each control "bites". Exit 0 iff every must-pass test passed.
"""
import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

# ----------------------------------------------------------------------------------------------- sizes

# Every size the suite uses, per profile. Lengths are for a model with a context of at least 4,097 + margin
# tokens; shorter contexts scale them down (Sizes.scaled), and results.json records the numbers actually used.
PROFILES = {
    # CPU CI subset (ctest mpi_conformance): stories260K in well under a minute on 2 cores
    "quick": dict(needle_n=8, needle_len=(1024, 2048), needle_len_cap=0.25, needle_new=16, needle_trials=5,
                  bn_prompts=32, bn_new=16,
                  sg_batches=[1, 2, 3, 5, 8, 13, 21, 34, 50], sg_pool=6, sg_new=16,
                  sg_prefixes=[1, 511, 2048, 4097], sg_prefix_cap=0.5,
                  c1000_n=200, c1000_new=24, c1000_chunk=(1, 32),
                  dist_sizes=[0, 1, 3, 7, 15, 31, 63, 127], dist_new=32, dist_len=(8, 48),
                  div_prompts=12, div_new=48, div_seqs=[1, 4, 12], ranks_prompts=16, ranks_new=24),
    # CPU, everything at the sizes the brief names where the context allows
    "cpu": dict(needle_n=32, needle_len=(1024, 2048), needle_len_cap=1.0, needle_new=32, needle_trials=5,
                bn_prompts=32, bn_new=16,
                sg_batches=list(range(1, 51)), sg_pool=8, sg_new=32,
                sg_prefixes=[1, 511, 2048, 4097], sg_prefix_cap=1.0,
                c1000_n=1000, c1000_new=32, c1000_chunk=(1, 64),
                dist_sizes=[0, 1, 3, 7, 15, 31, 63, 127, 255], dist_new=64, dist_len=(8, 64),
                div_prompts=32, div_new=64, div_seqs=[1, 8, 32], ranks_prompts=32, ranks_new=32),
    # one H200, ~300 s for tests/gpu/conformance.sh (Qwen3-0.6B shape x 3 modes + stories260K x 3 modes)
    "gpu": dict(needle_n=16, needle_len=(1024, 2048), needle_len_cap=1.0, needle_new=32, needle_trials=5,
                bn_prompts=32, bn_new=16,
                sg_batches=[1, 2, 3, 5, 8, 13, 21, 34, 50], sg_pool=6, sg_new=24,
                sg_prefixes=[1, 511, 2048, 4097], sg_prefix_cap=1.0,
                c1000_n=1000, c1000_new=24, c1000_chunk=(1, 128),
                dist_sizes=[0, 1, 3, 7, 15, 31, 63, 127, 255], dist_new=32, dist_len=(16, 64),
                div_prompts=8, div_new=48, div_seqs=[1, 4, 8], ranks_prompts=32, ranks_new=24),
}
PROFILES["gpu-quick"] = dict(PROFILES["quick"], needle_len_cap=1.0, c1000_n=1000, c1000_chunk=(1, 128),
                             dist_sizes=[0, 1, 3, 7, 15, 31, 63, 127, 255])

MUST = "must-pass"
CONTROL = "control"


def log(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------- helpers

class Sample:
    """One completion: token ids, log-prob bits (uint32 view of the fp32 values), logits digests."""
    __slots__ = ("tokens", "lp", "dg")

    def __init__(self, tokens, lp, dg):
        self.tokens = tuple(int(t) for t in tokens)
        self.lp = bytes(lp.astype("<f4").tobytes())
        self.dg = bytes(dg.astype("<u8").tobytes()) if dg is not None else b""

    def key_tokens(self):
        return self.tokens

    def key_bits(self):
        return (self.tokens, self.lp, self.dg)


def first_divergence(a, b):
    """(first token index where the token ids differ, first index where tokens or log-prob / digest bits differ);
    -1 = none. A length difference counts at the shorter length."""
    import numpy as np
    n = min(len(a.tokens), len(b.tokens))
    tok = -1
    for i in range(n):
        if a.tokens[i] != b.tokens[i]:
            tok = i
            break
    if tok < 0 and len(a.tokens) != len(b.tokens):
        tok = n
    la = np.frombuffer(a.lp, dtype="<u4")
    lb = np.frombuffer(b.lp, dtype="<u4")
    da = np.frombuffer(a.dg, dtype="<u8") if a.dg else None
    db = np.frombuffer(b.dg, dtype="<u8") if b.dg else None
    bit = -1
    m = min(len(la), len(lb))
    neq = la[:m] != lb[:m]
    if da is not None and db is not None:
        neq = neq | (da[:m] != db[:m])
    idx = np.flatnonzero(neq)
    if idx.size:
        bit = int(idx[0])
    elif len(la) != len(lb):
        bit = m
    if tok >= 0 and (bit < 0 or tok < bit):
        bit = tok
    return tok, bit


def samples_of(r):
    return [Sample(r.completion(i), r.completion_logprobs(i), r.completion_digests(i)) for i in range(len(r))]


class Suite:
    def __init__(self, args):
        self.args = args
        self.results = []
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.bitroll = os.path.abspath(args.bitroll)
        self.device = args.device
        self.np_ok = shutil.which(args.mpirun) is not None
        self.env = dict(os.environ)
        for k, v in (("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
                     ("OMPI_MCA_rmaps_base_oversubscribe", "1"), ("OMPI_MCA_btl", "self,vader"),
                     ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
                     ("OMPI_MCA_hwloc_base_binding_policy", "none"), ("NCCL_NVLS_ENABLE", "0")):
            self.env.setdefault(k, v)
        self.ngpu = self._visible_gpus() if self.device == "cuda" else 0
        if self.device == "cuda" and self.ngpu < 2:
            self.env["BITROLL_SHARE_GPUS"] = "1"  # two ranks share the one GPU (device collectives via MPI)
        if args.model:
            self.model_args = ["--model", os.path.abspath(args.model)]
            self.engine_model = dict(model=os.path.abspath(args.model))
            self.model_name = os.path.basename(os.path.normpath(args.model))
        else:
            self.model_args = ["--random-weights", os.path.abspath(args.random_weights),
                               "--weights-seed", str(args.weights_seed)]
            self.engine_model = dict(random_weights=os.path.abspath(args.random_weights),
                                     weights_seed=args.weights_seed)
            self.model_name = "random:" + os.path.basename(args.random_weights)
        self.prof = dict(PROFILES[args.profile])
        import bitroll
        self.br = bitroll
        with self.engine("invariant" if self.device == "cuda" else "fp32", max_seqs=1, max_seq_len=16) as e:
            self.info = e.info
        self.ctx = self.info.context_length
        self.V = self.info.vocab_size
        self.bos = self.info.bos_id
        self.lo_id = 3 if self.V > 16 else 0
        self.hi_id = min(self.V, 150000)
        self.scale_notes = []

    @staticmethod
    def _visible_gpus():
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:
            return len([x for x in cvd.split(",") if x.strip()])
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU"))
        except (OSError, subprocess.SubprocessError):
            return 1

    # ----- engines and prompts

    def engine(self, mode, **kw):
        dev = "cuda:0" if self.device == "cuda" else "cpu"
        kw.setdefault("max_batch_tokens", 4096 if self.device == "cuda" else 1024)
        return self.br.Engine(**self.engine_model, device=dev, kernels=mode, **kw)

    def rand_prompt(self, rng, n):
        ids = [rng.randrange(self.lo_id, self.hi_id) for _ in range(n)]
        if self.bos >= 0 and n > 0:
            ids[0] = self.bos
        return ids

    def fit(self, length, new, what):
        """Largest usable prompt length <= length for `new` generated tokens within the context."""
        room = self.ctx - new - 1
        if length > room:
            self.scale_notes.append(f"{what}: {length} -> {room} tokens (context {self.ctx})")
            return room
        return length

    def gen(self, e, prompts, sample_ids, temperature, new, seed=1234):
        r = e.generate(prompts, temperature=temperature, seed=seed, max_new_tokens=new, sample_ids=sample_ids,
                       stop_ids=[])
        return samples_of(r)

    # ----- CLI

    def run(self, argv, ok=(0,), what=None):
        t = time.time()
        p = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        if p.returncode not in ok:
            raise RuntimeError(f"{what or argv[0]}: exit {p.returncode}\n  $ {' '.join(argv)}\n"
                               f"{p.stderr[-3000:]}")
        return p, time.time() - t

    def cli(self, verb, args, np_=1, mode=None, ok=(0,)):
        argv = [self.bitroll, verb] + args
        if verb in ("generate", "score"):
            argv += ["--device", self.device, "--quiet"]
            if mode:
                argv += ["--kernels", mode]
        if np_ > 1 or self.args.always_mpirun:
            argv = [self.args.mpirun, "-np", str(np_)] + argv
        return self.run(argv, ok=ok, what=f"bitroll {verb}")

    def write_prompts(self, path, prompts):
        with open(path, "w") as f:
            for p in prompts:
                f.write(json.dumps({"prompt_ids": p}) + "\n")

    def read(self, path):
        return samples_of(self.br.read_rollouts(path))

    # ----- results

    def record(self, mode, test, role, passed, measured, seconds, **extra):
        """role MUST: passed = no differing bit. role CONTROL: passed = the control bit (showed differences)."""
        if role == MUST:
            status = "PASS" if passed else "FAIL"
        elif role == CONTROL:
            status = "BITES" if passed else "DOES NOT BITE"
        else:
            status = role.upper()
        r = dict(mode=mode, test=test, role=role, status=status, measured=measured, seconds=round(seconds, 2),
                 **extra)
        self.results.append(r)
        log(f"  [{mode}] {test}: {status} ({measured}) {seconds:.1f}s")
        return r

    def role(self, mode):
        return CONTROL if mode == "standard" else MUST


# ----------------------------------------------------------------------------------------------- tests

def t_needle(S, mode):
    """vLLM: needle among N/2..N fillers of 1,024-2,048 tokens (scaled to the context), 5 trials, vs alone."""
    P = S.prof
    rng = random.Random(17)
    new = P["needle_new"]
    lo, hi = P["needle_len"]
    cap = P["needle_len_cap"]
    room = S.ctx - new - 1
    if hi * cap > room or cap < 1.0:
        s = min(cap, room / hi)
        lo, hi = max(2, int(lo * s)), max(3, int(hi * s))
        S.scale_notes.append(f"needle fillers: 1024-2048 -> {lo}-{hi} tokens (context {S.ctx}, profile)")
    needle = S.rand_prompt(random.Random(99), min(64, room))
    fillers_max = P["needle_n"]
    t = time.time()
    with S.engine(mode, max_seqs=fillers_max + 1, max_seq_len=hi + new + 1) as e:
        alone = S.gen(e, [needle], [0], 0.6, new)[0]
        diffs = []
        sizes = []
        for trial in range(P["needle_trials"]):
            k = rng.randint(fillers_max // 2, fillers_max)
            pos = rng.randint(0, k)
            prompts = [S.rand_prompt(rng, rng.randint(lo, hi)) for _ in range(k)]
            prompts.insert(pos, needle)
            ids = [i + 1 for i in range(k)]
            ids.insert(pos, 0)
            out = S.gen(e, prompts, ids, 0.6, new)
            tok, bit = first_divergence(alone, out[pos])
            diffs.append(dict(trial=trial, fillers=k, position=pos, first_token_diff=tok, first_bit_diff=bit))
            sizes.append(k + 1)
    bad = sum(1 for d in diffs if d["first_bit_diff"] >= 0)
    badtok = sum(1 for d in diffs if d["first_token_diff"] >= 0)
    role = S.role(mode)
    ok = (bad == 0) if role == MUST else (bad > 0)
    S.record(mode, "needle", role, ok, f"{bad}/{len(diffs)} trials differ in bits, {badtok} in tokens "
             f"(fillers {lo}-{hi} tok, batch {min(sizes)}-{max(sizes)})", time.time() - t, trials=diffs,
             filler_len=[lo, hi], new_tokens=new, temperature=0.6)


def t_batch1_vs_n(S, mode, cache):
    """CLI: 32 prompts, T = 0.6, seed 7, 16 tokens; --max-seqs 1 (batch 1) vs --max-seqs 32 (batch N)."""
    P = S.prof
    rng = random.Random(23)
    new = P["bn_new"]
    maxlen = S.fit(160, new, "batch1_vs_N prompts")
    prompts = [S.rand_prompt(rng, rng.randint(4, maxlen)) for _ in range(P["bn_prompts"])]
    pf = os.path.join(S.work, "bn_prompts.jsonl")
    S.write_prompts(pf, prompts)
    t = time.time()
    common = S.model_args + ["--prompts", pf, "--temperature", "0.6", "--seed", "7", "--max-new-tokens", str(new),
                             "--no-stop"]
    f1 = os.path.join(S.work, f"bn_b1_{mode}.h5")
    fN = os.path.join(S.work, f"bn_bN_{mode}.h5")
    S.cli("generate", common + ["--out", f1, "--max-seqs", "1", "--max-batch-tokens", "64"], mode=mode)
    S.cli("generate", common + ["--out", fN, "--max-seqs", str(len(prompts)), "--max-batch-tokens", "8192"],
          mode=mode)
    a, b = S.read(f1), S.read(fN)
    n_tok = sum(len(x.tokens) for x in a)
    dtok = dbit = 0
    for x, y in zip(a, b):
        tok, bit = first_divergence(x, y)
        dtok += tok >= 0
        dbit += bit >= 0
    lpdiff = count_lp_diffs(a, b)
    role = S.role(mode)
    ok = (dbit == 0) if role == MUST else (dbit > 0)
    S.record(mode, "batch1_vs_N", role, ok, f"{dbit}/{len(a)} samples differ in bits ({lpdiff}/{n_tok} log-probs), "
             f"{dtok} in tokens", time.time() - t, samples=len(a), tokens=n_tok, samples_bits_differ=dbit,
             samples_tokens_differ=dtok, logprobs_differ=lpdiff)
    cache["bn_files"] = (f1, fN)
    cache["bn_prompts"] = pf


def count_lp_diffs(a, b):
    import numpy as np
    n = 0
    for x, y in zip(a, b):
        la, lb = np.frombuffer(x.lp, "<u4"), np.frombuffer(y.lp, "<u4")
        m = min(len(la), len(lb))
        n += int((la[:m] != lb[:m]).sum()) + abs(len(la) - len(lb))
    return n


def t_decode_vs_prefill(S, mode, cache):
    """CLI: bitroll score (teacher-forced prefill, other batch shapes) of generate's files; verify + bit compare."""
    import numpy as np
    t = time.time()
    total = bad = 0
    verify_codes = []
    for f, extra in zip(cache["bn_files"], (["--max-batch-tokens", "97", "--max-seqs", "7"],
                                            ["--max-batch-tokens", "4096", "--max-seqs", "64"])):
        sf = f.replace(".h5", ".scores.h5")
        S.cli("score", S.model_args + ["--rollouts", f, "--out", sf] + extra, mode=mode)
        p, _ = S.cli("verify", [f, sf, "--quiet"], ok=(0, 1))
        verify_codes.append(p.returncode)
        r = S.br.read_rollouts(f)
        s = S.br.read_scores(sf)
        a = np.asarray(r.logprobs).view("<u4")
        b = np.asarray(s.logprobs).view("<u4")
        total += a.size
        neq = a != b
        if s.digests is not None:
            neq |= np.asarray(r.digests) != np.asarray(s.digests)
        bad += int(neq.sum())
    role = S.role(mode)
    ok = (bad == 0 and all(c == 0 for c in verify_codes)) if role == MUST else (bad > 0)
    S.record(mode, "decode_vs_prefill", role, ok, f"{bad}/{total} tokens' log-prob or digest differ, verify exit "
             f"{'/'.join(map(str, verify_codes))}", time.time() - t, logprobs=total, logprobs_differ=bad,
             verify_exit=verify_codes)


def _sglang(S, mode, kind, pool, ids_of, batches, new, rng):
    """Runs `batches`; in each, prompts drawn from `pool` (kind single: b copies of pool[0]). Returns per pool
    prompt the set of distinct outputs (tokens, bits) and per batch size the distinct count of the probe."""
    maxlen = max(len(p) for p in pool)
    outs_tok = [set() for _ in pool]
    outs_bit = [set() for _ in pool]
    per_batch = []
    with S.engine(mode, max_seqs=max(batches), max_seq_len=maxlen + new + 1) as e:
        ref = S.gen(e, [pool[0]], [ids_of[0]], 0.6, new)[0]
        outs_tok[0].add(ref.key_tokens())
        outs_bit[0].add(ref.key_bits())
        for b in batches:
            if kind == "single":
                pick = [0] * b
            else:
                pick = [rng.randrange(len(pool)) for _ in range(b)]
                pick[rng.randrange(b)] = 0  # the probe prompt is in every batch
            out = S.gen(e, [pool[i] for i in pick], [ids_of[i] for i in pick], 0.6, new)
            btok, bbit = {ref.key_tokens()}, {ref.key_bits()}
            for i, o in zip(pick, out):
                outs_tok[i].add(o.key_tokens())
                outs_bit[i].add(o.key_bits())
                if i == 0:
                    btok.add(o.key_tokens())
                    bbit.add(o.key_bits())
            per_batch.append(dict(batch=b, probe_unique_tokens=len(btok), probe_unique_bits=len(bbit)))
    return outs_tok, outs_bit, per_batch


def t_sglang(S, mode, plots):
    """SGLang deterministic test: single / mixed / prefix, unique samples per prompt must be 1."""
    P = S.prof
    new = P["sg_new"]
    batches = P["sg_batches"]
    role = S.role(mode)
    rng0 = random.Random(31)
    room = S.ctx - new - 1
    # single: one prompt repeated b times, b = 1..50
    single = [S.rand_prompt(rng0, min(32, room))]
    # mixed: short / medium / long prompts
    lens = [8, 24, 64, 200, 600, 1500, 3000, 4000][:P["sg_pool"]]
    sm = min(1.0, room / max(lens))
    if sm < 1.0:
        S.scale_notes.append(f"sglang mixed lengths {lens} -> {[max(2, int(L * sm)) for L in lens]} tokens "
                             f"(context {S.ctx})")
    mixed = [S.rand_prompt(rng0, max(2, int(L * sm))) for L in lens]
    # prefix: shared prefixes of 1 / 511 / 2048 / 4097 tokens (scaled to the context), distinct suffixes
    prefixes = P["sg_prefixes"]
    suffix = 16
    cap = P["sg_prefix_cap"]
    s = min(cap, (room - suffix) / max(prefixes))
    if s < 1.0:
        scaled = sorted(set(max(1, int(round(L * s))) if L > 1 else 1 for L in prefixes))
        S.scale_notes.append(f"sglang prefixes {prefixes} -> {scaled} tokens (context {S.ctx}, x{s:.3f})")
        prefixes = scaled
    prefix_pool = []
    for L in prefixes:
        base = S.rand_prompt(rng0, L)
        for _ in range(2):
            prefix_pool.append(base + [rng0.randrange(S.lo_id, S.hi_id) for _ in range(suffix)])
    for kind, pool in (("single", single), ("mixed", mixed), ("prefix", prefix_pool)):
        t = time.time()
        ids = list(range(1000, 1000 + len(pool)))
        tok, bit, per_batch = _sglang(S, mode, kind, pool, ids, batches, new, random.Random(41))
        utok = max(len(x) for x in tok if x)
        ubit = max(len(x) for x in bit if x)
        ok = (ubit == 1) if role == MUST else (ubit > 1)
        seen = [i for i in range(len(pool)) if tok[i]]
        S.record(mode, f"sglang_{kind}", role, ok, f"max unique per prompt: {ubit} (bits), {utok} (tokens); "
                 f"{len(seen)} prompts, batches {batches[0]}..{batches[-1]}", time.time() - t,
                 unique_bits_per_prompt=[len(bit[i]) for i in seen], unique_tokens_per_prompt=[len(tok[i]) for i in seen],
                 prompt_lengths=[len(pool[i]) for i in seen], per_batch=per_batch, new_tokens=new, temperature=0.6)
        plots.setdefault("unique", {}).setdefault(mode, {})[f"sglang_{kind}"] = per_batch


def t_completions(S, mode, plots):
    """Thinking Machines: 1,000 completions of one prompt at T = 0 in batches of varying size and company."""
    P = S.prof
    new = P["c1000_new"]
    rng = random.Random(53)
    prompt = S.rand_prompt(rng, min(24, S.ctx - new - 1))
    n = P["c1000_n"]
    lo, hi = P["c1000_chunk"]
    t = time.time()
    seen_tok, seen_bit = {}, {}
    per_batch = {}
    done = 0
    with S.engine(mode, max_seqs=hi + 8, max_seq_len=min(S.ctx, 64 + new + 1)) as e:
        while done < n:
            b = min(rng.randint(lo, hi), n - done)
            others = rng.randint(0, 8)
            prompts = [prompt] * b + [S.rand_prompt(rng, rng.randint(4, min(64, S.ctx - new - 1)))
                                      for _ in range(others)]
            order = list(range(len(prompts)))
            rng.shuffle(order)
            out = S.gen(e, [prompts[i] for i in order], [0 if i < b else 1 + i for i in order], 0.0, new)
            for i, o in zip(order, out):
                if i < b:
                    seen_tok[o.key_tokens()] = seen_tok.get(o.key_tokens(), 0) + 1
                    seen_bit[o.key_bits()] = seen_bit.get(o.key_bits(), 0) + 1
                    pb = per_batch.setdefault(len(prompts), set())
                    pb.add(o.key_bits())
            done += b
    role = S.role(mode)
    ok = (len(seen_bit) == 1) if role == MUST else (len(seen_bit) > 1)
    S.record(mode, "completions_1000", role, ok, f"{n} completions: {len(seen_bit)} unique (bits), {len(seen_tok)} "
             f"unique (tokens)", time.time() - t, completions=n, unique_bits=len(seen_bit),
             unique_tokens=len(seen_tok), counts_tokens=sorted(seen_tok.values(), reverse=True)[:20],
             new_tokens=new, temperature=0.0)
    pts = [dict(batch=k, probe_unique_bits=len(v)) for k, v in sorted(per_batch.items())]
    plots.setdefault("unique", {}).setdefault(mode, {})["completions_1000"] = pts


def t_distractors(S, mode, plots):
    """GPT-2 experiment: one prompt greedy-decoded among 0..255 others; first divergent position per batch size."""
    P = S.prof
    new = P["dist_new"]
    lo, hi = P["dist_len"]
    rng = random.Random(61)
    target = S.rand_prompt(rng, min(20, S.ctx - new - 1))
    sizes = P["dist_sizes"]
    t = time.time()
    rows = []
    with S.engine(mode, max_seqs=max(sizes) + 1, max_seq_len=max(hi, len(target)) + new + 1) as e:
        alone = S.gen(e, [target], [0], 0.0, new)[0]
        for k in sizes:
            others = [S.rand_prompt(rng, rng.randint(lo, min(hi, S.ctx - new - 1))) for _ in range(k)]
            pos = rng.randint(0, k)
            prompts = others[:pos] + [target] + others[pos:]
            ids = list(range(1, pos + 1)) + [0] + list(range(pos + 1, k + 1))
            out = S.gen(e, prompts, ids, 0.0, new)
            tok, bit = first_divergence(alone, out[pos])
            rows.append(dict(batch=k + 1, others=k, first_token_diff=tok, first_bit_diff=bit))
    role = S.role(mode)
    bad = sum(1 for r in rows if r["first_bit_diff"] >= 0)
    ok = (bad == 0) if role == MUST else (bad > 0)
    S.record(mode, "distractors", role, ok, "first divergent position (token/bit) per batch: " +
             " ".join(f"{r['batch']}:{r['first_token_diff']}/{r['first_bit_diff']}" for r in rows),
             time.time() - t, rows=rows, new_tokens=new, temperature=0.0)
    plots.setdefault("diverge", {}).setdefault(mode, {})["distractors"] = rows


def t_div_index(S, mode, cache):
    """LayerCast: greedy outputs under several (batch size, rank count) configurations; Div_Index and Std@Acc."""
    import numpy as np
    P = S.prof
    new = P["div_new"]
    rng = random.Random(71)
    maxlen = S.fit(128, new, "div_index prompts")
    prompts = [S.rand_prompt(rng, rng.randint(4, maxlen)) for _ in range(P["div_prompts"])]
    pf = os.path.join(S.work, "div_prompts.jsonl")
    S.write_prompts(pf, prompts)
    t = time.time()
    configs = [(1, seqs) for seqs in P["div_seqs"]]
    if S.np_ok:
        configs += [(2, seqs) for seqs in P["div_seqs"][1:]]
    runs = {}
    for np_, seqs in configs:
        f = os.path.join(S.work, f"div_{mode}_np{np_}_s{seqs}.h5")
        S.cli("generate", S.model_args + ["--prompts", pf, "--out", f, "--temperature", "0", "--max-new-tokens",
                                          str(new), "--no-stop", "--max-seqs", str(seqs), "--max-batch-tokens",
                                          "64" if seqs == 1 else "4096"], np_=np_, mode=mode)
        runs[f"np{np_}/seqs{seqs}"] = S.read(f)
    names = list(runs)
    ref = runs[names[0]]
    # Div_Index per prompt: the first token index at which the configurations' responses diverge (-1: never)
    div_tok, div_bit = [], []
    for i in range(len(prompts)):
        dt = [first_divergence(ref[i], runs[n][i]) for n in names[1:]]
        ts = [d[0] for d in dt if d[0] >= 0]
        bs = [d[1] for d in dt if d[1] >= 0]
        div_tok.append(min(ts) if ts else -1)
        div_bit.append(min(bs) if bs else -1)
    # Std@Acc: std over configurations of "accuracy"; with no task, accuracy = fraction of prompts whose greedy
    # completion equals the reference configuration's (np1, batch 1) -- a synthetic stand-in, see REPRODUCIBILITY.md
    acc = {n: float(np.mean([runs[n][i].tokens == ref[i].tokens for i in range(len(prompts))])) for n in names}
    acc_bits = {n: float(np.mean([runs[n][i].key_bits() == ref[i].key_bits() for i in range(len(prompts))]))
                for n in names}
    std_acc = float(np.std(list(acc.values())))
    std_acc_bits = float(np.std(list(acc_bits.values())))
    ndiv = sum(1 for d in div_tok if d >= 0)
    ndivb = sum(1 for d in div_bit if d >= 0)
    mean_div = float(np.mean([d for d in div_tok if d >= 0])) if ndiv else -1.0
    role = S.role(mode)
    ok = (ndivb == 0 and std_acc_bits == 0.0) if role == MUST else (ndivb > 0)
    S.record(mode, "div_index", role, ok, f"{len(names)} configs: {ndiv}/{len(prompts)} prompts diverge in tokens "
             f"(mean Div_Index {mean_div:.1f}), {ndivb} in bits; Std@Acc {std_acc:.4f} (bits {std_acc_bits:.4f})",
             time.time() - t, configs=names, div_index_tokens=div_tok, div_index_bits=div_bit,
             accuracy=acc, accuracy_bits=acc_bits, std_acc=std_acc, std_acc_bits=std_acc_bits,
             mean_div_index=mean_div, new_tokens=new, temperature=0.0)
    cache["div"] = dict(configs=names, div_tok=div_tok, div_bit=div_bit)


def t_ranks(S, mode, cache):
    """mpirun -np 1 vs -np 2 (data parallel), and --tp 1 vs --tp 2 (tensor parallel)."""
    if not S.np_ok:
        S.record(mode, "ranks_np1_vs_np2", "skipped", True, f"{S.args.mpirun} not found", 0.0)
        S.record(mode, "tp1_vs_tp2", "skipped", True, f"{S.args.mpirun} not found", 0.0)
        return
    P = S.prof
    new = P["ranks_new"]
    rng = random.Random(83)
    maxlen = S.fit(96, new, "ranks prompts")
    prompts = [S.rand_prompt(rng, rng.randint(4, maxlen)) for _ in range(P["ranks_prompts"])]
    pf = os.path.join(S.work, "ranks_prompts.jsonl")
    S.write_prompts(pf, prompts)
    common = S.model_args + ["--prompts", pf, "--temperature", "0.6", "--seed", "11", "--max-new-tokens", str(new),
                             "--no-stop", "--n", "2"]
    role = S.role(mode)

    def cmp(fa, fb):
        a, b = S.read(fa), S.read(fb)
        d = sum(1 for x, y in zip(a, b) if first_divergence(x, y)[1] >= 0)
        return d, len(a)

    t = time.time()
    f1 = os.path.join(S.work, f"ranks_{mode}_np1.h5")
    f2 = os.path.join(S.work, f"ranks_{mode}_np2.h5")
    S.cli("generate", common + ["--out", f1], np_=1, mode=mode)
    S.cli("generate", common + ["--out", f2, "--max-batch-tokens", "300"], np_=2, mode=mode)
    # score on 2 ranks what 1 rank generated: the trainer side under another rank count
    sf = f1.replace(".h5", ".np2scores.h5")
    S.cli("score", S.model_args + ["--rollouts", f1, "--out", sf], np_=2, mode=mode)
    p, _ = S.cli("verify", [f1, sf, "--quiet"], ok=(0, 1))
    d, n = cmp(f1, f2)
    ok = (d == 0 and p.returncode == 0) if role == MUST else (d > 0 or p.returncode == 1)
    S.record(mode, "ranks_np1_vs_np2", role, ok, f"{d}/{n} samples differ in bits; generate np1 -> score np2 "
             f"verify exit {p.returncode}", time.time() - t, samples=n, samples_differ=d, verify_exit=p.returncode,
             gpus=S.ngpu, shared_gpu=S.env.get("BITROLL_SHARE_GPUS") == "1")
    t = time.time()
    if S.device == "cuda" and mode == "standard":
        S.record(mode, "tp1_vs_tp2", "n/a", True, "--kernels standard is not tensor parallel on the GPU", 0.0)
        return
    ft = os.path.join(S.work, f"ranks_{mode}_tp2.h5")
    try:
        S.cli("generate", common + ["--out", ft, "--tp", "2"], np_=2, mode=mode)
    except RuntimeError as ex:
        if "divide" in str(ex) or "whole chunks" in str(ex):
            why = next(ln for ln in str(ex).splitlines() if "divide" in ln or "whole chunks" in ln)
            S.record(mode, "tp1_vs_tp2", "n/a", True, f"--tp 2 refused for this model: {why.strip()}",
                     time.time() - t)
            return
        raise
    d, n = cmp(f1, ft)
    ok = (d == 0) if role == MUST else (d > 0)
    S.record(mode, "tp1_vs_tp2", role, ok, f"{d}/{n} samples differ in bits (--tp 2 on 2 ranks vs --tp 1)",
             time.time() - t, samples=n, samples_differ=d)


def t_sensitivity(S, mode):
    """The harness can fail: the final norm's weights moved by one unit in the last place of their stored dtype
    must change log-prob bits (a comparison that cannot see this would pass anything). --model only."""
    import numpy as np
    if "model" not in S.engine_model:
        S.record(mode, "sensitivity_1ulp", "n/a", True, "random weights have no tensors to perturb", 0.0)
        return
    import bitroll.safetensors as st
    t = time.time()
    tensors, dtypes = st.load_checkpoint(S.engine_model["model"])
    name = next((k for k in tensors if k.endswith(("model.norm.weight", "ln_f.weight"))), None) or \
        next(k for k in tensors if k.endswith("norm.weight"))
    w = tensors[name].astype(np.float32).copy()
    # The unit is the last place of the precision the kernels hold the weights in: the stored dtype, except that the
    # GPU's invariant and standard modes hold 32-bit weights as bf16 (one f32 ulp would vanish in that cast: measured
    # on the H200, 0/256 log-probs moved on stories260K).
    unit = dtypes[name]
    if unit == "F32" and S.device == "cuda" and mode != "fp32":
        unit = "BF16"
    if unit == "BF16":  # the next bf16 value up from w rounded to bf16 (round to nearest even): one more in the pattern
        u = w.view(np.uint32)  # (for bf16 values read as fp32 the low 16 bits are zero and the rounding is exact)
        rne = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        u[:] = (rne + np.uint32(1)) << np.uint32(16)
    elif dtypes[name] == "F16":
        w[:] = np.nextafter(w.astype(np.float16), np.float16(np.inf)).astype(np.float32)
    else:
        w[:] = np.nextafter(w, np.float32(np.inf))
    rng = random.Random(97)
    prompts = [S.rand_prompt(rng, rng.randint(4, min(48, S.ctx - 33))) for _ in range(8)]
    with S.engine(mode, max_seqs=8, max_seq_len=min(S.ctx, 48 + 33)) as e:
        a = S.gen(e, prompts, list(range(8)), 0.0, 32)
        e.load_state_dict({name: w})
        b = S.gen(e, prompts, list(range(8)), 0.0, 32)
    lp = count_lp_diffs(a, b)
    tok = sum(1 for x, y in zip(a, b) if first_divergence(x, y)[0] >= 0)
    n = sum(len(x.tokens) for x in a)
    S.record(mode, "sensitivity_1ulp", MUST, lp > 0, f"{name} + 1 ulp ({unit}): {lp}/{n} log-probs "
             f"differ, {tok}/8 completions differ in tokens (must differ)", time.time() - t, tensor=name,
             logprobs_differ=lp, tokens=n, completions_differ=tok)


# ----------------------------------------------------------------------------------------------- output

def write_plots(S, plots):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plots skipped: matplotlib is not installed"]
    files = []
    for kind, title, ylabel in (("unique", "distinct outputs of the probe prompt (incl. batch-1 reference)",
                                 "distinct outputs (tokens + log-prob bits)"),
                                ("diverge", "first divergent position vs the prompt alone (-1 = none)",
                                 "first divergent token index")):
        modes = plots.get(kind, {})
        if not modes:
            continue
        fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False)
        for ax, (mode, series) in zip(axes[0], modes.items()):
            for name, pts in series.items():
                if kind == "unique":
                    xs = [p["batch"] for p in pts]
                    ax.plot(xs, [p["probe_unique_bits"] for p in pts], marker="o", ms=3, label=name)
                else:
                    xs = [p["batch"] for p in pts]
                    ax.plot(xs, [p["first_bit_diff"] for p in pts], marker="o", ms=3, label=name + " (bits)")
                    ax.plot(xs, [p["first_token_diff"] for p in pts], marker="x", ms=4, ls="--",
                            label=name + " (tokens)")
            ax.set_xscale("log", base=2)
            ys = [y for line in ax.get_lines() for y in line.get_ydata()]
            if kind == "unique":
                ax.set_ylim(0, max(ys + [1]) + 1)
            else:
                ax.set_ylim(-2, max(ys + [8]) + 2)
            ax.set_xlabel("batch size (sequences in the call)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{S.model_name}, {S.device}, {mode}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = os.path.join(S.out, f"{kind}_per_batch.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def provenance(S):
    try:
        ver = subprocess.run([S.bitroll, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        ver = "?"
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        git = "?"
    return dict(bitroll=ver, git=git, host=platform.node(), python=platform.python_version(),
                device=S.device, gpus=S.ngpu, model=S.model_name, model_args=S.model_args,
                fingerprint=S.info.fingerprint, context=S.ctx, vocab=S.V, profile=S.args.profile,
                sizes=S.prof, command=" ".join(sys.argv))


def print_table(S, total_s):
    rows = [("mode", "test", "role", "result", "s", "measured")]
    for r in S.results:
        rows.append((r["mode"], r["test"], r["role"], r["status"], f"{r['seconds']:.1f}", r["measured"]))
    w = [max(len(str(x[i])) for x in rows) for i in range(5)]
    log("")
    log(f"bitroll conformance: {S.model_name} on {S.device} ({S.info.fingerprint}), profile {S.args.profile}, "
        f"{total_s:.0f} s")
    for i, row in enumerate(rows):
        log("  ".join(str(row[k]).ljust(w[k]) for k in range(5)) + "  " + row[5])
        if i == 0:
            log("  ".join("-" * w[k] for k in range(5)) + "  " + "-" * 8)
    fails = [r for r in S.results if r["role"] == MUST and r["status"] != "PASS"]
    errors = [r for r in S.results if r["status"] == "ERROR"]
    idle = [r for r in S.results if r["role"] == CONTROL and r["status"] != "BITES"]
    musts = [r for r in S.results if r["role"] == MUST]
    log(f"must-pass: {len(musts) - len(fails)}/{len(musts)} passed; controls: "
        f"{sum(1 for r in S.results if r['role'] == CONTROL) - len(idle)} bite, {len(idle)} do not bite"
        + (" (flagged: a control that does not bite shows nothing about this device)" if idle else "")
        + (f"; {len(errors)} errors" if errors else ""))
    log("RESULT: " + ("PASS" if not fails and not errors else "FAIL"))
    return not fails and not errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Exit 0 iff every must-pass test passed (controls never fail the suite).")
    ap.add_argument("--bitroll", required=True, help="the bitroll binary (libbitroll.so is looked for beside it)")
    ap.add_argument("--lib", help="libbitroll.so for the Python package (default: beside --bitroll; or $BITROLL_LIB)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="checkpoint directory (e.g. configs/models/stories260K)")
    g.add_argument("--random-weights", metavar="CFG", help="config.json shape with weights generated on the GPU "
                                                           "(e.g. configs/shapes/qwen3-0.6b.json; --device cuda)")
    ap.add_argument("--weights-seed", type=int, default=0)
    ap.add_argument("--modes", default=None, help="kernel modes, comma-separated: invariant,standard,fp32 on cuda "
                    "(default all three); on cpu the only kernel set is fp32 (and invariant): 'fp32' (default; "
                    "'invariant' is the same kernels and is run once, 'standard' is not available)")
    ap.add_argument("--out", required=True, help="directory for results.json, the PNG plots and work files")
    ap.add_argument("--quick", action="store_true", help="the CI subset (smaller sizes)")
    ap.add_argument("--profile", choices=sorted(PROFILES), help="sizes (default: quick with --quick, else gpu on "
                    "cuda, cpu on cpu)")
    ap.add_argument("--tests", default="all", help="comma-separated subset: needle,batch1_vs_N,decode_vs_prefill,"
                    "sglang,completions_1000,distractors,div_index,ranks,sensitivity")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--always-mpirun", action="store_true", help="launch single-rank CLI runs under mpirun -np 1 too")
    ap.add_argument("--keep-work", action="store_true", help="keep OUT/work (rollouts and scores files)")
    args = ap.parse_args()
    if args.profile is None:
        args.profile = ("gpu-quick" if args.device == "cuda" else "quick") if args.quick else \
            ("gpu" if args.device == "cuda" else "cpu")
    if not os.path.isfile(args.bitroll) or not os.access(args.bitroll, os.X_OK):
        ap.error(f"--bitroll {args.bitroll}: not an executable file")
    if args.random_weights and args.device != "cuda":
        ap.error("--random-weights: the weights are generated on the GPU; use --device cuda (or --model DIR)")
    lib = args.lib or os.environ.get("BITROLL_LIB") or os.path.join(os.path.dirname(os.path.abspath(args.bitroll)),
                                                                   "libbitroll.so")
    if not os.path.isfile(lib):
        ap.error(f"libbitroll.so not found at {lib} (give --lib)")
    os.environ["BITROLL_LIB"] = os.path.abspath(lib)
    sys.path.insert(0, os.path.join(ROOT, "python"))
    if args.device == "cuda":
        modes = (args.modes or "invariant,standard,fp32").split(",")
        bad = [m for m in modes if m not in ("invariant", "standard", "fp32")]
        if bad:
            ap.error(f"--modes: {bad}: expected invariant, standard, fp32")
    else:
        req = (args.modes or "fp32").split(",")
        bad = [m for m in req if m not in ("invariant", "fp32", "standard")]
        if bad:
            ap.error(f"--modes: {bad}: expected fp32 (or invariant: the same kernels) on cpu")
        if "standard" in req:
            log("note: --modes standard: the CPU engine has no standard kernels (bitroll rejects --kernels standard "
                "on cpu); skipped")
        modes = ["fp32"] if any(m in ("invariant", "fp32") for m in req) else []
    tests = args.tests.split(",") if args.tests != "all" else \
        ["needle", "batch1_vs_N", "decode_vs_prefill", "sglang", "completions_1000", "distractors", "div_index",
         "ranks", "sensitivity"]
    S = Suite(args)
    t0 = time.time()
    plots = {}
    log(f"conformance: {S.model_name} ({S.info.fingerprint}, context {S.ctx}, vocab {S.V}) on {S.device}, modes "
        f"{','.join(modes)}, profile {args.profile}")
    for mode in modes:
        log(f"mode {mode}")
        cache = {}
        for name, fn in (("needle", lambda: t_needle(S, mode)),
                         ("batch1_vs_N", lambda: t_batch1_vs_n(S, mode, cache)),
                         ("decode_vs_prefill", lambda: t_decode_vs_prefill(S, mode, cache)),
                         ("sglang", lambda: t_sglang(S, mode, plots)),
                         ("completions_1000", lambda: t_completions(S, mode, plots)),
                         ("distractors", lambda: t_distractors(S, mode, plots)),
                         ("div_index", lambda: t_div_index(S, mode, cache)),
                         ("ranks", lambda: t_ranks(S, mode, cache)),
                         ("sensitivity", lambda: t_sensitivity(S, mode))):
            if name not in tests:
                continue
            if name == "decode_vs_prefill" and "bn_files" not in cache:
                if "batch1_vs_N" not in tests:
                    t_batch1_vs_n(S, mode, cache)
                else:
                    continue
            t = time.time()
            try:
                fn()
            except Exception as ex:  # an error is a failure of the suite, reported with what failed
                S.results.append(dict(mode=mode, test=name, role=MUST, status="ERROR", measured=str(ex)[:2000],
                                      seconds=round(time.time() - t, 2)))
                log(f"  [{mode}] {name}: ERROR {ex}")
    total = time.time() - t0
    plot_files = write_plots(S, plots)
    ok = print_table(S, total)
    res = dict(provenance=provenance(S), modes=modes, scaled=sorted(set(S.scale_notes)), seconds=round(total, 1),
               passed=ok, plots=plot_files, results=S.results)
    with open(os.path.join(S.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    if S.scale_notes:
        log("scaled to the context: " + "; ".join(sorted(set(S.scale_notes))))
    log(f"wrote {os.path.join(S.out, 'results.json')}" + (", " + ", ".join(plot_files) if plot_files else ""))
    if not args.keep_work:
        shutil.rmtree(S.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
