"""``bitroll.torch``: the sampler's log-probs inside a PyTorch training step.

``token_logprobs(engine, model, batch)`` is what a PPO / GRPO trainer calls where it would compute
``log_softmax(model(input_ids).logits / T).gather(...)``: its **forward values are the engine's** (bitroll's
kernels, the ones that sampled the rollouts), so with the same weights they are bitwise equal to the rollouts'
``/samples/logprobs``: the importance ratio ``exp(lp - old_logprobs)`` is exactly 1.0 and the KL estimate exactly 0
on on-policy data.

**The backward is the PyTorch model's.** The gradient that flows back is the gradient of the PyTorch model's own
log-probs (``bitroll.models.token_logprobs_torch``: a plain PyTorch forward of the same checkpoint) at the model's
current weights, not a gradient of bitroll's kernels. The forward values and the gradient's point of evaluation
therefore differ by the PyTorch forward's rounding (about 1e-6 relative; the negative control of
tests/python/test_trainer.py measures it); a native backward through bitroll's kernels is a later step.
"""

import numpy as np

try:
    import torch  # the real PyTorch: this module is bitroll.torch, and imports are absolute
except ImportError as e:
    raise ImportError("bitroll.torch needs PyTorch (Debian: apt-get install python3-torch; pip: pip install torch): "
                      + str(e)) from None

from ._lib import BitrollError
from .engine import batch_to_csr

__all__ = ["token_logprobs", "engine_logprobs"]


def engine_logprobs(engine, batch):
    """The engine's teacher-forced log-probs of a padded batch (``bitroll.to_torch``'s dict, or any dict with
    ``input_ids``, ``loss_mask``, optionally ``attention_mask`` and ``temperature``) as a float32 [B, L] tensor on
    ``batch["input_ids"]``'s device, aligned like ``batch["old_logprobs"]``: out[b, t] is the log-prob of
    input_ids[b, t] given input_ids[b, :t] at the sample's temperature (0 -> 1), 0 outside loss_mask. No
    gradient. A CUDA engine writes straight into a tensor on its GPU when the batch lives there."""
    c = batch_to_csr(batch)
    ids = batch["input_ids"]
    dev = ids.device if isinstance(ids, torch.Tensor) else torch.device("cpu")
    B, L = ids.shape
    T = int(c["completion_offsets"][-1])
    args = (c["prompt_offsets"], c["prompt_tokens"], c["completion_offsets"], c["completion_tokens"],
            c["temperature"])
    if engine.device.startswith("cuda") and dev.type == "cuda" and dev.index == engine.gpu:
        flat = torch.empty(T, dtype=torch.float32, device=dev)
        torch.cuda.current_stream(dev).synchronize()  # the library copies on the legacy default stream
        engine.score_into(*args, flat.data_ptr() if T else None, None, on_device=True)
    else:
        host = np.empty(T, dtype=np.float32)
        engine.score_into(*args, host.ctypes.data if T else None, None, on_device=False)
        flat = torch.from_numpy(host).to(dev)
    out = torch.zeros((B, L), dtype=torch.float32, device=dev)
    out[torch.from_numpy(c["rows"]).to(dev), torch.from_numpy(c["cols"]).to(dev)] = flat
    return out


class _EngineValuesModelGrad(torch.autograd.Function):
    """forward(engine_lp, model_lp) = engine_lp (a copy: the engine's exact bits); backward: the incoming gradient
    goes to model_lp unchanged (so d/dθ is the PyTorch model's), none to engine_lp."""

    @staticmethod
    def forward(ctx, engine_lp, model_lp):
        return engine_lp.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def token_logprobs(engine, model, batch):
    """Per-token log-probs of a padded batch whose **values are the engine's** and whose **gradient is the PyTorch
    model's**.

    Forward: ``engine_logprobs(engine, batch)``, bitroll's kernels, bitwise equal to the rollouts'
    ``/samples/logprobs`` (``batch["old_logprobs"]``) when the engine has the weights that generated them.
    Backward: the gradient of ``bitroll.models.token_logprobs_torch(model, input_ids, temperature)``, the PyTorch
    model's own log-probs at its current parameters (not bitroll's kernels: the two forwards differ by rounding,
    and the gradient is evaluated at the PyTorch forward). Implemented as an autograd Function that returns the
    engine's tensor, so no arithmetic touches the forward values.

    The values are those of the engine's weights: after an optimizer step, push the model's weights with
    ``engine.load_state_dict(model.state_dict())`` so that both sides use the same policy; then token_logprobs gives
    the new policy's log-probs of older samples (PPO's later minibatches) with the sampler's kernels.

    ``batch``: ``bitroll.to_torch``'s dict (``input_ids``, ``attention_mask``, ``loss_mask``, ``temperature``),
    right-padded. Returns float32 [B, L] aligned with ``batch["old_logprobs"]`` (out[b, t] = log p(input_ids[b, t]
    | input_ids[b, :t]) at the sample's temperature, T = 0 scored at 1), 0 outside ``loss_mask``, on the model's
    device. With ``model=None``, grad mode off or no parameter requiring grad, the PyTorch forward is skipped and
    the engine's values come back without a graph.
    """
    eng = engine_logprobs(engine, batch)
    if model is None or not torch.is_grad_enabled():
        return eng
    params = list(model.parameters())
    if not any(p.requires_grad for p in params):
        return eng
    from .models import token_logprobs_torch
    ids = batch["input_ids"]
    am = batch.get("attention_mask")
    if am is not None and bool((am[:, :-1] < am[:, 1:]).any()):
        raise BitrollError("BITROLL_EINVAL", "token_logprobs: the PyTorch model's log-probs (the backward) need "
                                             "right-padded rows (bitroll.to_torch's layout); this batch has padding "
                                             "before a token")
    dev = params[0].device
    B = ids.shape[0]
    temp = batch.get("temperature")
    temp = torch.ones(B, dtype=torch.float32) if temp is None else torch.as_tensor(temp, dtype=torch.float32)
    mlp = token_logprobs_torch(model, ids.to(dev), temp.to(dev))
    mask = batch["loss_mask"].to(dev).bool()
    mlp = torch.where(mask, mlp.to(torch.float32), torch.zeros((), dtype=torch.float32, device=dev))
    return _EngineValuesModelGrad.apply(eng.to(dev), mlp)
