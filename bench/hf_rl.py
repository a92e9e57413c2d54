#!/usr/bin/env python3
"""HF transformers baseline for the RL rollout workload (compare with `bitroll bench --workload rl`).

Measures the sampled-decode throughput of `model.generate`: P random prompts of L tokens, each sampled
N times (P*N sequences), exactly T new tokens per sequence (no EOS, so nothing stops early), in batches
of B sequences. The model is built from an HF config.json with random bf16 weights (nothing is
downloaded), SDPA attention, a static KV cache, and the decode step compiled by torch.compile (mode
reduce-overhead, i.e. CUDA graphs) through transformers' own static-cache compile path.
One warm-up generate (same batch and cache shape, stopped after --warmup-tokens) runs first, so compile
time is excluded from the timing and reported separately. tokens/s = P*N*T / seconds of all the timed
generate calls (prefill included).

Run:  python3 bench/hf_rl.py --prompts 32 --n 8 --new-tokens 1024 --json /tmp/hf.json
"""
import argparse
import json
import os
import sys
import time

DEFAULT_CONFIG = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "configs", "shapes", "qwen3-0.6b.json"))


def parse_args():
    ap = argparse.ArgumentParser(description="HF transformers baseline for the RL rollout workload")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="HF-style config.json (default: %(default)s)")
    ap.add_argument("--prompts", type=int, default=32, help="distinct prompts P")
    ap.add_argument("--n", type=int, default=8, help="samples per prompt N")
    ap.add_argument("--prompt-len", type=int, default=256, help="prompt length L in tokens")
    ap.add_argument("--new-tokens", type=int, default=1024, help="new tokens T per sequence")
    ap.add_argument("--batch", type=int, default=0, help="sequences per generate call (default: P*N capped at 256)")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    ap.add_argument("--no-compile", action="store_true", help="run the decode step eagerly")
    ap.add_argument("--warmup-tokens", type=int, default=16, help="new tokens in the warm-up generate")
    return ap.parse_args()


def force_eager(model, torch):
    """Make generate run the plain forward, whatever the transformers version does by default."""
    if hasattr(model.generation_config, "disable_compile"):
        model.generation_config.disable_compile = True
    model.get_compiled_call = lambda *_args, **_kw: model.__call__
    model.__dict__.pop("forward", None)  # undo a torch.compile wrapper, if any
    model.__dict__.pop("_compiled_call", None)
    torch._dynamo.reset()


