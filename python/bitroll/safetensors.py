"""A small safetensors reader and writer on numpy (no `safetensors` package needed).

File layout: 8-byte little-endian header length n, then n bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`` (optionally padded with
spaces), then the data section; offsets are relative to the data section. A sharded checkpoint is a
``model.safetensors.index.json`` whose ``"weight_map"`` maps each tensor name to a shard file beside it.

Every header is validated as the C loader (policy/safetensors.c) does: dtype known, shape non-negative integers,
``data_offsets`` inside the data section and of exactly ``numel * itemsize`` bytes, no two tensors overlapping,
no name twice. Errors are :class:`SafetensorsError` naming the file and the tensor.

BF16 has no numpy dtype: it is read as uint16 and widened exactly to float32 (the 16 bits become the top half
of the float32 bits); :func:`save_file` rounds float32 to BF16 to nearest even, as ``torch.Tensor.to`` does.
"""

import json
import os
import struct

import numpy as np

__all__ = ["SafetensorsError", "TensorInfo", "read_header", "load_file", "load_checkpoint", "checkpoint_tensors",
           "iter_tensors", "save_file"]

_MAX_HEADER = 100_000_000  # what the reference implementation (and the C loader) accept

# safetensors dtype -> (numpy dtype the bytes are read as, item size)
_DTYPES = {
    "F64": (np.dtype("<f8"), 8), "F32": (np.dtype("<f4"), 4), "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2), "I64": (np.dtype("<i8"), 8), "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2), "I8": (np.dtype("i1"), 1), "U64": (np.dtype("<u8"), 8),
    "U32": (np.dtype("<u4"), 4), "U16": (np.dtype("<u2"), 2), "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}


class SafetensorsError(ValueError):
    """A malformed or unreadable safetensors file (the message names the file and, where it applies, the tensor)."""


class TensorInfo:
    """One tensor of a file: name, dtype (safetensors name), shape (tuple), file path and absolute byte range."""

    __slots__ = ("name", "dtype", "shape", "file", "begin", "end")

    def __init__(self, name, dtype, shape, file, begin, end):
        self.name, self.dtype, self.shape, self.file, self.begin, self.end = name, dtype, shape, file, begin, end

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {list(self.shape)}, {os.path.basename(self.file)})"


def _uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2 ** 53


