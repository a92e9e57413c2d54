"""bitroll's HDF5 files (docs/FORMAT.md) as numpy arrays, and the tensors a PyTorch trainer consumes.

``read_rollouts(path)`` and ``read_scores(path)`` read a rollouts / scores file with h5py into a ``Rollouts`` /
``Scores`` object whose attributes are the file's datasets as numpy arrays (flat CSR arrays, exactly the file's
dtypes and values) plus per-sample views (``r.prompt(i)``, ``r.completion(i)``, ``r.completion_logprobs(i)``,
``r[i]``). ``to_torch(rollouts)`` pads them into the per-sample tensors of verl / OpenRLHF / TRL-style trainers.
"""

import collections
import ctypes
import ctypes.util
import os
import struct

import numpy as np

from ._lib import BitrollError

ROLLOUTS_FORMAT = "bitroll-rollouts"
SCORES_FORMAT = "bitroll-scores"

# /samples datasets: name -> (attribute, dtype); all required except the texts
_ROLLOUTS_DATASETS = (
    ("sample_id", "sample_id", np.int64),
    ("prompt_index", "prompt_index", np.int64),
    ("sample_index", "sample_index", np.int32),
    ("prompt_offsets", "prompt_offsets", np.int64),
    ("prompt_tokens", "prompt_tokens", np.int32),
    ("completion_offsets", "completion_offsets", np.int64),
    ("completion_tokens", "completion_tokens", np.int32),
    ("logprobs", "logprobs", np.float32),
    ("logits_digest", "digests", np.uint64),
    ("finish_reason", "finish_reason", np.int8),
    ("temperature", "temperature", np.float32),
    ("top_p", "top_p", np.float32),
    ("top_k", "top_k", np.int32),
    ("seed", "seed", np.uint64),
)
_TEXT_DATASETS = ("prompt_text", "completion_text", "full_text")
_SCORES_DATASETS = (
    ("sample_id", "sample_id", np.int64),
    ("completion_offsets", "completion_offsets", np.int64),
    ("logprobs", "logprobs", np.float32),
    ("logits_digest", "digests", np.uint64),
)


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("bitroll.read_rollouts / read_scores need h5py (Debian: apt-get install python3-h5py; "
                          "pip: pip install h5py): " + str(e)) from None
    return h5py


class _XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


_xxh_lib = None


def _xxhash():
    """libxxhash (a dependency of libbitroll) through ctypes, for the integrity header."""
    global _xxh_lib
    if _xxh_lib is None:
        name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise ImportError(f"bitroll.read_rollouts / read_scores check files with libxxhash ({name}; Debian: "
                              f"apt-get install libxxhash0): {e}") from None
        lib.XXH3_64bits.restype = ctypes.c_uint64
        lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH3_createState.restype = ctypes.c_void_p
        lib.XXH3_freeState.argtypes = [ctypes.c_void_p]
        lib.XXH3_128bits_reset.argtypes = [ctypes.c_void_p]
        lib.XXH3_128bits_update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.XXH3_128bits_digest.restype = _XXH128
        lib.XXH3_128bits_digest.argtypes = [ctypes.c_void_p]
        _xxh_lib = lib
    return _xxh_lib


def _check_header(path):
    """The integrity header of a format_version 2 file (docs/FORMAT.md), checked with plain reads before h5py opens
    the file, as logging/h5log.c does. Returns True when the file has one, False when it does not start with the
    header's magic (then the version checks refuse a version 2 file whose magic is damaged)."""
    bad = lambda what: BitrollError("BITROLL_EFORMAT", f"{path}: {what}")  # noqa: E731
    try:
        f = open(path, "rb")
    except OSError as e:
        raise BitrollError("BITROLL_EIO", f"{path}: cannot open: {e.strerror}") from None
    with f:
        head = f.read(512)
        if head[:8] != b"BITROLL\0":
            return False  # a version 1 file, or not one of ours: h5py and the attribute checks say which
        if len(head) < 512:
            raise bad(f"truncated: {len(head)} bytes, shorter than the 512-byte bitroll header")
        x = _xxhash()
        if x.XXH3_64bits(head[:56] + bytes(8) + head[64:], 512) != struct.unpack_from("<Q", head, 56)[0]:
            raise bad("bitroll header damaged (its checksum does not match its first 512 bytes)")
        version, hsize, length, lo, hi = struct.unpack_from("<IIQQQ", head, 8)
        if version != 1 or hsize != 512 or head[40:56].rstrip(b"\0") != b"xxh3-128":
            raise bad(f"bitroll header version {version} of {hsize} bytes is unknown (this reader knows 1 of 512)")
        size = os.fstat(f.fileno()).st_size
        if size < length:
            raise bad(f"truncated: {size} of {length} bytes")
        if size > length:
            raise bad(f"{size} bytes, but its header records {length} (bytes appended after the end)")
        state = x.XXH3_createState()
        try:
            x.XXH3_128bits_reset(state)
            while True:
                piece = f.read(1 << 20)
                if not piece:
                    break
                x.XXH3_128bits_update(state, piece, len(piece))
            d = x.XXH3_128bits_digest(state)
        finally:
            x.XXH3_freeState(state)
        if (d.low64, d.high64) != (lo, hi):
            raise bad("checksum mismatch: the file was damaged or changed after bitroll wrote it")
    return True


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("bitroll.to_torch needs PyTorch (Debian: apt-get install python3-torch; pip: pip install "
                          "torch): " + str(e)) from None
    return torch


