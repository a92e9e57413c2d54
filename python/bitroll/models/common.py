"""Building blocks shared by the model families. Parameters are created uninitialised (torch.empty): a model is
always filled from a checkpoint, so construction costs no random initialisation.

Shapes: B batch, L sequence length, D hidden, H heads, KV key/value heads, hd head_dim.
"""

import torch
from torch import nn
import torch.nn.functional as F


def compute_dtype(dtype):
    """Norms and softmax run in at least float32 (as HF does for 16-bit models); float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


class Linear(nn.Module):
    """y = x W^T (+ b); weight (out, in) as HF nn.Linear stores it."""

    def __init__(self, n_in, n_out, bias, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(n_out, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Conv1D(nn.Module):
    """GPT-2's Conv1D: y = x W + b with weight stored (in, out)."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(n_out, dtype=dtype))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Embedding(nn.Module):
    """Token (or position) table, weight (n, D)."""

    def __init__(self, n, dim, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, dim, dtype=dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: x / sqrt(mean(x^2) + eps) in >= float32, cast back, times weight (n,)."""

    def __init__(self, n, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        h = x.to(compute_dtype(x.dtype))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class LayerNorm(nn.Module):
    """nn.LayerNorm over the last dimension, weight and bias (n,)."""

    def __init__(self, n, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(n, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


# torch >= 2.0: fused attention (flash / memory-efficient kernels; no (L, L) matrix kept for backward). It scales
# by 1/sqrt(hd), which is what every family here uses. False: the explicit softmax below (used on torch 1.x).
USE_SDPA = hasattr(F, "scaled_dot_product_attention")


def causal_attention(q, k, v, scale):
    """Softmax attention, position t attending to 0..t, scores scaled by `scale` (= hd ** -0.5).

    q (B, H, L, hd), k and v (B, KV, L, hd) with H % KV == 0 (query head h reads key/value head h // (H / KV)).
    Returns (B, L, H * hd).
    """
    B, H, L, hd = q.shape
    rep = H // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    # fused SDPA's backward on CUDA has no deterministic kernel: with deterministic algorithms asked for, the
    # explicit softmax (whose matmuls are deterministic) instead
    if USE_SDPA and scale == hd ** -0.5 and not (q.is_cuda and torch.are_deterministic_algorithms_enabled()):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        s = torch.matmul(q, k.transpose(-1, -2)) * scale
        future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(future, float("-inf"))
        p = torch.softmax(s.to(compute_dtype(s.dtype)), dim=-1).to(v.dtype)
        o = torch.matmul(p, v)
    return o.transpose(1, 2).reshape(B, L, H * hd)


class CausalLM(nn.Module):
    """Base of the model families: ``model(input_ids)`` -> float32 logits.

    Subclasses define ``logits(input_ids)`` (logits in the parameters' dtype). ``config`` is the ModelConfig;
    ``checkpoint_names()`` the checkpoint's tensor names in file order (from_pretrained fills them), which are
    exactly the names of ``state_dict()``.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self._checkpoint_names = None  # from_pretrained: the file's order
        self.checkpoint_dtypes = {}  # name -> the checkpoint's safetensors dtype ("F32", "BF16", "F16")

    def checkpoint_names(self):
        """The checkpoint's tensor names in the order of the file (= the state_dict names)."""
        if self._checkpoint_names is None:
            return [n for n, _ in self.named_parameters()]
        return list(self._checkpoint_names)

    def forward(self, input_ids):
        """input_ids int64 (B, L) -> float32 logits (B, L, V); causal, so right padding is harmless."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.max_pos:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed the context length {self.config.max_pos}")
        return self.logits(input_ids.long()).float()
