"""The bitroll Python package (python/bitroll) against the C library and the golden files.

Run through tests/python/run.sh (PYTHONPATH=python, BITROLL_LIB=the build's libbitroll.so, Debian's python3).
numpy, h5py and torch are required: a missing one fails the test (CI installs them), it never skips.
"""

import ctypes
import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np
import torch

import bitroll
import bitroll.torch  # noqa: F401  (the submodule; its `import torch` must be PyTorch's)
from bitroll import _lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
STORIES = os.path.join(ROOT, "configs", "models", "stories260K")
QWEN3 = os.path.join(ROOT, "tests", "data", "models", "tiny-qwen3", "bf16")
GOLDEN_MODELS = {"stories": STORIES, "qwen3": QWEN3}
GOLDEN_NAMES = ("stories-t0", "stories-t1", "qwen3-t0", "qwen3-t1")


def golden(name, kind="rollouts"):
    return os.path.join(GOLDEN, f"{name}.{kind}.h5")


def bits(a):
    """The bit patterns of a float32 array (array_equal on them is bitwise equality, -0.0 and NaN included)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def read_safetensors(path):
    """name -> torch tensor of a .safetensors file (F32 and BF16; a test's own reader, independent of bitroll)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        raw = np.frombuffer(blob, dtype=np.uint8, count=b - a, offset=8 + n + a).copy()
        if h["dtype"] == "F32":
            t = torch.from_numpy(raw.view(np.float32).copy())
        elif h["dtype"] == "BF16":
            t = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
        else:
            raise AssertionError(f"{path}: {name}: dtype {h['dtype']}")
        out[name] = t.reshape(h["shape"])
    return out


class TestLibrary(unittest.TestCase):
    def test_loaded_library_is_bitroll_lib(self):
        env = os.environ.get("BITROLL_LIB")
        self.assertTrue(env, "run through tests/python/run.sh, which sets BITROLL_LIB")
        self.assertEqual(os.path.realpath(_lib.library_path()), os.path.realpath(env))
        self.assertEqual(_lib.get().bitroll_api_version(), 1)
        self.assertRegex(bitroll.library_version(), r"^\d+\.\d+\.\d+")
        self.assertIs(bitroll.torch.torch, torch, "bitroll.torch must import the real PyTorch")

    def test_library_lookup_order(self):
        """Without BITROLL_LIB: an installed copy (PREFIX/lib/python3/dist-packages/bitroll -> PREFIX/lib), else the
        build tree (<repo>/build*/libbitroll.so)."""
        env = {k: v for k, v in os.environ.items() if k not in ("BITROLL_LIB", "PYTHONPATH")}
        code = "import bitroll._lib as L; print(L.library_path())"
        with tempfile.TemporaryDirectory() as d:
            site = os.path.join(d, "lib", "python3", "dist-packages")
            shutil.copytree(os.path.join(ROOT, "python", "bitroll"), os.path.join(site, "bitroll"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(os.environ["BITROLL_LIB"], os.path.join(d, "lib", "libbitroll.so"))
            out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": site}, check=True,
                                 capture_output=True, text=True).stdout.strip()
            self.assertEqual(out, os.path.join(d, "lib", "libbitroll.so"))
        r = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": os.path.join(ROOT, "python")},
                           capture_output=True, text=True)
        if glob.glob(os.path.join(ROOT, "build*", "libbitroll.so")):  # a build tree inside the repository
            self.assertEqual(r.returncode, 0, r.stderr)
            out = r.stdout.strip()
            self.assertEqual(os.path.dirname(os.path.dirname(out)), ROOT)
            self.assertTrue(os.path.basename(os.path.dirname(out)).startswith("build"), out)
        else:  # built elsewhere (cmake -B /outside): not found, and the message says how to point at it
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("libbitroll.so not found (set BITROLL_LIB", r.stderr)
        r = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": os.path.join(ROOT, "python"),
                                                             "BITROLL_LIB": "/nonexistent/libbitroll.so"},
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("BITROLL_LIB is set but names no file", r.stderr)

    def test_every_header_function_declared(self):
        with open(os.path.join(ROOT, "include", "bitroll", "bitroll.h")) as f:
            header = f.read()
        header = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
        declared = set(re.findall(r"\b(bitroll_\w+)\s*\(", header))
        self.assertEqual(declared, set(_lib.FUNCTIONS), "bitroll.h's functions vs bitroll/_lib.py's FUNCTIONS")

    def test_struct_layout_equals_the_compilers(self):
        """Every struct of bitroll.h: sizeof and every field's offsetof, as the C compiler lays them out, equal the
        ctypes mirrors' (field names and order too)."""
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        self.assertTrue(cc, "a C compiler (cc) is needed to compare the struct layouts")
        lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <bitroll/bitroll.h>", "int main(void) {"]
        for cname, cls in _lib.STRUCTS.items():
            lines.append(f'printf("{cname} sizeof %zu\\n", sizeof({cname}));')
            for field, _ in cls._fields_:
                lines.append(f'printf("{cname} {field} %zu\\n", offsetof({cname}, {field}));')
        lines += ["return 0;", "}"]
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "layout.c")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            exe = os.path.join(d, "layout")
            subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(ROOT, "include"), src, "-o", exe],
                           check=True)
            out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        c = {}
        for line in out.splitlines():
            s, f, v = line.split()
            c[(s, f)] = int(v)
        for cname, cls in _lib.STRUCTS.items():
            self.assertEqual(c[(cname, "sizeof")], ctypes.sizeof(cls), cname)
            for field, _ in cls._fields_:
                self.assertEqual(c[(cname, field)], getattr(cls, field).offset, f"{cname}.{field}")
        # the one size the library itself reports
        o = _lib.EngineOpts()
        _lib.get().bitroll_engine_opts_init(o)
        self.assertEqual(o.struct_size, c[("bitroll_engine_opts", "sizeof")])


