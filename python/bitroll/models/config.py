"""config.json -> ModelConfig, accepting exactly what the engine's loader (policy/config.c) accepts.

Options whose numerics the engine does not implement (RoPE scaling, sliding windows, extra biases, other
activations, GPT-2 attention-scaling variants) are refused with a ValueError naming the file and the field, so a
model built here always computes what the engine computes.
"""

import dataclasses
import json
import math

__all__ = ["ModelConfig", "parse_config", "load_config", "MODEL_TYPES"]

MODEL_TYPES = ("llama", "qwen2", "qwen3", "gpt2")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The architecture, in the engine's terms (policy_config)."""
    model_type: str          # llama | qwen2 | qwen3 | gpt2
    vocab_size: int
    hidden: int              # model width D (hidden_size / n_embd)
    n_layers: int
    n_heads: int
    n_kv_heads: int          # GQA: n_heads % n_kv_heads == 0 (GPT-2: = n_heads)
    head_dim: int            # may differ from hidden // n_heads (Qwen3)
    ffn_dim: int             # intermediate_size / n_inner (default 4 D)
    max_pos: int             # max_position_embeddings / n_positions
    norm_eps: float
    rope_theta: float        # 0 for GPT-2 (learned positions)
    tie_embeddings: bool     # LM head = the token embedding (no lm_head.weight)
    qkv_bias: bool = False   # Qwen2, GPT-2
    qk_norm: bool = False    # Qwen3: RMSNorm of q and k over head_dim before RoPE
    bos_id: int = -1
    eos_id: int = -1


def _get(o, key):
    v = o.get(key)
    return v  # absent and JSON null are the same thing


def _int(path, o, key, default=None, lo=1):
    v = _get(o, key)
    if v is None:
        if default is None:
            raise ValueError(f"{path}: missing required field '{key}'")
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != math.floor(v) or v < lo or v > 2 ** 31 - 1:
        raise ValueError(f"{path}: field '{key}' = {v!r}, expected an integer >= {lo}")
    return int(v)