def main():
    a = parse_args()
    a.warmup_tokens = max(1, a.warmup_tokens)
    import torch
    if not torch.cuda.is_available():
        sys.exit("hf_rl: CUDA is not available; this benchmark needs an NVIDIA GPU")
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList

    P, N, L, T = a.prompts, a.n, a.prompt_len, a.new_tokens
    seqs = P * N
    if min(P, N, L, T) < 1:
        sys.exit("hf_rl: --prompts, --n, --prompt-len and --new-tokens must all be at least 1")
    # Equal batches keep the static cache (and so the compiled graphs) one shape; the default is the
    # largest divisor of P*N up to 256, which is P*N capped at 256 whenever that divides.
    B = a.batch or max(d for d in range(1, min(seqs, 256) + 1) if seqs % d == 0)
    if B < 1 or seqs % B:
        sys.exit(f"hf_rl: --batch {B} must divide prompts*n = {seqs}")

    with open(a.config) as f:
        cfg = json.load(f)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    config.eos_token_id = None  # never stop early: every sequence gets exactly T tokens
    config.pad_token_id = 0
    torch.manual_seed(a.seed)
    with torch.device("cuda"):  # initialise the random weights on the GPU (fast)
        try:
            model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
        except (TypeError, ValueError) as e:
            print(f"hf_rl: attn_implementation='sdpa' not accepted ({e}); using the default", flush=True)
            model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id = None, 0  # set on the model's config: generate would refill a None kwarg
    gen_kw = dict(do_sample=True, temperature=a.temperature, top_p=a.top_p, top_k=0, max_new_tokens=T,
                  min_new_tokens=T, pad_token_id=0, cache_implementation="static")

    how, reason = "eager", "--no-compile"
    if not a.no_compile:
        try:
            try:
                from transformers import CompileConfig  # 4.47+: generate compiles the decode step itself
            except ImportError:
                from transformers.generation import CompileConfig
            gc.compile_config = CompileConfig(fullgraph=True, dynamic=False, mode="reduce-overhead")
            how, reason = "auto", ""
        except ImportError:  # older transformers: compile the forward ourselves
            try:
                model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
                how, reason = "wrap", ""
            except Exception as e:
                reason = f"torch.compile failed: {type(e).__name__}: {e}"
    if how == "eager":
        force_eager(model, torch)

    class StopAfter(StoppingCriteria):  # ends the warm-up early without changing the cache shape
        def __call__(self, input_ids, scores, **kw):
            done = input_ids.shape[1] >= L + a.warmup_tokens
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def generate(x, warmup=False):
        kw = dict(gen_kw)
        if warmup and a.warmup_tokens < T:
            kw["stopping_criteria"] = StoppingCriteriaList([StopAfter()])
        return model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kw)

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(1000, 2000, (P, L), generator=g).repeat_interleave(N, dim=0).cuda()

    def warmup():
        # max_new_tokens stays T so the static cache gets the timed run's size (it is then reused, and
        # the graphs compiled here are the ones replayed); the stopping criterion ends it early.
        torch.cuda.synchronize()
        t = time.perf_counter()
        generate(ids[:B], warmup=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    print(f"hf_rl: {seqs} sequences in batches of {B}, warming up ({how})...", flush=True)
    torch.cuda.reset_peak_memory_stats()
    try:
        warm_s = warmup()
        if how == "auto" and not hasattr(model, "_compiled_call"):
            how, reason = "eager", "generate did not take its static-cache compile path"
    except Exception as e:
        if how == "eager":
            raise
        reason = f"compile failed: {type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"hf_rl: {reason}; falling back to eager", flush=True)
        how = "eager"
        force_eager(model, torch)
        warm_s = warmup()

    torch.manual_seed(a.seed)
    nb, tokens, short = seqs // B, 0, 0
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(nb):
        out = generate(ids[i * B:(i + 1) * B])
        new = out.shape[1] - L
        tokens += B * new
        if new != T:
            short += B
            print(f"hf_rl: WARNING: batch {i + 1} generated {new} new tokens, not {T}", flush=True)
        del out
        torch.cuda.synchronize()
        el = time.perf_counter() - t0
        print(f"  batch {i + 1}/{nb}: {tokens:,} tokens, {el:.1f} s, {tokens / el:,.0f} tokens/s", flush=True)
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0

    compiled = how != "eager"
    res = dict(engine="hf", config=a.config, prompts=P, n=N, prompt_len=L, new_tokens=T, batch=B,
               sequences=seqs, tokens=tokens, seconds=secs, tokens_per_s=tokens / secs,
               short_sequences=short, compiled=compiled, compile_path=how, compile_reason=reason,
               warmup_s=warm_s, warmup_tokens=a.warmup_tokens, peak_mem_gb=torch.cuda.max_memory_allocated() / 1e9,
               top_p=a.top_p, temperature=a.temperature, seed=a.seed, dtype="bfloat16",
               attn_implementation=getattr(model.config, "_attn_implementation", None),
               cache_implementation="static", torch=torch.__version__,
               transformers=transformers.__version__, gpu=torch.cuda.get_device_name(0))
    print(f"hf  prompts {P} x n {N}, prompt {L}, new {T}, batch {B}: {tokens:,} tokens in {secs:.1f} s = "
          f"{tokens / secs:,.0f} tokens/s (compiled: {'yes' if compiled else 'no'}, warm-up {warm_s:.1f} s, "
          f"peak {res['peak_mem_gb']:.1f} GB)" + (f"  [{reason}]" if reason else ""), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