class TestFiles(unittest.TestCase):
    def test_read_rollouts_equals_h5py(self):
        names = {"logits_digest": "digests"}
        for name in GOLDEN_NAMES:
            r = bitroll.read_rollouts(golden(name))
            with h5py.File(golden(name), "r") as f:
                g = f["samples"]
                for ds in g:
                    ref = g[ds].asstr()[...] if g[ds].dtype.kind == "O" else g[ds][...]
                    got = getattr(r, names.get(ds, ds))
                    self.assertEqual(got.dtype, ref.dtype if ref.dtype.kind != "O" else object, f"{name} {ds}")
                    self.assertTrue(np.array_equal(got, ref), f"{name}: /samples/{ds}")
                self.assertEqual(r.model_fingerprint, f.attrs["model_fingerprint"])
                self.assertEqual(r.kernel_mode, f.attrs["kernel_mode"])
                self.assertEqual(r.weight_version, int(f.attrs.get("weight_version", 0)))
                self.assertEqual(r.n, g["sample_id"].shape[0])
                po, co = g["prompt_offsets"][...], g["completion_offsets"][...]
                for i in range(r.n):
                    self.assertTrue(np.array_equal(r.prompt(i), g["prompt_tokens"][po[i]:po[i + 1]]))
                    self.assertTrue(np.array_equal(r.completion(i), g["completion_tokens"][co[i]:co[i + 1]]))
                    self.assertTrue(np.array_equal(bits(r.completion_logprobs(i)),
                                                   bits(g["logprobs"][co[i]:co[i + 1]])))
                    s = r[i]
                    self.assertEqual(s.sample_id, g["sample_id"][i])
                    self.assertTrue(np.array_equal(s.completion, r.completion(i)))
            s = bitroll.read_scores(golden(name, "scores"))
            with h5py.File(golden(name, "scores"), "r") as f:
                for ds in f["scores"]:
                    self.assertTrue(np.array_equal(getattr(s, names.get(ds, ds)), f["scores"][ds][...]), ds)
                self.assertEqual(s.rollouts_fingerprint, f.attrs["rollouts_fingerprint"])

    def test_read_errors(self):
        with self.assertRaises(bitroll.BitrollError) as cm:
            bitroll.read_rollouts(golden("stories-t0", "scores"))
        self.assertEqual(cm.exception.status, "BITROLL_EFORMAT")
        self.assertIn("bitroll-scores", cm.exception.message)
        with self.assertRaises(bitroll.BitrollError) as cm:
            bitroll.read_scores(os.path.join(ROOT, "README.md"))
        self.assertEqual(cm.exception.status, "BITROLL_EIO")

    def test_to_torch_alignment_by_hand(self):
        arrays = {
            "sample_id": np.array([4, 9], np.int64), "prompt_index": np.array([2, 3], np.int64),
            "sample_index": np.array([0, 1], np.int32),
            "prompt_offsets": np.array([0, 3, 4], np.int64), "prompt_tokens": np.array([5, 6, 7, 1], np.int32),
            "completion_offsets": np.array([0, 2, 5], np.int64),
            "completion_tokens": np.array([8, 9, 2, 3, 4], np.int32),
            "logprobs": np.array([-0.5, -1.5, -2.5, -3.5, -4.5], np.float32),
            "digests": np.arange(5, dtype=np.uint64), "finish_reason": np.array([0, 1], np.int8),
            "temperature": np.array([0.0, 1.0], np.float32), "top_p": np.ones(2, np.float32),
            "top_k": np.zeros(2, np.int32), "seed": np.array([7, 7], np.uint64)}
        r = bitroll.Rollouts(arrays, weight_version=3)
        b = bitroll.to_torch(r, pad_id=-1)
        # sample 0: prompt 5 6 7, completion 8 9 -> length 5; sample 1: prompt 1, completion 2 3 4 -> length 4
        self.assertTrue(torch.equal(b["input_ids"], torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, 4, -1]])))
        self.assertTrue(torch.equal(b["attention_mask"], torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])))
        self.assertTrue(torch.equal(b["loss_mask"], torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 0]])))
        # old_logprobs[b, t] is the log-prob of input_ids[b, t]
        self.assertTrue(torch.equal(b["old_logprobs"], torch.tensor([[0, 0, 0, -0.5, -1.5],
                                                                     [0, -2.5, -3.5, -4.5, 0]])))
        for k, v in (("sample_id", [4, 9]), ("prompt_index", [2, 3]), ("finish_reason", [0, 1]),
                     ("weight_version", [3, 3]), ("prompt_length", [3, 1]), ("completion_length", [2, 3])):
            self.assertTrue(torch.equal(b[k], torch.tensor(v)), k)
            self.assertEqual(b[k].dtype, torch.int64, k)
        self.assertTrue(torch.equal(b["temperature"], torch.tensor([0.0, 1.0])))
        self.assertEqual(b["old_logprobs"].dtype, torch.float32)
        # the CSR arrays come back from the padded batch
        c = bitroll.engine.batch_to_csr(b)
        for k in ("prompt_offsets", "prompt_tokens", "completion_offsets", "completion_tokens"):
            self.assertTrue(np.array_equal(c[k], arrays[k]), k)

    def test_to_torch_of_golden_files(self):
        for name in GOLDEN_NAMES:
            r = bitroll.read_rollouts(golden(name))
            b = bitroll.to_torch(golden(name))
            mask = b["loss_mask"].bool()
            self.assertTrue(np.array_equal(bits(b["old_logprobs"][mask].numpy()), bits(r.logprobs)))
            self.assertTrue(np.array_equal(b["input_ids"][mask].numpy(), r.completion_tokens))
            self.assertEqual(int(b["attention_mask"].sum()), r.prompt_offsets[-1] + r.completion_offsets[-1])


