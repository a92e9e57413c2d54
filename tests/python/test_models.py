"""bitroll.models and bitroll.safetensors: PyTorch models of the engine's families vs HF transformers' logits.

    PYTHONPATH=python /usr/bin/python3 -m unittest discover -s tests/python -p 'test_models.py'
    PYTHONPATH=python /usr/bin/python3 tests/python/test_models.py

Needs torch and numpy only (no transformers, no safetensors package, no libbitroll).
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(ROOT, "python"))  # after PYTHONPATH, so an explicit one wins

from bitroll import models  # noqa: E402
from bitroll import safetensors as st  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data")
STORIES = os.path.join(ROOT, "configs", "models", "stories260K")
FAMILIES = ("tiny-qwen3", "tiny-llama", "tiny-gpt2")
LIMIT = 1e-4


def model_dir(family, variant):
    return os.path.join(DATA, "models", family, variant)


def row_rel_err(got, ref):
    """max over rows of max_i |got - ref| / max_i |ref| (rows = all but the last axis)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float((np.abs(got - ref).max(-1) / np.abs(ref).max(-1)).max())


def copy_config(src_dir, dst_dir, **changes):
    with open(os.path.join(src_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(os.path.join(dst_dir, "config.json"), "w") as f:
        json.dump(cfg, f)


class TestReferenceLogits(unittest.TestCase):
    """Logits of tests/data/models/tiny-*/{f32,bf16} vs HF transformers (float64) within 1e-4 row-relative."""

    def check(self, family, variant):
        ref = st.load_file(os.path.join(DATA, "models", family, "reference.safetensors"))
        ids = torch.from_numpy(ref["input_ids"]).long()
        want = ref[f"logits_{variant}_weights"]
        errs = {}
        for dtype in (torch.float32, torch.float64):
            model = models.from_pretrained(model_dir(family, variant), dtype=dtype)
            with torch.no_grad():
                got = model(ids) if dtype == torch.float32 else model.logits(ids)
            self.assertEqual(got.dtype, torch.float32 if dtype == torch.float32 else torch.float64)
            self.assertEqual(tuple(got.shape), want.shape)
            errs[dtype] = row_rel_err(got.numpy(), want)
        print(f"\n  {family}/{variant} vs HF float64: max row-relative error {errs[torch.float32]:.3g} (float32), "
              f"{errs[torch.float64]:.3g} (float64); limit {LIMIT}", end="")
        self.assertLess(errs[torch.float32], LIMIT)
        self.assertLess(errs[torch.float64], LIMIT)

        if variant == "f32":  # HF float64's greedy continuation of row 0's first 8 ids
            g = ref["greedy_f64_from_row0_prefix8"][0]
            seq = [int(t) for t in g[:8]]
            with torch.no_grad():
                while len(seq) < len(g):
                    seq.append(int(model.logits(torch.tensor([seq]))[0, -1].argmax()))
            self.assertEqual(seq, [int(t) for t in g])

    def test_qwen3_f32(self):
        self.check("tiny-qwen3", "f32")

    def test_qwen3_bf16(self):
        self.check("tiny-qwen3", "bf16")

    def test_llama_f32(self):
        self.check("tiny-llama", "f32")

    def test_llama_bf16(self):
        self.check("tiny-llama", "bf16")

    def test_gpt2_f32(self):
        self.check("tiny-gpt2", "f32")

    def test_gpt2_bf16(self):
        self.check("tiny-gpt2", "bf16")

    def test_right_padding_harmless(self):
        model = models.from_pretrained(model_dir("tiny-qwen3", "f32"))
        ids = torch.from_numpy(st.load_file(os.path.join(DATA, "models", "tiny-qwen3", "reference.safetensors"))
                               ["input_ids"]).long()
        with torch.no_grad():
            full = model(ids)
            short = model(ids[:, :40])
        torch.testing.assert_close(short, full[:, :40], rtol=1e-5, atol=1e-5)


class TestStories260K(unittest.TestCase):
    """The bundled stories260K (llama) vs llama2.c's run.c."""

    @classmethod
    def setUpClass(cls):
        cls.model = models.from_pretrained(STORIES)

    def test_logits_pos0(self):
        with open(os.path.join(DATA, "stories260K", "logits_pos0_first8.txt")) as f:
            want = [float(x) for x in f.read().split()]
        self.assertEqual(self.model.config.bos_id, 1)
        with torch.no_grad():
            got = self.model(torch.tensor([[1]]))[0, 0, :8].double().numpy()
        err = max(abs(g - w) / max(1.0, abs(w)) for g, w in zip(got, want))
        print(f"\n  stories260K logits[0..7] at position 0 vs llama2.c: max relative error {err:.3g}", end="")
        self.assertLessEqual(err, LIMIT)

    def test_greedy_from_bos(self):
        with open(os.path.join(DATA, "stories260K", "greedy_from_bos.tokens")) as f:
            want = [int(x) for x in f.read().split()][:64]
        seq = [1]
        with torch.no_grad():
            for _ in range(64):
                seq.append(int(self.model(torch.tensor([seq]))[0, -1].argmax()))
        self.assertEqual(seq[1:], want)


class TestNamesAndLayout(unittest.TestCase):
    """state_dict carries the checkpoint's names, shapes and layouts, so it can go to the engine's weight update."""

    def test_names_equal_checkpoint(self):
        for family in FAMILIES:
            for variant in ("f32", "bf16"):
                d = model_dir(family, variant)
                model = models.from_pretrained(d)
                ck = st.checkpoint_tensors(d)
                sd = model.state_dict()
                self.assertEqual(sorted(sd), sorted(t.name for t in ck), f"{family}/{variant}")
                self.assertEqual(model.checkpoint_names(), [t.name for t in ck])
                for t in ck:
                    self.assertEqual(tuple(sd[t.name].shape), t.shape, t.name)
                    self.assertEqual(model.checkpoint_dtypes[t.name], t.dtype)
                    self.assertEqual(sd[t.name].dtype, torch.float32)

    def test_layouts(self):
        gpt2 = models.from_pretrained(model_dir("tiny-gpt2", "f32"))
        sd = gpt2.state_dict()
        self.assertEqual(tuple(sd["transformer.h.0.attn.c_attn.weight"].shape), (128, 384))  # Conv1D (in, out)
        self.assertNotIn("lm_head.weight", sd)  # tied
        self.assertNotIn("lm_head.weight", models.from_pretrained(model_dir("tiny-llama", "f32")).state_dict())
        qwen3 = models.from_pretrained(model_dir("tiny-qwen3", "f32"))
        self.assertIn("lm_head.weight", qwen3.state_dict())
        self.assertEqual(tuple(qwen3.state_dict()["model.layers.0.self_attn.q_norm.weight"].shape), (32,))
        c = qwen3.config
        self.assertEqual((c.model_type, c.vocab_size, c.hidden, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim,
                          c.rope_theta, c.tie_embeddings), ("qwen3", 1024, 128, 4, 4, 2, 32, 1e6, False))

    def test_values_exact(self):
        """BF16 checkpoints are widened exactly; a float32 state_dict saved in the checkpoint's dtypes is the
        checkpoint's bytes."""
        for variant in ("f32", "bf16"):
            d = model_dir("tiny-llama", variant)
            model = models.from_pretrained(d)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.safetensors")
                sd = model.state_dict()
                st.save_file({n: sd[n] for n in model.checkpoint_names()}, path, dtypes=model.checkpoint_dtypes)
                a, b = st.load_file(path), st.load_file(os.path.join(d, "model.safetensors"))
                self.assertEqual(list(a), list(b))
                for name in a:
                    np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    def test_sharded_and_bare_gpt2(self):
        """A sharded copy of tiny-llama and a GPT-2 without the 'transformer.' prefix give the same logits."""
        ids = torch.randint(0, 1024, (2, 17), generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory() as tmp:
            src = model_dir("tiny-llama", "f32")
            w = st.load_file(os.path.join(src, "model.safetensors"))
            names = list(w)
            shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
            for fn, ns in shards.items():
                st.save_file({n: w[n] for n in ns}, os.path.join(tmp, fn))
            with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {}, "weight_map": {n: fn for fn, ns in shards.items() for n in ns}}, f)
            copy_config(src, tmp)
            sharded = models.from_pretrained(tmp)
            self.assertEqual(sharded.checkpoint_names(), names)
            with torch.no_grad():
                torch.testing.assert_close(sharded(ids), models.from_pretrained(src)(ids), rtol=0, atol=0)

        with tempfile.TemporaryDirectory() as tmp:
            src = model_dir("tiny-gpt2", "f32")
            w = st.load_file(os.path.join(src, "model.safetensors"))
            st.save_file({n[len("transformer."):]: a for n, a in w.items()}, os.path.join(tmp, "model.safetensors"))
            copy_config(src, tmp)
            bare = models.from_pretrained(tmp)
            self.assertIn("h.0.attn.c_attn.weight", bare.state_dict())
            self.assertEqual(bare.checkpoint_names(), [n[len("transformer."):] for n in w])
            with torch.no_grad():
                torch.testing.assert_close(bare(ids), models.from_pretrained(src)(ids), rtol=0, atol=0)

    def test_qwen2_biases(self):
        """Qwen2 = Llama + q/k/v biases: zero biases give Llama's logits, others change them."""
        src = model_dir("tiny-llama", "f32")
        ids = torch.randint(0, 1024, (2, 9), generator=torch.Generator().manual_seed(1))
        w = st.load_file(os.path.join(src, "model.safetensors"))
        cfg = models.from_pretrained(src).config
        for l in range(cfg.n_layers):
            for p, n in (("q", cfg.n_heads), ("k", cfg.n_kv_heads), ("v", cfg.n_kv_heads)):
                w[f"model.layers.{l}.self_attn.{p}_proj.bias"] = np.zeros(n * cfg.head_dim, np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            st.save_file(w, os.path.join(tmp, "model.safetensors"))
            copy_config(src, tmp, model_type="qwen2", attention_bias=True)
            qwen2 = models.from_pretrained(tmp)
            self.assertIn("model.layers.0.self_attn.k_proj.bias", qwen2.state_dict())
            with torch.no_grad():
                torch.testing.assert_close(qwen2(ids), models.from_pretrained(src)(ids), rtol=0, atol=0)
                qwen2.model.layers[0].self_attn.v_proj.bias.fill_(0.5)
                self.assertGreater(float((qwen2(ids) - models.from_pretrained(src)(ids)).abs().max()), 1e-3)


class TestLogprobsAndGradients(unittest.TestCase):

    def test_token_logprobs(self):
        model = models.from_pretrained(model_dir("tiny-qwen3", "f32"))
        ids = torch.randint(0, 1024, (3, 12), generator=torch.Generator().manual_seed(2))
        T = torch.tensor([1.0, 0.7, 0.0])
        with torch.no_grad():
            lp = models.token_logprobs_torch(model, ids, T)
            logits = model(ids)
        self.assertEqual((lp.dtype, tuple(lp.shape)), (torch.float32, (3, 12)))
        self.assertTrue(torch.all(lp[:, 0] == 0))
        self.assertTrue(torch.all(lp[:, 1:] < 0))
        for b, t in enumerate((1.0, 0.7, 1.0)):  # 0 = greedy: T = 1
            want = torch.log_softmax(logits[b, :-1] / t, -1).gather(-1, ids[b, 1:, None])[:, 0]
            torch.testing.assert_close(lp[b, 1:], want, rtol=1e-6, atol=1e-6)
        with self.assertRaises(ValueError):
            models.token_logprobs_torch(model, ids, torch.ones(2))

    def test_gradients_flow(self):
        for family in FAMILIES:
            model = models.from_pretrained(model_dir(family, "bf16"))
            ids = torch.randint(0, 1024, (2, 16), generator=torch.Generator().manual_seed(3))
            lp = models.token_logprobs_torch(model, ids, torch.tensor([1.0, 0.5]))
            (-lp[:, 1:].mean()).backward()
            for name, p in model.named_parameters():
                self.assertIsNotNone(p.grad, name)
                self.assertTrue(bool(torch.isfinite(p.grad).all()), f"{family} {name}")
                self.assertGreater(float(p.grad.abs().sum()), 0.0, f"{family} {name}")

    def test_bf16_parameters(self):
        model = models.from_pretrained(model_dir("tiny-llama", "bf16"), dtype=torch.bfloat16)
        ids = torch.randint(0, 1024, (1, 8), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            out = model(ids)
            ref = models.from_pretrained(model_dir("tiny-llama", "bf16"))(ids)
        self.assertEqual(out.dtype, torch.float32)
        self.assertLess(row_rel_err(out.numpy(), ref.numpy()), 0.05)


class TestConfig(unittest.TestCase):
    BASE = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 32}

    def parse(self, **kw):
        return models.parse_config(dict(self.BASE, **kw), "x/config.json")

    def test_rope_theta(self):
        self.assertEqual(self.parse().rope_theta, 10000.0)
        self.assertEqual(self.parse(rope_theta=5e5).rope_theta, 5e5)
        self.assertEqual(self.parse(rope_parameters={"rope_theta": 1e6, "rope_type": "default"}).rope_theta, 1e6)
        with self.assertRaisesRegex(ValueError, "disagrees"):
            self.parse(rope_theta=1.0, rope_parameters={"rope_theta": 2.0})
        with self.assertRaisesRegex(ValueError, "x/config.json.*rope_scaling"):
            self.parse(rope_scaling={"rope_type": "linear", "factor": 2.0})

    def test_refusals(self):
        c = self.parse(num_key_value_heads=2, head_dim=8)
        self.assertEqual((c.n_kv_heads, c.head_dim, c.tie_embeddings), (2, 8, False))
        for kw, what in ((dict(model_type="mistral"), "model_type"), (dict(hidden_act="gelu"), "hidden_act"),
                         (dict(use_sliding_window=True), "use_sliding_window"), (dict(mlp_bias=True), "mlp_bias"),
                         (dict(attention_bias=True), "attention_bias"), (dict(num_key_value_heads=3), "divisible"),
                         (dict(vocab_size=0), "vocab_size"), (dict(eos_token_id=100), "eos_token_id")):
            with self.assertRaisesRegex(ValueError, what, msg=str(kw)):
                self.parse(**kw)
        self.assertTrue(self.parse(model_type="qwen2", attention_bias=True).qkv_bias)
        g = models.parse_config({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 32,
                                 "vocab_size": 100, "n_inner": None})
        self.assertEqual((g.ffn_dim, g.norm_eps, g.tie_embeddings, g.qkv_bias), (256, 1e-5, True, True))


class TestSafetensors(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write_raw(self, header, data=b"", name="x.safetensors"):
        path = os.path.join(self.tmp, name)
        h = json.dumps(header).encode()
        with open(path, "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h + data)
        return path

    def test_roundtrip(self):
        a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
        path = os.path.join(self.tmp, "a.safetensors")
        st.save_file({"f": a, "h": a.astype(np.float16), "b": a, "i": np.arange(5, dtype=np.int32),
                      "e": np.zeros((0, 3), np.float32)}, path, dtypes={"b": "BF16"}, metadata={"format": "pt"})
        infos, meta = st.read_header(path)
        self.assertEqual(meta, {"format": "pt"})
        self.assertEqual({t.name: t.dtype for t in infos}, {"f": "F32", "h": "F16", "b": "BF16", "i": "I32", "e": "F32"})
        r = st.load_file(path)
        np.testing.assert_array_equal(r["f"], a)
        np.testing.assert_array_equal(r["h"], a.astype(np.float16))
        np.testing.assert_allclose(r["b"], a, rtol=2 ** -8)
        self.assertEqual(r["b"].dtype, np.float32)
        self.assertEqual(r["e"].shape, (0, 3))
        # BF16 rounds to nearest even: 1 + 2^-8 is a tie (-> 1), 1 + 3 * 2^-8 rounds up to 1 + 2^-6
        st.save_file({"b": np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.0], np.float32)}, path, dtypes={"b": "BF16"})
        np.testing.assert_array_equal(st.load_file(path)["b"], [1.0, 1 + 2 ** -6, -2.0])
        t = torch.tensor([1.5, -3.0], dtype=torch.bfloat16)
        st.save_file({"t": t}, path, dtypes={"t": "BF16"})
        np.testing.assert_array_equal(st.load_file(path)["t"], [1.5, -3.0])

    def test_bad_files(self):
        ok = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
        self.assertEqual(list(st.load_file(self.write_raw(ok, b"\0" * 8))), ["w"])
        cases = [
            ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "'w'.*outside"),
            ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "'w'.*12"),
            ({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "'w'.*dtype"),
            ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "'w'.*shape"),
            ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "overlaps"),
        ]
        for header, data, pattern in cases:
            path = self.write_raw(header, data)
            with self.assertRaisesRegex(st.SafetensorsError, "x.safetensors.*" + pattern):
                st.load_file(path)
        path = os.path.join(self.tmp, "x.safetensors")
        with open(path, "wb") as f:
            h = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], ' \
                b'"data_offsets": [4, 8]}}'
            f.write(len(h).to_bytes(8, "little") + h + b"\0" * 8)
        with self.assertRaisesRegex(st.SafetensorsError, "x.safetensors.*'w' appears twice"):
            st.load_file(path)
        path = os.path.join(self.tmp, "short.safetensors")
        with open(path, "wb") as f:
            f.write(b"\x10\0\0\0")
        with self.assertRaisesRegex(st.SafetensorsError, "short.safetensors.*too short"):
            st.read_header(path)
        with open(path, "wb") as f:
            f.write((1000).to_bytes(8, "little") + b"{}")
        with self.assertRaisesRegex(st.SafetensorsError, "short.safetensors.*header length"):
            st.read_header(path)

    def test_bad_index(self):
        st.save_file({"a": np.zeros(2, np.float32)}, os.path.join(self.tmp, "s1.safetensors"))
        st.save_file({"b": np.zeros(2, np.float32)}, os.path.join(self.tmp, "s2.safetensors"))
        st.save_file({"c": np.zeros(2, np.float32), "d": np.ones(1, np.float32)}, os.path.join(self.tmp, "s3.safetensors"))
        idx = os.path.join(self.tmp, "model.safetensors.index.json")
        for wm, pattern in (({"c": "s3.safetensors"}, "'d' in s3.safetensors is not listed"),
                            ({"a": "s2.safetensors", "b": "s2.safetensors"}, "'a'"),
                            ({"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"}, "'c'.*missing"),
                            ({"a": "../s1.safetensors"}, "shard file name")):
            with open(idx, "w") as f:
                json.dump({"weight_map": wm}, f)
            with self.assertRaisesRegex(st.SafetensorsError, "index.json.*(" + pattern + ")"):
                st.checkpoint_tensors(self.tmp)
        with open(idx, "w") as f:
            json.dump({"weight_map": {"b": "s2.safetensors", "a": "s1.safetensors"}}, f)
        w, dt = st.load_checkpoint(self.tmp)
        self.assertEqual((list(w), dt), (["b", "a"], {"a": "F32", "b": "F32"}))
        with self.assertRaisesRegex(st.SafetensorsError, "neither"):
            st.checkpoint_tensors(os.path.join(DATA, "stories260K"))


if __name__ == "__main__":
    unittest.main()
