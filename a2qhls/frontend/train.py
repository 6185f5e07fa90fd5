"""MLP construction and the training loop behind ``a2qhls train``.

Float and quantized MLPs share one module layout, so a float checkpoint loads
into the quantized model by key:

    0: input quantizer (QuantIdentity; nn.Identity in the float model)
    1: QuantLinear, 2: QuantReLU (nn.ReLU), 3: QuantLinear, ..., last: QuantLinear

Which layers are accumulator-constrained (``constrain``):

* ``"all"`` (default): every layer gets the A2Q/A2Q+ quantizer at ``acc_bits``
  with ``weight_bits`` weights; the input quantizer has ``act_bits`` bits.
  Small MLPs keep their accuracy this way and every accumulator is narrow.
* ``"inner"``: as in the papers, the first and last layers keep 8-bit
  round-to-nearest weights with no accumulator constraint and the network
  input is quantized to 8 bits; only the layers in between are constrained.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import A2QError
from .data import Dataset
from .layers import QuantIdentity, QuantLinear, QuantReLU, penalty, weight_layers
from .quantizers import A2QWeightQuant, IntWeightQuant

__all__ = ["QUANT_KINDS", "CONSTRAIN_POLICIES", "build_mlp", "fit", "evaluate", "TrainConfig", "resolve_device"]

QUANT_KINDS = ("float", "baseline", "a2q", "a2q+")
CONSTRAIN_POLICIES = ("all", "inner")
EDGE_BITS = 8  # bit width of unconstrained first/last layers and the input under constrain="inner"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise A2QError("--device cuda requested but CUDA is not available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise A2QError(f"unknown device '{name}' (supported: auto, cpu, cuda)")
    return torch.device(name)


def build_mlp(in_features: int, hidden: list, classes: int, quant: str = "a2q+", weight_bits: int = 4,
              act_bits: int = 4, acc_bits: int = 12, constrain: str = "all") -> nn.Sequential:
    """An MLP ``in_features -> hidden... -> classes`` with the quantizers of ``quant``."""
    if quant not in QUANT_KINDS:
        raise A2QError(f"unknown quantizer '{quant}' (supported: {', '.join(QUANT_KINDS)})")
    if constrain not in CONSTRAIN_POLICIES:
        raise A2QError(f"unknown --constrain policy '{constrain}' (supported: {', '.join(CONSTRAIN_POLICIES)})")
    if not hidden or any((not isinstance(h, int)) or h < 1 for h in hidden):
        raise A2QError(f"--arch must list positive hidden sizes, got {hidden!r}")
    sizes = [int(in_features)] + [int(h) for h in hidden] + [int(classes)]
    n_layers = len(sizes) - 1
    edge = constrain == "inner"
    if quant == "float":
        mods: list = [nn.Identity()]
    else:
        mods = [QuantIdentity(EDGE_BITS if edge else act_bits, signed=False)]
    for i in range(n_layers):
        is_edge = edge and (i == 0 or i == n_layers - 1)
        in_bits = EDGE_BITS if (edge and i == 0) else act_bits
        if quant == "float":
            wq = None
        elif quant == "baseline" or is_edge:
            wq = IntWeightQuant(EDGE_BITS if is_edge else weight_bits)
        else:
            wq = A2QWeightQuant(weight_bits, acc_bits, input_bits=in_bits, input_signed=False,
                                zero_center=(quant == "a2q+"))
        mods.append(QuantLinear(sizes[i], sizes[i + 1], bias=True, weight_quant=wq))
        if i < n_layers - 1:
            mods.append(nn.ReLU() if quant == "float" else QuantReLU(act_bits))
    return nn.Sequential(*mods)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 0.0
    penalty_weight: float = 1e-3
    seed: int = 0
    progress: bool = False
    desc: str = "train"


@dataclass
class TrainResult:
    test_accuracy: float
    train_accuracy: float
    seconds: float
    losses: list = field(default_factory=list)


@torch.no_grad()
def _calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Set uncalibrated activation scales from one large batch (train-mode forward)."""
    model.train()
    model(x)


def fit(model: nn.Module, data: Dataset, cfg: TrainConfig, device: torch.device | None = None) -> TrainResult:
    """Adam with cosine learning-rate decay, cross-entropy plus ``penalty_weight * penalty(model)``.

    Deterministic on CPU for a fixed ``cfg.seed``.
    """
    device = device or torch.device("cpu")
    model.to(device)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    calib = torch.randperm(len(xtr), generator=gen)[:1024]
    _calibrate(model, xtr[calib.to(device)])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / cfg.batch_size)
    total = max(cfg.epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    has_penalty = any(isinstance(m, A2QWeightQuant) for m in model.modules())
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=cfg.desc, file=sys.stderr, leave=False)
    t0 = time.perf_counter()
    losses = []
    _epochs(model, opt, sched, xtr, ytr, gen, cfg, has_penalty, steps_per_epoch, losses, bar, device)
    if bar is not None:
        bar.close()
    secs = time.perf_counter() - t0
    return TrainResult(
        test_accuracy=evaluate(model, data.x_test.to(device), data.y_test.to(device)),
        train_accuracy=evaluate(model, xtr, ytr),
        seconds=secs,
        losses=losses,
    )


def _epochs(model, opt, sched, xtr, ytr, gen, cfg, has_penalty, steps_per_epoch, losses, bar, device) -> None:
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        run = 0.0
        for i in range(0, len(xtr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            if has_penalty and cfg.penalty_weight:
                loss = loss + cfg.penalty_weight * penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach())
        losses.append(run / steps_per_epoch)
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)


def layer_report(model: nn.Module) -> list:
    """Per weight layer: kind, K, channels, target, and the trained integer weights' A2Q/A2Q+ widths."""
    from .. import bounds

    rows = []
    for i, m in enumerate(weight_layers(model)):
        wq = m.weight_quant
        row = {"index": i, "K": m.K, "channels": int(m.weight.shape[0]),
               "quant": "float" if wq is None else wq.kind}
        if wq is not None:
            q = m.int_weight().cpu().numpy()
            row["weight_bits"] = wq.bits
            row["max_l1"] = int(abs(q).sum(axis=1).max())
            row["zero_fraction"] = float((q == 0).mean())
            if isinstance(wq, A2QWeightQuant):
                row["target_acc_bits"] = wq.acc_bits
                row["input_bits"] = wq.input_bits
                row["l1_budget"] = wq.budget
                if wq.zero_center:
                    row["acc_bits_bound"] = int(bounds.a2qplus_acc_bits(int(bounds.a2qplus_effective_l1(q).max()),
                                                                         wq.input_bits))
                else:
                    row["acc_bits_bound"] = int(bounds.a2q_acc_bits(row["max_l1"], wq.input_bits, wq.input_signed))
        rows.append(row)
    return rows
