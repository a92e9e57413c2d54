"""PyTorch definitions of the model families the engine runs (Llama, Qwen2, Qwen3, GPT-2), loading the same
Hugging Face checkpoints: the trainer's gradient provider and the usual ("off-policy") PyTorch log-probs.

    model = bitroll.models.from_pretrained("configs/models/stories260K")
    logits = model(input_ids)                    # int64 (B, L) -> float32 (B, L, V)
    lp = bitroll.models.token_logprobs_torch(model, input_ids, temperature)   # (B, L), lp[:, 0] = 0

Parameters carry the checkpoint's tensor names, shapes and layouts (GPT-2 Conv1D weights (in, out), fused
c_attn), so ``model.state_dict()`` can be handed name by name to the engine's weight update. Tied embeddings
have no lm_head parameter (the checkpoint has none).
"""

import os

import torch

from .. import safetensors as _st
from .config import MODEL_TYPES, ModelConfig, load_config, parse_config
from .gpt2 import GPT2LMHeadModel
from .llama import LlamaForCausalLM

__all__ = ["from_pretrained", "from_config", "token_logprobs_torch", "ModelConfig", "load_config", "parse_config",
           "MODEL_TYPES", "LlamaForCausalLM", "GPT2LMHeadModel"]

_TORCH_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def from_config(config, dtype=torch.float32, gpt2_prefix="transformer."):
    """An unfilled model (parameters uninitialised) for a ModelConfig."""
    if config.model_type == "gpt2":
        return GPT2LMHeadModel(config, dtype, gpt2_prefix)
    return LlamaForCausalLM(config, dtype)


def from_pretrained(model_dir, dtype=torch.float32):
    """Loads config.json and model.safetensors (or a sharded model.safetensors.index.json) from model_dir.

    Returns a CausalLM (torch.nn.Module) with parameters in `dtype` (BF16/F16 weights are widened exactly for
    float32/float64). Every parameter must be in the checkpoint with its exact shape; checkpoint tensors that are
    no parameter (e.g. a stale lm_head.weight next to tie_word_embeddings) are ignored, as the engine ignores them.
    """
    model_dir = os.fspath(model_dir)
    config = load_config(os.path.join(model_dir, "config.json"))
    tensors = _st.checkpoint_tensors(model_dir)
    info = {t.name: t for t in tensors}
    prefix = "transformer." if "transformer.wte.weight" in info else ""
    model = from_config(config, dtype, prefix)
    params = dict(model.named_parameters())
    for name, p in params.items():
        t = info.get(name)
        if t is None:
            raise ValueError(f"{model_dir}: tensor '{name}' is missing from the checkpoint")
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"{t.file}: tensor '{name}' has shape {list(t.shape)}, expected {list(p.shape)}")
        if t.dtype not in _TORCH_DTYPES:
            raise ValueError(f"{t.file}: tensor '{name}' has dtype {t.dtype}, expected F32, BF16 or F16")
    mine = [t for t in tensors if t.name in params]
    with torch.no_grad():
        for name, a in _st.iter_tensors(mine):
            params[name].copy_(torch.from_numpy(a))
    model._checkpoint_names = [t.name for t in mine]
    model.checkpoint_dtypes = {t.name: t.dtype for t in mine}
    if config.model_type != "gpt2":  # RoPE's inv_freq is held in the checkpoint's dtype (the embedding's)
        model.rope_dtype = _TORCH_DTYPES[info["model.embed_tokens.weight"].dtype]
    return model


def token_logprobs_torch(model, input_ids, temperature):
    """log softmax(logits / T) at the next tokens, in float32.

    input_ids int64 (B, L); temperature float (B,) or a number (0 means greedy: T = 1 is used).
    Returns (B, L) float32: out[:, t] = log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1, out[:, 0] = 0.
    Differentiable with respect to the model's parameters.
    """
    input_ids = input_ids.long()
    B, L = input_ids.shape
    logits = model(input_ids)                                   # (B, L, V) float32
    T = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device)
    T = T.expand(B) if T.dim() == 0 else T
    if T.shape != (B,):
        raise ValueError(f"temperature must be a number or have shape ({B},), got {tuple(T.shape)}")
    T = torch.where(T > 0, T, torch.ones_like(T))
    x = logits[:, :-1] / T[:, None, None]                       # (B, L-1, V)
    picked = x.gather(-1, input_ids[:, 1:, None]).squeeze(-1)   # (B, L-1)
    lp = picked - torch.logsumexp(x, dim=-1)
    return torch.cat([torch.zeros(B, 1, dtype=lp.dtype, device=lp.device), lp], dim=1)
