"""ctypes binding of libbitroll's public C API (include/bitroll/bitroll.h, API version 1).

Every function of bitroll.h is declared here with its argtypes and restype, and every struct is mirrored field for
field (same order, same C types), so ``ctypes.sizeof`` and the field offsets equal the C compiler's
(tests/python/test_package.py compiles a C program against the header and compares them).

Which ``libbitroll.so`` is loaded (the first that exists):

1. the path in the environment variable ``BITROLL_LIB`` (a file; a directory holding ``libbitroll.so`` also works);
   when it is set but names nothing loadable, import fails instead of falling back;
2. an installed copy: when the package lives in ``PREFIX/lib/pythonX.Y/site-packages/bitroll`` (or
   ``PREFIX/lib/python3/dist-packages/bitroll``, or under ``lib64``), ``PREFIX/lib/``, ``PREFIX/lib64/`` and
   ``PREFIX/lib/<multiarch>/`` are searched for ``libbitroll.so`` (then ``libbitroll.so.0``);
3. the build tree: ``../../build*/libbitroll.so`` relative to ``python/bitroll`` (i.e. ``build*/`` at the
   repository root), the most recently modified first.

The library is loaded on first use (``get()``), so ``import bitroll`` and the HDF5 readers work without it.
``bitroll_api_version()`` must be 1 and ``bitroll_engine_opts_init`` must report a ``struct_size`` equal to
``ctypes.sizeof(EngineOpts)``; otherwise import fails with a message naming the library.
"""

import ctypes
import glob
import os
import sys
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int8, c_int32, c_int64,
                    c_uint64, c_void_p)

API_VERSION = 1

# bitroll_status
OK, EINVAL, EIO, EFORMAT, ENOMEM, ERUNTIME, MISMATCH = range(7)
# bitroll_device, bitroll_kernels, bitroll_dtype, bitroll_finish
DEVICE_CPU, DEVICE_CUDA = 0, 1
KERNELS_INVARIANT, KERNELS_FP32, KERNELS_STANDARD = 0, 1, 2
KERNELS = {"invariant": KERNELS_INVARIANT, "fp32": KERNELS_FP32, "standard": KERNELS_STANDARD}
DTYPE_F32, DTYPE_BF16 = 0, 1
FINISH_STOP, FINISH_LENGTH, FINISH_CONTEXT = 0, 1, 2
FINISH_NAMES = {FINISH_STOP: "stop", FINISH_LENGTH: "length", FINISH_CONTEXT: "context"}


