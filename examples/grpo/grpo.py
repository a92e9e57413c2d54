#!/usr/bin/python3
"""On-policy GRPO with bitroll: rollouts from `mpirun -np N bitroll generate`, a PyTorch trainer whose log-probs
are the sampler's bit for bit (importance ratio exactly 1.0, KL exactly 0, verified before every update), and the
off-policy control (--off-policy: the trainer's own PyTorch log-probs, the usual setup) beside it.

    PYTHONPATH=python BITROLL_LIB=build/libbitroll.so /usr/bin/python3 examples/grpo/grpo.py --out-dir /tmp/grpo

The rollout workers are one `mpirun -np N bitroll worker` job for the whole run (--workers persistent, the default):
it loads the base checkpoint once and serves one JSON request per step on its stdin (examples/grpo/workers.py).
--workers relaunch starts `mpirun -np N bitroll generate` on a full checkpoint each step instead.

Each step:
  1. the current weights are written as one .safetensors file (model.state_dict() in the base checkpoint's dtypes;
     step 0 sends none: the workers hold the base checkpoint);
  2. the workers' round: rank 0 reads the weights file, every rank receives its bytes over MPI (comm/) and checks
     that its fingerprint equals rank 0's and the trainer's engine's; then G completions per prompt
     (--n G --temperature 1 --seed SEED+step --weight-version step) go into an HDF5 rollouts file, which records
     the weights' fingerprint (checked again by the trainer);
  3. rewards (examples/grpo/rewards.py) -> group-normalised advantages (per prompt, over its G samples);
  4. the trainer's log-probs: bitroll.torch.token_logprobs(engine, model, batch) (on-policy; values = the engine's
     kernels, gradient = the PyTorch model's), checked against the file: the loss mask, ratio exactly 1.0, KL
     exactly 0, else the loop stops naming the first mismatching sample and token. --off-policy:
     bitroll.models.token_logprobs_torch(model, ...) instead, not required to match (KL and max |delta| logged);
  5. clipped-ratio loss -> backward -> AdamW step -> engine.load_state_dict(model.state_dict()) (the weight push).

Writes OUT_DIR/log.jsonl (one record per step) and prints the final weights' fingerprint. --plot OUT.png draws
reward and KL against step for this run, or for the logs given with --plot-logs (one or two: on- and off-policy).
The trainer side is deterministic on the CPU, and the rollouts files do not depend on the workers' --np or
--max-batch-tokens, so the final weights (fingerprint) are the same bits for any of them.
"""

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import workers as W  # noqa: E402
STORY_PROMPTS = [
    "Once upon a time, there was a little girl named Lily. She",
    "Tom had a big red ball. One day",
    "The sun was shining and the birds were singing. Sam",
    "Mia found a small box under her bed.",
]