def _attr(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr(v[()])
    return v


def _read(path, fmt, group, datasets, texts=()):
    h5py = _h5py()
    path = str(path)
    has_header = _check_header(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise BitrollError("BITROLL_EIO", f"{path}: cannot open as HDF5: {e}") from None
    with f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("format") != fmt:
            raise BitrollError("BITROLL_EFORMAT", f"{path}: format is {attrs.get('format')!r}, expected {fmt!r}")
        if attrs.get("complete") != 1:
            raise BitrollError("BITROLL_EFORMAT", f"{path}: file is incomplete (interrupted write)")
        version = attrs.get("format_version")
        if version not in (1, 2):
            raise BitrollError("BITROLL_EFORMAT", f"{path}: format_version {version!r}, this reader knows 1 and 2")
        if has_header != (version == 2):  # version 2 files carry the integrity header, version 1 files do not
            raise BitrollError("BITROLL_EFORMAT", f"{path}: format_version {version} file "
                                                  f"{'with' if has_header else 'without'} a bitroll header")
        if group not in f:
            raise BitrollError("BITROLL_EFORMAT", f"{path}: no group /{group}")
        g = f[group]
        out = {}
        for name, attr, dtype in datasets:
            if name not in g:
                raise BitrollError("BITROLL_EFORMAT", f"{path}: dataset /{group}/{name} is missing")
            d = g[name]
            if d.dtype != np.dtype(dtype).newbyteorder("<") and d.dtype != np.dtype(dtype):
                raise BitrollError("BITROLL_EFORMAT", f"{path}: dataset /{group}/{name} has type {d.dtype}, "
                                                      f"expected {np.dtype(dtype)}")
            out[attr] = np.ascontiguousarray(d[...], dtype=dtype)
        for name in texts:
            out[name] = np.array(g[name].asstr()[...], dtype=object) if name in g else None
    return out, attrs


def _check_csr(path, what, off, n, total):
    if off.shape != (n + 1,) or off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] != total:
        raise BitrollError("BITROLL_EFORMAT", f"{path}: {what}_offsets is not a CSR index of {n} rows over {total} "
                                              f"elements")


Sample = collections.namedtuple(
    "Sample", "sample_id prompt_index sample_index prompt completion logprobs digests finish_reason temperature "
              "top_p top_k seed full_text")
Sample.__doc__ = "One sample of a Rollouts: numpy views into the flat arrays (no copies)."


class Rollouts:
    """A rollouts file (or the result of ``Engine.generate``) as numpy arrays.

    Flat arrays, in sample_id order, the file's dtypes: ``sample_id`` (int64 [n]), ``prompt_index`` (int64),
    ``sample_index`` (int32), ``prompt_offsets`` (int64 [n+1]) / ``prompt_tokens`` (int32),
    ``completion_offsets`` (int64 [n+1]) / ``completion_tokens`` (int32 [T]), ``logprobs`` (float32 [T]: the
    log-prob of each completion token at the sample's temperature, T = 0 scored at 1), ``digests`` (uint64 [T],
    the file's ``logits_digest``), ``finish_reason`` (int8 [n]: 0 stop, 1 length, 2 context), ``temperature``,
    ``top_p`` (float32 [n]), ``top_k`` (int32 [n]), ``seed`` (uint64 [n]). Scalars: ``weight_version`` (int; 0
    when the file predates the attribute), ``model_fingerprint``, ``kernel_mode`` (str). Texts (object arrays of
    str, or None when absent): ``prompt_text``, ``completion_text``, ``full_text``. ``attrs``: every root
    attribute. ``path``: the file (None for generated rollouts).

    Per-sample views: ``prompt(i)``, ``completion(i)``, ``completion_logprobs(i)``, ``completion_digests(i)`` (numpy
    views), ``r[i]`` a ``Sample``; ``len(r)``, iteration over samples.
    """

    def __init__(self, arrays, *, weight_version=0, model_fingerprint="", kernel_mode="", attrs=None, path=None):
        for k in ("prompt_text", "completion_text", "full_text"):
            setattr(self, k, None)
        for k, v in arrays.items():
            setattr(self, k, v)
        self.n = int(self.sample_id.shape[0])
        self.weight_version = int(weight_version)
        self.model_fingerprint = model_fingerprint
        self.kernel_mode = kernel_mode
        self.attrs = dict(attrs or {})
        self.path = path

    def __len__(self):
        return self.n

    def __repr__(self):
        where = f" from {self.path}" if self.path else ""
        return (f"<bitroll.Rollouts{where}: {self.n} samples, {self.completion_offsets[-1]} completion tokens, "
                f"model {self.model_fingerprint}, weight_version {self.weight_version}>")

    def prompt(self, i):
        return self.prompt_tokens[self.prompt_offsets[i]:self.prompt_offsets[i + 1]]

    def completion(self, i):
        return self.completion_tokens[self.completion_offsets[i]:self.completion_offsets[i + 1]]

    def completion_logprobs(self, i):
        return self.logprobs[self.completion_offsets[i]:self.completion_offsets[i + 1]]

    def completion_digests(self, i):
        return self.digests[self.completion_offsets[i]:self.completion_offsets[i + 1]]

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(f"sample {i} of {self.n}")
        i %= max(self.n, 1)
        return Sample(int(self.sample_id[i]), int(self.prompt_index[i]), int(self.sample_index[i]), self.prompt(i),
                      self.completion(i), self.completion_logprobs(i), self.completion_digests(i),
                      int(self.finish_reason[i]), float(self.temperature[i]), float(self.top_p[i]),
                      int(self.top_k[i]), int(self.seed[i]), None if self.full_text is None else self.full_text[i])

    def __iter__(self):
        return (self[i] for i in range(self.n))


class Scores:
    """A scores file (or the result of ``Engine.score``) as numpy arrays: ``sample_id`` (int64 [n]; for
    ``Engine.score`` the input's sample ids, else 0..n-1), ``completion_offsets`` (int64 [n+1]), ``logprobs``
    (float32 [T]), ``digests`` (uint64 [T]; None when not computed). Scalars: ``model_fingerprint``,
    ``weight_version``, ``rollouts_fingerprint`` (files only). ``completion_logprobs(i)`` / ``completion_digests(i)``
    are per-sample views. Its token order is the rollouts' (``completion_tokens``)."""

    def __init__(self, arrays, *, weight_version=0, model_fingerprint="", rollouts_fingerprint="", attrs=None,
                 path=None):
        self.digests = None
        for k, v in arrays.items():
            setattr(self, k, v)
        self.n = int(self.sample_id.shape[0])
        self.weight_version = int(weight_version)
        self.model_fingerprint = model_fingerprint
        self.rollouts_fingerprint = rollouts_fingerprint
        self.attrs = dict(attrs or {})
        self.path = path

    def __len__(self):
        return self.n

    def __repr__(self):
        where = f" from {self.path}" if self.path else ""
        return (f"<bitroll.Scores{where}: {self.n} samples, {self.completion_offsets[-1]} tokens, "
                f"model {self.model_fingerprint}, weight_version {self.weight_version}>")

    def completion_logprobs(self, i):
        return self.logprobs[self.completion_offsets[i]:self.completion_offsets[i + 1]]

    def completion_digests(self, i):
        return self.digests[self.completion_offsets[i]:self.completion_offsets[i + 1]]


def read_rollouts(path):
    """Reads a rollouts file (``bitroll generate``; docs/FORMAT.md) into a ``Rollouts`` of numpy arrays, checking
    its format, version, completeness and CSR offsets (BitrollError ``BITROLL_EFORMAT`` / ``BITROLL_EIO``
    otherwise). Needs h5py."""
    a, attrs = _read(path, ROLLOUTS_FORMAT, "samples", _ROLLOUTS_DATASETS, _TEXT_DATASETS)
    n = a["sample_id"].shape[0]
    _check_csr(path, "prompt", a["prompt_offsets"], n, a["prompt_tokens"].shape[0])
    _check_csr(path, "completion", a["completion_offsets"], n, a["completion_tokens"].shape[0])
    for k in ("logprobs", "digests"):
        if a[k].shape[0] != a["completion_tokens"].shape[0]:
            raise BitrollError("BITROLL_EFORMAT", f"{path}: {k} has {a[k].shape[0]} elements, completion_tokens "
                                                  f"{a['completion_tokens'].shape[0]}")
    return Rollouts(a, weight_version=attrs.get("weight_version", 0),
                    model_fingerprint=attrs.get("model_fingerprint", ""), kernel_mode=attrs.get("kernel_mode", ""),
                    attrs=attrs, path=str(path))


def read_scores(path):
    """Reads a scores file (``bitroll score``; docs/FORMAT.md) into a ``Scores`` of numpy arrays. Needs h5py."""
    a, attrs = _read(path, SCORES_FORMAT, "scores", _SCORES_DATASETS)
    _check_csr(path, "completion", a["completion_offsets"], a["sample_id"].shape[0], a["logprobs"].shape[0])
    return Scores(a, weight_version=attrs.get("weight_version", 0),
                  model_fingerprint=attrs.get("model_fingerprint", ""),
                  rollouts_fingerprint=attrs.get("rollouts_fingerprint", ""), attrs=attrs, path=str(path))


def padded_positions(prompt_offsets, completion_offsets):
    """(rows, cols, lengths, L) of the right-padded layout of ``to_torch``: completion token k of the flat CSR arrays
    sits at input_ids[rows[k], cols[k]]; lengths[b] = prompt + completion length of sample b; L = max(lengths)."""
    po = np.asarray(prompt_offsets, dtype=np.int64)
    co = np.asarray(completion_offsets, dtype=np.int64)
    P, C = np.diff(po), np.diff(co)
    n = P.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), C)
    cols = np.repeat(P, C) + (np.arange(co[-1], dtype=np.int64) - np.repeat(co[:-1], C))
    lengths = P + C
    return rows, cols, lengths, int(lengths.max()) if n else 0


