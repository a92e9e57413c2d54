"""Issue 13's MUST-SHOW on the CPU: bitroll's log-probs inside a PyTorch training step, bit for bit.

For stories260K, tiny-qwen3, tiny-llama and tiny-gpt2 and for T = 0, T = 1 and T = 1 with top-p 0.9:

1. rollouts made by `mpirun -np 2 bitroll generate` (prompt ids written here);
2. a PyTorch training step on them: model = bitroll.models.from_pretrained(dir), batch = to_torch(read_rollouts()),
   lp = bitroll.torch.token_logprobs(engine, model, batch): torch.equal with the rollouts' log-probs on the loss
   mask, so the importance ratio is exactly 1.0 and the KL estimate exactly 0; a clipped-ratio (PPO) loss gives
   finite non-zero gradients, equal within 1e-5 relative to the same loss on the PyTorch model's own log-probs
   (token_logprobs' backward is that model's), and an optimizer step;
3. the negative control: the PyTorch model's own log-probs of the same batch (token_logprobs_torch) are NOT the
   sampler's: the number of tokens that differ, max |delta| and the KL estimate are printed and written to
   $BITROLL_REPORT_DIR/python_trainer_<model>.json when that is set; at T = 1 at least one token must differ;
4. after the step: engine.load_state_dict(model.state_dict()) gives a new fingerprint and weight version;
   engine.generate then engine.score and token_logprobs agree bit for bit under the new weights; the same
   weights saved as a checkpoint (bitroll.safetensors) and run by `mpirun -np 2 bitroll generate --model` have
   the same fingerprint and give the same completions, log-probs and digests.

Plus a finite-difference check of token_logprobs' gradient on a tiny model (float64).

Run through tests/python/run.sh (BITROLL_LIB, BITROLL_BIN); numpy, h5py and torch are required (never skipped).
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import h5py  # noqa: F401  (required: read_rollouts)
import numpy as np
import torch

import bitroll
import bitroll.models
import bitroll.safetensors
import bitroll.torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "models")
MODELS = {  # name -> (checkpoint, samples per prompt)
    "stories260K": (os.path.join(ROOT, "configs", "models", "stories260K"), 2),
    "tiny-qwen3": (os.path.join(DATA, "tiny-qwen3", "bf16"), 3),
    "tiny-llama": (os.path.join(DATA, "tiny-llama", "f32"), 4),
    "tiny-gpt2": (os.path.join(DATA, "tiny-gpt2", "bf16"), 3),
}
SETTINGS = {  # name -> (temperature, top_p)
    "T=0": (0.0, 1.0),
    "T=1": (1.0, 1.0),
    "T=1,top-p=0.9": (1.0, 0.9),
}
MAX_NEW = 24
STOP_ID = 2  # every model's eos_token_id
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def bitroll_bin():
    b = os.environ.get("BITROLL_BIN")
    if not b:
        raise AssertionError("BITROLL_BIN is not set: run through tests/python/run.sh")
    return b


def mpi_generate(model_dir, prompts_path, out, n, temperature, top_p, seed, weight_version=0):
    cmd = ["mpirun", "-np", "2", bitroll_bin(), "generate", "--quiet", "--model", model_dir, "--prompts",
           prompts_path, "--out", out, "--n", str(n), "--temperature", repr(temperature), "--top-p", repr(top_p),
           "--max-new-tokens", str(MAX_NEW), "--seed", str(seed), "--stop-id", str(STOP_ID),
           "--weight-version", str(weight_version)]
    p = subprocess.run(cmd, env={**os.environ, **MPI_ENV}, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return bitroll.read_rollouts(out)


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def write_prompts(path, vocab, seed, bos):
    rng = np.random.default_rng(seed)
    prompts = []
    for length in (3, 7, 12):
        ids = rng.integers(3, vocab, size=length).tolist()
        prompts.append([bos] + ids if bos >= 0 else ids)
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
    return prompts


def ppo_loss(lp, old, mask, adv, clip=0.2):
    """The clipped-ratio surrogate, averaged over the loss mask."""
    ratio = torch.exp(lp - old)
    surr = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv)
    m = mask.to(lp.dtype)
    return -(surr * m).sum() / m.sum()


def grads(model):
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in
            model.named_parameters()}


class TestTrainer(unittest.TestCase):
    report = {}

    def run_model(self, name):
        model_dir, n = MODELS[name]
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            with bitroll.Engine(model=model_dir) as probe:
                info = probe.info
            prompts = write_prompts(os.path.join(tmp, "prompts.jsonl"), info.vocab_size, seed=len(name),
                                    bos=info.bos_id)
            for k, (setting, (temperature, top_p)) in enumerate(SETTINGS.items()):
                with self.subTest(model=name, setting=setting):
                    results[setting] = self.run_setting(name, model_dir, n, prompts, tmp, temperature, top_p,
                                                        seed=11 + k)
        TestTrainer.report[name] = results
        d = os.environ.get("BITROLL_REPORT_DIR")
        if d:
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"python_trainer_{name}.json"), "w") as f:
                json.dump({"model": name, "checkpoint": os.path.relpath(model_dir, ROOT), "settings": results}, f,
                          indent=2)
        # the control bites: the PyTorch forward differs from the sampler on at least one sampled token at T = 1
        for setting in ("T=1", "T=1,top-p=0.9"):
            if setting not in results:
                continue  # that setting failed already (its subTest reports it)
            self.assertGreater(results[setting]["control_tokens_differ"], 0,
                               f"{name} {setting}: the PyTorch-only log-probs equal the sampler's on every token: "
                               f"the negative control is not biting")

    def run_setting(self, name, model_dir, n, prompts, tmp, temperature, top_p, seed):
        tag = f"{name} T={temperature} top_p={top_p}"
        path = os.path.join(tmp, f"rollouts-{seed}.h5")
        r = mpi_generate(model_dir, os.path.join(tmp, "prompts.jsonl"), path, n, temperature, top_p, seed)
        self.assertEqual(r.n, len(prompts) * n)
        self.assertGreater(int(r.completion_offsets[-1]), 0)

        torch.manual_seed(seed)
        model = bitroll.models.from_pretrained(model_dir)
        batch = bitroll.to_torch(r)
        mask = batch["loss_mask"].bool()
        old = batch["old_logprobs"]
        with bitroll.Engine(model=model_dir, max_batch_tokens=61) as engine:
            fp0 = engine.fingerprint
            self.assertEqual(fp0, r.model_fingerprint)

            # --- the training step: forward values are the sampler's, bit for bit
            lp = bitroll.torch.token_logprobs(engine, model, batch)
            self.assertTrue(lp.requires_grad)
            self.assertTrue(torch.equal(lp[mask], old[mask]), f"{tag}: token_logprobs != /samples/logprobs")
            self.assertTrue(np.array_equal(bits(lp[mask].detach().numpy()), bits(r.logprobs)))
            self.assertTrue(torch.equal(lp.detach()[~mask], torch.zeros_like(lp.detach()[~mask])))
            ratio = torch.exp(lp - old)
            self.assertTrue(bool((ratio[mask] == 1.0).all()), f"{tag}: importance ratio is not exactly 1.0")
            kl = ((old - lp)[mask]).mean()
            self.assertEqual(kl.item(), 0.0)
            k3 = ((ratio - 1) - torch.log(ratio))[mask].mean()  # the k3 estimator
            self.assertEqual(k3.item(), 0.0)

            gen = torch.Generator().manual_seed(seed)
            adv = torch.randn(r.n, 1, generator=gen)  # a per-sample advantage
            model.zero_grad()
            loss = ppo_loss(lp, old, mask, adv)
            loss.backward()
            g_bitroll = grads(model)
            total = torch.sqrt(sum((g.double() ** 2).sum() for g in g_bitroll.values()))
            self.assertTrue(all(torch.isfinite(g).all() for g in g_bitroll.values()), f"{tag}: non-finite grads")
            self.assertGreater(total.item(), 0.0, f"{tag}: all-zero gradients")

            # --- the negative control: the PyTorch model's own log-probs of the same batch (same weights)
            model.zero_grad()
            mlp = bitroll.models.token_logprobs_torch(model, batch["input_ids"], batch["temperature"])
            delta = (mlp - old)[mask].detach()
            control = {
                "samples": r.n, "tokens": int(mask.sum()),
                "control_tokens_differ": int((mlp[mask].detach() != old[mask]).sum()),
                "control_max_abs_delta": float(delta.abs().max()),
                "control_kl_estimate": float((old[mask] - mlp[mask].detach()).double().mean()),
                "bitroll_tokens_differ": int((lp[mask].detach() != old[mask]).sum()),
                "bitroll_kl_estimate": float(kl),
            }
            # ... and its gradient is token_logprobs' (same loss on the PyTorch log-probs): equal within 1e-5
            ppo_loss(torch.where(mask, mlp, torch.zeros(())), old, mask, adv).backward()
            g_torch = grads(model)
            num = torch.sqrt(sum(((g_bitroll[k].double() - g_torch[k].double()) ** 2).sum() for k in g_torch))
            control["grad_rel_diff_vs_pytorch"] = float(num / total)
            self.assertLess(control["grad_rel_diff_vs_pytorch"], 1e-5, tag)
            print(f"\n{tag}: {control['tokens']} tokens; bitroll: {control['bitroll_tokens_differ']} differ, KL "
                  f"{control['bitroll_kl_estimate']}; PyTorch-only control: {control['control_tokens_differ']} "
                  f"differ, max |delta| {control['control_max_abs_delta']:.3e}, KL "
                  f"{control['control_kl_estimate']:.3e}; grad rel diff {control['grad_rel_diff_vs_pytorch']:.2e}",
                  flush=True)

            # --- the optimizer step on token_logprobs' gradient
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.grad = g_bitroll[k].clone()
            before = {k: p.detach().clone() for k, p in model.named_parameters()}
            torch.optim.Adam(model.parameters(), lr=1e-3).step()
            self.assertTrue(any(not torch.equal(before[k], p) for k, p in model.named_parameters()))

            # --- the new weights into the engine: new fingerprint and version; generate == score == token_logprobs
            fp1, v1 = engine.load_state_dict(model.state_dict())
            self.assertNotEqual(fp1, fp0, tag)
            self.assertEqual(v1, 1)
            self.assertEqual((engine.fingerprint, engine.weight_version), (fp1, 1))
            g = engine.generate(prompts, n=n, temperature=temperature, top_p=top_p, seed=seed + 100,
                                max_new_tokens=MAX_NEW, stop_ids=[STOP_ID])
            self.assertEqual((g.weight_version, g.model_fingerprint), (1, fp1))
            s = engine.score(g)
            self.assertTrue(np.array_equal(bits(s.logprobs), bits(g.logprobs)), f"{tag}: generate != score")
            self.assertTrue(np.array_equal(s.digests, g.digests), f"{tag}: digests")
            batch2 = bitroll.to_torch(g)
            mask2 = batch2["loss_mask"].bool()
            lp2 = bitroll.torch.token_logprobs(engine, model, batch2)
            self.assertTrue(torch.equal(lp2[mask2], batch2["old_logprobs"][mask2]), f"{tag}: after the step")
            self.assertTrue(bool((batch2["weight_version"] == 1).all()))

            # --- the same weights saved as a checkpoint and run by the CLI: same fingerprint, same bits
            saved = os.path.join(tmp, f"step1-{seed}")
            os.makedirs(saved)
            shutil.copy(os.path.join(model_dir, "config.json"), saved)
            bitroll.safetensors.save_file(model.state_dict(), os.path.join(saved, "model.safetensors"),
                                          dtypes=model.checkpoint_dtypes)
            r2 = mpi_generate(saved, os.path.join(tmp, "prompts.jsonl"), os.path.join(tmp, f"r2-{seed}.h5"), n,
                              temperature, top_p, seed + 100, weight_version=1)
            self.assertEqual(r2.model_fingerprint, fp1, f"{tag}: saved checkpoint's fingerprint")
            self.assertEqual(r2.weight_version, 1)
            for k in ("sample_id", "completion_offsets", "completion_tokens", "digests", "finish_reason"):
                self.assertTrue(np.array_equal(getattr(r2, k), getattr(g, k)), f"{tag}: CLI vs engine: {k}")
            self.assertTrue(np.array_equal(bits(r2.logprobs), bits(g.logprobs)), f"{tag}: CLI vs engine")
            control["step1_fingerprint"] = fp1
            control["step1_tokens_equal"] = int(mask2.sum())
        return control

    def test_stories260K(self):
        self.run_model("stories260K")

    def test_tiny_qwen3(self):
        self.run_model("tiny-qwen3")

    def test_tiny_llama(self):
        self.run_model("tiny-llama")

    def test_tiny_gpt2(self):
        self.run_model("tiny-gpt2")

    def test_gradient_finite_differences(self):
        """token_logprobs' gradient (the PyTorch model's) against central finite differences of the PyTorch model's
        log-probs computed in float64, for the two largest-gradient entries of five tensors of a tiny model (float64
        parameters; token_logprobs_torch's float32 log-softmax bounds the agreement)."""
        model_dir = MODELS["tiny-llama"][0]
        model = bitroll.models.from_pretrained(model_dir, dtype=torch.float64)
        rng = np.random.default_rng(5)
        prompts = [[1] + rng.integers(3, 1024, size=5).tolist(), [1] + rng.integers(3, 1024, size=3).tolist()]
        with bitroll.Engine(model=model_dir) as engine:
            g = engine.generate(prompts, n=2, temperature=1.0, seed=9, max_new_tokens=8, stop_ids=[])
            batch = bitroll.to_torch(g)
            mask = batch["loss_mask"].bool()
            w = torch.randn(batch["input_ids"].shape, generator=torch.Generator().manual_seed(1)) * mask
            lp = bitroll.torch.token_logprobs(engine, model, batch)
            self.assertTrue(torch.equal(lp[mask], batch["old_logprobs"][mask]))
            (lp * w).sum().backward()
        ids = batch["input_ids"]

        def objective():  # sum(w * log p) with float64 logits (CausalLM.logits: the parameters' dtype)
            with torch.no_grad():
                x = model.logits(ids)[:, :-1].double()
                lp64 = x.gather(-1, ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(x, dim=-1)
                return float((lp64 * w[:, 1:].double()).sum())

        params = dict(model.named_parameters())
        checked = 0
        for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                     "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
                     "model.norm.weight"):
            p = params[name]
            flat = p.detach().view(-1)
            grad = p.grad.view(-1)
            for i in torch.topk(grad.abs(), 2).indices.tolist():
                eps = 1e-5
                x0 = float(flat[i])
                with torch.no_grad():
                    flat[i] = x0 + eps
                    up = objective()
                    flat[i] = x0 - eps
                    down = objective()
                    flat[i] = x0
                fd = (up - down) / (2 * eps)
                self.assertLess(abs(fd - float(grad[i])), 1e-5 * abs(fd) + 1e-7,
                                f"{name}[{i}]: finite difference {fd}, token_logprobs' gradient {float(grad[i])}")
                checked += 1
        self.assertEqual(checked, 10)


class TestCuda(unittest.TestCase):
    """The same on a CUDA engine with CUDA tensors (the GPU machine; skipped without a CUDA device in torch or in
    libbitroll): token_logprobs writes into a tensor on the GPU, equal to generate's log-probs; load_state_dict
    hands CUDA tensors over by device pointer and commits the same weights (fingerprint) as host tensors."""

    @classmethod
    def setUpClass(cls):
        if not torch.cuda.is_available():
            raise unittest.SkipTest("torch sees no CUDA device")
        try:
            bitroll.Engine(model=MODELS["tiny-qwen3"][0], device="cuda:0").close()
        except bitroll.BitrollError as e:
            raise unittest.SkipTest(f"no CUDA engine: {e}")

    def test_cuda_training_step(self):
        dev = torch.device("cuda:0")
        for name in ("tiny-qwen3", "tiny-gpt2"):
            model_dir, n = MODELS[name]
            rng = np.random.default_rng(3)
            prompts = [[1] + rng.integers(3, 1024, size=k).tolist() for k in (4, 9)]
            with bitroll.Engine(model=model_dir, device="cuda:0") as engine, bitroll.Engine(model=model_dir) as cpu:
                g = engine.generate(prompts, n=n, temperature=1.0, top_p=0.9, seed=4, max_new_tokens=MAX_NEW,
                                    stop_ids=[STOP_ID])
                s = engine.score(g)
                self.assertTrue(np.array_equal(bits(s.logprobs), bits(g.logprobs)), name)
                batch = bitroll.to_torch(g, device=dev)
                mask = batch["loss_mask"].bool()
                model = bitroll.models.from_pretrained(model_dir).to(dev)
                lp = bitroll.torch.token_logprobs(engine, model, batch)
                self.assertEqual(lp.device, dev)
                self.assertTrue(torch.equal(lp[mask], batch["old_logprobs"][mask]), name)
                ppo_loss(lp, batch["old_logprobs"], mask, torch.ones(g.n, 1, device=dev)).backward()
                torch.optim.Adam(model.parameters(), lr=1e-3).step()
                sd = model.state_dict()
                fp_cuda, v = engine.load_state_dict(sd)
                fp_cpu, _ = cpu.load_state_dict({k: t.cpu() for k, t in sd.items()})
                self.assertEqual(fp_cuda, fp_cpu, f"{name}: CUDA tensors vs host tensors")
                bf = {k: t.to(torch.bfloat16) for k, t in sd.items()}
                self.assertEqual(engine.load_state_dict(bf)[0], cpu.load_state_dict({k: t.cpu() for k, t in
                                                                                    bf.items()})[0])
                g2 = engine.generate(prompts, n=n, temperature=1.0, seed=5, max_new_tokens=MAX_NEW)
                batch2 = bitroll.to_torch(g2, device=dev)
                mask2 = batch2["loss_mask"].bool()
                lp2 = bitroll.torch.token_logprobs(engine, model, batch2)
                self.assertTrue(torch.equal(lp2[mask2], batch2["old_logprobs"][mask2]), name)


if __name__ == "__main__":
    unittest.main()