class LoopError(RuntimeError):
    pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="GRPO with bitroll rollout workers (mpirun) and a PyTorch trainer whose log-probs are the "
                    "sampler's bit for bit: KL exactly 0 verified every step (--off-policy: the usual PyTorch "
                    "log-probs, the control).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "configs", "models", "stories260K"),
                   help="base checkpoint directory (config.json + safetensors)")
    p.add_argument("--init-random", default=None, metavar="CONFIG.json",
                   help="instead of --model: a model of this config's shape with random weights (torch.manual_seed("
                        "--init-seed), N(0, 0.02) matrices, unit norms, BF16 like a released checkpoint) written to "
                        "OUT_DIR/base (e.g. configs/shapes/qwen3-0.6b.json; use --reward tokens)")
    p.add_argument("--init-seed", type=int, default=0, help="seed of --init-random")
    p.add_argument("--device", default="cpu", help="the trainer's device (cpu, cuda, cuda:N) and the workers' "
                                                   "(--device cpu|cuda)")
    p.add_argument("--kernels", default="invariant", choices=("invariant", "fp32"),
                   help="the kernel mode of the workers and of the trainer's engine")
    p.add_argument("--workers", choices=("persistent", "relaunch"), default="persistent",
                   help="persistent: one `bitroll worker` job for the run, new weights by broadcast; relaunch: "
                        "`bitroll generate` per step on a written checkpoint")
    p.add_argument("--num-prompts", type=int, default=4,
                   help="--reward tokens without --prompts: this many random-id prompts")
    p.add_argument("--out-dir", default="grpo-out", help="checkpoints, rollouts files and log.jsonl go here")
    p.add_argument("--log", default=None, help="JSONL log (default OUT_DIR/log.jsonl)")
    p.add_argument("--steps", type=int, default=50, help="GRPO steps (rounds of generate + one update)")
    p.add_argument("--prompts", default=None,
                   help="JSONL prompts file for bitroll generate (default: four story openings for --reward text, "
                        "random token ids for --reward tokens)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt (the GRPO group size G)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="step s samples with seed SEED+s; also the torch seed")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.2, help="PPO ratio clip epsilon")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--reward", choices=("text", "tokens"), default="text",
                   help="text: target word + full stop (needs a tokenizer); tokens: fraction of completion tokens "
                        "in a fixed id set (any model)")
    p.add_argument("--target-word", default="happy", help="--reward text's target word")
    p.add_argument("--np", type=int, default=2, help="mpirun -np of the rollout workers")
    p.add_argument("--max-batch-tokens", type=int, default=256, help="the workers' --max-batch-tokens")
    p.add_argument("--max-seqs", type=int, default=64, help="the workers' --max-seqs")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="the trainer engine's longest prompt + completion, which sizes its KV cache (default: 512 + "
                        "--max-new-tokens, at most the model's context)")
    p.add_argument("--bitroll", default=None, help="the bitroll binary (default: $BITROLL_BIN, else next to the "
                                                    "loaded libbitroll, else build*/bitroll)")
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--off-policy", action="store_true",
                   help="the trainer's log-probs from bitroll.models.token_logprobs_torch (PyTorch alone), not "
                        "required to match the sampler's; KL and max |delta| are logged")
    p.add_argument("--keep", type=int, default=2, help="checkpoints/rollouts of the last KEEP steps are kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="draw reward and KL against step (matplotlib)")
    p.add_argument("--plot-title", default=None, help="the plot's title")
    p.add_argument("--plot-logs", nargs="+", default=None, metavar="LOG.jsonl",
                   help="with --plot: plot these logs (one or two) and exit, without training")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.plot_logs and not a.plot:
        p.error("--plot-logs needs --plot OUT.png")
    if a.n < 2:
        p.error("--n must be >= 2 (group-normalised advantages)")
    if a.num_prompts < 1:
        p.error("--num-prompts must be >= 1")
    if a.device != "cpu" and not a.device.startswith("cuda"):
        p.error(f"--device {a.device}: expected cpu, cuda or cuda:N")
    return a


# ----------------------------------------------------------------------------------------------------- plotting

def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot(logs, out, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for k, path in enumerate(logs):
        lw = 3.0 if k == 0 and len(logs) > 1 else 1.5  # the first one wider: equal curves stay visible
        recs = read_log(path)
        if not recs:
            continue
        label = recs[0].get("mode", os.path.basename(path))
        st = [r["step"] for r in recs]
        mean = [r["reward_mean"] for r in recs]
        std = [r["reward_std"] for r in recs]
        line, = ax1.plot(st, mean, lw=lw, label=f"{label}")
        ax1.fill_between(st, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                         color=line.get_color(), alpha=0.15)
        ax2.plot(st, [r["kl"] for r in recs], marker=".", label=f"{label}: KL (mean old - new)")
        ax3.plot(st, [max(r["max_abs_delta"], 1e-12) for r in recs], marker=".", label=f"{label}")
    ax1.set_ylabel("reward (mean ± std)")
    ax1.legend()
    ax2.set_ylabel("sampler/trainer KL")
    ax2.axhline(0.0, color="k", lw=0.5)
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax2.legend()
    ax3.set_yscale("log")
    ax3.set_ylabel("max |Δ log-prob|\n(1e-12 = exactly 0)")
    ax3.set_xlabel("step")
    ax3.legend()
    fig.suptitle(title or "GRPO with bitroll rollouts: on-policy (KL = 0) vs PyTorch log-probs")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------- the loop

def find_bitroll(arg, lib_path):
    cands = [arg, os.environ.get("BITROLL_BIN")]
    if lib_path:
        cands.append(os.path.join(os.path.dirname(lib_path), "bitroll"))
    cands += sorted((os.path.join(ROOT, d, "bitroll") for d in os.listdir(ROOT) if d.startswith("build")),
                    key=lambda x: -os.path.getmtime(x) if os.path.exists(x) else 0)
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise LoopError("no bitroll binary: pass --bitroll PATH (or set BITROLL_BIN)")


def write_default_prompts(path, reward, vocab, bos, seed, count):
    import numpy as np
    with open(path, "w") as f:
        if reward == "text":
            for s in STORY_PROMPTS:
                f.write(json.dumps({"prompt": s}) + "\n")
        else:
            rng = np.random.default_rng(seed)
            for k in range(count):
                length = (4, 7, 11, 16)[k % 4]
                ids = rng.integers(3, vocab, size=length).tolist()
                f.write(json.dumps({"prompt_ids": ([bos] if bos >= 0 else []) + ids}) + "\n")


def checkpoint_state(model):
    """model.state_dict() in the checkpoint's dtypes, on the model's device: BF16 tensors rounded there (round to
    nearest even, as the engine's weight update rounds), so the weight file and the engine push move half the bytes
    and convert nothing on the host."""
    import torch
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if model.checkpoint_dtypes.get(k) == "BF16":
            v = v.to(torch.bfloat16)
        sd[k] = v
    return sd


def save_weights(model, path):
    """checkpoint_state(model) as one .safetensors file (written, then renamed)."""
    import bitroll.safetensors
    tmp = path + ".tmp"
    bitroll.safetensors.save_file(checkpoint_state(model), tmp, dtypes=model.checkpoint_dtypes)
    os.replace(tmp, path)


def save_checkpoint(model, config_path, out):
    """A checkpoint directory out/: config_path copied as config.json and save_weights' model.safetensors (written
    as out.tmp, then renamed)."""
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copy(config_path, os.path.join(tmp, "config.json"))
    save_weights(model, os.path.join(tmp, "model.safetensors"))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def init_random(config_path, out, seed):
    """A base checkpoint of config_path's shape with random weights (deterministic on the CPU)."""
    import torch
    import bitroll.models
    cfg = bitroll.models.load_config(config_path)
    model = bitroll.models.from_config(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name or name.endswith("ln_1.weight") or name.endswith("ln_2.weight")
                        else 0.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
    model.checkpoint_dtypes = {n: "BF16" for n, _ in model.named_parameters()}
    save_checkpoint(model, config_path, out)


def group_advantages(rewards, prompt_index, eps=1e-6):
    """(r - mean of its prompt's group) / (std of the group + eps), float64."""
    import numpy as np
    adv = np.zeros_like(rewards)
    for g in np.unique(prompt_index):
        m = prompt_index == g
        adv[m] = (rewards[m] - rewards[m].mean()) / (rewards[m].std() + eps)
    return adv


def verify_on_policy(r, batch, lp, step):
    """The trainer's log-probs against the rollouts file, before the update: the loss mask rebuilt from the file's
    offsets equals the batch's, the log-probs at the mask are the file's bits (torch.equal), the importance ratio is
    exactly 1.0 and the KL exactly 0. Raises LoopError naming the first mismatching sample id and token."""
    import numpy as np
    import torch
    from bitroll.files import padded_positions
    rows, cols, _, _ = padded_positions(r.prompt_offsets, r.completion_offsets)
    mask_file = torch.zeros(batch["loss_mask"].shape, dtype=torch.bool)
    mask_file[torch.from_numpy(rows), torch.from_numpy(cols)] = True
    mask = batch["loss_mask"].bool()
    if not torch.equal(mask_file, mask):
        raise LoopError(f"step {step}: the loss mask differs from the rollouts file's completion positions")
    got = lp.detach()[torch.from_numpy(rows), torch.from_numpy(cols)].numpy()
    file_lp = np.asarray(r.logprobs, dtype=np.float32)
    bad = np.nonzero(got.view(np.uint32) != file_lp.view(np.uint32))[0]
    if bad.size:
        k = int(bad[0])
        b = int(rows[k])
        j = k - int(r.completion_offsets[b])
        raise LoopError(f"step {step}: the trainer's log-probs differ from the rollouts file's at {bad.size} tokens; "
                        f"first: sample_id {int(r.sample_id[b])} completion token {j} (id "
                        f"{int(r.completion_tokens[k])}): trainer {got[k]!r}, file {file_lp[k]!r}")
    old = batch["old_logprobs"]
    if not torch.equal(lp.detach()[mask], old[mask]):
        raise LoopError(f"step {step}: token_logprobs != old_logprobs on the loss mask")
    ratio = torch.exp(lp.detach() - old)[mask]
    if not bool((ratio == 1.0).all()):
        k = int(torch.nonzero(ratio != 1.0)[0])
        b = int(rows[k])
        raise LoopError(f"step {step}: importance ratio {float(ratio[k])!r} != 1.0 at sample_id "
                        f"{int(r.sample_id[b])} completion token {k - int(r.completion_offsets[b])}")
    kl = float((old[mask] - lp.detach()[mask]).double().mean()) if mask.any() else 0.0
    if kl != 0.0:
        raise LoopError(f"step {step}: KL {kl!r} != 0")


def run(a):
    if a.device.startswith("cuda"):  # cuBLAS needs this for torch.use_deterministic_algorithms
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import numpy as np
    import torch
    import bitroll
    import bitroll.models

    dev = torch.device(a.device)
    # CPU: every op deterministic (the final weights are the same bits for any worker layout, as the tests check).
    # CUDA: an op without a deterministic kernel warns instead of stopping the run; the KL = 0 check does not depend
    # on it (the engine recomputes the sampler's values), only the bitwise repeatability of the trainer's update does.
    torch.use_deterministic_algorithms(True, warn_only=dev.type == "cuda")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    wdev = "cpu" if dev.type == "cpu" else "cuda"

    out_dir = os.path.abspath(a.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.abspath(a.log or os.path.join(out_dir, "log.jsonl"))
    binary = find_bitroll(a.bitroll, bitroll._lib.library_path())
    say = (lambda *x: None) if a.quiet else (lambda *x: print(*x, flush=True))
    if a.init_random:
        base = os.path.join(out_dir, "base")
        t0 = time.perf_counter()
        init_random(os.path.abspath(a.init_random), base, a.init_seed)
        say(f"grpo: random base checkpoint {base} ({time.perf_counter() - t0:.1f} s)")
    else:
        base = os.path.abspath(a.model)
    tok_args = ["--tokenizer", base] if os.path.exists(os.path.join(base, "tokenizer.json")) else []
    if a.reward == "text" and not tok_args:
        raise LoopError(f"--reward text needs a tokenizer.json in {base} (use --reward tokens)")

    model = bitroll.models.from_pretrained(base).to(dev)
    model.train()
    max_seq_len = min(model.config.max_pos, a.max_seq_len or 512 + a.max_new_tokens)
    engine = bitroll.Engine(model=base, device=a.device, kernels=a.kernels, max_seq_len=max_seq_len)
    info = engine.info
    prompts = os.path.abspath(a.prompts) if a.prompts else os.path.join(out_dir, "prompts.jsonl")
    if not a.prompts:
        write_default_prompts(prompts, a.reward, info.vocab_size, info.bos_id, a.seed, a.num_prompts)
    stop_id = info.eos_id
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    mode = "off-policy (PyTorch log-probs)" if a.off_policy else "on-policy (bitroll token_logprobs)"
    say(f"grpo: {mode}; model {base} ({info.model_type}, fingerprint {engine.fingerprint}) on {a.device}; "
        f"{a.steps} steps; workers ({a.workers}): {a.mpirun} -np {a.np} {binary} --device {wdev} "
        f"(--max-batch-tokens {a.max_batch_tokens}); log {log_path}")

    # the engine starts with the base weights pushed from the PyTorch model, as every later step does
    engine.load_state_dict(checkpoint_state(model), version=0)
    start_args = [*tok_args, "--device", wdev, "--kernels", a.kernels, "--max-batch-tokens", a.max_batch_tokens,
                  "--max-seqs", a.max_seqs, "--quiet"]
    workers = None
    if a.workers == "persistent":
        t0 = time.perf_counter()
        workers = W.PersistentWorkers(a.mpirun, a.np, binary, ["--model", base, *map(str, start_args)],
                                      os.path.join(out_dir, "workers.stderr"))
        if workers.ready["fingerprint"] != engine.fingerprint:
            raise LoopError(f"the workers loaded weights {workers.ready['fingerprint']}, the trainer's engine holds "
                            f"{engine.fingerprint}")
        say(f"grpo: workers ready in {time.perf_counter() - t0:.1f} s ({workers.ready})")
    open(log_path, "w").close()
    try:
        fp = _loop(a, model, engine, opt, workers, base, binary, start_args,
                   prompts, stop_id, info, out_dir, log_path, say, dev)
    finally:
        if workers is not None:
            code = workers.close()
            if code != 0:
                print(f"grpo: warning: the workers exited {code} (see {workers.stderr_path})", file=sys.stderr)
    engine.close()
    print(f"final weights fingerprint: {fp}", flush=True)
    with open(os.path.join(out_dir, "final_fingerprint.txt"), "w") as f:
        f.write(fp + "\n")
    if a.plot:
        plot([log_path], a.plot, a.plot_title)
        say(f"plot: {a.plot}")
    return fp


def _sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _loop(a, model, engine, opt, workers, base, binary, start_args, prompts, stop_id, info, out_dir, log_path, say,
          dev):
    import numpy as np
    import torch
    import bitroll
    import bitroll.models
    import bitroll.torch as btorch
    import rewards as R
    for step in range(a.steps):
        t = {}
        sd = os.path.join(out_dir, f"step{step:04d}")
        os.makedirs(sd, exist_ok=True)
        rpath = os.path.join(sd, "rollouts.h5")
        round_args = ["--prompts", prompts, "--n", a.n, "--temperature", repr(a.temperature),
                      "--seed", a.seed + step, "--max-new-tokens", a.max_new_tokens, "--stop-id", stop_id,
                      "--weight-version", step, "--out", rpath]

        # ---- the weights of this step reach the workers; then the rollouts
        t0 = time.perf_counter()
        if workers is not None:
            wpath = None
            if step > 0:  # step 0: the workers hold the base checkpoint
                wpath = os.path.join(sd, "weights.safetensors")
                save_weights(model, wpath)
            t["checkpoint"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                ans = workers.round(round_args, weights=wpath, fingerprint=engine.fingerprint)
            except W.WorkerError as e:
                raise LoopError(f"step {step}: {e}") from None
            t["generate"] = time.perf_counter() - t0
            t["worker_weights"] = ans["seconds"]["weights"]
            t["worker_generate"] = ans["seconds"]["generate"]
        else:
            ckpt = os.path.join(sd, "ckpt")
            save_checkpoint(model, os.path.join(base, "config.json"), ckpt)
            t["checkpoint"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                W.relaunch_round(a.mpirun, a.np, binary, ["--model", ckpt, *map(str, start_args)], round_args)
            except W.WorkerError as e:
                raise LoopError(f"step {step}: {e}") from None
            t["generate"] = time.perf_counter() - t0
        r = bitroll.read_rollouts(rpath)
        if r.model_fingerprint != engine.fingerprint:
            raise LoopError(f"step {step}: the rollouts were sampled by weights {r.model_fingerprint}, the trainer's "
                            f"engine holds {engine.fingerprint}")
        if r.weight_version != step:
            raise LoopError(f"step {step}: the rollouts file records weight_version {r.weight_version}")

        # ---- rewards and group-normalised advantages
        if a.reward == "text":
            rew = R.text_reward(r, a.target_word)
        else:
            rew = R.token_reward(r, info.vocab_size)
        adv = group_advantages(rew, np.asarray(r.prompt_index))
        batch = bitroll.to_torch(r, device=dev)
        mask = batch["loss_mask"].bool()
        old = batch["old_logprobs"]
        adv_t = torch.from_numpy(adv.astype(np.float32)).to(dev)[:, None]

        # ---- the trainer's log-probs (the "score" phase: the forward of the training step)
        t0 = time.perf_counter()
        if a.off_policy:
            lp = bitroll.models.token_logprobs_torch(model, batch["input_ids"], batch["temperature"])
            lp = torch.where(mask, lp, torch.zeros((), device=dev))
        else:
            lp = btorch.token_logprobs(engine, model, batch)
        _sync(dev)
        t["score"] = time.perf_counter() - t0
        if not a.off_policy:
            verify_on_policy(r, {k: v.cpu() for k, v in batch.items()}, lp.detach().cpu(), step)
        d = (lp.detach() - old)[mask]
        ratio_all = torch.exp(lp.detach() - old)[mask]
        kl = float((old[mask] - lp.detach()[mask]).double().mean()) if mask.any() else 0.0
        k3 = float(((ratio_all - 1) - torch.log(ratio_all)).double().mean()) if mask.any() else 0.0

        # ---- clipped-ratio loss, backward, AdamW
        t0 = time.perf_counter()
        ratio = torch.exp(lp - old)
        surr = torch.min(ratio * adv_t, torch.clamp(ratio, 1 - a.clip, 1 + a.clip) * adv_t)
        m = mask.to(torch.float32)
        loss_t = -(surr * m).sum() / m.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        loss = float(loss_t)
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm)) \
            if a.max_grad_norm > 0 else float("nan")
        opt.step()
        _sync(dev)
        t["backward"] = time.perf_counter() - t0

        # ---- the weight push to the trainer-side engine (the workers get the weights file at the next round)
        t0 = time.perf_counter()
        del lp, ratio, surr, loss_t
        if dev.type == "cuda":  # the engine rebuilds its device buffers: give back what PyTorch's allocator caches
            torch.cuda.empty_cache()
        fp_new, ver = engine.load_state_dict(checkpoint_state(model), version=step + 1)
        t["push"] = time.perf_counter() - t0

        rec = {
            "step": step, "mode": "off-policy" if a.off_policy else "on-policy", "weight_version": r.weight_version,
            "samples": r.n, "tokens": int(mask.sum()), "reward_mean": float(rew.mean()),
            "reward_std": float(rew.std()), "loss": loss, "grad_norm": gnorm,
            "kl": kl, "kl_k3": k3, "max_abs_delta": float(d.abs().max()) if d.numel() else 0.0,
            "tokens_differ": int((d != 0).sum()),
            "ratio_min": float(ratio_all.min()) if d.numel() else 1.0,
            "ratio_max": float(ratio_all.max()) if d.numel() else 1.0,
            "finished": int((r.finish_reason == 0).sum()),
            "seconds": {k: round(v, 4) for k, v in t.items()},
            "fingerprint": r.model_fingerprint, "fingerprint_after": fp_new, "np": a.np,
            "max_batch_tokens": a.max_batch_tokens, "device": a.device, "workers": a.workers,
        }
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        say(f"step {step:3d}: reward {rec['reward_mean']:.3f} ± {rec['reward_std']:.3f}  KL {kl:.3e}  "
            f"max|Δ| {rec['max_abs_delta']:.2e}  ratio [{rec['ratio_min']:.7f}, {rec['ratio_max']:.7f}]  "
            f"{rec['tokens']} tok  ckpt {t['checkpoint']:.2f}s gen {t['generate']:.2f}s score {t['score']:.2f}s "
            f"bwd {t['backward']:.2f}s push {t['push']:.3f}s  -> {fp_new}")
        if a.keep >= 0 and step - a.keep >= 0:
            shutil.rmtree(os.path.join(out_dir, f"step{step - a.keep:04d}"), ignore_errors=True)
    return engine.fingerprint


def main(argv=None):
    a = parse_args(argv)
    if a.plot_logs:
        plot(a.plot_logs, a.plot, a.plot_title)
        print(f"plot: {a.plot}")
        return 0
    try:
        run(a)
    except LoopError as e:
        print(f"grpo: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