class TestEngine(unittest.TestCase):
    def test_score_reproduces_golden_files(self):
        for name in GOLDEN_NAMES:
            r = bitroll.read_rollouts(golden(name))
            s = bitroll.read_scores(golden(name, "scores"))
            with bitroll.Engine(model=GOLDEN_MODELS[name.split("-")[0]], max_batch_tokens=37) as e:
                self.assertEqual(e.fingerprint, r.model_fingerprint)
                got = e.score(r)
                self.assertTrue(np.array_equal(bits(got.logprobs), bits(r.logprobs)), name)
                self.assertTrue(np.array_equal(got.digests, r.digests), name)
                self.assertTrue(np.array_equal(bits(got.logprobs), bits(s.logprobs)), name)
                self.assertTrue(np.array_equal(got.sample_id, r.sample_id))
                # the CSR form and the padded torch batch give the same bits
                csr = e.score(prompt_offsets=r.prompt_offsets, prompt_tokens=r.prompt_tokens,
                              completion_offsets=r.completion_offsets, completion_tokens=r.completion_tokens,
                              temperature=r.temperature, digests=False)
                self.assertTrue(np.array_equal(bits(csr.logprobs), bits(r.logprobs)))
                self.assertIsNone(csr.digests)
                batch = bitroll.to_torch(r)
                lp = bitroll.torch.engine_logprobs(e, batch)
                mask = batch["loss_mask"].bool()
                self.assertTrue(torch.equal(lp[mask], batch["old_logprobs"][mask]), name)
                self.assertTrue(torch.equal(lp, batch["old_logprobs"]), name)  # zeros outside the mask too
                lp = bitroll.torch.token_logprobs(e, None, batch)  # no model: the engine's values, no graph
                self.assertTrue(torch.equal(lp, batch["old_logprobs"]))
                self.assertFalse(lp.requires_grad)

    def test_generate_reproduces_golden_stories_t1(self):
        r = bitroll.read_rollouts(golden("stories-t1"))
        prompts = [r.prompt(i) for i in range(0, r.n, 3)]  # 3 samples per prompt, in order
        with bitroll.Engine(model=STORIES) as e:
            g = e.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=48, seed=7, stop_ids=[2],
                           sample_ids=r.sample_id)
        for k in ("sample_id", "prompt_index", "sample_index", "prompt_offsets", "prompt_tokens",
                  "completion_offsets", "completion_tokens", "digests", "finish_reason", "temperature", "top_p",
                  "top_k", "seed"):
            self.assertTrue(np.array_equal(getattr(g, k), getattr(r, k)), k)
            self.assertEqual(getattr(g, k).dtype, getattr(r, k).dtype, k)
        self.assertTrue(np.array_equal(bits(g.logprobs), bits(r.logprobs)))
        self.assertEqual(g.model_fingerprint, r.model_fingerprint)
        self.assertEqual(g.weight_version, 0)

    def test_generate_reproduces_golden_qwen3_t1_without_stop(self):
        r = bitroll.read_rollouts(golden("qwen3-t1"))
        prompts = [r.prompt(i) for i in range(0, r.n, 3)]
        with bitroll.Engine(model=QWEN3, max_batch_tokens=19, max_seqs=4) as e:
            g = e.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=24, seed=3, stop_ids=[])
        for k in ("sample_id", "completion_offsets", "completion_tokens", "digests", "finish_reason"):
            self.assertTrue(np.array_equal(getattr(g, k), getattr(r, k)), k)
        self.assertTrue(np.array_equal(bits(g.logprobs), bits(r.logprobs)))

    def test_score_file_and_verify(self):
        with tempfile.TemporaryDirectory() as d, bitroll.Engine(model=STORIES) as e:
            out = os.path.join(d, "s.h5")
            e.score_file(golden("stories-t1"), out)
            rep = bitroll.verify(golden("stories-t1"), out)
            self.assertTrue(rep.equal)
            self.assertEqual((rep.logprob_mismatches, rep.digest_mismatches, rep.kl_estimate), (0, 0, 0.0))
            self.assertEqual(rep.tokens, 576)
            s = bitroll.read_scores(out)
            self.assertTrue(np.array_equal(bits(s.logprobs), bits(bitroll.read_rollouts(golden("stories-t1")).logprobs)))
            with self.assertRaises(bitroll.BitrollError):  # other rollouts than the scored ones
                bitroll.verify(golden("stories-t0"), out)

    def test_errors_carry_the_library_message(self):
        with self.assertRaises(bitroll.BitrollError) as cm:
            bitroll.Engine(model="/nonexistent/model-dir")
        self.assertEqual(cm.exception.status, "BITROLL_EIO")
        self.assertIn("/nonexistent/model-dir", cm.exception.message)
        self.assertIn("BITROLL_EIO", str(cm.exception))
        with self.assertRaises(bitroll.BitrollError) as cm:
            bitroll.Engine(model=STORIES, kernels="fast")
        with bitroll.Engine(model=STORIES) as e:
            fp = e.fingerprint
            with self.assertRaises(bitroll.BitrollError) as cm:
                e.load_state_dict({"model.norm.weight": torch.ones(64), "model.no_such.weight": torch.zeros(4)})
            self.assertEqual(cm.exception.status, "BITROLL_EINVAL")
            self.assertIn("'model.no_such.weight' is not a tensor of", cm.exception.message)
            with self.assertRaises(bitroll.BitrollError) as cm:
                e.load_state_dict({"model.norm.weight": torch.ones(65)})
            self.assertIn("shape", cm.exception.message)
            # nothing was committed, and the staged tensors were dropped
            self.assertEqual((e.fingerprint, e.weight_version), (fp, 0))
            with self.assertRaises(bitroll.BitrollError) as cm:
                e.score(prompt_offsets=[0, 1], prompt_tokens=[600], completion_offsets=[0, 1], completion_tokens=[3])
            self.assertIn("outside the vocabulary", cm.exception.message)
            with self.assertRaises(bitroll.BitrollError) as cm:
                e.generate([[1, 2]], temperature=-1.0)
            self.assertEqual(cm.exception.status, "BITROLL_EINVAL")
        self.assertEqual(repr(e), "<bitroll.Engine (closed)>")
        with self.assertRaises(bitroll.BitrollError):
            e.fingerprint

    def test_load_state_dict_round_trip(self):
        """The checkpoint's own tensors (bf16 as torch.bfloat16, fp32) pushed back: same fingerprint, new version;
        changed tensors: a new fingerprint; reload: the old one again."""
        for model in (STORIES, QWEN3):
            sd = read_safetensors(os.path.join(model, "model.safetensors"))
            with bitroll.Engine(model=model) as e:
                fp0 = e.fingerprint
                self.assertEqual(e.load_state_dict(sd), (fp0, 1))
                self.assertEqual(e.load_state_dict(sd, version=41), (fp0, 41))
                # an fp32 copy of bf16 tensors rounds back to the same bits; fp16 goes through fp32
                self.assertEqual(e.load_state_dict({k: v.float() for k, v in sd.items()})[0], fp0)
                name = next(k for k in sd if k.endswith("norm.weight"))
                if sd[name].dtype == torch.bfloat16 and torch.equal(sd[name].half().to(torch.bfloat16), sd[name]):
                    self.assertEqual(e.load_state_dict({name: sd[name].to(torch.float16)})[0], fp0)
                # a tied alias (another name sharing a checkpoint tensor's storage) is skipped
                emb = next(k for k in sd if "embed" in k)
                if "lm_head.weight" not in sd:
                    self.assertEqual(e.load_state_dict({emb: sd[emb], "lm_head.weight": sd[emb]})[0], fp0)
                changed = dict(sd)
                changed[name] = sd[name] * 2
                fp1, v1 = e.load_state_dict(changed)
                self.assertNotEqual(fp1, fp0)
                self.assertEqual(v1, 44)
                self.assertEqual(e.info.weight_version, 44)
                self.assertEqual(e.reload(model), (fp0, 45))


if __name__ == "__main__":
    unittest.main()