def read_header(path):
    """Parses and validates one file's header.

    Returns (tensors, metadata): tensors a list of TensorInfo in data-offset order (the order of the bytes in the
    file), metadata the ``__metadata__`` dict (or {}).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SafetensorsError(f"{path}: file is {size} bytes, too short for a safetensors header (>= 8)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or n > size - 8:
                raise SafetensorsError(f"{path}: header length {n} exceeds the file ({size} bytes) or the 100 MB limit")
            raw = f.read(n)
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read: {e.strerror or e}") from e
    def unique(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise SafetensorsError(f"{path}: tensor '{k}' appears twice in the header")
            d[k] = v
        return d

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)  # trailing space padding is fine
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: safetensors header ({n} bytes) is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: safetensors header ({n} bytes) is not a JSON object")
    data_start, data_size = 8 + n, size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    tensors = []
    for name, e in header.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(e, dict):
            raise SafetensorsError(f"{where}: entry is not an object")
        dt, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if dt not in _DTYPES:
            raise SafetensorsError(f"{where}: unknown or unsupported dtype {dt!r}")
        if not isinstance(shape, list) or not all(_uint(d) for d in shape):
            raise SafetensorsError(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_uint(o) for o in offs)):
            raise SafetensorsError(f"{where}: 'data_offsets' must be [begin, end] non-negative integers")
        b, en = offs
        if b > en or en > data_size:
            raise SafetensorsError(f"{where}: data_offsets [{b}, {en}] outside the data section of {data_size} bytes")
        nbytes = int(np.prod(shape, dtype=object)) * _DTYPES[dt][1]
        if en - b != nbytes:
            raise SafetensorsError(f"{where}: data_offsets span {en - b} bytes but dtype {dt} x shape {shape} "
                                   f"is {nbytes}")
        tensors.append(TensorInfo(name, dt, tuple(shape), path, data_start + b, data_start + en))
    tensors.sort(key=lambda t: (t.begin, t.end))
    prev = None
    for t in tensors:
        if t.begin == t.end:
            continue
        if prev is not None and t.begin < prev.end:
            raise SafetensorsError(f"{path}: tensor '{t.name}' (bytes {t.begin - data_start}..{t.end - data_start}) "
                                   f"overlaps tensor '{prev.name}'")
        prev = t
    return tensors, metadata


def checkpoint_tensors(path):
    """The tensors of a checkpoint: a directory (model.safetensors.index.json, else model.safetensors), an index
    file or a single .safetensors file. Returns a list of TensorInfo in file order (shards in the order the
    index first names them, each in data-offset order)."""
    if os.path.isdir(path):
        idx = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.exists(idx):
            path = idx
        elif os.path.exists(single):
            path = single
        else:
            raise SafetensorsError(f"{path}: neither model.safetensors.index.json nor model.safetensors found")
    if not path.endswith(".json"):
        return read_header(path)[0]
    try:
        with open(path, "r", encoding="utf-8") as f:
            index = json.load(f)
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot read: {e.strerror or e}") from e
    except ValueError as e:
        raise SafetensorsError(f"{path}: not valid JSON: {e}") from e
    wm = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(wm, dict):
        raise SafetensorsError(f"{path}: missing object 'weight_map'")
    shards = []
    for name, shard in wm.items():
        if not isinstance(shard, str) or not shard or "/" in shard:
            raise SafetensorsError(f"{path}: weight_map['{name}'] must be a shard file name in the index's directory")
        if shard not in shards:
            shards.append(shard)
    out, where = [], {}
    for shard in shards:
        try:
            tensors = read_header(os.path.join(os.path.dirname(path), shard))[0]
        except SafetensorsError as e:
            raise SafetensorsError(f"{path}: shard '{shard}': {e}") from e
        for t in tensors:
            if t.name in where:
                raise SafetensorsError(f"{path}: tensor '{t.name}' appears twice (in {where[t.name]} and {shard})")
            if wm.get(t.name) != shard:
                raise SafetensorsError(f"{path}: tensor '{t.name}' in {shard} is "
                                       + ("not listed in weight_map" if t.name not in wm else f"mapped to {wm[t.name]}"))
            where[t.name] = shard
        out += tensors
    missing = [n for n in wm if n not in where]
    if missing:
        raise SafetensorsError(f"{path}: tensor '{missing[0]}' is mapped to {wm[missing[0]]} but missing from it")
    return out


def _read(info, mm):
    """The tensor's values: float32 for BF16 (exact), the file's dtype otherwise; a writable copy."""
    np_dt, _ = _DTYPES[info.dtype]
    a = np.frombuffer(mm, dtype=np_dt, count=int(np.prod(info.shape, dtype=np.int64)), offset=info.begin)
    if info.dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(a.dtype.newbyteorder("="), copy=True).reshape(info.shape)


def iter_tensors(tensors):
    """Yields (name, np.ndarray) for each TensorInfo, one at a time (BF16 as float32), files memory-mapped."""
    maps = {}
    for t in tensors:
        if t.file not in maps:
            maps[t.file] = np.memmap(t.file, dtype=np.uint8, mode="r")
        yield t.name, _read(t, maps[t.file])


def _load(where, tensors, names=None):
    if names is not None:
        want = set(names)
        missing = sorted(want - {t.name for t in tensors})
        if missing:
            raise SafetensorsError(f"{where}: tensor '{missing[0]}' is missing")
        tensors = [t for t in tensors if t.name in want]
    return dict(iter_tensors(tensors))


def load_file(path, names=None):
    """Reads one .safetensors file: {name: np.ndarray} in file order (BF16 as float32). names: optional subset."""
    return _load(path, read_header(path)[0], names)


def load_checkpoint(path, names=None):
    """Reads a checkpoint (directory, index or file; see checkpoint_tensors): ({name: np.ndarray} in file order,
    {name: safetensors dtype string}). BF16 tensors come back as float32 (exact)."""
    tensors = checkpoint_tensors(path)
    return _load(path, tensors, names), {t.name: t.dtype for t in tensors}


def _to_bf16_bits(a):
    """float32 array -> uint16 BF16 bits, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return r


def save_file(tensors, path, dtypes=None, metadata=None):
    """Writes {name: array-like} to a .safetensors file, tensors in the given order, 8-byte aligned.

    dtypes: optional {name: "F32" | "BF16" | "F16" | ...}; default: the array's own dtype (float32 -> F32).
    """
    names = {np_dt: k for k, (np_dt, _) in _DTYPES.items() if k != "BF16"}
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        raw = None
        if hasattr(a, "detach"):  # a torch tensor (torch itself is not needed here)
            a = a.detach().cpu()
            if str(a.dtype) == "torch.bfloat16" and (dtypes or {}).get(name, "BF16") == "BF16":
                # already bfloat16: its bits as they are (no widening and rounding back)
                dt, shape = "BF16", list(a.shape)
                import torch  # the tensor is one, so torch is there
                raw = a.contiguous().view(torch.int16).numpy().tobytes()
            else:
                a = (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()
        if raw is None:
            a = np.asarray(a)
            shape = list(a.shape)
            dt = (dtypes or {}).get(name) or names.get(a.dtype)
            if dt not in _DTYPES:
                raise SafetensorsError(f"{path}: tensor '{name}': cannot store numpy dtype {a.dtype} (give dtypes=)")
            raw = (_to_bf16_bits(a) if dt == "BF16" else np.ascontiguousarray(a, dtype=_DTYPES[dt][0])).tobytes()
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