def _pos(path, o, key, default):
    v = _get(o, key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{path}: field '{key}' must be a positive number")
    return float(v)


def _bool(path, o, key, default):
    v = _get(o, key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ValueError(f"{path}: field '{key}' must be true or false")
    return v


def _token_id(path, o, key):
    v = _get(o, key)
    if isinstance(v, list):
        v = v[0] if v else None
    if v is None:
        return -1
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != math.floor(v) or v < 0:
        raise ValueError(f"{path}: field '{key}' must be a non-negative integer token id (or a list of them)")
    return int(v)


def _rope_theta(path, o):
    """Top-level rope_theta (transformers < 5) or rope_parameters.rope_theta (>= 5); only plain RoPE."""
    for key in ("rope_parameters", "rope_scaling"):
        r = _get(o, key)
        if r is None:
            continue
        if not isinstance(r, dict):
            raise ValueError(f"{path}: field '{key}' must be an object")
        for t in ("rope_type", "type"):
            if r.get(t) is not None and r.get(t) != "default":
                raise ValueError(f"{path}: field '{key}.{t}' = {r.get(t)!r} is not supported (only 'default' RoPE)")
        if key == "rope_scaling" and r.get("factor") is not None:
            raise ValueError(f"{path}: field 'rope_scaling.factor' is not supported (only unscaled RoPE)")
    rp = _get(o, "rope_parameters") or {}
    top = _pos(path, o, "rope_theta", None)
    nested = _pos(path, rp, "rope_theta", None)
    if top is not None and nested is not None and top != nested:
        raise ValueError(f"{path}: 'rope_theta' = {top} disagrees with 'rope_parameters.rope_theta' = {nested}")
    return nested if nested is not None else top if top is not None else 10000.0


def _llama_family(path, o, mt):
    D = _int(path, o, "hidden_size")
    H = _int(path, o, "num_attention_heads")
    if _get(o, "head_dim") is None and D % H:
        raise ValueError(f"{path}: hidden_size {D} is not divisible by num_attention_heads {H} (and no head_dim)")
    act = _get(o, "hidden_act")
    if act is not None and act != "silu":
        raise ValueError(f"{path}: field 'hidden_act' = {act!r} is not supported (expected 'silu')")
    if _bool(path, o, "use_sliding_window", False):
        raise ValueError(f"{path}: field 'use_sliding_window' = true is not supported (full attention only)")
    lt = _get(o, "layer_types")
    if lt is not None:
        if not isinstance(lt, list):
            raise ValueError(f"{path}: field 'layer_types' must be a list")
        for i, t in enumerate(lt):
            if t != "full_attention":
                raise ValueError(f"{path}: field 'layer_types[{i}]' = {t!r} is not supported (full_attention only)")
    if _bool(path, o, "attention_bias", False) and mt != "qwen2":
        raise ValueError(f"{path}: field 'attention_bias' = true is not supported for model_type '{mt}'")
    if _bool(path, o, "mlp_bias", False):
        raise ValueError(f"{path}: field 'mlp_bias' = true is not supported")
    return dict(hidden=D, n_layers=_int(path, o, "num_hidden_layers"), n_heads=H,
                n_kv_heads=_int(path, o, "num_key_value_heads", H), head_dim=_int(path, o, "head_dim", D // H),
                ffn_dim=_int(path, o, "intermediate_size"), vocab_size=_int(path, o, "vocab_size"),
                max_pos=_int(path, o, "max_position_embeddings"), norm_eps=_pos(path, o, "rms_norm_eps", 1e-6),
                rope_theta=_rope_theta(path, o), tie_embeddings=_bool(path, o, "tie_word_embeddings", False),
                qkv_bias=mt == "qwen2", qk_norm=mt == "qwen3")


def _gpt2(path, o):
    D, H = _int(path, o, "n_embd"), _int(path, o, "n_head")
    if D % H:
        raise ValueError(f"{path}: n_embd {D} is not divisible by n_head {H}")
    act = _get(o, "activation_function")
    if act is not None and act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{path}: field 'activation_function' = {act!r} is not supported (expected 'gelu_new')")
    if not _bool(path, o, "scale_attn_weights", True):
        raise ValueError(f"{path}: field 'scale_attn_weights' = false is not supported")
    if _bool(path, o, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError(f"{path}: field 'scale_attn_by_inverse_layer_idx' = true is not supported")
    return dict(hidden=D, n_layers=_int(path, o, "n_layer"), n_heads=H, n_kv_heads=H, head_dim=D // H,
                ffn_dim=_int(path, o, "n_inner", 4 * D), vocab_size=_int(path, o, "vocab_size"),
                max_pos=_int(path, o, "n_positions"), norm_eps=_pos(path, o, "layer_norm_epsilon", 1e-5),
                rope_theta=0.0, tie_embeddings=_bool(path, o, "tie_word_embeddings", True), qkv_bias=True)


def parse_config(obj, path="config.json"):
    """A parsed config.json dict -> ModelConfig (ValueError naming path and field if unsupported)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object")
    mt = obj.get("model_type")
    if mt not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type {mt!r} is not supported (supported: {', '.join(MODEL_TYPES)})")
    f = _gpt2(path, obj) if mt == "gpt2" else _llama_family(path, obj, mt)
    if f["n_heads"] % f["n_kv_heads"]:
        raise ValueError(f"{path}: num_attention_heads {f['n_heads']} is not divisible by num_key_value_heads "
                         f"{f['n_kv_heads']}")
    c = ModelConfig(model_type=mt, bos_id=_token_id(path, obj, "bos_token_id"),
                    eos_id=_token_id(path, obj, "eos_token_id"), **f)
    if c.bos_id >= c.vocab_size or c.eos_id >= c.vocab_size:
        raise ValueError(f"{path}: bos_token_id {c.bos_id} / eos_token_id {c.eos_id} outside the vocabulary "
                         f"(vocab_size {c.vocab_size})")
    return c


def load_config(path):
    """Reads and parses a config.json file."""
    with open(path, "r", encoding="utf-8") as f:
        try:
            obj = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
    return parse_config(obj, path)
