"""``bitroll.Engine``: a libbitroll engine (the sampler's kernels) inside a Python process.

An engine holds a model's weights, a KV cache and the kernels of one device. ``generate`` samples completions and
returns, for every sampled token, its fp32 log-prob and logits digest; ``score`` recomputes them teacher-forced.
The two agree bit for bit for the same weights, kernel mode and temperature, whatever the batch (docs/DESIGN.md),
and they are the numbers ``bitroll generate`` writes into rollouts files. ``load_state_dict`` pushes a trainer's
weights into the engine as a new weight version.
"""

import collections
import collections.abc
import json
import os
import struct
from ctypes import POINTER, byref, c_float, c_int32, c_int64, c_uint64, c_void_p

import numpy as np

from . import _lib
from ._lib import BitrollError
from .files import Rollouts, Scores, padded_positions

EngineInfo = collections.namedtuple(
    "EngineInfo", "vocab_size context_length n_layers dim eos_id bos_id n_params weight_version fingerprint "
                  "model_type")
EngineInfo.__doc__ = "bitroll_engine_info: the model's shape, parameter count, weights fingerprint, weight version."

VerifyReport = collections.namedtuple(
    "VerifyReport", "equal samples tokens logprob_mismatches digest_mismatches max_abs_delta kl_estimate "
                    "first_sample_id first_token first_logprob first_digest")
VerifyReport.__doc__ = ("bitroll_verify_report plus `equal` (True iff every log-prob and digest is bitwise equal): "
                        "what `bitroll verify` prints.")


def _ptr(a, ctype):
    """A POINTER(ctype) into the contiguous numpy array a (None for None)."""
    return None if a is None else a.ctypes.data_as(POINTER(ctype))


def _np(x, dtype=None):
    """numpy array of x (a torch tensor, a numpy array or a sequence), on the host."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    return a if dtype is None else np.ascontiguousarray(a, dtype=dtype)


def _from_c(p, count, dtype):
    if count == 0:
        return np.empty(0, dtype=dtype)
    return np.ctypeslib.as_array(p, shape=(count,)).astype(dtype, copy=True)


def _csr(seqs, what):
    """(offsets int64 [n+1], flat int32) of a list of 1-D id sequences."""
    arrs = [_np(s, np.int64).reshape(-1) for s in seqs]
    lens = np.array([a.shape[0] for a in arrs], dtype=np.int64)
    off = np.zeros(len(arrs) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    flat = np.concatenate(arrs) if arrs else np.empty(0, dtype=np.int64)
    if flat.size and (flat.min() < -2 ** 31 or flat.max() >= 2 ** 31):
        raise BitrollError("BITROLL_EINVAL", f"{what}: a token id does not fit int32")
    return off, np.ascontiguousarray(flat, dtype=np.int32)


def batch_to_csr(batch):
    """The CSR score input of a padded batch (the dict of ``bitroll.to_torch``, or any dict with ``input_ids``
    [B, L], ``loss_mask`` [B, L] and optionally ``attention_mask`` [B, L] and ``temperature`` [B]; torch tensors or
    numpy arrays, right- or left-padded).

    Sample b's completion is the tokens where loss_mask is 1 (they must be one contiguous run, inside the
    attention mask); its prompt is the attended tokens before the first of them (at least one). Returns a dict:
    prompt_offsets, prompt_tokens, completion_offsets, completion_tokens, temperature (float32 [B] or None), and
    rows, cols: completion token k of the flat arrays is batch position [rows[k], cols[k]]."""
    ids = _np(batch["input_ids"])
    if ids.ndim != 2:
        raise BitrollError("BITROLL_EINVAL", f"input_ids must be [B, L], got shape {ids.shape}")
    B, L = ids.shape
    lm = _np(batch["loss_mask"]).astype(bool)
    am = _np(batch["attention_mask"]).astype(bool) if batch.get("attention_mask") is not None else \
        np.ones((B, L), dtype=bool)
    if lm.shape != (B, L) or am.shape != (B, L):
        raise BitrollError("BITROLL_EINVAL", f"loss_mask {lm.shape} and attention_mask {am.shape} must be "
                                             f"input_ids' shape {ids.shape}")
    if np.any(lm & ~am):
        b = int(np.nonzero(np.any(lm & ~am, axis=1))[0][0])
        raise BitrollError("BITROLL_EINVAL", f"row {b}: loss_mask is 1 where attention_mask is 0")
    has = lm.any(axis=1)
    first = np.where(has, lm.argmax(axis=1), L)
    last = np.where(has, L - 1 - lm[:, ::-1].argmax(axis=1), L - 1)
    C = lm.sum(axis=1)
    bad = has & (last - first + 1 != C)
    if bad.any():
        raise BitrollError("BITROLL_EINVAL", f"row {int(np.nonzero(bad)[0][0])}: the loss_mask positions are not "
                                             f"one contiguous run (a completion)")
    pos = np.arange(L)[None, :]
    pm = am & (pos < first[:, None])
    P = pm.sum(axis=1)
    if B and P.min() == 0:
        raise BitrollError("BITROLL_EINVAL", f"row {int(np.argmin(P))}: no prompt token (attended, before the first "
                                             f"loss_mask position)")
    po = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(P, out=po[1:])
    co = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(C, out=co[1:])
    rows, cols = np.nonzero(lm)
    temp = batch.get("temperature")
    return {
        "prompt_offsets": po, "prompt_tokens": np.ascontiguousarray(ids[pm], dtype=np.int32),
        "completion_offsets": co, "completion_tokens": np.ascontiguousarray(ids[lm], dtype=np.int32),
        "temperature": None if temp is None else _np(temp, np.float32).reshape(B),
        "rows": rows.astype(np.int64), "cols": cols.astype(np.int64),
    }


def checkpoint_tensor_names(model_dir):
    """The tensor names of a Hugging Face checkpoint directory (model.safetensors.index.json's weight_map, else
    the header of model.safetensors), or None when there is neither."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return set(json.load(f)["weight_map"])
    st = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(st):
        return None
    with open(st, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k for k in header if k != "__metadata__"}


