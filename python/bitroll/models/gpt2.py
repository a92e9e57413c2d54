"""GPT-2 (HF GPT2LMHeadModel), parameter names and layouts as in its checkpoints: transformer.wte.weight (V, D),
transformer.wpe.weight (P, D), transformer.h.{i}.ln_{1,2}.{weight,bias}, transformer.h.{i}.attn.c_attn.{weight
(D, 3D) = [q | k | v] along the output columns, bias (3D,)}, transformer.h.{i}.attn.c_proj.{weight (D, D), bias},
transformer.h.{i}.mlp.c_fc.{weight (D, F), bias}, transformer.h.{i}.mlp.c_proj.{weight (F, D), bias},
transformer.ln_f.{weight,bias}. Conv1D weights are stored (in, out). A checkpoint saved from GPT2Model has the
same names without "transformer."; an untied one adds lm_head.weight (V, D).
"""

import math

import torch
from torch import nn

from .common import CausalLM, Conv1D, Embedding, LayerNorm, Linear, causal_attention


def gelu_new(x):
    """HF's NewGELUActivation (GELU, tanh approximation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c = c
        self.c_attn = Conv1D(c.hidden, 3 * c.hidden, dtype)
        self.c_proj = Conv1D(c.hidden, c.hidden, dtype)

    def forward(self, x):
        """x (B, L, D) -> (B, L, D)."""
        B, L, D = x.shape
        q, k, v = (t.view(B, L, -1, self.c.head_dim).transpose(1, 2) for t in self.c_attn(x).split(D, dim=-1))
        return self.c_proj(causal_attention(q, k, v, self.c.head_dim ** -0.5))


class MLP(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c_fc = Conv1D(c.hidden, c.ffn_dim, dtype)
        self.c_proj = Conv1D(c.ffn_dim, c.hidden, dtype)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.ln_1 = LayerNorm(c.hidden, c.norm_eps, dtype)
        self.attn = Attention(c, dtype)
        self.ln_2 = LayerNorm(c.hidden, c.norm_eps, dtype)
        self.mlp = MLP(c, dtype)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _add_body(m, c, dtype):
    """Registers wte, wpe, h, ln_f on module m."""
    m.wte = Embedding(c.vocab_size, c.hidden, dtype)
    m.wpe = Embedding(c.max_pos, c.hidden, dtype)
    m.h = nn.ModuleList(Block(c, dtype) for _ in range(c.n_layers))
    m.ln_f = LayerNorm(c.hidden, c.norm_eps, dtype)


def _hidden(m, input_ids):
    """input_ids (B, L) through the body registered on m -> final-normed hidden (B, L, D)."""
    pos = torch.arange(input_ids.shape[1], device=input_ids.device)
    x = m.wte(input_ids) + m.wpe(pos)
    for block in m.h:
        x = block(x)
    return m.ln_f(x)


class GPT2Model(nn.Module):
    """The 'transformer.' part."""

    def __init__(self, c, dtype):
        super().__init__()
        _add_body(self, c, dtype)

    def forward(self, input_ids):
        return _hidden(self, input_ids)


class GPT2LMHeadModel(CausalLM):
    """GPT-2 with an LM head (wte when tie_embeddings). prefix "transformer." or "" (a bare GPT2Model export)."""

    def __init__(self, config, dtype=torch.float32, prefix="transformer."):
        super().__init__(config)
        if prefix not in ("transformer.", ""):
            raise ValueError(f"prefix must be 'transformer.' or '', got {prefix!r}")
        if prefix:
            self.transformer = GPT2Model(config, dtype)
        else:
            _add_body(self, config, dtype)
        if not config.tie_embeddings:
            self.lm_head = Linear(config.hidden, config.vocab_size, False, dtype)

    def _body(self):
        return self.transformer if "transformer" in self._modules else self

    def logits(self, input_ids):
        """input_ids (B, L) -> logits (B, L, V) in the parameters' dtype."""
        body = self._body()
        h = _hidden(body, input_ids)
        return torch.nn.functional.linear(h, body.wte.weight if self.config.tie_embeddings else self.lm_head.weight)
