"""Issue 14 on the CPU: examples/grpo/grpo.py, the on-policy GRPO loop with sampler/trainer KL exactly 0.

1. a 3-step run on stories260K with `mpirun -np 1` workers (--max-batch-tokens 256) and one with `-np 2`
   (--max-batch-tokens 37): every step's log record has KL exactly 0, max |delta| 0, the ratio exactly 1.0 and no
   token differing; the final weights' fingerprint (and every step's) is the same across the two runs;
2. the negative control: --off-policy (the trainer's own PyTorch log-probs) runs 2 steps and logs KL != 0 (or a
   token differing) in at least one step;
3. the verifier itself: one trainer log-prob moved by one ulp is refused, naming the sample id and token;
4. --help works; --plot writes a PNG when matplotlib is installed.

Run through tests/python/run.sh (BITROLL_LIB, BITROLL_BIN).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRPO = os.path.join(ROOT, "examples", "grpo", "grpo.py")
PY = sys.executable
FAST = ["--n", "4", "--max-new-tokens", "24", "--seed", "3", "--quiet"]


def grpo(*args, timeout=120):
    cmd = [PY, GRPO, *args]
    b = os.environ.get("BITROLL_BIN")
    if b and "--help" not in args:
        cmd += ["--bitroll", b]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class TestGrpo(unittest.TestCase):
    def check(self, p):
        self.assertEqual(p.returncode, 0, f"grpo.py failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")

    def test_help(self):
        p = grpo("--help")
        self.check(p)
        for opt in ("--off-policy", "--np", "--plot", "--max-batch-tokens", "--reward", "--workers", "--device",
                    "--init-random"):
            self.assertIn(opt, p.stdout)

    def test_on_policy_kl_zero_and_same_weights_for_any_np(self):
        with tempfile.TemporaryDirectory() as tmp:
            runs = {}
            for np_, mbt, workers in ((1, 256, "persistent"), (2, 37, "persistent"), (3, 64, "relaunch")):
                out = os.path.join(tmp, f"np{np_}")
                p = grpo("--steps", "3", "--np", str(np_), "--max-batch-tokens", str(mbt), "--workers", workers,
                         "--out-dir", out, *FAST)
                self.check(p)
                recs = read_log(os.path.join(out, "log.jsonl"))
                self.assertEqual([r["step"] for r in recs], [0, 1, 2])
                for r in recs:
                    tag = f"np {np_} step {r['step']}"
                    self.assertEqual(r["kl"], 0.0, tag)
                    self.assertEqual(r["kl_k3"], 0.0, tag)
                    self.assertEqual(r["max_abs_delta"], 0.0, tag)
                    self.assertEqual((r["ratio_min"], r["ratio_max"]), (1.0, 1.0), tag)
                    self.assertEqual(r["tokens_differ"], 0, tag)
                    self.assertGreater(r["tokens"], 0, tag)
                    self.assertEqual(r["workers"], workers, tag)
                    for phase in ("generate", "score", "backward", "push"):
                        self.assertIn(phase, r["seconds"])
                # the weights change every step
                fps = [r["fingerprint"] for r in recs] + [recs[-1]["fingerprint_after"]]
                self.assertEqual(len(set(fps)), len(fps), fps)
                with open(os.path.join(out, "final_fingerprint.txt")) as f:
                    final = f.read().strip()
                self.assertIn(f"final weights fingerprint: {final}", p.stdout)
                self.assertEqual(final, recs[-1]["fingerprint_after"])
                runs[np_] = (final, fps, [r["reward_mean"] for r in recs])
                print(f"\nnp {np_} max-batch-tokens {mbt}: final fingerprint {final}, rewards {runs[np_][2]}",
                      flush=True)
            self.assertEqual(runs[1], runs[2], "the final weights depend on the workers' -np / --max-batch-tokens")
            self.assertEqual(runs[1], runs[3], "persistent workers (weights by broadcast) and relaunched ones "
                                               "(checkpoint per step) end with different weights")

    def test_random_init_bf16_tokens_reward(self):
        """--init-random: a random BF16 Qwen3-shaped base checkpoint (the GPU run's path at a tiny shape), the
        synthetic token reward, weight updates in BF16 through the persistent workers: KL exactly 0 each step."""
        cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
               "intermediate_size": 64, "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
               "rope_theta": 10000, "hidden_act": "silu", "tie_word_embeddings": True, "attention_bias": False,
               "bos_token_id": 1, "eos_token_id": 2}
        with tempfile.TemporaryDirectory() as tmp:
            cpath = os.path.join(tmp, "tiny.json")
            with open(cpath, "w") as f:
                json.dump(cfg, f)
            out = os.path.join(tmp, "run")
            p = grpo("--init-random", cpath, "--reward", "tokens", "--steps", "3", "--np", "2", "--num-prompts", "3",
                     "--lr", "1e-2", "--out-dir", out, *FAST)
            self.check(p)
            recs = read_log(os.path.join(out, "log.jsonl"))
            self.assertEqual(len(recs), 3)
            for r in recs:
                self.assertEqual((r["kl"], r["max_abs_delta"], r["tokens_differ"]), (0.0, 0.0, 0), r["step"])
                self.assertEqual(r["samples"], 3 * 4)
            fps = [r["fingerprint"] for r in recs]
            self.assertEqual(len(set(fps)), 3, fps)
            from bitroll.safetensors import checkpoint_tensors
            dts = {t.dtype for t in checkpoint_tensors(os.path.join(out, "base"))}
            self.assertEqual(dts, {"BF16"})

    def test_off_policy_control(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = grpo("--steps", "2", "--off-policy", "--out-dir", tmp, *FAST)
            self.check(p)
            recs = read_log(os.path.join(tmp, "log.jsonl"))
            self.assertEqual(len(recs), 2)
            for r in recs:
                self.assertEqual(r["mode"], "off-policy")
            print("\noff-policy: " + "; ".join(f"step {r['step']}: KL {r['kl']:.3e}, max|delta| "
                                               f"{r['max_abs_delta']:.3e}, {r['tokens_differ']}/{r['tokens']} "
                                               f"tokens differ" for r in recs), flush=True)
            self.assertTrue(any(r["kl"] != 0.0 for r in recs), "the PyTorch-only KL is 0 at every step: the "
                                                              "negative control is not biting")
            self.assertTrue(any(r["tokens_differ"] > 0 for r in recs))

    def test_verifier_names_first_mismatch(self):
        import numpy as np
        import torch
        import bitroll
        sys.path.insert(0, os.path.dirname(GRPO))
        try:
            import grpo as G
        finally:
            sys.path.pop(0)
        model_dir = os.path.join(ROOT, "configs", "models", "stories260K")
        with bitroll.Engine(model=model_dir) as engine:
            g = engine.generate([[1, 300, 301], [1, 42]], n=2, temperature=1.0, seed=5, max_new_tokens=6,
                                stop_ids=[])
            batch = bitroll.to_torch(g)
            lp = bitroll.torch.token_logprobs(engine, None, batch)
            G.verify_on_policy(g, batch, lp, 0)  # exact: passes
            bad = lp.clone()
            b, j = 2, 3  # sample 2, completion token 3
            t = int(g.prompt_offsets[b + 1] - g.prompt_offsets[b]) + j
            bad[b, t] = float(np.nextafter(np.float32(bad[b, t].item()), np.float32(0)))
            with self.assertRaises(G.LoopError) as cm:
                G.verify_on_policy(g, batch, bad, 7)
            msg = str(cm.exception)
            self.assertIn(f"sample_id {int(g.sample_id[b])} completion token {j}", msg)
            self.assertIn("step 7", msg)

    def test_plot(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("no matplotlib (Debian: apt-get install python3-matplotlib)")
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "a.jsonl")
            with open(log, "w") as f:
                for s in range(3):
                    f.write(json.dumps({"step": s, "mode": "on-policy", "reward_mean": 0.1 * s, "reward_std": 0.1,
                                        "kl": 0.0, "max_abs_delta": 0.0}) + "\n")
            png = os.path.join(tmp, "p.png")
            self.check(grpo("--plot", png, "--plot-logs", log, log))
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