class BitrollError(RuntimeError):
    """A libbitroll call failed: ``status`` is the status name (``"BITROLL_EINVAL"``, ...), ``message`` the
    library's message (it names the bad argument, file, field or value)."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}" if message else status)


# ---------------------------------------------------------------- structs (field for field as in bitroll.h)

class Error(Structure):  # bitroll_error
    _fields_ = [("message", c_char * 1024)]


class EngineOpts(Structure):  # bitroll_engine_opts
    _fields_ = [
        ("struct_size", c_int),
        ("model_dir", c_char_p),
        ("random_weights", c_char_p),
        ("weights_seed", c_uint64),
        ("device", c_int),        # bitroll_device (a C enum: int)
        ("gpu", c_int),
        ("kernels", c_int),       # bitroll_kernels
        ("max_batch_tokens", c_int),
        ("max_seqs", c_int),
        ("max_seq_len", c_int),
        ("prefill_chunk", c_int),
        ("page_size", c_int),
        ("mpi_comm", c_void_p),
        ("weight_version", c_int64),
    ]


class EngineInfo(Structure):  # bitroll_engine_info
    _fields_ = [
        ("vocab_size", c_int),
        ("context_length", c_int),
        ("n_layers", c_int),
        ("dim", c_int),
        ("eos_id", c_int),
        ("bos_id", c_int),
        ("n_params", c_int64),
        ("weight_version", c_int64),
        ("fingerprint", c_char * 17),
        ("model_type", c_char * 32),
    ]


class ScoreIn(Structure):  # bitroll_score_in
    _fields_ = [
        ("n", c_int64),
        ("prompt_offsets", POINTER(c_int64)),
        ("prompt_tokens", POINTER(c_int32)),
        ("completion_offsets", POINTER(c_int64)),
        ("completion_tokens", POINTER(c_int32)),
        ("temperature", POINTER(c_float)),
    ]


class GenerateIn(Structure):  # bitroll_generate_in
    _fields_ = [
        ("n", c_int64),
        ("prompt_offsets", POINTER(c_int64)),
        ("prompt_tokens", POINTER(c_int32)),
        ("sample_ids", POINTER(c_int64)),
        ("temperature", POINTER(c_float)),
        ("top_p", POINTER(c_float)),
        ("top_k", POINTER(c_int32)),
        ("seeds", POINTER(c_uint64)),
        ("max_new_tokens", POINTER(c_int32)),
        ("default_temperature", c_float),
        ("default_max_new_tokens", c_int32),
        ("seed", c_uint64),
        ("stop_ids", POINTER(c_int32)),
        ("n_stop_ids", c_int),
    ]


class Completions(Structure):  # bitroll_completions
    _fields_ = [
        ("n", c_int64),
        ("offsets", POINTER(c_int64)),
        ("tokens", POINTER(c_int32)),
        ("logprobs", POINTER(c_float)),
        ("digests", POINTER(c_uint64)),
        ("finish_reason", POINTER(c_int8)),
        ("weight_version", c_int64),
    ]


class Rollouts(Structure):  # bitroll_rollouts
    _fields_ = [
        ("n", c_int64),
        ("sample_id", POINTER(c_int64)),
        ("prompt_index", POINTER(c_int64)),
        ("sample_index", POINTER(c_int32)),
        ("prompt_offsets", POINTER(c_int64)),
        ("prompt_tokens", POINTER(c_int32)),
        ("completion_offsets", POINTER(c_int64)),
        ("completion_tokens", POINTER(c_int32)),
        ("logprobs", POINTER(c_float)),
        ("digests", POINTER(c_uint64)),
        ("finish_reason", POINTER(c_int8)),
        ("temperature", POINTER(c_float)),
        ("top_p", POINTER(c_float)),
        ("top_k", POINTER(c_int32)),
        ("seed", POINTER(c_uint64)),
        ("model_fingerprint", c_char_p),
        ("kernel_mode", c_char_p),
        ("weight_version", c_int64),
    ]


class VerifyReport(Structure):  # bitroll_verify_report
    _fields_ = [
        ("samples", c_int64),
        ("tokens", c_int64),
        ("logprob_mismatches", c_int64),
        ("digest_mismatches", c_int64),
        ("max_abs_delta", c_double),
        ("kl_estimate", c_double),
        ("first_sample_id", c_int64),
        ("first_token", c_int64),
        ("first_logprob", c_float * 2),
        ("first_digest", c_uint64 * 2),
    ]


STRUCTS = {
    "bitroll_error": Error,
    "bitroll_engine_opts": EngineOpts,
    "bitroll_engine_info": EngineInfo,
    "bitroll_score_in": ScoreIn,
    "bitroll_generate_in": GenerateIn,
    "bitroll_completions": Completions,
    "bitroll_rollouts": Rollouts,
    "bitroll_verify_report": VerifyReport,
}

Engine_p = c_void_p  # bitroll_engine * (opaque)

# name: (restype, argtypes): every function of bitroll.h, in the header's order
FUNCTIONS = {
    "bitroll_api_version": (c_int, []),
    "bitroll_version": (c_char_p, []),
    "bitroll_status_name": (c_char_p, [c_int]),
    "bitroll_engine_opts_init": (None, [POINTER(EngineOpts)]),
    "bitroll_engine_open": (c_int, [POINTER(EngineOpts), POINTER(Engine_p), POINTER(Error)]),
    "bitroll_engine_close": (None, [Engine_p]),
    "bitroll_engine_error": (c_char_p, [Engine_p]),
    "bitroll_engine_get_info": (c_int, [Engine_p, POINTER(EngineInfo)]),
    # logprobs / digests: host or device pointers (on_device), hence void *
    "bitroll_score": (c_int, [Engine_p, POINTER(ScoreIn), c_void_p, c_void_p, c_int]),
    "bitroll_generate": (c_int, [Engine_p, POINTER(GenerateIn), POINTER(POINTER(Completions))]),
    "bitroll_completions_free": (None, [POINTER(Completions)]),
    "bitroll_weights_set": (c_int, [Engine_p, c_char_p, c_int, POINTER(c_int64), c_int, c_void_p, c_int]),
    "bitroll_weights_commit": (c_int, [Engine_p, POINTER(c_int64)]),
    "bitroll_weights_discard": (None, [Engine_p]),
    "bitroll_weights_reload": (c_int, [Engine_p, c_char_p, POINTER(c_int64)]),
    "bitroll_rollouts_read": (c_int, [c_char_p, POINTER(POINTER(Rollouts)), POINTER(Error)]),
    "bitroll_rollouts_free": (None, [POINTER(Rollouts)]),
    "bitroll_score_rollouts": (c_int, [Engine_p, POINTER(Rollouts), c_char_p, c_int]),
    "bitroll_verify_files": (c_int, [c_char_p, c_char_p, POINTER(VerifyReport), POINTER(Error)]),
}


# ---------------------------------------------------------------- finding and loading the library

def candidate_paths():
    """The paths tried, in order (see the module docstring); BITROLL_LIB, when set, is the only one."""
    env = os.environ.get("BITROLL_LIB")
    if env:
        return [os.path.join(env, "libbitroll.so") if os.path.isdir(env) else env]
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    # 2. an install prefix: the package is PREFIX/lib*/python*/{site,dist}-packages/bitroll
    sp = os.path.dirname(here)
    py = os.path.dirname(sp)
    libdir = os.path.dirname(py)
    if (os.path.basename(sp) in ("site-packages", "dist-packages") and os.path.basename(py).startswith("python")
            and os.path.basename(libdir).startswith("lib")):
        prefix = os.path.dirname(libdir)
        for sub in (os.path.basename(libdir), "lib", "lib64") + tuple(os.path.join("lib", m) for m in _multiarch()):
            for name in ("libbitroll.so", "libbitroll.so.0"):
                p = os.path.join(prefix, sub, name)
                if p not in out:
                    out.append(p)
    # 3. the build tree: <repo>/build*/libbitroll.so, newest first
    builds = glob.glob(os.path.join(here, "..", "..", "build*", "libbitroll.so"))
    builds.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    out.extend(os.path.normpath(p) for p in builds)
    return out


def _multiarch():
    m = getattr(sys.implementation, "_multiarch", None)
    return (m,) if m else ()


def _declare(lib):
    for name, (restype, argtypes) in FUNCTIONS.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"bitroll: {lib._name} has no function {name} (not a libbitroll of API version "
                              f"{API_VERSION}?)") from None
        f.restype = restype
        f.argtypes = argtypes


def _load():
    tried = []
    for path in candidate_paths():
        if not os.path.exists(path):
            tried.append(path)
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            raise ImportError(f"bitroll: cannot load {path}: {e}") from None
        _declare(lib)
        v = lib.bitroll_api_version()
        if v != API_VERSION:
            raise ImportError(f"bitroll: {path} implements API version {v}, this package needs {API_VERSION}")
        o = EngineOpts()
        lib.bitroll_engine_opts_init(ctypes.byref(o))
        if o.struct_size != ctypes.sizeof(EngineOpts):
            raise ImportError(f"bitroll: {path}: sizeof(bitroll_engine_opts) is {o.struct_size} in the library, "
                              f"{ctypes.sizeof(EngineOpts)} in bitroll/_lib.py: the struct mirrors do not match "
                              f"this library")
        return lib, path
    hint = ("BITROLL_LIB is set but names no file" if os.environ.get("BITROLL_LIB")
            else "set BITROLL_LIB to the path of libbitroll.so, install bitroll, or build it "
                 "(cmake -S . -B build && cmake --build build)")
    raise ImportError("bitroll: libbitroll.so not found (" + hint + "); tried: " + ", ".join(tried[:8]) +
                      (f" and {len(tried) - 8} more" if len(tried) > 8 else ""))


_loaded = None  # (CDLL, path) once loaded


def get():
    """The loaded library (ctypes.CDLL), loaded and checked on first use: ``import bitroll`` and the HDF5 readers
    work without it."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded[0]


def library_path():
    """The path of the libbitroll.so in use (loads it)."""
    get()
    return _loaded[1]


def status_name(st):
    return get().bitroll_status_name(st).decode()


def check(st, message_fn=None):
    """Raises BitrollError unless st is BITROLL_OK; message_fn() gives the message (called only on failure)."""
    if st != OK:
        msg = message_fn() if message_fn else ""
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise BitrollError(status_name(st), msg)
    return st


def version():
    """libbitroll's version string, e.g. "0.1.0 (git abcdef012345)"."""
    return get().bitroll_version().decode()
