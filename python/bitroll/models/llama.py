"""Llama, Qwen2 and Qwen3 (HF LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM), parameter names as in
their checkpoints: model.embed_tokens.weight, model.layers.{i}.self_attn.{q,k,v,o}_proj.weight (Qwen2: q/k/v
biases; Qwen3: self_attn.{q,k}_norm.weight), model.layers.{i}.mlp.{gate,up,down}_proj.weight,
model.layers.{i}.{input,post_attention}_layernorm.weight, model.norm.weight and lm_head.weight unless tied.

Pre-norm blocks: x += o_proj(attention(RoPE(q), RoPE(k), v)); x += down(silu(gate(x)) * up(x)), RMSNorm before
each; GQA; RoPE in HF's rotate_half convention (dimension i pairs with i + hd/2).
"""

import torch
from torch import nn
import torch.nn.functional as F

from .common import CausalLM, Embedding, Linear, RMSNorm, causal_attention


def rope_inv_freq(config, device=None, weights_dtype=torch.float32):
    """(hd/2,) float32: 1 / theta^(2i / hd) computed in float32 as HF does. A model whose checkpoint is 16-bit
    holds HF's inv_freq buffer in that dtype (and so does the engine, kern_cpu_rope_table): round it likewise."""
    hd = config.head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64, device=device).float() / hd))
    return inv.to(weights_dtype).float()


def rope_cos_sin(inv_freq, n_pos):
    """cos, sin (n_pos, hd) float32 for positions 0..n_pos-1: angle p * inv_freq[i % (hd/2)]."""
    pos = torch.arange(n_pos, dtype=torch.float32, device=inv_freq.device)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.c = c
        self.q_proj = Linear(c.hidden, c.n_heads * c.head_dim, c.qkv_bias, dtype)
        self.k_proj = Linear(c.hidden, c.n_kv_heads * c.head_dim, c.qkv_bias, dtype)
        self.v_proj = Linear(c.hidden, c.n_kv_heads * c.head_dim, c.qkv_bias, dtype)
        self.o_proj = Linear(c.n_heads * c.head_dim, c.hidden, False, dtype)
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.norm_eps, dtype)
            self.k_norm = RMSNorm(c.head_dim, c.norm_eps, dtype)

    def forward(self, x, cos, sin):
        """x (B, L, D), cos/sin (L, hd) in x's dtype -> (B, L, D)."""
        B, L, _ = x.shape
        hd = self.c.head_dim
        q = self.q_proj(x).view(B, L, -1, hd)
        k = self.k_proj(x).view(B, L, -1, hd)
        v = self.v_proj(x).view(B, L, -1, hd).transpose(1, 2)
        if self.c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, heads, L, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return self.o_proj(causal_attention(q, k, v, hd ** -0.5))


class MLP(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.gate_proj = Linear(c.hidden, c.ffn_dim, False, dtype)
        self.up_proj = Linear(c.hidden, c.ffn_dim, False, dtype)
        self.down_proj = Linear(c.ffn_dim, c.hidden, False, dtype)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.norm_eps, dtype)
        self.self_attn = Attention(c, dtype)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.norm_eps, dtype)
        self.mlp = MLP(c, dtype)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """The 'model.' part: embeddings, layers, final norm. input_ids (B, L) -> hidden (B, L, D)."""

    def __init__(self, c, dtype):
        super().__init__()
        self.embed_tokens = Embedding(c.vocab_size, c.hidden, dtype)
        self.layers = nn.ModuleList(DecoderLayer(c, dtype) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.hidden, c.norm_eps, dtype)

    def forward(self, input_ids, cos, sin):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class LlamaForCausalLM(CausalLM):
    """Llama / Qwen2 / Qwen3 with an LM head (the token embedding when tie_embeddings)."""

    def __init__(self, config, dtype=torch.float32):
        super().__init__(config)
        self.model = LlamaModel(config, dtype)
        if not config.tie_embeddings:
            self.lm_head = Linear(config.hidden, config.vocab_size, False, dtype)
        self.rope_dtype = torch.float32  # from_pretrained sets the checkpoint's dtype (see rope_inv_freq)

    def logits(self, input_ids):
        """input_ids (B, L) -> logits (B, L, V) in the parameters' dtype."""
        w = self.model.embed_tokens.weight
        inv = rope_inv_freq(self.config, w.device, self.rope_dtype)
        cos, sin = rope_cos_sin(inv, input_ids.shape[1])
        h = self.model(input_ids, cos.to(w.dtype), sin.to(w.dtype))
        return F.linear(h, w if self.config.tie_embeddings else self.lm_head.weight)
