"""bitroll from Python: rollouts files, the engine, and the sampler's log-probs inside a PyTorch training step.

    import bitroll, bitroll.torch, bitroll.models
    batch = bitroll.to_torch(bitroll.read_rollouts("rollouts.h5"))
    with bitroll.Engine(model="configs/models/stories260K") as engine:
        model = bitroll.models.from_pretrained("configs/models/stories260K")
        lp = bitroll.torch.token_logprobs(engine, model, batch)   # forward: bitroll's bits; backward: PyTorch's
        mask = batch["loss_mask"].bool()
        assert torch.equal(lp[mask], batch["old_logprobs"][mask])  # ratio 1.0, KL 0
        engine.load_state_dict(model.state_dict())                  # after the optimizer step

A pure-Python package over libbitroll (ctypes; see ``bitroll._lib`` for where the library is found). numpy is
required; h5py only for ``read_rollouts`` / ``read_scores``; torch only for ``to_torch``, ``bitroll.torch`` and
``bitroll.models`` (imported on first use).
"""

import importlib

try:
    import numpy  # noqa: F401
except ImportError as e:
    raise ImportError("bitroll needs numpy (Debian: apt-get install python3-numpy; pip: pip install numpy): "
                      + str(e)) from None

from ._lib import BitrollError
from .engine import Engine, EngineInfo, VerifyReport, verify
from .files import Rollouts, Sample, Scores, read_rollouts, read_scores, to_torch

__version__ = "0.1.0"

__all__ = ["read_rollouts", "read_scores", "to_torch", "Engine", "BitrollError", "Rollouts", "Scores", "Sample",
           "EngineInfo", "VerifyReport", "verify", "library_version", "__version__"]


def library_version():
    """The loaded libbitroll's version string ("0.1.0 (git abcdef012345)")."""
    from . import _lib
    return _lib.version()


def __getattr__(name):
    # bitroll.torch and bitroll.models import torch: load them on first use, so `import bitroll` does not need it
    if name in ("torch", "models"):
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'bitroll' has no attribute {name!r}")