def to_torch(rollouts, pad_id=0, device=None):
    """The per-sample tensors a verl / OpenRLHF / TRL-style trainer consumes, from a ``Rollouts`` (or a path).

    Each sample b is its prompt followed by its completion, right-padded with ``pad_id`` to L = the longest
    prompt + completion of the batch. Returns a dict of torch tensors (on ``device``, default CPU):

    - ``input_ids`` int64 [B, L]: prompt_b + completion_b, then pad_id;
    - ``attention_mask`` int64 [B, L]: 1 on the prompt and completion tokens, 0 on padding;
    - ``loss_mask`` int64 [B, L]: 1 on the completion tokens only (index with ``loss_mask.bool()``);
    - ``old_logprobs`` float32 [B, L]: the file's ``/samples/logprobs`` placed at the completion positions, 0
      elsewhere. **Alignment:** ``old_logprobs[b, t]`` is the log-prob of ``input_ids[b, t]`` given
      ``input_ids[b, :t]``, i.e. computed from the logits at position t - 1 (the HF causal-LM convention is
      ``log_softmax(logits[:, :-1] / T).gather(-1, input_ids[:, 1:])``, which is ``old_logprobs[:, 1:]``), at the
      sample's temperature (T = 0, greedy, scored at T = 1). Completion token j of sample b is at
      t = P_b + j with P_b its prompt length;
    - ``temperature`` float32 [B]; ``sample_id``, ``prompt_index``, ``finish_reason`` (0 stop, 1 length, 2 context),
      ``weight_version`` (the file's, per sample), ``prompt_length``, ``completion_length``: int64 [B].

    ``bitroll.torch.token_logprobs(engine, model, batch)`` returns a [B, L] tensor aligned the same way.
    """
    torch = _torch()
    if not isinstance(rollouts, Rollouts):
        rollouts = read_rollouts(rollouts)
    r = rollouts
    B = r.n
    rows, cols, lengths, L = padded_positions(r.prompt_offsets, r.completion_offsets)
    P = np.diff(r.prompt_offsets)
    C = np.diff(r.completion_offsets)
    input_ids = np.full((B, L), pad_id, dtype=np.int64)
    prow = np.repeat(np.arange(B, dtype=np.int64), P)
    pcol = np.arange(r.prompt_offsets[-1], dtype=np.int64) - np.repeat(r.prompt_offsets[:-1], P)
    input_ids[prow, pcol] = r.prompt_tokens
    input_ids[rows, cols] = r.completion_tokens
    pos = np.arange(L, dtype=np.int64)[None, :]
    attention_mask = (pos < lengths[:, None]).astype(np.int64)
    loss_mask = ((pos >= P[:, None]) & (pos < lengths[:, None])).astype(np.int64)
    old = np.zeros((B, L), dtype=np.float32)
    old[rows, cols] = r.logprobs
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a, dtype=dt)).to(device)  # noqa: E731
    return {
        "input_ids": t(input_ids, np.int64),
        "attention_mask": t(attention_mask, np.int64),
        "loss_mask": t(loss_mask, np.int64),
        "old_logprobs": t(old, np.float32),
        "temperature": t(r.temperature, np.float32),
        "sample_id": t(r.sample_id, np.int64),
        "prompt_index": t(r.prompt_index, np.int64),
        "finish_reason": t(r.finish_reason, np.int64),
        "weight_version": t(np.full(B, r.weight_version), np.int64),
        "prompt_length": t(P, np.int64),
        "completion_length": t(C, np.int64),
    }
