"""Initializing a quantized model from a float checkpoint.

* ``"default"`` (A2Q's): copy the float weights, ``s = max|v'| / qmax``,
  ``g = ||v'||_1``; the clamp ``g <= s*T`` then shrinks an over-budget channel
  uniformly, and many of its small weights truncate to 0.
* ``"ep"`` (A2Q+'s Euclidean-projection initialization, the default): replace
  each channel's weights by their Euclidean projection onto the l1 ball of
  radius ``s*T`` (sort-and-threshold, Duchi et al., ICML 2008), then
  ``g = ||projection||_1``. Large weights survive, small ones go to 0;
  channels already inside the ball are unchanged.

For A2Q+ the quantizer subtracts each channel's mean, and soft-thresholding a
zero-mean vector does not keep its mean at 0, so EP-init alternates the
projection with re-centring a few times; what is left over is handled by the
clamp on ``g`` during training, which keeps the guarantee regardless.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import A2QError
from .layers import _QuantWeightLayer, weight_layers
from .quantizers import A2QWeightQuant

__all__ = ["project_l1_ball", "init_from_float", "INIT_METHODS"]

INIT_METHODS = ("ep", "default")
_CENTRE_ROUNDS = 8


@torch.no_grad()
def project_l1_ball(v: torch.Tensor, radius) -> torch.Tensor:
    """Euclidean projection of every row of ``v`` onto ``{x : ||x||_1 <= radius}``.

    ``radius`` is a scalar or one value per row. Rows already inside the ball come
    back unchanged; the others are soft-thresholded by the ``theta`` that puts
    them on the sphere (Duchi, Shalev-Shwartz, Singer, Chandra 2008, Fig. 1
    applied to ``|v|``, signs restored).
    """
    v = torch.as_tensor(v)
    if v.dim() != 2:
        raise ValueError("project_l1_ball expects a [rows, K] tensor")
    rows, K = v.shape
    r = torch.as_tensor(radius, dtype=v.dtype, device=v.device).reshape(-1)
    r = r.expand(rows) if r.numel() == 1 else r
    if (r < 0).any():
        raise ValueError("radius must be >= 0")
    a = v.abs()
    mu, _ = torch.sort(a, dim=1, descending=True)
    css = mu.cumsum(dim=1)
    j = torch.arange(1, K + 1, dtype=v.dtype, device=v.device)
    # rho = the largest j with mu_j - (css_j - r) / j > 0
    cond = mu - (css - r[:, None]) / j > 0
    rho = (cond * j).amax(dim=1).clamp_min(1).to(torch.int64)
    theta = (css.gather(1, (rho - 1)[:, None]).squeeze(1) - r) / rho.to(v.dtype)
    out = torch.sign(v) * torch.clamp(a - theta.clamp_min(0)[:, None], min=0)
    inside = a.sum(dim=1) <= r
    return torch.where(inside[:, None], v, out)


@torch.no_grad()
def _ep_init(layer: _QuantWeightLayer, wq: A2QWeightQuant) -> None:
    v = wq.centred(layer.weight)
    radius = wq.scale().reshape(-1) * wq.budget
    outside = v.abs().sum(dim=1) > radius
    if not bool(outside.any()):
        return  # every channel inside its ball: identical to the default init
    r = radius[outside]
    x = project_l1_ball(v[outside], r)
    if wq.zero_center:
        for _ in range(_CENTRE_ROUNDS):
            x = project_l1_ball(x - x.mean(dim=1, keepdim=True), r)
        x = x - x.mean(dim=1, keepdim=True)
    v = v.clone()
    v[outside] = x
    layer.weight.data.copy_(v.reshape(layer.weight.shape))
    g = wq.centred(layer.weight).norm(p=1, dim=1, keepdim=True).clamp_min(1e-8)
    log2_g = wq.log2_g.data.clone()
    log2_g[outside] = torch.log2(g[outside])
    wq.log2_g.data.copy_(log2_g)


@torch.no_grad()
def init_from_float(model: nn.Module, float_state: dict | nn.Module, method: str = "ep") -> nn.Module:
    """Load float weights into a quantized ``model`` and initialize its quantizers.

    ``float_state`` is a float model with the same module structure or its
    ``state_dict`` (keys of the weight layers' ``weight``/``bias`` must match;
    quantizer parameters are ignored). Weight quantizers are reset from the new
    weights; accumulator-aware ones then get ``method`` ("ep" or "default").
    Activation quantizers are re-armed so their scales are set from the first
    training batch.
    """
    if method not in INIT_METHODS:
        raise A2QError(f"unknown initialization '{method}' (supported: {', '.join(INIT_METHODS)})")
    state = float_state.state_dict() if isinstance(float_state, nn.Module) else dict(float_state)
    for name, module in model.named_modules():
        if not isinstance(module, _QuantWeightLayer):
            continue
        for pname in ("weight", "bias"):
            p = getattr(module, pname)
            if p is None:
                continue
            key = f"{name}.{pname}" if name else pname
            if key not in state:
                raise A2QError(f"float checkpoint has no '{key}'")
            if state[key].shape != p.shape:
                raise A2QError(f"float checkpoint '{key}' has shape {tuple(state[key].shape)}, "
                               f"model expects {tuple(p.shape)}")
            p.data.copy_(state[key])
        wq = module.weight_quant
        if wq is None:
            continue
        if isinstance(wq, A2QWeightQuant) and wq.zero_center:
            # the model A2Q+ represents is the zero-centred one
            module.weight.data.copy_(wq.centred(module.weight).reshape(module.weight.shape))
        wq.reset_from(module.weight)
        if isinstance(wq, A2QWeightQuant) and method == "ep":
            _ep_init(module, wq)
    for m in model.modules():
        if hasattr(m, "initialized") and hasattr(m, "init_from"):
            m.initialized.fill_(False)
    return model


def quantized_layers(model: nn.Module) -> list:
    """Alias of :func:`a2qhls.frontend.layers.weight_layers` for callers of this module."""
    return weight_layers(model)