def _parse_device(device):
    d = str(device)
    if d == "cpu":
        return _lib.DEVICE_CPU, 0
    if d == "cuda":
        return _lib.DEVICE_CUDA, 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return _lib.DEVICE_CUDA, int(d[5:])
    raise BitrollError("BITROLL_EINVAL", f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def _per_sample(v, N, dtype, what):
    a = _np(v, dtype).reshape(-1)
    if a.shape[0] == 1:
        return np.full(N, a[0], dtype=dtype)
    if a.shape[0] != N:
        raise BitrollError("BITROLL_EINVAL", f"{what}: {a.shape[0]} values for {N} samples (give a scalar or one per "
                                             f"sample)")
    return np.ascontiguousarray(a, dtype=dtype)


class Engine:
    """A libbitroll engine: ``Engine(model=DIR)`` or ``Engine(random_weights=CONFIG_JSON, weights_seed=S)`` (CUDA
    only), on ``device="cpu"`` or ``"cuda:N"``, with ``kernels="invariant"`` (default), ``"fp32"`` or
    ``"standard"`` (CUDA only, not batch invariant). ``max_batch_tokens`` (tokens per forward step, 256),
    ``max_seqs`` (sequences in flight, 64), ``max_seq_len`` (longest prompt + completion; None: the model's
    context, at most 4096), ``prefill_chunk`` (64), ``page_size`` (16) change speed and memory, never the bits.

    ``score``, ``generate``, ``load_state_dict``; ``info``, ``fingerprint``, ``weight_version``; a context manager
    (``close()`` frees it). Failures raise ``bitroll.BitrollError(status, message)`` with the library's message.
    One call at a time per engine (the library's engines are thread-compatible, not thread-safe).
    """

    def __init__(self, model=None, *, random_weights=None, weights_seed=0, device="cpu", kernels="invariant",
                 max_batch_tokens=256, max_seqs=64, max_seq_len=None, prefill_chunk=64, page_size=16,
                 weight_version=0):
        self._e = None
        L = _lib.get()
        dev, gpu = _parse_device(device)
        if kernels not in _lib.KERNELS:
            raise BitrollError("BITROLL_EINVAL", f"kernels {kernels!r}: expected one of {sorted(_lib.KERNELS)}")
        self.model_dir = None if model is None else os.fspath(model)
        self.random_weights = None if random_weights is None else os.fspath(random_weights)
        self.device = "cpu" if dev == _lib.DEVICE_CPU else f"cuda:{gpu}"
        self.gpu = gpu
        self.kernels = kernels
        o = _lib.EngineOpts()
        L.bitroll_engine_opts_init(byref(o))
        o.model_dir = None if self.model_dir is None else self.model_dir.encode()
        o.random_weights = None if self.random_weights is None else self.random_weights.encode()
        o.weights_seed = int(weights_seed)
        o.device = dev
        o.gpu = gpu
        o.kernels = _lib.KERNELS[kernels]
        o.max_batch_tokens = int(max_batch_tokens)
        o.max_seqs = int(max_seqs)
        o.max_seq_len = 0 if max_seq_len is None else int(max_seq_len)
        o.prefill_chunk = int(prefill_chunk)
        o.page_size = int(page_size)
        o.weight_version = int(weight_version)
        e = c_void_p()
        err = _lib.Error()
        st = L.bitroll_engine_open(byref(o), byref(e), byref(err))
        _lib.check(st, lambda: err.message)
        self._e = e
        self._ckpt_names = False  # not read yet

    # ------------------------------------------------------------ lifetime

    def close(self):
        """Frees the engine (weights, KV cache, device memory). Idempotent."""
        if self._e is not None and self._e.value:
            _lib.get().bitroll_engine_close(self._e)
        self._e = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if self._e is None:
            raise BitrollError("BITROLL_EINVAL", "the engine is closed")
        return self._e

    def _check(self, st):
        return _lib.check(st, lambda: _lib.get().bitroll_engine_error(self._e))

    # ------------------------------------------------------------ info

    @property
    def info(self):
        """EngineInfo (vocab_size, context_length, n_layers, dim, eos_id, bos_id, n_params, weight_version,
        fingerprint, model_type)."""
        i = _lib.EngineInfo()
        self._check(_lib.get().bitroll_engine_get_info(self._handle(), byref(i)))
        return EngineInfo(i.vocab_size, i.context_length, i.n_layers, i.dim, i.eos_id, i.bos_id, i.n_params,
                          i.weight_version, i.fingerprint.decode(), i.model_type.decode())

    @property
    def fingerprint(self):
        """The weights fingerprint (16 hex digits), as `bitroll info` prints it and rollouts files record it."""
        return self.info.fingerprint

    @property
    def weight_version(self):
        """Recorded with every result; a commit (load_state_dict) increments it or sets it."""
        return self.info.weight_version

    def __repr__(self):
        if self._e is None:
            return "<bitroll.Engine (closed)>"
        i = self.info
        return (f"<bitroll.Engine {i.model_type} {self.model_dir or self.random_weights} on {self.device}, "
                f"{self.kernels}, fingerprint {i.fingerprint}, weight_version {i.weight_version}>")

    # ------------------------------------------------------------ score

    def score_into(self, prompt_offsets, prompt_tokens, completion_offsets, completion_tokens, temperature,
                   logprobs_ptr, digests_ptr=None, on_device=False):
        """bitroll_score into caller buffers: the CSR arrays are host arrays (converted to int64 offsets / int32
        ids / float32 temperatures; temperature None: 1.0); logprobs_ptr / digests_ptr (int addresses, digests
        may be None) hold completion_offsets[-1] float32 / uint64 entries, in host memory or, with on_device, in
        the engine's GPU memory."""
        po = _np(prompt_offsets, np.int64)
        co = _np(completion_offsets, np.int64)
        pt = _np(prompt_tokens, np.int32)
        ct = _np(completion_tokens, np.int32)
        n = po.shape[0] - 1
        if n < 0 or co.shape[0] != n + 1:
            raise BitrollError("BITROLL_EINVAL", f"prompt_offsets ({po.shape[0]}) and completion_offsets "
                                                 f"({co.shape[0]}) must both have n + 1 entries")
        if po[-1] != pt.shape[0] or co[-1] != ct.shape[0]:
            raise BitrollError("BITROLL_EINVAL", f"offsets end at {po[-1]} / {co[-1]} but there are {pt.shape[0]} "
                                                 f"prompt / {ct.shape[0]} completion tokens")
        temp = None if temperature is None else _per_sample(temperature, n, np.float32, "temperature")
        si = _lib.ScoreIn(n, _ptr(po, c_int64), _ptr(pt, c_int32), _ptr(co, c_int64), _ptr(ct, c_int32),
                          _ptr(temp, c_float))
        self._check(_lib.get().bitroll_score(self._handle(), byref(si), logprobs_ptr, digests_ptr,
                                             1 if on_device else 0))

    def score(self, batch=None, *, prompt_offsets=None, prompt_tokens=None, completion_offsets=None,
              completion_tokens=None, temperature=None, digests=True):
        """Teacher-forced log-probs (fp32 log_softmax(logits / T) at each completion token; T = 0 scored at 1) and
        logits digests, bit for bit what ``generate`` / ``bitroll generate`` gave the same tokens under the same
        weights. ``batch`` is one of: a ``Rollouts`` (``read_rollouts`` / ``generate``; each sample at its
        recorded temperature), a rollouts file path, a padded batch dict (``to_torch``: see ``batch_to_csr``), or
        None with the CSR keyword arrays (``temperature``: None = 1.0, a scalar or one per sample).

        Returns a ``Scores`` (numpy, host): ``logprobs`` float32 [T] and ``digests`` uint64 [T] (None when
        digests=False) in completion-token order, ``completion_offsets``, ``sample_id``, the engine's
        ``model_fingerprint`` and ``weight_version``. For a padded batch, ``scores.rows`` / ``scores.cols`` give
        each token's [b, t] position. (``bitroll.torch.engine_logprobs`` returns a padded [B, L] tensor.)"""
        rows = cols = None
        sample_id = None
        if isinstance(batch, (str, os.PathLike)):
            from .files import read_rollouts
            batch = read_rollouts(batch)
        if batch is None:
            if any(x is None for x in (prompt_offsets, prompt_tokens, completion_offsets, completion_tokens)):
                raise BitrollError("BITROLL_EINVAL", "score: give a batch or all four CSR arrays")
            po, pt, co, ct, temp = prompt_offsets, prompt_tokens, completion_offsets, completion_tokens, temperature
        elif isinstance(batch, collections.abc.Mapping):
            c = batch_to_csr(batch)
            po, pt, co, ct, temp = (c["prompt_offsets"], c["prompt_tokens"], c["completion_offsets"],
                                    c["completion_tokens"], c["temperature"] if temperature is None else temperature)
            rows, cols = c["rows"], c["cols"]
            if batch.get("sample_id") is not None:
                sample_id = _np(batch["sample_id"], np.int64)
        else:
            po, pt, co, ct = batch.prompt_offsets, batch.prompt_tokens, batch.completion_offsets, \
                batch.completion_tokens
            temp = batch.temperature if temperature is None else temperature
            sample_id = getattr(batch, "sample_id", None)
        co = _np(co, np.int64)
        T = int(co[-1])
        lp = np.empty(T, dtype=np.float32)
        dg = np.empty(T, dtype=np.uint64) if digests else None
        self.score_into(po, pt, co, ct, temp, lp.ctypes.data, None if dg is None else dg.ctypes.data, False)
        n = co.shape[0] - 1
        out = Scores({"sample_id": np.arange(n, dtype=np.int64) if sample_id is None else _np(sample_id, np.int64),
                      "completion_offsets": co, "logprobs": lp, "digests": dg},
                     weight_version=self.weight_version, model_fingerprint=self.fingerprint)
        out.rows, out.cols = rows, cols
        return out

    # ------------------------------------------------------------ generate

    def generate(self, prompts, n=1, *, temperature=1.0, top_p=1.0, top_k=0, seed=0, max_new_tokens=64,
                 stop_ids=None, sample_ids=None):
        """Samples ``n`` completions of every prompt (a list of token-id sequences: lists, numpy arrays or 1-D
        tensors). Sample k = i * n + j is prompt i's j-th; its sample id is ``sample_ids[k]`` (default k: the ids
        ``bitroll generate`` gives when every prompt has the same n). The sampler's noise depends only on (seed,
        sample id, position), so a rollouts file's prompts, sample ids and settings reproduce it bit for bit.
        ``temperature`` (>= 0, 0 greedy), ``top_p`` (in (0, 1]), ``top_k`` (0 off), ``seed``, ``max_new_tokens``:
        a scalar or one value per sample. ``stop_ids``: tokens that end a completion (included in it); None: the
        model's EOS (config.json's eos_token_id) when it has one, ``[]``: none.

        Returns a ``Rollouts`` (numpy arrays as read_rollouts gives them, ``path`` None) carrying the engine's
        fingerprint and weight version: ``to_torch`` and ``score`` take it as they take a file."""
        po, pt = _csr(prompts, "prompts")
        n_prompts = po.shape[0] - 1
        n = int(n)
        if n < 1:
            raise BitrollError("BITROLL_EINVAL", f"n = {n}: must be >= 1")
        N = n_prompts * n
        reps = np.repeat(np.arange(n_prompts, dtype=np.int64), n)
        P = np.diff(po)
        spo = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(P[reps], out=spo[1:])
        spt = np.concatenate([pt[po[i]:po[i + 1]] for i in reps]).astype(np.int32) if N else np.empty(0, np.int32)
        sid = np.arange(N, dtype=np.int64) if sample_ids is None else _per_sample(sample_ids, N, np.int64,
                                                                                   "sample_ids")
        temp = _per_sample(temperature, N, np.float32, "temperature")
        tp = _per_sample(top_p, N, np.float32, "top_p")
        tk = _per_sample(top_k, N, np.int32, "top_k")
        sd = _per_sample(np.asarray(seed, dtype=np.uint64), N, np.uint64, "seed")
        mn = _per_sample(max_new_tokens, N, np.int32, "max_new_tokens")
        if stop_ids is None:
            eos = self.info.eos_id
            stop = np.array([eos] if eos >= 0 else [], dtype=np.int32)
        else:
            stop = _np(stop_ids, np.int32).reshape(-1)
        gi = _lib.GenerateIn(N, _ptr(spo, c_int64), _ptr(spt, c_int32), _ptr(sid, c_int64), _ptr(temp, c_float),
                             _ptr(tp, c_float), _ptr(tk, c_int32), _ptr(sd, c_uint64), _ptr(mn, c_int32),
                             float(temp[0]) if N else 1.0, int(mn[0]) if N else 1, int(sd[0]) if N else 0,
                             _ptr(stop, c_int32) if stop.size else None, int(stop.size))
        out = POINTER(_lib.Completions)()
        L = _lib.get()
        self._check(L.bitroll_generate(self._handle(), byref(gi), byref(out)))
        try:
            c = out.contents
            T = int(c.offsets[N]) if N else 0
            arrays = {
                "sample_id": sid, "prompt_index": reps, "sample_index": np.tile(np.arange(n, dtype=np.int32),
                                                                                 n_prompts),
                "prompt_offsets": spo, "prompt_tokens": spt,
                "completion_offsets": _from_c(c.offsets, N + 1, np.int64),
                "completion_tokens": _from_c(c.tokens, T, np.int32),
                "logprobs": _from_c(c.logprobs, T, np.float32),
                "digests": _from_c(c.digests, T, np.uint64),
                "finish_reason": _from_c(c.finish_reason, N, np.int8),
                "temperature": temp, "top_p": tp, "top_k": tk, "seed": sd,
            }
            wv = int(c.weight_version)
        finally:
            L.bitroll_completions_free(out)
        if N == 0:
            arrays["completion_offsets"] = np.zeros(1, dtype=np.int64)
        return Rollouts(arrays, weight_version=wv, model_fingerprint=self.fingerprint, kernel_mode=self.kernels)

    # ------------------------------------------------------------ weights

    def _checkpoint_names(self):
        if self._ckpt_names is False:
            self._ckpt_names = checkpoint_tensor_names(self.model_dir) if self.model_dir else None
        return self._ckpt_names

    def load_state_dict(self, state_dict, version=None):
        """Pushes a trainer's weights into the engine and commits them as a new weight version; returns
        ``(fingerprint, weight_version)``.

        ``state_dict``: a mapping name -> tensor (a module's ``state_dict()``, or the module itself), named as the
        checkpoint's tensors (Hugging Face names). Every tensor goes through ``bitroll_weights_set``: bf16 tensors
        as ``BITROLL_DTYPE_BF16`` (their raw bits), fp32 as ``BITROLL_DTYPE_F32``, any other dtype converted to
        fp32 first (numpy arrays too). The library rounds each to the checkpoint's dtype of that tensor with
        round-to-nearest-even, so the engine then holds exactly the weights (and fingerprint) of the same tensors
        saved as a checkpoint with the same config.json and loaded. CUDA tensors on the engine's GPU are handed
        over by device pointer (no host copy); CUDA tensors elsewhere are copied to the host. Tensors not given
        keep their values. A name the checkpoint lacks raises ``BitrollError`` (the library's message), except an
        alias of a checkpoint tensor given under its own name (tied embeddings: ``lm_head.weight`` sharing
        ``model.embed_tokens.weight``'s storage), which is skipped. On any failure nothing is committed.

        ``version``: the new weight_version (>= 0); None: the previous + 1."""
        if hasattr(state_dict, "state_dict") and not isinstance(state_dict, collections.abc.Mapping):
            state_dict = state_dict.state_dict()
        L = _lib.get()
        e = self._handle()
        names = self._checkpoint_names()
        owners = {}  # (device, data_ptr, shape, dtype) -> a checkpoint name, to recognise tied aliases
        if names is not None:
            for k, t in state_dict.items():
                if k in names and hasattr(t, "data_ptr"):
                    owners[(str(t.device), t.data_ptr(), tuple(t.shape), t.dtype)] = k
        synced = set()
        try:
            for name, t in state_dict.items():
                if names is not None and name not in names and hasattr(t, "data_ptr") and \
                        (str(t.device), t.data_ptr(), tuple(t.shape), t.dtype) in owners:
                    continue  # a tied alias of a checkpoint tensor that is set under its own name
                data, dtype, on_device, keep = self._tensor_bytes(t, synced)
                shape = np.asarray(keep.shape if hasattr(keep, "shape") else (), dtype=np.int64)
                self._check(L.bitroll_weights_set(e, name.encode(), dtype, _ptr(shape, c_int64), int(shape.size),
                                                  data, on_device))
                del keep
            v = c_int64(-1 if version is None else int(version))
            self._check(L.bitroll_weights_commit(e, byref(v)))
        except BaseException:
            L.bitroll_weights_discard(e)
            raise
        return self.fingerprint, int(v.value)

    def _tensor_bytes(self, t, synced):
        """(address, bitroll_dtype, on_device, object keeping the memory alive) of one tensor."""
        if hasattr(t, "detach") and hasattr(t, "data_ptr"):  # a torch tensor
            import torch
            t = t.detach()
            if t.dtype not in (torch.float32, torch.bfloat16):
                t = t.to(torch.float32)
            on_device = 0
            if t.is_cuda:
                if self.device.startswith("cuda") and t.device.index == self.gpu:
                    if t.device not in synced:  # the library copies on the legacy default stream
                        torch.cuda.current_stream(t.device).synchronize()
                        synced.add(t.device)
                    on_device = 1
                else:
                    t = t.cpu()
            t = t.contiguous()
            dtype = _lib.DTYPE_BF16 if t.dtype == torch.bfloat16 else _lib.DTYPE_F32
            return c_void_p(t.data_ptr()), dtype, on_device, t
        a = np.ascontiguousarray(np.asarray(t), dtype=np.float32)
        return c_void_p(a.ctypes.data), _lib.DTYPE_F32, 0, a

    def reload(self, model_dir, version=None):
        """Replaces the weights by the checkpoint in model_dir (same architecture and shapes); returns
        ``(fingerprint, weight_version)``."""
        v = c_int64(-1 if version is None else int(version))
        self._check(_lib.get().bitroll_weights_reload(self._handle(), os.fspath(model_dir).encode(), byref(v)))
        self.model_dir = os.fspath(model_dir)
        self._ckpt_names = False
        return self.fingerprint, int(v.value)

    # ------------------------------------------------------------ files

    def score_file(self, rollouts_path, scores_path, allow_other_policy=False):
        """bitroll_score_rollouts: scores a rollouts file and writes a scores file `bitroll verify` accepts. The
        engine's fingerprint must be the file's model fingerprint unless allow_other_policy (the scores file then
        records the scoring model, and verify refuses the pair)."""
        L = _lib.get()
        r = POINTER(_lib.Rollouts)()
        err = _lib.Error()
        _lib.check(L.bitroll_rollouts_read(os.fspath(rollouts_path).encode(), byref(r), byref(err)),
                   lambda: err.message)
        try:
            self._check(L.bitroll_score_rollouts(self._handle(), r, os.fspath(scores_path).encode(),
                                                 1 if allow_other_policy else 0))
        finally:
            L.bitroll_rollouts_free(r)


def verify(rollouts_path, scores_path):
    """bitroll_verify_files: compares every completion token's log-prob and digest of a rollouts file and a scores
    file bit for bit. Returns a VerifyReport (``equal`` True iff all equal); raises BitrollError when the files are
    unreadable or do not belong together."""
    L = _lib.get()
    rep = _lib.VerifyReport()
    err = _lib.Error()
    st = L.bitroll_verify_files(os.fspath(rollouts_path).encode(), os.fspath(scores_path).encode(), byref(rep),
                                byref(err))
    if st not in (_lib.OK, _lib.MISMATCH):
        _lib.check(st, lambda: err.message)
    return VerifyReport(st == _lib.OK, rep.samples, rep.tokens, rep.logprob_mismatches, rep.digest_mismatches,
                        rep.max_abs_delta, rep.kl_estimate, rep.first_sample_id, rep.first_token,
                        tuple(rep.first_logprob), tuple(rep.first_digest))


__all__ = ["Engine", "EngineInfo", "VerifyReport", "verify", "batch_to_csr", "checkpoint_tensor_names",
           "padded_positions"]
